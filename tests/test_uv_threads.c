/*
 * Multi-loop servers: one libuv loop per thread.
 * - Each with its own tlsock_uv_serve() on the same port (opts.reuseport). Blocking clients
 *   connect one after another; the kernel spreads them among the listening sockets, so every
 *   loop's thread runs handshakes and echoes: each one must serve some of them, and together all
 *   of them.
 * - One listener shared by a second loop's tlsock_uv_serve_shared(), as `tlsock serve --threads
 *   N` runs: each client goes to the loop with the fewest connections, which the test checks
 *   connection by connection, with clients held open and closed on purpose.
 *
 * Each server thread only records (a cmocka failure would longjmp out of uv_run()); the test
 * thread asserts after joining. Every loop is the harness's struct side_loop: bounded by a
 * guard, and required to close once its server is closed (nothing of the driver may stay).
 */
#include "support/uv_harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    LOOPS = 2,
    CLIENTS = 64,     /* the chance that all land on one of two sockets is 2^-63 */
    GUARD_MS = 60000, /* a loop gives up after this long (valgrind included) */
};

/* One loop, its thread and what it saw. */
struct loop_thread {
    struct side_loop sl;
    struct tlsock_ctx *ctx;
    struct tlsock_uv_server *server;
    struct tlsock_uv_server *share; /* in: the listener to share (tlsock_uv_serve_shared()) */
    uint16_t port;                  /* in: 0 for the first loop, then the first one's port */
    int rc;                         /* tlsock_uv_serve's result */
    atomic_int served;              /* connections that finished their handshake here */
    atomic_int open;                /* connections not closed yet */
    atomic_int errors;              /* accept errors and events other than ECLOSED */
    double cpu_s;                   /* CPU time the thread used */
};

static void lt_on_close(struct tlsock_uv_conn *conn)
{
    struct loop_thread *t = tlsock_uv_conn_user(conn);

    atomic_fetch_sub(&t->open, 1);
}

static void lt_on_connect(struct tlsock_uv_conn *conn, int status)
{
    struct loop_thread *t = tlsock_uv_conn_user(conn);

    atomic_fetch_add(&t->open, 1);
    if (status == 0) {
        atomic_fetch_add(&t->served, 1);
    } else {
        atomic_fetch_add(&t->errors, 1);
        tlsock_uv_close(conn);
    }
}

/* Echoes; the bytes are copied because the write needs them until on_write. */
static void lt_on_read(struct tlsock_uv_conn *conn, const void *data, size_t len)
{
    void *copy = malloc(len);

    if (copy == NULL) {
        tlsock_uv_close(conn);
        return;
    }
    memcpy(copy, data, len);
    if (tlsock_uv_write(conn, copy, len, copy) != 0) {
        free(copy);
        tlsock_uv_close(conn);
    }
}

static void lt_on_write(struct tlsock_uv_conn *conn, void *write_arg, int status)
{
    (void)conn;
    (void)status;
    free(write_arg);
}

static void lt_on_event(struct tlsock_uv_conn *conn, int code)
{
    struct loop_thread *t = tlsock_uv_conn_user(conn);

    if (code != TLSOCK_ECLOSED) {
        atomic_fetch_add(&t->errors, 1);
    }
    tlsock_uv_close(conn);
}

static void lt_on_accept_error(struct tlsock_uv_server *server, int code, const char *message)
{
    struct loop_thread *t = tlsock_uv_server_user(server);

    fprintf(stderr, "accept error %s: %s\n", tlsock_err_name(code), message);
    atomic_fetch_add(&t->errors, 1);
}

/* In the loop's thread, when it is asked to end: the server closes, connections close with their
 * peers. */
static void stop_loop(struct side_loop *sl)
{
    struct loop_thread *t = sl->arg;
    struct timespec cpu;

    if (t->server != NULL) {
        tlsock_uv_server_close(t->server, NULL);
        t->server = NULL;
    }
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu);
    t->cpu_s = (double)cpu.tv_sec + (double)cpu.tv_nsec / 1e9;
}

static int serve_on_loop(struct side_loop *sl)
{
    struct loop_thread *t = sl->arg;
    struct tlsock_uv_opts opts = TLSOCK_UV_OPTS_INIT;

    opts.on_connect = lt_on_connect;
    opts.on_read = lt_on_read;
    opts.on_write = lt_on_write;
    opts.on_event = lt_on_event;
    opts.on_close = lt_on_close;
    opts.on_accept_error = lt_on_accept_error;
    opts.handshake_timeout_ms = TS_IO_TIMEOUT_MS;
    opts.reuseport = true;
    opts.user = t;
    if (t->share != NULL) {
        t->rc = tlsock_uv_serve_shared(&sl->loop, t->ctx, t->share, &opts, &t->server);
    } else {
        t->rc = tlsock_uv_serve(&sl->loop, t->ctx, "127.0.0.1", t->port, 128, &opts, &t->server);
    }
    if (t->rc == 0) {
        t->port = tlsock_uv_server_port(t->server);
    }
    return t->rc;
}

/* A blocking client that connected, sent a line and read its echo, into *@p out (left open).
 * 0 or the failing code. */
static int client_open(struct tlsock_ctx *ctx, uint16_t port, int i, struct tlsock_conn **out)
{
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    char msg[32];
    char echo[32];
    int len = snprintf(msg, sizeof(msg), "client %d", i);
    int rc = tlsock_connect(ctx, "127.0.0.1", port, &opts, &conn);

    if (rc == 0) {
        rc = tlsock_write(conn, msg, (size_t)len);
    }
    if (rc == 0) {
        rc = ts_read_full(conn, echo, (size_t)len);
    }
    if (rc == 0 && memcmp(msg, echo, (size_t)len) != 0) {
        rc = TS_EMISMATCH;
    }
    if (rc != 0) {
        fprintf(stderr, "client %d: %s: %s\n", i, ts_rc_name(rc), tlsock_errmsg());
        tlsock_close(conn);
        conn = NULL;
    }
    *out = conn;
    return rc;
}

/* One blocking client: connect, send a line, read the echo, close. 0 or the failing code. */
static int client_once(struct tlsock_ctx *ctx, uint16_t port, int i)
{
    struct tlsock_conn *conn = NULL;
    int rc = client_open(ctx, port, i, &conn);

    tlsock_close(conn);
    return rc;
}

/* Waits (bounded) until the loops' servers saw @p open0 and @p open1 connections open. */
static bool wait_open(struct loop_thread *loops, int open0, int open1)
{
    for (int waited = 0; waited < TS_IO_TIMEOUT_MS; waited += 5) {
        if (atomic_load(&loops[0].open) == open0 && atomic_load(&loops[1].open) == open1) {
            return true;
        }
        struct timespec five_ms = {0, 5 * 1000 * 1000};
        nanosleep(&five_ms, NULL);
    }
    return false;
}

static void test_every_loop_serves(void **state)
{
    struct loop_thread loops[LOOPS];
    struct tlsock_ctx *server_ctx = NULL;
    struct tlsock_ctx *client_ctx = NULL;
    int failed = 0;
    (void)state;

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &server_ctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &client_ctx), 0);
    memset(loops, 0, sizeof(loops));
    for (int i = 0; i < LOOPS; i++) {
        struct loop_thread *t = &loops[i];
        t->ctx = server_ctx;
        t->port = i == 0 ? 0 : loops[0].port;
        TS_ASSERT_RC(side_loop_start(&t->sl, serve_on_loop, stop_loop, t, GUARD_MS), 0);
    }
    for (int i = 0; i < CLIENTS; i++) {
        failed += client_once(client_ctx, loops[0].port, i) != 0;
    }
    /* The last echoes are back; let the servers see their clients' close_notify. */
    wait_open(loops, 0, 0);
    int joined[LOOPS];
    for (int i = 0; i < LOOPS; i++) {
        side_loop_stop(&loops[i].sl);
        joined[i] = side_loop_join(&loops[i].sl);
    }
    tlsock_ctx_free(server_ctx);
    tlsock_ctx_free(client_ctx);

    int total = 0;
    for (int i = 0; i < LOOPS; i++) {
        printf("loop %d: %d connections, %.3f s of CPU\n", i, atomic_load(&loops[i].served),
               loops[i].cpu_s);
        assert_int_equal(joined[i], 0);
        assert_int_equal(atomic_load(&loops[i].errors), 0);
        assert_int_equal(atomic_load(&loops[i].open), 0);
        /* Every loop, each on its own thread (core), did handshakes and echoes. */
        assert_true(atomic_load(&loops[i].served) > 0);
        total += atomic_load(&loops[i].served);
    }
    assert_int_equal(failed, 0);
    assert_int_equal(total, CLIENTS);
}

/* The served counts of both loops are @p on0 and @p on1. */
#define ASSERT_SERVED(loops, on0, on1)                                                             \
    do {                                                                                           \
        assert_int_equal(atomic_load(&(loops)[0].served), (on0));                                  \
        assert_int_equal(atomic_load(&(loops)[1].served), (on1));                                  \
    } while (0)

static void test_shared_listener_spreads_by_load(void **state)
{
    enum { HELD = 6 };
    struct loop_thread loops[LOOPS];
    struct tlsock_conn *held[HELD] = {NULL};
    struct tlsock_conn *late = NULL;
    struct tlsock_ctx *server_ctx = NULL;
    struct tlsock_ctx *client_ctx = NULL;
    (void)state;

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &server_ctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &client_ctx), 0);
    memset(loops, 0, sizeof(loops));
    loops[0].ctx = server_ctx;
    TS_ASSERT_RC(side_loop_start(&loops[0].sl, serve_on_loop, stop_loop, &loops[0], GUARD_MS), 0);
    /* Joined from the second loop's thread while the first loop runs. */
    loops[1].ctx = server_ctx;
    loops[1].share = loops[0].server;
    TS_ASSERT_RC(side_loop_start(&loops[1].sl, serve_on_loop, stop_loop, &loops[1], GUARD_MS), 0);
    assert_int_equal(loops[1].port, loops[0].port);
    uint16_t port = loops[0].port;
    /* Only a server with a listener can be shared; the checks touch no loop. */
    struct tlsock_uv_opts opts = TLSOCK_UV_OPTS_INIT;
    struct tlsock_uv_server *bad = NULL;
    opts.on_connect = lt_on_connect;
    assert_int_equal(tlsock_uv_serve_shared(&loops[1].sl.loop, server_ctx, NULL, &opts, &bad),
                     TLSOCK_EINVAL);
    assert_int_equal(
        tlsock_uv_serve_shared(&loops[1].sl.loop, server_ctx, loops[1].server, &opts, &bad),
        TLSOCK_EINVAL);
    assert_null(bad);
    /* ... nor one closed already (before its close callback ran: it still exists). */
    uv_loop_t here;
    struct tlsock_uv_server *closed = NULL;
    assert_int_equal(uv_loop_init(&here), 0);
    TS_ASSERT_RC(tlsock_uv_serve(&here, server_ctx, "127.0.0.1", 0, 0, &opts, &closed), 0);
    tlsock_uv_server_close(closed, NULL);
    assert_int_equal(tlsock_uv_serve_shared(&here, server_ctx, closed, &opts, &bad), TLSOCK_EINVAL);
    assert_null(bad);
    uv_run(&here, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&here), 0);

    /* Held open, one after another: the loads go 0-0, 1-0, 1-1, 2-1: they alternate. */
    for (int i = 0; i < 4; i++) {
        TS_ASSERT_RC(client_open(client_ctx, port, i, &held[i]), 0);
        ASSERT_SERVED(loops, (i + 2) / 2, (i + 1) / 2);
    }
    /* The second loop's two close: the next two both go there (round robin would alternate). */
    tlsock_close(held[1]);
    tlsock_close(held[3]);
    held[1] = held[3] = NULL;
    assert_true(wait_open(loops, 2, 0));
    TS_ASSERT_RC(client_open(client_ctx, port, 4, &held[4]), 0);
    TS_ASSERT_RC(client_open(client_ctx, port, 5, &held[5]), 0);
    ASSERT_SERVED(loops, 2, 4);
    for (int i = 0; i < HELD; i++) {
        tlsock_close(held[i]);
    }
    assert_true(wait_open(loops, 0, 0));
    /* A closed server is given nothing: the second loop ends, and the first serves alone. */
    side_loop_stop(&loops[1].sl);
    assert_int_equal(side_loop_join(&loops[1].sl), 0);
    TS_ASSERT_RC(client_open(client_ctx, port, 6, &late), 0);
    tlsock_close(late);
    ASSERT_SERVED(loops, 3, 4);
    assert_true(wait_open(loops, 0, 0));
    side_loop_stop(&loops[0].sl);
    assert_int_equal(side_loop_join(&loops[0].sl), 0);
    tlsock_ctx_free(server_ctx);
    tlsock_ctx_free(client_ctx);
    for (int i = 0; i < LOOPS; i++) {
        assert_int_equal(atomic_load(&loops[i].errors), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_loop_serves),
        cmocka_unit_test(test_shared_listener_spreads_by_load),
    };
    return cmocka_run_group_tests(tests, ts_pki_setup, ts_pki_teardown);
}
