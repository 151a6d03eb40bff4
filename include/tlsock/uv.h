/**
 * @file tlsock/uv.h
 * @brief Asynchronous TLS connections on a libuv loop: connect, serve, callbacks, timeouts,
 * backpressure, and hand-off to and from blocking use.
 *
 * This is the only tlsock header that includes <uv.h>. Everything runs on the caller's
 * uv_loop_t, in the loop's thread: every function here must be called from that thread (or
 * before the loop runs), and every callback is called from the loop, never from within the call
 * that caused it.
 *
 * libuv's rules apply:
 *   - A function that returns an error calls no callback for that request.
 *   - Every struct tlsock_uv_conn the library hands out, through an out parameter or through
 *     on_connect, must be closed exactly once with tlsock_uv_close() (also after an error) or
 *     given back with tlsock_uv_release(). on_close is then its last callback, and the place to
 *     free the memory behind its user pointer. The handle itself is freed by tlsock after
 *     on_close returns.
 *   - A write's buffer stays the caller's, untouched, until its completion callback; writes
 *     still pending when the connection closes complete with TLSOCK_ECANCELED.
 *
 * SIGPIPE: libuv writes with write(2), which raises SIGPIPE on a reset connection. The driver
 * never writes to a socket after its first transport error, and the first call of
 * tlsock_uv_connect(), tlsock_uv_serve() or tlsock_uv_adopt() in the process sets SIGPIPE's
 * action to SIG_IGN if it is SIG_DFL (once, thread-safely; a handler the application installed,
 * or SIG_IGN, is left alone).
 *
 * <uv.h> needs POSIX types (pthread_rwlock_t): with a strict -std=c11, define _POSIX_C_SOURCE
 * 200809L (or _GNU_SOURCE) before including this header, as the async examples do.
 *
 * Every status and event code is a TLSOCK_E* value from <tlsock.h>; tlsock_uv_conn_errmsg() tells
 * why. A call that fails at once (returns a code) says why in tlsock_errmsg(), the calling
 * thread's message. Contexts are the same as for blocking use, and either implementation may be
 * used.
 */
#ifndef TLSOCK_UV_H
#define TLSOCK_UV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include <tlsock.h>

#ifdef __cplusplus
extern "C" {
#endif

/** One TLS connection driven by a loop. Opaque. */
struct tlsock_uv_conn;

/** A TLS server on a loop. Opaque. */
struct tlsock_uv_server;

/**
 * The connection is ready (handshake done and verified): @p status is 0. For tlsock_uv_connect()
 * and tlsock_uv_adopt() a failure is reported here too (TLSOCK_ERESOLVE, TLSOCK_ESYS,
 * TLSOCK_ETIMEDOUT, TLSOCK_EHANDSHAKE_TIMEOUT, TLSOCK_EVERIFY, TLSOCK_EPROTO, TLSOCK_ECANCELED
 * if closed first...); the handle must still be closed. A server calls it only with 0, for each
 * client whose handshake succeeded; the handle is then the application's.
 */
typedef void (*tlsock_uv_connect_cb)(struct tlsock_uv_conn *conn, int status);

/** Application data as it arrives. @p data is valid only during the call. */
typedef void (*tlsock_uv_read_cb)(struct tlsock_uv_conn *conn, const void *data, size_t len);

/**
 * The end of the incoming stream, or an error, after the connection was ready:
 *   - TLSOCK_ECLOSED: the peer sent close_notify. Nothing more will be read; writing may go on.
 *   - TLSOCK_ETRUNCATED: the stream ended without close_notify (it may have been cut short).
 *   - TLSOCK_ETIMEDOUT: nothing arrived for read_idle_timeout_ms, or a write stayed pending for
 *     write_timeout_ms.
 *   - TLSOCK_EPROTO (an alert, named by tlsock_uv_conn_errmsg()), TLSOCK_ESYS (reset, also when the
 *     reset shows as an end of stream), ...
 * After any code but TLSOCK_ECLOSED the connection is dead: reading has stopped, writes fail
 * and pending ones complete with TLSOCK_ECANCELED when it is closed. Close it.
 */
typedef void (*tlsock_uv_event_cb)(struct tlsock_uv_conn *conn, int code);

/**
 * A write finished: @p status is 0 once all its bytes were handed to the kernel, or
 * TLSOCK_ECANCELED, TLSOCK_ETIMEDOUT, TLSOCK_ESYS... @p write_arg is tlsock_uv_write()'s.
 */
typedef void (*tlsock_uv_write_cb)(struct tlsock_uv_conn *conn, void *write_arg, int status);

/** The connection is closed: its last callback. The handle is freed after it returns. */
typedef void (*tlsock_uv_close_cb)(struct tlsock_uv_conn *conn);

/**
 * A server's client failed before it was handed to the application (handshake or verification
 * failure, handshake timeout, reset, accept(2) error; TLSOCK_ECANCELED: the server was aborted,
 * tlsock_uv_server_abort()). The server goes on; the client's connection is already closed. @p
 * message is valid only during the call.
 */
typedef void (*tlsock_uv_accept_error_cb)(struct tlsock_uv_server *server, int code,
                                          const char *message);

/** The server is closed; it is freed after this returns. */
typedef void (*tlsock_uv_server_close_cb)(struct tlsock_uv_server *server);

/**
 * tlsock_uv_release() finished. On success (@p status 0) @p blocking is the same TLS session,
 * for blocking use, owned by the caller (tlsock_close()); the async handle @p conn is freed
 * after this returns, with no on_close. On failure @p blocking is NULL and @p conn stays: close
 * it.
 */
typedef void (*tlsock_uv_release_cb)(struct tlsock_uv_conn *conn, struct tlsock_conn *blocking,
                                     int status);

/** Options of an async connection or server; copied by the call that takes them. */
struct tlsock_uv_opts {
    size_t size;              /**< sizeof(struct tlsock_uv_opts); TLSOCK_UV_OPTS_INIT sets it. */
    const char *servername;   /**< Clients: SNI to send, as in struct tlsock_opts. */
    const char *verify_name;  /**< Clients: name the certificate must match, as in
                                   struct tlsock_opts. */
    int connect_timeout_ms;   /**< Clients: name lookup and TCP connect, every address
                                   together. 0: none; negative: TLSOCK_EINVAL. */
    int handshake_timeout_ms; /**< The TLS handshake, and only it. 0: the context's handshake
                                   timeout (none unless set); negative: TLSOCK_EINVAL. */
    tlsock_uv_connect_cb on_connect;           /**< ready, or failed to get ready */
    tlsock_uv_read_cb on_read;                 /**< data; NULL: discard it */
    tlsock_uv_event_cb on_event;               /**< end of stream and errors */
    tlsock_uv_write_cb on_write;               /**< write completions; may be NULL */
    tlsock_uv_close_cb on_close;               /**< closed; may be NULL */
    tlsock_uv_accept_error_cb on_accept_error; /**< servers: a client failed; may be NULL */
    int read_idle_timeout_ms; /**< TLSOCK_ETIMEDOUT event when nothing arrives for this long
                                   while reading (not while reading is paused, by
                                   tlsock_uv_read_stop() or by the queue limit); 0: none;
                                   negative: TLSOCK_EINVAL. */
    int write_timeout_ms;     /**< TLSOCK_ETIMEDOUT event when written data has waited this long
                                   to reach the kernel (the peer does not read); also bounds the
                                   flush in tlsock_uv_close() (5 s if 0). 0: none; negative:
                                   TLSOCK_EINVAL. */
    const void *initial_data; /**< Sent right after the handshake, before on_connect; copied. */
    size_t initial_len;       /**< Length of @c initial_data. */
    bool reuseport;           /**< Servers: bind with SO_REUSEPORT, so that several servers (one
                                   loop per thread) share the port and the kernel spreads the
                                   clients among them, by a hash of their addresses (see
                                   tlsock_uv_serve_shared() to spread them by load). */
    void *user;               /**< The user pointer of the connection (and of the server). */
    size_t queue_limit;       /**< Bytes a connection's write queue may hold (see
                                   tlsock_uv_conn_write_queue_size()) before it stops reading
                                   from the peer; reading resumes once the queue drained below
                                   half of it. 0: 512 KiB. SIZE_MAX: never stop reading. */
};

/** Default options: no callbacks, no timeouts but the context's handshake timeout. */
#define TLSOCK_UV_OPTS_INIT                                                                        \
    {                                                                                              \
        .size = sizeof(struct tlsock_uv_opts)                                                      \
    }

/**
 * Connects to @p host:@p port and runs the TLS handshake, without blocking the loop (the name is
 * resolved on libuv's thread pool; each address is tried in turn). on_connect reports the
 * outcome. The client verifies the server as tlsock_connect() does.
 *
 * @param ctx  a client context; referenced (and frozen) by the connection.
 * @param out  receives the handle at once, so that the attempt can be cancelled with
 *             tlsock_uv_close() (on_connect then gets TLSOCK_ECANCELED).
 * @return 0; TLSOCK_EINVAL (bad arguments, no on_connect), TLSOCK_ENOMEM, TLSOCK_ECONFIG.
 */
TLSOCK_API int tlsock_uv_connect(uv_loop_t *loop, struct tlsock_ctx *ctx, const char *host,
                                 uint16_t port, const struct tlsock_uv_opts *opts,
                                 struct tlsock_uv_conn **out);

/**
 * Serves TLS on @p host:@p port (as tlsock_listen(): NULL for every address, port 0 for a free
 * one, see tlsock_uv_server_port()). Each client's handshake runs on the loop, bounded by the
 * handshake timeout; clients that fail go to on_accept_error and the others to on_connect, with
 * the options' callbacks, timeouts and user pointer (tlsock_uv_conn_set_user() may change it).
 *
 * @param ctx      a server context with a certificate; referenced and frozen.
 * @param backlog  listen(2) backlog; 0 for a default.
 * @return 0; TLSOCK_EINVAL (no on_connect), TLSOCK_ECONFIG (no certificate), TLSOCK_ERESOLVE,
 *         TLSOCK_ESYS (address in use...), TLSOCK_ENOMEM.
 */
TLSOCK_API int tlsock_uv_serve(uv_loop_t *loop, struct tlsock_ctx *ctx, const char *host,
                               uint16_t port, int backlog, const struct tlsock_uv_opts *opts,
                               struct tlsock_uv_server **out);

/**
 * Serves on @p first's listener from @p loop too: one port and one accept queue for several
 * loops, one per thread. @p first's loop accepts every client and gives it to the server of the
 * group (@p first and every server made with it) that has the fewest connections (in their
 * handshake, or handed to the application and not closed yet), @p first on a tie. That
 * server's loop runs the client's handshake and everything after, with that server's context,
 * options and callbacks (on_connect, on_accept_error, the user pointer...). Clients thus spread
 * by load, where opts.reuseport spreads them by a hash of their addresses: two long transfers
 * never share a loop while another loop has none.
 *
 * When the chosen server cannot take the client (64 of them wait for its loop already, or it
 * was closed meanwhile), @p first serves it, with its own context and callbacks. A client whose
 * socket cannot be duplicated (no descriptor left) goes to @p first's on_accept_error.
 *
 * Each server of the group is closed on its own, with tlsock_uv_server_close() (or
 * tlsock_uv_server_abort()) from its loop.
 * A closed server is given no more clients; clients given to it that its loop had not started
 * yet are reset, as a full listen backlog would turn them away. Once @p first is closed, nobody
 * accepts: close the others too.
 *
 * Threads: call it from the thread that runs @p loop (or before that loop runs), while @p first
 * is open and cannot be closed meanwhile (by its own loop's thread); @p first's loop may be
 * running in another thread. opts.reuseport is ignored.
 * Cost: a client given to another loop costs the listening loop a dup(2) and a close(2) of its
 * socket, and a wake-up of that loop.
 *
 * @param first  a server made by tlsock_uv_serve(), on another loop (or the same one).
 * @param ctx    a server context with a certificate, as for tlsock_uv_serve() (it may be
 *               @p first's); referenced and frozen.
 * @return 0; TLSOCK_EINVAL (no on_connect, @p first NULL, not made by tlsock_uv_serve(), or
 *         closed already), TLSOCK_ECONFIG (no certificate), TLSOCK_ENOMEM.
 */
TLSOCK_API int tlsock_uv_serve_shared(uv_loop_t *loop, struct tlsock_ctx *ctx,
                                      struct tlsock_uv_server *first,
                                      const struct tlsock_uv_opts *opts,
                                      struct tlsock_uv_server **out);

/** The port a server is bound to. */
TLSOCK_API uint16_t tlsock_uv_server_port(const struct tlsock_uv_server *server);

/** The server's user pointer (opts.user). */
TLSOCK_API void *tlsock_uv_server_user(const struct tlsock_uv_server *server);

/**
 * Closes a server gracefully: it stops accepting at once; clients still in their handshake
 * finish it (or time out) and go to on_connect or on_accept_error as usual; connections already
 * handed to the application are not touched. @p cb (may be NULL) is called when nothing of the
 * server is left. Calling it twice is a no-op.
 */
TLSOCK_API void tlsock_uv_server_close(struct tlsock_uv_server *server,
                                       tlsock_uv_server_close_cb cb);

/**
 * Closes a server without waiting for handshakes: it stops accepting at once, as
 * tlsock_uv_server_close() does, and every client of this server still in its handshake
 * (accepted and not handed to the application yet: silent, half way through, waiting for the
 * session store's answer, or given to this server by the listening loop of its
 * tlsock_uv_serve_shared() group and started) is reset. Each such client goes to
 * on_accept_error with TLSOCK_ECANCELED, from the loop, never within this call (one that failed
 * already and was reported is only reset); none goes to on_connect any more. Clients given to
 * the server that its loop had not started yet are reset too, as tlsock_uv_server_close() does.
 * Connections already handed to the application are not touched: close them with
 * tlsock_uv_close() or tlsock_uv_abort() if they are to end too.
 *
 * The peer sees a TCP reset (SO_LINGER 0), no alert and no close_notify, as with
 * tlsock_uv_abort(): a client in its handshake learns at once that it was turned away.
 *
 * @p cb (may be NULL) is called, from the loop, when nothing of the server is left, which now
 * means once the reset clients' sockets are closed: within a few loop turns. After
 * tlsock_uv_server_close() (to stop waiting for the handshakes it let finish) the server still
 * closes, the reset clients go as above, and @p cb is ignored: the close callback given there
 * is the one called. Calling it a second time is a no-op; NULL is accepted. Each server of a
 * group is aborted on its own, from its loop; only its own clients are reset.
 *
 * Threads and lifetime: as tlsock_uv_server_close(): from the server's loop thread, on a server
 * whose close callback has not run yet. It may be called from any callback, on_accept_error
 * included.
 */
TLSOCK_API void tlsock_uv_server_abort(struct tlsock_uv_server *server,
                                       tlsock_uv_server_close_cb cb);

/**
 * Swaps in a new server context, atomically, as tlsock_listener_set_ctx() does: clients accepted
 * after it returns handshake with @p ctx; connections accepted before (in their handshake or
 * handed to the application) keep theirs. The server references @p ctx and drops its reference
 * on the old context, which is freed when its last connection is gone. @p ctx is checked and
 * frozen first; on an error the server keeps its context.
 *
 * Thread safety: unlike the other functions here, it may be called from any thread (a reload
 * thread, or one loop's signal handler updating the servers of several loops), as long as the
 * server is not freed meanwhile: call it before tlsock_uv_server_close(), or from the server's
 * loop before the close callback.
 * @return 0; TLSOCK_EINVAL (NULL argument, a client context); the freeze's error (ECONFIG...).
 *         The thread's message says why.
 */
TLSOCK_API int tlsock_uv_server_set_ctx(struct tlsock_uv_server *server, struct tlsock_ctx *ctx);

/**
 * Queues @p len bytes; the loop encrypts them (with the other writes made before it polls
 * again, into one batch) and sends them. on_write(conn, @p write_arg, status) is called once
 * they reached the kernel (or failed). Writes are sent in order; before the handshake is done
 * they wait for it. The buffer must stay valid and unchanged until on_write.
 * @return 0; TLSOCK_EINVAL (closing, shut down, or after the connection died: see the event),
 *         TLSOCK_ENOMEM. On error no callback is called.
 */
TLSOCK_API int tlsock_uv_write(struct tlsock_uv_conn *conn, const void *buf, size_t len,
                               void *write_arg);

/**
 * The memory the connection's write queue holds, in bytes: the plaintext of tlsock_uv_write()
 * requests not encrypted yet (the caller's buffers, kept alive by the queue), the ciphertext
 * batches libuv has not written to the kernel yet (their storage and requests), and a small
 * record per queued write. 0 once everything reached the kernel. Over opts.queue_limit the
 * connection stops reading from the peer until it drained below half of it (backpressure: a
 * peer that sends requests but never reads the answers stops being read); a writer that
 * produces without being asked should also wait while this is large, and go on from on_write.
 */
TLSOCK_API size_t tlsock_uv_conn_write_queue_size(const struct tlsock_uv_conn *conn);

/**
 * Stops reading from the peer (backpressure: the kernel's buffers fill and TCP slows the peer
 * down). No on_read is called until tlsock_uv_read_start(); the idle timeout is suspended.
 * Any state; 0, or TLSOCK_EINVAL for NULL.
 */
TLSOCK_API int tlsock_uv_read_stop(struct tlsock_uv_conn *conn);

/**
 * Resumes reading; data TLS already holds is delivered first, from the loop. Reading starts by
 * itself. 0; TLSOCK_EINVAL for NULL, or once the connection is being released, dead or closing.
 */
TLSOCK_API int tlsock_uv_read_start(struct tlsock_uv_conn *conn);

/**
 * Closes the connection: stops reading, lets queued writes reach the peer (given up after
 * write_timeout_ms without progress, 5 s if none), sends close_notify if the session is healthy,
 * closes the socket, completes what is still pending with TLSOCK_ECANCELED, then calls
 * on_close.
 * Calling it again, or from within a callback, is safe. Accepts NULL.
 */
TLSOCK_API void tlsock_uv_close(struct tlsock_uv_conn *conn);

/**
 * Closes the connection at once, without a goodbye: reading stops, nothing queued is sent (the
 * pending writes complete with TLSOCK_ECANCELED), no close_notify goes out, and the TCP
 * connection is reset (SO_LINGER 0) instead of ended with a FIN, so that the peer learns at once
 * that the stream was cut short, and never takes it for a complete one. For a proxy whose other
 * side failed, or a peer that no longer reads. A socket given to tlsock_attach_fd() and adopted is
 * the caller's: it is let go of, not reset. on_close follows, as after tlsock_uv_close(); a
 * graceful close in progress is cut short the same way. Calling it again, or from within a
 * callback, is safe. Accepts NULL.
 */
TLSOCK_API void tlsock_uv_abort(struct tlsock_uv_conn *conn);

/**
 * Half-closes the connection: after the writes already queued, sends close_notify and then a
 * TCP FIN (none on a socket given to tlsock_attach_fd() and adopted), and goes on reading until
 * the peer ends too (on_event TLSOCK_ECLOSED, or another code, as usual). Later writes, and
 * tlsock_uv_release(), fail with TLSOCK_EINVAL; the queued writes complete as usual. Called
 * before the handshake is done, it takes effect once it is. tlsock_uv_close() is still
 * required at the end.
 * @return 0; TLSOCK_EINVAL (NULL, already shut down, closing, being released, or dead). No
 *         callback is called for it: the peer's answer comes through on_read and on_event.
 */
TLSOCK_API int tlsock_uv_shutdown(struct tlsock_uv_conn *conn);

/**
 * The peer's address, the one the TCP connection was made with.
 * @param addr  receives the address (AF_INET or AF_INET6).
 * @return 0; TLSOCK_EINVAL (NULL arguments, before the TCP connection exists, or after the
 *         socket was closed: by tlsock_uv_close(), a release, or a transport error).
 */
TLSOCK_API int tlsock_uv_conn_peername(const struct tlsock_uv_conn *conn,
                                       struct sockaddr_storage *addr);

/**
 * Moves a blocking connection onto @p loop (blocking to async). @p conn must run over a socket
 * (tlsock_connect(), tlsock_accept(), tlsock_attach_fd()) and no call may be in progress on it.
 * Nothing is lost: data TLS already decrypted is delivered by the first on_read, and the rest
 * is read from the socket. If the handshake is not done it runs on the loop. on_connect(conn, 0)
 * (or an error) follows from the loop as for tlsock_uv_connect().
 *
 * On success the async handle owns @p conn: do not use or close it any more (tlsock_uv_close()
 * closes both; tlsock_uv_release() gives it back). The socket stays the one @p conn had, and is
 * closed only if @p conn owned it. On error @p conn is unchanged and still the caller's.
 */
TLSOCK_API int tlsock_uv_adopt(uv_loop_t *loop, struct tlsock_conn *conn,
                               const struct tlsock_uv_opts *opts, struct tlsock_uv_conn **out);

/**
 * Gives the connection back for blocking use (async to blocking): stops reading, waits until
 * the queued writes have reached the kernel, then calls @p cb with the blocking connection.
 * Nothing is lost: bytes the loop read but TLS has not used are read first by the blocking
 * connection, and decrypted data not yet delivered stays in it (tlsock_conn_pending()).
 * @return 0; TLSOCK_EINVAL (not ready, dead, closing, shut down, or @p cb NULL): no callback
 *         then.
 */
TLSOCK_API int tlsock_uv_release(struct tlsock_uv_conn *conn, tlsock_uv_release_cb cb);

/** The connection's user pointer. */
TLSOCK_API void *tlsock_uv_conn_user(const struct tlsock_uv_conn *conn);

/** Sets the connection's user pointer (a server's connections start with the server's). */
TLSOCK_API void tlsock_uv_conn_set_user(struct tlsock_uv_conn *conn, void *user);

/** The loop the connection runs on. */
TLSOCK_API uv_loop_t *tlsock_uv_conn_loop(const struct tlsock_uv_conn *conn);

/**
 * The TLS session underneath, for tlsock_conn_info() and tlsock_conn_native() once on_connect
 * reported 0. Never read, write or close it: the loop drives it. NULL before the TCP connection
 * exists.
 */
TLSOCK_API struct tlsock_conn *tlsock_uv_conn_tls(struct tlsock_uv_conn *conn);

/** Detail of the connection's last error, "" if none. Valid until on_close returns. */
TLSOCK_API const char *tlsock_uv_conn_errmsg(const struct tlsock_uv_conn *conn);

#ifdef __cplusplus
}
#endif

#endif /* TLSOCK_UV_H */
