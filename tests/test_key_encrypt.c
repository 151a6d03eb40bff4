/*
 * Key encryption for storage (impl.h's key_encrypt, tlsock_key_encrypt()): each implementation
 * compiled in encrypts keys of each generator, and every implementation loads the result with
 * the passphrase and refuses it with a wrong one or none. No handshake: the loads are the
 * contexts' own (tlsock_ctx_set_cert_mem after tlsock_ctx_set_key_passphrase), which check that
 * the key matches its certificate.
 */
#include "support.h"

#include <string.h>

#define PASS       "correct horse battery staple"
#define WRONG_PASS "correct horse battery stapler"
#define ENC_HEADER "-----BEGIN ENCRYPTED PRIVATE KEY-----"

static const int impls[] = {TLSOCK_IMPL_OPENSSL, TLSOCK_IMPL_GNUTLS};
#define IMPL_COUNT (sizeof(impls) / sizeof(impls[0]))

static const char *const key_types[] = {"ec-p256", "rsa-2048"};
#define KEY_TYPE_COUNT (sizeof(key_types) / sizeof(key_types[0]))

/* DER object identifiers: id-aes256-CBC (2.16.840.1.101.3.4.1.42), hmacWithSHA256. */
static const unsigned char oid_aes256_cbc[] = {0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                               0x65, 0x03, 0x04, 0x01, 0x2a};
static const unsigned char oid_hmac_sha256[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                                0x86, 0xf7, 0x0d, 0x02, 0x09};

/* The DER inside the PEM block @p pem: its base64 lines decoded into @p der. */
static size_t pem_to_der(const char *pem, unsigned char *der, size_t size)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *p = strchr(pem, '\n');
    unsigned long acc = 0;
    int bits = 0;
    size_t len = 0;

    assert_non_null(p);
    for (p++; *p != '\0' && *p != '-'; p++) {
        const char *at = *p == '\n' || *p == '=' ? NULL : strchr(b64, *p);
        if (at == NULL) {
            continue;
        }
        acc = (acc << 6) | (unsigned long)(at - b64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            assert_true(len < size);
            der[len++] = (unsigned char)(acc >> bits);
        }
    }
    return len;
}

/* PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC, whoever encrypted it. */
static void assert_aes256(const char *enc_key)
{
    unsigned char der[4096];
    size_t len = pem_to_der(enc_key, der, sizeof(der));

    assert_non_null(memmem(der, len, oid_aes256_cbc, sizeof(oid_aes256_cbc)));
    assert_non_null(memmem(der, len, oid_hmac_sha256, sizeof(oid_hmac_sha256)));
}

/* A self-signed certificate and its unencrypted key, made by @p gen. */
static void make_pair(const struct tlsock__impl *gen, const char *key_type,
                      struct tlsock__pem_pair *out)
{
    const struct tlsock__cert_spec spec = {
        .common_name = "key encryption test",
        .hosts = "localhost",
        .key_type = key_type,
        .not_before_s = -3600,
        .not_after_s = 86400,
        .eku = TLSOCK__EKU_SERVER,
    };
    struct tlsock__err err = {0};

    assert_int_equal(gen->cert_generate(&spec, out, &err), 0);
    tlsock__err_free(&err);
    assert_non_null(strstr(out->key, "-----BEGIN PRIVATE KEY-----"));
}

/* Loads @p cert with @p key on a server context of @p impl, after @p pass unless NULL. */
static int load(int impl, const char *cert, const char *key, const char *pass, char *msg,
                size_t msg_size)
{
    struct tlsock_ctx *ctx = NULL;
    int rc = 0;

    assert_int_equal(tlsock_ctx_new(TLSOCK_SERVER, &ctx), 0);
    assert_int_equal(tlsock_ctx_set_impl(ctx, impl), 0);
    if (pass != NULL) {
        assert_int_equal(tlsock_ctx_set_key_passphrase(ctx, pass), 0);
    }
    rc = tlsock_ctx_set_cert_mem(ctx, cert, strlen(cert), key, strlen(key));
    snprintf(msg, msg_size, "%s", tlsock_ctx_errmsg(ctx));
    tlsock_ctx_free(ctx);
    return rc;
}

/* Every encrypter's output, from every generator's keys, loads on every implementation. */
static void test_encrypted_key_loads_everywhere(void **state)
{
    char msg[512];
    int encrypters = 0;

    (void)state;
    for (size_t e = 0; e < IMPL_COUNT; e++) {
        const struct tlsock__impl *enc = tlsock__impl_get(impls[e]);
        if (enc == NULL) {
            continue;
        }
        assert_non_null(enc->key_encrypt);
        encrypters++;
        for (size_t g = 0; g < IMPL_COUNT; g++) {
            const struct tlsock__impl *gen = tlsock__impl_get(impls[g]);
            for (size_t k = 0; gen != NULL && k < KEY_TYPE_COUNT; k++) {
                struct tlsock__pem_pair pair = {0};
                struct tlsock__err err = {0};
                char *enc_key = NULL;

                make_pair(gen, key_types[k], &pair);
                assert_int_equal(enc->key_encrypt(pair.key, strlen(pair.key), PASS, &enc_key, &err),
                                 0);
                tlsock__err_free(&err);
                assert_non_null(strstr(enc_key, ENC_HEADER));
                assert_null(strstr(enc_key, "-----BEGIN PRIVATE KEY-----"));
                assert_aes256(enc_key);
                for (size_t l = 0; l < IMPL_COUNT; l++) {
                    if (tlsock__impl_get(impls[l]) == NULL) {
                        continue;
                    }
                    assert_int_equal(load(impls[l], pair.cert, enc_key, PASS, msg, sizeof(msg)), 0);
                    assert_int_equal(
                        load(impls[l], pair.cert, enc_key, WRONG_PASS, msg, sizeof(msg)),
                        TLSOCK_ECONFIG);
                    assert_non_null(strstr(msg, TLSOCK__MSG_WRONG_PASS));
                    assert_int_equal(load(impls[l], pair.cert, enc_key, NULL, msg, sizeof(msg)),
                                     TLSOCK_ECONFIG);
                    assert_non_null(strstr(msg, "no passphrase was set"));
                }
                tlsock_free(enc_key);
                tlsock__pem_pair_free(&pair);
            }
        }
    }
    assert_true(encrypters > 0);
}

/* What the encrypters refuse: no key, an already encrypted key, in the same way on both. */
static void test_encrypt_refusals(void **state)
{
    static const char not_a_key[] =
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";

    (void)state;
    for (size_t e = 0; e < IMPL_COUNT; e++) {
        const struct tlsock__impl *enc = tlsock__impl_get(impls[e]);
        struct tlsock__pem_pair pair = {0};
        struct tlsock__err err = {0};
        char *enc_key = NULL;
        char *twice = NULL;

        if (enc == NULL) {
            continue;
        }
        assert_int_equal(enc->key_encrypt(not_a_key, strlen(not_a_key), PASS, &twice, &err),
                         TLSOCK_ECONFIG);
        assert_null(twice);
        make_pair(enc, "ec-p256", &pair);
        assert_int_equal(enc->key_encrypt(pair.key, strlen(pair.key), PASS, &enc_key, &err), 0);
        /* Encrypted keys are never decrypted by asking anyone for a passphrase. */
        assert_int_equal(enc->key_encrypt(enc_key, strlen(enc_key), PASS, &twice, &err),
                         TLSOCK_ECONFIG);
        assert_null(twice);
        assert_non_null(strstr(tlsock__err_msg(&err), "key encryption: no unencrypted PEM key"));
        tlsock__err_free(&err);
        tlsock_free(enc_key);
        tlsock__pem_pair_free(&pair);
    }
}

/* The public function: the devcert key round trip, and its argument checks. */
static void test_public_key_encrypt(void **state)
{
    char long_pass[TLSOCK_PASSPHRASE_MAX + 2];
    char *ca = NULL;
    char *cert = NULL;
    char *key = NULL;
    char *enc_key = NULL;
    char msg[512];

    (void)state;
    assert_int_equal(tlsock_devcert_new("localhost", &ca, &cert, &key), 0);
    assert_int_equal(tlsock_key_encrypt(key, strlen(key), PASS, &enc_key), 0);
    assert_non_null(strstr(enc_key, ENC_HEADER));
    for (size_t l = 0; l < IMPL_COUNT; l++) {
        if (tlsock__impl_get(impls[l]) != NULL) {
            assert_int_equal(load(impls[l], cert, enc_key, PASS, msg, sizeof(msg)), 0);
            assert_int_equal(load(impls[l], cert, enc_key, WRONG_PASS, msg, sizeof(msg)),
                             TLSOCK_ECONFIG);
        }
    }
    tlsock_free(enc_key);
    enc_key = NULL;

    memset(long_pass, 'p', sizeof(long_pass) - 1);
    long_pass[sizeof(long_pass) - 1] = '\0';
    assert_int_equal(tlsock_key_encrypt(key, strlen(key), "", &enc_key), TLSOCK_EINVAL);
    assert_non_null(strstr(tlsock_errmsg(), "passphrase must have 1 to"));
    assert_int_equal(tlsock_key_encrypt(key, strlen(key), long_pass, &enc_key), TLSOCK_EINVAL);
    assert_int_equal(tlsock_key_encrypt(NULL, 0, PASS, &enc_key), TLSOCK_EINVAL);
    assert_int_equal(tlsock_key_encrypt(key, strlen(key), NULL, &enc_key), TLSOCK_EINVAL);
    assert_int_equal(tlsock_key_encrypt(key, strlen(key), PASS, NULL), TLSOCK_EINVAL);
    assert_int_equal(tlsock_key_encrypt(cert, strlen(cert), PASS, &enc_key), TLSOCK_ECONFIG);
    assert_non_null(strstr(tlsock_errmsg(), "no unencrypted PEM key"));
    assert_null(enc_key);
    tlsock_free(key);
    tlsock_free(cert);
    tlsock_free(ca);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encrypted_key_loads_everywhere),
        cmocka_unit_test(test_encrypt_refusals),
        cmocka_unit_test(test_public_key_encrypt),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
