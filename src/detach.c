/*
 * Detach: end TLS, keep the transport, lose no byte (STARTTLS in reverse).
 *
 * RFC 8446 section 6.1: each side sends close_notify and the other reads up to it; anything
 * after the peer's close_notify is no longer TLS. The record layer reads exactly the records it
 * needs, so what follows close_notify is still in the socket, in the memory-mode input queue,
 * or among unused preread bytes; detach hands the last two back with the socket.
 */
#include <fcntl.h>

#include "internal.h"
#include "xport.h"

/* Waits for the peer's close_notify; application data on the way is kept for tlsock_read. */
static int await_peer_close(struct tlsock_conn *conn)
{
    unsigned char data[16384];
    size_t n = 0;
    int rc = tlsock__conn_read(conn, data, sizeof(data), &n);

    if (rc == TLSOCK_ECLOSED) {
        return 0;
    }
    if (rc != 0) {
        return rc;
    }
    if (tlsock__buf_append(&conn->stash, data, n) != 0) {
        return tlsock__conn_settle(
            conn, tlsock__fail(&conn->err, TLSOCK_ENOMEM, "out of memory keeping received data"),
            false);
    }
    return tlsock__fail(&conn->err, TLSOCK_EINVAL,
                        "detach: application data arrived before the peer's close_notify; read "
                        "until TLSOCK_ECLOSED, then detach again");
}

/* How many received bytes TLS has not consumed, and copies them if they fit in @p cap. */
static size_t take_leftover(struct tlsock_conn *conn, unsigned char *buf, size_t cap)
{
    size_t from_tls = tlsock__xport_take_unread(conn->impl->xport(conn->tls), buf, cap);
    size_t total = from_tls + tlsock__buf_pending(&conn->mem_in);

    if (total > from_tls && total <= cap) {
        tlsock__buf_take(&conn->mem_in, buf + from_tls, cap - from_tls);
    }
    return total;
}

int tlsock_detach(struct tlsock_conn *conn, int *fd, void *buf, size_t cap, size_t *leftover_len)
{
    int rc = tlsock__conn_begin(conn);

    if (rc != 0) {
        return rc;
    }
    if (fd == NULL || leftover_len == NULL || (buf == NULL && cap > 0)) {
        return tlsock__fail(&conn->err, TLSOCK_EINVAL, "detach: fd and leftover_len are required");
    }
    if (tlsock__buf_pending(&conn->stash) > 0) {
        return tlsock__fail(&conn->err, TLSOCK_EINVAL,
                            "detach: received application data is still unread");
    }
    rc = tlsock__conn_handshake(conn);
    if (rc != 0) {
        return rc;
    }
    rc = tlsock__conn_send_close(conn, tlsock__conn_op_deadline(conn));
    if (rc != 0) {
        return rc;
    }
    if (!conn->peer_closed) {
        rc = await_peer_close(conn);
        if (rc != 0) {
            return rc;
        }
    }
    if (tlsock_conn_pending_output(conn) > 0) {
        return tlsock__fail(&conn->err, TLSOCK_EWANT_WRITE,
                            "detach: drain the close_notify (tlsock_drain) first");
    }
    /* Peek at the size first so that a small buffer leaves the connection intact. */
    size_t needed = tlsock__xport_take_unread(conn->impl->xport(conn->tls), NULL, 0) +
                    tlsock__buf_pending(&conn->mem_in);
    if (needed > cap) {
        *leftover_len = needed;
        return tlsock__fail(&conn->err, TLSOCK_EINVAL,
                            "detach: %zu leftover bytes do not fit in %zu", needed, cap);
    }
    *leftover_len = take_leftover(conn, buf, cap);
    *fd = conn->fd;
    if (conn->fd >= 0) {
        /* The caller gets the socket as it was: its own flags, or blocking if we opened it. */
        int flags = conn->owns_fd ? (conn->saved_flags & ~O_NONBLOCK) : conn->saved_flags;
        fcntl(conn->fd, F_SETFL, flags);
    }
    tlsock__conn_free(conn);
    return 0;
}
