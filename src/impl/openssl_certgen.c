/*
 * Development certificates with OpenSSL: key generation, X.509 v3 certificates (self-signed or
 * issued by a given CA) and SHA-256 fingerprints.
 *
 * Every extension is built from ASN.1 structures rather than from OpenSSL's configuration-string
 * syntax, so a host name can never smuggle extra values (such as "IP:" or "email:") into the
 * certificate, and a malformed entry is refused instead of being reinterpreted.
 */
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "certspec.h"
#include "impl.h"
#include "openssl_util.h"

static int generate_key(enum tlsock__key_kind kind, EVP_PKEY **out, struct tlsock__err *err)
{
    int rc = 0;
    EVP_PKEY *key = NULL;

    switch (kind) {
    case TLSOCK__KEY_EC_P256:
        key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        break;
    case TLSOCK__KEY_RSA_2048:
        key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
        break;
    case TLSOCK__KEY_RSA_1024:
        key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
        break;
    }
    if (key == NULL) {
        rc = tlsock__ossl_fail(err, TLSOCK_ECONFIG, "key generation failed");
        goto out;
    }
    *out = key;

out:
    return rc;
}

/* Loads the issuing CA's certificate and key and checks that they belong together. */
static int load_issuer(const struct tlsock__cert_spec *spec, X509 **cert_out, EVP_PKEY **key_out,
                       struct tlsock__err *err)
{
    int rc = 0;
    BIO *cbio = NULL;
    BIO *kbio = NULL;
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;

    cbio = BIO_new_mem_buf(spec->issuer_cert_pem, -1);
    kbio = BIO_new_mem_buf(spec->issuer_key_pem, -1);
    if (cbio == NULL || kbio == NULL) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "out of memory reading the issuer");
        goto free_bios;
    }
    cert = PEM_read_bio_X509(cbio, NULL, tlsock__ossl_no_passphrase, NULL);
    if (cert == NULL) {
        rc = tlsock__ossl_fail(err, TLSOCK_ECONFIG, "issuer certificate is not a PEM certificate");
        goto free_bios;
    }
    key = PEM_read_bio_PrivateKey(kbio, NULL, tlsock__ossl_no_passphrase, NULL);
    if (key == NULL) {
        rc = tlsock__ossl_fail(err, TLSOCK_ECONFIG,
                               "issuer key is not an unencrypted PEM private key");
        goto free_objects;
    }
    if (X509_check_private_key(cert, key) != 1) {
        rc = tlsock__ossl_fail(err, TLSOCK_ECONFIG,
                               "issuer key does not match the issuer certificate");
        goto free_objects;
    }
    *cert_out = cert;
    *key_out = key;
    cert = NULL;
    key = NULL;

free_objects:
    EVP_PKEY_free(key);
    X509_free(cert);
free_bios:
    BIO_free(kbio);
    BIO_free(cbio);
    return rc;
}

static int set_serial(X509 *x, struct tlsock__err *err)
{
    int rc = 0;
    unsigned char bytes[TLSOCK__SERIAL_BYTES];
    BIGNUM *bn = NULL;
    ASN1_INTEGER *serial = NULL;

    if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
        rc = tlsock__ossl_fail(err, TLSOCK_ECONFIG, "random serial number");
        goto out;
    }
    tlsock__cert_serial_shape(bytes);
    bn = BN_bin2bn(bytes, sizeof(bytes), NULL);
    if (bn == NULL) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "serial number");
        goto out;
    }
    serial = BN_to_ASN1_INTEGER(bn, NULL);
    if (serial == NULL || X509_set_serialNumber(x, serial) != 1) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "serial number");
        goto free_all;
    }

free_all:
    ASN1_INTEGER_free(serial);
    BN_free(bn);
out:
    return rc;
}

static int set_subject(X509 *x, const char *cn, struct tlsock__err *err)
{
    int rc = 0;
    X509_NAME *name = X509_get_subject_name(x);

    if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                   (const unsigned char *)TLSOCK__SUBJECT_O, -1, -1, 0) != 1) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "subject organization");
        goto out;
    }
    /* OpenSSL enforces the X.520 length bound here (1 to 64 characters for a CN). */
    if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                   0) != 1) {
        rc = tlsock__ossl_fail(err, TLSOCK_ECONFIG, "invalid common name (1 to 64 characters)");
        goto out;
    }

out:
    return rc;
}

/* Appends one subjectAltName entry to the GENERAL_NAMES in @p arg. */
static int push_general_name(const struct tlsock__san_entry *entry, void *arg,
                             struct tlsock__err *err)
{
    GENERAL_NAMES *names = arg;
    int rc = 0;
    ASN1_STRING *value = NULL;
    GENERAL_NAME *gn = NULL;

    if (entry->is_ip) {
        value = ASN1_OCTET_STRING_new();
        if (value == NULL || ASN1_OCTET_STRING_set(value, entry->ip, (int)entry->ip_len) != 1) {
            rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "subjectAltName");
            goto free_value;
        }
    } else {
        value = ASN1_IA5STRING_new();
        if (value == NULL || ASN1_STRING_set(value, entry->dns, -1) != 1) {
            rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "subjectAltName");
            goto free_value;
        }
    }
    gn = GENERAL_NAME_new();
    if (gn == NULL) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "subjectAltName");
        goto free_value;
    }
    GENERAL_NAME_set0_value(gn, entry->is_ip ? GEN_IPADD : GEN_DNS, value);
    value = NULL;
    if (sk_GENERAL_NAME_push(names, gn) <= 0) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "subjectAltName");
        goto free_name;
    }
    gn = NULL;

free_name:
    GENERAL_NAME_free(gn);
free_value:
    ASN1_STRING_free(value);
    return rc;
}

/* Builds subjectAltName from the host list (certspec.h). */
static int add_subject_alt_name(X509 *x, const char *hosts, struct tlsock__err *err)
{
    int rc = 0;
    GENERAL_NAMES *names = NULL;

    if (hosts == NULL || hosts[0] == '\0') {
        goto out;
    }
    names = GENERAL_NAMES_new();
    if (names == NULL) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "subjectAltName");
        goto out;
    }
    rc = tlsock__cert_hosts_each(hosts, push_general_name, names, err);
    if (rc != 0) {
        goto free_names;
    }
    if (X509_add1_ext_i2d(x, NID_subject_alt_name, names, 0, X509V3_ADD_DEFAULT) != 1) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "subjectAltName");
        goto free_names;
    }

free_names:
    GENERAL_NAMES_free(names);
out:
    return rc;
}

static int add_basic_constraints(X509 *x, bool is_ca, struct tlsock__err *err)
{
    int rc = 0;
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();

    if (bc == NULL) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "basicConstraints");
        goto out;
    }
    /* DER encodes CA:FALSE as the absent default, which is what RFC 5280 expects. */
    bc->ca = is_ca ? 0xff : 0;
    if (X509_add1_ext_i2d(x, NID_basic_constraints, bc, 1, X509V3_ADD_DEFAULT) != 1) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "basicConstraints");
        goto out;
    }

out:
    BASIC_CONSTRAINTS_free(bc);
    return rc;
}

static int add_key_usage(X509 *x, const struct tlsock__cert_spec *spec, enum tlsock__key_kind kind,
                         struct tlsock__err *err)
{
    int rc = 0;
    ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
    unsigned bits = tlsock__cert_key_usage(spec, kind);
    int ok = 1;

    if (ku == NULL) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "keyUsage");
        goto out;
    }
    for (int bit = 0; ok && bit < 9; bit++) {
        if ((bits & 1u << bit) != 0) {
            ok = ASN1_BIT_STRING_set_bit(ku, bit, 1);
        }
    }
    if (!ok || X509_add1_ext_i2d(x, NID_key_usage, ku, 1, X509V3_ADD_DEFAULT) != 1) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "keyUsage");
        goto out;
    }

out:
    ASN1_BIT_STRING_free(ku);
    return rc;
}

static int add_ext_key_usage(X509 *x, int eku_bits, struct tlsock__err *err)
{
    int rc = 0;
    EXTENDED_KEY_USAGE *eku = NULL;

    if (eku_bits == 0) {
        goto out;
    }
    eku = sk_ASN1_OBJECT_new_null();
    if (eku == NULL) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "extendedKeyUsage");
        goto out;
    }
    /* OBJ_nid2obj returns OpenSSL's static objects, which ASN1_OBJECT_free leaves alone. */
    if ((eku_bits & TLSOCK__EKU_SERVER) != 0 &&
        sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth)) <= 0) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "extendedKeyUsage");
        goto free_eku;
    }
    if ((eku_bits & TLSOCK__EKU_CLIENT) != 0 &&
        sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_client_auth)) <= 0) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "extendedKeyUsage");
        goto free_eku;
    }
    if ((eku_bits & TLSOCK__EKU_OCSP) != 0 &&
        sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_OCSP_sign)) <= 0) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "extendedKeyUsage");
        goto free_eku;
    }
    if (X509_add1_ext_i2d(x, NID_ext_key_usage, eku, 0, X509V3_ADD_DEFAULT) != 1) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "extendedKeyUsage");
        goto free_eku;
    }

free_eku:
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
out:
    return rc;
}

/* RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey bit string. */
static int key_id_of(const X509 *cert, ASN1_OCTET_STRING **out, struct tlsock__err *err)
{
    int rc = 0;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    ASN1_OCTET_STRING *id = NULL;

    if (X509_pubkey_digest(cert, EVP_sha1(), md, &md_len) != 1) {
        rc = tlsock__ossl_fail(err, TLSOCK_ECONFIG, "key identifier");
        goto out;
    }
    id = ASN1_OCTET_STRING_new();
    if (id == NULL || ASN1_OCTET_STRING_set(id, md, (int)md_len) != 1) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "key identifier");
        goto out;
    }
    *out = id;
    id = NULL;

out:
    ASN1_OCTET_STRING_free(id);
    return rc;
}

static int add_subject_key_id(X509 *x, struct tlsock__err *err)
{
    int rc;
    ASN1_OCTET_STRING *id = NULL;

    rc = key_id_of(x, &id, err);
    if (rc != 0) {
        goto out;
    }
    if (X509_add1_ext_i2d(x, NID_subject_key_identifier, id, 0, X509V3_ADD_DEFAULT) != 1) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "subjectKeyIdentifier");
        goto out;
    }

out:
    ASN1_OCTET_STRING_free(id);
    return rc;
}

/*
 * The authority key identifier must equal the issuer's subjectKeyIdentifier when it has one, so
 * that path building matches them; an issuer without one gets the RFC 5280 method (1) value.
 */
static int add_authority_key_id(X509 *x, X509 *issuer, struct tlsock__err *err)
{
    int rc = 0;
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    const ASN1_OCTET_STRING *issuer_skid = X509_get0_subject_key_id(issuer);

    if (akid == NULL) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "authorityKeyIdentifier");
        goto out;
    }
    if (issuer_skid != NULL) {
        akid->keyid = ASN1_OCTET_STRING_dup(issuer_skid);
        if (akid->keyid == NULL) {
            rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "authorityKeyIdentifier");
            goto out;
        }
    } else {
        rc = key_id_of(issuer, &akid->keyid, err);
        if (rc != 0) {
            goto out;
        }
    }
    if (X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, X509V3_ADD_DEFAULT) != 1) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "authorityKeyIdentifier");
        goto out;
    }

out:
    AUTHORITY_KEYID_free(akid);
    return rc;
}

/* RFC 7633 "must staple": a TLS feature extension listing status_request (5), not critical. */
static int add_must_staple(X509 *x, bool must_staple, struct tlsock__err *err)
{
    int rc = 0;
    TLS_FEATURE *features = NULL;
    ASN1_INTEGER *status_request = NULL;

    if (!must_staple) {
        return 0;
    }
    features = sk_ASN1_INTEGER_new_null();
    status_request = ASN1_INTEGER_new();
    if (features == NULL || status_request == NULL || ASN1_INTEGER_set(status_request, 5) != 1 ||
        sk_ASN1_INTEGER_push(features, status_request) <= 0) {
        ASN1_INTEGER_free(status_request);
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "TLS feature");
        goto out;
    }
    if (X509_add1_ext_i2d(x, NID_tlsfeature, features, 0, X509V3_ADD_DEFAULT) != 1) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "TLS feature");
    }
out:
    sk_ASN1_INTEGER_pop_free(features, ASN1_INTEGER_free);
    return rc;
}

/* A critical nameConstraints extension permitting the one DNS subtree @p dns (NULL: none). */
static int add_name_constraints(X509 *x, const char *dns, struct tlsock__err *err)
{
    int rc = 0;
    NAME_CONSTRAINTS *nc = NULL;
    GENERAL_SUBTREE *subtree = NULL;

    if (dns == NULL) {
        return 0;
    }
    nc = NAME_CONSTRAINTS_new();
    subtree = GENERAL_SUBTREE_new();
    if (nc == NULL || subtree == NULL ||
        (nc->permittedSubtrees = sk_GENERAL_SUBTREE_new_null()) == NULL) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "nameConstraints");
        goto out;
    }
    subtree->base->type = GEN_DNS;
    subtree->base->d.dNSName = ASN1_IA5STRING_new();
    if (subtree->base->d.dNSName == NULL ||
        ASN1_STRING_set(subtree->base->d.dNSName, dns, (int)strlen(dns)) != 1 ||
        sk_GENERAL_SUBTREE_push(nc->permittedSubtrees, subtree) <= 0) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "nameConstraints");
        goto out;
    }
    subtree = NULL; /* the constraints own it now */
    if (X509_add1_ext_i2d(x, NID_name_constraints, nc, 1, X509V3_ADD_DEFAULT) != 1) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "nameConstraints");
    }
out:
    GENERAL_SUBTREE_free(subtree);
    NAME_CONSTRAINTS_free(nc);
    return rc;
}

static int add_extensions(X509 *x, const struct tlsock__cert_spec *spec, enum tlsock__key_kind kind,
                          X509 *issuer, struct tlsock__err *err)
{
    int rc;

    rc = add_basic_constraints(x, spec->is_ca, err);
    if (rc == 0) {
        rc = add_key_usage(x, spec, kind, err);
    }
    if (rc == 0) {
        rc = add_ext_key_usage(x, spec->eku, err);
    }
    if (rc == 0) {
        rc = add_must_staple(x, spec->must_staple, err);
    }
    if (rc == 0) {
        rc = add_name_constraints(x, spec->permitted_dns, err);
    }
    if (rc == 0) {
        rc = add_subject_alt_name(x, spec->hosts, err);
    }
    if (rc == 0) {
        rc = add_subject_key_id(x, err);
    }
    if (rc == 0 && issuer != NULL) {
        rc = add_authority_key_id(x, issuer, err);
    }
    return rc;
}

/* Builds and signs the certificate for @p key; @p issuer NULL means self-signed. */
static int build_cert(const struct tlsock__cert_spec *spec, EVP_PKEY *key,
                      enum tlsock__key_kind kind, X509 *issuer, EVP_PKEY *issuer_key, X509 **out,
                      struct tlsock__err *err)
{
    int rc = 0;
    X509 *x = X509_new();
    const X509_NAME *issuer_name = NULL;

    if (x == NULL) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "new certificate");
        goto out;
    }
    /* Version 3 (value 2) is required for extensions. */
    if (X509_set_version(x, 2) != 1 || X509_set_pubkey(x, key) != 1) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "new certificate");
        goto out;
    }
    rc = set_serial(x, err);
    if (rc != 0) {
        goto out;
    }
    rc = set_subject(x, tlsock__cert_spec_cn(spec), err);
    if (rc != 0) {
        goto out;
    }
    issuer_name = issuer != NULL ? X509_get_subject_name(issuer) : X509_get_subject_name(x);
    if (X509_set_issuer_name(x, issuer_name) != 1) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "issuer name");
        goto out;
    }
    if (X509_gmtime_adj(X509_getm_notBefore(x), spec->not_before_s) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), spec->not_after_s) == NULL) {
        rc = tlsock__ossl_fail(err, TLSOCK_ECONFIG, "validity period");
        goto out;
    }
    rc = add_extensions(x, spec, kind, issuer, err);
    if (rc != 0) {
        goto out;
    }
    if (X509_sign(x, issuer_key != NULL ? issuer_key : key,
                  spec->sha1 ? EVP_sha1() : EVP_sha256()) <= 0) {
        rc = tlsock__ossl_fail(err, TLSOCK_ECONFIG, "signing the certificate");
        goto out;
    }
    *out = x;
    x = NULL;

out:
    X509_free(x);
    return rc;
}

static int write_pem(X509 *cert, EVP_PKEY *key, struct tlsock__pem_pair *out,
                     struct tlsock__err *err)
{
    int rc = 0;
    BIO *cbio = BIO_new(BIO_s_mem());
    BIO *kbio = BIO_new(BIO_s_mem());
    char *cert_pem = NULL;
    char *key_pem = NULL;
    long cert_len = 0;
    long key_len = 0;

    if (cbio == NULL || kbio == NULL) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "PEM output");
        goto out;
    }
    /* PEM_write_bio_PrivateKey writes PKCS#8 ("BEGIN PRIVATE KEY"), unencrypted with no cipher. */
    if (PEM_write_bio_X509(cbio, cert) != 1 ||
        PEM_write_bio_PrivateKey(kbio, key, NULL, NULL, 0, NULL, NULL) != 1) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "PEM output");
        goto out;
    }
    cert_len = BIO_get_mem_data(cbio, &cert_pem);
    key_len = BIO_get_mem_data(kbio, &key_pem);
    if (cert_len <= 0 || key_len <= 0 || cert_pem == NULL || key_pem == NULL) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "PEM output");
        goto out;
    }
    rc = tlsock__cert_output(cert_pem, (size_t)cert_len, key_pem, (size_t)key_len, out, err);

out:
    BIO_free(kbio);
    BIO_free(cbio);
    return rc;
}

int tlsock__openssl_cert_generate(const struct tlsock__cert_spec *spec,
                                  struct tlsock__pem_pair *out, struct tlsock__err *err)
{
    int rc = 0;
    X509 *issuer = NULL;
    EVP_PKEY *issuer_key = NULL;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    enum tlsock__key_kind kind = TLSOCK__KEY_EC_P256;

    /* Earlier unrelated failures in this thread must not be reported as ours. */
    ERR_clear_error();
    rc = tlsock__cert_spec_check(spec, out, &kind, err);
    if (rc != 0) {
        goto out;
    }
    if (spec->issuer_cert_pem != NULL) {
        rc = load_issuer(spec, &issuer, &issuer_key, err);
        if (rc != 0) {
            goto out;
        }
    }
    rc = generate_key(kind, &key, err);
    if (rc != 0) {
        goto free_all;
    }
    rc = build_cert(spec, key, kind, issuer, issuer_key, &cert, err);
    if (rc != 0) {
        goto free_all;
    }
    rc = write_pem(cert, key, out, err);

free_all:
    X509_free(cert);
    EVP_PKEY_free(key);
    EVP_PKEY_free(issuer_key);
    X509_free(issuer);
out:
    ERR_clear_error();
    return rc;
}

int tlsock__openssl_cert_fingerprint(const char *pem, size_t len, char out[TLSOCK_FINGERPRINT_SIZE],
                                     struct tlsock__err *err)
{
    int rc = 0;
    BIO *bio = NULL;
    X509 *cert = NULL;

    ERR_clear_error();
    if (pem == NULL || out == NULL) {
        rc = tlsock__fail(err, TLSOCK_EINVAL, "certificate fingerprint: NULL argument");
        goto out;
    }
    /* BIO_new_mem_buf takes an int length. */
    if (len == 0 || len > INT_MAX) {
        rc = tlsock__fail(err, TLSOCK_ECONFIG, "certificate fingerprint: bad PEM length %zu", len);
        goto out;
    }
    bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "certificate fingerprint");
        goto out;
    }
    cert = PEM_read_bio_X509(bio, NULL, tlsock__ossl_no_passphrase, NULL);
    if (cert == NULL) {
        rc = tlsock__ossl_fail(err, TLSOCK_ECONFIG, "certificate fingerprint: no PEM certificate");
        goto free_all;
    }
    if (tlsock__ossl_fingerprint(cert, out) != 0) {
        rc = tlsock__ossl_fail(err, TLSOCK_ECONFIG, "certificate fingerprint: SHA-256");
        goto free_all;
    }

free_all:
    X509_free(cert);
    BIO_free(bio);
out:
    ERR_clear_error();
    return rc;
}

int tlsock__openssl_key_encrypt(const char *key_pem, size_t len, const char *pass, char **out,
                                struct tlsock__err *err)
{
    int rc = 0;
    BIO *in = NULL;
    BIO *mem = NULL;
    EVP_PKEY *key = NULL;
    char *text = NULL;
    long text_len = 0;

    ERR_clear_error();
    if (key_pem == NULL || pass == NULL || out == NULL) {
        rc = tlsock__fail(err, TLSOCK_EINVAL, "key encryption: NULL argument");
        goto out;
    }
    if (len == 0 || len > INT_MAX) {
        rc = tlsock__fail(err, TLSOCK_ECONFIG, "key encryption: bad PEM length %zu", len);
        goto out;
    }
    in = BIO_new_mem_buf(key_pem, (int)len);
    mem = BIO_new(BIO_s_mem());
    if (in == NULL || mem == NULL) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "key encryption");
        goto free_all;
    }
    /* No passphrase callback: an already encrypted key is refused, never prompted for. */
    key = PEM_read_bio_PrivateKey(in, NULL, tlsock__ossl_no_passphrase, NULL);
    if (key == NULL) {
        rc = tlsock__ossl_fail(err, TLSOCK_ECONFIG, "key encryption: no unencrypted PEM key");
        goto free_all;
    }
    /* PKCS#8 with PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC), as GnuTLS's PKCS_PBES2_AES_256. */
    if (PEM_write_bio_PKCS8PrivateKey(mem, key, EVP_aes_256_cbc(), NULL, 0, NULL, (void *)pass) !=
        1) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "key encryption: PKCS#8 output");
        goto free_all;
    }
    text_len = BIO_get_mem_data(mem, &text);
    if (text_len <= 0 || text == NULL) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "key encryption: PKCS#8 output");
        goto free_all;
    }
    rc = tlsock__text_output(text, (size_t)text_len, out, err);
    OPENSSL_cleanse(text, (size_t)text_len);

free_all:
    EVP_PKEY_free(key);
    BIO_free(mem);
    BIO_free(in);
out:
    ERR_clear_error();
    return rc;
}
