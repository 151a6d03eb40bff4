/**
 * @file tlsock/redis.h
 * @brief A Redis session store and ticket key distribution for servers behind a load balancer
 * (docs/sessions.md, "Many servers behind a load balancer with Redis").
 *
 * A separate library, libtlsock_redis (pkg-config `tlsock-redis`), built when hiredis is found;
 * the core library does not depend on it. It holds the TLS 1.2 sessions of every server sharing
 * one Redis (struct tlsock_session_store, given to tlsock_ctx_set_session_store()), and keeps the
 * session ticket key file of those servers the same (tlsock_redis_store_ticket_keys()).
 *
 * The store never blocks its callers: it runs its own thread with its own libuv loop and one
 * hiredis connection on it. get, put and remove queue a request and return at once; a get's
 * completion comes from the store's thread (or at once, in the caller, when Redis is down or the
 * queue is full). When Redis is down or does not answer within the timeout, every get is a miss
 * (a full handshake), puts are dropped, one warning is logged per outage, and the store
 * reconnects by itself (100 ms, doubling to 5 s; the delay starts over only after a connection
 * on which Redis answered a request, or that lasted 5 s), logging once when Redis is back. A
 * connection Redis closes while nothing waits on it (its idle `timeout`) is made again at once,
 * with no log line unless that fails. When
 * Redis answers but refuses writes (a replica's READONLY, OOM under maxmemory noeviction, MISCONF,
 * an ACL), the store stays connected (gets may still hit) but no session is stored: one warning
 * names Redis's reason, and one line says when a write is taken again. Likewise when Redis
 * refuses GET (an ACL without it, a value of another type): every get misses, one warning names
 * the reason, and one line says when a get is answered again.
 *
 * The ticket key functions are the exception: they talk to Redis from the calling thread and
 * wait for it (at most a few timeouts); call them at start-up or from a thread of their own
 * (tlsock_redis_store_watch_ticket_keys() makes one).
 */
#ifndef TLSOCK_REDIS_H
#define TLSOCK_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tlsock.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The store it makes is a struct tlsock_session_store (include/tlsock.h, "Session stores"). */

/** A connection to one Redis server, with its thread. Opaque. */
struct tlsock_redis_store;

/** Most requests (queued or waiting for Redis) a store holds; beyond it gets miss at once and
 *  puts are dropped. */
#define TLSOCK_REDIS_QUEUE_MAX 4096

/** Most bytes of keys and values those requests hold together (puts carry whole sessions);
 *  beyond it, the same as beyond TLSOCK_REDIS_QUEUE_MAX. */
#define TLSOCK_REDIS_QUEUE_BYTES (8u << 20)

/** Default time a request waits for Redis before it counts as a miss, in milliseconds. */
#define TLSOCK_REDIS_TIMEOUT_MS 200

/** Where the ticket key file's text lives in Redis, and the lease that guards its secret. */
#define TLSOCK_REDIS_TICKET_KEYS_KEY  "tlsock:ticket-keys"
#define TLSOCK_REDIS_TICKET_LEASE_KEY "tlsock:ticket-keys:lease"
/** How long a lease taken to write the secret lasts, in milliseconds. */
#define TLSOCK_REDIS_TICKET_LEASE_MS 10000

/** A log line from the store (@p msg, no newline, valid during the call), from any thread. */
typedef void (*tlsock_redis_log_fn)(void *user, const char *msg);

/**
 * Makes a store for the Redis at @p url, `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]` (HOST a
 * name, an IPv4 address or an IPv6 one in brackets; PORT 6379 by default; DB 0 by default; USER
 * and PASSWORD percent-encoded, sent with AUTH on every connection: `:PASSWORD@` for requirepass,
 * `USER:PASSWORD@` for an ACL user; messages and log lines show the password as `***`), and starts
 * its thread, which connects in the background: until it has, gets miss. Returns 0 with the store
 * in @p out, TLSOCK_EINVAL (NULL argument, malformed URL) or TLSOCK_ENOMEM / TLSOCK_ESYS (the
 * thread or loop could not be made); tlsock_redis_errmsg() says why.
 */
TLSOCK_API int tlsock_redis_store_new(const char *url, struct tlsock_redis_store **out);

/**
 * Stops the store's thread and frees it: gets still waiting complete as misses first. Call it
 * after every context that uses the store is freed. NULL does nothing.
 */
TLSOCK_API void tlsock_redis_store_free(struct tlsock_redis_store *store);

/**
 * The store as the core's session store interface, to give to tlsock_ctx_set_session_store().
 * Valid as long as @p store; its functions may be called from any thread.
 */
TLSOCK_API const struct tlsock_session_store *
tlsock_redis_store_session_store(struct tlsock_redis_store *store);

/**
 * Sets how long a request waits for Redis, in milliseconds (1 to 60000; default
 * TLSOCK_REDIS_TIMEOUT_MS). A get not answered by then completes as a miss, and the store treats
 * Redis as down until it answers a PING again. Any thread, any time. Returns 0 or TLSOCK_EINVAL.
 */
TLSOCK_API int tlsock_redis_store_set_timeout(struct tlsock_redis_store *store, int timeout_ms);

/**
 * Sends the store's log lines (an outage, its end; writes refused, taken again) to @p fn (NULL:
 * standard error, the default). Any thread; @p fn is called from the store's thread. Returns 0 or
 * TLSOCK_EINVAL.
 */
TLSOCK_API int tlsock_redis_store_set_log(struct tlsock_redis_store *store, tlsock_redis_log_fn fn,
                                          void *user);

/**
 * True while the store is connected to Redis and Redis answers. Any thread. When it changes,
 * the log line that says why (tlsock_redis_store_set_log: an outage, its end) has been given.
 */
TLSOCK_API bool tlsock_redis_store_connected(struct tlsock_redis_store *store);

/**
 * Makes the ticket key file at @p path (mode 0600, written under a temporary name and renamed)
 * hold the key text kept in Redis under TLSOCK_REDIS_TICKET_KEYS_KEY. If Redis has none, one
 * server puts it there: the one that takes the lease (TLSOCK_REDIS_TICKET_LEASE_KEY, SET NX with
 * an expiry); the others wait for its text. That server publishes the file already at @p path if
 * tlsock_ctx_set_ticket_keys_file() would load it (Redis lost the text: restarted without
 * persistence, flushed, evicted it, failed over to a replica without it; the servers' files
 * still hold the secret of the tickets out there), and only without one (the first start) writes
 * a fresh secret with tlsock_ticket_keys_write() and a period of @p period_s seconds (0: 7200).
 * Load the file with tlsock_ctx_set_ticket_keys_file(). Blocks the calling thread for at most a
 * few timeouts. @p changed (may be NULL) tells whether the file was written (false: it already
 * held the text); @p created (may be NULL) whether this call made a new secret (false when it
 * published the file it had, or took the text from Redis). Returns 0, TLSOCK_EINVAL,
 * TLSOCK_ETIMEDOUT (Redis unreachable, no text in time, or a command Redis refused: a replica's
 * READONLY, an ACL's NOPERM, WRONGPASS, another type under the key) or TLSOCK_ECONFIG (cannot
 * write the file, or Redis holds no key file); tlsock_redis_errmsg() says why, with Redis's
 * reason.
 */
TLSOCK_API int tlsock_redis_store_ticket_keys(struct tlsock_redis_store *store, const char *path,
                                              unsigned period_s, bool *changed, bool *created);

/**
 * Replaces the shared secret (the periods rotate by themselves; this is for a secret that must
 * go): takes the lease, and if this server got it, writes a fresh secret with a period of
 * @p period_s (0: 7200) to Redis and to @p path. Another server holding the lease is not an
 * error: @p rotated is false and that server's secret is the one the others pick up. The text is
 * written only while the lease is still this server's (checked in the same step on Redis), so a
 * server that stalled past its lease's expiry never overwrites its successor's. Blocks like
 * tlsock_redis_store_ticket_keys(). Returns 0, TLSOCK_EINVAL, TLSOCK_ETIMEDOUT or TLSOCK_ECONFIG.
 */
TLSOCK_API int tlsock_redis_store_rotate_ticket_keys(struct tlsock_redis_store *store,
                                                     const char *path, unsigned period_s,
                                                     bool *rotated);

/** Called from the watcher thread after the key file at @p path was rewritten. */
typedef void (*tlsock_redis_keys_fn)(void *user, const char *path);

/**
 * Starts a thread that calls tlsock_redis_store_ticket_keys(@p path, 0) every @p interval_ms
 * (0: a quarter of the file's period), and @p fn (may be NULL) when the file changed, so that
 * the server reloads it: @p fn runs on the watcher's thread between two polls, so it should only
 * wake the server (a uv_async_send(), which is what the CLI does), which then loads the file
 * into a new context. Failures are logged once per outage and retried at the next poll. One
 * watcher per store; it stops with tlsock_redis_store_free(), after which @p fn is not called.
 * Returns 0, TLSOCK_EINVAL (NULL path, a watcher already running) or TLSOCK_ESYS.
 */
TLSOCK_API int tlsock_redis_store_watch_ticket_keys(struct tlsock_redis_store *store,
                                                    const char *path, unsigned interval_ms,
                                                    tlsock_redis_keys_fn fn, void *user);

/** Why the calling thread's last failed tlsock_redis_* call failed; never NULL. */
TLSOCK_API const char *tlsock_redis_errmsg(void);

#ifdef __cplusplus
}
#endif

#endif /* TLSOCK_REDIS_H */
