/*
 * A growable byte queue: append at the end, take from the front. Used by memory mode (both
 * directions) and by detach (application data that arrived before close_notify).
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

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

int tlsock__buf_append(struct tlsock__buf *b, const void *data, size_t len)
{
    if (len == 0) {
        return 0;
    }
    if (borrowed(b)) {
        int rc = tlsock__buf_own(b);
        if (rc != 0) {
            return rc;
        }
    }
    if (b->off > 0 && b->len + len > b->cap) {
        /* Reuse the space already taken from the front before growing. */
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    if (b->len + len > b->cap) {
        size_t cap = b->cap > 0 ? b->cap : BUF_MIN_CAP;
        while (cap < b->len + len) {
            cap *= 2;
        }
        unsigned char *grown = realloc(b->data, cap);
        if (grown == NULL) {
            return TLSOCK_ENOMEM;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

size_t tlsock__buf_take(struct tlsock__buf *b, void *out, size_t cap)
{
    size_t n = tlsock__buf_pending(b);

    if (n > cap) {
        n = cap;
    }
    if (n == 0) {
        return 0;
    }
    memcpy(out, b->data + b->off, n);
    b->off += n;
    if (b->off == b->len) {
        b->off = 0;
        b->len = 0;
    }
    return n;
}

size_t tlsock__buf_pending(const struct tlsock__buf *b)
{
    return b->len - b->off;
}

void tlsock__buf_free(struct tlsock__buf *b)
{
    if (!borrowed(b)) {
        free(b->data);
    }
    memset(b, 0, sizeof(*b));
}
