/* Moving a live TLS connection between blocking use and a libuv loop (tlsock_uv_adopt,
 * tlsock_uv_release) while the peer keeps sending: every byte must arrive exactly once, in
 * order, in both directions.
 *
 * The peer is a tlsock_uv server on its own loop in a thread: it sends a pattern as fast as the
 * client takes it and records what the client sends; it closes once both are complete. The
 * client side runs in the test thread, on its own loop or blocking. Callbacks only record; the
 * test asserts after running the loop. Both loops are the harness's: the peer's a struct
 * side_loop, the client's the test's own loop (struct env), each bounded by a guard and required
 * to close at the end. */
#include "support/pair.h"
#include "support/uv_harness.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define GUARD_MS 20000
#define KIB      1024u
#define MIB      (1024u * 1024u)

/* ---- the peer: a uv server in a thread --------------------------------------------------------
 */

struct remote {
    struct side_loop sl;
    struct tlsock_ctx *ctx;
    struct tlsock_uv_server *server;
    struct tlsock_uv_conn *conn;
    uint16_t port;
    int serve_rc;
    /* what to do */
    const unsigned char *send; /* send_len bytes, sent in 64 KiB writes as soon as connected */
    size_t send_len;
    size_t expect_rx; /* close once this much arrived and everything was sent */
    /* what happened */
    int connects;
    int accept_errors;
    int events;
    int first_event;
    int writes_ok;
    int writes_failed;
    int writes_total;
    unsigned char *rx;
    size_t rx_len;
    size_t rx_cap;
    int closes;
};

static void peer_maybe_close(struct remote *p)
{
    if (p->conn != NULL && p->writes_ok == p->writes_total && p->rx_len >= p->expect_rx) {
        tlsock_uv_close(p->conn);
    }
}

static void peer_on_connect(struct tlsock_uv_conn *conn, int status)
{
    struct remote *p = tlsock_uv_conn_user(conn);
    size_t off = 0;

    p->connects++;
    if (status != 0 || p->conn != NULL) {
        tlsock_uv_close(conn);
        return;
    }
    p->conn = conn;
    for (intptr_t i = 1; off < p->send_len; i++) {
        size_t n = p->send_len - off < 64 * KIB ? p->send_len - off : 64 * KIB;
        if (tlsock_uv_write(conn, p->send + off, n, (void *)i) != 0) {
            p->writes_failed++;
            break;
        }
        p->writes_total++;
        off += n;
    }
    peer_maybe_close(p);
}

static void peer_on_read(struct tlsock_uv_conn *conn, const void *data, size_t len)
{
    struct remote *p = tlsock_uv_conn_user(conn);

    if (p->rx_len + len > p->rx_cap) {
        size_t cap = p->rx_cap > 0 ? 2 * p->rx_cap : 64 * KIB;
        while (cap < p->rx_len + len) {
            cap *= 2;
        }
        unsigned char *grown = realloc(p->rx, cap);
        if (grown == NULL) {
            return;
        }
        p->rx = grown;
        p->rx_cap = cap;
    }
    memcpy(p->rx + p->rx_len, data, len);
    p->rx_len += len;
    peer_maybe_close(p);
}

static void peer_on_event(struct tlsock_uv_conn *conn, int code)
{
    struct remote *p = tlsock_uv_conn_user(conn);

    if (p->events++ == 0) {
        p->first_event = code;
    }
    tlsock_uv_close(conn);
}

static void peer_on_write(struct tlsock_uv_conn *conn, void *arg, int status)
{
    struct remote *p = tlsock_uv_conn_user(conn);

    (void)arg;
    if (status == 0) {
        p->writes_ok++;
        peer_maybe_close(p);
    } else {
        p->writes_failed++;
    }
}

static void peer_server_closed(struct tlsock_uv_server *server)
{
    struct remote *p = tlsock_uv_server_user(server);

    p->server = NULL;
    side_loop_end(&p->sl);
}

static void peer_on_close(struct tlsock_uv_conn *conn)
{
    struct remote *p = tlsock_uv_conn_user(conn);

    if (conn != p->conn) {
        return;
    }
    p->closes++;
    p->conn = NULL;
    if (p->server != NULL) {
        tlsock_uv_server_close(p->server, peer_server_closed);
    }
}

static void peer_on_accept_error(struct tlsock_uv_server *server, int code, const char *message)
{
    struct remote *p = tlsock_uv_server_user(server);

    (void)code;
    (void)message;
    p->accept_errors++;
}

/* The guard fired, or the test ends early: close what is left so that the loop can close. */
static void peer_stop(struct side_loop *sl)
{
    struct remote *p = sl->arg;

    tlsock_uv_close(p->conn);
    if (p->server != NULL) {
        tlsock_uv_server_close(p->server, NULL);
        p->server = NULL;
    }
}

static int peer_serve(struct side_loop *sl)
{
    struct remote *p = sl->arg;
    struct tlsock_uv_opts o = TLSOCK_UV_OPTS_INIT;

    o.handshake_timeout_ms = TS_IO_TIMEOUT_MS;
    o.on_connect = peer_on_connect;
    o.on_read = peer_on_read;
    o.on_event = peer_on_event;
    o.on_write = peer_on_write;
    o.on_close = peer_on_close;
    o.on_accept_error = peer_on_accept_error;
    o.user = p;
    p->serve_rc = tlsock_uv_serve(&sl->loop, p->ctx, "127.0.0.1", 0, 0, &o, &p->server);
    if (p->serve_rc == 0) {
        p->port = tlsock_uv_server_port(p->server);
    }
    return p->serve_rc;
}

static int peer_start(struct remote *p, struct tlsock_ctx *ctx, const unsigned char *send,
                      size_t send_len, size_t expect_rx)
{
    memset(p, 0, sizeof(*p));
    p->ctx = ctx;
    p->send = send;
    p->send_len = send_len;
    p->expect_rx = expect_rx;
    return side_loop_start(&p->sl, peer_serve, peer_stop, p, GUARD_MS);
}

/* Joins the peer (it ends by itself once its client is gone); 0 if its loop closed cleanly. */
static int peer_join(struct remote *p)
{
    return side_loop_join(&p->sl);
}

/* ---- the client side ------------------------------------------------------------------------ */

struct client {
    struct env *env; /* the harness's: the loop, its guard, the teardown's checks */
    uv_loop_t *loop;
    struct tlsock_uv_conn *conn;
    int connects;
    int connect_status;
    char connect_msg[256];
    int reads;
    int reads_at_release;
    unsigned char *rx; /* the whole expected stream; rx_len bytes arrived */
    size_t rx_len;
    size_t rx_cap;
    size_t release_at; /* tlsock_uv_release() from on_read once rx_len reaches it (0: never) */
    int release_rc;
    int events;
    int first_event;
    bool keep_open_on_event; /* else on_event closes the connection */
    int writes_ok;
    int writes_other;
    int closes;
    /* the release callback */
    int released;
    int release_status;
    int writes_ok_at_release;
    struct tlsock_conn *blocking;
    struct tlsock_uv_conn *released_handle;
    /* on_connect writes these, numbered from 1 */
    const unsigned char *send;
    size_t send_len;
    int writes_queued;
};

static void cli_append(struct client *c, const void *data, size_t len)
{
    if (c->rx_len + len > c->rx_cap) {
        len = c->rx_cap - c->rx_len; /* more than the peer sends: the length check fails */
    }
    memcpy(c->rx + c->rx_len, data, len);
    c->rx_len += len;
}

static void cli_on_release(struct tlsock_uv_conn *conn, struct tlsock_conn *blocking, int status)
{
    struct client *c = tlsock_uv_conn_user(conn);

    c->released++;
    c->release_status = status;
    c->blocking = blocking;
    c->released_handle = conn;
    c->writes_ok_at_release = c->writes_ok;
    if (status == 0) {
        c->conn = NULL; /* freed after this returns */
        /* The blocking side bounds its own waits: the loop's options do not apply to it. */
        TS_ASSERT_RC(tlsock_conn_set_timeout(blocking, TS_IO_TIMEOUT_MS), 0);
    }
}

static void cli_on_connect(struct tlsock_uv_conn *conn, int status)
{
    struct client *c = tlsock_uv_conn_user(conn);
    size_t off = 0;

    c->connects++;
    c->connect_status = status;
    snprintf(c->connect_msg, sizeof(c->connect_msg), "%s", tlsock_uv_conn_errmsg(conn));
    for (intptr_t i = 1; status == 0 && off < c->send_len; i++) {
        size_t n = c->send_len - off < 64 * KIB ? c->send_len - off : 64 * KIB;
        if (tlsock_uv_write(conn, c->send + off, n, (void *)i) == 0) {
            c->writes_queued++;
        }
        off += n;
    }
}

static void cli_on_read(struct tlsock_uv_conn *conn, const void *data, size_t len)
{
    struct client *c = tlsock_uv_conn_user(conn);

    c->reads++;
    cli_append(c, data, len);
    if (c->release_at > 0 && c->rx_len >= c->release_at && c->reads_at_release == 0) {
        c->reads_at_release = c->reads;
        c->release_rc = tlsock_uv_release(conn, cli_on_release);
    }
}

static void cli_on_event(struct tlsock_uv_conn *conn, int code)
{
    struct client *c = tlsock_uv_conn_user(conn);

    if (c->events++ == 0) {
        c->first_event = code;
    }
    if (!c->keep_open_on_event) {
        tlsock_uv_close(conn);
    }
}

static void cli_on_write(struct tlsock_uv_conn *conn, void *arg, int status)
{
    struct client *c = tlsock_uv_conn_user(conn);

    (void)arg;
    if (status == 0) {
        c->writes_ok++;
    } else {
        c->writes_other++;
    }
}

static void cli_on_close(struct tlsock_uv_conn *conn)
{
    struct client *c = tlsock_uv_conn_user(conn);

    c->closes++;
    c->conn = NULL;
}

static struct tlsock_uv_opts cli_opts(struct client *c)
{
    struct tlsock_uv_opts o = TLSOCK_UV_OPTS_INIT;

    o.handshake_timeout_ms = TS_IO_TIMEOUT_MS;
    o.connect_timeout_ms = TS_IO_TIMEOUT_MS;
    o.on_connect = cli_on_connect;
    o.on_read = cli_on_read;
    o.on_event = cli_on_event;
    o.on_write = cli_on_write;
    o.on_close = cli_on_close;
    o.user = c;
    return o;
}

/* Runs the loop until @p pred holds, bounded by the harness's guard (a failure fails the test). */
static bool cli_run_until(struct client *c, bool (*pred)(struct client *c))
{
    RUN_UNTIL(c->env, pred(c), GUARD_MS);
    return true;
}

/* ---- fixture ------------------------------------------------------------------------------- */

struct fx {
    struct tlsock_ctx *sctx;
    struct tlsock_ctx *cctx;
    struct remote peer;
    struct client cli;
    struct tlsock_conn *blocking; /* a blocking connection the test closes */
    struct ts_pair mem;           /* memory-mode and callback connections in this thread */
    unsigned char *down;          /* what the peer sends */
    unsigned char *up;            /* what the client sends */
    size_t down_len;
    int raw_fd;
};

/* The teardown's hooks (struct env_extra): the client's connection. */
static void fx_close(void *arg)
{
    struct fx *f = arg;

    tlsock_uv_close(f->cli.conn);
}

static bool fx_closed(void *arg)
{
    struct fx *f = arg;

    return f->cli.conn == NULL;
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    void *env_state = NULL;

    if (f == NULL || env_setup(&env_state) != 0) {
        free(f);
        return -1;
    }
    f->raw_fd = -1;
    f->cli.env = env_state;
    f->cli.loop = &f->cli.env->loop;
    f->cli.env->extra = (struct env_extra){.close = fx_close, .closed = fx_closed, .arg = f};
    *state = f;
    if (ts_server_ctx_new(&ts_pki.server, &f->sctx) != 0 ||
        ts_client_ctx_new(ts_pki.ca.cert, &f->cctx) != 0) {
        return -1;
    }
    return 0;
}

static bool cli_idle(struct client *c)
{
    return c->conn == NULL;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    void *env_state = NULL;
    int rc = 0;

    if (f == NULL) {
        return 0;
    }
    /* The harness closes the client (fx_close) and requires its loop to close. */
    env_state = f->cli.env;
    if (env_teardown(&env_state) != 0) {
        rc = -1;
    }
    /* Closing the blocking side lets the peer finish and its thread end. */
    tlsock_close(f->blocking);
    ts_pair_release(&f->mem);
    if (peer_join(&f->peer) != 0) {
        rc = -1;
    }
    if (f->raw_fd >= 0) {
        close(f->raw_fd);
    }
    tlsock_ctx_free(f->sctx);
    tlsock_ctx_free(f->cctx);
    free(f->cli.rx);
    free(f->peer.rx);
    free(f->down);
    free(f->up);
    free(f);
    *state = NULL;
    return rc;
}

static void fx_down(struct fx *f, size_t len, unsigned seed)
{
    f->down = malloc(len);
    assert_non_null(f->down);
    f->down_len = len;
    ts_fill(f->down, len, seed);
    f->cli.rx = calloc(1, len);
    assert_non_null(f->cli.rx);
    f->cli.rx_cap = len;
}

static bool cli_released(struct client *c)
{
    return c->released > 0;
}

static bool cli_closed_or_released(struct client *c)
{
    return c->closes > 0 || c->released > 0;
}

/* Reads the rest of the stream on the blocking side, then the peer's close_notify. */
static void read_rest_blocking(struct fx *f, struct tlsock_conn *conn)
{
    size_t n = 0;
    unsigned char byte;

    TS_ASSERT_RC_MSG(ts_read_full(conn, f->cli.rx + f->cli.rx_len, f->down_len - f->cli.rx_len), 0,
                     tlsock_conn_errmsg(conn));
    f->cli.rx_len = f->down_len;
    TS_ASSERT_RC_MSG(tlsock_read(conn, &byte, 1, &n), TLSOCK_ECLOSED, tlsock_conn_errmsg(conn));
}

/* ---- (a) blocking to async and back ------------------------------------------------------------
 */

static void test_adopt_then_release(void **state)
{
    struct fx *f = *state;
    struct tlsock_opts bo = ts_opts();
    struct tlsock_uv_opts o = cli_opts(&f->cli);
    struct tlsock_conn *conn = NULL;
    struct tlsock_uv_conn *uvc = NULL;
    const char *up = "before|after|blocking";
    size_t n = 0;

    fx_down(f, 2 * MIB, 11);
    TS_ASSERT_RC(peer_start(&f->peer, f->sctx, f->down, f->down_len, strlen(up)), 0);
    TS_ASSERT_RC(tlsock_connect(f->cctx, "127.0.0.1", f->peer.port, &bo, &conn), 0);
    f->blocking = conn;
    TS_ASSERT_RC(tlsock_write(conn, "before|", 7), 0);
    /* Part of the first record: the rest is decrypted and waits in the session. */
    TS_ASSERT_RC(tlsock_read(conn, f->cli.rx, 1000, &n), 0);
    f->cli.rx_len = n;
    assert_true(tlsock_conn_pending(conn) > 0);

    /* Blocking to async while the peer keeps sending. */
    f->cli.release_at = f->down_len / 2;
    TS_ASSERT_RC(tlsock_uv_adopt(f->cli.loop, conn, &o, &uvc), 0);
    f->blocking = NULL; /* the handle owns it now */
    f->cli.conn = uvc;
    assert_int_equal(f->cli.connects, 0); /* from the loop, never from the call */
    TS_ASSERT_RC(tlsock_uv_write(uvc, "after|", 6, (void *)1), 0);
    assert_true(cli_run_until(&f->cli, cli_closed_or_released));

    /* ... and back, inside on_read, with the rest still coming. */
    TS_ASSERT_RC(f->cli.release_rc, 0);
    assert_int_equal(f->cli.connects, 1);
    assert_int_equal(f->cli.connect_status, 0);
    assert_int_equal(f->cli.released, 1);
    TS_ASSERT_RC(f->cli.release_status, 0);
    assert_ptr_equal(f->cli.blocking, conn);
    assert_int_equal(f->cli.writes_ok_at_release, 1);
    assert_int_equal(f->cli.reads, f->cli.reads_at_release); /* nothing after the release */
    assert_int_equal(f->cli.closes, 0);
    assert_int_equal(f->cli.events, 0);
    assert_true(f->cli.rx_len >= f->down_len / 2);
    assert_true(f->cli.rx_len < f->down_len);
    f->blocking = conn;
    assert_int_equal(tlsock_conn_fd(conn) >= 0, 1);
    TS_ASSERT_RC(tlsock_write(conn, "blocking", 8), 0);
    read_rest_blocking(f, conn);
    assert_memory_equal(f->cli.rx, f->down, f->down_len);
    tlsock_close(conn);
    f->blocking = NULL;
    assert_int_equal(peer_join(&f->peer), 0);
    assert_false(f->peer.sl.guard_fired);
    assert_int_equal(f->peer.rx_len, strlen(up));
    assert_memory_equal(f->peer.rx, up, strlen(up));
    assert_int_equal(f->peer.writes_failed, 0);
    assert_int_equal(f->peer.accept_errors, 0);
}

static bool cli_got_all_and_closed(struct client *c)
{
    return c->closes > 0;
}

/* A session attached to the caller's socket, adopted before its handshake: the loop runs it. */
static void test_adopt_before_handshake(void **state)
{
    struct fx *f = *state;
    struct tlsock_opts bo = ts_opts();
    struct tlsock_uv_opts o = cli_opts(&f->cli);
    struct tlsock_conn *conn = NULL;
    struct tlsock_uv_conn *uvc = NULL;

    fx_down(f, 512 * KIB, 12);
    TS_ASSERT_RC(peer_start(&f->peer, f->sctx, f->down, f->down_len, 0), 0);
    assert_int_equal(ts_raw_connect("127.0.0.1", f->peer.port, 0, &f->raw_fd), 0);
    bo.verify_name = "localhost";
    TS_ASSERT_RC(tlsock_attach_fd(f->cctx, f->raw_fd, &bo, &conn), 0);
    f->blocking = conn;
    TS_ASSERT_RC(tlsock_uv_adopt(f->cli.loop, conn, &o, &uvc), 0);
    f->blocking = NULL;
    f->cli.conn = uvc;
    assert_true(cli_run_until(&f->cli, cli_got_all_and_closed));
    TS_ASSERT_RC_MSG(f->cli.connect_status, 0, f->cli.connect_msg);
    assert_int_equal(f->cli.rx_len, f->down_len);
    assert_memory_equal(f->cli.rx, f->down, f->down_len);
    TS_ASSERT_RC(f->cli.first_event, TLSOCK_ECLOSED);
    /* The caller's socket stays open, back in its own (blocking) mode. */
    int flags = fcntl(f->raw_fd, F_GETFL);
    assert_true(flags >= 0);
    assert_int_equal(flags & O_NONBLOCK, 0);
    assert_int_equal(peer_join(&f->peer), 0);
    assert_false(f->peer.sl.guard_fired);
}

/* ---- (b) async to blocking ------------------------------------------------------------------- */

static void test_release_while_peer_sends(void **state)
{
    struct fx *f = *state;
    struct tlsock_uv_opts o = cli_opts(&f->cli);
    struct tlsock_uv_conn *uvc = NULL;
    unsigned char *up = NULL;
    size_t up_len = 3 * 64 * KIB;

    fx_down(f, 4 * MIB, 13);
    up = f->up = malloc(up_len + 3);
    assert_non_null(up);
    ts_fill(up, up_len, 14);
    memcpy(up + up_len, "bye", 3);
    f->cli.send = up;
    f->cli.send_len = up_len;
    f->cli.release_at = 256 * KIB;
    TS_ASSERT_RC(peer_start(&f->peer, f->sctx, f->down, f->down_len, up_len + 3), 0);
    TS_ASSERT_RC(tlsock_uv_connect(f->cli.loop, f->cctx, "localhost", f->peer.port, &o, &uvc), 0);
    f->cli.conn = uvc;
    assert_true(cli_run_until(&f->cli, cli_released));
    TS_ASSERT_RC(f->cli.release_rc, 0);
    TS_ASSERT_RC(f->cli.release_status, 0);
    assert_non_null(f->cli.blocking);
    f->blocking = f->cli.blocking;
    /* Every write queued before the release completed before its callback. */
    assert_int_equal(f->cli.writes_queued, 3);
    assert_int_equal(f->cli.writes_ok_at_release, 3);
    assert_int_equal(f->cli.reads, f->cli.reads_at_release);
    assert_int_equal(f->cli.closes, 0);
    assert_true(tlsock_conn_fd(f->blocking) >= 0);
    /* The blocking side goes on where the loop stopped, in both directions. */
    TS_ASSERT_RC(tlsock_write(f->blocking, up + up_len, 3), 0);
    read_rest_blocking(f, f->blocking);
    assert_memory_equal(f->cli.rx, f->down, f->down_len);
    tlsock_close(f->blocking);
    f->blocking = NULL;
    assert_int_equal(peer_join(&f->peer), 0);
    assert_false(f->peer.sl.guard_fired);
    assert_int_equal(f->peer.rx_len, up_len + 3);
    assert_memory_equal(f->peer.rx, up, up_len + 3);
}

/* ---- (c) what cannot be handed over ---------------------------------------------------------- */

static bool cli_connected(struct client *c)
{
    return c->connects > 0;
}

static bool cli_event(struct client *c)
{
    return c->events > 0;
}

static void test_release_refused(void **state)
{
    struct fx *f = *state;
    struct tlsock_uv_opts o = cli_opts(&f->cli);
    struct tlsock_uv_conn *uvc = NULL;

    fx_down(f, 16, 15);
    TS_ASSERT_RC(peer_start(&f->peer, f->sctx, f->down, 0, 1), 0);
    o.read_idle_timeout_ms = 200;
    f->cli.keep_open_on_event = true;
    TS_ASSERT_RC(tlsock_uv_connect(f->cli.loop, f->cctx, "127.0.0.1", f->peer.port, &o, &uvc), 0);
    f->cli.conn = uvc;
    /* Not ready yet. */
    TS_ASSERT_RC(tlsock_uv_release(uvc, cli_on_release), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_release(uvc, NULL), TLSOCK_EINVAL);
    assert_true(cli_run_until(&f->cli, cli_connected));
    TS_ASSERT_RC(f->cli.connect_status, 0);
    /* Dead after the idle timeout. */
    assert_true(cli_run_until(&f->cli, cli_event));
    TS_ASSERT_RC(f->cli.first_event, TLSOCK_ETIMEDOUT);
    TS_ASSERT_RC(tlsock_uv_write(uvc, "", 0, NULL), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_release(uvc, cli_on_release), TLSOCK_EINVAL);
    /* Closing. */
    tlsock_uv_close(uvc);
    TS_ASSERT_RC(tlsock_uv_release(uvc, cli_on_release), TLSOCK_EINVAL);
    assert_true(cli_run_until(&f->cli, cli_idle));
    assert_int_equal(f->cli.released, 0);
    assert_int_equal(f->cli.closes, 1);
}

/* A release asked for, then a close before it could finish: ECANCELED, then on_close. */
static void test_release_then_close(void **state)
{
    struct fx *f = *state;
    struct tlsock_uv_opts o = cli_opts(&f->cli);
    struct tlsock_uv_conn *uvc = NULL;

    fx_down(f, 16, 16);
    TS_ASSERT_RC(peer_start(&f->peer, f->sctx, f->down, 0, 1), 0);
    TS_ASSERT_RC(tlsock_uv_connect(f->cli.loop, f->cctx, "127.0.0.1", f->peer.port, &o, &uvc), 0);
    f->cli.conn = uvc;
    assert_true(cli_run_until(&f->cli, cli_connected));
    TS_ASSERT_RC(tlsock_uv_release(uvc, cli_on_release), 0);
    TS_ASSERT_RC(tlsock_uv_release(uvc, cli_on_release), TLSOCK_EINVAL); /* once */
    tlsock_uv_close(uvc);
    assert_int_equal(f->cli.released, 0); /* never from within a call */
    assert_true(cli_run_until(&f->cli, cli_idle));
    assert_int_equal(f->cli.released, 1);
    TS_ASSERT_RC(f->cli.release_status, TLSOCK_ECANCELED);
    assert_null(f->cli.blocking);
    assert_int_equal(f->cli.closes, 1);
}

/* A user transport over the pair's memory-mode server in the same thread, for the adopt refusal
 * test: the client's callbacks feed and drain the server themselves. */
static ssize_t pipe_read(void *user, void *buf, size_t len)
{
    struct ts_pair *p = user;
    size_t n = 0;

    if (tlsock_drain(p->server, buf, len, &n) != 0) {
        return TLSOCK_EPROTO;
    }
    return n > 0 ? (ssize_t)n : TLSOCK_EWANT_READ;
}

static ssize_t pipe_write(void *user, const void *buf, size_t len)
{
    struct ts_pair *p = user;

    return tlsock_feed(p->server, buf, len) == 0 ? (ssize_t)len : TLSOCK_EPROTO;
}

/* Runs both handshakes and one message until done; 0 when the client is still fully usable. */
static int pair_usable(struct ts_pair *p)
{
    unsigned char buf[16384];
    size_t n = 0;
    int rc = ts_pair_handshake(p);

    if (rc != 0) {
        print_error("handshake: client %s (%s), server %s (%s)\n", ts_rc_name(p->client_rc),
                    p->client_msg, ts_rc_name(p->server_rc), p->server_msg);
    }
    if (rc == 0) {
        rc = ts_pair_write(p, TS_C2S, "usable", 6);
    }
    if (rc == 0) {
        rc = tlsock_read(p->server, buf, sizeof(buf), &n);
    }
    if (rc == 0 && (n != 6 || memcmp(buf, "usable", 6) != 0)) {
        rc = TS_EMISMATCH;
    }
    return rc;
}

static void test_adopt_refused(void **state)
{
    struct fx *f = *state;
    struct ts_pair *p = &f->mem;
    struct tlsock_uv_opts o = cli_opts(&f->cli);
    struct tlsock_opts mo = ts_opts();
    const struct tlsock_io io = {.read = pipe_read, .write = pipe_write, .user = p};
    struct tlsock_uv_conn *uvc = NULL;

    mo.verify_name = "localhost";
    p->cctx = tlsock_ctx_ref(f->cctx);
    p->sctx = tlsock_ctx_ref(f->sctx);
    /* Memory mode: there is no socket to give the loop. */
    TS_ASSERT_RC(ts_pair_attach(p, &mo, &mo), 0);
    TS_ASSERT_RC(tlsock_uv_adopt(f->cli.loop, p->client, &o, &uvc), TLSOCK_EINVAL);
    TS_ASSERT_CONTAINS(tlsock_errmsg(), "socket");
    assert_null(uvc);
    TS_ASSERT_RC(pair_usable(p), 0);
    ts_pair_close(p);

    /* User callbacks (over the memory-mode server): the loop cannot drive them either. */
    TS_ASSERT_RC(ts_pair_attach_io(p, &io, NULL, &mo, &mo), 0);
    TS_ASSERT_RC(tlsock_uv_adopt(f->cli.loop, p->client, &o, &uvc), TLSOCK_EINVAL);
    assert_null(uvc);
    TS_ASSERT_RC(pair_usable(p), 0);
    /* Bad arguments. */
    TS_ASSERT_RC(tlsock_uv_adopt(f->cli.loop, NULL, &o, &uvc), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_adopt(NULL, p->client, &o, &uvc), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_uv_adopt(f->cli.loop, p->client, NULL, &uvc), TLSOCK_EINVAL);
    /* Nothing reached the loop. */
    uv_run(f->cli.loop, UV_RUN_NOWAIT);
    assert_int_equal(f->cli.connects + f->cli.closes, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_adopt_then_release, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_adopt_before_handshake, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_release_while_peer_sends, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_release_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_release_then_close, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_adopt_refused, fx_setup, fx_teardown),
    };

    return cmocka_run_group_tests(tests, ts_pki_setup, ts_pki_teardown);
}
