/*
 * `tlsock tunnel`: accepts TCP connections and forwards each to a target, adding or removing
 * TLS on the way, like stunnel. TLS termination: clients speak TLS, the target plaintext.
 * TLS origination (--tls-connect): clients speak plaintext, the target TLS, verified as
 * `tlsock connect` verifies. Both at once re-encrypts. Each of --threads threads runs a loop:
 * TLS clients come from loop 0's listener, to the loop with the fewest connections
 * (tlsock_uv_serve_shared()); plaintext ones from a listener per loop on the same port
 * (SO_REUSEPORT). tunnel_pair.h tells how each accepted client is forwarded.
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cli.h"
#include "loops.h"
#include "stats.h"
#include "tunnel.h"

#define CONNECT_TIMEOUT_MS 10000  /* default of --connect-timeout */
#define IDLE_TIMEOUT_MS    300000 /* default of --idle-timeout */
#define LISTEN_BACKLOG     511

struct tunnel_args {
    char accept_host[CLI_HOST_MAX];
    uint16_t accept_port;
    const char *accept_arg;
    char connect_host[CLI_HOST_MAX];
    uint16_t connect_port;
    const char *connect_arg;
    struct cli_shared_options shared; /* --tls, --ciphers for every TLS side; --cert/--key;
                                         the trust of --tls-connect */
    int connect_timeout_ms;
    int idle_timeout_ms;
    bool tls_connect;
};

static void print_help(void)
{
    fputs("Usage: tlsock tunnel --accept HOST:PORT --connect HOST:PORT [OPTIONS]\n\n"
          "Accepts TCP connections and forwards each to the --connect address, adding or\n"
          "removing TLS on the way (like stunnel). Clients speak TLS unless --tls-connect is\n"
          "given without --cert or --ca-out; the target speaks TLS with --tls-connect. Without\n"
          "--cert, accepted TLS uses a throw-away certificate for localhost, 127.0.0.1 and ::1.\n"
          "The first line on stdout is 'listening on HOST:PORT'. The end of the stream on one\n"
          "side (FIN or close_notify) is passed on to the other; a reset on one side closes\n"
          "the other at once. A failed connection is logged on stderr and the tunnel goes on.\n"
          "SIGINT or SIGTERM stops it. SIGHUP reloads the accepting side's --cert, --key,\n"
          "--client-ca, --crl and --ticket-keys for new clients (open connections keep\n"
          "theirs); a file that fails to load leaves the old ones serving; one line on stderr\n"
          "says which.\n\n"
          "Options:\n"
          "      --accept HOST:PORT   address to accept clients on (port 0: any free port)\n"
          "      --connect HOST:PORT  the target each client is forwarded to\n"
          "Clients speak TLS (TLS termination):\n" CLI_HELP_SERVER_CERT
          "      --ca-out FILE        without --cert: write the throw-away CA to FILE\n"
          "      --client-ca FILE     require client certificates issued by these CAs\n"
          "      --handshake-timeout MS\n"
          "                           drop clients that have not finished the TLS handshake\n"
          "                           MS milliseconds after they connected (default 10000)\n"
          "      --ocsp-response FILE staple this DER OCSP response (openssl ocsp -respout) for\n"
          "                           clients that ask for one\n" CLI_HELP_SERVER_TICKETS
          "The target speaks TLS (TLS origination):\n"
          "      --tls-connect        connect to the target with TLS and verify it\n"
          "  -C, --ca FILE|DIR        trust these CA certificates instead of the system store\n"
          "  -k, --insecure           do not verify the target (anyone can impersonate it)\n"
          "  -s, --servername NAME    SNI to send and name the certificate must match\n"
          "Both:\n"
          "      --crl FILE           refuse certificates revoked by these CRLs (PEM or DER;\n"
          "                           repeatable): the target's with --tls-connect, clients'\n"
          "                           with --client-ca\n"
          "      --crl-chain          check every certificate of the chain, not only the leaf\n"
          "  -t, --tls MIN[-MAX]      protocol range, e.g. 1.3 or 1.2-1.3 (default 1.2-1.3)\n"
          "  -P, --ciphers POLICY     secure (default), compat, legacy, or the implementation's\n"
          "                           own cipher string\n"
          "      --connect-timeout MS bound the TCP connect and the TLS handshake to the target\n"
          "                           to MS each (default 10000)\n"
          "      --idle-timeout MS    reset a connection when no data moved either way for MS\n"
          "                           milliseconds (default 300000; 0: never)\n"
          "      --threads N          N threads, each with its own event loop; TLS clients go to\n"
          "                           the one with the fewest connections, plaintext ones are\n"
          "                           spread by the kernel (SO_REUSEPORT); default 1\n"
          "      --impl NAME          TLS implementation: openssl or gnutls (default: TLSOCK_IMPL\n"
          "                           or openssl)\n"
          "      --stats SECONDS      print the figures of the stop's summary (connections,\n"
          "                           bytes, handshakes failed by kind) every SECONDS\n"
          "  -v, --verbose            log every connection, and every failed handshake (else\n"
          "                           one per kind in 10 s, the others counted)\n"
          "  -h, --help               show this help\n",
          stdout);
}

static int parse_ms(const char *opt, const char *arg, int min, int *out)
{
    int status = -1;

    if (!cli_parse_int(arg, min, CLI_MS_MAX, out)) {
        status = cli_usage_error("tunnel", "%s wants milliseconds (%d or more), not '%s'", opt, min,
                                 arg);
    }
    return status;
}

static int parse_hostport(const char *opt, const char *arg, bool allow_zero,
                          char host[CLI_HOST_MAX], uint16_t *port)
{
    int status = -1;

    if (!cli_parse_hostport(arg, allow_zero, host, port)) {
        status = cli_usage_error("tunnel", "%s: '%s' is not HOST:PORT or [IPv6]:PORT", opt, arg);
    }
    return status;
}

/* What parse_args() could not check one option at a time. Returns -1 or the exit status. */
static int check_args(struct tunnel_args *args)
{
    int status = -1;
    const struct cli_shared_options *shared = &args->shared;
    bool accept_tls = shared->ctx.cert_count > 0 || shared->ca_out != NULL || !args->tls_connect;

    if (args->accept_arg == NULL || args->connect_arg == NULL) {
        status = cli_usage_error("tunnel", "--accept and --connect are both required");
    } else {
        status = cli_check_server_options("tunnel", &args->shared);
    }
    if (status < 0 && shared->client_ca != NULL && !accept_tls) {
        status = cli_usage_error("tunnel", "--client-ca needs clients that speak TLS (--cert)");
    }
    if (status < 0 && shared->ocsp_response != NULL && !accept_tls) {
        status = cli_usage_error("tunnel", "--ocsp-response needs clients that speak TLS (--cert)");
    }
    if (status < 0 && (shared->ticket_keys != NULL || shared->no_tickets) && !accept_tls) {
        status = cli_usage_error("tunnel", "--ticket-keys and --no-tickets need clients that speak "
                                           "TLS (--cert)");
    }
    if (status < 0 && shared->session_store != NULL && !accept_tls) {
        status = cli_usage_error("tunnel", "--session-store needs clients that speak TLS (--cert)");
    }
    if (status < 0 && !args->tls_connect &&
        (shared->ca != NULL || shared->insecure || shared->servername != NULL)) {
        status = cli_usage_error("tunnel", "--ca, --insecure and --servername need --tls-connect");
    }
    if (status < 0) {
        status = cli_check_crl_options("tunnel", shared,
                                       (shared->client_ca != NULL && accept_tls) ||
                                           (args->tls_connect && !shared->insecure),
                                       "--client-ca or --tls-connect without --insecure");
    }
    return status;
}

enum {
    OPT_ACCEPT = CLI_OPT_SHARED_END,
    OPT_CONNECT,
    OPT_TLS_CONNECT,
    OPT_CONNECT_TIMEOUT,
    OPT_IDLE_TIMEOUT,
};

static bool own_option(void *user, int opt, const char *arg, int *status)
{
    struct tunnel_args *args = user;
    bool mine = true;

    *status = -1;
    if (opt == OPT_ACCEPT) {
        args->accept_arg = arg;
        *status = parse_hostport("--accept", arg, true, args->accept_host, &args->accept_port);
    } else if (opt == OPT_CONNECT) {
        args->connect_arg = arg;
        *status = parse_hostport("--connect", arg, false, args->connect_host, &args->connect_port);
    } else if (opt == OPT_TLS_CONNECT) {
        args->tls_connect = true;
    } else if (opt == OPT_CONNECT_TIMEOUT) {
        *status = parse_ms("--connect-timeout", arg, 1, &args->connect_timeout_ms);
    } else if (opt == OPT_IDLE_TIMEOUT) {
        *status = parse_ms("--idle-timeout", arg, 0, &args->idle_timeout_ms);
    } else {
        mine = false;
    }
    return mine;
}

/* Returns -1 to go on, or the exit status to leave with. */
static int parse_args(int argc, char **argv, struct tunnel_args *args)
{
    static const struct option longopts[] = {
        {"accept", required_argument, NULL, OPT_ACCEPT},
        {"connect", required_argument, NULL, OPT_CONNECT},
        CLI_LONGOPTS_SERVER,
        {"tls-connect", no_argument, NULL, OPT_TLS_CONNECT},
        CLI_LONGOPTS_TRUST,
        CLI_LONGOPTS_TLS,
        {"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
        {"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
        CLI_LONGOPTS_END,
    };
    static const struct cli_command cmd = {"tunnel",   ":c:K:C:ks:t:P:vh", longopts,
                                           print_help, own_option,         false};
    int status = cli_parse_options(&cmd, argc, argv, args, &args->shared);

    if (status < 0) {
        status = check_args(args);
    }
    return status;
}

/* The context of the connections to the target (--tls-connect). */
static int make_client_ctx(const struct tunnel_args *args, struct tlsock_ctx **out)
{
    struct cli_ctx_options ctx_opts = args->shared.ctx;

    /* --cert is the accepting side's certificate, not a client certificate. */
    ctx_opts.cert_count = 0;
    ctx_opts.key_pass_file = NULL;
    ctx_opts.key_pass_env = NULL;
    return cli_client_ctx_new(&ctx_opts, &args->shared, out);
}

static void on_plain_client(uv_stream_t *listener, int status)
{
    struct tunnel_loop *tl = listener->data;
    uv_tcp_t *tcp = NULL;
    int err = status;

    if (err == 0) {
        tcp = malloc(sizeof(*tcp));
        err = tcp == NULL ? UV_ENOMEM : uv_tcp_init(listener->loop, tcp);
    }
    if (err == 0) {
        err = uv_accept(listener, (uv_stream_t *)tcp);
        if (err != 0) {
            uv_close((uv_handle_t *)tcp, tunnel_free_handle);
        }
    } else {
        free(tcp);
    }
    if (err != 0) {
        /* Out of descriptors, every client fails alike: one line per kind and window, the
         * others counted (as a TLS listener's accept errors are). */
        if (cli_stats_conn_error(TLSOCK_ESYS, uv_strerror(err))) {
            cli_error("accept", TLSOCK_ESYS, uv_strerror(err));
        }
    } else {
        tunnel_start_plain(tl, tcp);
    }
}

/* Listens for plaintext clients; *port is the port it got. Reports failures. */
static int listen_plain(struct tunnel_loop *tl, const char *host, uint16_t *port, bool reuseport)
{
    struct addrinfo hints;
    struct addrinfo *ai = NULL;
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);
    char where[CLI_HOST_MAX + 16];
    uv_os_fd_t fd = -1;
    int one = 1;
    int err = 0;

    cli_format_hostport(host, *port, where, sizeof(where));
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    err = getaddrinfo(host, NULL, &hints, &ai);
    if (err != 0) {
        cli_error(where, TLSOCK_ERESOLVE, gai_strerror(err));
        err = TLSOCK_ERESOLVE;
        goto done;
    }
    memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
    if (ss.ss_family == AF_INET) {
        ((struct sockaddr_in *)&ss)->sin_port = htons(*port);
    } else {
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons(*port);
    }
    tl->listener = malloc(sizeof(*tl->listener));
    err = tl->listener == NULL ? UV_ENOMEM
                               : uv_tcp_init_ex(&tl->loop->uv, tl->listener, ss.ss_family);
    if (err != 0) {
        free(tl->listener);
        tl->listener = NULL;
        cli_error(where, TLSOCK_ESYS, uv_strerror(err));
        err = TLSOCK_ESYS;
        goto free_ai;
    }
    tl->listener->data = tl;
    if (reuseport && uv_fileno((uv_handle_t *)tl->listener, &fd) == 0 &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
        err = uv_translate_sys_error(errno);
    }
    if (err == 0) {
        err = uv_tcp_bind(tl->listener, (const struct sockaddr *)&ss, 0);
    }
    if (err == 0) {
        err = uv_listen((uv_stream_t *)tl->listener, LISTEN_BACKLOG, on_plain_client);
    }
    if (err == 0) {
        err = uv_tcp_getsockname(tl->listener, (struct sockaddr *)&ss, &sslen);
    }
    if (err != 0) {
        cli_error(where, TLSOCK_ESYS, uv_strerror(err));
        uv_close((uv_handle_t *)tl->listener, tunnel_free_handle);
        tl->listener = NULL;
        err = TLSOCK_ESYS;
        goto free_ai;
    }
    *port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                          : ((struct sockaddr_in6 *)&ss)->sin6_port);
free_ai:
    freeaddrinfo(ai);
done:
    return err;
}

/* Listens for TLS clients, or takes them from @p share's listener; *port is the port it got.
 * Reports failures. */
static int listen_tls(struct tunnel_loop *tl, struct tlsock_ctx *ctx, const char *host,
                      uint16_t *port, struct tlsock_uv_server *share)
{
    struct tlsock_uv_opts opts = TLSOCK_UV_OPTS_INIT;
    char where[CLI_HOST_MAX + 16];
    int err = 0;

    tunnel_accept_opts(tl, &opts);
    err = cli_uv_serve(&tl->loop->uv, ctx, host, *port, share, &opts, &tl->server);
    if (err != 0) {
        tl->server = NULL;
        cli_format_hostport(host, *port, where, sizeof(where));
        cli_error(where, err, tlsock_errmsg());
    } else {
        *port = tlsock_uv_server_port(tl->server);
    }
    return err;
}

/* Handshakes in progress are reset too: on_connect would refuse them once the stop came. */
static void stop_listening(struct tunnel_loop *tl)
{
    if (tl->server != NULL) {
        tlsock_uv_server_abort(tl->server, NULL);
        tl->server = NULL;
    }
    if (tl->listener != NULL) {
        uv_close((uv_handle_t *)tl->listener, tunnel_free_handle);
        tl->listener = NULL;
    }
}

static int loop_start_accepting(struct cli_loop *loop, const void *settings, struct tlsock_ctx *ctx,
                                const char *host, uint16_t *port, struct tlsock_uv_server *share,
                                bool reuseport)
{
    struct tunnel_loop *tl = loop->user;
    int err = 0;

    tl->settings = settings;
    tl->loop = loop;
    if (ctx != NULL) {
        err = listen_tls(tl, ctx, host, port, share);
    } else {
        err = listen_plain(tl, host, port, reuseport);
    }
    return err;
}

static void loop_listening(struct cli_loop *loop, const char *where)
{
    const struct tunnel_settings *settings = ((struct tunnel_loop *)loop->user)->settings;

    if (settings->verbose) {
        fprintf(stderr, "tlsock: forwarding %s on %s to %s %s\n",
                settings->accept_tls ? "TLS" : "plaintext", where,
                settings->tls_connect ? "TLS" : "plaintext", settings->target);
    }
}

static void loop_stop_accepting(struct cli_loop *loop)
{
    stop_listening(loop->user);
}

static struct tlsock_uv_server *loop_tls_server(struct cli_loop *loop)
{
    return ((struct tunnel_loop *)loop->user)->server;
}

/* The tunnel's arguments, for a SIGHUP's new target context (one tunnel per process). */
static const struct tunnel_args *reload_args;

/*
 * SIGHUP: a new context for the connections to the target (its --ca, --crl...), made as at
 * start, in *@p out; swapped in by swap_target() once everything of the reload is made. Reports
 * what failed. Nothing to do without --tls-connect.
 */
static int reload_target(const void *settings, struct tlsock_ctx **out)
{
    const struct tunnel_settings *s = settings;

    *out = NULL;
    return s->tls_connect ? make_client_ctx(reload_args, out) : 0;
}

/* Puts @p ctx (made by reload_target()) in the settings' place; the old one goes with its last
 * connection. */
static void swap_target(const void *settings, struct tlsock_ctx *ctx)
{
    const struct tunnel_settings *s = settings;
    struct tlsock_ctx *old = NULL;

    if (!s->tls_connect || ctx == NULL) {
        return;
    }
    pthread_mutex_lock(&s->client->lock);
    old = s->client->ctx;
    s->client->ctx = tlsock_ctx_ref(ctx);
    pthread_mutex_unlock(&s->client->lock);
    tlsock_ctx_free(old);
}

static const struct cli_loop_ops tunnel_loop_ops = {
    .user_size = sizeof(struct tunnel_loop),
    .nomem_msg = "cannot start the tunnel",
    .start_accepting = loop_start_accepting,
    .listening = loop_listening,
    .stop_accepting = loop_stop_accepting,
    .close_all = tunnel_close_all,
    .tls_server = loop_tls_server,
    .reload_target = reload_target,
    .swap_target = swap_target,
};

/* Returns the exit status. */
static int run(const struct tunnel_args *args)
{
    struct tunnel_settings settings;
    struct tunnel_target_ctx target = {.lock = PTHREAD_MUTEX_INITIALIZER, .ctx = NULL};
    struct tlsock_ctx *server_ctx = NULL;
    char fp[TLSOCK_FINGERPRINT_SIZE] = "";
    struct sigaction sa;
    int status = CLI_EXIT_OK;
    int err = 0;

    memset(&settings, 0, sizeof(settings));
    memcpy(settings.connect_host, args->connect_host, sizeof(settings.connect_host));
    settings.connect_port = args->connect_port;
    cli_format_hostport(args->connect_host, args->connect_port, settings.target,
                        sizeof(settings.target));
    settings.servername = args->shared.servername;
    settings.accept_tls =
        args->shared.ctx.cert_count > 0 || args->shared.ca_out != NULL || !args->tls_connect;
    settings.handshake_timeout_ms = args->shared.handshake_timeout_ms;
    settings.connect_timeout_ms = args->connect_timeout_ms;
    settings.idle_timeout_ms = args->idle_timeout_ms;
    settings.verbose = args->shared.verbose;
    if (settings.accept_tls) {
        err = cli_server_ctx_new(&args->shared, &server_ctx, fp);
    }
    settings.tls_connect = args->tls_connect;
    settings.client = &target;
    if (err == 0 && args->tls_connect) {
        err = make_client_ctx(args, &target.ctx);
    }
    reload_args = args;
    if (err != 0) {
        status = cli_setup_exit_code(err);
        goto free_ctx;
    }
    /* A plaintext peer that goes away must fail a write, not kill the tunnel. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    err = cli_loops_serve(&tunnel_loop_ops, args->shared.threads, &settings, server_ctx,
                          args->accept_host, args->accept_port, fp, &args->shared);
    status = cli_exit_code(err);
free_ctx:
    tlsock_ctx_free(target.ctx);
    pthread_mutex_destroy(&target.lock);
    tlsock_ctx_free(server_ctx);
    return status;
}

int cli_cmd_tunnel(int argc, char **argv)
{
    struct tunnel_args args;
    int status = 0;

    memset(&args, 0, sizeof(args));
    cli_shared_options_init(&args.shared);
    args.connect_timeout_ms = CONNECT_TIMEOUT_MS;
    args.idle_timeout_ms = IDLE_TIMEOUT_MS;
    status = parse_args(argc, argv, &args);
    if (status < 0) {
        status = run(&args);
    }
    return status;
}
