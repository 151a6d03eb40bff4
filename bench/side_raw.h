/*
 * The raw OpenSSL baseline's state, shared by its socket side (side_raw.c) and its memory-mode
 * side (side_raw_mem.c).
 */
#ifndef TLSOCK_BENCH_SIDE_RAW_H
#define TLSOCK_BENCH_SIDE_RAW_H

#include <openssl/ssl.h>

#include "bench.h"

struct raw_env {
    SSL_CTX *server;
    SSL_CTX *client;
};

/* Memory mode over OpenSSL memory BIOs (struct bench_ops mem_pair, mem_transfer, mem_close). */
int bench_raw_mem_pair(void *env, void **pair);
int bench_raw_mem_transfer(void *pair, const void *buf, size_t len, size_t *received);
void bench_raw_mem_close(void *pair);

#endif /* TLSOCK_BENCH_SIDE_RAW_H */
