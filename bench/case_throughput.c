/*
 * Bulk transfer: one TLS 1.3 connection over loopback TCP, a client (the calling thread) writing
 * write_size bytes at a time for the run's duration and a server thread reading until
 * close_notify. The clock starts after the handshake and stops when the server reads
 * close_notify, so every byte counted was received and decrypted; the server checks that it read
 * every byte written. Besides MiB/s: each thread's CPU time and system calls per MiB, and the
 * writer's send calls per MiB (bench_syscalls, bench_send_calls).
 */
#include <stdio.h>

#include "bench.h"

/* Targets from docs/DESIGN.md, as ratios tlsock / raw. */
#define FD_TARGET       0.98 /* over tlsock's fd path */
#define CALLBACK_TARGET 0.95 /* over the generic callback path */
#define COALESCE_TARGET 1.00 /* large writes, which tlsock coalesces into fewer sends */

static int throughput(const struct bench_run *run, struct bench_sample *out)
{
    const struct bench_ops *ops = run->ops;
    const unsigned char *chunk = bench_payload();
    size_t chunk_len = run->limits.write_size;
    int64_t budget_ns = (int64_t)(run->limits.seconds * 1e9);
    struct bench_server srv;
    void *conn = NULL;
    int64_t start_ns = 0;
    int64_t cpu0 = 0;
    int64_t write_cpu_ns = 0;
    uint64_t sent = 0;
    uint64_t sends = 0;
    uint64_t calls = 0;
    int rc = bench_server_start(&srv, ops, run->env, BENCH_SERVE_DRAIN, 1);

    if (rc != BENCH_OK) {
        goto out;
    }
    rc = ops->connect(run->env, srv.port, &conn);
    if (rc != BENCH_OK) {
        goto stop;
    }
    snprintf(out->cipher, sizeof(out->cipher), "%s", ops->cipher(conn));
    snprintf(out->impl, sizeof(out->impl), "%s", ops->impl(conn));
    /* The clock starts after the handshake: this case measures the record layer only. */
    start_ns = bench_now_ns();
    cpu0 = bench_thread_cpu_ns();
    sends = bench_send_calls;
    calls = bench_syscalls;
    while (rc == BENCH_OK && sent < run->limits.max_count &&
           bench_now_ns() - start_ns < budget_ns) {
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
    calls = bench_syscalls - calls;

stop:
    /*
     * Closing first lets both ends' graceful closes run concurrently, and after a failure it
     * unblocks a server still reading this connection. The server stopped its clock at
     * close_notify, so this does not count.
     */
    ops->close(conn);
    if (rc == BENCH_OK) {
        rc = bench_server_stop(&srv);
    } else {
        (void)bench_server_stop(&srv);
    }
    if (rc == BENCH_OK && (srv.bytes != sent || sent == 0)) {
        fprintf(stderr, "%s: server read %llu bytes of %llu\n", ops->name,
                (unsigned long long)srv.bytes, (unsigned long long)sent);
        rc = BENCH_ERROR;
    }
    if (rc == BENCH_OK) {
        double mib = bench_mib(srv.bytes);

        out->count = srv.bytes;
        out->rate = mib / ((double)(srv.end_ns - start_ns) / 1e9);
        out->client_cpu_us = bench_us_per(write_cpu_ns, mib);
        out->server_cpu_us = bench_us_per(srv.serve_cpu_ns, mib);
        out->sends_per_mib = (double)sends / mib;
        out->client_syscalls = (double)calls / mib;
        out->server_syscalls = (double)srv.serve_syscalls / mib;
    }

out:
    return rc;
}

/* Every throughput case but throughput-callbacks: raw against tlsock's fd path. */
#define FD_CASE .measure = &bench_bulk, .sides = BENCH_SIDES(throughput)

static const struct bench_case cases[] = {
    {.name = "throughput-aes128gcm",
     .summary = "bulk transfer, TLS 1.3 AES-128-GCM, 16 KiB writes",
     .suite = "TLS_AES_128_GCM_SHA256",
     .write_size = BENCH_RECORD,
     .target = FD_TARGET,
     FD_CASE},
    {.name = "throughput-chacha20",
     .summary = "bulk transfer, TLS 1.3 ChaCha20-Poly1305, 16 KiB writes",
     .suite = "TLS_CHACHA20_POLY1305_SHA256",
     .write_size = BENCH_RECORD,
     .target = FD_TARGET,
     FD_CASE},
    /*
     * tlsock over tlsock_attach_io() with callbacks that recv() and send() on a blocking socket,
     * against raw OpenSSL; tlsock over its fd fast path runs in every round for reference.
     */
    {.name = "throughput-callbacks",
     .summary = "bulk transfer as throughput-aes128gcm, tlsock over user callbacks on the socket "
                "(tlsock_attach_io); reference: tlsock's fd fast path",
     .measure = &bench_bulk,
     .suite = "TLS_AES_128_GCM_SHA256",
     .write_size = BENCH_RECORD,
     .target = CALLBACK_TARGET,
     .sides = {{"raw", BENCH_LAYER_RAW, throughput},
               {"tlsock-io", BENCH_LAYER_TLSOCK_IO, throughput},
               {"tlsock-fd", BENCH_LAYER_TLSOCK, throughput}}},
    {.name = "throughput-coalesced-256k",
     .summary = "bulk transfer, TLS 1.3 AES-128-GCM, 256 KiB writes (tlsock coalesces records)",
     .suite = "TLS_AES_128_GCM_SHA256",
     .write_size = 256 * 1024,
     .target = COALESCE_TARGET,
     FD_CASE},
    {.name = "throughput-aes128gcm-gnutls",
     .summary = "as throughput-aes128gcm, tlsock on GnuTLS against raw GnuTLS",
     .suite = "TLS_AES_128_GCM_SHA256",
     .impl = TLSOCK_IMPL_GNUTLS,
     .write_size = BENCH_RECORD,
     .rounds = BENCH_GNUTLS_ROUNDS,
     .target = FD_TARGET,
     FD_CASE},
    {.name = "throughput-chacha20-gnutls",
     .summary = "as throughput-chacha20, tlsock on GnuTLS against raw GnuTLS",
     .suite = "TLS_CHACHA20_POLY1305_SHA256",
     .impl = TLSOCK_IMPL_GNUTLS,
     .write_size = BENCH_RECORD,
     .rounds = BENCH_GNUTLS_ROUNDS,
     .target = FD_TARGET,
     FD_CASE},
};

const struct bench_cases bench_throughput_cases = BENCH_CASES(cases);
