/*
 * Inside one tunnelled connection, a "pair": the client the tunnel accepted and the connection it
 * made to the target for it, each side plaintext (a uv_tcp_t) or TLS (a tlsock_uv_conn). Four
 * files share this header, each to be read top to bottom:
 *
 *   tunnel_pair.c     the pair's life: its phases and timer, what a reset or a truncation of one
 *                     side does to both, closing and freeing;
 *   tunnel_forward.c  what one side sends is written to the other, by one routine for both
 *                     directions: backpressure, and the end of a stream passed on (half-close);
 *   tunnel_side.c     one side's I/O over either transport, and the transports' callbacks;
 *   tunnel_connect.c  a client accepted and the target connected for it.
 *
 * The pair's life (enum pair_phase; only pair_enter() in tunnel_pair.c moves it):
 *
 *                 target ready                 a TLS side truncated
 *   CONNECTING ----------------> FORWARDING ------------------------> DRAINING
 *        \                           |                                   /
 *         \ connect failed,          | both streams ended, idle         / the survivor done,
 *          \ a stop                  | timeout, a stop                 / 5 s without progress,
 *           \                        v                                 / a stop
 *            `-----------------> CLOSED <------------------------------'
 *
 * and from any phase to CLOSED on a reset or an error on either side: an abort, which resets
 * both sides (TCP RST; tlsock_uv_abort() for TLS). The idle timeout, the draining bound and a
 * stop abort the pair the same way unless every stream through it has ended and been passed on:
 * a cut stream is never closed as if it were complete. CLOSED is the end: every handle is being
 * closed, and the pair is freed after the last close callback.
 */
#ifndef TLSOCK_CLI_TUNNEL_PAIR_H
#define TLSOCK_CLI_TUNNEL_PAIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tunnel.h"

/*
 * A side is not read while the other side holds more than HIGH bytes, until LOW (what "holds"
 * means, and the memory a pair keeps with it: tunnel_forward.c).
 */
#define TUNNEL_QUEUE_HIGH (256 * 1024)
#define TUNNEL_QUEUE_LOW  (64 * 1024)

/*
 * Data moves in chunks of one fixed size: a plaintext read fills one, and the records a TLS side
 * delivers (16 KiB of plaintext at most each) are gathered into one until it is full or the
 * loop's turn ends (its check phase), so that the plaintext side gets one write per chunk, not
 * one per record (a write on loopback costs about as much as decrypting the record). The chunk
 * travels with the write to the other side until it completes. A loop keeps up to
 * TUNNEL_SPARE_MAX free chunks while it has a pair open: what one event may have in flight
 * (libuv reads up to 32 times 64 KiB of TLS per event, each about a chunk written at once and
 * given back from the next loop turn), so a steady stream allocates nothing; they are freed once
 * the loop's last pair closes, so an idle tunnel holds none.
 */
#define TUNNEL_CHUNK_SIZE (64 * 1024)
#define TUNNEL_SPARE_MAX  40

struct tunnel_chunk {
    struct tunnel_chunk *next; /* the loop's spare list */
    uv_write_t req;            /* its plaintext write */
    uv_buf_t buf;
    size_t len;
    char data[TUNNEL_CHUNK_SIZE];
};

enum pair_phase {
    PAIR_CONNECTING, /* the target is being connected; the client is not read */
    PAIR_FORWARDING, /* both ways, each until its end is passed on */
    PAIR_DRAINING,   /* one side truncated and closed: the other gets what was queued for it,
                        then its end (FIN), and what it still sends is dropped */
    PAIR_CLOSED,     /* every handle closing */
};

/* What becomes of what a side sends (moved by tunnel_forward.c). */
enum side_input {
    INPUT_WAITING,  /* not read yet: the target is not connected */
    INPUT_READING,  /* read and written to the other side */
    INPUT_PAUSED,   /* not read: too much waits to be written to the other side */
    INPUT_DROPPING, /* read and dropped: the other side is gone (DRAINING) */
    INPUT_ENDED,    /* nothing more will be read */
};

/* What is sent to a side (moved by tunnel_side.c). */
enum side_output {
    OUTPUT_OPEN,
    OUTPUT_ENDING, /* plaintext: shutdown(SHUT_WR) asked, to follow the queued writes */
    OUTPUT_ENDED,  /* plaintext: the FIN is out; TLS: tlsock_uv_shutdown() took it (close_notify
                      and a FIN follow the queued writes, also through a close) */
};

struct tunnel_side {
    struct tunnel_pair *pair;
    bool tls;
    uv_tcp_t *tcp;               /* plaintext; freed in its close callback */
    struct tlsock_uv_conn *conn; /* TLS */
    uv_shutdown_t shutdown_req;
    enum side_input input;
    enum side_output output;
    bool closing;   /* its handle is being closed: nothing more goes either way */
    uint64_t bytes; /* read from this side and forwarded */
    /* Chunks written to this side whose write has not completed yet (each holds a whole chunk,
     * whatever it carries): counted by tunnel_forward.c for backpressure. */
    size_t writing;
    /* TLS: records read from this side and not forwarded yet (a chunk not full), and its place
     * in the loop's list of sides to forward them at the end of the loop's turn. */
    struct tunnel_chunk *gather;
    struct tunnel_side *flush_prev;
    struct tunnel_side *flush_next;
    bool flush_listed;
};

struct tunnel_pair {
    struct tunnel_loop *owner;
    struct tunnel_pair *prev;
    struct tunnel_pair *next;
    enum pair_phase phase;
    struct tunnel_side client;
    struct tunnel_side target;
    uv_timer_t timer; /* bounds the plaintext connect, the idle time, the draining */
    uv_getaddrinfo_t resolve_req;
    uv_connect_t connect_req;
    struct addrinfo *addrs;     /* the target's addresses (plaintext) */
    struct addrinfo *next_addr; /* the one to try next */
    int connect_err;            /* libuv error of the last address tried */
    uint64_t last_active;       /* uv_now() when data last moved */
    int refs;                   /* handles and requests whose callbacks are still due */
    bool resolving;             /* resolve_req is pending */
    char peer[CLI_PEER_SIZE];
};

/* tunnel_pair.c: the pair's life. */

/* A new pair (CONNECTING) for a client just accepted on @p tl; NULL when out of memory. */
struct tunnel_pair *tunnel_pair_new(struct tunnel_loop *tl);

/* A handle or request of the pair had its last callback; the last one frees the pair. */
void tunnel_pair_release(struct tunnel_pair *pair);

/* The target is connected (and verified): forward both ways. */
void tunnel_pair_forward(struct tunnel_pair *pair);

/* Data moved: the idle and draining bounds count from now. */
void tunnel_pair_progress(struct tunnel_pair *pair);

/* Closes both sides cleanly: what is queued for a TLS side is still sent, then close_notify
 * (a pair whose streams all ended, or one whose client sent nothing through yet). */
void tunnel_pair_finish(struct tunnel_pair *pair);

/* @p side was reset or failed: logged, and both sides are closed at once (an abort). */
void tunnel_pair_failed(struct tunnel_side *side, int code, const char *detail);

/* @p side's TLS stream ended without close_notify: logged; the other side drains. */
void tunnel_pair_truncated(struct tunnel_side *side, int code, const char *detail);

/* Ends the pair if nothing more can go either way. */
void tunnel_pair_check_done(struct tunnel_pair *pair);

/* Logs "<client>: <what>: <error>: <detail>". */
void tunnel_pair_log_error(struct tunnel_pair *pair, const char *what, int code,
                           const char *detail);

struct tunnel_side *tunnel_other_side(struct tunnel_side *side);

/* tunnel_forward.c: from one side to the other. */

/* Starts reading @p side (the pair is forwarding). */
void tunnel_forward_start(struct tunnel_side *side);

/* @p chunk (taken) was read from @p from: written to the other side, or dropped. */
void tunnel_forward_data(struct tunnel_side *from, struct tunnel_chunk *chunk);

/* A write to @p to completed: the other side may be read again. */
void tunnel_forward_written(struct tunnel_side *to);

/* @p side's stream ended cleanly (FIN, close_notify): the end is passed on. */
void tunnel_forward_ended(struct tunnel_side *side);

/*
 * @p gone's stream was cut short (it is being closed): nothing more is read from it; the other
 * side gets what is queued for it, then its end, and what it sends is dropped.
 */
void tunnel_forward_drain(struct tunnel_side *gone);

/* tunnel_side.c: one side's I/O; failures go to tunnel_pair_failed(). */

/* Starts or stops reading @p side. */
void tunnel_side_set_reading(struct tunnel_side *side, bool on);

/* Writes @p chunk (taken) to @p side. Returns 0, or an error already reported. */
int tunnel_side_write(struct tunnel_side *side, struct tunnel_chunk *chunk);

/* A chunk from @p tl's spares, or malloc()ed; NULL without memory. */
struct tunnel_chunk *tunnel_chunk_get(struct tunnel_loop *tl);

/* Gives @p chunk (may be NULL) back to @p tl's spares, or frees it when they are full. */
void tunnel_chunk_put(struct tunnel_loop *tl, struct tunnel_chunk *chunk);

/* Frees @p tl's spare chunks and closes its flush handle (its last pair closed). */
void tunnel_chunk_drain(struct tunnel_loop *tl);

/* Forwards what @p side gathered now (before its end is passed on, and at the end of a turn). */
void tunnel_side_flush(struct tunnel_side *side);

/* The pair is being freed: what @p side gathered is dropped, and it leaves the flush list. */
void tunnel_side_forget(struct tunnel_side *side);

/* Bytes written to @p side and not yet handed to the kernel. */
size_t tunnel_side_queue(const struct tunnel_side *side);

/* Ends @p side's output after the queued writes (FIN, or close_notify and FIN). */
void tunnel_side_end_output(struct tunnel_side *side);

/*
 * Closes @p side's handle; its close callback releases the pair. A plaintext side drops what is
 * queued for it; a TLS side sends it, then close_notify (tlsock_uv_close()). With @p reset
 * (an abort) either sends a TCP reset instead, and a TLS side drops its queue too
 * (tlsock_uv_abort()).
 */
void tunnel_side_close(struct tunnel_side *side, bool reset);

/* A plaintext connect attempt failed: its handle is closed and freed. */
void tunnel_side_drop_tcp(struct tunnel_side *side);

/* The callbacks of a TLS side (read, event, write, close); opts.user must be the side. */
void tunnel_side_tls_callbacks(struct tlsock_uv_opts *opts);

#endif /* TLSOCK_CLI_TUNNEL_PAIR_H */
