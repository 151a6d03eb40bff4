/*
 * Memory mode: both ends of one TLS 1.3 session in the calling thread, no sockets. Each step
 * writes one chunk on the client, moves its ciphertext to the server (drained into a 64 KiB
 * buffer, fed to the other end) and reads all the plaintext the server can (16 KiB at a time,
 * until it wants more input), so the figure is the cost of the TLS record layer plus the copies
 * that a program moving ciphertext itself has to make, and nothing of the kernel's. Every step
 * checks that the server read all the plaintext the client wrote. The handshake is not timed.
 * Raw: two SSL objects over OpenSSL memory BIOs; tlsock: tlsock_attach_mem (side_*.c).
 */
#include <stdio.h>

#include "bench.h"

/* From docs/DESIGN.md: memory mode at least 0.95 of raw OpenSSL over memory BIOs. */
#define MEMORY_TARGET 0.95
/* Ciphertext moved per drain and feed. */
#define MOVE_SIZE (64 * 1024)
/* A TLS 1.3 handshake takes a few flights; far more means the two ends are stuck. */
#define HANDSHAKE_MAX_STEPS 64

static unsigned char move_buf[MOVE_SIZE];
static unsigned char sink[BENCH_RECORD];

/* Moves all of @p from's output to @p to; *moved says whether there was any. */
static int move(const struct bench_ops *ops, void *from, void *to, bool *moved)
{
    size_t n = 0;
    int rc = ops->mem_drain(from, move_buf, sizeof(move_buf), &n);

    while (rc == BENCH_OK && n > 0) {
        *moved = true;
        rc = ops->mem_feed(to, move_buf, n);
        if (rc == BENCH_OK) {
            rc = ops->mem_drain(from, move_buf, sizeof(move_buf), &n);
        }
    }
    return rc;
}

/* A handshake step of @p end, its output moved to @p peer: BENCH_OK once done, or BENCH_AGAIN. */
static int step(const struct bench_ops *ops, void *end, void *peer, bool *moved)
{
    int rc = ops->handshake(end);
    int mv = rc == BENCH_ERROR ? BENCH_OK : move(ops, end, peer, moved);

    return mv == BENCH_OK ? rc : mv;
}

static int handshake(const struct bench_ops *ops, void *client, void *server)
{
    int rc = BENCH_AGAIN;

    /* Until both ends are done and no flight (the server's session tickets, say) is in transit. */
    for (int steps = 0; rc == BENCH_AGAIN && steps < HANDSHAKE_MAX_STEPS; steps++) {
        bool moved = false;
        int c = step(ops, client, server, &moved);
        int s = c == BENCH_ERROR ? BENCH_ERROR : step(ops, server, client, &moved);

        if (c == BENCH_ERROR || s == BENCH_ERROR) {
            rc = BENCH_ERROR;
        } else if (c == BENCH_OK && s == BENCH_OK && !moved) {
            rc = BENCH_OK;
        }
    }
    if (rc == BENCH_AGAIN) {
        fprintf(stderr, "%s: memory-mode handshake did not finish\n", ops->name);
        rc = BENCH_ERROR;
    }
    return rc;
}

/* One step: @p len bytes written on the client; *received is what the server read of them. */
static int transfer(const struct bench_ops *ops, void *client, void *server, const void *buf,
                    size_t len, size_t *received)
{
    bool moved = false;
    size_t n = 0;
    int rc = ops->write(client, buf, len);

    *received = 0;
    if (rc == BENCH_OK) {
        rc = move(ops, client, server, &moved);
    }
    while (rc == BENCH_OK) {
        rc = ops->read(server, sink, sizeof(sink), &n);
        *received += rc == BENCH_OK ? n : 0;
    }
    return rc == BENCH_AGAIN ? BENCH_OK : rc;
}

static int memory(const struct bench_run *run, struct bench_sample *out)
{
    const struct bench_ops *ops = run->ops;
    const unsigned char *chunk = bench_payload();
    size_t len = run->limits.write_size;
    int64_t budget_ns = (int64_t)(run->limits.seconds * 1e9);
    void *client = NULL;
    void *server = NULL;
    int64_t start_ns = 0;
    int64_t elapsed_ns = 0;
    int64_t cpu0 = 0;
    int64_t cpu_ns = 0;
    uint64_t sent = 0;
    uint64_t received = 0;
    size_t got = 0;
    int rc = ops->mem_new(run->env, true, &client);

    if (rc == BENCH_OK) {
        rc = ops->mem_new(run->env, false, &server);
    }
    if (rc == BENCH_OK) {
        rc = handshake(ops, client, server);
    }
    start_ns = bench_now_ns();
    cpu0 = bench_thread_cpu_ns();
    while (rc == BENCH_OK && sent < run->limits.max_count && elapsed_ns < budget_ns) {
        rc = transfer(ops, client, server, chunk, len, &got);
        sent += len;
        received += got;
        elapsed_ns = bench_now_ns() - start_ns;
    }
    cpu_ns = bench_thread_cpu_ns() - cpu0;
    ops->close(client);
    ops->close(server);
    if (rc == BENCH_OK && (received != sent || elapsed_ns == 0)) {
        fprintf(stderr, "%s: memory mode delivered %llu bytes of %llu\n", ops->name,
                (unsigned long long)received, (unsigned long long)sent);
        rc = BENCH_ERROR;
    }
    if (rc == BENCH_OK) {
        out->count = received;
        out->rate = bench_mib(received) / ((double)elapsed_ns / 1e9);
        /* One thread does both ends' work: one figure. */
        out->client_cpu_us = bench_us_per(cpu_ns, bench_mib(received));
    }
    return rc;
}

static const struct bench_case cases[] = {
    {.name = "memory-aes128gcm",
     .summary = "both ends in memory mode in one thread (raw: memory BIOs), AES-128-GCM, "
                "16 KiB writes",
     .measure = &bench_memory_mode,
     .suite = "TLS_AES_128_GCM_SHA256",
     .write_size = BENCH_RECORD,
     .target = MEMORY_TARGET,
     .sides = BENCH_SIDES(memory)},
};

const struct bench_cases bench_memory_cases = BENCH_CASES(cases);
