/*
 * A TLS echo server on libuv loops, many clients at once on each:
 * usage `async_echo_server [-t THREADS] PORT [CHAIN.pem KEY.pem]`.
 *
 * Without a certificate it makes a development one for localhost and prints the CA that signed
 * it on stdout, so that a client can trust it. TLSOCK_IMPL=gnutls (or openssl) picks the TLS
 * implementation. With -t, THREADS loops (one per thread) serve the port: the main thread's
 * server listens and gives each client to the loop with the fewest connections
 * (tlsock_uv_serve_shared()). SIGINT or SIGTERM stops accepting and resets the clients still in
 * their handshake (tlsock_uv_server_abort()); the program ends when the last connected client
 * has gone.
 *
 *     ./async_echo_server -t 4 8443 > ca.pem &
 *     ./async_client localhost 8443 hello ca.pem
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tlsock/uv.h>

/* Stop reading a client while this much of its echo waits to be sent (backpressure). */
#define QUEUE_MAX (256 * 1024)

/* What we keep per client: the user pointer of its connection, freed in on_close. */
struct client {
    bool paused;
};

/* A loop of its own thread, whose server shares the main loop's listener. */
struct worker {
    uv_loop_t loop;
    uv_async_t stop; /* the main thread's signal handler wakes the loop through it to stop */
    struct tlsock_uv_server *server;
    pthread_t thread;
};

static struct tlsock_uv_server *server;
static struct worker *workers;
static int worker_count; /* running */
static bool stopping;    /* the workers were told to stop (their stop handles close then) */
static uv_signal_t sigint_watcher;
static uv_signal_t sigterm_watcher;

/* Loads CHAIN and KEY, or makes a development certificate and prints its CA. */
static int load_identity(struct tlsock_ctx *ctx, int argc, char **argv)
{
    char *ca = NULL;
    char *cert = NULL;
    char *key = NULL;
    int rc;

    if (argc == 4) {
        rc = tlsock_ctx_set_cert_file(ctx, argv[2], argv[3]);
    } else {
        rc = tlsock_devcert_new("localhost,127.0.0.1,::1", &ca, &cert, &key);
        if (rc == 0) {
            rc = tlsock_ctx_set_cert_mem(ctx, cert, strlen(cert), key, strlen(key));
        }
        if (rc == 0) {
            fputs(ca, stdout);
            fflush(stdout);
        }
    }
    tlsock_free(ca);
    tlsock_free(cert);
    tlsock_free(key);
    return rc;
}

/* A client finished its handshake: from now on it is ours. */
static void on_connect(struct tlsock_uv_conn *conn, int status)
{
    struct client *client = calloc(1, sizeof(*client));

    (void)status; /* a server reports only successful handshakes here */
    tlsock_uv_conn_set_user(conn, client);
    if (client == NULL) {
        tlsock_uv_close(conn);
    }
}

/* Data from a client: send it back. */
static void on_read(struct tlsock_uv_conn *conn, const void *data, size_t len)
{
    struct client *client = tlsock_uv_conn_user(conn);
    /* data is only valid during this call; the write needs its bytes until on_write. */
    void *copy = malloc(len);

    if (copy == NULL) {
        tlsock_uv_close(conn);
        return;
    }
    memcpy(copy, data, len);
    if (tlsock_uv_write(conn, copy, len, copy) != 0) {
        free(copy); /* no on_write will come for it */
        tlsock_uv_close(conn);
        return;
    }
    /* The client sends faster than it reads: stop reading until it catches up. */
    if (!client->paused && tlsock_uv_conn_write_queue_size(conn) > QUEUE_MAX) {
        client->paused = true;
        tlsock_uv_read_stop(conn);
    }
}

/* Part of an echo reached the kernel (or the connection is closing: ECANCELED). */
static void on_write(struct tlsock_uv_conn *conn, void *copy, int status)
{
    struct client *client = tlsock_uv_conn_user(conn);

    free(copy);
    if (status == 0 && client->paused && tlsock_uv_conn_write_queue_size(conn) < QUEUE_MAX / 4) {
        client->paused = false;
        tlsock_uv_read_start(conn);
    }
}

/* The client's stream ended: close_notify (a clean end) or an error. Either way, close. */
static void on_event(struct tlsock_uv_conn *conn, int code)
{
    if (code != TLSOCK_ECLOSED) {
        fprintf(stderr, "async_echo_server: client: %s (%s)\n", tlsock_strerror(code),
                tlsock_uv_conn_errmsg(conn));
    }
    /* Sends what is still queued, then our close_notify. */
    tlsock_uv_close(conn);
}

/* The connection's last callback: free what belongs to it. */
static void on_close(struct tlsock_uv_conn *conn)
{
    free(tlsock_uv_conn_user(conn));
}

/* A client failed before it was handed to us (e.g. its handshake); the server goes on. */
static void on_accept_error(struct tlsock_uv_server *srv, int code, const char *message)
{
    (void)srv;
    if (code == TLSOCK_ECANCELED) {
        return; /* our stop reset it (tlsock_uv_server_abort()) */
    }
    fprintf(stderr, "async_echo_server: handshake: %s (%s)\n", tlsock_strerror(code), message);
}

/* In a worker's thread: its server closes; its loop ends once its clients have gone. */
static void on_worker_stop(uv_async_t *stop)
{
    struct worker *w = stop->data;

    tlsock_uv_server_abort(w->server, NULL); /* a silent client would hold the loop up */
    uv_close((uv_handle_t *)stop, NULL);
}

static void *run_worker(void *arg)
{
    struct worker *w = arg;

    uv_run(&w->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* @p count loops in threads of their own, sharing the main loop's listener; 0 or an error. */
static int start_workers(int count, struct tlsock_ctx *ctx, const struct tlsock_uv_opts *opts)
{
    int rc = 0;

    workers = calloc((size_t)count, sizeof(*workers));
    if (workers == NULL) {
        return TLSOCK_ENOMEM;
    }
    for (int i = 0; i < count && rc == 0; i++) {
        struct worker *w = &workers[i];
        /* Set up before its thread runs it, so from this thread. */
        uv_loop_init(&w->loop);
        uv_async_init(&w->loop, &w->stop, on_worker_stop);
        w->stop.data = w;
        rc = tlsock_uv_serve_shared(&w->loop, ctx, server, opts, &w->server);
        if (rc == 0 && pthread_create(&w->thread, NULL, run_worker, w) != 0) {
            fprintf(stderr, "async_echo_server: cannot start thread %d\n", i + 2);
            rc = TLSOCK_ESYS;
        }
        if (rc != 0) {
            /* This loop never ran: what it has closes here; the others stop as after a signal. */
            tlsock_uv_server_close(w->server, NULL);
            uv_close((uv_handle_t *)&w->stop, NULL);
            uv_run(&w->loop, UV_RUN_DEFAULT);
            uv_loop_close(&w->loop);
        } else {
            worker_count = i + 1;
        }
    }
    return rc;
}

/*
 * SIGINT, SIGTERM: stop accepting and reset the clients still in their handshake, which a
 * silent one would otherwise hold up to its timeout; uv_run() returns once the connected
 * clients have gone.
 */
static void on_signal(uv_signal_t *watcher, int signum)
{
    (void)watcher;
    (void)signum;
    tlsock_uv_server_abort(server, NULL); /* a second call is a no-op */
    for (int i = 0; i < worker_count && !stopping; i++) {
        uv_async_send(&workers[i].stop); /* the one libuv call for another thread's loop */
    }
    stopping = true;
    /*
     * The watchers stay (a second signal, as timeout(1) sends, must not kill us), but no
     * longer keep the loop running.
     */
    uv_unref((uv_handle_t *)&sigint_watcher);
    uv_unref((uv_handle_t *)&sigterm_watcher);
}

int main(int argc, char **argv)
{
    uv_loop_t *loop = uv_default_loop();
    struct tlsock_ctx *ctx = NULL;
    struct tlsock_uv_opts opts = TLSOCK_UV_OPTS_INIT;
    const char *program = argv[0];
    int threads = 1;
    int rc;

    if (argc > 2 && strcmp(argv[1], "-t") == 0) {
        threads = atoi(argv[2]);
        argc -= 2;
        argv += 2;
    }
    if ((argc != 2 && argc != 4) || threads < 1) {
        fprintf(stderr, "usage: %s [-t THREADS] PORT [CHAIN.pem KEY.pem]\n", program);
        return 2;
    }
    /* Every client gets these callbacks and timeouts. */
    opts.on_connect = on_connect;
    opts.on_read = on_read;
    opts.on_write = on_write;
    opts.on_event = on_event;
    opts.on_close = on_close;
    opts.on_accept_error = on_accept_error;
    opts.handshake_timeout_ms = 10000; /* a silent client is dropped... */
    opts.read_idle_timeout_ms = 60000; /* ...and so is an idle one */
    opts.write_timeout_ms = 60000;     /* ...and one that stops reading */

    /* First, so that on_signal() can end everything from here on. */
    uv_signal_init(loop, &sigint_watcher);
    uv_signal_start(&sigint_watcher, on_signal, SIGINT);
    uv_signal_init(loop, &sigterm_watcher);
    uv_signal_start(&sigterm_watcher, on_signal, SIGTERM);

    rc = tlsock_ctx_new(TLSOCK_SERVER, &ctx);
    if (rc == 0) {
        rc = load_identity(ctx, argc, argv);
    }
    if (rc == 0) {
        rc = tlsock_uv_serve(loop, ctx, NULL, (uint16_t)atoi(argv[1]), 0, &opts, &server);
    }
    if (rc == 0 && threads > 1) {
        rc = start_workers(threads - 1, ctx, &opts);
    }
    if (rc != 0) {
        /* The context's own message while it was being set up, the thread's after. */
        const char *why = ctx != NULL && tlsock_ctx_errmsg(ctx)[0] != '\0' ? tlsock_ctx_errmsg(ctx)
                                                                           : tlsock_errmsg();
        fprintf(stderr, "async_echo_server: %s (%s)\n", tlsock_strerror(rc), why);
        on_signal(&sigterm_watcher, SIGTERM); /* closes what started; the loops end */
    } else {
        fprintf(stderr, "async_echo_server: listening on port %u (%s) on %d thread%s\n",
                tlsock_uv_server_port(server), tlsock_impl_name(tlsock_ctx_impl(ctx)), threads,
                threads > 1 ? "s" : "");
    }
    uv_run(loop, UV_RUN_DEFAULT);

    /* Closing the watchers restores the default action: we are leaving, ignore more signals. */
    uv_close((uv_handle_t *)&sigint_watcher, NULL);
    uv_close((uv_handle_t *)&sigterm_watcher, NULL);
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    uv_run(loop, UV_RUN_DEFAULT); /* runs the close callbacks */
    for (int i = 0; i < worker_count; i++) {
        pthread_join(workers[i].thread, NULL); /* its loop ended: its clients have gone */
        uv_loop_close(&workers[i].loop);
    }
    free(workers);
    tlsock_ctx_free(ctx); /* the servers held their own references while they ran */
    uv_loop_close(loop);
    return rc == 0 ? 0 : 1;
}
