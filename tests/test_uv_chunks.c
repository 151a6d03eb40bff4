/*
 * No allocation per chunk on the libuv driver's data path (issue 13): once a stream runs, the
 * loop's spare blocks and records carry every write request, batch, ciphertext and partial
 * record, and an open connection keeps its record buffers between reads.
 *
 * A client streams rounds of CHUNKS 16 KiB writes (from a static buffer, with static write
 * arguments: the test itself allocates nothing) to a server on the same loop, which counts what
 * it receives. The allocator hooks of support/alloc_fail.h count the allocations of this thread
 * over FEW rounds, then over MANY rounds: tlsock's and libuv's must not grow with the number of
 * chunks. Before the spares, every chunk cost several (a request, a batch, its ciphertext, a
 * partial record). OpenSSL 3.0 allocates inside SSL_write_ex() and SSL_read_ex() for every
 * record (its cipher calls), which no caller can avoid: those are printed, not asserted. What
 * tlsock controls of OpenSSL, its record buffers kept between reads, shows in those counts too
 * (two more per chunk when they are released after every read).
 */
#include "support/alloc_fail.h"
#include "support/uv_harness.h"

#include <stdio.h>
#include <string.h>

#define CHUNK  (16u << 10)
#define CHUNKS 8
#define WARM   4
#define FEW    8
#define MANY   32
/* What may differ between two counts without depending on the chunks: a deadline heap or a
 * libuv array that grows once. */
#define SLACK 8

static unsigned char payload[CHUNK];
static struct wbuf wbufs[CHUNKS];

static struct peer *server_peer(struct env *env)
{
    for (int i = 0; i < env->npeers; i++) {
        if (env->peers[i].srv != NULL && env->peers[i].conn != NULL) {
            return &env->peers[i];
        }
    }
    return NULL;
}

static bool received(struct env *env, size_t want)
{
    struct peer *s = server_peer(env);

    return s != NULL && s->rx_len >= want;
}

/* @p rounds rounds of CHUNKS writes, each round once the server received the one before. */
static void stream(struct env *env, struct peer *c, int rounds, size_t *sent)
{
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < CHUNKS; i++) {
            memset(&wbufs[i], 0, sizeof(wbufs[i]));
            TS_ASSERT_RC(peer_write_buf(c, &wbufs[i], payload, sizeof(payload)), 0);
        }
        *sent += (size_t)CHUNKS * CHUNK;
        RUN_UNTIL(env, received(env, *sent), WAIT_MS);
        assert_true(received(env, *sent));
    }
}

/* Allocations of tlsock and libuv over @p rounds; OpenSSL's in @p *ossl. */
static unsigned long counted(struct env *env, struct peer *c, int rounds, size_t *sent,
                             unsigned long *ossl)
{
    ts_alloc_arm(0);
    stream(env, c, rounds, sent);
    assert_int_equal(ts_alloc_disarm(NULL), TS_ALLOC_NONE);
    *ossl = ts_alloc_counted(TS_ALLOC_OPENSSL);
    return ts_alloc_counted(TS_ALLOC_TLSOCK) + ts_alloc_counted(TS_ALLOC_UV);
}

static void test_no_allocation_per_chunk(void **state)
{
    struct env *env = *state;
    struct hooks sink = {.discard_rx = true, .on_event = close_on_event};
    unsigned long ossl_few = 0;
    unsigned long ossl_many = 0;
    struct srv *s = NULL;
    struct peer *c = NULL;
    size_t sent = 0;

    make_contexts(env);
    s = serve_ok(env, 0, env->sctx, &sink, NULL);
    c = client_start(env, env->cctx, s->port, &sink, 0, 1);
    RUN_UNTIL(env, c->connects > 0 && server_peer(env) != NULL, WAIT_MS);
    TS_ASSERT_RC(c->connect_rc, 0);

    stream(env, c, WARM, &sent); /* the spares fill, the buffers settle */
    unsigned long few = counted(env, c, FEW, &sent, &ossl_few);
    unsigned long many = counted(env, c, MANY, &sent, &ossl_many);
    print_message("tlsock and libuv allocations: %lu over %d chunks, %lu over %d chunks "
                  "(OpenSSL: %lu, %lu)\n",
                  few, FEW * CHUNKS, many, MANY * CHUNKS, ossl_few, ossl_many);
    assert_true(many <= few + SLACK);
    assert_true(many < (unsigned long)MANY * CHUNKS / 4);

    peer_close(c);
    server_close(s);
    RUN_UNTIL(env, all_closed(env), WAIT_MS);
    assert_no_anomaly(env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_allocation_per_chunk, env_setup, env_teardown),
    };

    if (!ts_alloc_init()) {
        return 1;
    }
    return cmocka_run_group_tests_name("uv_chunks", tests, ts_pki_setup, ts_pki_teardown);
}
