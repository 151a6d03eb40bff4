/*
 * Implementation selection: what is compiled in, names, versions and capabilities; choosing per
 * context, per process and by the TLSOCK_IMPL environment variable; native handles and the
 * configure callbacks that receive them; options an implementation cannot honour.
 *
 * TLSOCK_TEST_HAVE_OPENSSL and TLSOCK_TEST_HAVE_GNUTLS come from CMake and say what the library
 * was built with, so every expectation below is known before the library is asked.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#if TLSOCK_TEST_HAVE_OPENSSL
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#endif
#if TLSOCK_TEST_HAVE_GNUTLS
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#endif

/* An enum tlsock_impl value no implementation has. */
#define BOGUS_IMPL 99

/* The flag that makes this executable print its default implementation and exit. */
#define CHILD_FLAG "--print-default-impl"

/*
 * This test binary's own path (argv[0]), to run it again as a child. Not /proc/self/exe: under
 * valgrind that is valgrind's tool, not the test.
 */
static const char *self_path;

/* The implementations compiled in, as CMake says. */
static const int compiled_in[] = {
#if TLSOCK_TEST_HAVE_OPENSSL
    TLSOCK_IMPL_OPENSSL,
#endif
#if TLSOCK_TEST_HAVE_GNUTLS
    TLSOCK_IMPL_GNUTLS,
#endif
};
#define N_COMPILED_IN (sizeof(compiled_in) / sizeof(compiled_in[0]))

/* The default when nothing chooses: OpenSSL when compiled in (the header's promise). */
#if TLSOCK_TEST_HAVE_OPENSSL
#define FIRST_IMPL TLSOCK_IMPL_OPENSSL
#else
#define FIRST_IMPL TLSOCK_IMPL_GNUTLS
#endif

/* ---- what is compiled in --------------------------------------------------------------------- */

static void test_available(void **state)
{
    (void)state;
    assert_int_equal(tlsock_impl_available(TLSOCK_IMPL_OPENSSL), TLSOCK_TEST_HAVE_OPENSSL);
    assert_int_equal(tlsock_impl_available(TLSOCK_IMPL_GNUTLS), TLSOCK_TEST_HAVE_GNUTLS);
    /* The default always names a compiled-in implementation. */
    assert_true(tlsock_impl_available(TLSOCK_IMPL_DEFAULT));
    assert_false(tlsock_impl_available(BOGUS_IMPL));
    assert_false(tlsock_impl_available(-1));
}

static void test_names(void **state)
{
    (void)state;
    /* Names are known whether or not the implementation was compiled in. */
    assert_string_equal(tlsock_impl_name(TLSOCK_IMPL_OPENSSL), "openssl");
    assert_string_equal(tlsock_impl_name(TLSOCK_IMPL_GNUTLS), "gnutls");
    assert_string_equal(tlsock_impl_name(TLSOCK_IMPL_DEFAULT),
                        tlsock_impl_name(tlsock_default_impl()));
    assert_null(tlsock_impl_name(BOGUS_IMPL));
    assert_null(tlsock_impl_name(-1));
}

static void test_versions(void **state)
{
    const char *v;

    (void)state;
    v = tlsock_impl_version(TLSOCK_IMPL_OPENSSL);
#if TLSOCK_TEST_HAVE_OPENSSL
    /* The library's own report of the version tlsock runs with, asked directly. */
    assert_non_null(v);
    assert_int_equal(strncmp(v, "OpenSSL ", 8), 0);
    TS_ASSERT_CONTAINS(v, OpenSSL_version(OPENSSL_VERSION_STRING));
#else
    assert_null(v);
#endif
    v = tlsock_impl_version(TLSOCK_IMPL_GNUTLS);
#if TLSOCK_TEST_HAVE_GNUTLS
    assert_non_null(v);
    TS_ASSERT_CONTAINS(v, "GnuTLS");
    TS_ASSERT_CONTAINS(v, gnutls_check_version(NULL));
#else
    assert_null(v);
#endif
    assert_null(tlsock_impl_version(BOGUS_IMPL));
    assert_string_equal(tlsock_impl_version(TLSOCK_IMPL_DEFAULT),
                        tlsock_impl_version(tlsock_default_impl()));
}

static void test_caps(void **state)
{
    unsigned caps;

    (void)state;
    caps = tlsock_impl_caps(TLSOCK_IMPL_OPENSSL);
#if TLSOCK_TEST_HAVE_OPENSSL
    /* OpenSSL has ALPN and generates certificates. */
    assert_int_equal(caps, TLSOCK_CAP_ALPN | TLSOCK_CAP_CERTGEN);
#else
    assert_int_equal(caps, 0);
#endif
    caps = tlsock_impl_caps(TLSOCK_IMPL_GNUTLS);
#if TLSOCK_TEST_HAVE_GNUTLS
    /* GnuTLS has ALPN (gnutls_alpn_set_protocols) and generates certificates too. */
    assert_int_equal(caps, TLSOCK_CAP_ALPN | TLSOCK_CAP_CERTGEN);
#else
    assert_int_equal(caps, 0);
#endif
    assert_int_equal(tlsock_impl_caps(BOGUS_IMPL), 0);
    assert_int_equal(tlsock_impl_caps(TLSOCK_IMPL_DEFAULT),
                     tlsock_impl_caps(tlsock_default_impl()));
}

/* ---- choosing per context -------------------------------------------------------------------- */

static void test_ctx_set_impl(void **state)
{
    (void)state;
    for (int role = TLSOCK_CLIENT; role <= TLSOCK_SERVER; role++) {
        for (size_t i = 0; i < N_COMPILED_IN; i++) {
            struct tlsock_ctx *ctx = NULL;

            TS_ASSERT_RC(tlsock_ctx_new(role, &ctx), 0);
            TS_ASSERT_RC_MSG(tlsock_ctx_set_impl(ctx, compiled_in[i]), 0, tlsock_ctx_errmsg(ctx));
            assert_int_equal(tlsock_ctx_impl(ctx), compiled_in[i]);
            assert_non_null(tlsock_ctx_native(ctx));
            /* Choosing again before any other setter is still allowed. */
            TS_ASSERT_RC(tlsock_ctx_set_impl(ctx, TLSOCK_IMPL_DEFAULT), 0);
            assert_int_equal(tlsock_ctx_impl(ctx), tlsock_default_impl());
            tlsock_ctx_free(ctx);
        }
    }
}

static void test_ctx_set_impl_errors(void **state)
{
    struct tlsock_ctx *ctx = NULL;

    (void)state;
    TS_ASSERT_RC(tlsock_ctx_set_impl(NULL, TLSOCK_IMPL_OPENSSL), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_new(TLSOCK_CLIENT, &ctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_impl(ctx, BOGUS_IMPL), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_set_impl(ctx, -1), TLSOCK_EINVAL);
    /* A refused choice changes nothing. */
    assert_int_equal(tlsock_ctx_impl(ctx), tlsock_default_impl());
#if !TLSOCK_TEST_HAVE_GNUTLS
    TS_ASSERT_RC(tlsock_ctx_set_impl(ctx, TLSOCK_IMPL_GNUTLS), TLSOCK_ECONFIG);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(ctx), "gnutls");
    assert_int_equal(tlsock_ctx_impl(ctx), tlsock_default_impl());
#endif
#if !TLSOCK_TEST_HAVE_OPENSSL
    TS_ASSERT_RC(tlsock_ctx_set_impl(ctx, TLSOCK_IMPL_OPENSSL), TLSOCK_ECONFIG);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(ctx), "openssl");
#endif
    tlsock_ctx_free(ctx);
}

/* ---- choosing after other setters -------------------------------------------------------------
 */

static int serve_info(struct tlsock_conn *conn, void *arg)
{
    const struct tlsock_info **seen = arg;
    const struct tlsock_info *info = NULL;
    int rc = tlsock_conn_info(conn, &info);

    if (rc == 0) {
        *seen = info;
        rc = ts_serve_exchange(conn, &(struct ts_exchange){.size = 100});
    }
    return rc;
}

/*
 * Every setting made before tlsock_ctx_set_impl() holds on the implementation chosen after it:
 * certificate, CA, protocol range, cipher policy, ALPN. The contexts are set up on the process
 * default and then moved to the pair's implementations, so the pairs where the default differs
 * from the role's implementation rebuild the native context from the recorded settings.
 */
static void test_set_impl_after_setters(void **state)
{
    struct ts_env *env = *state;
    struct tlsock_opts opts = ts_opts();
    const struct tlsock_info *sinfo = NULL;
    const struct tlsock_info *cinfo = NULL;
    int server_impl = ts_role_impl(TLSOCK_SERVER);
    int client_impl = ts_role_impl(TLSOCK_CLIENT);

    TS_ASSERT_RC(tlsock_ctx_new(TLSOCK_SERVER, &env->sctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_cert_mem(env->sctx, ts_pki.server.cert, strlen(ts_pki.server.cert),
                                         ts_pki.server.key, strlen(ts_pki.server.key)),
                 0);
    TS_ASSERT_RC(tlsock_ctx_set_protocols(env->sctx, "1.2"), 0);
    TS_ASSERT_RC(tlsock_ctx_set_ciphers(env->sctx, "secure"), 0);
    TS_ASSERT_RC(tlsock_ctx_set_alpn(env->sctx, "h2,http/1.1"), 0);
    TS_ASSERT_RC_MSG(tlsock_ctx_set_impl(env->sctx, server_impl), 0, tlsock_ctx_errmsg(env->sctx));

    TS_ASSERT_RC(tlsock_ctx_new(TLSOCK_CLIENT, &env->cctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_ca_mem(env->cctx, ts_pki.ca.cert, strlen(ts_pki.ca.cert)), 0);
    /* The last protocol range wins, also after a replay. */
    TS_ASSERT_RC(tlsock_ctx_set_protocols(env->cctx, "1.3"), 0);
    TS_ASSERT_RC(tlsock_ctx_set_protocols(env->cctx, "1.2-1.2"), 0);
    TS_ASSERT_RC(tlsock_ctx_set_alpn(env->cctx, "http/1.1"), 0);
    TS_ASSERT_RC_MSG(tlsock_ctx_set_impl(env->cctx, client_impl), 0, tlsock_ctx_errmsg(env->cctx));
    if (client_impl != TLSOCK_IMPL_DEFAULT) {
        assert_int_equal(tlsock_ctx_impl(env->cctx), client_impl);
    }

    TS_ASSERT_RC(ts_server_start(&env->srv, env->sctx, NULL, NULL, serve_info, &sinfo), 0);
    TS_ASSERT_RC(tlsock_connect(env->cctx, "localhost", env->srv.port, &opts, &env->client), 0);
    TS_ASSERT_RC(tlsock_conn_info(env->client, &cinfo), 0);
    assert_string_equal(cinfo->impl, tlsock_impl_name(tlsock_ctx_impl(env->cctx)));
    assert_string_equal(cinfo->version, "TLSv1.2");
    assert_string_equal(cinfo->alpn, "http/1.1");
    TS_ASSERT_RC(ts_client_exchange(env->client, 100), 0);
    tlsock_close(env->client);
    env->client = NULL;
    ts_server_stop(&env->srv);
    TS_ASSERT_RC(env->srv.result, 0);
}

#if TS_BOTH_IMPLS
/* A setting the other implementation refuses: the choice fails naming it and changes nothing. */
static void test_set_impl_replay_refused(void **state)
{
    struct tlsock_ctx *ctx = NULL;
    /* OpenSSL's own cipher-string syntax, which the GnuTLS implementation refuses. */
    const char *openssl_only = "ECDHE+AESGCM";

    (void)state;
    TS_ASSERT_RC(tlsock_ctx_new(TLSOCK_CLIENT, &ctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_impl(ctx, TLSOCK_IMPL_OPENSSL), 0);
    TS_ASSERT_RC(tlsock_ctx_set_ciphers(ctx, openssl_only), 0);
    TS_ASSERT_RC(tlsock_ctx_set_impl(ctx, TLSOCK_IMPL_GNUTLS), TLSOCK_ECONFIG);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(ctx), openssl_only);
    assert_int_equal(tlsock_ctx_impl(ctx), TLSOCK_IMPL_OPENSSL);
    /* Still usable: another setter works, and replacing the list lets the choice through. */
    TS_ASSERT_RC(tlsock_ctx_set_ciphers(ctx, "compat"), 0);
    TS_ASSERT_RC(tlsock_ctx_set_impl(ctx, TLSOCK_IMPL_GNUTLS), 0);
    assert_int_equal(tlsock_ctx_impl(ctx), TLSOCK_IMPL_GNUTLS);
    tlsock_ctx_free(ctx);
}
#endif /* TS_BOTH_IMPLS */

/* ---- choosing per process -------------------------------------------------------------------- */

static void test_set_default_impl(void **state)
{
    const int saved = tlsock_default_impl();

    (void)state;
    assert_true(tlsock_impl_available(saved));
    for (size_t i = 0; i < N_COMPILED_IN; i++) {
        struct tlsock_ctx *ctx = NULL;
        int rc;

        TS_ASSERT_RC(tlsock_set_default_impl(compiled_in[i]), 0);
        assert_int_equal(tlsock_default_impl(), compiled_in[i]);
        rc = tlsock_ctx_new(TLSOCK_SERVER, &ctx);
        if (rc == 0) {
            rc = tlsock_ctx_impl(ctx) == compiled_in[i] ? 0 : TS_EMISMATCH;
        }
        tlsock_ctx_free(ctx);
        TS_ASSERT_RC(tlsock_set_default_impl(saved), 0);
        TS_ASSERT_RC(rc, 0);
    }
    TS_ASSERT_RC(tlsock_set_default_impl(BOGUS_IMPL), TLSOCK_EINVAL);
    /* DEFAULT is not an implementation: the default cannot be "the default". */
    TS_ASSERT_RC(tlsock_set_default_impl(TLSOCK_IMPL_DEFAULT), TLSOCK_EINVAL);
#if !TLSOCK_TEST_HAVE_GNUTLS
    TS_ASSERT_RC(tlsock_set_default_impl(TLSOCK_IMPL_GNUTLS), TLSOCK_ECONFIG);
    TS_ASSERT_CONTAINS(tlsock_errmsg(), "gnutls");
#endif
    assert_int_equal(tlsock_default_impl(), saved);
}

/* What a child process reports (child_main): with TLSOCK_IMPL as given, then after a setting. */
struct child_report {
    int default_impl; /* tlsock_default_impl() */
    int rc;           /* tlsock_ctx_new() */
    int ctx_impl;     /* that context's implementation, 0 if it failed */
    char msg[256];    /* tlsock_errmsg() when it failed, "-" if not */
    int set_rc;       /* then tlsock_set_default_impl(FIRST_IMPL) */
    int set_ctx_rc;   /* and tlsock_ctx_new() again */
    int set_ctx_impl; /* that context's implementation, 0 if it failed */
};

/*
 * Runs this executable with CHILD_FLAG and TLSOCK_IMPL set to @p value (NULL: unset) and reads
 * its report into @p out. Returns false if the child did not report.
 */
static bool run_child(const char *value, struct child_report *out)
{
    char buf[512] = "";
    int fds[2] = {-1, -1};
    int status = 0;
    ssize_t got = 0;
    size_t len = 0;
    bool ok = false;
    pid_t pid;

    if (pipe(fds) != 0) {
        return false;
    }
    pid = fork();
    if (pid == 0) {
        char *const argv[] = {"test_impl", CHILD_FLAG, NULL};

        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        if (value != NULL) {
            setenv("TLSOCK_IMPL", value, 1);
        } else {
            unsetenv("TLSOCK_IMPL");
        }
        execv(self_path, argv);
        _exit(127);
    }
    close(fds[1]);
    /* Bounded: the child writes three short lines and exits; EOF ends the loop. */
    for (int i = 0; i < 16 && pid > 0 && len < sizeof(buf) - 1; i++) {
        got = read(fds[0], buf + len, sizeof(buf) - 1 - len);
        if (got <= 0) {
            break;
        }
        len += (size_t)got;
    }
    close(fds[0]);
    buf[len] = '\0';
    if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
        WEXITSTATUS(status) == 0) {
        ok = sscanf(buf, "%d %d %d\n%255[^\n]\n%d %d %d", &out->default_impl, &out->rc,
                    &out->ctx_impl, out->msg, &out->set_rc, &out->set_ctx_rc,
                    &out->set_ctx_impl) == 7;
    }
    return ok;
}

/* Prints "rc impl" for a new context: 0 and its implementation, or the code and 0. */
static void child_print_ctx(int rc, struct tlsock_ctx *ctx)
{
    printf("%d %d\n", rc, rc == 0 ? tlsock_ctx_impl(ctx) : 0);
}

/* The child's side: the default and a new context, then the same after choosing a default. */
static int child_main(void)
{
    struct tlsock_ctx *ctx = NULL;
    int rc = tlsock_ctx_new(TLSOCK_CLIENT, &ctx);

    printf("%d ", tlsock_default_impl());
    child_print_ctx(rc, ctx);
    printf("%s\n", rc == 0 ? "-" : tlsock_errmsg());
    tlsock_ctx_free(ctx);
    ctx = NULL;
    /* A program's own choice works whatever the environment says. */
    printf("%d ", tlsock_set_default_impl(FIRST_IMPL));
    rc = tlsock_ctx_new(TLSOCK_CLIENT, &ctx);
    child_print_ctx(rc, ctx);
    tlsock_ctx_free(ctx);
    return 0;
}

static void test_env_variable(void **state)
{
    const struct {
        const char *value;
        int want; /* the default, 0 for none */
    } cases[] = {
        {.value = NULL, .want = FIRST_IMPL},
        /* Empty is unset. */
        {.value = "", .want = FIRST_IMPL},
        {.value = "openssl", .want = TLSOCK_TEST_HAVE_OPENSSL ? TLSOCK_IMPL_OPENSSL : 0},
        {.value = "gnutls", .want = TLSOCK_TEST_HAVE_GNUTLS ? TLSOCK_IMPL_GNUTLS : 0},
        /* A value naming nothing compiled in leaves no default: never a silent fallback. */
        {.value = "nosuch", .want = 0},
        {.value = "OpenSSL", .want = 0},
        {.value = "GNUTLS-not-a-name", .want = 0},
    };
    char expected[64];
    char offered[64];
    size_t used = 0;

    (void)state;
    used = (size_t)snprintf(offered, sizeof(offered), "set it to");
    for (size_t j = 0; j < N_COMPILED_IN && used < sizeof(offered); j++) {
        used += (size_t)snprintf(offered + used, sizeof(offered) - used, "%s %s",
                                 j > 0 ? " or" : "", tlsock_impl_name(compiled_in[j]));
    }
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *shown = cases[i].value != NULL ? cases[i].value : "(unset)";
        struct child_report got;

        memset(&got, 0, sizeof(got));
        if (!run_child(cases[i].value, &got)) {
            fail_msg("TLSOCK_IMPL=%s: the child did not report", shown);
        }
        if (got.default_impl != cases[i].want) {
            fail_msg("TLSOCK_IMPL=%s: expected default %d, child reported %d", shown, cases[i].want,
                     got.default_impl);
        }
        if (cases[i].want != 0) {
            /* A context made with no choice uses the default. */
            TS_ASSERT_RC_MSG(got.rc, 0, got.msg);
            assert_int_equal(got.ctx_impl, cases[i].want);
        } else {
            /* The header: tlsock_ctx_new() fails, naming the value and what is compiled in. */
            TS_ASSERT_RC_MSG(got.rc, TLSOCK_ECONFIG, got.msg);
            snprintf(expected, sizeof(expected), "TLSOCK_IMPL=%s ", cases[i].value);
            TS_ASSERT_CONTAINS(got.msg, expected);
            /* What is compiled in, and only that, is offered. */
            TS_ASSERT_CONTAINS(got.msg, offered);
        }
        TS_ASSERT_RC(got.set_rc, 0);
        TS_ASSERT_RC(got.set_ctx_rc, 0);
        assert_int_equal(got.set_ctx_impl, FIRST_IMPL);
    }
}

/* ---- native handles and configure callbacks -------------------------------------------------- */

#define MAX_CONNS      4
#define CONFIGURED_SNI "configured.example"

/* What one context's callbacks saw; written in whichever thread connects, read after joins. */
struct configure_log {
    int impl;      /* the context's implementation */
    int role;      /* TLSOCK_CLIENT or TLSOCK_SERVER */
    void *native;  /* tlsock_ctx_native(), what on_ctx must receive */
    int ctx_calls; /* on_ctx calls */
    void *ctx_seen;
    bool ctx_checked; /* the implementation's own API accepted the native context */
    int conn_calls;
    void *conn_seen[MAX_CONNS];
    bool conn_checked[MAX_CONNS]; /* the native session accepted our change before its handshake */
    int ctx_rc;                   /* what on_ctx returns */
    int conn_rc;                  /* what on_conn returns */
};

/* Asks the implementation itself about the native context tlsock configured. */
static bool check_native_ctx(const struct configure_log *log, void *native)
{
    bool ok = false;

#if TLSOCK_TEST_HAVE_OPENSSL
    if (log->impl == TLSOCK_IMPL_OPENSSL) {
        /* tlsock's default range is TLS 1.2 to 1.3; an SSL_CTX reports it. */
        SSL_CTX *ssl_ctx = native;

        ok = SSL_CTX_get_min_proto_version(ssl_ctx) == TLS1_2_VERSION &&
             SSL_CTX_get_max_proto_version(ssl_ctx) == TLS1_3_VERSION;
        if (log->role == TLSOCK_SERVER) {
            ok = ok && SSL_CTX_get0_certificate(ssl_ctx) != NULL;
        }
    }
#endif
#if TLSOCK_TEST_HAVE_GNUTLS
    if (log->impl == TLSOCK_IMPL_GNUTLS) {
        gnutls_certificate_credentials_t cred = native;

        if (log->role == TLSOCK_SERVER) {
            /* The server's certificate is in the credentials. */
            gnutls_datum_t der = {NULL, 0};

            ok = gnutls_certificate_get_crt_raw(cred, 0, 0, &der) == 0 && der.size > 0;
        } else {
            /* The client's trust list holds the CA the test set. */
            gnutls_x509_trust_list_t list = NULL;
            gnutls_x509_trust_list_iter_t iter = NULL;
            gnutls_x509_crt_t ca = NULL;

            gnutls_certificate_get_trust_list(cred, &list);
            if (list != NULL && gnutls_x509_trust_list_iter_get_ca(list, &iter, &ca) == 0) {
                ok = true;
                gnutls_x509_crt_deinit(ca);
            }
            gnutls_x509_trust_list_iter_deinit(iter);
        }
    }
#endif
    return ok;
}

/* Changes the native session before its handshake in a way the peer observes (client SNI);
 * servers check only that the handshake has not run. */
static bool configure_native_session(const struct configure_log *log, void *session)
{
    bool ok = false;

#if TLSOCK_TEST_HAVE_OPENSSL
    if (log->impl == TLSOCK_IMPL_OPENSSL) {
        SSL *ssl = session;

        ok = !SSL_is_init_finished(ssl);
        if (ok && log->role == TLSOCK_CLIENT) {
            ok = SSL_set_tlsext_host_name(ssl, CONFIGURED_SNI) == 1;
        }
    }
#endif
#if TLSOCK_TEST_HAVE_GNUTLS
    if (log->impl == TLSOCK_IMPL_GNUTLS) {
        gnutls_session_t gs = session;

        /* No cipher has been agreed before the handshake. */
        ok = gnutls_cipher_get(gs) == GNUTLS_CIPHER_NULL ||
             gnutls_cipher_get(gs) == GNUTLS_CIPHER_UNKNOWN;
        if (ok && log->role == TLSOCK_CLIENT) {
            ok = gnutls_server_name_set(gs, GNUTLS_NAME_DNS, CONFIGURED_SNI,
                                        strlen(CONFIGURED_SNI)) == 0;
        }
    }
#endif
    return ok;
}

static int on_ctx(void *native, void *user)
{
    struct configure_log *log = user;

    log->ctx_calls++;
    log->ctx_seen = native;
    log->ctx_checked = check_native_ctx(log, native);
    return log->ctx_rc;
}

static int on_conn(void *session, void *user)
{
    struct configure_log *log = user;

    if (log->conn_calls < MAX_CONNS) {
        log->conn_seen[log->conn_calls] = session;
        log->conn_checked[log->conn_calls] = configure_native_session(log, session);
    }
    log->conn_calls++;
    return log->conn_rc;
}

static void log_init(struct configure_log *log, struct tlsock_ctx *ctx, int role)
{
    memset(log, 0, sizeof(*log));
    log->impl = tlsock_ctx_impl(ctx);
    log->role = role;
    log->native = tlsock_ctx_native(ctx);
}

/* The server's half: records its session and the SNI it received, then exchanges. */
struct server_seen {
    void *native;
    char servername[256];
    char impl[16];
    struct ts_exchange ex;
};

static int serve_seen(struct tlsock_conn *conn, void *arg)
{
    struct server_seen *seen = arg;
    const struct tlsock_info *info = NULL;
    int rc;

    seen->native = tlsock_conn_native(conn);
    rc = tlsock_conn_info(conn, &info);
    if (rc == 0) {
        snprintf(seen->servername, sizeof(seen->servername), "%s", info->servername);
        snprintf(seen->impl, sizeof(seen->impl), "%s", info->impl);
        rc = ts_serve_exchange(conn, &seen->ex);
    }
    return rc;
}

static void test_configure_callbacks(void **state)
{
    struct ts_env *env = *state;
    struct configure_log clog;
    struct configure_log slog;
    struct tlsock_opts opts = ts_opts();

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    log_init(&clog, env->cctx, TLSOCK_CLIENT);
    log_init(&slog, env->sctx, TLSOCK_SERVER);
    assert_non_null(clog.native);
    assert_non_null(slog.native);
    TS_ASSERT_RC(tlsock_ctx_set_configure(env->cctx, on_ctx, on_conn, &clog), 0);
    TS_ASSERT_RC(tlsock_ctx_set_configure(env->sctx, on_ctx, on_conn, &slog), 0);
    /* Nothing runs before the context freezes. */
    assert_int_equal(clog.ctx_calls + slog.ctx_calls, 0);

    for (int round = 0; round < 2; round++) {
        struct server_seen seen = {.ex = {.size = 64}};

        print_message("connection %d\n", round + 1);
        TS_ASSERT_RC(ts_server_start(&env->srv, env->sctx, NULL, NULL, serve_seen, &seen), 0);
        /* Listening froze the server context: its on_ctx ran once, no connection yet. */
        assert_int_equal(slog.ctx_calls, 1);
        TS_ASSERT_RC(tlsock_connect(env->cctx, "127.0.0.1", env->srv.port, &opts, &env->client), 0);
        assert_int_equal(clog.ctx_calls, 1);
        assert_int_equal(clog.conn_calls, round + 1);
        assert_ptr_equal(clog.conn_seen[round], tlsock_conn_native(env->client));
        assert_true(clog.conn_checked[round]);
        TS_ASSERT_RC(ts_client_exchange(env->client, seen.ex.size), 0);
        tlsock_close(env->client);
        env->client = NULL;
        ts_server_stop(&env->srv);
        TS_ASSERT_RC_MSG(env->srv.result, 0, env->srv.errmsg);
        assert_int_equal(slog.conn_calls, round + 1);
        assert_ptr_equal(slog.conn_seen[round], seen.native);
        assert_true(slog.conn_checked[round]);
        /* The client's on_conn replaced the SNI before the handshake, and the server saw it. */
        assert_string_equal(seen.servername, CONFIGURED_SNI);
        assert_string_equal(seen.impl, tlsock_impl_name(slog.impl));
    }
    /* Exactly once per context, with its native handle as tlsock configured it. */
    assert_int_equal(clog.ctx_calls, 1);
    assert_int_equal(slog.ctx_calls, 1);
    assert_ptr_equal(clog.ctx_seen, clog.native);
    assert_ptr_equal(slog.ctx_seen, slog.native);
    assert_ptr_equal(tlsock_ctx_native(env->cctx), clog.native);
    assert_true(clog.ctx_checked);
    assert_true(slog.ctx_checked);
}

static int memory_client_ctx(struct tlsock_ctx **out)
{
    int rc = ts_client_ctx_new(ts_pki.ca.cert, out);

    if (rc == 0) {
        rc = tlsock_ctx_set_verify(*out, TLSOCK_VERIFY_NONE);
    }
    return rc;
}

/* A callback's error code fails the freeze or the connection with that code. */
static void test_configure_errors(void **state)
{
    struct ts_env *env = *state;
    struct configure_log log;
    struct tlsock_conn *conn = NULL;

    TS_ASSERT_RC(memory_client_ctx(&env->cctx), 0);
    log_init(&log, env->cctx, TLSOCK_CLIENT);
    log.ctx_rc = TLSOCK_ECANCELED;
    TS_ASSERT_RC(tlsock_ctx_set_configure(env->cctx, on_ctx, on_conn, &log), 0);

    /* on_ctx refuses: no connection, and the context did not freeze. */
    TS_ASSERT_RC(tlsock_attach_mem(env->cctx, NULL, &conn), TLSOCK_ECANCELED);
    assert_null(conn);
    TS_ASSERT_CONTAINS(tlsock_errmsg(), "configure callback");
    assert_int_equal(log.ctx_calls, 1);
    assert_int_equal(log.conn_calls, 0);
    TS_ASSERT_RC(tlsock_ctx_set_alpn(env->cctx, "x"), 0);

    /* Asked again at the next connection; now on_conn refuses. */
    log.ctx_rc = 0;
    log.conn_rc = TLSOCK_ECANCELED;
    TS_ASSERT_RC(tlsock_attach_mem(env->cctx, NULL, &conn), TLSOCK_ECANCELED);
    assert_null(conn);
    TS_ASSERT_CONTAINS(tlsock_errmsg(), "configure callback");
    assert_int_equal(log.ctx_calls, 2);
    assert_int_equal(log.conn_calls, 1);
    /* The context froze when on_ctx succeeded. */
    TS_ASSERT_RC(tlsock_ctx_set_alpn(env->cctx, "y"), TLSOCK_EINVAL);

    /* Another code, and then success: on_ctx is not called again. */
    log.conn_rc = TLSOCK_ENOMEM;
    TS_ASSERT_RC(tlsock_attach_mem(env->cctx, NULL, &conn), TLSOCK_ENOMEM);
    assert_null(conn);
    log.conn_rc = 0;
    TS_ASSERT_RC_MSG(tlsock_attach_mem(env->cctx, NULL, &conn), 0, tlsock_errmsg());
    assert_ptr_equal(tlsock_conn_native(conn), log.conn_seen[2]);
    tlsock_close(conn);
    assert_int_equal(log.ctx_calls, 2);
    assert_int_equal(log.conn_calls, 3);
}

static int serve_handshake(struct tlsock_conn *conn, void *arg)
{
    (void)arg;
    return tlsock_handshake(conn);
}

/* tlsock_connect() fails with the callback's code and returns no connection. */
static void test_configure_error_fails_connect(void **state)
{
    struct ts_env *env = *state;
    struct configure_log log;
    struct tlsock_opts opts = ts_opts();

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    log_init(&log, env->cctx, TLSOCK_CLIENT);
    log.conn_rc = TLSOCK_ECANCELED;
    TS_ASSERT_RC(tlsock_ctx_set_configure(env->cctx, on_ctx, on_conn, &log), 0);
    TS_ASSERT_RC(ts_server_start(&env->srv, env->sctx, NULL, NULL, serve_handshake, NULL), 0);
    TS_ASSERT_RC(tlsock_connect(env->cctx, "127.0.0.1", env->srv.port, &opts, &env->client),
                 TLSOCK_ECANCELED);
    assert_null(env->client);
    TS_ASSERT_CONTAINS(tlsock_errmsg(), "configure callback");
    assert_int_equal(log.ctx_calls, 1);
    assert_int_equal(log.conn_calls, 1);
    ts_server_stop(&env->srv);
    /* No handshake took place (the server may not even have run its function, depending on
     * whether the socket was connected before the callback refused). */
    assert_int_not_equal(env->srv.result, 0);
}

/* Callbacks may be absent; the setter follows the setter rules. */
static void test_configure_setter(void **state)
{
    struct ts_env *env = *state;
    struct tlsock_conn *conn = NULL;
    struct configure_log log;

    TS_ASSERT_RC(tlsock_ctx_set_configure(NULL, on_ctx, on_conn, NULL), TLSOCK_EINVAL);
    TS_ASSERT_RC(memory_client_ctx(&env->cctx), 0);
    log_init(&log, env->cctx, TLSOCK_CLIENT);
    /* Only on_conn; then cleared again. */
    TS_ASSERT_RC(tlsock_ctx_set_configure(env->cctx, NULL, on_conn, &log), 0);
    TS_ASSERT_RC(tlsock_ctx_set_configure(env->cctx, NULL, NULL, NULL), 0);
    TS_ASSERT_RC(tlsock_attach_mem(env->cctx, NULL, &conn), 0);
    tlsock_close(conn);
    assert_int_equal(log.conn_calls, 0);
    /* Frozen now. */
    TS_ASSERT_RC(tlsock_ctx_set_configure(env->cctx, on_ctx, on_conn, &log), TLSOCK_EINVAL);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(env->cctx), "frozen");
    assert_null(tlsock_ctx_native(NULL));
    assert_null(tlsock_conn_native(NULL));
}

/* ---- options an implementation cannot honour ------------------------------------------------- */

/*
 * A raw cipher list is the implementation's own syntax. Given the other implementation's syntax
 * it is refused with ECONFIG naming the implementation and the option, never silently ignored.
 */
static void test_foreign_cipher_syntax(void **state)
{
    const struct {
        int impl;
        const char *foreign;
    } cases[] = {
        /* A GnuTLS priority string given to OpenSSL. */
        {.impl = TLSOCK_IMPL_OPENSSL, .foreign = "NORMAL:-VERS-ALL:+VERS-TLS1.2"},
        /* An OpenSSL cipher string given to GnuTLS. */
        {.impl = TLSOCK_IMPL_GNUTLS, .foreign = "ECDHE+AESGCM"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct tlsock_ctx *ctx = NULL;
        int rc;

        if (!tlsock_impl_available(cases[i].impl)) {
            print_message("%s not compiled in: its case is covered by test_ctx_set_impl_errors\n",
                          tlsock_impl_name(cases[i].impl));
            continue;
        }
        TS_ASSERT_RC(tlsock_ctx_new(TLSOCK_CLIENT, &ctx), 0);
        TS_ASSERT_RC(tlsock_ctx_set_impl(ctx, cases[i].impl), 0);
        rc = tlsock_ctx_set_ciphers(ctx, cases[i].foreign);
        if (rc != TLSOCK_ECONFIG) {
            print_error("%s: set_ciphers(\"%s\") = %s (%s)\n", tlsock_impl_name(cases[i].impl),
                        cases[i].foreign, ts_rc_name(rc), tlsock_ctx_errmsg(ctx));
            tlsock_ctx_free(ctx);
            fail();
        }
        TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(ctx), tlsock_impl_name(cases[i].impl));
        TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(ctx), cases[i].foreign);
        tlsock_ctx_free(ctx);
    }
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_available),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_ctx_set_impl),
        cmocka_unit_test(test_ctx_set_impl_errors),
        cmocka_unit_test_setup_teardown(test_set_impl_after_setters, ts_env_setup, ts_env_teardown),
#if TS_BOTH_IMPLS
        cmocka_unit_test(test_set_impl_replay_refused),
#endif
        cmocka_unit_test(test_set_default_impl),
        cmocka_unit_test(test_env_variable),
        cmocka_unit_test_setup_teardown(test_configure_callbacks, ts_env_setup, ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_configure_errors, ts_env_setup, ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_configure_error_fails_connect, ts_env_setup,
                                        ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_configure_setter, ts_env_setup, ts_env_teardown),
        cmocka_unit_test(test_foreign_cipher_syntax),
    };

    self_path = argv[0];
    if (argc == 2 && strcmp(argv[1], CHILD_FLAG) == 0) {
        return child_main();
    }
    /* Most cases need no certificate: they run in a build that cannot make any. */
    return cmocka_run_group_tests_name("impl", tests, ts_pki_setup, ts_pki_teardown);
}
