/*
 * Running one case, the same way for every case: certificates and both layers' contexts made
 * once, one warm-up run per side, then rounds in which every side runs once, in an order that
 * rotates so that a slow drift of the machine (other load, CPU frequency) favours no side. Keeps
 * the medians and the per-round ratios, and says in one line how the case did.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

/* Bounds on a run besides its time: far above what loopback reaches in the longest run. */
#define MAX_BYTES      (UINT64_C(1) << 40)
#define MAX_HANDSHAKES UINT64_C(10000000)

/* Warm-up runs: load code and keys into caches. */
#define WARMUP_SECONDS    0.2
#define WARMUP_BYTES      (UINT64_C(64) << 20)
#define WARMUP_HANDSHAKES 50

#define NAME_WIDTH 34

int64_t bench_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t bench_thread_cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

double bench_mib(uint64_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

double bench_us_per(int64_t ns, double units)
{
    return units > 0 ? (double)ns / 1e3 / units : 0;
}

/* Not all zeros, though AEAD cost does not depend on the data. Writers are the main thread. */
const unsigned char *bench_payload(void)
{
    static unsigned char data[BENCH_MAX_WRITE];
    static bool ready;

    if (!ready) {
        for (size_t i = 0; i < sizeof(data); i++) {
            data[i] = (unsigned char)(i * 131u + 7u);
        }
        ready = true;
    }
    return data;
}

const struct bench_ops *bench_raw_ops_for(int impl)
{
    const struct bench_ops *ops = &bench_raw_ops;

    if (impl == TLSOCK_IMPL_GNUTLS) {
#ifdef BENCH_HAVE_GNUTLS
        ops = &bench_raw_gnutls_ops;
#else
        ops = NULL;
#endif
    }
    return ops;
}

/* ---- Statistics ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return (x > y) - (x < y);
}

/* The median, lowest and highest of @p n values (the mean of the middle two for even n). */
static struct bench_ratio spread(const double *values, int n)
{
    double sorted[MAX_ROUNDS];

    memcpy(sorted, values, (size_t)n * sizeof(double));
    qsort(sorted, (size_t)n, sizeof(double), cmp_double);
    return (struct bench_ratio){
        .median = (sorted[(n - 1) / 2] + sorted[n / 2]) / 2,
        .min = sorted[0],
        .max = sorted[n - 1],
    };
}

static double median(const double *values, int n)
{
    return spread(values, n).median;
}

/*
 * Median, lowest and highest of the per-round ratios num / den: a case whose rounds land in two
 * modes shows it in the range, which quartiles would hide.
 */
static struct bench_ratio ratio_of(const double *num, const double *den, int n)
{
    double ratios[MAX_ROUNDS];

    for (int r = 0; r < n; r++) {
        ratios[r] = den[r] > 0 ? num[r] / den[r] : 0;
    }
    return spread(ratios, n);
}

/* Per-round figures of one case, indexed [side][round]. */
struct rounds {
    double rate[MAX_SIDES][MAX_ROUNDS];
    double ccpu[MAX_SIDES][MAX_ROUNDS];
    double scpu[MAX_SIDES][MAX_ROUNDS];
    double sends[MAX_SIDES][MAX_ROUNDS];
    double csys[MAX_SIDES][MAX_ROUNDS];
    double ssys[MAX_SIDES][MAX_ROUNDS];
    double heap[MAX_SIDES][MAX_ROUNDS];
    double tls_heap[MAX_SIDES][MAX_ROUNDS];
    double full[MAX_SIDES][MAX_ROUNDS];
};

static void record(struct rounds *rd, int s, int r, const struct bench_sample *sample)
{
    rd->rate[s][r] = sample->rate;
    rd->ccpu[s][r] = sample->client_cpu_us;
    rd->scpu[s][r] = sample->server_cpu_us;
    rd->sends[s][r] = sample->sends_per_mib;
    rd->csys[s][r] = sample->client_syscalls;
    rd->ssys[s][r] = sample->server_syscalls;
    rd->heap[s][r] = sample->heap_per_conn;
    rd->tls_heap[s][r] = sample->tls_heap_per_conn;
    rd->full[s][r] = sample->full_rate;
}

static void summarise(const struct rounds *rd, int n, struct bench_result *res)
{
    for (int s = 0; s < res->sides; s++) {
        res->rate[s] = median(rd->rate[s], n);
        res->client_cpu_us[s] = median(rd->ccpu[s], n);
        res->server_cpu_us[s] = median(rd->scpu[s], n);
        res->sends_per_mib[s] = median(rd->sends[s], n);
        res->client_syscalls[s] = median(rd->csys[s], n);
        res->server_syscalls[s] = median(rd->ssys[s], n);
        res->heap_per_conn[s] = median(rd->heap[s], n);
        res->tls_heap_per_conn[s] = median(rd->tls_heap[s], n);
        res->full_rate[s] = median(rd->full[s], n);
        res->speedup[s] = ratio_of(rd->rate[s], rd->full[s], n).median;
    }
    res->full_ratio = ratio_of(rd->full[SIDE_TLSOCK], rd->full[SIDE_RAW], n);
    res->rate_ratio = ratio_of(rd->rate[SIDE_TLSOCK], rd->rate[SIDE_RAW], n);
    if (res->sides > SIDE_REFERENCE) {
        res->reference_ratio = ratio_of(rd->rate[SIDE_TLSOCK], rd->rate[SIDE_REFERENCE], n);
    }
    res->client_cpu_ratio = ratio_of(rd->ccpu[SIDE_TLSOCK], rd->ccpu[SIDE_RAW], n).median;
    res->server_cpu_ratio = ratio_of(rd->scpu[SIDE_TLSOCK], rd->scpu[SIDE_RAW], n).median;
    res->sends_ratio = ratio_of(rd->sends[SIDE_TLSOCK], rd->sends[SIDE_RAW], n).median;
    res->client_syscalls_ratio = ratio_of(rd->csys[SIDE_TLSOCK], rd->csys[SIDE_RAW], n).median;
    res->server_syscalls_ratio = ratio_of(rd->ssys[SIDE_TLSOCK], rd->ssys[SIDE_RAW], n).median;
}

/* ---- The verdict ---- */

void bench_target(const struct bench_case *bc, const struct bench_result *res, char *buf,
                  size_t len)
{
    double diff = res->rate[SIDE_TLSOCK] - res->rate[SIDE_RAW];

    if (bc->measure->per_connection) {
        snprintf(buf, len, "<= raw%+.0f %s", bc->budget, diff <= bc->budget ? "met" : "MISSED");
    } else if (bc->target > 0 && bc->measure->cost) {
        snprintf(buf, len, "<= %.2f %s", bc->target,
                 res->rate_ratio.median <= bc->target ? "met" : "MISSED");
    } else if (bc->target > 0) {
        snprintf(buf, len, ">= %.2f %s", bc->target,
                 res->rate_ratio.median >= bc->target ? "met" : "MISSED");
    } else {
        snprintf(buf, len, "(information)");
    }
}

/* The one line a case prints on stderr when it is done. */
static void progress(const struct bench_case *bc, const struct bench_result *res)
{
    char target[64];

    bench_target(bc, res, target, sizeof(target));
    if (res->skipped) {
        fprintf(stderr, "%-*s %s\n", NAME_WIDTH, bc->name, res->note);
    } else if (!res->ok) {
        fprintf(stderr, "%-*s FAILED (%.1f s)\n", NAME_WIDTH, bc->name, res->seconds);
    } else if (bc->measure->per_connection) {
        fprintf(stderr, "%-*s raw %.0f, tlsock %.0f %s (%+.0f)  %s  (%.1f s)\n", NAME_WIDTH,
                bc->name, res->rate[SIDE_RAW], res->rate[SIDE_TLSOCK], bc->measure->unit,
                res->rate[SIDE_TLSOCK] - res->rate[SIDE_RAW], target, res->seconds);
    } else {
        fprintf(stderr, "%-*s ratio %.3f (min %.3f, max %.3f)  %s  (%.1f s)\n", NAME_WIDTH,
                bc->name, res->rate_ratio.median, res->rate_ratio.min, res->rate_ratio.max, target,
                res->seconds);
    }
}

/* ---- One case ---- */

/* The implementation a case measures; cases that name none are OpenSSL cases. */
static int case_impl(const struct bench_case *bc)
{
    return bc->impl == TLSOCK_IMPL_GNUTLS ? TLSOCK_IMPL_GNUTLS : TLSOCK_IMPL_OPENSSL;
}

/* Why @p bc cannot run here, or NULL. */
static const char *missing(const struct bench_case *bc)
{
    const char *why = NULL;

    if (bench_raw_ops_for(case_impl(bc)) == NULL) {
        why = "the bench was built without GnuTLS";
    } else if (!tlsock_impl_available(case_impl(bc))) {
        why = case_impl(bc) == TLSOCK_IMPL_GNUTLS ? "tlsock was built without GnuTLS"
                                                  : "tlsock was built without OpenSSL";
    } else if (bc->missing != NULL) {
        why = bc->missing();
    }
    return why;
}

static struct bench_limits limits_of(const struct bench_case *bc, const struct bench_options *opts,
                                     bool warm_up)
{
    bool hs = bc->measure->handshakes;
    struct bench_limits limits = {
        .seconds = warm_up ? WARMUP_SECONDS : opts->seconds,
        .max_count = hs ? (warm_up ? WARMUP_HANDSHAKES : MAX_HANDSHAKES)
                        : (warm_up ? WARMUP_BYTES : MAX_BYTES),
        .write_size = bc->write_size,
        .window = bc->window,
        .concurrency = bc->concurrency,
    };

    if (bc->measure->per_connection && opts->connections > 0) {
        limits.concurrency = opts->connections;
    }
    return limits;
}

/*
 * The raw and the tlsock layer with the same configuration. Should one of them be unable to
 * select the case's suite, both fall back to their default and the note says so (the report
 * shows what each side negotiated).
 */
static int layers_setup(struct bench_config *config, struct bench_run *base,
                        struct bench_result *res)
{
    void *tls = NULL;
    int rc = base->raw_ops->setup(config, &base->raw_env);

    if (rc == BENCH_OK) {
        rc = bench_tlsock_ops.setup(config, &tls);
    }
    if (rc == BENCH_UNSUPPORTED) {
        base->raw_ops->teardown(base->raw_env);
        base->raw_env = NULL;
        snprintf(res->note, sizeof(res->note),
                 "%s not selectable on every side; all sides measured with their default suite",
                 config->suite);
        config->suite = NULL;
        rc = base->raw_ops->setup(config, &base->raw_env);
        if (rc == BENCH_OK) {
            rc = bench_tlsock_ops.setup(config, &tls);
        }
    }
    base->env = tls;
    return rc;
}

/* One run of side @p s; @p base has the case's layers. */
static int run_side(const struct bench_case *bc, int s, const struct bench_run *base,
                    const struct bench_limits *limits, struct bench_sample *out,
                    struct bench_result *res)
{
    const struct bench_side *side = &bc->sides[s];
    struct bench_run run = *base;
    int rc;

    run.limits = *limits;
    run.ops = side->layer == BENCH_LAYER_TLSOCK_IO ? &bench_tlsock_io_ops
              : side->layer == BENCH_LAYER_TLSOCK  ? &bench_tlsock_ops
                                                   : base->raw_ops;
    run.env = side->layer == BENCH_LAYER_RAW ? base->raw_env : base->env;
    memset(out, 0, sizeof(*out));
    rc = side->run(&run, out);
    snprintf(res->cipher[s], sizeof(res->cipher[s]), "%s", out->cipher);
    snprintf(res->impl[s], sizeof(res->impl[s]), "%s", out->impl);
    return rc;
}

static void print_round(const struct bench_case *bc, const struct rounds *rd, int r, int sides)
{
    fprintf(stderr, "  round %d:", r + 1);
    for (int s = 0; s < sides; s++) {
        fprintf(stderr, " %s %.1f", bc->sides[s].name, rd->rate[s][r]);
    }
    fprintf(stderr, " (ratio %.3f)\n", rd->rate[SIDE_TLSOCK][r] / rd->rate[SIDE_RAW][r]);
}

int bench_run_case(const struct bench_case *bc, const struct bench_options *opts,
                   struct bench_result *res)
{
    static struct rounds rd;
    const struct bench_limits warm = limits_of(bc, opts, true);
    const struct bench_limits limits = limits_of(bc, opts, false);
    struct bench_certs certs = {0};
    struct bench_config config = {
        .suite = bc->suite, .impl = case_impl(bc), .no_tickets = bc->no_tickets};
    struct bench_run base = {.raw_ops = bench_raw_ops_for(config.impl), .config = &config};
    struct bench_sample sample;
    int64_t start_ns = bench_now_ns();
    const char *why = missing(bc);
    bool extra = false;
    int rc = BENCH_OK;

    res->ran = true;
    res->rounds = bc->one_round                         ? 1
                  : opts->rounds_set || bc->rounds == 0 ? opts->rounds
                                                        : bc->rounds;
    res->connections = limits.concurrency;
    while (res->sides < MAX_SIDES && bc->sides[res->sides].run != NULL) {
        res->sides++;
    }
    if (opts->verbose) {
        fprintf(stderr, "%s: %s\n", bc->name, bc->summary);
    }
    if (why != NULL) {
        res->skipped = true;
        snprintf(res->note, sizeof(res->note), "skipped: %s", why);
        goto out;
    }
    rc = bench_certs_new(bc->key_type, &certs);
    if (rc == BENCH_OK) {
        config.ca_pem = certs.ca_cert;
        config.cert_pem = certs.cert;
        config.key_pem = certs.key;
        rc = layers_setup(&config, &base, res);
    }
    if (rc == BENCH_OK && bc->setup != NULL) {
        rc = bc->setup(&config, &base.extra);
        extra = rc == BENCH_OK;
    }
    for (int s = 0; rc == BENCH_OK && !bc->one_round && s < res->sides; s++) {
        rc = run_side(bc, s, &base, &warm, &sample, res);
    }
    for (int r = 0; rc == BENCH_OK && r < res->rounds; r++) {
        /* Rotate the order so that no side always runs on a "warmer" machine. */
        for (int k = 0; rc == BENCH_OK && k < res->sides; k++) {
            int s = (r + k) % res->sides;

            rc = run_side(bc, s, &base, &limits, &sample, res);
            record(&rd, s, r, &sample);
            res->count[s] += sample.count;
            res->resumed[s] += sample.resumed;
        }
        if (rc == BENCH_OK && opts->verbose) {
            print_round(bc, &rd, r, res->sides);
        }
    }
    if (rc == BENCH_OK) {
        summarise(&rd, res->rounds, res);
        res->ok = true;
    }
    if (extra) {
        bc->teardown(base.extra);
    }
    bench_tlsock_ops.teardown(base.env);
    base.raw_ops->teardown(base.raw_env);
    bench_certs_free(&certs);

out:
    res->seconds = (double)(bench_now_ns() - start_ns) / 1e9;
    progress(bc, res);
    return rc;
}
