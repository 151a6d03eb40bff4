/*
 * The connection's states (uv_int.h, drawn in docs/async.md): one transition function per
 * state variable, each checking the move against its table, and the questions the other files
 * ask instead of combining fields. A move the table does not allow is a bug in the driver: it
 * aborts with both states named rather than run on in a state nobody listed.
 *
 * Also the driver's error recording and its SIGPIPE set-up, which everything above uses.
 */
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "uv_int.h"

#define TO(s) (1u << (s))

/* allowed[from] is the set of states a connection may enter from @c from. */
static const unsigned allowed[TLSOCK__UV_NSTATES] = {
    [TLSOCK__UV_NEW] =
        TO(TLSOCK__UV_RESOLVING) | TO(TLSOCK__UV_HANDSHAKING) | TO(TLSOCK__UV_CLOSED),
    [TLSOCK__UV_RESOLVING] =
        TO(TLSOCK__UV_CONNECTING) | TO(TLSOCK__UV_DEAD) | TO(TLSOCK__UV_CLOSED),
    [TLSOCK__UV_CONNECTING] =
        TO(TLSOCK__UV_HANDSHAKING) | TO(TLSOCK__UV_DEAD) | TO(TLSOCK__UV_CLOSED),
    [TLSOCK__UV_HANDSHAKING] =
        TO(TLSOCK__UV_OPEN) | TO(TLSOCK__UV_DEAD) | TO(TLSOCK__UV_CLOSING) | TO(TLSOCK__UV_CLOSED),
    [TLSOCK__UV_OPEN] = TO(TLSOCK__UV_RELEASING) | TO(TLSOCK__UV_DEAD) | TO(TLSOCK__UV_CLOSING) |
                        TO(TLSOCK__UV_CLOSED),
    [TLSOCK__UV_RELEASING] = TO(TLSOCK__UV_HANDED_OVER) | TO(TLSOCK__UV_DEAD) |
                             TO(TLSOCK__UV_CLOSING) | TO(TLSOCK__UV_CLOSED),
    [TLSOCK__UV_DEAD] = TO(TLSOCK__UV_CLOSING) | TO(TLSOCK__UV_CLOSED),
    [TLSOCK__UV_CLOSING] = TO(TLSOCK__UV_CLOSED),
    [TLSOCK__UV_CLOSED] = 0,
    [TLSOCK__UV_HANDED_OVER] = 0,
};

static const char *const state_names[TLSOCK__UV_NSTATES] = {
    "NEW",       "RESOLVING", "CONNECTING", "HANDSHAKING", "OPEN",
    "RELEASING", "DEAD",      "CLOSING",    "CLOSED",      "HANDED_OVER",
};

static void bad_move(const char *what, unsigned from, unsigned to)
{
    fprintf(stderr, "tlsock: libuv driver bug: %s %u -> %u is not a legal move\n", what, from, to);
    abort();
}

void tlsock__uv_enter(struct tlsock_uv_conn *c, enum tlsock__uv_state to)
{
    if (c->state >= TLSOCK__UV_NSTATES || to >= TLSOCK__UV_NSTATES ||
        (allowed[c->state] & TO(to)) == 0) {
        fprintf(stderr, "tlsock: libuv driver bug: state %s -> %s\n",
                c->state < TLSOCK__UV_NSTATES ? state_names[c->state] : "?",
                to < TLSOCK__UV_NSTATES ? state_names[to] : "?");
        abort();
    }
    c->state = (uint8_t)to;
}

void tlsock__uv_link_enter(struct tlsock_uv_conn *c, enum tlsock__uv_link to)
{
    bool ok = (c->link == TLSOCK__UV_LINK_NONE && to == TLSOCK__UV_LINK_UP) ||
              (c->link == TLSOCK__UV_LINK_UP && to == TLSOCK__UV_LINK_BROKEN);

    if (!ok) {
        bad_move("link", c->link, to);
    }
    c->link = (uint8_t)to;
}

void tlsock__uv_rx_enter(struct tlsock_uv_conn *c, enum tlsock__uv_rx to)
{
    bool ok = (c->rx == TLSOCK__UV_RX_LIVE &&
               (to == TLSOCK__UV_RX_NOTIFIED || to == TLSOCK__UV_RX_EOF)) ||
              ((c->rx == TLSOCK__UV_RX_NOTIFIED || c->rx == TLSOCK__UV_RX_EOF) &&
               to == TLSOCK__UV_RX_ENDED);

    if (!ok) {
        bad_move("rx", c->rx, to);
    }
    c->rx = (uint8_t)to;
}

/* The outgoing direction only moves forward, one step at a time. */
void tlsock__uv_tx_enter(struct tlsock_uv_conn *c, enum tlsock__uv_tx to)
{
    if ((unsigned)to != (unsigned)c->tx + 1 || to > TLSOCK__UV_TX_FIN_DONE) {
        bad_move("tx", c->tx, to);
    }
    c->tx = (uint8_t)to;
}

/* ---- questions ------------------------------------------------------------------------------- */

bool tlsock__uv_ended(const struct tlsock_uv_conn *c)
{
    return c->state == TLSOCK__UV_CLOSED || c->state == TLSOCK__UV_HANDED_OVER;
}

bool tlsock__uv_before_ready(const struct tlsock_uv_conn *c)
{
    return c->state <= TLSOCK__UV_HANDSHAKING;
}

bool tlsock__uv_accepts_writes(const struct tlsock_uv_conn *c)
{
    return c->state <= TLSOCK__UV_OPEN && c->tx == TLSOCK__UV_TX_OPEN;
}

bool tlsock__uv_peer_notified(const struct tlsock_uv_conn *c)
{
    return c->rx == TLSOCK__UV_RX_NOTIFIED || c->rx == TLSOCK__UV_RX_ENDED;
}

bool tlsock__uv_rx_eof(const struct tlsock_uv_conn *c)
{
    return c->rx == TLSOCK__UV_RX_EOF || c->rx == TLSOCK__UV_RX_ENDED;
}

bool tlsock__uv_link_up(const struct tlsock_uv_conn *c)
{
    return c->link == TLSOCK__UV_LINK_UP && !tlsock__uv_ended(c);
}

/*
 * libuv writes with write(2), and a write after a reset raises SIGPIPE: closing the socket now
 * stops reading and makes libuv cancel the queued writes without writing them. The connection
 * itself lives on, failed, until the application closes it.
 */
void tlsock__uv_link_broke(struct tlsock_uv_conn *c)
{
    if (c->link != TLSOCK__UV_LINK_UP) {
        return;
    }
    tlsock__uv_link_enter(c, TLSOCK__UV_LINK_BROKEN);
    c->reading = false;
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
        tlsock__uv_forget_addr(c);
        uv_close((uv_handle_t *)&c->tcp, c->lp->hooks->closed);
    }
}

bool tlsock__uv_tcp_reset_seen(const struct tlsock_uv_conn *c)
{
    bool reset = false;
#ifdef TCP_INFO
    uv_os_fd_t fd = -1;
    struct tcp_info ti;
    socklen_t len = sizeof(ti);

    memset(&ti, 0, sizeof(ti));
    if (tlsock__uv_link_up(c) && uv_fileno((const uv_handle_t *)&c->tcp, &fd) == 0 &&
        getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0) {
        reset = ti.tcpi_state == TCP_CLOSE;
    }
#else
    (void)c;
#endif
    return reset;
}

/* ---- errors ---------------------------------------------------------------------------------- */

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
    return tlsock__uv_fail(c, TLSOCK_ESYS, "%s: %s (%s)", what, uv_strerror(uv_status),
                           uv_err_name(uv_status));
}

int tlsock__uv_tls_fail(struct tlsock_uv_conn *c, int code)
{
    const char *msg = tlsock__err_msg(tlsock__conn_err(c->tls));

    return tlsock__uv_fail(c, code, "%s", msg[0] != '\0' ? msg : tlsock_strerror(code));
}

/* ---- SIGPIPE --------------------------------------------------------------------------------- */

/*
 * libuv writes with write(2)/writev(2), never MSG_NOSIGNAL: a write after the peer's reset raises
 * SIGPIPE. The driver never writes after a transport error (tlsock__uv_link_broke), but the
 * kernel can still answer the first write after a reset that a read consumed in the same loop
 * iteration with it. So the first use of the driver ignores SIGPIPE if, and only if, nobody set
 * a handler.
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
