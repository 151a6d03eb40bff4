/*
 * The blocking driver's one loop: "step; on WANT, poll the socket for the time left until the
 * deadline". The core and the implementations never wait; this loop and net.c's waits do.
 */
#include <poll.h>

#include "block.h"
#include "drive/net.h"

/*
 * A server's session store has not answered (core/store.c): wait for its done, on any transport,
 * until the look-up's bound or the operation's deadline; then the get is a miss, and the
 * handshake goes on as a full one (the operation's deadline, passed, then fails it at its next
 * wait).
 */
static void wait_store(struct tlsock_conn *conn, int64_t deadline_ns)
{
    int64_t until = tlsock__conn_store_deadline(conn);

    if (!tlsock__lookup_wait(conn, until < deadline_ns ? until : deadline_ns)) {
        tlsock__conn_store_give_up(conn);
    }
}

int tlsock__drive(struct tlsock_conn *conn, tlsock__step_fn step, void *arg, int64_t deadline_ns,
                  int timeout_code)
{
    struct tlsock__err *err = tlsock__conn_err(conn);
    int rc;

    /* Callbacks may ask for it (tlsock_conn_op_deadline_ms) to bound their own waiting. */
    tlsock__conn_set_op_deadline(conn, deadline_ns);
    for (;;) {
        rc = step(conn, arg);
        if (rc == TLSOCK_EWANT_READ && tlsock__conn_store_waiting(conn)) {
            wait_store(conn, deadline_ns);
            continue;
        }
        int fd = tlsock__conn_socket(conn);
        if ((rc != TLSOCK_EWANT_READ && rc != TLSOCK_EWANT_WRITE) || fd < 0) {
            break;
        }
        short events = rc == TLSOCK_EWANT_READ ? POLLIN : POLLOUT;
        rc = tlsock__wait_fd(fd, events, deadline_ns, err);
        if (rc == TLSOCK_ETIMEDOUT) {
            rc = tlsock__fail(err, timeout_code, "%s: no progress before the deadline",
                              timeout_code == TLSOCK_EHANDSHAKE_TIMEOUT ? "TLS handshake timed out"
                                                                        : "timed out");
        }
        if (rc != 0) {
            break;
        }
    }
    tlsock__conn_set_op_deadline(conn, INT64_MAX);
    return rc;
}
