/*
 * When a GnuTLS client's last handshake flight leaves (docs/DESIGN.md, "The core never waits"):
 * as soon as its Finished is in it.
 *
 * GnuTLS hands a TLS 1.3 client's compatibility ChangeCipherSpec over on its own, so on a socket
 * the core collects the client's flight to send it in one piece. The collected flight must not
 * wait for the end of the handshake step: after writing its Finished, GnuTLS derives the
 * application secrets, and a flight sent only then keeps the server waiting 15 to 20 us longer
 * per handshake (docs/BENCHMARKS.md).
 *
 * The executable wraps send() and sendmsg() at link time and counts the bytes the client's socket
 * sent. The client context's key-log callback notes that count when GnuTLS logs EXPORTER_SECRET,
 * which it derives right after writing its Finished. After the handshake every byte the client
 * sent must have been out by then. GnuTLS clients only (CLIENTS gnutls in CMakeLists.txt):
 * OpenSSL writes a flight in one write, and derives that secret before it writes its Finished.
 */
#include "support.h"

#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The client's socket, whose sends are counted (-1: none). */
static atomic_int counted_fd = -1;
static atomic_long bytes_sent;

ssize_t __real_send(int fd, const void *buf, size_t len, int flags);
ssize_t __wrap_send(int fd, const void *buf, size_t len, int flags);
ssize_t __real_sendmsg(int fd, const struct msghdr *msg, int flags);
ssize_t __wrap_sendmsg(int fd, const struct msghdr *msg, int flags);

static void count(int fd, ssize_t n)
{
    if (fd == atomic_load(&counted_fd) && n > 0) {
        atomic_fetch_add(&bytes_sent, (long)n);
    }
}

ssize_t __wrap_send(int fd, const void *buf, size_t len, int flags)
{
    ssize_t n = __real_send(fd, buf, len, flags);

    count(fd, n);
    return n;
}

ssize_t __wrap_sendmsg(int fd, const struct msghdr *msg, int flags)
{
    ssize_t n = __real_sendmsg(fd, msg, flags);

    count(fd, n);
    return n;
}

/* Bytes the client had sent when GnuTLS logged EXPORTER_SECRET; -1 until then. */
static long sent_at_exporter = -1;

static void note_exporter(const char *line, void *user)
{
    (void)user;
    if (strncmp(line, "EXPORTER_SECRET ", 16) == 0) {
        sent_at_exporter = atomic_load(&bytes_sent);
    }
}

static int serve_handshake(struct tlsock_conn *conn, void *arg)
{
    (void)arg;
    return tlsock_handshake(conn);
}

/* A TLS 1.3 handshake (compatibility mode: ChangeCipherSpec and Finished) from a GnuTLS client on
 * a socket of its own: its last flight is out before GnuTLS derives its application secrets. */
static void test_last_flight(void **state)
{
    struct tlsock_ctx *cctx = NULL;
    struct tlsock_ctx *sctx = NULL;
    struct tlsock_conn *conn = NULL;
    struct tlsock_opts opts = ts_opts();
    struct ts_server srv;
    int fd = -1;

    (void)state;
    opts.servername = "localhost";
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &cctx), 0);
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &sctx), 0);
    assert_int_equal(tlsock_ctx_impl(cctx), TLSOCK_IMPL_GNUTLS);
    TS_ASSERT_RC(tlsock_ctx_set_protocols(cctx, "1.3"), 0);
    TS_ASSERT_RC(tlsock_ctx_set_protocols(sctx, "1.3"), 0);
    TS_ASSERT_RC(tlsock_ctx_set_keylog(cctx, note_exporter, NULL), 0);
    TS_ASSERT_RC(ts_server_start(&srv, sctx, NULL, NULL, serve_handshake, NULL), 0);
    TS_ASSERT_RC(ts_raw_connect("127.0.0.1", srv.port, 0, &fd), 0);
    sent_at_exporter = -1;
    atomic_store(&bytes_sent, 0);
    atomic_store(&counted_fd, fd);
    TS_ASSERT_RC(tlsock_attach_fd(cctx, fd, &opts, &conn), 0);
    TS_ASSERT_RC_MSG(tlsock_handshake(conn), 0, tlsock_conn_errmsg(conn));
    atomic_store(&counted_fd, -1);

    if (sent_at_exporter != atomic_load(&bytes_sent)) {
        fail_msg("%ld of the client's %ld bytes were out when GnuTLS derived its application "
                 "secrets (its last flight waited for the step to end)",
                 sent_at_exporter, atomic_load(&bytes_sent));
    }
    tlsock_close(conn);
    close(fd);
    ts_server_stop(&srv);
    TS_ASSERT_RC_MSG(srv.result, 0, srv.errmsg);
    tlsock_ctx_free(cctx);
    tlsock_ctx_free(sctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_last_flight),
    };
    return cmocka_run_group_tests_name("client_flight", tests, ts_pki_setup, ts_pki_teardown);
}
