/*
 * The libuv driver's system calls per handshake (issue 13): a handshake's last flight leaves in
 * the same write as what follows it in the same turn, and a server's clients get TCP_NODELAY
 * without a setsockopt() each.
 *
 * A server on a loop closes each client as soon as it is ready (on_connect), and a client on the
 * same loop does the same: each side's last flight (the server's tickets, the client's Finished)
 * and its close_notify must go out in one write, so each side writes twice per connection (its
 * first flight, then that one). The executable defines write() and writev() (as bench/syscount.c
 * does): libuv's references bind to these definitions, which count the calls per socket (the
 * server's sockets are those whose local port is the server's), check that the server's have
 * TCP_NODELAY, and call libc's own; setsockopt() counts the TCP_NODELAY calls.
 */
#include "support.h"

#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <tlsock/uv.h>

#define CONNS    4
#define GUARD_MS 10000

static uint16_t server_port; /* 0: nothing counted */
static unsigned server_writes;
static unsigned client_writes;
static unsigned server_nodelay_writes; /* server writes on a socket with TCP_NODELAY set */
static unsigned nodelay_calls;         /* setsockopt(TCP_NODELAY) while counting */

static void count_write(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (server_port == 0 || getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
        ss.ss_family != AF_INET) {
        return;
    }
    if (ntohs(((struct sockaddr_in *)&ss)->sin_port) == server_port) {
        int on = 0;
        socklen_t olen = sizeof(on);
        server_writes++;
        if (getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &olen) == 0 && on != 0) {
            server_nodelay_writes++;
        }
    } else {
        client_writes++;
    }
}

ssize_t write(int fd, const void *buf, size_t len)
{
    ssize_t (*fn)(int, const void *, size_t);
    void *sym = dlsym(RTLD_NEXT, "write");

    memcpy(&fn, &sym, sizeof(fn));
    count_write(fd);
    return fn(fd, buf, len);
}

ssize_t writev(int fd, const struct iovec *iov, int n)
{
    ssize_t (*fn)(int, const struct iovec *, int);
    void *sym = dlsym(RTLD_NEXT, "writev");

    memcpy(&fn, &sym, sizeof(fn));
    count_write(fd);
    return fn(fd, iov, n);
}

int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
    int (*fn)(int, int, int, const void *, socklen_t);
    void *sym = dlsym(RTLD_NEXT, "setsockopt");

    memcpy(&fn, &sym, sizeof(fn));
    if (server_port != 0 && level == IPPROTO_TCP && name == TCP_NODELAY) {
        nodelay_calls++;
    }
    return fn(fd, level, name, val, len);
}

struct run {
    int ready[2]; /* on_connect(0): server, client */
    int failed;
    int closed;
};

static struct run run;

static void on_server_connect(struct tlsock_uv_conn *conn, int status)
{
    if (status != 0) {
        run.failed++;
    } else {
        run.ready[0]++;
    }
    tlsock_uv_close(conn);
}

static void on_client_connect(struct tlsock_uv_conn *conn, int status)
{
    if (status != 0) {
        run.failed++;
    } else {
        run.ready[1]++;
    }
    tlsock_uv_close(conn);
}

static void on_close(struct tlsock_uv_conn *conn)
{
    (void)conn;
    run.closed++;
}

static void on_guard(uv_timer_t *t)
{
    uv_stop(t->loop);
}

static void server_closed(struct tlsock_uv_server *s)
{
    (void)s;
}

static void test_last_flight_and_close_notify_in_one_write(void **state)
{
    struct tlsock_ctx *sctx = NULL;
    struct tlsock_ctx *cctx = NULL;
    struct tlsock_uv_server *srv = NULL;
    struct tlsock_uv_opts so = TLSOCK_UV_OPTS_INIT;
    uv_loop_t loop;
    uv_timer_t guard;

    (void)state;
    memset(&run, 0, sizeof(run));
    assert_int_equal(ts_server_ctx_new(&ts_pki.server, &sctx), 0);
    assert_int_equal(ts_client_ctx_new(ts_pki.ca.cert, &cctx), 0);
    assert_int_equal(uv_loop_init(&loop), 0);
    so.on_connect = on_server_connect;
    so.on_close = on_close;
    so.handshake_timeout_ms = GUARD_MS;
    TS_ASSERT_RC_MSG(tlsock_uv_serve(&loop, sctx, "127.0.0.1", 0, 16, &so, &srv), 0,
                     tlsock_errmsg());
    server_writes = 0;
    client_writes = 0;
    server_nodelay_writes = 0;
    nodelay_calls = 0;
    server_port = tlsock_uv_server_port(srv);
    for (int i = 0; i < CONNS; i++) {
        struct tlsock_uv_opts co = TLSOCK_UV_OPTS_INIT;
        struct tlsock_uv_conn *c = NULL;

        co.on_connect = on_client_connect;
        co.on_close = on_close;
        co.servername = "localhost";
        co.handshake_timeout_ms = GUARD_MS;
        TS_ASSERT_RC_MSG(tlsock_uv_connect(&loop, cctx, "127.0.0.1", server_port, &co, &c), 0,
                         tlsock_errmsg());
    }
    (void)uv_timer_init(&loop, &guard);
    (void)uv_timer_start(&guard, on_guard, GUARD_MS, 0);
    for (int turns = 0; turns < 100000 && run.closed < 2 * CONNS; turns++) {
        if (uv_run(&loop, UV_RUN_ONCE) == 0 || !uv_is_active((uv_handle_t *)&guard)) {
            break;
        }
    }
    server_port = 0;
    tlsock_uv_server_close(srv, server_closed);
    uv_close((uv_handle_t *)&guard, NULL);
    (void)uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    tlsock_ctx_free(sctx);
    tlsock_ctx_free(cctx);

    assert_int_equal(run.failed, 0);
    assert_int_equal(run.ready[0], CONNS);
    assert_int_equal(run.ready[1], CONNS);
    assert_int_equal(run.closed, 2 * CONNS);
    /* Per connection: the first flight, then the last one with close_notify. */
    assert_int_equal(server_writes, 2 * CONNS);
    assert_int_equal(client_writes, 2 * CONNS);
    /* Inherited from the listener (Linux), or set per client elsewhere. */
    assert_int_equal(server_nodelay_writes, server_writes);
#ifdef __linux__
    /* Only the clients set it (libuv's connect); the server's clients inherit it. */
    assert_int_equal(nodelay_calls, CONNS);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_last_flight_and_close_notify_in_one_write),
    };

    return cmocka_run_group_tests(tests, ts_pki_setup, ts_pki_teardown);
}
