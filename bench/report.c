/*
 * The results table of tlsock-bench: one block of rows per case, the main figure with its target
 * first, then the figures that explain it (the reference side, CPU time and system calls per
 * unit, send calls per MiB; heap per idle connection), then the negotiated suites and notes. And
 * the same results as a data file for the chart (bench_write_data).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

#define NAME_WIDTH 34

const struct bench_measure bench_bulk = {
    .unit = "MiB/s",
    .client_cpu = "  writer CPU per MiB",
    .server_cpu = "  reader CPU per MiB",
    .sends = true,
    .client_syscalls = "  writer syscalls per MiB",
    .server_syscalls = "  reader syscalls per MiB",
};

const struct bench_measure bench_memory_mode = {
    .unit = "MiB/s",
    .client_cpu = "  CPU per MiB (both ends)",
};

const struct bench_measure bench_handshakes = {
    .unit = "hs/s",
    .handshakes = true,
    .client_cpu = "  client CPU per hs",
    .server_cpu = "  server CPU per hs",
    .client_syscalls = "  client syscalls per hs",
    .server_syscalls = "  server syscalls per hs",
};

const struct bench_measure bench_echo = {
    .unit = "MiB/s",
    .client_cpu = "  client CPU per MiB",
    .server_cpu = "  server CPU per MiB",
};

const struct bench_measure bench_resumption = {
    .unit = "hs/s",
    .handshakes = true,
    .client_cpu = "  client CPU per resumed hs",
    .server_cpu = "  server CPU per resumed hs",
    .client_syscalls = "  client syscalls per resumed hs",
    .server_syscalls = "  server syscalls per resumed hs",
    .resumption = true,
    .rate_row = "  full hs, same workload",
    .rate_unit = "hs/s",
};

const struct bench_measure bench_latency = {
    .unit = "ms",
    .handshakes = true,
};

const struct bench_measure bench_threads = {
    .unit = "us/hs",
    .cost = true,
    .client_cpu = "  client CPU per hs",
    .server_syscalls = "  server calls that slept, per hs",
    .rate_row = "  handshakes/s",
    .rate_unit = "hs/s",
};

const struct bench_measure bench_idle = {
    .unit = "B/conn",
    .per_connection = true,
};

enum row_kind {
    ROW_TARGET, /* the case's main figure, against its target (bench_target) */
    ROW_BUDGET, /* the same per idle connection, against a budget above raw */
    ROW_INFO,   /* tlsock / reference, with the per-round ratios' range */
    ROW_LOWER,  /* a cost: lower is better */
    ROW_EXTRA,  /* a cost per connection, with the difference tlsock - raw, for information */
    ROW_FACTOR, /* a dimensionless factor per side (two decimals), for information */
};

/* One line of the table. */
struct row {
    const char *name;
    const char *unit;
    double left; /* the raw baseline, or the reference side */
    double right;
    struct bench_ratio ratio;
    enum row_kind kind;
};

static void print_row(const struct row *row, const char *target)
{
    char spread[32] = "";

    if (row->kind == ROW_BUDGET || row->kind == ROW_EXTRA) {
        /* A budget is a difference, so the difference takes the range's place. */
        snprintf(spread, sizeof(spread), "%+.0f", row->right - row->left);
    } else if (row->kind == ROW_TARGET || row->kind == ROW_INFO) {
        snprintf(spread, sizeof(spread), "%.3f-%.3f", row->ratio.min, row->ratio.max);
    }
    printf("%-*s %10.*f %10.*f  %-6s %6.3f  %-12s %s\n", NAME_WIDTH, row->name,
           row->kind == ROW_FACTOR ? 2 : 1, row->left, row->kind == ROW_FACTOR ? 2 : 1, row->right,
           row->unit, row->ratio.median, spread, target);
}

static struct bench_ratio plain(double value)
{
    return (struct bench_ratio){.median = value, .min = value, .max = value};
}

static struct bench_ratio quotient(double num, double den)
{
    return plain(den > 0 ? num / den : 0);
}

static void print_case(const struct bench_case *bc, const struct bench_result *res)
{
    const struct bench_measure *m = bc->measure;
    const struct row rows[] = {
        {bc->name, m->unit, res->rate[SIDE_RAW], res->rate[SIDE_TLSOCK], res->rate_ratio,
         m->per_connection ? ROW_BUDGET : ROW_TARGET},
        {bc->reference_label != NULL ? bc->reference_label : "  vs tlsock fd fast path", m->unit,
         res->rate[SIDE_REFERENCE], res->rate[SIDE_TLSOCK], res->reference_ratio, ROW_INFO},
        {m->rate_row, m->rate_unit, res->full_rate[SIDE_RAW], res->full_rate[SIDE_TLSOCK],
         res->full_ratio, ROW_INFO},
        {"  resumed / full (speed-up)", "x", res->speedup[SIDE_RAW], res->speedup[SIDE_TLSOCK],
         quotient(res->speedup[SIDE_TLSOCK], res->speedup[SIDE_RAW]), ROW_FACTOR},
        {m->client_cpu, "us", res->client_cpu_us[SIDE_RAW], res->client_cpu_us[SIDE_TLSOCK],
         plain(res->client_cpu_ratio), ROW_LOWER},
        {m->server_cpu, "us", res->server_cpu_us[SIDE_RAW], res->server_cpu_us[SIDE_TLSOCK],
         plain(res->server_cpu_ratio), ROW_LOWER},
        {"  writer sends per MiB", "calls", res->sends_per_mib[SIDE_RAW],
         res->sends_per_mib[SIDE_TLSOCK], plain(res->sends_ratio), ROW_LOWER},
        {m->client_syscalls, "calls", res->client_syscalls[SIDE_RAW],
         res->client_syscalls[SIDE_TLSOCK], plain(res->client_syscalls_ratio), ROW_LOWER},
        {m->server_syscalls, "calls", res->server_syscalls[SIDE_RAW],
         res->server_syscalls[SIDE_TLSOCK], plain(res->server_syscalls_ratio), ROW_LOWER},
        {"  heap in use per conn", m->unit, res->heap_per_conn[SIDE_RAW],
         res->heap_per_conn[SIDE_TLSOCK],
         quotient(res->heap_per_conn[SIDE_TLSOCK], res->heap_per_conn[SIDE_RAW]), ROW_EXTRA},
        {"  of which OpenSSL's", m->unit, res->tls_heap_per_conn[SIDE_RAW],
         res->tls_heap_per_conn[SIDE_TLSOCK],
         quotient(res->tls_heap_per_conn[SIDE_TLSOCK], res->tls_heap_per_conn[SIDE_RAW]),
         ROW_EXTRA},
    };
    const bool shown[] = {
        true,
        res->sides > SIDE_REFERENCE,
        m->rate_row != NULL,
        m->resumption,
        m->client_cpu != NULL,
        m->server_cpu != NULL,
        m->sends,
        m->client_syscalls != NULL,
        m->server_syscalls != NULL,
        m->per_connection,
        m->per_connection && res->tls_heap_per_conn[SIDE_RAW] >= 0 &&
            res->tls_heap_per_conn[SIDE_TLSOCK] >= 0,
    };
    static const char *const targets[] = {
        [ROW_INFO] = "(information)",
        [ROW_LOWER] = "(lower is better)",
        [ROW_EXTRA] = "(information)",
        [ROW_FACTOR] = "(information)",
    };
    char target[64];

    bench_target(bc, res, target, sizeof(target));
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        if (shown[i]) {
            print_row(&rows[i], i == 0 ? target : targets[rows[i].kind]);
        }
    }
}

/* What the table does not say: what each side negotiated, and what is unusual about a case. */
static void print_notes(const struct bench_case *bc, const struct bench_result *res,
                        int default_rounds)
{
    if (res->ok && res->cipher[SIDE_RAW][0] != '\0') {
        printf("%s: negotiated raw %s (%s), tlsock %s (%s)", bc->name, res->cipher[SIDE_RAW],
               res->impl[SIDE_RAW], res->cipher[SIDE_TLSOCK], res->impl[SIDE_TLSOCK]);
        if (res->sides > SIDE_REFERENCE) {
            printf(", reference %s (%s)", res->cipher[SIDE_REFERENCE], res->impl[SIDE_REFERENCE]);
        }
        printf("\n");
    }
    if (res->ok && res->rounds != default_rounds && !bc->one_round) {
        printf("%s: %d rounds\n", bc->name, res->rounds);
    }
    if (res->ok && res->sides > SIDE_REFERENCE && bc->reference_label == NULL) {
        printf("%s: the 'vs tlsock fd fast path' row has the reference (tlsock over its fd fast "
               "path) in the raw column\n",
               bc->name);
    }
    if (res->ok && bc->left_name != NULL) {
        printf("%s: the raw column is %s\n", bc->name, bc->left_name);
    }
    if (res->ok && bc->measure->per_connection) {
        printf("%s: %d connections per side, growth of the server process from its warm-up "
               "connections to all connections established and idle\n",
               bc->name, res->connections);
    }
    if (res->ok && bc->measure->resumption) {
        printf("%s: resumed %llu of %llu timed connections (raw), %llu of %llu (tlsock); the "
               "full-handshake runs resumed none (checked)\n",
               bc->name, (unsigned long long)res->resumed[SIDE_RAW],
               (unsigned long long)res->count[SIDE_RAW],
               (unsigned long long)res->resumed[SIDE_TLSOCK],
               (unsigned long long)res->count[SIDE_TLSOCK]);
    }
    if (res->note[0] != '\0') {
        printf("%s: note: %s\n", bc->name, res->note);
    }
}

void bench_print_table(const struct bench_case *const *cases, size_t ncases,
                       const struct bench_result *results, int default_rounds)
{
    printf("\n%-*s %10s %10s  %-6s %6s  %-12s %s\n", NAME_WIDTH, "case", "raw", "tlsock", "unit",
           "ratio", "min-max", "target");
    for (size_t i = 0; i < ncases; i++) {
        if (results[i].ran && results[i].skipped) {
            printf("%-*s %10s\n", NAME_WIDTH, cases[i]->name, "SKIPPED");
        } else if (results[i].ran && results[i].ok) {
            print_case(cases[i], &results[i]);
        } else if (results[i].ran) {
            printf("%-*s %10s\n", NAME_WIDTH, cases[i]->name, "FAILED");
        }
    }
    printf("\n");
    for (size_t i = 0; i < ncases; i++) {
        if (results[i].ran) {
            print_notes(cases[i], &results[i], default_rounds);
        }
    }
}

struct bench_ratio bench_chart_ratio(const struct bench_case *bc, const struct bench_result *res,
                                     double *target)
{
    double raw = res->rate[SIDE_RAW];
    struct bench_ratio ratio = res->rate_ratio;

    *target = bc->target;
    if (bc->measure->per_connection) {
        ratio = quotient(res->rate[SIDE_TLSOCK], raw);
        *target = raw > 0 ? (raw + bc->budget) / raw : 0;
    }
    return ratio;
}

/*
 * One line per case that ran to the end: name, unit, the two figures, the ratio's min, median
 * and max, the target as a ratio (0: none) and whether it was met (1, 0; -1: no target). The
 * header line names the columns; docs/BENCHMARKS.md describes them.
 */
int bench_write_data(const char *path, const struct bench_case *const *cases, size_t ncases,
                     const struct bench_result *results)
{
    FILE *f = fopen(path, "w");
    int rc = BENCH_OK;

    if (f == NULL) {
        fprintf(stderr, "tlsock-bench: %s: %s\n", path, strerror(errno));
        return BENCH_ERROR;
    }
    fprintf(f, "case\tunit\traw\ttlsock\tratio_min\tratio_median\tratio_max\ttarget\tmet\n");
    for (size_t i = 0; i < ncases; i++) {
        const struct bench_result *res = &results[i];
        double target = 0;
        struct bench_ratio ratio;
        int met;

        if (!res->ran || !res->ok) {
            continue;
        }
        ratio = bench_chart_ratio(cases[i], res, &target);
        if (target <= 0) {
            met = -1;
        } else if (cases[i]->measure->per_connection || cases[i]->measure->cost) {
            met = ratio.median <= target; /* a budget or a cost: at most */
        } else {
            met = ratio.median >= target;
        }
        fprintf(f, "%s\t%s\t%.6g\t%.6g\t%.6f\t%.6f\t%.6f\t%.6f\t%d\n", cases[i]->name,
                cases[i]->measure->unit, res->rate[SIDE_RAW], res->rate[SIDE_TLSOCK], ratio.min,
                ratio.median, ratio.max, target, met);
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "tlsock-bench: %s: %s\n", path, strerror(errno));
        rc = BENCH_ERROR;
    }
    return rc;
}
