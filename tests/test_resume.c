/*
 * Resumption (include/tlsock.h, "Sessions"; docs/sessions.md) over the in-memory pair, on every
 * (client, server) pair: the client's session cache and export/import, on TLS 1.3 and 1.2, and
 * what must not resume (another SNI, another protocol range, other trust anchors, the cache off,
 * a TLS 1.3 ticket offered twice); the server's TLS 1.2 session-ID cache for clients without
 * tickets; imports that are not sessions. Each connection reads the server's first bytes, so a
 * TLS 1.3 client has processed the tickets that came before them.
 */
#include "pair.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if TLSOCK_TEST_HAVE_OPENSSL
#include <openssl/ssl.h>
#endif
#if TLSOCK_TEST_HAVE_GNUTLS
#include <gnutls/gnutls.h>
#endif

/* What one connection saw. */
struct outcome {
    bool client_resumed;
    bool server_resumed;
};

/* A client context trusting ts_pki.ca (and @p other_ca too) for @p protocols. */
static struct tlsock_ctx *client_ctx(const char *protocols, bool other_ca)
{
    struct tlsock_ctx *ctx = NULL;

    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &ctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_protocols(ctx, protocols), 0);
    if (other_ca) {
        const char *pem = ts_pki.other_ca.cert;
        TS_ASSERT_RC(tlsock_ctx_set_ca_mem(ctx, pem, strlen(pem)), 0);
    }
    return ctx;
}

static struct tlsock_ctx *server_ctx(void)
{
    struct tlsock_ctx *ctx = NULL;

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &ctx), 0);
    return ctx;
}

/*
 * One connection of @p cctx to the pair's server, with @p sni (NULL: none), @p read: the client
 * reads the server's first bytes (a TLS 1.3 client processes the tickets before them). With
 * @p export, the client's session exported into *@p export (else left open for the caller: NULL).
 */
static struct outcome connect_once(struct ts_pair *p, struct tlsock_ctx *cctx, const char *sni,
                                   bool read, unsigned char **export, size_t *export_len)
{
    struct tlsock_opts copts = ts_opts();
    const struct tlsock_info *ci = NULL;
    const struct tlsock_info *si = NULL;
    struct outcome out;
    char buf[2];

    copts.verify_name = TS_PAIR_NAME;
    copts.servername = sni;
    p->cctx = cctx;
    TS_ASSERT_RC(ts_pair_attach(p, &copts, NULL), 0);
    /* tlsock_conn_resumed() never runs the handshake: false until it is done (and for NULL). */
    assert_false(tlsock_conn_resumed(NULL));
    assert_false(tlsock_conn_resumed(p->client));
    assert_false(tlsock_conn_resumed(p->server));
    TS_ASSERT_RC_MSG(ts_pair_handshake(p), 0, p->client_msg);
    if (read) {
        TS_ASSERT_RC(ts_pair_write(p, TS_S2C, "hi", 2), 0);
        TS_ASSERT_RC(ts_pair_read(p, TS_S2C, buf, 2), 0);
        assert_memory_equal(buf, "hi", 2);
    }
    TS_ASSERT_RC(tlsock_conn_info(p->client, &ci), 0);
    TS_ASSERT_RC(tlsock_conn_info(p->server, &si), 0);
    out.client_resumed = ci->resumed;
    out.server_resumed = si->resumed;
    /* The cheap accessor tells the same as the full description. */
    assert_int_equal(tlsock_conn_resumed(p->client), ci->resumed);
    assert_int_equal(tlsock_conn_resumed(p->server), si->resumed);
    /* Resumed or not, both ends name the SNI of this handshake (not the first one's). */
    assert_string_equal(ci->servername, sni != NULL ? sni : "");
    assert_string_equal(si->servername, sni != NULL ? sni : "");
    if (export != NULL) {
        TS_ASSERT_RC_MSG(tlsock_conn_session_export(p->client, export, export_len), 0,
                         tlsock_conn_errmsg(p->client));
    }
    ts_pair_close(p);
    p->cctx = NULL;
    return out;
}

static void assert_resumed(struct outcome o, bool resumed)
{
    assert_int_equal(o.client_resumed, resumed);
    assert_int_equal(o.server_resumed, resumed);
}

/* ---- the client's cache ---------------------------------------------------------------------- */

static void cache_resumes(void **state, const char *version)
{
    struct ts_pair *p = *state;
    struct tlsock_ctx *cctx = client_ctx(version, false);

    p->sctx = server_ctx();
    assert_resumed(connect_once(p, cctx, TS_PAIR_NAME, true, NULL, NULL), false);
    assert_resumed(connect_once(p, cctx, TS_PAIR_NAME, true, NULL, NULL), true);
    /* TLS 1.3: the second connection's new ticket; TLS 1.2: the session, kept. */
    assert_resumed(connect_once(p, cctx, TS_PAIR_NAME, true, NULL, NULL), true);
    tlsock_ctx_free(cctx);
}

static void test_cache_tls13(void **state)
{
    cache_resumes(state, "1.3");
}

static void test_cache_tls12(void **state)
{
    cache_resumes(state, "1.2-1.2");
}

/*
 * RFC 5246 section 7.2.2: a TLS 1.2 session whose connection ends with a fatal alert is not
 * resumed: the client's cache forgets it. The second connection resumes, then takes a forged
 * record (bad_record_mac); the third is a full handshake.
 */
static void test_failed_not_resumed(void **state)
{
    struct ts_pair *p = *state;
    struct tlsock_ctx *cctx = client_ctx("1.2-1.2", false);
    struct tlsock_opts copts = ts_opts();
    unsigned char forged[5 + 32] = {23, 3, 3, 0, 32};
    const struct tlsock_info *ci = NULL;
    char buf[1];
    size_t n = 0;

    p->sctx = server_ctx();
    assert_resumed(connect_once(p, cctx, TS_PAIR_NAME, true, NULL, NULL), false);
    copts.verify_name = TS_PAIR_NAME;
    copts.servername = TS_PAIR_NAME;
    p->cctx = cctx;
    TS_ASSERT_RC(ts_pair_attach(p, &copts, NULL), 0);
    TS_ASSERT_RC_MSG(ts_pair_handshake(p), 0, p->client_msg);
    TS_ASSERT_RC(tlsock_conn_info(p->client, &ci), 0);
    assert_true(ci->resumed);
    TS_ASSERT_RC(tlsock_feed(p->client, forged, sizeof(forged)), 0);
    TS_ASSERT_RC(tlsock_read(p->client, buf, sizeof(buf), &n), TLSOCK_EPROTO);
    ts_pair_close(p);
    p->cctx = NULL;
    assert_resumed(connect_once(p, cctx, TS_PAIR_NAME, true, NULL, NULL), false);
    tlsock_ctx_free(cctx);
}

static void test_cache_off(void **state)
{
    struct ts_pair *p = *state;
    struct tlsock_ctx *cctx = client_ctx("1.2-1.3", false);
    unsigned char *data = NULL;
    size_t len = 0;

    TS_ASSERT_RC(tlsock_ctx_set_session_cache(cctx, 0), 0);
    p->sctx = server_ctx();
    assert_resumed(connect_once(p, cctx, NULL, true, NULL, NULL), false);
    assert_resumed(connect_once(p, cctx, NULL, true, NULL, NULL), false);
    /* Nothing to export either, and the context is frozen now. */
    p->cctx = cctx;
    struct tlsock_opts copts = ts_opts();
    copts.verify_name = TS_PAIR_NAME;
    TS_ASSERT_RC(ts_pair_attach(p, &copts, NULL), 0);
    TS_ASSERT_RC(ts_pair_handshake(p), 0);
    TS_ASSERT_RC(tlsock_conn_session_export(p->client, &data, &len), TLSOCK_EINVAL);
    TS_ASSERT_CONTAINS(tlsock_conn_errmsg(p->client), "session cache is off");
    ts_pair_close(p);
    p->cctx = NULL;
    TS_ASSERT_RC(tlsock_ctx_set_session_cache(cctx, 10), TLSOCK_EINVAL);
    tlsock_ctx_free(cctx);
}

static void test_other_sni(void **state)
{
    struct ts_pair *p = *state;
    struct tlsock_ctx *cctx = client_ctx("1.2-1.3", false);

    p->sctx = server_ctx();
    assert_resumed(connect_once(p, cctx, "localhost", true, NULL, NULL), false);
    assert_resumed(connect_once(p, cctx, "other.localhost", true, NULL, NULL), false);
    assert_resumed(connect_once(p, cctx, "localhost", true, NULL, NULL), true);
    tlsock_ctx_free(cctx);
}

/* A session the server does not know (another server context: other ticket keys, no cache) is
 * offered, refused, and reported as not resumed on both ends. */
static void test_server_refuses(void **state)
{
    struct ts_pair *p = *state;
    struct tlsock_ctx *cctx = client_ctx("1.2-1.3", false);

    p->sctx = server_ctx();
    assert_resumed(connect_once(p, cctx, NULL, true, NULL, NULL), false);
    tlsock_ctx_free(p->sctx);
    p->sctx = server_ctx();
    assert_resumed(connect_once(p, cctx, NULL, true, NULL, NULL), false);
    assert_resumed(connect_once(p, cctx, NULL, true, NULL, NULL), true);
    tlsock_ctx_free(cctx);
}

/* A TLS 1.3 ticket leaves the cache when offered: a connection that reads no new one leaves none.
 */
static void test_ticket_once(void **state)
{
    struct ts_pair *p = *state;
    struct tlsock_ctx *cctx = client_ctx("1.3", false);

    p->sctx = server_ctx();
    assert_resumed(connect_once(p, cctx, NULL, true, NULL, NULL), false);
    assert_resumed(connect_once(p, cctx, NULL, false, NULL, NULL), true);
    assert_resumed(connect_once(p, cctx, NULL, true, NULL, NULL), false);
    tlsock_ctx_free(cctx);
}

/*
 * Two connections of one context made before either handshakes: a TLS 1.2 session stays in the
 * cache when offered, so both resume; a TLS 1.3 ticket is offered once, so only the first does.
 * Then a connection that is made and closed without a handshake: the TLS 1.2 session is still
 * there for the next one.
 */
static void concurrent_offers(void **state, const char *version, bool both)
{
    struct ts_pair *p = *state;
    struct tlsock_ctx *cctx = client_ctx(version, false);
    struct tlsock_opts copts = ts_opts();
    struct ts_pair second;
    const struct tlsock_info *info = NULL;

    p->sctx = server_ctx();
    assert_resumed(connect_once(p, cctx, NULL, true, NULL, NULL), false);
    copts.verify_name = TS_PAIR_NAME;
    ts_pair_init(&second);
    second.cctx = cctx;
    second.sctx = p->sctx;
    p->cctx = cctx;
    TS_ASSERT_RC(ts_pair_attach(p, &copts, NULL), 0);
    TS_ASSERT_RC(ts_pair_attach(&second, &copts, NULL), 0);
    TS_ASSERT_RC_MSG(ts_pair_handshake(p), 0, p->client_msg);
    TS_ASSERT_RC_MSG(ts_pair_handshake(&second), 0, second.client_msg);
    TS_ASSERT_RC(tlsock_conn_info(p->client, &info), 0);
    assert_true(info->resumed);
    TS_ASSERT_RC(tlsock_conn_info(second.client, &info), 0);
    assert_int_equal(info->resumed, both);
    ts_pair_close(&second); /* its contexts are p's and this test's, freed by them */
    ts_pair_close(p);

    TS_ASSERT_RC(ts_pair_attach(p, &copts, NULL), 0);
    ts_pair_close(p);
    p->cctx = NULL;
    assert_resumed(connect_once(p, cctx, NULL, true, NULL, NULL), both);
    tlsock_ctx_free(cctx);
}

static void test_concurrent_tls12(void **state)
{
    concurrent_offers(state, "1.2-1.2", true);
}

static void test_concurrent_tls13(void **state)
{
    concurrent_offers(state, "1.3", false);
}

/* ---- export and import ----------------------------------------------------------------------- */

/* A session exported by a @p from context, imported into a @p to one: resumed or not. */
static void export_import(void **state, const char *from, const char *to, bool to_other_ca,
                          bool resumed)
{
    struct ts_pair *p = *state;
    struct tlsock_ctx *a = client_ctx(from, false);
    struct tlsock_ctx *b = client_ctx(to, to_other_ca);
    unsigned char *data = NULL;
    size_t len = 0;

    p->sctx = server_ctx();
    assert_resumed(connect_once(p, a, NULL, true, &data, &len), false);
    assert_true(len > 40);
    assert_memory_equal(data, "TLSK", 4);
    /* Frozen first, so the import is checked against b's configuration at once. */
    assert_resumed(connect_once(p, b, "frozen.localhost", true, NULL, NULL), false);
    TS_ASSERT_RC_MSG(tlsock_ctx_session_import(b, data, len), 0, tlsock_ctx_errmsg(b));
    assert_resumed(connect_once(p, b, NULL, true, NULL, NULL), resumed);
    tlsock_free(data);
    tlsock_ctx_free(a);
    tlsock_ctx_free(b);
}

static void test_import_tls13(void **state)
{
    export_import(state, "1.3", "1.3", false, true);
}

static void test_import_tls12(void **state)
{
    export_import(state, "1.2-1.2", "1.2-1.2", false, true);
}

static void test_import_other_range(void **state)
{
    export_import(state, "1.3", "1.2-1.3", false, false);
}

static void test_import_other_anchors(void **state)
{
    export_import(state, "1.3", "1.3", true, false);
}

/* Before freezing too: the entry keeps the digest it was exported with. */
static void test_import_before_freeze(void **state)
{
    struct ts_pair *p = *state;
    struct tlsock_ctx *a = client_ctx("1.3", false);
    struct tlsock_ctx *b = client_ctx("1.3", false);
    struct tlsock_ctx *c = client_ctx("1.2-1.3", false);
    unsigned char *data = NULL;
    size_t len = 0;

    p->sctx = server_ctx();
    assert_resumed(connect_once(p, a, NULL, true, &data, &len), false);
    TS_ASSERT_RC(tlsock_ctx_session_import(b, data, len), 0);
    TS_ASSERT_RC(tlsock_ctx_session_import(c, data, len), 0);
    assert_resumed(connect_once(p, b, NULL, true, NULL, NULL), true);
    assert_resumed(connect_once(p, c, NULL, true, NULL, NULL), false);
    tlsock_free(data);
    tlsock_ctx_free(a);
    tlsock_ctx_free(b);
    tlsock_ctx_free(c);
}

static void test_import_bad(void **state)
{
    struct ts_pair *p = *state;
    struct tlsock_ctx *a = client_ctx("1.3", false);
    unsigned char *data = NULL;
    size_t len = 0;

    p->sctx = server_ctx();
    /* Before any session. */
    p->cctx = a;
    struct tlsock_opts copts = ts_opts();
    copts.verify_name = TS_PAIR_NAME;
    TS_ASSERT_RC(ts_pair_attach(p, &copts, NULL), 0);
    TS_ASSERT_RC(ts_pair_handshake(p), 0);
    TS_ASSERT_RC(tlsock_conn_session_export(p->client, &data, &len), TLSOCK_EINVAL);
    TS_ASSERT_CONTAINS(tlsock_conn_errmsg(p->client), "no resumable session yet");
    TS_ASSERT_RC(tlsock_conn_session_export(p->server, &data, &len), TLSOCK_EINVAL);
    ts_pair_close(p);
    p->cctx = NULL;

    assert_resumed(connect_once(p, a, NULL, true, &data, &len), false);
    struct tlsock_ctx *b = client_ctx("1.3", false);
    static const char garbage[] = "this is not a session at all, not even close";
    TS_ASSERT_RC(tlsock_ctx_session_import(b, garbage, sizeof(garbage)), TLSOCK_EINVAL);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(b), "bad magic");
    TS_ASSERT_RC(tlsock_ctx_session_import(b, NULL, 0), TLSOCK_EINVAL);
    for (size_t cut = 0; cut < len; cut += (cut < 64 ? 1 : 97)) {
        TS_ASSERT_RC(tlsock_ctx_session_import(b, data, cut), TLSOCK_EINVAL);
    }
    unsigned char *longer = malloc(len + 1);
    assert_non_null(longer);
    memcpy(longer, data, len);
    longer[len] = 0;
    TS_ASSERT_RC(tlsock_ctx_session_import(b, longer, len + 1), TLSOCK_EINVAL);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(b), "truncated or malformed");
    longer[4] = 99;
    TS_ASSERT_RC(tlsock_ctx_session_import(b, longer, len), TLSOCK_EINVAL);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(b), "format version");
    free(longer);
    /* Another implementation's export. */
    int other =
        tlsock_ctx_impl(a) == TLSOCK_IMPL_OPENSSL ? TLSOCK_IMPL_GNUTLS : TLSOCK_IMPL_OPENSSL;
    struct tlsock_ctx *c = NULL;
    TS_ASSERT_RC(tlsock_ctx_new(TLSOCK_CLIENT, &c), 0);
    if (tlsock_ctx_set_impl(c, other) == 0) {
        TS_ASSERT_RC(tlsock_ctx_session_import(c, data, len), TLSOCK_EINVAL);
        TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(c), "another implementation");
    }
    /* A server context has no client cache. */
    TS_ASSERT_RC(tlsock_ctx_session_import(p->sctx, data, len), TLSOCK_EINVAL);
    /* After the freeze the thread's message says why (the context's is not the import's). */
    TS_ASSERT_RC(tlsock_ctx_session_import(a, garbage, sizeof(garbage)), TLSOCK_EINVAL);
    TS_ASSERT_CONTAINS(tlsock_errmsg(), "bad magic");
    TS_ASSERT_RC(tlsock_ctx_session_import(a, data, len - 1), TLSOCK_EINVAL);
    TS_ASSERT_CONTAINS(tlsock_errmsg(), "truncated or malformed");
    /* And the good one still imports and resumes. */
    TS_ASSERT_RC(tlsock_ctx_session_import(b, data, len), 0);
    assert_resumed(connect_once(p, b, NULL, true, NULL, NULL), true);
    tlsock_free(data);
    tlsock_ctx_free(a);
    tlsock_ctx_free(b);
    tlsock_ctx_free(c);
}

/* ---- the server's TLS 1.2 session-ID cache --------------------------------------------------- */

/* Clients that neither ask for nor accept session tickets. */
static int no_tickets(void *native_session, void *user)
{
    struct tlsock_ctx *ctx = user;

#if TLSOCK_TEST_HAVE_OPENSSL
    if (tlsock_ctx_impl(ctx) == TLSOCK_IMPL_OPENSSL) {
        SSL_set_options(native_session, SSL_OP_NO_TICKET);
        return 0;
    }
#endif
#if TLSOCK_TEST_HAVE_GNUTLS
    if (tlsock_ctx_impl(ctx) == TLSOCK_IMPL_GNUTLS) {
        return gnutls_priority_set_direct(native_session,
                                          "NORMAL:-VERS-ALL:+VERS-TLS1.2:%NO_TICKETS", NULL) == 0
                   ? 0
                   : -1;
    }
#endif
    (void)native_session;
    return -1;
}

static void session_ids(void **state, size_t server_cache, bool resumed)
{
    struct ts_pair *p = *state;
    struct tlsock_ctx *cctx = client_ctx("1.2-1.2", false);

    TS_ASSERT_RC(tlsock_ctx_set_configure(cctx, NULL, no_tickets, cctx), 0);
    p->sctx = server_ctx();
    TS_ASSERT_RC(tlsock_ctx_set_session_cache(p->sctx, server_cache), 0);
    assert_resumed(connect_once(p, cctx, TS_PAIR_NAME, true, NULL, NULL), false);
    assert_resumed(connect_once(p, cctx, TS_PAIR_NAME, true, NULL, NULL), resumed);
    tlsock_ctx_free(cctx);
}

static void test_session_id_cache(void **state)
{
    session_ids(state, 16, true);
}

static void test_session_id_cache_off(void **state)
{
    session_ids(state, 0, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cache_tls13, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_cache_tls12, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_failed_not_resumed, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_cache_off, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_other_sni, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_ticket_once, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_tls12, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_tls13, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_server_refuses, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_import_tls13, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_import_tls12, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_import_other_range, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_import_other_anchors, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_import_before_freeze, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_import_bad, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_session_id_cache, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_session_id_cache_off, ts_pair_setup, ts_pair_teardown),
    };
    return cmocka_run_group_tests(tests, ts_pki_setup, ts_pki_teardown);
}
