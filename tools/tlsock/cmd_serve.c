/*
 * `tlsock serve`: a TLS echo or HTTP server on the libuv driver. Each of --threads threads runs
 * a loop with its own server on the same port (SO_REUSEPORT, the kernel spreads the clients);
 * every connection has a handshake and an idle timeout, so a bad or silent client never stops
 * the server or holds up the others.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "loops.h"
#include "serve.h"

#define HANDSHAKE_TIMEOUT_MS 10000 /* default of --handshake-timeout */
#define THREADS_MAX          256

struct serve_args {
    char host[CLI_HOST_MAX];
    uint16_t port;
    struct cli_ctx_options ctx_opts;
    const char *ca_out;
    const char *client_ca;
    int handshake_timeout_ms;
    int threads;
    enum serve_mode mode;
    bool mode_set;
    bool once;
    bool verbose;
};

static void print_help(void)
{
    fputs("Usage: tlsock serve [OPTIONS]\n\n"
          "Runs a TLS server. The first line on stdout is 'listening on HOST:PORT'. Without\n"
          "--cert it makes a throw-away certificate for localhost, 127.0.0.1 and ::1 and\n"
          "prints 'fingerprint SHA256 ...' on the second line. Connections are served\n"
          "concurrently on event loops, each with a handshake timeout (10 s unless set) and a\n"
          "60 s idle timeout. SIGINT or SIGTERM stops it.\n\n"
          "Options:\n"
          "  -l, --listen HOST:PORT   address to listen on (default 127.0.0.1:0, any port)\n"
          "  -c, --cert FILE          certificate chain (PEM)\n"
          "  -K, --key FILE           private key (PEM; default: the --cert file)\n"
          "      --ca-out FILE        without --cert: write the throw-away CA to FILE\n"
          "      --client-ca FILE     require client certificates issued by these CAs\n"
          "  -e, --echo               echo every byte back (the default)\n"
          "  -H, --http               answer HTTP/1.x requests with a small text/plain page\n"
          "  -a, --alpn LIST          ALPN protocols to accept, in preference order\n"
          "  -t, --tls MIN[-MAX]      protocol range, e.g. 1.3 or 1.2-1.3 (default 1.2-1.3)\n"
          "  -P, --ciphers POLICY     secure (default), compat, legacy (needed for TLS 1.0/1.1)\n"
          "                           or the implementation's own cipher string\n"
          "      --handshake-timeout MS\n"
          "                           drop clients that have not finished the TLS handshake\n"
          "                           MS milliseconds after they connected (default 10000)\n"
          "      --threads N          N threads, each with its own event loop and listener on\n"
          "                           the same port (SO_REUSEPORT); default 1\n"
          "  -1, --once               serve one connection, then exit with its outcome\n"
          "      --impl NAME          TLS implementation: openssl or gnutls (default: TLSOCK_IMPL\n"
          "                           or openssl)\n"
          "  -v, --verbose            log every connection, not only failures\n"
          "  -h, --help               show this help\n",
          stdout);
}

static int set_mode(struct serve_args *args, enum serve_mode mode)
{
    int status = -1;

    if (args->mode_set && args->mode != mode) {
        status = cli_usage_error("serve", "--echo and --http exclude each other");
    }
    args->mode = mode;
    args->mode_set = true;
    return status;
}

/* Returns -1 to go on, or the exit status to leave with. */
static int parse_args(int argc, char **argv, struct serve_args *args)
{
    enum { OPT_CA_OUT = 256, OPT_CLIENT_CA, OPT_HANDSHAKE_TIMEOUT, OPT_IMPL, OPT_THREADS };
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'K'},
        {"ca-out", required_argument, NULL, OPT_CA_OUT},
        {"client-ca", required_argument, NULL, OPT_CLIENT_CA},
        {"handshake-timeout", required_argument, NULL, OPT_HANDSHAKE_TIMEOUT},
        {"impl", required_argument, NULL, OPT_IMPL},
        {"echo", no_argument, NULL, 'e'},
        {"http", no_argument, NULL, 'H'},
        {"alpn", required_argument, NULL, 'a'},
        {"tls", required_argument, NULL, 't'},
        {"ciphers", required_argument, NULL, 'P'},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"once", no_argument, NULL, '1'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int status = -1;
    int opt = 0;
    bool parsing = true;

    while (parsing && status < 0) {
        opt = getopt_long(argc, argv, ":l:c:K:eHa:t:P:1vh", longopts, NULL);
        switch (opt) {
        case -1:
            parsing = false;
            break;
        case 'l':
            if (!cli_parse_hostport(optarg, true, args->host, &args->port)) {
                status = cli_usage_error("serve", "'%s' is not HOST:PORT or [IPv6]:PORT", optarg);
            }
            break;
        case 'c':
            args->ctx_opts.cert = optarg;
            break;
        case 'K':
            args->ctx_opts.key = optarg;
            break;
        case OPT_CA_OUT:
            args->ca_out = optarg;
            break;
        case OPT_IMPL:
            status = cli_use_impl("serve", optarg);
            status = status == CLI_EXIT_OK ? -1 : status;
            break;
        case OPT_CLIENT_CA:
            args->client_ca = optarg;
            break;
        case OPT_HANDSHAKE_TIMEOUT:
            if (!cli_parse_int(optarg, 1, 86400000, &args->handshake_timeout_ms)) {
                status = cli_usage_error(
                    "serve", "--handshake-timeout wants milliseconds (1 or more), not '%s'",
                    optarg);
            }
            break;
        case 'e':
            status = set_mode(args, SERVE_ECHO);
            break;
        case 'H':
            status = set_mode(args, SERVE_HTTP);
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
        case OPT_THREADS:
            if (!cli_parse_int(optarg, 1, THREADS_MAX, &args->threads)) {
                status = cli_usage_error("serve", "--threads wants a number from 1 to %d, not '%s'",
                                         THREADS_MAX, optarg);
            }
            break;
        case '1':
            args->once = true;
            break;
        case 'v':
            args->verbose = true;
            break;
        case 'h':
            print_help();
            status = CLI_EXIT_OK;
            break;
        default:
            status = cli_bad_option("serve", opt, argv);
            break;
        }
    }
    if (status < 0 && optind < argc) {
        status = cli_usage_error("serve", "unexpected argument '%s'", argv[optind]);
    }
    if (status < 0 && args->ctx_opts.key != NULL && args->ctx_opts.cert == NULL) {
        status = cli_usage_error("serve", "--key needs --cert");
    }
    if (status < 0 && args->ca_out != NULL && args->ctx_opts.cert != NULL) {
        status = cli_usage_error("serve", "--ca-out only applies without --cert");
    }
    if (status < 0 && args->once && args->threads > 1) {
        status = cli_usage_error("serve", "--once serves one connection: it takes no --threads");
    }
    if (args->ctx_opts.cert != NULL && args->ctx_opts.key == NULL) {
        args->ctx_opts.key = args->ctx_opts.cert;
    }
    return status;
}

static int make_ctx(const struct serve_args *args, struct tlsock_ctx **out,
                    char fp[TLSOCK_FINGERPRINT_SIZE])
{
    struct tlsock_ctx *ctx = NULL;
    int err = tlsock_ctx_new(TLSOCK_SERVER, &ctx);

    if (err != 0) {
        cli_error("cannot create a server context", err, tlsock_errmsg());
        goto done;
    }
    err = cli_ctx_configure(ctx, &args->ctx_opts);
    if (err != 0) {
        goto free_ctx;
    }
    if (args->client_ca != NULL) {
        err = cli_require_client_certs(ctx, args->client_ca);
        if (err != 0) {
            goto free_ctx;
        }
    }
    if (args->ctx_opts.cert == NULL) {
        err = cli_use_devcert(ctx, args->ca_out, fp);
        if (err != 0) {
            goto free_ctx;
        }
    }
    *out = ctx;
    ctx = NULL;
free_ctx:
    tlsock_ctx_free(ctx);
done:
    return err;
}

/* Serves on @p host:@p port on @p uv; on failure says why and returns the error. */
static int start_server(struct serve_loop *sl, uv_loop_t *uv, struct tlsock_ctx *ctx,
                        const char *host, uint16_t port, bool reuseport)
{
    struct tlsock_uv_opts opts = TLSOCK_UV_OPTS_INIT;
    char where[CLI_HOST_MAX + 16];
    int err = 0;

    serve_conn_opts(sl, &opts);
    opts.reuseport = reuseport;
    err = tlsock_uv_serve(uv, ctx, host, port, 0, &opts, &sl->server);
    if (err != 0) {
        sl->server = NULL;
        cli_format_hostport(host, port, where, sizeof(where));
        cli_error(where, err, tlsock_errmsg());
    }
    return err;
}

/* Scripts wait for these lines to learn the port: "listening on" first, out at once. */
static void print_listening(const char *host, uint16_t port, const char *fp)
{
    char where[CLI_HOST_MAX + 16];

    cli_format_hostport(host, port, where, sizeof(where));
    printf("listening on %s\n", where);
    if (fp[0] != '\0') {
        printf("fingerprint SHA256 %s\n", fp);
    }
    fflush(stdout);
}

/* --once: one loop in this thread, no signal handling; the one connection's outcome. */
static int serve_once(const struct serve_args *args, const struct serve_settings *settings,
                      struct tlsock_ctx *ctx, const char *fp)
{
    uv_loop_t uv;
    struct serve_loop sl = {.settings = settings};
    int err = uv_loop_init(&uv);

    if (err != 0) {
        cli_errorf("cannot make an event loop: %s", uv_strerror(err));
        err = TLSOCK_ESYS;
        goto done;
    }
    err = start_server(&sl, &uv, ctx, args->host, args->port, false);
    if (err == 0) {
        print_listening(args->host, tlsock_uv_server_port(sl.server), fp);
        /* Ends once the server closed after its one client and that client is gone. */
        uv_run(&uv, UV_RUN_DEFAULT);
        err = sl.once_result;
    }
    uv_loop_close(&uv);
done:
    return err;
}

static void loop_stop_accepting(struct cli_loop *loop)
{
    struct serve_loop *sl = loop->user;

    tlsock_uv_server_close(sl->server, NULL);
}

static void loop_close_all(struct cli_loop *loop)
{
    serve_close_all(loop->user);
}

static const struct cli_loop_ops serve_loop_ops = {
    .stop_accepting = loop_stop_accepting,
    .close_all = loop_close_all,
};

/* Until SIGINT or SIGTERM: one server per thread, all on the port the first one got. */
static int serve_threads(const struct serve_args *args, const struct serve_settings *settings,
                         struct tlsock_ctx *ctx, const char *fp)
{
    struct cli_loops loops;
    struct serve_loop *sls = calloc((size_t)args->threads, sizeof(*sls));
    uint16_t port = args->port;
    int err = TLSOCK_ENOMEM;
    int i = 0;

    if (sls == NULL) {
        cli_error("cannot start serving", err, NULL);
        goto done;
    }
    err = cli_loops_init(&loops, args->threads, &serve_loop_ops) == 0 ? 0 : TLSOCK_ESYS;
    for (i = 0; i < loops.count && err == 0; i++) {
        sls[i].settings = settings;
        sls[i].loop = &loops.loops[i];
        loops.loops[i].user = &sls[i];
        err = start_server(&sls[i], &loops.loops[i].uv, ctx, args->host, port, args->threads > 1);
        if (err == 0) {
            port = tlsock_uv_server_port(sls[i].server);
        }
    }
    if (err == 0) {
        print_listening(args->host, port, fp);
        err = cli_loops_run(&loops) == 0 ? 0 : TLSOCK_ESYS;
    } else {
        for (i = 0; i < loops.count; i++) {
            if (sls[i].server != NULL) {
                tlsock_uv_server_close(sls[i].server, NULL);
            }
        }
    }
    cli_loops_free(&loops);
    free(sls);
done:
    return err;
}

/* Returns the exit status. */
static int run(const struct serve_args *args)
{
    int status = CLI_EXIT_OK;
    struct tlsock_ctx *ctx = NULL;
    char fp[TLSOCK_FINGERPRINT_SIZE] = "";
    const struct serve_settings settings = {
        .mode = args->mode,
        .verbose = args->verbose,
        .once = args->once,
        .handshake_timeout_ms = args->handshake_timeout_ms,
    };
    int err = make_ctx(args, &ctx, fp);

    if (err != 0) {
        status = cli_setup_exit_code(err);
        goto done;
    }
    if (args->once) {
        err = serve_once(args, &settings, ctx, fp);
    } else {
        err = serve_threads(args, &settings, ctx, fp);
    }
    status = cli_exit_code(err);
    tlsock_ctx_free(ctx);
done:
    return status;
}

int cli_cmd_serve(int argc, char **argv)
{
    struct serve_args args;
    int status = 0;

    memset(&args, 0, sizeof(args));
    snprintf(args.host, sizeof(args.host), "127.0.0.1");
    args.mode = SERVE_ECHO;
    args.handshake_timeout_ms = HANDSHAKE_TIMEOUT_MS;
    args.threads = 1;
    status = parse_args(argc, argv, &args);
    if (status < 0) {
        status = run(&args);
    }
    return status;
}
