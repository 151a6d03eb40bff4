/*
 * The client session cache offers the session object it was given, not a copy decoded again
 * (issue 12, docs/BENCHMARKS.md "Resumption"): on OpenSSL, decoding a session (d2i_SSL_SESSION)
 * parses the server's certificate and key again, as much work as a resumed handshake. Seen through
 * the native handles: the session a cached offer puts on the next connection's SSL shares the
 * peer certificate object (an X509, reference counted) of the connection that received the
 * ticket; a session that came as bytes (an import) has a certificate of its own.
 *
 * Nor is a session encoded (i2d_SSL_SESSION) when it arrives, only when it is exported: the
 * encoding takes the whole session, the server's certificate with it, and a client that resumes
 * gets a new ticket on every connection. The executable wraps i2d_SSL_SESSION at link time to
 * count its calls.
 *
 * GnuTLS keeps no session object apart from a connection (gnutls_session_set_data takes bytes),
 * so its clients have nothing to reuse: this test exists only in OpenSSL-client rows (CMake's
 * CLIENTS openssl).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <openssl/ssl.h>

#include "pair.h"
#include "support.h"

/* Sessions encoded by anyone in the process (the servers encode none of TLS 1.3). */
static int encodes;

int __real_i2d_SSL_SESSION(const SSL_SESSION *in, unsigned char **pp);
int __wrap_i2d_SSL_SESSION(const SSL_SESSION *in, unsigned char **pp);

int __wrap_i2d_SSL_SESSION(const SSL_SESSION *in, unsigned char **pp)
{
    encodes++;
    return __real_i2d_SSL_SESSION(in, pp);
}

/* The peer certificate object of the session offered to the last connection (NULL: none). */
static const X509 *offered_peer;

static int record_offer(void *native, void *user)
{
    const SSL_SESSION *sess = SSL_get_session(native);

    (void)user;
    offered_peer = sess != NULL ? SSL_SESSION_get0_peer((SSL_SESSION *)sess) : NULL;
    return 0;
}

/* A connection of @p cctx to @p sctx that reads the server's data (and so its tickets). */
static void connect_read(struct ts_pair *p, struct tlsock_ctx *cctx, struct tlsock_ctx *sctx)
{
    char buf[5];

    ts_pair_init(p);
    p->cctx = tlsock_ctx_ref(cctx);
    p->sctx = tlsock_ctx_ref(sctx);
    TS_ASSERT_RC(ts_pair_open(p), 0);
    TS_ASSERT_RC(ts_pair_handshake(p), 0);
    TS_ASSERT_RC(ts_pair_write(p, TS_S2C, "hello", 5), 0);
    TS_ASSERT_RC(ts_pair_read(p, TS_S2C, buf, 5), 0);
}

static bool resumed(struct tlsock_conn *conn)
{
    const struct tlsock_info *info = NULL;

    TS_ASSERT_RC(tlsock_conn_info(conn, &info), 0);
    return info->resumed;
}

static struct tlsock_ctx *client_ctx(void)
{
    struct tlsock_ctx *cctx = NULL;

    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &cctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_protocols(cctx, "1.3"), 0);
    TS_ASSERT_RC(tlsock_ctx_set_configure(cctx, NULL, record_offer, NULL), 0);
    return cctx;
}

static void test_cached_session_object_offered(void **state)
{
    struct tlsock_ctx *cctx = client_ctx();
    struct tlsock_ctx *imported = client_ctx();
    struct tlsock_ctx *sctx = NULL;
    struct ts_pair first, second, third;
    unsigned char *data = NULL;
    size_t len = 0;

    (void)state;
    /* Registered for OpenSSL clients only: any other row is a mistake in CMakeLists.txt. */
    assert_int_equal(tlsock_ctx_impl(cctx), TLSOCK_IMPL_OPENSSL);
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &sctx), 0);
    encodes = 0;
    connect_read(&first, cctx, sctx);
    assert_null(offered_peer);    /* nothing cached yet */
    assert_int_equal(encodes, 0); /* its tickets, cached as objects */
    /* Kept open, so that its certificate object stays alive and its address unique. */
    const X509 *peer = SSL_get0_peer_certificate(tlsock_conn_native(first.client));
    assert_non_null(peer);
    TS_ASSERT_RC(tlsock_conn_session_export(first.client, &data, &len), 0);
    assert_int_not_equal(encodes, 0);

    int exported = encodes;
    connect_read(&second, cctx, sctx);
    assert_true(resumed(second.client));
    assert_ptr_equal(offered_peer, peer); /* the cached object, not a decoded copy */
    assert_int_equal(encodes, exported);  /* nor the ticket of the resumed connection encoded */

    /* An import is bytes: decoded, a certificate object of its own, and it still resumes. */
    TS_ASSERT_RC(tlsock_ctx_session_import(imported, data, len), 0);
    connect_read(&third, imported, sctx);
    assert_true(resumed(third.client));
    assert_non_null(offered_peer);
    assert_ptr_not_equal(offered_peer, peer);

    tlsock_free(data);
    ts_pair_release(&third);
    ts_pair_release(&second);
    ts_pair_release(&first);
    tlsock_ctx_free(sctx);
    tlsock_ctx_free(imported);
    tlsock_ctx_free(cctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cached_session_object_offered),
    };
    return cmocka_run_group_tests_name("session_reuse", tests, ts_pki_setup, ts_pki_teardown);
}
