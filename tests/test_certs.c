/*
 * Unit tests: development certificates and fingerprints, checked against a TLS library used
 * directly: OpenSSL when it is compiled in, else GnuTLS (tests/CMakeLists.txt links the one).
 */
#include "support.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <string.h>

#if TLSOCK_TEST_HAVE_OPENSSL
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#else
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#endif

#if TLSOCK_TEST_HAVE_OPENSSL
/* The reference: SHA-256 over the DER of the first certificate, formatted "AB:CD:...". */
static void reference_fingerprint(const char *pem, char out[TLSOCK_FINGERPRINT_SIZE])
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;

    out[0] = '\0';
    if (x != NULL && X509_digest(x, EVP_sha256(), md, &len) == 1 && len == 32) {
        for (unsigned int i = 0; i < len; i++) {
            snprintf(out + 3 * i, 4, i + 1 < len ? "%02X:" : "%02X", md[i]);
        }
    }
    X509_free(x);
    BIO_free(bio);
}

/* True when the certificate in @p pem has a subjectAltName entry equal to @p name. */
static bool has_san(const char *pem, const char *name)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    bool found = false;

    if (x != NULL) {
        found = X509_check_host(x, name, 0, 0, NULL) == 1 || X509_check_ip_asc(x, name, 0) == 1;
    }
    X509_free(x);
    BIO_free(bio);
    return found;
}

/* True when @p child is signed by @p issuer. */
static bool signed_by(const char *child, const char *issuer)
{
    BIO *b1 = BIO_new_mem_buf(child, -1);
    BIO *b2 = BIO_new_mem_buf(issuer, -1);
    X509 *c = b1 != NULL ? PEM_read_bio_X509(b1, NULL, NULL, NULL) : NULL;
    X509 *i = b2 != NULL ? PEM_read_bio_X509(b2, NULL, NULL, NULL) : NULL;
    EVP_PKEY *key = i != NULL ? X509_get0_pubkey(i) : NULL;
    bool ok = c != NULL && key != NULL && X509_verify(c, key) == 1;

    X509_free(c);
    X509_free(i);
    BIO_free(b1);
    BIO_free(b2);
    return ok;
}
#else
/* The first certificate of @p pem, or NULL. */
static gnutls_x509_crt_t read_crt(const char *pem)
{
    gnutls_datum_t data = {.data = (unsigned char *)pem, .size = (unsigned)strlen(pem)};
    gnutls_x509_crt_t crt = NULL;

    if (gnutls_x509_crt_init(&crt) < 0) {
        return NULL;
    }
    if (gnutls_x509_crt_import(crt, &data, GNUTLS_X509_FMT_PEM) < 0) {
        gnutls_x509_crt_deinit(crt);
        crt = NULL;
    }
    return crt;
}

static void reference_fingerprint(const char *pem, char out[TLSOCK_FINGERPRINT_SIZE])
{
    gnutls_x509_crt_t x = read_crt(pem);
    unsigned char md[32];
    size_t len = sizeof(md);

    out[0] = '\0';
    if (x != NULL && gnutls_x509_crt_get_fingerprint(x, GNUTLS_DIG_SHA256, md, &len) == 0 &&
        len == 32) {
        for (size_t i = 0; i < len; i++) {
            snprintf(out + 3 * i, 4, i + 1 < len ? "%02X:" : "%02X", md[i]);
        }
    }
    gnutls_x509_crt_deinit(x);
}

static bool has_san(const char *pem, const char *name)
{
    gnutls_x509_crt_t x = read_crt(pem);
    unsigned char ip[16];
    bool found = false;

    if (x != NULL) {
        if (inet_pton(AF_INET, name, ip) == 1) {
            found = gnutls_x509_crt_check_ip(x, ip, 4, 0) != 0;
        } else if (inet_pton(AF_INET6, name, ip) == 1) {
            found = gnutls_x509_crt_check_ip(x, ip, 16, 0) != 0;
        } else {
            found = gnutls_x509_crt_check_hostname2(x, name, 0) != 0;
        }
    }
    gnutls_x509_crt_deinit(x);
    return found;
}

static bool signed_by(const char *child, const char *issuer)
{
    gnutls_x509_crt_t c = read_crt(child);
    gnutls_x509_crt_t i = read_crt(issuer);
    unsigned status = 1;
    bool ok =
        c != NULL && i != NULL && gnutls_x509_crt_verify(c, &i, 1, 0, &status) == 0 && status == 0;

    gnutls_x509_crt_deinit(c);
    gnutls_x509_crt_deinit(i);
    return ok;
}
#endif

static void test_fingerprint_format_and_value(void **state)
{
    const char *pems[] = {ts_pki.ca.cert, ts_pki.server.cert, ts_pki.client.cert};
    char fp[TLSOCK_FINGERPRINT_SIZE];

    (void)state;
    for (size_t n = 0; n < sizeof(pems) / sizeof(pems[0]); n++) {
        memset(fp, 'z', sizeof(fp));
        TS_ASSERT_RC(tlsock_cert_fingerprint(pems[n], strlen(pems[n]), fp), 0);
        assert_int_equal(strlen(fp), TLSOCK_FINGERPRINT_SIZE - 1);
        for (size_t i = 0; i < TLSOCK_FINGERPRINT_SIZE - 1; i++) {
            if (i % 3 == 2) {
                assert_int_equal(fp[i], ':');
            } else {
                assert_true(isxdigit((unsigned char)fp[i]) && !islower((unsigned char)fp[i]));
            }
        }
        char expected[TLSOCK_FINGERPRINT_SIZE];
        reference_fingerprint(pems[n], expected);
        assert_string_equal(fp, expected);
    }
}

static void test_fingerprint_of_first_certificate(void **state)
{
    char chain[8192];
    char fp_chain[TLSOCK_FINGERPRINT_SIZE];
    char fp_leaf[TLSOCK_FINGERPRINT_SIZE];
    char fp_ca[TLSOCK_FINGERPRINT_SIZE];

    (void)state;
    /* A chain file: the fingerprint is the first certificate's. */
    assert_true(strlen(ts_pki.server.cert) + strlen(ts_pki.ca.cert) < sizeof(chain));
    snprintf(chain, sizeof(chain), "%s%s", ts_pki.server.cert, ts_pki.ca.cert);
    TS_ASSERT_RC(tlsock_cert_fingerprint(chain, strlen(chain), fp_chain), 0);
    TS_ASSERT_RC(tlsock_cert_fingerprint(ts_pki.server.cert, strlen(ts_pki.server.cert), fp_leaf),
                 0);
    TS_ASSERT_RC(tlsock_cert_fingerprint(ts_pki.ca.cert, strlen(ts_pki.ca.cert), fp_ca), 0);
    assert_string_equal(fp_chain, fp_leaf);
    assert_string_not_equal(fp_leaf, fp_ca);
}

static void test_fingerprint_rejects_garbage(void **state)
{
    static const char garbage[] = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    char fp[TLSOCK_FINGERPRINT_SIZE];
    const char *pem = ts_pki.server.cert;

    (void)state;
    assert_true(tlsock_cert_fingerprint(garbage, strlen(garbage), fp) < 0);
    assert_true(tlsock_cert_fingerprint("", 0, fp) < 0);
    /* Only len bytes may be read: half a certificate is not a certificate. */
    assert_true(tlsock_cert_fingerprint(pem, strlen(pem) / 2, fp) < 0);
    assert_true(strlen(tlsock_errmsg()) > 0);
}

static void test_devcert(void **state)
{
    char *ca = NULL;
    char *cert = NULL;
    char *key = NULL;

    (void)state;
    TS_ASSERT_RC(tlsock_devcert_new("localhost,127.0.0.1,::1,example.test", &ca, &cert, &key), 0);
    assert_non_null(ca);
    assert_non_null(cert);
    assert_non_null(key);
    assert_non_null(strstr(ca, "-----BEGIN CERTIFICATE-----"));
    assert_non_null(strstr(cert, "-----BEGIN CERTIFICATE-----"));
    /* The header promises unencrypted PKCS#8. */
    assert_non_null(strstr(key, "-----BEGIN PRIVATE KEY-----"));
    assert_string_not_equal(ca, cert);
    assert_true(signed_by(cert, ca));
    assert_true(has_san(cert, "localhost"));
    assert_true(has_san(cert, "example.test"));
    assert_true(has_san(cert, "127.0.0.1"));
    assert_true(has_san(cert, "::1"));
    assert_false(has_san(cert, "other.test"));
    /* The pair must be usable as a server identity (the key matches the certificate). */
    {
        struct tlsock_ctx *ctx = NULL;

        TS_ASSERT_RC(tlsock_ctx_new(TLSOCK_SERVER, &ctx), 0);
        TS_ASSERT_RC_MSG(tlsock_ctx_set_cert_mem(ctx, cert, strlen(cert), key, strlen(key)), 0,
                         tlsock_ctx_errmsg(ctx));
        tlsock_ctx_free(ctx);
    }
    tlsock_free(ca);
    tlsock_free(cert);
    tlsock_free(key);
}

static void test_devcert_bad_hosts(void **state)
{
    char *ca = NULL;
    char *cert = NULL;
    char *key = NULL;

    (void)state;
    TS_ASSERT_RC(tlsock_devcert_new(NULL, &ca, &cert, &key), TLSOCK_EINVAL);
    assert_null(ca);
    TS_ASSERT_RC(tlsock_devcert_new("", &ca, &cert, &key), TLSOCK_EINVAL);
    assert_null(cert);
    assert_null(key);
}

/* The generator the other tests rely on: sanity of the shared fixtures themselves. */
static void test_fixtures(void **state)
{
    (void)state;
    assert_true(signed_by(ts_pki.server.cert, ts_pki.ca.cert));
    assert_true(signed_by(ts_pki.client.cert, ts_pki.ca.cert));
    assert_false(signed_by(ts_pki.server.cert, ts_pki.other_ca.cert));
    assert_true(has_san(ts_pki.server.cert, "localhost"));
    assert_true(has_san(ts_pki.server.cert, "::1"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fingerprint_format_and_value),
        cmocka_unit_test(test_fingerprint_of_first_certificate),
        cmocka_unit_test(test_fingerprint_rejects_garbage),
        cmocka_unit_test(test_devcert),
        cmocka_unit_test(test_devcert_bad_hosts),
        cmocka_unit_test(test_fixtures),
    };

    return cmocka_run_group_tests_name("certs", tests, ts_pki_setup, ts_pki_teardown);
}
