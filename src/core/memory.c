/*
 * Sans-I/O memory mode: the transport's input queue holds the ciphertext the application (or an
 * event loop) fed, and its output queue what TLS wrote, until it is drained. Nothing here
 * blocks: no input is a WANT code, and output is always taken.
 */
#include "objects.h"

int tlsock_attach_mem(struct tlsock_ctx *ctx, const struct tlsock_opts *opts,
                      struct tlsock_conn **out)
{
    if (ctx == NULL || out == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "attach_mem: ctx and out are required");
    }
    const struct tlsock__conn_setup setup = {.kind = TLSOCK__TRANSPORT_MEMORY, .fd = -1};
    return tlsock__conn_new(ctx, &setup, opts, out);
}

/* Checks that @p conn is in memory mode (feeding is allowed on a dead connection: it is inert). */
static int memory_only(struct tlsock_conn *conn, const char *what)
{
    if (conn == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "%s: connection is NULL", what);
    }
    if (conn->transport.kind != TLSOCK__TRANSPORT_MEMORY) {
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
    if (conn->transport.in_eof) {
        return tlsock__fail(&conn->err, TLSOCK_EINVAL, "feed after tlsock_feed_eof");
    }
    return tlsock__conn_feed(conn, data, len);
}

int tlsock_feed_eof(struct tlsock_conn *conn)
{
    int rc = memory_only(conn, "feed_eof");

    if (rc == 0) {
        tlsock__conn_feed_eof(conn);
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
    *n = tlsock__buf_take(&conn->transport.out, buf, cap);
    return 0;
}

size_t tlsock_conn_pending_output(const struct tlsock_conn *conn)
{
    if (conn == NULL || conn->transport.kind != TLSOCK__TRANSPORT_MEMORY) {
        return 0;
    }
    return tlsock__buf_pending(&conn->transport.out);
}

/* ---------------------------------------------------------------------------------------------
 * For drivers that feed and drain (the libuv driver)
 * ------------------------------------------------------------------------------------------- */

int tlsock__conn_feed(struct tlsock_conn *conn, const void *data, size_t len)
{
    if (tlsock__buf_append(&conn->transport.in, data, len) != 0) {
        return tlsock__fail(&conn->err, TLSOCK_ENOMEM, "out of memory queueing input");
    }
    return 0;
}

void tlsock__conn_feed_eof(struct tlsock_conn *conn)
{
    conn->transport.in_eof = true;
}

size_t tlsock__conn_input_pending(const struct tlsock_conn *conn)
{
    return tlsock__buf_pending(&conn->transport.in);
}

size_t tlsock__conn_input_peek(const struct tlsock_conn *conn, void *buf, size_t cap)
{
    return tlsock__buf_peek(&conn->transport.in, buf, cap);
}

void tlsock__conn_input_borrow(struct tlsock_conn *conn, const void *data, size_t len)
{
    tlsock__buf_borrow(&conn->transport.in, data, len);
}

int tlsock__conn_input_own(struct tlsock_conn *conn)
{
    if (tlsock__buf_own(&conn->transport.in) != 0) {
        return tlsock__fail(&conn->err, TLSOCK_ENOMEM, "out of memory keeping input");
    }
    return 0;
}

bool tlsock__conn_input_own_into(struct tlsock_conn *conn, void *storage, size_t cap)
{
    return tlsock__buf_own_into(&conn->transport.in, storage, cap);
}

struct tlsock__buf tlsock__conn_input_take(struct tlsock_conn *conn)
{
    struct tlsock__buf taken = conn->transport.in;

    if (taken.cap == 0) {
        taken = (struct tlsock__buf){0}; /* borrowed: the lender's */
    }
    conn->transport.in = (struct tlsock__buf){0};
    return taken;
}

bool tlsock__conn_output_lend(struct tlsock_conn *conn, void *storage, size_t cap)
{
    if (conn->transport.out.data != NULL) {
        return false;
    }
    conn->transport.out = (struct tlsock__buf){.data = storage, .cap = cap};
    return true;
}

void tlsock__conn_input_trim(struct tlsock_conn *conn)
{
    if (tlsock__buf_pending(&conn->transport.in) == 0) {
        tlsock__buf_free(&conn->transport.in);
    }
}

size_t tlsock__conn_output_pending(const struct tlsock_conn *conn)
{
    return tlsock__buf_pending(&conn->transport.out);
}

int tlsock__conn_output_reserve(struct tlsock_conn *conn, size_t cap)
{
    if (tlsock__buf_reserve(&conn->transport.out, cap) != 0) {
        return tlsock__fail(&conn->err, TLSOCK_ENOMEM, "out of memory for output");
    }
    return 0;
}

struct tlsock__buf tlsock__conn_output_take(struct tlsock_conn *conn)
{
    struct tlsock__buf taken = conn->transport.out;

    conn->transport.out = (struct tlsock__buf){0};
    return taken;
}
