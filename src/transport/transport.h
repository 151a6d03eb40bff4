/*
 * The transport: the one byte mover of a connection, owned by the core and used by both TLS
 * implementations (OpenSSL's BIO and GnuTLS's push/pull functions call it; nothing here knows a
 * TLS library). It carries ciphertext over one of three kinds of transport:
 *
 *   SOCKET     a connected non-blocking socket: recv, send, sendmsg (MSG_NOSIGNAL, EINTR
 *              restarted, the real errno kept);
 *   CALLBACKS  the application's read/write callbacks (struct tlsock_io);
 *   MEMORY     sans-I/O: the driver feeds what arrived and drains what is to be sent.
 *
 * Two queues make every kind behave the same:
 *   - `in` holds received bytes that TLS has not consumed yet and that are read before the
 *     transport itself: preread bytes given at attach time, the ciphertext fed in memory mode,
 *     and bytes put back when a live session moves from memory to a socket;
 *   - `out` holds bytes on their way out: records collected while corked (SOCKET, CALLBACKS:
 *     several records leave in one transport write), or every record in memory mode, until the
 *     driver takes them.
 * The transport's own outcome (errno, callback code, broken contract) is kept until the
 * implementation maps its failure, so that it reaches the caller exactly.
 */
#ifndef TLSOCK_TRANSPORT_H
#define TLSOCK_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "base/base.h"

enum tlsock__transport_kind {
    TLSOCK__TRANSPORT_SOCKET,
    TLSOCK__TRANSPORT_CALLBACKS,
    TLSOCK__TRANSPORT_MEMORY,
};

/* Whether writes are collected, and how much storage is taken for them at once. */
enum tlsock__cork {
    TLSOCK__UNCORKED,    /* every write goes out */
    TLSOCK__CORK_BULK,   /* collected in CORK_CAP of storage taken at once */
    TLSOCK__CORK_FLIGHT, /* one handshake flight: storage grows with what comes */
};

/* Results of tlsock__transport_read/write besides a byte count. */
enum {
    TLSOCK__TRANSPORT_RETRY = -1, /* not now: try again later (want or err says why) */
    TLSOCK__TRANSPORT_FAILED = -2 /* the transport failed: tlsock__transport_fail() reports it */
};

struct tlsock__transport {
    enum tlsock__transport_kind kind;
    int fd;                 /* SOCKET: the socket; -1 otherwise */
    struct tlsock_io *io;   /* CALLBACKS: the application's callbacks (a copy), else NULL */
    struct tlsock__buf in;  /* received, not consumed yet: read before the transport */
    struct tlsock__buf out; /* to send: corked records, or memory mode's output */
    bool in_eof;            /* MEMORY: the driver said no more input will come */
    uint8_t cork;           /* enum tlsock__cork: collect records in out? (SOCKET, CALLBACKS) */
    bool eof;               /* a read met the end of the stream */
    int err;                /* TLSOCK_E* from the transport (ETIMEDOUT with a retry), 0 if none */
    int want;               /* the transport's own WANT code behind a retry, 0 if none */
    int sys_errno;          /* errno behind a TLSOCK_ESYS from the socket */
    const char *why;        /* a failure the transport explains itself (broken contract...) */
    /*
     * SOCKET: the caller polls the socket after every retry (the blocking driver, for the length
     * of one operation), so a read after a send and before the caller's next poll reports "not
     * yet" without a recv: the peer cannot have answered a flight it has not seen, and the
     * failed recv would be a system call per flight that a blocking program does not make. The poll
     * that follows waits for the answer, or returns at once when it is there already. Never set
     * otherwise: a caller that waits for readability edge-triggered would wait for an edge that
     * already came.
     */
    bool caller_polls;
    bool sent; /* SOCKET: bytes left by send since the caller last polled */
};

/*
 * Sets up @p t of @p kind over @p fd (SOCKET) or @p io (CALLBACKS), with @p preread_len bytes
 * read before the transport (copied). 0 or TLSOCK_ENOMEM (reported in @p err).
 */
int tlsock__transport_init(struct tlsock__transport *t, enum tlsock__transport_kind kind, int fd,
                           const struct tlsock_io *io, const void *preread, size_t preread_len,
                           struct tlsock__err *err) TLSOCK__MUST_CHECK;
void tlsock__transport_free(struct tlsock__transport *t);

/* >0 bytes read, 0 at the end of the stream, TLSOCK__TRANSPORT_RETRY or _FAILED. */
ssize_t tlsock__transport_read(struct tlsock__transport *t, void *buf, size_t len);
/*
 * Reads ahead until @p need bytes wait in the input queue, without consuming any (TLS reads them
 * later): how many wait, 0 at the end of the stream, TLSOCK__TRANSPORT_RETRY or _FAILED.
 */
ssize_t tlsock__transport_fill(struct tlsock__transport *t, size_t need);
/* >0 bytes taken, TLSOCK__TRANSPORT_RETRY or _FAILED. Collects them while corked. */
ssize_t tlsock__transport_write(struct tlsock__transport *t, const void *buf, size_t len);
/*
 * The @p n buffers of @p iov in order, as one write: bytes taken from their start (fewer than
 * their sum when the transport took part), 0 if they hold no bytes, TLSOCK__TRANSPORT_RETRY or
 * _FAILED. On a socket, uncorked, several buffers leave in one sendmsg; callbacks and corked
 * writes take them one by one as tlsock__transport_write does. When a retry or failure follows
 * bytes already taken, the count is returned and the outcome stays in want/err.
 */
ssize_t tlsock__transport_writev(struct tlsock__transport *t, const struct iovec *iov, int n);

/* The caller polled the socket: what was sent before may have been answered (caller_polls). */
void tlsock__transport_polled(struct tlsock__transport *t);
/* Collects the records of the writes that follow (true) until uncorked (false). */
void tlsock__transport_cork(struct tlsock__transport *t, bool corked);
/*
 * As tlsock__transport_cork(t, true) for the records of one handshake flight (a few KiB): the
 * storage grows with what comes instead of a bulk write's 64 KiB up front, whose malloc and free
 * per flight cost page faults and a trim of the heap. Uncorked with tlsock__transport_cork().
 */
void tlsock__transport_cork_flight(struct tlsock__transport *t);
/*
 * The flight collected since tlsock__transport_cork_flight() is complete: it leaves now, and the
 * writes that follow are not collected. A no-op without a flight cork. A send that fails or says
 * "not now" keeps the bytes collected, ahead of any later write, for the caller's next
 * tlsock__transport_flush(), which reports it.
 */
void tlsock__transport_end_flight(struct tlsock__transport *t);
/*
 * Hands collected records to the transport: 0, a WANT code, or an error (reported in @p err).
 * Memory mode's output stays for the driver: nothing to do.
 */
int tlsock__transport_flush(struct tlsock__transport *t, struct tlsock__err *err);

/* Reports the transport's own failure exactly (errno, callback code, contract) and clears it. */
int tlsock__transport_fail(struct tlsock__transport *t, struct tlsock__err *err);
/* After a retry: the transport's own WANT code (or @p fallback), or its timeout reported. */
int tlsock__transport_retry_code(struct tlsock__transport *t, int fallback,
                                 struct tlsock__err *err);

/*
 * Moves a live session to another kind of transport (detach, async hand-off). Collected output
 * must be gone. Unconsumed input stays first in line: preread bytes when moving to memory, fed
 * ciphertext when moving to a socket.
 */
void tlsock__transport_switch(struct tlsock__transport *t, enum tlsock__transport_kind kind,
                              int fd);

/* ---- sockets (socket.c) ---------------------------------------------------------------------- */

/*
 * One recv/send on a non-blocking socket: bytes moved, 0 at EOF (recv), TLSOCK_EWANT_READ /
 * TLSOCK_EWANT_WRITE when it would block, or TLSOCK_ESYS with *sys_errno set. Restarts on EINTR;
 * sends with MSG_NOSIGNAL.
 */
ssize_t tlsock__sock_recv(int fd, void *buf, size_t len, int *sys_errno);
ssize_t tlsock__sock_send(int fd, const void *buf, size_t len, int *sys_errno);
/* The same for several buffers in one sendmsg (a TLS flight of several records). */
ssize_t tlsock__sock_sendmsg(int fd, const struct iovec *iov, int iovcnt, int *sys_errno);
/* Makes @p fd non-blocking, returning its previous flags in *saved_flags (may be NULL). */
int tlsock__set_nonblocking(int fd, int *saved_flags, struct tlsock__err *err) TLSOCK__MUST_CHECK;

#endif /* TLSOCK_TRANSPORT_H */
