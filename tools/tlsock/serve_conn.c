/*
 * One server connection on a loop, from the end of its handshake to its close, with logging.
 * Errors stay with the connection: the server logs them and goes on. Clients whose handshake
 * fails never get here; tlsock reports them to on_accept_error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"
#include "stats.h"

#define IDLE_TIMEOUT_MS 60000

static void log_session(struct serve_conn *sc)
{
    const struct tlsock_info *info = NULL;

    if (tlsock_conn_info(tlsock_uv_conn_tls(sc->uv), &info) == 0) {
        fprintf(stderr, "tlsock: %s: %s %s alpn=%s sni=%s client=%s\n", sc->peer, info->version,
                info->cipher, info->alpn[0] != '\0' ? info->alpn : "-",
                info->servername[0] != '\0' ? info->servername : "-",
                info->peer_subject[0] != '\0' ? info->peer_subject : "-");
    }
}

void serve_conn_log_error(struct serve_conn *sc, const char *what, int err)
{
    char where[CLI_PEER_SIZE + 32];
    const char *detail = tlsock_uv_conn_errmsg(sc->uv);

    if (!cli_stats_conn_error(err, detail)) {
        return; /* counted, and said in a later line */
    }
    snprintf(where, sizeof(where), "%s: %s", sc->peer, what);
    cli_error(where, err, detail);
}

/* A client we do not take (a stop, or --once already has its connection): closed at once. */
static void refuse(struct tlsock_uv_conn *conn)
{
    tlsock_uv_conn_set_user(conn, NULL);
    tlsock_uv_close(conn);
}

static void link_conn(struct serve_loop *owner, struct serve_conn *sc)
{
    sc->next = owner->conns;
    if (owner->conns != NULL) {
        owner->conns->prev = sc;
    }
    owner->conns = sc;
    if (owner->loop != NULL) {
        cli_loop_conn_opened(owner->loop);
    }
}

static void unlink_conn(struct serve_loop *owner, struct serve_conn *sc)
{
    if (sc->prev != NULL) {
        sc->prev->next = sc->next;
    } else {
        owner->conns = sc->next;
    }
    if (sc->next != NULL) {
        sc->next->prev = sc->prev;
    }
    if (owner->loop != NULL) {
        cli_loop_conn_closed(owner->loop);
    }
}

/* The server calls this only for clients whose handshake succeeded (status 0). */
static void on_connect(struct tlsock_uv_conn *conn, int status)
{
    struct serve_loop *owner = tlsock_uv_conn_user(conn);
    const struct serve_settings *settings = owner->settings;
    struct serve_conn *sc = NULL;
    size_t head_size = settings->mode == SERVE_HTTP ? SERVE_HTTP_HEAD_MAX : 0;

    if (status == 0) {
        cli_stats_accepted(true);
    }
    if (status != 0 || owner->once_taken ||
        (owner->loop != NULL && cli_loop_stopping(owner->loop))) {
        refuse(conn);
        goto done;
    }
    sc = calloc(1, sizeof(*sc) + head_size);
    if (sc == NULL) {
        cli_error("refusing a connection", TLSOCK_ENOMEM, NULL);
        refuse(conn);
        goto done;
    }
    sc->owner = owner;
    sc->uv = conn;
    cli_peer_name(conn, sc->peer);
    tlsock_uv_conn_set_user(conn, sc);
    link_conn(owner, sc);
    if (settings->once) {
        /* The outcome of this connection is the command's: accept no other. */
        owner->once_taken = true;
        tlsock_uv_server_close(owner->server, NULL);
    }
    if (settings->verbose) {
        fprintf(stderr, "tlsock: %s: connected\n", sc->peer);
        log_session(sc);
    }
done:
    return;
}

static void on_read(struct tlsock_uv_conn *conn, const void *data, size_t len)
{
    struct serve_conn *sc = tlsock_uv_conn_user(conn);

    cli_stats_bytes(true, len);
    if (sc == NULL || sc->closing) {
        /* Refused, or ending: nothing more is done with its data. */
    } else if (sc->owner->settings->mode == SERVE_HTTP) {
        serve_http_data(sc, data, len);
    } else {
        serve_echo_data(sc, data, len);
    }
}

static void on_event(struct tlsock_uv_conn *conn, int code)
{
    struct serve_conn *sc = tlsock_uv_conn_user(conn);

    if (sc == NULL || sc->closing) {
        /* Refused, or already ending. */
    } else if (sc->owner->settings->mode == SERVE_HTTP) {
        serve_http_event(sc, code);
    } else {
        serve_echo_event(sc, code);
    }
}

static void on_write(struct tlsock_uv_conn *conn, void *write_arg, int status)
{
    struct serve_conn *sc = tlsock_uv_conn_user(conn);

    free(write_arg);
    if (sc == NULL || sc->closing) {
        /* TLSOCK_ECANCELED for what was still queued: expected. */
    } else if (status != 0) {
        serve_conn_log_error(sc, "write", status);
        serve_conn_end(sc, status);
    } else if (sc->paused && tlsock_uv_conn_write_queue_size(conn) <= SERVE_QUEUE_LOW) {
        sc->paused = false;
        tlsock_uv_read_start(conn);
    }
}

static void on_close(struct tlsock_uv_conn *conn)
{
    struct serve_conn *sc = tlsock_uv_conn_user(conn);
    struct serve_loop *owner = NULL;

    if (sc == NULL) {
        goto done;
    }
    owner = sc->owner;
    if (owner->settings->verbose && sc->err == 0) {
        fprintf(stderr, "tlsock: %s: closed\n", sc->peer);
    }
    if (owner->settings->once) {
        owner->once_result = sc->err;
    }
    unlink_conn(owner, sc);
    free(sc);
done:
    return;
}

/* A client that failed before it was ours: handshake error, timeout, reset, accept error. */
static void on_accept_error(struct tlsock_uv_server *server, int code, const char *message)
{
    struct serve_loop *owner = tlsock_uv_server_user(server);

    cli_report_accept_error(code, message, owner->settings->handshake_timeout_ms);
    if (owner->settings->once && !owner->once_taken) {
        owner->once_taken = true;
        owner->once_result = code;
        tlsock_uv_server_close(owner->server, NULL);
    }
}

void serve_conn_opts(struct serve_loop *owner, struct tlsock_uv_opts *opts)
{
    opts->handshake_timeout_ms = owner->settings->handshake_timeout_ms;
    opts->on_connect = on_connect;
    opts->on_read = on_read;
    opts->on_event = on_event;
    opts->on_write = on_write;
    opts->on_close = on_close;
    opts->on_accept_error = on_accept_error;
    /* A client that neither sends nor reads for a minute is dropped. */
    opts->read_idle_timeout_ms = IDLE_TIMEOUT_MS;
    opts->write_timeout_ms = IDLE_TIMEOUT_MS;
    opts->user = owner;
}

int serve_conn_send(struct serve_conn *sc, const void *data, size_t len)
{
    /* tlsock_uv_write() keeps the buffer until on_write, which frees it. */
    void *copy = malloc(len);
    int err = TLSOCK_ENOMEM;

    if (copy == NULL) {
        goto done;
    }
    memcpy(copy, data, len);
    err = tlsock_uv_write(sc->uv, copy, len, copy);
    if (err != 0) {
        free(copy);
        goto done;
    }
    cli_stats_bytes(false, len);
    if (!sc->paused && tlsock_uv_conn_write_queue_size(sc->uv) > SERVE_QUEUE_HIGH) {
        /* The client does not read as fast as it sends: let TCP slow it down. */
        sc->paused = true;
        tlsock_uv_read_stop(sc->uv);
    }
done:
    return err;
}

void serve_conn_end(struct serve_conn *sc, int err)
{
    if (!sc->closing) {
        sc->closing = true;
        sc->err = err;
        tlsock_uv_close(sc->uv);
    }
}

void serve_close_all(struct cli_loop *loop)
{
    struct serve_loop *owner = loop->user;

    /* tlsock_uv_close() calls on_close later, from the loop: the list stays as it is here. */
    for (struct serve_conn *sc = owner->conns; sc != NULL; sc = sc->next) {
        serve_conn_end(sc, 0);
    }
}
