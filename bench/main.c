/*
 * tlsock-bench: tlsock against raw OpenSSL (and, in the -gnutls cases, tlsock on GnuTLS against
 * raw GnuTLS), same process, same workload, interleaved rounds.
 *
 *   tlsock-bench [--list] [--seconds S] [--rounds N] [--connections N] [--verbose] [CASE...]
 *
 * Each case makes its certificates and the sides' contexts once, warms every side up, then runs
 * N rounds of one raw and one tlsock measurement (plus a reference tlsock measurement in some
 * cases), rotating which goes first so that a slow drift of the machine (other load, CPU
 * frequency) favours no side. It reports the median of each side and the ratio tlsock / raw
 * (run_case.c, report.c). The async-* cases measure the libuv driver (async.h); the idle ones
 * run their servers and clients as child processes, this program executed again.
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

#include "runner.h"
#ifdef BENCH_HAVE_UV
#include "async.h"
#endif

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

/*
 * The async cases (libuv driver). Targets from docs/DESIGN.md: the driver's throughput against
 * raw blocking use, and memory per idle connection no more than raw OpenSSL's with released
 * buffers plus 1 KiB. They run fewer rounds, for the same reason as the -gnutls cases; the idle
 * cases run one round whatever --rounds says (each is 10,000 handshakes per side).
 */
#define ASYNC_TARGET          0.90
#define ASYNC_ROUNDS          11
#define ECHO_WINDOW           (64 * 1024)
#define HANDSHAKE_CONCURRENCY 32
#define IDLE_CONNECTIONS      10000
#define IDLE_BUDGET           1024.0
#define MAX_CONNECTIONS       19000 /* the fd limit is 20,000 per process on the bench machine */

/* The sides of the async cases exist only when the bench is built with the libuv driver. */
#ifdef BENCH_HAVE_UV
#define SIDES(raw, tlsock)                                                                         \
    {                                                                                              \
        [SIDE_RAW] = &(raw), [SIDE_TLSOCK] = &(tlsock)                                             \
    }
#define SIDES3(raw, tlsock, reference)                                                             \
    {                                                                                              \
        [SIDE_RAW] = &(raw), [SIDE_TLSOCK] = &(tlsock), [SIDE_REFERENCE] = &(reference)            \
    }
#define STUNNEL_MISSING bench_stunnel_missing
#else
#define SIDES(raw, tlsock)                                                                         \
    {                                                                                              \
        NULL                                                                                       \
    }
#define SIDES3(raw, tlsock, reference) SIDES(raw, tlsock)
#define STUNNEL_MISSING                NULL
#endif

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
    {.name = "async-echo-aes128gcm",
     .kind = KIND_ECHO,
     .key_type = "ec-p256",
     .suite = "TLS_AES_128_GCM_SHA256",
     .write_size = RECORD_WRITE,
     .window = ECHO_WINDOW,
     .target = ASYNC_TARGET,
     .rounds = ASYNC_ROUNDS,
     .async = true,
     .sides = SIDES(bench_side_raw_echo, bench_side_uv_echo),
     .summary = "echo, TLS 1.3 AES-128-GCM, 16 KiB writes, 64 KiB in flight: tlsock_uv client "
                "and server (a loop each) against raw OpenSSL on blocking sockets"},
    {.name = "async-echo-aes128gcm-gnutls",
     .kind = KIND_ECHO,
     .key_type = "ec-p256",
     .suite = "TLS_AES_128_GCM_SHA256",
     .write_size = RECORD_WRITE,
     .window = ECHO_WINDOW,
     .target = ASYNC_TARGET,
     .impl = TLSOCK_IMPL_GNUTLS,
     .rounds = ASYNC_ROUNDS,
     .async = true,
     .sides = SIDES(bench_side_raw_echo, bench_side_uv_echo),
     .summary = "as async-echo-aes128gcm, tlsock_uv on GnuTLS against raw GnuTLS"},
    {.name = "async-echo-stunnel",
     .kind = KIND_ECHO,
     .key_type = "ec-p256",
     .suite = "TLS_AES_128_GCM_SHA256",
     .write_size = RECORD_WRITE,
     .window = ECHO_WINDOW,
     .rounds = ASYNC_ROUNDS,
     .async = true,
     .sides = SIDES3(bench_side_stunnel_echo, bench_side_uv_server_echo, bench_side_raw_echo),
     .left_name = "stunnel, TLS terminator in front of a plaintext echo server; every side has "
                  "the raw OpenSSL blocking client",
     .reference_label = "  vs raw blocking server",
     .missing = STUNNEL_MISSING,
     .summary = "the echo of async-echo-aes128gcm from a raw OpenSSL blocking client: a "
                "tlsock_uv server against stunnel (reference: raw blocking server)"},
    {.name = "async-handshake-ecdsa-p256",
     .kind = KIND_ASYNC_HANDSHAKE,
     .key_type = "ec-p256",
     .suite = NULL,
     .concurrency = HANDSHAKE_CONCURRENCY,
     .rounds = ASYNC_ROUNDS,
     .async = true,
     .sides = SIDES(bench_side_raw_handshakes, bench_side_uv_handshakes),
     .summary = "full TLS 1.3 handshakes, ECDSA P-256, 32 in flight: a tlsock_uv server loop and "
                "two client loops against 32 blocking client and 32 server threads (raw OpenSSL)"},
    {.name = "async-handshake-ecdsa-p256-gnutls",
     .kind = KIND_ASYNC_HANDSHAKE,
     .key_type = "ec-p256",
     .suite = NULL,
     .concurrency = HANDSHAKE_CONCURRENCY,
     .impl = TLSOCK_IMPL_GNUTLS,
     .rounds = ASYNC_ROUNDS,
     .async = true,
     .sides = SIDES(bench_side_raw_handshakes, bench_side_uv_handshakes),
     .summary = "as async-handshake-ecdsa-p256, tlsock_uv on GnuTLS against raw GnuTLS"},
    {.name = "async-idle-10k",
     .kind = KIND_IDLE,
     .key_type = "ec-p256",
     .suite = NULL,
     .concurrency = IDLE_CONNECTIONS,
     .budget = IDLE_BUDGET,
     .rounds = 1,
     .fixed_rounds = true,
     .async = true,
     .sides = SIDES(bench_side_raw_idle, bench_side_uv_idle),
     .summary = "server memory per idle TLS connection, 10,000 of them on one tlsock_uv loop, "
                "against raw OpenSSL with SSL_MODE_RELEASE_BUFFERS on epoll"},
    {.name = "async-idle-10k-gnutls",
     .kind = KIND_IDLE,
     .key_type = "ec-p256",
     .suite = NULL,
     .concurrency = IDLE_CONNECTIONS,
     .budget = -1,
     .impl = TLSOCK_IMPL_GNUTLS,
     .rounds = 1,
     .fixed_rounds = true,
     .async = true,
     .sides = SIDES(bench_side_raw_idle, bench_side_uv_idle),
     .summary = "as async-idle-10k on GnuTLS, against raw GnuTLS on epoll (information)"},
};

#define NCASES (sizeof(cases) / sizeof(cases[0]))

struct options {
    struct run_options run;
    bool selected[NCASES];
};

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: tlsock-bench [--list] [--seconds S] [--rounds N] [--connections N] [--verbose]\n"
        "                    [CASE...]\n"
        "  --list           list the cases and exit\n"
        "  --seconds S      length of each measured run (default %.1f)\n"
        "  --rounds N       raw/tlsock rounds per case, median reported (default %d,\n"
        "                   %d for the -gnutls cases, %d for the async cases; the idle\n"
        "                   cases always run one)\n"
        "  --connections N  connections the idle cases hold (default %d, at most %d)\n"
        "  --verbose        print every round\n"
        "CASE is a name or a shell pattern ('async-*'); without CASE, every case runs.\n",
        DEFAULT_SECONDS, DEFAULT_ROUNDS, GNUTLS_ROUNDS, ASYNC_ROUNDS, IDLE_CONNECTIONS,
        MAX_CONNECTIONS);
}

/* Selects the cases that @p pattern names (fnmatch); returns how many. */
static int select_cases(const char *pattern, bool *selected)
{
    int found = 0;

    for (size_t i = 0; i < NCASES; i++) {
        if (fnmatch(pattern, cases[i].name, 0) == 0) {
            selected[i] = true;
            found++;
        }
    }
    return found;
}

/* What parse_args() decided. */
enum { ARGS_RUN = 0, ARGS_DONE = 1 /* --list, --help */, ARGS_BAD = 2 /* exit status 2 */ };

static int parse_args(int argc, char **argv, struct options *opts)
{
    static const struct option longopts[] = {
        {"list", no_argument, NULL, 'l'},
        {"seconds", required_argument, NULL, 's'},
        {"rounds", required_argument, NULL, 'r'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"connections", required_argument, NULL, 'c'},
        {NULL, 0, NULL, 0},
    };
    int rc = ARGS_RUN;
    int c;
    char *end = NULL;
    bool any = false;

    opts->run.seconds = DEFAULT_SECONDS;
    opts->run.rounds = DEFAULT_ROUNDS;
    opts->run.verbose = false;
    c = getopt_long(argc, argv, "ls:r:c:vh", longopts, NULL);
    while (rc == ARGS_RUN && c != -1) {
        switch (c) {
        case 'l':
            for (size_t i = 0; i < NCASES; i++) {
                printf("%-34s %s\n", cases[i].name, cases[i].summary);
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
        case 'c':
            opts->run.connections = (int)strtol(optarg, &end, 10);
            if (*end != '\0' || opts->run.connections < 1 ||
                opts->run.connections > MAX_CONNECTIONS) {
                fprintf(stderr, "tlsock-bench: --connections wants 1 to %d\n", MAX_CONNECTIONS);
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
            c = getopt_long(argc, argv, "ls:r:c:vh", longopts, NULL);
        }
    }
    for (int i = optind; rc == ARGS_RUN && i < argc; i++) {
        if (select_cases(argv[i], opts->selected) == 0) {
            fprintf(stderr, "tlsock-bench: unknown case \"%s\" (see --list)\n", argv[i]);
            rc = ARGS_BAD;
        } else {
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
    static struct case_result results[NCASES];
    struct options opts = {0};
    int args = ARGS_DONE;
    int status = 0;
    int failures = 0;
    time_t now = time(NULL);
    char date[64];

#ifdef BENCH_HAVE_UV
    /* The idle cases' server and client processes are this program run again (idle.c). */
    if (argc > 1 && strcmp(argv[1], BENCH_IDLE_CHILD_ARG) == 0) {
        status = bench_idle_child(argc - 2, argv + 2);
        goto out;
    }
#endif
    args = parse_args(argc, argv, &opts);
    status = args == ARGS_BAD ? 2 : 0;
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
#ifdef BENCH_HAVE_UV
    printf("libuv:        %s\n", uv_version_string());
    for (size_t i = 0; i < NCASES; i++) {
        if (opts.selected[i] && cases[i].missing == bench_stunnel_missing) {
            const char *version = bench_stunnel_version();

            printf("stunnel:      %s\n", version[0] != '\0' ? version : "not installed");
            break;
        }
    }
#endif
    printf("cpus online:  %ld\n", sysconf(_SC_NPROCESSORS_ONLN));
    printf("method:       %d rounds of %.2f s per side and case (%d in the -gnutls cases,\n"
           "              %d in the async cases, 1 in the idle cases), order rotating; values\n"
           "              are medians, ratio is the median of the per-round ratios tlsock/raw\n",
           opts.run.rounds, opts.run.seconds, opts.run.rounds_set ? opts.run.rounds : GNUTLS_ROUNDS,
           opts.run.rounds_set ? opts.run.rounds : ASYNC_ROUNDS);
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
