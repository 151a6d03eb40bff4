/*
 * The blocking connection API: connect and attach, then handshake, read, write, shutdown and
 * close, each one the core's steps run by tlsock__drive() until done or out of time.
 */
#include <fcntl.h>
#include <stddef.h>
#include <unistd.h>

#include "block.h"
#include "drive/net.h"

/* close() sends close_notify within the connection's timeout, or this long if it has none. */
enum { CLOSE_NOTIFY_DEFAULT_MS = 5000 };

/* Writes larger than one record are coalesced: several records per transport write. */
enum { CORK_THRESHOLD = 16384 };

/* ---------------------------------------------------------------------------------------------
 * Steps run by the driver
 * ------------------------------------------------------------------------------------------- */

static int step_handshake(struct tlsock_conn *conn, void *arg)
{
    (void)arg;
    return tlsock__conn_handshake_step(conn);
}

struct io_args {
    void *buf;
    size_t len;
    size_t done;
};

static int step_read(struct tlsock_conn *conn, void *arg)
{
    struct io_args *io = arg;

    return tlsock__conn_read_step(conn, io->buf, io->len, &io->done);
}

/* Writes the rest of the buffer, then hands any coalesced records to the transport. */
static int step_write(struct tlsock_conn *conn, void *arg)
{
    struct io_args *io = arg;
    size_t n = 0;

    while (io->done < io->len) {
        int rc =
            tlsock__conn_write_step(conn, (const char *)io->buf + io->done, io->len - io->done, &n);
        if (rc != 0) {
            return rc;
        }
        io->done += n;
    }
    return tlsock__conn_flush_step(conn);
}

static int step_close_notify(struct tlsock_conn *conn, void *arg)
{
    (void)arg;
    return tlsock__conn_close_notify_step(conn);
}

/* ---------------------------------------------------------------------------------------------
 * Operations shared with detach and the stdio streams
 * ------------------------------------------------------------------------------------------- */

int tlsock__block_handshake(struct tlsock_conn *conn)
{
    if (tlsock__conn_is_open(conn)) {
        return 0;
    }
    int rc = tlsock__drive(conn, step_handshake, NULL, tlsock__conn_handshake_deadline(conn),
                           TLSOCK_EHANDSHAKE_TIMEOUT);
    return tlsock__conn_settle(conn, rc, false);
}

int tlsock__block_read(struct tlsock_conn *conn, void *buf, size_t len, size_t *nread)
{
    struct io_args io = {.buf = buf, .len = len};
    int rc = tlsock__drive(conn, step_read, &io, tlsock__conn_op_deadline(conn), TLSOCK_ETIMEDOUT);

    rc = tlsock__conn_settle(conn, rc, true);
    if (rc == 0) {
        *nread = io.done;
    }
    return rc;
}

int tlsock__block_close_notify(struct tlsock_conn *conn, int64_t deadline_ns)
{
    int rc = tlsock__drive(conn, step_close_notify, NULL, deadline_ns, TLSOCK_ETIMEDOUT);

    return tlsock__conn_settle(conn, rc, false);
}

/* ---------------------------------------------------------------------------------------------
 * Making connections
 * ------------------------------------------------------------------------------------------- */

int tlsock_connect(struct tlsock_ctx *ctx, const char *host, uint16_t port,
                   const struct tlsock_opts *opts, struct tlsock_conn **out)
{
    struct tlsock_opts o = TLSOCK_OPTS_INIT;
    struct tlsock_conn *conn = NULL;
    struct tlsock__err err = {0};
    int fd = -1;
    int rc;

    if (ctx == NULL || host == NULL || out == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "connect: ctx, host and out are required");
    }
    if (tlsock__ctx_role(ctx) != TLSOCK_CLIENT) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "connect needs a client context");
    }
    if (opts != NULL && opts->size >= offsetof(struct tlsock_opts, handshake_timeout_ms)) {
        o.connect_timeout_ms = opts->connect_timeout_ms;
    }
    if (o.connect_timeout_ms < 0) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "a timeout in the options is negative (0: none)");
    }
    rc = tlsock__tcp_connect(host, port, tlsock__deadline_after(o.connect_timeout_ms), &fd, &err);
    tlsock__err_free(&err); /* the thread's message has it */
    if (rc != 0) {
        return rc;
    }
    const struct tlsock__conn_setup setup = {
        .kind = TLSOCK__TRANSPORT_SOCKET,
        .fd = fd,
        .owns_fd = true,
        .host = host,
        .port = port,
    };
    rc = tlsock__conn_new(ctx, &setup, opts, &conn);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    rc = tlsock__block_handshake(conn);
    if (rc != 0) {
        /* Closing sends nothing more, but lets our alert reach the server (graceful close). */
        tlsock_close(conn);
        return rc;
    }
    *out = conn;
    return 0;
}

int tlsock_attach_fd(struct tlsock_ctx *ctx, int fd, const struct tlsock_opts *opts,
                     struct tlsock_conn **out)
{
    if (ctx == NULL || fd < 0 || out == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "attach: ctx, a valid fd and out are required");
    }
    const struct tlsock__conn_setup setup = {
        .kind = TLSOCK__TRANSPORT_SOCKET,
        .fd = fd,
        .owns_fd = false,
    };
    return tlsock__conn_new(ctx, &setup, opts, out);
}

int tlsock_attach_io(struct tlsock_ctx *ctx, const struct tlsock_io *io,
                     const struct tlsock_opts *opts, struct tlsock_conn **out)
{
    if (ctx == NULL || io == NULL || io->read == NULL || io->write == NULL || out == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL,
                            "attach_io: ctx, read and write callbacks and out are required");
    }
    const struct tlsock__conn_setup setup = {
        .kind = TLSOCK__TRANSPORT_CALLBACKS,
        .fd = -1,
        .io = io,
    };
    return tlsock__conn_new(ctx, &setup, opts, out);
}

/* ---------------------------------------------------------------------------------------------
 * Using them
 * ------------------------------------------------------------------------------------------- */

int tlsock_handshake(struct tlsock_conn *conn)
{
    int rc = tlsock__conn_begin(conn);

    return rc != 0 ? rc : tlsock__block_handshake(conn);
}

int tlsock_read(struct tlsock_conn *conn, void *buf, size_t len, size_t *nread)
{
    int rc = tlsock__conn_begin(conn);

    if (rc != 0) {
        return rc;
    }
    if (buf == NULL || len == 0 || nread == NULL) {
        return tlsock__fail(tlsock__conn_err(conn), TLSOCK_EINVAL,
                            "read: a buffer of at least one byte and nread are required");
    }
    /* Data a detach kept comes first, before (and without) the handshake. */
    if (tlsock__conn_stashed(conn) == 0) {
        rc = tlsock__block_handshake(conn);
        if (rc != 0) {
            return rc;
        }
    }
    return tlsock__block_read(conn, buf, len, nread);
}

int tlsock_write(struct tlsock_conn *conn, const void *buf, size_t len)
{
    struct io_args io = {.buf = (void *)buf, .len = len};
    struct tlsock__err *err = NULL;
    int rc = tlsock__conn_begin(conn);

    if (rc != 0) {
        return rc;
    }
    err = tlsock__conn_err(conn);
    if (buf == NULL && len > 0) {
        return tlsock__fail(err, TLSOCK_EINVAL, "write: buffer is NULL");
    }
    if (tlsock__conn_sent_close(conn)) {
        return tlsock__fail(err, TLSOCK_EINVAL, "write after tlsock_shutdown");
    }
    if (tlsock__conn_write_done(conn) > len) {
        return tlsock__fail(err, TLSOCK_EINVAL,
                            "write: repeat an interrupted write with the same arguments");
    }
    if (len == 0) {
        return 0; /* nothing to write, and no reason to start a handshake for it */
    }
    rc = tlsock__block_handshake(conn);
    if (rc != 0) {
        return rc;
    }
    io.done = tlsock__conn_write_done(conn);
    tlsock__conn_cork(conn, len > CORK_THRESHOLD);
    rc = tlsock__drive(conn, step_write, &io, tlsock__conn_op_deadline(conn), TLSOCK_ETIMEDOUT);
    if (rc == TLSOCK_EWANT_READ || rc == TLSOCK_EWANT_WRITE) {
        /* Only transports without a socket get here: the caller repeats the call later. */
        tlsock__conn_set_write_done(conn, io.done);
        return rc;
    }
    tlsock__conn_set_write_done(conn, 0);
    tlsock__conn_cork(conn, false);
    /* A timed-out write may have sent part of the data: it is fatal, never retryable. */
    return tlsock__conn_settle(conn, rc, false);
}

int tlsock_shutdown(struct tlsock_conn *conn)
{
    int rc = tlsock__conn_begin(conn);

    if (rc != 0) {
        return rc;
    }
    rc = tlsock__block_handshake(conn);
    if (rc != 0) {
        return rc;
    }
    return tlsock__block_close_notify(conn, tlsock__conn_op_deadline(conn));
}

void tlsock_close(struct tlsock_conn *conn)
{
    if (conn == NULL) {
        return;
    }
    if (tlsock__conn_is_open(conn) && !tlsock__conn_sent_close(conn)) {
        /* Best effort, bounded by the operation timeout (a default without one) and the
         * deadline: the caller is done with the connection whatever happens here. */
        int64_t deadline = tlsock__conn_op_deadline(conn);
        if (tlsock__conn_timeout(conn) == 0) {
            int64_t fallback = tlsock__deadline_after(CLOSE_NOTIFY_DEFAULT_MS);
            deadline = deadline < fallback ? deadline : fallback;
        }
        int ignored = tlsock__block_close_notify(conn, deadline);
        (void)ignored;
    }
    int fd = tlsock__conn_fd(conn);
    if (tlsock__conn_owns_fd(conn)) {
        tlsock__graceful_close(fd);
    } else if (fd >= 0) {
        fcntl(fd, F_SETFL, tlsock__conn_saved_flags(conn));
    }
    tlsock__conn_free(conn);
}

/* Begins a call about the finished handshake (running it if needed), as tlsock_conn_info. */
static int begin_after_handshake(struct tlsock_conn *conn, bool args_ok)
{
    int rc = tlsock__conn_begin(conn);

    if (rc != 0) {
        return rc;
    }
    if (!args_ok) {
        return tlsock__fail(tlsock__conn_err(conn), TLSOCK_EINVAL, "an out-parameter is NULL");
    }
    return tlsock__block_handshake(conn);
}

int tlsock_conn_peer_cert_der(struct tlsock_conn *conn, size_t index, const unsigned char **der,
                              size_t *len)
{
    int rc = begin_after_handshake(conn, der != NULL && len != NULL);

    return rc != 0 ? rc : tlsock__conn_peer_cert_der(conn, index, der, len);
}

int tlsock_conn_peer_cert_pem(struct tlsock_conn *conn, size_t index, const char **pem, size_t *len)
{
    int rc = begin_after_handshake(conn, pem != NULL && len != NULL);

    return rc != 0 ? rc : tlsock__conn_peer_cert_pem(conn, index, pem, len);
}

int tlsock_conn_export_keying_material(struct tlsock_conn *conn, const char *label,
                                       const void *context, size_t context_len, void *out,
                                       size_t len)
{
    int rc = begin_after_handshake(conn, out != NULL);

    return rc != 0 ? rc : tlsock__conn_export(conn, label, context, context_len, out, len);
}

int tlsock_conn_channel_binding(struct tlsock_conn *conn,
                                unsigned char out[TLSOCK_CHANNEL_BINDING_SIZE])
{
    int rc = begin_after_handshake(conn, out != NULL);

    return rc != 0 ? rc : tlsock__conn_channel_binding(conn, out);
}

int tlsock_conn_info(struct tlsock_conn *conn, const struct tlsock_info **out)
{
    int rc = tlsock__conn_begin(conn);

    if (rc != 0) {
        return rc;
    }
    if (out == NULL) {
        return tlsock__fail(tlsock__conn_err(conn), TLSOCK_EINVAL, "info: out is required");
    }
    rc = tlsock__block_handshake(conn);
    if (rc != 0) {
        return rc;
    }
    return tlsock__conn_info(conn, out);
}
