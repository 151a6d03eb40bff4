/*
 * The libuv driver's private definitions: the async connection and server, their states, the
 * per-loop state they share, and the functions the driver's files share.
 *
 * Every connection holds a struct tlsock_conn in memory mode (core/core.h is the driver's only
 * door into the core): the loop feeds it the ciphertext that arrives and sends what it drains.
 * Nothing here waits; everything runs in the loop's thread.
 *
 * The files, from the top down. A file calls only the files below it; where libuv must call
 * back upward (a write or shutdown request completes, a deadline passes, kicked work runs), it
 * calls through struct tlsock__uv_hooks, which the engine gives the per-loop state.
 *
 *   api.c        the public calls on a connection (write, read_stop/start, close, shutdown,
 *                accessors)
 *   connect.c    tlsock_uv_connect(): lookup, TCP connect, then the engine
 *   server.c     tlsock_uv_serve() and tlsock_uv_serve_shared(): the listener, the clients
 *                handed in from another loop, and each client's hand-over to the application
 *   group.c      the servers that share one listener: who is least loaded, the clients handed
 *                from the listening loop to another (the only state shared across threads)
 *   handoff.c    tlsock_uv_adopt() and tlsock_uv_release()
 *   engine.c     the pump: handshake, delivering reads, reports, reading, deadlines that pass,
 *                and every libuv callback of a connection; creating connections
 *   close.c      the graceful close (flush, close_notify, FIN, linger), closing the handles,
 *                finishing (the last callbacks and the memory) a connection or a server
 *   writes.c     the write queue, output batches sized to what they carry, the queue's byte
 *                count (backpressure)
 *   timers.c     which deadline applies in which state, and when one passed
 *   loop.c       the per-loop state: registry keyed by uv_loop_t, one timer for every deadline
 *                (a min-heap), one idle handle for kicked work, the read buffer, one async
 *                handle that carries session-store answers back from any thread
 *   state.c      the states' transition functions and the questions asked about them; errors;
 *                SIGPIPE
 */
#ifndef TLSOCK_UV_INT_H
#define TLSOCK_UV_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "core/core.h"
#include "drive/ctx_slot.h"
#include "drive/net.h"
#include "tlsock/uv.h"

/*
 * A connection's life (docs/async.md draws it). tlsock__uv_enter() is the only place that
 * changes it, and it aborts on a move the table does not allow: that is a bug.
 */
enum tlsock__uv_state {
    TLSOCK__UV_NEW,         /* allocated; nothing started yet */
    TLSOCK__UV_RESOLVING,   /* client: name lookup on the thread pool */
    TLSOCK__UV_CONNECTING,  /* client: TCP connect, one address after another */
    TLSOCK__UV_HANDSHAKING, /* TLS handshake on the loop; the application has no answer yet */
    TLSOCK__UV_OPEN,        /* ready: on_connect(0) was called */
    TLSOCK__UV_RELEASING,   /* tlsock_uv_release(): waits for the writes, then hands over */
    TLSOCK__UV_DEAD,        /* a fatal failure was reported; waits for tlsock_uv_close() */
    TLSOCK__UV_CLOSING,     /* the graceful close runs (enum tlsock__uv_tx, then a linger) */
    TLSOCK__UV_CLOSED,      /* the socket is closing: only its close callback remains */
    TLSOCK__UV_HANDED_OVER, /* released: the socket is closing, then the session goes back */
    TLSOCK__UV_NSTATES
};

/* The TCP connection underneath. */
enum tlsock__uv_link {
    TLSOCK__UV_LINK_NONE,   /* not connected yet (resolving, connecting) */
    TLSOCK__UV_LINK_UP,     /* connected and sound */
    TLSOCK__UV_LINK_BROKEN, /* failed (reset, read error, write timeout): the socket is closed
                               at once, so that libuv never writes to it again */
};

/* The incoming direction. */
enum tlsock__uv_rx {
    TLSOCK__UV_RX_LIVE,     /* data may come */
    TLSOCK__UV_RX_NOTIFIED, /* the peer's close_notify arrived; the socket has not ended */
    TLSOCK__UV_RX_EOF,      /* the socket ended; TLS has not told close_notify from truncation */
    TLSOCK__UV_RX_ENDED,    /* both */
};

/* The outgoing direction: tlsock_uv_shutdown() and the graceful close run the same sequence. */
enum tlsock__uv_tx {
    TLSOCK__UV_TX_OPEN,     /* writes are accepted */
    TLSOCK__UV_TX_ENDING,   /* the writes queued before are encrypted, then close_notify */
    TLSOCK__UV_TX_NOTIFIED, /* close_notify is out (or was skipped: nothing to say it on) */
    TLSOCK__UV_TX_FIN_SENT, /* uv_shutdown() was issued after the last write */
    TLSOCK__UV_TX_FIN_DONE, /* our FIN is out */
};

/* Which of a connection's deadlines passed (timers.c). */
enum tlsock__uv_expiry {
    TLSOCK__UV_EXP_NONE,
    TLSOCK__UV_EXP_CONNECT,   /* lookup and TCP connect */
    TLSOCK__UV_EXP_HANDSHAKE, /* the TLS handshake */
    TLSOCK__UV_EXP_STORE,     /* the session store's get: it counts as a miss */
    TLSOCK__UV_EXP_WRITE,     /* ciphertext waited write_timeout_ms without progress */
    TLSOCK__UV_EXP_IDLE,      /* nothing arrived for read_idle_timeout_ms */
    TLSOCK__UV_EXP_CLOSE,     /* the graceful close: no progress, or the linger ended */
    TLSOCK__UV_EXP_RELEASE,   /* idle for TLSOCK__UV_HOLD_MS: the record buffers go */
};

enum {
    TLSOCK__UV_QUEUE_LIMIT = 512 * 1024, /* default opts.queue_limit */
    TLSOCK__UV_BATCH_PLAIN = 16 * 1024,  /* plaintext encrypted into one uv_write at most: one
                                            record, so that bursts stay pipelined */
    TLSOCK__UV_READ_SIZE = 64 * 1024,    /* the loop's read buffer, lent for each read */
    TLSOCK__UV_BLOCK = 20 * 1024,        /* a spare block: one batch's ciphertext (a record of
                                            16 KiB and its overhead), or a partial record kept
                                            between reads (TLS 1.2: 16 KiB + 2 KiB + 5) */
    TLSOCK__UV_SMALL = 256,              /* a spare record: a write request, a batch, a write
                                            side */
    TLSOCK__UV_SPARE_BLOCKS = 32,        /* spares a loop keeps at most, of each kind */
    TLSOCK__UV_SPARE_SMALL = 128,
    TLSOCK__UV_HOLD_MS = 50, /* an idle connection keeps its record buffers this
                                long: a stream's pauses between reads free nothing */
};

/* What a loop keeps spares of (loop.c). */
enum tlsock__uv_spare_kind {
    TLSOCK__UV_SPARE_BLOCK, /* TLSOCK__UV_BLOCK bytes */
    TLSOCK__UV_SPARE_REC,   /* TLSOCK__UV_SMALL bytes */
    TLSOCK__UV_SPARE_KINDS
};

struct tlsock_uv_conn;

/*
 * The engine's entry points for what libuv calls back into lower files' requests. The per-loop
 * state holds them, so that no file calls a file above it.
 */
struct tlsock__uv_hooks {
    uv_write_cb written;                      /* a batch's uv_write completed */
    uv_shutdown_cb fin_sent;                  /* our uv_shutdown completed */
    void (*run)(struct tlsock_uv_conn *c);    /* kicked: pump from the loop */
    void (*expire)(struct tlsock_uv_conn *c); /* the connection's deadline came */
    uv_close_cb closed;                       /* the connection's socket is closed */
};

struct tlsock__uv_answer; /* loop.c */

/* What a loop's connections and servers share (loop.c). */
struct tlsock__uv_loop {
    struct tlsock__uv_loop *next; /* the registry */
    uv_loop_t *loop;
    const struct tlsock__uv_hooks *hooks;
    size_t users;                  /* connections and servers using it; freed after the last */
    int open_handles;              /* timer, idle and async not closed yet */
    uv_timer_t timer;              /* armed for the nearest deadline of all the connections */
    uint64_t timer_due;            /* what it is armed for, UINT64_MAX for nothing */
    uv_idle_t idle;                /* runs kicked connections on the loop's next turn */
    struct tlsock_uv_conn *kicked; /* FIFO, doubly linked through kick_prev/kick_next */
    struct tlsock_uv_conn *kick_tail;
    size_t nkicked;
    struct tlsock_uv_conn **heap; /* min-heap of connections on their due time */
    uint32_t heap_len;
    uint32_t heap_cap;
    /* Spare blocks and records, kept while a connection of the loop is busy (holds its record
     * buffers), freed when the last one goes idle: data moving allocates nothing, an idle loop
     * holds no spares. */
    void *spare[TLSOCK__UV_SPARE_KINDS];
    uint32_t nspare[TLSOCK__UV_SPARE_KINDS];
    size_t busy;         /* connections with buffers_held */
    unsigned char *rbuf; /* headroom + the read buffer: allocated by the first read */
    bool rbuf_lent;      /* lent to libuv for one read (a fact of the buffer, not of a state) */
    /* Session-store gets whose done came (from any thread): queued under answers_lock, and the
     * async handle wakes the loop to kick their connections. */
    uv_async_t async;
    pthread_mutex_t answers_lock;
    struct tlsock__uv_answer *answers;
};

/* One tlsock_uv_write() request; its buffer stays the caller's until it completes. */
struct tlsock__uv_write {
    struct tlsock__uv_write *next;
    const unsigned char *buf;
    size_t len;
    size_t done;  /* bytes encrypted so far */
    uint64_t end; /* once encrypted: ciphertext position just past its last byte */
    void *arg;
    bool internal; /* opts.initial_data: no callback; buffer freed with the request if owned */
    bool owned;
};

/* Ciphertext handed to uv_write(); completing it moves cipher_done forward. */
struct tlsock__uv_batch {
    uv_write_t req;
    struct tlsock_uv_conn *conn;
    unsigned char *data; /* the drained output storage, freed when libuv is done with it */
    size_t cap;          /* its size, for the queue's byte count */
    size_t len;
};

/*
 * The write side of a busy connection, allocated by the first write or flight and freed once
 * nothing is queued or in flight: an idle connection carries one pointer for it.
 */
struct tlsock__uv_wq {
    /* FIFO; enc is the first request not fully encrypted (NULL: all are). */
    struct tlsock__uv_write *head;
    struct tlsock__uv_write *tail;
    struct tlsock__uv_write *enc;
    size_t plain_queued;    /* plaintext bytes not encrypted yet */
    size_t batch_bytes;     /* storage and headers of the batches libuv has not completed */
    size_t cipher_inflight; /* ciphertext in those batches */
    uint64_t cipher_sent;   /* ciphertext bytes handed to uv_write since the side was made */
    uint64_t cipher_done;   /* of those, completed by libuv */
    uint32_t nwrites;       /* requests in the queue */
};

/* What a client needs only while it connects (connect.c). */
struct tlsock__uv_connecting {
    uv_getaddrinfo_t gai;
    uv_connect_t req;
    struct addrinfo *addrs;
    struct addrinfo *next; /* next address to try */
    int last_error;        /* libuv code of the last failed attempt */
    bool gai_pending;      /* uv_getaddrinfo has not called back yet: the memory must wait */
    uint16_t port;
    char host[]; /* for messages */
};

/* The callbacks and limits a connection runs with (copied from struct tlsock_uv_opts); a
 * server's connections share the server's. */
struct tlsock__uv_config {
    size_t refs; /* the server and connections holding it (all on one loop) */
    /* Connections made with it and not finished yet: a server's load, which the loop that
     * accepts for a group of servers reads from its own thread (group.c). */
    atomic_size_t live;
    tlsock_uv_connect_cb on_connect;
    tlsock_uv_read_cb on_read;
    tlsock_uv_event_cb on_event;
    tlsock_uv_write_cb on_write;
    tlsock_uv_close_cb on_close;
    size_t queue_limit;
    int read_idle_timeout_ms;
    int write_timeout_ms;
};

struct tlsock_uv_conn {
    uv_tcp_t tcp; /* its data is the application's user pointer (tlsock__uv_conn_of()) */
    struct tlsock__uv_loop *lp;
    struct tlsock_conn *tls; /* memory mode while the loop drives it */
    /*
     * Never both, and accepted tells which (memory per idle connection): read them through
     * tlsock__uv_server_of() and tlsock__uv_connecting_of().
     */
    union {
        struct tlsock_uv_server *server;          /* accepted, not handed over yet; else NULL */
        struct tlsock__uv_connecting *connecting; /* client while connecting, else NULL */
    } origin;
    /*
     * Never both (memory per idle connection): an accepted client's place in its server's
     * waiting array while it waits there (tlsock__uv_server_of() is not NULL), and release_cb
     * only after that (tlsock_uv_release() needs OPEN, which a client reaches only once it left
     * the array, which then sets release_cb to NULL).
     */
    union {
        tlsock_uv_release_cb release_cb; /* RELEASING until the hand-over or its failure */
        size_t server_slot;              /* index in the server's waiting array */
    };
    struct tlsock__uv_config *cfg; /* referenced */
    struct tlsock__err
        err; /* its storage comes with the first error: idle connections stay small */

    struct tlsock__uv_wq *wq; /* while writes are queued or in flight, else NULL */

    /* Deadlines, on the loop's clock (uv_now) in ms. */
    uint64_t due;        /* what the heap holds it for */
    uint64_t until;      /* the state's own deadline: connect, handshake, or the close's linger;
                            0: none */
    uint64_t last_rx;    /* last received byte, for the idle timeout */
    uint64_t last_wprog; /* last write progress, for the write timeout and the close */

    struct tlsock_uv_conn *kick_prev; /* the loop's list of connections to pump */
    struct tlsock_uv_conn *kick_next;

    int failure;       /* the fatal code once the connection failed (DEAD, or closed after) */
    uint32_t heap_idx; /* place in the loop's deadline heap, UINT32_MAX when not in it */
    uint8_t handles;   /* the socket handle is initialised and its close callback has not run */
    uint8_t state;     /* enum tlsock__uv_state */
    uint8_t link;      /* enum tlsock__uv_link */
    uint8_t rx;        /* enum tlsock__uv_rx */
    uint8_t tx;        /* enum tlsock__uv_tx */
    /* Facts independent of the states above, each a yes/no of its own (one byte for all): */
    bool kicked : 1;       /* on the loop's kick list */
    bool outcome_told : 1; /* on_connect (or on_accept_error) was called: finish owes no
                              ECANCELED */
    bool reading : 1;      /* uv_read_start() is in effect: mirrors libuv's handle */
    bool user_stopped : 1; /* the application called tlsock_uv_read_stop() */
    bool throttled : 1;    /* reading paused: the write queue went over the limit and has not
                              drained below half of it yet (hysteresis: a fact of the queue) */
    bool adopted : 1;      /* tls came from tlsock_uv_adopt(): its own fd is tlsock__conn_fd() */
    bool borrowed_fd : 1;  /* adopted over a socket tlsock does not own: no FIN, no drain */
    bool buffers_held : 1; /* the session keeps its record buffers: mirrors the implementation */
    bool accepted : 1;     /* came from a server's listener: origin is the server's */
};

/* A server's spare handle, which turns a client away when there is no memory for it. */
enum tlsock__uv_reject {
    TLSOCK__UV_REJECT_IDLE,    /* free */
    TLSOCK__UV_REJECT_CLOSING, /* resetting a client: in use until its close callback */
    TLSOCK__UV_REJECT_QUEUED,  /* ... and another client waits in libuv to be accepted */
};

/* Most clients handed to a server and not taken by its loop yet; more go elsewhere. */
#define TLSOCK__UV_INBOX_MAX 64

/* Clients the listening loop accepted for another server of its group (under the group's lock). */
struct tlsock__uv_inbox {
    int fds[TLSOCK__UV_INBOX_MAX]; /* accepted sockets, oldest first */
    size_t count;
    size_t pending; /* handed and not yet counted in cfg->live: count, and those being taken */
};

struct tlsock_uv_server {
    uv_tcp_t tcp;                   /* the listener; only the group's first server has one */
    uv_async_t wake;                /* the others: their loop's wake-up for clients in the inbox */
    bool listens;                   /* tcp is used (else wake) */
    struct tlsock__uv_group *group; /* the servers sharing the listener, this one included */
    struct tlsock__uv_inbox inbox;
    uv_loop_t *loop;
    struct tlsock__uv_loop *lp;
    struct tlsock__ctx_slot ctx; /* tlsock_uv_server_set_ctx() swaps it from any thread */
    struct tlsock_opts tls_opts;
    struct tlsock__uv_config *cfg; /* referenced; given to each client */
    tlsock_uv_accept_error_cb on_accept_error;
    void *user;
    unsigned char *initial; /* opts.initial_data, copied */
    size_t initial_len;
    uint16_t port;
    size_t clients; /* accepted connections not handed over or finished yet */
    /* The same clients, for tlsock_uv_server_abort() to find them; each knows its index
     * (server_slot). Grows by doubling, shrinks when a quarter full, freed when empty. */
    struct tlsock_uv_conn **waiting;
    size_t nwaiting;
    size_t waiting_cap;
    bool closing;         /* tlsock_uv_server_close() was called (no more accepts) */
    bool listener_closed; /* ... and the listener's close callback ran */
    bool aborted;         /* tlsock_uv_server_abort() was called: its waiting clients are reset */
    uv_tcp_t reject;      /* turns a client away when there is no memory for it */
    uint8_t rejecting;    /* enum tlsock__uv_reject: what the reject handle is doing */
    tlsock_uv_server_close_cb close_cb;
};

/* ---- engine.c: creating connections, the pump ------------------------------------------------ */

/* Copies @p opts (any older size) over zeroed defaults; TLSOCK_EINVAL for a negative timeout. */
int tlsock__uv_opts_copy(const struct tlsock_uv_opts *opts, const char *caller,
                         struct tlsock_uv_opts *out) TLSOCK__MUST_CHECK;
/* A connection's callbacks and limits from options (one reference); NULL without memory. */
struct tlsock__uv_config *tlsock__uv_config_new(const struct tlsock_uv_opts *o);
void tlsock__uv_config_unref(struct tlsock__uv_config *cfg);
/* The loop's shared state, referenced, with the engine's hooks; NULL without memory. */
struct tlsock__uv_loop *tlsock__uv_loop_use(uv_loop_t *loop);
/* A zeroed connection on @p loop with @p cfg (referenced); no handle initialised yet. NULL
 * without memory. */
struct tlsock_uv_conn *tlsock__uv_conn_alloc(uv_loop_t *loop, struct tlsock__uv_config *cfg,
                                             void *user);
/* The connection whose socket handle is @p handle. */
struct tlsock_uv_conn *tlsock__uv_conn_of(const uv_handle_t *handle);
/* The server an accepted connection waits in until its hand-over; NULL otherwise. */
struct tlsock_uv_server *tlsock__uv_server_of(const struct tlsock_uv_conn *c);
/* A client's connecting state while it connects; NULL otherwise. */
struct tlsock__uv_connecting *tlsock__uv_connecting_of(const struct tlsock_uv_conn *c);
/* The TCP connection exists: the handshake runs from the loop. */
void tlsock__uv_start_tls(struct tlsock_uv_conn *c);
/* The socket is about to close: the session no longer asks it for the peer's address. */
void tlsock__uv_forget_addr(struct tlsock_uv_conn *c);
/* Runs everything that can progress; user callbacks run only from here and from close.c. */
void tlsock__uv_pump(struct tlsock_uv_conn *c, bool read);
/* Reading and the deadline follow the state; call after every change from the loop. */
void tlsock__uv_settle(struct tlsock_uv_conn *c);
/* Reports a failure: on_connect while connecting, else on_event; a server's client goes to
 * on_accept_error and is closed by the driver. The connection is DEAD afterwards. */
void tlsock__uv_report(struct tlsock_uv_conn *c, int code);

/* ---- close.c --------------------------------------------------------------------------------- */

/* Begins closing (tlsock_uv_close() and the driver's own closes); no callback runs in it. */
void tlsock__uv_close_begin(struct tlsock_uv_conn *c);
/* tlsock_uv_abort(): the socket is reset and closed now; what is queued is canceled. */
void tlsock__uv_abort(struct tlsock_uv_conn *c);
/* The next steps of the graceful close (from the pump). */
void tlsock__uv_close_step(struct tlsock_uv_conn *c);
/* tlsock_uv_shutdown(): close_notify, then FIN, once every queued write is encrypted; 0 or the
 * fatal code to report. */
int tlsock__uv_half_close_step(struct tlsock_uv_conn *c) TLSOCK__MUST_CHECK;
/* Frees a session the loop drove, without the blocking close: its socket is closed if it owned
 * it, else given back in its original mode. */
void tlsock__uv_tls_drop(struct tlsock_conn *tls);
/* Our FIN is out (from the engine's shutdown callback). */
void tlsock__uv_after_fin(struct tlsock_uv_conn *c);
/* Closes the socket now, for good (state CLOSED, or HANDED_OVER for a release). */
void tlsock__uv_close_all(struct tlsock_uv_conn *c, enum tlsock__uv_state to);
/* Received while closing (dropped), or the peer's end. */
void tlsock__uv_closing_read(struct tlsock_uv_conn *c, ssize_t nread);
/* Releasing: once every write completed, hands the session to the blocking side. */
void tlsock__uv_handover_step(struct tlsock_uv_conn *c);
/* The release failed (the caller made the connection DEAD): its callback gets @p code. */
void tlsock__uv_release_failed(struct tlsock_uv_conn *c, int code);
/* The socket's close callback. */
void tlsock__uv_socket_closed(uv_handle_t *handle);
/* The connection is finished if it ended and nothing of it is pending in libuv any more. */
void tlsock__uv_maybe_finish(struct tlsock_uv_conn *c);
/* Frees a connection none of whose handles was initialised yet, with its queued writes. */
void tlsock__uv_conn_discard(struct tlsock_uv_conn *c);
/* A client @p s accepted waits in it (its waiting array, server_slot); 0 or TLSOCK_ENOMEM. */
int tlsock__uv_server_track(struct tlsock_uv_server *s,
                            struct tlsock_uv_conn *c) TLSOCK__MUST_CHECK;
/* The client leaves the waiting array (hand-over, or finish); release_cb is NULL after. */
void tlsock__uv_server_untrack(struct tlsock_uv_server *s, struct tlsock_uv_conn *c);
/* A server's client was handed over or finished. */
void tlsock__uv_server_client_done(struct tlsock_uv_server *s);
/* The server's listener is closed: freed once no client is left. */
void tlsock__uv_server_maybe_finish(struct tlsock_uv_server *s);

/* ---- group.c: servers on several loops sharing one listener --------------------------------- */

/* A group of one: @p s, which listens. 0 or TLSOCK_ENOMEM. */
int tlsock__uv_group_new(struct tlsock_uv_server *s) TLSOCK__MUST_CHECK;
/* Adds @p s to open @p first's group; any thread. 0 or TLSOCK_ENOMEM. */
int tlsock__uv_group_join(struct tlsock_uv_server *first,
                          struct tlsock_uv_server *s) TLSOCK__MUST_CHECK;
/*
 * Takes @p s out of its group, which hands it nothing more once this returns, and drops its
 * reference. Moves the clients still in its inbox to @p fds (TLSOCK__UV_INBOX_MAX entries) and
 * returns how many.
 */
size_t tlsock__uv_group_leave(struct tlsock_uv_server *s, int *fds);
/* The server of the listener's group with the fewest connections, @p listener on a tie. */
struct tlsock_uv_server *tlsock__uv_group_pick(struct tlsock_uv_server *listener);
/* Puts @p fd into @p to's inbox and wakes its loop; false if @p to left @p listener's group (it
 * may be freed: only the group is read then) or its inbox is full. */
bool tlsock__uv_group_give(struct tlsock_uv_server *listener, struct tlsock_uv_server *to, int fd);
/* Moves @p s's inbox to @p fds (TLSOCK__UV_INBOX_MAX entries); returns how many. They count as
 * its load until tlsock__uv_group_taken(). */
size_t tlsock__uv_group_take(struct tlsock_uv_server *s, int *fds);
/* @p n clients taken by tlsock__uv_group_take() are connections now (or gone). */
void tlsock__uv_group_taken(struct tlsock_uv_server *s, size_t n);

/* ---- writes.c -------------------------------------------------------------------------------- */

/* Queues a write at the end; 0 or TLSOCK_ENOMEM (nothing queued then). */
int tlsock__uv_queue_write(struct tlsock_uv_conn *c, const void *buf, size_t len,
                           void *arg) TLSOCK__MUST_CHECK;
/* Queues @p len bytes of initial data (copied or not) in front of everything. */
int tlsock__uv_queue_initial(struct tlsock_uv_conn *c, const void *data, size_t len,
                             bool copy) TLSOCK__MUST_CHECK;
/* What the write queue holds, in bytes: tlsock_uv_conn_write_queue_size(). */
size_t tlsock__uv_queue_bytes(const struct tlsock_uv_conn *c);
/* The queue is over the limit (reading pauses), or drained below half of it (reading goes on). */
void tlsock__uv_update_throttle(struct tlsock_uv_conn *c);
/* Encrypts queued writes in order while little ciphertext waits in libuv; 0 or a fatal code. */
int tlsock__uv_encrypt_writes(struct tlsock_uv_conn *c) TLSOCK__MUST_CHECK;
/* Every queued write is encrypted. */
bool tlsock__uv_all_encrypted(const struct tlsock_uv_conn *c);
/* Ciphertext libuv has not written yet. */
size_t tlsock__uv_inflight(const struct tlsock_uv_conn *c);
/* Nothing queued, nothing in flight; tlsock__uv_writes_trim() then frees the write side. */
bool tlsock__uv_writes_idle(const struct tlsock_uv_conn *c);
void tlsock__uv_writes_trim(struct tlsock_uv_conn *c);
/* Sends what TLS produced as one uv_write; 0 or a fatal code (the link broke for ESYS). */
int tlsock__uv_flush(struct tlsock_uv_conn *c) TLSOCK__MUST_CHECK;
/* A batch completed: the counters move; returns its connection. */
struct tlsock_uv_conn *tlsock__uv_batch_done(uv_write_t *req, int status);
/* Completes, in order, the requests libuv has written (their on_write runs); whether one of the
 * application's completed. */
bool tlsock__uv_complete_writes(struct tlsock_uv_conn *c);
/* The connection ends: every request completes, 0 if written, else TLSOCK_ECANCELED. */
void tlsock__uv_finish_writes(struct tlsock_uv_conn *c, bool callbacks);
/* Frees the write side (the connection is freed; batches in flight are done). */
void tlsock__uv_writes_free(struct tlsock_uv_conn *c);

/* ---- timers.c -------------------------------------------------------------------------------- */

/* Puts the connection's nearest deadline in the loop's heap (or takes it out). */
void tlsock__uv_arm(struct tlsock_uv_conn *c);
/* The deadline that passed at @p now, if any. */
enum tlsock__uv_expiry tlsock__uv_expired(const struct tlsock_uv_conn *c, uint64_t now);
/* The bound of a graceful close without progress, in ms. */
uint64_t tlsock__uv_close_limit(const struct tlsock_uv_conn *c);

/* ---- loop.c ---------------------------------------------------------------------------------- */

/* The loop's shared state, made by its first user; NULL without memory. */
struct tlsock__uv_loop *tlsock__uv_loop_ref(uv_loop_t *loop, const struct tlsock__uv_hooks *hooks);
/* One user less: after the last, the loop's handles close and the state is freed. */
void tlsock__uv_loop_unref(struct tlsock__uv_loop *lp);
/* Asks the loop to run the connection's pump before it polls (never inside an API call). */
void tlsock__uv_kick(struct tlsock_uv_conn *c);
/* The connection's session-store gets wake the loop when their done comes (from any thread). */
void tlsock__uv_watch_store(struct tlsock_uv_conn *c);
/* Takes the connection off the kick list and out of the deadline heap (it ends). */
void tlsock__uv_loop_forget(struct tlsock_uv_conn *c);
/* Sets the connection's place in the deadline heap: @p due, or none for UINT64_MAX. */
void tlsock__uv_heap_set(struct tlsock_uv_conn *c, uint64_t due);
/* The read buffer for libuv's alloc callback; sets rbuf_lent, or mallocs if it is lent. */
void tlsock__uv_read_alloc(struct tlsock__uv_loop *lp, uv_buf_t *buf);
/* Gives a read buffer back (the loop's, or a malloc'ed one). */
void tlsock__uv_read_release(struct tlsock__uv_loop *lp, const uv_buf_t *buf);
/* The buffer is the loop's: TLS may read it in place, with this much headroom in front. */
bool tlsock__uv_read_is_loops(const struct tlsock__uv_loop *lp, const uv_buf_t *buf);
size_t tlsock__uv_read_headroom(void);

/* A spare of @p kind, or malloc()ed; NULL without memory. Not zeroed. */
void *tlsock__uv_spare_get(struct tlsock__uv_loop *lp, enum tlsock__uv_spare_kind kind);
/* Gives @p p (may be NULL) back to the spares, or frees it when they are full or none is kept. */
void tlsock__uv_spare_put(struct tlsock__uv_loop *lp, enum tlsock__uv_spare_kind kind, void *p);
/* Storage of @p cap bytes given back: a spare block if it is one's size, else freed. */
void tlsock__uv_storage_put(struct tlsock__uv_loop *lp, void *data, size_t cap);
/* A connection began (@p busy) or stopped holding its record buffers; after the last one the
 * spares are freed. */
void tlsock__uv_loop_busy(struct tlsock__uv_loop *lp, bool busy);

/* ---- state.c --------------------------------------------------------------------------------- */

void tlsock__uv_enter(struct tlsock_uv_conn *c, enum tlsock__uv_state to);
void tlsock__uv_link_enter(struct tlsock_uv_conn *c, enum tlsock__uv_link to);
void tlsock__uv_rx_enter(struct tlsock_uv_conn *c, enum tlsock__uv_rx to);
void tlsock__uv_tx_enter(struct tlsock_uv_conn *c, enum tlsock__uv_tx to);

/* The socket is closing or closed: nothing of the connection may use it or call back. */
bool tlsock__uv_ended(const struct tlsock_uv_conn *c);
/* The application still owns a connection that may take writes. */
bool tlsock__uv_accepts_writes(const struct tlsock_uv_conn *c);
/* The handshake has not finished (or not started): no answer given yet. */
bool tlsock__uv_before_ready(const struct tlsock_uv_conn *c);
/* The peer's close_notify arrived / the socket ended. */
bool tlsock__uv_peer_notified(const struct tlsock_uv_conn *c);
bool tlsock__uv_rx_eof(const struct tlsock_uv_conn *c);
/* The socket is connected and sound, and open in libuv. */
bool tlsock__uv_link_up(const struct tlsock_uv_conn *c);
/* The transport failed: the link breaks and the socket closes now (the connection stays). */
void tlsock__uv_link_broke(struct tlsock_uv_conn *c);
/* Whether the kernel has torn the TCP connection down (state CLOSE: a reset, or a failure). */
bool tlsock__uv_tcp_reset_seen(const struct tlsock_uv_conn *c);

/* Records the connection's error message (and the thread's) and returns @p code. */
int tlsock__uv_fail(struct tlsock_uv_conn *c, int code, const char *fmt, ...) TLSOCK__PRINTF(3, 4);
/* A libuv error as TLSOCK_ESYS, "<what>: <uv message> (<ERRNAME>)". */
int tlsock__uv_sys_fail(struct tlsock_uv_conn *c, int uv_status, const char *what);
/* The TLS session's own message, moved to the connection. */
int tlsock__uv_tls_fail(struct tlsock_uv_conn *c, int code);

/* First use of the driver: SIGPIPE's default action becomes "ignore" (once; a handler stays). */
void tlsock__uv_sigpipe_init(void);

#endif /* TLSOCK_UV_INT_H */
