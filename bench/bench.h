/*
 * tlsock-bench: shared declarations.
 *
 * Every case runs the same workload at least twice per round, once through the public tlsock API
 * and once through the implementation under it used directly (the "raw" baseline: OpenSSL, or
 * GnuTLS in the -gnutls cases); some cases add a third run, tlsock in
 * its default configuration, for reference. All go through one small table of operations,
 * struct bench_ops, so the workload code is literally the same for all and only the TLS layer
 * under it differs.
 */
#ifndef TLSOCK_BENCH_H
#define TLSOCK_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tlsock.h"

/* Results of bench_ops operations. */
enum {
    BENCH_OK = 0,
    BENCH_ERROR = -1,       /* a failure; the side printed why */
    BENCH_AGAIN = -2,       /* accept: no client within the poll interval */
    BENCH_CLOSED = -3,      /* read: the peer sent close_notify */
    BENCH_UNSUPPORTED = -4, /* setup: the side cannot select the requested suite */
};

/* How long an accept waits before returning BENCH_AGAIN, so servers notice a stop request. */
#define BENCH_ACCEPT_POLL_MS 100

/* Bound on any single blocking operation, so that a broken run fails instead of hanging. */
#define BENCH_IO_TIMEOUT_MS 10000

/* The host name both sides use for SNI and verification; the certificate names it. */
#define BENCH_SERVER_NAME "localhost"

/* What one side (raw OpenSSL or tlsock) needs for a case: contexts made once per case. */
struct bench_side_config {
    const char *ca_pem;   /* trust anchor for the client */
    const char *cert_pem; /* server certificate */
    const char *key_pem;  /* server key */
    const char *suite;    /* TLS 1.3 suite to select, NULL for the implementation's default */
    bool fd_callbacks;    /* tlsock: move socket bytes through the generic callback path */
    int impl;             /* tlsock: TLSOCK_IMPL_OPENSSL or TLSOCK_IMPL_GNUTLS for both contexts */
};

/* The operations a workload uses. Connections and listeners are opaque to the workload. */
struct bench_ops {
    const char *name; /* "raw", "raw-gnutls" or "tlsock" */
    /* Creates the client and server contexts for a case; *out is passed to every call below. */
    int (*setup)(const struct bench_side_config *config, void **out);
    void (*teardown)(void *env);
    /* Listens on 127.0.0.1 with an ephemeral port. */
    int (*listen)(void *env, void **lis, uint16_t *port);
    void (*listen_close)(void *lis);
    /* Waits up to BENCH_ACCEPT_POLL_MS for a client; BENCH_AGAIN when none came. */
    int (*accept)(void *env, void *lis, void **conn);
    /* Server side: runs the handshake on an accepted connection. */
    int (*handshake)(void *conn);
    /* Client side: TCP connect to 127.0.0.1:@p port and a full handshake. */
    int (*connect)(void *env, uint16_t port, void **conn);
    /* Writes all @p len bytes. */
    int (*write)(void *conn, const void *buf, size_t len);
    /* Reads at least one byte; BENCH_CLOSED at close_notify. */
    int (*read)(void *conn, void *buf, size_t len, size_t *nread);
    /* Sends close_notify. */
    int (*shutdown)(void *conn);
    /* Sends close_notify if not done yet, closes the socket and frees the connection. */
    void (*close)(void *conn);
    /* The negotiated cipher suite, valid until close. */
    const char *(*cipher)(void *conn);
    /* The implementation that carried the connection, e.g. "gnutls"; valid until close. */
    const char *(*impl)(void *conn);

    /* Memory mode: a client and a server connection with no transport, handshaken in memory. */
    int (*mem_pair)(void *env, void **pair);
    /*
     * Memory mode: the client writes @p len bytes, its ciphertext is moved to the server, and the
     * server reads all the plaintext it can; *received is the plaintext it got.
     */
    int (*mem_transfer)(void *pair, const void *buf, size_t len, size_t *received);
    void (*mem_close)(void *pair);
};

extern const struct bench_ops bench_raw_ops;
extern const struct bench_ops bench_tlsock_ops;
/* Defined only when the bench is built with GnuTLS (BENCH_HAVE_GNUTLS, see CMakeLists.txt). */
extern const struct bench_ops bench_raw_gnutls_ops;

/* GnuTLS's version as the raw GnuTLS baseline sees it (side_raw_gnutls.c). */
const char *bench_gnutls_version(void);

/* Limits of one measured run: it ends at whichever comes first. */
struct bench_limits {
    double seconds;
    uint64_t max_count; /* handshakes, or bytes for throughput */
    size_t write_size;  /* bytes per application write (throughput, memory, echo) */
    size_t window;      /* echo: bytes the client keeps in flight (written, not echoed yet) */
    int concurrency;    /* async handshakes: connections in flight; idle: connections to hold */
};

/* Largest write_size a case may use. */
#define BENCH_MAX_WRITE (256 * 1024)

/* What one measured run produced. */
struct bench_sample {
    double rate;          /* MiB/s or handshakes/s */
    double client_cpu_us; /* thread CPU time per handshake, or per MiB transferred */
    double server_cpu_us;
    double sends_per_mib; /* writer's send calls per MiB (throughput) */
    uint64_t count;       /* bytes or handshakes */
    char cipher[64];      /* as negotiated (socket cases; handshakes: the first connection) */
    char impl[16];        /* the implementation that carried it (socket cases) */
    /* Idle connections (bench/idle.c): the server process's growth per connection held. */
    double rss_per_conn;      /* resident set size, bytes */
    double heap_per_conn;     /* malloc'ed bytes in use (mallinfo2), bytes */
    double tls_heap_per_conn; /* of which the TLS library's (OpenSSL only; -1: not counted) */
};

/*
 * Send calls made by the calling thread: tlsock's send() through a linker wrap (sendcount.c),
 * the raw baseline's socket writes through a BIO callback. Thread-local, so the server thread's
 * few writes (session tickets) do not count against the writer.
 */
extern _Thread_local uint64_t bench_send_calls;

/* Bulk transfer client -> server over loopback TCP in writes of limits->write_size bytes. */
int bench_run_throughput(const struct bench_ops *ops, void *env, const struct bench_limits *limits,
                         struct bench_sample *out);

/* Both ends in memory mode in the calling thread: writes moved to the reader by copying. */
int bench_run_memory(const struct bench_ops *ops, void *env, const struct bench_limits *limits,
                     struct bench_sample *out);

/* Full handshakes on new TCP connections, each closed right after the handshake. */
int bench_run_handshakes(const struct bench_ops *ops, void *env, const struct bench_limits *limits,
                         struct bench_sample *out);

/*
 * Echo over loopback TCP (the async cases' baseline): the client writes limits->write_size bytes
 * at a time and keeps limits->window bytes in flight, the server writes back what it reads, both
 * through @p ops on blocking sockets. The rate counts bytes that came back.
 */
int bench_run_echo(const struct bench_ops *ops, void *env, const struct bench_limits *limits,
                   struct bench_sample *out);

/*
 * The client half of bench_run_echo, against any echo server listening on 127.0.0.1:@p port
 * (tlsock_uv, stunnel); fills the rate and the client's CPU time, not the server's.
 */
int bench_echo_client(const struct bench_ops *ops, void *env, uint16_t port,
                      const struct bench_limits *limits, struct bench_sample *out);

/*
 * Full handshakes with limits->concurrency in flight on blocking sockets: as many client threads,
 * each connecting, handshaking and closing in a loop, and as many server threads accepting on one
 * listener (a thread-per-connection server), so that both cores stay busy as they do in the
 * async runs.
 */
int bench_run_handshakes_parallel(const struct bench_ops *ops, void *env,
                                  const struct bench_limits *limits, struct bench_sample *out);

/*
 * A side that runs a whole workload itself (the async cases, whose tlsock side is a libuv loop
 * and does not fit struct bench_ops): set up once per case, run once per round.
 */
struct bench_side {
    const char *name;
    int (*setup)(const struct bench_side_config *config, void **out);
    void (*teardown)(void *env);
    int (*run)(void *env, const struct bench_limits *limits, struct bench_sample *out);
};

/* BENCH_MAX_WRITE bytes of data to write; call from the main thread. */
const unsigned char *bench_payload(void);

/* Monotonic and per-thread CPU clocks, in nanoseconds. */
int64_t bench_now_ns(void);
int64_t bench_thread_cpu_ns(void);

/*
 * Plain loopback TCP for the raw baselines (tcp.c): blocking sockets with TCP_NODELAY and
 * BENCH_IO_TIMEOUT_MS send and receive timeouts, as tlsock sets them. @p side names the caller
 * in error messages. bench_tcp_accept waits up to BENCH_ACCEPT_POLL_MS (BENCH_AGAIN).
 * bench_tcp_close is tlsock's graceful close: half-close, bounded drain, close.
 */
int bench_tcp_listen(const char *side, void **lis, uint16_t *port);
void bench_tcp_listen_close(void *lis);
int bench_tcp_accept(const char *side, void *lis, int *fd);
int bench_tcp_connect(const char *side, uint16_t port, int *fd);
void bench_tcp_close(int fd);

/* Prints "what: <OpenSSL error queue>" to stderr and clears the queue. */
void bench_ssl_error(const char *what);

#endif /* TLSOCK_BENCH_H */
