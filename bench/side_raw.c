/*
 * The baseline: OpenSSL used directly, the way a careful program would with blocking sockets.
 * It is given the same certificates, protocol version and cipher suite as the tlsock side, and
 * the same TCP options tlsock sets (TCP_NODELAY on both ends), so that the ratio between
 * the two measures what tlsock adds on top of OpenSSL and nothing else.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "side_raw.h"

/* The same bounds as tlsock's graceful close (src/net.c). */
#define DRAIN_MS        50
#define DRAIN_MAX_BYTES (64 * 1024)

struct raw_conn {
    SSL *ssl;
    int fd;
};

struct raw_listener {
    int fd;
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
        SSL_CTX_free(env->server);
        SSL_CTX_free(env->client);
        free(env);
    }
}

static int raw_setup(const struct bench_side_config *config, void **out)
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

/*
 * tlsock sets TCP_NODELAY on both ends (a handshake flight is several writes that Nagle would
 * hold back), and bounds every blocking call with a timeout; the baseline does the same.
 */
static void set_socket_options(int fd)
{
    struct timeval tv = {.tv_sec = BENCH_IO_TIMEOUT_MS / 1000,
                         .tv_usec = (BENCH_IO_TIMEOUT_MS % 1000) * 1000};
    int one = 1;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int raw_listen(void *envp, void **out, uint16_t *port)
{
    int rc = BENCH_ERROR;
    struct raw_listener *lis = malloc(sizeof(*lis));
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t len = sizeof(addr);
    int one = 1;

    (void)envp;
    if (lis == NULL) {
        fprintf(stderr, "raw: out of memory\n");
        goto out;
    }
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lis->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lis->fd < 0) {
        perror("raw: socket");
        goto free_lis;
    }
    setsockopt(lis->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lis->fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(lis->fd, 128) != 0 ||
        getsockname(lis->fd, (struct sockaddr *)&addr, &len) != 0) {
        perror("raw: bind/listen");
        goto close_fd;
    }
    *port = ntohs(addr.sin_port);
    *out = lis;
    lis = NULL;
    rc = BENCH_OK;

close_fd:
    if (lis != NULL) {
        close(lis->fd);
    }
free_lis:
    free(lis);
out:
    return rc;
}

static void raw_listen_close(void *lisp)
{
    struct raw_listener *lis = lisp;

    if (lis != NULL) {
        close(lis->fd);
        free(lis);
    }
}

/*
 * Closes @p fd the way tlsock does (tlsock__graceful_close): FIN first, then drop whatever the
 * peer still sends until its EOF, for a bounded time. A plain close() with unread input (the
 * server's session tickets, say) makes the kernel send a reset, which can destroy data the peer
 * has not read yet, such as our last records or close_notify; a correct raw program must avoid
 * that too, so the baseline pays the same cost.
 */
static void lingering_close(int fd)
{
    char buf[4096];
    size_t drained = 0;
    int64_t deadline = bench_now_ns() + (int64_t)DRAIN_MS * 1000000;
    bool done = shutdown(fd, SHUT_WR) != 0;

    while (!done && drained < DRAIN_MAX_BYTES) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        int64_t left_ms = (deadline - bench_now_ns() + 999999) / 1000000;

        if (n > 0) {
            drained += (size_t)n;
        } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            done = true;
        } else if (left_ms <= 0) {
            done = true;
        } else {
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            (void)poll(&pfd, 1, (int)left_ms);
        }
    }
    close(fd);
}

/*
 * Counts the socket BIO's writes, one write(2) each on a blocking socket, for the send calls per
 * MiB figure (bench_send_calls). An increment per call of some 16 KiB: no measurable cost.
 */
static long count_writes(BIO *bio, int oper, const char *argp, size_t len, int argi, long argl,
                         int ret, size_t *processed)
{
    (void)bio;
    (void)argp;
    (void)len;
    (void)argi;
    (void)argl;
    (void)processed;
    if (oper == (BIO_CB_WRITE | BIO_CB_RETURN)) {
        bench_send_calls++;
    }
    return ret;
}

/* Wraps connected socket @p fd in a new SSL object; takes the fd over, even on failure. */
static int wrap_fd(SSL_CTX *ctx, int fd, struct raw_conn **out)
{
    int rc = BENCH_ERROR;
    struct raw_conn *conn = malloc(sizeof(*conn));

    if (conn == NULL) {
        fprintf(stderr, "raw: out of memory\n");
        close(fd);
        goto out;
    }
    conn->fd = fd;
    conn->ssl = SSL_new(ctx);
    if (conn->ssl == NULL || SSL_set_fd(conn->ssl, fd) != 1) {
        bench_ssl_error("SSL_new");
        SSL_free(conn->ssl);
        close(fd);
        free(conn);
        goto out;
    }
    BIO_set_callback_ex(SSL_get_wbio(conn->ssl), count_writes);
    *out = conn;
    rc = BENCH_OK;

out:
    return rc;
}

static int raw_accept(void *envp, void *lisp, void **out)
{
    struct raw_env *env = envp;
    struct raw_listener *lis = lisp;
    struct pollfd pfd = {.fd = lis->fd, .events = POLLIN};
    struct raw_conn *conn = NULL;
    int rc = BENCH_AGAIN;
    int n = poll(&pfd, 1, BENCH_ACCEPT_POLL_MS);
    int fd;

    if (n <= 0) {
        /* A timeout, or EINTR: either way the caller checks its stop flag and comes back. */
        goto out;
    }
    fd = accept4(lis->fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
        perror("raw: accept");
        rc = BENCH_ERROR;
        goto out;
    }
    set_socket_options(fd);
    rc = wrap_fd(env->server, fd, &conn);
    if (rc == BENCH_OK) {
        *out = conn;
    }

out:
    return rc;
}

static int raw_handshake(void *connp)
{
    struct raw_conn *conn = connp;
    int rc = BENCH_OK;

    if (SSL_accept(conn->ssl) != 1) {
        bench_ssl_error("SSL_accept");
        rc = BENCH_ERROR;
    }
    return rc;
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
        lingering_close(conn->fd);
        free(conn);
        /* A peer that closed first can leave write errors queued; they are not this run's. */
        ERR_clear_error();
    }
}

static int raw_connect(void *envp, uint16_t port, void **out)
{
    struct raw_env *env = envp;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    struct raw_conn *conn = NULL;
    int rc = BENCH_ERROR;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0) {
        perror("raw: socket");
        goto out;
    }
    set_socket_options(fd);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        perror("raw: connect");
        close(fd);
        goto out;
    }
    if (wrap_fd(env->client, fd, &conn) != BENCH_OK) {
        goto out;
    }
    if (SSL_set_tlsext_host_name(conn->ssl, BENCH_SERVER_NAME) != 1 ||
        SSL_set1_host(conn->ssl, BENCH_SERVER_NAME) != 1) {
        bench_ssl_error("server name");
        goto close_conn;
    }
    if (SSL_connect(conn->ssl) != 1) {
        bench_ssl_error("SSL_connect");
        goto close_conn;
    }
    *out = conn;
    conn = NULL;
    rc = BENCH_OK;

close_conn:
    raw_close(conn);
out:
    return rc;
}

static int raw_write(void *connp, const void *buf, size_t len)
{
    struct raw_conn *conn = connp;
    int rc = BENCH_OK;

    /* Blocking socket without SSL_MODE_ENABLE_PARTIAL_WRITE: all or nothing. */
    if (len > INT_MAX || SSL_write(conn->ssl, buf, (int)len) != (int)len) {
        bench_ssl_error("SSL_write");
        rc = BENCH_ERROR;
    }
    return rc;
}

static int raw_read(void *connp, void *buf, size_t len, size_t *nread)
{
    struct raw_conn *conn = connp;
    int rc = BENCH_OK;
    int n = SSL_read(conn->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);

    if (n > 0) {
        *nread = (size_t)n;
    } else if (SSL_get_error(conn->ssl, n) == SSL_ERROR_ZERO_RETURN) {
        rc = BENCH_CLOSED;
    } else {
        fprintf(stderr, "raw: SSL_read: SSL_get_error %d, errno %d (%s)\n",
                SSL_get_error(conn->ssl, n), errno, strerror(errno));
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

const struct bench_ops bench_raw_ops = {
    .name = "raw",
    .setup = raw_setup,
    .teardown = raw_teardown,
    .listen = raw_listen,
    .listen_close = raw_listen_close,
    .accept = raw_accept,
    .handshake = raw_handshake,
    .connect = raw_connect,
    .write = raw_write,
    .read = raw_read,
    .shutdown = raw_shutdown,
    .close = raw_close,
    .cipher = raw_cipher,
    .mem_pair = bench_raw_mem_pair,
    .mem_transfer = bench_raw_mem_transfer,
    .mem_close = bench_raw_mem_close,
};
