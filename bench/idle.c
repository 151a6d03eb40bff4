/*
 * Memory per idle connection: how much a server process grows for each TLS connection it holds
 * open and idle, with limits->concurrency (10,000 by default) of them on one server.
 *
 * Each side runs in fresh processes, so that nothing freed by an earlier run (the other side's,
 * or another case's) is reused and hides growth: tlsock-bench executes itself again
 * (/proc/self/exe BENCH_IDLE_CHILD_ARG ...) once as the server and once as the clients, and talks
 * to both over pipes, one line at a time:
 *
 *   server -> parent   "port P"
 *   clients -> parent  "warm W"              W warm-up connections are up
 *   parent -> server   "mark W"              wait until W are established, settle, measure
 *   server -> parent   "mark RSS HEAP TLS N CIPHER IMPL"
 *   parent -> clients  "go"                  clients open limits->concurrency more
 *   clients -> parent  "done N"
 *   parent -> server   "measure W+N"
 *   server -> parent   "measure RSS HEAP TLS N CIPHER IMPL"
 *   parent closes both stdins: the clients close everything and exit, then the server.
 *
 * The warm-up connections stay open, so that what the first connections initialise once
 * (method tables, caches, the loop's fd table) is in the baseline and nothing freed is reused.
 * The growth between "mark" and "measure" divided by the connections added is the figure: RSS
 * (/proc/self/statm), malloc'ed bytes in use (mallinfo2: every arena, mmapped chunks included),
 * and, for OpenSSL, the part OpenSSL itself allocated (counted through CRYPTO_set_mem_functions,
 * installed before OpenSSL allocates anything).
 *
 * The servers: raw OpenSSL (SSL_MODE_RELEASE_BUFFERS, as a careful program holding many idle
 * connections sets it) or raw GnuTLS on non-blocking sockets and epoll, every idle connection
 * still watched for input as an event loop would; or a tlsock_uv server on one libuv loop. The
 * clients are tlsock_uv clients on one loop (the same for every server), a few dozen handshakes
 * in flight. Both processes raise RLIMIT_NOFILE to its hard limit.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#ifdef BENCH_HAVE_GNUTLS
#include <gnutls/gnutls.h>
#endif

#include "async.h"
#include "tlsock/uv.h"

extern char **environ;

/* Connections opened and left open before the baseline is measured. */
#define WARM_CONNECTIONS 64
/* Client handshakes in flight. */
#define CLIENT_IN_FLIGHT 32
/* Quiet time between reaching the target and measuring: tickets sent, nothing in flight. */
#define SETTLE_MS 200
/* Bounds on each step of the protocol; the connecting step gets the longest. */
#define STEP_TIMEOUT_MS    30000
#define CONNECT_TIMEOUT_MS 300000
#define EXIT_TIMEOUT_MS    10000

/* ---- Shared by the children ---- */

static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* OpenSSL's own heap in use, when the counting allocator could be installed; else -1. */
static atomic_llong tls_heap;
static bool tls_heap_counted;

static void *count_malloc(size_t n, const char *file, int line)
{
    void *p = malloc(n);

    (void)file;
    (void)line;
    if (p != NULL) {
        atomic_fetch_add(&tls_heap, (long long)malloc_usable_size(p));
    }
    return p;
}

static void *count_realloc(void *old, size_t n, const char *file, int line)
{
    size_t before = old != NULL ? malloc_usable_size(old) : 0;
    void *p = realloc(old, n);

    (void)file;
    (void)line;
    if (p != NULL) {
        atomic_fetch_add(&tls_heap, (long long)malloc_usable_size(p) - (long long)before);
    } else if (n == 0) {
        atomic_fetch_sub(&tls_heap, (long long)before);
    }
    return p;
}

static void count_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    if (p != NULL) {
        atomic_fetch_sub(&tls_heap, (long long)malloc_usable_size(p));
    }
    free(p);
}

/* What the server reports: its memory, and what it holds. */
struct idle_counts {
    uint64_t established;
    char cipher[64];
    char impl[16];
};

static void report(const char *what, const struct idle_counts *counts)
{
    long long pages = 0;
    long long rss = -1;
    long long heap;
    struct mallinfo2 mi = mallinfo2();
    FILE *f = fopen("/proc/self/statm", "r");

    if (f != NULL && fscanf(f, "%*s %lld", &pages) == 1) {
        rss = pages * sysconf(_SC_PAGESIZE);
    }
    if (f != NULL) {
        fclose(f);
    }
    heap = (long long)(mi.uordblks + mi.hblkhd);
    printf("%s %lld %lld %lld %llu %s %s\n", what, rss, heap,
           tls_heap_counted ? atomic_load(&tls_heap) : -1LL,
           (unsigned long long)counts->established, counts->cipher[0] ? counts->cipher : "?",
           counts->impl[0] ? counts->impl : "?");
    fflush(stdout);
}

/* A command from the parent on stdin: "mark N" or "measure N". */
struct command {
    char line[256];
    size_t len;
    bool pending;
    char what[16];
    uint64_t target;
    int64_t reached_ns; /* when the target was reached, 0 if not yet */
};

/* Takes the bytes read from stdin; returns false when a line is malformed. */
static bool command_input(struct command *cmd, const char *data, size_t len)
{
    bool ok = true;

    for (size_t i = 0; i < len && ok; i++) {
        if (data[i] != '\n' && cmd->len + 1 < sizeof(cmd->line)) {
            cmd->line[cmd->len++] = data[i];
        } else if (data[i] == '\n') {
            unsigned long long n = 0;

            cmd->line[cmd->len] = '\0';
            cmd->len = 0;
            ok = sscanf(cmd->line, "%15s %llu", cmd->what, &n) == 2;
            cmd->target = n;
            cmd->pending = ok;
            cmd->reached_ns = 0;
        }
    }
    return ok;
}

/* Measures once the target has been reached and held for SETTLE_MS; returns ms to wait, or -1. */
static int command_check(struct command *cmd, const struct idle_counts *counts)
{
    int wait_ms = -1;
    int64_t now = bench_now_ns();

    if (cmd->pending && counts->established >= cmd->target) {
        if (cmd->reached_ns == 0) {
            cmd->reached_ns = now;
        }
        wait_ms = (int)((cmd->reached_ns + (int64_t)SETTLE_MS * 1000000 - now) / 1000000);
        if (wait_ms <= 0) {
            report(cmd->what, counts);
            cmd->pending = false;
            wait_ms = -1;
        }
    }
    return wait_ms;
}

static int listen_socket(uint16_t *port)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    socklen_t len = sizeof(addr);
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    }
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, 1024) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
        fprintf(stderr, "idle server: listen: %s\n", strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        fd = -1;
    } else {
        *port = ntohs(addr.sin_port);
    }
    return fd;
}

/* ---- Raw servers on epoll ---- */

struct raw_conn {
    int fd;
    bool ready;
    void *session; /* SSL * or gnutls_session_t */
};

/* The TLS library under a raw server. */
struct raw_tls {
    const char *name;
    int (*setup)(const char *dir);
    /* Makes the session for a new connection. */
    int (*start)(struct raw_conn *c);
    /* Runs the handshake or, once ready, reads: BENCH_OK, BENCH_AGAIN with *events, or an error
     * (BENCH_CLOSED at the peer's close). */
    int (*step)(struct raw_conn *c, uint32_t *events);
    void (*name_conn)(struct raw_conn *c, struct idle_counts *counts);
    void (*end)(struct raw_conn *c);
};

static SSL_CTX *ossl_ctx;

static int ossl_setup(const char *dir)
{
    char cert[128];
    char key[128];
    int rc = BENCH_ERROR;

    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    ossl_ctx = SSL_CTX_new(TLS_server_method());
    if (ossl_ctx != NULL && SSL_CTX_set_min_proto_version(ossl_ctx, TLS1_3_VERSION) == 1 &&
        SSL_CTX_set_max_proto_version(ossl_ctx, TLS1_3_VERSION) == 1 &&
        SSL_CTX_use_certificate_chain_file(ossl_ctx, cert) == 1 &&
        SSL_CTX_use_PrivateKey_file(ossl_ctx, key, SSL_FILETYPE_PEM) == 1) {
        /* A server holding many idle connections frees their record buffers between uses. */
        SSL_CTX_set_mode(ossl_ctx, SSL_MODE_RELEASE_BUFFERS);
        rc = BENCH_OK;
    } else {
        bench_ssl_error("idle server context");
    }
    return rc;
}

static int ossl_start(struct raw_conn *c)
{
    SSL *ssl = SSL_new(ossl_ctx);
    int rc = BENCH_ERROR;

    if (ssl != NULL && SSL_set_fd(ssl, c->fd) == 1) {
        SSL_set_accept_state(ssl);
        c->session = ssl;
        rc = BENCH_OK;
    } else {
        bench_ssl_error("SSL_new");
        SSL_free(ssl);
    }
    return rc;
}

static int ossl_step(struct raw_conn *c, uint32_t *events)
{
    static unsigned char buf[4096];
    SSL *ssl = c->session;
    int r = c->ready ? SSL_read(ssl, buf, sizeof(buf)) : SSL_do_handshake(ssl);
    int rc = BENCH_OK;

    *events = EPOLLIN;
    if (r <= 0) {
        int err = SSL_get_error(ssl, r);

        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
            *events = err == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT;
            rc = BENCH_AGAIN;
        } else if (err == SSL_ERROR_ZERO_RETURN) {
            rc = BENCH_CLOSED;
        } else {
            bench_ssl_error(c->ready ? "SSL_read" : "SSL_do_handshake");
            rc = BENCH_ERROR;
        }
    }
    return rc;
}

static void ossl_name(struct raw_conn *c, struct idle_counts *counts)
{
    snprintf(counts->cipher, sizeof(counts->cipher), "%s", SSL_get_cipher_name(c->session));
    snprintf(counts->impl, sizeof(counts->impl), "openssl");
}

static void ossl_end(struct raw_conn *c)
{
    SSL_free(c->session);
    ERR_clear_error();
}

static const struct raw_tls raw_openssl = {
    .name = "openssl",
    .setup = ossl_setup,
    .start = ossl_start,
    .step = ossl_step,
    .name_conn = ossl_name,
    .end = ossl_end,
};

#ifdef BENCH_HAVE_GNUTLS
static gnutls_certificate_credentials_t gtls_cred;
static gnutls_priority_t gtls_prio;

static int gtls_setup(const char *dir)
{
    char cert[128];
    char key[128];
    int ret;

    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    ret = gnutls_certificate_allocate_credentials(&gtls_cred);
    if (ret >= 0) {
        ret = gnutls_certificate_set_x509_key_file(gtls_cred, cert, key, GNUTLS_X509_FMT_PEM);
    }
    /* The raw GnuTLS baseline's priority in the handshake cases (side_raw_gnutls.c). */
    if (ret >= 0) {
        ret = gnutls_priority_init(&gtls_prio, "NORMAL:-VERS-ALL:+VERS-TLS1.3", NULL);
    }
    if (ret < 0) {
        fprintf(stderr, "idle server: GnuTLS setup: %s\n", gnutls_strerror(ret));
    }
    return ret < 0 ? BENCH_ERROR : BENCH_OK;
}

static int gtls_start(struct raw_conn *c)
{
    gnutls_session_t s = NULL;
    int ret = gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NONBLOCK);

    if (ret >= 0) {
        ret = gnutls_priority_set(s, gtls_prio);
    }
    if (ret >= 0) {
        ret = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, gtls_cred);
    }
    if (ret < 0) {
        fprintf(stderr, "idle server: gnutls session: %s\n", gnutls_strerror(ret));
        if (s != NULL) {
            gnutls_deinit(s);
        }
    } else {
        gnutls_transport_set_int(s, c->fd);
        c->session = s;
    }
    return ret < 0 ? BENCH_ERROR : BENCH_OK;
}

static int gtls_step(struct raw_conn *c, uint32_t *events)
{
    static unsigned char buf[4096];
    gnutls_session_t s = c->session;
    int r = c->ready ? (int)gnutls_record_recv(s, buf, sizeof(buf)) : gnutls_handshake(s);
    int rc = BENCH_OK;

    *events = EPOLLIN;
    if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
        *events = gnutls_record_get_direction(s) == 0 ? EPOLLIN : EPOLLOUT;
        rc = BENCH_AGAIN;
    } else if (c->ready && r == 0) {
        rc = BENCH_CLOSED;
    } else if (r < 0 && gnutls_error_is_fatal(r)) {
        fprintf(stderr, "idle server: gnutls: %s\n", gnutls_strerror(r));
        rc = BENCH_ERROR;
    } else if (r < 0) {
        rc = BENCH_AGAIN; /* a warning alert: go on */
    }
    return rc;
}

static void gtls_name(struct raw_conn *c, struct idle_counts *counts)
{
    const char *name = gnutls_ciphersuite_get(c->session);

    snprintf(counts->cipher, sizeof(counts->cipher), "%s", name != NULL ? name : "?");
    snprintf(counts->impl, sizeof(counts->impl), "gnutls");
}

static void gtls_end(struct raw_conn *c)
{
    gnutls_deinit(c->session);
}

static const struct raw_tls raw_gnutls = {
    .name = "gnutls",
    .setup = gtls_setup,
    .start = gtls_start,
    .step = gtls_step,
    .name_conn = gtls_name,
    .end = gtls_end,
};
#endif

/* Tags of the epoll events that are not connections. */
static int listener_tag;
static int stdin_tag;

static void raw_drop(const struct raw_tls *tls, int ep, struct raw_conn *c,
                     struct idle_counts *counts)
{
    (void)epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->ready) {
        counts->established--;
    }
    tls->end(c);
    close(c->fd);
    free(c);
}

static void raw_step(const struct raw_tls *tls, int ep, struct raw_conn *c,
                     struct idle_counts *counts)
{
    uint32_t events = EPOLLIN;
    int rc = tls->step(c, &events);

    if (rc == BENCH_OK && !c->ready) {
        c->ready = true;
        if (counts->established++ == 0) {
            tls->name_conn(c, counts);
        }
        /* Ready and idle: watched for input, as an event loop's idle connections are. */
        rc = BENCH_AGAIN;
        events = EPOLLIN;
    }
    if (rc == BENCH_AGAIN || rc == BENCH_OK) {
        struct epoll_event ev = {.events = events, .data.ptr = c};

        (void)epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    } else {
        /* BENCH_CLOSED: the clients' close_notify at the end; errors were printed. */
        raw_drop(tls, ep, c, counts);
    }
}

static void raw_accept(const struct raw_tls *tls, int ep, int lfd, struct idle_counts *counts)
{
    int one = 1;
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

    while (fd >= 0) {
        struct raw_conn *c = calloc(1, sizeof(*c));
        struct epoll_event ev = {.events = EPOLLIN};

        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (c == NULL) {
            close(fd);
        } else {
            c->fd = fd;
            ev.data.ptr = c;
            if (tls->start(c) != BENCH_OK || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
                close(fd);
                free(c);
            } else {
                raw_step(tls, ep, c, counts);
            }
        }
        fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
        fprintf(stderr, "idle server: accept: %s\n", strerror(errno));
    }
}

static int raw_server(const struct raw_tls *tls, const char *dir)
{
    struct epoll_event events[256];
    struct idle_counts counts = {0};
    struct command cmd = {0};
    uint16_t port = 0;
    int lfd = -1;
    int ep = -1;
    bool quit = false;
    int rc = tls->setup(dir);
    int wait_ms = -1;

    if (rc == BENCH_OK) {
        lfd = listen_socket(&port);
        ep = epoll_create1(EPOLL_CLOEXEC);
        rc = lfd >= 0 && ep >= 0 ? BENCH_OK : BENCH_ERROR;
    }
    if (rc == BENCH_OK) {
        struct epoll_event lev = {.events = EPOLLIN, .data.ptr = &listener_tag};
        struct epoll_event sev = {.events = EPOLLIN, .data.ptr = &stdin_tag};

        if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) != 0 ||
            epoll_ctl(ep, EPOLL_CTL_ADD, STDIN_FILENO, &sev) != 0) {
            fprintf(stderr, "idle server: epoll_ctl: %s\n", strerror(errno));
            rc = BENCH_ERROR;
        }
    }
    if (rc == BENCH_OK) {
        printf("port %u\n", port);
        fflush(stdout);
    }
    /* Ends when the parent closes our stdin; it kills us if we do not exit in time. */
    while (rc == BENCH_OK && !quit) {
        int n = epoll_wait(ep, events, (int)(sizeof(events) / sizeof(events[0])), wait_ms);

        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == &listener_tag) {
                raw_accept(tls, ep, lfd, &counts);
            } else if (events[i].data.ptr == &stdin_tag) {
                char buf[256];
                ssize_t len = read(STDIN_FILENO, buf, sizeof(buf));

                quit = len <= 0;
                if (len > 0 && !command_input(&cmd, buf, (size_t)len)) {
                    rc = BENCH_ERROR;
                }
            } else {
                raw_step(tls, ep, events[i].data.ptr, &counts);
            }
        }
        wait_ms = command_check(&cmd, &counts);
    }
    /* The connections are not freed one by one: the process ends here. */
    if (ep >= 0) {
        close(ep);
    }
    if (lfd >= 0) {
        close(lfd);
    }
    return rc == BENCH_OK ? 0 : 1;
}

/* ---- The tlsock_uv server ---- */

struct uv_idle {
    uv_loop_t loop;
    uv_pipe_t in;
    uv_timer_t settle;
    struct tlsock_uv_server *server;
    struct idle_counts counts;
    struct command cmd;
    struct uv_idle_conn *conns;
    bool quitting;
    int rc;
};

struct uv_idle_conn {
    struct uv_idle_conn *prev;
    struct uv_idle_conn *next;
    struct tlsock_uv_conn *conn;
    struct uv_idle *st;
};

static void uv_idle_check(struct uv_idle *st);

static void uv_idle_on_settle(uv_timer_t *timer)
{
    uv_idle_check(timer->data);
}

static void uv_idle_check(struct uv_idle *st)
{
    int wait_ms = command_check(&st->cmd, &st->counts);

    if (wait_ms >= 0 && !st->quitting) {
        (void)uv_timer_start(&st->settle, uv_idle_on_settle, (uint64_t)wait_ms, 0);
    }
}

static void uv_idle_on_close(struct tlsock_uv_conn *conn)
{
    struct uv_idle_conn *node = tlsock_uv_conn_user(conn);

    if (node != NULL) {
        if (node->prev != NULL) {
            node->prev->next = node->next;
        } else {
            node->st->conns = node->next;
        }
        if (node->next != NULL) {
            node->next->prev = node->prev;
        }
        node->st->counts.established--;
        free(node);
    }
}

static void uv_idle_on_connect(struct tlsock_uv_conn *conn, int status)
{
    struct uv_idle *st = tlsock_uv_conn_user(conn);
    struct uv_idle_conn *node = status == 0 && !st->quitting ? calloc(1, sizeof(*node)) : NULL;

    tlsock_uv_conn_set_user(conn, node);
    if (node == NULL) {
        tlsock_uv_close(conn);
        goto out;
    }
    node->conn = conn;
    node->st = st;
    node->next = st->conns;
    if (st->conns != NULL) {
        st->conns->prev = node;
    }
    st->conns = node;
    if (st->counts.established++ == 0) {
        const struct tlsock_info *info = NULL;

        if (tlsock_conn_info(tlsock_uv_conn_tls(conn), &info) == 0) {
            snprintf(st->counts.cipher, sizeof(st->counts.cipher), "%s", info->cipher);
            snprintf(st->counts.impl, sizeof(st->counts.impl), "%s", info->impl);
        }
    }
    uv_idle_check(st);

out:
    return;
}

static void uv_idle_on_event(struct tlsock_uv_conn *conn, int code)
{
    struct uv_idle_conn *node = tlsock_uv_conn_user(conn);

    /* The clients' close_notify at the end is expected; anything else is worth a line. */
    if (node != NULL && code != TLSOCK_ECLOSED) {
        fprintf(stderr, "idle server: connection event %s: %s\n", tlsock_err_name(code),
                tlsock_uv_conn_errmsg(conn));
    }
    tlsock_uv_close(conn);
}

static void uv_idle_on_accept_error(struct tlsock_uv_server *server, int code, const char *message)
{
    struct uv_idle *st = tlsock_uv_server_user(server);

    if (!st->quitting) {
        fprintf(stderr, "idle server: accept: %s: %s\n", tlsock_err_name(code), message);
    }
}

static void uv_idle_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    static char space[256];

    (void)handle;
    (void)suggested;
    *buf = uv_buf_init(space, sizeof(space));
}

static void uv_idle_quit(struct uv_idle *st)
{
    st->quitting = true;
    tlsock_uv_server_close(st->server, NULL);
    for (struct uv_idle_conn *node = st->conns; node != NULL; node = node->next) {
        tlsock_uv_close(node->conn);
    }
    uv_close((uv_handle_t *)&st->in, NULL);
    uv_close((uv_handle_t *)&st->settle, NULL);
}

static void uv_idle_on_stdin(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf)
{
    struct uv_idle *st = stream->data;

    if (n > 0 && !command_input(&st->cmd, buf->base, (size_t)n)) {
        st->rc = BENCH_ERROR;
        n = UV_EOF;
    }
    if (n > 0) {
        uv_idle_check(st);
    } else if (n < 0 && !st->quitting) {
        uv_idle_quit(st);
    }
}

static int uv_server(int impl, const char *dir)
{
    static struct uv_idle st;
    struct tlsock_ctx *ctx = NULL;
    struct tlsock_uv_opts opts = TLSOCK_UV_OPTS_INIT;
    char cert[128];
    char key[128];
    int rc;

    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    rc = tlsock_ctx_new(TLSOCK_SERVER, &ctx);
    if (rc == 0) {
        rc = tlsock_ctx_set_impl(ctx, impl);
    }
    if (rc == 0) {
        rc = tlsock_ctx_set_protocols(ctx, "1.3");
    }
    if (rc == 0) {
        rc = tlsock_ctx_set_cert_file(ctx, cert, key);
    }
    if (rc != 0) {
        fprintf(stderr, "idle server: context: %s: %s\n", tlsock_err_name(rc),
                ctx != NULL ? tlsock_ctx_errmsg(ctx) : tlsock_errmsg());
        goto out;
    }
    (void)uv_loop_init(&st.loop);
    (void)uv_timer_init(&st.loop, &st.settle);
    st.settle.data = &st;
    (void)uv_pipe_init(&st.loop, &st.in, 0);
    st.in.data = &st;
    opts.handshake_timeout_ms = BENCH_IO_TIMEOUT_MS;
    opts.on_connect = uv_idle_on_connect;
    opts.on_event = uv_idle_on_event;
    opts.on_close = uv_idle_on_close;
    opts.on_accept_error = uv_idle_on_accept_error;
    opts.user = &st;
    rc = uv_pipe_open(&st.in, STDIN_FILENO);
    if (rc == 0) {
        rc = uv_read_start((uv_stream_t *)&st.in, uv_idle_alloc, uv_idle_on_stdin);
    }
    if (rc != 0) {
        fprintf(stderr, "idle server: stdin: %s\n", uv_strerror(rc));
    } else {
        rc = tlsock_uv_serve(&st.loop, ctx, "127.0.0.1", 0, 1024, &opts, &st.server);
        if (rc != 0) {
            fprintf(stderr, "idle server: serve: %s: %s\n", tlsock_err_name(rc), tlsock_errmsg());
        }
    }
    if (rc != 0) {
        uv_close((uv_handle_t *)&st.in, NULL);
        uv_close((uv_handle_t *)&st.settle, NULL);
    } else {
        printf("port %u\n", tlsock_uv_server_port(st.server));
        fflush(stdout);
    }
    /* Ends once stdin is closed and everything with it (uv_idle_quit). */
    (void)uv_run(&st.loop, UV_RUN_DEFAULT);
    (void)uv_loop_close(&st.loop);
    if (st.rc != BENCH_OK) {
        rc = 1;
    }

out:
    tlsock_ctx_free(ctx);
    return rc == 0 ? 0 : 1;
}

/* ---- The clients ---- */

struct idle_clients {
    uv_loop_t loop;
    struct tlsock_ctx *ctx;
    uint16_t port;
    struct tlsock_uv_conn **conns;
    uint64_t total;   /* capacity of conns */
    uint64_t target;  /* connections this phase ends with */
    uint64_t started; /* connections started */
    uint64_t ready;   /* connections up */
    uint64_t in_flight;
    int rc;
};

static void clients_more(struct idle_clients *cl);

static void clients_on_connect(struct tlsock_uv_conn *conn, int status)
{
    struct idle_clients *cl = uv_loop_get_data(tlsock_uv_conn_loop(conn));

    cl->in_flight--;
    if (status != 0) {
        fprintf(stderr, "idle clients: connect: %s: %s\n", tlsock_err_name(status),
                tlsock_uv_conn_errmsg(conn));
        cl->rc = BENCH_ERROR;
        uv_stop(&cl->loop);
    } else {
        cl->ready++;
        clients_more(cl);
    }
}

static void clients_on_event(struct tlsock_uv_conn *conn, int code)
{
    struct idle_clients *cl = uv_loop_get_data(tlsock_uv_conn_loop(conn));

    fprintf(stderr, "idle clients: connection event %s: %s\n", tlsock_err_name(code),
            tlsock_uv_conn_errmsg(conn));
    cl->rc = BENCH_ERROR;
    uv_stop(&cl->loop);
}

static void clients_more(struct idle_clients *cl)
{
    while (cl->rc == BENCH_OK && cl->started < cl->target && cl->in_flight < CLIENT_IN_FLIGHT) {
        struct tlsock_uv_opts opts = TLSOCK_UV_OPTS_INIT;
        int rc;

        opts.servername = BENCH_SERVER_NAME;
        opts.connect_timeout_ms = BENCH_IO_TIMEOUT_MS;
        opts.handshake_timeout_ms = 3 * BENCH_IO_TIMEOUT_MS;
        opts.on_connect = clients_on_connect;
        opts.on_event = clients_on_event;
        rc = tlsock_uv_connect(&cl->loop, cl->ctx, "127.0.0.1", cl->port, &opts,
                               &cl->conns[cl->started]);
        if (rc != 0) {
            fprintf(stderr, "idle clients: connect: %s: %s\n", tlsock_err_name(rc),
                    tlsock_errmsg());
            cl->rc = BENCH_ERROR;
        } else {
            cl->started++;
            cl->in_flight++;
        }
    }
    if (cl->rc != BENCH_OK || cl->ready >= cl->target) {
        uv_stop(&cl->loop);
    }
}

/* Runs the loop until @p target connections are up; prints "@p what N". */
static int clients_phase(struct idle_clients *cl, uint64_t target, const char *what)
{
    cl->target = target;
    clients_more(cl);
    while (cl->rc == BENCH_OK && cl->ready < cl->target) {
        (void)uv_run(&cl->loop, UV_RUN_DEFAULT);
    }
    if (cl->rc == BENCH_OK) {
        printf("%s %llu\n", what, (unsigned long long)cl->ready);
        fflush(stdout);
    }
    return cl->rc;
}

static int clients_main(const char *port, const char *dir, const char *warm, const char *count)
{
    static struct idle_clients cl;
    char ca[128];
    char line[64];
    uint64_t nwarm = strtoull(warm, NULL, 10);
    uint64_t n = strtoull(count, NULL, 10);
    int impl =
        tlsock_impl_available(TLSOCK_IMPL_OPENSSL) ? TLSOCK_IMPL_OPENSSL : TLSOCK_IMPL_GNUTLS;
    int rc;

    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    cl.port = (uint16_t)strtoul(port, NULL, 10);
    cl.total = nwarm + n;
    cl.conns = calloc(cl.total, sizeof(*cl.conns));
    rc = cl.conns != NULL ? tlsock_ctx_new(TLSOCK_CLIENT, &cl.ctx) : TLSOCK_ENOMEM;
    if (rc == 0) {
        rc = tlsock_ctx_set_impl(cl.ctx, impl);
    }
    if (rc == 0) {
        rc = tlsock_ctx_set_protocols(cl.ctx, "1.3");
    }
    if (rc == 0) {
        rc = tlsock_ctx_set_ca_file(cl.ctx, ca);
    }
    if (rc != 0) {
        fprintf(stderr, "idle clients: context: %s\n", tlsock_err_name(rc));
        goto out;
    }
    (void)uv_loop_init(&cl.loop);
    uv_loop_set_data(&cl.loop, &cl);
    rc = clients_phase(&cl, nwarm, "warm");
    /* The parent measures the server now; then "go". */
    if (rc == BENCH_OK && (fgets(line, sizeof(line), stdin) == NULL || strncmp(line, "go", 2))) {
        rc = BENCH_ERROR;
    }
    if (rc == BENCH_OK) {
        rc = clients_phase(&cl, cl.total, "done");
    }
    /* Hold everything until the parent is done measuring: it closes our stdin. */
    while (rc == BENCH_OK && fgets(line, sizeof(line), stdin) != NULL) {
    }
    for (uint64_t i = 0; i < cl.started; i++) {
        tlsock_uv_close(cl.conns[i]);
    }
    cl.target = 0;
    (void)uv_run(&cl.loop, UV_RUN_DEFAULT);
    (void)uv_loop_close(&cl.loop);

out:
    tlsock_ctx_free(cl.ctx);
    free(cl.conns);
    return rc == 0 ? 0 : 1;
}

int bench_idle_child(int argc, char **argv)
{
    int status = 2;

    raise_fd_limit();
    signal(SIGPIPE, SIG_IGN);
    if (argc == 4 && strcmp(argv[0], "server") == 0) {
        bool gnutls = strcmp(argv[2], "gnutls") == 0;

        /* Before OpenSSL allocates anything, or it refuses. */
        tls_heap_counted =
            !gnutls && CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free) == 1;
        if (strcmp(argv[1], "tlsock") == 0) {
            status = uv_server(gnutls ? TLSOCK_IMPL_GNUTLS : TLSOCK_IMPL_OPENSSL, argv[3]);
        } else if (!gnutls) {
            status = raw_server(&raw_openssl, argv[3]);
#ifdef BENCH_HAVE_GNUTLS
        } else {
            status = raw_server(&raw_gnutls, argv[3]);
#endif
        }
    } else if (argc == 5 && strcmp(argv[0], "clients") == 0) {
        status = clients_main(argv[1], argv[2], argv[3], argv[4]);
    } else {
        fprintf(stderr, "tlsock-bench %s: bad arguments\n", BENCH_IDLE_CHILD_ARG);
    }
    return status;
}

/* ---- The parent ---- */

struct child {
    pid_t pid;
    int to;   /* its stdin */
    int from; /* its stdout */
    char buf[512];
    size_t len;
};

static int child_spawn(struct child *c, char *const argv[])
{
    posix_spawn_file_actions_t actions;
    int in[2] = {-1, -1};
    int out[2] = {-1, -1};
    int rc = BENCH_ERROR;

    c->pid = -1;
    c->to = -1;
    c->from = -1;
    c->len = 0;
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
        fprintf(stderr, "idle: pipe: %s\n", strerror(errno));
        goto close_pipes;
    }
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    rc = posix_spawn(&c->pid, "/proc/self/exe", &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
        fprintf(stderr, "idle: cannot run /proc/self/exe: %s\n", strerror(rc));
        c->pid = -1;
        rc = BENCH_ERROR;
        goto close_pipes;
    }
    c->to = in[1];
    c->from = out[0];
    in[1] = -1;
    out[0] = -1;
    rc = BENCH_OK;

close_pipes:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0) {
            close(in[i]);
        }
        if (out[i] >= 0) {
            close(out[i]);
        }
    }
    return rc;
}

/* One line from the child within @p timeout_ms, without its newline. */
static int child_line(struct child *c, const char *who, int timeout_ms, char *line, size_t cap)
{
    int64_t deadline = bench_now_ns() + (int64_t)timeout_ms * 1000000;
    char *nl = memchr(c->buf, '\n', c->len);
    int rc = BENCH_OK;

    while (rc == BENCH_OK && nl == NULL) {
        int64_t left = (deadline - bench_now_ns()) / 1000000;
        struct pollfd pfd = {.fd = c->from, .events = POLLIN};
        ssize_t n = 0;

        if (left <= 0 || c->len == sizeof(c->buf)) {
            fprintf(stderr, "idle: no answer from the %s in %d ms\n", who, timeout_ms);
            rc = BENCH_ERROR;
        } else if (poll(&pfd, 1, (int)left) > 0) {
            n = read(c->from, c->buf + c->len, sizeof(c->buf) - c->len);
            if (n <= 0) {
                fprintf(stderr, "idle: the %s exited early\n", who);
                rc = BENCH_ERROR;
            }
        }
        if (n > 0) {
            c->len += (size_t)n;
            nl = memchr(c->buf, '\n', c->len);
        }
    }
    if (rc == BENCH_OK) {
        size_t len = (size_t)(nl - c->buf);

        snprintf(line, cap, "%.*s", (int)len, c->buf);
        memmove(c->buf, nl + 1, c->len - len - 1);
        c->len -= len + 1;
    }
    return rc;
}

static int child_send(struct child *c, const char *line)
{
    size_t len = strlen(line);

    return write(c->to, line, len) == (ssize_t)len ? BENCH_OK : BENCH_ERROR;
}

/* Closes its stdin and reaps it, killing it if it has not exited in time. */
static int child_finish(struct child *c, const char *who)
{
    int64_t deadline = bench_now_ns() + (int64_t)EXIT_TIMEOUT_MS * 1000000;
    int status = 0;
    pid_t done = 0;

    if (c->to >= 0) {
        close(c->to);
        c->to = -1;
    }
    while (c->pid > 0 && done == 0 && bench_now_ns() < deadline) {
        done = waitpid(c->pid, &status, WNOHANG);
        if (done == 0) {
            usleep(2000);
        }
    }
    if (c->pid > 0 && done == 0) {
        fprintf(stderr, "idle: the %s did not exit; killed\n", who);
        (void)kill(c->pid, SIGKILL);
        (void)waitpid(c->pid, &status, 0);
        status = -1;
    }
    if (c->from >= 0) {
        close(c->from);
        c->from = -1;
    }
    c->pid = -1;
    return status == 0 ? BENCH_OK : BENCH_ERROR;
}

static void child_kill(struct child *c)
{
    if (c->pid > 0) {
        (void)kill(c->pid, SIGKILL);
    }
}

/* A server's answer: "what RSS HEAP TLS N CIPHER IMPL". */
struct server_figures {
    long long rss;
    long long heap;
    long long tls;
    unsigned long long established;
    char cipher[64];
    char impl[16];
};

static int parse_figures(const char *line, const char *what, struct server_figures *f)
{
    char word[16];
    int rc = BENCH_OK;

    if (sscanf(line, "%15s %lld %lld %lld %llu %63s %15s", word, &f->rss, &f->heap, &f->tls,
               &f->established, f->cipher, f->impl) != 7 ||
        strcmp(word, what) != 0) {
        fprintf(stderr, "idle: unexpected answer from the server: \"%s\"\n", line);
        rc = BENCH_ERROR;
    }
    return rc;
}

struct idle_env {
    char dir[64];
    bool tlsock;
    int impl;
};

static int idle_measure(struct idle_env *env, int connections, struct bench_sample *out)
{
    char impl[16];
    char port[16];
    char warm[16];
    char count[16];
    char line[256];
    char *server_argv[] = {"tlsock-bench",
                           BENCH_IDLE_CHILD_ARG,
                           "server",
                           env->tlsock ? "tlsock" : "raw",
                           impl,
                           env->dir,
                           NULL};
    char *client_argv[] = {
        "tlsock-bench", BENCH_IDLE_CHILD_ARG, "clients", port, env->dir, warm, count, NULL};
    struct child server = {.pid = -1, .to = -1, .from = -1};
    struct child clients = {.pid = -1, .to = -1, .from = -1};
    struct server_figures mark = {0};
    struct server_figures end = {0};
    unsigned p = 0;
    int rc;

    snprintf(impl, sizeof(impl), "%s", env->impl == TLSOCK_IMPL_GNUTLS ? "gnutls" : "openssl");
    snprintf(warm, sizeof(warm), "%d", WARM_CONNECTIONS);
    snprintf(count, sizeof(count), "%d", connections);
    rc = child_spawn(&server, server_argv);
    if (rc == BENCH_OK) {
        rc = child_line(&server, "server", STEP_TIMEOUT_MS, line, sizeof(line));
    }
    if (rc == BENCH_OK && sscanf(line, "port %u", &p) != 1) {
        fprintf(stderr, "idle: unexpected answer from the server: \"%s\"\n", line);
        rc = BENCH_ERROR;
    }
    snprintf(port, sizeof(port), "%u", p);
    if (rc == BENCH_OK) {
        rc = child_spawn(&clients, client_argv);
    }
    if (rc == BENCH_OK) {
        rc = child_line(&clients, "clients", STEP_TIMEOUT_MS, line, sizeof(line));
    }
    if (rc == BENCH_OK) {
        snprintf(line, sizeof(line), "mark %d\n", WARM_CONNECTIONS);
        rc = child_send(&server, line);
    }
    if (rc == BENCH_OK) {
        rc = child_line(&server, "server", STEP_TIMEOUT_MS, line, sizeof(line));
    }
    if (rc == BENCH_OK) {
        rc = parse_figures(line, "mark", &mark);
    }
    if (rc == BENCH_OK) {
        rc = child_send(&clients, "go\n");
    }
    if (rc == BENCH_OK) {
        rc = child_line(&clients, "clients", CONNECT_TIMEOUT_MS, line, sizeof(line));
    }
    if (rc == BENCH_OK) {
        snprintf(line, sizeof(line), "measure %d\n", WARM_CONNECTIONS + connections);
        rc = child_send(&server, line);
    }
    if (rc == BENCH_OK) {
        rc = child_line(&server, "server", STEP_TIMEOUT_MS, line, sizeof(line));
    }
    if (rc == BENCH_OK) {
        rc = parse_figures(line, "measure", &end);
    }
    if (rc == BENCH_OK && end.established != (unsigned long long)(WARM_CONNECTIONS + connections)) {
        fprintf(stderr, "idle: the server holds %llu connections, not %d\n", end.established,
                WARM_CONNECTIONS + connections);
        rc = BENCH_ERROR;
    }
    if (rc != BENCH_OK) {
        child_kill(&clients);
        child_kill(&server);
    }
    /* The clients first, so that the server does not see them go while it is measured. */
    if (child_finish(&clients, "clients") != BENCH_OK && rc == BENCH_OK) {
        fprintf(stderr, "idle: the clients failed\n");
        rc = BENCH_ERROR;
    }
    if (child_finish(&server, "server") != BENCH_OK && rc == BENCH_OK) {
        fprintf(stderr, "idle: the server failed\n");
        rc = BENCH_ERROR;
    }
    if (rc == BENCH_OK) {
        out->count = (uint64_t)connections;
        out->rss_per_conn = (double)(end.rss - mark.rss) / connections;
        out->heap_per_conn = (double)(end.heap - mark.heap) / connections;
        out->tls_heap_per_conn =
            mark.tls >= 0 && end.tls >= 0 ? (double)(end.tls - mark.tls) / connections : -1;
        out->rate = out->rss_per_conn;
        snprintf(out->cipher, sizeof(out->cipher), "%s", end.cipher);
        snprintf(out->impl, sizeof(out->impl), "%s", end.impl);
    }
    return rc;
}

static void idle_teardown(void *envp)
{
    struct idle_env *env = envp;
    static const char *const files[] = {"ca.pem", "cert.pem", "key.pem"};
    char path[128];

    if (env != NULL) {
        for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
            snprintf(path, sizeof(path), "%s/%s", env->dir, files[i]);
            (void)unlink(path);
        }
        (void)rmdir(env->dir);
        free(env);
    }
}

static int write_pem(const char *dir, const char *name, const char *pem)
{
    char path[128];
    FILE *f;
    int rc = BENCH_ERROR;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    if (f != NULL && fputs(pem, f) >= 0) {
        rc = BENCH_OK;
    }
    if (f != NULL && fclose(f) != 0) {
        rc = BENCH_ERROR;
    }
    if (rc != BENCH_OK) {
        fprintf(stderr, "idle: cannot write %s\n", path);
    }
    return rc;
}

static int idle_setup_common(const struct bench_side_config *config, bool tlsock, void **out)
{
    struct idle_env *env = calloc(1, sizeof(*env));
    int rc = BENCH_ERROR;

    if (env == NULL) {
        goto out;
    }
    env->tlsock = tlsock;
    env->impl = config->impl;
    snprintf(env->dir, sizeof(env->dir), "/tmp/tlsock-bench-XXXXXX");
    if (mkdtemp(env->dir) == NULL) {
        fprintf(stderr, "idle: mkdtemp: %s\n", strerror(errno));
        free(env);
        env = NULL;
        goto out;
    }
    rc = write_pem(env->dir, "ca.pem", config->ca_pem);
    if (rc == BENCH_OK) {
        rc = write_pem(env->dir, "cert.pem", config->cert_pem);
    }
    if (rc == BENCH_OK) {
        rc = write_pem(env->dir, "key.pem", config->key_pem);
    }
    if (rc == BENCH_OK) {
        *out = env;
        env = NULL;
    }

out:
    idle_teardown(env);
    return rc;
}

static int raw_idle_setup(const struct bench_side_config *config, void **out)
{
    return idle_setup_common(config, false, out);
}

static int uv_idle_setup(const struct bench_side_config *config, void **out)
{
    return idle_setup_common(config, true, out);
}

static int idle_run(void *envp, const struct bench_limits *limits, struct bench_sample *out)
{
    memset(out, 0, sizeof(*out));
    return idle_measure(envp, limits->concurrency, out);
}

const struct bench_side bench_side_raw_idle = {
    .name = "raw",
    .setup = raw_idle_setup,
    .teardown = idle_teardown,
    .run = idle_run,
};

const struct bench_side bench_side_uv_idle = {
    .name = "tlsock",
    .setup = uv_idle_setup,
    .teardown = idle_teardown,
    .run = idle_run,
};
