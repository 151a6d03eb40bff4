/*
 * `tlsock connect`: a readable openssl s_client. Connects (after a plaintext STARTTLS preamble
 * with --starttls), verifies, prints what was negotiated on stderr, then relays stdin to the
 * peer and the peer to stdout (connect_relay.c).
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <string.h>

#include "cli.h"
#include "connect_session.h"
#include "connect_relay.h"
#include "starttls.h"

/* Most --pin options. */
#define PIN_MAX 32

struct connect_args {
    char host[CLI_HOST_MAX];
    uint16_t port;
    const char *target;               /* HOST:PORT as given, for messages */
    struct cli_shared_options shared; /* the context options and the trust */
    const char *starttls;             /* protocol of the plaintext preamble, NULL for none */
    int timeout_ms;                   /* 0: not given */
    bool quiet;
    const char *pins[PIN_MAX]; /* --pin sha256:BASE64, repeatable */
    size_t pin_count;
    bool show_certs;      /* --show-certs */
    int ocsp_mode;        /* --ocsp MODE: enum tlsock_ocsp_mode */
    const char *sess_in;  /* --sess-in FILE: a session to offer, NULL for none */
    const char *sess_out; /* --sess-out FILE: where to save the last session, NULL for none */
    int reconnect;        /* --reconnect N: connections after the first */
    const char *keylog;   /* --keylog FILE, NULL for none */
};

/* How long to wait for the peer's close_notify after stdin ends, unless --timeout says. */
#define CLOSE_WAIT_DEFAULT_MS 5000

static void print_help(void)
{
    fputs("Usage: tlsock connect HOST:PORT [OPTIONS]\n\n"
          "Connects to a TLS server, verifies it, prints the session on stderr, then copies\n"
          "stdin to the server and the server's data to stdout. At the end of stdin it sends\n"
          "close_notify and waits for the server's. HOST may be a name, an IPv4 address or\n"
          "[IPv6]. By default the server must present a certificate for HOST that chains to\n"
          "the system trust store.\n\n"
          "Options:\n"
          "  -C, --ca FILE|DIR        trust these CA certificates instead of the system store\n"
          "  -k, --insecure           do not verify the server (anyone can impersonate it)\n"
          "  -s, --servername NAME    SNI to send and name the certificate must match\n"
          "  -a, --alpn LIST          offer these ALPN protocols, e.g. h2,http/1.1\n"
          "  -t, --tls MIN[-MAX]      protocol range, e.g. 1.3 or 1.2-1.3 (default 1.2-1.3)\n"
          "  -P, --ciphers POLICY     secure (default), compat, legacy (needed for TLS 1.0/1.1)\n"
          "                           or the implementation's own cipher string\n"
          "  -c, --cert FILE          client certificate chain (PEM or DER)\n"
          "  -K, --key FILE           client private key (PEM or DER; default: the --cert file)\n"
          "      --key-pass-file FILE an encrypted key's passphrase: FILE's first line\n"
          "      --key-pass-env VAR   an encrypted key's passphrase: the variable VAR\n"
          "      --crl FILE           refuse certificates revoked by these CRLs (PEM or DER;\n"
          "                           repeatable; each certificate checked needs its\n"
          "                           issuer's CRL)\n"
          "      --crl-chain          check every certificate of the chain, not only the leaf\n"
          "      --pin sha256:BASE64  accept only a chain with this public key (SHA-256 of\n"
          "                           its SubjectPublicKeyInfo); repeatable, any one matches\n"
          "      --show-certs         print the certificates the server sent, as PEM, on\n"
          "                           stderr (also when verification fails)\n"
          "      --ocsp MODE          request: ask for a stapled OCSP response and check it\n"
          "                           when sent (must-staple certificates need one);\n"
          "                           require: also refuse a server that staples none;\n"
          "                           off (default): do not ask\n"
          "      --sess-in FILE       offer the session saved in FILE (by --sess-out); one that\n"
          "                           cannot be used means a full handshake, not a failure\n"
          "      --sess-out FILE      save the last connection's session in FILE (mode 0600;\n"
          "                           it holds the session's secrets)\n"
          "      --reconnect N        after the first connection, connect N more times and\n"
          "                           print \"connection I: resumed yes|no\" for each\n"
          "      --keylog FILE        append the session's secrets to FILE in the NSS key log\n"
          "                           format, for Wireshark (anyone with FILE and a capture\n"
          "                           reads the traffic); SSLKEYLOGFILE is not read by\n"
          "                           itself: pass --keylog \"$SSLKEYLOGFILE\"\n"
          "      --starttls smtp      speak SMTP in plaintext first (EHLO, STARTTLS), then TLS\n"
          "  -T, --timeout MS         bound the connect (with the STARTTLS preamble) and the\n"
          "                           handshake to MS each; give up (exit 4) when the server\n"
          "                           sends nothing for MS; also bounds each write and the wait\n"
          "                           for the server's close_notify (default: no bounds, and\n"
          "                           5 s for the close_notify)\n"
          "      --impl NAME          TLS implementation: openssl or gnutls (default: TLSOCK_IMPL\n"
          "                           or openssl)\n"
          "  -q, --quiet              print no session summary\n"
          "  -h, --help               show this help\n",
          stdout);
}

enum {
    OPT_STARTTLS = CLI_OPT_SHARED_END,
    OPT_PIN,
    OPT_SHOW_CERTS,
    OPT_OCSP,
    OPT_SESS_IN,
    OPT_SESS_OUT,
    OPT_RECONNECT,
    OPT_KEYLOG,
};

static bool own_option(void *user, int opt, const char *arg, int *status)
{
    struct connect_args *args = user;
    bool mine = true;

    *status = -1;
    if (opt == 'T') {
        if (!cli_parse_int(arg, 1, CLI_MS_MAX, &args->timeout_ms)) {
            *status = cli_usage_error("connect", "--timeout wants milliseconds, not '%s'", arg);
        }
    } else if (opt == OPT_STARTTLS) {
        if (strcmp(arg, "smtp") != 0) {
            *status = cli_usage_error("connect", "--starttls knows only 'smtp', not '%s'", arg);
        } else {
            args->starttls = arg;
        }
    } else if (opt == 'q') {
        args->quiet = true;
    } else if (opt == OPT_PIN) {
        if (args->pin_count == PIN_MAX) {
            *status = cli_usage_error("connect", "at most %d --pin options", PIN_MAX);
        } else {
            args->pins[args->pin_count++] = arg;
        }
    } else if (opt == OPT_SESS_IN) {
        args->sess_in = arg;
    } else if (opt == OPT_SESS_OUT) {
        args->sess_out = arg;
    } else if (opt == OPT_RECONNECT) {
        if (!cli_parse_int(arg, 0, 1000, &args->reconnect)) {
            *status = cli_usage_error("connect", "--reconnect wants 0 to 1000, not '%s'", arg);
        }
    } else if (opt == OPT_SHOW_CERTS) {
        args->show_certs = true;
    } else if (opt == OPT_KEYLOG) {
        args->keylog = arg;
    } else if (opt == OPT_OCSP) {
        if (strcmp(arg, "require") == 0) {
            args->ocsp_mode = TLSOCK_OCSP_REQUIRE;
        } else if (strcmp(arg, "request") == 0) {
            args->ocsp_mode = TLSOCK_OCSP_REQUEST;
        } else if (strcmp(arg, "off") == 0) {
            args->ocsp_mode = TLSOCK_OCSP_OFF;
        } else {
            *status =
                cli_usage_error("connect", "--ocsp wants request, require or off, not '%s'", arg);
        }
    } else {
        mine = false;
    }
    return mine;
}

/* Returns -1 to go on, or the exit status to leave with. */
static int parse_args(int argc, char **argv, struct connect_args *args)
{
    static const struct option longopts[] = {
        CLI_LONGOPTS_TRUST,
        {"alpn", required_argument, NULL, 'a'},
        CLI_LONGOPTS_TLS,
        CLI_LONGOPTS_CERT,
        {"timeout", required_argument, NULL, 'T'},
        {"starttls", required_argument, NULL, OPT_STARTTLS},
        {"impl", required_argument, NULL, CLI_OPT_IMPL},
        {"quiet", no_argument, NULL, 'q'},
        {"pin", required_argument, NULL, OPT_PIN},
        {"show-certs", no_argument, NULL, OPT_SHOW_CERTS},
        {"ocsp", required_argument, NULL, OPT_OCSP},
        {"sess-in", required_argument, NULL, OPT_SESS_IN},
        {"sess-out", required_argument, NULL, OPT_SESS_OUT},
        {"reconnect", required_argument, NULL, OPT_RECONNECT},
        {"keylog", required_argument, NULL, OPT_KEYLOG},
        CLI_LONGOPTS_END,
    };
    static const struct cli_command cmd = {
        "connect", ":C:ks:a:t:P:c:K:T:qh", longopts, print_help, own_option, true};
    int status = cli_parse_options(&cmd, argc, argv, args, &args->shared);

    if (status >= 0) {
        goto done;
    }
    if (argc - optind != 1) {
        status = cli_usage_error("connect", "expected exactly one HOST:PORT");
        goto done;
    }
    args->target = argv[optind];
    if (!cli_parse_hostport(args->target, false, args->host, &args->port)) {
        status = cli_usage_error("connect", "'%s' is not HOST:PORT or [IPv6]:PORT", args->target);
        goto done;
    }
    status = cli_check_cert_key("connect", &args->shared.ctx);
    if (status < 0 && args->shared.ctx.cert_count > 1) {
        status = cli_usage_error("connect", "a client has one certificate: one --cert");
    }
    if (status < 0) {
        status = cli_check_crl_options("connect", &args->shared, !args->shared.insecure,
                                       "verification (not --insecure)");
    }
    /* The pins and the chain are checked and shown by the verification --insecure turns off. */
    if (status < 0 && args->shared.insecure && (args->pin_count > 0 || args->show_certs)) {
        status = cli_usage_error("connect", "--pin and --show-certs need verification (not "
                                            "--insecure)");
    }
    if (status < 0 && args->shared.insecure && args->ocsp_mode != TLSOCK_OCSP_OFF) {
        status = cli_usage_error("connect", "--ocsp needs verification (not --insecure)");
    } else if (args->reconnect > 0 && args->starttls != NULL) {
        status = cli_usage_error("connect", "--reconnect does not go with --starttls");
    }
done:
    return status;
}

static void print_summary(struct tlsock_conn *conn, const struct connect_args *args)
{
    const struct tlsock_info *info = NULL;
    int err = tlsock_conn_info(conn, &info);

    if (err != 0) {
        cli_error("cannot read session parameters", err, tlsock_conn_errmsg(conn));
        goto done;
    }
    fprintf(stderr, "connected to %s\n", args->target);
    cli_print_info(stderr, info, "  ");
    if (args->shared.insecure) {
        fputs("  WARNING: --insecure: the server was not verified\n", stderr);
    }
    fputs("---\n", stderr);
done:
    return;
}

/*
 * Names to send and verify on an attached socket: unlike tlsock_connect(), tlsock_attach_fd()
 * has no host to derive them from.
 */
static void set_names(const struct connect_args *args, struct tlsock_opts *opts)
{
    unsigned char addr[sizeof(struct in6_addr)];
    bool is_ip =
        inet_pton(AF_INET, args->host, addr) == 1 || inet_pton(AF_INET6, args->host, addr) == 1;

    if (args->shared.servername != NULL) {
        opts->servername = args->shared.servername;
    } else {
        /* RFC 6066 section 3: SNI carries names only; an address is still verified. */
        opts->servername = is_ip ? "" : args->host;
        opts->verify_name = args->host;
    }
}

static void report_connect_error(const struct connect_args *args, int err, const char *detail)
{
    char what[CLI_HOST_MAX + 32];

    snprintf(what, sizeof(what), "connect to %s", args->target);
    cli_error(what, err, detail);
}

static int connect_direct(const struct connect_args *args, struct tlsock_ctx *ctx,
                          const struct tlsock_opts *opts, struct tlsock_conn **conn)
{
    int err = tlsock_connect(ctx, args->host, args->port, opts, conn);

    if (err != 0) {
        report_connect_error(args, err, tlsock_errmsg());
    }
    return err;
}

/*
 * --starttls: TCP connect and the plaintext preamble within one --timeout, then TLS on the same
 * socket. On success *fd is the socket, which the caller closes after the connection.
 */
static int connect_starttls(const struct connect_args *args, struct tlsock_ctx *ctx,
                            struct tlsock_opts *opts, struct tlsock_conn **conn, int *fd)
{
    struct cli_line_reader reader;
    int64_t deadline = args->timeout_ms > 0 ? tlsock_now_ms() + args->timeout_ms : -1;
    int sock = -1;
    int err = cli_plain_connect(args->host, args->port, deadline, &sock);

    if (err != 0) {
        goto done;
    }
    cli_line_reader_init(&reader, sock, deadline);
    err = cli_starttls_smtp(&reader, args->target);
    if (err != 0) {
        goto close_sock;
    }
    /* The line reader may have read past the 220: those bytes are TLS's (copied by attach). */
    opts->preread = cli_line_reader_leftover(&reader, &opts->preread_len);
    set_names(args, opts);
    err = tlsock_attach_fd(ctx, sock, opts, conn);
    if (err != 0) {
        report_connect_error(args, err, tlsock_errmsg());
        goto close_sock;
    }
    err = tlsock_handshake(*conn);
    if (err != 0) {
        report_connect_error(args, err, tlsock_conn_errmsg(*conn));
        tlsock_close(*conn);
        *conn = NULL;
        goto close_sock;
    }
    *fd = sock;
    sock = -1;
close_sock:
    if (sock >= 0) {
        cli_plain_close(sock);
    }
done:
    return err;
}

/* --show-certs: the verify callback sees the chain as the server sent it, verified or not. */
static int show_certs(const struct tlsock_verify_info *info, void *user, char *reason,
                      size_t reason_size)
{
    (void)user;
    (void)reason;
    (void)reason_size;
    fprintf(stderr, "certificates sent by the server (%zu, leaf first)\n", info->peer_chain_len);
    for (size_t i = 0; i < info->peer_chain_len; i++) {
        cli_print_pem_cert(stderr, info->peer_chain[i].der, info->peer_chain[i].len);
    }
    return 0;
}

/* --pin, --ocsp, --show-certs and --keylog on the client context. Reports failures. */
static int set_connect_checks(const struct connect_args *args, struct tlsock_ctx *ctx)
{
    int err = 0;

    for (size_t i = 0; i < args->pin_count && err == 0; i++) {
        err = tlsock_ctx_add_pin(ctx, args->pins[i]);
        if (err != 0) {
            cli_error("--pin", err, tlsock_ctx_errmsg(ctx));
        }
    }
    if (err == 0 && args->ocsp_mode != TLSOCK_OCSP_OFF) {
        err = tlsock_ctx_set_ocsp_mode(ctx, args->ocsp_mode);
        if (err != 0) {
            cli_error("--ocsp", err, tlsock_ctx_errmsg(ctx));
        }
    }
    if (err == 0 && args->show_certs) {
        err = tlsock_ctx_set_verify_callback(ctx, show_certs, NULL);
        if (err != 0) {
            cli_error("--show-certs", err, tlsock_ctx_errmsg(ctx));
        }
    }
    if (err == 0 && args->keylog != NULL) {
        err = tlsock_ctx_set_keylog_file(ctx, args->keylog);
        if (err != 0) {
            cli_error("--keylog", err, tlsock_ctx_errmsg(ctx));
        }
    }
    return err;
}

/* Returns the exit status. */
static int run(const struct connect_args *args)
{
    int status = CLI_EXIT_OK;
    struct tlsock_ctx *ctx = NULL;
    struct tlsock_conn *conn = NULL;
    struct tlsock_opts opts = TLSOCK_OPTS_INIT;
    struct cli_relay_params params = {
        .io_timeout_ms = TLSOCK_NO_TIMEOUT,
        .idle_timeout_ms = TLSOCK_NO_TIMEOUT,
        .close_wait_ms = CLOSE_WAIT_DEFAULT_MS,
        .quiet = args->quiet,
    };
    int fd = -1;
    int err = cli_client_ctx_new(&args->shared.ctx, &args->shared, &ctx);

    if (err != 0) {
        status = cli_setup_exit_code(err);
        goto done;
    }
    err = set_connect_checks(args, ctx);
    if (err != 0) {
        status = cli_setup_exit_code(err);
        goto free_ctx;
    }
    if (args->sess_in != NULL) {
        cli_session_load(ctx, args->sess_in);
    }
    opts.servername = args->shared.servername;
    if (args->timeout_ms > 0) {
        opts.connect_timeout_ms = args->timeout_ms;
        opts.handshake_timeout_ms = args->timeout_ms;
        params.io_timeout_ms = args->timeout_ms;
        params.idle_timeout_ms = args->timeout_ms;
        params.close_wait_ms = args->timeout_ms;
    }
    if (args->starttls != NULL) {
        err = connect_starttls(args, ctx, &opts, &conn, &fd);
    } else {
        err = connect_direct(args, ctx, &opts, &conn);
    }
    if (err != 0) {
        status = cli_exit_code(err);
        goto free_ctx;
    }
    if (!args->quiet) {
        print_summary(conn, args);
    }
    if (args->reconnect > 0 || args->sess_in != NULL) {
        cli_session_report(conn, 1);
    }
    err = cli_relay(conn, &params);
    status = cli_exit_code(err);
    if (args->sess_out != NULL && args->reconnect == 0) {
        cli_session_save(conn, args->sess_out);
    }
    tlsock_close(conn);
    for (int i = 0; status == CLI_EXIT_OK && i < args->reconnect; i++) {
        const char *out = i + 1 == args->reconnect ? args->sess_out : NULL;
        err = cli_session_reconnect(ctx, args->host, args->port, &opts, i + 2, out);
        status = cli_exit_code(err);
    }
    if (fd >= 0) {
        cli_plain_close(fd);
    }
free_ctx:
    tlsock_ctx_free(ctx);
done:
    return status;
}

int cli_cmd_connect(int argc, char **argv)
{
    struct connect_args args;
    int status = 0;

    memset(&args, 0, sizeof(args));
    status = parse_args(argc, argv, &args);
    if (status < 0) {
        status = run(&args);
    }
    return status;
}
