/*
 * The baseline: OpenSSL used directly, the leanest correct program for each workload: blocking
 * sockets with OpenSSL's own socket BIO (or memory BIOs in memory mode), nothing per connection
 * that the workload does not need. It is given the same certificates, protocol version, cipher
 * suite and ticket setting as the tlsock side, the same TCP options tlsock sets (TCP_NODELAY on
 * both ends) and the same close (close_notify, then tlsock's graceful close; tcp.c), so that the
 * ratio between the two measures what tlsock adds on top of OpenSSL and nothing else. Per
 * connection, docs/BENCHMARKS.md lists every call.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "side.h"

struct raw_conn {
    SSL *ssl;
    int fd; /* -1 in memory mode */
    struct raw_env *env;
};

void bench_ssl_error(const char *what)
{
    fprintf(stderr, "raw: %s\n", what);
    ERR_print_errors_fp(stderr);
    ERR_clear_error();
}

static int ctx_common(SSL_CTX *ctx, const char *suite)
{
    int rc = BENCH_OK;

    /* Every case is TLS 1.3 only, like the tlsock side's "1.3" protocol range. */
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1) {
        bench_ssl_error("protocol version");
        rc = BENCH_ERROR;
        goto out;
    }
    if (suite != NULL && SSL_CTX_set_ciphersuites(ctx, suite) != 1) {
        bench_ssl_error("TLS 1.3 cipher suite");
        rc = BENCH_ERROR;
        goto out;
    }

out:
    return rc;
}

static int load_server_cert(SSL_CTX *ctx, const char *cert_pem, const char *key_pem)
{
    int rc = BENCH_ERROR;
    BIO *cbio = BIO_new_mem_buf(cert_pem, -1);
    BIO *kbio = BIO_new_mem_buf(key_pem, -1);
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;

    if (cbio == NULL || kbio == NULL) {
        bench_ssl_error("memory BIO");
        goto out;
    }
    cert = PEM_read_bio_X509(cbio, NULL, NULL, NULL);
    key = PEM_read_bio_PrivateKey(kbio, NULL, NULL, NULL);
    if (cert == NULL || key == NULL || SSL_CTX_use_certificate(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey(ctx, key) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        bench_ssl_error("server certificate and key");
        goto out;
    }
    rc = BENCH_OK;

out:
    EVP_PKEY_free(key);
    X509_free(cert);
    BIO_free(kbio);
    BIO_free(cbio);
    return rc;
}

static int load_ca(SSL_CTX *ctx, const char *ca_pem)
{
    int rc = BENCH_ERROR;
    BIO *bio = BIO_new_mem_buf(ca_pem, -1);
    X509 *ca = NULL;

    if (bio == NULL) {
        bench_ssl_error("memory BIO");
        goto out;
    }
    ca = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    if (ca == NULL || X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), ca) != 1) {
        bench_ssl_error("CA certificate");
        goto out;
    }
    /* tlsock clients verify the chain and the host name; so does the baseline. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    rc = BENCH_OK;

out:
    X509_free(ca);
    BIO_free(bio);
    return rc;
}

static void raw_teardown(void *envp)
{
    struct raw_env *env = envp;

    if (env != NULL) {
        SSL_SESSION_free(env->session);
        SSL_CTX_free(env->server);
        SSL_CTX_free(env->client);
        free(env);
    }
}

static int raw_setup(const struct bench_config *config, void **out)
{
    int rc = BENCH_ERROR;
    struct raw_env *env = calloc(1, sizeof(*env));

    if (env == NULL) {
        fprintf(stderr, "raw: out of memory\n");
        goto out;
    }
    env->server = SSL_CTX_new(TLS_server_method());
    env->client = SSL_CTX_new(TLS_client_method());
    if (env->server == NULL || env->client == NULL) {
        bench_ssl_error("SSL_CTX_new");
        goto out;
    }
    /* No ticket: none sent after the handshake (TLS 1.3 tickets are counted, not an option). */
    if (config->no_tickets) {
        SSL_CTX_set_num_tickets(env->server, 0);
    }
    if (ctx_common(env->server, config->suite) != BENCH_OK ||
        ctx_common(env->client, config->suite) != BENCH_OK ||
        load_server_cert(env->server, config->cert_pem, config->key_pem) != BENCH_OK ||
        load_ca(env->client, config->ca_pem) != BENCH_OK) {
        goto out;
    }
    *out = env;
    env = NULL;
    rc = BENCH_OK;

out:
    raw_teardown(env);
    return rc;
}

static int raw_listen(void *envp, void **out, uint16_t *port)
{
    (void)envp;
    return bench_tcp_listen("raw", out, port);
}

/*
 * A new SSL object on connected socket @p fd (taken over, even on failure), or on two memory BIOs
 * with @p fd -1 (memory mode), in the client or the server state.
 */
static int new_conn(struct raw_env *env, bool client, int fd, void **out)
{
    struct raw_conn *conn = malloc(sizeof(*conn));
    SSL *ssl = SSL_new(client ? env->client : env->server);
    BIO *in = fd < 0 ? BIO_new(BIO_s_mem()) : NULL;
    BIO *wbio = fd < 0 ? BIO_new(BIO_s_mem()) : NULL;
    bool ok = conn != NULL && ssl != NULL && (fd >= 0 ? SSL_set_fd(ssl, fd) == 1 : in && wbio);

    if (ok && fd < 0) {
        /* An empty input BIO means "no more yet" (WANT_READ), not the end of the stream. */
        BIO_set_mem_eof_return(in, -1);
        SSL_set_bio(ssl, in, wbio);
        in = NULL;
        wbio = NULL;
    }
    if (ok && client) {
        SSL_set_connect_state(ssl);
        /* tlsock clients send SNI and verify the chain and the host name; so does the baseline. */
        ok = SSL_set_tlsext_host_name(ssl, BENCH_SERVER_NAME) == 1 &&
             SSL_set1_host(ssl, BENCH_SERVER_NAME) == 1 &&
             (!env->resume || env->session == NULL || SSL_set_session(ssl, env->session) == 1);
    } else if (ok) {
        SSL_set_accept_state(ssl);
    }
    BIO_free(in);
    BIO_free(wbio);
    if (!ok) {
        bench_ssl_error("new connection");
        SSL_free(ssl);
        free(conn);
        if (fd >= 0) {
            close(fd);
        }
        return BENCH_ERROR;
    }
    conn->ssl = ssl;
    conn->fd = fd;
    conn->env = env;
    *out = conn;
    return BENCH_OK;
}

static int raw_accept(void *envp, void *lis, void **out)
{
    int fd = -1;
    int rc = bench_tcp_accept("raw", lis, &fd);

    return rc == BENCH_OK ? new_conn(envp, false, fd, out) : rc;
}

/* In memory mode, BENCH_AGAIN when it needs input. */
static int raw_handshake(void *connp)
{
    struct raw_conn *conn = connp;
    int n = SSL_do_handshake(conn->ssl);

    if (n == 1) {
        return BENCH_OK;
    }
    if (conn->fd < 0 && SSL_get_error(conn->ssl, n) == SSL_ERROR_WANT_READ) {
        return BENCH_AGAIN;
    }
    bench_ssl_error("SSL_do_handshake");
    return BENCH_ERROR;
}

static void raw_close(void *connp)
{
    struct raw_conn *conn = connp;

    if (conn != NULL) {
        /* Like tlsock_close(): a healthy session says close_notify before the socket goes. */
        if (SSL_is_init_finished(conn->ssl) &&
            (SSL_get_shutdown(conn->ssl) & SSL_SENT_SHUTDOWN) == 0) {
            (void)SSL_shutdown(conn->ssl);
        }
        SSL_free(conn->ssl);
        if (conn->fd >= 0) {
            bench_tcp_close(conn->fd);
        }
        free(conn);
        /* A peer that closed first can leave write errors queued; they are not this run's. */
        ERR_clear_error();
    }
}

static int raw_connect(void *envp, uint16_t port, void **out)
{
    int fd = -1;
    int rc = bench_tcp_dial("raw", port, &fd);

    if (rc == BENCH_OK) {
        rc = new_conn(envp, true, fd, out);
    }
    if (rc == BENCH_OK) {
        rc = raw_handshake(*out);
        if (rc != BENCH_OK) {
            raw_close(*out);
        }
    }
    return rc;
}

static int raw_write(void *connp, const void *buf, size_t len)
{
    struct raw_conn *conn = connp;
    int rc = BENCH_OK;

    /* Blocking socket or memory BIO, without SSL_MODE_ENABLE_PARTIAL_WRITE: all or nothing. */
    if (len > INT_MAX || SSL_write(conn->ssl, buf, (int)len) != (int)len) {
        bench_ssl_error("SSL_write");
        rc = BENCH_ERROR;
    }
    return rc;
}

/* In memory mode, BENCH_AGAIN when it needs input. */
static int raw_read(void *connp, void *buf, size_t len, size_t *nread)
{
    struct raw_conn *conn = connp;
    int rc = BENCH_OK;
    int n = SSL_read(conn->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    int err = n > 0 ? SSL_ERROR_NONE : SSL_get_error(conn->ssl, n);

    if (n > 0) {
        *nread = (size_t)n;
    } else if (err == SSL_ERROR_ZERO_RETURN) {
        rc = BENCH_CLOSED;
    } else if (err == SSL_ERROR_WANT_READ && conn->fd < 0) {
        rc = BENCH_AGAIN;
    } else {
        fprintf(stderr, "raw: SSL_read: SSL_get_error %d, errno %d (%s)\n", err, errno,
                strerror(errno));
        bench_ssl_error("SSL_read");
        rc = BENCH_ERROR;
    }
    return rc;
}

static int raw_shutdown(void *connp)
{
    struct raw_conn *conn = connp;
    int rc = BENCH_OK;

    if (SSL_shutdown(conn->ssl) < 0) {
        bench_ssl_error("SSL_shutdown");
        rc = BENCH_ERROR;
    }
    return rc;
}

static const char *raw_cipher(void *connp)
{
    struct raw_conn *conn = connp;

    return SSL_get_cipher_name(conn->ssl);
}

static const char *raw_impl(void *connp)
{
    (void)connp;
    return "openssl";
}

/*
 * Memory mode, as a program that moves ciphertext itself (an event loop, a tunnel) uses OpenSSL:
 * BIO_read from the writer's output BIO, BIO_write into the reader's input BIO, the same two
 * copies that tlsock_drain() and tlsock_feed() make.
 */
static int raw_mem_new(void *envp, bool client, void **out)
{
    return new_conn(envp, client, -1, out);
}

static int raw_mem_drain(void *connp, void *buf, size_t cap, size_t *n)
{
    struct raw_conn *conn = connp;
    BIO *out = SSL_get_wbio(conn->ssl);
    int r = BIO_ctrl_pending(out) > 0 ? BIO_read(out, buf, cap > INT_MAX ? INT_MAX : (int)cap) : 0;

    *n = r > 0 ? (size_t)r : 0;
    if (r < 0) {
        bench_ssl_error("BIO_read");
    }
    return r < 0 ? BENCH_ERROR : BENCH_OK;
}

static int raw_mem_feed(void *connp, const void *buf, size_t len)
{
    struct raw_conn *conn = connp;

    if (len > INT_MAX || BIO_write(SSL_get_rbio(conn->ssl), buf, (int)len) != (int)len) {
        bench_ssl_error("BIO_write");
        return BENCH_ERROR;
    }
    return BENCH_OK;
}

static void raw_set_resume(void *envp, bool on)
{
    struct raw_env *env = envp;

    env->resume = on;
}

/*
 * After the client read the server's TLS 1.3 tickets, the connection's session is the one of the
 * latest ticket (OpenSSL makes a new SSL_SESSION per ticket): what the next connection offers.
 */
static int raw_keep_session(void *connp)
{
    struct raw_conn *conn = connp;
    SSL_SESSION *session = SSL_get1_session(conn->ssl);

    if (session == NULL || SSL_SESSION_is_resumable(session) != 1) {
        fprintf(stderr, "raw: no resumable session after reading the tickets\n");
        SSL_SESSION_free(session);
        return BENCH_ERROR;
    }
    SSL_SESSION_free(conn->env->session);
    conn->env->session = session;
    return BENCH_OK;
}

static bool raw_resumed(void *connp)
{
    struct raw_conn *conn = connp;

    return SSL_session_reused(conn->ssl) == 1;
}

const struct bench_ops bench_raw_ops = {
    .name = "raw",
    .setup = raw_setup,
    .teardown = raw_teardown,
    .listen = raw_listen,
    .listen_close = bench_tcp_listen_close,
    .listen_fd = bench_tcp_listener_fd,
    .accept = raw_accept,
    .handshake = raw_handshake,
    .connect = raw_connect,
    .write = raw_write,
    .read = raw_read,
    .shutdown = raw_shutdown,
    .close = raw_close,
    .cipher = raw_cipher,
    .impl = raw_impl,
    .mem_new = raw_mem_new,
    .mem_drain = raw_mem_drain,
    .mem_feed = raw_mem_feed,
    .set_resume = raw_set_resume,
    .keep_session = raw_keep_session,
    .resumed = raw_resumed,
};
