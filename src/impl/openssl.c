/*
 * The OpenSSL 3 implementation of the vtable in impl.h.
 *
 * Sessions move bytes through a small BIO of ours over the socket fd instead of BIO_s_socket:
 * it sends with MSG_NOSIGNAL (so SIGPIPE never fires), restarts on EINTR, and remembers the real
 * errno so that errors are reported exactly. Nothing here waits: a would-block becomes a WANT code.
 */
#include <arpa/inet.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/dh.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "certsel.h"
#include "hello.h"
#include "impl.h"
#include "keylog.h"
#include "text.h"
#include "trust.h"
#include "openssl_util.h"

/* TLS 1.3 suites, strongest first; all AEAD, none weak. */
#define TLS13_SUITES "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"

/* Named cipher policies: TLS 1.2 cipher list and security level. */
static const struct cipher_policy {
    const char *name;
    const char *tls12_ciphers;
    int security_level;
} cipher_policies[] = {
    {"secure", "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL", 2},
    {"compat",
     "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:ECDHE+AES:RSA+AESGCM:RSA+AES:"
     "!aNULL:!eNULL:!MD5:!DSS:!3DES",
     2},
    {"legacy", "DEFAULT:@SECLEVEL=0", 0},
};

struct ossl_ctx {
    SSL_CTX *ssl_ctx;
    int role;
    unsigned char *alpn; /* wire format; the server's preference list */
    size_t alpn_len;
    struct ossl_chain *chains; /* every chain, numbered as the core's certsel */
    size_t nchains;
    struct tlsock__ossl_ctx_data data; /* the SSL_CTX's app data */
};

struct ossl_conn {
    /* Pointers and sizes, then ints, then bytes: no holes (memory per idle connection). */
    SSL *ssl;
    struct tlsock__transport *t; /* the core's: every byte the BIO moves goes through it */
    const char *refusal;         /* why our ClientHello callback refused the client (hello.h) */
    const struct ossl_ctx *oc;   /* servers: the context's chains */
    const struct tlsock__certsel *certsel; /* and the core's choice among them */
    size_t chain_index;                    /* the chain chosen for this client */
    char *failed_subject; /* the subject of the peer certificate verification refused */
    char *servername;     /* the SNI sent (client) or received (server); NULL for none */
    const struct tlsock__trust *trust;  /* the context's trust checks (the core's) */
    struct tlsock_conn *owner;          /* shown to the verify callback */
    char *verify_name;                  /* client: the name verified, NULL for none */
    struct tlsock__err verify_err;      /* why verify_hook() refused the peer, unset if not */
    const unsigned char *ocsp_response; /* server: the core's staple, NULL for none */
    size_t ocsp_response_len;
    struct tlsock__session_io sess;      /* resumption (openssl_session.c) */
    const struct tlsock__keylog *keylog; /* the core's, NULL when the context keeps none */
    int verify_mode;
    int alert_received; /* last alert description from the peer, -1 if none */
    int refusal_rc;     /* refusal's code: 0 for TLSOCK_EPROTO, or TLSOCK_ENOMEM */
    int verify_rc;      /* verify_err's code: TLSOCK_EVERIFY, or TLSOCK_ENOMEM */
    bool verify_ip;     /* client: the name verified is an IP address */
    bool ocsp_refused;  /* client_status_cb() refused the staple (verify_err) */
    bool truncated;     /* OpenSSL met the end of the stream without close_notify (bio_ctrl) */
};
/* Memory per idle connection (docs/async.md, "Memory"): a 176-byte glibc chunk on x86-64. */
_Static_assert(sizeof(struct ossl_conn) <= 21 * sizeof(void *),
               "the session grew: memory per idle connection");

/* ---------------------------------------------------------------------------------------------
 * Error reporting
 * ------------------------------------------------------------------------------------------- */

/* ---------------------------------------------------------------------------------------------
 * The BIO: OpenSSL's reads and writes go to the core's transport
 * ------------------------------------------------------------------------------------------- */

/*
 * Reads from the transport into @p buf: >0 bytes, 0 at end of stream, or a negative TLSOCK_E*
 * (WANT codes for "nothing now").
 */
/* Sets OpenSSL's retry flag for a transport that said "not now". */
static int bio_outcome(BIO *bio, ssize_t n, size_t *done, bool reading)
{
    if (n > 0) {
        *done = (size_t)n;
        return 1;
    }
    if (n == TLSOCK__TRANSPORT_RETRY) {
        if (reading) {
            BIO_set_retry_read(bio);
        } else {
            BIO_set_retry_write(bio);
        }
    }
    return 0;
}

static int bio_read(BIO *bio, char *buf, size_t len, size_t *nread)
{
    struct ossl_conn *c = BIO_get_data(bio);

    BIO_clear_retry_flags(bio);
    return bio_outcome(bio, tlsock__transport_read(c->t, buf, len), nread, true);
}

static int bio_write(BIO *bio, const char *buf, size_t len, size_t *nwritten)
{
    struct ossl_conn *c = BIO_get_data(bio);

    BIO_clear_retry_flags(bio);
    if (c->truncated) {
        /*
         * What OpenSSL writes once the stream was cut short is the decode_error alert it sends for
         * that: a peer that ended its side without close_notify sent nothing malformed, and
         * GnuTLS sends it nothing. Dropped, so that both implementations end the same way.
         */
        *nwritten = len;
        return 1;
    }
    return bio_outcome(bio, tlsock__transport_write(c->t, buf, len), nwritten, false);
}

static long bio_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
    struct ossl_conn *c = BIO_get_data(bio);

    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_EOF:
        /* OpenSSL asks this to tell a truncated stream from a would-block, once a read found
         * nothing: a yes is a truncation, which OpenSSL answers with an alert (bio_write). */
        if (c != NULL && c->t->eof) {
            c->truncated = true;
        }
        return c != NULL && c->t->eof;
    default:
        return 0;
    }
}

static int bio_create(BIO *bio)
{
    BIO_set_init(bio, 1);
    return 1;
}

static BIO_METHOD *bio_method;
static pthread_mutex_t bio_method_lock = PTHREAD_MUTEX_INITIALIZER;

/*
 * The BIO method every session shares, made by the first session that needs it; NULL without
 * memory. Not with pthread_once: a method that could not be made is tried again by the next
 * session, instead of failing every later session of the process.
 */
static BIO_METHOD *get_bio_method(void)
{
    BIO_METHOD *m = NULL;

    pthread_mutex_lock(&bio_method_lock);
    if (bio_method == NULL) {
        /*
         * -1 when OpenSSL could not set up its type counter, which it then never tries again:
         * any type serves, as tlsock never looks its BIOs up by type.
         */
        int index = BIO_get_new_index();
        m = BIO_meth_new((index != -1 ? index : 0) | BIO_TYPE_SOURCE_SINK, "tlsock transport");
        if (m != NULL) {
            BIO_meth_set_read_ex(m, bio_read);
            BIO_meth_set_write_ex(m, bio_write);
            BIO_meth_set_ctrl(m, bio_ctrl);
            BIO_meth_set_create(m, bio_create);
        }
        bio_method = m;
    }
    m = bio_method;
    pthread_mutex_unlock(&bio_method_lock);
    return m;
}

/*
 * The session's own connection, from the BIO that carries it (SSL_set_app_data would allocate
 * the session's ex_data stack: some 80 bytes per connection, kept for its life).
 */
static struct ossl_conn *conn_of(const SSL *ssl)
{
    return BIO_get_data(SSL_get_rbio(ssl));
}

/* ---------------------------------------------------------------------------------------------
 * Contexts
 * ------------------------------------------------------------------------------------------- */

static void info_callback(const SSL *ssl, int where, int ret)
{
    struct ossl_conn *c = conn_of(ssl);

    /* close_notify (0) is not an error; keep the last real alert for the error message. */
    /* SSL_CB_READ_ALERT is two bits (alert | read); a written alert shares the alert bit. */
    if (c != NULL && (where & SSL_CB_READ_ALERT) == SSL_CB_READ_ALERT && (ret & 0xff) != 0) {
        c->alert_received = ret & 0xff;
    }
}

/*
 * Installs the chain the core's rules choose for this client (certsel.h) as the session's only
 * certificate: OpenSSL keeps one per key type and would pick among them by itself.
 */
static int choose_chain(SSL *ssl, struct ossl_conn *c, const struct tlsock__hello *h, int version,
                        int *alert)
{
    struct tlsock__certsel_choice choice;

    if (c->certsel == NULL || c->oc->nchains == 0) {
        return SSL_CLIENT_HELLO_SUCCESS;
    }
    tlsock__certsel_pick(c->certsel, h, version, &choice);
    if (choice.refusal != NULL) {
        c->refusal = choice.refusal;
        *alert = choice.alert;
        return SSL_CLIENT_HELLO_ERROR;
    }
    c->chain_index = choice.index;
    if (c->oc->nchains == 1) {
        /* The context's one chain, which the SSL_CTX presents: no copy per session. */
        return SSL_CLIENT_HELLO_SUCCESS;
    }
    const struct ossl_chain *chain = &c->oc->chains[choice.index];
    SSL_certs_clear(ssl);
    if (SSL_use_cert_and_key(ssl, chain->leaf, chain->key, chain->rest, 1) != 1) {
        *alert = TLSOCK__ALERT_INTERNAL_ERROR;
        return SSL_CLIENT_HELLO_ERROR;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

/*
 * The ClientHello against the rules both implementations share (hello.h). OpenSSL's server
 * would accept a TLS 1.2 client that does not signal secure renegotiation (it only refuses to
 * renegotiate with it); GnuTLS's refuses it, and so does tlsock on both.
 */
static int client_hello_cb(SSL *ssl, int *alert, void *arg)
{
    struct ossl_conn *c = conn_of(ssl);
    struct tlsock__hello h;
    const unsigned char *data = NULL;
    size_t len = 0;

    (void)arg;
    if (c == NULL) {
        return SSL_CLIENT_HELLO_SUCCESS; /* not one of our sessions */
    }
    tlsock__hello_init(&h, (int)SSL_client_hello_get0_legacy_version(ssl));
    len = SSL_client_hello_get0_ciphers(ssl, &data);
    if (SSL_client_hello_isv2(ssl)) {
        /* An SSLv2-format hello: OpenSSL gives its cipher specs as they are, three bytes each. */
        tlsock__hello_suites_v2(&h, data, len);
    } else {
        tlsock__hello_suites(&h, data, len);
    }
    /* supported_groups: a TLS 1.2 client's curves limit the ECDSA keys certsel.c may choose. */
    static const unsigned types[] = {TLSOCK__EXT_SUPPORTED_VERSIONS, TLSOCK__EXT_RENEGOTIATION_INFO,
                                     TLSOCK__EXT_SERVER_NAME, TLSOCK__EXT_SIGNATURE_ALGORITHMS,
                                     TLSOCK__EXT_SUPPORTED_GROUPS};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (SSL_client_hello_get0_ext(ssl, types[i], &data, &len) == 1) {
            tlsock__hello_extension(&h, types[i], data, len);
        }
    }
    /* 0 is "no bound" (a configure callback may have cleared tlsock's range). */
    int min = SSL_get_min_proto_version(ssl);
    int max = SSL_get_max_proto_version(ssl);
    min = min != 0 ? min : TLS1_VERSION;
    max = max != 0 ? max : TLS1_3_VERSION;
    c->refusal = tlsock__hello_refusal(&h, min, max);
    if (c->refusal != NULL) {
        *alert = TLSOCK__ALERT_HANDSHAKE_FAILURE;
        return SSL_CLIENT_HELLO_ERROR;
    }
    /*
     * Kept for get_info: on a resumed TLS 1.2 session SSL_get_servername() gives the name the
     * session's first handshake accepted, and tlsock accepts none (no servername callback), so
     * it would say none. Replaced after a HelloRetryRequest.
     */
    free(c->servername);
    c->servername = h.has_servername ? strdup(h.servername) : NULL;
    if (h.has_servername && c->servername == NULL) {
        c->refusal = "out of memory keeping the client's server name";
        c->refusal_rc = TLSOCK_ENOMEM;
        *alert = TLSOCK__ALERT_INTERNAL_ERROR;
        return SSL_CLIENT_HELLO_ERROR;
    }
    return choose_chain(ssl, c, &h, tlsock__hello_version(&h, min, max), alert);
}

/* RFC 7301 section 3.2: the server picks; no overlap is a fatal no_application_protocol. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    struct ossl_ctx *oc = arg;
    unsigned char *selected = NULL;

    (void)ssl;
    if (SSL_select_next_proto(&selected, outlen, oc->alpn, (unsigned int)oc->alpn_len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED) {
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
}

static int apply_policy(SSL_CTX *ctx, const struct cipher_policy *p, struct tlsock__err *err)
{
    SSL_CTX_set_security_level(ctx, p->security_level);
    if (SSL_CTX_set_cipher_list(ctx, p->tls12_ciphers) != 1 ||
        SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES) != 1) {
        return tlsock__ossl_fail(err, TLSOCK_ECONFIG, "cannot set the cipher policy");
    }
    return 0;
}

/*
 * DHE suites need the server to have a group: RFC 7919's ffdhe2048 (112-bit security, what
 * security level 2 asks for), as the GnuTLS side uses. OpenSSL's SSL_CTX_set_dh_auto would pick
 * RFC 3526 primes, and smaller ones under weak certificates.
 */
static int set_dh_group(SSL_CTX *ctx, struct tlsock__err *err)
{
    EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_name(NULL, "DH", NULL);
    EVP_PKEY *group = NULL;
    int rc = 0;

    if (pctx == NULL || EVP_PKEY_paramgen_init(pctx) != 1 ||
        EVP_PKEY_CTX_set_dh_nid(pctx, NID_ffdhe2048) != 1 || EVP_PKEY_paramgen(pctx, &group) != 1 ||
        SSL_CTX_set0_tmp_dh_pkey(ctx, group) != 1) {
        EVP_PKEY_free(group);
        rc = tlsock__ossl_fail(err, TLSOCK_ECONFIG, "cannot set the DHE group ffdhe2048");
    }
    EVP_PKEY_CTX_free(pctx);
    return rc;
}

static int verify_hook(X509_STORE_CTX *store, void *arg);
static int server_status_cb(SSL *ssl, void *arg);
static int client_status_cb(SSL *ssl, void *arg);

static void ossl_ctx_free(void *nctx)
{
    struct ossl_ctx *oc = nctx;

    if (oc == NULL) {
        return;
    }
    SSL_CTX_free(oc->ssl_ctx);
    free(oc->alpn);
    for (size_t i = 0; i < oc->nchains; i++) {
        tlsock__ossl_chain_free(&oc->chains[i]);
    }
    free(oc->chains);
    free(oc);
}

const struct tlsock__session_io *tlsock__ossl_session_io(const SSL *ssl)
{
    const struct ossl_conn *c = conn_of(ssl);

    return c != NULL ? &c->sess : NULL;
}

/* OpenSSL's line goes through the shared key log writer, so it reads as GnuTLS's. */
static void keylog_cb(const SSL *ssl, const char *line)
{
    const struct ossl_conn *c = conn_of(ssl);

    if (c != NULL && c->keylog != NULL) {
        tlsock__keylog_line(c->keylog, line);
    }
}

/*
 * Set at freeze, never per session (the SSL_CTX is shared by threads once frozen), and only for
 * a context that keeps a key log: with a callback set, OpenSSL formats every secret of every
 * handshake into a line, in hex, whether or not the line is wanted.
 */
static void ossl_ctx_set_keylog(void *nctx, bool on)
{
    struct ossl_ctx *oc = nctx;

    SSL_CTX_set_keylog_callback(oc->ssl_ctx, on ? keylog_cb : NULL);
}

static int ossl_ctx_new(int role, void **out, struct tlsock__err *err)
{
    struct ossl_ctx *oc = calloc(1, sizeof(*oc));
    int rc = 0;

    if (oc == NULL) {
        return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory allocating an OpenSSL context");
    }
    oc->role = role;
    oc->ssl_ctx = SSL_CTX_new(role == TLSOCK_CLIENT ? TLS_client_method() : TLS_server_method());
    if (oc->ssl_ctx == NULL) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "SSL_CTX_new failed");
        goto fail;
    }
    SSL_CTX *ctx = oc->ssl_ctx;
    /* Setting ex_data allocates: unchecked, the callbacks would find nothing (NULL). */
    if (SSL_CTX_set_app_data(ctx, &oc->data) != 1) {
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "cannot attach the context's data");
        goto fail;
    }
    /*
     * Every default is set here explicitly rather than inherited from the distribution's
     * openssl.cnf, so tlsock behaves the same wherever it runs.
     */
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_clear_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_LEGACY_SERVER_CONNECT);
    /*
     * Every certificate the context trusts is a trust anchor, as on GnuTLS: a CA file holding an
     * intermediate CA accepts the chains under it. OpenSSL alone would go on to a self-signed
     * root and refuse without one ("unable to get issuer certificate").
     */
    X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), X509_V_FLAG_PARTIAL_CHAIN);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1) {
        rc = tlsock__ossl_fail(err, TLSOCK_ECONFIG, "cannot set the protocol range");
        goto fail;
    }
    rc = apply_policy(ctx, &cipher_policies[0], err);
    if (rc == 0 && role == TLSOCK_SERVER) {
        rc = set_dh_group(ctx, err);
    }
    if (rc != 0) {
        goto fail;
    }
    /* Clients verify server certificates for serverAuth, servers client ones for clientAuth. */
    X509_VERIFY_PARAM_set_purpose(SSL_CTX_get0_param(ctx), role == TLSOCK_CLIENT
                                                               ? X509_PURPOSE_SSL_SERVER
                                                               : X509_PURPOSE_SSL_CLIENT);
    SSL_CTX_set_default_passwd_cb(ctx, tlsock__ossl_no_passphrase);
    SSL_CTX_set_info_callback(ctx, info_callback);
    if (role == TLSOCK_SERVER) {
        SSL_CTX_set_client_hello_cb(ctx, client_hello_cb, NULL);
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_cert_verify_callback(ctx, verify_hook, NULL);
    tlsock__ossl_sessions_ctx(ctx, role);
    /* Called only for sessions that ask (a client) or are asked (a server) for a staple. */
    if (role == TLSOCK_SERVER) {
        SSL_CTX_set_tlsext_status_cb(ctx, server_status_cb);
    } else {
        SSL_CTX_set_tlsext_status_cb(ctx, client_status_cb);
    }
    *out = oc;
    return 0;
fail:
    ossl_ctx_free(oc);
    return rc;
}

static int ossl_ctx_set_protocols(void *nctx, int min_version, int max_version,
                                  struct tlsock__err *err)
{
    struct ossl_ctx *oc = nctx;

    if (SSL_CTX_set_min_proto_version(oc->ssl_ctx, min_version) != 1 ||
        SSL_CTX_set_max_proto_version(oc->ssl_ctx, max_version) != 1) {
        return tlsock__ossl_fail(err, TLSOCK_ECONFIG, "OpenSSL refused the protocol range");
    }
    return 0;
}

/*
 * Splits a raw cipher string: OpenSSL keeps TLS 1.3 suites ("TLS_AES_128_GCM_SHA256") apart
 * from TLS 1.2 cipher lists, so names starting with "TLS_" go to the first, the rest to the
 * second. A part left empty keeps the policy's default.
 */
static int set_raw_ciphers(SSL_CTX *ctx, const char *raw, struct tlsock__err *err)
{
    char tls13[512] = "";
    char tls12[512] = "";
    const char *p = raw;

    while (*p != '\0') {
        size_t n = strcspn(p, ":");
        char *dst = strncmp(p, "TLS_", 4) == 0 ? tls13 : tls12;
        size_t used = strlen(dst);
        if (n > 0 && used + n + 2 <= sizeof(tls13)) {
            snprintf(dst + used, sizeof(tls13) - used, "%s%.*s", used > 0 ? ":" : "", (int)n, p);
        }
        p += n;
        if (*p == ':') {
            p++;
        }
    }
    if ((tls13[0] != '\0' && SSL_CTX_set_ciphersuites(ctx, tls13) != 1) ||
        (tls12[0] != '\0' && SSL_CTX_set_cipher_list(ctx, tls12) != 1)) {
        ERR_clear_error();
        return tlsock__fail(err, TLSOCK_ECONFIG,
                            "cipher policy \"%s\" is neither secure, compat, legacy nor an "
                            "OpenSSL cipher list that selects anything",
                            raw);
    }
    return 0;
}

static int ossl_ctx_set_ciphers(void *nctx, const char *policy, struct tlsock__err *err)
{
    struct ossl_ctx *oc = nctx;

    for (size_t i = 0; i < sizeof(cipher_policies) / sizeof(cipher_policies[0]); i++) {
        if (strcmp(policy, cipher_policies[i].name) == 0) {
            return apply_policy(oc->ssl_ctx, &cipher_policies[i], err);
        }
    }
    return set_raw_ciphers(oc->ssl_ctx, policy, err);
}

static int ossl_ctx_add_ca_dir(void *nctx, const char *path, struct tlsock__err *err)
{
    struct ossl_ctx *oc = nctx;
    char what[TLSOCK__ERRMSG_SIZE / 2];

    if (SSL_CTX_load_verify_dir(oc->ssl_ctx, path) != 1) {
        snprintf(what, sizeof(what), "cannot use CA directory %.200s", path);
        return tlsock__ossl_fail(err, TLSOCK_EX509_LOOKUP, what);
    }
    return 0;
}

static int ossl_ctx_add_ca_mem(void *nctx, const char *pem, size_t len, struct tlsock__err *err)
{
    struct ossl_ctx *oc = nctx;
    X509_STORE *store = SSL_CTX_get_cert_store(oc->ssl_ctx);
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    STACK_OF(X509_INFO) *infos = NULL;
    int added = 0;
    int rc = 0;

    if (bio == NULL) {
        return tlsock__ossl_fail(err, TLSOCK_ENOMEM, "cannot read CA PEM");
    }
    infos = PEM_X509_INFO_read_bio(bio, NULL, tlsock__ossl_no_passphrase, NULL);
    if (infos == NULL) {
        rc = tlsock__ossl_fail(err, TLSOCK_EX509_LOOKUP, "CA PEM holds no readable certificate");
        goto free_bio;
    }
    for (int i = 0; i < sk_X509_INFO_num(infos); i++) {
        X509_INFO *info = sk_X509_INFO_value(infos, i);
        if (info->x509 == NULL) {
            continue;
        }
        rc = tlsock__ossl_load_extensions(info->x509, err);
        if (rc != 0) {
            goto free_infos;
        }
        if (X509_STORE_add_cert(store, info->x509) != 1) {
            rc = tlsock__ossl_fail(err, TLSOCK_EX509_LOOKUP, "cannot add a CA certificate");
            goto free_infos;
        }
        added++;
    }
    if (added == 0) {
        rc = tlsock__fail(err, TLSOCK_EX509_LOOKUP, "CA PEM holds no certificate");
    }
free_infos:
    sk_X509_INFO_pop_free(infos, X509_INFO_free);
free_bio:
    BIO_free(bio);
    ERR_clear_error();
    return rc;
}

static int ossl_ctx_add_ca_system(void *nctx, struct tlsock__err *err)
{
    struct ossl_ctx *oc = nctx;

    if (SSL_CTX_set_default_verify_paths(oc->ssl_ctx) != 1) {
        return tlsock__ossl_fail(err, TLSOCK_EX509_LOOKUP, "cannot load the system trust store");
    }
    return 0;
}

static int ossl_ctx_add_crl(void *nctx, const void *data, size_t len, struct tlsock__err *err)
{
    struct ossl_ctx *oc = nctx;
    X509_STORE *store = SSL_CTX_get_cert_store(oc->ssl_ctx);
    BIO *bio = BIO_new_mem_buf(data, (int)len);
    bool pem = tlsock__is_pem(data, len);
    int added = 0;
    int rc = 0;

    if (bio == NULL) {
        return tlsock__ossl_fail(err, TLSOCK_ENOMEM, "cannot read CRLs");
    }
    /* PEM may hold several CRLs (and other blocks, skipped); DER holds one. */
    for (;;) {
        X509_CRL *crl = pem ? PEM_read_bio_X509_CRL(bio, NULL, tlsock__ossl_no_passphrase, NULL)
                            : d2i_X509_CRL_bio(bio, NULL);
        if (crl == NULL) {
            break;
        }
        int ok = X509_STORE_add_crl(store, crl);
        X509_CRL_free(crl);
        if (ok != 1) {
            rc = tlsock__ossl_fail(err, TLSOCK_EX509_LOOKUP, "cannot add a CRL");
            goto out;
        }
        added++;
        if (!pem) {
            break;
        }
    }
    if (tlsock__ossl_out_of_memory()) {
        rc = tlsock__fail(err, TLSOCK_ENOMEM, "out of memory reading CRLs");
    } else if (added == 0) {
        rc = tlsock__fail(err, TLSOCK_EX509_LOOKUP, "the data holds no CRL (PEM or DER)");
    }
out:
    BIO_free(bio);
    ERR_clear_error();
    return rc;
}

static int ossl_ctx_set_cert(void *nctx, const struct tlsock__cert_src *src,
                             struct tlsock__err *err)
{
    struct ossl_ctx *oc = nctx;
    struct ossl_chain chain;
    struct ossl_chain *room = realloc(oc->chains, (oc->nchains + 1) * sizeof(*room));

    if (room == NULL) {
        return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory adding a certificate");
    }
    oc->chains = room;
    int rc = tlsock__ossl_load_cert(oc->ssl_ctx, src, &chain, err);
    if (rc != 0) {
        return rc;
    }
    if (!src->add) {
        for (size_t i = 0; i < oc->nchains; i++) {
            tlsock__ossl_chain_free(&oc->chains[i]);
        }
        oc->nchains = 0;
    }
    oc->chains[oc->nchains++] = chain;
    return 0;
}

static int ossl_ctx_set_tickets(void *nctx, const struct tlsock__tickets *t,
                                struct tlsock__err *err)
{
    struct ossl_ctx *oc = nctx;

    oc->data.tickets = t;
    return tlsock__ossl_set_tickets(oc->ssl_ctx, t, err);
}

static void ossl_ctx_set_session_remove(void *nctx, tlsock__session_remove_fn remove,
                                        struct tlsock_ctx *owner)
{
    struct ossl_ctx *oc = nctx;

    oc->data.remove = remove;
    oc->data.remove_owner = owner;
}

static int ossl_ctx_set_alpn(void *nctx, const unsigned char *wire, size_t len,
                             struct tlsock__err *err)
{
    struct ossl_ctx *oc = nctx;
    unsigned char *copy = NULL;

    if (len > 0) {
        copy = malloc(len);
        if (copy == NULL) {
            return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory copying ALPN");
        }
        memcpy(copy, wire, len);
    }
    free(oc->alpn);
    oc->alpn = copy;
    oc->alpn_len = len;
    if (oc->role == TLSOCK_CLIENT) {
        /* Note the inverted convention: SSL_CTX_set_alpn_protos returns 0 on success. */
        if (SSL_CTX_set_alpn_protos(oc->ssl_ctx, wire, (unsigned int)len) != 0) {
            return tlsock__ossl_fail(err, TLSOCK_ECONFIG, "OpenSSL refused the ALPN list");
        }
    } else {
        SSL_CTX_set_alpn_select_cb(oc->ssl_ctx, len > 0 ? alpn_select : NULL, oc);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Sessions
 * ------------------------------------------------------------------------------------------- */

static void ossl_conn_free(void *tls)
{
    struct ossl_conn *c = tls;

    if (c == NULL) {
        return;
    }
    SSL_free(c->ssl);
    free(c->failed_subject);
    free(c->servername);
    free(c->verify_name);
    tlsock__err_free(&c->verify_err);
    free(c);
}

/* The longest subject kept for a verification failure's message. */
enum { SUBJECT_MAX = 256 };

/*
 * The certificate's subject in RFC 2253 order, as GnuTLS's side writes it (RFC 4514); false when
 * it could not be written (no memory).
 */
static bool subject_text(X509 *cert, char *out, size_t size)
{
    BIO *mem = BIO_new(BIO_s_mem());
    bool ok = false;

    out[0] = '\0';
    if (mem != NULL &&
        X509_NAME_print_ex(mem, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
        int n = BIO_read(mem, out, (int)size - 1);
        out[n > 0 ? n : 0] = '\0';
        ok = true;
    }
    BIO_free(mem);
    return ok;
}

/*
 * Keeps the subject of a certificate that fails verification for the message: OpenSSL does not
 * keep a rejected peer certificate in the session (GnuTLS does), and the subject is part of it.
 */
static int verify_cb(int ok, X509_STORE_CTX *store)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct ossl_conn *c = ssl != NULL ? conn_of(ssl) : NULL;
    X509 *leaf = X509_STORE_CTX_get0_cert(store);

    /* Allocated only when verification fails: an idle session carries no name buffers. */
    if (!ok && c != NULL && leaf != NULL && c->failed_subject == NULL) {
        c->failed_subject = malloc(SUBJECT_MAX);
        if (c->failed_subject != NULL) {
            (void)subject_text(leaf, c->failed_subject, SUBJECT_MAX);
        }
    }
    return ok;
}

/* True when @p cert carries a subjectAltName extension. */
static bool has_san(X509 *cert)
{
    return X509_get_ext_by_NID(cert, NID_subject_alt_name, -1) >= 0;
}

/* The certificates of @p chain in DER, into @p out (n entries); false without memory. */
static bool chain_der(STACK_OF(X509) * chain, struct tlsock_cert_der *out, int n)
{
    for (int i = 0; i < n; i++) {
        unsigned char *der = NULL;
        int len = i2d_X509(sk_X509_value(chain, i), &der);
        if (len <= 0) {
            return false;
        }
        out[i].der = der;
        out[i].len = (size_t)len;
    }
    return true;
}

/* SHA-256 of each certificate's DER SubjectPublicKeyInfo (not only its key bits). */
static bool chain_spki(STACK_OF(X509) * chain, unsigned char (*out)[32], int n)
{
    for (int i = 0; i < n; i++) {
        unsigned char *der = NULL;
        unsigned int md_len = 0;
        int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(sk_X509_value(chain, i)), &der);
        bool ok = len > 0 && EVP_Digest(der, (size_t)len, out[i], &md_len, EVP_sha256(), NULL) == 1;
        OPENSSL_free(der);
        if (!ok) {
            return false;
        }
    }
    return true;
}

static void free_der(struct tlsock_cert_der *certs, int n)
{
    for (int i = 0; certs != NULL && i < n; i++) {
        OPENSSL_free((void *)certs[i].der);
    }
    free(certs);
}

/*
 * The shared checks (trust.h) on the chain OpenSSL verified: the peer's certificates, the
 * verified chain and its keys' digests, made only when a pin, a depth or a callback needs them.
 * Returns 0 or TLSOCK_EVERIFY with the reason in c->verify_err.
 */
static int trust_check(struct ossl_conn *c, X509_STORE_CTX *store, int rc, const char *subject)
{
    STACK_OF(X509) *peer = X509_STORE_CTX_get0_untrusted(store);
    STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(store);
    int npeer = peer != NULL ? sk_X509_num(peer) : 0;
    int nchain = rc == 0 && chain != NULL ? sk_X509_num(chain) : 0;
    struct tlsock__trust_input in = {
        .info = {.conn = c->owner,
                 .role = SSL_is_server(c->ssl) ? TLSOCK_SERVER : TLSOCK_CLIENT,
                 .verify_name = c->verify_name},
        .subject = subject,
    };
    struct tlsock_cert_der *peer_der = calloc((size_t)npeer + 1, sizeof(*peer_der));
    struct tlsock_cert_der *chain_der_out = calloc((size_t)nchain + 1, sizeof(*chain_der_out));
    unsigned char(*spki)[32] = calloc((size_t)nchain + 1, sizeof(*spki));

    if (peer_der == NULL || chain_der_out == NULL || spki == NULL ||
        !chain_der(peer, peer_der, npeer) || !chain_der(chain, chain_der_out, nchain) ||
        !chain_spki(chain, spki, nchain)) {
        /* Never let a peer through unchecked: without memory it is refused. */
        rc = tlsock__fail(&c->verify_err, TLSOCK_ENOMEM,
                          "out of memory checking the peer's certificate chain");
        goto out;
    }
    in.info.peer_chain = peer_der;
    in.info.peer_chain_len = (size_t)npeer;
    in.info.verified_chain = chain_der_out;
    in.info.verified_chain_len = (size_t)nchain;
    in.spki = (const unsigned char(*)[32])spki;
    rc = tlsock__trust_check(c->trust, &in, rc, &c->verify_err);
out:
    free_der(peer_der, npeer);
    free_der(chain_der_out, nchain);
    free(spki);
    ERR_clear_error();
    return rc;
}

static bool format_sans(X509 *cert, char *out, size_t size);

/*
 * OpenSSL's refusal in c->verify_err, naming the certificate that failed (the error's depth and
 * certificate): a name mismatch lists the name expected and the leaf's names, or says the leaf
 * has no subjectAltName (OpenSSL never checks the CN, see setup_verification()).
 */
static int fail_chain(struct ossl_conn *c, X509_STORE_CTX *store, X509 *leaf)
{
    int code = X509_STORE_CTX_get_error(store);
    int depth = X509_STORE_CTX_get_error_depth(store);
    X509 *bad = X509_STORE_CTX_get_current_cert(store);
    char subject[SUBJECT_MAX] = "";
    char reason[TLSOCK__MISMATCH_SANS_SIZE + 256];

    if (code == X509_V_ERR_OUT_OF_MEM) {
        ERR_clear_error();
        return tlsock__fail(&c->verify_err, TLSOCK_ENOMEM,
                            "out of memory verifying the peer's certificate chain");
    }
    if (bad == NULL) {
        bad = leaf;
        depth = 0;
    }
    if (bad != NULL) {
        (void)subject_text(bad, subject, sizeof(subject));
    }
    if ((code == X509_V_ERR_HOSTNAME_MISMATCH || code == X509_V_ERR_IP_ADDRESS_MISMATCH) &&
        leaf != NULL) {
        char sans[TLSOCK__MISMATCH_SANS_SIZE] = "";
        if (has_san(leaf)) {
            (void)format_sans(leaf, sans, sizeof(sans));
        }
        tlsock__text_name_mismatch(reason, sizeof(reason), c->verify_ip, c->verify_name, sans);
    } else {
        snprintf(reason, sizeof(reason), "%s", X509_verify_cert_error_string(code));
    }
    /* X509_verify_cert leaves its own errors (a signature that does not decode...) queued. */
    ERR_clear_error();
    return tlsock__text_fail_verify_at(&c->verify_err, reason, depth, subject);
}

/*
 * OpenSSL's chain verification (X509_verify_cert), then the checks it does not make: a name
 * checked against a certificate without a subjectAltName gets its own reason, and the shared
 * ones of trust.h run. Any refusal is kept in c->verify_err for fail_verify().
 */
static int verify_hook(X509_STORE_CTX *store, void *arg)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct ossl_conn *c = ssl != NULL ? conn_of(ssl) : NULL;
    int ok = X509_verify_cert(store);

    (void)arg;
    if (c == NULL || c->verify_mode == TLSOCK_VERIFY_NONE) {
        return ok > 0 ? 1 : 0;
    }
    X509 *leaf = X509_STORE_CTX_get0_cert(store);
    bool needs_chain = tlsock__trust_needs_chain(c->trust);
    char subject[SUBJECT_MAX] = "";
    /* Only for messages: a peer that passes and has nothing else to check costs no printing. */
    if (leaf != NULL && (ok <= 0 || needs_chain)) {
        (void)subject_text(leaf, subject, sizeof(subject));
    }
    tlsock__err_clear(&c->verify_err);
    int rc = 0;
    if (ok <= 0) {
        rc = fail_chain(c, store, leaf);
    }
    if (needs_chain) {
        rc = trust_check(c, store, rc, subject);
    }
    if (rc != 0 && ok > 0) {
        /* Refused by a check of ours: an error whose alert is bad_certificate, as on GnuTLS. */
        X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REJECTED);
    }
    c->verify_rc = rc;
    return rc == 0 ? 1 : 0;
}

/*
 * A server asked for a staple (RFC 6066 section 8): the core's response, in the CertificateStatus
 * message (TLS 1.2) or the leaf's Certificate entry (TLS 1.3). Without one, or without memory
 * for OpenSSL's copy, the server staples nothing, which a client may accept.
 */
static int server_status_cb(SSL *ssl, void *arg)
{
    struct ossl_conn *c = conn_of(ssl);

    (void)arg;
    /* The response is the first certificate's (tlsock.h): stapled only with that one. */
    if (c == NULL || c->ocsp_response == NULL || c->chain_index != 0) {
        return SSL_TLSEXT_ERR_NOACK;
    }
    unsigned char *copy = OPENSSL_memdup(c->ocsp_response, c->ocsp_response_len);
    if (copy == NULL ||
        SSL_set_tlsext_status_ocsp_resp(ssl, copy, (long)c->ocsp_response_len) != 1) {
        OPENSSL_free(copy);
        ERR_clear_error();
        return SSL_TLSEXT_ERR_NOACK;
    }
    return SSL_TLSEXT_ERR_OK;
}

/*
 * A client that asked for a staple, once the chain is verified (in TLS 1.2 the staple follows
 * the certificate): the shared verdict of trust.h on what openssl_ocsp.c finds. 0 refuses with
 * bad_certificate_status_response; the reason is in c->verify_err.
 */
static int client_status_cb(SSL *ssl, void *arg)
{
    struct ossl_conn *c = conn_of(ssl);
    STACK_OF(X509) *chain = SSL_get0_verified_chain(ssl);
    const unsigned char *der = NULL;
    char subject[SUBJECT_MAX] = "";

    (void)arg;
    if (c == NULL || c->verify_mode != TLSOCK_VERIFY_REQUIRED || !tlsock__ocsp_wanted(c->trust)) {
        return 1;
    }
    if (chain == NULL || sk_X509_num(chain) < 1) {
        /* Verification passed, so this cannot be; never let the peer through unchecked. */
        return 0;
    }
    X509 *leaf = sk_X509_value(chain, 0);
    /* A leaf trusted as its own anchor is its own issuer. */
    X509 *issuer = sk_X509_num(chain) > 1 ? sk_X509_value(chain, 1) : leaf;
    long len = SSL_get_tlsext_status_ocsp_resp(ssl, &der);
    int finding = tlsock__ossl_ocsp_finding(der, len, leaf, issuer);
    (void)subject_text(leaf, subject, sizeof(subject));
    tlsock__err_clear(&c->verify_err);
    int rc = finding < 0 ? tlsock__fail(&c->verify_err, TLSOCK_ENOMEM,
                                        "out of memory checking the stapled OCSP response")
                         : tlsock__ocsp_check(c->trust, finding, tlsock__ossl_must_staple(leaf),
                                              subject, &c->verify_err);
    ERR_clear_error();
    c->verify_rc = rc;
    c->ocsp_refused = rc != 0;
    return rc == 0 ? 1 : 0;
}

/* Revocation as the context asks: OpenSSL's CRL flags, on this session's parameters. */
static void setup_revocation(SSL *ssl, const struct tlsock__trust *trust)
{
    if (trust == NULL || trust->crl_mode == 0) {
        return;
    }
    unsigned long flags = X509_V_FLAG_CRL_CHECK;
    if (trust->crl_mode == TLSOCK_CRL_CHAIN) {
        flags |= X509_V_FLAG_CRL_CHECK_ALL;
    }
    X509_VERIFY_PARAM_set_flags(SSL_get0_param(ssl), flags);
}

static int setup_verification(struct ossl_conn *c, const struct tlsock__conn_params *p,
                              struct tlsock__err *err)
{
    SSL *ssl = c->ssl;

    if (p->role == TLSOCK_SERVER) {
        int mode = SSL_VERIFY_NONE;
        if (p->verify_mode == TLSOCK_VERIFY_REQUIRED) {
            mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        } else if (p->verify_mode == TLSOCK_VERIFY_OPTIONAL) {
            mode = SSL_VERIFY_PEER;
        }
        SSL_set_verify(ssl, mode, mode != SSL_VERIFY_NONE ? verify_cb : NULL);
        if (mode != SSL_VERIFY_NONE) {
            setup_revocation(ssl, p->trust);
        }
        return 0;
    }
    /* The core checked both names (length, IP literal): only memory can be missing here. */
    if (p->servername != NULL && SSL_set_tlsext_host_name(ssl, p->servername) != 1) {
        return tlsock__ossl_fail(err, TLSOCK_ENOMEM, "out of memory setting the server name");
    }
    if (p->verify_mode != TLSOCK_VERIFY_REQUIRED) {
        SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
        return 0;
    }
    SSL_set_verify(ssl, SSL_VERIFY_PEER, verify_cb);
    setup_revocation(ssl, p->trust);
    if (tlsock__ocsp_wanted(p->trust) &&
        SSL_set_tlsext_status_type(ssl, TLSEXT_STATUSTYPE_ocsp) != 1) {
        return tlsock__ossl_fail(err, TLSOCK_ENOMEM, "cannot ask for a stapled OCSP response");
    }
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    /*
     * "*.example.com" matches one label only: no partial wildcards like "w*.example.com". The
     * subject's CN is never a name (RFC 6125 6.4.4 leaves it to the application; browsers and Go
     * dropped it): a certificate without a subjectAltName matches nothing.
     */
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS |
                                               X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
    c->verify_ip = tlsock__is_ip_literal(p->verify_name);
    c->verify_name = strdup(p->verify_name);
    int ok = c->verify_name == NULL ? 0
             : c->verify_ip         ? X509_VERIFY_PARAM_set1_ip_asc(param, p->verify_name)
                                    : X509_VERIFY_PARAM_set1_host(param, p->verify_name, 0);
    if (ok != 1) {
        return tlsock__ossl_fail(err, TLSOCK_ENOMEM, "out of memory setting the name to verify");
    }
    return 0;
}

static int ossl_conn_new(void *nctx, const struct tlsock__conn_params *p, void **out,
                         struct tlsock__err *err)
{
    struct ossl_ctx *oc = nctx;
    struct ossl_conn *c = NULL;
    BIO *bio = NULL;
    int rc = 0;

    BIO_METHOD *method = get_bio_method();

    if (method == NULL) {
        return tlsock__ossl_fail(err, TLSOCK_ENOMEM, "cannot create the OpenSSL BIO method");
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory allocating a session");
    }
    c->verify_mode = p->verify_mode;
    c->alert_received = -1;
    c->trust = p->trust;
    c->owner = p->owner;
    c->keylog = p->keylog;
    if (p->role == TLSOCK_SERVER) {
        c->oc = oc;
        c->certsel = p->certsel;
        c->ocsp_response = p->ocsp_response;
        c->ocsp_response_len = p->ocsp_response_len;
    }
    if (p->servername != NULL) {
        c->servername = strdup(p->servername);
        if (c->servername == NULL) {
            free(c);
            return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory allocating a session");
        }
    }
    c->t = p->transport;
    c->ssl = SSL_new(oc->ssl_ctx);
    bio = BIO_new(method);
    if (c->ssl == NULL || bio == NULL) {
        BIO_free(bio);
        rc = tlsock__ossl_fail(err, TLSOCK_ENOMEM, "cannot create an OpenSSL session");
        goto fail;
    }
    /*
     * Memory mode serves event loops holding many mostly idle sessions: their record buffers
     * go back to the allocator whenever they are empty. Other transports keep them while a call
     * runs (bulk throughput on the fast path); the drivers give them back when the session goes
     * idle (ossl_hold_buffers).
     */
    if (p->transport->kind == TLSOCK__TRANSPORT_MEMORY) {
        SSL_set_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
    }
    BIO_set_data(bio, c);
    SSL_set_bio(c->ssl, bio, bio);
    if (p->role == TLSOCK_CLIENT) {
        SSL_set_connect_state(c->ssl);
    } else {
        SSL_set_accept_state(c->ssl);
    }
    rc = setup_verification(c, p, err);
    if (rc != 0) {
        goto fail;
    }
    c->sess = p->session;
    if (p->offer.data != NULL || p->offer.native != NULL) {
        tlsock__ossl_sessions_offer(c->ssl, &p->offer);
    }
    *out = c;
    return 0;
fail:
    ossl_conn_free(c);
    return rc;
}

/*
 * Empties the thread's error queue before an I/O call, as SSL_get_error() needs. Peeking first:
 * the queue is nearly always empty (every failure path clears it), and ERR_clear_error() clears
 * all its slots each time, 2% of a memory-mode bulk transfer.
 */
static void clear_queue(void)
{
    if (ERR_peek_error() != 0) {
        ERR_clear_error();
    }
}

/*
 * Explains a failed certificate verification: verify_hook()'s reason, or OpenSSL's reason and
 * code with the peer's subject.
 */
static int fail_verify(struct ossl_conn *c, long result, struct tlsock__err *err)
{
    ERR_clear_error();
    if (tlsock__err_set(&c->verify_err) && c->verify_rc != 0) {
        return tlsock__fail(err, c->verify_rc, "%s", tlsock__err_msg(&c->verify_err));
    }
    return tlsock__text_fail_verify(err, X509_verify_cert_error_string(result),
                                    TLSOCK__VERIFY_CODE_OPENSSL, (unsigned long)result,
                                    c->failed_subject != NULL ? c->failed_subject : "");
}

/*
 * Turns an OpenSSL failure into a tlsock code, in order of precision: would-block, the peer's
 * close_notify, the socket's errno, bare EOF (truncation), our verification, the peer's alert,
 * and finally OpenSSL's own reason.
 */
static int map_error(struct ossl_conn *c, int ret, struct tlsock__err *err)
{
    int e = SSL_get_error(c->ssl, ret);
    unsigned long code = ERR_peek_error();
    long verify = SSL_get_verify_result(c->ssl);

    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        /* A transport timeout is a retry for OpenSSL but a timeout for the caller. */
        return tlsock__transport_retry_code(
            c->t, e == SSL_ERROR_WANT_READ ? TLSOCK_EWANT_READ : TLSOCK_EWANT_WRITE, err);
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        return tlsock__fail(err, TLSOCK_ECLOSED, "peer sent close_notify");
    default:
        break;
    }
    if (c->t->err != 0) {
        ERR_clear_error();
        return tlsock__transport_fail(c->t, err);
    }
    if (c->refusal != NULL) {
        ERR_clear_error();
        return tlsock__fail(err, c->refusal_rc != 0 ? c->refusal_rc : TLSOCK_EPROTO, "%s",
                            c->refusal);
    }
    if (c->ocsp_refused) {
        ERR_clear_error();
        return tlsock__fail(err, c->verify_rc, "%s", tlsock__err_msg(&c->verify_err));
    }
    if (c->verify_rc != 0 && tlsock__err_set(&c->verify_err)) {
        /* verify_hook() refused the peer, whatever OpenSSL queued first. */
        return fail_verify(c, verify, err);
    }
    if ((e == SSL_ERROR_SYSCALL && code == 0) ||
        ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        ERR_clear_error();
        return tlsock__text_fail_truncated(err);
    }
    if (ERR_GET_REASON(code) == SSL_R_CERTIFICATE_VERIFY_FAILED && verify != X509_V_OK) {
        return fail_verify(c, verify, err);
    }
    if (ERR_GET_REASON(code) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
        /* A server requiring a client certificate got none: a verification failure. */
        ERR_clear_error();
        return tlsock__text_fail_no_client_cert(err);
    }
    /* A client's server too old for it: the message says how to allow older versions. */
    bool client = !SSL_is_server(c->ssl);
    int min = SSL_get_min_proto_version(c->ssl);
    int max = SSL_get_max_proto_version(c->ssl);
    if (client && ERR_GET_REASON(code) == SSL_R_UNSUPPORTED_PROTOCOL) {
        ERR_clear_error();
        return tlsock__text_fail_old_server(err, min, max);
    }
    if (c->alert_received >= 0) {
        bool refused = client && c->alert_received == SSL_AD_PROTOCOL_VERSION;
        ERR_clear_error();
        return tlsock__text_fail_alert(
            err, c->alert_received, refused ? tlsock__text_old_server_hint(min, max, true) : NULL);
    }
    return tlsock__ossl_fail(err, TLSOCK_EPROTO, "TLS error");
}

static int ossl_handshake(void *tls, struct tlsock__err *err)
{
    struct ossl_conn *c = tls;
    int ret;

    clear_queue();
    ret = SSL_do_handshake(c->ssl);
    if (ret == 1) {
        tlsock__ossl_sessions_done(c->ssl);
        return 0;
    }
    int rc = map_error(c, ret, err);
    /* map_error reads SSL_ERROR_ZERO_RETURN as the peer's clean close: not yet, it is not. */
    return rc == TLSOCK_ECLOSED ? tlsock__text_fail_closed_in_handshake(err) : rc;
}

static int ossl_read(void *tls, void *buf, size_t len, size_t *nread, struct tlsock__err *err)
{
    struct ossl_conn *c = tls;
    int ret;

    clear_queue();
    ret = SSL_read_ex(c->ssl, buf, len, nread);
    return ret == 1 ? 0 : map_error(c, ret, err);
}

static int ossl_write(void *tls, const void *buf, size_t len, size_t *nwritten,
                      struct tlsock__err *err)
{
    struct ossl_conn *c = tls;
    int ret;

    clear_queue();
    ret = SSL_write_ex(c->ssl, buf, len, nwritten);
    return ret == 1 ? 0 : map_error(c, ret, err);
}

static int ossl_shutdown(void *tls, struct tlsock__err *err)
{
    struct ossl_conn *c = tls;
    int ret;

    clear_queue();
    /* 0: our close_notify is sent; 1: the peer's had arrived too. Either way we are done. */
    ret = SSL_shutdown(c->ssl);
    /*
     * Except when the transport said "not now" twice: OpenSSL's second try at the close_notify
     * takes only -1 from BIO_write for a retry (a write_ex BIO gives 0), returns 0 as if it were
     * out, and only SSL_want_write() still tells: the next call sends it.
     */
    if (ret >= 0 && SSL_want_write(c->ssl)) {
        return tlsock__transport_retry_code(c->t, TLSOCK_EWANT_WRITE, err);
    }
    return ret >= 0 ? 0 : map_error(c, ret, err);
}

/* ---------------------------------------------------------------------------------------------
 * Session information
 * ------------------------------------------------------------------------------------------- */

/*
 * Lists the certificate's DNS and IP SANs; false when they could not be read for want of memory
 * (an extension that does not decode otherwise lists nothing, as before).
 */
static bool format_sans(X509 *cert, char *out, size_t size)
{
    int found = -1;
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, &found, NULL);
    struct tlsock__san_text text;

    tlsock__san_text_init(&text, out, size);
    for (int i = 0; names != NULL && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        if (gn->type == GEN_DNS) {
            tlsock__san_text_dns(&text, (const char *)ASN1_STRING_get0_data(gn->d.dNSName),
                                 (size_t)ASN1_STRING_length(gn->d.dNSName));
        } else if (gn->type == GEN_IPADD) {
            tlsock__san_text_ip(&text, ASN1_STRING_get0_data(gn->d.iPAddress),
                                (size_t)ASN1_STRING_length(gn->d.iPAddress));
        }
    }
    GENERAL_NAMES_free(names);
    /* found >= 0 without names: the extension is there but was not decoded. */
    return names != NULL || found < 0 || !tlsock__ossl_out_of_memory();
}

/* The leaf's issuer, serial, dates and key digest; false without memory. */
static bool describe_leaf(X509 *cert, struct tlsock__info_buf *out)
{
    BIO *mem = BIO_new(BIO_s_mem());
    const ASN1_INTEGER *serial = X509_get0_serialNumber(cert);
    unsigned char *spki = NULL;
    int spki_len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &spki);
    unsigned char md[32];
    unsigned int md_len = 0;
    struct tm tm;
    bool ok = mem != NULL && spki_len > 0 &&
              X509_NAME_print_ex(mem, X509_get_issuer_name(cert), 0, XN_FLAG_RFC2253) >= 0 &&
              EVP_Digest(spki, (size_t)spki_len, md, &md_len, EVP_sha256(), NULL) == 1;

    if (ok) {
        int n = BIO_read(mem, out->peer_issuer, (int)sizeof(out->peer_issuer) - 1);
        out->peer_issuer[n > 0 ? n : 0] = '\0';
        tlsock__text_fingerprint(md, out->peer_spki_sha256);
        tlsock__text_serial(ASN1_STRING_get0_data(serial), (size_t)ASN1_STRING_length(serial),
                            out->peer_serial, sizeof(out->peer_serial));
        if (ASN1_TIME_to_tm(X509_get0_notBefore(cert), &tm) == 1) {
            out->peer_not_before = (int64_t)timegm(&tm);
        }
        if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1) {
            out->peer_not_after = (int64_t)timegm(&tm);
        }
    }
    OPENSSL_free(spki);
    BIO_free(mem);
    return ok;
}

/*
 * The certificates the peer sent, leaf first, copied: a client's SSL_get_peer_cert_chain holds
 * the leaf, a server's does not.
 */
static bool copy_peer_chain(SSL *ssl, X509 *leaf, struct tlsock__info_buf *out)
{
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
    int n = chain != NULL ? sk_X509_num(chain) : 0;
    bool with_leaf = SSL_is_server(ssl) || n == 0;
    size_t total = (size_t)n + (with_leaf ? 1 : 0);

    out->peer_chain = calloc(total, sizeof(*out->peer_chain));
    if (out->peer_chain == NULL) {
        return false;
    }
    for (size_t i = 0; i < total; i++) {
        X509 *x = with_leaf ? (i == 0 ? leaf : sk_X509_value(chain, (int)i - 1))
                            : sk_X509_value(chain, (int)i);
        int len = i2d_X509(x, NULL);
        unsigned char *der = len > 0 ? malloc((size_t)len) : NULL;
        unsigned char *p = der;
        if (der == NULL || i2d_X509(x, &p) != len) {
            free(der);
            return false;
        }
        out->peer_chain[i].der = der;
        out->peer_chain[i].len = (size_t)len;
        out->peer_chain_len = i + 1;
    }
    return true;
}

/* The key exchange group and the peer's handshake signature, in IANA's names. */
static void describe_handshake(SSL *ssl, X509 *peer, struct tlsock__info_buf *out)
{
    int group = SSL_get_negotiated_group(ssl);
    const char *name = group != 0 ? SSL_group_to_name(ssl, group) : NULL;
    int type = NID_undef;
    int hash = NID_undef;
    int kind = TLSOCK__SIG_NONE;

    tlsock__text_group(name != NULL ? name : "", out->group, sizeof(out->group));
    if (peer == NULL || SSL_get_peer_signature_type_nid(ssl, &type) != 1 ||
        SSL_get_peer_signature_nid(ssl, &hash) != 1) {
        return;
    }
    switch (type) {
    case EVP_PKEY_RSA:
        kind = TLSOCK__SIG_RSA_PKCS1;
        break;
    case EVP_PKEY_RSA_PSS:
        /* rsae: PSS with an rsaEncryption key; pss: with an RSASSA-PSS key. */
        kind = EVP_PKEY_get_base_id(X509_get0_pubkey(peer)) == EVP_PKEY_RSA_PSS
                   ? TLSOCK__SIG_RSA_PSS_PSS
                   : TLSOCK__SIG_RSA_PSS_RSAE;
        break;
    case EVP_PKEY_EC:
        kind = TLSOCK__SIG_ECDSA;
        break;
    case EVP_PKEY_ED25519:
        kind = TLSOCK__SIG_ED25519;
        break;
    case EVP_PKEY_ED448:
        kind = TLSOCK__SIG_ED448;
        break;
    default:
        break;
    }
    const EVP_MD *md = EVP_get_digestbynid(hash);
    tlsock__text_sigalg(kind, md != NULL ? EVP_MD_get_size(md) * 8 : 0, out->peer_sigalg,
                        sizeof(out->peer_sigalg));
}

static int ossl_conn_session_bytes(void *tls, unsigned char **data, size_t *len)
{
    const struct ossl_conn *c = tls;

    return tlsock__ossl_session_bytes(c->ssl, data, len);
}

static bool ossl_resumed(void *tls)
{
    const struct ossl_conn *c = tls;

    return SSL_session_reused(c->ssl) == 1;
}

static bool ossl_server_silent_after_finished(void *tls)
{
    const struct ossl_conn *c = tls;
    unsigned char md[EVP_MAX_MD_SIZE];

    /* Our Finished is out and the client's not read yet (no Finished after a retry request). */
    if (!SSL_is_server(c->ssl) || SSL_get_finished(c->ssl, md, sizeof(md)) == 0 ||
        SSL_get_peer_finished(c->ssl, md, sizeof(md)) != 0) {
        return false;
    }
    /* TLS 1.3: OpenSSL sends its tickets once the client's Finished is read (none when off). */
    return SSL_version(c->ssl) != TLS1_3_VERSION || SSL_get_num_tickets(c->ssl) == 0;
}

static int ossl_get_info(void *tls, struct tlsock__info_buf *out, struct tlsock__err *err)
{
    struct ossl_conn *c = tls;
    SSL *ssl = c->ssl;
    const unsigned char *alpn = NULL;
    unsigned int alpn_len = 0;
    X509 *peer = SSL_get0_peer_certificate(ssl);
    const SSL_CIPHER *cipher = SSL_get_current_cipher(ssl);

    memset(out, 0, sizeof(*out));
    snprintf(out->version, sizeof(out->version), "%s", SSL_get_version(ssl));
    snprintf(out->cipher, sizeof(out->cipher), "%s",
             cipher != NULL ? SSL_CIPHER_standard_name(cipher) : "");
    SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
    snprintf(out->alpn, sizeof(out->alpn), "%.*s", (int)alpn_len, alpn != NULL ? (char *)alpn : "");
    snprintf(out->servername, sizeof(out->servername), "%s",
             c->servername != NULL ? c->servername : "");
    out->verify_result = (int)SSL_get_verify_result(ssl);
    if (peer != NULL && (!subject_text(peer, out->peer_subject, sizeof(out->peer_subject)) ||
                         !format_sans(peer, out->peer_sans, sizeof(out->peer_sans)) ||
                         tlsock__ossl_fingerprint(peer, out->peer_fingerprint) != 0 ||
                         !describe_leaf(peer, out) || !copy_peer_chain(ssl, peer, out))) {
        /* A valid certificate fails to print only for want of memory. */
        return tlsock__ossl_fail(err, TLSOCK_ENOMEM,
                                 "out of memory describing the peer's certificate");
    }
    tlsock__text_verify_message(out->verify_message, sizeof(out->verify_message), c->verify_mode,
                                peer != NULL, X509_verify_cert_error_string(out->verify_result));
    out->resumed = ossl_resumed(c);
    describe_handshake(ssl, peer, out);
    ERR_clear_error();
    return 0;
}

static int ossl_export(void *tls, const char *label, size_t label_len, const void *context,
                       size_t context_len, void *out, size_t len, struct tlsock__err *err)
{
    struct ossl_conn *c = tls;

    ERR_clear_error();
    if (SSL_export_keying_material(c->ssl, out, len, label, label_len, context, context_len,
                                   context != NULL) != 1) {
        return tlsock__ossl_fail(err, TLSOCK_EPROTO, "cannot export keying material");
    }
    return 0;
}

static bool ossl_exporter_bound(void *tls)
{
    struct ossl_conn *c = tls;

    return SSL_version(c->ssl) >= TLS1_3_VERSION || SSL_get_extms_support(c->ssl) == 1;
}

static size_t ossl_pending(void *tls)
{
    struct ossl_conn *c = tls;
    int n = SSL_pending(c->ssl);

    return n > 0 ? (size_t)n : 0;
}

/*
 * SSL_MODE_RELEASE_BUFFERS frees the record buffers whenever they empty: an idle session holds
 * none, but a busy one pays a malloc and a free per record (measured: 10 % of the async echo
 * throughput). So it is off while the driver says the session is busy.
 */
static void ossl_hold_buffers(void *tls, bool hold)
{
    struct ossl_conn *c = tls;

    if (hold) {
        SSL_clear_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
    } else {
        SSL_set_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
        (void)SSL_free_buffers(c->ssl); /* 0 while a buffer holds data: freed once it empties */
    }
}

static void *ossl_ctx_native(void *nctx)
{
    return ((struct ossl_ctx *)nctx)->ssl_ctx;
}

static void *ossl_conn_native(void *tls)
{
    return ((struct ossl_conn *)tls)->ssl;
}

static const char *ossl_version(void)
{
    return OpenSSL_version(OPENSSL_VERSION);
}

/* OpenSSL 3's DRBG reseeds in a child after fork() by itself. */
static int ossl_random(void *buf, size_t len, struct tlsock__err *err)
{
    unsigned char *p = buf;

    while (len > 0) {
        int n = len > INT_MAX ? INT_MAX : (int)len;
        if (RAND_bytes(p, n) != 1) {
            return tlsock__ossl_fail(err, TLSOCK_ESYS, "RAND_bytes failed");
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

const struct tlsock__impl tlsock__openssl_impl = {
    .name = "openssl",
    .id = TLSOCK_IMPL_OPENSSL,
    .caps = TLSOCK_CAP_ALPN | TLSOCK_CAP_CERTGEN,
    .version = ossl_version,
    .ctx_native = ossl_ctx_native,
    .conn_native = ossl_conn_native,
    .ctx_new = ossl_ctx_new,
    .ctx_free = ossl_ctx_free,
    .ctx_set_protocols = ossl_ctx_set_protocols,
    .ctx_set_ciphers = ossl_ctx_set_ciphers,
    .ctx_add_ca_dir = ossl_ctx_add_ca_dir,
    .ctx_add_ca_mem = ossl_ctx_add_ca_mem,
    .ctx_add_ca_system = ossl_ctx_add_ca_system,
    .ctx_set_cert = ossl_ctx_set_cert,
    .ctx_add_crl = ossl_ctx_add_crl,
    .ctx_set_alpn = ossl_ctx_set_alpn,
    .ctx_set_tickets = ossl_ctx_set_tickets,
    .ctx_set_session_remove = ossl_ctx_set_session_remove,
    .ctx_set_keylog = ossl_ctx_set_keylog,
    .conn_new = ossl_conn_new,
    .conn_free = ossl_conn_free,
    .handshake = ossl_handshake,
    .read = ossl_read,
    .write = ossl_write,
    .shutdown = ossl_shutdown,
    .get_info = ossl_get_info,
    .resumed = ossl_resumed,
    .server_silent_after_finished = ossl_server_silent_after_finished,
    .export_keying_material = ossl_export,
    .exporter_bound = ossl_exporter_bound,
    .session_free = tlsock__ossl_session_free,
    .session_dup = tlsock__ossl_session_dup,
    .conn_session_bytes = ossl_conn_session_bytes,
    .sha256 = tlsock__ossl_sha256,
    .pending = ossl_pending,
    .hold_buffers = ossl_hold_buffers,
    .cert_generate = tlsock__openssl_cert_generate,
    .cert_fingerprint = tlsock__openssl_cert_fingerprint,
    .key_encrypt = tlsock__openssl_key_encrypt,
    .random = ossl_random,
};
