/*
 * A multi-loop server: one libuv loop per thread, each with its own tlsock_uv_serve() on the
 * same port (opts.reuseport), as `tlsock serve --threads N` runs. Blocking clients connect one
 * after another; the kernel spreads them among the listening sockets, so every loop's thread
 * runs handshakes and echoes: each one must serve some of them, and together all of them.
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
    uint16_t port;     /* in: 0 for the first loop, then the first one's port */
    int rc;            /* tlsock_uv_serve's result */
    atomic_int served; /* connections that finished their handshake here */
    atomic_int open;   /* connections not closed yet */
    atomic_int errors; /* accept errors and events other than ECLOSED */
    double cpu_s;      /* CPU time the thread used */
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
    t->rc = tlsock_uv_serve(&sl->loop, t->ctx, "127.0.0.1", t->port, 128, &opts, &t->server);
    if (t->rc == 0) {
        t->port = tlsock_uv_server_port(t->server);
    }
    return t->rc;
}

/* One blocking client: connect, send a line, read the echo, close. 0 or the failing code. */
static int client_once(struct tlsock_ctx *ctx, uint16_t port, int i)
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
    tlsock_close(conn);
    return rc;
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
        int rc = client_once(client_ctx, loops[0].port, i);
        if (rc != 0) {
            fprintf(stderr, "client %d: %s: %s\n", i, ts_rc_name(rc), tlsock_errmsg());
            failed++;
        }
    }
    /* The last echoes are back; let the servers see their clients' close_notify. */
    for (int waited = 0; waited < TS_IO_TIMEOUT_MS; waited += 10) {
        if (atomic_load(&loops[0].open) + atomic_load(&loops[1].open) == 0) {
            break;
        }
        struct timespec ten_ms = {0, 10 * 1000 * 1000};
        nanosleep(&ten_ms, NULL);
    }
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_loop_serves),
    };
    return cmocka_run_group_tests(tests, ts_pki_setup, ts_pki_teardown);
}
