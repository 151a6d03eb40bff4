/*
 * Handshakes with several connections in flight on blocking sockets: the baseline of the async
 * handshake cases. A blocking program gets concurrency from threads, so this runs
 * limits->concurrency client threads (connect, handshake, close, again) against as many server
 * threads blocked in accept on one listener, the classic thread-per-connection server. Written
 * against struct bench_ops, so the same code serves raw OpenSSL and raw GnuTLS.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"

/* Enough threads for any concurrency the cases ask for. */
#define MAX_THREADS 64

struct par_state {
    const struct bench_ops *ops;
    void *env;
    void *lis;
    uint16_t port;
    int64_t deadline_ns; /* clients start no handshake after it */
    atomic_bool stop;    /* servers: the clients are done */
    atomic_int servers_left;
    atomic_int rc;                  /* first failure */
    atomic_uint_fast64_t counted;   /* client handshakes that completed before the deadline */
    atomic_uint_fast64_t client_hs; /* all client handshakes */
    atomic_uint_fast64_t server_hs;
    atomic_int_fast64_t client_cpu_ns;
    atomic_int_fast64_t server_cpu_ns;
    atomic_bool named; /* the cipher and implementation were recorded */
    char cipher[64];
    char impl[16];
};

static void fail(struct par_state *st, int rc)
{
    int expected = BENCH_OK;

    atomic_compare_exchange_strong(&st->rc, &expected, rc);
}

static void *server_thread(void *arg)
{
    struct par_state *st = arg;
    int64_t cpu0 = bench_thread_cpu_ns();

    /* Bounded by the stop flag: the clients' loops end at the deadline or at the first error. */
    while (!atomic_load(&st->stop) && atomic_load(&st->rc) == BENCH_OK) {
        void *conn = NULL;
        int rc = st->ops->accept(st->env, st->lis, &conn);

        if (rc == BENCH_AGAIN) {
            continue;
        }
        if (rc == BENCH_OK && atomic_load(&st->stop)) {
            /* A wake-up connection from stop_servers(), not a TLS client. */
            st->ops->close(conn);
            break;
        }
        if (rc == BENCH_OK) {
            rc = st->ops->handshake(conn);
        }
        if (rc == BENCH_OK) {
            atomic_fetch_add(&st->server_hs, 1);
        }
        st->ops->close(conn);
        if (rc != BENCH_OK && !atomic_load(&st->stop)) {
            fail(st, rc);
        }
    }
    atomic_fetch_add(&st->server_cpu_ns, bench_thread_cpu_ns() - cpu0);
    atomic_fetch_sub(&st->servers_left, 1);
    return NULL;
}

static void *client_thread(void *arg)
{
    struct par_state *st = arg;
    int64_t cpu0 = bench_thread_cpu_ns();
    uint64_t counted = 0;
    uint64_t all = 0;

    while (atomic_load(&st->rc) == BENCH_OK && bench_now_ns() < st->deadline_ns) {
        void *conn = NULL;
        int rc = st->ops->connect(st->env, st->port, &conn);

        if (rc != BENCH_OK) {
            fail(st, rc);
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
    return NULL;
}

/* One plain connection per server thread still waiting, until every server thread is gone. */
static void stop_servers(struct par_state *st)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(st->port)};

    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    atomic_store(&st->stop, true);
    /* Bounded: each pass wakes at least one thread, and each thread polls the flag anyway. */
    for (int i = 0; i < 4 * MAX_THREADS && atomic_load(&st->servers_left) > 0; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd >= 0) {
            (void)connect(fd, (struct sockaddr *)&addr, sizeof(addr));
            close(fd);
        }
        usleep(1000);
    }
}

int bench_run_handshakes_parallel(const struct bench_ops *ops, void *env,
                                  const struct bench_limits *limits, struct bench_sample *out)
{
    struct par_state st;
    pthread_t servers[MAX_THREADS];
    pthread_t clients[MAX_THREADS];
    int n = limits->concurrency;
    int nservers = 0;
    int nclients = 0;
    int rc;
    int64_t start_ns;

    memset(out, 0, sizeof(*out));
    memset(&st, 0, sizeof(st));
    if (n < 1 || n > MAX_THREADS) {
        fprintf(stderr, "%s: concurrency %d out of range\n", ops->name, n);
        rc = BENCH_ERROR;
        goto out;
    }
    st.ops = ops;
    st.env = env;
    atomic_init(&st.rc, BENCH_OK);
    rc = ops->listen(env, &st.lis, &st.port);
    if (rc != BENCH_OK) {
        goto out;
    }
    for (; nservers < n; nservers++) {
        atomic_fetch_add(&st.servers_left, 1);
        if (pthread_create(&servers[nservers], NULL, server_thread, &st) != 0) {
            atomic_fetch_sub(&st.servers_left, 1);
            fprintf(stderr, "%s: cannot start a server thread\n", ops->name);
            rc = BENCH_ERROR;
            break;
        }
    }
    start_ns = bench_now_ns();
    st.deadline_ns = start_ns + (int64_t)(limits->seconds * 1e9);
    for (; rc == BENCH_OK && nclients < n; nclients++) {
        if (pthread_create(&clients[nclients], NULL, client_thread, &st) != 0) {
            fprintf(stderr, "%s: cannot start a client thread\n", ops->name);
            rc = BENCH_ERROR;
            break;
        }
    }
    if (rc != BENCH_OK) {
        fail(&st, rc);
    }
    for (int i = 0; i < nclients; i++) {
        pthread_join(clients[i], NULL);
    }
    stop_servers(&st);
    for (int i = 0; i < nservers; i++) {
        pthread_join(servers[i], NULL);
    }
    ops->listen_close(st.lis);
    rc = atomic_load(&st.rc);
    if (rc == BENCH_OK && st.client_hs > 0 && st.server_hs > 0) {
        out->count = st.counted;
        out->rate = (double)st.counted / limits->seconds;
        out->client_cpu_us = (double)st.client_cpu_ns / 1e3 / (double)st.client_hs;
        out->server_cpu_us = (double)st.server_cpu_ns / 1e3 / (double)st.server_hs;
        snprintf(out->cipher, sizeof(out->cipher), "%s", st.cipher);
        snprintf(out->impl, sizeof(out->impl), "%s", st.impl);
    } else if (rc == BENCH_OK) {
        fprintf(stderr, "%s: no handshake completed\n", ops->name);
        rc = BENCH_ERROR;
    }

out:
    return rc;
}
