/*
 * Full TLS 1.3 handshakes with concurrency connections in flight, each closed as soon as it is
 * ready (close_notify, lingering close on both sides). Rate: client handshakes completed in the
 * run's time; besides: client and server CPU time per handshake.
 *
 * An event loop gets its concurrency from connections in flight, a blocking program from
 * threads. tlsock: one tlsock_uv server loop (uv_server.c) and CLIENT_LOOPS client loops, each in
 * its own thread, with their share of the connections in flight. Raw: as many blocking client
 * threads (connect, handshake, close, again) as connections in flight, against as many server
 * threads blocked in accept on one listener, the classic thread-per-connection server; written
 * against struct bench_ops, so the same code serves raw OpenSSL and raw GnuTLS.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "async.h"
#include "side.h"

#define CONCURRENCY            32
#define ASYNC_HANDSHAKE_TARGET 0.98
/* tlsock: client loops (threads), and connections in flight on each at most. */
#define CLIENT_LOOPS  2
#define MAX_IN_FLIGHT 64
/* A tlsock_uv run that has not ended this long after its time budget is stuck: it fails. */
#define GUARD_EXTRA_MS 15000

_Static_assert(CONCURRENCY <= BENCH_MAX_SERVER_THREADS &&
                   CONCURRENCY <= CLIENT_LOOPS * MAX_IN_FLIGHT,
               "threads or slots for every connection in flight");

/* ---- Raw: a thread per connection ---- */

/* The raw clients' shared state. */
struct par_state {
    const struct bench_ops *ops;
    void *env;
    uint16_t port;
    int64_t deadline_ns;            /* clients start no handshake after it */
    atomic_int rc;                  /* first failure */
    atomic_uint_fast64_t counted;   /* client handshakes that completed before the deadline */
    atomic_uint_fast64_t client_hs; /* all client handshakes */
    atomic_int_fast64_t client_cpu_ns;
    atomic_uint_fast64_t client_syscalls;
    atomic_bool named; /* the cipher and implementation were recorded */
    char cipher[64];
    char impl[16];
};

static void *client_thread(void *arg)
{
    struct par_state *st = arg;
    int64_t cpu0 = bench_thread_cpu_ns();
    uint64_t calls0 = bench_syscalls;
    uint64_t counted = 0;
    uint64_t all = 0;

    while (atomic_load(&st->rc) == BENCH_OK && bench_now_ns() < st->deadline_ns) {
        void *conn = NULL;
        int rc = st->ops->connect(st->env, st->port, &conn);

        if (rc != BENCH_OK) {
            atomic_store(&st->rc, rc);
            break;
        }
        all++;
        if (bench_now_ns() <= st->deadline_ns) {
            counted++;
        }
        if (!atomic_exchange(&st->named, true)) {
            snprintf(st->cipher, sizeof(st->cipher), "%s", st->ops->cipher(conn));
            snprintf(st->impl, sizeof(st->impl), "%s", st->ops->impl(conn));
        }
        st->ops->close(conn);
    }
    atomic_fetch_add(&st->counted, counted);
    atomic_fetch_add(&st->client_hs, all);
    atomic_fetch_add(&st->client_cpu_ns, bench_thread_cpu_ns() - cpu0);
    atomic_fetch_add(&st->client_syscalls, bench_syscalls - calls0);
    return NULL;
}

static int blocking_handshakes(const struct bench_run *run, struct bench_sample *out)
{
    static struct par_state st;
    static struct bench_server srv;
    pthread_t clients[CONCURRENCY];
    int n = run->limits.concurrency;
    int nclients = 0;
    int rc = bench_server_start(&srv, run->ops, run->env, BENCH_SERVE_CLOSE, n);

    if (rc != BENCH_OK) {
        return rc;
    }
    memset(&st, 0, sizeof(st));
    st.ops = run->ops;
    st.env = run->env;
    st.port = srv.port;
    st.deadline_ns = bench_now_ns() + (int64_t)(run->limits.seconds * 1e9);
    for (; nclients < n; nclients++) {
        if (pthread_create(&clients[nclients], NULL, client_thread, &st) != 0) {
            fprintf(stderr, "%s: cannot start a client thread\n", run->ops->name);
            atomic_store(&st.rc, BENCH_ERROR);
            break;
        }
    }
    for (int i = 0; i < nclients; i++) {
        pthread_join(clients[i], NULL);
    }
    rc = bench_server_stop(&srv);
    if (rc == BENCH_OK) {
        rc = atomic_load(&st.rc);
    }
    if (rc == BENCH_OK && (st.client_hs == 0 || srv.handshakes == 0)) {
        fprintf(stderr, "%s: no handshake completed\n", run->ops->name);
        rc = BENCH_ERROR;
    }
    if (rc == BENCH_OK) {
        out->count = st.counted;
        out->rate = (double)st.counted / run->limits.seconds;
        out->client_cpu_us = bench_us_per(st.client_cpu_ns, (double)st.client_hs);
        out->server_cpu_us = bench_us_per(srv.cpu_ns, (double)srv.handshakes);
        out->client_syscalls = (double)st.client_syscalls / (double)st.client_hs;
        out->server_syscalls = (double)atomic_load(&srv.syscalls) / (double)srv.handshakes;
        snprintf(out->cipher, sizeof(out->cipher), "%s", st.cipher);
        snprintf(out->impl, sizeof(out->impl), "%s", st.impl);
    }
    return rc;
}

/* ---- tlsock: client loops in threads of their own ---- */

struct hs_client;

/* A connection of a handshake client; its address is the connection's user pointer. */
struct hs_slot {
    struct hs_client *client;
    struct tlsock_uv_conn *conn;
};

struct hs_client {
    uv_loop_t loop;
    uv_timer_t guard;
    pthread_t thread;
    struct tlsock_ctx *ctx;
    uint16_t port;
    int in_flight; /* connections to keep going */
    int64_t deadline_ns;
    struct hs_slot slots[MAX_IN_FLIGHT];
    int live;
    uint64_t counted; /* completed before the deadline */
    uint64_t all;
    int64_t cpu_ns;
    uint64_t syscalls; /* the loop thread's, once it ended */
    int rc;
    bool named;
    char cipher[64];
    char impl[16];
};

static void hs_start(struct hs_slot *slot);

static void hs_fail(struct hs_client *c, int code, const char *what, const char *msg)
{
    if (c->rc == BENCH_OK) {
        fprintf(stderr, "tlsock-uv client: %s: %s: %s\n", what, tlsock_err_name(code), msg);
        c->rc = BENCH_ERROR;
    }
}

static void hs_on_connect(struct tlsock_uv_conn *conn, int status)
{
    struct hs_slot *slot = tlsock_uv_conn_user(conn);
    struct hs_client *c = slot->client;

    if (status == 0) {
        c->all++;
        if (bench_now_ns() <= c->deadline_ns) {
            c->counted++;
        }
        if (!c->named) {
            bench_uv_name(conn, c->cipher, sizeof(c->cipher), c->impl, sizeof(c->impl));
            c->named = true;
        }
    } else if (status != TLSOCK_ECANCELED) {
        hs_fail(c, status, "connect", tlsock_uv_conn_errmsg(conn));
    }
    tlsock_uv_close(conn);
}

static void hs_on_event(struct tlsock_uv_conn *conn, int code)
{
    /* Only possible between on_connect and the close it asks for; nothing to do but close. */
    (void)code;
    tlsock_uv_close(conn);
}

static void hs_on_close(struct tlsock_uv_conn *conn)
{
    struct hs_slot *slot = tlsock_uv_conn_user(conn);
    struct hs_client *c = slot->client;

    slot->conn = NULL;
    c->live--;
    if (c->rc == BENCH_OK && bench_now_ns() < c->deadline_ns) {
        hs_start(slot);
    } else if (c->live == 0) {
        uv_close((uv_handle_t *)&c->guard, NULL);
    }
}

static void hs_start(struct hs_slot *slot)
{
    struct hs_client *c = slot->client;
    struct tlsock_uv_opts opts;
    int rc;

    bench_uv_opts(&opts, slot);
    opts.servername = BENCH_SERVER_NAME;
    opts.on_connect = hs_on_connect;
    opts.on_event = hs_on_event;
    opts.on_close = hs_on_close;
    rc = tlsock_uv_connect(&c->loop, c->ctx, "127.0.0.1", c->port, &opts, &slot->conn);
    if (rc == 0) {
        c->live++;
    } else {
        hs_fail(c, rc, "connect", tlsock_errmsg());
        if (c->live == 0) {
            uv_close((uv_handle_t *)&c->guard, NULL);
        }
    }
}

static void hs_on_guard(uv_timer_t *timer)
{
    struct hs_client *c = timer->data;

    hs_fail(c, TLSOCK_ETIMEDOUT, "handshakes", "the run is stuck");
    for (int i = 0; i < c->in_flight; i++) {
        tlsock_uv_close(c->slots[i].conn);
    }
}

static void *hs_thread(void *arg)
{
    struct hs_client *c = arg;
    int64_t cpu0 = bench_thread_cpu_ns();
    uint64_t calls0 = bench_syscalls;

    for (int i = 0; i < c->in_flight && c->rc == BENCH_OK; i++) {
        c->slots[i].client = c;
        hs_start(&c->slots[i]);
    }
    (void)uv_run(&c->loop, UV_RUN_DEFAULT);
    c->cpu_ns = bench_thread_cpu_ns() - cpu0;
    c->syscalls = bench_syscalls - calls0;
    return NULL;
}

static int uv_handshakes(const struct bench_run *run, struct bench_sample *out)
{
    const struct bench_limits *limits = &run->limits;
    struct tls_env *env = run->env;
    struct bench_uv_server srv;
    struct hs_client clients[CLIENT_LOOPS];
    int started = 0;
    int rc;
    uint64_t counted = 0;
    uint64_t all = 0;
    int64_t cpu_ns = 0;
    uint64_t syscalls = 0;

    memset(clients, 0, sizeof(clients));
    rc = bench_uv_server_init(&srv, env->server, BENCH_UV_CLOSE);
    if (rc == BENCH_OK) {
        rc = bench_uv_server_start(&srv);
    }
    if (rc != BENCH_OK) {
        return rc;
    }
    for (int i = 0; i < CLIENT_LOOPS && rc == BENCH_OK; i++) {
        struct hs_client *c = &clients[i];

        c->ctx = env->client;
        c->port = srv.port;
        /* Spread the connections over the loops, the first ones taking the remainder. */
        c->in_flight =
            limits->concurrency / CLIENT_LOOPS + (i < limits->concurrency % CLIENT_LOOPS ? 1 : 0);
        c->deadline_ns = bench_now_ns() + (int64_t)(limits->seconds * 1e9);
        if (uv_loop_init(&c->loop) != 0) {
            fprintf(stderr, "tlsock-uv client: uv_loop_init failed\n");
            rc = BENCH_ERROR;
            break;
        }
        (void)uv_timer_init(&c->loop, &c->guard);
        c->guard.data = c;
        (void)uv_timer_start(&c->guard, hs_on_guard,
                             (uint64_t)(limits->seconds * 1000) + GUARD_EXTRA_MS, 0);
        if (pthread_create(&c->thread, NULL, hs_thread, c) != 0) {
            fprintf(stderr, "tlsock-uv client: cannot start its thread\n");
            uv_close((uv_handle_t *)&c->guard, NULL);
            (void)uv_run(&c->loop, UV_RUN_DEFAULT);
            (void)uv_loop_close(&c->loop);
            rc = BENCH_ERROR;
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++) {
        struct hs_client *c = &clients[i];

        pthread_join(c->thread, NULL);
        if (uv_loop_close(&c->loop) != 0) {
            fprintf(stderr, "tlsock-uv client: loop still busy at the end\n");
            c->rc = BENCH_ERROR;
        }
        if (c->rc != BENCH_OK) {
            rc = c->rc;
        }
        counted += c->counted;
        all += c->all;
        cpu_ns += c->cpu_ns;
        syscalls += c->syscalls;
        if (c->named && out->cipher[0] == '\0') {
            snprintf(out->cipher, sizeof(out->cipher), "%s", c->cipher);
            snprintf(out->impl, sizeof(out->impl), "%s", c->impl);
        }
    }
    if (bench_uv_server_stop(&srv) != BENCH_OK && rc == BENCH_OK) {
        rc = BENCH_ERROR;
    }
    if (rc == BENCH_OK && all > 0 && srv.handshakes > 0) {
        out->count = counted;
        out->rate = (double)counted / limits->seconds;
        out->client_cpu_us = bench_us_per(cpu_ns, (double)all);
        out->server_cpu_us = bench_us_per(srv.thread_cpu_ns, (double)srv.handshakes);
        out->client_syscalls = (double)syscalls / (double)all;
        out->server_syscalls = (double)srv.syscalls / (double)srv.handshakes;
    } else if (rc == BENCH_OK) {
        fprintf(stderr, "tlsock-uv: no handshake completed\n");
        rc = BENCH_ERROR;
    }
    return rc;
}

/* Both cases: ECDSA P-256 certificates, 32 in flight (issue 13: 0.98 of raw on the uv driver). */
#define ASYNC_HANDSHAKE_CASE                                                                       \
    .measure = &bench_handshakes, .concurrency = CONCURRENCY, .rounds = BENCH_ASYNC_ROUNDS,        \
    .target = ASYNC_HANDSHAKE_TARGET,                                                              \
    .sides = {                                                                                     \
        {"raw", BENCH_LAYER_RAW, blocking_handshakes},                                             \
        {"tlsock", BENCH_LAYER_TLSOCK, uv_handshakes},                                             \
    }

static const struct bench_case cases[] = {
    {.name = "async-handshake-ecdsa-p256",
     .summary = "full TLS 1.3 handshakes, ECDSA P-256, 32 in flight: a tlsock_uv server loop and "
                "two client loops against 32 blocking client and 32 server threads (raw OpenSSL)",
     ASYNC_HANDSHAKE_CASE},
    {.name = "async-handshake-ecdsa-p256-gnutls",
     .summary = "as async-handshake-ecdsa-p256, tlsock_uv on GnuTLS against raw GnuTLS",
     .impl = TLSOCK_IMPL_GNUTLS,
     ASYNC_HANDSHAKE_CASE},
};

const struct bench_cases bench_async_handshake_cases = BENCH_CASES(cases);
