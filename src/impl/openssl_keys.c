/*
 * OpenSSL: this side's certificate and key, from PEM or DER (the key possibly encrypted) or from
 * a PKCS#12 bundle. Passphrases come from the core (tlsock__pass_get()) through OpenSSL's
 * passphrase callbacks, never from OpenSSL's own, which would prompt on the terminal.
 */
#include <string.h>

#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509v3.h>
#include <openssl/ssl.h>

#include <openssl/x509v3.h>

#include "certsel.h"
#include "openssl_util.h"

/* What the decoder's passphrase callback needs. */
struct pass_arg {
    struct tlsock__pass *pass;
    struct tlsock__err *err;
};

/* An OSSL_PASSPHRASE_CALLBACK: 1 with the passphrase in @p buf, 0 without one. */
static int decoder_pass(char *buf, size_t size, size_t *len, const OSSL_PARAM params[], void *arg)
{
    struct pass_arg *a = arg;
    const char *pass = NULL;

    (void)params;
    if (tlsock__pass_get(a->pass, &pass, a->err) != 0 || a->pass->len > size) {
        return 0;
    }
    memcpy(buf, pass, a->pass->len);
    *len = a->pass->len;
    return 1;
}

/* The leaf and the rest of the chain from PEM (any number) or DER (the leaf alone). */
static int load_chain(const char *data, size_t len, X509 **leaf, STACK_OF(X509) * *rest,
                      struct tlsock__err *err)
{
    const unsigned char *der = (const unsigned char *)data;
    BIO *bio = NULL;
    X509 *extra = NULL;
    int rc = 0;

    *rest = sk_X509_new_null();
    if (*rest == NULL) {
        return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory reading the certificate");
    }
    if (!tlsock__is_pem(data, len)) {
        *leaf = d2i_X509(NULL, &der, (long)len);
        if (*leaf == NULL) {
            return tlsock__ossl_fail(err, TLSOCK_ECONFIG, "certificate DER holds no certificate");
        }
        return 0;
    }
    bio = BIO_new_mem_buf(data, (int)len);
    if (bio == NULL) {
        return tlsock__ossl_fail(err, TLSOCK_ENOMEM, "cannot read certificate PEM");
    }
    *leaf = PEM_read_bio_X509_AUX(bio, NULL, tlsock__ossl_no_passphrase, NULL);
    if (*leaf == NULL) {
        rc = tlsock__ossl_fail(err, TLSOCK_ECONFIG, "certificate PEM holds no certificate");
        goto out;
    }
    for (extra = PEM_read_bio_X509(bio, NULL, tlsock__ossl_no_passphrase, NULL); extra != NULL;
         extra = PEM_read_bio_X509(bio, NULL, tlsock__ossl_no_passphrase, NULL)) {
        if (sk_X509_push(*rest, extra) == 0) {
            X509_free(extra);
            rc = tlsock__fail(err, TLSOCK_ENOMEM, "out of memory reading the chain");
            goto out;
        }
    }
    /* The loop ends on a harmless "no start line", or on an allocation failure. */
    if (tlsock__ossl_out_of_memory()) {
        rc = tlsock__fail(err, TLSOCK_ENOMEM, "out of memory reading the chain");
    }
out:
    BIO_free(bio);
    return rc;
}

/* The private key, PEM or DER, asking for the passphrase only if it is encrypted. */
static int load_key(const struct tlsock__cert_src *src, EVP_PKEY **key, struct tlsock__err *err)
{
    struct pass_arg arg = {.pass = src->pass, .err = err};
    const unsigned char *data = (const unsigned char *)src->key;
    size_t left = src->key_len;
    const char *pem = tlsock__is_pem(src->key, src->key_len) ? "PEM" : "DER";
    OSSL_DECODER_CTX *dctx =
        OSSL_DECODER_CTX_new_for_pkey(key, pem, NULL, NULL, EVP_PKEY_KEYPAIR, NULL, NULL);
    const char *pass = NULL;
    int ok = 0;

    if (dctx == NULL) {
        return tlsock__ossl_fail(err, TLSOCK_ENOMEM, "cannot make a key decoder");
    }
    if (OSSL_DECODER_CTX_set_passphrase_cb(dctx, decoder_pass, &arg) == 1) {
        ok = OSSL_DECODER_from_data(dctx, &data, &left);
    }
    OSSL_DECODER_CTX_free(dctx);
    if (ok == 1 && *key != NULL) {
        return 0;
    }
    if (!src->pass->asked) {
        return tlsock__ossl_fail(err, TLSOCK_ECONFIG, "key holds no private key");
    }
    if (tlsock__ossl_out_of_memory()) {
        return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory decrypting the key");
    }
    if (src->pass->rc != 0) {
        /* Why there was no passphrase, again: OpenSSL's own error came after it. */
        return tlsock__pass_get(src->pass, &pass, err);
    }
    return tlsock__fail(err, TLSOCK_ECONFIG, "%s", TLSOCK__MSG_WRONG_PASS);
}

/* Whether @p p12 (a PKCS12 *) carries a MAC (`openssl pkcs12 -nomac` makes bundles without). */
static bool has_mac(void *p12)
{
    return PKCS12_mac_present(p12) == 1;
}

/*
 * Whether @p p12 (a PKCS12 *) opens with @p pass (NULL: absent): its MAC verifies with it, or,
 * for a bundle without a MAC, its key reads with it.
 */
static bool opens(void *p12, const char *pass)
{
    bool ok = false;

    if (PKCS12_mac_present(p12)) {
        ok = PKCS12_verify_mac(p12, pass, pass != NULL ? -1 : 0) == 1;
    } else {
        EVP_PKEY *key = NULL;
        X509 *cert = NULL;
        STACK_OF(X509) *rest = NULL;
        ok = PKCS12_parse(p12, pass, &key, &cert, &rest) == 1 && key != NULL;
        EVP_PKEY_free(key);
        X509_free(cert);
        sk_X509_pop_free(rest, X509_free);
    }
    ERR_clear_error();
    return ok;
}

/*
 * Keeps of @p rest the certificates that chain @p leaf towards its root, in that order, without
 * a self-signed one: what GnuTLS's gnutls_pkcs12_simple_parse() keeps, so that a bundle makes
 * the same chain on every implementation (a root in the bundle, or an unrelated certificate, is
 * not sent).
 */
static int issuer_path(X509 *leaf, STACK_OF(X509) * *rest, struct tlsock__err *err)
{
    STACK_OF(X509) *path = sk_X509_new_null();
    X509 *cur = leaf;

    if (path == NULL) {
        return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory");
    }
    /* Bounded: each step adds one of the bundle's certificates. */
    for (int step = 0; step < sk_X509_num(*rest); step++) {
        X509 *next = NULL;
        for (int i = 0; i < sk_X509_num(*rest) && next == NULL; i++) {
            X509 *c = sk_X509_value(*rest, i);
            if (c != cur && X509_check_issued(c, cur) == X509_V_OK) {
                next = c;
            }
        }
        if (next == NULL || X509_check_issued(next, next) == X509_V_OK) {
            break;
        }
        if (sk_X509_push(path, next) == 0) {
            sk_X509_pop_free(path, X509_free);
            return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory");
        }
        X509_up_ref(next);
        cur = next;
    }
    sk_X509_pop_free(*rest, X509_free);
    *rest = path;
    return 0;
}

/* The key, its certificate and its issuers (issuer_path()) from a DER PKCS#12 bundle. */
static int load_pkcs12(const struct tlsock__cert_src *src, X509 **leaf, STACK_OF(X509) * *rest,
                       EVP_PKEY **key, struct tlsock__err *err)
{
    const unsigned char *der = (const unsigned char *)src->chain;
    PKCS12 *p12 = d2i_PKCS12(NULL, &der, (long)src->chain_len);
    const char *pass = "";
    int rc = 0;

    if (p12 == NULL) {
        return tlsock__ossl_fail(err, TLSOCK_ECONFIG, "not a PKCS#12 bundle");
    }
    rc = tlsock__pkcs12_password(has_mac, opens, p12, src->pass, &pass, err);
    if (rc != 0) {
        goto out;
    }
    if (PKCS12_parse(p12, pass, key, leaf, rest) != 1) {
        rc = tlsock__ossl_fail(err, TLSOCK_ECONFIG, "cannot read the PKCS#12 bundle");
        goto out;
    }
    if (*key == NULL || *leaf == NULL) {
        rc = tlsock__fail(err, TLSOCK_ECONFIG, "the PKCS#12 bundle holds no %s",
                          *key == NULL ? "private key" : "certificate for its key");
        goto out;
    }
    if (*rest == NULL) {
        *rest = sk_X509_new_null();
        rc = *rest == NULL ? tlsock__fail(err, TLSOCK_ENOMEM, "out of memory") : 0;
    }
    if (rc == 0) {
        rc = issuer_path(*leaf, rest, err);
    }
out:
    PKCS12_free(p12);
    return rc;
}

/* Puts @p leaf, @p rest and @p key into @p ctx once they are known to belong together. */
static int install(SSL_CTX *ctx, X509 *leaf, STACK_OF(X509) * rest, EVP_PKEY *key,
                   struct tlsock__err *err)
{
    if (X509_check_private_key(leaf, key) != 1) {
        return tlsock__ossl_fail(err, TLSOCK_ECONFIG, TLSOCK__MSG_KEY_MISMATCH);
    }
    /* Security level checks (e.g. RSA under 2048 bits) happen here. */
    if (SSL_CTX_use_certificate(ctx, leaf) != 1) {
        return tlsock__ossl_fail(err, TLSOCK_ECONFIG, "certificate refused");
    }
    if (SSL_CTX_use_PrivateKey(ctx, key) != 1) {
        return tlsock__ossl_fail(err, TLSOCK_ECONFIG, "private key refused");
    }
    SSL_CTX_clear_chain_certs(ctx);
    for (int i = 0; i < sk_X509_num(rest); i++) {
        if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(rest, i)) != 1) {
            return tlsock__ossl_fail(err, TLSOCK_ECONFIG, "chain certificate refused");
        }
    }
    return 0;
}

void tlsock__ossl_chain_free(struct ossl_chain *chain)
{
    EVP_PKEY_free(chain->key);
    X509_free(chain->leaf);
    sk_X509_pop_free(chain->rest, X509_free);
    memset(chain, 0, sizeof(*chain));
}

/* The leaf's key kind and DNS subjectAltNames, for choosing among a server's chains. */
static int get_facts(X509 *leaf, struct tlsock__cert_facts *facts, struct tlsock__err *err)
{
    EVP_PKEY *pub = X509_get0_pubkey(leaf);
    GENERAL_NAMES *sans = NULL;
    int rc = 0;

    /* The public key is decoded lazily; only memory can make it missing after load_chain(). */
    if (pub == NULL) {
        return tlsock__ossl_fail(err, TLSOCK_ENOMEM, "out of memory reading the certificate");
    }
    int id = EVP_PKEY_get_base_id(pub);
    sans = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    if (sans == NULL && tlsock__ossl_out_of_memory()) {
        return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory reading the certificate's names");
    }

    facts->key_kind = id == EVP_PKEY_EC        ? TLSOCK__SIGN_EC
                      : id == EVP_PKEY_RSA     ? TLSOCK__SIGN_RSA
                      : id == EVP_PKEY_ED25519 ? TLSOCK__SIGN_ED25519
                                               : TLSOCK__SIGN_OTHER;
    if (id == EVP_PKEY_EC) {
        char curve[64] = "";
        (void)EVP_PKEY_get_group_name(pub, curve, sizeof(curve), NULL);
        facts->ec_group = strcmp(curve, "prime256v1") == 0  ? TLSOCK__GROUP_SECP256R1
                          : strcmp(curve, "secp384r1") == 0 ? TLSOCK__GROUP_SECP384R1
                          : strcmp(curve, "secp521r1") == 0 ? TLSOCK__GROUP_SECP521R1
                                                            : 0;
    }
    for (int i = 0; rc == 0 && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
        if (gn->type == GEN_DNS) {
            rc = tlsock__cert_facts_add_name(facts,
                                             (const char *)ASN1_STRING_get0_data(gn->d.dNSName),
                                             (size_t)ASN1_STRING_length(gn->d.dNSName), err);
        }
    }
    GENERAL_NAMES_free(sans);
    ERR_clear_error();
    return rc;
}

int tlsock__ossl_load_cert(SSL_CTX *ctx, const struct tlsock__cert_src *src, struct ossl_chain *out,
                           struct tlsock__err *err)
{
    struct ossl_chain chain = {0};
    int rc = 0;

    ERR_clear_error();
    if (src->kind == TLSOCK__CERT_PKCS12) {
        rc = load_pkcs12(src, &chain.leaf, &chain.rest, &chain.key, err);
    } else {
        rc = load_chain(src->chain, src->chain_len, &chain.leaf, &chain.rest, err);
        if (rc == 0) {
            rc = load_key(src, &chain.key, err);
        }
    }
    if (rc == 0 && src->facts != NULL) {
        rc = get_facts(chain.leaf, src->facts, err);
    }
    if (rc == 0) {
        rc = install(ctx, chain.leaf, chain.rest, chain.key, err);
    }
    if (rc != 0) {
        tlsock__ossl_chain_free(&chain);
        return rc;
    }
    *out = chain;
    return 0;
}
