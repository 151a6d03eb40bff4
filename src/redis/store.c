/*
 * The Redis session store (include/tlsock/redis.h): callers queue requests under a mutex and
 * wake the store's thread (uv_async_send); that thread owns the hiredis connection, on hiredis's
 * libuv adapter over its own loop, and every piece of state below the mutex. Nothing a caller
 * does waits for Redis.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "redis_int.h"

enum {
    BACKOFF_MIN_MS = 100,
    BACKOFF_MAX_MS = 5000,
    TIMEOUT_MAX_MS = 60000,
    IDLE_MIN_MS = 1000, /* Redis's shortest idle `timeout` (1 s): see on_disconnect() */
};

enum req_kind { REQ_GET, REQ_PUT, REQ_DEL, REQ_PING };

/*
 * One request. A GET or PING handed to hiredis is freed by its reply callback, which hiredis
 * calls exactly once (with NULL when the connection goes); until then it may also sit on the
 * in-flight list, which its timeout takes it off.
 */
struct redis__req {
    struct redis__req *next;   /* the queue, then the in-flight list */
    struct redis__req **pprev; /* in-flight list: the pointer that points at this one */
    enum req_kind kind;
    bool answered;        /* done was called (a timeout may come before the reply) */
    uint64_t deadline_ms; /* uv_now() time after which a GET or PING is given up */
    tlsock_store_done_fn done;
    void *arg;
    char px[24]; /* PUT: milliseconds to live, in decimal */
    size_t key_len;
    size_t value_len;
    unsigned char data[]; /* key, then value */
};

static _Thread_local char errmsg[256];

const char *tlsock_redis_errmsg(void)
{
    return errmsg;
}

int redis__fail(int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(errmsg, sizeof(errmsg), fmt, ap);
    va_end(ap);
    return code;
}

void redis__log(struct tlsock_redis_store *s, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    tlsock_redis_log_fn fn;
    void *user;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&s->lock);
    fn = s->log_fn;
    user = s->log_user;
    pthread_mutex_unlock(&s->lock);
    if (fn != NULL) {
        fn(user, line);
    } else {
        fprintf(stderr, "%s\n", line);
    }
}

/* ---- requests ------------------------------------------------------------------------------ */

static void req_free(struct tlsock_redis_store *s, struct redis__req *r)
{
    atomic_fetch_sub(&s->pending, 1);
    atomic_fetch_sub(&s->pending_bytes, r->key_len + r->value_len);
    /* A put's value is a serialized session: its master secret. */
    explicit_bzero(r->data, r->key_len + r->value_len);
    free(r);
}

/* Calls a GET's done with a miss unless it was answered already. */
static void req_miss(struct redis__req *r)
{
    if (r->kind == REQ_GET && !r->answered) {
        r->answered = true;
        r->done(r->arg, NULL, 0);
    }
}

static void inflight_unlink(struct redis__req *r)
{
    if (r->pprev != NULL) {
        *r->pprev = r->next;
        if (r->next != NULL) {
            r->next->pprev = r->pprev;
        }
        r->pprev = NULL;
        r->next = NULL;
    }
}

/* ---- the link (enum redis__link) ----------------------------------------------------------- */

static void link_connect(struct tlsock_redis_store *s);

static void on_reconnect(uv_timer_t *t)
{
    link_connect(t->data);
}

/*
 * Whether the link that is going down had worked: Redis answered a request on it, or it stayed up
 * for BACKOFF_MAX_MS. Otherwise Redis answers the connection's PING but not the requests (loaded,
 * or refusing them slowly), and reconnecting at once would only go round again: two log lines and
 * a batch of misses per round, several times a second.
 */
static bool link_had_worked(struct tlsock_redis_store *s)
{
    return s->served || uv_now(&s->loop) - s->up_since_ms >= BACKOFF_MAX_MS;
}

/*
 * The one place the link changes state (but for link_reopen()); @p why says why Redis is unusable
 * (moves to DOWN).
 * A first move to DOWN logs the outage; the move to UP after it logs its end. `up` is published
 * last, so that a thread that sees tlsock_redis_store_connected() change has the line that says
 * why (include/tlsock/redis.h); a request admitted meanwhile meets the new state and misses.
 * The reconnection delay doubles from BACKOFF_MIN_MS to BACKOFF_MAX_MS while connections fail or
 * do not work, and starts over after one that worked.
 */
static void link_move(struct tlsock_redis_store *s, enum redis__link to, const char *why)
{
    enum redis__link from = s->link;
    bool ok =
        to == REDIS__LINK_STOPPED || (from == REDIS__LINK_DOWN && to == REDIS__LINK_CONNECTING) ||
        (from == REDIS__LINK_CONNECTING && (to == REDIS__LINK_UP || to == REDIS__LINK_DOWN)) ||
        (from == REDIS__LINK_UP && to == REDIS__LINK_DOWN);

    if (!ok) {
        return; /* e.g. a failure reported twice for one connection */
    }
    s->link = to;
    if (to == REDIS__LINK_DOWN) {
        if (from == REDIS__LINK_UP && link_had_worked(s)) {
            s->backoff_ms = BACKOFF_MIN_MS;
        }
        if (!s->warned) {
            s->warned = true;
            redis__log(s,
                       "tlsock: Redis session store %s unusable (%s): sessions miss (full "
                       "handshakes) until it answers again",
                       s->url, why);
        }
        uv_timer_start(&s->reconnect, on_reconnect, s->backoff_ms, 0);
        s->backoff_ms = s->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : s->backoff_ms * 2;
    } else if (to == REDIS__LINK_UP) {
        s->up_since_ms = uv_now(&s->loop);
        s->served = false;
        if (s->warned) {
            s->warned = false;
            redis__log(s, "tlsock: Redis session store %s is back", s->url);
        }
    }
    atomic_store(&s->up, to == REDIS__LINK_UP);
}

/*
 * UP to DOWN with no outage: Redis closed a connection nothing waited on (on_disconnect()). The
 * next connection is made at once, and logs nothing unless it fails: then link_move() logs the
 * outage, since `warned` is still false.
 */
static void link_reopen(struct tlsock_redis_store *s)
{
    s->link = REDIS__LINK_DOWN;
    s->backoff_ms = BACKOFF_MIN_MS;
    uv_timer_start(&s->reconnect, on_reconnect, 0, 0);
    atomic_store(&s->up, false);
}

/* Drops the connection (hiredis completes its requests as misses) and moves to DOWN. */
static void link_drop(struct tlsock_redis_store *s, const char *why, enum redis__link to)
{
    struct redisAsyncContext *ac = s->ac;

    s->ac = NULL; /* first: the callbacks redisAsyncFree makes see a stale connection */
    link_move(s, to, why);
    if (ac != NULL) {
        redisAsyncFree(ac);
    }
}

static void on_timeouts(uv_timer_t *t);

static void schedule_timeouts(struct tlsock_redis_store *s)
{
    uint64_t now = uv_now(&s->loop);
    uint64_t next = UINT64_MAX;

    for (struct redis__req *r = s->inflight; r != NULL; r = r->next) {
        next = r->deadline_ms < next ? r->deadline_ms : next;
    }
    if (next == UINT64_MAX) {
        uv_timer_stop(&s->timeouts);
    } else {
        uv_timer_start(&s->timeouts, on_timeouts, next > now ? next - now : 0, 0);
    }
}

/* Requests past their deadline are misses, and Redis is treated as down (slow or stopped). */
static void on_timeouts(uv_timer_t *t)
{
    struct tlsock_redis_store *s = t->data;
    uint64_t now = uv_now(&s->loop);
    bool expired = false;
    struct redis__req *r = s->inflight;

    while (r != NULL) {
        struct redis__req *next = r->next;

        if (r->deadline_ms <= now) {
            expired = true;
            inflight_unlink(r);
            req_miss(r);
        }
        r = next;
    }
    if (expired && s->ac != NULL) {
        char why[64];

        snprintf(why, sizeof(why), "no reply within %d ms", atomic_load(&s->timeout_ms));
        link_drop(s, why, REDIS__LINK_DOWN);
    }
    schedule_timeouts(s);
}

/* AUTH's or SELECT's reply: an error (a wrong password, a database the server does not have)
 * must not leave the link to come UP with the PING that follows. */
static void on_setup(struct redisAsyncContext *ac, void *reply_, void *priv)
{
    struct tlsock_redis_store *s = ac->data;
    redisReply *reply = reply_;

    (void)priv;
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR && ac == s->ac) {
        /* hiredis defers the free that link_drop asks for until this callback returns. */
        link_drop(s, reply->str, REDIS__LINK_DOWN);
    }
}

/*
 * Redis may answer PING but refuse a kind of request: writes (a replica's READONLY, maxmemory with
 * noeviction's OOM, a failed snapshot's MISCONF, an ACL) or reads (an ACL that leaves GET out,
 * write-only keys %W~, a value of another type under the key: WRONGTYPE). No session is then
 * shared, or none resumes, which a deployer must hear of: the first refusal of @p kind is logged
 * with Redis's reason and @p effect, and the first request of that kind taken after it says so
 * (@p taken); the lines in between would be one per handshake. The link stays UP: gets may still
 * hit (a replica's copy, the entries stored before Redis filled up), and DOWN would only turn
 * those hits into misses and reconnect to a Redis that answers the PING at once.
 */
static void note_refusal(struct tlsock_redis_store *s, const redisReply *reply, const char *kind,
                         const char *effect, const char *taken, bool *refused_before)
{
    bool refused = reply->type == REDIS_REPLY_ERROR;

    if (refused && !*refused_before) {
        redis__log(s, "tlsock: Redis session store %s refuses %s (%s): %s", s->url, kind,
                   reply->str, effect);
    } else if (!refused && *refused_before) {
        redis__log(s, "tlsock: Redis session store %s %s again", s->url, taken);
    }
    *refused_before = refused;
}

static void on_reply(struct redisAsyncContext *ac, void *reply_, void *priv)
{
    struct tlsock_redis_store *s = ac->data;
    struct redis__req *r = priv;
    redisReply *reply = reply_;

    inflight_unlink(r);
    if (r->kind != REQ_PING && reply != NULL && ac == s->ac) {
        s->served = true; /* Redis answers requests on this link (link_had_worked) */
    }
    if (reply == NULL && ac == s->ac) {
        s->lost = true; /* the connection went before this answer (on_disconnect) */
    }
    if (r->kind == REQ_PING) {
        if (reply != NULL && ac == s->ac && s->link == REDIS__LINK_CONNECTING) {
            if (reply->type == REDIS_REPLY_ERROR) {
                /* hiredis defers the free that link_drop asks for until this callback returns. */
                link_drop(s, reply->str, REDIS__LINK_DOWN);
            } else {
                link_move(s, REDIS__LINK_UP, NULL);
            }
        }
    } else if ((r->kind == REQ_PUT || r->kind == REQ_DEL) && reply != NULL) {
        note_refusal(s, reply, "writes", "sessions are not shared until it takes them",
                     "takes writes", &s->writes_refused);
    } else if (r->kind == REQ_GET && !r->answered) {
        r->answered = true;
        if (reply != NULL) {
            note_refusal(s, reply, "reads", "sessions are not resumed until it answers them",
                         "answers reads", &s->reads_refused);
        }
        if (reply != NULL && reply->type == REDIS_REPLY_STRING) {
            r->done(r->arg, reply->str, reply->len);
            /* A session, which hiredis frees without wiping once this returns. */
            explicit_bzero(reply->str, reply->len);
        } else {
            r->done(r->arg, NULL, 0);
        }
    }
    req_free(s, r);
    schedule_timeouts(s);
}

/* Sends @p r on the connection; a request that cannot be sent is a miss. */
static void req_send(struct tlsock_redis_store *s, struct redis__req *r)
{
    const char *argv[5];
    size_t lens[5];
    int argc = 0;
    const char *cmd = r->kind == REQ_GET   ? "GET"
                      : r->kind == REQ_PUT ? "SET"
                      : r->kind == REQ_DEL ? "DEL"
                                           : "PING";

    argv[argc] = cmd;
    lens[argc++] = strlen(cmd);
    if (r->kind != REQ_PING) {
        argv[argc] = (const char *)r->data;
        lens[argc++] = r->key_len;
    }
    if (r->kind == REQ_PUT) {
        argv[argc] = (const char *)r->data + r->key_len;
        lens[argc++] = r->value_len;
        argv[argc] = "PX";
        lens[argc++] = 2;
        argv[argc] = r->px;
        lens[argc++] = strlen(r->px);
    }
    /*
     * Every request, puts and removes too, stays counted (requests and bytes) until its reply or
     * its timeout: hiredis's output buffer holds what a slow Redis has not read, so that is what
     * the queue's bounds must cover, and a put nobody answers marks the link down as a get does.
     */
    if (redisAsyncCommandArgv(s->ac, on_reply, r, argc, argv, lens) != REDIS_OK) {
        req_miss(r);
        req_free(s, r);
        return;
    }
    r->deadline_ms = uv_now(&s->loop) + (uint64_t)atomic_load(&s->timeout_ms);
    r->next = s->inflight;
    if (r->next != NULL) {
        r->next->pprev = &r->next;
    }
    r->pprev = &s->inflight;
    s->inflight = r;
    schedule_timeouts(s);
}

static void on_connect(const struct redisAsyncContext *ac, int status)
{
    struct tlsock_redis_store *s = ac->data;

    if (status != REDIS_OK && ac == s->ac) {
        s->ac = NULL; /* hiredis frees it after this callback */
        link_move(s, REDIS__LINK_DOWN, ac->errstr);
    }
}

/*
 * Redis closed the connection, or it broke. Redis closes a connection idle for its `timeout`
 * (300 s in many deployments), and CLIENT KILL does the same: with nothing waiting on it, nothing
 * was lost, and an outage line with its end for every idle period (and misses for a growing
 * reconnection delay) would be wrong. So a close seen as end of stream, on a link UP for at least
 * IDLE_MIN_MS, with no request unanswered (hiredis answered them with NULL just before, setting
 * `lost`), reconnects at once and quietly. A Redis that stops or restarts closes idle
 * connections the same way: the reconnection then fails, and that is the outage logged.
 */
static void on_disconnect(const struct redisAsyncContext *ac, int status)
{
    struct tlsock_redis_store *s = ac->data;

    (void)status;
    if (ac == s->ac) {
        bool idle = ac->err == REDIS_ERR_EOF && s->link == REDIS__LINK_UP && !s->lost &&
                    uv_now(&s->loop) - s->up_since_ms >= IDLE_MIN_MS;

        s->ac = NULL; /* hiredis frees it after this callback */
        if (idle) {
            link_reopen(s);
        } else {
            link_move(s, REDIS__LINK_DOWN,
                      ac->errstr[0] != '\0' ? ac->errstr : "connection closed");
        }
    }
}

static struct redis__req *req_new(enum req_kind kind, const void *key, size_t key_len,
                                  const void *value, size_t value_len)
{
    struct redis__req *r = calloc(1, sizeof(*r) + key_len + value_len);

    if (r != NULL) {
        r->kind = kind;
        r->key_len = key_len;
        r->value_len = value_len;
        if (key_len > 0) {
            memcpy(r->data, key, key_len);
        }
        if (value_len > 0) {
            memcpy(r->data + key_len, value, value_len);
        }
    }
    return r;
}

/* Connects (the PING sent at once also bounds the connection's time) and moves to CONNECTING. */
static void link_connect(struct tlsock_redis_store *s)
{
    redisAsyncContext *ac = redisAsyncConnect(s->host, s->port);
    struct redis__req *ping;

    link_move(s, REDIS__LINK_CONNECTING, NULL);
    if (ac == NULL || ac->err != 0) {
        char why[128];

        snprintf(why, sizeof(why), "%s", ac != NULL ? ac->errstr : "out of memory");
        redisAsyncFree(ac);
        link_move(s, REDIS__LINK_DOWN, why);
        return;
    }
    ac->data = s;
    if (redisLibuvAttach(ac, &s->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        link_move(s, REDIS__LINK_DOWN, "cannot watch the socket");
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    s->ac = ac;
    s->lost = false;
    if (s->pass[0] != '\0') {
        const char *argv[3];
        size_t lens[3];
        int argc = redis__auth_argv(s, argv, lens);

        redisAsyncCommandArgv(ac, on_setup, NULL, argc, argv, lens);
    }
    if (s->db != 0) {
        redisAsyncCommand(ac, on_setup, NULL, "SELECT %d", s->db);
    }
    ping = req_new(REQ_PING, NULL, 0, NULL, 0);
    if (ping == NULL) {
        link_drop(s, "out of memory", REDIS__LINK_DOWN);
        return;
    }
    atomic_fetch_add(&s->pending, 1);
    req_send(s, ping);
}

/* ---- the store's thread -------------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_wake(uv_async_t *a)
{
    struct tlsock_redis_store *s = a->data;
    struct redis__req *r;
    bool stopping;

    pthread_mutex_lock(&s->lock);
    r = s->queue_head;
    s->queue_head = NULL;
    s->queue_tail = NULL;
    stopping = s->stopping;
    pthread_mutex_unlock(&s->lock);
    uv_update_time(&s->loop);
    while (r != NULL) {
        struct redis__req *next = r->next;

        r->next = NULL;
        if (s->link == REDIS__LINK_UP && !stopping) {
            req_send(s, r);
        } else {
            req_miss(r);
            req_free(s, r);
        }
        r = next;
    }
    if (stopping && s->link != REDIS__LINK_STOPPED) {
        link_drop(s, "stopped", REDIS__LINK_STOPPED);
        for (r = s->inflight; r != NULL; r = r->next) {
            req_miss(r); /* none left: redisAsyncFree answered them; kept for safety */
        }
        uv_close((uv_handle_t *)&s->wake, on_handle_closed);
        uv_close((uv_handle_t *)&s->reconnect, on_handle_closed);
        uv_close((uv_handle_t *)&s->timeouts, on_handle_closed);
    }
}

static void store_thread(void *arg)
{
    struct tlsock_redis_store *s = arg;

    link_connect(s);
    uv_run(&s->loop, UV_RUN_DEFAULT);
}

/* ---- the interface callers use ------------------------------------------------------------- */

/* Queues @p r for the store's thread; false (nothing queued) when the store is stopping. */
static bool enqueue(struct tlsock_redis_store *s, struct redis__req *r)
{
    bool ok;

    pthread_mutex_lock(&s->lock);
    ok = !s->stopping;
    if (ok) {
        if (s->queue_tail != NULL) {
            s->queue_tail->next = r;
        } else {
            s->queue_head = r;
        }
        s->queue_tail = r;
        /* Under the lock: once it is released, a free racing with this call may end the
         * store's thread and free the handle. */
        uv_async_send(&s->wake);
    }
    pthread_mutex_unlock(&s->lock);
    return ok;
}

/* A new request if Redis is up and the queue has room (requests and bytes), else NULL. */
static struct redis__req *admit(struct tlsock_redis_store *s, enum req_kind kind, const void *key,
                                size_t key_len, const void *value, size_t value_len)
{
    struct redis__req *r = NULL;
    size_t bytes = key_len + value_len;

    if (!atomic_load(&s->up)) {
        return NULL;
    }
    /* Both counted first, so that racing callers never pass a limit together. */
    size_t held = atomic_fetch_add(&s->pending_bytes, bytes);
    if (atomic_fetch_add(&s->pending, 1) < TLSOCK_REDIS_QUEUE_MAX &&
        held + bytes <= TLSOCK_REDIS_QUEUE_BYTES) {
        r = req_new(kind, key, key_len, value, value_len);
    }
    if (r == NULL) {
        atomic_fetch_sub(&s->pending, 1);
        atomic_fetch_sub(&s->pending_bytes, bytes);
    }
    return r;
}

static void store_get(void *user, const void *key, size_t key_len, tlsock_store_done_fn done,
                      void *arg)
{
    struct tlsock_redis_store *s = user;
    struct redis__req *r = admit(s, REQ_GET, key, key_len, NULL, 0);

    if (r == NULL) {
        done(arg, NULL, 0);
        return;
    }
    r->done = done;
    r->arg = arg;
    if (!enqueue(s, r)) {
        req_free(s, r);
        done(arg, NULL, 0);
    }
}

static int64_t unix_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void store_put(void *user, const void *key, size_t key_len, const void *value, size_t len,
                      int64_t expires_ms)
{
    struct tlsock_redis_store *s = user;
    int64_t ttl = expires_ms - unix_ms();
    struct redis__req *r;

    if (ttl <= 0) {
        return;
    }
    r = admit(s, REQ_PUT, key, key_len, value, len);
    if (r != NULL) {
        snprintf(r->px, sizeof(r->px), "%lld", (long long)ttl);
        if (!enqueue(s, r)) {
            req_free(s, r);
        }
    }
}

static void store_remove(void *user, const void *key, size_t key_len)
{
    struct tlsock_redis_store *s = user;
    struct redis__req *r = admit(s, REQ_DEL, key, key_len, NULL, 0);

    if (r != NULL && !enqueue(s, r)) {
        req_free(s, r);
    }
}

/* ---- the public functions ------------------------------------------------------------------ */

int redis__auth_argv(const struct tlsock_redis_store *s, const char *argv[3], size_t lens[3])
{
    int argc = 0;

    argv[argc] = "AUTH";
    lens[argc++] = 4;
    if (s->user[0] != '\0') {
        argv[argc] = s->user;
        lens[argc++] = strlen(s->user);
    }
    argv[argc] = s->pass;
    lens[argc++] = strlen(s->pass);
    return argc;
}

/*
 * @p url with the password of its user information (SCHEME://[USER]:PASSWORD@...) as "***", into
 * @p out: what messages and log lines show, since they go where other people read them. The user
 * information ends at the last '@' before the path.
 */
static void redact_url(const char *url, char *out, size_t size)
{
    const char *auth = strstr(url, "://");
    const char *auth_end;
    const char *at = NULL;
    const char *colon;

    if (auth == NULL) {
        snprintf(out, size, "%s", url);
        return;
    }
    auth += 3;
    auth_end = auth + strcspn(auth, "/");
    for (const char *p = auth; p < auth_end; p++) {
        at = *p == '@' ? p : at;
    }
    colon = at != NULL ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (colon == NULL) {
        snprintf(out, size, "%s", url);
    } else {
        snprintf(out, size, "%.*s:***%s", (int)(colon - url), url, at);
    }
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* The @p len bytes at @p in, percent-decoded, into @p out (NUL-terminated); false if malformed,
 * too long, or holding a NUL. */
static bool percent_decode(const char *in, size_t len, char *out, size_t size)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)in[i];

        if (c == '%') {
            if (len - i < 3 || hex_digit(in[i + 1]) < 0 || hex_digit(in[i + 2]) < 0) {
                return false;
            }
            c = hex_digit(in[i + 1]) * 16 + hex_digit(in[i + 2]);
            i += 2;
        }
        if (c == 0 || n + 1 >= size) {
            return false;
        }
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return true;
}

/*
 * redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] into @p s; HOST may be [IPv6]; USER and PASSWORD are
 * percent-encoded ('@', ':', '/' and '%' in them must be). Messages show the URL with the password
 * as "***" (s->url).
 */
static int parse_url(struct tlsock_redis_store *s, const char *url)
{
    static const char scheme[] = "redis://";
    const char *p = url;
    const char *host_end;
    const char *at = NULL;
    size_t host_len;
    char *end;

    redact_url(url, s->url, sizeof(s->url));
    url = s->url; /* from here on, for the messages */
    if (strlen(p) >= sizeof(s->url) || strncmp(p, scheme, sizeof(scheme) - 1) != 0) {
        return redis__fail(TLSOCK_EINVAL,
                           "'%s' is not a redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] URL", url);
    }
    p += sizeof(scheme) - 1;
    for (const char *q = p; *q != '\0' && *q != '/'; q++) {
        at = *q == '@' ? q : at;
    }
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));

        if (colon == NULL) {
            return redis__fail(TLSOCK_EINVAL,
                               "'%s': the credentials are [USER]:PASSWORD@, percent-encoded", url);
        }
        if (!percent_decode(p, (size_t)(colon - p), s->user, sizeof(s->user)) ||
            !percent_decode(colon + 1, (size_t)(at - colon - 1), s->pass, sizeof(s->pass)) ||
            s->pass[0] == '\0') {
            return redis__fail(TLSOCK_EINVAL,
                               "'%s': no password, or the user or the password is too long "
                               "or not percent-encoded",
                               url);
        }
        p = at + 1;
    }
    if (*p == '[') {
        host_end = strchr(p, ']');
        if (host_end == NULL) {
            return redis__fail(TLSOCK_EINVAL, "'%s': no ']' after the IPv6 address", url);
        }
        p++;
        host_len = (size_t)(host_end - p);
        host_end++;
    } else {
        host_len = strcspn(p, ":/");
        host_end = p + host_len;
    }
    if (host_len == 0 || host_len >= sizeof(s->host)) {
        return redis__fail(TLSOCK_EINVAL, "'%s': no host", url);
    }
    memcpy(s->host, p, host_len);
    s->host[host_len] = '\0';
    s->port = 6379;
    p = host_end;
    if (*p == ':') {
        long port = strtol(p + 1, &end, 10);

        if (end == p + 1 || port < 1 || port > 65535) {
            return redis__fail(TLSOCK_EINVAL, "'%s': the port is not 1 to 65535", url);
        }
        s->port = (int)port;
        p = end;
    }
    if (*p == '/' && p[1] != '\0') {
        long db = strtol(p + 1, &end, 10);

        if (end == p + 1 || *end != '\0' || db < 0 || db > 1000000) {
            return redis__fail(TLSOCK_EINVAL, "'%s': the database is not a number", url);
        }
        s->db = (int)db;
        p = end;
    } else if (*p == '/') {
        p++;
    }
    if (*p != '\0') {
        return redis__fail(TLSOCK_EINVAL, "'%s': unexpected '%s'", url, p);
    }
    return 0;
}

static int make_lease_id(struct tlsock_redis_store *s)
{
    unsigned char raw[16];
    int err = tlsock_random(raw, sizeof(raw));

    if (err != 0) {
        return redis__fail(err, "no random bytes for the lease: %s", tlsock_errmsg());
    }
    for (size_t i = 0; i < sizeof(raw); i++) {
        snprintf(s->lease_id + 2 * i, 3, "%02x", raw[i]);
    }
    return 0;
}

int tlsock_redis_store_new(const char *url, struct tlsock_redis_store **out)
{
    struct tlsock_redis_store *s;
    int err;

    if (out != NULL) {
        *out = NULL;
    }
    if (url == NULL || out == NULL) {
        return redis__fail(TLSOCK_EINVAL, "NULL argument");
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return redis__fail(TLSOCK_ENOMEM, "out of memory");
    }
    err = parse_url(s, url);
    if (err == 0) {
        err = make_lease_id(s);
    }
    if (err != 0) {
        goto free_store;
    }
    atomic_init(&s->timeout_ms, TLSOCK_REDIS_TIMEOUT_MS);
    atomic_init(&s->up, false);
    atomic_init(&s->pending, 0);
    atomic_init(&s->pending_bytes, 0);
    s->iface = (struct tlsock_session_store){
        .get = store_get, .put = store_put, .remove = store_remove, .user = s};
    s->backoff_ms = BACKOFF_MIN_MS;
    s->link = REDIS__LINK_DOWN;
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        err = redis__fail(TLSOCK_ESYS, "pthread_mutex_init failed");
        goto free_store;
    }
    if (pthread_mutex_init(&s->keys_lock, NULL) != 0) {
        err = redis__fail(TLSOCK_ESYS, "pthread_mutex_init failed");
        pthread_mutex_destroy(&s->lock);
        goto free_store;
    }
    if (uv_loop_init(&s->loop) != 0) {
        err = redis__fail(TLSOCK_ESYS, "uv_loop_init failed");
        goto free_locks;
    }
    uv_async_init(&s->loop, &s->wake, on_wake);
    uv_timer_init(&s->loop, &s->reconnect);
    uv_timer_init(&s->loop, &s->timeouts);
    s->wake.data = s;
    s->reconnect.data = s;
    s->timeouts.data = s;
    if (uv_thread_create(&s->thread, store_thread, s) != 0) {
        err = redis__fail(TLSOCK_ESYS, "cannot start the store's thread");
        goto close_loop;
    }
    *out = s;
    return 0;

close_loop:
    uv_close((uv_handle_t *)&s->wake, on_handle_closed);
    uv_close((uv_handle_t *)&s->reconnect, on_handle_closed);
    uv_close((uv_handle_t *)&s->timeouts, on_handle_closed);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
free_locks:
    pthread_mutex_destroy(&s->keys_lock);
    pthread_mutex_destroy(&s->lock);
free_store:
    explicit_bzero(s->pass, sizeof(s->pass));
    free(s);
    return err;
}

void tlsock_redis_store_free(struct tlsock_redis_store *store)
{
    if (store == NULL) {
        return;
    }
    redis__watch_stop(store);
    pthread_mutex_lock(&store->lock);
    store->stopping = true;
    pthread_mutex_unlock(&store->lock);
    uv_async_send(&store->wake);
    uv_thread_join(&store->thread);
    uv_loop_close(&store->loop);
    pthread_mutex_destroy(&store->keys_lock);
    pthread_mutex_destroy(&store->lock);
    explicit_bzero(store->pass, sizeof(store->pass));
    free(store);
}

const struct tlsock_session_store *
tlsock_redis_store_session_store(struct tlsock_redis_store *store)
{
    return store != NULL ? &store->iface : NULL;
}

int tlsock_redis_store_set_timeout(struct tlsock_redis_store *store, int timeout_ms)
{
    if (store == NULL || timeout_ms < 1 || timeout_ms > TIMEOUT_MAX_MS) {
        return redis__fail(TLSOCK_EINVAL, "the timeout is 1 to %d ms", TIMEOUT_MAX_MS);
    }
    atomic_store(&store->timeout_ms, timeout_ms);
    return 0;
}

int tlsock_redis_store_set_log(struct tlsock_redis_store *store, tlsock_redis_log_fn fn, void *user)
{
    if (store == NULL) {
        return redis__fail(TLSOCK_EINVAL, "NULL store");
    }
    pthread_mutex_lock(&store->lock);
    store->log_fn = fn;
    store->log_user = user;
    pthread_mutex_unlock(&store->lock);
    return 0;
}

bool tlsock_redis_store_connected(struct tlsock_redis_store *store)
{
    return store != NULL && atomic_load(&store->up);
}
