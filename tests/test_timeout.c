/* Loopback TLS: handshake, accept, read and write timeouts, deadlines, and which of them a
 * connection survives. No test asserts how fast anything is, only which code comes back and that
 * it did not come back before its time. */
#include "support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SHORT_MS 200

/* The call returned because of our timeout: not early, and not because of the fallback one. */
static void assert_waited(int64_t started_ms, int timeout_ms)
{
    int64_t elapsed = tlsock_now_ms() - started_ms;

    if (elapsed < timeout_ms - 5 || elapsed >= TS_IO_TIMEOUT_MS) {
        fail_msg("returned after %lld ms for a %d ms timeout", (long long)elapsed, timeout_ms);
    }
}

struct silent_case {
    const char *what;
    int ctx_timeout;  /* tlsock_ctx_set_handshake_timeout(), 0: not called */
    int opts_timeout; /* opts.handshake_timeout_ms */
    int timeout;      /* what applies */
};

static const struct silent_case silent_cases[] = {
    {.what = "options", .opts_timeout = SHORT_MS, .timeout = SHORT_MS},
    {.what = "context default", .ctx_timeout = SHORT_MS, .timeout = SHORT_MS},
    {.what = "options override the context",
     .ctx_timeout = TS_IO_TIMEOUT_MS,
     .opts_timeout = SHORT_MS,
     .timeout = SHORT_MS},
};

/* A TCP listener that never accepts nor speaks: the kernel completes the TCP handshake. */
static void test_client_handshake_timeout(void **state)
{
    for (size_t i = 0; i < sizeof(silent_cases) / sizeof(silent_cases[0]); i++) {
        const struct silent_case *c = &silent_cases[i];
        struct tlsock_opts opts = ts_opts();
        struct ts_env *env;
        int lfd = -1;
        uint16_t port = 0;
        int64_t start;
        int rc;

        print_message("%s\n", c->what);
        ts_env_renew(state, i);
        env = *state;
        opts.handshake_timeout_ms = c->opts_timeout;
        TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
        if (c->ctx_timeout != 0) {
            TS_ASSERT_RC(tlsock_ctx_set_handshake_timeout(env->cctx, c->ctx_timeout), 0);
        }
        assert_int_equal(ts_raw_listen("127.0.0.1", 0, &lfd, &port), 0);
        start = tlsock_now_ms();
        rc = tlsock_connect(env->cctx, "127.0.0.1", port, &opts, &env->client);
        close(lfd);
        TS_ASSERT_RC(rc, TLSOCK_EHANDSHAKE_TIMEOUT);
        assert_null(env->client);
        assert_waited(start, c->timeout);
        assert_true(strlen(tlsock_errmsg()) > 0);
    }
}

#define FILLERS 16

/* Starts a non-blocking connect to @p port; returns the fd and whether it completed within
 * 50 ms in @p done. */
static int start_connect(uint16_t port, bool *done)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    struct pollfd pfd = {.events = POLLOUT};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

    *done = false;
    if (fd >= 0) {
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0) {
            *done = true;
        } else {
            pfd.fd = fd;
            *done = poll(&pfd, 1, 50) == 1;
        }
    }
    return fd;
}

/*
 * A TCP connect that never completes: a listener whose accept queue is full makes Linux drop
 * further SYNs. Fill it with connections nobody accepts until one hangs; environments that do
 * not drop SYNs (some user-space network stacks) skip the test.
 */
static void test_connect_timeout(void **state)
{
    struct ts_env *env = *state;
    struct tlsock_opts opts = TLSOCK_OPTS_INIT;
    int fillers[FILLERS];
    int lfd = -1;
    uint16_t port = 0;
    bool hung = false;
    int64_t start = 0;
    int rc = TS_NOT_RUN;

    for (int i = 0; i < FILLERS; i++) {
        fillers[i] = -1;
    }
    assert_int_equal(ts_raw_listen("127.0.0.1", 0, &lfd, &port), 0);
    /* The smallest queue the kernel allows. */
    assert_int_equal(listen(lfd, 0), 0);
    for (int i = 0; i < FILLERS && !hung; i++) {
        bool done = false;

        fillers[i] = start_connect(port, &done);
        hung = !done;
    }
    if (hung) {
        opts.connect_timeout_ms = SHORT_MS;
        opts.handshake_timeout_ms = SHORT_MS;
        TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
        start = tlsock_now_ms();
        rc = tlsock_connect(env->cctx, "127.0.0.1", port, &opts, &env->client);
    }
    for (int i = 0; i < FILLERS; i++) {
        if (fillers[i] >= 0) {
            close(fillers[i]);
        }
    }
    close(lfd);
    if (!hung) {
        print_message("this network stack never leaves a connect pending\n");
        skip();
    }
    TS_ASSERT_RC(rc, TLSOCK_ETIMEDOUT);
    assert_waited(start, SHORT_MS);
    assert_null(env->client);
}

/* The server side: a client that connects and never sends a ClientHello. */
static void test_server_handshake_timeout(void **state)
{
    struct tlsock_listener *lis = NULL;
    struct tlsock_conn *conn = NULL;
    struct tlsock_ctx *ctx = NULL;
    struct tlsock_opts opts = ts_opts();
    int fd = -1;
    int64_t start;
    int rc;

    (void)state;
    opts.handshake_timeout_ms = SHORT_MS;
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &ctx), 0);
    TS_ASSERT_RC(tlsock_listen(ctx, "127.0.0.1", 0, 0, &lis), 0);
    assert_int_equal(ts_raw_connect("127.0.0.1", tlsock_listener_port(lis), 0, &fd), 0);
    /* The accept itself does not run the handshake, so it returns at once. */
    rc = tlsock_accept(lis, &opts, &conn);
    TS_ASSERT_RC(rc, 0);
    start = tlsock_now_ms();
    rc = tlsock_handshake(conn);
    TS_ASSERT_RC_MSG(rc, TLSOCK_EHANDSHAKE_TIMEOUT, tlsock_conn_errmsg(conn));
    assert_waited(start, SHORT_MS);
    /* A handshake timeout is fatal. */
    TS_ASSERT_RC(tlsock_handshake(conn), TLSOCK_EHANDSHAKE_TIMEOUT);
    tlsock_close(conn);
    close(fd);
    tlsock_listener_close(lis);
    tlsock_ctx_free(ctx);
}

/* A deadline set before the handshake bounds it, and the handshake reports its own code. */
static void test_deadline_bounds_handshake(void **state)
{
    struct ts_env *env = *state;
    struct tlsock_opts opts = ts_opts();
    int lfd = -1;
    int fd = -1;
    uint16_t port = 0;
    int64_t start;
    int rc;

    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    assert_int_equal(ts_raw_listen("127.0.0.1", 0, &lfd, &port), 0);
    rc = ts_raw_connect("127.0.0.1", port, 0, &fd);
    if (rc == 0) {
        opts.verify_name = "localhost";
        rc = tlsock_attach_fd(env->cctx, fd, &opts, &env->client);
    }
    start = tlsock_now_ms();
    if (rc == 0) {
        rc = tlsock_conn_set_deadline(env->client, start + SHORT_MS);
    }
    if (rc == 0) {
        rc = tlsock_handshake(env->client);
    }
    tlsock_close(env->client);
    env->client = NULL;
    if (fd >= 0) {
        close(fd);
    }
    close(lfd);
    TS_ASSERT_RC(rc, TLSOCK_EHANDSHAKE_TIMEOUT);
    assert_waited(start, SHORT_MS);
}

static void test_accept_timeout(void **state)
{
    struct tlsock_listener *lis = NULL;
    struct tlsock_conn *conn = NULL;
    struct tlsock_ctx *ctx = NULL;
    struct tlsock_opts opts = TLSOCK_OPTS_INIT;
    int64_t start;

    (void)state;
    opts.connect_timeout_ms = SHORT_MS;
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &ctx), 0);
    TS_ASSERT_RC(tlsock_listen(ctx, "127.0.0.1", 0, 0, &lis), 0);
    assert_true(tlsock_listener_fd(lis) >= 0);
    start = tlsock_now_ms();
    TS_ASSERT_RC(tlsock_accept(lis, &opts, &conn), TLSOCK_ETIMEDOUT);
    assert_waited(start, SHORT_MS);
    assert_null(conn);
    tlsock_listener_close(lis);
    tlsock_ctx_free(ctx);
}

/* Serves "ok" once the test opens the gate, then waits for the client's close. */
static int serve_when_released(struct tlsock_conn *conn, void *arg)
{
    struct ts_env *env = arg;
    unsigned char byte;
    size_t n = 0;
    int rc = tlsock_handshake(conn);

    if (rc == 0) {
        rc = ts_gate_wait(&env->gate, TS_IO_TIMEOUT_MS) ? 0 : TS_ESETUP;
    }
    if (rc == 0) {
        rc = tlsock_write(conn, "ok", 2);
    }
    if (rc == 0) {
        (void)tlsock_read(conn, &byte, 1, &n);
    }
    return rc;
}

static void connect_to_slow_server(struct ts_env *env)
{
    struct tlsock_opts opts = ts_opts();

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    TS_ASSERT_RC(ts_server_start(&env->srv, env->sctx, NULL, NULL, serve_when_released, env), 0);
    TS_ASSERT_RC(tlsock_connect(env->cctx, "127.0.0.1", env->srv.port, &opts, &env->client), 0);
}

static void finish_with_ok(struct ts_env *env)
{
    char buf[2] = {0, 0};

    ts_gate_open(&env->gate);
    TS_ASSERT_RC_MSG(ts_read_full(env->client, buf, 2), 0, tlsock_conn_errmsg(env->client));
    assert_memory_equal(buf, "ok", 2);
    tlsock_close(env->client);
    env->client = NULL;
    ts_server_stop(&env->srv);
    TS_ASSERT_RC_MSG(env->srv.result, 0, env->srv.errmsg);
}

static void *open_gate_later(void *arg)
{
    struct ts_gate *gate = arg;
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 100L * 1000000L};

    (void)nanosleep(&ts, NULL);
    ts_gate_open(gate);
    return NULL;
}

/* An older caller's smaller struct tlsock_opts: fields past its size are not read. */
static void test_opts_size_respected(void **state)
{
    struct ts_env *env = *state;
    struct tlsock_opts opts = ts_opts();
    char buf[2] = {0, 0};
    pthread_t opener;
    int rc;

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    TS_ASSERT_RC(ts_server_start(&env->srv, env->sctx, NULL, NULL, serve_when_released, env), 0);
    /* A 1 ms timeout, outside the declared size: if it were read, the reply would be late. */
    opts.size = offsetof(struct tlsock_opts, timeout_ms);
    opts.timeout_ms = 1;
    TS_ASSERT_RC(tlsock_connect(env->cctx, "127.0.0.1", env->srv.port, &opts, &env->client), 0);
    /* The reply comes 100 ms later, far beyond the 1 ms that must be ignored. */
    assert_int_equal(pthread_create(&opener, NULL, open_gate_later, &env->gate), 0);
    rc = ts_read_full(env->client, buf, 2);
    pthread_join(opener, NULL);
    TS_ASSERT_RC_MSG(rc, 0, tlsock_conn_errmsg(env->client));
    assert_memory_equal(buf, "ok", 2);
    tlsock_close(env->client);
    env->client = NULL;
    ts_server_stop(&env->srv);
    TS_ASSERT_RC_MSG(env->srv.result, 0, env->srv.errmsg);
}

/* Sends one 1000-byte record once the gate opens, then waits for the client's close. */
static int serve_one_record(struct tlsock_conn *conn, void *arg)
{
    struct ts_env *env = arg;
    unsigned char buf[1000];
    size_t n = 0;
    int rc = tlsock_handshake(conn);

    ts_fill(buf, sizeof(buf), 4);
    if (rc == 0) {
        rc = ts_gate_wait(&env->gate, TS_IO_TIMEOUT_MS) ? 0 : TS_ESETUP;
    }
    if (rc == 0) {
        rc = tlsock_write(conn, buf, sizeof(buf));
    }
    if (rc == 0) {
        (void)tlsock_read(conn, buf, 1, &n);
    }
    return rc;
}

/* Timeout 0 polls: a read returns what is ready or ETIMEDOUT at once, and tlsock_conn_pending()
 * tells what is already decrypted. */
/* A deadline that has passed polls: a read returns what is ready or ETIMEDOUT at once, and
 * tlsock_conn_pending() tells what is already decrypted. */
static void test_past_deadline_and_pending(void **state)
{
    struct ts_env *env = *state;
    struct tlsock_opts opts = ts_opts();
    unsigned char want[1000];
    unsigned char got[1000];
    size_t n = 0;
    int64_t start;

    ts_fill(want, sizeof(want), 4);
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    TS_ASSERT_RC(ts_server_start(&env->srv, env->sctx, NULL, NULL, serve_one_record, env), 0);
    TS_ASSERT_RC(tlsock_connect(env->cctx, "127.0.0.1", env->srv.port, &opts, &env->client), 0);
    assert_int_equal(tlsock_conn_pending(env->client), 0);
    /* A deadline of 0 has passed: "what is ready now", whatever the timeout. */
    TS_ASSERT_RC(tlsock_conn_set_deadline(env->client, 0), 0);
    start = tlsock_now_ms();
    TS_ASSERT_RC(tlsock_read(env->client, got, sizeof(got), &n), TLSOCK_ETIMEDOUT);
    /* "At once": far less than any timeout in this suite, generous for valgrind. */
    assert_true(tlsock_now_ms() - start < 1000);

    ts_gate_open(&env->gate);
    TS_ASSERT_RC(tlsock_conn_set_deadline(env->client, -1), 0);
    TS_ASSERT_RC(tlsock_read(env->client, got, 1, &n), 0);
    assert_int_equal(n, 1);
    /* The rest of the record is decrypted and waiting. */
    assert_int_equal(tlsock_conn_pending(env->client), sizeof(got) - 1);
    TS_ASSERT_RC(tlsock_conn_set_deadline(env->client, 0), 0);
    TS_ASSERT_RC(tlsock_read(env->client, got + 1, sizeof(got) - 1, &n), 0);
    assert_int_equal(n, sizeof(got) - 1);
    assert_int_equal(tlsock_conn_pending(env->client), 0);
    assert_memory_equal(got, want, sizeof(got));
    TS_ASSERT_RC(tlsock_read(env->client, got, 1, &n), TLSOCK_ETIMEDOUT);
    tlsock_close(env->client);
    env->client = NULL;
    ts_server_stop(&env->srv);
    TS_ASSERT_RC_MSG(env->srv.result, 0, env->srv.errmsg);
}

/* A read timeout is the one failure a connection survives. */
static void test_read_timeout_is_retryable(void **state)
{
    struct ts_env *env = *state;
    unsigned char byte;
    size_t n = 0;
    int64_t start;

    connect_to_slow_server(env);
    TS_ASSERT_RC(tlsock_conn_set_timeout(env->client, SHORT_MS), 0);
    start = tlsock_now_ms();
    TS_ASSERT_RC(tlsock_read(env->client, &byte, 1, &n), TLSOCK_ETIMEDOUT);
    assert_waited(start, SHORT_MS);
    assert_false(tlsock_err_is_tls(TLSOCK_ETIMEDOUT));
    /* Again: still a timeout, not a sticky error of another kind. */
    TS_ASSERT_RC(tlsock_read(env->client, &byte, 1, &n), TLSOCK_ETIMEDOUT);
    TS_ASSERT_RC(tlsock_conn_set_timeout(env->client, TS_IO_TIMEOUT_MS), 0);
    /* 0 is "no timeout"; negative values mean nothing. */
    TS_ASSERT_RC(tlsock_conn_set_timeout(env->client, -1), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_conn_set_timeout(env->client, -2), TLSOCK_EINVAL);
    finish_with_ok(env);
}

static void test_expired_deadline(void **state)
{
    struct ts_env *env = *state;
    unsigned char byte;
    size_t n = 0;
    int64_t start;

    connect_to_slow_server(env);
    /* A deadline already past fails at once, whatever the per-operation timeout. */
    TS_ASSERT_RC(tlsock_conn_set_deadline(env->client, tlsock_now_ms() - 1), 0);
    TS_ASSERT_RC(tlsock_read(env->client, &byte, 1, &n), TLSOCK_ETIMEDOUT);
    /* A near deadline wins over the (long) per-operation timeout. */
    start = tlsock_now_ms();
    TS_ASSERT_RC(tlsock_conn_set_deadline(env->client, start + SHORT_MS), 0);
    TS_ASSERT_RC(tlsock_read(env->client, &byte, 1, &n), TLSOCK_ETIMEDOUT);
    assert_waited(start, SHORT_MS);
    TS_ASSERT_RC(tlsock_conn_set_deadline(env->client, -5), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_conn_set_deadline(env->client, -1), 0);
    finish_with_ok(env);
}

/* A peer that completes the handshake over a socket with a tiny receive buffer and then never
 * reads: the client's writes fill every buffer and must time out. */
static int serve_and_never_read(int fd, void *arg)
{
    struct ts_env *env = arg;
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    int rc = tlsock_attach_fd(env->sctx, fd, &opts, &conn);

    if (rc == 0) {
        rc = tlsock_handshake(conn);
    }
    if (rc == 0) {
        rc = ts_gate_wait(&env->gate, TS_IO_TIMEOUT_MS) ? 0 : TS_ESETUP;
    }
    tlsock_close(conn);
    return rc;
}

static void test_write_timeout_is_fatal(void **state)
{
    struct ts_env *env = *state;
    struct tlsock_opts opts = ts_opts();
    /* More than loopback buffers hold even if the small buffer sizes were ignored. */
    size_t size = 64u * 1024 * 1024;
    unsigned char *big = calloc(1, size);
    unsigned char byte;
    size_t n = 0;
    int fd = -1;
    int64_t start;
    int rc;

    assert_non_null(big);
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    TS_ASSERT_RC(ts_server_start_raw(&env->srv, NULL, 4096, serve_and_never_read, env), 0);
    assert_int_equal(ts_raw_connect("127.0.0.1", env->srv.port, 4096, &fd), 0);
    /* An attached socket has no host: name the certificate to verify. */
    opts.verify_name = "localhost";
    opts.timeout_ms = SHORT_MS;
    rc = tlsock_attach_fd(env->cctx, fd, &opts, &env->client);
    if (rc == 0) {
        rc = tlsock_handshake(env->client);
    }
    start = tlsock_now_ms();
    if (rc == 0) {
        rc = tlsock_write(env->client, big, size);
    }
    free(big);
    TS_ASSERT_RC_MSG(rc, TLSOCK_ETIMEDOUT, tlsock_conn_errmsg(env->client));
    assert_waited(start, SHORT_MS);
    /* Part of the data may have gone: the connection is dead for good. */
    TS_ASSERT_RC(tlsock_write(env->client, "x", 1), TLSOCK_ETIMEDOUT);
    TS_ASSERT_RC(tlsock_read(env->client, &byte, 1, &n), TLSOCK_ETIMEDOUT);
    tlsock_close(env->client);
    env->client = NULL;
    /* The attached socket is still ours to close. */
    assert_int_equal(close(fd), 0);
    ts_gate_open(&env->gate);
    ts_server_stop(&env->srv);
    TS_ASSERT_RC(env->srv.result, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_client_handshake_timeout, ts_env_setup,
                                        ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout, ts_env_setup, ts_env_teardown),
        cmocka_unit_test(test_server_handshake_timeout),
        cmocka_unit_test_setup_teardown(test_deadline_bounds_handshake, ts_env_setup,
                                        ts_env_teardown),
        cmocka_unit_test(test_accept_timeout),
        cmocka_unit_test_setup_teardown(test_read_timeout_is_retryable, ts_env_setup,
                                        ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_expired_deadline, ts_env_setup, ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_opts_size_respected, ts_env_setup, ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_past_deadline_and_pending, ts_env_setup,
                                        ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_write_timeout_is_fatal, ts_env_setup, ts_env_teardown),
    };

    return cmocka_run_group_tests_name("timeout", tests, ts_pki_setup, ts_pki_teardown);
}
