/*
 * The certificate matrix (issue 11): server certificates made at run time, each refused (or
 * accepted) by the client with the same verdict, the same code and the same message on every
 * (client, server) pair, the message naming the certificate that failed by depth and subject.
 * Over the in-memory pair (support/pair.h). CRLs and pins are in test_trust.c.
 */
#include "pair.h"

#include "impl/certspec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

enum cert {
    C_ROOT,       /* ts_pki.ca */
    C_INTER,      /* CA under the root */
    C_INTER_LEAF, /* server under C_INTER */
    C_EXPIRED,
    C_NOT_YET,
    C_SELF,
    C_UNKNOWN_CA, /* under ts_pki.other_ca */
    C_WILDCARD,   /* DNS:*.example.test */
    C_RSA1024,
    C_CLIENT_EKU, /* clientAuth only */
    C_BAD_KU,     /* keyUsage keyCertSign only */
    C_LEAF_CA,    /* a leaf (CA:FALSE) that issues C_UNDER_LEAF */
    C_UNDER_LEAF,
    C_BAD_SIG,    /* ts_pki.server-like, a byte of its signature flipped */
    C_CN_ONLY,    /* CN localhost, no subjectAltName */
    C_MANY_SANS,  /* MANY_SANS names, localhost last */
    C_SHA1,       /* signed by the root with SHA-1 */
    C_NC_CA,      /* a CA under the root that may only issue for example.test (nameConstraints) */
    C_NC_INSIDE,  /* under C_NC_CA: www.example.test, within its constraint */
    C_NC_OUTSIDE, /* under C_NC_CA: localhost, outside its constraint */
    C_COUNT,
};

enum { MANY_SANS = 1500 };

static struct tlsock__pem_pair certs[C_COUNT];
static char *many_hosts;

/* Flips the last byte of the certificate's DER (inside its signature) and writes PEM again. */
static char *flip_signature(const char *pem)
{
    BIO *in = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(in, NULL, NULL, NULL);
    unsigned char *der = NULL;
    int len = x != NULL ? i2d_X509(x, &der) : -1;
    char *out = NULL;

    if (len > 0) {
        der[len - 1] ^= 0x01;
        const unsigned char *p = der;
        X509 *bad = d2i_X509(NULL, &p, len);
        BIO *mem = BIO_new(BIO_s_mem());
        char *data = NULL;
        if (bad != NULL && mem != NULL && PEM_write_bio_X509(mem, bad) == 1) {
            long n = BIO_get_mem_data(mem, &data);
            out = calloc(1, (size_t)n + 1);
            if (out != NULL) {
                memcpy(out, data, (size_t)n);
            }
        }
        BIO_free(mem);
        X509_free(bad);
    }
    OPENSSL_free(der);
    X509_free(x);
    BIO_free(in);
    return out;
}

static int make_certs(void **state)
{
    const long day = 86400;
    struct tlsock__cert_spec s[C_COUNT] = {
        [C_INTER] = {.common_name = "matrix intermediate", .is_ca = true},
        [C_INTER_LEAF] = {.common_name = "inter-leaf", .hosts = TS_SERVER_HOSTS},
        [C_EXPIRED] = {.common_name = "expired",
                       .hosts = TS_SERVER_HOSTS,
                       .not_before_s = -30 * day,
                       .not_after_s = -day},
        [C_NOT_YET] = {.common_name = "not-yet-valid",
                       .hosts = TS_SERVER_HOSTS,
                       .not_before_s = day,
                       .not_after_s = 30 * day},
        [C_SELF] = {.common_name = "self-signed", .hosts = TS_SERVER_HOSTS},
        [C_UNKNOWN_CA] = {.common_name = "unknown-ca", .hosts = TS_SERVER_HOSTS},
        [C_WILDCARD] = {.common_name = "wildcard", .hosts = "*.example.test"},
        [C_RSA1024] = {.common_name = "rsa-1024", .hosts = TS_SERVER_HOSTS, .key_type = "rsa-1024"},
        [C_CLIENT_EKU] = {.common_name = "client-eku",
                          .hosts = TS_SERVER_HOSTS,
                          .eku = TLSOCK__EKU_CLIENT},
        [C_BAD_KU] = {.common_name = "bad-key-usage",
                      .hosts = TS_SERVER_HOSTS,
                      .key_usage = 1u << TLSOCK__KU_KEY_CERT_SIGN},
        [C_LEAF_CA] = {.common_name = "leaf-as-ca", .hosts = TS_SERVER_HOSTS},
        [C_UNDER_LEAF] = {.common_name = "under-leaf", .hosts = TS_SERVER_HOSTS},
        [C_BAD_SIG] = {.common_name = "bad-signature", .hosts = TS_SERVER_HOSTS},
        [C_CN_ONLY] = {.common_name = "localhost"},
        [C_MANY_SANS] = {.common_name = "many-sans"},
        [C_SHA1] = {.common_name = "sha1", .hosts = TS_SERVER_HOSTS, .sha1 = true},
        [C_NC_CA] = {.common_name = "constrained CA",
                     .is_ca = true,
                     .permitted_dns = "example.test"},
        [C_NC_INSIDE] = {.common_name = "nc-inside", .hosts = "www.example.test"},
        [C_NC_OUTSIDE] = {.common_name = "nc-outside", .hosts = TS_SERVER_HOSTS},
    };
    size_t cap = MANY_SANS * 24 + 16;
    int rc = ts_pki_setup(state);

    many_hosts = malloc(cap);
    if (rc != 0 || many_hosts == NULL) {
        return -1;
    }
    size_t n = 0;
    for (int i = 0; i < MANY_SANS; i++) {
        n += (size_t)snprintf(many_hosts + n, cap - n, "h%d.example.test,", i);
    }
    snprintf(many_hosts + n, cap - n, "localhost");
    s[C_MANY_SANS].hosts = many_hosts;
    certs[C_ROOT] = ts_pki.ca;
    for (int i = C_INTER; i < C_COUNT && rc == 0; i++) {
        const struct tlsock__pem_pair *issuer = &ts_pki.ca;
        if (s[i].not_after_s == 0) {
            s[i].not_before_s = -3600;
            s[i].not_after_s = 30 * day;
        }
        if (!s[i].is_ca && s[i].eku == 0) {
            s[i].eku = TLSOCK__EKU_SERVER;
        }
        if (i == C_INTER_LEAF) {
            issuer = &certs[C_INTER];
        } else if (i == C_UNKNOWN_CA) {
            issuer = &ts_pki.other_ca;
        } else if (i == C_UNDER_LEAF) {
            issuer = &certs[C_LEAF_CA];
        } else if (i == C_NC_INSIDE || i == C_NC_OUTSIDE) {
            issuer = &certs[C_NC_CA];
        }
        if (i != C_SELF) {
            s[i].issuer_cert_pem = issuer->cert;
            s[i].issuer_key_pem = issuer->key;
        }
        rc = ts_cert_make(&s[i], &certs[i]);
    }
    if (rc == 0) {
        char *bad = flip_signature(certs[C_BAD_SIG].cert);
        free(certs[C_BAD_SIG].cert);
        certs[C_BAD_SIG].cert = bad;
        rc = bad != NULL ? 0 : -1;
    }
    return rc;
}

static int free_certs(void **state)
{
    for (int i = C_INTER; i < C_COUNT; i++) {
        tlsock__pem_pair_free(&certs[i]);
    }
    free(many_hosts);
    return ts_pki_teardown(state);
}

struct matrix_case {
    const char *what;
    enum cert leaf;
    enum cert chain;     /* sent after the leaf; C_ROOT: nothing */
    const char *name;    /* the name the client verifies; NULL: TS_PAIR_NAME */
    const char *ciphers; /* server's policy; NULL: default */
    int rc;
    /* The client's whole message (with rc != 0), or its start when prefix_only. */
    const char *message;
    bool prefix_only;
    const char *also; /* another substring of the message, or NULL */
};

#define SANS_TEXT "DNS:localhost,IP:127.0.0.1,IP:::1"

static const struct matrix_case cases[] = {
    {"good, through an intermediate", C_INTER_LEAF, C_INTER, NULL, NULL, 0, NULL, false, NULL},
    {"expired", C_EXPIRED, C_ROOT, NULL, NULL, TLSOCK_EVERIFY,
     "certificate has expired (depth 0: CN=expired,O=tlsock)", false, NULL},
    {"not yet valid", C_NOT_YET, C_ROOT, NULL, NULL, TLSOCK_EVERIFY,
     "certificate is not yet valid (depth 0: CN=not-yet-valid,O=tlsock)", false, NULL},
    {"self-signed", C_SELF, C_ROOT, NULL, NULL, TLSOCK_EVERIFY,
     "self-signed certificate (depth 0: CN=self-signed,O=tlsock)", false, NULL},
    {"unknown CA", C_UNKNOWN_CA, C_ROOT, NULL, NULL, TLSOCK_EVERIFY,
     "unable to get local issuer certificate (depth 0: CN=unknown-ca,O=tlsock)", false, NULL},
    {"incomplete chain", C_INTER_LEAF, C_ROOT, NULL, NULL, TLSOCK_EVERIFY,
     "unable to get local issuer certificate (depth 0: CN=inter-leaf,O=tlsock)", false, NULL},
    {"wrong host", C_INTER_LEAF, C_INTER, "www.example.com", NULL, TLSOCK_EVERIFY,
     "hostname mismatch: expected www.example.com, the certificate names " SANS_TEXT
     " (depth 0: CN=inter-leaf,O=tlsock)",
     false, NULL},
    {"IP SAN matches", C_INTER_LEAF, C_INTER, "127.0.0.1", NULL, 0, NULL, false, NULL},
    {"IPv6 SAN matches", C_INTER_LEAF, C_INTER, "::1", NULL, 0, NULL, false, NULL},
    {"IP not among the SANs", C_INTER_LEAF, C_INTER, "192.0.2.7", NULL, TLSOCK_EVERIFY,
     "IP address mismatch: expected 192.0.2.7, the certificate names " SANS_TEXT
     " (depth 0: CN=inter-leaf,O=tlsock)",
     false, NULL},
    {"wildcard matches one label", C_WILDCARD, C_ROOT, "www.example.test", NULL, 0, NULL, false,
     NULL},
    {"wildcard does not match two labels", C_WILDCARD, C_ROOT, "a.b.example.test", NULL,
     TLSOCK_EVERIFY,
     "hostname mismatch: expected a.b.example.test, the certificate names DNS:*.example.test "
     "(depth 0: CN=wildcard,O=tlsock)",
     false, NULL},
    {"wildcard does not match the bare domain", C_WILDCARD, C_ROOT, "example.test", NULL,
     TLSOCK_EVERIFY,
     "hostname mismatch: expected example.test, the certificate names DNS:*.example.test "
     "(depth 0: CN=wildcard,O=tlsock)",
     false, NULL},
    {"RSA-1024", C_RSA1024, C_ROOT, NULL, "legacy", TLSOCK_EVERIFY,
     "EE certificate key too weak (depth 0: CN=rsa-1024,O=tlsock)", false, NULL},
    {"wrong EKU", C_CLIENT_EKU, C_ROOT, NULL, NULL, TLSOCK_EVERIFY,
     "unsuitable certificate purpose (depth 0: CN=client-eku,O=tlsock)", false, NULL},
    {"wrong key usage", C_BAD_KU, C_ROOT, NULL, NULL, TLSOCK_EVERIFY,
     "unsuitable certificate purpose (depth 0: CN=bad-key-usage,O=tlsock)", false, NULL},
    {"a leaf used as a CA", C_UNDER_LEAF, C_LEAF_CA, NULL, NULL, TLSOCK_EVERIFY,
     "invalid CA certificate (depth 1: CN=leaf-as-ca,O=tlsock)", false, NULL},
    {"bad signature", C_BAD_SIG, C_ROOT, NULL, NULL, TLSOCK_EVERIFY,
     "certificate signature failure (depth 0: CN=bad-signature,O=tlsock)", false, NULL},
    {"CN only, no SAN", C_CN_ONLY, C_ROOT, "localhost", NULL, TLSOCK_EVERIFY,
     "hostname mismatch: the certificate has no subjectAltName, and its CN is never used as a "
     "host name (depth 0: CN=localhost,O=tlsock)",
     false, NULL},
    {"thousands of SANs, the last one matches", C_MANY_SANS, C_ROOT, "localhost", NULL, 0, NULL,
     false, NULL},
    /* The server's legacy policy lets it load the certificate; the client's refuses it. */
    {"SHA-1 signature", C_SHA1, C_ROOT, NULL, "legacy", TLSOCK_EVERIFY,
     "CA signature digest algorithm too weak (depth 0: CN=sha1,O=tlsock)", false, NULL},
    {"within the CA's name constraints", C_NC_INSIDE, C_NC_CA, "www.example.test", NULL, 0, NULL,
     false, NULL},
    {"outside the CA's name constraints", C_NC_OUTSIDE, C_NC_CA, NULL, NULL, TLSOCK_EVERIFY,
     "permitted subtree violation (depth 0: CN=nc-outside,O=tlsock)", false, NULL},
    {"thousands of SANs, none matches", C_MANY_SANS, C_ROOT, "wrong.example", NULL, TLSOCK_EVERIFY,
     "hostname mismatch: expected wrong.example, the certificate names "
     "DNS:h0.example.test,DNS:h1.example.test,",
     true, ",... (depth 0: CN=many-sans,O=tlsock)"},
};

static void run_case(struct ts_pair *p, const struct matrix_case *c)
{
    char chain[1 << 16];
    const struct tlsock__pem_pair *leaf = &certs[c->leaf];
    struct tlsock_opts copts = ts_opts();

    snprintf(chain, sizeof(chain), "%s%s", leaf->cert,
             c->chain != C_ROOT ? certs[c->chain].cert : "");
    TS_ASSERT_RC(ts_ctx_new(TLSOCK_SERVER, &p->sctx), 0);
    if (c->ciphers != NULL) {
        TS_ASSERT_RC(tlsock_ctx_set_ciphers(p->sctx, c->ciphers), 0);
    }
    TS_ASSERT_RC_MSG(
        tlsock_ctx_set_cert_mem(p->sctx, chain, strlen(chain), leaf->key, strlen(leaf->key)), 0,
        tlsock_ctx_errmsg(p->sctx));
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &p->cctx), 0);
    copts.verify_name = c->name != NULL ? c->name : TS_PAIR_NAME;
    TS_ASSERT_RC(ts_pair_attach(p, &copts, NULL), 0);
    (void)ts_pair_handshake(p);
    if (c->leaf == C_BAD_KU && tlsock_ctx_impl(p->sctx) == TLSOCK_IMPL_GNUTLS) {
        /*
         * A GnuTLS server does not present a certificate whose keyUsage forbids signing: the
         * client never sees it. Not a verification: the server's refusal, told by its alert.
         */
        TS_ASSERT_RC_MSG(p->client_rc, TLSOCK_EPROTO, p->client_msg);
        assert_string_equal(p->client_msg, "peer sent alert: handshake_failure (40)");
        TS_ASSERT_FAILED(p->server_rc, p->server_msg);
        print_message("  GnuTLS server: %s\n", p->server_msg);
        return;
    }
    TS_ASSERT_RC_MSG(p->client_rc, c->rc, p->client_msg);
    if (c->rc == 0) {
        assert_int_equal(p->server_rc, 0);
        return;
    }
    /* The refusal reaches the server as the client's alert, never as a success. */
    TS_ASSERT_FAILED(p->server_rc, p->server_msg);
    if (c->prefix_only) {
        if (strncmp(p->client_msg, c->message, strlen(c->message)) != 0) {
            print_error("\"%s\"\n does not start with \"%s\"\n", p->client_msg, c->message);
            fail();
        }
    } else {
        assert_string_equal(p->client_msg, c->message);
    }
    if (c->also != NULL) {
        TS_ASSERT_CONTAINS(p->client_msg, c->also);
    }
}

static void test_matrix(void **state)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ts_pair_renew(state, i);
        print_message("%s\n", cases[i].what);
        run_case(*state, &cases[i]);
    }
}

/*
 * A server's own certificate signed with SHA-1: refused when it is set under a policy with a
 * security level (secure, compat), as a peer would refuse it, and taken under "legacy"; the same
 * on every implementation.
 */
static void test_own_sha1_certificate(void **state)
{
    static const char *const policies[] = {"secure", "compat", "legacy"};

    (void)state;
    for (size_t i = 0; i < sizeof(policies) / sizeof(policies[0]); i++) {
        struct tlsock_ctx *ctx = NULL;
        const struct tlsock__pem_pair *c = &certs[C_SHA1];
        bool legacy = strcmp(policies[i], "legacy") == 0;

        TS_ASSERT_RC(ts_ctx_new(TLSOCK_SERVER, &ctx), 0);
        TS_ASSERT_RC(tlsock_ctx_set_ciphers(ctx, policies[i]), 0);
        int rc = tlsock_ctx_set_cert_mem(ctx, c->cert, strlen(c->cert), c->key, strlen(c->key));
        print_message("%s: %s\n", policies[i], tlsock_ctx_errmsg(ctx));
        if (legacy) {
            TS_ASSERT_RC_MSG(rc, 0, tlsock_ctx_errmsg(ctx));
        } else {
            TS_ASSERT_RC_MSG(rc, TLSOCK_ECONFIG, tlsock_ctx_errmsg(ctx));
            TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(ctx), "ca md too weak");
        }
        tlsock_ctx_free(ctx);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_matrix, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test(test_own_sha1_certificate),
    };

    return cmocka_run_group_tests_name("cert_matrix", tests, make_certs, free_certs);
}
