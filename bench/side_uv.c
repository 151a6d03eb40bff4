/*
 * The measured side of the async cases: tlsock's libuv driver (tlsock/uv.h), public API only.
 *
 * Servers run a tlsock_uv server on a loop of their own in a thread of their own, as an
 * application with one loop per core would; clients run on other loops in other threads. Each
 * thread measures its own CPU time. The workloads are the same as the blocking baselines'
 * (bench/workload.c, bench/workload_parallel.c): an echo with a bounded window of bytes in flight,
 * and full handshakes with several connections in flight, each closed once it is ready.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "async.h"
#include "side_tlsock.h"
#include "tlsock/uv.h"

/* A run that has not ended this long after its time budget is stuck: it fails. */
#define GUARD_EXTRA_MS 15000

/* A server whose connections have not all closed this long after the stop request is stuck. */
#define STOP_GUARD_MS 30000

/* Echo server backpressure: stop reading above this many queued bytes, resume below LOW. */
#define WRITE_QUEUE_HIGH (1024 * 1024)
#define WRITE_QUEUE_LOW  (256 * 1024)

/*
 * Echo server copies: buffers of one record's plaintext, kept on a free list for reuse, so that
 * the bench's own allocations do not add heap churn to what is measured (a real echo server
 * would pool them too). Larger reads, if any, are allocated one by one.
 */
#define ECHO_BUF_SIZE (16 * 1024)
#define ECHO_POOL_MAX 64

/* Handshake clients: at most this many connections in flight per client loop. */
#define MAX_IN_FLIGHT 64

/* The driver takes the TCP connect, handshake and write timeouts from these. */
static void base_opts(struct tlsock_uv_opts *opts, void *user)
{
    const struct tlsock_uv_opts init = TLSOCK_UV_OPTS_INIT;

    *opts = init;
    opts->connect_timeout_ms = BENCH_IO_TIMEOUT_MS;
    opts->handshake_timeout_ms = BENCH_IO_TIMEOUT_MS;
    opts->write_timeout_ms = BENCH_IO_TIMEOUT_MS;
    opts->user = user;
}

static void name_conn(struct tlsock_uv_conn *conn, char *cipher, size_t cipher_len, char *impl,
                      size_t impl_len)
{
    const struct tlsock_info *info = NULL;
    struct tlsock_conn *tls = tlsock_uv_conn_tls(conn);

    if (tls != NULL && tlsock_conn_info(tls, &info) == 0) {
        snprintf(cipher, cipher_len, "%s", info->cipher);
        snprintf(impl, impl_len, "%s", info->impl);
    } else {
        snprintf(cipher, cipher_len, "?");
        snprintf(impl, impl_len, "?");
    }
}

/* ---- The server: a loop in its own thread ---- */

/* One connection the server handed to us; the list lets a stop request close them all. */
struct srv_conn {
    struct srv_conn *prev;
    struct srv_conn *next;
    struct tlsock_uv_conn *conn;
    struct bench_uv_server *srv;
    bool paused; /* reading stopped for backpressure */
};

/* Called from the loop thread only, except where said. */
static void srv_fail(struct bench_uv_server *srv, int code, const char *what, const char *msg)
{
    if (!srv->stopping && srv->rc == BENCH_OK) {
        fprintf(stderr, "tlsock-uv server: %s: %s: %s\n", what, tlsock_err_name(code), msg);
        srv->rc = BENCH_ERROR;
    }
}

static void srv_unlink(struct srv_conn *node)
{
    if (node->prev != NULL) {
        node->prev->next = node->next;
    } else {
        node->srv->conns = node->next;
    }
    if (node->next != NULL) {
        node->next->prev = node->prev;
    }
}

static void srv_on_close(struct tlsock_uv_conn *conn)
{
    struct srv_conn *node = tlsock_uv_conn_user(conn);

    /* Connections closed in on_connect never got a node (their user pointer is NULL). */
    if (node != NULL) {
        srv_unlink(node);
        free(node);
    }
}

static void srv_on_connect(struct tlsock_uv_conn *conn, int status)
{
    struct bench_uv_server *srv = tlsock_uv_conn_user(conn);
    struct srv_conn *node = NULL;

    srv->handshakes++;
    if (status != 0) {
        srv_fail(srv, status, "connect", tlsock_uv_conn_errmsg(conn));
    }
    if (status == 0 && srv->mode != BENCH_UV_CLOSE && !srv->stopping) {
        node = calloc(1, sizeof(*node));
        if (node == NULL) {
            srv_fail(srv, TLSOCK_ENOMEM, "connect", "out of memory");
        }
    }
    if (node == NULL) {
        tlsock_uv_conn_set_user(conn, NULL);
        tlsock_uv_close(conn);
        goto out;
    }
    node->conn = conn;
    node->srv = srv;
    node->next = srv->conns;
    if (srv->conns != NULL) {
        srv->conns->prev = node;
    }
    srv->conns = node;
    tlsock_uv_conn_set_user(conn, node);
    if (srv->mode == BENCH_UV_ECHO) {
        srv->echo_cpu0_ns = bench_thread_cpu_ns();
    }

out:
    return;
}

/* A pooled buffer's header; the data follows it. */
struct echo_buf {
    struct echo_buf *next;
    size_t size;
    unsigned char data[];
};

static struct echo_buf *echo_buf_get(struct bench_uv_server *srv, size_t len)
{
    struct echo_buf *b = NULL;

    if (len <= ECHO_BUF_SIZE && srv->pool != NULL) {
        b = srv->pool;
        srv->pool = b->next;
        srv->pooled--;
    } else {
        size_t size = len > ECHO_BUF_SIZE ? len : ECHO_BUF_SIZE;

        b = malloc(sizeof(*b) + size);
        if (b != NULL) {
            b->size = size;
        }
    }
    return b;
}

static void echo_buf_put(struct bench_uv_server *srv, struct echo_buf *b)
{
    if (b != NULL && b->size == ECHO_BUF_SIZE && srv->pooled < ECHO_POOL_MAX) {
        b->next = srv->pool;
        srv->pool = b;
        srv->pooled++;
    } else {
        free(b);
    }
}

/*
 * The data is valid only during the call and a write's buffer must stay until its callback, so
 * an echo server copies: into a pooled buffer, given back in on_write.
 */
static void srv_on_read(struct tlsock_uv_conn *conn, const void *data, size_t len)
{
    struct srv_conn *node = tlsock_uv_conn_user(conn);
    struct bench_uv_server *srv = NULL;
    struct echo_buf *copy = NULL;
    int rc;

    if (node == NULL) {
        goto out;
    }
    srv = node->srv;
    copy = echo_buf_get(srv, len);
    rc = copy == NULL ? TLSOCK_ENOMEM : 0;
    if (rc == 0) {
        memcpy(copy->data, data, len);
        rc = tlsock_uv_write(conn, copy->data, len, copy);
    }
    if (rc != 0) {
        echo_buf_put(srv, copy);
        srv_fail(srv, rc, "write", tlsock_uv_conn_errmsg(conn));
        tlsock_uv_close(conn);
        goto out;
    }
    srv->bytes += len;
    if (!node->paused && tlsock_uv_conn_write_queue_size(conn) > WRITE_QUEUE_HIGH) {
        node->paused = true;
        (void)tlsock_uv_read_stop(conn);
    }

out:
    return;
}

static void srv_on_write(struct tlsock_uv_conn *conn, void *write_arg, int status)
{
    struct srv_conn *node = tlsock_uv_conn_user(conn);

    if (node != NULL) {
        echo_buf_put(node->srv, write_arg);
    } else {
        free(write_arg);
    }
    if (node != NULL && status != 0 && status != TLSOCK_ECANCELED) {
        srv_fail(node->srv, status, "write completion", tlsock_uv_conn_errmsg(conn));
    }
    if (node != NULL && node->paused && tlsock_uv_conn_write_queue_size(conn) < WRITE_QUEUE_LOW) {
        node->paused = false;
        (void)tlsock_uv_read_start(conn);
    }
}

static void srv_on_event(struct tlsock_uv_conn *conn, int code)
{
    struct srv_conn *node = tlsock_uv_conn_user(conn);
    struct bench_uv_server *srv = node != NULL ? node->srv : NULL;

    if (srv == NULL) {
        /* Closed in on_connect already. */
    } else if (code == TLSOCK_ECLOSED) {
        if (srv->mode == BENCH_UV_ECHO && srv->echo_cpu_ns == 0) {
            srv->echo_cpu_ns = bench_thread_cpu_ns() - srv->echo_cpu0_ns;
        }
    } else {
        srv_fail(srv, code, "event", tlsock_uv_conn_errmsg(conn));
    }
    tlsock_uv_close(conn);
}

static void srv_on_accept_error(struct tlsock_uv_server *server, int code, const char *message)
{
    srv_fail(tlsock_uv_server_user(server), code, "accept", message);
}

/*
 * The driver bounds every close with its own timers; should a close never finish anyway, the
 * bench stops loudly instead of waiting in pthread_join forever.
 */
static void srv_on_stop_guard(uv_timer_t *timer)
{
    (void)timer;
    fprintf(stderr, "tlsock-uv server: connections still open %d ms after the stop; aborting\n",
            STOP_GUARD_MS);
    abort();
}

/* The stop request (uv_async_send from another thread): close everything, the loop then ends. */
static void srv_on_wake(uv_async_t *wake)
{
    struct bench_uv_server *srv = wake->data;

    srv->stopping = true;
    /* Unreferenced: it does not keep the loop running, srv_thread closes it at the end. */
    (void)uv_timer_init(&srv->loop, &srv->stop_guard);
    (void)uv_timer_start(&srv->stop_guard, srv_on_stop_guard, STOP_GUARD_MS, 0);
    uv_unref((uv_handle_t *)&srv->stop_guard);
    srv->guarded = true;
    if (srv->mode == BENCH_UV_ECHO && srv->echo_cpu_ns == 0 && srv->echo_cpu0_ns != 0) {
        srv->echo_cpu_ns = bench_thread_cpu_ns() - srv->echo_cpu0_ns;
    }
    tlsock_uv_server_close(srv->server, NULL);
    /* on_close never runs from within tlsock_uv_close(), but take the next pointer first anyway. */
    for (struct srv_conn *node = srv->conns, *next = NULL; node != NULL; node = next) {
        next = node->next;
        tlsock_uv_close(node->conn);
    }
    uv_close((uv_handle_t *)wake, NULL);
}

static void *srv_thread(void *arg)
{
    struct bench_uv_server *srv = arg;
    int64_t cpu0 = bench_thread_cpu_ns();

    /* Ends when the server and every connection are closed, after the stop request. */
    (void)uv_run(&srv->loop, UV_RUN_DEFAULT);
    if (srv->guarded) {
        uv_close((uv_handle_t *)&srv->stop_guard, NULL);
        (void)uv_run(&srv->loop, UV_RUN_DEFAULT);
    }
    srv->thread_cpu_ns = bench_thread_cpu_ns() - cpu0;
    return NULL;
}

int bench_uv_server_start(struct bench_uv_server *srv, struct tlsock_ctx *ctx,
                          enum bench_uv_mode mode)
{
    struct tlsock_uv_opts opts;
    int rc;

    memset(srv, 0, sizeof(*srv));
    srv->mode = mode;
    rc = uv_loop_init(&srv->loop);
    if (rc != 0) {
        fprintf(stderr, "tlsock-uv server: uv_loop_init: %s\n", uv_strerror(rc));
        rc = BENCH_ERROR;
        goto out;
    }
    base_opts(&opts, srv);
    opts.connect_timeout_ms = 0;
    opts.on_connect = srv_on_connect;
    opts.on_read = srv_on_read;
    opts.on_event = srv_on_event;
    opts.on_write = srv_on_write;
    opts.on_close = srv_on_close;
    opts.on_accept_error = srv_on_accept_error;
    /* Set up before the loop runs, which the contract allows from any thread. */
    rc = tlsock_uv_serve(&srv->loop, ctx, "127.0.0.1", 0, 128, &opts, &srv->server);
    if (rc != 0) {
        fprintf(stderr, "tlsock-uv server: serve: %s: %s\n", tlsock_err_name(rc), tlsock_errmsg());
        rc = BENCH_ERROR;
        goto close_loop;
    }
    srv->port = tlsock_uv_server_port(srv->server);
    srv->wake.data = srv;
    rc = uv_async_init(&srv->loop, &srv->wake, srv_on_wake);
    if (rc == 0) {
        rc = pthread_create(&srv->thread, NULL, srv_thread, srv) == 0 ? 0 : UV_EAGAIN;
        if (rc != 0) {
            uv_close((uv_handle_t *)&srv->wake, NULL);
        }
    }
    if (rc != 0) {
        fprintf(stderr, "tlsock-uv server: cannot start its thread\n");
        /* Nothing runs the loop yet: close the server here and let the loop finish it. */
        tlsock_uv_server_close(srv->server, NULL);
        (void)uv_run(&srv->loop, UV_RUN_DEFAULT);
        rc = BENCH_ERROR;
        goto close_loop;
    }
    rc = BENCH_OK;
    goto out;

close_loop:
    (void)uv_loop_close(&srv->loop);
out:
    return rc;
}

int bench_uv_server_stop(struct bench_uv_server *srv)
{
    int rc;

    (void)uv_async_send(&srv->wake);
    pthread_join(srv->thread, NULL);
    while (srv->pool != NULL) {
        struct echo_buf *b = srv->pool;

        srv->pool = b->next;
        free(b);
    }
    rc = uv_loop_close(&srv->loop);
    if (rc != 0) {
        fprintf(stderr, "tlsock-uv server: loop still busy after the stop: %s\n", uv_strerror(rc));
        srv->rc = BENCH_ERROR;
    }
    return srv->rc;
}

/* ---- The echo client: a loop in the calling thread ---- */

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
    char cipher[64];
    char impl[16];
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

/* Writes until limits->window bytes are in flight, as the blocking client does. */
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
        goto out;
    }
    name_conn(conn, c->cipher, sizeof(c->cipher), c->impl, sizeof(c->impl));
    /* As in the blocking echo, the clock starts after the handshake. */
    c->start_ns = bench_now_ns();
    c->cpu0_ns = bench_thread_cpu_ns();
    client_fill(c);

out:
    return;
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

/* The async echo client against 127.0.0.1:@p port; out gets the rate and the client's CPU. */
static int uv_echo_client(struct tlsock_ctx *ctx, uint16_t port, const struct bench_limits *limits,
                          struct bench_sample *out)
{
    struct echo_client c;
    struct tlsock_uv_opts opts;
    uint64_t guard_ms = (uint64_t)(limits->seconds * 1000) + GUARD_EXTRA_MS;
    int rc;

    memset(&c, 0, sizeof(c));
    c.limits = limits;
    c.chunk = bench_payload();
    if (limits->write_size == 0 || limits->write_size > BENCH_MAX_WRITE || limits->window == 0) {
        fprintf(stderr, "tlsock-uv client: bad write size or window\n");
        rc = BENCH_ERROR;
        goto out;
    }
    rc = uv_loop_init(&c.loop);
    if (rc != 0) {
        fprintf(stderr, "tlsock-uv client: uv_loop_init: %s\n", uv_strerror(rc));
        rc = BENCH_ERROR;
        goto out;
    }
    (void)uv_timer_init(&c.loop, &c.guard);
    c.guard.data = &c;
    (void)uv_timer_start(&c.guard, client_on_guard, guard_ms, 0);
    base_opts(&opts, &c);
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
    rc = c.rc;
    if (rc == BENCH_OK && c.end_ns == 0) {
        fprintf(stderr, "tlsock-uv client: closed before the echo was complete\n");
        rc = BENCH_ERROR;
    }
    if (rc == BENCH_OK) {
        double mib = (double)c.back / (1024.0 * 1024.0);

        out->count = c.back;
        out->rate = mib / ((double)(c.end_ns - c.start_ns) / 1e9);
        out->client_cpu_us = (double)c.cpu_ns / 1e3 / mib;
        snprintf(out->cipher, sizeof(out->cipher), "%s", c.cipher);
        snprintf(out->impl, sizeof(out->impl), "%s", c.impl);
    }

out:
    return rc;
}

/* ---- Handshake clients: loops in threads of their own ---- */

struct hs_client;

/* A connection of a handshake client; its address is the connection's user pointer. */
struct hs_slot {
    struct hs_client *client;
    struct tlsock_uv_conn *conn;
};

struct hs_client {
    uv_loop_t loop;
    uv_timer_t guard;
    pthread_t thread;
    struct tlsock_ctx *ctx;
    uint16_t port;
    int in_flight; /* connections to keep going */
    int64_t deadline_ns;
    struct hs_slot slots[MAX_IN_FLIGHT];
    int live;
    uint64_t counted; /* completed before the deadline */
    uint64_t all;
    int64_t cpu_ns;
    int rc;
    bool named;
    char cipher[64];
    char impl[16];
};

static void hs_start(struct hs_slot *slot);

static void hs_fail(struct hs_client *c, int code, const char *what, const char *msg)
{
    if (c->rc == BENCH_OK) {
        fprintf(stderr, "tlsock-uv client: %s: %s: %s\n", what, tlsock_err_name(code), msg);
        c->rc = BENCH_ERROR;
    }
}

static void hs_on_connect(struct tlsock_uv_conn *conn, int status)
{
    struct hs_slot *slot = tlsock_uv_conn_user(conn);
    struct hs_client *c = slot->client;

    if (status == 0) {
        c->all++;
        if (bench_now_ns() <= c->deadline_ns) {
            c->counted++;
        }
        if (!c->named) {
            name_conn(conn, c->cipher, sizeof(c->cipher), c->impl, sizeof(c->impl));
            c->named = true;
        }
    } else if (status != TLSOCK_ECANCELED) {
        hs_fail(c, status, "connect", tlsock_uv_conn_errmsg(conn));
    }
    tlsock_uv_close(conn);
}

static void hs_on_event(struct tlsock_uv_conn *conn, int code)
{
    /* Only possible between on_connect and the close it asks for; nothing to do but close. */
    (void)code;
    tlsock_uv_close(conn);
}

static void hs_on_close(struct tlsock_uv_conn *conn)
{
    struct hs_slot *slot = tlsock_uv_conn_user(conn);
    struct hs_client *c = slot->client;

    slot->conn = NULL;
    c->live--;
    if (c->rc == BENCH_OK && bench_now_ns() < c->deadline_ns) {
        hs_start(slot);
    } else if (c->live == 0) {
        uv_close((uv_handle_t *)&c->guard, NULL);
    }
}

static void hs_start(struct hs_slot *slot)
{
    struct hs_client *c = slot->client;
    struct tlsock_uv_opts opts;
    int rc;

    base_opts(&opts, slot);
    opts.servername = BENCH_SERVER_NAME;
    opts.on_connect = hs_on_connect;
    opts.on_event = hs_on_event;
    opts.on_close = hs_on_close;
    rc = tlsock_uv_connect(&c->loop, c->ctx, "127.0.0.1", c->port, &opts, &slot->conn);
    if (rc == 0) {
        c->live++;
    } else {
        hs_fail(c, rc, "connect", tlsock_errmsg());
        if (c->live == 0) {
            uv_close((uv_handle_t *)&c->guard, NULL);
        }
    }
}

static void hs_on_guard(uv_timer_t *timer)
{
    struct hs_client *c = timer->data;

    hs_fail(c, TLSOCK_ETIMEDOUT, "handshakes", "the run is stuck");
    for (int i = 0; i < c->in_flight; i++) {
        tlsock_uv_close(c->slots[i].conn);
    }
}

static void *hs_thread(void *arg)
{
    struct hs_client *c = arg;
    int64_t cpu0 = bench_thread_cpu_ns();

    for (int i = 0; i < c->in_flight && c->rc == BENCH_OK; i++) {
        c->slots[i].client = c;
        hs_start(&c->slots[i]);
    }
    (void)uv_run(&c->loop, UV_RUN_DEFAULT);
    c->cpu_ns = bench_thread_cpu_ns() - cpu0;
    return NULL;
}

/* ---- The sides ---- */

static int uv_setup(const struct bench_side_config *config, void **out)
{
    return bench_tlsock_ops.setup(config, out);
}

static void uv_teardown(void *env)
{
    bench_tlsock_ops.teardown(env);
}

/*
 * Stops an echo server after its client ran (@p rc is the client's outcome), checks that it read
 * what the client got back, and records its CPU per MiB.
 */
static int echo_server_finish(struct bench_uv_server *srv, int rc, struct bench_sample *out)
{
    if (bench_uv_server_stop(srv) != BENCH_OK && rc == BENCH_OK) {
        rc = BENCH_ERROR;
    }
    if (rc == BENCH_OK && srv->bytes != out->count) {
        fprintf(stderr, "tlsock-uv: echo server read %llu bytes, client got %llu back\n",
                (unsigned long long)srv->bytes, (unsigned long long)out->count);
        rc = BENCH_ERROR;
    }
    if (rc == BENCH_OK) {
        out->server_cpu_us =
            (double)srv->echo_cpu_ns / 1e3 / ((double)srv->bytes / (1024.0 * 1024.0));
    }
    return rc;
}

static int uv_echo_run(void *envp, const struct bench_limits *limits, struct bench_sample *out)
{
    struct tls_env *env = envp;
    struct bench_uv_server srv;
    int rc;

    memset(out, 0, sizeof(*out));
    rc = bench_uv_server_start(&srv, env->server, BENCH_UV_ECHO);
    if (rc != BENCH_OK) {
        goto out;
    }
    rc = uv_echo_client(env->client, srv.port, limits, out);
    rc = echo_server_finish(&srv, rc, out);

out:
    return rc;
}

static int uv_handshakes_run(void *envp, const struct bench_limits *limits,
                             struct bench_sample *out)
{
    struct tls_env *env = envp;
    struct bench_uv_server srv;
    struct hs_client clients[BENCH_UV_CLIENT_LOOPS];
    int started = 0;
    int rc;
    uint64_t counted = 0;
    uint64_t all = 0;
    int64_t cpu_ns = 0;

    memset(out, 0, sizeof(*out));
    memset(clients, 0, sizeof(clients));
    if (limits->concurrency < BENCH_UV_CLIENT_LOOPS ||
        limits->concurrency > BENCH_UV_CLIENT_LOOPS * MAX_IN_FLIGHT) {
        fprintf(stderr, "tlsock-uv: concurrency %d out of range\n", limits->concurrency);
        rc = BENCH_ERROR;
        goto out;
    }
    rc = bench_uv_server_start(&srv, env->server, BENCH_UV_CLOSE);
    if (rc != BENCH_OK) {
        goto out;
    }
    for (int i = 0; i < BENCH_UV_CLIENT_LOOPS && rc == BENCH_OK; i++) {
        struct hs_client *c = &clients[i];

        c->ctx = env->client;
        c->port = srv.port;
        /* Spread the connections over the loops, the first ones taking the remainder. */
        c->in_flight = limits->concurrency / BENCH_UV_CLIENT_LOOPS +
                       (i < limits->concurrency % BENCH_UV_CLIENT_LOOPS ? 1 : 0);
        c->deadline_ns = bench_now_ns() + (int64_t)(limits->seconds * 1e9);
        if (uv_loop_init(&c->loop) != 0) {
            fprintf(stderr, "tlsock-uv client: uv_loop_init failed\n");
            rc = BENCH_ERROR;
            break;
        }
        (void)uv_timer_init(&c->loop, &c->guard);
        c->guard.data = c;
        (void)uv_timer_start(&c->guard, hs_on_guard,
                             (uint64_t)(limits->seconds * 1000) + GUARD_EXTRA_MS, 0);
        if (pthread_create(&c->thread, NULL, hs_thread, c) != 0) {
            fprintf(stderr, "tlsock-uv client: cannot start its thread\n");
            uv_close((uv_handle_t *)&c->guard, NULL);
            (void)uv_run(&c->loop, UV_RUN_DEFAULT);
            (void)uv_loop_close(&c->loop);
            rc = BENCH_ERROR;
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++) {
        struct hs_client *c = &clients[i];

        pthread_join(c->thread, NULL);
        if (uv_loop_close(&c->loop) != 0) {
            fprintf(stderr, "tlsock-uv client: loop still busy at the end\n");
            c->rc = BENCH_ERROR;
        }
        if (c->rc != BENCH_OK) {
            rc = c->rc;
        }
        counted += c->counted;
        all += c->all;
        cpu_ns += c->cpu_ns;
        if (c->named && out->cipher[0] == '\0') {
            snprintf(out->cipher, sizeof(out->cipher), "%s", c->cipher);
            snprintf(out->impl, sizeof(out->impl), "%s", c->impl);
        }
    }
    if (bench_uv_server_stop(&srv) != BENCH_OK && rc == BENCH_OK) {
        rc = BENCH_ERROR;
    }
    if (rc == BENCH_OK && all > 0 && srv.handshakes > 0) {
        out->count = counted;
        out->rate = (double)counted / limits->seconds;
        out->client_cpu_us = (double)cpu_ns / 1e3 / (double)all;
        out->server_cpu_us = (double)srv.thread_cpu_ns / 1e3 / (double)srv.handshakes;
    } else if (rc == BENCH_OK) {
        fprintf(stderr, "tlsock-uv: no handshake completed\n");
        rc = BENCH_ERROR;
    }

out:
    return rc;
}

const struct bench_side bench_side_uv_echo = {
    .name = "tlsock",
    .setup = uv_setup,
    .teardown = uv_teardown,
    .run = uv_echo_run,
};

const struct bench_side bench_side_uv_handshakes = {
    .name = "tlsock",
    .setup = uv_setup,
    .teardown = uv_teardown,
    .run = uv_handshakes_run,
};

/* ---- A tlsock_uv echo server for a blocking raw OpenSSL client (the stunnel case) ---- */

struct uv_server_env {
    void *raw;           /* raw OpenSSL: the client */
    struct tls_env *tls; /* tlsock: the server */
};

static void uv_server_teardown(void *envp)
{
    struct uv_server_env *env = envp;

    if (env != NULL) {
        bench_raw_ops.teardown(env->raw);
        bench_tlsock_ops.teardown(env->tls);
        free(env);
    }
}

static int uv_server_setup(const struct bench_side_config *config, void **out)
{
    struct uv_server_env *env = calloc(1, sizeof(*env));
    void *tls = NULL;
    int rc = env == NULL ? BENCH_ERROR : BENCH_OK;

    if (rc == BENCH_OK) {
        rc = bench_raw_ops.setup(config, &env->raw);
    }
    if (rc == BENCH_OK) {
        rc = bench_tlsock_ops.setup(config, &tls);
        env->tls = tls;
    }
    if (rc == BENCH_OK) {
        *out = env;
        env = NULL;
    }
    uv_server_teardown(env);
    return rc;
}

static int uv_server_run(void *envp, const struct bench_limits *limits, struct bench_sample *out)
{
    struct uv_server_env *env = envp;
    struct bench_uv_server srv;
    int rc = bench_uv_server_start(&srv, env->tls->server, BENCH_UV_ECHO);

    if (rc != BENCH_OK) {
        memset(out, 0, sizeof(*out));
        goto out;
    }
    rc = bench_echo_client(&bench_raw_ops, env->raw, srv.port, limits, out);
    rc = echo_server_finish(&srv, rc, out);

out:
    return rc;
}

const struct bench_side bench_side_uv_server_echo = {
    .name = "tlsock",
    .setup = uv_server_setup,
    .teardown = uv_server_teardown,
    .run = uv_server_run,
};
