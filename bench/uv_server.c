/*
 * The tlsock_uv server of the async cases: tlsock's libuv driver (tlsock/uv.h), public API only,
 * on a loop of its own, as an application with one loop per core would run it. It echoes (the
 * echo cases), closes each connection once it is ready (the handshake cases) or holds it idle
 * (the idle case). Started in a thread of its own and stopped from another (the usual case), or
 * run in the calling thread (the idle case's server process, whose stdin is on the same loop).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "async.h"

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
#define ECHO_BUF_SIZE BENCH_RECORD
#define ECHO_POOL_MAX 64

/* The driver takes the TCP connect, handshake and write timeouts from these. */
void bench_uv_opts(struct tlsock_uv_opts *opts, void *user)
{
    const struct tlsock_uv_opts init = TLSOCK_UV_OPTS_INIT;

    *opts = init;
    opts->connect_timeout_ms = BENCH_IO_TIMEOUT_MS;
    opts->handshake_timeout_ms = BENCH_IO_TIMEOUT_MS;
    opts->write_timeout_ms = BENCH_IO_TIMEOUT_MS;
    opts->user = user;
}

void bench_uv_name(struct tlsock_uv_conn *conn, char *cipher, size_t cipher_len, char *impl,
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
    node->srv->held--;
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
    srv->held++;
    tlsock_uv_conn_set_user(conn, node);
    if (srv->mode == BENCH_UV_ECHO) {
        srv->echo_cpu0_ns = bench_thread_cpu_ns();
    }
    if (srv->mode == BENCH_UV_HOLD && srv->held == 1) {
        bench_uv_name(conn, srv->cipher, sizeof(srv->cipher), srv->impl, sizeof(srv->impl));
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

void bench_uv_server_close(struct bench_uv_server *srv)
{
    srv->stopping = true;
    /* Unreferenced: it does not keep the loop running, bench_uv_server_run closes it at the end. */
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
    uv_close((uv_handle_t *)&srv->wake, NULL);
}

/* The stop request (uv_async_send from another thread). */
static void srv_on_wake(uv_async_t *wake)
{
    bench_uv_server_close(wake->data);
}

void bench_uv_server_run(struct bench_uv_server *srv)
{
    int64_t cpu0 = bench_thread_cpu_ns();
    uint64_t calls0 = bench_syscalls;

    /* Ends when the server and every connection are closed, after bench_uv_server_close. */
    (void)uv_run(&srv->loop, UV_RUN_DEFAULT);
    if (srv->guarded) {
        uv_close((uv_handle_t *)&srv->stop_guard, NULL);
        (void)uv_run(&srv->loop, UV_RUN_DEFAULT);
    }
    srv->thread_cpu_ns = bench_thread_cpu_ns() - cpu0;
    srv->syscalls = bench_syscalls - calls0;
}

static void *srv_thread(void *arg)
{
    bench_uv_server_run(arg);
    return NULL;
}

int bench_uv_server_init(struct bench_uv_server *srv, struct tlsock_ctx *ctx,
                         enum bench_uv_mode mode)
{
    struct tlsock_uv_opts opts;
    int rc;

    memset(srv, 0, sizeof(*srv));
    srv->mode = mode;
    rc = uv_loop_init(&srv->loop);
    if (rc != 0) {
        fprintf(stderr, "tlsock-uv server: uv_loop_init: %s\n", uv_strerror(rc));
        return BENCH_ERROR;
    }
    bench_uv_opts(&opts, srv);
    opts.connect_timeout_ms = 0;
    opts.on_connect = srv_on_connect;
    opts.on_read = mode == BENCH_UV_ECHO ? srv_on_read : NULL;
    opts.on_write = mode == BENCH_UV_ECHO ? srv_on_write : NULL;
    opts.on_event = srv_on_event;
    opts.on_close = srv_on_close;
    opts.on_accept_error = srv_on_accept_error;
    /* Set up before the loop runs, which the contract allows from any thread. */
    rc = tlsock_uv_serve(&srv->loop, ctx, "127.0.0.1", 0, 128, &opts, &srv->server);
    if (rc != 0) {
        fprintf(stderr, "tlsock-uv server: serve: %s: %s\n", tlsock_err_name(rc), tlsock_errmsg());
        (void)uv_loop_close(&srv->loop);
        return BENCH_ERROR;
    }
    srv->port = tlsock_uv_server_port(srv->server);
    srv->wake.data = srv;
    (void)uv_async_init(&srv->loop, &srv->wake, srv_on_wake);
    return BENCH_OK;
}

int bench_uv_server_start(struct bench_uv_server *srv)
{
    int rc = BENCH_OK;

    if (pthread_create(&srv->thread, NULL, srv_thread, srv) != 0) {
        fprintf(stderr, "tlsock-uv server: cannot start its thread\n");
        /* Nothing runs the loop: close everything here and let the loop finish it. */
        bench_uv_server_close(srv);
        bench_uv_server_run(srv);
        (void)bench_uv_server_finish(srv);
        rc = BENCH_ERROR;
    }
    return rc;
}

int bench_uv_server_finish(struct bench_uv_server *srv)
{
    int rc;

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

int bench_uv_server_stop(struct bench_uv_server *srv)
{
    (void)uv_async_send(&srv->wake);
    pthread_join(srv->thread, NULL);
    return bench_uv_server_finish(srv);
}
