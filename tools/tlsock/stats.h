/*
 * What the serving commands (serve, tunnel) did, for the summary printed on SIGINT or SIGTERM and
 * the lines of --stats SECONDS; and the aggregation of repeated failures in the log.
 * One set of counters per process, updated from every loop's thread (atomics); docs/tlsock.1
 * (STATISTICS) says what each figure counts.
 */
#ifndef TLSOCK_CLI_STATS_H
#define TLSOCK_CLI_STATS_H

#include <stdbool.h>
#include <stddef.h>

/* The kinds of failed handshakes, in the order the summary prints them. */
enum cli_stats_kind {
    CLI_STATS_VERIFY,   /* TLSOCK_EVERIFY, or the peer's certificate alert (bad_certificate...) */
    CLI_STATS_TIMEOUT,  /* TLSOCK_EHANDSHAKE_TIMEOUT, TLSOCK_ETIMEDOUT */
    CLI_STATS_PROTOCOL, /* TLSOCK_EPROTO: other alerts, bad records, not TLS at all */
    CLI_STATS_RESET,    /* a reset (ECONNRESET, EPIPE) or an end without close_notify */
    CLI_STATS_OTHER,    /* anything else (accept(2) errors, no memory...) */
    CLI_STATS_KINDS,
};

/* The start of the uptime, and whether every failure is logged (--verbose). */
void cli_stats_start(bool verbose);

/* A client accepted: with @p tls, its handshake succeeded; without, it speaks plaintext. */
void cli_stats_accepted(bool tls);

/*
 * A client whose handshake failed with @p code and @p message: counted by kind. Returns whether
 * to log it in full: always with --verbose, else the first of its kind in CLI_STATS_WINDOW_MS;
 * the others are counted, and said on the next full one, --stats line or summary.
 */
bool cli_stats_handshake_failed(int code, const char *message);

/*
 * An error (@p code, @p message) of a connection after its handshake (a reset, a truncation, a
 * timeout, the tunnel's target refused): not counted in the figures, but logged like failed
 * handshakes, each kind in its own window ("tlsock: connection: N more reset failures not
 * logged"). Returns whether to log it in full.
 */
bool cli_stats_conn_error(int code, const char *message);

/* A connection handed to the command opened or closed: the peak of those open at once. */
void cli_stats_conn_opened(void);
void cli_stats_conn_closed(void);

/* Application data (plaintext) received from clients (@p in) or sent to them. */
void cli_stats_bytes(bool in, size_t len);

/*
 * Prints "tlsock: <label>: connections N, peak N, bytes in N, bytes out N, handshakes ok N,
 * failed N (verify N, timeout N, protocol N, reset N, other N), uptime N s" on stderr, after a
 * line for each kind whose failures were not all logged.
 */
void cli_stats_print(const char *label);

#define CLI_STATS_WINDOW_MS 10000 /* one full log line per kind of failure in this time */
#define CLI_STATS_MAX_S     86400 /* longest --stats interval */

#endif /* TLSOCK_CLI_STATS_H */
