/*
 * Scale of the libuv driver (tlsock/uv.h): one loop serves 10,000 concurrent TLS connections.
 *
 * A process may hold 20,000 descriptors here, so the clients run in a child process forked
 * before any loop or thread exists: the child runs its own loop with 10,000 tlsock_uv_connect()
 * clients, at most IN_FLIGHT handshakes at a time so that the listen backlog is never overrun;
 * the parent runs the server's loop. They talk over two pipes in fixed-size messages.
 *
 *   1. connect: every client connects and stays idle; the child says so, and the server must then
 *      count exactly 10,000 live connections, with no on_accept_error and no event;
 *   2. echo: every client sends a small message of its own, the server echoes it, the child
 *      checks each one;
 *   3. close: every client closes (close_notify), every server connection sees ECLOSED and closes,
 *      the server closes, the child exits 0.
 *
 * Elapsed times and the server's RSS growth per connection are printed for information, never
 * asserted. The server's loop is the harness's (struct env, set up after the fork): every phase
 * is bounded by its guard, and the teardown closes what is left and requires the loop to close.
 * The child, another process, runs a loop of its own with its own guard, and is killed if the
 * parent fails. Registered once per implementation (TLSOCK_IMPL), client and server alike.
 */
#include "support/uv_harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CONNS          10000
#define IN_FLIGHT      256
#define BACKLOG        4096
#define FD_MARGIN      256 /* descriptors besides the connections: pipes, loop, stdio */
#define MSG_LEN        16
#define CONNECT_MS     240000 /* phase 1 */
#define PHASE_MS       90000  /* phases 2 and 3 */
#define CHILD_GUARD_MS 420000 /* the child gives up by itself before CTest's 600 s */
#define PHASE_MAX_ITER 50000000L

/* ---- messages between the processes (each one write(2), under PIPE_BUF: atomic) ------------- */

enum tag {
    TAG_PORT = 'P',      /* parent: a = the server's port */
    TAG_GO_ECHO = 'G',   /* parent: phase 2 */
    TAG_QUIT = 'Q',      /* parent: phase 3 */
    TAG_CONNECTED = 'C', /* child: a = connected, b = failed, c = first failure */
    TAG_ECHOED = 'E',    /* child: a = echoes right, b = wrong, c = events before phase 3 */
    TAG_DONE = 'D',      /* child: a = closed, b = errors in phase 3, c = first error */
    TAG_FATAL = 'X',     /* child: it gave up; text says why */
};

struct msg {
    int32_t tag;
    int32_t a;
    int32_t b;
    int32_t c;
    char text[240];
};

static int msg_send(int fd, int tag, int a, int b, int c, const char *text)
{
    struct msg m;
    ssize_t n;

    memset(&m, 0, sizeof(m));
    m.tag = tag;
    m.a = a;
    m.b = b;
    m.c = c;
    snprintf(m.text, sizeof(m.text), "%s", text != NULL ? text : "");
    for (int i = 0; i < 100; i++) {
        n = write(fd, &m, sizeof(m));
        if (n == (ssize_t)sizeof(m)) {
            return 0;
        }
        if (n >= 0 || errno != EINTR) {
            break;
        }
    }
    return -1;
}

/* Reads messages from a non-blocking pipe as they come (a uv_poll_t watches it). */
struct inbox {
    uv_poll_t poll;
    int fd;
    unsigned char buf[4 * sizeof(struct msg)];
    size_t len;
    bool eof;
    void (*deliver)(struct inbox *in, const struct msg *m);
    void *owner;
};

static void inbox_cb(uv_poll_t *handle, int status, int events)
{
    struct inbox *in = handle->data;

    (void)events;
    for (int i = 0; i < 64 && !in->eof; i++) {
        ssize_t n = read(in->fd, in->buf + in->len, sizeof(in->buf) - in->len);

        if (n > 0) {
            in->len += (size_t)n;
            while (in->len >= sizeof(struct msg)) {
                struct msg m;

                memcpy(&m, in->buf, sizeof(m));
                memmove(in->buf, in->buf + sizeof(m), in->len - sizeof(m));
                in->len -= sizeof(m);
                in->deliver(in, &m);
            }
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR) || status < 0) {
            in->eof = true;
            uv_poll_stop(handle);
        } else {
            break;
        }
    }
}

static int inbox_start(struct inbox *in, uv_loop_t *loop, int fd,
                       void (*deliver)(struct inbox *in, const struct msg *m), void *owner)
{
    int rc;

    in->fd = fd;
    in->deliver = deliver;
    in->owner = owner;
    (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    rc = uv_poll_init(loop, &in->poll, fd);
    if (rc == 0) {
        in->poll.data = in;
        rc = uv_poll_start(&in->poll, UV_READABLE | UV_DISCONNECT, inbox_cb);
    }
    return rc;
}

/* SIGPIPE in the child: as the harness does in the parent, default action but blocked, so that one
 * the library lets through is seen (pending) instead of killing a process in the middle of the run.
 */
static void sigpipe_block(void)
{
    struct sigaction sa;
    sigset_t set;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, NULL);
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static bool sigpipe_pending(void)
{
    sigset_t pending;

    return sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
}

/* ---- the child: 10,000 clients -----------------------------------------------------------------
 */

struct cconn {
    struct tlsock_uv_conn *conn;
    int id;
    bool ready;
    bool closing;
    char tx[MSG_LEN];
    char rx[MSG_LEN];
    size_t rx_len;
};

struct child {
    uv_loop_t loop;
    uv_timer_t guard;
    struct inbox in;
    int to_parent;
    struct tlsock_ctx *ctx;
    uint16_t port;
    struct cconn *conns;
    int started;
    int in_flight;
    int connected;
    int failed;
    int first_failure;
    char first_failure_msg[200];
    int echo_ok;
    int echo_bad;
    int events_early; /* events before phase 3: none may come */
    int first_event;
    char first_event_msg[200];
    int closed;
    int late_errors; /* in phase 3: events other than ECLOSED, failed writes */
    int first_late_error;
    bool quitting;
    bool finished;
};

static struct child *child_of(uv_loop_t *loop)
{
    return loop->data;
}

static void child_finish(struct child *ch)
{
    if (!ch->finished) {
        ch->finished = true;
        uv_close((uv_handle_t *)&ch->guard, NULL);
        if (!ch->in.eof) {
            uv_poll_stop(&ch->in.poll);
        }
        uv_close((uv_handle_t *)&ch->in.poll, NULL);
    }
}

static void child_connect_more(struct child *ch);

static void child_on_connect(struct tlsock_uv_conn *conn, int status)
{
    struct cconn *cc = tlsock_uv_conn_user(conn);
    struct child *ch = child_of(tlsock_uv_conn_loop(conn));

    ch->in_flight--;
    if (status == 0) {
        cc->ready = true;
        ch->connected++;
    } else {
        if (ch->failed++ == 0) {
            ch->first_failure = status;
            snprintf(ch->first_failure_msg, sizeof(ch->first_failure_msg), "client %d: %s", cc->id,
                     tlsock_uv_conn_errmsg(conn));
        }
        cc->closing = true;
        tlsock_uv_close(conn);
    }
    if (ch->connected + ch->failed == CONNS) {
        (void)msg_send(ch->to_parent, TAG_CONNECTED, ch->connected, ch->failed, ch->first_failure,
                       ch->first_failure_msg);
    } else {
        child_connect_more(ch);
    }
}

static void child_on_read(struct tlsock_uv_conn *conn, const void *data, size_t len)
{
    struct cconn *cc = tlsock_uv_conn_user(conn);
    struct child *ch = child_of(tlsock_uv_conn_loop(conn));

    if (cc->rx_len + len > MSG_LEN) {
        ch->echo_bad++;
        cc->rx_len = MSG_LEN + 1;
        return;
    }
    memcpy(cc->rx + cc->rx_len, data, len);
    cc->rx_len += len;
    if (cc->rx_len == MSG_LEN) {
        if (memcmp(cc->rx, cc->tx, MSG_LEN) == 0) {
            ch->echo_ok++;
        } else {
            ch->echo_bad++;
        }
        if (ch->echo_ok + ch->echo_bad == ch->connected) {
            (void)msg_send(ch->to_parent, TAG_ECHOED, ch->echo_ok, ch->echo_bad, ch->events_early,
                           ch->first_event_msg);
        }
    }
}

static void child_on_event(struct tlsock_uv_conn *conn, int code)
{
    struct cconn *cc = tlsock_uv_conn_user(conn);
    struct child *ch = child_of(tlsock_uv_conn_loop(conn));

    if (!ch->quitting) {
        if (ch->events_early++ == 0) {
            ch->first_event = code;
            snprintf(ch->first_event_msg, sizeof(ch->first_event_msg), "client %d: %s (%s)", cc->id,
                     tlsock_err_name(code), tlsock_uv_conn_errmsg(conn));
        }
    } else if (code != TLSOCK_ECLOSED && ch->late_errors++ == 0) {
        ch->first_late_error = code;
    }
    if (!cc->closing) {
        cc->closing = true;
        tlsock_uv_close(conn);
    }
}

static void child_on_write(struct tlsock_uv_conn *conn, void *write_arg, int status)
{
    struct child *ch = child_of(tlsock_uv_conn_loop(conn));

    (void)write_arg;
    if (status != 0 && ch->late_errors++ == 0) {
        ch->first_late_error = status;
    }
}

static void child_on_close(struct tlsock_uv_conn *conn)
{
    struct cconn *cc = tlsock_uv_conn_user(conn);
    struct child *ch = child_of(tlsock_uv_conn_loop(conn));

    cc->conn = NULL;
    ch->closed++;
    if (ch->closed == CONNS) {
        child_finish(ch);
    }
}

static void child_connect_more(struct child *ch)
{
    while (ch->in_flight < IN_FLIGHT && ch->started < CONNS) {
        struct cconn *cc = &ch->conns[ch->started];
        struct tlsock_uv_opts opts = TLSOCK_UV_OPTS_INIT;
        int rc;

        cc->id = ch->started;
        /* Each client's own bytes: its number, then a pattern seeded with it. */
        ts_fill((unsigned char *)cc->tx, MSG_LEN, (unsigned)cc->id);
        memcpy(cc->tx, &cc->id, sizeof(cc->id));
        opts.connect_timeout_ms = CONNECT_MS;
        opts.handshake_timeout_ms = CONNECT_MS;
        opts.on_connect = child_on_connect;
        opts.on_read = child_on_read;
        opts.on_event = child_on_event;
        opts.on_write = child_on_write;
        opts.on_close = child_on_close;
        opts.user = cc;
        ch->started++;
        rc = tlsock_uv_connect(&ch->loop, ch->ctx, "127.0.0.1", ch->port, &opts, &cc->conn);
        if (rc != 0) {
            /* No handle, no callback: count it as closed at once. */
            if (ch->failed++ == 0) {
                ch->first_failure = rc;
                snprintf(ch->first_failure_msg, sizeof(ch->first_failure_msg),
                         "tlsock_uv_connect: %s", tlsock_err_name(rc));
            }
            ch->closed++;
            if (ch->connected + ch->failed == CONNS) {
                (void)msg_send(ch->to_parent, TAG_CONNECTED, ch->connected, ch->failed,
                               ch->first_failure, ch->first_failure_msg);
            }
        } else {
            ch->in_flight++;
        }
    }
}

static void child_deliver(struct inbox *in, const struct msg *m)
{
    struct child *ch = in->owner;

    if (m->tag == TAG_PORT) {
        ch->port = (uint16_t)m->a;
        child_connect_more(ch);
    } else if (m->tag == TAG_GO_ECHO) {
        for (int i = 0; i < ch->started; i++) {
            struct cconn *cc = &ch->conns[i];

            if (cc->ready && cc->conn != NULL && !cc->closing &&
                tlsock_uv_write(cc->conn, cc->tx, MSG_LEN, cc) != 0 && ch->echo_bad++ == 0) {
                snprintf(ch->first_event_msg, sizeof(ch->first_event_msg),
                         "client %d: tlsock_uv_write failed", cc->id);
            }
        }
        if (ch->connected == 0) {
            (void)msg_send(ch->to_parent, TAG_ECHOED, 0, 0, ch->events_early, "no client");
        }
    } else if (m->tag == TAG_QUIT) {
        ch->quitting = true;
        for (int i = 0; i < ch->started; i++) {
            struct cconn *cc = &ch->conns[i];

            if (cc->conn != NULL && !cc->closing) {
                cc->closing = true;
                tlsock_uv_close(cc->conn);
            }
        }
        if (ch->closed == CONNS) {
            child_finish(ch);
        }
    }
}

static void child_guard_cb(uv_timer_t *timer)
{
    struct child *ch = timer->data;
    char why[200];

    snprintf(why, sizeof(why),
             "child gave up after %d ms: %d connected, %d failed, %d in flight, %d echoed, "
             "%d closed",
             CHILD_GUARD_MS, ch->connected, ch->failed, ch->in_flight, ch->echo_ok, ch->closed);
    (void)msg_send(ch->to_parent, TAG_FATAL, 0, 0, 0, why);
    _exit(3);
}

/* Runs in the forked child; never returns into cmocka. */
static void child_main(int from_parent, int to_parent)
{
    struct child *ch = calloc(1, sizeof(*ch));
    int loop_rc = -1;
    int status = 1;

    sigpipe_block();
    if (ch == NULL || uv_loop_init(&ch->loop) != 0) {
        (void)msg_send(to_parent, TAG_FATAL, 0, 0, 0, "child: no memory or no loop");
        _exit(2);
    }
    ch->loop.data = ch;
    ch->to_parent = to_parent;
    ch->conns = calloc(CONNS, sizeof(*ch->conns));
    if (ch->conns == NULL || ts_client_ctx_new(ts_pki.ca.cert, &ch->ctx) != 0 ||
        inbox_start(&ch->in, &ch->loop, from_parent, child_deliver, ch) != 0) {
        (void)msg_send(to_parent, TAG_FATAL, 0, 0, 0, "child: setup failed");
        _exit(2);
    }
    uv_timer_init(&ch->loop, &ch->guard);
    ch->guard.data = ch;
    uv_timer_start(&ch->guard, child_guard_cb, CHILD_GUARD_MS, 0);
    for (long i = 0; i < PHASE_MAX_ITER && uv_run(&ch->loop, UV_RUN_ONCE) != 0; i++) {
    }
    loop_rc = uv_loop_close(&ch->loop);
    if (sigpipe_pending() && ch->late_errors++ == 0) {
        ch->first_late_error = 1000; /* reported as SIGPIPE by the parent */
    }
    (void)msg_send(to_parent, TAG_DONE, ch->closed, ch->late_errors, ch->first_late_error,
                   loop_rc == 0 ? "" : "the child's loop did not close: handles left");
    if (ch->closed == CONNS && ch->late_errors == 0 && loop_rc == 0) {
        status = 0;
    }
    _exit(status);
}

/* ---- the parent: one server ------------------------------------------------------------------ */

struct sconn {
    struct tlsock_uv_conn *conn;
    bool closing;
};

struct parent {
    struct env *env; /* the harness's: the loop, its guard, the teardown's checks */
    bool inbox_ready;
    struct inbox in;
    int to_child;
    pid_t child;
    struct tlsock_ctx *ctx;
    struct tlsock_uv_server *server;
    bool server_closed;
    struct sconn *conns;
    int nconns;
    int live;
    int accept_errors;
    char first_accept_error[300];
    int bad_events;
    char first_bad_event[300];
    int eclosed;
    int write_errors;
    size_t echoed;
    bool quitting;
    struct msg got[128]; /* by tag */
    bool have[128];
};

static struct parent *cur;

/* Set when the test skips: the executable then exits 77 (CTest's SKIP_RETURN_CODE convention),
 * so that a skip is never counted as a pass. */
static bool skipped;

static void parent_deliver(struct inbox *in, const struct msg *m)
{
    struct parent *pa = in->owner;

    if (m->tag > 0 && m->tag < 128) {
        pa->got[m->tag] = *m;
        pa->have[m->tag] = true;
    }
}

static void server_on_connect(struct tlsock_uv_conn *conn, int status)
{
    struct parent *pa = cur;
    struct sconn *sc;

    if (status != 0 || pa->nconns >= CONNS + FD_MARGIN) {
        if (pa->bad_events++ == 0) {
            snprintf(pa->first_bad_event, sizeof(pa->first_bad_event),
                     "server on_connect(%s), %d connections so far", tlsock_err_name(status),
                     pa->nconns);
        }
        tlsock_uv_conn_set_user(conn, NULL);
        tlsock_uv_close(conn);
        return;
    }
    sc = &pa->conns[pa->nconns++];
    sc->conn = conn;
    tlsock_uv_conn_set_user(conn, sc);
    pa->live++;
}

static void server_on_read(struct tlsock_uv_conn *conn, const void *data, size_t len)
{
    struct parent *pa = cur;
    void *copy = malloc(len);
    int rc = TLSOCK_ENOMEM;

    pa->echoed += len;
    if (copy != NULL) {
        memcpy(copy, data, len);
        rc = tlsock_uv_write(conn, copy, len, copy);
    }
    if (rc != 0) {
        free(copy);
        pa->write_errors++;
    }
}

static void server_on_write(struct tlsock_uv_conn *conn, void *write_arg, int status)
{
    struct parent *pa = cur;

    (void)conn;
    free(write_arg);
    if (status != 0 && !pa->quitting) {
        pa->write_errors++;
    }
}

static void server_on_event(struct tlsock_uv_conn *conn, int code)
{
    struct parent *pa = cur;
    struct sconn *sc = tlsock_uv_conn_user(conn);

    if (code == TLSOCK_ECLOSED && pa->quitting) {
        pa->eclosed++;
    } else if (pa->bad_events++ == 0) {
        snprintf(pa->first_bad_event, sizeof(pa->first_bad_event), "server connection: %s (%s)",
                 tlsock_err_name(code), tlsock_uv_conn_errmsg(conn));
    }
    if (sc != NULL && !sc->closing) {
        sc->closing = true;
        tlsock_uv_close(conn);
    }
}

static void server_on_close(struct tlsock_uv_conn *conn)
{
    struct parent *pa = cur;
    struct sconn *sc = tlsock_uv_conn_user(conn);

    if (sc != NULL) {
        sc->conn = NULL;
        pa->live--;
    }
}

static void server_on_accept_error(struct tlsock_uv_server *server, int code, const char *message)
{
    struct parent *pa = cur;

    (void)server;
    if (pa->accept_errors++ == 0) {
        snprintf(pa->first_accept_error, sizeof(pa->first_accept_error), "%s (%s)",
                 tlsock_err_name(code), message != NULL ? message : "(null)");
    }
}

static void server_closed_cb(struct tlsock_uv_server *server)
{
    (void)server;
    cur->server_closed = true;
}

/* Runs the server's loop until @p cond holds (or the child gave up); fails after @p ms. */
#define PHASE_UNTIL(pa, cond, ms, what)                                                            \
    do {                                                                                           \
        guard_start((pa)->env, (ms));                                                              \
        for (long ru_i_ = 0; ru_i_ < PHASE_MAX_ITER && !(cond) && !(pa)->env->guard_fired &&       \
                             !(pa)->have[TAG_FATAL];                                               \
             ru_i_++) {                                                                            \
            loop_turn(&(pa)->env->loop);                                                           \
        }                                                                                          \
        guard_stop((pa)->env);                                                                     \
        if ((pa)->have[TAG_FATAL]) {                                                               \
            fail_msg("%s: %s", (what), (pa)->got[TAG_FATAL].text);                                 \
        }                                                                                          \
        if (!(cond)) {                                                                             \
            fail_msg("%s: not done within %d ms (%d live server connections, %d accept "           \
                     "errors, %d bad events%s)",                                                   \
                     (what), (int)(ms), (pa)->live, (pa)->accept_errors, (pa)->bad_events,         \
                     (pa)->in.eof ? ", the child is gone" : "");                                   \
        }                                                                                          \
    } while (0)

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0;
    long resident = 0;

    if (f != NULL) {
        if (fscanf(f, "%ld %ld", &size, &resident) != 2) {
            resident = 0;
        }
        fclose(f);
    }
    return resident * sysconf(_SC_PAGESIZE);
}

static void kill_child(struct parent *pa)
{
    if (pa->child > 0) {
        int status;

        kill(pa->child, SIGKILL);
        (void)waitpid(pa->child, &status, 0);
        pa->child = -1;
    }
}

/* Waits (bounded) for the child to exit; returns its wait status, or -1. */
static int reap_child(struct parent *pa, int timeout_ms)
{
    struct timespec tick = {0, 10 * 1000 * 1000};
    int status = -1;

    /* The child has closed its pipe (it is exiting): only the zombie is left to collect. */
    for (int i = 0; i < timeout_ms / 10; i++) {
        pid_t got = waitpid(pa->child, &status, WNOHANG);

        if (got == pa->child) {
            pa->child = -1;
            return status;
        }
        nanosleep(&tick, NULL);
    }
    return -1;
}

static int parent_setup(void **state)
{
    struct parent *pa = calloc(1, sizeof(*pa));

    if (pa == NULL) {
        return -1;
    }
    pa->child = -1;
    pa->to_child = -1;
    pa->in.fd = -1;
    cur = pa;
    *state = pa;
    return 0;
}

/* The teardown's hooks (struct env_extra): the server, its connections, the child's pipe. */
static void parent_close(void *arg)
{
    struct parent *pa = arg;

    for (int i = 0; i < pa->nconns; i++) {
        if (pa->conns[i].conn != NULL && !pa->conns[i].closing) {
            pa->conns[i].closing = true;
            tlsock_uv_close(pa->conns[i].conn);
        }
    }
    if (pa->server != NULL && !pa->server_closed) {
        tlsock_uv_server_close(pa->server, server_closed_cb);
        pa->server = NULL;
    }
    if (pa->inbox_ready) {
        pa->inbox_ready = false;
        uv_close((uv_handle_t *)&pa->in.poll, NULL);
    }
}

static bool parent_closed(void *arg)
{
    struct parent *pa = arg;

    return pa->live == 0 && (pa->server == NULL || pa->server_closed);
}

static int parent_teardown(void **state)
{
    struct parent *pa = *state;
    int rc = 0;

    kill_child(pa);
    if (pa->env != NULL) {
        void *env_state = pa->env;
        if (env_teardown(&env_state) != 0) {
            print_error("teardown: %d server connections were still open\n", pa->live);
            rc = -1;
        }
    }
    if (pa->in.fd >= 0) {
        close(pa->in.fd);
    }
    if (pa->to_child >= 0) {
        close(pa->to_child);
    }
    tlsock_ctx_free(pa->ctx);
    if (rc == 0) {
        free(pa->conns);
        free(pa);
    }
    cur = NULL;
    *state = NULL;
    return rc;
}

static double seconds_since(int64_t start_ms)
{
    return (double)(tlsock_now_ms() - start_ms) / 1000.0;
}

static void test_ten_thousand_connections(void **state)
{
    struct parent *pa = *state;
    struct tlsock_uv_opts opts = TLSOCK_UV_OPTS_INIT;
    const struct msg *m;
    struct rlimit rl;
    int p2c[2];
    int c2p[2];
    long rss_before;
    long rss_connected;
    int64_t t0;
    int64_t t1;
    int64_t t2;
    int status;

    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < (rlim_t)(CONNS + FD_MARGIN)) {
        print_message("SKIPPED, NOT PASSED: the hard RLIMIT_NOFILE is %llu, below the %d "
                      "descriptors each process needs; raise it (ulimit -Hn) to run this test\n",
                      (unsigned long long)rl.rlim_max, CONNS + FD_MARGIN);
        skipped = true;
        skip();
    }
    rl.rlim_cur = rl.rlim_max != RLIM_INFINITY ? rl.rlim_max : (rlim_t)(4 * CONNS);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);

    /* Fork before any loop or thread exists; flush so that the child repeats no output. */
    assert_int_equal(pipe2(p2c, O_CLOEXEC), 0);
    assert_int_equal(pipe2(c2p, O_CLOEXEC), 0);
    fflush(stdout);
    fflush(stderr);
    pa->child = fork();
    assert_true(pa->child >= 0);
    if (pa->child == 0) {
        close(p2c[1]);
        close(c2p[0]);
        child_main(p2c[0], c2p[1]);
        _exit(2);
    }
    close(p2c[0]);
    close(c2p[1]);
    pa->to_child = p2c[1];
    pa->in.fd = c2p[0];

    /* The harness's loop (and its SIGPIPE watch) only now: the child must not inherit them. */
    void *env_state = NULL;
    assert_int_equal(env_setup(&env_state), 0);
    pa->env = env_state;
    pa->env->extra = (struct env_extra){.close = parent_close, .closed = parent_closed, .arg = pa};
    assert_int_equal(inbox_start(&pa->in, &pa->env->loop, c2p[0], parent_deliver, pa), 0);
    pa->inbox_ready = true;
    pa->conns = calloc(CONNS + FD_MARGIN, sizeof(*pa->conns));
    assert_non_null(pa->conns);
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &pa->ctx), 0);
    opts.handshake_timeout_ms = CONNECT_MS;
    opts.on_connect = server_on_connect;
    opts.on_read = server_on_read;
    opts.on_event = server_on_event;
    opts.on_write = server_on_write;
    opts.on_close = server_on_close;
    opts.on_accept_error = server_on_accept_error;
    opts.user = pa;
    TS_ASSERT_RC(
        tlsock_uv_serve(&pa->env->loop, pa->ctx, "127.0.0.1", 0, BACKLOG, &opts, &pa->server), 0);
    print_message("%s: %d connections, at most %d handshakes at a time\n",
                  tlsock_impl_name(tlsock_ctx_impl(pa->ctx)), CONNS, IN_FLIGHT);
    rss_before = rss_bytes();

    /* Phase 1: all connected and idle at the same time. */
    t0 = tlsock_now_ms();
    assert_int_equal(
        msg_send(pa->to_child, TAG_PORT, tlsock_uv_server_port(pa->server), 0, 0, NULL), 0);
    PHASE_UNTIL(pa, pa->have[TAG_CONNECTED] || pa->in.eof, CONNECT_MS, "connect");
    if (!pa->have[TAG_CONNECTED]) {
        fail_msg("the child exited while connecting");
    }
    m = &pa->got[TAG_CONNECTED];
    if (m->b != 0) {
        fail_msg("%d of %d clients failed to connect; first: %s (%s); server: %d accept errors, "
                 "first: %s",
                 m->b, CONNS, tlsock_err_name(m->c), m->text, pa->accept_errors,
                 pa->first_accept_error);
    }
    assert_int_equal(m->a, CONNS);
    /* The server hands a connection over once it has the client's Finished, just after the
     * client is ready: wait for the last ones. */
    PHASE_UNTIL(pa, pa->live >= CONNS || pa->accept_errors > 0 || pa->bad_events > 0, PHASE_MS,
                "server count");
    if (pa->accept_errors != 0) {
        fail_msg("%d accept errors; first: %s", pa->accept_errors, pa->first_accept_error);
    }
    if (pa->bad_events != 0) {
        fail_msg("%d unexpected events; first: %s", pa->bad_events, pa->first_bad_event);
    }
    assert_int_equal(pa->live, CONNS);
    assert_int_equal(pa->nconns, CONNS);
    t1 = tlsock_now_ms();
    rss_connected = rss_bytes();
    print_message("connected: %.1f s; server RSS %ld -> %ld KiB, %.1f KiB per connection\n",
                  seconds_since(t0), rss_before >> 10, rss_connected >> 10,
                  (double)(rss_connected - rss_before) / 1024.0 / CONNS);

    /* Phase 2: every connection echoes its own message. */
    assert_int_equal(msg_send(pa->to_child, TAG_GO_ECHO, 0, 0, 0, NULL), 0);
    PHASE_UNTIL(pa, pa->have[TAG_ECHOED] || pa->in.eof, PHASE_MS, "echo");
    if (!pa->have[TAG_ECHOED]) {
        fail_msg("the child exited while echoing");
    }
    m = &pa->got[TAG_ECHOED];
    if (m->b != 0 || m->c != 0) {
        fail_msg("echo: %d right, %d wrong, %d client events; first: %s", m->a, m->b, m->c,
                 m->text);
    }
    assert_int_equal(m->a, CONNS);
    assert_int_equal(pa->echoed, (size_t)CONNS * MSG_LEN);
    assert_int_equal(pa->write_errors, 0);
    assert_int_equal(pa->bad_events, 0);
    assert_int_equal(pa->live, CONNS);
    t2 = tlsock_now_ms();
    print_message("echoed: %.1f s\n", (double)(t2 - t1) / 1000.0);

    /* Phase 3: the clients close; every server connection sees close_notify and closes. */
    pa->quitting = true;
    assert_int_equal(msg_send(pa->to_child, TAG_QUIT, 0, 0, 0, NULL), 0);
    PHASE_UNTIL(pa, (pa->live == 0 && pa->have[TAG_DONE]) || pa->in.eof, PHASE_MS, "close");
    if (!pa->have[TAG_DONE]) {
        fail_msg("the child exited without reporting");
    }
    if (pa->bad_events != 0) {
        fail_msg("%d unexpected events; first: %s", pa->bad_events, pa->first_bad_event);
    }
    assert_int_equal(pa->live, 0);
    assert_int_equal(pa->eclosed, CONNS);
    m = &pa->got[TAG_DONE];
    if (m->b != 0) {
        fail_msg("the clients saw %d errors while closing; first: %s%s", m->b,
                 m->c == 1000 ? "SIGPIPE" : tlsock_err_name(m->c), m->text);
    }
    assert_int_equal(m->a, CONNS);
    tlsock_uv_server_close(pa->server, server_closed_cb);
    pa->server = NULL;
    PHASE_UNTIL(pa, pa->server_closed && pa->in.eof, PHASE_MS, "server close");
    print_message("closed: %.1f s; total %.1f s\n", (double)(tlsock_now_ms() - t2) / 1000.0,
                  seconds_since(t0));
    status = reap_child(pa, 10000);
    if (status == -1) {
        fail_msg("the child did not exit");
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* A SIGPIPE in the server fails the harness's teardown. */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ten_thousand_connections, parent_setup,
                                        parent_teardown),
    };

    int failed = cmocka_run_group_tests_name("uv_scale", tests, ts_pki_setup, ts_pki_teardown);

    return failed != 0 ? failed : (skipped ? 77 : 0);
}
