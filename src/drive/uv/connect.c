/*
 * tlsock_uv_connect(): the name is resolved on libuv's thread pool, each address is tried in
 * turn with uv_tcp_connect(), and the handshake then runs on the loop. opts.connect_timeout_ms
 * bounds the lookup and every attempt together, as tlsock_connect()'s deadline does.
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uv_int.h"

static void try_next(struct tlsock_uv_conn *c);
static void retry_closed(uv_handle_t *handle);

/* The handshake starts: the client speaks first. */
static void connected(struct tlsock_uv_conn *c)
{
    uv_freeaddrinfo(c->origin.connecting->addrs);
    free(c->origin.connecting);
    c->origin.connecting = NULL;
    /* TLS writes whole records; Nagle would only delay handshake flights. */
    (void)uv_tcp_nodelay(&c->tcp, 1);
    tlsock__uv_start_tls(c);
    tlsock__uv_pump(c, true);
}

static void connect_cb(uv_connect_t *req, int status)
{
    struct tlsock_uv_conn *c = req->data;

    if (status == UV_ECANCELED || c->state != TLSOCK__UV_CONNECTING) {
        return; /* closed, or timed out: the application closes it */
    }
    if (status < 0) {
        /* A failed attempt leaves the handle unusable: close it and start afresh. */
        c->origin.connecting->last_error = status;
        uv_close((uv_handle_t *)&c->tcp, retry_closed);
        return;
    }
    connected(c);
}

/* The tcp handle of a failed attempt is closed: the next address gets a fresh one. */
static void retry_closed(uv_handle_t *handle)
{
    struct tlsock_uv_conn *c = tlsock__uv_conn_of(handle);

    c->handles--;
    if (c->state != TLSOCK__UV_CONNECTING) {
        tlsock__uv_maybe_finish(c); /* closed (or timed out) meanwhile */
        return;
    }
    uv_tcp_init(c->lp->loop, &c->tcp); /* AF_UNSPEC: cannot fail */
    c->handles++;
    try_next(c);
    tlsock__uv_settle(c);
}

static void try_next(struct tlsock_uv_conn *c)
{
    struct tlsock__uv_connecting *cn = c->origin.connecting;

    if (cn->next != NULL) {
        const struct addrinfo *ai = cn->next;
        cn->next = ai->ai_next;
        cn->req.data = c;
        int rc = uv_tcp_connect(&cn->req, &c->tcp, ai->ai_addr, connect_cb);
        if (rc != 0) {
            cn->last_error = rc;
            uv_close((uv_handle_t *)&c->tcp, retry_closed);
        }
        return;
    }
    int err = cn->last_error != 0 ? cn->last_error : UV_EADDRNOTAVAIL;
    tlsock__uv_fail(c, TLSOCK_ESYS, "%s port %u: connect: %s (%s)", cn->host, (unsigned)cn->port,
                    uv_strerror(err), uv_err_name(err));
    tlsock__uv_report(c, TLSOCK_ESYS);
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct tlsock_uv_conn *c = req->data;
    struct tlsock__uv_connecting *cn = c->origin.connecting;

    cn->gai_pending = false;
    if (c->state != TLSOCK__UV_RESOLVING) {
        uv_freeaddrinfo(res); /* closed, or timed out */
        tlsock__uv_maybe_finish(c);
        return;
    }
    if (status < 0 || res == NULL) {
        uv_freeaddrinfo(res);
        tlsock__uv_fail(c, TLSOCK_ERESOLVE, "cannot resolve %s: %s", cn->host,
                        status < 0 ? uv_strerror(status) : "no address");
        tlsock__uv_report(c, TLSOCK_ERESOLVE);
        tlsock__uv_settle(c);
        return;
    }
    cn->addrs = res;
    cn->next = res;
    tlsock__uv_enter(c, TLSOCK__UV_CONNECTING);
    try_next(c);
    tlsock__uv_settle(c);
}

int tlsock_uv_connect(uv_loop_t *loop, struct tlsock_ctx *ctx, const char *host, uint16_t port,
                      const struct tlsock_uv_opts *opts, struct tlsock_uv_conn **out)
{
    struct tlsock_uv_opts o;
    struct tlsock__uv_config *cfg = NULL;
    struct tlsock_conn *tls = NULL;
    struct tlsock_uv_conn *c = NULL;
    struct tlsock__uv_connecting *cn = NULL;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    char service[8];
    int rc;

    tlsock__uv_sigpipe_init();
    rc = tlsock__uv_opts_copy(opts, "tlsock_uv_connect", &o);
    if (loop == NULL || ctx == NULL || host == NULL || out == NULL || opts == NULL ||
        o.on_connect == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL,
                            "tlsock_uv_connect: loop, ctx, host, opts with on_connect and out are "
                            "required");
    }
    if (rc != 0) {
        return rc;
    }
    if (tlsock__ctx_role(ctx) != TLSOCK_CLIENT) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "tlsock_uv_connect needs a client context");
    }
    const struct tlsock__conn_setup setup = {
        .kind = TLSOCK__TRANSPORT_MEMORY,
        .fd = -1,
        .host = host,
        .port = port,
    };
    struct tlsock_opts tls_opts = TLSOCK_OPTS_INIT;
    tls_opts.servername = o.servername;
    tls_opts.verify_name = o.verify_name;
    tls_opts.handshake_timeout_ms = o.handshake_timeout_ms;
    rc = tlsock__conn_new(ctx, &setup, &tls_opts, &tls);
    if (rc != 0) {
        return rc;
    }
    cfg = tlsock__uv_config_new(&o);
    c = cfg != NULL ? tlsock__uv_conn_alloc(loop, cfg, o.user) : NULL;
    tlsock__uv_config_unref(cfg); /* the connection holds it */
    cn = calloc(1, sizeof(*cn) + strlen(host) + 1);
    if (c == NULL || cn == NULL) {
        rc = tlsock__fail(NULL, TLSOCK_ENOMEM, "out of memory allocating a connection");
        goto fail;
    }
    c->tls = tls;
    c->origin.connecting = cn;
    strcpy(cn->host, host);
    cn->port = port;
    if (o.initial_data != NULL && o.initial_len > 0) {
        rc = tlsock__uv_queue_initial(c, o.initial_data, o.initial_len, true);
        if (rc != 0) {
            rc = tlsock__fail(NULL, rc, "out of memory copying initial data");
            goto fail;
        }
    }
    snprintf(service, sizeof(service), "%u", (unsigned)port);
    hints.ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV;
    if (tlsock__is_ip_literal(host)) {
        /* AI_ADDRCONFIG would refuse ::1 on a host with only loopback IPv6. */
        hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    }
    cn->gai.data = c;
    /* The lookup goes first: it is the only step that can fail before a handle exists. */
    rc = uv_getaddrinfo(loop, &cn->gai, gai_cb, host, service, &hints);
    if (rc != 0) {
        rc = tlsock__fail(NULL, rc == UV_ENOMEM ? TLSOCK_ENOMEM : TLSOCK_ERESOLVE,
                          "cannot resolve %s: %s", host, uv_strerror(rc));
        goto fail;
    }
    cn->gai_pending = true;
    uv_tcp_init(loop, &c->tcp); /* AF_UNSPEC: cannot fail */
    c->handles = 1;
    tlsock__uv_enter(c, TLSOCK__UV_RESOLVING);
    if (o.connect_timeout_ms > 0) {
        uv_update_time(loop); /* the loop's clock is cached: the deadline starts from now */
        c->until = uv_now(loop) + (uint64_t)o.connect_timeout_ms;
    }
    tlsock__uv_arm(c);
    *out = c;
    return 0;
fail:
    if (c != NULL) {
        c->origin.connecting = NULL;
        tlsock__uv_conn_discard(c);
    }
    free(cn);
    tlsock__conn_free(tls);
    return rc;
}
