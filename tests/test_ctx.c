/* Unit tests: context creation, setters and their errors, freezing, reference counts, NULLs. */
#include "support.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if TLSOCK_TEST_HAVE_UV
#include "tlsock/uv.h"
#endif

/* A context pointer a failing _new must leave untouched ("out-parameters are written only on
 * success"). */
#define SENTINEL ((struct tlsock_ctx *)(uintptr_t)0x5e17)

static int new_client(void **state)
{
    struct tlsock_ctx *ctx = NULL;
    int rc = tlsock_ctx_new(TLSOCK_CLIENT, &ctx);

    *state = ctx;
    return rc == 0 ? 0 : -1;
}

static int new_server(void **state)
{
    struct tlsock_ctx *ctx = NULL;
    int rc = tlsock_ctx_new(TLSOCK_SERVER, &ctx);

    *state = ctx;
    return rc == 0 ? 0 : -1;
}

static int free_ctx(void **state)
{
    tlsock_ctx_free(*state);
    *state = NULL;
    return 0;
}

static void test_ctx_new_roles(void **state)
{
    static const struct {
        int role;
        int rc;
    } cases[] = {
        {.role = TLSOCK_CLIENT, .rc = 0},  {.role = TLSOCK_SERVER, .rc = 0},
        {.role = 0, .rc = TLSOCK_EINVAL},  {.role = 3, .rc = TLSOCK_EINVAL},
        {.role = -1, .rc = TLSOCK_EINVAL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct tlsock_ctx *ctx = SENTINEL;

        TS_ASSERT_RC(tlsock_ctx_new(cases[i].role, &ctx), cases[i].rc);
        if (cases[i].rc == 0) {
            assert_true(ctx != NULL && ctx != SENTINEL);
            assert_string_equal(tlsock_ctx_errmsg(ctx), "");
            tlsock_ctx_free(ctx);
        } else {
            assert_ptr_equal(ctx, SENTINEL);
            assert_true(strlen(tlsock_errmsg()) > 0);
        }
    }
}

struct string_case {
    const char *in;
    int rc;
};

static const struct string_case protocol_cases[] = {
    {.in = "1.2", .rc = 0},
    {.in = "1.3", .rc = 0},
    {.in = "1.2-1.3", .rc = 0},
    {.in = "1.2-1.2", .rc = 0},
    {.in = "1.0-1.3", .rc = 0},
    {.in = "tls1.2", .rc = 0},
    {.in = "TLSv1.3", .rc = 0},
    {.in = "TLSv1.2-TLSv1.3", .rc = 0},
    {.in = "", .rc = TLSOCK_EINVAL},
    {.in = "1.4", .rc = TLSOCK_EINVAL},
    {.in = "2", .rc = TLSOCK_EINVAL},
    {.in = "SSLv3", .rc = TLSOCK_EINVAL},
    {.in = "1.2-", .rc = TLSOCK_EINVAL},
    {.in = "-1.3", .rc = TLSOCK_EINVAL},
    {.in = "1.2-1.3-1.3", .rc = TLSOCK_EINVAL},
    {.in = "1.2 ", .rc = TLSOCK_EINVAL},
    {.in = "tls", .rc = TLSOCK_EINVAL},
    {.in = "banana", .rc = TLSOCK_EINVAL},
    /* Minimum above maximum. */
    {.in = "1.3-1.2", .rc = TLSOCK_EINVAL},
    {.in = "TLSv1.2-1.0", .rc = TLSOCK_EINVAL},
    {.in = NULL, .rc = TLSOCK_EINVAL},
};

static void test_set_protocols(void **state)
{
    struct tlsock_ctx *ctx = *state;

    for (size_t i = 0; i < sizeof(protocol_cases) / sizeof(protocol_cases[0]); i++) {
        const struct string_case *c = &protocol_cases[i];
        int rc = tlsock_ctx_set_protocols(ctx, c->in);

        if (rc != c->rc) {
            fail_msg("set_protocols(\"%s\"): expected %s, got %s (%s)", c->in ? c->in : "NULL",
                     ts_rc_name(c->rc), ts_rc_name(rc), tlsock_ctx_errmsg(ctx));
        }
        /* Failures explain themselves; successes clear the previous explanation. */
        assert_int_equal(strlen(tlsock_ctx_errmsg(ctx)) > 0, rc != 0);
    }
}

/*
 * A raw cipher list is the implementation's own syntax: an OpenSSL cipher list, or a GnuTLS
 * priority string. Cases written in OpenSSL's syntax say the same in GnuTLS's (gnutls_in).
 */
struct cipher_case {
    const char *in;
    const char *gnutls_in; /* NULL: the same string */
    int rc;
};

static const struct cipher_case cipher_cases[] = {
    {.in = "secure", .rc = 0},
    {.in = "compat", .rc = 0},
    {.in = "legacy", .rc = 0},
    /* Raw cipher lists pass through. */
    {.in = "ECDHE-ECDSA-AES128-GCM-SHA256",
     .gnutls_in = "NORMAL:-CIPHER-ALL:+AES-128-GCM:-KX-ALL:+ECDHE-ECDSA",
     .rc = 0},
    /* Parts naming TLS 1.3 suites ("TLS_...") and TLS 1.2 ciphers, alone or together. */
    {.in = "TLS_CHACHA20_POLY1305_SHA256", .rc = 0},
    {.in = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384", .rc = 0},
    {.in = "ECDHE+AESGCM:TLS_AES_128_GCM_SHA256",
     .gnutls_in = "NORMAL:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA",
     .rc = 0},
    {.in = "TLS_NOT_A_SUITE", .rc = TLSOCK_ECONFIG},
    {.in = "ECDHE+AESGCM:TLS_NOT_A_SUITE",
     .gnutls_in = "NORMAL:-CIPHER-ALL:+NOT-A-CIPHER",
     .rc = TLSOCK_ECONFIG},
    {.in = "NOT-A-CIPHER:TLS_AES_128_GCM_SHA256", .rc = TLSOCK_ECONFIG},
    /* A raw string that selects nothing. */
    {.in = "NOT-A-CIPHER", .rc = TLSOCK_ECONFIG},
    {.in = "NULL-NOPE:ALSO-NOT", .rc = TLSOCK_ECONFIG},
};

static void test_set_ciphers(void **state)
{
    struct tlsock_ctx *ctx = *state;
    const bool gnutls = tlsock_ctx_impl(ctx) == TLSOCK_IMPL_GNUTLS;

    for (size_t i = 0; i < sizeof(cipher_cases) / sizeof(cipher_cases[0]); i++) {
        const struct cipher_case *c = &cipher_cases[i];
        const char *in = gnutls && c->gnutls_in != NULL ? c->gnutls_in : c->in;
        int rc = tlsock_ctx_set_ciphers(ctx, in);

        if (rc != c->rc) {
            fail_msg("set_ciphers(\"%s\"): expected %s, got %s (%s)", in, ts_rc_name(c->rc),
                     ts_rc_name(rc), tlsock_ctx_errmsg(ctx));
        }
        assert_int_equal(strlen(tlsock_ctx_errmsg(ctx)) > 0, rc != 0);
    }
    TS_ASSERT_RC(tlsock_ctx_set_ciphers(ctx, NULL), TLSOCK_EINVAL);
}

static const char garbage_pem[] = "-----BEGIN CERTIFICATE-----\n"
                                  "bm90IGEgY2VydGlmaWNhdGUgYXQgYWxs\n"
                                  "-----END CERTIFICATE-----\n";
static const char garbage_key[] = "-----BEGIN PRIVATE KEY-----\n"
                                  "bm90IGEga2V5IGVpdGhlcg==\n"
                                  "-----END PRIVATE KEY-----\n";
static const char not_pem[] = "hello, world\n";

enum pem_source {
    PEM_SERVER_CERT,
    PEM_SERVER_KEY,
    PEM_CLIENT_KEY,
    PEM_CA_CERT,
    PEM_GARBAGE_CERT,
    PEM_GARBAGE_KEY,
    PEM_NOT_PEM,
};

static const char *pem_text(enum pem_source src)
{
    const char *text = NULL;

    switch (src) {
    case PEM_SERVER_CERT:
        text = ts_pki.server.cert;
        break;
    case PEM_SERVER_KEY:
        text = ts_pki.server.key;
        break;
    case PEM_CLIENT_KEY:
        text = ts_pki.client.key;
        break;
    case PEM_CA_CERT:
        text = ts_pki.ca.cert;
        break;
    case PEM_GARBAGE_CERT:
        text = garbage_pem;
        break;
    case PEM_GARBAGE_KEY:
        text = garbage_key;
        break;
    case PEM_NOT_PEM:
        text = not_pem;
        break;
    }
    return text;
}

struct cert_case {
    const char *what;
    enum pem_source cert;
    enum pem_source key;
    int rc;
};

static const struct cert_case cert_cases[] = {
    {.what = "matching pair", .cert = PEM_SERVER_CERT, .key = PEM_SERVER_KEY, .rc = 0},
    {.what = "garbage certificate",
     .cert = PEM_GARBAGE_CERT,
     .key = PEM_SERVER_KEY,
     .rc = TLSOCK_ECONFIG},
    {.what = "no PEM certificate",
     .cert = PEM_NOT_PEM,
     .key = PEM_SERVER_KEY,
     .rc = TLSOCK_ECONFIG},
    {.what = "garbage key", .cert = PEM_SERVER_CERT, .key = PEM_GARBAGE_KEY, .rc = TLSOCK_ECONFIG},
    {.what = "no PEM key", .cert = PEM_SERVER_CERT, .key = PEM_NOT_PEM, .rc = TLSOCK_ECONFIG},
    {.what = "certificate as key",
     .cert = PEM_SERVER_CERT,
     .key = PEM_SERVER_CERT,
     .rc = TLSOCK_ECONFIG},
    {.what = "key of another certificate",
     .cert = PEM_SERVER_CERT,
     .key = PEM_CLIENT_KEY,
     .rc = TLSOCK_ECONFIG},
    {.what = "CA certificate with server key",
     .cert = PEM_CA_CERT,
     .key = PEM_SERVER_KEY,
     .rc = TLSOCK_ECONFIG},
};

static void test_set_cert_mem(void **state)
{
    struct tlsock_ctx *ctx = *state;

    for (size_t i = 0; i < sizeof(cert_cases) / sizeof(cert_cases[0]); i++) {
        const struct cert_case *c = &cert_cases[i];
        const char *cert = pem_text(c->cert);
        const char *key = pem_text(c->key);
        int rc = tlsock_ctx_set_cert_mem(ctx, cert, strlen(cert), key, strlen(key));

        if (rc != c->rc) {
            fail_msg("set_cert_mem(%s): expected %s, got %s (%s)", c->what, ts_rc_name(c->rc),
                     ts_rc_name(rc), tlsock_ctx_errmsg(ctx));
        }
        assert_int_equal(strlen(tlsock_ctx_errmsg(ctx)) > 0, rc != 0);
    }
}

/* A scratch directory for file-based setters, removed by the teardown. */
struct files {
    struct tlsock_ctx *ctx;
    char dir[64];
    char cert[128];
    char key[128];
    char garbage[128];
    char ca[128];
    char missing[128];
    char empty[128];
    char fifo[128];
    char big[128];
};

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    int rc = -1;

    if (f != NULL) {
        rc = fputs(text, f) >= 0 ? 0 : -1;
        if (fclose(f) != 0) {
            rc = -1;
        }
    }
    return rc;
}

/* A file one byte over the header's 1 MiB limit for certificate and key files. */
static int write_big_file(const char *path)
{
    FILE *f = fopen(path, "w");
    int rc = -1;

    if (f != NULL) {
        rc = 0;
        for (long i = 0; i < (1L << 20) + 1 && rc == 0; i++) {
            rc = fputc('#', f) == '#' ? 0 : -1;
        }
        if (fclose(f) != 0) {
            rc = -1;
        }
    }
    return rc;
}

static int files_setup(void **state)
{
    struct files *f = calloc(1, sizeof(*f));
    int rc = -1;

    if (f == NULL) {
        goto out;
    }
    *state = f;
    snprintf(f->dir, sizeof(f->dir), "/tmp/tlsock-test-XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        goto out;
    }
    snprintf(f->cert, sizeof(f->cert), "%s/cert.pem", f->dir);
    snprintf(f->key, sizeof(f->key), "%s/key.pem", f->dir);
    snprintf(f->garbage, sizeof(f->garbage), "%s/garbage.pem", f->dir);
    snprintf(f->ca, sizeof(f->ca), "%s/ca.pem", f->dir);
    snprintf(f->missing, sizeof(f->missing), "%s/does-not-exist.pem", f->dir);
    snprintf(f->empty, sizeof(f->empty), "%s/empty.pem", f->dir);
    snprintf(f->fifo, sizeof(f->fifo), "%s/fifo.pem", f->dir);
    snprintf(f->big, sizeof(f->big), "%s/big.pem", f->dir);
    if (write_file(f->cert, ts_pki.server.cert) != 0 ||
        write_file(f->key, ts_pki.server.key) != 0 || write_file(f->garbage, garbage_pem) != 0 ||
        write_file(f->ca, ts_pki.ca.cert) != 0 || write_file(f->empty, "") != 0 ||
        mkfifo(f->fifo, 0600) != 0 || write_big_file(f->big) != 0) {
        goto out;
    }
    rc = tlsock_ctx_new(TLSOCK_SERVER, &f->ctx) == 0 ? 0 : -1;
out:
    return rc;
}

static int files_teardown(void **state)
{
    struct files *f = *state;

    if (f != NULL) {
        tlsock_ctx_free(f->ctx);
        unlink(f->cert);
        unlink(f->key);
        unlink(f->garbage);
        unlink(f->ca);
        /* test_cert_files_not_pem's alarm, if an assertion left it armed. */
        alarm(0);
        unlink(f->empty);
        unlink(f->fifo);
        unlink(f->big);
        rmdir(f->dir);
        free(f);
    }
    return 0;
}

static void test_set_cert_file(void **state)
{
    struct files *f = *state;

    TS_ASSERT_RC_MSG(tlsock_ctx_set_cert_file(f->ctx, f->cert, f->key), 0,
                     tlsock_ctx_errmsg(f->ctx));
    /* The header: ESYS when a file cannot be read. */
    TS_ASSERT_RC(tlsock_ctx_set_cert_file(f->ctx, f->missing, f->key), TLSOCK_ESYS);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(f->ctx), "does-not-exist.pem");
    TS_ASSERT_RC(tlsock_ctx_set_cert_file(f->ctx, f->cert, f->missing), TLSOCK_ESYS);
    /* ECONFIG when a file holds no certificate or key. */
    TS_ASSERT_RC(tlsock_ctx_set_cert_file(f->ctx, f->garbage, f->key), TLSOCK_ECONFIG);
    TS_ASSERT_RC(tlsock_ctx_set_cert_file(f->ctx, f->cert, f->garbage), TLSOCK_ECONFIG);
    TS_ASSERT_RC(tlsock_ctx_set_cert_file(f->ctx, f->key, f->cert), TLSOCK_ECONFIG);
    TS_ASSERT_RC(tlsock_ctx_set_cert_file(f->ctx, NULL, f->key), TLSOCK_EINVAL);
}

/*
 * Files that are not certificates: empty, too large, or not regular files (a FIFO would block
 * the opening until a writer came, /dev/null is a device): TLSOCK_ECONFIG for the certificate
 * and key, TLSOCK_EX509_LOOKUP for a CA file (the header), each message naming the file and
 * saying what is wrong with it.
 */
static void test_cert_files_not_pem(void **state)
{
    struct files *f = *state;
    const struct {
        const char *cert;
        const char *key;
        const char *named; /* the file the message names */
        const char *why;
    } cases[] = {
        {.cert = f->empty, .key = f->key, .named = f->empty, .why = "certificate file"},
        {.cert = f->empty, .key = f->key, .named = f->empty, .why = "is empty"},
        {.cert = f->cert, .key = f->empty, .named = f->empty, .why = "key file"},
        {.cert = f->cert, .key = f->empty, .named = f->empty, .why = "is empty"},
        {.cert = f->fifo, .key = f->key, .named = f->fifo, .why = "is a FIFO, not a regular file"},
        {.cert = f->cert, .key = f->fifo, .named = f->fifo, .why = "is a FIFO, not a regular file"},
        {.cert = f->dir, .key = f->key, .named = f->dir, .why = "is a directory"},
        {.cert = f->cert, .key = "/dev/null", .named = "/dev/null", .why = "is a device"},
        {.cert = f->big, .key = f->key, .named = f->big, .why = "larger than 1048576 bytes"},
        /* What the implementation refuses is named too. */
        {.cert = f->garbage, .key = f->key, .named = f->garbage, .why = "certificate file"},
    };

    /* Without the non-blocking open a FIFO blocks forever: the alarm fails the test instead. */
    alarm(20);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        TS_ASSERT_RC_MSG(tlsock_ctx_set_cert_file(f->ctx, cases[i].cert, cases[i].key),
                         TLSOCK_ECONFIG, tlsock_ctx_errmsg(f->ctx));
        TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(f->ctx), cases[i].named);
        TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(f->ctx), cases[i].why);
        TS_ASSERT_CONTAINS(tlsock_errmsg(), cases[i].named);
    }
    TS_ASSERT_RC_MSG(tlsock_ctx_set_ca_file(f->ctx, f->empty), TLSOCK_EX509_LOOKUP,
                     tlsock_ctx_errmsg(f->ctx));
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(f->ctx), "CA file");
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(f->ctx), f->empty);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(f->ctx), "is empty");
    TS_ASSERT_RC_MSG(tlsock_ctx_set_ca_file(f->ctx, f->fifo), TLSOCK_EX509_LOOKUP,
                     tlsock_ctx_errmsg(f->ctx));
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(f->ctx), f->fifo);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(f->ctx), "is a FIFO, not a regular file");
    TS_ASSERT_RC_MSG(tlsock_ctx_set_ca_file(f->ctx, "/dev/null"), TLSOCK_EX509_LOOKUP,
                     tlsock_ctx_errmsg(f->ctx));
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(f->ctx), "is a device");
    TS_ASSERT_RC_MSG(tlsock_ctx_set_ca_file(f->ctx, f->garbage), TLSOCK_EX509_LOOKUP,
                     tlsock_ctx_errmsg(f->ctx));
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(f->ctx), f->garbage);
    alarm(0);
    /* None of that set anything: the context still has no certificate and takes a good one. */
    TS_ASSERT_RC_MSG(tlsock_ctx_set_cert_file(f->ctx, f->cert, f->key), 0,
                     tlsock_ctx_errmsg(f->ctx));
    TS_ASSERT_RC_MSG(tlsock_ctx_set_ca_file(f->ctx, f->ca), 0, tlsock_ctx_errmsg(f->ctx));
}

static void test_set_ca(void **state)
{
    struct files *f = *state;

    TS_ASSERT_RC_MSG(tlsock_ctx_set_ca_file(f->ctx, f->ca), 0, tlsock_ctx_errmsg(f->ctx));
    TS_ASSERT_RC_MSG(tlsock_ctx_set_ca_mem(f->ctx, ts_pki.ca.cert, strlen(ts_pki.ca.cert)), 0,
                     tlsock_ctx_errmsg(f->ctx));
    TS_ASSERT_RC_MSG(tlsock_ctx_set_ca_dir(f->ctx, f->dir), 0, tlsock_ctx_errmsg(f->ctx));
    TS_ASSERT_RC(tlsock_ctx_set_ca_file(f->ctx, NULL), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_set_ca_mem(f->ctx, NULL, 0), TLSOCK_EINVAL);
    /* Failures to load trust anchors must fail, whatever their code, and explain why. */
    assert_true(tlsock_ctx_set_ca_file(f->ctx, f->missing) < 0);
    assert_true(strlen(tlsock_ctx_errmsg(f->ctx)) > 0);
    assert_true(tlsock_ctx_set_ca_file(f->ctx, f->garbage) < 0);
    assert_true(tlsock_ctx_set_ca_mem(f->ctx, garbage_pem, strlen(garbage_pem)) < 0);
    assert_true(tlsock_ctx_set_ca_mem(f->ctx, not_pem, strlen(not_pem)) < 0);
}

/* The header: every CA setter returns EX509_LOOKUP when it cannot load a certificate. */
static void test_set_ca_codes(void **state)
{
    struct files *f = *state;

    TS_ASSERT_RC_MSG(tlsock_ctx_set_ca_file(f->ctx, f->missing), TLSOCK_EX509_LOOKUP,
                     tlsock_ctx_errmsg(f->ctx));
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(f->ctx), "does-not-exist.pem");
    TS_ASSERT_RC_MSG(tlsock_ctx_set_ca_file(f->ctx, f->garbage), TLSOCK_EX509_LOOKUP,
                     tlsock_ctx_errmsg(f->ctx));
    /* A private key is not a certificate. */
    TS_ASSERT_RC_MSG(tlsock_ctx_set_ca_file(f->ctx, f->key), TLSOCK_EX509_LOOKUP,
                     tlsock_ctx_errmsg(f->ctx));
    TS_ASSERT_RC_MSG(tlsock_ctx_set_ca_mem(f->ctx, garbage_pem, strlen(garbage_pem)),
                     TLSOCK_EX509_LOOKUP, tlsock_ctx_errmsg(f->ctx));
    TS_ASSERT_RC_MSG(tlsock_ctx_set_ca_mem(f->ctx, not_pem, strlen(not_pem)), TLSOCK_EX509_LOOKUP,
                     tlsock_ctx_errmsg(f->ctx));
    TS_ASSERT_RC_MSG(tlsock_ctx_set_ca_dir(f->ctx, f->missing), TLSOCK_EX509_LOOKUP,
                     tlsock_ctx_errmsg(f->ctx));
}

static void test_set_verify(void **state)
{
    static const struct {
        int role;
        int mode;
        int rc;
    } cases[] = {
        {.role = TLSOCK_CLIENT, .mode = TLSOCK_VERIFY_REQUIRED, .rc = 0},
        {.role = TLSOCK_CLIENT, .mode = TLSOCK_VERIFY_NONE, .rc = 0},
        /* "Servers only". */
        {.role = TLSOCK_CLIENT, .mode = TLSOCK_VERIFY_OPTIONAL, .rc = TLSOCK_EINVAL},
        {.role = TLSOCK_SERVER, .mode = TLSOCK_VERIFY_REQUIRED, .rc = 0},
        {.role = TLSOCK_SERVER, .mode = TLSOCK_VERIFY_OPTIONAL, .rc = 0},
        {.role = TLSOCK_SERVER, .mode = TLSOCK_VERIFY_NONE, .rc = 0},
        {.role = TLSOCK_SERVER, .mode = 0, .rc = TLSOCK_EINVAL},
        {.role = TLSOCK_CLIENT, .mode = 4, .rc = TLSOCK_EINVAL},
        {.role = TLSOCK_CLIENT, .mode = -1, .rc = TLSOCK_EINVAL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct tlsock_ctx *ctx = NULL;

        TS_ASSERT_RC(tlsock_ctx_new(cases[i].role, &ctx), 0);
        if (tlsock_ctx_set_verify(ctx, cases[i].mode) != cases[i].rc) {
            fail_msg("case %zu: set_verify(%d) on role %d should return %s", i, cases[i].mode,
                     cases[i].role, ts_rc_name(cases[i].rc));
        }
        tlsock_ctx_free(ctx);
    }
}

static void test_set_alpn(void **state)
{
    static char long_name[300];
    const struct string_case cases[] = {
        {.in = "h2,http/1.1", .rc = 0},
        {.in = "a", .rc = 0},
        {.in = "", .rc = 0},
        {.in = NULL, .rc = 0},
        {.in = "a,,b", .rc = TLSOCK_EINVAL},
        {.in = ",a", .rc = TLSOCK_EINVAL},
        {.in = ",", .rc = TLSOCK_EINVAL},
        /* RFC 7301: a protocol name is at most 255 bytes. */
        {.in = long_name, .rc = TLSOCK_EINVAL},
    };
    struct tlsock_ctx *ctx = *state;

    memset(long_name, 'x', 256);
    long_name[256] = '\0';
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = tlsock_ctx_set_alpn(ctx, cases[i].in);

        if (rc != cases[i].rc) {
            fail_msg("set_alpn(case %zu): expected %s, got %s (%s)", i, ts_rc_name(cases[i].rc),
                     ts_rc_name(rc), tlsock_ctx_errmsg(ctx));
        }
    }
    /* 255 bytes is still a valid name. */
    long_name[255] = '\0';
    TS_ASSERT_RC_MSG(tlsock_ctx_set_alpn(ctx, long_name), 0, tlsock_ctx_errmsg(ctx));
}

static void test_set_handshake_timeout(void **state)
{
    struct tlsock_ctx *ctx = *state;

    TS_ASSERT_RC(tlsock_ctx_set_handshake_timeout(ctx, TLSOCK_NO_TIMEOUT), 0);
    TS_ASSERT_RC(tlsock_ctx_set_handshake_timeout(ctx, 0), 0);
    TS_ASSERT_RC(tlsock_ctx_set_handshake_timeout(ctx, 1500), 0);
    TS_ASSERT_RC(tlsock_ctx_set_handshake_timeout(ctx, -1), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_set_handshake_timeout(ctx, -2), TLSOCK_EINVAL);
}

/* The message of a failed setter is replaced, not accumulated, and cleared by the next call. */
static void test_errmsg_cleared(void **state)
{
    struct tlsock_ctx *ctx = *state;

    TS_ASSERT_RC(tlsock_ctx_set_protocols(ctx, "9.9"), TLSOCK_EINVAL);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(ctx), "9.9");
    TS_ASSERT_RC(tlsock_ctx_set_alpn(ctx, "h2"), 0);
    assert_string_equal(tlsock_ctx_errmsg(ctx), "");
}

/*
 * A context freezes when it makes its first connection: attach one to a socketpair (no
 * handshake runs, so no network is needed) and every setter must refuse.
 */
static void test_frozen_after_connection(void **state)
{
    struct tlsock_ctx *ctx = NULL;
    struct tlsock_conn *conn = NULL;
    int sv[2] = {-1, -1};
    const char *cert = ts_pki.server.cert;
    const char *key = ts_pki.server.key;

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &ctx), 0);
    /* Before freezing, setters work. */
    TS_ASSERT_RC(tlsock_ctx_set_alpn(ctx, "a"), 0);
    TS_ASSERT_RC_MSG(tlsock_attach_fd(ctx, sv[0], NULL, &conn), 0, tlsock_errmsg());

    TS_ASSERT_RC(tlsock_ctx_set_protocols(ctx, "1.2-1.3"), TLSOCK_EINVAL);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(ctx), "frozen");
    TS_ASSERT_RC(tlsock_ctx_set_ciphers(ctx, "secure"), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_set_ca_mem(ctx, ts_pki.ca.cert, strlen(ts_pki.ca.cert)), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_set_ca_system(ctx), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_set_cert_mem(ctx, cert, strlen(cert), key, strlen(key)), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_set_verify(ctx, TLSOCK_VERIFY_NONE), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_set_alpn(ctx, "b"), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_set_handshake_timeout(ctx, 100), TLSOCK_EINVAL);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(ctx), "frozen");

    /* Still frozen after the connection is gone. */
    tlsock_close(conn);
    TS_ASSERT_RC(tlsock_ctx_set_alpn(ctx, "b"), TLSOCK_EINVAL);

    /* An attached fd stays the caller's: it is still open after tlsock_close(). */
    assert_int_equal(write(sv[0], "x", 1), 1);
    close(sv[0]);
    close(sv[1]);
    tlsock_ctx_free(ctx);
}

static void test_role_mismatch(void **state)
{
    struct tlsock_ctx *client = NULL;
    struct tlsock_ctx *server = NULL;
    struct tlsock_listener *lis = NULL;
    struct tlsock_conn *conn = NULL;

    (void)state;
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &client), 0);
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &server), 0);
    /* A client context cannot listen; a server context cannot connect. The port is never
     * contacted: the role is checked first (port 9 "discard" is not listening here anyway). */
    TS_ASSERT_RC(tlsock_listen(client, "127.0.0.1", 0, 0, &lis), TLSOCK_EINVAL);
    assert_null(lis);
    TS_ASSERT_RC(tlsock_connect(server, "127.0.0.1", 9, NULL, &conn), TLSOCK_EINVAL);
    assert_null(conn);
    tlsock_ctx_free(client);
    tlsock_ctx_free(server);
}

/* A server context with a certificate and a CA loaded: a few kilobytes of heap at least. */
static void loaded_ctx_new(struct tlsock_ctx **ctx)
{
    TS_ASSERT_RC(tlsock_ctx_new(TLSOCK_SERVER, ctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_cert_mem(*ctx, ts_pki.server.cert, strlen(ts_pki.server.cert),
                                         ts_pki.server.key, strlen(ts_pki.server.key)),
                 0);
    TS_ASSERT_RC(tlsock_ctx_set_ca_mem(*ctx, ts_pki.ca.cert, strlen(ts_pki.ca.cert)), 0);
}

/* The heap is back near @p base: less than half of what the context took is still in use. */
static bool freed(size_t base, size_t size)
{
    return ts_heap_in_use() < base + size / 2;
}

/*
 * The context lives while any reference does, and goes with the last: the heap it took stays in
 * use after every free but the last, and the last gives it back. Run once per implementation
 * (PER_IMPL).
 */
static void test_refcount(void **state)
{
    struct tlsock_ctx *ctx = NULL;
    struct tlsock_ctx *first = NULL;
    struct tlsock_conn *conn = NULL;
    size_t base;
    size_t size;

    (void)state;
    /* The implementation's one-time allocations (providers, tables) happen here, not below. */
    loaded_ctx_new(&ctx);
    tlsock_ctx_free(ctx);
    ctx = NULL;

    base = ts_heap_in_use();
    loaded_ctx_new(&ctx);
    assert_true(ts_heap_in_use() > base);
    size = ts_heap_in_use() - base;
    print_message("a %s context takes %zu bytes of heap\n", tlsock_impl_name(tlsock_ctx_impl(ctx)),
                  size);
    /* The meter works and sees the context. */
    assert_true(size >= 2048);

    assert_ptr_equal(tlsock_ctx_ref(ctx), ctx);
    assert_ptr_equal(tlsock_ctx_ref(ctx), ctx);
    tlsock_ctx_free(ctx);
    assert_false(freed(base, size));
    tlsock_ctx_free(ctx);
    assert_false(freed(base, size));
    /* One reference left: the context still works. */
    TS_ASSERT_RC(tlsock_ctx_set_alpn(ctx, "h2"), 0);
    tlsock_ctx_free(ctx);
    assert_true(freed(base, size));
    assert_null(tlsock_ctx_ref(NULL));

    /* A connection holds a reference of its own. The first one makes one-time allocations; its
     * context is freed last, so that nothing here depends on the count being right. */
    loaded_ctx_new(&first);
    TS_ASSERT_RC(tlsock_attach_mem(first, NULL, &conn), 0);
    TS_ASSERT_RC(tlsock_handshake(conn), TLSOCK_EWANT_READ);
    tlsock_close(conn);
    base = ts_heap_in_use();
    loaded_ctx_new(&ctx);
    TS_ASSERT_RC(tlsock_attach_mem(ctx, NULL, &conn), 0);
    tlsock_ctx_free(ctx);
    assert_false(freed(base, size));
    TS_ASSERT_RC(tlsock_handshake(conn), TLSOCK_EWANT_READ);
    tlsock_close(conn);
    assert_true(freed(base, size));
    tlsock_ctx_free(first);
}

/* Exit codes of the child of test_null_free_and_close: which message the NULL calls changed. */
enum {
    NULL_CALLS_OK = 0,
    NULL_CHANGED_THREAD_MSG = 10,
    NULL_CHANGED_CTX_MSG = 11,
    NULL_CHANGED_CONN_MSG = 12,
    NULL_CHANGED_LISTENER_MSG = 13,
};

/* The messages the NULL calls must leave alone. */
struct messages {
    char thread[TLSOCK__ERRMSG_SIZE];
    char ctx[TLSOCK__ERRMSG_SIZE];
    char conn[TLSOCK__ERRMSG_SIZE];
    char lis[TLSOCK__ERRMSG_SIZE];
};

/* Every public _free and _close that accepts NULL, then the messages compared with @p m. */
static int null_calls(struct tlsock_ctx *ctx, struct tlsock_conn *conn, struct tlsock_listener *lis,
                      const struct messages *m)
{
    int code = NULL_CALLS_OK;

    tlsock_ctx_free(NULL);
    tlsock_close(NULL);
    tlsock_listener_close(NULL);
    tlsock_free(NULL);
#if TLSOCK_TEST_HAVE_UV
    tlsock_uv_close(NULL);
#endif
    if (strcmp(tlsock_errmsg(), m->thread) != 0) {
        code = NULL_CHANGED_THREAD_MSG;
    } else if (strcmp(tlsock_ctx_errmsg(ctx), m->ctx) != 0) {
        code = NULL_CHANGED_CTX_MSG;
    } else if (strcmp(tlsock_conn_errmsg(conn), m->conn) != 0) {
        code = NULL_CHANGED_CONN_MSG;
    } else if (strcmp(tlsock_listener_errmsg(lis), m->lis) != 0) {
        code = NULL_CHANGED_LISTENER_MSG;
    }
    return code;
}

/*
 * The NULL calls run in a child process, so that one that crashes fails this test with its
 * signal instead of taking the executable down; the child exits 0 only if every message (the
 * thread's and each object's) is what it was before.
 */
static void test_null_free_and_close(void **state)
{
    struct tlsock_ctx *ctx = NULL;
    struct tlsock_ctx *bad = NULL;
    struct tlsock_conn *conn = NULL;
    struct tlsock_conn *none = NULL;
    struct tlsock_listener *lis = NULL;
    struct tlsock_opts opts = TLSOCK_OPTS_INIT;
    struct messages m;
    size_t n = 0;
    int status = -1;
    pid_t done = 0;
    pid_t pid;

    (void)state;
    /* A message on every object, and the thread's last one. */
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &ctx), 0);
    TS_ASSERT_RC(tlsock_listen(ctx, "127.0.0.1", 0, 0, &lis), 0);
    opts.connect_timeout_ms = 1;
    TS_ASSERT_RC(tlsock_accept(lis, &opts, &none), TLSOCK_ETIMEDOUT);
    TS_ASSERT_RC(tlsock_attach_mem(ctx, NULL, &conn), 0);
    TS_ASSERT_RC(tlsock_drain(conn, NULL, 1, &n), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_set_alpn(ctx, "h2"), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_new(42, &bad), TLSOCK_EINVAL);
    snprintf(m.thread, sizeof(m.thread), "%s", tlsock_errmsg());
    snprintf(m.ctx, sizeof(m.ctx), "%s", tlsock_ctx_errmsg(ctx));
    snprintf(m.conn, sizeof(m.conn), "%s", tlsock_conn_errmsg(conn));
    snprintf(m.lis, sizeof(m.lis), "%s", tlsock_listener_errmsg(lis));
    TS_ASSERT_CONTAINS(m.thread, "role");
    TS_ASSERT_CONTAINS(m.ctx, "frozen");
    assert_true(strlen(m.conn) > 0);
    assert_true(strlen(m.lis) > 0);

    pid = fork();
    if (pid == 0) {
        /* cmocka's handlers would catch a crash in the child and run the other tests there. */
        static const int crashes[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};

        for (size_t i = 0; i < sizeof(crashes) / sizeof(crashes[0]); i++) {
            signal(crashes[i], SIG_DFL);
        }
        _exit(null_calls(ctx, conn, lis, &m));
    }
    tlsock_close(conn);
    tlsock_listener_close(lis);
    tlsock_ctx_free(ctx);
    assert_true(pid > 0);
    /* Bounded: 1000 polls of 10 ms; a child still running then is killed and fails the test. */
    for (int i = 0; i < 1000 && done == 0; i++) {
        done = waitpid(pid, &status, WNOHANG);
        if (done == 0) {
            struct timespec ts = {.tv_sec = 0, .tv_nsec = 10000000L};

            (void)nanosleep(&ts, NULL);
        }
    }
    if (done == 0) {
        kill(pid, SIGKILL);
        (void)waitpid(pid, &status, 0);
        fail_msg("the NULL calls did not return");
    }
    assert_int_equal(done, pid);
    if (WIFSIGNALED(status)) {
        fail_msg("the NULL calls died of signal %d", WTERMSIG(status));
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), NULL_CALLS_OK);
}

/* CLOCK_MONOTONIC in milliseconds, read by the test itself. */
static int64_t monotonic_ms(void)
{
    struct timespec ts;

    assert_int_equal(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define SLEEP_MS 50

/* tlsock_now_ms() is CLOCK_MONOTONIC in milliseconds: bracketed by the test's own readings, and
 * it advances across a sleep as much as they do. */
static void test_misc(void **state)
{
    const char *version = tlsock_impl_version(TLSOCK_IMPL_DEFAULT);
    const struct timespec nap = {.tv_sec = 0, .tv_nsec = SLEEP_MS * 1000000L};
    int64_t before[3];
    int64_t after[3];
    int rc = -1;

    (void)state;
    assert_non_null(version);
    assert_true(strlen(version) > 0);

    before[0] = monotonic_ms();
    before[1] = tlsock_now_ms();
    before[2] = monotonic_ms();
    /* Bounded: a signal could cut the sleep short; it is never repeated more than 10 times. */
    for (int i = 0; i < 10 && rc != 0; i++) {
        rc = clock_nanosleep(CLOCK_MONOTONIC, 0, &nap, NULL);
    }
    assert_int_equal(rc, 0);
    after[0] = monotonic_ms();
    after[1] = tlsock_now_ms();
    after[2] = monotonic_ms();
    print_message("tlsock_now_ms %lld..%lld, CLOCK_MONOTONIC %lld..%lld ms\n", (long long)before[1],
                  (long long)after[1], (long long)before[0], (long long)after[2]);
    assert_true(before[0] <= before[1] && before[1] <= before[2]);
    assert_true(after[0] <= after[1] && after[1] <= after[2]);
    assert_true(after[1] - before[1] >= after[0] - before[2]);
    assert_true(after[1] - before[1] >= SLEEP_MS - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ctx_new_roles),
        cmocka_unit_test_setup_teardown(test_set_protocols, new_client, free_ctx),
        cmocka_unit_test_setup_teardown(test_set_ciphers, new_client, free_ctx),
        cmocka_unit_test_setup_teardown(test_set_cert_mem, new_server, free_ctx),
        cmocka_unit_test_setup_teardown(test_set_cert_file, files_setup, files_teardown),
        cmocka_unit_test_setup_teardown(test_cert_files_not_pem, files_setup, files_teardown),
        cmocka_unit_test_setup_teardown(test_set_ca, files_setup, files_teardown),
        cmocka_unit_test_setup_teardown(test_set_ca_codes, files_setup, files_teardown),
        cmocka_unit_test(test_set_verify),
        cmocka_unit_test_setup_teardown(test_set_alpn, new_client, free_ctx),
        cmocka_unit_test_setup_teardown(test_set_handshake_timeout, new_server, free_ctx),
        cmocka_unit_test_setup_teardown(test_errmsg_cleared, new_client, free_ctx),
        cmocka_unit_test(test_frozen_after_connection),
        cmocka_unit_test(test_role_mismatch),
        cmocka_unit_test(test_refcount),
        cmocka_unit_test(test_null_free_and_close),
        cmocka_unit_test(test_misc),
    };

    /* Cases without certificates run in a build that cannot make any; the others skip. */
    return cmocka_run_group_tests_name("ctx", tests, ts_pki_setup, ts_pki_teardown);
}
