/*
 * tlsock-bench: the async cases (built only with the libuv driver, BENCH_HAVE_UV): the sides they
 * run (side_uv.c, side_blocking.c, side_stunnel.c), the idle-connection case (idle.c) and the
 * tlsock_uv server they share.
 */
#ifndef TLSOCK_BENCH_ASYNC_H
#define TLSOCK_BENCH_ASYNC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "bench.h"

/* Loops (threads) the async handshake clients run on; the server has one loop. */
#define BENCH_UV_CLIENT_LOOPS 2

/* Echo: the raw blocking echo on each side (OpenSSL or GnuTLS, from the config's impl). */
extern const struct bench_side bench_side_raw_echo;
/* Echo: a tlsock_uv client against a tlsock_uv server, each on a loop in a thread. */
extern const struct bench_side bench_side_uv_echo;
/* Echo with the raw OpenSSL blocking client against a tlsock_uv server. */
extern const struct bench_side bench_side_uv_server_echo;
/* Echo with the raw OpenSSL blocking client against stunnel in front of a plaintext echo. */
extern const struct bench_side bench_side_stunnel_echo;
/* Handshakes with limits->concurrency in flight: blocking threads, or tlsock_uv loops. */
extern const struct bench_side bench_side_raw_handshakes;
extern const struct bench_side bench_side_uv_handshakes;
/*
 * Idle connections: a server process (raw OpenSSL or GnuTLS on epoll, or tlsock_uv) holds
 * limits->concurrency connections made by a client process; the sample has the per-connection
 * growth of the server's memory.
 */
extern const struct bench_side bench_side_raw_idle;
extern const struct bench_side bench_side_uv_idle;

/* Why the stunnel case cannot run (no stunnel program), or NULL when it can. */
const char *bench_stunnel_missing(void);
/* The stunnel program's version line, "" if unknown; valid until the next call. */
const char *bench_stunnel_version(void);

/*
 * The entry point of the idle case's child processes (tlsock-bench re-executes itself with
 * BENCH_IDLE_CHILD_ARG as its first argument); returns the exit status.
 */
#define BENCH_IDLE_CHILD_ARG "--idle-child"
int bench_idle_child(int argc, char **argv);

/* What a tlsock_uv server does with the connections it accepts. */
enum bench_uv_mode {
    BENCH_UV_ECHO,  /* writes back what it reads */
    BENCH_UV_CLOSE, /* closes each right after the handshake */
};

struct srv_conn;
struct echo_buf;

/* A tlsock_uv server on a loop of its own, run by a thread of its own (side_uv.c). */
struct bench_uv_server {
    uv_loop_t loop;
    uv_async_t wake;       /* the stop request */
    uv_timer_t stop_guard; /* after the stop request: fails a close that never finishes */
    bool guarded;
    struct tlsock_uv_server *server;
    pthread_t thread;
    enum bench_uv_mode mode;
    uint16_t port;
    bool stopping;
    int rc;              /* first failure, BENCH_OK if none */
    uint64_t handshakes; /* clients handed to on_connect */
    uint64_t bytes;      /* echoed */
    int64_t echo_cpu0_ns;
    int64_t echo_cpu_ns;    /* from the echo connection's handshake to its close_notify */
    int64_t thread_cpu_ns;  /* the whole thread, once stopped */
    struct srv_conn *conns; /* connections handed to on_connect and not closed yet */
    struct echo_buf *pool;  /* echo: free copy buffers */
    int pooled;
};

#endif /* TLSOCK_BENCH_ASYNC_H */
