/*
 * The blocking driver: the public blocking API (connection.c, listener.c, detach.c, stdio.c) on
 * top of the core's non-blocking steps. Its one loop (drive.c) is "step; on a WANT code, poll the
 * socket for the time left until the deadline; step again". Connections without a socket (user
 * callbacks, memory mode) get the WANT code back: their transport decides when to retry.
 */
#ifndef TLSOCK_DRIVE_BLOCK_H
#define TLSOCK_DRIVE_BLOCK_H

#include "core/core.h"

/* One step of an operation; @p arg is the operation's own state. */
typedef int (*tlsock__step_fn)(struct tlsock_conn *conn, void *arg);

/*
 * Calls @p step until it returns something other than a WANT code, waiting on the connection's
 * socket in between, until @p deadline_ns; then returns @p timeout_code. Does not settle.
 */
int tlsock__drive(struct tlsock_conn *conn, tlsock__step_fn step, void *arg, int64_t deadline_ns,
                  int timeout_code) TLSOCK__MUST_CHECK;

/* Runs the handshake if it is not done yet, bounded by the handshake deadline; settled. */
int tlsock__block_handshake(struct tlsock_conn *conn) TLSOCK__MUST_CHECK;
/* Reads application data, bounded by the operation deadline; settled. */
int tlsock__block_read(struct tlsock_conn *conn, void *buf, size_t len,
                       size_t *nread) TLSOCK__MUST_CHECK;
/* Sends close_notify once, until @p deadline_ns; settled. */
int tlsock__block_close_notify(struct tlsock_conn *conn, int64_t deadline_ns) TLSOCK__MUST_CHECK;

#endif /* TLSOCK_DRIVE_BLOCK_H */
