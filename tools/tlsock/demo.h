/*
 * The server half of `tlsock demo`: an echo server in a thread, bounded and stoppable.
 */
#ifndef TLSOCK_CLI_DEMO_H
#define TLSOCK_CLI_DEMO_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include <tlsock.h>

struct demo_server {
    struct tlsock_listener *lis; /* owned by the caller; closed after demo_server_stop() */
    pthread_t thread;
    atomic_bool stop;
    pthread_mutex_t lock; /* guards the fields below */
    pthread_cond_t changed;
    int finished; /* connections the server is done with */
    int last_err; /* how the last one ended, from the server's side */
    char last_msg[256];
};

/* Starts the echo thread on @p lis. Returns 0 or a tlsock error (reported). */
int demo_server_start(struct demo_server *srv, struct tlsock_listener *lis);

/* Waits up to @p timeout_ms until the server has finished @p count connections. */
bool demo_server_wait(struct demo_server *srv, int count, int timeout_ms);

/* Asks the thread to stop and joins it (within the accept poll interval). */
void demo_server_stop(struct demo_server *srv);

#endif /* TLSOCK_CLI_DEMO_H */
