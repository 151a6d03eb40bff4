/*
 * The server context of a listener or a libuv server, swappable while it accepts: an accept takes
 * a reference under the lock, a swap replaces the slot's reference under the same lock, so each
 * connection gets one whole context and keeps it (its own reference) for its life.
 */
#ifndef TLSOCK_DRIVE_CTX_SLOT_H
#define TLSOCK_DRIVE_CTX_SLOT_H

#include <pthread.h>

#include "base/base.h"

struct tlsock_ctx;

struct tlsock__ctx_slot {
    pthread_mutex_t lock;
    struct tlsock_ctx *ctx; /* referenced */
};

/*
 * Checks that @p ctx can serve (a server context that freezes without error); @p caller names
 * the function in the message. 0, TLSOCK_EINVAL (NULL, a client context) or the freeze's error,
 * with the thread's message set.
 */
int tlsock__server_ctx_ready(struct tlsock_ctx *ctx, const char *caller) TLSOCK__MUST_CHECK;
/* Takes a reference on @p ctx (already checked ready) into a new slot. */
void tlsock__ctx_slot_init(struct tlsock__ctx_slot *slot, struct tlsock_ctx *ctx);
/* A reference on the current context, for one new connection; the caller frees it. */
struct tlsock_ctx *tlsock__ctx_slot_get(struct tlsock__ctx_slot *slot);
/*
 * Checks @p ctx as tlsock__server_ctx_ready() does, then puts a reference on it in the slot and
 * drops the old one; on an error the slot is unchanged.
 */
int tlsock__ctx_slot_set(struct tlsock__ctx_slot *slot, struct tlsock_ctx *ctx,
                         const char *caller) TLSOCK__MUST_CHECK;
/* Drops the slot's reference; the slot is unusable afterwards. */
void tlsock__ctx_slot_destroy(struct tlsock__ctx_slot *slot);

#endif /* TLSOCK_DRIVE_CTX_SLOT_H */
