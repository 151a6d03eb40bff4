/*
 * A client's Finished is acknowledged at once, whether or not the server has anything to send
 * after it. When the server's Finished went out first and nothing of the server's follows the
 * client's (TLS 1.3 without tickets, TLS 1.2 resumption), the kernel would hold the ACK for its
 * delayed-ACK timer (at least 40 ms on Linux), and a client that leaves Nagle on holds its first
 * request back until then. So the server puts its socket in quick-ACK mode once its Finished is
 * out (core.h, tlsock__conn_quick_ack_due()); where TLS 1.3 tickets follow, they carry the ACK.
 *
 * Each case connects a plain client socket (Nagle on, as ts_raw_connect() leaves it), attaches a
 * tlsock client to it and handshakes; then the client socket's TCP_INFO must show every segment
 * acknowledged within ACK_BOUND_MS, half the shortest delayed ACK (where tickets follow, once
 * they arrived: they carry the ACK). The server says nothing after its handshake until the client
 * is done. The executable wraps setsockopt() at link time, so that the library's TCP_QUICKACK
 * calls are counted: one per handshake where nothing follows the client's Finished, none where
 * tickets do, none for a HelloRetryRequest (the server's Finished is not out yet). Servers: the
 * blocking API, and the libuv driver.
 */
#include "support.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#if TS_HAVE_UV
#include "uv_harness.h"
#endif
#if TLSOCK_TEST_HAVE_OPENSSL
#include <openssl/ssl.h>
#endif

/* Linux delays an ACK by at least 40 ms (TCP_DELACK_MIN); a quick ACK takes microseconds. */
#define ACK_BOUND_MS 20

/* TCP_QUICKACK calls by any thread since the last reset. */
static atomic_int quick_ack_calls;

int __real_setsockopt(int fd, int level, int name, const void *value, socklen_t len);
int __wrap_setsockopt(int fd, int level, int name, const void *value, socklen_t len);

int __wrap_setsockopt(int fd, int level, int name, const void *value, socklen_t len)
{
    if (level == IPPROTO_TCP && name == TCP_QUICKACK) {
        atomic_fetch_add(&quick_ack_calls, 1);
    }
    return __real_setsockopt(fd, level, name, value, len);
}

/* What one client connection saw. */
struct client_result {
    int rc;     /* of the attach and the handshake */
    bool acked; /* the server acknowledged all the client sent within ACK_BOUND_MS */
    bool resumed;
    int quick_acks; /* the server's TCP_QUICKACK calls during the connection */
    char msg[TLSOCK__ERRMSG_SIZE];
};

/* Whether the peer acknowledged every segment @p fd sent, waiting up to @p ms. */
static bool all_acked_within(int fd, int ms)
{
    int64_t until = tlsock_now_ms() + ms;

    for (;;) {
        struct tcp_info ti;
        socklen_t len = sizeof(ti);

        if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) {
            return false;
        }
        if (ti.tcpi_unacked == 0) {
            return true;
        }
        if (tlsock_now_ms() >= until) {
            return false;
        }
        usleep(100);
    }
}

/*
 * One client connection to 127.0.0.1:@p port: handshake, then the ACK check, then close. With
 * @p tickets the server's TLS 1.3 tickets are waited for first: they bring the ACK.
 */
static void client_round(struct tlsock_ctx *cctx, uint16_t port, bool tickets,
                         struct client_result *out)
{
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    int fd = -1;

    memset(out, 0, sizeof(*out));
    opts.servername = "localhost"; /* ts_pki.server's name, and the session cache's key */
    out->rc = ts_raw_connect("127.0.0.1", port, 0, &fd);
    if (out->rc == 0) {
        out->rc = tlsock_attach_fd(cctx, fd, &opts, &conn);
    }
    if (out->rc == 0) {
        out->rc = tlsock_handshake(conn);
    }
    if (out->rc == 0 && tickets) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        (void)poll(&pfd, 1, TS_IO_TIMEOUT_MS);
    }
    if (out->rc == 0) {
        out->acked = all_acked_within(fd, ACK_BOUND_MS);
        out->resumed = tlsock_conn_resumed(conn);
    } else {
        snprintf(out->msg, sizeof(out->msg), "%s",
                 conn != NULL ? tlsock_conn_errmsg(conn) : tlsock_errmsg());
    }
    tlsock_close(conn);
    if (fd >= 0) {
        close(fd);
    }
}

/* One case: the protocol range, tickets, and whether the server refuses the first key share. */
struct quick_case {
    const char *version;
    bool tickets;
    bool resume;    /* a second connection, resumed */
    bool retry;     /* the server takes P-384 only: the client's first share (X25519) is refused */
    int quick_acks; /* TCP_QUICKACK calls expected for the (last) handshake */
};

/* TLS 1.3 tickets follow the client's Finished (TLS 1.2 ones come within the handshake). */
static bool tickets_follow(const struct quick_case *qc)
{
    return qc->tickets && strcmp(qc->version, "1.3") == 0;
}

#if TLSOCK_TEST_HAVE_OPENSSL
static int openssl_server_p384_only(void *native_ctx, void *user)
{
    (void)user;
    return SSL_CTX_set1_groups_list(native_ctx, "P-384") == 1 ? 0 : TLSOCK_ECONFIG;
}
#endif

/* The contexts of case @p qc. */
static void make_ctxs(const struct quick_case *qc, struct tlsock_ctx **cctx,
                      struct tlsock_ctx **sctx)
{
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, cctx), 0);
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, sctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_protocols(*cctx, qc->version), 0);
    TS_ASSERT_RC(tlsock_ctx_set_protocols(*sctx, qc->version), 0);
    TS_ASSERT_RC(tlsock_ctx_set_tickets(*sctx, qc->tickets), 0);
    if (qc->retry && tlsock_ctx_impl(*sctx) == TLSOCK_IMPL_GNUTLS) {
        TS_ASSERT_RC_MSG(tlsock_ctx_set_ciphers(*sctx, "NORMAL:-GROUP-ALL:+GROUP-SECP384R1"), 0,
                         tlsock_ctx_errmsg(*sctx));
    } else if (qc->retry) {
#if TLSOCK_TEST_HAVE_OPENSSL
        TS_ASSERT_RC(tlsock_ctx_set_configure(*sctx, openssl_server_p384_only, NULL, NULL), 0);
#else
        fail_msg("an OpenSSL server without OpenSSL");
#endif
    }
}

static void assert_round(const struct client_result *r, bool resumed, int quick_acks,
                         const char *what)
{
    TS_ASSERT_RC_MSG(r->rc, 0, r->msg);
    if (r->resumed != resumed) {
        fail_msg("%s: the connection %s resumed", what, r->resumed ? "was" : "was not");
    }
    if (!r->acked) {
        fail_msg("%s: the client's Finished was not acknowledged within %d ms", what, ACK_BOUND_MS);
    }
    if (r->quick_acks != quick_acks) {
        fail_msg("%s: %d TCP_QUICKACK calls, expected %d", what, r->quick_acks, quick_acks);
    }
}

/* One client connection against a driver's server (@p driver: what that driver needs). */
typedef void (*round_fn)(void *driver, struct tlsock_ctx *cctx, bool tickets,
                         struct client_result *out);

/*
 * Case @p qc against one driver: a full handshake, then (resume) a resumed one, each
 * acknowledged at once, with the TCP_QUICKACK calls of each connection counted.
 */
static void run_case(const struct quick_case *qc, round_fn round, void *driver,
                     struct tlsock_ctx *cctx)
{
    struct client_result r;

    atomic_store(&quick_ack_calls, 0);
    round(driver, cctx, tickets_follow(qc), &r);
    r.quick_acks = atomic_exchange(&quick_ack_calls, 0);
    /* A TLS 1.2 full handshake ends with the server's Finished: nothing to acknowledge fast. */
    assert_round(&r, false, qc->resume ? 0 : qc->quick_acks, "full handshake");
    if (qc->resume) {
        round(driver, cctx, tickets_follow(qc), &r);
        r.quick_acks = atomic_exchange(&quick_ack_calls, 0);
        assert_round(&r, true, qc->quick_acks, "resumed handshake");
    }
}

/* ---- the blocking API's server ------------------------------------------------------------ */

/* Handshakes, then waits (saying nothing) until the client is done. */
static int serve_silently(struct tlsock_conn *conn, void *arg)
{
    int rc = tlsock_handshake(conn);

    (void)ts_gate_wait(arg, TS_IO_TIMEOUT_MS);
    return rc;
}

/* One connection to a blocking server of @p sctxp (a struct tlsock_ctx *). */
static void blocking_round(void *sctxp, struct tlsock_ctx *cctx, bool tickets,
                           struct client_result *out)
{
    struct tlsock_ctx *sctx = sctxp;
    struct ts_server srv;
    struct ts_gate gate;

    ts_gate_init(&gate);
    TS_ASSERT_RC(ts_server_start(&srv, sctx, NULL, NULL, serve_silently, &gate), 0);
    client_round(cctx, srv.port, tickets, out);
    ts_gate_open(&gate);
    ts_server_stop(&srv);
    ts_gate_destroy(&gate);
    if (out->rc == 0) {
        TS_ASSERT_RC_MSG(srv.result, 0, srv.errmsg);
    }
}

static void blocking_case(const struct quick_case *qc)
{
    struct tlsock_ctx *cctx = NULL;
    struct tlsock_ctx *sctx = NULL;

    make_ctxs(qc, &cctx, &sctx);
    run_case(qc, blocking_round, sctx, cctx);
    tlsock_ctx_free(cctx);
    tlsock_ctx_free(sctx);
}

static const struct quick_case tls13_without_tickets = {"1.3", false, false, false, 1};
static const struct quick_case tls13_with_tickets = {"1.3", true, false, false, 0};
static const struct quick_case tls13_retry = {"1.3", false, false, true, 1};
static const struct quick_case tls12_resumption = {"1.2-1.2", true, true, false, 1};

/* Nothing follows the client's Finished: the quick ACK is the only prompt one. */
static void test_blocking_tls13_without_tickets(void **state)
{
    (void)state;
    blocking_case(&tls13_without_tickets);
}

/* The tickets follow the client's Finished and carry its ACK: no call. */
static void test_blocking_tls13_with_tickets(void **state)
{
    (void)state;
    blocking_case(&tls13_with_tickets);
}

/* The HelloRetryRequest is no Finished: one call, after the second flight. */
static void test_blocking_tls13_retry(void **state)
{
    (void)state;
    blocking_case(&tls13_retry);
}

/* A TLS 1.2 resumption ends with the client's Finished; a full handshake with the server's. */
static void test_blocking_tls12_resumption(void **state)
{
    (void)state;
    blocking_case(&tls12_resumption);
}

/* ---- the libuv driver's server ------------------------------------------------------------ */

#if TS_HAVE_UV

struct uv_round {
    struct env *env;
    struct tlsock_ctx *cctx;
    uint16_t port;
    bool tickets;
    struct client_result result;
    atomic_bool done;
};

static void uv_client_main(void *arg)
{
    struct uv_round *ur = arg;

    client_round(ur->cctx, ur->port, ur->tickets, &ur->result);
    atomic_store(&ur->done, true);
    env_wake(ur->env);
}

/*
 * One blocking client against the test loop's server @p sp (a struct srv *), run from a thread
 * of its own.
 */
static void uv_round(void *sp, struct tlsock_ctx *cctx, bool tickets, struct client_result *out)
{
    struct srv *s = sp;
    struct env *env = s->env;
    struct uv_round ur = {.env = env, .cctx = cctx, .port = s->port, .tickets = tickets};

    atomic_init(&ur.done, false);
    thread_start(env, uv_client_main, &ur);
    RUN_UNTIL(env, atomic_load(&ur.done), WAIT_MS);
    RUN_UNTIL(env, conns_closed(env), WAIT_MS);
    *out = ur.result;
}

static void uv_case(void **state, const struct quick_case *qc)
{
    struct env *env = *state;

    make_ctxs(qc, &env->cctx, &env->sctx);
    /* Its clients get no callback that writes: the server says nothing after the handshake. */
    run_case(qc, uv_round, serve_ok(env, 0, env->sctx, NULL, NULL), env->cctx);
    assert_no_anomaly(env);
}

static void test_uv_tls13_without_tickets(void **state)
{
    uv_case(state, &tls13_without_tickets);
}

static void test_uv_tls13_with_tickets(void **state)
{
    uv_case(state, &tls13_with_tickets);
}

static void test_uv_tls13_retry(void **state)
{
    uv_case(state, &tls13_retry);
}

static void test_uv_tls12_resumption(void **state)
{
    uv_case(state, &tls12_resumption);
}

#endif /* TS_HAVE_UV */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocking_tls13_without_tickets),
        cmocka_unit_test(test_blocking_tls13_with_tickets),
        cmocka_unit_test(test_blocking_tls13_retry),
        cmocka_unit_test(test_blocking_tls12_resumption),
#if TS_HAVE_UV
        cmocka_unit_test_setup_teardown(test_uv_tls13_without_tickets, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_uv_tls13_with_tickets, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_uv_tls13_retry, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_uv_tls12_resumption, env_setup, env_teardown),
#endif
    };
    return cmocka_run_group_tests_name("quick_ack", tests, ts_pki_setup, ts_pki_teardown);
}
