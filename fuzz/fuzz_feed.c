/*
 * Plain byte fuzzing of one memory-mode connection: the input is what its peer sent. Built twice:
 * fuzz_server (FZ_ROLE = TLSOCK_SERVER, fed a client's bytes) and fuzz_client (TLSOCK_CLIENT, fed
 * a server's bytes; its own ClientHello is discarded). It reaches the first flight and the
 * error paths behind it; fuzz_session goes further.
 *
 * Input:
 *   byte 0: configuration
 *     bit 0      implementation (0 OpenSSL, 1 GnuTLS; the other when one is not compiled in)
 *     bits 1-2   versions: 0 "1.2-1.3", 1 "1.3", 2 "1.2-1.2", 3 "1.0-1.3" (with the legacy policy)
 *     bit 3      "compat" cipher policy
 *     bit 4      ALPN ("h2,http/1.1")
 *     bits 5-6   server: verify mode NONE, OPTIONAL, REQUIRED, NONE (client certificates)
 *                client: 0 verify "localhost", 1 verify nothing, 2 verify "localhost" with no
 *                SNI sent, 3 verify nothing and present a client certificate
 *     bit 7      feed in chunks of byte 1's size (else everything at once)
 *   byte 1: the chunk size (1-255; 0 means 1), only with bit 7
 *   the rest: the peer's bytes.
 * After the bytes, the stream ends (tlsock_feed_eof) and the connection is used once more.
 * Invariants: a fatal error is sticky (the next call returns the same code); the handshake never
 * ends in TLSOCK_ECLOSED (a close_notify is only a clean close from an authenticated peer).
 */
#include "fuzz.h"

#include <string.h>

#ifndef FZ_ROLE
#error "FZ_ROLE must be TLSOCK_SERVER or TLSOCK_CLIENT"
#endif

struct run {
    struct tlsock_conn *conn;
    bool handshake_done;
    int sticky;
    bool echoed;
};

static bool fatal(int rc)
{
    return rc != 0 && rc != TLSOCK_EWANT_READ && rc != TLSOCK_EWANT_WRITE && rc != TLSOCK_ECLOSED &&
           rc != TLSOCK_EINVAL;
}

static int settle(struct run *r, const char *call, int rc)
{
    if (r->sticky != 0 && rc != r->sticky) {
        fz_fail("%s after the fatal %s returned %s (%s)", call, tlsock_err_name(r->sticky),
                tlsock_err_name(rc), tlsock_conn_errmsg(r->conn));
    }
    if (fatal(rc)) {
        r->sticky = rc;
    }
    return rc;
}

/* Runs the handshake, then reads what arrived, answering the first data once. */
static void step(struct run *r)
{
    unsigned char buf[4096];
    size_t n = 0;
    int rc = 0;

    if (!r->handshake_done) {
        rc = settle(r, "handshake", tlsock_handshake(r->conn));
        r->handshake_done = rc == 0;
        if (rc == TLSOCK_ECLOSED) {
            fz_fail("the handshake returned TLSOCK_ECLOSED: a close_notify from an "
                    "unauthenticated peer taken for a clean close");
        }
    }
    for (int i = 0; rc == 0 && i < 16; i++) {
        rc = settle(r, "read", tlsock_read(r->conn, buf, sizeof(buf), &n));
        if (rc == 0 && !r->echoed) {
            r->echoed = true;
            settle(r, "write", tlsock_write(r->conn, buf, n));
        }
    }
    if (rc == TLSOCK_ECLOSED) {
        /* Half-closed by the peer: this side may still write and close. */
        settle(r, "write", tlsock_write(r->conn, "bye", 3));
        settle(r, "shutdown", tlsock_shutdown(r->conn));
    }
    fz_discard_output(r->conn);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_setup();
    return 0;
}

static struct fz_config config_of(uint8_t cfg)
{
    unsigned mode = (cfg >> 5) & 3;
    struct fz_config c = {
        .role = FZ_ROLE,
        .impl = fz_impl(cfg),
        .protocols = fz_protocols[(cfg >> 1) & 3],
        .ciphers = fz_ciphers[(cfg >> 3) & 1],
        .alpn = cfg & 0x10 ? "h2,http/1.1" : NULL,
    };
    static const int server_verify[4] = {TLSOCK_VERIFY_NONE, TLSOCK_VERIFY_OPTIONAL,
                                         TLSOCK_VERIFY_REQUIRED, TLSOCK_VERIFY_NONE};

    if (FZ_ROLE == TLSOCK_SERVER) {
        c.cert = true;
        c.verify = server_verify[mode];
        c.trust = c.verify != TLSOCK_VERIFY_NONE;
    } else {
        c.verify = mode & 1 ? TLSOCK_VERIFY_NONE : TLSOCK_VERIFY_REQUIRED;
        c.trust = true;
        c.cert = mode == 3;
    }
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_in in = {.p = data, .n = size};
    uint8_t cfg = fz_u8(&in);
    size_t chunk = cfg & 0x80 ? fz_u8(&in) : 0;
    struct fz_config c = config_of(cfg);
    struct tlsock_opts opts = TLSOCK_OPTS_INIT;
    struct run r = {0};

    fz_input_begin();
    if (FZ_ROLE == TLSOCK_CLIENT) {
        opts.servername = ((cfg >> 5) & 3) == 2 ? "" : FZ_HOST;
        opts.verify_name = FZ_HOST;
    }
    int rc = tlsock_attach_mem(fz_ctx(&c), &opts, &r.conn);
    if (rc != 0) {
        fz_fail("attach_mem: %s (%s)", tlsock_err_name(rc), tlsock_errmsg());
    }
    /* A client speaks first: its ClientHello goes nowhere. */
    step(&r);
    chunk = chunk == 0 && (cfg & 0x80) ? 1 : chunk;
    while (in.n > 0) {
        size_t n = 0;
        const uint8_t *p = fz_bytes(&in, chunk > 0 ? chunk : in.n, &n);
        rc = tlsock_feed(r.conn, p, n);
        if (rc != 0) {
            fz_fail("feed: %s (%s)", tlsock_err_name(rc), tlsock_conn_errmsg(r.conn));
        }
        step(&r);
    }
    rc = tlsock_feed_eof(r.conn);
    if (rc != 0) {
        fz_fail("feed_eof: %s", tlsock_err_name(rc));
    }
    step(&r);
    tlsock_close(r.conn);
    return 0;
}
