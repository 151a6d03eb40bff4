/*
 * Session tickets on servers (include/tlsock.h, "Session tickets"; docs/tickets.md), across the
 * implementation matrix over the in-memory pair. The client resumes through its implementation's
 * own API on the native session (tlsock clients do not resume by themselves in this branch):
 * OpenSSL SSL_get1_session / SSL_set_session, GnuTLS gnutls_session_get_data2 /
 * gnutls_session_set_data, from the connection configure callback.
 *
 * Rotation runs on the key clock that src/impl/ticket_keys.h lets tests replace.
 */
#include "pair.h"
#include "records.h"
#include "support.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "impl/ticket_keys.h"

#if TLSOCK_TEST_HAVE_OPENSSL
#include <openssl/ssl.h>
#endif
#if TLSOCK_TEST_HAVE_GNUTLS
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

/*
 * The SHA3-512 digests tlsock's own code asks for: a GnuTLS server names its ticket keys with them
 * (src/impl/gnutls_tickets.c). The test links with --wrap=gnutls_hash_fast, which reaches the
 * static library's calls and not GnuTLS's calls inside its own library.
 */
static int sha3_digests;

int __real_gnutls_hash_fast(gnutls_digest_algorithm_t algorithm, const void *text, size_t len,
                            void *digest);
int __wrap_gnutls_hash_fast(gnutls_digest_algorithm_t algorithm, const void *text, size_t len,
                            void *digest);
int __wrap_gnutls_hash_fast(gnutls_digest_algorithm_t algorithm, const void *text, size_t len,
                            void *digest)
{
    sha3_digests += algorithm == GNUTLS_DIG_SHA3_512;
    return __real_gnutls_hash_fast(algorithm, text, len, digest);
}
#endif

/* A client's saved session, in its implementation's own form. */
struct saved {
    int impl;
    bool ticket; /* the session holds a ticket from the server */
#if TLSOCK_TEST_HAVE_OPENSSL
    SSL_SESSION *ossl;
#endif
#if TLSOCK_TEST_HAVE_GNUTLS
    gnutls_datum_t gtls;
#endif
};

static void saved_clear(struct saved *s)
{
#if TLSOCK_TEST_HAVE_OPENSSL
    SSL_SESSION_free(s->ossl);
    s->ossl = NULL;
#endif
#if TLSOCK_TEST_HAVE_GNUTLS
    gnutls_free(s->gtls.data);
    s->gtls.data = NULL;
    s->gtls.size = 0;
#endif
    s->ticket = false;
}

/* @p to becomes a copy of @p from, which keeps its own. */
static void saved_copy(struct saved *to, const struct saved *from)
{
    memset(to, 0, sizeof(*to));
    to->impl = from->impl;
    to->ticket = from->ticket;
#if TLSOCK_TEST_HAVE_OPENSSL
    if (from->ossl != NULL) {
        assert_int_equal(SSL_SESSION_up_ref(from->ossl), 1);
        to->ossl = from->ossl;
    }
#endif
#if TLSOCK_TEST_HAVE_GNUTLS
    if (from->gtls.data != NULL) {
        to->gtls.data = gnutls_malloc(from->gtls.size);
        assert_non_null(to->gtls.data);
        memcpy(to->gtls.data, from->gtls.data, from->gtls.size);
        to->gtls.size = from->gtls.size;
    }
#endif
}

/* Connection configure callback: offers the saved session, if any. */
static int offer_saved(void *native, void *user)
{
    struct saved *s = user;

#if TLSOCK_TEST_HAVE_OPENSSL
    if (s->impl == TLSOCK_IMPL_OPENSSL && s->ossl != NULL) {
        return SSL_set_session(native, s->ossl) == 1 ? 0 : -1;
    }
#endif
#if TLSOCK_TEST_HAVE_GNUTLS
    if (s->impl == TLSOCK_IMPL_GNUTLS && s->gtls.data != NULL) {
        return gnutls_session_set_data(native, s->gtls.data, s->gtls.size) == 0 ? 0 : -1;
    }
#endif
    (void)native;
    return 0;
}

/* Keeps the client's session after its handshake and the ticket that followed. */
static void save(struct saved *s, struct tlsock_conn *client)
{
    void *native = tlsock_conn_native(client);

    saved_clear(s);
#if TLSOCK_TEST_HAVE_OPENSSL
    if (s->impl == TLSOCK_IMPL_OPENSSL) {
        s->ossl = SSL_get1_session(native);
        assert_non_null(s->ossl);
        s->ticket = SSL_SESSION_has_ticket(s->ossl) == 1;
    }
#endif
#if TLSOCK_TEST_HAVE_GNUTLS
    if (s->impl == TLSOCK_IMPL_GNUTLS) {
        assert_int_equal(gnutls_session_get_data2(native, &s->gtls), 0);
        s->ticket = (gnutls_session_get_flags(native) & GNUTLS_SFLAGS_SESSION_TICKET) != 0;
    }
#endif
    (void)native;
}

/* Whether @p a and @p b hold the same ticket, or both none. */
static bool same_ticket(const struct saved *a, const struct saved *b)
{
    if (!a->ticket || !b->ticket) {
        return a->ticket == b->ticket;
    }
#if TLSOCK_TEST_HAVE_OPENSSL
    if (a->impl == TLSOCK_IMPL_OPENSSL) {
        const unsigned char *ta = NULL;
        const unsigned char *tb = NULL;
        size_t la = 0;
        size_t lb = 0;
        if (a->ossl != NULL) {
            SSL_SESSION_get0_ticket(a->ossl, &ta, &la);
        }
        if (b->ossl != NULL) {
            SSL_SESSION_get0_ticket(b->ossl, &tb, &lb);
        }
        return la == lb && (la == 0 || memcmp(ta, tb, la) == 0);
    }
#endif
#if TLSOCK_TEST_HAVE_GNUTLS
    if (a->impl == TLSOCK_IMPL_GNUTLS) {
        return a->gtls.size == b->gtls.size &&
               (a->gtls.size == 0 || memcmp(a->gtls.data, b->gtls.data, a->gtls.size) == 0);
    }
#endif
    (void)b;
    return true;
}

struct fixture {
    struct saved saved;
    const struct tlsock__pem_pair *client_cert; /* the client's certificate, NULL for none */
    bool tickets_off; /* the server sends no tickets: the client holds none after connecting */
    char dir[64];
    char keys[96];
};

static int64_t fake_now;
static int64_t fake_clock(void)
{
    return fake_now;
}

#if TLSOCK_TEST_HAVE_GNUTLS
/* GnuTLS's own time, for its ticket key step (gnutls_tickets.c): moved with the key clock. */
static time_t fake_gnutls_time(time_t *t)
{
    if (t != NULL) {
        *t = (time_t)fake_now;
    }
    return (time_t)fake_now;
}
#endif

/* The key clock (and GnuTLS's own) at @p start; then moving fake_now moves both. */
static void fake_clock_start(int64_t start)
{
    fake_now = start;
    tlsock__ticket_keys_set_clock(fake_clock);
#if TLSOCK_TEST_HAVE_GNUTLS
    gnutls_global_set_time_function(fake_gnutls_time);
#endif
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/tlsock-tickets-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->keys, sizeof(f->keys), "%s/keys", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    tlsock__ticket_keys_set_clock(NULL);
#if TLSOCK_TEST_HAVE_GNUTLS
    gnutls_global_set_time_function(time);
#endif
    saved_clear(&f->saved);
    unlink(f->keys);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* A server context: ts_pki.server, @p range, then @p prep (may be NULL) for the ticket setters. */
static struct tlsock_ctx *server_ctx(const char *range, const char *keys, bool tickets)
{
    struct tlsock_ctx *sctx = NULL;

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &sctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_protocols(sctx, range), 0);
    if (keys != NULL) {
        TS_ASSERT_RC(tlsock_ctx_set_ticket_keys_file(sctx, keys), 0);
    }
    if (!tickets) {
        TS_ASSERT_RC(tlsock_ctx_set_tickets(sctx, false), 0);
    }
    return sctx;
}

/*
 * One connection to @p sctx (the pair takes a reference) offering @p f's saved session: data
 * from the server so that a TLS 1.3 client reads the tickets, the session saved again; whether
 * it resumed. On TLS 1.3, with tickets on, every connection (a resumed one too) must leave the
 * client a new ticket: a ticket is for one use (RFC 8446 C.4), and GnuTLS clients hold to that.
 * With f->tickets_off, the client must hold no ticket afterwards.
 */
static bool connect_once(struct fixture *f, struct tlsock_ctx *sctx, const char *range)
{
    struct ts_pair p;
    const struct tlsock_info *info = NULL;
    char buf[5];

    ts_pair_init(&p);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &p.cctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_protocols(p.cctx, range), 0);
    TS_ASSERT_RC(tlsock_ctx_set_configure(p.cctx, NULL, offer_saved, &f->saved), 0);
    if (f->client_cert != NULL) {
        const struct tlsock__pem_pair *c = f->client_cert;
        TS_ASSERT_RC(
            tlsock_ctx_set_cert_mem(p.cctx, c->cert, strlen(c->cert), c->key, strlen(c->key)), 0);
    }
    f->saved.impl = tlsock_ctx_impl(p.cctx);
    p.sctx = tlsock_ctx_ref(sctx);
    TS_ASSERT_RC(ts_pair_open(&p), 0);
    TS_ASSERT_RC(ts_pair_handshake(&p), 0);
    TS_ASSERT_RC(ts_pair_write(&p, TS_S2C, "hello", 5), 0);
    TS_ASSERT_RC(ts_pair_read(&p, TS_S2C, buf, 5), 0);
    TS_ASSERT_RC(tlsock_conn_info(p.client, &info), 0);
    bool resumed = info->resumed;
    TS_ASSERT_RC(tlsock_conn_info(p.server, &info), 0);
    assert_int_equal(info->resumed, resumed); /* both sides agree */
    struct saved offered;
    saved_copy(&offered, &f->saved);
    save(&f->saved, p.client);
    if (f->tickets_off) {
        assert_false(f->saved.ticket);
    } else if (strcmp(range, "1.3") == 0) {
        assert_false(same_ticket(&f->saved, &offered));
    }
    saved_clear(&offered);
    ts_pair_release(&p);
    return resumed;
}

/* TLS 1.3 only, then TLS 1.2 only ("1.2" alone would mean 1.2 and newer). */
static const char *const ranges[] = {"1.3", "1.2-1.2"};

/* On by default: the second connection resumes, on TLS 1.3 and 1.2. */
static void test_default_resumes(void **state)
{
    struct fixture *f = *state;

    for (size_t i = 0; i < 2; i++) {
        struct tlsock_ctx *sctx = server_ctx(ranges[i], NULL, true);
        saved_clear(&f->saved);
        assert_false(connect_once(f, sctx, ranges[i]));
        assert_true(connect_once(f, sctx, ranges[i]));
        assert_true(connect_once(f, sctx, ranges[i]));
        tlsock_ctx_free(sctx);
    }
}

/* Moves what @p from has to send through @p flow of @p w to @p to. */
static void wire_move(struct ts_wire *w, struct ts_flow *flow, struct tlsock_conn *from,
                      struct tlsock_conn *to)
{
    unsigned char buf[16384];
    struct ts_bytes out = {0};
    size_t n = 0;

    do {
        TS_ASSERT_RC(tlsock_drain(from, buf, sizeof(buf), &n), 0);
        assert_int_equal(ts_wire_pass(w, flow, buf, n, &out), 0);
    } while (n == sizeof(buf));
    if (out.len > 0) {
        TS_ASSERT_RC(tlsock_feed(to, out.data, out.len), 0);
    }
    ts_bytes_free(&out);
}

/*
 * A TLS 1.2 handshake with @p sctx through a wire that reads the plaintext handshake messages
 * (TLS 1.2 sends NewSessionTicket before ChangeCipherSpec): how many NewSessionTickets crossed,
 * and the ticket_lifetime_hint of the first (RFC 5077 3.3) in @p hint, parsed by the test's own
 * code, so that it is read the same way whatever the client.
 */
static size_t tls12_tickets(struct tlsock_ctx *sctx, uint32_t *hint)
{
    struct tlsock_ctx *cctx = NULL;
    struct tlsock_conn *client = NULL;
    struct tlsock_conn *server = NULL;
    struct tlsock_opts copts = ts_opts();
    struct tlsock_opts sopts = ts_opts();
    struct ts_wire w;
    int crc = TLSOCK_EWANT_READ;
    int src = TLSOCK_EWANT_READ;
    size_t len = 0;

    copts.servername = TS_PAIR_NAME;
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &cctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_protocols(cctx, "1.2-1.2"), 0);
    TS_ASSERT_RC(tlsock_attach_mem(cctx, &copts, &client), 0);
    TS_ASSERT_RC(tlsock_attach_mem(sctx, &sopts, &server), 0);
    ts_wire_init(&w, 0, 0);
    for (int round = 0; round < 20 && (crc != 0 || src != 0); round++) {
        crc = crc != 0 ? tlsock_handshake(client) : 0;
        wire_move(&w, &w.c2s, client, server);
        src = src != 0 ? tlsock_handshake(server) : 0;
        wire_move(&w, &w.s2c, server, client);
    }
    TS_ASSERT_RC(crc, 0);
    TS_ASSERT_RC(src, 0);
    assert_int_equal(w.version, 0x0303);
    size_t count = ts_flow_count(&w.s2c, TS_HS_NEW_SESSION_TICKET);
    const unsigned char *nst = ts_flow_msg(&w.s2c, TS_HS_NEW_SESSION_TICKET, 0, &len);
    if (count > 0) {
        assert_non_null(nst);
        assert_true(len > 6); /* the hint, the ticket's two-byte length, a ticket */
        assert_int_equal(len, 6 + ((size_t)nst[4] << 8 | nst[5]));
        *hint = (uint32_t)nst[0] << 24 | (uint32_t)nst[1] << 16 | (uint32_t)nst[2] << 8 | nst[3];
    }
    ts_wire_free(&w);
    tlsock_close(client);
    tlsock_close(server);
    tlsock_ctx_free(cctx);
    return count;
}

/*
 * Off: no ticket sent (the client holds none; on TLS 1.2 no NewSessionTicket crosses the wire),
 * and a ticket the client offers is ignored, even one made under the same key file by a server
 * with tickets on. (On TLS 1.2 a server may still resume a client by session ID from its
 * session-ID cache, which is not a ticket, so TLS 1.2 resumption is not asserted beyond that.)
 */
static void test_off_no_resumption(void **state)
{
    struct fixture *f = *state;

    TS_ASSERT_RC(tlsock_ticket_keys_write(f->keys, 0), 0);
    for (size_t i = 0; i < 2; i++) {
        struct tlsock_ctx *on = server_ctx(ranges[i], f->keys, true);
        struct tlsock_ctx *off = server_ctx(ranges[i], f->keys, false);
        saved_clear(&f->saved);
        f->tickets_off = false;
        assert_false(connect_once(f, on, ranges[i]));
        assert_true(f->saved.ticket);
        f->tickets_off = true;
        assert_false(connect_once(f, off, ranges[i]));
        if (i == 0) {
            assert_false(connect_once(f, off, ranges[i]));
        } else {
            uint32_t hint = 0;
            assert_int_equal(tls12_tickets(off, &hint), 0);
            assert_int_equal(tls12_tickets(on, &hint), 1);
        }
        tlsock_ctx_free(on);
        tlsock_ctx_free(off);
    }
}

/* Lifetime setters: the range, and client contexts refused. */
static void test_lifetime_setter(void **state)
{
    struct tlsock_ctx *c = NULL;
    struct tlsock_ctx *sctx = NULL;

    (void)state;
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &c), 0);
    TS_ASSERT_RC(tlsock_ctx_set_ticket_lifetime(c, 60), TLSOCK_EINVAL);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(c), "server contexts");
    TS_ASSERT_RC(tlsock_ctx_set_tickets(c, true), TLSOCK_EINVAL);
    tlsock_ctx_free(c);
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &sctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_ticket_lifetime(sctx, 0), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_set_ticket_lifetime(sctx, 604801), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_set_ticket_lifetime(sctx, 604800), 0);
    tlsock_ctx_free(sctx);
}

/* TLS 1.2: the lifetime set (and the default) is the hint the NewSessionTicket carries. */
static void test_lifetime_tls12(void **state)
{
    const unsigned lifetimes[] = {4321, 0 /* the default */};

    (void)state;
    for (size_t i = 0; i < 2; i++) {
        struct tlsock_ctx *sctx = server_ctx("1.2-1.2", NULL, true);
        if (lifetimes[i] != 0) {
            TS_ASSERT_RC(tlsock_ctx_set_ticket_lifetime(sctx, lifetimes[i]), 0);
        }
        uint32_t hint = 0;
        assert_int_equal(tls12_tickets(sctx, &hint), 1);
        assert_int_equal(hint, lifetimes[i] != 0 ? lifetimes[i] : 7200);
        tlsock_ctx_free(sctx);
    }
}

#if TLSOCK_TEST_HAVE_OPENSSL
/*
 * TLS 1.3: the ticket_lifetime the client was told, as an OpenSSL client reports it (a GnuTLS
 * client does not; main() runs this case only in rows with an OpenSSL client), and no
 * max_early_data in the ticket.
 */
static void test_lifetime_tls13(void **state)
{
    struct fixture *f = *state;
    const unsigned lifetimes[] = {4321, 0 /* the default */};

    for (size_t i = 0; i < 2; i++) {
        struct tlsock_ctx *sctx = server_ctx("1.3", NULL, true);
        if (lifetimes[i] != 0) {
            TS_ASSERT_RC(tlsock_ctx_set_ticket_lifetime(sctx, lifetimes[i]), 0);
        }
        saved_clear(&f->saved);
        assert_false(connect_once(f, sctx, "1.3"));
        assert_int_equal(f->saved.impl, TLSOCK_IMPL_OPENSSL);
        assert_int_equal(SSL_SESSION_get_ticket_lifetime_hint(f->saved.ossl),
                         lifetimes[i] != 0 ? lifetimes[i] : 7200);
        /* RFC 8446 4.2.10: the ticket allows no early data. */
        assert_int_equal(SSL_SESSION_get_max_early_data(f->saved.ossl), 0);
        tlsock_ctx_free(sctx);
    }
}

/* Whether this row's client contexts are OpenSSL's. */
static bool client_is_openssl(void)
{
    struct tlsock_ctx *ctx = NULL;
    bool openssl =
        ts_ctx_new(TLSOCK_CLIENT, &ctx) == 0 && tlsock_ctx_impl(ctx) == TLSOCK_IMPL_OPENSSL;

    tlsock_ctx_free(ctx);
    return openssl;
}
#endif

/*
 * The ticket key names a server computed for one connection. A GnuTLS server names a key with one
 * SHA3-512 per time step it tries (gnutls_tickets.c); OpenSSL servers compute none.
 */
static int names_computed(struct fixture *f, struct tlsock_ctx *sctx, const char *range,
                          bool *resumed)
{
#if TLSOCK_TEST_HAVE_GNUTLS
    sha3_digests = 0;
#endif
    *resumed = connect_once(f, sctx, range);
#if TLSOCK_TEST_HAVE_GNUTLS
    return sha3_digests;
#else
    return 0;
#endif
}

/*
 * Rotation on the key clock: a ticket from period n resumes in n + 1 (the previous key), not in
 * n + 2. The clock runs ten days ahead of the real one (the certificates are good for 30), far
 * enough that code reading the real time instead of the key clock chooses other keys.
 *
 * A ticket of the current period, the common case, costs a GnuTLS server one key name: the
 * current key is tried first. One of the previous period costs more.
 */
static void test_rotation(void **state)
{
    struct fixture *f = *state;
    const int64_t period = 3600;
    const int64_t start = ((int64_t)time(NULL) + 10 * 86400) / period * period + 10;

    TS_ASSERT_RC(tlsock_ticket_keys_write(f->keys, (unsigned)period), 0);
    for (size_t i = 0; i < 2; i++) {
        struct tlsock_ctx *sctx = server_ctx(ranges[i], f->keys, true);
        bool gnutls_server = tlsock_ctx_impl(sctx) == TLSOCK_IMPL_GNUTLS;
        bool resumed = true;
        fake_clock_start(start);
        saved_clear(&f->saved);
        assert_int_equal(names_computed(f, sctx, ranges[i], &resumed), 0); /* no ticket */
        assert_false(resumed);
        /* The same period: the current key names the ticket at once. */
        assert_int_equal(names_computed(f, sctx, ranges[i], &resumed), gnutls_server ? 1 : 0);
        assert_true(resumed);
        fake_now += period;
        struct saved keep = f->saved;
        saved_copy(&f->saved, &keep);
        /* One period later: the previous key still opens the ticket, found after the current. */
        int names = names_computed(f, sctx, ranges[i], &resumed);
        assert_true(resumed);
        assert_true(gnutls_server ? names >= 2 : names == 0);
        saved_clear(&f->saved);
        f->saved = keep;
        /* Two periods later: refused, a full handshake. */
        fake_now += period;
        assert_false(connect_once(f, sctx, ranges[i]));
        tlsock_ctx_free(sctx);
    }
}

/* Two contexts loading one key file (as two servers would): a ticket of one resumes on the other.
 */
static void test_shared_file(void **state)
{
    struct fixture *f = *state;

    TS_ASSERT_RC(tlsock_ticket_keys_write(f->keys, 0), 0);
    for (size_t i = 0; i < 2; i++) {
        struct tlsock_ctx *a = server_ctx(ranges[i], f->keys, true);
        struct tlsock_ctx *b = server_ctx(ranges[i], f->keys, true);
        struct tlsock_ctx *other = server_ctx(ranges[i], NULL, true);
        saved_clear(&f->saved);
        assert_false(connect_once(f, a, ranges[i]));
        assert_true(connect_once(f, b, ranges[i]));
        assert_true(connect_once(f, a, ranges[i]));
        /* A context with its own random secret cannot open it. */
        assert_false(connect_once(f, other, ranges[i]));
        tlsock_ctx_free(a);
        tlsock_ctx_free(b);
        tlsock_ctx_free(other);
    }
}

/* A server_ctx() with tickets under @p keys that requires client certificates from ts_pki.ca,
 * with a verify depth of @p depth (-1: the default). */
static struct tlsock_ctx *verifying_ctx(const char *range, const char *keys, int depth)
{
    struct tlsock_ctx *sctx = server_ctx(range, keys, true);

    TS_ASSERT_RC(tlsock_ctx_set_ca_mem(sctx, ts_pki.ca.cert, strlen(ts_pki.ca.cert)), 0);
    TS_ASSERT_RC(tlsock_ctx_set_verify(sctx, TLSOCK_VERIFY_REQUIRED), 0);
    if (depth >= 0) {
        TS_ASSERT_RC(tlsock_ctx_set_verify_depth(sctx, depth), 0);
    }
    return sctx;
}

/*
 * Servers sharing one key file but verifying client certificates differently: a resumed session
 * is not verified again, so a ticket resumes only on a server that verifies clients the same way
 * (docs/tickets.md). A ticket from a server that asks for no certificate must not let the client
 * skip the certificate a verifying server requires (it gets a full handshake, with its
 * certificate checked); a verifying server's ticket resumes on another configured alike, and not
 * on one whose verification differs (a verify depth here), nor on the server asking for none.
 */
static void test_client_auth_binding(void **state)
{
    struct fixture *f = *state;

    TS_ASSERT_RC(tlsock_ticket_keys_write(f->keys, 0), 0);
    f->client_cert = &ts_pki.client;
    for (size_t i = 0; i < 2; i++) {
        struct tlsock_ctx *plain = server_ctx(ranges[i], f->keys, true);
        struct tlsock_ctx *a = verifying_ctx(ranges[i], f->keys, -1);
        struct tlsock_ctx *b = verifying_ctx(ranges[i], f->keys, -1);
        struct tlsock_ctx *depth = verifying_ctx(ranges[i], f->keys, 3);
        saved_clear(&f->saved);
        assert_false(connect_once(f, plain, ranges[i]));
        assert_true(connect_once(f, plain, ranges[i]));
        assert_false(connect_once(f, a, ranges[i]));
        assert_true(connect_once(f, b, ranges[i]));
        assert_false(connect_once(f, depth, ranges[i]));
        assert_true(connect_once(f, depth, ranges[i]));
        assert_false(connect_once(f, plain, ranges[i]));
        tlsock_ctx_free(plain);
        tlsock_ctx_free(a);
        tlsock_ctx_free(b);
        tlsock_ctx_free(depth);
    }
    f->client_cert = NULL;
}

/* Writes the three parts to @p path, mode 0600 as a key file must be. */
static void write_key_text(const char *path, const char *a, const char *b, const char *c)
{
    const char *parts[] = {a, b, c};
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(fchmod(fd, 0600), 0);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(write(fd, parts[i], strlen(parts[i])), (ssize_t)strlen(parts[i]));
    }
    assert_int_equal(close(fd), 0);
}

/* Key file errors: each ECONFIG naming the file and the reason. */
static void test_key_file_errors(void **state)
{
    struct fixture *f = *state;
    struct tlsock_ctx *sctx = NULL;
    char text[512];

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &sctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_ticket_keys_file(sctx, f->keys), TLSOCK_ECONFIG);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(sctx), "cannot open ticket key file");
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(sctx), f->keys);

    TS_ASSERT_RC(tlsock_ticket_keys_write(f->keys, 60), 0);
    struct stat st;
    assert_int_equal(stat(f->keys, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    FILE *fp = fopen(f->keys, "r");
    assert_non_null(fp);
    size_t n = fread(text, 1, sizeof(text) - 1, fp);
    fclose(fp);
    text[n] = '\0';
    TS_ASSERT_CONTAINS(text, "tlsock-ticket-keys 1\nperiod 60\nsecret ");
    TS_ASSERT_RC(tlsock_ctx_set_ticket_keys_file(sctx, f->keys), 0);

    assert_int_equal(chmod(f->keys, 0644), 0);
    TS_ASSERT_RC(tlsock_ctx_set_ticket_keys_file(sctx, f->keys), TLSOCK_ECONFIG);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(sctx), "readable by others (mode 644)");

    assert_int_equal(truncate(f->keys, (off_t)(n - 10)), 0);
    assert_int_equal(chmod(f->keys, 0600), 0);
    TS_ASSERT_RC(tlsock_ctx_set_ticket_keys_file(sctx, f->keys), TLSOCK_ECONFIG);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(sctx), "bad \"secret\" line");
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(sctx), f->keys);

    assert_int_equal(truncate(f->keys, 5), 0);
    TS_ASSERT_RC(tlsock_ctx_set_ticket_keys_file(sctx, f->keys), TLSOCK_ECONFIG);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(sctx), "not a ticket key file");

    /* The lines in any order after the first; the last one may lack its newline. */
    static const char secret[] = "secret 000102030405060708090a0b0c0d0e0f"
                                 "101112131415161718191a1b1c1d1e1f\n";
    write_key_text(f->keys, "tlsock-ticket-keys 1\n", secret, "period 60");
    TS_ASSERT_RC_MSG(tlsock_ctx_set_ticket_keys_file(sctx, f->keys), 0, tlsock_ctx_errmsg(sctx));
    write_key_text(f->keys, "tlsock-ticket-keys 1\n", secret, "period 60s\n");
    TS_ASSERT_RC(tlsock_ctx_set_ticket_keys_file(sctx, f->keys), TLSOCK_ECONFIG);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(sctx), "bad \"period\" line");
    tlsock_ctx_free(sctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_default_resumes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_off_no_resumption, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lifetime_setter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lifetime_tls12, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_auth_binding, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_file_errors, setup, teardown),
#if TLSOCK_TEST_HAVE_OPENSSL
        /* Last: only in rows with an OpenSSL client (see the case). */
        cmocka_unit_test_setup_teardown(test_lifetime_tls13, setup, teardown),
#endif
    };
    size_t count = sizeof(tests) / sizeof(tests[0]);

#if TLSOCK_TEST_HAVE_OPENSSL
    count -= client_is_openssl() ? 0 : 1;
#endif
    return _cmocka_run_group_tests("tickets", tests, count, ts_pki_setup, ts_pki_teardown);
}
