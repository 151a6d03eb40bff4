/*
 * The certificates of a case, made with OpenSSL directly (the bench uses tlsock's public API
 * only, and tlsock_devcert_new() makes ECDSA P-256 keys only): a CA and a server certificate it
 * signs, both with keys of the case's type, as a real server has. Valid from an hour ago for a
 * day, SHA-256 signatures, the extensions a verifier checks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "bench.h"

struct ext {
    int nid;
    const char *value;
};

static const struct ext ca_exts[] = {
    {NID_basic_constraints, "critical,CA:TRUE"},
    {NID_key_usage, "critical,keyCertSign,cRLSign"},
    {NID_subject_key_identifier, "hash"},
};

static const struct ext leaf_exts[] = {
    {NID_basic_constraints, "critical,CA:FALSE"},
    {NID_key_usage, "critical,digitalSignature"}, /* TLS 1.3 signs with both key types */
    {NID_ext_key_usage, "serverAuth"},
    {NID_subject_alt_name, "DNS:" BENCH_SERVER_NAME ",IP:127.0.0.1"},
    {NID_subject_key_identifier, "hash"},
    {NID_authority_key_identifier, "keyid"},
};

/* A certificate for @p key named @p cn, signed by @p issuer (NULL: self-signed). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
                       const struct ext *exts, size_t nexts)
{
    X509 *x = X509_new();
    BIGNUM *serial = BN_new();
    X509V3_CTX v3;
    bool ok = x != NULL && serial != NULL && X509_set_version(x, X509_VERSION_3) == 1 &&
              BN_rand(serial, 127, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) == 1 &&
              BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)) != NULL &&
              X509_gmtime_adj(X509_getm_notBefore(x), -3600) != NULL &&
              X509_gmtime_adj(X509_getm_notAfter(x), 86400) != NULL &&
              X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                         (const unsigned char *)cn, -1, -1, 0) == 1 &&
              X509_set_issuer_name(x, X509_get_subject_name(issuer != NULL ? issuer : x)) == 1 &&
              X509_set_pubkey(x, key) == 1;

    X509V3_set_ctx(&v3, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
    for (size_t i = 0; ok && i < nexts; i++) {
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, exts[i].nid, exts[i].value);

        ok = ext != NULL && X509_add_ext(x, ext, -1) == 1;
        X509_EXTENSION_free(ext);
    }
    ok = ok && X509_sign(x, issuer_key != NULL ? issuer_key : key, EVP_sha256()) > 0;
    BN_free(serial);
    if (!ok) {
        X509_free(x);
        x = NULL;
    }
    return x;
}

/* A NUL-terminated copy of what was written to the memory BIO @p bio. */
static char *bio_string(BIO *bio)
{
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);
    char *copy = len > 0 ? malloc((size_t)len + 1) : NULL;

    if (copy != NULL) {
        memcpy(copy, data, (size_t)len);
        copy[len] = '\0';
    }
    return copy;
}

static int to_pem(X509 *cert, EVP_PKEY *key, char **cert_pem, char **key_pem)
{
    BIO *cbio = BIO_new(BIO_s_mem());
    BIO *kbio = BIO_new(BIO_s_mem());

    if (cbio != NULL && kbio != NULL && PEM_write_bio_X509(cbio, cert) == 1 &&
        PEM_write_bio_PrivateKey(kbio, key, NULL, NULL, 0, NULL, NULL) == 1) {
        *cert_pem = bio_string(cbio);
        *key_pem = bio_string(kbio);
    }
    BIO_free(cbio);
    BIO_free(kbio);
    return *cert_pem != NULL && *key_pem != NULL ? BENCH_OK : BENCH_ERROR;
}

static EVP_PKEY *make_key(const char *key_type)
{
    return key_type != NULL && strcmp(key_type, "rsa-2048") == 0
               ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
               : EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

int bench_certs_new(const char *key_type, struct bench_certs *out)
{
    EVP_PKEY *ca_key = make_key(key_type);
    EVP_PKEY *key = make_key(key_type);
    X509 *ca = NULL;
    X509 *leaf = NULL;
    int rc = BENCH_ERROR;

    if (ca_key != NULL && key != NULL) {
        ca = make_cert(ca_key, "tlsock-bench CA", NULL, NULL, ca_exts,
                       sizeof(ca_exts) / sizeof(ca_exts[0]));
    }
    if (ca != NULL) {
        leaf = make_cert(key, BENCH_SERVER_NAME, ca, ca_key, leaf_exts,
                         sizeof(leaf_exts) / sizeof(leaf_exts[0]));
    }
    if (leaf != NULL && to_pem(ca, ca_key, &out->ca_cert, &out->ca_key) == BENCH_OK) {
        rc = to_pem(leaf, key, &out->cert, &out->key);
    }
    if (rc != BENCH_OK) {
        bench_ssl_error("certificates");
        bench_certs_free(out);
    }
    X509_free(leaf);
    X509_free(ca);
    EVP_PKEY_free(key);
    EVP_PKEY_free(ca_key);
    return rc;
}

void bench_certs_free(struct bench_certs *certs)
{
    free(certs->ca_cert);
    free(certs->ca_key);
    free(certs->cert);
    free(certs->key);
    memset(certs, 0, sizeof(*certs));
}
