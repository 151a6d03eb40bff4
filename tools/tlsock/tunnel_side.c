/*
 * One side of a pair over its transport: a plaintext uv_tcp_t or a TLS tlsock_uv_conn. Each
 * operation below does the same job on either; the callbacks of both transports turn what
 * happens into the same few calls of tunnel_forward.c and tunnel_pair.c.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <sys/socket.h>

#include "tunnel_pair.h"

/* The chunk whose data @p p points to. */
static struct tunnel_chunk *chunk_of(void *p)
{
    return (struct tunnel_chunk *)((char *)p - offsetof(struct tunnel_chunk, data));
}

struct tunnel_chunk *tunnel_chunk_get(struct tunnel_loop *tl)
{
    struct tunnel_chunk *chunk = tl->spare;

    if (chunk != NULL) {
        tl->spare = chunk->next;
        tl->nspare--;
    } else {
        chunk = malloc(sizeof(*chunk));
    }
    if (chunk != NULL) {
        chunk->len = 0;
    }
    return chunk;
}

void tunnel_chunk_put(struct tunnel_loop *tl, struct tunnel_chunk *chunk)
{
    if (chunk == NULL) {
        /* Nothing. */
    } else if (tl->nspare < TUNNEL_SPARE_MAX) {
        chunk->next = tl->spare;
        tl->spare = chunk;
        tl->nspare++;
    } else {
        free(chunk);
    }
}

void tunnel_chunk_drain(struct tunnel_loop *tl)
{
    while (tl->spare != NULL) {
        struct tunnel_chunk *next = tl->spare->next;
        free(tl->spare);
        tl->spare = next;
    }
    tl->nspare = 0;
    if (tl->flush != NULL) {
        uv_close((uv_handle_t *)tl->flush, tunnel_free_handle);
        tl->flush = NULL;
    }
}

static void flush_unlist(struct tunnel_side *side)
{
    struct tunnel_loop *tl = side->pair->owner;

    if (!side->flush_listed) {
        return;
    }
    if (side->flush_prev != NULL) {
        side->flush_prev->flush_next = side->flush_next;
    } else {
        tl->flushing = side->flush_next;
    }
    if (side->flush_next != NULL) {
        side->flush_next->flush_prev = side->flush_prev;
    }
    side->flush_prev = NULL;
    side->flush_next = NULL;
    side->flush_listed = false;
}

void tunnel_side_flush(struct tunnel_side *side)
{
    struct tunnel_chunk *chunk = side->gather;

    flush_unlist(side);
    side->gather = NULL;
    if (chunk != NULL) {
        /* Dropped there if the pair no longer forwards from this side. */
        tunnel_forward_data(side, chunk);
    }
}

void tunnel_side_forget(struct tunnel_side *side)
{
    flush_unlist(side);
    tunnel_chunk_put(side->pair->owner, side->gather);
    side->gather = NULL;
}

/* The end of the loop's turn (check phase): every side's gathered records go on. */
static void on_flush(uv_check_t *check)
{
    struct tunnel_loop *tl = check->data;

    /* Forwarding may close a pair but frees none (that waits for close callbacks), and reads
     * nothing, so the list only shrinks. */
    while (tl->flushing != NULL) {
        tunnel_side_flush(tl->flushing);
    }
    uv_check_stop(check);
}

/* Puts @p side on the list forwarded at the end of the turn; false without memory. */
static bool flush_later(struct tunnel_side *side)
{
    struct tunnel_loop *tl = side->pair->owner;

    if (side->flush_listed) {
        return true;
    }
    if (tl->flush == NULL) {
        tl->flush = malloc(sizeof(*tl->flush));
        if (tl->flush == NULL) {
            return false;
        }
        uv_check_init(&tl->loop->uv, tl->flush);
        tl->flush->data = tl;
    }
    if (tl->flushing == NULL) {
        uv_check_start(tl->flush, on_flush);
    } else {
        tl->flushing->flush_prev = side;
    }
    side->flush_next = tl->flushing;
    side->flush_prev = NULL;
    tl->flushing = side;
    side->flush_listed = true;
    return true;
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct tunnel_side *side = handle->data;
    struct tunnel_chunk *chunk = tunnel_chunk_get(side->pair->owner);

    (void)suggested;
    *buf = uv_buf_init(chunk != NULL ? chunk->data : NULL, chunk != NULL ? TUNNEL_CHUNK_SIZE : 0);
}

static void on_plain_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct tunnel_side *side = stream->data;
    struct tunnel_chunk *chunk = buf->base != NULL ? chunk_of(buf->base) : NULL;

    if (nread > 0) {
        chunk->len = (size_t)nread;
        tunnel_forward_data(side, chunk);
    } else {
        tunnel_chunk_put(side->pair->owner, chunk);
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
    struct tunnel_chunk *chunk = req->data;
    struct tunnel_side *side = req->handle->data;

    tunnel_chunk_put(side->pair->owner, chunk);
    if (status == UV_ECANCELED || side->closing) {
        /* Dropped by a close. */
    } else if (status != 0) {
        tunnel_pair_failed(side, TLSOCK_ESYS, uv_strerror(status));
    } else {
        tunnel_forward_written(side);
    }
}

int tunnel_side_write(struct tunnel_side *side, struct tunnel_chunk *chunk)
{
    int err = 0;

    if (side->tls) {
        err = tlsock_uv_write(side->conn, chunk->data, chunk->len, chunk);
        if (err != 0) {
            tunnel_chunk_put(side->pair->owner, chunk);
            tunnel_pair_failed(side, err, tlsock_uv_conn_errmsg(side->conn));
        }
    } else {
        chunk->req.data = chunk;
        chunk->buf = uv_buf_init(chunk->data, (unsigned)chunk->len);
        err = uv_write(&chunk->req, (uv_stream_t *)side->tcp, &chunk->buf, 1, on_plain_write);
        if (err != 0) {
            tunnel_chunk_put(side->pair->owner, chunk);
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

/*
 * uv_tcp_close_reset() refuses a handle with a shutdown pending (UV_EINVAL): the end of the
 * stream passed on, queued behind writes its peer has not taken. Closed as usual, it would send
 * what the kernel holds and then a FIN, a clean end of a stream that was cut. SO_LINGER {1, 0}
 * set here makes the close(2) that uv_close() does send a reset instead, as uv_tcp_close_reset()
 * would; the pending shutdown is cancelled by the close, before its FIN went out.
 */
static void linger_reset(uv_tcp_t *tcp)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    uv_os_fd_t fd;

    if (uv_fileno((uv_handle_t *)tcp, &fd) == 0) {
        /* On failure (not connected yet, say) the close is the usual one: nothing better. */
        (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
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
        /* NULL: the last connect attempt failed and its handle is closed already. */
        if (side->tcp != NULL && (!reset || uv_tcp_close_reset(side->tcp, on_tcp_closed) != 0)) {
            if (reset) {
                linger_reset(side->tcp);
            }
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
    const char *p = data;

    /* @p data is valid only during this call; the write needs it until it completes. A call
     * carries a record at most; records are gathered into the side's chunk, forwarded when it
     * is full and otherwise at the end of the loop's turn. A failure closes the side, which
     * ends the loop. */
    while (len > 0 && side != NULL && !side->closing) {
        struct tunnel_chunk *chunk = side->gather;
        size_t n;

        if (chunk == NULL) {
            chunk = tunnel_chunk_get(side->pair->owner);
            if (chunk == NULL) {
                tunnel_pair_failed(side, TLSOCK_ENOMEM, NULL);
                break;
            }
            side->gather = chunk;
        }
        n = TUNNEL_CHUNK_SIZE - chunk->len;
        n = len < n ? len : n;
        memcpy(chunk->data + chunk->len, p, n);
        chunk->len += n;
        p += n;
        len -= n;
        if (chunk->len == TUNNEL_CHUNK_SIZE) {
            tunnel_side_flush(side);
        }
    }
    if (side != NULL && !side->closing && side->gather != NULL && !flush_later(side)) {
        tunnel_side_flush(side);
    }
}

static void on_tls_event(struct tlsock_uv_conn *conn, int code)
{
    struct tunnel_side *side = tlsock_uv_conn_user(conn);

    if (side == NULL || side->closing) {
        /* Refused, or closing. */
    } else if (code == TLSOCK_ECLOSED) {
        /* Nothing more comes from this side; writing to it goes on. What it sent goes first. */
        tunnel_side_flush(side);
        tunnel_forward_ended(side);
    } else if (code == TLSOCK_ETRUNCATED) {
        /* Common (many peers skip close_notify), but the data may have been cut short. */
        tunnel_side_flush(side);
        tunnel_pair_truncated(side, code, tlsock_uv_conn_errmsg(conn));
    } else {
        tunnel_pair_failed(side, code, tlsock_uv_conn_errmsg(conn));
    }
}

static void on_tls_write(struct tlsock_uv_conn *conn, void *write_arg, int status)
{
    struct tunnel_side *side = tlsock_uv_conn_user(conn);

    if (side != NULL) {
        tunnel_chunk_put(side->pair->owner, write_arg);
    } else {
        free(write_arg);
    }
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
