/*
 * Echo over one TLS 1.3 connection on loopback TCP: the client writes write_size bytes at a time
 * and keeps window bytes in flight (written, not echoed back yet), the server writes back what
 * it reads. The rate counts the bytes that came back, timed from the end of the handshake to the
 * last byte back; the server checks that it read what the client got back. Besides MiB/s: client
 * and server CPU time per MiB, each thread measuring its own.
 *
 * tlsock: a tlsock_uv server on a loop in its own thread (uv_server.c) and a tlsock_uv client on a
 * loop in the calling thread. Raw: the implementation on blocking sockets, a server thread and a
 * client thread (write one chunk, then read while window bytes or more are in flight), through
 * struct bench_ops.
 */
#include <stdio.h>
#include <string.h>

#include "async.h"
#include "side.h"

/* From docs/DESIGN.md: the driver's throughput at least 0.90 of raw blocking use. */
#define ASYNC_TARGET 0.90

/* A tlsock_uv run that has not ended this long after its time budget is stuck: it fails. */
#define GUARD_EXTRA_MS 15000

/* ---- Raw: blocking sockets ---- */

/*
 * The client's loop: one write, then reads until fewer than window bytes are in flight. Blocking
 * sockets cannot deadlock on this as long as the window fits the kernel's loopback buffers in
 * both directions, which 64 KiB does with a wide margin.
 */
static int echo_stream(const struct bench_ops *ops, void *conn, const struct bench_limits *limits,
                       uint64_t *received)
{
    static unsigned char buf[BENCH_RECORD];
    const unsigned char *chunk = bench_payload();
    int64_t start_ns = bench_now_ns();
    int64_t budget_ns = (int64_t)(limits->seconds * 1e9);
    uint64_t sent = 0;
    uint64_t back = 0;
    size_t n = 0;
    int rc = BENCH_OK;

    while (rc == BENCH_OK && sent < limits->max_count && bench_now_ns() - start_ns < budget_ns) {
        rc = ops->write(conn, chunk, limits->write_size);
        if (rc == BENCH_OK) {
            sent += limits->write_size;
        }
        while (rc == BENCH_OK && sent - back >= limits->window) {
            rc = ops->read(conn, buf, sizeof(buf), &n);
            back += n;
        }
    }
    while (rc == BENCH_OK && back < sent) {
        rc = ops->read(conn, buf, sizeof(buf), &n);
        back += n;
    }
    if (rc == BENCH_CLOSED) {
        fprintf(stderr, "%s: echo server closed after %llu of %llu bytes\n", ops->name,
                (unsigned long long)back, (unsigned long long)sent);
        rc = BENCH_ERROR;
    }
    *received = back;
    return rc;
}

int bench_echo_client(const struct bench_run *run, uint16_t port, struct bench_sample *out)
{
    const struct bench_ops *ops = run->raw_ops;
    void *conn = NULL;
    uint64_t received = 0;
    int64_t start_ns = 0;
    int64_t end_ns = 0;
    int64_t cpu0 = 0;
    int64_t cpu_ns = 0;
    int rc = ops->connect(run->raw_env, port, &conn);

    if (rc != BENCH_OK) {
        goto out;
    }
    snprintf(out->cipher, sizeof(out->cipher), "%s", ops->cipher(conn));
    snprintf(out->impl, sizeof(out->impl), "%s", ops->impl(conn));
    /* As in the throughput case, the clock starts after the handshake. */
    start_ns = bench_now_ns();
    cpu0 = bench_thread_cpu_ns();
    rc = echo_stream(ops, conn, &run->limits, &received);
    end_ns = bench_now_ns();
    cpu_ns = bench_thread_cpu_ns() - cpu0;
    if (rc == BENCH_OK) {
        rc = ops->shutdown(conn);
    }
    ops->close(conn);
    if (rc == BENCH_OK && received == 0) {
        fprintf(stderr, "%s: nothing was echoed\n", ops->name);
        rc = BENCH_ERROR;
    }
    if (rc == BENCH_OK) {
        out->count = received;
        out->rate = bench_mib(received) / ((double)(end_ns - start_ns) / 1e9);
        out->client_cpu_us = bench_us_per(cpu_ns, bench_mib(received));
    }

out:
    return rc;
}

/* Whatever the server, it read what the client got back; its CPU time per MiB. */
static int check_server(const char *who, int rc, uint64_t bytes, int64_t cpu_ns,
                        struct bench_sample *out)
{
    if (rc == BENCH_OK && bytes != out->count) {
        fprintf(stderr, "%s: echo server read %llu bytes, client got %llu back\n", who,
                (unsigned long long)bytes, (unsigned long long)out->count);
        rc = BENCH_ERROR;
    }
    if (rc == BENCH_OK) {
        out->server_cpu_us = bench_us_per(cpu_ns, bench_mib(bytes));
    }
    return rc;
}

int bench_echo_blocking(const struct bench_run *run, struct bench_sample *out)
{
    struct bench_server srv;
    int rc = bench_server_start(&srv, run->ops, run->env, BENCH_SERVE_ECHO, 1);

    if (rc == BENCH_OK) {
        rc = bench_echo_client(run, srv.port, out);
        if (bench_server_stop(&srv) != BENCH_OK && rc == BENCH_OK) {
            rc = BENCH_ERROR;
        }
        rc = check_server(run->ops->name, rc, srv.bytes, srv.serve_cpu_ns, out);
    }
    return rc;
}

/* ---- tlsock: a tlsock_uv client against a tlsock_uv server ---- */

struct echo_client {
    uv_loop_t loop;
    uv_timer_t guard;
    struct tlsock_uv_conn *conn;
    const struct bench_limits *limits;
    const unsigned char *chunk;
    int64_t start_ns;
    int64_t end_ns;
    int64_t cpu0_ns;
    int64_t cpu_ns;
    uint64_t sent;
    uint64_t back;
    bool draining; /* the time is up: no more writes, wait for the echo of the rest */
    int rc;
    struct bench_sample *out;
};

static void client_fail(struct echo_client *c, int code, const char *what)
{
    if (c->rc == BENCH_OK) {
        fprintf(stderr, "tlsock-uv client: %s: %s: %s\n", what, tlsock_err_name(code),
                c->conn != NULL ? tlsock_uv_conn_errmsg(c->conn) : "");
        c->rc = BENCH_ERROR;
    }
    tlsock_uv_close(c->conn);
}

/* Writes until window bytes are in flight, as the blocking client does. */
static void client_fill(struct echo_client *c)
{
    size_t len = c->limits->write_size;
    int rc = 0;

    while (rc == 0 && c->sent - c->back < c->limits->window) {
        rc = tlsock_uv_write(c->conn, c->chunk, len, NULL);
        if (rc == 0) {
            c->sent += len;
        }
    }
    if (rc != 0) {
        client_fail(c, rc, "write");
    }
}

static void client_on_connect(struct tlsock_uv_conn *conn, int status)
{
    struct echo_client *c = tlsock_uv_conn_user(conn);

    if (status != 0) {
        client_fail(c, status, "connect");
        return;
    }
    bench_uv_name(conn, c->out->cipher, sizeof(c->out->cipher), c->out->impl, sizeof(c->out->impl));
    /* As in the blocking echo, the clock starts after the handshake. */
    c->start_ns = bench_now_ns();
    c->cpu0_ns = bench_thread_cpu_ns();
    client_fill(c);
}

static void client_on_read(struct tlsock_uv_conn *conn, const void *data, size_t len)
{
    struct echo_client *c = tlsock_uv_conn_user(conn);
    int64_t now = bench_now_ns();

    (void)data;
    c->back += len;
    if (!c->draining && (now - c->start_ns >= (int64_t)(c->limits->seconds * 1e9) ||
                         c->sent >= c->limits->max_count)) {
        c->draining = true;
    }
    if (!c->draining) {
        client_fill(c);
    } else if (c->back >= c->sent && c->end_ns == 0) {
        c->end_ns = now;
        c->cpu_ns = bench_thread_cpu_ns() - c->cpu0_ns;
        tlsock_uv_close(conn);
    }
}

static void client_on_write(struct tlsock_uv_conn *conn, void *write_arg, int status)
{
    struct echo_client *c = tlsock_uv_conn_user(conn);

    (void)write_arg;
    if (status != 0 && c->end_ns == 0) {
        client_fail(c, status, "write completion");
    }
}

static void client_on_event(struct tlsock_uv_conn *conn, int code)
{
    struct echo_client *c = tlsock_uv_conn_user(conn);

    if (c->end_ns == 0) {
        client_fail(c, code, "event");
    } else {
        tlsock_uv_close(conn);
    }
}

static void client_on_close(struct tlsock_uv_conn *conn)
{
    struct echo_client *c = tlsock_uv_conn_user(conn);

    c->conn = NULL;
    uv_close((uv_handle_t *)&c->guard, NULL);
}

static void client_on_guard(uv_timer_t *timer)
{
    struct echo_client *c = timer->data;

    fprintf(stderr, "tlsock-uv client: the echo run is stuck (sent %llu, back %llu)\n",
            (unsigned long long)c->sent, (unsigned long long)c->back);
    c->rc = BENCH_ERROR;
    tlsock_uv_close(c->conn);
}

/* The tlsock_uv echo client against 127.0.0.1:@p port, on a loop in the calling thread. */
static int uv_echo_client(struct tlsock_ctx *ctx, uint16_t port, const struct bench_limits *limits,
                          struct bench_sample *out)
{
    struct echo_client c = {.limits = limits, .chunk = bench_payload(), .out = out};
    struct tlsock_uv_opts opts;
    int rc = uv_loop_init(&c.loop);

    if (rc != 0) {
        fprintf(stderr, "tlsock-uv client: uv_loop_init: %s\n", uv_strerror(rc));
        return BENCH_ERROR;
    }
    (void)uv_timer_init(&c.loop, &c.guard);
    c.guard.data = &c;
    (void)uv_timer_start(&c.guard, client_on_guard,
                         (uint64_t)(limits->seconds * 1000) + GUARD_EXTRA_MS, 0);
    bench_uv_opts(&opts, &c);
    opts.servername = BENCH_SERVER_NAME;
    opts.on_connect = client_on_connect;
    opts.on_read = client_on_read;
    opts.on_event = client_on_event;
    opts.on_write = client_on_write;
    opts.on_close = client_on_close;
    rc = tlsock_uv_connect(&c.loop, ctx, "127.0.0.1", port, &opts, &c.conn);
    if (rc != 0) {
        fprintf(stderr, "tlsock-uv client: connect: %s: %s\n", tlsock_err_name(rc),
                tlsock_errmsg());
        c.rc = BENCH_ERROR;
        uv_close((uv_handle_t *)&c.guard, NULL);
    }
    (void)uv_run(&c.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&c.loop) != 0) {
        fprintf(stderr, "tlsock-uv client: loop still busy at the end\n");
        c.rc = BENCH_ERROR;
    }
    if (c.rc == BENCH_OK && c.end_ns == 0) {
        fprintf(stderr, "tlsock-uv client: closed before the echo was complete\n");
        c.rc = BENCH_ERROR;
    }
    if (c.rc == BENCH_OK) {
        out->count = c.back;
        out->rate = bench_mib(c.back) / ((double)(c.end_ns - c.start_ns) / 1e9);
        out->client_cpu_us = bench_us_per(c.cpu_ns, bench_mib(c.back));
    }
    return c.rc;
}

/*
 * The tlsock_uv client (@p uv_client) or the raw blocking one against a tlsock_uv echo server,
 * which is then stopped and checked.
 */
static int against_uv_server(const struct bench_run *run, bool uv_client, struct bench_sample *out)
{
    struct tls_env *env = run->env;
    struct bench_uv_server srv;
    int rc = bench_uv_server_init(&srv, env->server, BENCH_UV_ECHO);

    if (rc == BENCH_OK) {
        rc = bench_uv_server_start(&srv);
    }
    if (rc == BENCH_OK) {
        rc = uv_client ? uv_echo_client(env->client, srv.port, &run->limits, out)
                       : bench_echo_client(run, srv.port, out);
        if (bench_uv_server_stop(&srv) != BENCH_OK && rc == BENCH_OK) {
            rc = BENCH_ERROR;
        }
        rc = check_server("tlsock-uv", rc, srv.bytes, srv.echo_cpu_ns, out);
    }
    return rc;
}

static int uv_echo(const struct bench_run *run, struct bench_sample *out)
{
    return against_uv_server(run, true, out);
}

int bench_echo_uv_server(const struct bench_run *run, struct bench_sample *out)
{
    return against_uv_server(run, false, out);
}

/* Both cases: raw blocking echo against the tlsock_uv client and server. */
#define ECHO_CASE                                                                                  \
    .target = ASYNC_TARGET, BENCH_ECHO_CASE,                                                       \
    .sides = {                                                                                     \
        {"raw", BENCH_LAYER_RAW, bench_echo_blocking},                                             \
        {"tlsock", BENCH_LAYER_TLSOCK, uv_echo},                                                   \
    }

static const struct bench_case cases[] = {
    {.name = "async-echo-aes128gcm",
     .summary = "echo, TLS 1.3 AES-128-GCM, 16 KiB writes, 64 KiB in flight: tlsock_uv client "
                "and server (a loop each) against raw OpenSSL on blocking sockets",
     ECHO_CASE},
    {.name = "async-echo-aes128gcm-gnutls",
     .summary = "as async-echo-aes128gcm, tlsock_uv on GnuTLS against raw GnuTLS",
     .impl = TLSOCK_IMPL_GNUTLS,
     ECHO_CASE},
};

const struct bench_cases bench_echo_cases = BENCH_CASES(cases);
