/*
 * Small OpenSSL helpers shared by the OpenSSL implementation's files.
 */
#ifndef TLSOCK_OPENSSL_UTIL_H
#define TLSOCK_OPENSSL_UTIL_H

#include <stdbool.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "impl.h"

/*
 * Fails with @p code and "what: OpenSSL's reason", then empties OpenSSL's error queue. When an
 * allocation failed on the way (any error in the queue says so), the code is TLSOCK_ENOMEM.
 */
int tlsock__ossl_fail(struct tlsock__err *err, int code, const char *what);

/* Empties OpenSSL's error queue; true when an error in it was an allocation failure. */
bool tlsock__ossl_out_of_memory(void);

/*
 * Has OpenSSL work out @p cert's extensions now. It does that once per certificate and keeps the
 * result, a failure for want of memory included: the certificate would then count as invalid for
 * good, and a trust anchor kept in a context would fail every later verification. Done when the
 * anchor is added, such a failure is TLSOCK_ENOMEM from the setter (the certificate must then be
 * dropped). 0 otherwise, also for extensions that are invalid.
 */
int tlsock__ossl_load_extensions(X509 *cert, struct tlsock__err *err);

/*
 * A PEM password callback that refuses: without one OpenSSL would prompt on the terminal for an
 * encrypted key, blocking a library call on user input.
 */
int tlsock__ossl_no_passphrase(char *buf, int size, int rwflag, void *userdata);

/* One of a server's chains: what a session installs when a ClientHello chooses it. */
struct ossl_chain {
    X509 *leaf;
    STACK_OF(X509) * rest;
    EVP_PKEY *key;
};

/* Frees what @p chain holds; accepts an empty one. */
void tlsock__ossl_chain_free(struct ossl_chain *chain);

/*
 * Reads @p src's chain and key, checks them and gives them to @p ctx as its certificate, chain
 * and key (openssl_keys.c); on failure the context keeps what it had unless the certificate
 * itself was taken. On success *@p out holds references for the sessions, and src->facts (if
 * not NULL) the names and key kind (certsel.h).
 */
int tlsock__ossl_load_cert(SSL_CTX *ctx, const struct tlsock__cert_src *src, struct ossl_chain *out,
                           struct tlsock__err *err);

/* Writes the SHA-256 fingerprint of @p cert as "AB:CD:..."; 0, or -1 if hashing failed. */
int tlsock__ossl_fingerprint(X509 *cert, char out[TLSOCK_FINGERPRINT_SIZE]);

/*
 * What the stapled OCSP response @p der (NULL or @p len 0: none) says about @p leaf, issued by
 * @p issuer (openssl_ocsp.c): an enum tlsock__ocsp_finding (trust.h), or -1 without memory.
 */
int tlsock__ossl_ocsp_finding(const unsigned char *der, long len, X509 *leaf, X509 *issuer);

/* Whether @p leaf is must-staple: a TLS feature extension listing status_request (RFC 7633). */
bool tlsock__ossl_must_staple(X509 *leaf);

/*
 * What OpenSSL's context-wide callbacks, which are given no connection, reach through the
 * SSL_CTX's app data: part of the implementation's context (openssl.c), which owns the SSL_CTX.
 * Set at freeze, read-only after.
 */
struct tlsock__ossl_ctx_data {
    const struct tlsock__tickets *tickets; /* servers: the core's ticket keys (openssl_tickets.c) */
    tlsock__session_remove_fn remove;      /* servers: the core's session-ID cache, NULL: none */
    struct tlsock_ctx *remove_owner;       /* ... and its context (openssl_session.c) */
};

/*
 * Servers: session tickets as @p t says, keys from ticket_keys.h (openssl_tickets.c); the ticket
 * callback finds @p t in the SSL_CTX's struct tlsock__ossl_ctx_data, which the caller set.
 */
int tlsock__ossl_set_tickets(SSL_CTX *ctx, const struct tlsock__tickets *t,
                             struct tlsock__err *err);

/* ---- resumption (openssl_session.c) --------------------------------------------------------- */

/* Sends the context's sessions to the core's caches instead of OpenSSL's internal one. */
void tlsock__ossl_sessions_ctx(SSL_CTX *ctx, int role);
/*
 * A client's session to offer: @p io's SSL_SESSION, else its bytes (i2d_SSL_SESSION) decoded; one
 * that does not load is ignored.
 */
void tlsock__ossl_sessions_offer(SSL *ssl, const struct tlsock__session_offer *offer);
/* The impl's session_free and session_dup: an SSL_SESSION reported to on_session. */
void tlsock__ossl_session_free(void *native);
void *tlsock__ossl_session_dup(void *native);
/* The core's session_io of @p ssl's connection (openssl.c), NULL for an SSL that is not ours. */
const struct tlsock__session_io *tlsock__ossl_session_io(const SSL *ssl);
/*
 * The impl's conn_session_bytes: the session @p ssl reported last, serialized (i2d_SSL_SESSION)
 * into *@p der (malloc'd). 0, or TLSOCK_ENOMEM.
 */
int tlsock__ossl_session_bytes(SSL *ssl, unsigned char **der, size_t *len);
/* After a handshake: a TLS 1.2 client reports its session (TLS 1.3 ones come as tickets). */
void tlsock__ossl_sessions_done(SSL *ssl);
int tlsock__ossl_sha256(const void *data, size_t len, unsigned char out[32]);

#endif /* TLSOCK_OPENSSL_UTIL_H */
