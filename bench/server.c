/*
 * The server side of the blocking workloads: threads of their own that accept and handshake
 * clients through struct bench_ops on one listener until stopped, so that clients and servers
 * measure their CPU time apart (CLOCK_THREAD_CPUTIME_ID) though they share the machine's cores.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

/* Reads one connection until close_notify, writing back what it reads when echoing. */
static int serve(struct bench_server *srv, void *conn)
{
    static _Thread_local unsigned char buf[BENCH_RECORD];
    int rc = BENCH_OK;
    size_t n = 0;

    while (rc == BENCH_OK) {
        rc = srv->ops->read(conn, buf, sizeof(buf), &n);
        if (rc == BENCH_OK) {
            srv->bytes += n;
        }
        if (rc == BENCH_OK && srv->serve == BENCH_SERVE_ECHO) {
            rc = srv->ops->write(conn, buf, n);
        }
    }
    return rc == BENCH_CLOSED ? BENCH_OK : rc;
}

/* A request and its response: one read, written back. */
static int reply(struct bench_server *srv, void *conn)
{
    unsigned char buf[512];
    size_t n = 0;
    int rc = srv->ops->read(conn, buf, sizeof(buf), &n);

    if (rc == BENCH_OK) {
        rc = srv->ops->write(conn, buf, n);
    }
    return rc;
}

static void *server_main(void *arg)
{
    struct bench_server *srv = arg;
    int64_t cpu0 = bench_thread_cpu_ns();
    uint64_t calls0 = bench_syscalls;
    bool done = false;

    /* Bounded by the stop flag, which the client sets once its own bounded loop is over. */
    while (!done && !atomic_load(&srv->stop)) {
        void *conn = NULL;
        int rc = srv->ops->accept(srv->env, srv->lis, &conn);

        if (rc == BENCH_AGAIN) {
            continue;
        }
        /* The client that woke us up after the stop request is not a TLS client. */
        if (rc == BENCH_OK && atomic_load(&srv->stop)) {
            srv->ops->close(conn);
            break;
        }
        if (rc == BENCH_OK) {
            rc = srv->ops->handshake(conn);
        }
        if (rc == BENCH_OK) {
            atomic_fetch_add(&srv->handshakes, 1);
        }
        if (rc == BENCH_OK && srv->serve == BENCH_SERVE_REPLY) {
            rc = reply(srv, conn);
        } else if (rc == BENCH_OK && srv->serve != BENCH_SERVE_CLOSE) {
            int64_t serve0 = bench_thread_cpu_ns();
            uint64_t serve_calls0 = bench_syscalls;

            rc = serve(srv, conn);
            srv->end_ns = bench_now_ns();
            srv->serve_cpu_ns = bench_thread_cpu_ns() - serve0;
            srv->serve_syscalls = bench_syscalls - serve_calls0;
            done = true;
        }
        if (conn != NULL) {
            srv->ops->close(conn);
        }
        if (rc != BENCH_OK) {
            atomic_store(&srv->rc, rc);
            done = true;
        }
    }
    atomic_fetch_add(&srv->cpu_ns, bench_thread_cpu_ns() - cpu0);
    atomic_fetch_add(&srv->syscalls, bench_syscalls - calls0);
    atomic_fetch_sub(&srv->running, 1);
    return NULL;
}

int bench_server_start(struct bench_server *srv, const struct bench_ops *ops, void *env,
                       enum bench_serve mode, int threads)
{
    int rc;

    memset(srv, 0, sizeof(*srv));
    srv->ops = ops;
    srv->env = env;
    srv->serve = mode;
    rc = ops->listen(env, &srv->lis, &srv->port);
    for (; rc == BENCH_OK && srv->threads < threads && srv->threads < BENCH_MAX_SERVER_THREADS;
         srv->threads++) {
        atomic_fetch_add(&srv->running, 1);
        if (pthread_create(&srv->thread[srv->threads], NULL, server_main, srv) != 0) {
            fprintf(stderr, "%s: cannot start a server thread\n", ops->name);
            atomic_fetch_sub(&srv->running, 1);
            rc = BENCH_ERROR;
            break;
        }
    }
    if (rc != BENCH_OK && srv->lis != NULL) {
        (void)bench_server_stop(srv);
    }
    return rc;
}

int bench_server_stop(struct bench_server *srv)
{
    atomic_store(&srv->stop, true);
    /*
     * Wakes the threads in accept at once instead of at the end of their poll interval (many
     * runs add up). Bounded: each pass wakes at least one, and each polls the flag anyway.
     */
    for (int i = 0; i < 4 * srv->threads && atomic_load(&srv->running) > 0; i++) {
        (void)bench_tcp_poke(srv->port);
        if (atomic_load(&srv->running) > 0) {
            usleep(1000);
        }
    }
    for (int i = 0; i < srv->threads; i++) {
        pthread_join(srv->thread[i], NULL);
    }
    srv->ops->listen_close(srv->lis);
    return atomic_load(&srv->rc);
}
