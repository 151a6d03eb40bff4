/*
 * The base every layer of the library uses: error messages, the clock, a byte queue and host
 * name helpers. Nothing here knows a connection, a transport or a TLS implementation.
 */
#ifndef TLSOCK_BASE_H
#define TLSOCK_BASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tlsock.h"

#define TLSOCK__MUST_CHECK        __attribute__((warn_unused_result))
#define TLSOCK__PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))

/* ---- errors (error.c) ------------------------------------------------------------------------ */

/* The longest error message kept, terminating NUL included. */
#define TLSOCK__ERRMSG_SIZE 512

/*
 * An object's error message. The storage is allocated by the first failure recorded in it, so an
 * object that never fails (most connections) carries one pointer, not a message buffer; if that
 * allocation fails, the message reads "out of memory recording an error". Freed with
 * tlsock__err_free().
 */
struct tlsock__err {
    char *msg; /* TLSOCK__ERRMSG_SIZE bytes once allocated, else NULL */
    bool lost; /* a message could not be kept for want of memory */
};

/*
 * Records "fmt..." in @p err (when not NULL) and in the thread's last-error message, and returns
 * @p code, so that error paths read `return tlsock__fail(err, TLSOCK_ECONFIG, "...")`.
 */
int tlsock__fail(struct tlsock__err *err, int code, const char *fmt, ...) TLSOCK__PRINTF(3, 4);

/* The message in @p err, "" if none: valid until the next failure recorded in it. */
const char *tlsock__err_msg(const struct tlsock__err *err);

/* True when @p err holds a message. */
bool tlsock__err_set(const struct tlsock__err *err);

/* Copies @p err's message to the thread's last-error message (after an implementation wrote it). */
void tlsock__publish(const struct tlsock__err *err);

/* Empties the message; its storage is kept for the next one. */
void tlsock__err_clear(struct tlsock__err *err);

/* Frees the message's storage. */
void tlsock__err_free(struct tlsock__err *err);

/* The RFC name of a TLS alert description ("unknown_ca"), "unknown alert" if unknown. */
const char *tlsock__alert_name(int description);

/* ---- time (clock.c) -------------------------------------------------------------------------- */

/* Monotonic nanoseconds. */
int64_t tlsock__now_ns(void);

/* Absolute deadline for a timeout in ms (0 meaning none, per the API): INT64_MAX if none. */
int64_t tlsock__deadline_after(int timeout_ms);

/* Wipes @p len bytes at @p p (explicit_bzero: not optimised away), then frees it; NULL does
 * nothing. For what holds secrets: serialized sessions, keys. (buffer.c) */
void tlsock__free_secret(void *p, size_t len);

/* ---- a byte queue (buffer.c) ----------------------------------------------------------------- */

/* Append at the end, take from the front. Zeroed is empty and holds no storage. */
struct tlsock__buf {
    unsigned char *data;
    size_t len; /* bytes stored */
    size_t off; /* bytes already taken from the front */
    size_t cap; /* 0 with data set: borrowed (see tlsock__buf_borrow) */
};
int tlsock__buf_append(struct tlsock__buf *b, const void *data, size_t len) TLSOCK__MUST_CHECK;
/* Puts @p len bytes in front of what is stored; 0 or TLSOCK_ENOMEM. */
int tlsock__buf_prepend(struct tlsock__buf *b, const void *data, size_t len) TLSOCK__MUST_CHECK;
size_t tlsock__buf_take(struct tlsock__buf *b, void *out, size_t cap);
/* Forgets the first @p n stored bytes (at most what is stored). */
void tlsock__buf_drop(struct tlsock__buf *b, size_t n);
/* Copies up to @p cap bytes from the front without taking them; returns how many. */
size_t tlsock__buf_peek(const struct tlsock__buf *b, void *out, size_t cap);
size_t tlsock__buf_pending(const struct tlsock__buf *b);
/* Room for at least @p cap bytes in all, allocated now (an exact size); 0 or TLSOCK_ENOMEM. */
int tlsock__buf_reserve(struct tlsock__buf *b, size_t cap) TLSOCK__MUST_CHECK;
void tlsock__buf_free(struct tlsock__buf *b);
/* Makes @p b (its storage freed) read @p len bytes of the caller's, until tlsock__buf_own(). */
void tlsock__buf_borrow(struct tlsock__buf *b, const void *data, size_t len);
/* Copies what is left of borrowed bytes into owned storage (nothing: no storage); else no-op. */
int tlsock__buf_own(struct tlsock__buf *b) TLSOCK__MUST_CHECK;
/* As tlsock__buf_own(), into the caller's malloc()ed @p storage of @p cap bytes when what is left
 * fits (true: @p b owns it now); false changes nothing. */
bool tlsock__buf_own_into(struct tlsock__buf *b, void *storage, size_t cap);

/* ---- host names (host.c) --------------------------------------------------------------------- */

/* True when @p host is an IPv4 or IPv6 literal. */
bool tlsock__is_ip_literal(const char *host);

#endif /* TLSOCK_BASE_H */
