/*
 * The byte mover every implementation uses: a socket (the fast path) or transport callbacks,
 * with preread bytes served first, corked writes collected into larger transport writes, and
 * the transport's own outcome kept so that it reaches the caller exactly.
 *
 * Implementations wrap it in their own shape (OpenSSL's BIO, GnuTLS's push/pull functions);
 * nothing here knows a TLS library.
 */
#ifndef TLSOCK_XPORT_H
#define TLSOCK_XPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "impl.h"

/* Results of tlsock__xport_read/write besides a byte count. */
enum {
    TLSOCK__XPORT_RETRY = -1, /* not now: try again later (want or err says why) */
    TLSOCK__XPORT_FAILED = -2 /* the transport failed: tlsock__xport_fail() reports it */
};

struct tlsock__xport {
    int fd;      /* the fast path's socket, when io is unused */
    bool use_io; /* move bytes through io instead of fd */
    struct tlsock_io io;
    unsigned char *pre; /* preread bytes, consumed before the transport */
    size_t pre_len;
    size_t pre_off;
    bool corked;
    unsigned char *wbuf; /* collected records while corked, allocated on first use */
    size_t wlen;         /* bytes collected */
    size_t woff;         /* bytes of them already handed to the transport */
    int err;             /* TLSOCK_E* from the transport (ETIMEDOUT with a retry), 0 if none */
    int want;            /* the transport's own WANT code behind a retry, 0 if none */
    int sys_errno;       /* errno behind a TLSOCK_ESYS from the socket */
    const char *contract_broken; /* how a callback broke its contract, NULL if it did not */
    bool eof;                    /* the transport reported the end of the stream */
};

/* Sets up @p x from a session's parameters (copies preread); 0 or TLSOCK_ENOMEM. */
int tlsock__xport_init(struct tlsock__xport *x, const struct tlsock__conn_params *p,
                       struct tlsock__err *err);
void tlsock__xport_free(struct tlsock__xport *x);

/* >0 bytes read, 0 at the end of the stream, TLSOCK__XPORT_RETRY or TLSOCK__XPORT_FAILED. */
ssize_t tlsock__xport_read(struct tlsock__xport *x, void *buf, size_t len);
/* >0 bytes taken, TLSOCK__XPORT_RETRY or TLSOCK__XPORT_FAILED. Collects them while corked. */
ssize_t tlsock__xport_write(struct tlsock__xport *x, const void *buf, size_t len);
/*
 * The @p n buffers of @p iov in order, as one write: bytes taken from their start (fewer than
 * their sum when the transport took part), 0 if they hold no bytes, TLSOCK__XPORT_RETRY or
 * TLSOCK__XPORT_FAILED. On the socket, uncorked, several buffers leave in one sendmsg; callbacks
 * and corked writes take them one by one as tlsock__xport_write does. When a retry or failure
 * follows bytes already taken, the count is returned and the outcome stays in want/err.
 */
ssize_t tlsock__xport_writev(struct tlsock__xport *x, const struct iovec *iov, int n);
/* Hands collected records to the transport: 0, a WANT code, or an error (reported in @p err). */
int tlsock__xport_flush(struct tlsock__xport *x, struct tlsock__err *err);
/* Copies unconsumed preread bytes if they fit in @p cap; returns how many there are. */
size_t tlsock__xport_take_unread(struct tlsock__xport *x, void *buf, size_t cap);
/*
 * Moves the session to another transport: callbacks when @p io is not NULL, else the socket
 * @p fd. Collected records must have been flushed; unconsumed preread bytes stay first in line.
 */
void tlsock__xport_retarget(struct tlsock__xport *x, const struct tlsock_io *io, int fd);
/* Puts @p len received bytes back in front of everything else; 0 or TLSOCK_ENOMEM. */
int tlsock__xport_unshift(struct tlsock__xport *x, const void *data, size_t len,
                          struct tlsock__err *err);
/* Reports the transport's own failure exactly (errno, callback code, contract) and clears it. */
int tlsock__xport_fail(struct tlsock__xport *x, struct tlsock__err *err);
/* After a retry: the transport's own WANT code (or @p fallback), or its timeout reported. */
int tlsock__xport_retry_code(struct tlsock__xport *x, int fallback, struct tlsock__err *err);

#endif /* TLSOCK_XPORT_H */
