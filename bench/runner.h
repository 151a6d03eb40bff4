/*
 * tlsock-bench: the cases, running them (run_case.c) and reporting them (report.c).
 */
#ifndef TLSOCK_BENCH_RUNNER_H
#define TLSOCK_BENCH_RUNNER_H

#include <stdbool.h>
#include <stddef.h>

#include "bench.h"

#define MAX_ROUNDS 101

enum case_kind { KIND_THROUGHPUT, KIND_HANDSHAKE, KIND_MEMORY };

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
};

/* The sides of a case, in the order of struct case_result's arrays. */
enum { SIDE_RAW = 0, SIDE_TLSOCK = 1, SIDE_REFERENCE = 2, MAX_SIDES = 3 };

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
    char note[256];
};

struct run_options {
    double seconds;
    int rounds;
    bool rounds_set; /* --rounds given: it overrides every case's own number */
    bool verbose;
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
