/*
 * The public calls on an async connection. None runs a user callback: each checks the state,
 * records the request, and kicks the connection, whose pump does the work from the loop before
 * it polls again. What each call returns in each state is what include/tlsock/uv.h promises
 * (tests/test_uv_states.c checks it state by state).
 */
#include <stdlib.h>

#include "uv_int.h"

/* Why a connection refuses a write, shutdown or release. */
static const char *refusal(const struct tlsock_uv_conn *c)
{
    switch ((enum tlsock__uv_state)c->state) {
    case TLSOCK__UV_RELEASING:
        return "being released";
    case TLSOCK__UV_DEAD:
        return "dead";
    case TLSOCK__UV_CLOSING:
    case TLSOCK__UV_CLOSED:
    case TLSOCK__UV_HANDED_OVER:
        return "closing";
    default:
        return c->tx != TLSOCK__UV_TX_OPEN ? "shut down for writing" : "not ready";
    }
}

int tlsock_uv_write(struct tlsock_uv_conn *conn, const void *buf, size_t len, void *write_arg)
{
    struct tlsock_uv_conn *c = conn;

    if (c == NULL || (buf == NULL && len > 0)) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "tlsock_uv_write: connection and buffer needed");
    }
    if (c->state == TLSOCK__UV_DEAD) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "write on a dead connection (%s): %s",
                            tlsock_err_name(c->failure), tlsock_uv_conn_errmsg(c));
    }
    if (!tlsock__uv_accepts_writes(c)) {
        return tlsock__uv_fail(c, TLSOCK_EINVAL, "write on a connection that is %s", refusal(c));
    }
    if (tlsock__uv_queue_write(c, buf, len, write_arg) != 0) {
        return tlsock__fail(NULL, TLSOCK_ENOMEM, "out of memory queueing a write");
    }
    /* Encrypted from the loop, with whatever else is written before it polls: one batch. */
    tlsock__uv_kick(c);
    return 0;
}

size_t tlsock_uv_conn_write_queue_size(const struct tlsock_uv_conn *conn)
{
    return conn != NULL ? tlsock__uv_queue_bytes(conn) : 0;
}

int tlsock_uv_read_stop(struct tlsock_uv_conn *conn)
{
    if (conn == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "tlsock_uv_read_stop: connection is NULL");
    }
    conn->user_stopped = true;
    /* No on_read from now on (the pump asks); the loop stops reading the socket. */
    if (!tlsock__uv_ended(conn)) {
        tlsock__uv_kick(conn);
    }
    return 0;
}

int tlsock_uv_read_start(struct tlsock_uv_conn *conn)
{
    if (conn == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "tlsock_uv_read_start: connection is NULL");
    }
    if (conn->state > TLSOCK__UV_OPEN) {
        return tlsock__uv_fail(conn, TLSOCK_EINVAL, "read_start on a connection that is %s",
                               refusal(conn));
    }
    if (conn->user_stopped) {
        conn->user_stopped = false;
        conn->last_rx = uv_now(conn->lp->loop);
        /* What TLS already holds is delivered from the loop, which starts reading again. */
        tlsock__uv_kick(conn);
    }
    return 0;
}

void tlsock_uv_close(struct tlsock_uv_conn *conn)
{
    if (conn != NULL) {
        tlsock__uv_close_begin(conn);
    }
}

void tlsock_uv_abort(struct tlsock_uv_conn *conn)
{
    if (conn != NULL) {
        tlsock__uv_abort(conn);
    }
}

int tlsock_uv_shutdown(struct tlsock_uv_conn *conn)
{
    struct tlsock_uv_conn *c = conn;

    if (c == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "tlsock_uv_shutdown: connection is NULL");
    }
    if (c->state == TLSOCK__UV_DEAD) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "shutdown on a dead connection (%s): %s",
                            tlsock_err_name(c->failure), tlsock_uv_conn_errmsg(c));
    }
    if (!tlsock__uv_accepts_writes(c)) {
        return tlsock__uv_fail(c, TLSOCK_EINVAL, "shutdown on a connection that is %s",
                               c->tx != TLSOCK__UV_TX_OPEN ? "already shut down" : refusal(c));
    }
    tlsock__uv_tx_enter(c, TLSOCK__UV_TX_ENDING);
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
    if (!tlsock__uv_link_up(conn) ||
        uv_tcp_getpeername(&conn->tcp, (struct sockaddr *)addr, &len) != 0) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "tlsock_uv_conn_peername: no TCP connection");
    }
    return 0;
}

void *tlsock_uv_conn_user(const struct tlsock_uv_conn *conn)
{
    return conn != NULL ? conn->tcp.data : NULL;
}

void tlsock_uv_conn_set_user(struct tlsock_uv_conn *conn, void *user)
{
    if (conn != NULL) {
        conn->tcp.data = user;
    }
}

uv_loop_t *tlsock_uv_conn_loop(const struct tlsock_uv_conn *conn)
{
    return conn != NULL ? conn->lp->loop : NULL;
}

struct tlsock_conn *tlsock_uv_conn_tls(struct tlsock_uv_conn *conn)
{
    /* Not before the TCP connection exists (the link tells; it stays set once it was up). */
    if (conn == NULL || conn->link == TLSOCK__UV_LINK_NONE) {
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
