/*
 * Robustness of the libuv driver (tlsock/uv.h), written from the contract in the header: clients
 * that stall, reset or talk nonsense in their handshake; peers that reset, truncate or close
 * cleanly after it; fatal alerts; tlsock_uv_close() and tlsock_uv_server_close() from inside
 * every callback; writes that fail or are cancelled.
 *
 * The harness is support/uv_harness.h, shared with test_uv_server.c: one loop per test in the test
 * thread, callbacks that only record (and flag every breach of the header's rules they can see),
 * waits bounded by a guard timer, and a teardown that closes everything and requires
 * uv_loop_close() to succeed. Raw peers are plain sockets fed with a real ClientHello, or
 * memory-mode tlsock clients (tlsock_attach_mem) over a socket in a thread, which can stop
 * anywhere: half a record, no close_notify, a reset.
 */
#include "support.h"
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

#include <tlsock/uv.h>

/* ---- raw peers ------------------------------------------------------------------------------- */

/* Closes @p fd with a TCP reset (SO_LINGER 0). */
static void reset_fd(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

/* A real ClientHello, from a memory-mode client of env->cctx. */
static size_t make_client_hello(struct env *env, unsigned char *buf, size_t cap)
{
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *mem = NULL;
    size_t len = 0;
    int rc;

    opts.servername = "localhost";
    TS_ASSERT_RC(tlsock_attach_mem(env->cctx, &opts, &mem), 0);
    rc = tlsock_handshake(mem);
    if (rc == TLSOCK_EWANT_READ) {
        rc = tlsock_drain(mem, buf, cap, &len);
    }
    tlsock_close(mem);
    TS_ASSERT_RC(rc, 0);
    /* A record header (handshake, 22) and more than a header's worth of message. */
    assert_true(len > 64);
    assert_int_equal(buf[0], 22);
    return len;
}

/* Runs the loop until @p fd received at least @p min_bytes, or (min_bytes 0) reached its end. */
static void raw_watch_run(struct env *env, int fd, size_t min_bytes)
{
    struct raw_watch w = {.fd = fd};
    int64_t start = tlsock_now_ms();
    bool done = false;

    assert_int_equal(uv_poll_init_socket(&env->loop, &w.poll, fd), 0);
    w.poll.data = &w;
    assert_int_equal(uv_poll_start(&w.poll, UV_READABLE | UV_DISCONNECT, raw_watch_cb), 0);
    guard_start(env, TS_IO_TIMEOUT_MS);
    for (long i = 0; i < RUN_MAX_ITER && !done && !env->guard_fired; i++) {
        loop_turn(&env->loop);
        done = min_bytes > 0 ? w.bytes >= min_bytes || w.ended : w.ended;
    }
    guard_stop(env);
    uv_close((uv_handle_t *)&w.poll, raw_watch_closed);
    /* A closing handle's callback runs in the next iteration; the stack frame must outlive it. */
    for (int i = 0; i < 100 && !w.closed; i++) {
        uv_run(&env->loop, UV_RUN_NOWAIT);
    }
    if (min_bytes > 0 && w.bytes < min_bytes) {
        fail_msg("%zu bytes from the server in %lld ms, %zu expected%s", w.bytes,
                 (long long)(tlsock_now_ms() - start), min_bytes, w.ended ? " (it closed)" : "");
    }
    if (min_bytes == 0 && !w.ended) {
        fail_msg("the server kept the failed client's socket open for %lld ms",
                 (long long)(tlsock_now_ms() - start));
    }
}

/* ---- a memory-mode TLS client over a blocking socket, for threads ---------------------------- */

struct memcli {
    int fd;
    struct tlsock_conn *tls;
};

static int mc_connect(struct memcli *m, struct tlsock_ctx *ctx, uint16_t port, int rcvbuf)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    struct tlsock_opts opts = ts_opts();

    m->tls = NULL;
    m->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (m->fd < 0) {
        return TS_ESETUP;
    }
    if (rcvbuf > 0) {
        /* Before connect(), so that the window the peer sees stays small. */
        (void)setsockopt(m->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    }
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(m->fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        return TS_ESETUP;
    }
    opts.servername = "localhost";
    return tlsock_attach_mem(ctx, &opts, &m->tls);
}

/* Sends everything TLS has to send. */
static int mc_flush(struct memcli *m)
{
    unsigned char buf[16384];
    int rc = 0;

    for (int i = 0; i < 1000 && rc == 0; i++) {
        size_t n = 0;

        rc = tlsock_drain(m->tls, buf, sizeof(buf), &n);
        if (rc == 0 && n == 0) {
            break;
        }
        if (rc == 0 && send_all(m->fd, buf, n) < 0) {
            rc = TLSOCK_ESYS;
        }
    }
    return rc;
}

/* Gives TLS what the socket has (waiting for it, bounded). */
static int mc_feed(struct memcli *m)
{
    struct pollfd pfd = {.fd = m->fd, .events = POLLIN};
    unsigned char buf[16384];
    ssize_t n;

    if (poll(&pfd, 1, TS_IO_TIMEOUT_MS) != 1) {
        return TLSOCK_ETIMEDOUT;
    }
    n = recv(m->fd, buf, sizeof(buf), 0);
    if (n < 0) {
        return TLSOCK_ESYS;
    }
    return n == 0 ? tlsock_feed_eof(m->tls) : tlsock_feed(m->tls, buf, (size_t)n);
}

static int mc_handshake(struct memcli *m)
{
    int rc = TLSOCK_ETIMEDOUT;

    for (int i = 0; i < 1000; i++) {
        int frc;

        rc = tlsock_handshake(m->tls);
        frc = mc_flush(m);
        if (rc == TLSOCK_EWANT_READ && frc == 0) {
            rc = mc_feed(m);
            if (rc == 0) {
                continue;
            }
        }
        rc = rc != 0 ? rc : frc;
        break;
    }
    return rc;
}

/* Reads exactly @p len bytes; or, with @p len 0, one read that must fail: returns its code. */
static int mc_read(struct memcli *m, void *buf, size_t len)
{
    unsigned char byte;
    size_t got = 0;
    int rc = 0;

    for (int i = 0; i < 1000 && (got < len || len == 0); i++) {
        size_t n = 0;

        rc = len == 0 ? tlsock_read(m->tls, &byte, 1, &n)
                      : tlsock_read(m->tls, (unsigned char *)buf + got, len - got, &n);
        if (rc == TLSOCK_EWANT_READ) {
            rc = mc_flush(m);
            if (rc == 0) {
                rc = mc_feed(m);
            }
            if (rc == 0) {
                continue;
            }
        }
        if (rc != 0) {
            break;
        }
        if (len == 0) {
            rc = TS_EMISMATCH; /* data where the end was expected */
            break;
        }
        got += n;
    }
    return rc;
}

/* Waits until the server closes the connection (its data discarded). */
static int mc_wait_end(struct memcli *m)
{
    char buf[4096];

    for (int i = 0; i < 256; i++) {
        struct pollfd pfd = {.fd = m->fd, .events = POLLIN};
        ssize_t n;

        if (poll(&pfd, 1, TS_IO_TIMEOUT_MS) != 1) {
            return TLSOCK_ETIMEDOUT;
        }
        n = recv(m->fd, buf, sizeof(buf), 0);
        if (n <= 0) {
            return 0;
        }
    }
    return TS_EMISMATCH;
}

static void mc_free(struct memcli *m)
{
    /* Memory mode: whatever tlsock_close() would say stays in its buffer. */
    tlsock_close(m->tls);
    m->tls = NULL;
    if (m->fd >= 0) {
        close(m->fd);
        m->fd = -1;
    }
}

/* ---- clients that stall in their handshake --------------------------------------------------- */

#define SLOW_CLIENTS    4
#define SLOW_GOOD       4
#define SLOW_TIMEOUT_MS 3000

/*
 * Clients send half a ClientHello and stall. Each is dropped by the handshake timeout
 * (EHANDSHAKE_TIMEOUT, not before its time, its socket closed), while normal clients that came
 * after them are served before that: the server never waits on a slow client.
 */
static void test_slow_handshake_clients(void **state)
{
    struct env *env = *state;
    struct tlsock_uv_opts opts = base_opts(NULL);
    struct peer *good[SLOW_GOOD];
    unsigned char hello[4096];
    int fds[SLOW_CLIENTS];
    struct srv *s;
    size_t hello_len;
    int64_t start;

    make_contexts(env);
    opts.handshake_timeout_ms = SLOW_TIMEOUT_MS;
    s = serve_ok(env, 0, env->sctx, &echo_server, &opts);
    hello_len = make_client_hello(env, hello, sizeof(hello));

    start = tlsock_now_ms();
    for (int i = 0; i < SLOW_CLIENTS; i++) {
        assert_int_equal(ts_raw_connect("127.0.0.1", s->port, 0, &fds[i]), 0);
        raw_track(env, fds[i]);
        assert_int_equal(send_all(fds[i], hello, hello_len / 2), (ssize_t)(hello_len / 2));
    }
    for (int i = 0; i < SLOW_GOOD; i++) {
        good[i] = client_start(env, env->cctx, s->port, &echo_client, 20000 + (size_t)i * 1000,
                               10 + (unsigned)i);
        good[i]->close_when_echoed = true;
    }
    RUN_UNTIL(env, conns_closed(env) || env->naerr > 0, WAIT_MS);
    if (env->naerr > 0) {
        fail_msg("a slow client was dropped (%s) before the normal clients were served",
                 ts_rc_name(env->aerr[0].code));
    }
    for (int i = 0; i < SLOW_GOOD; i++) {
        TS_ASSERT_RC_MSG(good[i]->connect_rc, 0, good[i]->connect_msg);
        assert_true(echoed(good[i]));
    }

    RUN_UNTIL(env, env->naerr == SLOW_CLIENTS, SLOW_TIMEOUT_MS + WAIT_MS);
    for (int i = 0; i < SLOW_CLIENTS; i++) {
        TS_ASSERT_RC_MSG(env->aerr[i].code, TLSOCK_EHANDSHAKE_TIMEOUT, env->aerr[i].msg);
        if (env->aerr[i].at_ms - start < SLOW_TIMEOUT_MS - 5) {
            fail_msg("a slow client was dropped after %lld ms, before its %d ms timeout",
                     (long long)(env->aerr[i].at_ms - start), SLOW_TIMEOUT_MS);
        }
    }
    for (int i = 0; i < SLOW_CLIENTS; i++) {
        raw_watch_run(env, fds[i], 0);
        raw_close(env, fds[i]);
    }
    assert_int_equal(s->connects, SLOW_GOOD);
    RUN_UNTIL(env, server_peers_closed(env), WAIT_MS);
    run_for(env, 50);
    assert_int_equal(env->naerr, SLOW_CLIENTS);
    assert_no_anomaly(env);
}

/* ---- the client goes away in the middle of its handshake ------------------------------------- */

enum hs_end {
    HS_HALF_RESET,   /* half a ClientHello, then a reset */
    HS_FLIGHT_RESET, /* the whole ClientHello, the server's answer read, then a reset */
    HS_HALF_FIN,     /* half a ClientHello, then a FIN */
};

struct hs_case {
    const char *what;
    enum hs_end end;
    int code;
};

static const struct hs_case hs_cases[] = {
    {.what = "half a ClientHello, then a reset", .end = HS_HALF_RESET, .code = TLSOCK_ESYS},
    {.what = "the server's first flight received, then a reset",
     .end = HS_FLIGHT_RESET,
     .code = TLSOCK_ESYS},
    {.what = "half a ClientHello, then a FIN", .end = HS_HALF_FIN, .code = TLSOCK_ETRUNCATED},
};

/*
 * A client that resets (or ends) its connection mid-handshake goes to on_accept_error with the
 * transport's error (ESYS for a reset, ETRUNCATED for an end without close_notify), never to
 * on_connect, and the server goes on. ASan and valgrind check that nothing is leaked or touched
 * after it is freed.
 */
static void test_reset_mid_handshake(void **state)
{
    for (size_t i = 0; i < sizeof(hs_cases) / sizeof(hs_cases[0]); i++) {
        const struct hs_case *c = &hs_cases[i];
        unsigned char hello[4096];
        size_t hello_len;
        struct env *env;
        struct srv *s;
        int fd = -1;

        print_message("%s\n", c->what);
        if (i > 0) {
            assert_int_equal(env_teardown(state), 0);
            assert_int_equal(env_setup(state), 0);
        }
        env = *state;
        make_contexts(env);
        s = serve_ok(env, 0, env->sctx, &echo_server, NULL);
        hello_len = make_client_hello(env, hello, sizeof(hello));
        assert_int_equal(ts_raw_connect("127.0.0.1", s->port, 0, &fd), 0);
        raw_track(env, fd);
        if (c->end == HS_FLIGHT_RESET) {
            assert_int_equal(send_all(fd, hello, hello_len), (ssize_t)hello_len);
            /* The ServerHello is there: the server is waiting for our Finished. */
            raw_watch_run(env, fd, 5);
        } else {
            assert_int_equal(send_all(fd, hello, hello_len / 2), (ssize_t)(hello_len / 2));
            /* The accept queue is FIFO: once a later client is served, this one is accepted
             * and its half ClientHello is the server's to read. */
            assert_serves_good_client(env, s, env->cctx);
        }
        if (c->end == HS_HALF_FIN) {
            assert_int_equal(shutdown(fd, SHUT_WR), 0);
        } else {
            raw_untrack(env, fd);
            reset_fd(fd);
        }
        RUN_UNTIL(env, env->naerr == 1, WAIT_MS);
        TS_ASSERT_RC_MSG(env->aerr[0].code, c->code, env->aerr[0].msg);
        assert_true(strlen(env->aerr[0].msg) > 0);
        if (c->end == HS_HALF_FIN) {
            raw_watch_run(env, fd, 0);
            raw_close(env, fd);
        }
        assert_serves_good_client(env, s, env->cctx);
        assert_int_equal(s->connects, c->end == HS_FLIGHT_RESET ? 1 : 2);
        assert_int_equal(env->naerr, 1);
        assert_no_anomaly(env);
    }
}

/* ---- the peer ends after the handshake ------------------------------------------------------- */

enum script {
    SC_PARTIAL_RESET, /* the first 10 bytes of a record, then a reset */
    SC_PARTIAL_FIN,   /* the first 10 bytes of a record, then a FIN */
    SC_RECORD_FIN,    /* "hello", then a FIN without close_notify */
    SC_CLOSE_NOTIFY,  /* "hello" and close_notify; then reads the server's "bye" and its end */
    SC_NO_READ_RESET, /* reads nothing; a reset when the test opens the gate */
};

struct script_peer {
    struct env *env;
    struct tlsock_ctx *ctx;
    uint16_t port;
    enum script script;
    int rcvbuf;
    atomic_bool ready; /* handshake done */
    int rc;
    const char *step;
    char bye[4];
    int final_rc;
    char msg[TLSOCK__ERRMSG_SIZE];
};

static void script_main(void *arg)
{
    static const unsigned char payload[100] = "a record that will never be whole";
    struct script_peer *sp = arg;
    struct memcli m = {.fd = -1};
    unsigned char ready[5];
    unsigned char record[512];
    size_t record_len = 0;

    sp->final_rc = TS_NOT_RUN;
    sp->step = "connect";
    sp->rc = mc_connect(&m, sp->ctx, sp->port, sp->rcvbuf);
    if (sp->rc == 0) {
        sp->step = "handshake";
        sp->rc = mc_handshake(&m);
    }
    atomic_store(&sp->ready, true);
    env_wake(sp->env);
    if (sp->rc == 0 && sp->script != SC_NO_READ_RESET) {
        /* The server's "ready" proves it handed the connection over (and wrote its session
         * tickets) before anything below happens. */
        sp->step = "read ready";
        sp->rc = mc_read(&m, ready, sizeof(ready));
        if (sp->rc == 0 && memcmp(ready, "ready", 5) != 0) {
            sp->rc = TS_EMISMATCH;
        }
    }
    if (sp->rc != 0) {
        goto out;
    }
    switch (sp->script) {
    case SC_PARTIAL_RESET:
    case SC_PARTIAL_FIN:
        sp->step = "partial record";
        sp->rc = tlsock_write(m.tls, payload, sizeof(payload));
        if (sp->rc == 0) {
            sp->rc = tlsock_drain(m.tls, record, sizeof(record), &record_len);
        }
        if (sp->rc == 0 && (record_len < 100 || send_all(m.fd, record, 10) != 10)) {
            sp->rc = TS_ESETUP;
        }
        if (sp->rc == 0 && sp->script == SC_PARTIAL_RESET) {
            reset_fd(m.fd);
            m.fd = -1;
        } else if (sp->rc == 0) {
            sp->rc = shutdown(m.fd, SHUT_WR) == 0 ? mc_wait_end(&m) : TS_ESETUP;
        }
        break;
    case SC_RECORD_FIN:
        sp->step = "record and FIN";
        sp->rc = tlsock_write(m.tls, "hello", 5);
        if (sp->rc == 0) {
            sp->rc = mc_flush(&m);
        }
        if (sp->rc == 0) {
            sp->rc = shutdown(m.fd, SHUT_WR) == 0 ? mc_wait_end(&m) : TS_ESETUP;
        }
        break;
    case SC_CLOSE_NOTIFY:
        sp->step = "record and close_notify";
        sp->rc = tlsock_write(m.tls, "hello", 5);
        if (sp->rc == 0) {
            sp->rc = tlsock_shutdown(m.tls);
        }
        if (sp->rc == 0) {
            sp->rc = mc_flush(&m);
        }
        if (sp->rc == 0) {
            /* Writing may go on after our close_notify: the server answers, then ends. */
            sp->step = "read bye";
            sp->rc = mc_read(&m, sp->bye, 3);
        }
        if (sp->rc == 0) {
            sp->step = "read the end";
            sp->final_rc = mc_read(&m, NULL, 0);
        }
        break;
    case SC_NO_READ_RESET:
        sp->step = "wait for the gate";
        if (!ts_gate_wait(&sp->env->gate, WAIT_MS)) {
            sp->rc = TLSOCK_ETIMEDOUT;
        }
        reset_fd(m.fd);
        m.fd = -1;
        break;
    }
out:
    if (sp->rc != 0 && m.tls != NULL) {
        snprintf(sp->msg, sizeof(sp->msg), "%s", tlsock_conn_errmsg(m.tls));
    }
    mc_free(&m);
}

static void script_start(struct env *env, struct script_peer *sp, struct tlsock_ctx *ctx,
                         uint16_t port, enum script script)
{
    memset(sp, 0, sizeof(*sp));
    sp->env = env;
    sp->ctx = ctx;
    sp->port = port;
    sp->script = script;
    sp->rc = TS_NOT_RUN;
    sp->rcvbuf = script == SC_NO_READ_RESET ? 4096 : 0;
    atomic_init(&sp->ready, false);
    thread_start(env, script_main, sp);
}

/* What a server connection did after its end-of-stream event. */
static struct {
    int write_rc; /* tlsock_uv_write() on the dead connection */
    struct wbuf w;
} after_event;

static void say_ready(struct peer *p, int status)
{
    if (status == 0) {
        (void)peer_write(p, "ready", 5, false);
    }
}

/* ECLOSED: answer and close (the close flushes it). Else: the connection is dead; a write
 * must fail at once and call nothing back. */
static void answer_or_close(struct peer *p, int code)
{
    if (code == TLSOCK_ECLOSED) {
        (void)peer_write(p, "bye", 3, false);
    } else {
        after_event.write_rc = peer_write_buf(p, &after_event.w, "late", 4);
    }
    peer_close(p);
}

static const struct hooks script_server = {
    .on_connect = say_ready,
    .on_event = answer_or_close,
};

struct end_case {
    const char *what;
    enum script script;
    int code;
    int alt_code;     /* also accepted (0: none) */
    const char *data; /* what the server reads first */
};

static const struct end_case end_cases[] = {
    /* libuv may report a reset that follows unread data as an end of stream (POLLHUP after a
     * partial read): the driver looks at the socket then, and still says ESYS. */
    {.what = "a partial record, then a reset", .script = SC_PARTIAL_RESET, .code = TLSOCK_ESYS},
    {.what = "a partial record, then a FIN", .script = SC_PARTIAL_FIN, .code = TLSOCK_ETRUNCATED},
    {.what = "a record, then a FIN without close_notify",
     .script = SC_RECORD_FIN,
     .code = TLSOCK_ETRUNCATED,
     .data = "hello"},
    {.what = "a record, then close_notify",
     .script = SC_CLOSE_NOTIFY,
     .code = TLSOCK_ECLOSED,
     .data = "hello"},
};

/*
 * After the handshake the peer ends in every way it can: the server's connection gets one event
 * with the right code (ESYS for a reset, ETRUNCATED for an end without close_notify, also in the
 * middle of a record, ECLOSED for close_notify), then reads nothing more. After ECLOSED it can
 * still write; after the others a write fails (EINVAL) without a callback.
 */
static void test_peer_end_after_handshake(void **state)
{
    for (size_t i = 0; i < sizeof(end_cases) / sizeof(end_cases[0]); i++) {
        const struct end_case *c = &end_cases[i];
        struct script_peer sp;
        struct env *env;
        struct peer *p = NULL;
        struct srv *s;

        print_message("%s\n", c->what);
        if (i > 0) {
            assert_int_equal(env_teardown(state), 0);
            assert_int_equal(env_setup(state), 0);
        }
        env = *state;
        memset(&after_event, 0, sizeof(after_event));
        after_event.write_rc = TS_NOT_RUN;
        make_contexts(env);
        s = serve_ok(env, 0, env->sctx, &script_server, NULL);
        script_start(env, &sp, env->cctx, s->port, c->script);
        RUN_UNTIL(env, s->connects == 1 && conns_closed(env), WAIT_MS);
        if (sp.rc != 0) {
            print_error("peer failed at %s\n", sp.step);
        }
        TS_ASSERT_RC_MSG(sp.rc, 0, sp.msg);
        for (int k = 0; k < env->npeers; k++) {
            if (env->peers[k].srv == s) {
                p = &env->peers[k];
            }
        }
        assert_non_null(p);
        if (c->alt_code != 0 && p->event_rc == c->alt_code) {
            print_message("  %s (%s)\n", ts_rc_name(p->event_rc), p->event_msg);
        } else {
            TS_ASSERT_RC_MSG(p->event_rc, c->code, p->event_msg);
        }
        assert_int_equal(p->events, 1);
        if (c->code != TLSOCK_ECLOSED) {
            assert_true(strlen(p->event_msg) > 0);
        }
        assert_int_equal(p->rx_len, c->data != NULL ? strlen(c->data) : 0);
        if (c->data != NULL) {
            assert_memory_equal(p->rx, c->data, strlen(c->data));
        }
        if (c->code == TLSOCK_ECLOSED) {
            assert_memory_equal(sp.bye, "bye", 3);
            TS_ASSERT_RC(sp.final_rc, TLSOCK_ECLOSED);
            assert_int_equal(p->write_errors, 0);
        } else {
            TS_ASSERT_RC(after_event.write_rc, TLSOCK_EINVAL);
            assert_int_equal(after_event.w.completions, 0);
        }
        assert_int_equal(env->naerr, 0);
        assert_no_anomaly(env);
    }
}

/* ---- the client's view of a server that ends ------------------------------------------------- */

struct ending_server {
    struct tlsock_ctx *ctx;
    bool close_notify;
    int rc;
    char reply[6];
    int final_rc;
    char msg[TLSOCK__ERRMSG_SIZE];
};

/* A blocking server on a raw socket: "data", then close_notify or a bare FIN. */
static int serve_data_then_end(int fd, void *arg)
{
    struct ending_server *es = arg;
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    unsigned char byte;
    size_t n = 0;

    es->final_rc = TS_NOT_RUN;
    es->rc = tlsock_attach_fd(es->ctx, fd, &opts, &conn);
    if (es->rc == 0) {
        es->rc = tlsock_handshake(conn);
    }
    if (es->rc == 0) {
        es->rc = tlsock_write(conn, "data", 4);
    }
    if (es->rc == 0 && es->close_notify) {
        es->rc = tlsock_shutdown(conn);
        if (es->rc == 0) {
            es->rc = ts_read_full(conn, es->reply, 5);
        }
    } else if (es->rc == 0) {
        es->rc = shutdown(fd, SHUT_WR) == 0 ? 0 : TS_ESETUP;
    }
    if (es->rc == 0) {
        es->final_rc = tlsock_read(conn, &byte, 1, &n);
    }
    if (es->rc != 0 && conn != NULL) {
        snprintf(es->msg, sizeof(es->msg), "%s", tlsock_conn_errmsg(conn));
    }
    tlsock_close(conn);
    return es->rc;
}

static struct wbuf client_after_event;
static int client_after_event_rc;

static void reply_or_close(struct peer *p, int code)
{
    if (code == TLSOCK_ECLOSED) {
        /* Nothing more will be read, but writing may go on. */
        client_after_event_rc = peer_write_buf(p, &client_after_event, "reply", 5);
    } else {
        client_after_event_rc = peer_write_buf(p, &client_after_event, "reply", 5);
        peer_close(p);
    }
}

static void close_when_written(struct peer *p, struct wbuf *w, int status)
{
    (void)w;
    (void)status;
    peer_close(p);
}

static const struct hooks ending_client = {
    .on_event = reply_or_close,
    .on_write = close_when_written,
};

/* An async client reads the data, then ECLOSED (and may still answer) or ETRUNCATED (dead: a
 * write fails without a callback). */
static void test_client_sees_server_end(void **state)
{
    for (int i = 0; i < 2; i++) {
        bool close_notify = i == 1;
        struct ending_server es = {.close_notify = close_notify, .rc = TS_NOT_RUN};
        struct env *env;
        struct peer *p;

        print_message("%s\n", close_notify ? "close_notify" : "a FIN without close_notify");
        if (i > 0) {
            assert_int_equal(env_teardown(state), 0);
            assert_int_equal(env_setup(state), 0);
        }
        env = *state;
        memset(&client_after_event, 0, sizeof(client_after_event));
        client_after_event_rc = TS_NOT_RUN;
        make_contexts(env);
        es.ctx = env->sctx;
        TS_ASSERT_RC(ts_server_start_raw(&env->tsrv, NULL, 0, serve_data_then_end, &es), 0);
        p = client_start(env, env->cctx, env->tsrv.port, &ending_client, 0, 0);
        RUN_UNTIL(env, p->conn == NULL, WAIT_MS);
        ts_server_stop(&env->tsrv);
        TS_ASSERT_RC_MSG(p->connect_rc, 0, p->connect_msg);
        assert_int_equal(p->rx_len, 4);
        assert_memory_equal(p->rx, "data", 4);
        assert_int_equal(p->events, 1);
        TS_ASSERT_RC_MSG(es.rc, 0, es.msg);
        if (close_notify) {
            TS_ASSERT_RC_MSG(p->event_rc, TLSOCK_ECLOSED, p->event_msg);
            TS_ASSERT_RC(client_after_event_rc, 0);
            assert_int_equal(client_after_event.completions, 1);
            TS_ASSERT_RC(client_after_event.status, 0);
            assert_memory_equal(es.reply, "reply", 5);
            /* The client's close sent close_notify. */
            TS_ASSERT_RC(es.final_rc, TLSOCK_ECLOSED);
        } else {
            TS_ASSERT_RC_MSG(p->event_rc, TLSOCK_ETRUNCATED, p->event_msg);
            TS_ASSERT_RC(client_after_event_rc, TLSOCK_EINVAL);
            assert_int_equal(client_after_event.completions, 0);
            /* A dead session does not end cleanly on the other side either. */
            assert_true(es.final_rc < 0);
            assert_int_not_equal(es.final_rc, TLSOCK_ECLOSED);
        }
        assert_no_anomaly(env);
    }
}

/* ---- a fatal alert from the server ----------------------------------------------------------- */

static struct wbuf alert_write;
static int alert_write_rc;

static void dead_write_then_close(struct peer *p, int code)
{
    (void)code;
    alert_write_rc = peer_write_buf(p, &alert_write, "x", 1);
    peer_close(p);
}

static const struct hooks alert_client = {
    .on_connect = close_on_failure,
    .on_event = dead_write_then_close,
};

struct alert_case {
    const char *what;
    const char *protocols;
    int connect_rc;
    int event_rc;
    const char *message;
};

static const struct alert_case alert_cases[] = {
    /* TLS 1.3: the client finishes first; the alert ends the stream (RFC 8446 4.4.2.4). */
    {.what = "TLS 1.3: an event after on_connect",
     .event_rc = TLSOCK_EPROTO,
     .message = "certificate_required"},
    {.what = "TLS 1.2: the handshake fails",
     .protocols = "1.2-1.2",
     .connect_rc = TLSOCK_EPROTO,
     .event_rc = TS_NOT_RUN,
     .message = "alert"},
};

/*
 * The server requires a client certificate the async client does not have. The client gets
 * EPROTO naming the alert (in on_connect with TLS 1.2, as an event after it with TLS 1.3), a
 * write on the dead connection fails without a callback, and it closes cleanly; the server
 * reports EVERIFY to on_accept_error.
 */
static void test_fatal_alert(void **state)
{
    for (size_t i = 0; i < sizeof(alert_cases) / sizeof(alert_cases[0]); i++) {
        const struct alert_case *c = &alert_cases[i];
        struct env *env;
        struct peer *p;
        struct srv *s;

        print_message("%s\n", c->what);
        if (i > 0) {
            assert_int_equal(env_teardown(state), 0);
            assert_int_equal(env_setup(state), 0);
        }
        env = *state;
        memset(&alert_write, 0, sizeof(alert_write));
        alert_write_rc = TS_NOT_RUN;
        make_contexts(env);
        TS_ASSERT_RC(tlsock_ctx_set_ca_mem(env->sctx, ts_pki.ca.cert, strlen(ts_pki.ca.cert)), 0);
        TS_ASSERT_RC(tlsock_ctx_set_verify(env->sctx, TLSOCK_VERIFY_REQUIRED), 0);
        if (c->protocols != NULL) {
            TS_ASSERT_RC(tlsock_ctx_set_protocols(env->cctx, c->protocols), 0);
        }
        s = serve_ok(env, 0, env->sctx, &echo_server, NULL);
        p = client_start(env, env->cctx, s->port, &alert_client, 0, 0);
        RUN_UNTIL(env, p->conn == NULL && env->naerr == 1, WAIT_MS);
        TS_ASSERT_RC_MSG(p->connect_rc, c->connect_rc, p->connect_msg);
        TS_ASSERT_RC_MSG(p->event_rc, c->event_rc, p->event_msg);
        TS_ASSERT_CONTAINS(c->connect_rc != 0 ? p->connect_msg : p->event_msg, c->message);
        if (c->event_rc != TS_NOT_RUN) {
            assert_int_equal(p->events, 1);
            TS_ASSERT_RC(alert_write_rc, TLSOCK_EINVAL);
            assert_int_equal(alert_write.completions, 0);
        }
        assert_int_equal(p->closes, 1);
        TS_ASSERT_RC_MSG(env->aerr[0].code, TLSOCK_EVERIFY, env->aerr[0].msg);
        TS_ASSERT_CONTAINS(env->aerr[0].msg, "no certificate");
        assert_int_equal(s->connects, 0);
        run_for(env, 50);
        assert_no_anomaly(env);
    }
}

/* ---- tlsock_uv_close() from inside every callback -------------------------------------------- */

static void close_in_connect(struct peer *p, int status)
{
    (void)status;
    peer_close(p);
}

/* Closing again is safe, right away and from on_close. */
static void close_twice_in_connect(struct peer *p, int status)
{
    (void)status;
    p->close_called = true;
    tlsock_uv_close(p->conn);
    tlsock_uv_close(p->conn);
}

static struct wbuf write_in_close;

static void close_again_in_close(struct peer *p)
{
    tlsock_uv_close(p->conn);
    /* Closed: a write is refused, and calls nothing back. */
    if (peer_write_buf(p, &write_in_close, "z", 1) != TLSOCK_EINVAL) {
        anomaly(p->env, "peer %d: tlsock_uv_write() in on_close did not fail with EINVAL", p->id);
    }
}

static void close_in_read(struct peer *p, const unsigned char *data, size_t len)
{
    (void)data;
    (void)len;
    peer_close(p);
}

static void close_in_write(struct peer *p, struct wbuf *w, int status)
{
    (void)w;
    (void)status;
    peer_close(p);
}

static void write_hello(struct peer *p, int status)
{
    if (status == 0) {
        (void)peer_write(p, "hello", 5, false);
    }
}

static void write_hello_and_close(struct peer *p, int status)
{
    write_hello(p, status);
    peer_close(p);
}

static void write_x(struct peer *p, int status)
{
    if (status == 0) {
        (void)peer_write(p, "x", 1, false);
    }
}

static void write_x_and_close(struct peer *p, int status)
{
    write_x(p, status);
    peer_close(p);
}

enum target {
    TARGET_SERVER,  /* a server */
    TARGET_REFUSED, /* a closed port */
    TARGET_CANCEL,  /* a server, but closed right after tlsock_uv_connect() */
};

struct close_case {
    const char *what;
    struct hooks client;
    struct hooks server;
    enum target target;
    int client_connect;    /* the client's on_connect status */
    int client_event;      /* the client's event, TS_NOT_RUN: none */
    int server_event;      /* the server connection's event, TS_NOT_RUN: none */
    const char *client_rx; /* what the client reads */
    const char *server_rx; /* what the server reads */
};

static const struct close_case close_cases[] = {
    {.what = "client, in on_connect",
     .client = {.on_connect = close_in_connect},
     .server = {.on_event = close_on_event},
     .client_event = TS_NOT_RUN,
     .server_event = TLSOCK_ECLOSED},
    {.what = "client, twice in on_connect and again in on_close",
     .client = {.on_connect = close_twice_in_connect, .on_close = close_again_in_close},
     .server = {.on_event = close_on_event},
     .client_event = TS_NOT_RUN,
     .server_event = TLSOCK_ECLOSED},
    {.what = "server, in on_connect",
     .client = {.on_event = close_on_event},
     .server = {.on_connect = close_in_connect},
     .client_event = TLSOCK_ECLOSED,
     .server_event = TS_NOT_RUN},
    {.what = "server, twice in on_connect and again in on_close",
     .client = {.on_event = close_on_event},
     .server = {.on_connect = close_twice_in_connect, .on_close = close_again_in_close},
     .client_event = TLSOCK_ECLOSED,
     .server_event = TS_NOT_RUN},
    {.what = "client, in on_read",
     .client = {.on_read = close_in_read},
     .server = {.on_connect = write_hello, .on_event = close_on_event},
     .client_event = TS_NOT_RUN,
     .server_event = TLSOCK_ECLOSED,
     .client_rx = "hello"},
    {.what = "server, in on_read",
     .client = {.on_connect = write_x, .on_event = close_on_event},
     .server = {.on_read = close_in_read},
     .client_event = TLSOCK_ECLOSED,
     .server_event = TS_NOT_RUN,
     .server_rx = "x"},
    {.what = "client, in on_event",
     .client = {.on_event = close_on_event},
     .server = {.on_connect = write_hello_and_close},
     .client_event = TLSOCK_ECLOSED,
     .server_event = TS_NOT_RUN,
     .client_rx = "hello"},
    {.what = "server, in on_event",
     .client = {.on_connect = write_x_and_close},
     .server = {.on_event = close_on_event},
     .client_event = TS_NOT_RUN,
     .server_event = TLSOCK_ECLOSED,
     .server_rx = "x"},
    {.what = "client, in on_write",
     .client = {.on_connect = write_x, .on_write = close_in_write},
     .server = {.on_event = close_on_event},
     .client_event = TS_NOT_RUN,
     .server_event = TLSOCK_ECLOSED,
     .server_rx = "x"},
    {.what = "server, in on_write",
     .client = {.on_event = close_on_event},
     .server = {.on_connect = write_hello, .on_write = close_in_write},
     .client_event = TLSOCK_ECLOSED,
     .server_event = TS_NOT_RUN,
     .client_rx = "hello"},
    {.what = "client, in on_connect reporting a refused connection",
     .client = {.on_connect = close_in_connect},
     .target = TARGET_REFUSED,
     .client_connect = TLSOCK_ESYS,
     .client_event = TS_NOT_RUN,
     .server_event = TS_NOT_RUN},
    {.what = "client, before on_connect (cancelled)",
     .client = {.on_connect = NULL},
     .target = TARGET_CANCEL,
     .client_connect = TLSOCK_ECANCELED,
     .client_event = TS_NOT_RUN,
     .server_event = TS_NOT_RUN},
};

/*
 * Closing from within on_connect, on_read, on_event, on_write (and again from on_close) is safe:
 * on_close comes exactly once and last, every write completes before it, nothing is read after
 * the close, and the other side sees close_notify. ASan and valgrind see misuse of freed memory.
 */
static void test_close_inside_callbacks(void **state)
{
    for (size_t i = 0; i < sizeof(close_cases) / sizeof(close_cases[0]); i++) {
        const struct close_case *c = &close_cases[i];
        struct peer *server_peer = NULL;
        struct env *env;
        struct peer *p;
        struct srv *s;
        uint16_t port;

        print_message("%s\n", c->what);
        if (i > 0) {
            assert_int_equal(env_teardown(state), 0);
            assert_int_equal(env_setup(state), 0);
        }
        env = *state;
        memset(&write_in_close, 0, sizeof(write_in_close));
        make_contexts(env);
        s = serve_ok(env, 0, env->sctx, &c->server, NULL);
        port = s->port;
        if (c->target == TARGET_REFUSED) {
            int lfd = -1;

            assert_int_equal(ts_raw_listen("127.0.0.1", 0, &lfd, &port), 0);
            close(lfd);
        }
        p = client_start(env, env->cctx, port, &c->client, 0, 0);
        if (c->target == TARGET_CANCEL) {
            peer_close(p);
        }
        RUN_UNTIL(env, conns_closed(env), WAIT_MS);
        for (int k = 0; k < env->npeers; k++) {
            if (env->peers[k].srv == s) {
                server_peer = &env->peers[k];
            }
        }
        TS_ASSERT_RC_MSG(p->connect_rc, c->client_connect, p->connect_msg);
        assert_int_equal(p->closes, 1);
        TS_ASSERT_RC_MSG(p->event_rc, c->client_event, p->event_msg);
        assert_int_equal(p->rx_len, c->client_rx != NULL ? strlen(c->client_rx) : 0);
        if (c->client_rx != NULL) {
            assert_memory_equal(p->rx, c->client_rx, strlen(c->client_rx));
        }
        if (c->target == TARGET_SERVER) {
            assert_non_null(server_peer);
            assert_int_equal(server_peer->closes, 1);
            TS_ASSERT_RC_MSG(server_peer->event_rc, c->server_event, server_peer->event_msg);
            assert_int_equal(server_peer->rx_len, c->server_rx != NULL ? strlen(c->server_rx) : 0);
            if (c->server_rx != NULL) {
                assert_memory_equal(server_peer->rx, c->server_rx, strlen(c->server_rx));
            }
            assert_int_equal(env->naerr, 0);
        }
        run_for(env, 20);
        assert_int_equal(write_in_close.completions, 0);
        assert_no_anomaly(env);
    }
}

/* ---- tlsock_uv_server_close() from inside callbacks ------------------------------------------ */

static void server_close_in_accept_error(struct srv *s, int code)
{
    (void)code;
    server_close(s);
}

static void server_close_in_connect(struct peer *p, int status)
{
    (void)status;
    server_close(p->srv);
}

static void server_close_in_close_cb(struct srv *s, struct tlsock_uv_server *server)
{
    (void)s;
    /* A second call, from the close callback itself, is a no-op. */
    tlsock_uv_server_close(server, stray_server_close);
}

/*
 * tlsock_uv_server_close() from on_accept_error, from a handed-over connection's on_connect (the
 * connection goes on) and again from the server's own close callback: the close callback comes
 * once, and the port is refused afterwards.
 */
static void test_server_close_inside_callbacks(void **state)
{
    static const char garbage[] = "\x16\x03\x01\x00\x05hello, not a ClientHello";
    static const struct hooks closing_server = {
        .on_connect = server_close_in_connect,
        .on_read = echo_back,
        .on_event = close_on_event,
    };
    struct env *env = *state;
    struct peer *p;
    struct srv *s;
    int fd = -1;

    make_contexts(env);
    s = serve_ok(env, 0, env->sctx, &echo_server, NULL);
    s->on_accept_error = server_close_in_accept_error;
    s->on_server_close = server_close_in_close_cb;
    assert_int_equal(ts_raw_connect("127.0.0.1", s->port, 0, &fd), 0);
    raw_track(env, fd);
    assert_int_equal(send_all(fd, garbage, sizeof(garbage) - 1), (ssize_t)(sizeof(garbage) - 1));
    RUN_UNTIL(env, s->close_cbs == 1, WAIT_MS);
    assert_int_equal(env->naerr, 1);
    assert_int_equal(raw_connect_errno(s->port, &fd), ECONNREFUSED);
    raw_watch_run(env, env->raw[0], 0);

    s = serve_ok(env, 1, env->sctx, &closing_server, NULL);
    s->on_server_close = server_close_in_close_cb;
    p = client_start(env, env->cctx, s->port, &echo_client, 5000, 8);
    RUN_UNTIL(env, s->close_cbs == 1 && echoed(p), WAIT_MS);
    peer_close(p);
    RUN_UNTIL(env, conns_closed(env), WAIT_MS);
    assert_int_equal(s->connects, 1);
    assert_int_equal(p->events, 0);
    run_for(env, 50);
    assert_int_equal(env->stray, 0);
    assert_no_anomaly(env);
}

/* ---- writes that fail, and writes at close --------------------------------------------------- */

#define FLUSH_LEN 65536

/*
 * Writes queued before tlsock_uv_close() still reach the peer (status 0, the peer reads them
 * all, then close_notify); a write after it fails with EINVAL and calls nothing back; closing
 * NULL is a no-op.
 */
static void test_write_errors_call_no_callback(void **state)
{
    static const struct hooks quiet_server = {.on_event = close_on_event};
    static const struct hooks quiet_client = {.on_event = close_on_event};
    struct env *env = *state;
    struct wbuf queued;
    struct wbuf refused;
    struct peer *server_peer = NULL;
    unsigned char *data = malloc(FLUSH_LEN);
    struct peer *p;
    struct srv *s;

    assert_non_null(data);
    ts_fill(data, FLUSH_LEN, 42);
    memset(&queued, 0, sizeof(queued));
    memset(&refused, 0, sizeof(refused));
    tlsock_uv_close(NULL);
    make_contexts(env);
    s = serve_ok(env, 0, env->sctx, &quiet_server, NULL);
    p = client_start(env, env->cctx, s->port, &quiet_client, 0, 0);
    RUN_UNTIL(env, p->connect_rc != TS_NOT_RUN && s->connects == 1, WAIT_MS);
    TS_ASSERT_RC_MSG(p->connect_rc, 0, p->connect_msg);
    assert_int_equal(tlsock_uv_conn_write_queue_size(p->conn), 0);

    TS_ASSERT_RC(peer_write_buf(p, &queued, data, FLUSH_LEN), 0);
    peer_close(p);
    TS_ASSERT_RC(peer_write_buf(p, &refused, "late", 4), TLSOCK_EINVAL);
    RUN_UNTIL(env, conns_closed(env), WAIT_MS);
    for (int k = 0; k < env->npeers; k++) {
        if (env->peers[k].srv == s) {
            server_peer = &env->peers[k];
        }
    }
    assert_int_equal(queued.completions, 1);
    TS_ASSERT_RC(queued.status, 0);
    assert_int_equal(refused.completions, 0);
    assert_non_null(server_peer);
    assert_int_equal(server_peer->rx_len, FLUSH_LEN);
    assert_memory_equal(server_peer->rx, data, FLUSH_LEN);
    TS_ASSERT_RC_MSG(server_peer->event_rc, TLSOCK_ECLOSED, server_peer->event_msg);
    free(data);
    assert_no_anomaly(env);
}

/* ---- pending writes of a connection that dies ------------------------------------------------ */

#define PUMP_CHUNK      (256u << 10)
#define PUMP_MAX_WRITES 256
#define PUMP_QUEUE      (2u << 20)

/* A server connection writing to a peer that does not read: it keeps PUMP_QUEUE bytes queued
 * beyond what the kernel took, until the connection dies. */
static struct {
    struct peer *p;
    struct wbuf w[PUMP_MAX_WRITES];
    int n;
    bool dead;
    int event;
    int done_at_event;
    int canceled_before_close;
    int dead_write_rc;
    struct wbuf dead_write;
    struct wbuf during_close[PUMP_MAX_WRITES];
    int writes_accepted_during_close;
} pump;

static unsigned char pump_chunk[PUMP_CHUNK];

static void pump_top_up(struct peer *p)
{
    while (!pump.dead && !p->close_called && pump.n < PUMP_MAX_WRITES &&
           tlsock_uv_conn_write_queue_size(p->conn) < PUMP_QUEUE) {
        int rc = peer_write_buf(p, &pump.w[pump.n], pump_chunk, PUMP_CHUNK);

        if (rc != 0) {
            anomaly(p->env, "pump: tlsock_uv_write: %s", ts_rc_name(rc));
            break;
        }
        pump.n++;
    }
}

static void pump_start(struct peer *p, int status)
{
    pump.p = p;
    if (status == 0) {
        pump_top_up(p);
    }
}

static void pump_written(struct peer *p, struct wbuf *w, int status)
{
    if (status == TLSOCK_ECANCELED && !p->close_called) {
        pump.canceled_before_close++;
    }
    if (status == TLSOCK_ECANCELED) {
        /* From within the close's own cancellations: closing again is safe, and a new write
         * fails at once without a callback. */
        int k = (int)(w - pump.w);

        tlsock_uv_close(p->conn);
        if (k >= 0 && k < PUMP_MAX_WRITES &&
            peer_write_buf(p, &pump.during_close[k], "y", 1) != TLSOCK_EINVAL) {
            pump.writes_accepted_during_close++;
        }
    }
    if (status == 0) {
        pump_top_up(p);
    }
}

static void pump_died(struct peer *p, int code)
{
    pump.dead = true;
    pump.event = code;
    pump.done_at_event = p->writes_done;
    /* Dead: a write fails at once. The test closes the connection later, to see what the
     * pending writes do until then. */
    pump.dead_write_rc = peer_write_buf(p, &pump.dead_write, "x", 1);
}

static const struct hooks pump_server = {
    .on_connect = pump_start,
    .on_write = pump_written,
    .on_event = pump_died,
};

static void stop_reading(struct peer *p, int status)
{
    if (status == 0 && tlsock_uv_read_stop(p->conn) != 0) {
        anomaly(p->env, "tlsock_uv_read_stop failed on a ready connection");
    }
}

struct pending_case {
    const char *what;
    bool reset; /* the peer resets; else it stops reading and the write timeout fires */
    int event;
    int alt_event;   /* also accepted (0: none) */
    int write_error; /* a status a pending write may also complete with */
};

static const struct pending_case pending_cases[] = {
    {.what = "write timeout (the peer stops reading)",
     .event = TLSOCK_ETIMEDOUT,
     .write_error = TLSOCK_ETIMEDOUT},
    /* When a write meets the reset first, the read after it sees a plain end of stream: the
     * driver still reports the reset. */
    {.what = "the peer resets", .reset = true, .event = TLSOCK_ESYS, .write_error = TLSOCK_ESYS},
};

/*
 * A connection dies with writes still queued. Until it is closed nothing completes with
 * ECANCELED; a new write fails with EINVAL and no callback. At tlsock_uv_close() every pending
 * write completes exactly once, with ECANCELED (the one the error hit may say why), in order,
 * all before on_close.
 */
static void test_pending_writes_canceled(void **state)
{
    ts_fill(pump_chunk, sizeof(pump_chunk), 3);
    for (size_t i = 0; i < sizeof(pending_cases) / sizeof(pending_cases[0]); i++) {
        const struct pending_case *c = &pending_cases[i];
        static const struct hooks reader = {.on_connect = stop_reading};
        struct tlsock_uv_opts opts;
        struct script_peer sp;
        struct env *env;
        int canceled = 0;
        int pending_at_close;
        bool failed_seen = false;

        print_message("%s\n", c->what);
        if (i > 0) {
            assert_int_equal(env_teardown(state), 0);
            assert_int_equal(env_setup(state), 0);
        }
        env = *state;
        memset(&pump, 0, sizeof(pump));
        pump.event = TS_NOT_RUN;
        pump.dead_write_rc = TS_NOT_RUN;
        make_contexts(env);
        opts = base_opts(NULL);
        if (!c->reset) {
            opts.write_timeout_ms = 300;
        }
        serve_ok(env, 0, env->sctx, &pump_server, &opts);
        if (c->reset) {
            script_start(env, &sp, env->cctx, env->srvs[0].port, SC_NO_READ_RESET);
            RUN_UNTIL(env, atomic_load(&sp.ready) && pump.n > 0, WAIT_MS);
            /* Data is queued beyond what the kernel holds for a peer that reads nothing. */
            RUN_UNTIL(env, pump.p->writes - pump.p->writes_done >= 4 || pump.dead, WAIT_MS);
            ts_gate_open(&env->gate);
        } else {
            (void)client_start(env, env->cctx, env->srvs[0].port, &reader, 0, 0);
        }
        RUN_UNTIL(env, pump.dead, WAIT_MS);
        print_message("  %d writes of %u KiB queued, %d completed when it died\n", pump.n,
                      PUMP_CHUNK >> 10, pump.done_at_event);
        print_message("  event %s (%s)\n", ts_rc_name(pump.event), pump.p->event_msg);
        if (c->alt_event == 0 || pump.event != c->alt_event) {
            TS_ASSERT_RC_MSG(pump.event, c->event, pump.p->event_msg);
        }
        TS_ASSERT_RC(pump.dead_write_rc, TLSOCK_EINVAL);
        assert_int_equal(pump.canceled_before_close, 0);
        /* Let the loop go round: still no ECANCELED before the close. */
        run_for(env, 100);
        assert_int_equal(pump.canceled_before_close, 0);
        pending_at_close = pump.p->writes - pump.p->writes_done;
        assert_true(pending_at_close > 0);

        peer_close(pump.p);
        RUN_UNTIL(env, pump.p->conn == NULL, WAIT_MS);
        for (int k = 0; k < pump.n; k++) {
            const struct wbuf *w = &pump.w[k];

            assert_int_equal(w->completions, 1);
            if (w->status == TLSOCK_ECANCELED) {
                assert_true(w->after_close);
                canceled++;
            } else if (w->status != 0 && w->status != c->write_error) {
                fail_msg("write %d of %d completed with %s", k, pump.n, ts_rc_name(w->status));
            }
            /* In order: nothing reaches the kernel after a write that did not. */
            if (w->status == 0 && failed_seen) {
                fail_msg("write %d completed after an earlier one failed", k);
            }
            failed_seen = failed_seen || w->status != 0;
        }
        print_message("  %d pending at the close, %d completed with ECANCELED\n", pending_at_close,
                      canceled);
        assert_int_equal(pump.dead_write.completions, 0);
        assert_int_equal(pump.writes_accepted_during_close, 0);
        for (int k = 0; k < PUMP_MAX_WRITES; k++) {
            assert_int_equal(pump.during_close[k].completions, 0);
        }
        assert_true(canceled >= pending_at_close - 1);
        assert_true(canceled > 0);
        if (c->reset) {
            RUN_UNTIL(env, conns_closed(env), WAIT_MS);
            TS_ASSERT_RC_MSG(sp.rc, 0, sp.msg);
        }
        assert_no_anomaly(env);
    }
}

/* ---- abort ---------------------------------------------------------------------------------- */

/*
 * tlsock_uv_abort() on a connection whose peer does not read, with megabytes queued: on_close
 * comes at once (a graceful close would flush for up to 5 s first), every pending write completes
 * once with ECANCELED (or 0 for what libuv had written before), the aborting side gets no event,
 * and the peer, reading again, meets a reset (ESYS): never close_notify, never a clean end.
 */
static void test_abort(void **state)
{
    static const struct hooks reader = {.on_connect = stop_reading};
    struct env *env = *state;
    struct tlsock_uv_opts opts;
    struct peer *client;
    int64_t aborted_ms;
    int canceled = 0;

    ts_fill(pump_chunk, sizeof(pump_chunk), 5);
    memset(&pump, 0, sizeof(pump));
    pump.event = TS_NOT_RUN;
    pump.dead_write_rc = TS_NOT_RUN;
    make_contexts(env);
    opts = base_opts(NULL);
    serve_ok(env, 0, env->sctx, &pump_server, &opts);
    client = client_start(env, env->cctx, env->srvs[0].port, &reader, 0, 0);
    RUN_UNTIL(env, pump.p != NULL && pump.p->writes - pump.p->writes_done >= 4, WAIT_MS);
    pump.p->close_called = true;
    aborted_ms = tlsock_now_ms();
    tlsock_uv_abort(pump.p->conn);
    tlsock_uv_abort(pump.p->conn); /* again: nothing more happens */
    RUN_UNTIL(env, pump.p->conn == NULL, WAIT_MS);
    print_message("on_close %lld ms after the abort, %d writes queued\n",
                  (long long)(tlsock_now_ms() - aborted_ms), pump.n);
    assert_true(tlsock_now_ms() - aborted_ms < 2000);
    assert_int_equal(pump.p->closes, 1);
    assert_false(pump.dead);
    for (int k = 0; k < pump.n; k++) {
        assert_int_equal(pump.w[k].completions, 1);
        if (pump.w[k].status == TLSOCK_ECANCELED) {
            canceled++;
        } else {
            TS_ASSERT_RC(pump.w[k].status, 0);
        }
    }
    assert_true(canceled > 0);

    TS_ASSERT_RC(tlsock_uv_read_start(client->conn), 0);
    RUN_UNTIL(env, client->events > 0, WAIT_MS);
    TS_ASSERT_RC_MSG(client->event_rc, TLSOCK_ESYS, client->event_msg);
    TS_ASSERT_CONTAINS(client->event_msg, "reset");
    peer_close(client);
    RUN_UNTIL(env, conns_closed(env), WAIT_MS);
    tlsock_uv_abort(NULL);
    assert_no_anomaly(env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_slow_handshake_clients, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_reset_mid_handshake, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_peer_end_after_handshake, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_client_sees_server_end, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_fatal_alert, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_close_inside_callbacks, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_server_close_inside_callbacks, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_write_errors_call_no_callback, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_pending_writes_canceled, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_abort, env_setup, env_teardown),
    };

    return cmocka_run_group_tests_name("uv_robust", tests, ts_pki_setup, ts_pki_teardown);
}
