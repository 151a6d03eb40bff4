/* Client certificates, and the client's view of a server's refusal (peer alert), over the
 * in-memory pair (support/pair.h). */
#include "pair.h"

#include <stdio.h>
#include <string.h>

/* A client certificate the server does not trust, and one with the wrong purpose. */
static struct tlsock__pem_pair untrusted_client;

static int make_certs(void **state)
{
    int rc = ts_pki_setup(state);

    if (rc == 0) {
        rc = ts_leaf_make(&ts_pki.other_ca, "untrusted-client", NULL, TLSOCK__EKU_CLIENT,
                          &untrusted_client);
    }
    return rc == 0 ? 0 : -1;
}

static int free_certs(void **state)
{
    tlsock__pem_pair_free(&untrusted_client);
    return ts_pki_teardown(state);
}

enum client_cert {
    CERT_NONE,
    CERT_VALID,     /* ts_pki.client */
    CERT_UNTRUSTED, /* untrusted_client */
    CERT_SERVER,    /* ts_pki.server: serverAuth only */
};

struct auth_case {
    const char *what;
    int server_verify;
    const char *protocols;
    enum client_cert cert;
    int connect_rc; /* the client's handshake */
    int read_rc;    /* the first read, when the handshake succeeded */
    int server_rc;  /* the server's handshake */
    const char *client_message;
    const char *server_message;
};

static const struct auth_case cases[] = {
    {.what = "required, valid certificate, TLS 1.3",
     .server_verify = TLSOCK_VERIFY_REQUIRED,
     .cert = CERT_VALID},
    {.what = "required, valid certificate, TLS 1.2",
     .server_verify = TLSOCK_VERIFY_REQUIRED,
     .protocols = "1.2-1.2",
     .cert = CERT_VALID},
    {.what = "optional, no certificate",
     .server_verify = TLSOCK_VERIFY_OPTIONAL,
     .cert = CERT_NONE},
    {.what = "optional, valid certificate",
     .server_verify = TLSOCK_VERIFY_OPTIONAL,
     .cert = CERT_VALID},
    /* TLS 1.2: the server's alert arrives during the client's handshake. It is handshake_failure
     * (RFC 5246 section 7.4.6) on both servers; GnuTLS's own choice was decode_error, as if the
     * client's empty Certificate message were malformed. */
    {.what = "required, no certificate, TLS 1.2",
     .server_verify = TLSOCK_VERIFY_REQUIRED,
     .protocols = "1.2-1.2",
     .cert = CERT_NONE,
     .connect_rc = TLSOCK_EPROTO,
     .server_rc = TLSOCK_EVERIFY,
     .client_message = "handshake_failure (40)",
     .server_message = "no certificate"},
    /* TLS 1.3: the client finishes first; the alert ends its first read (RFC 8446 4.4.2.4). */
    {.what = "required, no certificate, TLS 1.3",
     .server_verify = TLSOCK_VERIFY_REQUIRED,
     .cert = CERT_NONE,
     .read_rc = TLSOCK_EPROTO,
     .server_rc = TLSOCK_EVERIFY,
     .client_message = "certificate_required",
     .server_message = "no certificate"},
    {.what = "required, untrusted certificate, TLS 1.2",
     .server_verify = TLSOCK_VERIFY_REQUIRED,
     .protocols = "1.2-1.2",
     .cert = CERT_UNTRUSTED,
     .connect_rc = TLSOCK_EPROTO,
     .server_rc = TLSOCK_EVERIFY,
     .client_message = "unknown_ca",
     .server_message = "unable to get local issuer"},
    {.what = "required, untrusted certificate, TLS 1.3",
     .server_verify = TLSOCK_VERIFY_REQUIRED,
     .cert = CERT_UNTRUSTED,
     .read_rc = TLSOCK_EPROTO,
     .server_rc = TLSOCK_EVERIFY,
     .client_message = "unknown_ca",
     .server_message = "unable to get local issuer"},
    {.what = "optional, untrusted certificate is still checked",
     .server_verify = TLSOCK_VERIFY_OPTIONAL,
     .cert = CERT_UNTRUSTED,
     .read_rc = TLSOCK_EPROTO,
     .server_rc = TLSOCK_EVERIFY,
     .client_message = "alert",
     .server_message = "unable to get local issuer"},
    {.what = "required, serverAuth-only certificate",
     .server_verify = TLSOCK_VERIFY_REQUIRED,
     .cert = CERT_SERVER,
     .read_rc = TLSOCK_EPROTO,
     .server_rc = TLSOCK_EVERIFY,
     .client_message = "alert",
     .server_message = "purpose"},
};

static const struct tlsock__pem_pair *client_pair(enum client_cert cert)
{
    const struct tlsock__pem_pair *pair = NULL;

    switch (cert) {
    case CERT_NONE:
        break;
    case CERT_VALID:
        pair = &ts_pki.client;
        break;
    case CERT_UNTRUSTED:
        pair = &untrusted_client;
        break;
    case CERT_SERVER:
        pair = &ts_pki.server;
        break;
    }
    return pair;
}

/* After a fatal error every call returns the same code and the message still says why. */
static void check_sticky(struct tlsock_conn *conn, int code, const char *message)
{
    unsigned char buf[4];
    size_t n = 0;

    TS_ASSERT_RC(tlsock_read(conn, buf, sizeof(buf), &n), code);
    TS_ASSERT_RC(tlsock_write(conn, "x", 1), code);
    TS_ASSERT_RC(tlsock_handshake(conn), code);
    TS_ASSERT_RC(tlsock_shutdown(conn), code);
    TS_ASSERT_CONTAINS(tlsock_conn_errmsg(conn), message);
}

static void test_client_auth(void **state)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct auth_case *c = &cases[i];
        const struct tlsock__pem_pair *pair = client_pair(c->cert);
        const struct tlsock_info *info = NULL;
        struct ts_pair *p;
        int rc;

        print_message("%s\n", c->what);
        ts_pair_renew(state, i);
        p = *state;
        TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &p->sctx), 0);
        TS_ASSERT_RC(tlsock_ctx_set_ca_mem(p->sctx, ts_pki.ca.cert, strlen(ts_pki.ca.cert)), 0);
        TS_ASSERT_RC(tlsock_ctx_set_verify(p->sctx, c->server_verify), 0);
        TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &p->cctx), 0);
        if (c->protocols != NULL) {
            TS_ASSERT_RC(tlsock_ctx_set_protocols(p->cctx, c->protocols), 0);
        }
        if (pair != NULL) {
            TS_ASSERT_RC_MSG(tlsock_ctx_set_cert_mem(p->cctx, pair->cert, strlen(pair->cert),
                                                     pair->key, strlen(pair->key)),
                             0, tlsock_ctx_errmsg(p->cctx));
        }
        TS_ASSERT_RC(ts_pair_attach(p, NULL, NULL), 0);

        (void)ts_pair_handshake(p);
        TS_ASSERT_RC_MSG(p->client_rc, c->connect_rc, p->client_msg);
        if (p->client_rc == 0) {
            char buf[2] = {0, 0};

            /* The server greets a client it accepted. */
            if (p->server_rc == 0) {
                TS_ASSERT_RC(ts_pair_write(p, TS_S2C, "hi", 2), 0);
            }
            rc = ts_pair_read(p, TS_S2C, buf, sizeof(buf));
            TS_ASSERT_RC_MSG(rc, c->read_rc, tlsock_conn_errmsg(p->client));
            if (rc == 0) {
                assert_memory_equal(buf, "hi", 2);
            } else {
                TS_ASSERT_CONTAINS(tlsock_conn_errmsg(p->client), c->client_message);
                check_sticky(p->client, rc, c->client_message);
            }
        } else {
            TS_ASSERT_CONTAINS(p->client_msg, c->client_message);
        }
        if (p->server_rc != 0) {
            print_message("  server: %s (%s)\n", ts_rc_name(p->server_rc), p->server_msg);
        }
        TS_ASSERT_RC_MSG(p->server_rc, c->server_rc, p->server_msg);
        if (c->server_rc == 0) {
            TS_ASSERT_RC(tlsock_conn_info(p->server, &info), 0);
            if (c->cert == CERT_NONE) {
                assert_string_equal(info->peer_subject, "");
            } else {
                TS_ASSERT_CONTAINS(info->peer_subject, TS_CLIENT_CN);
            }
        } else {
            TS_ASSERT_CONTAINS(p->server_msg, c->server_message);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_client_auth, ts_pair_setup, ts_pair_teardown),
    };

    return cmocka_run_group_tests_name("client_auth", tests, make_certs, free_certs);
}
