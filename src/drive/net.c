/*
 * Plain TCP: resolving, connecting with a deadline, waiting on an fd, closing gracefully.
 * Every wait goes through poll() with the time left, and EINTR only restarts the wait.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "net.h"

/* How long tlsock__graceful_close may spend draining input so an alert reaches the peer. */
enum { DRAIN_MS = 50, DRAIN_MAX_BYTES = 64 * 1024 };

/* Milliseconds left until @p deadline_ns for poll(): -1 for none, rounded up so we never spin. */
static int poll_timeout(int64_t deadline_ns)
{
    if (deadline_ns == INT64_MAX) {
        return -1;
    }
    int64_t left = deadline_ns - tlsock__now_ns();
    if (left <= 0) {
        return 0;
    }
    int64_t ms = (left + 999999) / 1000000;
    return ms > 24 * 3600 * 1000 ? 24 * 3600 * 1000 : (int)ms;
}

/* tlsock__wait_fd(), also giving what poll() reported in *@p revents. */
static int wait_fd_revents(int fd, short events, int64_t deadline_ns, short *revents,
                           struct tlsock__err *err)
{
    struct pollfd pfd = {.fd = fd, .events = events};

    for (;;) {
        int timeout = poll_timeout(deadline_ns);
        int n = poll(&pfd, 1, timeout);
        if (n > 0) {
            *revents = pfd.revents;
            return 0;
        }
        if (n == 0) {
            if (timeout == 0 || tlsock__now_ns() >= deadline_ns) {
                return tlsock__fail(err, TLSOCK_ETIMEDOUT, "timed out waiting for the socket");
            }
            continue;
        }
        if (errno != EINTR) {
            return tlsock__fail(err, TLSOCK_ESYS, "poll: %s", strerror(errno));
        }
    }
}

int tlsock__wait_fd(int fd, short events, int64_t deadline_ns, struct tlsock__err *err)
{
    short revents = 0;

    return wait_fd_revents(fd, events, deadline_ns, &revents, err);
}

/* Connects one address; 0 with *fd_out set, or an error with the reason in @p err. */
static int connect_one(const struct addrinfo *ai, int64_t deadline_ns, int *fd_out,
                       struct tlsock__err *err)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    int rc = 0;
    int one = 1;
    int soerr = 0;
    socklen_t len = sizeof(soerr);

    if (fd < 0) {
        return tlsock__fail(err, TLSOCK_ESYS, "socket: %s", strerror(errno));
    }
    /* TLS writes whole records; Nagle would only delay handshake flights. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
        goto connected;
    }
    if (errno != EINPROGRESS && errno != EINTR) {
        rc = tlsock__fail(err, TLSOCK_ESYS, "connect: %s", strerror(errno));
        goto close_fd;
    }
    short revents = 0;
    rc = wait_fd_revents(fd, POLLOUT, deadline_ns, &revents, err);
    if (rc != 0) {
        if (rc == TLSOCK_ETIMEDOUT) {
            tlsock__fail(err, rc, "connect timed out");
        }
        goto close_fd;
    }
    if (revents == POLLOUT) {
        /* Writable without an error or hang-up: connected; a failure raises POLLERR. */
        goto connected;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) {
        soerr = errno;
    }
    if (soerr != 0) {
        rc = tlsock__fail(err, TLSOCK_ESYS, "connect: %s", strerror(soerr));
        goto close_fd;
    }
connected:
    *fd_out = fd;
    return 0;
close_fd:
    close(fd);
    return rc;
}

int tlsock__resolve_fail(struct tlsock__err *err, const char *host, int gai_rc)
{
    /* Out of memory is no fact about the name: the caller may try again. */
    return tlsock__fail(err, gai_rc == EAI_MEMORY ? TLSOCK_ENOMEM : TLSOCK_ERESOLVE,
                        "cannot resolve %s: %s", host,
                        gai_rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(gai_rc));
}

int tlsock__tcp_connect(const char *host, uint16_t port, int64_t deadline_ns, int *fd_out,
                        struct tlsock__err *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *list = NULL;
    char service[8];
    int rc;

    snprintf(service, sizeof(service), "%u", (unsigned)port);
    hints.ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV;
    if (tlsock__is_ip_literal(host)) {
        /* AI_ADDRCONFIG would refuse ::1 on a host with only loopback IPv6. */
        hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    }
    rc = getaddrinfo(host, service, &hints, &list);
    if (rc != 0) {
        return tlsock__resolve_fail(err, host, rc);
    }
    /* Try each address in turn; the error reported is the last one's. */
    rc = tlsock__fail(err, TLSOCK_ERESOLVE, "no address");
    for (const struct addrinfo *ai = list; ai != NULL; ai = ai->ai_next) {
        rc = connect_one(ai, deadline_ns, fd_out, err);
        if (rc == 0 || rc == TLSOCK_ETIMEDOUT) {
            break;
        }
    }
    freeaddrinfo(list);
    if (rc != 0) {
        /* Prefix the host so the message says where we failed to connect. */
        char detail[TLSOCK__ERRMSG_SIZE];
        snprintf(detail, sizeof(detail), "%s", tlsock__err_msg(err));
        tlsock__fail(err, rc, "%s port %u: %.400s", host, (unsigned)port, detail);
    }
    return rc;
}

void tlsock__graceful_close(int fd)
{
    char buf[4096];
    size_t drained = 0;
    int64_t deadline = tlsock__now_ns() + (int64_t)DRAIN_MS * 1000000;

    /*
     * Closing a socket with unread input makes the kernel send a reset, and a reset can destroy
     * an alert or close_notify still in flight to the peer. So: send FIN, then read (and drop)
     * what the peer still sends for a short, bounded time, until its EOF.
     */
    if (shutdown(fd, SHUT_WR) == 0) {
        while (drained < DRAIN_MAX_BYTES) {
            ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
            if (n > 0) {
                drained += (size_t)n;
                continue;
            }
            if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                break;
            }
            /* Polled directly: a timeout here is normal and must not touch tlsock_errmsg(). */
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            int left = poll_timeout(deadline);
            if (left == 0 || (poll(&pfd, 1, left) < 0 && errno != EINTR)) {
                break;
            }
        }
    }
    close(fd);
}
