/*
 * Socket I/O for the SOCKET transport: one non-blocking recv, send or sendmsg at a time, EINTR
 * restarted, EAGAIN turned into a WANT code and any other errno kept for the message.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>

#include "transport.h"

ssize_t tlsock__sock_recv(int fd, void *buf, size_t len, int *sys_errno)
{
    for (;;) {
        ssize_t n = recv(fd, buf, len, 0);
        if (n >= 0) {
            return n;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return TLSOCK_EWANT_READ;
        }
        if (errno != EINTR) {
            *sys_errno = errno;
            return TLSOCK_ESYS;
        }
    }
}

/* What a failed send or sendmsg means, EINTR aside: a WANT code, or TLSOCK_ESYS with errno. */
static ssize_t send_error(int *sys_errno)
{
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return TLSOCK_EWANT_WRITE;
    }
    *sys_errno = errno;
    return TLSOCK_ESYS;
}

ssize_t tlsock__sock_send(int fd, const void *buf, size_t len, int *sys_errno)
{
    for (;;) {
        /* MSG_NOSIGNAL: a peer that went away gives EPIPE, never a SIGPIPE. */
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0 || errno != EINTR) {
            return n >= 0 ? n : send_error(sys_errno);
        }
    }
}

ssize_t tlsock__sock_sendmsg(int fd, const struct iovec *iov, int iovcnt, int *sys_errno)
{
    /* sendmsg only reads the vectors; msghdr just has no const member for them. */
    struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};

    for (;;) {
        ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (n >= 0 || errno != EINTR) {
            return n >= 0 ? n : send_error(sys_errno);
        }
    }
}

int tlsock__set_nonblocking(int fd, int *saved_flags, struct tlsock__err *err)
{
    int flags = fcntl(fd, F_GETFL);

    if (flags < 0) {
        return tlsock__fail(err, TLSOCK_ESYS, "fcntl(F_GETFL) on fd %d: %s", fd, strerror(errno));
    }
    if (saved_flags != NULL) {
        *saved_flags = flags;
    }
    if ((flags & O_NONBLOCK) == 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        return tlsock__fail(err, TLSOCK_ESYS, "fcntl(F_SETFL) on fd %d: %s", fd, strerror(errno));
    }
    return 0;
}
