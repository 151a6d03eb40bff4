/*
 * Detach: end TLS, keep the transport, lose no byte (STARTTLS in reverse).
 *
 * RFC 8446 section 6.1: each side sends close_notify and the other reads up to it; anything
 * after the peer's close_notify is no longer TLS. The record layer reads exactly the records it
 * needs, so what follows close_notify is still in the socket, or in the transport's input queue
 * (memory mode's fed bytes, unused preread bytes); detach hands the latter back with the socket.
 */
#include <fcntl.h>

#include "block.h"

/* Waits for the peer's close_notify; application data on the way is kept for tlsock_read. */
static int await_peer_close(struct tlsock_conn *conn)
{
    unsigned char data[16384];
    size_t n = 0;
    int rc = tlsock__block_read(conn, data, sizeof(data), &n);

    if (rc == TLSOCK_ECLOSED) {
        return 0;
    }
    if (rc != 0) {
        return rc;
    }
    rc = tlsock__conn_stash(conn, data, n);
    if (rc != 0) {
        return tlsock__conn_settle(conn, rc, false);
    }
    return tlsock__fail(tlsock__conn_err(conn), TLSOCK_EINVAL,
                        "detach: application data arrived before the peer's close_notify; read "
                        "until TLSOCK_ECLOSED, then detach again");
}

int tlsock_detach(struct tlsock_conn *conn, int *fd, void *buf, size_t cap, size_t *leftover_len)
{
    int rc = tlsock__conn_begin(conn);
    struct tlsock__err *err = NULL;

    if (rc != 0) {
        return rc;
    }
    err = tlsock__conn_err(conn);
    if (fd == NULL || leftover_len == NULL || (buf == NULL && cap > 0)) {
        return tlsock__fail(err, TLSOCK_EINVAL, "detach: fd and leftover_len are required");
    }
    if (tlsock__conn_stashed(conn) > 0) {
        return tlsock__fail(err, TLSOCK_EINVAL,
                            "detach: received application data is still unread");
    }
    rc = tlsock__block_handshake(conn);
    if (rc != 0) {
        return rc;
    }
    rc = tlsock__block_close_notify(conn, tlsock__conn_op_deadline(conn));
    if (rc != 0) {
        return rc;
    }
    if (!tlsock__conn_peer_closed(conn)) {
        rc = await_peer_close(conn);
        if (rc != 0) {
            return rc;
        }
    }
    if (tlsock__conn_output_pending(conn) > 0) {
        return tlsock__fail(err, TLSOCK_EWANT_WRITE,
                            "detach: drain the close_notify (tlsock_drain) first");
    }
    /* The size first, so that a small buffer leaves the connection intact. */
    size_t needed = tlsock__conn_input_pending(conn);
    *leftover_len = needed;
    if (needed > cap) {
        return tlsock__fail(err, TLSOCK_EINVAL, "detach: %zu leftover bytes do not fit in %zu",
                            needed, cap);
    }
    (void)tlsock__conn_input_peek(conn, buf, cap);
    *fd = tlsock__conn_fd(conn);
    if (*fd >= 0) {
        /* The caller gets the socket as it was: its own flags, or blocking if we opened it. */
        int flags = tlsock__conn_saved_flags(conn);
        fcntl(*fd, F_SETFL, tlsock__conn_owns_fd(conn) ? (flags & ~O_NONBLOCK) : flags);
    }
    tlsock__conn_free(conn);
    return 0;
}
