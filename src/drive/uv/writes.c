/*
 * The write queue: tlsock_uv_write() requests in order, encrypted a batch at a time into output
 * storage sized to what the batch carries (a 150-byte write takes about 180 bytes, a full batch
 * of 16 KiB of plaintext about 16.4 KiB), each batch handed to libuv as one uv_write. Batches
 * stay small so that a burst is pipelined: the first record is on its way while the next is
 * encrypted (64 KiB batches halved the async echo's throughput).
 *
 * What a connection holds for its writes, the figure tlsock_uv_conn_write_queue_size() reports
 * and the queue limit compares: the plaintext not encrypted yet (the caller's buffers, which the
 * queue keeps alive), the batches libuv has not completed (storage and request), and one request
 * record per queued write. Over the limit the engine stops reading from the peer, whose requests
 * are what makes an application write; below half of it reading goes on (update_throttle).
 */
#include <stdlib.h>
#include <string.h>

#include "uv_int.h"

enum {
    PLAIN_CHUNK = 16384,              /* one record per encryption step: no coalescing copy */
    RECORD_SLACK = 5 + 256 + 48 + 16, /* ciphertext a record adds at most: header, padding,
                                         MAC or tag, explicit IV (TLS 1.2 CBC, the worst case) */
    PACE = 256 * 1024,                /* batches waiting in libuv before encrypting more waits */
};

/* Requests, batches and the write side come from the loop's spare records, ciphertext from its
 * spare blocks: a stream of writes allocates nothing once the spares are there. */
_Static_assert(sizeof(struct tlsock__uv_write) <= TLSOCK__UV_SMALL, "a spare record holds a write");
_Static_assert(sizeof(struct tlsock__uv_batch) <= TLSOCK__UV_SMALL, "a spare record holds a batch");
_Static_assert(sizeof(struct tlsock__uv_wq) <= TLSOCK__UV_SMALL, "a spare record holds the queue");

/* A zeroed spare record; NULL without memory. */
static void *rec_get(struct tlsock_uv_conn *c, size_t size)
{
    void *p = tlsock__uv_spare_get(c->lp, TLSOCK__UV_SPARE_REC);

    if (p != NULL) {
        memset(p, 0, size);
    }
    return p;
}

static void rec_put(struct tlsock_uv_conn *c, void *p)
{
    tlsock__uv_spare_put(c->lp, TLSOCK__UV_SPARE_REC, p);
}

/* ---- the queue ------------------------------------------------------------------------------- */

/* The write side, made on first use; NULL without memory. */
static struct tlsock__uv_wq *wq_of(struct tlsock_uv_conn *c)
{
    if (c->wq == NULL) {
        c->wq = rec_get(c, sizeof(*c->wq));
    }
    return c->wq;
}

int tlsock__uv_queue_write(struct tlsock_uv_conn *c, const void *buf, size_t len, void *arg)
{
    struct tlsock__uv_wq *q = wq_of(c);
    struct tlsock__uv_write *w = q != NULL ? rec_get(c, sizeof(*w)) : NULL;

    if (w == NULL) {
        return TLSOCK_ENOMEM;
    }
    w->buf = buf;
    w->len = len;
    w->arg = arg;
    if (q->tail != NULL) {
        q->tail->next = w;
    } else {
        q->head = w;
    }
    q->tail = w;
    if (q->enc == NULL) {
        q->enc = w;
    }
    q->plain_queued += len;
    q->nwrites++;
    return 0;
}

int tlsock__uv_queue_initial(struct tlsock_uv_conn *c, const void *data, size_t len, bool copy)
{
    struct tlsock__uv_wq *q = wq_of(c);
    struct tlsock__uv_write *w = q != NULL ? rec_get(c, sizeof(*w)) : NULL;

    if (w == NULL) {
        return TLSOCK_ENOMEM;
    }
    if (copy) {
        unsigned char *buf = malloc(len);
        if (buf == NULL) {
            rec_put(c, w);
            return TLSOCK_ENOMEM;
        }
        memcpy(buf, data, len);
        w->buf = buf;
        w->owned = true;
    } else {
        w->buf = data;
    }
    w->len = len;
    w->internal = true;
    /* In front of everything: it goes out right after the handshake. */
    w->next = q->head;
    q->head = w;
    if (q->tail == NULL) {
        q->tail = w;
    }
    q->enc = q->head;
    q->plain_queued += len;
    q->nwrites++;
    return 0;
}

size_t tlsock__uv_queue_bytes(const struct tlsock_uv_conn *c)
{
    const struct tlsock__uv_wq *q = c->wq;

    if (q == NULL) {
        return 0;
    }
    return q->plain_queued + q->batch_bytes + (size_t)q->nwrites * sizeof(struct tlsock__uv_write);
}

void tlsock__uv_update_throttle(struct tlsock_uv_conn *c)
{
    size_t held = tlsock__uv_queue_bytes(c);

    if (!c->throttled && held > c->cfg->queue_limit) {
        c->throttled = true;
    } else if (c->throttled && held <= c->cfg->queue_limit / 2) {
        c->throttled = false;
        c->last_rx = uv_now(c->lp->loop); /* the idle timeout starts again with reading */
    }
}

bool tlsock__uv_all_encrypted(const struct tlsock_uv_conn *c)
{
    return c->wq == NULL || c->wq->enc == NULL;
}

size_t tlsock__uv_inflight(const struct tlsock_uv_conn *c)
{
    return c->wq != NULL ? c->wq->cipher_inflight : 0;
}

bool tlsock__uv_writes_idle(const struct tlsock_uv_conn *c)
{
    return c->wq == NULL || (c->wq->head == NULL && c->wq->cipher_inflight == 0);
}

void tlsock__uv_writes_trim(struct tlsock_uv_conn *c)
{
    if (c->wq != NULL && tlsock__uv_writes_idle(c)) {
        rec_put(c, c->wq);
        c->wq = NULL;
    }
}

/* ---- batches --------------------------------------------------------------------------------- */

int tlsock__uv_flush(struct tlsock_uv_conn *c)
{
    struct tlsock__buf out = tlsock__conn_output_take(c->tls);
    size_t n = tlsock__buf_pending(&out);
    struct tlsock__uv_wq *q = NULL;
    struct tlsock__uv_batch *b = NULL;
    uv_buf_t ub;
    bool sync_attempt = false;
    int rc = 0;

    if (n == 0 || !tlsock__uv_link_up(c) || c->tx >= TLSOCK__UV_TX_FIN_SENT) {
        /* Nothing to send, or too late to send it: keep no storage. */
        tlsock__uv_storage_put(c->lp, out.data, out.cap);
        return 0;
    }
    q = wq_of(c);
    b = q != NULL ? rec_get(c, sizeof(*b)) : NULL;
    if (b == NULL) {
        tlsock__uv_storage_put(c->lp, out.data, out.cap);
        return tlsock__uv_fail(c, TLSOCK_ENOMEM, "out of memory sending");
    }
    b->conn = c;
    b->data = out.data;
    b->cap = out.cap;
    b->len = n;
    b->req.data = b;
    ub = uv_buf_init((char *)out.data + out.off, (unsigned)n);
    sync_attempt = c->tcp.write_queue_size == 0;
    rc = uv_write(&b->req, (uv_stream_t *)&c->tcp, &ub, 1, c->lp->hooks->written);
    if (rc != 0) {
        tlsock__uv_storage_put(c->lp, b->data, b->cap);
        rec_put(c, b);
        rc = tlsock__uv_sys_fail(c, rc, "write");
        tlsock__uv_link_broke(c);
        return rc;
    }
    if (q->cipher_inflight == 0) {
        c->last_wprog = uv_now(c->lp->loop);
    }
    q->cipher_inflight += n;
    q->cipher_sent += n;
    q->batch_bytes += b->cap + sizeof(*b);
    /*
     * With its queue empty, libuv writes at once, and reports a failure only from the next loop
     * iteration, where it first writes whatever was queued after it: a second write after a
     * reset, which raises SIGPIPE. Bytes still queued after such a write mean a full socket
     * buffer or a failure; the TCP state tells which (a reset leaves CLOSE).
     */
    if (sync_attempt && c->tcp.write_queue_size > 0 && tlsock__uv_tcp_reset_seen(c)) {
        rc = tlsock__uv_sys_fail(c, UV_ECONNRESET, "connection reset");
        tlsock__uv_link_broke(c);
    }
    return rc;
}

struct tlsock_uv_conn *tlsock__uv_batch_done(uv_write_t *req, int status)
{
    struct tlsock__uv_batch *b = req->data;
    struct tlsock_uv_conn *c = b->conn;
    struct tlsock__uv_wq *q = c->wq; /* a batch in flight keeps it */

    q->cipher_inflight -= b->len;
    q->cipher_done += b->len;
    q->batch_bytes -= b->cap + sizeof(*b);
    if (status == 0) {
        c->last_wprog = uv_now(c->lp->loop);
    }
    tlsock__uv_storage_put(c->lp, b->data, b->cap);
    rec_put(c, b);
    return c;
}

/* Encrypts all of @p len bytes: memory mode takes every record. */
static int tls_write(struct tlsock_uv_conn *c, const void *buf, size_t len)
{
    size_t done = 0;
    int rc = tlsock__conn_begin(c->tls);

    while (rc == 0 && done < len) {
        size_t n = 0;
        rc = tlsock__conn_write_step(c->tls, (const unsigned char *)buf + done, len - done, &n);
        done += n;
    }
    return tlsock__conn_settle(c->tls, rc, false);
}

/* Room for the next batch's ciphertext, from the plaintext it will carry. */
static void reserve_batch(struct tlsock_uv_conn *c)
{
    const struct tlsock__uv_wq *q = c->wq;
    size_t plain = 0;
    size_t records = 0;

    for (const struct tlsock__uv_write *w = q->enc; w != NULL && plain < TLSOCK__UV_BATCH_PLAIN;
         w = w->next) {
        size_t n = w->len - w->done;
        n = n < TLSOCK__UV_BATCH_PLAIN - plain ? n : TLSOCK__UV_BATCH_PLAIN - plain;
        plain += n;
        records += (n + PLAIN_CHUNK - 1) / PLAIN_CHUNK;
    }
    size_t need = tlsock__conn_output_pending(c->tls) + plain + records * RECORD_SLACK;

    if (plain == 0) {
        return;
    }
    if (need <= TLSOCK__UV_BLOCK && tlsock__conn_output_pending(c->tls) == 0) {
        /* A spare block, if the queue has no storage yet (a flush took the last batch's). */
        void *block = tlsock__uv_spare_get(c->lp, TLSOCK__UV_SPARE_BLOCK);
        if (block != NULL && !tlsock__conn_output_lend(c->tls, block, TLSOCK__UV_BLOCK)) {
            tlsock__uv_spare_put(c->lp, TLSOCK__UV_SPARE_BLOCK, block);
        }
    }
    if (tlsock__conn_output_reserve(c->tls, need) != 0) {
        return; /* without memory now the output grows record by record; a failure shows there */
    }
}

/* Encrypts one batch (at most TLSOCK__UV_BATCH_PLAIN of plaintext) and sends it. */
static int encrypt_batch(struct tlsock_uv_conn *c)
{
    struct tlsock__uv_wq *q = c->wq;
    size_t budget = TLSOCK__UV_BATCH_PLAIN;

    reserve_batch(c);
    while (q->enc != NULL && budget > 0) {
        struct tlsock__uv_write *w = q->enc;
        while (w->done < w->len && budget > 0) {
            size_t n = w->len - w->done;
            n = n < PLAIN_CHUNK ? n : PLAIN_CHUNK;
            n = n < budget ? n : budget;
            int rc = tls_write(c, w->buf + w->done, n);
            if (rc != 0) {
                rc = tlsock__uv_tls_fail(c, rc);
                /* What was encrypted before still goes; the encryption's failure is the one
                 * reported. */
                int frc = tlsock__uv_flush(c);
                (void)frc;
                return rc;
            }
            w->done += n;
            budget -= n;
            q->plain_queued -= n;
        }
        if (w->done < w->len) {
            break;
        }
        w->end = q->cipher_sent + tlsock__conn_output_pending(c->tls);
        q->enc = w->next;
    }
    return tlsock__uv_flush(c);
}

int tlsock__uv_encrypt_writes(struct tlsock_uv_conn *c)
{
    struct tlsock__uv_wq *q = c->wq;
    size_t pace = c->cfg->queue_limit / 2 < PACE ? c->cfg->queue_limit / 2 : PACE;
    int rc = 0;

    if (q == NULL) {
        return 0;
    }
    /* Initial data always goes at once. */
    while (rc == 0 && q->enc != NULL && (q->batch_bytes < pace || q->enc->internal)) {
        rc = encrypt_batch(c);
    }
    return rc;
}

/* ---- completions ----------------------------------------------------------------------------- */

static void write_free(struct tlsock_uv_conn *c, struct tlsock__uv_write *w)
{
    c->wq->nwrites--;
    if (w->owned) {
        free((void *)w->buf);
    }
    rec_put(c, w);
}

bool tlsock__uv_complete_writes(struct tlsock_uv_conn *c)
{
    struct tlsock__uv_wq *q = c->wq;
    bool completed = false;

    while (q != NULL && q->head != NULL && q->head != q->enc && q->head->end <= q->cipher_done &&
           c->failure == 0 && !tlsock__uv_ended(c)) {
        struct tlsock__uv_write *w = q->head;
        void *arg = w->arg;
        bool internal = w->internal;

        q->head = w->next;
        if (q->head == NULL) {
            q->tail = NULL;
        }
        write_free(c, w);
        completed = completed || !internal;
        if (!internal && c->cfg->on_write != NULL) {
            c->cfg->on_write(c, arg, 0);
        }
    }
    return completed;
}

void tlsock__uv_finish_writes(struct tlsock_uv_conn *c, bool callbacks)
{
    struct tlsock__uv_wq *q = c->wq;

    if (q == NULL) {
        return;
    }
    /* In order: 0 if libuv wrote all of it before the end (a healthy connection), else
     * ECANCELED. */
    while (q->head != NULL) {
        struct tlsock__uv_write *w = q->head;
        void *arg = w->arg;
        bool internal = w->internal;
        bool written =
            c->failure == 0 && w->done == w->len && w != q->enc && w->end <= q->cipher_done;

        q->head = w->next;
        if (q->enc == w) {
            q->enc = q->head;
        }
        q->plain_queued -= w->len - w->done;
        write_free(c, w);
        if (callbacks && !internal && c->cfg->on_write != NULL) {
            c->cfg->on_write(c, arg, written ? 0 : TLSOCK_ECANCELED);
        }
    }
    q->tail = NULL;
    q->enc = NULL;
}

void tlsock__uv_writes_free(struct tlsock_uv_conn *c)
{
    rec_put(c, c->wq);
    c->wq = NULL;
}
