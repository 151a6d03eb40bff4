/*
 * Sans-I/O memory mode: the implementation reads the ciphertext the application fed and writes
 * into a queue the application drains. Nothing here blocks: no input is a WANT code, and output
 * is always taken (it stays queued until drained).
 */
#include "internal.h"

static ssize_t mem_read(void *user, void *buf, size_t len)
{
    struct tlsock_conn *conn = user;

    if (tlsock__buf_pending(&conn->mem_in) > 0) {
        return (ssize_t)tlsock__buf_take(&conn->mem_in, buf, len);
    }
    return conn->mem_eof ? 0 : TLSOCK_EWANT_READ;
}

static ssize_t mem_write(void *user, const void *buf, size_t len)
{
    struct tlsock_conn *conn = user;

    if (tlsock__buf_append(&conn->mem_out, buf, len) != 0) {
        return tlsock__fail(&conn->err, TLSOCK_ENOMEM, "out of memory queueing output");
    }
    return (ssize_t)len;
}

const struct tlsock_io tlsock__mem_io = {.read = mem_read, .write = mem_write};

int tlsock_attach_mem(struct tlsock_ctx *ctx, const struct tlsock_opts *opts,
                      struct tlsock_conn **out)
{
    if (ctx == NULL || out == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "attach_mem: ctx and out are required");
    }
    const struct tlsock__conn_setup setup = {.transport = TLSOCK__TRANSPORT_MEMORY, .fd = -1};
    return tlsock__conn_new(ctx, &setup, opts, out);
}

/* Checks that @p conn is in memory mode (feeding is allowed on a dead connection: it is inert). */
static int memory_only(struct tlsock_conn *conn, const char *what)
{
    if (conn == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "%s: connection is NULL", what);
    }
    if (conn->transport != TLSOCK__TRANSPORT_MEMORY) {
        return tlsock__fail(&conn->err, TLSOCK_EINVAL, "%s: connection is not in memory mode",
                            what);
    }
    return 0;
}

int tlsock_feed(struct tlsock_conn *conn, const void *data, size_t len)
{
    int rc = memory_only(conn, "feed");

    if (rc != 0) {
        return rc;
    }
    if (data == NULL && len > 0) {
        return tlsock__fail(&conn->err, TLSOCK_EINVAL, "feed: data is NULL");
    }
    if (conn->mem_eof) {
        return tlsock__fail(&conn->err, TLSOCK_EINVAL, "feed after tlsock_feed_eof");
    }
    if (tlsock__buf_append(&conn->mem_in, data, len) != 0) {
        return tlsock__fail(&conn->err, TLSOCK_ENOMEM, "out of memory queueing input");
    }
    return 0;
}

int tlsock_feed_eof(struct tlsock_conn *conn)
{
    int rc = memory_only(conn, "feed_eof");

    if (rc == 0) {
        conn->mem_eof = true;
    }
    return rc;
}

int tlsock_drain(struct tlsock_conn *conn, void *buf, size_t cap, size_t *n)
{
    int rc = memory_only(conn, "drain");

    if (rc != 0) {
        return rc;
    }
    if (n == NULL || (buf == NULL && cap > 0)) {
        return tlsock__fail(&conn->err, TLSOCK_EINVAL, "drain: buf and n are required");
    }
    *n = tlsock__buf_take(&conn->mem_out, buf, cap);
    return 0;
}

size_t tlsock_conn_pending_output(const struct tlsock_conn *conn)
{
    if (conn == NULL || conn->transport != TLSOCK__TRANSPORT_MEMORY) {
        return 0;
    }
    return tlsock__buf_pending(&conn->mem_out);
}
