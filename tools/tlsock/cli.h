/*
 * Shared declarations of the tlsock command-line tool: exit codes, error reporting, option
 * helpers and the subcommands. The tool uses only the public API (include/tlsock.h).
 */
#ifndef TLSOCK_CLI_H
#define TLSOCK_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <tlsock.h>

/* Exit statuses, one per kind of failure; documented in docs/tlsock.1 (EXIT STATUS). */
enum cli_exit {
    CLI_EXIT_OK = 0,
    CLI_EXIT_USAGE = 1,
    CLI_EXIT_CONFIG = 2,
    CLI_EXIT_VERIFY = 3,
    CLI_EXIT_TIMEOUT = 4,
    CLI_EXIT_NETWORK = 5,
    CLI_EXIT_TLS = 6,
};

/* Longest host part accepted in HOST:PORT (a DNS name is at most 253 characters). */
#define CLI_HOST_MAX 256

/* Longest file name the tool builds. */
#define CLI_PATH_SIZE 4096

/* Maps a tlsock return code (0 or TLSOCK_E*) to the tool's exit status. */
int cli_exit_code(int err);

/*
 * Exit status for a failure while building a context from the options: a configuration error
 * whatever the code, since e.g. an unreadable --cert file is reported as TLSOCK_ESYS.
 */
int cli_setup_exit_code(int err);

/*
 * Prints "tlsock: <what>: <tlsock_strerror(err)>: <detail>" on stderr; the detail part is left
 * out when @p detail is NULL or empty.
 */
void cli_error(const char *what, int err, const char *detail);

/* Prints "tlsock: <printf message>" on stderr, for failures that are not tlsock codes. */
void cli_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints the usage complaint and the hint to run `tlsock CMD --help`; returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Reports what getopt_long() rejected (called with an optstring starting with ':', so that it
 * prints nothing itself): an unknown option or one missing its argument. Returns CLI_EXIT_USAGE.
 */
int cli_bad_option(const char *cmd, int opt, char **argv);

/*
 * Splits "HOST:PORT" or "[V6]:PORT" into @p host (NUL-terminated, brackets removed) and
 * @p port. Returns true on success; @p allow_zero lets port 0 through (listening).
 */
bool cli_parse_hostport(const char *arg, bool allow_zero, char host[CLI_HOST_MAX], uint16_t *port);

/* Formats HOST:PORT, bracketing IPv6 literals, into @p out. */
void cli_format_hostport(const char *host, uint16_t port, char *out, size_t outlen);

/* Parses a decimal integer in [min, max]; returns true on success. */
bool cli_parse_int(const char *arg, int min, int max, int *out);

/* The context options that connect and serve share; NULL fields were not given. */
struct cli_ctx_options {
    const char *tls;     /* --tls MIN[-MAX] */
    const char *ciphers; /* --ciphers POLICY */
    const char *alpn;    /* --alpn LIST */
    const char *cert;    /* --cert FILE */
    const char *key;     /* --key FILE (defaults to the --cert file) */
};

/*
 * --impl NAME: makes "openssl" or "gnutls" the process default for the contexts the command
 * creates. Returns CLI_EXIT_OK, or the exit status after printing why not.
 */
int cli_use_impl(const char *cmd, const char *name);

/* Applies @p opts to @p ctx. On failure prints the error and returns the tlsock code. */
int cli_ctx_configure(struct tlsock_ctx *ctx, const struct cli_ctx_options *opts);

/*
 * A client's trust: --ca FILE|DIR (NULL: the system store) and --insecure (no verification).
 * On failure prints the error and returns the tlsock code.
 */
int cli_set_trust(struct tlsock_ctx *ctx, const char *ca, bool insecure);

/* --client-ca FILE: clients must present a certificate that chains to these CAs. Reports. */
int cli_require_client_certs(struct tlsock_ctx *ctx, const char *ca_file);

/* The names of the servers' throw-away certificate. */
#define CLI_DEVCERT_HOSTS "localhost,127.0.0.1,::1"

/*
 * Without --cert: gives @p ctx a throw-away certificate for CLI_DEVCERT_HOSTS, before it makes
 * a connection (it freezes then); writes the CA that signed it to @p ca_out unless NULL, and
 * its fingerprint to @p fp, for printing after "listening on", which must stay first. Reports.
 */
int cli_use_devcert(struct tlsock_ctx *ctx, const char *ca_out, char fp[TLSOCK_FINGERPRINT_SIZE]);

/* Creates @p dir and its missing parents (mkdir -p); reports failures on stderr. */
bool cli_make_dirs(const char *dir);

/* Writes @p content to @p path with permissions @p mode, even if the file existed; reports. */
bool cli_write_file(const char *path, const char *content, unsigned mode);

/* Longest "[address]:port" text for a peer, with room to spare. */
#define CLI_PEER_SIZE 64

struct sockaddr;

/* Formats an IPv4 or IPv6 socket address as "ADDR:PORT" or "[ADDR]:PORT" for log lines. */
void cli_format_sockaddr(const struct sockaddr *sa, char out[CLI_PEER_SIZE]);

/* A name for a client whose address is not known: "client N", N counting from 1. */
void cli_name_client(char out[CLI_PEER_SIZE]);

#ifdef TLSOCK_CLI_WITH_UV
struct tlsock_uv_conn;

/* An async connection's peer as "ADDR:PORT" (tlsock_uv_getpeername()), else "client N". */
void cli_peer_name(const struct tlsock_uv_conn *conn, char out[CLI_PEER_SIZE]);
#endif

/* Prints the negotiated parameters of a session, one "name value" line each, with @p indent. */
void cli_print_info(FILE *out, const struct tlsock_info *info, const char *indent);

/* Subcommands: argv[0] is the subcommand's name; each returns an exit status. */
int cli_cmd_demo(int argc, char **argv);
int cli_cmd_connect(int argc, char **argv);
int cli_cmd_serve(int argc, char **argv);
int cli_cmd_tunnel(int argc, char **argv);
int cli_cmd_cert(int argc, char **argv);
int cli_cmd_version(int argc, char **argv);

#endif /* TLSOCK_CLI_H */
