/*
 * Echo mode: every byte goes back as it arrives, in the pieces it arrived in (no waiting for a
 * line or a full buffer). A client that sends faster than it reads is slowed down by
 * serve_conn_send(), which stops reading while the echo waits to be sent.
 */
#include "serve.h"

void serve_echo_data(struct serve_conn *sc, const void *data, size_t len)
{
    int err = serve_conn_send(sc, data, len);

    if (err != 0) {
        serve_conn_log_error(sc, "write", err);
        serve_conn_end(sc, err);
    }
}

void serve_echo_event(struct serve_conn *sc, int code)
{
    /* The client's close_notify is the one clean end; closing answers it with ours. */
    if (code == TLSOCK_ECLOSED) {
        serve_conn_end(sc, 0);
    } else {
        serve_conn_log_error(sc, "read", code);
        serve_conn_end(sc, code);
    }
}
