/*
 * Resumption on OpenSSL (docs/sessions.md): sessions go to and come from the core's stores
 * (core/session_cache.c) through OpenSSL's external cache callbacks, never OpenSSL's internal
 * cache, so that both implementations keep the same sessions for the same time. Each SSL reaches
 * the core's session_io (impl.h) through its connection (tlsock__ossl_session_io()): no ex_data
 * index, whose process-wide setup could fail once and then fail every later session.
 */
#include <stdlib.h>

#include <openssl/err.h>
#include <openssl/sha.h>

#include "openssl_util.h"

/* The session serialized (malloc'd) in *@p der; its length, 0 on failure. */
static size_t serialize(SSL_SESSION *sess, unsigned char **der)
{
    int n = i2d_SSL_SESSION(sess, NULL);
    unsigned char *p = n > 0 ? malloc((size_t)n) : NULL;

    *der = p;
    if (p == NULL) {
        return 0;
    }
    if (i2d_SSL_SESSION(sess, &p) != n) {
        tlsock__free_secret(*der, (size_t)n);
        *der = NULL;
        return 0;
    }
    return (size_t)n;
}

/*
 * Gives a client's resumable session to the core, as an object only: a copy, so that the next
 * connection offers it without d2i_SSL_SESSION (which decodes the server's key again: as much
 * work as a resumed handshake), and without its bytes, which only an export needs
 * (tlsock__ossl_session_bytes()): i2d_SSL_SESSION encodes the whole session, the server's
 * certificate with it, and a client that resumes gets a ticket per connection. A copy, not a
 * reference: this connection keeps changing its own session (a fatal alert marks it not
 * resumable), and the copy is touched by no one until a later connection takes it. Without
 * memory there is nothing to report: the next connection makes a full handshake.
 */
static void report(SSL *ssl, SSL_SESSION *sess)
{
    const struct tlsock__session_io *io = tlsock__ossl_session_io(ssl);

    if (io == NULL || io->hooks->on_session == NULL || sess == NULL ||
        !SSL_SESSION_is_resumable(sess)) {
        return;
    }
    SSL_SESSION *copy = SSL_SESSION_dup(sess);
    if (copy == NULL) {
        ERR_clear_error();
        return;
    }
    io->hooks->on_session(io->owner, NULL, 0, SSL_SESSION_get_protocol_version(sess), copy);
}

int tlsock__ossl_session_bytes(SSL *ssl, unsigned char **der, size_t *len)
{
    /* The latest session reported: OpenSSL makes a new one per ticket and keeps it as the SSL's. */
    SSL_SESSION *sess = SSL_get_session(ssl);

    *der = NULL;
    *len = sess != NULL ? serialize(sess, der) : 0;
    if (*len == 0) {
        ERR_clear_error();
        return TLSOCK_ENOMEM;
    }
    return 0;
}

/* Clients: each TLS 1.3 ticket as it arrives (TLS 1.2 ones at the handshake's end). */
static int client_new_session(SSL *ssl, SSL_SESSION *sess)
{
    if (SSL_SESSION_get_protocol_version(sess) >= TLS1_3_VERSION) {
        report(ssl, sess);
    }
    return 0; /* OpenSSL keeps its reference */
}

/* Servers: a new TLS 1.2 session into the session-ID cache. */
static int server_new_session(SSL *ssl, SSL_SESSION *sess)
{
    const struct tlsock__session_io *io = tlsock__ossl_session_io(ssl);
    unsigned int id_len = 0;
    const unsigned char *id = SSL_SESSION_get_id(sess, &id_len);
    unsigned char *der = NULL;

    if (io == NULL || io->hooks->server_put == NULL || id_len == 0 ||
        SSL_SESSION_get_protocol_version(sess) >= TLS1_3_VERSION) {
        return 0;
    }
    size_t n = serialize(sess, &der);
    /* Without memory a later client makes a full handshake. */
    if (n > 0) {
        io->hooks->server_put(io->owner, id, id_len, der, n);
    }
    tlsock__free_secret(der, n);
    return 0;
}

/* Servers: a TLS 1.2 client's session ID looked up. */
static SSL_SESSION *server_get_session(SSL *ssl, const unsigned char *id, int id_len, int *copy)
{
    const struct tlsock__session_io *io = tlsock__ossl_session_io(ssl);
    unsigned char *der = NULL;
    size_t n = 0;
    SSL_SESSION *sess = NULL;

    *copy = 0; /* the session returned is OpenSSL's to free */
    if (io != NULL && io->hooks->server_get != NULL && id_len > 0 &&
        io->hooks->server_get(io->owner, id, (size_t)id_len, &der, &n)) {
        const unsigned char *p = der;
        sess = d2i_SSL_SESSION(NULL, &p, (long)n);
        tlsock__free_secret(der, n);
    }
    return sess;
}

/*
 * Servers: OpenSSL drops a session it will not resume (one that ended with a fatal alert, sent
 * or received, or an expired one it was given), and so does the context's cache. OpenSSL tells
 * only the context, so the core's cache is the context's (struct tlsock__ossl_ctx_data).
 */
static void server_remove_session(SSL_CTX *ctx, SSL_SESSION *sess)
{
    const struct tlsock__ossl_ctx_data *d = SSL_CTX_get_app_data(ctx);
    unsigned int id_len = 0;
    const unsigned char *id = SSL_SESSION_get_id(sess, &id_len);

    /* TLS 1.3 sessions are never put in it. */
    if (d != NULL && d->remove != NULL && id_len > 0 &&
        SSL_SESSION_get_protocol_version(sess) < TLS1_3_VERSION) {
        d->remove(d->remove_owner, id, id_len);
    }
}

void tlsock__ossl_sessions_ctx(SSL_CTX *ctx, int role)
{
    if (role == TLSOCK_CLIENT) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
        SSL_CTX_sess_set_new_cb(ctx, client_new_session);
        return;
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(ctx, server_new_session);
    SSL_CTX_sess_set_get_cb(ctx, server_get_session);
    SSL_CTX_sess_set_remove_cb(ctx, server_remove_session);
    /* Resuming a session of a server that verifies clients needs one (any fixed value). */
    static const unsigned char sid_ctx[] = "tlsock";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
}

void tlsock__ossl_sessions_offer(SSL *ssl, const struct tlsock__session_offer *offer)
{
    SSL_SESSION *sess = offer->native;

    /* Only a session that came as bytes (an import) is decoded; the core keeps its reference. */
    if (sess == NULL) {
        const unsigned char *p = offer->data;
        sess = d2i_SSL_SESSION(NULL, &p, (long)offer->len);
    } else {
        SSL_SESSION_up_ref(sess);
    }
    /* A session that does not load or fit is not offered: a full handshake, no error. */
    if (sess == NULL || SSL_set_session(ssl, sess) != 1) {
        ERR_clear_error();
    }
    SSL_SESSION_free(sess);
}

void tlsock__ossl_session_free(void *native)
{
    SSL_SESSION_free(native);
}

void *tlsock__ossl_session_dup(void *native)
{
    SSL_SESSION *copy = SSL_SESSION_dup(native);

    if (copy == NULL) {
        ERR_clear_error();
    }
    return copy;
}

void tlsock__ossl_sessions_done(SSL *ssl)
{
    if (!SSL_is_server(ssl) && SSL_version(ssl) < TLS1_3_VERSION) {
        report(ssl, SSL_get_session(ssl));
    }
}

int tlsock__ossl_sha256(const void *data, size_t len, unsigned char out[32])
{
    return SHA256(data, len, out) != NULL ? 0 : TLSOCK_ENOMEM;
}
