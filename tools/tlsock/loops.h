/*
 * The event loops of the serving commands (serve, tunnel): one libuv loop per thread, each with
 * its own listener on the same port (SO_REUSEPORT), and one stop for all of them on SIGINT or
 * SIGTERM.
 *
 * A stop runs on every loop, in its own thread: the command stops accepting, open connections
 * get CLI_LOOP_GRACE_MS to finish on their own, then the command closes them; a loop whose
 * connections are still not gone CLI_LOOP_CLOSE_WAIT_MS later is abandoned with a message.
 */
#ifndef TLSOCK_CLI_LOOPS_H
#define TLSOCK_CLI_LOOPS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#define CLI_LOOP_GRACE_MS 1000
/* More than the 5 s that tlsock_uv_close() gives queued data by default. */
#define CLI_LOOP_CLOSE_WAIT_MS 6000

struct cli_loop;

/* What a command does when a stop reaches one of its loops; called on that loop's thread. */
struct cli_loop_ops {
    void (*stop_accepting)(struct cli_loop *loop); /* close the listener */
    void (*close_all)(struct cli_loop *loop);      /* close every open connection */
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
    bool stop_requested;
};

/*
 * Makes @p count loops (count >= 1), each ready to stop through @p ops. The command then sets up
 * its listeners on loops->loops[i].uv (before cli_loops_run(), from this thread). Returns 0 or a
 * libuv error, reported on stderr.
 */
int cli_loops_init(struct cli_loops *loops, int count, const struct cli_loop_ops *ops);

/*
 * Runs loop 0 in this thread, with the signal handlers, and every other loop in a thread of its
 * own; returns once all have ended. Returns 0 or a libuv error (reported).
 */
int cli_loops_run(struct cli_loops *loops);

/* Frees what cli_loops_init() made; an abandoned loop is left as it is. */
void cli_loops_free(struct cli_loops *loops);

/* Counts a connection that a stop must wait for; call on the loop's thread. */
void cli_loop_conn_opened(struct cli_loop *loop);

/* The connection counted by cli_loop_conn_opened() is gone (after its last callback). */
void cli_loop_conn_closed(struct cli_loop *loop);

/* True once a stop reached the loop: new connections are to be refused. */
bool cli_loop_stopping(const struct cli_loop *loop);

#endif /* TLSOCK_CLI_LOOPS_H */
