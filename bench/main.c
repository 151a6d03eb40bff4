/*
 * tlsock-bench: tlsock against raw OpenSSL, same process, same workload, interleaved rounds.
 *
 *   tlsock-bench [--list] [--seconds S] [--rounds N] [--verbose] [CASE...]
 *
 * Each case makes its certificates and both sides' contexts once, warms both sides up, then runs
 * N rounds of one raw and one tlsock measurement, alternating which goes first so that a slow
 * drift of the machine (other load, CPU frequency) does not favour either side. It reports the
 * median of each side and the ratio tlsock / raw.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "bench.h"
#include "internal.h"

#define DEFAULT_SECONDS 0.4
#define DEFAULT_ROUNDS  21
#define MAX_ROUNDS      101
#define MAX_SECONDS     60.0

/* Bounds on a run besides its time: far above what loopback reaches in MAX_SECONDS. */
#define THROUGHPUT_MAX_BYTES (UINT64_C(1) << 40)
#define HANDSHAKE_MAX_COUNT  UINT64_C(10000000)

/* Warm-up runs: load code and keys into caches and learn the negotiated suite. */
#define WARMUP_SECONDS    0.2
#define WARMUP_BYTES      (UINT64_C(64) << 20)
#define WARMUP_HANDSHAKES 50

/* Targets from docs/DESIGN.md, as ratios tlsock / raw. */
#define THROUGHPUT_TARGET 0.98
#define HANDSHAKE_TARGET  0.97

enum case_kind { KIND_THROUGHPUT, KIND_HANDSHAKE };

struct bench_case {
    const char *name;
    enum case_kind kind;
    const char *key_type; /* for tlsock__cert_generate */
    const char *suite;    /* TLS 1.3 suite, NULL for the default */
    const char *summary;
};

static const struct bench_case cases[] = {
    {.name = "throughput-aes128gcm",
     .kind = KIND_THROUGHPUT,
     .key_type = "ec-p256",
     .suite = "TLS_AES_128_GCM_SHA256",
     .summary = "bulk transfer, TLS 1.3 AES-128-GCM, 16 KiB writes"},
    {.name = "throughput-chacha20",
     .kind = KIND_THROUGHPUT,
     .key_type = "ec-p256",
     .suite = "TLS_CHACHA20_POLY1305_SHA256",
     .summary = "bulk transfer, TLS 1.3 ChaCha20-Poly1305, 16 KiB writes"},
    {.name = "handshake-ecdsa-p256",
     .kind = KIND_HANDSHAKE,
     .key_type = "ec-p256",
     .suite = NULL,
     .summary = "full TLS 1.3 handshakes on new connections, ECDSA P-256 certificates"},
    {.name = "handshake-rsa2048",
     .kind = KIND_HANDSHAKE,
     .key_type = "rsa-2048",
     .suite = NULL,
     .summary = "full TLS 1.3 handshakes on new connections, RSA-2048 certificates"},
};

#define NCASES (sizeof(cases) / sizeof(cases[0]))

struct options {
    double seconds;
    int rounds;
    bool verbose;
    bool selected[NCASES];
};

/* Medians of one case; index 0 is raw, 1 is tlsock. */
struct case_result {
    bool ran;
    bool ok;
    double rate[2];
    double client_cpu_us[2];
    double server_cpu_us[2];
    /* Medians of the per-round ratios tlsock / raw: each round's two runs are adjacent in time,
     * so a ratio within a round is less exposed to changing machine load than one of medians. */
    double rate_ratio;
    double rate_ratio_q1; /* quartiles of the per-round ratios: how noisy the machine was */
    double rate_ratio_q3;
    double client_cpu_ratio;
    double server_cpu_ratio;
    char cipher[2][64];
    char note[256];
};

struct certs {
    struct tlsock__pem_pair ca;
    struct tlsock__pem_pair leaf;
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: tlsock-bench [--list] [--seconds S] [--rounds N] [--verbose] [CASE...]\n"
            "  --list       list the cases and exit\n"
            "  --seconds S  length of each measured run (default %.1f)\n"
            "  --rounds N   raw/tlsock rounds per case, median reported (default %d)\n"
            "  --verbose    print every round\n"
            "Without CASE, every case runs.\n",
            DEFAULT_SECONDS, DEFAULT_ROUNDS);
}

static int find_case(const char *name)
{
    int found = -1;

    for (size_t i = 0; i < NCASES && found < 0; i++) {
        if (strcmp(cases[i].name, name) == 0) {
            found = (int)i;
        }
    }
    return found;
}

/* What parse_args() decided. */
enum { ARGS_RUN = 0, ARGS_DONE = 1 /* --list, --help */, ARGS_BAD = 2 /* exit status 2 */ };

static int parse_args(int argc, char **argv, struct options *opts)
{
    static const struct option longopts[] = {
        {"list", no_argument, NULL, 'l'},         {"seconds", required_argument, NULL, 's'},
        {"rounds", required_argument, NULL, 'r'}, {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    int rc = ARGS_RUN;
    int c;
    char *end = NULL;
    bool any = false;

    opts->seconds = DEFAULT_SECONDS;
    opts->rounds = DEFAULT_ROUNDS;
    opts->verbose = false;
    c = getopt_long(argc, argv, "ls:r:vh", longopts, NULL);
    while (rc == ARGS_RUN && c != -1) {
        switch (c) {
        case 'l':
            for (size_t i = 0; i < NCASES; i++) {
                printf("%-22s %s\n", cases[i].name, cases[i].summary);
            }
            rc = ARGS_DONE;
            break;
        case 's':
            opts->seconds = strtod(optarg, &end);
            if (*end != '\0' || !(opts->seconds > 0 && opts->seconds <= MAX_SECONDS)) {
                fprintf(stderr, "tlsock-bench: --seconds wants a number in (0, %.0f]\n",
                        MAX_SECONDS);
                rc = ARGS_BAD;
            }
            break;
        case 'r':
            opts->rounds = (int)strtol(optarg, &end, 10);
            if (*end != '\0' || opts->rounds < 1 || opts->rounds > MAX_ROUNDS) {
                fprintf(stderr, "tlsock-bench: --rounds wants 1 to %d\n", MAX_ROUNDS);
                rc = ARGS_BAD;
            }
            break;
        case 'v':
            opts->verbose = true;
            break;
        case 'h':
            usage(stdout);
            rc = ARGS_DONE;
            break;
        default:
            usage(stderr);
            rc = ARGS_BAD;
            break;
        }
        if (rc == ARGS_RUN) {
            c = getopt_long(argc, argv, "ls:r:vh", longopts, NULL);
        }
    }
    for (int i = optind; rc == ARGS_RUN && i < argc; i++) {
        int k = find_case(argv[i]);
        if (k < 0) {
            fprintf(stderr, "tlsock-bench: unknown case \"%s\" (see --list)\n", argv[i]);
            rc = ARGS_BAD;
        } else {
            opts->selected[k] = true;
            any = true;
        }
    }
    for (size_t i = 0; rc == ARGS_RUN && !any && i < NCASES; i++) {
        opts->selected[i] = true;
    }
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return (x > y) - (x < y);
}

/* The @p q quantile (0 to 1) of @p n values, interpolating between the two nearest ranks. */
static double quantile(const double *values, int n, double q)
{
    double sorted[MAX_ROUNDS];
    double pos = q * (n - 1);
    int lo = (int)pos;
    int hi = lo + 1 < n ? lo + 1 : lo;

    memcpy(sorted, values, (size_t)n * sizeof(double));
    qsort(sorted, (size_t)n, sizeof(double), cmp_double);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

static double median(const double *values, int n)
{
    return quantile(values, n, 0.5);
}

/* A CA and a server certificate it signs, both with @p key_type keys, as a real server has. */
static int make_certs(const char *key_type, struct certs *out)
{
    struct tlsock__err err = {{0}};
    const struct tlsock__cert_spec ca_spec = {
        .common_name = "tlsock-bench CA",
        .key_type = key_type,
        .is_ca = true,
        .not_before_s = -3600,
        .not_after_s = 86400,
    };
    int rc = tlsock__cert_generate(&ca_spec, &out->ca, &err);

    if (rc == 0) {
        const struct tlsock__cert_spec leaf_spec = {
            .common_name = BENCH_SERVER_NAME,
            .hosts = BENCH_SERVER_NAME ",127.0.0.1",
            .key_type = key_type,
            .not_before_s = -3600,
            .not_after_s = 86400,
            .eku = TLSOCK__EKU_SERVER,
            .issuer_cert_pem = out->ca.cert,
            .issuer_key_pem = out->ca.key,
        };
        rc = tlsock__cert_generate(&leaf_spec, &out->leaf, &err);
    }
    if (rc != 0) {
        fprintf(stderr, "tlsock-bench: certificates (%s): %s\n", key_type, err.msg);
    }
    return rc == 0 ? BENCH_OK : BENCH_ERROR;
}

static int run_once(const struct bench_case *bc, const struct bench_ops *ops, void *env,
                    double seconds, uint64_t max_count, struct bench_sample *sample)
{
    const struct bench_limits limits = {.seconds = seconds, .max_count = max_count};

    return bc->kind == KIND_THROUGHPUT ? bench_run_throughput(ops, env, &limits, sample)
                                       : bench_run_handshakes(ops, env, &limits, sample);
}

static int warm_up(const struct bench_case *bc, const struct bench_ops *ops, void *env,
                   struct bench_sample *sample)
{
    uint64_t max = bc->kind == KIND_THROUGHPUT ? WARMUP_BYTES : WARMUP_HANDSHAKES;

    return run_once(bc, ops, env, WARMUP_SECONDS, max, sample);
}

/*
 * Sets both sides up. The tlsock side is set up first: when it cannot select the case's suite,
 * it falls back to its default, and the baseline then uses whatever tlsock negotiated so that the
 * ratio still compares the same cipher.
 */
static int setup_sides(const struct bench_case *bc, const struct certs *certs, void *envs[2],
                       struct case_result *res)
{
    struct bench_side_config config = {
        .ca_pem = certs->ca.cert,
        .cert_pem = certs->leaf.cert,
        .key_pem = certs->leaf.key,
        .suite = bc->suite,
    };
    struct bench_sample sample;
    int rc = bench_tlsock_ops.setup(&config, &envs[1]);

    if (rc == BENCH_UNSUPPORTED) {
        config.suite = NULL;
        rc = bench_tlsock_ops.setup(&config, &envs[1]);
        snprintf(res->note, sizeof(res->note),
                 "%s not selectable through tlsock's public API; both sides measured with the "
                 "suite tlsock negotiates by default",
                 bc->suite);
    }
    if (rc == BENCH_OK) {
        rc = warm_up(bc, &bench_tlsock_ops, envs[1], &sample);
    }
    if (rc == BENCH_OK && bc->kind == KIND_THROUGHPUT) {
        snprintf(res->cipher[1], sizeof(res->cipher[1]), "%s", sample.cipher);
        /* Pin the baseline to the suite actually measured on the tlsock side. */
        config.suite = res->cipher[1];
    }
    if (rc == BENCH_OK) {
        rc = bench_raw_ops.setup(&config, &envs[0]);
    }
    if (rc == BENCH_OK) {
        rc = warm_up(bc, &bench_raw_ops, envs[0], &sample);
    }
    if (rc == BENCH_OK && bc->kind == KIND_THROUGHPUT) {
        snprintf(res->cipher[0], sizeof(res->cipher[0]), "%s", sample.cipher);
    }
    return rc;
}

static int run_case(const struct bench_case *bc, const struct options *opts,
                    struct case_result *res)
{
    static const struct bench_ops *const sides[2] = {&bench_raw_ops, &bench_tlsock_ops};
    uint64_t max = bc->kind == KIND_THROUGHPUT ? THROUGHPUT_MAX_BYTES : HANDSHAKE_MAX_COUNT;
    struct certs certs = {0};
    void *envs[2] = {NULL, NULL};
    double rate[2][MAX_ROUNDS];
    double ccpu[2][MAX_ROUNDS];
    double scpu[2][MAX_ROUNDS];
    int rc;

    res->ran = true;
    fprintf(stderr, "%s: %s\n", bc->name, bc->summary);
    rc = make_certs(bc->key_type, &certs);
    if (rc == BENCH_OK) {
        rc = setup_sides(bc, &certs, envs, res);
    }
    for (int r = 0; rc == BENCH_OK && r < opts->rounds; r++) {
        /* Alternate the order so that neither side always runs on a "warmer" machine. */
        for (int k = 0; rc == BENCH_OK && k < 2; k++) {
            int s = (r % 2 == 0) ? k : 1 - k;
            struct bench_sample sample;

            rc = run_once(bc, sides[s], envs[s], opts->seconds, max, &sample);
            rate[s][r] = sample.rate;
            ccpu[s][r] = sample.client_cpu_us;
            scpu[s][r] = sample.server_cpu_us;
        }
        if (rc == BENCH_OK && opts->verbose) {
            fprintf(stderr, "  round %d: raw %.1f tlsock %.1f (ratio %.3f)\n", r + 1, rate[0][r],
                    rate[1][r], rate[1][r] / rate[0][r]);
        }
    }
    if (rc == BENCH_OK) {
        double ratio[3][MAX_ROUNDS];
        for (int s = 0; s < 2; s++) {
            res->rate[s] = median(rate[s], opts->rounds);
            res->client_cpu_us[s] = median(ccpu[s], opts->rounds);
            res->server_cpu_us[s] = median(scpu[s], opts->rounds);
        }
        for (int r = 0; r < opts->rounds; r++) {
            ratio[0][r] = rate[1][r] / rate[0][r];
            ratio[1][r] = ccpu[1][r] / ccpu[0][r];
            ratio[2][r] = scpu[1][r] / scpu[0][r];
        }
        res->rate_ratio = median(ratio[0], opts->rounds);
        res->rate_ratio_q1 = quantile(ratio[0], opts->rounds, 0.25);
        res->rate_ratio_q3 = quantile(ratio[0], opts->rounds, 0.75);
        res->client_cpu_ratio = median(ratio[1], opts->rounds);
        res->server_cpu_ratio = median(ratio[2], opts->rounds);
        res->ok = true;
    } else {
        fprintf(stderr, "%s: FAILED\n", bc->name);
    }
    bench_tlsock_ops.teardown(envs[1]);
    bench_raw_ops.teardown(envs[0]);
    tlsock__pem_pair_free(&certs.leaf);
    tlsock__pem_pair_free(&certs.ca);
    return rc;
}

/* One line of the table. A row with a target shows the quartiles of its per-round ratios. */
struct row {
    const char *name;
    const char *unit;
    double raw;
    double tls;
    double ratio;
    double q1;
    double q3;
    double target; /* 0: none; a lower value is better (CPU time) */
};

static void print_row(const struct row *row)
{
    char spread[32] = "";

    if (row->target > 0) {
        snprintf(spread, sizeof(spread), "%.3f-%.3f", row->q1, row->q3);
    }
    printf("%-22s %10.1f %10.1f  %-6s %6.3f  %-12s ", row->name, row->raw, row->tls, row->unit,
           row->ratio, spread);
    if (row->target > 0) {
        printf(">= %.2f %s\n", row->target, row->ratio >= row->target ? "met" : "MISSED");
    } else {
        printf("(lower is better)\n");
    }
}

static void print_table(const struct case_result *results)
{
    printf("\n%-22s %10s %10s  %-6s %6s  %-12s %s\n", "case", "raw", "tlsock", "unit", "ratio",
           "ratio IQR", "target");
    for (size_t i = 0; i < NCASES; i++) {
        const struct bench_case *bc = &cases[i];
        const struct case_result *res = &results[i];

        if (!res->ran) {
            continue;
        }
        if (!res->ok) {
            printf("%-22s %10s\n", bc->name, "FAILED");
            continue;
        }
        bool bulk = bc->kind == KIND_THROUGHPUT;
        const struct row rows[3] = {
            {.name = bc->name,
             .unit = bulk ? "MiB/s" : "hs/s",
             .raw = res->rate[0],
             .tls = res->rate[1],
             .ratio = res->rate_ratio,
             .q1 = res->rate_ratio_q1,
             .q3 = res->rate_ratio_q3,
             .target = bulk ? THROUGHPUT_TARGET : HANDSHAKE_TARGET},
            {.name = bulk ? "  writer CPU per MiB" : "  client CPU per hs",
             .unit = "us",
             .raw = res->client_cpu_us[0],
             .tls = res->client_cpu_us[1],
             .ratio = res->client_cpu_ratio},
            {.name = bulk ? "  reader CPU per MiB" : "  server CPU per hs",
             .unit = "us",
             .raw = res->server_cpu_us[0],
             .tls = res->server_cpu_us[1],
             .ratio = res->server_cpu_ratio},
        };
        for (size_t k = 0; k < 3; k++) {
            print_row(&rows[k]);
        }
    }
    printf("\n");
    for (size_t i = 0; i < NCASES; i++) {
        const struct case_result *res = &results[i];

        if (res->ran && res->ok && cases[i].kind == KIND_THROUGHPUT) {
            printf("%s: negotiated raw %s, tlsock %s\n", cases[i].name, res->cipher[0],
                   res->cipher[1]);
        }
        if (res->ran && res->note[0] != '\0') {
            printf("%s: note: %s\n", cases[i].name, res->note);
        }
    }
}

int main(int argc, char **argv)
{
    struct options opts = {0};
    struct case_result results[NCASES];
    int args = parse_args(argc, argv, &opts);
    int status = args == ARGS_BAD ? 2 : 0;
    int failures = 0;
    time_t now = time(NULL);
    char date[64];

    memset(results, 0, sizeof(results));
    if (args != ARGS_RUN) {
        goto out;
    }
    /* The raw baseline writes with write(2): a peer that closed first must not kill us. */
    signal(SIGPIPE, SIG_IGN);
    strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", gmtime(&now));
    printf("tlsock-bench  %s\n", date);
    printf("tlsock impl:  %s\n", tlsock_impl_version());
    printf("raw baseline: %s\n", OpenSSL_version(OPENSSL_VERSION));
    printf("cpus online:  %ld\n", sysconf(_SC_NPROCESSORS_ONLN));
    printf("method:       %d rounds of %.2f s per side and case, order alternating; values are\n"
           "              medians, ratio is the median of the per-round ratios tlsock/raw\n",
           opts.rounds, opts.seconds);
    fflush(stdout);
    for (size_t i = 0; i < NCASES; i++) {
        if (opts.selected[i] && run_case(&cases[i], &opts, &results[i]) != BENCH_OK) {
            failures++;
        }
    }
    print_table(results);
    status = failures == 0 ? 0 : 1;

out:
    return status;
}
