/*
 * What both certificate generators decide alike about a struct tlsock__cert_spec: which arguments
 * are refused and with which message, the key type, the subject's common name, the serial
 * number's shape and how the host list splits into subjectAltName entries. Each generator then
 * builds the certificate with its own library, so that a certificate made by one is the same in
 * substance (names, extensions, criticality, validity) as one made by the other.
 */
#ifndef TLSOCK_IMPL_CERTSPEC_H
#define TLSOCK_IMPL_CERTSPEC_H

#include <stdbool.h>
#include <stddef.h>

#include "impl.h"

/* RFC 5280 4.1.2.2: positive, at most 20 octets; 16 random octets make collisions negligible. */
#define TLSOCK__SERIAL_BYTES 16

/* The subject's organization; the common name is the spec's, or TLSOCK__DEFAULT_CN. */
#define TLSOCK__SUBJECT_O  "tlsock"
#define TLSOCK__DEFAULT_CN "tlsock development"

enum tlsock__key_kind {
    TLSOCK__KEY_EC_P256,
    TLSOCK__KEY_RSA_2048,
    TLSOCK__KEY_RSA_1024,
};

/* keyUsage bit numbers, RFC 5280 4.2.1.3. */
enum {
    TLSOCK__KU_DIGITAL_SIGNATURE = 0,
    TLSOCK__KU_KEY_ENCIPHERMENT = 2,
    TLSOCK__KU_KEY_CERT_SIGN = 5,
    TLSOCK__KU_CRL_SIGN = 6,
};

/*
 * Checks @p spec before anything is made and clears @p out (when not NULL): NULL arguments
 * (TLSOCK_EINVAL), a validity that ends before it starts, an issuer certificate without its key
 * or the reverse, an unknown key type, unknown EKU bits, a common name that is not 1 to 64 UTF-8
 * characters, a malformed host list (TLSOCK_ECONFIG). Sets @p kind from the key type.
 */
int tlsock__cert_spec_check(const struct tlsock__cert_spec *spec, struct tlsock__pem_pair *out,
                            enum tlsock__key_kind *kind,
                            struct tlsock__err *err) TLSOCK__MUST_CHECK;

/* The subject's common name: the spec's, or TLSOCK__DEFAULT_CN. */
const char *tlsock__cert_spec_cn(const struct tlsock__cert_spec *spec);

/*
 * The keyUsage bits (1 << TLSOCK__KU_*) of a certificate: keyCertSign and cRLSign for a CA;
 * digitalSignature for a leaf, and keyEncipherment too for an RSA key (TLS 1.2 RSA key transport
 * encrypts with the certificate's key), unless the spec gives its own bits (tests of certificates
 * with the wrong key usage). The extension is critical.
 */
unsigned tlsock__cert_key_usage(const struct tlsock__cert_spec *spec, enum tlsock__key_kind kind);

/* Shapes random bytes into a serial: sign bit clear (positive) and the next bit set, so the
 * serial is always TLSOCK__SERIAL_BYTES long and never zero. */
void tlsock__cert_serial_shape(unsigned char serial[TLSOCK__SERIAL_BYTES]);

/*
 * Hands the PEM texts to the caller: malloc'd NUL-terminated copies of @p cert_len bytes at
 * @p cert and @p key_len at @p key in @p out, both or neither (TLSOCK_ENOMEM).
 */
int tlsock__cert_output(const void *cert, size_t cert_len, const void *key, size_t key_len,
                        struct tlsock__pem_pair *out, struct tlsock__err *err) TLSOCK__MUST_CHECK;

/* A malloc'd NUL-terminated copy of the @p len bytes at @p text in @p *out (TLSOCK_ENOMEM). */
int tlsock__text_output(const void *text, size_t len, char **out,
                        struct tlsock__err *err) TLSOCK__MUST_CHECK;

/* One subjectAltName entry of the host list. */
struct tlsock__san_entry {
    bool is_ip;
    const char *dns;      /* the DNS name, NUL-terminated (when !is_ip) */
    unsigned char ip[16]; /* the address (when is_ip) */
    size_t ip_len;        /* 4 or 16 */
};

typedef int (*tlsock__san_fn)(const struct tlsock__san_entry *entry, void *arg,
                              struct tlsock__err *err);

/*
 * Calls @p fn for each entry of the comma-separated @p hosts, in order; blanks around entries
 * are ignored. An entry that parses as an IPv4 or IPv6 address is an IP entry, else it must be a
 * DNS name (letters, digits, '-', '.', '_', '*'). NULL or "" has no entries. Returns 0, the
 * first code @p fn returns, or TLSOCK_ECONFIG for an empty, over-long or malformed entry.
 */
int tlsock__cert_hosts_each(const char *hosts, tlsock__san_fn fn, void *arg,
                            struct tlsock__err *err) TLSOCK__MUST_CHECK;

#endif /* TLSOCK_IMPL_CERTSPEC_H */
