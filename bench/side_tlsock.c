/*
 * The measured side: the same workload through tlsock's public API only, as an application would
 * use it, with both contexts on the case's implementation (tlsock_ctx_set_impl).
 *
 * bench_tlsock_ops is the blocking driver over tlsock's fd fast path (tlsock_listen,
 * tlsock_accept, tlsock_connect), and memory mode (tlsock_attach_mem, tlsock_drain,
 * tlsock_feed). bench_tlsock_io_ops moves the socket's bytes through the generic callback path
 * instead: plain blocking sockets (tcp.c, as the raw baselines have) and tlsock_attach_io() with
 * callbacks that recv() and send() on them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "side.h"

struct tls_conn {
    struct tlsock_conn *tls;
    int fd; /* the callback path's socket, ours to close; -1 on the fd path */
};

/*
 * Prints a failure with tlsock's detail, from the connection, else the context, else the thread;
 * returns BENCH_OK for 0, else BENCH_ERROR.
 */
static int check(int rc, const char *what, const struct tlsock_ctx *ctx, const struct tls_conn *c)
{
    if (rc != 0) {
        fprintf(stderr, "tlsock: %s: %s: %s\n", what, tlsock_err_name(rc),
                c != NULL     ? tlsock_conn_errmsg(c->tls)
                : ctx != NULL ? tlsock_ctx_errmsg(ctx)
                              : tlsock_errmsg());
    }
    return rc == 0 ? BENCH_OK : BENCH_ERROR;
}

/*
 * tlsock_ctx_set_ciphers() passes a string that is not a policy name to the implementation: for
 * OpenSSL, names that start with "TLS_" go to the TLS 1.3 suite list; GnuTLS maps them to its
 * cipher names in the priority string. Should an implementation refuse, run.c falls back to the
 * default suite on every side and says so, rather than failing.
 */
static int select_suite(struct tlsock_ctx *ctx, const char *suite)
{
    int rc = BENCH_OK;

    if (suite != NULL && tlsock_ctx_set_ciphers(ctx, suite) != 0) {
        fprintf(stderr, "tlsock: cannot select TLS 1.3 suite %s through the public API (%s)\n",
                suite, tlsock_ctx_errmsg(ctx));
        rc = BENCH_UNSUPPORTED;
    }
    return rc;
}

static void tls_teardown(void *envp)
{
    struct tls_env *env = envp;

    if (env != NULL) {
        tlsock_ctx_free(env->server);
        tlsock_ctx_free(env->client);
        tlsock_ctx_free(env->fresh_client);
        free(env);
    }
}

/*
 * A context of @p role on the case's implementation, TLS 1.3 only, with the case's suite and
 * the server's certificate or the client's CA; a client's session cache is off if @p no_cache.
 */
static int ctx_new(const struct bench_config *config, int role, bool no_cache,
                   struct tlsock_ctx **out)
{
    struct tlsock_ctx *ctx = NULL;
    int rc = check(tlsock_ctx_new(role, &ctx), "context", NULL, NULL);

    /*
     * Pinned, so that a TLSOCK_IMPL environment variable cannot pair tlsock on one implementation
     * with the other's raw baseline; set_impl must precede every other setter.
     */
    if (rc == BENCH_OK) {
        rc = check(tlsock_ctx_set_impl(ctx, config->impl), "implementation", ctx, NULL);
    }
    if (rc == BENCH_OK) {
        rc = check(tlsock_ctx_set_protocols(ctx, "1.3"), "protocols", ctx, NULL);
    }
    if (rc == BENCH_OK && role == TLSOCK_SERVER) {
        rc = check(tlsock_ctx_set_cert_mem(ctx, config->cert_pem, strlen(config->cert_pem),
                                           config->key_pem, strlen(config->key_pem)),
                   "server certificate", ctx, NULL);
    } else if (rc == BENCH_OK) {
        rc = check(tlsock_ctx_set_ca_mem(ctx, config->ca_pem, strlen(config->ca_pem)), "CA", ctx,
                   NULL);
    }
    if (rc == BENCH_OK && role == TLSOCK_SERVER && config->no_tickets) {
        rc = check(tlsock_ctx_set_tickets(ctx, false), "tickets off", ctx, NULL);
    }
    if (rc == BENCH_OK && no_cache) {
        rc = check(tlsock_ctx_set_session_cache(ctx, 0), "session cache", ctx, NULL);
    }
    if (rc == BENCH_OK) {
        rc = select_suite(ctx, config->suite);
    }
    if (rc == BENCH_OK) {
        *out = ctx;
    } else {
        tlsock_ctx_free(ctx);
    }
    return rc;
}

static int tls_setup(const struct bench_config *config, void **out)
{
    int rc = BENCH_ERROR;
    struct tls_env *env = calloc(1, sizeof(*env));
    const struct tlsock_opts init = TLSOCK_OPTS_INIT;

    if (env == NULL) {
        fprintf(stderr, "tlsock: out of memory\n");
        goto out;
    }
    rc = ctx_new(config, TLSOCK_SERVER, false, &env->server);
    if (rc == BENCH_OK) {
        rc = ctx_new(config, TLSOCK_CLIENT, false, &env->client);
    }
    if (rc == BENCH_OK) {
        rc = ctx_new(config, TLSOCK_CLIENT, true, &env->fresh_client);
    }
    if (rc != BENCH_OK) {
        goto out;
    }
    env->connect_ctx = env->client;
    env->accept_opts = init;
    /* As long as the raw listener's (tcp.c); bench_server_stop() wakes an accept sooner. */
    env->accept_opts.connect_timeout_ms = BENCH_IO_TIMEOUT_MS;
    env->accept_opts.handshake_timeout_ms = BENCH_IO_TIMEOUT_MS;
    env->accept_opts.timeout_ms = BENCH_IO_TIMEOUT_MS;
    env->connect_opts = init;
    /* Connect to the address, verify the name: the same as the baseline's SNI and host check. */
    env->connect_opts.servername = BENCH_SERVER_NAME;
    env->connect_opts.connect_timeout_ms = BENCH_IO_TIMEOUT_MS;
    env->connect_opts.handshake_timeout_ms = BENCH_IO_TIMEOUT_MS;
    env->connect_opts.timeout_ms = BENCH_IO_TIMEOUT_MS;
    *out = env;
    env = NULL;

out:
    tls_teardown(env);
    return rc;
}

/* Takes over @p tls (and @p fd, -1 for none) as a bench connection, even on failure. */
static int wrap(struct tlsock_conn *tls, int fd, void **out)
{
    struct tls_conn *c = malloc(sizeof(*c));

    if (c == NULL) {
        fprintf(stderr, "tlsock: out of memory\n");
        tlsock_close(tls);
        if (fd >= 0) {
            bench_tcp_close(fd);
        }
    } else {
        c->tls = tls;
        c->fd = fd;
        *out = c;
    }
    return c != NULL ? BENCH_OK : BENCH_ERROR;
}

static int tls_listen_fd(void *lis)
{
    return tlsock_listener_fd(lis);
}

static int tls_listen(void *envp, void **out, uint16_t *port)
{
    struct tls_env *env = envp;
    struct tlsock_listener *lis = NULL;
    int rc = check(tlsock_listen(env->server, "127.0.0.1", 0, 128, &lis), "listen", NULL, NULL);

    if (rc == BENCH_OK) {
        *port = tlsock_listener_port(lis);
        *out = lis;
    }
    return rc;
}

static void tls_listen_close(void *lis)
{
    tlsock_listener_close(lis);
}

static int tls_accept(void *envp, void *lis, void **out)
{
    struct tls_env *env = envp;
    struct tlsock_conn *conn = NULL;
    int rc = tlsock_accept(lis, &env->accept_opts, &conn);

    if (rc == TLSOCK_ETIMEDOUT) {
        return BENCH_AGAIN;
    }
    rc = check(rc, "accept", NULL, NULL);
    return rc == BENCH_OK ? wrap(conn, -1, out) : rc;
}

/* In memory mode, BENCH_AGAIN when it needs input. */
static int tls_handshake(void *connp)
{
    struct tls_conn *c = connp;
    int rc = tlsock_handshake(c->tls);

    return rc == TLSOCK_EWANT_READ ? BENCH_AGAIN : check(rc, "handshake", NULL, c);
}

static int tls_connect(void *envp, uint16_t port, void **out)
{
    struct tls_env *env = envp;
    struct tlsock_conn *conn = NULL;
    int rc = check(tlsock_connect(env->connect_ctx, "127.0.0.1", port, &env->connect_opts, &conn),
                   "connect", NULL, NULL);

    return rc == BENCH_OK ? wrap(conn, -1, out) : rc;
}

static int tls_write(void *connp, const void *buf, size_t len)
{
    struct tls_conn *c = connp;

    return check(tlsock_write(c->tls, buf, len), "write", NULL, c);
}

/* In memory mode, BENCH_AGAIN when it needs input. */
static int tls_read(void *connp, void *buf, size_t len, size_t *nread)
{
    struct tls_conn *c = connp;
    int rc = tlsock_read(c->tls, buf, len, nread);

    return rc == TLSOCK_ECLOSED      ? BENCH_CLOSED
           : rc == TLSOCK_EWANT_READ ? BENCH_AGAIN
                                     : check(rc, "read", NULL, c);
}

static int tls_shutdown(void *connp)
{
    struct tls_conn *c = connp;

    return check(tlsock_shutdown(c->tls), "shutdown", NULL, c);
}

static void tls_close(void *connp)
{
    struct tls_conn *c = connp;

    if (c != NULL) {
        tlsock_close(c->tls);
        if (c->fd >= 0) {
            bench_tcp_close(c->fd);
        }
        free(c);
    }
}

/* From tlsock_conn_info(), so that the report proves which implementation carried the data. */
static const char *tls_cipher(void *connp)
{
    struct tls_conn *c = connp;
    const struct tlsock_info *info = NULL;

    return tlsock_conn_info(c->tls, &info) == 0 ? info->cipher : "?";
}

static const char *tls_impl(void *connp)
{
    struct tls_conn *c = connp;
    const struct tlsock_info *info = NULL;

    return tlsock_conn_info(c->tls, &info) == 0 ? info->impl : "?";
}

/* Both ends in memory mode; the client options carry the name to send and verify. */
static int tls_mem_new(void *envp, bool client, void **out)
{
    struct tls_env *env = envp;
    struct tlsock_conn *conn = NULL;
    int rc = check(tlsock_attach_mem(client ? env->client : env->server,
                                     client ? &env->connect_opts : &env->accept_opts, &conn),
                   "attach_mem", NULL, NULL);

    return rc == BENCH_OK ? wrap(conn, -1, out) : rc;
}

static int tls_mem_drain(void *connp, void *buf, size_t cap, size_t *n)
{
    struct tls_conn *c = connp;

    *n = 0;
    return tlsock_conn_pending_output(c->tls) > 0
               ? check(tlsock_drain(c->tls, buf, cap, n), "drain", NULL, c)
               : BENCH_OK;
}

static int tls_mem_feed(void *connp, const void *buf, size_t len)
{
    struct tls_conn *c = connp;

    return check(tlsock_feed(c->tls, buf, len), "feed", NULL, c);
}

/* Resumption is the session cache's: a cache-off context makes full handshakes. */
static void tls_set_resume(void *envp, bool on)
{
    struct tls_env *env = envp;

    env->connect_ctx = on ? env->client : env->fresh_client;
}

static bool tls_resumed(void *connp)
{
    const struct tls_conn *c = connp;

    return tlsock_conn_resumed(c->tls);
}

/* What the fd path and the callback path do the same way, once connected. */
#define TLS_CONN_OPS                                                                               \
    .setup = tls_setup, .teardown = tls_teardown, .handshake = tls_handshake, .write = tls_write,  \
    .read = tls_read, .shutdown = tls_shutdown, .close = tls_close, .cipher = tls_cipher,          \
    .impl = tls_impl, .set_resume = tls_set_resume, .resumed = tls_resumed

const struct bench_ops bench_tlsock_ops = {
    .name = "tlsock",
    .listen = tls_listen,
    .listen_fd = tls_listen_fd,
    .listen_close = tls_listen_close,
    .accept = tls_accept,
    .connect = tls_connect,
    .mem_new = tls_mem_new,
    .mem_drain = tls_mem_drain,
    .mem_feed = tls_mem_feed,
    TLS_CONN_OPS,
};

/* ---- The generic callback path: user callbacks over a blocking socket ---- */

/* The socket's receive timeout (tcp.c) bounds the wait; tlsock maps ETIMEDOUT for the caller. */
static ssize_t sock_read(void *user, void *buf, size_t len)
{
    struct tls_conn *c = user;
    ssize_t n = recv(c->fd, buf, len, 0);

    if (n < 0) {
        n = errno == EAGAIN || errno == EWOULDBLOCK ? TLSOCK_ETIMEDOUT : TLSOCK_ESYS;
    }
    return n;
}

static ssize_t sock_write(void *user, const void *buf, size_t len)
{
    struct tls_conn *c = user;
    ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);

    if (n < 0) {
        n = errno == EAGAIN || errno == EWOULDBLOCK ? TLSOCK_ETIMEDOUT : TLSOCK_ESYS;
    }
    return n;
}

/* TLS over connected socket @p fd through the callbacks; takes the fd over, even on failure. */
static int io_attach(struct tlsock_ctx *ctx, const struct tlsock_opts *opts, int fd, void **out)
{
    struct tls_conn *c = NULL;
    int rc = wrap(NULL, fd, (void **)&c);
    struct tlsock_io io = {.read = sock_read, .write = sock_write, .user = c};

    if (rc == BENCH_OK) {
        rc = check(tlsock_attach_io(ctx, &io, opts, &c->tls), "attach_io", NULL, NULL);
    }
    if (rc == BENCH_OK) {
        *out = c;
    } else {
        tls_close(c);
    }
    return rc;
}

static int io_listen(void *envp, void **out, uint16_t *port)
{
    (void)envp;
    return bench_tcp_listen("tlsock", out, port);
}

static int io_accept(void *envp, void *lis, void **out)
{
    struct tls_env *env = envp;
    int fd = -1;
    int rc = bench_tcp_accept("tlsock", lis, &fd);

    return rc == BENCH_OK ? io_attach(env->server, &env->accept_opts, fd, out) : rc;
}

static int io_connect(void *envp, uint16_t port, void **out)
{
    struct tls_env *env = envp;
    int fd = -1;
    int rc = bench_tcp_dial("tlsock", port, &fd);

    if (rc == BENCH_OK) {
        rc = io_attach(env->connect_ctx, &env->connect_opts, fd, out);
    }
    if (rc == BENCH_OK) {
        rc = tls_handshake(*out);
        if (rc != BENCH_OK) {
            tls_close(*out);
        }
    }
    return rc;
}

const struct bench_ops bench_tlsock_io_ops = {
    .name = "tlsock-io",
    .listen = io_listen,
    .listen_close = bench_tcp_listen_close,
    .listen_fd = bench_tcp_listener_fd,
    .accept = io_accept,
    .connect = io_connect,
    TLS_CONN_OPS,
};
