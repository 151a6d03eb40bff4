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

#endif /* TLSOCK_IMPL_TRUST_H */
