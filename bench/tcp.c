/*
 * Plain TCP over loopback for the raw baselines (side_raw.c, side_raw_gnutls.c) and whatever
 * else in the bench needs a socket: blocking sockets with the socket-level behaviour tlsock has
 * on purpose (TCP_NODELAY, the graceful close), so that the ratios do not count it as tlsock's
 * overhead, and no system call per connection that a lean program would not make.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "bench.h"

/* The same bounds as tlsock's graceful close (src/net.c). */
#define DRAIN_MS        50
#define DRAIN_MAX_BYTES (64 * 1024)

struct tcp_listener {
    int fd;
};

/*
 * tlsock sets TCP_NODELAY on both ends (a handshake flight is several writes that Nagle would
 * hold back), and bounds every blocking call with a timeout; the baselines do the same.
 */
void bench_tcp_options(int fd)
{
    struct timeval tv = {.tv_sec = BENCH_IO_TIMEOUT_MS / 1000,
                         .tv_usec = (BENCH_IO_TIMEOUT_MS % 1000) * 1000};
    int one = 1;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static struct sockaddr_in loopback(uint16_t port)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};

    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return addr;
}

int bench_tcp_listen_fd(const char *side, bool nonblocking, uint16_t *port)
{
    struct sockaddr_in addr = loopback(0);
    socklen_t len = sizeof(addr);
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);

    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    }
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, 1024) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
        fprintf(stderr, "%s: listen: %s\n", side, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        fd = -1;
    } else {
        *port = ntohs(addr.sin_port);
    }
    return fd;
}

/*
 * Set once on the listener: Linux copies the socket options into every socket it accepts, so
 * the server's connections get TCP_NODELAY and the timeouts without a call each, and the
 * receive timeout also bounds the wait in accept4.
 */
int bench_tcp_listen(const char *side, void **out, uint16_t *port)
{
    int rc = BENCH_ERROR;
    struct tcp_listener *lis = malloc(sizeof(*lis));

    if (lis == NULL) {
        fprintf(stderr, "%s: out of memory\n", side);
    } else {
        lis->fd = bench_tcp_listen_fd(side, false, port);
        rc = lis->fd >= 0 ? BENCH_OK : BENCH_ERROR;
    }
    if (rc == BENCH_OK) {
        bench_tcp_options(lis->fd);
    }
    if (rc == BENCH_OK) {
        *out = lis;
    } else {
        free(lis);
    }
    return rc;
}

void bench_tcp_listen_close(void *lisp)
{
    struct tcp_listener *lis = lisp;

    if (lis != NULL) {
        close(lis->fd);
        free(lis);
    }
}

int bench_tcp_listener_fd(void *lisp)
{
    const struct tcp_listener *lis = lisp;

    return lis->fd;
}

/* One accept4 a connection: no poll first, no option to set (bench_tcp_listen). */
int bench_tcp_accept(const char *side, void *lisp, int *fd)
{
    struct tcp_listener *lis = lisp;
    int rc = BENCH_OK;

    *fd = accept4(lis->fd, NULL, NULL, SOCK_CLOEXEC);
    if (*fd < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        /* The listener's timeout, or a signal: the caller checks its stop flag and comes back. */
        rc = BENCH_AGAIN;
    } else if (*fd < 0) {
        fprintf(stderr, "%s: accept: %s\n", side, strerror(errno));
        rc = BENCH_ERROR;
    }
    return rc;
}

/* A client socket with TCP_NODELAY, and the timeouts if @p timeouts. */
static int tcp_connect(const char *side, uint16_t port, bool timeouts, int *out)
{
    struct sockaddr_in addr = loopback(port);
    int rc = BENCH_ERROR;
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        fprintf(stderr, "%s: socket: %s\n", side, strerror(errno));
        goto out;
    }
    if (timeouts) {
        bench_tcp_options(fd);
    } else {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        fprintf(stderr, "%s: connect: %s\n", side, strerror(errno));
        close(fd);
        goto out;
    }
    *out = fd;
    rc = BENCH_OK;

out:
    return rc;
}

int bench_tcp_connect(const char *side, uint16_t port, int *out)
{
    return tcp_connect(side, port, true, out);
}

/*
 * The raw baselines' client: no timeouts of its own. Its peer is one of the bench's servers,
 * whose sockets have them (or a tlsock_uv server, bounded by its loop's timers), and which closes
 * the connection on any failure, so a client blocked in a read or a write is woken in time.
 */
int bench_tcp_dial(const char *side, uint16_t port, int *out)
{
    return tcp_connect(side, port, false, out);
}

/*
 * Closes @p fd the way tlsock does (tlsock__graceful_close): FIN first, then drop whatever the
 * peer still sends until its EOF, for a bounded time. A plain close() with unread input (the
 * server's session tickets, say) makes the kernel send a reset, which can destroy data the peer
 * has not read yet, such as our last records or close_notify; a correct raw program must avoid
 * that too, so the baselines pay the same cost.
 */
void bench_tcp_close(int fd)
{
    char buf[4096];
    size_t drained = 0;
    int64_t deadline = bench_now_ns() + (int64_t)DRAIN_MS * 1000000;
    bool done = shutdown(fd, SHUT_WR) != 0;

    while (!done && drained < DRAIN_MAX_BYTES) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        int64_t left_ms = (deadline - bench_now_ns() + 999999) / 1000000;

        if (n > 0) {
            drained += (size_t)n;
        } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            done = true;
        } else if (left_ms <= 0) {
            done = true;
        } else {
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            (void)poll(&pfd, 1, (int)left_ms);
        }
    }
    close(fd);
}

bool bench_tcp_poke(uint16_t port)
{
    struct sockaddr_in addr = loopback(port);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool connected = fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0;

    if (fd >= 0) {
        close(fd);
    }
    return connected;
}
