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
#include "support.h"

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
#include <gnutls/gnutls.h>
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
    bool tickets_off; /* the server sends no tickets: the client's stays as it was */
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
 * client a new ticket: a ticket is for one use (RFC 8446 C.4), and GnuTLS clients hold to that;
 * with tickets off, none.
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
    if (strcmp(range, "1.3") == 0) {
        assert_int_equal(same_ticket(&f->saved, &offered), f->tickets_off);
    }
    saved_clear(&offered);
    ts_pair_release(&p);
    return resumed;
}

static const char *const ranges[] = {"1.3", "1.2"};

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

/* Off: never resumed, and an OpenSSL client holds no ticket. */
static void test_off_no_resumption(void **state)
{
    struct fixture *f = *state;

    for (size_t i = 0; i < 2; i++) {
        struct tlsock_ctx *sctx = server_ctx(ranges[i], NULL, false);
        saved_clear(&f->saved);
        f->tickets_off = true;
        assert_false(connect_once(f, sctx, ranges[i]));
#if TLSOCK_TEST_HAVE_OPENSSL
        if (f->saved.impl == TLSOCK_IMPL_OPENSSL) {
            assert_int_equal(SSL_SESSION_has_ticket(f->saved.ossl), 0);
        }
#endif
        assert_false(connect_once(f, sctx, ranges[i]));
        tlsock_ctx_free(sctx);
    }
}

/* The lifetime set is the one the client was told (read by an OpenSSL client). */
static void test_lifetime(void **state)
{
    struct fixture *f = *state;
    struct tlsock_ctx *c = NULL;

    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &c), 0);
    int impl = tlsock_ctx_impl(c);
    TS_ASSERT_RC(tlsock_ctx_set_ticket_lifetime(c, 60), TLSOCK_EINVAL); /* a client context */
    tlsock_ctx_free(c);
    if (impl != TLSOCK_IMPL_OPENSSL) {
        skip(); /* a GnuTLS client does not hand out the lifetime it was told */
    }
#if TLSOCK_TEST_HAVE_OPENSSL
    for (size_t i = 0; i < 2; i++) {
        struct tlsock_ctx *sctx = server_ctx(ranges[i], NULL, true);
        TS_ASSERT_RC(tlsock_ctx_set_ticket_lifetime(sctx, 0), TLSOCK_EINVAL);
        TS_ASSERT_RC(tlsock_ctx_set_ticket_lifetime(sctx, 604801), TLSOCK_EINVAL);
        TS_ASSERT_RC(tlsock_ctx_set_ticket_lifetime(sctx, 4321), 0);
        saved_clear(&f->saved);
        assert_false(connect_once(f, sctx, ranges[i]));
        assert_int_equal(SSL_SESSION_get_ticket_lifetime_hint(f->saved.ossl), 4321);
        tlsock_ctx_free(sctx);
        saved_clear(&f->saved);
        sctx = server_ctx(ranges[i], NULL, true);
        assert_false(connect_once(f, sctx, ranges[i]));
        assert_int_equal(SSL_SESSION_get_ticket_lifetime_hint(f->saved.ossl), 7200);
        tlsock_ctx_free(sctx);
    }
#endif
}

/*
 * Rotation on the key clock: a ticket from period n resumes in n + 1 (the previous key), not in
 * n + 2. The clock runs ten days ahead of the real one (the certificates are good for 30), far
 * enough that code reading the real time instead of the key clock chooses other keys.
 */
static void test_rotation(void **state)
{
    struct fixture *f = *state;
    const int64_t period = 3600;
    const int64_t start = ((int64_t)time(NULL) + 10 * 86400) / period * period + 10;

    TS_ASSERT_RC(tlsock_ticket_keys_write(f->keys, (unsigned)period), 0);
    for (size_t i = 0; i < 2; i++) {
        struct tlsock_ctx *sctx = server_ctx(ranges[i], f->keys, true);
        fake_clock_start(start);
        saved_clear(&f->saved);
        assert_false(connect_once(f, sctx, ranges[i]));
        fake_now += period;
        struct saved keep = f->saved;
        saved_copy(&f->saved, &keep);
        /* One period later: the previous key still opens the ticket. */
        assert_true(connect_once(f, sctx, ranges[i]));
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
    tlsock_ctx_free(sctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_default_resumes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_off_no_resumption, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lifetime, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_file_errors, setup, teardown),
    };

    return cmocka_run_group_tests_name("tickets", tests, ts_pki_setup, ts_pki_teardown);
}
