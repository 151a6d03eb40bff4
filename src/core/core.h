/*
 * The core's interface to the drivers (src/drive/): connections as a non-blocking state
 * machine. Every step returns 0, TLSOCK_EWANT_READ / TLSOCK_EWANT_WRITE (the transport cannot
 * go on now: wait until it can, then call the step again), or a fatal TLSOCK_E* code with the
 * reason in the connection's message. Nothing here waits, polls or reads a clock to decide;
 * the blocking driver waits on the socket until a deadline, the libuv driver waits for the loop.
 *
 * Drivers see connections and contexts only through these functions; the structures are the
 * core's own (objects.h).
 */
#ifndef TLSOCK_CORE_H
#define TLSOCK_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"
#include "impl/impl.h"
#include "transport/transport.h"

/* ---- contexts (ctx.c) ------------------------------------------------------------------------ */

/* Freezes @p ctx (loading default trust anchors once) and returns 0 or an error in @p err. */
int tlsock__ctx_freeze(struct tlsock_ctx *ctx, struct tlsock__err *err) TLSOCK__MUST_CHECK;

/* TLSOCK_CLIENT or TLSOCK_SERVER. */
int tlsock__ctx_role(const struct tlsock_ctx *ctx);
/* Starts a public setter of a context (ctx.c): EINVAL when NULL or frozen, else clears its message.
 */
int tlsock__ctx_setter_begin(struct tlsock_ctx *ctx) TLSOCK__MUST_CHECK;
/* At freeze, servers: the ticket keys made (a random secret without a file) and handed over. */
int tlsock__ctx_tickets_freeze(struct tlsock_ctx *ctx, struct tlsock__err *err) TLSOCK__MUST_CHECK;

/* References held on @p ctx now: for tests, which see who still holds a swapped-out context. */
int tlsock__ctx_refs(const struct tlsock_ctx *ctx);

/* ---- creating and freeing connections (conn.c) ----------------------------------------------- */

/* What a new connection runs over. */
struct tlsock__conn_setup {
    enum tlsock__transport_kind kind;
    int fd;                     /* SOCKET: a connected socket; else -1 */
    bool owns_fd;               /* SOCKET: tlsock opened it non-blocking, and closes it */
    const char *host;           /* client: name connected to, for SNI and verification */
    uint16_t port;              /* client: the port connected to (0: unknown), for resumption */
    const struct tlsock_io *io; /* CALLBACKS: the application's callbacks */
};

/*
 * Creates a connection from @p ctx (freezing it) with @p opts (may be NULL); a socket is made
 * non-blocking, its flags kept for the end. On failure nothing is created, the caller still owns
 * the socket and the thread's message says why.
 */
int tlsock__conn_new(struct tlsock_ctx *ctx, const struct tlsock__conn_setup *setup,
                     const struct tlsock_opts *opts, struct tlsock_conn **out) TLSOCK__MUST_CHECK;
/* Frees the connection and everything it holds but the socket (see tlsock__conn_fd()). */
void tlsock__conn_free(struct tlsock_conn *conn);

/* ---- public calls and errors (conn.c) -------------------------------------------------------- */

/* Starts a public call: clears the message, or returns the sticky error of a dead connection. */
int tlsock__conn_begin(struct tlsock_conn *conn) TLSOCK__MUST_CHECK;
/*
 * Records a step's outcome and returns it: fatal errors become sticky; ETIMEDOUT when
 * @p timeout_retryable (a read) and the peer's close_notify are the failures a connection
 * survives.
 */
int tlsock__conn_settle(struct tlsock_conn *conn, int rc, bool timeout_retryable);
/* The connection's message, where steps and drivers record why something failed. */
struct tlsock__err *tlsock__conn_err(struct tlsock_conn *conn);

/* ---- steps (conn.c) -------------------------------------------------------------------------- */

/* One handshake step; 0 once the handshake is done (and every time after). */
int tlsock__conn_handshake_step(struct tlsock_conn *conn);
/*
 * Reads application data (at least one byte) into @p buf: first what a detach kept, then what
 * TLS decrypts. TLSOCK_ECLOSED once the peer's close_notify arrived.
 */
int tlsock__conn_read_step(struct tlsock_conn *conn, void *buf, size_t len, size_t *nread);
/* Encrypts some of @p buf (at least one byte on success) into the transport. */
int tlsock__conn_write_step(struct tlsock_conn *conn, const void *buf, size_t len,
                            size_t *nwritten);
/* Hands records collected while corked to the transport. */
int tlsock__conn_flush_step(struct tlsock_conn *conn);
/* Collects the records of the writes that follow until uncorked (bulk writes). */
void tlsock__conn_cork(struct tlsock_conn *conn, bool corked);
/* Sends close_notify once; 0 when it is out (and every time after). */
int tlsock__conn_close_notify_step(struct tlsock_conn *conn);

/* ---- state ----------------------------------------------------------------------------------- */

/* The handshake is done and the connection has not failed. */
bool tlsock__conn_is_open(const struct tlsock_conn *conn);
/* The fatal code of a dead connection, 0 while it lives. */
int tlsock__conn_sticky(const struct tlsock_conn *conn);
/* Our close_notify is out. */
bool tlsock__conn_sent_close(const struct tlsock_conn *conn);
/* The peer's close_notify arrived. */
bool tlsock__conn_peer_closed(const struct tlsock_conn *conn);

/* ---- the socket ------------------------------------------------------------------------------ */

/* The socket the transport reads and writes now; -1 for callbacks and memory. */
int tlsock__conn_socket(const struct tlsock_conn *conn);
/* The connection's socket even while memory mode carries its bytes (hand-off); -1 if none. */
int tlsock__conn_fd(const struct tlsock_conn *conn);
/*
 * A driver that moves the bytes of a memory-mode connection over a socket of its own names it
 * here, so that tlsock_conn_info() can give the peer's address; the core only asks it for that,
 * never reads, writes or closes it. -1 before the driver closes it.
 */
void tlsock__conn_set_addr_fd(struct tlsock_conn *conn, int fd);
/* tlsock opened the socket, and closes it when the connection ends. */
bool tlsock__conn_owns_fd(const struct tlsock_conn *conn);
/* The socket's fcntl flags from before tlsock made it non-blocking. */
int tlsock__conn_saved_flags(const struct tlsock_conn *conn);

/* ---- limits: stored by the core, applied by the drivers -------------------------------------- */

/* ms, 0 for none: each read, write and close_notify. */
int tlsock__conn_timeout(const struct tlsock_conn *conn);
/* ms, 0 for none. */
int tlsock__conn_handshake_timeout(const struct tlsock_conn *conn);
void tlsock__conn_set_handshake_timeout(struct tlsock_conn *conn, int timeout_ms);
/*
 * The deadline of the next blocking read, write or close_notify: its timeout or the deadline
 * (memory mode: the deadline alone, read without a clock: nothing there waits on a timeout).
 */
int64_t tlsock__conn_op_deadline(const struct tlsock_conn *conn);
/* The deadline of a blocking handshake: the handshake timeout or the deadline (as above). */
int64_t tlsock__conn_handshake_deadline(const struct tlsock_conn *conn);
/* While a blocking operation waits: its deadline, for tlsock_conn_op_deadline_ms(). */
void tlsock__conn_set_op_deadline(struct tlsock_conn *conn, int64_t deadline_ns);
/* While a blocking operation runs: it polls the socket after every retry (transport.h). */
void tlsock__conn_set_caller_polls(struct tlsock_conn *conn, bool on);
/* The blocking driver polled the connection's socket (transport.h, caller_polls). */
void tlsock__conn_polled(struct tlsock_conn *conn);
/* Bytes left through the connection's socket since the blocking driver last polled it. */
bool tlsock__conn_sent_since_poll(const struct tlsock_conn *conn);
/*
 * After a handshake step that wants to read: whether the driver should make the kernel
 * acknowledge what arrives next at once (tlsock__quick_ack(), drive/net.h). True for a server
 * that has sent its Finished and will send nothing after the client's: the client's Finished
 * would wait for a delayed ACK (40 ms on Linux), and a client that leaves Nagle on holds its
 * first request back until then. Where TLS 1.3 tickets follow the Finished, they carry the ACK.
 * Once per flight: the drivers ask only after a step that sent bytes (the client's last flight
 * may come in pieces, and the socket stays in quick-ACK mode until the server sends again).
 */
bool tlsock__conn_quick_ack_due(const struct tlsock_conn *conn);
/* A write interrupted by a WANT code: the bytes already written, kept for its repetition. */
size_t tlsock__conn_write_done(const struct tlsock_conn *conn);
void tlsock__conn_set_write_done(struct tlsock_conn *conn, size_t done);

/* ---- the session store's look-ups (store.c) ----------------------------------------------------
 */
/*
 * A server's pending get (include/tlsock.h, "Session store"): the handshake step returns
 * TLSOCK_EWANT_READ while tlsock__conn_store_waiting(). The core never waits for it: a driver is
 * told through the notify function it set (called from the thread of the store's done, under the
 * look-up's lock, only while the connection has not given the look-up up: it must only record
 * or queue the look-up and wake its own thread, never call into the core; it is given a
 * reference, dropped later with tlsock__lookup_unref(), or returns false to leave it to the core
 * when it could not keep it, out of memory), then steps again on its own thread. A
 * driver that stops waiting (the bound passed) calls tlsock__conn_store_give_up(): the handshake
 * goes on as a full one, and no notify comes after it returns.
 */
struct tlsock__lookup;
typedef bool (*tlsock__lookup_notify_fn)(void *arg, struct tlsock__lookup *lookup);
/* Sets the function told of completed gets, for the look-ups started from now on. */
void tlsock__conn_set_store_notify(struct tlsock_conn *conn, tlsock__lookup_notify_fn fn,
                                   void *arg);
/* A get was started and has not been taken in yet. */
bool tlsock__conn_store_waiting(const struct tlsock_conn *conn);
/* A get may still start or is pending (a server with a store, its ClientHello not looked at yet
 * or its get not taken in): the driver must set its notify before stepping. */
bool tlsock__conn_store_may_wait(const struct tlsock_conn *conn);
/* When the pending get counts as a miss (tlsock__now_ns() time). */
int64_t tlsock__conn_store_deadline(const struct tlsock_conn *conn);
/* Gives up on the pending get: a miss. */
void tlsock__conn_store_give_up(struct tlsock_conn *conn);
/* A queued look-up: whether its connection gave up on it (or ended); then the reference goes. */
bool tlsock__lookup_abandoned(struct tlsock__lookup *lookup);
void tlsock__lookup_unref(struct tlsock__lookup *lookup);

/* ---- memory mode, for drivers that feed and drain (memory.c) --------------------------------- */

/* Received ciphertext, queued for TLS (copied); 0 or TLSOCK_ENOMEM. */
int tlsock__conn_feed(struct tlsock_conn *conn, const void *data, size_t len) TLSOCK__MUST_CHECK;
/* The end of the received stream. */
void tlsock__conn_feed_eof(struct tlsock_conn *conn);
/* Received bytes TLS has not consumed yet. */
size_t tlsock__conn_input_pending(const struct tlsock_conn *conn);
/* Copies up to @p cap of them without consuming them; returns how many. */
size_t tlsock__conn_input_peek(const struct tlsock_conn *conn, void *buf, size_t cap);
/*
 * Makes the input queue read the caller's @p len bytes in place (they replace what was queued,
 * which the caller copied in front of them) until tlsock__conn_input_own(), which copies what
 * TLS left of them into storage of the connection's own (a partial record at most).
 */
void tlsock__conn_input_borrow(struct tlsock_conn *conn, const void *data, size_t len);
int tlsock__conn_input_own(struct tlsock_conn *conn) TLSOCK__MUST_CHECK;
/* As tlsock__conn_input_own(), into the caller's malloc()ed @p storage of @p cap bytes when what
 * is left fits: true when the queue took it (a driver's pooled block). */
bool tlsock__conn_input_own_into(struct tlsock_conn *conn, void *storage, size_t cap);
/* Takes the input queue's owned storage (borrowed bytes: nothing) and leaves the queue empty;
 * the caller frees what it gets. */
struct tlsock__buf tlsock__conn_input_take(struct tlsock_conn *conn);
/* Frees the input storage when nothing is queued: an idle connection holds none. */
void tlsock__conn_input_trim(struct tlsock_conn *conn);
/* Ciphertext waiting to be sent. */
size_t tlsock__conn_output_pending(const struct tlsock_conn *conn);
/* Makes room for @p cap bytes of output in all, at once; 0 or TLSOCK_ENOMEM. */
int tlsock__conn_output_reserve(struct tlsock_conn *conn, size_t cap) TLSOCK__MUST_CHECK;
/* Gives the empty output queue the caller's malloc()ed @p storage of @p cap bytes (a driver's
 * pooled block); false, and nothing taken, when the queue has storage already. */
bool tlsock__conn_output_lend(struct tlsock_conn *conn, void *storage, size_t cap);
/* Takes the output queue's storage (data, off, len, cap; free() it) and leaves it empty. */
struct tlsock__buf tlsock__conn_output_take(struct tlsock_conn *conn);

/* ---- moving a live connection between drivers (handoff.c) ------------------------------------ */

/*
 * To memory: the connection's ciphertext now moves through the memory transport, which an event
 * loop feeds and drains; the socket stays recorded (tlsock__conn_fd) but is no longer read or
 * written by the core. To a socket: back to blocking use over @p fd; ciphertext fed but not
 * consumed yet is read before the socket, and the output must have been taken.
 */
int tlsock__conn_to_memory(struct tlsock_conn *conn) TLSOCK__MUST_CHECK;
int tlsock__conn_to_socket(struct tlsock_conn *conn, int fd, bool owns_fd) TLSOCK__MUST_CHECK;
/* Tells the implementation the session is busy (@p hold) or idle: see impl.h hold_buffers. */
void tlsock__conn_hold_buffers(struct tlsock_conn *conn, bool hold);
/*
 * The connection goes idle (a blocking call returns): the implementation gives back its record
 * buffers and the input queue its storage, each unless it holds bytes of a record in flight.
 */
void tlsock__conn_rest(struct tlsock_conn *conn);

/* ---- detach (conn.c) ------------------------------------------------------------------------- */

/* Keeps application data that arrived while detaching, for the next read; 0 or ENOMEM. */
int tlsock__conn_stash(struct tlsock_conn *conn, const void *data, size_t len) TLSOCK__MUST_CHECK;
/* Bytes of application data kept by a detach and not read yet. */
size_t tlsock__conn_stashed(const struct tlsock_conn *conn);

/* ---- connection facts (info.c) --------------------------------------------------------------- */

/* What tlsock_conn_info() returns, made on first use once the handshake is done. */
int tlsock__conn_info(struct tlsock_conn *conn, const struct tlsock_info **out) TLSOCK__MUST_CHECK;
/* The public calls of the same names, once the handshake is done (TLSOCK_EINVAL before). */
int tlsock__conn_peer_cert_der(struct tlsock_conn *conn, size_t index, const unsigned char **der,
                               size_t *len) TLSOCK__MUST_CHECK;
int tlsock__conn_peer_cert_pem(struct tlsock_conn *conn, size_t index, const char **pem,
                               size_t *len) TLSOCK__MUST_CHECK;
int tlsock__conn_export(struct tlsock_conn *conn, const char *label, const void *context,
                        size_t context_len, void *out, size_t len) TLSOCK__MUST_CHECK;
int tlsock__conn_channel_binding(struct tlsock_conn *conn,
                                 unsigned char out[TLSOCK_CHANNEL_BINDING_SIZE]) TLSOCK__MUST_CHECK;

/* ---- certificates (devcert.c) ---------------------------------------------------------------- */

/* Generates a certificate with the default implementation (tests use it directly). */
int tlsock__cert_generate(const struct tlsock__cert_spec *spec, struct tlsock__pem_pair *out,
                          struct tlsock__err *err) TLSOCK__MUST_CHECK;
void tlsock__pem_pair_free(struct tlsock__pem_pair *pair);

#endif /* TLSOCK_CORE_H */
