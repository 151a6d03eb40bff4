/*
 * The in-memory pair: a client and a server connection in sans-I/O memory mode
 * (tlsock_attach_mem), both in the test's thread, made from a client and a server context of the
 * implementation matrix (ts_ctx_new). The test moves the ciphertext between them, each way
 * through a path that can split the stream into small pieces, drop part of it or end it early.
 *
 * No socket and no thread: TLS behaviour that is not about the socket (verification,
 * negotiation, client certificates, alerts, records, close_notify, detach) runs here, so a
 * failure is reported by the side that saw it, in the test's thread, and nothing waits.
 *
 * The functions that make, move and read return 0 or a code (a tlsock code, or a TS_* code of
 * support.h) and never assert, so that cmocka setups can use them: the test asserts what it gets.
 * Every loop is bounded in count.
 */
#ifndef TLSOCK_TEST_PAIR_H
#define TLSOCK_TEST_PAIR_H

#include "support.h"

/* Pieces a path moves at most, when the test sets no chunk (one TLS record's worth). */
#define TS_PAIR_CHUNK 16384
/* Rounds of ts_pair_handshake() (one round: a client step, a move, a server step, a move). */
#define TS_PAIR_ROUNDS 64
/* The name the client verifies by default: the server of ts_pki carries it. */
#define TS_PAIR_NAME "localhost"

/* The two directions of the pair. */
enum ts_dir {
    TS_C2S = 0, /* client to server */
    TS_S2C = 1, /* server to client */
};

/*
 * One direction's path. The test sets the faults before moving bytes; a ts_pair_attach() resets
 * the counters and keeps the faults. Positions count the bytes the sender produced (the stream),
 * whatever the path did with them.
 */
struct ts_path {
    size_t chunk;  /* bytes per drain and feed; 0: TS_PAIR_CHUNK */
    bool truncate; /* the stream ends at truncate_at: tlsock_feed_eof(), nothing after */
    size_t truncate_at;
    size_t drop_at; /* bytes [drop_at, drop_at + drop_len) of the stream vanish */
    size_t drop_len;

    size_t sent;       /* bytes the sender produced (drained, and tail bytes) */
    size_t fed;        /* bytes given to the receiver */
    size_t feeds;      /* tlsock_feed() calls */
    size_t read_wants; /* EWANT_READ the receiver returned in ts_pair_read()/_transfer() */
    bool eof;          /* tlsock_feed_eof() was called */
};

struct ts_pair {
    struct tlsock_ctx *cctx; /* set by the test before ts_pair_attach(), or by ts_pair_open() */
    struct tlsock_ctx *sctx;
    struct tlsock_conn *client; /* NULL once closed or detached (the test sets it) */
    struct tlsock_conn *server;
    struct ts_path path[2]; /* indexed by enum ts_dir */

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

/* An empty pair (no contexts, no connections, no faults) and its release (accepts a NULL one). */
void ts_pair_init(struct ts_pair *p);
void ts_pair_release(struct ts_pair *p);

/* The sending and the receiving connection of @p dir. */
struct tlsock_conn *ts_pair_sender(const struct ts_pair *p, enum ts_dir dir);
struct tlsock_conn *ts_pair_receiver(const struct ts_pair *p, enum ts_dir dir);

/*
 * Creates both connections in memory mode from p->cctx and p->sctx. @p copts / @p sopts may be
 * NULL: ts_opts(), with the client verifying TS_PAIR_NAME. Both connections must be NULL.
 */
int ts_pair_attach(struct ts_pair *p, const struct tlsock_opts *copts,
                   const struct tlsock_opts *sopts);

/* The contexts the test did not set (server: ts_pki.server; client: trusts ts_pki.ca), then
 * ts_pair_attach() with the default options. */
int ts_pair_open(struct ts_pair *p);

/* ts_pair_open(), then ts_pair_handshake(). */
int ts_pair_connect(struct ts_pair *p);

/*
 * Moves everything the sender of @p dir has to send through the path, in pieces of the path's
 * chunk. Bytes for a connection that is gone (NULL) are dropped. When the stream reaches a
 * truncation point, the receiver gets tlsock_feed_eof().
 */
int ts_pair_move(struct ts_pair *p, enum ts_dir dir);

/*
 * Like ts_pair_move(), followed by @p tail bytes that are not TLS (the plaintext that follows a
 * close_notify on the same stream) in the same pieces: the ciphertext and the tail arrive
 * together, as one TCP segment would bring them.
 */
int ts_pair_move_tail(struct ts_pair *p, enum ts_dir dir, const void *tail, size_t tail_len);

/* Both directions, once each. */
int ts_pair_pump(struct ts_pair *p);

/*
 * Runs both handshakes until neither wants more (each finished or failed), moving each step's
 * output to the other side, at most TS_PAIR_ROUNDS rounds, and stops early when a round moves
 * nothing. After one side fails, its alert still goes to the other, which goes on until it
 * finishes or fails too. Sets client_rc, server_rc (a WANT code: never finished), their messages
 * and rounds.
 * @return 0 when both finished; else the client's code if it did not finish, the server's if it
 *         did.
 */
int ts_pair_handshake(struct ts_pair *p);

/* Writes @p len bytes on the sender of @p dir, then moves them. */
int ts_pair_write(struct ts_pair *p, enum ts_dir dir, const void *buf, size_t len);

/*
 * Reads exactly @p len bytes on the receiver of @p dir, moving both directions whenever it wants
 * more; the first code other than EWANT_READ, or EWANT_READ when nothing is left to move.
 */
int ts_pair_read(struct ts_pair *p, enum ts_dir dir, void *buf, size_t len);

/*
 * Sends @p size bytes of pattern @p seed (ts_fill) along @p dir: the write completes at once
 * (memory mode never blocks on output), then the ciphertext moves piece by piece and the receiver
 * reads what it can after each piece. Returns 0 when every byte arrived once, in order
 * (TS_EMISMATCH if not), or the first unexpected code; the receiver's EWANT_READs add up in the
 * path's read_wants.
 */
int ts_pair_transfer(struct ts_pair *p, enum ts_dir dir, size_t size, unsigned seed);

#endif /* TLSOCK_TEST_PAIR_H */
