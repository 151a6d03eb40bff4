/* Timeouts and deadlines on every transport: the socket, and user callbacks that honour
 * tlsock_conn_op_deadline_ms() by returning TLSOCK_ETIMEDOUT. test_timeout.c covers the socket
 * path's basics (connect, accept, client handshake options, polling with a past deadline); this
 * file adds the callback path, the server's handshake defaults, deadlines spanning several reads,
 * sticky write timeouts and expired deadlines. No test asserts how fast anything is: only which
 * code comes back, that it did not come back before its time, and that it came back within a
 * generous bound (scheduling noise, valgrind). */
#include "support.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SHORT_MS 200
/* "Within scheduling noise": far above any timer slack, far below the fallback timeouts. */
#define SLACK_MS 3000
/* "At once": a call that must not wait returns well within this, even under valgrind. */
#define AT_ONCE_MS 1000

/* The call returned because of a @p timeout_ms timeout: not early, and not much later. */
static void assert_elapsed_about(int64_t started_ms, int timeout_ms)
{
    int64_t elapsed = tlsock_now_ms() - started_ms;

    if (elapsed < timeout_ms - 5 || elapsed >= timeout_ms + SLACK_MS) {
        fail_msg("returned after %lld ms for a %d ms timeout", (long long)elapsed, timeout_ms);
    }
}

static void assert_at_once(int64_t started_ms)
{
    int64_t elapsed = tlsock_now_ms() - started_ms;

    if (elapsed >= AT_ONCE_MS) {
        fail_msg("returned after %lld ms instead of at once", (long long)elapsed);
    }
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    (void)nanosleep(&ts, NULL);
}

/* ---- transports ------------------------------------------------------------------------------ */

enum transport {
    T_FD,   /* tlsock_attach_fd(): the socket */
    T_USER, /* tlsock_attach_io() with the blocking callbacks below */
};

static const char *transport_name(enum transport t)
{
    return t == T_FD ? "socket" : "user callbacks";
}

/* If a callback is asked to wait with no deadline at all, it gives up after this long, so that a
 * library bug fails the test instead of hanging it. */
#define CB_SAFETY_MS (2 * TS_IO_TIMEOUT_MS)

/*
 * A user transport over a socket that waits the way a blocking transport would (a proxy
 * tunnel, a pipe): until the socket is ready or the deadline of the tlsock operation in progress
 * passes, then returns TLSOCK_ETIMEDOUT as the header asks.
 */
struct cb_io {
    int fd;                   /* not owned */
    struct tlsock_conn *conn; /* set after tlsock_attach_io(); the callbacks ask it the time */
    int64_t seen_deadline;    /* the operation deadline the last wait saw */
    int timeouts;             /* how many times a callback returned TLSOCK_ETIMEDOUT */
};

/* Waits for @p events until the operation's deadline: 0 when ready, else a TLSOCK_E* code. */
static int cb_wait(struct cb_io *io, short events)
{
    struct pollfd pfd = {.fd = io->fd, .events = events};
    int64_t deadline = tlsock_conn_op_deadline_ms(io->conn);

    io->seen_deadline = deadline;
    /* Bounded: only EINTR repeats the wait. */
    for (int i = 0; i < 100; i++) {
        int64_t left = deadline < 0 ? CB_SAFETY_MS : deadline - tlsock_now_ms();
        int n = poll(&pfd, 1, left > 0 ? (int)left : 0);

        if (n > 0) {
            return 0;
        }
        if (n == 0) {
            if (deadline < 0) {
                return TLSOCK_ESYS;
            }
            io->timeouts++;
            return TLSOCK_ETIMEDOUT;
        }
        if (errno != EINTR) {
            return TLSOCK_ESYS;
        }
    }
    return TLSOCK_ESYS;
}

static ssize_t cb_read(void *user, void *buf, size_t len)
{
    struct cb_io *io = user;

    /* poll() may report readiness that recv() then does not see; a few retries bound that. */
    for (int i = 0; i < 100; i++) {
        int rc = cb_wait(io, POLLIN);
        ssize_t n;

        if (rc != 0) {
            return rc;
        }
        n = recv(io->fd, buf, len, MSG_DONTWAIT);
        if (n >= 0) {
            return n;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            return TLSOCK_ESYS;
        }
    }
    return TLSOCK_ESYS;
}

static ssize_t cb_write(void *user, const void *buf, size_t len)
{
    struct cb_io *io = user;

    for (int i = 0; i < 100; i++) {
        int rc = cb_wait(io, POLLOUT);
        ssize_t n;

        if (rc != 0) {
            return rc;
        }
        n = send(io->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            return n;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            return TLSOCK_ESYS;
        }
    }
    return TLSOCK_ESYS;
}

/* ---- per-test state -------------------------------------------------------------------------- */

/* The shared test environment plus what this file's tests own besides it. */
struct dl_state {
    struct ts_env *env;
    int fd;  /* the client's socket (attached, so the test closes it) */
    int lfd; /* a raw listener that never accepts */
    int sfd; /* a server-side socket accepted by the test */
    struct tlsock_listener *lis;
    struct tlsock_conn *server; /* a server connection the test thread drives itself */
    struct cb_io io;
};

static int dl_setup(void **state)
{
    struct dl_state *d = calloc(1, sizeof(*d));
    void *env = NULL;

    if (d == NULL || ts_env_setup(&env) != 0) {
        free(d);
        return -1;
    }
    d->env = env;
    d->fd = -1;
    d->lfd = -1;
    d->sfd = -1;
    d->io.fd = -1;
    *state = d;
    return 0;
}

static int dl_teardown(void **state)
{
    struct dl_state *d = *state;
    void *env;

    if (d == NULL) {
        return 0;
    }
    /* The client goes first and its socket with it, so that a server thread waiting for the
     * client's end returns and the join in ts_env_teardown() is quick. */
    ts_gate_open(&d->env->gate);
    tlsock_close(d->env->client);
    d->env->client = NULL;
    tlsock_close(d->server);
    if (d->fd >= 0) {
        close(d->fd);
    }
    if (d->sfd >= 0) {
        close(d->sfd);
    }
    if (d->lfd >= 0) {
        close(d->lfd);
    }
    tlsock_listener_close(d->lis);
    env = d->env;
    ts_env_teardown(&env);
    free(d);
    *state = NULL;
    return 0;
}

/* Table-driven tests: a fresh state before each case after the first. */
static struct dl_state *dl_renew(void **state, size_t index)
{
    if (index > 0) {
        assert_int_equal(dl_teardown(state), 0);
        assert_int_equal(dl_setup(state), 0);
    }
    return *state;
}

/* Connects a raw socket to @p port and starts a TLS client on it over transport @p t. */
static void open_client(struct dl_state *d, enum transport t, uint16_t port, int sndbuf,
                        struct tlsock_opts *opts)
{
    struct ts_env *env = d->env;

    assert_int_equal(ts_raw_connect("127.0.0.1", port, sndbuf, &d->fd), 0);
    /* An attached socket has no host name: name the certificate to verify. */
    opts->verify_name = "localhost";
    if (t == T_USER) {
        const struct tlsock_io io = {.read = cb_read, .write = cb_write, .user = &d->io};

        d->io.fd = d->fd;
        TS_ASSERT_RC(tlsock_attach_io(env->cctx, &io, opts, &env->client), 0);
        d->io.conn = env->client;
    } else {
        TS_ASSERT_RC(tlsock_attach_fd(env->cctx, d->fd, opts, &env->client), 0);
    }
}

/* ---- handshake timeouts ---------------------------------------------------------------------- */

struct client_hs_case {
    const char *what;
    enum transport t;
    int ctx_timeout;    /* tlsock_ctx_set_handshake_timeout(), 0: not called */
    int opts_timeout;   /* opts.handshake_timeout_ms (0: the context's default) */
    bool past_deadline; /* tlsock_conn_set_deadline() in the past before the handshake */
    int op_timeout;     /* opts.timeout_ms (0: ts_opts()'s) */
    int deadline;       /* tlsock_conn_set_deadline() this long ahead (0: none) */
    int timeout;        /* what applies; 0: at once */
};

static const struct client_hs_case client_hs_cases[] = {
    {.what = "options", .t = T_FD, .opts_timeout = SHORT_MS, .timeout = SHORT_MS},
    {.what = "context default", .t = T_FD, .ctx_timeout = SHORT_MS, .timeout = SHORT_MS},
    {.what = "deadline already past", .t = T_FD, .past_deadline = true},
    /* The operation timeout is for reads and writes: only the deadline ends this handshake. */
    {.what = "operation timeout does not apply",
     .t = T_FD,
     .op_timeout = SHORT_MS,
     .deadline = 3 * SHORT_MS,
     .timeout = 3 * SHORT_MS},
};

/* Through callbacks that honour the deadline by returning TLSOCK_ETIMEDOUT: the handshake still
 * reports its own code (tlsock_read_fn: "as TLSOCK_EHANDSHAKE_TIMEOUT during the handshake"). */
static const struct client_hs_case client_hs_user_cases[] = {
    {.what = "options", .t = T_USER, .opts_timeout = SHORT_MS, .timeout = SHORT_MS},
    {.what = "context default", .t = T_USER, .ctx_timeout = SHORT_MS, .timeout = SHORT_MS},
    {.what = "options override the context",
     .t = T_USER,
     .ctx_timeout = TS_IO_TIMEOUT_MS,
     .opts_timeout = SHORT_MS,
     .timeout = SHORT_MS},
    {.what = "deadline already past", .t = T_USER, .past_deadline = true},
};

/* A peer that accepts TCP (the kernel does, from the listen queue) and never speaks. */
static void run_client_hs_cases(void **state, const struct client_hs_case *cases, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const struct client_hs_case *c = &cases[i];
        struct dl_state *d = dl_renew(state, i);
        struct ts_env *env = d->env;
        struct tlsock_opts opts = ts_opts();
        uint16_t port = 0;
        int64_t start;

        print_message("%s: %s\n", transport_name(c->t), c->what);
        opts.handshake_timeout_ms = c->opts_timeout;
        if (c->op_timeout != 0) {
            opts.timeout_ms = c->op_timeout;
        }
        TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
        if (c->ctx_timeout != 0) {
            TS_ASSERT_RC(tlsock_ctx_set_handshake_timeout(env->cctx, c->ctx_timeout), 0);
        }
        assert_int_equal(ts_raw_listen("127.0.0.1", 0, &d->lfd, &port), 0);
        open_client(d, c->t, port, 0, &opts);
        start = tlsock_now_ms();
        if (c->past_deadline) {
            TS_ASSERT_RC(tlsock_conn_set_deadline(env->client, start - 1), 0);
        }
        if (c->deadline != 0) {
            TS_ASSERT_RC(tlsock_conn_set_deadline(env->client, start + c->deadline), 0);
        }
        TS_ASSERT_RC_MSG(tlsock_handshake(env->client), TLSOCK_EHANDSHAKE_TIMEOUT,
                         tlsock_conn_errmsg(env->client));
        if (c->past_deadline) {
            assert_at_once(start);
        } else {
            assert_elapsed_about(start, c->timeout);
        }
        if (c->t == T_USER && !c->past_deadline) {
            /* The callback was told when the handshake had to end. */
            assert_true(d->io.seen_deadline >= start + c->timeout - 1);
            assert_true(d->io.seen_deadline < start + c->timeout + SLACK_MS);
            assert_true(d->io.timeouts > 0);
        }
        assert_true(strlen(tlsock_conn_errmsg(env->client)) > 0);
        /* A handshake timeout is fatal: the same code again, even without a deadline. */
        TS_ASSERT_RC(tlsock_conn_set_deadline(env->client, -1), 0);
        TS_ASSERT_RC(tlsock_handshake(env->client), TLSOCK_EHANDSHAKE_TIMEOUT);
    }
}

static void test_client_handshake_timeout(void **state)
{
    run_client_hs_cases(state, client_hs_cases,
                        sizeof(client_hs_cases) / sizeof(client_hs_cases[0]));
}

static void test_client_handshake_timeout_user_callbacks(void **state)
{
    run_client_hs_cases(state, client_hs_user_cases,
                        sizeof(client_hs_user_cases) / sizeof(client_hs_user_cases[0]));
}

struct server_hs_case {
    const char *what;
    enum transport t;
    int ctx_timeout;  /* the server context's default, 0: not set */
    int opts_timeout; /* the accepted connection's option, 0: the default */
};

static const struct server_hs_case server_hs_cases[] = {
    {.what = "context default", .t = T_FD, .ctx_timeout = SHORT_MS},
    {.what = "options override the context",
     .t = T_FD,
     .ctx_timeout = TS_IO_TIMEOUT_MS,
     .opts_timeout = SHORT_MS},
};

static const struct server_hs_case server_hs_user_cases[] = {
    {.what = "context default", .t = T_USER, .ctx_timeout = SHORT_MS},
    {.what = "options override the context",
     .t = T_USER,
     .ctx_timeout = TS_IO_TIMEOUT_MS,
     .opts_timeout = SHORT_MS},
};

/* A client that connects and never sends its ClientHello: the server's handshake times out. */
static void run_server_hs_cases(void **state, const struct server_hs_case *cases, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const struct server_hs_case *c = &cases[i];
        struct dl_state *d = dl_renew(state, i);
        struct ts_env *env = d->env;
        struct tlsock_opts opts = TLSOCK_OPTS_INIT;
        uint16_t port = 0;
        int64_t start;

        print_message("%s: %s\n", transport_name(c->t), c->what);
        opts.handshake_timeout_ms = c->opts_timeout;
        opts.connect_timeout_ms = TS_IO_TIMEOUT_MS;
        TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
        TS_ASSERT_RC(tlsock_ctx_set_handshake_timeout(env->sctx, c->ctx_timeout), 0);
        if (c->t == T_USER) {
            const struct tlsock_io io = {.read = cb_read, .write = cb_write, .user = &d->io};

            assert_int_equal(ts_raw_listen("127.0.0.1", 0, &d->lfd, &port), 0);
            assert_int_equal(ts_raw_connect("127.0.0.1", port, 0, &d->fd), 0);
            d->sfd = ts_raw_accept(d->lfd, TS_IO_TIMEOUT_MS);
            assert_true(d->sfd >= 0);
            d->io.fd = d->sfd;
            TS_ASSERT_RC(tlsock_attach_io(env->sctx, &io, &opts, &d->server), 0);
            d->io.conn = d->server;
        } else {
            TS_ASSERT_RC(tlsock_listen(env->sctx, "127.0.0.1", 0, 0, &d->lis), 0);
            assert_int_equal(ts_raw_connect("127.0.0.1", tlsock_listener_port(d->lis), 0, &d->fd),
                             0);
            TS_ASSERT_RC(tlsock_accept(d->lis, &opts, &d->server), 0);
        }
        start = tlsock_now_ms();
        /* A safety net only: if the wrong timeout applied, the elapsed check fails instead of
         * the test hanging. */
        TS_ASSERT_RC(tlsock_conn_set_deadline(d->server, start + 2 * TS_IO_TIMEOUT_MS), 0);
        TS_ASSERT_RC_MSG(tlsock_handshake(d->server), TLSOCK_EHANDSHAKE_TIMEOUT,
                         tlsock_conn_errmsg(d->server));
        assert_elapsed_about(start, SHORT_MS);
        TS_ASSERT_RC(tlsock_handshake(d->server), TLSOCK_EHANDSHAKE_TIMEOUT);
    }
}

static void test_server_handshake_timeout(void **state)
{
    run_server_hs_cases(state, server_hs_cases,
                        sizeof(server_hs_cases) / sizeof(server_hs_cases[0]));
}

static void test_server_handshake_timeout_user_callbacks(void **state)
{
    run_server_hs_cases(state, server_hs_user_cases,
                        sizeof(server_hs_user_cases) / sizeof(server_hs_user_cases[0]));
}

/* ---- a peer that stops reading: write timeouts are fatal ------------------------------------- */

/* Completes the handshake over a socket with a tiny receive buffer, then never reads. */
static int serve_then_stall(int fd, void *arg)
{
    struct ts_env *env = arg;
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    int rc = tlsock_attach_fd(env->sctx, fd, &opts, &conn);

    if (rc == 0) {
        rc = tlsock_handshake(conn);
    }
    if (rc == 0) {
        rc = ts_gate_wait(&env->gate, TS_IO_TIMEOUT_MS) ? 0 : TS_ESETUP;
    }
    tlsock_close(conn);
    return rc;
}

/* Small writes, so that the first ones fit in the buffers and a later one blocks. */
#define CHUNK      1024
#define MAX_CHUNKS 65536 /* 64 MiB: far more than loopback buffers hold */

static void test_write_timeout_is_sticky(void **state)
{
    static const enum transport transports[] = {T_FD, T_USER};

    for (size_t i = 0; i < sizeof(transports) / sizeof(transports[0]); i++) {
        struct dl_state *d = dl_renew(state, i);
        struct ts_env *env = d->env;
        struct tlsock_opts opts = ts_opts();
        const struct tlsock_info *info = NULL;
        unsigned char chunk[CHUNK];
        unsigned char leftover[16];
        size_t leftover_len = 0;
        size_t n = 0;
        int dfd = -1;
        int64_t start = 0;
        int rc = 0;
        int writes = 0;

        print_message("%s\n", transport_name(transports[i]));
        ts_fill(chunk, sizeof(chunk), 5);
        TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
        TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
        TS_ASSERT_RC(ts_server_start_raw(&env->srv, NULL, 4096, serve_then_stall, env), 0);
        open_client(d, transports[i], env->srv.port, 4096, &opts);
        TS_ASSERT_RC_MSG(tlsock_handshake(env->client), 0, tlsock_conn_errmsg(env->client));
        /* Set after the handshake, so that only the writes are bounded by it. */
        TS_ASSERT_RC(tlsock_conn_set_timeout(env->client, SHORT_MS), 0);
        for (int k = 0; k < MAX_CHUNKS && rc == 0; k++) {
            start = tlsock_now_ms();
            rc = tlsock_write(env->client, chunk, sizeof(chunk));
            writes += rc == 0;
        }
        TS_ASSERT_RC_MSG(rc, TLSOCK_ETIMEDOUT, tlsock_conn_errmsg(env->client));
        assert_elapsed_about(start, SHORT_MS);
        print_message("  %d writes of %d bytes went through first\n", writes, CHUNK);
        assert_true(strlen(tlsock_conn_errmsg(env->client)) > 0);
        /* Part of the last write may have gone: every later call says the same, at once. */
        TS_ASSERT_RC(tlsock_conn_set_timeout(env->client, TS_IO_TIMEOUT_MS), 0);
        start = tlsock_now_ms();
        TS_ASSERT_RC(tlsock_write(env->client, chunk, 1), TLSOCK_ETIMEDOUT);
        TS_ASSERT_RC(tlsock_read(env->client, chunk, 1, &n), TLSOCK_ETIMEDOUT);
        TS_ASSERT_RC(tlsock_handshake(env->client), TLSOCK_ETIMEDOUT);
        TS_ASSERT_RC(tlsock_conn_info(env->client, &info), TLSOCK_ETIMEDOUT);
        TS_ASSERT_RC(tlsock_shutdown(env->client), TLSOCK_ETIMEDOUT);
        TS_ASSERT_RC(tlsock_detach(env->client, &dfd, leftover, sizeof(leftover), &leftover_len),
                     TLSOCK_ETIMEDOUT);
        assert_at_once(start);
        assert_int_equal(dfd, -1);
        tlsock_close(env->client);
        env->client = NULL;
        ts_gate_open(&env->gate);
        assert_int_equal(close(d->fd), 0);
        d->fd = -1;
        ts_server_stop(&env->srv);
        TS_ASSERT_RC_MSG(env->srv.result, 0, env->srv.errmsg);
    }
}

/* ---- read timeouts leave the connection usable ----------------------------------------------- */

/* Once the gate opens: "late", then answers "ping" with "pong", then waits for the close. */
static int serve_late(struct tlsock_conn *conn, void *arg)
{
    struct ts_gate *gate = arg;
    char buf[4];
    size_t n = 0;
    int rc = tlsock_handshake(conn);

    if (rc == 0) {
        rc = ts_gate_wait(gate, TS_IO_TIMEOUT_MS) ? 0 : TS_ESETUP;
    }
    if (rc == 0) {
        rc = tlsock_write(conn, "late", 4);
    }
    if (rc == 0) {
        rc = ts_read_full(conn, buf, 4);
    }
    if (rc == 0) {
        rc = memcmp(buf, "ping", 4) == 0 ? tlsock_write(conn, "pong", 4) : TS_EMISMATCH;
    }
    if (rc == 0) {
        rc = tlsock_read(conn, buf, 1, &n);
        rc = rc == TLSOCK_ECLOSED ? 0 : (rc == 0 ? TS_EMISMATCH : rc);
    }
    return rc;
}

/* With timeout 0, reads @p len bytes as they become ready (bounded by 10 s). */
static void read_ready(struct dl_state *d, char *buf, size_t len)
{
    size_t got = 0;
    int rc = 0;

    /* Bounded: 1000 rounds of at most 10 ms; each round reads what is ready, if anything. */
    for (int i = 0; i < 1000 && got < len; i++) {
        struct pollfd pfd = {.fd = d->fd, .events = POLLIN};
        size_t n = 0;

        if (tlsock_conn_pending(d->env->client) == 0) {
            (void)poll(&pfd, 1, 10);
        }
        rc = tlsock_read(d->env->client, buf + got, len - got, &n);
        if (rc == 0) {
            got += n;
        } else if (rc != TLSOCK_ETIMEDOUT) {
            break;
        }
    }
    TS_ASSERT_RC_MSG(got == len ? 0 : rc, 0, tlsock_conn_errmsg(d->env->client));
}

static void test_read_timeouts_keep_connection(void **state)
{
    static const enum transport transports[] = {T_FD, T_USER};

    for (size_t i = 0; i < sizeof(transports) / sizeof(transports[0]); i++) {
        enum transport t = transports[i];
        struct dl_state *d = dl_renew(state, i);
        struct ts_env *env = d->env;
        struct tlsock_opts opts = ts_opts();
        char buf[4];
        size_t n = 0;
        int64_t start;

        print_message("%s\n", transport_name(t));
        TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
        TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
        TS_ASSERT_RC(ts_server_start(&env->srv, env->sctx, NULL, NULL, serve_late, &env->gate), 0);
        open_client(d, t, env->srv.port, 0, &opts);
        TS_ASSERT_RC_MSG(tlsock_handshake(env->client), 0, tlsock_conn_errmsg(env->client));
        /* Outside any operation there is no operation deadline. */
        assert_int_equal(tlsock_conn_op_deadline_ms(env->client), -1);

        /* A deadline of 0 has passed: nothing ready, so at once. */
        TS_ASSERT_RC(tlsock_conn_set_deadline(env->client, 0), 0);
        start = tlsock_now_ms();
        TS_ASSERT_RC(tlsock_read(env->client, buf, sizeof(buf), &n), TLSOCK_ETIMEDOUT);
        assert_at_once(start);
        TS_ASSERT_RC(tlsock_conn_set_deadline(env->client, -1), 0);

        /* A deadline already past, whatever the timeout: at once. */
        TS_ASSERT_RC(tlsock_conn_set_timeout(env->client, TS_IO_TIMEOUT_MS), 0);
        start = tlsock_now_ms();
        TS_ASSERT_RC(tlsock_conn_set_deadline(env->client, start - 1), 0);
        TS_ASSERT_RC(tlsock_read(env->client, buf, sizeof(buf), &n), TLSOCK_ETIMEDOUT);
        assert_at_once(start);
        TS_ASSERT_RC(tlsock_conn_set_deadline(env->client, -1), 0);

        /* A short timeout: not before its time. */
        TS_ASSERT_RC(tlsock_conn_set_timeout(env->client, SHORT_MS), 0);
        start = tlsock_now_ms();
        TS_ASSERT_RC(tlsock_read(env->client, buf, sizeof(buf), &n), TLSOCK_ETIMEDOUT);
        assert_elapsed_about(start, SHORT_MS);
        if (t == T_USER) {
            /* The callback waited until the operation's deadline and no longer. */
            assert_true(d->io.seen_deadline >= start + SHORT_MS - 1);
            assert_true(d->io.seen_deadline < start + SHORT_MS + SLACK_MS);
            assert_true(d->io.timeouts >= 3);
        }
        assert_int_equal(tlsock_conn_op_deadline_ms(env->client), -1);

        /* The data comes later and is read; then the connection goes on both ways. */
        ts_gate_open(&env->gate);
        TS_ASSERT_RC(tlsock_conn_set_deadline(env->client, 0), 0);
        read_ready(d, buf, 4);
        TS_ASSERT_RC(tlsock_conn_set_deadline(env->client, -1), 0);
        assert_memory_equal(buf, "late", 4);
        TS_ASSERT_RC(tlsock_conn_set_timeout(env->client, TS_IO_TIMEOUT_MS), 0);
        TS_ASSERT_RC(tlsock_write(env->client, "ping", 4), 0);
        TS_ASSERT_RC_MSG(ts_read_full(env->client, buf, 4), 0, tlsock_conn_errmsg(env->client));
        assert_memory_equal(buf, "pong", 4);
        TS_ASSERT_RC(tlsock_shutdown(env->client), 0);
        ts_server_stop(&env->srv);
        TS_ASSERT_RC_MSG(env->srv.result, 0, env->srv.errmsg);
    }
}

/* ---- a deadline spanning several reads ------------------------------------------------------- */

#define MESSAGES    8
#define MESSAGE_LEN 100
#define INTERVAL_MS 150
#define DEADLINE_MS 600

/* Sends MESSAGES messages, one every INTERVAL_MS, then close_notify, then waits for the client. */
static int serve_periodic(struct tlsock_conn *conn, void *arg)
{
    unsigned char msg[MESSAGE_LEN];
    size_t n = 0;
    int rc = tlsock_handshake(conn);

    (void)arg;
    for (int i = 0; i < MESSAGES && rc == 0; i++) {
        if (i > 0) {
            sleep_ms(INTERVAL_MS);
        }
        ts_fill(msg, sizeof(msg), 50u + (unsigned)i);
        rc = tlsock_write(conn, msg, sizeof(msg));
    }
    if (rc == 0) {
        rc = tlsock_shutdown(conn);
    }
    if (rc == 0) {
        rc = tlsock_read(conn, msg, 1, &n);
        rc = rc == TLSOCK_ECLOSED ? 0 : (rc == 0 ? TS_EMISMATCH : rc);
    }
    return rc;
}

/* Reads message @p i: one record, so one read returns all of it or nothing. */
static int read_message(struct tlsock_conn *conn, int i)
{
    unsigned char got[MESSAGE_LEN];
    unsigned char want[MESSAGE_LEN];
    size_t n = 0;
    int rc = tlsock_read(conn, got, sizeof(got), &n);

    ts_fill(want, sizeof(want), 50u + (unsigned)i);
    if (rc == 0 && (n != sizeof(got) || memcmp(got, want, sizeof(got)) != 0)) {
        rc = TS_EMISMATCH;
    }
    return rc;
}

static void test_deadline_spans_reads(void **state)
{
    static const enum transport transports[] = {T_FD, T_USER};

    for (size_t i = 0; i < sizeof(transports) / sizeof(transports[0]); i++) {
        enum transport t = transports[i];
        struct dl_state *d = dl_renew(state, i);
        struct ts_env *env = d->env;
        struct tlsock_opts opts = ts_opts();
        unsigned char byte;
        size_t n = 0;
        int64_t deadline;
        int64_t start;
        int next = 1;
        int rc = 0;

        print_message("%s\n", transport_name(t));
        TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
        TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
        TS_ASSERT_RC(ts_server_start(&env->srv, env->sctx, NULL, NULL, serve_periodic, NULL), 0);
        open_client(d, t, env->srv.port, 0, &opts);
        TS_ASSERT_RC_MSG(read_message(env->client, 0), 0, tlsock_conn_errmsg(env->client));

        /* One deadline for everything that follows; the per-read timeout is much longer. */
        deadline = tlsock_now_ms() + DEADLINE_MS;
        TS_ASSERT_RC(tlsock_conn_set_deadline(env->client, deadline), 0);
        for (; next < MESSAGES && rc == 0; next++) {
            rc = read_message(env->client, next);
        }
        /* The stream lasts (MESSAGES - 1) * INTERVAL_MS, longer than the deadline. */
        TS_ASSERT_RC_MSG(rc, TLSOCK_ETIMEDOUT, tlsock_conn_errmsg(env->client));
        next--;
        if (tlsock_now_ms() < deadline - 5 || tlsock_now_ms() >= deadline + SLACK_MS) {
            fail_msg("timed out %lld ms after the deadline",
                     (long long)(tlsock_now_ms() - deadline));
        }
        print_message("  %d messages read before the deadline\n", next - 1);
        /* The first ones came before the deadline (the second is due 450 ms before it). */
        assert_true(next > 1);
        if (t == T_USER) {
            assert_int_equal(d->io.seen_deadline, deadline);
        }
        /*
         * After the deadline no call waits: it fails at once, unless the next message had
         * already arrived (a loaded machine may deliver it), which is then returned at once.
         */
        start = tlsock_now_ms();
        rc = read_message(env->client, next);
        assert_at_once(start);
        if (rc == 0) {
            next++;
        } else {
            TS_ASSERT_RC(rc, TLSOCK_ETIMEDOUT);
        }

        /* A read timeout loses nothing: without the deadline the rest arrives in order. */
        TS_ASSERT_RC(tlsock_conn_set_deadline(env->client, -1), 0);
        for (; next < MESSAGES; next++) {
            TS_ASSERT_RC_MSG(read_message(env->client, next), 0, tlsock_conn_errmsg(env->client));
        }
        TS_ASSERT_RC(tlsock_read(env->client, &byte, 1, &n), TLSOCK_ECLOSED);
        TS_ASSERT_RC(tlsock_shutdown(env->client), 0);
        ts_server_stop(&env->srv);
        TS_ASSERT_RC_MSG(env->srv.result, 0, env->srv.errmsg);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_client_handshake_timeout, dl_setup, dl_teardown),
        cmocka_unit_test_setup_teardown(test_client_handshake_timeout_user_callbacks, dl_setup,
                                        dl_teardown),
        cmocka_unit_test_setup_teardown(test_server_handshake_timeout, dl_setup, dl_teardown),
        cmocka_unit_test_setup_teardown(test_server_handshake_timeout_user_callbacks, dl_setup,
                                        dl_teardown),
        cmocka_unit_test_setup_teardown(test_write_timeout_is_sticky, dl_setup, dl_teardown),
        cmocka_unit_test_setup_teardown(test_read_timeouts_keep_connection, dl_setup, dl_teardown),
        cmocka_unit_test_setup_teardown(test_deadline_spans_reads, dl_setup, dl_teardown),
    };

    return cmocka_run_group_tests_name("deadline", tests, ts_pki_setup, ts_pki_teardown);
}
