/*
 * Allocation failure: each operation runs again and again with its 1st, 2nd, 3rd... allocation
 * failed (support/alloc_fail.h), until it runs without reaching one. Every failure must come back
 * as a clean code with a message from the failing call (TLSOCK_ENOMEM for tlsock's own; see
 * assert_clean() for OpenSSL's), never as a crash, a hang or a wrong success, and leave the
 * objects usable (the operation done again, unarmed, works) or closable. Leaks are found by
 * LeakSanitizer in the sanitizer build.
 *
 * Only the test thread's allocations are counted: tlsock's own, OpenSSL's and the libc calls that
 * allocate (getaddrinfo, fopencookie). A server thread is the peer and never fails. GnuTLS's own
 * allocations cannot be failed (see alloc_fail.h): with GnuTLS only tlsock's fail around it.
 *
 * Slow under valgrind (thousands of handshakes), so labelled `faults` rather than `tls`.
 */
#include "support.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc_fail.h"
#include "pair.h"
#include "workdir.h"

#if TS_HAVE_UV
#include <tlsock/uv.h>

#include "loop_turn.h"
#endif

/* Two records and a bit: data crosses a record boundary. */
#define SIZE 20000
/* More runs than any operation here has allocations. */
#define MAX_RUNS 20000
/* Application data a peer sends before its close_notify (detach). */
#define TAIL 100

/* ---- a server that serves one exchange per connection, until stopped ------------------------- */

struct echo_server {
    struct tlsock_listener *lis;
    uint16_t port;
    pthread_t thread;
    bool started;
    atomic_bool stop;
};

static void *echo_main(void *arg)
{
    struct echo_server *s = arg;

    /* Bounded: a test makes at most MAX_RUNS connections, twice. */
    for (int i = 0; i < 2 * MAX_RUNS + 10 && !atomic_load(&s->stop); i++) {
        struct tlsock_opts opts = ts_opts();
        struct tlsock_conn *conn = NULL;
        struct ts_exchange ex = {.size = SIZE};

        if (tlsock_accept(s->lis, &opts, &conn) != 0) {
            continue;
        }
        /* The clients check the exchange; a failed client fails it here too. */
        if (!atomic_load(&s->stop)) {
            (void)ts_serve_exchange(conn, &ex);
        }
        tlsock_close(conn);
    }
    return NULL;
}

static void echo_start(struct echo_server *s, struct tlsock_ctx *sctx)
{
    assert_false(s->started);
    TS_ASSERT_RC(tlsock_listen(sctx, "127.0.0.1", 0, 0, &s->lis), 0);
    s->port = tlsock_listener_port(s->lis);
    atomic_init(&s->stop, false);
    assert_int_equal(pthread_create(&s->thread, NULL, echo_main, s), 0);
    s->started = true;
}

static void echo_stop(struct echo_server *s)
{
    if (s->started) {
        int fd = -1;

        atomic_store(&s->stop, true);
        /* Wakes an accept that waits. */
        if (ts_raw_connect("127.0.0.1", s->port, 0, &fd) == 0) {
            close(fd);
        }
        pthread_join(s->thread, NULL);
        s->started = false;
    }
    tlsock_listener_close(s->lis);
    s->lis = NULL;
}

/* ---- one test's objects ---------------------------------------------------------------------- */

/*
 * A client thread for the accept case: connects, then waits to be told whether the server side
 * lived, and if so runs the usual exchange.
 */
struct client_thread {
    pthread_t thread;
    bool started;
    struct tlsock_ctx *ctx;
    uint16_t port;
    int handshake_timeout_ms; /* 0: ts_opts()'s */
    struct ts_gate gate;
    atomic_bool go;
    atomic_bool done;
    int rc;
    char errmsg[TLSOCK__ERRMSG_SIZE];
};

struct fa_env {
    const char *protocols; /* the client's range in this round */
    struct tlsock_ctx *sctx;
    struct tlsock_ctx *cctx;
    struct echo_server echo;
    struct client_thread peer;
    struct ts_workdir wd; /* PEM files for the file setters */
    char ca_path[96];
    char cert_path[96];
    char key_path[96];
    char enc_key_path[96]; /* key_path encrypted (PKCS#8, AES-256) with FA_KEY_PASS */
    char p12_path[96];     /* cert_path and key_path in a PKCS#12 bundle with FA_KEY_PASS */
    /* What one run makes and how far it got. */
    struct tlsock_ctx *ctx;
    struct tlsock_conn *conn;
    struct tlsock_listener *lis;
    struct ts_pair pair; /* its connections only: the contexts are the ones above */
    struct ts_transfer transfers[2];
    FILE *file;
    int fd;
    size_t left;
    int step; /* the step of a multi-step run that failed, or the number of steps */
    unsigned char out[SIZE];
    unsigned char back[SIZE];
    unsigned char in[SIZE];
    unsigned char in2[SIZE];
};

/* Runs steps 0..@p count-1 of @p step until one fails; records which one failed (or @p count). */
static int run_steps(struct fa_env *e, int (*step)(struct fa_env *, int), int count)
{
    int rc = 0;

    for (e->step = 0; e->step < count && rc == 0; e->step++) {
        rc = step(e, e->step);
    }
    if (rc != 0) {
        e->step--;
    }
    return rc;
}

/*
 * OpenSSL treats some failed allocations as "not available" and goes on: a context or session
 * made then may lack an algorithm (a signature scheme, a group, a cipher) and fail a handshake
 * later, with a clean code. So when an OpenSSL allocation failed and the call still succeeded,
 * what follows with that object may fail cleanly; everything else must work.
 */
static bool absorbed_by_openssl(enum ts_alloc_source source, int rc)
{
    return source == TS_ALLOC_OPENSSL && rc == 0;
}

/*
 * An injected failure came back as @p rc with @p msg. tlsock's own allocations must come back as
 * TLSOCK_ENOMEM. A failure inside OpenSSL may also surface as what OpenSSL made of it (a protocol
 * error, a certificate it could not read or verify, a peer that gave up), but never as a wrong
 * argument, a timeout (nothing here waits for anything that does not come), a WANT code or a test
 * code (wrong data); and a message that says an allocation failed comes with TLSOCK_ENOMEM.
 */
static void assert_clean(const char *what, enum ts_alloc_source source, int rc, const char *msg)
{
    bool clean = rc == TLSOCK_ENOMEM;

    if (source != TS_ALLOC_TLSOCK) {
        clean = clean || rc == TLSOCK_EPROTO || rc == TLSOCK_EVERIFY || rc == TLSOCK_ECONFIG ||
                rc == TLSOCK_EX509_LOOKUP || rc == TLSOCK_ETRUNCATED || rc == TLSOCK_ESYS;
    }
    if (!clean) {
        fail_msg("%s: a failed %s allocation gave %s (%d): \"%s\"", what,
                 ts_alloc_source_name(source), ts_rc_name(rc), rc, msg);
    }
    if (msg == NULL || msg[0] == '\0') {
        fail_msg("%s: %s without a message", what, ts_rc_name(rc));
    }
    if (rc != TLSOCK_ENOMEM &&
        (strstr(msg, "malloc failure") != NULL || strstr(msg, "out of memory") != NULL)) {
        fail_msg("%s: out of memory reported as %s: \"%s\"", what, ts_rc_name(rc), msg);
    }
}

/* What must follow a run: @p rc must be 0, or only a clean code when @p tolerant. */
static void assert_works(const char *what, bool tolerant, int rc, const char *msg)
{
    if (tolerant && rc != 0) {
        assert_clean(what, TS_ALLOC_OPENSSL, rc, msg);
    } else {
        TS_ASSERT_RC_MSG(rc, 0, msg);
    }
}

static int fa_setup(void **state)
{
    struct fa_env *e = calloc(1, sizeof(*e));

    if (e == NULL) {
        return -1;
    }
    e->fd = -1;
    ts_pair_init(&e->pair);
    /* A failed handshake step is checked as it failed: its alert does not move on. */
    e->pair.stop_at_failure = true;
    if (ts_workdir_make(&e->wd, "alloc") != 0) {
        free(e);
        return -1;
    }
    ts_workdir_path(&e->wd, "ca.pem", e->ca_path, sizeof(e->ca_path));
    ts_workdir_path(&e->wd, "cert.pem", e->cert_path, sizeof(e->cert_path));
    ts_workdir_path(&e->wd, "key.pem", e->key_path, sizeof(e->key_path));
    ts_workdir_path(&e->wd, "key.enc.pem", e->enc_key_path, sizeof(e->enc_key_path));
    ts_workdir_path(&e->wd, "bundle.p12", e->p12_path, sizeof(e->p12_path));
    ts_fill(e->out, SIZE, 1);
    ts_fill(e->back, SIZE, 2);
    *state = e;
    return 0;
}

/* Lets the accept case's client go on to its exchange (@p go) or stop, and joins it. */
static void client_join(struct fa_env *e, bool go)
{
    if (e->peer.started) {
        atomic_store(&e->peer.go, go);
        ts_gate_open(&e->peer.gate);
        pthread_join(e->peer.thread, NULL);
        ts_gate_destroy(&e->peer.gate);
        e->peer.started = false;
    }
}

/* Releases what a run made (also after a failed assertion). */
static void run_free(void *arg)
{
    struct fa_env *e = arg;

    if (e->file != NULL) {
        fclose(e->file); /* the stream owns the connection */
        e->file = NULL;
        e->conn = NULL;
    }
    tlsock_close(e->conn);
    e->conn = NULL;
    ts_pair_close(&e->pair);
    client_join(e, false);
    tlsock_listener_close(e->lis);
    e->lis = NULL;
    tlsock_ctx_free(e->ctx);
    e->ctx = NULL;
    if (e->fd >= 0) {
        close(e->fd);
        e->fd = -1;
    }
}

static int fa_teardown(void **state)
{
    struct fa_env *e = *state;

    if (e != NULL) {
        (void)ts_alloc_disarm(NULL);
        run_free(e);
        echo_stop(&e->echo);
        tlsock_ctx_free(e->sctx);
        tlsock_ctx_free(e->cctx);
        (void)ts_workdir_remove(&e->wd);
        free(e);
        *state = NULL;
    }
    return 0;
}

/* The long-lived contexts for the client range @p protocols (unarmed). */
static void contexts_make(struct fa_env *e, const char *protocols)
{
    tlsock_ctx_free(e->sctx);
    tlsock_ctx_free(e->cctx);
    e->sctx = e->cctx = NULL;
    e->protocols = protocols;
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &e->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &e->cctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_protocols(e->cctx, protocols), 0);
}

static const char *const protocol_rounds[] = {"1.3", "1.2-1.2"};
#define ROUNDS (sizeof(protocol_rounds) / sizeof(protocol_rounds[0]))

/* The version a connection made with the client's range @p protocols negotiates. */
static const char *version_of(const char *protocols)
{
    return strcmp(protocols, "1.3") == 0 ? "TLSv1.3" : "TLSv1.2";
}

static void nothing(void *arg)
{
    (void)arg;
}

/* The message of a failed call on @p ctx, or the thread's when the context has none. */
static const char *ctx_message(const struct tlsock_ctx *ctx)
{
    return ctx != NULL && tlsock_ctx_errmsg(ctx)[0] != '\0' ? tlsock_ctx_errmsg(ctx)
                                                            : tlsock_errmsg();
}

/* tlsock_ctx_new() with the matrix's implementation for @p role (ts_ctx_new() without its
 * messages, which every injected failure would print). */
static int ctx_new(int role, struct tlsock_ctx **out)
{
    struct tlsock_ctx *ctx = NULL;
    int rc = tlsock_ctx_new(role, &ctx);

    if (rc == 0) {
        rc = tlsock_ctx_set_impl(ctx, ts_role_impl(role));
    }
    if (rc == 0) {
        *out = ctx;
    } else {
        tlsock_ctx_free(ctx); /* the thread's message keeps why */
    }
    return rc;
}

/*
 * The pair's memory-mode connections, of @p cctx and @p sctx (the pair's own contexts stay unset:
 * the contexts are the run's); e->step says which attach failed: 0 the client's, 1 the server's.
 */
static int pair_attach(struct fa_env *e, struct tlsock_ctx *cctx, struct tlsock_ctx *sctx)
{
    struct tlsock_opts opts = ts_opts();
    int rc;

    opts.servername = "localhost";
    e->step = 0;
    rc = tlsock_attach_mem(cctx, &opts, &e->pair.client);
    if (rc == 0) {
        e->step = 1;
        rc = tlsock_attach_mem(sctx, NULL, &e->pair.server);
    }
    return rc;
}

/* The pair's connections made again, of @p cctx and @p sctx (unarmed). */
static void pair_open(struct fa_env *e, struct tlsock_ctx *cctx, struct tlsock_ctx *sctx)
{
    ts_pair_close(&e->pair);
    TS_ASSERT_RC(pair_attach(e, cctx, sctx), 0);
}

/* The transfers both ways a memory-mode case runs: SIZE bytes each, read as they come. */
static void transfers_init(struct fa_env *e)
{
    e->transfers[0] =
        (struct ts_transfer){.dir = TS_C2S, .data = e->out, .len = SIZE, .out = e->in};
    e->transfers[1] =
        (struct ts_transfer){.dir = TS_S2C, .data = e->back, .len = SIZE, .out = e->in2};
}

/* Runs (or goes on with) both transfers. */
static int transfers_run(struct fa_env *e)
{
    int rc = ts_pair_run_transfer(&e->pair, &e->transfers[0]);

    return rc != 0 ? rc : ts_pair_run_transfer(&e->pair, &e->transfers[1]);
}

/* The message of the memory pair's side that failed. */
static const char *pair_message(const struct fa_env *e)
{
    const char *msg = e->pair.client != NULL ? tlsock_conn_errmsg(e->pair.client) : "";

    if (msg[0] == '\0' && e->pair.server != NULL) {
        msg = tlsock_conn_errmsg(e->pair.server);
    }
    return msg[0] != '\0' ? msg : tlsock_errmsg();
}

/* ---- contexts and their setters -------------------------------------------------------------- */

/*
 * One setter at a time, on a context kept from run to run (a failed setter must leave it usable
 * for the next), or the making of a context. After the last run a handshake with a peer of the
 * other role shows the setting in force.
 */
struct setter {
    const char *name;
    int role;
    bool creates;   /* the call makes the context (each run a new one) */
    bool own_trust; /* a client setter that gives the trust anchors itself */
    bool own_cert;  /* a server setter that gives the certificate itself */
    int (*call)(struct fa_env *e);
    const char *version; /* what the handshake then negotiates; NULL: TLSv1.3 */
    const char *alpn;    /* the client's view of ALPN */
};

static int make_client(struct fa_env *e)
{
    return ctx_new(TLSOCK_CLIENT, &e->ctx);
}

static int make_server(struct fa_env *e)
{
    return ctx_new(TLSOCK_SERVER, &e->ctx);
}

static int set_protocols(struct fa_env *e)
{
    return tlsock_ctx_set_protocols(e->ctx, "1.2-1.2");
}

static int set_ciphers(struct fa_env *e)
{
    return tlsock_ctx_set_ciphers(e->ctx, "compat");
}

static int set_ca_file(struct fa_env *e)
{
    return tlsock_ctx_set_ca_file(e->ctx, e->ca_path);
}

static int set_ca_mem(struct fa_env *e)
{
    return tlsock_ctx_set_ca_mem(e->ctx, ts_pki.ca.cert, strlen(ts_pki.ca.cert));
}

static int set_client_alpn(struct fa_env *e)
{
    return tlsock_ctx_set_alpn(e->ctx, "h2,http/1.1");
}

static int set_server_alpn(struct fa_env *e)
{
    return tlsock_ctx_set_alpn(e->ctx, "http/1.1");
}

static int set_cert_file(struct fa_env *e)
{
    return tlsock_ctx_set_cert_file(e->ctx, e->cert_path, e->key_path);
}

#define FA_KEY_PASS "alloc-fail-pass"

/* The passphrase, then the encrypted key: its decryption fails too. */
static int set_cert_file_encrypted(struct fa_env *e)
{
    int rc = tlsock_ctx_set_key_passphrase(e->ctx, FA_KEY_PASS);

    return rc != 0 ? rc : tlsock_ctx_set_cert_file(e->ctx, e->cert_path, e->enc_key_path);
}

static int set_pkcs12_file(struct fa_env *e)
{
    int rc = tlsock_ctx_set_key_passphrase(e->ctx, FA_KEY_PASS);

    return rc != 0 ? rc : tlsock_ctx_set_pkcs12_file(e->ctx, e->p12_path);
}

/*
 * The encrypted key and the bundle, made by the openssl tool from the PEM files. One iteration
 * of the key derivations and the MAC: each one allocates, and thousands of them would make
 * thousands of runs of the same thing.
 */
static void make_protected_files(struct fa_env *e)
{
    assert_int_equal(ts_workdir_sh(&e->wd,
                                   "timeout 60 openssl pkcs8 -topk8 -v2 aes-256-cbc -iter 1 "
                                   "-in key.pem -passout pass:" FA_KEY_PASS " -out key.enc.pem && "
                                   "timeout 60 openssl pkcs12 -export -in cert.pem -inkey key.pem "
                                   "-passout pass:" FA_KEY_PASS " -keypbe AES-256-CBC "
                                   "-certpbe AES-256-CBC -iter 1 -nomaciter -macalg sha256 "
                                   "-out bundle.p12"),
                     0);
}

static const struct setter setters[] = {
    {.name = "client context", .role = TLSOCK_CLIENT, .creates = true, .call = make_client},
    {.name = "server context", .role = TLSOCK_SERVER, .creates = true, .call = make_server},
    {.name = "set_protocols", .role = TLSOCK_CLIENT, .call = set_protocols, .version = "TLSv1.2"},
    {.name = "set_ciphers", .role = TLSOCK_CLIENT, .call = set_ciphers},
    {.name = "set_ca_file", .role = TLSOCK_CLIENT, .own_trust = true, .call = set_ca_file},
    {.name = "set_ca_mem", .role = TLSOCK_CLIENT, .own_trust = true, .call = set_ca_mem},
    {.name = "set_alpn (client)",
     .role = TLSOCK_CLIENT,
     .call = set_client_alpn,
     .alpn = "http/1.1"},
    {.name = "set_cert_file", .role = TLSOCK_SERVER, .own_cert = true, .call = set_cert_file},
    {.name = "set_cert_file (encrypted key)",
     .role = TLSOCK_SERVER,
     .own_cert = true,
     .call = set_cert_file_encrypted},
    {.name = "set_pkcs12_file", .role = TLSOCK_SERVER, .own_cert = true, .call = set_pkcs12_file},
    {.name = "set_ca_mem (server)", .role = TLSOCK_SERVER, .call = set_ca_mem},
    {.name = "set_ciphers (server)", .role = TLSOCK_SERVER, .call = set_ciphers},
    {.name = "set_alpn (server)",
     .role = TLSOCK_SERVER,
     .call = set_server_alpn,
     .alpn = "http/1.1"},
};

static const struct setter *current_setter;

static int run_setter(void *arg)
{
    return current_setter->call(arg);
}

static void check_setter(void *arg, int rc, enum ts_alloc_source source)
{
    struct fa_env *e = arg;

    if (source == TS_ALLOC_NONE) {
        TS_ASSERT_RC_MSG(rc, 0, ctx_message(e->ctx));
    } else if (rc != 0) {
        assert_clean(current_setter->name, source, rc, ctx_message(e->ctx));
        /* The context is intact: the setter works now. */
        TS_ASSERT_RC_MSG(current_setter->call(e), 0, ctx_message(e->ctx));
    }
}

static void free_made_context(void *arg)
{
    struct fa_env *e = arg;

    if (current_setter->creates) {
        tlsock_ctx_free(e->ctx);
        e->ctx = NULL;
    }
}

/* The setter's effect, in a handshake with the long-lived peer of the other role. */
static void verify_setter(struct fa_env *e, const struct setter *s)
{
    const struct tlsock_info *info = NULL;
    bool client = s->role == TLSOCK_CLIENT;

    if (s->creates) {
        TS_ASSERT_RC(current_setter->call(e), 0);
    }
    if (client && !s->own_trust) {
        TS_ASSERT_RC(set_ca_mem(e), 0);
    }
    if (!client && !s->own_cert) {
        TS_ASSERT_RC(set_cert_file(e), 0);
    }
    pair_open(e, client ? e->ctx : e->cctx, client ? e->sctx : e->ctx);
    TS_ASSERT_RC_MSG(ts_pair_handshake(&e->pair), 0, pair_message(e));
    TS_ASSERT_RC(tlsock_conn_info(e->pair.client, &info), 0);
    assert_string_equal(info->version, s->version != NULL ? s->version : "TLSv1.3");
    assert_string_equal(info->alpn, s->alpn != NULL ? s->alpn : "");
}

static void test_setters(void **state)
{
    struct fa_env *e = *state;
    const struct ts_alloc_case c = {
        .name = "setter",
        .setup = nothing,
        .run = run_setter,
        .check = check_setter,
        .teardown = free_made_context,
    };

    assert_int_equal(ts_workdir_write(&e->wd, "ca.pem", ts_pki.ca.cert, strlen(ts_pki.ca.cert)), 0);
    assert_int_equal(
        ts_workdir_write(&e->wd, "cert.pem", ts_pki.server.cert, strlen(ts_pki.server.cert)), 0);
    assert_int_equal(
        ts_workdir_write(&e->wd, "key.pem", ts_pki.server.key, strlen(ts_pki.server.key)), 0);
    make_protected_files(e);
    contexts_make(e, protocol_rounds[0]);
    /* The server's ALPN is for the client setter, the client's for the server's. */
    TS_ASSERT_RC(tlsock_ctx_set_alpn(e->sctx, "http/1.1"), 0);
    for (size_t i = 0; i < sizeof(setters) / sizeof(setters[0]); i++) {
        struct ts_alloc_case named = c;

        current_setter = &setters[i];
        named.name = setters[i].name;
        if (!setters[i].creates) {
            TS_ASSERT_RC(ctx_new(setters[i].role, &e->ctx), 0);
        }
        if (i == 0 || setters[i].role == TLSOCK_SERVER) {
            tlsock_ctx_free(e->cctx);
            e->cctx = NULL;
            TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &e->cctx), 0);
            TS_ASSERT_RC(tlsock_ctx_set_alpn(e->cctx, "h2,http/1.1"), 0);
        }
        ts_alloc_loop(&named, e, MAX_RUNS, NULL);
        verify_setter(e, &setters[i]);
        run_free(e);
    }
}

/* ---- connect: resolving, the socket, the context's freeze and the client's handshake --------- */

/*
 * Each run gets a new client context (made unarmed: its making is the setters' test), so that
 * every run is its first connection: the freeze and the first verification against the trust
 * anchor happen in it.
 */
static void setup_connect(void *arg)
{
    struct fa_env *e = arg;

    TS_ASSERT_RC(ctx_new(TLSOCK_CLIENT, &e->ctx), 0);
    TS_ASSERT_RC(set_ca_mem(e), 0);
    TS_ASSERT_RC(tlsock_ctx_set_protocols(e->ctx, e->protocols), 0);
}

static int connect_once(struct fa_env *e)
{
    struct tlsock_opts opts = ts_opts();

    /* A name, not an address: the connection resolves it. */
    return tlsock_connect(e->ctx, "localhost", e->echo.port, &opts, &e->conn);
}

static int run_connect(void *arg)
{
    return connect_once(arg);
}

static void check_connect(void *arg, int rc, enum ts_alloc_source source)
{
    struct fa_env *e = arg;
    const struct tlsock_info *info = NULL;
    bool tolerant = absorbed_by_openssl(source, rc);

    if (source == TS_ALLOC_NONE) {
        TS_ASSERT_RC_MSG(rc, 0, tlsock_errmsg());
    } else if (rc != 0) {
        assert_clean("connect", source, rc, tlsock_errmsg());
        assert_null(e->conn);
        /* The context is intact: it connects now. */
        TS_ASSERT_RC_MSG(connect_once(e), 0, tlsock_errmsg());
    }
    TS_ASSERT_RC(tlsock_conn_info(e->conn, &info), 0);
    assert_string_equal(info->version, version_of(e->protocols));
    assert_works("connect: exchange", tolerant, ts_client_exchange(e->conn, SIZE),
                 tlsock_conn_errmsg(e->conn));
}

/* TLS 1.3 only: the TLS 1.2 handshake's allocations are the memory-mode and accept cases'. */
static void test_connect(void **state)
{
    struct fa_env *e = *state;
    const struct ts_alloc_case c = {
        .name = "connect",
        .setup = setup_connect,
        .run = run_connect,
        .check = check_connect,
        .teardown = run_free,
    };

    contexts_make(e, protocol_rounds[0]);
    echo_start(&e->echo, e->sctx);
    ts_alloc_loop(&c, e, MAX_RUNS, NULL);
    echo_stop(&e->echo);
}

/* ---- accept: a listener, tlsock_accept and the server's handshake ---------------------------- */

static void *client_main(void *arg)
{
    struct client_thread *t = arg;
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;

    if (t->handshake_timeout_ms > 0) {
        opts.handshake_timeout_ms = t->handshake_timeout_ms;
    }
    t->rc = tlsock_connect(t->ctx, "127.0.0.1", t->port, &opts, &conn);
    if (t->rc == 0 && !ts_gate_wait(&t->gate, 2 * TS_IO_TIMEOUT_MS)) {
        t->rc = TLSOCK_ETIMEDOUT;
    }
    if (t->rc == 0 && atomic_load(&t->go)) {
        t->rc = ts_client_exchange(conn, SIZE);
    }
    snprintf(t->errmsg, sizeof(t->errmsg), "%s",
             conn != NULL ? tlsock_conn_errmsg(conn) : tlsock_errmsg());
    tlsock_close(conn);
    atomic_store(&t->done, true);
    return NULL;
}

/* Starts a client of the listener (its thread's allocations are never failed). */
static int client_start(struct fa_env *e, uint16_t port, int handshake_timeout_ms)
{
    e->peer = (struct client_thread){
        .ctx = e->cctx, .port = port, .handshake_timeout_ms = handshake_timeout_ms};
    ts_gate_init(&e->peer.gate);
    atomic_init(&e->peer.go, false);
    atomic_init(&e->peer.done, false);
    if (pthread_create(&e->peer.thread, NULL, client_main, &e->peer) != 0) {
        ts_gate_destroy(&e->peer.gate);
        return TS_ESETUP;
    }
    e->peer.started = true;
    return 0;
}

static int accept_step(struct fa_env *e, int step)
{
    struct tlsock_opts opts = ts_opts();

    switch (step) {
    case 0:
        return tlsock_listen(e->sctx, "127.0.0.1", 0, 0, &e->lis);
    case 1:
        return client_start(e, tlsock_listener_port(e->lis), 0);
    case 2:
        return tlsock_accept(e->lis, &opts, &e->conn);
    case 3:
        return tlsock_handshake(e->conn);
    default:
        return TS_EMISMATCH;
    }
}
enum { ACCEPT_STEPS = 4 };

static int run_accept(void *arg)
{
    return run_steps(arg, accept_step, ACCEPT_STEPS);
}

static const char *accept_message(const struct fa_env *e)
{
    if (e->step == 3) {
        return tlsock_conn_errmsg(e->conn);
    }
    return e->step == 2 ? tlsock_listener_errmsg(e->lis) : tlsock_errmsg();
}

static void check_accept(void *arg, int rc, enum ts_alloc_source source)
{
    struct fa_env *e = arg;
    struct ts_exchange ex = {.size = SIZE};
    bool tolerant = absorbed_by_openssl(source, rc);

    if (source == TS_ALLOC_NONE) {
        TS_ASSERT_RC_MSG(rc, 0, accept_message(e));
    } else if (rc != 0) {
        assert_clean("accept", source, rc, accept_message(e));
        /* The client stops first: a server closing gracefully waits a little for its FIN. */
        if (e->peer.started) {
            ts_gate_open(&e->peer.gate);
        }
        if (e->step == 3) {
            /* A failed handshake is sticky: the connection can only be closed. */
            TS_ASSERT_RC(tlsock_handshake(e->conn), rc);
            tlsock_close(e->conn);
            e->conn = NULL;
        }
        assert_null(e->conn);
        client_join(e, false);
        /* The listener (or the context, when listening failed) is intact: it serves. */
        e->step = e->lis == NULL ? 0 : 1;
        for (; e->step < ACCEPT_STEPS; e->step++) {
            TS_ASSERT_RC_MSG(accept_step(e, e->step), 0, accept_message(e));
        }
    }
    /* The client's exchange runs while the server serves it, then it is joined. */
    atomic_store(&e->peer.go, true);
    ts_gate_open(&e->peer.gate);
    assert_works("accept: exchange", tolerant, ts_serve_exchange(e->conn, &ex),
                 tlsock_conn_errmsg(e->conn));
    tlsock_close(e->conn);
    e->conn = NULL;
    client_join(e, true);
    assert_works("accept: client", tolerant, e->peer.rc, e->peer.errmsg);
    if (e->peer.rc == 0) {
        TS_ASSERT_RC(ex.final_rc, TLSOCK_ECLOSED);
    }
}

static void test_accept(void **state)
{
    struct fa_env *e = *state;
    const struct ts_alloc_case c = {
        .name = "accept",
        .setup = nothing,
        .run = run_accept,
        .check = check_accept,
        .teardown = run_free,
    };

    for (size_t i = 0; i < ROUNDS; i++) {
        contexts_make(e, protocol_rounds[i]);
        ts_alloc_loop(&c, e, MAX_RUNS, NULL);
    }
}

/* ---- memory mode: attach_mem, the handshake through feed and drain, data both ways ----------- */

static int run_mem_handshake(void *arg)
{
    struct fa_env *e = arg;
    int rc = pair_attach(e, e->cctx, e->sctx);

    if (rc == 0) {
        e->step = 2;
        rc = ts_pair_handshake(&e->pair);
    }
    return rc;
}

/*
 * After a failed step of a memory-mode pair, @p go_on goes on: a failure in a handshake, a read
 * or a write is sticky (the same code again), a failed feed is not (the pair's path holds the
 * bytes, they go in now, and everything gets through).
 */
static void resume(struct fa_env *e, int rc, int (*go_on)(struct fa_env *e))
{
    int again = go_on(e);

    if (again != 0 && again != rc) {
        fail_msg("going on after %s gave %s: \"%s\"", ts_rc_name(rc), ts_rc_name(again),
                 pair_message(e));
    }
}

static int go_on_handshake(struct fa_env *e)
{
    int rc = ts_pair_handshake(&e->pair);

    return rc != 0 ? rc : transfers_run(e);
}

static void check_mem_handshake(void *arg, int rc, enum ts_alloc_source source)
{
    struct fa_env *e = arg;
    bool tolerant = absorbed_by_openssl(source, rc);

    if (source == TS_ALLOC_NONE) {
        TS_ASSERT_RC_MSG(rc, 0, pair_message(e));
    } else if (rc != 0) {
        assert_clean("memory handshake", source, rc, pair_message(e));
        if (e->step < 2) {
            /* attach_mem failed: nothing was made, and it works now. */
            assert_true(e->step == 0 ? e->pair.client == NULL : e->pair.server == NULL);
            pair_open(e, e->cctx, e->sctx);
            rc = 0;
        }
    }
    transfers_init(e);
    if (rc != 0) {
        resume(e, rc, go_on_handshake);
        return;
    }
    assert_works("memory handshake: data", tolerant, go_on_handshake(e), pair_message(e));
}

static void test_mem_handshake(void **state)
{
    struct fa_env *e = *state;
    const struct ts_alloc_case c = {
        .name = "memory: attach and handshake",
        .setup = nothing,
        .run = run_mem_handshake,
        .check = check_mem_handshake,
        .teardown = run_free,
    };

    for (size_t i = 0; i < ROUNDS; i++) {
        contexts_make(e, protocol_rounds[i]);
        ts_alloc_loop(&c, e, MAX_RUNS, NULL);
    }
}

static void setup_mem_data(void *arg)
{
    struct fa_env *e = arg;

    pair_open(e, e->cctx, e->sctx);
    TS_ASSERT_RC_MSG(ts_pair_handshake(&e->pair), 0, pair_message(e));
    transfers_init(e);
}

static int run_mem_data(void *arg)
{
    return transfers_run(arg);
}

static void check_mem_data(void *arg, int rc, enum ts_alloc_source source)
{
    struct fa_env *e = arg;

    if (source == TS_ALLOC_NONE || rc == 0) {
        /* The transfers compared every byte. */
        TS_ASSERT_RC_MSG(rc, 0, pair_message(e));
        return;
    }
    assert_clean("memory data", source, rc, pair_message(e));
    resume(e, rc, transfers_run);
}

static void test_mem_data(void **state)
{
    struct fa_env *e = *state;
    const struct ts_alloc_case c = {
        .name = "memory: data both ways",
        .setup = setup_mem_data,
        .run = run_mem_data,
        .check = check_mem_data,
        .teardown = run_free,
    };

    for (size_t i = 0; i < ROUNDS; i++) {
        contexts_make(e, protocol_rounds[i]);
        ts_alloc_loop(&c, e, MAX_RUNS, NULL);
    }
}

/* ---- blocking data, detach and stdio over a socket ------------------------------------------- */

/* A connection to the echo server (unarmed), with the long-lived client context. */
static void connect_echo(struct fa_env *e)
{
    struct tlsock_opts opts = ts_opts();

    TS_ASSERT_RC_MSG(tlsock_connect(e->cctx, "127.0.0.1", e->echo.port, &opts, &e->conn), 0,
                     tlsock_errmsg());
}

/* The echo server's answer: SIZE bytes of its pattern, then its close_notify. */
static int read_answer(struct fa_env *e)
{
    unsigned char byte;
    size_t n = 0;
    int rc = ts_read_full(e->conn, e->in, SIZE);

    if (rc == 0 && memcmp(e->in, e->back, SIZE) != 0) {
        rc = TS_EMISMATCH;
    }
    if (rc == 0) {
        rc = tlsock_read(e->conn, &byte, 1, &n);
        rc = rc == TLSOCK_ECLOSED ? 0 : (rc == 0 ? TS_EMISMATCH : rc);
    }
    return rc;
}

static void setup_write(void *arg)
{
    connect_echo(arg);
}

static int run_write(void *arg)
{
    struct fa_env *e = arg;

    /* More than one record: the records are collected and sent together (corked). */
    return tlsock_write(e->conn, e->out, SIZE);
}

/* A failed read or write is fatal: every later call says the same. */
static void assert_sticky(struct fa_env *e, int rc)
{
    size_t n = 0;

    TS_ASSERT_RC(tlsock_write(e->conn, e->out, 1), rc);
    TS_ASSERT_RC(tlsock_read(e->conn, e->in, 1, &n), rc);
}

static void check_write(void *arg, int rc, enum ts_alloc_source source)
{
    struct fa_env *e = arg;

    if (source != TS_ALLOC_NONE && rc != 0) {
        assert_clean("write", source, rc, tlsock_conn_errmsg(e->conn));
        assert_sticky(e, rc);
        return;
    }
    TS_ASSERT_RC_MSG(rc, 0, tlsock_conn_errmsg(e->conn));
    assert_works("write: the answer", absorbed_by_openssl(source, rc), read_answer(e),
                 tlsock_conn_errmsg(e->conn));
}

static void setup_read(void *arg)
{
    struct fa_env *e = arg;

    connect_echo(e);
    TS_ASSERT_RC(tlsock_write(e->conn, e->out, SIZE), 0);
}

static int run_read(void *arg)
{
    return read_answer(arg);
}

static void check_read(void *arg, int rc, enum ts_alloc_source source)
{
    struct fa_env *e = arg;

    if (source != TS_ALLOC_NONE && rc != 0) {
        assert_clean("read", source, rc, tlsock_conn_errmsg(e->conn));
        assert_sticky(e, rc);
        return;
    }
    /* read_answer() compared every byte. */
    TS_ASSERT_RC_MSG(rc, 0, tlsock_conn_errmsg(e->conn));
}

/* After the exchange the server has sent close_notify and waits for ours: detach gets it. */
static void setup_detach(void *arg)
{
    struct fa_env *e = arg;

    connect_echo(e);
    TS_ASSERT_RC(tlsock_write(e->conn, e->out, SIZE), 0);
    TS_ASSERT_RC(ts_read_full(e->conn, e->in, SIZE), 0);
}

static int detach_once(struct fa_env *e)
{
    unsigned char leftover[64];
    int rc = tlsock_detach(e->conn, &e->fd, leftover, sizeof(leftover), &e->left);

    if (rc == 0) {
        e->conn = NULL; /* freed */
    }
    return rc;
}

static int run_detach(void *arg)
{
    return detach_once(arg);
}

static void check_detach(void *arg, int rc, enum ts_alloc_source source)
{
    struct fa_env *e = arg;

    if (source != TS_ALLOC_NONE && rc != 0) {
        assert_clean("detach", source, rc, tlsock_conn_errmsg(e->conn));
        /* The connection is still there: detaching again works, or fails as before. */
        int again = detach_once(e);
        if (again != 0) {
            TS_ASSERT_RC(again, rc);
            return;
        }
    } else {
        TS_ASSERT_RC_MSG(rc, 0, tlsock_conn_errmsg(e->conn));
    }
    /* The socket comes back blocking, with nothing left over. */
    assert_null(e->conn);
    assert_true(e->fd >= 0);
    assert_int_equal(fcntl(e->fd, F_GETFL) & O_NONBLOCK, 0);
    assert_int_equal(e->left, 0);
}

/* tlsock_fopen on a memory-mode connection (the stream needs no handshake to be made). */
static void setup_fopen(void *arg)
{
    struct fa_env *e = arg;
    struct tlsock_opts opts = ts_opts();

    opts.verify_name = "localhost";
    TS_ASSERT_RC(tlsock_attach_mem(e->cctx, &opts, &e->conn), 0);
}

static int run_fopen(void *arg)
{
    struct fa_env *e = arg;

    return tlsock_fopen(e->conn, "r+", &e->file);
}

static void check_fopen(void *arg, int rc, enum ts_alloc_source source)
{
    struct fa_env *e = arg;

    if (source != TS_ALLOC_NONE && rc != 0) {
        assert_clean("fopen", source, rc, tlsock_conn_errmsg(e->conn));
        assert_null(e->file);
        /* The connection stays the caller's, and a stream can be made of it now. */
        rc = tlsock_fopen(e->conn, "r+", &e->file);
    }
    TS_ASSERT_RC(rc, 0);
    assert_non_null(e->file);
}

static void test_socket_data(void **state)
{
    struct fa_env *e = *state;
    const struct ts_alloc_case cases[] = {
        {.name = "write", .setup = setup_write, .run = run_write, .check = check_write},
        {.name = "read", .setup = setup_read, .run = run_read, .check = check_read},
        {.name = "detach", .setup = setup_detach, .run = run_detach, .check = check_detach},
        {.name = "fopen", .setup = setup_fopen, .run = run_fopen, .check = check_fopen},
    };

    for (size_t i = 0; i < ROUNDS; i++) {
        contexts_make(e, protocol_rounds[i]);
        echo_start(&e->echo, e->sctx);
        for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
            struct ts_alloc_case c = cases[k];

            c.teardown = run_free;
            ts_alloc_loop(&c, e, MAX_RUNS, NULL);
        }
        echo_stop(&e->echo);
    }
}

/* ---- memory mode: detach with data before the close_notify; connection info ------------------ */

static void setup_mem_detach(void *arg)
{
    struct fa_env *e = arg;

    setup_mem_data(e);
    /* The server's last data, then its close_notify. */
    TS_ASSERT_RC(tlsock_write(e->pair.server, e->back, TAIL), 0);
    TS_ASSERT_RC(tlsock_shutdown(e->pair.server), 0);
    TS_ASSERT_RC(ts_pair_move(&e->pair, TS_S2C), 0);
}

/* 0 when @p rc is what the step expects (@p want); else @p rc, or TS_EMISMATCH for a 0. */
static int expect(int rc, int want)
{
    if (rc == want) {
        return 0;
    }
    return rc == 0 ? TS_EMISMATCH : rc;
}

/*
 * The detach of a client whose peer sent data and close_notify: the data is kept for a read
 * (EINVAL, read it), our close_notify must be drained (EWANT_WRITE), then the connection goes.
 */
static int run_mem_detach(void *arg)
{
    struct fa_env *e = arg;
    unsigned char leftover[64];
    size_t n = 0;
    int rc = expect(tlsock_detach(e->pair.client, &e->fd, leftover, sizeof(leftover), &e->left),
                    TLSOCK_EINVAL);

    if (rc == 0) {
        rc = tlsock_read(e->pair.client, e->in, SIZE, &n);
    }
    if (rc == 0 && (n != TAIL || memcmp(e->in, e->back, TAIL) != 0)) {
        rc = TS_EMISMATCH;
    }
    if (rc == 0) {
        rc = expect(tlsock_detach(e->pair.client, &e->fd, leftover, sizeof(leftover), &e->left),
                    TLSOCK_EWANT_WRITE);
    }
    if (rc == 0) {
        rc = ts_pair_move(&e->pair, TS_C2S);
    }
    if (rc == 0) {
        rc = tlsock_detach(e->pair.client, &e->fd, leftover, sizeof(leftover), &e->left);
    }
    if (rc == 0) {
        e->pair.client = NULL; /* freed */
    }
    return rc;
}

static void check_mem_detach(void *arg, int rc, enum ts_alloc_source source)
{
    struct fa_env *e = arg;

    if (source != TS_ALLOC_NONE && rc != 0) {
        /* The connection can be closed (the teardown does). */
        assert_clean("memory detach", source, rc, pair_message(e));
        return;
    }
    TS_ASSERT_RC_MSG(rc, 0, pair_message(e));
    assert_null(e->pair.client);
    assert_int_equal(e->fd, -1);
    assert_int_equal(e->left, 0);
}

static int run_info(void *arg)
{
    struct fa_env *e = arg;
    const struct tlsock_info *info = NULL;
    int rc = tlsock_conn_info(e->pair.client, &info);

    return rc != 0 ? rc : tlsock_conn_info(e->pair.server, &info);
}

/* What both sides must say about the session. */
static void assert_info(struct fa_env *e)
{
    const struct tlsock_info *ci = NULL;
    const struct tlsock_info *si = NULL;

    TS_ASSERT_RC(tlsock_conn_info(e->pair.client, &ci), 0);
    TS_ASSERT_RC(tlsock_conn_info(e->pair.server, &si), 0);
    assert_string_equal(ci->version, version_of(e->protocols));
    assert_string_equal(si->version, ci->version);
    assert_string_equal(si->cipher, ci->cipher);
    assert_true(ci->cipher[0] != '\0');
    assert_string_equal(ci->servername, "localhost");
    assert_string_equal(si->servername, "localhost");
    TS_ASSERT_CONTAINS(ci->peer_subject, "CN=" TS_SERVER_CN);
    TS_ASSERT_CONTAINS(ci->peer_sans, "localhost");
    assert_int_equal(strlen(ci->peer_fingerprint), TLSOCK_FINGERPRINT_SIZE - 1);
    assert_int_equal(ci->verify_result, 0);
    assert_string_equal(ci->verify_message, "ok");
    assert_string_equal(si->peer_subject, "");
}

static void check_info(void *arg, int rc, enum ts_alloc_source source)
{
    struct fa_env *e = arg;

    if (source != TS_ALLOC_NONE && rc != 0) {
        assert_clean("info", source, rc, pair_message(e));
    } else {
        TS_ASSERT_RC_MSG(rc, 0, pair_message(e));
    }
    /* Whatever failed, asking again gives the whole truth; nothing was left out quietly. */
    assert_info(e);
}

static void test_mem_detach_info(void **state)
{
    struct fa_env *e = *state;
    const struct ts_alloc_case cases[] = {
        {.name = "memory: detach",
         .setup = setup_mem_detach,
         .run = run_mem_detach,
         .check = check_mem_detach},
        {.name = "info", .setup = setup_mem_data, .run = run_info, .check = check_info},
    };

    for (size_t i = 0; i < ROUNDS; i++) {
        contexts_make(e, protocol_rounds[i]);
        for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
            struct ts_alloc_case c = cases[k];

            c.teardown = run_free;
            ts_alloc_loop(&c, e, MAX_RUNS, NULL);
        }
    }
}

/* ---- tlsock_ctx_set_impl: the settings replayed on the other implementation ------------------ */

#if TS_BOTH_IMPLS

static int other_impl(int impl)
{
    return impl == TLSOCK_IMPL_OPENSSL ? TLSOCK_IMPL_GNUTLS : TLSOCK_IMPL_OPENSSL;
}

static void setup_set_impl(void *arg)
{
    struct fa_env *e = arg;

    TS_ASSERT_RC(ctx_new(TLSOCK_CLIENT, &e->ctx), 0);
    TS_ASSERT_RC(set_ca_mem(e), 0);
    TS_ASSERT_RC(set_protocols(e), 0);
    TS_ASSERT_RC(set_client_alpn(e), 0);
}

static int run_set_impl(void *arg)
{
    struct fa_env *e = arg;

    return tlsock_ctx_set_impl(e->ctx, other_impl(tlsock_ctx_impl(e->cctx)));
}

static void check_set_impl(void *arg, int rc, enum ts_alloc_source source)
{
    struct fa_env *e = arg;
    int other = other_impl(tlsock_ctx_impl(e->cctx));
    const struct tlsock_info *info = NULL;

    if (source != TS_ALLOC_NONE && rc != 0) {
        assert_clean("set_impl", source, rc, ctx_message(e->ctx));
        /* The header: the context then stays as it was. */
        assert_int_equal(tlsock_ctx_impl(e->ctx), tlsock_ctx_impl(e->cctx));
        TS_ASSERT_RC_MSG(tlsock_ctx_set_impl(e->ctx, other), 0, ctx_message(e->ctx));
    } else {
        TS_ASSERT_RC_MSG(rc, 0, ctx_message(e->ctx));
        if (absorbed_by_openssl(source, rc)) {
            return; /* a context OpenSSL made without something it could not allocate */
        }
    }
    assert_int_equal(tlsock_ctx_impl(e->ctx), other);
    /* Every replayed setting is in force on the other implementation. */
    pair_open(e, e->ctx, e->sctx);
    TS_ASSERT_RC_MSG(ts_pair_handshake(&e->pair), 0, pair_message(e));
    TS_ASSERT_RC(tlsock_conn_info(e->pair.client, &info), 0);
    assert_string_equal(info->version, "TLSv1.2");
    assert_string_equal(info->alpn, "http/1.1");
}

static void test_set_impl(void **state)
{
    struct fa_env *e = *state;
    const struct ts_alloc_case c = {
        .name = "set_impl",
        .setup = setup_set_impl,
        .run = run_set_impl,
        .check = check_set_impl,
        .teardown = run_free,
    };

    contexts_make(e, protocol_rounds[0]);
    TS_ASSERT_RC(tlsock_ctx_set_alpn(e->sctx, "http/1.1"), 0);
    ts_alloc_loop(&c, e, MAX_RUNS, NULL);
}
#endif /* TS_BOTH_IMPLS */

#if TS_HAVE_UV
/* ---- the libuv driver: a client connecting on a loop ------------------------------------------
 */

/* What one run's loop saw. */
static struct {
    uv_loop_t loop;
    uv_timer_t guard;
    uv_timer_t wake;
    bool guard_fired;
    bool server_closed;
    int connects;
    int status;
    int closes;
    /* The data case: its connection, what it received, how its write and stream ended. */
    struct tlsock_uv_conn *conn;
    size_t rx_len;
    int write_status;
    int event;
} uvc;

static void uvc_on_connect(struct tlsock_uv_conn *conn, int status)
{
    uvc.connects++;
    uvc.status = status;
    tlsock_uv_close(conn);
}

static void uvc_on_close(struct tlsock_uv_conn *conn)
{
    (void)conn;
    uvc.closes++;
}

static void uvc_on_guard(uv_timer_t *timer)
{
    (void)timer;
    uvc.guard_fired = true;
}

/* A loop for the run (made unarmed: the application's, not tlsock's). */
static void setup_uv_connect(void *arg)
{
    (void)arg;
    memset(&uvc, 0, sizeof(uvc));
    assert_int_equal(uv_loop_init(&uvc.loop), 0);
    assert_int_equal(uv_timer_init(&uvc.loop, &uvc.guard), 0);
    assert_int_equal(uv_timer_init(&uvc.loop, &uvc.wake), 0);
}

/*
 * tlsock_uv_connect, then the loop until the connection is closed again: its on_connect
 * status, or tlsock_uv_connect's own failure (no callback then). TS_NOT_RUN when nothing came
 * before the guard timer: a hang.
 */
static int uv_connect_once(struct fa_env *e)
{
    struct tlsock_uv_opts opts = TLSOCK_UV_OPTS_INIT;
    struct tlsock_uv_conn *conn = NULL;
    int connects = uvc.connects;
    int closes = uvc.closes;
    int rc;

    opts.servername = "localhost";
    opts.connect_timeout_ms = TS_IO_TIMEOUT_MS;
    opts.handshake_timeout_ms = TS_IO_TIMEOUT_MS;
    opts.on_connect = uvc_on_connect;
    opts.on_close = uvc_on_close;
    rc = tlsock_uv_connect(&uvc.loop, e->cctx, "127.0.0.1", e->echo.port, &opts, &conn);
    if (rc != 0) {
        return rc;
    }
    uvc.guard_fired = false;
    (void)uv_timer_start(&uvc.guard, uvc_on_guard, 2 * TS_IO_TIMEOUT_MS, 0);
    for (long i = 0; i < 10000000 && uvc.closes == closes && !uvc.guard_fired; i++) {
        loop_turn(&uvc.loop);
    }
    (void)uv_timer_stop(&uvc.guard);
    if (uvc.closes == closes || uvc.connects != connects + 1) {
        return TS_NOT_RUN;
    }
    return uvc.status;
}

static int run_uv_connect(void *arg)
{
    return uv_connect_once(arg);
}

/* The message of a uv run's outcome: TS_NOT_RUN is a callback that never came. */
static const char *uv_message(int rc)
{
    return rc == TS_NOT_RUN ? "neither on_connect nor on_accept_error came" : tlsock_errmsg();
}

/* Nothing of the run is left on the loop, which closes. */
static void uv_loop_done(void)
{
    uv_close((uv_handle_t *)&uvc.guard, NULL);
    uv_close((uv_handle_t *)&uvc.wake, NULL);
    (void)uv_run(&uvc.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&uvc.loop), 0);
}

static void check_uv_connect(void *arg, int rc, enum ts_alloc_source source)
{
    struct fa_env *e = arg;

    if (source != TS_ALLOC_NONE && rc != 0) {
        assert_clean("uv connect", source, rc, uv_message(rc));
        /* The context and the loop are intact: the next connection works. */
        rc = uv_connect_once(e);
    }
    TS_ASSERT_RC_MSG(rc, 0, uv_message(rc));
    uv_loop_done();
}

/* The server's side: a client handed over, or one that failed. */
static void uvs_on_connect(struct tlsock_uv_conn *conn, int status)
{
    uvc.connects++;
    uvc.status = status;
    tlsock_uv_close(conn);
}

static void uvs_on_accept_error(struct tlsock_uv_server *server, int code, const char *message)
{
    (void)server;
    (void)message;
    uvc.connects++;
    uvc.status = code;
}

static void uvs_on_server_close(struct tlsock_uv_server *server)
{
    (void)server;
    uvc.server_closed = true;
}

static void uvc_on_wake(uv_timer_t *timer)
{
    (void)timer; /* makes the loop go round: a client thread does not wake it */
}

/* A server on the run's loop (unarmed for the cases that fail only its clients). */
static int uv_serve_start(struct fa_env *e, struct tlsock_uv_server **out)
{
    struct tlsock_uv_opts opts = TLSOCK_UV_OPTS_INIT;

    opts.handshake_timeout_ms = TS_IO_TIMEOUT_MS;
    opts.on_connect = uvs_on_connect;
    opts.on_close = uvc_on_close;
    opts.on_accept_error = uvs_on_accept_error;
    return tlsock_uv_serve(&uvc.loop, e->sctx, "127.0.0.1", 0, 0, &opts, out);
}

/* A client of a run that failed the server's allocations gives up after this, so that the run
 * ends when the server drops it without a word. */
#define UV_CLIENT_GIVE_UP_MS 1000

/*
 * One blocking client (in its thread, closing right after its handshake, giving up after
 * @p give_up_ms) of @p server, the loop run until it is done: 0 when the server handed it over,
 * its accept error, TS_NOT_RUN when the server said nothing (or nothing came before the guard
 * timer: a hang).
 */
static int uv_serve_client(struct fa_env *e, struct tlsock_uv_server *server, int give_up_ms)
{
    int connects = uvc.connects;
    int rc = client_start(e, tlsock_uv_server_port(server), give_up_ms);

    if (rc != 0) {
        return rc;
    }
    ts_gate_open(&e->peer.gate);
    uvc.guard_fired = false;
    (void)uv_timer_start(&uvc.guard, uvc_on_guard, 2 * TS_IO_TIMEOUT_MS, 0);
    (void)uv_timer_start(&uvc.wake, uvc_on_wake, 5, 5);
    for (long i = 0; i < 10000000 && !atomic_load(&e->peer.done) && !uvc.guard_fired; i++) {
        loop_turn(&uvc.loop);
    }
    (void)uv_timer_stop(&uvc.wake);
    (void)uv_timer_stop(&uvc.guard);
    client_join(e, false);
    return uvc.guard_fired || uvc.connects == connects ? TS_NOT_RUN : uvc.status;
}

/* Closes @p server and runs the loop until it is gone. */
static void uv_serve_stop(struct tlsock_uv_server *server)
{
    uvc.server_closed = false;
    tlsock_uv_server_close(server, uvs_on_server_close);
    for (long i = 0; i < 10000000 && !uvc.server_closed; i++) {
        loop_turn(&uvc.loop);
    }
}

/* tlsock_uv_serve, one client (giving up after @p give_up_ms), and the server closed again. */
static int uv_serve_once(struct fa_env *e, int give_up_ms)
{
    struct tlsock_uv_server *server = NULL;
    int rc = uv_serve_start(e, &server);

    if (rc == 0) {
        rc = uv_serve_client(e, server, give_up_ms);
        uv_serve_stop(server);
    }
    return rc;
}

static int run_uv_serve(void *arg)
{
    return uv_serve_once(arg, UV_CLIENT_GIVE_UP_MS);
}

/*
 * Whether a run's client must try again, with time enough for a loaded machine: after a failed
 * allocation, to show the objects still serve; after none, when the client gave up too early (a
 * run that failed nothing must serve, but its handshake may take over UV_CLIENT_GIVE_UP_MS).
 */
static bool uv_try_again(int rc, enum ts_alloc_source source)
{
    return rc != 0 && (source != TS_ALLOC_NONE || rc == TS_NOT_RUN);
}

static void check_uv_serve(void *arg, int rc, enum ts_alloc_source source)
{
    struct fa_env *e = arg;

    if (source != TS_ALLOC_NONE && rc != 0) {
        assert_clean("uv serve", source, rc, uv_message(rc));
    }
    if (uv_try_again(rc, source)) {
        /* The context and the loop are intact: the next server serves. */
        rc = uv_serve_once(e, TS_IO_TIMEOUT_MS);
    }
    TS_ASSERT_RC_MSG(rc, 0, uv_message(rc));
    uv_loop_done();
}

/* A server made unarmed: only the handling of its client is failed. */
static struct tlsock_uv_server *uv_server;

static void setup_uv_client(void *arg)
{
    setup_uv_connect(arg);
    TS_ASSERT_RC(uv_serve_start(arg, &uv_server), 0);
}

static int run_uv_client(void *arg)
{
    return uv_serve_client(arg, uv_server, UV_CLIENT_GIVE_UP_MS);
}

static void check_uv_client(void *arg, int rc, enum ts_alloc_source source)
{
    struct fa_env *e = arg;

    if (source != TS_ALLOC_NONE && rc != 0) {
        assert_clean("uv serve: a client", source, rc, uv_message(rc));
    }
    if (uv_try_again(rc, source)) {
        /* The server goes on: it serves the next client. */
        rc = uv_serve_client(e, uv_server, TS_IO_TIMEOUT_MS);
    }
    TS_ASSERT_RC_MSG(rc, 0, uv_message(rc));
    uv_serve_stop(uv_server);
    uv_server = NULL;
    uv_loop_done();
}

/* ---- the libuv driver: data on an established connection --------------------------------- */

static struct fa_env *uvd_env; /* the callbacks' test objects */

static void uvd_on_connect(struct tlsock_uv_conn *conn, int status)
{
    uvc.connects++;
    uvc.status = status;
    uvc.conn = status == 0 ? conn : NULL;
}

static void uvd_on_read(struct tlsock_uv_conn *conn, const void *data, size_t len)
{
    (void)conn;
    if (len <= SIZE - uvc.rx_len) {
        memcpy(uvd_env->in + uvc.rx_len, data, len);
    }
    uvc.rx_len += len;
}

static void uvd_on_event(struct tlsock_uv_conn *conn, int code)
{
    (void)conn;
    uvc.event = code;
}

static void uvd_on_write(struct tlsock_uv_conn *conn, void *write_arg, int status)
{
    (void)conn;
    (void)write_arg;
    uvc.write_status = status;
}

/* Runs the loop until @p done holds or the guard fires; whether @p done holds. */
static bool uvd_run_until(bool (*done)(void))
{
    uvc.guard_fired = false;
    (void)uv_timer_start(&uvc.guard, uvc_on_guard, 2 * TS_IO_TIMEOUT_MS, 0);
    for (long i = 0; i < 10000000 && !done() && !uvc.guard_fired; i++) {
        loop_turn(&uvc.loop);
    }
    (void)uv_timer_stop(&uvc.guard);
    return done();
}

static bool uvd_connected(void)
{
    return uvc.connects > 0;
}

static bool uvd_ended(void)
{
    return uvc.event != TS_NOT_RUN;
}

static bool uvd_closed(void)
{
    return uvc.closes > 0;
}

/* A uv client of the echo server, connected unarmed: the data path is what gets failed. */
static void setup_uv_data(void *arg)
{
    struct fa_env *e = arg;
    struct tlsock_uv_opts opts = TLSOCK_UV_OPTS_INIT;
    struct tlsock_uv_conn *conn = NULL;

    setup_uv_connect(arg);
    uvd_env = e;
    uvc.event = TS_NOT_RUN;
    uvc.write_status = TS_NOT_RUN;
    memset(e->in, 0, SIZE);
    opts.servername = "localhost";
    opts.connect_timeout_ms = TS_IO_TIMEOUT_MS;
    opts.handshake_timeout_ms = TS_IO_TIMEOUT_MS;
    opts.on_connect = uvd_on_connect;
    opts.on_read = uvd_on_read;
    opts.on_event = uvd_on_event;
    opts.on_write = uvd_on_write;
    opts.on_close = uvc_on_close;
    TS_ASSERT_RC_MSG(tlsock_uv_connect(&uvc.loop, e->cctx, "127.0.0.1", e->echo.port, &opts, &conn),
                     0, tlsock_errmsg());
    assert_true(uvd_run_until(uvd_connected));
    TS_ASSERT_RC(uvc.status, 0);
}

/* Where the data case's failure is explained: the thread's message for a refused write. */
static bool uvd_write_refused;

/*
 * The exchange on the loop: SIZE bytes written, the server's SIZE bytes read back, then its
 * close_notify. 0, or how it failed: tlsock_uv_write's code, the write's status, the stream's
 * event, TS_EMISMATCH for wrong data, TS_NOT_RUN when the stream never ended (a hang).
 */
static int uv_data_once(struct fa_env *e)
{
    int rc = tlsock_uv_write(uvc.conn, e->out, SIZE, NULL);

    uvd_write_refused = rc != 0;
    if (rc != 0) {
        return rc;
    }
    if (!uvd_run_until(uvd_ended)) {
        return TS_NOT_RUN;
    }
    if (uvc.write_status != 0 && uvc.write_status != TS_NOT_RUN) {
        return uvc.write_status;
    }
    if (uvc.event != TLSOCK_ECLOSED) {
        return uvc.event;
    }
    return uvc.rx_len == SIZE && memcmp(e->in, e->back, SIZE) == 0 ? 0 : TS_EMISMATCH;
}

static int run_uv_data(void *arg)
{
    return uv_data_once(arg);
}

/* The message of the data case's outcome: the thread's for a refused write, else the
 * connection's (a callback's status or event). */
static const char *uv_data_message(int rc)
{
    if (rc == TS_NOT_RUN) {
        return "the stream never ended";
    }
    return uvd_write_refused ? tlsock_errmsg() : tlsock_uv_conn_errmsg(uvc.conn);
}

static void check_uv_data(void *arg, int rc, enum ts_alloc_source source)
{
    struct fa_env *e = arg;

    if (source != TS_ALLOC_NONE && rc != 0) {
        assert_clean("uv data", source, rc, uv_data_message(rc));
    } else {
        TS_ASSERT_RC_MSG(rc, 0, uv_data_message(rc));
    }
    /* The failed connection closes (its close callback comes)... */
    tlsock_uv_close(uvc.conn);
    assert_true(uvd_run_until(uvd_closed));
    uv_loop_done();
    if (source != TS_ALLOC_NONE && rc != 0) {
        /* ...and the context and the driver are intact: a new connection carries the data. */
        setup_uv_data(e);
        rc = uv_data_once(e);
        TS_ASSERT_RC_MSG(rc, 0, uv_data_message(rc));
        tlsock_uv_close(uvc.conn);
        assert_true(uvd_run_until(uvd_closed));
        uv_loop_done();
    }
}

/* The libuv driver's client and server; TLS 1.3 (the handshake's allocations are the same). */
static void test_uv(void **state)
{
    struct fa_env *e = *state;
    const struct ts_alloc_case c = {
        .name = "uv connect",
        .setup = setup_uv_connect,
        .run = run_uv_connect,
        .check = check_uv_connect,
        .teardown = nothing,
    };
    const struct ts_alloc_case s = {
        .name = "uv serve",
        .setup = setup_uv_connect,
        .run = run_uv_serve,
        .check = check_uv_serve,
        .teardown = nothing,
    };

    const struct ts_alloc_case d = {
        .name = "uv data",
        .setup = setup_uv_data,
        .run = run_uv_data,
        .check = check_uv_data,
        .teardown = nothing,
    };

    contexts_make(e, protocol_rounds[0]);
    echo_start(&e->echo, e->sctx);
    ts_alloc_loop(&c, e, MAX_RUNS, NULL);
    ts_alloc_loop(&d, e, MAX_RUNS, NULL);
    echo_stop(&e->echo);
    ts_alloc_loop(&s, e, MAX_RUNS, NULL);
}

/*
 * A server made before, only the handling of one client failed: the same server must serve the
 * next client. When the client's own handle cannot be allocated, the server turns it away with
 * its spare handle, so that libuv goes on watching the listener.
 */
static void test_uv_server_goes_on(void **state)
{
    struct fa_env *e = *state;
    const struct ts_alloc_case c = {
        .name = "uv serve: a client",
        .setup = setup_uv_client,
        .run = run_uv_client,
        .check = check_uv_client,
        .teardown = nothing,
    };

    contexts_make(e, protocol_rounds[0]);
    ts_alloc_loop(&c, e, MAX_RUNS, NULL);
}
#endif

/* ---- the process's first session ------------------------------------------------------------- */

/* What a child of test_first_session() reports. */
enum { FIRST_NOT_REACHED = 0, FIRST_RECOVERED = 1, FIRST_BROKEN = 2 };

/* In a new process: the first connection ever made, its @p n-th allocation failed. */
static int first_session(struct fa_env *e, unsigned long n)
{
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    enum ts_alloc_source source;
    int rc;

    opts.servername = "localhost";
    ts_alloc_arm(n);
    rc = tlsock_attach_mem(e->cctx, &opts, &conn);
    source = ts_alloc_disarm(NULL);
    tlsock_close(conn);
    conn = NULL;
    if (source == TS_ALLOC_NONE) {
        return rc == 0 ? FIRST_NOT_REACHED : FIRST_BROKEN;
    }
    if (rc != 0 && rc != TLSOCK_ENOMEM) {
        return FIRST_BROKEN;
    }
    /* Whatever failed the first time, the next connection is made. */
    rc = tlsock_attach_mem(e->cctx, &opts, &conn);
    tlsock_close(conn);
    return rc == 0 ? FIRST_RECOVERED : FIRST_BROKEN;
}

/*
 * The first session of a process also sets up what all later ones share (OpenSSL: the BIO
 * method through which tlsock moves bytes). A failed allocation there must fail that connection
 * only. Each run is a new process (fork) whose first connection fails at allocation n.
 */
static void test_first_session(void **state)
{
    struct fa_env *e = *state;
    int result = FIRST_RECOVERED;
    unsigned long n;

    contexts_make(e, protocol_rounds[0]);
    for (n = 1; n <= 1000 && result == FIRST_RECOVERED; n++) {
        int status = 0;
        pid_t pid = fork();

        assert_true(pid >= 0);
        if (pid == 0) {
            _exit(first_session(e, n));
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        result = WEXITSTATUS(status);
        if (result == FIRST_BROKEN) {
            fail_msg("the process's first connection, allocation %lu failed: the next one was "
                     "not made either",
                     n);
        }
    }
    print_message("first session: %lu allocations, each failed in a new process\n", n - 2);
    assert_int_equal(result, FIRST_NOT_REACHED);
}

/* ---- main ------------------------------------------------------------------------------------ */

int main(void)
{
    /* test_first_session first: its children must make the process's first connection. */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_first_session, fa_setup, fa_teardown),
        cmocka_unit_test_setup_teardown(test_mem_handshake, fa_setup, fa_teardown),
        cmocka_unit_test_setup_teardown(test_setters, fa_setup, fa_teardown),
        cmocka_unit_test_setup_teardown(test_connect, fa_setup, fa_teardown),
        cmocka_unit_test_setup_teardown(test_accept, fa_setup, fa_teardown),
        cmocka_unit_test_setup_teardown(test_mem_data, fa_setup, fa_teardown),
        cmocka_unit_test_setup_teardown(test_socket_data, fa_setup, fa_teardown),
        cmocka_unit_test_setup_teardown(test_mem_detach_info, fa_setup, fa_teardown),
#if TS_BOTH_IMPLS
        cmocka_unit_test_setup_teardown(test_set_impl, fa_setup, fa_teardown),
#endif
#if TS_HAVE_UV
        cmocka_unit_test_setup_teardown(test_uv, fa_setup, fa_teardown),
        cmocka_unit_test_setup_teardown(test_uv_server_goes_on, fa_setup, fa_teardown),
#endif
    };

    /* Before anything allocates through OpenSSL. */
    if (!ts_alloc_init()) {
        return 1;
    }
    return cmocka_run_group_tests_name("alloc_fail", tests, ts_pki_setup, ts_pki_teardown);
}
