/* tlsock connect's session options (connect_session.c). */
#ifndef TLSOCK_CLI_CONNECT_SESSION_H
#define TLSOCK_CLI_CONNECT_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "tlsock.h"

/* --sess-in: imports the session in @p path into @p ctx; a warning when it cannot. */
void cli_session_load(struct tlsock_ctx *ctx, const char *path);
/* --sess-out: writes @p conn's session to @p path (mode 0600); a warning when it cannot. */
void cli_session_save(struct tlsock_conn *conn, const char *path);
/* Prints "connection N: resumed yes|no" on stderr. */
void cli_session_report(struct tlsock_conn *conn, int number);
/*
 * --reconnect: one more connection, its report, a short wait for TLS 1.3 tickets, the session
 * saved to @p sess_out (NULL: not) and close_notify. 0 or the connection's error (printed).
 */
int cli_session_reconnect(struct tlsock_ctx *ctx, const char *host, uint16_t port,
                          const struct tlsock_opts *opts, int number, const char *sess_out);

#endif
