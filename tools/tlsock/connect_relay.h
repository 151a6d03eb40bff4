/*
 * The data phase of `tlsock connect`: stdin to the peer, the peer to stdout.
 */
#ifndef TLSOCK_CLI_CONNECT_RELAY_H
#define TLSOCK_CLI_CONNECT_RELAY_H

#include <stdbool.h>

#include <tlsock.h>

struct cli_relay_params {
    int io_timeout_ms;   /* bound on each write to the peer; TLSOCK_NO_TIMEOUT for none */
    int idle_timeout_ms; /* longest wait for data from the peer; TLSOCK_NO_TIMEOUT for none */
    int close_wait_ms;   /* after stdin ends, how long to wait for the peer's close_notify */
    bool quiet;          /* no notices on stderr */
};

/*
 * Relays until the peer closes or stdin ends and the peer then closes (or close_wait_ms passes).
 * Returns 0 on a clean end, else the tlsock error (already reported on stderr); TLSOCK_ETIMEDOUT
 * when the peer sent nothing for idle_timeout_ms.
 */
int cli_relay(struct tlsock_conn *conn, const struct cli_relay_params *params);

#endif /* TLSOCK_CLI_CONNECT_RELAY_H */
