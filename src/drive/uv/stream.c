/*
 * The per-connection engine of the libuv driver: ciphertext that arrives is fed to the memory
 * transport, the TLS steps run (they never block: TLSOCK_EWANT_READ means "wait for input"),
 * and what they produce is drained into uv_write() batches. Timers, events and closing live
 * here too.
 *
 * Callback discipline (libuv's rules, include/tlsock/uv.h):
 *   - user callbacks run only from loop callbacks (read, write, timer, close), never inside an
 *     API call: an API call that needs one kicks a 0 ms timer;
 *   - a user callback may call anything on its connection, including tlsock_uv_close(): every
 *     loop below re-checks the state after each callback, and the handle is freed only from
 *     the last close callback (tlsock__uv_maybe_finish), after on_close returned.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>

#include "uv_int.h"

enum {
    READ_BUF_SIZE = 64 * 1024, /* one per loop thread, lent to libuv for each read */
    READ_HEADROOM = 20 * 1024, /* in front of it: room for a partial record left by the last read
                                  (TLS 1.2 allows 16 KiB + 2 KiB + 5) */
    BATCH_POOL = 4,            /* output batch storage kept per loop thread */
    PLAIN_CHUNK = 16384,       /* one record per tlsock_write: no coalescing copy */
    BATCH_PLAIN = 64 * 1024,   /* plaintext encrypted into one uv_write */
    BATCH_CIPHER_CAP = BATCH_PLAIN + 4 * 256 + 512,
    HIGH_WATER = 256 * 1024, /* ciphertext in flight before encrypting more waits */
    CLOSE_DEFAULT_MS = 5000, /* graceful close bound without write_timeout_ms */
    LINGER_MS = 100,         /* after our FIN, wait this long for the peer's EOF */
    DECRYPT_BUF = 16384,     /* one record of plaintext */
};

/* ---------------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------------- */

int tlsock__uv_fail(struct tlsock_uv_conn *c, int code, const char *fmt, ...)
{
    char msg[TLSOCK__ERRMSG_SIZE];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return tlsock__fail(&c->err, code, "%s", msg);
}

int tlsock__uv_sys_fail(struct tlsock_uv_conn *c, int uv_status, const char *what)
{
    c->sys_errno = -uv_status;
    return tlsock__uv_fail(c, TLSOCK_ESYS, "%s: %s (%s)", what, uv_strerror(uv_status),
                           uv_err_name(uv_status));
}

int tlsock__uv_tls_fail(struct tlsock_uv_conn *c, int code)
{
    const char *msg = tlsock_conn_errmsg(c->tls);

    return tlsock__uv_fail(c, code, "%s", msg[0] != '\0' ? msg : tlsock_strerror(code));
}

/*
 * libuv writes with write(2)/writev(2), never MSG_NOSIGNAL: a write after the peer's reset raises
 * SIGPIPE. The driver never writes after a transport error (transport_failed), but the kernel can
 * still answer the first write after a reset that a read consumed in the same loop iteration
 * with it. So the first use of the driver ignores SIGPIPE if, and only if, nobody set a handler.
 */
static pthread_once_t sigpipe_once = PTHREAD_ONCE_INIT;

static void sigpipe_ignore(void)
{
    struct sigaction old;

    if (sigaction(SIGPIPE, NULL, &old) == 0 && !(old.sa_flags & SA_SIGINFO) &&
        old.sa_handler == SIG_DFL) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = SIG_IGN;
        sigemptyset(&sa.sa_mask);
        (void)sigaction(SIGPIPE, &sa, NULL);
    }
}

void tlsock__uv_sigpipe_init(void)
{
    (void)pthread_once(&sigpipe_once, sigpipe_ignore);
}

/* ---------------------------------------------------------------------------------------------
 * Creation
 * ------------------------------------------------------------------------------------------- */

struct tlsock_uv_opts tlsock__uv_opts_copy(const struct tlsock_uv_opts *opts)
{
    struct tlsock_uv_opts o = TLSOCK_UV_OPTS_INIT;

    if (opts != NULL && opts->size > 0) {
        memcpy(&o, opts, opts->size < sizeof(o) ? opts->size : sizeof(o));
        o.size = sizeof(o);
    }
    return o;
}

struct tlsock__uv_config tlsock__uv_config_of(const struct tlsock_uv_opts *o)
{
    return (struct tlsock__uv_config){
        .on_connect = o->on_connect,
        .on_read = o->on_read,
        .on_event = o->on_event,
        .on_write = o->on_write,
        .on_close = o->on_close,
        .read_idle_timeout_ms = o->read_idle_timeout_ms > 0 ? o->read_idle_timeout_ms : 0,
        .write_timeout_ms = o->write_timeout_ms > 0 ? o->write_timeout_ms : 0,
    };
}

struct tlsock_uv_conn *tlsock__uv_conn_alloc(uv_loop_t *loop, const struct tlsock__uv_config *cfg,
                                             void *user)
{
    struct tlsock_uv_conn *c = calloc(1, sizeof(*c));

    if (c != NULL) {
        c->loop = loop;
        c->cfg = *cfg;
        c->user = user;
        c->tcp.data = c;
        c->timer.data = c;
        c->kick.data = c;
    }
    return c;
}

void tlsock__uv_timers_init(struct tlsock_uv_conn *c)
{
    /* uv_timer_init cannot fail. */
    uv_timer_init(c->loop, &c->timer);
    uv_timer_init(c->loop, &c->kick);
    c->handles += 2;
}

int tlsock__uv_queue_initial(struct tlsock_uv_conn *c, const void *data, size_t len, bool copy)
{
    struct tlsock__uv_write *w = calloc(1, sizeof(*w));

    if (w == NULL) {
        return TLSOCK_ENOMEM;
    }
    if (copy) {
        unsigned char *buf = malloc(len);
        if (buf == NULL) {
            free(w);
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
    w->next = c->wq_head;
    c->wq_head = w;
    if (c->wq_tail == NULL) {
        c->wq_tail = w;
    }
    c->wq_enc = c->wq_head;
    c->plain_queued += len;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Per loop thread storage: one read buffer, lent to libuv for one read at a time, and a few
 * output batches. read_cb lets TLS read the read buffer in place (the memory transport borrows
 * it for the pump) and keeps only what TLS left of a record, so connections hold no read buffer
 * of their own; output batches are reused instead of a malloc and free each, which made glibc
 * trim and regrow the heap.
 * ------------------------------------------------------------------------------------------- */

struct read_buf {
    bool busy;
    unsigned npool;
    unsigned char *pool[BATCH_POOL];
    char data[READ_HEADROOM + READ_BUF_SIZE];
};

static pthread_key_t read_buf_key;
static pthread_once_t read_buf_once = PTHREAD_ONCE_INIT;
static bool read_buf_key_ok;

static void read_buf_destroy(void *p)
{
    struct read_buf *rb = p;

    for (unsigned i = 0; i < rb->npool; i++) {
        free(rb->pool[i]);
    }
    free(rb);
}

static void read_buf_key_make(void)
{
    read_buf_key_ok = pthread_key_create(&read_buf_key, read_buf_destroy) == 0;
}

static struct read_buf *thread_read_buf(void)
{
    struct read_buf *rb = NULL;

    pthread_once(&read_buf_once, read_buf_key_make);
    if (!read_buf_key_ok) {
        return NULL;
    }
    rb = pthread_getspecific(read_buf_key);
    if (rb == NULL) {
        rb = malloc(sizeof(*rb));
        if (rb != NULL) {
            rb->busy = false;
            rb->npool = 0;
            if (pthread_setspecific(read_buf_key, rb) != 0) {
                free(rb);
                rb = NULL;
            }
        }
    }
    return rb;
}

static void alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct read_buf *rb = thread_read_buf();
    char *p = NULL;

    (void)handle;
    (void)suggested;
    if (rb != NULL && !rb->busy) {
        rb->busy = true;
        *buf = uv_buf_init(rb->data + READ_HEADROOM, READ_BUF_SIZE);
        return;
    }
    /* Only a loop run from within a read callback gets here (or a failed key). */
    p = malloc(READ_BUF_SIZE);
    *buf = uv_buf_init(p, p != NULL ? READ_BUF_SIZE : 0);
}

static void release_buf(const uv_buf_t *buf)
{
    struct read_buf *rb = read_buf_key_ok ? pthread_getspecific(read_buf_key) : NULL;

    if (buf->base == NULL) {
        return;
    }
    if (rb != NULL && buf->base == rb->data + READ_HEADROOM) {
        rb->busy = false;
    } else {
        free(buf->base);
    }
}

/*
 * Hands @p n received bytes to TLS. In the thread's read buffer they are read in place: what
 * is left of the previous record moves into the headroom in front of them, and the memory
 * transport borrows the whole until tlsock__buf_own() after the pump. Elsewhere they are copied.
 */
static int feed_input(struct tlsock_uv_conn *c, const uv_buf_t *buf, size_t n, bool *borrowed)
{
    struct read_buf *rb = read_buf_key_ok ? pthread_getspecific(read_buf_key) : NULL;
    size_t left = tlsock__conn_input_pending(c->tls);

    *borrowed = false;
    if (rb == NULL || buf->base != rb->data + READ_HEADROOM || left > READ_HEADROOM) {
        return tlsock__conn_feed(c->tls, buf->base, n);
    }
    (void)tlsock__conn_input_peek(c->tls, buf->base - left, left);
    tlsock__conn_input_borrow(c->tls, buf->base - left, left + n);
    *borrowed = true;
    return 0;
}

/* Gives back storage of @p cap bytes: batch-sized storage goes to the pool while it has room. */
static void batch_free(unsigned char *data, size_t cap)
{
    struct read_buf *rb = read_buf_key_ok ? pthread_getspecific(read_buf_key) : NULL;

    if (data != NULL && cap == BATCH_CIPHER_CAP && rb != NULL && rb->npool < BATCH_POOL) {
        rb->pool[rb->npool++] = data;
        return;
    }
    free(data);
}

/* Output storage is emptied: batch-sized storage goes back to the pool. */
static void output_free(struct tlsock__buf *out)
{
    batch_free(out->data, out->cap);
    memset(out, 0, sizeof(*out));
}

/* ---------------------------------------------------------------------------------------------
 * Timers
 * ------------------------------------------------------------------------------------------- */

static bool idle_timer_active(const struct tlsock_uv_conn *c)
{
    return c->cfg.read_idle_timeout_ms > 0 && c->phase == TLSOCK__UV_OPEN && c->connect_reported &&
           c->dead == 0 && !c->closing && !c->releasing && !c->user_stopped && !c->peer_closed;
}

static bool write_timer_active(const struct tlsock_uv_conn *c)
{
    return c->cfg.write_timeout_ms > 0 && c->cipher_inflight > 0 && c->dead == 0 && !c->closing;
}

static uint64_t earlier(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* The nearest deadline, UINT64_MAX for none. */
static uint64_t next_deadline(const struct tlsock_uv_conn *c)
{
    uint64_t due = UINT64_MAX;

    if (c->closing) {
        if (c->close_limit != 0) {
            due = c->last_wprog + c->close_limit;
        }
        if (c->linger_until != 0) {
            due = earlier(due, c->linger_until);
        }
        return due;
    }
    if (c->phase != TLSOCK__UV_OPEN && c->dead == 0 && c->phase_deadline != 0) {
        due = c->phase_deadline;
    }
    if (write_timer_active(c)) {
        due = earlier(due, c->last_wprog + (uint64_t)c->cfg.write_timeout_ms);
    }
    if (idle_timer_active(c)) {
        due = earlier(due, c->last_rx + (uint64_t)c->cfg.read_idle_timeout_ms);
    }
    return due;
}

static void timer_cb(uv_timer_t *timer);

/*
 * Arms the timer for the nearest deadline. Deadlines that move later (every received byte moves
 * the idle one) do not rearm it: it fires early, finds nothing expired and rearms then.
 */
static void arm_timer(struct tlsock_uv_conn *c)
{
    uint64_t due = next_deadline(c);

    if (due == UINT64_MAX) {
        if (c->armed) {
            uv_timer_stop(&c->timer);
            c->armed = false;
        }
        return;
    }
    if (!c->armed || due < c->armed_due) {
        uint64_t now = uv_now(c->loop);
        uv_timer_start(&c->timer, timer_cb, due > now ? due - now : 0, 0);
        c->armed = true;
        c->armed_due = due;
    }
}

static bool passed(uint64_t deadline, uint64_t now)
{
    return deadline != 0 && now >= deadline;
}

static void timer_cb(uv_timer_t *timer)
{
    struct tlsock_uv_conn *c = timer->data;
    uint64_t now = uv_now(c->loop);

    c->armed = false;
    if (c->handles_closing) {
        return;
    }
    if (c->closing) {
        if ((c->close_limit != 0 && now >= c->last_wprog + c->close_limit) ||
            passed(c->linger_until, now)) {
            tlsock__uv_close_all(c);
            return;
        }
    } else if (c->phase != TLSOCK__UV_OPEN && c->dead == 0 && passed(c->phase_deadline, now)) {
        int code = TLSOCK_EHANDSHAKE_TIMEOUT;
        if (c->phase == TLSOCK__UV_HANDSHAKING) {
            tlsock__uv_fail(c, code, "TLS handshake timed out");
        } else {
            code = tlsock__uv_fail(c, TLSOCK_ETIMEDOUT, "connect timed out");
            if (c->gai_pending) {
                /* If the lookup already runs, its callback comes later and is ignored. */
                uv_cancel((uv_req_t *)&c->conn->gai);
            }
        }
        tlsock__uv_report(c, code);
    } else if (write_timer_active(c) && now >= c->last_wprog + (uint64_t)c->cfg.write_timeout_ms) {
        /* The peer does not read: our data may stay half sent, so the connection is dead. */
        c->broken = true;
        tlsock__uv_fail(c, TLSOCK_ETIMEDOUT,
                        "write timed out: %zu bytes waited %d ms for the peer to read",
                        c->cipher_inflight, c->cfg.write_timeout_ms);
        tlsock__uv_report(c, TLSOCK_ETIMEDOUT);
    } else if (idle_timer_active(c) && now >= c->last_rx + (uint64_t)c->cfg.read_idle_timeout_ms) {
        tlsock__uv_fail(c, TLSOCK_ETIMEDOUT, "read timed out: nothing arrived for %d ms",
                        c->cfg.read_idle_timeout_ms);
        tlsock__uv_report(c, TLSOCK_ETIMEDOUT);
    }
    tlsock__uv_settle(c);
}

static void kick_cb(uv_timer_t *timer)
{
    struct tlsock_uv_conn *c = timer->data;

    tlsock__uv_pump(c, true);
}

void tlsock__uv_kick(struct tlsock_uv_conn *c)
{
    if (!c->handles_closing) {
        uv_timer_start(&c->kick, kick_cb, 0, 0);
    }
}

/* ---------------------------------------------------------------------------------------------
 * The TLS session's steps: memory mode never waits, so each runs once and settles
 * ------------------------------------------------------------------------------------------- */

static int tls_handshake(struct tlsock_uv_conn *c)
{
    int rc = tlsock__conn_begin(c->tls);

    if (rc == 0) {
        rc = tlsock__conn_settle(c->tls, tlsock__conn_handshake_step(c->tls), false);
    }
    return rc;
}

static int tls_read(struct tlsock_uv_conn *c, void *buf, size_t len, size_t *n)
{
    int rc = tlsock__conn_begin(c->tls);

    if (rc == 0) {
        rc = tlsock__conn_settle(c->tls, tlsock__conn_read_step(c->tls, buf, len, n), true);
    }
    return rc;
}

/* Encrypts all of @p buf: memory mode takes every record. */
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

static int tls_close_notify(struct tlsock_uv_conn *c)
{
    int rc = tlsock__conn_begin(c->tls);

    if (rc == 0) {
        rc = tlsock__conn_settle(c->tls, tlsock__conn_close_notify_step(c->tls), false);
    }
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------------------------------- */

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void defer_failure(struct tlsock_uv_conn *c, int code);

static bool tcp_closed(const struct tlsock_uv_conn *c)
{
    return uv_is_closing((const uv_handle_t *)&c->tcp) != 0;
}

/*
 * The transport failed (a write or a read error): libuv must never write to this socket again,
 * since libuv writes with write(2) and a write after a reset raises SIGPIPE. Closing the handle
 * now stops reading and makes libuv cancel the queued writes without writing them; the
 * connection itself lives on, dead, until the application closes it.
 */
static void transport_failed(struct tlsock_uv_conn *c)
{
    c->broken = true;
    c->reading = false;
    if (c->phase >= TLSOCK__UV_HANDSHAKING && !tcp_closed(c)) {
        uv_close((uv_handle_t *)&c->tcp, tlsock__uv_handle_closed);
    }
}

/* Whether the kernel has torn the TCP connection down (state CLOSE: a reset, or a failure). */
static bool tcp_reset_seen(const struct tlsock_uv_conn *c)
{
    bool reset = false;
#ifdef TCP_INFO
    uv_os_fd_t fd = -1;
    struct tcp_info ti;
    socklen_t len = sizeof(ti);

    memset(&ti, 0, sizeof(ti));
    if (!tcp_closed(c) && uv_fileno((const uv_handle_t *)&c->tcp, &fd) == 0 &&
        getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0) {
        reset = ti.tcpi_state == TCP_CLOSE;
    }
#else
    (void)c;
#endif
    return reset;
}

/*
 * The errno of a reset behind an end of stream, 0 for a plain end: a write that met the reset
 * first consumed the socket's error, and the read after it only sees EOF. The pending error
 * says so if it is still there, else the TCP state does (a FIN leaves CLOSE_WAIT, a reset
 * CLOSE: we have sent no FIN while the connection is not closing).
 */
static int eof_reset_errno(const struct tlsock_uv_conn *c)
{
    uv_os_fd_t fd = -1;
    int err = 0;
    socklen_t len = sizeof(err);

    if (tcp_closed(c) || uv_fileno((const uv_handle_t *)&c->tcp, &fd) != 0) {
        return 0;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0) {
        return err;
    }
    if (!c->shut_started && tcp_reset_seen(c)) {
        return ECONNRESET;
    }
    return 0;
}

/* A TLS error, or for a truncation after a reset the reset (TLSOCK_ESYS). */
static int tls_or_reset_fail(struct tlsock_uv_conn *c, int rc)
{
    int err = rc == TLSOCK_ETRUNCATED && c->eof_seen ? eof_reset_errno(c) : 0;

    if (err != 0) {
        transport_failed(c);
        return tlsock__uv_sys_fail(c, -err, "connection reset");
    }
    return tlsock__uv_tls_fail(c, rc);
}

/* Whether the socket should be read now. */
static bool wants_reading(const struct tlsock_uv_conn *c)
{
    if (c->handles_closing || c->phase < TLSOCK__UV_HANDSHAKING || c->eof_seen || tcp_closed(c)) {
        return false;
    }
    if (c->closing) {
        /* Drain and drop what the peer still sends, so that closing never resets what we
         * sent last (a socket closed with unread input sends RST). */
        return c->graceful && !c->borrowed_fd;
    }
    if (c->dead != 0 || c->releasing) {
        return false;
    }
    if (c->phase == TLSOCK__UV_HANDSHAKING) {
        return true;
    }
    return !c->user_stopped && !c->peer_closed;
}

static void update_reading(struct tlsock_uv_conn *c)
{
    bool want = wants_reading(c);

    if (want && !c->reading) {
        int rc = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
        if (rc == 0) {
            c->reading = true;
        } else if (!c->closing && c->dead == 0 && c->deferred == 0) {
            c->deferred = tlsock__uv_sys_fail(c, rc, "read");
            transport_failed(c);
            tlsock__uv_kick(c);
        } else {
            transport_failed(c);
        }
    } else if (!want && c->reading) {
        if (!tcp_closed(c)) {
            uv_read_stop((uv_stream_t *)&c->tcp);
        }
        c->reading = false;
    }
}

void tlsock__uv_settle(struct tlsock_uv_conn *c)
{
    if (!c->handles_closing) {
        update_reading(c);
        arm_timer(c);
    }
}

/* Received ciphertext while closing is dropped; the peer's EOF lets the close finish. */
static void closing_read(struct tlsock_uv_conn *c, ssize_t nread)
{
    if (nread > 0 && c->shut_done) {
        /* The peer still talks: closing now would reset it, linger on (the close bound caps
         * the total). */
        c->linger_until = uv_now(c->loop) + LINGER_MS;
    }
    if (nread == UV_EOF) {
        c->eof_seen = true;
        if (c->shut_done) {
            tlsock__uv_close_all(c);
            return;
        }
    } else if (nread < 0) {
        c->broken = true;
        tlsock__uv_close_all(c);
        return;
    }
    tlsock__uv_settle(c);
}

/* Borrowed input becomes owned (a partial record at most); none left keeps no storage. */
static void keep_input(struct tlsock_uv_conn *c)
{
    if (c->tls == NULL || tlsock__conn_input_own(c->tls) == 0) {
        return;
    }
    if (c->dead == 0 && c->deferred == 0 && !c->closing && !c->handles_closing) {
        defer_failure(c, tlsock__uv_fail(c, TLSOCK_ENOMEM, "out of memory keeping input"));
    }
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct tlsock_uv_conn *c = stream->data;
    bool borrowed = false;
    int rc = 0;

    if (nread > 0 && !c->closing && !c->handles_closing) {
        c->last_rx = uv_now(c->loop);
        rc = feed_input(c, buf, (size_t)nread, &borrowed);
    }
    if (nread == 0 || c->handles_closing || c->closing) {
        release_buf(buf);
        if (nread != 0 && !c->handles_closing) {
            closing_read(c, nread);
        }
        return;
    }
    if (rc != 0) {
        c->broken = true;
        tlsock__uv_report(c, tlsock__uv_tls_fail(c, rc));
    } else if (nread == UV_EOF) {
        /* TLS tells close_notify (ECLOSED) from a bare end (ETRUNCATED) on the next read. */
        c->eof_seen = true;
        tlsock__conn_feed_eof(c->tls);
    } else if (nread == UV_ENOBUFS) {
        tlsock__uv_report(c, tlsock__uv_fail(c, TLSOCK_ENOMEM, "out of memory for a read"));
    } else if (nread < 0) {
        transport_failed(c);
        tlsock__uv_report(c, tlsock__uv_sys_fail(c, (int)nread, "connection reset"));
    }
    tlsock__uv_pump(c, true);
    if (borrowed) {
        /* The read buffer goes back to the thread: keep what TLS did not use yet. */
        keep_input(c);
    }
    release_buf(buf);
}

/* ---------------------------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------------------------- */

static void write_cb(uv_write_t *req, int status);

/* Records a failure found where no callback may run; the loop reports it. */
static void defer_failure(struct tlsock_uv_conn *c, int code)
{
    if (c->deferred == 0 && c->dead == 0) {
        c->deferred = code;
    }
    tlsock__uv_kick(c);
}

/* Sends whatever TLS produced, as one uv_write that takes over the drained storage. */
static void flush_output(struct tlsock_uv_conn *c)
{
    struct tlsock__buf taken = tlsock__conn_output_take(c->tls);
    struct tlsock__buf *out = &taken;
    size_t n = tlsock__buf_pending(out);
    struct tlsock__uv_batch *b = NULL;
    uv_buf_t ub;
    bool sync_attempt;
    int rc;

    if (n == 0 || c->handles_closing || c->shut_started || tcp_closed(c)) {
        /* Nothing to send, or too late to send it: keep no storage. */
        output_free(out);
        return;
    }
    b = malloc(sizeof(*b));
    if (b == NULL) {
        output_free(out);
        defer_failure(c, tlsock__uv_fail(c, TLSOCK_ENOMEM, "out of memory sending"));
        return;
    }
    b->conn = c;
    b->data = out->data;
    b->cap = out->cap;
    b->len = n;
    b->req.data = b;
    ub = uv_buf_init((char *)out->data + out->off, (unsigned)n);
    memset(out, 0, sizeof(*out));
    sync_attempt = c->tcp.write_queue_size == 0;
    rc = uv_write(&b->req, (uv_stream_t *)&c->tcp, &ub, 1, write_cb);
    if (rc != 0) {
        batch_free(b->data, b->cap);
        free(b);
        defer_failure(c, tlsock__uv_sys_fail(c, rc, "write"));
        transport_failed(c);
        return;
    }
    if (c->cipher_inflight == 0) {
        c->last_wprog = uv_now(c->loop);
    }
    c->cipher_inflight += n;
    c->cipher_sent += n;
    /*
     * With its queue empty, libuv writes at once, and reports a failure only from the next loop
     * iteration, where it first writes whatever was queued after it: a second write after a
     * reset, which raises SIGPIPE. Bytes still queued after such a write mean a full socket
     * buffer or a failure; the TCP state tells which (a reset leaves CLOSE).
     */
    if (sync_attempt && c->tcp.write_queue_size > 0 && tcp_reset_seen(c)) {
        defer_failure(c, tlsock__uv_sys_fail(c, UV_ECONNRESET, "connection reset"));
        transport_failed(c);
    }
}

/* Storage for a batch of records, so that encrypting does not grow the queue step by step. */
static void reserve_output(struct tlsock_uv_conn *c)
{
    if (tlsock__conn_output_reserve(c->tls, BATCH_CIPHER_CAP) != 0) {
        return; /* without memory the output grows as records come; a failure shows there */
    }
}

/*
 * Encrypts queued writes in order, a batch at a time, while less than HIGH_WATER of ciphertext
 * waits in libuv (initial data always goes at once). Runs no user callback.
 */
static void send_writes(struct tlsock_uv_conn *c)
{
    if (c->phase != TLSOCK__UV_OPEN || c->dead != 0 || c->deferred != 0 || c->handles_closing ||
        c->notify_done) {
        return;
    }
    while (c->wq_enc != NULL && (c->cipher_inflight < HIGH_WATER || c->wq_enc->internal)) {
        size_t budget = BATCH_PLAIN;
        reserve_output(c);
        while (c->wq_enc != NULL && budget > 0) {
            struct tlsock__uv_write *w = c->wq_enc;
            while (w->done < w->len && budget > 0) {
                size_t n = w->len - w->done;
                n = n < PLAIN_CHUNK ? n : PLAIN_CHUNK;
                n = n < budget ? n : budget;
                int rc = tls_write(c, w->buf + w->done, n);
                if (rc != 0) {
                    flush_output(c);
                    defer_failure(c, tlsock__uv_tls_fail(c, rc));
                    return;
                }
                w->done += n;
                budget -= n;
                c->plain_queued -= n;
            }
            if (w->done < w->len) {
                break;
            }
            w->end = c->cipher_sent + tlsock__conn_output_pending(c->tls);
            c->wq_enc = w->next;
        }
        flush_output(c);
        if (c->deferred != 0) {
            return;
        }
    }
}

/* Completes, in order, the requests whose last byte libuv has written. */
static void complete_writes(struct tlsock_uv_conn *c)
{
    while (c->wq_head != NULL && c->wq_head != c->wq_enc && c->wq_head->end <= c->cipher_done &&
           c->dead == 0 && !c->handles_closing) {
        struct tlsock__uv_write *w = c->wq_head;
        void *arg = w->arg;
        bool internal = w->internal;

        c->wq_head = w->next;
        if (c->wq_head == NULL) {
            c->wq_tail = NULL;
        }
        if (w->owned) {
            free((void *)w->buf);
        }
        free(w);
        if (!internal && c->cfg.on_write != NULL) {
            c->cfg.on_write(c, arg, 0);
        }
    }
}

static void write_cb(uv_write_t *req, int status)
{
    struct tlsock__uv_batch *b = req->data;
    struct tlsock_uv_conn *c = b->conn;

    c->cipher_inflight -= b->len;
    c->cipher_done += b->len;
    batch_free(b->data, b->cap);
    free(b);
    if (c->handles_closing) {
        return; /* canceled by the close: what is pending completes in finish */
    }
    if (status < 0) {
        /* The first transport error is the connection's: the cancellations that follow it
         * (UV_ECANCELED, from closing the handle) change nothing. */
        bool first = c->dead == 0 && c->deferred == 0 && !c->broken;
        transport_failed(c);
        if (c->closing) {
            tlsock__uv_close_all(c);
            return;
        }
        if (first) {
            tlsock__uv_report(c, tlsock__uv_sys_fail(c, status, "connection reset"));
        }
        tlsock__uv_pump(c, false);
        return;
    }
    c->last_wprog = uv_now(c->loop);
    tlsock__uv_pump(c, false);
}

/* ---------------------------------------------------------------------------------------------
 * The engine
 * ------------------------------------------------------------------------------------------- */

void tlsock__uv_report(struct tlsock_uv_conn *c, int code)
{
    if (code != TLSOCK_ECLOSED && c->dead == 0) {
        c->dead = code;
    }
    if (c->closing || c->handles_closing) {
        return; /* the application is done with it; finish reports what is left */
    }
    if (!c->connect_reported) {
        c->connect_reported = true;
        if (c->server != NULL) {
            struct tlsock_uv_server *s = c->server;
            const char *msg =
                tlsock__err_set(&c->err) ? tlsock__err_msg(&c->err) : tlsock_strerror(code);
            /* The application never saw this client: the driver closes it itself. */
            c->silent = true;
            if (s->on_accept_error != NULL) {
                s->on_accept_error(s, code, msg);
            }
            tlsock__uv_close_begin(c);
            return;
        }
        if (c->cfg.on_connect != NULL) {
            c->cfg.on_connect(c, code);
        }
        return;
    }
    if (c->cfg.on_event != NULL) {
        c->cfg.on_event(c, code);
    }
}

/* The handshake is done: initial data goes out, then the application gets the connection. */
static void become_open(struct tlsock_uv_conn *c)
{
    struct tlsock_uv_server *s = c->server;

    c->phase = TLSOCK__UV_OPEN;
    c->phase_deadline = 0;
    c->last_rx = uv_now(c->loop);
    send_writes(c);
    if (s != NULL) {
        /* Handed to the application: the server no longer waits for it. */
        c->server = NULL;
        c->connect_reported = true;
        if (c->cfg.on_connect != NULL) {
            c->cfg.on_connect(c, 0);
        }
        tlsock__uv_server_client_done(s);
    }
}

static void handshake_step(struct tlsock_uv_conn *c)
{
    int rc = tls_handshake(c);

    flush_output(c);
    if (rc == 0) {
        become_open(c);
    } else if (rc != TLSOCK_EWANT_READ && rc != TLSOCK_EWANT_WRITE) {
        tlsock__uv_report(c, tls_or_reset_fail(c, rc));
    }
}

static bool may_deliver(const struct tlsock_uv_conn *c)
{
    return c->phase == TLSOCK__UV_OPEN && c->connect_reported && c->dead == 0 && !c->closing &&
           !c->releasing && !c->user_stopped && !c->peer_closed && !c->handles_closing;
}

/* Decrypts what was fed and delivers it, until TLS wants more or the application stops. */
static void deliver_reads(struct tlsock_uv_conn *c)
{
    unsigned char buf[DECRYPT_BUF];

    while (may_deliver(c)) {
        size_t n = 0;
        int rc = tls_read(c, buf, sizeof(buf), &n);
        if (rc == 0) {
            if (c->cfg.on_read != NULL) {
                c->cfg.on_read(c, buf, n);
            }
            continue;
        }
        if (rc == TLSOCK_EWANT_READ || rc == TLSOCK_EWANT_WRITE) {
            break;
        }
        if (rc == TLSOCK_ECLOSED) {
            /* Reading ends; writing may go on (a half-closed session). */
            c->peer_closed = true;
            tlsock__uv_fail(c, rc, "peer sent close_notify");
        } else {
            rc = tls_or_reset_fail(c, rc);
        }
        tlsock__uv_report(c, rc);
        break;
    }
    /* Reading may have produced output (a key update answer). */
    flush_output(c);
}

static void shutdown_cb(uv_shutdown_t *req, int status);
static void after_fin(struct tlsock_uv_conn *c);

/* Our FIN after the queued writes. The request is allocated only now: idle connections stay
 * small. Freed with the connection (its callback always runs before the handle's close). */
static int send_fin(struct tlsock_uv_conn *c)
{
    int rc;

    if (c->shut == NULL) {
        c->shut = malloc(sizeof(*c->shut));
        if (c->shut == NULL) {
            return UV_ENOMEM;
        }
        c->shut->data = c;
    }
    rc = uv_shutdown(c->shut, (uv_stream_t *)&c->tcp, shutdown_cb);
    return rc;
}

/* Graceful close: queued writes, close_notify, FIN, then the peer's EOF or a short linger. */
static void close_step(struct tlsock_uv_conn *c)
{
    if (c->handles_closing) {
        return;
    }
    if (!c->graceful) {
        tlsock__uv_close_all(c);
        return;
    }
    if (!c->notify_done) {
        /* close_notify only ends a healthy session, after every queued write. */
        bool healthy = c->phase == TLSOCK__UV_OPEN && c->dead == 0 && c->deferred == 0;
        if (healthy) {
            send_writes(c);
            if (c->wq_enc != NULL && c->deferred == 0) {
                return; /* more to encrypt once libuv took what waits */
            }
        }
        c->notify_done = true;
        /* A timed-out reader still has a sound session: it says goodbye properly. */
        bool tls_ok = c->phase == TLSOCK__UV_OPEN && !c->broken && c->deferred == 0 &&
                      tlsock__conn_is_open(c->tls);
        if (tls_ok && !tlsock__conn_sent_close(c->tls)) {
            int rc = tls_close_notify(c);
            (void)rc; /* best effort: the application is done with the connection */
            flush_output(c);
        }
    }
    if (c->shut_started) {
        if (c->shut_done && c->linger_until == 0) {
            after_fin(c); /* tlsock_uv_shutdown() sent it before the close */
        }
        return;
    }
    {
        if (c->borrowed_fd) {
            /* Not our socket: no FIN; close once libuv wrote everything. */
            if (c->cipher_inflight == 0) {
                tlsock__uv_close_all(c);
            }
            return;
        }
        c->shut_started = true;
        int rc = send_fin(c);
        if (rc != 0) {
            tlsock__uv_close_all(c);
        }
    }
}

/* tlsock_uv_shutdown(): once every write is encrypted, close_notify, then our FIN. */
static void half_close_step(struct tlsock_uv_conn *c)
{
    if (c->phase != TLSOCK__UV_OPEN || !c->connect_reported || c->dead != 0 || c->deferred != 0 ||
        c->handles_closing || tcp_closed(c)) {
        return;
    }
    if (!c->notify_done) {
        if (c->wq_enc != NULL) {
            return; /* more to encrypt once libuv took what waits */
        }
        c->notify_done = true;
        if (tlsock__conn_is_open(c->tls) && !tlsock__conn_sent_close(c->tls)) {
            int rc = tls_close_notify(c);
            flush_output(c);
            if (rc != 0 && rc != TLSOCK_EWANT_READ && rc != TLSOCK_EWANT_WRITE) {
                tlsock__uv_report(c, tlsock__uv_tls_fail(c, rc));
                return;
            }
        }
    }
    if (!c->shut_started && !c->borrowed_fd) {
        /* libuv sends the FIN after the writes queued before it. */
        int rc = send_fin(c);
        c->shut_started = true;
        if (rc == UV_ENOMEM) {
            tlsock__uv_report(c, tlsock__uv_fail(c, TLSOCK_ENOMEM, "out of memory shutting down"));
        } else if (rc != 0) {
            transport_failed(c);
            tlsock__uv_report(c, tlsock__uv_sys_fail(c, rc, "shutdown"));
        }
    }
}

/* The session is about to work: its implementation keeps its record buffers meanwhile. */
static void hold_buffers(struct tlsock_uv_conn *c)
{
    if (!c->buffers_held && c->tls != NULL && c->phase >= TLSOCK__UV_HANDSHAKING) {
        c->buffers_held = true;
        tlsock__conn_hold_buffers(c->tls, true);
    }
}

/* Nothing in flight either way any more: an idle connection holds no record buffers. */
static void maybe_idle(struct tlsock_uv_conn *c)
{
    if (c->buffers_held && c->cipher_inflight == 0 && c->wq_head == NULL &&
        tlsock__conn_input_pending(c->tls) == 0 && !c->released) {
        c->buffers_held = false;
        tlsock__conn_hold_buffers(c->tls, false);
    }
}

void tlsock__uv_pump(struct tlsock_uv_conn *c, bool read)
{
    if (c->handles_closing) {
        return;
    }
    hold_buffers(c);
    if (c->deferred != 0) {
        int code = c->deferred;
        c->deferred = 0;
        tlsock__uv_report(c, code);
    }
    if (!c->closing && c->dead == 0 && c->phase == TLSOCK__UV_HANDSHAKING) {
        handshake_step(c);
    }
    if (!c->closing && c->dead == 0 && c->phase == TLSOCK__UV_OPEN && !c->connect_reported) {
        /* An adopted connection whose handshake was already done: initial data goes first. */
        send_writes(c);
        c->connect_reported = true;
        if (c->cfg.on_connect != NULL) {
            c->cfg.on_connect(c, 0);
        }
    }
    if (read) {
        deliver_reads(c);
    }
    if (!c->closing) {
        send_writes(c);
        if (c->wr_shut) {
            half_close_step(c);
        }
    }
    complete_writes(c);
    if (c->closing) {
        close_step(c);
    } else if (c->releasing) {
        keep_input(c); /* the blocking side takes over what is left of the input */
        tlsock__uv_release_step(c);
    }
    if (c->tls != NULL) {
        tlsock__conn_input_trim(c->tls); /* idle connections keep no input storage */
    }
    if (c->tls != NULL && !c->handles_closing) {
        maybe_idle(c);
    }
    tlsock__uv_settle(c);
}

void tlsock__uv_start_tls(struct tlsock_uv_conn *c)
{
    int ms = tlsock__conn_handshake_timeout(c->tls);

    uv_update_time(c->loop); /* the loop's clock is cached: deadlines start from now */
    c->phase = TLSOCK__UV_HANDSHAKING;
    c->phase_deadline = ms > 0 ? uv_now(c->loop) + (uint64_t)ms : 0;
    if (tlsock__conn_is_open(c->tls)) {
        c->phase = TLSOCK__UV_OPEN;
        c->phase_deadline = 0;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Closing and freeing
 * ------------------------------------------------------------------------------------------- */

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    struct tlsock_uv_conn *c = req->data;

    if (c->handles_closing) {
        return;
    }
    if (status < 0) {
        bool first = c->dead == 0 && c->deferred == 0 && !c->broken;
        transport_failed(c);
        if (c->closing) {
            tlsock__uv_close_all(c);
        } else if (first && status != UV_ECANCELED) {
            tlsock__uv_report(c, tlsock__uv_sys_fail(c, status, "shutdown"));
            tlsock__uv_settle(c);
        }
        return;
    }
    c->shut_done = true;
    after_fin(c);
}

/* Our FIN is out. Closing: wait for the peer's EOF (or a short linger); else read on. */
static void after_fin(struct tlsock_uv_conn *c)
{
    if (!c->closing) {
        return;
    }
    if (c->eof_seen || !c->reading) {
        tlsock__uv_close_all(c);
        return;
    }
    uv_update_time(c->loop); /* the loop's clock is cached: the linger starts now */
    c->linger_until = uv_now(c->loop) + LINGER_MS;
    arm_timer(c);
}

void tlsock__uv_close_begin(struct tlsock_uv_conn *c)
{
    if (c->closing || c->handles_closing) {
        return;
    }
    c->closing = true;
    /* Before the TCP connection exists, or after it broke, there is nothing to say goodbye on. */
    c->graceful = c->phase >= TLSOCK__UV_HANDSHAKING && !c->broken;
    if (!c->graceful) {
        tlsock__uv_close_all(c);
        return;
    }
    /* Like the write timeout: a flush that makes progress goes on, a stuck one is cut. */
    int limit = c->cfg.write_timeout_ms > 0 ? c->cfg.write_timeout_ms : CLOSE_DEFAULT_MS;
    uv_update_time(c->loop);
    c->close_limit = (uint64_t)limit;
    c->last_wprog = uv_now(c->loop);
    c->armed = false;
    uv_timer_stop(&c->timer);
    tlsock__uv_kick(c);
    tlsock__uv_settle(c);
}

/*
 * Reads and drops what already arrived, right before the socket closes: closing with unread
 * input makes the kernel reset the connection, and the reset destroys what the peer has not
 * read yet of ours. Bounded; never on a socket that is not ours to read (borrowed, or handed to
 * the blocking side by a release).
 */
static void drain_socket(struct tlsock_uv_conn *c)
{
    char buf[16384];
    uv_os_fd_t fd = -1;

    if (c->phase < TLSOCK__UV_HANDSHAKING || c->borrowed_fd || c->released || c->eof_seen ||
        uv_is_closing((uv_handle_t *)&c->tcp) || uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) {
        return;
    }
    for (int i = 0; i < 64; i++) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n <= 0 && !(n < 0 && errno == EINTR)) {
            break;
        }
    }
}

void tlsock__uv_close_all(struct tlsock_uv_conn *c)
{
    if (c->handles_closing) {
        return;
    }
    c->handles_closing = true;
    drain_socket(c);
    c->reading = false;
    if (c->gai_pending) {
        uv_cancel((uv_req_t *)&c->conn->gai);
    }
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
        uv_close((uv_handle_t *)&c->tcp, tlsock__uv_handle_closed);
    }
    uv_close((uv_handle_t *)&c->timer, tlsock__uv_handle_closed);
    uv_close((uv_handle_t *)&c->kick, tlsock__uv_handle_closed);
}

void tlsock__uv_handle_closed(uv_handle_t *handle)
{
    struct tlsock_uv_conn *c = handle->data;

    c->handles--;
    tlsock__uv_maybe_finish(c);
}

static void free_queue(struct tlsock_uv_conn *c)
{
    while (c->wq_head != NULL) {
        struct tlsock__uv_write *w = c->wq_head;
        c->wq_head = w->next;
        if (w->owned) {
            free((void *)w->buf);
        }
        free(w);
    }
    c->wq_tail = NULL;
    c->wq_enc = NULL;
}

void tlsock__uv_conn_discard(struct tlsock_uv_conn *c)
{
    free_queue(c);
    free(c);
}

/* Every handle is closed: the last callbacks, in order, then the memory. */
static void finish(struct tlsock_uv_conn *c)
{
    struct tlsock_uv_server *server = c->silent ? c->server : NULL;

    if (!c->silent) {
        if (!c->connect_reported) {
            c->connect_reported = true;
            if (c->cfg.on_connect != NULL) {
                c->cfg.on_connect(c, TLSOCK_ECANCELED);
            }
        }
        /* Pending writes complete in order: with 0 if libuv wrote all of it before the close
         * (a healthy connection), else with ECANCELED. */
        while (c->wq_head != NULL) {
            struct tlsock__uv_write *w = c->wq_head;
            void *arg = w->arg;
            bool internal = w->internal;
            bool written =
                c->dead == 0 && w->done == w->len && w != c->wq_enc && w->end <= c->cipher_done;
            c->wq_head = w->next;
            if (w->owned) {
                free((void *)w->buf);
            }
            free(w);
            if (c->wq_enc == w) {
                c->wq_enc = c->wq_head;
            }
            if (!internal && c->cfg.on_write != NULL) {
                c->cfg.on_write(c, arg, written ? 0 : TLSOCK_ECANCELED);
            }
        }
        c->wq_tail = NULL;
        c->wq_enc = NULL;
        if (c->released) {
            struct tlsock_conn *tls = c->tls;
            c->tls = NULL; /* the caller's now */
            c->release_cb(c, tls, 0);
        } else {
            if (c->release_cb != NULL) {
                c->release_cb(c, NULL, TLSOCK_ECANCELED);
            }
            if (c->cfg.on_close != NULL) {
                c->cfg.on_close(c);
            }
        }
    }
    free_queue(c);
    if (c->tls != NULL) {
        tlsock__uv_tls_drop(c->tls);
    }
    if (c->conn != NULL) {
        uv_freeaddrinfo(c->conn->addrs);
        free(c->conn);
    }
    free(c->shut);
    tlsock__err_free(&c->err);
    free(c);
    if (server != NULL) {
        tlsock__uv_server_client_done(server);
    }
}

void tlsock__uv_maybe_finish(struct tlsock_uv_conn *c)
{
    if (c->handles == 0 && !c->gai_pending) {
        finish(c);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Public functions on a connection
 * ------------------------------------------------------------------------------------------- */

int tlsock_uv_write(struct tlsock_uv_conn *conn, const void *buf, size_t len, void *write_arg)
{
    struct tlsock_uv_conn *c = conn;
    struct tlsock__uv_write *w = NULL;

    if (c == NULL || (buf == NULL && len > 0)) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "tlsock_uv_write: connection and buffer needed");
    }
    if (c->closing || c->handles_closing || c->releasing || c->wr_shut) {
        return tlsock__uv_fail(c, TLSOCK_EINVAL, "write on a connection that is %s",
                               c->releasing ? "being released"
                               : c->wr_shut ? "shut down for writing"
                                            : "closing");
    }
    /* A failure found but not reported yet (deferred) does not refuse writes: the application
     * has not been told, so the write is queued and canceled at the close like the others. */
    if (c->dead != 0) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "write on a dead connection (%s): %s",
                            tlsock_err_name(c->dead), tlsock_uv_conn_errmsg(c));
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return tlsock__fail(NULL, TLSOCK_ENOMEM, "out of memory queueing a write");
    }
    w->buf = buf;
    w->len = len;
    w->arg = write_arg;
    if (c->wq_tail != NULL) {
        c->wq_tail->next = w;
    } else {
        c->wq_head = w;
    }
    c->wq_tail = w;
    if (c->wq_enc == NULL) {
        c->wq_enc = w;
    }
    c->plain_queued += len;
    if (c->phase == TLSOCK__UV_OPEN) {
        hold_buffers(c);
        send_writes(c);
        arm_timer(c);
    }
    if (len == 0) {
        /* Nothing of it goes to libuv, so no write callback will complete it: the loop does. */
        tlsock__uv_kick(c);
    }
    return 0;
}

size_t tlsock_uv_conn_write_queue_size(const struct tlsock_uv_conn *conn)
{
    return conn != NULL ? conn->plain_queued + conn->cipher_inflight : 0;
}

int tlsock_uv_read_stop(struct tlsock_uv_conn *conn)
{
    if (conn == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "tlsock_uv_read_stop: connection is NULL");
    }
    conn->user_stopped = true;
    tlsock__uv_settle(conn);
    return 0;
}

int tlsock_uv_read_start(struct tlsock_uv_conn *conn)
{
    if (conn == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "tlsock_uv_read_start: connection is NULL");
    }
    if (conn->closing || conn->handles_closing || conn->releasing || conn->dead != 0) {
        return tlsock__uv_fail(conn, TLSOCK_EINVAL,
                               "read_start on a connection that is closing, released or dead");
    }
    if (conn->user_stopped) {
        conn->user_stopped = false;
        conn->last_rx = uv_now(conn->loop);
        /* What TLS already holds is delivered from the loop. */
        tlsock__uv_kick(conn);
        tlsock__uv_settle(conn);
    }
    return 0;
}

void tlsock_uv_close(struct tlsock_uv_conn *conn)
{
    if (conn == NULL || conn->closing || conn->handles_closing) {
        return;
    }
    tlsock__uv_close_begin(conn);
}

int tlsock_uv_shutdown(struct tlsock_uv_conn *conn)
{
    struct tlsock_uv_conn *c = conn;

    if (c == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "tlsock_uv_shutdown: connection is NULL");
    }
    if (c->closing || c->handles_closing || c->releasing || c->wr_shut) {
        return tlsock__uv_fail(c, TLSOCK_EINVAL, "shutdown on a connection that is %s",
                               c->wr_shut ? "already shut down" : "closing or being released");
    }
    if (c->dead != 0 || c->deferred != 0) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "shutdown on a dead connection (%s): %s",
                            tlsock_err_name(c->dead != 0 ? c->dead : c->deferred),
                            tlsock_uv_conn_errmsg(c));
    }
    c->wr_shut = true;
    tlsock__uv_kick(c);
    return 0;
}

int tlsock_uv_conn_peername(const struct tlsock_uv_conn *conn, struct sockaddr_storage *addr)
{
    int len = (int)sizeof(*addr);

    if (conn == NULL || addr == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL,
                            "tlsock_uv_conn_peername: connection and addr needed");
    }
    if (conn->phase < TLSOCK__UV_HANDSHAKING || conn->handles_closing || tcp_closed(conn) ||
        uv_tcp_getpeername(&conn->tcp, (struct sockaddr *)addr, &len) != 0) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "tlsock_uv_conn_peername: no TCP connection");
    }
    return 0;
}

void *tlsock_uv_conn_user(const struct tlsock_uv_conn *conn)
{
    return conn != NULL ? conn->user : NULL;
}

void tlsock_uv_conn_set_user(struct tlsock_uv_conn *conn, void *user)
{
    if (conn != NULL) {
        conn->user = user;
    }
}

uv_loop_t *tlsock_uv_conn_loop(const struct tlsock_uv_conn *conn)
{
    return conn != NULL ? conn->loop : NULL;
}

struct tlsock_conn *tlsock_uv_conn_tls(struct tlsock_uv_conn *conn)
{
    if (conn == NULL || conn->phase < TLSOCK__UV_HANDSHAKING) {
        return NULL;
    }
    return conn->tls;
}

const char *tlsock_uv_conn_errmsg(const struct tlsock_uv_conn *conn)
{
    if (conn == NULL) {
        return "connection is NULL";
    }
    return tlsock__err_msg(&conn->err);
}
