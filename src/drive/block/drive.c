/*
 * The blocking driver's one loop: "step; on WANT, poll the socket for the time left until the
 * deadline". The core and the implementations never wait; this loop and net.c's waits do.
 */
#include <poll.h>
#include <pthread.h>
#include <time.h>

#include "block.h"
#include "drive/net.h"

/*
 * A server's session-store get (core/store.c) in one drive call: its done, from any thread,
 * wakes the waiting thread through the core's notify. The waiter lives on the drive call's
 * stack: a look-up never outlives the call, which ends only once it completed or was given up.
 */
struct store_waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;         /* CLOCK_MONOTONIC */
    struct tlsock__lookup *done; /* the completed look-up, whose reference the notify gave */
};

/* The core's notify: under the look-up's lock, so only the waiter's lock is taken here. */
static bool store_answered(void *arg, struct tlsock__lookup *lookup)
{
    struct store_waiter *w = arg;

    pthread_mutex_lock(&w->lock);
    w->done = lookup;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return true;
}

static void waiter_init(struct tlsock_conn *conn, struct store_waiter *w)
{
    pthread_condattr_t attr;

    pthread_mutex_init(&w->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &attr);
    pthread_condattr_destroy(&attr);
    w->done = NULL;
    tlsock__conn_set_store_notify(conn, store_answered, w);
}

/* Drops the reference of a done that came (also one that came at once, inside the get). */
static void waiter_release(struct store_waiter *w)
{
    pthread_mutex_lock(&w->lock);
    struct tlsock__lookup *done = w->done;
    w->done = NULL;
    pthread_mutex_unlock(&w->lock);
    if (done != NULL) {
        tlsock__lookup_unref(done);
    }
}

static void waiter_destroy(struct tlsock_conn *conn, struct store_waiter *w)
{
    tlsock__conn_set_store_notify(conn, NULL, NULL);
    waiter_release(w);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
}

/*
 * The store has not answered: wait for its done, on any transport, until the look-up's bound or
 * the operation's deadline; then the get is a miss, and the handshake goes on as a full one (the
 * operation's deadline, passed, then fails it at its next wait).
 */
static void wait_store(struct tlsock_conn *conn, struct store_waiter *w, int64_t deadline_ns)
{
    int64_t until = tlsock__conn_store_deadline(conn);

    until = until < deadline_ns ? until : deadline_ns;
    struct timespec ts = {until / 1000000000, until % 1000000000};
    int rc = 0;
    pthread_mutex_lock(&w->lock);
    while (w->done == NULL && rc == 0) {
        rc = pthread_cond_timedwait(&w->cond, &w->lock, &ts);
    }
    bool done = w->done != NULL;
    pthread_mutex_unlock(&w->lock);
    if (!done) {
        /* A done that comes now counts as late: the wait decided. */
        tlsock__conn_store_give_up(conn);
    }
    waiter_release(w);
}

int tlsock__drive(struct tlsock_conn *conn, tlsock__step_fn step, void *arg, int64_t deadline_ns,
                  int timeout_code)
{
    struct tlsock__err *err = tlsock__conn_err(conn);
    struct store_waiter w;
    int rc;

    /* Callbacks may ask for it (tlsock_conn_op_deadline_ms) to bound their own waiting. */
    tlsock__conn_set_op_deadline(conn, deadline_ns);
    tlsock__conn_set_caller_polls(conn, true);
    /* Only a server's handshake with a store looks a session up: no waiter for other calls. */
    bool store = tlsock__conn_store_may_wait(conn);
    if (store) {
        waiter_init(conn, &w);
    }
    /*
     * On a socket: records move, so the implementation keeps its buffers from one to the next
     * until we return (below). Callbacks and memory mode keep the implementation's default: their
     * caller drives the connection and knows when it is idle, and a release per call cost the
     * memory-mode bench 7% (a 17 KiB buffer freed and allocated again per record).
     */
    bool rests = tlsock__conn_socket(conn) >= 0;
    if (rests) {
        tlsock__conn_hold_buffers(conn, true);
    }
    for (;;) {
        rc = step(conn, arg);
        if (store && rc == TLSOCK_EWANT_READ && tlsock__conn_store_waiting(conn)) {
            wait_store(conn, &w, deadline_ns);
            continue;
        }
        int fd = tlsock__conn_socket(conn);
        if ((rc != TLSOCK_EWANT_READ && rc != TLSOCK_EWANT_WRITE) || fd < 0) {
            break;
        }
        if (rc == TLSOCK_EWANT_READ && tlsock__conn_sent_since_poll(conn) &&
            tlsock__conn_quick_ack_due(conn)) {
            tlsock__quick_ack(fd); /* the client's Finished gets no reply to carry its ACK */
        }
        short events = rc == TLSOCK_EWANT_READ ? POLLIN : POLLOUT;
        rc = tlsock__wait_fd(fd, events, deadline_ns, err);
        tlsock__conn_polled(conn);
        if (rc == TLSOCK_ETIMEDOUT) {
            rc = tlsock__fail(err, timeout_code, "%s: no progress before the deadline",
                              timeout_code == TLSOCK_EHANDSHAKE_TIMEOUT ? "TLS handshake timed out"
                                                                        : "timed out");
        }
        if (rc != 0) {
            break;
        }
    }
    if (store) {
        waiter_destroy(conn, &w);
    }
    tlsock__conn_set_caller_polls(conn, false);
    tlsock__conn_set_op_deadline(conn, INT64_MAX);
    /*
     * Between calls a blocking connection is idle, maybe for long (a thread-per-connection
     * server's clients between requests): it keeps no record buffers and no input storage
     * unless a record is in flight.
     */
    if (rests) {
        tlsock__conn_rest(conn);
    }
    return rc;
}
