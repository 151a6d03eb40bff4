/* Loopback TLS: clean close (close_notify) versus truncation, half-close, garbage from the peer,
 * and sticky errors. */
#include "support.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- clean close ----------------------------------------------------------------------------- */

static int serve_bye(struct tlsock_conn *conn, void *arg)
{
    int *final_rc = arg;
    unsigned char byte;
    size_t n = 0;
    int rc = tlsock_write(conn, "bye", 3);

    if (rc == 0) {
        rc = tlsock_shutdown(conn);
    }
    if (rc == 0) {
        /* Calling it again is a no-op. */
        rc = tlsock_shutdown(conn);
    }
    if (rc == 0) {
        *final_rc = tlsock_read(conn, &byte, 1, &n);
    }
    return rc;
}

static void test_clean_close(void **state)
{
    struct ts_env *env = *state;
    struct tlsock_opts opts = ts_opts();
    int server_final = TS_NOT_RUN;
    char buf[8] = {0};
    size_t n = 0;

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    TS_ASSERT_RC(ts_server_start(&env->srv, env->sctx, NULL, NULL, serve_bye, &server_final), 0);
    TS_ASSERT_RC(tlsock_connect(env->cctx, "127.0.0.1", env->srv.port, &opts, &env->client), 0);
    TS_ASSERT_RC(ts_read_full(env->client, buf, 3), 0);
    assert_memory_equal(buf, "bye", 3);
    TS_ASSERT_RC(tlsock_read(env->client, buf, sizeof(buf), &n), TLSOCK_ECLOSED);
    /* Every later read says the same. */
    TS_ASSERT_RC(tlsock_read(env->client, buf, sizeof(buf), &n), TLSOCK_ECLOSED);
    assert_true(tlsock_err_is_tls(TLSOCK_ECLOSED));
    /* Our own close_notify, sent by close, ends the server's read cleanly. */
    tlsock_close(env->client);
    env->client = NULL;
    ts_server_stop(&env->srv);
    TS_ASSERT_RC_MSG(env->srv.result, 0, env->srv.errmsg);
    TS_ASSERT_RC(server_final, TLSOCK_ECLOSED);
}

/* ---- half-close ------------------------------------------------------------------------------ */

static int serve_after_client_shutdown(struct tlsock_conn *conn, void *arg)
{
    int *read_rc = arg;
    unsigned char byte;
    size_t n = 0;
    int rc;

    *read_rc = tlsock_read(conn, &byte, 1, &n);
    /* The client will write no more, but it still reads: answer, then close. */
    rc = tlsock_write(conn, "late", 4);
    if (rc == 0) {
        rc = tlsock_shutdown(conn);
    }
    return rc;
}

static void test_half_close(void **state)
{
    struct ts_env *env = *state;
    struct tlsock_opts opts = ts_opts();
    int server_read = TS_NOT_RUN;
    char buf[8] = {0};
    size_t n = 0;

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    TS_ASSERT_RC(ts_server_start(&env->srv, env->sctx, NULL, NULL, serve_after_client_shutdown,
                                 &server_read),
                 0);
    TS_ASSERT_RC(tlsock_connect(env->cctx, "127.0.0.1", env->srv.port, &opts, &env->client), 0);
    TS_ASSERT_RC(tlsock_shutdown(env->client), 0);
    TS_ASSERT_RC(tlsock_shutdown(env->client), 0);
    /* Writing after shutdown is a caller error, and not a fatal one for reading. */
    TS_ASSERT_RC(tlsock_write(env->client, "x", 1), TLSOCK_EINVAL);
    TS_ASSERT_RC_MSG(ts_read_full(env->client, buf, 4), 0, tlsock_conn_errmsg(env->client));
    assert_memory_equal(buf, "late", 4);
    TS_ASSERT_RC(tlsock_read(env->client, buf, sizeof(buf), &n), TLSOCK_ECLOSED);
    tlsock_close(env->client);
    env->client = NULL;
    ts_server_stop(&env->srv);
    TS_ASSERT_RC(server_read, TLSOCK_ECLOSED);
    TS_ASSERT_RC_MSG(env->srv.result, 0, env->srv.errmsg);
}

/* ---- truncation ------------------------------------------------------------------------------ */

struct raw_tls {
    struct tlsock_ctx *ctx;
    int handshake_rc;
    int final_rc;
    char errmsg[TLSOCK__ERRMSG_SIZE];
};

/*
 * TLS over a raw accepted socket, then a TCP FIN without close_notify: what a truncation attack
 * or a crashed peer looks like. shutdown(SHUT_WR) rather than close() keeps the descriptor valid
 * for the attached connection until the helper closes it.
 */
static int serve_then_fin(int fd, void *arg)
{
    struct raw_tls *rt = arg;
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    unsigned char byte;
    size_t n = 0;
    int rc = tlsock_attach_fd(rt->ctx, fd, &opts, &conn);

    if (rc == 0) {
        rc = tlsock_handshake(conn);
        rt->handshake_rc = rc;
    }
    if (rc == 0) {
        rc = tlsock_write(conn, "data", 4);
    }
    if (rc == 0) {
        rc = shutdown(fd, SHUT_WR) == 0 ? 0 : TS_ESETUP;
    }
    if (rc == 0) {
        /* Wait for the client to go away; it sends no close_notify after a truncation. */
        rt->final_rc = tlsock_read(conn, &byte, 1, &n);
        snprintf(rt->errmsg, sizeof(rt->errmsg), "%s", tlsock_conn_errmsg(conn));
    }
    tlsock_close(conn);
    return rc;
}

static void test_truncation(void **state)
{
    struct ts_env *env = *state;
    struct tlsock_opts opts = ts_opts();
    struct raw_tls rt = {.handshake_rc = TS_NOT_RUN, .final_rc = TS_NOT_RUN};
    char buf[8] = {0};
    size_t n = 0;

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    rt.ctx = env->sctx;
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    TS_ASSERT_RC(ts_server_start_raw(&env->srv, NULL, 0, serve_then_fin, &rt), 0);
    TS_ASSERT_RC(tlsock_connect(env->cctx, "127.0.0.1", env->srv.port, &opts, &env->client), 0);
    TS_ASSERT_RC(ts_read_full(env->client, buf, 4), 0);
    assert_memory_equal(buf, "data", 4);
    TS_ASSERT_RC_MSG(tlsock_read(env->client, buf, sizeof(buf), &n), TLSOCK_ETRUNCATED,
                     tlsock_conn_errmsg(env->client));
    assert_true(strlen(tlsock_conn_errmsg(env->client)) > 0);
    /* Sticky: the session is dead, for reads and writes alike. */
    TS_ASSERT_RC(tlsock_read(env->client, buf, sizeof(buf), &n), TLSOCK_ETRUNCATED);
    TS_ASSERT_RC(tlsock_write(env->client, "x", 1), TLSOCK_ETRUNCATED);
    TS_ASSERT_RC(tlsock_shutdown(env->client), TLSOCK_ETRUNCATED);
    tlsock_close(env->client);
    env->client = NULL;
    ts_server_stop(&env->srv);
    TS_ASSERT_RC(rt.handshake_rc, 0);
    TS_ASSERT_RC(env->srv.result, 0);
    /* The client sent no close_notify either: a dead session never ends cleanly on the other
     * side. Nor does it send an alert (OpenSSL's own would be decode_error, which the server
     * did nothing to deserve): the server sees a bare end, alike on every pair. */
    TS_ASSERT_RC_MSG(rt.final_rc, TLSOCK_ETRUNCATED, rt.errmsg);
}

/* ---- the peer goes away or talks nonsense during the handshake ------------------------------- */

static int serve_eof_after_hello(int fd, void *arg)
{
    char buf[4096];

    (void)arg;
    /* Consume the ClientHello so that the close sends a FIN, not a reset (unread data). */
    return read(fd, buf, sizeof(buf)) > 0 ? 0 : TS_ESETUP;
}

static int serve_http(int fd, void *arg)
{
    static const char reply[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    char buf[512];
    ssize_t got;

    (void)arg;
    /* Read (part of) the ClientHello first so that closing does not reset the connection. */
    got = read(fd, buf, sizeof(buf));
    if (got <= 0 || write(fd, reply, sizeof(reply) - 1) != (ssize_t)(sizeof(reply) - 1)) {
        return TS_ESETUP;
    }
    return 0;
}

static void test_eof_during_handshake(void **state)
{
    struct ts_env *env = *state;
    struct tlsock_opts opts = ts_opts();

    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    TS_ASSERT_RC(ts_server_start_raw(&env->srv, NULL, 0, serve_eof_after_hello, NULL), 0);
    TS_ASSERT_RC(tlsock_connect(env->cctx, "127.0.0.1", env->srv.port, &opts, &env->client),
                 TLSOCK_ETRUNCATED);
    assert_null(env->client);
    ts_server_stop(&env->srv);
    TS_ASSERT_RC(env->srv.result, 0);
}

static void test_not_tls(void **state)
{
    struct ts_env *env = *state;
    struct tlsock_opts opts = ts_opts();

    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    TS_ASSERT_RC(ts_server_start_raw(&env->srv, NULL, 0, serve_http, NULL), 0);
    TS_ASSERT_RC(tlsock_connect(env->cctx, "127.0.0.1", env->srv.port, &opts, &env->client),
                 TLSOCK_EPROTO);
    assert_null(env->client);
    assert_true(strlen(tlsock_errmsg()) > 0);
    ts_server_stop(&env->srv);
    TS_ASSERT_RC(env->srv.result, 0);
}

/* ---- writing to a peer that is gone ---------------------------------------------------------- */

static int serve_handshake_then_vanish(int fd, void *arg)
{
    struct raw_tls *rt = arg;
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    int rc = tlsock_attach_fd(rt->ctx, fd, &opts, &conn);

    if (rc == 0) {
        rc = tlsock_handshake(conn);
        rt->handshake_rc = rc;
    }
    /* Linger 0: the helper's close() sends a TCP reset, so the client's writes fail. */
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    if (rc == 0) {
        rc = shutdown(fd, SHUT_RDWR) == 0 ? 0 : TS_ESETUP;
    }
    tlsock_close(conn);
    return rc;
}

static void test_write_to_vanished_peer(void **state)
{
    struct ts_env *env = *state;
    struct tlsock_opts opts = ts_opts();
    struct raw_tls rt = {.handshake_rc = TS_NOT_RUN};
    static unsigned char chunk[16384];
    int rc = 0;

    /* SIGPIPE must never kill the process: make sure nobody set it to ignored for us. */
    signal(SIGPIPE, SIG_DFL);
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    rt.ctx = env->sctx;
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    TS_ASSERT_RC(ts_server_start_raw(&env->srv, NULL, 0, serve_handshake_then_vanish, &rt), 0);
    TS_ASSERT_RC(tlsock_connect(env->cctx, "127.0.0.1", env->srv.port, &opts, &env->client), 0);
    ts_server_stop(&env->srv);
    TS_ASSERT_RC(rt.handshake_rc, 0);
    /* Bounded: the reset arrives within a few writes; 1000 x 16 KiB is far beyond any buffer. */
    for (int i = 0; i < 1000 && rc == 0; i++) {
        rc = tlsock_write(env->client, chunk, sizeof(chunk));
    }
    assert_true(rc < 0);
    print_message("write to a vanished peer: %s (%s)\n", ts_rc_name(rc),
                  tlsock_conn_errmsg(env->client));
    TS_ASSERT_RC_MSG(rc, TLSOCK_ESYS, tlsock_conn_errmsg(env->client));
    TS_ASSERT_RC(tlsock_write(env->client, chunk, 1), rc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_clean_close, ts_env_setup, ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_half_close, ts_env_setup, ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_truncation, ts_env_setup, ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_eof_during_handshake, ts_env_setup, ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_not_tls, ts_env_setup, ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_write_to_vanished_peer, ts_env_setup, ts_env_teardown),
    };

    return cmocka_run_group_tests_name("close", tests, ts_pki_setup, ts_pki_teardown);
}
