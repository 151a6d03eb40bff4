/*
 * Idle blocking connections keep no record buffers (issue 13, idle memory): between blocking
 * calls, a connection made with tlsock_attach_fd (the path of tlsock_connect and tlsock_accept)
 * gives its implementation's record buffers back, and data still flows after the idle period.
 *
 * Each run makes PAIRS client and server connections over socketpairs (the clients in a thread,
 * the servers in the test's), runs each handshake and a short exchange both ways, and measures
 * the heap in use once every connection is idle (ts_heap_in_use(): glibc's, ASan's or valgrind's
 * count), from a first pair made before, so that what the contexts and the first connection
 * initialise once is left out. Two runs:
 *   - the reference: each session is told by the implementation's own means to release its
 *     buffers (a configure callback setting SSL_MODE_RELEASE_BUFFERS on OpenSSL; GnuTLS frees
 *     its record buffers as records are consumed and has no such setting);
 *   - tlsock as it is.
 * The second may exceed the first by less than SLACK bytes per pair: a record buffer alone is
 * more than 16 KiB (RFC 8446 section 5.1). Then each connection sends AFTER bytes (more than one
 * record) each way, checked byte for byte.
 */
#include "support.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#if TLSOCK_TEST_HAVE_OPENSSL
#include <openssl/ssl.h>
#endif

#define PAIRS 100
#define HELLO 100   /* bytes each way before the connections go idle */
#define AFTER 20000 /* bytes each way after the idle period: a full record and part of another */
#define SLACK 1024  /* bytes per pair of connections tlsock may keep above the reference */

/* One run: its contexts, the socketpairs (0: client end, 1: server end) and the connections. */
struct run {
    struct tlsock_ctx *cctx;
    struct tlsock_ctx *sctx;
    int fds[PAIRS + 1][2];
    struct tlsock_conn *client[PAIRS + 1];
    struct tlsock_conn *server[PAIRS + 1];
};

/* Pairs [from, to) of a run, one side's part, before or after the idle period. */
struct batch {
    struct run *run;
    size_t from;
    size_t to;
    bool after;
    int rc;
    char what[160]; /* the step that failed */
};

/* The reference's configure callback: the implementation's own release (user: its enum). */
static int release_buffers(void *native_session, void *user)
{
#if TLSOCK_TEST_HAVE_OPENSSL
    if ((intptr_t)user == TLSOCK_IMPL_OPENSSL) {
        SSL_set_mode(native_session, SSL_MODE_RELEASE_BUFFERS);
    }
#else
    (void)native_session;
    (void)user;
#endif
    return 0;
}

static int batch_fail(struct batch *b, int rc, const char *what, size_t pair,
                      const struct tlsock_conn *conn)
{
    snprintf(b->what, sizeof(b->what), "%s (pair %zu): %s", what, pair,
             conn != NULL ? tlsock_conn_errmsg(conn) : tlsock_errmsg());
    b->rc = rc;
    return rc;
}

/* Writes @p len bytes of pattern @p seed and reads @p len bytes of pattern @p expect. */
static int exchange(struct batch *b, size_t i, struct tlsock_conn *conn, bool write_first,
                    size_t len, unsigned seed, unsigned expect)
{
    static _Thread_local unsigned char buf[AFTER];
    int rc = 0;

    for (int step = 0; step < 2 && rc == 0; step++) {
        if ((step == 0) == write_first) {
            ts_fill(buf, len, seed);
            rc = tlsock_write(conn, buf, len);
            if (rc != 0) {
                return batch_fail(b, rc, "write", i, conn);
            }
        } else {
            memset(buf, 0, len);
            rc = ts_read_full(conn, buf, len);
            if (rc != 0) {
                return batch_fail(b, rc, "read", i, conn);
            }
            if (!ts_same_pattern(buf, len, expect)) {
                return batch_fail(b, TS_EMISMATCH, "the bytes read differ from those written", i,
                                  conn);
            }
        }
    }
    return 0;
}

/* The client side of a batch: connections over fds[i][0]; writes first. */
static void *client_batch(void *arg)
{
    struct batch *b = arg;
    struct run *r = b->run;
    struct tlsock_opts opts = ts_opts();

    opts.servername = "localhost";
    for (size_t i = b->from; i < b->to && b->rc == 0; i++) {
        unsigned seed = (unsigned)i * 4;
        if (b->after) {
            (void)exchange(b, i, r->client[i], false, AFTER, seed + 2, seed + 1);
            continue;
        }
        int rc = tlsock_attach_fd(r->cctx, r->fds[i][0], &opts, &r->client[i]);
        if (rc != 0) {
            batch_fail(b, rc, "client attach", i, NULL);
        } else if ((rc = tlsock_handshake(r->client[i])) != 0) {
            batch_fail(b, rc, "client handshake", i, r->client[i]);
        } else {
            (void)exchange(b, i, r->client[i], true, HELLO, seed, seed + 3);
        }
    }
    return NULL;
}

/* The server side of a batch, in the test's thread while a thread runs the client side. */
static void run_batch(struct run *r, size_t from, size_t to, bool after)
{
    struct batch cb = {.run = r, .from = from, .to = to, .after = after};
    struct batch sb = cb;
    struct tlsock_opts opts = ts_opts();
    pthread_t thread;

    assert_int_equal(pthread_create(&thread, NULL, client_batch, &cb), 0);
    for (size_t i = from; i < to && sb.rc == 0; i++) {
        unsigned seed = (unsigned)i * 4;
        if (after) {
            (void)exchange(&sb, i, r->server[i], true, AFTER, seed + 1, seed + 2);
            continue;
        }
        int rc = tlsock_attach_fd(r->sctx, r->fds[i][1], &opts, &r->server[i]);
        if (rc != 0) {
            batch_fail(&sb, rc, "server attach", i, NULL);
        } else if ((rc = tlsock_handshake(r->server[i])) != 0) {
            batch_fail(&sb, rc, "server handshake", i, r->server[i]);
        } else {
            (void)exchange(&sb, i, r->server[i], false, HELLO, seed + 3, seed);
        }
    }
    if (sb.rc != 0) {
        /* The client may wait for this side: its sockets end, so it fails instead of waiting. */
        for (size_t i = from; i < to; i++) {
            shutdown(r->fds[i][1], SHUT_RDWR);
        }
    }
    assert_int_equal(pthread_join(thread, NULL), 0);
    if (sb.rc != 0 || cb.rc != 0) {
        print_message("server: %s\nclient: %s\n", sb.what, cb.what);
    }
    TS_ASSERT_RC(sb.rc, 0);
    TS_ASSERT_RC(cb.rc, 0);
}

static void run_close(struct run *r)
{
    for (size_t i = 0; i <= PAIRS; i++) {
        tlsock_close(r->client[i]);
        tlsock_close(r->server[i]);
        close(r->fds[i][0]);
        close(r->fds[i][1]);
    }
    tlsock_ctx_free(r->cctx);
    tlsock_ctx_free(r->sctx);
}

/*
 * One run, with the implementations' own release (@p reference) or not: the heap each pair of
 * idle connections holds; the data after the idle period checked.
 */
static double run_pairs(bool reference)
{
    static struct run r;

    memset(&r, 0, sizeof(r));
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &r.sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &r.cctx), 0);
    if (reference) {
        TS_ASSERT_RC(tlsock_ctx_set_configure(r.sctx, NULL, release_buffers,
                                              (void *)(intptr_t)tlsock_ctx_impl(r.sctx)),
                     0);
        TS_ASSERT_RC(tlsock_ctx_set_configure(r.cctx, NULL, release_buffers,
                                              (void *)(intptr_t)tlsock_ctx_impl(r.cctx)),
                     0);
    }
    for (size_t i = 0; i <= PAIRS; i++) {
        r.fds[i][0] = r.fds[i][1] = -1;
    }
    for (size_t i = 0; i <= PAIRS; i++) {
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, r.fds[i]), 0);
    }
    run_batch(&r, 0, 1, false);
    size_t base = ts_heap_in_use();
    run_batch(&r, 1, PAIRS + 1, false);
    size_t idle = ts_heap_in_use();
    run_batch(&r, 0, PAIRS + 1, true);
    run_close(&r);
    return ((double)idle - (double)base) / PAIRS;
}

static void test_idle_connections_release_buffers(void **state)
{
    (void)state;
    double reference = run_pairs(true);
    double tlsock = run_pairs(false);

    print_message("heap per pair of idle connections: %.0f bytes, %.0f with the "
                  "implementations' own release\n",
                  tlsock, reference);
    assert_true(reference > 0);
    assert_true(tlsock < reference + SLACK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idle_connections_release_buffers),
    };
    return cmocka_run_group_tests(tests, ts_pki_setup, ts_pki_teardown);
}
