/*
 * `tlsock connect`: a readable openssl s_client. Connects, verifies, prints what was negotiated
 * on stderr, then relays stdin to the peer and the peer to stdout (connect_relay.c).
 */
#include <getopt.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "connect_relay.h"

struct connect_args {
    char host[CLI_HOST_MAX];
    uint16_t port;
    const char *target; /* HOST:PORT as given, for messages */
    const char *ca;
    const char *servername;
    struct cli_ctx_options ctx_opts;
    int timeout_ms; /* 0: not given */
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
          "  -T, --timeout MS         connect and handshake timeout; also bounds each write\n"
          "                           and the wait for the server's close_notify (default 5 s)\n"
          "  -q, --quiet              print no session summary\n"
          "  -h, --help               show this help\n",
          stdout);
}

/* Returns -1 to go on, or the exit status to leave with. */
static int parse_args(int argc, char **argv, struct connect_args *args)
{
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

static int set_trust(struct tlsock_ctx *ctx, const struct connect_args *args)
{
    int err = 0;
    struct stat st;

    if (args->insecure) {
        err = tlsock_ctx_set_verify(ctx, TLSOCK_VERIFY_NONE);
        if (err != 0) {
            cli_error("--insecure", err, tlsock_ctx_errmsg(ctx));
            goto done;
        }
    }
    if (args->ca == NULL) {
        goto done;
    }
    /* A hashed directory is looked up lazily; a file is read now. */
    if (stat(args->ca, &st) == 0 && S_ISDIR(st.st_mode)) {
        err = tlsock_ctx_set_ca_dir(ctx, args->ca);
    } else {
        err = tlsock_ctx_set_ca_file(ctx, args->ca);
    }
    if (err != 0) {
        cli_error("--ca", err, tlsock_ctx_errmsg(ctx));
    }
done:
    return err;
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
    err = set_trust(ctx, args);
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

/* Returns the exit status. */
static int run(const struct connect_args *args)
{
    int status = CLI_EXIT_OK;
    struct tlsock_ctx *ctx = NULL;
    struct tlsock_conn *conn = NULL;
    struct tlsock_opts opts = TLSOCK_OPTS_INIT;
    struct cli_relay_params params = {
        .io_timeout_ms = TLSOCK_NO_TIMEOUT,
        .close_wait_ms = CLOSE_WAIT_DEFAULT_MS,
        .quiet = args->quiet,
    };
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
        params.close_wait_ms = args->timeout_ms;
    }
    err = tlsock_connect(ctx, args->host, args->port, &opts, &conn);
    if (err != 0) {
        char what[CLI_HOST_MAX + 32];
        snprintf(what, sizeof(what), "connect to %s", args->target);
        cli_error(what, err, tlsock_errmsg());
        status = cli_exit_code(err);
        goto free_ctx;
    }
    if (!args->quiet) {
        print_summary(conn, args);
    }
    err = cli_relay(conn, &params);
    status = cli_exit_code(err);
    tlsock_close(conn);
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
