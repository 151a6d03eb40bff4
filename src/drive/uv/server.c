/*
 * tlsock_uv_serve(): a listening socket made as tlsock_listen() makes it (plus SO_REUSEPORT on
 * request), given to libuv with uv_tcp_open(). Each client's handshake runs on the loop; the
 * application sees only the clients whose handshake succeeded (on_connect), the others go to
 * on_accept_error and the driver closes them itself.
 *
 * tlsock_uv_serve_shared(): a server on another loop that shares that listener (group.c). The
 * listening loop accepts each client for the group's least loaded server: its own clients it
 * serves at once; another's it hands over as a socket of its own (libuv closes the one it
 * accepted with its handle) through that server's inbox, and wakes its loop.
 *
 * A closing server stops accepting at once and is freed when its listener (or wake-up handle)
 * is closed and no client it accepted is still in its handshake or its cleanup (clients counts
 * them, the waiting array lists them). An aborting server also kicks each of those clients, whose
 * pump then resets it (engine.c) instead of going on with its handshake.
 */
#include <errno.h>
#include <fcntl.h>
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

/* Accepting failed with libuv error @p rc: reported, and @p c (may be NULL) dropped. */
static void accept_failed(struct tlsock_uv_server *s, struct tlsock_uv_conn *c, int rc)
{
    char msg[160];

    snprintf(msg, sizeof(msg), "accept: %s (%s)", uv_strerror(rc), uv_err_name(rc));
    if (c != NULL) {
        drop_client(c, TLSOCK_ESYS, msg);
    } else {
        accept_error(s, TLSOCK_ESYS, msg);
    }
}

/* A client whose socket c->tcp holds: its handshake starts on the loop. */
static void serve_client(struct tlsock_uv_server *s, struct tlsock_uv_conn *c)
{
    const struct tlsock__conn_setup setup = {.kind = TLSOCK__TRANSPORT_MEMORY, .fd = -1};
    struct tlsock_ctx *ctx = tlsock__ctx_slot_get(&s->ctx);
    int rc = tlsock__conn_new(ctx, &setup, &s->tls_opts, &c->tls);

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

/* A connection for a client of @p s, its socket handle initialised (empty); NULL without
 * memory. */
static struct tlsock_uv_conn *new_client(struct tlsock_uv_server *s)
{
    struct tlsock_uv_conn *c = tlsock__uv_conn_alloc(s->loop, s->cfg, s->user);

    if (c != NULL && tlsock__uv_server_track(s, c) != 0) {
        tlsock__uv_conn_discard(c); /* no handle yet */
        c = NULL;
    }
    if (c != NULL) {
        uv_tcp_init(s->loop, &c->tcp);
        c->handles = 1;
        c->accepted = true;
        c->origin.server = s;
        s->clients++;
    }
    return c;
}

/* Closes a client's socket with a reset: it was turned away before its handshake began. */
static void reset_fd(int fd)
{
    struct linger now = {.l_onoff = 1, .l_linger = 0};

    setsockopt(fd, SOL_SOCKET, SO_LINGER, &now, sizeof(now));
    close(fd);
}

/* A client accepted by the group's listener, as a socket @p s now owns. */
static void serve_fd(struct tlsock_uv_server *s, int fd)
{
    struct tlsock_uv_conn *c = new_client(s);
    int rc;

    if (c == NULL) {
        reset_fd(fd);
        accept_error(s, TLSOCK_ENOMEM, "out of memory accepting a client");
        return;
    }
    rc = uv_tcp_open(&c->tcp, fd);
    if (rc != 0) {
        close(fd);
        accept_failed(s, c, rc);
        return;
    }
    serve_client(s, c);
}

static void free_handle(uv_handle_t *handle)
{
    free(handle);
}

/*
 * Accepts the waiting client for @p to, a server on another loop. libuv accepts only into a
 * handle of the listener's loop and closes the socket with that handle, so @p to gets a
 * duplicate. False when there is no memory for the handle: then this loop serves the client,
 * which has its own way to turn it away.
 */
static bool hand_over(struct tlsock_uv_server *s, struct tlsock_uv_server *to)
{
    uv_tcp_t *tcp = malloc(sizeof(*tcp));
    uv_os_fd_t fd = -1;
    int dup_fd = -1;
    int rc;

    if (tcp == NULL) {
        return false;
    }
    uv_tcp_init(s->loop, tcp); /* AF_UNSPEC: cannot fail */
    rc = uv_accept((uv_stream_t *)&s->tcp, (uv_stream_t *)tcp);
    if (rc == 0) {
        rc = uv_fileno((uv_handle_t *)tcp, &fd);
    }
    if (rc == 0) {
        dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        rc = dup_fd < 0 ? uv_translate_sys_error(errno) : 0;
    }
    uv_close((uv_handle_t *)tcp, free_handle);
    if (rc != 0) {
        accept_failed(s, NULL, rc);
    } else if (!tlsock__uv_group_give(s, to, dup_fd)) {
        serve_fd(s, dup_fd); /* it left meanwhile, or has a backlog: served here */
    }
    return true;
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
        accept_failed(s, NULL, status);
        return;
    }
    struct tlsock_uv_server *to = tlsock__uv_group_pick(s);
    if (to != s && hand_over(s, to)) {
        return;
    }
    c = new_client(s);
    if (c == NULL) {
        reject_client(s);
        accept_error(s, TLSOCK_ENOMEM, "out of memory accepting a client");
        return;
    }
    rc = uv_accept(listener, (uv_stream_t *)&c->tcp);
    if (rc != 0) {
        accept_failed(s, c, rc);
        return;
    }
    serve_client(s, c);
}

/* The listening loop handed clients to this server. */
static void on_wake(uv_async_t *wake)
{
    struct tlsock_uv_server *s = wake->data;
    int fds[TLSOCK__UV_INBOX_MAX];
    size_t n = tlsock__uv_group_take(s, fds);

    for (size_t i = 0; i < n; i++) {
        if (s->closing) {
            reset_fd(fds[i]); /* closed from a callback: as for its inbox (server_close) */
        } else {
            serve_fd(s, fds[i]);
        }
    }
    tlsock__uv_group_taken(s, n);
}

/* A server with everything but its listener or wake-up handle, from checked options, into
 * *@p out; 0 or TLSOCK_ENOMEM (reported). */
static int server_new(uv_loop_t *loop, struct tlsock_ctx *ctx, const struct tlsock_uv_opts *o,
                      struct tlsock_uv_server **out)
{
    struct tlsock_uv_server *s = calloc(1, sizeof(*s));

    if (s == NULL) {
        return tlsock__fail(NULL, TLSOCK_ENOMEM, "out of memory allocating a server");
    }
    tlsock__ctx_slot_init(&s->ctx, ctx);
    /* The server keeps the loop's shared state while it lives: its clients come and go. */
    s->lp = tlsock__uv_loop_use(loop);
    s->cfg = tlsock__uv_config_new(o);
    if (s->lp == NULL || s->cfg == NULL) {
        goto free_server;
    }
    if (o->initial_data != NULL && o->initial_len > 0) {
        s->initial = malloc(o->initial_len);
        if (s->initial == NULL) {
            goto free_server;
        }
        memcpy(s->initial, o->initial_data, o->initial_len);
        s->initial_len = o->initial_len;
    }
    s->loop = loop;
    /* Only the handshake timeout applies to a server's clients. */
    s->tls_opts = (struct tlsock_opts)TLSOCK_OPTS_INIT;
    s->tls_opts.handshake_timeout_ms = o->handshake_timeout_ms;
    s->on_accept_error = o->on_accept_error;
    s->user = o->user;
    *out = s;
    return 0;
free_server:
    tlsock__fail(NULL, TLSOCK_ENOMEM, "out of memory allocating a server");
    tlsock__ctx_slot_destroy(&s->ctx);
    tlsock__uv_config_unref(s->cfg);
    if (s->lp != NULL) {
        tlsock__uv_loop_unref(s->lp);
    }
    free(s->initial);
    free(s);
    return TLSOCK_ENOMEM;
}

/* Checks what both ways to make a server need; 0 or the reported error. */
static int check_server_args(uv_loop_t *loop, struct tlsock_ctx *ctx,
                             const struct tlsock_uv_opts *opts, struct tlsock_uv_server **out,
                             const char *caller, struct tlsock_uv_opts *o)
{
    int rc;

    tlsock__uv_sigpipe_init();
    rc = tlsock__uv_opts_copy(opts, caller, o);
    if (loop == NULL || ctx == NULL || out == NULL || opts == NULL || o->on_connect == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL,
                            "%s: loop, ctx, opts with on_connect and out are required", caller);
    }
    if (rc == 0) {
        rc = tlsock__server_ctx_ready(ctx, caller);
    }
    return rc;
}

int tlsock_uv_serve(uv_loop_t *loop, struct tlsock_ctx *ctx, const char *host, uint16_t port,
                    int backlog, const struct tlsock_uv_opts *opts, struct tlsock_uv_server **out)
{
    struct tlsock_uv_opts o;
    struct tlsock_uv_server *s = NULL;
    int fd = -1;
    int rc = check_server_args(loop, ctx, opts, out, "tlsock_uv_serve", &o);

    if (rc != 0) {
        return rc;
    }
    rc = server_new(loop, ctx, &o, &s);
    if (rc != 0) {
        return rc;
    }
    if (backlog <= 0) {
        backlog = 128;
    }
    rc = tlsock__listen_socket(host, port, backlog, o.reuseport, &fd);
    /* Cannot fail for AF_UNSPEC; the socket is ours until uv_tcp_open took it. */
    uv_tcp_init(loop, &s->tcp);
    s->tcp.data = s;
    s->listens = true;
    if (rc == 0 && tlsock__uv_group_new(s) != 0) {
        rc = tlsock__fail(NULL, TLSOCK_ENOMEM, "out of memory allocating a server");
        close(fd);
    } else if (rc == 0) {
        rc = uv_tcp_open(&s->tcp, fd);
        if (rc == 0) {
            rc = uv_listen((uv_stream_t *)&s->tcp, backlog, on_connection);
        } else {
            close(fd);
        }
        if (rc != 0) {
            rc = tlsock__fail(NULL, TLSOCK_ESYS, "listen: %s (%s)", uv_strerror(rc),
                              uv_err_name(rc));
        }
    }
    if (rc != 0) {
        /* The handle is registered with the loop: the server is freed from its close callback. */
        tlsock_uv_server_close(s, NULL);
        return rc;
    }
    s->port = tlsock__bound_port(fd);
    *out = s;
    return 0;
}

int tlsock_uv_serve_shared(uv_loop_t *loop, struct tlsock_ctx *ctx, struct tlsock_uv_server *first,
                           const struct tlsock_uv_opts *opts, struct tlsock_uv_server **out)
{
    struct tlsock_uv_opts o;
    struct tlsock_uv_server *s = NULL;
    int rc = check_server_args(loop, ctx, opts, out, "tlsock_uv_serve_shared", &o);

    if (rc == 0 && (first == NULL || !first->listens || first->closing)) {
        rc = tlsock__fail(NULL, TLSOCK_EINVAL,
                          "tlsock_uv_serve_shared: first must be an open server made by "
                          "tlsock_uv_serve()");
    }
    if (rc != 0) {
        return rc;
    }
    rc = server_new(loop, ctx, &o, &s);
    if (rc != 0) {
        return rc;
    }
    /* Cannot fail on an initialised loop (libuv 1.x). */
    uv_async_init(loop, &s->wake, on_wake);
    s->wake.data = s;
    rc = tlsock__uv_group_join(first, s);
    if (rc != 0) {
        rc = tlsock__fail(NULL, rc, "out of memory allocating a server");
        tlsock_uv_server_close(s, NULL);
        return rc;
    }
    s->port = first->port; /* set before first was returned, never changed */
    *out = s;
    return 0;
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
    int fds[TLSOCK__UV_INBOX_MAX];
    size_t n = 0;

    if (server == NULL || server->closing) {
        return;
    }
    server->closing = true;
    server->close_cb = cb;
    if (server->group != NULL) {
        n = tlsock__uv_group_leave(server, fds);
    }
    /* Clients handed over that never started are turned away, as a full backlog would. */
    for (size_t i = 0; i < n; i++) {
        reset_fd(fds[i]);
    }
    uv_close(server->listens ? (uv_handle_t *)&server->tcp : (uv_handle_t *)&server->wake,
             listener_closed);
}

void tlsock_uv_server_abort(struct tlsock_uv_server *server, tlsock_uv_server_close_cb cb)
{
    if (server == NULL || server->aborted) {
        return;
    }
    server->aborted = true;
    tlsock_uv_server_close(server, cb); /* a no-op after an earlier close: its cb stays */
    /* Each waiting client resets itself from the loop (its pump sees the flag): no callback
     * runs within this call. */
    for (size_t i = 0; i < server->nwaiting; i++) {
        tlsock__uv_kick(server->waiting[i]);
    }
}
