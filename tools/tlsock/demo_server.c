/*
 * The demo's echo server thread. Accept waits are short so that a stop request is seen quickly
 * and the thread can always be joined; every wait inside a connection is bounded too.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "demo.h"

#define ACCEPT_POLL_MS  100
#define CONN_TIMEOUT_MS 5000

static int echo(struct tlsock_conn *conn)
{
    char buf[4096];
    size_t nread = 0;
    int err = tlsock_handshake(conn);

    while (err == 0) {
        err = tlsock_read(conn, buf, sizeof(buf), &nread);
        if (err == 0) {
            err = tlsock_write(conn, buf, nread);
        }
    }
    return err;
}

static void record(struct demo_server *srv, int err, const char *msg)
{
    pthread_mutex_lock(&srv->lock);
    srv->finished++;
    srv->last_err = err;
    snprintf(srv->last_msg, sizeof(srv->last_msg), "%s", msg);
    pthread_cond_broadcast(&srv->changed);
    pthread_mutex_unlock(&srv->lock);
}

static void *server_main(void *arg)
{
    struct demo_server *srv = arg;
    struct tlsock_opts opts = TLSOCK_OPTS_INIT;
    struct tlsock_conn *conn = NULL;
    int err = 0;

    opts.connect_timeout_ms = ACCEPT_POLL_MS;
    opts.handshake_timeout_ms = CONN_TIMEOUT_MS;
    opts.timeout_ms = CONN_TIMEOUT_MS;
    while (!atomic_load(&srv->stop)) {
        err = tlsock_accept(srv->lis, &opts, &conn);
        if (err == TLSOCK_ETIMEDOUT) {
            continue;
        }
        if (err != 0) {
            record(srv, err, tlsock_errmsg());
            continue;
        }
        err = echo(conn);
        record(srv, err, tlsock_conn_errmsg(conn));
        tlsock_close(conn);
        conn = NULL;
    }
    return NULL;
}

int demo_server_start(struct demo_server *srv, struct tlsock_listener *lis)
{
    int err = 0;
    int rc = 0;

    srv->lis = lis;
    atomic_init(&srv->stop, false);
    srv->finished = 0;
    srv->last_err = 0;
    srv->last_msg[0] = '\0';
    pthread_mutex_init(&srv->lock, NULL);
    pthread_cond_init(&srv->changed, NULL);
    rc = pthread_create(&srv->thread, NULL, server_main, srv);
    if (rc != 0) {
        cli_errorf("cannot start the server thread: %s", strerror(rc));
        pthread_cond_destroy(&srv->changed);
        pthread_mutex_destroy(&srv->lock);
        err = TLSOCK_ESYS;
    }
    return err;
}

bool demo_server_wait(struct demo_server *srv, int count, int timeout_ms)
{
    struct timespec until;
    bool reached = false;
    int rc = 0;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&srv->lock);
    while (srv->finished < count && rc != ETIMEDOUT) {
        rc = pthread_cond_timedwait(&srv->changed, &srv->lock, &until);
    }
    reached = srv->finished >= count;
    pthread_mutex_unlock(&srv->lock);
    return reached;
}

void demo_server_stop(struct demo_server *srv)
{
    atomic_store(&srv->stop, true);
    pthread_join(srv->thread, NULL);
    pthread_cond_destroy(&srv->changed);
    pthread_mutex_destroy(&srv->lock);
}
