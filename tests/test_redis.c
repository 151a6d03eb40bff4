/*
 * libtlsock_redis (include/tlsock/redis.h) against a real redis-server (support/redis_server.h):
 * the session store interface from several threads, expiry, misses, an outage (killed and
 * paused servers: gets stay immediate, complete as misses within the timeout, one warning, the
 * store reconnects by itself), the bounded queue, a clean free, the URL, and the ticket key file
 * shared through Redis under its lease.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "redis_server.h"
#include "support.h"
#include "tlsock/redis.h"
#include "workdir.h"

enum {
    WAIT_MS = 8000,    /* longest wait for something the store does by itself */
    IMMEDIATE_MS = 10, /* a call that must not wait for Redis returns within this */
    THREADS = 4,
    KEYS_PER_THREAD = 50,
};

static struct ts_redis server;
static struct ts_redis replica; /* test_writes_refused's; stopped by the group teardown too */
static struct ts_redis authed;  /* test_credentials's: requirepass and an ACL user; the same */

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t unix_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

/* ---- a get's completion, waited for ------------------------------------------------------- */

struct answer {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int calls;
    bool hit;
    char value[256];
    size_t len;
};

static void answer_init(struct answer *a)
{
    memset(a, 0, sizeof(*a));
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->cond, NULL);
}

static void answer_destroy(struct answer *a)
{
    pthread_mutex_destroy(&a->lock);
    pthread_cond_destroy(&a->cond);
}

static void on_answer(void *arg, const void *value, size_t len)
{
    struct answer *a = arg;

    pthread_mutex_lock(&a->lock);
    a->calls++;
    a->hit = value != NULL;
    a->len = len < sizeof(a->value) ? len : sizeof(a->value) - 1;
    if (value != NULL) {
        memcpy(a->value, value, a->len);
    }
    a->value[a->len] = '\0';
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->lock);
}

/* Waits up to @p ms for the answer; true if it came. */
static bool answer_wait(struct answer *a, int ms)
{
    int64_t until = now_ms() + ms;
    bool came;

    pthread_mutex_lock(&a->lock);
    while (a->calls == 0 && now_ms() < until) {
        pthread_mutex_unlock(&a->lock);
        sleep_ms(1);
        pthread_mutex_lock(&a->lock);
    }
    came = a->calls > 0;
    pthread_mutex_unlock(&a->lock);
    return came;
}

/*
 * A get of @p key through the interface: *took_ms is how long get() itself took; the answer is
 * waited for up to @p wait_ms. Returns whether it came; the answer is in @p a.
 */
static bool get_key(const struct tlsock_session_store *st, const char *key, struct answer *a,
                    int wait_ms, int64_t *took_ms)
{
    int64_t t0 = now_ms();

    answer_init(a);
    st->get(st->user, key, strlen(key), on_answer, a);
    if (took_ms != NULL) {
        *took_ms = now_ms() - t0;
    }
    return answer_wait(a, wait_ms);
}

/* Asserts a hit with @p expected, or a miss (NULL), answered exactly once. */
static void assert_get(const struct tlsock_session_store *st, const char *key, const char *expected)
{
    struct answer a;

    assert_true(get_key(st, key, &a, WAIT_MS, NULL));
    assert_int_equal(a.calls, 1);
    if (expected == NULL) {
        assert_false(a.hit);
        assert_int_equal(a.len, 0);
    } else {
        assert_true(a.hit);
        assert_string_equal(a.value, expected);
    }
    answer_destroy(&a);
}

/* ---- log lines ----------------------------------------------------------------------------- */

static bool wait_connected(struct tlsock_redis_store *store, bool want, int ms)
{
    int64_t until = now_ms() + ms;

    while (tlsock_redis_store_connected(store) != want && now_ms() < until) {
        sleep_ms(5);
    }
    return tlsock_redis_store_connected(store) == want;
}

/* What the store of a test logged. Not on the test's stack: a test that fails an assertion leaves
 * its store running (it is not freed), and the store may log after the test is gone. */
static struct ts_redis_log store_log;

static struct tlsock_redis_store *store_at(const char *url, struct ts_redis_log *log)
{
    struct tlsock_redis_store *store = NULL;

    TS_ASSERT_RC_MSG(tlsock_redis_store_new(url, &store), 0, tlsock_redis_errmsg());
    if (log != NULL) {
        assert_int_equal(tlsock_redis_store_set_log(store, ts_redis_on_log, log), 0);
    }
    assert_true(wait_connected(store, true, WAIT_MS));
    return store;
}

static struct tlsock_redis_store *store_new(struct ts_redis_log *log)
{
    return store_at(server.url, log);
}

static int group_setup(void **state)
{
    (void)state;
    return ts_redis_start(&server);
}

static int group_teardown(void **state)
{
    (void)state;
    ts_redis_stop(&server);
    ts_redis_stop(&replica);
    ts_redis_stop(&authed);
    return 0;
}

/* Each case starts on an empty, running server. */
static int setup(void **state)
{
    char out[64];

    (void)state;
    if (server.pid == 0 && ts_redis_restart(&server) != 0) {
        return -1;
    }
    ts_redis_resume(&server);
    ts_redis_log_clear(&store_log);
    /* test_idle_closed's and test_reads_refused's settings, left behind if one failed
     * half-way. */
    if (ts_redis_cmd(&server, "CONFIG SET timeout 0", out, sizeof(out)) != 0 ||
        ts_redis_cmd(&server, "ACL SETUSER default +@all", out, sizeof(out)) != 0) {
        return -1;
    }
    return ts_redis_cmd(&server, "FLUSHALL", out, sizeof(out));
}

/* ---- the session store --------------------------------------------------------------------- */

struct worker {
    const struct tlsock_session_store *st;
    int id;
    int good; /* keys read back as written, then missing after remove */
};

static void *worker_run(void *arg)
{
    struct worker *w = arg;

    for (int i = 0; i < KEYS_PER_THREAD; i++) {
        char key[64];
        char value[64];
        struct answer a;
        bool ok;

        snprintf(key, sizeof(key), "tlsock:sess:test:%d:%d", w->id, i);
        snprintf(value, sizeof(value), "session %d of thread %d", i, w->id);
        w->st->put(w->st->user, key, strlen(key), value, strlen(value), unix_ms() + 60000);
        ok = get_key(w->st, key, &a, WAIT_MS, NULL) && a.calls == 1 && a.hit &&
             strcmp(a.value, value) == 0;
        answer_destroy(&a);
        w->st->remove(w->st->user, key, strlen(key));
        ok = ok && get_key(w->st, key, &a, WAIT_MS, NULL) && a.calls == 1 && !a.hit;
        answer_destroy(&a);
        w->good += ok ? 1 : 0;
    }
    return NULL;
}

static void test_put_get_remove_threads(void **state)
{
    struct tlsock_redis_store *store = store_new(NULL);
    const struct tlsock_session_store *st = tlsock_redis_store_session_store(store);
    pthread_t threads[THREADS];
    struct worker workers[THREADS];
    char out[64];

    (void)state;
    for (int i = 0; i < THREADS; i++) {
        workers[i] = (struct worker){.st = st, .id = i};
        assert_int_equal(pthread_create(&threads[i], NULL, worker_run, &workers[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(workers[i].good, KEYS_PER_THREAD);
    }
    /* Binary values with NUL bytes, stored with an expiry Redis knows (PTTL). */
    st->put(st->user, "k\0bin", 5, "v\0al", 4, unix_ms() + 30000);
    assert_get(st, "nothing", NULL); /* same queue: the put is in Redis once this answered */
    assert_int_equal(ts_redis_cmd(&server, "EXISTS k", out, sizeof(out)), 0);
    assert_string_equal(out, "0");
    {
        struct answer a;

        answer_init(&a);
        st->get(st->user, "k\0bin", 5, on_answer, &a);
        assert_true(answer_wait(&a, WAIT_MS));
        assert_true(a.hit);
        assert_int_equal(a.len, 4);
        assert_memory_equal(a.value, "v\0al", 4);
        answer_destroy(&a);
    }
    st->put(st->user, "ttl", 3, "x", 1, unix_ms() + 30000);
    assert_get(st, "ttl", "x");
    assert_int_equal(ts_redis_cmd(&server, "PTTL ttl", out, sizeof(out)), 0);
    assert_true(atoi(out) > 25000 && atoi(out) <= 30000);
    tlsock_redis_store_free(store);
}

static void test_expiry(void **state)
{
    struct tlsock_redis_store *store = store_new(NULL);
    const struct tlsock_session_store *st = tlsock_redis_store_session_store(store);

    (void)state;
    st->put(st->user, "short", 5, "lived", 5, unix_ms() + 300);
    st->put(st->user, "past", 4, "gone", 4, unix_ms() - 1000);
    assert_get(st, "short", "lived");
    assert_get(st, "past", NULL);
    sleep_ms(500);
    assert_get(st, "short", NULL);
    tlsock_redis_store_free(store);
}

static void test_missing_key(void **state)
{
    struct tlsock_redis_store *store = store_new(NULL);
    const struct tlsock_session_store *st = tlsock_redis_store_session_store(store);

    (void)state;
    assert_get(st, "tlsock:sess:never-stored", NULL);
    tlsock_redis_store_free(store);
}

/*
 * While Redis is unusable, @p gets gets each return within IMMEDIATE_MS and are answered, as
 * misses, within the timeout (plus scheduling slack).
 */
static void gets_while_down(const struct tlsock_session_store *st, int gets, int timeout_ms)
{
    for (int i = 0; i < gets; i++) {
        struct answer a;
        int64_t took;
        int64_t t0 = now_ms();

        assert_true(get_key(st, "any", &a, timeout_ms + 500, &took));
        assert_true(took < IMMEDIATE_MS);
        assert_true(now_ms() - t0 <= timeout_ms + 500);
        assert_int_equal(a.calls, 1);
        assert_false(a.hit);
        answer_destroy(&a);
        sleep_ms(20);
    }
}

static void test_killed_and_restarted(void **state)
{
    struct tlsock_redis_store *store = store_new(&store_log);
    const struct tlsock_session_store *st = tlsock_redis_store_session_store(store);

    (void)state;
    assert_int_equal(tlsock_redis_store_set_timeout(store, 100), 0);
    st->put(st->user, "before", 6, "outage", 6, unix_ms() + 60000);
    assert_get(st, "before", "outage");
    assert_int_equal(ts_redis_kill(&server), 0);
    gets_while_down(st, 30, 100); /* over 0.6 s: several reconnect attempts */
    st->put(st->user, "during", 6, "outage", 6, unix_ms() + 60000); /* dropped */
    assert_int_equal(atomic_load(&store_log.warnings), 1);
    assert_int_equal(atomic_load(&store_log.backs), 0);

    assert_int_equal(ts_redis_restart(&server), 0);
    assert_true(wait_connected(store, true, WAIT_MS));
    assert_int_equal(atomic_load(&store_log.backs), 1);
    assert_int_equal(atomic_load(&store_log.warnings), 1);
    st->put(st->user, "after", 5, "restart", 7, unix_ms() + 60000);
    assert_get(st, "after", "restart");
    assert_get(st, "during", NULL);
    tlsock_redis_store_free(store);
}

/* The connections Redis accepted so far (INFO stats, whose first field it is). */
static long connections_received(void)
{
    char out[128];
    const char *p;

    assert_int_equal(ts_redis_cmd(&server, "INFO stats", out, sizeof(out)), 0);
    p = strstr(out, "total_connections_received:");
    assert_non_null(p);
    return strtol(p + strlen("total_connections_received:"), NULL, 10);
}

/*
 * Redis closing the store's connection while nothing waits on it (its `timeout` setting, 300 s in
 * many deployments; 1 s here) is no outage: the store reconnects at once and logs nothing. It
 * logged an outage and its end for every idle period, and with a close sooner than 5 s after
 * connecting, each reconnection waited twice as long as the one before (up to 5 s of misses).
 */
static void test_idle_closed(void **state)
{
    struct tlsock_redis_store *store = store_new(&store_log);
    const struct tlsock_session_store *st = tlsock_redis_store_session_store(store);
    int64_t until;
    long before;
    long closes;
    char out[64];

    (void)state;
    before = connections_received();
    assert_int_equal(ts_redis_cmd(&server, "CONFIG SET timeout 1", out, sizeof(out)), 0);
    assert_string_equal(out, "OK");
    /* Redis closes a client idle for more than 1 s within about a second more. */
    until = now_ms() + 5000;
    while (now_ms() < until) {
        sleep_ms(50);
    }
    assert_int_equal(ts_redis_cmd(&server, "CONFIG SET timeout 0", out, sizeof(out)), 0);
    /* Less the two commands above and this one, each on a connection of its own. */
    closes = connections_received() - before - 3;
    print_message("Redis closed the idle store's connection %ld times\n", closes);
    assert_true(closes >= 1);
    assert_int_equal(atomic_load(&store_log.warnings), 0);
    assert_int_equal(atomic_load(&store_log.backs), 0);
    assert_true(wait_connected(store, true, 1000));
    st->put(st->user, "idle", 4, "closed", 6, unix_ms() + 60000);
    assert_get(st, "idle", "closed");
    tlsock_redis_store_free(store);
}

/* A log function slow to return: the line is counted only after SLOW_LOG_MS. */
enum { SLOW_LOG_MS = 300 };

static void slow_log(void *user, const char *msg)
{
    sleep_ms(SLOW_LOG_MS);
    ts_redis_on_log(user, msg);
}

/*
 * A caller that sees tlsock_redis_store_connected() change has the line that says why, however
 * long the log function takes: the state is published after it returns.
 */
static void test_log_before_state(void **state)
{
    struct tlsock_redis_store *store = store_new(NULL);

    (void)state;
    assert_int_equal(tlsock_redis_store_set_log(store, slow_log, &store_log), 0);
    assert_int_equal(ts_redis_kill(&server), 0);
    assert_true(wait_connected(store, false, WAIT_MS));
    assert_int_equal(atomic_load(&store_log.warnings), 1);
    assert_int_equal(ts_redis_restart(&server), 0);
    assert_true(wait_connected(store, true, WAIT_MS));
    assert_int_equal(atomic_load(&store_log.backs), 1);
    tlsock_redis_store_free(store);
}

static void test_paused(void **state)
{
    struct tlsock_redis_store *store = store_new(&store_log);
    const struct tlsock_session_store *st = tlsock_redis_store_session_store(store);

    (void)state;
    assert_int_equal(tlsock_redis_store_set_timeout(store, 150), 0);
    assert_int_equal(ts_redis_pause(&server), 0);
    /* The first get waits for its timeout, the others miss at once: Redis is down for them. */
    gets_while_down(st, 20, 150);
    assert_false(tlsock_redis_store_connected(store));
    assert_int_equal(atomic_load(&store_log.warnings), 1);
    assert_int_equal(ts_redis_resume(&server), 0);
    assert_true(wait_connected(store, true, WAIT_MS));
    assert_int_equal(atomic_load(&store_log.backs), 1);
    assert_int_equal(atomic_load(&store_log.warnings), 1);
    st->put(st->user, "resumed", 7, "yes", 3, unix_ms() + 60000);
    assert_get(st, "resumed", "yes");
    tlsock_redis_store_free(store);
}

/*
 * A Redis that answers the connection's PING but not the writes (CLIENT PAUSE WRITE; a loaded
 * Redis looks the same): each put times out and drops the link, and the next connection comes up
 * at once. The store must back off across those rounds (100, 200, 400, 800 ms...) rather than
 * start over at 100 ms after each PING, which made two log lines and a batch of misses several
 * times a second for as long as it lasted. Rounds: a put, the link down, then up again.
 */
static void test_pings_but_no_writes(void **state)
{
    enum { ROUNDS = 4 };
    struct tlsock_redis_store *store = store_new(&store_log);
    const struct tlsock_session_store *st = tlsock_redis_store_session_store(store);
    int64_t down_ms[ROUNDS];
    char out[64];

    (void)state;
    assert_int_equal(tlsock_redis_store_set_timeout(store, 100), 0);
    assert_int_equal(ts_redis_cmd(&server, "CLIENT PAUSE 30000 WRITE", out, sizeof(out)), 0);
    for (int i = 0; i < ROUNDS; i++) {
        st->put(st->user, "stalled", 7, "write", 5, unix_ms() + 60000);
        assert_true(wait_connected(store, false, WAIT_MS));
        int64_t down = now_ms();
        assert_true(wait_connected(store, true, WAIT_MS));
        down_ms[i] = now_ms() - down;
        print_message("round %d: down for %lld ms\n", i, (long long)down_ms[i]);
    }
    assert_int_equal(ts_redis_cmd(&server, "CLIENT UNPAUSE", out, sizeof(out)), 0);
    /* The fourth reconnection waited 800 ms; starting over each time, it waited 100. */
    assert_true(down_ms[ROUNDS - 1] >= 600);
    assert_int_equal(atomic_load(&store_log.warnings), ROUNDS);
    assert_int_equal(atomic_load(&store_log.backs), ROUNDS);
    /* Once Redis answers the requests again, the link works and stays up. */
    st->put(st->user, "after", 5, "pause", 5, unix_ms() + 60000);
    assert_get(st, "after", "pause");
    assert_true(tlsock_redis_store_connected(store));
    tlsock_redis_store_free(store);
}

static atomic_int bulk_calls;

static void on_bulk(void *arg, const void *value, size_t len)
{
    (void)arg;
    (void)value;
    (void)len;
    atomic_fetch_add(&bulk_calls, 1);
}

/* Beyond TLSOCK_REDIS_QUEUE_MAX requests, gets miss at once; free answers the rest. */
static void test_queue_bound_and_free(void **state)
{
    struct tlsock_redis_store *store = store_new(NULL);
    const struct tlsock_session_store *st = tlsock_redis_store_session_store(store);
    int extra = 500;
    int immediate = 0;

    (void)state;
    assert_int_equal(tlsock_redis_store_set_timeout(store, 30000), 0);
    assert_int_equal(ts_redis_pause(&server), 0);
    atomic_store(&bulk_calls, 0);
    for (int i = 0; i < TLSOCK_REDIS_QUEUE_MAX + extra; i++) {
        int before = atomic_load(&bulk_calls);

        st->get(st->user, "k", 1, on_bulk, NULL);
        immediate += atomic_load(&bulk_calls) > before ? 1 : 0;
    }
    assert_int_equal(immediate, extra);
    assert_int_equal(atomic_load(&bulk_calls), extra);
    tlsock_redis_store_free(store); /* Redis still paused: every waiting get answered, once */
    assert_int_equal(atomic_load(&bulk_calls), TLSOCK_REDIS_QUEUE_MAX + extra);
    assert_int_equal(ts_redis_resume(&server), 0);
}

/* Beyond TLSOCK_REDIS_QUEUE_BYTES of keys and values held, a get misses at once too. */
static void test_queue_byte_bound(void **state)
{
    struct tlsock_redis_store *store = store_new(NULL);
    const struct tlsock_session_store *st = tlsock_redis_store_session_store(store);
    size_t value_len = (TLSOCK_REDIS_QUEUE_BYTES / 8) - 1; /* with its 1-byte key: an eighth */
    unsigned char *value = calloc(1, value_len);
    int before = 0;

    (void)state;
    assert_non_null(value);
    assert_int_equal(tlsock_redis_store_set_timeout(store, 30000), 0);
    assert_int_equal(ts_redis_pause(&server), 0);
    atomic_store(&bulk_calls, 0);
    /* Eight puts of an eighth each hold all of it (far fewer requests than the count bound):
     * a get, one byte more, misses at once. */
    for (int i = 0; i < 8; i++) {
        st->put(st->user, "p", 1, value, value_len, unix_ms() + 60000);
    }
    before = atomic_load(&bulk_calls);
    st->get(st->user, "k", 1, on_bulk, NULL);
    assert_int_equal(before, 0);
    assert_int_equal(atomic_load(&bulk_calls), 1);
    tlsock_redis_store_free(store);
    assert_int_equal(atomic_load(&bulk_calls), 1);
    assert_int_equal(ts_redis_resume(&server), 0);
    free(value);
}

static void test_not_running_at_start(void **state)
{
    struct tlsock_redis_store *store = NULL;
    struct answer a;
    int64_t took;

    (void)state;
    assert_int_equal(ts_redis_kill(&server), 0);
    TS_ASSERT_RC_MSG(tlsock_redis_store_new(server.url, &store), 0, tlsock_redis_errmsg());
    assert_int_equal(tlsock_redis_store_set_log(store, ts_redis_on_log, &store_log), 0);
    assert_true(get_key(tlsock_redis_store_session_store(store), "x", &a, 1000, &took));
    assert_true(took < IMMEDIATE_MS);
    assert_false(a.hit);
    answer_destroy(&a);
    assert_int_equal(ts_redis_restart(&server), 0);
    assert_true(wait_connected(store, true, WAIT_MS));
    /* The warning may come before set_log (then on stderr); either way one outage, one end. */
    assert_true(atomic_load(&store_log.warnings) <= 1);
    assert_int_equal(atomic_load(&store_log.backs), atomic_load(&store_log.warnings));
    tlsock_redis_store_free(store);
}

static void test_url(void **state)
{
    static const char *const bad[] = {
        "http://127.0.0.1:6379", "redis://",        "redis://:6379",
        "redis://h:0",           "redis://h:70000", "redis://h:12x",
        "redis://h/db",          "redis://[::1",    "redis://h:1/2/3",
    };
    struct tlsock_redis_store *store = (struct tlsock_redis_store *)1;
    char url[96];
    char out[64];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(tlsock_redis_store_new(bad[i], &store), TLSOCK_EINVAL);
        assert_null(store);
        assert_non_null(strstr(tlsock_redis_errmsg(), bad[i]));
    }
    assert_int_equal(tlsock_redis_store_new(NULL, &store), TLSOCK_EINVAL);
    assert_int_equal(tlsock_redis_store_set_timeout(NULL, 100), TLSOCK_EINVAL);
    assert_null(tlsock_redis_store_session_store(NULL));
    tlsock_redis_store_free(NULL);
    /* /DB selects the database: the entry lands in database 3, not 0. */
    snprintf(url, sizeof(url), "%s/3", server.url);
    TS_ASSERT_RC_MSG(tlsock_redis_store_new(url, &store), 0, tlsock_redis_errmsg());
    assert_true(wait_connected(store, true, WAIT_MS));
    assert_int_equal(tlsock_redis_store_set_timeout(store, 0), TLSOCK_EINVAL);
    {
        const struct tlsock_session_store *st = tlsock_redis_store_session_store(store);

        st->put(st->user, "in3", 3, "v", 1, unix_ms() + 60000);
        assert_get(st, "in3", "v");
    }
    assert_int_equal(ts_redis_cmd(&server, "EXISTS in3", out, sizeof(out)), 0);
    assert_string_equal(out, "0");
    tlsock_redis_store_free(store);
    /* A database the server does not have (16 by default): the link never comes up, rather
     * than up on database 0, and gets miss. */
    snprintf(url, sizeof(url), "%s/99", server.url);
    TS_ASSERT_RC_MSG(tlsock_redis_store_new(url, &store), 0, tlsock_redis_errmsg());
    assert_false(wait_connected(store, true, 1000));
    {
        const struct tlsock_session_store *st = tlsock_redis_store_session_store(store);

        st->put(st->user, "in99", 4, "v", 1, unix_ms() + 60000);
        assert_get(st, "in99", NULL);
    }
    assert_int_equal(ts_redis_cmd(&server, "EXISTS in99", out, sizeof(out)), 0);
    assert_string_equal(out, "0");
    tlsock_redis_store_free(store);
}

/* Refusal lines that name the replica and Redis's reason, counted besides ts_redis_on_log's. */
static atomic_int readonly_lines;

static void readonly_log(void *user, const char *msg)
{
    if (strstr(msg, replica.url) != NULL && strstr(msg, "refuses writes (READONLY ") != NULL) {
        atomic_fetch_add(&readonly_lines, 1);
    }
    ts_redis_on_log(user, msg);
}

/*
 * A Redis that answers PING and GET but refuses writes (a replica: READONLY): the first refused
 * put logs one warning naming Redis's reason, the link stays up, more refused puts and removes
 * log nothing more; once it takes writes again (promoted), the next put logs that once.
 */
static void test_writes_refused(void **state)
{
    struct tlsock_redis_store *store;
    const struct tlsock_session_store *st;
    char out[64];

    (void)state;
    assert_int_equal(ts_redis_start_replica(&replica), 0);
    atomic_store(&readonly_lines, 0);
    store = store_at(replica.url, NULL);
    assert_int_equal(tlsock_redis_store_set_log(store, readonly_log, &store_log), 0);
    st = tlsock_redis_store_session_store(store);
    st->put(st->user, "refused", 7, "v", 1, unix_ms() + 60000);
    assert_get(st, "refused", NULL); /* same queue: the put's reply came before this answer */
    assert_int_equal(atomic_load(&store_log.refused), 1);
    assert_int_equal(atomic_load(&readonly_lines), 1);
    assert_true(tlsock_redis_store_connected(store));
    for (int i = 0; i < 5; i++) {
        st->put(st->user, "refused", 7, "v", 1, unix_ms() + 60000);
        st->remove(st->user, "refused", 7);
    }
    assert_get(st, "refused", NULL);
    assert_int_equal(atomic_load(&store_log.refused), 1);
    assert_int_equal(atomic_load(&store_log.taken), 0);
    assert_int_equal(atomic_load(&store_log.warnings), 0);
    assert_true(tlsock_redis_store_connected(store));

    assert_int_equal(ts_redis_cmd(&replica, "REPLICAOF NO ONE", out, sizeof(out)), 0);
    assert_string_equal(out, "OK");
    st->put(st->user, "taken", 5, "yes", 3, unix_ms() + 60000);
    assert_get(st, "taken", "yes");
    st->put(st->user, "taken2", 6, "yes", 3, unix_ms() + 60000);
    assert_get(st, "taken2", "yes");
    assert_int_equal(atomic_load(&store_log.taken), 1);
    assert_int_equal(atomic_load(&store_log.refused), 1);
    tlsock_redis_store_free(store);
    ts_redis_stop(&replica);
}

/*
 * A Redis that answers PING and takes writes but refuses GET (an ACL that leaves it out, such as
 * one with write-only keys, %W~tlsock:*; a value of another type under the key): every session
 * misses, so no TLS 1.2 session resumes on any server, and that went unsaid. The first refused
 * get logs one line with Redis's reason, the link stays up, more refusals log nothing more, and
 * the first get answered after them says so once.
 */
static void test_reads_refused(void **state)
{
    struct tlsock_redis_store *store = store_new(&store_log);
    const struct tlsock_session_store *st = tlsock_redis_store_session_store(store);
    char out[64];

    (void)state;
    st->put(st->user, "kept", 4, "v", 1, unix_ms() + 60000);
    assert_get(st, "kept", "v");
    assert_int_equal(ts_redis_cmd(&server, "ACL SETUSER default -get", out, sizeof(out)), 0);
    assert_string_equal(out, "OK");
    for (int i = 0; i < 5; i++) {
        assert_get(st, "kept", NULL);
    }
    assert_int_equal(atomic_load(&store_log.reads_refused), 1);
    assert_int_equal(atomic_load(&store_log.reads_back), 0);
    assert_int_equal(atomic_load(&store_log.warnings), 0);
    assert_true(tlsock_redis_store_connected(store));

    assert_int_equal(ts_redis_cmd(&server, "ACL SETUSER default +get", out, sizeof(out)), 0);
    assert_get(st, "kept", "v");
    assert_get(st, "missing", NULL); /* a miss is an answer too: no line */
    assert_int_equal(atomic_load(&store_log.reads_back), 1);
    assert_int_equal(atomic_load(&store_log.reads_refused), 1);
    tlsock_redis_store_free(store);
}

/* What test_credentials's stores logged: lines naming Redis's refusal, lines with a password. */
static atomic_int wrongpass_lines;
static atomic_int password_lines;

static void credentials_log(void *user, const char *msg)
{
    if (strstr(msg, "WRONGPASS") != NULL) {
        atomic_fetch_add(&wrongpass_lines, 1);
    }
    if (strstr(msg, "pw") != NULL) {
        atomic_fetch_add(&password_lines, 1);
    }
    ts_redis_on_log(user, msg);
}

/*
 * A Redis with a password (requirepass) and an ACL user, the way most deployments run one: the
 * URL's credentials, redis://USER:PASSWORD@HOST:PORT/DB (percent-encoded) or :PASSWORD@ for the
 * default user, are sent with AUTH by the store's connection and by the ticket key calls'. A
 * wrong password keeps the link down and logs Redis's reason once; no message, log line or
 * error ever shows the password. The URL used to be refused ("the port is not 1 to 65535").
 */
static void test_credentials(void **state)
{
    static const char *const bad[] = {
        "redis://alice@127.0.0.1:1",        /* no ':' before the password */
        "redis://alice:a%4@127.0.0.1:1",    /* a cut-short escape */
        "redis://alice:a%zzpw@127.0.0.1:1", /* not hex */
    };
    struct tlsock_redis_store *store;
    const struct tlsock_session_store *st;
    struct ts_workdir wd;
    char url[160];
    char path[TS_WORKDIR_PATH_MAX];
    char out[64];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(tlsock_redis_store_new(bad[i], &store), TLSOCK_EINVAL);
        print_message("%s: %s\n", bad[i], tlsock_redis_errmsg());
        assert_null(strstr(tlsock_redis_errmsg(), "pw"));
    }
    assert_int_equal(ts_redis_start(&authed), 0);
    assert_int_equal(
        ts_redis_cmd(&authed, "ACL SETUSER alice on >al/ce@pw ~tlsock:* +@all", out, sizeof(out)),
        0);
    assert_string_equal(out, "OK");
    /* Last: ts_redis_cmd() cannot talk to it any more. */
    assert_int_equal(ts_redis_cmd(&authed, "CONFIG SET requirepass default-pw", out, sizeof(out)),
                     0);
    assert_string_equal(out, "OK");
    atomic_store(&wrongpass_lines, 0);
    atomic_store(&password_lines, 0);

    /* The ACL user, on database 2, with a '/' and an '@' in the password. */
    snprintf(url, sizeof(url), "redis://alice:al%%2Fce%%40pw@127.0.0.1:%u/2", authed.port);
    TS_ASSERT_RC_MSG(tlsock_redis_store_new(url, &store), 0, tlsock_redis_errmsg());
    assert_int_equal(tlsock_redis_store_set_log(store, credentials_log, &store_log), 0);
    assert_true(wait_connected(store, true, WAIT_MS));
    st = tlsock_redis_store_session_store(store);
    st->put(st->user, "tlsock:sess:a", 13, "alice's", 7, unix_ms() + 60000);
    assert_get(st, "tlsock:sess:a", "alice's");
    assert_int_equal(ts_workdir_make(&wd, "redis-auth"), 0);
    ts_workdir_path(&wd, "keys", path, sizeof(path));
    TS_ASSERT_RC_MSG(tlsock_redis_store_ticket_keys(store, path, 0, NULL, NULL), 0,
                     tlsock_redis_errmsg());
    tlsock_redis_store_free(store);

    /* The default user, by its password alone. */
    snprintf(url, sizeof(url), "redis://:default-pw@127.0.0.1:%u", authed.port);
    store = store_at(url, &store_log);
    st = tlsock_redis_store_session_store(store);
    st->put(st->user, "k", 1, "default's", 9, unix_ms() + 60000);
    assert_get(st, "k", "default's");
    tlsock_redis_store_free(store);

    /* A wrong password: down, one line with Redis's reason, and the key calls fail with it. */
    snprintf(url, sizeof(url), "redis://alice:wrong-pw@127.0.0.1:%u", authed.port);
    TS_ASSERT_RC_MSG(tlsock_redis_store_new(url, &store), 0, tlsock_redis_errmsg());
    assert_int_equal(tlsock_redis_store_set_log(store, credentials_log, &store_log), 0);
    assert_false(wait_connected(store, true, 1000));
    assert_int_equal(tlsock_redis_store_ticket_keys(store, path, 0, NULL, NULL), TLSOCK_ETIMEDOUT);
    print_message("ticket keys: %s\n", tlsock_redis_errmsg());
    assert_non_null(strstr(tlsock_redis_errmsg(), "WRONGPASS"));
    assert_null(strstr(tlsock_redis_errmsg(), "pw"));
    tlsock_redis_store_free(store);
    assert_int_equal(atomic_load(&wrongpass_lines), 1);
    assert_int_equal(atomic_load(&password_lines), 0);
    ts_workdir_remove(&wd);
    ts_redis_stop(&authed);
}

/* ---- ticket keys --------------------------------------------------------------------------- */

struct keys_job {
    struct tlsock_redis_store *store;
    const char *path;
    pthread_barrier_t *start;
    int rc;
    bool created;
    bool changed;
};

static void *keys_run(void *arg)
{
    struct keys_job *j = arg;

    pthread_barrier_wait(j->start);
    j->rc = tlsock_redis_store_ticket_keys(j->store, j->path, 600, &j->changed, &j->created);
    return NULL;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    char *text = calloc(1, 4096);

    assert_non_null(f);
    assert_non_null(text);
    assert_true(fread(text, 1, 4095, f) > 0);
    fclose(f);
    return text;
}

static void test_ticket_keys_shared(void **state)
{
    struct ts_workdir wd;
    struct tlsock_redis_store *stores[2] = {store_new(NULL), store_new(NULL)};
    pthread_barrier_t start;
    pthread_t threads[2];
    struct keys_job jobs[2];
    char paths[2][TS_WORKDIR_PATH_MAX];
    char redis_text[512];
    char *texts[2];
    struct stat st;
    struct tlsock_ctx *ctx = NULL;

    (void)state;
    assert_int_equal(ts_workdir_make(&wd, "redis"), 0);
    pthread_barrier_init(&start, NULL, 2);
    for (int i = 0; i < 2; i++) {
        ts_workdir_path(&wd, i == 0 ? "a.keys" : "b.keys", paths[i], sizeof(paths[i]));
        jobs[i] = (struct keys_job){.store = stores[i], .path = paths[i], .start = &start};
        assert_int_equal(pthread_create(&threads[i], NULL, keys_run, &jobs[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(threads[i], NULL);
        TS_ASSERT_RC_MSG(jobs[i].rc, 0, tlsock_redis_errmsg());
        assert_true(jobs[i].changed);
        texts[i] = read_text(paths[i]);
        assert_int_equal(stat(paths[i], &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
    }
    /* One made the secret under the lease; both hold its text, the one in Redis. */
    assert_true(jobs[0].created != jobs[1].created);
    assert_string_equal(texts[0], texts[1]);
    assert_int_equal(
        ts_redis_cmd(&server, "GET " TLSOCK_REDIS_TICKET_KEYS_KEY, redis_text, sizeof(redis_text)),
        0);
    assert_string_equal(redis_text, texts[0]);
    assert_non_null(strstr(texts[0], "\nperiod 600\n"));
    /* The file is one a server context loads. */
    TS_ASSERT_RC(ts_ctx_new(TLSOCK_SERVER, &ctx), 0);
    TS_ASSERT_RC_MSG(tlsock_ctx_set_ticket_keys_file(ctx, paths[0]), 0, tlsock_ctx_errmsg(ctx));
    tlsock_ctx_free(ctx);
    /* Again: nothing new is made and the file is left alone. */
    TS_ASSERT_RC_MSG(tlsock_redis_store_ticket_keys(stores[1], paths[1], 600, &jobs[1].changed,
                                                    &jobs[1].created),
                     0, tlsock_redis_errmsg());
    assert_false(jobs[1].changed);
    assert_false(jobs[1].created);
    for (int i = 0; i < 2; i++) {
        free(texts[i]);
        tlsock_redis_store_free(stores[i]);
    }
    pthread_barrier_destroy(&start);
    ts_workdir_remove(&wd);
}

/* The text Redis holds under TLSOCK_REDIS_TICKET_KEYS_KEY, "(nil)" when none. */
static char *redis_keys_text(void)
{
    char *text = calloc(1, 4096);

    assert_non_null(text);
    assert_int_equal(ts_redis_cmd(&server, "GET " TLSOCK_REDIS_TICKET_KEYS_KEY, text, 4096), 0);
    return text;
}

/*
 * Empties Redis (as a restart without persistence does), then asks @p store for the key file at
 * @p path, which must succeed; returns the file's text after.
 */
static char *keys_after_flush(struct tlsock_redis_store *store, const char *path, unsigned period_s,
                              bool *changed, bool *created)
{
    char out[64];

    assert_int_equal(ts_redis_cmd(&server, "FLUSHALL", out, sizeof(out)), 0);
    TS_ASSERT_RC_MSG(tlsock_redis_store_ticket_keys(store, path, period_s, changed, created), 0,
                     tlsock_redis_errmsg());
    return read_text(path);
}

/*
 * Redis loses the key text (FLUSHALL: a restart without persistence, an eviction, a failover
 * to a replica without it): the server that takes the lease next publishes its key file again
 * rather than a new secret, so Redis and every file keep the secret tickets were issued under.
 * With no valid key file (the first start, or a file no server would load), a new one is made.
 */
static void test_ticket_keys_republished(void **state)
{
    struct ts_workdir wd;
    struct tlsock_redis_store *a = store_new(NULL);
    struct tlsock_redis_store *b = store_new(NULL);
    char path_a[TS_WORKDIR_PATH_MAX];
    char path_b[TS_WORKDIR_PATH_MAX];
    char path_c[TS_WORKDIR_PATH_MAX];
    char *before;
    char *text;
    char *in_redis;
    bool changed = true;
    bool created = true;
    FILE *f;

    (void)state;
    assert_int_equal(ts_workdir_make(&wd, "redis"), 0);
    ts_workdir_path(&wd, "a.keys", path_a, sizeof(path_a));
    ts_workdir_path(&wd, "b.keys", path_b, sizeof(path_b));
    ts_workdir_path(&wd, "c.keys", path_c, sizeof(path_c));
    TS_ASSERT_RC_MSG(tlsock_redis_store_ticket_keys(a, path_a, 600, NULL, &created), 0,
                     tlsock_redis_errmsg());
    assert_true(created);
    TS_ASSERT_RC_MSG(tlsock_redis_store_ticket_keys(b, path_b, 600, NULL, &created), 0,
                     tlsock_redis_errmsg());
    assert_false(created);
    before = read_text(path_a);

    /* b, which did not make the secret, takes the lease (gone with the flush) and publishes its
     * file, whatever period it asks for: the same text everywhere, nothing written or made. */
    text = keys_after_flush(b, path_b, 300, &changed, &created);
    assert_false(created);
    assert_false(changed);
    assert_string_equal(text, before);
    free(text);
    in_redis = redis_keys_text();
    assert_string_equal(in_redis, before);
    free(in_redis);
    TS_ASSERT_RC_MSG(tlsock_redis_store_ticket_keys(a, path_a, 600, &changed, &created), 0,
                     tlsock_redis_errmsg());
    assert_false(created);
    assert_false(changed);
    text = read_text(path_a);
    assert_string_equal(text, before);
    free(text);

    /* No file and no text in Redis: a new secret, in Redis and the file. */
    text = keys_after_flush(a, path_c, 600, &changed, &created);
    assert_true(created);
    assert_true(changed);
    assert_string_not_equal(text, before);
    in_redis = redis_keys_text();
    assert_string_equal(in_redis, text);
    free(in_redis);
    free(text);

    /* A file no server would load (a short secret) is not published: a new secret replaces it. */
    f = fopen(path_c, "w");
    assert_non_null(f);
    assert_true(fputs("tlsock-ticket-keys 1\nperiod 600\nsecret 00\n", f) >= 0);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path_c, 0600), 0);
    text = keys_after_flush(a, path_c, 600, &changed, &created);
    assert_true(created);
    assert_true(changed);
    assert_null(strstr(text, "\nsecret 00\n"));
    in_redis = redis_keys_text();
    assert_string_equal(in_redis, text);
    free(in_redis);
    free(text);

    free(before);
    tlsock_redis_store_free(a);
    tlsock_redis_store_free(b);
    ts_workdir_remove(&wd);
}

static atomic_int reloads;

static void on_reload(void *user, const char *path)
{
    (void)user;
    (void)path;
    atomic_fetch_add(&reloads, 1);
}

static void test_ticket_keys_rotate(void **state)
{
    struct ts_workdir wd;
    struct tlsock_redis_store *a = store_new(NULL);
    struct tlsock_redis_store *b = store_new(NULL);
    const char *path_a;
    const char *path_b;
    char *before;
    char *text_a;
    char *text_b;
    bool rotated = false;
    int64_t until;

    (void)state;
    assert_int_equal(ts_workdir_make(&wd, "redis"), 0);
    path_a = strdup(TS_WORKDIR_PATH(&wd, "a.keys"));
    path_b = strdup(TS_WORKDIR_PATH(&wd, "b.keys"));
    TS_ASSERT_RC_MSG(tlsock_redis_store_ticket_keys(a, path_a, 0, NULL, NULL), 0,
                     tlsock_redis_errmsg());
    atomic_store(&reloads, 0);
    TS_ASSERT_RC_MSG(tlsock_redis_store_watch_ticket_keys(b, path_b, 100, on_reload, NULL), 0,
                     tlsock_redis_errmsg());
    assert_int_equal(tlsock_redis_store_watch_ticket_keys(b, path_b, 100, NULL, NULL),
                     TLSOCK_EINVAL);
    until = now_ms() + WAIT_MS;
    while (atomic_load(&reloads) < 1 && now_ms() < until) {
        sleep_ms(10);
    }
    assert_int_equal(atomic_load(&reloads), 1);
    before = read_text(path_b);

    /* The lease was a's (it made the secret and still holds it): b cannot rotate, a can. */
    TS_ASSERT_RC_MSG(tlsock_redis_store_rotate_ticket_keys(b, path_b, 0, &rotated), 0,
                     tlsock_redis_errmsg());
    assert_false(rotated);
    TS_ASSERT_RC_MSG(tlsock_redis_store_rotate_ticket_keys(a, path_a, 0, &rotated), 0,
                     tlsock_redis_errmsg());
    assert_true(rotated);
    text_a = read_text(path_a);
    assert_string_not_equal(text_a, before);
    /* b's watcher picks the new secret up at its next poll. */
    until = now_ms() + WAIT_MS;
    while (atomic_load(&reloads) < 2 && now_ms() < until) {
        sleep_ms(10);
    }
    assert_int_equal(atomic_load(&reloads), 2);
    text_b = read_text(path_b);
    assert_string_equal(text_a, text_b);
    tlsock_redis_store_free(b); /* stops the watcher */
    tlsock_redis_store_free(a);
    free(before);
    free(text_a);
    free(text_b);
    free((void *)path_a);
    free((void *)path_b);
    ts_workdir_remove(&wd);
}

/* Waits (bounded) until @p flag is true; returns it. */
static bool wait_flag(atomic_bool *flag, int ms)
{
    int64_t until = now_ms() + ms;

    while (!atomic_load(flag) && now_ms() < until) {
        sleep_ms(5);
    }
    return atomic_load(flag);
}

/*
 * rename(), wrapped at link time: the key files are written under a temporary name and renamed.
 * Armed, the next rename() (the test arms it when only the watcher will rename) waits until the
 * test releases it, at most GATE_MS: a watcher caught between reading Redis and writing the file.
 */
enum { GATE_MS = 5000 };

static struct {
    atomic_bool armed;
    atomic_bool holding; /* a rename waits */
    atomic_bool released;
} gate;

int __real_rename(const char *from, const char *to);
int __wrap_rename(const char *from, const char *to);

int __wrap_rename(const char *from, const char *to)
{
    if (atomic_exchange(&gate.armed, false)) {
        atomic_store(&gate.holding, true);
        (void)wait_flag(&gate.released, GATE_MS);
    }
    return __real_rename(from, to);
}

struct rotate_job {
    struct tlsock_redis_store *store;
    const char *path;
    bool rotated;
    int rc;
    atomic_bool done;
};

static void *rotate_run(void *arg)
{
    struct rotate_job *j = arg;

    j->rc = tlsock_redis_store_rotate_ticket_keys(j->store, j->path, 0, &j->rotated);
    atomic_store(&j->done, true);
    return NULL;
}

/*
 * A rotation while the store's own watcher is between reading the text from Redis and writing
 * it to the same file: the watcher's old text must not land over the rotation's new one (the
 * server would reload the retired secret until its next poll). The watcher is made to write (its
 * file removed) and held in its rename(); the rotation runs on a thread of its own meanwhile.
 * One ticket key call at a time per store: the rotation waits for the watcher's, then writes.
 */
static void test_ticket_keys_rotate_during_poll(void **state)
{
    struct ts_workdir wd;
    struct tlsock_redis_store *a = store_new(NULL);
    struct rotate_job job = {.store = a};
    pthread_t rotator;
    char *text;
    char *in_redis;

    (void)state;
    assert_int_equal(ts_workdir_make(&wd, "redis"), 0);
    job.path = strdup(TS_WORKDIR_PATH(&wd, "a.keys"));
    atomic_init(&job.done, false);
    TS_ASSERT_RC_MSG(tlsock_redis_store_ticket_keys(a, job.path, 0, NULL, NULL), 0,
                     tlsock_redis_errmsg());
    atomic_store(&reloads, 0);
    /* Polls every second: the first poll finds the file current and writes nothing. */
    TS_ASSERT_RC_MSG(tlsock_redis_store_watch_ticket_keys(a, job.path, 1000, on_reload, NULL), 0,
                     tlsock_redis_errmsg());
    atomic_store(&gate.holding, false);
    atomic_store(&gate.released, false);
    atomic_store(&gate.armed, true);
    assert_int_equal(unlink(job.path), 0);
    assert_true(wait_flag(&gate.holding, GATE_MS));

    /* The rotation: done at once without the lock, else waiting for the watcher's call. */
    assert_int_equal(pthread_create(&rotator, NULL, rotate_run, &job), 0);
    (void)wait_flag(&job.done, 500);
    atomic_store(&gate.released, true);
    pthread_join(rotator, NULL);
    TS_ASSERT_RC_MSG(job.rc, 0, tlsock_redis_errmsg());
    assert_true(job.rotated);
    int64_t until = now_ms() + WAIT_MS;
    while (atomic_load(&reloads) < 1 && now_ms() < until) {
        sleep_ms(5);
    }
    assert_int_equal(atomic_load(&reloads), 1);

    /* The file holds the rotation's secret, the one in Redis. */
    text = read_text(job.path);
    in_redis = redis_keys_text();
    assert_string_equal(text, in_redis);
    tlsock_redis_store_free(a); /* stops the watcher */
    free(text);
    free(in_redis);
    free((void *)job.path);
    ts_workdir_remove(&wd);
}

/*
 * tlsock_ticket_keys_write(), wrapped at link time: the store calls it to make a new secret while
 * it holds the lease. Armed, it first plays another server that took the lease after this one's
 * expired (the store stalled meanwhile): the lease is "another-server"'s, and with steal_text set
 * that server has already put its own key text in Redis.
 */
static bool steal_lease;
static const char *steal_text;

int __real_tlsock_ticket_keys_write(const char *path, unsigned period_s);
int __wrap_tlsock_ticket_keys_write(const char *path, unsigned period_s);

int __wrap_tlsock_ticket_keys_write(const char *path, unsigned period_s)
{
    if (steal_lease) {
        redisContext *c = redisConnect("127.0.0.1", server.port);
        redisReply *r = NULL;

        steal_lease = false;
        if (c != NULL && c->err == 0) {
            r = redisCommand(c, "SET %s another-server PX 10000", TLSOCK_REDIS_TICKET_LEASE_KEY);
            freeReplyObject(r);
            r = steal_text == NULL
                    ? NULL
                    : redisCommand(c, "SET %s %s", TLSOCK_REDIS_TICKET_KEYS_KEY, steal_text);
            freeReplyObject(r);
        }
        redisFree(c);
    }
    return __real_tlsock_ticket_keys_write(path, period_s);
}

/*
 * A store whose lease expired while it made a new secret (another server took it meanwhile) does
 * not write that secret: the text is set only while the lease is this store's, in one step on
 * Redis. A rotation then reports nothing rotated and leaves Redis and the file alone; fetching the
 * keys from an empty Redis takes the other server's text instead of its own.
 */
static void test_lease_lost_meanwhile(void **state)
{
    struct ts_workdir wd;
    struct tlsock_redis_store *a = store_new(NULL);
    char path[TS_WORKDIR_PATH_MAX];
    char other_path[TS_WORKDIR_PATH_MAX];
    bool rotated = true;
    bool created = true;
    char out[64];

    (void)state;
    assert_int_equal(ts_workdir_make(&wd, "redis"), 0);
    ts_workdir_path(&wd, "a.keys", path, sizeof(path));
    ts_workdir_path(&wd, "other.keys", other_path, sizeof(other_path));
    TS_ASSERT_RC_MSG(tlsock_redis_store_ticket_keys(a, path, 0, NULL, NULL), 0,
                     tlsock_redis_errmsg());
    char *before = redis_keys_text();

    steal_lease = true;
    TS_ASSERT_RC_MSG(tlsock_redis_store_rotate_ticket_keys(a, path, 0, &rotated), 0,
                     tlsock_redis_errmsg());
    assert_false(steal_lease); /* it made a secret, and lost the lease first */
    assert_false(rotated);
    char *after = redis_keys_text();
    char *file = read_text(path);
    assert_string_equal(after, before);
    assert_string_equal(file, before);
    free(after);
    free(file);

    /* Redis empty, no key file here: the other server's text is the one taken. */
    TS_ASSERT_RC(__real_tlsock_ticket_keys_write(other_path, 600), 0);
    char *other = read_text(other_path);
    assert_int_equal(ts_redis_cmd(&server, "FLUSHALL", out, sizeof(out)), 0);
    assert_int_equal(unlink(path), 0);
    steal_lease = true;
    steal_text = other;
    TS_ASSERT_RC_MSG(tlsock_redis_store_ticket_keys(a, path, 0, NULL, &created), 0,
                     tlsock_redis_errmsg());
    steal_text = NULL;
    assert_false(steal_lease);
    assert_false(created);
    file = read_text(path);
    after = redis_keys_text();
    assert_string_equal(after, other);
    assert_string_equal(file, other);
    free(after);
    free(file);
    free(other);
    free(before);
    tlsock_redis_store_free(a);
    ts_workdir_remove(&wd);
}

static void test_ticket_keys_down(void **state)
{
    struct tlsock_redis_store *store = store_new(NULL);
    bool changed = true;

    (void)state;
    assert_int_equal(ts_redis_kill(&server), 0);
    assert_int_equal(tlsock_redis_store_ticket_keys(store, "/nonexistent/k", 0, &changed, NULL),
                     TLSOCK_ETIMEDOUT);
    assert_false(changed);
    assert_non_null(strstr(tlsock_redis_errmsg(), server.url));
    assert_int_equal(tlsock_redis_store_ticket_keys(store, NULL, 0, NULL, NULL), TLSOCK_EINVAL);
    tlsock_redis_store_free(store);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_put_get_remove_threads, setup),
        cmocka_unit_test_setup(test_expiry, setup),
        cmocka_unit_test_setup(test_missing_key, setup),
        cmocka_unit_test_setup(test_killed_and_restarted, setup),
        cmocka_unit_test_setup(test_paused, setup),
        cmocka_unit_test_setup(test_pings_but_no_writes, setup),
        cmocka_unit_test_setup(test_idle_closed, setup),
        cmocka_unit_test_setup(test_log_before_state, setup),
        cmocka_unit_test_setup(test_queue_bound_and_free, setup),
        cmocka_unit_test_setup(test_not_running_at_start, setup),
        cmocka_unit_test_setup(test_queue_byte_bound, setup),
        cmocka_unit_test_setup(test_url, setup),
        cmocka_unit_test_setup(test_writes_refused, setup),
        cmocka_unit_test_setup(test_reads_refused, setup),
        cmocka_unit_test_setup(test_credentials, setup),
        cmocka_unit_test_setup(test_ticket_keys_shared, setup),
        cmocka_unit_test_setup(test_ticket_keys_republished, setup),
        cmocka_unit_test_setup(test_ticket_keys_rotate, setup),
        cmocka_unit_test_setup(test_ticket_keys_rotate_during_poll, setup),
        cmocka_unit_test_setup(test_lease_lost_meanwhile, setup),
        cmocka_unit_test_setup(test_ticket_keys_down, setup),
    };

    if (!ts_redis_available()) {
        fprintf(stderr, "redis-server is not installed (scripts/bootstrap installs it)\n");
        return TS_SKIP_EXIT;
    }
    return cmocka_run_group_tests_name("redis", tests, group_setup, group_teardown);
}
