/*
 * The GnuTLS baseline: GnuTLS used directly, the leanest correct program for each workload:
 * blocking sockets (gnutls_transport_set_int, so GnuTLS does its own socket I/O), nothing per
 * connection that the workload does not need. It gets the same certificates, protocol version,
 * cipher suite and ticket setting as the tlsock side on GnuTLS and the same TCP behaviour and
 * close (tcp.c), so that the ratio measures what tlsock adds on top of GnuTLS.
 *
 * Built only with GnuTLS (BENCH_HAVE_GNUTLS); the -gnutls cases are skipped otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "side.h"

/*
 * GnuTLS asks to repeat a call after GNUTLS_E_AGAIN or GNUTLS_E_INTERRUPTED. On a blocking
 * socket that means a signal, a socket timeout (SO_RCVTIMEO) or a record that carried nothing
 * for the caller (a TLS 1.3 NewSessionTicket); the bound turns a stuck peer into a failure.
 */
#define RETRY_LIMIT 64

/* TLS 1.3 suite names (RFC 8446 appendix B.4) and the GnuTLS priority keyword of each cipher. */
static const struct {
    const char *suite;
    const char *cipher;
} suites[] = {
    {"TLS_AES_128_GCM_SHA256", "AES-128-GCM"},
    {"TLS_AES_256_GCM_SHA384", "AES-256-GCM"},
    {"TLS_CHACHA20_POLY1305_SHA256", "CHACHA20-POLY1305"},
};

struct gtls_conn {
    gnutls_session_t session;
    struct gtls_env *env;
    int fd;
    bool handshaken;
    bool bye_sent;
};

static void gnutls_failure(const char *what, int ret)
{
    fprintf(stderr, "raw-gnutls: %s: %s\n", what, gnutls_strerror(ret));
}

static bool should_retry(int ret, int *tries)
{
    return (ret == GNUTLS_E_AGAIN || ret == GNUTLS_E_INTERRUPTED) && ++*tries < RETRY_LIMIT;
}

const char *bench_gnutls_version(void)
{
    return gnutls_check_version(NULL);
}

/*
 * GnuTLS's defaults ("NORMAL": groups, signature algorithms, cipher order), TLS 1.3 only, and
 * the case's suite if it names one: the same restrictions the tlsock side asks for through
 * tlsock_ctx_set_protocols("1.3") and tlsock_ctx_set_ciphers().
 */
static int make_priority(const char *suite, gnutls_priority_t *out)
{
    char prio[256];
    const char *cipher = NULL;
    const char *errpos = NULL;
    int rc = BENCH_OK;
    int ret;

    for (size_t i = 0; suite != NULL && i < sizeof(suites) / sizeof(suites[0]); i++) {
        if (strcmp(suite, suites[i].suite) == 0) {
            cipher = suites[i].cipher;
        }
    }
    if (suite != NULL && cipher == NULL) {
        fprintf(stderr, "raw-gnutls: no GnuTLS cipher for suite %s\n", suite);
        rc = BENCH_UNSUPPORTED;
        goto out;
    }
    if (cipher != NULL) {
        snprintf(prio, sizeof(prio), "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+%s", cipher);
    } else {
        snprintf(prio, sizeof(prio), "NORMAL:-VERS-ALL:+VERS-TLS1.3");
    }
    ret = gnutls_priority_init(out, prio, &errpos);
    if (ret < 0) {
        fprintf(stderr, "raw-gnutls: priority \"%s\" at \"%s\": %s\n", prio,
                errpos != NULL ? errpos : "", gnutls_strerror(ret));
        rc = BENCH_ERROR;
    }

out:
    return rc;
}

static void gtls_teardown(void *envp)
{
    struct gtls_env *env = envp;

    if (env != NULL) {
        if (env->server_cred != NULL) {
            gnutls_certificate_free_credentials(env->server_cred);
        }
        if (env->client_cred != NULL) {
            gnutls_certificate_free_credentials(env->client_cred);
        }
        if (env->prio != NULL) {
            gnutls_priority_deinit(env->prio);
        }
        gnutls_free(env->ticket_key.data);
        gnutls_free(env->session.data);
        free(env);
    }
}

static int gtls_setup(const struct bench_config *config, void **out)
{
    int rc = BENCH_ERROR;
    struct gtls_env *env = calloc(1, sizeof(*env));
    const gnutls_datum_t cert = {.data = (unsigned char *)config->cert_pem,
                                 .size = (unsigned)strlen(config->cert_pem)};
    const gnutls_datum_t key = {.data = (unsigned char *)config->key_pem,
                                .size = (unsigned)strlen(config->key_pem)};
    const gnutls_datum_t ca = {.data = (unsigned char *)config->ca_pem,
                               .size = (unsigned)strlen(config->ca_pem)};
    int ret;

    if (env == NULL) {
        fprintf(stderr, "raw-gnutls: out of memory\n");
        goto out;
    }
    ret = gnutls_certificate_allocate_credentials(&env->server_cred);
    if (ret >= 0) {
        ret = gnutls_certificate_allocate_credentials(&env->client_cred);
    }
    if (ret < 0) {
        gnutls_failure("credentials", ret);
        goto out;
    }
    ret = gnutls_certificate_set_x509_key_mem(env->server_cred, &cert, &key, GNUTLS_X509_FMT_PEM);
    if (ret < 0) {
        gnutls_failure("server certificate and key", ret);
        goto out;
    }
    /* Returns the number of certificates loaded: none is as bad as an error. */
    ret = gnutls_certificate_set_x509_trust_mem(env->client_cred, &ca, GNUTLS_X509_FMT_PEM);
    if (ret <= 0) {
        gnutls_failure("CA certificate", ret < 0 ? ret : GNUTLS_E_NO_CERTIFICATE_FOUND);
        goto out;
    }
    rc = make_priority(config->suite, &env->prio);
    if (rc != BENCH_OK) {
        goto out;
    }
    /*
     * The server issues session tickets unless the case turns them off, as tlsock's servers (and
     * OpenSSL's) do by default: the same work per handshake on every side, and what the resume
     * cases resume with.
     */
    ret = config->no_tickets ? 0 : gnutls_session_ticket_key_generate(&env->ticket_key);
    if (ret < 0) {
        gnutls_failure("session ticket key", ret);
        rc = BENCH_ERROR;
        goto out;
    }
    *out = env;
    env = NULL;

out:
    gtls_teardown(env);
    return rc;
}

static int gtls_listen(void *envp, void **out, uint16_t *port)
{
    (void)envp;
    return bench_tcp_listen("raw-gnutls", out, port);
}

static void gtls_close(void *connp)
{
    struct gtls_conn *conn = connp;

    if (conn != NULL) {
        /* Like tlsock_close(): a healthy session says close_notify before the socket goes. */
        if (conn->handshaken && !conn->bye_sent) {
            (void)gnutls_bye(conn->session, GNUTLS_SHUT_WR);
        }
        gnutls_deinit(conn->session);
        bench_tcp_close(conn->fd);
        free(conn);
    }
}

/* A session on connected socket @p fd; takes the fd over, even on failure. */
static int wrap_fd(struct gtls_env *env, unsigned flags, int fd, struct gtls_conn **out)
{
    int rc = BENCH_ERROR;
    struct gtls_conn *conn = calloc(1, sizeof(*conn));
    int ret;

    if (conn == NULL) {
        fprintf(stderr, "raw-gnutls: out of memory\n");
        bench_tcp_close(fd);
        goto out;
    }
    conn->fd = fd;
    conn->env = env;
    ret = gnutls_init(&conn->session, flags);
    if (ret < 0) {
        gnutls_failure("gnutls_init", ret);
        bench_tcp_close(fd);
        free(conn);
        goto out;
    }
    ret = gnutls_priority_set(conn->session, env->prio);
    if (ret >= 0) {
        ret = gnutls_credentials_set(conn->session, GNUTLS_CRD_CERTIFICATE,
                                     flags == GNUTLS_SERVER ? env->server_cred : env->client_cred);
    }
    if (ret >= 0 && flags == GNUTLS_SERVER && env->server_session != NULL) {
        ret = env->server_session(conn->session, env->server_session_arg);
    } else if (ret >= 0 && flags == GNUTLS_SERVER) {
        ret = env->ticket_key.size > 0
                  ? gnutls_session_ticket_enable_server(conn->session, &env->ticket_key)
                  : 0;
    } else if (ret >= 0 && env->resume && env->session.size > 0) {
        ret = gnutls_session_set_data(conn->session, env->session.data, env->session.size);
    }
    if (ret < 0) {
        gnutls_failure("session configuration", ret);
        gtls_close(conn);
        goto out;
    }
    gnutls_transport_set_int(conn->session, fd);
    *out = conn;
    rc = BENCH_OK;

out:
    return rc;
}

static int run_handshake(struct gtls_conn *conn, const char *what)
{
    int tries = 0;
    int ret;

    do {
        ret = gnutls_handshake(conn->session);
    } while (ret < 0 && should_retry(ret, &tries));
    if (ret < 0) {
        gnutls_failure(what, ret);
    } else {
        conn->handshaken = true;
    }
    return ret < 0 ? BENCH_ERROR : BENCH_OK;
}

static int gtls_accept(void *envp, void *lis, void **out)
{
    struct gtls_env *env = envp;
    struct gtls_conn *conn = NULL;
    int fd = -1;
    int rc = bench_tcp_accept("raw-gnutls", lis, &fd);

    if (rc == BENCH_OK) {
        rc = wrap_fd(env, GNUTLS_SERVER, fd, &conn);
    }
    if (rc == BENCH_OK) {
        *out = conn;
    }
    return rc;
}

static int gtls_handshake(void *connp)
{
    return run_handshake(connp, "server handshake");
}

static int gtls_connect(void *envp, uint16_t port, void **out)
{
    struct gtls_env *env = envp;
    struct gtls_conn *conn = NULL;
    int fd = -1;
    int rc = bench_tcp_dial("raw-gnutls", port, &fd);
    int ret;

    if (rc == BENCH_OK) {
        rc = wrap_fd(env, GNUTLS_CLIENT, fd, &conn);
    }
    if (rc != BENCH_OK) {
        goto out;
    }
    /* SNI and verification of the chain and the host name, as tlsock's client does. */
    ret = gnutls_server_name_set(conn->session, GNUTLS_NAME_DNS, BENCH_SERVER_NAME,
                                 strlen(BENCH_SERVER_NAME));
    if (ret < 0) {
        gnutls_failure("server name", ret);
        rc = BENCH_ERROR;
        goto close_conn;
    }
    gnutls_session_set_verify_cert(conn->session, BENCH_SERVER_NAME, 0);
    rc = run_handshake(conn, "client handshake");
    if (rc == BENCH_OK) {
        *out = conn;
        conn = NULL;
    }

close_conn:
    gtls_close(conn);
out:
    return rc;
}

/* gnutls_record_send sends at most one record per call, and on a blocking socket all of it. */
static int gtls_write(void *connp, const void *buf, size_t len)
{
    struct gtls_conn *conn = connp;
    const unsigned char *p = buf;
    size_t done = 0;
    int tries = 0;
    int rc = BENCH_OK;

    /* Each pass sends at least one byte or fails, so len passes bound the loop. */
    while (rc == BENCH_OK && done < len) {
        ssize_t ret = gnutls_record_send(conn->session, p + done, len - done);

        if (ret > 0) {
            done += (size_t)ret;
        } else if (!should_retry((int)ret, &tries)) {
            gnutls_failure("gnutls_record_send", ret == 0 ? GNUTLS_E_INTERNAL_ERROR : (int)ret);
            rc = BENCH_ERROR;
        }
    }
    return rc;
}

static int gtls_read(void *connp, void *buf, size_t len, size_t *nread)
{
    struct gtls_conn *conn = connp;
    int tries = 0;
    ssize_t ret;
    int rc = BENCH_OK;

    do {
        ret = gnutls_record_recv(conn->session, buf, len);
    } while (ret < 0 && should_retry((int)ret, &tries));
    if (ret > 0) {
        *nread = (size_t)ret;
    } else if (ret == 0) {
        rc = BENCH_CLOSED;
    } else {
        gnutls_failure("gnutls_record_recv", (int)ret);
        rc = BENCH_ERROR;
    }
    return rc;
}

static int gtls_shutdown(void *connp)
{
    struct gtls_conn *conn = connp;
    int tries = 0;
    int ret;

    do {
        ret = gnutls_bye(conn->session, GNUTLS_SHUT_WR);
    } while (ret < 0 && should_retry(ret, &tries));
    conn->bye_sent = true;
    if (ret < 0) {
        gnutls_failure("gnutls_bye", ret);
    }
    return ret < 0 ? BENCH_ERROR : BENCH_OK;
}

static const char *gtls_cipher(void *connp)
{
    struct gtls_conn *conn = connp;
    const char *name = gnutls_ciphersuite_get(conn->session);

    return name != NULL ? name : "?";
}

static const char *gtls_impl(void *connp)
{
    (void)connp;
    return "gnutls";
}

static void gtls_set_resume(void *envp, bool on)
{
    struct gtls_env *env = envp;

    env->resume = on;
}

/*
 * After the client read the server's TLS 1.3 ticket: the session data the next one offers. In
 * TLS 1.2 without tickets (case_resume_redis.c) the handshake's own session, by its ID.
 */
static int gtls_keep_session(void *connp)
{
    struct gtls_conn *conn = connp;
    gnutls_datum_t data = {NULL, 0};
    bool tls13 = gnutls_protocol_get_version(conn->session) == GNUTLS_TLS1_3;
    int ret =
        !tls13 || (gnutls_session_get_flags(conn->session) & GNUTLS_SFLAGS_SESSION_TICKET) != 0
            ? gnutls_session_get_data2(conn->session, &data)
            : GNUTLS_E_INVALID_SESSION;

    if (ret < 0) {
        gnutls_failure("no resumable session after reading the ticket", ret);
        return BENCH_ERROR;
    }
    gnutls_free(conn->env->session.data);
    conn->env->session = data;
    return BENCH_OK;
}

static bool gtls_resumed(void *connp)
{
    struct gtls_conn *conn = connp;

    return gnutls_session_is_resumed(conn->session) != 0;
}

const struct bench_ops bench_raw_gnutls_ops = {
    .name = "raw-gnutls",
    .setup = gtls_setup,
    .teardown = gtls_teardown,
    .listen = gtls_listen,
    .listen_close = bench_tcp_listen_close,
    .listen_fd = bench_tcp_listener_fd,
    .accept = gtls_accept,
    .handshake = gtls_handshake,
    .connect = gtls_connect,
    .write = gtls_write,
    .read = gtls_read,
    .shutdown = gtls_shutdown,
    .close = gtls_close,
    .cipher = gtls_cipher,
    .impl = gtls_impl,
    .set_resume = gtls_set_resume,
    .keep_session = gtls_keep_session,
    .resumed = gtls_resumed,
    /* No memory-mode case runs on GnuTLS. */
};
