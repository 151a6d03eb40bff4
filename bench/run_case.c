/*
 * Running one case: certificates and contexts made once, a warm-up per side, then rounds in
 * which every side runs once, in an order that rotates so that a slow drift of the machine
 * (other load, CPU frequency) favours no side. Reports medians and per-round ratios.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "runner.h"

/* Bounds on a run besides its time: far above what loopback reaches in the longest run. */
#define THROUGHPUT_MAX_BYTES (UINT64_C(1) << 40)
#define HANDSHAKE_MAX_COUNT  UINT64_C(10000000)

/* Warm-up runs: load code and keys into caches and learn the negotiated suite. */
#define WARMUP_SECONDS    0.2
#define WARMUP_BYTES      (UINT64_C(64) << 20)
#define WARMUP_HANDSHAKES 50

struct certs {
    struct tlsock__pem_pair ca;
    struct tlsock__pem_pair leaf;
};

/* Per-round figures of one case, indexed [side][round]. */
struct rounds {
    double rate[MAX_SIDES][MAX_ROUNDS];
    double ccpu[MAX_SIDES][MAX_ROUNDS];
    double scpu[MAX_SIDES][MAX_ROUNDS];
    double sends[MAX_SIDES][MAX_ROUNDS];
    double heap[MAX_SIDES][MAX_ROUNDS]; /* idle cases */
    double tls_heap[MAX_SIDES][MAX_ROUNDS];
};

/* The raw GnuTLS baseline exists only when the bench was built with GnuTLS (CMakeLists.txt). */
#ifdef BENCH_HAVE_GNUTLS
static const struct bench_ops *const raw_gnutls_ops = &bench_raw_gnutls_ops;
#else
static const struct bench_ops *const raw_gnutls_ops = NULL;
#endif

/* The implementation a case measures; cases that name none are OpenSSL cases. */
static int case_impl(const struct bench_case *bc)
{
    return bc->impl == TLSOCK_IMPL_GNUTLS ? TLSOCK_IMPL_GNUTLS : TLSOCK_IMPL_OPENSSL;
}

/* The operations of side @p s: tlsock, or the raw baseline of the case's implementation. */
static const struct bench_ops *side_ops(const struct bench_case *bc, int s)
{
    if (s != SIDE_RAW) {
        return &bench_tlsock_ops;
    }
    return case_impl(bc) == TLSOCK_IMPL_GNUTLS ? raw_gnutls_ops : &bench_raw_ops;
}

static const char *const side_names[MAX_SIDES] = {
    [SIDE_RAW] = "raw",
    [SIDE_TLSOCK] = "tlsock",
    [SIDE_REFERENCE] = "reference",
};

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

/* Median and quartiles of the per-round ratios num / den. */
static struct ratio ratio_of(const double *num, const double *den, int n)
{
    double ratios[MAX_ROUNDS];

    for (int r = 0; r < n; r++) {
        ratios[r] = den[r] > 0 ? num[r] / den[r] : 0;
    }
    return (struct ratio){
        .median = median(ratios, n),
        .q1 = quantile(ratios, n, 0.25),
        .q3 = quantile(ratios, n, 0.75),
    };
}

/* A CA and a server certificate it signs, both with @p key_type keys, as a real server has. */
static int make_certs(const char *key_type, struct certs *out)
{
    struct tlsock__err err = {0};
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
        fprintf(stderr, "tlsock-bench: certificates (%s): %s\n", key_type, tlsock__err_msg(&err));
    }
    return rc == 0 ? BENCH_OK : BENCH_ERROR;
}

static int run_once(const struct bench_case *bc, const struct bench_ops *ops, void *env,
                    double seconds, uint64_t max_count, struct bench_sample *sample)
{
    const struct bench_limits limits = {
        .seconds = seconds,
        .max_count = max_count,
        .write_size = bc->write_size,
    };
    int rc = BENCH_ERROR;

    switch (bc->kind) {
    case KIND_THROUGHPUT:
        rc = bench_run_throughput(ops, env, &limits, sample);
        break;
    case KIND_MEMORY:
        rc = bench_run_memory(ops, env, &limits, sample);
        break;
    case KIND_HANDSHAKE:
        rc = bench_run_handshakes(ops, env, &limits, sample);
        break;
    case KIND_ECHO:
    case KIND_ASYNC_HANDSHAKE:
    case KIND_IDLE:
        /* Async cases run through their struct bench_side, never here. */
        break;
    }
    return rc;
}

static int warm_up(const struct bench_case *bc, const struct bench_ops *ops, void *env,
                   struct bench_sample *sample)
{
    uint64_t max = bc->kind == KIND_HANDSHAKE ? WARMUP_HANDSHAKES : WARMUP_BYTES;

    return run_once(bc, ops, env, WARMUP_SECONDS, max, sample);
}

/*
 * Sets the sides up. The tlsock side is set up first: when it cannot select the case's suite,
 * it falls back to its default, and the others then use whatever tlsock negotiated so that the
 * ratios still compare the same cipher. The reference is tlsock with the same suite over its
 * default fd fast path.
 */
static int setup_sides(const struct bench_case *bc, const struct certs *certs,
                       void *envs[MAX_SIDES], struct case_result *res)
{
    struct bench_side_config config = {
        .ca_pem = certs->ca.cert,
        .cert_pem = certs->leaf.cert,
        .key_pem = certs->leaf.key,
        .suite = bc->suite,
        .fd_callbacks = bc->fd_callbacks,
        .impl = case_impl(bc),
    };
    struct bench_sample sample;
    int rc = bench_tlsock_ops.setup(&config, &envs[SIDE_TLSOCK]);

    if (rc == BENCH_UNSUPPORTED) {
        config.suite = NULL;
        rc = bench_tlsock_ops.setup(&config, &envs[SIDE_TLSOCK]);
        snprintf(res->note, sizeof(res->note),
                 "%s not selectable through tlsock's public API; all sides measured with the "
                 "suite tlsock negotiates by default",
                 bc->suite);
    }
    if (rc == BENCH_OK) {
        rc = warm_up(bc, &bench_tlsock_ops, envs[SIDE_TLSOCK], &sample);
    }
    if (rc == BENCH_OK && bc->kind != KIND_MEMORY) {
        snprintf(res->cipher[SIDE_TLSOCK], sizeof(res->cipher[0]), "%s", sample.cipher);
        snprintf(res->impl[SIDE_TLSOCK], sizeof(res->impl[0]), "%s", sample.impl);
    }
    if (rc == BENCH_OK && bc->kind == KIND_THROUGHPUT) {
        /* Pin the others to the suite actually measured on the tlsock side. */
        config.suite = res->cipher[SIDE_TLSOCK];
    }
    config.fd_callbacks = false;
    for (int s = 0; rc == BENCH_OK && s < res->sides; s++) {
        if (s == SIDE_TLSOCK) {
            continue;
        }
        rc = side_ops(bc, s)->setup(&config, &envs[s]);
        if (rc == BENCH_OK) {
            rc = warm_up(bc, side_ops(bc, s), envs[s], &sample);
        }
        if (rc == BENCH_OK && bc->kind != KIND_MEMORY) {
            snprintf(res->cipher[s], sizeof(res->cipher[0]), "%s", sample.cipher);
            snprintf(res->impl[s], sizeof(res->impl[0]), "%s", sample.impl);
        }
    }
    return rc;
}

static void summarise(const struct rounds *rd, int n, struct case_result *res)
{
    double ratios[2][MAX_ROUNDS];

    for (int s = 0; s < res->sides; s++) {
        res->rate[s] = median(rd->rate[s], n);
        res->client_cpu_us[s] = median(rd->ccpu[s], n);
        res->server_cpu_us[s] = median(rd->scpu[s], n);
        res->sends_per_mib[s] = median(rd->sends[s], n);
    }
    res->rate_ratio = ratio_of(rd->rate[SIDE_TLSOCK], rd->rate[SIDE_RAW], n);
    if (res->sides > SIDE_REFERENCE) {
        res->reference_ratio = ratio_of(rd->rate[SIDE_TLSOCK], rd->rate[SIDE_REFERENCE], n);
    }
    for (int r = 0; r < n; r++) {
        ratios[0][r] = rd->ccpu[SIDE_TLSOCK][r] / rd->ccpu[SIDE_RAW][r];
        ratios[1][r] = rd->scpu[SIDE_TLSOCK][r] / rd->scpu[SIDE_RAW][r];
    }
    res->client_cpu_ratio = median(ratios[0], n);
    res->server_cpu_ratio = median(ratios[1], n);
    res->sends_ratio = ratio_of(rd->sends[SIDE_TLSOCK], rd->sends[SIDE_RAW], n).median;
}

static void print_round(const struct rounds *rd, int r, int sides)
{
    fprintf(stderr, "  round %d:", r + 1);
    for (int s = 0; s < sides; s++) {
        fprintf(stderr, " %s %.1f", side_names[s], rd->rate[s][r]);
    }
    fprintf(stderr, " (ratio %.3f)\n", rd->rate[SIDE_TLSOCK][r] / rd->rate[SIDE_RAW][r]);
}

/* ---- The async cases: sides that run whole workloads (struct bench_side) ---- */

static int async_sides(const struct bench_case *bc)
{
    int n = 0;

    while (n < MAX_SIDES && bc->sides[n] != NULL) {
        n++;
    }
    return n;
}

static struct bench_limits async_limits(const struct bench_case *bc, const struct run_options *opts,
                                        bool warm_up)
{
    bool bytes = bc->kind == KIND_ECHO;
    struct bench_limits limits = {
        .seconds = warm_up ? WARMUP_SECONDS : opts->seconds,
        .max_count = bytes ? (warm_up ? WARMUP_BYTES : THROUGHPUT_MAX_BYTES)
                           : (warm_up ? WARMUP_HANDSHAKES : HANDSHAKE_MAX_COUNT),
        .write_size = bc->write_size,
        .window = bc->window,
        .concurrency = bc->concurrency,
    };

    if (bc->kind == KIND_IDLE && opts->connections > 0) {
        limits.concurrency = opts->connections;
    }
    return limits;
}

/*
 * As setup_sides(): tlsock first, falling back to its default suite if it cannot select the
 * case's, and the other sides pinned to what it negotiated. The idle cases have no warm-up run:
 * their child processes warm up on their own connections before measuring.
 */
static int setup_async_sides(const struct bench_case *bc, const struct run_options *opts,
                             const struct certs *certs, void *envs[MAX_SIDES],
                             struct case_result *res)
{
    struct bench_side_config config = {
        .ca_pem = certs->ca.cert,
        .cert_pem = certs->leaf.cert,
        .key_pem = certs->leaf.key,
        .suite = bc->suite,
        .impl = case_impl(bc),
    };
    const struct bench_limits warm = async_limits(bc, opts, true);
    bool warm_up = bc->kind != KIND_IDLE;
    struct bench_sample sample;
    int rc = bc->sides[SIDE_TLSOCK]->setup(&config, &envs[SIDE_TLSOCK]);

    if (rc == BENCH_UNSUPPORTED) {
        config.suite = NULL;
        rc = bc->sides[SIDE_TLSOCK]->setup(&config, &envs[SIDE_TLSOCK]);
        snprintf(res->note, sizeof(res->note),
                 "%s not selectable through tlsock's public API; all sides measured with the "
                 "suite tlsock negotiates by default",
                 bc->suite);
    }
    if (rc == BENCH_OK && warm_up) {
        rc = bc->sides[SIDE_TLSOCK]->run(envs[SIDE_TLSOCK], &warm, &sample);
        snprintf(res->cipher[SIDE_TLSOCK], sizeof(res->cipher[0]), "%s", sample.cipher);
        snprintf(res->impl[SIDE_TLSOCK], sizeof(res->impl[0]), "%s", sample.impl);
    }
    if (rc == BENCH_OK && bc->kind == KIND_ECHO) {
        config.suite = res->cipher[SIDE_TLSOCK];
    }
    for (int s = 0; rc == BENCH_OK && s < res->sides; s++) {
        if (s == SIDE_TLSOCK) {
            continue;
        }
        rc = bc->sides[s]->setup(&config, &envs[s]);
        if (rc == BENCH_OK && warm_up) {
            rc = bc->sides[s]->run(envs[s], &warm, &sample);
            snprintf(res->cipher[s], sizeof(res->cipher[0]), "%s", sample.cipher);
            snprintf(res->impl[s], sizeof(res->impl[0]), "%s", sample.impl);
        }
    }
    return rc;
}

static int run_async_case(const struct bench_case *bc, const struct run_options *opts,
                          struct case_result *res)
{
    const struct bench_limits limits = async_limits(bc, opts, false);
    struct certs certs = {0};
    void *envs[MAX_SIDES] = {NULL, NULL, NULL};
    struct rounds rd;
    int rc = make_certs(bc->key_type, &certs);

    res->connections = limits.concurrency;
    if (rc == BENCH_OK) {
        rc = setup_async_sides(bc, opts, &certs, envs, res);
    }
    for (int r = 0; rc == BENCH_OK && r < res->rounds; r++) {
        for (int k = 0; rc == BENCH_OK && k < res->sides; k++) {
            int s = (r + k) % res->sides;
            struct bench_sample sample;

            rc = bc->sides[s]->run(envs[s], &limits, &sample);
            rd.rate[s][r] = sample.rate;
            rd.ccpu[s][r] = sample.client_cpu_us;
            rd.scpu[s][r] = sample.server_cpu_us;
            rd.sends[s][r] = 0;
            rd.heap[s][r] = sample.heap_per_conn;
            rd.tls_heap[s][r] = sample.tls_heap_per_conn;
            if (rc == BENCH_OK && bc->kind == KIND_IDLE) {
                snprintf(res->cipher[s], sizeof(res->cipher[0]), "%s", sample.cipher);
                snprintf(res->impl[s], sizeof(res->impl[0]), "%s", sample.impl);
            }
        }
        if (rc == BENCH_OK && opts->verbose) {
            print_round(&rd, r, res->sides);
        }
    }
    if (rc == BENCH_OK) {
        summarise(&rd, res->rounds, res);
        for (int s = 0; s < res->sides; s++) {
            res->heap_per_conn[s] = median(rd.heap[s], res->rounds);
            res->tls_heap_per_conn[s] = median(rd.tls_heap[s], res->rounds);
        }
        res->ok = true;
    } else {
        fprintf(stderr, "%s: FAILED\n", bc->name);
    }
    for (int s = 0; s < res->sides; s++) {
        bc->sides[s]->teardown(envs[s]);
    }
    tlsock__pem_pair_free(&certs.leaf);
    tlsock__pem_pair_free(&certs.ca);
    return rc;
}

/* Why an async case cannot run here, or NULL. */
static const char *async_missing(const struct bench_case *bc)
{
    const char *why = NULL;

    if (bc->sides[SIDE_RAW] == NULL) {
        why = "the bench was built without the libuv driver";
    } else if (bc->missing != NULL) {
        why = bc->missing();
    }
    return why;
}

int run_case(const struct bench_case *bc, const struct run_options *opts, struct case_result *res)
{
    uint64_t max = bc->kind == KIND_HANDSHAKE ? HANDSHAKE_MAX_COUNT : THROUGHPUT_MAX_BYTES;
    struct certs certs = {0};
    void *envs[MAX_SIDES] = {NULL, NULL, NULL};
    struct rounds rd;
    int rounds = opts->rounds_set || bc->rounds == 0 ? opts->rounds : bc->rounds;
    const char *missing = bc->async ? async_missing(bc) : NULL;
    int rc;

    if (bc->fixed_rounds) {
        rounds = bc->rounds;
    }
    res->ran = true;
    res->rounds = rounds;
    res->sides = bc->async ? async_sides(bc) : bc->reference ? 3 : 2;
    fprintf(stderr, "%s: %s\n", bc->name, bc->summary);
    if (missing != NULL) {
        res->skipped = true;
        snprintf(res->note, sizeof(res->note), "skipped: %s", missing);
        fprintf(stderr, "%s: %s\n", bc->name, res->note);
        rc = BENCH_OK;
        goto out;
    }
    if (case_impl(bc) == TLSOCK_IMPL_GNUTLS &&
        (raw_gnutls_ops == NULL || !tlsock_impl_available(TLSOCK_IMPL_GNUTLS))) {
        res->skipped = true;
        snprintf(res->note, sizeof(res->note), "skipped: %s",
                 raw_gnutls_ops == NULL ? "the bench was built without GnuTLS"
                                        : "tlsock was built without its GnuTLS implementation");
        fprintf(stderr, "%s: %s\n", bc->name, res->note);
        rc = BENCH_OK;
        goto out;
    }
    if (bc->async) {
        rc = run_async_case(bc, opts, res);
        goto out;
    }
    rc = make_certs(bc->key_type, &certs);
    if (rc == BENCH_OK) {
        rc = setup_sides(bc, &certs, envs, res);
    }
    for (int r = 0; rc == BENCH_OK && r < rounds; r++) {
        /* Rotate the order so that no side always runs on a "warmer" machine. */
        for (int k = 0; rc == BENCH_OK && k < res->sides; k++) {
            int s = (r + k) % res->sides;
            struct bench_sample sample;

            rc = run_once(bc, side_ops(bc, s), envs[s], opts->seconds, max, &sample);
            rd.rate[s][r] = sample.rate;
            rd.ccpu[s][r] = sample.client_cpu_us;
            rd.scpu[s][r] = sample.server_cpu_us;
            rd.sends[s][r] = sample.sends_per_mib;
        }
        if (rc == BENCH_OK && opts->verbose) {
            print_round(&rd, r, res->sides);
        }
    }
    if (rc == BENCH_OK) {
        summarise(&rd, rounds, res);
        res->ok = true;
    } else {
        fprintf(stderr, "%s: FAILED\n", bc->name);
    }
    for (int s = 0; s < MAX_SIDES; s++) {
        side_ops(bc, s)->teardown(envs[s]);
    }
    tlsock__pem_pair_free(&certs.leaf);
    tlsock__pem_pair_free(&certs.ca);

out:
    return rc;
}
