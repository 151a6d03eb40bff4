/*
 * `tlsock demo`: shows in one command what the library promises. A server with a throw-away
 * certificate runs in a thread; a client that trusts that certificate's CA gets a verified
 * session, and a client that trusts only the system store is refused with a clear reason.
 */
#include <getopt.h>
#include <string.h>

#include "cli.h"
#include "demo.h"

#define DEMO_HOSTS      "localhost,127.0.0.1,::1"
#define DEMO_ALPN       "demo/1"
#define DEMO_TIMEOUT_MS 5000

struct demo_pems {
    char *ca;
    char *cert;
    char *key;
};

static void print_help(void)
{
    fputs("Usage: tlsock demo\n\n"
          "Makes a throw-away CA and a certificate for localhost, starts a TLS echo server on\n"
          "127.0.0.1 in a thread, and connects to it twice:\n"
          "  1. a client trusting only that CA: the session is verified, two messages are\n"
          "     echoed and the negotiated parameters are printed;\n"
          "  2. a client trusting only the system store: it must refuse the server, and the\n"
          "     verification error is printed.\n"
          "Then every pair of compiled-in implementations (client x server) makes a session,\n"
          "one line each. Exits 0 only when the first session worked, the second was refused\n"
          "and every pair worked.\n\n"
          "Options:\n"
          "      --impl NAME  openssl or gnutls for the main part (default: TLSOCK_IMPL or\n"
          "                   openssl)\n"
          "  -h, --help       show this help\n",
          stdout);
}

static void client_opts(struct tlsock_opts *opts)
{
    /* Connect to the address, verify the name: the certificate lists both anyway. */
    opts->servername = "localhost";
    opts->connect_timeout_ms = DEMO_TIMEOUT_MS;
    opts->handshake_timeout_ms = DEMO_TIMEOUT_MS;
    opts->timeout_ms = DEMO_TIMEOUT_MS;
}

/* A context of @p role on implementation @p impl (TLSOCK_IMPL_DEFAULT: the process default). */
static int new_ctx(int role, int impl, struct tlsock_ctx **out)
{
    int err = tlsock_ctx_new(role, out);

    if (err != 0) {
        cli_error("cannot create a context", err, tlsock_errmsg());
        goto done;
    }
    err = tlsock_ctx_set_impl(*out, impl);
    if (err != 0) {
        cli_error("cannot choose the implementation", err, tlsock_ctx_errmsg(*out));
        tlsock_ctx_free(*out);
        *out = NULL;
    }
done:
    return err;
}

static int make_client_ctx(int impl, const char *ca_pem, struct tlsock_ctx **out)
{
    struct tlsock_ctx *ctx = NULL;
    int err = new_ctx(TLSOCK_CLIENT, impl, &ctx);

    if (err != 0) {
        goto done;
    }
    err = tlsock_ctx_set_alpn(ctx, DEMO_ALPN);
    if (err == 0 && ca_pem != NULL) {
        err = tlsock_ctx_set_ca_mem(ctx, ca_pem, strlen(ca_pem));
    }
    if (err != 0) {
        cli_error("cannot configure the client", err, tlsock_ctx_errmsg(ctx));
        goto free_ctx;
    }
    *out = ctx;
    ctx = NULL;
free_ctx:
    tlsock_ctx_free(ctx);
done:
    return err;
}

/* Sends @p msg and reads until the same number of bytes came back, then compares. */
static int echo_round(struct tlsock_conn *conn, const char *msg, bool quiet)
{
    char buf[256];
    size_t len = strlen(msg);
    size_t got = 0;
    size_t nread = 0;
    int err = tlsock_write(conn, msg, len);

    while (err == 0 && got < len) {
        err = tlsock_read(conn, buf + got, len - got, &nread);
        got += err == 0 ? nread : 0;
    }
    if (err != 0) {
        cli_error("echo", err, tlsock_conn_errmsg(conn));
        goto done;
    }
    if (memcmp(buf, msg, len) != 0) {
        cli_errorf("echo: the server sent back different bytes");
        err = TLSOCK_EPROTO;
        goto done;
    }
    if (!quiet) {
        printf("  sent and got back: %.*s\n", (int)(len - 1), msg);
    }
done:
    return err;
}

/* Our close_notify, then the server's: the session ends cleanly in both directions. */
static int close_both_ways(struct tlsock_conn *conn, bool quiet)
{
    char buf[64];
    size_t nread = 0;
    int err = tlsock_shutdown(conn);

    while (err == 0) {
        err = tlsock_read(conn, buf, sizeof(buf), &nread);
    }
    if (err == TLSOCK_ECLOSED) {
        if (!quiet) {
            printf("  closed: close_notify sent and received\n");
        }
        err = 0;
    } else {
        cli_error("close", err, tlsock_conn_errmsg(conn));
    }
    return err;
}

static int trusted_client(const struct demo_pems *pems, uint16_t port)
{
    struct tlsock_ctx *ctx = NULL;
    struct tlsock_conn *conn = NULL;
    struct tlsock_opts opts = TLSOCK_OPTS_INIT;
    const struct tlsock_info *info = NULL;
    int err = make_client_ctx(TLSOCK_IMPL_DEFAULT, pems->ca, &ctx);

    if (err != 0) {
        goto done;
    }
    printf("\nclient 1: trusts only the demo CA\n");
    client_opts(&opts);
    err = tlsock_connect(ctx, "127.0.0.1", port, &opts, &conn);
    if (err != 0) {
        cli_error("client 1: connect", err, tlsock_errmsg());
        goto free_ctx;
    }
    err = echo_round(conn, "hello over TLS\n", false);
    if (err == 0) {
        err = echo_round(conn, "second message\n", false);
    }
    if (err == 0) {
        err = tlsock_conn_info(conn, &info);
    }
    if (err != 0) {
        goto close_conn;
    }
    printf("  session:\n");
    cli_print_info(stdout, info, "    ");
    err = close_both_ways(conn, false);
close_conn:
    tlsock_close(conn);
free_ctx:
    tlsock_ctx_free(ctx);
done:
    return err;
}

/* Returns 0 when the client was refused with TLSOCK_EVERIFY, as it must be. */
static int untrusted_client(uint16_t port)
{
    struct tlsock_ctx *ctx = NULL;
    struct tlsock_conn *conn = NULL;
    struct tlsock_opts opts = TLSOCK_OPTS_INIT;
    int err = make_client_ctx(TLSOCK_IMPL_DEFAULT, NULL, &ctx);

    if (err != 0) {
        goto done;
    }
    printf("\nclient 2: trusts only the system store\n");
    client_opts(&opts);
    err = tlsock_connect(ctx, "127.0.0.1", port, &opts, &conn);
    if (err == TLSOCK_EVERIFY) {
        printf("  refused, as it must be: %s (%s)\n  reason: %s\n", tlsock_strerror(err),
               tlsock_err_name(err), tlsock_errmsg());
        err = 0;
    } else if (err == 0) {
        cli_errorf("client 2: connected to a server it must not trust");
        tlsock_close(conn);
        err = TLSOCK_EVERIFY;
    } else {
        cli_error("client 2: expected a verification failure, got", err, tlsock_errmsg());
    }
    tlsock_ctx_free(ctx);
done:
    return err;
}

static void report_server_view(struct demo_server *srv)
{
    if (!demo_server_wait(srv, 2, DEMO_TIMEOUT_MS)) {
        printf("  server: still busy with the refused client\n");
        goto done;
    }
    pthread_mutex_lock(&srv->lock);
    printf("  server saw: %s%s%s\n", tlsock_strerror(srv->last_err),
           srv->last_msg[0] != '\0' ? ": " : "", srv->last_msg);
    pthread_mutex_unlock(&srv->lock);
done:
    return;
}

static int make_server(int impl, const struct demo_pems *pems, struct tlsock_ctx **ctx_out,
                       struct tlsock_listener **lis_out)
{
    struct tlsock_ctx *ctx = NULL;
    int err = new_ctx(TLSOCK_SERVER, impl, &ctx);

    if (err != 0) {
        goto done;
    }
    err =
        tlsock_ctx_set_cert_mem(ctx, pems->cert, strlen(pems->cert), pems->key, strlen(pems->key));
    if (err == 0) {
        err = tlsock_ctx_set_alpn(ctx, DEMO_ALPN);
    }
    if (err != 0) {
        cli_error("cannot configure the server", err, tlsock_ctx_errmsg(ctx));
        goto free_ctx;
    }
    err = tlsock_listen(ctx, "127.0.0.1", 0, 0, lis_out);
    if (err != 0) {
        cli_error("cannot listen on 127.0.0.1", err, tlsock_errmsg());
        goto free_ctx;
    }
    *ctx_out = ctx;
    ctx = NULL;
free_ctx:
    tlsock_ctx_free(ctx);
done:
    return err;
}

/* One session from a client on @p client_impl to the server on @p port; prints a table row. */
static int pair_row(const struct demo_pems *pems, int client_impl, int server_impl, uint16_t port)
{
    struct tlsock_ctx *ctx = NULL;
    struct tlsock_conn *conn = NULL;
    struct tlsock_opts opts = TLSOCK_OPTS_INIT;
    const struct tlsock_info *info = NULL;
    int err = make_client_ctx(client_impl, pems->ca, &ctx);

    client_opts(&opts);
    if (err == 0) {
        err = tlsock_connect(ctx, "127.0.0.1", port, &opts, &conn);
    }
    if (err == 0) {
        err = tlsock_conn_info(conn, &info);
    }
    if (err == 0) {
        err = echo_round(conn, "pair\n", true);
    }
    if (err == 0) {
        err = close_both_ways(conn, true);
    }
    printf("  %-8s %-8s %-8s %-30s %s\n", tlsock_impl_name(client_impl),
           tlsock_impl_name(server_impl), info != NULL ? info->version : "-",
           info != NULL ? info->cipher : "-", err == 0 ? "ok" : tlsock_err_name(err));
    tlsock_close(conn);
    tlsock_ctx_free(ctx);
    return err;
}

/* Every pair of compiled-in implementations, client and server, side by side. */
static int run_pairs(const struct demo_pems *pems)
{
    static const int impls[] = {TLSOCK_IMPL_OPENSSL, TLSOCK_IMPL_GNUTLS};
    int err = 0;

    printf("\nimplementations, client x server:\n  %-8s %-8s %-8s %-30s %s\n", "client", "server",
           "version", "cipher", "result");
    for (size_t s = 0; s < 2 && err == 0; s++) {
        struct tlsock_ctx *server_ctx = NULL;
        struct tlsock_listener *lis = NULL;
        struct demo_server srv;
        if (!tlsock_impl_available(impls[s])) {
            continue;
        }
        err = make_server(impls[s], pems, &server_ctx, &lis);
        if (err == 0) {
            err = demo_server_start(&srv, lis);
            for (size_t c = 0; c < 2 && err == 0; c++) {
                if (tlsock_impl_available(impls[c])) {
                    err = pair_row(pems, impls[c], impls[s], tlsock_listener_port(lis));
                }
            }
            demo_server_stop(&srv);
        }
        tlsock_listener_close(lis);
        tlsock_ctx_free(server_ctx);
    }
    return err;
}

static int run_demo(const struct demo_pems *pems)
{
    struct tlsock_ctx *server_ctx = NULL;
    struct tlsock_listener *lis = NULL;
    struct demo_server srv;
    char fp[TLSOCK_FINGERPRINT_SIZE] = "?";
    uint16_t port = 0;
    int err = make_server(TLSOCK_IMPL_DEFAULT, pems, &server_ctx, &lis);

    if (err != 0) {
        goto done;
    }
    port = tlsock_listener_port(lis);
    (void)tlsock_cert_fingerprint(pems->ca, strlen(pems->ca), fp);
    printf("server: listening on 127.0.0.1:%u, ALPN %s\n", (unsigned)port, DEMO_ALPN);
    printf("  certificate for %s, signed by a throw-away CA\n", DEMO_HOSTS);
    printf("  CA fingerprint SHA256 %s\n", fp);
    fflush(stdout);
    err = demo_server_start(&srv, lis);
    if (err != 0) {
        goto close_listener;
    }
    err = trusted_client(pems, port);
    if (err == 0) {
        err = untrusted_client(port);
    }
    if (err == 0) {
        report_server_view(&srv);
    }
    demo_server_stop(&srv);
    if (err == 0) {
        err = run_pairs(pems);
    }
    if (err == 0) {
        printf("\ndemo passed: the trusted session worked and the untrusted one was refused\n");
    } else {
        printf("\ndemo FAILED: %s\n", tlsock_strerror(err));
    }
close_listener:
    tlsock_listener_close(lis);
    tlsock_ctx_free(server_ctx);
done:
    return err;
}

int cli_cmd_demo(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"impl", required_argument, NULL, 'I'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct demo_pems pems = {.ca = NULL, .cert = NULL, .key = NULL};
    int status = CLI_EXIT_OK;
    int opt = getopt_long(argc, argv, ":I:h", longopts, NULL);
    int err = 0;

    while (opt == 'I' && status == CLI_EXIT_OK) {
        status = cli_use_impl("demo", optarg);
        opt = getopt_long(argc, argv, ":I:h", longopts, NULL);
    }
    if (status != CLI_EXIT_OK) {
        goto done;
    }
    if (opt == 'h') {
        print_help();
        goto done;
    }
    if (opt != -1) {
        status = cli_bad_option("demo", opt, argv);
        goto done;
    }
    if (optind < argc) {
        status = cli_usage_error("demo", "demo takes no arguments");
        goto done;
    }
    printf("tlsock demo (%s)\n", tlsock_impl_version(TLSOCK_IMPL_DEFAULT));
    err = tlsock_devcert_new(DEMO_HOSTS, &pems.ca, &pems.cert, &pems.key);
    if (err != 0) {
        cli_error("cannot make certificates", err, tlsock_errmsg());
    } else {
        err = run_demo(&pems);
    }
    status = cli_exit_code(err);
    tlsock_free(pems.key);
    tlsock_free(pems.cert);
    tlsock_free(pems.ca);
done:
    return status;
}
