/*
 * Short and interrupted I/O on every transport, TLS 1.3 and 1.2: the handshake and data both ways
 * must get through with every byte intact when
 *   - the socket's system calls are interrupted (EINTR k times before each real recv, send,
 *     sendmsg, poll and accept4), refused for no reason (EAGAIN k times before each real one, poll
 *     then saying ready at once), woken for nothing (poll saying ready k times before each real
 *     one) or move one byte at a time;
 *   - user callbacks give and take one byte at a time, or say "not now" (a WANT code) k times
 *     before each real move;
 *   - memory mode is fed and drained one byte at a time (TLS 1.2 here; 1.3 is test_memory's).
 * And a blocking server whose accept(2) fails with EMFILE returns TLSOCK_ESYS naming it, without
 * spinning, and serves the client once descriptors are free: accept4 failed by the wrapper, and
 * for real under a lowered RLIMIT_NOFILE (also the libuv server, through its public API).
 *
 * The executable is linked with -Wl,--wrap for recv, send, sendmsg, poll and accept4
 * (tests/CMakeLists.txt): the static library's calls land here first. The faults apply in every
 * thread while a case runs; each thread counts its own "k before each real call".
 */
#include "support.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pair.h"

#if TS_HAVE_UV
#include <tlsock/uv.h>

#include "loop_turn.h"
#endif

/*
 * Valgrind keeps descriptors of its own above the process's limit and checks every descriptor
 * against the limit it emulates, so RLIMIT_NOFILE cannot be lowered under it: those cases skip.
 */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define UNDER_VALGRIND() RUNNING_ON_VALGRIND
#endif
#endif
#ifndef UNDER_VALGRIND
#define UNDER_VALGRIND() 0
#endif

/* Two records and a bit, each way. */
#define SIZE 20000

/* ---- the wrapped system calls ---------------------------------------------------------------- */

enum sys_fn { F_RECV, F_SEND, F_SENDMSG, F_POLL, F_ACCEPT, F_COUNT };

static const char *const fn_names[F_COUNT] = {"recv", "send", "sendmsg", "poll", "accept4"};

/* What the wrappers do while a case runs; all 0: nothing. */
static struct {
    atomic_uint eintr;      /* EINTRs before each real call */
    atomic_uint eagain;     /* EAGAINs before each real recv, send, sendmsg, accept4 */
    atomic_uint spurious;   /* polls that say "ready" at once before each real one */
    atomic_size_t max_move; /* recv, send, sendmsg move at most this many bytes (0: no limit) */
    atomic_uint emfile;     /* accept4 calls still to fail with EMFILE */
} faults;

/* What they did, in every thread. */
static struct {
    atomic_ulong eintr[F_COUNT];
    atomic_ulong eagain[F_COUNT];
    atomic_ulong spurious;
    atomic_ulong emfile;
    atomic_ulong real[F_COUNT];
    atomic_ulong longest[F_COUNT]; /* the most bytes one real call moved */
} seen;

/* This thread's faults since its last real call of each function. */
static _Thread_local unsigned eintr_done[F_COUNT];
static _Thread_local unsigned eagain_done[F_COUNT];
static _Thread_local unsigned spurious_done;

static void faults_reset(void)
{
    atomic_store(&faults.eintr, 0);
    atomic_store(&faults.eagain, 0);
    atomic_store(&faults.spurious, 0);
    atomic_store(&faults.max_move, 0);
    atomic_store(&faults.emfile, 0);
    memset(&seen, 0, sizeof(seen));
}

/* The errno to fail this call of @p f with, or 0 for the real call. */
static int inject(enum sys_fn f, bool may_refuse)
{
    if (eintr_done[f] < atomic_load(&faults.eintr)) {
        eintr_done[f]++;
        atomic_fetch_add(&seen.eintr[f], 1);
        return EINTR;
    }
    if (may_refuse && eagain_done[f] < atomic_load(&faults.eagain)) {
        eagain_done[f]++;
        atomic_fetch_add(&seen.eagain[f], 1);
        return EAGAIN;
    }
    eintr_done[f] = 0;
    eagain_done[f] = 0;
    atomic_fetch_add(&seen.real[f], 1);
    return 0;
}

/* @p len limited to the case's largest move. */
static size_t limit(size_t len)
{
    size_t max = atomic_load(&faults.max_move);

    return max > 0 && len > max ? max : len;
}

/* Records a real call of @p f that moved @p n bytes; returns @p n. */
static ssize_t moved(enum sys_fn f, ssize_t n)
{
    unsigned long cur = atomic_load(&seen.longest[f]);

    while (n > 0 && (unsigned long)n > cur &&
           !atomic_compare_exchange_weak(&seen.longest[f], &cur, (unsigned long)n)) {
    }
    return n;
}

ssize_t __real_recv(int fd, void *buf, size_t len, int flags);
ssize_t __real_send(int fd, const void *buf, size_t len, int flags);
ssize_t __real_sendmsg(int fd, const struct msghdr *msg, int flags);
int __real_poll(struct pollfd *fds, nfds_t nfds, int timeout);
int __real_accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags);
ssize_t __wrap_recv(int fd, void *buf, size_t len, int flags);
ssize_t __wrap_send(int fd, const void *buf, size_t len, int flags);
ssize_t __wrap_sendmsg(int fd, const struct msghdr *msg, int flags);
int __wrap_poll(struct pollfd *fds, nfds_t nfds, int timeout);
int __wrap_accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags);

/* Armed by a test in its own thread: what the next real recv of that thread returned. */
static _Thread_local bool first_recv_armed;
static _Thread_local ssize_t first_recv_rc;
static _Thread_local int first_recv_errno;

ssize_t __wrap_recv(int fd, void *buf, size_t len, int flags)
{
    int e = inject(F_RECV, true);

    if (e != 0) {
        errno = e;
        return -1;
    }
    ssize_t n = __real_recv(fd, buf, limit(len), flags);
    if (first_recv_armed) {
        first_recv_armed = false;
        first_recv_rc = n;
        first_recv_errno = n < 0 ? errno : 0;
    }
    return moved(F_RECV, n);
}

ssize_t __wrap_send(int fd, const void *buf, size_t len, int flags)
{
    int e = inject(F_SEND, true);

    if (e != 0) {
        errno = e;
        return -1;
    }
    return moved(F_SEND, __real_send(fd, buf, limit(len), flags));
}

ssize_t __wrap_sendmsg(int fd, const struct msghdr *msg, int flags)
{
    int e = inject(F_SENDMSG, true);

    if (e != 0) {
        errno = e;
        return -1;
    }
    if (atomic_load(&faults.max_move) > 0) {
        /* A stream socket that takes a few bytes of the vector takes them from its front. */
        for (size_t i = 0; i < msg->msg_iovlen; i++) {
            if (msg->msg_iov[i].iov_len > 0) {
                return moved(F_SENDMSG, __real_send(fd, msg->msg_iov[i].iov_base,
                                                    limit(msg->msg_iov[i].iov_len), flags));
            }
        }
    }
    return moved(F_SENDMSG, __real_sendmsg(fd, msg, flags));
}

int __wrap_poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
    int e = inject(F_POLL, false);

    if (e != 0) {
        errno = e;
        return -1;
    }
    if (spurious_done < atomic_load(&faults.spurious)) {
        /* Woken for nothing: what the caller asked for, whatever is really there. */
        spurious_done++;
        atomic_fetch_add(&seen.spurious, 1);
        for (nfds_t i = 0; i < nfds; i++) {
            fds[i].revents = fds[i].events;
        }
        return (int)nfds;
    }
    spurious_done = 0;
    return __real_poll(fds, nfds, timeout);
}

int __wrap_accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags)
{
    unsigned left = atomic_load(&faults.emfile);
    int e;

    while (left > 0 && !atomic_compare_exchange_weak(&faults.emfile, &left, left - 1)) {
    }
    if (left > 0) {
        atomic_fetch_add(&seen.emfile, 1);
        errno = EMFILE;
        return -1;
    }
    e = inject(F_ACCEPT, true);
    if (e != 0) {
        errno = e;
        return -1;
    }
    return __real_accept4(fd, addr, addrlen, flags);
}

static int faults_teardown(void **state)
{
    faults_reset();
    return ts_env_teardown(state);
}

/* Every case runs with each client range, and must get the version it names. */
static const struct {
    const char *protocols;
    const char *version;
} versions[] = {{"1.3", "TLSv1.3"}, {"1.2-1.2", "TLSv1.2"}};
#define VERSIONS (sizeof(versions) / sizeof(versions[0]))

/* ---- the socket transport -------------------------------------------------------------------- */

struct socket_case {
    const char *what;
    unsigned eintr;
    unsigned eagain;
    unsigned spurious;
    size_t max_move;
    size_t size; /* exchanged both ways */
};

/* The sum of a counter over every function. */
static unsigned long total(atomic_ulong counts[F_COUNT])
{
    unsigned long sum = 0;

    for (int f = 0; f < F_COUNT; f++) {
        sum += atomic_load(&counts[f]);
    }
    return sum;
}

/* The faults of @p c really happened, on every call they concern. */
static void assert_faults_seen(const struct socket_case *c, const char *version)
{
    unsigned long sends = atomic_load(&seen.real[F_SEND]) + atomic_load(&seen.real[F_SENDMSG]);

    print_message("%s (%s): recv %lu, send %lu, sendmsg %lu, poll %lu, accept4 %lu real calls; "
                  "%lu EINTR, %lu EAGAIN, %lu spurious wake-ups\n",
                  c->what, version, atomic_load(&seen.real[F_RECV]),
                  atomic_load(&seen.real[F_SEND]), atomic_load(&seen.real[F_SENDMSG]),
                  atomic_load(&seen.real[F_POLL]), atomic_load(&seen.real[F_ACCEPT]),
                  total(seen.eintr), total(seen.eagain), atomic_load(&seen.spurious));
    for (int f = 0; f < F_COUNT; f++) {
        bool sending = f == F_SEND || f == F_SENDMSG;
        /* A GnuTLS peer sends its flights with sendmsg, OpenSSL with send: one of them. */
        bool used = atomic_load(&seen.real[f]) > 0 || (!sending && f != F_POLL);

        if (!used) {
            continue;
        }
        if (c->eintr > 0 && atomic_load(&seen.eintr[f]) == 0) {
            fail_msg("%s: no EINTR was injected into %s", c->what, fn_names[f]);
        }
        if (c->eagain > 0 && f != F_POLL && atomic_load(&seen.eagain[f]) == 0) {
            fail_msg("%s: no EAGAIN was injected into %s", c->what, fn_names[f]);
        }
    }
    assert_true(sends > 0);
    assert_true(atomic_load(&seen.real[F_POLL]) > 0);
    if (c->spurious > 0) {
        assert_true(atomic_load(&seen.spurious) > 0);
    }
    if (c->max_move > 0) {
        /* Every byte of both handshakes and both exchanges went alone. */
        assert_true(atomic_load(&seen.longest[F_RECV]) <= c->max_move);
        assert_true(atomic_load(&seen.longest[F_SEND]) <= c->max_move);
        assert_true(atomic_load(&seen.longest[F_SENDMSG]) <= c->max_move);
        assert_true(atomic_load(&seen.real[F_RECV]) >= 2 * c->size / c->max_move);
    }
}

static void run_socket_case(struct ts_env *env, const struct socket_case *c, size_t v)
{
    struct ts_exchange ex = {.size = c->size};
    struct tlsock_opts opts = ts_opts();
    const struct tlsock_info *info = NULL;

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_protocols(env->cctx, versions[v].protocols), 0);
    faults_reset();
    atomic_store(&faults.eintr, c->eintr);
    atomic_store(&faults.eagain, c->eagain);
    atomic_store(&faults.spurious, c->spurious);
    atomic_store(&faults.max_move, c->max_move);
    /* The server accepts under the faults too. */
    TS_ASSERT_RC(ts_server_start(&env->srv, env->sctx, NULL, NULL, ts_serve_exchange, &ex), 0);
    TS_ASSERT_RC_MSG(tlsock_connect(env->cctx, "127.0.0.1", env->srv.port, &opts, &env->client), 0,
                     tlsock_errmsg());
    TS_ASSERT_RC(tlsock_conn_info(env->client, &info), 0);
    assert_string_equal(info->version, versions[v].version);
    TS_ASSERT_RC_MSG(ts_client_exchange(env->client, c->size), 0, tlsock_conn_errmsg(env->client));
    tlsock_close(env->client);
    env->client = NULL;
    ts_server_stop(&env->srv);
    TS_ASSERT_RC_MSG(env->srv.accept_rc, 0, env->srv.errmsg);
    TS_ASSERT_RC_MSG(env->srv.result, 0, env->srv.errmsg);
    TS_ASSERT_RC_MSG(ex.final_rc, TLSOCK_ECLOSED, env->srv.errmsg);
    assert_faults_seen(c, versions[v].version);
    faults_reset();
}

static void test_socket(void **state)
{
    static const struct socket_case cases[] = {
        {.what = "EINTR storm", .eintr = 3, .size = SIZE},
        {.what = "EAGAIN storm", .eagain = 2, .size = SIZE},
        {.what = "spurious wake-ups", .spurious = 2, .size = SIZE},
        {.what = "one byte per call", .max_move = 1, .size = 2000},
        {.what = "all at once",
         .eintr = 2,
         .eagain = 1,
         .spurious = 1,
         .max_move = 1,
         .size = 2000},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]) * VERSIONS; i++) {
        ts_env_renew(state, i);
        run_socket_case(*state, &cases[i / VERSIONS], i % VERSIONS);
    }
}

/*
 * A client's first read on a connection tlsock_connect() opened waits for the driver's poll: the
 * server says nothing before the ClientHello, which a GnuTLS client still holds collected when it
 * first reads (its flight leaves in one send). So its first recv gets the server's answer; a recv
 * before the poll would only fail (EAGAIN), a system call per handshake.
 */
static void test_first_read_waits(void **state)
{
    struct ts_env *env = *state;

    for (size_t v = 0; v < VERSIONS; v++) {
        struct ts_exchange ex = {.size = 100};
        struct tlsock_opts opts = ts_opts();

        ts_env_renew(state, v);
        env = *state;
        TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
        TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
        TS_ASSERT_RC(tlsock_ctx_set_protocols(env->cctx, versions[v].protocols), 0);
        TS_ASSERT_RC(ts_server_start(&env->srv, env->sctx, NULL, NULL, ts_serve_exchange, &ex), 0);
        first_recv_rc = 0;
        first_recv_armed = true;
        TS_ASSERT_RC_MSG(tlsock_connect(env->cctx, "127.0.0.1", env->srv.port, &opts, &env->client),
                         0, tlsock_errmsg());
        print_message("%s: the client's first recv returned %zd (%s)\n", versions[v].version,
                      first_recv_rc, first_recv_rc < 0 ? strerror(first_recv_errno) : "data");
        assert_false(first_recv_armed);
        assert_true(first_recv_rc > 0);
        TS_ASSERT_RC_MSG(ts_client_exchange(env->client, ex.size), 0,
                         tlsock_conn_errmsg(env->client));
        tlsock_close(env->client);
        env->client = NULL;
        ts_server_stop(&env->srv);
        TS_ASSERT_RC_MSG(env->srv.result, 0, env->srv.errmsg);
    }
}

/* ---- user callbacks and memory mode ---------------------------------------------------------- */

/*
 * One end of a callback transport over two in-process byte queues (a socketpair would run out of
 * room after a few hundred one-byte writes: the kernel counts each as a buffer of its own).
 */
struct byte_queue {
    unsigned char buf[65536];
    size_t len;
};

struct cb_end {
    struct byte_queue *in;
    struct byte_queue *out;
    size_t max_move; /* at most this many bytes per call; 0: what is asked */
    unsigned wants;  /* "not now" before each real move */
    unsigned read_wants_done;
    unsigned write_wants_done;
    unsigned long made_up; /* WANT codes returned with the transport ready */
    unsigned long calls;   /* real moves */
    size_t longest;
};

/* At most @p len, @p room and the end's largest move; 0 means "not now". */
static size_t cb_size(struct cb_end *e, size_t len, size_t room)
{
    size_t n = e->max_move > 0 && len > e->max_move ? e->max_move : len;

    n = n < room ? n : room;
    if (n > 0) {
        e->calls++;
        e->longest = n > e->longest ? n : e->longest;
    }
    return n;
}

static ssize_t cb_read(void *user, void *buf, size_t len)
{
    struct cb_end *e = user;
    size_t n;

    if (e->read_wants_done < e->wants) {
        e->read_wants_done++;
        e->made_up++;
        return TLSOCK_EWANT_READ;
    }
    e->read_wants_done = 0;
    n = cb_size(e, len, e->in->len);
    if (n == 0) {
        return TLSOCK_EWANT_READ;
    }
    memcpy(buf, e->in->buf, n);
    memmove(e->in->buf, e->in->buf + n, e->in->len - n);
    e->in->len -= n;
    return (ssize_t)n;
}

static ssize_t cb_write(void *user, const void *buf, size_t len)
{
    struct cb_end *e = user;
    size_t n;

    if (e->write_wants_done < e->wants) {
        e->write_wants_done++;
        e->made_up++;
        return TLSOCK_EWANT_WRITE;
    }
    e->write_wants_done = 0;
    n = cb_size(e, len, sizeof(e->out->buf) - e->out->len);
    if (n == 0) {
        return TLSOCK_EWANT_WRITE;
    }
    memcpy(e->out->buf + e->out->len, buf, n);
    e->out->len += n;
    return (ssize_t)n;
}

/* What a callback or memory case owns: both ends in the test thread. */
struct pair_env {
    struct ts_pair pair;
    struct cb_end ends[2];
    struct byte_queue queues[2];
    unsigned char out[SIZE];
    unsigned char back[SIZE];
    unsigned char in[SIZE];
};

static int pair_setup(void **state)
{
    struct pair_env *p = calloc(1, sizeof(*p));

    if (p == NULL) {
        return -1;
    }
    ts_fill(p->out, SIZE, 1);
    ts_fill(p->back, SIZE, 2);
    *state = p;
    return 0;
}

static int pair_teardown(void **state)
{
    struct pair_env *p = *state;

    if (p != NULL) {
        ts_pair_release(&p->pair);
        free(p);
        *state = NULL;
    }
    return 0;
}

/*
 * Contexts for the client range @p protocols, after releasing the previous case's objects; the
 * handshake may take a round per byte and per "not now".
 */
static void pair_contexts(struct pair_env *p, const char *protocols)
{
    ts_pair_release(&p->pair);
    p->pair.rounds_max = 1000000;
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &p->pair.sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &p->pair.cctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_protocols(p->pair.cctx, protocols), 0);
}

/* The handshake of version @p v, then @p size bytes each way read @p max_read at a time. */
static void pair_exchange(struct pair_env *p, size_t v, size_t size, size_t max_read)
{
    struct ts_transfer up = {
        .dir = TS_C2S, .data = p->out, .len = size, .out = p->in, .max_read = max_read};
    struct ts_transfer down = {
        .dir = TS_S2C, .data = p->back, .len = size, .out = p->in, .max_read = max_read};
    const struct tlsock_info *info = NULL;

    TS_ASSERT_RC_MSG(ts_pair_handshake(&p->pair), 0, p->pair.client_msg);
    TS_ASSERT_RC(tlsock_conn_info(p->pair.client, &info), 0);
    assert_string_equal(info->version, versions[v].version);
    TS_ASSERT_RC_MSG(ts_pair_run_transfer(&p->pair, &up), 0, tlsock_conn_errmsg(p->pair.server));
    TS_ASSERT_RC_MSG(ts_pair_run_transfer(&p->pair, &down), 0, tlsock_conn_errmsg(p->pair.client));
}

struct cb_case {
    const char *what;
    size_t max_move;
    unsigned wants;
    size_t size;
};

static void run_cb_case(struct pair_env *p, const struct cb_case *c, size_t v)
{
    struct tlsock_opts copts = ts_opts();
    struct tlsock_io io[2];

    copts.servername = "localhost";
    pair_contexts(p, versions[v].protocols);
    memset(p->queues, 0, sizeof(p->queues));
    for (int i = 0; i < 2; i++) {
        p->ends[i] = (struct cb_end){.in = &p->queues[i],
                                     .out = &p->queues[1 - i],
                                     .max_move = c->max_move,
                                     .wants = c->wants};
        io[i] = (struct tlsock_io){.read = cb_read, .write = cb_write, .user = &p->ends[i]};
    }
    TS_ASSERT_RC(ts_pair_attach_io(&p->pair, &io[0], &io[1], &copts, NULL), 0);
    pair_exchange(p, v, c->size, c->max_move);
    print_message("%s (%s): %lu and %lu real moves, %lu and %lu WANT codes made up\n", c->what,
                  versions[v].version, p->ends[0].calls, p->ends[1].calls, p->ends[0].made_up,
                  p->ends[1].made_up);
    for (int i = 0; i < 2; i++) {
        if (c->max_move > 0) {
            assert_true(p->ends[i].longest <= c->max_move);
            assert_true(p->ends[i].calls >= 2 * c->size / c->max_move);
        }
        if (c->wants > 0) {
            assert_true(p->ends[i].made_up >= c->wants * p->ends[i].calls);
        }
    }
}

static void test_callbacks(void **state)
{
    /* One-byte cases move less: every byte is a call (a record boundary is the storms'). */
    static const struct cb_case cases[] = {
        {.what = "one byte per call", .max_move = 1, .size = 2000},
        {.what = "WANT storm", .wants = 3, .size = SIZE},
        {.what = "one byte, WANT storm", .max_move = 1, .wants = 2, .size = 2000},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]) * VERSIONS; i++) {
        run_cb_case(*state, &cases[i / VERSIONS], i % VERSIONS);
    }
}

/*
 * Memory mode fed, drained and read one byte at a time, TLS 1.2 (test_memory does TLS 1.3), with
 * data across a record boundary.
 */
static void test_memory_one_byte(void **state)
{
    struct pair_env *p = *state;
    struct tlsock_opts copts = ts_opts();

    copts.servername = "localhost";
    pair_contexts(p, versions[1].protocols);
    p->pair.path[TS_C2S].chunk = p->pair.path[TS_S2C].chunk = 1;
    TS_ASSERT_RC(ts_pair_attach(&p->pair, &copts, NULL), 0);
    pair_exchange(p, 1, SIZE, 1);
}

/* ---- accept(2) out of descriptors ------------------------------------------------------------ */

/* A client in its own thread: connects, then (unless @c connect_only) the usual exchange. */
static struct accept_client {
    pthread_t thread;
    bool started;
    struct tlsock_ctx *ctx;
    uint16_t port;
    bool connect_only;
    atomic_bool done;
    int rc;
    char errmsg[TLSOCK__ERRMSG_SIZE];
} client;

static void *client_main(void *arg)
{
    struct accept_client *c = arg;
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;

    c->rc = tlsock_connect(c->ctx, "127.0.0.1", c->port, &opts, &conn);
    if (c->rc == 0 && !c->connect_only) {
        c->rc = ts_client_exchange(conn, SIZE);
    }
    snprintf(c->errmsg, sizeof(c->errmsg), "%s",
             conn != NULL ? tlsock_conn_errmsg(conn) : tlsock_errmsg());
    tlsock_close(conn);
    atomic_store(&c->done, true);
    return NULL;
}

static int client_join(void)
{
    if (client.started) {
        pthread_join(client.thread, NULL);
        client.started = false;
    }
    return client.rc;
}

static int accept_teardown(void **state)
{
    faults_reset();
    /* The listener goes first (the client then fails at once if it still waits). */
    if (*state != NULL) {
        struct ts_env *env = *state;
        tlsock_listener_close(env->srv.lis);
        env->srv.lis = NULL;
    }
    (void)client_join();
    return ts_env_teardown(state);
}

/*
 * A listener (in env->srv.lis, which the teardown closes) and a client whose TCP connection is
 * queued: it made its socket before the test takes the descriptors away.
 */
static void listen_with_client(struct ts_env *env)
{
    struct pollfd pfd = {.events = POLLIN};

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    TS_ASSERT_RC(tlsock_listen(env->sctx, "127.0.0.1", 0, 0, &env->srv.lis), 0);
    client = (struct accept_client){.ctx = env->cctx, .port = tlsock_listener_port(env->srv.lis)};
    assert_int_equal(pthread_create(&client.thread, NULL, client_main, &client), 0);
    client.started = true;
    pfd.fd = tlsock_listener_fd(env->srv.lis);
    assert_int_equal(poll(&pfd, 1, TS_IO_TIMEOUT_MS), 1);
}

/* The listener serves the queued client: accept, handshake, exchange, both ends happy. */
static void serve_queued_client(struct ts_env *env)
{
    struct ts_exchange ex = {.size = SIZE};
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    int rc;

    TS_ASSERT_RC_MSG(tlsock_accept(env->srv.lis, &opts, &conn), 0, tlsock_errmsg());
    rc = ts_serve_exchange(conn, &ex);
    tlsock_close(conn);
    TS_ASSERT_RC(rc, 0);
    TS_ASSERT_RC(ex.final_rc, TLSOCK_ECLOSED);
    TS_ASSERT_RC_MSG(client_join(), 0, client.errmsg);
}

/* A failed accept names EMFILE, here and on the listener, after one accept(2): no spinning. */
static void assert_emfile(struct ts_env *env, int rc, unsigned long accept_calls)
{
    TS_ASSERT_RC(rc, TLSOCK_ESYS);
    TS_ASSERT_CONTAINS(tlsock_errmsg(), "accept: Too many open files");
    TS_ASSERT_CONTAINS(tlsock_listener_errmsg(env->srv.lis), "Too many open files");
    assert_int_equal(accept_calls, 1);
}

/* accept4 fails with EMFILE three times (the wrapper), then works. */
static void test_accept_emfile(void **state)
{
    struct ts_env *env = *state;
    struct tlsock_opts opts = ts_opts();

    listen_with_client(env);
    atomic_store(&faults.emfile, 3);
    for (int i = 0; i < 3; i++) {
        struct tlsock_conn *conn = NULL;
        unsigned long before = atomic_load(&seen.emfile);
        int rc = tlsock_accept(env->srv.lis, &opts, &conn);

        assert_null(conn);
        assert_emfile(env, rc, atomic_load(&seen.emfile) - before);
    }
    assert_int_equal(atomic_load(&seen.real[F_ACCEPT]), 0);
    serve_queued_client(env);
}

/* The lowest free descriptor: every one below it is in use. */
static int lowest_free_fd(void)
{
    int fd = dup(STDERR_FILENO);

    assert_true(fd >= 0);
    close(fd);
    return fd;
}

/* The process really is out of descriptors (RLIMIT_NOFILE lowered below the next free one). */
static void test_accept_fd_limit(void **state)
{
    struct ts_env *env = *state;
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    struct rlimit old;
    struct rlimit low;
    unsigned long calls;
    int rc;

    if (UNDER_VALGRIND()) {
        skip();
    }
    listen_with_client(env);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = (rlim_t)lowest_free_fd();
    calls = atomic_load(&seen.real[F_ACCEPT]);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    rc = tlsock_accept(env->srv.lis, &opts, &conn);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    calls = atomic_load(&seen.real[F_ACCEPT]) - calls;
    assert_null(conn);
    assert_emfile(env, rc, calls);
    /* Descriptors are free again: the client still waiting in the queue is served. */
    serve_queued_client(env);
}

#if TS_HAVE_UV
/* What the libuv server's callbacks saw. */
static struct {
    int connects;
    int closes;
    int accept_errors;
    int accept_code;
    char accept_msg[TLSOCK__ERRMSG_SIZE];
    bool server_closed;
    bool tick;
} watch;

static void on_uv_connect(struct tlsock_uv_conn *conn, int status)
{
    if (status == 0) {
        watch.connects++;
    }
    tlsock_uv_close(conn);
}

static void on_uv_close(struct tlsock_uv_conn *conn)
{
    (void)conn;
    watch.closes++;
}

static void on_uv_accept_error(struct tlsock_uv_server *server, int code, const char *message)
{
    (void)server;
    watch.accept_errors++;
    watch.accept_code = code;
    snprintf(watch.accept_msg, sizeof(watch.accept_msg), "%s", message);
}

static void on_uv_server_close(struct tlsock_uv_server *server)
{
    (void)server;
    watch.server_closed = true;
}

static void on_tick(uv_timer_t *timer)
{
    (void)timer;
    watch.tick = true;
}

static void on_wake(uv_timer_t *timer)
{
    (void)timer; /* only makes the loop go round, to check the condition */
}

/*
 * Runs @p loop for @p ms, or until @p until() holds (checked every few ms: a client thread does
 * not wake the loop); returns how many times it went round.
 */
static long run_loop(uv_loop_t *loop, int ms, bool (*until)(void))
{
    uv_timer_t timer;
    uv_timer_t wake;
    long rounds = 0;

    watch.tick = false;
    uv_timer_init(loop, &timer);
    uv_timer_start(&timer, on_tick, (uint64_t)ms, 0);
    uv_timer_init(loop, &wake);
    if (until != NULL) {
        uv_timer_start(&wake, on_wake, 5, 5);
    }
    /* Bounded by the timer; the count bounds a loop that would not even run it. */
    for (; rounds < 10000000 && !watch.tick && !(until != NULL && until()); rounds++) {
        loop_turn(loop);
    }
    uv_close((uv_handle_t *)&timer, NULL);
    uv_close((uv_handle_t *)&wake, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return rounds;
}

static bool client_finished(void)
{
    return atomic_load(&client.done);
}

static bool server_closed(void)
{
    return watch.server_closed;
}

static void test_uv_serve_fd_limit(void **state)
{
    struct ts_env *env = *state;
    struct tlsock_uv_opts opts = TLSOCK_UV_OPTS_INIT;
    struct tlsock_uv_server *server = NULL;
    struct rlimit old;
    struct rlimit low;
    uv_loop_t loop;
    int queued = -1;
    long rounds;
    char byte;

    if (UNDER_VALGRIND()) {
        skip();
    }
    memset(&watch, 0, sizeof(watch));
    opts.on_connect = on_uv_connect;
    opts.on_close = on_uv_close;
    opts.on_accept_error = on_uv_accept_error;
    opts.handshake_timeout_ms = TS_IO_TIMEOUT_MS;
    assert_int_equal(uv_loop_init(&loop), 0);
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    TS_ASSERT_RC(tlsock_uv_serve(&loop, env->sctx, "127.0.0.1", 0, 0, &opts, &server), 0);
    /* A client queued before the descriptors run out (a raw TCP connection). */
    assert_int_equal(ts_raw_connect("127.0.0.1", tlsock_uv_server_port(server), 0, &queued), 0);
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = (rlim_t)lowest_free_fd();
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    rounds = run_loop(&loop, 300, NULL);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    ssize_t got = recv(queued, &byte, 1, MSG_DONTWAIT);
    int got_errno = errno;
    print_message("libuv server out of descriptors for 300 ms: %ld loop rounds, %d accept errors "
                  "(last %s: \"%s\"); the queued client then reads %zd (%s)\n",
                  rounds, watch.accept_errors, ts_rc_name(watch.accept_code), watch.accept_msg, got,
                  got < 0 ? strerror(got_errno) : "");
    /* It waited for descriptors, it did not spin: a few rounds in 300 ms (timer, wake-ups). */
    assert_true(rounds < 100);
    close(queued);
    /* Descriptors are free again: a new client is served. */
    client = (struct accept_client){
        .ctx = env->cctx, .port = tlsock_uv_server_port(server), .connect_only = true};
    assert_int_equal(pthread_create(&client.thread, NULL, client_main, &client), 0);
    client.started = true;
    (void)run_loop(&loop, 2 * TS_IO_TIMEOUT_MS, client_finished);
    print_message("then: %d connects, %d accept errors, client %s (%s)\n", watch.connects,
                  watch.accept_errors, ts_rc_name(client.rc), client.errmsg);
    TS_ASSERT_RC_MSG(client.rc, 0, client.errmsg);
    assert_int_equal(watch.connects, 1);
    tlsock_uv_server_close(server, on_uv_server_close);
    (void)run_loop(&loop, TS_IO_TIMEOUT_MS, server_closed);
    (void)client_join();
    assert_int_equal(uv_loop_close(&loop), 0);
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_socket, ts_env_setup, faults_teardown),
        cmocka_unit_test_setup_teardown(test_first_read_waits, ts_env_setup, faults_teardown),
        cmocka_unit_test_setup_teardown(test_callbacks, pair_setup, pair_teardown),
        cmocka_unit_test_setup_teardown(test_memory_one_byte, pair_setup, pair_teardown),
        cmocka_unit_test_setup_teardown(test_accept_emfile, ts_env_setup, accept_teardown),
        cmocka_unit_test_setup_teardown(test_accept_fd_limit, ts_env_setup, accept_teardown),
#if TS_HAVE_UV
        cmocka_unit_test_setup_teardown(test_uv_serve_fd_limit, ts_env_setup, accept_teardown),
#endif
    };

    return cmocka_run_group_tests_name("io_faults", tests, ts_pki_setup, ts_pki_teardown);
}
