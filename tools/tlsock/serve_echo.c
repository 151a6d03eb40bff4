/*
 * Echo mode: every byte goes back as it arrives. Writing exactly what one read returned keeps
 * the echo prompt (no waiting for a line or a full buffer).
 */
#include <stdio.h>

#include "cli.h"
#include "serve.h"

#define ECHO_BUF_SIZE 16384

int cli_serve_echo(struct tlsock_conn *conn, const char *peer)
{
    char buf[ECHO_BUF_SIZE];
    char what[SERVE_PEER_SIZE + 16];
    size_t nread = 0;
    int err = 0;

    for (;;) {
        err = tlsock_read(conn, buf, sizeof(buf), &nread);
        if (err != 0) {
            snprintf(what, sizeof(what), "%s: read", peer);
            break;
        }
        err = tlsock_write(conn, buf, nread);
        if (err != 0) {
            snprintf(what, sizeof(what), "%s: write", peer);
            break;
        }
    }
    /* The peer's close_notify is the one clean end; tlsock_close() answers it with ours. */
    if (err == TLSOCK_ECLOSED) {
        err = 0;
    } else {
        cli_error(what, err, tlsock_conn_errmsg(conn));
    }
    return err;
}
