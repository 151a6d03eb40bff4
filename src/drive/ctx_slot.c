/*
 * Swappable server contexts (ctx_slot.h), shared by tlsock_listener_set_ctx() and
 * tlsock_uv_server_set_ctx().
 */
#include "ctx_slot.h"

#include "core/core.h"

int tlsock__server_ctx_ready(struct tlsock_ctx *ctx, const char *caller)
{
    struct tlsock__err err = {0};
    int rc;

    if (tlsock__ctx_role(ctx) != TLSOCK_SERVER) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "%s needs a server context", caller);
    }
    /* A server that cannot serve should fail here, not at its first client. */
    rc = tlsock__ctx_freeze(ctx, &err);
    tlsock__err_free(&err); /* the thread's message has it */
    return rc;
}

void tlsock__ctx_slot_init(struct tlsock__ctx_slot *slot, struct tlsock_ctx *ctx)
{
    pthread_mutex_init(&slot->lock, NULL);
    slot->ctx = tlsock_ctx_ref(ctx);
}

struct tlsock_ctx *tlsock__ctx_slot_get(struct tlsock__ctx_slot *slot)
{
    struct tlsock_ctx *ctx;

    pthread_mutex_lock(&slot->lock);
    ctx = tlsock_ctx_ref(slot->ctx);
    pthread_mutex_unlock(&slot->lock);
    return ctx;
}

int tlsock__ctx_slot_set(struct tlsock__ctx_slot *slot, struct tlsock_ctx *ctx, const char *caller)
{
    struct tlsock_ctx *old;
    int rc = tlsock__server_ctx_ready(ctx, caller);

    if (rc != 0) {
        return rc;
    }
    tlsock_ctx_ref(ctx);
    pthread_mutex_lock(&slot->lock);
    old = slot->ctx;
    slot->ctx = ctx;
    pthread_mutex_unlock(&slot->lock);
    /* Outside the lock: the last reference frees the implementation's context. */
    tlsock_ctx_free(old);
    return 0;
}

void tlsock__ctx_slot_destroy(struct tlsock__ctx_slot *slot)
{
    tlsock_ctx_free(slot->ctx);
    slot->ctx = NULL;
    pthread_mutex_destroy(&slot->lock);
}
