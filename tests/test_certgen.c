/*
 * Both certificate generators, each checked by both implementations. For every generator compiled
 * in (OpenSSL's and GnuTLS's, called directly rather than through tlsock__cert_generate(), which
 * picks one), the test makes a small PKI once: a root CA, an intermediate CA, leaves of every key
 * type, purpose and validity. The cases then run handshakes over the in-memory pair, whose client
 * and server are the implementation matrix's (ts_ctx_new), so each generator's certificates are
 * loaded and verified by its own implementation and by the other one.
 */
#include "pair.h"

#include <stdio.h>
#include <string.h>

enum gen {
    GEN_OPENSSL,
    GEN_GNUTLS,
    GEN_COUNT,
};

static const int gen_impl[GEN_COUNT] = {
    [GEN_OPENSSL] = TLSOCK_IMPL_OPENSSL,
    [GEN_GNUTLS] = TLSOCK_IMPL_GNUTLS,
};

enum cert {
    C_ROOT,        /* CA, ec-p256, self-signed */
    C_INTER,       /* CA, rsa-2048, issued by C_ROOT */
    C_SERVER,      /* ec-p256, TS_SERVER_HOSTS, serverAuth, issued by C_INTER */
    C_SERVER_RSA,  /* rsa-2048, TS_SERVER_HOSTS, serverAuth + clientAuth, issued by C_ROOT */
    C_NO_SAN,      /* no subjectAltName, serverAuth, issued by C_ROOT */
    C_CLIENT,      /* clientAuth, issued by C_ROOT */
    C_CLIENT_ONLY, /* TS_SERVER_HOSTS but clientAuth only, issued by C_ROOT */
    C_EXPIRED,     /* ended yesterday, issued by C_ROOT */
    C_NOT_YET,     /* starts tomorrow, issued by C_ROOT */
    C_SELF_SIGNED, /* a leaf that is its own issuer */
    C_LEAF_ISSUER, /* a leaf (not a CA) that issued C_UNDER_LEAF */
    C_UNDER_LEAF,  /* issued by C_LEAF_ISSUER */
    C_RSA1024,     /* rsa-1024: below security level 2 */
    C_COUNT,
};

#define DAY 86400L

struct cert_plan {
    struct tlsock__cert_spec spec;
    enum cert issuer; /* C_COUNT: self-signed */
};

static const struct cert_plan plans[C_COUNT] = {
    [C_ROOT] = {.spec = {.common_name = "certgen root",
                         .is_ca = true,
                         .not_before_s = -3600,
                         .not_after_s = 30 * DAY},
                .issuer = C_COUNT},
    [C_INTER] = {.spec = {.common_name = "certgen intermediate",
                          .key_type = "rsa-2048",
                          .is_ca = true,
                          .not_before_s = -3600,
                          .not_after_s = 30 * DAY},
                 .issuer = C_ROOT},
    [C_SERVER] = {.spec = {.common_name = "certgen server",
                           .hosts = TS_SERVER_HOSTS,
                           .not_before_s = -3600,
                           .not_after_s = 30 * DAY,
                           .eku = TLSOCK__EKU_SERVER},
                  .issuer = C_INTER},
    [C_SERVER_RSA] = {.spec = {.common_name = "certgen rsa server",
                               .hosts = TS_SERVER_HOSTS,
                               .key_type = "rsa-2048",
                               .not_before_s = -3600,
                               .not_after_s = 30 * DAY,
                               .eku = TLSOCK__EKU_SERVER | TLSOCK__EKU_CLIENT},
                      .issuer = C_ROOT},
    [C_NO_SAN] = {.spec = {.common_name = "certgen no SAN",
                           .not_before_s = -3600,
                           .not_after_s = 30 * DAY,
                           .eku = TLSOCK__EKU_SERVER},
                  .issuer = C_ROOT},
    [C_CLIENT] = {.spec = {.common_name = "certgen client",
                           .not_before_s = -3600,
                           .not_after_s = 30 * DAY,
                           .eku = TLSOCK__EKU_CLIENT},
                  .issuer = C_ROOT},
    [C_CLIENT_ONLY] = {.spec = {.common_name = "certgen client only",
                                .hosts = TS_SERVER_HOSTS,
                                .not_before_s = -3600,
                                .not_after_s = 30 * DAY,
                                .eku = TLSOCK__EKU_CLIENT},
                       .issuer = C_ROOT},
    [C_EXPIRED] = {.spec = {.common_name = "certgen expired",
                            .hosts = TS_SERVER_HOSTS,
                            .not_before_s = -30 * DAY,
                            .not_after_s = -DAY,
                            .eku = TLSOCK__EKU_SERVER | TLSOCK__EKU_CLIENT},
                   .issuer = C_ROOT},
    [C_NOT_YET] = {.spec = {.common_name = "certgen not yet valid",
                            .hosts = TS_SERVER_HOSTS,
                            .not_before_s = DAY,
                            .not_after_s = 30 * DAY,
                            .eku = TLSOCK__EKU_SERVER},
                   .issuer = C_ROOT},
    [C_SELF_SIGNED] = {.spec = {.common_name = "certgen self-signed",
                                .hosts = TS_SERVER_HOSTS,
                                .not_before_s = -3600,
                                .not_after_s = 30 * DAY,
                                .eku = TLSOCK__EKU_SERVER},
                       .issuer = C_COUNT},
    [C_LEAF_ISSUER] = {.spec = {.common_name = "certgen leaf issuer",
                                .not_before_s = -3600,
                                .not_after_s = 30 * DAY},
                       .issuer = C_ROOT},
    [C_UNDER_LEAF] = {.spec = {.common_name = "certgen under a leaf",
                               .hosts = TS_SERVER_HOSTS,
                               .not_before_s = -3600,
                               .not_after_s = 30 * DAY,
                               .eku = TLSOCK__EKU_SERVER},
                      .issuer = C_LEAF_ISSUER},
    [C_RSA1024] = {.spec = {.common_name = "certgen rsa-1024",
                            .hosts = TS_SERVER_HOSTS,
                            .key_type = "rsa-1024",
                            .not_before_s = -3600,
                            .not_after_s = 30 * DAY,
                            .eku = TLSOCK__EKU_SERVER},
                   .issuer = C_ROOT},
};

/* Each generator's certificates; a generator not compiled in has none (made == false). */
static struct {
    bool made;
    struct tlsock__pem_pair certs[C_COUNT];
} pki[GEN_COUNT];

static int make_pki(void **state)
{
    int rc = 0;

    (void)state;
    for (int g = 0; g < GEN_COUNT && rc == 0; g++) {
        const struct tlsock__impl *impl = tlsock__impl_get(gen_impl[g]);
        if (impl == NULL) {
            continue;
        }
        /* Every implementation compiled in has a generator. */
        if (impl->cert_generate == NULL || (impl->caps & TLSOCK_CAP_CERTGEN) == 0) {
            print_error("%s has no certificate generator\n", impl->name);
            return -1;
        }
        /* The plans list issuers before what they issue. */
        for (int c = 0; c < C_COUNT && rc == 0; c++) {
            struct tlsock__cert_spec spec = plans[c].spec;
            struct tlsock__err err = {0};
            if (plans[c].issuer != C_COUNT) {
                spec.issuer_cert_pem = pki[g].certs[plans[c].issuer].cert;
                spec.issuer_key_pem = pki[g].certs[plans[c].issuer].key;
            }
            rc = impl->cert_generate(&spec, &pki[g].certs[c], &err);
            if (rc != 0) {
                print_error("%s generator, %s: %s (%s)\n", impl->name, spec.common_name,
                            ts_rc_name(rc), tlsock__err_msg(&err));
            }
            tlsock__err_free(&err);
        }
        pki[g].made = true;
    }
    return rc == 0 ? 0 : -1;
}

static int free_pki(void **state)
{
    (void)state;
    for (int g = 0; g < GEN_COUNT; g++) {
        for (int c = 0; c < C_COUNT; c++) {
            tlsock__pem_pair_free(&pki[g].certs[c]);
        }
    }
    memset(pki, 0, sizeof(pki));
    return 0;
}

/* ---- server certificates, verified by the client ------------------------------------------ */

struct server_case {
    const char *what;
    enum cert leaf;
    bool send_inter;         /* the server sends C_INTER after its leaf */
    const char *verify_name; /* NULL: "localhost" */
    const char *protocols;   /* the client's; NULL: default */
    const char *server_ciphers;
    int rc;              /* the client's handshake */
    const char *message; /* in the client's message when rc != 0 */
    const char *cipher;  /* in info.cipher when rc == 0 (TLS 1.2: the key type shows) */
    const char *sans;    /* info.peer_sans when rc == 0 */
};

static const struct server_case server_cases[] = {
    {.what = "chain root -> intermediate -> server",
     .leaf = C_SERVER,
     .send_inter = true,
     .sans = "DNS:localhost,IP:127.0.0.1,IP:::1"},
    {.what = "without the intermediate the chain is broken",
     .leaf = C_SERVER,
     .rc = TLSOCK_EVERIFY,
     .message = "unable to get local issuer"},
    {.what = "IPv4 SAN matches", .leaf = C_SERVER, .send_inter = true, .verify_name = "127.0.0.1"},
    {.what = "IPv6 SAN matches", .leaf = C_SERVER, .send_inter = true, .verify_name = "::1"},
    {.what = "DNS name not in the SANs",
     .leaf = C_SERVER,
     .send_inter = true,
     .verify_name = "other.test",
     .rc = TLSOCK_EVERIFY,
     .message = "hostname mismatch"},
    {.what = "IP address not in the SANs",
     .leaf = C_SERVER,
     .send_inter = true,
     .verify_name = "127.0.0.2",
     .rc = TLSOCK_EVERIFY,
     .message = "IP address mismatch"},
    {.what = "no SANs", .leaf = C_NO_SAN, .rc = TLSOCK_EVERIFY, .message = "hostname mismatch"},
    {.what = "ECDSA key, TLS 1.2",
     .leaf = C_SERVER,
     .send_inter = true,
     .protocols = "1.2-1.2",
     .cipher = "_ECDSA_"},
    {.what = "RSA-2048 key, TLS 1.2",
     .leaf = C_SERVER_RSA,
     .protocols = "1.2-1.2",
     .cipher = "_RSA_",
     .sans = "DNS:localhost,IP:127.0.0.1,IP:::1"},
    {.what = "expired", .leaf = C_EXPIRED, .rc = TLSOCK_EVERIFY, .message = "expired"},
    {.what = "not yet valid", .leaf = C_NOT_YET, .rc = TLSOCK_EVERIFY, .message = "not yet valid"},
    {.what = "clientAuth only, presented by a server",
     .leaf = C_CLIENT_ONLY,
     .rc = TLSOCK_EVERIFY,
     .message = "purpose"},
    {.what = "self-signed leaf",
     .leaf = C_SELF_SIGNED,
     .rc = TLSOCK_EVERIFY,
     .message = "self-signed"},
    /* basicConstraints CA:FALSE: a leaf cannot issue. */
    {.what = "issued by a leaf",
     .leaf = C_UNDER_LEAF,
     .rc = TLSOCK_EVERIFY,
     .message = "unable to get local issuer"},
    /* A server at the legacy level can present it; the default client (level 2) refuses it. */
    {.what = "RSA-1024 key",
     .leaf = C_RSA1024,
     .server_ciphers = "legacy",
     .rc = TLSOCK_EVERIFY,
     .message = "too weak"},
};

/* A context's chain: the leaf, and the intermediate after it when asked. */
static void set_chain(struct tlsock_ctx *ctx, const struct tlsock__pem_pair *certs, enum cert leaf,
                      bool send_inter)
{
    char chain[16384];
    int n = snprintf(chain, sizeof(chain), "%s%s", certs[leaf].cert,
                     send_inter ? certs[C_INTER].cert : "");

    assert_true(n > 0 && (size_t)n < sizeof(chain));
    TS_ASSERT_RC_MSG(
        tlsock_ctx_set_cert_mem(ctx, chain, (size_t)n, certs[leaf].key, strlen(certs[leaf].key)), 0,
        tlsock_ctx_errmsg(ctx));
}

/* The fingerprint every implementation computes for @p pem, which must be the same. */
static void check_fingerprints(const char *pem, const char *seen)
{
    char fp[TLSOCK_FINGERPRINT_SIZE];

    for (int g = 0; g < GEN_COUNT; g++) {
        const struct tlsock__impl *impl = tlsock__impl_get(gen_impl[g]);
        struct tlsock__err err = {0};
        if (impl == NULL) {
            continue;
        }
        memset(fp, 'z', sizeof(fp));
        int rc = impl->cert_fingerprint(pem, strlen(pem), fp, &err);
        TS_ASSERT_RC_MSG(rc, 0, tlsock__err_msg(&err));
        tlsock__err_free(&err);
        assert_string_equal(fp, seen);
    }
    TS_ASSERT_RC(tlsock_cert_fingerprint(pem, strlen(pem), fp), 0);
    assert_string_equal(fp, seen);
}

static void check_server_case(const struct server_case *c, const struct tlsock__pem_pair *certs,
                              struct ts_pair *p)
{
    const struct tlsock_info *info = NULL;

    TS_ASSERT_RC_MSG(p->client_rc, c->rc, p->client_msg);
    if (c->rc != 0) {
        TS_ASSERT_CONTAINS(p->client_msg, c->message);
        TS_ASSERT_FAILED(p->server_rc, p->server_msg);
        return;
    }
    TS_ASSERT_RC_MSG(p->server_rc, 0, p->server_msg);
    TS_ASSERT_RC(tlsock_conn_info(p->client, &info), 0);
    assert_string_equal(info->verify_message, "ok");
    TS_ASSERT_CONTAINS(info->peer_subject, plans[c->leaf].spec.common_name);
    TS_ASSERT_CONTAINS(info->peer_subject, "O=tlsock");
    if (c->sans != NULL) {
        assert_string_equal(info->peer_sans, c->sans);
    }
    if (c->cipher != NULL) {
        TS_ASSERT_CONTAINS(info->cipher, c->cipher);
    }
    /* What the handshake saw is what each implementation computes from the PEM. */
    check_fingerprints(certs[c->leaf].cert, info->peer_fingerprint);
}

static void test_server_certificates(void **state)
{
    size_t index = 0;

    for (int g = 0; g < GEN_COUNT; g++) {
        const struct tlsock__pem_pair *certs = pki[g].certs;
        if (!pki[g].made) {
            continue;
        }
        for (size_t i = 0; i < sizeof(server_cases) / sizeof(server_cases[0]); i++) {
            const struct server_case *c = &server_cases[i];
            struct tlsock_opts opts = ts_opts();
            struct ts_pair *p;

            print_message("%s generator: %s\n", tlsock_impl_name(gen_impl[g]), c->what);
            ts_pair_renew(state, index++);
            p = *state;
            opts.verify_name = c->verify_name != NULL ? c->verify_name : "localhost";
            TS_ASSERT_RC(ts_ctx_new(TLSOCK_SERVER, &p->sctx), 0);
            if (c->server_ciphers != NULL) {
                TS_ASSERT_RC(tlsock_ctx_set_ciphers(p->sctx, c->server_ciphers), 0);
            }
            set_chain(p->sctx, certs, c->leaf, c->send_inter);
            TS_ASSERT_RC(ts_client_ctx_new(certs[C_ROOT].cert, &p->cctx), 0);
            if (c->protocols != NULL) {
                TS_ASSERT_RC(tlsock_ctx_set_protocols(p->cctx, c->protocols), 0);
            }
            TS_ASSERT_RC(ts_pair_attach(p, &opts, NULL), 0);
            (void)ts_pair_handshake(p);
            check_server_case(c, certs, p);
        }
    }
}

/* ---- client certificates, verified by the server ------------------------------------------ */

struct client_case {
    const char *what;
    enum cert cert;
    bool send_inter;     /* the client sends C_INTER after its certificate */
    int rc;              /* the server's handshake */
    const char *message; /* in the server's message when rc != 0 */
};

static const struct client_case client_cases[] = {
    {.what = "clientAuth", .cert = C_CLIENT},
    {.what = "serverAuth and clientAuth, RSA", .cert = C_SERVER_RSA},
    {.what = "serverAuth only, with the intermediate",
     .cert = C_SERVER,
     .send_inter = true,
     .rc = TLSOCK_EVERIFY,
     .message = "purpose"},
    {.what = "expired", .cert = C_EXPIRED, .rc = TLSOCK_EVERIFY, .message = "expired"},
};

static void test_client_certificates(void **state)
{
    size_t index = 0;

    for (int g = 0; g < GEN_COUNT; g++) {
        const struct tlsock__pem_pair *certs = pki[g].certs;
        if (!pki[g].made) {
            continue;
        }
        for (size_t i = 0; i < sizeof(client_cases) / sizeof(client_cases[0]); i++) {
            const struct client_case *c = &client_cases[i];
            const struct tlsock__pem_pair *cert = &certs[c->cert];
            const struct tlsock_info *info = NULL;
            struct ts_pair *p;

            print_message("%s generator: client certificate, %s\n", tlsock_impl_name(gen_impl[g]),
                          c->what);
            ts_pair_renew(state, index++);
            p = *state;
            TS_ASSERT_RC(ts_ctx_new(TLSOCK_SERVER, &p->sctx), 0);
            set_chain(p->sctx, certs, C_SERVER_RSA, false);
            TS_ASSERT_RC(
                tlsock_ctx_set_ca_mem(p->sctx, certs[C_ROOT].cert, strlen(certs[C_ROOT].cert)), 0);
            TS_ASSERT_RC(tlsock_ctx_set_verify(p->sctx, TLSOCK_VERIFY_REQUIRED), 0);
            TS_ASSERT_RC(ts_client_ctx_new(certs[C_ROOT].cert, &p->cctx), 0);
            /* TLS 1.2: the server's verdict ends both handshakes, not the client's first read. */
            TS_ASSERT_RC(tlsock_ctx_set_protocols(p->cctx, "1.2-1.2"), 0);
            set_chain(p->cctx, certs, c->cert, c->send_inter);
            TS_ASSERT_RC(ts_pair_attach(p, NULL, NULL), 0);
            (void)ts_pair_handshake(p);
            TS_ASSERT_RC_MSG(p->server_rc, c->rc, p->server_msg);
            if (c->rc != 0) {
                TS_ASSERT_CONTAINS(p->server_msg, c->message);
                TS_ASSERT_FAILED(p->client_rc, p->client_msg);
                continue;
            }
            TS_ASSERT_RC_MSG(p->client_rc, 0, p->client_msg);
            TS_ASSERT_RC(tlsock_conn_info(p->server, &info), 0);
            assert_string_equal(info->verify_message, "ok");
            TS_ASSERT_CONTAINS(info->peer_subject, plans[c->cert].spec.common_name);
            check_fingerprints(cert->cert, info->peer_fingerprint);
        }
    }
}

/* ---- what a context refuses to load ------------------------------------------------------- */

/* At the default security level (2) a context refuses its own RSA-1024 key, whoever made it. */
static void test_rsa1024_refused(void **state)
{
    (void)state;
    for (int g = 0; g < GEN_COUNT; g++) {
        const struct tlsock__pem_pair *weak = &pki[g].certs[C_RSA1024];
        if (!pki[g].made) {
            continue;
        }
        for (int role = TLSOCK_CLIENT; role <= TLSOCK_SERVER; role++) {
            struct tlsock_ctx *ctx = NULL;
            TS_ASSERT_RC(ts_ctx_new(role, &ctx), 0);
            int rc = tlsock_ctx_set_cert_mem(ctx, weak->cert, strlen(weak->cert), weak->key,
                                             strlen(weak->key));
            char msg[TLSOCK__ERRMSG_SIZE];
            snprintf(msg, sizeof(msg), "%s", tlsock_ctx_errmsg(ctx));
            tlsock_ctx_free(ctx);
            TS_ASSERT_RC_MSG(rc, TLSOCK_ECONFIG, msg);
            TS_ASSERT_CONTAINS(msg, "too small");
        }
    }
}

/* Every certificate of each generator loads with its key into either implementation's context,
 * and the key of one certificate does not pass for another's. */
static void test_keys_load_everywhere(void **state)
{
    (void)state;
    for (int g = 0; g < GEN_COUNT; g++) {
        const struct tlsock__pem_pair *certs = pki[g].certs;
        if (!pki[g].made) {
            continue;
        }
        for (int c = 0; c < C_COUNT; c++) {
            struct tlsock_ctx *ctx = NULL;
            if (c == C_RSA1024) {
                continue; /* test_rsa1024_refused */
            }
            assert_non_null(strstr(certs[c].cert, "-----BEGIN CERTIFICATE-----"));
            assert_non_null(strstr(certs[c].key, "-----BEGIN PRIVATE KEY-----"));
            TS_ASSERT_RC(ts_ctx_new(TLSOCK_SERVER, &ctx), 0);
            int rc = tlsock_ctx_set_cert_mem(ctx, certs[c].cert, strlen(certs[c].cert),
                                             certs[c].key, strlen(certs[c].key));
            int wrong = tlsock_ctx_set_cert_mem(ctx, certs[c].cert, strlen(certs[c].cert),
                                                certs[(c + 1) % C_COUNT].key,
                                                strlen(certs[(c + 1) % C_COUNT].key));
            tlsock_ctx_free(ctx);
            TS_ASSERT_RC(rc, 0);
            TS_ASSERT_RC(wrong, TLSOCK_ECONFIG);
        }
    }
}

/* ---- the generators' own checks ----------------------------------------------------------- */

struct bad_spec {
    const char *what;
    struct tlsock__cert_spec spec;
    bool with_issuer_cert; /* the root's certificate as issuer_cert_pem */
    bool with_issuer_key;
    bool wrong_issuer_key; /* the intermediate's key with the root's certificate */
    const char *message;
};

static const struct bad_spec bad_specs[] = {
    {.what = "unknown key type",
     .spec = {.key_type = "dsa-512", .not_after_s = DAY},
     .message = "unknown key type"},
    {.what = "expires before it starts",
     .spec = {.not_before_s = DAY, .not_after_s = -DAY},
     .message = "before it is valid"},
    {.what = "unknown EKU bits", .spec = {.eku = 1 << 5, .not_after_s = DAY}, .message = "0x20"},
    {.what = "host that is neither DNS name nor IP",
     .spec = {.hosts = "localhost,IP:1.2.3.4", .not_after_s = DAY},
     .message = "neither an IP address nor a DNS name"},
    {.what = "empty host entry",
     .spec = {.hosts = "localhost,,example.test", .not_after_s = DAY},
     .message = "empty or over-long entry"},
    {.what = "empty common name",
     .spec = {.common_name = "", .not_after_s = DAY},
     .message = "common name"},
    {.what = "common name of 65 characters",
     .spec = {.common_name = "12345678901234567890123456789012345678901234567890123456789012345",
              .not_after_s = DAY},
     .message = "common name"},
    {.what = "issuer certificate without its key",
     .spec = {.not_after_s = DAY},
     .with_issuer_cert = true,
     .message = "given together"},
    {.what = "issuer key that is not the certificate's",
     .spec = {.not_after_s = DAY},
     .with_issuer_cert = true,
     .with_issuer_key = true,
     .wrong_issuer_key = true,
     .message = "does not match"},
};

static void test_bad_specs(void **state)
{
    (void)state;
    for (int g = 0; g < GEN_COUNT; g++) {
        const struct tlsock__impl *impl = tlsock__impl_get(gen_impl[g]);
        const struct tlsock__pem_pair *certs = pki[g].certs;
        if (!pki[g].made) {
            continue;
        }
        for (size_t i = 0; i < sizeof(bad_specs) / sizeof(bad_specs[0]); i++) {
            const struct bad_spec *b = &bad_specs[i];
            struct tlsock__cert_spec spec = b->spec;
            struct tlsock__pem_pair out = {.cert = (char *)"stale", .key = (char *)"stale"};
            struct tlsock__err err = {0};

            print_message("%s generator: %s\n", impl->name, b->what);
            if (b->with_issuer_cert) {
                spec.issuer_cert_pem = certs[C_ROOT].cert;
            }
            if (b->with_issuer_key) {
                spec.issuer_key_pem = b->wrong_issuer_key ? certs[C_INTER].key : certs[C_ROOT].key;
            }
            int rc = impl->cert_generate(&spec, &out, &err);
            char msg[TLSOCK__ERRMSG_SIZE];
            snprintf(msg, sizeof(msg), "%s", tlsock__err_msg(&err));
            tlsock__err_free(&err);
            TS_ASSERT_RC_MSG(rc, TLSOCK_ECONFIG, msg);
            TS_ASSERT_CONTAINS(msg, b->message);
            assert_null(out.cert);
            assert_null(out.key);
        }
        struct tlsock__pem_pair out = {0};
        struct tlsock__err err = {0};
        TS_ASSERT_RC_MSG(impl->cert_generate(NULL, &out, &err), TLSOCK_EINVAL,
                         tlsock__err_msg(&err));
        tlsock__err_free(&err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_server_certificates, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_client_certificates, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test(test_rsa1024_refused),
        cmocka_unit_test(test_keys_load_everywhere),
        cmocka_unit_test(test_bad_specs),
    };

    return cmocka_run_group_tests_name("certgen", tests, make_pki, free_pki);
}
