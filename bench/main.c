/*
 * tlsock-bench: tlsock against raw OpenSSL (and, in the -gnutls cases, tlsock on GnuTLS against
 * raw GnuTLS), same process, same workload, interleaved rounds.
 *
 *   tlsock-bench [--list] [--seconds S] [--rounds N] [--verbose] [CASE...]
 *
 * Each case makes its certificates and the sides' contexts once, warms every side up, then runs
 * N rounds of one raw and one tlsock measurement (plus a reference tlsock measurement in some
 * cases), rotating which goes first so that a slow drift of the machine (other load, CPU
 * frequency) favours no side. It reports the median of each side and the ratio tlsock / raw
 * (run_case.c, report.c).
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "runner.h"

#define DEFAULT_SECONDS 0.4
#define DEFAULT_ROUNDS  21
#define MAX_SECONDS     60.0

/* One TLS record's worth of plaintext per write (RFC 8446 section 5.1). */
#define RECORD_WRITE (16 * 1024)
/* Large writes, which tlsock coalesces into several records per send. */
#define LARGE_WRITE (256 * 1024)

/*
 * Targets from docs/DESIGN.md, as ratios tlsock / raw: the fd path, the callback and memory
 * transports, and large writes, which coalescing should make at least as fast as raw.
 */
#define THROUGHPUT_TARGET 0.98
#define TRANSPORT_TARGET  0.95
#define COALESCE_TARGET   1.00
#define HANDSHAKE_TARGET  0.97

/*
 * The -gnutls cases run fewer rounds by default so that a full run stays near three minutes;
 * --rounds overrides it like every other case's.
 */
#define GNUTLS_ROUNDS 15

static const struct bench_case cases[] = {
    {.name = "throughput-aes128gcm",
     .kind = KIND_THROUGHPUT,
     .key_type = "ec-p256",
     .suite = "TLS_AES_128_GCM_SHA256",
     .write_size = RECORD_WRITE,
     .target = THROUGHPUT_TARGET,
     .summary = "bulk transfer, TLS 1.3 AES-128-GCM, 16 KiB writes"},
    {.name = "throughput-chacha20",
     .kind = KIND_THROUGHPUT,
     .key_type = "ec-p256",
     .suite = "TLS_CHACHA20_POLY1305_SHA256",
     .write_size = RECORD_WRITE,
     .target = THROUGHPUT_TARGET,
     .summary = "bulk transfer, TLS 1.3 ChaCha20-Poly1305, 16 KiB writes"},
    {.name = "throughput-callbacks",
     .kind = KIND_THROUGHPUT,
     .key_type = "ec-p256",
     .suite = "TLS_AES_128_GCM_SHA256",
     .write_size = RECORD_WRITE,
     .fd_callbacks = true,
     .reference = true,
     .target = TRANSPORT_TARGET,
     .summary = "bulk transfer as throughput-aes128gcm, tlsock ends over the callback path "
                "(opts.fd_callbacks); reference: tlsock's fd fast path"},
    {.name = "throughput-coalesced-256k",
     .kind = KIND_THROUGHPUT,
     .key_type = "ec-p256",
     .suite = "TLS_AES_128_GCM_SHA256",
     .write_size = LARGE_WRITE,
     .target = COALESCE_TARGET,
     .summary = "bulk transfer, TLS 1.3 AES-128-GCM, 256 KiB writes (tlsock coalesces records)"},
    {.name = "memory-aes128gcm",
     .kind = KIND_MEMORY,
     .key_type = "ec-p256",
     .suite = "TLS_AES_128_GCM_SHA256",
     .write_size = RECORD_WRITE,
     .target = TRANSPORT_TARGET,
     .summary = "both ends in memory mode in one thread (raw: memory BIOs), AES-128-GCM, "
                "16 KiB writes"},
    {.name = "handshake-ecdsa-p256",
     .kind = KIND_HANDSHAKE,
     .key_type = "ec-p256",
     .suite = NULL,
     .target = HANDSHAKE_TARGET,
     .summary = "full TLS 1.3 handshakes on new connections, ECDSA P-256 certificates"},
    {.name = "handshake-rsa2048",
     .kind = KIND_HANDSHAKE,
     .key_type = "rsa-2048",
     .suite = NULL,
     .target = HANDSHAKE_TARGET,
     .summary = "full TLS 1.3 handshakes on new connections, RSA-2048 certificates"},
    {.name = "throughput-aes128gcm-gnutls",
     .kind = KIND_THROUGHPUT,
     .key_type = "ec-p256",
     .suite = "TLS_AES_128_GCM_SHA256",
     .write_size = RECORD_WRITE,
     .target = THROUGHPUT_TARGET,
     .impl = TLSOCK_IMPL_GNUTLS,
     .rounds = GNUTLS_ROUNDS,
     .summary = "as throughput-aes128gcm, tlsock on GnuTLS against raw GnuTLS"},
    {.name = "throughput-chacha20-gnutls",
     .kind = KIND_THROUGHPUT,
     .key_type = "ec-p256",
     .suite = "TLS_CHACHA20_POLY1305_SHA256",
     .write_size = RECORD_WRITE,
     .target = THROUGHPUT_TARGET,
     .impl = TLSOCK_IMPL_GNUTLS,
     .rounds = GNUTLS_ROUNDS,
     .summary = "as throughput-chacha20, tlsock on GnuTLS against raw GnuTLS"},
    {.name = "handshake-ecdsa-p256-gnutls",
     .kind = KIND_HANDSHAKE,
     .key_type = "ec-p256",
     .suite = NULL,
     .target = HANDSHAKE_TARGET,
     .impl = TLSOCK_IMPL_GNUTLS,
     .rounds = GNUTLS_ROUNDS,
     .summary = "as handshake-ecdsa-p256, tlsock on GnuTLS against raw GnuTLS"},
    {.name = "handshake-rsa2048-gnutls",
     .kind = KIND_HANDSHAKE,
     .key_type = "rsa-2048",
     .suite = NULL,
     .target = HANDSHAKE_TARGET,
     .impl = TLSOCK_IMPL_GNUTLS,
     .rounds = GNUTLS_ROUNDS,
     .summary = "as handshake-rsa2048, tlsock on GnuTLS against raw GnuTLS"},
};

#define NCASES (sizeof(cases) / sizeof(cases[0]))

struct options {
    struct run_options run;
    bool selected[NCASES];
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: tlsock-bench [--list] [--seconds S] [--rounds N] [--verbose] [CASE...]\n"
            "  --list       list the cases and exit\n"
            "  --seconds S  length of each measured run (default %.1f)\n"
            "  --rounds N   raw/tlsock rounds per case, median reported (default %d,\n"
            "               %d for the -gnutls cases)\n"
            "  --verbose    print every round\n"
            "Without CASE, every case runs.\n",
            DEFAULT_SECONDS, DEFAULT_ROUNDS, GNUTLS_ROUNDS);
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

    opts->run.seconds = DEFAULT_SECONDS;
    opts->run.rounds = DEFAULT_ROUNDS;
    opts->run.verbose = false;
    c = getopt_long(argc, argv, "ls:r:vh", longopts, NULL);
    while (rc == ARGS_RUN && c != -1) {
        switch (c) {
        case 'l':
            for (size_t i = 0; i < NCASES; i++) {
                printf("%-28s %s\n", cases[i].name, cases[i].summary);
            }
            rc = ARGS_DONE;
            break;
        case 's':
            opts->run.seconds = strtod(optarg, &end);
            if (*end != '\0' || !(opts->run.seconds > 0 && opts->run.seconds <= MAX_SECONDS)) {
                fprintf(stderr, "tlsock-bench: --seconds wants a number in (0, %.0f]\n",
                        MAX_SECONDS);
                rc = ARGS_BAD;
            }
            break;
        case 'r':
            opts->run.rounds = (int)strtol(optarg, &end, 10);
            opts->run.rounds_set = true;
            if (*end != '\0' || opts->run.rounds < 1 || opts->run.rounds > MAX_ROUNDS) {
                fprintf(stderr, "tlsock-bench: --rounds wants 1 to %d\n", MAX_ROUNDS);
                rc = ARGS_BAD;
            }
            break;
        case 'v':
            opts->run.verbose = true;
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
    for (int impl = TLSOCK_IMPL_OPENSSL; impl <= TLSOCK_IMPL_GNUTLS; impl++) {
        if (tlsock_impl_available(impl)) {
            printf("tlsock impl:  %s\n", tlsock_impl_version(impl));
        }
    }
    printf("raw baseline: %s\n", OpenSSL_version(OPENSSL_VERSION));
#ifdef BENCH_HAVE_GNUTLS
    printf("raw baseline: GnuTLS %s\n", bench_gnutls_version());
#endif
    printf("cpus online:  %ld\n", sysconf(_SC_NPROCESSORS_ONLN));
    printf("method:       %d rounds of %.2f s per side and case (%d in the -gnutls cases),\n"
           "              order rotating; values are medians, ratio is the median of the\n"
           "              per-round ratios tlsock/raw\n",
           opts.run.rounds, opts.run.seconds,
           opts.run.rounds_set ? opts.run.rounds : GNUTLS_ROUNDS);
    fflush(stdout);
    for (size_t i = 0; i < NCASES; i++) {
        if (opts.selected[i] && run_case(&cases[i], &opts.run, &results[i]) != BENCH_OK) {
            failures++;
        }
    }
    print_table(cases, NCASES, results, opts.run.rounds);
    status = failures == 0 ? 0 : 1;

out:
    return status;
}
