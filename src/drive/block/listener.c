/*
 * Listeners: a bound TCP socket whose accepted clients become (not yet handshaken) connections.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "block.h"
#include "drive/ctx_slot.h"
#include "drive/net.h"

struct tlsock_listener {
    struct tlsock__ctx_slot ctx; /* tlsock_listener_set_ctx() swaps it while others accept */
    int fd;
    uint16_t port;
    struct tlsock__err err;
};

int tlsock_listen(struct tlsock_ctx *ctx, const char *host, uint16_t port, int backlog,
                  struct tlsock_listener **out)
{
    struct tlsock_listener *lis = NULL;
    int fd = -1;
    int rc;

    if (ctx == NULL || out == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "listen: ctx and out are required");
    }
    rc = tlsock__server_ctx_ready(ctx, "listen");
    if (rc != 0) {
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
    tlsock__ctx_slot_init(&lis->ctx, ctx);
    lis->fd = fd;
    lis->port = tlsock__bound_port(fd);
    *out = lis;
    return 0;
}

int tlsock_listener_set_ctx(struct tlsock_listener *lis, struct tlsock_ctx *ctx)
{
    if (lis == NULL || ctx == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL,
                            "tlsock_listener_set_ctx: lis and ctx are required");
    }
    return tlsock__ctx_slot_set(&lis->ctx, ctx, "tlsock_listener_set_ctx");
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
    return lis != NULL ? tlsock__err_msg(&lis->err) : "listener is NULL";
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
        /*
         * Poll, then accept: two system calls per client, as a blocking program's poll and
         * accept. Accepting first costs a failed accept whenever no client waits, which is the
         * usual case for a thread that accepts one client at a time; another thread may still
         * take the client between the two, and the loop polls again.
         */
        rc = tlsock__wait_fd(lis->fd, POLLIN, deadline, &lis->err);
        if (rc != 0) {
            break;
        }
        int fd = accept4(lis->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd >= 0) {
            tlsock__accepted_nodelay(fd);
            const struct tlsock__conn_setup setup = {
                .kind = TLSOCK__TRANSPORT_SOCKET,
                .fd = fd,
                .owns_fd = true,
            };
            struct tlsock_ctx *ctx = tlsock__ctx_slot_get(&lis->ctx);
            rc = tlsock__conn_new(ctx, &setup, opts, out);
            tlsock_ctx_free(ctx); /* the connection holds its own reference */
            if (rc != 0) {
                close(fd);
            }
            break;
        }
        if (!accept_error_is_transient(errno)) {
            rc = tlsock__fail(&lis->err, TLSOCK_ESYS, "accept: %s", strerror(errno));
            break;
        }
    }
    if (rc != 0) {
        /* The listener keeps the thread's message (a copy: tlsock__fail writes it again). */
        char msg[TLSOCK__ERRMSG_SIZE];
        snprintf(msg, sizeof(msg), "%s", tlsock_errmsg());
        tlsock__fail(&lis->err, rc, "%s", msg);
    }
    return rc;
}

void tlsock_listener_close(struct tlsock_listener *lis)
{
    if (lis == NULL) {
        return;
    }
    close(lis->fd);
    tlsock__ctx_slot_destroy(&lis->ctx);
    tlsock__err_free(&lis->err);
    free(lis);
}
