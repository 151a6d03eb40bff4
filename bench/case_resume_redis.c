/*
 * TLS 1.2 session-ID resumption through the Redis session store (libtlsock_redis,
 * include/tlsock/redis.h): the store holds TLS 1.2 sessions, so these cases run TLS 1.2 with
 * session tickets off on every server and on the raw clients (a TLS 1.3 resumption only needs the
 * ticket keys shared, which the store does not measure).
 *
 * The client workload is the resume cases' (case_handshake.c), one connection at a time, on the
 * same bench_ops: connect, handshake, read until the server's close_notify, keep the session for
 * the next connection (raw: SSL_get1_session, gnutls_session_get_data2; tlsock: its session
 * cache). Each run starts a server of its own; one untimed connection gives the client a session
 * for it (tlsock's cache is keyed by port, and the store side's session must be put first), then
 * every timed connection must resume, else the run fails. Three servers:
 *   - raw: OpenSSL with its own in-process session cache (SSL_SESS_CACHE_SERVER, the default),
 *     or GnuTLS with an in-process cache given through gnutls_db_set_*_function (GnuTLS has no
 *     cache of its own; this is the one a careful program adds);
 *   - tlsock with tlsock_ctx_set_session_store() on a Redis store: every resumption is a GET from
 *     the store's thread to redis-server and back while the handshake waits;
 *   - for reference, tlsock with its in-process session-ID cache (no store).
 * Server CPU per handshake is what the process spent besides the client thread (the server
 * thread, and the store's thread on the Redis side) plus, on the Redis side, redis-server's CPU
 * (its process CPU clock).
 *
 * redis-server runs as a child for the whole case, on a free loopback port, with no persistence
 * (--save "" --appendonly no) and its log in a private temporary directory, removed at the end;
 * it is stopped with SIGTERM and reaped. Without redis-server in PATH, or in a bench built
 * without libtlsock_redis (TLSOCK_WITH_REDIS), the cases are skipped with a note.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "side.h"

#ifdef BENCH_HAVE_REDIS
#include "async.h"
#include "tlsock/redis.h"

/* The same TLS 1.2 suite on every side; GnuTLS's priority string names it its own way. */
#define SUITE_TLS12 "ECDHE-ECDSA-AES128-GCM-SHA256"
#define GNUTLS_PRIORITY_TLS12                                                                      \
    "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-GCM:-KX-ALL:+ECDHE-ECDSA:%NO_TICKETS"

/* redis-server: tries on fresh ports (another program may take one first), and its waits. */
#define START_TRIES      5
#define START_TIMEOUT_MS 5000
#define STOP_TIMEOUT_MS  5000
#define PING_TIMEOUT_MS  500
#define POLL_STEP_US     10000

/*
 * How long the store waits for Redis before a get counts as a miss: longer than the default, so
 * that a busy machine does not fail the run with a miss; the core waits at most
 * TLSOCK_STORE_WAIT_MS anyway.
 */
#define STORE_TIMEOUT_MS TLSOCK_STORE_WAIT_MS

#ifdef BENCH_HAVE_GNUTLS
/* The raw GnuTLS server's in-process session cache: fixed slots, one session each. */
#define CACHE_SLOTS   256
#define CACHE_KEY_MAX 64

struct cache_entry {
    unsigned char key[CACHE_KEY_MAX];
    unsigned key_len;
    gnutls_datum_t data; /* gnutls_malloc'ed; size 0: empty */
};

struct gtls_cache {
    pthread_mutex_t lock;
    struct cache_entry slot[CACHE_SLOTS];
};
#endif

struct redis_bench {
    char dir[64];
    char log[128];
    char url[64];
    struct bench_child child;
    struct tlsock_redis_store *store;
    const struct bench_ops *raw_ops;
    void *raw;                /* the raw layer, TLS 1.2 without tickets */
    struct gtls_cache *cache; /* the raw GnuTLS server's */
    struct tls_env *redis;    /* tlsock, server on the Redis store */
    struct tls_env *local;    /* tlsock, server on its in-process cache */
};

/* ---- redis-server ---- */

static const char *redis_missing(void)
{
    char path[512];

    return bench_find_program("redis-server", path, sizeof(path)) ? NULL
                                                                  : "redis-server not installed";
}

static const char *redis_version(void)
{
    static char version[128];
    FILE *p = NULL;

    /* "Redis server v=7.0.15 sha=... malloc=... bits=64 build=...": the version is enough. */
    snprintf(version, sizeof(version), "redis-server not installed");
    if (redis_missing() == NULL) {
        p = popen("redis-server --version 2>&1", "r");
    }
    if (p != NULL && fgets(version, sizeof(version), p) != NULL) {
        char *sha = strstr(version, " sha=");

        if (sha != NULL) {
            *sha = '\0';
        }
        version[strcspn(version, "\n")] = '\0';
    }
    if (p != NULL) {
        (void)pclose(p);
    }
    return version;
}

/* Whether Redis answers PING on @p port (an inline command, "+PONG" back) within the bound. */
static bool redis_pong(uint16_t port)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    struct timeval tv = {.tv_sec = 0, .tv_usec = PING_TIMEOUT_MS * 1000};
    char buf[16] = "";
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok = fd >= 0;

    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = ok && setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0 &&
         setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == 0 &&
         connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
         send(fd, "PING\r\n", 6, MSG_NOSIGNAL) == 6 && recv(fd, buf, sizeof(buf) - 1, 0) >= 5 &&
         strncmp(buf, "+PONG", 5) == 0;
    if (fd >= 0) {
        close(fd);
    }
    return ok;
}

static void print_log(const struct redis_bench *rb)
{
    char line[256];
    FILE *f = fopen(rb->log, "r");

    for (int i = 0; f != NULL && i < 20 && fgets(line, sizeof(line), f) != NULL; i++) {
        fprintf(stderr, "redis-server: %s", line);
    }
    if (f != NULL) {
        fclose(f);
    }
}

/*
 * Starts redis-server on a port that was free a moment ago and waits until it answers PING;
 * BENCH_AGAIN when it exited first (the port was taken meanwhile).
 */
static int spawn_redis(struct redis_bench *rb, const char *path)
{
    char port_text[8];
    uint16_t port = 0;
    int fd = bench_tcp_listen_fd("redis", false, &port);
    int64_t deadline = bench_now_ns() + (int64_t)START_TIMEOUT_MS * 1000000;
    int status = 0;

    if (fd < 0) {
        return BENCH_ERROR;
    }
    close(fd);
    snprintf(port_text, sizeof(port_text), "%u", port);
    snprintf(rb->url, sizeof(rb->url), "redis://127.0.0.1:%u", port);
    char *const argv[] = {
        (char *)path,  "--port",  port_text,      "--bind", "127.0.0.1", /* loopback only */
        "--save",      "",        "--appendonly", "no",                  /* nothing on disk */
        "--daemonize", "no",      "--dir",        rb->dir,               /* a child we can stop */
        "--loglevel",  "warning", NULL,
    };

    if (bench_child_spawn(&rb->child, "redis-server", argv, rb->log) != BENCH_OK) {
        return BENCH_ERROR;
    }
    while (bench_now_ns() < deadline) {
        if (waitpid(rb->child.pid, &status, WNOHANG) == rb->child.pid) {
            rb->child.pid = -1; /* reaped */
            return BENCH_AGAIN;
        }
        if (redis_pong(port)) {
            return BENCH_OK;
        }
        usleep(POLL_STEP_US);
    }
    fprintf(stderr, "redis-server: no PONG on port %u in %d ms\n", port, START_TIMEOUT_MS);
    return BENCH_ERROR;
}

static int start_redis(struct redis_bench *rb)
{
    char path[512];
    int rc = BENCH_AGAIN;

    if (!bench_find_program("redis-server", path, sizeof(path))) {
        fprintf(stderr, "redis-server: not found in PATH\n");
        return BENCH_ERROR;
    }
    for (int i = 0; rc == BENCH_AGAIN && i < START_TRIES; i++) {
        rc = spawn_redis(rb, path);
        if (rc != BENCH_OK) {
            (void)bench_child_stop(&rb->child, SIGTERM, STOP_TIMEOUT_MS);
        }
    }
    if (rc != BENCH_OK) {
        fprintf(stderr, "redis-server: did not start\n");
        print_log(rb);
    }
    return rc == BENCH_OK ? BENCH_OK : BENCH_ERROR;
}

/* Stops redis-server and removes its directory: its log, and a dump it should not have made. */
static void stop_redis(struct redis_bench *rb)
{
    static const char *const files[] = {"redis.log", "dump.rdb"};
    char path[128];

    if (rb->child.pid > 0 && bench_child_stop(&rb->child, SIGTERM, STOP_TIMEOUT_MS) != BENCH_OK) {
        fprintf(stderr, "redis-server: did not stop cleanly\n");
        print_log(rb);
    }
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", rb->dir, files[i]);
        (void)unlink(path);
    }
    if (rmdir(rb->dir) != 0) {
        fprintf(stderr, "redis-server: cannot remove %s: %s\n", rb->dir, strerror(errno));
    }
}

#ifdef BENCH_HAVE_GNUTLS
/* ---- The raw GnuTLS server's session cache (GnuTLS's db functions) ---- */

static struct cache_entry *cache_slot(struct gtls_cache *cache, gnutls_datum_t key)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (unsigned i = 0; i < key.size; i++) {
        h = (h ^ key.data[i]) * 16777619u;
    }
    return &cache->slot[h % CACHE_SLOTS];
}

static bool same_key(const struct cache_entry *e, gnutls_datum_t key)
{
    return e->data.size > 0 && e->key_len == key.size && memcmp(e->key, key.data, key.size) == 0;
}

static int cache_store(void *arg, gnutls_datum_t key, gnutls_datum_t data)
{
    struct gtls_cache *cache = arg;
    unsigned char *copy = key.size <= CACHE_KEY_MAX ? gnutls_malloc(data.size) : NULL;
    struct cache_entry *e = cache_slot(cache, key);

    if (copy == NULL) {
        return -1;
    }
    memcpy(copy, data.data, data.size);
    pthread_mutex_lock(&cache->lock);
    gnutls_free(e->data.data);
    memcpy(e->key, key.data, key.size);
    e->key_len = key.size;
    e->data = (gnutls_datum_t){copy, data.size};
    pthread_mutex_unlock(&cache->lock);
    return 0;
}

/* GnuTLS frees what it gets with gnutls_free. */
static gnutls_datum_t cache_retrieve(void *arg, gnutls_datum_t key)
{
    struct gtls_cache *cache = arg;
    struct cache_entry *e = cache_slot(cache, key);
    gnutls_datum_t out = {NULL, 0};

    pthread_mutex_lock(&cache->lock);
    if (same_key(e, key)) {
        out.data = gnutls_malloc(e->data.size);
    }
    if (out.data != NULL) {
        memcpy(out.data, e->data.data, e->data.size);
        out.size = e->data.size;
    }
    pthread_mutex_unlock(&cache->lock);
    return out;
}

static int cache_remove(void *arg, gnutls_datum_t key)
{
    struct gtls_cache *cache = arg;
    struct cache_entry *e = cache_slot(cache, key);

    pthread_mutex_lock(&cache->lock);
    if (same_key(e, key)) {
        gnutls_free(e->data.data);
        e->data = (gnutls_datum_t){NULL, 0};
    }
    pthread_mutex_unlock(&cache->lock);
    return 0;
}

/* Each raw GnuTLS server session: the cache, and no tickets (gtls_env.server_session). */
static int cache_attach(gnutls_session_t session, void *arg)
{
    gnutls_db_set_ptr(session, arg);
    gnutls_db_set_retrieve_function(session, cache_retrieve);
    gnutls_db_set_store_function(session, cache_store);
    gnutls_db_set_remove_function(session, cache_remove);
    return 0;
}

static void cache_free(struct gtls_cache *cache)
{
    if (cache != NULL) {
        for (size_t i = 0; i < CACHE_SLOTS; i++) {
            gnutls_free(cache->slot[i].data.data);
        }
        pthread_mutex_destroy(&cache->lock);
        free(cache);
    }
}
#endif /* BENCH_HAVE_GNUTLS */

/* ---- The layers, TLS 1.2 without tickets ---- */

static int raw_tls12_openssl(struct raw_env *env)
{
    SSL_CTX *const ctxs[] = {env->server, env->client};
    int rc = BENCH_OK;

    for (size_t i = 0; rc == BENCH_OK && i < sizeof(ctxs) / sizeof(ctxs[0]); i++) {
        if (SSL_CTX_set_min_proto_version(ctxs[i], TLS1_2_VERSION) != 1 ||
            SSL_CTX_set_max_proto_version(ctxs[i], TLS1_2_VERSION) != 1 ||
            SSL_CTX_set_cipher_list(ctxs[i], SUITE_TLS12) != 1) {
            bench_ssl_error("TLS 1.2 and its suite");
            rc = BENCH_ERROR;
        }
        SSL_CTX_set_options(ctxs[i], SSL_OP_NO_TICKET);
    }
    /* OpenSSL's default, said out loud: the server's in-process session-ID cache. */
    (void)SSL_CTX_set_session_cache_mode(env->server, SSL_SESS_CACHE_SERVER);
    return rc;
}

#ifdef BENCH_HAVE_GNUTLS
static int raw_tls12_gnutls(struct gtls_env *env, struct gtls_cache **cache)
{
    const char *errpos = NULL;
    int ret;

    *cache = calloc(1, sizeof(**cache));
    if (*cache == NULL || pthread_mutex_init(&(*cache)->lock, NULL) != 0) {
        free(*cache);
        *cache = NULL;
        fprintf(stderr, "raw-gnutls: cannot make the session cache\n");
        return BENCH_ERROR;
    }
    env->server_session = cache_attach;
    env->server_session_arg = *cache;
    gnutls_priority_deinit(env->prio);
    env->prio = NULL;
    ret = gnutls_priority_init(&env->prio, GNUTLS_PRIORITY_TLS12, &errpos);
    if (ret < 0) {
        fprintf(stderr, "raw-gnutls: priority at \"%s\": %s\n", errpos != NULL ? errpos : "",
                gnutls_strerror(ret));
        return BENCH_ERROR;
    }
    return BENCH_OK;
}
#endif

static int tlsock_failed(struct tlsock_ctx *ctx, const char *what)
{
    fprintf(stderr, "tlsock: %s: %s\n", what, tlsock_ctx_errmsg(ctx));
    return BENCH_ERROR;
}

/* A tlsock layer on TLS 1.2 only, tickets off; its server on @p store (NULL: in process). */
static int tlsock_tls12(const struct bench_config *config, const struct tlsock_session_store *store,
                        struct tls_env **out)
{
    struct tls_env *env = NULL;
    int rc = bench_tlsock_ops.setup(config, (void **)&env);

    for (int i = 0; rc == BENCH_OK && i < 2; i++) {
        struct tlsock_ctx *ctx = i == 0 ? env->server : env->client;

        if (tlsock_ctx_set_protocols(ctx, "1.2-1.2") != 0 ||
            tlsock_ctx_set_ciphers(ctx, SUITE_TLS12) != 0) {
            rc = tlsock_failed(ctx, "TLS 1.2 and its suite");
        }
    }
    if (rc == BENCH_OK && tlsock_ctx_set_tickets(env->server, false) != 0) {
        rc = tlsock_failed(env->server, "tickets off");
    }
    if (rc == BENCH_OK && store != NULL && tlsock_ctx_set_session_store(env->server, store) != 0) {
        rc = tlsock_failed(env->server, "session store");
    }
    if (rc == BENCH_OK) {
        bench_tlsock_ops.set_resume(env, true);
        *out = env;
    } else {
        bench_tlsock_ops.teardown(env);
    }
    return rc;
}

/* The contexts go before the store, the store before Redis (no outage logged at the end). */
static void redis_teardown(void *extra)
{
    struct redis_bench *rb = extra;

    if (rb == NULL) {
        return;
    }
    bench_tlsock_ops.teardown(rb->redis);
    bench_tlsock_ops.teardown(rb->local);
    if (rb->raw != NULL) {
        rb->raw_ops->teardown(rb->raw);
    }
#ifdef BENCH_HAVE_GNUTLS
    cache_free(rb->cache);
#endif
    tlsock_redis_store_free(rb->store);
    if (rb->dir[0] != '\0') {
        stop_redis(rb);
    }
    free(rb);
}

static int store_connect(struct redis_bench *rb)
{
    int64_t deadline = bench_now_ns() + (int64_t)START_TIMEOUT_MS * 1000000;

    if (tlsock_redis_store_new(rb->url, &rb->store) != 0 ||
        tlsock_redis_store_set_timeout(rb->store, STORE_TIMEOUT_MS) != 0) {
        fprintf(stderr, "redis store: %s\n", tlsock_redis_errmsg());
        return BENCH_ERROR;
    }
    while (!tlsock_redis_store_connected(rb->store) && bench_now_ns() < deadline) {
        usleep(POLL_STEP_US);
    }
    if (!tlsock_redis_store_connected(rb->store)) {
        fprintf(stderr, "redis store: not connected to %s in %d ms\n", rb->url, START_TIMEOUT_MS);
        return BENCH_ERROR;
    }
    return BENCH_OK;
}

static int redis_setup(const struct bench_config *config, void **extra)
{
    struct redis_bench *rb = calloc(1, sizeof(*rb));
    int rc = BENCH_ERROR;

    if (rb == NULL) {
        fprintf(stderr, "redis: out of memory\n");
        return BENCH_ERROR;
    }
    /* No child yet: nothing for bench_child_stop() to close or reap. */
    rb->child.pid = -1;
    rb->child.to = -1;
    rb->child.from = -1;
    snprintf(rb->dir, sizeof(rb->dir), "/tmp/tlsock-bench-redis-XXXXXX");
    if (mkdtemp(rb->dir) == NULL) {
        fprintf(stderr, "redis: mkdtemp: %s\n", strerror(errno));
        rb->dir[0] = '\0';
        goto out;
    }
    snprintf(rb->log, sizeof(rb->log), "%s/redis.log", rb->dir);
    rc = start_redis(rb);
    if (rc == BENCH_OK) {
        rc = store_connect(rb);
    }
    rb->raw_ops = bench_raw_ops_for(config->impl);
    if (rc == BENCH_OK) {
        rc = rb->raw_ops->setup(config, &rb->raw);
    }
    if (rc == BENCH_OK) {
#ifdef BENCH_HAVE_GNUTLS
        rc = config->impl == TLSOCK_IMPL_GNUTLS ? raw_tls12_gnutls(rb->raw, &rb->cache)
                                                : raw_tls12_openssl(rb->raw);
#else
        rc = raw_tls12_openssl(rb->raw);
#endif
        rb->raw_ops->set_resume(rb->raw, true);
    }
    if (rc == BENCH_OK) {
        rc = tlsock_tls12(config, tlsock_redis_store_session_store(rb->store), &rb->redis);
    }
    if (rc == BENCH_OK) {
        rc = tlsock_tls12(config, NULL, &rb->local);
    }

out:
    if (rc == BENCH_OK) {
        *extra = rb;
    } else {
        redis_teardown(rb);
    }
    return rc;
}

/* ---- The workload ---- */

/*
 * One client connection to @p port: handshake, read until the server's close_notify (nothing
 * else may come), keep the session; @p resumed says whether it resumed one.
 */
static int one_connection(const struct bench_ops *ops, void *env, uint16_t port, bool *resumed,
                          struct bench_sample *out)
{
    unsigned char buf[256];
    size_t n = 0;
    void *conn = NULL;
    int rc = ops->connect(env, port, &conn);

    if (rc != BENCH_OK) {
        return rc;
    }
    if (out != NULL) {
        snprintf(out->cipher, sizeof(out->cipher), "%s", ops->cipher(conn));
        snprintf(out->impl, sizeof(out->impl), "%s", ops->impl(conn));
    }
    rc = ops->read(conn, buf, sizeof(buf), &n);
    if (rc == BENCH_OK) {
        fprintf(stderr, "%s: data from the server instead of close_notify\n", ops->name);
        rc = BENCH_ERROR;
    } else if (rc == BENCH_CLOSED) {
        rc = ops->keep_session != NULL ? ops->keep_session(conn) : BENCH_OK;
    }
    *resumed = ops->resumed(conn);
    ops->close(conn);
    return rc;
}

/*
 * A server of @p env's, one untimed connection, then resumed connections for the run's time;
 * @p redis (-1: none) is the redis-server whose CPU counts as the server's.
 */
static int resumed_run(const struct bench_run *run, void *env, pid_t redis,
                       struct bench_sample *out)
{
    const struct bench_ops *ops = run->ops;
    int64_t budget_ns = (int64_t)(run->limits.seconds * 1e9);
    clockid_t redis_clock;
    bool redis_clocked = redis > 0 && clock_getcpuclockid(redis, &redis_clock) == 0;
    int64_t start_ns = 0;
    int64_t elapsed_ns = 0;
    int64_t client0 = 0;
    int64_t process0 = 0;
    int64_t redis0 = 0;
    uint64_t n = 0;
    bool resumed = false;
    struct bench_server srv;
    int rc = bench_server_start(&srv, ops, env, BENCH_SERVE_CLOSE, 1);
    bool started = rc == BENCH_OK;

    if (rc == BENCH_OK) {
        rc = one_connection(ops, env, srv.port, &resumed, NULL);
    }
    start_ns = bench_now_ns();
    client0 = bench_thread_cpu_ns();
    process0 = bench_clock_ns(CLOCK_PROCESS_CPUTIME_ID);
    redis0 = redis_clocked ? bench_clock_ns(redis_clock) : 0;
    while (rc == BENCH_OK && n < run->limits.max_count && elapsed_ns < budget_ns) {
        rc = one_connection(ops, env, srv.port, &resumed, n == 0 ? out : NULL);
        if (rc == BENCH_OK && !resumed) {
            fprintf(stderr, "%s: timed connection %llu did not resume\n", ops->name,
                    (unsigned long long)n + 1);
            rc = BENCH_ERROR;
        }
        n += rc == BENCH_OK ? 1 : 0;
        elapsed_ns = bench_now_ns() - start_ns;
    }
    if (rc == BENCH_OK && n > 0) {
        int64_t client = bench_thread_cpu_ns() - client0;
        int64_t server = bench_clock_ns(CLOCK_PROCESS_CPUTIME_ID) - process0 - client;

        server += redis_clocked ? bench_clock_ns(redis_clock) - redis0 : 0;
        out->count = n;
        out->resumed = n;
        out->rate = (double)n / ((double)elapsed_ns / 1e9);
        out->server_cpu_us = bench_us_per(server, (double)n);
    } else if (rc == BENCH_OK) {
        fprintf(stderr, "%s: no handshake completed\n", ops->name);
        rc = BENCH_ERROR;
    }
    if (started && bench_server_stop(&srv) != BENCH_OK) {
        rc = BENCH_ERROR;
    }
    return rc;
}

static int raw_run(const struct bench_run *run, struct bench_sample *out)
{
    const struct redis_bench *rb = run->extra;

    return resumed_run(run, rb->raw, -1, out);
}

static int redis_run(const struct bench_run *run, struct bench_sample *out)
{
    const struct redis_bench *rb = run->extra;

    return resumed_run(run, rb->redis, rb->child.pid, out);
}

static int local_run(const struct bench_run *run, struct bench_sample *out)
{
    const struct redis_bench *rb = run->extra;

    return resumed_run(run, rb->local, -1, out);
}

/* Rows: resumed handshakes/s (the tlsock column on Redis), and server CPU per handshake. */
static const struct bench_measure redis_resumption = {
    .unit = "hs/s",
    .handshakes = true,
    .server_cpu = "  server CPU per resumed hs",
};

#define REDIS_CASE                                                                                 \
    .measure = &redis_resumption, .missing = redis_missing, .version = redis_version,              \
    .setup = redis_setup, .teardown = redis_teardown,                                              \
    .reference_label = "  vs tlsock in-process cache",                                             \
    .sides = {                                                                                     \
        {"raw", BENCH_LAYER_RAW, raw_run},                                                         \
        {"redis", BENCH_LAYER_TLSOCK, redis_run},                                                  \
        {"in-process", BENCH_LAYER_TLSOCK, local_run},                                             \
    }

#else /* !BENCH_HAVE_REDIS */

static const char *redis_missing(void)
{
    return "the bench was built without libtlsock_redis (TLSOCK_WITH_REDIS)";
}

static const struct bench_measure redis_resumption = {.unit = "hs/s", .handshakes = true};

#define REDIS_CASE .measure = &redis_resumption, .missing = redis_missing

#endif /* BENCH_HAVE_REDIS */

static const struct bench_case cases[] = {
    {.name = "resume-redis",
     .summary = "resumed TLS 1.2 handshakes by session ID, tlsock server on the Redis session "
                "store against raw OpenSSL's in-process cache (reference: tlsock in-process)",
     REDIS_CASE},
    {.name = "resume-redis-gnutls",
     .summary = "as resume-redis, tlsock on GnuTLS against raw GnuTLS with an in-process cache",
     .impl = TLSOCK_IMPL_GNUTLS,
     .rounds = BENCH_GNUTLS_ROUNDS,
     REDIS_CASE},
};

const struct bench_cases bench_resume_redis_cases = BENCH_CASES(cases);
