/*
 * Session tickets on a GnuTLS server (ticket_keys.h).
 *
 * GnuTLS (>= 3.6.4) takes one 64-byte master key per session and derives the key that encrypts
 * tickets from it and its own time step T = time / (3 * expiration) (lib/stek.c: SHA3-512 of T
 * as 8 bytes big-endian, then the master key; the first 16 bytes name the key), accepting T and
 * T - 1. To follow the shared schedule instead, each session is given the master key of the
 * ticket's period: the ClientHello hook reads the offered ticket's key name (hello.h) and finds
 * which of the current and the previous period's keys, under GnuTLS's current or previous step,
 * names it (the current period's first); with none (no ticket, or an older one) the current
 * period's key, under which an old ticket does not decrypt and the handshake is a full one.
 *
 * Our side reads no clock of its own: "now" is the key clock (tlsock__ticket_clock_now), which is
 * time() unless a test replaced it. GnuTLS computes its own step from gnutls_time(), which is
 * time() unless an application replaces it process-wide with gnutls_global_set_time_function();
 * the two agree by default, and a program (or test) that moves one clock must move the other, or
 * tickets from the previous period are not found and their clients get a full handshake.
 */
#include <string.h>

#include <gnutls/crypto.h>

#include "gnutls_int.h"

enum { MASTER_LEN = 64, NAME_LEN = 16, STEK_PRODUCT = 3 };

static bool hmac_sha256(const unsigned char *key, size_t key_len, const unsigned char *data,
                        size_t data_len, unsigned char out[32])
{
    return gnutls_hmac_fast(GNUTLS_MAC_SHA256, key, key_len, data, data_len, out) == 0;
}

/* The key name GnuTLS gives tickets under master key @p m at time step @p step. */
static bool stek_name(const unsigned char *m, uint64_t step, unsigned char name[NAME_LEN])
{
    unsigned char in[8 + MASTER_LEN];
    unsigned char out[64];

    for (int i = 0; i < 8; i++) {
        in[i] = (unsigned char)(step >> (56 - 8 * i));
    }
    memcpy(in + 8, m, MASTER_LEN);
    bool ok = gnutls_hash_fast(GNUTLS_DIG_SHA3_512, in, sizeof(in), out) == 0;
    memcpy(name, out, NAME_LEN);
    gnutls_memset(in, 0, sizeof(in));
    gnutls_memset(out, 0, sizeof(out));
    return ok;
}

/* Whether the master key @p m names @p ticket_name under GnuTLS's current or previous step. */
static bool names_ticket(const unsigned char *m, const unsigned char *ticket_name,
                         unsigned lifetime)
{
    int64_t now = tlsock__ticket_clock_now();
    uint64_t step = now > 0 ? (uint64_t)now / ((uint64_t)lifetime * STEK_PRODUCT) : 0;
    unsigned char name[NAME_LEN];

    for (uint64_t back = 0; back < 2 && back < step; back++) {
        if (stek_name(m, step - back, name) && gnutls_memcmp(name, ticket_name, NAME_LEN) == 0) {
            return true;
        }
    }
    return false;
}

int tlsock__gtls_tickets_start(gnutls_session_t session, const struct tlsock__tickets *t)
{
    /* The ticket lifetime GnuTLS sends and checks, and its key step's unit. */
    gnutls_db_set_cache_expiration(session, (int)t->lifetime);
    return 0;
}

int tlsock__gtls_tickets_hello(gnutls_session_t session, const struct tlsock__tickets *t,
                               const unsigned char *ticket_name)
{
    unsigned char current[TLSOCK__TICKET_KEY_SIZE];
    unsigned char previous[TLSOCK__TICKET_KEY_SIZE];
    unsigned char *use = current;
    int64_t now = tlsock__ticket_period_now(t);
    int ret = GNUTLS_E_INTERNAL_ERROR;

    if (!tlsock__ticket_key(t, now, hmac_sha256, current)) {
        goto wipe;
    }
    /* Most tickets are from the current period: look there first, as each name tried costs a
     * SHA3-512. The previous period's key is derived only for a ticket the current one does not
     * name; a ticket neither names gets the current key, and a full handshake. */
    if (ticket_name != NULL && !names_ticket(current, ticket_name, t->lifetime)) {
        if (!tlsock__ticket_key(t, now - 1, hmac_sha256, previous)) {
            goto wipe;
        }
        if (names_ticket(previous, ticket_name, t->lifetime)) {
            use = previous;
        }
    }
    gnutls_datum_t key = {.data = use, .size = MASTER_LEN};
    ret = gnutls_session_ticket_enable_server(session, &key);
wipe:
    gnutls_memset(current, 0, sizeof(current));
    gnutls_memset(previous, 0, sizeof(previous));
    return ret;
}
