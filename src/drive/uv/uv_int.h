/*
 * The libuv driver's private definitions: the async connection and server handles, and the
 * functions the driver's files share (stream.c is the engine; connect.c, server.c and handoff.c
 * create connections and hand them over).
 *
 * Every connection holds a struct tlsock_conn in memory mode: the loop feeds it the ciphertext
 * that arrives and sends what it drains. Nothing here waits; everything runs in the loop's
 * thread.
 */
#ifndef TLSOCK_UV_INT_H
#define TLSOCK_UV_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "core/core.h"
#include "drive/net.h"
#include "tlsock/uv.h"

/* Where a connection is in its life before it is ready. */
enum tlsock__uv_phase {
    TLSOCK__UV_RESOLVING,   /* client: name lookup on the thread pool */
    TLSOCK__UV_CONNECTING,  /* client: TCP connect, one address after another */
    TLSOCK__UV_HANDSHAKING, /* TLS handshake on the loop */
    TLSOCK__UV_OPEN,        /* handshake done */
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
    unsigned char *data; /* the drained storage, freed (or pooled) when uv is done with it */
    size_t cap;          /* its size: batch-sized storage goes back to the thread's pool */
    size_t len;
};

/* What a client needs only while it connects (connect.c). */
struct tlsock__uv_connecting {
    uv_getaddrinfo_t gai;
    uv_connect_t req;
    struct addrinfo *addrs;
    struct addrinfo *next; /* next address to try */
    int last_error;        /* libuv code of the last failed attempt */
    uint16_t port;
    char host[]; /* for messages */
};

/* The callbacks and limits a connection runs with (copied from struct tlsock_uv_opts). */
struct tlsock__uv_config {
    tlsock_uv_connect_cb on_connect;
    tlsock_uv_read_cb on_read;
    tlsock_uv_event_cb on_event;
    tlsock_uv_write_cb on_write;
    tlsock_uv_close_cb on_close;
    int read_idle_timeout_ms;
    int write_timeout_ms;
};

struct tlsock_uv_conn {
    uv_tcp_t tcp;
    uv_timer_t timer; /* the nearest deadline: connect, handshake, idle, write, close */
    uv_timer_t kick;  /* 0 ms: work that must run from the loop, not inside an API call */
    uv_loop_t *loop;
    struct tlsock_conn *tls;            /* memory mode while the loop drives it */
    struct tlsock_uv_server *server;    /* accepted and still in its handshake, else NULL */
    struct tlsock__uv_connecting *conn; /* client while connecting, else NULL */
    struct tlsock__uv_config cfg;
    void *user;
    struct tlsock__err
        err;             /* its storage comes with the first error: idle connections stay small */
    uv_shutdown_t *shut; /* allocated for our FIN (close or tlsock_uv_shutdown()) */

    /* Writes: FIFO; wq_enc is the first request not fully encrypted (NULL: all are). */
    struct tlsock__uv_write *wq_head;
    struct tlsock__uv_write *wq_tail;
    struct tlsock__uv_write *wq_enc;
    size_t plain_queued;    /* plaintext bytes not encrypted yet */
    size_t cipher_inflight; /* ciphertext in uv_write requests not completed yet */
    uint64_t cipher_sent;   /* ciphertext bytes handed to uv_write, ever */
    uint64_t cipher_done;   /* of those, completed by uv */

    /* Time on the loop's clock (uv_now), in ms; 0 means "not set". */
    uint64_t phase_deadline; /* connect or handshake */
    uint64_t last_rx;        /* last received byte, for the idle timeout */
    uint64_t last_wprog;     /* last write progress, for the write timeout */
    uint64_t close_limit;    /* graceful close gives up after this long without progress */
    uint64_t linger_until;   /* after our FIN: wait this long for the peer's EOF */
    uint64_t armed_due;      /* what the timer is armed for, if armed */

    tlsock_uv_release_cb release_cb;

    int handles;   /* initialised handles whose close callback has not run */
    int dead;      /* the fatal code once the connection died, 0 while healthy */
    int deferred;  /* a failure found inside an API call, reported from the loop */
    int sys_errno; /* errno behind the last TLSOCK_ESYS from libuv */
    uint8_t phase; /* enum tlsock__uv_phase */
    bool armed;
    bool gai_pending;      /* uv_getaddrinfo has not called back yet */
    bool connect_reported; /* on_connect was called (or, for a server's client, its outcome) */
    bool reading;          /* uv_read_start is in effect */
    bool user_stopped;     /* tlsock_uv_read_stop() */
    bool peer_closed;      /* the peer's close_notify arrived */
    bool eof_seen;         /* the socket reported EOF */
    bool broken;           /* the transport failed (reset, write timeout): no graceful close */
    bool closing;          /* tlsock_uv_close() or an internal close began */
    bool wr_shut;          /* tlsock_uv_shutdown(): close_notify and FIN after the writes */
    bool graceful;         /* closing: flush, close_notify, FIN, linger */
    bool notify_done;      /* closing or shut down: close_notify sent or skipped */
    bool shut_started;     /* closing or shut down: uv_shutdown issued */
    bool shut_done;        /* closing or shut down: our FIN is out */
    bool handles_closing;  /* uv_close issued on every handle: only the final callbacks remain */
    bool silent;           /* a server's client the application never saw: no callbacks */
    bool adopted;          /* tls came from tlsock_uv_adopt(): its own fd is conn->tls->fd */
    bool borrowed_fd;      /* adopted over a socket tlsock does not own: no FIN, no drain */
    bool releasing;        /* tlsock_uv_release() waits for the writes */
    bool released;         /* the session went back to blocking use: cb instead of on_close */
    bool buffers_held;     /* the session keeps its record buffers: it is busy */
};

struct tlsock_uv_server {
    uv_tcp_t tcp;
    uv_loop_t *loop;
    struct tlsock_ctx *ctx; /* referenced */
    struct tlsock_opts tls_opts;
    struct tlsock__uv_config cfg;
    tlsock_uv_accept_error_cb on_accept_error;
    void *user;
    unsigned char *initial; /* opts.initial_data, copied */
    size_t initial_len;
    uint16_t port;
    size_t clients; /* accepted connections not handed over or cleaned up yet */
    bool closing;
    bool listener_closed;
    tlsock_uv_server_close_cb close_cb;
};

/* First use of the driver: SIGPIPE's default action becomes "ignore" (once; a handler stays). */
void tlsock__uv_sigpipe_init(void);

/* Copies @p opts (any older size) over zeroed defaults. */
struct tlsock_uv_opts tlsock__uv_opts_copy(const struct tlsock_uv_opts *opts);
/* Fills a connection's callbacks and limits from options. */
struct tlsock__uv_config tlsock__uv_config_of(const struct tlsock_uv_opts *o);

/* A zeroed connection for @p loop with @p cfg; no handle initialised yet. NULL without memory. */
struct tlsock_uv_conn *tlsock__uv_conn_alloc(uv_loop_t *loop, const struct tlsock__uv_config *cfg,
                                             void *user);
/* Frees a connection none of whose handles was initialised yet, with its queued writes. */
void tlsock__uv_conn_discard(struct tlsock_uv_conn *c);
/* Initialises the two timers (the tcp handle is the caller's: connect, accept or open). */
void tlsock__uv_timers_init(struct tlsock_uv_conn *c);
/* Queues @p len bytes of initial data (owned or not) in front of everything. */
int tlsock__uv_queue_initial(struct tlsock_uv_conn *c, const void *data, size_t len,
                             bool copy) TLSOCK__MUST_CHECK;

/* The TCP connection exists: start reading and run the handshake from the loop. */
void tlsock__uv_start_tls(struct tlsock_uv_conn *c);
/* Runs everything that can progress; the only place user callbacks run besides close/finish. */
void tlsock__uv_pump(struct tlsock_uv_conn *c, bool read);
/* Asks the loop to pump soon (from an API call, where no callback may run). */
void tlsock__uv_kick(struct tlsock_uv_conn *c);
/* Reading and the deadline timer follow the state; call after every change from the loop. */
void tlsock__uv_settle(struct tlsock_uv_conn *c);
/* Reports a failure: on_connect while connecting, else on_event; a server's client goes to
 * on_accept_error and is closed by the driver. */
void tlsock__uv_report(struct tlsock_uv_conn *c, int code);
/* Begins closing (tlsock_uv_close() and the driver's own closes). */
void tlsock__uv_close_begin(struct tlsock_uv_conn *c);
/* Closes every handle now; the connection is freed when the last close callback ran. */
void tlsock__uv_close_all(struct tlsock_uv_conn *c);
/* A handle's close callback: counts down and finishes the connection after the last one. */
void tlsock__uv_handle_closed(uv_handle_t *handle);
/* The connection is finished if nothing of it is pending in libuv any more. */
void tlsock__uv_maybe_finish(struct tlsock_uv_conn *c);

/* Records the connection's error message (and the thread's) and returns @p code. */
int tlsock__uv_fail(struct tlsock_uv_conn *c, int code, const char *fmt, ...) TLSOCK__PRINTF(3, 4);
/* A libuv error as TLSOCK_ESYS, "<what>: <uv message> (<ERRNAME>)", keeping its errno. */
int tlsock__uv_sys_fail(struct tlsock_uv_conn *c, int uv_status, const char *what);
/* The TLS session's own message, moved to the connection. */
int tlsock__uv_tls_fail(struct tlsock_uv_conn *c, int code);

/* A server's client finished its handshake or its cleanup (server.c). */
void tlsock__uv_server_client_done(struct tlsock_uv_server *s);

/* Frees an adopted or loop-made session without the blocking close (handoff.c). */
void tlsock__uv_tls_drop(struct tlsock_conn *tls);
/* Release: every queued write completed; hands the session to the blocking side (handoff.c). */
void tlsock__uv_release_step(struct tlsock_uv_conn *c);

#endif /* TLSOCK_UV_INT_H */
