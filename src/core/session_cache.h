/*
 * A bounded, thread-safe, expiring in-process store of sessions: byte keys to byte values, each
 * with an expiry time. The clients' session cache (key: host, port, SNI, name verified) and the
 * servers' TLS 1.2 session-ID cache (key: the session ID) are both one of these, shared by every
 * connection of a context, from any thread. It is the default of the pluggable session store of
 * issue 12: get / put / remove with expiry.
 */
#ifndef TLSOCK_SESSION_CACHE_H
#define TLSOCK_SESSION_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

struct tlsock__scache;

/* A store of at most @p max entries (> 0); NULL without memory. */
struct tlsock__scache *tlsock__scache_new(size_t max);
/* Frees the store and every entry; accepts NULL. */
void tlsock__scache_free(struct tlsock__scache *c);

/*
 * Stores a copy of @p val under a copy of @p key until @p expires_ns (tlsock__now_ns() time),
 * replacing what the key held. A full store drops its expired entries, then the least recently
 * used one. 0, or TLSOCK_ENOMEM (the store is unchanged but for the key's old entry, gone).
 */
int tlsock__scache_put(struct tlsock__scache *c, const void *key, size_t key_len, const void *val,
                       size_t val_len, int64_t expires_ns);
/*
 * Like tlsock__scache_put(), the entry also owning @p native (NULL: none), an object made from
 * the value (a client's parsed session) that it frees with @p native_free when it is dropped;
 * when the put fails, @p native is freed at once. The object is never shared: it leaves the store
 * with tlsock__scache_take(), or a copy of it does. Note that native_free may run under the
 * store's lock.
 */
int tlsock__scache_put_native(struct tlsock__scache *c, const void *key, size_t key_len,
                              const void *val, size_t val_len, void *native,
                              void (*native_free)(void *native), int64_t expires_ns);
/*
 * How tlsock__scache_take() treats an entry whose value @p reusable says is offered again and
 * again (a TLS 1.2 session, until it expires or is replaced): the entry stays, and the caller
 * gets a copy of its native object made by @p native_dup (which may give NULL without memory).
 * NULL (the whole struct or reusable): every entry is taken.
 */
struct tlsock__scache_reuse {
    bool (*reusable)(const unsigned char *val, size_t val_len);
    void *(*native_dup)(void *native);
};

/*
 * A malloc'd copy of the value under @p key in *@p val (the caller frees it) and the entry's
 * native object in *@p native (NULL if it had none; then the caller owns it), the entry removed;
 * unless @p reuse keeps it (above). False when there is none, it expired or memory ran out (then
 * the entry is removed all the same and *@p native is NULL).
 */
bool tlsock__scache_take(struct tlsock__scache *c, const void *key, size_t key_len,
                         const struct tlsock__scache_reuse *reuse, unsigned char **val,
                         size_t *val_len, void **native);
/*
 * A malloc'd copy of the value under @p key in *@p val (the caller frees it), removing the entry
 * when @p take. False when there is none, it expired (then it is removed) or memory ran out.
 */
bool tlsock__scache_get(struct tlsock__scache *c, const void *key, size_t key_len, bool take,
                        unsigned char **val, size_t *val_len);
/* Removes the entry under @p key, if any. */
void tlsock__scache_remove(struct tlsock__scache *c, const void *key, size_t key_len);
/* Entries held now, expired ones included until they are seen (for tests). */
size_t tlsock__scache_count(struct tlsock__scache *c);

#endif /* TLSOCK_SESSION_CACHE_H */
