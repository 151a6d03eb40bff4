/*
 * Walks a certificate's DER down to its extensions (RFC 5280 section 4.1): every element is
 * bounds-checked against its parent, and anything unexpected makes the answer "cannot tell".
 */
#include "der.h"

#include <stdbool.h>
#include <string.h>

/* One element: its tag, and its contents [p, p + len). */
struct tlv {
    unsigned char tag;
    const unsigned char *p;
    size_t len;
};

/* Reads the element at *@p at (before @p end) and moves *@p at past it; false if malformed. */
static bool next_tlv(const unsigned char **at, const unsigned char *end, struct tlv *out)
{
    const unsigned char *p = *at;
    size_t len = 0;

    if (end - p < 2 || (p[0] & 0x1f) == 0x1f) {
        return false; /* too short, or a multi-byte tag (none in a certificate's frame) */
    }
    out->tag = p[0];
    if (p[1] < 0x80) {
        len = p[1];
        p += 2;
    } else {
        size_t n = p[1] & 0x7f;
        if (n == 0 || n > 4 || (size_t)(end - p) < 2 + n) {
            return false; /* indefinite, too long for a certificate, or cut */
        }
        for (size_t i = 0; i < n; i++) {
            len = (len << 8) | p[2 + i];
        }
        p += 2 + n;
    }
    if ((size_t)(end - p) < len) {
        return false;
    }
    out->p = p;
    out->len = len;
    *at = p + len;
    return true;
}

/* The extnID of subjectAltName, 2.5.29.17. */
static const unsigned char san_oid[] = {0x55, 0x1d, 0x11};

/* Whether the Extensions SEQUENCE @p exts lists subjectAltName: 1, 0, or -1 if malformed. */
static int extensions_have_san(const struct tlv *exts)
{
    const unsigned char *at = exts->p;
    const unsigned char *end = exts->p + exts->len;

    while (at < end) {
        struct tlv ext;
        struct tlv oid;
        const unsigned char *in = NULL;
        if (!next_tlv(&at, end, &ext) || ext.tag != 0x30) {
            return -1;
        }
        in = ext.p;
        if (!next_tlv(&in, ext.p + ext.len, &oid) || oid.tag != 0x06) {
            return -1;
        }
        if (oid.len == sizeof(san_oid) && memcmp(oid.p, san_oid, sizeof(san_oid)) == 0) {
            return 1;
        }
    }
    return 0;
}

int tlsock__der_has_san(const unsigned char *der, size_t len)
{
    const unsigned char *at = der;
    struct tlv cert;
    struct tlv tbs;

    if (der == NULL || !next_tlv(&at, der + len, &cert) || cert.tag != 0x30) {
        return -1;
    }
    at = cert.p;
    if (!next_tlv(&at, cert.p + cert.len, &tbs) || tbs.tag != 0x30) {
        return -1;
    }
    /* TBSCertificate: [0] version, serial, signature, issuer, validity, subject, SPKI, then the
     * optional [1] and [2] unique IDs and [3] extensions. */
    at = tbs.p;
    const unsigned char *end = tbs.p + tbs.len;
    int fields = 0;
    while (at < end) {
        struct tlv field;
        if (!next_tlv(&at, end, &field)) {
            return -1;
        }
        fields++;
        if (field.tag == 0xa3) {
            struct tlv exts;
            const unsigned char *in = field.p;
            if (!next_tlv(&in, field.p + field.len, &exts) || exts.tag != 0x30) {
                return -1;
            }
            return extensions_have_san(&exts);
        }
    }
    /* Serial, signature, issuer, validity, subject and key at least: a certificate without
     * extensions. */
    return fields >= 6 ? 0 : -1;
}

enum { DER_INTEGER = 0x02, DER_OCTETS = 0x04, DER_SEQUENCE = 0x30, DER_PUBLIC_KEY = 0xa1 };

/* Enters the SEQUENCE at *@p at (*@p end becomes its end) and reads its version, a one-byte
 * INTEGER; -1 when they are not there. */
static int versioned(const unsigned char **at, const unsigned char **end)
{
    struct tlv seq;
    struct tlv version;

    if (!next_tlv(at, *end, &seq) || seq.tag != DER_SEQUENCE) {
        return -1;
    }
    *at = seq.p;
    *end = seq.p + seq.len;
    if (!next_tlv(at, *end, &version) || version.tag != DER_INTEGER || version.len != 1) {
        return -1;
    }
    return version.p[0];
}

bool tlsock__der_ec_key_without_point(const unsigned char *der, size_t len,
                                      const unsigned char **scalar, size_t *scalar_len)
{
    /* AlgorithmIdentifier: id-ecPublicKey (1.2.840.10045.2.1), then the curve. */
    static const unsigned char ec_oid[] = {0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01};
    const unsigned char *at = der;
    const unsigned char *end = der + len;
    struct tlv field;
    int version = versioned(&at, &end);

    if (version == 0) {
        /* PKCS#8 version 0: the algorithm, then the ECPrivateKey in an OCTET STRING. */
        struct tlv algorithm;
        if (!next_tlv(&at, end, &algorithm) || algorithm.tag != DER_SEQUENCE ||
            algorithm.len < sizeof(ec_oid) || memcmp(algorithm.p, ec_oid, sizeof(ec_oid)) != 0 ||
            !next_tlv(&at, end, &field) || field.tag != DER_OCTETS) {
            return false;
        }
        at = field.p;
        end = field.p + field.len;
        version = versioned(&at, &end);
    }
    /* ECPrivateKey version 1: the scalar, then [0] parameters and [1] publicKey if present. */
    if (version != 1 || !next_tlv(&at, end, &field) || field.tag != DER_OCTETS || field.len == 0) {
        return false;
    }
    *scalar = field.p;
    *scalar_len = field.len;
    while (at < end) {
        struct tlv optional;
        if (!next_tlv(&at, end, &optional) || optional.tag == DER_PUBLIC_KEY) {
            return false;
        }
    }
    return true;
}
