/*
 * Session ticket keys, the same on every implementation (docs/tickets.md, "Ticket keys"): one
 * 32-byte secret and a rotation period; the key of period n (n = unix time / period) is derived
 * from the secret with HMAC-SHA256, so servers sharing the secret (the key file) use the same key
 * at the same time without talking to each other. A server issues tickets under the current
 * period's key and accepts the current and the previous period's; older ones are refused.
 *
 * The implementations only supply HMAC-SHA256 and plug the keys into their own ticket code.
 */
#ifndef TLSOCK_IMPL_TICKET_KEYS_H
#define TLSOCK_IMPL_TICKET_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

enum {
    TLSOCK__TICKET_SECRET_SIZE = 32,
    TLSOCK__TICKET_KEY_SIZE = 96, /* three HMAC-SHA256 blocks (ticket_keys_derive) */
    TLSOCK__TICKET_LIFETIME_DEFAULT = 7200,
};

/* A server context's ticket settings: owned by the core's context, read-only once frozen. */
struct tlsock__tickets {
    bool off;          /* tlsock_ctx_set_tickets(ctx, false) */
    unsigned lifetime; /* seconds: the ticket_lifetime a client is told, and the session timeout */
    unsigned period;   /* seconds between key rotations; 0 until the keys are set */
    unsigned char secret[TLSOCK__TICKET_SECRET_SIZE];
    bool have_secret; /* from a key file; else the context makes a random one at freeze */
    /*
     * Servers that verify client certificates: a digest of how they verify them, made at freeze
     * and mixed into every key (tlsock__ticket_key_derive), so that a ticket only resumes on a
     * server that verifies clients the same way. A resumed session is not verified again: a
     * ticket from a server sharing the key file that asks no certificate (or trusts other CAs,
     * or has an older CRL) must not let a client in without one. Servers that do not verify
     * clients have none (bound false) and use the plain keys.
     */
    bool bound;
    unsigned char binding[32];
    /* The keys derived last (tlsock__ticket_key); made at freeze, NULL before and for tests. */
    struct tlsock__ticket_cache *cache;
};

/* HMAC-SHA256 of @p data under @p key into @p out; false on failure. Given by an implementation. */
typedef bool (*tlsock__hmac_sha256_fn)(const unsigned char *key, size_t key_len,
                                       const unsigned char *data, size_t data_len,
                                       unsigned char out[32]);

/*
 * The key clock: unix seconds, time() unless a test replaced it. The one clock every
 * implementation's ticket code reads (they read none of their own).
 */
int64_t tlsock__ticket_clock_now(void);

/* The current period's number under the key clock (unix seconds / period). */
int64_t tlsock__ticket_period_now(const struct tlsock__tickets *t);

/*
 * The key of period @p n: block i (0, 1, 2) is HMAC-SHA256(secret, "tlsock ticket key" ||
 * n as 8 bytes big-endian || i as one byte [|| the 32-byte binding, when bound]). False if the
 * HMAC failed.
 */
bool tlsock__ticket_key_derive(const struct tlsock__tickets *t, int64_t n,
                               tlsock__hmac_sha256_fn hmac,
                               unsigned char out[TLSOCK__TICKET_KEY_SIZE]);

/*
 * The key of period @p n as tlsock__ticket_key_derive() makes it, derived once per period and
 * context: a busy server asks for the same two keys for every ticket it issues or opens, and
 * three HMACs per ticket cost about as much as the rest of a resumed handshake's symmetric work.
 * Thread-safe; without a cache (t->cache NULL) it derives every time.
 */
bool tlsock__ticket_key(const struct tlsock__tickets *t, int64_t n, tlsock__hmac_sha256_fn hmac,
                        unsigned char out[TLSOCK__TICKET_KEY_SIZE]);
/* The cache of @p t, made when its keys are final (freeze); false for want of memory. */
bool tlsock__ticket_cache_new(struct tlsock__tickets *t);
/* Wipes and frees the cache of @p t (may be NULL). */
void tlsock__ticket_cache_free(struct tlsock__tickets *t);

/*
 * Tests only: the key clock (unix seconds) is @p now instead of time(); NULL restores time().
 * Process-wide; set it before the connections it should govern.
 */
void tlsock__ticket_keys_set_clock(int64_t (*now)(void));

/* Parses a key file's bytes into @p t (secret and period); 0 or TLSOCK_ECONFIG in @p err. */
int tlsock__ticket_keys_parse(struct tlsock__tickets *t, const char *text, size_t len,
                              struct tlsock__err *err);

/*
 * Reads the key file at @p path (owner-only permissions required) into @p t; 0 or
 * TLSOCK_ECONFIG with a message naming the file.
 */
int tlsock__ticket_keys_load(struct tlsock__tickets *t, const char *path, struct tlsock__err *err);

/* The key file text for @p secret and @p period, NUL-terminated, in @p out (at least 128 bytes). */
void tlsock__ticket_keys_format(const unsigned char secret[TLSOCK__TICKET_SECRET_SIZE],
                                unsigned period, char out[128]);

#endif /* TLSOCK_IMPL_TICKET_KEYS_H */
