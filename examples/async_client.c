/*
 * An echo client on a libuv loop: usage `async_client HOST PORT MESSAGE [CA.pem]`.
 *
 * Connects without blocking the loop, verifies the server (against CA.pem, else the system
 * store) and that its certificate names HOST, sends MESSAGE, prints what comes back on stdout,
 * and closes (with close_notify) once as many bytes came back as it sent. Exits 0 when all of
 * it came back. TLSOCK_IMPL=gnutls (or openssl) picks the TLS implementation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tlsock/uv.h>

/* The state of the one connection, reached through its user pointer. */
struct session {
    const char *message;
    size_t len;
    size_t received;
    int status; /* 0 once everything came back */
};

/* Connected and verified, or failed to. */
static void on_connect(struct tlsock_uv_conn *conn, int status)
{
    struct session *s = tlsock_uv_conn_user(conn);
    const struct tlsock_info *info = NULL;

    if (status != 0) {
        fprintf(stderr, "async_client: connect: %s (%s)\n", tlsock_strerror(status),
                tlsock_uv_conn_errmsg(conn));
        s->status = status;
        tlsock_uv_close(conn); /* a failed attempt must be closed too */
        return;
    }
    if (tlsock_conn_info(tlsock_uv_conn_tls(conn), &info) == 0) {
        fprintf(stderr, "async_client: %s %s\n", info->version, info->cipher);
    }
    /* The message is a string from argv: it stays valid until on_write, as it must. */
    if (tlsock_uv_write(conn, s->message, s->len, NULL) != 0) {
        fprintf(stderr, "async_client: write: %s\n", tlsock_uv_conn_errmsg(conn));
        tlsock_uv_close(conn);
    }
}

/* Part of the echo: print it; close once all of it is here. */
static void on_read(struct tlsock_uv_conn *conn, const void *data, size_t len)
{
    struct session *s = tlsock_uv_conn_user(conn);

    fwrite(data, 1, len, stdout);
    s->received += len;
    if (s->received >= s->len) {
        s->status = 0;
        tlsock_uv_close(conn);
    }
}

/* The stream ended before the whole echo came (close_notify, truncation, timeout...). */
static void on_event(struct tlsock_uv_conn *conn, int code)
{
    fprintf(stderr, "async_client: %s (%s) after %zu bytes\n", tlsock_strerror(code),
            tlsock_uv_conn_errmsg(conn), ((struct session *)tlsock_uv_conn_user(conn))->received);
    tlsock_uv_close(conn);
}

int main(int argc, char **argv)
{
    struct session s = {.status = TLSOCK_ECANCELED};
    struct tlsock_ctx *ctx = NULL;
    struct tlsock_uv_conn *conn = NULL;
    struct tlsock_uv_opts opts = TLSOCK_UV_OPTS_INIT;
    int rc;

    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s HOST PORT MESSAGE [CA.pem]\n", argv[0]);
        return 2;
    }
    s.message = argv[3];
    s.len = strlen(argv[3]);
    opts.on_connect = on_connect;
    opts.on_read = on_read;
    opts.on_event = on_event;
    opts.user = &s;
    opts.connect_timeout_ms = 10000;   /* TCP connect */
    opts.handshake_timeout_ms = 10000; /* TLS handshake */
    opts.read_idle_timeout_ms = 10000; /* a server that stops answering */

    rc = tlsock_ctx_new(TLSOCK_CLIENT, &ctx); /* verifies chain and host name */
    if (rc == 0 && argc == 5) {
        rc = tlsock_ctx_set_ca_file(ctx, argv[4]);
    }
    if (rc == 0) {
        /* Returns at once: the name is resolved and the handshake run by the loop. */
        rc = tlsock_uv_connect(uv_default_loop(), ctx, argv[1], (uint16_t)atoi(argv[2]), &opts,
                               &conn);
    }
    if (rc != 0) {
        fprintf(stderr, "async_client: %s (%s)\n", tlsock_strerror(rc),
                ctx != NULL ? tlsock_ctx_errmsg(ctx) : tlsock_errmsg());
        tlsock_ctx_free(ctx);
        return 1;
    }
    fprintf(stderr, "async_client: connecting with %s\n", tlsock_impl_name(tlsock_ctx_impl(ctx)));

    uv_run(uv_default_loop(), UV_RUN_DEFAULT); /* until the connection is closed */

    tlsock_ctx_free(ctx);
    uv_loop_close(uv_default_loop());
    return s.status == 0 ? 0 : 1;
}
