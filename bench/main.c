/*
 * tlsock-bench: tlsock against the TLS implementation it wraps (raw OpenSSL, or raw GnuTLS in the
 * -gnutls cases), same process, same workload, interleaved rounds.
 *
 *   tlsock-bench [--list] [--seconds S] [--rounds N] [--connections N] [--data FILE]
 *                [--verbose] [CASE...]
 *
 * The cases come from the case files (case_*.c), in the order of case_files[] below; run.c runs
 * each the same way and prints one line per case on stderr as it finishes, report.c the table at
 * the end and, with --data, the data file that scripts/bench-chart draws. The idle cases' server
 * processes are this program executed again (case_idle.c).
 */
#include <fnmatch.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "bench.h"
#ifdef BENCH_HAVE_UV
#include "async.h"
#endif

#define DEFAULT_SECONDS 0.4
#define MAX_SECONDS     60.0
#define MAX_CASES       64
/* The idle cases' default; at most what the bench machine's 20,000 descriptors per process allow.
 */
#define DEFAULT_CONNECTIONS 10000
#define MAX_CONNECTIONS     19000

static const struct bench_cases *const case_files[] = {
    &bench_throughput_cases,   &bench_memory_cases,     &bench_handshake_cases,
    &bench_resume_redis_cases, /* listed even without Redis, then skipped with a note */
#ifdef BENCH_HAVE_UV
    &bench_echo_cases,         &bench_stunnel_cases,    &bench_async_handshake_cases,
    &bench_idle_cases,         &bench_idle_block_cases, &bench_serve_threads_cases,
    &bench_tunnel_cases,
#endif
};

struct options {
    struct bench_options run;
    const char *data; /* --data: where to write the results for the chart, or NULL */
    const struct bench_case *cases[MAX_CASES];
    size_t ncases;
    bool selected[MAX_CASES];
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: tlsock-bench [--list] [--seconds S] [--rounds N] [--connections N]\n"
            "                    [--data FILE] [--verbose] [CASE...]\n"
            "  --list           list the cases and exit\n"
            "  --seconds S      length of each measured run (default %.1f)\n"
            "  --rounds N       raw/tlsock rounds per case, median reported (default %d,\n"
            "                   %d for the -gnutls cases, %d for the async cases; the idle\n"
            "                   cases always run one)\n"
            "  --connections N  connections the idle cases hold (default %d, at most %d)\n"
            "  --data FILE      also write the results to FILE, tab-separated, for\n"
            "                   scripts/bench-chart\n"
            "  --verbose        print every round\n"
            "CASE is a name or a shell pattern ('async-*'); without CASE, every case runs.\n",
            DEFAULT_SECONDS, BENCH_ROUNDS, BENCH_GNUTLS_ROUNDS, BENCH_ASYNC_ROUNDS,
            DEFAULT_CONNECTIONS, MAX_CONNECTIONS);
}

/* Selects the cases that @p pattern names (fnmatch); returns how many. */
static int select_cases(const char *pattern, struct options *opts)
{
    int found = 0;

    for (size_t i = 0; i < opts->ncases; i++) {
        if (fnmatch(pattern, opts->cases[i]->name, 0) == 0) {
            opts->selected[i] = true;
            found++;
        }
    }
    return found;
}

/* What parse_args() decided. */
enum { ARGS_RUN = 0, ARGS_DONE = 1 /* --list, --help */, ARGS_BAD = 2 /* exit status 2 */ };

/* A number in [min, max] (a whole one if @p whole) from the option's argument, or ARGS_BAD. */
static int number(const char *name, double min, double max, bool whole, double *out)
{
    char *end = NULL;

    *out = strtod(optarg, &end);
    if (*end != '\0' || !(*out >= min && *out <= max) || (whole && *out != (double)(long)*out)) {
        fprintf(stderr, "tlsock-bench: --%s wants a number from %g to %g\n", name, min, max);
        return ARGS_BAD;
    }
    return ARGS_RUN;
}

static int parse_args(int argc, char **argv, struct options *opts)
{
    static const struct option longopts[] = {
        {"list", no_argument, NULL, 'l'},         {"seconds", required_argument, NULL, 's'},
        {"rounds", required_argument, NULL, 'r'}, {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},         {"connections", required_argument, NULL, 'c'},
        {"data", required_argument, NULL, 'd'},   {NULL, 0, NULL, 0},
    };
    int rc = ARGS_RUN;
    double value = 0;
    bool any = false;
    int c = getopt_long(argc, argv, "ls:r:c:d:vh", longopts, NULL);

    opts->run.seconds = DEFAULT_SECONDS;
    opts->run.rounds = BENCH_ROUNDS;
    while (rc == ARGS_RUN && c != -1) {
        if (c == 'l') {
            for (size_t i = 0; i < opts->ncases; i++) {
                printf("%-34s %s\n", opts->cases[i]->name, opts->cases[i]->summary);
            }
            rc = ARGS_DONE;
        } else if (c == 's') {
            rc = number("seconds", 0.001, MAX_SECONDS, false, &opts->run.seconds);
        } else if (c == 'r') {
            rc = number("rounds", 1, MAX_ROUNDS, true, &value);
            opts->run.rounds = (int)value;
            opts->run.rounds_set = true;
        } else if (c == 'c') {
            rc = number("connections", 1, MAX_CONNECTIONS, true, &value);
            opts->run.connections = (int)value;
        } else if (c == 'd') {
            opts->data = optarg;
        } else if (c == 'v') {
            opts->run.verbose = true;
        } else {
            usage(c == 'h' ? stdout : stderr);
            rc = c == 'h' ? ARGS_DONE : ARGS_BAD;
        }
        if (rc == ARGS_RUN) {
            c = getopt_long(argc, argv, "ls:r:c:d:vh", longopts, NULL);
        }
    }
    for (int i = optind; rc == ARGS_RUN && i < argc; i++) {
        if (select_cases(argv[i], opts) == 0) {
            fprintf(stderr, "tlsock-bench: unknown case \"%s\" (see --list)\n", argv[i]);
            rc = ARGS_BAD;
        }
        any = true;
    }
    for (size_t i = 0; rc == ARGS_RUN && !any && i < opts->ncases; i++) {
        opts->selected[i] = true;
    }
    return rc;
}

static void print_header(const struct options *opts)
{
    time_t now = time(NULL);
    char date[64];

    strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", gmtime(&now));
    printf("tlsock-bench  %s\n", date);
    for (int impl = TLSOCK_IMPL_OPENSSL; impl <= TLSOCK_IMPL_GNUTLS; impl++) {
        if (tlsock_impl_available(impl)) {
            printf("tlsock impl:  %s\n", tlsock_impl_version(impl));
        }
    }
    printf("raw baseline: %s\n", OpenSSL_version(OPENSSL_VERSION));
#ifdef BENCH_HAVE_GNUTLS
    printf("raw baseline: GnuTLS %s\n", bench_gnutls_version());
#endif
#ifdef BENCH_HAVE_UV
    printf("libuv:        %s\n", uv_version_string());
#endif
    for (size_t i = 0; i < opts->ncases; i++) {
        const char *version =
            opts->cases[i]->version != NULL && opts->selected[i] ? opts->cases[i]->version() : NULL;

        if (version != NULL) {
            printf("compared:     %s\n", version);
        }
    }
    printf("cpus online:  %ld\n", sysconf(_SC_NPROCESSORS_ONLN));
    printf("method:       %d rounds of %.2f s per side and case (%d in the -gnutls cases,\n"
           "              %d in the async cases, 1 in the idle cases), order rotating; values\n"
           "              are medians, ratio is the median of the per-round ratios tlsock/raw,\n"
           "              min-max their lowest and highest\n",
           opts->run.rounds, opts->run.seconds,
           opts->run.rounds_set ? opts->run.rounds : BENCH_GNUTLS_ROUNDS,
           opts->run.rounds_set ? opts->run.rounds : BENCH_ASYNC_ROUNDS);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    static struct bench_result results[MAX_CASES];
    static struct options opts;
    int args;
    int failures = 0;

#ifdef BENCH_HAVE_UV
    /* The idle cases' server processes are this program run again (case_idle.c). */
    if (argc > 1 && strcmp(argv[1], BENCH_IDLE_CHILD_ARG) == 0) {
        return bench_idle_child(argc - 2, argv + 2);
    }
#endif
    for (size_t f = 0; f < sizeof(case_files) / sizeof(case_files[0]); f++) {
        for (size_t i = 0; i < case_files[f]->n && opts.ncases < MAX_CASES; i++) {
            opts.cases[opts.ncases++] = &case_files[f]->cases[i];
        }
    }
    args = parse_args(argc, argv, &opts);
    if (args != ARGS_RUN) {
        return args == ARGS_BAD ? 2 : 0;
    }
    /* The raw baselines write with write(2): a peer that closed first must not kill us. */
    signal(SIGPIPE, SIG_IGN);
    print_header(&opts);
    for (size_t i = 0; i < opts.ncases; i++) {
        if (opts.selected[i] && bench_run_case(opts.cases[i], &opts.run, &results[i]) != BENCH_OK) {
            failures++;
        }
    }
    bench_print_table(opts.cases, opts.ncases, results, opts.run.rounds);
    if (opts.data != NULL &&
        bench_write_data(opts.data, opts.cases, opts.ncases, results) != BENCH_OK) {
        failures++;
    }
    return failures == 0 ? 0 : 1;
}
