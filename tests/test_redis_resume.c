/*
 * libtlsock_redis under tlsock_uv servers, end to end (docs/sessions.md, "Many servers behind a
 * load balancer with Redis"), on every (client, server) pair, against a real redis-server
 * (support/redis_server.h):
 *  - two servers with separate contexts, each with its own store on the same Redis, take turns on
 *    one port, as backends behind a load balancer do: a TLS 1.2 session made on one resumes by
 *    session ID on the other, and not on a third without the store; a TLS 1.3 ticket made on one
 *    resumes on the other when both load the ticket key file the stores wrote from Redis, and not
 *    on a server with keys of its own;
 *  - Redis killed mid-run, or paused (SIGSTOP: a slow server): handshakes keep succeeding as full
 *    ones, one warning is logged, and no turn of the server's loop waits for Redis: a 10 ms timer
 *    on the loop never fires much later than due; once Redis is back (restarted on its port, or
 *    continued), the store says so and resumption works again.
 */
#include "support/uv_harness.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "redis_server.h"
#include "tlsock/redis.h"
#include "workdir.h"

#define TX_LEN 1000

enum {
    STORE_WAIT_MS = 8000, /* longest wait for the store to connect or reconnect by itself */
    TICK_MS = 10,         /* the loop's probe timer */
    REQUEST_MS = 600,     /* the store's request timeout here: what a blocking get would take */
    MAX_GAP_MS = 300,     /* the probe is never later than this: well under REQUEST_MS, with room
                             for a loaded machine (sanitizers, parallel tests) */
    OUTAGE_HANDSHAKES = 6,
};

static struct ts_redis redis;

/* ---- the store's log ----------------------------------------------------------------------- */

/* ---- what each test made, freed after the harness closed the servers and contexts ----------- */

/* A timer every TICK_MS on the server's loop, recording how late it fired at worst. */
struct probe {
    uv_timer_t timer;
    uint64_t start_ns;
    uint64_t last_ns;
    uint64_t max_gap_ns;
    int ticks;
    bool initialized;
};

static struct probe probe;

static struct tlsock_redis_store *stores[2];
/* What stores[0] logged. Not on a test's stack: after a failed assertion the store lives on until
 * teardown frees it, and may log meanwhile. */
static struct ts_redis_log store_log;
static struct ts_workdir workdir;
static bool workdir_made;

static int64_t now_ms(void)
{
    return (int64_t)(uv_hrtime() / 1000000u);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

static bool wait_connected(struct tlsock_redis_store *store, int ms)
{
    int64_t until = now_ms() + ms;

    while (!tlsock_redis_store_connected(store) && now_ms() < until) {
        sleep_ms(5);
    }
    return tlsock_redis_store_connected(store);
}

/* stores[@p i] on the test's Redis, connected, logging to @p log (may be NULL). */
static struct tlsock_redis_store *store_new(int i, struct ts_redis_log *log)
{
    TS_ASSERT_RC_MSG(tlsock_redis_store_new(redis.url, &stores[i]), 0, tlsock_redis_errmsg());
    assert_int_equal(tlsock_redis_store_set_timeout(stores[i], REQUEST_MS), 0);
    if (log != NULL) {
        assert_int_equal(tlsock_redis_store_set_log(stores[i], ts_redis_on_log, log), 0);
    }
    assert_true(wait_connected(stores[i], STORE_WAIT_MS));
    return stores[i];
}

static int group_setup(void **state)
{
    if (ts_redis_start(&redis) != 0) {
        return -1;
    }
    return ts_pki_setup(state);
}

static int group_teardown(void **state)
{
    ts_redis_stop(&redis);
    return ts_pki_teardown(state);
}

/* A fresh loop, and an empty, running Redis. */
static int setup(void **state)
{
    char out[64];

    if (redis.pid == 0 && ts_redis_restart(&redis) != 0) {
        return -1;
    }
    ts_redis_resume(&redis);
    if (ts_redis_cmd(&redis, "FLUSHALL", out, sizeof(out)) != 0) {
        return -1;
    }
    ts_redis_log_clear(&store_log);
    return env_setup(state);
}

/* The harness closes servers and frees contexts (thread_ctx too); then the stores can go. */
static int teardown(void **state)
{
    int rc = env_teardown(state);

    for (int i = 0; i < 2; i++) {
        tlsock_redis_store_free(stores[i]);
        stores[i] = NULL;
    }
    if (workdir_made) {
        ts_workdir_remove(&workdir);
        workdir_made = false;
    }
    probe.initialized = false; /* its loop is gone */
    return rc;
}

/* ---- servers and clients ------------------------------------------------------------------- */

/* A server context of the test's certificate; its session store @p store (NULL: in process). */
static struct tlsock_ctx *server_ctx(struct tlsock_redis_store *store, bool tickets)
{
    struct tlsock_ctx *ctx = NULL;

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &ctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_tickets(ctx, tickets), 0);
    if (store != NULL) {
        TS_ASSERT_RC_MSG(tlsock_ctx_set_session_store(ctx, tlsock_redis_store_session_store(store)),
                         0, tlsock_ctx_errmsg(ctx));
    }
    return ctx;
}

/* Serves @p ctx as env->srvs[@p index] on @p port (0: a free one). */
static struct srv *serve_on(struct env *env, int index, struct tlsock_ctx *ctx, uint16_t port)
{
    struct srv *s = &env->srvs[index];

    TS_ASSERT_RC(serve(env, index, ctx, port, &resume_server, NULL), 0);
    assert_int_not_equal(s->port, 0);
    return s;
}

/* Closes @p s and waits until its port is free for the next backend. */
static void server_gone(struct env *env, struct srv *s)
{
    server_close(s);
    RUN_UNTIL(env, s->server == NULL, WAIT_MS);
}

/* One echo of env->cctx to @p port; returns whether it resumed, which both ends must agree on. */
static bool connect_once(struct env *env, uint16_t port)
{
    resume_client_seen = -1;
    resume_server_seen = -1;
    struct peer *c = client_start(env, env->cctx, port, &resume_client, TX_LEN, 7);
    c->close_when_echoed = true;
    RUN_UNTIL(env, c->conn == NULL && server_peers_closed(env), WAIT_MS);
    TS_ASSERT_RC_MSG(c->connect_rc, 0, c->connect_msg);
    assert_true(echoed(c));
    assert_no_anomaly(env);
    assert_int_not_equal(resume_client_seen, -1);
    assert_int_equal(resume_server_seen, resume_client_seen);
    return resume_client_seen == 1;
}

static void client_ctx(struct env *env, const char *protocols)
{
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_protocols(env->cctx, protocols), 0);
}

/* ---- two servers sharing Redis ------------------------------------------------------------- */

/* After server A closed, on its port: server B (env->thread_ctx[0]) resumes the client's session,
 * server C (env->thread_ctx[1]) does not. */
static void others_on(struct env *env, uint16_t port)
{
    struct srv *b = serve_on(env, 1, env->thread_ctx[0], port);
    assert_true(connect_once(env, port));
    server_gone(env, b);

    struct srv *c = serve_on(env, 2, env->thread_ctx[1], port);
    assert_false(connect_once(env, port));
    server_gone(env, c);
}

/*
 * TLS 1.2 by session ID (the servers' tickets are off): a session made on server A, kept in Redis
 * through A's store, resumes on server B, another context with a store of its own, on the same
 * port (the client offers a session to the host and port it came from, as behind a load
 * balancer); a third server on that port, keeping its sessions in process, makes a full one.
 */
static void test_tls12_across_servers(void **state)
{
    struct env *env = *state;
    char out[64];

    client_ctx(env, "1.2-1.2");
    env->sctx = server_ctx(store_new(0, NULL), false);
    env->thread_ctx[0] = server_ctx(store_new(1, NULL), false);
    env->thread_ctx[1] = server_ctx(NULL, false);

    struct srv *a = serve_on(env, 0, env->sctx, 0);
    uint16_t port = a->port;
    assert_false(connect_once(env, port));
    /* A's session, in Redis (the put is queued: wait for it to land) */
    for (int64_t until = now_ms() + STORE_WAIT_MS; now_ms() < until; sleep_ms(5)) {
        assert_int_equal(ts_redis_cmd(&redis, "DBSIZE", out, sizeof(out)), 0);
        if (strcmp(out, "0") != 0) {
            break;
        }
    }
    assert_string_equal(out, "1");
    assert_true(connect_once(env, port));
    server_gone(env, a);
    others_on(env, port);
}

/*
 * TLS 1.3 tickets: each server's store writes the ticket key file from Redis (A's makes the
 * secret under the lease, B's picks it up), each context loads its own copy; a ticket from A
 * resumes on B, and not on a server whose key file is its own. Redis loses the text after A
 * issued the ticket (FLUSHALL: a restart without persistence): A's store, asking first, publishes
 * A's file again rather than a new secret, so B, which asks only then, still resumes it.
 */
static void test_tls13_ticket_keys_through_redis(void **state)
{
    struct env *env = *state;
    char path_a[TS_WORKDIR_PATH_MAX];
    char path_b[TS_WORKDIR_PATH_MAX];
    char path_own[TS_WORKDIR_PATH_MAX];
    char out[64];
    bool changed = false;
    bool created = false;

    assert_int_equal(ts_workdir_make(&workdir, "redis_resume"), 0);
    workdir_made = true;
    ts_workdir_path(&workdir, "a.keys", path_a, sizeof(path_a));
    ts_workdir_path(&workdir, "b.keys", path_b, sizeof(path_b));
    ts_workdir_path(&workdir, "own.keys", path_own, sizeof(path_own));
    TS_ASSERT_RC_MSG(
        tlsock_redis_store_ticket_keys(store_new(0, NULL), path_a, 600, &changed, &created), 0,
        tlsock_redis_errmsg());
    assert_true(changed);
    assert_true(created);
    TS_ASSERT_RC(tlsock_ticket_keys_write(path_own, 600), 0);

    client_ctx(env, "1.3");
    env->sctx = server_ctx(NULL, true);
    TS_ASSERT_RC_MSG(tlsock_ctx_set_ticket_keys_file(env->sctx, path_a), 0,
                     tlsock_ctx_errmsg(env->sctx));
    struct srv *a = serve_on(env, 0, env->sctx, 0);
    uint16_t port = a->port;
    assert_false(connect_once(env, port));
    server_gone(env, a);

    assert_int_equal(ts_redis_cmd(&redis, "FLUSHALL", out, sizeof(out)), 0);
    TS_ASSERT_RC_MSG(tlsock_redis_store_ticket_keys(stores[0], path_a, 600, &changed, &created), 0,
                     tlsock_redis_errmsg());
    assert_false(changed);
    assert_false(created); /* A published its file: no new secret */
    TS_ASSERT_RC_MSG(
        tlsock_redis_store_ticket_keys(store_new(1, NULL), path_b, 600, &changed, &created), 0,
        tlsock_redis_errmsg());
    assert_true(changed);
    assert_false(created); /* B did not make a secret: it took A's from Redis */

    env->thread_ctx[0] = server_ctx(NULL, true);
    env->thread_ctx[1] = server_ctx(NULL, true);
    TS_ASSERT_RC_MSG(tlsock_ctx_set_ticket_keys_file(env->thread_ctx[0], path_b), 0,
                     tlsock_ctx_errmsg(env->thread_ctx[0]));
    TS_ASSERT_RC_MSG(tlsock_ctx_set_ticket_keys_file(env->thread_ctx[1], path_own), 0,
                     tlsock_ctx_errmsg(env->thread_ctx[1]));
    others_on(env, port);
}

/* ---- Redis failing under a server ---------------------------------------------------------- */

static void probe_tick(uv_timer_t *timer)
{
    struct probe *p = timer->data;
    uint64_t now = uv_hrtime();

    if (now - p->last_ns > p->max_gap_ns) {
        p->max_gap_ns = now - p->last_ns;
    }
    p->last_ns = now;
    p->ticks++;
}

static void probe_close(void *arg)
{
    struct probe *p = arg;

    if (p->initialized && !uv_is_closing((uv_handle_t *)&p->timer)) {
        uv_close((uv_handle_t *)&p->timer, NULL);
    }
}

static bool probe_closed(void *arg)
{
    struct probe *p = arg;

    return !p->initialized || !uv_is_active((uv_handle_t *)&p->timer);
}

static void probe_start(struct env *env)
{
    if (!probe.initialized) {
        probe = (struct probe){0};
        assert_int_equal(uv_timer_init(&env->loop, &probe.timer), 0);
        probe.timer.data = &probe;
        probe.initialized = true;
        env->extra =
            (struct env_extra){.close = probe_close, .closed = probe_closed, .arg = &probe};
    }
    uv_update_time(&env->loop);
    probe.start_ns = uv_hrtime();
    probe.last_ns = probe.start_ns;
    probe.max_gap_ns = 0;
    probe.ticks = 0;
    assert_int_equal(uv_timer_start(&probe.timer, probe_tick, TICK_MS, TICK_MS), 0);
}

/* Stops the probe; the longest gap between its start, ticks and stop, in ms. */
static int probe_stop(void)
{
    uint64_t now = uv_hrtime();

    uv_timer_stop(&probe.timer);
    if (now - probe.last_ns > probe.max_gap_ns) {
        probe.max_gap_ns = now - probe.last_ns;
    }
    return (int)(probe.max_gap_ns / 1000000u);
}

/*
 * OUTAGE_HANDSHAKES connections while Redis is unusable: full handshakes, none holding the loop
 * (the probe's ticks never stop for MAX_GAP_MS). Returns how long they took, in ms.
 */
static int handshakes_while_down(struct env *env, uint16_t port)
{
    probe_start(env);
    for (int i = 0; i < OUTAGE_HANDSHAKES; i++) {
        assert_false(connect_once(env, port));
    }
    int gap = probe_stop();
    int took = (int)((uv_hrtime() - probe.start_ns) / 1000000u);
    print_message("%d handshakes in %d ms, %d ticks, longest gap %d ms\n", OUTAGE_HANDSHAKES, took,
                  probe.ticks, gap);
    assert_true(gap < MAX_GAP_MS);
    return took;
}

/* A server with the store (logging to store_log), two connections: a full handshake, then one
 * resumed through Redis. */
static uint16_t serve_and_resume(struct env *env)
{
    client_ctx(env, "1.2-1.2");
    env->sctx = server_ctx(store_new(0, &store_log), false);
    struct srv *s = serve_on(env, 0, env->sctx, 0);
    assert_false(connect_once(env, s->port));
    assert_true(connect_once(env, s->port));
    return s->port;
}

/* During the outage: the store knows Redis is down, and said so once. */
static void store_is_down(void)
{
    assert_false(tlsock_redis_store_connected(stores[0]));
    assert_int_equal(atomic_load(&store_log.warnings), 1);
    assert_int_equal(atomic_load(&store_log.backs), 0);
}

/* After the outage: the store says Redis is back, once; the client's latest session was made
 * while puts were dropped, so its next connection is full, and the one after resumes. */
static void resumes_again(struct env *env, uint16_t port)
{
    assert_true(wait_connected(stores[0], STORE_WAIT_MS));
    assert_int_equal(atomic_load(&store_log.backs), 1);
    assert_int_equal(atomic_load(&store_log.warnings), 1);
    (void)connect_once(env, port);
    assert_true(connect_once(env, port));
    assert_true(connect_once(env, port));
}

static void test_killed_then_restarted(void **state)
{
    struct env *env = *state;
    uint16_t port = serve_and_resume(env);
    assert_int_equal(ts_redis_kill(&redis), 0);
    handshakes_while_down(env, port);
    store_is_down();
    assert_int_equal(ts_redis_restart(&redis), 0);
    resumes_again(env, port);
}

static void test_paused_then_continued(void **state)
{
    struct env *env = *state;
    uint16_t port = serve_and_resume(env);
    assert_int_equal(ts_redis_pause(&redis), 0);
    /* The first get waits for the store's timeout (REQUEST_MS) without holding the loop; then
     * Redis is down for the store and the others miss at once. The loop ran meanwhile. */
    assert_true(handshakes_while_down(env, port) >= REQUEST_MS);
    store_is_down();
    assert_int_equal(ts_redis_resume(&redis), 0);
    resumes_again(env, port);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tls12_across_servers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls13_ticket_keys_through_redis, setup, teardown),
        cmocka_unit_test_setup_teardown(test_killed_then_restarted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paused_then_continued, setup, teardown),
    };

    if (!ts_redis_available()) {
        fprintf(stderr, "redis-server is not installed (scripts/bootstrap installs it)\n");
        return TS_SKIP_EXIT;
    }
    return cmocka_run_group_tests_name("redis_resume", tests, group_setup, group_teardown);
}
