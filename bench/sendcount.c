/*
 * Counting tlsock's send calls without touching the library: the bench is linked with
 * -Wl,--wrap=send and -Wl,--wrap=sendmsg (GnuTLS's vector push hands several records to one
 * sendmsg), so the static library's calls to them land here first. Only references
 * resolved at this link are wrapped; OpenSSL's own socket writes (the raw baseline) come from
 * the shared libcrypto and are counted by a BIO callback in side_raw.c instead.
 */
#include <sys/socket.h>
#include <sys/types.h>

#include "bench.h"

_Thread_local uint64_t bench_send_calls;

ssize_t __real_send(int fd, const void *buf, size_t len, int flags);
ssize_t __wrap_send(int fd, const void *buf, size_t len, int flags);
ssize_t __real_sendmsg(int fd, const struct msghdr *msg, int flags);
ssize_t __wrap_sendmsg(int fd, const struct msghdr *msg, int flags);

ssize_t __wrap_send(int fd, const void *buf, size_t len, int flags)
{
    bench_send_calls++;
    return __real_send(fd, buf, len, flags);
}

ssize_t __wrap_sendmsg(int fd, const struct msghdr *msg, int flags)
{
    bench_send_calls++;
    return __real_sendmsg(fd, msg, flags);
}
