/*
 * A growable byte queue: append at the end, take from the front. The transport's input (preread,
 * fed ciphertext) and output (coalesced records, memory mode) and the application data a detach
 * kept are such queues.
 */
#include <stdlib.h>
#include <string.h>

#include "base.h"

enum { BUF_MIN_CAP = 4096 };

/*
 * Borrowed storage is marked by cap 0 with data set: it is the lender's, so it is never grown,
 * moved into or freed; it becomes owned before anything is appended.
 */
static bool borrowed(const struct tlsock__buf *b)
{
    return b->cap == 0 && b->data != NULL;
}

void tlsock__buf_borrow(struct tlsock__buf *b, const void *data, size_t len)
{
    tlsock__buf_free(b);
    b->data = (unsigned char *)data; /* only ever read while borrowed */
    b->len = len;
}

int tlsock__buf_own(struct tlsock__buf *b)
{
    struct tlsock__buf lent = *b;
    size_t n = tlsock__buf_pending(&lent);

    if (!borrowed(b)) {
        return 0;
    }
    memset(b, 0, sizeof(*b));
    if (n == 0) {
        return 0;
    }
    return tlsock__buf_append(b, lent.data + lent.off, n);
}

bool tlsock__buf_own_into(struct tlsock__buf *b, void *storage, size_t cap)
{
    size_t n = tlsock__buf_pending(b);

    if (!borrowed(b) || n == 0 || n > cap) {
        return false;
    }
    memcpy(storage, b->data + b->off, n);
    *b = (struct tlsock__buf){.data = storage, .len = n, .off = 0, .cap = cap};
    return true;
}

/* Makes room for @p more bytes after those stored (owned storage, front space reused first). */
static int make_room(struct tlsock__buf *b, size_t more)
{
    if (borrowed(b)) {
        int rc = tlsock__buf_own(b);
        if (rc != 0) {
            return rc;
        }
    }
    if (b->off > 0 && b->len + more > b->cap) {
        /* Reuse the space already taken from the front before growing. */
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    if (b->len + more > b->cap) {
        size_t cap = b->cap > 0 ? b->cap : BUF_MIN_CAP;
        while (cap < b->len + more) {
            cap *= 2;
        }
        return tlsock__buf_reserve(b, cap);
    }
    return 0;
}

int tlsock__buf_append(struct tlsock__buf *b, const void *data, size_t len)
{
    if (len == 0) {
        return 0;
    }
    int rc = make_room(b, len);
    if (rc != 0) {
        return rc;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

int tlsock__buf_prepend(struct tlsock__buf *b, const void *data, size_t len)
{
    size_t kept = tlsock__buf_pending(b);

    if (len == 0) {
        return 0;
    }
    int rc = make_room(b, len);
    if (rc != 0) {
        return rc;
    }
    /* make_room left the stored bytes at off; slide them up and put the new ones first. */
    memmove(b->data + b->off + len, b->data + b->off, kept);
    memcpy(b->data + b->off, data, len);
    b->len += len;
    return 0;
}

int tlsock__buf_reserve(struct tlsock__buf *b, size_t cap)
{
    if (borrowed(b) || cap <= b->cap) {
        return 0;
    }
    unsigned char *grown = realloc(b->data, cap);
    if (grown == NULL) {
        return TLSOCK_ENOMEM;
    }
    b->data = grown;
    b->cap = cap;
    return 0;
}

size_t tlsock__buf_peek(const struct tlsock__buf *b, void *out, size_t cap)
{
    size_t n = tlsock__buf_pending(b);

    if (n > cap) {
        n = cap;
    }
    if (n > 0) {
        memcpy(out, b->data + b->off, n);
    }
    return n;
}

void tlsock__buf_drop(struct tlsock__buf *b, size_t n)
{
    size_t pending = tlsock__buf_pending(b);

    b->off += n < pending ? n : pending;
    if (b->off == b->len) {
        b->off = 0;
        b->len = 0;
    }
}

size_t tlsock__buf_take(struct tlsock__buf *b, void *out, size_t cap)
{
    size_t n = tlsock__buf_peek(b, out, cap);

    tlsock__buf_drop(b, n);
    return n;
}

size_t tlsock__buf_pending(const struct tlsock__buf *b)
{
    return b->len - b->off;
}

void tlsock__free_secret(void *p, size_t len)
{
    if (p != NULL) {
        explicit_bzero(p, len);
        free(p);
    }
}

void tlsock__buf_free(struct tlsock__buf *b)
{
    if (!borrowed(b)) {
        free(b->data);
    }
    memset(b, 0, sizeof(*b));
}
