/*
 * `tlsock serve`: a TLS echo or HTTP server on the libuv driver. Each of --threads threads runs
 * a loop with its own server; loop 0's listener gives each client to the one with the fewest
 * connections (tlsock_uv_serve_shared());
 * every connection has a handshake and an idle timeout, so a bad or silent client never stops
 * the server or holds up the others.
 */
#include <getopt.h>
#include <string.h>

#include "cli.h"
#include "loops.h"
#include "serve.h"

struct serve_args {
    char host[CLI_HOST_MAX];
    uint16_t port;
    struct cli_shared_options shared;
    enum serve_mode mode;
    bool mode_set;
    bool once;
};

static void print_help(void)
{
    fputs("Usage: tlsock serve [OPTIONS]\n\n"
          "Runs a TLS server. The first line on stdout is 'listening on HOST:PORT'. Without\n"
          "--cert it makes a throw-away certificate for localhost, 127.0.0.1 and ::1 and\n"
          "prints 'fingerprint SHA256 ...' on the second line. Connections are served\n"
          "concurrently on event loops, each with a handshake timeout (10 s unless set) and a\n"
          "60 s idle timeout. SIGINT or SIGTERM stops it. SIGHUP reloads --cert, --key,\n"
          "--client-ca, --crl and --ticket-keys from their files for new connections (open\n"
          "ones keep theirs); a file that fails to load leaves the old ones serving, and\n"
          "either way one line on stderr says what happened.\n\n"
          "Options:\n"
          "  -l, --listen HOST:PORT   address to listen on (default 127.0.0.1:0, any "
          "port)\n" CLI_HELP_SERVER_CERT
          "      --ca-out FILE        without --cert: write the throw-away CA to FILE\n"
          "      --client-ca FILE     require client certificates issued by these CAs\n"
          "      --crl FILE           refuse client certificates revoked by these CRLs (PEM or\n"
          "                           DER; repeatable; needs --client-ca)\n"
          "      --crl-chain          check every certificate of the chain, not only the leaf\n"
          "      --ocsp-response FILE staple this DER OCSP response (openssl ocsp -respout) for\n"
          "                           clients that ask for one\n" CLI_HELP_SERVER_TICKETS
          "  -e, --echo               echo every byte back (the default)\n"
          "  -H, --http               answer HTTP/1.x requests with a small text/plain page\n"
          "  -a, --alpn LIST          ALPN protocols to accept, in preference order\n"
          "  -t, --tls MIN[-MAX]      protocol range, e.g. 1.3 or 1.2-1.3 (default 1.2-1.3)\n"
          "  -P, --ciphers POLICY     secure (default), compat, legacy (needed for TLS 1.0/1.1)\n"
          "                           or the implementation's own cipher string\n"
          "      --handshake-timeout MS\n"
          "                           drop clients that have not finished the TLS handshake\n"
          "                           MS milliseconds after they connected (default 10000)\n"
          "      --threads N          N threads, each with its own event loop; each client goes\n"
          "                           to the one with the fewest connections; default 1\n"
          "  -1, --once               serve one connection, then exit with its outcome\n"
          "      --impl NAME          TLS implementation: openssl or gnutls (default: TLSOCK_IMPL\n"
          "                           or openssl)\n"
          "      --stats SECONDS      print the figures of the stop's summary (connections,\n"
          "                           bytes, handshakes failed by kind) every SECONDS\n"
          "  -v, --verbose            log every connection, and every failed handshake (else\n"
          "                           one per kind in 10 s, the others counted)\n"
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

static bool own_option(void *user, int opt, const char *arg, int *status)
{
    struct serve_args *args = user;
    bool mine = true;

    *status = -1;
    if (opt == 'l') {
        if (!cli_parse_hostport(arg, true, args->host, &args->port)) {
            *status = cli_usage_error("serve", "'%s' is not HOST:PORT or [IPv6]:PORT", arg);
        }
    } else if (opt == 'e' || opt == 'H') {
        *status = set_mode(args, opt == 'e' ? SERVE_ECHO : SERVE_HTTP);
    } else if (opt == '1') {
        args->once = true;
    } else {
        mine = false;
    }
    return mine;
}

/* Returns -1 to go on, or the exit status to leave with. */
static int parse_args(int argc, char **argv, struct serve_args *args)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        CLI_LONGOPTS_SERVER,
        CLI_LONGOPTS_CRL,
        /* The mode: echo (the default) or HTTP. */
        {"echo", no_argument, NULL, 'e'},
        {"http", no_argument, NULL, 'H'},
        {"alpn", required_argument, NULL, 'a'},
        CLI_LONGOPTS_TLS,
        {"once", no_argument, NULL, '1'},
        CLI_LONGOPTS_END,
    };
    static const struct cli_command cmd = {"serve",    ":l:c:K:eHa:t:P:1vh", longopts,
                                           print_help, own_option,           false};
    int status = cli_parse_options(&cmd, argc, argv, args, &args->shared);

    if (status < 0) {
        status = cli_check_server_options("serve", &args->shared);
    }
    if (status < 0) {
        status = cli_check_crl_options("serve", &args->shared, args->shared.client_ca != NULL,
                                       "--client-ca (it checks client certificates)");
    }
    if (status < 0 && args->once && args->shared.threads > 1) {
        status = cli_usage_error("serve", "--once serves one connection: it takes no --threads");
    }
    return status;
}

/* Serves on @p host:@p port on @p uv, or on @p share's listener; on failure says why and returns
 * the error. */
static int start_server(struct serve_loop *sl, uv_loop_t *uv, struct tlsock_ctx *ctx,
                        const char *host, uint16_t port, struct tlsock_uv_server *share)
{
    struct tlsock_uv_opts opts = TLSOCK_UV_OPTS_INIT;
    char where[CLI_HOST_MAX + 16];
    int err = 0;

    serve_conn_opts(sl, &opts);
    err = cli_uv_serve(uv, ctx, host, port, share, &opts, &sl->server);
    if (err != 0) {
        sl->server = NULL;
        cli_format_hostport(host, port, where, sizeof(where));
        cli_error(where, err, tlsock_errmsg());
    }
    return err;
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
    err = start_server(&sl, &uv, ctx, args->host, args->port, NULL);
    if (err == 0) {
        cli_print_listening(args->host, tlsock_uv_server_port(sl.server), fp, NULL);
        /* Ends once the server closed after its one client and that client is gone. */
        uv_run(&uv, UV_RUN_DEFAULT);
        err = sl.once_result;
    }
    uv_loop_close(&uv);
done:
    return err;
}

/* Always TLS: a shared listener with several loops, so reuseport is never asked for. */
static int loop_start_accepting(struct cli_loop *loop, const void *settings, struct tlsock_ctx *ctx,
                                const char *host, uint16_t *port, struct tlsock_uv_server *share,
                                bool reuseport)
{
    struct serve_loop *sl = loop->user;
    int err = 0;

    (void)reuseport;
    sl->settings = settings;
    sl->loop = loop;
    err = start_server(sl, &loop->uv, ctx, host, *port, share);
    if (err == 0) {
        *port = tlsock_uv_server_port(sl->server);
    }
    return err;
}

/* Handshakes in progress are reset too: on_connect would refuse them once the stop came. */
static void loop_stop_accepting(struct cli_loop *loop)
{
    struct serve_loop *sl = loop->user;

    if (sl->server != NULL) {
        tlsock_uv_server_abort(sl->server, NULL);
    }
}

static struct tlsock_uv_server *loop_tls_server(struct cli_loop *loop)
{
    return ((struct serve_loop *)loop->user)->server;
}

static const struct cli_loop_ops serve_loop_ops = {
    .user_size = sizeof(struct serve_loop),
    .nomem_msg = "cannot start serving",
    .start_accepting = loop_start_accepting,
    .stop_accepting = loop_stop_accepting,
    .close_all = serve_close_all,
    .tls_server = loop_tls_server,
};

/* Returns the exit status. */
static int run(const struct serve_args *args)
{
    int status = CLI_EXIT_OK;
    struct tlsock_ctx *ctx = NULL;
    char fp[TLSOCK_FINGERPRINT_SIZE] = "";
    const struct serve_settings settings = {
        .mode = args->mode,
        .verbose = args->shared.verbose,
        .once = args->once,
        .handshake_timeout_ms = args->shared.handshake_timeout_ms,
    };
    int err = cli_server_ctx_new(&args->shared, &ctx, fp);

    if (err != 0) {
        status = cli_setup_exit_code(err);
        goto done;
    }
    if (args->once) {
        err = serve_once(args, &settings, ctx, fp);
    } else {
        err = cli_loops_serve(&serve_loop_ops, args->shared.threads, &settings, ctx, args->host,
                              args->port, fp, &args->shared);
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
    cli_shared_options_init(&args.shared);
    args.mode = SERVE_ECHO;
    status = parse_args(argc, argv, &args);
    if (status < 0) {
        status = run(&args);
    }
    return status;
}
