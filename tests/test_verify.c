/* The client rejects bad server certificates with EVERIFY and says why. The cases run over the
 * in-memory pair (support/pair.h); those about tlsock_connect()'s host run over loopback. */
#include "pair.h"

#include <stdio.h>
#include <string.h>

/* Server certificates made once for this executable, on top of ts_pki. */
enum leaf {
    LEAF_GOOD,        /* ts_pki.server */
    LEAF_LOCALHOST,   /* DNS:localhost only */
    LEAF_EXPIRED,     /* ended yesterday */
    LEAF_NOT_YET,     /* starts tomorrow */
    LEAF_SELF_SIGNED, /* its own issuer */
    LEAF_UNTRUSTED,   /* signed by ts_pki.other_ca */
    LEAF_CLIENT_ONLY, /* extendedKeyUsage clientAuth only */
    LEAF_RSA1024,     /* below security level 2 */
    LEAF_EXPIRED_CA,  /* good leaf under an expired CA, see expired_ca */
    LEAF_WILDCARD,    /* DNS:*.example.test only */
    LEAF_COUNT,
};

static struct tlsock__pem_pair leaves[LEAF_COUNT];
static struct tlsock__pem_pair expired_ca;

static int make_leaves(void **state)
{
    const long day = 86400;
    const struct tlsock__cert_spec specs[LEAF_COUNT] = {
        [LEAF_LOCALHOST] = {.common_name = "localhost-only",
                            .hosts = "localhost",
                            .not_before_s = -3600,
                            .not_after_s = 30 * day,
                            .eku = TLSOCK__EKU_SERVER},
        [LEAF_EXPIRED] = {.common_name = "expired",
                          .hosts = TS_SERVER_HOSTS,
                          .not_before_s = -30 * day,
                          .not_after_s = -day,
                          .eku = TLSOCK__EKU_SERVER},
        [LEAF_NOT_YET] = {.common_name = "not-yet-valid",
                          .hosts = TS_SERVER_HOSTS,
                          .not_before_s = day,
                          .not_after_s = 30 * day,
                          .eku = TLSOCK__EKU_SERVER},
        [LEAF_SELF_SIGNED] = {.common_name = "self-signed",
                              .hosts = TS_SERVER_HOSTS,
                              .not_before_s = -3600,
                              .not_after_s = 30 * day,
                              .eku = TLSOCK__EKU_SERVER},
        [LEAF_UNTRUSTED] = {.common_name = "untrusted",
                            .hosts = TS_SERVER_HOSTS,
                            .not_before_s = -3600,
                            .not_after_s = 30 * day,
                            .eku = TLSOCK__EKU_SERVER},
        [LEAF_CLIENT_ONLY] = {.common_name = "client-only",
                              .hosts = TS_SERVER_HOSTS,
                              .not_before_s = -3600,
                              .not_after_s = 30 * day,
                              .eku = TLSOCK__EKU_CLIENT},
        [LEAF_RSA1024] = {.common_name = "rsa-1024",
                          .hosts = TS_SERVER_HOSTS,
                          .key_type = "rsa-1024",
                          .not_before_s = -3600,
                          .not_after_s = 30 * day,
                          .eku = TLSOCK__EKU_SERVER},
        [LEAF_EXPIRED_CA] = {.common_name = "under-expired-ca",
                             .hosts = TS_SERVER_HOSTS,
                             .not_before_s = -3600,
                             .not_after_s = 30 * day,
                             .eku = TLSOCK__EKU_SERVER},
        [LEAF_WILDCARD] = {.common_name = "wildcard",
                           .hosts = "*.example.test",
                           .not_before_s = -3600,
                           .not_after_s = 30 * day,
                           .eku = TLSOCK__EKU_SERVER},
    };
    const struct tlsock__cert_spec expired_ca_spec = {
        .common_name = "tlsock test CA (expired)",
        .is_ca = true,
        .not_before_s = -30 * day,
        .not_after_s = -day,
    };
    int rc = ts_pki_setup(state);

    (void)state;
    if (rc == 0) {
        rc = ts_cert_make(&expired_ca_spec, &expired_ca);
    }
    for (int i = 0; i < LEAF_COUNT && rc == 0; i++) {
        struct tlsock__cert_spec spec = specs[i];

        if (i == LEAF_GOOD) {
            continue;
        }
        if (i == LEAF_UNTRUSTED) {
            spec.issuer_cert_pem = ts_pki.other_ca.cert;
            spec.issuer_key_pem = ts_pki.other_ca.key;
        } else if (i == LEAF_EXPIRED_CA) {
            /* Same subject as the trusted CA would not help: trust the expired one itself. */
            spec.issuer_cert_pem = expired_ca.cert;
            spec.issuer_key_pem = expired_ca.key;
        } else if (i != LEAF_SELF_SIGNED) {
            spec.issuer_cert_pem = ts_pki.ca.cert;
            spec.issuer_key_pem = ts_pki.ca.key;
        }
        rc = ts_cert_make(&spec, &leaves[i]);
    }
    leaves[LEAF_GOOD] = ts_pki.server;
    return rc == 0 ? 0 : -1;
}

static int free_leaves(void **state)
{
    for (int i = 0; i < LEAF_COUNT; i++) {
        if (i != LEAF_GOOD) {
            tlsock__pem_pair_free(&leaves[i]);
        }
    }
    memset(leaves, 0, sizeof(leaves));
    tlsock__pem_pair_free(&expired_ca);
    return ts_pki_teardown(state);
}

/* The address the loopback cases connect to. In memory mode there is no host: a case that names
 * no verify name and no servername verifies it as the name, as tlsock_connect() would. */
#define HOST "127.0.0.1"

enum trust {
    TRUST_CA,         /* ts_pki.ca */
    TRUST_EXPIRED_CA, /* expired_ca */
    TRUST_SYSTEM,     /* no CA set: the system store, which knows nothing of our CAs */
    TRUST_NONE,       /* TLSOCK_VERIFY_NONE */
};

struct verify_case {
    const char *what;
    enum leaf leaf;
    enum trust trust;
    const char *server_ciphers; /* NULL: default */
    const char *servername;     /* opts.servername, NULL: default */
    const char *verify_name;    /* opts.verify_name, NULL: the servername or the host */
    int rc;
    const char *message; /* substring of the client's message after a failure */
    /* About the host given to tlsock_connect(): runs over loopback only. */
    bool on_socket;
};

static const struct verify_case cases[] = {
    {.what = "good certificate", .leaf = LEAF_GOOD, .rc = 0},
    {.what = "good certificate, verify name localhost",
     .leaf = LEAF_GOOD,
     .verify_name = "localhost",
     .rc = 0},
    /* RFC 6125 6.4.1: DNS names compare case-insensitively. */
    {.what = "verify name in another case", .leaf = LEAF_GOOD, .verify_name = "LocalHost", .rc = 0},
    {.what = "the servername is the name verified",
     .leaf = LEAF_GOOD,
     .servername = "www.example.com",
     .rc = TLSOCK_EVERIFY,
     .message = "hostname mismatch"},
    {.what = "verify name overrides the servername",
     .leaf = LEAF_GOOD,
     .servername = "www.example.com",
     .verify_name = "localhost",
     .rc = 0},
    {.what = "no SNI: the host is verified",
     .leaf = LEAF_GOOD,
     .servername = "",
     .rc = 0,
     .on_socket = true},
    {.what = "wildcard matches one label",
     .leaf = LEAF_WILDCARD,
     .verify_name = "www.example.test",
     .rc = 0},
    {.what = "wildcard does not match two labels",
     .leaf = LEAF_WILDCARD,
     .verify_name = "a.www.example.test",
     .rc = TLSOCK_EVERIFY,
     .message = "hostname mismatch"},
    {.what = "wildcard does not match the bare domain",
     .leaf = LEAF_WILDCARD,
     .verify_name = "example.test",
     .rc = TLSOCK_EVERIFY,
     .message = "hostname mismatch"},
    {.what = "wrong host name",
     .leaf = LEAF_GOOD,
     .verify_name = "www.example.com",
     .rc = TLSOCK_EVERIFY,
     .message = "hostname mismatch"},
    {.what = "IP address not in the certificate",
     .leaf = LEAF_LOCALHOST,
     .rc = TLSOCK_EVERIFY,
     .message = "IP address mismatch"},
    {.what = "expired", .leaf = LEAF_EXPIRED, .rc = TLSOCK_EVERIFY, .message = "expired"},
    {.what = "not yet valid",
     .leaf = LEAF_NOT_YET,
     .rc = TLSOCK_EVERIFY,
     .message = "not yet valid"},
    {.what = "self-signed",
     .leaf = LEAF_SELF_SIGNED,
     .rc = TLSOCK_EVERIFY,
     .message = "self-signed"},
    {.what = "signed by an untrusted CA",
     .leaf = LEAF_UNTRUSTED,
     .rc = TLSOCK_EVERIFY,
     .message = "unable to get local issuer"},
    {.what = "our CA is not in the system store",
     .leaf = LEAF_GOOD,
     .trust = TRUST_SYSTEM,
     .rc = TLSOCK_EVERIFY,
     .message = "unable to get local issuer"},
    {.what = "issuer expired",
     .leaf = LEAF_EXPIRED_CA,
     .trust = TRUST_EXPIRED_CA,
     .rc = TLSOCK_EVERIFY,
     .message = "expired"},
    {.what = "clientAuth-only certificate presented by a server",
     .leaf = LEAF_CLIENT_ONLY,
     .rc = TLSOCK_EVERIFY,
     .message = "purpose"},
    /* A server at security level 0 can present it; the default client (level 2) refuses. */
    {.what = "RSA-1024 server key",
     .leaf = LEAF_RSA1024,
     .server_ciphers = "legacy",
     .rc = TLSOCK_EVERIFY,
     .message = "too weak"},
    /* Explicitly insecure: the client accepts anything. */
    {.what = "self-signed with VERIFY_NONE",
     .leaf = LEAF_SELF_SIGNED,
     .trust = TRUST_NONE,
     .rc = 0},
};

static void make_contexts(const struct verify_case *c, struct tlsock_ctx **sctx,
                          struct tlsock_ctx **cctx)
{
    const struct tlsock__pem_pair *leaf = &leaves[c->leaf];

    TS_ASSERT_RC(ts_ctx_new(TLSOCK_SERVER, sctx), 0);
    if (c->server_ciphers != NULL) {
        TS_ASSERT_RC(tlsock_ctx_set_ciphers(*sctx, c->server_ciphers), 0);
    }
    TS_ASSERT_RC_MSG(tlsock_ctx_set_cert_mem(*sctx, leaf->cert, strlen(leaf->cert), leaf->key,
                                             strlen(leaf->key)),
                     0, tlsock_ctx_errmsg(*sctx));
    switch (c->trust) {
    case TRUST_CA:
        TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, cctx), 0);
        break;
    case TRUST_EXPIRED_CA:
        TS_ASSERT_RC(ts_client_ctx_new(expired_ca.cert, cctx), 0);
        break;
    case TRUST_SYSTEM:
        TS_ASSERT_RC(ts_client_ctx_new(NULL, cctx), 0);
        break;
    case TRUST_NONE:
        TS_ASSERT_RC(ts_client_ctx_new(NULL, cctx), 0);
        TS_ASSERT_RC(tlsock_ctx_set_verify(*cctx, TLSOCK_VERIFY_NONE), 0);
        break;
    }
}

/* The client's handshake: its code, its message after a failure, its view after a success. */
static void check_client(const struct verify_case *c, int rc, const char *message,
                         struct tlsock_conn *client)
{
    const struct tlsock_info *info = NULL;

    TS_ASSERT_RC_MSG(rc, c->rc, message);
    if (rc != 0) {
        TS_ASSERT_CONTAINS(message, c->message);
        return;
    }
    TS_ASSERT_RC(tlsock_conn_info(client, &info), 0);
    if (c->trust == TRUST_NONE) {
        /* Not verified, and the info says so rather than "ok". */
        assert_int_not_equal(info->verify_result, 0);
        assert_string_not_equal(info->verify_message, "ok");
    } else {
        assert_int_equal(info->verify_result, 0);
        assert_string_equal(info->verify_message, "ok");
    }
}

/* The server's handshake: done, or ended by the client's alert. */
static void check_server(const struct verify_case *c, int rc, const char *message)
{
    if (c->rc == 0) {
        TS_ASSERT_RC_MSG(rc, 0, message);
    } else {
        TS_ASSERT_FAILED(rc, message);
    }
}

static void test_verification(void **state)
{
    size_t index = 0;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct verify_case *c = &cases[i];
        struct tlsock_opts opts = ts_opts();
        struct ts_pair *p;

        if (c->on_socket) {
            continue;
        }
        print_message("%s\n", c->what);
        ts_pair_renew(state, index++);
        p = *state;
        opts.servername = c->servername;
        opts.verify_name = c->verify_name;
        if (c->verify_name == NULL && (c->servername == NULL || c->servername[0] == '\0')) {
            opts.verify_name = HOST;
        }
        make_contexts(c, &p->sctx, &p->cctx);
        TS_ASSERT_RC(ts_pair_attach(p, &opts, NULL), 0);
        (void)ts_pair_handshake(p);
        check_client(c, p->client_rc, p->client_msg, p->client);
        check_server(c, p->server_rc, p->server_msg);
    }
}

static int serve_handshake(struct tlsock_conn *conn, void *arg)
{
    int *handshake_rc = arg;

    *handshake_rc = tlsock_handshake(conn);
    if (*handshake_rc == 0) {
        unsigned char byte;
        size_t n = 0;

        (void)tlsock_read(conn, &byte, 1, &n);
    }
    return *handshake_rc;
}

static void test_verification_on_socket(void **state)
{
    size_t index = 0;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct verify_case *c = &cases[i];
        struct tlsock_opts opts = ts_opts();
        int server_rc = TS_NOT_RUN;
        struct ts_env *env;
        int rc;

        if (!c->on_socket) {
            continue;
        }
        print_message("%s\n", c->what);
        ts_env_renew(state, index++);
        env = *state;
        opts.servername = c->servername;
        opts.verify_name = c->verify_name;
        make_contexts(c, &env->sctx, &env->cctx);
        TS_ASSERT_RC(ts_server_start(&env->srv, env->sctx, NULL, NULL, serve_handshake, &server_rc),
                     0);
        rc = tlsock_connect(env->cctx, HOST, env->srv.port, &opts, &env->client);
        check_client(c, rc, tlsock_errmsg(), env->client);
        if (rc != 0) {
            assert_null(env->client);
        }
        tlsock_close(env->client);
        env->client = NULL;
        ts_server_stop(&env->srv);
        check_server(c, server_rc, env->srv.errmsg);
    }
}

/* At the default security level a server refuses an RSA-1024 key when it is configured. */
static void test_rsa1024_refused_by_server_ctx(void **state)
{
    struct tlsock_ctx *ctx = NULL;
    const struct tlsock__pem_pair *leaf = &leaves[LEAF_RSA1024];
    int rc;

    (void)state;
    TS_ASSERT_RC(ts_ctx_new(TLSOCK_SERVER, &ctx), 0);
    rc = tlsock_ctx_set_cert_mem(ctx, leaf->cert, strlen(leaf->cert), leaf->key, strlen(leaf->key));
    if (rc != TLSOCK_ECONFIG) {
        tlsock_ctx_free(ctx);
        fail_msg("set_cert_mem(RSA-1024): expected ECONFIG, got %s", ts_rc_name(rc));
    }
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(ctx), "too small");
    tlsock_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_verification, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_verification_on_socket, ts_env_setup, ts_env_teardown),
        cmocka_unit_test(test_rsa1024_refused_by_server_ctx),
    };

    return cmocka_run_group_tests_name("verify", tests, make_leaves, free_leaves);
}
