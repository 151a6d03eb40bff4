/* Loopback TLS, slow: frozen contexts shared by many threads and connections at once. */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLIENT_THREADS   6
#define CONNS_PER_CLIENT 4
#define TOTAL_CONNS      (CLIENT_THREADS * CONNS_PER_CLIENT)
#define PAYLOAD          65536

struct worker {
    pthread_t thread;
    bool started;
    struct tlsock_conn *conn;
    struct ts_exchange ex;
    int rc;
};

struct acceptor {
    struct tlsock_listener *lis;
    struct worker workers[TOTAL_CONNS];
    int accept_failures;
};

static void *serve_one(void *arg)
{
    struct worker *w = arg;

    w->rc = ts_serve_exchange(w->conn, &w->ex);
    if (w->rc == 0 && w->ex.final_rc != TLSOCK_ECLOSED) {
        w->rc = w->ex.final_rc;
    }
    tlsock_close(w->conn);
    w->conn = NULL;
    return NULL;
}

/* Accepts TOTAL_CONNS connections (each wait bounded) and serves each on its own thread. */
static void *accept_loop(void *arg)
{
    struct acceptor *a = arg;
    struct tlsock_opts opts = ts_opts();

    for (int i = 0; i < TOTAL_CONNS; i++) {
        struct worker *w = &a->workers[i];

        w->ex.size = PAYLOAD;
        w->rc = tlsock_accept(a->lis, &opts, &w->conn);
        if (w->rc != 0) {
            a->accept_failures++;
            continue;
        }
        if (pthread_create(&w->thread, NULL, serve_one, w) != 0) {
            tlsock_close(w->conn);
            w->conn = NULL;
            w->rc = TS_ESETUP;
            continue;
        }
        w->started = true;
    }
    for (int i = 0; i < TOTAL_CONNS; i++) {
        if (a->workers[i].started) {
            pthread_join(a->workers[i].thread, NULL);
        }
    }
    return NULL;
}

struct client {
    pthread_t thread;
    struct tlsock_ctx *ctx; /* shared */
    uint16_t port;
    int failures;
    int first_rc;
};

static void *client_loop(void *arg)
{
    struct client *c = arg;
    struct tlsock_opts opts = ts_opts();

    for (int i = 0; i < CONNS_PER_CLIENT; i++) {
        struct tlsock_conn *conn = NULL;
        int rc = tlsock_connect(c->ctx, "127.0.0.1", c->port, &opts, &conn);

        if (rc == 0) {
            rc = ts_client_exchange(conn, PAYLOAD);
        }
        tlsock_close(conn);
        if (rc != 0) {
            if (c->failures == 0) {
                c->first_rc = rc;
            }
            c->failures++;
        }
    }
    return NULL;
}

static void test_shared_contexts(void **state)
{
    static struct acceptor a;
    struct client clients[CLIENT_THREADS];
    struct tlsock_ctx *sctx = NULL;
    struct tlsock_ctx *cctx = NULL;
    pthread_t acceptor;
    int started = 0;
    int failures = 0;

    (void)state;
    memset(&a, 0, sizeof(a));
    memset(clients, 0, sizeof(clients));
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &cctx), 0);
    TS_ASSERT_RC(tlsock_listen(sctx, "127.0.0.1", 0, 64, &a.lis), 0);
    assert_int_equal(pthread_create(&acceptor, NULL, accept_loop, &a), 0);
    for (int i = 0; i < CLIENT_THREADS; i++) {
        clients[i].ctx = cctx;
        clients[i].port = tlsock_listener_port(a.lis);
        if (pthread_create(&clients[i].thread, NULL, client_loop, &clients[i]) == 0) {
            started++;
        }
    }
    /* Joined before any assertion, so that no thread outlives a failure. */
    for (int i = 0; i < started; i++) {
        pthread_join(clients[i].thread, NULL);
        failures += clients[i].failures;
        if (clients[i].failures > 0) {
            print_error("client %d: %d failures, first %s\n", i, clients[i].failures,
                        ts_rc_name(clients[i].first_rc));
        }
    }
    pthread_join(acceptor, NULL);
    tlsock_listener_close(a.lis);
    tlsock_ctx_free(sctx);
    tlsock_ctx_free(cctx);

    assert_int_equal(started, CLIENT_THREADS);
    assert_int_equal(failures, 0);
    assert_int_equal(a.accept_failures, 0);
    for (int i = 0; i < TOTAL_CONNS; i++) {
        TS_ASSERT_RC(a.workers[i].rc, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_contexts),
    };

    return cmocka_run_group_tests_name("concurrency", tests, ts_pki_setup, ts_pki_teardown);
}
