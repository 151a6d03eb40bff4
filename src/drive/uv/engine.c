/*
 * The per-connection engine of the libuv driver: ciphertext that arrives is fed to the memory
 * transport, the TLS steps run (they never block: TLSOCK_EWANT_READ means "wait for input"),
 * writes are encrypted and sent (writes.c), the close runs (close.c); deadlines that pass and
 * every libuv callback of a connection come here.
 *
 * Callback discipline (libuv's rules, include/tlsock/uv.h):
 *   - user callbacks run only from loop callbacks (read, write, shutdown, timer, idle,
 *     close), never inside an API call: an API call that needs work done kicks the connection,
 *     and the loop runs its pump before it polls again;
 *   - a user callback may call anything on its connection, including tlsock_uv_close(): every
 *     step below asks the state again after a callback, and the memory goes only from the
 *     socket's close callback (close.c), after on_close returned.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "uv_int.h"

enum {
    DECRYPT_BUF = 16384, /* one record of plaintext */
};

static void written_cb(uv_write_t *req, int status);
static void fin_sent_cb(uv_shutdown_t *req, int status);
static void kicked(struct tlsock_uv_conn *c);
static void expire(struct tlsock_uv_conn *c);

static const struct tlsock__uv_hooks hooks = {
    .written = written_cb,
    .fin_sent = fin_sent_cb,
    .run = kicked,
    .expire = expire,
    .closed = tlsock__uv_socket_closed,
};

/* ---- creating connections -------------------------------------------------------------------- */

int tlsock__uv_opts_copy(const struct tlsock_uv_opts *opts, const char *caller,
                         struct tlsock_uv_opts *out)
{
    struct tlsock_uv_opts o = TLSOCK_UV_OPTS_INIT;

    if (opts != NULL && opts->size > 0) {
        memcpy(&o, opts, opts->size < sizeof(o) ? opts->size : sizeof(o));
        o.size = sizeof(o);
    }
    *out = o;
    if (o.connect_timeout_ms < 0 || o.handshake_timeout_ms < 0 || o.read_idle_timeout_ms < 0 ||
        o.write_timeout_ms < 0) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "%s: a timeout is negative (0 means none)",
                            caller);
    }
    return 0;
}

struct tlsock__uv_config *tlsock__uv_config_new(const struct tlsock_uv_opts *o)
{
    struct tlsock__uv_config *cfg = malloc(sizeof(*cfg));

    if (cfg != NULL) {
        *cfg = (struct tlsock__uv_config){
            .refs = 1,
            .live = 0,
            .on_connect = o->on_connect,
            .on_read = o->on_read,
            .on_event = o->on_event,
            .on_write = o->on_write,
            .on_close = o->on_close,
            .queue_limit = o->queue_limit > 0 ? o->queue_limit : TLSOCK__UV_QUEUE_LIMIT,
            .read_idle_timeout_ms = o->read_idle_timeout_ms,
            .write_timeout_ms = o->write_timeout_ms,
        };
    }
    return cfg;
}

void tlsock__uv_config_unref(struct tlsock__uv_config *cfg)
{
    if (cfg != NULL && --cfg->refs == 0) {
        free(cfg);
    }
}

struct tlsock__uv_loop *tlsock__uv_loop_use(uv_loop_t *loop)
{
    return tlsock__uv_loop_ref(loop, &hooks);
}

/* Memory per idle connection (docs/async.md, "Memory"): a 384-byte glibc chunk on x86-64. */
_Static_assert(sizeof(struct tlsock_uv_conn) <= sizeof(uv_tcp_t) + 128,
               "the driver's connection grew: memory per idle connection");

struct tlsock_uv_conn *tlsock__uv_conn_alloc(uv_loop_t *loop, struct tlsock__uv_config *cfg,
                                             void *user)
{
    struct tlsock_uv_conn *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        return NULL;
    }
    c->lp = tlsock__uv_loop_use(loop);
    if (c->lp == NULL) {
        free(c);
        return NULL;
    }
    c->cfg = cfg;
    cfg->refs++;
    atomic_fetch_add_explicit(&cfg->live, 1, memory_order_relaxed);
    c->tcp.data = user;
    c->heap_idx = UINT32_MAX;
    return c;
}

struct tlsock_uv_conn *tlsock__uv_conn_of(const uv_handle_t *handle)
{
    return (struct tlsock_uv_conn *)((char *)handle - offsetof(struct tlsock_uv_conn, tcp));
}

struct tlsock_uv_server *tlsock__uv_server_of(const struct tlsock_uv_conn *c)
{
    return c->accepted ? c->origin.server : NULL;
}

struct tlsock__uv_connecting *tlsock__uv_connecting_of(const struct tlsock_uv_conn *c)
{
    return c->accepted ? NULL : c->origin.connecting;
}

void tlsock__uv_start_tls(struct tlsock_uv_conn *c)
{
    int ms = tlsock__conn_handshake_timeout(c->tls);
    int fd = -1;

    /* tlsock_conn_info() gives the peer's address from the loop's socket. */
    if (uv_fileno((const uv_handle_t *)&c->tcp, &fd) == 0) {
        tlsock__conn_set_addr_fd(c->tls, fd);
    }
    tlsock__uv_watch_store(c);

    uv_update_time(c->lp->loop); /* the loop's clock is cached: deadlines start from now */
    tlsock__uv_link_enter(c, TLSOCK__UV_LINK_UP);
    tlsock__uv_enter(c, TLSOCK__UV_HANDSHAKING);
    c->until = ms > 0 ? uv_now(c->lp->loop) + (uint64_t)ms : 0;
    c->last_rx = uv_now(c->lp->loop);
}

void tlsock__uv_forget_addr(struct tlsock_uv_conn *c)
{
    if (c->tls != NULL) {
        tlsock__conn_set_addr_fd(c->tls, -1);
    }
}

/* ---- the TLS session's steps: memory mode never waits, so each runs once and settles ----------
 */

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

static bool is_want(int rc)
{
    return rc == TLSOCK_EWANT_READ || rc == TLSOCK_EWANT_WRITE;
}

/* ---- reporting ------------------------------------------------------------------------------- */

void tlsock__uv_report(struct tlsock_uv_conn *c, int code)
{
    if (c->failure == 0) {
        c->failure = code;
    }
    if (c->state == TLSOCK__UV_DEAD || c->state == TLSOCK__UV_CLOSING || tlsock__uv_ended(c)) {
        return; /* told already, or the application is done with it: finish reports the rest */
    }
    if (tlsock__uv_before_ready(c)) {
        c->outcome_told = true;
        struct tlsock_uv_server *s = tlsock__uv_server_of(c);
        if (s != NULL) {
            const char *msg =
                tlsock__err_set(&c->err) ? tlsock__err_msg(&c->err) : tlsock_strerror(code);
            /* The application never saw this client: the driver closes it itself. */
            if (s->on_accept_error != NULL) {
                s->on_accept_error(s, code, msg);
            }
            tlsock__uv_close_begin(c);
            return;
        }
        tlsock__uv_enter(c, TLSOCK__UV_DEAD);
        if (c->cfg->on_connect != NULL) {
            c->cfg->on_connect(c, code);
        }
        return;
    }
    bool releasing = c->state == TLSOCK__UV_RELEASING;
    tlsock__uv_enter(c, TLSOCK__UV_DEAD);
    if (c->cfg->on_event != NULL) {
        c->cfg->on_event(c, code);
    }
    if (releasing && c->release_cb != NULL) {
        tlsock__uv_release_failed(c, code);
    }
}

/* ---- reading --------------------------------------------------------------------------------- */

/*
 * The errno of a reset behind an end of stream, 0 for a plain end: a write that met the reset
 * first consumed the socket's error, and the read after it only sees EOF. The pending error
 * says so if it is still there, else the TCP state does (a FIN leaves CLOSE_WAIT, a reset
 * CLOSE: we have sent no FIN yet).
 */
static int eof_reset_errno(const struct tlsock_uv_conn *c)
{
    uv_os_fd_t fd = -1;
    int err = 0;
    socklen_t len = sizeof(err);

    if (!tlsock__uv_link_up(c) || uv_fileno((const uv_handle_t *)&c->tcp, &fd) != 0) {
        return 0;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0) {
        return err;
    }
    if (c->tx < TLSOCK__UV_TX_FIN_SENT && tlsock__uv_tcp_reset_seen(c)) {
        return ECONNRESET;
    }
    return 0;
}

/* A TLS error, or for a truncation after a reset the reset (TLSOCK_ESYS). */
static int tls_or_reset_fail(struct tlsock_uv_conn *c, int rc)
{
    int err = rc == TLSOCK_ETRUNCATED && tlsock__uv_rx_eof(c) ? eof_reset_errno(c) : 0;

    if (err != 0) {
        rc = tlsock__uv_sys_fail(c, -err, "connection reset");
        tlsock__uv_link_broke(c);
        return rc;
    }
    return tlsock__uv_tls_fail(c, rc);
}

/* Whether the socket should be read now. */
static bool wants_reading(const struct tlsock_uv_conn *c)
{
    if (!tlsock__uv_link_up(c) || tlsock__uv_rx_eof(c)) {
        return false;
    }
    switch ((enum tlsock__uv_state)c->state) {
    case TLSOCK__UV_HANDSHAKING:
        /*
         * The handshake needs the peer's flights, whatever the write queue holds. But input TLS
         * does not take must not grow without bound: while a session store's get holds the
         * handshake (up to its bound), a peer could stream data into our memory as fast as it
         * sends. With a whole record waiting TLS can always go on, so reading stops there, and
         * the socket's buffers push back on the peer.
         */
        return tlsock__conn_input_pending(c->tls) < TLSOCK__UV_BLOCK;
    case TLSOCK__UV_OPEN:
        return !c->user_stopped && !c->throttled && !tlsock__uv_peer_notified(c);
    case TLSOCK__UV_CLOSING:
        /* Drain and drop what the peer still sends, so that closing never resets what we
         * sent last (a socket closed with unread input sends RST). */
        return !c->borrowed_fd;
    default:
        return false;
    }
}

static void alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf);
static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void update_reading(struct tlsock_uv_conn *c)
{
    bool want = wants_reading(c);

    if (want && !c->reading) {
        int rc = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
        if (rc == 0) {
            c->reading = true;
            return;
        }
        rc = tlsock__uv_sys_fail(c, rc, "read");
        tlsock__uv_link_broke(c);
        if (c->state == TLSOCK__UV_CLOSING) {
            tlsock__uv_close_all(c, TLSOCK__UV_CLOSED);
        } else {
            tlsock__uv_report(c, rc);
        }
    } else if (!want && c->reading) {
        if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
            uv_read_stop((uv_stream_t *)&c->tcp);
        }
        c->reading = false;
    }
}

void tlsock__uv_settle(struct tlsock_uv_conn *c)
{
    if (tlsock__uv_ended(c)) {
        return;
    }
    tlsock__uv_update_throttle(c);
    update_reading(c);
    if (!tlsock__uv_ended(c)) {
        tlsock__uv_arm(c);
    }
}

static bool may_deliver(const struct tlsock_uv_conn *c)
{
    return c->state == TLSOCK__UV_OPEN && !c->user_stopped && !tlsock__uv_peer_notified(c);
}

/* Decrypts what was fed and delivers it, until TLS wants more or the application stops; whether
 * anything was delivered. */
static bool deliver_reads(struct tlsock_uv_conn *c)
{
    unsigned char buf[DECRYPT_BUF];
    bool delivered = false;
    int rc = 0;

    while (may_deliver(c)) {
        size_t n = 0;
        rc = tls_read(c, buf, sizeof(buf), &n);
        if (rc == 0) {
            delivered = true;
            if (c->cfg->on_read != NULL) {
                c->cfg->on_read(c, buf, n);
            }
            continue;
        }
        if (is_want(rc)) {
            break;
        }
        if (rc == TLSOCK_ECLOSED) {
            /* Reading ends; writing may go on (a half-closed session). */
            tlsock__uv_rx_enter(c, c->rx == TLSOCK__UV_RX_LIVE ? TLSOCK__UV_RX_NOTIFIED
                                                               : TLSOCK__UV_RX_ENDED);
            tlsock__uv_fail(c, rc, "peer sent close_notify");
            if (c->cfg->on_event != NULL) {
                c->cfg->on_event(c, rc);
            }
        } else {
            tlsock__uv_report(c, tls_or_reset_fail(c, rc));
        }
        break;
    }
    /* Output reading produced (a key update answer) leaves at the end of the pump. */
    return delivered;
}

/*
 * Hands @p n received bytes to TLS. In the loop's read buffer they are read in place: what is
 * left of the previous record moves into the headroom in front of them, and the memory transport
 * borrows the whole until keep_input() after the pump. Elsewhere they are copied.
 */
static int feed_input(struct tlsock_uv_conn *c, const uv_buf_t *buf, size_t n, bool *borrowed)
{
    size_t left = tlsock__conn_input_pending(c->tls);

    *borrowed = false;
    if (!tlsock__uv_read_is_loops(c->lp, buf) || left > tlsock__uv_read_headroom()) {
        return tlsock__conn_feed(c->tls, buf->base, n);
    }
    (void)tlsock__conn_input_peek(c->tls, buf->base - left, left);
    struct tlsock__buf kept = tlsock__conn_input_take(c->tls);
    tlsock__uv_storage_put(c->lp, kept.data, kept.cap);
    tlsock__conn_input_borrow(c->tls, buf->base - left, left + n);
    *borrowed = true;
    return 0;
}

/* Borrowed input becomes owned (a partial record at most, in a spare block); none left keeps no
 * storage. */
static void keep_input(struct tlsock_uv_conn *c)
{
    void *block = NULL;

    if (c->tls == NULL) {
        return;
    }
    if (tlsock__conn_input_pending(c->tls) > 0) {
        block = tlsock__uv_spare_get(c->lp, TLSOCK__UV_SPARE_BLOCK);
    }
    if (block != NULL && tlsock__conn_input_own_into(c->tls, block, TLSOCK__UV_BLOCK)) {
        return;
    }
    tlsock__uv_spare_put(c->lp, TLSOCK__UV_SPARE_BLOCK, block);
    if (tlsock__conn_input_own(c->tls) == 0) {
        return;
    }
    tlsock__uv_report(c, tlsock__uv_fail(c, TLSOCK_ENOMEM, "out of memory keeping input"));
}

static void alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct tlsock_uv_conn *c = tlsock__uv_conn_of(handle);

    (void)suggested;
    tlsock__uv_read_alloc(c->lp, buf);
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct tlsock_uv_conn *c = tlsock__uv_conn_of((const uv_handle_t *)stream);
    bool borrowed = false;
    int rc = 0;

    if (nread == 0 || tlsock__uv_ended(c) || c->state == TLSOCK__UV_CLOSING) {
        tlsock__uv_read_release(c->lp, buf);
        if (nread != 0 && c->state == TLSOCK__UV_CLOSING) {
            tlsock__uv_closing_read(c, nread);
            tlsock__uv_settle(c);
        }
        return;
    }
    if (nread > 0) {
        c->last_rx = uv_now(c->lp->loop);
        rc = feed_input(c, buf, (size_t)nread, &borrowed);
        if (rc != 0) {
            /* Input is lost: the session cannot go on, nor end gracefully. */
            rc = tlsock__uv_tls_fail(c, rc);
            tlsock__uv_link_broke(c);
            tlsock__uv_report(c, rc);
        }
    } else if (nread == UV_EOF) {
        /* TLS tells close_notify (ECLOSED) from a bare end (ETRUNCATED) on the next read. */
        tlsock__uv_rx_enter(c,
                            c->rx == TLSOCK__UV_RX_LIVE ? TLSOCK__UV_RX_EOF : TLSOCK__UV_RX_ENDED);
        tlsock__conn_feed_eof(c->tls);
    } else if (nread == UV_ENOBUFS) {
        tlsock__uv_report(c, tlsock__uv_fail(c, TLSOCK_ENOMEM, "out of memory for a read"));
    } else {
        rc = tlsock__uv_sys_fail(c, (int)nread, "connection reset");
        tlsock__uv_link_broke(c);
        tlsock__uv_report(c, rc);
    }
    tlsock__uv_pump(c, true);
    if (borrowed) {
        /* The read buffer goes back to the loop: keep what TLS did not use yet. */
        keep_input(c);
    }
    tlsock__uv_read_release(c->lp, buf);
}

/* ---- the pump -------------------------------------------------------------------------------- */

/* The handshake is done: initial data goes out, then the application gets the connection. */
static void become_open(struct tlsock_uv_conn *c)
{
    struct tlsock_uv_server *s = tlsock__uv_server_of(c);
    int rc = 0;

    tlsock__uv_enter(c, TLSOCK__UV_OPEN);
    c->until = 0;
    /* The loop's clock is cached since its last poll, before this step's TLS work (a slow machine
     * or a busy turn takes tens of ms): the idle timeout starts when the application gets the
     * connection, not before. */
    uv_update_time(c->lp->loop);
    c->last_rx = uv_now(c->lp->loop);
    rc = tlsock__uv_encrypt_writes(c);
    if (s != NULL) {
        /* Handed to the application: the server no longer waits for it (nor resets it). */
        tlsock__uv_server_untrack(s, c);
        c->origin.server = NULL;
    }
    c->outcome_told = true;
    if (c->cfg->on_connect != NULL) {
        c->cfg->on_connect(c, 0);
    }
    if (s != NULL) {
        tlsock__uv_server_client_done(s);
    }
    if (rc != 0) {
        tlsock__uv_report(c, rc);
    }
}

static void handshake_step(struct tlsock_uv_conn *c)
{
    /* A server's session-store get waits only for a peer that may still answer. */
    if (tlsock__uv_rx_eof(c) && tlsock__conn_store_waiting(c->tls)) {
        tlsock__conn_store_give_up(c->tls);
    }
    int rc = tls_handshake(c);

    if (rc == 0) {
        /* The last flight (a server's tickets, a client's Finished) waits for the rest of the
         * pump: what on_connect writes, or the close_notify of a close it asks for, leaves in
         * the same write. */
        become_open(c);
        return;
    }
    size_t flight = tlsock__conn_output_pending(c->tls);
    int frc = tlsock__uv_flush(c);
    uv_os_fd_t fd;

    if (!is_want(rc)) {
        tlsock__uv_report(c, tls_or_reset_fail(c, rc));
    } else if (frc != 0) {
        tlsock__uv_report(c, frc);
    } else if (rc == TLSOCK_EWANT_READ && flight > 0 && tlsock__conn_quick_ack_due(c->tls) &&
               uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) {
        /* Once per flight: the client's Finished gets no reply to carry its ACK (core.h). */
        tlsock__quick_ack(fd);
    }
}

/* The session is about to work: its implementation keeps its record buffers meanwhile, and the
 * loop its spares. */
static void hold_buffers(struct tlsock_uv_conn *c)
{
    if (!c->buffers_held && c->tls != NULL && c->state >= TLSOCK__UV_HANDSHAKING) {
        c->buffers_held = true;
        tlsock__conn_hold_buffers(c->tls, true);
        tlsock__uv_loop_busy(c->lp, true);
    }
}

/* Nothing in flight either way for TLSOCK__UV_HOLD_MS (timers.c): an idle connection holds no
 * record buffers. Not at once: a stream pauses between reads, and would free and allocate its
 * buffers for every one. */
static void maybe_idle(struct tlsock_uv_conn *c)
{
    if (c->buffers_held && tlsock__uv_writes_idle(c) && tlsock__conn_input_pending(c->tls) == 0) {
        c->buffers_held = false;
        tlsock__conn_hold_buffers(c->tls, false);
        tlsock__uv_loop_busy(c->lp, false);
    }
}

/* Sends what the pump's steps left in the output (the handshake's last flight, what reading
 * produced) in one write. */
static void flush_left(struct tlsock_uv_conn *c)
{
    if (c->state != TLSOCK__UV_DEAD && tlsock__conn_output_pending(c->tls) > 0) {
        int rc = tlsock__uv_flush(c);
        if (rc != 0) {
            tlsock__uv_report(c, rc);
        }
    }
}

/*
 * tlsock_uv_server_abort() was called on the server this client still waits in (kicked by it, or
 * woken by the peer first): the client is never handed over. It fails as a handshake timeout
 * does, with TLSOCK_ECANCELED (unless on_accept_error was told of an earlier failure), and is
 * reset as tlsock_uv_abort() resets a connection: the peer learns at once. Whether it was.
 */
static bool cancel_if_aborted(struct tlsock_uv_conn *c)
{
    const struct tlsock_uv_server *s = tlsock__uv_server_of(c);

    if (s == NULL || !s->aborted) {
        return false;
    }
    if (!c->outcome_told) {
        tlsock__uv_report(
            c, tlsock__uv_fail(c, TLSOCK_ECANCELED, "the server was aborted during the handshake"));
    }
    tlsock__uv_abort(c);
    return true;
}

void tlsock__uv_pump(struct tlsock_uv_conn *c, bool read)
{
    bool moved = false; /* application data went either way */
    int rc = 0;

    if (tlsock__uv_ended(c) || cancel_if_aborted(c)) {
        return;
    }
    hold_buffers(c);
    if (c->state == TLSOCK__UV_HANDSHAKING) {
        handshake_step(c);
    }
    if (read) {
        moved = deliver_reads(c);
    }
    /* Completions first: what their callbacks write goes into this pump's batch. */
    moved = tlsock__uv_complete_writes(c) || moved;
    if (c->state == TLSOCK__UV_OPEN || c->state == TLSOCK__UV_RELEASING) {
        rc = tlsock__uv_encrypt_writes(c);
        if (rc != 0) {
            tlsock__uv_report(c, rc);
        }
    }
    if (c->state == TLSOCK__UV_OPEN && c->tx != TLSOCK__UV_TX_OPEN) {
        rc = tlsock__uv_half_close_step(c);
        if (rc != 0) {
            tlsock__uv_report(c, rc);
        }
    }
    if (c->state == TLSOCK__UV_CLOSING) {
        tlsock__uv_close_step(c);
    } else if (c->state == TLSOCK__UV_RELEASING) {
        flush_left(c); /* the blocking side takes over once libuv wrote everything */
        keep_input(c); /* the blocking side takes over what is left of the input */
        tlsock__uv_handover_step(c);
    }
    if (tlsock__uv_ended(c)) {
        return;
    }
    flush_left(c);
    if (tlsock__uv_ended(c)) {
        return;
    }
    /* An idle connection keeps no input storage, no write side, and soon no record buffers. */
    if (tlsock__conn_input_pending(c->tls) == 0) {
        struct tlsock__buf kept = tlsock__conn_input_take(c->tls);
        tlsock__uv_storage_put(c->lp, kept.data, kept.cap);
    }
    tlsock__uv_writes_trim(c);
    if (c->state != TLSOCK__UV_OPEN || !moved) {
        /* The hold is for a stream between its reads: a connection that only finished its
         * handshake, or is closing, lets go at once. */
        maybe_idle(c);
    }
    tlsock__uv_settle(c);
}

/* ---- the other libuv callbacks -----------------------------------------------------------------
 */

static void written_cb(uv_write_t *req, int status)
{
    struct tlsock_uv_conn *c = tlsock__uv_batch_done(req, status);

    if (tlsock__uv_ended(c)) {
        return; /* canceled by the close: what is pending completes in finish */
    }
    if (status < 0) {
        /* The first failure is the connection's, message included: the cancellations that
         * follow it (UV_ECANCELED, from closing the socket) change nothing. */
        bool first = c->failure == 0 && c->link == TLSOCK__UV_LINK_UP;
        int rc = first ? tlsock__uv_sys_fail(c, status, "connection reset") : 0;
        tlsock__uv_link_broke(c);
        if (c->state == TLSOCK__UV_CLOSING) {
            tlsock__uv_close_all(c, TLSOCK__UV_CLOSED);
            return;
        }
        if (first && status != UV_ECANCELED) {
            tlsock__uv_report(c, rc);
        }
    }
    tlsock__uv_pump(c, false);
}

static void fin_sent_cb(uv_shutdown_t *req, int status)
{
    struct tlsock_uv_conn *c = req->data;

    free(req);
    if (tlsock__uv_ended(c)) {
        return;
    }
    if (status < 0) {
        bool first = c->failure == 0 && c->link == TLSOCK__UV_LINK_UP;
        tlsock__uv_link_broke(c);
        if (c->state == TLSOCK__UV_CLOSING) {
            tlsock__uv_close_all(c, TLSOCK__UV_CLOSED);
        } else if (first && status != UV_ECANCELED) {
            tlsock__uv_report(c, tlsock__uv_sys_fail(c, status, "shutdown"));
            tlsock__uv_settle(c);
        }
        return;
    }
    tlsock__uv_tx_enter(c, TLSOCK__UV_TX_FIN_DONE);
    tlsock__uv_after_fin(c);
}

/* Kicked by an API call (or by a close whose socket was already closed). */
static void kicked(struct tlsock_uv_conn *c)
{
    if (tlsock__uv_ended(c)) {
        tlsock__uv_maybe_finish(c);
        return;
    }
    tlsock__uv_pump(c, true);
}

static void expire(struct tlsock_uv_conn *c)
{
    uint64_t now = uv_now(c->lp->loop);
    int rc = 0;

    switch (tlsock__uv_expired(c, now)) {
    case TLSOCK__UV_EXP_CLOSE:
        tlsock__uv_close_all(c, TLSOCK__UV_CLOSED);
        return;
    case TLSOCK__UV_EXP_CONNECT:
        rc = tlsock__uv_fail(c, TLSOCK_ETIMEDOUT, "connect timed out");
        if (tlsock__uv_connecting_of(c) != NULL && c->origin.connecting->gai_pending) {
            /* If the lookup already runs, its callback comes later and is ignored. */
            uv_cancel((uv_req_t *)&c->origin.connecting->gai);
        }
        tlsock__uv_report(c, rc);
        break;
    case TLSOCK__UV_EXP_HANDSHAKE:
        tlsock__uv_report(c,
                          tlsock__uv_fail(c, TLSOCK_EHANDSHAKE_TIMEOUT, "TLS handshake timed out"));
        break;
    case TLSOCK__UV_EXP_STORE:
        /* The get counts as a miss: the handshake goes on as a full one. */
        tlsock__conn_store_give_up(c->tls);
        tlsock__uv_pump(c, true);
        break;
    case TLSOCK__UV_EXP_WRITE:
        /* The peer does not read: our data may stay half sent, so the connection is dead. */
        rc = tlsock__uv_fail(c, TLSOCK_ETIMEDOUT,
                             "write timed out: %zu bytes waited %d ms for the peer to read",
                             tlsock__uv_inflight(c), c->cfg->write_timeout_ms);
        tlsock__uv_link_broke(c);
        tlsock__uv_report(c, rc);
        break;
    case TLSOCK__UV_EXP_IDLE:
        tlsock__uv_report(c, tlsock__uv_fail(c, TLSOCK_ETIMEDOUT,
                                             "read timed out: nothing arrived for %d ms",
                                             c->cfg->read_idle_timeout_ms));
        break;
    case TLSOCK__UV_EXP_RELEASE:
        maybe_idle(c);
        break;
    case TLSOCK__UV_EXP_NONE:
        break;
    }
    tlsock__uv_settle(c);
}
