/*
 * Peer and session facts (issue 11.6) over the in-memory pair, across the implementation matrix:
 * the leaf's subject, issuer, serial, dates and SPKI digest and the chain (DER and PEM) compared
 * with what the reference library (OpenSSL, used directly) reads from the generated certificates;
 * the client's identity on a server after mutual TLS; the group and the peer's signature
 * algorithm; the keying material exporter (equal on both ends, so across implementations on the
 * mixed pairs) and the tls-exporter channel binding, refused on TLS 1.2 without EMS.
 */
#include "pair.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#if TLSOCK_TEST_HAVE_GNUTLS
#include <gnutls/gnutls.h>
#endif

static struct tlsock__pem_pair inter;      /* an intermediate CA under ts_pki.ca */
static struct tlsock__pem_pair inter_leaf; /* a server under it */
static struct tlsock__pem_pair rsa_leaf;   /* an RSA-2048 server under ts_pki.ca */
static time_t made_at;

static int make_certs(void **state)
{
    struct tlsock__cert_spec ca = {.common_name = "facts intermediate",
                                   .is_ca = true,
                                   .not_before_s = -3600,
                                   .not_after_s = 30 * 86400};
    struct tlsock__cert_spec leaf = {.common_name = "facts-leaf",
                                     .hosts = TS_SERVER_HOSTS,
                                     .not_before_s = -3600,
                                     .not_after_s = 10 * 86400,
                                     .eku = TLSOCK__EKU_SERVER};
    struct tlsock__cert_spec rsa = leaf;
    int rc = ts_pki_setup(state);

    made_at = time(NULL);
    ca.issuer_cert_pem = ts_pki.ca.cert;
    ca.issuer_key_pem = ts_pki.ca.key;
    rsa.common_name = "facts-rsa";
    rsa.key_type = "rsa-2048";
    rsa.issuer_cert_pem = ts_pki.ca.cert;
    rsa.issuer_key_pem = ts_pki.ca.key;
    if (rc == 0) {
        rc = ts_cert_make(&ca, &inter);
    }
    if (rc == 0) {
        leaf.issuer_cert_pem = inter.cert;
        leaf.issuer_key_pem = inter.key;
        rc = ts_cert_make(&leaf, &inter_leaf);
    }
    if (rc == 0) {
        rc = ts_cert_make(&rsa, &rsa_leaf);
    }
    return rc == 0 ? 0 : -1;
}

static int free_certs(void **state)
{
    tlsock__pem_pair_free(&inter);
    tlsock__pem_pair_free(&inter_leaf);
    tlsock__pem_pair_free(&rsa_leaf);
    return ts_pki_teardown(state);
}

/* ---- the reference: OpenSSL reads the generated PEM ------------------------------------------ */

struct ref {
    char subject[512];
    char issuer[512];
    char serial[128];
    int64_t not_before;
    int64_t not_after;
    char spki[96];
    unsigned char der[8192];
    size_t der_len;
    char pem[12288];
};

static int64_t epoch_seconds(const ASN1_TIME *t)
{
    ASN1_TIME *epoch = ASN1_TIME_set(NULL, 0);
    int days = 0;
    int secs = 0;

    assert_int_equal(ASN1_TIME_diff(&days, &secs, epoch, t), 1);
    ASN1_TIME_free(epoch);
    return (int64_t)days * 86400 + secs;
}

static void name_text(const X509_NAME *name, char *out, size_t size)
{
    BIO *mem = BIO_new(BIO_s_mem());
    X509_NAME_print_ex(mem, name, 0, XN_FLAG_RFC2253);
    int n = BIO_read(mem, out, (int)size - 1);
    out[n > 0 ? n : 0] = '\0';
    BIO_free(mem);
}

static void ref_of(const char *pem, struct ref *r)
{
    BIO *in = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(in, NULL, NULL, NULL);
    unsigned char *p = r->der;
    unsigned char *spki = NULL;
    unsigned char md[32];
    unsigned int md_len = 0;

    assert_non_null(x);
    name_text(X509_get_subject_name(x), r->subject, sizeof(r->subject));
    name_text(X509_get_issuer_name(x), r->issuer, sizeof(r->issuer));
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = BN_bn2hex(bn);
    snprintf(r->serial, sizeof(r->serial), "%s", hex);
    OPENSSL_free(hex);
    BN_free(bn);
    r->not_before = epoch_seconds(X509_get0_notBefore(x));
    r->not_after = epoch_seconds(X509_get0_notAfter(x));
    int spki_len = i2d_PUBKEY(X509_get0_pubkey(x), &spki);
    assert_true(spki_len > 0);
    assert_int_equal(EVP_Digest(spki, (size_t)spki_len, md, &md_len, EVP_sha256(), NULL), 1);
    for (size_t i = 0; i < 32; i++) {
        snprintf(r->spki + 3 * i, 4, i + 1 < 32 ? "%02X:" : "%02X", md[i]);
    }
    OPENSSL_free(spki);
    int len = i2d_X509(x, NULL);
    assert_true(len > 0 && (size_t)len <= sizeof(r->der));
    r->der_len = (size_t)i2d_X509(x, &p);
    BIO *out = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_X509(out, x), 1);
    char *data = NULL;
    long n = BIO_get_mem_data(out, &data);
    assert_true(n > 0 && (size_t)n < sizeof(r->pem));
    memcpy(r->pem, data, (size_t)n);
    r->pem[n] = '\0';
    BIO_free(out);
    X509_free(x);
    BIO_free(in);
}

/* Every fact of the leaf @p info describes, against the reference reading of @p pem. */
static void check_leaf(struct tlsock_conn *conn, const char *pem, int64_t days)
{
    static struct ref r;
    const struct tlsock_info *info = NULL;
    const unsigned char *der = NULL;
    const char *text = NULL;
    size_t len = 0;

    ref_of(pem, &r);
    TS_ASSERT_RC_MSG(tlsock_conn_info(conn, &info), 0, tlsock_conn_errmsg(conn));
    assert_string_equal(info->peer_subject, r.subject);
    assert_string_equal(info->peer_issuer, r.issuer);
    assert_string_equal(info->peer_serial, r.serial);
    assert_int_equal(info->peer_not_before, r.not_before);
    assert_int_equal(info->peer_not_after, r.not_after);
    /* And what the generator was asked for: from an hour ago, for @p days. */
    assert_true(llabs((long long)(info->peer_not_before - ((int64_t)made_at - 3600))) < 300);
    assert_true(llabs((long long)(info->peer_not_after - ((int64_t)made_at + days * 86400))) < 300);
    assert_string_equal(info->peer_spki_sha256, r.spki);
    assert_true(info->peer_verified);
    TS_ASSERT_RC(tlsock_conn_peer_cert_der(conn, 0, &der, &len), 0);
    assert_int_equal(len, r.der_len);
    assert_memory_equal(der, r.der, len);
    TS_ASSERT_RC(tlsock_conn_peer_cert_pem(conn, 0, &text, &len), 0);
    assert_string_equal(text, r.pem);
    assert_int_equal(len, strlen(r.pem));
}

/* ---- the pair ----------------------------------------------------------------------------------
 */

static void server_ctx(struct ts_pair *p, const struct tlsock__pem_pair *leaf, const char *chain)
{
    char pem[16384];

    snprintf(pem, sizeof(pem), "%s%s", leaf->cert, chain != NULL ? chain : "");
    TS_ASSERT_RC(ts_ctx_new(TLSOCK_SERVER, &p->sctx), 0);
    TS_ASSERT_RC_MSG(
        tlsock_ctx_set_cert_mem(p->sctx, pem, strlen(pem), leaf->key, strlen(leaf->key)), 0,
        tlsock_ctx_errmsg(p->sctx));
}

static void connect_pair(struct ts_pair *p)
{
    TS_ASSERT_RC(ts_pair_attach(p, NULL, NULL), 0);
    TS_ASSERT_RC_MSG(ts_pair_handshake(p), 0,
                     p->client_msg[0] != '\0' ? p->client_msg : p->server_msg);
}

/* Mutual TLS with a chain of two: every fact on both sides. */
static void test_mutual_facts(void **state)
{
    struct ts_pair *p = *state;
    const struct tlsock_info *ci = NULL;
    const struct tlsock_info *si = NULL;
    static struct ref r;
    const unsigned char *der = NULL;
    const char *pem = NULL;
    size_t len = 0;

    server_ctx(p, &inter_leaf, inter.cert);
    TS_ASSERT_RC(tlsock_ctx_set_ca_mem(p->sctx, ts_pki.ca.cert, strlen(ts_pki.ca.cert)), 0);
    TS_ASSERT_RC(tlsock_ctx_set_verify(p->sctx, TLSOCK_VERIFY_REQUIRED), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &p->cctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_cert_mem(p->cctx, ts_pki.client.cert, strlen(ts_pki.client.cert),
                                         ts_pki.client.key, strlen(ts_pki.client.key)),
                 0);
    connect_pair(p);

    check_leaf(p->client, inter_leaf.cert, 10);
    TS_ASSERT_RC(tlsock_conn_info(p->client, &ci), 0);
    assert_int_equal(ci->peer_chain_len, 2);
    ref_of(inter.cert, &r);
    TS_ASSERT_RC(tlsock_conn_peer_cert_der(p->client, 1, &der, &len), 0);
    assert_int_equal(len, r.der_len);
    assert_memory_equal(der, r.der, len);
    TS_ASSERT_RC(tlsock_conn_peer_cert_pem(p->client, 1, &pem, &len), 0);
    assert_string_equal(pem, r.pem);
    TS_ASSERT_RC(tlsock_conn_peer_cert_der(p->client, 2, &der, &len), TLSOCK_EINVAL);
    TS_ASSERT_CONTAINS(tlsock_conn_errmsg(p->client), "sent 2 certificate");
    TS_ASSERT_RC(tlsock_conn_peer_cert_pem(p->client, 0, NULL, &len), TLSOCK_EINVAL);

    /* The server sees the client's identity. */
    check_leaf(p->server, ts_pki.client.cert, 30);
    TS_ASSERT_RC(tlsock_conn_info(p->server, &si), 0);
    /* The client's chain as it sent it: OpenSSL's adds the CA from its trust store. */
    assert_true(si->peer_chain_len >= 1);
    TS_ASSERT_CONTAINS(si->peer_subject, "CN=" TS_CLIENT_CN);

    /* ECDSA P-256 keys both ways; the implementations' first group. */
    assert_string_equal(ci->peer_sigalg, "ecdsa_secp256r1_sha256");
    assert_string_equal(si->peer_sigalg, "ecdsa_secp256r1_sha256");
    /* Each side names the group the other chose, in the same words. */
    assert_string_equal(ci->group, si->group);
    assert_true(strcmp(ci->group, "x25519") == 0 || strcmp(ci->group, "secp256r1") == 0);
    /* Memory mode has no socket. */
    assert_string_equal(ci->peer_addr, "");
}

/* A server that asks for no certificate knows no client: empty facts, no certificate. */
static void test_no_peer_cert(void **state)
{
    struct ts_pair *p = *state;
    const struct tlsock_info *si = NULL;
    const unsigned char *der = NULL;
    size_t len = 0;

    TS_ASSERT_RC(ts_pair_connect(p), 0);
    TS_ASSERT_RC(tlsock_conn_info(p->server, &si), 0);
    assert_int_equal(si->peer_chain_len, 0);
    assert_false(si->peer_verified);
    assert_string_equal(si->peer_issuer, "");
    assert_string_equal(si->peer_serial, "");
    assert_string_equal(si->peer_spki_sha256, "");
    assert_string_equal(si->peer_sigalg, "");
    assert_int_equal(si->peer_not_after, 0);
    TS_ASSERT_RC(tlsock_conn_peer_cert_der(p->server, 0, &der, &len), TLSOCK_EINVAL);
}

/* An RSA server signs with RSA-PSS in TLS 1.3; in TLS 1.2 as the server prefers. */
static void test_rsa_sigalg(void **state)
{
    static const char *const versions[] = {"1.3", "1.2-1.2"};

    for (size_t i = 0; i < 2; i++) {
        struct ts_pair *p;
        const struct tlsock_info *ci = NULL;

        ts_pair_renew(state, i);
        p = *state;
        server_ctx(p, &rsa_leaf, NULL);
        TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &p->cctx), 0);
        TS_ASSERT_RC(tlsock_ctx_set_protocols(p->cctx, versions[i]), 0);
        connect_pair(p);
        TS_ASSERT_RC(tlsock_conn_info(p->client, &ci), 0);
        print_message("TLS %s: %s %s\n", versions[i], ci->group, ci->peer_sigalg);
        /*
         * TLS 1.3 has only PSS for an RSA handshake signature (RFC 8446 4.2.3); in TLS 1.2 a
         * GnuTLS server follows the client's order, which puts PKCS#1 first on GnuTLS.
         */
        if (i == 0 || tlsock_ctx_impl(p->sctx) == TLSOCK_IMPL_OPENSSL ||
            tlsock_ctx_impl(p->cctx) == TLSOCK_IMPL_OPENSSL) {
            assert_string_equal(ci->peer_sigalg, "rsa_pss_rsae_sha256");
        } else {
            assert_string_equal(ci->peer_sigalg, "rsa_pkcs1_sha256");
        }
        assert_true(strcmp(ci->group, "x25519") == 0 || strcmp(ci->group, "secp256r1") == 0);
        check_leaf(p->client, rsa_leaf.cert, 10);
    }
}

/* ---- exporter and channel binding ------------------------------------------------------------ */

static void export_both(struct ts_pair *p, const char *label, const void *ctx, size_t ctx_len,
                        unsigned char out[64])
{
    unsigned char other[64];

    TS_ASSERT_RC_MSG(tlsock_conn_export_keying_material(p->client, label, ctx, ctx_len, out, 64), 0,
                     tlsock_conn_errmsg(p->client));
    TS_ASSERT_RC_MSG(tlsock_conn_export_keying_material(p->server, label, ctx, ctx_len, other, 64),
                     0, tlsock_conn_errmsg(p->server));
    assert_memory_equal(out, other, 64);
}

static void test_exporter(void **state)
{
    static const char *const versions[] = {"1.3", "1.2-1.2"};

    for (size_t i = 0; i < 2; i++) {
        unsigned char a[64];
        unsigned char b[64];
        unsigned char cb[TLSOCK_CHANNEL_BINDING_SIZE];
        struct ts_pair *p;

        ts_pair_renew(state, i);
        p = *state;
        TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &p->cctx), 0);
        TS_ASSERT_RC(tlsock_ctx_set_protocols(p->cctx, versions[i]), 0);
        TS_ASSERT_RC(ts_pair_connect(p), 0);
        print_message("TLS %s\n", versions[i]);

        export_both(p, "EXPERIMENTAL-tlsock", "abc", 3, a);
        export_both(p, "EXPERIMENTAL-tlsock2", "abc", 3, b);
        assert_memory_not_equal(a, b, 64);
        export_both(p, "EXPERIMENTAL-tlsock", "abd", 3, b);
        assert_memory_not_equal(a, b, 64);
        /* RFC 5705: no context and an empty one differ in TLS 1.2; RFC 8446 7.5: not in 1.3. */
        export_both(p, "EXPERIMENTAL-tlsock", NULL, 0, a);
        export_both(p, "EXPERIMENTAL-tlsock", "", 0, b);
        if (i == 0) {
            assert_memory_equal(a, b, 64);
        } else {
            assert_memory_not_equal(a, b, 64);
        }
        /* tls-exporter is the exporter with its label and an empty context (RFC 9266). */
        TS_ASSERT_RC_MSG(tlsock_conn_channel_binding(p->client, cb), 0,
                         tlsock_conn_errmsg(p->client));
        TS_ASSERT_RC(tlsock_conn_export_keying_material(p->server, "EXPORTER-Channel-Binding", "",
                                                        0, a, sizeof(cb)),
                     0);
        assert_memory_equal(cb, a, sizeof(cb));
        TS_ASSERT_RC(tlsock_conn_channel_binding(p->server, a), 0);
        assert_memory_equal(cb, a, sizeof(cb));

        TS_ASSERT_RC(tlsock_conn_export_keying_material(p->client, "", NULL, 0, a, 8),
                     TLSOCK_EINVAL);
        TS_ASSERT_RC(tlsock_conn_export_keying_material(p->client, "x", NULL, 0, a, 0),
                     TLSOCK_EINVAL);
        TS_ASSERT_RC(tlsock_conn_export_keying_material(p->client, "x", NULL, 3, a, 8),
                     TLSOCK_EINVAL);
    }
}

/* The client's own context offers no extended master secret (RFC 7627). */
static int no_ems_ctx(void *native, void *user)
{
    (void)user;
    if (tlsock_ctx_impl(user) == TLSOCK_IMPL_OPENSSL) {
        SSL_CTX_set_options(native, SSL_OP_NO_EXTENDED_MASTER_SECRET);
    }
    return 0;
}

static int no_ems_conn(void *native, void *user)
{
    (void)native;
#if TLSOCK_TEST_HAVE_GNUTLS
    if (tlsock_ctx_impl(user) == TLSOCK_IMPL_GNUTLS) {
        return gnutls_priority_set_direct(native, "NORMAL:-VERS-ALL:+VERS-TLS1.2:%NO_SESSION_HASH",
                                          NULL) == 0
                   ? 0
                   : TLSOCK_ECONFIG;
    }
#endif
    (void)user;
    return 0;
}

/* TLS 1.2 without the extended master secret: the exporter works, channel binding is refused. */
static void test_channel_binding_refused(void **state)
{
    struct ts_pair *p = *state;
    unsigned char a[64];
    unsigned char cb[TLSOCK_CHANNEL_BINDING_SIZE];

    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &p->cctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_protocols(p->cctx, "1.2-1.2"), 0);
    TS_ASSERT_RC(tlsock_ctx_set_configure(p->cctx, no_ems_ctx, no_ems_conn, p->cctx), 0);
    TS_ASSERT_RC(ts_pair_connect(p), 0);
    export_both(p, "EXPERIMENTAL-tlsock", NULL, 0, a);
    TS_ASSERT_RC(tlsock_conn_channel_binding(p->client, cb), TLSOCK_EINVAL);
    TS_ASSERT_CONTAINS(tlsock_conn_errmsg(p->client), "extended master secret");
    TS_ASSERT_RC(tlsock_conn_channel_binding(p->server, cb), TLSOCK_EINVAL);
    TS_ASSERT_CONTAINS(tlsock_conn_errmsg(p->server), "extended master secret");
    /* Not sticky: the connection goes on. */
    TS_ASSERT_RC(ts_pair_write(p, TS_C2S, "x", 1), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mutual_facts, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_no_peer_cert, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_rsa_sigalg, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_exporter, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_channel_binding_refused, ts_pair_setup,
                                        ts_pair_teardown),
    };

    return cmocka_run_group_tests_name("facts", tests, make_certs, free_certs);
}
