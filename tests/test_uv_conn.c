/* The libuv driver (tlsock/uv.h): a client and a server, both driven by the harness's loop in the
 * test thread, over loopback. Callbacks only record what happened (in struct side); the test
 * asserts after running the loop (a cmocka failure must never longjmp out of uv_run). The
 * harness bounds every wait, closes what a test left open (fx_close) and requires the loop to
 * close, so a handle the driver forgot fails the test too. */
#include "support/uv_harness.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#define GUARD_MS 20000
#define MIB      (1024u * 1024u)

struct fx;

/* One connection as the test sees it. */
struct side {
    struct fx *f;
    struct tlsock_uv_conn *conn;
    int seq; /* callbacks seen, to check their order */
    int connects;
    int connect_status;
    int connect_seq;
    int reads;
    unsigned char *rx;
    size_t rx_len;
    size_t rx_cap;
    int events;
    int event_codes[8];
    char event_msg[256]; /* tlsock_uv_conn_errmsg() at the first event */
    int writes_done;
    int writes_ok;
    int writes_canceled;
    int writes_other;
    bool write_order_bad;
    intptr_t last_arg; /* numbered writes complete in order: 1, 2, 3... */
    int close_seq;
    int closes;
    int writes_done_at_close;
    int late_callbacks; /* anything after on_close */
    /* behaviour */
    bool echo;             /* write back what arrives (args are malloc'd copies) */
    bool close_on_read;    /* tlsock_uv_close() inside the first on_read, twice */
    bool close_on_event;   /* tlsock_uv_close() inside on_event */
    bool stop_on_connect;  /* tlsock_uv_read_stop() inside on_connect */
    bool close_on_connect; /* tlsock_uv_close() inside on_connect */
    bool reply_on_event;   /* on_event: write "world" (arg 1), then tlsock_uv_close() */
    int write_in_event_rc; /* what that write returned */
    int peername_at_close; /* tlsock_uv_conn_peername() inside on_close */
    void (*connect_hook)(struct side *s);
};

struct fx {
    struct env *env; /* the harness's: the loop, its guard, the teardown's checks */
    uv_loop_t *loop;
    struct tlsock_ctx *sctx;
    struct tlsock_ctx *cctx;
    struct tlsock_uv_server *server;
    bool server_closed;
    int accept_errors;
    int accept_error_code;
    char accept_error_msg[256];
    int extra_accepts;
    int seq; /* server-level callbacks, to check their order */
    int accept_error_seq;
    int server_closed_seq;
    struct side cli;
    struct side srv;
    struct side extra;     /* clients accepted beyond the first (a failure) */
    int raw_fd;            /* a raw listener or client socket, -1 if none */
    int raw_fd2;           /* a second one */
    struct ts_server bsrv; /* a blocking server thread, when a test needs one */
    unsigned char *buf;    /* a big buffer the test writes from */
    size_t buf_len;
};

/* ---- recording callbacks ------------------------------------------------------------------- */

static struct side *side_of(struct tlsock_uv_conn *conn)
{
    return tlsock_uv_conn_user(conn);
}

static void side_on_connect(struct tlsock_uv_conn *conn, int status)
{
    struct side *s = side_of(conn);

    s->late_callbacks += s->closes;
    s->connects++;
    s->connect_status = status;
    s->connect_seq = ++s->seq;
    if (status != 0) {
        return;
    }
    if (s->stop_on_connect) {
        tlsock_uv_read_stop(conn);
    }
    if (s->connect_hook != NULL) {
        s->connect_hook(s);
    }
    if (s->close_on_connect) {
        tlsock_uv_close(conn);
    }
}

static void rx_append(struct side *s, const void *data, size_t len)
{
    if (s->rx_len + len > s->rx_cap) {
        size_t cap = s->rx_cap > 0 ? s->rx_cap : 4096;
        while (cap < s->rx_len + len) {
            cap *= 2;
        }
        unsigned char *grown = realloc(s->rx, cap);
        if (grown == NULL) {
            return; /* the length check fails the test */
        }
        s->rx = grown;
        s->rx_cap = cap;
    }
    memcpy(s->rx + s->rx_len, data, len);
    s->rx_len += len;
}

static void side_on_read(struct tlsock_uv_conn *conn, const void *data, size_t len)
{
    struct side *s = side_of(conn);

    s->late_callbacks += s->closes;
    s->reads++;
    rx_append(s, data, len);
    if (s->echo) {
        void *copy = malloc(len);
        if (copy != NULL) {
            memcpy(copy, data, len);
            if (tlsock_uv_write(conn, copy, len, copy) != 0) {
                free(copy);
            }
        }
    }
    if (s->close_on_read) {
        tlsock_uv_close(conn);
        tlsock_uv_close(conn); /* a second close is a no-op */
    }
}

static void side_on_event(struct tlsock_uv_conn *conn, int code)
{
    struct side *s = side_of(conn);

    s->late_callbacks += s->closes;
    if (s->events < 8) {
        s->event_codes[s->events] = code;
    }
    if (s->events == 0) {
        snprintf(s->event_msg, sizeof(s->event_msg), "%s", tlsock_uv_conn_errmsg(conn));
    }
    s->events++;
    if (s->reply_on_event) {
        s->write_in_event_rc = tlsock_uv_write(conn, "world", 5, (void *)1);
        tlsock_uv_close(conn);
    }
    if (s->close_on_event) {
        tlsock_uv_close(conn);
    }
}

static void side_on_write(struct tlsock_uv_conn *conn, void *arg, int status)
{
    struct side *s = side_of(conn);

    s->late_callbacks += s->closes;
    s->writes_done++;
    if (status == 0) {
        s->writes_ok++;
    } else if (status == TLSOCK_ECANCELED) {
        s->writes_canceled++;
    } else {
        s->writes_other++;
    }
    if (s->echo) {
        free(arg);
    } else {
        if ((intptr_t)arg != s->last_arg + 1) {
            s->write_order_bad = true;
        }
        s->last_arg = (intptr_t)arg;
    }
}

static void side_on_close(struct tlsock_uv_conn *conn)
{
    struct side *s = side_of(conn);
    struct sockaddr_storage ss;

    s->peername_at_close = tlsock_uv_conn_peername(conn, &ss);
    s->late_callbacks += s->closes;
    s->closes++;
    s->close_seq = ++s->seq;
    s->writes_done_at_close = s->writes_done;
    s->conn = NULL;
}

/* The server's on_connect: the accepted connection becomes the test's server side. */
static void srv_on_connect(struct tlsock_uv_conn *conn, int status)
{
    struct fx *f = tlsock_uv_conn_user(conn);

    if (f->srv.conn != NULL || f->srv.closes > 0) {
        /* Only one client per test: another one is a failure, and is closed at once. */
        f->extra_accepts++;
        tlsock_uv_conn_set_user(conn, &f->extra);
        tlsock_uv_close(conn);
        return;
    }
    f->srv.conn = conn;
    tlsock_uv_conn_set_user(conn, &f->srv);
    side_on_connect(conn, status);
}

static void side_on_accept_error(struct tlsock_uv_server *server, int code, const char *message)
{
    struct fx *f = tlsock_uv_server_user(server);

    f->accept_errors++;
    f->accept_error_seq = ++f->seq;
    f->accept_error_code = code;
    snprintf(f->accept_error_msg, sizeof(f->accept_error_msg), "%s", message);
}

static void on_server_closed(struct tlsock_uv_server *server)
{
    struct fx *f = tlsock_uv_server_user(server);

    f->server_closed = true;
    f->server_closed_seq = ++f->seq;
}

/* ---- loop helpers -------------------------------------------------------------------------- */

/* Runs the loop until @p pred holds, bounded by the harness's guard (a failure fails the test). */
static bool run_until(struct fx *f, bool (*pred)(struct fx *f))
{
    RUN_UNTIL(f->env, pred(f), GUARD_MS);
    return true;
}

/* Runs the loop for @p ms. */
static void fx_run_for(struct fx *f, int ms)
{
    run_for(f->env, ms);
}

static struct tlsock_uv_opts side_opts(struct side *s)
{
    struct tlsock_uv_opts o = TLSOCK_UV_OPTS_INIT;

    o.handshake_timeout_ms = TS_IO_TIMEOUT_MS;
    o.connect_timeout_ms = TS_IO_TIMEOUT_MS;
    o.on_connect = side_on_connect;
    o.on_read = side_on_read;
    o.on_event = side_on_event;
    o.on_write = side_on_write;
    o.on_close = side_on_close;
    o.user = s;
    return o;
}

static struct tlsock_uv_opts server_opts(struct fx *f)
{
    struct tlsock_uv_opts o = side_opts(&f->srv);

    o.on_connect = srv_on_connect;
    o.on_accept_error = side_on_accept_error;
    o.user = f;
    return o;
}

static void start_server_with(struct fx *f, const struct tlsock_uv_opts *o)
{
    TS_ASSERT_RC(tlsock_uv_serve(f->loop, f->sctx, "127.0.0.1", 0, 0, o, &f->server), 0);
    assert_int_not_equal(tlsock_uv_server_port(f->server), 0);
    assert_ptr_equal(tlsock_uv_server_user(f->server), f);
}

static void start_server(struct fx *f)
{
    struct tlsock_uv_opts o = server_opts(f);

    start_server_with(f, &o);
}

static void connect_with(struct fx *f, uint16_t port, const struct tlsock_uv_opts *o)
{
    TS_ASSERT_RC(tlsock_uv_connect(f->loop, f->cctx, "127.0.0.1", port, o, &f->cli.conn), 0);
    assert_non_null(f->cli.conn);
}

static void connect_client(struct fx *f)
{
    struct tlsock_uv_opts o = side_opts(&f->cli);

    connect_with(f, tlsock_uv_server_port(f->server), &o);
}

static bool both_connected(struct fx *f)
{
    return f->cli.connects > 0 && f->srv.connects > 0;
}

static bool fx_conns_closed(struct fx *f)
{
    return f->cli.conn == NULL && f->srv.conn == NULL;
}

static bool fx_all_closed(struct fx *f)
{
    return f->cli.conn == NULL && f->srv.conn == NULL && (f->server == NULL || f->server_closed);
}

/* ---- fixture ------------------------------------------------------------------------------- */

/* The teardown's hooks (struct env_extra): this file's connections and server. */
static void fx_close(void *arg)
{
    struct fx *f = arg;

    tlsock_uv_close(f->cli.conn);
    tlsock_uv_close(f->srv.conn);
    if (f->server != NULL && !f->server_closed) {
        tlsock_uv_server_close(f->server, on_server_closed);
        tlsock_uv_server_close(f->server, on_server_closed); /* twice: a no-op */
    }
}

static bool fx_closed(void *arg)
{
    return fx_all_closed(arg);
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    void *env_state = NULL;

    if (f == NULL || env_setup(&env_state) != 0) {
        free(f);
        return -1;
    }
    f->env = env_state;
    f->loop = &f->env->loop;
    f->env->extra = (struct env_extra){.close = fx_close, .closed = fx_closed, .arg = f};
    f->raw_fd = -1;
    f->raw_fd2 = -1;
    f->bsrv.raw_fd = -1;
    f->cli.f = f;
    f->srv.f = f;
    f->extra.f = f;
    *state = f;
    if (ts_server_ctx_new(&ts_pki.server, &f->sctx) != 0 ||
        ts_client_ctx_new(ts_pki.ca.cert, &f->cctx) != 0) {
        return -1;
    }
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    void *env_state = NULL;
    int rc = 0;

    if (f == NULL) {
        return 0;
    }
    /* The harness closes what is left (fx_close), lets the loop finish it, and requires the
     * loop to close: nothing of the driver may stay in it. */
    env_state = f->env;
    if (env_teardown(&env_state) != 0) {
        rc = -1;
    }
    if (f->cli.late_callbacks != 0 || f->srv.late_callbacks != 0) {
        print_error("callbacks after on_close: client %d, server %d\n", f->cli.late_callbacks,
                    f->srv.late_callbacks);
        rc = -1;
    }
    if (f->extra_accepts != 0) {
        print_error("%d unexpected extra clients accepted\n", f->extra_accepts);
        rc = -1;
    }
    ts_server_stop(&f->bsrv);
    if (f->raw_fd >= 0) {
        close(f->raw_fd);
    }
    if (f->raw_fd2 >= 0) {
        close(f->raw_fd2);
    }
    tlsock_ctx_free(f->sctx);
    tlsock_ctx_free(f->cctx);
    free(f->cli.rx);
    free(f->srv.rx);
    free(f->buf);
    free(f);
    *state = NULL;
    return rc;
}

static void fx_buf(struct fx *f, size_t len, unsigned seed)
{
    f->buf = malloc(len);
    assert_non_null(f->buf);
    f->buf_len = len;
    ts_fill(f->buf, len, seed);
}

/* ---- connect, echo, data ------------------------------------------------------------------- */

static void write_hello(struct side *s)
{
    TS_ASSERT_RC(tlsock_uv_write(s->conn, "hello", 5, (void *)1), 0);
}

static bool client_got_5(struct fx *f)
{
    return f->cli.rx_len >= 5 && f->cli.writes_done >= 1;
}

static bool echo_closed(struct fx *f)
{
    return f->cli.closes == 1 && f->srv.closes == 1;
}

static void test_connect_echo(void **state)
{
    struct fx *f = *state;
    const struct tlsock_info *info = NULL;

    f->srv.echo = true;
    f->srv.close_on_event = true;
    f->cli.connect_hook = write_hello;
    start_server(f);
    connect_client(f);
    assert_ptr_equal(tlsock_uv_conn_loop(f->cli.conn), f->loop);
    assert_ptr_equal(tlsock_uv_conn_user(f->cli.conn), &f->cli);
    assert_true(run_until(f, client_got_5));
    assert_int_equal(f->cli.connects, 1);
    TS_ASSERT_RC_MSG(f->cli.connect_status, 0, tlsock_uv_conn_errmsg(f->cli.conn));
    assert_int_equal(f->srv.connects, 1);
    assert_int_equal(f->srv.connect_status, 0);
    assert_int_equal(f->cli.rx_len, 5);
    assert_memory_equal(f->cli.rx, "hello", 5);
    assert_int_equal(f->srv.rx_len, 5);
    assert_int_equal(f->cli.writes_ok, 1);
    assert_false(f->cli.write_order_bad);
    assert_int_equal(f->accept_errors, 0);
    /* The session underneath answers questions (never reads or writes). */
    assert_non_null(tlsock_uv_conn_tls(f->cli.conn));
    TS_ASSERT_RC(tlsock_conn_info(tlsock_uv_conn_tls(f->cli.conn), &info), 0);
    assert_true(strncmp(info->version, "TLSv1.", 6) == 0);
    assert_string_equal(tlsock_uv_conn_errmsg(f->cli.conn), "");
    /* The client closes: close_notify reaches the server as ECLOSED, which closes too. */
    tlsock_uv_close(f->cli.conn);
    assert_true(run_until(f, echo_closed));
    assert_int_equal(f->srv.events, 1);
    TS_ASSERT_RC(f->srv.event_codes[0], TLSOCK_ECLOSED);
    assert_int_equal(f->cli.events, 0);
    assert_true(f->cli.connect_seq < f->cli.close_seq);
}

/* 1 MiB each way at once, in writes of awkward sizes, completed in order. */
static const size_t piece_sizes[] = {1, 100, 16383, 16384, 16385, 65535, 65536, 65537, 200000, 0};

static void write_mib(struct side *s, unsigned seed)
{
    unsigned char *buf = seed == 1 ? s->f->buf : s->f->buf + MIB;
    size_t off = 0;
    intptr_t arg = 1;

    for (size_t i = 0; off < MIB; i++) {
        size_t n = piece_sizes[i % (sizeof(piece_sizes) / sizeof(piece_sizes[0]))];
        n = n < MIB - off ? n : MIB - off;
        TS_ASSERT_RC(tlsock_uv_write(s->conn, buf + off, n, (void *)arg++), 0);
        off += n;
    }
}

static void cli_write_mib(struct side *s)
{
    write_mib(s, 1);
}

static void srv_write_mib(struct side *s)
{
    write_mib(s, 2);
}

static bool mib_both_ways(struct fx *f)
{
    return f->cli.rx_len >= MIB && f->srv.rx_len >= MIB && f->cli.last_arg > 0 &&
           tlsock_uv_conn_write_queue_size(f->cli.conn) == 0 &&
           tlsock_uv_conn_write_queue_size(f->srv.conn) == 0;
}

static void test_bulk_both_ways(void **state)
{
    struct fx *f = *state;

    /* Both patterns in one buffer: seed 1 for the client's, seed 2 for the server's. */
    f->buf = malloc(2 * MIB);
    assert_non_null(f->buf);
    ts_fill(f->buf, MIB, 1);
    ts_fill(f->buf + MIB, MIB, 2);
    f->cli.connect_hook = cli_write_mib;
    f->srv.connect_hook = srv_write_mib;
    start_server(f);
    connect_client(f);
    assert_true(run_until(f, mib_both_ways));
    assert_int_equal(f->srv.rx_len, MIB);
    assert_int_equal(f->cli.rx_len, MIB);
    assert_true(ts_same_pattern(f->srv.rx, MIB, 1));
    assert_true(ts_same_pattern(f->cli.rx, MIB, 2));
    /* Every write completed once, with 0, in the order it was made. */
    assert_int_equal(f->cli.writes_done, f->cli.last_arg);
    assert_int_equal(f->cli.writes_ok, f->cli.writes_done);
    assert_false(f->cli.write_order_bad);
    assert_int_equal(f->srv.writes_ok, f->srv.writes_done);
    assert_int_equal(f->srv.writes_done, f->srv.last_arg);
    assert_false(f->srv.write_order_bad);
    assert_int_equal(f->cli.events + f->srv.events, 0);
}

static bool server_got_5_and_done(struct fx *f)
{
    return f->srv.rx_len >= 5 && f->cli.writes_done >= 2;
}

static void test_write_before_handshake(void **state)
{
    struct fx *f = *state;

    start_server(f);
    connect_client(f);
    /* The handshake has not even started: both writes wait for it. */
    TS_ASSERT_RC(tlsock_uv_write(f->cli.conn, "early", 5, (void *)1), 0);
    size_t one = tlsock_uv_conn_write_queue_size(f->cli.conn);
    TS_ASSERT_RC(tlsock_uv_write(f->cli.conn, "", 0, (void *)2), 0);
    size_t two = tlsock_uv_conn_write_queue_size(f->cli.conn);
    /* The queue holds the 5 bytes plus a small record per request, the same for each. */
    assert_true(one > 5 && one - 5 <= 128);
    assert_int_equal(two - one, one - 5);
    assert_int_equal(f->cli.writes_done, 0);
    assert_true(run_until(f, server_got_5_and_done));
    assert_int_equal(f->srv.rx_len, 5);
    assert_memory_equal(f->srv.rx, "early", 5);
    assert_int_equal(f->cli.writes_ok, 2);
    assert_false(f->cli.write_order_bad);
    assert_true(f->cli.connect_seq > 0);
    assert_int_equal(tlsock_uv_conn_write_queue_size(f->cli.conn), 0);
}

static void write_after(struct side *s)
{
    TS_ASSERT_RC(tlsock_uv_write(s->conn, "+after", 6, (void *)1), 0);
}

static bool initial_arrived(struct fx *f)
{
    return f->srv.rx_len >= 17 && f->cli.rx_len >= 11;
}

static void test_initial_data(void **state)
{
    struct fx *f = *state;
    struct tlsock_uv_opts so = server_opts(f);
    struct tlsock_uv_opts co = side_opts(&f->cli);
    char cinit[32] = "client-init";
    char sinit[32] = "server-init";

    so.initial_data = sinit;
    so.initial_len = strlen(sinit);
    co.initial_data = cinit;
    co.initial_len = strlen(cinit);
    f->cli.connect_hook = write_after;
    start_server_with(f, &so);
    connect_with(f, tlsock_uv_server_port(f->server), &co);
    /* Copied by the calls: changing them now must not change what is sent. */
    memset(cinit, 'X', sizeof(cinit) - 1);
    memset(sinit, 'X', sizeof(sinit) - 1);
    assert_true(run_until(f, initial_arrived));
    assert_int_equal(f->srv.rx_len, 17);
    assert_memory_equal(f->srv.rx, "client-init+after", 17);
    assert_int_equal(f->cli.rx_len, 11);
    assert_memory_equal(f->cli.rx, "server-init", 11);
    /* Initial data has no completion callback of its own. */
    assert_int_equal(f->srv.writes_done, 0);
    assert_int_equal(f->cli.writes_done, 1);
}

/* ---- failures before the connection is ready ------------------------------------------------ */

static bool client_failed_and_server_told(struct fx *f)
{
    return f->cli.connects > 0 && f->accept_errors > 0;
}

static void test_verify_untrusted(void **state)
{
    struct fx *f = *state;

    tlsock_ctx_free(f->cctx);
    f->cctx = NULL;
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.other_ca.cert, &f->cctx), 0);
    start_server(f);
    connect_client(f);
    assert_true(run_until(f, client_failed_and_server_told));
    TS_ASSERT_RC_MSG(f->cli.connect_status, TLSOCK_EVERIFY, tlsock_uv_conn_errmsg(f->cli.conn));
    TS_ASSERT_CONTAINS(tlsock_uv_conn_errmsg(f->cli.conn),
                       "unable to get local issuer certificate");
    /* The client's alert reached the server, which never handed the client over. */
    TS_ASSERT_RC_MSG(f->accept_error_code, TLSOCK_EPROTO, f->accept_error_msg);
    TS_ASSERT_CONTAINS(f->accept_error_msg, "alert");
    assert_int_equal(f->accept_errors, 1);
    assert_int_equal(f->srv.connects, 0);
    /* A failed connection still has to be closed; writing to it is refused. */
    TS_ASSERT_RC(tlsock_uv_write(f->cli.conn, "x", 1, (void *)1), TLSOCK_EINVAL);
    tlsock_uv_close(f->cli.conn);
    assert_true(run_until(f, fx_conns_closed));
    assert_int_equal(f->cli.connects, 1);
    assert_int_equal(f->cli.closes, 1);
    assert_int_equal(f->cli.writes_done, 0);
}

static bool client_connect_reported(struct fx *f)
{
    return f->cli.connects > 0;
}

static void test_verify_wrong_name(void **state)
{
    struct fx *f = *state;
    struct tlsock_uv_opts o = side_opts(&f->cli);

    o.verify_name = "wrong.example.com";
    start_server(f);
    connect_with(f, tlsock_uv_server_port(f->server), &o);
    assert_true(run_until(f, client_connect_reported));
    TS_ASSERT_RC_MSG(f->cli.connect_status, TLSOCK_EVERIFY, tlsock_uv_conn_errmsg(f->cli.conn));
    TS_ASSERT_CONTAINS(tlsock_uv_conn_errmsg(f->cli.conn), "hostname mismatch");
}

/* The verify callback runs on the loop's thread, once, inside the handshake the loop drives. */
struct verify_seen {
    int calls;
    pthread_t thread;
    int result;
    const char *reject; /* NULL: accept */
};

static int uv_verify_cb(const struct tlsock_verify_info *info, void *user, char *reason,
                        size_t reason_size)
{
    struct verify_seen *v = user;

    v->calls++;
    v->thread = pthread_self();
    v->result = info->result;
    if (v->reject == NULL) {
        return 0;
    }
    snprintf(reason, reason_size, "%s", v->reject);
    return 1;
}

static void test_verify_callback(void **state)
{
    struct fx *f = *state;
    struct verify_seen v = {0};

    TS_ASSERT_RC(tlsock_ctx_set_verify_callback(f->cctx, uv_verify_cb, &v), 0);
    start_server(f);
    connect_client(f);
    assert_int_equal(v.calls, 0); /* nothing is verified before the loop runs the handshake */
    assert_true(run_until(f, both_connected));
    TS_ASSERT_RC_MSG(f->cli.connect_status, 0, tlsock_uv_conn_errmsg(f->cli.conn));
    assert_int_equal(v.calls, 1);
    assert_true(pthread_equal(v.thread, pthread_self()));
    assert_int_equal(v.result, 0);
}

static void test_verify_callback_rejects(void **state)
{
    struct fx *f = *state;
    struct verify_seen v = {.reject = "not today"};

    TS_ASSERT_RC(tlsock_ctx_set_verify_callback(f->cctx, uv_verify_cb, &v), 0);
    start_server(f);
    connect_client(f);
    assert_true(run_until(f, client_connect_reported));
    TS_ASSERT_RC_MSG(f->cli.connect_status, TLSOCK_EVERIFY, tlsock_uv_conn_errmsg(f->cli.conn));
    TS_ASSERT_CONTAINS(tlsock_uv_conn_errmsg(f->cli.conn),
                       "rejected by the verify callback: not today");
    assert_int_equal(v.calls, 1);
    assert_true(pthread_equal(v.thread, pthread_self()));
}

static void test_connect_refused(void **state)
{
    struct fx *f = *state;
    struct tlsock_uv_opts o = side_opts(&f->cli);
    uint16_t port = 0;
    int fd = -1;

    /* A port that was just free: nothing listens on it any more. */
    assert_int_equal(ts_raw_listen("127.0.0.1", 0, &fd, &port), 0);
    close(fd);
    connect_with(f, port, &o);
    assert_null(tlsock_uv_conn_tls(f->cli.conn)); /* no TCP connection yet */
    assert_true(run_until(f, client_connect_reported));
    TS_ASSERT_RC_MSG(f->cli.connect_status, TLSOCK_ESYS, tlsock_uv_conn_errmsg(f->cli.conn));
    TS_ASSERT_CONTAINS(tlsock_uv_conn_errmsg(f->cli.conn), "refused");
    assert_null(tlsock_uv_conn_tls(f->cli.conn));
}

static void test_bad_arguments(void **state)
{
    struct fx *f = *state;
    struct tlsock_uv_opts o = side_opts(&f->cli);
    struct tlsock_uv_opts none = TLSOCK_UV_OPTS_INIT;
    struct tlsock_uv_conn *c = NULL;
    struct tlsock_uv_server *s = NULL;
    struct tlsock_ctx *nocert = NULL;

    TS_ASSERT_RC(tlsock_uv_connect(f->loop, f->cctx, "127.0.0.1", 1, &none, &c), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_connect(f->loop, f->cctx, NULL, 1, &o, &c), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_connect(f->loop, f->sctx, "127.0.0.1", 1, &o, &c), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_serve(f->loop, f->cctx, "127.0.0.1", 0, 0, &o, &s), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_serve(f->loop, f->sctx, "127.0.0.1", 0, 0, &none, &s), TLSOCK_EINVAL);
    TS_ASSERT_RC(ts_server_ctx_new(NULL, &nocert), 0);
    TS_ASSERT_RC(tlsock_uv_serve(f->loop, nocert, "127.0.0.1", 0, 0, &o, &s), TLSOCK_ECONFIG);
    tlsock_ctx_free(nocert);
    assert_null(c);
    assert_null(s);
    TS_ASSERT_RC(tlsock_uv_write(NULL, "x", 1, NULL), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_read_stop(NULL), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_read_start(NULL), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_release(NULL, NULL), TLSOCK_EINVAL);
    tlsock_uv_close(NULL);
    tlsock_uv_server_close(NULL, NULL);
    assert_null(tlsock_uv_conn_tls(NULL));
    assert_int_equal(tlsock_uv_conn_write_queue_size(NULL), 0);
    /* Nothing was started, so the loop has nothing of the driver to run. */
    fx_run_for(f, 10);
}

static void test_handshake_timeout_client(void **state)
{
    struct fx *f = *state;
    struct tlsock_uv_opts o = side_opts(&f->cli);
    uint16_t port = 0;

    /* The kernel completes the TCP handshake on a listener nobody accepts from: TLS waits. */
    assert_int_equal(ts_raw_listen("127.0.0.1", 0, &f->raw_fd, &port), 0);
    o.handshake_timeout_ms = 300;
    connect_with(f, port, &o);
    assert_true(run_until(f, client_connect_reported));
    TS_ASSERT_RC_MSG(f->cli.connect_status, TLSOCK_EHANDSHAKE_TIMEOUT,
                     tlsock_uv_conn_errmsg(f->cli.conn));
    assert_non_null(tlsock_uv_conn_tls(f->cli.conn)); /* the TCP connection existed */
}

static bool accept_error_seen(struct fx *f)
{
    return f->accept_errors > 0;
}

static void test_handshake_timeout_server(void **state)
{
    struct fx *f = *state;
    struct tlsock_uv_opts o = server_opts(f);
    char byte = 0;

    o.handshake_timeout_ms = 300;
    start_server_with(f, &o);
    /* A client that connects and says nothing. */
    assert_int_equal(ts_raw_connect("127.0.0.1", tlsock_uv_server_port(f->server), 0, &f->raw_fd),
                     0);
    assert_true(run_until(f, accept_error_seen));
    TS_ASSERT_RC_MSG(f->accept_error_code, TLSOCK_EHANDSHAKE_TIMEOUT, f->accept_error_msg);
    assert_int_equal(f->srv.connects, 0);
    /* The driver closed that client by itself: it sees the end of the stream. */
    fx_run_for(f, 300);
    assert_int_equal(recv(f->raw_fd, &byte, 1, MSG_DONTWAIT), 0);
    assert_int_equal(f->accept_errors, 1);
}

static bool server_closed(struct fx *f)
{
    return f->server_closed;
}

/* A closing server stops accepting at once, but waits for the clients in their handshake. */
static void test_server_close_waits(void **state)
{
    struct fx *f = *state;
    struct tlsock_uv_opts o = server_opts(f);
    uint16_t port;
    int fd = -1;

    o.handshake_timeout_ms = 300;
    start_server_with(f, &o);
    port = tlsock_uv_server_port(f->server);
    assert_int_equal(ts_raw_connect("127.0.0.1", port, 0, &f->raw_fd), 0);
    fx_run_for(f, 100); /* accepted: its handshake waits for a ClientHello that never comes */
    tlsock_uv_server_close(f->server, on_server_closed);
    assert_false(f->server_closed); /* never from within the call */
    /* Not accepting any more. */
    assert_int_not_equal(ts_raw_connect("127.0.0.1", port, 0, &fd), 0);
    assert_true(run_until(f, server_closed));
    assert_int_equal(f->accept_errors, 1);
    TS_ASSERT_RC_MSG(f->accept_error_code, TLSOCK_EHANDSHAKE_TIMEOUT, f->accept_error_msg);
    assert_true(f->accept_error_seq < f->server_closed_seq);
    assert_int_equal(f->srv.connects, 0);
    f->server = NULL; /* freed after its callback */
}

static int servers_closed;

static void count_server_closed(struct tlsock_uv_server *server)
{
    (void)server;
    servers_closed++;
}

static bool two_servers_closed(struct fx *f)
{
    (void)f;
    return servers_closed == 2;
}

/* opts.reuseport: several servers share a port; without it the port is in use. */
static void test_reuseport(void **state)
{
    struct fx *f = *state;
    struct tlsock_uv_opts o = server_opts(f);
    struct tlsock_uv_server *a = NULL;
    struct tlsock_uv_server *b = NULL;
    struct tlsock_uv_server *c = NULL;
    uint16_t port;

    o.reuseport = true;
    TS_ASSERT_RC(tlsock_uv_serve(f->loop, f->sctx, "127.0.0.1", 0, 0, &o, &a), 0);
    port = tlsock_uv_server_port(a);
    TS_ASSERT_RC(tlsock_uv_serve(f->loop, f->sctx, "127.0.0.1", port, 0, &o, &b), 0);
    assert_int_equal(tlsock_uv_server_port(b), port);
    o.reuseport = false;
    TS_ASSERT_RC(tlsock_uv_serve(f->loop, f->sctx, "127.0.0.1", port, 0, &o, &c), TLSOCK_ESYS);
    TS_ASSERT_CONTAINS(tlsock_errmsg(), "in use");
    assert_null(c);
    servers_closed = 0;
    tlsock_uv_server_close(a, count_server_closed);
    tlsock_uv_server_close(b, count_server_closed);
    assert_true(run_until(f, two_servers_closed));
}

/* ---- timeouts and events on a ready connection ---------------------------------------------- */

static bool client_event(struct fx *f)
{
    return f->cli.events > 0;
}

static void test_read_idle_timeout(void **state)
{
    struct fx *f = *state;
    struct tlsock_uv_opts o = side_opts(&f->cli);

    o.read_idle_timeout_ms = 200;
    start_server(f);
    connect_with(f, tlsock_uv_server_port(f->server), &o);
    assert_true(run_until(f, client_event));
    TS_ASSERT_RC_MSG(f->cli.event_codes[0], TLSOCK_ETIMEDOUT, tlsock_uv_conn_errmsg(f->cli.conn));
    TS_ASSERT_CONTAINS(tlsock_uv_conn_errmsg(f->cli.conn), "timed out");
    assert_int_equal(f->cli.connect_status, 0);
    /* The connection is dead: writes are refused with no callback, and nothing else comes. */
    TS_ASSERT_RC(tlsock_uv_write(f->cli.conn, "x", 1, (void *)1), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_read_start(f->cli.conn), TLSOCK_EINVAL);
    fx_run_for(f, 300);
    assert_int_equal(f->cli.writes_done, 0);
    assert_int_equal(f->cli.events, 1);
    /* The session itself is sound: closing still sends close_notify. */
    f->srv.close_on_event = true;
    tlsock_uv_close(f->cli.conn);
    assert_true(run_until(f, fx_conns_closed));
    assert_int_equal(f->cli.closes, 1);
    assert_int_equal(f->cli.writes_done, 0);
    TS_ASSERT_RC(f->srv.event_codes[0], TLSOCK_ECLOSED);
}

enum { STALL_WRITES = 32 };

static void write_until_stalled(struct side *s)
{
    for (intptr_t i = 1; i <= STALL_WRITES; i++) {
        TS_ASSERT_RC(tlsock_uv_write(s->conn, s->f->buf, s->f->buf_len, (void *)i), 0);
    }
}

static bool client_closed(struct fx *f)
{
    return f->cli.closes > 0;
}

static void test_write_timeout(void **state)
{
    struct fx *f = *state;
    struct tlsock_uv_opts o = side_opts(&f->cli);

    /* The server reads nothing; the client queues far more than the kernel buffers hold. */
    fx_buf(f, MIB, 5);
    f->srv.stop_on_connect = true;
    f->cli.connect_hook = write_until_stalled;
    o.write_timeout_ms = 500;
    start_server(f);
    connect_with(f, tlsock_uv_server_port(f->server), &o);
    assert_true(run_until(f, client_event));
    TS_ASSERT_RC_MSG(f->cli.event_codes[0], TLSOCK_ETIMEDOUT, tlsock_uv_conn_errmsg(f->cli.conn));
    TS_ASSERT_CONTAINS(tlsock_uv_conn_errmsg(f->cli.conn), "write timed out");
    assert_true(tlsock_uv_conn_write_queue_size(f->cli.conn) > 0);
    assert_true(f->cli.writes_done < STALL_WRITES);
    TS_ASSERT_RC(tlsock_uv_write(f->cli.conn, "x", 1, (void *)1000), TLSOCK_EINVAL);
    /* Closing completes what is still pending with ECANCELED, in order, before on_close. */
    tlsock_uv_close(f->cli.conn);
    assert_true(run_until(f, client_closed));
    assert_int_equal(f->cli.writes_done, STALL_WRITES);
    assert_int_equal(f->cli.writes_done_at_close, STALL_WRITES);
    assert_true(f->cli.writes_canceled > 0);
    assert_int_equal(f->cli.writes_ok + f->cli.writes_canceled, STALL_WRITES);
    assert_int_equal(f->cli.writes_other, 0);
    assert_false(f->cli.write_order_bad);
    assert_int_equal(f->cli.events, 1);
}

static void test_peer_close_notify(void **state)
{
    struct fx *f = *state;

    /* The server closes as soon as it has the client; the client closes on the event. */
    f->srv.close_on_connect = true;
    f->cli.close_on_event = true;
    start_server(f);
    connect_client(f);
    assert_true(run_until(f, fx_conns_closed));
    assert_int_equal(f->cli.connect_status, 0);
    assert_int_equal(f->cli.events, 1);
    TS_ASSERT_RC(f->cli.event_codes[0], TLSOCK_ECLOSED);
    assert_int_equal(f->cli.closes, 1);
    assert_int_equal(f->srv.closes, 1);
}

/* A blocking server that finishes the handshake, then ends TCP without close_notify. */
static int serve_truncate(struct tlsock_conn *conn, void *arg)
{
    struct ts_gate *gate = arg;
    int rc = tlsock_handshake(conn);

    if (rc == 0) {
        shutdown(tlsock_conn_fd(conn), SHUT_WR);
        /* Keep the socket until the client saw the end (no reset racing the FIN). */
        ts_gate_wait(gate, TS_IO_TIMEOUT_MS);
    }
    return rc;
}

static void test_peer_truncated(void **state)
{
    struct fx *f = *state;
    struct tlsock_uv_opts o = side_opts(&f->cli);

    /* The harness's gate: its teardown opens it, should the wait below fail. */
    TS_ASSERT_RC(ts_server_start(&f->bsrv, f->sctx, NULL, NULL, serve_truncate, &f->env->gate), 0);
    connect_with(f, f->bsrv.port, &o);
    assert_true(run_until(f, client_event));
    ts_gate_open(&f->env->gate);
    ts_server_stop(&f->bsrv);
    assert_int_equal(f->cli.connect_status, 0);
    TS_ASSERT_RC_MSG(f->cli.event_codes[0], TLSOCK_ETRUNCATED, tlsock_uv_conn_errmsg(f->cli.conn));
    TS_ASSERT_RC(tlsock_uv_write(f->cli.conn, "x", 1, (void *)1), TLSOCK_EINVAL);
    assert_int_equal(f->bsrv.result, 0);
}

/* ---- closing ------------------------------------------------------------------------------- */

static void write_mib_and_close(struct side *s)
{
    TS_ASSERT_RC(tlsock_uv_write(s->conn, s->f->buf, MIB, (void *)1), 0);
    TS_ASSERT_RC(tlsock_uv_write(s->conn, "tail", 4, (void *)2), 0);
    tlsock_uv_close(s->conn);
    /* Closing: more writes are refused, with no callback. */
    TS_ASSERT_RC(tlsock_uv_write(s->conn, "late", 4, (void *)3), TLSOCK_EINVAL);
}

static bool flushed_and_closed(struct fx *f)
{
    return f->cli.closes == 1 && f->srv.events > 0;
}

static void test_close_flushes_pending(void **state)
{
    struct fx *f = *state;

    fx_buf(f, MIB, 7);
    f->cli.connect_hook = write_mib_and_close;
    f->srv.close_on_event = true;
    start_server(f);
    connect_client(f);
    assert_true(run_until(f, flushed_and_closed));
    /* The server got every byte, then the close_notify. */
    TS_ASSERT_RC_MSG(f->srv.event_codes[0], TLSOCK_ECLOSED, f->srv.event_msg);
    assert_int_equal(f->srv.rx_len, MIB + 4);
    assert_true(ts_same_pattern(f->srv.rx, MIB, 7));
    assert_memory_equal(f->srv.rx + MIB, "tail", 4);
    TS_ASSERT_RC(f->srv.event_codes[0], TLSOCK_ECLOSED);
    /* Both writes completed with 0 before on_close; the refused one never completed. */
    assert_int_equal(f->cli.writes_done_at_close, 2);
    assert_int_equal(f->cli.writes_ok, 2);
    assert_false(f->cli.write_order_bad);
}

static void test_close_during_connect(void **state)
{
    struct fx *f = *state;
    struct tlsock_uv_opts o = side_opts(&f->cli);

    /* Closed while the name is being resolved. */
    connect_with(f, 443, &o);
    TS_ASSERT_RC(tlsock_uv_write(f->cli.conn, "x", 1, (void *)1), 0);
    tlsock_uv_close(f->cli.conn);
    tlsock_uv_close(f->cli.conn);
    assert_int_equal(f->cli.connects, 0); /* never from within the call */
    assert_true(run_until(f, fx_conns_closed));
    assert_int_equal(f->cli.connects, 1);
    TS_ASSERT_RC(f->cli.connect_status, TLSOCK_ECANCELED);
    assert_int_equal(f->cli.writes_canceled, 1);
    assert_int_equal(f->cli.closes, 1);
    assert_true(f->cli.connect_seq < f->cli.close_seq);
    assert_int_equal(f->cli.events, 0);
}

static void test_close_during_handshake(void **state)
{
    struct fx *f = *state;
    struct tlsock_uv_opts o = side_opts(&f->cli);
    uint16_t port = 0;

    assert_int_equal(ts_raw_listen("127.0.0.1", 0, &f->raw_fd, &port), 0);
    connect_with(f, port, &o);
    TS_ASSERT_RC(tlsock_uv_write(f->cli.conn, "x", 1, (void *)1), 0);
    fx_run_for(f, 200);
    assert_int_equal(f->cli.connects, 0);
    assert_non_null(tlsock_uv_conn_tls(f->cli.conn));
    tlsock_uv_close(f->cli.conn);
    assert_true(run_until(f, fx_conns_closed));
    TS_ASSERT_RC(f->cli.connect_status, TLSOCK_ECANCELED);
    assert_int_equal(f->cli.writes_canceled, 1);
    assert_true(f->cli.connect_seq < f->cli.close_seq);
}

static void close_at_once(struct side *s)
{
    tlsock_uv_close(s->conn);
    TS_ASSERT_RC(tlsock_uv_write(s->conn, "x", 1, (void *)1), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_release(s->conn, NULL), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_read_start(s->conn), TLSOCK_EINVAL);
}

static void test_write_after_close(void **state)
{
    struct fx *f = *state;

    f->cli.connect_hook = close_at_once;
    f->srv.close_on_event = true;
    start_server(f);
    connect_client(f);
    assert_true(run_until(f, fx_conns_closed));
    assert_int_equal(f->cli.connect_status, 0);
    assert_int_equal(f->cli.writes_done, 0);
    assert_int_equal(f->cli.closes, 1);
    TS_ASSERT_RC(f->srv.event_codes[0], TLSOCK_ECLOSED);
}

/* ---- backpressure and callbacks that close --------------------------------------------------- */

static void srv_write_64k(struct side *s)
{
    TS_ASSERT_RC(tlsock_uv_write(s->conn, s->f->buf, 65536, (void *)1), 0);
}

static bool client_got_64k(struct fx *f)
{
    return f->cli.rx_len >= 65536;
}

static void test_read_stop_start(void **state)
{
    struct fx *f = *state;
    struct tlsock_uv_opts o = side_opts(&f->cli);

    fx_buf(f, 65536, 3);
    o.read_idle_timeout_ms = 150;
    f->cli.stop_on_connect = true;
    f->srv.connect_hook = srv_write_64k;
    start_server(f);
    connect_with(f, tlsock_uv_server_port(f->server), &o);
    assert_true(run_until(f, both_connected));
    /* Stopped: nothing is delivered, and the idle timeout is suspended. */
    fx_run_for(f, 500);
    assert_int_equal(f->cli.reads, 0);
    assert_int_equal(f->cli.events, 0);
    assert_int_equal(f->srv.writes_ok, 1); /* it reached the kernel all the same */
    TS_ASSERT_RC(tlsock_uv_read_start(f->cli.conn), 0);
    assert_int_equal(f->cli.reads, 0); /* delivered from the loop, not from the call */
    assert_true(run_until(f, client_got_64k));
    assert_int_equal(f->cli.rx_len, 65536);
    assert_true(ts_same_pattern(f->cli.rx, 65536, 3));
    /* Reading again: the idle timeout runs again. */
    assert_true(run_until(f, client_event));
    TS_ASSERT_RC(f->cli.event_codes[0], TLSOCK_ETIMEDOUT);
}

static void srv_write_256k(struct side *s)
{
    for (intptr_t i = 1; i <= 4; i++) {
        TS_ASSERT_RC(tlsock_uv_write(s->conn, s->f->buf, 65536, (void *)i), 0);
    }
}

static void test_close_in_on_read(void **state)
{
    struct fx *f = *state;

    fx_buf(f, 65536, 4);
    f->cli.close_on_read = true;
    f->srv.connect_hook = srv_write_256k;
    f->srv.close_on_event = true;
    start_server(f);
    connect_client(f);
    assert_true(run_until(f, fx_conns_closed));
    /* The first on_read closed it: no other read, nothing after on_close. */
    assert_int_equal(f->cli.reads, 1);
    assert_int_equal(f->cli.closes, 1);
    assert_int_equal(f->cli.events, 0);
    assert_int_equal(f->srv.closes, 1);
}

/* ---- half-close and the peer's address ------------------------------------------------------ */

static void write_hello_and_shut(struct side *s)
{
    TS_ASSERT_RC(tlsock_uv_write(s->conn, "hello", 5, (void *)1), 0);
    TS_ASSERT_RC(tlsock_uv_shutdown(s->conn), 0);
    /* Shut down for writing: no more writes, no second shutdown, no release. */
    TS_ASSERT_RC(tlsock_uv_write(s->conn, "x", 1, (void *)2), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_shutdown(s->conn), TLSOCK_EINVAL);
}

static bool reply_after_shutdown(struct fx *f)
{
    return f->cli.rx_len >= 5 && f->cli.events >= 1 && f->srv.closes == 1;
}

/*
 * The client half-closes after a write: the server reads it, then ECLOSED, answers and closes;
 * the client, shut down for writing, still receives the answer and the server's close_notify.
 */
static void test_shutdown_half_close(void **state)
{
    struct fx *f = *state;

    f->cli.connect_hook = write_hello_and_shut;
    f->srv.reply_on_event = true;
    start_server(f);
    connect_client(f);
    assert_true(run_until(f, reply_after_shutdown));
    TS_ASSERT_RC_MSG(f->cli.connect_status, 0, tlsock_uv_conn_errmsg(f->cli.conn));
    assert_int_equal(f->srv.rx_len, 5);
    assert_memory_equal(f->srv.rx, "hello", 5);
    assert_int_equal(f->srv.events, 1);
    TS_ASSERT_RC_MSG(f->srv.event_codes[0], TLSOCK_ECLOSED, f->srv.event_msg);
    TS_ASSERT_RC(f->srv.write_in_event_rc, 0);
    assert_int_equal(f->srv.writes_ok, 1);
    assert_int_equal(f->cli.rx_len, 5);
    assert_memory_equal(f->cli.rx, "world", 5);
    assert_int_equal(f->cli.events, 1);
    TS_ASSERT_RC_MSG(f->cli.event_codes[0], TLSOCK_ECLOSED, f->cli.event_msg);
    assert_int_equal(f->cli.writes_ok, 1);
    assert_int_equal(f->cli.writes_done, 1);
    assert_int_equal(f->cli.closes, 0); /* the application still has to close it */
    tlsock_uv_close(f->cli.conn);
    assert_true(run_until(f, echo_closed));
    assert_int_equal(f->cli.writes_done, 1);
    assert_false(f->cli.write_order_bad);
    assert_int_equal(f->cli.late_callbacks, 0);
}

/* Shutting down a connection that is not connected yet waits for the handshake. */
static void test_shutdown_before_handshake(void **state)
{
    struct fx *f = *state;

    f->srv.reply_on_event = true;
    start_server(f);
    connect_client(f);
    TS_ASSERT_RC(tlsock_uv_write(f->cli.conn, "hello", 5, (void *)1), 0);
    TS_ASSERT_RC(tlsock_uv_shutdown(f->cli.conn), 0);
    TS_ASSERT_RC(tlsock_uv_write(f->cli.conn, "x", 1, (void *)2), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_shutdown(NULL), TLSOCK_EINVAL);
    assert_true(run_until(f, reply_after_shutdown));
    assert_int_equal(f->srv.rx_len, 5);
    TS_ASSERT_RC_MSG(f->srv.event_codes[0], TLSOCK_ECLOSED, f->srv.event_msg);
    assert_int_equal(f->cli.rx_len, 5);
    assert_memory_equal(f->cli.rx, "world", 5);
    tlsock_uv_close(f->cli.conn);
    assert_true(run_until(f, echo_closed));
}

static bool sockaddr_same(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family) {
        return false;
    }
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)a;
        const struct sockaddr_in *y = (const struct sockaddr_in *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a;
        const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return false;
}

/*
 * The server's view of its client is the client's local address (the client runs over a socket
 * the test made, adopted, so that the test knows it); the client's view is the server's port.
 * Before the TCP connection exists, and after the socket closed, there is none.
 */
static void test_getpeername(void **state)
{
    struct fx *f = *state;
    struct tlsock_opts topts = TLSOCK_OPTS_INIT;
    struct tlsock_uv_opts o = side_opts(&f->cli);
    struct tlsock_uv_conn *early = NULL;
    struct tlsock_conn *blocking = NULL;
    struct sockaddr_storage local;
    struct sockaddr_storage seen;
    socklen_t len = sizeof(local);
    int fd = -1;

    start_server(f);
    /* A client still resolving has no peer. */
    o.user = &f->extra;
    TS_ASSERT_RC(tlsock_uv_connect(f->loop, f->cctx, "127.0.0.1", 1, &o, &early), 0);
    o.user = &f->cli;
    TS_ASSERT_RC(tlsock_uv_conn_peername(early, &seen), TLSOCK_EINVAL);
    tlsock_uv_close(early);
    TS_ASSERT_RC(tlsock_uv_conn_peername(NULL, &seen), TLSOCK_EINVAL);

    TS_ASSERT_RC(ts_raw_connect("127.0.0.1", tlsock_uv_server_port(f->server), 0, &fd), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&local, &len), 0);
    topts.servername = "localhost";
    TS_ASSERT_RC(tlsock_attach_fd(f->cctx, fd, &topts, &blocking), 0);
    TS_ASSERT_RC(tlsock_uv_adopt(f->loop, blocking, &o, &f->cli.conn), 0);
    assert_true(run_until(f, both_connected));
    TS_ASSERT_RC_MSG(f->cli.connect_status, 0, tlsock_uv_conn_errmsg(f->cli.conn));
    TS_ASSERT_RC(tlsock_uv_conn_peername(f->srv.conn, &seen), 0);
    assert_true(sockaddr_same(&seen, &local));
    TS_ASSERT_RC(tlsock_uv_conn_peername(f->cli.conn, &seen), 0);
    assert_int_equal(seen.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&seen)->sin_port),
                     tlsock_uv_server_port(f->server));
    assert_int_equal(ntohl(((struct sockaddr_in *)&seen)->sin_addr.s_addr), INADDR_LOOPBACK);
    TS_ASSERT_RC(tlsock_uv_conn_peername(f->cli.conn, NULL), TLSOCK_EINVAL);
    /* tlsock_conn_info() says the same of the sessions underneath: the server's session was
     * made by the loop, the client's adopted. */
    char want[64];
    const struct tlsock_info *info = NULL;
    snprintf(want, sizeof(want), "127.0.0.1:%u",
             (unsigned)ntohs(((struct sockaddr_in *)&local)->sin_port));
    TS_ASSERT_RC(tlsock_conn_info(tlsock_uv_conn_tls(f->srv.conn), &info), 0);
    assert_string_equal(info->peer_addr, want);
    snprintf(want, sizeof(want), "127.0.0.1:%u", (unsigned)tlsock_uv_server_port(f->server));
    TS_ASSERT_RC(tlsock_conn_info(tlsock_uv_conn_tls(f->cli.conn), &info), 0);
    assert_string_equal(info->peer_addr, want);
    tlsock_uv_close(f->cli.conn);
    tlsock_uv_close(f->srv.conn);
    assert_true(run_until(f, fx_conns_closed));
    TS_ASSERT_RC(f->cli.peername_at_close, TLSOCK_EINVAL);
    TS_ASSERT_RC(f->srv.peername_at_close, TLSOCK_EINVAL);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_connect_echo, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_bulk_both_ways, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_write_before_handshake, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_initial_data, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_verify_untrusted, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_verify_wrong_name, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_verify_callback, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_verify_callback_rejects, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_handshake_timeout_client, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_handshake_timeout_server, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_server_close_waits, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_reuseport, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_read_idle_timeout, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_write_timeout, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_peer_close_notify, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_peer_truncated, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_close_flushes_pending, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_close_during_connect, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_close_during_handshake, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_write_after_close, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_read_stop_start, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_close_in_on_read, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_half_close, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_before_handshake, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_getpeername, fx_setup, fx_teardown),
    };

    return cmocka_run_group_tests(tests, ts_pki_setup, ts_pki_teardown);
}
