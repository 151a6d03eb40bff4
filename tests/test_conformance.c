/*
 * Handshake conformance across the implementation matrix, found by outside testing: handshake
 * messages fragmented into tiny records, DHE suites, ClientHellos with and without a
 * renegotiation signal, the server's cipher order, no HelloRetryRequest when the client already
 * sent a usable key share, renegotiation refused, and the words of the messages involved.
 *
 * Most cases run both peers in memory mode and move their ciphertext through a record "wire"
 * (support/records.h) that re-frames and inspects plaintext handshake records; the blocking
 * ones go through a re-framing proxy between two loopback sockets.
 */
#include "records.h"
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if TLSOCK_TEST_HAVE_OPENSSL
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#endif
#if TLSOCK_TEST_HAVE_GNUTLS
#include <gnutls/gnutls.h>
#endif

/* Every loop over both peers ends after this many rounds; a handshake needs fewer than ten. */
#define MAX_ROUNDS 64
/* A round in which neither peer moved a byte while both wait for input. */
#define TS_ESTALL 1003

static bool is_want(int rc)
{
    return rc == TLSOCK_EWANT_READ || rc == TLSOCK_EWANT_WRITE;
}

/* ---- two memory-mode peers and the wire between them ----------------------------------------- */

struct peers {
    struct tlsock_ctx *sctx;
    struct tlsock_ctx *cctx;
    struct tlsock_conn *client;
    struct tlsock_conn *server;
    struct ts_wire wire;
    struct ts_proxy proxy;
    struct ts_server srv;
};

static int peers_setup(void **state)
{
    struct peers *p = calloc(1, sizeof(*p));

    if (p != NULL) {
        p->srv.raw_fd = -1;
        p->proxy.lfd = -1;
        ts_wire_init(&p->wire, 0, 0);
    }
    *state = p;
    return p != NULL ? 0 : -1;
}

static int peers_teardown(void **state)
{
    struct peers *p = *state;

    if (p != NULL) {
        tlsock_close(p->client);
        tlsock_close(p->server);
        ts_server_stop(&p->srv);
        ts_proxy_stop(&p->proxy);
        ts_wire_free(&p->proxy.wire);
        ts_wire_free(&p->wire);
        tlsock_ctx_free(p->cctx);
        tlsock_ctx_free(p->sctx);
        free(p);
        *state = NULL;
    }
    return 0;
}

static struct peers *peers_renew(void **state, size_t index)
{
    if (index > 0) {
        assert_int_equal(peers_teardown(state), 0);
        assert_int_equal(peers_setup(state), 0);
    }
    return *state;
}

/* Contexts with the shared PKI; @p protocols applies to the client (NULL: default). */
static void peers_contexts(struct peers *p, const char *protocols)
{
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &p->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &p->cctx), 0);
    if (protocols != NULL) {
        TS_ASSERT_RC_MSG(tlsock_ctx_set_protocols(p->cctx, protocols), 0,
                         tlsock_ctx_errmsg(p->cctx));
    }
}

static void peers_attach(struct peers *p)
{
    struct tlsock_opts copts = ts_opts();
    struct tlsock_opts sopts = ts_opts();

    copts.servername = "localhost";
    TS_ASSERT_RC(tlsock_attach_mem(p->cctx, &copts, &p->client), 0);
    TS_ASSERT_RC(tlsock_attach_mem(p->sctx, &sopts, &p->server), 0);
}

/*
 * Moves everything @p from has to send through @p flow and feeds it to @p to in one piece, so
 * that the receiver finds every re-framed record waiting at once. Adds the bytes drained to
 * @p moved. 0, TS_EMISMATCH when the wire could not parse them, or a tlsock code.
 */
static int wire_move(struct ts_wire *w, struct ts_flow *flow, struct tlsock_conn *from,
                     struct tlsock_conn *to, size_t *moved)
{
    unsigned char buf[16384];
    struct ts_bytes out = {0};
    size_t pieces = tlsock_conn_pending_output(from) / sizeof(buf) + 1;
    int rc = 0;

    for (size_t i = 0; i < pieces && rc == 0; i++) {
        size_t n = 0;
        rc = tlsock_drain(from, buf, sizeof(buf), &n);
        if (rc == 0 && n > 0) {
            *moved += n;
            rc = ts_wire_pass(w, flow, buf, n, &out) == 0 ? 0 : TS_EMISMATCH;
        }
    }
    if (rc == 0 && out.len > 0) {
        rc = tlsock_feed(to, out.data, out.len);
    }
    ts_bytes_free(&out);
    return rc;
}

/*
 * Runs both handshakes through the wire. Returns 0 when both finished; TS_ESTALL when both wait
 * for input although nothing is in flight (a peer said "want read" with its input unread); else
 * the first failure, with *crc and *src holding each peer's last result.
 */
static int wire_handshake(struct peers *p, int *crc, int *src)
{
    *crc = TLSOCK_EWANT_READ;
    *src = TLSOCK_EWANT_READ;
    for (int round = 0; round < MAX_ROUNDS; round++) {
        size_t moved = 0;
        int rc = 0;

        if (is_want(*crc)) {
            *crc = tlsock_handshake(p->client);
        }
        rc = wire_move(&p->wire, &p->wire.c2s, p->client, p->server, &moved);
        if (rc == 0 && is_want(*src)) {
            *src = tlsock_handshake(p->server);
        }
        if (rc == 0) {
            rc = wire_move(&p->wire, &p->wire.s2c, p->server, p->client, &moved);
        }
        if (rc != 0) {
            return rc;
        }
        if (*crc == 0 && *src == 0) {
            return 0;
        }
        if (!is_want(*crc) || !is_want(*src)) {
            /* One failed: let the other see its alert, then report. */
            if (is_want(*crc)) {
                *crc = tlsock_handshake(p->client);
            }
            if (is_want(*src)) {
                *src = tlsock_handshake(p->server);
            }
            return !is_want(*crc) && *crc != 0 ? *crc : *src;
        }
        if (moved == 0) {
            return TS_ESTALL;
        }
    }
    return TS_ESTALL;
}

/* A read of @p conn, retried a few times past records that carry no data (a TLS 1.3 client
 * reads the server's tickets first). */
static int read_past_tickets(struct tlsock_conn *conn, char *buf, size_t len, size_t *n)
{
    int rc = TLSOCK_EWANT_READ;

    for (int i = 0; i < 4 && rc == TLSOCK_EWANT_READ; i++) {
        rc = tlsock_read(conn, buf, len, n);
    }
    return rc;
}

/* Application data both ways after the handshake, through the wire. */
static void wire_exchange(struct peers *p)
{
    static const char ping[] = "ping";
    static const char pong[] = "pong";
    char buf[16];
    size_t n = 0;
    size_t moved = 0;

    TS_ASSERT_RC_MSG(tlsock_write(p->client, ping, sizeof(ping)), 0, tlsock_conn_errmsg(p->client));
    TS_ASSERT_RC(wire_move(&p->wire, &p->wire.c2s, p->client, p->server, &moved), 0);
    TS_ASSERT_RC_MSG(tlsock_read(p->server, buf, sizeof(buf), &n), 0,
                     tlsock_conn_errmsg(p->server));
    assert_int_equal(n, sizeof(ping));
    assert_memory_equal(buf, ping, sizeof(ping));
    TS_ASSERT_RC_MSG(tlsock_write(p->server, pong, sizeof(pong)), 0, tlsock_conn_errmsg(p->server));
    TS_ASSERT_RC(wire_move(&p->wire, &p->wire.s2c, p->server, p->client, &moved), 0);
    int rc = read_past_tickets(p->client, buf, sizeof(buf), &n);
    TS_ASSERT_RC_MSG(rc, 0, tlsock_conn_errmsg(p->client));
    assert_int_equal(n, sizeof(pong));
    assert_memory_equal(buf, pong, sizeof(pong));
}

/* ---- fragmented handshake messages ----------------------------------------------------------- */

static const struct fragment_case {
    const char *what;
    const char *protocols;
    const char *version;
    size_t c2s;
    size_t s2c;
} fragment_cases[] = {
    {"TLS 1.3, client to server in 1-byte records", "1.3", "TLSv1.3", 1, 0},
    {"TLS 1.3, client to server in 5-byte records", "1.3", "TLSv1.3", 5, 0},
    {"TLS 1.3, client to server in 20-byte records", "1.3", "TLSv1.3", 20, 0},
    {"TLS 1.3, server to client in 1-byte records", "1.3", "TLSv1.3", 0, 1},
    {"TLS 1.3, server to client in 5-byte records", "1.3", "TLSv1.3", 0, 5},
    {"TLS 1.3, server to client in 20-byte records", "1.3", "TLSv1.3", 0, 20},
    {"TLS 1.3, both ways in 1-byte records", "1.3", "TLSv1.3", 1, 1},
    {"TLS 1.2, client to server in 1-byte records", "1.2-1.2", "TLSv1.2", 1, 0},
    {"TLS 1.2, client to server in 5-byte records", "1.2-1.2", "TLSv1.2", 5, 0},
    {"TLS 1.2, client to server in 20-byte records", "1.2-1.2", "TLSv1.2", 20, 0},
    {"TLS 1.2, server to client in 1-byte records", "1.2-1.2", "TLSv1.2", 0, 1},
    {"TLS 1.2, server to client in 5-byte records", "1.2-1.2", "TLSv1.2", 0, 5},
    {"TLS 1.2, server to client in 20-byte records", "1.2-1.2", "TLSv1.2", 0, 20},
    {"TLS 1.2, both ways in 1-byte records", "1.2-1.2", "TLSv1.2", 1, 1},
};

/* The wire really split every plaintext handshake message of the re-framed directions. */
static void assert_reframed(const struct ts_flow *flow, size_t frag)
{
    if (frag == 0) {
        return;
    }
    /* Each plaintext handshake byte left in a record of at most frag bytes. */
    assert_true(flow->hs.len > 0);
    assert_true(flow->hs_records_out >= (flow->hs.len + frag - 1) / frag);
}

static void test_fragmented_memory(void **state)
{
    for (size_t i = 0; i < sizeof(fragment_cases) / sizeof(fragment_cases[0]); i++) {
        const struct fragment_case *c = &fragment_cases[i];
        struct peers *p = peers_renew(state, i);
        const struct tlsock_info *info = NULL;
        int crc = 0;
        int src = 0;

        print_message("%s\n", c->what);
        ts_wire_init(&p->wire, c->c2s, c->s2c);
        peers_contexts(p, c->protocols);
        peers_attach(p);
        int rc = wire_handshake(p, &crc, &src);
        if (rc != 0) {
            print_error("client %s (%s), server %s (%s)\n", ts_rc_name(crc),
                        tlsock_conn_errmsg(p->client), ts_rc_name(src),
                        tlsock_conn_errmsg(p->server));
        }
        TS_ASSERT_RC_MSG(rc, 0, "handshake through the re-framing wire");
        assert_reframed(&p->wire.c2s, c->c2s);
        assert_reframed(&p->wire.s2c, c->s2c);
        TS_ASSERT_RC(tlsock_conn_info(p->client, &info), 0);
        assert_string_equal(info->version, c->version);
        wire_exchange(p);
    }
}

/* The server thread of the blocking cases: handshake, then echo one message. */
static int serve_echo(struct tlsock_conn *conn, void *arg)
{
    char buf[64];
    size_t n = 0;
    int rc = tlsock_handshake(conn);

    (void)arg;
    if (rc == 0) {
        rc = tlsock_read(conn, buf, sizeof(buf), &n);
    }
    if (rc == 0) {
        rc = tlsock_write(conn, buf, n);
    }
    if (rc == 0) {
        /* The client's close_notify ends it. */
        rc = tlsock_read(conn, buf, sizeof(buf), &n);
        rc = rc == TLSOCK_ECLOSED ? 0 : rc;
    }
    return rc;
}

/*
 * Blocking peers on real loopback sockets (tlsock_accept and tlsock_handshake in the server's
 * thread, tlsock_connect here), every plaintext handshake record re-framed by the proxy.
 */
static void test_fragmented_blocking(void **state)
{
    for (size_t i = 0; i < sizeof(fragment_cases) / sizeof(fragment_cases[0]); i++) {
        const struct fragment_case *c = &fragment_cases[i];
        struct peers *p = peers_renew(state, i);
        struct tlsock_opts opts = ts_opts();
        struct tlsock_conn *conn = NULL;
        char buf[16];

        print_message("%s\n", c->what);
        peers_contexts(p, c->protocols);
        TS_ASSERT_RC(ts_server_start(&p->srv, p->sctx, NULL, NULL, serve_echo, NULL), 0);
        TS_ASSERT_RC(ts_proxy_start(&p->proxy, p->srv.port, c->c2s, c->s2c), 0);
        opts.servername = "localhost";
        int rc = tlsock_connect(p->cctx, "127.0.0.1", p->proxy.port, &opts, &conn);
        TS_ASSERT_RC(rc, 0);
        p->client = conn;
        TS_ASSERT_RC_MSG(tlsock_write(conn, "echo", 4), 0, tlsock_conn_errmsg(conn));
        TS_ASSERT_RC_MSG(ts_read_full(conn, buf, 4), 0, tlsock_conn_errmsg(conn));
        assert_memory_equal(buf, "echo", 4);
        tlsock_close(conn);
        p->client = NULL;
        ts_server_stop(&p->srv);
        TS_ASSERT_RC_MSG(p->srv.result, 0, p->srv.errmsg);
        ts_proxy_stop(&p->proxy);
        TS_ASSERT_RC(p->proxy.result, 0);
        assert_reframed(&p->proxy.wire.c2s, c->c2s);
        assert_reframed(&p->proxy.wire.s2c, c->s2c);
    }
}

/* ---- DHE suites ------------------------------------------------------------------------------ */

/* An RSA-2048 server certificate: DHE suites are DHE_RSA (there is no DHE_ECDSA). */
static struct tlsock__pem_pair rsa_leaf;

static int dhe_setup(void **state)
{
    const struct tlsock__cert_spec spec = {
        .common_name = TS_SERVER_CN,
        .hosts = TS_SERVER_HOSTS,
        .key_type = "rsa-2048",
        .not_before_s = -3600,
        .not_after_s = 30L * 86400,
        .eku = TLSOCK__EKU_SERVER,
        .issuer_cert_pem = ts_pki.ca.cert,
        .issuer_key_pem = ts_pki.ca.key,
    };

    if (rsa_leaf.cert == NULL && ts_cert_make(&spec, &rsa_leaf) != 0) {
        return -1;
    }
    return peers_setup(state);
}

/* A TLS 1.2 client offering nothing but DHE_RSA with AES-128-GCM, in its own syntax. */
static void dhe_only_client(struct peers *p)
{
    bool gnutls = tlsock_ctx_impl(p->cctx) == TLSOCK_IMPL_GNUTLS;

    TS_ASSERT_RC_MSG(tlsock_ctx_set_ciphers(p->cctx, gnutls ? "NORMAL:-KX-ALL:+DHE-RSA:-CIPHER-ALL:"
                                                              "+AES-128-GCM"
                                                            : "DHE-RSA-AES128-GCM-SHA256"),
                     0, tlsock_ctx_errmsg(p->cctx));
    TS_ASSERT_RC_MSG(tlsock_ctx_set_protocols(p->cctx, "1.2-1.2"), 0, tlsock_ctx_errmsg(p->cctx));
}

/*
 * The size of the finite-field group the server's key exchange used, as the client's own library
 * reports it, and whether its prime is RFC 7919's ffdhe2048 (computed here by the library from
 * the group's name, not taken from the handshake).
 */
static int peer_dh_bits(int impl, struct tlsock_conn *client, bool *ffdhe2048)
{
    void *native = tlsock_conn_native(client);
    int bits = -1;

    *ffdhe2048 = false;
#if TLSOCK_TEST_HAVE_OPENSSL
    if (impl == TLSOCK_IMPL_OPENSSL) {
        EVP_PKEY *key = NULL;
        if (SSL_get_peer_tmp_key(native, &key) == 1) {
            char group[64] = "";
            bits = EVP_PKEY_get_bits(key);
            /* OpenSSL names a DH key's group when its prime is a known named group's. */
            *ffdhe2048 = EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                                        sizeof(group), NULL) == 1 &&
                         strcmp(group, "ffdhe2048") == 0;
            EVP_PKEY_free(key);
        }
        ERR_clear_error();
    }
#endif
#if TLSOCK_TEST_HAVE_GNUTLS
    if (impl == TLSOCK_IMPL_GNUTLS) {
        gnutls_datum_t gen = {NULL, 0};
        gnutls_datum_t prime = {NULL, 0};
        bits = gnutls_dh_get_prime_bits(native);
        if (gnutls_dh_get_group(native, &gen, &prime) == 0) {
            /* Leading zero bytes aside, the prime must be the RFC's. */
            const gnutls_datum_t *want = &gnutls_ffdhe_2048_group_prime;
            size_t skip = 0;
            while (skip < prime.size && prime.data[skip] == 0) {
                skip++;
            }
            *ffdhe2048 = prime.size - skip == want->size &&
                         memcmp(prime.data + skip, want->data, want->size) == 0;
        }
        gnutls_free(gen.data);
        gnutls_free(prime.data);
    }
#endif
    return bits;
}

static const struct dhe_case {
    const char *policy;
    int rc; /* the client's */
} dhe_cases[] = {
    {"compat", 0},
    {"legacy", 0},
    {"secure", TLSOCK_EPROTO},
};

/*
 * Issue 10.1: "compat" and "legacy" offer DHE suites, so a client that offers nothing else gets
 * one, over an RFC 7919 group of at least 2048 bits; "secure" has none and refuses it with
 * handshake_failure, on every implementation.
 */
static void test_dhe(void **state)
{
    for (size_t i = 0; i < sizeof(dhe_cases) / sizeof(dhe_cases[0]); i++) {
        const struct dhe_case *c = &dhe_cases[i];
        struct peers *p = peers_renew(state, i);
        const struct tlsock_info *info = NULL;
        bool ffdhe2048 = false;
        int crc = 0;
        int src = 0;

        print_message("DHE-only client, server policy %s\n", c->policy);
        TS_ASSERT_RC(ts_server_ctx_new(&rsa_leaf, &p->sctx), 0);
        TS_ASSERT_RC_MSG(tlsock_ctx_set_ciphers(p->sctx, c->policy), 0, tlsock_ctx_errmsg(p->sctx));
        TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &p->cctx), 0);
        dhe_only_client(p);
        peers_attach(p);
        int rc = wire_handshake(p, &crc, &src);
        if (c->rc != 0) {
            TS_ASSERT_RC_MSG(crc, c->rc, tlsock_conn_errmsg(p->client));
            TS_ASSERT_CONTAINS(tlsock_conn_errmsg(p->client), "handshake_failure");
            TS_ASSERT_RC_MSG(src, TLSOCK_EPROTO, tlsock_conn_errmsg(p->server));
            continue;
        }
        TS_ASSERT_RC_MSG(rc, 0, tlsock_conn_errmsg(src != 0 ? p->server : p->client));
        TS_ASSERT_RC(tlsock_conn_info(p->client, &info), 0);
        assert_string_equal(info->cipher, "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256");
        TS_ASSERT_RC(tlsock_conn_info(p->server, &info), 0);
        assert_string_equal(info->cipher, "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256");
        assert_int_equal(peer_dh_bits(tlsock_ctx_impl(p->cctx), p->client, &ffdhe2048), 2048);
        assert_true(ffdhe2048);
        wire_exchange(p);
    }
}

/* ---- the renegotiation signal in a ClientHello ----------------------------------------------- */

#if TLSOCK_TEST_HAVE_GNUTLS
/* A GnuTLS client that sends neither the renegotiation_info extension nor the SCSV. */
static int gnutls_no_signal(void *session, void *user)
{
    const char *versions = user;
    char prio[128];

    snprintf(prio, sizeof(prio), "NORMAL:-VERS-ALL:%s:%%DISABLE_SAFE_RENEGOTIATION", versions);
    return gnutls_priority_set_direct(session, prio, NULL) == 0 ? 0 : TLSOCK_ECONFIG;
}
#endif

static const struct signal_case {
    const char *what;
    const char *client_protocols;
    const char *server_protocols; /* NULL: default */
    bool strip;                   /* the wire takes the signal out of the ClientHello */
    const char *version;          /* agreed; NULL: refused */
} signal_cases[] = {
    /* RFC 5746 section 4.3, as both servers apply it: TLS 1.2 needs the signal. */
    {"TLS 1.2 hello without the signal is refused", "1.2-1.2", NULL, true, NULL},
    {"TLS 1.2-1.3 hello without the signal, TLS 1.2 server: refused", "1.2-1.3", "1.2-1.2", true,
     NULL},
    {"TLS 1.2 hello with the signal is accepted", "1.2-1.2", NULL, false, "TLSv1.2"},
};

/* The first ClientHello the server saw, parsed. */
static void client_hello(const struct peers *p, struct ts_hello *hello)
{
    size_t len = 0;
    const unsigned char *body = ts_flow_msg(&p->wire.c2s, TS_HS_CLIENT_HELLO, 0, &len);

    assert_non_null(body);
    assert_int_equal(ts_hello_parse(body, len, hello), 0);
}

/*
 * Issue 10.3: the renegotiation signal (renegotiation_info or the SCSV) is required where
 * renegotiation exists, TLS 1.2 and below, by both servers the same way (code, alert, words).
 */
static void test_renegotiation_signal_tls12(void **state)
{
    for (size_t i = 0; i < sizeof(signal_cases) / sizeof(signal_cases[0]); i++) {
        const struct signal_case *c = &signal_cases[i];
        struct peers *p = peers_renew(state, i);
        struct ts_hello hello;
        int crc = 0;
        int src = 0;

        print_message("%s\n", c->what);
        peers_contexts(p, c->client_protocols);
        if (c->server_protocols != NULL) {
            TS_ASSERT_RC(tlsock_ctx_set_protocols(p->sctx, c->server_protocols), 0);
        }
        p->wire.c2s.strip_renegotiation = c->strip;
        peers_attach(p);
        int rc = wire_handshake(p, &crc, &src);
        client_hello(p, &hello);
        assert_int_equal(hello.scsv || hello.renegotiation_info, !c->strip);
        assert_int_equal(p->wire.c2s.stripped, c->strip ? 1 : 0);
        if (c->version != NULL) {
            const struct tlsock_info *info = NULL;
            TS_ASSERT_RC_MSG(rc, 0, tlsock_conn_errmsg(src != 0 ? p->server : p->client));
            TS_ASSERT_RC(tlsock_conn_info(p->server, &info), 0);
            assert_string_equal(info->version, c->version);
            wire_exchange(p);
            continue;
        }
        TS_ASSERT_RC_MSG(src, TLSOCK_EPROTO, tlsock_conn_errmsg(p->server));
        TS_ASSERT_CONTAINS(tlsock_conn_errmsg(p->server),
                           "does not support secure renegotiation (RFC 5746)");
        TS_ASSERT_RC_MSG(crc, TLSOCK_EPROTO, tlsock_conn_errmsg(p->client));
        TS_ASSERT_CONTAINS(tlsock_conn_errmsg(p->client), "handshake_failure");
    }
}

/*
 * RFC 8446 has no renegotiation: a TLS 1.3 hello needs no signal, and both servers take it.
 * Registered for GnuTLS clients only (main()): OpenSSL clients always send the SCSV, and the hello
 * cannot be rewritten (it is in the TLS 1.3 transcript). The GnuTLS client rows cover both
 * servers.
 */
static void test_renegotiation_signal_tls13(void **state)
{
    struct peers *p = *state;
    const struct tlsock_info *info = NULL;
    struct ts_hello hello;
    int crc = 0;
    int src = 0;

    peers_contexts(p, "1.3");
    assert_int_equal(tlsock_ctx_impl(p->cctx), TLSOCK_IMPL_GNUTLS);
#if TLSOCK_TEST_HAVE_GNUTLS
    TS_ASSERT_RC(tlsock_ctx_set_configure(p->cctx, NULL, gnutls_no_signal, (void *)"+VERS-TLS1.3"),
                 0);
#endif
    peers_attach(p);
    TS_ASSERT_RC_MSG(wire_handshake(p, &crc, &src), 0,
                     tlsock_conn_errmsg(src != 0 ? p->server : p->client));
    client_hello(p, &hello);
    assert_true(hello.offers_tls13);
    assert_false(hello.scsv);
    assert_false(hello.renegotiation_info);
    TS_ASSERT_RC(tlsock_conn_info(p->server, &info), 0);
    assert_string_equal(info->version, "TLSv1.3");
    wire_exchange(p);
}

/* ---- an SSLv2-format ClientHello --------------------------------------------------------------
 */

/*
 * An SSLv2-format ClientHello for TLS 1.2 (RFC 5246 appendix E.2), its two-byte record header
 * included: ECDHE suites for either key type, the SCSV if @p scsv, a 32-byte challenge. Such a
 * hello has no extensions: the SCSV is its only renegotiation signal. Returns its length.
 */
static size_t v2_hello(unsigned char *out, bool scsv)
{
    static const unsigned suites[] = {0xc02b, 0xc02f, 0xc02c, 0xc030};
    size_t nspecs = sizeof(suites) / sizeof(suites[0]) + (scsv ? 1 : 0);
    size_t body = 9 + 3 * nspecs + 32;
    unsigned char *p = out;

    *p++ = (unsigned char)(0x80 | (body >> 8));
    *p++ = (unsigned char)(body & 0xff);
    *p++ = 1; /* client_hello */
    *p++ = 3; /* version 3.3: TLS 1.2 */
    *p++ = 3;
    *p++ = 0;
    *p++ = (unsigned char)(3 * nspecs); /* cipher_spec_length */
    *p++ = 0;                           /* session_id_length */
    *p++ = 0;
    *p++ = 0; /* challenge_length */
    *p++ = 32;
    for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++) {
        *p++ = 0; /* a TLS suite: 0x00 and its two bytes */
        *p++ = (unsigned char)(suites[i] >> 8);
        *p++ = (unsigned char)(suites[i] & 0xff);
    }
    if (scsv) {
        *p++ = 0;
        *p++ = 0;
        *p++ = 0xff; /* TLS_EMPTY_RENEGOTIATION_INFO_SCSV */
    }
    memset(p, 0x5a, 32);
    p += 32;
    return (size_t)(p - out);
}

/*
 * Found by outside testing: the renegotiation signal rule holds for an SSLv2-format hello too.
 * GnuTLS delivers one to a hook of its own type, so its server skipped tlsock's rules and
 * answered a hello without the SCSV; OpenSSL's server read its three-byte cipher specs as
 * two-byte suites and missed an SCSV that was there.
 */
static void test_sslv2_hello(void **state)
{
    for (size_t scsv = 0; scsv <= 1; scsv++) {
        struct peers *p = peers_renew(state, scsv);
        unsigned char hello[128];
        unsigned char out[4096];
        size_t n = 0;

        print_message("an SSLv2-format hello %s the SCSV\n", scsv ? "with" : "without");
        peers_contexts(p, NULL);
        peers_attach(p);
        TS_ASSERT_RC(tlsock_feed(p->server, hello, v2_hello(hello, scsv != 0)), 0);
        int rc = tlsock_handshake(p->server);
        const char *msg = tlsock_conn_errmsg(p->server);
        (void)tlsock_drain(p->server, out, sizeof(out), &n);
        if (scsv == 0) {
            TS_ASSERT_RC_MSG(rc, TLSOCK_EPROTO, msg);
            TS_ASSERT_CONTAINS(msg, "does not support secure renegotiation (RFC 5746)");
            /* A fatal handshake_failure alert: record type 21, level 2, description 40. */
            assert_true(n >= 7);
            assert_int_equal(out[0], 21);
            assert_int_equal(out[5], 2);
            assert_int_equal(out[6], 40);
            continue;
        }
        /* Not refused for want of the signal: GnuTLS answers with its ServerHello; OpenSSL finds
         * no suite for a hello without supported_groups, which is its own call. */
        if (rc != TLSOCK_EWANT_READ) {
            TS_ASSERT_RC_MSG(rc, TLSOCK_EPROTO, msg);
            assert_null(strstr(msg, "RFC 5746"));
        } else {
            assert_true(n >= 6);
            assert_int_equal(out[0], 22); /* handshake */
            assert_int_equal(out[5], 2);  /* server_hello */
        }
    }
}

/* ---- the server's cipher order --------------------------------------------------------------- */

static const struct order_case {
    const char *what;
    const char *protocols;
    const char *server; /* raw lists, accepted by both implementations */
    const char *client;
    unsigned client_first; /* the client's first suite on the wire (IANA) */
    const char *agreed;
} order_cases[] = {
    {"TLS 1.3, server prefers AES-128-GCM", "1.3", "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384",
     "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256", 0x1302, "TLS_AES_128_GCM_SHA256"},
    {"TLS 1.3, server prefers AES-256-GCM", "1.3", "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256",
     "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384", 0x1301, "TLS_AES_256_GCM_SHA384"},
    {"TLS 1.2, server prefers AES-128-GCM", "1.2-1.2",
     "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305",
     "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256", 0xcca9,
     "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"},
    {"TLS 1.2, server prefers ChaCha20-Poly1305", "1.2-1.2",
     "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256",
     "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305", 0xc02b,
     "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"},
};

/* Issue 10.4: the server's order decides, not the client's, on both implementations. */
static void test_server_cipher_order(void **state)
{
    for (size_t i = 0; i < sizeof(order_cases) / sizeof(order_cases[0]); i++) {
        const struct order_case *c = &order_cases[i];
        struct peers *p = peers_renew(state, i);
        const struct tlsock_info *info = NULL;
        struct ts_hello hello;
        int crc = 0;
        int src = 0;

        print_message("%s\n", c->what);
        peers_contexts(p, c->protocols);
        TS_ASSERT_RC_MSG(tlsock_ctx_set_ciphers(p->sctx, c->server), 0, tlsock_ctx_errmsg(p->sctx));
        TS_ASSERT_RC_MSG(tlsock_ctx_set_ciphers(p->cctx, c->client), 0, tlsock_ctx_errmsg(p->cctx));
        peers_attach(p);
        TS_ASSERT_RC_MSG(wire_handshake(p, &crc, &src), 0,
                         tlsock_conn_errmsg(src != 0 ? p->server : p->client));
        /* The client really asked for the other one first. */
        client_hello(p, &hello);
        assert_true(hello.nsuites > 0);
        assert_int_equal(hello.suites[0], c->client_first);
        TS_ASSERT_RC(tlsock_conn_info(p->server, &info), 0);
        assert_string_equal(info->cipher, c->agreed);
        TS_ASSERT_RC(tlsock_conn_info(p->client, &info), 0);
        assert_string_equal(info->cipher, c->agreed);
    }
}

/* ---- no HelloRetryRequest when the client sent a usable key share -----------------------------
 */

struct groups_config {
    const char *openssl; /* SSL_set1_groups_list() */
    const char *gnutls;  /* the groups part of a priority string */
};

/* A client with the case's groups, in its own library's words. */
static int client_groups(void *session, void *user)
{
    const struct groups_config *g = user;
    int rc = TLSOCK_ECONFIG;

#if TLSOCK_TEST_HAVE_OPENSSL
    if (g->openssl != NULL && SSL_set1_groups_list(session, g->openssl) == 1) {
        rc = 0;
    }
#endif
#if TLSOCK_TEST_HAVE_GNUTLS
    if (g->gnutls != NULL) {
        char prio[256];
        snprintf(prio, sizeof(prio), "NORMAL:-VERS-ALL:+VERS-TLS1.3:-GROUP-ALL:%s", g->gnutls);
        rc = gnutls_priority_set_direct(session, prio, NULL) == 0 ? 0 : TLSOCK_ECONFIG;
    }
#endif
    return rc;
}

#if TLSOCK_TEST_HAVE_OPENSSL
/* An OpenSSL server that accepts P-256 only. */
static int server_p256_only(void *native_ctx, void *user)
{
    (void)user;
    return SSL_CTX_set1_groups_list(native_ctx, "P-256") == 1 ? 0 : TLSOCK_ECONFIG;
}
#endif

static const struct hrr_case {
    const char *what;
    struct groups_config groups; /* NULL: the implementation's defaults */
    unsigned share;              /* a key share the first ClientHello carries (IANA group) */
    bool server_p256_only;
    size_t hellos; /* ClientHellos sent: 2 after a HelloRetryRequest */
} hrr_cases[] = {
    {"default groups", {NULL, NULL}, 0, false, 1},
    {"X25519 first, P-256 next", {"X25519:P-256", "+GROUP-X25519:+GROUP-SECP256R1"}, 29, false, 1},
    {"P-384 first, P-256 next", {"P-384:P-256", "+GROUP-SECP384R1:+GROUP-SECP256R1"}, 24, false, 1},
    {"X448 first, then P-521, P-256",
     {"X448:P-521:P-256", "+GROUP-X448:+GROUP-SECP521R1:+GROUP-SECP256R1"},
     30,
     false,
     1},
    {"ffdhe2048 first, P-256 next",
     {"ffdhe2048:P-256", "+GROUP-FFDHE2048:+GROUP-SECP256R1"},
     256,
     false,
     1},
    /* The control: a share the server cannot use costs a round trip on both. */
    {"P-384 share, server with P-256 only",
     {"P-384:P-256", "+GROUP-SECP384R1:+GROUP-SECP256R1"},
     24,
     true,
     2},
};

/*
 * Issue 10.5: a TLS 1.3 server that can use a key share the client sent uses it, whatever the
 * order of groups on either side, instead of asking for another (HelloRetryRequest: a second
 * ClientHello on the wire).
 */
static void test_no_needless_hello_retry(void **state)
{
    for (size_t i = 0; i < sizeof(hrr_cases) / sizeof(hrr_cases[0]); i++) {
        const struct hrr_case *c = &hrr_cases[i];
        struct peers *p = peers_renew(state, i);
        struct ts_hello hello;
        int crc = 0;
        int src = 0;

        print_message("%s\n", c->what);
        peers_contexts(p, "1.3");
        bool gnutls_client = tlsock_ctx_impl(p->cctx) == TLSOCK_IMPL_GNUTLS;
        if (c->groups.openssl != NULL) {
            static struct groups_config one;
            one = gnutls_client ? (struct groups_config){NULL, c->groups.gnutls}
                                : (struct groups_config){c->groups.openssl, NULL};
            TS_ASSERT_RC(tlsock_ctx_set_configure(p->cctx, NULL, client_groups, &one), 0);
        }
        if (c->server_p256_only && tlsock_ctx_impl(p->sctx) == TLSOCK_IMPL_GNUTLS) {
            TS_ASSERT_RC_MSG(tlsock_ctx_set_ciphers(p->sctx, "NORMAL:-GROUP-ALL:+GROUP-SECP256R1"),
                             0, tlsock_ctx_errmsg(p->sctx));
        } else if (c->server_p256_only) {
#if TLSOCK_TEST_HAVE_OPENSSL
            TS_ASSERT_RC(tlsock_ctx_set_configure(p->sctx, server_p256_only, NULL, NULL), 0);
#endif
        }
        peers_attach(p);
        TS_ASSERT_RC_MSG(wire_handshake(p, &crc, &src), 0,
                         tlsock_conn_errmsg(src != 0 ? p->server : p->client));
        client_hello(p, &hello);
        bool has_share = c->share == 0 && hello.nshares > 0;
        for (size_t k = 0; k < hello.nshares; k++) {
            has_share |= hello.shares[k] == c->share;
        }
        assert_true(has_share);
        assert_int_equal(ts_flow_count(&p->wire.c2s, TS_HS_CLIENT_HELLO), c->hellos);
        assert_int_equal(ts_flow_hello_retries(&p->wire.s2c), c->hellos - 1);
        wire_exchange(p);
    }
}

/*
 * The case outside testing found: the client lists a group first and sends its only key share
 * for the second (both libraries' clients always share their first group, so the wire swaps the
 * two in supported_groups). The server must use the share rather than ask for its first group;
 * the swap changes the transcript, so only the server's answer is looked at.
 */
static void test_share_for_second_group(void **state)
{
    static const struct groups_config groups = {"X25519:X448", "+GROUP-X25519:+GROUP-X448"};
    struct peers *p = *state;
    struct ts_hello hello;
    int crc = 0;
    int src = 0;

    peers_contexts(p, "1.3");
    bool gnutls_client = tlsock_ctx_impl(p->cctx) == TLSOCK_IMPL_GNUTLS;
    static struct groups_config one;
    one = gnutls_client ? (struct groups_config){NULL, groups.gnutls}
                        : (struct groups_config){groups.openssl, NULL};
    TS_ASSERT_RC(tlsock_ctx_set_configure(p->cctx, NULL, client_groups, &one), 0);
    p->wire.c2s.swap_groups = true;
    peers_attach(p);
    (void)wire_handshake(p, &crc, &src);
    client_hello(p, &hello);
    /* The server saw X448 preferred, and one key share: X25519's. */
    assert_true(hello.ngroups >= 2);
    assert_int_equal(hello.groups[0], 30);
    assert_int_equal(hello.groups[1], 29);
    assert_int_equal(hello.nshares, 1);
    assert_int_equal(hello.shares[0], 29);
    /* It answered with a ServerHello, not a HelloRetryRequest for X448. */
    assert_int_equal(ts_flow_count(&p->wire.s2c, TS_HS_SERVER_HELLO), 1);
    assert_int_equal(ts_flow_hello_retries(&p->wire.s2c), 0);
    assert_int_equal(ts_flow_count(&p->wire.c2s, TS_HS_CLIENT_HELLO), 1);
}

/* ---- renegotiation refused ------------------------------------------------------------------- */

#if TLSOCK_TEST_HAVE_OPENSSL
/* An OpenSSL peer that may ask for renegotiation (tlsock turns it off). */
static int openssl_allow_renegotiation(void *session, void *user)
{
    (void)user;
    SSL_clear_options(session, SSL_OP_NO_RENEGOTIATION);
    return 0;
}
#endif

/* Asks for renegotiation through the peer's own library; 0 once the request is sent. */
static int request_renegotiation(int impl, int role, void *native)
{
    int rc = TS_ESETUP;

#if TLSOCK_TEST_HAVE_OPENSSL
    if (impl == TLSOCK_IMPL_OPENSSL && SSL_renegotiate(native) == 1) {
        /* A client sends its ClientHello and waits; a server sends its HelloRequest and is done
         * until the ClientHello comes. */
        int ret = SSL_do_handshake(native);
        bool sent = role == TLSOCK_SERVER
                        ? ret == 1
                        : ret <= 0 && SSL_get_error(native, ret) == SSL_ERROR_WANT_READ;
        rc = sent ? 0 : TS_ESETUP;
        ERR_clear_error();
    }
#endif
#if TLSOCK_TEST_HAVE_GNUTLS
    if (impl == TLSOCK_IMPL_GNUTLS) {
        int ret = role == TLSOCK_SERVER ? gnutls_rehandshake(native) : 0;
        if (ret == 0) {
            ret = gnutls_handshake(native);
        }
        rc = ret == GNUTLS_E_AGAIN ? 0 : TS_ESETUP;
    }
#endif
    return rc;
}

/*
 * What the requester's library says after the refusal: 1 when it was told no_renegotiation and
 * may go on (GnuTLS), 0 when it gave up on the session for that reason (OpenSSL sends a fatal
 * handshake_failure), -1 for anything else.
 */
static int requester_outcome(int impl, void *native)
{
    int outcome = -1;

#if TLSOCK_TEST_HAVE_OPENSSL
    if (impl == TLSOCK_IMPL_OPENSSL) {
        char byte;
        size_t n = 0;
        /* Reading continues a client's handshake and takes a server's answer alike. */
        int ret = SSL_read_ex(native, &byte, 1, &n);
        unsigned long e = ERR_peek_error();
        outcome = ret == 0 && ERR_GET_REASON(e) == SSL_R_NO_RENEGOTIATION ? 0 : -1;
        ERR_clear_error();
    }
#endif
#if TLSOCK_TEST_HAVE_GNUTLS
    if (impl == TLSOCK_IMPL_GNUTLS) {
        int ret = gnutls_handshake(native);
        outcome = ret == GNUTLS_E_WARNING_ALERT_RECEIVED &&
                          gnutls_alert_get(native) == GNUTLS_A_NO_RENEGOTIATION
                      ? 1
                      : -1;
    }
#endif
    return outcome;
}

/*
 * Issue 10.6: renegotiation is refused the same way on both implementations, whichever side
 * asks (TLS 1.2; a client sends a new ClientHello, a server a HelloRequest): the refusing side
 * answers no_renegotiation (a warning, RFC 5246 section 7.2.2) and its session goes on. What
 * happens next is the requester's choice: a GnuTLS peer goes on too and data flows both ways;
 * an OpenSSL peer gives up with a fatal handshake_failure, which the refusing side reports.
 */
static void test_renegotiation_refused(void **state)
{
    static const int requesters[] = {TLSOCK_CLIENT, TLSOCK_SERVER};

    for (size_t i = 0; i < sizeof(requesters) / sizeof(requesters[0]); i++) {
        bool client_asks = requesters[i] == TLSOCK_CLIENT;
        struct peers *p = peers_renew(state, i);
        char buf[16];
        size_t n = 0;
        size_t moved = 0;
        int crc = 0;
        int src = 0;

        print_message("the %s asks for renegotiation\n", client_asks ? "client" : "server");
        peers_contexts(p, "1.2-1.2");
        struct tlsock_ctx *rctx = client_asks ? p->cctx : p->sctx;
        int impl = tlsock_ctx_impl(rctx);
#if TLSOCK_TEST_HAVE_OPENSSL
        if (impl == TLSOCK_IMPL_OPENSSL) {
            TS_ASSERT_RC(tlsock_ctx_set_configure(rctx, NULL, openssl_allow_renegotiation, NULL),
                         0);
        }
#endif
        peers_attach(p);
        TS_ASSERT_RC_MSG(wire_handshake(p, &crc, &src), 0,
                         tlsock_conn_errmsg(src != 0 ? p->server : p->client));
        struct tlsock_conn *requester = client_asks ? p->client : p->server;
        struct tlsock_conn *refuser = client_asks ? p->server : p->client;
        struct ts_flow *to_refuser = client_asks ? &p->wire.c2s : &p->wire.s2c;
        struct ts_flow *to_requester = client_asks ? &p->wire.s2c : &p->wire.c2s;

        TS_ASSERT_RC(request_renegotiation(impl, requesters[i], tlsock_conn_native(requester)), 0);
        TS_ASSERT_RC(wire_move(&p->wire, to_refuser, requester, refuser, &moved), 0);
        /* The refusing side reads the request, answers it and waits for data: no error. */
        TS_ASSERT_RC_MSG(tlsock_read(refuser, buf, sizeof(buf), &n), TLSOCK_EWANT_READ,
                         tlsock_conn_errmsg(refuser));
        TS_ASSERT_RC(wire_move(&p->wire, to_requester, refuser, requester, &moved), 0);
        int outcome = requester_outcome(impl, tlsock_conn_native(requester));
        assert_int_equal(outcome, impl == TLSOCK_IMPL_GNUTLS ? 1 : 0);
        TS_ASSERT_RC(wire_move(&p->wire, to_refuser, requester, refuser, &moved), 0);
        if (outcome == 0) {
            TS_ASSERT_RC_MSG(tlsock_read(refuser, buf, sizeof(buf), &n), TLSOCK_EPROTO,
                             tlsock_conn_errmsg(refuser));
            TS_ASSERT_CONTAINS(tlsock_conn_errmsg(refuser), "peer sent alert: handshake_failure");
            continue;
        }
        /* Both go on: a message each way, then the refusing side still writes. */
        TS_ASSERT_RC_MSG(tlsock_write(requester, "again", 5), 0, tlsock_conn_errmsg(requester));
        TS_ASSERT_RC(wire_move(&p->wire, to_refuser, requester, refuser, &moved), 0);
        TS_ASSERT_RC_MSG(tlsock_read(refuser, buf, sizeof(buf), &n), 0,
                         tlsock_conn_errmsg(refuser));
        assert_int_equal(n, 5);
        assert_memory_equal(buf, "again", 5);
        TS_ASSERT_RC_MSG(tlsock_write(refuser, "still", 5), 0, tlsock_conn_errmsg(refuser));
        TS_ASSERT_RC(wire_move(&p->wire, to_requester, refuser, requester, &moved), 0);
        TS_ASSERT_RC_MSG(tlsock_read(requester, buf, sizeof(buf), &n), 0,
                         tlsock_conn_errmsg(requester));
        assert_int_equal(n, 5);
        assert_memory_equal(buf, "still", 5);
        /* And it ends cleanly. */
        TS_ASSERT_RC_MSG(tlsock_shutdown(refuser), 0, tlsock_conn_errmsg(refuser));
        TS_ASSERT_RC(wire_move(&p->wire, to_requester, refuser, requester, &moved), 0);
        TS_ASSERT_RC_MSG(tlsock_read(requester, buf, sizeof(buf), &n), TLSOCK_ECLOSED,
                         tlsock_conn_errmsg(requester));
        TS_ASSERT_RC_MSG(tlsock_shutdown(requester), 0, tlsock_conn_errmsg(requester));
        TS_ASSERT_RC(wire_move(&p->wire, to_refuser, requester, refuser, &moved), 0);
        TS_ASSERT_RC_MSG(tlsock_read(refuser, buf, sizeof(buf), &n), TLSOCK_ECLOSED,
                         tlsock_conn_errmsg(refuser));
    }
}

/* ---- messages -------------------------------------------------------------------------------- */

/* A message that says why, in the words the CLI prints after tlsock_strerror(). */
static void assert_verify_message(const char *msg, const char *reason)
{
    char prefix[128];

    /* The reason first: tlsock_strerror(TLSOCK_EVERIFY) already says what failed. */
    snprintf(prefix, sizeof(prefix), "%s", reason);
    if (strncmp(msg, prefix, strlen(prefix)) != 0) {
        print_error("\"%s\" does not start with \"%s\"\n", msg, prefix);
        fail();
    }
    /* Once: no "certificate verify failed: " inside either. */
    assert_null(strcasestr(msg, "verif"));
    TS_ASSERT_CONTAINS(msg, " (depth 0: CN=" TS_SERVER_CN);
}

/* Issue 10.9: the words of a failed verification, a truncated stream, and a too-old server. */
static void test_message_verify(void **state)
{
    static const struct {
        const char *verify_name;
        bool untrusted;
        const char *reason;
    } cases[] = {
        {"localhost", true, "unable to get local issuer certificate"},
        {"wrong.example", false, "hostname mismatch"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct peers *p = peers_renew(state, i);
        struct tlsock_opts copts = ts_opts();
        struct tlsock_opts sopts = ts_opts();
        int crc = 0;
        int src = 0;

        print_message("%s\n", cases[i].reason);
        TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &p->sctx), 0);
        TS_ASSERT_RC(
            ts_client_ctx_new(cases[i].untrusted ? ts_pki.other_ca.cert : ts_pki.ca.cert, &p->cctx),
            0);
        copts.verify_name = cases[i].verify_name;
        TS_ASSERT_RC(tlsock_attach_mem(p->cctx, &copts, &p->client), 0);
        TS_ASSERT_RC(tlsock_attach_mem(p->sctx, &sopts, &p->server), 0);
        TS_ASSERT_RC(wire_handshake(p, &crc, &src), TLSOCK_EVERIFY);
        TS_ASSERT_RC(crc, TLSOCK_EVERIFY);
        assert_verify_message(tlsock_conn_errmsg(p->client), cases[i].reason);
    }
}

/* A server that requires a client certificate and gets none says so in the same words. */
static void test_message_no_client_cert(void **state)
{
    struct peers *p = *state;
    int crc = 0;
    int src = 0;

    peers_contexts(p, NULL);
    TS_ASSERT_RC(tlsock_ctx_set_verify(p->sctx, TLSOCK_VERIFY_REQUIRED), 0);
    TS_ASSERT_RC(tlsock_ctx_set_ca_mem(p->sctx, ts_pki.ca.cert, strlen(ts_pki.ca.cert)), 0);
    peers_attach(p);
    (void)wire_handshake(p, &crc, &src);
    TS_ASSERT_RC(src, TLSOCK_EVERIFY);
    assert_string_equal(tlsock_conn_errmsg(p->server), "the client sent no certificate");
}

/* An end of stream without close_notify: the message adds to tlsock_strerror(), not repeats. */
static void test_message_truncated(void **state)
{
    struct peers *p = *state;
    char buf[16];
    size_t n = 0;
    int crc = 0;
    int src = 0;

    peers_contexts(p, NULL);
    peers_attach(p);
    TS_ASSERT_RC(wire_handshake(p, &crc, &src), 0);
    TS_ASSERT_RC(tlsock_feed_eof(p->client), 0);
    int rc = read_past_tickets(p->client, buf, sizeof(buf), &n);
    TS_ASSERT_RC_MSG(rc, TLSOCK_ETRUNCATED, tlsock_conn_errmsg(p->client));
    TS_ASSERT_CONTAINS(tlsock_strerror(rc), "(truncated)");
    assert_null(strstr(tlsock_conn_errmsg(p->client), "(truncated)"));
    assert_string_equal(tlsock_conn_errmsg(p->client),
                        "the peer closed the connection without close_notify, so the data may be "
                        "truncated");
}

static const char old_server_hint[] = "; the server only speaks TLS 1.0/1.1: allow them with "
                                      "tlsock_ctx_set_protocols and the legacy cipher policy";

static void legacy_context(struct tlsock_ctx *ctx, const char *protocols)
{
    TS_ASSERT_RC_MSG(tlsock_ctx_set_ciphers(ctx, "legacy"), 0, tlsock_ctx_errmsg(ctx));
    TS_ASSERT_RC_MSG(tlsock_ctx_set_protocols(ctx, protocols), 0, tlsock_ctx_errmsg(ctx));
}

/*
 * A client refused by a TLS 1.0/1.1 server learns how to allow those versions; one refused for
 * another reason (it asked for TLS 1.3 only) gets no such hint.
 */
static void test_message_old_server_refuses(void **state)
{
    static const struct {
        const char *client;
        const char *server;
        bool hint;
    } cases[] = {
        {NULL, "1.0-1.1", true},
        {"1.3", "1.2-1.2", false},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct peers *p = peers_renew(state, i);
        char want[256];
        int crc = 0;
        int src = 0;

        print_message("client %s, server %s\n",
                      cases[i].client != NULL ? cases[i].client : "1.2-1.3", cases[i].server);
        peers_contexts(p, cases[i].client);
        legacy_context(p->sctx, cases[i].server);
        peers_attach(p);
        TS_ASSERT_RC(wire_handshake(p, &crc, &src), TLSOCK_EPROTO);
        TS_ASSERT_RC(crc, TLSOCK_EPROTO);
        snprintf(want, sizeof(want), "peer sent alert: protocol_version (70)%s",
                 cases[i].hint ? old_server_hint : "");
        assert_string_equal(tlsock_conn_errmsg(p->client), want);
    }
}

/*
 * A server that does not know supported_versions answers a TLS 1.2-1.3 ClientHello with TLS 1.1:
 * here the ServerHello a TLS 1.1 client got, handed to a default client instead (the client
 * checks the version before anything that would tell the two hellos apart).
 */
static void test_message_old_server_answers(void **state)
{
    struct peers *p = *state;
    struct tlsock_ctx *lctx = NULL;
    struct tlsock_conn *legacy = NULL;
    struct tlsock_opts opts = ts_opts();
    unsigned char buf[16384];
    size_t n = 0;
    size_t moved = 0;

    peers_contexts(p, NULL);
    legacy_context(p->sctx, "1.1-1.1");
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &lctx), 0);
    legacy_context(lctx, "1.1-1.1");
    opts.servername = "localhost";
    int rc = tlsock_attach_mem(lctx, &opts, &legacy);
    tlsock_ctx_free(lctx);
    TS_ASSERT_RC(rc, 0);
    peers_attach(p);
    /* The default client's hello goes nowhere; the TLS 1.1 client's gets the server's answer. */
    TS_ASSERT_RC(tlsock_handshake(p->client), TLSOCK_EWANT_READ);
    TS_ASSERT_RC(tlsock_drain(p->client, buf, sizeof(buf), &n), 0);
    TS_ASSERT_RC(tlsock_handshake(legacy), TLSOCK_EWANT_READ);
    rc = wire_move(&p->wire, &p->wire.c2s, legacy, p->server, &moved);
    tlsock_close(legacy);
    TS_ASSERT_RC(rc, 0);
    TS_ASSERT_RC(tlsock_handshake(p->server), TLSOCK_EWANT_READ);
    TS_ASSERT_RC(wire_move(&p->wire, &p->wire.s2c, p->server, p->client, &moved), 0);
    assert_int_equal(p->wire.version, 0x0302);
    TS_ASSERT_RC(tlsock_handshake(p->client), TLSOCK_EPROTO);
    char want[256];
    snprintf(want, sizeof(want),
             "the server chose an older protocol version than this client allows%s",
             old_server_hint);
    assert_string_equal(tlsock_conn_errmsg(p->client), want);
}

/* ---- closure alerts -------------------------------------------------------------------------- */

#if TLSOCK_TEST_HAVE_GNUTLS
/* Java's TLS closes a TLS 1.3 socket whose peer has not closed yet with user_canceled, then
 * close_notify (its duplex close). OpenSSL has no call that sends a user_canceled. */
static int send_user_canceled(struct tlsock_conn *conn)
{
    int ret =
        gnutls_alert_send(tlsock_conn_native(conn), GNUTLS_AL_WARNING, GNUTLS_A_USER_CANCELED);

    return ret == 0 ? 0 : TS_ESETUP;
}
#endif

/*
 * RFC 8446 section 6.1: user_canceled is a closure alert, which "SHOULD be followed by a
 * close_notify". A peer that ends its stream with both (data, user_canceled, close_notify) is a
 * clean end on both implementations: the data, then TLSOCK_ECLOSED, and closing in turn works.
 * GnuTLS invalidates a TLS 1.3 session on any alert but close_notify, so a GnuTLS receiver used
 * to fail with EPROTO "peer sent alert: user_canceled (90)" instead (a tunnel then reset the
 * other side, dropping what was queued for it). The sender is a GnuTLS peer driven through its
 * session; rows with none skip.
 */
static void test_user_canceled_ends_stream(void **state)
{
    static const char *const versions[] = {"1.3", "1.2-1.2"};
    size_t ran = 0;

    for (size_t i = 0; i < 4; i++) {
        struct peers *p = peers_renew(state, i);
        const char *version = versions[i / 2];
        bool client_sends = i % 2 == 0; /* else the server sends */

        peers_contexts(p, version);
        if (tlsock_ctx_impl(client_sends ? p->cctx : p->sctx) != TLSOCK_IMPL_GNUTLS) {
            continue;
        }
#if TLSOCK_TEST_HAVE_GNUTLS
        print_message("protocols %s, the %s sends user_canceled and close_notify\n", version,
                      client_sends ? "client" : "server");
        peers_attach(p);
        struct tlsock_conn *from = client_sends ? p->client : p->server;
        struct tlsock_conn *to = client_sends ? p->server : p->client;
        struct ts_flow *flow = client_sends ? &p->wire.c2s : &p->wire.s2c;
        char buf[16];
        size_t n = 0;
        size_t moved = 0;
        int crc = 0;
        int src = 0;

        TS_ASSERT_RC(wire_handshake(p, &crc, &src), 0);
        TS_ASSERT_RC(tlsock_write(from, "bye", 3), 0);
        TS_ASSERT_RC(send_user_canceled(from), 0);
        TS_ASSERT_RC(tlsock_shutdown(from), 0);
        TS_ASSERT_RC(wire_move(&p->wire, flow, from, to, &moved), 0);
        TS_ASSERT_RC_MSG(read_past_tickets(to, buf, sizeof(buf), &n), 0, tlsock_conn_errmsg(to));
        assert_int_equal(n, 3);
        assert_memory_equal(buf, "bye", 3);
        TS_ASSERT_RC_MSG(tlsock_read(to, buf, sizeof(buf), &n), TLSOCK_ECLOSED,
                         tlsock_conn_errmsg(to));
        TS_ASSERT_RC(tlsock_read(to, buf, sizeof(buf), &n), TLSOCK_ECLOSED);
        TS_ASSERT_RC_MSG(tlsock_shutdown(to), 0, tlsock_conn_errmsg(to));
        ran++;
#endif
    }
    if (ran == 0) {
        skip(); /* no GnuTLS peer in this row to send user_canceled */
    }
}

/* Whether this row's client contexts are GnuTLS's. */
static bool client_is_gnutls(void)
{
    struct tlsock_ctx *ctx = NULL;
    bool gnutls =
        ts_ctx_new(TLSOCK_CLIENT, &ctx) == 0 && tlsock_ctx_impl(ctx) == TLSOCK_IMPL_GNUTLS;

    tlsock_ctx_free(ctx);
    return gnutls;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fragmented_memory, peers_setup, peers_teardown),
        cmocka_unit_test_setup_teardown(test_fragmented_blocking, peers_setup, peers_teardown),
        cmocka_unit_test_setup_teardown(test_dhe, dhe_setup, peers_teardown),
        cmocka_unit_test_setup_teardown(test_renegotiation_signal_tls12, peers_setup,
                                        peers_teardown),
        cmocka_unit_test_setup_teardown(test_sslv2_hello, peers_setup, peers_teardown),
        cmocka_unit_test_setup_teardown(test_server_cipher_order, peers_setup, peers_teardown),
        cmocka_unit_test_setup_teardown(test_no_needless_hello_retry, peers_setup, peers_teardown),
        cmocka_unit_test_setup_teardown(test_share_for_second_group, peers_setup, peers_teardown),
        cmocka_unit_test_setup_teardown(test_renegotiation_refused, peers_setup, peers_teardown),
        cmocka_unit_test_setup_teardown(test_message_verify, peers_setup, peers_teardown),
        cmocka_unit_test_setup_teardown(test_message_no_client_cert, peers_setup, peers_teardown),
        cmocka_unit_test_setup_teardown(test_message_truncated, peers_setup, peers_teardown),
        cmocka_unit_test_setup_teardown(test_message_old_server_refuses, peers_setup,
                                        peers_teardown),
        cmocka_unit_test_setup_teardown(test_message_old_server_answers, peers_setup,
                                        peers_teardown),
        cmocka_unit_test_setup_teardown(test_user_canceled_ends_stream, peers_setup,
                                        peers_teardown),
        /* Last: only for GnuTLS clients (see the case). */
        cmocka_unit_test_setup_teardown(test_renegotiation_signal_tls13, peers_setup,
                                        peers_teardown),
    };
    size_t count = sizeof(tests) / sizeof(tests[0]) - (client_is_gnutls() ? 0 : 1);

    int failed =
        _cmocka_run_group_tests("conformance", tests, count, ts_pki_setup, ts_pki_teardown);

    tlsock__pem_pair_free(&rsa_leaf);
    return failed;
}
