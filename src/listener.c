/*
 * Listeners: a bound TCP socket whose accepted clients become (not yet handshaken) connections.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

enum { DEFAULT_BACKLOG = 128 };

struct tlsock_listener {
    struct tlsock_ctx *ctx; /* referenced */
    int fd;
    uint16_t port;
    struct tlsock__err err;
};

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
        return tlsock__fail(err, TLSOCK_ERESOLVE, "cannot resolve %s: %s", host, gai_strerror(rc));
    }
    rc = TLSOCK_ERESOLVE;
    snprintf(err->msg, sizeof(err->msg), "no address to listen on");
    for (const struct addrinfo *ai = list; ai != NULL && rc != 0; ai = ai->ai_next) {
        rc = listen_one(ai, backlog, reuseport, fd_out, err);
    }
    freeaddrinfo(list);
    return rc;
}

int tlsock__listen_socket(const char *host, uint16_t port, int backlog, bool reuseport, int *fd_out)
{
    struct tlsock__err err = {{0}};
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
        return tlsock__fail(NULL, rc, "%s port %u: %.400s", host != NULL ? host : "(any)",
                            (unsigned)port, err.msg);
    }
    return 0;
}

int tlsock_listen(struct tlsock_ctx *ctx, const char *host, uint16_t port, int backlog,
                  struct tlsock_listener **out)
{
    struct tlsock_listener *lis = NULL;
    struct tlsock__err err = {{0}};
    int fd = -1;
    int rc;

    if (ctx == NULL || out == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "listen: ctx and out are required");
    }
    if (ctx->role != TLSOCK_SERVER) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "listen needs a server context");
    }
    /* A server that cannot serve should fail here, not at its first client. */
    rc = tlsock__ctx_freeze(ctx, &err);
    if (rc != 0) {
        tlsock__publish(&err);
        return rc;
    }
    rc = tlsock__listen_socket(host, port, backlog, false, &fd);
    if (rc != 0) {
        return rc;
    }
    lis = calloc(1, sizeof(*lis));
    if (lis == NULL) {
        close(fd);
        return tlsock__fail(NULL, TLSOCK_ENOMEM, "out of memory allocating a listener");
    }
    lis->ctx = tlsock_ctx_ref(ctx);
    lis->fd = fd;
    lis->port = tlsock__bound_port(fd);
    *out = lis;
    return 0;
}

uint16_t tlsock_listener_port(const struct tlsock_listener *lis)
{
    return lis != NULL ? lis->port : 0;
}

int tlsock_listener_fd(const struct tlsock_listener *lis)
{
    return lis != NULL ? lis->fd : -1;
}

const char *tlsock_listener_errmsg(const struct tlsock_listener *lis)
{
    return lis != NULL ? lis->err.msg : "listener is NULL";
}

/* Errors from accept(2) that concern one client, not the listener: try the next client. */
static bool accept_error_is_transient(int err)
{
    return err == EINTR || err == ECONNABORTED || err == EPROTO || err == EAGAIN ||
           err == EWOULDBLOCK;
}

int tlsock_accept(struct tlsock_listener *lis, const struct tlsock_opts *opts,
                  struct tlsock_conn **out)
{
    int timeout_ms = 0;
    int rc;

    if (lis == NULL || out == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "accept: listener and out are required");
    }
    tlsock__err_clear(&lis->err);
    if (opts != NULL && opts->size >= offsetof(struct tlsock_opts, handshake_timeout_ms)) {
        timeout_ms = opts->connect_timeout_ms;
    }
    int64_t deadline = tlsock__deadline_after(timeout_ms);
    for (;;) {
        int fd = accept4(lis->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd >= 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            const struct tlsock__conn_setup setup = {
                .transport = TLSOCK__TRANSPORT_FD,
                .fd = fd,
                .owns_fd = true,
            };
            rc = tlsock__conn_new(lis->ctx, &setup, opts, out);
            if (rc != 0) {
                close(fd);
            }
            break;
        }
        if (!accept_error_is_transient(errno)) {
            rc = tlsock__fail(&lis->err, TLSOCK_ESYS, "accept: %s", strerror(errno));
            break;
        }
        rc = tlsock__wait_fd(lis->fd, POLLIN, deadline, &lis->err);
        if (rc != 0) {
            break;
        }
    }
    if (rc != 0) {
        memcpy(lis->err.msg, tlsock_errmsg(), sizeof(lis->err.msg));
    }
    return rc;
}

void tlsock_listener_close(struct tlsock_listener *lis)
{
    if (lis == NULL) {
        return;
    }
    close(lis->fd);
    tlsock_ctx_free(lis->ctx);
    free(lis);
}
