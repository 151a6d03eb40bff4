/* TLS over any byte stream (tlsock_attach_io): blocking callbacks over a socketpair or pipes, a
 * non-blocking ring buffer, TLS inside TLS, error codes from callbacks, the socket transport
 * against a raw server (tiny buffers, truncation) and coalesced writes. */
#include "pair.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MIB (1024u * 1024u)

static bool is_want(int rc)
{
    return rc == TLSOCK_EWANT_READ || rc == TLSOCK_EWANT_WRITE;
}

/* Client options for a transport without a host name: the certificate must name localhost. */
static struct tlsock_opts client_opts(void)
{
    struct tlsock_opts opts = ts_opts();

    opts.verify_name = "localhost";
    return opts;
}

/* ---- blocking callbacks over file descriptors ------------------------------------------------ */

/*
 * A blocking transport over a socketpair end or a pair of pipes. The descriptors stay blocking;
 * each call first polls, so that it can honour the operation's deadline as the API asks
 * (tlsock_conn_op_deadline_ms()) and never outlive the test's own bound.
 */
struct stream_io {
    int rfd;
    int wfd;                  /* the same descriptor as rfd for a socket */
    bool is_socket;           /* send with MSG_NOSIGNAL */
    struct tlsock_conn *conn; /* set right after attaching, for tlsock_conn_op_deadline_ms() */
};

static void stream_io_close(struct stream_io *s)
{
    if (s->wfd >= 0 && s->wfd != s->rfd) {
        close(s->wfd);
    }
    if (s->rfd >= 0) {
        close(s->rfd);
    }
    s->rfd = -1;
    s->wfd = -1;
}

/* Ends the write direction without TLS noticing: the peer's reads see the end of the stream. */
static void stream_io_end_writes(struct stream_io *s)
{
    if (s->is_socket) {
        (void)shutdown(s->wfd, SHUT_WR);
    } else if (s->wfd >= 0) {
        close(s->wfd);
        s->wfd = -1;
    }
}

/* Milliseconds a callback may wait: until the operation's deadline, at most the test bound. */
static int stream_wait_ms(const struct stream_io *s)
{
    int64_t deadline = s->conn != NULL ? tlsock_conn_op_deadline_ms(s->conn) : -1;
    int64_t left = TS_IO_TIMEOUT_MS;

    if (deadline >= 0) {
        left = deadline - tlsock_now_ms();
    }
    if (left < 0) {
        left = 0;
    }
    return left > TS_IO_TIMEOUT_MS ? TS_IO_TIMEOUT_MS : (int)left;
}

/* Waits for @p events on @p fd: 0 when ready, TLSOCK_ETIMEDOUT or TLSOCK_ESYS. */
static int stream_wait(const struct stream_io *s, int fd, short events)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    int n = -1;
    int rc = TLSOCK_ESYS;

    /* EINTR restarts the wait; the count bounds a storm of signals. */
    for (int i = 0; i < 100 && n < 0; i++) {
        n = poll(&pfd, 1, stream_wait_ms(s));
        if (n < 0 && errno != EINTR) {
            break;
        }
    }
    if (n > 0) {
        rc = 0;
    } else if (n == 0) {
        rc = TLSOCK_ETIMEDOUT;
    }
    return rc;
}

static ssize_t stream_read(void *user, void *buf, size_t len)
{
    struct stream_io *s = user;
    ssize_t n = s->rfd >= 0 ? stream_wait(s, s->rfd, POLLIN) : TLSOCK_ESYS;

    if (n == 0) {
        n = read(s->rfd, buf, len);
        if (n < 0) {
            n = TLSOCK_ESYS;
        }
    }
    return n;
}

static ssize_t stream_write(void *user, const void *buf, size_t len)
{
    struct stream_io *s = user;
    ssize_t n = s->wfd >= 0 ? stream_wait(s, s->wfd, POLLOUT) : TLSOCK_ESYS;

    if (n == 0) {
        /* A socket's peer may be gone: MSG_NOSIGNAL turns SIGPIPE into EPIPE. Pipes rely on
         * main() ignoring SIGPIPE. */
        n = s->is_socket ? send(s->wfd, buf, len, MSG_NOSIGNAL) : write(s->wfd, buf, len);
        if (n < 0) {
            n = TLSOCK_ESYS;
        }
    }
    return n;
}

/* The server half, run in its own thread; it records results, the test thread asserts them. */
struct stream_peer {
    struct tlsock_ctx *ctx;
    struct stream_io io;
    bool truncate; /* end with a bare end of stream instead of close_notify */
    bool late;     /* send "late" only once the gate opens, then close_notify */
    struct ts_gate gate;
    struct ts_exchange ex;
    int final_rc;
    int result;
    char errmsg[TLSOCK__ERRMSG_SIZE];
};

/* Handshake, send "data", then end the stream without close_notify. */
static int serve_truncated(struct tlsock_conn *conn, struct stream_peer *p)
{
    unsigned char byte;
    size_t n = 0;
    int rc = tlsock_handshake(conn);

    if (rc == 0) {
        rc = tlsock_write(conn, "data", 4);
    }
    if (rc == 0) {
        stream_io_end_writes(&p->io);
        /* The client answers a truncation with an alert or its own end of stream. */
        p->final_rc = tlsock_read(conn, &byte, 1, &n);
    }
    return rc;
}

/* Handshake, stay silent until the test opens the gate, then send "late" and close. */
static int serve_late(struct tlsock_conn *conn, struct stream_peer *p)
{
    unsigned char byte;
    size_t n = 0;
    int rc = tlsock_handshake(conn);

    if (rc == 0) {
        rc = ts_gate_wait(&p->gate, TS_IO_TIMEOUT_MS) ? 0 : TS_ESETUP;
    }
    if (rc == 0) {
        rc = tlsock_write(conn, "late", 4);
    }
    if (rc == 0) {
        rc = tlsock_shutdown(conn);
    }
    if (rc == 0) {
        p->final_rc = tlsock_read(conn, &byte, 1, &n);
    }
    return rc;
}

static void *stream_server_main(void *arg)
{
    struct stream_peer *p = arg;
    struct tlsock_opts opts = ts_opts();
    const struct tlsock_io io = {.read = stream_read, .write = stream_write, .user = &p->io};
    struct tlsock_conn *conn = NULL;
    int rc = tlsock_attach_io(p->ctx, &io, &opts, &conn);

    if (rc == 0) {
        p->io.conn = conn;
        if (p->truncate) {
            rc = serve_truncated(conn, p);
        } else if (p->late) {
            rc = serve_late(conn, p);
        } else {
            rc = ts_serve_exchange(conn, &p->ex);
        }
        if (rc != 0) {
            snprintf(p->errmsg, sizeof(p->errmsg), "%s", tlsock_conn_errmsg(conn));
        }
    }
    p->result = rc;
    tlsock_close(conn);
    p->io.conn = NULL;
    return NULL;
}

struct stream_env {
    struct tlsock_ctx *sctx;
    struct tlsock_ctx *cctx;
    struct tlsock_conn *client;
    struct stream_io cio;
    struct stream_peer peer;
    pthread_t thread;
    bool started;
};

static int stream_setup(void **state)
{
    struct stream_env *env = calloc(1, sizeof(*env));
    int rc = -1;

    if (env != NULL) {
        env->cio.rfd = env->cio.wfd = -1;
        env->peer.io.rfd = env->peer.io.wfd = -1;
        ts_gate_init(&env->peer.gate);
        *state = env;
        rc = 0;
    }
    return rc;
}

static int stream_teardown(void **state)
{
    struct stream_env *env = *state;

    if (env != NULL) {
        /* Closing the client's descriptors ends the server's stream, so the join is bounded
         * even after a failed assertion. */
        tlsock_close(env->client);
        stream_io_close(&env->cio);
        ts_gate_open(&env->peer.gate);
        if (env->started) {
            pthread_join(env->thread, NULL);
        }
        stream_io_close(&env->peer.io);
        ts_gate_destroy(&env->peer.gate);
        tlsock_ctx_free(env->cctx);
        tlsock_ctx_free(env->sctx);
        free(env);
        *state = NULL;
    }
    return 0;
}

static void stream_renew(void **state, size_t index)
{
    if (index > 0) {
        assert_int_equal(stream_teardown(state), 0);
        assert_int_equal(stream_setup(state), 0);
    }
}

/* Connects the client and server transports: one socketpair, or two pipes. */
static void stream_connect(struct stream_env *env, bool pipes)
{
    int a[2] = {-1, -1};
    int b[2] = {-1, -1};

    if (pipes) {
        assert_int_equal(pipe2(a, O_CLOEXEC), 0);
        assert_int_equal(pipe2(b, O_CLOEXEC), 0);
        /* a: client to server, b: server to client. */
        env->cio = (struct stream_io){.rfd = b[0], .wfd = a[1]};
        env->peer.io = (struct stream_io){.rfd = a[0], .wfd = b[1]};
    } else {
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a), 0);
        env->cio = (struct stream_io){.rfd = a[0], .wfd = a[0], .is_socket = true};
        env->peer.io = (struct stream_io){.rfd = a[1], .wfd = a[1], .is_socket = true};
    }
}

struct stream_case {
    const char *what;
    bool pipes;
    size_t size;
    bool truncate;
};

static const struct stream_case stream_cases[] = {
    {.what = "socketpair, 1 byte", .size = 1},
    {.what = "socketpair, 16385 bytes", .size = 16385},
    {.what = "socketpair, 1 MiB", .size = MIB},
    {.what = "pipes, 1 byte", .pipes = true, .size = 1},
    {.what = "pipes, 16385 bytes", .pipes = true, .size = 16385},
    {.what = "pipes, 1 MiB", .pipes = true, .size = MIB},
    {.what = "socketpair, end of stream without close_notify", .truncate = true},
    {.what = "pipes, end of stream without close_notify", .pipes = true, .truncate = true},
};

static void run_stream_case(struct stream_env *env, const struct stream_case *c)
{
    struct tlsock_opts opts = client_opts();
    const struct tlsock_io io = {.read = stream_read, .write = stream_write, .user = &env->cio};
    char buf[8] = {0};
    size_t n = 0;

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    stream_connect(env, c->pipes);
    env->peer.ctx = env->sctx;
    env->peer.truncate = c->truncate;
    env->peer.ex.size = c->size;
    env->peer.final_rc = TS_NOT_RUN;
    env->peer.result = TS_NOT_RUN;
    assert_int_equal(pthread_create(&env->thread, NULL, stream_server_main, &env->peer), 0);
    env->started = true;

    TS_ASSERT_RC(tlsock_attach_io(env->cctx, &io, &opts, &env->client), 0);
    env->cio.conn = env->client;
    /* A user transport has no socket and no memory-mode queue. */
    assert_int_equal(tlsock_conn_fd(env->client), -1);
    assert_int_equal(tlsock_conn_pending_output(env->client), 0);
    if (c->truncate) {
        TS_ASSERT_RC(ts_read_full(env->client, buf, 4), 0);
        assert_memory_equal(buf, "data", 4);
        TS_ASSERT_RC_MSG(tlsock_read(env->client, buf, sizeof(buf), &n), TLSOCK_ETRUNCATED,
                         tlsock_conn_errmsg(env->client));
        /* Sticky, for reads and writes alike. */
        TS_ASSERT_RC(tlsock_read(env->client, buf, sizeof(buf), &n), TLSOCK_ETRUNCATED);
        TS_ASSERT_RC(tlsock_write(env->client, "x", 1), TLSOCK_ETRUNCATED);
        /* Let the server's last read end, whatever the client sent before. */
        stream_io_end_writes(&env->cio);
    } else {
        /* Writes seed 1, reads seed 2, then expects the server's close_notify (ECLOSED). */
        TS_ASSERT_RC(ts_client_exchange(env->client, c->size), 0);
        TS_ASSERT_RC(tlsock_read(env->client, buf, 1, &n), TLSOCK_ECLOSED);
    }
    /* Sends our close_notify unless the session is dead. */
    tlsock_close(env->client);
    env->client = NULL;
    pthread_join(env->thread, NULL);
    env->started = false;
    TS_ASSERT_RC_MSG(env->peer.result, 0, env->peer.errmsg);
    if (c->truncate) {
        assert_true(env->peer.final_rc < 0);
        assert_int_not_equal(env->peer.final_rc, TLSOCK_ECLOSED);
    } else {
        TS_ASSERT_RC(env->peer.ex.final_rc, TLSOCK_ECLOSED);
    }
}

static void test_stream_callbacks(void **state)
{
    for (size_t i = 0; i < sizeof(stream_cases) / sizeof(stream_cases[0]); i++) {
        print_message("%s\n", stream_cases[i].what);
        stream_renew(state, i);
        run_stream_case(*state, &stream_cases[i]);
    }
}

/*
 * A blocking callback honours the operation's deadline (tlsock_conn_op_deadline_ms()) by returning
 * ETIMEDOUT: the read reports it and, being a read, the connection stays usable.
 */
static void test_stream_read_timeout(void **state)
{
    struct stream_env *env = *state;
    struct tlsock_opts opts = client_opts();
    const struct tlsock_io io = {.read = stream_read, .write = stream_write, .user = &env->cio};
    char buf[8] = {0};
    size_t n = 0;

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    stream_connect(env, false);
    env->peer.ctx = env->sctx;
    env->peer.late = true;
    env->peer.final_rc = TS_NOT_RUN;
    env->peer.result = TS_NOT_RUN;
    assert_int_equal(pthread_create(&env->thread, NULL, stream_server_main, &env->peer), 0);
    env->started = true;
    TS_ASSERT_RC(tlsock_attach_io(env->cctx, &io, &opts, &env->client), 0);
    env->cio.conn = env->client;
    TS_ASSERT_RC(tlsock_handshake(env->client), 0);

    /* The server is silent: the callback waits until the deadline and says so. */
    TS_ASSERT_RC(tlsock_conn_set_timeout(env->client, 100), 0);
    TS_ASSERT_RC_MSG(tlsock_read(env->client, buf, sizeof(buf), &n), TLSOCK_ETIMEDOUT,
                     tlsock_conn_errmsg(env->client));
    /* An absolute deadline already past: no waiting at all. */
    TS_ASSERT_RC(tlsock_conn_set_timeout(env->client, TLSOCK_NO_TIMEOUT), 0);
    TS_ASSERT_RC(tlsock_conn_set_deadline(env->client, tlsock_now_ms() - 1), 0);
    TS_ASSERT_RC(tlsock_read(env->client, buf, sizeof(buf), &n), TLSOCK_ETIMEDOUT);

    TS_ASSERT_RC(tlsock_conn_set_deadline(env->client, -1), 0);
    TS_ASSERT_RC(tlsock_conn_set_timeout(env->client, TS_IO_TIMEOUT_MS), 0);
    ts_gate_open(&env->peer.gate);
    TS_ASSERT_RC_MSG(ts_read_full(env->client, buf, 4), 0, tlsock_conn_errmsg(env->client));
    assert_memory_equal(buf, "late", 4);
    TS_ASSERT_RC(tlsock_read(env->client, buf, sizeof(buf), &n), TLSOCK_ECLOSED);
    tlsock_close(env->client);
    env->client = NULL;
    pthread_join(env->thread, NULL);
    env->started = false;
    TS_ASSERT_RC_MSG(env->peer.result, 0, env->peer.errmsg);
    TS_ASSERT_RC(env->peer.final_rc, TLSOCK_ECLOSED);
}

/* ---- a non-blocking in-memory ring buffer ---------------------------------------------------- */

/* A bounded byte queue: writes beyond its capacity are refused (EWANT_WRITE). */
struct ring {
    unsigned char *buf;
    size_t cap;
    size_t head; /* index of the oldest byte */
    size_t len;  /* bytes stored */
};

static size_t ring_put(struct ring *r, const unsigned char *p, size_t n)
{
    size_t done = 0;

    /* At most two pieces: up to the end of the array, then from its start. */
    for (int piece = 0; piece < 2 && done < n && r->len < r->cap; piece++) {
        size_t tail = (r->head + r->len) % r->cap;
        size_t room = r->cap - r->len;
        size_t run = tail >= r->head ? r->cap - tail : room;

        run = run < room ? run : room;
        run = run < n - done ? run : n - done;
        memcpy(r->buf + tail, p + done, run);
        r->len += run;
        done += run;
    }
    return done;
}

static size_t ring_get(struct ring *r, unsigned char *p, size_t n)
{
    size_t done = 0;

    for (int piece = 0; piece < 2 && done < n && r->len > 0; piece++) {
        size_t run = r->cap - r->head;

        run = run < r->len ? run : r->len;
        run = run < n - done ? run : n - done;
        memcpy(p + done, r->buf + r->head, run);
        r->head = (r->head + run) % r->cap;
        r->len -= run;
        done += run;
    }
    return done;
}

/* A callback that passes @c budget more bytes, then returns @c code (while @c on). */
struct fault {
    bool on;
    size_t budget;
    ssize_t code;
};

/* One side's view of the two rings, with fault injection and counters. */
struct ring_end {
    struct ring *in;
    struct ring *out;
    bool in_eof; /* the peer ended the stream: reads return 0 once @c in is empty */
    struct fault read_fault;
    struct fault write_fault;
    size_t max_write;   /* > 0: a write call takes at most this many bytes */
    size_t write_calls; /* write calls that took bytes */
    size_t write_bytes;
    size_t want_writes;       /* write calls answered with EWANT_WRITE */
    struct tlsock_conn *conn; /* to record tlsock_conn_op_deadline_ms() in the callbacks */
    size_t deadline_calls;
    int64_t deadline_min;
    int64_t deadline_max;
};

static void note_deadline(struct ring_end *e)
{
    if (e->conn != NULL) {
        int64_t d = tlsock_conn_op_deadline_ms(e->conn);

        if (e->deadline_calls == 0 || d < e->deadline_min) {
            e->deadline_min = d;
        }
        if (e->deadline_calls == 0 || d > e->deadline_max) {
            e->deadline_max = d;
        }
        e->deadline_calls++;
    }
}

/* How many of @p len bytes a faulty callback may still move; 0 means "fail now". */
static size_t fault_allow(const struct fault *f, size_t len)
{
    return f->on && f->budget < len ? f->budget : len;
}

static void fault_spend(struct fault *f, size_t n)
{
    if (f->on) {
        f->budget -= n;
    }
}

static ssize_t ring_read(void *user, void *buf, size_t len)
{
    struct ring_end *e = user;
    size_t allow = fault_allow(&e->read_fault, len);
    ssize_t rc;

    note_deadline(e);
    if (allow == 0) {
        rc = e->read_fault.code;
    } else if (e->in->len == 0) {
        rc = e->in_eof ? 0 : TLSOCK_EWANT_READ;
    } else {
        size_t n = ring_get(e->in, buf, allow);

        fault_spend(&e->read_fault, n);
        rc = (ssize_t)n;
    }
    return rc;
}

static ssize_t ring_write(void *user, const void *buf, size_t len)
{
    struct ring_end *e = user;
    size_t allow = fault_allow(&e->write_fault, len);
    ssize_t rc;

    note_deadline(e);
    if (e->max_write > 0 && allow > e->max_write) {
        allow = e->max_write;
    }
    if (allow == 0) {
        rc = e->write_fault.code;
    } else if (e->out->len == e->out->cap) {
        e->want_writes++;
        rc = TLSOCK_EWANT_WRITE;
    } else {
        size_t n = ring_put(e->out, buf, allow);

        fault_spend(&e->write_fault, n);
        e->write_calls++;
        e->write_bytes += n;
        rc = (ssize_t)n;
    }
    return rc;
}

/* A client and a server connected by two rings, in one thread: the shared pair, direct. */
struct ring_pair {
    struct ts_pair pair;
    struct ring c2s;
    struct ring s2c;
    struct ring_end cli_end;
    struct ring_end srv_end;
};

static int ring_setup(void **state)
{
    struct ring_pair *p = calloc(1, sizeof(*p));

    if (p != NULL) {
        ts_pair_init(&p->pair);
    }
    *state = p;
    return p != NULL ? 0 : -1;
}

static int ring_teardown(void **state)
{
    struct ring_pair *p = *state;

    if (p != NULL) {
        /* Faults off, so that closing never reports into a test that already ended. */
        p->cli_end.read_fault.on = p->cli_end.write_fault.on = false;
        p->srv_end.read_fault.on = p->srv_end.write_fault.on = false;
        ts_pair_release(&p->pair);
        free(p->c2s.buf);
        free(p->s2c.buf);
        free(p);
        *state = NULL;
    }
    return 0;
}

static void ring_renew(void **state, size_t index)
{
    if (index > 0) {
        assert_int_equal(ring_teardown(state), 0);
        assert_int_equal(ring_setup(state), 0);
    }
}

/* Creates both connections over rings of @p cap bytes; @p copts for the client (NULL: default). */
static void ring_open(struct ring_pair *p, size_t cap, const struct tlsock_opts *copts)
{
    const struct tlsock_io cio = {.read = ring_read, .write = ring_write, .user = &p->cli_end};
    const struct tlsock_io sio = {.read = ring_read, .write = ring_write, .user = &p->srv_end};

    p->c2s.buf = malloc(cap);
    p->s2c.buf = malloc(cap);
    assert_non_null(p->c2s.buf);
    assert_non_null(p->s2c.buf);
    p->c2s.cap = p->s2c.cap = cap;
    p->cli_end.in = &p->s2c;
    p->cli_end.out = &p->c2s;
    p->srv_end.in = &p->c2s;
    p->srv_end.out = &p->s2c;
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &p->pair.sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &p->pair.cctx), 0);
    /* The pair's default client options verify "localhost", as client_opts() does. */
    TS_ASSERT_RC(ts_pair_attach_io(&p->pair, &cio, &sio, copts, NULL), 0);
}

/* Both handshakes, alternating, at most @p max_rounds rounds: 0, or the first error that is not a
 * WANT; the rounds it took in *rounds (may be NULL). */
static int ring_handshake(struct ring_pair *p, int max_rounds, int *rounds)
{
    int rc;

    p->pair.rounds_max = max_rounds;
    rc = ts_pair_handshake(&p->pair);
    if (rounds != NULL) {
        *rounds = p->pair.rounds;
    }
    return rc;
}

/*
 * Sends @p size bytes of pattern @p seed along @p dir (ts_pair_transfer(): the write is repeated
 * with the same arguments while it returns EWANT_WRITE, as the callback contract requires, and
 * the reader reads in between); the writer's EWANT_WRITEs in *write_wants.
 */
static int ring_transfer(struct ring_pair *p, enum ts_dir dir, size_t size, unsigned seed,
                         size_t *write_wants)
{
    size_t before = p->pair.path[dir].write_wants;
    int rc = ts_pair_transfer(&p->pair, dir, size, seed);

    *write_wants = p->pair.path[dir].write_wants - before;
    return rc;
}

/* Non-blocking callbacks through a 4 KiB ring: partial writes and EWANT_WRITE happen. */
static void test_ring_buffer(void **state)
{
    struct ring_pair *p = *state;
    size_t wants = 0;
    int rounds = 0;
    unsigned char byte;
    size_t n = 0;

    ring_open(p, 4096, NULL);
    /* Nothing has arrived yet: the first steps ask for input instead of blocking. */
    TS_ASSERT_RC(tlsock_handshake(p->pair.server), TLSOCK_EWANT_READ);
    TS_ASSERT_RC(tlsock_read(p->pair.server, &byte, 1, &n), TLSOCK_EWANT_READ);
    TS_ASSERT_RC_MSG(ring_handshake(p, 50, &rounds), 0, tlsock_conn_errmsg(p->pair.client));
    print_message("handshake in %d rounds\n", rounds);

    TS_ASSERT_RC_MSG(ring_transfer(p, TS_C2S, 1, 1, &wants), 0, tlsock_conn_errmsg(p->pair.server));
    TS_ASSERT_RC_MSG(ring_transfer(p, TS_S2C, 16385, 2, &wants), 0,
                     tlsock_conn_errmsg(p->pair.client));
    /* 16385 bytes are two records, larger than the ring: the writer had to wait. */
    assert_true(wants > 0);
    TS_ASSERT_RC_MSG(ring_transfer(p, TS_C2S, MIB, 3, &wants), 0,
                     tlsock_conn_errmsg(p->pair.server));
    print_message("1 MiB client to server: %zu EWANT_WRITE returns\n", wants);
    assert_true(wants >= MIB / 4096 / 2);
    TS_ASSERT_RC_MSG(ring_transfer(p, TS_S2C, MIB, 4, &wants), 0,
                     tlsock_conn_errmsg(p->pair.client));
    assert_true(wants > 0);
    assert_true(p->cli_end.want_writes > 0);
    assert_true(p->srv_end.want_writes > 0);

    /* Clean close through the rings. */
    TS_ASSERT_RC(tlsock_shutdown(p->pair.server), 0);
    TS_ASSERT_RC(tlsock_read(p->pair.client, &byte, 1, &n), TLSOCK_ECLOSED);
    TS_ASSERT_RC(tlsock_shutdown(p->pair.client), 0);
    TS_ASSERT_RC(tlsock_read(p->pair.server, &byte, 1, &n), TLSOCK_ECLOSED);
}

/*
 * Write callbacks that take a few bytes per call (short writes, never "not now"). GnuTLS hands a
 * whole flight over as one vector; tlsock must ask the callback again for the rest rather than
 * stop at the first short write, so the handshake takes no more rounds than with callbacks that
 * take everything, no WANT code is made up, and every record arrives intact.
 */
static void test_short_callback_writes(void **state)
{
    static const size_t caps[] = {0, 5, 1};
    int rounds[3] = {0};
    size_t wants = 0;

    for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
        struct ring_pair *p;

        ring_renew(state, i);
        p = *state;
        ring_open(p, 65536, NULL);
        p->cli_end.max_write = p->srv_end.max_write = caps[i];
        TS_ASSERT_RC_MSG(ring_handshake(p, 20, &rounds[i]), 0, tlsock_conn_errmsg(p->pair.client));
        print_message("at most %zu bytes per write (0: no limit): handshake in %d rounds, server "
                      "%zu calls for %zu bytes, client %zu calls for %zu bytes\n",
                      caps[i], rounds[i], p->srv_end.write_calls, p->srv_end.write_bytes,
                      p->cli_end.write_calls, p->cli_end.write_bytes);
        if (caps[i] > 0) {
            /* The limit really applied: every flight took many calls. */
            assert_true(p->srv_end.write_calls * caps[i] >= p->srv_end.write_bytes);
            assert_true(p->cli_end.write_calls * caps[i] >= p->cli_end.write_bytes);
            assert_int_equal(rounds[i], rounds[0]);
        }
        TS_ASSERT_RC_MSG(ring_transfer(p, TS_S2C, 40000, 1, &wants), 0,
                         tlsock_conn_errmsg(p->pair.client));
        assert_int_equal(wants, 0);
        TS_ASSERT_RC_MSG(ring_transfer(p, TS_C2S, 40000, 2, &wants), 0,
                         tlsock_conn_errmsg(p->pair.server));
        assert_int_equal(wants, 0);
        assert_int_equal(p->cli_end.want_writes, 0);
        assert_int_equal(p->srv_end.want_writes, 0);
    }
}

/* ---- TLS inside TLS -------------------------------------------------------------------------- */

#define INNER_CN   "tlsock-inner-server"
#define INNER_HOST "inner.example"

/* The inner session's transport is the outer session's plaintext. */
static ssize_t tunnel_read(void *user, void *buf, size_t len)
{
    struct tlsock_conn *outer = user;
    size_t n = 0;
    int rc = tlsock_read(outer, buf, len, &n);

    /* The outer session's clean end is the end of the inner stream. */
    if (rc == TLSOCK_ECLOSED) {
        rc = 0;
    }
    return rc != 0 ? rc : (ssize_t)n;
}

static ssize_t tunnel_write(void *user, const void *buf, size_t len)
{
    int rc = tlsock_write(user, buf, len);

    return rc != 0 ? rc : (ssize_t)len;
}

struct nested_server {
    struct tlsock_ctx *outer_ctx;
    struct tlsock_ctx *inner_ctx;
    int fd;
    struct ts_exchange ex; /* inner */
    int outer_final_rc;
    char inner_sni[256];
    int result;
    char errmsg[TLSOCK__ERRMSG_SIZE];
};

static void *nested_server_main(void *arg)
{
    struct nested_server *s = arg;
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *outer = NULL;
    struct tlsock_conn *inner = NULL;
    const struct tlsock_info *info = NULL;
    unsigned char byte;
    size_t n = 0;
    int rc = tlsock_attach_fd(s->outer_ctx, s->fd, &opts, &outer);

    if (rc == 0) {
        rc = tlsock_handshake(outer);
    }
    if (rc == 0) {
        const struct tlsock_io io = {.read = tunnel_read, .write = tunnel_write, .user = outer};

        rc = tlsock_attach_io(s->inner_ctx, &io, &opts, &inner);
    }
    if (rc == 0) {
        rc = ts_serve_exchange(inner, &s->ex);
        if (rc != 0) {
            snprintf(s->errmsg, sizeof(s->errmsg), "inner: %s", tlsock_conn_errmsg(inner));
        }
    }
    if (rc == 0) {
        rc = tlsock_conn_info(inner, &info);
    }
    if (rc == 0) {
        snprintf(s->inner_sni, sizeof(s->inner_sni), "%s", info->servername);
    }
    tlsock_close(inner);
    if (rc == 0) {
        /* The client closes the outer session after the inner one. */
        s->outer_final_rc = tlsock_read(outer, &byte, 1, &n);
    }
    if (rc != 0 && s->errmsg[0] == '\0' && outer != NULL) {
        snprintf(s->errmsg, sizeof(s->errmsg), "outer: %s", tlsock_conn_errmsg(outer));
    }
    tlsock_close(outer);
    s->result = rc;
    return NULL;
}

struct nested_env {
    struct tlsock__pem_pair inner_cert;
    struct tlsock_ctx *outer_sctx;
    struct tlsock_ctx *outer_cctx;
    struct tlsock_ctx *inner_sctx;
    struct tlsock_ctx *inner_cctx;
    struct tlsock_conn *outer;
    struct tlsock_conn *inner;
    int fds[2];
    struct nested_server srv;
    pthread_t thread;
    bool started;
};

static int nested_setup(void **state)
{
    struct nested_env *env = calloc(1, sizeof(*env));

    if (env != NULL) {
        env->fds[0] = env->fds[1] = -1;
    }
    *state = env;
    return env != NULL ? 0 : -1;
}

static int nested_teardown(void **state)
{
    struct nested_env *env = *state;

    if (env != NULL) {
        tlsock_close(env->inner);
        tlsock_close(env->outer);
        if (env->fds[0] >= 0) {
            /* Ends the server's stream so that the join is bounded. */
            close(env->fds[0]);
        }
        if (env->started) {
            pthread_join(env->thread, NULL);
        }
        if (env->fds[1] >= 0) {
            close(env->fds[1]);
        }
        tlsock_ctx_free(env->outer_sctx);
        tlsock_ctx_free(env->outer_cctx);
        tlsock_ctx_free(env->inner_sctx);
        tlsock_ctx_free(env->inner_cctx);
        tlsock__pem_pair_free(&env->inner_cert);
        free(env);
        *state = NULL;
    }
    return 0;
}

static void test_tls_in_tls(void **state)
{
    struct nested_env *env = *state;
    struct tlsock_opts outer_opts = client_opts();
    struct tlsock_opts inner_opts = ts_opts();
    const struct tlsock_info *info = NULL;
    size_t size = 100000;

    /* The inner server is someone else: same CA, another name and CN. */
    assert_int_equal(
        ts_leaf_make(&ts_pki.ca, INNER_CN, INNER_HOST, TLSOCK__EKU_SERVER, &env->inner_cert), 0);
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->outer_sctx), 0);
    TS_ASSERT_RC(ts_server_ctx_new(&env->inner_cert, &env->inner_sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->outer_cctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->inner_cctx), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, env->fds), 0);
    env->srv = (struct nested_server){
        .outer_ctx = env->outer_sctx,
        .inner_ctx = env->inner_sctx,
        .fd = env->fds[1],
        .ex = {.size = size},
        .outer_final_rc = TS_NOT_RUN,
        .result = TS_NOT_RUN,
    };
    assert_int_equal(pthread_create(&env->thread, NULL, nested_server_main, &env->srv), 0);
    env->started = true;

    TS_ASSERT_RC(tlsock_attach_fd(env->outer_cctx, env->fds[0], &outer_opts, &env->outer), 0);
    TS_ASSERT_RC_MSG(tlsock_handshake(env->outer), 0, tlsock_conn_errmsg(env->outer));
    TS_ASSERT_RC(tlsock_conn_info(env->outer, &info), 0);
    TS_ASSERT_CONTAINS(info->peer_subject, TS_SERVER_CN);

    inner_opts.servername = INNER_HOST;
    {
        const struct tlsock_io io = {
            .read = tunnel_read, .write = tunnel_write, .user = env->outer};

        TS_ASSERT_RC(tlsock_attach_io(env->inner_cctx, &io, &inner_opts, &env->inner), 0);
    }
    TS_ASSERT_RC_MSG(tlsock_handshake(env->inner), 0, tlsock_conn_errmsg(env->inner));
    TS_ASSERT_RC(tlsock_conn_info(env->inner, &info), 0);
    /* The inner peer is the inner server, verified for its own name. */
    TS_ASSERT_CONTAINS(info->peer_subject, INNER_CN);
    assert_null(strstr(info->peer_subject, TS_SERVER_CN));
    TS_ASSERT_CONTAINS(info->peer_sans, INNER_HOST);
    assert_int_equal(info->verify_result, 0);
    assert_string_equal(info->servername, INNER_HOST);
    assert_string_equal(info->version, "TLSv1.3");

    TS_ASSERT_RC(ts_client_exchange(env->inner, size), 0);
    tlsock_close(env->inner);
    env->inner = NULL;
    tlsock_close(env->outer);
    env->outer = NULL;
    pthread_join(env->thread, NULL);
    env->started = false;
    TS_ASSERT_RC_MSG(env->srv.result, 0, env->srv.errmsg);
    /* Each session ended with its own close_notify. */
    TS_ASSERT_RC(env->srv.ex.final_rc, TLSOCK_ECLOSED);
    TS_ASSERT_RC(env->srv.outer_final_rc, TLSOCK_ECLOSED);
    assert_string_equal(env->srv.inner_sni, INNER_HOST);
}

/* ---- error codes from callbacks -------------------------------------------------------------- */

struct fault_case {
    const char *what;
    bool on_write;     /* the client's write callback fails, else its read callback */
    bool in_handshake; /* during the handshake, else during application data */
    size_t after;      /* bytes the callback still moves before failing */
    ssize_t code;      /* what the callback then returns */
    int expect;        /* what the tlsock call returns */
    bool retryable;    /* the connection works again once the callback does */
    const char *msg;   /* expected in tlsock_conn_errmsg() */
    size_t size;       /* bytes the failing write sends; 0: FAULT_SMALL */
};

/* A write that fits in one record (sent as it is) and one that is coalesced (corked). */
#define FAULT_SMALL 1000
#define FAULT_LARGE 100000

static const struct fault_case fault_cases[] = {
    {.what = "read ESYS in the handshake",
     .in_handshake = true,
     .after = 100,
     .code = TLSOCK_ESYS,
     .expect = TLSOCK_ESYS,
     .msg = "ESYS"},
    {.what = "read ECANCELED in the handshake",
     .in_handshake = true,
     .code = TLSOCK_ECANCELED,
     .expect = TLSOCK_ECANCELED,
     .msg = "ECANCELED"},
    {.what = "read ESYS inside a record",
     .after = 10,
     .code = TLSOCK_ESYS,
     .expect = TLSOCK_ESYS,
     .msg = "ESYS"},
    {.what = "write ECANCELED",
     .on_write = true,
     .code = TLSOCK_ECANCELED,
     .expect = TLSOCK_ECANCELED,
     .msg = "ECANCELED"},
    {.what = "read ETIMEDOUT inside a record (retryable)",
     .after = 10,
     .code = TLSOCK_ETIMEDOUT,
     .expect = TLSOCK_ETIMEDOUT,
     .retryable = true,
     .msg = "ETIMEDOUT"},
    {.what = "read ETIMEDOUT between records (retryable)",
     .code = TLSOCK_ETIMEDOUT,
     .expect = TLSOCK_ETIMEDOUT,
     .retryable = true,
     .msg = "ETIMEDOUT"},
    {.what = "write ETIMEDOUT after a partial write (fatal)",
     .on_write = true,
     .after = 10,
     .code = TLSOCK_ETIMEDOUT,
     .expect = TLSOCK_ETIMEDOUT,
     .msg = "ETIMEDOUT"},
    {.what = "read ETIMEDOUT inside a record header (retryable)",
     .after = 2,
     .code = TLSOCK_ETIMEDOUT,
     .expect = TLSOCK_ETIMEDOUT,
     .retryable = true,
     .msg = "ETIMEDOUT"},
    {.what = "write ETIMEDOUT while flushing coalesced records (fatal)",
     .on_write = true,
     .after = 70000,
     .code = TLSOCK_ETIMEDOUT,
     .expect = TLSOCK_ETIMEDOUT,
     .msg = "ETIMEDOUT",
     .size = FAULT_LARGE},
    {.what = "write ESYS while flushing coalesced records",
     .on_write = true,
     .after = 70000,
     .code = TLSOCK_ESYS,
     .expect = TLSOCK_ESYS,
     .msg = "ESYS",
     .size = FAULT_LARGE},
    {.what = "write returns 0 while flushing coalesced records",
     .on_write = true,
     .after = 70000,
     .code = 0,
     .expect = TLSOCK_EINVAL,
     .msg = "callback",
     .size = FAULT_LARGE},
    {.what = "write ETIMEDOUT at once (fatal)",
     .on_write = true,
     .code = TLSOCK_ETIMEDOUT,
     .expect = TLSOCK_ETIMEDOUT,
     .msg = "ETIMEDOUT"},
    /* The callback contract forbids 0 from a write; the library reports the broken callback. */
    {.what = "write returns 0",
     .on_write = true,
     .code = 0,
     .expect = TLSOCK_EINVAL,
     .msg = "callback"},
    {.what = "write returns 0 in the handshake",
     .on_write = true,
     .in_handshake = true,
     .code = 0,
     .expect = TLSOCK_EINVAL,
     .msg = "callback"},
    /* A timeout in the handshake is a handshake timeout, as on the socket path: fatal. */
    {.what = "read ETIMEDOUT in the handshake",
     .in_handshake = true,
     .after = 100,
     .code = TLSOCK_ETIMEDOUT,
     .expect = TLSOCK_EHANDSHAKE_TIMEOUT,
     .msg = "ETIMEDOUT"},
    {.what = "read returns 0 inside a record",
     .after = 10,
     .code = 0,
     .expect = TLSOCK_ETRUNCATED,
     .msg = "close_notify"},
};

/* Runs the client's operation of @p c once: handshake, read, or write of c->size bytes. */
static int fault_op(struct ring_pair *p, const struct fault_case *c, unsigned char *buf)
{
    size_t size = c->size > 0 ? c->size : FAULT_SMALL;

    size_t n = 0;
    int rc;

    if (c->in_handshake) {
        rc = tlsock_handshake(p->pair.client);
        /* The server answers whatever the client managed to send, for the next attempt. */
        if (is_want(rc)) {
            int ignored = tlsock_handshake(p->pair.server);
            (void)ignored;
        }
    } else if (c->on_write) {
        ts_fill(buf, size, 6);
        rc = tlsock_write(p->pair.client, buf, size);
    } else {
        rc = tlsock_read(p->pair.client, buf, FAULT_SMALL, &n);
    }
    return rc;
}

static void run_fault_case(struct ring_pair *p, const struct fault_case *c)
{
    struct fault *f = c->on_write ? &p->cli_end.write_fault : &p->cli_end.read_fault;
    static unsigned char buf[FAULT_LARGE];
    char warm[4];
    size_t n = 0;
    int rc = TLSOCK_EWANT_READ;

    /* Room for the largest write: only the injected fault stops the callbacks. */
    ring_open(p, 4 * FAULT_LARGE, NULL);
    if (c->in_handshake) {
        /* The ClientHello is out and the server's flight waits in the ring. */
        TS_ASSERT_RC(tlsock_handshake(p->pair.client), TLSOCK_EWANT_READ);
        TS_ASSERT_RC(tlsock_handshake(p->pair.server), TLSOCK_EWANT_READ);
    } else {
        TS_ASSERT_RC(ring_handshake(p, 20, NULL), 0);
        /* Consume the session tickets, so that the fault hits application data. */
        TS_ASSERT_RC(tlsock_write(p->pair.server, "warm", 4), 0);
        TS_ASSERT_RC(ts_read_full(p->pair.client, warm, 4), 0);
        if (!c->on_write) {
            ts_fill(buf, FAULT_SMALL, 5);
            TS_ASSERT_RC(tlsock_write(p->pair.server, buf, FAULT_SMALL), 0);
        }
    }
    *f = (struct fault){.on = true, .budget = c->after, .code = c->code};
    /* Bounded: the handshake needs a few steps at most before the callback fails. */
    for (int i = 0; i < 10 && is_want(rc); i++) {
        rc = fault_op(p, c, buf);
    }
    TS_ASSERT_RC_MSG(rc, c->expect, tlsock_conn_errmsg(p->pair.client));
    TS_ASSERT_CONTAINS(tlsock_conn_errmsg(p->pair.client), c->msg);
    f->on = false;
    if (c->retryable) {
        /* The callback delivers again: the very same record arrives intact. */
        memset(buf, 0, FAULT_SMALL);
        TS_ASSERT_RC_MSG(ts_read_full(p->pair.client, buf, FAULT_SMALL), 0,
                         tlsock_conn_errmsg(p->pair.client));
        assert_true(ts_same_pattern(buf, FAULT_SMALL, 5));
        TS_ASSERT_RC(tlsock_write(p->pair.client, "ok", 2), 0);
        TS_ASSERT_RC(ts_read_full(p->pair.server, warm, 2), 0);
        assert_memory_equal(warm, "ok", 2);
    } else {
        /* Sticky: every later call returns the same code, whatever the callback does now. */
        TS_ASSERT_RC(fault_op(p, c, buf), c->expect);
        TS_ASSERT_RC(tlsock_handshake(p->pair.client), c->expect);
        TS_ASSERT_RC(tlsock_read(p->pair.client, buf, FAULT_SMALL, &n), c->expect);
        TS_ASSERT_RC(tlsock_write(p->pair.client, "x", 1), c->expect);
        TS_ASSERT_RC(tlsock_shutdown(p->pair.client), c->expect);
        /* The detail keeps saying why the connection died. */
        TS_ASSERT_CONTAINS(tlsock_conn_errmsg(p->pair.client), c->msg);
    }
}

static void test_callback_errors(void **state)
{
    for (size_t i = 0; i < sizeof(fault_cases) / sizeof(fault_cases[0]); i++) {
        print_message("%s\n", fault_cases[i].what);
        ring_renew(state, i);
        run_fault_case(*state, &fault_cases[i]);
    }
}

/*
 * "Nothing now" in either direction from either callback: the header says the tlsock call returns
 * that code. It matters when a transport is itself non-blocking TLS (or a proxy) whose read may
 * need to write first, or the reverse: an event loop waits for the readiness the code names.
 * (The OpenSSL BIO once reported the direction of its own call instead.)
 */
struct want_case {
    const char *what;
    bool on_write;
    ssize_t code;
};

static const struct want_case want_cases[] = {
    {.what = "read callback says EWANT_WRITE", .code = TLSOCK_EWANT_WRITE},
    {.what = "write callback says EWANT_READ", .on_write = true, .code = TLSOCK_EWANT_READ},
};

static void test_want_code_from_callback(void **state)
{
    for (size_t i = 0; i < sizeof(want_cases) / sizeof(want_cases[0]); i++) {
        const struct want_case *c = &want_cases[i];
        struct ring_pair *p;
        struct fault *f;

        print_message("%s\n", c->what);
        ring_renew(state, i);
        p = *state;
        ring_open(p, 65536, NULL);
        f = c->on_write ? &p->cli_end.write_fault : &p->cli_end.read_fault;
        if (!c->on_write) {
            /* The server's flight waits in the ring; the client's read callback holds it back. */
            TS_ASSERT_RC(tlsock_handshake(p->pair.client), TLSOCK_EWANT_READ);
            TS_ASSERT_RC(tlsock_handshake(p->pair.server), TLSOCK_EWANT_READ);
        }
        *f = (struct fault){.on = true, .budget = 0, .code = c->code};
        TS_ASSERT_RC_MSG(tlsock_handshake(p->pair.client), (int)c->code,
                         tlsock_conn_errmsg(p->pair.client));
        TS_ASSERT_RC_MSG(tlsock_handshake(p->pair.client), (int)c->code,
                         tlsock_conn_errmsg(p->pair.client));
        /* Not an error: once the transport moves again, the handshake completes. */
        f->on = false;
        TS_ASSERT_RC_MSG(ring_handshake(p, 20, NULL), 0, tlsock_conn_errmsg(p->pair.client));
    }
}

/* Callbacks see the deadline of the operation they serve (tlsock_conn_op_deadline_ms()). */
static void test_op_deadline_in_callbacks(void **state)
{
    struct ring_pair *p = *state;
    struct tlsock_opts opts = TLSOCK_OPTS_INIT; /* no timeouts at all */
    int64_t deadline;
    int64_t before;
    int64_t after;
    char buf[4];

    opts.verify_name = "localhost";
    ring_open(p, 65536, &opts);
    p->cli_end.conn = p->pair.client;
    /* Outside any operation there is none. */
    assert_int_equal(tlsock_conn_op_deadline_ms(p->pair.client), -1);

    deadline = tlsock_now_ms() + 60000;
    TS_ASSERT_RC(tlsock_conn_set_deadline(p->pair.client, deadline), 0);
    TS_ASSERT_RC(ring_handshake(p, 20, NULL), 0);
    assert_true(p->cli_end.deadline_calls > 0);
    assert_int_equal(p->cli_end.deadline_min, deadline);
    assert_int_equal(p->cli_end.deadline_max, deadline);

    /* Without a deadline or a timeout: -1. */
    TS_ASSERT_RC(tlsock_conn_set_deadline(p->pair.client, -1), 0);
    p->cli_end.deadline_calls = 0;
    TS_ASSERT_RC(tlsock_write(p->pair.server, "abcd", 4), 0);
    TS_ASSERT_RC(ts_read_full(p->pair.client, buf, 4), 0);
    assert_true(p->cli_end.deadline_calls > 0);
    assert_int_equal(p->cli_end.deadline_min, -1);
    assert_int_equal(p->cli_end.deadline_max, -1);

    /* A per-operation timeout alone: now + timeout, taken when the operation starts. */
    TS_ASSERT_RC(tlsock_conn_set_timeout(p->pair.client, 30000), 0);
    p->cli_end.deadline_calls = 0;
    TS_ASSERT_RC(tlsock_write(p->pair.server, "efgh", 4), 0);
    before = tlsock_now_ms();
    TS_ASSERT_RC(ts_read_full(p->pair.client, buf, 4), 0);
    after = tlsock_now_ms();
    assert_true(p->cli_end.deadline_calls > 0);
    assert_true(p->cli_end.deadline_min >= before + 30000);
    assert_true(p->cli_end.deadline_max <= after + 30000);

    /* Both: whichever comes first. */
    deadline = tlsock_now_ms() + 20000;
    TS_ASSERT_RC(tlsock_conn_set_deadline(p->pair.client, deadline), 0);
    p->cli_end.deadline_calls = 0;
    TS_ASSERT_RC(tlsock_write(p->pair.client, "ijkl", 4), 0);
    assert_true(p->cli_end.deadline_calls > 0);
    assert_int_equal(p->cli_end.deadline_min, deadline);
    assert_int_equal(p->cli_end.deadline_max, deadline);
    TS_ASSERT_RC(ts_read_full(p->pair.server, buf, 4), 0);
    assert_memory_equal(buf, "ijkl", 4);
    assert_int_equal(tlsock_conn_op_deadline_ms(p->pair.client), -1);
}

/* ---- the socket transport, against a raw server ---------------------------------------------- */

struct fdcb_case {
    const char *what;
    int bufsize;   /* > 0: client SO_SNDBUF and server SO_RCVBUF, on raw sockets */
    size_t size;   /* exchanged both ways */
    bool truncate; /* the server ends with a FIN and no close_notify */
};

static const struct fdcb_case fdcb_cases[] = {
    {.what = "100000 bytes", .size = 100000},
    {.what = "tiny socket buffers, 1 MiB", .bufsize = 4096, .size = MIB},
    {.what = "FIN without close_notify", .truncate = true},
};

struct raw_server {
    struct tlsock_ctx *ctx;
    bool truncate;
    struct ts_exchange ex;
    int final_rc;
    char errmsg[TLSOCK__ERRMSG_SIZE];
};

/* TLS on an accepted raw socket (so the test can size its buffers). */
static int serve_raw(int fd, void *arg)
{
    struct raw_server *s = arg;
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    unsigned char byte;
    size_t n = 0;
    int rc = tlsock_attach_fd(s->ctx, fd, &opts, &conn);

    if (rc == 0 && !s->truncate) {
        rc = ts_serve_exchange(conn, &s->ex);
        s->final_rc = s->ex.final_rc;
    } else if (rc == 0) {
        rc = tlsock_handshake(conn);
        if (rc == 0) {
            rc = tlsock_write(conn, "data", 4);
        }
        if (rc == 0) {
            rc = shutdown(fd, SHUT_WR) == 0 ? 0 : TS_ESETUP;
        }
        if (rc == 0) {
            s->final_rc = tlsock_read(conn, &byte, 1, &n);
        }
    }
    if (rc != 0 && conn != NULL) {
        snprintf(s->errmsg, sizeof(s->errmsg), "%s", tlsock_conn_errmsg(conn));
    }
    tlsock_close(conn);
    return rc;
}

/* The client's raw socket, closed by the teardown after the connection and before the server. */
static int fdcb_client_fd = -1;

static int fdcb_teardown(void **state)
{
    struct ts_env *env = *state;

    if (env != NULL) {
        tlsock_close(env->client);
        env->client = NULL;
    }
    if (fdcb_client_fd >= 0) {
        close(fdcb_client_fd);
        fdcb_client_fd = -1;
    }
    return ts_env_teardown(state);
}

static void run_fdcb_case(struct ts_env *env, const struct fdcb_case *c)
{
    struct raw_server rs = {.truncate = c->truncate, .ex = {.size = c->size}};
    struct tlsock_opts opts = ts_opts();
    char buf[8] = {0};
    size_t n = 0;

    rs.final_rc = TS_NOT_RUN;
    opts.verify_name = "127.0.0.1";
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    rs.ctx = env->sctx;
    TS_ASSERT_RC(ts_server_start_raw(&env->srv, NULL, c->bufsize, serve_raw, &rs), 0);
    if (c->bufsize > 0) {
        int sndbuf = 0;
        socklen_t len = sizeof(sndbuf);

        assert_int_equal(ts_raw_connect("127.0.0.1", env->srv.port, c->bufsize, &fdcb_client_fd),
                         0);
        /* The data cannot fit in the socket buffers: the writer must wait for POLLOUT. */
        assert_int_equal(getsockopt(fdcb_client_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len), 0);
        assert_true((size_t)sndbuf < c->size / 8);
        TS_ASSERT_RC(tlsock_attach_fd(env->cctx, fdcb_client_fd, &opts, &env->client), 0);
    } else {
        TS_ASSERT_RC(tlsock_connect(env->cctx, "127.0.0.1", env->srv.port, &opts, &env->client), 0);
    }
    assert_true(tlsock_conn_fd(env->client) >= 0);
    if (c->truncate) {
        TS_ASSERT_RC(ts_read_full(env->client, buf, 4), 0);
        assert_memory_equal(buf, "data", 4);
        TS_ASSERT_RC_MSG(tlsock_read(env->client, buf, sizeof(buf), &n), TLSOCK_ETRUNCATED,
                         tlsock_conn_errmsg(env->client));
        TS_ASSERT_RC(tlsock_write(env->client, "x", 1), TLSOCK_ETRUNCATED);
    } else {
        TS_ASSERT_RC(ts_client_exchange(env->client, c->size), 0);
    }
    tlsock_close(env->client);
    env->client = NULL;
    if (fdcb_client_fd >= 0) {
        close(fdcb_client_fd);
        fdcb_client_fd = -1;
    }
    ts_server_stop(&env->srv);
    TS_ASSERT_RC_MSG(env->srv.result, 0, rs.errmsg);
    if (c->truncate) {
        assert_true(rs.final_rc < 0);
        assert_int_not_equal(rs.final_rc, TLSOCK_ECLOSED);
    } else {
        TS_ASSERT_RC(rs.final_rc, TLSOCK_ECLOSED);
    }
}

static void test_socket_transport(void **state)
{
    for (size_t i = 0; i < sizeof(fdcb_cases) / sizeof(fdcb_cases[0]); i++) {
        print_message("%s\n", fdcb_cases[i].what);
        if (i > 0) {
            assert_int_equal(fdcb_teardown(state), 0);
            assert_int_equal(ts_env_setup(state), 0);
        }
        run_fdcb_case(*state, &fdcb_cases[i]);
    }
}

/* ---- coalescing ------------------------------------------------------------------------------ */

/* One large write hands several records to each transport write; small writes do not. */
static void test_coalescing(void **state)
{
    struct ring_pair *p = *state;
    const size_t chunk = 16384; /* one full record */
    const size_t total = 16 * chunk;
    unsigned char *data = malloc(total);
    unsigned char *got = malloc(total);
    size_t single_calls;
    size_t single_bytes;

    assert_non_null(data);
    assert_non_null(got);
    /* Room for everything: no EWANT_WRITE, so every call counted moved bytes. */
    ring_open(p, 2 * MIB, NULL);
    TS_ASSERT_RC(ring_handshake(p, 20, NULL), 0);

    ts_fill(data, total, 7);
    p->cli_end.write_calls = p->cli_end.write_bytes = 0;
    TS_ASSERT_RC(tlsock_write(p->pair.client, data, total), 0);
    single_calls = p->cli_end.write_calls;
    single_bytes = p->cli_end.write_bytes;
    TS_ASSERT_RC(ts_read_full(p->pair.server, got, total), 0);
    assert_memory_equal(got, data, total);

    ts_fill(data, total, 8);
    p->cli_end.write_calls = p->cli_end.write_bytes = 0;
    for (size_t i = 0; i < 16; i++) {
        TS_ASSERT_RC(tlsock_write(p->pair.client, data + i * chunk, chunk), 0);
    }
    TS_ASSERT_RC(ts_read_full(p->pair.server, got, total), 0);
    assert_memory_equal(got, data, total);
    print_message("one 256 KiB write: %zu calls, %zu bytes; 16 writes: %zu calls, %zu bytes\n",
                  single_calls, single_bytes, p->cli_end.write_calls, p->cli_end.write_bytes);
    free(data);
    free(got);

    assert_int_equal(p->cli_end.want_writes, 0);
    /* 16 records: several per call when coalesced, one per call otherwise. */
    assert_true(single_calls <= 6);
    assert_true(p->cli_end.write_calls >= 16);
    /* Coalescing changes how records are handed over, never the records themselves. */
    assert_int_equal(single_bytes, p->cli_end.write_bytes);
    assert_true(single_bytes > total);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stream_callbacks, stream_setup, stream_teardown),
        cmocka_unit_test_setup_teardown(test_stream_read_timeout, stream_setup, stream_teardown),
        cmocka_unit_test_setup_teardown(test_ring_buffer, ring_setup, ring_teardown),
        cmocka_unit_test_setup_teardown(test_short_callback_writes, ring_setup, ring_teardown),
        cmocka_unit_test_setup_teardown(test_tls_in_tls, nested_setup, nested_teardown),
        cmocka_unit_test_setup_teardown(test_callback_errors, ring_setup, ring_teardown),
        cmocka_unit_test_setup_teardown(test_want_code_from_callback, ring_setup, ring_teardown),
        cmocka_unit_test_setup_teardown(test_op_deadline_in_callbacks, ring_setup, ring_teardown),
        cmocka_unit_test_setup_teardown(test_socket_transport, ts_env_setup, fdcb_teardown),
        cmocka_unit_test_setup_teardown(test_coalescing, ring_setup, ring_teardown),
    };

    /* A pipe whose reader is gone must fail the write (EPIPE), not kill the test. */
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests_name("transport", tests, ts_pki_setup, ts_pki_teardown);
}
