/*
 * Moving a live connection between drivers without losing a byte: from its socket to the
 * memory transport an event loop feeds (blocking to async), and back (async to blocking).
 *
 * Nothing TLS has buffered is touched: decrypted data stays in the session, and received bytes
 * TLS has not consumed (preread bytes, or ciphertext fed but not consumed yet) stay in the
 * transport's input queue, first in line whatever carries the bytes after the switch.
 */
#include "objects.h"

int tlsock__conn_to_memory(struct tlsock_conn *conn)
{
    struct tlsock__transport *t = &conn->transport;

    if (t->kind == TLSOCK__TRANSPORT_MEMORY) {
        return 0;
    }
    if (t->kind == TLSOCK__TRANSPORT_CALLBACKS) {
        return tlsock__fail(&conn->err, TLSOCK_EINVAL,
                            "a connection over user callbacks cannot move to an event loop");
    }
    if (tlsock__buf_pending(&t->out) > 0 || conn->write_done > 0) {
        return tlsock__fail(&conn->err, TLSOCK_EINVAL,
                            "finish the interrupted write before moving the connection");
    }
    tlsock__transport_switch(t, TLSOCK__TRANSPORT_MEMORY, -1);
    return 0;
}

int tlsock__conn_to_socket(struct tlsock_conn *conn, int fd, bool owns_fd)
{
    struct tlsock__transport *t = &conn->transport;
    int rc;

    if (t->kind != TLSOCK__TRANSPORT_MEMORY || tlsock__buf_pending(&t->out) > 0) {
        return tlsock__fail(&conn->err, TLSOCK_EINVAL,
                            "only a memory-mode connection with no output left can move to a "
                            "socket");
    }
    /* The socket's own flags are restored when tlsock lets go of it; the first ones count. */
    int flags = 0;
    rc = tlsock__set_nonblocking(fd, &flags, &conn->err);
    if (rc != 0) {
        return rc;
    }
    if (conn->fd != fd) {
        conn->fd = fd;
        conn->saved_flags = flags;
    }
    conn->owns_fd = owns_fd;
    tlsock__buf_free(&t->out);
    tlsock__transport_switch(t, TLSOCK__TRANSPORT_SOCKET, fd);
    return 0;
}
