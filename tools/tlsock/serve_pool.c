/*
 * The threads of `tlsock serve`: one detached thread per connection, at most SERVE_MAX_CONNS at
 * once. The pool knows each running connection's socket so that a stop can end connections that
 * would otherwise sit in a read until their idle timeout.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "cli.h"
#include "serve.h"

#define SERVE_MAX_CONNS   256
#define THREAD_STACK_SIZE (256 * 1024)
/* On stop: how long connections may finish on their own, then how long their threads get. */
#define STOP_GRACE_MS 1000
#define STOP_WAIT_MS  2000

struct serve_slot {
    struct serve_pool *pool;
    struct tlsock_conn *conn;
    int fd; /* -1 when the slot is free */
};

struct serve_pool {
    pthread_mutex_t lock; /* guards active, slots[].fd and stopped */
    pthread_cond_t changed;
    int active;
    bool stopped; /* the last thread out frees a pool that stop had to leave behind */
    struct serve_settings settings;
    struct serve_slot slots[SERVE_MAX_CONNS];
};

struct serve_pool *serve_pool_new(const struct serve_settings *settings)
{
    struct serve_pool *pool = calloc(1, sizeof(*pool));
    int i = 0;

    if (pool == NULL) {
        goto done;
    }
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->changed, NULL);
    pool->settings = *settings;
    for (i = 0; i < SERVE_MAX_CONNS; i++) {
        pool->slots[i] = (struct serve_slot){.pool = pool, .conn = NULL, .fd = -1};
    }
done:
    return pool;
}

static void pool_free(struct serve_pool *pool)
{
    pthread_cond_destroy(&pool->changed);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}

static void *conn_thread(void *arg)
{
    struct serve_slot *slot = arg;
    struct serve_pool *pool = slot->pool;
    struct tlsock_conn *conn = slot->conn;
    bool last_of_stopped = false;

    (void)cli_serve_conn(conn, &pool->settings);
    /* Forget the socket before it is closed, so that a stop never shuts down a reused fd. */
    pthread_mutex_lock(&pool->lock);
    slot->fd = -1;
    pthread_mutex_unlock(&pool->lock);
    tlsock_close(conn);
    pthread_mutex_lock(&pool->lock);
    slot->conn = NULL;
    pool->active--;
    last_of_stopped = pool->stopped && pool->active == 0;
    pthread_cond_broadcast(&pool->changed);
    pthread_mutex_unlock(&pool->lock);
    if (last_of_stopped) {
        pool_free(pool);
    }
    return NULL;
}

/* Reserves a free slot for @p conn; NULL when the pool is full. Called with the lock held. */
static struct serve_slot *reserve_slot(struct serve_pool *pool, struct tlsock_conn *conn)
{
    struct serve_slot *slot = NULL;
    int i = 0;

    for (i = 0; i < SERVE_MAX_CONNS && slot == NULL; i++) {
        if (pool->slots[i].conn == NULL) {
            slot = &pool->slots[i];
        }
    }
    if (slot != NULL) {
        slot->conn = conn;
        slot->fd = tlsock_conn_fd(conn);
        pool->active++;
    }
    return slot;
}

void serve_pool_dispatch(struct serve_pool *pool, struct tlsock_conn *conn)
{
    pthread_attr_t attr;
    pthread_t tid;
    struct serve_slot *slot = NULL;
    int rc = 0;

    pthread_mutex_lock(&pool->lock);
    slot = reserve_slot(pool, conn);
    pthread_mutex_unlock(&pool->lock);
    if (slot == NULL) {
        cli_errorf("refusing a connection: %d connections already running", SERVE_MAX_CONNS);
        tlsock_close(conn);
        goto done;
    }
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, THREAD_STACK_SIZE);
    rc = pthread_create(&tid, &attr, conn_thread, slot);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        cli_errorf("refusing a connection: cannot start a thread: %s", strerror(rc));
        pthread_mutex_lock(&pool->lock);
        slot->fd = -1;
        slot->conn = NULL;
        pool->active--;
        pthread_mutex_unlock(&pool->lock);
        tlsock_close(conn);
    }
done:
    return;
}

/* Waits until no connection runs or @p ms pass. Called with the lock held. */
static void wait_idle(struct serve_pool *pool, int ms)
{
    struct timespec until;
    int rc = 0;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    while (pool->active > 0 && rc != ETIMEDOUT) {
        rc = pthread_cond_timedwait(&pool->changed, &pool->lock, &until);
    }
}

void serve_pool_stop(struct serve_pool *pool)
{
    bool leave = false;
    int i = 0;

    pthread_mutex_lock(&pool->lock);
    wait_idle(pool, STOP_GRACE_MS);
    /*
     * shutdown(2), not close: the fd stays valid for its thread, whose blocked read or write
     * then fails at once and ends the connection through the normal path.
     */
    for (i = 0; i < SERVE_MAX_CONNS; i++) {
        if (pool->slots[i].fd >= 0) {
            shutdown(pool->slots[i].fd, SHUT_RDWR);
        }
    }
    wait_idle(pool, STOP_WAIT_MS);
    if (pool->active > 0) {
        cli_errorf("stopping with %d connections still open", pool->active);
        pool->stopped = true;
        leave = true;
    }
    pthread_mutex_unlock(&pool->lock);
    if (!leave) {
        pool_free(pool);
    }
}
