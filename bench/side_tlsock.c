/*
 * The measured side: the same workload through tlsock's public API only (blocking driver,
 * listener, tlsock_connect), as an application would use it; with opts.fd_callbacks on both ends
 * when the case asks for the generic callback path, and both contexts on the case's
 * implementation (tlsock_ctx_set_impl).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "side_tlsock.h"

static int check(int rc, const char *what, const struct tlsock_ctx *ctx)
{
    if (rc != 0) {
        fprintf(stderr, "tlsock: %s: %s: %s\n", what, tlsock_err_name(rc),
                ctx != NULL ? tlsock_ctx_errmsg(ctx) : tlsock_errmsg());
    }
    return rc == 0 ? BENCH_OK : BENCH_ERROR;
}

/*
 * tlsock_ctx_set_ciphers() passes a string that is not a policy name to the implementation: for
 * OpenSSL, names that start with "TLS_" go to the TLS 1.3 suite list; GnuTLS maps them to its
 * cipher names in the priority string. Should an implementation refuse, the case
 * falls back to the default suite on both sides and says so, rather than failing.
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
        free(env);
    }
}

static int tls_setup(const struct bench_side_config *config, void **out)
{
    int rc = BENCH_ERROR;
    struct tls_env *env = calloc(1, sizeof(*env));
    const struct tlsock_opts init = TLSOCK_OPTS_INIT;

    if (env == NULL) {
        fprintf(stderr, "tlsock: out of memory\n");
        goto out;
    }
    if (check(tlsock_ctx_new(TLSOCK_SERVER, &env->server), "server context", NULL) != BENCH_OK ||
        check(tlsock_ctx_new(TLSOCK_CLIENT, &env->client), "client context", NULL) != BENCH_OK) {
        goto out;
    }
    /*
     * Pinned, so that a TLSOCK_IMPL environment variable cannot pair tlsock on one implementation
     * with the other's raw baseline; set_impl must precede every other setter.
     */
    if (check(tlsock_ctx_set_impl(env->server, config->impl), "implementation", env->server) != 0 ||
        check(tlsock_ctx_set_impl(env->client, config->impl), "implementation", env->client) != 0) {
        goto out;
    }
    if (check(tlsock_ctx_set_protocols(env->server, "1.3"), "protocols", env->server) != 0 ||
        check(tlsock_ctx_set_protocols(env->client, "1.3"), "protocols", env->client) != 0 ||
        check(tlsock_ctx_set_cert_mem(env->server, config->cert_pem, strlen(config->cert_pem),
                                      config->key_pem, strlen(config->key_pem)),
              "server certificate", env->server) != 0 ||
        check(tlsock_ctx_set_ca_mem(env->client, config->ca_pem, strlen(config->ca_pem)), "CA",
              env->client) != 0) {
        goto out;
    }
    rc = select_suite(env->server, config->suite);
    if (rc == BENCH_OK) {
        rc = select_suite(env->client, config->suite);
    }
    if (rc != BENCH_OK) {
        goto out;
    }
    env->accept_opts = init;
    env->accept_opts.connect_timeout_ms = BENCH_ACCEPT_POLL_MS;
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
    rc = BENCH_OK;

out:
    tls_teardown(env);
    return rc;
}

static int tls_listen(void *envp, void **out, uint16_t *port)
{
    struct tls_env *env = envp;
    struct tlsock_listener *lis = NULL;
    int rc = check(tlsock_listen(env->server, "127.0.0.1", 0, 128, &lis), "listen", NULL);

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

    if (rc == 0) {
        *out = conn;
    }
    if (rc == TLSOCK_ETIMEDOUT) {
        rc = BENCH_AGAIN;
    } else {
        rc = check(rc, "accept", NULL);
    }
    return rc;
}

static int tls_handshake(void *conn)
{
    int rc = tlsock_handshake(conn);

    if (rc != 0) {
        fprintf(stderr, "tlsock: server handshake: %s: %s\n", tlsock_err_name(rc),
                tlsock_conn_errmsg(conn));
    }
    return rc == 0 ? BENCH_OK : BENCH_ERROR;
}

static int tls_connect(void *envp, uint16_t port, void **out)
{
    struct tls_env *env = envp;
    struct tlsock_conn *conn = NULL;
    int rc = check(tlsock_connect(env->client, "127.0.0.1", port, &env->connect_opts, &conn),
                   "connect", NULL);

    if (rc == BENCH_OK) {
        *out = conn;
    }
    return rc;
}

static int tls_write(void *conn, const void *buf, size_t len)
{
    int rc = tlsock_write(conn, buf, len);

    if (rc != 0) {
        fprintf(stderr, "tlsock: write: %s: %s\n", tlsock_err_name(rc), tlsock_conn_errmsg(conn));
    }
    return rc == 0 ? BENCH_OK : BENCH_ERROR;
}

static int tls_read(void *conn, void *buf, size_t len, size_t *nread)
{
    int rc = tlsock_read(conn, buf, len, nread);

    if (rc == TLSOCK_ECLOSED) {
        rc = BENCH_CLOSED;
    } else if (rc != 0) {
        fprintf(stderr, "tlsock: read: %s: %s\n", tlsock_err_name(rc), tlsock_conn_errmsg(conn));
        rc = BENCH_ERROR;
    }
    return rc;
}

static int tls_shutdown(void *conn)
{
    int rc = tlsock_shutdown(conn);

    if (rc != 0) {
        fprintf(stderr, "tlsock: shutdown: %s: %s\n", tlsock_err_name(rc),
                tlsock_conn_errmsg(conn));
    }
    return rc == 0 ? BENCH_OK : BENCH_ERROR;
}

static void tls_close(void *conn)
{
    tlsock_close(conn);
}

static const char *tls_cipher(void *conn)
{
    const struct tlsock_info *info = NULL;
    const char *cipher = "?";

    if (tlsock_conn_info(conn, &info) == 0) {
        cipher = info->cipher;
    }
    return cipher;
}

/* From tlsock_conn_info(), so that the report proves which implementation carried the data. */
static const char *tls_impl(void *conn)
{
    const struct tlsock_info *info = NULL;
    const char *impl = "?";

    if (tlsock_conn_info(conn, &info) == 0) {
        impl = info->impl;
    }
    return impl;
}

const struct bench_ops bench_tlsock_ops = {
    .name = "tlsock",
    .setup = tls_setup,
    .teardown = tls_teardown,
    .listen = tls_listen,
    .listen_close = tls_listen_close,
    .accept = tls_accept,
    .handshake = tls_handshake,
    .connect = tls_connect,
    .write = tls_write,
    .read = tls_read,
    .shutdown = tls_shutdown,
    .close = tls_close,
    .cipher = tls_cipher,
    .impl = tls_impl,
    .mem_pair = bench_tlsock_mem_pair,
    .mem_transfer = bench_tlsock_mem_transfer,
    .mem_close = bench_tlsock_mem_close,
};
