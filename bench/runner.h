/*
 * tlsock-bench: the cases, running them (run_case.c) and reporting them (report.c).
 */
#ifndef TLSOCK_BENCH_RUNNER_H
#define TLSOCK_BENCH_RUNNER_H

#include <stdbool.h>
#include <stddef.h>

#include "bench.h"

#define MAX_ROUNDS 101

enum case_kind {
    KIND_THROUGHPUT,
    KIND_HANDSHAKE,
    KIND_MEMORY,
    KIND_ECHO,            /* async: echo through a bounded window, MiB/s */
    KIND_ASYNC_HANDSHAKE, /* async: handshakes with several in flight, hs/s */
    KIND_IDLE,            /* async: server memory per idle connection, bytes */
};

/* The sides of a case, in the order of struct case_result's arrays. */
enum { SIDE_RAW = 0, SIDE_TLSOCK = 1, SIDE_REFERENCE = 2, MAX_SIDES = 3 };

struct bench_case {
    const char *name;
    enum case_kind kind;
    const char *key_type; /* for tlsock__cert_generate */
    const char *suite;    /* TLS 1.3 suite, NULL for the default */
    size_t write_size;    /* bytes per write (throughput, memory) */
    bool fd_callbacks;    /* the tlsock side moves socket bytes through the callback path */
    bool reference;       /* also run tlsock in its default configuration, for information */
    double target;        /* goal for the ratio tlsock / raw */
    int impl;             /* TLSOCK_IMPL_GNUTLS for the -gnutls cases; otherwise OpenSSL */
    int rounds;           /* rounds when --rounds is not given; 0: the global default */
    const char *summary;
    /*
     * The async cases run whole-workload sides (struct bench_side) instead of struct bench_ops;
     * they are built only with the libuv driver (BENCH_HAVE_UV), otherwise sides[] is empty
     * and the case is skipped.
     */
    bool async;
    const struct bench_side *sides[MAX_SIDES];
    size_t window;         /* echo: bytes in flight */
    int concurrency;       /* async handshakes: in flight; idle: connections (--connections) */
    bool fixed_rounds;     /* --rounds does not apply (the idle cases: one round) */
    double budget;         /* idle: bytes per connection tlsock may use above raw; <0: none */
    const char *left_name; /* the left column when it is not the raw implementation */
    const char *reference_label; /* the reference side's row */
    /* Why the case cannot run on this machine (a missing program), or NULL. */
    const char *(*missing)(void);
};

/* A ratio's median over the rounds and its quartiles. */
struct ratio {
    double median;
    double q1;
    double q3;
};

/* What one case produced: medians per side and per-round ratios. */
struct case_result {
    bool ran;
    bool ok;
    bool skipped; /* its implementation is not built in; note says so */
    int rounds;
    int sides; /* 2, or 3 with the reference */
    double rate[MAX_SIDES];
    double client_cpu_us[MAX_SIDES];
    double server_cpu_us[MAX_SIDES];
    double sends_per_mib[MAX_SIDES];
    /*
     * Medians of the per-round ratios tlsock / raw: each round's runs are adjacent in time, so a
     * ratio within a round is less exposed to changing machine load than a ratio of medians.
     */
    struct ratio rate_ratio;
    struct ratio reference_ratio; /* tlsock / reference, when there is one */
    double client_cpu_ratio;
    double server_cpu_ratio;
    double sends_ratio;
    char cipher[MAX_SIDES][64];
    char impl[MAX_SIDES][16];
    /* Idle cases: medians of the per-connection growth (rate[] holds the RSS figure). */
    double heap_per_conn[MAX_SIDES];
    double tls_heap_per_conn[MAX_SIDES]; /* <0: not counted */
    int connections;
    char note[512];
};

struct run_options {
    double seconds;
    int rounds;
    bool rounds_set; /* --rounds given: it overrides every case's own number */
    bool verbose;
    int connections; /* idle cases: connections held, 0 for each case's own */
};

/*
 * Runs @p bc: certificates, contexts, warm-up, then the rounds. Returns BENCH_OK or an error;
 * BENCH_OK with res->skipped when the case's implementation is not available.
 */
int run_case(const struct bench_case *bc, const struct run_options *opts, struct case_result *res);

/*
 * Prints the results table and the notes under it for the cases that ran; a case that ran a
 * number of rounds other than @p default_rounds says so.
 */
void print_table(const struct bench_case *cases, size_t ncases, const struct case_result *results,
                 int default_rounds);

#endif /* TLSOCK_BENCH_RUNNER_H */
