/*
 * Memory per idle connection: how much a server process grows for each TLS connection it holds
 * open and idle, with concurrency (10,000 by default, --connections) of them on one server.
 *
 * Each side's server runs in a fresh process, so that nothing freed by an earlier run (the other
 * side's, or another case's) is reused and hides growth: tlsock-bench executes itself
 * (/proc/self/exe BENCH_IDLE_CHILD_ARG raw|tlsock openssl|gnutls, the case's certificates in its
 * environment; raw-block|tlsock-block for the blocking cases of case_idle_block.c, which measure
 * the same way), which prints "port P" and then answers each byte on its stdin:
 *
 *   'c'  ->  "count N"                          connections established and held
 *   'm'  ->  "mark RSS HEAP TLS N CIPHER IMPL"  its memory now
 *
 * until its stdin closes. The clients are tlsock_uv clients on a loop in this process, always on
 * OpenSSL (the same client for every server), 32 handshakes in flight. They open 64 warm-up
 * connections and keep them, so that what the first connections initialise once (method tables,
 * caches, the loop's fd table) is in the baseline; once the server holds them, and again after
 * the clients opened N more, the server is measured after 200 ms with nothing happening. The
 * growth divided by N is the figure: RSS (/proc/self/statm, the target's figure), malloc'ed bytes
 * in use (mallinfo2: every arena, mmapped chunks included), and on OpenSSL the part OpenSSL itself
 * allocated (counted through CRYPTO_set_mem_functions, installed before OpenSSL allocates
 * anything; GnuTLS has had no such hook since 3.3).
 *
 * The servers: raw OpenSSL with SSL_MODE_RELEASE_BUFFERS (as a careful program holding many idle
 * connections sets it) or raw GnuTLS, on non-blocking sockets and epoll, every idle connection
 * still watched for input as an event loop's are; or a tlsock_uv server on one loop (uv_server.c).
 * Every server gets its contexts from the same setup as every other case. Both implementations
 * are measured the same way and against the same target: tlsock's RSS per connection at most the
 * raw baseline's plus 1 KiB.
 */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "async.h"
#include "side.h"

/* Connections opened and left open before the baseline is measured. */
#define WARM_CONNECTIONS 64
/* Client handshakes in flight. */
#define CLIENT_IN_FLIGHT 32
/* Quiet time between reaching the target and measuring: tickets sent, nothing in flight. */
#define SETTLE_MS 200
/* Bounds on each step: an answer, the server reaching its count, connecting, exiting. */
#define STEP_TIMEOUT_MS    30000
#define CONNECT_TIMEOUT_MS 300000
#define EXIT_TIMEOUT_MS    10000

/* The environment variables that carry the certificates to the server process. */
static const char *const pem_vars[] = {"BENCH_IDLE_CA", "BENCH_IDLE_CERT", "BENCH_IDLE_KEY"};

/* Both processes hold more than the usual 1,024 descriptors. */
static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* ---- The server process: what it reports ---- */

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

void bench_idle_answer(char cmd, uint64_t held, const char *cipher, const char *impl)
{
    long long pages = 0;
    long long rss = -1;
    struct mallinfo2 mi;
    FILE *f;

    if (cmd == 'c') {
        printf("count %llu\n", (unsigned long long)held);
    } else if (cmd == 'm') {
        f = fopen("/proc/self/statm", "r");
        if (f != NULL && fscanf(f, "%*s %lld", &pages) == 1) {
            rss = pages * sysconf(_SC_PAGESIZE);
        }
        if (f != NULL) {
            fclose(f);
        }
        mi = mallinfo2();
        printf("mark %lld %lld %lld %llu %s %s\n", rss, (long long)(mi.uordblks + mi.hblkhd),
               tls_heap_counted ? atomic_load(&tls_heap) : -1LL, (unsigned long long)held,
               cipher[0] != '\0' ? cipher : "?", impl[0] != '\0' ? impl : "?");
    }
    fflush(stdout);
}

/* ---- The raw server: sessions on non-blocking sockets, epoll ---- */

struct raw_conn {
    int fd;
    bool ready;
    void *session; /* SSL * or gnutls_session_t */
};

/* The raw server's state; one per process. */
static struct {
    void *env; /* the raw layer's contexts (side_raw.h) */
    int ep;
    uint64_t held;
    char cipher[64];
    char impl[16];
} raw;

/* The TLS library under the raw server. */
struct raw_tls {
    /* Makes the session for a new connection. */
    int (*start)(struct raw_conn *c);
    /*
     * Runs the handshake or, once ready, reads: BENCH_OK, BENCH_AGAIN with *events, or an error
     * (BENCH_CLOSED at the peer's close).
     */
    int (*step)(struct raw_conn *c, uint32_t *events);
    const char *(*cipher)(struct raw_conn *c);
    void (*end)(struct raw_conn *c);
};

static int ossl_start(struct raw_conn *c)
{
    struct raw_env *env = raw.env;
    SSL *ssl = SSL_new(env->server);
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
    int err = r <= 0 ? SSL_get_error(ssl, r) : SSL_ERROR_NONE;
    int rc = BENCH_OK;

    *events = err == SSL_ERROR_WANT_WRITE ? EPOLLOUT : EPOLLIN;
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        rc = BENCH_AGAIN;
    } else if (err == SSL_ERROR_ZERO_RETURN) {
        rc = BENCH_CLOSED;
    } else if (err != SSL_ERROR_NONE) {
        bench_ssl_error(c->ready ? "SSL_read" : "SSL_do_handshake");
        rc = BENCH_ERROR;
    }
    return rc;
}

static const char *ossl_cipher(struct raw_conn *c)
{
    return SSL_get_cipher_name(c->session);
}

static void ossl_end(struct raw_conn *c)
{
    SSL_free(c->session);
    ERR_clear_error();
}

static const struct raw_tls raw_openssl = {ossl_start, ossl_step, ossl_cipher, ossl_end};

#ifdef BENCH_HAVE_GNUTLS
static int gtls_start(struct raw_conn *c)
{
    struct gtls_env *env = raw.env;
    gnutls_session_t s = NULL;
    int ret = gnutls_init(&s, GNUTLS_SERVER | GNUTLS_NONBLOCK);

    if (ret >= 0) {
        ret = gnutls_priority_set(s, env->prio);
    }
    if (ret >= 0) {
        ret = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, env->server_cred);
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

static const char *gtls_cipher(struct raw_conn *c)
{
    const char *name = gnutls_ciphersuite_get(c->session);

    return name != NULL ? name : "?";
}

static void gtls_end(struct raw_conn *c)
{
    gnutls_deinit(c->session);
}

static const struct raw_tls raw_gnutls = {gtls_start, gtls_step, gtls_cipher, gtls_end};
#endif

static void raw_step(const struct raw_tls *tls, struct raw_conn *c)
{
    uint32_t events = EPOLLIN;
    int rc = tls->step(c, &events);

    if (rc == BENCH_OK && !c->ready) {
        c->ready = true;
        if (raw.held++ == 0) {
            snprintf(raw.cipher, sizeof(raw.cipher), "%s", tls->cipher(c));
        }
        /* Ready and idle: watched for input, as an event loop's idle connections are. */
        rc = BENCH_AGAIN;
        events = EPOLLIN;
    }
    if (rc == BENCH_AGAIN || rc == BENCH_OK) {
        struct epoll_event ev = {.events = events, .data.ptr = c};

        (void)epoll_ctl(raw.ep, EPOLL_CTL_MOD, c->fd, &ev);
    } else {
        /* BENCH_CLOSED: the clients' close_notify at the end; errors were printed. */
        (void)epoll_ctl(raw.ep, EPOLL_CTL_DEL, c->fd, NULL);
        raw.held -= c->ready ? 1 : 0;
        tls->end(c);
        close(c->fd);
        free(c);
    }
}

static void raw_accept(const struct raw_tls *tls, int lfd)
{
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

    while (fd >= 0) {
        struct raw_conn *c = calloc(1, sizeof(*c));
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};

        bench_tcp_options(fd);
        if (c != NULL) {
            c->fd = fd;
        }
        if (c == NULL || tls->start(c) != BENCH_OK ||
            epoll_ctl(raw.ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close(fd);
            free(c);
        } else {
            raw_step(tls, c);
        }
        fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
        fprintf(stderr, "idle server: accept: %s\n", strerror(errno));
    }
}

/* Serves until the parent closes our stdin; the process ends then, its connections with it. */
static int raw_server(const struct raw_tls *tls)
{
    static int listener_tag;
    static int stdin_tag;
    struct epoll_event events[256];
    uint16_t port = 0;
    int lfd = bench_tcp_listen_fd("idle server", true, &port);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = &listener_tag};
    struct epoll_event sev = {.events = EPOLLIN, .data.ptr = &stdin_tag};
    bool quit = false;

    raw.ep = epoll_create1(EPOLL_CLOEXEC);
    if (lfd < 0 || raw.ep < 0 || epoll_ctl(raw.ep, EPOLL_CTL_ADD, lfd, &lev) != 0 ||
        epoll_ctl(raw.ep, EPOLL_CTL_ADD, STDIN_FILENO, &sev) != 0) {
        fprintf(stderr, "idle server: epoll: %s\n", strerror(errno));
        return 1;
    }
    printf("port %u\n", port);
    fflush(stdout);
    while (!quit) {
        int n = epoll_wait(raw.ep, events, (int)(sizeof(events) / sizeof(events[0])), -1);

        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == &listener_tag) {
                raw_accept(tls, lfd);
            } else if (events[i].data.ptr == &stdin_tag) {
                char cmd[64];
                ssize_t len = read(STDIN_FILENO, cmd, sizeof(cmd));

                quit = len <= 0;
                for (ssize_t k = 0; k < len; k++) {
                    bench_idle_answer(cmd[k], raw.held, raw.cipher, raw.impl);
                }
            } else {
                raw_step(tls, events[i].data.ptr);
            }
        }
    }
    return 0;
}

/* ---- The tlsock_uv server ---- */

static struct bench_uv_server uv_srv;
static uv_pipe_t uv_stdin;

static void uv_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    static char space[64];

    (void)handle;
    (void)suggested;
    *buf = uv_buf_init(space, sizeof(space));
}

static void uv_on_stdin(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf)
{
    for (ssize_t k = 0; k < n; k++) {
        bench_idle_answer(buf->base[k], uv_srv.held, uv_srv.cipher, uv_srv.impl);
    }
    if (n < 0) {
        bench_uv_server_close(&uv_srv);
        uv_close((uv_handle_t *)stream, NULL);
    }
}

static int uv_server(struct tls_env *env)
{
    int rc = bench_uv_server_init(&uv_srv, env->server, BENCH_UV_HOLD);

    if (rc != BENCH_OK) {
        return 1;
    }
    if (uv_pipe_init(&uv_srv.loop, &uv_stdin, 0) != 0) {
        bench_uv_server_close(&uv_srv);
    } else if (uv_pipe_open(&uv_stdin, STDIN_FILENO) != 0 ||
               uv_read_start((uv_stream_t *)&uv_stdin, uv_alloc, uv_on_stdin) != 0) {
        fprintf(stderr, "idle server: cannot read stdin on the loop\n");
        bench_uv_server_close(&uv_srv);
        uv_close((uv_handle_t *)&uv_stdin, NULL);
    } else {
        printf("port %u\n", uv_srv.port);
        fflush(stdout);
    }
    /* Ends once stdin is closed, and with it the server and every connection. */
    bench_uv_server_run(&uv_srv);
    return bench_uv_server_finish(&uv_srv) == BENCH_OK ? 0 : 1;
}

int bench_idle_child(int argc, char **argv)
{
    /* "raw" or "tlsock" on epoll or a loop; "raw-block" or "tlsock-block" (case_idle_block.c). */
    bool block = argc == 2 && strstr(argv[0], "-block") != NULL;
    bool tlsock = argc == 2 && strncmp(argv[0], "tlsock", 6) == 0;
    struct bench_config config = {
        .ca_pem = getenv(pem_vars[0]),
        .cert_pem = getenv(pem_vars[1]),
        .key_pem = getenv(pem_vars[2]),
        .impl =
            argc == 2 && strcmp(argv[1], "gnutls") == 0 ? TLSOCK_IMPL_GNUTLS : TLSOCK_IMPL_OPENSSL,
    };
    const struct bench_ops *ops = tlsock ? &bench_tlsock_ops : bench_raw_ops_for(config.impl);
    void *env = NULL;
    int status = 1;

    raise_fd_limit();
    signal(SIGPIPE, SIG_IGN);
    /* Before OpenSSL allocates anything, or it refuses. */
    tls_heap_counted = config.impl == TLSOCK_IMPL_OPENSSL &&
                       CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free) == 1;
    if (argc != 2 || ops == NULL || config.key_pem == NULL || ops->setup(&config, &env) != 0) {
        fprintf(stderr, "tlsock-bench %s: bad arguments or setup\n", BENCH_IDLE_CHILD_ARG);
        return 2;
    }
    raw.env = env;
    snprintf(raw.impl, sizeof(raw.impl), "%s", tlsock_impl_name(config.impl));
    if (!tlsock && config.impl == TLSOCK_IMPL_OPENSSL) {
        /* A server holding many idle connections frees their record buffers between uses. */
        SSL_CTX_set_mode(((struct raw_env *)env)->server, SSL_MODE_RELEASE_BUFFERS);
    }
    if (block) {
        status = bench_idle_block_server(ops, env);
    } else if (tlsock) {
        status = uv_server(env);
    } else if (config.impl == TLSOCK_IMPL_OPENSSL) {
        status = raw_server(&raw_openssl);
#ifdef BENCH_HAVE_GNUTLS
    } else {
        status = raw_server(&raw_gnutls);
#endif
    }
    return status;
}

/* ---- The clients, in this process ---- */

struct clients {
    uv_loop_t loop;
    uv_timer_t guard;
    struct tlsock_ctx *ctx;
    uint16_t port;
    struct tlsock_uv_conn **conns;
    uint64_t target;  /* connections this phase ends with */
    uint64_t started; /* connections started */
    uint64_t ready;   /* connections up */
    uint64_t in_flight;
    int rc;
};

static void clients_more(struct clients *cl);

static void clients_fail(struct clients *cl, int code, const char *what, const char *msg)
{
    if (cl->rc == BENCH_OK) {
        fprintf(stderr, "idle clients: %s: %s: %s\n", what, tlsock_err_name(code), msg);
    }
    cl->rc = BENCH_ERROR;
    uv_stop(&cl->loop);
}

static void clients_on_connect(struct tlsock_uv_conn *conn, int status)
{
    struct clients *cl = tlsock_uv_conn_user(conn);

    cl->in_flight--;
    if (status != 0) {
        clients_fail(cl, status, "connect", tlsock_uv_conn_errmsg(conn));
    } else {
        cl->ready++;
        clients_more(cl);
    }
}

static void clients_on_event(struct tlsock_uv_conn *conn, int code)
{
    clients_fail(tlsock_uv_conn_user(conn), code, "connection event", tlsock_uv_conn_errmsg(conn));
}

static void clients_on_guard(uv_timer_t *timer)
{
    clients_fail(timer->data, TLSOCK_ETIMEDOUT, "connect", "not all connected in time");
}

static void clients_more(struct clients *cl)
{
    while (cl->rc == BENCH_OK && cl->started < cl->target && cl->in_flight < CLIENT_IN_FLIGHT) {
        struct tlsock_uv_opts opts;
        int rc;

        bench_uv_opts(&opts, cl);
        opts.servername = BENCH_SERVER_NAME;
        opts.handshake_timeout_ms = 3 * BENCH_IO_TIMEOUT_MS;
        opts.on_connect = clients_on_connect;
        opts.on_event = clients_on_event;
        rc = tlsock_uv_connect(&cl->loop, cl->ctx, "127.0.0.1", cl->port, &opts,
                               &cl->conns[cl->started]);
        if (rc != 0) {
            clients_fail(cl, rc, "connect", tlsock_errmsg());
        } else {
            cl->started++;
            cl->in_flight++;
        }
    }
    if (cl->ready >= cl->target) {
        uv_stop(&cl->loop);
    }
}

/* Runs the loop until @p target connections are up, bounded by CONNECT_TIMEOUT_MS. */
static int clients_phase(struct clients *cl, uint64_t target)
{
    cl->target = target;
    (void)uv_timer_start(&cl->guard, clients_on_guard, CONNECT_TIMEOUT_MS, 0);
    clients_more(cl);
    while (cl->rc == BENCH_OK && cl->ready < cl->target) {
        (void)uv_run(&cl->loop, UV_RUN_DEFAULT);
    }
    (void)uv_timer_stop(&cl->guard);
    return cl->rc;
}

/* Closes every client connection and the loop. */
static void clients_close(struct clients *cl)
{
    for (uint64_t i = 0; i < cl->started; i++) {
        tlsock_uv_close(cl->conns[i]);
    }
    uv_close((uv_handle_t *)&cl->guard, NULL);
    (void)uv_run(&cl->loop, UV_RUN_DEFAULT);
    (void)uv_loop_close(&cl->loop);
}

/* ---- One run: a server process, measured with the warm-up connections and with all ---- */

/* What the server answers to 'm'. */
struct figures {
    long long rss;
    long long heap;
    long long tls;
    unsigned long long held;
    char cipher[64];
    char impl[16];
};

/* Waits until the server holds @p target connections, lets it settle, and measures it. */
static int measure(struct bench_child *server, uint64_t target, struct figures *f)
{
    int64_t deadline = bench_now_ns() + (int64_t)STEP_TIMEOUT_MS * 1000000;
    unsigned long long held = 0;
    char line[256];
    int rc = BENCH_OK;

    while (rc == BENCH_OK && held < target) {
        rc = bench_child_send(server, "c");
        if (rc == BENCH_OK) {
            rc = bench_child_line(server, STEP_TIMEOUT_MS, line, sizeof(line));
        }
        if (rc == BENCH_OK &&
            (sscanf(line, "count %llu", &held) != 1 || bench_now_ns() > deadline)) {
            fprintf(stderr, "idle: the server holds %llu connections, not %llu (\"%s\")\n", held,
                    (unsigned long long)target, line);
            rc = BENCH_ERROR;
        }
        if (rc == BENCH_OK && held < target) {
            usleep(10000);
        }
    }
    usleep(SETTLE_MS * 1000);
    if (rc == BENCH_OK) {
        rc = bench_child_send(server, "m");
    }
    if (rc == BENCH_OK) {
        rc = bench_child_line(server, STEP_TIMEOUT_MS, line, sizeof(line));
    }
    if (rc == BENCH_OK && (sscanf(line, "mark %lld %lld %lld %llu %63s %15s", &f->rss, &f->heap,
                                  &f->tls, &f->held, f->cipher, f->impl) != 6 ||
                           f->held != target)) {
        fprintf(stderr, "idle: unexpected answer from the server: \"%s\"\n", line);
        rc = BENCH_ERROR;
    }
    return rc;
}

/* One side, @p kind "raw" or "tlsock", its server process's kind suffixed with run->extra. */
static int idle(const struct bench_run *run, const char *kind, struct bench_sample *out)
{
    char impl[16];
    char kind_arg[16];
    char *argv[] = {"/proc/self/exe", BENCH_IDLE_CHILD_ARG, kind_arg, impl, NULL};
    const char *pems[] = {run->config->ca_pem, run->config->cert_pem, run->config->key_pem};
    /* The same clients for every server: tlsock on OpenSSL. */
    struct bench_config client_config = *run->config;
    struct tls_env *client = NULL;
    struct clients cl = {.rc = BENCH_OK};
    struct bench_child server;
    struct figures mark = {0};
    struct figures end = {0};
    uint64_t n = (uint64_t)run->limits.concurrency;
    char line[64];
    unsigned port = 0;
    int rc;

    snprintf(kind_arg, sizeof(kind_arg), "%s%s", kind,
             run->extra != NULL ? (const char *)run->extra : "");
    snprintf(impl, sizeof(impl), "%s", tlsock_impl_name(run->config->impl));
    client_config.impl = TLSOCK_IMPL_OPENSSL;
    raise_fd_limit();
    for (size_t i = 0; i < 3; i++) {
        (void)setenv(pem_vars[i], pems[i], 1);
    }
    rc = bench_child_spawn(&server, "idle server", argv, NULL);
    for (size_t i = 0; i < 3; i++) {
        (void)unsetenv(pem_vars[i]);
    }
    if (rc == BENCH_OK) {
        rc = bench_child_line(&server, STEP_TIMEOUT_MS, line, sizeof(line));
    }
    if (rc == BENCH_OK && sscanf(line, "port %u", &port) != 1) {
        fprintf(stderr, "idle: unexpected answer from the server: \"%s\"\n", line);
        rc = BENCH_ERROR;
    }
    if (rc == BENCH_OK) {
        rc = bench_tlsock_ops.setup(&client_config, (void **)&client);
    }
    if (rc == BENCH_OK) {
        cl.ctx = client->client;
        cl.port = (uint16_t)port;
        cl.conns = calloc(WARM_CONNECTIONS + n, sizeof(*cl.conns));
        rc = cl.conns != NULL && uv_loop_init(&cl.loop) == 0 ? BENCH_OK : BENCH_ERROR;
    }
    if (rc == BENCH_OK) {
        (void)uv_timer_init(&cl.loop, &cl.guard);
        cl.guard.data = &cl;
        rc = clients_phase(&cl, WARM_CONNECTIONS);
        if (rc == BENCH_OK) {
            rc = measure(&server, WARM_CONNECTIONS, &mark);
        }
        if (rc == BENCH_OK) {
            rc = clients_phase(&cl, WARM_CONNECTIONS + n);
        }
        if (rc == BENCH_OK) {
            rc = measure(&server, WARM_CONNECTIONS + n, &end);
        }
        /* The clients first, so that the server sees close_notify rather than its stdin close. */
        clients_close(&cl);
    }
    if (bench_child_stop(&server, rc == BENCH_OK ? 0 : SIGKILL, EXIT_TIMEOUT_MS) != BENCH_OK &&
        rc == BENCH_OK) {
        fprintf(stderr, "idle: the server failed\n");
        rc = BENCH_ERROR;
    }
    bench_tlsock_ops.teardown(client);
    free(cl.conns);
    if (rc == BENCH_OK) {
        out->count = n;
        out->rate = (double)(end.rss - mark.rss) / (double)n;
        out->heap_per_conn = (double)(end.heap - mark.heap) / (double)n;
        out->tls_heap_per_conn =
            mark.tls >= 0 && end.tls >= 0 ? (double)(end.tls - mark.tls) / n : -1;
        snprintf(out->cipher, sizeof(out->cipher), "%s", end.cipher);
        snprintf(out->impl, sizeof(out->impl), "%s", end.impl);
    }
    return rc;
}

int bench_idle_raw(const struct bench_run *run, struct bench_sample *out)
{
    return idle(run, "raw", out);
}

int bench_idle_tlsock(const struct bench_run *run, struct bench_sample *out)
{
    return idle(run, "tlsock", out);
}

static const struct bench_case cases[] = {
    {.name = "async-idle-10k",
     .summary = "server memory per idle TLS connection, 10,000 of them on one tlsock_uv loop, "
                "against raw OpenSSL with SSL_MODE_RELEASE_BUFFERS on epoll",
     BENCH_IDLE_CASE},
    {.name = "async-idle-10k-gnutls",
     .summary = "as async-idle-10k with the tlsock_uv server on GnuTLS, against raw GnuTLS on "
                "epoll",
     .impl = TLSOCK_IMPL_GNUTLS,
     BENCH_IDLE_CASE},
};

const struct bench_cases bench_idle_cases = BENCH_CASES(cases);
