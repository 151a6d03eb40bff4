/*
 * A TLS echo server on a libuv loop, many clients at once in one thread:
 * usage `async_echo_server PORT [CHAIN.pem KEY.pem]`.
 *
 * Without a certificate it makes a development one for localhost and prints the CA that signed
 * it on stdout, so that a client can trust it. TLSOCK_IMPL=gnutls (or openssl) picks the TLS
 * implementation. SIGINT or SIGTERM stops accepting; the program ends when the last client
 * has gone.
 *
 *     ./async_echo_server 8443 > ca.pem &
 *     ./async_client localhost 8443 hello ca.pem
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tlsock/uv.h>

/* Stop reading a client while this much of its echo waits to be sent (backpressure). */
#define QUEUE_MAX (256 * 1024)

/* What we keep per client: the user pointer of its connection, freed in on_close. */
struct client {
    bool paused;
};

static struct tlsock_uv_server *server;
static uv_signal_t sigint_watcher;
static uv_signal_t sigterm_watcher;

/* Loads CHAIN and KEY, or makes a development certificate and prints its CA. */
static int load_identity(struct tlsock_ctx *ctx, int argc, char **argv)
{
    char *ca = NULL;
    char *cert = NULL;
    char *key = NULL;
    int rc;

    if (argc == 4) {
        rc = tlsock_ctx_set_cert_file(ctx, argv[2], argv[3]);
    } else {
        rc = tlsock_devcert_new("localhost,127.0.0.1,::1", &ca, &cert, &key);
        if (rc == 0) {
            rc = tlsock_ctx_set_cert_mem(ctx, cert, strlen(cert), key, strlen(key));
        }
        if (rc == 0) {
            fputs(ca, stdout);
            fflush(stdout);
        }
    }
    tlsock_free(ca);
    tlsock_free(cert);
    tlsock_free(key);
    return rc;
}

/* A client finished its handshake: from now on it is ours. */
static void on_connect(struct tlsock_uv_conn *conn, int status)
{
    struct client *client = calloc(1, sizeof(*client));

    (void)status; /* a server reports only successful handshakes here */
    tlsock_uv_conn_set_user(conn, client);
    if (client == NULL) {
        tlsock_uv_close(conn);
    }
}

/* Data from a client: send it back. */
static void on_read(struct tlsock_uv_conn *conn, const void *data, size_t len)
{
    struct client *client = tlsock_uv_conn_user(conn);
    /* data is only valid during this call; the write needs its bytes until on_write. */
    void *copy = malloc(len);

    if (copy == NULL) {
        tlsock_uv_close(conn);
        return;
    }
    memcpy(copy, data, len);
    if (tlsock_uv_write(conn, copy, len, copy) != 0) {
        free(copy); /* no on_write will come for it */
        tlsock_uv_close(conn);
        return;
    }
    /* The client sends faster than it reads: stop reading until it catches up. */
    if (!client->paused && tlsock_uv_conn_write_queue_size(conn) > QUEUE_MAX) {
        client->paused = true;
        tlsock_uv_read_stop(conn);
    }
}

/* Part of an echo reached the kernel (or the connection is closing: ECANCELED). */
static void on_write(struct tlsock_uv_conn *conn, void *copy, int status)
{
    struct client *client = tlsock_uv_conn_user(conn);

    free(copy);
    if (status == 0 && client->paused && tlsock_uv_conn_write_queue_size(conn) < QUEUE_MAX / 4) {
        client->paused = false;
        tlsock_uv_read_start(conn);
    }
}

/* The client's stream ended: close_notify (a clean end) or an error. Either way, close. */
static void on_event(struct tlsock_uv_conn *conn, int code)
{
    if (code != TLSOCK_ECLOSED) {
        fprintf(stderr, "async_echo_server: client: %s (%s)\n", tlsock_strerror(code),
                tlsock_uv_conn_errmsg(conn));
    }
    /* Sends what is still queued, then our close_notify. */
    tlsock_uv_close(conn);
}

/* The connection's last callback: free what belongs to it. */
static void on_close(struct tlsock_uv_conn *conn)
{
    free(tlsock_uv_conn_user(conn));
}

/* A client failed before it was handed to us (e.g. its handshake); the server goes on. */
static void on_accept_error(struct tlsock_uv_server *srv, int code, const char *message)
{
    (void)srv;
    fprintf(stderr, "async_echo_server: handshake: %s (%s)\n", tlsock_strerror(code), message);
}

/* SIGINT, SIGTERM: stop accepting; uv_run() returns once the connected clients have gone. */
static void on_signal(uv_signal_t *watcher, int signum)
{
    (void)watcher;
    (void)signum;
    tlsock_uv_server_close(server, NULL); /* a second call is a no-op */
    /*
     * The watchers stay (a second signal, as timeout(1) sends, must not kill us), but no
     * longer keep the loop running.
     */
    uv_unref((uv_handle_t *)&sigint_watcher);
    uv_unref((uv_handle_t *)&sigterm_watcher);
}

int main(int argc, char **argv)
{
    uv_loop_t *loop = uv_default_loop();
    struct tlsock_ctx *ctx = NULL;
    struct tlsock_uv_opts opts = TLSOCK_UV_OPTS_INIT;
    int rc;

    if (argc != 2 && argc != 4) {
        fprintf(stderr, "usage: %s PORT [CHAIN.pem KEY.pem]\n", argv[0]);
        return 2;
    }
    /* Every client gets these callbacks and timeouts. */
    opts.on_connect = on_connect;
    opts.on_read = on_read;
    opts.on_write = on_write;
    opts.on_event = on_event;
    opts.on_close = on_close;
    opts.on_accept_error = on_accept_error;
    opts.handshake_timeout_ms = 10000; /* a silent client is dropped... */
    opts.read_idle_timeout_ms = 60000; /* ...and so is an idle one */
    opts.write_timeout_ms = 60000;     /* ...and one that stops reading */

    rc = tlsock_ctx_new(TLSOCK_SERVER, &ctx);
    if (rc == 0) {
        rc = load_identity(ctx, argc, argv);
    }
    if (rc == 0) {
        rc = tlsock_uv_serve(loop, ctx, NULL, (uint16_t)atoi(argv[1]), 0, &opts, &server);
    }
    if (rc != 0) {
        fprintf(stderr, "async_echo_server: %s (%s)\n", tlsock_strerror(rc),
                ctx != NULL ? tlsock_ctx_errmsg(ctx) : tlsock_errmsg());
        tlsock_ctx_free(ctx);
        return 1;
    }
    fprintf(stderr, "async_echo_server: listening on port %u (%s)\n", tlsock_uv_server_port(server),
            tlsock_impl_name(tlsock_ctx_impl(ctx)));
    uv_signal_init(loop, &sigint_watcher);
    uv_signal_start(&sigint_watcher, on_signal, SIGINT);
    uv_signal_init(loop, &sigterm_watcher);
    uv_signal_start(&sigterm_watcher, on_signal, SIGTERM);

    uv_run(loop, UV_RUN_DEFAULT);

    /* Closing the watchers restores the default action: we are leaving, ignore more signals. */
    uv_close((uv_handle_t *)&sigint_watcher, NULL);
    uv_close((uv_handle_t *)&sigterm_watcher, NULL);
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    uv_run(loop, UV_RUN_DEFAULT); /* runs the close callbacks */
    tlsock_ctx_free(ctx);         /* the server held its own reference while it ran */
    uv_loop_close(loop);
    return 0;
}
