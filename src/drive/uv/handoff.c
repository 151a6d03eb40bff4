/*
 * Moving a live TLS session between blocking use and the loop, losing no byte (src/handoff.c
 * switches the session's transport; this file moves the socket).
 *
 * Adopt: libuv gets a duplicate of the connection's socket, so that uv_close() closes the
 * duplicate and the session's own descriptor stays as it was (closed at the end only if the
 * session owned it). Release: once every queued write completed, the blocking side gets a
 * descriptor (the session's own if it was adopted, else a duplicate of libuv's), and ciphertext
 * the loop fed but TLS did not consume goes back in front of that socket.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "uv_int.h"

static void abandoned(uv_handle_t *handle)
{
    tlsock__uv_conn_discard(tlsock__uv_conn_of(handle));
}

/* Closes a handle that never became a connection; the caller keeps the session. */
static void abandon(struct tlsock_uv_conn *c)
{
    uv_close((uv_handle_t *)&c->tcp, abandoned);
}

int tlsock_uv_adopt(uv_loop_t *loop, struct tlsock_conn *conn, const struct tlsock_uv_opts *opts,
                    struct tlsock_uv_conn **out)
{
    struct tlsock_uv_opts o;
    struct tlsock__uv_config *cfg = NULL;
    struct tlsock_uv_conn *c = NULL;
    int fd = -1;
    int rc;

    tlsock__uv_sigpipe_init();
    rc = tlsock__uv_opts_copy(opts, "tlsock_uv_adopt", &o);
    if (loop == NULL || conn == NULL || out == NULL || opts == NULL || o.on_connect == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL,
                            "tlsock_uv_adopt: loop, conn, opts with on_connect and out are "
                            "required");
    }
    if (rc != 0) {
        return rc;
    }
    if (tlsock__conn_socket(conn) < 0) {
        return tlsock__fail(NULL, TLSOCK_EINVAL,
                            "tlsock_uv_adopt: only a connection over a socket can move to a loop");
    }
    if (tlsock__conn_sticky(conn) != 0) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "tlsock_uv_adopt: the connection is dead (%s)",
                            tlsock_err_name(tlsock__conn_sticky(conn)));
    }
    cfg = tlsock__uv_config_new(&o);
    c = cfg != NULL ? tlsock__uv_conn_alloc(loop, cfg, o.user) : NULL;
    tlsock__uv_config_unref(cfg); /* the connection holds it */
    if (c == NULL) {
        return tlsock__fail(NULL, TLSOCK_ENOMEM, "out of memory allocating a connection");
    }
    if (o.initial_data != NULL && o.initial_len > 0 &&
        tlsock__uv_queue_initial(c, o.initial_data, o.initial_len, true) != 0) {
        tlsock__uv_conn_discard(c);
        return tlsock__fail(NULL, TLSOCK_ENOMEM, "out of memory copying initial data");
    }
    fd = fcntl(tlsock__conn_fd(conn), F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
        rc = tlsock__fail(NULL, TLSOCK_ESYS, "tlsock_uv_adopt: dup: %s", strerror(errno));
        goto free_conn;
    }
    uv_tcp_init(loop, &c->tcp); /* AF_UNSPEC: cannot fail */
    c->handles = 1;
    rc = uv_tcp_open(&c->tcp, fd);
    if (rc != 0) {
        close(fd);
        rc = tlsock__fail(NULL, TLSOCK_ESYS, "tlsock_uv_adopt: %s", uv_strerror(rc));
        abandon(c);
        return rc;
    }
    /* The last step that can fail, and it leaves the session as it was when it does. */
    rc = tlsock__conn_to_memory(conn);
    if (rc != 0) {
        tlsock__publish(tlsock__conn_err(conn));
        abandon(c);
        return rc;
    }
    c->tls = conn;
    c->adopted = true;
    c->borrowed_fd = !tlsock__conn_owns_fd(conn);
    if (o.handshake_timeout_ms > 0) {
        tlsock__conn_set_handshake_timeout(conn, o.handshake_timeout_ms);
    }
    tlsock__uv_start_tls(c);
    /* on_connect (and data TLS already holds) come from the loop, never from this call: its
     * pump finds the handshake done, or runs it. */
    tlsock__uv_arm(c);
    tlsock__uv_kick(c);
    *out = c;
    return 0;
free_conn:
    tlsock__uv_conn_discard(c);
    return rc;
}

int tlsock_uv_release(struct tlsock_uv_conn *conn, tlsock_uv_release_cb cb)
{
    struct tlsock_uv_conn *c = conn;

    if (c == NULL || cb == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "tlsock_uv_release: connection and cb needed");
    }
    if (c->state == TLSOCK__UV_DEAD) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "tlsock_uv_release: the connection is dead (%s)",
                            tlsock_err_name(c->failure));
    }
    if (c->state > TLSOCK__UV_OPEN || c->tx != TLSOCK__UV_TX_OPEN) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "tlsock_uv_release: the connection is %s",
                            c->state == TLSOCK__UV_RELEASING ? "already being released"
                                                             : "closing or shut down");
    }
    if (c->state != TLSOCK__UV_OPEN) {
        return tlsock__fail(NULL, TLSOCK_EINVAL,
                            "tlsock_uv_release: the connection is not ready (wait for on_connect)");
    }
    tlsock__uv_enter(c, TLSOCK__UV_RELEASING);
    c->release_cb = cb;
    /* Reading stops from the loop, before it reads again; the hand-over runs once the writes
     * completed. */
    tlsock__uv_kick(c);
    return 0;
}
