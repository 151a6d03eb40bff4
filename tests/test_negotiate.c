/* Protocol versions, cipher suites and ALPN, agreed and refused, over the in-memory pair
 * (support/pair.h). */
#include "pair.h"

#include <stdio.h>
#include <string.h>

struct negotiate_case {
    const char *what;
    const char *client_protocols; /* NULL: default */
    const char *server_protocols;
    const char *client_ciphers; /* NULL: default; a raw list is in OpenSSL's syntax */
    const char *server_ciphers;
    /* The same raw list as client_ciphers in GnuTLS priority syntax, for a GnuTLS client. */
    const char *gnutls_client_ciphers;
    const char *client_alpn; /* NULL: none */
    const char *server_alpn;
    int client_rc;       /* of the client's handshake */
    const char *version; /* agreed, when client_rc == 0 */
    const char *alpn;
    const char *cipher;  /* agreed, when set */
    const char *message; /* substring of the client's error message when client_rc != 0 */
};

static const struct negotiate_case cases[] = {
    {.what = "defaults agree on TLS 1.3", .client_rc = 0, .version = "TLSv1.3", .alpn = ""},
    {.what = "client forces 1.2", .client_protocols = "1.2-1.2", .version = "TLSv1.2", .alpn = ""},
    {.what = "server forces 1.2",
     .server_protocols = "TLSv1.2-TLSv1.2",
     .version = "TLSv1.2",
     .alpn = ""},
    {.what = "client forces 1.3", .client_protocols = "1.3", .version = "TLSv1.3", .alpn = ""},
    {.what = "no common version",
     .client_protocols = "1.3",
     .server_protocols = "1.2-1.2",
     .client_rc = TLSOCK_EPROTO,
     .message = "protocol_version"},
    /* The default floor is 1.2: a 1.1-only server is refused by a default client. */
    {.what = "server only 1.1 (legacy) vs default client",
     .server_protocols = "1.1-1.1",
     .server_ciphers = "legacy",
     .client_rc = TLSOCK_EPROTO,
     .message = "protocol_version"},
    {.what = "both 1.1 with legacy ciphers",
     .client_protocols = "1.1-1.1",
     .server_protocols = "1.1-1.1",
     .client_ciphers = "legacy",
     .server_ciphers = "legacy",
     .version = "TLSv1.1",
     .alpn = ""},
    {.what = "TLS 1.3 suite chosen by the client",
     .client_ciphers = "TLS_CHACHA20_POLY1305_SHA256",
     .version = "TLSv1.3",
     .alpn = "",
     .cipher = "TLS_CHACHA20_POLY1305_SHA256"},
    {.what = "ALPN agreed",
     .client_alpn = "h2,http/1.1",
     .server_alpn = "http/1.1",
     .version = "TLSv1.3",
     .alpn = "http/1.1"},
    {.what = "ALPN: the server's preference wins",
     .client_alpn = "a,b",
     .server_alpn = "b,a",
     .version = "TLSv1.3",
     .alpn = "b"},
    {.what = "ALPN agreed on TLS 1.2",
     .client_protocols = "1.2-1.2",
     .client_alpn = "x,y",
     .server_alpn = "y",
     .version = "TLSv1.2",
     .alpn = "y"},
    {.what = "ALPN offered, server has none",
     .client_alpn = "h2",
     .version = "TLSv1.3",
     .alpn = ""},
    {.what = "ALPN not offered", .server_alpn = "h2", .version = "TLSv1.3", .alpn = ""},
    {.what = "ALPN refused",
     .client_alpn = "a",
     .server_alpn = "b",
     .client_rc = TLSOCK_EPROTO,
     .message = "no_application_protocol"},
    {.what = "ALPN refused on TLS 1.2",
     .client_protocols = "1.2-1.2",
     .client_alpn = "a",
     .server_alpn = "b",
     .client_rc = TLSOCK_EPROTO,
     .message = "no_application_protocol"},
};

/*
 * TLS 1.2 suites picked by a raw cipher list, which is each implementation's own syntax: an
 * OpenSSL cipher list, or a GnuTLS priority string (tlsock adds the protocol range to it).
 */
static const struct negotiate_case raw_cipher_cases[] = {
    {.what = "TLS 1.2 cipher chosen by the client",
     .client_protocols = "1.2-1.2",
     .client_ciphers = "ECDHE-ECDSA-CHACHA20-POLY1305",
     .gnutls_client_ciphers = "NORMAL:-CIPHER-ALL:+CHACHA20-POLY1305:-KX-ALL:+ECDHE-ECDSA",
     .version = "TLSv1.2",
     .alpn = "",
     /* Reported by its IANA name (RFC 7905), whatever the implementation calls it. */
     .cipher = "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"},
    /* "secure" has no CBC suites; "compat" adds them. */
    {.what = "CBC-only client vs secure server",
     .client_protocols = "1.2-1.2",
     .client_ciphers = "ECDHE-ECDSA-AES128-SHA256",
     .gnutls_client_ciphers = "NORMAL:-CIPHER-ALL:+AES-128-CBC:-MAC-ALL:+SHA256:-KX-ALL:"
                              "+ECDHE-ECDSA",
     .client_rc = TLSOCK_EPROTO,
     .message = "handshake_failure"},
    {.what = "CBC-only client vs compat server",
     .client_protocols = "1.2-1.2",
     .client_ciphers = "ECDHE-ECDSA-AES128-SHA256",
     .gnutls_client_ciphers = "NORMAL:-CIPHER-ALL:+AES-128-CBC:-MAC-ALL:+SHA256:-KX-ALL:"
                              "+ECDHE-ECDSA",
     .server_ciphers = "compat",
     .version = "TLSv1.2",
     .alpn = "",
     .cipher = "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"},
};

static void setup_side(struct tlsock_ctx *ctx, const char *protocols, const char *ciphers,
                       const char *alpn)
{
    /* Ciphers first: the legacy policy is what allows versions below 1.2. */
    if (ciphers != NULL) {
        TS_ASSERT_RC_MSG(tlsock_ctx_set_ciphers(ctx, ciphers), 0, tlsock_ctx_errmsg(ctx));
    }
    if (protocols != NULL) {
        TS_ASSERT_RC_MSG(tlsock_ctx_set_protocols(ctx, protocols), 0, tlsock_ctx_errmsg(ctx));
    }
    if (alpn != NULL) {
        TS_ASSERT_RC_MSG(tlsock_ctx_set_alpn(ctx, alpn), 0, tlsock_ctx_errmsg(ctx));
    }
}

/* The case's client cipher list in the syntax of the client's implementation. */
static const char *client_ciphers(const struct tlsock_ctx *cctx, const struct negotiate_case *c)
{
    bool gnutls = tlsock_ctx_impl(cctx) == TLSOCK_IMPL_GNUTLS;

    return gnutls && c->gnutls_client_ciphers != NULL ? c->gnutls_client_ciphers
                                                      : c->client_ciphers;
}

static void run_cases(void **state, const struct negotiate_case *table, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const struct negotiate_case *c = &table[i];
        const struct tlsock_info *info = NULL;
        struct ts_pair *p;

        print_message("%s\n", c->what);
        ts_pair_renew(state, i);
        p = *state;
        TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &p->sctx), 0);
        TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &p->cctx), 0);
        setup_side(p->sctx, c->server_protocols, c->server_ciphers, c->server_alpn);
        setup_side(p->cctx, c->client_protocols, client_ciphers(p->cctx, c), c->client_alpn);
        TS_ASSERT_RC(ts_pair_attach(p, NULL, NULL), 0);
        (void)ts_pair_handshake(p);
        TS_ASSERT_RC_MSG(p->client_rc, c->client_rc, p->client_msg);
        if (c->client_rc == 0) {
            TS_ASSERT_RC(tlsock_conn_info(p->client, &info), 0);
            assert_string_equal(info->version, c->version);
            assert_string_equal(info->alpn, c->alpn);
            if (c->cipher != NULL) {
                assert_string_equal(info->cipher, c->cipher);
            }
            TS_ASSERT_RC_MSG(p->server_rc, 0, p->server_msg);
            TS_ASSERT_RC(tlsock_conn_info(p->server, &info), 0);
            assert_string_equal(info->version, c->version);
            assert_string_equal(info->alpn, c->alpn);
        } else {
            TS_ASSERT_CONTAINS(p->client_msg, c->message);
            assert_true(tlsock_err_is_tls(p->client_rc));
            /* The server refused: its handshake failed too. */
            TS_ASSERT_FAILED(p->server_rc, p->server_msg);
        }
    }
}

static void test_negotiation(void **state)
{
    run_cases(state, cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_raw_cipher_strings(void **state)
{
    run_cases(state, raw_cipher_cases, sizeof(raw_cipher_cases) / sizeof(raw_cipher_cases[0]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_negotiation, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_raw_cipher_strings, ts_pair_setup, ts_pair_teardown),
    };

    return cmocka_run_group_tests_name("negotiate", tests, ts_pki_setup, ts_pki_teardown);
}
