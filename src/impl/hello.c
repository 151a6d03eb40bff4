/*
 * A server's decisions on a ClientHello, shared by the implementations; see hello.h.
 */
#include <string.h>

#include "hello.h"

static unsigned get16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/* The bit for TLS 1.0 (0x0301) to 1.3 (0x0304); 0 for anything else (SSL 3.0, GREASE). */
static unsigned version_bit(unsigned v)
{
    return v >= 0x0301 && v <= 0x0304 ? 1u << (v - 0x0301) : 0;
}

void tlsock__hello_init(struct tlsock__hello *h, int legacy_version)
{
    memset(h, 0, sizeof(*h));
    h->legacy_version = legacy_version;
}

/*
 * RFC 6066 section 3: a two-byte list length, then entries of a type byte and a two-byte length;
 * the host_name entry (type 0) is the name. A name tlsock could not hold or compare (too long,
 * holding a NUL) counts as no name, as does a malformed list.
 */
static void take_servername(struct tlsock__hello *h, const unsigned char *data, size_t len)
{
    for (size_t i = 2; len >= 2 && i + 3 <= len;) {
        size_t n = get16(data + i + 1);
        if (i + 3 + n > len) {
            return;
        }
        if (data[i] == 0) {
            if (n > 0 && n < sizeof(h->servername) && memchr(data + i + 3, 0, n) == NULL) {
                memcpy(h->servername, data + i + 3, n);
                h->servername[n] = '\0';
                h->has_servername = true;
            }
            return;
        }
        i += 3 + n;
    }
}

void tlsock__hello_extension(struct tlsock__hello *h, unsigned type, const unsigned char *data,
                             size_t len)
{
    if ((type == TLSOCK__EXT_SESSION_TICKET && len > 0) || type == TLSOCK__EXT_PRE_SHARED_KEY) {
        h->ticket_ext = true;
    }
    if (type == TLSOCK__EXT_SERVER_NAME) {
        take_servername(h, data, len);
    } else if (type == TLSOCK__EXT_SIGNATURE_ALGORITHMS && len >= 2) {
        /* A two-byte length, then two bytes a scheme (RFC 8446 section 4.2.3). */
        h->has_sigalgs = true;
        for (size_t i = 2; i + 1 < len && h->nsigalgs < sizeof(h->sigalgs) / sizeof(h->sigalgs[0]);
             i += 2) {
            h->sigalgs[h->nsigalgs++] = get16(data + i);
        }
    } else if (type == TLSOCK__EXT_RENEGOTIATION_INFO) {
        h->renegotiation = true;
    } else if (type == TLSOCK__EXT_SUPPORTED_GROUPS && len >= 2) {
        /* A two-byte length, then two bytes a group. */
        for (size_t i = 2; i + 1 < len && h->ngroups < sizeof(h->groups) / sizeof(h->groups[0]);
             i += 2) {
            h->groups[h->ngroups++] = get16(data + i);
        }
    } else if (type == TLSOCK__EXT_KEY_SHARE && len >= 2) {
        /* A two-byte length, then entries: group, two-byte length, key. */
        for (size_t i = 2; i + 4 <= len && h->nshares < sizeof(h->shares) / sizeof(h->shares[0]);
             i += 4 + get16(data + i + 2)) {
            h->shares[h->nshares++] = get16(data + i);
        }
    } else if (type == TLSOCK__EXT_SESSION_TICKET && len >= sizeof(h->ticket_name)) {
        memcpy(h->ticket_name, data, sizeof(h->ticket_name));
        h->has_ticket = true;
    } else if (type == TLSOCK__EXT_PRE_SHARED_KEY && len >= 4 + sizeof(h->ticket_name) &&
               get16(data + 2) >= sizeof(h->ticket_name) && 4 + get16(data + 2) <= len) {
        /* identities' two-byte length, then the first identity's two-byte length and bytes. */
        memcpy(h->ticket_name, data + 4, sizeof(h->ticket_name));
        h->has_ticket = true;
    } else if (type == TLSOCK__EXT_SUPPORTED_VERSIONS && len >= 1) {
        /* A one-byte length, then two bytes a version. */
        h->has_versions = true;
        for (size_t i = 1; i + 1 < len && i + 1 <= data[0]; i += 2) {
            h->versions |= version_bit(get16(data + i));
        }
    }
}

/*
 * Whether a TLS 1.2 suite is authenticated by ECDSA (1) or by RSA (2) certificates, else 0: the
 * suites either implementation offers (IANA TLS Cipher Suites registry; RFC 8422, 5289, 7905,
 * 5288, 5246, 7251, 6655).
 */
static int suite_auth(unsigned suite)
{
    static const unsigned ecdsa[] = {0xc009, 0xc00a, 0xc023, 0xc024, 0xc02b, 0xc02c,
                                     0xcca9, 0xc0ac, 0xc0ad, 0xc0ae, 0xc0af};
    static const unsigned rsa[] = {0x002f, 0x0035, 0x003c, 0x003d, 0x0033, 0x0039, 0x0067,
                                   0x006b, 0x009c, 0x009d, 0x009e, 0x009f, 0xc013, 0xc014,
                                   0xc027, 0xc028, 0xc02f, 0xc030, 0xcca8, 0xccaa, 0xc09c,
                                   0xc09d, 0xc09e, 0xc09f, 0xc0a0, 0xc0a1, 0xc0a2, 0xc0a3};

    for (size_t i = 0; i < sizeof(ecdsa) / sizeof(ecdsa[0]); i++) {
        if (ecdsa[i] == suite) {
            return 1;
        }
    }
    for (size_t i = 0; i < sizeof(rsa) / sizeof(rsa[0]); i++) {
        if (rsa[i] == suite) {
            return 2;
        }
    }
    return 0;
}

static void take_suite(struct tlsock__hello *h, unsigned suite)
{
    if (suite == TLSOCK__SUITE_RENEGOTIATION_SCSV) {
        h->renegotiation = true;
    }
    h->suites_ecdsa = h->suites_ecdsa || suite_auth(suite) == 1;
    h->suites_rsa = h->suites_rsa || suite_auth(suite) == 2;
}

void tlsock__hello_suites(struct tlsock__hello *h, const unsigned char *suites, size_t len)
{
    for (size_t i = 0; i + 1 < len; i += 2) {
        take_suite(h, get16(suites + i));
    }
}

void tlsock__hello_suites_v2(struct tlsock__hello *h, const unsigned char *specs, size_t len)
{
    /* Specs whose first byte is not 0 are SSL 2.0 ciphers: no TLS suite, never chosen. */
    for (size_t i = 0; i + 2 < len; i += 3) {
        if (specs[i] == 0) {
            take_suite(h, get16(specs + i + 1));
        }
    }
}

bool tlsock__hello_parse_v2(struct tlsock__hello *h, const unsigned char *b, size_t len)
{
    /* Four two-byte fields: version, then the lengths of the specs, session id and challenge. */
    if (len < 8) {
        return false;
    }
    size_t specs = get16(b + 2);
    size_t rest = (size_t)get16(b + 4) + get16(b + 6);

    if (specs % 3 != 0 || 8 + specs + rest != len) {
        return false;
    }
    tlsock__hello_init(h, (int)get16(b));
    tlsock__hello_suites_v2(h, b + 8, specs);
    return true;
}

bool tlsock__hello_parse(struct tlsock__hello *h, const unsigned char *b, size_t len)
{
    /* RFC 8446 section 4.1.2: version, random, session id, suites, compression, extensions. */
    size_t off = 2 + 32;

    if (len < off + 1) {
        return false;
    }
    tlsock__hello_init(h, (int)get16(b));
    if (b[off] <= sizeof(h->session_id) && off + 1 + b[off] <= len) {
        h->session_id_len = b[off];
        memcpy(h->session_id, b + off + 1, h->session_id_len);
    }
    off += 1 + b[off];
    if (off + 2 > len || off + 2 + get16(b + off) > len) {
        return false;
    }
    tlsock__hello_suites(h, b + off + 2, get16(b + off));
    off += 2 + get16(b + off);
    if (off + 1 > len) {
        return false;
    }
    off += 1 + b[off];
    if (off == len) {
        return true; /* no extensions at all (RFC 5246 section 7.4.1.2) */
    }
    if (off + 2 > len || off + 2 + get16(b + off) != len) {
        return false;
    }
    for (off += 2; off + 4 <= len; off += 4 + get16(b + off + 2)) {
        size_t n = get16(b + off + 2);
        if (off + 4 + n > len) {
            return false;
        }
        tlsock__hello_extension(h, get16(b + off), b + off + 4, n);
    }
    return off == len;
}

int tlsock__hello_version(const struct tlsock__hello *h, int min_version, int max_version)
{
    if (h->has_versions) {
        for (int v = max_version; v >= min_version; v--) {
            if (h->versions & version_bit((unsigned)v)) {
                return v;
            }
        }
        return 0;
    }
    /* Without supported_versions, up to TLS 1.2: the client's version or the server's highest. */
    int v = h->legacy_version < max_version ? h->legacy_version : max_version;
    if (v > 0x0303) {
        v = 0x0303;
    }
    return v >= min_version ? v : 0;
}

unsigned tlsock__hello_share(const struct tlsock__hello *h,
                             bool (*usable)(unsigned group, const void *arg), const void *arg)
{
    /* RFC 8446 section 4.2.8: each share must be for a group the client lists. */
    for (size_t i = 0; i < h->nshares; i++) {
        for (size_t j = 0; j < h->ngroups; j++) {
            if (h->groups[j] == h->shares[i] && usable(h->shares[i], arg)) {
                return h->shares[i];
            }
        }
    }
    return 0;
}

const char *tlsock__hello_refusal(const struct tlsock__hello *h, int min_version, int max_version)
{
    int version = tlsock__hello_version(h, min_version, max_version);

    /* No common version is refused for that reason, by the implementation. */
    if (version != 0 && version <= 0x0303 && !h->renegotiation) {
        return "the client does not support secure renegotiation (RFC 5746), which TLS 1.2 and "
               "older require";
    }
    return NULL;
}
