/*
 * Moving a live connection between drivers without losing a byte: from its socket to the
 * memory transport an event loop feeds (blocking to async), and back (async to blocking).
 *
 * Nothing TLS has buffered is touched: decrypted data stays in the session, unconsumed preread
 * bytes stay in front of the transport, and ciphertext fed but not consumed yet goes back in
 * front of the socket.
 */
#include "internal.h"
#include "xport.h"

int tlsock__conn_to_memory(struct tlsock_conn *conn)
{
    struct tlsock__xport *x = conn->impl->xport(conn->tls);

    if (conn->transport == TLSOCK__TRANSPORT_MEMORY) {
        return 0;
    }
    if (conn->transport == TLSOCK__TRANSPORT_USER) {
        return tlsock__fail(&conn->err, TLSOCK_EINVAL,
                            "a connection over user callbacks cannot move to an event loop");
    }
    if (x->wlen > x->woff || conn->write_done > 0) {
        return tlsock__fail(&conn->err, TLSOCK_EINVAL,
                            "finish the interrupted write before moving the connection");
    }
    conn->transport = TLSOCK__TRANSPORT_MEMORY;
    conn->io = tlsock__mem_io;
    conn->io.user = conn;
    conn->mem_eof = false;
    tlsock__xport_retarget(x, &conn->io, -1);
    return 0;
}

int tlsock__conn_to_socket(struct tlsock_conn *conn, int fd, bool owns_fd)
{
    struct tlsock__xport *x = conn->impl->xport(conn->tls);
    size_t fed = tlsock__buf_pending(&conn->mem_in);
    int rc;

    if (conn->transport != TLSOCK__TRANSPORT_MEMORY || tlsock_conn_pending_output(conn) > 0) {
        return tlsock__fail(&conn->err, TLSOCK_EINVAL,
                            "only a memory-mode connection with no output left can move to a "
                            "socket");
    }
    rc = tlsock__xport_unshift(x, conn->mem_in.data + conn->mem_in.off, fed, &conn->err);
    if (rc != 0) {
        return rc;
    }
    tlsock__buf_free(&conn->mem_in);
    tlsock__buf_free(&conn->mem_out);
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
    conn->transport = TLSOCK__TRANSPORT_FD;
    conn->mem_eof = false;
    tlsock__xport_retarget(x, NULL, fd);
    return 0;
}
