/* Session tickets of server contexts (include/tlsock.h, "Session tickets"; docs/tickets.md). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "objects.h"

enum { PERIOD_MAX = 7 * 86400, PERIOD_DEFAULT = TLSOCK__TICKET_LIFETIME_DEFAULT };

/* A server setter's start: the usual checks, then the role. */
static int server_setter_begin(struct tlsock_ctx *ctx)
{
    int rc = tlsock__ctx_setter_begin(ctx);

    if (rc == 0 && ctx->role != TLSOCK_SERVER) {
        rc = tlsock__fail(&ctx->err, TLSOCK_EINVAL, "session tickets are set on server contexts");
    }
    return rc;
}

int tlsock_ctx_set_tickets(struct tlsock_ctx *ctx, bool on)
{
    int rc = server_setter_begin(ctx);

    if (rc == 0) {
        ctx->tickets.off = !on;
    }
    return rc;
}

int tlsock_ctx_set_ticket_lifetime(struct tlsock_ctx *ctx, unsigned seconds)
{
    int rc = server_setter_begin(ctx);

    if (rc == 0 && (seconds < 1 || seconds > PERIOD_MAX)) {
        rc = tlsock__fail(&ctx->err, TLSOCK_EINVAL,
                          "ticket lifetime must be 1 to 604800 seconds (RFC 8446 4.6.1)");
    }
    if (rc == 0) {
        ctx->tickets.lifetime = seconds;
    }
    return rc;
}

int tlsock_ctx_set_ticket_keys_file(struct tlsock_ctx *ctx, const char *path)
{
    int rc = server_setter_begin(ctx);

    if (rc == 0 && path == NULL) {
        rc = tlsock__fail(&ctx->err, TLSOCK_EINVAL, "ticket key file path is NULL");
    }
    if (rc == 0) {
        rc = tlsock__ticket_keys_load(&ctx->tickets, path, &ctx->err);
    }
    return rc;
}

static bool random_bytes(unsigned char *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = getrandom(buf + got, len - got, 0);
        if (n < 0 && errno != EINTR) {
            return false;
        }
        got += n > 0 ? (size_t)n : 0;
    }
    return true;
}

int tlsock__ctx_tickets_freeze(struct tlsock_ctx *ctx, struct tlsock__err *err)
{
    struct tlsock__tickets *t = &ctx->tickets;

    if (!t->off && !t->have_secret) {
        if (!random_bytes(t->secret, sizeof(t->secret))) {
            return tlsock__fail(err, TLSOCK_ECONFIG, "cannot make a ticket key: %s",
                                strerror(errno));
        }
        t->period = t->lifetime;
        t->have_secret = true;
    }
    /* Set before any key is derived: keys are derived for connections, made after the freeze. */
    if (!t->off && ctx->verify_mode != TLSOCK_VERIFY_NONE) {
        if (tlsock__sessions_verify_digest(ctx, t->binding) != 0) {
            return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory binding the ticket keys");
        }
        t->bound = true;
    }
    if (!t->off && t->cache == NULL && !tlsock__ticket_cache_new(t)) {
        return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory for the ticket key cache");
    }
    return ctx->impl->ctx_set_tickets(ctx->native, t, err);
}

int tlsock_ticket_keys_write(const char *path, unsigned period_s)
{
    unsigned char secret[TLSOCK__TICKET_SECRET_SIZE];
    char text[128];
    char tmp[4096];
    int rc = 0;

    if (path == NULL || period_s > PERIOD_MAX) {
        return tlsock__fail(NULL, TLSOCK_EINVAL,
                            "ticket key file: path is NULL or period is over 604800 seconds");
    }
    if (snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path) >= (int)sizeof(tmp)) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "ticket key file path is too long");
    }
    if (!random_bytes(secret, sizeof(secret))) {
        return tlsock__fail(NULL, TLSOCK_ECONFIG, "cannot make a ticket key: %s", strerror(errno));
    }
    tlsock__ticket_keys_format(secret, period_s == 0 ? PERIOD_DEFAULT : period_s, text);
    explicit_bzero(secret, sizeof(secret));
    int fd = mkstemp(tmp); /* mode 0600 */
    if (fd < 0) {
        rc = tlsock__fail(NULL, TLSOCK_ECONFIG, "cannot create %s: %s", tmp, strerror(errno));
        goto wipe;
    }
    size_t len = strlen(text);
    bool ok = write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
    int saved = errno;
    if (close(fd) != 0 || !ok || rename(tmp, path) != 0) {
        rc = tlsock__fail(NULL, TLSOCK_ECONFIG, "cannot write ticket key file %s: %s", path,
                          strerror(ok ? errno : saved));
        unlink(tmp);
    }
wipe:
    explicit_bzero(text, sizeof(text));
    return rc;
}
