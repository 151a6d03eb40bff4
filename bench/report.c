/*
 * The results table of tlsock-bench: one block of rows per case, the main rate with its target
 * first, then the figures that explain it (CPU time per unit, send calls per MiB, the reference
 * side), then the negotiated suites and notes.
 */
#include <stdio.h>

#include "runner.h"

#define NAME_WIDTH 34

enum row_kind {
    ROW_TARGET, /* tlsock / raw against the case's target, with the ratio's quartiles */
    ROW_LOWER,  /* a cost: lower is better */
    ROW_INFO,   /* for information, with the ratio's quartiles */
    ROW_BUDGET, /* a cost against a budget above raw: tlsock - raw <= budget */
    ROW_EXTRA,  /* a cost, with the difference tlsock - raw, for information */
};

/* One line of the table. */
struct row {
    const char *name;
    const char *unit;
    double left; /* the raw baseline, or the reference side */
    double right;
    struct ratio ratio;
    enum row_kind kind;
    double target;
};

static void print_row(const struct row *row)
{
    char spread[32] = "";
    double diff = row->right - row->left;

    if (row->kind == ROW_TARGET || row->kind == ROW_INFO) {
        snprintf(spread, sizeof(spread), "%.3f-%.3f", row->ratio.q1, row->ratio.q3);
    } else if (row->kind == ROW_BUDGET || row->kind == ROW_EXTRA) {
        /* The budget is a difference, so the difference takes the quartiles' place. */
        snprintf(spread, sizeof(spread), "%+.0f", diff);
    }
    printf("%-*s %10.1f %10.1f  %-6s %6.3f  %-12s ", NAME_WIDTH, row->name, row->left, row->right,
           row->unit, row->ratio.median, spread);
    if (row->kind == ROW_TARGET && row->target > 0) {
        printf(">= %.2f %s\n", row->target, row->ratio.median >= row->target ? "met" : "MISSED");
    } else if (row->kind == ROW_TARGET || row->kind == ROW_INFO) {
        printf("(information)\n");
    } else if (row->kind == ROW_BUDGET) {
        printf("<= raw%+.0f %s\n", row->target, diff <= row->target ? "met" : "MISSED");
    } else if (row->kind == ROW_EXTRA) {
        printf("(information)\n");
    } else {
        printf("(lower is better)\n");
    }
}

static struct ratio plain(double value)
{
    return (struct ratio){.median = value, .q1 = value, .q3 = value};
}

/* The idle cases: bytes of server memory per connection, RSS against the budget. */
static void print_idle_case(const struct bench_case *bc, const struct case_result *res)
{
    const struct row rss = {
        .name = bc->name,
        .unit = "B/conn",
        .left = res->rate[SIDE_RAW],
        .right = res->rate[SIDE_TLSOCK],
        .ratio = plain(res->rate_ratio.median),
        .kind = bc->budget >= 0 ? ROW_BUDGET : ROW_EXTRA,
        .target = bc->budget,
    };
    const struct row heap = {
        .name = "  heap in use per conn",
        .unit = "B/conn",
        .left = res->heap_per_conn[SIDE_RAW],
        .right = res->heap_per_conn[SIDE_TLSOCK],
        .ratio = plain(res->heap_per_conn[SIDE_RAW] > 0
                           ? res->heap_per_conn[SIDE_TLSOCK] / res->heap_per_conn[SIDE_RAW]
                           : 0),
        .kind = ROW_EXTRA,
    };
    const struct row tls = {
        .name = "  of which OpenSSL's",
        .unit = "B/conn",
        .left = res->tls_heap_per_conn[SIDE_RAW],
        .right = res->tls_heap_per_conn[SIDE_TLSOCK],
        .ratio = plain(res->tls_heap_per_conn[SIDE_RAW] > 0
                           ? res->tls_heap_per_conn[SIDE_TLSOCK] / res->tls_heap_per_conn[SIDE_RAW]
                           : 0),
        .kind = ROW_EXTRA,
    };

    print_row(&rss);
    print_row(&heap);
    if (res->tls_heap_per_conn[SIDE_RAW] >= 0 && res->tls_heap_per_conn[SIDE_TLSOCK] >= 0) {
        print_row(&tls);
    }
}

static void print_case(const struct bench_case *bc, const struct case_result *res)
{
    bool bulk = bc->kind != KIND_HANDSHAKE && bc->kind != KIND_ASYNC_HANDSHAKE;
    bool echo = bc->kind == KIND_ECHO;
    const struct row rate = {
        .name = bc->name,
        .unit = bulk ? "MiB/s" : "hs/s",
        .left = res->rate[SIDE_RAW],
        .right = res->rate[SIDE_TLSOCK],
        .ratio = res->rate_ratio,
        .kind = ROW_TARGET,
        .target = bc->target,
    };
    const struct row reference = {
        .name = bc->reference_label != NULL ? bc->reference_label : "  vs tlsock fd fast path",
        .unit = "MiB/s",
        .left = res->rate[SIDE_REFERENCE],
        .right = res->rate[SIDE_TLSOCK],
        .ratio = res->reference_ratio,
        .kind = ROW_INFO,
    };
    const struct row client = {
        .name = bc->kind == KIND_MEMORY ? "  CPU per MiB (both ends)"
                : echo                  ? "  client CPU per MiB"
                : bulk                  ? "  writer CPU per MiB"
                                        : "  client CPU per hs",
        .unit = "us",
        .left = res->client_cpu_us[SIDE_RAW],
        .right = res->client_cpu_us[SIDE_TLSOCK],
        .ratio = plain(res->client_cpu_ratio),
        .kind = ROW_LOWER,
    };
    const struct row server = {
        .name = echo   ? "  server CPU per MiB"
                : bulk ? "  reader CPU per MiB"
                       : "  server CPU per hs",
        .unit = "us",
        .left = res->server_cpu_us[SIDE_RAW],
        .right = res->server_cpu_us[SIDE_TLSOCK],
        .ratio = plain(res->server_cpu_ratio),
        .kind = ROW_LOWER,
    };
    const struct row sends = {
        .name = "  writer sends per MiB",
        .unit = "calls",
        .left = res->sends_per_mib[SIDE_RAW],
        .right = res->sends_per_mib[SIDE_TLSOCK],
        .ratio = plain(res->sends_ratio),
        .kind = ROW_LOWER,
    };

    if (bc->kind == KIND_IDLE) {
        print_idle_case(bc, res);
        goto out;
    }
    print_row(&rate);
    if (res->sides > SIDE_REFERENCE) {
        print_row(&reference);
    }
    print_row(&client);
    /* In memory mode one thread does both ends: the reader has no figure of its own. */
    if (bc->kind != KIND_MEMORY) {
        print_row(&server);
    }
    if (bc->kind == KIND_THROUGHPUT) {
        print_row(&sends);
    }

out:
    return;
}

void print_table(const struct bench_case *cases, size_t ncases, const struct case_result *results,
                 int default_rounds)
{
    printf("\n%-*s %10s %10s  %-6s %6s  %-12s %s\n", NAME_WIDTH, "case", "raw", "tlsock", "unit",
           "ratio", "ratio IQR", "target");
    for (size_t i = 0; i < ncases; i++) {
        if (results[i].ran && results[i].skipped) {
            printf("%-*s %10s\n", NAME_WIDTH, cases[i].name, "SKIPPED");
        } else if (results[i].ran && results[i].ok) {
            print_case(&cases[i], &results[i]);
        } else if (results[i].ran) {
            printf("%-*s %10s\n", NAME_WIDTH, cases[i].name, "FAILED");
        }
    }
    printf("\n");
    for (size_t i = 0; i < ncases; i++) {
        const struct case_result *res = &results[i];

        /*
         * The suite and implementation each side's connection reported, as evidence that the
         * sides compare the same thing (tlsock's from tlsock_conn_info).
         */
        if (res->ran && res->ok && cases[i].kind != KIND_MEMORY) {
            printf("%s: negotiated raw %s (%s), tlsock %s (%s)", cases[i].name,
                   res->cipher[SIDE_RAW], res->impl[SIDE_RAW], res->cipher[SIDE_TLSOCK],
                   res->impl[SIDE_TLSOCK]);
            if (res->sides > SIDE_REFERENCE) {
                printf(", reference %s (%s)", res->cipher[SIDE_REFERENCE],
                       res->impl[SIDE_REFERENCE]);
            }
            printf("\n");
        }
        if (res->ran && res->ok && res->rounds != default_rounds && !cases[i].fixed_rounds) {
            printf("%s: %d rounds\n", cases[i].name, res->rounds);
        }
        if (res->ran && res->sides > SIDE_REFERENCE && !cases[i].async) {
            printf(
                "%s: the 'vs tlsock fd fast path' row has the reference (tlsock over its fd fast "
                "path) in the raw column\n",
                cases[i].name);
        }
        if (res->ran && res->ok && cases[i].left_name != NULL) {
            printf("%s: the raw column is %s\n", cases[i].name, cases[i].left_name);
        }
        if (res->ran && res->ok && cases[i].kind == KIND_IDLE) {
            printf("%s: %d connections per side, growth of the server process from %s to %s\n",
                   cases[i].name, res->connections, "its warm-up connections",
                   "all connections established and idle");
        }
        if (res->ran && res->note[0] != '\0') {
            printf("%s: note: %s\n", cases[i].name, res->note);
        }
    }
}
