/*
 * Ending a connection, and freeing connections and servers.
 *
 * The graceful close (state CLOSING) runs the outgoing sequence of enum tlsock__uv_tx: the
 * queued writes are encrypted (a healthy session only), close_notify goes out (a sound session
 * only, also after a read timeout), then our FIN after the last write; then the peer's EOF, or
 * a short linger, closes the socket. Meanwhile what the peer still sends is read and dropped: a
 * socket closed with unread input, or receiving data after it was closed, answers with a TCP
 * reset, and the reset makes the peer's kernel drop what it had not read yet of ours. The whole
 * is bounded by the close limit without progress (timers.c). tlsock_uv_shutdown() runs the same
 * sequence up to our FIN while the connection stays OPEN.
 *
 * The connection's memory goes in finish(), from its socket's close callback, after its last
 * user callbacks.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "uv_int.h"

enum {
    LINGER_MS = 100, /* after our FIN, wait this long for the peer's EOF */
};

/* ---- the graceful close ---------------------------------------------------------------------- */

void tlsock__uv_close_begin(struct tlsock_uv_conn *c)
{
    if (c->state == TLSOCK__UV_CLOSING || tlsock__uv_ended(c)) {
        return;
    }
    /* Before the TCP connection exists, or after it broke, there is nothing to say goodbye on. */
    if (!tlsock__uv_link_up(c)) {
        tlsock__uv_close_all(c, TLSOCK__UV_CLOSED);
        return;
    }
    tlsock__uv_enter(c, TLSOCK__UV_CLOSING);
    c->until = 0; /* the linger's, once our FIN is out */
    if (c->tx == TLSOCK__UV_TX_OPEN) {
        tlsock__uv_tx_enter(c, TLSOCK__UV_TX_ENDING);
    }
    /* Like the write timeout: a flush that makes progress goes on, a stuck one is cut. */
    uv_update_time(c->lp->loop);
    c->last_wprog = uv_now(c->lp->loop);
    tlsock__uv_arm(c);
    tlsock__uv_kick(c);
}

static int tls_close_notify(struct tlsock_uv_conn *c)
{
    int rc = tlsock__conn_begin(c->tls);

    if (rc == 0) {
        rc = tlsock__conn_settle(c->tls, tlsock__conn_close_notify_step(c->tls), false);
    }
    return rc;
}

/* close_notify, if the session can still say it; 0 or the step's fatal code. */
static int say_goodbye(struct tlsock_uv_conn *c)
{
    int rc = 0;

    tlsock__uv_tx_enter(c, TLSOCK__UV_TX_NOTIFIED);
    if (tlsock__uv_link_up(c) && tlsock__conn_is_open(c->tls) && !tlsock__conn_sent_close(c->tls)) {
        rc = tls_close_notify(c);
        if (rc == TLSOCK_EWANT_READ || rc == TLSOCK_EWANT_WRITE) {
            rc = 0;
        }
        rc = rc != 0 ? tlsock__uv_tls_fail(c, rc) : 0;
    }
    /* With what the pump left before it (the handshake's last flight): one write, before FIN. */
    int frc = tlsock__uv_flush(c);
    return rc != 0 ? rc : frc;
}

/* A shutdown request lives until its callback, which always runs before the socket's close. */
static int send_fin(struct tlsock_uv_conn *c)
{
    uv_shutdown_t *req = malloc(sizeof(*req));
    int rc = 0;

    if (req == NULL) {
        return UV_ENOMEM;
    }
    req->data = c;
    tlsock__uv_tx_enter(c, TLSOCK__UV_TX_FIN_SENT);
    rc = uv_shutdown(req, (uv_stream_t *)&c->tcp, c->lp->hooks->fin_sent);
    if (rc != 0) {
        free(req);
    }
    return rc;
}

void tlsock__uv_close_step(struct tlsock_uv_conn *c)
{
    if (c->state != TLSOCK__UV_CLOSING) {
        return;
    }
    if (c->tx == TLSOCK__UV_TX_ENDING) {
        /* Queued writes go out only on a healthy session; a dead one's are canceled. */
        if (c->failure == 0 && tlsock__uv_link_up(c) && tlsock__conn_is_open(c->tls)) {
            int rc = tlsock__uv_encrypt_writes(c);
            if (rc != 0) {
                c->failure = rc;
            } else if (!tlsock__uv_all_encrypted(c)) {
                return; /* more to encrypt once libuv took what waits */
            }
        }
        (void)say_goodbye(c); /* best effort: the application is done with the connection */
    }
    if (!tlsock__uv_link_up(c)) {
        tlsock__uv_close_all(c, TLSOCK__UV_CLOSED);
        return;
    }
    if (c->tx == TLSOCK__UV_TX_NOTIFIED) {
        if (c->borrowed_fd) {
            /* Not our socket: no FIN; close once libuv wrote everything. */
            if (tlsock__uv_inflight(c) == 0) {
                tlsock__uv_close_all(c, TLSOCK__UV_CLOSED);
            }
            return;
        }
        if (send_fin(c) != 0) {
            tlsock__uv_close_all(c, TLSOCK__UV_CLOSED);
        }
        return;
    }
    if (c->tx == TLSOCK__UV_TX_FIN_DONE && c->until == 0) {
        tlsock__uv_after_fin(c); /* tlsock_uv_shutdown() sent it before the close */
    }
}

/* Our FIN is out. Closing: wait for the peer's EOF (or a short linger); else read on. */
void tlsock__uv_after_fin(struct tlsock_uv_conn *c)
{
    if (c->state != TLSOCK__UV_CLOSING) {
        return;
    }
    if (tlsock__uv_rx_eof(c) || !c->reading) {
        tlsock__uv_close_all(c, TLSOCK__UV_CLOSED);
        return;
    }
    uv_update_time(c->lp->loop); /* the loop's clock is cached: the linger starts now */
    c->until = uv_now(c->lp->loop) + LINGER_MS;
    tlsock__uv_arm(c);
}

int tlsock__uv_half_close_step(struct tlsock_uv_conn *c)
{
    int rc = 0;

    if (c->state != TLSOCK__UV_OPEN || !tlsock__uv_link_up(c)) {
        return 0;
    }
    if (c->tx == TLSOCK__UV_TX_ENDING) {
        if (!tlsock__uv_all_encrypted(c)) {
            return 0; /* more to encrypt once libuv took what waits */
        }
        rc = say_goodbye(c);
        if (rc != 0) {
            return rc;
        }
    }
    if (c->tx == TLSOCK__UV_TX_NOTIFIED && !c->borrowed_fd) {
        /* libuv sends the FIN after the writes queued before it. */
        rc = send_fin(c);
        if (rc == UV_ENOMEM) {
            return tlsock__uv_fail(c, TLSOCK_ENOMEM, "out of memory shutting down");
        }
        if (rc != 0) {
            rc = tlsock__uv_sys_fail(c, rc, "shutdown");
            tlsock__uv_link_broke(c);
            return rc;
        }
    }
    return 0;
}

/* Received while closing: dropped. The peer's EOF lets the close finish once our FIN is out. */
void tlsock__uv_closing_read(struct tlsock_uv_conn *c, ssize_t nread)
{
    if (nread > 0 && c->tx == TLSOCK__UV_TX_FIN_DONE) {
        /* The peer still talks: closing now would reset it, linger on (the close limit caps
         * the total). */
        c->until = uv_now(c->lp->loop) + LINGER_MS;
    }
    if (nread == UV_EOF) {
        tlsock__uv_rx_enter(c,
                            c->rx == TLSOCK__UV_RX_LIVE ? TLSOCK__UV_RX_EOF : TLSOCK__UV_RX_ENDED);
        if (c->tx == TLSOCK__UV_TX_FIN_DONE) {
            tlsock__uv_close_all(c, TLSOCK__UV_CLOSED);
        }
    } else if (nread < 0) {
        tlsock__uv_close_all(c, TLSOCK__UV_CLOSED);
    }
}

/* ---- aborting -------------------------------------------------------------------------------- */

/*
 * tlsock_uv_abort(): no goodbye. The socket closes now, with SO_LINGER 0 so that the kernel sends
 * a reset instead of a FIN and drops what it still held of ours: the peer learns at once that the
 * stream was cut short, never that it ended. What is queued completes with ECANCELED in finish.
 * A socket the caller owns (adopted from tlsock_attach_fd()) is only let go of, not reset.
 */
void tlsock__uv_abort(struct tlsock_uv_conn *c)
{
    uv_os_fd_t fd = -1;

    if (tlsock__uv_ended(c)) {
        return;
    }
    if (tlsock__uv_link_up(c) && !c->borrowed_fd && uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) {
        struct linger reset = {.l_onoff = 1, .l_linger = 0};
        (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
    }
    if (c->failure == 0) {
        c->failure = TLSOCK_ECANCELED; /* nothing queued counts as written any more */
    }
    tlsock__uv_close_all(c, TLSOCK__UV_CLOSED);
}

/* ---- handing over (tlsock_uv_release) -------------------------------------------------------- */

void tlsock__uv_release_failed(struct tlsock_uv_conn *c, int code)
{
    tlsock_uv_release_cb cb = c->release_cb;

    c->release_cb = NULL;
    cb(c, NULL, code);
}

/*
 * Once every queued write completed: the blocking side gets a descriptor (the session's own if
 * it was adopted, else a duplicate of libuv's) and ciphertext the loop fed but TLS did not
 * consume goes back in front of that socket (the core's tlsock__conn_to_socket).
 */
void tlsock__uv_handover_step(struct tlsock_uv_conn *c)
{
    int fd = -1;
    bool owns = false;
    int rc = 0;

    if (c->state != TLSOCK__UV_RELEASING || !tlsock__uv_writes_idle(c) ||
        tlsock__conn_output_pending(c->tls) > 0) {
        return; /* write callbacks bring us back */
    }
    if (c->adopted) {
        fd = tlsock__conn_fd(c->tls);
        owns = tlsock__conn_owns_fd(c->tls);
    } else {
        uv_os_fd_t ufd = -1;
        rc = uv_fileno((uv_handle_t *)&c->tcp, &ufd);
        fd = rc == 0 ? fcntl(ufd, F_DUPFD_CLOEXEC, 0) : -1;
        if (fd < 0) {
            rc = tlsock__uv_fail(c, TLSOCK_ESYS, "release: dup: %s",
                                 rc != 0 ? uv_strerror(rc) : strerror(errno));
            goto failed;
        }
        owns = true;
    }
    rc = tlsock__conn_to_socket(c->tls, fd, owns);
    if (rc != 0) {
        if (!c->adopted) {
            close(fd);
        }
        rc = tlsock__uv_tls_fail(c, rc);
        goto failed;
    }
    /* The session is the blocking side's now; finish hands it over once libuv let go. */
    tlsock__uv_close_all(c, TLSOCK__UV_HANDED_OVER);
    return;
failed:
    c->failure = rc;
    tlsock__uv_enter(c, TLSOCK__UV_DEAD);
    tlsock__uv_release_failed(c, rc);
}

/* ---- closing the socket ---------------------------------------------------------------------- */

/*
 * Reads and drops what already arrived, right before the socket closes: closing with unread
 * input makes the kernel reset the connection, and the reset destroys what the peer has not
 * read yet of ours. Bounded; never on a socket that is not ours to read (borrowed, or handed to
 * the blocking side by a release).
 */
static void drain_socket(struct tlsock_uv_conn *c, enum tlsock__uv_state to)
{
    char buf[16384];
    uv_os_fd_t fd = -1;

    if (to == TLSOCK__UV_HANDED_OVER || c->borrowed_fd || tlsock__uv_rx_eof(c) ||
        !tlsock__uv_link_up(c) || uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) {
        return;
    }
    for (int i = 0; i < 64; i++) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n <= 0 && !(n < 0 && errno == EINTR)) {
            break;
        }
    }
}

void tlsock__uv_close_all(struct tlsock_uv_conn *c, enum tlsock__uv_state to)
{
    if (tlsock__uv_ended(c)) {
        return;
    }
    drain_socket(c, to);
    tlsock__uv_enter(c, to);
    c->reading = false;
    tlsock__uv_loop_forget(c);
    if (c->buffers_held) {
        /* The loop no longer counts it busy (the session keeps its buffers until it goes). */
        tlsock__uv_loop_busy(c->lp, false);
    }
    struct tlsock__uv_connecting *cn = tlsock__uv_connecting_of(c);
    if (cn != NULL && cn->gai_pending) {
        uv_cancel((uv_req_t *)&cn->gai);
    }
    if (c->handles > 0 && !uv_is_closing((uv_handle_t *)&c->tcp)) {
        tlsock__uv_forget_addr(c);
        uv_close((uv_handle_t *)&c->tcp, c->lp->hooks->closed);
    } else if (c->handles == 0) {
        /* The socket closed before (its link broke): finish from the loop, never from here. */
        tlsock__uv_kick(c);
    }
}

/* ---- finishing ------------------------------------------------------------------------------- */

void tlsock__uv_tls_drop(struct tlsock_conn *tls)
{
    /* No blocking close_notify here: the loop already said goodbye (or could not). */
    int fd = tlsock__conn_fd(tls);

    if (fd >= 0) {
        if (tlsock__conn_owns_fd(tls)) {
            close(fd);
        } else {
            fcntl(fd, F_SETFL, tlsock__conn_saved_flags(tls));
        }
    }
    tlsock__conn_free(tls);
}

/* The connection no longer counts as its server's load (group.c): its last callbacks are due. */
static void leave_load(struct tlsock_uv_conn *c)
{
    atomic_fetch_sub_explicit(&c->cfg->live, 1, memory_order_relaxed);
}

void tlsock__uv_conn_discard(struct tlsock_uv_conn *c)
{
    leave_load(c);
    tlsock__uv_finish_writes(c, false);
    tlsock__uv_writes_free(c);
    tlsock__uv_config_unref(c->cfg);
    tlsock__uv_loop_unref(c->lp);
    free(c);
}

/* The last callbacks, in order, then the memory. */
static void finish(struct tlsock_uv_conn *c)
{
    struct tlsock_uv_server *server = tlsock__uv_server_of(c); /* still the server's: the
                                                    application never saw it, so no callback */

    if (server != NULL) {
        tlsock__uv_server_untrack(server, c); /* before release_cb is read: they share storage */
    }
    tlsock_uv_release_cb release_cb = c->release_cb;

    leave_load(c);
    tlsock__uv_loop_forget(c);
    if (server == NULL) {
        if (!c->outcome_told) {
            c->outcome_told = true;
            if (c->cfg->on_connect != NULL) {
                c->cfg->on_connect(c, TLSOCK_ECANCELED);
            }
        }
        tlsock__uv_finish_writes(c, true);
        if (c->state == TLSOCK__UV_HANDED_OVER) {
            struct tlsock_conn *tls = c->tls;
            c->tls = NULL; /* the caller's now */
            release_cb(c, tls, 0);
        } else {
            if (release_cb != NULL) {
                release_cb(c, NULL, TLSOCK_ECANCELED);
            }
            if (c->cfg->on_close != NULL) {
                c->cfg->on_close(c);
            }
        }
    }
    tlsock__uv_finish_writes(c, false);
    tlsock__uv_writes_free(c);
    if (c->tls != NULL) {
        tlsock__uv_tls_drop(c->tls);
    }
    struct tlsock__uv_connecting *cn = tlsock__uv_connecting_of(c);
    if (cn != NULL) {
        uv_freeaddrinfo(cn->addrs);
        free(cn);
    }
    tlsock__err_free(&c->err);
    tlsock__uv_config_unref(c->cfg);
    tlsock__uv_loop_unref(c->lp);
    free(c);
    if (server != NULL) {
        tlsock__uv_server_client_done(server);
    }
}

void tlsock__uv_socket_closed(uv_handle_t *handle)
{
    struct tlsock_uv_conn *c = tlsock__uv_conn_of(handle);

    c->handles--;
    tlsock__uv_maybe_finish(c);
}

void tlsock__uv_maybe_finish(struct tlsock_uv_conn *c)
{
    const struct tlsock__uv_connecting *cn = tlsock__uv_connecting_of(c);

    if (c->handles == 0 && tlsock__uv_ended(c) && !(cn != NULL && cn->gai_pending)) {
        finish(c);
    }
}

void tlsock__uv_server_maybe_finish(struct tlsock_uv_server *s)
{
    if (!s->listener_closed || s->clients > 0 || s->rejecting != TLSOCK__UV_REJECT_IDLE) {
        return;
    }
    if (s->close_cb != NULL) {
        s->close_cb(s);
    }
    tlsock__ctx_slot_destroy(&s->ctx);
    tlsock__uv_config_unref(s->cfg);
    free(s->waiting);
    free(s->initial);
    if (s->lp != NULL) {
        tlsock__uv_loop_unref(s->lp);
    }
    free(s);
}

enum {
    WAITING_MIN = 16, /* the waiting array's first size, and the least it shrinks to */
};

int tlsock__uv_server_track(struct tlsock_uv_server *s, struct tlsock_uv_conn *c)
{
    if (s->nwaiting == s->waiting_cap) {
        size_t cap = s->waiting_cap > 0 ? 2 * s->waiting_cap : WAITING_MIN;
        struct tlsock_uv_conn **more = realloc(s->waiting, cap * sizeof(*more));
        if (more == NULL) {
            return TLSOCK_ENOMEM;
        }
        s->waiting = more;
        s->waiting_cap = cap;
    }
    c->server_slot = s->nwaiting;
    s->waiting[s->nwaiting++] = c;
    return 0;
}

/* Few clients wait any more: the array gives back what a burst of them grew it to, so that a
 * server's idle connections cost it nothing. */
static void waiting_shrink(struct tlsock_uv_server *s)
{
    if (s->nwaiting == 0) {
        free(s->waiting);
        s->waiting = NULL;
        s->waiting_cap = 0;
    } else if (s->waiting_cap > WAITING_MIN && s->nwaiting <= s->waiting_cap / 4) {
        struct tlsock_uv_conn **less = realloc(s->waiting, s->waiting_cap / 2 * sizeof(*less));
        if (less != NULL) {
            s->waiting = less;
            s->waiting_cap /= 2;
        }
    }
}

void tlsock__uv_server_untrack(struct tlsock_uv_server *s, struct tlsock_uv_conn *c)
{
    size_t slot = c->server_slot;
    struct tlsock_uv_conn *last = s->waiting[--s->nwaiting];

    /* The last one takes the leaving one's place (order does not matter). */
    s->waiting[slot] = last;
    last->server_slot = slot;
    c->release_cb = NULL; /* the storage is release_cb's from now on */
    waiting_shrink(s);
}

void tlsock__uv_server_client_done(struct tlsock_uv_server *s)
{
    s->clients--;
    tlsock__uv_server_maybe_finish(s);
}
