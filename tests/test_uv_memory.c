/*
 * Memory follows the data: a peer that pipelines small requests and never reads the answers
 * must not make a tlsock_uv server grow without bound (house style rule 26).
 *
 * The server answers every REQ_LEN-byte request with a RESP_LEN-byte write. The client, a
 * blocking tlsock connection in a thread, writes up to REQUESTS requests and never reads. Once the
 * server leaves the client's bytes unread in its socket, the test tells the client to stop, and
 * it leaves with a reset. The test asserts:
 *   - backpressure: the server stopped reading while the client was still sending, with its
 *     write queue over half the limit (the documented rule), so the client did not get all its
 *     requests through;
 *   - the server connection's write queue (tlsock_uv_conn_write_queue_size()) never went past
 *     the queue limit plus the answers to one read;
 *   - the process heap (mallinfo2: every arena) grew by about the limit at most, and came back
 *     to its baseline after the client left. Under AddressSanitizer mallinfo2 does not see the
 *     allocations: those assertions are skipped with a message, the others still run.
 *
 * No outcome depends on how fast threads run (valgrind runs one at a time): that the server
 * stopped reading is read off its socket (bytes waiting there that a turn of the loop did not
 * take), never inferred from a slow write. And all socket buffers are small and fixed, so that
 * the server's queue, not the kernel's autotuned buffers (tens of MiB on loopback), decides how
 * much the client gets through.
 */
#include "support/uv_harness.h"

#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define HEAP_MEASURABLE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HEAP_MEASURABLE 0
#endif
#endif
#ifndef HEAP_MEASURABLE
#define HEAP_MEASURABLE 1
#endif

#define REQUESTS 100000
#define REQ_LEN  256
#define RESP_LEN 256
/* SO_SNDBUF and SO_RCVBUF of every socket (the kernel doubles them): a few hundred KiB in
 * flight, wherever the kernel's autotuning would take them. */
#define SOCKET_BUFFER (64 << 10)
/* How often the test looks at the server's socket. */
#define LOOK_MS 50
/* A request's record on the wire, at most (TLS 1.2 or 1.3, AEAD). */
#define RECORD_MAX    (REQ_LEN + 64)
#define SAMPLE_MS     5
#define DEFAULT_LIMIT (512u << 10) /* the documented default of opts.queue_limit */
/* The answers to what one read delivers (64 KiB of ciphertext, plus a record carried over),
 * each with the request record and the harness's write_arg: what a queue may add while the
 * read that crosses the limit is being answered. */
#define ONE_READ_SLACK ((80u << 10) / REQ_LEN * (RESP_LEN + 160))
/* Besides the queue: the two sessions' record buffers, the loop's read buffer and the
 * harness's bookkeeping. */
#define HEAP_SLACK (384u << 10)
/* What may stay after the client left: allocator and TLS caches. */
#define HEAP_RETURN_SLACK (64u << 10)

static const unsigned char response[RESP_LEN];

/* ---- the never-reading client (a thread) ----------------------------------------------------- */

enum client_end { CLIENT_RUNNING, CLIENT_SENT_ALL, CLIENT_CUT_OFF, CLIENT_FAILED };

static struct {
    struct env *env;
    struct tlsock_ctx *ctx;
    int fd; /* connected by the test; the client closes it when it leaves */
    long requests;
    atomic_bool cut; /* the test told it to stop writing and leave */
    atomic_int end;  /* enum client_end */
    atomic_long sent;
    int rc;
    char msg[TLSOCK__ERRMSG_SIZE];
    struct ts_gate leave;
} client;

/*
 * Waits until a request fits in the socket (POLLOUT: a third of its buffer is free, more than a
 * record), so that no write blocks; false once the test cut the client off. Bounded: after
 * WAIT_MS the write goes ahead and fails by its own timeout.
 */
static bool wait_writable(void)
{
    struct pollfd pfd = {.fd = client.fd, .events = POLLOUT};

    for (int i = 0; i < WAIT_MS / LOOK_MS; i++) {
        if (atomic_load(&client.cut)) {
            return false;
        }
        if (poll(&pfd, 1, LOOK_MS) != 0) {
            return true;
        }
    }
    return true;
}

/*
 * Leaves as a peer that gives up does: a reset (SO_LINGER 0), and never a FIN first. After a FIN
 * a reset makes the kernel answer the server's next write(2) with EPIPE and SIGPIPE, which the
 * driver's ignored SIGPIPE covers (src/drive/uv/state.c) but the harness counts as a violation.
 */
static void leave_abruptly(struct tlsock_conn *conn)
{
    struct linger no_linger = {.l_onoff = 1, .l_linger = 0};

    (void)setsockopt(client.fd, SOL_SOCKET, SO_LINGER, &no_linger, sizeof(no_linger));
    (void)tlsock_conn_set_timeout(conn, 1); /* its close_notify does not fit: give up at once */
    tlsock_close(conn);
    close(client.fd);
}

static void pipeliner(void *arg)
{
    unsigned char req[REQ_LEN];
    struct tlsock_opts o = ts_opts();
    struct tlsock_conn *conn = NULL;
    int end = CLIENT_SENT_ALL;
    int rc;

    (void)arg;
    memset(req, 'q', sizeof(req));
    o.servername = "localhost";
    rc = tlsock_attach_fd(client.ctx, client.fd, &o, &conn);
    if (rc == 0) {
        rc = tlsock_conn_set_timeout(conn, WAIT_MS); /* bounds a test gone wrong */
    }
    if (rc == 0) {
        rc = tlsock_handshake(conn);
    }
    for (long i = 0; rc == 0 && i < client.requests; i++) {
        if (!wait_writable()) {
            end = CLIENT_CUT_OFF;
            break;
        }
        rc = tlsock_write(conn, req, sizeof(req));
        if (rc == 0) {
            atomic_fetch_add(&client.sent, 1);
        }
    }
    if (rc != 0) {
        end = CLIENT_FAILED;
        client.rc = rc;
        snprintf(client.msg, sizeof(client.msg), "%s",
                 conn != NULL ? tlsock_conn_errmsg(conn) : tlsock_errmsg());
    }
    atomic_store(&client.end, end);
    env_wake(client.env);
    /* Hold the connection while the test measures the server; then leave. */
    (void)ts_gate_wait(&client.leave, WAIT_MS);
    if (end == CLIENT_CUT_OFF) {
        leave_abruptly(conn);
    } else {
        tlsock_close(conn);
        close(client.fd);
    }
}

/* ---- the server: one small answer per request ------------------------------------------------ */

static struct {
    struct peer *p;
    long answered;
    size_t max_queue;
    bool paused;           /* it left bytes unread through turns of its loop */
    size_t queue_at_pause; /* its write queue then */
    size_t heap_base;
    size_t heap_peak;
    uv_timer_t sampler;
} srv_side;

static size_t heap_now(void)
{
    return mallinfo2().uordblks;
}

static void answer(struct peer *p, const unsigned char *data, size_t len)
{
    (void)data;
    (void)len;
    srv_side.p = p;
    while (srv_side.answered < (long)(p->rx_len / REQ_LEN)) {
        if (peer_write(p, response, sizeof(response), false) != 0) {
            return;
        }
        srv_side.answered++;
        size_t q = tlsock_uv_conn_write_queue_size(p->conn);
        srv_side.max_queue = q > srv_side.max_queue ? q : srv_side.max_queue;
    }
}

static const struct hooks responder = {
    .on_read = answer,
    .on_event = close_on_event,
    .discard_rx = true,
};

static void sample_cb(uv_timer_t *timer)
{
    size_t h = heap_now();

    (void)timer;
    srv_side.heap_peak = h > srv_side.heap_peak ? h : srv_side.heap_peak;
}

static bool client_ended(struct env *env)
{
    (void)env;
    return atomic_load(&client.end) != CLIENT_RUNNING;
}

static bool server_answered_all(struct env *env)
{
    (void)env;
    return srv_side.answered == atomic_load(&client.sent);
}

/* Finds the server's socket of the client's connection: bound to the server's port, with a peer. */
struct socket_search {
    uint16_t port;
    bool listener; /* the listening socket, else the client's connection */
    int fd;
};

static void find_socket(uv_handle_t *handle, void *arg)
{
    struct socket_search *search = arg;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_os_fd_t fd = -1;

    if (handle->type != UV_TCP || uv_is_closing(handle) ||
        uv_tcp_getsockname((uv_tcp_t *)handle, (struct sockaddr *)&ss, &len) != 0 ||
        ss.ss_family != AF_INET || ntohs(((struct sockaddr_in *)&ss)->sin_port) != search->port) {
        return;
    }
    len = sizeof(ss);
    if ((uv_tcp_getpeername((uv_tcp_t *)handle, (struct sockaddr *)&ss, &len) != 0) !=
            search->listener ||
        uv_fileno(handle, &fd) != 0) {
        return;
    }
    assert_int_equal(search->fd, -1); /* only one */
    search->fd = fd;
}

static int server_socket(struct env *env, uint16_t port, bool listener)
{
    struct socket_search search = {.port = port, .listener = listener, .fd = -1};

    uv_walk(&env->loop, find_socket, &search);
    return search.fd;
}

/* Bytes waiting in socket @p fd, not read yet. */
static int socket_waiting(int fd)
{
    int waiting = 0;

    assert_int_equal(ioctl(fd, FIONREAD, &waiting), 0);
    return waiting;
}

/*
 * Runs the loop until the client ended, or the server paused reading: two requests' records or
 * more waited in its socket, and turns of its loop delivered nothing. While the loop reads at
 * all, its next turn reads whatever waits (it polls, level-triggered) and delivers every whole
 * record. A slow thread can only make this take longer.
 */
static void run_until_client_ended_or_paused(struct env *env, struct srv *s)
{
    int fd = -1;

    for (int i = 0; i < WAIT_MS / LOOK_MS && !client_ended(env); i++) {
        size_t rx = 0;
        size_t queue = 0;
        int waiting = 0;

        if (fd < 0 && srv_side.p != NULL) {
            fd = server_socket(env, s->port, false);
            assert_true(fd >= 0);
        }
        if (fd >= 0) {
            waiting = socket_waiting(fd);
            rx = srv_side.p->rx_len;
            /* As the last turn left it: what decides whether the next turn reads. */
            queue = tlsock_uv_conn_write_queue_size(srv_side.p->conn);
            srv_side.max_queue = queue > srv_side.max_queue ? queue : srv_side.max_queue;
        }
        run_for(env, LOOK_MS);
        if (waiting >= (int)(2 * RECORD_MAX) && srv_side.p->rx_len == rx) {
            srv_side.paused = true;
            srv_side.queue_at_pause = queue;
            return;
        }
    }
    RUN_UNTIL(env, client_ended(env), WAIT_MS);
}

/* One client pipelining @p requests; returns once it left and the server closed its side. */
static void run_client(struct env *env, struct srv *s, long requests, bool measure)
{
    int size = SOCKET_BUFFER;

    srv_side.p = NULL;
    srv_side.answered = 0;
    srv_side.max_queue = 0;
    srv_side.paused = false;
    srv_side.queue_at_pause = 0;
    client.env = env;
    client.ctx = env->cctx;
    client.requests = requests;
    atomic_store(&client.cut, false);
    atomic_store(&client.end, CLIENT_RUNNING);
    atomic_store(&client.sent, 0);
    ts_gate_init(&client.leave);
    srv_side.heap_base = heap_now();
    srv_side.heap_peak = srv_side.heap_base;
    if (measure) {
        uv_timer_init(&env->loop, &srv_side.sampler);
        uv_timer_start(&srv_side.sampler, sample_cb, SAMPLE_MS, SAMPLE_MS);
    }
    /* Loopback connects complete in the kernel: the loop accepts once it runs. */
    assert_int_equal(ts_raw_connect(env->host, s->port, SOCKET_BUFFER, &client.fd), 0);
    assert_int_equal(setsockopt(client.fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)), 0);
    thread_start(env, pipeliner, NULL);
    run_until_client_ended_or_paused(env, s);
    if (atomic_load(&client.end) == CLIENT_SENT_ALL) {
        /* Everything the client sent is answered before it leaves. */
        RUN_UNTIL(env, server_answered_all(env), WAIT_MS);
    }
    if (measure) {
        sample_cb(&srv_side.sampler);
        uv_close((uv_handle_t *)&srv_side.sampler, NULL);
    }
    if (!client_ended(env)) {
        /* It stops writing, then resets the connection: the server closes its side. */
        atomic_store(&client.cut, true);
        RUN_UNTIL(env, client_ended(env), WAIT_MS);
    }
    ts_gate_open(&client.leave);
    RUN_UNTIL(env, conns_closed(env), WAIT_MS);
    ts_gate_destroy(&client.leave);
}

/* Sets the buffers of the listening socket, which every client's socket inherits. */
static void size_listener_buffers(struct env *env, struct srv *s)
{
    int fd = server_socket(env, s->port, true);
    int size = SOCKET_BUFFER;

    assert_true(fd >= 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)), 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)), 0);
}

static void never_reading_peer(struct env *env, size_t queue_limit)
{
    struct tlsock_uv_opts extra = base_opts(NULL);
    size_t limit = queue_limit != 0 ? queue_limit : DEFAULT_LIMIT;
    struct srv *s = NULL;

    extra.queue_limit = queue_limit;
    make_contexts(env);
    s = serve_ok(env, 0, env->sctx, &responder, &extra);
    size_listener_buffers(env, s);

    /* A first short client warms up what stays for the process (contexts, the loop's state). */
    run_client(env, s, 8, false);
    assert_int_equal(atomic_load(&client.end), CLIENT_SENT_ALL);
    assert_int_equal(srv_side.answered, 8);

    run_client(env, s, REQUESTS, true);
    size_t heap_after = heap_now();
    long sent = atomic_load(&client.sent);

    if (atomic_load(&client.end) == CLIENT_FAILED) {
        fail_msg("client: %s: %s", ts_rc_name(client.rc), client.msg);
    }
    if (atomic_load(&client.end) == CLIENT_SENT_ALL) {
        fail_msg("no backpressure: the client sent all %d requests", REQUESTS);
    }
    print_message("limit %zu: client sent %ld of %d requests; server answered %ld, paused "
                  "reading with %zu bytes queued; largest queue %zu; heap %zu -> peak %zu -> "
                  "after %zu\n",
                  limit, sent, REQUESTS, srv_side.answered, srv_side.queue_at_pause,
                  srv_side.max_queue, srv_side.heap_base, srv_side.heap_peak, heap_after);
    /* Backpressure: the server paused reading while the client was still sending (cut off, it
     * did not send everything), because its queue was over the limit (it resumes below half). */
    assert_true(srv_side.paused);
    assert_int_equal(atomic_load(&client.end), CLIENT_CUT_OFF);
    assert_true(srv_side.queue_at_pause > limit / 2);
    assert_true(sent < REQUESTS);
    assert_true(srv_side.answered > 0);
    assert_true(srv_side.answered < REQUESTS);
    /* It stopped within one read of crossing the limit. */
    assert_true(srv_side.max_queue <= limit + ONE_READ_SLACK);
    if (!HEAP_MEASURABLE) {
        print_message("heap assertions skipped: AddressSanitizer's allocator is not what "
                      "mallinfo2() measures\n");
    } else if (srv_side.heap_base == 0) {
        print_message("heap assertions skipped: mallinfo2() sees no allocation (another "
                      "allocator, such as valgrind's, is in use)\n");
    } else {
        assert_true(srv_side.heap_peak - srv_side.heap_base <= 3 * limit / 2 + HEAP_SLACK);
        assert_true(heap_after <= srv_side.heap_base + HEAP_RETURN_SLACK);
    }
    server_close(s);
    RUN_UNTIL(env, all_closed(env), WAIT_MS);
    assert_no_anomaly(env);
}

static void test_never_reading_peer_default_limit(void **state)
{
    never_reading_peer(*state, 0);
}

static void test_never_reading_peer_small_limit(void **state)
{
    never_reading_peer(*state, 64u << 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_never_reading_peer_default_limit, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_never_reading_peer_small_limit, env_setup,
                                        env_teardown),
    };

    return cmocka_run_group_tests_name("uv_memory", tests, ts_pki_setup, ts_pki_teardown);
}
