/*
 * Listening sockets, the same for both drivers: tlsock_listen() and tlsock_uv_serve() bind with
 * the same options and report the same errors.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net.h"

enum { DEFAULT_BACKLOG = 128 };

/* Creates, binds and listens on one resolved address. */
static int listen_one(const struct addrinfo *ai, int backlog, bool reuseport, int *fd_out,
                      struct tlsock__err *err)
{
    int one = 1;
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    int rc = 0;

    if (fd < 0) {
        return tlsock__fail(err, TLSOCK_ESYS, "socket: %s", strerror(errno));
    }
    /* Restarting a server must not wait for old connections in TIME_WAIT. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* Several servers (one loop per thread) share the port; the kernel spreads the clients. */
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
        rc = tlsock__fail(err, TLSOCK_ESYS, "SO_REUSEPORT: %s", strerror(errno));
        goto close_fd;
    }
    /*
     * Handshake flights and small writes go out at once (Nagle would hold a second small segment
     * until the first is acknowledged). Linux copies TCP_NODELAY from the listener to each socket
     * accept() returns, which saves a setsockopt() per client; elsewhere each client sets it
     * (tlsock__accepted_nodelay()).
     */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (ai->ai_family == AF_INET6) {
        /* Dual stack when bound to "::"; harmless for specific IPv6 addresses. */
        int zero = 0;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    }
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        rc = tlsock__fail(err, TLSOCK_ESYS, "bind: %s", strerror(errno));
        goto close_fd;
    }
    if (listen(fd, backlog) < 0) {
        rc = tlsock__fail(err, TLSOCK_ESYS, "listen: %s", strerror(errno));
        goto close_fd;
    }
    *fd_out = fd;
    return 0;
close_fd:
    close(fd);
    return rc;
}

void tlsock__accepted_nodelay(int fd)
{
#ifdef __linux__
    (void)fd; /* inherited from the listener (listen_one()) */
#else
    int one = 1;

    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
#endif
}

void tlsock__quick_ack(int fd)
{
#ifdef TCP_QUICKACK
    int one = 1;

    /* Not sticky: the kernel leaves quick-ACK mode again by itself, so it is set per flight. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
#else
    (void)fd;
#endif
}

uint16_t tlsock__bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        return 0;
    }
    if (ss.ss_family == AF_INET6) {
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* Binds the first address of @p host that works; 0 with *fd_out set, or an error in @p err. */
static int listen_host(const char *host, uint16_t port, int backlog, bool reuseport, int *fd_out,
                       struct tlsock__err *err)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *list = NULL;
    char service[8];
    int rc;

    snprintf(service, sizeof(service), "%u", (unsigned)port);
    rc = getaddrinfo(host, service, &hints, &list);
    if (rc != 0) {
        return tlsock__resolve_fail(err, host, rc);
    }
    rc = tlsock__fail(err, TLSOCK_ERESOLVE, "no address to listen on");
    for (const struct addrinfo *ai = list; ai != NULL && rc != 0; ai = ai->ai_next) {
        rc = listen_one(ai, backlog, reuseport, fd_out, err);
    }
    freeaddrinfo(list);
    return rc;
}

int tlsock__listen_socket(const char *host, uint16_t port, int backlog, bool reuseport, int *fd_out)
{
    struct tlsock__err err = {0};
    int rc;

    if (backlog <= 0) {
        backlog = DEFAULT_BACKLOG;
    }
    if (host != NULL) {
        rc = listen_host(host, port, backlog, reuseport, fd_out, &err);
    } else {
        /* All addresses: one dual-stack IPv6 socket takes IPv4 too; IPv4 alone without IPv6. */
        rc = listen_host("::", port, backlog, reuseport, fd_out, &err);
        if (rc != 0) {
            rc = listen_host("0.0.0.0", port, backlog, reuseport, fd_out, &err);
        }
    }
    if (rc != 0) {
        rc = tlsock__fail(NULL, rc, "%s port %u: %.400s", host != NULL ? host : "(any)",
                          (unsigned)port, tlsock__err_msg(&err));
    }
    tlsock__err_free(&err);
    return rc;
}
