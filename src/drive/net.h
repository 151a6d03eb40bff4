/*
 * Plain TCP for the drivers: resolving and connecting with a deadline, waiting on a socket,
 * closing gracefully, and listening sockets (the libuv driver uses the last two as well).
 */
#ifndef TLSOCK_DRIVE_NET_H
#define TLSOCK_DRIVE_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "base/base.h"

/* Resolves @p host and connects to each address in turn until @p deadline_ns; non-blocking fd. */
int tlsock__tcp_connect(const char *host, uint16_t port, int64_t deadline_ns, int *fd_out,
                        struct tlsock__err *err) TLSOCK__MUST_CHECK;
/*
 * Reports getaddrinfo()'s failure @p gai_rc for @p host: TLSOCK_ENOMEM when it ran out of memory
 * (EAI_MEMORY), else TLSOCK_ERESOLVE.
 */
int tlsock__resolve_fail(struct tlsock__err *err, const char *host, int gai_rc);
/* Waits for @p events on @p fd until @p deadline_ns: 0, TLSOCK_ETIMEDOUT or TLSOCK_ESYS. */
int tlsock__wait_fd(int fd, short events, int64_t deadline_ns, struct tlsock__err *err);
/* Half-closes, drains unread input for a short bounded time, then closes @p fd. */
void tlsock__graceful_close(int fd);

/*
 * A listening socket (listen.c) on @p host (NULL: every address, dual stack when possible) and
 * @p port, non-blocking, close-on-exec and with TCP_NODELAY; @p reuseport sets SO_REUSEPORT
 * before bind. On failure the thread's message says why.
 */
int tlsock__listen_socket(const char *host, uint16_t port, int backlog, bool reuseport,
                          int *fd_out) TLSOCK__MUST_CHECK;
/* Gives a socket accepted from such a listener TCP_NODELAY where it does not inherit it. */
void tlsock__accepted_nodelay(int fd);
/*
 * Makes the kernel acknowledge the next segment that arrives on TCP socket @p fd at once, not
 * after its delayed-ACK timer (TCP_QUICKACK, Linux; elsewhere nothing). Best effort: a socket
 * that is no TCP socket keeps its ACKs as they were.
 */
void tlsock__quick_ack(int fd);
/* The port a bound socket got (the kernel picks one for port 0); 0 if unknown. */
uint16_t tlsock__bound_port(int fd);

#endif /* TLSOCK_DRIVE_NET_H */
