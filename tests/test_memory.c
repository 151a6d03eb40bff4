/* Sans-I/O memory mode (tlsock_attach_mem): the application moves every byte of ciphertext with
 * tlsock_drain() and tlsock_feed(), here between two connections in one thread (the shared pair
 * of support/pair.h, also through a path that loses or cuts the stream) and through a socketpair
 * driven by a poll() loop. */
#include "pair.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MIB (1024u * 1024u)

/* A TLS record header: content type, then the legacy version (RFC 8446 section 5.1). */
#define TLS_HANDSHAKE_RECORD 0x16

/* Opens the shared fixture's pair (support/pair.h); the client trusts @p ca_pem and verifies
 * @p verify_name. */
static void pair_open(struct ts_pair *p, const char *ca_pem, const char *verify_name)
{
    struct tlsock_opts copts = ts_opts();

    copts.verify_name = verify_name;
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &p->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ca_pem, &p->cctx), 0);
    TS_ASSERT_RC(ts_pair_attach(p, &copts, NULL), 0);
    /* Memory mode has no socket and nothing to send before the first step. */
    assert_int_equal(tlsock_conn_fd(p->client), -1);
    assert_int_equal(tlsock_conn_pending_output(p->client), 0);
    assert_int_equal(tlsock_conn_pending_output(p->server), 0);
}

/* Both paths cut the stream into pieces of at most @p chunk bytes. */
static void set_chunk(struct ts_pair *p, size_t chunk)
{
    p->path[TS_C2S].chunk = chunk;
    p->path[TS_S2C].chunk = chunk;
}

/* ---- handshake ------------------------------------------------------------------------------- */

static void test_handshake(void **state)
{
    struct ts_pair *p = *state;
    const struct tlsock_info *info = NULL;
    unsigned char hello[4096];
    size_t pending;
    size_t n = 0;

    pair_open(p, ts_pki.ca.cert, "localhost");
    /* The first step writes the ClientHello into the queue, then needs the server's answer. */
    TS_ASSERT_RC(tlsock_handshake(p->client), TLSOCK_EWANT_READ);
    pending = tlsock_conn_pending_output(p->client);
    assert_true(pending > 0);
    assert_true(pending <= sizeof(hello));
    /* Draining piecewise: two bytes, then the rest. */
    TS_ASSERT_RC(tlsock_drain(p->client, hello, 2, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(tlsock_conn_pending_output(p->client), pending - 2);
    TS_ASSERT_RC(tlsock_drain(p->client, hello + 2, sizeof(hello) - 2, &n), 0);
    assert_int_equal(n, pending - 2);
    assert_int_equal(tlsock_conn_pending_output(p->client), 0);
    TS_ASSERT_RC(tlsock_drain(p->client, hello, sizeof(hello), &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(hello[0], TLS_HANDSHAKE_RECORD);
    assert_int_equal(hello[1], 3);
    /* Repeating the step without new input changes nothing. */
    TS_ASSERT_RC(tlsock_handshake(p->client), TLSOCK_EWANT_READ);
    assert_int_equal(tlsock_conn_pending_output(p->client), 0);

    TS_ASSERT_RC(tlsock_feed(p->server, hello, pending), 0);
    TS_ASSERT_RC(tlsock_handshake(p->server), TLSOCK_EWANT_READ);
    assert_true(tlsock_conn_pending_output(p->server) > 0);
    TS_ASSERT_RC_MSG(ts_pair_handshake(p), 0, p->client_msg);
    /* TLS 1.3 needs one round trip; a couple of rounds here. */
    print_message("handshake finished in %d more rounds\n", p->rounds);
    assert_true(p->rounds <= 3);
    assert_int_equal(tlsock_conn_pending_output(p->client), 0);
    assert_int_equal(tlsock_conn_pending_output(p->server), 0);

    TS_ASSERT_RC(tlsock_conn_info(p->client, &info), 0);
    assert_string_equal(info->version, "TLSv1.3");
    TS_ASSERT_CONTAINS(info->peer_subject, TS_SERVER_CN);
    assert_int_equal(info->verify_result, 0);
    TS_ASSERT_RC(tlsock_conn_info(p->server, &info), 0);
    assert_string_equal(info->version, "TLSv1.3");
    assert_string_equal(info->peer_subject, "");
}

/* A write before the handshake runs it: EWANT_READ, then the same call again succeeds. */
static void test_write_before_handshake(void **state)
{
    struct ts_pair *p = *state;
    char buf[5] = {0};
    int rc = TLSOCK_EWANT_READ;

    pair_open(p, ts_pki.ca.cert, "localhost");
    /* Bounded: the handshake takes a few rounds. */
    for (int i = 0; i < 10 && rc == TLSOCK_EWANT_READ; i++) {
        int src;

        rc = tlsock_write(p->client, "early", 5);
        if (i == 0) {
            TS_ASSERT_RC(rc, TLSOCK_EWANT_READ);
        }
        TS_ASSERT_RC(ts_pair_move(p, TS_C2S), 0);
        src = tlsock_handshake(p->server);
        assert_true(src == TLSOCK_EWANT_READ || src == 0);
        TS_ASSERT_RC(ts_pair_move(p, TS_S2C), 0);
    }
    TS_ASSERT_RC_MSG(rc, 0, tlsock_conn_errmsg(p->client));
    TS_ASSERT_RC(ts_pair_move(p, TS_C2S), 0);
    TS_ASSERT_RC(ts_read_full(p->server, buf, 5), 0);
    assert_memory_equal(buf, "early", 5);
}

/* ---- data ------------------------------------------------------------------------------------ */

static void test_data_both_ways(void **state)
{
    static const size_t sizes[] = {1, 16383, 16384, 16385, MIB};
    struct ts_pair *p = *state;
    unsigned char byte;
    size_t n = 0;

    pair_open(p, ts_pki.ca.cert, "localhost");
    TS_ASSERT_RC_MSG(ts_pair_handshake(p), 0, p->client_msg);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        print_message("%zu bytes each way\n", sizes[i]);
        TS_ASSERT_RC_MSG(ts_pair_transfer(p, TS_C2S, sizes[i], (unsigned)i), 0,
                         tlsock_conn_errmsg(p->server));
        TS_ASSERT_RC_MSG(ts_pair_transfer(p, TS_S2C, sizes[i], (unsigned)i + 100), 0,
                         tlsock_conn_errmsg(p->client));
    }
    /* Nothing more is queued either way, and reading says so instead of blocking. */
    assert_int_equal(tlsock_conn_pending_output(p->client), 0);
    assert_int_equal(tlsock_conn_pending_output(p->server), 0);
    TS_ASSERT_RC(tlsock_read(p->server, &byte, 1, &n), TLSOCK_EWANT_READ);
    TS_ASSERT_RC(tlsock_read(p->client, &byte, 1, &n), TLSOCK_EWANT_READ);
    /* Writing nothing is a no-op that queues nothing. */
    TS_ASSERT_RC(tlsock_write(p->client, NULL, 0), 0);
    assert_int_equal(tlsock_conn_pending_output(p->client), 0);
}

/* Short I/O: ciphertext fed one byte at a time, drained one byte at a time, read one byte at a
 * time. */
static void test_one_byte_at_a_time(void **state)
{
    struct ts_pair *p = *state;
    const size_t size = 20000; /* two records: 16384 + 3616 */
    unsigned char *data = malloc(size);
    unsigned char got[2];
    size_t wants;
    size_t n = 0;

    assert_non_null(data);
    pair_open(p, ts_pki.ca.cert, "localhost");
    set_chunk(p, 1);
    TS_ASSERT_RC_MSG(ts_pair_handshake(p), 0, p->client_msg);
    TS_ASSERT_RC_MSG(ts_pair_transfer(p, TS_C2S, size, 9), 0, tlsock_conn_errmsg(p->server));
    wants = p->path[TS_C2S].read_wants;
    /* Every byte of a record but its last leaves the reader wanting more. */
    print_message("%zu EWANT_READ while feeding %zu bytes of data one by one\n", wants, size);
    assert_true(wants >= size);

    /* Records decrypted but not yet read wait in tlsock_conn_pending(). */
    ts_fill(data, size, 10);
    TS_ASSERT_RC(tlsock_write(p->server, data, size), 0);
    TS_ASSERT_RC(ts_pair_move(p, TS_S2C), 0);
    assert_int_equal(tlsock_conn_pending(p->client), 0);
    TS_ASSERT_RC(tlsock_read(p->client, got, 1, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(got[0], data[0]);
    assert_int_equal(tlsock_conn_pending(p->client), 16383);
    /* Bounded: one byte per read. */
    for (size_t i = 1; i < size; i++) {
        TS_ASSERT_RC(tlsock_read(p->client, got, 1, &n), 0);
        assert_int_equal(n, 1);
        if (got[0] != data[i]) {
            fail_msg("byte %zu differs", i);
        }
    }
    assert_int_equal(tlsock_conn_pending(p->client), 0);
    TS_ASSERT_RC(tlsock_read(p->client, got, 1, &n), TLSOCK_EWANT_READ);
    free(data);
}

/* ---- the end of the stream ------------------------------------------------------------------- */

static void test_truncation(void **state)
{
    struct ts_pair *p = *state;
    char buf[8] = {0};
    size_t n = 0;

    pair_open(p, ts_pki.ca.cert, "localhost");
    TS_ASSERT_RC_MSG(ts_pair_handshake(p), 0, p->client_msg);
    TS_ASSERT_RC(tlsock_write(p->server, "data", 4), 0);
    TS_ASSERT_RC(ts_pair_move(p, TS_S2C), 0);
    TS_ASSERT_RC(tlsock_feed_eof(p->client), 0);
    /* What arrived before the end is still read, then the missing close_notify is reported. */
    TS_ASSERT_RC(ts_read_full(p->client, buf, 4), 0);
    assert_memory_equal(buf, "data", 4);
    TS_ASSERT_RC_MSG(tlsock_read(p->client, buf, sizeof(buf), &n), TLSOCK_ETRUNCATED,
                     tlsock_conn_errmsg(p->client));
    TS_ASSERT_CONTAINS(tlsock_conn_errmsg(p->client), "close_notify");
    /* The peer ended its side and sent nothing malformed: no alert goes back (OpenSSL queued a
     * decode_error, GnuTLS nothing), on either implementation. */
    assert_int_equal(tlsock_conn_pending_output(p->client), 0);
    TS_ASSERT_RC(tlsock_read(p->client, buf, sizeof(buf), &n), TLSOCK_ETRUNCATED);
    TS_ASSERT_RC(tlsock_write(p->client, "x", 1), TLSOCK_ETRUNCATED);
    assert_int_equal(tlsock_conn_pending_output(p->client), 0);
    /* Nothing may be fed after the end. */
    TS_ASSERT_RC(tlsock_feed(p->client, "x", 1), TLSOCK_EINVAL);
}

/* The stream ends in the middle of the handshake. */
static void test_truncation_in_handshake(void **state)
{
    struct ts_pair *p = *state;
    unsigned char half[64];
    size_t n = 0;

    pair_open(p, ts_pki.ca.cert, "localhost");
    TS_ASSERT_RC(tlsock_handshake(p->client), TLSOCK_EWANT_READ);
    TS_ASSERT_RC(tlsock_drain(p->client, half, sizeof(half), &n), 0);
    assert_int_equal(n, sizeof(half));
    TS_ASSERT_RC(tlsock_feed(p->server, half, n), 0);
    TS_ASSERT_RC(tlsock_handshake(p->server), TLSOCK_EWANT_READ);
    TS_ASSERT_RC(tlsock_feed_eof(p->server), 0);
    TS_ASSERT_RC_MSG(tlsock_handshake(p->server), TLSOCK_ETRUNCATED, tlsock_conn_errmsg(p->server));
    TS_ASSERT_RC(tlsock_handshake(p->server), TLSOCK_ETRUNCATED);
    assert_int_equal(tlsock_conn_pending_output(p->server), 0);
}

/*
 * A close_notify before the handshake has authenticated the peer proves nothing: anyone on the
 * path can send one in plaintext. The handshake fails (EPROTO, sticky) on either side and in
 * every implementation; it never reads as the peer's clean close (TLSOCK_ECLOSED), which would
 * let the path turn a connection into an empty stream that looks complete.
 */
static void test_close_notify_in_handshake(void **state)
{
    /* An alert record (RFC 8446 section 5.1, 6): warning (1), close_notify (0). */
    static const unsigned char close_notify[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00};
    struct ts_pair *p = *state;
    char buf[8];
    size_t n = 0;

    pair_open(p, ts_pki.ca.cert, "localhost");
    /* The client has sent its ClientHello and gets the alert instead of the server's answer. */
    TS_ASSERT_RC(tlsock_handshake(p->client), TLSOCK_EWANT_READ);
    TS_ASSERT_RC(tlsock_feed(p->client, close_notify, sizeof(close_notify)), 0);
    TS_ASSERT_RC_MSG(tlsock_handshake(p->client), TLSOCK_EPROTO, tlsock_conn_errmsg(p->client));
    TS_ASSERT_CONTAINS(tlsock_conn_errmsg(p->client), "close_notify during the handshake");
    TS_ASSERT_RC(tlsock_read(p->client, buf, sizeof(buf), &n), TLSOCK_EPROTO);
    /* A server gets it after the ClientHello, instead of the client's second flight (OpenSSL
     * takes the plaintext alert, GnuTLS fails to decrypt it: either way the handshake fails). */
    TS_ASSERT_RC(ts_pair_move(p, TS_C2S), 0);
    TS_ASSERT_RC(tlsock_handshake(p->server), TLSOCK_EWANT_READ);
    TS_ASSERT_RC(tlsock_feed(p->server, close_notify, sizeof(close_notify)), 0);
    TS_ASSERT_RC_MSG(tlsock_handshake(p->server), TLSOCK_EPROTO, tlsock_conn_errmsg(p->server));
    TS_ASSERT_RC(tlsock_read(p->server, buf, sizeof(buf), &n), TLSOCK_EPROTO);
}

static void test_close_notify(void **state)
{
    struct ts_pair *p = *state;
    char buf[8] = {0};
    size_t n = 0;

    pair_open(p, ts_pki.ca.cert, "localhost");
    TS_ASSERT_RC_MSG(ts_pair_handshake(p), 0, p->client_msg);
    TS_ASSERT_RC(tlsock_write(p->server, "bye", 3), 0);
    TS_ASSERT_RC(tlsock_shutdown(p->server), 0);
    TS_ASSERT_RC(tlsock_shutdown(p->server), 0);
    assert_true(tlsock_conn_pending_output(p->server) > 0);
    TS_ASSERT_RC(ts_pair_move(p, TS_S2C), 0);
    TS_ASSERT_RC(ts_read_full(p->client, buf, 3), 0);
    assert_memory_equal(buf, "bye", 3);
    TS_ASSERT_RC(tlsock_read(p->client, buf, sizeof(buf), &n), TLSOCK_ECLOSED);
    TS_ASSERT_RC(tlsock_read(p->client, buf, sizeof(buf), &n), TLSOCK_ECLOSED);
    /* A half-close: the client still writes, and the server, which wrote its last, reads. */
    TS_ASSERT_RC(tlsock_write(p->client, "late", 4), 0);
    TS_ASSERT_RC(tlsock_shutdown(p->client), 0);
    TS_ASSERT_RC(ts_pair_move(p, TS_C2S), 0);
    TS_ASSERT_RC(ts_read_full(p->server, buf, 4), 0);
    assert_memory_equal(buf, "late", 4);
    TS_ASSERT_RC(tlsock_read(p->server, buf, sizeof(buf), &n), TLSOCK_ECLOSED);
    /* After both close_notify nothing is left to send. */
    assert_int_equal(tlsock_conn_pending_output(p->client), 0);
    assert_int_equal(tlsock_conn_pending_output(p->server), 0);
}

/* ---- a faulty path ----------------------------------------------------------------------------
 */

struct fault_case {
    const char *what;
    const char *protocols;
    bool drop; /* the second record vanishes; else the stream ends in its middle */
    int server_rc;
    int client_rc; /* the client's read after the server's reaction moved back; 0: not checked */
    const char *client_message; /* in the client's message */
};

static const struct fault_case fault_cases[] = {
    /* RFC 8446 section 5.3: the record sequence number is in the nonce, so the next record
     * fails authentication; the receiver ends the session with an alert. */
    {.what = "a record lost, TLS 1.3",
     .protocols = "1.3",
     .drop = true,
     .server_rc = TLSOCK_EPROTO,
     .client_rc = TLSOCK_EPROTO,
     .client_message = "alert"},
    /* RFC 5246 section 6.2.3.3: the sequence number is in the additional data. */
    {.what = "a record lost, TLS 1.2",
     .protocols = "1.2-1.2",
     .drop = true,
     .server_rc = TLSOCK_EPROTO,
     .client_rc = TLSOCK_EPROTO,
     .client_message = "alert"},
    /* Half a record and the end of the stream: a truncation, which the server answers with
     * nothing on either implementation (no decode_error from OpenSSL: test_truncation), so the
     * client's view is not checked here. */
    {.what = "the stream ends inside a record", .protocols = "1.3", .server_rc = TLSOCK_ETRUNCATED},
};

/* The path loses a record or ends inside one: what got through is read, then the receiver fails
 * with the code of the fault, and the sender learns of it only through an alert. */
static void test_faulty_path(void **state)
{
    for (size_t i = 0; i < sizeof(fault_cases) / sizeof(fault_cases[0]); i++) {
        const struct fault_case *c = &fault_cases[i];
        struct ts_path *up;
        struct ts_pair *p;
        char buf[8] = {0};
        size_t n = 0;
        size_t record;

        print_message("%s\n", c->what);
        ts_pair_renew(state, i);
        p = *state;
        up = &p->path[TS_C2S];
        TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &p->cctx), 0);
        TS_ASSERT_RC(tlsock_ctx_set_protocols(p->cctx, c->protocols), 0);
        TS_ASSERT_RC_MSG(ts_pair_connect(p), 0, p->client_msg);
        TS_ASSERT_RC(ts_pair_write(p, TS_C2S, "first", 5), 0);
        TS_ASSERT_RC(tlsock_write(p->client, "second", 6), 0);
        record = tlsock_conn_pending_output(p->client);
        assert_true(record > 6);
        if (c->drop) {
            up->drop_at = up->sent;
            up->drop_len = record;
        } else {
            up->truncate = true;
            up->truncate_at = up->sent + record / 2;
        }
        TS_ASSERT_RC(ts_pair_move(p, TS_C2S), 0);
        TS_ASSERT_RC(ts_pair_write(p, TS_C2S, "third", 5), 0);
        /* What the path let through: the first record whole, then less than the rest. */
        assert_int_equal(up->sent - up->fed, c->drop ? record : up->sent - up->truncate_at);
        assert_int_equal(up->eof, !c->drop);

        TS_ASSERT_RC(ts_pair_read(p, TS_C2S, buf, 5), 0);
        assert_memory_equal(buf, "first", 5);
        TS_ASSERT_RC_MSG(tlsock_read(p->server, buf, sizeof(buf), &n), c->server_rc,
                         tlsock_conn_errmsg(p->server));
        TS_ASSERT_RC(tlsock_read(p->server, buf, sizeof(buf), &n), c->server_rc);
        TS_ASSERT_RC(ts_pair_move(p, TS_S2C), 0);
        if (c->client_rc != 0) {
            TS_ASSERT_RC(tlsock_read(p->client, buf, sizeof(buf), &n), c->client_rc);
            TS_ASSERT_CONTAINS(tlsock_conn_errmsg(p->client), c->client_message);
        }
    }
}

/* ---- wrong use and failures ------------------------------------------------------------------ */

static ssize_t never_read(void *user, void *buf, size_t len)
{
    (void)user;
    (void)buf;
    (void)len;
    return TLSOCK_EWANT_READ;
}

static ssize_t never_write(void *user, const void *buf, size_t len)
{
    (void)user;
    (void)buf;
    (void)len;
    return TLSOCK_EWANT_WRITE;
}

static void test_not_memory_mode(void **state)
{
    struct ts_pair *p = *state;
    const struct tlsock_io io = {.read = never_read, .write = never_write};
    struct tlsock_conn *conn = NULL;
    unsigned char buf[16];
    size_t n = 99;

    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &p->cctx), 0);
    {
        struct tlsock_opts opts = ts_opts();

        opts.verify_name = "localhost";
        TS_ASSERT_RC(tlsock_attach_io(p->cctx, &io, &opts, &p->client), 0);
    }
    conn = p->client;
    TS_ASSERT_RC(tlsock_feed(conn, "x", 1), TLSOCK_EINVAL);
    TS_ASSERT_CONTAINS(tlsock_conn_errmsg(conn), "memory mode");
    TS_ASSERT_RC(tlsock_feed_eof(conn), TLSOCK_EINVAL);
    TS_ASSERT_CONTAINS(tlsock_conn_errmsg(conn), "memory mode");
    TS_ASSERT_RC(tlsock_drain(conn, buf, sizeof(buf), &n), TLSOCK_EINVAL);
    TS_ASSERT_CONTAINS(tlsock_conn_errmsg(conn), "memory mode");
    assert_int_equal(n, 99);
    assert_int_equal(tlsock_conn_pending_output(conn), 0);
    /* A caller error, not the session's: the connection is still alive (and its transport
     * refuses to take the ClientHello). */
    TS_ASSERT_RC(tlsock_handshake(conn), TLSOCK_EWANT_WRITE);

    TS_ASSERT_RC(tlsock_feed(NULL, "x", 1), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_feed_eof(NULL), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_drain(NULL, buf, sizeof(buf), &n), TLSOCK_EINVAL);
    assert_int_equal(tlsock_conn_pending_output(NULL), 0);
    TS_ASSERT_RC(tlsock_attach_mem(NULL, NULL, &conn), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_attach_mem(p->cctx, NULL, NULL), TLSOCK_EINVAL);

    /* Bad arguments on a memory connection are not fatal either. */
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &p->sctx), 0);
    TS_ASSERT_RC(tlsock_attach_mem(p->sctx, NULL, &p->server), 0);
    TS_ASSERT_RC(tlsock_drain(p->server, buf, sizeof(buf), NULL), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_drain(p->server, NULL, sizeof(buf), &n), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_feed(p->server, NULL, 1), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_feed(p->server, NULL, 0), 0);
    TS_ASSERT_RC(tlsock_handshake(p->server), TLSOCK_EWANT_READ);
}

struct verify_case {
    const char *what;
    bool untrusted;          /* the client trusts another CA */
    const char *verify_name; /* what the client expects the certificate to name */
    const char *detail;      /* in the client's message */
};

static const struct verify_case verify_cases[] = {
    {.what = "untrusted CA",
     .untrusted = true,
     .verify_name = "localhost",
     .detail = "unable to get local issuer certificate"},
    {.what = "wrong name", .verify_name = "wrong.example", .detail = "hostname mismatch"},
};

static void test_verify_failure(void **state)
{
    for (size_t i = 0; i < sizeof(verify_cases) / sizeof(verify_cases[0]); i++) {
        const struct verify_case *c = &verify_cases[i];
        struct ts_pair *p;
        char buf[4];
        size_t n = 0;
        int src;

        print_message("%s\n", c->what);
        ts_pair_renew(state, i);
        p = *state;
        pair_open(p, c->untrusted ? ts_pki.other_ca.cert : ts_pki.ca.cert, c->verify_name);
        TS_ASSERT_RC_MSG(ts_pair_handshake(p), TLSOCK_EVERIFY, p->client_msg);
        TS_ASSERT_CONTAINS(tlsock_conn_errmsg(p->client), c->detail);
        TS_ASSERT_RC(tlsock_handshake(p->client), TLSOCK_EVERIFY);
        TS_ASSERT_RC(tlsock_read(p->client, buf, sizeof(buf), &n), TLSOCK_EVERIFY);
        /* The client's alert was queued and moved: the server learns why. */
        TS_ASSERT_RC_MSG(p->server_rc, TLSOCK_EPROTO, p->server_msg);
        src = tlsock_handshake(p->server);
        TS_ASSERT_RC_MSG(src, TLSOCK_EPROTO, tlsock_conn_errmsg(p->server));
        TS_ASSERT_CONTAINS(tlsock_conn_errmsg(p->server), "alert");
    }
}

/* ---- an event loop over a real socket -------------------------------------------------------- */

enum phase { PH_HANDSHAKE, PH_SEND, PH_RECV, PH_WAIT_CLOSE, PH_DONE };

/* One end of the socketpair as an event loop would run it. */
struct loop_side {
    struct tlsock_conn *conn;
    int fd;
    bool is_client;
    bool sock_eof;
    unsigned char out[16384]; /* drained, not yet sent */
    size_t out_len;
    size_t out_off;
    unsigned char *tx;
    unsigned char *rx;
    size_t size;
    size_t got;
    enum phase phase;
};

/* Runs the application as far as it can go without more input: 0, or a failure code. */
static int side_step(struct loop_side *s)
{
    unsigned char byte;
    int rc = 0;

    /* Each step either advances or stops on a WANT code; reads return at least one byte. */
    for (size_t i = 0; i < s->size + 16 && rc == 0 && s->phase != PH_DONE; i++) {
        size_t n = 0;

        switch (s->phase) {
        case PH_HANDSHAKE:
            rc = tlsock_handshake(s->conn);
            if (rc == 0) {
                s->phase = s->is_client ? PH_SEND : PH_RECV;
            }
            break;
        case PH_SEND:
            rc = tlsock_write(s->conn, s->tx, s->size);
            if (rc == 0 && !s->is_client) {
                rc = tlsock_shutdown(s->conn);
            }
            if (rc == 0) {
                s->phase = s->is_client ? PH_RECV : PH_WAIT_CLOSE;
            }
            break;
        case PH_RECV:
            rc = tlsock_read(s->conn, s->rx + s->got, s->size - s->got, &n);
            if (rc == 0) {
                s->got += n;
            }
            if (rc == 0 && s->got == s->size) {
                s->phase = s->is_client ? PH_WAIT_CLOSE : PH_SEND;
            }
            break;
        case PH_WAIT_CLOSE:
            rc = tlsock_read(s->conn, &byte, 1, &n);
            if (rc == 0) {
                rc = TS_EMISMATCH; /* nothing may follow the data */
            } else if (rc == TLSOCK_ECLOSED) {
                rc = s->is_client ? tlsock_shutdown(s->conn) : 0;
                s->phase = PH_DONE;
            }
            break;
        case PH_DONE:
            break;
        }
    }
    return rc == TLSOCK_EWANT_READ ? 0 : rc;
}

/* Sends drained ciphertext until the socket is full or nothing is left. */
static int side_send(struct loop_side *s)
{
    int rc = 0;

    /* Bounded: every pass sends or drains at least one byte, or stops. */
    for (int i = 0; i < 100000 && rc == 0; i++) {
        ssize_t w;

        if (s->out_off == s->out_len) {
            rc = tlsock_drain(s->conn, s->out, sizeof(s->out), &s->out_len);
            s->out_off = 0;
            if (rc != 0 || s->out_len == 0) {
                break;
            }
        }
        w = send(s->fd, s->out + s->out_off, s->out_len - s->out_off, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }
        if (w < 0 && errno != EINTR) {
            rc = TLSOCK_ESYS;
        } else if (w > 0) {
            s->out_off += (size_t)w;
        }
    }
    return rc;
}

/* Feeds what the socket has, and the end of the stream when it comes. */
static int side_recv(struct loop_side *s)
{
    unsigned char buf[16384];
    int rc = 0;

    for (int i = 0; i < 100000 && rc == 0 && !s->sock_eof; i++) {
        ssize_t r = recv(s->fd, buf, sizeof(buf), 0);

        if (r > 0) {
            rc = tlsock_feed(s->conn, buf, (size_t)r);
        } else if (r == 0) {
            s->sock_eof = true;
            rc = tlsock_feed_eof(s->conn);
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else if (errno != EINTR) {
            rc = TLSOCK_ESYS;
        }
    }
    return rc;
}

static bool side_idle(const struct loop_side *s)
{
    return s->phase == PH_DONE && s->out_off == s->out_len &&
           tlsock_conn_pending_output(s->conn) == 0;
}

/* The pair and the socketpair its ciphertext crosses, both released by the teardown. */
struct poll_env {
    struct ts_pair pair;
    int fds[2];
};

static int poll_setup(void **state)
{
    struct poll_env *env = malloc(sizeof(*env));

    if (env != NULL) {
        ts_pair_init(&env->pair);
        env->fds[0] = env->fds[1] = -1;
    }
    *state = env;
    return env != NULL ? 0 : -1;
}

static int poll_teardown(void **state)
{
    struct poll_env *env = *state;

    if (env != NULL) {
        ts_pair_release(&env->pair);
        for (int i = 0; i < 2; i++) {
            if (env->fds[i] >= 0) {
                close(env->fds[i]);
            }
        }
        free(env);
        *state = NULL;
    }
    return 0;
}

static void test_poll_loop(void **state)
{
    struct poll_env *env = *state;
    struct ts_pair *p = &env->pair;
    const size_t size = MIB;
    struct loop_side sides[2];
    int64_t deadline = tlsock_now_ms() + 2 * TS_IO_TIMEOUT_MS;
    enum phase phases[2];
    size_t got[2];
    bool intact[2];
    int idle_polls = 0;
    int rc = 0;
    size_t iterations = 0;

    pair_open(p, ts_pki.ca.cert, "localhost");
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, env->fds),
                     0);
    memset(sides, 0, sizeof(sides));
    for (int i = 0; i < 2; i++) {
        sides[i].conn = i == 0 ? p->client : p->server;
        sides[i].fd = env->fds[i];
        sides[i].is_client = i == 0;
        sides[i].size = size;
        sides[i].tx = malloc(size);
        sides[i].rx = malloc(size);
        assert_non_null(sides[i].tx);
        assert_non_null(sides[i].rx);
        ts_fill(sides[i].tx, size, i == 0 ? 11 : 12);
    }

    /* The loop ends when both sides finished and flushed, on an error, or at the deadline. */
    for (; iterations < 100000 && rc == 0 && !(side_idle(&sides[0]) && side_idle(&sides[1]));
         iterations++) {
        struct pollfd pfds[2];
        int ready;

        for (int i = 0; i < 2 && rc == 0; i++) {
            rc = side_step(&sides[i]);
            if (rc == 0) {
                rc = side_send(&sides[i]);
            }
        }
        if (rc != 0 || (side_idle(&sides[0]) && side_idle(&sides[1]))) {
            break;
        }
        for (int i = 0; i < 2; i++) {
            bool unsent = sides[i].out_off < sides[i].out_len ||
                          tlsock_conn_pending_output(sides[i].conn) > 0;

            pfds[i] = (struct pollfd){
                .fd = sides[i].fd,
                .events = (short)((sides[i].sock_eof ? 0 : POLLIN) | (unsent ? POLLOUT : 0)),
            };
        }
        ready = poll(pfds, 2, 1000);
        if (ready == 0) {
            idle_polls++;
            if (idle_polls > 5 || tlsock_now_ms() > deadline) {
                rc = TLSOCK_ETIMEDOUT;
            }
        }
        for (int i = 0; i < 2 && rc == 0 && ready > 0; i++) {
            if ((pfds[i].revents & (POLLIN | POLLHUP)) != 0) {
                rc = side_recv(&sides[i]);
            }
        }
    }
    print_message("%zu loop iterations, %d idle polls\n", iterations, idle_polls);
    for (int i = 0; i < 2; i++) {
        phases[i] = sides[i].phase;
        got[i] = sides[i].got;
        intact[i] = got[i] == size && ts_same_pattern(sides[i].rx, size, i == 0 ? 12 : 11);
        free(sides[i].tx);
        free(sides[i].rx);
    }
    TS_ASSERT_RC_MSG(rc, 0, tlsock_conn_errmsg(p->client));
    for (int i = 0; i < 2; i++) {
        assert_int_equal(phases[i], PH_DONE);
        assert_int_equal(got[i], size);
        assert_true(intact[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_handshake, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_write_before_handshake, ts_pair_setup,
                                        ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_data_both_ways, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_one_byte_at_a_time, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_truncation, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_truncation_in_handshake, ts_pair_setup,
                                        ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_close_notify_in_handshake, ts_pair_setup,
                                        ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_close_notify, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_faulty_path, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_not_memory_mode, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_verify_failure, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_poll_loop, poll_setup, poll_teardown),
    };

    return cmocka_run_group_tests_name("memory", tests, ts_pki_setup, ts_pki_teardown);
}
