/*
 * The two workloads, written once against struct bench_ops so that the raw baselines (OpenSSL,
 * GnuTLS) and tlsock do exactly the same thing: a server thread and a client thread over loopback
 * TCP.
 *
 * The client thread is the caller's thread. It measures wall time; each thread measures its own
 * CPU time with CLOCK_THREAD_CPUTIME_ID, so the two sides' costs can be told apart even though
 * they share the machine's cores.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

/* Reads ask for one maximum-size TLS record's worth of plaintext (RFC 8446 5.1). */
#define CHUNK_SIZE (16 * 1024)

struct server_state {
    const struct bench_ops *ops;
    void *env;
    void *lis;
    uint16_t port;
    atomic_bool stop;    /* set by the client when it is done */
    bool one_connection; /* throughput: serve one connection, read it to close_notify */
    bool echo;           /* with one_connection: write back what is read */
    int rc;              /* first failure, BENCH_OK if none */
    uint64_t handshakes; /* completed server handshakes */
    uint64_t bytes;      /* application bytes read (throughput) */
    int64_t end_ns;      /* when close_notify arrived (throughput) */
    int64_t read_cpu_ns; /* CPU time spent reading (throughput) */
    int64_t cpu_ns;      /* the server thread's CPU time */
};

int64_t bench_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t bench_thread_cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Reads until close_notify; any other end is a failure of the run. */
static int drain_connection(struct server_state *st, void *conn)
{
    static _Thread_local unsigned char buf[CHUNK_SIZE];
    int rc = BENCH_OK;
    size_t n = 0;
    int64_t cpu0 = bench_thread_cpu_ns();

    while (rc == BENCH_OK) {
        rc = st->ops->read(conn, buf, sizeof(buf), &n);
        if (rc == BENCH_OK) {
            st->bytes += n;
        }
    }
    st->end_ns = bench_now_ns();
    st->read_cpu_ns = bench_thread_cpu_ns() - cpu0;
    return rc == BENCH_CLOSED ? BENCH_OK : rc;
}

/* Writes back what it reads until close_notify: the async cases' blocking echo server. */
static int echo_connection(struct server_state *st, void *conn)
{
    static _Thread_local unsigned char buf[CHUNK_SIZE];
    int rc = BENCH_OK;
    size_t n = 0;
    int64_t cpu0 = bench_thread_cpu_ns();

    while (rc == BENCH_OK) {
        rc = st->ops->read(conn, buf, sizeof(buf), &n);
        if (rc == BENCH_OK) {
            st->bytes += n;
            rc = st->ops->write(conn, buf, n);
        }
    }
    st->end_ns = bench_now_ns();
    st->read_cpu_ns = bench_thread_cpu_ns() - cpu0;
    return rc == BENCH_CLOSED ? BENCH_OK : rc;
}

static void *server_main(void *arg)
{
    struct server_state *st = arg;
    int64_t cpu0 = bench_thread_cpu_ns();
    bool done = false;

    /* Bounded by the stop flag, which the client sets once its own bounded loop is over. */
    while (!done && !atomic_load(&st->stop)) {
        void *conn = NULL;
        int rc = st->ops->accept(st->env, st->lis, &conn);

        if (rc == BENCH_AGAIN) {
            continue;
        }
        /* The client that woke us up after the stop request is not a TLS client. */
        if (rc == BENCH_OK && atomic_load(&st->stop)) {
            st->ops->close(conn);
            break;
        }
        if (rc == BENCH_OK) {
            rc = st->ops->handshake(conn);
        }
        if (rc == BENCH_OK) {
            st->handshakes++;
            if (st->one_connection) {
                rc = st->echo ? echo_connection(st, conn) : drain_connection(st, conn);
                done = true;
            }
        }
        if (conn != NULL) {
            st->ops->close(conn);
        }
        if (rc != BENCH_OK) {
            st->rc = rc;
            done = true;
        }
    }
    st->cpu_ns = bench_thread_cpu_ns() - cpu0;
    return NULL;
}

static int start_server(struct server_state *st, const struct bench_ops *ops, void *env,
                        bool one_connection, bool echo, uint16_t *port, pthread_t *thread)
{
    int rc;

    memset(st, 0, sizeof(*st));
    st->ops = ops;
    st->env = env;
    st->one_connection = one_connection;
    st->echo = echo;
    atomic_init(&st->stop, false);
    rc = ops->listen(env, &st->lis, port);
    if (rc != BENCH_OK) {
        goto out;
    }
    st->port = *port;
    if (pthread_create(thread, NULL, server_main, st) != 0) {
        fprintf(stderr, "%s: cannot start the server thread\n", ops->name);
        ops->listen_close(st->lis);
        st->lis = NULL;
        rc = BENCH_ERROR;
        goto out;
    }

out:
    return rc;
}

/*
 * Connects to the listener and hangs up, so that a server waiting in accept sees the stop request
 * at once instead of at the end of its poll interval, which would add up over many runs.
 */
static void wake_server(uint16_t port)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0) {
        (void)connect(fd, (struct sockaddr *)&addr, sizeof(addr));
        close(fd);
    }
}

/* Always called after a successful start_server; bounded by one accept poll even without wake. */
static void stop_server(struct server_state *st, pthread_t thread)
{
    atomic_store(&st->stop, true);
    wake_server(st->port);
    pthread_join(thread, NULL);
    st->ops->listen_close(st->lis);
    st->lis = NULL;
}

/* Not all zeros, though AEAD cost does not depend on the data. Writers are the main thread. */
const unsigned char *bench_payload(void)
{
    static unsigned char data[BENCH_MAX_WRITE];
    static bool ready;

    if (!ready) {
        for (size_t i = 0; i < sizeof(data); i++) {
            data[i] = (unsigned char)(i * 131u + 7u);
        }
        ready = true;
    }
    return data;
}

int bench_run_throughput(const struct bench_ops *ops, void *env, const struct bench_limits *limits,
                         struct bench_sample *out)
{
    const unsigned char *chunk = bench_payload();
    size_t chunk_len = limits->write_size;
    struct server_state st;
    pthread_t thread;
    uint16_t port = 0;
    void *conn = NULL;
    int rc;
    int64_t start_ns = 0;
    int64_t cpu0 = 0;
    int64_t write_cpu_ns = 0;
    int64_t budget_ns = (int64_t)(limits->seconds * 1e9);
    uint64_t sent = 0;
    uint64_t sends = 0;

    memset(out, 0, sizeof(*out));
    if (chunk_len == 0 || chunk_len > BENCH_MAX_WRITE) {
        fprintf(stderr, "%s: bad write size %zu\n", ops->name, chunk_len);
        rc = BENCH_ERROR;
        goto out;
    }
    rc = start_server(&st, ops, env, true, false, &port, &thread);
    if (rc != BENCH_OK) {
        goto out;
    }
    rc = ops->connect(env, port, &conn);
    if (rc != BENCH_OK) {
        goto stop;
    }
    snprintf(out->cipher, sizeof(out->cipher), "%s", ops->cipher(conn));
    snprintf(out->impl, sizeof(out->impl), "%s", ops->impl(conn));
    /* The clock starts after the handshake: this case measures the record layer only. */
    start_ns = bench_now_ns();
    cpu0 = bench_thread_cpu_ns();
    sends = bench_send_calls;
    while (rc == BENCH_OK && sent < limits->max_count && bench_now_ns() - start_ns < budget_ns) {
        rc = ops->write(conn, chunk, chunk_len);
        if (rc == BENCH_OK) {
            sent += chunk_len;
        }
    }
    sends = bench_send_calls - sends;
    /* close_notify tells the server that everything has been sent; it stops its clock on it. */
    if (rc == BENCH_OK) {
        rc = ops->shutdown(conn);
    }
    write_cpu_ns = bench_thread_cpu_ns() - cpu0;

stop:
    /*
     * Closing first lets both ends' graceful closes run concurrently, and after a failure it
     * unblocks a server still reading this connection. The server stopped its clock at
     * close_notify, so this does not count.
     */
    ops->close(conn);
    stop_server(&st, thread);
    if (rc == BENCH_OK && st.rc != BENCH_OK) {
        rc = st.rc;
    }
    if (rc == BENCH_OK && st.bytes != sent) {
        fprintf(stderr, "%s: server read %llu bytes of %llu\n", ops->name,
                (unsigned long long)st.bytes, (unsigned long long)sent);
        rc = BENCH_ERROR;
    }
    if (rc == BENCH_OK && st.bytes > 0) {
        double secs = (double)(st.end_ns - start_ns) / 1e9;
        double mib = (double)st.bytes / (1024.0 * 1024.0);
        out->count = st.bytes;
        out->rate = secs > 0 ? mib / secs : 0;
        out->client_cpu_us = (double)write_cpu_ns / 1e3 / mib;
        out->server_cpu_us = (double)st.read_cpu_ns / 1e3 / mib;
        out->sends_per_mib = (double)sends / mib;
    } else if (rc == BENCH_OK) {
        fprintf(stderr, "%s: nothing was transferred\n", ops->name);
        rc = BENCH_ERROR;
    }

out:
    return rc;
}

int bench_run_handshakes(const struct bench_ops *ops, void *env, const struct bench_limits *limits,
                         struct bench_sample *out)
{
    struct server_state st;
    pthread_t thread;
    uint16_t port = 0;
    int rc;
    int64_t start_ns;
    int64_t elapsed_ns = 0;
    int64_t cpu0;
    int64_t client_cpu_ns;
    int64_t budget_ns = (int64_t)(limits->seconds * 1e9);
    uint64_t n = 0;

    memset(out, 0, sizeof(*out));
    rc = start_server(&st, ops, env, false, false, &port, &thread);
    if (rc != BENCH_OK) {
        goto out;
    }
    start_ns = bench_now_ns();
    cpu0 = bench_thread_cpu_ns();
    while (rc == BENCH_OK && n < limits->max_count && elapsed_ns < budget_ns) {
        void *conn = NULL;

        rc = ops->connect(env, port, &conn);
        if (rc == BENCH_OK && n == 0) {
            /* Once per run, outside the loop's hot path: what the report shows as negotiated. */
            snprintf(out->cipher, sizeof(out->cipher), "%s", ops->cipher(conn));
            snprintf(out->impl, sizeof(out->impl), "%s", ops->impl(conn));
        }
        if (rc == BENCH_OK) {
            n++;
            ops->close(conn);
        }
        elapsed_ns = bench_now_ns() - start_ns;
    }
    client_cpu_ns = bench_thread_cpu_ns() - cpu0;
    stop_server(&st, thread);
    if (rc == BENCH_OK && st.rc != BENCH_OK) {
        rc = st.rc;
    }
    if (rc == BENCH_OK && n > 0 && st.handshakes > 0) {
        out->count = n;
        out->rate = (double)n / ((double)elapsed_ns / 1e9);
        out->client_cpu_us = (double)client_cpu_ns / 1e3 / (double)n;
        out->server_cpu_us = (double)st.cpu_ns / 1e3 / (double)st.handshakes;
    } else if (rc == BENCH_OK) {
        fprintf(stderr, "%s: no handshake completed\n", ops->name);
        rc = BENCH_ERROR;
    }

out:
    return rc;
}

/*
 * The echo client's loop: one write, then reads until fewer than limits->window bytes are in
 * flight. Blocking sockets cannot deadlock on this as long as the window fits the kernel's
 * loopback buffers in both directions, which 64 KiB does with a wide margin.
 */
static int echo_stream(const struct bench_ops *ops, void *conn, const struct bench_limits *limits,
                       uint64_t *received)
{
    static unsigned char buf[CHUNK_SIZE];
    const unsigned char *chunk = bench_payload();
    int64_t start_ns = bench_now_ns();
    int64_t budget_ns = (int64_t)(limits->seconds * 1e9);
    uint64_t sent = 0;
    uint64_t back = 0;
    size_t n = 0;
    int rc = BENCH_OK;

    while (rc == BENCH_OK && sent < limits->max_count && bench_now_ns() - start_ns < budget_ns) {
        rc = ops->write(conn, chunk, limits->write_size);
        if (rc == BENCH_OK) {
            sent += limits->write_size;
        }
        while (rc == BENCH_OK && sent - back >= limits->window) {
            rc = ops->read(conn, buf, sizeof(buf), &n);
            back += n;
        }
    }
    while (rc == BENCH_OK && back < sent) {
        rc = ops->read(conn, buf, sizeof(buf), &n);
        back += n;
    }
    if (rc == BENCH_CLOSED) {
        fprintf(stderr, "%s: echo server closed after %llu of %llu bytes\n", ops->name,
                (unsigned long long)back, (unsigned long long)sent);
        rc = BENCH_ERROR;
    }
    *received = back;
    return rc;
}

int bench_echo_client(const struct bench_ops *ops, void *env, uint16_t port,
                      const struct bench_limits *limits, struct bench_sample *out)
{
    void *conn = NULL;
    uint64_t received = 0;
    int64_t start_ns = 0;
    int64_t end_ns = 0;
    int64_t cpu0 = 0;
    int64_t cpu_ns = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    if (limits->write_size == 0 || limits->write_size > BENCH_MAX_WRITE || limits->window == 0) {
        fprintf(stderr, "%s: bad echo write size %zu or window %zu\n", ops->name,
                limits->write_size, limits->window);
        rc = BENCH_ERROR;
        goto out;
    }
    rc = ops->connect(env, port, &conn);
    if (rc != BENCH_OK) {
        goto out;
    }
    snprintf(out->cipher, sizeof(out->cipher), "%s", ops->cipher(conn));
    snprintf(out->impl, sizeof(out->impl), "%s", ops->impl(conn));
    /* As in the throughput case, the clock starts after the handshake. */
    start_ns = bench_now_ns();
    cpu0 = bench_thread_cpu_ns();
    rc = echo_stream(ops, conn, limits, &received);
    end_ns = bench_now_ns();
    cpu_ns = bench_thread_cpu_ns() - cpu0;
    if (rc == BENCH_OK) {
        rc = ops->shutdown(conn);
    }
    ops->close(conn);
    if (rc == BENCH_OK && received > 0) {
        double mib = (double)received / (1024.0 * 1024.0);

        out->count = received;
        out->rate = mib / ((double)(end_ns - start_ns) / 1e9);
        out->client_cpu_us = (double)cpu_ns / 1e3 / mib;
    } else if (rc == BENCH_OK) {
        fprintf(stderr, "%s: nothing was echoed\n", ops->name);
        rc = BENCH_ERROR;
    }

out:
    return rc;
}

int bench_run_echo(const struct bench_ops *ops, void *env, const struct bench_limits *limits,
                   struct bench_sample *out)
{
    struct server_state st;
    pthread_t thread;
    uint16_t port = 0;
    int rc = start_server(&st, ops, env, true, true, &port, &thread);

    if (rc != BENCH_OK) {
        memset(out, 0, sizeof(*out));
        goto out;
    }
    rc = bench_echo_client(ops, env, port, limits, out);
    stop_server(&st, thread);
    if (rc == BENCH_OK && st.rc != BENCH_OK) {
        rc = st.rc;
    }
    if (rc == BENCH_OK && st.bytes != out->count) {
        fprintf(stderr, "%s: echo server read %llu bytes, client got %llu back\n", ops->name,
                (unsigned long long)st.bytes, (unsigned long long)out->count);
        rc = BENCH_ERROR;
    }
    if (rc == BENCH_OK) {
        out->server_cpu_us = (double)st.read_cpu_ns / 1e3 / ((double)st.bytes / (1024.0 * 1024.0));
    }

out:
    return rc;
}
