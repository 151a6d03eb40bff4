/*
 * The tlsock side's state, shared by its socket side (side_tlsock.c) and its memory-mode side
 * (side_tlsock_mem.c).
 */
#ifndef TLSOCK_BENCH_SIDE_TLSOCK_H
#define TLSOCK_BENCH_SIDE_TLSOCK_H

#include "bench.h"

struct tls_env {
    struct tlsock_ctx *server;
    struct tlsock_ctx *client;
    struct tlsock_opts accept_opts;
    struct tlsock_opts connect_opts;
};

/* Memory mode through tlsock_attach_mem (struct bench_ops mem_pair, mem_transfer, mem_close). */
int bench_tlsock_mem_pair(void *env, void **pair);
int bench_tlsock_mem_transfer(void *pair, const void *buf, size_t len, size_t *received);
void bench_tlsock_mem_close(void *pair);

#endif /* TLSOCK_BENCH_SIDE_TLSOCK_H */
