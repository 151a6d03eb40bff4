/*
 * `tlsock serve`: a TLS echo or HTTP server. The main thread only accepts; each connection runs
 * in its own thread (serve_pool.c, serve_conn.c) with a handshake and an idle timeout, so a bad
 * or silent client never stops the server or holds up the others.
 */
#include <getopt.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "serve.h"

#define HANDSHAKE_TIMEOUT_MS 10000 /* default of --handshake-timeout */
#define IDLE_TIMEOUT_MS      60000
/* How often the accept loop looks at the stop flag. */
#define ACCEPT_POLL_MS 500
#define DEVCERT_HOSTS  "localhost,127.0.0.1,::1"

struct serve_args {
    char host[CLI_HOST_MAX];
    uint16_t port;
    struct cli_ctx_options ctx_opts;
    const char *ca_out;
    const char *client_ca;
    int handshake_timeout_ms;
    enum serve_mode mode;
    bool mode_set;
    bool once;
    bool verbose;
};

static volatile sig_atomic_t stop_requested = 0;

static void on_stop_signal(int signo)
{
    (void)signo;
    stop_requested = 1;
}

static void print_help(void)
{
    fputs("Usage: tlsock serve [OPTIONS]\n\n"
          "Runs a TLS server. The first line on stdout is 'listening on HOST:PORT'. Without\n"
          "--cert it makes a throw-away certificate for localhost, 127.0.0.1 and ::1 and\n"
          "prints 'fingerprint SHA256 ...' on the second line. Connections are served\n"
          "concurrently (up to 256), each with a handshake timeout (10 s unless set) and a\n"
          "60 s idle timeout.\n\n"
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
    enum { OPT_CA_OUT = 256, OPT_CLIENT_CA, OPT_HANDSHAKE_TIMEOUT, OPT_IMPL };
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
    if (args->ctx_opts.cert != NULL && args->ctx_opts.key == NULL) {
        args->ctx_opts.key = args->ctx_opts.cert;
    }
    return status;
}

/*
 * Without --cert: a throw-away certificate, set before listening (the context may freeze then);
 * its fingerprint goes to @p fp for printing after "listening on", which must stay first.
 */
static int use_devcert(struct tlsock_ctx *ctx, const struct serve_args *args,
                       char fp[TLSOCK_FINGERPRINT_SIZE])
{
    char *ca = NULL;
    char *cert = NULL;
    char *key = NULL;
    int err = tlsock_devcert_new(DEVCERT_HOSTS, &ca, &cert, &key);

    if (err != 0) {
        cli_error("cannot make a certificate", err, tlsock_errmsg());
        goto done;
    }
    err = tlsock_ctx_set_cert_mem(ctx, cert, strlen(cert), key, strlen(key));
    if (err != 0) {
        cli_error("cannot use the certificate", err, tlsock_ctx_errmsg(ctx));
        goto free_pems;
    }
    err = tlsock_cert_fingerprint(cert, strlen(cert), fp);
    if (err != 0) {
        cli_error("cannot fingerprint the certificate", err, tlsock_errmsg());
        goto free_pems;
    }
    if (args->ca_out != NULL && !cli_write_file(args->ca_out, ca, 0644)) {
        err = TLSOCK_ESYS;
    }
free_pems:
    tlsock_free(key);
    tlsock_free(cert);
    tlsock_free(ca);
done:
    return err;
}

static void install_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: a signal should cut the accept wait short. */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* Accepts until stopped; each connection goes to its own thread. */
static void accept_loop(struct tlsock_listener *lis, struct serve_pool *pool,
                        int handshake_timeout_ms)
{
    struct tlsock_opts opts = TLSOCK_OPTS_INIT;
    struct tlsock_conn *conn = NULL;
    int err = 0;

    opts.connect_timeout_ms = ACCEPT_POLL_MS;
    /* Counted from the first handshake step, which the connection's thread runs at once. */
    opts.handshake_timeout_ms = handshake_timeout_ms;
    opts.timeout_ms = IDLE_TIMEOUT_MS;
    while (stop_requested == 0) {
        err = tlsock_accept(lis, &opts, &conn);
        if (err == TLSOCK_ETIMEDOUT) {
            continue;
        }
        if (err != 0) {
            /* EMFILE and friends pass; pause so that they do not spin the loop. */
            if (stop_requested == 0) {
                cli_error("accept", err, tlsock_listener_errmsg(lis));
                nanosleep(&(struct timespec){.tv_nsec = 100 * 1000 * 1000}, NULL);
            }
            continue;
        }
        serve_pool_dispatch(pool, conn);
    }
}

/* --once: the first connection is served in this thread; its outcome is the result. */
static int serve_once(struct tlsock_listener *lis, const struct serve_settings *settings)
{
    struct tlsock_opts opts = TLSOCK_OPTS_INIT;
    struct tlsock_conn *conn = NULL;
    int err = 0;

    opts.handshake_timeout_ms = settings->handshake_timeout_ms;
    opts.timeout_ms = IDLE_TIMEOUT_MS;
    err = tlsock_accept(lis, &opts, &conn);
    if (err != 0) {
        cli_error("accept", err, tlsock_listener_errmsg(lis));
        goto done;
    }
    err = cli_serve_conn(conn, settings);
    tlsock_close(conn);
done:
    return err;
}

static int serve_until_stopped(struct tlsock_listener *lis, const struct serve_settings *settings)
{
    int err = 0;
    struct serve_pool *pool = serve_pool_new(settings);

    if (pool == NULL) {
        cli_error("cannot start serving", TLSOCK_ENOMEM, NULL);
        err = TLSOCK_ENOMEM;
        goto done;
    }
    install_signals();
    accept_loop(lis, pool, settings->handshake_timeout_ms);
    serve_pool_stop(pool);
done:
    return err;
}

/* --client-ca: clients must present a certificate that chains to these CAs. */
static int require_client_certs(struct tlsock_ctx *ctx, const char *ca_file)
{
    int err = tlsock_ctx_set_ca_file(ctx, ca_file);

    if (err == 0) {
        err = tlsock_ctx_set_verify(ctx, TLSOCK_VERIFY_REQUIRED);
    }
    if (err != 0) {
        cli_error("--client-ca", err, tlsock_ctx_errmsg(ctx));
    }
    return err;
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
        err = require_client_certs(ctx, args->client_ca);
        if (err != 0) {
            goto free_ctx;
        }
    }
    if (args->ctx_opts.cert == NULL) {
        err = use_devcert(ctx, args, fp);
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

/* Returns the exit status. */
static int run(const struct serve_args *args)
{
    int status = CLI_EXIT_OK;
    struct tlsock_ctx *ctx = NULL;
    struct tlsock_listener *lis = NULL;
    char where[CLI_HOST_MAX + 16];
    char fp[TLSOCK_FINGERPRINT_SIZE] = "";
    const struct serve_settings settings = {
        .mode = args->mode,
        .verbose = args->verbose,
        .handshake_timeout_ms = args->handshake_timeout_ms,
    };
    int err = make_ctx(args, &ctx, fp);

    if (err != 0) {
        status = cli_setup_exit_code(err);
        goto done;
    }
    err = tlsock_listen(ctx, args->host, args->port, 0, &lis);
    if (err != 0) {
        cli_format_hostport(args->host, args->port, where, sizeof(where));
        cli_error(where, err, tlsock_errmsg());
        status = cli_exit_code(err);
        goto free_ctx;
    }
    cli_format_hostport(args->host, tlsock_listener_port(lis), where, sizeof(where));
    /* Scripts wait for these lines to learn the port: "listening on" first, out at once. */
    printf("listening on %s\n", where);
    if (fp[0] != '\0') {
        printf("fingerprint SHA256 %s\n", fp);
    }
    fflush(stdout);
    if (args->once) {
        err = serve_once(lis, &settings);
    } else {
        err = serve_until_stopped(lis, &settings);
    }
    status = cli_exit_code(err);
    tlsock_listener_close(lis);
free_ctx:
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
    status = parse_args(argc, argv, &args);
    if (status < 0) {
        status = run(&args);
    }
    return status;
}
