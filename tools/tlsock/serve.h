/*
 * `tlsock serve` internals: the server of one loop (cmd_serve.c), one client connection on it
 * (serve_conn.c) and what each mode does with the client's data (serve_echo.c, serve_http.c).
 * Everything here runs on the loop's thread.
 */
#ifndef TLSOCK_CLI_SERVE_H
#define TLSOCK_CLI_SERVE_H

#include <stdbool.h>
#include <stddef.h>

#include <tlsock.h>
#include <tlsock/uv.h>

#include "cli.h"
#include "loops.h"

enum serve_mode {
    SERVE_ECHO,
    SERVE_HTTP,
};

/* How every connection is served; fixed once the server runs. */
struct serve_settings {
    enum serve_mode mode;
    bool verbose;
    bool once;
    int handshake_timeout_ms; /* the bound given to the server, for log messages */
};

/* Reading stops while more than this waits to be sent to a client, and resumes below LOW. */
#define SERVE_QUEUE_HIGH (256 * 1024)
#define SERVE_QUEUE_LOW  (64 * 1024)

/* Longest HTTP request head (request line and headers) accepted. */
#define SERVE_HTTP_HEAD_MAX 8192

/* The server of one loop; the user pointer of its tlsock_uv_server. */
struct serve_loop {
    const struct serve_settings *settings;
    struct cli_loop *loop; /* NULL with --once, which runs no stop machinery */
    struct tlsock_uv_server *server;
    struct serve_conn *conns; /* open connections, for a stop */
    bool once_taken;          /* --once: the one connection (or failure) has come */
    int once_result;          /* --once: how it went */
};

/* One client after its handshake; the user pointer of its tlsock_uv_conn. */
struct serve_conn {
    struct serve_loop *owner;
    struct tlsock_uv_conn *uv;
    struct serve_conn *prev;
    struct serve_conn *next;
    char peer[CLI_PEER_SIZE];
    bool paused;  /* reading stopped: too much waits to be sent */
    bool closing; /* tlsock_uv_close() was called */
    int err;      /* what ended the connection, 0 for a clean end */
    /* HTTP: the request head read so far, in SERVE_HTTP_HEAD_MAX bytes allocated with it. */
    size_t used;
    char head[];
};

/* The options every served connection gets (callbacks, timeouts, user pointer). */
void serve_conn_opts(struct serve_loop *owner, struct tlsock_uv_opts *opts);

/* Closes every open connection of @p loop's serve_loop (a stop), with close_notify. */
void serve_close_all(struct cli_loop *loop);

/* Sends a copy of @p len bytes; stops reading while the queue is long. Returns 0 or the error. */
int serve_conn_send(struct serve_conn *sc, const void *data, size_t len);

/* Ends the connection: queued data is sent, then close_notify. @p err 0 for a clean end. */
void serve_conn_end(struct serve_conn *sc, int err);

/* Logs "<peer>: <what>: <error>: <detail>" with the connection's error message. */
void serve_conn_log_error(struct serve_conn *sc, const char *what, int err);

/* Echo mode: data and the end of the client's stream. */
void serve_echo_data(struct serve_conn *sc, const void *data, size_t len);
void serve_echo_event(struct serve_conn *sc, int code);

/* HTTP mode: data and the end of the client's stream. */
void serve_http_data(struct serve_conn *sc, const void *data, size_t len);
void serve_http_event(struct serve_conn *sc, int code);

#endif /* TLSOCK_CLI_SERVE_H */
