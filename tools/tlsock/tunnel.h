/*
 * `tlsock tunnel` internals: the listener of one loop (cmd_tunnel.c) and what it hands each
 * accepted client to (tunnel_connect.c: the connection to the target, then the forwarding
 * between the two, tunnel_pair.h). Everything here runs on the loop's thread.
 */
#ifndef TLSOCK_CLI_TUNNEL_H
#define TLSOCK_CLI_TUNNEL_H

#include <stdbool.h>
#include <stdint.h>

#include <tlsock.h>
#include <tlsock/uv.h>

#include "cli.h"
#include "loops.h"

/* How every client is forwarded; fixed once the tunnel runs. */
struct tunnel_settings {
    char connect_host[CLI_HOST_MAX];
    uint16_t connect_port;
    char target[CLI_HOST_MAX + 16]; /* --connect HOST:PORT, for messages */
    struct tlsock_ctx *client_ctx;  /* --tls-connect: TLS to the target; NULL: plaintext */
    const char *servername;         /* --servername; NULL: from the host */
    bool accept_tls;                /* clients speak TLS */
    int handshake_timeout_ms;       /* accepted TLS clients */
    int connect_timeout_ms;         /* TCP connect, and TLS handshake, to the target */
    int idle_timeout_ms;            /* 0: none */
    bool verbose;
};

/* The listener of one loop and its pairs. */
struct tunnel_loop {
    const struct tunnel_settings *settings;
    struct cli_loop *loop;
    struct tlsock_uv_server *server; /* clients speak TLS */
    uv_tcp_t *listener;              /* clients speak plaintext; freed when closed */
    struct tunnel_pair *pairs;       /* open pairs, for a stop */
};

/* The options of the TLS server that accepts clients (callbacks, timeouts, user pointer). */
void tunnel_accept_opts(struct tunnel_loop *tl, struct tlsock_uv_opts *opts);

/* A plaintext client accepted on @p tcp (initialised on the loop, allocated with malloc()). */
void tunnel_start_plain(struct tunnel_loop *tl, uv_tcp_t *tcp);

/* A close callback for handles allocated with malloc(). */
void tunnel_free_handle(uv_handle_t *handle);

/* Closes every pair of @p loop's tunnel_loop at once (a stop). */
void tunnel_close_all(struct cli_loop *loop);

#endif /* TLSOCK_CLI_TUNNEL_H */
