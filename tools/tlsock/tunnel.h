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

#include <pthread.h>

#include "cli.h"
#include "loops.h"

/*
 * The context of the connections to the target (--tls-connect). Every loop reads it when it
 * connects, and SIGHUP replaces it: a lock keeps a reader from taking one being freed.
 */
struct tunnel_target_ctx {
    pthread_mutex_t lock;
    struct tlsock_ctx *ctx; /* NULL: plaintext to the target */
};

/* The target context with a reference for the caller (tlsock_ctx_free()), or NULL. */
struct tlsock_ctx *tunnel_target_ctx_get(struct tunnel_target_ctx *t);

/* How every client is forwarded; fixed once the tunnel runs but for the target context. */
struct tunnel_settings {
    char connect_host[CLI_HOST_MAX];
    uint16_t connect_port;
    char target[CLI_HOST_MAX + 16];   /* --connect HOST:PORT, for messages */
    bool tls_connect;                 /* --tls-connect: TLS to the target */
    struct tunnel_target_ctx *client; /* its context, when tls_connect */
    const char *servername;           /* --servername; NULL: from the host */
    bool accept_tls;                  /* clients speak TLS */
    int handshake_timeout_ms;         /* accepted TLS clients */
    int connect_timeout_ms;           /* TCP connect, and TLS handshake, to the target */
    int idle_timeout_ms;              /* 0: none */
    bool verbose;
};

struct tunnel_chunk; /* tunnel_pair.h */

/* The listener of one loop, its pairs, and the chunks they move data in. */
struct tunnel_loop {
    const struct tunnel_settings *settings;
    struct cli_loop *loop;
    struct tlsock_uv_server *server; /* clients speak TLS */
    uv_tcp_t *listener;              /* clients speak plaintext; freed when closed */
    struct tunnel_pair *pairs;       /* open pairs, for a stop */
    struct tunnel_chunk *spare;      /* free chunks, kept while a pair is open */
    unsigned nspare;                 /* at most TUNNEL_SPARE_MAX */
    /* Sides with TLS records gathered, forwarded by the check handle at the end of the loop's
     * turn (tunnel_side.c); the handle is made on first use and closed with the last pair. */
    struct tunnel_side *flushing;
    uv_check_t *flush;
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
