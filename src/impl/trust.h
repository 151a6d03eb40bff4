/*
 * The trust checks both implementations share (include/tlsock.h, "Trust"): pins, the chain
 * depth and the verify callback, run on what an implementation found in its verification hook.
 * Implementations extract the facts with their own library (DER certificates, the verified
 * chain, digests of public keys); the decisions and the words are here, so that they never
 * depend on the implementation. Revocation is the implementations' own (OpenSSL's X509_STORE
 * flags, GnuTLS through checks of ours in gnutls.c), with OpenSSL's words on both.
 */
#ifndef TLSOCK_IMPL_TRUST_H
#define TLSOCK_IMPL_TRUST_H

#include <stdbool.h>
#include <stddef.h>

#include "impl.h"

/* What an implementation's verification found, for tlsock__trust_check(). */
struct tlsock__trust_input {
    /*
     * Filled by the implementation but for result and message: conn, role, verify_name, the
     * peer's chain as sent, and the verified chain (leaf first, anchor last) when its own
     * verification passed, else none.
     */
    struct tlsock_verify_info info;
    /* SHA-256 of each verified certificate's SubjectPublicKeyInfo; needed only with pins. */
    const unsigned char (*spki)[32];
    const char *subject; /* the leaf's subject (RFC 4514), for messages; "" if unknown */
};

/* True when @p t asks for the chains and digests of tlsock__trust_input (not only CRLs). */
bool tlsock__trust_needs_chain(const struct tlsock__trust *t);

/*
 * Runs the pins, the depth limit and the verify callback after the implementation's verdict
 * @p rc (0, or TLSOCK_EVERIFY with its message already in @p err). Returns the final verdict: 0,
 * or TLSOCK_EVERIFY with the reason in @p err. A failure is never turned into a success.
 */
int tlsock__trust_check(const struct tlsock__trust *t, struct tlsock__trust_input *in, int rc,
                        struct tlsock__err *err);

/*
 * What an implementation found in a stapled OCSP response, with its own library, checking in
 * this order (the first finding wins, so both report the same one): present, parses and is
 * successful, holds the leaf's status (CertID from the leaf and its issuer in the verified
 * chain), signed by the issuer or a responder certificate the issuer signed with OCSPSigning and
 * within its dates, thisUpdate not after now + TLSOCK__OCSP_SKEW, nextUpdate (if any) not before
 * now - TLSOCK__OCSP_SKEW, then the certificate status.
 */
enum tlsock__ocsp_finding {
    TLSOCK__OCSP_GOOD,
    TLSOCK__OCSP_NONE, /* no staple */
    TLSOCK__OCSP_MALFORMED,
    TLSOCK__OCSP_NOT_SUCCESSFUL,
    TLSOCK__OCSP_OTHER_CERT,
    TLSOCK__OCSP_BAD_SIGNER,
    TLSOCK__OCSP_NOT_YET_VALID,
    TLSOCK__OCSP_EXPIRED,
    TLSOCK__OCSP_REVOKED,
    TLSOCK__OCSP_UNKNOWN,
};

/* Clock skew allowed on a response's dates, in seconds. */
#define TLSOCK__OCSP_SKEW 300

/* The TLS alert for a refused staple (RFC 6066): bad_certificate_status_response. */
#define TLSOCK__ALERT_BAD_STATUS 113

/* Whether a client of @p t asks for a staple (and so checks one). */
bool tlsock__ocsp_wanted(const struct tlsock__trust *t);

/*
 * The client's verdict on @p finding for a leaf that is must-staple or not: 0, or TLSOCK_EVERIFY
 * with the shared words (text.c) and @p subject in @p err.
 */
int tlsock__ocsp_check(const struct tlsock__trust *t, int finding, bool must_staple,
                       const char *subject, struct tlsock__err *err);

#endif /* TLSOCK_IMPL_TRUST_H */
