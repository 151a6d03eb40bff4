/* Loopback TLS on sockets the caller owns: STARTTLS after plaintext, implicit handshakes, the
 * descriptor's ownership and flags, and argument checks of tlsock_attach_fd(). */
#include "support.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define STARTTLS "STARTTLS\r\n"
#define GO_AHEAD "220 go ahead\r\n"

/* Reads exactly @p len plaintext bytes from a blocking socket (bounded by @p len reads). */
static bool raw_read_full(int fd, char *buf, size_t len)
{
    size_t got = 0;

    for (size_t i = 0; i < len && got < len; i++) {
        ssize_t n = read(fd, buf + got, len - got);

        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    return got == len;
}

struct starttls_server {
    struct tlsock_ctx *ctx;
    struct ts_exchange ex;
    int flags_before;
    int flags_after;
    bool fd_usable_after;
};

/* A plaintext protocol that upgrades: read the command, answer, then TLS on the same socket. */
static int serve_starttls(int fd, void *arg)
{
    struct starttls_server *s = arg;
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    char cmd[sizeof(STARTTLS) - 1];
    int rc = TS_ESETUP;

    if (!raw_read_full(fd, cmd, sizeof(cmd)) || memcmp(cmd, STARTTLS, sizeof(cmd)) != 0 ||
        write(fd, GO_AHEAD, strlen(GO_AHEAD)) != (ssize_t)strlen(GO_AHEAD)) {
        goto out;
    }
    s->flags_before = fcntl(fd, F_GETFL);
    rc = tlsock_attach_fd(s->ctx, fd, &opts, &conn);
    if (rc == 0) {
        /* No explicit handshake: the first read runs it. */
        rc = ts_serve_exchange(conn, &s->ex);
    }
    tlsock_close(conn);
    s->flags_after = fcntl(fd, F_GETFL);
    /* tlsock_close() must leave the caller's socket open. */
    s->fd_usable_after = fcntl(fd, F_GETFD) != -1;
out:
    return rc;
}

static void test_starttls(void **state)
{
    struct ts_env *env = *state;
    struct starttls_server s = {.ex = {.size = 30000}, .flags_before = -1, .flags_after = -2};
    struct tlsock_opts opts = ts_opts();
    const struct tlsock_info *info = NULL;
    char reply[sizeof(GO_AHEAD) - 1];
    int fd = -1;
    int flags_before;

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    s.ctx = env->sctx;
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    TS_ASSERT_RC(ts_server_start_raw(&env->srv, NULL, 0, serve_starttls, &s), 0);
    assert_int_equal(ts_raw_connect("127.0.0.1", env->srv.port, 0, &fd), 0);
    assert_int_equal(write(fd, STARTTLS, strlen(STARTTLS)), (ssize_t)strlen(STARTTLS));
    assert_true(raw_read_full(fd, reply, sizeof(reply)));
    assert_memory_equal(reply, GO_AHEAD, sizeof(reply));

    flags_before = fcntl(fd, F_GETFL);
    assert_int_equal(flags_before & O_NONBLOCK, 0);
    /* An attached socket has no host name: say which name the certificate must carry. */
    opts.verify_name = "localhost";
    TS_ASSERT_RC(tlsock_attach_fd(env->cctx, fd, &opts, &env->client), 0);
    assert_int_equal(tlsock_conn_fd(env->client), fd);
    /* No explicit handshake on this side either: the first write runs it. */
    TS_ASSERT_RC(ts_client_exchange(env->client, s.ex.size), 0);
    TS_ASSERT_RC(tlsock_handshake(env->client), 0);
    TS_ASSERT_RC(tlsock_conn_info(env->client, &info), 0);
    assert_int_equal(info->verify_result, 0);
    /* No SNI: an attached socket has no host, and the verify name is not sent as SNI. */
    assert_string_equal(info->servername, "");
    tlsock_close(env->client);
    env->client = NULL;
    /* Still the caller's socket, with the caller's flags. */
    assert_int_equal(fcntl(fd, F_GETFL), flags_before);
    assert_int_equal(close(fd), 0);
    ts_server_stop(&env->srv);
    TS_ASSERT_RC_MSG(env->srv.result, 0, env->srv.errmsg);
    TS_ASSERT_RC(s.ex.final_rc, TLSOCK_ECLOSED);
    assert_int_equal(s.flags_after, s.flags_before);
    assert_true(s.fd_usable_after);
}

struct small_buffers_server {
    struct tlsock_ctx *ctx;
    struct ts_exchange ex;
};

static int serve_attached_exchange(int fd, void *arg)
{
    struct small_buffers_server *s = arg;
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    int rc = tlsock_attach_fd(s->ctx, fd, &opts, &conn);

    if (rc == 0) {
        rc = ts_serve_exchange(conn, &s->ex);
    }
    tlsock_close(conn);
    return rc;
}

/* Tiny socket buffers on both ends: every record goes out in many short writes and comes in
 * through many short reads, so each partial-progress path of the write and read loops runs. */
static void test_small_socket_buffers(void **state)
{
    struct ts_env *env = *state;
    struct small_buffers_server s = {.ex = {.size = 1024 * 1024}};
    struct tlsock_opts opts = ts_opts();
    int fd = -1;
    int rc;

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    s.ctx = env->sctx;
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    TS_ASSERT_RC(ts_server_start_raw(&env->srv, NULL, 2048, serve_attached_exchange, &s), 0);
    assert_int_equal(ts_raw_connect("127.0.0.1", env->srv.port, 2048, &fd), 0);
    opts.verify_name = "localhost";
    rc = tlsock_attach_fd(env->cctx, fd, &opts, &env->client);
    if (rc == 0) {
        rc = ts_client_exchange(env->client, s.ex.size);
    }
    tlsock_close(env->client);
    env->client = NULL;
    close(fd);
    TS_ASSERT_RC(rc, 0);
    ts_server_stop(&env->srv);
    TS_ASSERT_RC_MSG(env->srv.result, 0, env->srv.errmsg);
    TS_ASSERT_RC(s.ex.final_rc, TLSOCK_ECLOSED);
}

static void test_attach_arguments(void **state)
{
    struct ts_env *env = *state;
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    char long_name[300];
    int sv[2] = {-1, -1};

    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    TS_ASSERT_RC(tlsock_attach_fd(env->cctx, -1, &opts, &conn), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_attach_fd(NULL, sv[0], &opts, &conn), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_attach_fd(env->cctx, sv[0], &opts, NULL), TLSOCK_EINVAL);
    /* A verifying client with nothing to verify against would accept any certificate. */
    TS_ASSERT_RC(tlsock_attach_fd(env->cctx, sv[0], &opts, &conn), TLSOCK_EINVAL);
    assert_null(conn);
    /* DNS names are at most 253 characters (RFC 1035). */
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    opts.verify_name = long_name;
    TS_ASSERT_RC(tlsock_attach_fd(env->cctx, sv[0], &opts, &conn), TLSOCK_EINVAL);
    assert_null(conn);
    /* A failed attach leaves the descriptor blocking, as it was. */
    assert_int_equal(fcntl(sv[0], F_GETFL) & O_NONBLOCK, 0);
    close(sv[0]);
    close(sv[1]);
}

/* The header: listening needs a certificate (ECONFIG), and freezes the context. */
static void test_listen_needs_certificate(void **state)
{
    struct ts_env *env = *state;
    struct tlsock_listener *lis = NULL;

    TS_ASSERT_RC(ts_server_ctx_new(NULL, &env->sctx), 0);
    TS_ASSERT_RC(tlsock_listen(env->sctx, "127.0.0.1", 0, 0, &lis), TLSOCK_ECONFIG);
    assert_null(lis);
    TS_ASSERT_CONTAINS(tlsock_errmsg(), "certificate");
    /* Refused: still configurable. */
    TS_ASSERT_RC_MSG(tlsock_ctx_set_cert_mem(env->sctx, ts_pki.server.cert,
                                             strlen(ts_pki.server.cert), ts_pki.server.key,
                                             strlen(ts_pki.server.key)),
                     0, tlsock_ctx_errmsg(env->sctx));
    TS_ASSERT_RC(tlsock_listen(env->sctx, "127.0.0.1", 0, 0, &lis), 0);
    /* Listening froze it. */
    TS_ASSERT_RC(tlsock_ctx_set_alpn(env->sctx, "h2"), TLSOCK_EINVAL);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(env->sctx), "frozen");
    tlsock_listener_close(lis);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_starttls, ts_env_setup, ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_small_socket_buffers, ts_env_setup, ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_attach_arguments, ts_env_setup, ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_listen_needs_certificate, ts_env_setup,
                                        ts_env_teardown),
    };

    return cmocka_run_group_tests_name("attach", tests, ts_pki_setup, ts_pki_teardown);
}
