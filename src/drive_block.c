/*
 * The blocking driver: "step; on WANT, poll the fd for the time left until the deadline".
 * The core and the implementations never wait; this is the only loop that does.
 */
#include <poll.h>

#include "internal.h"

/* Only socket transports are waited on; user and memory transports get the WANT code back. */
static bool on_socket(const struct tlsock_conn *conn)
{
    return conn->transport == TLSOCK__TRANSPORT_FD ||
           conn->transport == TLSOCK__TRANSPORT_FD_CALLBACKS;
}

int tlsock__drive(struct tlsock_conn *conn, tlsock__step_fn step, void *arg, int64_t deadline_ns,
                  int timeout_code)
{
    int rc;

    /* Callbacks may ask for it (tlsock_conn_op_deadline_ms) to bound their own waiting. */
    conn->op_deadline_ns = deadline_ns;
    for (;;) {
        rc = step(conn, arg);
        if ((rc != TLSOCK_EWANT_READ && rc != TLSOCK_EWANT_WRITE) || !on_socket(conn)) {
            break;
        }
        short events = rc == TLSOCK_EWANT_READ ? POLLIN : POLLOUT;
        rc = tlsock__wait_fd(conn->fd, events, deadline_ns, &conn->err);
        if (rc == TLSOCK_ETIMEDOUT) {
            rc = tlsock__fail(&conn->err, timeout_code, "%s: no progress before the deadline",
                              timeout_code == TLSOCK_EHANDSHAKE_TIMEOUT ? "TLS handshake timed out"
                                                                        : "timed out");
        }
        if (rc != 0) {
            break;
        }
    }
    conn->op_deadline_ns = INT64_MAX;
    return rc;
}
