/*
 * The byte mover every implementation uses; see xport.h.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"
#include "xport.h"

/*
 * Four full records: a corked bulk write reaches the transport in 64 KiB pieces instead of one
 * system call per 16 KiB record.
 */
enum { CORK_CAP = 4 * (16384 + 256) };

int tlsock__xport_init(struct tlsock__xport *x, const struct tlsock__conn_params *p,
                       struct tlsock__err *err)
{
    memset(x, 0, sizeof(*x));
    x->fd = p->fd;
    x->use_io = p->io != NULL;
    if (x->use_io) {
        x->io = *p->io;
    }
    if (p->preread_len > 0) {
        x->pre = malloc(p->preread_len);
        if (x->pre == NULL) {
            return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory copying preread bytes");
        }
        memcpy(x->pre, p->preread, p->preread_len);
        x->pre_len = p->preread_len;
    }
    return 0;
}

void tlsock__xport_free(struct tlsock__xport *x)
{
    free(x->pre);
    free(x->wbuf);
    x->pre = NULL;
    x->wbuf = NULL;
}

/*
 * Turns what the socket or a callback returned into a byte count, 0 (end of stream), a retry
 * or a failure, keeping the transport's own code. WANT codes and a timeout are retries, so that
 * the TLS session stays usable; the caller still gets the timeout, and the WANT's direction.
 */
static ssize_t outcome(struct tlsock__xport *x, ssize_t n, size_t len, bool reading)
{
    if (n > 0 && (size_t)n <= len) {
        return n;
    }
    if (n > 0 || (n == 0 && !reading)) {
        x->contract_broken = n > 0 ? "transport callback returned more bytes than asked"
                                   : "transport write callback took 0 bytes";
        x->err = TLSOCK_EINVAL;
        return TLSOCK__XPORT_FAILED;
    }
    if (n == 0) {
        x->eof = true;
        return 0;
    }
    if (n == TLSOCK_EWANT_READ || n == TLSOCK_EWANT_WRITE) {
        x->want = (int)n;
        return TLSOCK__XPORT_RETRY;
    }
    x->err = (int)n;
    return n == TLSOCK_ETIMEDOUT ? TLSOCK__XPORT_RETRY : TLSOCK__XPORT_FAILED;
}

static ssize_t raw_write(struct tlsock__xport *x, const void *buf, size_t len)
{
    ssize_t n = x->use_io ? x->io.write(x->io.user, buf, len)
                          : tlsock__sock_send(x->fd, buf, len, &x->sys_errno);
    return outcome(x, n, len, false);
}

ssize_t tlsock__xport_read(struct tlsock__xport *x, void *buf, size_t len)
{
    if (x->pre_off < x->pre_len) {
        size_t n = x->pre_len - x->pre_off < len ? x->pre_len - x->pre_off : len;
        memcpy(buf, x->pre + x->pre_off, n);
        x->pre_off += n;
        return (ssize_t)n;
    }
    ssize_t n = x->use_io ? x->io.read(x->io.user, buf, len)
                          : tlsock__sock_recv(x->fd, buf, len, &x->sys_errno);
    return outcome(x, n, len, true);
}

/* Hands collected records to the transport: 0 when all are out, else a retry or failure. */
static ssize_t flush_collected(struct tlsock__xport *x)
{
    while (x->woff < x->wlen) {
        ssize_t n = raw_write(x, x->wbuf + x->woff, x->wlen - x->woff);
        if (n < 0) {
            return n;
        }
        x->woff += (size_t)n;
    }
    x->wlen = 0;
    x->woff = 0;
    return 0;
}

ssize_t tlsock__xport_write(struct tlsock__xport *x, const void *buf, size_t len)
{
    if (x->corked && x->wbuf == NULL) {
        x->wbuf = malloc(CORK_CAP);
        x->corked = x->wbuf != NULL; /* without memory, just do not coalesce */
    }
    /* Collected records go first, also when uncorked, so that bytes never overtake them. */
    if ((!x->corked || x->wlen + len > CORK_CAP) && x->wlen > 0) {
        ssize_t n = flush_collected(x);
        if (n < 0) {
            return n;
        }
    }
    if (!x->corked || len > CORK_CAP) {
        return raw_write(x, buf, len);
    }
    memcpy(x->wbuf + x->wlen, buf, len);
    x->wlen += len;
    return (ssize_t)len;
}

/*
 * The buffers one at a time through tlsock__xport_write, which collects them while corked and
 * keeps collected records first. Callbacks are asked again for the rest of a buffer they took
 * part of, as GnuTLS's own loop over a plain push function asks: a short write from a callback
 * is not a "not now", and GnuTLS would otherwise re-enter its state machine for every piece. A
 * socket's short write is one (its buffer is full), so it ends the call there, like sendmsg.
 */
static ssize_t write_each(struct tlsock__xport *x, const struct iovec *iov, int n)
{
    size_t taken = 0;

    for (int i = 0; i < n; i++) {
        const unsigned char *p = iov[i].iov_base;
        size_t off = 0;
        while (off < iov[i].iov_len) {
            ssize_t w = tlsock__xport_write(x, p + off, iov[i].iov_len - off);
            if (w < 0) {
                /* What was taken is reported; the retry or failure stays in want/err. */
                return taken > 0 ? (ssize_t)taken : w;
            }
            off += (size_t)w;
            taken += (size_t)w;
            if (off < iov[i].iov_len && !x->use_io) {
                return (ssize_t)taken;
            }
        }
    }
    return (ssize_t)taken;
}

ssize_t tlsock__xport_writev(struct tlsock__xport *x, const struct iovec *iov, int n)
{
    size_t total = 0;

    for (int i = 0; i < n; i++) {
        total += iov[i].iov_len;
    }
    if (total == 0) {
        return 0;
    }
    /* One buffer goes out exactly as tlsock__xport_write sends it (send, not sendmsg). */
    if (x->use_io || x->corked || n == 1) {
        return write_each(x, iov, n);
    }
    /* Collected records go first, never overtaken (see tlsock__xport_write). */
    if (x->wlen > 0) {
        ssize_t r = flush_collected(x);
        if (r < 0) {
            return r;
        }
    }
    return outcome(x, tlsock__sock_sendmsg(x->fd, iov, n, &x->sys_errno), total, false);
}

int tlsock__xport_flush(struct tlsock__xport *x, struct tlsock__err *err)
{
    ssize_t n = flush_collected(x);

    if (n == 0) {
        return 0;
    }
    if (n == TLSOCK__XPORT_RETRY) {
        return tlsock__xport_retry_code(x, TLSOCK_EWANT_WRITE, err);
    }
    return tlsock__xport_fail(x, err);
}

size_t tlsock__xport_take_unread(struct tlsock__xport *x, void *buf, size_t cap)
{
    /*
     * Both implementations read a record header and then exactly the rest of that record (no
     * read-ahead), so the only received bytes TLS has not consumed are preread ones.
     */
    size_t n = x->pre_len - x->pre_off;

    if (n > 0 && n <= cap) {
        memcpy(buf, x->pre + x->pre_off, n);
    }
    return n;
}

void tlsock__xport_retarget(struct tlsock__xport *x, const struct tlsock_io *io, int fd)
{
    x->use_io = io != NULL;
    if (x->use_io) {
        x->io = *io;
    }
    x->fd = fd;
    x->eof = false;
}

int tlsock__xport_unshift(struct tlsock__xport *x, const void *data, size_t len,
                          struct tlsock__err *err)
{
    size_t kept = x->pre_len - x->pre_off;

    if (len == 0) {
        return 0;
    }
    unsigned char *pre = malloc(len + kept);
    if (pre == NULL) {
        return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory keeping received bytes");
    }
    memcpy(pre, data, len);
    if (kept > 0) {
        memcpy(pre + len, x->pre + x->pre_off, kept);
    }
    free(x->pre);
    x->pre = pre;
    x->pre_len = len + kept;
    x->pre_off = 0;
    return 0;
}

int tlsock__xport_fail(struct tlsock__xport *x, struct tlsock__err *err)
{
    int code = x->err;
    int sys = x->sys_errno;
    const char *why = x->contract_broken;

    x->err = 0;
    x->sys_errno = 0;
    x->contract_broken = NULL;
    if (code == TLSOCK_ESYS && sys != 0) {
        return tlsock__fail(err, code, "socket error: %s", strerror(sys));
    }
    if (why != NULL) {
        return tlsock__fail(err, code, "%s", why);
    }
    if (err != NULL && err->msg[0] != '\0') {
        return code; /* the core's transport already explained itself */
    }
    return tlsock__fail(err, code, "transport returned %s: %s", tlsock_err_name(code),
                        tlsock_strerror(code));
}

int tlsock__xport_retry_code(struct tlsock__xport *x, int fallback, struct tlsock__err *err)
{
    int want = x->want != 0 ? x->want : fallback;

    x->want = 0;
    if (x->err == TLSOCK_ETIMEDOUT) {
        return tlsock__xport_fail(x, err);
    }
    return want;
}
