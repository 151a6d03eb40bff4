/*
 * Full handshakes: the client (the calling thread) connects over loopback TCP, completes a full
 * TLS 1.3 handshake and closes right away, again and again for the run's duration, one at a time;
 * the server thread accepts, handshakes and closes. No resumption. Besides handshakes per second:
 * client and server CPU time per handshake.
 */
#include <stdio.h>

#include "bench.h"

/* From docs/DESIGN.md: full handshakes at least 0.97 of raw. */
#define HANDSHAKE_TARGET 0.97

static int handshakes(const struct bench_run *run, struct bench_sample *out)
{
    const struct bench_ops *ops = run->ops;
    int64_t budget_ns = (int64_t)(run->limits.seconds * 1e9);
    struct bench_server srv;
    int64_t start_ns;
    int64_t elapsed_ns = 0;
    int64_t cpu0;
    int64_t cpu_ns;
    uint64_t n = 0;
    int rc = bench_server_start(&srv, ops, run->env, BENCH_SERVE_CLOSE, 1);

    if (rc != BENCH_OK) {
        return rc;
    }
    start_ns = bench_now_ns();
    cpu0 = bench_thread_cpu_ns();
    while (rc == BENCH_OK && n < run->limits.max_count && elapsed_ns < budget_ns) {
        void *conn = NULL;

        rc = ops->connect(run->env, srv.port, &conn);
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
    cpu_ns = bench_thread_cpu_ns() - cpu0;
    if (rc == BENCH_OK) {
        rc = bench_server_stop(&srv);
    } else {
        (void)bench_server_stop(&srv);
    }
    if (rc == BENCH_OK && (n == 0 || srv.handshakes == 0)) {
        fprintf(stderr, "%s: no handshake completed\n", ops->name);
        rc = BENCH_ERROR;
    }
    if (rc == BENCH_OK) {
        out->count = n;
        out->rate = (double)n / ((double)elapsed_ns / 1e9);
        out->client_cpu_us = bench_us_per(cpu_ns, (double)n);
        out->server_cpu_us = bench_us_per(srv.cpu_ns, (double)srv.handshakes);
    }
    return rc;
}

/* Every handshake case: the same target and sides. */
#define HANDSHAKE_CASE                                                                             \
    .measure = &bench_handshakes, .target = HANDSHAKE_TARGET, .sides = BENCH_SIDES(handshakes)

static const struct bench_case cases[] = {
    {.name = "handshake-ecdsa-p256",
     .summary = "full TLS 1.3 handshakes on new connections, ECDSA P-256 certificates",
     HANDSHAKE_CASE},
    {.name = "handshake-rsa2048",
     .summary = "full TLS 1.3 handshakes on new connections, RSA-2048 certificates",
     .key_type = "rsa-2048",
     HANDSHAKE_CASE},
    {.name = "handshake-ecdsa-p256-gnutls",
     .summary = "as handshake-ecdsa-p256, tlsock on GnuTLS against raw GnuTLS",
     .impl = TLSOCK_IMPL_GNUTLS,
     .rounds = BENCH_GNUTLS_ROUNDS,
     HANDSHAKE_CASE},
    {.name = "handshake-rsa2048-gnutls",
     .summary = "as handshake-rsa2048, tlsock on GnuTLS against raw GnuTLS",
     .key_type = "rsa-2048",
     .impl = TLSOCK_IMPL_GNUTLS,
     .rounds = BENCH_GNUTLS_ROUNDS,
     HANDSHAKE_CASE},
};

const struct bench_cases bench_handshake_cases = BENCH_CASES(cases);
