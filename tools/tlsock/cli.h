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
 * out when @p detail is NULL or empty. A detail that names the API call which would help (a
 * server that only speaks TLS 1.0/1.1) names this tool's flags instead.
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

/* Most --cert/--key pairs a command takes. */
#define CLI_CERT_MAX 32

/* The --help lines of the serving commands' (serve, tunnel) certificates and keys. */
#define CLI_HELP_SERVER_CERT                                                                       \
    "  -c, --cert FILE          certificate chain (PEM or DER); repeat --cert (each\n"             \
    "                           with its --key) for several names: the client's SNI\n"             \
    "                           picks by the certificates' DNS names, the first is\n"              \
    "                           the default\n"                                                     \
    "  -K, --key FILE           the key of the --cert before it (PEM or DER; default:\n"           \
    "                           that --cert file)\n"                                               \
    "      --key-pass-file FILE encrypted keys' passphrase: FILE's first line\n"                   \
    "      --key-pass-env VAR   encrypted keys' passphrase: the variable VAR\n"

/* The --help lines of the serving commands' session tickets. */
#define CLI_HELP_SERVER_TICKETS                                                                    \
    "      --ticket-keys FILE   session ticket keys from FILE (tlsock cert --ticket-keys),\n"      \
    "                           shared by the servers that read it (default: random keys\n"        \
    "                           of this process)\n"                                                \
    "      --no-tickets         issue no session tickets (no TLS 1.3 resumption)\n"                \
    "      --session-store URL  keep TLS 1.2 sessions in Redis,\n"                                 \
    "                           redis://[[USER]:PASSWORD@]HOST[:PORT][/DB],\n"                     \
    "                           shared by the servers that use it, and (without\n"                 \
    "                           --ticket-keys or --no-tickets) their ticket keys: a secret\n"      \
    "                           replaced in Redis is picked up without SIGHUP\n"

/* The context options that connect and serve share; NULL fields were not given. */
struct cli_ctx_options {
    const char *tls;     /* --tls MIN[-MAX] */
    const char *ciphers; /* --ciphers POLICY */
    const char *alpn;    /* --alpn LIST */
    /*
     * --cert FILE, repeatable on the serving commands: one chain per name, chosen by the client's
     * SNI (the first is the default); keys[i] is the --key FILE given after certs[i], NULL until
     * cli_check_cert_key() makes it the --cert file.
     */
    const char *certs[CLI_CERT_MAX];
    const char *keys[CLI_CERT_MAX];
    size_t cert_count;
    const char *key_pass_file; /* --key-pass-file FILE: the key's passphrase, first line */
    const char *key_pass_env;  /* --key-pass-env VAR: the key's passphrase, VAR's value */
};

/* Most --crl files a command takes. */
#define CLI_CRL_MAX 32

/*
 * The options that several commands share, each command taking those in its getopt_long()
 * tables; NULL or 0 fields were not given. The defaults are set by cli_shared_options_init().
 */
struct cli_shared_options {
    struct cli_ctx_options ctx; /* -t, -P, -a; -c, -K: a server's certificate or a client's */
    /* A client's trust (-C, -k) and the name it wants (-s), as `tlsock connect` verifies. */
    const char *ca;         /* --ca FILE|DIR; NULL: the system store */
    const char *servername; /* --servername NAME; NULL: from the host */
    bool insecure;          /* --insecure */
    /* Revocation, for whichever side verifies a peer (connect, --client-ca, --tls-connect). */
    const char *crls[CLI_CRL_MAX]; /* --crl FILE, repeatable */
    size_t crl_count;
    bool crl_chain; /* --crl-chain: every certificate of the chain, not only the leaf */
    /* The accepting side of the serving commands (serve, tunnel). */
    const char *ca_out;        /* --ca-out FILE */
    const char *client_ca;     /* --client-ca FILE */
    const char *ocsp_response; /* --ocsp-response FILE: the DER OCSP response to staple */
    const char *ticket_keys;   /* --ticket-keys FILE: the session ticket key file */
    bool no_tickets;           /* --no-tickets */
    const char *session_store; /* --session-store URL: TLS 1.2 sessions in Redis */
    int handshake_timeout_ms;  /* --handshake-timeout MS */
    int threads;               /* --threads N */
    int stats_s;               /* --stats SECONDS; 0: no periodic line */
    bool verbose;              /* -v, --verbose */
};

/* Long-option values of the shared options; a command's own start at CLI_OPT_SHARED_END. */
enum {
    CLI_OPT_CA_OUT = 256,
    CLI_OPT_CLIENT_CA,
    CLI_OPT_HANDSHAKE_TIMEOUT,
    CLI_OPT_THREADS,
    CLI_OPT_IMPL,
    CLI_OPT_KEY_PASS_FILE,
    CLI_OPT_KEY_PASS_ENV,
    CLI_OPT_CRL,
    CLI_OPT_CRL_CHAIN,
    CLI_OPT_OCSP_RESPONSE,
    CLI_OPT_STATS,
    CLI_OPT_TICKET_KEYS,
    CLI_OPT_NO_TICKETS,
    CLI_OPT_SESSION_STORE,
    CLI_OPT_SHARED_END,
};

/* getopt_long() entries of the shared options, and the end of every table. */
/* clang-format off */
#define CLI_LONGOPTS_TLS \
    {"tls", required_argument, NULL, 't'}, \
    {"ciphers", required_argument, NULL, 'P'}
#define CLI_LONGOPTS_CERT \
    {"cert", required_argument, NULL, 'c'}, \
    {"key", required_argument, NULL, 'K'}, \
    {"key-pass-file", required_argument, NULL, CLI_OPT_KEY_PASS_FILE}, \
    {"key-pass-env", required_argument, NULL, CLI_OPT_KEY_PASS_ENV}
#define CLI_LONGOPTS_CRL \
    {"crl", required_argument, NULL, CLI_OPT_CRL}, \
    {"crl-chain", no_argument, NULL, CLI_OPT_CRL_CHAIN}
#define CLI_LONGOPTS_TRUST \
    CLI_LONGOPTS_CRL, \
    {"ca", required_argument, NULL, 'C'}, \
    {"insecure", no_argument, NULL, 'k'}, \
    {"servername", required_argument, NULL, 's'}
#define CLI_LONGOPTS_SERVER \
    CLI_LONGOPTS_CERT, \
    {"ca-out", required_argument, NULL, CLI_OPT_CA_OUT}, \
    {"client-ca", required_argument, NULL, CLI_OPT_CLIENT_CA}, \
    {"ocsp-response", required_argument, NULL, CLI_OPT_OCSP_RESPONSE}, \
    {"ticket-keys", required_argument, NULL, CLI_OPT_TICKET_KEYS}, \
    {"no-tickets", no_argument, NULL, CLI_OPT_NO_TICKETS}, \
    {"session-store", required_argument, NULL, CLI_OPT_SESSION_STORE}, \
    {"handshake-timeout", required_argument, NULL, CLI_OPT_HANDSHAKE_TIMEOUT}, \
    {"threads", required_argument, NULL, CLI_OPT_THREADS}, \
    {"impl", required_argument, NULL, CLI_OPT_IMPL}, \
    {"verbose", no_argument, NULL, 'v'}, \
    {"stats", required_argument, NULL, CLI_OPT_STATS}
#define CLI_LONGOPTS_END \
    {"help", no_argument, NULL, 'h'}, \
    {NULL, 0, NULL, 0}
/* clang-format on */

#define CLI_HANDSHAKE_TIMEOUT_MS 10000    /* default of --handshake-timeout */
#define CLI_THREADS_MAX          256      /* most --threads */
#define CLI_MS_MAX               86400000 /* longest time option: a day */

/* Zeroes @p opts, then the defaults: CLI_HANDSHAKE_TIMEOUT_MS, one thread. */
void cli_shared_options_init(struct cli_shared_options *opts);

/*
 * Handles @p opt, as getopt_long() returned it with @p arg, if it is a shared option: sets
 * @p *status to -1 to go on, or to the exit status. Returns false when it is not one.
 */
bool cli_shared_option(const char *cmd, struct cli_shared_options *opts, int opt, const char *arg,
                       int *status);

struct option;

/* How a command's options are parsed (cli_parse_options()). */
struct cli_command {
    const char *name;              /* for messages: "tlsock NAME --help" */
    const char *optstring;         /* getopt_long()'s, starting with ':' */
    const struct option *longopts; /* ending with CLI_LONGOPTS_END */
    void (*print_help)(void);      /* -h, --help */
    /*
     * Handles one of the command's own options in @p args: sets @p *status to -1 to go on, or
     * to the exit status. Returns false when @p opt is not one of them.
     */
    bool (*own_option)(void *args, int opt, const char *arg, int *status);
    bool operands; /* takes operands; else the first one is an "unexpected argument" */
};

/*
 * Runs getopt_long() over @p argv: the command's own options go to @p cmd->own_option, the
 * shared ones to cli_shared_option() with @p shared, -h/--help prints the help; anything else
 * is reported. Stops at the first that ends the command. Returns -1 to go on (the operands, if
 * @p cmd takes any, start at optind), or the exit status.
 */
int cli_parse_options(const struct cli_command *cmd, int argc, char **argv, void *args,
                      struct cli_shared_options *shared);

/*
 * "--key needs --cert" (and so do --key-pass-file and --key-pass-env, which exclude each other):
 * returns -1 to go on, or the exit status. Then --key defaults to the --cert file.
 */
int cli_check_cert_key(const char *cmd, struct cli_ctx_options *opts);

/*
 * "--crl-chain needs --crl", and --crl needs a side that verifies its peer: @p verifies says
 * whether one does, @p needs names what would make one ("--client-ca"). -1 or the exit status.
 */
int cli_check_crl_options(const char *cmd, const struct cli_shared_options *opts, bool verifies,
                          const char *needs);

/* cli_check_cert_key(), then "--ca-out only applies without --cert". -1 or the exit status. */
int cli_check_server_options(const char *cmd, struct cli_shared_options *opts);

/*
 * The context of a serving command's accepting side: the context options, client certificates
 * with --client-ca, the throw-away certificate without --cert (its fingerprint in @p fp).
 * Reports failures.
 */
int cli_server_ctx_new(const struct cli_shared_options *opts, struct tlsock_ctx **out,
                       char fp[TLSOCK_FINGERPRINT_SIZE]);

/*
 * --session-store: calls @p fn(@p user), from the ticket key watcher's thread, each time the
 * ticket key file kept from Redis was rewritten (another server replaced the secret), and at once
 * if it was since a server context last read it; @p fn must only wake a loop (uv_async_send()).
 * NULL stops the calls; once this returns, none runs. Does nothing without Redis support.
 */
void cli_on_shared_keys_changed(void (*fn)(void *user), void *user);

/* A client context: @p ctx_opts, then the trust of @p opts (cli_set_trust()). Reports failures. */
int cli_client_ctx_new(const struct cli_ctx_options *ctx_opts,
                       const struct cli_shared_options *opts, struct tlsock_ctx **out);

/*
 * --impl NAME: makes "openssl" or "gnutls" the process default for the contexts the command
 * creates. Returns CLI_EXIT_OK, or the exit status after printing why not.
 */
int cli_use_impl(const char *cmd, const char *name);

/*
 * Without a process default (TLSOCK_IMPL names no implementation compiled in, and no --impl
 * came), prints the library's reason and returns TLSOCK_ECONFIG; else 0.
 */
int cli_check_default_impl(void);

/* Room for a passphrase read by cli_read_passphrase(): the longest, a line end and a NUL. */
#define CLI_PASS_SIZE (TLSOCK_PASSPHRASE_MAX + 2)

/*
 * The passphrase of --key-pass-file (its first line) or --key-pass-env (the variable's value,
 * which must be set and not empty) in @p pass; "" when neither was given. Returns 0, or
 * TLSOCK_ECONFIG after saying why, naming the file or the variable. The caller wipes @p pass.
 */
int cli_read_passphrase(const struct cli_ctx_options *opts, char pass[CLI_PASS_SIZE]);

/* Applies @p opts to @p ctx. On failure prints the error and returns the tlsock code. */
int cli_ctx_configure(struct tlsock_ctx *ctx, const struct cli_ctx_options *opts);

/*
 * A client's trust: --ca FILE|DIR (NULL: the system store) and --insecure (no verification).
 * On failure prints the error and returns the tlsock code.
 */
int cli_set_trust(struct tlsock_ctx *ctx, const char *ca, bool insecure);

/* --crl FILE... and --crl-chain: revocation checks on @p ctx. Reports, naming the file. */
int cli_set_crls(struct tlsock_ctx *ctx, const struct cli_shared_options *opts);

/* --client-ca FILE: clients must present a certificate that chains to these CAs. Reports. */
int cli_require_client_certs(struct tlsock_ctx *ctx, const char *ca_file);

/* The names of the servers' throw-away certificate. */
#define CLI_DEVCERT_HOSTS "localhost,127.0.0.1,::1"

/*
 * Without --cert: gives @p ctx a throw-away certificate for CLI_DEVCERT_HOSTS, before it makes
 * a connection (it freezes then); writes the CA that signed it to @p ca_out unless NULL, and
 * its fingerprint to @p fp, for printing after "listening on", which must stay first. The
 * certificate is made at the first call; later ones (a reload's context) get the same one and
 * write no CA. Reports.
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

/* An async connection's peer as "ADDR:PORT" (tlsock_uv_conn_peername()), else "client N". */
void cli_peer_name(const struct tlsock_uv_conn *conn, char out[CLI_PEER_SIZE]);
#endif

/* Prints the negotiated parameters of a session, one "name value" line each, with @p indent. */
void cli_print_info(FILE *out, const struct tlsock_info *info, const char *indent);

/* Writes one DER certificate to @p out as a PEM "CERTIFICATE" block. */
void cli_print_pem_cert(FILE *out, const unsigned char *der, size_t len);

/* Subcommands: argv[0] is the subcommand's name; each returns an exit status. */
int cli_cmd_demo(int argc, char **argv);
int cli_cmd_connect(int argc, char **argv);
int cli_cmd_serve(int argc, char **argv);
int cli_cmd_tunnel(int argc, char **argv);
int cli_cmd_cert(int argc, char **argv);
int cli_cmd_version(int argc, char **argv);

#endif /* TLSOCK_CLI_H */
