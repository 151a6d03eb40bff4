/*
 * Every public call on an async connection, in every state an application can see it in,
 * returns what include/tlsock/uv.h promises (the states are docs/async.md's diagram):
 *
 *   state          write  shutdown  release  read_start  read_stop  peername  tls
 *   RESOLVING      0      0         EINVAL   0           0          EINVAL    NULL
 *   HANDSHAKING    0      0         EINVAL   0           0          0         set
 *   OPEN           0      0         0        0           0          0         set
 *   shut down      EINVAL EINVAL    EINVAL   0           0          0         set
 *   RELEASING      EINVAL EINVAL    EINVAL   EINVAL      0          0         set
 *   DEAD           EINVAL EINVAL    EINVAL   EINVAL      0          0 (FIN)   set
 *   CLOSING        EINVAL EINVAL    EINVAL   EINVAL      0          0         set
 *   in on_close    EINVAL EINVAL    EINVAL   EINVAL      0          EINVAL    -
 *
 * A refused call calls nothing back: every handle ends with exactly the callbacks the harness
 * expects (it flags any other as an anomaly), and the release callback of a release that was
 * refused never runs.
 */
#include "support/uv_harness.h"

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NOT_CHECKED 1 /* no TLSOCK_E* is positive */

/* What each call must return in one state. */
struct expect {
    const char *state;
    int write;
    int shutdown;
    int release;
    int read_start;
    int peername;
    bool has_tls;
};

static int release_cbs;
static int release_status;

static void release_cb(struct tlsock_uv_conn *conn, struct tlsock_conn *blocking, int status)
{
    (void)conn;
    release_cbs++;
    release_status = status;
    if (blocking != NULL) {
        tlsock_close(blocking);
    }
}

static int peername_rc(struct tlsock_uv_conn *conn)
{
    struct sockaddr_storage ss;

    return tlsock_uv_conn_peername(conn, &ss);
}

static const unsigned char payload[] = "state";

/* A refused write's write_arg: it must never complete (the harness flags one that does). */
static struct wbuf refused_writes[16];
static int nrefused;

static void check_rc(struct peer *p, const char *state, const char *call, int rc, int expected)
{
    if (rc != expected) {
        anomaly(p->env, "%s: %s returned %s, expected %s", state, call, ts_rc_name(rc),
                ts_rc_name(expected));
    }
}

/*
 * Checks the calls that do not change the state first, then the mutating ones expected to be
 * refused (a refusal changes nothing); the one mutating call expected to succeed, if any, is the
 * caller's to make afterwards. It runs inside loop callbacks too, so it records mismatches as
 * anomalies (a cmocka failure must not jump out of uv_run()).
 */
static void check_calls(struct peer *p, const struct expect *e)
{
    struct tlsock_uv_conn *conn = p->conn;

    check_rc(p, e->state, "peername", peername_rc(conn), e->peername);
    if ((tlsock_uv_conn_tls(conn) != NULL) != e->has_tls) {
        anomaly(p->env, "%s: tlsock_uv_conn_tls() is%s NULL", e->state, e->has_tls ? "" : " not");
    }
    check_rc(p, e->state, "read_stop", tlsock_uv_read_stop(conn), 0);
    check_rc(p, e->state, "read_start", tlsock_uv_read_start(conn), e->read_start);
    if (e->release != 0) {
        check_rc(p, e->state, "release", tlsock_uv_release(conn, release_cb), e->release);
    }
    if (e->shutdown != 0) {
        check_rc(p, e->state, "shutdown", tlsock_uv_shutdown(conn), e->shutdown);
    }
    if (e->write != 0 && nrefused < (int)(sizeof(refused_writes) / sizeof(refused_writes[0]))) {
        size_t before = tlsock_uv_conn_write_queue_size(conn);
        check_rc(p, e->state, "write",
                 peer_write_buf(p, &refused_writes[nrefused++], payload, sizeof(payload)),
                 e->write);
        if (tlsock_uv_conn_write_queue_size(conn) != before) {
            anomaly(p->env, "%s: a refused write changed the queue size", e->state);
        }
    }
}

/* Clients that only close: on a failed connect, and at any event. */
static const struct hooks plain_client = {
    .on_connect = close_on_failure,
    .on_event = close_on_event,
};

static void test_resolving(void **state)
{
    struct env *env = *state;
    const struct expect e = {"RESOLVING", 0, 0, TLSOCK_EINVAL, 0, TLSOCK_EINVAL, false};
    const struct expect shut = {
        "RESOLVING, shut down", TLSOCK_EINVAL, TLSOCK_EINVAL, TLSOCK_EINVAL, 0,
        TLSOCK_EINVAL,          false};

    make_contexts(env);
    struct srv *s = serve_ok(env, 0, env->sctx, &echo_server, NULL);
    /* The loop has not run: the name lookup is still pending. */
    struct peer *p = client_start(env, env->cctx, s->port, &plain_client, 0, 1);
    check_calls(p, &e);
    assert_int_equal(peer_write(p, payload, sizeof(payload), false), 0);
    TS_ASSERT_RC(tlsock_uv_shutdown(p->conn), 0);
    check_calls(p, &shut);
    /* The write queued before the shutdown still goes out, then close_notify. */
    RUN_UNTIL(env, env->npeers == 2 && env->peers[1].event_rc == TLSOCK_ECLOSED, WAIT_MS);
    assert_int_equal(env->peers[1].rx_len, sizeof(payload));
    peer_close(p);
    RUN_UNTIL(env, conns_closed(env), WAIT_MS);
    assert_int_equal(release_cbs, 0);
    assert_no_anomaly(env);
}

/* A listener that never accepts: the kernel completes TCP, nobody answers the ClientHello. */
static void test_handshaking(void **state)
{
    struct env *env = *state;
    const struct expect e = {"HANDSHAKING", 0, 0, TLSOCK_EINVAL, 0, 0, true};
    int lfd = -1;
    uint16_t port = 0;

    make_contexts(env);
    assert_int_equal(ts_raw_listen("127.0.0.1", 0, &lfd, &port), 0);
    raw_track(env, lfd);
    struct peer *p = client_start(env, env->cctx, port, &plain_client, 0, 1);
    RUN_UNTIL(env, peername_rc(p->conn) == 0, WAIT_MS);
    check_calls(p, &e);
    assert_int_equal(peer_write(p, payload, sizeof(payload), false), 0);
    assert_true(tlsock_uv_conn_write_queue_size(p->conn) >= sizeof(payload));
    TS_ASSERT_RC(tlsock_uv_shutdown(p->conn), 0);
    peer_close(p);
    /* Closed before it was ready: on_connect(ECANCELED), the write canceled, then on_close. */
    RUN_UNTIL(env, conns_closed(env), WAIT_MS);
    TS_ASSERT_RC(p->connect_rc, TLSOCK_ECANCELED);
    assert_int_equal(p->write_errors, 1);
    assert_int_equal(p->closes, 1);
    assert_no_anomaly(env);
}

/* ---- server-side connections, checked from their callbacks ----------------------------------- */

static const struct expect open_e = {"OPEN", 0, 0, 0, 0, 0, true};
static const struct expect releasing_e = {
    "RELEASING", TLSOCK_EINVAL, TLSOCK_EINVAL, TLSOCK_EINVAL, TLSOCK_EINVAL, 0, true};
static const struct expect shut_e = {
    "OPEN, shut down", TLSOCK_EINVAL, TLSOCK_EINVAL, TLSOCK_EINVAL, 0, 0, true};
static const struct expect dead_e = {
    "DEAD", TLSOCK_EINVAL, TLSOCK_EINVAL, TLSOCK_EINVAL, TLSOCK_EINVAL, 0, true};
static const struct expect closing_e = {
    "CLOSING", TLSOCK_EINVAL, TLSOCK_EINVAL, TLSOCK_EINVAL, TLSOCK_EINVAL, 0, true};

static int checked;

static void open_then_release(struct peer *p, int status)
{
    (void)status;
    check_calls(p, &open_e);
    check_rc(p, "OPEN", "write", peer_write(p, payload, sizeof(payload), false), 0);
    check_rc(p, "OPEN", "release", tlsock_uv_release(p->conn, release_cb), 0);
    check_calls(p, &releasing_e);
    /* Closed while it waits: the release callback gets ECANCELED, then on_close. */
    peer_close(p);
    check_calls(p, &closing_e);
    checked++;
}

static void test_open_releasing_closing(void **state)
{
    struct env *env = *state;
    const struct hooks h = {.on_connect = open_then_release};

    make_contexts(env);
    struct srv *s = serve_ok(env, 0, env->sctx, &h, NULL);
    struct peer *c = client_start(env, env->cctx, s->port, &plain_client, 0, 1);
    RUN_UNTIL(env, checked == 1 && server_peers_closed(env), WAIT_MS);
    assert_int_equal(release_cbs, 1);
    TS_ASSERT_RC(release_status, TLSOCK_ECANCELED);
    peer_close(c);
    RUN_UNTIL(env, conns_closed(env), WAIT_MS);
    assert_no_anomaly(env);
}

static void open_then_shutdown(struct peer *p, int status)
{
    (void)status;
    check_rc(p, "OPEN", "shutdown", tlsock_uv_shutdown(p->conn), 0);
    check_calls(p, &shut_e);
    checked++;
}

static void test_shut_down(void **state)
{
    struct env *env = *state;
    const struct hooks h = {.on_connect = open_then_shutdown, .on_event = close_on_event};

    make_contexts(env);
    struct srv *s = serve_ok(env, 0, env->sctx, &h, NULL);
    struct peer *c = client_start(env, env->cctx, s->port, &plain_client, 0, 1);
    /* The client sees our close_notify. */
    RUN_UNTIL(env, checked == 1 && c->event_rc == TLSOCK_ECLOSED, WAIT_MS);
    peer_close(c);
    RUN_UNTIL(env, conns_closed(env), WAIT_MS);
    assert_int_equal(release_cbs, 0);
    assert_no_anomaly(env);
}

static void dead_checks(struct peer *p, int code)
{
    check_rc(p, "DEAD", "the event", code, TLSOCK_ETIMEDOUT);
    check_calls(p, &dead_e);
    peer_close(p);
    checked++;
}

/* Nothing arrives within read_idle_timeout_ms: the server's connection dies, its socket sound. */
static void test_dead(void **state)
{
    struct env *env = *state;
    const struct hooks h = {.on_event = dead_checks};
    struct tlsock_uv_opts extra = base_opts(NULL);

    extra.read_idle_timeout_ms = 50;
    make_contexts(env);
    struct srv *s = serve_ok(env, 0, env->sctx, &h, &extra);
    struct peer *c = client_start(env, env->cctx, s->port, &plain_client, 0, 1);
    RUN_UNTIL(env, checked == 1 && server_peers_closed(env), WAIT_MS);
    /* A dead connection that is closed still says goodbye properly (its session is sound). */
    RUN_UNTIL(env, c->event_rc == TLSOCK_ECLOSED, WAIT_MS);
    peer_close(c);
    RUN_UNTIL(env, conns_closed(env), WAIT_MS);
    assert_int_equal(release_cbs, 0);
    assert_no_anomaly(env);
}

/* During on_close the handle is still valid (uv.h: "valid until on_close returns"). */
static struct tlsock_uv_conn *closing_conn;

static void close_at_connect(struct peer *p, int status)
{
    (void)status;
    closing_conn = p->conn;
    peer_close(p);
}

static void calls_in_on_close(struct tlsock_uv_conn *conn)
{
    struct sockaddr_storage ss;
    struct wbuf w;

    memset(&w, 0, sizeof(w));
    if (conn == closing_conn) {
        /* No assertion may fail inside a loop callback: record, check after the run. */
        checked = tlsock_uv_write(conn, payload, sizeof(payload), &w) == TLSOCK_EINVAL &&
                  tlsock_uv_shutdown(conn) == TLSOCK_EINVAL &&
                  tlsock_uv_release(conn, release_cb) == TLSOCK_EINVAL &&
                  tlsock_uv_read_start(conn) == TLSOCK_EINVAL && tlsock_uv_read_stop(conn) == 0 &&
                  tlsock_uv_conn_peername(conn, &ss) == TLSOCK_EINVAL;
    }
    on_close(conn);
}

static void test_on_close(void **state)
{
    struct env *env = *state;
    const struct hooks h = {.on_connect = close_at_connect};
    struct tlsock_uv_opts extra = base_opts(NULL);
    struct tlsock_uv_server *server = NULL;

    make_contexts(env);
    /* serve() installs the harness's on_close; this server wraps it. */
    struct srv *s = &env->srvs[0];
    memset(s, 0, sizeof(*s));
    s->env = env;
    s->hooks = h;
    extra.on_connect = on_server_connect;
    extra.on_close = calls_in_on_close;
    extra.user = s;
    TS_ASSERT_RC(tlsock_uv_serve(&env->loop, env->sctx, env->host, 0, 0, &extra, &server), 0);
    s->server = server;
    s->port = tlsock_uv_server_port(server);
    checked = -1;
    struct peer *c = client_start(env, env->cctx, s->port, &plain_client, 0, 1);
    RUN_UNTIL(env, checked != -1, WAIT_MS);
    assert_int_equal(checked, 1);
    peer_close(c);
    RUN_UNTIL(env, conns_closed(env), WAIT_MS);
    assert_int_equal(release_cbs, 0);
    assert_no_anomaly(env);
}

static int setup(void **state)
{
    checked = 0;
    nrefused = 0;
    memset(refused_writes, 0, sizeof(refused_writes));
    release_cbs = 0;
    release_status = NOT_CHECKED;
    return env_setup(state);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_resolving, setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_handshaking, setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_open_releasing_closing, setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_shut_down, setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_dead, setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_on_close, setup, env_teardown),
    };

    return cmocka_run_group_tests_name("uv_states", tests, ts_pki_setup, ts_pki_teardown);
}
