/*
 * Counting system calls per thread, on every side alike: this executable defines the libc
 * functions that make the socket, poll and I/O system calls, and each definition counts the call
 * in a thread-local counter and calls libc's own (found with dlsym(RTLD_NEXT)). The dynamic
 * linker binds every reference to these names to the executable's definition first, so the
 * count covers tlsock's calls (the static library is linked into this executable), the raw
 * baselines' calls made inside the shared libcrypto and libgnutls (OpenSSL's socket BIO, GnuTLS's
 * own push and pull), the bench's own socket code and libuv's. A `--wrap` link option would only
 * reach the references resolved in this link, never the shared libraries'.
 *
 * What is not counted: system calls that libc makes inside itself (malloc's brk and mmap, stdio)
 * and functions not wrapped here; none of them is on a measured path of the blocking cases, where
 * strace -c shows only the calls below (docs/BENCHMARKS.md, "Checking the counts").
 */
#undef _FORTIFY_SOURCE /* this file defines read() and recv(), which fortify would inline */

#include <dlfcn.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bench.h"

_Thread_local uint64_t bench_syscalls;
_Thread_local uint64_t bench_send_calls;

/* libc's definition of @p name, looked up once; racing threads store the same pointer. */
static void *next(_Atomic(void *) *slot, const char *name)
{
    void *fn = atomic_load_explicit(slot, memory_order_relaxed);

    if (fn == NULL) {
        fn = dlsym(RTLD_NEXT, name);
        if (fn == NULL) {
            fprintf(stderr, "tlsock-bench: no libc %s: %s\n", name, dlerror());
            abort();
        }
        atomic_store_explicit(slot, fn, memory_order_relaxed);
    }
    return fn;
}

/*
 * Defines @p name with return type @p ret, parameters @p params and arguments @p args, counting
 * the call (and as a send if @p send). The object pointer dlsym returns becomes a function
 * pointer through memcpy, which ISO C allows where a cast would not be.
 */
#define WRAP(ret, name, params, args, send)                                                        \
    ret name params                                                                                \
    {                                                                                              \
        static _Atomic(void *) slot;                                                               \
        void *sym = next(&slot, #name);                                                            \
        ret(*fn) params;                                                                           \
                                                                                                   \
        memcpy(&fn, &sym, sizeof(fn));                                                             \
        bench_syscalls++;                                                                          \
        bench_send_calls += (send);                                                                \
        return fn args;                                                                            \
    }

WRAP(ssize_t, read, (int fd, void *buf, size_t len), (fd, buf, len), 0)
WRAP(ssize_t, readv, (int fd, const struct iovec *iov, int n), (fd, iov, n), 0)
WRAP(ssize_t, recv, (int fd, void *buf, size_t len, int flags), (fd, buf, len, flags), 0)
WRAP(ssize_t, recvfrom,
     (int fd, void *buf, size_t len, int flags, struct sockaddr *addr, socklen_t *alen),
     (fd, buf, len, flags, addr, alen), 0)
WRAP(ssize_t, recvmsg, (int fd, struct msghdr *msg, int flags), (fd, msg, flags), 0)
WRAP(ssize_t, write, (int fd, const void *buf, size_t len), (fd, buf, len), 1)
WRAP(ssize_t, writev, (int fd, const struct iovec *iov, int n), (fd, iov, n), 1)
WRAP(ssize_t, send, (int fd, const void *buf, size_t len, int flags), (fd, buf, len, flags), 1)
WRAP(ssize_t, sendto,
     (int fd, const void *buf, size_t len, int flags, const struct sockaddr *addr, socklen_t alen),
     (fd, buf, len, flags, addr, alen), 1)
WRAP(ssize_t, sendmsg, (int fd, const struct msghdr *msg, int flags), (fd, msg, flags), 1)
WRAP(int, poll, (struct pollfd * fds, nfds_t n, int ms), (fds, n, ms), 0)
WRAP(int, select, (int n, fd_set *r, fd_set *w, fd_set *e, struct timeval *tv), (n, r, w, e, tv), 0)
/* libuv's loop (the async cases): its waits and its interest changes. */
WRAP(int, epoll_wait, (int epfd, struct epoll_event *ev, int n, int ms), (epfd, ev, n, ms), 0)
WRAP(int, epoll_pwait, (int epfd, struct epoll_event *ev, int n, int ms, const sigset_t *mask),
     (epfd, ev, n, ms, mask), 0)
WRAP(int, epoll_ctl, (int epfd, int op, int fd, struct epoll_event *ev), (epfd, op, fd, ev), 0)
WRAP(int, socket, (int domain, int type, int proto), (domain, type, proto), 0)
WRAP(int, connect, (int fd, const struct sockaddr *addr, socklen_t len), (fd, addr, len), 0)
WRAP(int, accept, (int fd, struct sockaddr *addr, socklen_t *len), (fd, addr, len), 0)
WRAP(int, accept4, (int fd, struct sockaddr *addr, socklen_t *len, int flags),
     (fd, addr, len, flags), 0)
WRAP(int, setsockopt, (int fd, int level, int name, const void *val, socklen_t len),
     (fd, level, name, val, len), 0)
WRAP(int, getsockopt, (int fd, int level, int name, void *val, socklen_t *len),
     (fd, level, name, val, len), 0)
WRAP(int, getsockname, (int fd, struct sockaddr *addr, socklen_t *len), (fd, addr, len), 0)
WRAP(int, getpeername, (int fd, struct sockaddr *addr, socklen_t *len), (fd, addr, len), 0)
WRAP(int, shutdown, (int fd, int how), (fd, how), 0)
WRAP(int, close, (int fd), (fd), 0)
WRAP(ssize_t, getrandom, (void *buf, size_t len, unsigned flags), (buf, len, flags), 0)
/* OpenSSL's random generator checks for a fork with getpid(), a system call since glibc 2.25. */
WRAP(pid_t, getpid, (void), (), 0)

/* fcntl() and ioctl() are variadic: their one optional argument is an int or a pointer. */
#define WRAP_VARIADIC(name, type)                                                                  \
    int name(int fd, type op, ...)                                                                 \
    {                                                                                              \
        static _Atomic(void *) slot;                                                               \
        void *sym = next(&slot, #name);                                                            \
        int (*fn)(int, type, ...);                                                                 \
        va_list ap;                                                                                \
        void *arg;                                                                                 \
                                                                                                   \
        va_start(ap, op);                                                                          \
        arg = va_arg(ap, void *);                                                                  \
        va_end(ap);                                                                                \
        memcpy(&fn, &sym, sizeof(fn));                                                             \
        bench_syscalls++;                                                                          \
        return fn(fd, op, arg);                                                                    \
    }

WRAP_VARIADIC(fcntl, int)
WRAP_VARIADIC(ioctl, unsigned long)
