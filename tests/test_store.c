/*
 * The pluggable session store (include/tlsock.h, "Session store"; docs/sessions.md) on every
 * (client, server) pair, over the in-memory pair driven by the blocking calls: a test store that
 * records its calls answers at once, from another thread after a delay, never (then late, after
 * the connection ended), or with a miss. TLS 1.2 resumes through it by session ID (the server's
 * tickets are off); a get that never answers makes a full handshake within the bound; TLS 1.3
 * (tickets) and a ClientHello without a session ID call no get.
 */
#include "pair.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#if TLSOCK_TEST_HAVE_UV
#include "uv_harness.h"
#endif

enum mode { ANSWER_NOW, ANSWER_LATER, ANSWER_NEVER, ANSWER_MISS };

enum { ENTRIES = 8, CALLS = 32, KEY_MAX = 192 };

struct test_store {
    pthread_mutex_t lock;
    enum mode mode;
    int delay_ms;
    struct {
        char key[KEY_MAX];
        size_t key_len;
        unsigned char *value;
        size_t len;
    } e[ENTRIES];
    size_t n;
    char calls[CALLS + 1]; /* 'p' put, 'g' get, 'r' remove, in order */
    int64_t expires_ms;    /* of the last put */
    char last_key[KEY_MAX];
    char removed_key[KEY_MAX]; /* of the last remove */
    /* ANSWER_LATER: the thread; ANSWER_NEVER: the done kept for the test to call late */
    pthread_t thread;
    bool thread_started;
    tlsock_store_done_fn held_done;
    void *held_arg;
    unsigned char *answer; /* what the thread answers with */
    size_t answer_len;
    atomic_bool answered; /* ANSWER_LATER: the thread is about to call done */
};

static void record(struct test_store *s, char call, const void *key, size_t key_len)
{
    size_t n = strlen(s->calls);

    if (n < CALLS) {
        s->calls[n] = call;
    }
    if (key_len < sizeof(s->last_key)) {
        memcpy(s->last_key, key, key_len);
        s->last_key[key_len] = '\0';
    }
}

/* The entry under @p key, or NULL. */
static size_t find(struct test_store *s, const void *key, size_t key_len)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->e[i].key_len == key_len && memcmp(s->e[i].key, key, key_len) == 0) {
            return i;
        }
    }
    return ENTRIES;
}

static void *answer_later(void *arg)
{
    struct test_store *s = arg;

    usleep((useconds_t)s->delay_ms * 1000);
    atomic_store(&s->answered, true);
    s->held_done(s->held_arg, s->answer, s->answer_len);
    return NULL;
}

static void store_get(void *user, const void *key, size_t key_len, tlsock_store_done_fn done,
                      void *arg)
{
    struct test_store *s = user;

    pthread_mutex_lock(&s->lock);
    record(s, 'g', key, key_len);
    size_t i = find(s, key, key_len);
    const unsigned char *value = i < ENTRIES ? s->e[i].value : NULL;
    size_t len = i < ENTRIES ? s->e[i].len : 0;
    enum mode mode = s->mode;
    if (mode == ANSWER_LATER || mode == ANSWER_NEVER) {
        s->held_done = done;
        s->held_arg = arg;
        s->answer = value != NULL ? malloc(len) : NULL;
        s->answer_len = s->answer != NULL ? len : 0;
        if (s->answer != NULL) {
            memcpy(s->answer, value, len);
        }
    }
    if (mode == ANSWER_LATER) {
        assert_int_equal(pthread_create(&s->thread, NULL, answer_later, s), 0);
        s->thread_started = true;
    }
    pthread_mutex_unlock(&s->lock);
    if (mode == ANSWER_NOW) {
        done(arg, value, len);
    } else if (mode == ANSWER_MISS) {
        done(arg, NULL, 0);
    }
}

static void store_put(void *user, const void *key, size_t key_len, const void *value, size_t len,
                      int64_t expires_ms)
{
    struct test_store *s = user;

    pthread_mutex_lock(&s->lock);
    record(s, 'p', key, key_len);
    s->expires_ms = expires_ms;
    size_t i = find(s, key, key_len);
    if (i == ENTRIES && s->n < ENTRIES && key_len <= sizeof(s->e[0].key)) {
        i = s->n++;
        memcpy(s->e[i].key, key, key_len);
        s->e[i].key_len = key_len;
    }
    if (i < ENTRIES) {
        free(s->e[i].value);
        s->e[i].value = malloc(len);
        assert_non_null(s->e[i].value);
        memcpy(s->e[i].value, value, len);
        s->e[i].len = len;
    }
    pthread_mutex_unlock(&s->lock);
}

static void store_remove(void *user, const void *key, size_t key_len)
{
    struct test_store *s = user;

    pthread_mutex_lock(&s->lock);
    record(s, 'r', key, key_len);
    memcpy(s->removed_key, s->last_key, sizeof(s->removed_key));
    pthread_mutex_unlock(&s->lock);
}

static void store_init(struct test_store *s, enum mode mode)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    s->mode = mode;
    s->delay_ms = 300;
}

static void store_free(struct test_store *s)
{
    if (s->thread_started) {
        pthread_join(s->thread, NULL);
    }
    for (size_t i = 0; i < s->n; i++) {
        free(s->e[i].value);
    }
    free(s->answer);
    pthread_mutex_destroy(&s->lock);
}

static int64_t wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A server context keeping its sessions in @p s, tickets off (TLS 1.2 resumes by session ID). */
static struct tlsock_ctx *server_ctx(struct test_store *s, bool tickets)
{
    struct tlsock_ctx *ctx = NULL;
    const struct tlsock_session_store store = {
        .get = store_get, .put = store_put, .remove = store_remove, .user = s};

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &ctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_tickets(ctx, tickets), 0);
    TS_ASSERT_RC(tlsock_ctx_set_session_store(ctx, &store), 0);
    return ctx;
}

/* One connection; whether the server resumed (the client must say the same). */
static bool connect_once(struct ts_pair *p, int handshake_timeout_ms)
{
    struct tlsock_opts copts = ts_opts();
    struct tlsock_opts sopts = ts_opts();
    const struct tlsock_info *ci = NULL;
    const struct tlsock_info *si = NULL;
    char buf[2];

    copts.verify_name = TS_PAIR_NAME;
    sopts.handshake_timeout_ms = handshake_timeout_ms;
    TS_ASSERT_RC(ts_pair_attach(p, &copts, &sopts), 0);
    TS_ASSERT_RC_MSG(ts_pair_handshake(p), 0, p->server_msg);
    /* A TLS 1.3 client has processed the tickets that came before the server's first bytes. */
    TS_ASSERT_RC(ts_pair_write(p, TS_S2C, "hi", 2), 0);
    TS_ASSERT_RC(ts_pair_read(p, TS_S2C, buf, 2), 0);
    TS_ASSERT_RC(tlsock_conn_info(p->client, &ci), 0);
    TS_ASSERT_RC(tlsock_conn_info(p->server, &si), 0);
    assert_int_equal(ci->resumed, si->resumed);
    bool resumed = si->resumed;
    ts_pair_close(p);
    return resumed;
}

static struct tlsock_ctx *client_ctx(const char *protocols)
{
    struct tlsock_ctx *ctx = NULL;

    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &ctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_protocols(ctx, protocols), 0);
    return ctx;
}

/*
 * Two TLS 1.2 connections through a store answering in @p mode for the second (the first offers
 * no session ID, so it only puts): whether the second resumed, and in @p second_ms how long it
 * took.
 */
static bool resume_through(void **state, struct test_store *s, enum mode mode,
                           int handshake_timeout_ms, int64_t *second_ms)
{
    struct ts_pair *p = *state;

    p->cctx = client_ctx("1.2-1.2");
    p->sctx = server_ctx(s, false);
    assert_false(connect_once(p, handshake_timeout_ms));
    /* The first ClientHello carries no session ID: no get, one put. */
    assert_string_equal(s->calls, "p");
    TS_ASSERT_CONTAINS(s->last_key, "tlsock:sess:");
    assert_int_equal(strlen(s->last_key), strlen("tlsock:sess:") + 64 + 1 + 64);
    /* The server's session lifetime: two hours by default. */
    int64_t left = s->expires_ms - wall_ms();
    assert_true(left > 7200 * 1000 - 60000 && left <= 7200 * 1000);
    s->mode = mode;
    int64_t start = tlsock_now_ms();
    bool resumed = connect_once(p, handshake_timeout_ms);
    *second_ms = tlsock_now_ms() - start;
    return resumed;
}

static void test_answer_now(void **state)
{
    struct test_store s;
    int64_t took = 0;

    store_init(&s, ANSWER_NOW);
    assert_true(resume_through(state, &s, ANSWER_NOW, 0, &took));
    assert_string_equal(s.calls, "pg");
    store_free(&s);
}

/* The second connection's get is answered from another thread. */
static void test_answer_later(void **state)
{
    struct test_store s;
    int64_t took = 0;

    store_init(&s, ANSWER_NOW);
    assert_true(resume_through(state, &s, ANSWER_LATER, 0, &took));
    assert_true(took >= s.delay_ms - 10);
    assert_string_equal(s.calls, "pg");
    store_free(&s);
}

/* A get never answered: a full handshake once the bound passed (half the handshake timeout),
 * and its done, called after the connection ended, changes nothing. */
static void test_answer_never(void **state)
{
    struct test_store s;
    int64_t took = 0;

    store_init(&s, ANSWER_NOW);
    assert_false(resume_through(state, &s, ANSWER_NEVER, 600, &took));
    assert_true(took >= 290 && took < 600);
    assert_string_equal(s.calls, "pgp");
    assert_non_null(s.held_done);
    s.held_done(s.held_arg, s.answer, s.answer_len);
    store_free(&s);
}

static void test_miss(void **state)
{
    struct test_store s;

    int64_t took = 0;

    store_init(&s, ANSWER_NOW);
    assert_false(resume_through(state, &s, ANSWER_MISS, 0, &took));
    assert_string_equal(s.calls, "pgp");
    store_free(&s);
}

/*
 * A session that ends with a fatal alert is no longer resumable: the server removes it from the
 * store, under the key it was put and got with. Here a resumed connection's server reads a
 * forged record (bad_record_mac).
 */
static void test_fatal_alert_removes(void **state)
{
    struct ts_pair *p = *state;
    struct test_store s;
    struct tlsock_opts copts = ts_opts();
    const struct tlsock_info *si = NULL;
    char key[KEY_MAX];
    unsigned char forged[5 + 32] = {23, 3, 3, 0, 32};
    char buf[8];
    size_t n = 0;

    store_init(&s, ANSWER_NOW);
    p->cctx = client_ctx("1.2-1.2");
    p->sctx = server_ctx(&s, false);
    assert_false(connect_once(p, 0));
    memcpy(key, s.last_key, sizeof(key));
    copts.verify_name = TS_PAIR_NAME;
    TS_ASSERT_RC(ts_pair_attach(p, &copts, NULL), 0);
    TS_ASSERT_RC_MSG(ts_pair_handshake(p), 0, p->server_msg);
    TS_ASSERT_RC(tlsock_conn_info(p->server, &si), 0);
    assert_true(si->resumed);
    assert_string_equal(s.calls, "pg");
    TS_ASSERT_RC(tlsock_feed(p->server, forged, sizeof(forged)), 0);
    TS_ASSERT_RC(tlsock_read(p->server, buf, sizeof(buf), &n), TLSOCK_EPROTO);
    assert_string_equal(s.calls, "pgr");
    assert_string_equal(s.last_key, key);
    ts_pair_close(p);
    assert_string_equal(s.calls, "pgr");
    store_free(&s);
}

/*
 * A stored session past the server's session lifetime (a store that keeps entries longer than the
 * expiry it was given, as this one does) is refused and removed on the look-up, by either server
 * implementation: OpenSSL drops it itself (its remove callback), GnuTLS only refuses it and tlsock
 * removes it. Both count whole seconds and refuse a session more than the lifetime (1 s) old.
 */
static void test_expired_removed(void **state)
{
    struct ts_pair *p = *state;
    struct test_store s;
    char key[KEY_MAX];

    store_init(&s, ANSWER_NOW);
    p->cctx = client_ctx("1.2-1.2");
    p->sctx = server_ctx(&s, false);
    TS_ASSERT_RC(tlsock_ctx_set_ticket_lifetime(p->sctx, 1), 0);
    assert_false(connect_once(p, 0));
    time_t made = time(NULL); /* not before the session's own time */
    assert_string_equal(s.calls, "p");
    memcpy(key, s.last_key, sizeof(key));
    for (int i = 0; i < 80 && time(NULL) < made + 2; i++) {
        usleep(50 * 1000);
    }
    assert_true(time(NULL) >= made + 2);
    assert_false(connect_once(p, 0));
    /* The get found it, the server removed it under the same key, then put the new session. */
    assert_string_equal(s.calls, "pgrp");
    assert_string_equal(s.removed_key, key);
    assert_string_not_equal(s.last_key, key);
    store_free(&s);
}

/* TLS 1.3 resumes by ticket: the store sees nothing, although the ClientHello carries a
 * (compatibility) session ID. */
static void test_tls13_no_calls(void **state)
{
    struct ts_pair *p = *state;
    struct test_store s;

    store_init(&s, ANSWER_NOW);
    p->cctx = client_ctx("1.2-1.3");
    p->sctx = server_ctx(&s, true);
    assert_false(connect_once(p, 0));
    assert_true(connect_once(p, 0));
    assert_string_equal(s.calls, "");
    store_free(&s);
}

static void test_set_store_checks(void **state)
{
    struct tlsock_ctx *ctx = NULL;
    const struct tlsock_session_store half = {.get = store_get};

    (void)state;
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &ctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_session_store(ctx, &half), TLSOCK_EINVAL);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(ctx), "only server contexts");
    tlsock_ctx_free(ctx);
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &ctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_session_store(ctx, &half), TLSOCK_EINVAL);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(ctx), "get, put and remove are required");
    TS_ASSERT_RC(tlsock_ctx_set_session_store(ctx, NULL), 0);
    TS_ASSERT_RC(tlsock_ctx_set_session_store(NULL, NULL), TLSOCK_EINVAL);
    tlsock_ctx_free(ctx);
}

#if TLSOCK_TEST_HAVE_UV
/*
 * The same store under a tlsock_uv server (docs/async.md, "Session store"): its handshake waits
 * for the get without blocking the loop, and goes on when the done comes, from any thread.
 */

static int uv_server_resumed = -1; /* what the last server connection reported in on_connect */

static void uv_server_connected(struct peer *p, int status)
{
    const struct tlsock_info *info = NULL;

    uv_server_resumed = -1;
    if (status == 0 && tlsock_conn_info(tlsock_uv_conn_tls(p->conn), &info) == 0) {
        uv_server_resumed = info->resumed ? 1 : 0;
    }
}

static const struct hooks uv_store_server = {
    .on_connect = uv_server_connected,
    .on_read = echo_back,
    .on_event = close_on_event,
};

/* A uv server of a context keeping its sessions in @p s (TLS 1.2 by ID), with @p handshake_ms. */
static struct srv *uv_store_serve(struct env *env, struct test_store *s, int handshake_ms)
{
    struct tlsock_uv_opts opts = base_opts(NULL);

    env->sctx = server_ctx(s, false);
    env->cctx = client_ctx("1.2-1.2");
    opts.handshake_timeout_ms = handshake_ms;
    return serve_ok(env, 0, env->sctx, &uv_store_server, &opts);
}

/* An echo client of @p port started; run the loop until it and the server's side are closed. */
static struct peer *uv_echo_start(struct env *env, struct tlsock_ctx *ctx, uint16_t port)
{
    struct peer *c = client_start(env, ctx, port, &echo_client, 100, 3);

    c->close_when_echoed = true;
    return c;
}

/* One echo through the server at @p port: whether the server resumed. */
static bool uv_echo_once(struct env *env, uint16_t port)
{
    struct peer *c = uv_echo_start(env, env->cctx, port);

    uv_server_resumed = -1;
    RUN_UNTIL(env, c->conn == NULL && server_peers_closed(env), WAIT_MS);
    TS_ASSERT_RC_MSG(c->connect_rc, 0, c->connect_msg);
    assert_true(echoed(c));
    assert_no_anomaly(env);
    assert_int_not_equal(uv_server_resumed, -1);
    return uv_server_resumed == 1;
}

/* A store answering at once, served, and its first connection: a full handshake and a put. */
static struct srv *uv_store_first(struct env *env, struct test_store *s, int handshake_ms)
{
    store_init(s, ANSWER_NOW);
    struct srv *srv = uv_store_serve(env, s, handshake_ms);
    assert_false(uv_echo_once(env, srv->port));
    return srv;
}

/* The server closed, then the store freed. */
static void uv_store_end(struct env *env, struct srv *srv, struct test_store *s)
{
    server_close(srv);
    RUN_UNTIL(env, all_closed(env), WAIT_MS);
    store_free(s);
}

static void test_uv_answer_now(void **state)
{
    struct env *env = *state;
    struct test_store s;

    struct srv *srv = uv_store_first(env, &s, 0);
    assert_true(uv_echo_once(env, srv->port));
    assert_string_equal(s.calls, "pg");
    uv_store_end(env, srv, &s);
}

/* What happened on the loop while the get was pending. */
struct meanwhile {
    struct env *env;
    struct test_store *s;
    uint16_t port;
    uv_timer_t timer;
    bool timer_fired_pending; /* the timer fired before the done came */
    struct peer *other;       /* a client without a session, started from the timer */
    bool other_ready_pending; /* ... which connected before the done came */
};

static void other_connected(struct peer *p, int status)
{
    struct meanwhile *m = p->env->extra.arg;

    m->other_ready_pending = status == 0 && !atomic_load(&m->s->answered);
    echo_client.on_connect(p, status);
}

static struct hooks other_hooks;

static void meanwhile_fire(uv_timer_t *timer)
{
    struct meanwhile *m = timer->data;

    m->timer_fired_pending = !atomic_load(&m->s->answered);
    other_hooks = echo_client;
    other_hooks.on_connect = other_connected;
    m->other = client_start(m->env, m->env->cctx2, m->port, &other_hooks, 100, 5);
    m->other->close_when_echoed = true;
}

static void meanwhile_close(void *arg)
{
    struct meanwhile *m = arg;

    if (!uv_is_closing((uv_handle_t *)&m->timer)) {
        uv_close((uv_handle_t *)&m->timer, NULL);
    }
}

static bool meanwhile_closed(void *arg)
{
    struct meanwhile *m = arg;

    return !uv_is_active((uv_handle_t *)&m->timer);
}

/* The done comes from another thread 300 ms later: the handshake resumes then, and meanwhile
 * the loop runs a timer and another client's full handshake on the same server. */
static void test_uv_answer_later(void **state)
{
    struct env *env = *state;
    struct test_store s;
    static struct meanwhile m; /* the teardown closes its timer after a failed assertion */

    m = (struct meanwhile){.env = env, .s = &s};
    struct srv *srv = uv_store_first(env, &s, 0);
    env->cctx2 = client_ctx("1.2-1.2");
    s.mode = ANSWER_LATER;
    m.port = srv->port;
    assert_int_equal(uv_timer_init(&env->loop, &m.timer), 0);
    m.timer.data = &m;
    env->extra =
        (struct env_extra){.close = meanwhile_close, .closed = meanwhile_closed, .arg = &m};
    assert_int_equal(uv_timer_start(&m.timer, meanwhile_fire, 100, 0), 0);
    uv_server_resumed = -1;
    struct peer *c = uv_echo_start(env, env->cctx, srv->port);
    RUN_UNTIL(env, c->conn == NULL && m.other != NULL && m.other->conn == NULL, WAIT_MS);
    TS_ASSERT_RC_MSG(c->connect_rc, 0, c->connect_msg);
    assert_true(echoed(c));
    assert_true(echoed(m.other));
    assert_true(atomic_load(&s.answered));
    assert_true(m.timer_fired_pending);
    assert_true(m.other_ready_pending);
    RUN_UNTIL(env, server_peers_closed(env), WAIT_MS);
    assert_no_anomaly(env);
    /* The resumed connection answered last: what it reported is the last one. */
    assert_int_equal(uv_server_resumed, 1);
    /* The other client's full handshake put its session while the get was pending. */
    assert_string_equal(s.calls, "pgp");
    uv_store_end(env, srv, &s);
}

/* A get never answered: a full handshake within the bound (half of 600 ms), and the done,
 * called after the server closed, is harmless. */
static void test_uv_answer_never(void **state)
{
    struct env *env = *state;
    struct test_store s;

    struct srv *srv = uv_store_first(env, &s, 600);
    s.mode = ANSWER_NEVER;
    assert_false(uv_echo_once(env, srv->port));
    assert_string_equal(s.calls, "pgp");
    server_close(srv);
    RUN_UNTIL(env, all_closed(env), WAIT_MS);
    assert_non_null(s.held_done);
    s.held_done(s.held_arg, s.answer, s.answer_len);
    store_free(&s);
}

/* The client goes away while the get is pending (bound: 1 s): the server's connection fails at
 * once, without waiting for the bound, and the late done is harmless. The failed handshake's new
 * session is removed, never the stored one the client offered. */
static void test_uv_close_pending(void **state)
{
    struct env *env = *state;
    struct test_store s;
    char stored[KEY_MAX];

    struct srv *srv = uv_store_first(env, &s, 20000);
    memcpy(stored, s.last_key, sizeof(stored));
    s.mode = ANSWER_NEVER;
    struct peer *c = uv_echo_start(env, env->cctx, srv->port);
    RUN_UNTIL(env, s.held_done != NULL, WAIT_MS);
    peer_close(c);
    /* Well before the bound: the peer's end gave up the get. */
    RUN_UNTIL(env, srv->accept_errors == 1, 700);
    RUN_UNTIL(env, c->conn == NULL && server_peers_closed(env), WAIT_MS);
    assert_int_equal(srv->connects, 1);
    assert_string_equal(s.calls, "pgr");
    TS_ASSERT_CONTAINS(s.last_key, "tlsock:sess:");
    assert_string_not_equal(s.last_key, stored);
    s.held_done(s.held_arg, s.answer, s.answer_len);
    uv_store_end(env, srv, &s);
}

/* tlsock_uv_server_abort() while the get is pending (bound: 1 s): the client is reset at once and
 * reported with ECANCELED, without waiting for the bound; the late done is harmless. */
static void test_uv_abort_pending(void **state)
{
    struct env *env = *state;
    struct test_store s;

    struct srv *srv = uv_store_first(env, &s, 20000);
    s.mode = ANSWER_NEVER;
    struct peer *c = uv_echo_start(env, env->cctx, srv->port);
    RUN_UNTIL(env, s.held_done != NULL, WAIT_MS);
    server_abort(srv);
    RUN_UNTIL(env, srv->accept_errors == 1, 700);
    TS_ASSERT_RC_MSG(env->aerr[0].code, TLSOCK_ECANCELED, env->aerr[0].msg);
    RUN_UNTIL(env, c->connect_rc != TS_NOT_RUN && srv->close_cbs == 1, WAIT_MS);
    TS_ASSERT_RC_MSG(c->connect_rc, TLSOCK_ESYS, c->connect_msg);
    TS_ASSERT_CONTAINS(c->connect_msg, "ECONNRESET");
    peer_close(c);
    assert_int_equal(srv->connects, 1);
    assert_no_anomaly(env);
    s.held_done(s.held_arg, s.answer, s.answer_len);
    uv_store_end(env, srv, &s);
}

/*
 * A ClientHello with a session ID from a fresh client of @p protocols, in memory mode, into
 * @p out (at most @p cap bytes); its length.
 */
static size_t client_hello(const char *protocols, unsigned char *out, size_t cap)
{
    struct tlsock_ctx *ctx = NULL;
    struct tlsock_conn *conn = NULL;
    struct tlsock_opts opts = ts_opts();
    size_t n = 0;

    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &ctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_protocols(ctx, protocols), 0);
    opts.verify_name = "localhost";
    TS_ASSERT_RC(tlsock_attach_mem(ctx, &opts, &conn), 0);
    TS_ASSERT_RC(tlsock_handshake(conn), TLSOCK_EWANT_READ);
    TS_ASSERT_RC(tlsock_drain(conn, out, cap, &n), 0);
    assert_true(n > 0 && n < cap);
    tlsock_close(conn);
    tlsock_ctx_free(ctx);
    return n;
}

/*
 * A client that streams data after its ClientHello while the server's get is pending: the server
 * stops reading once a whole record waits, so what it holds is bounded and the socket pushes back
 * on the client. The client's ClientHello carries a session ID (the compatibility one of a client
 * that also offers TLS 1.3), the server speaks TLS 1.2 only, so it asks the store, which never
 * answers; the stream goes on for FLOOD_MS, well within the get's bound (1 s). Reading it all, as
 * before, let 32 MiB through in that time (the server kept it); now a few MiB at most fit in the
 * sockets' buffers.
 */
static void test_uv_flood_while_pending(void **state)
{
    enum { FLOOD_MS = 500, FLOOD_MAX = 32 << 20, CHUNK = 64 * 1024, HELD_MAX = 16 << 20 };
    struct env *env = *state;
    struct test_store s;
    struct tlsock_uv_opts opts = base_opts(NULL);
    static unsigned char chunk[CHUNK];
    unsigned char hello[4096];
    size_t sent = 0;
    int fd = -1;

    store_init(&s, ANSWER_NEVER);
    env->sctx = server_ctx(&s, false);
    TS_ASSERT_RC(tlsock_ctx_set_protocols(env->sctx, "1.2-1.2"), 0);
    opts.handshake_timeout_ms = 20000;
    struct srv *srv = serve_ok(env, 0, env->sctx, &uv_store_server, &opts);
    size_t hello_len = client_hello("1.2-1.3", hello, sizeof(hello));
    assert_int_equal(ts_raw_connect("127.0.0.1", srv->port, 0, &fd), 0);
    raw_track(env, fd);
    assert_int_equal(send_all(fd, hello, hello_len), (ssize_t)hello_len);
    RUN_UNTIL(env, s.held_done != NULL, WAIT_MS);

    int64_t until = tlsock_now_ms() + FLOOD_MS;
    while (sent < FLOOD_MAX && tlsock_now_ms() < until) {
        ssize_t n = send(fd, chunk, sizeof(chunk), MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n;
        } else {
            assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
            run_for(env, 1); /* the server reads, or does not */
        }
    }
    print_message("%zu bytes went into the socket in %d ms\n", sent, FLOOD_MS);
    assert_true(sent < HELD_MAX);
    /* Still in its handshake, waiting for the get: nothing failed, nothing connected. */
    assert_int_equal(srv->accept_errors, 0);
    assert_int_equal(srv->connects, 0);
    raw_close(env, fd);
    RUN_UNTIL(env, srv->accept_errors == 1, WAIT_MS);
    s.held_done(s.held_arg, NULL, 0);
    uv_store_end(env, srv, &s);
}
#endif /* TLSOCK_TEST_HAVE_UV */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_answer_now, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_answer_later, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_answer_never, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_miss, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_fatal_alert_removes, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_expired_removed, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_tls13_no_calls, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test(test_set_store_checks),
#if TLSOCK_TEST_HAVE_UV
        cmocka_unit_test_setup_teardown(test_uv_answer_now, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_uv_answer_later, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_uv_answer_never, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_uv_flood_while_pending, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_uv_close_pending, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_uv_abort_pending, env_setup, env_teardown),
#endif
    };
    return cmocka_run_group_tests(tests, ts_pki_setup, ts_pki_teardown);
}
