/* Loopback TLS: data both ways at record-boundary sizes, connection info, IPv6, reference
 * counts and development certificates. */
#include "support.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct size_case {
    size_t size;
    const char *protocols; /* client range, NULL for the default */
};

/* 16384 is TLS's maximum record payload: one byte below, at and above it, and many records. */
static const struct size_case size_cases[] = {
    {.size = 0},
    {.size = 1},
    {.size = 16383},
    {.size = 16384},
    {.size = 16385},
    {.size = 1024 * 1024},
    {.size = 16385, .protocols = "1.2-1.2"},
    {.size = 1024 * 1024, .protocols = "1.2-1.2"},
};

static void run_exchange(struct ts_env *env, const char *host, const struct size_case *c)
{
    struct ts_exchange ex = {.size = c->size};
    struct tlsock_opts opts = ts_opts();

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    if (c->protocols != NULL) {
        TS_ASSERT_RC(tlsock_ctx_set_protocols(env->cctx, c->protocols), 0);
    }
    TS_ASSERT_RC(ts_server_start(&env->srv, env->sctx, host, NULL, ts_serve_exchange, &ex), 0);
    TS_ASSERT_RC(tlsock_connect(env->cctx, host, env->srv.port, &opts, &env->client), 0);
    TS_ASSERT_RC(ts_client_exchange(env->client, c->size), 0);
    tlsock_close(env->client);
    env->client = NULL;
    ts_server_stop(&env->srv);
    TS_ASSERT_RC_MSG(env->srv.result, 0, env->srv.errmsg);
    /* The client's tlsock_close() sent close_notify: the server saw a clean end. */
    TS_ASSERT_RC_MSG(ex.final_rc, TLSOCK_ECLOSED, env->srv.errmsg);
}

static void test_sizes(void **state)
{
    for (size_t i = 0; i < sizeof(size_cases) / sizeof(size_cases[0]); i++) {
        print_message("size %zu, protocols %s\n", size_cases[i].size,
                      size_cases[i].protocols ? size_cases[i].protocols : "default");
        ts_env_renew(state, i);
        run_exchange(*state, "127.0.0.1", &size_cases[i]);
    }
}

static void test_ipv6(void **state)
{
    const struct size_case c = {.size = 20000};

    if (!ts_ipv6_available()) {
        print_message("::1 is not available here\n");
        skip();
    }
    run_exchange(*state, "::1", &c);
}

/* A listener on every address (host NULL) answers on both loopbacks. */
static void test_listen_all_addresses(void **state)
{
    static const char *const hosts[] = {"127.0.0.1", "::1"};
    const struct size_case c = {.size = 1000};

    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        struct ts_exchange ex = {.size = c.size};
        struct tlsock_opts opts = ts_opts();
        struct ts_env *env;

        if (strchr(hosts[i], ':') != NULL && !ts_ipv6_available()) {
            print_message("::1 is not available here\n");
            continue;
        }
        ts_env_renew(state, i);
        env = *state;
        TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
        TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
        TS_ASSERT_RC(ts_server_start(&env->srv, env->sctx, "*", NULL, ts_serve_exchange, &ex), 0);
        TS_ASSERT_RC(tlsock_connect(env->cctx, hosts[i], env->srv.port, &opts, &env->client), 0);
        TS_ASSERT_RC(ts_client_exchange(env->client, c.size), 0);
        tlsock_close(env->client);
        env->client = NULL;
        ts_server_stop(&env->srv);
        TS_ASSERT_RC_MSG(env->srv.result, 0, env->srv.errmsg);
    }
}

/* The server's view of the connection, copied out of its thread. */
struct server_view {
    int handshake_rc;
    int final_rc;
    char impl[16];
    char version[32];
    char servername[256];
    char peer_subject[512];
    bool nodelay; /* the accepted socket has TCP_NODELAY (inherited from the listener on Linux) */
};

/* Whether @p conn's socket sends small segments at once: TLS flights must not wait for Nagle. */
static bool has_nodelay(const struct tlsock_conn *conn)
{
    int on = 0;
    socklen_t len = sizeof(on);

    return getsockopt(tlsock_conn_fd(conn), IPPROTO_TCP, TCP_NODELAY, &on, &len) == 0 && on != 0;
}

static int serve_info(struct tlsock_conn *conn, void *arg)
{
    struct server_view *view = arg;
    const struct tlsock_info *info = NULL;
    unsigned char byte;
    size_t n = 0;
    int rc = tlsock_handshake(conn);

    view->handshake_rc = rc;
    view->nodelay = has_nodelay(conn);
    if (rc == 0) {
        rc = tlsock_conn_info(conn, &info);
    }
    if (rc == 0) {
        snprintf(view->impl, sizeof(view->impl), "%s", info->impl);
        snprintf(view->version, sizeof(view->version), "%s", info->version);
        snprintf(view->servername, sizeof(view->servername), "%s", info->servername);
        snprintf(view->peer_subject, sizeof(view->peer_subject), "%s", info->peer_subject);
        view->final_rc = tlsock_read(conn, &byte, 1, &n);
    }
    return rc;
}

struct info_case {
    const char *what;
    const char *host;       /* what the client connects to */
    const char *servername; /* opts.servername, NULL: default */
    const char *want_sni;   /* what the server receives */
};

static const struct info_case info_cases[] = {
    /* RFC 6066: no SNI for an IP literal. */
    {.what = "IP literal", .host = "127.0.0.1", .servername = NULL, .want_sni = ""},
    {.what = "SNI override",
     .host = "127.0.0.1",
     .servername = "localhost",
     .want_sni = "localhost"},
    /* /etc/hosts maps localhost to loopback; the host name is both SNI and verify name. */
    {.what = "host name", .host = "localhost", .servername = NULL, .want_sni = "localhost"},
};

static void check_client_info(const struct tlsock_info *info, const char *want_impl,
                              const char *want_sni)
{
    char fp[TLSOCK_FINGERPRINT_SIZE];

    assert_non_null(info);
    /* The connection reports the implementation its context chose. */
    assert_string_equal(info->impl, want_impl);
    assert_string_equal(info->version, "TLSv1.3");
    /* TLS 1.3 suites are named TLS_AEAD_HASH (RFC 8446 appendix B.4). */
    assert_true(strncmp(info->cipher, "TLS_", 4) == 0);
    assert_string_equal(info->alpn, "");
    assert_string_equal(info->servername, want_sni);
    TS_ASSERT_CONTAINS(info->peer_subject, TS_SERVER_CN);
    TS_ASSERT_CONTAINS(info->peer_sans, "localhost");
    TS_ASSERT_CONTAINS(info->peer_sans, "127.0.0.1");
    TS_ASSERT_CONTAINS(info->peer_sans, "::1");
    TS_ASSERT_RC(tlsock_cert_fingerprint(ts_pki.server.cert, strlen(ts_pki.server.cert), fp), 0);
    assert_string_equal(info->peer_fingerprint, fp);
    assert_int_equal(info->verify_result, 0);
    assert_string_equal(info->verify_message, "ok");
    assert_false(info->resumed);
}

static void test_info(void **state)
{
    for (size_t i = 0; i < sizeof(info_cases) / sizeof(info_cases[0]); i++) {
        const struct info_case *c = &info_cases[i];
        struct server_view view = {.handshake_rc = TS_NOT_RUN, .final_rc = TS_NOT_RUN};
        struct tlsock_opts opts = ts_opts();
        const struct tlsock_info *info = NULL;
        struct ts_env *env;

        print_message("%s\n", c->what);
        ts_env_renew(state, i);
        env = *state;
        opts.servername = c->servername;
        TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
        TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
        TS_ASSERT_RC(ts_server_start(&env->srv, env->sctx, NULL, NULL, serve_info, &view), 0);
        TS_ASSERT_RC(tlsock_connect(env->cctx, c->host, env->srv.port, &opts, &env->client), 0);
        TS_ASSERT_RC(tlsock_conn_info(env->client, &info), 0);
        check_client_info(info, tlsock_impl_name(tlsock_ctx_impl(env->cctx)), c->want_sni);
        assert_true(tlsock_conn_fd(env->client) >= 0);
        assert_true(has_nodelay(env->client));
        tlsock_close(env->client);
        env->client = NULL;
        ts_server_stop(&env->srv);
        TS_ASSERT_RC_MSG(env->srv.result, 0, env->srv.errmsg);
        assert_string_equal(view.impl, tlsock_impl_name(tlsock_ctx_impl(env->sctx)));
        assert_string_equal(view.version, "TLSv1.3");
        assert_string_equal(view.servername, c->want_sni);
        /* No client certificate was asked for. */
        assert_string_equal(view.peer_subject, "");
        assert_true(view.nodelay);
        TS_ASSERT_RC(view.final_rc, TLSOCK_ECLOSED);
    }
}

/* The caller may drop its context references while connections and listeners still use them. */
static void test_ctx_outlives_caller_reference(void **state)
{
    struct ts_env *env = *state;
    struct ts_exchange ex = {.size = 50000};
    struct tlsock_opts opts = ts_opts();
    const struct tlsock_info *info = NULL;

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    TS_ASSERT_RC(ts_server_start(&env->srv, env->sctx, NULL, NULL, ts_serve_exchange, &ex), 0);
    tlsock_ctx_free(env->sctx);
    env->sctx = NULL;
    TS_ASSERT_RC(tlsock_connect(env->cctx, "127.0.0.1", env->srv.port, &opts, &env->client), 0);
    tlsock_ctx_free(env->cctx);
    env->cctx = NULL;
    /* Both contexts now live only through the listener and the connections. */
    TS_ASSERT_RC(ts_client_exchange(env->client, ex.size), 0);
    TS_ASSERT_RC(tlsock_conn_info(env->client, &info), 0);
    TS_ASSERT_CONTAINS(info->peer_subject, TS_SERVER_CN);
    tlsock_close(env->client);
    env->client = NULL;
    ts_server_stop(&env->srv);
    TS_ASSERT_RC_MSG(env->srv.result, 0, env->srv.errmsg);
}

/* tlsock_devcert_new() output works end to end for a name and an address. */
static void test_devcert_handshake(void **state)
{
    struct ts_env *env = *state;
    struct ts_exchange ex = {.size = 100};
    struct tlsock_opts opts = ts_opts();
    char *ca = NULL;
    char *cert = NULL;
    char *key = NULL;
    int rc;

    TS_ASSERT_RC(tlsock_devcert_new("localhost,127.0.0.1", &ca, &cert, &key), 0);
    rc = ts_ctx_new(TLSOCK_SERVER, &env->sctx);
    if (rc == 0) {
        rc = tlsock_ctx_set_cert_mem(env->sctx, cert, strlen(cert), key, strlen(key));
    }
    if (rc == 0) {
        rc = ts_client_ctx_new(ca, &env->cctx);
    }
    tlsock_free(ca);
    tlsock_free(cert);
    tlsock_free(key);
    TS_ASSERT_RC(rc, 0);
    TS_ASSERT_RC(ts_server_start(&env->srv, env->sctx, NULL, NULL, ts_serve_exchange, &ex), 0);
    TS_ASSERT_RC(tlsock_connect(env->cctx, "127.0.0.1", env->srv.port, &opts, &env->client), 0);
    TS_ASSERT_RC(ts_client_exchange(env->client, ex.size), 0);
    tlsock_close(env->client);
    env->client = NULL;
    ts_server_stop(&env->srv);
    TS_ASSERT_RC_MSG(env->srv.result, 0, env->srv.errmsg);
}

/* Short reads: a 1-byte buffer receives a multi-record message one byte at a time. */
static int serve_send_then_close(struct tlsock_conn *conn, void *arg)
{
    size_t size = *(size_t *)arg;
    unsigned char *buf = malloc(size);
    int rc = TS_ESETUP;

    if (buf != NULL) {
        ts_fill(buf, size, 3);
        rc = tlsock_write(conn, buf, size);
        free(buf);
    }
    if (rc == 0) {
        rc = tlsock_shutdown(conn);
    }
    return rc;
}

static void test_short_reads(void **state)
{
    struct ts_env *env = *state;
    size_t size = 20000;
    struct tlsock_opts opts = ts_opts();
    unsigned char *got = malloc(size);
    size_t total = 0;
    int rc = 0;
    bool same;

    assert_non_null(got);
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    TS_ASSERT_RC(ts_server_start(&env->srv, env->sctx, NULL, NULL, serve_send_then_close, &size),
                 0);
    TS_ASSERT_RC(tlsock_connect(env->cctx, "127.0.0.1", env->srv.port, &opts, &env->client), 0);
    /* Bounded: one byte per successful read, so size + 1 reads at most. */
    for (size_t i = 0; i <= size && rc == 0; i++) {
        size_t n = 0;

        rc = tlsock_read(env->client, got + total, total < size ? 1 : size, &n);
        if (rc == 0) {
            assert_int_equal(n, 1);
            total++;
        }
    }
    TS_ASSERT_RC_MSG(rc, TLSOCK_ECLOSED, tlsock_conn_errmsg(env->client));
    assert_int_equal(total, size);
    same = ts_same_pattern(got, size, 3);
    free(got);
    assert_true(same);
    ts_server_stop(&env->srv);
    TS_ASSERT_RC_MSG(env->srv.result, 0, env->srv.errmsg);
}

static void test_connection_refused(void **state)
{
    struct ts_env *env = *state;
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    uint16_t port = 0;
    int fd = -1;

    /* A port that was free a moment ago: bind it, learn it, release it. */
    assert_int_equal(ts_raw_listen("127.0.0.1", 0, &fd, &port), 0);
    close(fd);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    TS_ASSERT_RC(tlsock_connect(env->cctx, "127.0.0.1", port, &opts, &conn), TLSOCK_ESYS);
    assert_null(conn);
    TS_ASSERT_CONTAINS(tlsock_errmsg(), "refused");
    assert_false(tlsock_err_is_tls(TLSOCK_ESYS));
}

/* Argument errors are the caller's mistake, not the session's: the connection stays usable. */
static void test_bad_arguments_not_fatal(void **state)
{
    struct ts_env *env = *state;
    struct ts_exchange ex = {.size = 1000};
    struct tlsock_opts opts = ts_opts();
    unsigned char byte;
    size_t n = 0;

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    TS_ASSERT_RC(ts_server_start(&env->srv, env->sctx, NULL, NULL, ts_serve_exchange, &ex), 0);
    TS_ASSERT_RC(tlsock_connect(env->cctx, "127.0.0.1", env->srv.port, &opts, &env->client), 0);
    TS_ASSERT_RC(tlsock_read(env->client, NULL, 1, &n), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_read(env->client, &byte, 1, NULL), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_write(env->client, NULL, 1), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_conn_info(env->client, NULL), TLSOCK_EINVAL);
    assert_true(strlen(tlsock_conn_errmsg(env->client)) > 0);
    /* Writing nothing is a successful no-op. */
    TS_ASSERT_RC(tlsock_write(env->client, NULL, 0), 0);
    TS_ASSERT_RC(ts_client_exchange(env->client, ex.size), 0);
    tlsock_close(env->client);
    env->client = NULL;
    ts_server_stop(&env->srv);
    TS_ASSERT_RC_MSG(env->srv.result, 0, env->srv.errmsg);
    TS_ASSERT_RC(ex.final_rc, TLSOCK_ECLOSED);
}

static void test_listen_port_in_use(void **state)
{
    struct ts_env *env = *state;
    struct tlsock_listener *first = NULL;
    struct tlsock_listener *second = NULL;
    int rc;

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(tlsock_listen(env->sctx, "127.0.0.1", 0, 0, &first), 0);
    assert_int_not_equal(tlsock_listener_port(first), 0);
    assert_string_equal(tlsock_listener_errmsg(first), "");
    rc = tlsock_listen(env->sctx, "127.0.0.1", tlsock_listener_port(first), 0, &second);
    tlsock_listener_close(first);
    tlsock_listener_close(second);
    TS_ASSERT_RC(rc, TLSOCK_ESYS);
    assert_null(second);
    TS_ASSERT_CONTAINS(tlsock_errmsg(), "in use");
}

static int count_fds(void)
{
    int count = 0;

    /* Bounded by the descriptor limit; fcntl() finds open descriptors without /proc. */
    for (int fd = 0; fd < 1024; fd++) {
        if (fcntl(fd, F_GETFD) != -1) {
            count++;
        }
    }
    return count;
}

/* Success and failure paths alike give back every descriptor they opened. */
static void test_no_descriptor_leak(void **state)
{
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    struct tlsock_ctx *untrusting = NULL;
    int before = count_fds();
    int lfd = -1;
    uint16_t port = 0;

    for (int round = 0; round < 3; round++) {
        struct ts_exchange ex = {.size = 100};
        struct ts_env *env;

        ts_env_renew(state, (size_t)round);
        env = *state;
        TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
        TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
        /* A good exchange. */
        TS_ASSERT_RC(ts_server_start(&env->srv, env->sctx, NULL, NULL, ts_serve_exchange, &ex), 0);
        TS_ASSERT_RC(tlsock_connect(env->cctx, "127.0.0.1", env->srv.port, &opts, &env->client), 0);
        TS_ASSERT_RC(ts_client_exchange(env->client, ex.size), 0);
        tlsock_close(env->client);
        env->client = NULL;
        ts_server_stop(&env->srv);
        /* A verification failure. */
        TS_ASSERT_RC(ts_client_ctx_new(ts_pki.other_ca.cert, &untrusting), 0);
        TS_ASSERT_RC(ts_server_start(&env->srv, env->sctx, NULL, NULL, ts_serve_exchange, &ex), 0);
        TS_ASSERT_RC(tlsock_connect(untrusting, "127.0.0.1", env->srv.port, &opts, &conn),
                     TLSOCK_EVERIFY);
        tlsock_ctx_free(untrusting);
        untrusting = NULL;
        ts_server_stop(&env->srv);
        /* A handshake timeout against a silent listener, then a refused connection. */
        assert_int_equal(ts_raw_listen("127.0.0.1", 0, &lfd, &port), 0);
        opts.handshake_timeout_ms = 50;
        TS_ASSERT_RC(tlsock_connect(env->cctx, "127.0.0.1", port, &opts, &conn),
                     TLSOCK_EHANDSHAKE_TIMEOUT);
        opts.handshake_timeout_ms = TS_IO_TIMEOUT_MS;
        close(lfd);
        TS_ASSERT_RC(tlsock_connect(env->cctx, "127.0.0.1", port, &opts, &conn), TLSOCK_ESYS);
    }
    assert_int_equal(ts_env_teardown(state), 0);
    assert_int_equal(ts_env_setup(state), 0);
    assert_int_equal(count_fds(), before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sizes, ts_env_setup, ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_ipv6, ts_env_setup, ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_listen_all_addresses, ts_env_setup, ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_info, ts_env_setup, ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_ctx_outlives_caller_reference, ts_env_setup,
                                        ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_devcert_handshake, ts_env_setup, ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_short_reads, ts_env_setup, ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_connection_refused, ts_env_setup, ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments_not_fatal, ts_env_setup,
                                        ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_listen_port_in_use, ts_env_setup, ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_no_descriptor_leak, ts_env_setup, ts_env_teardown),
    };

    return cmocka_run_group_tests_name("data", tests, ts_pki_setup, ts_pki_teardown);
}
