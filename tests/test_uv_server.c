/*
 * The libuv driver's server (tlsock/uv.h), written from the contract in the header: port 0 and
 * tlsock_uv_server_port(), many clients at once, clients that fail before they are handed over
 * (on_accept_error), graceful tlsock_uv_server_close() (also with clients still in, or failing,
 * their handshake), tlsock_uv_server_abort() (clients in their handshake reset), SO_REUSEPORT, the
 * server's options reaching its connections, IPv6 loopback, and calls that fail without calling
 * back.
 *
 * The harness (support/uv_harness.h, shared with test_uv_robust.c): every test runs one loop in
 * the test thread. Callbacks only record what happened (a cmocka
 * failure would longjmp out of uv_run()); the test asserts between runs of the loop. Every wait
 * runs the loop until a condition holds, bounded by a guard timer and an iteration count.
 * Clients are tlsock_uv_connect() on the same loop, blocking tlsock_connect() in threads, or raw
 * TCP sockets. The teardown closes every connection and server, then checks that the loop closes
 * (uv_loop_close() fails while the library still has a handle on it).
 */
#include "support.h"
#include "uv_harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <tlsock/uv.h>

/* ---- certificates ---------------------------------------------------------------------------- */

/* A client certificate from a CA the server does not trust. */
static struct tlsock__pem_pair untrusted_client;

static int group_setup(void **state)
{
    int rc = ts_pki_setup(state);

    if (rc == 0) {
        rc = ts_leaf_make(&ts_pki.other_ca, "untrusted-client", NULL, TLSOCK__EKU_CLIENT,
                          &untrusted_client);
    }
    return rc == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    tlsock__pem_pair_free(&untrusted_client);
    return ts_pki_teardown(state);
}

static void set_client_cert(struct tlsock_ctx *ctx, const struct tlsock__pem_pair *pair)
{
    TS_ASSERT_RC_MSG(
        tlsock_ctx_set_cert_mem(ctx, pair->cert, strlen(pair->cert), pair->key, strlen(pair->key)),
        0, tlsock_ctx_errmsg(ctx));
}

/* ---- port 0, many clients at once ------------------------------------------------------------ */

#define ASYNC_CLIENTS    20
#define BLOCKING_CLIENTS 4

struct blocking_client {
    struct tlsock_ctx *ctx;
    uint16_t port;
    size_t size;
    unsigned seed;
    int rc;
    const char *step;
    char msg[TLSOCK__ERRMSG_SIZE];
};

/* Runs in its own thread: writes its pattern, reads it back, closes (close_notify). */
static void blocking_echo(void *arg)
{
    struct blocking_client *bc = arg;
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    unsigned char *out = malloc(bc->size);
    unsigned char *in = malloc(bc->size);

    bc->step = "connect";
    if (out == NULL || in == NULL) {
        bc->rc = TS_ESETUP;
        goto out;
    }
    ts_fill(out, bc->size, bc->seed);
    bc->rc = tlsock_connect(bc->ctx, "127.0.0.1", bc->port, &opts, &conn);
    if (bc->rc != 0) {
        snprintf(bc->msg, sizeof(bc->msg), "%s", tlsock_errmsg());
        goto out;
    }
    bc->step = "write";
    bc->rc = tlsock_write(conn, out, bc->size);
    if (bc->rc == 0) {
        bc->step = "read";
        bc->rc = ts_read_full(conn, in, bc->size);
    }
    if (bc->rc == 0) {
        bc->step = "compare";
        bc->rc = memcmp(in, out, bc->size) == 0 ? 0 : TS_EMISMATCH;
    }
    if (bc->rc != 0) {
        snprintf(bc->msg, sizeof(bc->msg), "%s", tlsock_conn_errmsg(conn));
    }
out:
    tlsock_close(conn);
    free(out);
    free(in);
}

static void test_port_zero_and_concurrent_clients(void **state)
{
    struct env *env = *state;
    struct blocking_client bcs[BLOCKING_CLIENTS];
    struct peer *clients[ASYNC_CLIENTS];
    struct srv *s;
    int server_peers = 0;

    make_contexts(env);
    s = serve_ok(env, 0, env->sctx, &echo_server, NULL);
    /* Distinct sizes and patterns: a byte delivered to the wrong client, or a record lost,
     * duplicated or reordered, changes what comes back. */
    for (int i = 0; i < ASYNC_CLIENTS; i++) {
        clients[i] = client_start(env, env->cctx, s->port, &echo_client, 1000 + (size_t)i * 3001,
                                  100 + (unsigned)i);
        clients[i]->close_when_echoed = true;
    }
    memset(bcs, 0, sizeof(bcs));
    for (int i = 0; i < BLOCKING_CLIENTS; i++) {
        TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->thread_ctx[i]), 0);
        bcs[i].ctx = env->thread_ctx[i];
        bcs[i].port = s->port;
        bcs[i].size = 65536 + (size_t)i * 7777;
        bcs[i].seed = 200 + (unsigned)i;
        bcs[i].rc = TS_NOT_RUN;
        thread_start(env, blocking_echo, &bcs[i]);
    }
    RUN_UNTIL(env, conns_closed(env) || s->connects > ASYNC_CLIENTS + BLOCKING_CLIENTS, WAIT_MS);
    for (int i = 0; i < ASYNC_CLIENTS; i++) {
        struct peer *p = clients[i];

        TS_ASSERT_RC_MSG(p->connect_rc, 0, p->connect_msg);
        if (!echoed(p)) {
            fail_msg("async client %d: %zu of %zu bytes came back%s", i, p->rx_len, p->tx_len,
                     p->rx_len == p->tx_len ? ", different" : "");
        }
        TS_ASSERT_RC_MSG(p->events == 0 ? 0 : p->event_rc, 0, p->event_msg);
        assert_int_equal(p->write_errors, 0);
        TS_ASSERT_CONTAINS(p->peer_subject, TS_SERVER_CN);
    }
    for (int i = 0; i < BLOCKING_CLIENTS; i++) {
        if (bcs[i].rc != 0) {
            print_error("blocking client %d failed at %s\n", i, bcs[i].step);
        }
        TS_ASSERT_RC_MSG(bcs[i].rc, 0, bcs[i].msg);
    }
    for (int i = 0; i < env->npeers; i++) {
        struct peer *p = &env->peers[i];

        if (p->srv == s) {
            server_peers++;
            /* Every client ended with close_notify after it had all its data back. */
            TS_ASSERT_RC_MSG(p->event_rc, TLSOCK_ECLOSED, p->event_msg);
            assert_int_equal(p->write_errors, 0);
            assert_int_equal(p->closes, 1);
        }
    }
    assert_int_equal(s->connects, ASYNC_CLIENTS + BLOCKING_CLIENTS);
    assert_int_equal(server_peers, ASYNC_CLIENTS + BLOCKING_CLIENTS);
    assert_int_equal(env->naerr, 0);
    server_close(s);
    RUN_UNTIL(env, s->close_cbs == 1, WAIT_MS);
    assert_no_anomaly(env);
}

/* ---- on_accept_error ------------------------------------------------------------------------- */

static bool client_finished(const struct peer *p)
{
    return p->connect_rc != TS_NOT_RUN && (p->connect_rc != 0 || p->events > 0);
}

/*
 * The server requires client certificates; a client presents one from an untrusted CA. The
 * server refuses it (EVERIFY, the verify reason) without handing it over; the client learns of
 * it from the alert (EPROTO: in its handshake with TLS 1.2, as an event after it with TLS 1.3).
 * A client with a good certificate is served afterwards.
 */
static void test_accept_error_untrusted_client_cert(void **state)
{
    struct env *env = *state;
    struct peer *bad;
    struct srv *s;
    int client_rc;

    make_contexts(env);
    TS_ASSERT_RC(tlsock_ctx_set_ca_mem(env->sctx, ts_pki.ca.cert, strlen(ts_pki.ca.cert)), 0);
    TS_ASSERT_RC(tlsock_ctx_set_verify(env->sctx, TLSOCK_VERIFY_REQUIRED), 0);
    set_client_cert(env->cctx, &ts_pki.client);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx2), 0);
    set_client_cert(env->cctx2, &untrusted_client);
    s = serve_ok(env, 0, env->sctx, &echo_server, NULL);

    bad = client_start(env, env->cctx2, s->port, &echo_client, 0, 0);
    RUN_UNTIL(env, env->naerr == 1 && client_finished(bad), WAIT_MS);
    TS_ASSERT_RC_MSG(env->aerr[0].code, TLSOCK_EVERIFY, env->aerr[0].msg);
    TS_ASSERT_CONTAINS(env->aerr[0].msg, "unable to get local issuer");
    assert_int_equal(s->connects, 0);
    client_rc = bad->connect_rc != 0 ? bad->connect_rc : bad->event_rc;
    TS_ASSERT_RC_MSG(client_rc, TLSOCK_EPROTO,
                     bad->connect_rc != 0 ? bad->connect_msg : bad->event_msg);
    TS_ASSERT_CONTAINS(bad->connect_rc != 0 ? bad->connect_msg : bad->event_msg, "unknown_ca");
    peer_close(bad);
    RUN_UNTIL(env, bad->conn == NULL, WAIT_MS);

    assert_serves_good_client(env, s, env->cctx);
    TS_ASSERT_CONTAINS(env->peers[env->npeers - 1].peer_subject, TS_CLIENT_CN);
    assert_int_equal(env->naerr, 1);
    assert_no_anomaly(env);
}

/* Plaintext instead of a ClientHello: a protocol error, and the server goes on. */
static void test_accept_error_garbage(void **state)
{
    static const char garbage[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    struct env *env = *state;
    struct srv *s;
    int fd = -1;

    make_contexts(env);
    s = serve_ok(env, 0, env->sctx, &echo_server, NULL);
    assert_int_equal(ts_raw_connect("127.0.0.1", s->port, 0, &fd), 0);
    raw_track(env, fd);
    assert_int_equal(send(fd, garbage, sizeof(garbage) - 1, MSG_NOSIGNAL),
                     (ssize_t)(sizeof(garbage) - 1));
    RUN_UNTIL(env, env->naerr == 1, WAIT_MS);
    TS_ASSERT_RC_MSG(env->aerr[0].code, TLSOCK_EPROTO, env->aerr[0].msg);
    assert_true(tlsock_err_is_tls(env->aerr[0].code));
    assert_true(strlen(env->aerr[0].msg) > 0);
    assert_int_equal(s->connects, 0);
    /* "The client's connection is already closed." */
    assert_raw_sees_end(env, fd);
    raw_close(env, fd);
    assert_serves_good_client(env, s, env->cctx);
    assert_int_equal(env->naerr, 1);
    assert_no_anomaly(env);
}

#define SILENT_TIMEOUT_MS 2000

struct silent_case {
    const char *what;
    int ctx_timeout;  /* tlsock_ctx_set_handshake_timeout(), 0: not called */
    int opts_timeout; /* opts.handshake_timeout_ms */
};

static const struct silent_case silent_cases[] = {
    {.what = "server options", .opts_timeout = SILENT_TIMEOUT_MS},
    {.what = "context default (options 0)", .ctx_timeout = SILENT_TIMEOUT_MS},
    {.what = "options override the context",
     .ctx_timeout = 4 * TS_IO_TIMEOUT_MS,
     .opts_timeout = SILENT_TIMEOUT_MS},
};

/*
 * A client connects and says nothing. The handshake timeout drops it (EHANDSHAKE_TIMEOUT, not
 * before its time) and closes its socket, while a good client is served in the meantime (it
 * finishes before the silent one is dropped: the server does not wait on the silent one).
 */
static void test_accept_error_silent_client(void **state)
{
    for (size_t i = 0; i < sizeof(silent_cases) / sizeof(silent_cases[0]); i++) {
        const struct silent_case *c = &silent_cases[i];
        struct tlsock_uv_opts opts;
        struct env *env;
        struct peer *good;
        struct srv *s;
        int64_t start;
        int fd = -1;

        print_message("%s\n", c->what);
        if (i > 0) {
            assert_int_equal(env_teardown(state), 0);
            assert_int_equal(env_setup(state), 0);
        }
        env = *state;
        make_contexts(env);
        if (c->ctx_timeout != 0) {
            TS_ASSERT_RC(tlsock_ctx_set_handshake_timeout(env->sctx, c->ctx_timeout), 0);
        }
        opts = base_opts(NULL);
        opts.handshake_timeout_ms = c->opts_timeout;
        s = serve_ok(env, 0, env->sctx, &echo_server, &opts);

        start = tlsock_now_ms();
        assert_int_equal(ts_raw_connect("127.0.0.1", s->port, 0, &fd), 0);
        raw_track(env, fd);
        good = client_start(env, env->cctx, s->port, &echo_client, 5000, 5);
        good->close_when_echoed = true;
        RUN_UNTIL(env, good->conn == NULL || env->naerr > 0, WAIT_MS);
        if (env->naerr > 0) {
            fail_msg("the silent client was dropped (%s) before the good client was served",
                     ts_rc_name(env->aerr[0].code));
        }
        TS_ASSERT_RC_MSG(good->connect_rc, 0, good->connect_msg);
        assert_true(echoed(good));

        RUN_UNTIL(env, env->naerr == 1, SILENT_TIMEOUT_MS + WAIT_MS);
        TS_ASSERT_RC_MSG(env->aerr[0].code, TLSOCK_EHANDSHAKE_TIMEOUT, env->aerr[0].msg);
        if (env->aerr[0].at_ms - start < SILENT_TIMEOUT_MS - 5) {
            fail_msg("dropped after %lld ms, before its %d ms timeout",
                     (long long)(env->aerr[0].at_ms - start), SILENT_TIMEOUT_MS);
        }
        assert_raw_sees_end(env, fd);
        raw_close(env, fd);
        assert_int_equal(s->connects, 1);
        RUN_UNTIL(env, server_peers_closed(env), WAIT_MS);
        assert_no_anomaly(env);
    }
}

/* ---- graceful close -------------------------------------------------------------------------- */

/*
 * A blocking client over a user transport that holds back the second half of its ClientHello
 * until the test opens a gate: a client that is in its handshake, reliably, when the server
 * closes.
 */
struct late_client {
    struct env *env;
    struct tlsock_ctx *ctx;
    uint16_t port;
    int fd;
    int writes;
    atomic_bool half_sent;
    int handshake_rc;
    int rc;
    char msg[TLSOCK__ERRMSG_SIZE];
};

static ssize_t late_write(void *user, const void *buf, size_t len)
{
    struct late_client *lc = user;
    ssize_t rc;

    lc->writes++;
    if (lc->writes == 1 && len > 1) {
        /* Half the ClientHello now; taking fewer bytes than offered is allowed. */
        rc = send_all(lc->fd, buf, len / 2);
        atomic_store(&lc->half_sent, true);
        env_wake(lc->env);
        return rc < 0 ? rc : (ssize_t)(len / 2);
    }
    if (lc->writes == 2 && !ts_gate_wait(&lc->env->gate, WAIT_MS)) {
        return TLSOCK_ETIMEDOUT;
    }
    return send_all(lc->fd, buf, len);
}

static ssize_t late_read(void *user, void *buf, size_t len)
{
    struct late_client *lc = user;
    struct pollfd pfd = {.fd = lc->fd, .events = POLLIN};
    ssize_t n;

    if (poll(&pfd, 1, TS_IO_TIMEOUT_MS) != 1) {
        return TLSOCK_ETIMEDOUT;
    }
    n = recv(lc->fd, buf, len, 0);
    return n >= 0 ? n : TLSOCK_ESYS;
}

static void late_client_main(void *arg)
{
    static const char ping[] = "late but welcome";
    struct late_client *lc = arg;
    struct tlsock_io io = {.read = late_read, .write = late_write, .user = lc};
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    char back[sizeof(ping)];

    lc->handshake_rc = TS_NOT_RUN;
    lc->rc = ts_raw_connect("127.0.0.1", lc->port, 0, &lc->fd);
    if (lc->rc != 0) {
        snprintf(lc->msg, sizeof(lc->msg), "raw connect failed");
        atomic_store(&lc->half_sent, true);
        return;
    }
    opts.servername = "localhost";
    lc->rc = tlsock_attach_io(lc->ctx, &io, &opts, &conn);
    if (lc->rc == 0) {
        lc->rc = tlsock_handshake(conn);
        lc->handshake_rc = lc->rc;
    }
    if (lc->rc == 0) {
        lc->rc = tlsock_write(conn, ping, sizeof(ping));
    }
    if (lc->rc == 0) {
        lc->rc = ts_read_full(conn, back, sizeof(back));
    }
    if (lc->rc == 0 && memcmp(back, ping, sizeof(ping)) != 0) {
        lc->rc = TS_EMISMATCH;
    }
    if (lc->rc != 0 && conn != NULL) {
        snprintf(lc->msg, sizeof(lc->msg), "%s", tlsock_conn_errmsg(conn));
    }
    atomic_store(&lc->half_sent, true);
    tlsock_close(conn);
    close(lc->fd);
}

/* Sends @p len bytes of pattern @p seed on an established client and waits for the echo. */
static void echo_round(struct env *env, struct peer *p, size_t len, unsigned seed)
{
    unsigned char *more = malloc(len);
    size_t before = p->rx_len;

    assert_non_null(more);
    ts_fill(more, len, seed);
    if (peer_write(p, more, len, true) != 0) {
        free(more);
        fail_msg("write on an established connection failed");
    }
    RUN_UNTIL(env, p->rx_len >= before + len || p->conn == NULL || p->events > 0, WAIT_MS);
    assert_int_equal(p->rx_len, before + len);
    assert_memory_equal(p->rx + before, more, len);
    free(more);
}

/*
 * tlsock_uv_server_close(): no new connection gets in (a TCP connect is refused, an async one
 * fails with ESYS); a client already handed over keeps working, before and after the server is
 * gone; a client in its handshake at that moment finishes it and is handed over (on_connect);
 * the close callback comes once, after that hand-over and without waiting for the application's
 * connections; a second call is a no-op.
 */
static void test_graceful_close(void **state)
{
    struct env *env = *state;
    struct late_client *lc = calloc(1, sizeof(*lc));
    struct peer *a;
    struct peer *refused;
    struct srv *s;
    int fd = -1;
    int err;

    assert_non_null(lc);
    make_contexts(env);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx2), 0);
    s = serve_ok(env, 0, env->sctx, &echo_server, NULL);

    /* The late client connects first; the kernel's accept queue is FIFO, so once the server
     * has handed over client A, it has accepted the late client too, which is then stuck in
     * the middle of its handshake. */
    lc->env = env;
    lc->ctx = env->cctx2;
    lc->port = s->port;
    lc->fd = -1;
    lc->rc = TS_NOT_RUN;
    atomic_init(&lc->half_sent, false);
    thread_start(env, late_client_main, lc);
    RUN_UNTIL(env, atomic_load(&lc->half_sent), WAIT_MS);

    a = client_start(env, env->cctx, s->port, &echo_client, 1000, 1);
    RUN_UNTIL(env, echoed(a) && s->connects == 1, WAIT_MS);

    server_close(s);
    if (s->server == NULL) {
        fail_msg("the server's close callback ran within tlsock_uv_server_close()");
    }
    /* A second call is a no-op: its callback never runs. */
    tlsock_uv_server_close(s->server, stray_server_close);
    err = raw_connect_errno(s->port, &fd);
    if (fd >= 0) {
        close(fd);
    }
    if (err != ECONNREFUSED) {
        fail_msg("a TCP connect after tlsock_uv_server_close() gave \"%s\", not refused",
                 err == 0 ? "connected" : strerror(err));
    }
    refused = client_start(env, env->cctx, s->port, &echo_client, 10, 2);
    refused->hooks.on_connect = close_on_failure;
    RUN_UNTIL(env, refused->connect_rc != TS_NOT_RUN, WAIT_MS);
    TS_ASSERT_RC_MSG(refused->connect_rc, TLSOCK_ESYS, refused->connect_msg);

    /* Client A is the application's: it keeps working while the server closes. */
    echo_round(env, a, 777, 3);
    if (s->close_cbs > 0) {
        fail_msg("the server's close callback came before its client in the handshake was "
                 "handed over");
    }

    ts_gate_open(&env->gate);
    RUN_UNTIL(env, s->close_cbs == 1 && atomic_load(&env->threads_running) == 0, WAIT_MS);
    TS_ASSERT_RC_MSG(lc->handshake_rc, 0, lc->msg);
    TS_ASSERT_RC_MSG(lc->rc, 0, lc->msg);
    assert_int_equal(s->connects, 2);
    assert_int_equal(s->connects_at_close_cb, 2);
    assert_int_equal(env->naerr, 0);
    /* A's server side was still open when the server reported it was gone. */
    assert_true(s->open_peers_at_close_cb >= 1);

    /* And A still works once the server is freed. */
    assert_non_null(a->conn);
    echo_round(env, a, 4321, 4);
    peer_close(a);
    RUN_UNTIL(env, all_closed(env), WAIT_MS);
    assert_int_equal(a->events, 0);
    for (int i = 0; i < env->npeers; i++) {
        if (env->peers[i].srv == s) {
            TS_ASSERT_RC_MSG(env->peers[i].event_rc, TLSOCK_ECLOSED, env->peers[i].event_msg);
        }
    }
    run_for(env, 50);
    assert_int_equal(s->close_cbs, 1);
    assert_no_anomaly(env);
    free(lc);
}

/*
 * Clients in their handshake when the server closes and that then fail: one resets, one stays
 * silent until the handshake timeout. Both still go to on_accept_error, and the close callback
 * waits for both (not before the silent one's timeout).
 */
static void test_close_waits_for_failing_handshakes(void **state)
{
    struct env *env = *state;
    struct tlsock_uv_opts opts = base_opts(NULL);
    static const char half[] = "\x16\x03\x01\x01\x00\x01\x00\x00\xfc\x03\x03";
    bool seen_esys = false;
    bool seen_timeout = false;
    int64_t start;
    struct srv *s;
    int resetter = -1;
    int silent = -1;

    make_contexts(env);
    opts.handshake_timeout_ms = SILENT_TIMEOUT_MS;
    s = serve_ok(env, 0, env->sctx, &echo_server, &opts);
    start = tlsock_now_ms();
    assert_int_equal(ts_raw_connect("127.0.0.1", s->port, 0, &resetter), 0);
    raw_track(env, resetter);
    assert_int_equal(send(resetter, half, sizeof(half) - 1, MSG_NOSIGNAL),
                     (ssize_t)(sizeof(half) - 1));
    assert_int_equal(ts_raw_connect("127.0.0.1", s->port, 0, &silent), 0);
    raw_track(env, silent);
    /* FIFO accept queue: once this later client is served, both are in their handshake. */
    assert_serves_good_client(env, s, env->cctx);
    assert_int_equal(env->naerr, 0);

    server_close(s);
    {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};

        assert_int_equal(setsockopt(resetter, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
        raw_close(env, resetter);
    }
    RUN_UNTIL(env, s->close_cbs == 1, SILENT_TIMEOUT_MS + WAIT_MS);
    assert_int_equal(s->accept_errors_at_close_cb, 2);
    for (int i = 0; i < env->naerr; i++) {
        seen_esys = seen_esys || env->aerr[i].code == TLSOCK_ESYS;
        seen_timeout = seen_timeout || env->aerr[i].code == TLSOCK_EHANDSHAKE_TIMEOUT;
        print_message("  accept error: %s (%s)\n", ts_rc_name(env->aerr[i].code), env->aerr[i].msg);
    }
    assert_true(seen_esys);
    assert_true(seen_timeout);
    if (s->close_cb_ms - start < SILENT_TIMEOUT_MS - 5) {
        fail_msg("the close callback came after %lld ms, before the silent client's %d ms "
                 "handshake timeout",
                 (long long)(s->close_cb_ms - start), SILENT_TIMEOUT_MS);
    }
    assert_int_equal(s->connects, 1);
    assert_no_anomaly(env);
}

/* ---- abort ----------------------------------------------------------------------------------- */

/* Far beyond any wait of a test: only an abort ends these handshakes in time. */
#define ABORT_HANDSHAKE_MS (4 * WAIT_MS)

/* The first bytes of a ClientHello: a client half way through its first flight. */
static const char half_hello[] = "\x16\x03\x01\x01\x00\x01\x00\x00\xfc\x03\x03";

/*
 * Two raw clients in their handshake on @p s: raw[0] says nothing, raw[1] sent half a
 * ClientHello. Then a good async client, served and left open: the accept queue is FIFO, so once
 * it is handed over the raw ones have been accepted. Returns the good client.
 */
static struct peer *clients_in_handshake(struct env *env, struct srv *s, int raw[2])
{
    struct peer *a;

    assert_int_equal(ts_raw_connect("127.0.0.1", s->port, 0, &raw[0]), 0);
    raw_track(env, raw[0]);
    assert_int_equal(ts_raw_connect("127.0.0.1", s->port, 0, &raw[1]), 0);
    raw_track(env, raw[1]);
    assert_int_equal(send(raw[1], half_hello, sizeof(half_hello) - 1, MSG_NOSIGNAL),
                     (ssize_t)(sizeof(half_hello) - 1));
    a = client_start(env, env->cctx, s->port, &echo_client, 1000, 1);
    RUN_UNTIL(env, echoed(a) && s->connects == 1, WAIT_MS);
    assert_int_equal(env->naerr, 0);
    return a;
}

/* An echo server whose handshake timeout no test waits for, with clients_in_handshake() on it. */
static struct srv *serve_with_handshakes(struct env *env, int raw[2], struct peer **a)
{
    struct tlsock_uv_opts opts = base_opts(NULL);
    struct srv *s;

    make_contexts(env);
    opts.handshake_timeout_ms = ABORT_HANDSHAKE_MS;
    s = serve_ok(env, 0, env->sctx, &echo_server, &opts);
    *a = clients_in_handshake(env, s, raw);
    return s;
}

/* The raw client's connection was reset: no alert, no end of stream, ECONNRESET. */
static void assert_raw_reset(int fd, const char *what)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    char buf[64];
    ssize_t n;

    assert_int_equal(poll(&pfd, 1, TS_IO_TIMEOUT_MS), 1);
    n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (!(n < 0 && errno == ECONNRESET)) {
        fail_msg("%s: a read gave %s, not a reset", what,
                 n > 0    ? "data"
                 : n == 0 ? "the end of the stream"
                          : strerror(errno));
    }
}

/* Both raw clients of clients_in_handshake() went to on_accept_error with ECANCELED, before the
 * close callback, and were reset. */
static void assert_handshakes_canceled(struct env *env, struct srv *s, const int raw[2])
{
    assert_int_equal(env->naerr, 2);
    for (int i = 0; i < env->naerr; i++) {
        TS_ASSERT_RC_MSG(env->aerr[i].code, TLSOCK_ECANCELED, env->aerr[i].msg);
        assert_ptr_equal(env->aerr[i].srv, s);
    }
    assert_int_equal(s->accept_errors_at_close_cb, 2);
    assert_raw_reset(raw[0], "the silent client");
    assert_raw_reset(raw[1], "the client with half a ClientHello");
    assert_int_equal(s->connects, 1);
}

/*
 * tlsock_uv_server_abort(): the clients in their handshake (one silent, one half way through its
 * ClientHello) are reset without waiting for their handshake timeout, each reported with
 * ECANCELED from the loop (not within the call); the close callback follows; a second call, and
 * a close after it, are no-ops; the connection already handed over keeps working after the
 * server is gone.
 */
static void test_abort_resets_handshakes(void **state)
{
    struct env *env = *state;
    int raw[2] = {-1, -1};
    struct peer *a;
    struct srv *s = serve_with_handshakes(env, raw, &a);

    server_abort(s);
    if (s->server == NULL || env->naerr > 0) {
        fail_msg("a callback ran within tlsock_uv_server_abort()");
    }
    tlsock_uv_server_abort(s->server, stray_server_close);
    tlsock_uv_server_close(s->server, stray_server_close);
    RUN_UNTIL(env, s->close_cbs == 1, WAIT_MS);
    assert_handshakes_canceled(env, s, raw);

    echo_round(env, a, 777, 3);
    peer_close(a);
    RUN_UNTIL(env, all_closed(env), WAIT_MS);
    assert_int_equal(a->events, 0);
    run_for(env, 50);
    assert_int_equal(s->close_cbs, 1);
    assert_no_anomaly(env);
}

/*
 * tlsock_uv_server_abort() after tlsock_uv_server_close(): the close waits for the handshakes;
 * the abort stops the wait, resets them as above, and the close callback given to the close is
 * the one that runs (the abort's is ignored).
 */
static void test_abort_after_close(void **state)
{
    struct env *env = *state;
    int raw[2] = {-1, -1};
    struct peer *a;
    struct srv *s = serve_with_handshakes(env, raw, &a);

    server_close(s);
    run_for(env, 200);
    if (s->close_cbs > 0 || env->naerr > 0) {
        fail_msg("the graceful close did not wait for the clients in their handshake");
    }
    tlsock_uv_server_abort(s->server, stray_server_close);
    RUN_UNTIL(env, s->close_cbs == 1, WAIT_MS);
    assert_handshakes_canceled(env, s, raw);

    echo_round(env, a, 555, 5);
    assert_no_anomaly(env);
}

/* ---- SO_REUSEPORT ---------------------------------------------------------------------------- */

#define REUSEPORT_CLIENTS 32

/*
 * Two servers on one port with opts.reuseport: the kernel spreads clients among them, so with
 * 32 clients each server gets some (the chance that one gets none is 2^-31). Once the first is
 * closed, the second alone takes new clients.
 */
static void test_reuseport(void **state)
{
    struct env *env = *state;
    struct tlsock_uv_opts opts = base_opts(NULL);
    struct peer *late;
    struct srv *s0;
    struct srv *s1;

    make_contexts(env);
    opts.reuseport = true;
    s0 = serve_ok(env, 0, env->sctx, &echo_server, &opts);
    TS_ASSERT_RC(serve(env, 1, env->sctx, s0->port, &echo_server, &opts), 0);
    s1 = &env->srvs[1];
    assert_int_equal(s1->port, s0->port);
    for (int i = 0; i < REUSEPORT_CLIENTS; i++) {
        struct peer *p = client_start(env, env->cctx, s0->port, &echo_client, 100, (unsigned)i);

        p->close_when_echoed = true;
    }
    RUN_UNTIL(env, conns_closed(env), WAIT_MS);
    for (int i = 0; i < REUSEPORT_CLIENTS; i++) {
        TS_ASSERT_RC_MSG(env->peers[i].connect_rc, 0, env->peers[i].connect_msg);
        assert_true(echoed(&env->peers[i]));
    }
    print_message("clients per server: %d and %d\n", s0->connects, s1->connects);
    assert_int_equal(s0->connects + s1->connects, REUSEPORT_CLIENTS);
    assert_true(s0->connects > 0);
    assert_true(s1->connects > 0);

    server_close(s0);
    RUN_UNTIL(env, s0->close_cbs == 1, WAIT_MS);
    late = client_start(env, env->cctx, s0->port, &echo_client, 100, 99);
    late->close_when_echoed = true;
    RUN_UNTIL(env, conns_closed(env), WAIT_MS);
    TS_ASSERT_RC_MSG(late->connect_rc, 0, late->connect_msg);
    assert_true(echoed(late));
    assert_int_equal(s1->connects + s0->connects, REUSEPORT_CLIENTS + 1);
    assert_int_equal(env->naerr, 0);
    assert_no_anomaly(env);
}

struct bind_case {
    const char *what;
    bool first_reuseport;
    bool second_reuseport;
};

static const struct bind_case bind_cases[] = {
    {.what = "neither with reuseport"},
    {.what = "only the first with reuseport", .first_reuseport = true},
    {.what = "only the second with reuseport", .second_reuseport = true},
};

/* A port in use without SO_REUSEPORT on both: ESYS, nothing returned, no callback, no handle
 * left on the loop (the teardown checks the loop closes). */
static void test_port_in_use(void **state)
{
    struct env *env = *state;
    struct tlsock_uv_opts opts = base_opts(NULL);
    struct srv *s0;

    make_contexts(env);
    for (size_t i = 0; i < sizeof(bind_cases) / sizeof(bind_cases[0]); i++) {
        const struct bind_case *c = &bind_cases[i];
        struct tlsock_uv_server *out = (struct tlsock_uv_server *)&opts; /* sentinel */
        struct tlsock_uv_opts second = stray_opts(env);
        int rc;

        print_message("%s\n", c->what);
        opts.reuseport = c->first_reuseport;
        s0 = serve_ok(env, 0, env->sctx, &echo_server, &opts);
        second.reuseport = c->second_reuseport;
        rc = tlsock_uv_serve(&env->loop, env->sctx, "127.0.0.1", s0->port, 0, &second, &out);
        if (rc == 0) {
            tlsock_uv_server_close(out, NULL);
        }
        TS_ASSERT_RC(rc, TLSOCK_ESYS);
        assert_ptr_equal(out, (struct tlsock_uv_server *)&opts);
        /* The first server is unharmed. */
        assert_serves_good_client(env, s0, env->cctx);
        server_close(s0);
        RUN_UNTIL(env, s0->close_cbs == 1, WAIT_MS);
    }
    run_for(env, 50);
    assert_no_anomaly(env);
}

/* ---- the server's options reach its connections --------------------------------------------- */

#define IDLE_MS 400

static const char welcome[] = "welcome\n";

/*
 * What tlsock_uv_serve() is given applies to each connection it hands over: initial_data is sent
 * right after each handshake, before anything else; read_idle_timeout_ms ends a connection that
 * says nothing (ETIMEDOUT, not before its time); the user pointer starts as the server's (checked
 * by on_server_connect for every test).
 */
static void test_options_reach_connections(void **state)
{
    static const struct hooks reader = {.on_event = close_on_event};
    struct env *env = *state;
    struct tlsock_uv_opts opts = base_opts(NULL);
    struct peer *clients[3];
    struct srv *s;
    int64_t start;

    make_contexts(env);
    opts.initial_data = welcome;
    opts.initial_len = sizeof(welcome) - 1;
    opts.read_idle_timeout_ms = IDLE_MS;
    s = serve_ok(env, 0, env->sctx, &echo_server, &opts);
    start = tlsock_now_ms();
    for (int i = 0; i < 3; i++) {
        clients[i] = client_start(env, env->cctx, s->port, &reader, 0, 0);
    }
    RUN_UNTIL(env, conns_closed(env), WAIT_MS);
    assert_int_equal(s->connects, 3);
    for (int i = 0; i < 3; i++) {
        struct peer *c = clients[i];

        TS_ASSERT_RC_MSG(c->connect_rc, 0, c->connect_msg);
        assert_int_equal(c->rx_len, sizeof(welcome) - 1);
        assert_memory_equal(c->rx, welcome, sizeof(welcome) - 1);
        /* The server ended it: the client saw the end of the stream. */
        assert_int_equal(c->events, 1);
    }
    for (int i = 0; i < env->npeers; i++) {
        struct peer *p = &env->peers[i];

        if (p->srv == s) {
            TS_ASSERT_RC_MSG(p->event_rc, TLSOCK_ETIMEDOUT, p->event_msg);
            /* The idle time counts from the last bytes received (the client's Finished, which
             * may come a little before on_connect), so only the start of the test bounds it. */
            if (p->event_ms - start < IDLE_MS - 5) {
                fail_msg("read idle timeout %lld ms after the client started, before its %d ms",
                         (long long)(p->event_ms - start), IDLE_MS);
            }
        }
    }
    assert_int_equal(env->naerr, 0);
    assert_no_anomaly(env);
}

/* ---- IPv6 loopback --------------------------------------------------------------------------- */

static void test_ipv6_loopback(void **state)
{
    struct env *env = *state;
    struct srv *s;

    if (!ts_ipv6_available()) {
        print_message("SKIPPED: no IPv6 loopback (::1) on this machine\n");
        skip();
    }
    env->host = "::1";
    make_contexts(env);
    s = serve_ok(env, 0, env->sctx, &echo_server, NULL);
    assert_serves_good_client(env, s, env->cctx);
    assert_no_anomaly(env);
}

/* ---- calls that fail call nothing back ------------------------------------------------------- */

static void test_errors_call_no_callback(void **state)
{
    struct env *env = *state;
    struct tlsock_uv_opts opts = stray_opts(env);
    struct tlsock_uv_opts no_connect = stray_opts(env);
    struct tlsock_uv_server *sentinel = (struct tlsock_uv_server *)&opts;
    struct tlsock_uv_server *out = sentinel;
    struct tlsock_uv_conn *cout = (struct tlsock_uv_conn *)&opts;
    struct tlsock_ctx *no_cert = NULL;
    int rc;

    make_contexts(env);
    no_connect.on_connect = NULL;
    TS_ASSERT_RC(ts_server_ctx_new(NULL, &no_cert), 0);

    TS_ASSERT_RC(tlsock_uv_serve(&env->loop, no_cert, "127.0.0.1", 0, 0, &opts, &out),
                 TLSOCK_ECONFIG);
    tlsock_ctx_free(no_cert);
    TS_ASSERT_RC(tlsock_uv_serve(&env->loop, env->sctx, "127.0.0.1", 0, 0, &no_connect, &out),
                 TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_serve(&env->loop, env->sctx, "127.0.0.1", 0, 0, NULL, &out),
                 TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_serve(NULL, env->sctx, "127.0.0.1", 0, 0, &opts, &out), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_serve(&env->loop, NULL, "127.0.0.1", 0, 0, &opts, &out), TLSOCK_EINVAL);
    /* A client context is no server context: a bad argument or a configuration without a
     * certificate, either way refused. */
    rc = tlsock_uv_serve(&env->loop, env->cctx, "127.0.0.1", 0, 0, &opts, &out);
    if (rc != TLSOCK_EINVAL && rc != TLSOCK_ECONFIG) {
        fail_msg("serving a client context: %s, expected EINVAL or ECONFIG", ts_rc_name(rc));
    }
    assert_ptr_equal(out, sentinel);

    TS_ASSERT_RC(tlsock_uv_connect(&env->loop, env->cctx, "127.0.0.1", 1, &no_connect, &cout),
                 TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_connect(&env->loop, env->cctx, "127.0.0.1", 1, NULL, &cout),
                 TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_connect(NULL, env->cctx, "127.0.0.1", 1, &opts, &cout), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_connect(&env->loop, NULL, "127.0.0.1", 1, &opts, &cout), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_connect(&env->loop, env->cctx, NULL, 1, &opts, &cout), TLSOCK_EINVAL);
    assert_ptr_equal(cout, (struct tlsock_uv_conn *)&opts);

    /* Nothing may call back, and nothing may stay on the loop (the teardown checks it closes). */
    run_for(env, 100);
    assert_int_equal(env->stray, 0);
    /* The contexts are still good for a real server and client afterwards. */
    serve_ok(env, 0, env->sctx, &echo_server, NULL);
    assert_serves_good_client(env, &env->srvs[0], env->cctx);
    assert_no_anomaly(env);
}

/* ---- deadlines of many connections ---------------------------------------------------------- */

#define DEADLINE_PAIRS    6
#define DEADLINE_LONG_MS  1000
#define DEADLINE_SHORT_MS 100
#define DEADLINE_SLACK    10 /* the loop's cached clock may lag the handshake's last step */

static bool server_peers_evented(struct env *env, int n)
{
    int seen = 0;

    for (int i = 0; i < env->npeers; i++) {
        seen += env->peers[i].srv != NULL && env->peers[i].events > 0;
    }
    return seen == n;
}

/* The server connection made for client @p c (the next peer made after it). */
static struct peer *served(struct env *env, struct peer *c)
{
    for (int i = 0; i < env->npeers; i++) {
        if (&env->peers[i] == c && i + 1 < env->npeers) {
            return &env->peers[i + 1];
        }
    }
    return NULL;
}

static struct peer *connect_to(struct env *env, struct srv *s, const struct hooks *h, unsigned n)
{
    int before = s->connects;
    struct peer *c = client_start(env, env->cctx, s->port, h, 0, n);

    RUN_UNTIL(env, c->connects > 0 && s->connects == before + 1, WAIT_MS);
    return c;
}

/* A server connection of the deadline test: when it was due and when its timeout came. */
struct deadline_seen {
    struct peer *p;
    int64_t due_ms;
};

/*
 * Every timeout came, none early, and in the order of the due times: a connection due more than
 * DEADLINE_SLACK before another never fired after it (the heap hands out the earliest first,
 * also when the loop was too busy to fire either on time).
 */
static void assert_due_order(const struct deadline_seen *seen, int n)
{
    for (int i = 0; i < n; i++) {
        const struct peer *p = seen[i].p;

        TS_ASSERT_RC_MSG(p->event_rc, TLSOCK_ETIMEDOUT, p->event_msg);
        assert_true(p->event_ms >= seen[i].due_ms - DEADLINE_SLACK);
        for (int j = 0; j < n; j++) {
            if (seen[i].due_ms + DEADLINE_SLACK < seen[j].due_ms) {
                assert_true(p->event_ms <= seen[j].p->event_ms);
            }
        }
    }
}

/*
 * Every connection's deadlines sit in its loop's one timer (a heap of due times). Pairs of
 * connections, the first to a server with a long read idle timeout, the second to one with a
 * short one: each later connection's deadline comes first, so it must fire first, neither may
 * fire early, and every one must fire. The order is asserted from the due times the
 * connections really got (a slow machine spaces them out), and the first pair must be out of
 * creation order, or the test proves nothing.
 */
static void test_idle_deadlines_share_one_timer(void **state)
{
    struct env *env = *state;
    struct tlsock_uv_opts extra = base_opts(NULL);
    const struct hooks quiet = {.on_connect = close_on_failure, .on_event = close_on_event};
    struct deadline_seen seen[2 * DEADLINE_PAIRS];

    make_contexts(env);
    extra.read_idle_timeout_ms = DEADLINE_LONG_MS;
    struct srv *slow = serve_ok(env, 0, env->sctx, &echo_server, &extra);
    extra.read_idle_timeout_ms = DEADLINE_SHORT_MS;
    struct srv *fast = serve_ok(env, 1, env->sctx, &echo_server, &extra);
    for (int i = 0; i < DEADLINE_PAIRS; i++) {
        struct peer *l = served(env, connect_to(env, slow, &quiet, 2u * (unsigned)i));
        struct peer *s = served(env, connect_to(env, fast, &quiet, 2u * (unsigned)i + 1));

        assert_non_null(l);
        assert_non_null(s);
        seen[2 * i] = (struct deadline_seen){l, l->connected_ms + DEADLINE_LONG_MS};
        seen[2 * i + 1] = (struct deadline_seen){s, s->connected_ms + DEADLINE_SHORT_MS};
    }
    /* Made later, due earlier (by far, unless the machine took most of a second to connect). */
    assert_true(seen[1].due_ms + DEADLINE_SLACK < seen[0].due_ms);
    RUN_UNTIL(env, server_peers_evented(env, 2 * DEADLINE_PAIRS), WAIT_MS);
    assert_due_order(seen, 2 * DEADLINE_PAIRS);
    RUN_UNTIL(env, conns_closed(env), WAIT_MS);
    assert_no_anomaly(env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_port_zero_and_concurrent_clients, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_accept_error_untrusted_client_cert, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_accept_error_garbage, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_accept_error_silent_client, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_graceful_close, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_close_waits_for_failing_handshakes, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_abort_resets_handshakes, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_abort_after_close, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_reuseport, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_port_in_use, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_options_reach_connections, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_ipv6_loopback, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_errors_call_no_callback, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_idle_deadlines_share_one_timer, env_setup,
                                        env_teardown),
    };

    return cmocka_run_group_tests_name("uv_server", tests, group_setup, group_teardown);
}
