/*
 * Handshakes, one connection at a time over loopback TCP: the client (the calling thread)
 * connects, completes a TLS 1.3 handshake and closes, again and again for the run's duration; the
 * server thread accepts, handshakes and closes. Besides handshakes per second: client and server
 * CPU time and system calls per handshake.
 *
 * - handshake-*: full handshakes from a client that keeps no session, closed right after the
 *   handshake; servers send no ticket, or in the handshake-*-tickets cases their default tickets
 *   (OpenSSL and tlsock on OpenSSL two, GnuTLS one), which the client does not read.
 * - resume-*: a client that keeps sessions, like a real one: after its handshake it reads until
 *   the server's close_notify, so it gets the tickets the server sent after the handshake, and
 *   keeps the latest for its next connection (raw: SSL_get1_session, gnutls_session_get_data2;
 *   tlsock: its session cache, on by default). Each run measures this workload twice, against a
 *   server of its own each: with full handshakes (nothing offered) and then resumed ones. A
 *   connection that should have resumed and did not, or the other way round, fails the run.
 * - nagle-gnutls: the latency of a handshake and a first request for a client that leaves Nagle
 *   on, against a tlsock GnuTLS server with session tickets off, then on.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "side.h"

/* Issue 13: full handshakes at least 0.98 of raw; issue 12: resumed ones at least 0.97. */
#define HANDSHAKE_TARGET 0.98
#define RESUME_TARGET    0.97

/* What the client's connections of one timed loop did. */
struct loop {
    uint64_t n;
    uint64_t resumed;
    int64_t elapsed_ns;
    int64_t cpu_ns;    /* the client thread's */
    uint64_t syscalls; /* the client thread's */
};

/* What the server thread of one timed loop spent. */
struct server_cost {
    int64_t cpu_ns;
    uint64_t syscalls;
};

/*
 * After the handshake: reads until close_notify (the server sends its tickets, then closes) and
 * keeps the session, as a client that resumes does. Application data would be a server's bug.
 */
static int read_tickets(const struct bench_ops *ops, void *conn)
{
    unsigned char buf[256];
    size_t n = 0;
    int rc = ops->read(conn, buf, sizeof(buf), &n);

    if (rc == BENCH_OK) {
        fprintf(stderr, "%s: unexpected data after the handshake\n", ops->name);
        rc = BENCH_ERROR;
    }
    if (rc == BENCH_CLOSED) {
        rc = ops->keep_session != NULL ? ops->keep_session(conn) : BENCH_OK;
    }
    return rc;
}

/* Connects to @p port one connection at a time until the run's time or count is up. */
static int connect_loop(const struct bench_run *run, uint16_t port, bool tickets, struct loop *lp,
                        struct bench_sample *out)
{
    const struct bench_ops *ops = run->ops;
    int64_t budget_ns = (int64_t)(run->limits.seconds * 1e9);
    int64_t start_ns = bench_now_ns();
    int64_t cpu0 = bench_thread_cpu_ns();
    uint64_t calls0 = bench_syscalls;
    int rc = BENCH_OK;

    memset(lp, 0, sizeof(*lp));
    while (rc == BENCH_OK && lp->n < run->limits.max_count && lp->elapsed_ns < budget_ns) {
        void *conn = NULL;

        rc = ops->connect(run->env, port, &conn);
        if (rc == BENCH_OK && lp->n == 0) {
            /* Once per run, outside the loop's hot path: what the report shows as negotiated. */
            snprintf(out->cipher, sizeof(out->cipher), "%s", ops->cipher(conn));
            snprintf(out->impl, sizeof(out->impl), "%s", ops->impl(conn));
        }
        if (rc == BENCH_OK && tickets) {
            rc = read_tickets(ops, conn);
        }
        if (rc == BENCH_OK) {
            lp->n++;
            /* Like for like: SSL_session_reused(), gnutls_session_is_resumed() and
             * tlsock_conn_resumed() only read a flag. */
            lp->resumed += ops->resumed(conn) ? 1 : 0;
        }
        if (conn != NULL) {
            ops->close(conn);
        }
        lp->elapsed_ns = bench_now_ns() - start_ns;
    }
    lp->cpu_ns = bench_thread_cpu_ns() - cpu0;
    lp->syscalls = bench_syscalls - calls0;
    return rc;
}

/*
 * One timed loop against a server of its own, after @p priming untimed connections. Checks that
 * all (@p resume) or none of the timed connections resumed.
 */
static int timed(const struct bench_run *run, bool tickets, bool resume, int priming,
                 struct loop *lp, struct server_cost *cost, struct bench_sample *out)
{
    const struct bench_ops *ops = run->ops;
    struct bench_server srv;
    int rc = bench_server_start(&srv, ops, run->env, BENCH_SERVE_CLOSE, 1);
    bool started = rc == BENCH_OK;
    uint64_t first = 0;

    for (int i = 0; rc == BENCH_OK && i < priming; i++) {
        void *conn = NULL;

        rc = ops->connect(run->env, srv.port, &conn);
        if (rc == BENCH_OK) {
            rc = read_tickets(ops, conn);
            ops->close(conn);
        }
    }
    first = atomic_load(&srv.handshakes);
    if (rc == BENCH_OK) {
        rc = connect_loop(run, srv.port, tickets, lp, out);
    }
    if (rc == BENCH_OK) {
        rc = bench_server_stop(&srv);
    } else if (started) {
        (void)bench_server_stop(&srv);
    }
    if (rc == BENCH_OK && (lp->n == 0 || srv.handshakes == first)) {
        fprintf(stderr, "%s: no handshake completed\n", ops->name);
        rc = BENCH_ERROR;
    }
    if (rc == BENCH_OK && lp->resumed != (resume ? lp->n : 0)) {
        fprintf(stderr, "%s: %llu of %llu connections resumed, expected %s\n", ops->name,
                (unsigned long long)lp->resumed, (unsigned long long)lp->n,
                resume ? "all" : "none");
        rc = BENCH_ERROR;
    }
    cost->cpu_ns = started ? atomic_load(&srv.cpu_ns) : 0;
    cost->syscalls = started ? atomic_load(&srv.syscalls) : 0;
    return rc;
}

static double per_second(const struct loop *lp)
{
    return (double)lp->n / ((double)lp->elapsed_ns / 1e9);
}

static void fill(const struct loop *lp, const struct server_cost *srv, struct bench_sample *out)
{
    double n = (double)lp->n;

    out->count = lp->n;
    out->resumed = lp->resumed;
    out->rate = per_second(lp);
    out->client_cpu_us = bench_us_per(lp->cpu_ns, n);
    out->server_cpu_us = bench_us_per(srv->cpu_ns, n);
    out->client_syscalls = n > 0 ? (double)lp->syscalls / n : 0;
    out->server_syscalls = n > 0 ? (double)srv->syscalls / n : 0;
}

/*
 * Full handshakes from a client that keeps no session, like the lean raw client (tlsock: the
 * context with its session cache off), and closes right after the handshake without reading
 * what the server sent after it (tickets, in the -tickets cases).
 */
static int handshakes(const struct bench_run *run, struct bench_sample *out)
{
    struct loop lp;
    struct server_cost srv = {0};
    int rc;

    run->ops->set_resume(run->env, false);
    rc = timed(run, false, false, 0, &lp, &srv, out);
    if (rc == BENCH_OK) {
        fill(&lp, &srv, out);
    }
    return rc;
}

/*
 * Full handshakes, then resumed ones. The resumed loop's server is a new one on a new port, so
 * one untimed connection first gets the client a ticket for it (tlsock's cache is keyed by
 * port; the raw clients have one from the full loop already, which the same server context
 * accepts): every timed connection then resumes with the ticket of the one before.
 */
static int resumptions(const struct bench_run *run, struct bench_sample *out)
{
    struct loop full;
    struct loop resumed;
    struct server_cost srv = {0};
    int rc;

    run->ops->set_resume(run->env, false);
    rc = timed(run, true, false, 0, &full, &srv, out);
    run->ops->set_resume(run->env, true);
    if (rc == BENCH_OK) {
        rc = timed(run, true, true, 1, &resumed, &srv, out);
    }
    run->ops->set_resume(run->env, false);
    if (rc == BENCH_OK) {
        fill(&resumed, &srv, out);
        out->full_rate = per_second(&full);
    }
    return rc;
}

/* ---- Nagle: handshake and first request with a GnuTLS server, tickets off and on ---- */

/* Tickets off: a second tlsock layer, its server context with tlsock_ctx_set_tickets(false). */
static int nagle_setup(const struct bench_config *config, void **extra)
{
    struct tls_env *env = NULL;
    int rc = bench_tlsock_ops.setup(config, (void **)&env);

    if (rc == BENCH_OK && tlsock_ctx_set_tickets(env->server, false) != 0) {
        fprintf(stderr, "tlsock: tickets off: %s\n", tlsock_ctx_errmsg(env->server));
        bench_tlsock_ops.teardown(env);
        rc = BENCH_ERROR;
    }
    if (rc == BENCH_OK) {
        *extra = env;
    }
    return rc;
}

static void nagle_teardown(void *extra)
{
    bench_tlsock_ops.teardown(extra);
}

/*
 * One request: a new TCP connection with Nagle on (TCP_NODELAY cleared: what tlsock_connect
 * would set), tlsock_attach_fd, the handshake, a small request and its response. Nagle holds the
 * request back until the client's Finished is acknowledged; a server that sends nothing after
 * the handshake acknowledges it only when its delayed ACK timer fires.
 */
static int nagle_request(struct tls_env *env, uint16_t port)
{
    static const char request[] = "GET / HTTP/1.0\r\n\r\n";
    char reply[sizeof(request)];
    struct tlsock_conn *conn = NULL;
    size_t got = 0;
    int off = 0;
    int fd = -1;
    int rc = bench_tcp_connect("tlsock", port, &fd);

    if (rc != BENCH_OK) {
        return rc;
    }
    rc = setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &off, sizeof(off)) == 0 ? 0 : TLSOCK_ESYS;
    if (rc == 0) {
        rc = tlsock_attach_fd(env->fresh_client, fd, &env->connect_opts, &conn);
    }
    if (rc == 0) {
        rc = tlsock_handshake(conn);
    }
    if (rc == 0) {
        rc = tlsock_write(conn, request, sizeof(request) - 1);
    }
    while (rc == 0 && got < sizeof(request) - 1) {
        size_t n = 0;

        rc = tlsock_read(conn, reply + got, sizeof(request) - 1 - got, &n);
        got += n;
    }
    if (rc != 0) {
        fprintf(stderr, "tlsock: nagle request: %s: %s\n", tlsock_err_name(rc),
                conn != NULL ? tlsock_conn_errmsg(conn) : tlsock_errmsg());
    }
    tlsock_close(conn);
    close(fd);
    return rc == 0 ? BENCH_OK : BENCH_ERROR;
}

/* Mean milliseconds from connect to the response, against the server of @p server_env. */
static int nagle(const struct bench_run *run, struct tls_env *server_env, struct bench_sample *out)
{
    int64_t budget_ns = (int64_t)(run->limits.seconds * 1e9);
    int64_t start_ns = bench_now_ns();
    int64_t elapsed_ns = 0;
    uint64_t n = 0;
    struct bench_server srv;
    int rc = bench_server_start(&srv, &bench_tlsock_ops, server_env, BENCH_SERVE_REPLY, 1);
    bool started = rc == BENCH_OK;

    while (rc == BENCH_OK && n < run->limits.max_count && elapsed_ns < budget_ns) {
        rc = nagle_request(run->env, srv.port);
        n += rc == BENCH_OK ? 1 : 0;
        elapsed_ns = bench_now_ns() - start_ns;
    }
    if (rc == BENCH_OK) {
        rc = bench_server_stop(&srv);
    } else if (started) {
        (void)bench_server_stop(&srv);
    }
    if (rc == BENCH_OK && n == 0) {
        rc = BENCH_ERROR;
    }
    if (rc == BENCH_OK) {
        out->count = n;
        out->rate = (double)elapsed_ns / 1e6 / (double)n;
        snprintf(out->impl, sizeof(out->impl), "gnutls");
    }
    return rc;
}

static int nagle_tickets_off(const struct bench_run *run, struct bench_sample *out)
{
    return nagle(run, run->extra, out);
}

static int nagle_tickets_on(const struct bench_run *run, struct bench_sample *out)
{
    return nagle(run, run->env, out);
}

/* Every handshake case: the same target and sides. */
#define HANDSHAKE_CASE                                                                             \
    .measure = &bench_handshakes, .target = HANDSHAKE_TARGET, .sides = BENCH_SIDES(handshakes)

/* The Nagle cases: tickets off in the left column, on (the default) in the right one. */
#define NAGLE_CASE                                                                                 \
    .measure = &bench_latency, .rounds = BENCH_ASYNC_ROUNDS,                                       \
    .left_name = "the tlsock server with tickets off (right: on, the default)",                    \
    .setup = nagle_setup, .teardown = nagle_teardown,                                              \
    .sides = {                                                                                     \
        {"tickets-off", BENCH_LAYER_TLSOCK, nagle_tickets_off},                                    \
        {"tickets-on", BENCH_LAYER_TLSOCK, nagle_tickets_on},                                      \
    }

static const struct bench_case cases[] = {
    {.name = "handshake-ecdsa-p256",
     .summary = "full TLS 1.3 handshakes on new connections, ECDSA P-256, no tickets (both sides)",
     .no_tickets = true,
     HANDSHAKE_CASE},
    {.name = "handshake-ecdsa-p256-tickets",
     .summary = "as handshake-ecdsa-p256, servers send tickets (both sides), client does not read",
     HANDSHAKE_CASE},
    {.name = "handshake-rsa2048",
     .summary = "full TLS 1.3 handshakes on new connections, RSA-2048, no tickets (both sides)",
     .key_type = "rsa-2048",
     .no_tickets = true,
     HANDSHAKE_CASE},
    {.name = "handshake-rsa2048-tickets",
     .summary = "as handshake-rsa2048, servers send tickets (both sides), client does not read",
     .key_type = "rsa-2048",
     HANDSHAKE_CASE},
    {.name = "handshake-ecdsa-p256-gnutls",
     .summary = "as handshake-ecdsa-p256, tlsock on GnuTLS against raw GnuTLS",
     .impl = TLSOCK_IMPL_GNUTLS,
     .rounds = BENCH_GNUTLS_ROUNDS,
     .no_tickets = true,
     HANDSHAKE_CASE},
    {.name = "handshake-ecdsa-p256-tickets-gnutls",
     .summary = "as handshake-ecdsa-p256-tickets, tlsock on GnuTLS against raw GnuTLS",
     .impl = TLSOCK_IMPL_GNUTLS,
     .rounds = BENCH_GNUTLS_ROUNDS,
     HANDSHAKE_CASE},
    {.name = "handshake-rsa2048-gnutls",
     .summary = "as handshake-rsa2048, tlsock on GnuTLS against raw GnuTLS",
     .key_type = "rsa-2048",
     .impl = TLSOCK_IMPL_GNUTLS,
     .rounds = BENCH_GNUTLS_ROUNDS,
     .no_tickets = true,
     HANDSHAKE_CASE},
    {.name = "handshake-rsa2048-tickets-gnutls",
     .summary = "as handshake-rsa2048-tickets, tlsock on GnuTLS against raw GnuTLS",
     .key_type = "rsa-2048",
     .impl = TLSOCK_IMPL_GNUTLS,
     .rounds = BENCH_GNUTLS_ROUNDS,
     HANDSHAKE_CASE},
    {.name = "resume-ecdsa-p256",
     .summary = "resumed TLS 1.3 handshakes (tickets) and full ones, same run, ECDSA P-256",
     .measure = &bench_resumption,
     .target = RESUME_TARGET,
     .sides = BENCH_SIDES(resumptions)},
    {.name = "resume-ecdsa-p256-gnutls",
     .summary = "as resume-ecdsa-p256, tlsock on GnuTLS against raw GnuTLS",
     .measure = &bench_resumption,
     .impl = TLSOCK_IMPL_GNUTLS,
     .rounds = BENCH_GNUTLS_ROUNDS,
     .target = RESUME_TARGET,
     .sides = BENCH_SIDES(resumptions)},
    {.name = "nagle",
     .summary = "handshake + first request, client with Nagle on, tlsock server tickets off / on",
     NAGLE_CASE},
    {.name = "nagle-gnutls",
     .summary = "as nagle, tlsock client and server on GnuTLS",
     .impl = TLSOCK_IMPL_GNUTLS,
     NAGLE_CASE},
};

const struct bench_cases bench_handshake_cases = BENCH_CASES(cases);
