/*
 * Several certificates per server context (include/tlsock.h, "Several certificates"), over the
 * in-memory pair (support/pair.h): the chain chosen by the client's SNI (exact, wildcard, the
 * default), by the key types the client supports, and by an SNI callback that may refuse. The
 * presented certificate is identified by its fingerprint, as the client saw it.
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

/* The certificates, made once per executable, all issued by ts_pki.ca. */
enum cert_id {
    CERT_DEFAULT, /* default.example.com */
    CERT_A,       /* a.example.com */
    CERT_B,       /* b.example.com, *.wild.example.com */
    CERT_PARTIAL, /* f*.example.com: a partial-label wildcard, which matches nothing */
    CERT_RSA,     /* dual.example.com, RSA 2048 */
    CERT_EC,      /* dual.example.com, ECDSA P-256 */
    CERT_COUNT,
};

static const struct {
    const char *cn;
    const char *hosts;
    const char *key_type;
} cert_specs[CERT_COUNT] = {
    [CERT_DEFAULT] = {"sni-default", "default.example.com", NULL},
    [CERT_A] = {"sni-a", "a.example.com", NULL},
    [CERT_B] = {"sni-b", "b.example.com,*.wild.example.com", NULL},
    [CERT_PARTIAL] = {"sni-partial", "f*.example.com", NULL},
    [CERT_RSA] = {"sni-rsa", "dual.example.com", "rsa-2048"},
    [CERT_EC] = {"sni-ec", "dual.example.com", NULL},
};

static struct tlsock__pem_pair certs[CERT_COUNT];
static char fingerprints[CERT_COUNT][TLSOCK_FINGERPRINT_SIZE];

static int group_setup(void **state)
{
    int rc = ts_pki_setup(state);

    for (int i = 0; rc == 0 && i < CERT_COUNT; i++) {
        const struct tlsock__cert_spec spec = {
            .common_name = cert_specs[i].cn,
            .hosts = cert_specs[i].hosts,
            .key_type = cert_specs[i].key_type,
            .not_before_s = -3600,
            .not_after_s = 30L * 86400,
            .eku = TLSOCK__EKU_SERVER,
            .issuer_cert_pem = ts_pki.ca.cert,
            .issuer_key_pem = ts_pki.ca.key,
        };
        rc = ts_cert_make(&spec, &certs[i]);
        if (rc == 0) {
            rc = tlsock_cert_fingerprint(certs[i].cert, strlen(certs[i].cert), fingerprints[i]);
        }
    }
    return rc;
}

static int group_teardown(void **state)
{
    for (int i = 0; i < CERT_COUNT; i++) {
        free(certs[i].cert);
        free(certs[i].key);
    }
    return ts_pki_teardown(state);
}

/* Adds (or with @p replace, sets) certificate @p id to @p ctx. */
static void add_cert(struct tlsock_ctx *ctx, enum cert_id id, bool replace)
{
    const struct tlsock__pem_pair *c = &certs[id];
    int rc = replace
                 ? tlsock_ctx_set_cert_mem(ctx, c->cert, strlen(c->cert), c->key, strlen(c->key))
                 : tlsock_ctx_add_cert_mem(ctx, c->cert, strlen(c->cert), c->key, strlen(c->key));

    TS_ASSERT_RC_MSG(rc, 0, tlsock_ctx_errmsg(ctx));
}

/* A server context holding @p ids in that order (the first one set, the others added). */
static void server_with(struct ts_pair *p, const enum cert_id *ids, size_t n)
{
    assert_int_equal(ts_ctx_new(TLSOCK_SERVER, &p->sctx), 0);
    for (size_t i = 0; i < n; i++) {
        add_cert(p->sctx, ids[i], i == 0);
    }
    assert_int_equal(tlsock_ctx_cert_count(p->sctx), n);
}

/*
 * A client that does not verify (the certificate under test need not match the name it sends),
 * with @p protocols and a raw cipher list (@p ossl in OpenSSL's syntax, @p gtls in GnuTLS's) when
 * not NULL.
 */
static void client_with(struct ts_pair *p, const char *protocols, const char *ossl,
                        const char *gtls)
{
    assert_int_equal(ts_ctx_new(TLSOCK_CLIENT, &p->cctx), 0);
    TS_ASSERT_RC_MSG(tlsock_ctx_set_verify(p->cctx, TLSOCK_VERIFY_NONE), 0,
                     tlsock_ctx_errmsg(p->cctx));
    if (protocols != NULL) {
        TS_ASSERT_RC_MSG(tlsock_ctx_set_protocols(p->cctx, protocols), 0,
                         tlsock_ctx_errmsg(p->cctx));
    }
    if (ossl != NULL) {
        const char *list = tlsock_ctx_impl(p->cctx) == TLSOCK_IMPL_GNUTLS ? gtls : ossl;
        TS_ASSERT_RC_MSG(tlsock_ctx_set_ciphers(p->cctx, list), 0, tlsock_ctx_errmsg(p->cctx));
    }
}

/* Connects with SNI @p name ("" for none) and returns the handshake's outcome. */
static int connect_as(struct ts_pair *p, const char *name)
{
    struct tlsock_opts copts = ts_opts();

    ts_pair_close(p);
    copts.servername = name;
    assert_int_equal(ts_pair_attach(p, &copts, NULL), 0);
    return ts_pair_handshake(p);
}

/* Connects with SNI @p name and checks that the server presented certificate @p want. */
static void expect_cert(struct ts_pair *p, const char *name, enum cert_id want)
{
    const struct tlsock_info *info = NULL;
    int rc = connect_as(p, name);

    TS_ASSERT_RC_MSG(rc, 0, p->client_rc != 0 ? p->client_msg : p->server_msg);
    TS_ASSERT_RC(tlsock_conn_info(p->client, &info), 0);
    if (strcmp(info->peer_fingerprint, fingerprints[want]) != 0) {
        fail_msg("SNI \"%s\": expected %s, got subject %s", name, cert_specs[want].cn,
                 info->peer_subject);
    }
    TS_ASSERT_CONTAINS(info->peer_subject, cert_specs[want].cn);
}

/* The cipher lists of a TLS 1.2 client that takes only one kind of certificate. */
#define ECDSA_ONLY_OSSL "ECDHE-ECDSA-AES128-GCM-SHA256"
#define ECDSA_ONLY_GTLS "NORMAL:-KX-ALL:+ECDHE-ECDSA"
#define RSA_ONLY_OSSL   "ECDHE-RSA-AES128-GCM-SHA256"
#define RSA_ONLY_GTLS   "NORMAL:-KX-ALL:+ECDHE-RSA"

enum { MAX_CERTS = 5, MAX_PROBES = 6 };

/* A server's certificates, a client, and the certificate each SNI it sends must get. */
struct choice_case {
    const char *what;
    enum cert_id ids[MAX_CERTS]; /* in the order added, the first one set */
    size_t count;
    int default_index; /* for tlsock_ctx_set_default_cert(), or -1 */
    const char *protocols;
    const char *ossl_ciphers; /* with gtls_ciphers: the client's raw list, or NULL */
    const char *gtls_ciphers;
    struct {
        const char *sni; /* "": none */
        enum cert_id want;
    } probes[MAX_PROBES];
    size_t probe_count;
};

static const struct choice_case choice_cases[] = {
    {.what = "exact names, any case (RFC 4343)",
     .ids = {CERT_DEFAULT, CERT_A, CERT_B},
     .count = 3,
     .default_index = -1,
     .probes = {{"a.example.com", CERT_A},
                {"b.example.com", CERT_B},
                {"default.example.com", CERT_DEFAULT},
                {"A.Example.COM", CERT_A}},
     .probe_count = 4},
    {.what = "wildcards: one whole left-most label",
     .ids = {CERT_DEFAULT, CERT_A, CERT_B, CERT_PARTIAL},
     .count = 4,
     .default_index = -1,
     .probes = {{"x.wild.example.com", CERT_B},
                {"y.x.wild.example.com", CERT_DEFAULT}, /* two levels */
                {"wild.example.com", CERT_DEFAULT},     /* none */
                {"foo.example.com", CERT_DEFAULT},      /* "f*" is a partial label */
                {"f.example.com", CERT_DEFAULT}},
     .probe_count = 5},
    {.what = "the first added is the default",
     .ids = {CERT_A, CERT_DEFAULT, CERT_B},
     .count = 3,
     .default_index = -1,
     .probes = {{"", CERT_A},
                {"unknown.example.org", CERT_A},
                {"default.example.com", CERT_DEFAULT}},
     .probe_count = 3},
    {.what = "tlsock_ctx_set_default_cert",
     .ids = {CERT_A, CERT_DEFAULT, CERT_B},
     .count = 3,
     .default_index = 2,
     .probes = {{"", CERT_B}, {"unknown.example.org", CERT_B}, {"a.example.com", CERT_A}},
     .probe_count = 3},
    {.what = "an ECDSA-only TLS 1.2 client gets the ECDSA chain",
     .ids = {CERT_DEFAULT, CERT_RSA, CERT_EC},
     .count = 3,
     .default_index = -1,
     .protocols = "1.2-1.2",
     .ossl_ciphers = ECDSA_ONLY_OSSL,
     .gtls_ciphers = ECDSA_ONLY_GTLS,
     .probes = {{"dual.example.com", CERT_EC}},
     .probe_count = 1},
    {.what = "an RSA-only TLS 1.2 client gets the RSA chain",
     .ids = {CERT_DEFAULT, CERT_EC, CERT_RSA},
     .count = 3,
     .default_index = -1,
     .protocols = "1.2-1.2",
     .ossl_ciphers = RSA_ONLY_OSSL,
     .gtls_ciphers = RSA_ONLY_GTLS,
     .probes = {{"dual.example.com", CERT_RSA}},
     .probe_count = 1},
    {.what = "a TLS 1.3 client that takes both gets the first added (RSA)",
     .ids = {CERT_DEFAULT, CERT_RSA, CERT_EC},
     .count = 3,
     .default_index = -1,
     .probes = {{"dual.example.com", CERT_RSA}},
     .probe_count = 1},
    {.what = "a TLS 1.2 client that takes both gets the first added (ECDSA)",
     .ids = {CERT_DEFAULT, CERT_EC, CERT_RSA},
     .count = 3,
     .default_index = -1,
     .protocols = "1.2-1.2",
     .probes = {{"dual.example.com", CERT_EC}},
     .probe_count = 1},
    {.what = "no SNI, RSA only: the default's RSA twin",
     .ids = {CERT_EC, CERT_A, CERT_RSA},
     .count = 3,
     .default_index = -1,
     .protocols = "1.2-1.2",
     .ossl_ciphers = RSA_ONLY_OSSL,
     .gtls_ciphers = RSA_ONLY_GTLS,
     .probes = {{"", CERT_RSA}},
     .probe_count = 1},
    {.what = "no SNI, ECDSA only: the default itself",
     .ids = {CERT_EC, CERT_A, CERT_RSA},
     .count = 3,
     .default_index = -1,
     .protocols = "1.2-1.2",
     .ossl_ciphers = ECDSA_ONLY_OSSL,
     .gtls_ciphers = ECDSA_ONLY_GTLS,
     .probes = {{"", CERT_EC}},
     .probe_count = 1},
};

static void test_choice(void **state)
{
    for (size_t i = 0; i < sizeof(choice_cases) / sizeof(choice_cases[0]); i++) {
        const struct choice_case *c = &choice_cases[i];
        ts_pair_renew(state, i);
        struct ts_pair *p = *state;
        print_message("case: %s\n", c->what);
        server_with(p, c->ids, c->count);
        if (c->default_index >= 0) {
            TS_ASSERT_RC_MSG(tlsock_ctx_set_default_cert(p->sctx, (size_t)c->default_index), 0,
                             tlsock_ctx_errmsg(p->sctx));
        }
        client_with(p, c->protocols, c->ossl_ciphers, c->gtls_ciphers);
        for (size_t j = 0; j < c->probe_count; j++) {
            expect_cert(p, c->probes[j].sni, c->probes[j].want);
        }
    }
}

/* A client's groups or signature schemes, set on each of its sessions in its own library's words
 * by client_limits(). */
struct client_limits {
    int impl;                 /* the client's implementation */
    const char *ossl_groups;  /* SSL_set1_groups_list(), or NULL */
    const char *ossl_sigalgs; /* SSL_set1_sigalgs_list(), or NULL */
    const char *gtls_prio;    /* gnutls_priority_set_direct() */
};

static int client_limits(void *session, void *user)
{
    const struct client_limits *l = user;
    int rc = TLSOCK_ECONFIG;

#if TLSOCK_TEST_HAVE_OPENSSL
    if (l->impl == TLSOCK_IMPL_OPENSSL &&
        (l->ossl_groups == NULL || SSL_set1_groups_list(session, l->ossl_groups) == 1) &&
        (l->ossl_sigalgs == NULL || SSL_set1_sigalgs_list(session, l->ossl_sigalgs) == 1)) {
        rc = 0;
    }
#endif
#if TLSOCK_TEST_HAVE_GNUTLS
    if (l->impl == TLSOCK_IMPL_GNUTLS &&
        gnutls_priority_set_direct(session, l->gtls_prio, NULL) == 0) {
        rc = 0;
    }
#endif
    return rc;
}

/*
 * RFC 8422 section 5.3: a TLS 1.2 server's ECDSA key must be on a curve the client lists. Such a
 * client gets the RSA twin when there is one, and is refused the same way on both
 * implementations when there is none (GnuTLS's server presented the P-256 key regardless;
 * OpenSSL's failed with "no shared cipher" even with the RSA twin there, as tlsock had chosen
 * the ECDSA chain for it).
 */
static void test_tls12_ecdsa_curve(void **state)
{
    struct ts_pair *p = *state;
    static const enum cert_id twins[] = {CERT_DEFAULT, CERT_EC, CERT_RSA};
    static const enum cert_id ecdsa_only[] = {CERT_EC};
    static struct client_limits x25519_only = {
        .ossl_groups = "X25519",
        .gtls_prio = "NORMAL:-VERS-ALL:+VERS-TLS1.2:-GROUP-ALL:+GROUP-X25519",
    };

    server_with(p, twins, 3);
    client_with(p, "1.2-1.2", NULL, NULL);
    x25519_only.impl = tlsock_ctx_impl(p->cctx);
    TS_ASSERT_RC(tlsock_ctx_set_configure(p->cctx, NULL, client_limits, &x25519_only), 0);
    expect_cert(p, "dual.example.com", CERT_RSA);

    ts_pair_close(p);
    tlsock_ctx_free(p->sctx);
    p->sctx = NULL;
    server_with(p, ecdsa_only, 1);
    TS_ASSERT_FAILED(connect_as(p, "dual.example.com"), p->client_msg);
    assert_int_equal(p->server_rc, TLSOCK_EPROTO);
    TS_ASSERT_CONTAINS(p->server_msg, "supported_groups do not list the curve");
    assert_int_equal(p->client_rc, TLSOCK_EPROTO);
    TS_ASSERT_CONTAINS(p->client_msg, "handshake_failure (40)");
}

/*
 * RFC 8446 section 4.2.3: a TLS 1.3 ECDSA scheme names its curve, so a client offering
 * ecdsa_secp384r1_sha384 alone takes no P-256 key. It gets the RSA twin; tlsock presented the
 * P-256 chain (an ECDSA scheme was offered) and both implementations then failed the handshake.
 */
static void test_tls13_ecdsa_scheme(void **state)
{
    struct ts_pair *p = *state;
    static const enum cert_id twins[] = {CERT_DEFAULT, CERT_EC, CERT_RSA};
    static struct client_limits p384_schemes = {
        .ossl_sigalgs = "ecdsa_secp384r1_sha384:rsa_pss_rsae_sha256",
        .gtls_prio = "NORMAL:-VERS-ALL:+VERS-TLS1.3:-SIGN-ALL:+SIGN-ECDSA-SECP384R1-SHA384:"
                     "+SIGN-RSA-PSS-RSAE-SHA256",
    };

    server_with(p, twins, 3);
    client_with(p, "1.3", NULL, NULL);
    p384_schemes.impl = tlsock_ctx_impl(p->cctx);
    TS_ASSERT_RC(tlsock_ctx_set_configure(p->cctx, NULL, client_limits, &p384_schemes), 0);
    expect_cert(p, "dual.example.com", CERT_RSA);
}

/*
 * An Ed25519 certificate for dual.example.com, self-signed, valid until 2126 (the clients here do
 * not verify). Made once with the openssl tool, as no generator of tlsock makes Ed25519 keys:
 *   openssl genpkey -algorithm ED25519 -out ed.key
 *   openssl req -x509 -new -key ed.key -subj /CN=sni-ed25519 -days 36500 \
 *       -addext subjectAltName=DNS:dual.example.com -addext basicConstraints=critical,CA:FALSE
 */
static const char ed25519_cert[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBXTCCAQ+gAwIBAgIUEtYnSIgelGqZ/JdVIi5qAIStxRAwBQYDK2VwMBYxFDAS\n"
    "BgNVBAMMC3NuaS1lZDI1NTE5MCAXDTI2MTIwODAxMDM1NVoYDzIxMjYxMTE0MDEw\n"
    "MzU1WjAWMRQwEgYDVQQDDAtzbmktZWQyNTUxOTAqMAUGAytlcAMhAOkeh1U6EBbV\n"
    "19t1hwbnPQg0aHgu+8085kEqq075n0too20wazAdBgNVHQ4EFgQUduGYl6NULwKb\n"
    "IO5ijFRb5R/f35wwHwYDVR0jBBgwFoAUduGYl6NULwKbIO5ijFRb5R/f35wwGwYD\n"
    "VR0RBBQwEoIQZHVhbC5leGFtcGxlLmNvbTAMBgNVHRMBAf8EAjAAMAUGAytlcANB\n"
    "ADh2LreuMJu5Vfcm9FXC+uV2YLyrF+bSYifV5qp8j1v9SfBdeWHSVHwZXfFTsRok\n"
    "ukH+kV4Wk7ZavXHRMJ95Tw8=\n"
    "-----END CERTIFICATE-----\n";
static const char ed25519_key[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIOqt4VSKlB+c/gkg1h1edmCm6kdXpHTxPLuEnqwWGj+E\n"
    "-----END PRIVATE KEY-----\n";

/*
 * An Ed25519 key is taken only by a client offering the ed25519 scheme (RFC 8446 section 4.2.3,
 * RFC 8422 section 5.1.3). A client without it gets the ECDSA twin; tlsock offered an Ed25519
 * chain to every client, so one added first failed such clients on both implementations.
 */
static void test_ed25519_twin(void **state)
{
    struct ts_pair *p = *state;
    static struct client_limits no_ed25519 = {
        .ossl_sigalgs = "ecdsa_secp256r1_sha256:rsa_pss_rsae_sha256",
        .gtls_prio = "NORMAL:-VERS-ALL:+VERS-TLS1.3:-SIGN-ALL:+SIGN-ECDSA-SECP256R1-SHA256:"
                     "+SIGN-RSA-PSS-RSAE-SHA256",
    };

    assert_int_equal(ts_ctx_new(TLSOCK_SERVER, &p->sctx), 0);
    TS_ASSERT_RC_MSG(tlsock_ctx_set_cert_mem(p->sctx, ed25519_cert, strlen(ed25519_cert),
                                             ed25519_key, strlen(ed25519_key)),
                     0, tlsock_ctx_errmsg(p->sctx));
    add_cert(p->sctx, CERT_EC, false);
    client_with(p, "1.3", NULL, NULL);
    no_ed25519.impl = tlsock_ctx_impl(p->cctx);
    TS_ASSERT_RC(tlsock_ctx_set_configure(p->cctx, NULL, client_limits, &no_ed25519), 0);
    expect_cert(p, "dual.example.com", CERT_EC);
}

/* What the SNI callback saw and answers. */
struct sni_calls {
    int calls;
    char last[256];
    bool last_null;
    int answer_for_cb; /* for "cb.example.com" */
};

static int sni_cb(const char *servername, void *user)
{
    struct sni_calls *s = user;

    s->calls++;
    s->last_null = servername == NULL;
    snprintf(s->last, sizeof(s->last), "%s", servername != NULL ? servername : "");
    if (servername != NULL && strcmp(servername, "cb.example.com") == 0) {
        return s->answer_for_cb;
    }
    if (servername != NULL && strcmp(servername, "refuse.example.com") == 0) {
        return TLSOCK_SNI_REFUSE;
    }
    return TLSOCK_SNI_AUTO;
}

static void test_callback_chooses(void **state)
{
    struct ts_pair *p = *state;
    static const enum cert_id ids[] = {CERT_DEFAULT, CERT_A, CERT_B};
    struct sni_calls calls = {.answer_for_cb = 2};

    server_with(p, ids, 3);
    TS_ASSERT_RC_MSG(tlsock_ctx_set_sni_callback(p->sctx, sni_cb, &calls), 0,
                     tlsock_ctx_errmsg(p->sctx));
    client_with(p, NULL, NULL, NULL);
    expect_cert(p, "cb.example.com", CERT_B);
    assert_true(calls.calls >= 1);
    assert_false(calls.last_null);
    assert_string_equal(calls.last, "cb.example.com");
    /* An index overrides names: "a.example.com" is certificate 1's, the callback says 0. */
    calls.answer_for_cb = 0;
    expect_cert(p, "cb.example.com", CERT_DEFAULT);
    /* TLSOCK_SNI_AUTO: tlsock's own choice by name. */
    expect_cert(p, "a.example.com", CERT_A);
    assert_string_equal(calls.last, "a.example.com");
    calls.calls = 0;
    expect_cert(p, "", CERT_DEFAULT);
    assert_true(calls.calls >= 1);
    assert_true(calls.last_null);
}

static void test_callback_refuses(void **state)
{
    struct ts_pair *p = *state;
    static const enum cert_id ids[] = {CERT_DEFAULT, CERT_A};
    struct sni_calls calls = {.answer_for_cb = 7}; /* no certificate 7: internal_error */

    server_with(p, ids, 2);
    TS_ASSERT_RC_MSG(tlsock_ctx_set_sni_callback(p->sctx, sni_cb, &calls), 0,
                     tlsock_ctx_errmsg(p->sctx));
    client_with(p, NULL, NULL, NULL);
    TS_ASSERT_FAILED(connect_as(p, "refuse.example.com"), p->client_msg);
    assert_int_equal(p->client_rc, TLSOCK_EPROTO);
    TS_ASSERT_CONTAINS(p->client_msg, "unrecognized_name (112)");
    assert_int_equal(p->server_rc, TLSOCK_EPROTO);
    TS_ASSERT_CONTAINS(p->server_msg, "the SNI callback refused the client's server name");
    assert_string_equal(calls.last, "refuse.example.com");

    TS_ASSERT_FAILED(connect_as(p, "cb.example.com"), p->client_msg);
    assert_int_equal(p->client_rc, TLSOCK_EPROTO);
    TS_ASSERT_CONTAINS(p->client_msg, "internal_error (80)");
    assert_int_equal(p->server_rc, TLSOCK_EPROTO);
    TS_ASSERT_CONTAINS(p->server_msg, "the SNI callback chose no certificate of the context");

    /* The context still serves other names. */
    expect_cert(p, "a.example.com", CERT_A);
}

#if TS_BOTH_IMPLS
/* Switches @p ctx to the other implementation; returns its own, or -1 when that failed. */
static int other_impl(struct tlsock_ctx *ctx)
{
    int other =
        tlsock_ctx_impl(ctx) == TLSOCK_IMPL_OPENSSL ? TLSOCK_IMPL_GNUTLS : TLSOCK_IMPL_OPENSSL;
    int mine = tlsock_ctx_impl(ctx);

    if (tlsock_ctx_set_impl(ctx, other) != 0) {
        return -1;
    }
    return mine;
}

static void test_set_impl_replay(void **state)
{
    struct ts_pair *p = *state;
    static const enum cert_id ids[] = {CERT_DEFAULT, CERT_A, CERT_B, CERT_RSA, CERT_EC};
    struct sni_calls calls = {.answer_for_cb = 1};

    assert_int_equal(ts_ctx_new(TLSOCK_SERVER, &p->sctx), 0);
    int mine = other_impl(p->sctx);
    assert_true(mine >= 0);
    /* Everything set on the other implementation, then replayed onto the role's. */
    add_cert(p->sctx, CERT_A, true); /* replaced by the next set */
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        add_cert(p->sctx, ids[i], i == 0);
    }
    TS_ASSERT_RC_MSG(tlsock_ctx_set_default_cert(p->sctx, 2), 0, tlsock_ctx_errmsg(p->sctx));
    TS_ASSERT_RC_MSG(tlsock_ctx_set_sni_callback(p->sctx, sni_cb, &calls), 0,
                     tlsock_ctx_errmsg(p->sctx));
    TS_ASSERT_RC_MSG(tlsock_ctx_set_impl(p->sctx, mine), 0, tlsock_ctx_errmsg(p->sctx));
    assert_int_equal(tlsock_ctx_impl(p->sctx), mine);
    assert_int_equal(tlsock_ctx_cert_count(p->sctx), 5);

    client_with(p, NULL, NULL, NULL);
    expect_cert(p, "a.example.com", CERT_A);
    expect_cert(p, "x.wild.example.com", CERT_B);
    expect_cert(p, "", CERT_B);
    expect_cert(p, "cb.example.com", CERT_A);
    ts_pair_release(p);
    assert_int_equal(ts_ctx_new(TLSOCK_SERVER, &p->sctx), 0);
    mine = other_impl(p->sctx);
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        add_cert(p->sctx, ids[i], i == 0);
    }
    TS_ASSERT_RC_MSG(tlsock_ctx_set_impl(p->sctx, mine), 0, tlsock_ctx_errmsg(p->sctx));
    client_with(p, "1.2-1.2", ECDSA_ONLY_OSSL, ECDSA_ONLY_GTLS);
    expect_cert(p, "dual.example.com", CERT_EC);
}
#endif /* TS_BOTH_IMPLS */

static void test_setters(void **state)
{
    struct ts_pair *p = *state;
    static const enum cert_id ids[] = {CERT_DEFAULT, CERT_A};

    server_with(p, ids, 2);
    TS_ASSERT_RC(tlsock_ctx_set_default_cert(p->sctx, 2), TLSOCK_EINVAL);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(p->sctx), "no certificate 2");
    TS_ASSERT_RC_MSG(tlsock_ctx_set_default_cert(p->sctx, 1), 0, tlsock_ctx_errmsg(p->sctx));
    /* A failed add keeps what the context had. */
    TS_ASSERT_RC(tlsock_ctx_add_cert_mem(p->sctx, certs[CERT_A].cert, strlen(certs[CERT_A].cert),
                                         certs[CERT_B].key, strlen(certs[CERT_B].key)),
                 TLSOCK_ECONFIG);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(p->sctx), "does not match");
    assert_int_equal(tlsock_ctx_cert_count(p->sctx), 2);
    TS_ASSERT_RC(tlsock_ctx_add_cert_file(p->sctx, "/nonexistent/c.pem", "/nonexistent/k.pem"),
                 TLSOCK_ESYS);
    assert_int_equal(tlsock_ctx_cert_count(p->sctx), 2);
    /* A set_ replaces them all and makes index 0 the default again. */
    add_cert(p->sctx, CERT_B, true);
    assert_int_equal(tlsock_ctx_cert_count(p->sctx), 1);
    TS_ASSERT_RC(tlsock_ctx_set_default_cert(p->sctx, 1), TLSOCK_EINVAL);
    client_with(p, NULL, NULL, NULL);
    expect_cert(p, "a.example.com", CERT_B);
    expect_cert(p, "", CERT_B);
    /* Frozen now. */
    TS_ASSERT_RC(tlsock_ctx_add_cert_mem(p->sctx, certs[CERT_A].cert, strlen(certs[CERT_A].cert),
                                         certs[CERT_A].key, strlen(certs[CERT_A].key)),
                 TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_set_sni_callback(p->sctx, sni_cb, NULL), TLSOCK_EINVAL);
    /* Clients have no SNI callback. */
    TS_ASSERT_RC(tlsock_ctx_set_sni_callback(p->cctx, sni_cb, NULL), TLSOCK_EINVAL);
    assert_int_equal(tlsock_ctx_cert_count(NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_choice, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_tls12_ecdsa_curve, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_tls13_ecdsa_scheme, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_ed25519_twin, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_callback_chooses, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_callback_refuses, ts_pair_setup, ts_pair_teardown),
#if TS_BOTH_IMPLS /* a replay needs another implementation to start from */
        cmocka_unit_test_setup_teardown(test_set_impl_replay, ts_pair_setup, ts_pair_teardown),
#endif
        cmocka_unit_test_setup_teardown(test_setters, ts_pair_setup, ts_pair_teardown),
    };

    return cmocka_run_group_tests_name("sni", tests, group_setup, group_teardown);
}
