/*
 * Words and formats both TLS implementations produce: certificate fingerprints, subjectAltName
 * lists, why a verification failed, a truncated stream, a server older than the client allows.
 * Implementations extract the raw facts with their own library (DER digests, SAN entries, a
 * failure's reason and code) and leave the wording to this file, so that messages and session
 * information never depend on the implementation.
 */
#ifndef TLSOCK_IMPL_TEXT_H
#define TLSOCK_IMPL_TEXT_H

#include <stdbool.h>
#include <stddef.h>

#include "impl.h"

/* Writes the 32-byte SHA-256 digest @p md as "AB:CD:...:EF". */
void tlsock__text_fingerprint(const unsigned char md[32], char out[TLSOCK_FINGERPRINT_SIZE]);

/* A subjectAltName list being written into a fixed buffer: "DNS:a.example,IP:192.0.2.1". */
struct tlsock__san_text {
    char *out;
    size_t size;
    size_t used;
    bool full; /* an entry did not fit: it and later ones are dropped, so the list stays a
                  prefix, and the list ends with ",..." */
};

void tlsock__san_text_init(struct tlsock__san_text *t, char *out, size_t size);
/* Adds a dNSName of @p len bytes (not NUL-terminated). */
void tlsock__san_text_dns(struct tlsock__san_text *t, const char *name, size_t len);
/* Adds an iPAddress of 4 or 16 bytes. */
void tlsock__san_text_ip(struct tlsock__san_text *t, const unsigned char *addr, size_t len);

/* What an implementation's own code behind a failed verification is. */
enum tlsock__verify_code {
    TLSOCK__VERIFY_CODE_NONE,    /* no code (no certificate at all) */
    TLSOCK__VERIFY_CODE_OPENSSL, /* an X509_V_ERR_* value */
    TLSOCK__VERIFY_CODE_GNUTLS,  /* gnutls_certificate_status_t bits */
};

/*
 * Fails with TLSOCK_EVERIFY and "<reason> (depth <depth>: <subject>)": the certificate that
 * failed, by its place in the chain (0: the peer's own, 1: its issuer...) and its subject
 * (RFC 4514; "" when unknown, which leaves out ": <subject>"). @p reason is in OpenSSL's words
 * (X509_verify_cert_error_string) whatever the implementation. No prefix:
 * tlsock_strerror(TLSOCK_EVERIFY) already says that verification failed. The same failure
 * reads the same on every implementation (docs/identity.md, "Verification messages").
 */
int tlsock__text_fail_verify_at(struct tlsock__err *err, const char *reason, int depth,
                                const char *subject);

/*
 * tlsock__text_fail_verify_at() at depth 0 (the peer's own certificate). @p code_kind and
 * @p code are not written: the implementation's code is tlsock_info.verify_result.
 */
int tlsock__text_fail_verify(struct tlsock__err *err, const char *reason, int code_kind,
                             unsigned long code, const char *subject);

/*
 * The reason for a name that does not match a certificate without a subjectAltName: no host
 * name or address matches it (its CN is never used, as browsers and Go decide). @p ip: the name
 * verified is an IP address.
 */
const char *tlsock__text_no_san_reason(bool ip);

/*
 * The reason for a name the certificate does not have: "hostname mismatch: expected <name>, the
 * certificate names DNS:a,IP:b" (a tlsock__san_text list, @p sans), or the reason of
 * tlsock__text_no_san_reason() when @p sans is NULL or "" (no subjectAltName).
 */
void tlsock__text_name_mismatch(char *out, size_t size, bool ip, const char *expected,
                                const char *sans);

/* Room for a name mismatch's SAN list in a message (tlsock__san_text; longer ones end ",..."). */
#define TLSOCK__MISMATCH_SANS_SIZE 200

/* The verified chain has more intermediate CAs than allowed: TLSOCK_EVERIFY. */
int tlsock__text_fail_chain_too_long(struct tlsock__err *err, size_t intermediates, int max,
                                     const char *subject);

/* The verify callback refused the peer with @p reason ("" for none given): TLSOCK_EVERIFY. */
int tlsock__text_fail_rejected(struct tlsock__err *err, const char *reason, const char *subject);

/*
 * Why a stapled OCSP response (enum tlsock__ocsp_finding, trust.h) was refused; for a missing one,
 * @p must_staple says whether the certificate or the client's setting demanded it.
 */
const char *tlsock__text_ocsp_reason(int finding, bool must_staple);

/* A server requiring a client certificate got none: TLSOCK_EVERIFY. */
int tlsock__text_fail_no_client_cert(struct tlsock__err *err);

/*
 * tlsock_info.verify_message: "not verified (disabled)" without verification, "no peer
 * certificate" without a certificate, else @p reason ("ok" when it verified).
 */
void tlsock__text_verify_message(char *out, size_t size, int verify_mode, bool has_peer,
                                 const char *reason);

/* The stream ended without close_notify: TLSOCK_ETRUNCATED. */
int tlsock__text_fail_truncated(struct tlsock__err *err);

/*
 * A close_notify arrived before the handshake finished: TLSOCK_EPROTO. Never TLSOCK_ECLOSED, the
 * clean close: nobody has authenticated the peer yet, and anyone on the path can send one.
 */
int tlsock__text_fail_closed_in_handshake(struct tlsock__err *err);

/* The peer's fatal alert: TLSOCK_EPROTO, "peer sent alert: <RFC name> (<number>)<hint>". */
int tlsock__text_fail_alert(struct tlsock__err *err, int alert, const char *hint);

/* A client's server chose a version older than the client allows: TLSOCK_EPROTO. */
int tlsock__text_fail_old_server(struct tlsock__err *err, int min_version, int max_version);

/*
 * A client whose server refused its versions (@p refused: a protocol_version alert) or chose an
 * older one than it allows: the hint to append to the message, "" when none applies. The hint
 * names tlsock_ctx_set_protocols and the legacy policy, which the CLI maps to its flags.
 */
const char *tlsock__text_old_server_hint(int min_version, int max_version, bool refused);

/*
 * A certificate's serial number from the @p len bytes of its INTEGER (big-endian; a leading zero
 * byte dropped): upper-case hexadecimal without separators, e.g. "4F1A09".
 */
void tlsock__text_serial(const unsigned char *bytes, size_t len, char *out, size_t size);

/* The value (0 to 15) of the hexadecimal digit @p ch, either case; -1 for any other character. */
int tlsock__text_hex_value(char ch);

/* A key exchange group's IANA name in lower case ("x25519", "secp256r1", "ffdhe2048") from the
 * implementation's name for it ("X25519", "prime256v1", "FFDHE2048"...). */
void tlsock__text_group(const char *name, char *out, size_t size);

/* The kind of a handshake signature (TLS SignatureScheme, RFC 8446 4.2.3). */
enum tlsock__sig_kind {
    TLSOCK__SIG_NONE,
    TLSOCK__SIG_RSA_PKCS1,
    TLSOCK__SIG_RSA_PSS_RSAE, /* RSASSA-PSS with an rsaEncryption key */
    TLSOCK__SIG_RSA_PSS_PSS,  /* RSASSA-PSS with an RSASSA-PSS key */
    TLSOCK__SIG_ECDSA,
    TLSOCK__SIG_ED25519,
    TLSOCK__SIG_ED448,
};

/*
 * The RFC 8446 name of a signature scheme from its kind and hash size in bits (160 for SHA-1):
 * "rsa_pss_rsae_sha256", "ecdsa_secp256r1_sha256", "ed25519"; "" for TLSOCK__SIG_NONE.
 */
void tlsock__text_sigalg(int kind, int hash_bits, char *out, size_t size);

#endif /* TLSOCK_IMPL_TEXT_H */
