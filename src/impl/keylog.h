/*
 * The key log (include/tlsock.h, "Key log"): where a context's lines go and how they are written,
 * shared by the core (which owns the sink and opens the file) and both implementations (which
 * hand over each secret as they learn it), so that the lines read the same on each.
 */
#ifndef TLSOCK_IMPL_KEYLOG_H
#define TLSOCK_IMPL_KEYLOG_H

#include <stdbool.h>
#include <stddef.h>

#include "base/base.h"

/*
 * A context's key log: owned by the core's context, read by its sessions (which it outlives).
 * Read-only once the context is frozen.
 */
struct tlsock__keylog {
    tlsock_keylog_fn fn; /* NULL: no callback */
    void *user;
    int fd; /* opened with O_APPEND, -1: no file */
};

/* An empty sink (no callback, no file). */
void tlsock__keylog_init(struct tlsock__keylog *kl);
/* Whether @p kl has anywhere to write to. */
bool tlsock__keylog_on(const struct tlsock__keylog *kl);

/*
 * Opens @p path for appending (created 0600), in @p *fd: 0, or TLSOCK_ECONFIG naming the path
 * (cannot be opened, not a regular file).
 */
int tlsock__keylog_open(const char *path, int *fd, struct tlsock__err *err);

/*
 * Writes the line "@p label <client random> <secret>" in lowercase hex to the callback and the
 * file of @p kl. A label that is not one tlsock documents (the early-data secrets, say), or a
 * random or secret of an unusual length, writes nothing: both implementations write the same set.
 */
void tlsock__keylog_secret(const struct tlsock__keylog *kl, const char *label,
                           const unsigned char *client_random, size_t random_len,
                           const unsigned char *secret, size_t secret_len);

/*
 * Writes a line an implementation formatted itself ("LABEL <hex> <hex>", OpenSSL's), through
 * tlsock__keylog_secret() so that it reads as every other; a line that does not parse is dropped.
 */
void tlsock__keylog_line(const struct tlsock__keylog *kl, const char *line);

#endif /* TLSOCK_IMPL_KEYLOG_H */
