/*
 * One tunnelled connection: the client the tunnel accepted and the connection it made to the
 * target for it, each side plaintext (a uv_tcp_t) or TLS (a tlsock_uv_conn).
 *
 * - The client is not read until the target is connected (and its TLS handshake verified), so
 *   nothing has to be buffered meanwhile and a failed target leaves nothing half sent.
 * - Backpressure: a side stops being read while more than TUNNEL_QUEUE_HIGH bytes wait to be
 *   written to the other side, and is read again once that is below TUNNEL_QUEUE_LOW.
 * - Half-close: the end of one side's stream (TCP FIN, or TLS close_notify) is passed on as the
 *   end of the other side's output (shutdown(SHUT_WR) after the queued data, or
 *   tlsock_uv_shutdown(): close_notify and a FIN), and the other direction goes on until it
 *   ends too.
 * - An error on one side closes it at once; the other side gets what was queued for it, then
 *   its end of stream.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tunnel.h"

#define TUNNEL_READ_SIZE  (64 * 1024)
#define TUNNEL_QUEUE_HIGH (256 * 1024)
#define TUNNEL_QUEUE_LOW  (64 * 1024)

struct tunnel_side {
    struct tunnel_pair *pair;
    bool tls;
    uv_tcp_t *tcp;               /* plaintext; freed in its close callback */
    struct tlsock_uv_conn *conn; /* TLS */
    uv_shutdown_t shutdown_req;
    bool paused;     /* not read: the other side's queue is full */
    bool in_done;    /* nothing more will be read from it */
    bool out_ending; /* its output is being ended: shutdown(SHUT_WR) or tlsock_uv_shutdown() */
    bool out_done;   /* plaintext: the shutdown is done */
    bool closing;    /* its handle is being closed */
    uint64_t bytes;  /* read from this side */
};

struct tunnel_pair {
    struct tunnel_loop *owner;
    struct tunnel_pair *prev;
    struct tunnel_pair *next;
    struct tunnel_side client;
    struct tunnel_side target;
    uv_timer_t timer; /* bounds the plaintext connect, then the idle time */
    uv_getaddrinfo_t resolve_req;
    uv_connect_t connect_req;
    struct addrinfo *addrs;     /* the target's addresses (plaintext) */
    struct addrinfo *next_addr; /* the one to try next */
    int connect_err;            /* libuv error of the last address tried */
    uint64_t last_active;       /* uv_now() when data last moved */
    int refs;                   /* handles and requests whose callbacks are still due */
    bool resolving;
    bool finished;
    char peer[CLI_PEER_SIZE];
};

/* A plaintext write and the data it owns. */
struct plain_write {
    uv_write_t req;
    uv_buf_t buf;
};

static void side_input_ended(struct tunnel_side *side);
static void side_failed(struct tunnel_side *side, int code, const char *detail);

static struct tunnel_side *other_side(struct tunnel_side *side)
{
    struct tunnel_pair *pair = side->pair;

    return side == &pair->client ? &pair->target : &pair->client;
}

static const char *side_name(struct tunnel_side *side)
{
    struct tunnel_pair *pair = side->pair;

    return side == &pair->client ? "client" : pair->owner->settings->target;
}

static void log_pair_error(struct tunnel_pair *pair, const char *what, int code, const char *detail)
{
    char where[CLI_PEER_SIZE + CLI_HOST_MAX + 64];

    snprintf(where, sizeof(where), "%s: %s", pair->peer, what);
    cli_error(where, code, detail);
}

static void pair_release(struct tunnel_pair *pair)
{
    struct tunnel_loop *owner = pair->owner;

    pair->refs--;
    if (pair->refs > 0) {
        goto done;
    }
    if (owner->settings->verbose) {
        fprintf(stderr, "tlsock: %s: closed (%llu bytes to %s, %llu bytes back)\n", pair->peer,
                (unsigned long long)pair->client.bytes, owner->settings->target,
                (unsigned long long)pair->target.bytes);
    }
    if (pair->prev != NULL) {
        pair->prev->next = pair->next;
    } else {
        owner->pairs = pair->next;
    }
    if (pair->next != NULL) {
        pair->next->prev = pair->prev;
    }
    uv_freeaddrinfo(pair->addrs);
    cli_loop_conn_closed(owner->loop);
    free(pair);
done:
    return;
}

static void on_tcp_closed(uv_handle_t *handle)
{
    struct tunnel_side *side = handle->data;
    struct tunnel_pair *pair = side->pair;

    free(handle);
    pair_release(pair);
}

void tunnel_free_handle(uv_handle_t *handle)
{
    free(handle);
}

static void on_timer_closed(uv_handle_t *handle)
{
    pair_release(handle->data);
}

/* Closes the side's handle; its close callback releases the pair. */
static void side_close(struct tunnel_side *side)
{
    if (!side->closing) {
        side->closing = true;
        side->in_done = true;
        if (side->tls && side->conn != NULL) {
            /* Sends what is queued, then close_notify. */
            tlsock_uv_close(side->conn);
        } else if (!side->tls && side->tcp != NULL) {
            /* (NULL: the last connect attempt failed and its handle is closed already.) */
            uv_close((uv_handle_t *)side->tcp, on_tcp_closed);
        }
    }
}

/* Closes everything now; what is queued for a plaintext side is dropped. */
static void pair_finish(struct tunnel_pair *pair)
{
    if (!pair->finished) {
        pair->finished = true;
        if (pair->resolving) {
            uv_cancel((uv_req_t *)&pair->resolve_req);
        }
        uv_timer_stop(&pair->timer);
        uv_close((uv_handle_t *)&pair->timer, on_timer_closed);
        side_close(&pair->client);
        side_close(&pair->target);
    }
}

/*
 * A side is done when nothing more will go either way through it. A TLS side's output is done
 * once its shutdown is asked for: closing it sends what is still queued.
 */
static bool side_done(const struct tunnel_side *side)
{
    return side->closing || (side->in_done && (side->tls ? side->out_ending : side->out_done));
}

static void check_finished(struct tunnel_pair *pair)
{
    if (side_done(&pair->client) && side_done(&pair->target)) {
        pair_finish(pair);
    }
}

static size_t side_queue(const struct tunnel_side *side)
{
    return side->tls ? tlsock_uv_conn_write_queue_size(side->conn) : side->tcp->write_queue_size;
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)handle;
    (void)suggested;
    buf->base = malloc(TUNNEL_READ_SIZE);
    buf->len = buf->base != NULL ? TUNNEL_READ_SIZE : 0;
}

static void on_plain_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void side_read_start(struct tunnel_side *side)
{
    int err = 0;

    if (side->in_done || side->closing || side->paused) {
        /* Not to be read (now). */
    } else if (side->tls) {
        err = tlsock_uv_read_start(side->conn);
        if (err != 0) {
            side_failed(side, err, tlsock_uv_conn_errmsg(side->conn));
        }
    } else {
        err = uv_read_start((uv_stream_t *)side->tcp, on_alloc, on_plain_read);
        if (err != 0) {
            side_failed(side, TLSOCK_ESYS, uv_strerror(err));
        }
    }
}

static void side_read_stop(struct tunnel_side *side)
{
    if (side->closing) {
        /* Closing stops reading. */
    } else if (side->tls) {
        tlsock_uv_read_stop(side->conn);
    } else {
        uv_read_stop((uv_stream_t *)side->tcp);
    }
}

/* A write to @p side completed: a paused other side may be read again. */
static void side_written(struct tunnel_side *side)
{
    struct tunnel_side *from = other_side(side);

    if (from->paused && !side->closing && side_queue(side) <= TUNNEL_QUEUE_LOW) {
        from->paused = false;
        side_read_start(from);
    }
}

static void on_plain_write(uv_write_t *req, int status)
{
    struct plain_write *w = (struct plain_write *)req;
    struct tunnel_side *side = req->handle->data;

    free(w->buf.base);
    free(w);
    if (status == UV_ECANCELED || side->closing) {
        /* Dropped by a close. */
    } else if (status != 0) {
        side_failed(side, TLSOCK_ESYS, uv_strerror(status));
    } else {
        side_written(side);
    }
}

/* Writes @p data (malloc()ed, taken) to @p to; the data came from its other side. */
static void side_write(struct tunnel_side *to, char *data, size_t len)
{
    struct tunnel_side *from = other_side(to);
    struct plain_write *w = NULL;
    int err = 0;

    if (to->closing || to->out_ending) {
        free(data);
        goto done;
    }
    if (to->tls) {
        err = tlsock_uv_write(to->conn, data, len, data);
        if (err != 0) {
            free(data);
            side_failed(to, err, tlsock_uv_conn_errmsg(to->conn));
            goto done;
        }
    } else {
        w = malloc(sizeof(*w));
        err = w == NULL ? UV_ENOMEM : 0;
        if (err == 0) {
            w->buf = uv_buf_init(data, (unsigned)len);
            err = uv_write(&w->req, (uv_stream_t *)to->tcp, &w->buf, 1, on_plain_write);
        }
        if (err != 0) {
            free(data);
            free(w);
            side_failed(to, TLSOCK_ESYS, uv_strerror(err));
            goto done;
        }
    }
    if (!from->paused && side_queue(to) > TUNNEL_QUEUE_HIGH) {
        /* The receiver is slower than the sender: let TCP slow the sender down. */
        from->paused = true;
        side_read_stop(from);
    }
done:
    return;
}

static void forward(struct tunnel_side *from, char *data, size_t len)
{
    struct tunnel_pair *pair = from->pair;

    from->bytes += len;
    pair->last_active = uv_now(pair->timer.loop);
    side_write(other_side(from), data, len);
}

static void on_plain_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct tunnel_side *side = stream->data;
    char *data = NULL;

    if (nread > 0) {
        /* The buffer travels on with the write; a small read should not pin 64 KiB. */
        data = realloc(buf->base, (size_t)nread);
        forward(side, data != NULL ? data : buf->base, (size_t)nread);
    } else {
        free(buf->base);
        if (nread == UV_EOF) {
            side_input_ended(side);
        } else if (nread < 0) {
            side_failed(side, TLSOCK_ESYS, uv_strerror((int)nread));
        }
    }
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct tunnel_side *side = req->data;

    if (status != UV_ECANCELED) {
        side->out_done = true;
        check_finished(side->pair);
    }
}

/* Nothing more will be sent to @p side: end its output once what is queued has gone. */
static void side_end_output(struct tunnel_side *side)
{
    if (side->out_ending || side->closing) {
        /* Already ending. */
    } else if (side->tls) {
        side->out_ending = true;
        /* close_notify and a FIN after the queued data; its answer is still read. */
        if (tlsock_uv_shutdown(side->conn) != 0) {
            /* Dead or not connected: closing is all that is left, and ends both ways. */
            side_close(side);
            side_end_output(other_side(side));
        }
    } else {
        side->out_ending = true;
        side->shutdown_req.data = side;
        if (uv_shutdown(&side->shutdown_req, (uv_stream_t *)side->tcp, on_shutdown) != 0) {
            /* Not connected any more: there is nothing left to end. */
            side->out_done = true;
        }
    }
}

/* The side's stream ended cleanly (FIN, close_notify): pass the end on. */
static void side_input_ended(struct tunnel_side *side)
{
    if (!side->in_done) {
        side->in_done = true;
        side_read_stop(side);
    }
    side_end_output(other_side(side));
    check_finished(side->pair);
}

/* The side failed: it is closed now, and the other side ends after its queued data. */
static void side_failed(struct tunnel_side *side, int code, const char *detail)
{
    struct tunnel_side *other = other_side(side);

    log_pair_error(side->pair, side_name(side), code, detail);
    side_close(side);
    if (!other->in_done) {
        other->in_done = true;
        side_read_stop(other);
    }
    side_end_output(other);
    check_finished(side->pair);
}

static void on_idle_timer(uv_timer_t *timer)
{
    struct tunnel_pair *pair = timer->data;
    int idle_ms = pair->owner->settings->idle_timeout_ms;
    uint64_t since = uv_now(timer->loop) - pair->last_active;

    if (since < (uint64_t)idle_ms) {
        /* Data moved since the timer was set: wait for the rest of the time. */
        uv_timer_start(timer, on_idle_timer, (uint64_t)idle_ms - since, 0);
    } else {
        if (pair->owner->settings->verbose) {
            fprintf(stderr, "tlsock: %s: nothing moved for %d ms (--idle-timeout); closing\n",
                    pair->peer, idle_ms);
        }
        pair_finish(pair);
    }
}

/* The target is connected (and verified): forward both ways. */
static void target_ready(struct tunnel_pair *pair)
{
    const struct tunnel_settings *settings = pair->owner->settings;

    uv_timer_stop(&pair->timer);
    pair->last_active = uv_now(pair->timer.loop);
    if (settings->idle_timeout_ms > 0) {
        uv_timer_start(&pair->timer, on_idle_timer, (uint64_t)settings->idle_timeout_ms, 0);
    }
    if (settings->verbose) {
        fprintf(stderr, "tlsock: %s: connected to %s\n", pair->peer, settings->target);
    }
    side_read_start(&pair->client);
    side_read_start(&pair->target);
}

static void connect_failed(struct tunnel_pair *pair, int code, const char *detail)
{
    char what[CLI_HOST_MAX + 32];

    snprintf(what, sizeof(what), "connect to %s", pair->owner->settings->target);
    log_pair_error(pair, what, code, detail);
    /* The client has sent nothing through yet: it is closed (with close_notify if TLS). */
    pair_finish(pair);
}

/* TLS side callbacks, shared by the accepted client and the connection to the target. */

static void on_tls_read(struct tlsock_uv_conn *conn, const void *data, size_t len)
{
    struct tunnel_side *side = tlsock_uv_conn_user(conn);
    char *copy = NULL;

    if (side == NULL || side->closing) {
        goto done;
    }
    /* @p data is valid only during this call; the write needs it until it completes. */
    copy = malloc(len);
    if (copy == NULL) {
        side_failed(side, TLSOCK_ENOMEM, NULL);
        goto done;
    }
    memcpy(copy, data, len);
    forward(side, copy, len);
done:
    return;
}

static void on_tls_event(struct tlsock_uv_conn *conn, int code)
{
    struct tunnel_side *side = tlsock_uv_conn_user(conn);

    if (side == NULL || side->closing) {
        /* Refused, or closing. */
    } else if (code == TLSOCK_ECLOSED) {
        /* Nothing more comes from this side; writing to it goes on. */
        side_input_ended(side);
    } else {
        /*
         * The connection is dead, also after TLSOCK_ETRUNCATED (common: many peers skip
         * close_notify, but the data may have been cut short): logged, and the other side
         * gets what was queued for it, then a FIN or close_notify.
         */
        side_failed(side, code, tlsock_uv_conn_errmsg(conn));
    }
}

static void on_tls_write(struct tlsock_uv_conn *conn, void *write_arg, int status)
{
    struct tunnel_side *side = tlsock_uv_conn_user(conn);

    free(write_arg);
    if (side == NULL || status == TLSOCK_ECANCELED || side->closing) {
        /* Dropped by a close. */
    } else if (status != 0) {
        side_failed(side, status, tlsock_uv_conn_errmsg(conn));
    } else {
        side_written(side);
    }
}

static void on_tls_close(struct tlsock_uv_conn *conn)
{
    struct tunnel_side *side = tlsock_uv_conn_user(conn);

    if (side != NULL) {
        pair_release(side->pair);
    }
}

static void on_target_tls_connect(struct tlsock_uv_conn *conn, int status)
{
    struct tunnel_side *side = tlsock_uv_conn_user(conn);
    struct tunnel_pair *pair = side->pair;

    if (pair->finished) {
        /* Closed while connecting: status is TLSOCK_ECANCELED. */
    } else if (status != 0) {
        connect_failed(pair, status, tlsock_uv_conn_errmsg(conn));
    } else {
        target_ready(pair);
    }
}

static void set_tls_callbacks(struct tlsock_uv_opts *opts)
{
    opts->on_read = on_tls_read;
    opts->on_event = on_tls_event;
    opts->on_write = on_tls_write;
    opts->on_close = on_tls_close;
}

/* Plaintext connect to the target: each address in turn, all within --connect-timeout. */

static void try_next_address(struct tunnel_pair *pair);

static void on_plain_connect(uv_connect_t *req, int status)
{
    struct tunnel_side *side = req->handle->data;
    struct tunnel_pair *pair = side->pair;

    if (status == UV_ECANCELED || pair->finished) {
        /* Closed while connecting. */
    } else if (status != 0) {
        pair->connect_err = status;
        uv_close((uv_handle_t *)side->tcp, on_tcp_closed);
        side->tcp = NULL;
        try_next_address(pair);
    } else {
        target_ready(pair);
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
            uv_close((uv_handle_t *)side->tcp, on_tcp_closed);
            side->tcp = NULL;
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
    if (pair->finished) {
        uv_freeaddrinfo(res);
    } else if (status != 0) {
        connect_failed(pair, TLSOCK_ERESOLVE, uv_strerror(status));
    } else {
        pair->addrs = res;
        pair->next_addr = res;
        pair->connect_err = UV_EADDRNOTAVAIL;
        try_next_address(pair);
    }
    pair_release(pair);
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

    if (settings->client_ctx != NULL) {
        pair->target.tls = true;
        opts.servername = settings->servername;
        opts.connect_timeout_ms = settings->connect_timeout_ms;
        opts.handshake_timeout_ms = settings->connect_timeout_ms;
        opts.on_connect = on_target_tls_connect;
        set_tls_callbacks(&opts);
        opts.user = &pair->target;
        err = tlsock_uv_connect(uv, settings->client_ctx, settings->connect_host,
                                settings->connect_port, &opts, &pair->target.conn);
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

/* A new pair for a client just accepted on @p tl; NULL when out of memory (reported). */
static struct tunnel_pair *pair_new(struct tunnel_loop *tl)
{
    struct tunnel_pair *pair = calloc(1, sizeof(*pair));

    if (pair == NULL) {
        cli_error("refusing a client", TLSOCK_ENOMEM, NULL);
        goto done;
    }
    pair->owner = tl;
    pair->client.pair = pair;
    pair->target.pair = pair;
    uv_timer_init(&tl->loop->uv, &pair->timer);
    pair->timer.data = pair;
    pair->refs = 1; /* the timer */
    pair->next = tl->pairs;
    if (tl->pairs != NULL) {
        tl->pairs->prev = pair;
    }
    tl->pairs = pair;
    cli_loop_conn_opened(tl->loop);
done:
    return pair;
}

void tunnel_start_plain(struct tunnel_loop *tl, uv_tcp_t *tcp)
{
    struct tunnel_pair *pair = pair_new(tl);
    struct sockaddr_storage ss;
    int sslen = sizeof(ss);

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

    if (status == 0 && !cli_loop_stopping(tl->loop)) {
        pair = pair_new(tl);
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
    set_tls_callbacks(opts);
    opts->user = tl;
}

void tunnel_close_all(struct cli_loop *loop)
{
    struct tunnel_loop *tl = loop->user;

    /* Close callbacks come later, from the loop: the list stays as it is here. */
    for (struct tunnel_pair *pair = tl->pairs; pair != NULL; pair = pair->next) {
        pair_finish(pair);
    }
}
