/*
 * A pair's start: the client is accepted (plaintext from cmd_tunnel.c's listener, or TLS from
 * the tlsock_uv_server once its handshake succeeded), then the target is connected for it.
 * The client is not read until the target is connected (and its TLS handshake verified), so
 * nothing has to be buffered meanwhile and a failed target leaves nothing half sent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"
#include "tunnel_pair.h"

void tunnel_free_handle(uv_handle_t *handle)
{
    free(handle);
}

static void connect_failed(struct tunnel_pair *pair, int code, const char *detail)
{
    char what[CLI_HOST_MAX + 32];

    snprintf(what, sizeof(what), "connect to %s", pair->owner->settings->target);
    tunnel_pair_log_error(pair, what, code, detail);
    /* The client has sent nothing through yet: it is closed (with close_notify if TLS). */
    tunnel_pair_finish(pair);
}

struct tlsock_ctx *tunnel_target_ctx_get(struct tunnel_target_ctx *t)
{
    struct tlsock_ctx *ctx = NULL;

    pthread_mutex_lock(&t->lock);
    ctx = t->ctx != NULL ? tlsock_ctx_ref(t->ctx) : NULL;
    pthread_mutex_unlock(&t->lock);
    return ctx;
}

static void on_target_tls_connect(struct tlsock_uv_conn *conn, int status)
{
    struct tunnel_side *side = tlsock_uv_conn_user(conn);
    struct tunnel_pair *pair = side->pair;

    if (pair->phase != PAIR_CONNECTING) {
        /* Closed while connecting: status is TLSOCK_ECANCELED. */
    } else if (status != 0) {
        connect_failed(pair, status, tlsock_uv_conn_errmsg(conn));
    } else {
        tunnel_pair_forward(pair);
    }
}

/* Plaintext connect to the target: each address in turn, all within --connect-timeout. */

static void try_next_address(struct tunnel_pair *pair);

static void on_plain_connect(uv_connect_t *req, int status)
{
    struct tunnel_side *side = req->handle->data;
    struct tunnel_pair *pair = side->pair;

    if (status == UV_ECANCELED || pair->phase != PAIR_CONNECTING) {
        /* Closed while connecting. */
    } else if (status != 0) {
        pair->connect_err = status;
        tunnel_side_drop_tcp(side);
        try_next_address(pair);
    } else {
        tunnel_pair_forward(pair);
    }
}

static void try_next_address(struct tunnel_pair *pair)
{
    struct tunnel_side *side = &pair->target;
    uv_loop_t *uv = pair->timer.loop;
    struct addrinfo *ai = NULL;
    bool connecting = false;
    int err = 0;

    while (pair->next_addr != NULL && !connecting) {
        ai = pair->next_addr;
        pair->next_addr = ai->ai_next;
        side->tcp = malloc(sizeof(*side->tcp));
        if (side->tcp == NULL) {
            pair->connect_err = UV_ENOMEM;
            break;
        }
        uv_tcp_init(uv, side->tcp);
        side->tcp->data = side;
        pair->refs++;
        err = uv_tcp_connect(&pair->connect_req, side->tcp, ai->ai_addr, on_plain_connect);
        if (err == 0) {
            connecting = true;
        } else {
            pair->connect_err = err;
            tunnel_side_drop_tcp(side);
        }
    }
    if (!connecting) {
        connect_failed(pair, TLSOCK_ESYS, uv_strerror(pair->connect_err));
    }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct tunnel_pair *pair = req->data;

    pair->resolving = false;
    if (pair->phase != PAIR_CONNECTING) {
        uv_freeaddrinfo(res);
    } else if (status != 0) {
        connect_failed(pair, TLSOCK_ERESOLVE, uv_strerror(status));
    } else {
        pair->addrs = res;
        pair->next_addr = res;
        pair->connect_err = UV_EADDRNOTAVAIL;
        try_next_address(pair);
    }
    tunnel_pair_release(pair);
}

static void on_connect_timeout(uv_timer_t *timer)
{
    struct tunnel_pair *pair = timer->data;
    char detail[96];

    snprintf(detail, sizeof(detail), "not connected within %d ms (--connect-timeout)",
             pair->owner->settings->connect_timeout_ms);
    connect_failed(pair, TLSOCK_ETIMEDOUT, detail);
}

static void connect_target(struct tunnel_pair *pair)
{
    const struct tunnel_settings *settings = pair->owner->settings;
    uv_loop_t *uv = pair->timer.loop;
    struct tlsock_uv_opts opts = TLSOCK_UV_OPTS_INIT;
    struct addrinfo hints;
    char port[8];
    int err = 0;

    if (settings->tls_connect) {
        struct tlsock_ctx *ctx = tunnel_target_ctx_get(settings->client);
        pair->target.tls = true;
        opts.servername = settings->servername;
        opts.connect_timeout_ms = settings->connect_timeout_ms;
        opts.handshake_timeout_ms = settings->connect_timeout_ms;
        opts.on_connect = on_target_tls_connect;
        tunnel_side_tls_callbacks(&opts);
        opts.user = &pair->target;
        /* The connection holds a reference of its own. */
        err = tlsock_uv_connect(uv, ctx, settings->connect_host, settings->connect_port, &opts,
                                &pair->target.conn);
        tlsock_ctx_free(ctx);
        if (err != 0) {
            pair->target.conn = NULL;
            connect_failed(pair, err, tlsock_errmsg());
        } else {
            pair->refs++;
        }
        goto done;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
    snprintf(port, sizeof(port), "%u", (unsigned)settings->connect_port);
    pair->resolve_req.data = pair;
    err = uv_getaddrinfo(uv, &pair->resolve_req, on_resolved, settings->connect_host, port, &hints);
    if (err != 0) {
        connect_failed(pair, TLSOCK_ERESOLVE, uv_strerror(err));
        goto done;
    }
    pair->refs++;
    pair->resolving = true;
    uv_timer_start(&pair->timer, on_connect_timeout, (uint64_t)settings->connect_timeout_ms, 0);
done:
    return;
}

void tunnel_start_plain(struct tunnel_loop *tl, uv_tcp_t *tcp)
{
    struct tunnel_pair *pair = tunnel_pair_new(tl);
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);

    cli_stats_accepted(false);
    if (pair == NULL) {
        uv_close((uv_handle_t *)tcp, tunnel_free_handle);
        goto done;
    }
    pair->client.tcp = tcp;
    tcp->data = &pair->client;
    pair->refs++;
    memset(&ss, 0, sizeof(ss));
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &sslen) == 0) {
        cli_format_sockaddr((const struct sockaddr *)&ss, pair->peer);
    } else {
        cli_name_client(pair->peer);
    }
    connect_target(pair);
done:
    return;
}

static void log_session(struct tunnel_pair *pair, struct tlsock_uv_conn *conn)
{
    const struct tlsock_info *info = NULL;

    if (tlsock_conn_info(tlsock_uv_conn_tls(conn), &info) == 0) {
        fprintf(stderr, "tlsock: %s: %s %s sni=%s client=%s\n", pair->peer, info->version,
                info->cipher, info->servername[0] != '\0' ? info->servername : "-",
                info->peer_subject[0] != '\0' ? info->peer_subject : "-");
    }
}

/* A client not taken (a stop, no memory): closed without a side, which the callbacks ignore. */
static void refuse(struct tlsock_uv_conn *conn)
{
    tlsock_uv_conn_set_user(conn, NULL);
    tlsock_uv_close(conn);
}

/* A TLS client whose handshake succeeded (the server calls this only with 0). */
static void on_client_tls_connect(struct tlsock_uv_conn *conn, int status)
{
    struct tunnel_loop *tl = tlsock_uv_conn_user(conn);
    struct tunnel_pair *pair = NULL;

    if (status == 0) {
        cli_stats_accepted(true);
    }
    if (status == 0 && !cli_loop_stopping(tl->loop)) {
        pair = tunnel_pair_new(tl);
    }
    if (pair == NULL) {
        refuse(conn);
        goto done;
    }
    /* Nothing is read from the client until the target is there to take it. */
    tlsock_uv_read_stop(conn);
    pair->client.tls = true;
    pair->client.conn = conn;
    tlsock_uv_conn_set_user(conn, &pair->client);
    pair->refs++;
    cli_peer_name(conn, pair->peer);
    if (tl->settings->verbose) {
        log_session(pair, conn);
    }
    connect_target(pair);
done:
    return;
}

static void on_client_tls_error(struct tlsock_uv_server *server, int code, const char *message)
{
    struct tunnel_loop *tl = tlsock_uv_server_user(server);

    cli_report_accept_error(code, message, tl->settings->handshake_timeout_ms);
}

void tunnel_accept_opts(struct tunnel_loop *tl, struct tlsock_uv_opts *opts)
{
    opts->handshake_timeout_ms = tl->settings->handshake_timeout_ms;
    opts->on_connect = on_client_tls_connect;
    opts->on_accept_error = on_client_tls_error;
    tunnel_side_tls_callbacks(opts);
    opts->user = tl;
}
