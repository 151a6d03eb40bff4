/*
 * Connections: creation, the non-blocking steps every driver runs (handshake, read, write,
 * close_notify), sticky fatal errors, and the limits the drivers apply. Nothing here waits.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "objects.h"

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

/* ---------------------------------------------------------------------------------------------
 * Creating and freeing
 * ------------------------------------------------------------------------------------------- */

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

/* Memory per idle connection (docs/async.md, "Memory"): a 256-byte glibc chunk on x86-64. */
_Static_assert(sizeof(struct tlsock_conn) <= 31 * sizeof(void *),
               "the core's connection grew: memory per idle connection");

int tlsock__conn_new(struct tlsock_ctx *ctx, const struct tlsock__conn_setup *setup,
                     const struct tlsock_opts *opts, struct tlsock_conn **out)
{
    struct tlsock_opts o = opts_copy(opts);
    struct tlsock_conn *conn = NULL;
    struct tlsock__err err = {0};
    int rc;

    if (o.connect_timeout_ms < 0 || o.handshake_timeout_ms < 0 || o.timeout_ms < 0) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "a timeout in the options is negative (0: none)");
    }
    rc = tlsock__ctx_freeze(ctx, &err);
    if (rc != 0) {
        goto free_err;
    }
    conn = calloc(1, sizeof(*conn));
    if (conn == NULL) {
        rc = tlsock__fail(NULL, TLSOCK_ENOMEM, "out of memory allocating a connection");
        goto free_err;
    }
    conn->ctx = tlsock_ctx_ref(ctx);
    conn->fd = setup->kind == TLSOCK__TRANSPORT_SOCKET ? setup->fd : -1;
    conn->addr_fd = -1;
    conn->owns_fd = setup->owns_fd;
    conn->state = TLSOCK__HANDSHAKING;
    conn->timeout_ms = o.timeout_ms;
    conn->handshake_timeout_ms =
        o.handshake_timeout_ms > 0 ? o.handshake_timeout_ms : ctx->handshake_timeout;
    conn->deadline_ns = INT64_MAX;
    conn->op_deadline_ns = INT64_MAX;
    /* The names are only needed here: the session keeps what it uses. */
    struct client_names names = {"", ""};
    if (ctx->role == TLSOCK_CLIENT) {
        rc = client_names(ctx, setup->host, &o, &names);
        if (rc != 0) {
            goto free_conn;
        }
    }
    rc = tlsock__transport_init(&conn->transport, setup->kind, conn->fd, setup->io, o.preread,
                                o.preread != NULL ? o.preread_len : 0, &err);
    if (rc != 0) {
        goto free_conn;
    }
    if (conn->fd >= 0 && setup->owns_fd) {
        /* tlsock opened it non-blocking (SOCK_NONBLOCK): no fcntl to learn what it knows. */
        conn->saved_flags = O_RDWR | O_NONBLOCK;
        /*
         * The first read waits for the blocking driver's poll instead of failing first, as a read
         * after a send does (transport.h). A client it just accepted sends its ClientHello after
         * the TCP handshake that woke the accept, and it is rarely there yet; a server it just
         * connected to says nothing before our ClientHello, which is still collected when a
         * GnuTLS client reads for the first time (its flight leaves in one send).
         */
        conn->transport.sent = true;
    } else if (conn->fd >= 0) {
        rc = tlsock__set_nonblocking(conn->fd, &conn->saved_flags, &err);
        if (rc != 0) {
            goto free_transport;
        }
    }
    unsigned char *offer = NULL;
    struct tlsock__conn_params params = {
        .role = ctx->role,
        .transport = &conn->transport,
        .servername = names.sni[0] != '\0' ? names.sni : NULL,
        .verify_name = names.verify[0] != '\0' ? names.verify : NULL,
        .verify_mode = ctx->verify_mode,
        .trust = &ctx->trust,
        .certsel = &ctx->certsel,
        .owner = conn,
        .ocsp_response = ctx->ocsp_response,
        .ocsp_response_len = ctx->ocsp_response_len,
        .keylog = tlsock__keylog_on(&ctx->keylog) ? &ctx->keylog : NULL,
    };
    rc = tlsock__sessions_conn_new(conn, setup->port, setup->host != NULL ? setup->host : "",
                                   names.sni, names.verify, &params.session, &params.offer, &offer);
    if (rc == 0) {
        rc = ctx->impl->conn_new(ctx->native, &params, &conn->tls, &err);
    }
    tlsock__sessions_offer_free(conn, &params.offer, offer);
    if (rc != 0) {
        goto restore_flags;
    }
    if (ctx->on_conn != NULL) {
        rc = ctx->on_conn(ctx->impl->conn_native(conn->tls), ctx->configure_user);
        if (rc != 0) {
            rc = tlsock__fail(&err, rc < 0 ? rc : TLSOCK_ECONFIG,
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
free_transport:
    tlsock__transport_free(&conn->transport);
free_conn:
    tlsock__sessions_conn_free(conn);
    tlsock_ctx_free(conn->ctx);
    free(conn);
free_err:
    if (tlsock__err_set(&err)) {
        tlsock__publish(&err);
    }
    tlsock__err_free(&err);
    return rc;
}

/* The detach's stash, made by its first byte and gone with its last. */
static void stash_free(struct tlsock_conn *conn)
{
    if (conn->stash != NULL) {
        tlsock__buf_free(conn->stash);
        free(conn->stash);
        conn->stash = NULL;
    }
}

void tlsock__conn_free(struct tlsock_conn *conn)
{
    conn->ctx->impl->conn_free(conn->tls);
    tlsock__transport_free(&conn->transport);
    stash_free(conn);
    tlsock__conn_info_free(conn->info);
    tlsock__sessions_conn_free(conn);
    tlsock__store_conn_free(conn);
    tlsock__err_free(&conn->err);
    tlsock_ctx_free(conn->ctx);
    free(conn);
}

/* ---------------------------------------------------------------------------------------------
 * Public calls and sticky errors
 * ------------------------------------------------------------------------------------------- */

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

int tlsock__conn_settle(struct tlsock_conn *conn, int rc, bool timeout_retryable)
{
    if (rc == 0 || rc == TLSOCK_EWANT_READ || rc == TLSOCK_EWANT_WRITE) {
        return rc;
    }
    if (rc == TLSOCK_ECLOSED) {
        conn->peer_closed = true;
    } else if (!(rc == TLSOCK_ETIMEDOUT && timeout_retryable)) {
        if (conn->state != TLSOCK__FAILED) {
            tlsock__sessions_conn_failed(conn);
        }
        conn->state = TLSOCK__FAILED;
        conn->sticky = rc;
    }
    tlsock__publish(&conn->err);
    return rc;
}

struct tlsock__err *tlsock__conn_err(struct tlsock_conn *conn)
{
    return &conn->err;
}

const char *tlsock_conn_errmsg(const struct tlsock_conn *conn)
{
    return conn != NULL ? tlsock__err_msg(&conn->err) : "connection is NULL";
}

/* ---------------------------------------------------------------------------------------------
 * Steps
 * ------------------------------------------------------------------------------------------- */

int tlsock__conn_handshake_step(struct tlsock_conn *conn)
{
    if (conn->state == TLSOCK__OPEN) {
        return 0;
    }
    /*
     * A client's flight leaves in one send, as one write of a blocking program does: GnuTLS
     * pushes a TLS 1.3 client's compatibility ChangeCipherSpec on its own, and a client socket
     * that leaves Nagle on then holds the Finished that follows until the server acknowledges
     * the first (its delayed ACK: 40 ms).
     * Not a server's: GnuTLS pushes its ServerHello before it signs, so the client derives its
     * keys meanwhile (collected, the flight waited for the signature: 10% fewer handshakes/s).
     * GnuTLS ends the flight itself once its Finished is in it (tlsock__transport_end_flight).
     * What a step collected and could not send goes first in the next one. Sockets only: a
     * read callback may block until the peer answers a flight still collected. A read while
     * records wait collected is a real one: the peer's earlier flight may be there.
     */
    int rc = tlsock__transport_flush(&conn->transport, &conn->err);
    if (rc == 0) {
        rc = tlsock__store_gate(conn);
    }
    if (rc == 0) {
        if (conn->ctx->impl->flight_in_pieces && conn->ctx->role == TLSOCK_CLIENT &&
            conn->transport.kind == TLSOCK__TRANSPORT_SOCKET) {
            tlsock__transport_cork_flight(&conn->transport);
        }
        rc = conn->ctx->impl->handshake(conn->tls, &conn->err);
        tlsock__transport_cork(&conn->transport, false);
        /* Also after a failure: the alert that says why is among the collected records. */
        int flushed = tlsock__transport_flush(&conn->transport, &conn->err);
        if (flushed != 0 && (rc == 0 || rc == TLSOCK_EWANT_READ || rc == TLSOCK_EWANT_WRITE)) {
            rc = flushed;
        }
    }
    if (rc == 0) {
        conn->state = TLSOCK__OPEN;
    } else if (rc == TLSOCK_ETIMEDOUT) {
        /* A transport callback timed out: in the handshake that is a handshake timeout. */
        rc = TLSOCK_EHANDSHAKE_TIMEOUT;
    }
    return rc;
}

int tlsock__conn_read_step(struct tlsock_conn *conn, void *buf, size_t len, size_t *nread)
{
    /* Data that arrived while a detach waited for close_notify comes first. */
    if (tlsock__conn_stashed(conn) > 0) {
        *nread = tlsock__buf_take(conn->stash, buf, len);
        if (tlsock__buf_pending(conn->stash) == 0) {
            stash_free(conn);
        }
        return 0;
    }
    if (conn->peer_closed) {
        return tlsock__fail(&conn->err, TLSOCK_ECLOSED, "the peer already sent close_notify");
    }
    return conn->ctx->impl->read(conn->tls, buf, len, nread, &conn->err);
}

int tlsock__conn_write_step(struct tlsock_conn *conn, const void *buf, size_t len, size_t *nwritten)
{
    return conn->ctx->impl->write(conn->tls, buf, len, nwritten, &conn->err);
}

int tlsock__conn_flush_step(struct tlsock_conn *conn)
{
    return tlsock__transport_flush(&conn->transport, &conn->err);
}

void tlsock__conn_cork(struct tlsock_conn *conn, bool corked)
{
    tlsock__transport_cork(&conn->transport, corked);
}

int tlsock__conn_close_notify_step(struct tlsock_conn *conn)
{
    if (conn->sent_close) {
        return 0;
    }
    int rc = conn->ctx->impl->shutdown(conn->tls, &conn->err);
    if (rc == 0) {
        conn->sent_close = true;
    }
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * State and the socket
 * ------------------------------------------------------------------------------------------- */

bool tlsock__conn_is_open(const struct tlsock_conn *conn)
{
    return conn->state == TLSOCK__OPEN;
}

int tlsock__conn_sticky(const struct tlsock_conn *conn)
{
    return conn->state == TLSOCK__FAILED ? conn->sticky : 0;
}

bool tlsock__conn_sent_close(const struct tlsock_conn *conn)
{
    return conn->sent_close;
}

bool tlsock__conn_peer_closed(const struct tlsock_conn *conn)
{
    return conn->peer_closed;
}

int tlsock__conn_socket(const struct tlsock_conn *conn)
{
    return conn->transport.kind == TLSOCK__TRANSPORT_SOCKET ? conn->transport.fd : -1;
}

void tlsock__conn_set_addr_fd(struct tlsock_conn *conn, int fd)
{
    conn->addr_fd = fd;
}

int tlsock__conn_fd(const struct tlsock_conn *conn)
{
    return conn->fd;
}

bool tlsock__conn_owns_fd(const struct tlsock_conn *conn)
{
    return conn->owns_fd;
}

int tlsock__conn_saved_flags(const struct tlsock_conn *conn)
{
    return conn->saved_flags;
}

int tlsock_conn_fd(const struct tlsock_conn *conn)
{
    return conn != NULL ? conn->fd : -1;
}

void *tlsock_conn_native(struct tlsock_conn *conn)
{
    return conn != NULL ? conn->ctx->impl->conn_native(conn->tls) : NULL;
}

size_t tlsock_conn_pending(const struct tlsock_conn *conn)
{
    if (conn == NULL || conn->state != TLSOCK__OPEN) {
        return 0;
    }
    return tlsock__conn_stashed(conn) + conn->ctx->impl->pending(conn->tls);
}

bool tlsock_conn_resumed(const struct tlsock_conn *conn)
{
    return conn != NULL && conn->state == TLSOCK__OPEN && conn->ctx->impl->resumed(conn->tls);
}

void tlsock__conn_hold_buffers(struct tlsock_conn *conn, bool hold)
{
    if (conn->ctx->impl->hold_buffers != NULL) {
        conn->ctx->impl->hold_buffers(conn->tls, hold);
    }
}

void tlsock__conn_rest(struct tlsock_conn *conn)
{
    tlsock__conn_input_trim(conn);
    tlsock__conn_hold_buffers(conn, false);
}

/* ---------------------------------------------------------------------------------------------
 * Limits
 * ------------------------------------------------------------------------------------------- */

static int64_t min_deadline(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

int tlsock__conn_timeout(const struct tlsock_conn *conn)
{
    return conn->timeout_ms;
}

int tlsock__conn_handshake_timeout(const struct tlsock_conn *conn)
{
    return conn->handshake_timeout_ms;
}

void tlsock__conn_set_handshake_timeout(struct tlsock_conn *conn, int timeout_ms)
{
    conn->handshake_timeout_ms = timeout_ms;
}

/*
 * Memory mode never waits for its transport: the timeouts bound nothing there but a server's
 * session-store get, whose own bound already takes half the handshake timeout and the deadline
 * (store.c). So no clock is read for them per call: only the absolute deadline applies.
 */
static int64_t deadline_after(const struct tlsock_conn *conn, int timeout_ms)
{
    return conn->transport.kind == TLSOCK__TRANSPORT_MEMORY
               ? conn->deadline_ns
               : min_deadline(conn->deadline_ns, tlsock__deadline_after(timeout_ms));
}

int64_t tlsock__conn_op_deadline(const struct tlsock_conn *conn)
{
    return deadline_after(conn, conn->timeout_ms);
}

int64_t tlsock__conn_handshake_deadline(const struct tlsock_conn *conn)
{
    /* Only the handshake timeout bounds the handshake: the operation timeout is per read/write. */
    return deadline_after(conn, conn->handshake_timeout_ms);
}

void tlsock__conn_set_op_deadline(struct tlsock_conn *conn, int64_t deadline_ns)
{
    conn->op_deadline_ns = deadline_ns;
}

void tlsock__conn_set_caller_polls(struct tlsock_conn *conn, bool on)
{
    conn->transport.caller_polls = on;
}

void tlsock__conn_polled(struct tlsock_conn *conn)
{
    tlsock__transport_polled(&conn->transport);
}

bool tlsock__conn_sent_since_poll(const struct tlsock_conn *conn)
{
    return conn->transport.sent;
}

bool tlsock__conn_quick_ack_due(const struct tlsock_conn *conn)
{
    return conn->state == TLSOCK__HANDSHAKING && conn->ctx->role == TLSOCK_SERVER &&
           conn->ctx->impl->server_silent_after_finished(conn->tls);
}

size_t tlsock__conn_write_done(const struct tlsock_conn *conn)
{
    return conn->write_done;
}

void tlsock__conn_set_write_done(struct tlsock_conn *conn, size_t done)
{
    conn->write_done = done;
}

int64_t tlsock_conn_op_deadline_ms(const struct tlsock_conn *conn)
{
    if (conn == NULL || conn->op_deadline_ns == INT64_MAX) {
        return -1;
    }
    return conn->op_deadline_ns / 1000000;
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

int tlsock_conn_set_deadline(struct tlsock_conn *conn, int64_t deadline_ms)
{
    if (conn == NULL || deadline_ms < -1) {
        return tlsock__fail(conn != NULL ? &conn->err : NULL, TLSOCK_EINVAL,
                            "deadline must be a tlsock_now_ms() time or -1");
    }
    conn->deadline_ns = deadline_ms == -1 ? INT64_MAX : deadline_ms * 1000000;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Detach
 * ------------------------------------------------------------------------------------------- */

int tlsock__conn_stash(struct tlsock_conn *conn, const void *data, size_t len)
{
    if (conn->stash == NULL) {
        conn->stash = calloc(1, sizeof(*conn->stash));
    }
    if (conn->stash == NULL || tlsock__buf_append(conn->stash, data, len) != 0) {
        return tlsock__fail(&conn->err, TLSOCK_ENOMEM, "out of memory keeping received data");
    }
    return 0;
}

size_t tlsock__conn_stashed(const struct tlsock_conn *conn)
{
    return conn->stash != NULL ? tlsock__buf_pending(conn->stash) : 0;
}
