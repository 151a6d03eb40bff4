/*
 * OCSP stapling (include/tlsock.h, "OCSP stapling"): a server staples the DER response it is
 * given, a client asks for it, checks it and may require it, and honours must-staple leaves. Over
 * the in-memory pair (support/pair.h), across the implementation matrix, in TLS 1.2
 * (CertificateStatus) and TLS 1.3 (the Certificate entry's extension).
 *
 * The responses are made with the `openssl ocsp` tool from the certificates generated at run time,
 * in a temporary directory removed at the end; the tool always dates a response from now, so the
 * expired and not yet valid ones are made with OpenSSL's OCSP functions (the reference library of
 * the tests; a build without OpenSSL skips those, test_dates_*, shown as SKIPPED).
 */
#include "pair.h"
#include "workdir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if TLSOCK_TEST_HAVE_OPENSSL
#include <openssl/bio.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#endif

/* ---- certificates and responses, made once --------------------------------------------------- */

static struct ts_workdir wd;

enum cert {
    CERT_SERVER,        /* ts_pki.server */
    CERT_MUST_STAPLE,   /* a server certificate with the TLS feature status_request */
    CERT_REVOKED,       /* a server certificate the index lists as revoked */
    CERT_RESPONDER,     /* issued by the CA with OCSPSigning: a delegated responder */
    CERT_NOT_RESPONDER, /* issued by the CA without OCSPSigning */
    CERT_COUNT,
};

static struct tlsock__pem_pair certs[CERT_COUNT];

/* The responses, as files <name>.der in wd. */
enum resp {
    RESP_NONE,
    RESP_GOOD,          /* ts_pki.server, good, signed by the CA */
    RESP_DELEGATED,     /* ts_pki.server, good, signed by CERT_RESPONDER */
    RESP_MUST_GOOD,     /* CERT_MUST_STAPLE, good, signed by the CA */
    RESP_REVOKED,       /* CERT_REVOKED, revoked, signed by the CA */
    RESP_NOT_RESPONDER, /* ts_pki.server, good, signed by CERT_NOT_RESPONDER */
    RESP_FOREIGN,       /* ts_pki.server, good, signed by ts_pki.other_ca */
    RESP_EXPIRED,       /* ts_pki.server, good, nextUpdate yesterday (OpenSSL's API) */
    RESP_NOT_YET,       /* ts_pki.server, good, thisUpdate tomorrow (OpenSSL's API) */
    RESP_COUNT,
};
static const char *const resp_names[RESP_COUNT] = {
    "",        "good",    "delegated", "must-good", "revoked", "not-responder",
    "foreign", "expired", "not-yet",
};
static bool resp_made[RESP_COUNT];

static int write_text(const char *name, const char *text)
{
    return ts_workdir_write(&wd, name, text, strlen(text));
}

/*
 * The `openssl ocsp` responder, offline: a request for @p cert (a file of wd) from the CA, then
 * the answer from the index, signed by @p signer (a base name of wd: <signer>.pem and .key).
 */
static int make_resp(enum resp resp, const char *cert, const char *signer)
{
    int rc =
        ts_workdir_sh(&wd,
                      "openssl ocsp -issuer ca.pem -cert %s -no_nonce -reqout %s.req "
                      ">/dev/null 2>&1 && "
                      "openssl ocsp -index index.txt -CA ca.pem -rsigner %s.pem -rkey %s.key "
                      "-reqin %s.req -respout %s.der -ndays 1 >/dev/null 2>&1",
                      cert, resp_names[resp], signer, signer, resp_names[resp], resp_names[resp]);
    resp_made[resp] = rc == 0;
    return rc;
}

#if TLSOCK_TEST_HAVE_OPENSSL
static X509 *read_cert(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;

    BIO_free(bio);
    return x;
}

/*
 * A good status for ts_pki.server signed by the CA, dated from now + @p this_s to now + @p next_s:
 * what the tool cannot make.
 */
static int make_dated_resp(enum resp resp, long this_s, long next_s)
{
    X509 *leaf = read_cert(ts_pki.server.cert);
    X509 *ca = read_cert(ts_pki.ca.cert);
    BIO *kbio = BIO_new_mem_buf(ts_pki.ca.key, -1);
    EVP_PKEY *key = kbio != NULL ? PEM_read_bio_PrivateKey(kbio, NULL, NULL, NULL) : NULL;
    OCSP_BASICRESP *bs = OCSP_BASICRESP_new();
    OCSP_CERTID *id = leaf != NULL && ca != NULL ? OCSP_cert_to_id(EVP_sha1(), leaf, ca) : NULL;
    ASN1_TIME *this_update = X509_gmtime_adj(NULL, this_s);
    ASN1_TIME *next_update = X509_gmtime_adj(NULL, next_s);
    OCSP_RESPONSE *r = NULL;
    unsigned char *der = NULL;
    int len = -1;
    int rc = -1;

    if (bs != NULL && id != NULL && key != NULL && this_update != NULL && next_update != NULL &&
        OCSP_basic_add1_status(bs, id, V_OCSP_CERTSTATUS_GOOD, 0, NULL, this_update, next_update) !=
            NULL &&
        OCSP_basic_sign(bs, ca, key, EVP_sha256(), NULL, 0) == 1) {
        r = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs);
        len = r != NULL ? i2d_OCSP_RESPONSE(r, &der) : -1;
    }
    if (len > 0) {
        char file[64];
        snprintf(file, sizeof(file), "%s.der", resp_names[resp]);
        rc = ts_workdir_write(&wd, file, der, (size_t)len);
    }
    resp_made[resp] = rc == 0;
    OPENSSL_free(der);
    OCSP_RESPONSE_free(r);
    ASN1_TIME_free(this_update);
    ASN1_TIME_free(next_update);
    OCSP_CERTID_free(id);
    OCSP_BASICRESP_free(bs);
    EVP_PKEY_free(key);
    BIO_free(kbio);
    X509_free(ca);
    X509_free(leaf);
    return rc;
}
#endif

static int make_all(void **state)
{
    const long day = 86400;

    if (ts_pki_setup(state) != 0) {
        return -1;
    }
    /* The openssl tool makes the responses: without it the test fails, it does not skip. */
    if (ts_require_tool("openssl") != 0 || ts_workdir_make(&wd, "ocsp") != 0) {
        return -1;
    }
    const struct tlsock__cert_spec must_spec = {
        .common_name = "must-staple",
        .hosts = TS_SERVER_HOSTS,
        .not_before_s = -3600,
        .not_after_s = 30 * day,
        .eku = TLSOCK__EKU_SERVER,
        .must_staple = true,
        .issuer_cert_pem = ts_pki.ca.cert,
        .issuer_key_pem = ts_pki.ca.key,
    };
    int rc = 0;
    certs[CERT_SERVER] = ts_pki.server;
    rc |= ts_cert_make(&must_spec, &certs[CERT_MUST_STAPLE]);
    rc |= ts_leaf_make(&ts_pki.ca, "revoked", TS_SERVER_HOSTS, TLSOCK__EKU_SERVER,
                       &certs[CERT_REVOKED]);
    rc |= ts_leaf_make(&ts_pki.ca, "responder", NULL, TLSOCK__EKU_OCSP, &certs[CERT_RESPONDER]);
    rc |= ts_leaf_make(&ts_pki.ca, "not-responder", NULL, TLSOCK__EKU_SERVER,
                       &certs[CERT_NOT_RESPONDER]);
    if (rc != 0) {
        return -1;
    }
    static const char *const files[CERT_COUNT] = {"server", "must", "revoked", "responder",
                                                  "not-responder"};
    char name[64];
    for (int i = 0; i < CERT_COUNT; i++) {
        snprintf(name, sizeof(name), "%s.pem", files[i]);
        rc |= write_text(name, certs[i].cert);
        snprintf(name, sizeof(name), "%s.key", files[i]);
        rc |= write_text(name, certs[i].key);
    }
    rc |= write_text("ca.pem", ts_pki.ca.cert);
    rc |= write_text("ca.key", ts_pki.ca.key);
    rc |= write_text("other.pem", ts_pki.other_ca.cert);
    rc |= write_text("other.key", ts_pki.other_ca.key);
    rc |= write_text("ca.cnf", "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\n"
                               "default_md = sha256\n");
    rc |= write_text("index.txt", "");
    if (rc != 0) {
        return -1;
    }
    /* The CA's database: what the responder answers from. */
    rc |= ts_workdir_sh(&wd, "for c in server must; do openssl ca -batch -config ca.cnf "
                             "-keyfile ca.key -cert ca.pem -valid $c.pem >/dev/null 2>&1 || "
                             "exit 1; done && openssl ca -batch -config ca.cnf -keyfile ca.key "
                             "-cert ca.pem -revoke revoked.pem >/dev/null 2>&1");
    rc |= make_resp(RESP_GOOD, "server.pem", "ca");
    rc |= make_resp(RESP_DELEGATED, "server.pem", "responder");
    rc |= make_resp(RESP_MUST_GOOD, "must.pem", "ca");
    rc |= make_resp(RESP_REVOKED, "revoked.pem", "ca");
    rc |= make_resp(RESP_NOT_RESPONDER, "server.pem", "not-responder");
    rc |= make_resp(RESP_FOREIGN, "server.pem", "other");
#if TLSOCK_TEST_HAVE_OPENSSL
    rc |= make_dated_resp(RESP_EXPIRED, -2 * day, -day);
    rc |= make_dated_resp(RESP_NOT_YET, day, 2 * day);
#endif
    return rc == 0 ? 0 : -1;
}

static int free_all(void **state)
{
    for (int i = 0; i < CERT_COUNT; i++) {
        if (i != CERT_SERVER) {
            tlsock__pem_pair_free(&certs[i]);
        }
    }
    (void)ts_workdir_remove(&wd);
    return ts_pki_teardown(state);
}

/* ---- the table ------------------------------------------------------------------------------- */

struct ocsp_case {
    const char *what;
    enum cert cert;      /* what the server presents */
    enum resp resp;      /* what it staples */
    bool from_file;      /* tlsock_ctx_set_ocsp_response_file() rather than _mem() */
    int mode;            /* the client's enum tlsock_ocsp_mode */
    int rc;              /* the client's outcome */
    const char *message; /* in the client's message */
};

static const struct ocsp_case cases[] = {
    {.what = "good staple, required", .resp = RESP_GOOD, .mode = TLSOCK_OCSP_REQUIRE},
    {.what = "good staple from a file, required",
     .resp = RESP_GOOD,
     .from_file = true,
     .mode = TLSOCK_OCSP_REQUIRE},
    {.what = "good staple, requested", .resp = RESP_GOOD, .mode = TLSOCK_OCSP_REQUEST},
    {.what = "good staple by a delegated responder",
     .resp = RESP_DELEGATED,
     .mode = TLSOCK_OCSP_REQUIRE},
    {.what = "no staple, required",
     .mode = TLSOCK_OCSP_REQUIRE,
     .rc = TLSOCK_EVERIFY,
     .message = "no stapled OCSP response, and one is required (depth 0: CN=" TS_SERVER_CN},
    {.what = "no staple, requested", .mode = TLSOCK_OCSP_REQUEST},
    {.what = "must-staple leaf without a staple, requested",
     .cert = CERT_MUST_STAPLE,
     .mode = TLSOCK_OCSP_REQUEST,
     .rc = TLSOCK_EVERIFY,
     .message =
         "no stapled OCSP response, and the certificate requires one (depth 0: CN=must-staple"},
    {.what = "must-staple leaf with its staple, requested",
     .cert = CERT_MUST_STAPLE,
     .resp = RESP_MUST_GOOD,
     .mode = TLSOCK_OCSP_REQUEST},
    {.what = "revoked",
     .cert = CERT_REVOKED,
     .resp = RESP_REVOKED,
     .mode = TLSOCK_OCSP_REQUEST,
     .rc = TLSOCK_EVERIFY,
     .message = "certificate revoked (stapled OCSP response) (depth 0: CN=revoked"},
    {.what = "expired",
     .resp = RESP_EXPIRED,
     .mode = TLSOCK_OCSP_REQUIRE,
     .rc = TLSOCK_EVERIFY,
     .message = "stapled OCSP response has expired"},
    {.what = "not yet valid",
     .resp = RESP_NOT_YET,
     .mode = TLSOCK_OCSP_REQUEST,
     .rc = TLSOCK_EVERIFY,
     .message = "stapled OCSP response is not yet valid"},
    {.what = "a staple for another certificate",
     .resp = RESP_MUST_GOOD,
     .mode = TLSOCK_OCSP_REQUEST,
     .rc = TLSOCK_EVERIFY,
     .message = "stapled OCSP response is for another certificate (depth 0: CN=" TS_SERVER_CN},
    {.what = "signed by a certificate of the CA without OCSPSigning",
     .resp = RESP_NOT_RESPONDER,
     .mode = TLSOCK_OCSP_REQUIRE,
     .rc = TLSOCK_EVERIFY,
     .message = "stapled OCSP response is not signed by the certificate's issuer or a responder "
                "it authorized"},
    {.what = "signed by another CA",
     .resp = RESP_FOREIGN,
     .mode = TLSOCK_OCSP_REQUEST,
     .rc = TLSOCK_EVERIFY,
     .message = "stapled OCSP response is not signed by the certificate's issuer"},
    /* Off (the default): nothing asked for, nothing checked. */
    {.what = "off: a revoked staple is not asked for", .cert = CERT_REVOKED, .resp = RESP_REVOKED},
    {.what = "off: a must-staple leaf without a staple", .cert = CERT_MUST_STAPLE},
};

/* A fresh pair (index: ts_pair_renew's) whose server presents @p leaf; the client trusts the CA
 * and has OCSP @p mode. */
static struct ts_pair *contexts(void **state, size_t index, const struct tlsock__pem_pair *leaf,
                                int mode)
{
    struct ts_pair *p;

    ts_pair_renew(state, index);
    p = *state;
    TS_ASSERT_RC(ts_server_ctx_new(leaf, &p->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &p->cctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_ocsp_mode(p->cctx, mode), 0);
    return p;
}

/* Attaches both sides, the client verifying TS_PAIR_NAME, and runs the handshake. */
static void handshake(struct ts_pair *p)
{
    struct tlsock_opts copts = ts_opts();

    copts.verify_name = TS_PAIR_NAME;
    TS_ASSERT_RC(ts_pair_attach(p, &copts, NULL), 0);
    (void)ts_pair_handshake(p);
    if (p->client_rc != 0) {
        print_message("  client: %s (%s)\n", ts_rc_name(p->client_rc), p->client_msg);
    }
}

/* Sets the staple of a case on the server context. */
static void set_staple(struct tlsock_ctx *sctx, enum resp resp, bool from_file)
{
    char file[64];
    unsigned char *der = NULL;
    size_t len = 0;

    if (resp == RESP_NONE) {
        return;
    }
    snprintf(file, sizeof(file), "%s.der", resp_names[resp]);
    if (from_file) {
        TS_ASSERT_RC_MSG(tlsock_ctx_set_ocsp_response_file(sctx, TS_WORKDIR_PATH(&wd, file)), 0,
                         tlsock_ctx_errmsg(sctx));
        return;
    }
    assert_int_equal(ts_workdir_read(&wd, file, &der, &len), 0);
    int rc = tlsock_ctx_set_ocsp_response_mem(sctx, der, len);
    free(der);
    TS_ASSERT_RC_MSG(rc, 0, tlsock_ctx_errmsg(sctx));
}

/* One handshake of @p c with both sides limited to @p version; checks the client's outcome. */
static void run_case(void **state, size_t index, const struct ocsp_case *c, const char *version)
{
    struct ts_pair *p = contexts(state, index, &certs[c->cert], c->mode);

    TS_ASSERT_RC(tlsock_ctx_set_protocols(p->sctx, version), 0);
    TS_ASSERT_RC(tlsock_ctx_set_protocols(p->cctx, version), 0);
    set_staple(p->sctx, c->resp, c->from_file);
    handshake(p);
    TS_ASSERT_RC_MSG(p->client_rc, c->rc, p->client_msg);
    if (c->rc == 0) {
        TS_ASSERT_RC_MSG(p->server_rc, 0, p->server_msg);
        return;
    }
    TS_ASSERT_CONTAINS(p->client_msg, c->message);
    /* The server hears why: the alert of RFC 6066 section 8, on both implementations. */
    TS_ASSERT_FAILED(p->server_rc, p->server_msg);
    TS_ASSERT_CONTAINS(p->server_msg, "bad_certificate_status_response");
}

/* Whether a case needs a response dated by OpenSSL's API rather than by the tool. */
static bool dated(const struct ocsp_case *c)
{
    return c->resp == RESP_EXPIRED || c->resp == RESP_NOT_YET;
}

/* The cases of the table that are (@p want_dated) or are not dated ones. */
static void run_table(void **state, const char *version, bool want_dated)
{
    /* Only registered where OpenSSL, the reference library that dates them, is built in. */
    assert_true(!want_dated || resp_made[RESP_EXPIRED]);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct ocsp_case *c = &cases[i];
        if (dated(c) != want_dated) {
            continue;
        }
        print_message("TLS %s: %s\n", version, c->what);
        run_case(state, i, c, version);
    }
}

static void test_table_tls12(void **state)
{
    run_table(state, "1.2-1.2", false);
}

static void test_table_tls13(void **state)
{
    run_table(state, "1.3", false);
}

#if TLSOCK_TEST_HAVE_OPENSSL
static void test_dates_tls12(void **state)
{
    run_table(state, "1.2-1.2", true);
}

static void test_dates_tls13(void **state)
{
    run_table(state, "1.3", true);
}
#endif

/* ---- both generators ------------------------------------------------------------------------ */

/* A handshake of a server presenting @p leaf and stapling the file @p staple (NULL: none). */
static void handshake_with(void **state, size_t index, const struct tlsock__pem_pair *leaf,
                           const char *staple)
{
    struct ts_pair *p = contexts(state, index, leaf, TLSOCK_OCSP_REQUEST);

    if (staple != NULL) {
        TS_ASSERT_RC_MSG(tlsock_ctx_set_ocsp_response_file(p->sctx, TS_WORKDIR_PATH(&wd, staple)),
                         0, tlsock_ctx_errmsg(p->sctx));
    }
    handshake(p);
}

/*
 * Each generator compiled in (the table uses one) makes must-staple leaves and OCSP responders
 * that both implementations read as such.
 */
static void test_generators(void **state)
{
    static const int impls[] = {TLSOCK_IMPL_OPENSSL, TLSOCK_IMPL_GNUTLS};
    int made = 0;

    for (size_t i = 0; i < sizeof(impls) / sizeof(impls[0]); i++) {
        const struct tlsock__impl *impl = tlsock__impl_get(impls[i]);
        if (impl == NULL) {
            continue;
        }
        struct tlsock__cert_spec spec = {
            .common_name = "generated must-staple",
            .hosts = TS_SERVER_HOSTS,
            .not_before_s = -3600,
            .not_after_s = 86400,
            .eku = TLSOCK__EKU_SERVER,
            .must_staple = true,
            .issuer_cert_pem = ts_pki.ca.cert,
            .issuer_key_pem = ts_pki.ca.key,
        };
        struct tlsock__pem_pair must = {0};
        struct tlsock__pem_pair responder = {0};
        struct tlsock__err err = {0};
        print_message("%s generator\n", impl->name);
        TS_ASSERT_RC_MSG(impl->cert_generate(&spec, &must, &err), 0, tlsock__err_msg(&err));
        spec.common_name = "generated responder";
        spec.hosts = NULL;
        spec.eku = TLSOCK__EKU_OCSP;
        spec.must_staple = false;
        TS_ASSERT_RC_MSG(impl->cert_generate(&spec, &responder, &err), 0, tlsock__err_msg(&err));
        tlsock__err_free(&err);

        handshake_with(state, 2 * i, &must, NULL);
        struct ts_pair *p = *state;
        TS_ASSERT_RC_MSG(p->client_rc, TLSOCK_EVERIFY, p->client_msg);
        TS_ASSERT_CONTAINS(p->client_msg, "no stapled OCSP response, and the certificate requires "
                                          "one (depth 0: CN=generated must-staple");

        /* The server's own certificate, stapled by the generated responder. */
        assert_int_equal(write_text("gen-responder.pem", responder.cert), 0);
        assert_int_equal(write_text("gen-responder.key", responder.key), 0);
        assert_int_equal(ts_workdir_sh(&wd, "openssl ocsp -index index.txt -CA ca.pem "
                                            "-rsigner gen-responder.pem -rkey gen-responder.key "
                                            "-reqin good.req -respout gen.der -ndays 1 "
                                            ">/dev/null 2>&1"),
                         0);
        handshake_with(state, 2 * i + 1, &ts_pki.server, "gen.der");
        p = *state;
        TS_ASSERT_RC_MSG(p->client_rc, 0, p->client_msg);
        tlsock__pem_pair_free(&must);
        tlsock__pem_pair_free(&responder);
        made++;
    }
    assert_true(made > 0);
}

/* ---- settings -------------------------------------------------------------------------------- */

/* The staple and the mode survive a change of implementation (ts_role_impl's is set again). */
static void test_kept_by_set_impl(void **state)
{
    struct ts_pair *p = contexts(state, 0, &certs[CERT_REVOKED], TLSOCK_OCSP_REQUIRE);

    set_staple(p->sctx, RESP_REVOKED, false);
    for (int i = 0; i < 2; i++) {
        int role = i == 0 ? TLSOCK_SERVER : TLSOCK_CLIENT;
        struct tlsock_ctx *ctx = i == 0 ? p->sctx : p->cctx;
        int other =
            tlsock_ctx_impl(ctx) == TLSOCK_IMPL_OPENSSL ? TLSOCK_IMPL_GNUTLS : TLSOCK_IMPL_OPENSSL;
        if (tlsock_impl_available(other)) {
            TS_ASSERT_RC(tlsock_ctx_set_impl(ctx, other), 0);
        }
        TS_ASSERT_RC(tlsock_ctx_set_impl(ctx, ts_role_impl(role)), 0);
    }
    handshake(p);
    TS_ASSERT_RC_MSG(p->client_rc, TLSOCK_EVERIFY, p->client_msg);
    TS_ASSERT_CONTAINS(p->client_msg, "certificate revoked (stapled OCSP response)");
}

/* A later call replaces the staple (a reload reads the file again); length 0 removes it. */
static void test_replaced(void **state)
{
    struct ts_pair *p = contexts(state, 0, &ts_pki.server, TLSOCK_OCSP_REQUIRE);

    set_staple(p->sctx, RESP_FOREIGN, true);
    set_staple(p->sctx, RESP_GOOD, true);
    handshake(p);
    TS_ASSERT_RC_MSG(p->client_rc, 0, p->client_msg);
    TS_ASSERT_RC_MSG(p->server_rc, 0, p->server_msg);

    p = contexts(state, 1, &ts_pki.server, TLSOCK_OCSP_REQUIRE);
    set_staple(p->sctx, RESP_GOOD, true);
    TS_ASSERT_RC(tlsock_ctx_set_ocsp_response_mem(p->sctx, NULL, 0), 0);
    handshake(p);
    TS_ASSERT_RC_MSG(p->client_rc, TLSOCK_EVERIFY, p->client_msg);
    TS_ASSERT_CONTAINS(p->client_msg, "no stapled OCSP response, and one is required");
}

/* An SNI callback that presents the certificate at index *user. */
static int present(const char *servername, void *user)
{
    (void)servername;
    return *(const int *)user;
}

/*
 * With several certificates the response is the first one's: a client given the second gets no
 * staple (a client requiring one says so), never the first certificate's response.
 */
static void test_several_certificates(void **state)
{
    for (int index = 0; index < 2; index++) {
        struct ts_pair *p = contexts(state, (size_t)index, &ts_pki.server, TLSOCK_OCSP_REQUIRE);

        TS_ASSERT_RC_MSG(tlsock_ctx_add_cert_mem(
                             p->sctx, certs[CERT_REVOKED].cert, strlen(certs[CERT_REVOKED].cert),
                             certs[CERT_REVOKED].key, strlen(certs[CERT_REVOKED].key)),
                         0, tlsock_ctx_errmsg(p->sctx));
        TS_ASSERT_RC(tlsock_ctx_set_sni_callback(p->sctx, present, &index), 0);
        set_staple(p->sctx, RESP_GOOD, true);
        handshake(p);
        if (index == 0) {
            TS_ASSERT_RC_MSG(p->client_rc, 0, p->client_msg);
        } else {
            TS_ASSERT_RC_MSG(p->client_rc, TLSOCK_EVERIFY, p->client_msg);
            TS_ASSERT_CONTAINS(p->client_msg, "no stapled OCSP response, and one is required");
        }
    }
}

/* An OCSP mode on a client that does not verify would protect nothing: refused. */
static void test_mode_needs_verification(void **state)
{
    struct ts_pair *p = *state;
    struct tlsock_opts copts = ts_opts();
    struct tlsock_conn *conn = NULL;

    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &p->cctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_verify(p->cctx, TLSOCK_VERIFY_NONE), 0);
    TS_ASSERT_RC(tlsock_ctx_set_ocsp_mode(p->cctx, TLSOCK_OCSP_REQUEST), 0);
    TS_ASSERT_RC(tlsock_attach_mem(p->cctx, &copts, &conn), TLSOCK_ECONFIG);
    TS_ASSERT_CONTAINS(tlsock_errmsg(), "an OCSP mode is set but the context does not verify");
}

static void test_setters(void **state)
{
    struct tlsock_ctx *server = NULL;
    struct tlsock_ctx *client = NULL;
    char path[TS_WORKDIR_PATH_MAX];
    unsigned char *der = NULL;
    size_t len = 0;

    (void)state;
    TS_ASSERT_RC(ts_ctx_new(TLSOCK_SERVER, &server), 0);
    TS_ASSERT_RC(ts_ctx_new(TLSOCK_CLIENT, &client), 0);
    /* Each side has its own half. */
    TS_ASSERT_RC(tlsock_ctx_set_ocsp_mode(server, TLSOCK_OCSP_REQUIRE), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_set_ocsp_response_mem(client, "0", 1), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_set_ocsp_mode(client, 3), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_set_ocsp_mode(client, -1), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_set_ocsp_mode(client, TLSOCK_OCSP_OFF), 0);
    /* Not an OCSP response: refused when set, not when a client would refuse it. */
    TS_ASSERT_RC(tlsock_ctx_set_ocsp_response_mem(server, "not DER", 7), TLSOCK_ECONFIG);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(server), "not a DER OCSP response");
    TS_ASSERT_RC(tlsock_ctx_set_ocsp_response_mem(server, NULL, 5), TLSOCK_EINVAL);
    ts_workdir_path(&wd, "ca.pem", path, sizeof(path));
    TS_ASSERT_RC(tlsock_ctx_set_ocsp_response_file(server, path), TLSOCK_ECONFIG);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(server), path);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(server), "not a DER OCSP response");
    ts_workdir_path(&wd, "no-such.der", path, sizeof(path));
    TS_ASSERT_RC(tlsock_ctx_set_ocsp_response_file(server, path), TLSOCK_ECONFIG);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(server), path);
    TS_ASSERT_RC(tlsock_ctx_set_ocsp_response_file(server, NULL), TLSOCK_EINVAL);
    /* A truncated response is not one either; the whole one is. */
    assert_int_equal(ts_workdir_read(&wd, "good.der", &der, &len), 0);
    TS_ASSERT_RC(tlsock_ctx_set_ocsp_response_mem(server, der, len - 1), TLSOCK_ECONFIG);
    TS_ASSERT_RC(tlsock_ctx_set_ocsp_response_mem(server, der, len), 0);
    tlsock_ctx_free(server);

    /* Frozen: both setters refuse. */
    struct tlsock_conn *conn = NULL;
    struct tlsock_opts opts = ts_opts();
    opts.verify_name = TS_PAIR_NAME;
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &server), 0);
    TS_ASSERT_RC(tlsock_attach_mem(server, &opts, &conn), 0);
    TS_ASSERT_RC(tlsock_ctx_set_ocsp_response_mem(server, der, len), TLSOCK_EINVAL);
    tlsock_close(conn);
    conn = NULL;
    TS_ASSERT_RC(tlsock_attach_mem(client, &opts, &conn), 0);
    TS_ASSERT_RC(tlsock_ctx_set_ocsp_mode(client, TLSOCK_OCSP_REQUEST), TLSOCK_EINVAL);
    tlsock_close(conn);
    free(der);
    tlsock_ctx_free(server);
    tlsock_ctx_free(client);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_table_tls12, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_table_tls13, ts_pair_setup, ts_pair_teardown),
#if TLSOCK_TEST_HAVE_OPENSSL /* the expired and not yet valid responses need OpenSSL's API */
        cmocka_unit_test_setup_teardown(test_dates_tls12, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_dates_tls13, ts_pair_setup, ts_pair_teardown),
#endif
        cmocka_unit_test_setup_teardown(test_generators, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_kept_by_set_impl, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_replaced, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_several_certificates, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_mode_needs_verification, ts_pair_setup,
                                        ts_pair_teardown),
        cmocka_unit_test(test_setters),
    };

    return cmocka_run_group_tests_name("ocsp", tests, make_all, free_all);
}
