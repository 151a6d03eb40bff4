/*
 * Two memory-mode connections in one thread (tlsock_attach_mem), and the wires that carry what
 * one drains to the other's feed; or two connections over non-blocking callbacks that move their
 * bytes themselves (tlsock_attach_io, `direct`). Nothing here allocates, so it may run while
 * allocations are being failed (alloc_fail.h); buffers for data are the caller's.
 */
#ifndef TLSOCK_TEST_MEM_PAIR_H
#define TLSOCK_TEST_MEM_PAIR_H

#include "support.h"

/* Bytes one side drained and the other has not been fed yet. */
struct ts_wire {
    size_t chunk; /* at most this many bytes per drain and per feed; 0: as many as fit */
    size_t len;
    unsigned char buf[32768];
};

struct ts_mem_pair {
    struct tlsock_conn *client;
    struct tlsock_conn *server;
    struct ts_wire c2s;
    struct ts_wire s2c;
    bool client_done; /* its handshake returned 0 */
    bool server_done;
    bool direct; /* callbacks move the bytes: no wire */
};

/*
 * Moves what @p from has to send to @p to through @p w, @p w->chunk bytes at a time. Returns 0,
 * or the code of a failed drain or feed: the bytes not fed stay on the wire for the next call.
 */
int ts_wire_move(struct ts_wire *w, struct tlsock_conn *from, struct tlsock_conn *to);

/* Both ends over empty wires moving @p chunk bytes at a time (0: no limit). */
void ts_mem_pair_init(struct ts_mem_pair *p, size_t chunk);

/* Closes both connections (NULL ones are skipped) and empties the wires. */
void ts_mem_pair_close(struct ts_mem_pair *p);

/*
 * Steps the handshakes that are not done yet and moves their output both ways (unless direct),
 * for at most @p rounds rounds. Returns 0 once both are done, EWANT_READ if they are not done by
 * then, or the first code that is not a WANT (a failed handshake, feed or drain).
 */
int ts_mem_pair_handshake(struct ts_mem_pair *p, int rounds);

/*
 * Data sent from one side to the other: the writer writes it all (repeated while it returns a
 * WANT code), the wire moves it (unless direct), the reader reads at most @c max_read bytes per
 * read (0: as many as fit) into @c out. Progress is kept, so a transfer that failed can go on from
 * where it stopped.
 */
struct ts_transfer {
    bool from_client;
    const unsigned char *data;
    size_t len;
    unsigned char *out;
    size_t max_read;
    bool written; /* the write returned 0 */
    size_t got;   /* bytes read into out */
};

/* Runs (or goes on with) @p t: 0 when all arrived as sent, TS_EMISMATCH when they differ, or the
 * first failing code. */
int ts_mem_pair_transfer(struct ts_mem_pair *p, struct ts_transfer *t);

#endif /* TLSOCK_TEST_MEM_PAIR_H */
