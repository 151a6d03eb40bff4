/*
 * The event loops of the serving commands (serve, tunnel): one libuv loop per thread, all serving
 * one port. A TLS listener is loop 0's, which gives each client to the loop with the fewest
 * connections (tlsock_uv_serve_shared()); plaintext ones are a listener per loop with
 * SO_REUSEPORT, spread by the kernel. One stop for all of them on SIGINT or
 * SIGTERM, and one reload on SIGHUP: loop 0 builds the new server context from the options, as
 * at start, and swaps it into every loop's server (tlsock_uv_server_set_ctx() may be called from
 * any thread); a context that cannot be built leaves the old one serving. With --session-store,
 * the same reload of the server context (not of a tunnel's target) follows a ticket secret
 * replaced in Redis: the watcher thread that rewrote the key file wakes loop 0, which only reads
 * local files, never waiting for Redis.
 *
 * A stop runs on every loop, in its own thread: the command stops accepting and resets the
 * clients still in their TLS handshake (tlsock_uv_server_abort(): one that finished it would be
 * refused anyway), open connections get CLI_LOOP_GRACE_MS to finish on their own, then the
 * command closes them; a loop whose connections are still not gone CLI_LOOP_CLOSE_WAIT_MS later
 * is abandoned with a message.
 */
#ifndef TLSOCK_CLI_LOOPS_H
#define TLSOCK_CLI_LOOPS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define CLI_LOOP_GRACE_MS 1000
/* More than the 5 s that tlsock_uv_close() gives queued data by default. */
#define CLI_LOOP_CLOSE_WAIT_MS 6000

struct cli_loop;
struct cli_shared_options;
struct tlsock_ctx;
struct tlsock_uv_opts;
struct tlsock_uv_server;

/* What a command keeps and does on each of its loops. */
struct cli_loop_ops {
    size_t user_size;      /* cli_loops_serve(): each loop's user is that many zeroed bytes */
    const char *nomem_msg; /* cli_loops_serve(): the error when they cannot be allocated */
    /*
     * Sets up the loop's user for @p settings and listens on @p host, port *@p port (0: any),
     * for TLS clients with @p ctx, for plaintext ones when it is NULL; sets *@p port to the port
     * it got. With @p share (loop 0's TLS server, for the other loops), it serves on that
     * server's listener instead (tlsock_uv_serve_shared()); @p reuseport: its own listener
     * binds with SO_REUSEPORT. Reports failures.
     */
    int (*start_accepting)(struct cli_loop *loop, const void *settings, struct tlsock_ctx *ctx,
                           const char *host, uint16_t *port, struct tlsock_uv_server *share,
                           bool reuseport);
    /* Optional: more lines once every loop listens on @p where; called on loop 0. */
    void (*listening)(struct cli_loop *loop, const char *where);
    /* When a stop reaches the loop, on its thread (and after a failed start): close the
     * listener and reset the clients still in their handshake (tlsock_uv_server_abort());
     * harmless when there is none. */
    void (*stop_accepting)(struct cli_loop *loop);
    void (*close_all)(struct cli_loop *loop); /* close every open connection */
    /* Optional: the loop's TLS server, whose context a reload swaps; NULL when it has none. */
    struct tlsock_uv_server *(*tls_server)(struct cli_loop *loop);
    /*
     * Optional: a reload's new context for outgoing connections, made from @p settings into
     * *@p out (NULL: none to swap), before anything is swapped; 0 or a reported TLSOCK_E* code.
     * swap_target() then puts it in place (called on loop 0, with the reload's other swaps).
     */
    int (*reload_target)(const void *settings, struct tlsock_ctx **out);
    void (*swap_target)(const void *settings, struct tlsock_ctx *ctx);
};

struct cli_loop {
    uv_loop_t uv;
    void *user;  /* the command's state for this loop */
    size_t open; /* connections open; see cli_loop_conn_opened() */
    /* Private to loops.c. */
    const struct cli_loop_ops *ops;
    uv_async_t stop_async;
    uv_timer_t stop_timer;
    pthread_t thread;
    bool thread_started;
    bool stopping;
    bool closing_all;
    bool abandoned; /* uv_stop()ed with connections open: its loop cannot be closed */
};

struct cli_loops {
    int count;
    struct cli_loop *loops;
    uv_signal_t sigint;
    uv_signal_t sigterm;
    uv_signal_t sighup;
    uv_timer_t stats_timer; /* --stats SECONDS, on loop 0 */
    /* --session-store: the ticket key watcher wakes loop 0 through it to reload the keys. */
    uv_async_t keys_async;
    /* What SIGHUP rebuilds the server context from; NULL: nothing to reload. */
    const struct cli_shared_options *reload;
    const void *settings; /* the command's, for ops->reload_target() */
    bool stop_requested;
};

/*
 * Makes @p count loops (count >= 1), each ready to stop through @p ops, with the signal handlers
 * on loop 0 (they run once it does). The command then sets up
 * its listeners on loops->loops[i].uv (before cli_loops_run(), from this thread). Returns 0 or a
 * libuv error, reported on stderr.
 */
int cli_loops_init(struct cli_loops *loops, int count, const struct cli_loop_ops *ops);

/*
 * Runs loop 0 in this thread, with the signal handlers, and every other loop in a thread of its
 * own; returns once all have ended. Returns 0 or a libuv error (reported).
 */
int cli_loops_run(struct cli_loops *loops);

/*
 * Until SIGINT or SIGTERM: makes @p count loops with @p ops, starts accepting on every one, all
 * on the port the first one got (TLS: on loop 0's listener, by load; plaintext: SO_REUSEPORT
 * with more than one loop), prints the "listening
 * on" lines (cli_print_listening()), then runs them (cli_loops_run()) and frees them. SIGHUP
 * rebuilds the server context from @p shared (cli_server_ctx_new(), as @p ctx was made) and
 * swaps it in; so does new ticket keys' arrival with --session-store. Counts what happens
 * (stats.h): with @p shared's --stats, prints a line every so many seconds, and once the loops
 * ended after a stop, the summary. Returns 0 or a TLSOCK_E* code, reported.
 */
int cli_loops_serve(const struct cli_loop_ops *ops, int count, const void *settings,
                    struct tlsock_ctx *ctx, const char *host, uint16_t port, const char *fp,
                    const struct cli_shared_options *shared);

/*
 * Prints "listening on HOST:PORT" and, unless @p fp is empty, the certificate's fingerprint on
 * stdout, and flushes it; @p where, unless NULL, gets HOST:PORT (CLI_HOST_MAX + 16 bytes).
 */
void cli_print_listening(const char *host, uint16_t port, const char *fp, char *where);

/*
 * Counts a TLS client that failed before it was accepted and reports it, unless others of its
 * kind were reported just before (cli_stats_handshake_failed()); a handshake timeout names the
 * --handshake-timeout of @p handshake_timeout_ms. TLSOCK_ECANCELED (a stop reset the client)
 * is neither counted nor reported.
 */
void cli_report_accept_error(int code, const char *message, int handshake_timeout_ms);

/*
 * Serves TLS on @p uv: on @p host:@p port, or, with @p share (loop 0's server, for the other
 * loops), on that server's listener (tlsock_uv_serve_shared()). tlsock_uv_serve()'s result.
 */
int cli_uv_serve(uv_loop_t *uv, struct tlsock_ctx *ctx, const char *host, uint16_t port,
                 struct tlsock_uv_server *share, const struct tlsock_uv_opts *opts,
                 struct tlsock_uv_server **out);

/* Frees what cli_loops_init() made; an abandoned loop is left as it is. */
void cli_loops_free(struct cli_loops *loops);

/* Counts a connection that a stop must wait for; call on the loop's thread. */
void cli_loop_conn_opened(struct cli_loop *loop);

/* The connection counted by cli_loop_conn_opened() is gone (after its last callback). */
void cli_loop_conn_closed(struct cli_loop *loop);

/* True once a stop reached the loop: new connections are to be refused. */
bool cli_loop_stopping(const struct cli_loop *loop);

#endif /* TLSOCK_CLI_LOOPS_H */
