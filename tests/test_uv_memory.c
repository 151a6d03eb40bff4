/*
 * Memory follows the data: a peer that pipelines small requests and never reads the answers
 * must not make a tlsock_uv server grow without bound (house style rule 26).
 *
 * The server answers every REQ_LEN-byte request with a RESP_LEN-byte write. The client, a
 * blocking tlsock connection in a thread, writes up to REQUESTS requests and never reads. Once
 * the server's write queue went over its limit, the test watches the server for QUIET_MS, then
 * cuts the client's socket and the client leaves. The test asserts:
 *   - backpressure: the client was still sending when the server's queue filled, and from then
 *     on the server read nothing more;
 *   - the server connection's write queue (tlsock_uv_conn_write_queue_size()) never went past
 *     the queue limit plus the answers to one read;
 *   - the process heap (mallinfo2: every arena) grew by about the limit at most, and came back
 *     to its baseline after the client left. Under AddressSanitizer mallinfo2 does not see the
 *     allocations: those assertions are skipped with a message, the others still run.
 *
 * No outcome depends on how fast threads run (valgrind runs one at a time): the client never
 * takes a slow write for the server's backpressure, the test reads it off the server. And both
 * ends' socket buffers are small and fixed, so that the server's queue, not the kernel's
 * autotuned buffers (tens of MiB on loopback), decides how much the client gets through.
 */
#include "support/uv_harness.h"

#include <malloc.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
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
/* SO_SNDBUF and SO_RCVBUF of the server's sockets and SO_SNDBUF of the client's (the kernel
 * doubles them): a few hundred KiB in flight, wherever the kernel's autotuning would go. */
#define SOCKET_BUFFER (64 << 10)
/* How long the server must read nothing once its queue is full. Only how surely a server that
 * keeps reading is caught depends on it: one that stops passes whatever the machine's speed. */
#define QUIET_MS      200
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
    atomic_bool cut; /* the test shut the socket down */
    atomic_int end;  /* enum client_end */
    atomic_long sent;
    int rc;
    char msg[TLSOCK__ERRMSG_SIZE];
    struct ts_gate leave;
} client;

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
        /* Only bounds a test gone wrong: the test cuts the socket of a client it saw blocked. */
        rc = tlsock_conn_set_timeout(conn, WAIT_MS);
    }
    if (rc == 0) {
        rc = tlsock_handshake(conn);
    }
    for (long i = 0; rc == 0 && i < client.requests; i++) {
        rc = tlsock_write(conn, req, sizeof(req));
        if (rc == 0) {
            atomic_fetch_add(&client.sent, 1);
        }
    }
    if (rc != 0 && atomic_load(&client.cut)) {
        end = CLIENT_CUT_OFF;
    } else if (rc != 0) {
        end = CLIENT_FAILED;
        client.rc = rc;
        snprintf(client.msg, sizeof(client.msg), "%s",
                 conn != NULL ? tlsock_conn_errmsg(conn) : tlsock_errmsg());
    }
    atomic_store(&client.end, end);
    env_wake(client.env);
    /* Hold the connection while the test measures the server; then leave. */
    (void)ts_gate_wait(&client.leave, WAIT_MS);
    tlsock_close(conn);
    close(client.fd);
}

/* ---- the server: one small answer per request ------------------------------------------------ */

static struct {
    struct peer *p;
    size_t limit;
    long answered;
    size_t max_queue;
    bool went_quiet; /* with its queue full, it read nothing for QUIET_MS */
    size_t heap_base;
    size_t heap_peak;
    uv_timer_t sampler;
    int listeners_sized;
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

static bool queue_full(void)
{
    return srv_side.max_queue > srv_side.limit;
}

static bool client_ended_or_queue_full(struct env *env)
{
    return client_ended(env) || queue_full();
}

/*
 * Sets the buffers of @p s's listening socket, which every client's socket inherits. Before any
 * client came, the listener is the only TCP handle on the loop bound to the server's port.
 */
static void size_listener_buffers(uv_handle_t *handle, void *arg)
{
    struct srv *s = arg;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    int size = SOCKET_BUFFER;

    if (handle->type != UV_TCP ||
        uv_tcp_getsockname((uv_tcp_t *)handle, (struct sockaddr *)&ss, &len) != 0 ||
        ss.ss_family != AF_INET || ntohs(((struct sockaddr_in *)&ss)->sin_port) != s->port) {
        return;
    }
    assert_int_equal(uv_send_buffer_size(handle, &size), 0);
    size = SOCKET_BUFFER;
    assert_int_equal(uv_recv_buffer_size(handle, &size), 0);
    srv_side.listeners_sized++;
}

/*
 * Runs the loop until the server read nothing for QUIET_MS; false if it kept reading for
 * WAIT_MS. Its queue may drain into the kernel's buffers and let it read again (below half the
 * limit), but once those are full too the server stops for good, however long the client tries.
 */
static bool wait_server_quiet(struct env *env)
{
    for (int i = 0; i < WAIT_MS / QUIET_MS; i++) {
        size_t rx = srv_side.p->rx_len;

        run_for(env, QUIET_MS);
        if (srv_side.p->rx_len == rx) {
            return true;
        }
    }
    return false;
}

/* One client pipelining @p requests; returns once it left and the server closed its side. */
static void run_client(struct env *env, struct srv *s, long requests, bool measure)
{
    srv_side.p = NULL;
    srv_side.answered = 0;
    srv_side.max_queue = 0;
    srv_side.went_quiet = false;
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
    thread_start(env, pipeliner, NULL);
    RUN_UNTIL(env, client_ended_or_queue_full(env), WAIT_MS);
    if (queue_full()) {
        srv_side.went_quiet = wait_server_quiet(env);
    }
    if (measure) {
        sample_cb(&srv_side.sampler);
        uv_close((uv_handle_t *)&srv_side.sampler, NULL);
    }
    if (!client_ended(env)) {
        /* Its write fails at once (EPIPE): the client leaves, its unread answers reset the
         * connection, and the server closes its side. */
        atomic_store(&client.cut, true);
        assert_int_equal(shutdown(client.fd, SHUT_RDWR), 0);
        RUN_UNTIL(env, client_ended(env), WAIT_MS);
    }
    ts_gate_open(&client.leave);
    RUN_UNTIL(env, conns_closed(env), WAIT_MS);
    ts_gate_destroy(&client.leave);
}

static void never_reading_peer(struct env *env, size_t queue_limit)
{
    struct tlsock_uv_opts extra = base_opts(NULL);
    size_t limit = queue_limit != 0 ? queue_limit : DEFAULT_LIMIT;
    struct srv *s = NULL;

    extra.queue_limit = queue_limit;
    make_contexts(env);
    s = serve_ok(env, 0, env->sctx, &responder, &extra);
    srv_side.limit = limit;
    srv_side.listeners_sized = 0;
    uv_walk(&env->loop, size_listener_buffers, s);
    assert_int_equal(srv_side.listeners_sized, 1);

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
    print_message("limit %zu: client sent %ld of %d requests; server answered %ld; largest "
                  "queue %zu; heap %zu -> peak %zu -> after %zu\n",
                  limit, sent, REQUESTS, srv_side.answered, srv_side.max_queue, srv_side.heap_base,
                  srv_side.heap_peak, heap_after);
    /* Backpressure: the queue filled while the client was still sending, then the server read
     * nothing more; the client, cut off, did not send everything. */
    assert_true(queue_full());
    assert_true(srv_side.went_quiet);
    assert_int_equal(atomic_load(&client.end), CLIENT_CUT_OFF);
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
