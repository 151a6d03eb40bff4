/*
 * Robustness of the libuv driver (tlsock/uv.h), written from the contract in the header: clients
 * that stall, reset or talk nonsense in their handshake; peers that reset, truncate or close
 * cleanly after it; fatal alerts; tlsock_uv_close() and tlsock_uv_server_close() from inside
 * every callback; writes that fail or are cancelled.
 *
 * The harness is the one of test_uv_server.c: one loop per test in the test thread, callbacks
 * that only record (and flag every breach of the header's rules they can see), waits bounded by
 * a guard timer, and a teardown that closes everything and requires uv_loop_close() to succeed.
 * Raw peers are plain sockets fed with a real ClientHello, or memory-mode tlsock clients
 * (tlsock_attach_mem) over a socket in a thread, which can stop anywhere: half a record, no
 * close_notify, a reset.
 */
#include "support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <tlsock/uv.h>

/* ---- harness: one loop per test, every connection and server tracked ------------------------ */

#define WAIT_MS         30000    /* the longest one wait may take (valgrind included) */
#define RUN_MAX_ITER    2000000L /* loop iterations per wait */
#define MAX_PEERS       96
#define MAX_SERVERS     3
#define MAX_THREADS     8
#define MAX_ACCEPT_ERRS 16
#define MAX_RAW         16
#define RX_MAX          (4u << 20)
#define WBUF_MAGIC      0x77627566u

struct env;
struct peer;
struct wbuf;

/* What a test adds to the bookkeeping callbacks; any may be NULL. */
struct hooks {
    void (*on_connect)(struct peer *p, int status);
    void (*on_read)(struct peer *p, const unsigned char *data, size_t len);
    void (*on_event)(struct peer *p, int code);
    void (*on_write)(struct peer *p, struct wbuf *w, int status);
    void (*on_close)(struct peer *p);
};

/* A tlsock_uv_server and what its callbacks saw. opts.user points here. */
struct srv {
    struct env *env;
    struct tlsock_uv_server *server; /* NULL once its close callback ran */
    uint16_t port;
    struct hooks hooks; /* given to each connection it hands over */
    bool close_called;
    int close_cbs;
    int connects;
    int accept_errors;
    int connects_at_close_cb;
    int open_peers_at_close_cb;
    void (*on_accept_error)(struct srv *s, int code);
    void (*on_server_close)(struct srv *s, struct tlsock_uv_server *server);
};

/* One struct tlsock_uv_conn and what its callbacks saw; its user pointer. */
struct peer {
    struct env *env;
    struct srv *srv;             /* server side: who handed it over; NULL for clients */
    struct tlsock_uv_conn *conn; /* NULL once on_close ran */
    struct hooks hooks;
    int id;
    int connects;
    int connect_rc;
    char connect_msg[TLSOCK__ERRMSG_SIZE];
    int events;
    int event_rc;
    char event_msg[TLSOCK__ERRMSG_SIZE];
    int closes;
    bool close_called;
    bool close_when_echoed;
    char peer_subject[256];
    unsigned char *tx;
    size_t tx_len;
    unsigned char *rx;
    size_t rx_len;
    size_t rx_cap;
    int writes;
    int writes_done;
    int write_errors;
    int64_t echoed_ms;
};

/* A write's write_arg. Heap ones are freed when they complete. */
struct wbuf {
    uint32_t magic;
    struct peer *p;
    bool heap;
    int completions;
    int status;
    bool after_close; /* completed after tlsock_uv_close() was called */
    size_t len;
    unsigned char *data;
};

struct accept_error {
    struct srv *srv;
    int code;
    char msg[TLSOCK__ERRMSG_SIZE];
    int64_t at_ms;
};

struct thread_slot {
    struct env *env;
    pthread_t tid;
    bool started;
    void (*fn)(void *arg);
    void *arg;
};

struct env {
    uv_loop_t loop;
    uv_timer_t guard;
    uv_async_t wake; /* threads wake the loop when they finish a step */
    bool guard_fired;
    struct tlsock_ctx *sctx;
    struct tlsock_ctx *cctx;
    struct tlsock_ctx *cctx2;
    struct tlsock_ctx *thread_ctx[MAX_THREADS];
    struct srv srvs[MAX_SERVERS];
    struct peer peers[MAX_PEERS];
    int npeers;
    struct peer overflow;
    struct accept_error aerr[MAX_ACCEPT_ERRS];
    int naerr;
    int stray; /* callbacks that must never run */
    int anomalies;
    char anomaly[512];
    struct thread_slot threads[MAX_THREADS];
    int nthreads;
    atomic_int threads_running;
    int raw[MAX_RAW];
    struct ts_gate gate;
    struct ts_server tsrv; /* a blocking TLS server thread, for async clients */
};

/* The environment of the running test; callbacks check the pointers they get against it. */
static struct env *cur_env;

/*
 * <tlsock.h>: "SIGPIPE never kills the process". Each test runs with SIGPIPE's default action, as
 * an application that did nothing about it, but blocked: a SIGPIPE the library lets through
 * stays pending instead of killing the whole executable, and fails the test that caused it. (A
 * library that ignores SIGPIPE, or consumes its own, leaves nothing pending.)
 */
static bool sigpipe_seen;
static struct sigaction sigpipe_saved;
static sigset_t sigmask_saved;

static void sigpipe_watch_start(void)
{
    struct sigaction sa;
    sigset_t set;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, &sigpipe_saved);
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &sigmask_saved);
    sigpipe_seen = false;
}

static bool sigpipe_raised(void)
{
    struct timespec zero = {0, 0};
    sigset_t pending;
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
        sigpipe_seen = true;
        (void)sigtimedwait(&set, NULL, &zero);
    }
    return sigpipe_seen;
}

static void sigpipe_watch_stop(void)
{
    (void)sigpipe_raised();
    pthread_sigmask(SIG_SETMASK, &sigmask_saved, NULL);
    sigaction(SIGPIPE, &sigpipe_saved, NULL);
}

__attribute__((format(printf, 2, 3))) static void anomaly(struct env *env, const char *fmt, ...)
{
    va_list ap;

    if (env->anomalies == 0) {
        va_start(ap, fmt);
        vsnprintf(env->anomaly, sizeof(env->anomaly), fmt, ap);
        va_end(ap);
    }
    env->anomalies++;
}

static void assert_no_anomaly(struct env *env)
{
    if (env->anomalies != 0) {
        fail_msg("%d contract violation(s) seen by callbacks; first: %s", env->anomalies,
                 env->anomaly);
    }
    assert_int_equal(env->stray, 0);
    if (sigpipe_raised()) {
        fail_msg("SIGPIPE raised: tlsock promises SIGPIPE never kills the process");
    }
}

static void guard_cb(uv_timer_t *timer)
{
    struct env *env = timer->data;

    env->guard_fired = true;
    uv_stop(&env->loop);
}

static void wake_cb(uv_async_t *async)
{
    (void)async; /* waking the loop is all it is for: the waits re-check their condition */
}

static void guard_start(struct env *env, int ms)
{
    env->guard_fired = false;
    uv_timer_start(&env->guard, guard_cb, (uint64_t)ms, 0);
}

static void guard_stop(struct env *env)
{
    uv_timer_stop(&env->guard);
}

/* Runs the loop until @p cond holds; fails the test after @p ms. */
#define RUN_UNTIL(env, cond, ms)                                                                   \
    do {                                                                                           \
        guard_start((env), (ms));                                                                  \
        for (long ru_i_ = 0; ru_i_ < RUN_MAX_ITER && !(cond) && !(env)->guard_fired; ru_i_++) {    \
            uv_run(&(env)->loop, UV_RUN_ONCE);                                                     \
        }                                                                                          \
        guard_stop(env);                                                                           \
        if (!(cond)) {                                                                             \
            fail_msg("not reached within %d ms: %s (first anomaly: %s)", (int)(ms), #cond,         \
                     (env)->anomaly);                                                              \
        }                                                                                          \
    } while (0)

/* Runs the loop for @p ms: only to show that something does NOT happen. */
static void run_for(struct env *env, int ms)
{
    guard_start(env, ms);
    for (long i = 0; i < RUN_MAX_ITER && !env->guard_fired; i++) {
        uv_run(&env->loop, UV_RUN_ONCE);
    }
    guard_stop(env);
}

static int env_setup(void **state)
{
    struct env *env = calloc(1, sizeof(*env));
    int rc = -1;

    if (env != NULL && uv_loop_init(&env->loop) == 0) {
        sigpipe_watch_start();
        uv_timer_init(&env->loop, &env->guard);
        env->guard.data = env;
        uv_async_init(&env->loop, &env->wake, wake_cb);
        env->wake.data = env;
        ts_gate_init(&env->gate);
        env->tsrv.raw_fd = -1;
        atomic_init(&env->threads_running, 0);
        for (int i = 0; i < MAX_RAW; i++) {
            env->raw[i] = -1;
        }
        env->overflow.env = env;
        env->overflow.connect_rc = TS_NOT_RUN;
        env->overflow.event_rc = TS_NOT_RUN;
        cur_env = env;
        *state = env;
        rc = 0;
    } else {
        free(env);
    }
    return rc;
}

/* Every connection closed and every thread finished (servers may still run). */
static bool conns_closed(struct env *env)
{
    bool done = atomic_load(&env->threads_running) == 0;

    for (int i = 0; i < env->npeers && done; i++) {
        done = env->peers[i].conn == NULL;
    }
    return done;
}

/* ... and every server closed too. */
static bool all_closed(struct env *env)
{
    bool done = conns_closed(env);

    for (int i = 0; i < MAX_SERVERS && done; i++) {
        done = env->srvs[i].server == NULL;
    }
    return done;
}

static void srv_close_cb(struct tlsock_uv_server *server);

static void walk_cb(uv_handle_t *handle, void *arg)
{
    struct env *env = arg;

    if (handle != (uv_handle_t *)&env->guard && handle != (uv_handle_t *)&env->wake) {
        print_error("  handle left on the loop: %s%s\n", uv_handle_type_name(handle->type),
                    uv_is_closing(handle) ? " (closing)" : "");
    }
}

static void close_walk_cb(uv_handle_t *handle, void *arg)
{
    (void)arg;
    if (!uv_is_closing(handle)) {
        uv_close(handle, NULL);
    }
}

/*
 * Closes what the test left open (even after a failed assertion), waits for the close callbacks
 * and the threads, then requires the loop to close: a handle the library forgot fails the test.
 */
static int env_teardown(void **state)
{
    struct env *env = *state;
    bool drained;
    int loop_rc;
    int rc = 0;

    ts_gate_open(&env->gate);
    for (int i = 0; i < MAX_RAW; i++) {
        if (env->raw[i] >= 0) {
            close(env->raw[i]);
            env->raw[i] = -1;
        }
    }
    for (int i = 0; i < env->npeers; i++) {
        struct peer *p = &env->peers[i];

        if (p->conn != NULL && !p->close_called) {
            p->close_called = true;
            tlsock_uv_close(p->conn);
        }
    }
    for (int i = 0; i < MAX_SERVERS; i++) {
        struct srv *s = &env->srvs[i];

        if (s->server != NULL && !s->close_called) {
            s->close_called = true;
            tlsock_uv_server_close(s->server, srv_close_cb);
        }
    }
    guard_start(env, WAIT_MS);
    for (long i = 0; i < RUN_MAX_ITER && !all_closed(env) && !env->guard_fired; i++) {
        uv_run(&env->loop, UV_RUN_ONCE);
    }
    guard_stop(env);
    drained = all_closed(env);
    if (!drained) {
        print_error("teardown: connections, servers or threads still open after %d ms\n", WAIT_MS);
        rc = -1;
    }
    for (int i = 0; i < env->nthreads; i++) {
        if (env->threads[i].started) {
            pthread_join(env->threads[i].tid, NULL);
        }
    }
    ts_server_stop(&env->tsrv);
    uv_close((uv_handle_t *)&env->guard, NULL);
    uv_close((uv_handle_t *)&env->wake, NULL);
    for (int i = 0; i < 1000 && uv_loop_alive(&env->loop); i++) {
        uv_run(&env->loop, UV_RUN_NOWAIT);
    }
    loop_rc = uv_loop_close(&env->loop);
    if (loop_rc != 0) {
        print_error("teardown: uv_loop_close: %s; the library left handles behind:\n",
                    uv_err_name(loop_rc));
        uv_walk(&env->loop, walk_cb, env);
        rc = -1;
    }
    if (env->anomalies != 0) {
        print_error("teardown: %d contract violation(s); first: %s\n", env->anomalies,
                    env->anomaly);
        rc = -1;
    }
    if (sigpipe_raised()) {
        print_error("teardown: SIGPIPE raised (it would have killed the process)\n");
        rc = -1;
    }
    sigpipe_watch_stop();
    for (int i = 0; i < env->npeers; i++) {
        free(env->peers[i].tx);
        free(env->peers[i].rx);
    }
    tlsock_ctx_free(env->sctx);
    tlsock_ctx_free(env->cctx);
    tlsock_ctx_free(env->cctx2);
    for (int i = 0; i < MAX_THREADS; i++) {
        tlsock_ctx_free(env->thread_ctx[i]);
    }
    ts_gate_destroy(&env->gate);
    if (drained && loop_rc == 0) {
        free(env);
    } else {
        /* Handles of the library still point into the loop: close what can be closed and leak
         * the rest rather than free memory the library may still touch. */
        uv_walk(&env->loop, close_walk_cb, NULL);
    }
    cur_env = NULL;
    *state = NULL;
    return rc;
}

static void *thread_main(void *arg)
{
    struct thread_slot *slot = arg;

    slot->fn(slot->arg);
    atomic_fetch_sub(&slot->env->threads_running, 1);
    uv_async_send(&slot->env->wake);
    return NULL;
}

static void thread_start(struct env *env, void (*fn)(void *arg), void *arg)
{
    struct thread_slot *slot;

    assert_true(env->nthreads < MAX_THREADS);
    slot = &env->threads[env->nthreads++];
    slot->env = env;
    slot->fn = fn;
    slot->arg = arg;
    atomic_fetch_add(&env->threads_running, 1);
    if (pthread_create(&slot->tid, NULL, thread_main, slot) != 0) {
        atomic_fetch_sub(&env->threads_running, 1);
        fail_msg("pthread_create failed");
    }
    slot->started = true;
}

static void raw_track(struct env *env, int fd)
{
    for (int i = 0; i < MAX_RAW; i++) {
        if (env->raw[i] < 0) {
            env->raw[i] = fd;
            return;
        }
    }
    close(fd);
    fail_msg("more than %d raw sockets", MAX_RAW);
}

/* The test closes @p fd itself from now on. */
static void raw_untrack(struct env *env, int fd)
{
    for (int i = 0; i < MAX_RAW; i++) {
        if (env->raw[i] == fd) {
            env->raw[i] = -1;
        }
    }
}

static void raw_close(struct env *env, int fd)
{
    raw_untrack(env, fd);
    close(fd);
}

/* ---- bookkeeping callbacks ------------------------------------------------------------------- */

static const char *impl_name_of(int role)
{
    return tlsock_impl_name(ts_role_impl(role));
}

static struct peer *peer_new(struct env *env)
{
    struct peer *p = NULL;

    if (env->npeers < MAX_PEERS) {
        p = &env->peers[env->npeers];
        p->env = env;
        p->id = env->npeers;
        p->connect_rc = TS_NOT_RUN;
        p->event_rc = TS_NOT_RUN;
        env->npeers++;
    } else {
        anomaly(env, "more than %d connections", MAX_PEERS);
    }
    return p;
}

static void peer_close(struct peer *p)
{
    if (p->conn != NULL && !p->close_called) {
        p->close_called = true;
        tlsock_uv_close(p->conn);
    }
}

static int peer_write_buf(struct peer *p, struct wbuf *w, const void *data, size_t len)
{
    int rc;

    w->magic = WBUF_MAGIC;
    w->p = p;
    w->data = (unsigned char *)data;
    w->len = len;
    w->status = TS_NOT_RUN;
    rc = tlsock_uv_write(p->conn, data, len, w);
    if (rc == 0) {
        p->writes++;
    }
    return rc;
}

/* Writes @p len bytes, copied when @p copy (else they must outlive the write). */
static int peer_write(struct peer *p, const void *data, size_t len, bool copy)
{
    struct wbuf *w = calloc(1, sizeof(*w) + (copy ? len : 0));
    int rc = TLSOCK_ENOMEM;

    if (w != NULL) {
        if (copy) {
            memcpy(w + 1, data, len);
            data = w + 1;
        }
        w->heap = true;
        rc = peer_write_buf(p, w, data, len);
        if (rc != 0) {
            free(w);
        }
    }
    if (rc != 0) {
        anomaly(p->env, "peer %d: tlsock_uv_write: %s", p->id, ts_rc_name(rc));
    }
    return rc;
}

static void check_ready(struct peer *p, struct tlsock_uv_conn *conn, int role)
{
    struct tlsock_conn *tls = tlsock_uv_tls(conn);
    const struct tlsock_info *info = NULL;

    if (tlsock_uv_loop(conn) != &p->env->loop) {
        anomaly(p->env, "peer %d: tlsock_uv_loop() is not the loop", p->id);
    }
    if (tls == NULL) {
        anomaly(p->env, "peer %d: tlsock_uv_tls() is NULL once ready", p->id);
    } else if (tlsock_conn_info(tls, &info) != 0) {
        anomaly(p->env, "peer %d: tlsock_conn_info failed once ready", p->id);
    } else {
        snprintf(p->peer_subject, sizeof(p->peer_subject), "%s", info->peer_subject);
        if (info->version[0] == '\0' || strcmp(info->impl, impl_name_of(role)) != 0) {
            anomaly(p->env, "peer %d: version \"%s\", implementation %s instead of %s", p->id,
                    info->version, info->impl, impl_name_of(role));
        }
    }
}

static void on_client_connect(struct tlsock_uv_conn *conn, int status)
{
    struct peer *p = tlsock_uv_user(conn);

    p->connects++;
    if (p->connects > 1) {
        anomaly(p->env, "peer %d: on_connect called %d times", p->id, p->connects);
    }
    if (p->closes > 0) {
        anomaly(p->env, "peer %d: on_connect after on_close", p->id);
    }
    if (status > 0) {
        anomaly(p->env, "peer %d: on_connect status %d is not a tlsock code", p->id, status);
    }
    p->connect_rc = status;
    if (status != 0) {
        snprintf(p->connect_msg, sizeof(p->connect_msg), "%s", tlsock_uv_errmsg(conn));
    } else {
        check_ready(p, conn, TLSOCK_CLIENT);
    }
    if (p->hooks.on_connect != NULL) {
        p->hooks.on_connect(p, status);
    }
}

static struct srv *srv_of(struct env *env, void *user)
{
    struct srv *s = NULL;

    for (int i = 0; i < MAX_SERVERS; i++) {
        if (user == &env->srvs[i]) {
            s = &env->srvs[i];
        }
    }
    return s;
}

static void on_server_connect(struct tlsock_uv_conn *conn, int status)
{
    struct env *env = cur_env;
    struct srv *s = srv_of(env, tlsock_uv_user(conn));
    struct peer *p;

    if (s == NULL) {
        anomaly(env, "a server's connection does not start with the server's user pointer");
        s = &env->srvs[0];
    }
    s->connects++;
    if (status != 0) {
        anomaly(env, "server on_connect with status %s", ts_rc_name(status));
    }
    p = peer_new(env);
    if (p == NULL) {
        p = &env->overflow;
        tlsock_uv_set_user(conn, p);
        tlsock_uv_close(conn);
        return;
    }
    p->srv = s;
    p->conn = conn;
    p->hooks = s->hooks;
    p->connects = 1;
    p->connect_rc = status;
    tlsock_uv_set_user(conn, p);
    if (tlsock_uv_user(conn) != p) {
        anomaly(env, "tlsock_uv_set_user() did not stick");
    }
    check_ready(p, conn, TLSOCK_SERVER);
    if (p->hooks.on_connect != NULL) {
        p->hooks.on_connect(p, status);
    }
}

static void on_read(struct tlsock_uv_conn *conn, const void *data, size_t len)
{
    struct peer *p = tlsock_uv_user(conn);

    if (p->closes > 0 || p->close_called) {
        anomaly(p->env, "peer %d: on_read after %s", p->id,
                p->closes > 0 ? "on_close" : "tlsock_uv_close()");
    }
    if (p->connect_rc != 0) {
        anomaly(p->env, "peer %d: on_read before the connection was ready", p->id);
    }
    if (data == NULL || len == 0) {
        anomaly(p->env, "peer %d: on_read with no data", p->id);
        return;
    }
    if (p->rx_len + len > p->rx_cap) {
        size_t cap = p->rx_cap > 0 ? p->rx_cap : 4096;
        unsigned char *rx;

        while (cap < p->rx_len + len && cap < RX_MAX) {
            cap *= 2;
        }
        rx = cap >= p->rx_len + len ? realloc(p->rx, cap) : NULL;
        if (rx == NULL) {
            anomaly(p->env, "peer %d: more than %u bytes received", p->id, RX_MAX);
            return;
        }
        p->rx = rx;
        p->rx_cap = cap;
    }
    memcpy(p->rx + p->rx_len, data, len);
    p->rx_len += len;
    if (p->hooks.on_read != NULL) {
        p->hooks.on_read(p, data, len);
    }
}

static void on_event(struct tlsock_uv_conn *conn, int code)
{
    struct peer *p = tlsock_uv_user(conn);

    p->events++;
    if (p->closes > 0) {
        anomaly(p->env, "peer %d: on_event after on_close", p->id);
    }
    if (p->connect_rc != 0) {
        anomaly(p->env, "peer %d: on_event(%s) before the connection was ready", p->id,
                ts_rc_name(code));
    }
    if (code >= 0) {
        anomaly(p->env, "peer %d: on_event with code %d", p->id, code);
    }
    if (p->events > 1 && p->event_rc != TLSOCK_ECLOSED) {
        anomaly(p->env, "peer %d: on_event(%s) after the fatal %s", p->id, ts_rc_name(code),
                ts_rc_name(p->event_rc));
    }
    if (p->events == 1) {
        p->event_rc = code;
        snprintf(p->event_msg, sizeof(p->event_msg), "%s", tlsock_uv_errmsg(conn));
    }
    if (p->hooks.on_event != NULL) {
        p->hooks.on_event(p, code);
    }
}

static void on_write(struct tlsock_uv_conn *conn, void *write_arg, int status)
{
    struct peer *p = tlsock_uv_user(conn);
    struct wbuf *w = write_arg;

    if (w == NULL || w->magic != WBUF_MAGIC || w->p != p) {
        anomaly(p->env, "peer %d: on_write with a write_arg that is not this connection's", p->id);
        return;
    }
    w->completions++;
    if (w->completions > 1) {
        anomaly(p->env, "peer %d: a write completed %d times", p->id, w->completions);
    }
    if (p->closes > 0) {
        anomaly(p->env, "peer %d: on_write after on_close", p->id);
    }
    if (status > 0) {
        anomaly(p->env, "peer %d: on_write status %d is not a tlsock code", p->id, status);
    }
    w->status = status;
    w->after_close = p->close_called;
    p->writes_done++;
    if (status != 0) {
        p->write_errors++;
    }
    if (p->hooks.on_write != NULL) {
        p->hooks.on_write(p, w, status);
    }
    if (w->heap) {
        w->magic = 0;
        free(w);
    }
}

static void on_close(struct tlsock_uv_conn *conn)
{
    struct peer *p = tlsock_uv_user(conn);

    p->closes++;
    if (p->closes > 1) {
        anomaly(p->env, "peer %d: on_close called %d times", p->id, p->closes);
    }
    if (!p->close_called && p != &p->env->overflow) {
        anomaly(p->env, "peer %d: on_close without tlsock_uv_close()", p->id);
    }
    if (p->writes_done != p->writes) {
        anomaly(p->env, "peer %d: on_close with %d of %d writes not completed", p->id,
                p->writes - p->writes_done, p->writes);
    }
    if (p->srv == NULL && p->connects == 0 && p != &p->env->overflow) {
        anomaly(p->env, "peer %d: on_close before on_connect", p->id);
    }
    if (p->hooks.on_close != NULL) {
        p->hooks.on_close(p);
    }
    p->conn = NULL;
}

static void on_accept_error(struct tlsock_uv_server *server, int code, const char *message)
{
    struct env *env = cur_env;
    struct srv *s = srv_of(env, tlsock_uv_server_user(server));

    if (s == NULL) {
        anomaly(env, "on_accept_error: the server's user pointer is not opts.user");
        return;
    }
    if (s->server != server) {
        anomaly(env, "on_accept_error for another server than the one serving");
    }
    if (code >= 0) {
        anomaly(env, "on_accept_error with code %d", code);
    }
    if (message == NULL) {
        anomaly(env, "on_accept_error with a NULL message");
    }
    s->accept_errors++;
    if (env->naerr < MAX_ACCEPT_ERRS) {
        struct accept_error *ae = &env->aerr[env->naerr++];

        ae->srv = s;
        ae->code = code;
        ae->at_ms = tlsock_now_ms();
        snprintf(ae->msg, sizeof(ae->msg), "%s", message != NULL ? message : "(null)");
    }
    if (s->on_accept_error != NULL) {
        s->on_accept_error(s, code);
    }
}

static void srv_close_cb(struct tlsock_uv_server *server)
{
    struct env *env = cur_env;
    struct srv *s = srv_of(env, tlsock_uv_server_user(server));

    if (s == NULL) {
        anomaly(env, "server close callback: the user pointer is not opts.user");
        return;
    }
    s->close_cbs++;
    if (s->close_cbs > 1) {
        anomaly(env, "server close callback called %d times", s->close_cbs);
    }
    if (!s->close_called) {
        anomaly(env, "server close callback without tlsock_uv_server_close()");
    }
    s->connects_at_close_cb = s->connects;
    for (int i = 0; i < env->npeers; i++) {
        if (env->peers[i].srv == s && env->peers[i].conn != NULL) {
            s->open_peers_at_close_cb++;
        }
    }
    if (s->on_server_close != NULL) {
        s->on_server_close(s, server);
    }
    s->server = NULL;
}

/* A callback that must never run. */
static void stray_server_close(struct tlsock_uv_server *server)
{
    (void)server;
    cur_env->stray++;
}

static struct tlsock_uv_opts base_opts(void *user)
{
    struct tlsock_uv_opts opts = TLSOCK_UV_OPTS_INIT;

    opts.tls = ts_opts();
    opts.on_read = on_read;
    opts.on_event = on_event;
    opts.on_write = on_write;
    opts.on_close = on_close;
    opts.on_accept_error = on_accept_error;
    opts.user = user;
    return opts;
}

/* ---- behaviours ------------------------------------------------------------------------------ */

static void send_tx(struct peer *p, int status)
{
    if (status == 0 && p->tx_len > 0) {
        (void)peer_write(p, p->tx, p->tx_len, false);
    }
}

static void check_echo(struct peer *p, const unsigned char *data, size_t len)
{
    (void)data;
    (void)len;
    if (p->rx_len >= p->tx_len && p->echoed_ms == 0) {
        p->echoed_ms = tlsock_now_ms();
        if (p->close_when_echoed) {
            peer_close(p);
        }
    }
}

static void close_on_failure(struct peer *p, int status)
{
    if (status != 0) {
        peer_close(p);
    }
}

static void close_on_event(struct peer *p, int code)
{
    (void)code;
    peer_close(p);
}

static void echo_back(struct peer *p, const unsigned char *data, size_t len)
{
    (void)peer_write(p, data, len, true);
}

/* Clients: send tx once ready, close when it all came back (or on any failure). */
static const struct hooks echo_client = {
    .on_connect = send_tx,
    .on_read = check_echo,
    .on_event = close_on_event,
};

/* Server connections: echo everything, close at the end of the stream or on an error. */
static const struct hooks echo_server = {
    .on_read = echo_back,
    .on_event = close_on_event,
};

static bool echoed(const struct peer *p)
{
    return p->connect_rc == 0 && p->rx_len == p->tx_len &&
           (p->tx_len == 0 || memcmp(p->rx, p->tx, p->tx_len) == 0);
}

/* ---- starting things ------------------------------------------------------------------------- */

/* Serves @p ctx on 127.0.0.1 port @p port as env->srvs[@p index]; returns the call's result. */
static int serve(struct env *env, int index, struct tlsock_ctx *ctx, uint16_t port,
                 const struct hooks *hooks, const struct tlsock_uv_opts *extra)
{
    struct srv *s = &env->srvs[index];
    struct tlsock_uv_opts opts = extra != NULL ? *extra : base_opts(s);
    struct tlsock_uv_server *server = NULL;
    int rc;

    memset(s, 0, sizeof(*s));
    s->env = env;
    s->hooks = hooks != NULL ? *hooks : echo_server;
    opts.on_connect = on_server_connect;
    opts.on_read = on_read;
    opts.on_event = on_event;
    opts.on_write = on_write;
    opts.on_close = on_close;
    opts.on_accept_error = on_accept_error;
    opts.user = s;
    rc = tlsock_uv_serve(&env->loop, ctx, "127.0.0.1", port, 0, &opts, &server);
    if (rc == 0) {
        s->server = server;
        s->port = tlsock_uv_server_port(server);
    }
    return rc;
}

static struct srv *serve_ok(struct env *env, int index, struct tlsock_ctx *ctx,
                            const struct hooks *hooks, const struct tlsock_uv_opts *extra)
{
    struct srv *s = &env->srvs[index];

    TS_ASSERT_RC(serve(env, index, ctx, 0, hooks, extra), 0);
    assert_non_null(s->server);
    assert_int_not_equal(s->port, 0);
    assert_ptr_equal(tlsock_uv_server_user(s->server), s);
    return s;
}

static void server_close(struct srv *s)
{
    if (s->server != NULL && !s->close_called) {
        s->close_called = true;
        tlsock_uv_server_close(s->server, srv_close_cb);
    }
}

/* An async client of 127.0.0.1:@p port sending @p tx_len bytes of pattern @p seed. */
static struct peer *client_start(struct env *env, struct tlsock_ctx *ctx, uint16_t port,
                                 const struct hooks *hooks, size_t tx_len, unsigned seed)
{
    struct peer *p = peer_new(env);
    struct tlsock_uv_opts opts;

    assert_non_null(p);
    p->hooks = *hooks;
    if (tx_len > 0) {
        p->tx = malloc(tx_len);
        assert_non_null(p->tx);
        ts_fill(p->tx, tx_len, seed);
        p->tx_len = tx_len;
    }
    opts = base_opts(p);
    opts.on_connect = on_client_connect;
    TS_ASSERT_RC(tlsock_uv_connect(&env->loop, ctx, "127.0.0.1", port, &opts, &p->conn), 0);
    assert_non_null(p->conn);
    return p;
}

static bool server_peers_closed(struct env *env)
{
    bool done = true;

    for (int i = 0; i < env->npeers && done; i++) {
        done = env->peers[i].srv == NULL || env->peers[i].conn == NULL;
    }
    return done;
}

/* The server still serves: a fresh client's data comes back and both ends close cleanly. */
static void assert_serves_good_client(struct env *env, struct srv *s, struct tlsock_ctx *ctx)
{
    int connects = s->connects;
    struct peer *p = client_start(env, ctx, s->port, &echo_client, 3000, 77);

    p->close_when_echoed = true;
    RUN_UNTIL(env, p->conn == NULL && server_peers_closed(env), WAIT_MS);
    TS_ASSERT_RC_MSG(p->connect_rc, 0, p->connect_msg);
    assert_true(echoed(p));
    assert_int_equal(s->connects, connects + 1);
    TS_ASSERT_RC(env->peers[env->npeers - 1].event_rc, TLSOCK_ECLOSED);
}

/* Watches a raw socket from the loop until the server's side of it is gone. */
struct raw_watch {
    uv_poll_t poll;
    int fd;
    bool ended;
    bool closed;
    size_t bytes; /* what came before the end (an alert, say) */
};

static void raw_watch_cb(uv_poll_t *handle, int status, int events)
{
    struct raw_watch *w = handle->data;
    char buf[4096];
    ssize_t n;

    (void)events;
    n = recv(w->fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) {
        w->bytes += (size_t)n;
    }
    if (status < 0 || n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        w->ended = true;
        uv_poll_stop(handle);
    }
}

static void raw_watch_closed(uv_handle_t *handle)
{
    struct raw_watch *w = handle->data;

    w->closed = true;
}

/* A blocking connect to 127.0.0.1:@p port; 0 or the errno. */
static int raw_connect_errno(uint16_t port, int *fd_out)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int err = 0;

    *fd_out = -1;
    if (fd < 0) {
        return errno;
    }
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        err = errno;
        close(fd);
    } else {
        *fd_out = fd;
    }
    return err;
}

/* ---- certificates ---------------------------------------------------------------------------- */

static void make_contexts(struct env *env)
{
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
}

/* ---- raw peers ------------------------------------------------------------------------------- */

static ssize_t send_all(int fd, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    size_t done = 0;

    for (int i = 0; i < 10000 && done < len; i++) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        ssize_t n;

        if (poll(&pfd, 1, TS_IO_TIMEOUT_MS) != 1) {
            return TLSOCK_ETIMEDOUT;
        }
        n = send(fd, p + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            return TLSOCK_ESYS;
        }
        if (n > 0) {
            done += (size_t)n;
        }
    }
    return done == len ? (ssize_t)len : TLSOCK_ETIMEDOUT;
}

/* Closes @p fd with a TCP reset (SO_LINGER 0). */
static void reset_fd(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

/* A real ClientHello, from a memory-mode client of env->cctx. */
static size_t make_client_hello(struct env *env, unsigned char *buf, size_t cap)
{
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *mem = NULL;
    size_t len = 0;
    int rc;

    opts.servername = "localhost";
    TS_ASSERT_RC(tlsock_attach_mem(env->cctx, &opts, &mem), 0);
    rc = tlsock_handshake(mem);
    if (rc == TLSOCK_EWANT_READ) {
        rc = tlsock_drain(mem, buf, cap, &len);
    }
    tlsock_close(mem);
    TS_ASSERT_RC(rc, 0);
    /* A record header (handshake, 22) and more than a header's worth of message. */
    assert_true(len > 64);
    assert_int_equal(buf[0], 22);
    return len;
}

/* Runs the loop until @p fd received at least @p min_bytes, or (min_bytes 0) reached its end. */
static void raw_watch_run(struct env *env, int fd, size_t min_bytes)
{
    struct raw_watch w = {.fd = fd};
    int64_t start = tlsock_now_ms();
    bool done = false;

    assert_int_equal(uv_poll_init_socket(&env->loop, &w.poll, fd), 0);
    w.poll.data = &w;
    assert_int_equal(uv_poll_start(&w.poll, UV_READABLE | UV_DISCONNECT, raw_watch_cb), 0);
    guard_start(env, TS_IO_TIMEOUT_MS);
    for (long i = 0; i < RUN_MAX_ITER && !done && !env->guard_fired; i++) {
        uv_run(&env->loop, UV_RUN_ONCE);
        done = min_bytes > 0 ? w.bytes >= min_bytes || w.ended : w.ended;
    }
    guard_stop(env);
    uv_close((uv_handle_t *)&w.poll, raw_watch_closed);
    /* A closing handle's callback runs in the next iteration; the stack frame must outlive it. */
    for (int i = 0; i < 100 && !w.closed; i++) {
        uv_run(&env->loop, UV_RUN_NOWAIT);
    }
    if (min_bytes > 0 && w.bytes < min_bytes) {
        fail_msg("%zu bytes from the server in %lld ms, %zu expected%s", w.bytes,
                 (long long)(tlsock_now_ms() - start), min_bytes, w.ended ? " (it closed)" : "");
    }
    if (min_bytes == 0 && !w.ended) {
        fail_msg("the server kept the failed client's socket open for %lld ms",
                 (long long)(tlsock_now_ms() - start));
    }
}

/* ---- a memory-mode TLS client over a blocking socket, for threads ---------------------------- */

struct memcli {
    int fd;
    struct tlsock_conn *tls;
};

static int mc_connect(struct memcli *m, struct tlsock_ctx *ctx, uint16_t port, int rcvbuf)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    struct tlsock_opts opts = ts_opts();

    m->tls = NULL;
    m->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (m->fd < 0) {
        return TS_ESETUP;
    }
    if (rcvbuf > 0) {
        /* Before connect(), so that the window the peer sees stays small. */
        (void)setsockopt(m->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    }
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(m->fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        return TS_ESETUP;
    }
    opts.servername = "localhost";
    return tlsock_attach_mem(ctx, &opts, &m->tls);
}

/* Sends everything TLS has to send. */
static int mc_flush(struct memcli *m)
{
    unsigned char buf[16384];
    int rc = 0;

    for (int i = 0; i < 1000 && rc == 0; i++) {
        size_t n = 0;

        rc = tlsock_drain(m->tls, buf, sizeof(buf), &n);
        if (rc == 0 && n == 0) {
            break;
        }
        if (rc == 0 && send_all(m->fd, buf, n) < 0) {
            rc = TLSOCK_ESYS;
        }
    }
    return rc;
}

/* Gives TLS what the socket has (waiting for it, bounded). */
static int mc_feed(struct memcli *m)
{
    struct pollfd pfd = {.fd = m->fd, .events = POLLIN};
    unsigned char buf[16384];
    ssize_t n;

    if (poll(&pfd, 1, TS_IO_TIMEOUT_MS) != 1) {
        return TLSOCK_ETIMEDOUT;
    }
    n = recv(m->fd, buf, sizeof(buf), 0);
    if (n < 0) {
        return TLSOCK_ESYS;
    }
    return n == 0 ? tlsock_feed_eof(m->tls) : tlsock_feed(m->tls, buf, (size_t)n);
}

static int mc_handshake(struct memcli *m)
{
    int rc = TLSOCK_ETIMEDOUT;

    for (int i = 0; i < 1000; i++) {
        int frc;

        rc = tlsock_handshake(m->tls);
        frc = mc_flush(m);
        if (rc == TLSOCK_EWANT_READ && frc == 0) {
            rc = mc_feed(m);
            if (rc == 0) {
                continue;
            }
        }
        rc = rc != 0 ? rc : frc;
        break;
    }
    return rc;
}

/* Reads exactly @p len bytes; or, with @p len 0, one read that must fail: returns its code. */
static int mc_read(struct memcli *m, void *buf, size_t len)
{
    unsigned char byte;
    size_t got = 0;
    int rc = 0;

    for (int i = 0; i < 1000 && (got < len || len == 0); i++) {
        size_t n = 0;

        rc = len == 0 ? tlsock_read(m->tls, &byte, 1, &n)
                      : tlsock_read(m->tls, (unsigned char *)buf + got, len - got, &n);
        if (rc == TLSOCK_EWANT_READ) {
            rc = mc_flush(m);
            if (rc == 0) {
                rc = mc_feed(m);
            }
            if (rc == 0) {
                continue;
            }
        }
        if (rc != 0) {
            break;
        }
        if (len == 0) {
            rc = TS_EMISMATCH; /* data where the end was expected */
            break;
        }
        got += n;
    }
    return rc;
}

/* Waits until the server closes the connection (its data discarded). */
static int mc_wait_end(struct memcli *m)
{
    char buf[4096];

    for (int i = 0; i < 256; i++) {
        struct pollfd pfd = {.fd = m->fd, .events = POLLIN};
        ssize_t n;

        if (poll(&pfd, 1, TS_IO_TIMEOUT_MS) != 1) {
            return TLSOCK_ETIMEDOUT;
        }
        n = recv(m->fd, buf, sizeof(buf), 0);
        if (n <= 0) {
            return 0;
        }
    }
    return TS_EMISMATCH;
}

static void mc_free(struct memcli *m)
{
    /* Memory mode: whatever tlsock_close() would say stays in its buffer. */
    tlsock_close(m->tls);
    m->tls = NULL;
    if (m->fd >= 0) {
        close(m->fd);
        m->fd = -1;
    }
}

/* ---- clients that stall in their handshake --------------------------------------------------- */

#define SLOW_CLIENTS    4
#define SLOW_GOOD       4
#define SLOW_TIMEOUT_MS 3000

/*
 * Clients send half a ClientHello and stall. Each is dropped by the handshake timeout
 * (EHANDSHAKE_TIMEOUT, not before its time, its socket closed), while normal clients that came
 * after them are served before that: the server never waits on a slow client.
 */
static void test_slow_handshake_clients(void **state)
{
    struct env *env = *state;
    struct tlsock_uv_opts opts = base_opts(NULL);
    struct peer *good[SLOW_GOOD];
    unsigned char hello[4096];
    int fds[SLOW_CLIENTS];
    struct srv *s;
    size_t hello_len;
    int64_t start;

    make_contexts(env);
    opts.tls.handshake_timeout_ms = SLOW_TIMEOUT_MS;
    s = serve_ok(env, 0, env->sctx, &echo_server, &opts);
    hello_len = make_client_hello(env, hello, sizeof(hello));

    start = tlsock_now_ms();
    for (int i = 0; i < SLOW_CLIENTS; i++) {
        assert_int_equal(ts_raw_connect("127.0.0.1", s->port, 0, &fds[i]), 0);
        raw_track(env, fds[i]);
        assert_int_equal(send_all(fds[i], hello, hello_len / 2), (ssize_t)(hello_len / 2));
    }
    for (int i = 0; i < SLOW_GOOD; i++) {
        good[i] = client_start(env, env->cctx, s->port, &echo_client, 20000 + (size_t)i * 1000,
                               10 + (unsigned)i);
        good[i]->close_when_echoed = true;
    }
    RUN_UNTIL(env, conns_closed(env) || env->naerr > 0, WAIT_MS);
    if (env->naerr > 0) {
        fail_msg("a slow client was dropped (%s) before the normal clients were served",
                 ts_rc_name(env->aerr[0].code));
    }
    for (int i = 0; i < SLOW_GOOD; i++) {
        TS_ASSERT_RC_MSG(good[i]->connect_rc, 0, good[i]->connect_msg);
        assert_true(echoed(good[i]));
    }

    RUN_UNTIL(env, env->naerr == SLOW_CLIENTS, SLOW_TIMEOUT_MS + WAIT_MS);
    for (int i = 0; i < SLOW_CLIENTS; i++) {
        TS_ASSERT_RC_MSG(env->aerr[i].code, TLSOCK_EHANDSHAKE_TIMEOUT, env->aerr[i].msg);
        if (env->aerr[i].at_ms - start < SLOW_TIMEOUT_MS - 5) {
            fail_msg("a slow client was dropped after %lld ms, before its %d ms timeout",
                     (long long)(env->aerr[i].at_ms - start), SLOW_TIMEOUT_MS);
        }
    }
    for (int i = 0; i < SLOW_CLIENTS; i++) {
        raw_watch_run(env, fds[i], 0);
        raw_close(env, fds[i]);
    }
    assert_int_equal(s->connects, SLOW_GOOD);
    RUN_UNTIL(env, server_peers_closed(env), WAIT_MS);
    run_for(env, 50);
    assert_int_equal(env->naerr, SLOW_CLIENTS);
    assert_no_anomaly(env);
}

/* ---- the client goes away in the middle of its handshake ------------------------------------- */

enum hs_end {
    HS_HALF_RESET,   /* half a ClientHello, then a reset */
    HS_FLIGHT_RESET, /* the whole ClientHello, the server's answer read, then a reset */
    HS_HALF_FIN,     /* half a ClientHello, then a FIN */
};

struct hs_case {
    const char *what;
    enum hs_end end;
    int code;
};

static const struct hs_case hs_cases[] = {
    {.what = "half a ClientHello, then a reset", .end = HS_HALF_RESET, .code = TLSOCK_ESYS},
    {.what = "the server's first flight received, then a reset",
     .end = HS_FLIGHT_RESET,
     .code = TLSOCK_ESYS},
    {.what = "half a ClientHello, then a FIN", .end = HS_HALF_FIN, .code = TLSOCK_ETRUNCATED},
};

/*
 * A client that resets (or ends) its connection mid-handshake goes to on_accept_error with the
 * transport's error (ESYS for a reset, ETRUNCATED for an end without close_notify), never to
 * on_connect, and the server goes on. ASan and valgrind check that nothing is leaked or touched
 * after it is freed.
 */
static void test_reset_mid_handshake(void **state)
{
    for (size_t i = 0; i < sizeof(hs_cases) / sizeof(hs_cases[0]); i++) {
        const struct hs_case *c = &hs_cases[i];
        unsigned char hello[4096];
        size_t hello_len;
        struct env *env;
        struct srv *s;
        int fd = -1;

        print_message("%s\n", c->what);
        if (i > 0) {
            assert_int_equal(env_teardown(state), 0);
            assert_int_equal(env_setup(state), 0);
        }
        env = *state;
        make_contexts(env);
        s = serve_ok(env, 0, env->sctx, &echo_server, NULL);
        hello_len = make_client_hello(env, hello, sizeof(hello));
        assert_int_equal(ts_raw_connect("127.0.0.1", s->port, 0, &fd), 0);
        raw_track(env, fd);
        if (c->end == HS_FLIGHT_RESET) {
            assert_int_equal(send_all(fd, hello, hello_len), (ssize_t)hello_len);
            /* The ServerHello is there: the server is waiting for our Finished. */
            raw_watch_run(env, fd, 5);
        } else {
            assert_int_equal(send_all(fd, hello, hello_len / 2), (ssize_t)(hello_len / 2));
            /* The accept queue is FIFO: once a later client is served, this one is accepted
             * and its half ClientHello is the server's to read. */
            assert_serves_good_client(env, s, env->cctx);
        }
        if (c->end == HS_HALF_FIN) {
            assert_int_equal(shutdown(fd, SHUT_WR), 0);
        } else {
            raw_untrack(env, fd);
            reset_fd(fd);
        }
        RUN_UNTIL(env, env->naerr == 1, WAIT_MS);
        TS_ASSERT_RC_MSG(env->aerr[0].code, c->code, env->aerr[0].msg);
        assert_true(strlen(env->aerr[0].msg) > 0);
        if (c->end == HS_HALF_FIN) {
            raw_watch_run(env, fd, 0);
            raw_close(env, fd);
        }
        assert_serves_good_client(env, s, env->cctx);
        assert_int_equal(s->connects, c->end == HS_FLIGHT_RESET ? 1 : 2);
        assert_int_equal(env->naerr, 1);
        assert_no_anomaly(env);
    }
}

/* ---- the peer ends after the handshake ------------------------------------------------------- */

enum script {
    SC_PARTIAL_RESET, /* the first 10 bytes of a record, then a reset */
    SC_PARTIAL_FIN,   /* the first 10 bytes of a record, then a FIN */
    SC_RECORD_FIN,    /* "hello", then a FIN without close_notify */
    SC_CLOSE_NOTIFY,  /* "hello" and close_notify; then reads the server's "bye" and its end */
    SC_NO_READ_RESET, /* reads nothing; a reset when the test opens the gate */
};

struct script_peer {
    struct env *env;
    struct tlsock_ctx *ctx;
    uint16_t port;
    enum script script;
    int rcvbuf;
    atomic_bool ready; /* handshake done */
    int rc;
    const char *step;
    char bye[4];
    int final_rc;
    char msg[TLSOCK__ERRMSG_SIZE];
};

static void script_main(void *arg)
{
    static const unsigned char payload[100] = "a record that will never be whole";
    struct script_peer *sp = arg;
    struct memcli m = {.fd = -1};
    unsigned char ready[5];
    unsigned char record[512];
    size_t record_len = 0;

    sp->final_rc = TS_NOT_RUN;
    sp->step = "connect";
    sp->rc = mc_connect(&m, sp->ctx, sp->port, sp->rcvbuf);
    if (sp->rc == 0) {
        sp->step = "handshake";
        sp->rc = mc_handshake(&m);
    }
    atomic_store(&sp->ready, true);
    uv_async_send(&sp->env->wake);
    if (sp->rc == 0 && sp->script != SC_NO_READ_RESET) {
        /* The server's "ready" proves it handed the connection over (and wrote its session
         * tickets) before anything below happens. */
        sp->step = "read ready";
        sp->rc = mc_read(&m, ready, sizeof(ready));
        if (sp->rc == 0 && memcmp(ready, "ready", 5) != 0) {
            sp->rc = TS_EMISMATCH;
        }
    }
    if (sp->rc != 0) {
        goto out;
    }
    switch (sp->script) {
    case SC_PARTIAL_RESET:
    case SC_PARTIAL_FIN:
        sp->step = "partial record";
        sp->rc = tlsock_write(m.tls, payload, sizeof(payload));
        if (sp->rc == 0) {
            sp->rc = tlsock_drain(m.tls, record, sizeof(record), &record_len);
        }
        if (sp->rc == 0 && (record_len < 100 || send_all(m.fd, record, 10) != 10)) {
            sp->rc = TS_ESETUP;
        }
        if (sp->rc == 0 && sp->script == SC_PARTIAL_RESET) {
            reset_fd(m.fd);
            m.fd = -1;
        } else if (sp->rc == 0) {
            sp->rc = shutdown(m.fd, SHUT_WR) == 0 ? mc_wait_end(&m) : TS_ESETUP;
        }
        break;
    case SC_RECORD_FIN:
        sp->step = "record and FIN";
        sp->rc = tlsock_write(m.tls, "hello", 5);
        if (sp->rc == 0) {
            sp->rc = mc_flush(&m);
        }
        if (sp->rc == 0) {
            sp->rc = shutdown(m.fd, SHUT_WR) == 0 ? mc_wait_end(&m) : TS_ESETUP;
        }
        break;
    case SC_CLOSE_NOTIFY:
        sp->step = "record and close_notify";
        sp->rc = tlsock_write(m.tls, "hello", 5);
        if (sp->rc == 0) {
            sp->rc = tlsock_shutdown(m.tls);
        }
        if (sp->rc == 0) {
            sp->rc = mc_flush(&m);
        }
        if (sp->rc == 0) {
            /* Writing may go on after our close_notify: the server answers, then ends. */
            sp->step = "read bye";
            sp->rc = mc_read(&m, sp->bye, 3);
        }
        if (sp->rc == 0) {
            sp->step = "read the end";
            sp->final_rc = mc_read(&m, NULL, 0);
        }
        break;
    case SC_NO_READ_RESET:
        sp->step = "wait for the gate";
        if (!ts_gate_wait(&sp->env->gate, WAIT_MS)) {
            sp->rc = TLSOCK_ETIMEDOUT;
        }
        reset_fd(m.fd);
        m.fd = -1;
        break;
    }
out:
    if (sp->rc != 0 && m.tls != NULL) {
        snprintf(sp->msg, sizeof(sp->msg), "%s", tlsock_conn_errmsg(m.tls));
    }
    mc_free(&m);
}

static void script_start(struct env *env, struct script_peer *sp, struct tlsock_ctx *ctx,
                         uint16_t port, enum script script)
{
    memset(sp, 0, sizeof(*sp));
    sp->env = env;
    sp->ctx = ctx;
    sp->port = port;
    sp->script = script;
    sp->rc = TS_NOT_RUN;
    sp->rcvbuf = script == SC_NO_READ_RESET ? 4096 : 0;
    atomic_init(&sp->ready, false);
    thread_start(env, script_main, sp);
}

/* What a server connection did after its end-of-stream event. */
static struct {
    int write_rc; /* tlsock_uv_write() on the dead connection */
    struct wbuf w;
} after_event;

static void say_ready(struct peer *p, int status)
{
    if (status == 0) {
        (void)peer_write(p, "ready", 5, false);
    }
}

/* ECLOSED: answer and close (the close flushes it). Else: the connection is dead; a write
 * must fail at once and call nothing back. */
static void answer_or_close(struct peer *p, int code)
{
    if (code == TLSOCK_ECLOSED) {
        (void)peer_write(p, "bye", 3, false);
    } else {
        after_event.write_rc = peer_write_buf(p, &after_event.w, "late", 4);
    }
    peer_close(p);
}

static const struct hooks script_server = {
    .on_connect = say_ready,
    .on_event = answer_or_close,
};

struct end_case {
    const char *what;
    enum script script;
    int code;
    int alt_code;     /* also accepted (0: none) */
    const char *data; /* what the server reads first */
};

static const struct end_case end_cases[] = {
    /* libuv may report a reset that follows unread data as an end of stream (POLLHUP after a
     * partial read): the driver looks at the socket then, and still says ESYS. */
    {.what = "a partial record, then a reset", .script = SC_PARTIAL_RESET, .code = TLSOCK_ESYS},
    {.what = "a partial record, then a FIN", .script = SC_PARTIAL_FIN, .code = TLSOCK_ETRUNCATED},
    {.what = "a record, then a FIN without close_notify",
     .script = SC_RECORD_FIN,
     .code = TLSOCK_ETRUNCATED,
     .data = "hello"},
    {.what = "a record, then close_notify",
     .script = SC_CLOSE_NOTIFY,
     .code = TLSOCK_ECLOSED,
     .data = "hello"},
};

/*
 * After the handshake the peer ends in every way it can: the server's connection gets one event
 * with the right code (ESYS for a reset, ETRUNCATED for an end without close_notify, also in the
 * middle of a record, ECLOSED for close_notify), then reads nothing more. After ECLOSED it can
 * still write; after the others a write fails (EINVAL) without a callback.
 */
static void test_peer_end_after_handshake(void **state)
{
    for (size_t i = 0; i < sizeof(end_cases) / sizeof(end_cases[0]); i++) {
        const struct end_case *c = &end_cases[i];
        struct script_peer sp;
        struct env *env;
        struct peer *p = NULL;
        struct srv *s;

        print_message("%s\n", c->what);
        if (i > 0) {
            assert_int_equal(env_teardown(state), 0);
            assert_int_equal(env_setup(state), 0);
        }
        env = *state;
        memset(&after_event, 0, sizeof(after_event));
        after_event.write_rc = TS_NOT_RUN;
        make_contexts(env);
        s = serve_ok(env, 0, env->sctx, &script_server, NULL);
        script_start(env, &sp, env->cctx, s->port, c->script);
        RUN_UNTIL(env, s->connects == 1 && conns_closed(env), WAIT_MS);
        if (sp.rc != 0) {
            print_error("peer failed at %s\n", sp.step);
        }
        TS_ASSERT_RC_MSG(sp.rc, 0, sp.msg);
        for (int k = 0; k < env->npeers; k++) {
            if (env->peers[k].srv == s) {
                p = &env->peers[k];
            }
        }
        assert_non_null(p);
        if (c->alt_code != 0 && p->event_rc == c->alt_code) {
            print_message("  %s (%s)\n", ts_rc_name(p->event_rc), p->event_msg);
        } else {
            TS_ASSERT_RC_MSG(p->event_rc, c->code, p->event_msg);
        }
        assert_int_equal(p->events, 1);
        if (c->code != TLSOCK_ECLOSED) {
            assert_true(strlen(p->event_msg) > 0);
        }
        assert_int_equal(p->rx_len, c->data != NULL ? strlen(c->data) : 0);
        if (c->data != NULL) {
            assert_memory_equal(p->rx, c->data, strlen(c->data));
        }
        if (c->code == TLSOCK_ECLOSED) {
            assert_memory_equal(sp.bye, "bye", 3);
            TS_ASSERT_RC(sp.final_rc, TLSOCK_ECLOSED);
            assert_int_equal(p->write_errors, 0);
        } else {
            TS_ASSERT_RC(after_event.write_rc, TLSOCK_EINVAL);
            assert_int_equal(after_event.w.completions, 0);
        }
        assert_int_equal(env->naerr, 0);
        assert_no_anomaly(env);
    }
}

/* ---- the client's view of a server that ends ------------------------------------------------- */

struct ending_server {
    struct tlsock_ctx *ctx;
    bool close_notify;
    int rc;
    char reply[6];
    int final_rc;
    char msg[TLSOCK__ERRMSG_SIZE];
};

/* A blocking server on a raw socket: "data", then close_notify or a bare FIN. */
static int serve_data_then_end(int fd, void *arg)
{
    struct ending_server *es = arg;
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    unsigned char byte;
    size_t n = 0;

    es->final_rc = TS_NOT_RUN;
    es->rc = tlsock_attach_fd(es->ctx, fd, &opts, &conn);
    if (es->rc == 0) {
        es->rc = tlsock_handshake(conn);
    }
    if (es->rc == 0) {
        es->rc = tlsock_write(conn, "data", 4);
    }
    if (es->rc == 0 && es->close_notify) {
        es->rc = tlsock_shutdown(conn);
        if (es->rc == 0) {
            es->rc = ts_read_full(conn, es->reply, 5);
        }
    } else if (es->rc == 0) {
        es->rc = shutdown(fd, SHUT_WR) == 0 ? 0 : TS_ESETUP;
    }
    if (es->rc == 0) {
        es->final_rc = tlsock_read(conn, &byte, 1, &n);
    }
    if (es->rc != 0 && conn != NULL) {
        snprintf(es->msg, sizeof(es->msg), "%s", tlsock_conn_errmsg(conn));
    }
    tlsock_close(conn);
    return es->rc;
}

static struct wbuf client_after_event;
static int client_after_event_rc;

static void reply_or_close(struct peer *p, int code)
{
    if (code == TLSOCK_ECLOSED) {
        /* Nothing more will be read, but writing may go on. */
        client_after_event_rc = peer_write_buf(p, &client_after_event, "reply", 5);
    } else {
        client_after_event_rc = peer_write_buf(p, &client_after_event, "reply", 5);
        peer_close(p);
    }
}

static void close_when_written(struct peer *p, struct wbuf *w, int status)
{
    (void)w;
    (void)status;
    peer_close(p);
}

static const struct hooks ending_client = {
    .on_event = reply_or_close,
    .on_write = close_when_written,
};

/* An async client reads the data, then ECLOSED (and may still answer) or ETRUNCATED (dead: a
 * write fails without a callback). */
static void test_client_sees_server_end(void **state)
{
    for (int i = 0; i < 2; i++) {
        bool close_notify = i == 1;
        struct ending_server es = {.close_notify = close_notify, .rc = TS_NOT_RUN};
        struct env *env;
        struct peer *p;

        print_message("%s\n", close_notify ? "close_notify" : "a FIN without close_notify");
        if (i > 0) {
            assert_int_equal(env_teardown(state), 0);
            assert_int_equal(env_setup(state), 0);
        }
        env = *state;
        memset(&client_after_event, 0, sizeof(client_after_event));
        client_after_event_rc = TS_NOT_RUN;
        make_contexts(env);
        es.ctx = env->sctx;
        TS_ASSERT_RC(ts_server_start_raw(&env->tsrv, NULL, 0, serve_data_then_end, &es), 0);
        p = client_start(env, env->cctx, env->tsrv.port, &ending_client, 0, 0);
        RUN_UNTIL(env, p->conn == NULL, WAIT_MS);
        ts_server_stop(&env->tsrv);
        TS_ASSERT_RC_MSG(p->connect_rc, 0, p->connect_msg);
        assert_int_equal(p->rx_len, 4);
        assert_memory_equal(p->rx, "data", 4);
        assert_int_equal(p->events, 1);
        TS_ASSERT_RC_MSG(es.rc, 0, es.msg);
        if (close_notify) {
            TS_ASSERT_RC_MSG(p->event_rc, TLSOCK_ECLOSED, p->event_msg);
            TS_ASSERT_RC(client_after_event_rc, 0);
            assert_int_equal(client_after_event.completions, 1);
            TS_ASSERT_RC(client_after_event.status, 0);
            assert_memory_equal(es.reply, "reply", 5);
            /* The client's close sent close_notify. */
            TS_ASSERT_RC(es.final_rc, TLSOCK_ECLOSED);
        } else {
            TS_ASSERT_RC_MSG(p->event_rc, TLSOCK_ETRUNCATED, p->event_msg);
            TS_ASSERT_RC(client_after_event_rc, TLSOCK_EINVAL);
            assert_int_equal(client_after_event.completions, 0);
            /* A dead session does not end cleanly on the other side either. */
            assert_true(es.final_rc < 0);
            assert_int_not_equal(es.final_rc, TLSOCK_ECLOSED);
        }
        assert_no_anomaly(env);
    }
}

/* ---- a fatal alert from the server ----------------------------------------------------------- */

static struct wbuf alert_write;
static int alert_write_rc;

static void dead_write_then_close(struct peer *p, int code)
{
    (void)code;
    alert_write_rc = peer_write_buf(p, &alert_write, "x", 1);
    peer_close(p);
}

static const struct hooks alert_client = {
    .on_connect = close_on_failure,
    .on_event = dead_write_then_close,
};

struct alert_case {
    const char *what;
    const char *protocols;
    int connect_rc;
    int event_rc;
    const char *message;
};

static const struct alert_case alert_cases[] = {
    /* TLS 1.3: the client finishes first; the alert ends the stream (RFC 8446 4.4.2.4). */
    {.what = "TLS 1.3: an event after on_connect",
     .event_rc = TLSOCK_EPROTO,
     .message = "certificate_required"},
    {.what = "TLS 1.2: the handshake fails",
     .protocols = "1.2-1.2",
     .connect_rc = TLSOCK_EPROTO,
     .event_rc = TS_NOT_RUN,
     .message = "alert"},
};

/*
 * The server requires a client certificate the async client does not have. The client gets
 * EPROTO naming the alert (in on_connect with TLS 1.2, as an event after it with TLS 1.3), a
 * write on the dead connection fails without a callback, and it closes cleanly; the server
 * reports EVERIFY to on_accept_error.
 */
static void test_fatal_alert(void **state)
{
    for (size_t i = 0; i < sizeof(alert_cases) / sizeof(alert_cases[0]); i++) {
        const struct alert_case *c = &alert_cases[i];
        struct env *env;
        struct peer *p;
        struct srv *s;

        print_message("%s\n", c->what);
        if (i > 0) {
            assert_int_equal(env_teardown(state), 0);
            assert_int_equal(env_setup(state), 0);
        }
        env = *state;
        memset(&alert_write, 0, sizeof(alert_write));
        alert_write_rc = TS_NOT_RUN;
        make_contexts(env);
        TS_ASSERT_RC(tlsock_ctx_set_ca_mem(env->sctx, ts_pki.ca.cert, strlen(ts_pki.ca.cert)), 0);
        TS_ASSERT_RC(tlsock_ctx_set_verify(env->sctx, TLSOCK_VERIFY_REQUIRED), 0);
        if (c->protocols != NULL) {
            TS_ASSERT_RC(tlsock_ctx_set_protocols(env->cctx, c->protocols), 0);
        }
        s = serve_ok(env, 0, env->sctx, &echo_server, NULL);
        p = client_start(env, env->cctx, s->port, &alert_client, 0, 0);
        RUN_UNTIL(env, p->conn == NULL && env->naerr == 1, WAIT_MS);
        TS_ASSERT_RC_MSG(p->connect_rc, c->connect_rc, p->connect_msg);
        TS_ASSERT_RC_MSG(p->event_rc, c->event_rc, p->event_msg);
        TS_ASSERT_CONTAINS(c->connect_rc != 0 ? p->connect_msg : p->event_msg, c->message);
        if (c->event_rc != TS_NOT_RUN) {
            assert_int_equal(p->events, 1);
            TS_ASSERT_RC(alert_write_rc, TLSOCK_EINVAL);
            assert_int_equal(alert_write.completions, 0);
        }
        assert_int_equal(p->closes, 1);
        TS_ASSERT_RC_MSG(env->aerr[0].code, TLSOCK_EVERIFY, env->aerr[0].msg);
        TS_ASSERT_CONTAINS(env->aerr[0].msg, "no certificate");
        assert_int_equal(s->connects, 0);
        run_for(env, 50);
        assert_no_anomaly(env);
    }
}

/* ---- tlsock_uv_close() from inside every callback -------------------------------------------- */

static void close_in_connect(struct peer *p, int status)
{
    (void)status;
    peer_close(p);
}

/* Closing again is safe, right away and from on_close. */
static void close_twice_in_connect(struct peer *p, int status)
{
    (void)status;
    p->close_called = true;
    tlsock_uv_close(p->conn);
    tlsock_uv_close(p->conn);
}

static struct wbuf write_in_close;

static void close_again_in_close(struct peer *p)
{
    tlsock_uv_close(p->conn);
    /* Closed: a write is refused, and calls nothing back. */
    if (peer_write_buf(p, &write_in_close, "z", 1) != TLSOCK_EINVAL) {
        anomaly(p->env, "peer %d: tlsock_uv_write() in on_close did not fail with EINVAL", p->id);
    }
}

static void close_in_read(struct peer *p, const unsigned char *data, size_t len)
{
    (void)data;
    (void)len;
    peer_close(p);
}

static void close_in_write(struct peer *p, struct wbuf *w, int status)
{
    (void)w;
    (void)status;
    peer_close(p);
}

static void write_hello(struct peer *p, int status)
{
    if (status == 0) {
        (void)peer_write(p, "hello", 5, false);
    }
}

static void write_hello_and_close(struct peer *p, int status)
{
    write_hello(p, status);
    peer_close(p);
}

static void write_x(struct peer *p, int status)
{
    if (status == 0) {
        (void)peer_write(p, "x", 1, false);
    }
}

static void write_x_and_close(struct peer *p, int status)
{
    write_x(p, status);
    peer_close(p);
}

enum target {
    TARGET_SERVER,  /* a server */
    TARGET_REFUSED, /* a closed port */
    TARGET_CANCEL,  /* a server, but closed right after tlsock_uv_connect() */
};

struct close_case {
    const char *what;
    struct hooks client;
    struct hooks server;
    enum target target;
    int client_connect;    /* the client's on_connect status */
    int client_event;      /* the client's event, TS_NOT_RUN: none */
    int server_event;      /* the server connection's event, TS_NOT_RUN: none */
    const char *client_rx; /* what the client reads */
    const char *server_rx; /* what the server reads */
};

static const struct close_case close_cases[] = {
    {.what = "client, in on_connect",
     .client = {.on_connect = close_in_connect},
     .server = {.on_event = close_on_event},
     .client_event = TS_NOT_RUN,
     .server_event = TLSOCK_ECLOSED},
    {.what = "client, twice in on_connect and again in on_close",
     .client = {.on_connect = close_twice_in_connect, .on_close = close_again_in_close},
     .server = {.on_event = close_on_event},
     .client_event = TS_NOT_RUN,
     .server_event = TLSOCK_ECLOSED},
    {.what = "server, in on_connect",
     .client = {.on_event = close_on_event},
     .server = {.on_connect = close_in_connect},
     .client_event = TLSOCK_ECLOSED,
     .server_event = TS_NOT_RUN},
    {.what = "server, twice in on_connect and again in on_close",
     .client = {.on_event = close_on_event},
     .server = {.on_connect = close_twice_in_connect, .on_close = close_again_in_close},
     .client_event = TLSOCK_ECLOSED,
     .server_event = TS_NOT_RUN},
    {.what = "client, in on_read",
     .client = {.on_read = close_in_read},
     .server = {.on_connect = write_hello, .on_event = close_on_event},
     .client_event = TS_NOT_RUN,
     .server_event = TLSOCK_ECLOSED,
     .client_rx = "hello"},
    {.what = "server, in on_read",
     .client = {.on_connect = write_x, .on_event = close_on_event},
     .server = {.on_read = close_in_read},
     .client_event = TLSOCK_ECLOSED,
     .server_event = TS_NOT_RUN,
     .server_rx = "x"},
    {.what = "client, in on_event",
     .client = {.on_event = close_on_event},
     .server = {.on_connect = write_hello_and_close},
     .client_event = TLSOCK_ECLOSED,
     .server_event = TS_NOT_RUN,
     .client_rx = "hello"},
    {.what = "server, in on_event",
     .client = {.on_connect = write_x_and_close},
     .server = {.on_event = close_on_event},
     .client_event = TS_NOT_RUN,
     .server_event = TLSOCK_ECLOSED,
     .server_rx = "x"},
    {.what = "client, in on_write",
     .client = {.on_connect = write_x, .on_write = close_in_write},
     .server = {.on_event = close_on_event},
     .client_event = TS_NOT_RUN,
     .server_event = TLSOCK_ECLOSED,
     .server_rx = "x"},
    {.what = "server, in on_write",
     .client = {.on_event = close_on_event},
     .server = {.on_connect = write_hello, .on_write = close_in_write},
     .client_event = TLSOCK_ECLOSED,
     .server_event = TS_NOT_RUN,
     .client_rx = "hello"},
    {.what = "client, in on_connect reporting a refused connection",
     .client = {.on_connect = close_in_connect},
     .target = TARGET_REFUSED,
     .client_connect = TLSOCK_ESYS,
     .client_event = TS_NOT_RUN,
     .server_event = TS_NOT_RUN},
    {.what = "client, before on_connect (cancelled)",
     .client = {.on_connect = NULL},
     .target = TARGET_CANCEL,
     .client_connect = TLSOCK_ECANCELED,
     .client_event = TS_NOT_RUN,
     .server_event = TS_NOT_RUN},
};

/*
 * Closing from within on_connect, on_read, on_event, on_write (and again from on_close) is safe:
 * on_close comes exactly once and last, every write completes before it, nothing is read after
 * the close, and the other side sees close_notify. ASan and valgrind see misuse of freed memory.
 */
static void test_close_inside_callbacks(void **state)
{
    for (size_t i = 0; i < sizeof(close_cases) / sizeof(close_cases[0]); i++) {
        const struct close_case *c = &close_cases[i];
        struct peer *server_peer = NULL;
        struct env *env;
        struct peer *p;
        struct srv *s;
        uint16_t port;

        print_message("%s\n", c->what);
        if (i > 0) {
            assert_int_equal(env_teardown(state), 0);
            assert_int_equal(env_setup(state), 0);
        }
        env = *state;
        memset(&write_in_close, 0, sizeof(write_in_close));
        make_contexts(env);
        s = serve_ok(env, 0, env->sctx, &c->server, NULL);
        port = s->port;
        if (c->target == TARGET_REFUSED) {
            int lfd = -1;

            assert_int_equal(ts_raw_listen("127.0.0.1", 0, &lfd, &port), 0);
            close(lfd);
        }
        p = client_start(env, env->cctx, port, &c->client, 0, 0);
        if (c->target == TARGET_CANCEL) {
            peer_close(p);
        }
        RUN_UNTIL(env, conns_closed(env), WAIT_MS);
        for (int k = 0; k < env->npeers; k++) {
            if (env->peers[k].srv == s) {
                server_peer = &env->peers[k];
            }
        }
        TS_ASSERT_RC_MSG(p->connect_rc, c->client_connect, p->connect_msg);
        assert_int_equal(p->closes, 1);
        TS_ASSERT_RC_MSG(p->event_rc, c->client_event, p->event_msg);
        assert_int_equal(p->rx_len, c->client_rx != NULL ? strlen(c->client_rx) : 0);
        if (c->client_rx != NULL) {
            assert_memory_equal(p->rx, c->client_rx, strlen(c->client_rx));
        }
        if (c->target == TARGET_SERVER) {
            assert_non_null(server_peer);
            assert_int_equal(server_peer->closes, 1);
            TS_ASSERT_RC_MSG(server_peer->event_rc, c->server_event, server_peer->event_msg);
            assert_int_equal(server_peer->rx_len, c->server_rx != NULL ? strlen(c->server_rx) : 0);
            if (c->server_rx != NULL) {
                assert_memory_equal(server_peer->rx, c->server_rx, strlen(c->server_rx));
            }
            assert_int_equal(env->naerr, 0);
        }
        run_for(env, 20);
        assert_int_equal(write_in_close.completions, 0);
        assert_no_anomaly(env);
    }
}

/* ---- tlsock_uv_server_close() from inside callbacks ------------------------------------------ */

static void server_close_in_accept_error(struct srv *s, int code)
{
    (void)code;
    server_close(s);
}

static void server_close_in_connect(struct peer *p, int status)
{
    (void)status;
    server_close(p->srv);
}

static void server_close_in_close_cb(struct srv *s, struct tlsock_uv_server *server)
{
    (void)s;
    /* A second call, from the close callback itself, is a no-op. */
    tlsock_uv_server_close(server, stray_server_close);
}

/*
 * tlsock_uv_server_close() from on_accept_error, from a handed-over connection's on_connect (the
 * connection goes on) and again from the server's own close callback: the close callback comes
 * once, and the port is refused afterwards.
 */
static void test_server_close_inside_callbacks(void **state)
{
    static const char garbage[] = "\x16\x03\x01\x00\x05hello, not a ClientHello";
    static const struct hooks closing_server = {
        .on_connect = server_close_in_connect,
        .on_read = echo_back,
        .on_event = close_on_event,
    };
    struct env *env = *state;
    struct peer *p;
    struct srv *s;
    int fd = -1;

    make_contexts(env);
    s = serve_ok(env, 0, env->sctx, &echo_server, NULL);
    s->on_accept_error = server_close_in_accept_error;
    s->on_server_close = server_close_in_close_cb;
    assert_int_equal(ts_raw_connect("127.0.0.1", s->port, 0, &fd), 0);
    raw_track(env, fd);
    assert_int_equal(send_all(fd, garbage, sizeof(garbage) - 1), (ssize_t)(sizeof(garbage) - 1));
    RUN_UNTIL(env, s->close_cbs == 1, WAIT_MS);
    assert_int_equal(env->naerr, 1);
    assert_int_equal(raw_connect_errno(s->port, &fd), ECONNREFUSED);
    raw_watch_run(env, env->raw[0], 0);

    s = serve_ok(env, 1, env->sctx, &closing_server, NULL);
    s->on_server_close = server_close_in_close_cb;
    p = client_start(env, env->cctx, s->port, &echo_client, 5000, 8);
    RUN_UNTIL(env, s->close_cbs == 1 && echoed(p), WAIT_MS);
    peer_close(p);
    RUN_UNTIL(env, conns_closed(env), WAIT_MS);
    assert_int_equal(s->connects, 1);
    assert_int_equal(p->events, 0);
    run_for(env, 50);
    assert_int_equal(env->stray, 0);
    assert_no_anomaly(env);
}

/* ---- writes that fail, and writes at close --------------------------------------------------- */

#define FLUSH_LEN 65536

/*
 * Writes queued before tlsock_uv_close() still reach the peer (status 0, the peer reads them
 * all, then close_notify); a write after it fails with EINVAL and calls nothing back; closing
 * NULL is a no-op.
 */
static void test_write_errors_call_no_callback(void **state)
{
    static const struct hooks quiet_server = {.on_event = close_on_event};
    static const struct hooks quiet_client = {.on_event = close_on_event};
    struct env *env = *state;
    struct wbuf queued;
    struct wbuf refused;
    struct peer *server_peer = NULL;
    unsigned char *data = malloc(FLUSH_LEN);
    struct peer *p;
    struct srv *s;

    assert_non_null(data);
    ts_fill(data, FLUSH_LEN, 42);
    memset(&queued, 0, sizeof(queued));
    memset(&refused, 0, sizeof(refused));
    tlsock_uv_close(NULL);
    make_contexts(env);
    s = serve_ok(env, 0, env->sctx, &quiet_server, NULL);
    p = client_start(env, env->cctx, s->port, &quiet_client, 0, 0);
    RUN_UNTIL(env, p->connect_rc != TS_NOT_RUN && s->connects == 1, WAIT_MS);
    TS_ASSERT_RC_MSG(p->connect_rc, 0, p->connect_msg);
    assert_int_equal(tlsock_uv_write_queue_size(p->conn), 0);

    TS_ASSERT_RC(peer_write_buf(p, &queued, data, FLUSH_LEN), 0);
    peer_close(p);
    TS_ASSERT_RC(peer_write_buf(p, &refused, "late", 4), TLSOCK_EINVAL);
    RUN_UNTIL(env, conns_closed(env), WAIT_MS);
    for (int k = 0; k < env->npeers; k++) {
        if (env->peers[k].srv == s) {
            server_peer = &env->peers[k];
        }
    }
    assert_int_equal(queued.completions, 1);
    TS_ASSERT_RC(queued.status, 0);
    assert_int_equal(refused.completions, 0);
    assert_non_null(server_peer);
    assert_int_equal(server_peer->rx_len, FLUSH_LEN);
    assert_memory_equal(server_peer->rx, data, FLUSH_LEN);
    TS_ASSERT_RC_MSG(server_peer->event_rc, TLSOCK_ECLOSED, server_peer->event_msg);
    free(data);
    assert_no_anomaly(env);
}

/* ---- pending writes of a connection that dies ------------------------------------------------ */

#define PUMP_CHUNK      (256u << 10)
#define PUMP_MAX_WRITES 256
#define PUMP_QUEUE      (2u << 20)

/* A server connection writing to a peer that does not read: it keeps PUMP_QUEUE bytes queued
 * beyond what the kernel took, until the connection dies. */
static struct {
    struct peer *p;
    struct wbuf w[PUMP_MAX_WRITES];
    int n;
    bool dead;
    int event;
    int done_at_event;
    int canceled_before_close;
    int dead_write_rc;
    struct wbuf dead_write;
    struct wbuf during_close[PUMP_MAX_WRITES];
    int writes_accepted_during_close;
} pump;

static unsigned char pump_chunk[PUMP_CHUNK];

static void pump_top_up(struct peer *p)
{
    while (!pump.dead && !p->close_called && pump.n < PUMP_MAX_WRITES &&
           tlsock_uv_write_queue_size(p->conn) < PUMP_QUEUE) {
        int rc = peer_write_buf(p, &pump.w[pump.n], pump_chunk, PUMP_CHUNK);

        if (rc != 0) {
            anomaly(p->env, "pump: tlsock_uv_write: %s", ts_rc_name(rc));
            break;
        }
        pump.n++;
    }
}

static void pump_start(struct peer *p, int status)
{
    pump.p = p;
    if (status == 0) {
        pump_top_up(p);
    }
}

static void pump_written(struct peer *p, struct wbuf *w, int status)
{
    if (status == TLSOCK_ECANCELED && !p->close_called) {
        pump.canceled_before_close++;
    }
    if (status == TLSOCK_ECANCELED) {
        /* From within the close's own cancellations: closing again is safe, and a new write
         * fails at once without a callback. */
        int k = (int)(w - pump.w);

        tlsock_uv_close(p->conn);
        if (k >= 0 && k < PUMP_MAX_WRITES &&
            peer_write_buf(p, &pump.during_close[k], "y", 1) != TLSOCK_EINVAL) {
            pump.writes_accepted_during_close++;
        }
    }
    if (status == 0) {
        pump_top_up(p);
    }
}

static void pump_died(struct peer *p, int code)
{
    pump.dead = true;
    pump.event = code;
    pump.done_at_event = p->writes_done;
    /* Dead: a write fails at once. The test closes the connection later, to see what the
     * pending writes do until then. */
    pump.dead_write_rc = peer_write_buf(p, &pump.dead_write, "x", 1);
}

static const struct hooks pump_server = {
    .on_connect = pump_start,
    .on_write = pump_written,
    .on_event = pump_died,
};

static void stop_reading(struct peer *p, int status)
{
    if (status == 0 && tlsock_uv_read_stop(p->conn) != 0) {
        anomaly(p->env, "tlsock_uv_read_stop failed on a ready connection");
    }
}

struct pending_case {
    const char *what;
    bool reset; /* the peer resets; else it stops reading and the write timeout fires */
    int event;
    int alt_event;   /* also accepted (0: none) */
    int write_error; /* a status a pending write may also complete with */
};

static const struct pending_case pending_cases[] = {
    {.what = "write timeout (the peer stops reading)",
     .event = TLSOCK_ETIMEDOUT,
     .write_error = TLSOCK_ETIMEDOUT},
    /* When a write meets the reset first, the read after it sees a plain end of stream: the
     * driver still reports the reset. */
    {.what = "the peer resets", .reset = true, .event = TLSOCK_ESYS, .write_error = TLSOCK_ESYS},
};

/*
 * A connection dies with writes still queued. Until it is closed nothing completes with
 * ECANCELED; a new write fails with EINVAL and no callback. At tlsock_uv_close() every pending
 * write completes exactly once, with ECANCELED (the one the error hit may say why), in order,
 * all before on_close.
 */
static void test_pending_writes_canceled(void **state)
{
    ts_fill(pump_chunk, sizeof(pump_chunk), 3);
    for (size_t i = 0; i < sizeof(pending_cases) / sizeof(pending_cases[0]); i++) {
        const struct pending_case *c = &pending_cases[i];
        static const struct hooks reader = {.on_connect = stop_reading};
        struct tlsock_uv_opts opts;
        struct script_peer sp;
        struct env *env;
        int canceled = 0;
        int pending_at_close;
        bool failed_seen = false;

        print_message("%s\n", c->what);
        if (i > 0) {
            assert_int_equal(env_teardown(state), 0);
            assert_int_equal(env_setup(state), 0);
        }
        env = *state;
        memset(&pump, 0, sizeof(pump));
        pump.event = TS_NOT_RUN;
        pump.dead_write_rc = TS_NOT_RUN;
        make_contexts(env);
        opts = base_opts(NULL);
        if (!c->reset) {
            opts.write_timeout_ms = 300;
        }
        serve_ok(env, 0, env->sctx, &pump_server, &opts);
        if (c->reset) {
            script_start(env, &sp, env->cctx, env->srvs[0].port, SC_NO_READ_RESET);
            RUN_UNTIL(env, atomic_load(&sp.ready) && pump.n > 0, WAIT_MS);
            /* Data is queued beyond what the kernel holds for a peer that reads nothing. */
            RUN_UNTIL(env, pump.p->writes - pump.p->writes_done >= 4 || pump.dead, WAIT_MS);
            ts_gate_open(&env->gate);
        } else {
            (void)client_start(env, env->cctx, env->srvs[0].port, &reader, 0, 0);
        }
        RUN_UNTIL(env, pump.dead, WAIT_MS);
        print_message("  %d writes of %u KiB queued, %d completed when it died\n", pump.n,
                      PUMP_CHUNK >> 10, pump.done_at_event);
        print_message("  event %s (%s)\n", ts_rc_name(pump.event), pump.p->event_msg);
        if (c->alt_event == 0 || pump.event != c->alt_event) {
            TS_ASSERT_RC_MSG(pump.event, c->event, pump.p->event_msg);
        }
        TS_ASSERT_RC(pump.dead_write_rc, TLSOCK_EINVAL);
        assert_int_equal(pump.canceled_before_close, 0);
        /* Let the loop go round: still no ECANCELED before the close. */
        run_for(env, 100);
        assert_int_equal(pump.canceled_before_close, 0);
        pending_at_close = pump.p->writes - pump.p->writes_done;
        assert_true(pending_at_close > 0);

        peer_close(pump.p);
        RUN_UNTIL(env, pump.p->conn == NULL, WAIT_MS);
        for (int k = 0; k < pump.n; k++) {
            const struct wbuf *w = &pump.w[k];

            assert_int_equal(w->completions, 1);
            if (w->status == TLSOCK_ECANCELED) {
                assert_true(w->after_close);
                canceled++;
            } else if (w->status != 0 && w->status != c->write_error) {
                fail_msg("write %d of %d completed with %s", k, pump.n, ts_rc_name(w->status));
            }
            /* In order: nothing reaches the kernel after a write that did not. */
            if (w->status == 0 && failed_seen) {
                fail_msg("write %d completed after an earlier one failed", k);
            }
            failed_seen = failed_seen || w->status != 0;
        }
        print_message("  %d pending at the close, %d completed with ECANCELED\n", pending_at_close,
                      canceled);
        assert_int_equal(pump.dead_write.completions, 0);
        assert_int_equal(pump.writes_accepted_during_close, 0);
        for (int k = 0; k < PUMP_MAX_WRITES; k++) {
            assert_int_equal(pump.during_close[k].completions, 0);
        }
        assert_true(canceled >= pending_at_close - 1);
        assert_true(canceled > 0);
        if (c->reset) {
            RUN_UNTIL(env, conns_closed(env), WAIT_MS);
            TS_ASSERT_RC_MSG(sp.rc, 0, sp.msg);
        }
        assert_no_anomaly(env);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_slow_handshake_clients, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_reset_mid_handshake, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_peer_end_after_handshake, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_client_sees_server_end, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_fatal_alert, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_close_inside_callbacks, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_server_close_inside_callbacks, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_write_errors_call_no_callback, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_pending_writes_canceled, env_setup, env_teardown),
    };

    return cmocka_run_group_tests_name("uv_robust", tests, ts_pki_setup, ts_pki_teardown);
}
