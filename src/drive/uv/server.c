/*
 * tlsock_uv_serve(): a listening socket made as tlsock_listen() makes it (plus SO_REUSEPORT on
 * request), given to libuv with uv_tcp_open(). Each client's handshake runs on the loop; the
 * application sees only the clients whose handshake succeeded (on_connect), the others go to
 * on_accept_error and the driver closes them itself.
 *
 * A closing server stops accepting at once and is freed when its listener is closed and no
 * client it accepted is still in its handshake or its cleanup (clients counts them).
 */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "uv_int.h"

static void accept_error(struct tlsock_uv_server *s, int code, const char *msg)
{
    if (s->on_accept_error != NULL) {
        s->on_accept_error(s, code, msg);
    }
}

static void listener_closed(uv_handle_t *handle)
{
    struct tlsock_uv_server *s = handle->data;

    s->listener_closed = true;
    tlsock__uv_server_maybe_finish(s);
}

static void on_connection(uv_stream_t *listener, int status);

/* The turned-away client's handle is closed: the server may need it for the next one. */
static void reject_closed(uv_handle_t *handle)
{
    struct tlsock_uv_server *s = handle->data;
    bool queued = s->rejecting == TLSOCK__UV_REJECT_QUEUED;

    s->rejecting = TLSOCK__UV_REJECT_IDLE;
    if (queued && !s->closing) {
        /* libuv holds the client that came meanwhile until someone accepts it. */
        on_connection((uv_stream_t *)&s->tcp, 0);
    }
    tlsock__uv_server_maybe_finish(s);
}

/*
 * A client for whom there is no memory: libuv holds its socket, and watches the listener again
 * only once something accepts it. So the server's own spare handle accepts it and resets it at
 * once (the client learns it was turned away); a client that comes while the spare closes waits
 * until the spare is free. The spare needs no allocation.
 */
static void reject_client(struct tlsock_uv_server *s)
{
    if (s->rejecting != TLSOCK__UV_REJECT_IDLE) {
        s->rejecting = TLSOCK__UV_REJECT_QUEUED;
        return;
    }
    s->rejecting = TLSOCK__UV_REJECT_CLOSING;
    uv_tcp_init(s->loop, &s->reject); /* AF_UNSPEC: cannot fail */
    s->reject.data = s;
    if (uv_accept((uv_stream_t *)&s->tcp, (uv_stream_t *)&s->reject) != 0 ||
        uv_tcp_close_reset(&s->reject, reject_closed) != 0) {
        uv_close((uv_handle_t *)&s->reject, reject_closed);
    }
}

/* A client the application will never see: the driver closes it, silently. */
static void drop_client(struct tlsock_uv_conn *c, int code, const char *msg)
{
    accept_error(c->origin.server, code, msg);
    tlsock__uv_close_all(c, TLSOCK__UV_CLOSED);
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct tlsock_uv_server *s = listener->data;
    struct tlsock_uv_conn *c = NULL;
    int rc;

    if (s->closing) {
        return;
    }
    if (status < 0) {
        char msg[160];
        snprintf(msg, sizeof(msg), "accept: %s (%s)", uv_strerror(status), uv_err_name(status));
        accept_error(s, TLSOCK_ESYS, msg);
        return;
    }
    c = tlsock__uv_conn_alloc(s->loop, s->cfg, s->user);
    if (c == NULL) {
        reject_client(s);
        accept_error(s, TLSOCK_ENOMEM, "out of memory accepting a client");
        return;
    }
    uv_tcp_init(s->loop, &c->tcp);
    c->handles = 1;
    c->accepted = true;
    c->origin.server = s;
    s->clients++;
    rc = uv_accept(listener, (uv_stream_t *)&c->tcp);
    if (rc != 0) {
        char msg[160];
        snprintf(msg, sizeof(msg), "accept: %s (%s)", uv_strerror(rc), uv_err_name(rc));
        drop_client(c, TLSOCK_ESYS, msg);
        return;
    }
    const struct tlsock__conn_setup setup = {.kind = TLSOCK__TRANSPORT_MEMORY, .fd = -1};
    struct tlsock_ctx *ctx = tlsock__ctx_slot_get(&s->ctx);
    rc = tlsock__conn_new(ctx, &setup, &s->tls_opts, &c->tls);
    tlsock_ctx_free(ctx); /* the connection holds its own reference */
    if (rc == 0 && s->initial != NULL) {
        /* The server outlives its clients' handshakes, and the data is encrypted by then. */
        rc = tlsock__uv_queue_initial(c, s->initial, s->initial_len, false);
        if (rc != 0) {
            tlsock__fail(NULL, rc, "out of memory queueing initial data");
        }
    }
    if (rc != 0) {
        drop_client(c, rc, tlsock_errmsg());
        return;
    }
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) {
        tlsock__accepted_nodelay(fd); /* the one rule for both drivers (listen.c) */
    }
    tlsock__uv_start_tls(c);
    tlsock__uv_pump(c, true);
}

int tlsock_uv_serve(uv_loop_t *loop, struct tlsock_ctx *ctx, const char *host, uint16_t port,
                    int backlog, const struct tlsock_uv_opts *opts, struct tlsock_uv_server **out)
{
    struct tlsock_uv_opts o;
    struct tlsock_uv_server *s = NULL;
    int fd = -1;
    int rc;

    tlsock__uv_sigpipe_init();
    rc = tlsock__uv_opts_copy(opts, "tlsock_uv_serve", &o);
    if (loop == NULL || ctx == NULL || out == NULL || opts == NULL || o.on_connect == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL,
                            "tlsock_uv_serve: loop, ctx, opts with on_connect and out are "
                            "required");
    }
    if (rc != 0) {
        return rc;
    }
    rc = tlsock__server_ctx_ready(ctx, "tlsock_uv_serve");
    if (rc != 0) {
        return rc;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return tlsock__fail(NULL, TLSOCK_ENOMEM, "out of memory allocating a server");
    }
    tlsock__ctx_slot_init(&s->ctx, ctx);
    /* The server keeps the loop's shared state while it lives: its clients come and go. */
    s->lp = tlsock__uv_loop_use(loop);
    s->cfg = tlsock__uv_config_new(&o);
    if (s->lp == NULL || s->cfg == NULL) {
        rc = tlsock__fail(NULL, TLSOCK_ENOMEM, "out of memory allocating a server");
        goto free_server;
    }
    if (o.initial_data != NULL && o.initial_len > 0) {
        s->initial = malloc(o.initial_len);
        if (s->initial == NULL) {
            rc = tlsock__fail(NULL, TLSOCK_ENOMEM, "out of memory copying initial data");
            goto free_server;
        }
        memcpy(s->initial, o.initial_data, o.initial_len);
        s->initial_len = o.initial_len;
    }
    if (backlog <= 0) {
        backlog = 128;
    }
    rc = tlsock__listen_socket(host, port, backlog, o.reuseport, &fd);
    if (rc != 0) {
        goto free_server;
    }
    /* Cannot fail for AF_UNSPEC; the socket is ours until uv_tcp_open took it. */
    uv_tcp_init(loop, &s->tcp);
    s->tcp.data = s;
    rc = uv_tcp_open(&s->tcp, fd);
    if (rc == 0) {
        rc = uv_listen((uv_stream_t *)&s->tcp, backlog, on_connection);
    } else {
        close(fd);
    }
    if (rc != 0) {
        rc = tlsock__fail(NULL, TLSOCK_ESYS, "listen: %s (%s)", uv_strerror(rc), uv_err_name(rc));
        /* The handle is registered with the loop: it is freed from its close callback. */
        s->closing = true;
        uv_close((uv_handle_t *)&s->tcp, listener_closed);
        return rc;
    }
    s->loop = loop;
    /* Only the handshake timeout applies to a server's clients. */
    s->tls_opts = (struct tlsock_opts)TLSOCK_OPTS_INIT;
    s->tls_opts.handshake_timeout_ms = o.handshake_timeout_ms;
    s->on_accept_error = o.on_accept_error;
    s->user = o.user;
    s->port = tlsock__bound_port(fd);
    *out = s;
    return 0;
free_server:
    tlsock__ctx_slot_destroy(&s->ctx);
    tlsock__uv_config_unref(s->cfg);
    if (s->lp != NULL) {
        tlsock__uv_loop_unref(s->lp);
    }
    free(s->initial);
    free(s);
    return rc;
}

uint16_t tlsock_uv_server_port(const struct tlsock_uv_server *server)
{
    return server != NULL ? server->port : 0;
}

int tlsock_uv_server_set_ctx(struct tlsock_uv_server *server, struct tlsock_ctx *ctx)
{
    if (server == NULL || ctx == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL,
                            "tlsock_uv_server_set_ctx: server and ctx are required");
    }
    return tlsock__ctx_slot_set(&server->ctx, ctx, "tlsock_uv_server_set_ctx");
}

void *tlsock_uv_server_user(const struct tlsock_uv_server *server)
{
    return server != NULL ? server->user : NULL;
}

void tlsock_uv_server_close(struct tlsock_uv_server *server, tlsock_uv_server_close_cb cb)
{
    if (server == NULL || server->closing) {
        return;
    }
    server->closing = true;
    server->close_cb = cb;
    uv_close((uv_handle_t *)&server->tcp, listener_closed);
}
