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

void tlsock__uv_tls_drop(struct tlsock_conn *tls)
{
    /* No blocking close_notify here: the loop already said goodbye (or could not). */
    int fd = tlsock__conn_fd(tls);

    if (fd >= 0) {
        if (tlsock__conn_owns_fd(tls)) {
            close(fd);
        } else {
            fcntl(fd, F_SETFL, tlsock__conn_saved_flags(tls));
        }
    }
    tlsock__conn_free(tls);
}

/* Closes a handle that never became a connection; the caller keeps the session. */
static void abandon(struct tlsock_uv_conn *c)
{
    c->silent = true;
    c->tls = NULL;
    c->handles_closing = true;
    uv_close((uv_handle_t *)&c->tcp, tlsock__uv_handle_closed);
}

int tlsock_uv_adopt(uv_loop_t *loop, struct tlsock_conn *conn, const struct tlsock_uv_opts *opts,
                    struct tlsock_uv_conn **out)
{
    struct tlsock_uv_opts o = tlsock__uv_opts_copy(opts);
    struct tlsock__uv_config cfg = tlsock__uv_config_of(&o);
    struct tlsock_uv_conn *c = NULL;
    int fd = -1;
    int rc;

    tlsock__uv_sigpipe_init();
    if (loop == NULL || conn == NULL || out == NULL || opts == NULL || o.on_connect == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL,
                            "tlsock_uv_adopt: loop, conn, opts with on_connect and out are "
                            "required");
    }
    if (tlsock__conn_socket(conn) < 0) {
        return tlsock__fail(NULL, TLSOCK_EINVAL,
                            "tlsock_uv_adopt: only a connection over a socket can move to a loop");
    }
    if (tlsock__conn_sticky(conn) != 0) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "tlsock_uv_adopt: the connection is dead (%s)",
                            tlsock_err_name(tlsock__conn_sticky(conn)));
    }
    c = tlsock__uv_conn_alloc(loop, &cfg, o.user);
    if (c == NULL) {
        return tlsock__fail(NULL, TLSOCK_ENOMEM, "out of memory allocating a connection");
    }
    if (o.initial_data != NULL && o.initial_len > 0 &&
        tlsock__uv_queue_initial(c, o.initial_data, o.initial_len, true) != 0) {
        free(c);
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
    tlsock__uv_timers_init(c);
    c->tls = conn;
    c->adopted = true;
    c->borrowed_fd = !tlsock__conn_owns_fd(conn);
    if (o.handshake_timeout_ms > 0) {
        tlsock__conn_set_handshake_timeout(conn, o.handshake_timeout_ms);
    }
    tlsock__uv_start_tls(c);
    c->last_rx = uv_now(loop);
    /* on_connect (and data TLS already holds) come from the loop, never from this call. */
    tlsock__uv_kick(c);
    tlsock__uv_settle(c);
    *out = c;
    return 0;
free_conn:
    tlsock__uv_conn_discard(c);
    return rc;
}

/* Release could not finish: the connection stays with the application, which closes it. */
static void release_failed(struct tlsock_uv_conn *c, int code)
{
    tlsock_uv_release_cb cb = c->release_cb;

    c->release_cb = NULL;
    c->releasing = false;
    cb(c, NULL, code);
}

void tlsock__uv_release_step(struct tlsock_uv_conn *c)
{
    int fd = -1;
    bool owns = false;
    int rc;

    if (!c->releasing || c->closing || c->handles_closing) {
        return;
    }
    if (c->dead != 0) {
        release_failed(c, c->dead);
        return;
    }
    if (c->wq_head != NULL || c->cipher_inflight > 0 || tlsock__conn_output_pending(c->tls) > 0) {
        return; /* write callbacks bring us back */
    }
    if (c->adopted) {
        fd = tlsock__conn_fd(c->tls);
        owns = tlsock__conn_owns_fd(c->tls);
    } else {
        uv_os_fd_t ufd = -1;
        rc = uv_fileno((uv_handle_t *)&c->tcp, &ufd);
        fd = rc == 0 ? fcntl(ufd, F_DUPFD_CLOEXEC, 0) : -1;
        if (fd < 0) {
            release_failed(c, tlsock__uv_fail(c, TLSOCK_ESYS, "release: dup: %s",
                                              rc != 0 ? uv_strerror(rc) : strerror(errno)));
            return;
        }
        owns = true;
    }
    rc = tlsock__conn_to_socket(c->tls, fd, owns);
    if (rc != 0) {
        if (!c->adopted) {
            close(fd);
        }
        release_failed(c, tlsock__uv_tls_fail(c, rc));
        return;
    }
    /* The session is the blocking side's now; finish hands it over once libuv let go. */
    c->released = true;
    tlsock__uv_close_all(c);
}

int tlsock_uv_release(struct tlsock_uv_conn *conn, tlsock_uv_release_cb cb)
{
    struct tlsock_uv_conn *c = conn;

    if (c == NULL || cb == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "tlsock_uv_release: connection and cb needed");
    }
    if (c->closing || c->handles_closing || c->releasing || c->wr_shut) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "tlsock_uv_release: the connection is %s",
                            c->releasing ? "already being released" : "closing or shut down");
    }
    if (c->dead != 0 || c->deferred != 0) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "tlsock_uv_release: the connection is dead (%s)",
                            tlsock_err_name(c->dead != 0 ? c->dead : c->deferred));
    }
    if (c->phase != TLSOCK__UV_OPEN || !c->connect_reported) {
        return tlsock__fail(NULL, TLSOCK_EINVAL,
                            "tlsock_uv_release: the connection is not ready (wait for on_connect)");
    }
    c->releasing = true;
    c->release_cb = cb;
    /* Reading stops now; the hand-over itself runs from the loop once the writes completed. */
    tlsock__uv_kick(c);
    tlsock__uv_settle(c);
    return 0;
}
