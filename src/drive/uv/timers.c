/*
 * A connection's deadlines: which apply in which state, the nearest one (what the loop's heap
 * holds it for), and which one passed. Times are the loop's clock (uv_now), in ms.
 *
 *   state                 deadlines
 *   RESOLVING, CONNECTING connect (until)
 *   HANDSHAKING           handshake (until), write; a server's session-store get (its bound,
 *                         on the core's clock: core/store.c)
 *   OPEN                  write, idle; the record buffers' release (TLSOCK__UV_HOLD_MS
 *                         after the last activity)
 *   RELEASING             write
 *   CLOSING               no progress for the close limit; the linger after our FIN (until)
 *
 * A deadline that moves later (every received byte moves the idle one) leaves the heap as it
 * is: the connection comes up early, finds nothing passed, and goes back with the new time.
 */
#include "uv_int.h"

enum {
    CLOSE_DEFAULT_MS = 5000, /* graceful close bound without write_timeout_ms */
};

uint64_t tlsock__uv_close_limit(const struct tlsock_uv_conn *c)
{
    return (uint64_t)(c->cfg->write_timeout_ms > 0 ? c->cfg->write_timeout_ms : CLOSE_DEFAULT_MS);
}

/* Ciphertext waits in libuv: the peer must read it within write_timeout_ms of progress. */
static bool write_applies(const struct tlsock_uv_conn *c)
{
    bool live = c->state == TLSOCK__UV_HANDSHAKING || c->state == TLSOCK__UV_OPEN ||
                c->state == TLSOCK__UV_RELEASING;

    return live && c->cfg->write_timeout_ms > 0 && tlsock__uv_inflight(c) > 0;
}

/* Reading for the application, not paused by it or by backpressure, the peer not done. */
static bool idle_applies(const struct tlsock_uv_conn *c)
{
    return c->state == TLSOCK__UV_OPEN && c->cfg->read_idle_timeout_ms > 0 && !c->user_stopped &&
           !c->throttled && !tlsock__uv_peer_notified(c);
}

static uint64_t write_due(const struct tlsock_uv_conn *c)
{
    return c->last_wprog + (uint64_t)c->cfg->write_timeout_ms;
}

static uint64_t idle_due(const struct tlsock_uv_conn *c)
{
    return c->last_rx + (uint64_t)c->cfg->read_idle_timeout_ms;
}

/* An open connection holds its record buffers with nothing in flight: they go once it has been
 * idle (nothing received, no write progress) for TLSOCK__UV_HOLD_MS. */
static bool release_applies(const struct tlsock_uv_conn *c)
{
    return c->state == TLSOCK__UV_OPEN && c->buffers_held && tlsock__uv_writes_idle(c) &&
           tlsock__conn_input_pending(c->tls) == 0;
}

static uint64_t release_due(const struct tlsock_uv_conn *c)
{
    uint64_t last = c->last_rx > c->last_wprog ? c->last_rx : c->last_wprog;

    return last + TLSOCK__UV_HOLD_MS;
}

static uint64_t earlier(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* A server's handshake waits for the session store's get (core/store.c). */
static bool store_applies(const struct tlsock_uv_conn *c)
{
    return c->state == TLSOCK__UV_HANDSHAKING && tlsock__conn_store_waiting(c->tls);
}

/* The get's bound, from the core's clock onto the loop's, rounded up so that it has passed on
 * the core's clock when the loop's timer fires. */
static uint64_t store_due(const struct tlsock_uv_conn *c)
{
    int64_t left_ns = tlsock__conn_store_deadline(c->tls) - tlsock__now_ns();
    uint64_t left_ms = left_ns > 0 ? (uint64_t)(left_ns + 999999) / 1000000 : 0;

    return uv_now(c->lp->loop) + left_ms;
}

/* The nearest deadline, UINT64_MAX for none. */
static uint64_t next_deadline(const struct tlsock_uv_conn *c)
{
    uint64_t due = UINT64_MAX;

    switch ((enum tlsock__uv_state)c->state) {
    case TLSOCK__UV_RESOLVING:
    case TLSOCK__UV_CONNECTING:
    case TLSOCK__UV_HANDSHAKING:
        due = c->until != 0 ? c->until : UINT64_MAX;
        break;
    case TLSOCK__UV_CLOSING:
        due = c->last_wprog + tlsock__uv_close_limit(c);
        due = c->until != 0 ? earlier(due, c->until) : due;
        break;
    default:
        break;
    }
    if (store_applies(c)) {
        due = earlier(due, store_due(c));
    }
    if (write_applies(c)) {
        due = earlier(due, write_due(c));
    }
    if (idle_applies(c)) {
        due = earlier(due, idle_due(c));
    }
    if (release_applies(c)) {
        due = earlier(due, release_due(c));
    }
    return due;
}

void tlsock__uv_arm(struct tlsock_uv_conn *c)
{
    uint64_t due = next_deadline(c);

    if (due == UINT64_MAX || c->heap_idx == UINT32_MAX || due < c->due) {
        tlsock__uv_heap_set(c, due);
    }
}

enum tlsock__uv_expiry tlsock__uv_expired(const struct tlsock_uv_conn *c, uint64_t now)
{
    bool until_passed = c->until != 0 && now >= c->until;

    switch ((enum tlsock__uv_state)c->state) {
    case TLSOCK__UV_RESOLVING:
    case TLSOCK__UV_CONNECTING:
        return until_passed ? TLSOCK__UV_EXP_CONNECT : TLSOCK__UV_EXP_NONE;
    case TLSOCK__UV_HANDSHAKING:
        if (until_passed) {
            return TLSOCK__UV_EXP_HANDSHAKE;
        }
        if (store_applies(c) && tlsock__now_ns() >= tlsock__conn_store_deadline(c->tls)) {
            return TLSOCK__UV_EXP_STORE;
        }
        break;
    case TLSOCK__UV_CLOSING:
        if (until_passed || now >= c->last_wprog + tlsock__uv_close_limit(c)) {
            return TLSOCK__UV_EXP_CLOSE;
        }
        return TLSOCK__UV_EXP_NONE;
    default:
        break;
    }
    if (write_applies(c) && now >= write_due(c)) {
        return TLSOCK__UV_EXP_WRITE;
    }
    if (idle_applies(c) && now >= idle_due(c)) {
        return TLSOCK__UV_EXP_IDLE;
    }
    if (release_applies(c) && now >= release_due(c)) {
        return TLSOCK__UV_EXP_RELEASE;
    }
    return TLSOCK__UV_EXP_NONE;
}
