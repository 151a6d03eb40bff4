/*
 * The libuv driver's server (tlsock/uv.h), written from the contract in the header: port 0 and
 * tlsock_uv_server_port(), many clients at once, clients that fail before they are handed over
 * (on_accept_error), graceful tlsock_uv_server_close() (also with clients still in, or failing,
 * their handshake), SO_REUSEPORT, the server's options reaching its connections, IPv6 loopback,
 * and calls that fail without calling back.
 *
 * Every test runs one loop in the test thread. Callbacks only record what happened (a cmocka
 * failure would longjmp out of uv_run()); the test asserts between runs of the loop. Every wait
 * runs the loop until a condition holds, bounded by a guard timer and an iteration count.
 * Clients are tlsock_uv_connect() on the same loop, blocking tlsock_connect() in threads, or raw
 * TCP sockets. The teardown closes every connection and server, then checks that the loop closes
 * (uv_loop_close() fails while the library still has a handle on it).
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
    int accept_errors_at_close_cb;
    int64_t close_cb_ms;
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
    int64_t connected_ms;
    int64_t event_ms;
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
    const char *host; /* where servers listen and clients connect: 127.0.0.1 unless a test says */
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
        env->host = "127.0.0.1";
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

static void raw_close(struct env *env, int fd)
{
    for (int i = 0; i < MAX_RAW; i++) {
        if (env->raw[i] == fd) {
            env->raw[i] = -1;
        }
    }
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
        p->connected_ms = tlsock_now_ms();
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
    p->connected_ms = tlsock_now_ms();
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
        p->event_ms = tlsock_now_ms();
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
    s->accept_errors_at_close_cb = s->accept_errors;
    s->close_cb_ms = tlsock_now_ms();
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

/* Callbacks given to calls that must fail: none of them may ever run. */
static void stray_connect(struct tlsock_uv_conn *conn, int status)
{
    (void)conn;
    (void)status;
    cur_env->stray++;
}

static void stray_event(struct tlsock_uv_conn *conn, int code)
{
    (void)conn;
    (void)code;
    cur_env->stray++;
}

static void stray_close(struct tlsock_uv_conn *conn)
{
    (void)conn;
    cur_env->stray++;
}

static void stray_accept_error(struct tlsock_uv_server *server, int code, const char *message)
{
    (void)server;
    (void)code;
    (void)message;
    cur_env->stray++;
}

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

static struct tlsock_uv_opts stray_opts(struct env *env)
{
    struct tlsock_uv_opts opts = TLSOCK_UV_OPTS_INIT;

    opts.tls = ts_opts();
    opts.on_connect = stray_connect;
    opts.on_event = stray_event;
    opts.on_close = stray_close;
    opts.on_accept_error = stray_accept_error;
    opts.user = env;
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

/* Serves @p ctx on env->host port @p port as env->srvs[@p index]; returns the call's result. */
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
    rc = tlsock_uv_serve(&env->loop, ctx, env->host, port, 0, &opts, &server);
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

/* An async client of env->host:@p port sending @p tx_len bytes of pattern @p seed. */
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
    TS_ASSERT_RC(tlsock_uv_connect(&env->loop, ctx, env->host, port, &opts, &p->conn), 0);
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

/*
 * After a failed client the server closed its side: reading the raw socket reaches the end
 * (whatever alert came first). The loop runs meanwhile, in case the library closes through it.
 */
static void assert_raw_sees_end(struct env *env, int fd)
{
    struct raw_watch w = {.fd = fd};
    int64_t start = tlsock_now_ms();

    assert_int_equal(uv_poll_init_socket(&env->loop, &w.poll, fd), 0);
    w.poll.data = &w;
    assert_int_equal(uv_poll_start(&w.poll, UV_READABLE | UV_DISCONNECT, raw_watch_cb), 0);
    guard_start(env, TS_IO_TIMEOUT_MS);
    for (long i = 0; i < RUN_MAX_ITER && !w.ended && !env->guard_fired; i++) {
        uv_run(&env->loop, UV_RUN_ONCE);
    }
    guard_stop(env);
    uv_close((uv_handle_t *)&w.poll, raw_watch_closed);
    /* A closing handle's callback runs in the next iteration; the stack frame must outlive it. */
    for (int i = 0; i < 100 && !w.closed; i++) {
        uv_run(&env->loop, UV_RUN_NOWAIT);
    }
    if (!w.ended) {
        fail_msg("the server kept the failed client's socket open for %lld ms (%zu bytes "
                 "received)",
                 (long long)(tlsock_now_ms() - start), w.bytes);
    }
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

/* A client certificate from a CA the server does not trust. */
static struct tlsock__pem_pair untrusted_client;

static int group_setup(void **state)
{
    int rc = ts_pki_setup(state);

    if (rc == 0) {
        rc = ts_leaf_make(&ts_pki.other_ca, "untrusted-client", NULL, TLSOCK__EKU_CLIENT,
                          &untrusted_client);
    }
    return rc == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    tlsock__pem_pair_free(&untrusted_client);
    return ts_pki_teardown(state);
}

static void make_contexts(struct env *env)
{
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
}

static void set_client_cert(struct tlsock_ctx *ctx, const struct tlsock__pem_pair *pair)
{
    TS_ASSERT_RC_MSG(
        tlsock_ctx_set_cert_mem(ctx, pair->cert, strlen(pair->cert), pair->key, strlen(pair->key)),
        0, tlsock_ctx_errmsg(ctx));
}

/* ---- port 0, many clients at once ------------------------------------------------------------ */

#define ASYNC_CLIENTS    20
#define BLOCKING_CLIENTS 4

struct blocking_client {
    struct tlsock_ctx *ctx;
    uint16_t port;
    size_t size;
    unsigned seed;
    int rc;
    const char *step;
    char msg[TLSOCK__ERRMSG_SIZE];
};

/* Runs in its own thread: writes its pattern, reads it back, closes (close_notify). */
static void blocking_echo(void *arg)
{
    struct blocking_client *bc = arg;
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    unsigned char *out = malloc(bc->size);
    unsigned char *in = malloc(bc->size);

    bc->step = "connect";
    if (out == NULL || in == NULL) {
        bc->rc = TS_ESETUP;
        goto out;
    }
    ts_fill(out, bc->size, bc->seed);
    bc->rc = tlsock_connect(bc->ctx, "127.0.0.1", bc->port, &opts, &conn);
    if (bc->rc != 0) {
        snprintf(bc->msg, sizeof(bc->msg), "%s", tlsock_errmsg());
        goto out;
    }
    bc->step = "write";
    bc->rc = tlsock_write(conn, out, bc->size);
    if (bc->rc == 0) {
        bc->step = "read";
        bc->rc = ts_read_full(conn, in, bc->size);
    }
    if (bc->rc == 0) {
        bc->step = "compare";
        bc->rc = memcmp(in, out, bc->size) == 0 ? 0 : TS_EMISMATCH;
    }
    if (bc->rc != 0) {
        snprintf(bc->msg, sizeof(bc->msg), "%s", tlsock_conn_errmsg(conn));
    }
out:
    tlsock_close(conn);
    free(out);
    free(in);
}

static void test_port_zero_and_concurrent_clients(void **state)
{
    struct env *env = *state;
    struct blocking_client bcs[BLOCKING_CLIENTS];
    struct peer *clients[ASYNC_CLIENTS];
    struct srv *s;
    int server_peers = 0;

    make_contexts(env);
    s = serve_ok(env, 0, env->sctx, &echo_server, NULL);
    /* Distinct sizes and patterns: a byte delivered to the wrong client, or a record lost,
     * duplicated or reordered, changes what comes back. */
    for (int i = 0; i < ASYNC_CLIENTS; i++) {
        clients[i] = client_start(env, env->cctx, s->port, &echo_client, 1000 + (size_t)i * 3001,
                                  100 + (unsigned)i);
        clients[i]->close_when_echoed = true;
    }
    memset(bcs, 0, sizeof(bcs));
    for (int i = 0; i < BLOCKING_CLIENTS; i++) {
        TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->thread_ctx[i]), 0);
        bcs[i].ctx = env->thread_ctx[i];
        bcs[i].port = s->port;
        bcs[i].size = 65536 + (size_t)i * 7777;
        bcs[i].seed = 200 + (unsigned)i;
        bcs[i].rc = TS_NOT_RUN;
        thread_start(env, blocking_echo, &bcs[i]);
    }
    RUN_UNTIL(env, conns_closed(env) || s->connects > ASYNC_CLIENTS + BLOCKING_CLIENTS, WAIT_MS);
    for (int i = 0; i < ASYNC_CLIENTS; i++) {
        struct peer *p = clients[i];

        TS_ASSERT_RC_MSG(p->connect_rc, 0, p->connect_msg);
        if (!echoed(p)) {
            fail_msg("async client %d: %zu of %zu bytes came back%s", i, p->rx_len, p->tx_len,
                     p->rx_len == p->tx_len ? ", different" : "");
        }
        TS_ASSERT_RC_MSG(p->events == 0 ? 0 : p->event_rc, 0, p->event_msg);
        assert_int_equal(p->write_errors, 0);
        TS_ASSERT_CONTAINS(p->peer_subject, TS_SERVER_CN);
    }
    for (int i = 0; i < BLOCKING_CLIENTS; i++) {
        if (bcs[i].rc != 0) {
            print_error("blocking client %d failed at %s\n", i, bcs[i].step);
        }
        TS_ASSERT_RC_MSG(bcs[i].rc, 0, bcs[i].msg);
    }
    for (int i = 0; i < env->npeers; i++) {
        struct peer *p = &env->peers[i];

        if (p->srv == s) {
            server_peers++;
            /* Every client ended with close_notify after it had all its data back. */
            TS_ASSERT_RC_MSG(p->event_rc, TLSOCK_ECLOSED, p->event_msg);
            assert_int_equal(p->write_errors, 0);
            assert_int_equal(p->closes, 1);
        }
    }
    assert_int_equal(s->connects, ASYNC_CLIENTS + BLOCKING_CLIENTS);
    assert_int_equal(server_peers, ASYNC_CLIENTS + BLOCKING_CLIENTS);
    assert_int_equal(env->naerr, 0);
    server_close(s);
    RUN_UNTIL(env, s->close_cbs == 1, WAIT_MS);
    assert_no_anomaly(env);
}

/* ---- on_accept_error ------------------------------------------------------------------------- */

static bool client_finished(const struct peer *p)
{
    return p->connect_rc != TS_NOT_RUN && (p->connect_rc != 0 || p->events > 0);
}

/*
 * The server requires client certificates; a client presents one from an untrusted CA. The
 * server refuses it (EVERIFY, the verify reason) without handing it over; the client learns of
 * it from the alert (EPROTO: in its handshake with TLS 1.2, as an event after it with TLS 1.3).
 * A client with a good certificate is served afterwards.
 */
static void test_accept_error_untrusted_client_cert(void **state)
{
    struct env *env = *state;
    struct peer *bad;
    struct srv *s;
    int client_rc;

    make_contexts(env);
    TS_ASSERT_RC(tlsock_ctx_set_ca_mem(env->sctx, ts_pki.ca.cert, strlen(ts_pki.ca.cert)), 0);
    TS_ASSERT_RC(tlsock_ctx_set_verify(env->sctx, TLSOCK_VERIFY_REQUIRED), 0);
    set_client_cert(env->cctx, &ts_pki.client);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx2), 0);
    set_client_cert(env->cctx2, &untrusted_client);
    s = serve_ok(env, 0, env->sctx, &echo_server, NULL);

    bad = client_start(env, env->cctx2, s->port, &echo_client, 0, 0);
    RUN_UNTIL(env, env->naerr == 1 && client_finished(bad), WAIT_MS);
    TS_ASSERT_RC_MSG(env->aerr[0].code, TLSOCK_EVERIFY, env->aerr[0].msg);
    TS_ASSERT_CONTAINS(env->aerr[0].msg, "unable to get local issuer");
    assert_int_equal(s->connects, 0);
    client_rc = bad->connect_rc != 0 ? bad->connect_rc : bad->event_rc;
    TS_ASSERT_RC_MSG(client_rc, TLSOCK_EPROTO,
                     bad->connect_rc != 0 ? bad->connect_msg : bad->event_msg);
    TS_ASSERT_CONTAINS(bad->connect_rc != 0 ? bad->connect_msg : bad->event_msg, "unknown_ca");
    peer_close(bad);
    RUN_UNTIL(env, bad->conn == NULL, WAIT_MS);

    assert_serves_good_client(env, s, env->cctx);
    TS_ASSERT_CONTAINS(env->peers[env->npeers - 1].peer_subject, TS_CLIENT_CN);
    assert_int_equal(env->naerr, 1);
    assert_no_anomaly(env);
}

/* Plaintext instead of a ClientHello: a protocol error, and the server goes on. */
static void test_accept_error_garbage(void **state)
{
    static const char garbage[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    struct env *env = *state;
    struct srv *s;
    int fd = -1;

    make_contexts(env);
    s = serve_ok(env, 0, env->sctx, &echo_server, NULL);
    assert_int_equal(ts_raw_connect("127.0.0.1", s->port, 0, &fd), 0);
    raw_track(env, fd);
    assert_int_equal(send(fd, garbage, sizeof(garbage) - 1, MSG_NOSIGNAL),
                     (ssize_t)(sizeof(garbage) - 1));
    RUN_UNTIL(env, env->naerr == 1, WAIT_MS);
    TS_ASSERT_RC_MSG(env->aerr[0].code, TLSOCK_EPROTO, env->aerr[0].msg);
    assert_true(tlsock_err_is_tls(env->aerr[0].code));
    assert_true(strlen(env->aerr[0].msg) > 0);
    assert_int_equal(s->connects, 0);
    /* "The client's connection is already closed." */
    assert_raw_sees_end(env, fd);
    raw_close(env, fd);
    assert_serves_good_client(env, s, env->cctx);
    assert_int_equal(env->naerr, 1);
    assert_no_anomaly(env);
}

#define SILENT_TIMEOUT_MS 2000

struct silent_case {
    const char *what;
    int ctx_timeout;  /* tlsock_ctx_set_handshake_timeout(), 0: not called */
    int opts_timeout; /* opts.tls.handshake_timeout_ms */
};

static const struct silent_case silent_cases[] = {
    {.what = "server options", .opts_timeout = SILENT_TIMEOUT_MS},
    {.what = "context default (options 0)", .ctx_timeout = SILENT_TIMEOUT_MS},
    {.what = "options override the context",
     .ctx_timeout = 4 * TS_IO_TIMEOUT_MS,
     .opts_timeout = SILENT_TIMEOUT_MS},
};

/*
 * A client connects and says nothing. The handshake timeout drops it (EHANDSHAKE_TIMEOUT, not
 * before its time) and closes its socket, while a good client is served in the meantime (it
 * finishes before the silent one is dropped: the server does not wait on the silent one).
 */
static void test_accept_error_silent_client(void **state)
{
    for (size_t i = 0; i < sizeof(silent_cases) / sizeof(silent_cases[0]); i++) {
        const struct silent_case *c = &silent_cases[i];
        struct tlsock_uv_opts opts;
        struct env *env;
        struct peer *good;
        struct srv *s;
        int64_t start;
        int fd = -1;

        print_message("%s\n", c->what);
        if (i > 0) {
            assert_int_equal(env_teardown(state), 0);
            assert_int_equal(env_setup(state), 0);
        }
        env = *state;
        make_contexts(env);
        if (c->ctx_timeout != 0) {
            TS_ASSERT_RC(tlsock_ctx_set_handshake_timeout(env->sctx, c->ctx_timeout), 0);
        }
        opts = base_opts(NULL);
        opts.tls.handshake_timeout_ms = c->opts_timeout;
        s = serve_ok(env, 0, env->sctx, &echo_server, &opts);

        start = tlsock_now_ms();
        assert_int_equal(ts_raw_connect("127.0.0.1", s->port, 0, &fd), 0);
        raw_track(env, fd);
        good = client_start(env, env->cctx, s->port, &echo_client, 5000, 5);
        good->close_when_echoed = true;
        RUN_UNTIL(env, good->conn == NULL || env->naerr > 0, WAIT_MS);
        if (env->naerr > 0) {
            fail_msg("the silent client was dropped (%s) before the good client was served",
                     ts_rc_name(env->aerr[0].code));
        }
        TS_ASSERT_RC_MSG(good->connect_rc, 0, good->connect_msg);
        assert_true(echoed(good));

        RUN_UNTIL(env, env->naerr == 1, SILENT_TIMEOUT_MS + WAIT_MS);
        TS_ASSERT_RC_MSG(env->aerr[0].code, TLSOCK_EHANDSHAKE_TIMEOUT, env->aerr[0].msg);
        if (env->aerr[0].at_ms - start < SILENT_TIMEOUT_MS - 5) {
            fail_msg("dropped after %lld ms, before its %d ms timeout",
                     (long long)(env->aerr[0].at_ms - start), SILENT_TIMEOUT_MS);
        }
        assert_raw_sees_end(env, fd);
        raw_close(env, fd);
        assert_int_equal(s->connects, 1);
        RUN_UNTIL(env, server_peers_closed(env), WAIT_MS);
        assert_no_anomaly(env);
    }
}

/* ---- graceful close -------------------------------------------------------------------------- */

/*
 * A blocking client over a user transport that holds back the second half of its ClientHello
 * until the test opens a gate: a client that is in its handshake, reliably, when the server
 * closes.
 */
struct late_client {
    struct env *env;
    struct tlsock_ctx *ctx;
    uint16_t port;
    int fd;
    int writes;
    atomic_bool half_sent;
    int handshake_rc;
    int rc;
    char msg[TLSOCK__ERRMSG_SIZE];
};

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

static ssize_t late_write(void *user, const void *buf, size_t len)
{
    struct late_client *lc = user;
    ssize_t rc;

    lc->writes++;
    if (lc->writes == 1 && len > 1) {
        /* Half the ClientHello now; taking fewer bytes than offered is allowed. */
        rc = send_all(lc->fd, buf, len / 2);
        atomic_store(&lc->half_sent, true);
        uv_async_send(&lc->env->wake);
        return rc < 0 ? rc : (ssize_t)(len / 2);
    }
    if (lc->writes == 2 && !ts_gate_wait(&lc->env->gate, WAIT_MS)) {
        return TLSOCK_ETIMEDOUT;
    }
    return send_all(lc->fd, buf, len);
}

static ssize_t late_read(void *user, void *buf, size_t len)
{
    struct late_client *lc = user;
    struct pollfd pfd = {.fd = lc->fd, .events = POLLIN};
    ssize_t n;

    if (poll(&pfd, 1, TS_IO_TIMEOUT_MS) != 1) {
        return TLSOCK_ETIMEDOUT;
    }
    n = recv(lc->fd, buf, len, 0);
    return n >= 0 ? n : TLSOCK_ESYS;
}

static void late_client_main(void *arg)
{
    static const char ping[] = "late but welcome";
    struct late_client *lc = arg;
    struct tlsock_io io = {.read = late_read, .write = late_write, .user = lc};
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    char back[sizeof(ping)];

    lc->handshake_rc = TS_NOT_RUN;
    lc->rc = ts_raw_connect("127.0.0.1", lc->port, 0, &lc->fd);
    if (lc->rc != 0) {
        snprintf(lc->msg, sizeof(lc->msg), "raw connect failed");
        atomic_store(&lc->half_sent, true);
        return;
    }
    opts.servername = "localhost";
    lc->rc = tlsock_attach_io(lc->ctx, &io, &opts, &conn);
    if (lc->rc == 0) {
        lc->rc = tlsock_handshake(conn);
        lc->handshake_rc = lc->rc;
    }
    if (lc->rc == 0) {
        lc->rc = tlsock_write(conn, ping, sizeof(ping));
    }
    if (lc->rc == 0) {
        lc->rc = ts_read_full(conn, back, sizeof(back));
    }
    if (lc->rc == 0 && memcmp(back, ping, sizeof(ping)) != 0) {
        lc->rc = TS_EMISMATCH;
    }
    if (lc->rc != 0 && conn != NULL) {
        snprintf(lc->msg, sizeof(lc->msg), "%s", tlsock_conn_errmsg(conn));
    }
    atomic_store(&lc->half_sent, true);
    tlsock_close(conn);
    close(lc->fd);
}

/* Sends @p len bytes of pattern @p seed on an established client and waits for the echo. */
static void echo_round(struct env *env, struct peer *p, size_t len, unsigned seed)
{
    unsigned char *more = malloc(len);
    size_t before = p->rx_len;

    assert_non_null(more);
    ts_fill(more, len, seed);
    if (peer_write(p, more, len, true) != 0) {
        free(more);
        fail_msg("write on an established connection failed");
    }
    RUN_UNTIL(env, p->rx_len >= before + len || p->conn == NULL || p->events > 0, WAIT_MS);
    assert_int_equal(p->rx_len, before + len);
    assert_memory_equal(p->rx + before, more, len);
    free(more);
}

/*
 * tlsock_uv_server_close(): no new connection gets in (a TCP connect is refused, an async one
 * fails with ESYS); a client already handed over keeps working, before and after the server is
 * gone; a client in its handshake at that moment finishes it and is handed over (on_connect);
 * the close callback comes once, after that hand-over and without waiting for the application's
 * connections; a second call is a no-op.
 */
static void test_graceful_close(void **state)
{
    struct env *env = *state;
    struct late_client *lc = calloc(1, sizeof(*lc));
    struct peer *a;
    struct peer *refused;
    struct srv *s;
    int fd = -1;
    int err;

    assert_non_null(lc);
    make_contexts(env);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx2), 0);
    s = serve_ok(env, 0, env->sctx, &echo_server, NULL);

    /* The late client connects first; the kernel's accept queue is FIFO, so once the server
     * has handed over client A, it has accepted the late client too, which is then stuck in
     * the middle of its handshake. */
    lc->env = env;
    lc->ctx = env->cctx2;
    lc->port = s->port;
    lc->fd = -1;
    lc->rc = TS_NOT_RUN;
    atomic_init(&lc->half_sent, false);
    thread_start(env, late_client_main, lc);
    RUN_UNTIL(env, atomic_load(&lc->half_sent), WAIT_MS);

    a = client_start(env, env->cctx, s->port, &echo_client, 1000, 1);
    RUN_UNTIL(env, echoed(a) && s->connects == 1, WAIT_MS);

    server_close(s);
    if (s->server == NULL) {
        fail_msg("the server's close callback ran within tlsock_uv_server_close()");
    }
    /* A second call is a no-op: its callback never runs. */
    tlsock_uv_server_close(s->server, stray_server_close);
    err = raw_connect_errno(s->port, &fd);
    if (fd >= 0) {
        close(fd);
    }
    if (err != ECONNREFUSED) {
        fail_msg("a TCP connect after tlsock_uv_server_close() gave \"%s\", not refused",
                 err == 0 ? "connected" : strerror(err));
    }
    refused = client_start(env, env->cctx, s->port, &echo_client, 10, 2);
    refused->hooks.on_connect = close_on_failure;
    RUN_UNTIL(env, refused->connect_rc != TS_NOT_RUN, WAIT_MS);
    TS_ASSERT_RC_MSG(refused->connect_rc, TLSOCK_ESYS, refused->connect_msg);

    /* Client A is the application's: it keeps working while the server closes. */
    echo_round(env, a, 777, 3);
    if (s->close_cbs > 0) {
        fail_msg("the server's close callback came before its client in the handshake was "
                 "handed over");
    }

    ts_gate_open(&env->gate);
    RUN_UNTIL(env, s->close_cbs == 1 && atomic_load(&env->threads_running) == 0, WAIT_MS);
    TS_ASSERT_RC_MSG(lc->handshake_rc, 0, lc->msg);
    TS_ASSERT_RC_MSG(lc->rc, 0, lc->msg);
    assert_int_equal(s->connects, 2);
    assert_int_equal(s->connects_at_close_cb, 2);
    assert_int_equal(env->naerr, 0);
    /* A's server side was still open when the server reported it was gone. */
    assert_true(s->open_peers_at_close_cb >= 1);

    /* And A still works once the server is freed. */
    assert_non_null(a->conn);
    echo_round(env, a, 4321, 4);
    peer_close(a);
    RUN_UNTIL(env, all_closed(env), WAIT_MS);
    assert_int_equal(a->events, 0);
    for (int i = 0; i < env->npeers; i++) {
        if (env->peers[i].srv == s) {
            TS_ASSERT_RC_MSG(env->peers[i].event_rc, TLSOCK_ECLOSED, env->peers[i].event_msg);
        }
    }
    run_for(env, 50);
    assert_int_equal(s->close_cbs, 1);
    assert_no_anomaly(env);
    free(lc);
}

/*
 * Clients in their handshake when the server closes and that then fail: one resets, one stays
 * silent until the handshake timeout. Both still go to on_accept_error, and the close callback
 * waits for both (not before the silent one's timeout).
 */
static void test_close_waits_for_failing_handshakes(void **state)
{
    struct env *env = *state;
    struct tlsock_uv_opts opts = base_opts(NULL);
    static const char half[] = "\x16\x03\x01\x01\x00\x01\x00\x00\xfc\x03\x03";
    bool seen_esys = false;
    bool seen_timeout = false;
    int64_t start;
    struct srv *s;
    int resetter = -1;
    int silent = -1;

    make_contexts(env);
    opts.tls.handshake_timeout_ms = SILENT_TIMEOUT_MS;
    s = serve_ok(env, 0, env->sctx, &echo_server, &opts);
    start = tlsock_now_ms();
    assert_int_equal(ts_raw_connect("127.0.0.1", s->port, 0, &resetter), 0);
    raw_track(env, resetter);
    assert_int_equal(send(resetter, half, sizeof(half) - 1, MSG_NOSIGNAL),
                     (ssize_t)(sizeof(half) - 1));
    assert_int_equal(ts_raw_connect("127.0.0.1", s->port, 0, &silent), 0);
    raw_track(env, silent);
    /* FIFO accept queue: once this later client is served, both are in their handshake. */
    assert_serves_good_client(env, s, env->cctx);
    assert_int_equal(env->naerr, 0);

    server_close(s);
    {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};

        assert_int_equal(setsockopt(resetter, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
        raw_close(env, resetter);
    }
    RUN_UNTIL(env, s->close_cbs == 1, SILENT_TIMEOUT_MS + WAIT_MS);
    assert_int_equal(s->accept_errors_at_close_cb, 2);
    for (int i = 0; i < env->naerr; i++) {
        seen_esys = seen_esys || env->aerr[i].code == TLSOCK_ESYS;
        seen_timeout = seen_timeout || env->aerr[i].code == TLSOCK_EHANDSHAKE_TIMEOUT;
        print_message("  accept error: %s (%s)\n", ts_rc_name(env->aerr[i].code), env->aerr[i].msg);
    }
    assert_true(seen_esys);
    assert_true(seen_timeout);
    if (s->close_cb_ms - start < SILENT_TIMEOUT_MS - 5) {
        fail_msg("the close callback came after %lld ms, before the silent client's %d ms "
                 "handshake timeout",
                 (long long)(s->close_cb_ms - start), SILENT_TIMEOUT_MS);
    }
    assert_int_equal(s->connects, 1);
    assert_no_anomaly(env);
}

/* ---- SO_REUSEPORT ---------------------------------------------------------------------------- */

#define REUSEPORT_CLIENTS 32

/*
 * Two servers on one port with opts.reuseport: the kernel spreads clients among them, so with
 * 32 clients each server gets some (the chance that one gets none is 2^-31). Once the first is
 * closed, the second alone takes new clients.
 */
static void test_reuseport(void **state)
{
    struct env *env = *state;
    struct tlsock_uv_opts opts = base_opts(NULL);
    struct peer *late;
    struct srv *s0;
    struct srv *s1;

    make_contexts(env);
    opts.reuseport = true;
    s0 = serve_ok(env, 0, env->sctx, &echo_server, &opts);
    TS_ASSERT_RC(serve(env, 1, env->sctx, s0->port, &echo_server, &opts), 0);
    s1 = &env->srvs[1];
    assert_int_equal(s1->port, s0->port);
    for (int i = 0; i < REUSEPORT_CLIENTS; i++) {
        struct peer *p = client_start(env, env->cctx, s0->port, &echo_client, 100, (unsigned)i);

        p->close_when_echoed = true;
    }
    RUN_UNTIL(env, conns_closed(env), WAIT_MS);
    for (int i = 0; i < REUSEPORT_CLIENTS; i++) {
        TS_ASSERT_RC_MSG(env->peers[i].connect_rc, 0, env->peers[i].connect_msg);
        assert_true(echoed(&env->peers[i]));
    }
    print_message("clients per server: %d and %d\n", s0->connects, s1->connects);
    assert_int_equal(s0->connects + s1->connects, REUSEPORT_CLIENTS);
    assert_true(s0->connects > 0);
    assert_true(s1->connects > 0);

    server_close(s0);
    RUN_UNTIL(env, s0->close_cbs == 1, WAIT_MS);
    late = client_start(env, env->cctx, s0->port, &echo_client, 100, 99);
    late->close_when_echoed = true;
    RUN_UNTIL(env, conns_closed(env), WAIT_MS);
    TS_ASSERT_RC_MSG(late->connect_rc, 0, late->connect_msg);
    assert_true(echoed(late));
    assert_int_equal(s1->connects + s0->connects, REUSEPORT_CLIENTS + 1);
    assert_int_equal(env->naerr, 0);
    assert_no_anomaly(env);
}

struct bind_case {
    const char *what;
    bool first_reuseport;
    bool second_reuseport;
};

static const struct bind_case bind_cases[] = {
    {.what = "neither with reuseport"},
    {.what = "only the first with reuseport", .first_reuseport = true},
    {.what = "only the second with reuseport", .second_reuseport = true},
};

/* A port in use without SO_REUSEPORT on both: ESYS, nothing returned, no callback, no handle
 * left on the loop (the teardown checks the loop closes). */
static void test_port_in_use(void **state)
{
    struct env *env = *state;
    struct tlsock_uv_opts opts = base_opts(NULL);
    struct srv *s0;

    make_contexts(env);
    for (size_t i = 0; i < sizeof(bind_cases) / sizeof(bind_cases[0]); i++) {
        const struct bind_case *c = &bind_cases[i];
        struct tlsock_uv_server *out = (struct tlsock_uv_server *)&opts; /* sentinel */
        struct tlsock_uv_opts second = stray_opts(env);
        int rc;

        print_message("%s\n", c->what);
        opts.reuseport = c->first_reuseport;
        s0 = serve_ok(env, 0, env->sctx, &echo_server, &opts);
        second.reuseport = c->second_reuseport;
        rc = tlsock_uv_serve(&env->loop, env->sctx, "127.0.0.1", s0->port, 0, &second, &out);
        if (rc == 0) {
            tlsock_uv_server_close(out, NULL);
        }
        TS_ASSERT_RC(rc, TLSOCK_ESYS);
        assert_ptr_equal(out, (struct tlsock_uv_server *)&opts);
        /* The first server is unharmed. */
        assert_serves_good_client(env, s0, env->cctx);
        server_close(s0);
        RUN_UNTIL(env, s0->close_cbs == 1, WAIT_MS);
    }
    run_for(env, 50);
    assert_no_anomaly(env);
}

/* ---- the server's options reach its connections --------------------------------------------- */

#define IDLE_MS 400

static const char welcome[] = "welcome\n";

/*
 * What tlsock_uv_serve() is given applies to each connection it hands over: initial_data is sent
 * right after each handshake, before anything else; read_idle_timeout_ms ends a connection that
 * says nothing (ETIMEDOUT, not before its time); the user pointer starts as the server's (checked
 * by on_server_connect for every test).
 */
static void test_options_reach_connections(void **state)
{
    static const struct hooks reader = {.on_event = close_on_event};
    struct env *env = *state;
    struct tlsock_uv_opts opts = base_opts(NULL);
    struct peer *clients[3];
    struct srv *s;
    int64_t start;

    make_contexts(env);
    opts.initial_data = welcome;
    opts.initial_len = sizeof(welcome) - 1;
    opts.read_idle_timeout_ms = IDLE_MS;
    s = serve_ok(env, 0, env->sctx, &echo_server, &opts);
    start = tlsock_now_ms();
    for (int i = 0; i < 3; i++) {
        clients[i] = client_start(env, env->cctx, s->port, &reader, 0, 0);
    }
    RUN_UNTIL(env, conns_closed(env), WAIT_MS);
    assert_int_equal(s->connects, 3);
    for (int i = 0; i < 3; i++) {
        struct peer *c = clients[i];

        TS_ASSERT_RC_MSG(c->connect_rc, 0, c->connect_msg);
        assert_int_equal(c->rx_len, sizeof(welcome) - 1);
        assert_memory_equal(c->rx, welcome, sizeof(welcome) - 1);
        /* The server ended it: the client saw the end of the stream. */
        assert_int_equal(c->events, 1);
    }
    for (int i = 0; i < env->npeers; i++) {
        struct peer *p = &env->peers[i];

        if (p->srv == s) {
            TS_ASSERT_RC_MSG(p->event_rc, TLSOCK_ETIMEDOUT, p->event_msg);
            /* The idle time counts from the last bytes received (the client's Finished, which
             * may come a little before on_connect), so only the start of the test bounds it. */
            if (p->event_ms - start < IDLE_MS - 5) {
                fail_msg("read idle timeout %lld ms after the client started, before its %d ms",
                         (long long)(p->event_ms - start), IDLE_MS);
            }
        }
    }
    assert_int_equal(env->naerr, 0);
    assert_no_anomaly(env);
}

/* ---- IPv6 loopback --------------------------------------------------------------------------- */

static void test_ipv6_loopback(void **state)
{
    struct env *env = *state;
    struct srv *s;

    if (!ts_ipv6_available()) {
        print_message("SKIPPED: no IPv6 loopback (::1) on this machine\n");
        skip();
    }
    env->host = "::1";
    make_contexts(env);
    s = serve_ok(env, 0, env->sctx, &echo_server, NULL);
    assert_serves_good_client(env, s, env->cctx);
    assert_no_anomaly(env);
}

/* ---- calls that fail call nothing back ------------------------------------------------------- */

static void test_errors_call_no_callback(void **state)
{
    struct env *env = *state;
    struct tlsock_uv_opts opts = stray_opts(env);
    struct tlsock_uv_opts no_connect = stray_opts(env);
    struct tlsock_uv_server *sentinel = (struct tlsock_uv_server *)&opts;
    struct tlsock_uv_server *out = sentinel;
    struct tlsock_uv_conn *cout = (struct tlsock_uv_conn *)&opts;
    struct tlsock_ctx *no_cert = NULL;
    int rc;

    make_contexts(env);
    no_connect.on_connect = NULL;
    TS_ASSERT_RC(ts_server_ctx_new(NULL, &no_cert), 0);

    TS_ASSERT_RC(tlsock_uv_serve(&env->loop, no_cert, "127.0.0.1", 0, 0, &opts, &out),
                 TLSOCK_ECONFIG);
    tlsock_ctx_free(no_cert);
    TS_ASSERT_RC(tlsock_uv_serve(&env->loop, env->sctx, "127.0.0.1", 0, 0, &no_connect, &out),
                 TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_serve(&env->loop, env->sctx, "127.0.0.1", 0, 0, NULL, &out),
                 TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_serve(NULL, env->sctx, "127.0.0.1", 0, 0, &opts, &out), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_serve(&env->loop, NULL, "127.0.0.1", 0, 0, &opts, &out), TLSOCK_EINVAL);
    /* A client context is no server context: a bad argument or a configuration without a
     * certificate, either way refused. */
    rc = tlsock_uv_serve(&env->loop, env->cctx, "127.0.0.1", 0, 0, &opts, &out);
    if (rc != TLSOCK_EINVAL && rc != TLSOCK_ECONFIG) {
        fail_msg("serving a client context: %s, expected EINVAL or ECONFIG", ts_rc_name(rc));
    }
    assert_ptr_equal(out, sentinel);

    TS_ASSERT_RC(tlsock_uv_connect(&env->loop, env->cctx, "127.0.0.1", 1, &no_connect, &cout),
                 TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_connect(&env->loop, env->cctx, "127.0.0.1", 1, NULL, &cout),
                 TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_connect(NULL, env->cctx, "127.0.0.1", 1, &opts, &cout), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_connect(&env->loop, NULL, "127.0.0.1", 1, &opts, &cout), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_connect(&env->loop, env->cctx, NULL, 1, &opts, &cout), TLSOCK_EINVAL);
    assert_ptr_equal(cout, (struct tlsock_uv_conn *)&opts);

    /* Nothing may call back, and nothing may stay on the loop (the teardown checks it closes). */
    run_for(env, 100);
    assert_int_equal(env->stray, 0);
    /* The contexts are still good for a real server and client afterwards. */
    serve_ok(env, 0, env->sctx, &echo_server, NULL);
    assert_serves_good_client(env, &env->srvs[0], env->cctx);
    assert_no_anomaly(env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_port_zero_and_concurrent_clients, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_accept_error_untrusted_client_cert, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_accept_error_garbage, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_accept_error_silent_client, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_graceful_close, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_close_waits_for_failing_handshakes, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_reuseport, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_port_in_use, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_options_reach_connections, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_ipv6_loopback, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_errors_call_no_callback, env_setup, env_teardown),
    };

    return cmocka_run_group_tests_name("uv_server", tests, group_setup, group_teardown);
}
