/*
 * The in-memory pair: a client and a server connection in sans-I/O memory mode
 * (tlsock_attach_mem), both in the test's thread, made from a client and a server context of the
 * implementation matrix (ts_ctx_new). The test moves the ciphertext between them, each way
 * through a path that can split the stream into small pieces, drop part of it or end it early.
 * The same pair also holds two connections over non-blocking user callbacks that move their bytes
 * themselves (tlsock_attach_io: a "direct" pair), and runs their handshake and data the same way.
 *
 * No socket and no thread: TLS behaviour that is not about the socket (verification,
 * negotiation, client certificates, alerts, records, close_notify, detach) runs here, so a
 * failure is reported by the side that saw it, in the test's thread, and nothing waits.
 *
 * The functions that make, move and read return 0 or a code (a tlsock code, or a TS_* code of
 * support.h) and never assert, so that cmocka setups can use them: the test asserts what it gets.
 * Every loop is bounded in count.
 *
 * Allocation: only ts_pair_setup() (the pair itself; also through ts_pair_setup_connected() and
 * ts_pair_renew()) and ts_pair_transfer() (its two buffers) allocate. Every other function works
 * in the pair's own buffers and on the stack, so a test that fails allocations on purpose
 * (alloc_fail.h) may call it while armed: what gets counted then is tlsock's and its
 * implementation's, never the fixture's. ts_pair_open() and ts_pair_connect() make contexts
 * through support.c (tlsock allocates; the fixture prints on failure): call them unarmed.
 */
#ifndef TLSOCK_TEST_PAIR_H
#define TLSOCK_TEST_PAIR_H

#include "support.h"

/* Pieces a path moves at most, when the test sets no chunk (one TLS record's worth). */
#define TS_PAIR_CHUNK 16384
/* Rounds of ts_pair_handshake() (one round: a client step, a move, a server step, a move), unless
 * the pair sets rounds_max. */
#define TS_PAIR_ROUNDS 64
/* The name the client verifies by default: the server of ts_pki carries it. */
#define TS_PAIR_NAME "localhost"

/* The two directions of the pair. */
enum ts_dir {
    TS_C2S = 0, /* client to server */
    TS_S2C = 1, /* server to client */
};

/*
 * One direction's path. The test sets the faults before moving bytes; a ts_pair_attach() or
 * ts_pair_close() resets the counters and the held bytes and keeps the faults. Positions count the
 * bytes the sender produced (the stream), whatever the path did with them.
 *
 * A feed that fails (tlsock_feed() out of memory) takes nothing: the bytes it refused stay held in
 * the path and go first on the next move, so that a test can go on after the failure with the
 * stream intact.
 */
struct ts_path {
    size_t chunk;  /* bytes per drain and feed; 0: TS_PAIR_CHUNK */
    bool truncate; /* the stream ends at truncate_at: tlsock_feed_eof(), nothing after */
    size_t truncate_at;
    size_t drop_at; /* bytes [drop_at, drop_at + drop_len) of the stream vanish */
    size_t drop_len;

    size_t sent;        /* bytes the sender produced (drained, and tail bytes) */
    size_t fed;         /* bytes given to the receiver */
    size_t feeds;       /* tlsock_feed() calls that took bytes */
    size_t read_wants;  /* EWANT_READ the receiver returned in ts_pair_read() and the transfers */
    size_t write_wants; /* EWANT_WRITE the sender returned in the transfers (direct pairs) */
    bool eof;           /* tlsock_feed_eof() was called */
    size_t held;        /* bytes a failed feed refused, in hold[] */
    unsigned char hold[TS_PAIR_CHUNK];
};

struct ts_pair {
    struct tlsock_ctx *cctx; /* set by the test before ts_pair_attach(), or by ts_pair_open() */
    struct tlsock_ctx *sctx;
    /* Made by ts_pair_attach() or ts_pair_attach_io(), or by the test itself (with contexts of its
     * own, say); NULL once closed or detached (the test sets it). */
    struct tlsock_conn *client;
    struct tlsock_conn *server;
    struct ts_path path[2]; /* indexed by enum ts_dir */

    /*
     * Settings, kept by ts_pair_close() and (but for direct) by the attach functions:
     *   direct: the connections move their own bytes (user callbacks; ts_pair_attach_io() sets
     *     it, ts_pair_attach() clears it, a test that attaches by itself sets it). The moves move
     * nothing, and since the pair cannot see what crossed, no round counts as idle: only the counts
     * bound the loops. stop_at_failure: ts_pair_handshake() stops at the first side that fails,
     * before its output (an alert) moves, and returns that side's code; the other side is left as
     * it was. For the fault tests, which check the failing call's code and message and then go on.
     * Unset: the other side gets the alert and goes on until it finishes or fails too. rounds_max:
     * ts_pair_handshake()'s and ts_pair_read()'s bound; 0: TS_PAIR_ROUNDS. Callbacks that move a
     * byte at a time, or say "not now" before each move, need many.
     */
    bool direct;
    bool stop_at_failure;
    int rounds_max;

    /* The outcome of the last ts_pair_handshake(): each side's code and message ("" if none). */
    int client_rc;
    int server_rc;
    char client_msg[TLSOCK__ERRMSG_SIZE];
    char server_msg[TLSOCK__ERRMSG_SIZE];
    int rounds;
};

/* Fails the test unless @p rc is a failure that ended the operation: negative, not a WANT code. */
void ts_assert_failed_at(int rc, const char *expr, const char *detail, const char *file, int line);
#define TS_ASSERT_FAILED(rc, detail) ts_assert_failed_at((rc), #rc, (detail), __FILE__, __LINE__)

/* cmocka setup and teardown: an empty pair in *state; the teardown closes and frees all of it. */
int ts_pair_setup(void **state);
int ts_pair_teardown(void **state);
/* Setup of a pair already connected: ts_pair_connect() with the defaults. */
int ts_pair_setup_connected(void **state);
/* For table-driven tests: a fresh pair before case @p index > 0 (as ts_env_renew()). */
void ts_pair_renew(void **state, size_t index);

/* An empty pair (no contexts, no connections, no faults, no settings) and its release: both
 * connections and both contexts, back to empty (accepts a NULL one). */
void ts_pair_init(struct ts_pair *p);
void ts_pair_release(struct ts_pair *p);

/* Closes both connections (NULL ones are skipped). The contexts, the faults and the settings stay;
 * the counters, the held bytes and the last outcome are reset, for the next attach. */
void ts_pair_close(struct ts_pair *p);

/* The sending and the receiving connection of @p dir. */
struct tlsock_conn *ts_pair_sender(const struct ts_pair *p, enum ts_dir dir);
struct tlsock_conn *ts_pair_receiver(const struct ts_pair *p, enum ts_dir dir);

/*
 * Creates both connections in memory mode from p->cctx and p->sctx. @p copts / @p sopts may be
 * NULL: ts_opts(), with the client verifying TS_PAIR_NAME. Both connections must be NULL.
 */
int ts_pair_attach(struct ts_pair *p, const struct tlsock_opts *copts,
                   const struct tlsock_opts *sopts);

/*
 * As ts_pair_attach(), with the client over the callbacks @p cio and the server over @p sio
 * (tlsock_attach_io); a NULL one is that side in memory mode, its bytes moved by the other side's
 * callbacks. Sets direct.
 */
int ts_pair_attach_io(struct ts_pair *p, const struct tlsock_io *cio, const struct tlsock_io *sio,
                      const struct tlsock_opts *copts, const struct tlsock_opts *sopts);

/* The contexts the test did not set (server: ts_pki.server; client: trusts ts_pki.ca), then
 * ts_pair_attach() with the default options. */
int ts_pair_open(struct ts_pair *p);

/* ts_pair_open(), then ts_pair_handshake(). */
int ts_pair_connect(struct ts_pair *p);

/*
 * Moves everything the sender of @p dir has to send through the path, in pieces of the path's
 * chunk, after the bytes a failed feed left held. Bytes for a connection that is gone (NULL) are
 * dropped. When the stream reaches a truncation point, the receiver gets tlsock_feed_eof(). A
 * direct pair moves nothing.
 */
int ts_pair_move(struct ts_pair *p, enum ts_dir dir);

/*
 * Like ts_pair_move(), followed by @p tail bytes that are not TLS (the plaintext that follows a
 * close_notify on the same stream) in the same pieces: the ciphertext and the tail arrive
 * together, as one TCP segment would bring them. TS_ESETUP on a direct pair.
 */
int ts_pair_move_tail(struct ts_pair *p, enum ts_dir dir, const void *tail, size_t tail_len);

/* Both directions, once each. */
int ts_pair_pump(struct ts_pair *p);

/*
 * Runs both handshakes until neither wants more (each finished or failed), moving each step's
 * output to the other side, at most TS_PAIR_ROUNDS (or rounds_max) rounds, and stops early when a
 * round moves nothing and changes no code (never on a direct pair). After one side fails, its
 * alert still goes to the other, which goes on until it finishes or fails too (unless
 * stop_at_failure). Sets client_rc, server_rc (a WANT code: never finished), their messages and
 * rounds. Calling it again goes on: a side that finished answers 0 at once, a failed one its code.
 * @return 0 when both finished; a failed move's code; with stop_at_failure, the code of the side
 *         that failed; else the client's code if it did not finish, the server's if it did.
 */
int ts_pair_handshake(struct ts_pair *p);

/* Writes @p len bytes on the sender of @p dir, then moves them. */
int ts_pair_write(struct ts_pair *p, enum ts_dir dir, const void *buf, size_t len);

/*
 * Reads exactly @p len bytes on the receiver of @p dir, moving both directions whenever it wants
 * more; the first code other than EWANT_READ, or EWANT_READ when nothing is left to move (on a
 * direct pair: after len + TS_PAIR_ROUNDS (or rounds_max) reads).
 */
int ts_pair_read(struct ts_pair *p, enum ts_dir dir, void *buf, size_t len);

/*
 * Data along one direction, in the caller's buffers, with its progress kept: a transfer that
 * failed (a failed feed, say, whose bytes the path holds) can go on from where it stopped by
 * running it again. Each round the sender writes @c data (again, with the same arguments, while
 * it answers a WANT code, as the callback contract asks), one piece of the path moves, and the
 * receiver reads what it can, at most @c max_read bytes per read, into @c out.
 */
struct ts_transfer {
    enum ts_dir dir;
    const unsigned char *data;
    size_t len;
    unsigned char *out; /* len bytes */
    size_t max_read;    /* 0: what is left */
    bool written;       /* the write returned 0 */
    size_t got;         /* bytes read into out */
};

/*
 * Runs (or goes on with) @p t, at most 16 rounds per byte plus TS_PAIR_ROUNDS (or rounds_max),
 * and stops early when a round writes, moves and reads nothing (never on a direct pair).
 * @return 0 when all of it arrived as sent; TS_EMISMATCH when it differs; a WANT code when it did
 *         not all arrive; or the first failing code. The WANT codes add up in the path's
 *         read_wants and write_wants. Allocates nothing.
 */
int ts_pair_run_transfer(struct ts_pair *p, struct ts_transfer *t);

/*
 * Sends @p size bytes of pattern @p seed (ts_fill) along @p dir with ts_pair_run_transfer(). In
 * memory mode the write completes at once (memory mode never blocks on output) and must queue
 * more ciphertext than data, then the ciphertext moves piece by piece and the receiver reads what
 * it can after each piece. Returns 0 when every byte arrived once, in order (TS_EMISMATCH if not),
 * or the first unexpected code; the receiver's EWANT_READs add up in the path's read_wants, the
 * sender's EWANT_WRITEs (direct pairs) in its write_wants. Allocates its buffers: not for use
 * while allocations are being failed (TS_ESETUP when they fail).
 */
int ts_pair_transfer(struct ts_pair *p, enum ts_dir dir, size_t size, unsigned seed);

#endif /* TLSOCK_TEST_PAIR_H */
