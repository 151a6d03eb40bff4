/*
 * libtlsock_redis's insides (include/tlsock/redis.h): the store object, shared by the
 * asynchronous session store (store.c) and the synchronous ticket key functions (keys.c).
 * It uses only tlsock's public headers, like any other user of the library.
 */
#ifndef TLSOCK_REDIS_INT_H
#define TLSOCK_REDIS_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "tlsock/redis.h"

#define REDIS__PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define REDIS__MUST_CHECK        __attribute__((warn_unused_result))

struct redis__req;
struct redisAsyncContext;

/*
 * The store's link to Redis, owned by the store's thread (docs/sessions.md draws it):
 *   DOWN -> CONNECTING   the reconnect timer fired (or the thread started)
 *   CONNECTING -> UP     Redis answered the PING sent after connecting
 *   CONNECTING -> DOWN   the connection failed, or the PING got no answer in time
 *   UP -> DOWN           the connection broke, or a request got no answer in time
 *   any -> STOPPED       tlsock_redis_store_free()
 */
enum redis__link {
    REDIS__LINK_DOWN,
    REDIS__LINK_CONNECTING,
    REDIS__LINK_UP,
    REDIS__LINK_STOPPED,
};

struct tlsock_redis_store {
    /* Parsed from the URL; read-only after _new. */
    char url[256]; /* the URL with its password as "***": for messages and log lines */
    char host[256];
    char user[128]; /* AUTH's user and password, percent-decoded; user "" with a password: */
    char pass[256]; /* the default user's (requirepass); pass "": no AUTH */
    int port;
    int db;
    char lease_id[33]; /* this store's lease value: 16 random bytes in hex */

    struct tlsock_session_store iface;
    atomic_int timeout_ms;
    atomic_bool up;              /* link == UP: callers' gets go to Redis, else miss at once */
    atomic_int pending;          /* requests queued or waiting for Redis (TLSOCK_REDIS_QUEUE_MAX) */
    atomic_size_t pending_bytes; /* their keys and values (TLSOCK_REDIS_QUEUE_BYTES) */

    /* The request queue from callers to the store's thread, and the log callback. */
    pthread_mutex_t lock;
    struct redis__req *queue_head;
    struct redis__req *queue_tail;
    bool stopping;
    tlsock_redis_log_fn log_fn;
    void *log_user;

    /* The store's thread and what only it touches. */
    uv_thread_t thread;
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t reconnect;
    uv_timer_t timeouts;
    struct redisAsyncContext *ac;
    enum redis__link link;
    struct redis__req *inflight; /* gets and PINGs waiting for a reply, oldest first */
    unsigned backoff_ms;
    uint64_t up_since_ms; /* uv_now() of the last move to UP */
    bool served;          /* Redis answered a get, put or remove since then */
    bool lost;            /* the connection went with a request unanswered (store.c, idle) */
    bool warned;          /* an outage was logged and its end was not */
    bool writes_refused;  /* Redis refused the last put or remove (logged once, store.c) */
    bool reads_refused;   /* Redis refused the last get (logged once, store.c) */

    /* The ticket key watcher (keys.c), and the lock that runs one ticket key call at a time. */
    pthread_mutex_t keys_lock;
    bool watching;
    pthread_t watcher;
    pthread_cond_t watch_cond;
    bool watch_stop;
    char *watch_path;
    unsigned watch_interval_ms;
    tlsock_redis_keys_fn watch_fn;
    void *watch_user;
};

/* Sets the calling thread's message (tlsock_redis_errmsg) and returns @p code. */
int redis__fail(int code, const char *fmt, ...) REDIS__PRINTF(2, 3);

/* Logs one line through the store's log callback (standard error by default). */
void redis__log(struct tlsock_redis_store *s, const char *fmt, ...) REDIS__PRINTF(2, 3);

/* AUTH's arguments for the URL's credentials (s->pass not empty): returns their count. */
int redis__auth_argv(const struct tlsock_redis_store *s, const char *argv[3], size_t lens[3]);

/* Stops and joins the ticket key watcher if one runs (keys.c). */
void redis__watch_stop(struct tlsock_redis_store *s);

#endif /* TLSOCK_REDIS_INT_H */
