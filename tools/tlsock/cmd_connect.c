/*
 * `tlsock connect`: a readable openssl s_client. Connects (after a plaintext STARTTLS preamble
 * with --starttls), verifies, prints what was negotiated on stderr, then relays stdin to the
 * peer and the peer to stdout (connect_relay.c).
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <string.h>

#include "cli.h"
#include "connect_relay.h"
#include "starttls.h"

struct connect_args {
    char host[CLI_HOST_MAX];
    uint16_t port;
    const char *target; /* HOST:PORT as given, for messages */
    const char *ca;
    const char *servername;
    struct cli_ctx_options ctx_opts;
    const char *starttls; /* protocol of the plaintext preamble, NULL for none */
    int timeout_ms;       /* 0: not given */
    bool insecure;
    bool quiet;
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
          "  -c, --cert FILE          client certificate chain (PEM)\n"
          "  -K, --key FILE           client private key (PEM; default: the --cert file)\n"
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

/* Returns -1 to go on, or the exit status to leave with. */
static int parse_args(int argc, char **argv, struct connect_args *args)
{
    enum { OPT_STARTTLS = 256, OPT_IMPL };
    static const struct option longopts[] = {
        {"ca", required_argument, NULL, 'C'},
        {"insecure", no_argument, NULL, 'k'},
        {"servername", required_argument, NULL, 's'},
        {"alpn", required_argument, NULL, 'a'},
        {"tls", required_argument, NULL, 't'},
        {"ciphers", required_argument, NULL, 'P'},
        {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'K'},
        {"timeout", required_argument, NULL, 'T'},
        {"starttls", required_argument, NULL, OPT_STARTTLS},
        {"impl", required_argument, NULL, OPT_IMPL},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int status = -1;
    int opt = 0;
    bool parsing = true;

    while (parsing) {
        opt = getopt_long(argc, argv, ":C:ks:a:t:P:c:K:T:qh", longopts, NULL);
        switch (opt) {
        case -1:
            parsing = false;
            break;
        case 'C':
            args->ca = optarg;
            break;
        case 'k':
            args->insecure = true;
            break;
        case 's':
            args->servername = optarg;
            break;
        case 'a':
            args->ctx_opts.alpn = optarg;
            break;
        case 't':
            args->ctx_opts.tls = optarg;
            break;
        case 'P':
            args->ctx_opts.ciphers = optarg;
            break;
        case 'c':
            args->ctx_opts.cert = optarg;
            break;
        case 'K':
            args->ctx_opts.key = optarg;
            break;
        case 'T':
            if (!cli_parse_int(optarg, 1, 86400000, &args->timeout_ms)) {
                status =
                    cli_usage_error("connect", "--timeout wants milliseconds, not '%s'", optarg);
                goto done;
            }
            break;
        case OPT_IMPL:
            status = cli_use_impl("connect", optarg);
            if (status != CLI_EXIT_OK) {
                goto done;
            }
            status = -1;
            break;
        case OPT_STARTTLS:
            if (strcmp(optarg, "smtp") != 0) {
                status =
                    cli_usage_error("connect", "--starttls knows only 'smtp', not '%s'", optarg);
                goto done;
            }
            args->starttls = optarg;
            break;
        case 'q':
            args->quiet = true;
            break;
        case 'h':
            print_help();
            status = CLI_EXIT_OK;
            goto done;
        default:
            status = cli_bad_option("connect", opt, argv);
            goto done;
        }
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
    if (args->ctx_opts.key != NULL && args->ctx_opts.cert == NULL) {
        status = cli_usage_error("connect", "--key needs --cert");
        goto done;
    }
    if (args->ctx_opts.cert != NULL && args->ctx_opts.key == NULL) {
        args->ctx_opts.key = args->ctx_opts.cert;
    }
done:
    return status;
}

static int make_ctx(const struct connect_args *args, struct tlsock_ctx **out)
{
    struct tlsock_ctx *ctx = NULL;
    int err = tlsock_ctx_new(TLSOCK_CLIENT, &ctx);

    if (err != 0) {
        cli_error("cannot create a client context", err, tlsock_errmsg());
        goto done;
    }
    err = cli_ctx_configure(ctx, &args->ctx_opts);
    if (err != 0) {
        goto free_ctx;
    }
    err = cli_set_trust(ctx, args->ca, args->insecure);
    if (err != 0) {
        goto free_ctx;
    }
    *out = ctx;
    ctx = NULL;
free_ctx:
    tlsock_ctx_free(ctx);
done:
    return err;
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
    if (args->insecure) {
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

    if (args->servername != NULL) {
        opts->servername = args->servername;
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
    int err = make_ctx(args, &ctx);

    if (err != 0) {
        status = cli_setup_exit_code(err);
        goto done;
    }
    opts.servername = args->servername;
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
    err = cli_relay(conn, &params);
    status = cli_exit_code(err);
    tlsock_close(conn);
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
