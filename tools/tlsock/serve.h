/*
 * `tlsock serve` internals: what one connection does, shared by the accept loop (cmd_serve.c)
 * and the per-connection handlers (serve_conn.c, serve_echo.c, serve_http.c).
 */
#ifndef TLSOCK_CLI_SERVE_H
#define TLSOCK_CLI_SERVE_H

#include <stdbool.h>

#include <tlsock.h>

enum serve_mode {
    SERVE_ECHO,
    SERVE_HTTP,
};

/* Longest "[address]:port" text for a peer, with room to spare. */
#define SERVE_PEER_SIZE 64

/* How every connection is served; fixed once the server runs. */
struct serve_settings {
    enum serve_mode mode;
    bool verbose;
    int handshake_timeout_ms; /* the bound given to accept, for log messages */
};

/*
 * Runs the handshake and the mode's protocol on @p conn and logs failures on stderr prefixed
 * with the peer's address. The caller closes @p conn. Returns 0 or the error that ended it.
 */
int cli_serve_conn(struct tlsock_conn *conn, const struct serve_settings *settings);

struct serve_pool;

/* Creates the pool of connection threads (copies @p settings); NULL when out of memory. */
struct serve_pool *serve_pool_new(const struct serve_settings *settings);

/* Serves @p conn in a new detached thread, or closes it when the pool is full. Takes @p conn. */
void serve_pool_dispatch(struct serve_pool *pool, struct tlsock_conn *conn);

/*
 * Lets running connections finish for a grace period, then shuts down the sockets of those
 * still open so that their threads end, waits for them (bounded) and frees the pool unless a
 * thread still uses it.
 */
void serve_pool_stop(struct serve_pool *pool);

/* Echoes every byte until the peer's close_notify (0) or an error. @p peer is for logs. */
int cli_serve_echo(struct tlsock_conn *conn, const char *peer);

/* Answers HTTP/1.x requests until the client closes or asks to (0), or an error. */
int cli_serve_http(struct tlsock_conn *conn, const char *peer, bool verbose);

#endif /* TLSOCK_CLI_SERVE_H */
