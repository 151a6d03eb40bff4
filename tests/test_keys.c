/*
 * Protected keys, DER and PKCS#12 on the server's context (the matrix's server implementation),
 * checked by a handshake the client verifies over the in-memory pair. The key files are made from
 * ts_pki by the `openssl` command-line tool (not by the code under test) in a temporary
 * directory: PKCS#8 with AES-256 in PEM and DER, traditional "Proc-Type: 4,ENCRYPTED" EC and RSA
 * keys, DER certificates and keys, PKCS#12 bundles with and without a password, EC keys that
 * leave out their optional public key (as Java writes them). Failures must be
 * TLSOCK_ECONFIG with the files named, and a missing passphrase must never become a prompt on
 * the terminal.
 */
#include "pair.h"
#include "workdir.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PASS       "correct horse battery"
#define WRONG_PASS "not the passphrase"

static struct ts_workdir wd;
static struct tlsock__pem_pair rsa_leaf; /* an RSA-2048 server certificate for traditional RSA */

/* The path of @p name in the temporary directory, in a buffer of the enclosing block. */
#define PATH(name) TS_WORKDIR_PATH(&wd, (name))

/* Runs an `openssl` command in the temporary directory, bounded in time; 0 when it succeeded. */
static int run_openssl(const char *args)
{
    if (ts_workdir_sh(&wd, "timeout 60 openssl %s >/dev/null 2>openssl.err", args) != 0) {
        (void)ts_workdir_sh(&wd, "cat openssl.err >&2");
        return -1;
    }
    return 0;
}

/* Keeps the first half of @p from as @p to: a truncated DER file. */
static int truncate_copy(const char *from, const char *to)
{
    unsigned char *data = NULL;
    size_t len = 0;
    int rc = ts_workdir_read(&wd, from, &data, &len) == 0 ? ts_workdir_write(&wd, to, data, len / 2)
                                                          : -1;

    free(data);
    return rc;
}

static int make_files(void **state)
{
    static const struct tlsock__cert_spec rsa_spec_base = {
        .common_name = TS_SERVER_CN,
        .hosts = TS_SERVER_HOSTS,
        .key_type = "rsa-2048",
        .not_before_s = -3600,
        .not_after_s = 30 * 86400,
        .eku = TLSOCK__EKU_SERVER,
    };
    struct tlsock__cert_spec rsa_spec = rsa_spec_base;
    int rc = ts_pki_setup(state);

    if (rc != 0) {
        return -1;
    }
    /* The openssl tool makes the key files: without it the test fails, it does not skip. */
    if (ts_require_tool("openssl") != 0) {
        return -1;
    }
    rsa_spec.issuer_cert_pem = ts_pki.ca.cert;
    rsa_spec.issuer_key_pem = ts_pki.ca.key;
    if (ts_cert_make(&rsa_spec, &rsa_leaf) != 0) {
        return -1;
    }
    if (ts_workdir_make(&wd, "keys") != 0) {
        return -1;
    }
    const struct {
        const char *name;
        const char *text;
    } pems[] = {
        {"cert.pem", ts_pki.server.cert}, {"key.pem", ts_pki.server.key},
        {"ca.pem", ts_pki.ca.cert},       {"client_key.pem", ts_pki.client.key},
        {"rsa.pem", rsa_leaf.cert},       {"rsa_key.pem", rsa_leaf.key},
    };
    for (size_t i = 0; i < sizeof(pems) / sizeof(pems[0]); i++) {
        if (ts_workdir_write(&wd, pems[i].name, pems[i].text, strlen(pems[i].text)) != 0) {
            return -1;
        }
    }
    static const char *const commands[] = {
        "pkcs8 -topk8 -in key.pem -v2 aes-256-cbc -passout pass:'" PASS "' -out key8.pem",
        "pkcs8 -topk8 -in key.pem -v2 aes-256-cbc -passout pass:'" PASS "' -outform DER "
        "-out key8.der",
        "ec -in key.pem -aes256 -passout pass:'" PASS "' -out key_trad.pem",
        "rsa -in rsa_key.pem -aes256 -traditional -passout pass:'" PASS "' -out rsa_trad.pem",
        "x509 -in cert.pem -outform DER -out cert.der",
        "pkey -in key.pem -outform DER -out key.der",
        /* RFC 5915 makes the public key optional; Java leaves it out of every EC key. */
        "ec -in key.pem -no_public -out key_nopub.pem",
        "pkcs8 -topk8 -nocrypt -in key_nopub.pem -out key8_nopub.pem",
        "pkcs8 -topk8 -nocrypt -in key_nopub.pem -outform DER -out key8_nopub.der",
        "ec -in client_key.pem -no_public -out client_key_nopub.pem",
        "pkcs12 -export -in cert.pem -inkey key.pem -certfile ca.pem -passout pass:'" PASS "' "
        "-keypbe AES-256-CBC -certpbe AES-256-CBC -macalg sha256 -out bundle.p12",
        "pkcs12 -export -in cert.pem -inkey key.pem -passout pass: -keypbe AES-256-CBC "
        "-certpbe AES-256-CBC -macalg sha256 -out nopass.p12",
        /* Without a MAC: only the bags' encryption tells the password. */
        "pkcs12 -export -nomac -in cert.pem -inkey key.pem -passout pass:'" PASS "' "
        "-keypbe AES-256-CBC -certpbe AES-256-CBC -out nomac.p12",
        "pkcs12 -export -nomac -in cert.pem -inkey key.pem -passout pass: -keypbe NONE "
        "-certpbe NONE -out nomac_nopass.p12",
    };
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (run_openssl(commands[i]) != 0) {
            return -1;
        }
    }
    if (truncate_copy("cert.der", "cert_cut.der") != 0 ||
        truncate_copy("key.der", "key_cut.der") != 0) {
        return -1;
    }
    return 0;
}

static int remove_files(void **state)
{
    (void)ts_workdir_remove(&wd);
    tlsock__pem_pair_free(&rsa_leaf);
    return ts_pki_teardown(state);
}

/* ---- the passphrase callback ----------------------------------------------------------------- */

struct pass_cb {
    const char *give; /* the passphrase it gives */
    int refuse;       /* non-zero: returned instead */
    int calls;
};

static int give_pass(char *buf, size_t size, size_t *len, void *user)
{
    struct pass_cb *cb = user;

    cb->calls++;
    if (cb->refuse != 0) {
        return cb->refuse;
    }
    if (size < TLSOCK_PASSPHRASE_MAX || strlen(cb->give) > size) {
        return -100; /* the header promises TLSOCK_PASSPHRASE_MAX bytes */
    }
    memcpy(buf, cb->give, strlen(cb->give));
    *len = strlen(cb->give);
    return 0;
}

/* ---- loading -----------------------------------------------------------------------------------
 */

enum source {
    FILES,     /* tlsock_ctx_set_cert_file(cert, key) */
    MEMORY,    /* tlsock_ctx_set_cert_mem() with the files' bytes */
    P12_FILE,  /* tlsock_ctx_set_pkcs12_file(cert) */
    P12_MEMORY /* tlsock_ctx_set_pkcs12_mem() with the file's bytes */
};

enum pass_mode {
    PASS_NONE,
    PASS_STRING, /* tlsock_ctx_set_key_passphrase(pass) */
    PASS_CB,     /* tlsock_ctx_set_key_passphrase_cb() giving pass */
    PASS_REFUSE, /* a callback returning -7 */
};

struct key_case {
    const char *what;
    enum source source;
    const char *cert; /* file names in the temporary directory */
    const char *key;
    enum pass_mode pass_mode;
    const char *pass;
    int calls; /* the callback's expected calls */
    int rc;
    /* Substrings of the message; "@cert" and "@key" stand for the files' paths. */
    const char *messages[3];
};

static const struct key_case load_cases[] = {
    {.what = "PKCS#8 AES-256 PEM, passphrase string",
     .cert = "cert.pem",
     .key = "key8.pem",
     .pass_mode = PASS_STRING,
     .pass = PASS},
    {.what = "PKCS#8 AES-256 PEM, callback",
     .cert = "cert.pem",
     .key = "key8.pem",
     .pass_mode = PASS_CB,
     .pass = PASS,
     .calls = 1},
    {.what = "traditional encrypted EC PEM, passphrase string",
     .cert = "cert.pem",
     .key = "key_trad.pem",
     .pass_mode = PASS_STRING,
     .pass = PASS},
    {.what = "traditional encrypted RSA PEM, callback",
     .cert = "rsa.pem",
     .key = "rsa_trad.pem",
     .pass_mode = PASS_CB,
     .pass = PASS,
     .calls = 1},
    {.what = "encrypted PEM in memory, passphrase string",
     .source = MEMORY,
     .cert = "cert.pem",
     .key = "key8.pem",
     .pass_mode = PASS_STRING,
     .pass = PASS},
    {.what = "unencrypted key: the callback is not called",
     .cert = "cert.pem",
     .key = "key.pem",
     .pass_mode = PASS_CB,
     .pass = PASS,
     .calls = 0},
    {.what = "DER certificate and DER key", .cert = "cert.der", .key = "key.der"},
    {.what = "DER certificate and DER key in memory",
     .source = MEMORY,
     .cert = "cert.der",
     .key = "key.der"},
    {.what = "EC key without its public key, SEC1 PEM", .cert = "cert.pem", .key = "key_nopub.pem"},
    {.what = "EC key without its public key, PKCS#8 PEM (as Java writes it)",
     .cert = "cert.pem",
     .key = "key8_nopub.pem"},
    {.what = "EC key without its public key, PKCS#8 DER in memory",
     .source = MEMORY,
     .cert = "cert.der",
     .key = "key8_nopub.der"},
    {.what = "DER certificate, encrypted PKCS#8 DER key, callback",
     .cert = "cert.der",
     .key = "key8.der",
     .pass_mode = PASS_CB,
     .pass = PASS,
     .calls = 1},
    {.what = "PKCS#12 file, passphrase string",
     .source = P12_FILE,
     .cert = "bundle.p12",
     .pass_mode = PASS_STRING,
     .pass = PASS},
    {.what = "PKCS#12 in memory, callback",
     .source = P12_MEMORY,
     .cert = "bundle.p12",
     .pass_mode = PASS_CB,
     .pass = PASS,
     .calls = 1},
    {.what = "PKCS#12 without a password, no passphrase: the callback is not called",
     .source = P12_FILE,
     .cert = "nopass.p12",
     .pass_mode = PASS_CB,
     .pass = WRONG_PASS,
     .calls = 0},
    {.what = "PKCS#12 without a MAC or a password: the callback is not called",
     .source = P12_MEMORY,
     .cert = "nomac_nopass.p12",
     .pass_mode = PASS_CB,
     .pass = WRONG_PASS,
     .calls = 0},
};

static const struct key_case fail_cases[] = {
    {.what = "PKCS#8 PEM, wrong passphrase",
     .cert = "cert.pem",
     .key = "key8.pem",
     .pass_mode = PASS_STRING,
     .pass = WRONG_PASS,
     .rc = TLSOCK_ECONFIG,
     .messages = {"key file @key", "wrong passphrase"}},
    {.what = "traditional PEM, wrong passphrase from the callback",
     .cert = "cert.pem",
     .key = "key_trad.pem",
     .pass_mode = PASS_CB,
     .pass = WRONG_PASS,
     .calls = 1,
     .rc = TLSOCK_ECONFIG,
     .messages = {"key file @key", "wrong passphrase"}},
    {.what = "encrypted DER, wrong passphrase",
     .cert = "cert.der",
     .key = "key8.der",
     .pass_mode = PASS_STRING,
     .pass = WRONG_PASS,
     .rc = TLSOCK_ECONFIG,
     .messages = {"key file @key", "wrong passphrase"}},
    {.what = "PKCS#8 PEM, no passphrase",
     .cert = "cert.pem",
     .key = "key8.pem",
     .rc = TLSOCK_ECONFIG,
     .messages = {"key file @key", "no passphrase was set"}},
    {.what = "traditional RSA PEM, no passphrase",
     .cert = "rsa.pem",
     .key = "rsa_trad.pem",
     .rc = TLSOCK_ECONFIG,
     .messages = {"key file @key", "no passphrase was set"}},
    {.what = "the callback refuses",
     .cert = "cert.pem",
     .key = "key8.pem",
     .pass_mode = PASS_REFUSE,
     .calls = 1,
     .rc = TLSOCK_ECONFIG,
     .messages = {"key file @key", "passphrase callback refused (-7)"}},
    {.what = "encrypted key in memory, wrong passphrase",
     .source = MEMORY,
     .cert = "cert.pem",
     .key = "key8.pem",
     .pass_mode = PASS_STRING,
     .pass = WRONG_PASS,
     .rc = TLSOCK_ECONFIG,
     .messages = {"key in memory", "wrong passphrase"}},
    {.what = "truncated DER certificate",
     .cert = "cert_cut.der",
     .key = "key.der",
     .rc = TLSOCK_ECONFIG,
     .messages = {"certificate file @cert", "holds no certificate"}},
    {.what = "truncated DER key",
     .cert = "cert.der",
     .key = "key_cut.der",
     .rc = TLSOCK_ECONFIG,
     .messages = {"key file @key", "holds no private key"}},
    {.what = "PKCS#12 file, wrong passphrase",
     .source = P12_FILE,
     .cert = "bundle.p12",
     .pass_mode = PASS_STRING,
     .pass = WRONG_PASS,
     .rc = TLSOCK_ECONFIG,
     .messages = {"PKCS#12 file @cert", "wrong passphrase"}},
    {.what = "PKCS#12 file, no passphrase",
     .source = P12_FILE,
     .cert = "bundle.p12",
     .rc = TLSOCK_ECONFIG,
     .messages = {"PKCS#12 file @cert", "no passphrase was set"}},
    {.what = "PKCS#12 encrypted without a MAC: refused before any passphrase is asked for",
     .source = P12_FILE,
     .cert = "nomac.p12",
     .pass_mode = PASS_CB,
     .pass = PASS,
     .calls = 0,
     .rc = TLSOCK_ECONFIG,
     .messages = {"PKCS#12 file @cert", "has no MAC"}},
    {.what = "PKCS#12 in memory, the callback gives a wrong passphrase",
     .source = P12_MEMORY,
     .cert = "bundle.p12",
     .pass_mode = PASS_CB,
     .pass = WRONG_PASS,
     .calls = 1,
     .rc = TLSOCK_ECONFIG,
     .messages = {"PKCS#12 bundle in memory", "wrong passphrase"}},
    {.what = "a PEM file given as PKCS#12",
     .source = P12_FILE,
     .cert = "cert.pem",
     .rc = TLSOCK_ECONFIG,
     .messages = {"PKCS#12 file @cert", "not a PKCS#12 bundle"}},
    {.what = "key and certificate that do not match, files",
     .cert = "cert.pem",
     .key = "client_key.pem",
     .rc = TLSOCK_ECONFIG,
     .messages = {"certificate file @cert", "key file @key", "does not match the certificate"}},
    {.what = "key and certificate that do not match, DER and encrypted PEM",
     .cert = "rsa.pem",
     .key = "key8.pem",
     .pass_mode = PASS_STRING,
     .pass = PASS,
     .rc = TLSOCK_ECONFIG,
     .messages = {"certificate file @cert", "key file @key", "does not match the certificate"}},
    {.what = "EC key without its public key, of another certificate",
     .cert = "cert.pem",
     .key = "client_key_nopub.pem",
     .rc = TLSOCK_ECONFIG,
     .messages = {"key file @key", "does not match the certificate"}},
    {.what = "key and certificate that do not match, in memory",
     .source = MEMORY,
     .cert = "cert.der",
     .key = "client_key.pem",
     .rc = TLSOCK_ECONFIG,
     .messages = {"certificate and key in memory", "does not match the certificate"}},
};

/* Sets @p c's passphrase on @p ctx. */
static void set_pass(struct tlsock_ctx *ctx, const struct key_case *c, struct pass_cb *cb)
{
    cb->give = c->pass;
    cb->refuse = c->pass_mode == PASS_REFUSE ? -7 : 0;
    switch (c->pass_mode) {
    case PASS_NONE:
        break;
    case PASS_STRING:
        TS_ASSERT_RC(tlsock_ctx_set_key_passphrase(ctx, c->pass), 0);
        break;
    case PASS_CB:
    case PASS_REFUSE:
        TS_ASSERT_RC(tlsock_ctx_set_key_passphrase_cb(ctx, give_pass, cb), 0);
        break;
    }
}

/* Loads @p c's certificate and key into @p ctx as the case says; returns the setter's code. */
static int load(struct tlsock_ctx *ctx, const struct key_case *c)
{
    char cert_path[128];
    char key_path[128];
    unsigned char *cert = NULL;
    unsigned char *key = NULL;
    size_t cert_len = 0;
    size_t key_len = 0;
    int rc = 0;

    ts_workdir_path(&wd, c->cert, cert_path, sizeof(cert_path));
    if (c->key != NULL) {
        ts_workdir_path(&wd, c->key, key_path, sizeof(key_path));
    }
    switch (c->source) {
    case FILES:
        rc = tlsock_ctx_set_cert_file(ctx, cert_path, key_path);
        break;
    case MEMORY:
        assert_int_equal(ts_workdir_read(&wd, c->cert, &cert, &cert_len), 0);
        assert_int_equal(ts_workdir_read(&wd, c->key, &key, &key_len), 0);
        /* PEM or DER bytes, as read. */
        rc = tlsock_ctx_set_cert_mem(ctx, (const char *)cert, cert_len, (const char *)key, key_len);
        break;
    case P12_FILE:
        rc = tlsock_ctx_set_pkcs12_file(ctx, cert_path);
        break;
    case P12_MEMORY:
        assert_int_equal(ts_workdir_read(&wd, c->cert, &cert, &cert_len), 0);
        rc = tlsock_ctx_set_pkcs12_mem(ctx, cert, cert_len);
        break;
    }
    free(cert);
    free(key);
    return rc;
}

/* Checks that @p msg holds each of @p c's messages, "@cert" and "@key" made paths. */
static void check_message(const struct key_case *c, const char *msg)
{
    for (size_t i = 0; i < sizeof(c->messages) / sizeof(c->messages[0]); i++) {
        const char *m = c->messages[i];
        char want[256];
        const char *at = m != NULL ? strchr(m, '@') : NULL;

        if (m == NULL) {
            continue;
        }
        if (at != NULL) {
            const char *name = strncmp(at, "@cert", 5) == 0 ? c->cert : c->key;
            snprintf(want, sizeof(want), "%.*s%s/%s", (int)(at - m), m, wd.path, name);
        } else {
            snprintf(want, sizeof(want), "%s", m);
        }
        TS_ASSERT_CONTAINS(msg, want);
    }
}

/* The other implementation than @p impl, or -1 when this build has only one. */
static int other_impl(int impl)
{
    int other = impl == TLSOCK_IMPL_OPENSSL ? TLSOCK_IMPL_GNUTLS : TLSOCK_IMPL_OPENSSL;
    struct tlsock_ctx *probe = NULL;
    int rc = tlsock_ctx_new(TLSOCK_SERVER, &probe);

    rc = rc == 0 ? tlsock_ctx_set_impl(probe, other) : rc;
    tlsock_ctx_free(probe);
    return rc == 0 ? other : -1;
}

static void test_load_and_handshake(void **state)
{
    for (size_t i = 0; i < sizeof(load_cases) / sizeof(load_cases[0]); i++) {
        const struct key_case *c = &load_cases[i];
        const struct tlsock_info *info = NULL;
        struct pass_cb cb = {0};
        struct ts_pair *p;
        int impl;
        int other;

        print_message("%s\n", c->what);
        ts_pair_renew(state, i);
        p = *state;
        TS_ASSERT_RC(ts_ctx_new(TLSOCK_SERVER, &p->sctx), 0);
        set_pass(p->sctx, c, &cb);
        TS_ASSERT_RC_MSG(load(p->sctx, c), 0, tlsock_ctx_errmsg(p->sctx));
        assert_int_equal(cb.calls, c->calls);
        /* A change of implementation loads the key again without asking again. */
        impl = tlsock_ctx_impl(p->sctx);
        other = other_impl(impl);
        if (other >= 0) {
            TS_ASSERT_RC_MSG(tlsock_ctx_set_impl(p->sctx, other), 0, tlsock_ctx_errmsg(p->sctx));
            TS_ASSERT_RC_MSG(tlsock_ctx_set_impl(p->sctx, impl), 0, tlsock_ctx_errmsg(p->sctx));
            assert_int_equal(tlsock_ctx_impl(p->sctx), impl);
            assert_int_equal(cb.calls, c->calls);
        }
        TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &p->cctx), 0);
        TS_ASSERT_RC(ts_pair_attach(p, NULL, NULL), 0);
        TS_ASSERT_RC_MSG(ts_pair_handshake(p), 0,
                         p->client_rc != 0 ? p->client_msg : p->server_msg);
        TS_ASSERT_RC(tlsock_conn_info(p->client, &info), 0);
        assert_int_equal(info->verify_result, 0);
        TS_ASSERT_CONTAINS(info->peer_subject, TS_SERVER_CN);
        TS_ASSERT_RC(ts_pair_transfer(p, TS_S2C, 1000, 7), 0);
    }
}

/* What a client's verify callback saw: the number of certificates the server sent. */
static int count_peer_chain(const struct tlsock_verify_info *info, void *user, char *reason,
                            size_t reason_size)
{
    (void)reason;
    (void)reason_size;
    *(size_t *)user = info->peer_chain_len;
    return 0;
}

/*
 * A PKCS#12 bundle that holds its root CA besides the leaf (bundle.p12, made with -certfile):
 * every implementation sends the leaf and its issuers without the self-signed root, so a server
 * sends the same chain whichever implementation loaded the bundle.
 */
static void test_pkcs12_chain(void **state)
{
    struct ts_pair *p = *state;
    size_t sent = 0;

    TS_ASSERT_RC(ts_ctx_new(TLSOCK_SERVER, &p->sctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_key_passphrase(p->sctx, PASS), 0);
    TS_ASSERT_RC_MSG(tlsock_ctx_set_pkcs12_file(p->sctx, PATH("bundle.p12")), 0,
                     tlsock_ctx_errmsg(p->sctx));
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &p->cctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_verify_callback(p->cctx, count_peer_chain, &sent), 0);
    TS_ASSERT_RC(ts_pair_attach(p, NULL, NULL), 0);
    TS_ASSERT_RC_MSG(ts_pair_handshake(p), 0, p->client_rc != 0 ? p->client_msg : p->server_msg);
    assert_int_equal(sent, 1);
}

static void test_load_failures(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(fail_cases) / sizeof(fail_cases[0]); i++) {
        const struct key_case *c = &fail_cases[i];
        struct tlsock_ctx *ctx = NULL;
        struct pass_cb cb = {0};

        print_message("%s\n", c->what);
        TS_ASSERT_RC(ts_ctx_new(TLSOCK_SERVER, &ctx), 0);
        set_pass(ctx, c, &cb);
        TS_ASSERT_RC_MSG(load(ctx, c), c->rc, tlsock_ctx_errmsg(ctx));
        print_message("  %s\n", tlsock_ctx_errmsg(ctx));
        check_message(c, tlsock_ctx_errmsg(ctx));
        assert_int_equal(cb.calls, c->calls);
        tlsock_ctx_free(ctx);
    }
}

/* A passphrase set, then cleared with NULL: the key is encrypted and none was set. */
static void test_passphrase_cleared(void **state)
{
    struct tlsock_ctx *ctx = NULL;
    struct pass_cb cb = {.give = PASS};

    (void)state;
    TS_ASSERT_RC(ts_ctx_new(TLSOCK_SERVER, &ctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_key_passphrase_cb(ctx, give_pass, &cb), 0);
    TS_ASSERT_RC(tlsock_ctx_set_key_passphrase(ctx, NULL), 0);
    TS_ASSERT_RC(tlsock_ctx_set_cert_file(ctx, PATH("cert.pem"), PATH("key8.pem")), TLSOCK_ECONFIG);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(ctx), "no passphrase was set");
    assert_int_equal(cb.calls, 0);
    /* The string replaces the callback. */
    TS_ASSERT_RC(tlsock_ctx_set_key_passphrase_cb(ctx, give_pass, &cb), 0);
    TS_ASSERT_RC(tlsock_ctx_set_key_passphrase(ctx, PASS), 0);
    TS_ASSERT_RC_MSG(tlsock_ctx_set_cert_file(ctx, PATH("cert.pem"), PATH("key8.pem")), 0,
                     tlsock_ctx_errmsg(ctx));
    assert_int_equal(cb.calls, 0);
    tlsock_ctx_free(ctx);
}

/* ---- no prompt on the terminal --------------------------------------------------------------- */

/*
 * In a child that is a session leader with a pseudo-terminal as its controlling terminal (and as
 * stdin, stdout, stderr), loads an encrypted key without a passphrase. A library that prompted
 * would write to the terminal and wait for a line; tlsock must return TLSOCK_ECONFIG at once and
 * leave the terminal untouched. @p key is the key file, @p p12 a PKCS#12 file instead.
 */
static void check_no_prompt(const char *cert, const char *key, bool p12)
{
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    int result[2];
    char out[512];
    size_t got = 0;
    int status = 0;
    pid_t pid;
    int child_rc = 0;
    char child_msg[TLSOCK__ERRMSG_SIZE] = "";

    assert_true(master >= 0);
    assert_int_equal(grantpt(master), 0);
    assert_int_equal(unlockpt(master), 0);
    const char *slave_name = ptsname(master);
    assert_non_null(slave_name);
    assert_int_equal(pipe(result), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct tlsock_ctx *ctx = NULL;
        int rc;

        close(result[0]);
        close(master);
        /* A new session; opening the terminal makes it the controlling one (/dev/tty). */
        if (setsid() < 0) {
            _exit(10);
        }
        int tty = open(slave_name, O_RDWR);
        if (tty < 0 || dup2(tty, 0) < 0 || dup2(tty, 1) < 0 || dup2(tty, 2) < 0) {
            _exit(11);
        }
        rc = ts_ctx_new(TLSOCK_SERVER, &ctx);
        if (rc == 0) {
            rc = p12 ? tlsock_ctx_set_pkcs12_file(ctx, cert)
                     : tlsock_ctx_set_cert_file(ctx, cert, key);
        }
        if (write(result[1], &rc, sizeof(rc)) != sizeof(rc) ||
            write(result[1], tlsock_ctx_errmsg(ctx), strlen(tlsock_ctx_errmsg(ctx)) + 1) < 0) {
            _exit(12);
        }
        tlsock_ctx_free(ctx);
        _exit(0);
    }
    close(result[1]);
    /*
     * Bounded: 1000 rounds of at least 10 ms for the child to finish; all the while, whatever
     * reaches the terminal. (The master reports a hang-up at once while no one has the terminal
     * open, hence the sleep.)
     */
    for (int round = 0; round < 1000; round++) {
        struct pollfd pfd = {.fd = master, .events = POLLIN};
        if (poll(&pfd, 1, 10) > 0 && (pfd.revents & POLLIN) != 0 && got < sizeof(out) - 1) {
            ssize_t n = read(master, out + got, sizeof(out) - 1 - got);
            got += n > 0 ? (size_t)n : 0;
        } else {
            (void)nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
        }
        if (waitpid(pid, &status, WNOHANG) == pid) {
            pid = -1;
            break;
        }
    }
    if (pid > 0) {
        kill(pid, SIGKILL);
        (void)waitpid(pid, &status, 0);
    }
    out[got] = '\0';
    if (read(result[0], &child_rc, sizeof(child_rc)) != sizeof(child_rc)) {
        child_rc = TS_NOT_RUN;
    }
    ssize_t n = read(result[0], child_msg, sizeof(child_msg) - 1);
    child_msg[n > 0 ? n : 0] = '\0';
    close(result[0]);
    close(master);
    print_message("  %s; terminal: \"%s\"\n", child_msg, out);
    assert_true(pid < 0); /* it finished: it did not wait for a passphrase */
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(got, 0); /* nothing was written to the terminal */
    TS_ASSERT_RC_MSG(child_rc, TLSOCK_ECONFIG, child_msg);
    TS_ASSERT_CONTAINS(child_msg, "no passphrase was set");
}

static void test_no_terminal_prompt(void **state)
{
    (void)state;
    print_message("PKCS#8 PEM\n");
    check_no_prompt(PATH("cert.pem"), PATH("key8.pem"), false);
    print_message("traditional PEM\n");
    check_no_prompt(PATH("rsa.pem"), PATH("rsa_trad.pem"), false);
    print_message("PKCS#8 DER\n");
    check_no_prompt(PATH("cert.der"), PATH("key8.der"), false);
    print_message("PKCS#12\n");
    check_no_prompt(PATH("bundle.p12"), NULL, true);
}

/* Setters that take a passphrase refuse bad arguments and a frozen context. */
static void test_passphrase_arguments(void **state)
{
    char long_pass[TLSOCK_PASSPHRASE_MAX + 2];
    struct ts_pair *p = *state;

    memset(long_pass, 'x', sizeof(long_pass) - 1);
    long_pass[sizeof(long_pass) - 1] = '\0';
    TS_ASSERT_RC(ts_ctx_new(TLSOCK_SERVER, &p->sctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_key_passphrase(p->sctx, long_pass), TLSOCK_EINVAL);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(p->sctx), "longer than 1024 bytes");
    long_pass[TLSOCK_PASSPHRASE_MAX] = '\0';
    TS_ASSERT_RC(tlsock_ctx_set_key_passphrase(p->sctx, long_pass), 0);
    TS_ASSERT_RC(tlsock_ctx_set_pkcs12_mem(p->sctx, NULL, 0), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_set_pkcs12_file(p->sctx, NULL), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_set_key_passphrase(p->sctx, PASS), 0);
    TS_ASSERT_RC(tlsock_ctx_set_pkcs12_file(p->sctx, PATH("bundle.p12")), 0);
    TS_ASSERT_RC(ts_pair_open(p), 0);
    TS_ASSERT_RC(ts_pair_handshake(p), 0);
    /* Frozen by its connection. */
    TS_ASSERT_RC(tlsock_ctx_set_key_passphrase(p->sctx, PASS), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_set_key_passphrase_cb(p->sctx, give_pass, NULL), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_set_pkcs12_file(p->sctx, PATH("bundle.p12")), TLSOCK_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_load_and_handshake, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_pkcs12_chain, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test(test_load_failures),
        cmocka_unit_test(test_passphrase_cleared),
        cmocka_unit_test(test_no_terminal_prompt),
        cmocka_unit_test_setup_teardown(test_passphrase_arguments, ts_pair_setup, ts_pair_teardown),
    };

    return cmocka_run_group_tests(tests, make_files, remove_files);
}
