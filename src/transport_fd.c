/*
 * A socket through the generic callback path (opts.fd_callbacks): the same bytes as the fast
 * path, but moved by the core's callbacks instead of the implementation's own fd I/O. It exists
 * to compare the two paths and for implementations without fd I/O.
 */
#include <string.h>

#include "internal.h"

static ssize_t fd_read(void *user, void *buf, size_t len)
{
    struct tlsock_conn *conn = user;
    ssize_t n = tlsock__sock_recv(conn->fd, buf, len, &conn->sys_errno);

    if (n == TLSOCK_ESYS) {
        tlsock__fail(&conn->err, TLSOCK_ESYS, "socket error: %s", strerror(conn->sys_errno));
    }
    return n;
}

static ssize_t fd_write(void *user, const void *buf, size_t len)
{
    struct tlsock_conn *conn = user;
    ssize_t n = tlsock__sock_send(conn->fd, buf, len, &conn->sys_errno);

    if (n == TLSOCK_ESYS) {
        tlsock__fail(&conn->err, TLSOCK_ESYS, "socket error: %s", strerror(conn->sys_errno));
    }
    return n;
}

const struct tlsock_io tlsock__fd_io = {.read = fd_read, .write = fd_write};
