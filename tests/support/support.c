/* Test helpers; see support.h. */
#include "support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Which allocator counts the heap in this build (ts_heap_in_use()). */
#if defined(__SANITIZE_ADDRESS__)
#define TS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TS_ASAN 1
#endif
#endif
#if defined(TS_ASAN)
/* From <sanitizer/allocator_interface.h>, which not every compiler ships. */
size_t __sanitizer_get_current_allocated_bytes(void);
#elif defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define TS_MEMCHECK 1
#endif
#endif

struct ts_pki ts_pki;

const char *ts_rc_name(int rc)
{
    const char *name = "UNKNOWN";

    if (rc == 0) {
        name = "OK";
    } else if (rc == TS_EMISMATCH) {
        name = "TS_EMISMATCH";
    } else if (rc == TS_NOT_RUN) {
        name = "TS_NOT_RUN";
    } else if (rc == TS_ESETUP) {
        name = "TS_ESETUP";
    } else {
        name = tlsock_err_name(rc);
    }
    return name;
}

void ts_assert_rc_at(int actual, int expected, const char *expr, const char *detail,
                     const char *file, int line)
{
    if (actual != expected) {
        print_error("%s: expected %s (%d), got %s (%d); detail: \"%s\"\n", expr,
                    ts_rc_name(expected), expected, ts_rc_name(actual), actual,
                    detail != NULL ? detail : "(null)");
        _fail(file, line);
    }
}

void ts_assert_contains_at(const char *haystack, const char *needle, const char *file, int line)
{
    if (haystack == NULL || strcasestr(haystack, needle) == NULL) {
        print_error("\"%s\" does not contain \"%s\"\n", haystack != NULL ? haystack : "(null)",
                    needle);
        _fail(file, line);
    }
}

/* ---- certificates ---------------------------------------------------------------------------- */

int ts_cert_make(const struct tlsock__cert_spec *spec, struct tlsock__pem_pair *out)
{
    struct tlsock__err err = {0};
    int rc = tlsock__cert_generate(spec, out, &err);

    if (rc != 0) {
        print_error("certificate generation failed: %s (%s)\n", ts_rc_name(rc),
                    tlsock__err_msg(&err));
    }
    tlsock__err_free(&err);
    return rc;
}

int ts_leaf_make(const struct tlsock__pem_pair *issuer, const char *cn, const char *hosts, int eku,
                 struct tlsock__pem_pair *out)
{
    const struct tlsock__cert_spec spec = {
        .common_name = cn,
        .hosts = hosts,
        .not_before_s = -3600,
        .not_after_s = 30L * 86400,
        .eku = eku,
        .issuer_cert_pem = issuer->cert,
        .issuer_key_pem = issuer->key,
    };

    return ts_cert_make(&spec, out);
}

int ts_pki_setup(void **state)
{
    const struct tlsock__cert_spec ca = {
        .common_name = "tlsock test CA",
        .is_ca = true,
        .not_before_s = -3600,
        .not_after_s = 30L * 86400,
    };
    const struct tlsock__cert_spec other_ca = {
        .common_name = "tlsock untrusted CA",
        .is_ca = true,
        .not_before_s = -3600,
        .not_after_s = 30L * 86400,
    };
    int rc;

    (void)state;
    memset(&ts_pki, 0, sizeof(ts_pki));
    rc = ts_cert_make(&ca, &ts_pki.ca);
    if (rc == 0) {
        rc = ts_cert_make(&other_ca, &ts_pki.other_ca);
    }
    if (rc == 0) {
        rc = ts_leaf_make(&ts_pki.ca, TS_SERVER_CN, TS_SERVER_HOSTS, TLSOCK__EKU_SERVER,
                          &ts_pki.server);
    }
    if (rc == 0) {
        rc = ts_leaf_make(&ts_pki.ca, TS_CLIENT_CN, NULL, TLSOCK__EKU_CLIENT, &ts_pki.client);
    }
    return rc == 0 ? 0 : -1;
}

int ts_pki_teardown(void **state)
{
    (void)state;
    tlsock__pem_pair_free(&ts_pki.ca);
    tlsock__pem_pair_free(&ts_pki.server);
    tlsock__pem_pair_free(&ts_pki.client);
    tlsock__pem_pair_free(&ts_pki.other_ca);
    memset(&ts_pki, 0, sizeof(ts_pki));
    return 0;
}

/* ---- contexts and options -------------------------------------------------------------------- */

int ts_role_impl(int role)
{
    const char *name =
        getenv(role == TLSOCK_SERVER ? "TLSOCK_TEST_SERVER_IMPL" : "TLSOCK_TEST_CLIENT_IMPL");
    int impl = -1;

    if (name == NULL || name[0] == '\0') {
        impl = TLSOCK_IMPL_DEFAULT;
    } else if (strcmp(name, "openssl") == 0) {
        impl = TLSOCK_IMPL_OPENSSL;
    } else if (strcmp(name, "gnutls") == 0) {
        impl = TLSOCK_IMPL_GNUTLS;
    }
    return impl;
}

int ts_ctx_new(int role, struct tlsock_ctx **out)
{
    struct tlsock_ctx *ctx = NULL;
    int impl = ts_role_impl(role);
    int rc = tlsock_ctx_new(role, &ctx);

    if (rc != 0) {
        print_error("tlsock_ctx_new: %s (%s)\n", ts_rc_name(rc), tlsock_errmsg());
    } else if (impl < 0) {
        /* A typo in the matrix must not quietly test the default twice. */
        print_error("TLSOCK_TEST_%s_IMPL names no implementation\n",
                    role == TLSOCK_SERVER ? "SERVER" : "CLIENT");
        rc = TS_ESETUP;
    } else if (impl != TLSOCK_IMPL_DEFAULT) {
        rc = tlsock_ctx_set_impl(ctx, impl);
        if (rc != 0) {
            print_error("tlsock_ctx_set_impl(%s): %s (%s)\n", tlsock_impl_name(impl),
                        ts_rc_name(rc), tlsock_ctx_errmsg(ctx));
        } else if (tlsock_ctx_impl(ctx) != impl) {
            /* The matrix is only worth something if each context really uses its pair's side. */
            print_error("tlsock_ctx_set_impl(%s) left the context on %s\n", tlsock_impl_name(impl),
                        tlsock_impl_name(tlsock_ctx_impl(ctx)));
            rc = TS_EMISMATCH;
        }
    }
    if (rc == 0) {
        *out = ctx;
        ctx = NULL;
    }
    tlsock_ctx_free(ctx);
    return rc;
}

int ts_server_ctx_new(const struct tlsock__pem_pair *leaf, struct tlsock_ctx **out)
{
    struct tlsock_ctx *ctx = NULL;
    int rc = ts_ctx_new(TLSOCK_SERVER, &ctx);

    if (rc == 0 && leaf != NULL) {
        rc = tlsock_ctx_set_cert_mem(ctx, leaf->cert, strlen(leaf->cert), leaf->key,
                                     strlen(leaf->key));
        if (rc != 0) {
            print_error("server set_cert: %s\n", tlsock_ctx_errmsg(ctx));
        }
    }
    if (rc == 0) {
        *out = ctx;
        ctx = NULL;
    }
    tlsock_ctx_free(ctx);
    return rc;
}

int ts_client_ctx_new(const char *ca_pem, struct tlsock_ctx **out)
{
    struct tlsock_ctx *ctx = NULL;
    int rc = ts_ctx_new(TLSOCK_CLIENT, &ctx);

    if (rc == 0 && ca_pem != NULL) {
        rc = tlsock_ctx_set_ca_mem(ctx, ca_pem, strlen(ca_pem));
        if (rc != 0) {
            print_error("client set_ca_mem: %s\n", tlsock_ctx_errmsg(ctx));
        }
    }
    if (rc == 0) {
        *out = ctx;
        ctx = NULL;
    }
    tlsock_ctx_free(ctx);
    return rc;
}

struct tlsock_opts ts_opts(void)
{
    struct tlsock_opts opts = TLSOCK_OPTS_INIT;

    opts.connect_timeout_ms = TS_IO_TIMEOUT_MS;
    opts.handshake_timeout_ms = TS_IO_TIMEOUT_MS;
    opts.timeout_ms = TS_IO_TIMEOUT_MS;
    return opts;
}

/* ---- data ------------------------------------------------------------------------------------ */

/* Byte @p i of pattern @p seed. Mixing in i >> 8 and i >> 16 makes a record that lands at the
 * wrong offset (a lost or duplicated 256-byte or 64 KiB block) differ from what was expected. */
static unsigned char pattern_byte(size_t i, unsigned seed)
{
    return (unsigned char)(i * 31u + seed + (i >> 8) * 7u + (i >> 16) * 13u);
}

void ts_fill(unsigned char *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = pattern_byte(i, seed);
    }
}

bool ts_same_pattern(const unsigned char *got, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        if (got[i] != pattern_byte(i, seed)) {
            return false;
        }
    }
    return true;
}

int ts_read_full(struct tlsock_conn *conn, void *buf, size_t len)
{
    unsigned char *p = buf;
    size_t got = 0;
    int64_t deadline = tlsock_now_ms() + 2 * TS_IO_TIMEOUT_MS;
    int rc = 0;

    /* Each successful read returns at least one byte, so len bounds the iterations; the
     * deadline bounds the time even if the library returned bytes one at a time slowly. */
    for (size_t i = 0; i < len && got < len && rc == 0; i++) {
        size_t n = 0;

        rc = tlsock_read(conn, p + got, len - got, &n);
        if (rc == 0 && (n == 0 || n > len - got)) {
            /* A successful read must return at least one byte and never more than asked. */
            rc = TS_EMISMATCH;
        }
        if (rc == 0) {
            got += n;
        }
        if (rc == 0 && got < len && tlsock_now_ms() > deadline) {
            rc = TLSOCK_ETIMEDOUT;
        }
    }
    return rc;
}

int ts_serve_exchange(struct tlsock_conn *conn, void *arg)
{
    struct ts_exchange *ex = arg;
    unsigned char *buf = malloc(ex->size > 0 ? ex->size : 1);
    unsigned char byte;
    size_t n = 0;
    int rc = TS_ESETUP;

    ex->final_rc = TS_NOT_RUN;
    if (buf == NULL) {
        goto out;
    }
    rc = tlsock_handshake(conn);
    if (rc == 0) {
        rc = ts_read_full(conn, buf, ex->size);
    }
    if (rc == 0) {
        rc = ts_same_pattern(buf, ex->size, 1) ? 0 : TS_EMISMATCH;
    }
    if (rc == 0) {
        ts_fill(buf, ex->size, 2);
        rc = tlsock_write(conn, buf, ex->size);
    }
    if (rc == 0) {
        rc = tlsock_shutdown(conn);
    }
    if (rc == 0) {
        /* Nothing more may arrive: the client's next move is close_notify. */
        ex->final_rc = tlsock_read(conn, &byte, 1, &n);
    }
out:
    free(buf);
    return rc;
}

int ts_client_exchange(struct tlsock_conn *conn, size_t size)
{
    unsigned char *buf = malloc(size > 0 ? size : 1);
    unsigned char byte;
    size_t n = 0;
    const char *step = "malloc";
    int rc = TS_ESETUP;

    if (buf == NULL) {
        goto out;
    }
    ts_fill(buf, size, 1);
    step = "write";
    rc = tlsock_write(conn, buf, size);
    if (rc == 0) {
        step = "read";
        memset(buf, 0, size);
        rc = ts_read_full(conn, buf, size);
    }
    if (rc == 0) {
        step = "compare";
        rc = ts_same_pattern(buf, size, 2) ? 0 : TS_EMISMATCH;
    }
    if (rc == 0) {
        /* The server shut down after its reply: a clean end, and no extra byte before it. */
        step = "read after reply (expect ECLOSED)";
        rc = tlsock_read(conn, &byte, 1, &n);
        rc = rc == TLSOCK_ECLOSED ? 0 : (rc == 0 ? TS_EMISMATCH : rc);
    }
out:
    if (rc != 0) {
        print_error("client exchange of %zu bytes failed at %s: %s (%s)\n", size, step,
                    ts_rc_name(rc), tlsock_conn_errmsg(conn));
    }
    free(buf);
    return rc;
}

/* ---- raw sockets ----------------------------------------------------------------------------- */

/* Fills a sockaddr for an IPv4 or IPv6 literal; returns its length, or 0. */
static socklen_t make_addr(const char *host, uint16_t port, struct sockaddr_storage *ss)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    socklen_t len = 0;

    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        len = sizeof(*sin);
    } else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        len = sizeof(*sin6);
    }
    return len;
}

int ts_raw_listen(const char *host, int rcvbuf, int *fd_out, uint16_t *port_out)
{
    struct sockaddr_storage ss;
    socklen_t len = make_addr(host, 0, &ss);
    int fd = -1;
    int one = 1;
    int rc = TS_ESETUP;

    if (len == 0) {
        goto out;
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        goto out;
    }
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (rcvbuf > 0) {
        /* Before listen() so that accepted sockets inherit it and advertise a small window. */
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    }
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 8) != 0) {
        goto out;
    }
    len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        goto out;
    }
    *port_out = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                              : ((struct sockaddr_in6 *)&ss)->sin6_port);
    *fd_out = fd;
    fd = -1;
    rc = 0;
out:
    if (fd >= 0) {
        close(fd);
    }
    return rc;
}

int ts_raw_connect(const char *host, uint16_t port, int sndbuf, int *fd_out)
{
    struct sockaddr_storage ss;
    socklen_t len = make_addr(host, port, &ss);
    int fd = -1;
    int rc = TS_ESETUP;

    if (len == 0) {
        goto out;
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        goto out;
    }
    if (sndbuf > 0) {
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    }
    /* Loopback connects complete or are refused at once, so a blocking connect is bounded. */
    if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
        goto out;
    }
    *fd_out = fd;
    fd = -1;
    rc = 0;
out:
    if (fd >= 0) {
        close(fd);
    }
    return rc;
}

int ts_raw_accept(int lfd, int timeout_ms)
{
    struct pollfd pfd = {.fd = lfd, .events = POLLIN};
    int fd = -1;

    if (poll(&pfd, 1, timeout_ms) == 1) {
        fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    }
    return fd;
}

bool ts_ipv6_available(void)
{
    int fd = -1;
    uint16_t port = 0;
    bool ok = ts_raw_listen("::1", 0, &fd, &port) == 0;

    if (fd >= 0) {
        close(fd);
    }
    return ok;
}

/* ---- gate ------------------------------------------------------------------------------------ */

void ts_gate_init(struct ts_gate *gate)
{
    pthread_mutex_init(&gate->mu, NULL);
    pthread_cond_init(&gate->cv, NULL);
    gate->open = false;
}

void ts_gate_open(struct ts_gate *gate)
{
    pthread_mutex_lock(&gate->mu);
    gate->open = true;
    pthread_cond_broadcast(&gate->cv);
    pthread_mutex_unlock(&gate->mu);
}

bool ts_gate_wait(struct ts_gate *gate, int timeout_ms)
{
    struct timespec until;
    bool open;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&gate->mu);
    /* Bounded: spurious wake-ups loop, but the absolute time limit ends the wait. */
    for (int i = 0; i < 1000 && !gate->open; i++) {
        if (pthread_cond_timedwait(&gate->cv, &gate->mu, &until) == ETIMEDOUT) {
            break;
        }
    }
    open = gate->open;
    pthread_mutex_unlock(&gate->mu);
    return open;
}

void ts_gate_destroy(struct ts_gate *gate)
{
    pthread_cond_destroy(&gate->cv);
    pthread_mutex_destroy(&gate->mu);
}

/* ---- loopback server thread ------------------------------------------------------------------ */

static void server_record(struct ts_server *srv, int result, struct tlsock_conn *conn)
{
    srv->result = result;
    if (result != 0 && conn != NULL) {
        snprintf(srv->errmsg, sizeof(srv->errmsg), "%s", tlsock_conn_errmsg(conn));
    }
}

static void *server_main(void *arg)
{
    struct ts_server *srv = arg;

    if (srv->raw_fn != NULL) {
        int fd = ts_raw_accept(srv->raw_fd, TS_IO_TIMEOUT_MS);

        atomic_store(&srv->accepted, true);
        srv->accept_rc = fd >= 0 ? 0 : TS_ESETUP;
        if (fd >= 0 && !atomic_load(&srv->stopping)) {
            srv->result = srv->raw_fn(fd, srv->arg);
        }
        if (fd >= 0) {
            close(fd);
        }
    } else {
        struct tlsock_conn *conn = NULL;

        srv->accept_rc = tlsock_accept(srv->lis, &srv->opts, &conn);
        atomic_store(&srv->accepted, true);
        if (srv->accept_rc != 0) {
            snprintf(srv->errmsg, sizeof(srv->errmsg), "accept: %s", tlsock_errmsg());
        } else if (!atomic_load(&srv->stopping)) {
            server_record(srv, srv->fn(conn, srv->arg), conn);
        }
        tlsock_close(conn);
    }
    return NULL;
}

static void server_init(struct ts_server *srv, ts_serve_fn fn, ts_serve_raw_fn raw_fn, void *arg)
{
    memset(srv, 0, sizeof(*srv));
    srv->raw_fd = -1;
    srv->fn = fn;
    srv->raw_fn = raw_fn;
    srv->arg = arg;
    srv->accept_rc = TS_NOT_RUN;
    srv->result = TS_NOT_RUN;
    atomic_init(&srv->accepted, false);
    atomic_init(&srv->stopping, false);
}

int ts_server_start(struct ts_server *srv, struct tlsock_ctx *ctx, const char *host,
                    const struct tlsock_opts *opts, ts_serve_fn fn, void *arg)
{
    int rc;

    server_init(srv, fn, NULL, arg);
    /* "*" listens on every address; the wake-up connection then goes to IPv4 loopback. */
    snprintf(srv->host, sizeof(srv->host), "%s",
             host != NULL && strcmp(host, "*") != 0 ? host : "127.0.0.1");
    srv->opts = opts != NULL ? *opts : ts_opts();
    if (srv->opts.connect_timeout_ms == 0) {
        srv->opts.connect_timeout_ms = TS_IO_TIMEOUT_MS;
    }
    rc = tlsock_listen(ctx, host != NULL && strcmp(host, "*") == 0 ? NULL : srv->host, 0, 0,
                       &srv->lis);
    if (rc != 0) {
        print_error("tlsock_listen: %s (%s)\n", ts_rc_name(rc), tlsock_errmsg());
    }
    if (rc == 0) {
        srv->port = tlsock_listener_port(srv->lis);
        if (pthread_create(&srv->thread, NULL, server_main, srv) != 0) {
            rc = TS_ESETUP;
        }
    }
    if (rc == 0) {
        srv->started = true;
    } else {
        tlsock_listener_close(srv->lis);
        srv->lis = NULL;
    }
    return rc;
}

int ts_server_start_raw(struct ts_server *srv, const char *host, int rcvbuf, ts_serve_raw_fn fn,
                        void *arg)
{
    int rc;

    server_init(srv, NULL, fn, arg);
    snprintf(srv->host, sizeof(srv->host), "%s", host != NULL ? host : "127.0.0.1");
    rc = ts_raw_listen(srv->host, rcvbuf, &srv->raw_fd, &srv->port);
    if (rc == 0 && pthread_create(&srv->thread, NULL, server_main, srv) != 0) {
        rc = TS_ESETUP;
    }
    if (rc == 0) {
        srv->started = true;
    } else if (srv->raw_fd >= 0) {
        close(srv->raw_fd);
        srv->raw_fd = -1;
    }
    return rc;
}

void ts_server_stop(struct ts_server *srv)
{
    if (srv->started) {
        atomic_store(&srv->stopping, true);
        if (!atomic_load(&srv->accepted)) {
            /* The test ended before its client connected: wake the accept with a connection
             * that closes at once, so the join does not wait for the accept timeout. */
            int fd = -1;

            if (ts_raw_connect(srv->host, srv->port, 0, &fd) == 0) {
                close(fd);
            }
        }
        pthread_join(srv->thread, NULL);
        srv->started = false;
    }
    tlsock_listener_close(srv->lis);
    srv->lis = NULL;
    if (srv->raw_fd >= 0) {
        close(srv->raw_fd);
        srv->raw_fd = -1;
    }
}

/* ---- per-test environment -------------------------------------------------------------------- */

int ts_env_setup(void **state)
{
    struct ts_env *env = calloc(1, sizeof(*env));
    int rc = -1;

    if (env != NULL) {
        env->srv.raw_fd = -1;
        ts_gate_init(&env->gate);
        *state = env;
        rc = 0;
    }
    return rc;
}

int ts_env_teardown(void **state)
{
    struct ts_env *env = *state;

    if (env != NULL) {
        /* Order matters: a server waiting on the gate or on the client's data is released
         * first, then joined, so a failed assertion never leaves a thread behind. */
        ts_gate_open(&env->gate);
        tlsock_close(env->client);
        ts_server_stop(&env->srv);
        tlsock_ctx_free(env->cctx);
        tlsock_ctx_free(env->sctx);
        ts_gate_destroy(&env->gate);
        free(env);
        *state = NULL;
    }
    return 0;
}

void ts_env_renew(void **state, size_t index)
{
    if (index > 0) {
        assert_int_equal(ts_env_teardown(state), 0);
        assert_int_equal(ts_env_setup(state), 0);
    }
}

/* ---- the heap -------------------------------------------------------------------------------- */

size_t ts_heap_in_use(void)
{
#if defined(TS_ASAN)
    return __sanitizer_get_current_allocated_bytes();
#else
#if defined(TS_MEMCHECK)
    if (RUNNING_ON_VALGRIND) {
        unsigned long leaked = 0;
        unsigned long dubious = 0;
        unsigned long reachable = 0;
        unsigned long suppressed = 0;

        VALGRIND_DO_QUICK_LEAK_CHECK;
        VALGRIND_COUNT_LEAKS(leaked, dubious, reachable, suppressed);
        return leaked + dubious + reachable + suppressed;
    }
#endif
    struct mallinfo2 mi = mallinfo2();

    return mi.uordblks + mi.hblkhd;
#endif
}
