/*
 * `tlsock connect --starttls PROTO`: the plaintext dialogue that comes before the TLS handshake.
 */
#ifndef TLSOCK_CLI_STARTTLS_H
#define TLSOCK_CLI_STARTTLS_H

#include "plain_io.h"

/*
 * SMTP (RFC 5321, RFC 3207): reads the 220 greeting, sends EHLO, checks that the 250 reply
 * offers STARTTLS, sends STARTTLS and expects 220. Every wait is bounded by the reader's
 * deadline. Bytes read past the last reply stay in @p reader (cli_line_reader_leftover()) for
 * TLS. @p target names the server in messages. Failures are reported on stderr with the
 * server's reply; returns 0, TLSOCK_EPROTO (unexpected reply), TLSOCK_ETIMEDOUT,
 * TLSOCK_ETRUNCATED (the server closed) or TLSOCK_ESYS.
 */
int cli_starttls_smtp(struct cli_line_reader *reader, const char *target);

#endif /* TLSOCK_CLI_STARTTLS_H */
