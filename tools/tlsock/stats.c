/*
 * The serving commands' counters. Every loop's thread updates them: each figure is an atomic of
 * its own (relaxed: a figure is read alone, and the summary is read after every loop ended).
 * The aggregation of failures in the log is rare and under a lock.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tlsock.h>

#include "stats.h"

static const char *const kind_names[CLI_STATS_KINDS] = {"verify", "timeout", "protocol", "reset",
                                                        "other"};

/*
 * One log whose repeated lines are aggregated: per kind, when it was last logged in full (0:
 * never) and how many were not logged since. Under stats.lock.
 */
struct log_window {
    const char *what; /* the lines' "tlsock: <what>: N more ..." */
    int64_t logged_ms[CLI_STATS_KINDS];
    unsigned long long unlogged[CLI_STATS_KINDS];
};

static struct {
    atomic_ullong connections;
    atomic_ullong handshakes_ok;
    atomic_ullong failed[CLI_STATS_KINDS];
    atomic_ullong bytes_in;
    atomic_ullong bytes_out;
    atomic_ullong open;
    atomic_ullong peak;
    int64_t start_ms;
    bool verbose;
    pthread_mutex_t lock;
    struct log_window handshakes; /* failed handshakes */
    struct log_window errors;     /* errors of connections after their handshake */
} stats = {.lock = PTHREAD_MUTEX_INITIALIZER,
           .handshakes = {.what = "handshake"},
           .errors = {.what = "connection"}};

void cli_stats_start(bool verbose)
{
    stats.start_ms = tlsock_now_ms();
    stats.verbose = verbose;
}

/* RFC 8446 section 6.2 and RFC 5246 section 7.2.2: the alerts about a certificate. */
static bool certificate_alert(long alert)
{
    return (alert >= 42 && alert <= 46) || alert == 48 || alert == 113 || alert == 116;
}

/* The kind of a handshake failure of @p code, with the library's @p message (may be NULL). */
static enum cli_stats_kind kind_of(int code, const char *message)
{
    static const char alert_prefix[] = "peer sent alert: ";
    const char *alert = message != NULL ? strstr(message, alert_prefix) : NULL;
    const char *number = alert != NULL ? strchr(alert, '(') : NULL;
    enum cli_stats_kind kind = CLI_STATS_OTHER;

    switch (code) {
    case TLSOCK_EVERIFY:
        kind = CLI_STATS_VERIFY;
        break;
    case TLSOCK_EHANDSHAKE_TIMEOUT:
    case TLSOCK_ETIMEDOUT:
        kind = CLI_STATS_TIMEOUT;
        break;
    case TLSOCK_EPROTO:
        /* The client refused our certificate: "peer sent alert: unknown_ca (48)". */
        kind = number != NULL && certificate_alert(strtol(number + 1, NULL, 10))
                   ? CLI_STATS_VERIFY
                   : CLI_STATS_PROTOCOL;
        break;
    case TLSOCK_ETRUNCATED:
        kind = CLI_STATS_RESET;
        break;
    case TLSOCK_ESYS:
        /* The driver names the errno: "connection reset: ... (ECONNRESET)". */
        if (message != NULL &&
            (strstr(message, "(ECONNRESET)") != NULL || strstr(message, "(EPIPE)") != NULL)) {
            kind = CLI_STATS_RESET;
        }
        break;
    default:
        break;
    }
    return kind;
}

void cli_stats_accepted(bool tls)
{
    atomic_fetch_add_explicit(&stats.connections, 1, memory_order_relaxed);
    if (tls) {
        atomic_fetch_add_explicit(&stats.handshakes_ok, 1, memory_order_relaxed);
    }
}

/* Says how many failures of @p kind @p w did not log, if any; under the lock. */
static void say_unlogged(struct log_window *w, enum cli_stats_kind kind)
{
    if (w->unlogged[kind] > 0) {
        fprintf(stderr, "tlsock: %s: %llu more %s failures not logged (--verbose logs each)\n",
                w->what, w->unlogged[kind], kind_names[kind]);
        w->unlogged[kind] = 0;
    }
}

/* Whether @p w logs a failure of @p kind in full now: the first of its kind in the window. */
static bool log_now(struct log_window *w, enum cli_stats_kind kind)
{
    int64_t now = tlsock_now_ms();
    bool log = stats.verbose;

    if (!log) {
        pthread_mutex_lock(&stats.lock);
        log = w->logged_ms[kind] == 0 || now - w->logged_ms[kind] >= CLI_STATS_WINDOW_MS;
        if (log) {
            say_unlogged(w, kind);
            /* Never 0 once logged: the clock may start near 0. */
            w->logged_ms[kind] = now > 0 ? now : 1;
        } else {
            w->unlogged[kind]++;
        }
        pthread_mutex_unlock(&stats.lock);
    }
    return log;
}

bool cli_stats_handshake_failed(int code, const char *message)
{
    enum cli_stats_kind kind = kind_of(code, message);

    atomic_fetch_add_explicit(&stats.connections, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&stats.failed[kind], 1, memory_order_relaxed);
    return log_now(&stats.handshakes, kind);
}

bool cli_stats_conn_error(int code, const char *message)
{
    return log_now(&stats.errors, kind_of(code, message));
}

void cli_stats_conn_opened(void)
{
    unsigned long long open = atomic_fetch_add_explicit(&stats.open, 1, memory_order_relaxed) + 1;
    unsigned long long peak = atomic_load_explicit(&stats.peak, memory_order_relaxed);

    /* On failure the exchange reloads @p peak: retried until it is at least @p open. */
    while (peak < open &&
           !atomic_compare_exchange_weak_explicit(&stats.peak, &peak, open, memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}

void cli_stats_conn_closed(void)
{
    atomic_fetch_sub_explicit(&stats.open, 1, memory_order_relaxed);
}

void cli_stats_bytes(bool in, size_t len)
{
    atomic_fetch_add_explicit(in ? &stats.bytes_in : &stats.bytes_out, len, memory_order_relaxed);
}

void cli_stats_print(const char *label)
{
    unsigned long long failed[CLI_STATS_KINDS];
    unsigned long long failed_all = 0;
    int64_t uptime_s = (tlsock_now_ms() - stats.start_ms) / 1000;

    pthread_mutex_lock(&stats.lock);
    for (int k = 0; k < CLI_STATS_KINDS; k++) {
        say_unlogged(&stats.handshakes, (enum cli_stats_kind)k);
        say_unlogged(&stats.errors, (enum cli_stats_kind)k);
        failed[k] = atomic_load_explicit(&stats.failed[k], memory_order_relaxed);
        failed_all += failed[k];
    }
    pthread_mutex_unlock(&stats.lock);
    fprintf(stderr,
            "tlsock: %s: connections %llu, peak %llu, bytes in %llu, bytes out %llu, "
            "handshakes ok %llu, failed %llu (verify %llu, timeout %llu, protocol %llu, "
            "reset %llu, other %llu), uptime %lld s\n",
            label, atomic_load_explicit(&stats.connections, memory_order_relaxed),
            atomic_load_explicit(&stats.peak, memory_order_relaxed),
            atomic_load_explicit(&stats.bytes_in, memory_order_relaxed),
            atomic_load_explicit(&stats.bytes_out, memory_order_relaxed),
            atomic_load_explicit(&stats.handshakes_ok, memory_order_relaxed), failed_all,
            failed[CLI_STATS_VERIFY], failed[CLI_STATS_TIMEOUT], failed[CLI_STATS_PROTOCOL],
            failed[CLI_STATS_RESET], failed[CLI_STATS_OTHER], (long long)uptime_s);
}
