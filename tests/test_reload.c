/*
 * Reloading a server's context without a restart: tlsock_listener_set_ctx() and
 * tlsock_uv_server_set_ctx(). New handshakes use the new context, live connections keep theirs
 * (and the old certificate), the old context goes with its last connection (its reference count,
 * read through tlsock__ctx_refs()), bad contexts and arguments are refused without a change, and
 * swapping many times while clients connect fails no handshake. Runs across the matrix.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "support.h"

#include "core/core.h"

#if TLSOCK_TEST_HAVE_UV
#include "uv_harness.h"
#endif

#define CN_B       "tlsock-reload-b"
#define MAX_ECHO   4
#define LOAD_CONNS 60
/* The longest a client waits for the swapper's next swap. */
#define SWAP_WAIT_MS 10000
#define MSG          "reload ping"

static struct tlsock__pem_pair leaf_b;

static int group_setup(void **state)
{
    int rc = ts_pki_setup(state);

    if (rc == 0) {
        rc = ts_leaf_make(&ts_pki.ca, CN_B, TS_SERVER_HOSTS, TLSOCK__EKU_SERVER, &leaf_b);
    }
    return rc;
}

static int group_teardown(void **state)
{
    tlsock__pem_pair_free(&leaf_b);
    return ts_pki_teardown(state);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Which of the two certificates a client saw: 'A', 'B' or '?' (anything else). */
static char cert_seen(const char *peer_subject)
{
    if (strstr(peer_subject, TS_SERVER_CN) != NULL) {
        return 'A';
    }
    return strstr(peer_subject, CN_B) != NULL ? 'B' : '?';
}

static char conn_cert(struct tlsock_conn *conn)
{
    const struct tlsock_info *info = NULL;

    return tlsock_conn_info(conn, &info) == 0 ? cert_seen(info->peer_subject) : '?';
}

/* A bad swap changes nothing: NULL arguments, a client context, a server without a certificate. */
static void assert_bad_contexts_refused(int (*set)(void *obj, struct tlsock_ctx *ctx), void *obj)
{
    struct tlsock_ctx *client = NULL;
    struct tlsock_ctx *no_cert = NULL;
    struct tlsock_ctx *server = NULL;

    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &client), 0);
    TS_ASSERT_RC(ts_server_ctx_new(NULL, &no_cert), 0);
    TS_ASSERT_RC(ts_server_ctx_new(&leaf_b, &server), 0);
    TS_ASSERT_RC(set(NULL, server), TLSOCK_EINVAL);
    TS_ASSERT_RC(set(obj, NULL), TLSOCK_EINVAL);
    TS_ASSERT_RC(set(obj, client), TLSOCK_EINVAL);
    TS_ASSERT_CONTAINS(tlsock_errmsg(), "needs a server context");
    TS_ASSERT_RC(set(obj, no_cert), TLSOCK_ECONFIG);
    /* Nobody took a reference on what was refused. */
    assert_int_equal(tlsock__ctx_refs(client), 1);
    assert_int_equal(tlsock__ctx_refs(no_cert), 1);
    assert_int_equal(tlsock__ctx_refs(server), 1);
    tlsock_ctx_free(server);
    tlsock_ctx_free(no_cert);
    tlsock_ctx_free(client);
}

/* ---- the blocking listener ------------------------------------------------------------------- */

struct echo {
    pthread_t tid;
    struct tlsock_conn *conn;
    int rc; /* how the echo ended: TLSOCK_ECLOSED when the client closed */
};

/* Accepts `expect` clients; each one is echoed in a thread of its own, or in turn (`serial`). */
struct blk_server {
    struct tlsock_listener *lis;
    pthread_t tid;
    int expect;
    bool serial;
    int accept_rc;
    int accepted;
    struct echo echo[MAX_ECHO];
    int serial_failures;
};

static int echo_until_closed(struct tlsock_conn *conn)
{
    char buf[256];
    size_t n = 0;
    int rc = 0;

    for (int i = 0; i < 1000 && rc == 0; i++) {
        rc = tlsock_read(conn, buf, sizeof(buf), &n);
        if (rc == 0) {
            rc = tlsock_write(conn, buf, n);
        }
    }
    return rc;
}

static void *echo_thread(void *arg)
{
    struct echo *e = arg;

    e->rc = echo_until_closed(e->conn);
    tlsock_close(e->conn);
    e->conn = NULL;
    return NULL;
}

static void *accept_thread(void *arg)
{
    struct blk_server *bs = arg;
    struct tlsock_opts opts = ts_opts();

    for (int i = 0; i < bs->expect; i++) {
        struct tlsock_conn *conn = NULL;
        bs->accept_rc = tlsock_accept(bs->lis, &opts, &conn);
        if (bs->accept_rc != 0) {
            break;
        }
        bs->accepted++;
        if (bs->serial) {
            if (echo_until_closed(conn) != TLSOCK_ECLOSED) {
                bs->serial_failures++;
            }
            tlsock_close(conn);
        } else if (i < MAX_ECHO) {
            bs->echo[i].conn = conn;
            if (pthread_create(&bs->echo[i].tid, NULL, echo_thread, &bs->echo[i]) != 0) {
                bs->echo[i].conn = NULL;
                tlsock_close(conn);
                bs->accept_rc = TS_ESETUP;
                break;
            }
        } else {
            tlsock_close(conn);
        }
    }
    return NULL;
}

static void blk_start(struct blk_server *bs, struct tlsock_ctx *ctx, int expect, bool serial)
{
    memset(bs, 0, sizeof(*bs));
    bs->expect = expect;
    bs->serial = serial;
    TS_ASSERT_RC(tlsock_listen(ctx, "127.0.0.1", 0, 0, &bs->lis), 0);
    assert_int_equal(pthread_create(&bs->tid, NULL, accept_thread, bs), 0);
}

static void blk_join_echo(struct echo *e)
{
    if (e->tid != 0) {
        pthread_join(e->tid, NULL);
        e->tid = 0;
    }
}

static void blk_stop(struct blk_server *bs)
{
    pthread_join(bs->tid, NULL);
    for (int i = 0; i < MAX_ECHO; i++) {
        blk_join_echo(&bs->echo[i]);
    }
    tlsock_listener_close(bs->lis);
    bs->lis = NULL;
}

static struct tlsock_conn *blk_client(struct tlsock_ctx *cctx, struct blk_server *bs)
{
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;

    TS_ASSERT_RC(tlsock_connect(cctx, "127.0.0.1", tlsock_listener_port(bs->lis), &opts, &conn), 0);
    return conn;
}

/* The connection still carries data both ways. */
static void assert_echoes(struct tlsock_conn *conn)
{
    char buf[sizeof(MSG)] = "";

    TS_ASSERT_RC(tlsock_write(conn, MSG, sizeof(MSG)), 0);
    TS_ASSERT_RC(ts_read_full(conn, buf, sizeof(MSG)), 0);
    assert_memory_equal(buf, MSG, sizeof(MSG));
}

static int listener_set(void *obj, struct tlsock_ctx *ctx)
{
    return tlsock_listener_set_ctx(obj, ctx);
}

static void test_listener_swap(void **state)
{
    struct tlsock_ctx *a = NULL;
    struct tlsock_ctx *b = NULL;
    struct tlsock_ctx *cctx = NULL;
    struct tlsock_conn *old_conn = NULL;
    struct tlsock_conn *new_conn = NULL;
    struct tlsock_conn *third = NULL;
    struct blk_server bs;

    (void)state;
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &a), 0);
    TS_ASSERT_RC(ts_server_ctx_new(&leaf_b, &b), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &cctx), 0);
    blk_start(&bs, a, 3, false);
    assert_int_equal(tlsock__ctx_refs(a), 2); /* the test's and the listener's */

    old_conn = blk_client(cctx, &bs);
    assert_int_equal(conn_cert(old_conn), 'A');
    assert_int_equal(tlsock__ctx_refs(a), 3); /* ... and the accepted connection's */

    TS_ASSERT_RC(tlsock_listener_set_ctx(bs.lis, b), 0);
    assert_int_equal(tlsock__ctx_refs(a), 2); /* the listener let go of it */
    assert_int_equal(tlsock__ctx_refs(b), 2);
    new_conn = blk_client(cctx, &bs);
    assert_int_equal(conn_cert(new_conn), 'B');
    assert_int_equal(tlsock__ctx_refs(b), 3);

    /* The live connection keeps its context and its certificate. */
    assert_echoes(old_conn);
    assert_int_equal(conn_cert(old_conn), 'A');
    assert_echoes(new_conn);

    /* Refused swaps change nothing: the next client still gets B. */
    assert_bad_contexts_refused(listener_set, bs.lis);
    third = blk_client(cctx, &bs);
    assert_int_equal(conn_cert(third), 'B');

    /* The old context goes with its last connection: only the test's reference is left. */
    tlsock_close(old_conn);
    blk_join_echo(&bs.echo[0]);
    TS_ASSERT_RC(bs.echo[0].rc, TLSOCK_ECLOSED);
    assert_int_equal(tlsock__ctx_refs(a), 1);
    tlsock_close(new_conn);
    tlsock_close(third);
    blk_stop(&bs);
    TS_ASSERT_RC(bs.accept_rc, 0);
    assert_int_equal(bs.accepted, 3);
    assert_int_equal(tlsock__ctx_refs(b), 1);
    tlsock_ctx_free(cctx);
    tlsock_ctx_free(b);
    tlsock_ctx_free(a);
}

/*
 * Waits (bounded) until the swapper counting in *@p swaps has swapped once more; false if it did
 * not. Clients wait so before each few handshakes: a loaded machine may leave the swapper
 * unscheduled for as long as many handshakes take, and all of them would see one context.
 */
static bool next_swap(atomic_int *swaps)
{
    int before = atomic_load(swaps);

    for (int i = 0; i < SWAP_WAIT_MS && atomic_load(swaps) == before; i++) {
        sleep_ms(1);
    }
    return atomic_load(swaps) != before;
}

struct load_client {
    struct tlsock_ctx *cctx;
    uint16_t port;
    atomic_int *swaps; /* the swapper's count */
    int done;
    int failures;
    int seen_a;
    int seen_b;
    atomic_bool finished;
};

static void *load_client_thread(void *arg)
{
    struct load_client *lc = arg;
    struct tlsock_opts opts = ts_opts();

    for (int i = 0; i < LOAD_CONNS; i++) {
        struct tlsock_conn *conn = NULL;
        char buf[sizeof(MSG)];
        char seen = '?';

        if (i % 4 == 0 && !next_swap(lc->swaps)) {
            print_error("client %d: the swapper did not swap\n", i);
            lc->failures++;
        }
        int rc = tlsock_connect(lc->cctx, "127.0.0.1", lc->port, &opts, &conn);

        if (rc == 0) {
            seen = conn_cert(conn);
            rc = tlsock_write(conn, MSG, sizeof(MSG));
        }
        if (rc == 0) {
            rc = ts_read_full(conn, buf, sizeof(MSG));
        }
        if (rc != 0 || seen == '?') {
            print_error("client %d: %s (%s), saw %c\n", i, ts_rc_name(rc), tlsock_errmsg(), seen);
            lc->failures++;
        }
        lc->seen_a += seen == 'A';
        lc->seen_b += seen == 'B';
        lc->done++;
        tlsock_close(conn);
    }
    atomic_store(&lc->finished, true);
    return NULL;
}

/*
 * Swaps between @p a and @p b until @p finished, at most 10,000 times, counting the swaps made in
 * *@p swaps as it goes (another thread may watch it) and those that failed in *@p failed. Records
 * rather than asserts: it may run in a thread of its own.
 */
static void swap_until(int (*set)(void *obj, struct tlsock_ctx *ctx), void *obj,
                       struct tlsock_ctx *a, struct tlsock_ctx *b, atomic_bool *finished,
                       atomic_int *swaps, int *failed)
{
    for (int i = 0; i < 10000 && !atomic_load(finished); i++) {
        *failed += set(obj, i % 2 == 0 ? b : a) != 0;
        atomic_store(swaps, i + 1);
        sleep_ms(1);
    }
}

static void test_listener_swap_under_load(void **state)
{
    struct tlsock_ctx *a = NULL;
    struct tlsock_ctx *b = NULL;
    struct load_client lc = {0};
    struct blk_server bs;
    pthread_t tid;
    int swap_failures = 0;
    atomic_int swaps;

    (void)state;
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &a), 0);
    TS_ASSERT_RC(ts_server_ctx_new(&leaf_b, &b), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &lc.cctx), 0);
    blk_start(&bs, a, LOAD_CONNS, true);
    lc.port = tlsock_listener_port(bs.lis);
    atomic_init(&swaps, 0);
    lc.swaps = &swaps;
    assert_int_equal(pthread_create(&tid, NULL, load_client_thread, &lc), 0);
    swap_until(listener_set, bs.lis, a, b, &lc.finished, &swaps, &swap_failures);
    pthread_join(tid, NULL);
    blk_stop(&bs);
    print_message("%d swaps, %d connections: %d saw A, %d saw B\n", atomic_load(&swaps), lc.done,
                  lc.seen_a, lc.seen_b);
    assert_int_equal(lc.done, LOAD_CONNS);
    assert_int_equal(lc.failures, 0);
    assert_int_equal(bs.serial_failures, 0);
    assert_int_equal(lc.seen_a + lc.seen_b, LOAD_CONNS);
    /* The swaps took effect while the clients came (each handshake spans several swaps). */
    assert_true(lc.seen_a > 0 && lc.seen_b > 0);
    assert_true(atomic_load(&swaps) > 0);
    assert_int_equal(swap_failures, 0);
    /* Every reference the swaps and connections took was given back. */
    assert_int_equal(tlsock__ctx_refs(a), 1);
    assert_int_equal(tlsock__ctx_refs(b), 1);
    tlsock_ctx_free(lc.cctx);
    tlsock_ctx_free(b);
    tlsock_ctx_free(a);
}

/* ---- the libuv server ------------------------------------------------------------------------ */

#if TLSOCK_TEST_HAVE_UV

static int uv_server_set(void *obj, struct tlsock_ctx *ctx)
{
    return tlsock_uv_server_set_ctx(obj, ctx);
}

static char peer_cert(struct peer *p)
{
    return p->conn != NULL ? conn_cert(tlsock_uv_conn_tls(p->conn)) : '?';
}

static void test_uv_swap(void **state)
{
    struct env *env = *state;
    struct tlsock_ctx *b = NULL;
    struct srv *s = NULL;
    struct peer *old_peer = NULL;
    struct peer *new_peer = NULL;
    const struct hooks idle_client = {.on_event = close_on_event};

    make_contexts(env);
    TS_ASSERT_RC(ts_server_ctx_new(&leaf_b, &b), 0);
    s = serve_ok(env, 0, env->sctx, &echo_server, NULL);
    old_peer = client_start(env, env->cctx, s->port, &idle_client, 0, 1);
    RUN_UNTIL(env, old_peer->connects == 1 && s->connects == 1, WAIT_MS);
    TS_ASSERT_RC(old_peer->connect_rc, 0);
    assert_int_equal(cert_seen(old_peer->peer_subject), 'A');
    /* The test's, the server's and the accepted connection's. */
    assert_int_equal(tlsock__ctx_refs(env->sctx), 3);

    TS_ASSERT_RC(tlsock_uv_server_set_ctx(s->server, b), 0);
    assert_int_equal(tlsock__ctx_refs(env->sctx), 2);
    new_peer = client_start(env, env->cctx, s->port, &echo_client, 1000, 2);
    new_peer->close_when_echoed = true;
    RUN_UNTIL(env, echoed(new_peer), WAIT_MS);
    assert_int_equal(cert_seen(new_peer->peer_subject), 'B');

    /* The live connection keeps working, with its certificate. */
    TS_ASSERT_RC(peer_write(old_peer, MSG, sizeof(MSG), true), 0);
    RUN_UNTIL(env, old_peer->rx_len == sizeof(MSG), WAIT_MS);
    assert_memory_equal(old_peer->rx, MSG, sizeof(MSG));
    assert_int_equal(peer_cert(old_peer), 'A');

    assert_bad_contexts_refused(uv_server_set, s->server);

    /* The old context goes with its last connection. */
    peer_close(old_peer);
    RUN_UNTIL(env, server_peers_closed(env) && conns_closed(env), WAIT_MS);
    assert_int_equal(tlsock__ctx_refs(env->sctx), 1);
    assert_int_equal(s->accept_errors, 0);
    server_close(s);
    RUN_UNTIL(env, all_closed(env), WAIT_MS);
    assert_int_equal(tlsock__ctx_refs(b), 1);
    assert_no_anomaly(env);
    tlsock_ctx_free(b);
}

struct swapper {
    struct tlsock_uv_server *server;
    struct tlsock_ctx *a;
    struct tlsock_ctx *b;
    atomic_bool finished;
    atomic_int swaps;
    int failed;
};

/* From a thread of its own: the server's loop keeps accepting meanwhile. */
static void swap_thread(void *arg)
{
    struct swapper *sw = arg;

    swap_until(uv_server_set, sw->server, sw->a, sw->b, &sw->finished, &sw->swaps, &sw->failed);
}

#define UV_LOAD_CLIENTS 40

static void test_uv_swap_under_load(void **state)
{
    struct env *env = *state;
    struct swapper sw = {0};
    struct peer *clients[UV_LOAD_CLIENTS];
    struct srv *s = NULL;
    int seen_a = 0;
    int seen_b = 0;

    make_contexts(env);
    TS_ASSERT_RC(ts_server_ctx_new(&leaf_b, &sw.b), 0);
    sw.a = env->sctx;
    s = serve_ok(env, 0, env->sctx, &echo_server, NULL);
    sw.server = s->server;
    thread_start(env, swap_thread, &sw);
    for (int i = 0; i < UV_LOAD_CLIENTS; i++) {
        /* A few at a time, each few after one more swap, so that the handshakes spread over the
         * swaps. */
        if (i % 4 == 0) {
            assert_true(next_swap(&sw.swaps));
        }
        clients[i] = client_start(env, env->cctx, s->port, &echo_client, 100, (unsigned)i);
        clients[i]->close_when_echoed = true;
        if (i % 4 == 3) {
            RUN_UNTIL(env, echoed(clients[i]), WAIT_MS);
        }
    }
    for (int i = 0; i < UV_LOAD_CLIENTS; i++) {
        RUN_UNTIL(env, echoed(clients[i]), WAIT_MS);
        seen_a += cert_seen(clients[i]->peer_subject) == 'A';
        seen_b += cert_seen(clients[i]->peer_subject) == 'B';
    }
    atomic_store(&sw.finished, true);
    RUN_UNTIL(env, conns_closed(env), WAIT_MS);
    print_message("%d swaps, %d clients: %d saw A, %d saw B\n", atomic_load(&sw.swaps),
                  UV_LOAD_CLIENTS, seen_a, seen_b);
    assert_int_equal(s->accept_errors, 0);
    assert_int_equal(seen_a + seen_b, UV_LOAD_CLIENTS);
    assert_true(seen_a > 0 && seen_b > 0);
    assert_true(atomic_load(&sw.swaps) > 0);
    assert_int_equal(sw.failed, 0);
    server_close(s);
    RUN_UNTIL(env, all_closed(env), WAIT_MS);
    assert_int_equal(tlsock__ctx_refs(sw.a), 1);
    assert_int_equal(tlsock__ctx_refs(sw.b), 1);
    assert_no_anomaly(env);
    tlsock_ctx_free(sw.b);
}

#endif /* TLSOCK_TEST_HAVE_UV */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listener_swap),
        cmocka_unit_test(test_listener_swap_under_load),
#if TLSOCK_TEST_HAVE_UV
        cmocka_unit_test_setup_teardown(test_uv_swap, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_uv_swap_under_load, env_setup, env_teardown),
#endif
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
