/*
 * stdio streams over a connection (glibc's fopencookie), so fprintf/fgets/fread work.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "block.h"

static ssize_t cookie_read(void *cookie, char *buf, size_t size)
{
    size_t n = 0;
    int rc = tlsock_read(cookie, buf, size, &n);

    if (rc == 0) {
        return (ssize_t)n;
    }
    if (rc == TLSOCK_ECLOSED) {
        return 0; /* the peer's close_notify is the stream's clean end */
    }
    /* stdio only knows errno; tlsock_conn_errmsg() keeps the detail. */
    errno = rc == TLSOCK_ETIMEDOUT ? ETIMEDOUT : EIO;
    return -1;
}

static ssize_t cookie_write(void *cookie, const char *buf, size_t size)
{
    int rc = tlsock_write(cookie, buf, size);

    if (rc != 0) {
        errno = rc == TLSOCK_ETIMEDOUT ? ETIMEDOUT : EIO;
        return 0; /* fopencookie: 0 means an error */
    }
    return (ssize_t)size;
}

static int cookie_close(void *cookie)
{
    tlsock_close(cookie);
    return 0;
}

int tlsock_fopen(struct tlsock_conn *conn, const char *mode, FILE **out)
{
    static const cookie_io_functions_t functions = {
        .read = cookie_read,
        .write = cookie_write,
        .seek = NULL,
        .close = cookie_close,
    };

    if (conn == NULL || mode == NULL || out == NULL) {
        return tlsock__fail(conn != NULL ? tlsock__conn_err(conn) : NULL, TLSOCK_EINVAL,
                            "fopen: conn, mode and out are required");
    }
    FILE *f = fopencookie(conn, mode, functions);
    if (f == NULL) {
        /* glibc says EINVAL for a mode it does not understand; anything else is memory. */
        if (errno == EINVAL) {
            return tlsock__fail(tlsock__conn_err(conn), TLSOCK_EINVAL, "fopen: bad mode \"%s\"",
                                mode);
        }
        return tlsock__fail(tlsock__conn_err(conn), TLSOCK_ENOMEM, "fopencookie failed: %s",
                            strerror(errno));
    }
    *out = f;
    return 0;
}
