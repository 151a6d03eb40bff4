/*
 * Resumption on GnuTLS (docs/sessions.md): a client's sessions go to the core's cache as they
 * come (the end of a TLS 1.2 handshake, each TLS 1.3 NewSessionTicket), a server's TLS 1.2
 * sessions to the core's session-ID cache (core/session_cache.c) through GnuTLS's db functions,
 * the same store OpenSSL's side uses. The session's db pointer is its struct gtls_sess.
 */
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>

#include "gnutls_int.h"

/* ---- the server's session-ID cache ---------------------------------------------------------- */

static int db_store(void *ptr, gnutls_datum_t key, gnutls_datum_t data)
{
    const struct gtls_sess *gs = ptr;

    if (gs->io.hooks->server_put == NULL || key.size == 0) {
        return -1;
    }
    gs->io.hooks->server_put(gs->io.owner, key.data, key.size, data.data, data.size);
    return 0;
}

/*
 * Whether GnuTLS will refuse the stored session @p entry as expired: its own test
 * (_gnutls_check_resumed_params: older than the server's cache expiration, or from the future),
 * on tlsock's key clock, which is GnuTLS's time() unless an application replaced either.
 */
static bool entry_expired(const struct gtls_sess *gs, unsigned char *val, size_t len)
{
    gnutls_datum_t entry = {val, (unsigned)len};
    int64_t made = (int64_t)gnutls_db_check_entry_time(&entry);
    int64_t now = tlsock__ticket_clock_now();

    return made != 0 && (now - made > gs->io.hooks->server_lifetime_ns / 1000000000 || made > now);
}

static gnutls_datum_t db_retrieve(void *ptr, gnutls_datum_t key)
{
    const struct gtls_sess *gs = ptr;
    gnutls_datum_t out = {NULL, 0};
    unsigned char *val = NULL;
    size_t len = 0;

    if (gs->io.hooks->server_get == NULL ||
        !gs->io.hooks->server_get(gs->io.owner, key.data, key.size, &val, &len)) {
        return out;
    }
    if (entry_expired(gs, val, len)) {
        /* GnuTLS only refuses it; OpenSSL also drops it from the cache (its remove callback):
         * both servers remove it, so a store keeping entries past their expiry is cleaned. */
        if (gs->io.hooks->server_remove != NULL) {
            gs->io.hooks->server_remove(gs->io.owner, key.data, key.size);
        }
    } else {
        /* GnuTLS frees it with gnutls_free. */
        out.data = gnutls_malloc(len);
        if (out.data != NULL) {
            memcpy(out.data, val, len);
            out.size = (unsigned)len;
        }
    }
    tlsock__free_secret(val, len); /* the session's master secret */
    return out;
}

static int db_remove(void *ptr, gnutls_datum_t key)
{
    const struct gtls_sess *gs = ptr;

    if (gs->io.hooks->server_remove != NULL) {
        gs->io.hooks->server_remove(gs->io.owner, key.data, key.size);
    }
    return 0;
}

/* ---- clients -------------------------------------------------------------------------------- */

/* A NewSessionTicket was processed: reported after the call that read it (sessions_report()). */
static int ticket_hook(gnutls_session_t s, unsigned htype, unsigned when, unsigned incoming,
                       const gnutls_datum_t *msg)
{
    bool *pending = tlsock__gtls_ticket_pending(s);

    (void)htype;
    (void)when;
    (void)incoming;
    (void)msg;
    if (pending != NULL) {
        *pending = true;
    }
    return 0;
}

void tlsock__gtls_sessions_setup(gnutls_session_t s, struct gtls_sess *gs,
                                 const struct tlsock__session_io *io,
                                 const struct tlsock__session_offer *offer, int role)
{
    gs->io = *io;
    gnutls_db_set_ptr(s, gs);
    if (role == TLSOCK_SERVER) {
        if (io->hooks->server_get != NULL) {
            gnutls_db_set_retrieve_function(s, db_retrieve);
            gnutls_db_set_store_function(s, db_store);
            gnutls_db_set_remove_function(s, db_remove);
            gnutls_db_set_cache_expiration(s, (int)(io->hooks->server_lifetime_ns / 1000000000));
        }
        return;
    }
    if (io->hooks->on_session != NULL) {
        gnutls_handshake_set_hook_function(s, GNUTLS_HANDSHAKE_NEW_SESSION_TICKET, GNUTLS_HOOK_POST,
                                           ticket_hook);
    }
    if (offer->data != NULL) {
        const gnutls_datum_t data = {(unsigned char *)offer->data, (unsigned)offer->len};
        /* A session that does not load is not offered: a full handshake, never an error. */
        (void)gnutls_session_set_data(s, data.data, data.size);
    }
}

void tlsock__gtls_sessions_report(gnutls_session_t s, struct gtls_sess *gs, bool handshake_done)
{
    gnutls_datum_t data = {NULL, 0};
    int version = (int)gnutls_protocol_get_version(s);

    if (gs->io.hooks->on_session == NULL) {
        return;
    }
    /* GNUTLS_TLS1_2 = 4, GNUTLS_TLS1_3 = 5; the core speaks wire versions. */
    bool tls13 = version == GNUTLS_TLS1_3;
    bool *pending = tlsock__gtls_ticket_pending(s);
    if (!(*pending || (handshake_done && !tls13))) {
        return;
    }
    *pending = false;
    if (gnutls_session_get_data2(s, &data) == 0 && data.size > 0) {
        gs->io.hooks->on_session(gs->io.owner, data.data, data.size, tls13 ? 0x0304 : 0x0303, NULL);
    }
    if (data.data != NULL) {
        gnutls_memset(data.data, 0, data.size); /* the core keeps its own copy */
    }
    gnutls_free(data.data);
}

int tlsock__gtls_sha256(const void *data, size_t len, unsigned char out[32])
{
    return gnutls_hash_fast(GNUTLS_DIG_SHA256, data, len, out) == 0 ? 0 : TLSOCK_ENOMEM;
}
