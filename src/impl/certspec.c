/*
 * What both certificate generators decide alike; see certspec.h.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "certspec.h"

/* RFC 1035 2.3.4: a full domain name is at most 253 characters in text form. */
#define MAX_HOST_LEN 253

/* X.520 ub-common-name: a CN is 1 to 64 characters. */
#define MAX_CN_CHARS 64

/* The characters of a UTF-8 string, or -1 when it is not valid UTF-8 (a stray continuation
 * byte, a sequence cut short, a lead byte no sequence starts with). */
static long utf8_chars(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    long chars = 0;

    while (*p != '\0') {
        int follow;
        if (*p < 0x80) {
            follow = 0;
        } else if (*p >= 0xc2 && *p <= 0xdf) {
            follow = 1;
        } else if (*p >= 0xe0 && *p <= 0xef) {
            follow = 2;
        } else if (*p >= 0xf0 && *p <= 0xf4) {
            follow = 3;
        } else {
            return -1;
        }
        p++;
        for (int i = 0; i < follow; i++, p++) {
            if ((*p & 0xc0) != 0x80) {
                return -1;
            }
        }
        chars++;
    }
    return chars;
}

static int check_key_type(const char *key_type, enum tlsock__key_kind *kind,
                          struct tlsock__err *err)
{
    if (key_type == NULL || strcmp(key_type, "ec-p256") == 0) {
        *kind = TLSOCK__KEY_EC_P256;
    } else if (strcmp(key_type, "rsa-2048") == 0) {
        *kind = TLSOCK__KEY_RSA_2048;
    } else if (strcmp(key_type, "rsa-1024") == 0) {
        *kind = TLSOCK__KEY_RSA_1024;
    } else {
        return tlsock__fail(err, TLSOCK_ECONFIG,
                            "unknown key type \"%.64s\" (expected ec-p256, rsa-2048 or rsa-1024)",
                            key_type);
    }
    return 0;
}

static int ignore_entry(const struct tlsock__san_entry *entry, void *arg, struct tlsock__err *err)
{
    (void)entry;
    (void)arg;
    (void)err;
    return 0;
}

int tlsock__cert_spec_check(const struct tlsock__cert_spec *spec, struct tlsock__pem_pair *out,
                            enum tlsock__key_kind *kind, struct tlsock__err *err)
{
    int rc;

    if (out != NULL) {
        out->cert = NULL;
        out->key = NULL;
    }
    if (spec == NULL || out == NULL || kind == NULL) {
        return tlsock__fail(err, TLSOCK_EINVAL, "certificate generation: NULL argument");
    }
    if (spec->not_after_s < spec->not_before_s) {
        return tlsock__fail(err, TLSOCK_ECONFIG,
                            "certificate would expire (%+lds) before it is valid (%+lds)",
                            spec->not_after_s, spec->not_before_s);
    }
    if ((spec->issuer_cert_pem == NULL) != (spec->issuer_key_pem == NULL)) {
        return tlsock__fail(err, TLSOCK_ECONFIG,
                            "issuer certificate and issuer key must be given together");
    }
    rc = check_key_type(spec->key_type, kind, err);
    if (rc != 0) {
        return rc;
    }
    if ((spec->eku & ~(TLSOCK__EKU_SERVER | TLSOCK__EKU_CLIENT | TLSOCK__EKU_OCSP)) != 0) {
        return tlsock__fail(err, TLSOCK_ECONFIG, "unknown extended key usage bits 0x%x",
                            (unsigned)spec->eku);
    }
    long chars = utf8_chars(tlsock__cert_spec_cn(spec));
    if (chars < 1 || chars > MAX_CN_CHARS) {
        return tlsock__fail(err, TLSOCK_ECONFIG, "invalid common name (1 to 64 UTF-8 characters)");
    }
    return tlsock__cert_hosts_each(spec->hosts, ignore_entry, NULL, err);
}

const char *tlsock__cert_spec_cn(const struct tlsock__cert_spec *spec)
{
    return spec->common_name != NULL ? spec->common_name : TLSOCK__DEFAULT_CN;
}

unsigned tlsock__cert_key_usage(const struct tlsock__cert_spec *spec, enum tlsock__key_kind kind)
{
    if (spec->key_usage != 0) {
        return spec->key_usage;
    }
    if (spec->is_ca) {
        return 1u << TLSOCK__KU_KEY_CERT_SIGN | 1u << TLSOCK__KU_CRL_SIGN;
    }
    if (kind == TLSOCK__KEY_EC_P256) {
        return 1u << TLSOCK__KU_DIGITAL_SIGNATURE;
    }
    return 1u << TLSOCK__KU_DIGITAL_SIGNATURE | 1u << TLSOCK__KU_KEY_ENCIPHERMENT;
}

void tlsock__cert_serial_shape(unsigned char serial[TLSOCK__SERIAL_BYTES])
{
    serial[0] = (unsigned char)((serial[0] & 0x7f) | 0x40);
}

int tlsock__cert_output(const void *cert, size_t cert_len, const void *key, size_t key_len,
                        struct tlsock__pem_pair *out, struct tlsock__err *err)
{
    char *cert_text = malloc(cert_len + 1);
    char *key_text = malloc(key_len + 1);

    if (cert_text == NULL || key_text == NULL) {
        free(cert_text);
        free(key_text);
        return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory for PEM output");
    }
    memcpy(cert_text, cert, cert_len);
    cert_text[cert_len] = '\0';
    memcpy(key_text, key, key_len);
    key_text[key_len] = '\0';
    out->cert = cert_text;
    out->key = key_text;
    return 0;
}

int tlsock__text_output(const void *text, size_t len, char **out, struct tlsock__err *err)
{
    char *copy = malloc(len + 1);

    if (copy == NULL) {
        return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory for PEM output");
    }
    memcpy(copy, text, len);
    copy[len] = '\0';
    *out = copy;
    return 0;
}

/* Letters, digits, '-', '.', '_' (seen in real names) and '*' (wildcards). */
static bool is_dns_name(const char *s)
{
    bool ok = s[0] != '\0';

    for (const char *p = s; ok && *p != '\0'; p++) {
        char c = *p;
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '-' || c == '.' || c == '_' || c == '*';
    }
    return ok;
}

/* Classifies one entry and hands it to @p fn. */
static int one_entry(const char *host, tlsock__san_fn fn, void *arg, struct tlsock__err *err)
{
    struct tlsock__san_entry entry = {.dns = host};

    if (inet_pton(AF_INET, host, entry.ip) == 1) {
        entry.is_ip = true;
        entry.ip_len = 4;
    } else if (inet_pton(AF_INET6, host, entry.ip) == 1) {
        entry.is_ip = true;
        entry.ip_len = 16;
    } else if (!is_dns_name(host)) {
        return tlsock__fail(err, TLSOCK_ECONFIG,
                            "\"%s\" is neither an IP address nor a DNS name for subjectAltName",
                            host);
    }
    return fn(&entry, arg, err);
}

int tlsock__cert_hosts_each(const char *hosts, tlsock__san_fn fn, void *arg,
                            struct tlsock__err *err)
{
    int rc = 0;
    const char *p = hosts;
    char host[MAX_HOST_LEN + 1];

    if (hosts == NULL || hosts[0] == '\0') {
        return 0;
    }
    /* Each pass consumes one entry; the loop ends after the entry with no comma after it. */
    while (rc == 0 && p != NULL) {
        const char *comma = strchr(p, ',');
        const char *end = comma != NULL ? comma : p + strlen(p);
        size_t len;

        while (p < end && (*p == ' ' || *p == '\t')) {
            p++;
        }
        while (end > p && (end[-1] == ' ' || end[-1] == '\t')) {
            end--;
        }
        len = (size_t)(end - p);
        if (len == 0 || len > MAX_HOST_LEN) {
            rc = tlsock__fail(err, TLSOCK_ECONFIG,
                              "empty or over-long entry in host list \"%.200s\"", hosts);
        } else {
            memcpy(host, p, len);
            host[len] = '\0';
            rc = one_entry(host, fn, arg, err);
        }
        p = comma != NULL ? comma + 1 : NULL;
    }
    return rc;
}
