/*
 * The memory-mode workload: both ends of one session in the calling thread, no sockets. Each
 * step writes one chunk on the client, moves the ciphertext to the server and reads all of its
 * plaintext there, so the figure is the cost of the TLS record layer plus the copies that a
 * program moving ciphertext itself has to make, and nothing of the kernel's.
 */
#include <stdio.h>
#include <string.h>

#include "bench.h"

int bench_run_memory(const struct bench_ops *ops, void *env, const struct bench_limits *limits,
                     struct bench_sample *out)
{
    const unsigned char *chunk = bench_payload();
    void *pair = NULL;
    int64_t start_ns = 0;
    int64_t elapsed_ns = 0;
    int64_t cpu0 = 0;
    int64_t cpu_ns = 0;
    int64_t budget_ns = (int64_t)(limits->seconds * 1e9);
    uint64_t sent = 0;
    uint64_t received = 0;
    size_t got = 0;
    int rc = BENCH_OK;

    memset(out, 0, sizeof(*out));
    if (limits->write_size == 0 || limits->write_size > BENCH_MAX_WRITE) {
        fprintf(stderr, "%s: bad write size %zu\n", ops->name, limits->write_size);
        rc = BENCH_ERROR;
        goto out;
    }
    /* The handshake is not timed: this case measures the record layer only. */
    rc = ops->mem_pair(env, &pair);
    if (rc != BENCH_OK) {
        goto out;
    }
    start_ns = bench_now_ns();
    cpu0 = bench_thread_cpu_ns();
    while (rc == BENCH_OK && sent < limits->max_count && elapsed_ns < budget_ns) {
        rc = ops->mem_transfer(pair, chunk, limits->write_size, &got);
        sent += limits->write_size;
        received += got;
        elapsed_ns = bench_now_ns() - start_ns;
    }
    cpu_ns = bench_thread_cpu_ns() - cpu0;
    ops->mem_close(pair);
    if (rc == BENCH_OK && received != sent) {
        fprintf(stderr, "%s: memory mode delivered %llu bytes of %llu\n", ops->name,
                (unsigned long long)received, (unsigned long long)sent);
        rc = BENCH_ERROR;
    }
    if (rc == BENCH_OK && received > 0 && elapsed_ns > 0) {
        double mib = (double)received / (1024.0 * 1024.0);
        out->count = received;
        out->rate = mib / ((double)elapsed_ns / 1e9);
        /* One thread does both ends' work: the same figure for both columns. */
        out->client_cpu_us = (double)cpu_ns / 1e3 / mib;
        out->server_cpu_us = out->client_cpu_us;
    } else if (rc == BENCH_OK) {
        fprintf(stderr, "%s: nothing was transferred\n", ops->name);
        rc = BENCH_ERROR;
    }

out:
    return rc;
}
