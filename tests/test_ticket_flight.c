/*
 * When a server's TLS 1.3 tickets leave (issue 12, docs/BENCHMARKS.md "Nagle and the first
 * request"): after the server has read the client's Finished, in a flight of their own, on every
 * pair. A server that sends them with its own Finished (GnuTLS's default) leaves nothing to follow
 * the client's Finished, and a client with Nagle on then waits for the delayed ACK.
 *
 * Both ends in memory mode, stepped by hand, one flight at a time: the client holds no session
 * after the server's first flight, and gets one only from what the server sends once it has read
 * the client's Finished. With tickets off, that second flight is empty.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "support.h"

/* Moves every byte @p from has to send to @p to; the count. */
static size_t flight(struct tlsock_conn *from, struct tlsock_conn *to)
{
    unsigned char buf[4096];
    size_t total = 0;

    for (int i = 0; i < 64; i++) {
        size_t n = 0;
        TS_ASSERT_RC(tlsock_drain(from, buf, sizeof(buf), &n), 0);
        if (n == 0) {
            return total;
        }
        TS_ASSERT_RC(tlsock_feed(to, buf, n), 0);
        total += n;
    }
    fail_msg("more than 64 drains in one flight");
    return total;
}

/* Whether the client holds a session it could export (it has read a ticket). */
static bool client_has_session(struct tlsock_conn *client)
{
    unsigned char *data = NULL;
    size_t len = 0;
    int rc = tlsock_conn_session_export(client, &data, &len);

    tlsock_free(data);
    if (rc != 0) {
        assert_int_equal(rc, TLSOCK_EINVAL);
        assert_non_null(strstr(tlsock_conn_errmsg(client), "no resumable session yet"));
    }
    return rc == 0;
}

static void run(bool tickets)
{
    struct tlsock_ctx *cctx = NULL;
    struct tlsock_ctx *sctx = NULL;
    struct tlsock_conn *client = NULL;
    struct tlsock_conn *server = NULL;
    struct tlsock_opts opts = ts_opts();

    opts.servername = "localhost"; /* ts_pki.server's name, and the session cache's key */
    unsigned char buf[16];
    size_t n = 0;

    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &cctx), 0);
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &sctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_protocols(cctx, "1.3"), 0);
    TS_ASSERT_RC(tlsock_ctx_set_protocols(sctx, "1.3"), 0);
    TS_ASSERT_RC(tlsock_ctx_set_tickets(sctx, tickets), 0);
    TS_ASSERT_RC(tlsock_attach_mem(cctx, &opts, &client), 0);
    TS_ASSERT_RC(tlsock_attach_mem(sctx, NULL, &server), 0);

    /* ClientHello; the server's flight up to its Finished. */
    TS_ASSERT_RC(tlsock_handshake(client), TLSOCK_EWANT_READ);
    assert_true(flight(client, server) > 0);
    TS_ASSERT_RC(tlsock_handshake(server), TLSOCK_EWANT_READ);
    assert_true(flight(server, client) > 0);
    /* The client is done and has read all the server sent: no ticket among it. */
    TS_ASSERT_RC(tlsock_handshake(client), 0);
    TS_ASSERT_RC(tlsock_read(client, buf, sizeof(buf), &n), TLSOCK_EWANT_READ);
    assert_false(client_has_session(client));

    /* The client's Finished: the server is done, and only now sends its tickets. */
    assert_true(flight(client, server) > 0);
    TS_ASSERT_RC(tlsock_handshake(server), 0);
    size_t after = flight(server, client);
    TS_ASSERT_RC(tlsock_read(client, buf, sizeof(buf), &n), TLSOCK_EWANT_READ);
    if (tickets) {
        assert_true(after > 0);
        assert_true(client_has_session(client));
    } else {
        assert_int_equal(after, 0);
        assert_false(client_has_session(client));
    }
    tlsock_close(client);
    tlsock_close(server);
    tlsock_ctx_free(cctx);
    tlsock_ctx_free(sctx);
}

static void test_tickets_after_client_finished(void **state)
{
    (void)state;
    run(true);
}

static void test_tickets_off_nothing_after(void **state)
{
    (void)state;
    run(false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tickets_after_client_finished),
        cmocka_unit_test(test_tickets_off_nothing_after),
    };
    return cmocka_run_group_tests_name("ticket_flight", tests, ts_pki_setup, ts_pki_teardown);
}
