/*
 * The one fixture of the libuv driver's tests (every test_uv_*.c): see uv_harness.h.
 */
#include "uv_harness.h"

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

struct env *cur_env;

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

__attribute__((format(printf, 2, 3))) void anomaly(struct env *env, const char *fmt, ...)
{
    va_list ap;

    if (env->anomalies == 0) {
        va_start(ap, fmt);
        vsnprintf(env->anomaly, sizeof(env->anomaly), fmt, ap);
        va_end(ap);
    }
    env->anomalies++;
}

void assert_no_anomaly(struct env *env)
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

void guard_start(struct env *env, int ms)
{
    env->guard_fired = false;
    uv_timer_start(&env->guard, guard_cb, (uint64_t)ms, 0);
}

void guard_stop(struct env *env)
{
    uv_timer_stop(&env->guard);
}

/* Runs the loop for @p ms: only to show that something does NOT happen. */
void run_for(struct env *env, int ms)
{
    guard_start(env, ms);
    for (long i = 0; i < RUN_MAX_ITER && !env->guard_fired; i++) {
        loop_turn(&env->loop);
    }
    guard_stop(env);
}

bool env_run_until(struct env *env, bool (*pred)(void *arg), void *arg, int ms)
{
    guard_start(env, ms);
    for (long i = 0; i < RUN_MAX_ITER && !pred(arg) && !env->guard_fired; i++) {
        loop_turn(&env->loop);
    }
    guard_stop(env);
    return pred(arg) && !env->guard_fired;
}

int env_setup(void **state)
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
bool conns_closed(struct env *env)
{
    bool done = atomic_load(&env->threads_running) == 0;

    for (int i = 0; i < env->npeers && done; i++) {
        done = env->peers[i].conn == NULL;
    }
    return done;
}

/* ... and every server closed too. */
bool all_closed(struct env *env)
{
    bool done = conns_closed(env);

    for (int i = 0; i < MAX_SERVERS && done; i++) {
        done = env->srvs[i].server == NULL;
    }
    if (done && env->extra.closed != NULL) {
        done = env->extra.closed(env->extra.arg);
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
int env_teardown(void **state)
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
    if (env->extra.close != NULL) {
        env->extra.close(env->extra.arg);
    }
    guard_start(env, WAIT_MS);
    for (long i = 0; i < RUN_MAX_ITER && !all_closed(env) && !env->guard_fired; i++) {
        loop_turn(&env->loop);
    }
    guard_stop(env);
    /* Drained thanks to the guard's wake-up only: the loop slept through work it had. */
    drained = all_closed(env) && !env->guard_fired;
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

/* ---- a loop in a thread of its own ----------------------------------------------------------- */

void side_loop_end(struct side_loop *sl)
{
    if (sl->stopping) {
        return;
    }
    sl->stopping = true;
    if (sl->stop != NULL) {
        sl->stop(sl);
    }
    uv_close((uv_handle_t *)&sl->stop_req, NULL);
    uv_close((uv_handle_t *)&sl->guard, NULL);
}

static void side_loop_stop_cb(uv_async_t *async)
{
    side_loop_end(async->data);
}

static void side_loop_guard_cb(uv_timer_t *timer)
{
    struct side_loop *sl = timer->data;

    sl->guard_fired = true;
    side_loop_end(sl);
}

static void *side_loop_main(void *arg)
{
    struct side_loop *sl = arg;

    sl->setup_rc = sl->setup != NULL ? sl->setup(sl) : 0;
    if (sl->setup_rc != 0) {
        side_loop_end(sl);
    }
    ts_gate_open(&sl->ready);
    uv_run(&sl->loop, UV_RUN_DEFAULT);
    sl->close_rc = uv_loop_close(&sl->loop);
    if (sl->close_rc != 0) {
        /* Report what stayed, then close it so that the thread can end. */
        print_error("side loop: uv_loop_close: %s; handles left:\n", uv_err_name(sl->close_rc));
        uv_print_all_handles(&sl->loop, stderr);
        uv_walk(&sl->loop, close_walk_cb, NULL);
        uv_run(&sl->loop, UV_RUN_DEFAULT);
        (void)uv_loop_close(&sl->loop);
    }
    return NULL;
}

int side_loop_start(struct side_loop *sl, int (*setup)(struct side_loop *sl),
                    void (*stop)(struct side_loop *sl), void *arg, int guard_ms)
{
    memset(sl, 0, sizeof(*sl));
    sl->setup = setup;
    sl->stop = stop;
    sl->arg = arg;
    ts_gate_init(&sl->ready);
    if (uv_loop_init(&sl->loop) != 0) {
        return TS_ESETUP;
    }
    uv_async_init(&sl->loop, &sl->stop_req, side_loop_stop_cb);
    sl->stop_req.data = sl;
    uv_timer_init(&sl->loop, &sl->guard);
    sl->guard.data = sl;
    uv_timer_start(&sl->guard, side_loop_guard_cb, (uint64_t)guard_ms, 0);
    if (pthread_create(&sl->tid, NULL, side_loop_main, sl) != 0) {
        uv_close((uv_handle_t *)&sl->stop_req, NULL);
        uv_close((uv_handle_t *)&sl->guard, NULL);
        uv_run(&sl->loop, UV_RUN_DEFAULT);
        uv_loop_close(&sl->loop);
        return TS_ESETUP;
    }
    sl->started = true;
    if (!ts_gate_wait(&sl->ready, guard_ms)) {
        return TS_ESETUP;
    }
    return sl->setup_rc;
}

void side_loop_stop(struct side_loop *sl)
{
    if (sl->started) {
        uv_async_send(&sl->stop_req);
    }
}

int side_loop_join(struct side_loop *sl)
{
    int rc = 0;

    if (!sl->started) {
        return 0;
    }
    pthread_join(sl->tid, NULL);
    sl->started = false;
    ts_gate_destroy(&sl->ready);
    if (sl->guard_fired) {
        print_error("side loop: its guard fired\n");
        rc = -1;
    }
    if (sl->close_rc != 0) {
        rc = -1;
    }
    return rc;
}

static void *thread_main(void *arg)
{
    struct thread_slot *slot = arg;

    slot->fn(slot->arg);
    atomic_fetch_sub(&slot->env->threads_running, 1);
    env_wake(slot->env);
    return NULL;
}

void env_wake(struct env *env)
{
    uv_async_send(&env->wake);
}

void thread_start(struct env *env, void (*fn)(void *arg), void *arg)
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

void raw_track(struct env *env, int fd)
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
void raw_untrack(struct env *env, int fd)
{
    for (int i = 0; i < MAX_RAW; i++) {
        if (env->raw[i] == fd) {
            env->raw[i] = -1;
        }
    }
}

void raw_close(struct env *env, int fd)
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

void peer_close(struct peer *p)
{
    if (p->conn != NULL && !p->close_called) {
        p->close_called = true;
        tlsock_uv_close(p->conn);
    }
}

int peer_write_buf(struct peer *p, struct wbuf *w, const void *data, size_t len)
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
int peer_write(struct peer *p, const void *data, size_t len, bool copy)
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
    struct tlsock_conn *tls = tlsock_uv_conn_tls(conn);
    const struct tlsock_info *info = NULL;

    if (tlsock_uv_conn_loop(conn) != &p->env->loop) {
        anomaly(p->env, "peer %d: tlsock_uv_conn_loop() is not the loop", p->id);
    }
    if (tls == NULL) {
        anomaly(p->env, "peer %d: tlsock_uv_conn_tls() is NULL once ready", p->id);
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
    struct peer *p = tlsock_uv_conn_user(conn);

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
        snprintf(p->connect_msg, sizeof(p->connect_msg), "%s", tlsock_uv_conn_errmsg(conn));
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

void on_server_connect(struct tlsock_uv_conn *conn, int status)
{
    struct env *env = cur_env;
    struct srv *s = srv_of(env, tlsock_uv_conn_user(conn));
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
        tlsock_uv_conn_set_user(conn, p);
        tlsock_uv_close(conn);
        return;
    }
    p->srv = s;
    p->conn = conn;
    p->hooks = s->hooks;
    p->connects = 1;
    p->connect_rc = status;
    p->connected_ms = tlsock_now_ms();
    tlsock_uv_conn_set_user(conn, p);
    if (tlsock_uv_conn_user(conn) != p) {
        anomaly(env, "tlsock_uv_conn_set_user() did not stick");
    }
    check_ready(p, conn, TLSOCK_SERVER);
    if (p->hooks.on_connect != NULL) {
        p->hooks.on_connect(p, status);
    }
}

void on_read(struct tlsock_uv_conn *conn, const void *data, size_t len)
{
    struct peer *p = tlsock_uv_conn_user(conn);

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
    if (p->hooks.discard_rx) {
        p->rx_len += len;
        if (p->hooks.on_read != NULL) {
            p->hooks.on_read(p, data, len);
        }
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

void on_event(struct tlsock_uv_conn *conn, int code)
{
    struct peer *p = tlsock_uv_conn_user(conn);

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
        snprintf(p->event_msg, sizeof(p->event_msg), "%s", tlsock_uv_conn_errmsg(conn));
    }
    if (p->hooks.on_event != NULL) {
        p->hooks.on_event(p, code);
    }
}

void on_write(struct tlsock_uv_conn *conn, void *write_arg, int status)
{
    struct peer *p = tlsock_uv_conn_user(conn);
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

void on_close(struct tlsock_uv_conn *conn)
{
    struct peer *p = tlsock_uv_conn_user(conn);

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

void on_accept_error(struct tlsock_uv_server *server, int code, const char *message)
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

void stray_server_close(struct tlsock_uv_server *server)
{
    (void)server;
    cur_env->stray++;
}

struct tlsock_uv_opts base_opts(void *user)
{
    struct tlsock_uv_opts opts = TLSOCK_UV_OPTS_INIT;

    opts.connect_timeout_ms = TS_IO_TIMEOUT_MS;
    opts.handshake_timeout_ms = TS_IO_TIMEOUT_MS;
    opts.on_read = on_read;
    opts.on_event = on_event;
    opts.on_write = on_write;
    opts.on_close = on_close;
    opts.on_accept_error = on_accept_error;
    opts.user = user;
    return opts;
}

struct tlsock_uv_opts stray_opts(struct env *env)
{
    struct tlsock_uv_opts opts = TLSOCK_UV_OPTS_INIT;

    opts.connect_timeout_ms = TS_IO_TIMEOUT_MS;
    opts.handshake_timeout_ms = TS_IO_TIMEOUT_MS;
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

void close_on_failure(struct peer *p, int status)
{
    if (status != 0) {
        peer_close(p);
    }
}

void close_on_event(struct peer *p, int code)
{
    (void)code;
    peer_close(p);
}

void echo_back(struct peer *p, const unsigned char *data, size_t len)
{
    (void)peer_write(p, data, len, true);
}

/* Clients: send tx once ready, close when it all came back (or on any failure). */
const struct hooks echo_client = {
    .on_connect = send_tx,
    .on_read = check_echo,
    .on_event = close_on_event,
};

/* Server connections: echo everything, close at the end of the stream or on an error. */
const struct hooks echo_server = {
    .on_read = echo_back,
    .on_event = close_on_event,
};

int resume_client_seen = -1;
int resume_server_seen = -1;

static int resumed_of(struct peer *p, int status)
{
    const struct tlsock_info *info = NULL;

    if (status != 0 || tlsock_conn_info(tlsock_uv_conn_tls(p->conn), &info) != 0) {
        return -1;
    }
    return info->resumed ? 1 : 0;
}

static void resume_client_connected(struct peer *p, int status)
{
    resume_client_seen = resumed_of(p, status);
    send_tx(p, status);
}

static void resume_server_connected(struct peer *p, int status)
{
    resume_server_seen = resumed_of(p, status);
}

const struct hooks resume_client = {
    .on_connect = resume_client_connected,
    .on_read = check_echo,
    .on_event = close_on_event,
};

const struct hooks resume_server = {
    .on_connect = resume_server_connected,
    .on_read = echo_back,
    .on_event = close_on_event,
};

bool echoed(const struct peer *p)
{
    return p->connect_rc == 0 && p->rx_len == p->tx_len &&
           (p->tx_len == 0 || memcmp(p->rx, p->tx, p->tx_len) == 0);
}

/* ---- starting things ------------------------------------------------------------------------- */

/* Serves @p ctx on env->host port @p port as env->srvs[@p index]; returns the call's result. */
int serve(struct env *env, int index, struct tlsock_ctx *ctx, uint16_t port,
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

struct srv *serve_ok(struct env *env, int index, struct tlsock_ctx *ctx, const struct hooks *hooks,
                     const struct tlsock_uv_opts *extra)
{
    struct srv *s = &env->srvs[index];

    TS_ASSERT_RC(serve(env, index, ctx, 0, hooks, extra), 0);
    assert_non_null(s->server);
    assert_int_not_equal(s->port, 0);
    assert_ptr_equal(tlsock_uv_server_user(s->server), s);
    return s;
}

void server_close(struct srv *s)
{
    if (s->server != NULL && !s->close_called) {
        s->close_called = true;
        tlsock_uv_server_close(s->server, srv_close_cb);
    }
}

void server_abort(struct srv *s)
{
    if (s->server != NULL && !s->close_called) {
        s->close_called = true;
        tlsock_uv_server_abort(s->server, srv_close_cb);
    }
}

/* An async client of env->host:@p port sending @p tx_len bytes of pattern @p seed. */
struct peer *client_start(struct env *env, struct tlsock_ctx *ctx, uint16_t port,
                          const struct hooks *hooks, size_t tx_len, unsigned seed)
{
    return client_start_named(env, ctx, port, NULL, NULL, hooks, tx_len, seed);
}

struct peer *client_start_named(struct env *env, struct tlsock_ctx *ctx, uint16_t port,
                                const char *servername, const char *verify_name,
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
    opts.servername = servername;
    opts.verify_name = verify_name;
    TS_ASSERT_RC(tlsock_uv_connect(&env->loop, ctx, env->host, port, &opts, &p->conn), 0);
    assert_non_null(p->conn);
    return p;
}

bool server_peers_closed(struct env *env)
{
    bool done = true;

    for (int i = 0; i < env->npeers && done; i++) {
        done = env->peers[i].srv == NULL || env->peers[i].conn == NULL;
    }
    return done;
}

/* The server still serves: a fresh client's data comes back and both ends close cleanly. */
void assert_serves_good_client(struct env *env, struct srv *s, struct tlsock_ctx *ctx)
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

void raw_watch_cb(uv_poll_t *handle, int status, int events)
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

void raw_watch_closed(uv_handle_t *handle)
{
    struct raw_watch *w = handle->data;

    w->closed = true;
}

/*
 * After a failed client the server closed its side: reading the raw socket reaches the end
 * (whatever alert came first). The loop runs meanwhile, in case the library closes through it.
 */
void assert_raw_sees_end(struct env *env, int fd)
{
    struct raw_watch w = {.fd = fd};
    int64_t start = tlsock_now_ms();

    assert_int_equal(uv_poll_init_socket(&env->loop, &w.poll, fd), 0);
    w.poll.data = &w;
    assert_int_equal(uv_poll_start(&w.poll, UV_READABLE | UV_DISCONNECT, raw_watch_cb), 0);
    guard_start(env, TS_IO_TIMEOUT_MS);
    for (long i = 0; i < RUN_MAX_ITER && !w.ended && !env->guard_fired; i++) {
        loop_turn(&env->loop);
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
int raw_connect_errno(uint16_t port, int *fd_out)
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

/* Sends all of @p buf on a non-blocking socket; @p len, or TLSOCK_ETIMEDOUT or TLSOCK_ESYS. */
ssize_t send_all(int fd, const void *buf, size_t len)
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

/* ---- certificates ---------------------------------------------------------------------------- */

void make_contexts(struct env *env)
{
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
}
