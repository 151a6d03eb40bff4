/*
 * GnuTLS: this side's certificate and key, from PEM or DER (the key possibly encrypted) or from
 * a PKCS#12 bundle, read into GnuTLS objects that gnutls_ctx.c puts into credentials.
 * Passphrases come from the core (tlsock__pass_get()), never from a PIN function the
 * application may have set for the whole process (which could prompt on a terminal).
 */
#include <string.h>

#include <gnutls/pkcs12.h>
#include <gnutls/x509.h>

#include "der.h"
#include "gnutls_int.h"

void tlsock__gtls_cert_free(struct gtls_cert *cert)
{
    for (unsigned i = 0; cert->chain != NULL && i < cert->count; i++) {
        gnutls_x509_crt_deinit(cert->chain[i]);
    }
    gnutls_free(cert->chain);
    if (cert->key != NULL) {
        gnutls_x509_privkey_deinit(cert->key);
    }
    memset(cert, 0, sizeof(*cert));
}

/* The code for a GnuTLS failure: TLSOCK_ENOMEM when it was one of memory. */
static int code_of(int ret)
{
    return ret == GNUTLS_E_MEMORY_ERROR ? TLSOCK_ENOMEM : TLSOCK_ECONFIG;
}

static gnutls_x509_crt_fmt_t format_of(const char *data, size_t len)
{
    return tlsock__is_pem(data, len) ? GNUTLS_X509_FMT_PEM : GNUTLS_X509_FMT_DER;
}

/* What the key's PIN function needs. */
struct pin_arg {
    struct tlsock__pass *pass;
    struct tlsock__err *err;
};

/*
 * The key's PIN function, which GnuTLS calls for an encrypted key imported without a password.
 * It asks the core for the passphrase (so that it is asked for only when needed), then refuses:
 * GnuTLS's PIN buffer is shorter than a passphrase may be, and a PIN function of the key's own
 * keeps GnuTLS from calling a process-wide one. The caller imports again with the passphrase.
 */
static int ask_pin(void *userdata, int attempt, const char *token_url, const char *token_label,
                   unsigned int flags, char *pin, size_t pin_max)
{
    struct pin_arg *a = userdata;
    const char *pass = NULL;

    (void)attempt;
    (void)token_url;
    (void)token_label;
    (void)flags;
    (void)pin;
    (void)pin_max;
    (void)tlsock__pass_get(a->pass, &pass, a->err);
    return GNUTLS_E_DECRYPTION_FAILED;
}

static int load_key(const struct tlsock__cert_src *src, gnutls_x509_privkey_t *out,
                    struct tlsock__err *err)
{
    gnutls_datum_t data = {.data = (unsigned char *)src->key, .size = (unsigned)src->key_len};
    gnutls_x509_crt_fmt_t fmt = format_of(src->key, src->key_len);
    struct pin_arg arg = {.pass = src->pass, .err = err};
    const char *pass = NULL;
    gnutls_x509_privkey_t key = NULL;
    int ret = gnutls_x509_privkey_init(&key);

    if (ret < 0) {
        return tlsock__fail(err, TLSOCK_ENOMEM, "gnutls: %s", gnutls_strerror(ret));
    }
    /* Also while importing with the passphrase: an empty one would make GnuTLS ask for a PIN. */
    gnutls_x509_privkey_set_pin_function(key, ask_pin, &arg);
    ret = gnutls_x509_privkey_import2(key, &data, fmt, NULL, 0);
    if (ret < 0 && src->pass->asked && src->pass->rc == 0) {
        ret = gnutls_x509_privkey_import2(key, &data, fmt, src->pass->buf, 0);
    }
    /* The key outlives arg: it must not keep a PIN function that points to it. */
    gnutls_x509_privkey_set_pin_function(key, NULL, NULL);
    if (ret >= 0) {
        *out = key;
        return 0;
    }
    gnutls_x509_privkey_deinit(key);
    if (src->pass->asked && src->pass->rc != 0) {
        return tlsock__pass_get(src->pass, &pass, err);
    }
    if (src->pass->asked && ret == GNUTLS_E_DECRYPTION_FAILED) {
        return tlsock__fail(err, TLSOCK_ECONFIG, "%s", TLSOCK__MSG_WRONG_PASS);
    }
    return tlsock__fail(err, code_of(ret), "key holds no private key: %s", gnutls_strerror(ret));
}

/*
 * The key of @p src as GnuTLS could not read it: an unencrypted EC key without its public key,
 * which RFC 5915 makes optional and Java leaves out of every EC key it writes (keytool, and so
 * what `openssl pkcs12 -nodes` extracts from its keystores); GnuTLS 3.7 cannot read such a key,
 * OpenSSL computes the public key. Its public key is the leaf's, so the key is made from the
 * private scalar and the leaf's point, and then checked: a scalar that is not the point's (the
 * key of another certificate) is refused as a mismatch. @p rc is load_key()'s failure, returned
 * with its message for any other key.
 */
static int ec_key_from_leaf(const struct tlsock__cert_src *src, struct gtls_cert *out, int rc,
                            struct tlsock__err *err)
{
    gnutls_datum_t pem = {.data = (unsigned char *)src->key, .size = (unsigned)src->key_len};
    gnutls_datum_t der = pem;
    gnutls_datum_t decoded = {NULL, 0};
    gnutls_datum_t x = {NULL, 0};
    gnutls_datum_t y = {NULL, 0};
    gnutls_ecc_curve_t curve = GNUTLS_ECC_CURVE_INVALID;
    gnutls_x509_privkey_t key = NULL;
    const unsigned char *k = NULL;
    size_t k_len = 0;

    if (tlsock__is_pem(src->key, src->key_len)) {
        if (gnutls_pem_base64_decode2("PRIVATE KEY", &pem, &decoded) < 0 &&
            gnutls_pem_base64_decode2("EC PRIVATE KEY", &pem, &decoded) < 0) {
            return rc;
        }
        der = decoded;
    }
    if (tlsock__der_ec_key_without_point(der.data, der.size, &k, &k_len) &&
        gnutls_x509_crt_get_pk_ecc_raw(out->chain[0], &curve, &x, &y) >= 0 &&
        gnutls_x509_privkey_init(&key) >= 0) {
        gnutls_datum_t scalar = {.data = (unsigned char *)k, .size = (unsigned)k_len};
        if (gnutls_x509_privkey_import_ecc_raw(key, curve, &x, &y, &scalar) >= 0 &&
            gnutls_x509_privkey_verify_params(key) >= 0) {
            out->key = key;
            key = NULL;
            tlsock__err_clear(err);
            rc = 0;
        } else {
            rc = tlsock__fail(err, TLSOCK_ECONFIG, "%s", TLSOCK__MSG_KEY_MISMATCH);
        }
    }
    if (key != NULL) {
        gnutls_x509_privkey_deinit(key);
    }
    gnutls_free(x.data);
    gnutls_free(y.data);
    if (decoded.data != NULL) {
        gnutls_memset(decoded.data, 0, decoded.size); /* the private key */
        gnutls_free(decoded.data);
    }
    return rc;
}

static int load_pair(const struct tlsock__cert_src *src, struct gtls_cert *out,
                     struct tlsock__err *err)
{
    gnutls_datum_t data = {.data = (unsigned char *)src->chain, .size = (unsigned)src->chain_len};
    int ret = gnutls_x509_crt_list_import2(&out->chain, &out->count, &data,
                                           format_of(src->chain, src->chain_len), 0);

    if (ret < 0 || out->count == 0) {
        return tlsock__fail(err, code_of(ret), "certificate %s holds no certificate: %s",
                            tlsock__is_pem(src->chain, src->chain_len) ? "PEM" : "DER",
                            gnutls_strerror(ret));
    }
    int rc = load_key(src, &out->key, err);
    /* An encrypted key (one that asked for its passphrase) is left as GnuTLS read it. */
    return rc == TLSOCK_ECONFIG && !src->pass->asked ? ec_key_from_leaf(src, out, rc, err) : rc;
}

/* Whether @p p12 (a gnutls_pkcs12_t) carries a MAC (`openssl pkcs12 -nomac` makes bundles
 * without one). */
static bool has_mac(void *p12)
{
    unsigned mac = 0;
    unsigned iterations = 0;
    unsigned char salt[64];
    unsigned salt_size = sizeof(salt);
    char *oid = NULL;
    int ret = gnutls_pkcs12_mac_info(p12, &mac, salt, &salt_size, &iterations, &oid);

    gnutls_free(oid);
    return ret >= 0 || ret == GNUTLS_E_SHORT_MEMORY_BUFFER;
}

/*
 * Whether @p p12 (a gnutls_pkcs12_t) opens with @p pass (NULL: absent): its MAC verifies with
 * it, or, for a bundle without a MAC, its key decrypts with it.
 */
static bool opens(void *p12, const char *pass)
{
    gnutls_x509_privkey_t key = NULL;
    gnutls_x509_crt_t *chain = NULL;
    unsigned count = 0;
    bool ok = false;

    if (has_mac(p12)) {
        return gnutls_pkcs12_verify_mac(p12, pass) == 0;
    }
    ok = gnutls_pkcs12_simple_parse(p12, pass, &key, &chain, &count, NULL, NULL, NULL, 0) >= 0 &&
         key != NULL;
    struct gtls_cert found = {.chain = chain, .count = count, .key = key};
    tlsock__gtls_cert_free(&found);
    return ok;
}

static int load_pkcs12(const struct tlsock__cert_src *src, struct gtls_cert *out,
                       struct tlsock__err *err)
{
    gnutls_datum_t data = {.data = (unsigned char *)src->chain, .size = (unsigned)src->chain_len};
    gnutls_pkcs12_t p12 = NULL;
    gnutls_x509_crt_t *extra = NULL;
    unsigned extra_count = 0;
    const char *pass = "";
    int rc = 0;
    int ret = gnutls_pkcs12_init(&p12);

    if (ret < 0) {
        return tlsock__fail(err, TLSOCK_ENOMEM, "gnutls: %s", gnutls_strerror(ret));
    }
    ret = gnutls_pkcs12_import(p12, &data, GNUTLS_X509_FMT_DER, 0);
    if (ret < 0) {
        rc = tlsock__fail(err, code_of(ret), "not a PKCS#12 bundle: %s", gnutls_strerror(ret));
        goto out;
    }
    rc = tlsock__pkcs12_password(has_mac, opens, p12, src->pass, &pass, err);
    if (rc != 0) {
        goto out;
    }
    ret = gnutls_pkcs12_simple_parse(p12, pass, &out->key, &out->chain, &out->count, &extra,
                                     &extra_count, NULL, 0);
    if (ret < 0) {
        rc = tlsock__fail(err, code_of(ret), "cannot read the PKCS#12 bundle: %s",
                          gnutls_strerror(ret));
        goto out;
    }
    if (out->key == NULL || out->count == 0) {
        rc = tlsock__fail(err, TLSOCK_ECONFIG, "the PKCS#12 bundle holds no %s",
                          out->key == NULL ? "private key" : "certificate for its key");
    }
out:
    for (unsigned i = 0; i < extra_count; i++) {
        gnutls_x509_crt_deinit(extra[i]);
    }
    gnutls_free(extra);
    gnutls_pkcs12_deinit(p12);
    return rc;
}

int tlsock__gtls_load_cert(const struct tlsock__cert_src *src, struct gtls_cert *out,
                           struct tlsock__err *err)
{
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (src->kind == TLSOCK__CERT_PKCS12) {
        rc = load_pkcs12(src, out, err);
    } else {
        rc = load_pair(src, out, err);
    }
    if (rc != 0) {
        tlsock__gtls_cert_free(out);
    }
    return rc;
}
