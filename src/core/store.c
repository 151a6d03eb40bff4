/*
 * A server's TLS 1.2 session-ID cache: the context's in-process cache (session_cache.c), or the
 * application's store (include/tlsock.h, "Session store"; docs/sessions.md).
 *
 * A store answers later, maybe from another thread, while the implementations ask for a session
 * synchronously, in the middle of their ClientHello processing. So the core reads the ClientHello
 * ahead of the implementation (the gate, before the first handshake step), starts the get, and
 * makes the handshake wait (TLSOCK_EWANT_READ) until the done came or the driver gave up; the
 * answer goes into a one-entry slot that the implementation's retrieve callback reads.
 *
 * A get's record (struct tlsock__lookup) is shared by the connection and the store's done, and
 * counted: the done may come after the connection gave up or ended, and then only drops its
 * reference. The driver told of the done holds a reference too (its notify's). The core only
 * records and tells: the drivers wait (core.h).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "impl/hello.h"
#include "objects.h"
#include "session_cache.h"

enum {
    PHASE_HELLO,   /* the ClientHello has not been looked at */
    PHASE_WAITING, /* a get was started */
    PHASE_DONE,    /* nothing more to look up: the implementation goes on */
};

enum {
    HELLO_MAX = 64 * 1024, /* a ClientHello longer than this is left to the implementation */
    HELLO_RECORDS = 8,     /* ... and one in more records than this */
    RECORD_HANDSHAKE = 22,
    MSG_CLIENT_HELLO = 1,
    KEY_MAX = 160,
};

static const char KEY_PREFIX[] = "tlsock:sess:";

struct tlsock__lookup {
    pthread_mutex_t lock;
    int refs;
    bool done;      /* the store's done came */
    bool abandoned; /* the connection gave up on it or ended: the done keeps nothing */
    unsigned char *value;
    size_t len;
    tlsock__lookup_notify_fn notify;
    void *notify_arg;
};

/* A connection's get, from its start until the implementation used the slot (or it missed). */
struct tlsock__store_get {
    struct tlsock__lookup *lookup; /* while waiting: the get's record, shared with its done */
    int64_t deadline_ns;           /* while waiting: when the get counts as a miss */
    unsigned char id[32];          /* the session ID looked up */
    size_t id_len;
    unsigned char *slot; /* what the get found, for the implementation's retrieve; NULL: none */
    size_t slot_len;
};

/* ---- the context's setter ---------------------------------------------------------------------
 */

int tlsock_ctx_set_session_store(struct tlsock_ctx *ctx, const struct tlsock_session_store *store)
{
    int rc = tlsock__ctx_setter_begin(ctx);

    if (rc != 0) {
        return rc;
    }
    if (ctx->role != TLSOCK_SERVER) {
        rc = tlsock__fail(&ctx->err, TLSOCK_EINVAL,
                          "session store: only server contexts keep sessions in a store");
    } else if (store != NULL &&
               (store->get == NULL || store->put == NULL || store->remove == NULL)) {
        rc = tlsock__fail(&ctx->err, TLSOCK_EINVAL,
                          "session store: get, put and remove are required");
    }
    if (rc != 0) {
        tlsock__publish(&ctx->err);
        return rc;
    }
    memset(&ctx->store, 0, sizeof(ctx->store));
    if (store != NULL) {
        ctx->store = *store;
    }
    return 0;
}

/* ---- keys -------------------------------------------------------------------------------------
 */

static char *hex(char *p, const unsigned char *data, size_t len)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < len; i++) {
        *p++ = digits[data[i] >> 4];
        *p++ = digits[data[i] & 15];
    }
    return p;
}

/* "tlsock:sess:", the configuration digest, ':', the session ID (at most 32 bytes), in hex. */
static size_t key_make(const struct tlsock_ctx *ctx, const unsigned char *id, size_t id_len,
                       char key[KEY_MAX])
{
    char *p = key;

    memcpy(p, KEY_PREFIX, sizeof(KEY_PREFIX) - 1);
    p = hex(p + sizeof(KEY_PREFIX) - 1, ctx->session_digest, sizeof(ctx->session_digest));
    *p++ = ':';
    p = hex(p, id, id_len < 32 ? id_len : 32);
    return (size_t)(p - key);
}

/* ---- the implementation's side: the in-process cache, or the store and the slot ---------------
 */

static void cache_put(struct tlsock_conn *conn, const unsigned char *id, size_t id_len,
                      const unsigned char *data, size_t len)
{
    int64_t lifetime = (int64_t)conn->ctx->tickets.lifetime * 1000000000;

    /* Without memory a later client makes a full handshake. */
    (void)tlsock__scache_put(conn->ctx->sessions, id, id_len, data, len,
                             tlsock__now_ns() + lifetime);
}

static bool cache_get(struct tlsock_conn *conn, const unsigned char *id, size_t id_len,
                      unsigned char **data, size_t *len)
{
    return tlsock__scache_get(conn->ctx->sessions, id, id_len, false, data, len);
}

static void store_put(struct tlsock_conn *conn, const unsigned char *id, size_t id_len,
                      const unsigned char *data, size_t len)
{
    const struct tlsock_ctx *ctx = conn->ctx;
    struct timespec ts;
    char key[KEY_MAX];

    /* The store's expiry is Unix time: stores compare it with their own clocks. */
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    ctx->store.put(ctx->store.user, key, key_make(ctx, id, id_len, key), data, len,
                   now_ms + (int64_t)ctx->tickets.lifetime * 1000);
}

/* The slot, never the store: what the gate looked up for this ClientHello's session ID. */
static bool store_get(struct tlsock_conn *conn, const unsigned char *id, size_t id_len,
                      unsigned char **data, size_t *len)
{
    struct tlsock__store_get *get = conn->store.get;

    if (get == NULL || get->slot == NULL || id_len != get->id_len ||
        memcmp(id, get->id, id_len) != 0) {
        return false;
    }
    *data = get->slot;
    *len = get->slot_len;
    free(get);
    conn->store.get = NULL;
    return true;
}

/* The context's, for the implementations that drop sessions outside a connection (impl.h). */
static void ctx_remove(struct tlsock_ctx *ctx, const unsigned char *id, size_t id_len)
{
    char key[KEY_MAX];

    if (ctx->store.get != NULL) {
        ctx->store.remove(ctx->store.user, key, key_make(ctx, id, id_len, key));
    } else if (ctx->sessions != NULL) {
        tlsock__scache_remove(ctx->sessions, id, id_len);
    }
}

static void conn_remove(struct tlsock_conn *conn, const unsigned char *id, size_t id_len)
{
    ctx_remove(conn->ctx, id, id_len);
}

void tlsock__store_ctx_freeze(struct tlsock_ctx *ctx)
{
    struct tlsock__session_hooks *h = &ctx->session_hooks;

    /* One lifetime for a server's sessions, by ID or by ticket. */
    h->server_lifetime_ns = (int64_t)ctx->tickets.lifetime * 1000000000;
    if (ctx->store.get != NULL) {
        h->server_put = store_put;
        h->server_get = store_get;
        h->server_remove = conn_remove;
    } else if (ctx->sessions != NULL) {
        h->server_put = cache_put;
        h->server_get = cache_get;
        h->server_remove = conn_remove;
    }
    if (ctx->impl->ctx_set_session_remove != NULL) {
        ctx->impl->ctx_set_session_remove(ctx->native, ctx_remove, ctx);
    }
}

/* ---- look-ups ---------------------------------------------------------------------------------
 */

void tlsock__lookup_unref(struct tlsock__lookup *l)
{
    pthread_mutex_lock(&l->lock);
    int refs = --l->refs;
    pthread_mutex_unlock(&l->lock);
    if (refs == 0) {
        pthread_mutex_destroy(&l->lock);
        tlsock__free_secret(l->value, l->len);
        free(l);
    }
}

bool tlsock__lookup_abandoned(struct tlsock__lookup *l)
{
    pthread_mutex_lock(&l->lock);
    bool abandoned = l->abandoned;
    pthread_mutex_unlock(&l->lock);
    return abandoned;
}

/* The store's done, from any thread: the connection's reference may be gone already. */
static void lookup_done(void *arg, const void *value, size_t len)
{
    struct tlsock__lookup *l = arg;

    pthread_mutex_lock(&l->lock);
    if (!l->abandoned && value != NULL && len > 0) {
        l->value = malloc(len); /* without memory: a miss */
        if (l->value != NULL) {
            memcpy(l->value, value, len);
            l->len = len;
        }
    }
    l->done = true;
    if (!l->abandoned && l->notify != NULL) {
        l->refs++; /* the notified driver's, unless it could not keep it */
        if (!l->notify(l->notify_arg, l)) {
            l->refs--; /* never the last: this function's own goes below */
        }
    }
    pthread_mutex_unlock(&l->lock);
    tlsock__lookup_unref(l);
}

static struct tlsock__lookup *lookup_new(const struct tlsock__conn_store *st)
{
    struct tlsock__lookup *l = calloc(1, sizeof(*l));

    if (l == NULL) {
        return NULL;
    }
    pthread_mutex_init(&l->lock, NULL);
    l->refs = 2; /* the connection's and the done's */
    l->notify = st->notify;
    l->notify_arg = st->notify_arg;
    return l;
}

/*
 * The connection lets go of its get's record: with @p take, the slot keeps what came, if
 * anything; without a slot the get itself goes too.
 */
static void lookup_drop(struct tlsock_conn *conn, bool take)
{
    struct tlsock__conn_store *st = &conn->store;
    struct tlsock__store_get *get = st->get;
    struct tlsock__lookup *l = get->lookup;

    pthread_mutex_lock(&l->lock);
    l->abandoned = true;
    if (take && l->done && l->value != NULL) {
        get->slot = l->value;
        get->slot_len = l->len;
        l->value = NULL;
    }
    pthread_mutex_unlock(&l->lock);
    tlsock__lookup_unref(l);
    get->lookup = NULL;
    if (get->slot == NULL) {
        free(get);
        st->get = NULL;
    }
    conn->store_phase = PHASE_DONE;
}

void tlsock__conn_set_store_notify(struct tlsock_conn *conn, tlsock__lookup_notify_fn fn, void *arg)
{
    conn->store.notify = fn;
    conn->store.notify_arg = arg;
}

bool tlsock__conn_store_waiting(const struct tlsock_conn *conn)
{
    return conn->store_phase == PHASE_WAITING;
}

bool tlsock__conn_store_may_wait(const struct tlsock_conn *conn)
{
    return conn->store_phase != PHASE_DONE && conn->ctx->role == TLSOCK_SERVER &&
           conn->ctx->store.get != NULL;
}

int64_t tlsock__conn_store_deadline(const struct tlsock_conn *conn)
{
    return conn->store.get != NULL ? conn->store.get->deadline_ns : INT64_MAX;
}

/* Whether the connection still holds its get's record (it waits, or gave up on nothing yet). */
static bool holds_lookup(const struct tlsock_conn *conn)
{
    return conn->store.get != NULL && conn->store.get->lookup != NULL;
}

void tlsock__conn_store_give_up(struct tlsock_conn *conn)
{
    /* A done that came just now counts as late too: the wait decided. */
    if (holds_lookup(conn)) {
        lookup_drop(conn, false);
    }
}

void tlsock__store_conn_free(struct tlsock_conn *conn)
{
    if (holds_lookup(conn)) {
        lookup_drop(conn, false);
    }
    if (conn->store.get != NULL) {
        tlsock__free_secret(conn->store.get->slot, conn->store.get->slot_len);
        free(conn->store.get);
        conn->store.get = NULL;
    }
}

/* ---- the gate ---------------------------------------------------------------------------------
 */

static unsigned get16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/*
 * The ClientHello at the start of the input, parsed into @p h (1), reading ahead as needed: 0
 * when there is none to look at (not a handshake record, not a ClientHello, malformed, too long,
 * the stream ended), else the transport's retry or failure (TLSOCK__TRANSPORT_*).
 */
static int hello_read(struct tlsock_conn *conn, struct tlsock__hello *h)
{
    struct tlsock__transport *t = &conn->transport;
    struct tlsock__buf msg = {0};
    size_t off = 0;
    int rc = 0;

    for (int records = 0; records < HELLO_RECORDS; records++) {
        ssize_t n = tlsock__transport_fill(t, off + 5);
        const unsigned char *in = t->in.data + t->in.off;
        if (n > 0 && in[off] == RECORD_HANDSHAKE) {
            n = tlsock__transport_fill(t, off + 5 + get16(in + off + 3));
            in = t->in.data + t->in.off;
        } else if (n > 0) {
            break;
        }
        if (n <= 0) {
            rc = (int)n;
            break;
        }
        size_t rlen = get16(in + off + 3);
        if (tlsock__buf_append(&msg, in + off + 5, rlen) != 0) {
            break; /* without memory: no look-up */
        }
        off += 5 + rlen;
        const unsigned char *m = msg.data + msg.off;
        size_t have = tlsock__buf_pending(&msg);
        if (have >= 4) {
            size_t body = (size_t)m[1] << 16 | get16(m + 2);
            if (m[0] != MSG_CLIENT_HELLO || body > HELLO_MAX) {
                break;
            }
            if (have >= 4 + body) {
                rc = tlsock__hello_parse(h, m + 4, body) ? 1 : 0;
                break;
            }
        }
    }
    tlsock__buf_free(&msg);
    return rc;
}

/* The version range the server enables: its last tlsock_ctx_set_protocols(), else 1.2-1.3. */
static void protocols(const struct tlsock_ctx *ctx, int *min, int *max)
{
    *min = 0x0303;
    *max = 0x0304;
    for (const struct tlsock__setting *s = ctx->settings; s != NULL; s = s->next) {
        if (s->kind == TLSOCK__SET_PROTOCOLS) {
            *min = s->min_version;
            *max = s->max_version;
        }
    }
}

/* Starts the get of the session @p h offers by ID, when it will resume a TLS 1.2 session by ID. */
static void lookup_start(struct tlsock_conn *conn, const struct tlsock__hello *h)
{
    struct tlsock_ctx *ctx = conn->ctx;
    struct tlsock__conn_store *st = &conn->store;
    int min = 0;
    int max = 0;
    char key[KEY_MAX];

    protocols(ctx, &min, &max);
    int version = tlsock__hello_version(h, min, max);
    /* TLS 1.3 resumes by ticket only; a ticket offered is the implementation's to take. */
    if (h->session_id_len == 0 || h->ticket_ext || version == 0 || version > 0x0303) {
        return;
    }
    struct tlsock__store_get *get = calloc(1, sizeof(*get));
    if (get != NULL) {
        get->lookup = lookup_new(st);
    }
    if (get == NULL || get->lookup == NULL) {
        free(get);
        return; /* without memory: a full handshake */
    }
    memcpy(get->id, h->session_id, h->session_id_len);
    get->id_len = h->session_id_len;
    int64_t wait = TLSOCK_STORE_WAIT_MS;
    if (conn->handshake_timeout_ms > 0 && conn->handshake_timeout_ms / 2 < wait) {
        wait = conn->handshake_timeout_ms / 2;
    }
    get->deadline_ns = tlsock__now_ns() + wait * 1000000;
    if (conn->deadline_ns < get->deadline_ns) {
        get->deadline_ns = conn->deadline_ns;
    }
    st->get = get;
    conn->store_phase = PHASE_WAITING;
    ctx->store.get(ctx->store.user, key, key_make(ctx, get->id, get->id_len, key), lookup_done,
                   get->lookup);
}

int tlsock__store_gate(struct tlsock_conn *conn)
{
    struct tlsock__conn_store *st = &conn->store;
    struct tlsock__hello h;

    if (conn->store_phase == PHASE_DONE || conn->ctx->role != TLSOCK_SERVER ||
        conn->ctx->store.get == NULL) {
        return 0;
    }
    if (conn->store_phase == PHASE_HELLO) {
        int rc = hello_read(conn, &h);
        if (rc == TLSOCK__TRANSPORT_RETRY) {
            return tlsock__transport_retry_code(&conn->transport, TLSOCK_EWANT_READ, &conn->err);
        }
        if (rc == TLSOCK__TRANSPORT_FAILED) {
            return tlsock__transport_fail(&conn->transport, &conn->err);
        }
        conn->store_phase = PHASE_DONE;
        if (rc == 1) {
            lookup_start(conn, &h);
        }
    }
    if (conn->store_phase == PHASE_WAITING) {
        struct tlsock__lookup *l = st->get->lookup;
        pthread_mutex_lock(&l->lock);
        bool done = l->done;
        pthread_mutex_unlock(&l->lock);
        if (!done) {
            return TLSOCK_EWANT_READ;
        }
        lookup_drop(conn, true);
    }
    return 0;
}
