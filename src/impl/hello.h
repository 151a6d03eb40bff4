/*
 * What a server decides from a client's ClientHello the same way whatever its implementation:
 * each implementation hands over the raw facts (the legacy version, the cipher suites, the
 * extensions it has) and asks here. No TLS library's types appear.
 */
#ifndef TLSOCK_IMPL_HELLO_H
#define TLSOCK_IMPL_HELLO_H

#include <stdbool.h>
#include <stddef.h>

/* Extension and cipher suite code points used here (IANA TLS registries). */
enum {
    TLSOCK__EXT_SERVER_NAME = 0,               /* RFC 6066 section 3 */
    TLSOCK__EXT_SUPPORTED_GROUPS = 10,         /* RFC 8446 section 4.2.7 */
    TLSOCK__EXT_KEY_SHARE = 51,                /* RFC 8446 section 4.2.8 */
    TLSOCK__EXT_SIGNATURE_ALGORITHMS = 13,     /* RFC 8446 section 4.2.3 */
    TLSOCK__EXT_SUPPORTED_VERSIONS = 43,       /* RFC 8446 section 4.2.1 */
    TLSOCK__EXT_RENEGOTIATION_INFO = 0xff01,   /* RFC 5746 section 3.2 */
    TLSOCK__EXT_SESSION_TICKET = 35,           /* RFC 5077 section 3.2 */
    TLSOCK__EXT_PRE_SHARED_KEY = 41,           /* RFC 8446 section 4.2.11 */
    TLSOCK__SUITE_RENEGOTIATION_SCSV = 0x00ff, /* RFC 5746 section 3.3 */
    TLSOCK__ALERT_HANDSHAKE_FAILURE = 40,
    TLSOCK__ALERT_INTERNAL_ERROR = 80,
    TLSOCK__ALERT_UNRECOGNIZED_NAME = 112,
};

struct tlsock__hello {
    int legacy_version;  /* ClientHello.legacy_version (client_version before TLS 1.3) */
    bool has_versions;   /* a supported_versions extension was present */
    unsigned versions;   /* its TLS 1.0 to 1.3 entries: bit (minor - 1) for 0x03<minor> */
    bool renegotiation;  /* renegotiation_info or the SCSV: RFC 5746's signal */
    unsigned groups[32]; /* supported_groups (named group code points), the first ones */
    size_t ngroups;
    unsigned shares[8]; /* the groups of key_share's entries, in the client's order */
    size_t nshares;
    bool has_servername;  /* server_name carried a host_name (RFC 6066 section 3) */
    char servername[256]; /* that name, NUL-terminated; longer or with a NUL: ignored */
    bool has_sigalgs;     /* a signature_algorithms extension was present */
    unsigned sigalgs[64]; /* its schemes (code points), the first ones */
    size_t nsigalgs;
    bool suites_ecdsa; /* cipher_suites offers a TLS 1.2 suite authenticated by ECDSA */
    bool suites_rsa;   /* ... or by RSA */
    /*
     * The first 16 bytes of the ticket offered (session_ticket, or pre_shared_key's first
     * identity): the key name of tickets tlsock's servers make (ticket_keys.h).
     */
    bool has_ticket;
    unsigned char ticket_name[16];
    /* legacy_session_id (tlsock__hello_parse() only): a TLS 1.2 client's resumption attempt, or
     * TLS 1.3's middlebox compatibility bytes (RFC 8446 appendix D.4). */
    unsigned char session_id[32];
    size_t session_id_len;
    bool ticket_ext; /* a non-empty session_ticket, or a pre_shared_key extension, is present */
};

/* Starts @p h for a ClientHello whose legacy_version is @p legacy_version. */
void tlsock__hello_init(struct tlsock__hello *h, int legacy_version);
/* Takes in one extension (its type and body); unknown ones change nothing. */
void tlsock__hello_extension(struct tlsock__hello *h, unsigned type, const unsigned char *data,
                             size_t len);
/* Takes in the cipher_suites vector's body (two bytes a suite). */
void tlsock__hello_suites(struct tlsock__hello *h, const unsigned char *suites, size_t len);
/*
 * Takes in the cipher_specs of an SSLv2-format ClientHello (RFC 5246 appendix E.2: three bytes a
 * spec; a TLS suite is 0x00 and its two bytes). Such a hello carries no extensions, so the SCSV
 * among them is its only renegotiation signal (RFC 5746 section 3.3).
 */
void tlsock__hello_suites_v2(struct tlsock__hello *h, const unsigned char *specs, size_t len);
/*
 * Parses an SSLv2-format ClientHello as GnuTLS's hook gives it: from its version on (version,
 * cipher_spec_length, session_id_length, challenge_length, then the three). False if malformed.
 */
bool tlsock__hello_parse_v2(struct tlsock__hello *h, const unsigned char *body, size_t len);
/* Parses a whole ClientHello body (after the handshake header); false if it is malformed. */
bool tlsock__hello_parse(struct tlsock__hello *h, const unsigned char *body, size_t len);

/*
 * The version a server enabling @p min_version to @p max_version (0x0301 to 0x0304) negotiates
 * with this hello: the highest offered one it enables (RFC 8446 section 4.2.1, and RFC 5246
 * appendix E.1 without supported_versions); 0 when there is none.
 */
int tlsock__hello_version(const struct tlsock__hello *h, int min_version, int max_version);

/*
 * The group of the first key share (in the client's order) that the client also lists in
 * supported_groups and that @p usable (called with a named group's code point) accepts; 0 when
 * there is none. Using it saves a HelloRetryRequest; OpenSSL's server picks the same one.
 */
unsigned tlsock__hello_share(const struct tlsock__hello *h,
                             bool (*usable)(unsigned group, const void *arg), const void *arg);

/*
 * Why a server refuses this hello, or NULL to go on. Its alert is handshake_failure.
 *
 * RFC 5746 section 4.3: renegotiation exists in TLS 1.2 and below, where a client that does not
 * signal secure renegotiation is refused; TLS 1.3 has none (RFC 8446 section 4.1.2), so a hello
 * that will negotiate TLS 1.3 needs no signal.
 */
const char *tlsock__hello_refusal(const struct tlsock__hello *h, int min_version, int max_version);

#endif /* TLSOCK_IMPL_HELLO_H */
