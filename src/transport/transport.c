/*
 * The byte mover of every connection; see transport.h.
 */
#include <stdlib.h>
#include <string.h>

#include "transport.h"

/*
 * Four full records: a corked bulk write reaches the transport in 64 KiB pieces instead of one
 * system call per 16 KiB record.
 */
enum { CORK_CAP = 4 * (16384 + 256) };

int tlsock__transport_init(struct tlsock__transport *t, enum tlsock__transport_kind kind, int fd,
                           const struct tlsock_io *io, const void *preread, size_t preread_len,
                           struct tlsock__err *err)
{
    memset(t, 0, sizeof(*t));
    t->kind = kind;
    t->fd = kind == TLSOCK__TRANSPORT_SOCKET ? fd : -1;
    if (tlsock__buf_append(&t->in, preread, preread_len) != 0) {
        return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory copying preread bytes");
    }
    if (kind == TLSOCK__TRANSPORT_CALLBACKS) {
        t->io = malloc(sizeof(*t->io));
        if (t->io == NULL) {
            tlsock__buf_free(&t->in);
            return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory allocating a connection");
        }
        *t->io = *io;
    }
    return 0;
}

void tlsock__transport_free(struct tlsock__transport *t)
{
    tlsock__buf_free(&t->in);
    tlsock__buf_free(&t->out);
    free(t->io);
    t->io = NULL;
}

/*
 * Turns what the socket or a callback returned into a byte count, 0 (end of stream), a retry
 * or a failure, keeping the transport's own code. WANT codes and a timeout are retries, so that
 * the TLS session stays usable; the caller still gets the timeout, and the WANT's direction.
 */
static ssize_t outcome(struct tlsock__transport *t, ssize_t n, size_t len, bool reading)
{
    if (n > 0 && (size_t)n <= len) {
        return n;
    }
    if (n > 0 || (n == 0 && !reading)) {
        t->why = n > 0 ? "transport callback returned more bytes than asked"
                       : "transport write callback took 0 bytes";
        t->err = TLSOCK_EINVAL;
        return TLSOCK__TRANSPORT_FAILED;
    }
    if (n == 0) {
        t->eof = true;
        return 0;
    }
    if (n == TLSOCK_EWANT_READ || n == TLSOCK_EWANT_WRITE) {
        t->want = (int)n;
        return TLSOCK__TRANSPORT_RETRY;
    }
    t->err = (int)n;
    return n == TLSOCK_ETIMEDOUT ? TLSOCK__TRANSPORT_RETRY : TLSOCK__TRANSPORT_FAILED;
}

/* What memory mode's input says when nothing is queued: the end, or "not yet". */
static ssize_t memory_read(struct tlsock__transport *t)
{
    return outcome(t, t->in_eof ? 0 : TLSOCK_EWANT_READ, 0, true);
}

/* One read from where the bytes come from (not what was read ahead): bytes, 0 or a code. */
static ssize_t source_read(struct tlsock__transport *t, void *buf, size_t len)
{
    ssize_t n;

    switch (t->kind) {
    case TLSOCK__TRANSPORT_SOCKET:
        if (t->caller_polls && t->sent) {
            /* The answer to what is being sent: the caller's poll waits for it (transport.h). */
            return outcome(t, TLSOCK_EWANT_READ, len, true);
        }
        n = tlsock__sock_recv(t->fd, buf, len, &t->sys_errno);
        break;
    case TLSOCK__TRANSPORT_CALLBACKS:
        n = t->io->read(t->io->user, buf, len);
        break;
    default:
        return memory_read(t); /* memory mode's bytes are all in t->in already */
    }
    return outcome(t, n, len, true);
}

ssize_t tlsock__transport_read(struct tlsock__transport *t, void *buf, size_t len)
{
    if (tlsock__buf_pending(&t->in) > 0) {
        return (ssize_t)tlsock__buf_take(&t->in, buf, len);
    }
    return source_read(t, buf, len);
}

ssize_t tlsock__transport_fill(struct tlsock__transport *t, size_t need)
{
    unsigned char buf[4096];

    while (tlsock__buf_pending(&t->in) < need) {
        size_t len = need - tlsock__buf_pending(&t->in);
        len = len < sizeof(buf) ? len : sizeof(buf);
        ssize_t n = source_read(t, buf, len);
        if (n <= 0) {
            return n;
        }
        if (tlsock__buf_append(&t->in, buf, (size_t)n) != 0) {
            t->why = "out of memory reading ahead";
            t->err = TLSOCK_ENOMEM;
            return TLSOCK__TRANSPORT_FAILED;
        }
    }
    return (ssize_t)tlsock__buf_pending(&t->in);
}

/* One write to the transport itself, nothing collected. */
static ssize_t raw_write(struct tlsock__transport *t, const void *buf, size_t len)
{
    ssize_t n;

    switch (t->kind) {
    case TLSOCK__TRANSPORT_SOCKET:
        n = tlsock__sock_send(t->fd, buf, len, &t->sys_errno);
        t->sent = t->sent || n > 0;
        break;
    case TLSOCK__TRANSPORT_CALLBACKS:
        n = t->io->write(t->io->user, buf, len);
        break;
    default:
        if (tlsock__buf_append(&t->out, buf, len) != 0) {
            t->why = "out of memory queueing output";
            t->err = TLSOCK_ENOMEM;
            return TLSOCK__TRANSPORT_FAILED;
        }
        return (ssize_t)len;
    }
    return outcome(t, n, len, false);
}

/* Hands collected records to the transport: 0 when all are out, else a retry or failure. */
static ssize_t flush_collected(struct tlsock__transport *t)
{
    if (t->kind == TLSOCK__TRANSPORT_MEMORY) {
        return 0; /* the driver drains it */
    }
    while (tlsock__buf_pending(&t->out) > 0) {
        ssize_t n = raw_write(t, t->out.data + t->out.off, tlsock__buf_pending(&t->out));
        if (n < 0) {
            return n;
        }
        tlsock__buf_drop(&t->out, (size_t)n);
    }
    if (t->cork == TLSOCK__UNCORKED) {
        tlsock__buf_free(&t->out); /* an idle connection keeps no output storage */
    }
    return 0;
}

ssize_t tlsock__transport_write(struct tlsock__transport *t, const void *buf, size_t len)
{
    size_t collected = tlsock__buf_pending(&t->out);

    if (t->kind == TLSOCK__TRANSPORT_MEMORY) {
        return raw_write(t, buf, len);
    }
    /* Collected records go first, also when uncorked, so that bytes never overtake them. */
    if ((t->cork == TLSOCK__UNCORKED || collected + len > CORK_CAP) && collected > 0) {
        ssize_t n = flush_collected(t);
        if (n < 0) {
            return n;
        }
    }
    /*
     * A bulk write reserves its whole cap at once; a flight's storage grows with what comes.
     * With the room, the bytes are collected; without it (uncorked, too big, no memory), they
     * leave now, after any records collected before them.
     */
    if (t->cork != TLSOCK__UNCORKED && len <= CORK_CAP &&
        (t->cork == TLSOCK__CORK_FLIGHT || tlsock__buf_reserve(&t->out, CORK_CAP) == 0) &&
        tlsock__buf_append(&t->out, buf, len) == 0) {
        return (ssize_t)len;
    }
    if (tlsock__buf_pending(&t->out) > 0) {
        ssize_t n = flush_collected(t);
        if (n < 0) {
            return n;
        }
    }
    return raw_write(t, buf, len);
}

/*
 * The buffers one at a time through tlsock__transport_write, which collects them while corked and
 * keeps collected records first. Callbacks are asked again for the rest of a buffer they took
 * part of, as GnuTLS's own loop over a plain push function asks: a short write from a callback
 * is not a "not now", and GnuTLS would otherwise re-enter its state machine for every piece. A
 * socket's short write is one (its buffer is full), so it ends the call there, like sendmsg.
 */
static ssize_t write_each(struct tlsock__transport *t, const struct iovec *iov, int n)
{
    size_t taken = 0;

    for (int i = 0; i < n; i++) {
        const unsigned char *p = iov[i].iov_base;
        size_t off = 0;
        while (off < iov[i].iov_len) {
            ssize_t w = tlsock__transport_write(t, p + off, iov[i].iov_len - off);
            if (w < 0) {
                /* What was taken is reported; the retry or failure stays in want/err. */
                return taken > 0 ? (ssize_t)taken : w;
            }
            off += (size_t)w;
            taken += (size_t)w;
            if (off < iov[i].iov_len && t->kind == TLSOCK__TRANSPORT_SOCKET) {
                return (ssize_t)taken;
            }
        }
    }
    return (ssize_t)taken;
}

ssize_t tlsock__transport_writev(struct tlsock__transport *t, const struct iovec *iov, int n)
{
    size_t total = 0;

    for (int i = 0; i < n; i++) {
        total += iov[i].iov_len;
    }
    if (total == 0) {
        return 0;
    }
    /* One buffer goes out exactly as tlsock__transport_write sends it (send, not sendmsg). */
    if (t->kind != TLSOCK__TRANSPORT_SOCKET || t->cork != TLSOCK__UNCORKED || n == 1) {
        return write_each(t, iov, n);
    }
    /* Collected records go first, never overtaken (see tlsock__transport_write). */
    ssize_t r = flush_collected(t);
    if (r < 0) {
        return r;
    }
    ssize_t sent = tlsock__sock_sendmsg(t->fd, iov, n, &t->sys_errno);
    t->sent = t->sent || sent > 0;
    return outcome(t, sent, total, false);
}

void tlsock__transport_polled(struct tlsock__transport *t)
{
    t->sent = false;
}

void tlsock__transport_cork_flight(struct tlsock__transport *t)
{
    t->cork = TLSOCK__CORK_FLIGHT;
}

void tlsock__transport_end_flight(struct tlsock__transport *t)
{
    if (t->cork == TLSOCK__CORK_FLIGHT) {
        t->cork = TLSOCK__UNCORKED;
        (void)flush_collected(t);
    }
}

void tlsock__transport_cork(struct tlsock__transport *t, bool corked)
{
    t->cork = corked ? TLSOCK__CORK_BULK : TLSOCK__UNCORKED;
    if (!corked && tlsock__buf_pending(&t->out) == 0 && t->kind != TLSOCK__TRANSPORT_MEMORY) {
        tlsock__buf_free(&t->out);
    }
}

int tlsock__transport_flush(struct tlsock__transport *t, struct tlsock__err *err)
{
    ssize_t n = flush_collected(t);

    if (n == 0) {
        return 0;
    }
    if (n == TLSOCK__TRANSPORT_RETRY) {
        return tlsock__transport_retry_code(t, TLSOCK_EWANT_WRITE, err);
    }
    return tlsock__transport_fail(t, err);
}

void tlsock__transport_switch(struct tlsock__transport *t, enum tlsock__transport_kind kind, int fd)
{
    t->kind = kind;
    t->fd = kind == TLSOCK__TRANSPORT_SOCKET ? fd : -1;
    t->in_eof = false;
    t->eof = false;
}

int tlsock__transport_fail(struct tlsock__transport *t, struct tlsock__err *err)
{
    int code = t->err;
    int sys = t->sys_errno;
    const char *why = t->why;

    t->err = 0;
    t->sys_errno = 0;
    t->why = NULL;
    if (code == TLSOCK_ESYS && sys != 0) {
        return tlsock__fail(err, code, "socket error: %s", strerror(sys));
    }
    if (why != NULL) {
        return tlsock__fail(err, code, "%s", why);
    }
    return tlsock__fail(err, code, "transport returned %s: %s", tlsock_err_name(code),
                        tlsock_strerror(code));
}

int tlsock__transport_retry_code(struct tlsock__transport *t, int fallback, struct tlsock__err *err)
{
    int want = t->want != 0 ? t->want : fallback;

    t->want = 0;
    if (t->err == TLSOCK_ETIMEDOUT) {
        return tlsock__transport_fail(t, err);
    }
    return want;
}
