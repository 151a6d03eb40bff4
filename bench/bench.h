/*
 * tlsock-bench: what the cases share.
 *
 * A case measures one workload on two or three sides in the same process: the TLS implementation
 * used directly (the "raw" baseline: OpenSSL, or GnuTLS in the -gnutls cases), tlsock through its
 * public API, and in some cases a reference. The machinery (run.c) makes the certificates and the
 * layers' contexts once per case, warms every side up, runs rounds in which every side runs once
 * in rotating order, and keeps the medians and the per-round ratios; report.c prints them. A case
 * file (case_*.c) holds a workload and the table of the cases that run it.
 *
 * Blocking workloads are written once against struct bench_ops, a small table of connection
 * operations that every layer implements (side_raw*.c, side_tlsock*.c), so the raw baseline and
 * tlsock run the very same code. The async sides (libuv, async.h) run workloads of their own.
 */
#ifndef TLSOCK_BENCH_H
#define TLSOCK_BENCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tlsock.h"

/* Results of the bench's own functions. */
enum {
    BENCH_OK = 0,
    BENCH_ERROR = -1,       /* a failure; whoever saw it printed why */
    BENCH_AGAIN = -2,       /* accept: no client within the poll interval */
    BENCH_CLOSED = -3,      /* read: the peer sent close_notify */
    BENCH_UNSUPPORTED = -4, /* setup: the layer cannot select the requested suite */
};

/* How long an accept waits before returning BENCH_AGAIN, so servers notice a stop request. */
#define BENCH_ACCEPT_POLL_MS 100

/* Bound on any single blocking operation, so that a broken run fails instead of hanging. */
#define BENCH_IO_TIMEOUT_MS 10000

/* The host name both sides use for SNI and verification; the certificate names it. */
#define BENCH_SERVER_NAME "localhost"

/* One TLS record's worth of plaintext (RFC 8446 section 5.1): reads ask for this much. */
#define BENCH_RECORD (16 * 1024)

/* Largest write a case may use. */
#define BENCH_MAX_WRITE (256 * 1024)

/* What every layer of a case is set up with (run.c makes it once per case). */
struct bench_config {
    const char *ca_pem;   /* trust anchor for the client */
    const char *cert_pem; /* server certificate */
    const char *key_pem;  /* server key */
    const char *suite;    /* TLS 1.3 suite to select, NULL for the implementation's default */
    int impl;             /* TLSOCK_IMPL_OPENSSL or TLSOCK_IMPL_GNUTLS: tlsock's and the raw one */
    bool no_tickets;      /* servers send no session ticket (every layer); default: they do */
};

/* The operations a blocking workload uses. Connections and listeners are opaque to it. */
struct bench_ops {
    const char *name; /* "raw", "raw-gnutls" or "tlsock" */
    /* Creates the client and server contexts for a case; *out is passed to every call below. */
    int (*setup)(const struct bench_config *config, void **out);
    void (*teardown)(void *env);
    /* Listens on 127.0.0.1 with an ephemeral port. */
    int (*listen)(void *env, void **lis, uint16_t *port);
    void (*listen_close)(void *lis);
    /* The listening socket, for a server that also waits on something else (idle-block). */
    int (*listen_fd)(void *lis);
    /*
     * Waits for a client; BENCH_AGAIN when none came in a while (the raw sides: the listener's
     * BENCH_IO_TIMEOUT_MS; tlsock: the accept timeout). bench_server_stop() wakes it.
     */
    int (*accept)(void *env, void *lis, void **conn);
    /* Server side: runs the handshake on an accepted connection (or a memory-mode one). */
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

    /*
     * Memory mode: a connection with no transport, client or server; handshake and read return
     * BENCH_AGAIN when they need input. mem_drain takes the ciphertext it wrote (*n 0: none),
     * mem_feed gives it ciphertext that arrived.
     */
    int (*mem_new)(void *env, bool client, void **conn);
    int (*mem_drain)(void *conn, void *buf, size_t cap, size_t *n);
    int (*mem_feed)(void *conn, const void *buf, size_t len);

    /*
     * Client resumption (the resume cases). set_resume: whether the next connections offer the
     * session the client kept (true) or none (false, the default). keep_session: called once the
     * client has read the server's tickets, keeps the latest session for the next connection, as a
     * real client does; NULL when the layer does it by itself (tlsock's session cache). resumed:
     * whether the connection resumed a session.
     */
    void (*set_resume)(void *env, bool on);
    int (*keep_session)(void *conn);
    bool (*resumed)(void *conn);
};

/* Raw OpenSSL (side_raw.c), tlsock over its fd path and over user callbacks (side_tlsock.c). */
extern const struct bench_ops bench_raw_ops;
extern const struct bench_ops bench_tlsock_ops;
extern const struct bench_ops bench_tlsock_io_ops;

/* Raw GnuTLS and its version (side_raw_gnutls.c), only with GnuTLS (BENCH_HAVE_GNUTLS). */
extern const struct bench_ops bench_raw_gnutls_ops;
const char *bench_gnutls_version(void);

/* The raw baseline of @p impl; NULL for GnuTLS when the bench is built without it. */
const struct bench_ops *bench_raw_ops_for(int impl);

/* Limits of one measured run: it ends at whichever comes first. */
struct bench_limits {
    double seconds;
    uint64_t max_count; /* handshakes, or bytes */
    size_t write_size;  /* bytes per application write (throughput, memory, echo) */
    size_t window;      /* echo: bytes the client keeps in flight (written, not echoed yet) */
    int concurrency;    /* async handshakes: connections in flight; idle: connections to hold */
};

/* What one measured run produced. */
struct bench_sample {
    double rate;          /* MiB/s, handshakes/s, or (idle) RSS bytes per connection */
    double client_cpu_us; /* thread CPU time per handshake, or per MiB transferred */
    double server_cpu_us;
    double sends_per_mib; /* writer's send calls per MiB (throughput) */
    /* System calls per unit (bench_syscalls), client (writer) and server (reader) thread. */
    double client_syscalls;
    double server_syscalls;
    uint64_t count;  /* bytes, handshakes or connections */
    char cipher[64]; /* as negotiated (handshakes: the first connection) */
    char impl[16];   /* the implementation that carried it */
    /* Idle connections: the server process's growth per connection held, besides RSS. */
    double heap_per_conn;     /* malloc'ed bytes in use (mallinfo2) */
    double tls_heap_per_conn; /* of which the TLS library's (OpenSSL only; -1: not counted) */
    /* Resume cases: full handshakes/s of the same workload in the same run, and the timed
     * connections that resumed (rate and count are the resumed ones'). Threads cases: the
     * handshakes/s (rate is the server's CPU per handshake). */
    double full_rate;
    uint64_t resumed;
};

/* ---- Cases ---- */

/* The layer a side runs on; run.c sets each up once per case. */
enum bench_layer {
    BENCH_LAYER_RAW,       /* the case's raw baseline (OpenSSL or GnuTLS) */
    BENCH_LAYER_TLSOCK,    /* tlsock, fd fast path */
    BENCH_LAYER_TLSOCK_IO, /* tlsock over user callbacks (tlsock_attach_io) */
};

/* What one measured run of one side gets. */
struct bench_run {
    const struct bench_ops *ops;     /* the side's layer... */
    void *env;                       /* ...and its contexts */
    const struct bench_ops *raw_ops; /* the case's raw baseline, for a side that needs a raw */
    void *raw_env;                   /* client in front of another server */
    const struct bench_config *config;
    struct bench_limits limits;
    void *extra; /* what the case's setup made (stunnel) */
};

typedef int (*bench_run_fn)(const struct bench_run *run, struct bench_sample *out);

struct bench_side {
    const char *name; /* in --verbose rounds */
    enum bench_layer layer;
    bench_run_fn run;
};

/* A raw side and a tlsock side running the same workload: most cases. */
#define BENCH_SIDES(run)                                                                           \
    {                                                                                              \
        {"raw", BENCH_LAYER_RAW, (run)}, {"tlsock", BENCH_LAYER_TLSOCK, (run)},                    \
    }

/* The sides of a case, in the order of the result's arrays. */
enum { SIDE_RAW = 0, SIDE_TLSOCK = 1, SIDE_REFERENCE = 2, MAX_SIDES = 3 };

/* What a workload counts and how the table shows it; shared by the cases that run it. */
struct bench_measure {
    const char *unit;            /* of the rate: "MiB/s", "hs/s", "B/conn" */
    bool handshakes;             /* the runs' count limits are handshakes, not bytes */
    bool per_connection;         /* idle: memory per connection against a budget above raw */
    const char *client_cpu;      /* the row of the client's (writer's) CPU per unit; NULL: none */
    const char *server_cpu;      /* the server's (reader's); NULL: none */
    bool sends;                  /* a row of the writer's send calls per MiB */
    const char *client_syscalls; /* the row of the client's (writer's) system calls per unit */
    const char *server_syscalls; /* the server's (reader's); NULL: no such row */
    bool resumption;             /* rows of full handshakes and of the speed-up resumed / full */
    /* A row of a second rate per side (the samples' full_rate) and its per-round ratio; NULL:
     * none. Its unit is rate_unit. */
    const char *rate_row;
    const char *rate_unit;
    /* The main figure is a cost (CPU per handshake): the target is an upper bound on the ratio. */
    bool cost;
};

/*
 * The workloads' measures (report.c): bulk transfer with writer and reader, both ends in one
 * thread, handshakes, echo with client and server, memory per idle connection.
 */
extern const struct bench_measure bench_bulk;
extern const struct bench_measure bench_memory_mode;
extern const struct bench_measure bench_handshakes;
extern const struct bench_measure bench_echo;
extern const struct bench_measure bench_idle;
extern const struct bench_measure bench_resumption;
extern const struct bench_measure bench_latency;
extern const struct bench_measure bench_threads;

struct bench_case {
    const char *name;
    const char *summary;
    const struct bench_measure *measure;
    const char *key_type; /* of the certificates: "rsa-2048", NULL for ECDSA P-256 */
    const char *suite;    /* TLS 1.3 suite, NULL for the default */
    int impl;             /* TLSOCK_IMPL_GNUTLS for the -gnutls cases; otherwise OpenSSL */
    bool no_tickets;      /* servers of every layer send no session ticket (bench_config) */
    size_t write_size;    /* bytes per write */
    size_t window;        /* echo: bytes in flight */
    int concurrency;      /* async handshakes: in flight; idle: connections (--connections) */
    int rounds;           /* rounds when --rounds is not given; 0: the global default */
    bool one_round;       /* one run per side, no warm-up, whatever --rounds says (idle) */
    double target;        /* goal for the ratio tlsock / raw; 0: for information */
    double budget;        /* per_connection: bytes tlsock may use above raw */
    struct bench_side sides[MAX_SIDES];
    const char *left_name;       /* what the left column is when it is not the raw baseline */
    const char *reference_label; /* the reference row; default "  vs tlsock fd fast path" */
    /* Why the case cannot run on this machine (a missing program), or NULL. */
    const char *(*missing)(void);
    /* The program the case compares with and its version, for the header (stunnel). */
    const char *(*version)(void);
    /* Case-wide state for the sides (run->extra), made after the layers. */
    int (*setup)(const struct bench_config *config, void **extra);
    void (*teardown)(void *extra);
};

/* The cases of one case file. */
struct bench_cases {
    const struct bench_case *cases;
    size_t n;
};

#define BENCH_CASES(array)                                                                         \
    {                                                                                              \
        (array), sizeof(array) / sizeof((array)[0])                                                \
    }

extern const struct bench_cases bench_throughput_cases;
extern const struct bench_cases bench_memory_cases;
extern const struct bench_cases bench_handshake_cases;
extern const struct bench_cases bench_resume_redis_cases; /* skipped without Redis */
#ifdef BENCH_HAVE_UV
extern const struct bench_cases bench_echo_cases;
extern const struct bench_cases bench_stunnel_cases;
extern const struct bench_cases bench_async_handshake_cases;
extern const struct bench_cases bench_idle_cases;
extern const struct bench_cases bench_idle_block_cases;
extern const struct bench_cases bench_serve_threads_cases; /* skipped without the tlsock CLI */
extern const struct bench_cases bench_tunnel_cases;        /* skipped without haproxy, stunnel */
#endif

/* ---- Running cases (run.c) and reporting them (report.c) ---- */

#define MAX_ROUNDS 101

/*
 * Rounds per case by default; the -gnutls and the async cases run fewer, so that a full run
 * stays short (--rounds overrides them all).
 */
#define BENCH_ROUNDS        21
#define BENCH_GNUTLS_ROUNDS 15
#define BENCH_ASYNC_ROUNDS  11

struct bench_options {
    double seconds;
    int rounds;
    bool rounds_set; /* --rounds given: it overrides every case's own number */
    bool verbose;
    int connections; /* idle cases: connections held, 0 for each case's own */
};

/* A ratio over the rounds: the median of the per-round ratios, and the lowest and highest. */
struct bench_ratio {
    double median;
    double min;
    double max;
};

/* What one case produced: medians per side and per-round ratios. */
struct bench_result {
    bool ran;
    bool ok;
    bool skipped; /* cannot run here; note says why */
    int rounds;
    int sides;      /* 2, or 3 with the reference */
    double seconds; /* how long the case took */
    double rate[MAX_SIDES];
    double client_cpu_us[MAX_SIDES];
    double server_cpu_us[MAX_SIDES];
    double sends_per_mib[MAX_SIDES];
    double client_syscalls[MAX_SIDES];
    double server_syscalls[MAX_SIDES];
    double heap_per_conn[MAX_SIDES];
    double tls_heap_per_conn[MAX_SIDES]; /* <0: not counted */
    double full_rate[MAX_SIDES]; /* resume cases: full handshakes of the same workload; threads
                                    cases: handshakes/s (measure rate_row) */
    uint64_t count[MAX_SIDES];   /* handshakes timed over all rounds */
    uint64_t resumed[MAX_SIDES]; /* of which resumed (resume cases) */
    /*
     * Medians of the per-round ratios tlsock / raw: each round's runs are adjacent in time, so a
     * ratio within a round is less exposed to changing machine load than a ratio of medians.
     */
    struct bench_ratio rate_ratio;
    struct bench_ratio reference_ratio; /* tlsock / reference, when there is one */
    struct bench_ratio full_ratio;      /* resume cases: tlsock / raw on full handshakes */
    double speedup[MAX_SIDES];          /* resume cases: median per-round resumed / full rate */
    double client_cpu_ratio;
    double server_cpu_ratio;
    double sends_ratio;
    double client_syscalls_ratio;
    double server_syscalls_ratio;
    char cipher[MAX_SIDES][64];
    char impl[MAX_SIDES][16];
    int connections;
    char note[512];
};

/*
 * Runs @p bc: certificates, layers, warm-up, then the rounds; prints one progress line to stderr
 * when done. Returns BENCH_OK (res->skipped when it cannot run here) or an error.
 */
int bench_run_case(const struct bench_case *bc, const struct bench_options *opts,
                   struct bench_result *res);

/* The target column: ">= 0.98 met", "<= raw+1024 MISSED", "(information)". */
void bench_target(const struct bench_case *bc, const struct bench_result *res, char *buf,
                  size_t len);

/*
 * The ratio tlsock / raw a chart shows for a case, and its target as a ratio (0: none): the
 * per-round ratios, or for an idle case (one round, a budget in bytes) the ratio of the two
 * figures and (raw + budget) / raw.
 */
struct bench_ratio bench_chart_ratio(const struct bench_case *bc, const struct bench_result *res,
                                     double *target);

/*
 * Writes the results of the cases that ran to @p path as tab-separated values, one line per
 * case, for scripts/bench-chart (the columns are in docs/BENCHMARKS.md). Returns BENCH_OK or
 * BENCH_ERROR (printed).
 */
int bench_write_data(const char *path, const struct bench_case *const *cases, size_t ncases,
                     const struct bench_result *results);

/* Prints the results table and the notes under it for the cases that ran. */
void bench_print_table(const struct bench_case *const *cases, size_t ncases,
                       const struct bench_result *results, int default_rounds);

/* ---- Helpers for the workloads ---- */

/* Monotonic and per-thread CPU clocks, in nanoseconds (run.c). */
int64_t bench_now_ns(void);
int64_t bench_thread_cpu_ns(void);

/* MiB in @p bytes; microseconds of @p ns per unit of @p units (CPU time per MiB or handshake). */
double bench_mib(uint64_t bytes);
double bench_us_per(int64_t ns, double units);

/* BENCH_MAX_WRITE bytes of data to write; call from the main thread. */
const unsigned char *bench_payload(void);

/*
 * System calls made by the calling thread so far, and of them the socket writes (write, writev,
 * send, sendto, sendmsg), counted at libc's functions for every side alike (syscount.c).
 * Thread-local, so that each thread counts its own: take the difference over what you measure.
 */
extern _Thread_local uint64_t bench_syscalls;
extern _Thread_local uint64_t bench_send_calls;

/*
 * A CA and a server certificate it signs for BENCH_SERVER_NAME and 127.0.0.1, with keys of
 * @p key_type: "rsa-2048", or NULL for ECDSA P-256 (certs.c).
 */
struct bench_certs {
    char *ca_cert;
    char *ca_key;
    char *cert;
    char *key;
};

int bench_certs_new(const char *key_type, struct bench_certs *out);
void bench_certs_free(struct bench_certs *certs);

/*
 * The server side of the workloads on struct bench_ops (server.c): @p threads threads accepting
 * and handshaking clients on one listener until stopped (a thread-per-connection server when
 * there are several), each then serving its connection as @p mode says.
 */
enum bench_serve {
    BENCH_SERVE_CLOSE, /* close each client right after its handshake, until stopped */
    BENCH_SERVE_DRAIN, /* read one connection until close_notify, then end */
    BENCH_SERVE_ECHO,  /* write back what one connection sends until close_notify, then end */
    BENCH_SERVE_REPLY, /* write back one read's worth of each client's bytes, close, until stopped
                        */
};

#define BENCH_MAX_SERVER_THREADS 64

struct bench_server {
    const struct bench_ops *ops;
    void *env;
    enum bench_serve serve;
    void *lis;
    uint16_t port;
    int threads;
    pthread_t thread[BENCH_MAX_SERVER_THREADS];
    atomic_bool stop;
    atomic_int running;
    atomic_int rc;                   /* a failure, BENCH_OK if none */
    atomic_uint_fast64_t handshakes; /* completed server handshakes */
    atomic_int_fast64_t cpu_ns;      /* CPU time of all its threads */
    atomic_uint_fast64_t syscalls;   /* system calls of all its threads (bench_syscalls) */
    uint64_t bytes;                  /* DRAIN and ECHO: application bytes read */
    int64_t end_ns;                  /* when close_notify arrived */
    int64_t serve_cpu_ns;            /* CPU time spent serving the connection */
    uint64_t serve_syscalls;         /* system calls made serving it */
};

int bench_server_start(struct bench_server *srv, const struct bench_ops *ops, void *env,
                       enum bench_serve mode, int threads);
/* Stops a started server; returns its failure or BENCH_OK. */
int bench_server_stop(struct bench_server *srv);

/*
 * Plain loopback TCP (tcp.c). @p side names the caller in error messages.
 * bench_tcp_listen, bench_tcp_accept and bench_tcp_dial are the raw baselines' lean sockets: a
 * blocking listener with TCP_NODELAY and BENCH_IO_TIMEOUT_MS send and receive timeouts, which the
 * accepted sockets inherit (no call per connection), accept4 that blocks until a client comes or
 * the timeout (BENCH_AGAIN), and a client socket with TCP_NODELAY only (its peer's timeouts bound
 * it). bench_tcp_connect is a client socket with TCP_NODELAY and the timeouts, for the cases' own
 * clients. bench_tcp_close is tlsock's graceful close: half-close, bounded drain, close.
 */
int bench_tcp_listen_fd(const char *side, bool nonblocking, uint16_t *port);
int bench_tcp_listen(const char *side, void **lis, uint16_t *port);
void bench_tcp_listen_close(void *lis);
/* The socket of a bench_tcp_listen() listener. */
int bench_tcp_listener_fd(void *lis);
int bench_tcp_accept(const char *side, void *lis, int *fd);
int bench_tcp_connect(const char *side, uint16_t port, int *fd);
int bench_tcp_dial(const char *side, uint16_t port, int *fd);
void bench_tcp_options(int fd);
void bench_tcp_close(int fd);
/* Connects to 127.0.0.1:@p port and hangs up (wakes a server in accept); false if refused. */
bool bench_tcp_poke(uint16_t port);

/* Prints "raw: what: <OpenSSL error queue>" to stderr and clears the queue. */
void bench_ssl_error(const char *what);

#endif /* TLSOCK_BENCH_H */
