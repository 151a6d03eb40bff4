/*
 * Plaintext socket I/O for the STARTTLS preamble. The library only takes over a socket once TLS
 * starts (tlsock_attach_fd), so the plaintext part (connect, the protocol's lines) is done here
 * with the same rules as the library: non-blocking socket, poll() bounded by one deadline,
 * MSG_NOSIGNAL so that a vanished peer is an error and not a SIGPIPE.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"
#include "plain_io.h"

/* The bounded drain of cli_plain_close(), as tlsock's own graceful close. */
#define CLOSE_DRAIN_MS        100
#define CLOSE_DRAIN_MAX_BYTES (64 * 1024)

/* Milliseconds left until @p deadline_ms for poll(): -1 without a deadline, 0 once passed. */
static int time_left(int64_t deadline_ms)
{
    int64_t left = 0;
    int wait_ms = -1;

    if (deadline_ms >= 0) {
        left = deadline_ms - tlsock_now_ms();
        wait_ms = left <= 0 ? 0 : (left > 86400000 ? 86400000 : (int)left);
    }
    return wait_ms;
}

/* Waits for @p events on @p fd; 0, TLSOCK_ETIMEDOUT or TLSOCK_ESYS (errno kept in *sys_errno). */
static int wait_fd(int fd, short events, int64_t deadline_ms, int *sys_errno)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    int err = TLSOCK_ETIMEDOUT;
    int ready = 0;

    for (;;) {
        ready = poll(&pfd, 1, time_left(deadline_ms));
        if (ready < 0 && errno == EINTR) {
            continue;
        }
        break;
    }
    if (ready > 0) {
        err = 0;
    } else if (ready < 0) {
        *sys_errno = errno;
        err = TLSOCK_ESYS;
    }
    return err;
}

/* One address: a non-blocking connect completed by poll(). */
static int connect_addr(const struct addrinfo *ai, int64_t deadline_ms, int *fd, int *sys_errno)
{
    int s = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    int err = TLSOCK_ESYS;
    int so_error = 0;
    socklen_t len = sizeof(so_error);

    if (s < 0) {
        *sys_errno = errno;
        goto done;
    }
    if (connect(s, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
        *sys_errno = errno;
        goto close_socket;
    }
    err = wait_fd(s, POLLOUT, deadline_ms, sys_errno);
    if (err != 0) {
        goto close_socket;
    }
    if (getsockopt(s, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0) {
        *sys_errno = errno;
        err = TLSOCK_ESYS;
        goto close_socket;
    }
    if (so_error != 0) {
        *sys_errno = so_error;
        err = TLSOCK_ESYS;
        goto close_socket;
    }
    *fd = s;
    s = -1;
close_socket:
    if (s >= 0) {
        close(s);
    }
done:
    return err;
}

int cli_plain_connect(const char *host, uint16_t port, int64_t deadline_ms, int *fd)
{
    struct addrinfo hints;
    struct addrinfo *list = NULL;
    const struct addrinfo *ai = NULL;
    char port_str[8];
    char what[CLI_HOST_MAX + 32];
    int sys_errno = 0;
    int err = TLSOCK_ERESOLVE;
    int rc = 0;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port_str, sizeof(port_str), "%u", (unsigned)port);
    cli_format_hostport(host, port, what, sizeof(what));
    /* getaddrinfo() cannot be bounded; a deadline starts counting with the TCP connect. */
    rc = getaddrinfo(host, port_str, &hints, &list);
    if (rc != 0) {
        cli_errorf("connect to %s: %s: %s", what, tlsock_strerror(err), gai_strerror(rc));
        goto done;
    }
    err = TLSOCK_ESYS;
    for (ai = list; ai != NULL && err == TLSOCK_ESYS; ai = ai->ai_next) {
        err = connect_addr(ai, deadline_ms, fd, &sys_errno);
    }
    if (err == TLSOCK_ETIMEDOUT) {
        cli_errorf("connect to %s: %s", what, tlsock_strerror(err));
    } else if (err != 0) {
        cli_errorf("connect to %s: %s: %s", what, tlsock_strerror(err), strerror(sys_errno));
    }
    freeaddrinfo(list);
done:
    return err;
}

int cli_plain_send(int fd, const char *buf, size_t len, int64_t deadline_ms)
{
    size_t off = 0;
    ssize_t n = 0;
    int sys_errno = 0;
    int err = 0;

    while (off < len && err == 0) {
        n = send(fd, buf + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            err = wait_fd(fd, POLLOUT, deadline_ms, &sys_errno);
        } else if (n < 0 && errno != EINTR) {
            sys_errno = errno;
            err = TLSOCK_ESYS;
        }
    }
    if (err == TLSOCK_ETIMEDOUT) {
        cli_errorf("send: %s", tlsock_strerror(err));
    } else if (err != 0) {
        cli_errorf("send: %s: %s", tlsock_strerror(err), strerror(sys_errno));
    }
    return err;
}

void cli_plain_close(int fd)
{
    char buf[4096];
    size_t drained = 0;
    int64_t deadline = tlsock_now_ms() + CLOSE_DRAIN_MS;
    bool draining = shutdown(fd, SHUT_WR) == 0;
    ssize_t n = 0;
    int ignored = 0;

    while (draining && drained < CLOSE_DRAIN_MAX_BYTES) {
        n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0) {
            drained += (size_t)n;
        } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            draining = false;
        } else if (time_left(deadline) == 0) {
            draining = false;
        } else {
            draining = wait_fd(fd, POLLIN, deadline, &ignored) == 0;
        }
    }
    close(fd);
}

void cli_line_reader_init(struct cli_line_reader *reader, int fd, int64_t deadline_ms)
{
    reader->fd = fd;
    reader->deadline_ms = deadline_ms;
    reader->sys_errno = 0;
    reader->start = 0;
    reader->end = 0;
}

/* Reads more bytes into the buffer, making room first; 0 or a TLSOCK_E* code. */
static int fill(struct cli_line_reader *reader)
{
    ssize_t n = 0;
    int err = 0;

    if (reader->start > 0) {
        memmove(reader->buf, reader->buf + reader->start, reader->end - reader->start);
        reader->end -= reader->start;
        reader->start = 0;
    }
    for (;;) {
        n = recv(reader->fd, reader->buf + reader->end, sizeof(reader->buf) - reader->end, 0);
        if (n > 0) {
            reader->end += (size_t)n;
            break;
        }
        if (n == 0) {
            err = TLSOCK_ETRUNCATED;
            break;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            err = wait_fd(reader->fd, POLLIN, reader->deadline_ms, &reader->sys_errno);
        } else if (errno != EINTR) {
            reader->sys_errno = errno;
            err = TLSOCK_ESYS;
        }
        if (err != 0) {
            break;
        }
    }
    return err;
}

int cli_line_read(struct cli_line_reader *reader, char *line, size_t cap)
{
    const char *lf = NULL;
    size_t len = 0;
    int err = 0;

    for (;;) {
        lf = memchr(reader->buf + reader->start, '\n', reader->end - reader->start);
        if (lf != NULL) {
            break;
        }
        /* No line end within the whole buffer, or within what the caller can take. */
        if (reader->end - reader->start >= cap ||
            reader->end - reader->start == sizeof(reader->buf)) {
            err = TLSOCK_EPROTO;
            goto done;
        }
        err = fill(reader);
        if (err != 0) {
            goto done;
        }
    }
    len = (size_t)(lf - (reader->buf + reader->start));
    if (len >= cap) {
        err = TLSOCK_EPROTO;
        goto done;
    }
    memcpy(line, reader->buf + reader->start, len);
    reader->start += len + 1;
    /* RFC 5321 section 2.3.8 says CR LF; a bare LF is accepted, the CR is not part of a line. */
    if (len > 0 && line[len - 1] == '\r') {
        len--;
    }
    line[len] = '\0';
done:
    return err;
}

const char *cli_line_reader_leftover(const struct cli_line_reader *reader, size_t *len)
{
    *len = reader->end - reader->start;
    return reader->buf + reader->start;
}
