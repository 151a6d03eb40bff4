/*
 * Resumption through tlsock_uv_connect() (docs/sessions.md), over loopback on the harness's
 * loop, on every (client, server) pair: a client context's cache resumes its second connection
 * on TLS 1.3 and 1.2, as both ends report, and never offers a session to another port or
 * another host, even one the same server context would accept. Each client reads its echo
 * before it closes, so a TLS 1.3 client has processed the tickets that came before it.
 */
#include "support/uv_harness.h"

#include <string.h>

#define TX_LEN 3000

/*
 * One echo of @p ctx to env->host:@p port (SNI @p sni and name @p verify, NULL: the host's),
 * which both ends must report as @p resumed.
 */
static void connect_once(struct env *env, struct tlsock_ctx *ctx, uint16_t port, const char *sni,
                         const char *verify, bool resumed)
{
    resume_client_seen = -1;
    resume_server_seen = -1;
    struct peer *c = client_start_named(env, ctx, port, sni, verify, &resume_client, TX_LEN, 7);
    c->close_when_echoed = true;
    RUN_UNTIL(env, c->conn == NULL && server_peers_closed(env), WAIT_MS);
    TS_ASSERT_RC_MSG(c->connect_rc, 0, c->connect_msg);
    assert_true(echoed(c));
    assert_no_anomaly(env);
    assert_int_equal(resume_client_seen, resumed);
    assert_int_equal(resume_server_seen, resumed);
}

static void cache_resumes(void **state, const char *protocols)
{
    struct env *env = *state;

    make_contexts(env);
    TS_ASSERT_RC(tlsock_ctx_set_protocols(env->cctx, protocols), 0);
    struct srv *s = serve_ok(env, 0, env->sctx, &resume_server, NULL);
    connect_once(env, env->cctx, s->port, NULL, NULL, false);
    connect_once(env, env->cctx, s->port, NULL, NULL, true);
    /* TLS 1.3: the ticket of the second connection; TLS 1.2: the session, kept. */
    connect_once(env, env->cctx, s->port, NULL, NULL, true);
}

static void test_cache_tls13(void **state)
{
    cache_resumes(state, "1.3");
}

static void test_cache_tls12(void **state)
{
    cache_resumes(state, "1.2-1.2");
}

static void test_cache_off(void **state)
{
    struct env *env = *state;

    make_contexts(env);
    TS_ASSERT_RC(tlsock_ctx_set_session_cache(env->cctx, 0), 0);
    struct srv *s = serve_ok(env, 0, env->sctx, &resume_server, NULL);
    connect_once(env, env->cctx, s->port, NULL, NULL, false);
    connect_once(env, env->cctx, s->port, NULL, NULL, false);
}

/* Two ports of one server context, which accepts either port's sessions: the client keeps them
 * apart (a session belongs to its host and port). */
static void test_other_port(void **state)
{
    struct env *env = *state;

    make_contexts(env);
    struct srv *a = serve_ok(env, 0, env->sctx, &resume_server, NULL);
    struct srv *b = serve_ok(env, 1, env->sctx, &resume_server, NULL);
    assert_int_not_equal(a->port, b->port);
    connect_once(env, env->cctx, a->port, NULL, NULL, false);
    connect_once(env, env->cctx, b->port, NULL, NULL, false);
    connect_once(env, env->cctx, a->port, NULL, NULL, true);
    connect_once(env, env->cctx, b->port, NULL, NULL, true);
}

/* The same server, port, SNI and name to verify, reached as "127.0.0.1" then "localhost" (the
 * certificate names both): another host, so no resumption across them. */
static void test_other_host(void **state)
{
    struct env *env = *state;

    make_contexts(env);
    struct srv *s = serve_ok(env, 0, env->sctx, &resume_server, NULL);
    connect_once(env, env->cctx, s->port, "localhost", "localhost", false);
    env->host = "localhost";
    connect_once(env, env->cctx, s->port, "localhost", "localhost", false);
    connect_once(env, env->cctx, s->port, "localhost", "localhost", true);
    env->host = "127.0.0.1";
    connect_once(env, env->cctx, s->port, "localhost", "localhost", true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cache_tls13, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_cache_tls12, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_cache_off, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_other_port, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_other_host, env_setup, env_teardown),
    };

    return cmocka_run_group_tests_name("uv_resume", tests, ts_pki_setup, ts_pki_teardown);
}
