/*
 * One side of a pair over its transport: a plaintext uv_tcp_t or a TLS tlsock_uv_conn. Each
 * operation below does the same job on either; the callbacks of both transports turn what
 * happens into the same few calls of tunnel_forward.c and tunnel_pair.c.
 */
#include <stdlib.h>
#include <string.h>

#include "tunnel_pair.h"

#define TUNNEL_READ_SIZE (64 * 1024)

/* A plaintext write and the data it owns. */
struct plain_write {
    uv_write_t req;
    uv_buf_t buf;
};

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)handle;
    (void)suggested;
    buf->base = malloc(TUNNEL_READ_SIZE);
    buf->len = buf->base != NULL ? TUNNEL_READ_SIZE : 0;
}

static void on_plain_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct tunnel_side *side = stream->data;
    char *data = NULL;

    if (nread > 0) {
        /* The buffer travels on with the write; a small read should not pin 64 KiB. */
        data = realloc(buf->base, (size_t)nread);
        tunnel_forward_data(side, data != NULL ? data : buf->base, (size_t)nread);
    } else {
        free(buf->base);
        if (nread == UV_EOF) {
            tunnel_forward_ended(side);
        } else if (nread < 0) {
            tunnel_pair_failed(side, TLSOCK_ESYS, uv_strerror((int)nread));
        }
    }
}

void tunnel_side_set_reading(struct tunnel_side *side, bool on)
{
    int err = 0;

    if (side->closing) {
        /* Closing stops reading. */
    } else if (side->tls && on) {
        err = tlsock_uv_read_start(side->conn);
        if (err != 0) {
            tunnel_pair_failed(side, err, tlsock_uv_conn_errmsg(side->conn));
        }
    } else if (side->tls) {
        tlsock_uv_read_stop(side->conn);
    } else if (on) {
        err = uv_read_start((uv_stream_t *)side->tcp, on_alloc, on_plain_read);
        if (err != 0) {
            tunnel_pair_failed(side, TLSOCK_ESYS, uv_strerror(err));
        }
    } else {
        uv_read_stop((uv_stream_t *)side->tcp);
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
        tunnel_pair_failed(side, TLSOCK_ESYS, uv_strerror(status));
    } else {
        tunnel_forward_written(side);
    }
}

int tunnel_side_write(struct tunnel_side *side, char *data, size_t len)
{
    struct plain_write *w = NULL;
    int err = 0;

    if (side->tls) {
        err = tlsock_uv_write(side->conn, data, len, data);
        if (err != 0) {
            free(data);
            tunnel_pair_failed(side, err, tlsock_uv_conn_errmsg(side->conn));
        }
    } else {
        w = malloc(sizeof(*w));
        err = w == NULL ? UV_ENOMEM : 0;
        if (err == 0) {
            w->buf = uv_buf_init(data, (unsigned)len);
            err = uv_write(&w->req, (uv_stream_t *)side->tcp, &w->buf, 1, on_plain_write);
        }
        if (err != 0) {
            free(data);
            free(w);
            tunnel_pair_failed(side, TLSOCK_ESYS, uv_strerror(err));
        }
    }
    return err;
}

size_t tunnel_side_queue(const struct tunnel_side *side)
{
    return side->tls ? tlsock_uv_conn_write_queue_size(side->conn) : side->tcp->write_queue_size;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct tunnel_side *side = req->data;

    if (status == UV_ECANCELED || side->closing) {
        /* Cut short by a close. */
    } else if (status != 0) {
        tunnel_pair_failed(side, TLSOCK_ESYS, uv_strerror(status));
    } else {
        side->output = OUTPUT_ENDED;
        tunnel_pair_check_done(side->pair);
    }
}

void tunnel_side_end_output(struct tunnel_side *side)
{
    int err = 0;

    if (side->closing || side->output != OUTPUT_OPEN) {
        /* Ending, or ended, already. */
    } else if (side->tls) {
        /* close_notify and a FIN after the queued data; its answer is still read. */
        err = tlsock_uv_shutdown(side->conn);
        if (err != 0) {
            tunnel_pair_failed(side, err, tlsock_uv_conn_errmsg(side->conn));
        } else {
            side->output = OUTPUT_ENDED;
        }
    } else {
        side->shutdown_req.data = side;
        err = uv_shutdown(&side->shutdown_req, (uv_stream_t *)side->tcp, on_shutdown);
        if (err != 0) {
            tunnel_pair_failed(side, TLSOCK_ESYS, uv_strerror(err));
        } else {
            side->output = OUTPUT_ENDING;
        }
    }
}

static void on_tcp_closed(uv_handle_t *handle)
{
    struct tunnel_side *side = handle->data;

    if (side->tcp == (uv_tcp_t *)handle) {
        side->tcp = NULL;
    }
    free(handle);
    tunnel_pair_release(side->pair);
}

void tunnel_side_close(struct tunnel_side *side, bool reset)
{
    if (side->closing) {
        /* Closing already. */
    } else if (side->tls) {
        side->closing = true;
        /* (NULL: tlsock_uv_connect() refused to start.) A reset is passed on as one: no
         * close_notify that would call the cut stream complete, and no flush to a peer that may
         * not be reading. */
        if (reset) {
            tlsock_uv_abort(side->conn);
        } else {
            tlsock_uv_close(side->conn);
        }
    } else {
        side->closing = true;
        /* NULL: the last connect attempt failed and its handle is closed already. A handle
         * that cannot be reset (a shutdown is pending) is closed as usual. */
        if (side->tcp != NULL && (!reset || uv_tcp_close_reset(side->tcp, on_tcp_closed) != 0)) {
            uv_close((uv_handle_t *)side->tcp, on_tcp_closed);
        }
    }
}

void tunnel_side_drop_tcp(struct tunnel_side *side)
{
    uv_close((uv_handle_t *)side->tcp, on_tcp_closed);
    side->tcp = NULL;
}

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
        tunnel_pair_failed(side, TLSOCK_ENOMEM, NULL);
        goto done;
    }
    memcpy(copy, data, len);
    tunnel_forward_data(side, copy, len);
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
        tunnel_forward_ended(side);
    } else if (code == TLSOCK_ETRUNCATED) {
        /* Common (many peers skip close_notify), but the data may have been cut short. */
        tunnel_pair_truncated(side, code, tlsock_uv_conn_errmsg(conn));
    } else {
        tunnel_pair_failed(side, code, tlsock_uv_conn_errmsg(conn));
    }
}

static void on_tls_write(struct tlsock_uv_conn *conn, void *write_arg, int status)
{
    struct tunnel_side *side = tlsock_uv_conn_user(conn);

    free(write_arg);
    if (side == NULL || status == TLSOCK_ECANCELED || side->closing) {
        /* Dropped by a close. */
    } else if (status != 0) {
        tunnel_pair_failed(side, status, tlsock_uv_conn_errmsg(conn));
    } else {
        tunnel_forward_written(side);
    }
}

static void on_tls_close(struct tlsock_uv_conn *conn)
{
    struct tunnel_side *side = tlsock_uv_conn_user(conn);

    if (side != NULL) {
        tunnel_pair_release(side->pair);
    }
}

void tunnel_side_tls_callbacks(struct tlsock_uv_opts *opts)
{
    opts->on_read = on_tls_read;
    opts->on_event = on_tls_event;
    opts->on_write = on_tls_write;
    opts->on_close = on_tls_close;
}
