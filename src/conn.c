/*
 * Connections: the state machine shared by every driver (handshake, read, write, close_notify),
 * sticky fatal errors, timeouts and deadlines, and the blocking public API on top of it.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "xport.h"

/* close() sends close_notify within the connection's timeout, or this long if it has none. */
enum { CLOSE_NOTIFY_DEFAULT_MS = 5000 };

/* Copies the caller's options, however old their struct tlsock_opts is, over zeroed defaults. */
static struct tlsock_opts opts_copy(const struct tlsock_opts *opts)
{
    struct tlsock_opts o = TLSOCK_OPTS_INIT;

    if (opts != NULL && opts->size > 0) {
        memcpy(&o, opts, opts->size < sizeof(o) ? opts->size : sizeof(o));
        o.size = sizeof(o);
    }
    return o;
}

static int64_t min_deadline(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* The deadline for one blocking operation: the per-operation timeout or the absolute deadline. */
int64_t tlsock__conn_op_deadline(const struct tlsock_conn *conn)
{
    return min_deadline(conn->deadline_ns, tlsock__deadline_after(conn->timeout_ms));
}

/*
 * Records the outcome of an operation. Fatal errors become sticky; ETIMEDOUT on a read and a
 * peer's close_notify are the only failures a connection survives.
 */
int tlsock__conn_settle(struct tlsock_conn *conn, int rc, bool timeout_retryable)
{
    if (rc == 0 || rc == TLSOCK_EWANT_READ || rc == TLSOCK_EWANT_WRITE) {
        return rc;
    }
    if (rc == TLSOCK_ECLOSED) {
        conn->peer_closed = true;
    } else if (!(rc == TLSOCK_ETIMEDOUT && timeout_retryable)) {
        conn->state = TLSOCK__FAILED;
        conn->sticky = rc;
    }
    tlsock__publish(&conn->err);
    return rc;
}

/*
 * Starts a public call: clears the last message unless the connection is dead, in which case
 * the sticky error and its message are returned again.
 */
int tlsock__conn_begin(struct tlsock_conn *conn)
{
    if (conn == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "connection is NULL");
    }
    if (conn->state == TLSOCK__FAILED) {
        tlsock__publish(&conn->err);
        return conn->sticky;
    }
    tlsock__err_clear(&conn->err);
    return 0;
}

/* A client's SNI and the name its certificate must match; "" for none. */
struct client_names {
    char sni[256];
    char verify[256];
};

/* Works out SNI and the name to verify for a client connection. */
static int client_names(const struct tlsock_ctx *ctx, const char *host, const struct tlsock_opts *o,
                        struct client_names *out)
{
    /* RFC 6066 section 3: SNI carries host names only, never IP literals. */
    const char *sni = o->servername;
    if (sni == NULL && host != NULL && !tlsock__is_ip_literal(host)) {
        sni = host;
    }
    const char *name = o->verify_name;
    if (name == NULL) {
        name = (o->servername != NULL && o->servername[0] != '\0') ? o->servername : host;
    }
    if ((sni != NULL && strlen(sni) >= sizeof(out->sni)) ||
        (name != NULL && strlen(name) >= sizeof(out->verify))) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "server name is too long");
    }
    strcpy(out->sni, sni != NULL ? sni : "");
    strcpy(out->verify, name != NULL ? name : "");
    if (ctx->verify_mode == TLSOCK_VERIFY_REQUIRED && out->verify[0] == '\0') {
        return tlsock__fail(NULL, TLSOCK_EINVAL,
                            "verification needs a host name: set opts.verify_name or "
                            "opts.servername");
    }
    return 0;
}

/* Chooses the callbacks the implementation moves bytes with, if any. */
static void set_transport(struct tlsock_conn *conn, const struct tlsock__conn_setup *setup,
                          const struct tlsock_opts *o)
{
    conn->transport = setup->transport;
    if (conn->transport == TLSOCK__TRANSPORT_FD && o->fd_callbacks) {
        conn->transport = TLSOCK__TRANSPORT_FD_CALLBACKS;
    }
    switch (conn->transport) {
    case TLSOCK__TRANSPORT_FD_CALLBACKS:
        conn->io = tlsock__fd_io;
        conn->io.user = conn;
        break;
    case TLSOCK__TRANSPORT_MEMORY:
        conn->io = tlsock__mem_io;
        conn->io.user = conn;
        break;
    case TLSOCK__TRANSPORT_USER:
        conn->io = *setup->io;
        break;
    case TLSOCK__TRANSPORT_FD:
        break;
    }
}

int tlsock__conn_new(struct tlsock_ctx *ctx, const struct tlsock__conn_setup *setup,
                     const struct tlsock_opts *opts, struct tlsock_conn **out)
{
    struct tlsock_opts o = opts_copy(opts);
    struct tlsock_conn *conn = NULL;
    struct tlsock__err err = {{0}};
    int rc;

    if (o.connect_timeout_ms < 0 || o.handshake_timeout_ms < 0 || o.timeout_ms < 0) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "a timeout in the options is negative (0: none)");
    }
    rc = tlsock__ctx_freeze(ctx, &err);
    if (rc != 0) {
        tlsock__publish(&err);
        return rc;
    }
    conn = calloc(1, sizeof(*conn));
    if (conn == NULL) {
        return tlsock__fail(NULL, TLSOCK_ENOMEM, "out of memory allocating a connection");
    }
    conn->ctx = tlsock_ctx_ref(ctx);
    conn->fd = setup->fd;
    conn->owns_fd = setup->owns_fd;
    conn->impl = ctx->impl;
    conn->state = TLSOCK__HANDSHAKING;
    conn->timeout_ms = o.timeout_ms;
    conn->handshake_timeout_ms =
        o.handshake_timeout_ms > 0 ? o.handshake_timeout_ms : ctx->handshake_timeout;
    conn->deadline_ns = INT64_MAX;
    conn->op_deadline_ns = INT64_MAX;
    set_transport(conn, setup, &o);
    /* The names are only needed here: the session keeps what it uses. */
    struct client_names names = {"", ""};
    if (ctx->role == TLSOCK_CLIENT) {
        rc = client_names(ctx, setup->host, &o, &names);
        if (rc != 0) {
            goto free_conn;
        }
    }
    if (conn->fd >= 0) {
        rc = tlsock__set_nonblocking(conn->fd, &conn->saved_flags, &err);
        if (rc != 0) {
            tlsock__publish(&err);
            goto free_conn;
        }
    }
    const struct tlsock__conn_params params = {
        .role = ctx->role,
        .io = conn->transport == TLSOCK__TRANSPORT_FD ? NULL : &conn->io,
        .fd = conn->fd,
        .preread = o.preread,
        .preread_len = o.preread != NULL ? o.preread_len : 0,
        .servername = names.sni[0] != '\0' ? names.sni : NULL,
        .verify_name = names.verify[0] != '\0' ? names.verify : NULL,
        .verify_mode = ctx->verify_mode,
    };
    rc = ctx->impl->conn_new(ctx->native, &params, &conn->tls, &err);
    if (rc != 0) {
        tlsock__publish(&err);
        goto restore_flags;
    }
    if (ctx->on_conn != NULL) {
        rc = ctx->on_conn(ctx->impl->conn_native(conn->tls), ctx->configure_user);
        if (rc != 0) {
            rc = tlsock__fail(NULL, rc < 0 ? rc : TLSOCK_ECONFIG,
                              "the connection configure callback failed (%d)", rc);
            ctx->impl->conn_free(conn->tls);
            goto restore_flags;
        }
    }
    *out = conn;
    return 0;
restore_flags:
    if (conn->fd >= 0) {
        fcntl(conn->fd, F_SETFL, conn->saved_flags);
    }
free_conn:
    tlsock_ctx_free(conn->ctx);
    free(conn);
    return rc;
}

static int step_handshake(struct tlsock_conn *conn, void *arg)
{
    (void)arg;
    return conn->impl->handshake(conn->tls, &conn->err);
}

/* Runs the handshake if it is not done yet; the caller has checked the sticky state. */
int tlsock__conn_handshake(struct tlsock_conn *conn)
{
    int rc;

    if (conn->state == TLSOCK__OPEN) {
        return 0;
    }
    /* Only the handshake timeout bounds the handshake: the operation timeout is per read/write. */
    int64_t deadline =
        min_deadline(conn->deadline_ns, tlsock__deadline_after(conn->handshake_timeout_ms));
    rc = tlsock__drive(conn, step_handshake, NULL, deadline, TLSOCK_EHANDSHAKE_TIMEOUT);
    if (rc == 0) {
        conn->state = TLSOCK__OPEN;
    } else if (rc == TLSOCK_ETIMEDOUT) {
        /* A transport callback timed out: in the handshake that is a handshake timeout. */
        rc = TLSOCK_EHANDSHAKE_TIMEOUT;
    }
    return tlsock__conn_settle(conn, rc, false);
}

int tlsock_handshake(struct tlsock_conn *conn)
{
    int rc = tlsock__conn_begin(conn);

    return rc != 0 ? rc : tlsock__conn_handshake(conn);
}

int tlsock_connect(struct tlsock_ctx *ctx, const char *host, uint16_t port,
                   const struct tlsock_opts *opts, struct tlsock_conn **out)
{
    struct tlsock_opts o = opts_copy(opts);
    struct tlsock_conn *conn = NULL;
    struct tlsock__err err = {{0}};
    int fd = -1;
    int rc;

    if (ctx == NULL || host == NULL || out == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "connect: ctx, host and out are required");
    }
    if (ctx->role != TLSOCK_CLIENT) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "connect needs a client context");
    }
    rc = tlsock__tcp_connect(host, port, tlsock__deadline_after(o.connect_timeout_ms), &fd, &err);
    if (rc != 0) {
        return rc;
    }
    const struct tlsock__conn_setup setup = {
        .transport = TLSOCK__TRANSPORT_FD,
        .fd = fd,
        .owns_fd = true,
        .host = host,
    };
    rc = tlsock__conn_new(ctx, &setup, &o, &conn);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    rc = tlsock__conn_handshake(conn);
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
        .transport = TLSOCK__TRANSPORT_FD,
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
        .transport = TLSOCK__TRANSPORT_USER,
        .fd = -1,
        .io = io,
    };
    return tlsock__conn_new(ctx, &setup, opts, out);
}

struct io_args {
    void *buf;
    size_t len;
    size_t done;
};

static int step_read(struct tlsock_conn *conn, void *arg)
{
    struct io_args *io = arg;

    return conn->impl->read(conn->tls, io->buf, io->len, &io->done, &conn->err);
}

int tlsock__conn_read(struct tlsock_conn *conn, void *buf, size_t len, size_t *nread)
{
    struct io_args io = {.buf = buf, .len = len};
    int rc = tlsock__drive(conn, step_read, &io, tlsock__conn_op_deadline(conn), TLSOCK_ETIMEDOUT);

    rc = tlsock__conn_settle(conn, rc, true);
    if (rc == 0) {
        *nread = io.done;
    }
    return rc;
}

int tlsock_read(struct tlsock_conn *conn, void *buf, size_t len, size_t *nread)
{
    int rc = tlsock__conn_begin(conn);

    if (rc != 0) {
        return rc;
    }
    if (buf == NULL || len == 0 || nread == NULL) {
        return tlsock__fail(&conn->err, TLSOCK_EINVAL,
                            "read: a buffer of at least one byte and "
                            "nread are required");
    }
    /* Data that arrived while a detach waited for close_notify comes first. */
    if (tlsock__buf_pending(&conn->stash) > 0) {
        *nread = tlsock__buf_take(&conn->stash, buf, len);
        return 0;
    }
    if (conn->peer_closed) {
        return tlsock__fail(&conn->err, TLSOCK_ECLOSED, "the peer already sent close_notify");
    }
    rc = tlsock__conn_handshake(conn);
    if (rc != 0) {
        return rc;
    }
    return tlsock__conn_read(conn, buf, len, nread);
}

/* Writes the rest of the buffer, then hands any coalesced records to the transport. */
static int step_write(struct tlsock_conn *conn, void *arg)
{
    struct io_args *io = arg;
    size_t n = 0;

    while (io->done < io->len) {
        int rc = conn->impl->write(conn->tls, (const char *)io->buf + io->done, io->len - io->done,
                                   &n, &conn->err);
        if (rc != 0) {
            return rc;
        }
        io->done += n;
    }
    return tlsock__xport_flush(conn->impl->xport(conn->tls), &conn->err);
}

/* Writes larger than one record are coalesced: several records per transport write. */
enum { CORK_THRESHOLD = 16384 };

int tlsock_write(struct tlsock_conn *conn, const void *buf, size_t len)
{
    struct io_args io = {.buf = (void *)buf, .len = len};
    int rc = tlsock__conn_begin(conn);

    if (rc != 0) {
        return rc;
    }
    if (buf == NULL && len > 0) {
        return tlsock__fail(&conn->err, TLSOCK_EINVAL, "write: buffer is NULL");
    }
    if (conn->sent_close) {
        return tlsock__fail(&conn->err, TLSOCK_EINVAL, "write after tlsock_shutdown");
    }
    if (conn->write_done > len) {
        return tlsock__fail(&conn->err, TLSOCK_EINVAL,
                            "write: repeat an interrupted write with the same arguments");
    }
    if (len == 0) {
        return 0; /* nothing to write, and no reason to start a handshake for it */
    }
    rc = tlsock__conn_handshake(conn);
    if (rc != 0) {
        return rc;
    }
    io.done = conn->write_done;
    conn->impl->xport(conn->tls)->corked = len > CORK_THRESHOLD;
    rc = tlsock__drive(conn, step_write, &io, tlsock__conn_op_deadline(conn), TLSOCK_ETIMEDOUT);
    if (rc == TLSOCK_EWANT_READ || rc == TLSOCK_EWANT_WRITE) {
        /* Only transports without a socket get here: the caller repeats the call later. */
        conn->write_done = io.done;
        return rc;
    }
    conn->write_done = 0;
    conn->impl->xport(conn->tls)->corked = false;
    /* A timed-out write may have sent part of the data: it is fatal, never retryable. */
    return tlsock__conn_settle(conn, rc, false);
}

static int step_shutdown(struct tlsock_conn *conn, void *arg)
{
    (void)arg;
    return conn->impl->shutdown(conn->tls, &conn->err);
}

/* Sends close_notify once, until @p deadline_ns. */
int tlsock__conn_send_close(struct tlsock_conn *conn, int64_t deadline_ns)
{
    int rc;

    if (conn->sent_close) {
        return 0;
    }
    rc = tlsock__drive(conn, step_shutdown, NULL, deadline_ns, TLSOCK_ETIMEDOUT);
    if (rc == 0) {
        conn->sent_close = true;
    }
    return tlsock__conn_settle(conn, rc, false);
}

int tlsock_shutdown(struct tlsock_conn *conn)
{
    int rc = tlsock__conn_begin(conn);

    if (rc != 0) {
        return rc;
    }
    rc = tlsock__conn_handshake(conn);
    if (rc != 0) {
        return rc;
    }
    return tlsock__conn_send_close(conn, tlsock__conn_op_deadline(conn));
}

void tlsock_close(struct tlsock_conn *conn)
{
    if (conn == NULL) {
        return;
    }
    if (conn->state == TLSOCK__OPEN && !conn->sent_close) {
        int limit = conn->timeout_ms > 0 ? conn->timeout_ms : CLOSE_NOTIFY_DEFAULT_MS;
        int64_t deadline = min_deadline(conn->deadline_ns, tlsock__deadline_after(limit));
        /* Best effort: the caller is done with the connection whatever happens here. */
        int ignored = tlsock__conn_send_close(conn, deadline);
        (void)ignored;
    }
    if (conn->owns_fd) {
        tlsock__graceful_close(conn->fd);
    } else if (conn->fd >= 0) {
        fcntl(conn->fd, F_SETFL, conn->saved_flags);
    }
    tlsock__conn_free(conn);
}

void tlsock__conn_free(struct tlsock_conn *conn)
{
    conn->impl->conn_free(conn->tls);
    tlsock__buf_free(&conn->mem_in);
    tlsock__buf_free(&conn->mem_out);
    tlsock__buf_free(&conn->stash);
    free(conn->info);
    tlsock_ctx_free(conn->ctx);
    free(conn);
}

int64_t tlsock_conn_op_deadline_ms(const struct tlsock_conn *conn)
{
    if (conn == NULL || conn->op_deadline_ns == INT64_MAX) {
        return -1;
    }
    return conn->op_deadline_ns / 1000000;
}

const char *tlsock_conn_errmsg(const struct tlsock_conn *conn)
{
    return conn != NULL ? conn->err.msg : "connection is NULL";
}

void *tlsock_conn_native(struct tlsock_conn *conn)
{
    return conn != NULL ? conn->impl->conn_native(conn->tls) : NULL;
}

int tlsock_conn_fd(const struct tlsock_conn *conn)
{
    return conn != NULL ? conn->fd : -1;
}

int tlsock_conn_set_timeout(struct tlsock_conn *conn, int timeout_ms)
{
    if (conn == NULL || timeout_ms < 0) {
        return tlsock__fail(conn != NULL ? &conn->err : NULL, TLSOCK_EINVAL,
                            "timeout must be >= 0 (0: none)");
    }
    conn->timeout_ms = timeout_ms;
    return 0;
}

void tlsock__conn_hold_buffers(struct tlsock_conn *conn, bool hold)
{
    if (conn->impl->hold_buffers != NULL) {
        conn->impl->hold_buffers(conn->tls, hold);
    }
}

size_t tlsock_conn_pending(const struct tlsock_conn *conn)
{
    if (conn == NULL || conn->state != TLSOCK__OPEN) {
        return 0;
    }
    return tlsock__buf_pending(&conn->stash) + conn->impl->pending(conn->tls);
}

int tlsock_conn_set_deadline(struct tlsock_conn *conn, int64_t deadline_ms)
{
    if (conn == NULL || deadline_ms < -1) {
        return tlsock__fail(conn != NULL ? &conn->err : NULL, TLSOCK_EINVAL,
                            "deadline must be a tlsock_now_ms() time or -1");
    }
    conn->deadline_ns = deadline_ms == -1 ? INT64_MAX : deadline_ms * 1000000;
    return 0;
}

int tlsock_conn_info(struct tlsock_conn *conn, const struct tlsock_info **out)
{
    int rc = tlsock__conn_begin(conn);

    if (rc != 0) {
        return rc;
    }
    if (out == NULL) {
        return tlsock__fail(&conn->err, TLSOCK_EINVAL, "info: out is required");
    }
    rc = tlsock__conn_handshake(conn);
    if (rc != 0) {
        return rc;
    }
    if (conn->info == NULL) {
        /* Made on demand: a connection nobody asks about does not carry it. */
        struct tlsock__conn_info *info = calloc(1, sizeof(*info));
        if (info == NULL) {
            return tlsock__fail(&conn->err, TLSOCK_ENOMEM, "out of memory for connection info");
        }
        struct tlsock__info_buf *b = &info->buf;
        conn->impl->get_info(conn->tls, b);
        info->pub = (struct tlsock_info){
            .impl = conn->impl->name,
            .version = b->version,
            .cipher = b->cipher,
            .alpn = b->alpn,
            .servername = b->servername,
            .peer_subject = b->peer_subject,
            .peer_sans = b->peer_sans,
            .peer_fingerprint = b->peer_fingerprint,
            .verify_result = b->verify_result,
            .verify_message = b->verify_message,
            .resumed = b->resumed,
        };
        conn->info = info;
    }
    *out = &conn->info->pub;
    return 0;
}
