/*
 * Development certificates with GnuTLS: key generation, X.509 v3 certificates (self-signed or
 * issued by a given CA) and SHA-256 fingerprints. The same certificates as openssl_certgen.c
 * makes (certspec.h decides what both refuse and contain), so either implementation loads and
 * verifies what either generator made.
 *
 * Extensions are set through GnuTLS's typed setters (a DNS name is a dNSName, an address an
 * iPAddress of 4 or 16 bytes), never parsed from text, so a host name cannot smuggle in other
 * kinds of names.
 */
#include <limits.h>
#include <string.h>
#include <time.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509-ext.h>
#include <gnutls/x509.h>

#include "certspec.h"
#include "gnutls_int.h"
#include "text.h"

/* SHA-1, the digest of RFC 5280 4.2.1.2 method (1) key identifiers. */
#define KEY_ID_SIZE 20

/* Fails with @p code and "what: GnuTLS's reason"; TLSOCK_ENOMEM when GnuTLS ran out of memory. */
static int gtls_fail(struct tlsock__err *err, int code, const char *what, int ret)
{
    return tlsock__fail(err, ret == GNUTLS_E_MEMORY_ERROR ? TLSOCK_ENOMEM : code, "%s: %s", what,
                        gnutls_strerror(ret));
}

static gnutls_datum_t datum_of(const char *text, size_t len)
{
    gnutls_datum_t d = {.data = (unsigned char *)text, .size = (unsigned)len};

    return d;
}

static int generate_key(enum tlsock__key_kind kind, gnutls_x509_privkey_t *out,
                        struct tlsock__err *err)
{
    gnutls_x509_privkey_t key = NULL;
    int ret = gnutls_x509_privkey_init(&key);

    if (ret < 0) {
        return gtls_fail(err, TLSOCK_ENOMEM, "key generation", ret);
    }
    switch (kind) {
    case TLSOCK__KEY_EC_P256:
        ret = gnutls_x509_privkey_generate2(
            key, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0, NULL, 0);
        break;
    case TLSOCK__KEY_RSA_2048:
        ret = gnutls_x509_privkey_generate2(key, GNUTLS_PK_RSA, 2048, 0, NULL, 0);
        break;
    case TLSOCK__KEY_RSA_1024:
        ret = gnutls_x509_privkey_generate2(key, GNUTLS_PK_RSA, 1024, 0, NULL, 0);
        break;
    }
    if (ret < 0) {
        gnutls_x509_privkey_deinit(key);
        return gtls_fail(err, TLSOCK_ECONFIG, "key generation failed", ret);
    }
    *out = key;
    return 0;
}

/* Reads a DER tag @p tag and its length at *@p p; false when it is not there or overruns. */
static bool der_header(const unsigned char **p, const unsigned char *end, unsigned char tag,
                       size_t *len)
{
    const unsigned char *q = *p;
    size_t n = 0;

    if (end - q < 2 || q[0] != tag) {
        return false;
    }
    q++;
    if (*q < 0x80) {
        n = *q++;
    } else {
        size_t octets = *q++ & 0x7f;
        if (octets == 0 || octets > sizeof(size_t) || (size_t)(end - q) < octets) {
            return false;
        }
        for (size_t i = 0; i < octets; i++) {
            n = n << 8 | *q++;
        }
    }
    if ((size_t)(end - q) < n) {
        return false;
    }
    *p = q;
    *len = n;
    return true;
}

/*
 * RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING's value (without its
 * unused-bits octet), as OpenSSL computes it. GnuTLS's own key ids hash the whole
 * SubjectPublicKeyInfo instead, so this walks the DER of @p crt's SubjectPublicKeyInfo:
 * SEQUENCE { SEQUENCE algorithm, BIT STRING subjectPublicKey }.
 */
static int key_id_of(gnutls_x509_crt_t crt, unsigned char id[KEY_ID_SIZE], struct tlsock__err *err)
{
    gnutls_pubkey_t pub = NULL;
    gnutls_datum_t spki = {NULL, 0};
    int rc = 0;
    int ret = gnutls_pubkey_init(&pub);

    if (ret < 0) {
        return gtls_fail(err, TLSOCK_ENOMEM, "key identifier", ret);
    }
    ret = gnutls_pubkey_import_x509(pub, crt, 0);
    if (ret >= 0) {
        ret = gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &spki);
    }
    if (ret < 0) {
        rc = gtls_fail(err, TLSOCK_ECONFIG, "key identifier", ret);
        goto out;
    }
    const unsigned char *p = spki.data;
    const unsigned char *end = spki.data + spki.size;
    size_t len = 0;
    bool ok = der_header(&p, end, 0x30, &len) && der_header(&p, end, 0x30, &len);
    if (ok) {
        p += len; /* past the algorithm */
        ok = der_header(&p, end, 0x03, &len) && len >= 1;
    }
    if (!ok) {
        rc = tlsock__fail(err, TLSOCK_ECONFIG, "key identifier: unexpected public key encoding");
        goto out;
    }
    ret = gnutls_hash_fast(GNUTLS_DIG_SHA1, p + 1, len - 1, id);
    if (ret < 0) {
        rc = gtls_fail(err, TLSOCK_ECONFIG, "key identifier", ret);
    }

out:
    gnutls_free(spki.data);
    gnutls_pubkey_deinit(pub);
    return rc;
}

/* The same public key: the certificate's and the private key's ids agree. */
static bool key_matches(gnutls_x509_crt_t crt, gnutls_x509_privkey_t key)
{
    unsigned char a[64];
    unsigned char b[64];
    size_t alen = sizeof(a);
    size_t blen = sizeof(b);

    return gnutls_x509_crt_get_key_id(crt, GNUTLS_KEYID_USE_SHA256, a, &alen) >= 0 &&
           gnutls_x509_privkey_get_key_id(key, GNUTLS_KEYID_USE_SHA256, b, &blen) >= 0 &&
           alen == blen && memcmp(a, b, alen) == 0;
}

/* A PIN function that never gives one: the generator reads only unencrypted keys. */
static int refuse_pin(void *userdata, int attempt, const char *token_url, const char *token_label,
                      unsigned int flags, char *pin, size_t pin_max)
{
    (void)userdata;
    (void)attempt;
    (void)token_url;
    (void)token_label;
    (void)flags;
    (void)pin;
    (void)pin_max;
    return GNUTLS_E_DECRYPTION_FAILED;
}

/* Loads the issuing CA's certificate and key and checks that they belong together. */
static int load_issuer(const struct tlsock__cert_spec *spec, gnutls_x509_crt_t *cert_out,
                       gnutls_x509_privkey_t *key_out, struct tlsock__err *err)
{
    gnutls_x509_crt_t cert = NULL;
    gnutls_x509_privkey_t key = NULL;
    gnutls_datum_t cert_pem = datum_of(spec->issuer_cert_pem, strlen(spec->issuer_cert_pem));
    gnutls_datum_t key_pem = datum_of(spec->issuer_key_pem, strlen(spec->issuer_key_pem));
    int rc = 0;
    int ret = gnutls_x509_crt_init(&cert);

    if (ret < 0) {
        return gtls_fail(err, TLSOCK_ENOMEM, "reading the issuer", ret);
    }
    ret = gnutls_x509_privkey_init(&key);
    if (ret < 0) {
        rc = gtls_fail(err, TLSOCK_ENOMEM, "reading the issuer", ret);
        goto free_objects;
    }
    ret = gnutls_x509_crt_import(cert, &cert_pem, GNUTLS_X509_FMT_PEM);
    if (ret < 0) {
        rc = gtls_fail(err, TLSOCK_ECONFIG, "issuer certificate is not a PEM certificate", ret);
        goto free_objects;
    }
    /*
     * PLAIN: an encrypted PKCS#8 key fails. A traditional encrypted PEM key would still make
     * GnuTLS ask a PIN function, and without one of the key's own it would ask the application's
     * process-wide one: the key gets one that refuses.
     */
    gnutls_x509_privkey_set_pin_function(key, refuse_pin, NULL);
    ret = gnutls_x509_privkey_import2(key, &key_pem, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN);
    gnutls_x509_privkey_set_pin_function(key, NULL, NULL);
    if (ret < 0) {
        rc =
            gtls_fail(err, TLSOCK_ECONFIG, "issuer key is not an unencrypted PEM private key", ret);
        goto free_objects;
    }
    if (!key_matches(cert, key)) {
        rc = tlsock__fail(err, TLSOCK_ECONFIG, "issuer key does not match the issuer certificate");
        goto free_objects;
    }
    *cert_out = cert;
    *key_out = key;
    cert = NULL;
    key = NULL;

free_objects:
    gnutls_x509_privkey_deinit(key);
    gnutls_x509_crt_deinit(cert);
    return rc;
}

static int set_serial(gnutls_x509_crt_t crt, struct tlsock__err *err)
{
    unsigned char serial[TLSOCK__SERIAL_BYTES];
    int ret = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial));

    if (ret < 0) {
        return gtls_fail(err, TLSOCK_ECONFIG, "random serial number", ret);
    }
    tlsock__cert_serial_shape(serial);
    ret = gnutls_x509_crt_set_serial(crt, serial, sizeof(serial));
    if (ret < 0) {
        return gtls_fail(err, TLSOCK_ENOMEM, "serial number", ret);
    }
    return 0;
}

/* O=tlsock, CN=<cn>, in that order (as OpenSSL's generator writes them). */
static int set_subject(gnutls_x509_crt_t crt, const char *cn, struct tlsock__err *err)
{
    int ret = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_ORGANIZATION_NAME, 0,
                                            TLSOCK__SUBJECT_O, strlen(TLSOCK__SUBJECT_O));

    if (ret >= 0) {
        ret = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, cn,
                                            (unsigned)strlen(cn));
    }
    if (ret < 0) {
        return gtls_fail(err, TLSOCK_ECONFIG, "subject name", ret);
    }
    return 0;
}

static int set_validity(gnutls_x509_crt_t crt, const struct tlsock__cert_spec *spec,
                        struct tlsock__err *err)
{
    time_t now = time(NULL);
    int ret = gnutls_x509_crt_set_activation_time(crt, now + spec->not_before_s);

    if (ret >= 0) {
        ret = gnutls_x509_crt_set_expiration_time(crt, now + spec->not_after_s);
    }
    if (ret < 0) {
        return gtls_fail(err, TLSOCK_ECONFIG, "validity period", ret);
    }
    return 0;
}

/* GnuTLS's keyUsage flags for the RFC 5280 bits certspec.h chose. */
static unsigned gnutls_key_usage(unsigned bits)
{
    static const struct {
        int bit;
        unsigned flag;
    } map[] = {
        {TLSOCK__KU_DIGITAL_SIGNATURE, GNUTLS_KEY_DIGITAL_SIGNATURE},
        {TLSOCK__KU_KEY_ENCIPHERMENT, GNUTLS_KEY_KEY_ENCIPHERMENT},
        {TLSOCK__KU_KEY_CERT_SIGN, GNUTLS_KEY_KEY_CERT_SIGN},
        {TLSOCK__KU_CRL_SIGN, GNUTLS_KEY_CRL_SIGN},
    };
    unsigned flags = 0;

    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if ((bits & 1u << map[i].bit) != 0) {
            flags |= map[i].flag;
        }
    }
    return flags;
}

static int add_san(const struct tlsock__san_entry *entry, void *arg, struct tlsock__err *err)
{
    gnutls_x509_crt_t crt = arg;
    int ret;

    if (entry->is_ip) {
        ret = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, entry->ip,
                                                   (unsigned)entry->ip_len, GNUTLS_FSAN_APPEND);
    } else {
        ret = gnutls_x509_crt_set_subject_alt_name(
            crt, GNUTLS_SAN_DNSNAME, entry->dns, (unsigned)strlen(entry->dns), GNUTLS_FSAN_APPEND);
    }
    if (ret < 0) {
        return gtls_fail(err, TLSOCK_ECONFIG, "subjectAltName", ret);
    }
    return 0;
}

static int add_eku(gnutls_x509_crt_t crt, int eku, struct tlsock__err *err)
{
    int ret = 0;

    if ((eku & TLSOCK__EKU_SERVER) != 0) {
        ret = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0);
    }
    if (ret >= 0 && (eku & TLSOCK__EKU_CLIENT) != 0) {
        ret = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_CLIENT, 0);
    }
    if (ret >= 0 && (eku & TLSOCK__EKU_OCSP) != 0) {
        ret = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_OCSP_SIGNING, 0);
    }
    if (ret < 0) {
        return gtls_fail(err, TLSOCK_ENOMEM, "extendedKeyUsage", ret);
    }
    return 0;
}

/*
 * The authority key identifier must equal the issuer's subjectKeyIdentifier when it has one, so
 * that path building matches them; an issuer without one gets the RFC 5280 method (1) value.
 */
static int add_authority_key_id(gnutls_x509_crt_t crt, gnutls_x509_crt_t issuer,
                                struct tlsock__err *err)
{
    unsigned char id[64];
    size_t len = sizeof(id);
    unsigned critical = 0;
    int ret = gnutls_x509_crt_get_subject_key_id(issuer, id, &len, &critical);

    if (ret == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) {
        int rc = key_id_of(issuer, id, err);
        if (rc != 0) {
            return rc;
        }
        len = KEY_ID_SIZE;
    } else if (ret < 0) {
        return gtls_fail(err, TLSOCK_ECONFIG, "issuer's subjectKeyIdentifier", ret);
    }
    ret = gnutls_x509_crt_set_authority_key_id(crt, id, len);
    if (ret < 0) {
        return gtls_fail(err, TLSOCK_ENOMEM, "authorityKeyIdentifier", ret);
    }
    return 0;
}

/* RFC 7633 "must staple": a TLS feature extension listing status_request (5), not critical. */
static int add_must_staple(gnutls_x509_crt_t crt, bool must_staple, struct tlsock__err *err)
{
    gnutls_x509_tlsfeatures_t features = NULL;

    if (!must_staple) {
        return 0;
    }
    int ret = gnutls_x509_tlsfeatures_init(&features);
    if (ret >= 0) {
        ret = gnutls_x509_tlsfeatures_add(features, 5);
    }
    if (ret >= 0) {
        ret = gnutls_x509_crt_set_tlsfeatures(crt, features);
    }
    if (features != NULL) {
        gnutls_x509_tlsfeatures_deinit(features);
    }
    if (ret < 0) {
        return gtls_fail(err, TLSOCK_ENOMEM, "TLS feature", ret);
    }
    return 0;
}

/* A critical nameConstraints extension permitting the one DNS subtree @p dns (NULL: none). */
static int add_name_constraints(gnutls_x509_crt_t crt, const char *dns, struct tlsock__err *err)
{
    gnutls_x509_name_constraints_t nc = NULL;

    if (dns == NULL) {
        return 0;
    }
    gnutls_datum_t name = {.data = (unsigned char *)dns, .size = (unsigned)strlen(dns)};
    int ret = gnutls_x509_name_constraints_init(&nc);
    if (ret >= 0) {
        ret = gnutls_x509_name_constraints_add_permitted(nc, GNUTLS_SAN_DNSNAME, &name);
    }
    if (ret >= 0) {
        ret = gnutls_x509_crt_set_name_constraints(crt, nc, 1);
    }
    if (nc != NULL) {
        gnutls_x509_name_constraints_deinit(nc);
    }
    if (ret < 0) {
        return gtls_fail(err, TLSOCK_ENOMEM, "nameConstraints", ret);
    }
    return 0;
}

/* The extensions, in the order and with the criticality of openssl_certgen.c. */
static int add_extensions(gnutls_x509_crt_t crt, const struct tlsock__cert_spec *spec,
                          enum tlsock__key_kind kind, gnutls_x509_crt_t issuer,
                          struct tlsock__err *err)
{
    unsigned char skid[KEY_ID_SIZE];
    int rc = 0;
    /* Critical; no pathLenConstraint (-1). */
    int ret = gnutls_x509_crt_set_basic_constraints(crt, spec->is_ca ? 1 : 0, -1);

    if (ret >= 0) {
        /* gnutls_x509_crt_set_key_usage marks the extension critical. */
        ret = gnutls_x509_crt_set_key_usage(crt,
                                            gnutls_key_usage(tlsock__cert_key_usage(spec, kind)));
    }
    if (ret < 0) {
        return gtls_fail(err, TLSOCK_ENOMEM, "basicConstraints and keyUsage", ret);
    }
    rc = add_eku(crt, spec->eku, err);
    if (rc == 0) {
        rc = add_must_staple(crt, spec->must_staple, err);
    }
    if (rc == 0) {
        rc = add_name_constraints(crt, spec->permitted_dns, err);
    }
    if (rc == 0) {
        rc = tlsock__cert_hosts_each(spec->hosts, add_san, crt, err);
    }
    if (rc == 0) {
        rc = key_id_of(crt, skid, err);
    }
    if (rc == 0) {
        ret = gnutls_x509_crt_set_subject_key_id(crt, skid, sizeof(skid));
        if (ret < 0) {
            rc = gtls_fail(err, TLSOCK_ENOMEM, "subjectKeyIdentifier", ret);
        }
    }
    if (rc == 0 && issuer != NULL) {
        rc = add_authority_key_id(crt, issuer, err);
    }
    return rc;
}

/* Builds and signs the certificate for @p key; @p issuer NULL means self-signed. */
static int build_cert(const struct tlsock__cert_spec *spec, gnutls_x509_privkey_t key,
                      enum tlsock__key_kind kind, gnutls_x509_crt_t issuer,
                      gnutls_x509_privkey_t issuer_key, gnutls_x509_crt_t *out,
                      struct tlsock__err *err)
{
    gnutls_x509_crt_t crt = NULL;
    int rc = 0;
    int ret = gnutls_x509_crt_init(&crt);

    if (ret < 0) {
        return gtls_fail(err, TLSOCK_ENOMEM, "new certificate", ret);
    }
    /* Version 3 (GnuTLS counts from 1) is required for extensions. */
    ret = gnutls_x509_crt_set_version(crt, 3);
    if (ret >= 0) {
        ret = gnutls_x509_crt_set_key(crt, key);
    }
    if (ret < 0) {
        rc = gtls_fail(err, TLSOCK_ENOMEM, "new certificate", ret);
        goto out;
    }
    rc = set_serial(crt, err);
    if (rc == 0) {
        rc = set_subject(crt, tlsock__cert_spec_cn(spec), err);
    }
    if (rc == 0) {
        rc = set_validity(crt, spec, err);
    }
    if (rc == 0) {
        rc = add_extensions(crt, spec, kind, issuer, err);
    }
    if (rc != 0) {
        goto out;
    }
    /* Signing copies the issuer's subject into the certificate's issuer name. */
    ret = gnutls_x509_crt_sign2(crt, issuer != NULL ? issuer : crt,
                                issuer_key != NULL ? issuer_key : key,
                                spec->sha1 ? GNUTLS_DIG_SHA1 : GNUTLS_DIG_SHA256, 0);
    if (ret < 0) {
        rc = gtls_fail(err, TLSOCK_ECONFIG, "signing the certificate", ret);
        goto out;
    }
    *out = crt;
    crt = NULL;

out:
    gnutls_x509_crt_deinit(crt);
    return rc;
}

static int write_pem(gnutls_x509_crt_t cert, gnutls_x509_privkey_t key,
                     struct tlsock__pem_pair *out, struct tlsock__err *err)
{
    gnutls_datum_t cert_pem = {NULL, 0};
    gnutls_datum_t key_pem = {NULL, 0};
    int rc = 0;
    int ret = gnutls_x509_crt_export2(cert, GNUTLS_X509_FMT_PEM, &cert_pem);

    /* Unencrypted PKCS#8 ("BEGIN PRIVATE KEY"), as OpenSSL's generator writes. */
    if (ret >= 0) {
        ret = gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN,
                                                &key_pem);
    }
    if (ret < 0) {
        rc = gtls_fail(err, TLSOCK_ENOMEM, "PEM output", ret);
    } else {
        rc =
            tlsock__cert_output(cert_pem.data, cert_pem.size, key_pem.data, key_pem.size, out, err);
    }
    if (key_pem.data != NULL) {
        gnutls_memset(key_pem.data, 0, key_pem.size);
    }
    gnutls_free(key_pem.data);
    gnutls_free(cert_pem.data);
    return rc;
}

int tlsock__gtls_cert_generate(const struct tlsock__cert_spec *spec, struct tlsock__pem_pair *out,
                               struct tlsock__err *err)
{
    gnutls_x509_crt_t issuer = NULL;
    gnutls_x509_privkey_t issuer_key = NULL;
    gnutls_x509_privkey_t key = NULL;
    gnutls_x509_crt_t cert = NULL;
    enum tlsock__key_kind kind = TLSOCK__KEY_EC_P256;
    int rc = tlsock__cert_spec_check(spec, out, &kind, err);

    if (rc != 0) {
        return rc;
    }
    if (spec->issuer_cert_pem != NULL) {
        rc = load_issuer(spec, &issuer, &issuer_key, err);
        if (rc != 0) {
            return rc;
        }
    }
    rc = generate_key(kind, &key, err);
    if (rc == 0) {
        rc = build_cert(spec, key, kind, issuer, issuer_key, &cert, err);
    }
    if (rc == 0) {
        rc = write_pem(cert, key, out, err);
    }
    gnutls_x509_crt_deinit(cert);
    gnutls_x509_privkey_deinit(key);
    gnutls_x509_privkey_deinit(issuer_key);
    gnutls_x509_crt_deinit(issuer);
    return rc;
}

int tlsock__gtls_cert_fingerprint(const char *pem, size_t len, char out[TLSOCK_FINGERPRINT_SIZE],
                                  struct tlsock__err *err)
{
    gnutls_x509_crt_t crt = NULL;
    gnutls_datum_t data = datum_of(pem, len);
    unsigned char md[32];
    size_t md_len = sizeof(md);
    int rc = 0;
    int ret;

    if (pem == NULL || out == NULL) {
        return tlsock__fail(err, TLSOCK_EINVAL, "certificate fingerprint: NULL argument");
    }
    /* A gnutls_datum_t holds an unsigned length. */
    if (len == 0 || len > UINT_MAX) {
        return tlsock__fail(err, TLSOCK_ECONFIG, "certificate fingerprint: bad PEM length %zu",
                            len);
    }
    ret = gnutls_x509_crt_init(&crt);
    if (ret < 0) {
        return gtls_fail(err, TLSOCK_ENOMEM, "certificate fingerprint", ret);
    }
    /* Imports the first certificate of the PEM, reading only @p len bytes. */
    ret = gnutls_x509_crt_import(crt, &data, GNUTLS_X509_FMT_PEM);
    if (ret < 0) {
        rc = gtls_fail(err, TLSOCK_ECONFIG, "certificate fingerprint: no PEM certificate", ret);
        goto out;
    }
    ret = gnutls_x509_crt_get_fingerprint(crt, GNUTLS_DIG_SHA256, md, &md_len);
    if (ret < 0 || md_len != sizeof(md)) {
        rc = gtls_fail(err, TLSOCK_ECONFIG, "certificate fingerprint: SHA-256",
                       ret < 0 ? ret : GNUTLS_E_INTERNAL_ERROR);
        goto out;
    }
    tlsock__text_fingerprint(md, out);

out:
    gnutls_x509_crt_deinit(crt);
    return rc;
}

int tlsock__gtls_key_encrypt(const char *key_pem, size_t len, const char *pass, char **out,
                             struct tlsock__err *err)
{
    gnutls_x509_privkey_t key = NULL;
    gnutls_datum_t data = datum_of(key_pem, len);
    gnutls_datum_t pem = {NULL, 0};
    int rc = 0;
    int ret;

    if (key_pem == NULL || pass == NULL || out == NULL) {
        return tlsock__fail(err, TLSOCK_EINVAL, "key encryption: NULL argument");
    }
    if (len == 0 || len > UINT_MAX) {
        return tlsock__fail(err, TLSOCK_ECONFIG, "key encryption: bad PEM length %zu", len);
    }
    ret = gnutls_x509_privkey_init(&key);
    if (ret < 0) {
        return gtls_fail(err, TLSOCK_ENOMEM, "key encryption", ret);
    }
    /* Reads "PRIVATE KEY" and the traditional "EC/RSA PRIVATE KEY"; an encrypted one fails. */
    ret = gnutls_x509_privkey_import(key, &data, GNUTLS_X509_FMT_PEM);
    if (ret < 0) {
        rc = gtls_fail(err, TLSOCK_ECONFIG, "key encryption: no unencrypted PEM key", ret);
        goto out;
    }
    /* PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC), as OpenSSL's PKCS#8 output with aes-256-cbc. */
    ret = gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_PEM, pass,
                                            GNUTLS_PKCS_PBES2_AES_256, &pem);
    if (ret < 0) {
        rc = gtls_fail(err, TLSOCK_ENOMEM, "key encryption: PKCS#8 output", ret);
        goto out;
    }
    rc = tlsock__text_output(pem.data, pem.size, out, err);

out:
    if (pem.data != NULL) {
        gnutls_memset(pem.data, 0, pem.size);
    }
    gnutls_free(pem.data);
    gnutls_x509_privkey_deinit(key);
    return rc;
}
