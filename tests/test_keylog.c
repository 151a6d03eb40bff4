/*
 * The key log (include/tlsock.h, "Key log") and tlsock_random(), over the in-memory pair.
 *
 * The secrets in the log are checked against the session they came from, computed here
 * independently of the library: the TLS 1.3 exporter from EXPORTER_SECRET (RFC 8446 sections
 * 7.1 and 7.5, HKDF-Expand-Label) and the TLS 1.2 exporter from the master secret (RFC 5705 with
 * the RFC 5246 PRF), each compared with tlsock_conn_export_keying_material(). The client random
 * of each line is compared with the one the ClientHello carried on the wire (records.h), the
 * server random for TLS 1.2 read from the ServerHello.
 *
 * main() sets SSLKEYLOGFILE to a path in a temporary directory before any handshake (GnuTLS
 * reads the variable once, at its first secret): no test may make that file appear.
 */
#include "pair.h"
#include "records.h"
#include "workdir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#if TLSOCK_TEST_HAVE_OPENSSL
#include <openssl/evp.h>
#include <openssl/hmac.h>
#else
#include <gnutls/crypto.h>
#endif

#define EXPORT_LABEL "EXPERIMENTAL-tlsock-keylog"
#define EXPORT_LEN   42 /* not a multiple of either hash's length: the last block is cut */
#define MAX_LINES    16
#define LINE_MAX_LEN 320
#define HASH_MAX     48

static struct ts_workdir env_dir; /* holds the SSLKEYLOGFILE path main() sets */
static char env_path[TS_WORKDIR_PATH_MAX];

/* ---- the lines a callback received ----------------------------------------------------------- */

struct lines {
    char text[MAX_LINES][LINE_MAX_LEN];
    size_t n;
    size_t calls;
};

static void collect(const char *line, void *user)
{
    struct lines *l = user;

    l->calls++;
    if (l->n < MAX_LINES && strlen(line) < LINE_MAX_LEN) {
        strcpy(l->text[l->n++], line);
    }
}

/* One line taken apart. */
struct entry {
    char label[64];
    unsigned char client_random[32];
    unsigned char secret[HASH_MAX];
    size_t secret_len;
};

static bool lower_hex(const char *s, size_t len, unsigned char *out)
{
    for (size_t i = 0; i < len; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return false;
        }
    }
    for (size_t i = 0; i < len / 2; i++) {
        unsigned v = 0;
        sscanf(s + 2 * i, "%2x", &v);
        out[i] = (unsigned char)v;
    }
    return true;
}

/*
 * Checks one line's format: a label, 64 lowercase hex digits, 64 or 96 lowercase hex digits (the
 * secret of a SHA-256 or SHA-384 suite), single spaces, nothing else.
 */
static void parse_line(const char *line, struct entry *e)
{
    const char *sp1 = strchr(line, ' ');
    const char *sp2 = sp1 != NULL ? strchr(sp1 + 1, ' ') : NULL;

    assert_non_null(sp1);
    assert_non_null(sp2);
    assert_null(strchr(sp2 + 1, ' '));
    assert_null(strchr(line, '\n'));
    assert_in_range(sp1 - line, 1, (long)sizeof(e->label) - 1);
    memcpy(e->label, line, (size_t)(sp1 - line));
    e->label[sp1 - line] = '\0';
    assert_int_equal(sp2 - sp1 - 1, 64);
    assert_true(lower_hex(sp1 + 1, 64, e->client_random));
    size_t secret_hex = strlen(sp2 + 1);
    if (secret_hex != 64 && secret_hex != 96) {
        fail_msg("secret of %zu hex digits in \"%s\"", secret_hex, line);
    }
    assert_true(lower_hex(sp2 + 1, secret_hex, e->secret));
    e->secret_len = secret_hex / 2;
}

static const char *const tls13_labels[] = {
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
    "SERVER_HANDSHAKE_TRAFFIC_SECRET",
    "CLIENT_TRAFFIC_SECRET_0",
    "SERVER_TRAFFIC_SECRET_0",
    "EXPORTER_SECRET",
};

/*
 * Checks the lines of one side of a handshake: each label of the version exactly once, each
 * with the client random of the ClientHello; returns the EXPORTER_SECRET's or CLIENT_RANDOM's.
 */
static struct entry check_lines(const struct lines *l, bool tls13,
                                const unsigned char client_random[32])
{
    const char *const tls12_labels[] = {"CLIENT_RANDOM"};
    const char *const *labels = tls13 ? tls13_labels : tls12_labels;
    size_t nlabels = tls13 ? 5 : 1;
    struct entry key = {0};

    if (l->n != nlabels || l->calls != nlabels) {
        /* Names the labels, so that a failure says which line is missing or extra. */
        char seen[MAX_LINES * LINE_MAX_LEN] = "";
        for (size_t j = 0; j < l->n; j++) {
            strncat(seen, l->text[j], strcspn(l->text[j], " "));
            strcat(seen, " ");
        }
        fail_msg("%zu lines (%zu calls), %zu expected: %s", l->n, l->calls, nlabels, seen);
    }
    for (size_t i = 0; i < nlabels; i++) {
        size_t seen = 0;
        for (size_t j = 0; j < l->n; j++) {
            struct entry e;
            parse_line(l->text[j], &e);
            if (strcmp(e.label, labels[i]) != 0) {
                continue;
            }
            seen++;
            assert_memory_equal(e.client_random, client_random, 32);
            if (i == nlabels - 1) {
                key = e;
            }
        }
        if (seen != 1) {
            fail_msg("label %s seen %zu times", labels[i], seen);
        }
    }
    return key;
}

/* ---- the exporters, computed here ------------------------------------------------------------ */

/* HMAC and hash with SHA-256 (@p hash_len 32) or SHA-384 (48). */
static void hmac(size_t hash_len, const unsigned char *key, size_t key_len,
                 const unsigned char *data, size_t len, unsigned char *out)
{
#if TLSOCK_TEST_HAVE_OPENSSL
    unsigned out_len = 0;
    assert_non_null(HMAC(hash_len == 32 ? EVP_sha256() : EVP_sha384(), key, (int)key_len, data, len,
                         out, &out_len));
    assert_int_equal(out_len, hash_len);
#else
    assert_int_equal(gnutls_hmac_fast(hash_len == 32 ? GNUTLS_MAC_SHA256 : GNUTLS_MAC_SHA384, key,
                                      key_len, data, len, out),
                     0);
#endif
}

static void hash(size_t hash_len, const void *data, size_t len, unsigned char *out)
{
#if TLSOCK_TEST_HAVE_OPENSSL
    assert_int_equal(
        EVP_Digest(data, len, out, NULL, hash_len == 32 ? EVP_sha256() : EVP_sha384(), NULL), 1);
#else
    assert_int_equal(
        gnutls_hash_fast(hash_len == 32 ? GNUTLS_DIG_SHA256 : GNUTLS_DIG_SHA384, data, len, out),
        0);
#endif
}

/* RFC 5869 HKDF-Expand. */
static void hkdf_expand(size_t hash_len, const unsigned char *prk, const unsigned char *info,
                        size_t info_len, unsigned char *out, size_t len)
{
    unsigned char block[HASH_MAX + 512];
    unsigned char t[HASH_MAX];
    size_t t_len = 0;

    assert_true(info_len <= 500);
    for (unsigned char i = 1; len > 0; i++) {
        memcpy(block, t, t_len);
        memcpy(block + t_len, info, info_len);
        block[t_len + info_len] = i;
        hmac(hash_len, prk, hash_len, block, t_len + info_len + 1, t);
        t_len = hash_len;
        size_t n = len < hash_len ? len : hash_len;
        memcpy(out, t, n);
        out += n;
        len -= n;
    }
}

/* RFC 8446 section 7.1 HKDF-Expand-Label. */
static void expand_label(size_t hash_len, const unsigned char *secret, const char *label,
                         const unsigned char *context, size_t context_len, unsigned char *out,
                         size_t len)
{
    unsigned char info[512];
    size_t label_len = strlen("tls13 ") + strlen(label);
    size_t n = 0;

    info[n++] = (unsigned char)(len >> 8);
    info[n++] = (unsigned char)len;
    info[n++] = (unsigned char)label_len;
    memcpy(info + n, "tls13 ", 6);
    memcpy(info + n + 6, label, strlen(label));
    n += label_len;
    info[n++] = (unsigned char)context_len;
    memcpy(info + n, context, context_len);
    n += context_len;
    hkdf_expand(hash_len, secret, info, n, out, len);
}

/* RFC 8446 section 7.5: the exporter from the exporter_master_secret. */
static void tls13_export(const struct entry *exporter, const char *context, unsigned char *out)
{
    unsigned char empty_hash[HASH_MAX];
    unsigned char context_hash[HASH_MAX];
    unsigned char derived[HASH_MAX];
    size_t hl = exporter->secret_len;

    hash(hl, "", 0, empty_hash);
    hash(hl, context, strlen(context), context_hash);
    expand_label(hl, exporter->secret, EXPORT_LABEL, empty_hash, hl, derived, hl);
    expand_label(hl, derived, "exporter", context_hash, hl, out, EXPORT_LEN);
}

/*
 * RFC 5705 with the RFC 5246 section 5 PRF (P_<hash> of the suite):
 * PRF(master_secret, label, client_random + server_random [+ context length + context]).
 */
static void tls12_export(size_t hash_len, const struct entry *master, const unsigned char *sr,
                         const char *context, unsigned char *out)
{
    unsigned char seed[256];
    unsigned char a[HASH_MAX];
    unsigned char block[HASH_MAX + sizeof(seed)];
    unsigned char t[HASH_MAX];
    size_t n = strlen(EXPORT_LABEL);
    size_t len = EXPORT_LEN;

    memcpy(seed, EXPORT_LABEL, n);
    memcpy(seed + n, master->client_random, 32);
    memcpy(seed + n + 32, sr, 32);
    n += 64;
    if (context != NULL) {
        seed[n++] = (unsigned char)(strlen(context) >> 8);
        seed[n++] = (unsigned char)strlen(context);
        memcpy(seed + n, context, strlen(context));
        n += strlen(context);
    }
    /* A(1) = HMAC(secret, seed); each block HMAC(secret, A(i) + seed). */
    hmac(hash_len, master->secret, master->secret_len, seed, n, a);
    while (len > 0) {
        memcpy(block, a, hash_len);
        memcpy(block + hash_len, seed, n);
        hmac(hash_len, master->secret, master->secret_len, block, hash_len + n, t);
        size_t take = len < hash_len ? len : hash_len;
        memcpy(out, t, take);
        out += take;
        len -= take;
        hmac(hash_len, master->secret, master->secret_len, a, hash_len, a);
    }
}

/* ---- a handshake whose hellos are read on the way -------------------------------------------- */

/* Drains everything @p from has to send through @p flow of @p w and feeds it to @p to. */
static void move_through(struct ts_wire *w, struct ts_flow *flow, struct tlsock_conn *from,
                         struct tlsock_conn *to)
{
    unsigned char buf[16384];
    struct ts_bytes out = {0};
    size_t n = 0;

    for (int i = 0; i < 16; i++) {
        TS_ASSERT_RC(tlsock_drain(from, buf, sizeof(buf), &n), 0);
        if (n == 0) {
            break;
        }
        assert_int_equal(ts_wire_pass(w, flow, buf, n, &out), 0);
    }
    assert_true(out.len > 0);
    TS_ASSERT_RC(tlsock_feed(to, out.data, out.len), 0);
    ts_bytes_free(&out);
}

/* The randoms of the hellos that crossed. */
struct hellos {
    unsigned char client_random[32];
    unsigned char server_random[32];
};

/* Copies the random of the first hello of @p type on @p flow (after its legacy_version). */
static void hello_random(const struct ts_flow *flow, int type, unsigned char out[32])
{
    size_t len = 0;
    const unsigned char *body = ts_flow_msg(flow, type, 0, &len);

    assert_non_null(body);
    assert_true(len >= 34);
    memcpy(out, body + 2, 32);
}

/*
 * Attaches the pair's contexts and runs the handshake; the first flight each way goes through a
 * wire that keeps the hellos, the rest through the pair.
 */
static void handshake(struct ts_pair *p, struct hellos *h)
{
    struct ts_wire w;

    ts_wire_init(&w, 0, 0);
    TS_ASSERT_RC(ts_pair_attach(p, NULL, NULL), 0);
    TS_ASSERT_RC(tlsock_handshake(p->client), TLSOCK_EWANT_READ);
    move_through(&w, &w.c2s, p->client, p->server);
    TS_ASSERT_RC(tlsock_handshake(p->server), TLSOCK_EWANT_READ);
    move_through(&w, &w.s2c, p->server, p->client);
    TS_ASSERT_RC_MSG(ts_pair_handshake(p), 0, p->client_msg);
    TS_ASSERT_RC_MSG(p->server_rc, 0, p->server_msg);
    hello_random(&w.c2s, TS_HS_CLIENT_HELLO, h->client_random);
    hello_random(&w.s2c, TS_HS_SERVER_HELLO, h->server_random);
    ts_wire_free(&w);
}

/* The pair's contexts: @p protocols on the client. */
static void make_contexts(struct ts_pair *p, const char *protocols)
{
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &p->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &p->cctx), 0);
    TS_ASSERT_RC_MSG(tlsock_ctx_set_protocols(p->cctx, protocols), 0, tlsock_ctx_errmsg(p->cctx));
}

/* The exporter of @p conn, with a context or none (NULL). */
static void conn_export(struct tlsock_conn *conn, const char *context, unsigned char *out)
{
    TS_ASSERT_RC_MSG(tlsock_conn_export_keying_material(conn, EXPORT_LABEL, context,
                                                        context != NULL ? strlen(context) : 0, out,
                                                        EXPORT_LEN),
                     0, tlsock_conn_errmsg(conn));
}

/* The secrets of @p key (one side's log) give @p conn's exporter, with and without a context. */
static void check_exporter(struct tlsock_conn *conn, bool tls13, const struct entry *key,
                           const struct hellos *h)
{
    const char *contexts[] = {"key log context", NULL};
    const struct tlsock_info *info = NULL;

    TS_ASSERT_RC(tlsock_conn_info(conn, &info), 0);
    assert_string_equal(info->version, tls13 ? "TLSv1.3" : "TLSv1.2");
    size_t hash_len = strstr(info->cipher, "SHA384") != NULL ? 48 : 32;
    if (tls13) {
        /* The exporter secret has the length of the suite's hash. */
        assert_int_equal(key->secret_len, hash_len);
    } else {
        assert_int_equal(key->secret_len, 48); /* the master secret */
    }
    for (size_t i = 0; i < 2; i++) {
        unsigned char mine[EXPORT_LEN];
        unsigned char theirs[EXPORT_LEN];
        if (tls13) {
            /* RFC 8446 section 7.5: no context is the same as an empty one. */
            tls13_export(key, contexts[i] != NULL ? contexts[i] : "", mine);
        } else {
            tls12_export(hash_len, key, h->server_random, contexts[i], mine);
        }
        conn_export(conn, contexts[i], theirs);
        assert_memory_equal(mine, theirs, EXPORT_LEN);
    }
}

/* ---- the callback ---------------------------------------------------------------------------- */

/*
 * The lines each end of the pair's handshake logged: the version's labels once each, the same
 * secrets on both ends, and the secrets of the session (its exporter).
 */
static void check_both(struct ts_pair *p, bool tls13, const struct lines *client,
                       const struct lines *server, const struct hellos *h)
{
    struct entry ckey = check_lines(client, tls13, h->client_random);
    struct entry skey = check_lines(server, tls13, h->client_random);

    assert_int_equal(ckey.secret_len, skey.secret_len);
    assert_memory_equal(ckey.secret, skey.secret, ckey.secret_len);
    check_exporter(p->client, tls13, &ckey, h);
    check_exporter(p->server, tls13, &skey, h);
}

static void run_callback(struct ts_pair *p, bool tls13)
{
    struct lines client = {0};
    struct lines server = {0};
    struct hellos h;

    make_contexts(p, tls13 ? "1.3" : "1.2-1.2");
    TS_ASSERT_RC(tlsock_ctx_set_keylog(p->cctx, collect, &client), 0);
    TS_ASSERT_RC(tlsock_ctx_set_keylog(p->sctx, collect, &server), 0);
    handshake(p, &h);
    check_both(p, tls13, &client, &server, &h);

    /* Frozen by the connection: the setters refuse, and the callback stays. */
    TS_ASSERT_RC(tlsock_ctx_set_keylog(p->cctx, NULL, NULL), TLSOCK_EINVAL);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(p->cctx), "frozen");
    TS_ASSERT_RC(tlsock_ctx_set_keylog_file(p->sctx, NULL), TLSOCK_EINVAL);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(p->sctx), "frozen");
    ts_pair_release(p);
}

static void test_callback_tls13(void **state)
{
    run_callback(*state, true);
}

static void test_callback_tls12(void **state)
{
    run_callback(*state, false);
}

/* Whether both ends of the pair's connection say it resumed a session. */
static void assert_resumed(const struct ts_pair *p, bool resumed)
{
    const struct tlsock_info *ci = NULL;
    const struct tlsock_info *si = NULL;

    TS_ASSERT_RC(tlsock_conn_info(p->client, &ci), 0);
    TS_ASSERT_RC(tlsock_conn_info(p->server, &si), 0);
    assert_int_equal(ci->resumed, resumed);
    assert_int_equal(si->resumed, resumed);
}

/*
 * A second connection of the same client context, which offers the first one's session: resumed,
 * or (@p refused) to a new server context, which cannot resume it. Either way each end logs the
 * lines of a full handshake, no more: no early-data secret in TLS 1.3 (tlsock never sends nor
 * accepts early data, yet GnuTLS derives them when a ticket is offered), and in TLS 1.2 the
 * CLIENT_RANDOM line of the resumed master secret (which GnuTLS does not derive again), once.
 */
static void run_second(struct ts_pair *p, bool tls13, bool refused)
{
    struct lines client = {0};
    struct lines server = {0};
    struct hellos h;
    char buf[2];

    make_contexts(p, tls13 ? "1.3" : "1.2-1.2");
    TS_ASSERT_RC(tlsock_ctx_set_keylog(p->cctx, collect, &client), 0);
    TS_ASSERT_RC(tlsock_ctx_set_keylog(p->sctx, collect, &server), 0);
    handshake(p, &h);
    assert_resumed(p, false);
    /* A TLS 1.3 client has the server's tickets once it has read the bytes after them. */
    TS_ASSERT_RC(ts_pair_write(p, TS_S2C, "hi", 2), 0);
    TS_ASSERT_RC(ts_pair_read(p, TS_S2C, buf, 2), 0);
    ts_pair_close(p);
    if (refused) {
        /* Other ticket keys and an empty cache: the offered session is unknown to it. */
        tlsock_ctx_free(p->sctx);
        p->sctx = NULL;
        TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &p->sctx), 0);
        TS_ASSERT_RC(tlsock_ctx_set_keylog(p->sctx, collect, &server), 0);
    }
    memset(&client, 0, sizeof(client));
    memset(&server, 0, sizeof(server));

    handshake(p, &h);
    assert_resumed(p, !refused);
    check_both(p, tls13, &client, &server, &h);
    ts_pair_release(p);
}

static void test_resumed_tls13(void **state)
{
    run_second(*state, true, false);
}

static void test_resumed_tls12(void **state)
{
    run_second(*state, false, false);
}

static void test_refused_tls13(void **state)
{
    run_second(*state, true, true);
}

/* ---- the file -------------------------------------------------------------------------------- */

/* Splits @p data into its lines, each ended by a newline, into @p l. */
static void file_lines(const unsigned char *data, size_t len, struct lines *l)
{
    const char *s = (const char *)data;
    const char *end = s + len;

    assert_true(len > 0);
    assert_int_equal(data[len - 1], '\n');
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        assert_non_null(nl);
        assert_true(l->n < MAX_LINES && nl - s < LINE_MAX_LEN);
        memcpy(l->text[l->n], s, (size_t)(nl - s));
        l->text[l->n][nl - s] = '\0';
        l->n++;
        l->calls++;
        s = nl + 1;
    }
}

static void run_file(struct ts_pair *p, bool tls13)
{
    struct ts_workdir wd = {0};
    struct lines client_cb = {0};
    struct lines client_file = {0};
    struct lines server_file = {0};
    unsigned char *data = NULL;
    size_t len = 0;
    struct stat st;
    struct hellos h;
    const char earlier[] = "# an earlier line\n";

    assert_int_equal(ts_workdir_make(&wd, "keylog"), 0);
    /* The server's file exists with a line already: it is appended to. */
    assert_int_equal(ts_workdir_write(&wd, "server.log", earlier, strlen(earlier)), 0);
    make_contexts(p, tls13 ? "1.3" : "1.2-1.2");
    TS_ASSERT_RC(tlsock_ctx_set_keylog(p->cctx, collect, &client_cb), 0);
    TS_ASSERT_RC(tlsock_ctx_set_keylog_file(p->cctx, TS_WORKDIR_PATH(&wd, "client.log")), 0);
    TS_ASSERT_RC(tlsock_ctx_set_keylog_file(p->sctx, TS_WORKDIR_PATH(&wd, "server.log")), 0);
    handshake(p, &h);

    assert_int_equal(stat(TS_WORKDIR_PATH(&wd, "client.log"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(ts_workdir_read(&wd, "client.log", &data, &len), 0);
    file_lines(data, len, &client_file);
    free(data);
    struct entry ckey = check_lines(&client_file, tls13, h.client_random);
    /* The file holds what the callback received, in the same order. */
    assert_int_equal(client_file.n, client_cb.n);
    for (size_t i = 0; i < client_cb.n; i++) {
        assert_string_equal(client_file.text[i], client_cb.text[i]);
    }
    check_exporter(p->client, tls13, &ckey, &h);

    assert_int_equal(ts_workdir_read(&wd, "server.log", &data, &len), 0);
    assert_true(len > strlen(earlier));
    assert_memory_equal(data, earlier, strlen(earlier));
    file_lines(data + strlen(earlier), len - strlen(earlier), &server_file);
    free(data);
    struct entry skey = check_lines(&server_file, tls13, h.client_random);
    check_exporter(p->server, tls13, &skey, &h);

    ts_pair_release(p);
    assert_int_equal(ts_workdir_remove(&wd), 0);
}

static void test_file_tls13(void **state)
{
    run_file(*state, true);
}

static void test_file_tls12(void **state)
{
    run_file(*state, false);
}

/*
 * A key log set and then removed, and no key log at all: nothing written, the callback never
 * called. SSLKEYLOGFILE (main()) names a file that never appears, after handshakes of both
 * versions.
 */
static void test_none(void **state)
{
    struct ts_pair *p = *state;
    struct ts_workdir wd = {0};
    struct lines removed = {0};
    struct hellos h;
    struct stat st;
    const char *versions[] = {"1.3", "1.2-1.2"};

    assert_non_null(getenv("SSLKEYLOGFILE"));
    assert_int_equal(ts_workdir_make(&wd, "keylog"), 0);
    for (size_t i = 0; i < 2; i++) {
        make_contexts(p, versions[i]);
        TS_ASSERT_RC(tlsock_ctx_set_keylog(p->cctx, collect, &removed), 0);
        TS_ASSERT_RC(tlsock_ctx_set_keylog(p->cctx, NULL, NULL), 0);
        TS_ASSERT_RC(tlsock_ctx_set_keylog_file(p->sctx, TS_WORKDIR_PATH(&wd, "off.log")), 0);
        TS_ASSERT_RC(tlsock_ctx_set_keylog_file(p->sctx, NULL), 0);
        handshake(p, &h);
        ts_pair_release(p);
    }
    assert_int_equal(removed.calls, 0);
    assert_int_equal(stat(TS_WORKDIR_PATH(&wd, "off.log"), &st), 0);
    assert_int_equal(st.st_size, 0);
    errno = 0;
    assert_int_not_equal(stat(env_path, &st), 0);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(ts_workdir_remove(&wd), 0);
}

/*
 * A key log file that has reached the process's RLIMIT_FSIZE: its lines are lost and the
 * handshake goes on, as for a full disk. A write(2) past the limit raises SIGXFSZ, which ends the
 * process by default. The handshake runs in a child, so that the limit and a death by the signal
 * stay there; the child checks with plain code (no cmocka assertion in it) and answers with its
 * exit status.
 */
static void test_file_size_limit(void **state)
{
    struct ts_pair *p = *state;
    struct ts_workdir wd = {0};
    char full[1024];
    struct stat st;
    int status = 0;

    memset(full, '#', sizeof(full) - 1);
    full[sizeof(full) - 1] = '\n';
    assert_int_equal(ts_workdir_make(&wd, "keylog"), 0);
    assert_int_equal(ts_workdir_write(&wd, "full.log", full, sizeof(full)), 0);
    make_contexts(p, "1.3");
    TS_ASSERT_RC(tlsock_ctx_set_keylog_file(p->cctx, TS_WORKDIR_PATH(&wd, "full.log")), 0);
    TS_ASSERT_RC(tlsock_ctx_set_keylog_file(p->sctx, TS_WORKDIR_PATH(&wd, "full.log")), 0);
    TS_ASSERT_RC(ts_pair_attach(p, NULL, NULL), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit lim;
        int code = 2; /* the limit could not be set */
        if (getrlimit(RLIMIT_FSIZE, &lim) == 0 && lim.rlim_max >= sizeof(full)) {
            lim.rlim_cur = sizeof(full);
            if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
                code = ts_pair_handshake(p) == 0 && p->server_rc == 0 ? 0 : 3;
            }
        }
        _exit(code);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) {
        fail_msg("the handshake's process died of signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* Not a byte past the limit. */
    assert_int_equal(stat(TS_WORKDIR_PATH(&wd, "full.log"), &st), 0);
    assert_int_equal(st.st_size, (off_t)sizeof(full));
    ts_pair_release(p);
    assert_int_equal(ts_workdir_remove(&wd), 0);
}

/* Files that cannot be a key log: ECONFIG naming them; NULL contexts: EINVAL. */
static void test_bad_files(void **state)
{
    struct ts_pair *p = *state;
    struct ts_workdir wd = {0};
    struct lines l = {0};

    assert_int_equal(ts_workdir_make(&wd, "keylog"), 0);
    make_contexts(p, "1.3");
    const char *missing = TS_WORKDIR_PATH(&wd, "no-such-dir/key.log");
    TS_ASSERT_RC(tlsock_ctx_set_keylog_file(p->cctx, missing), TLSOCK_ECONFIG);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(p->cctx), missing);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(p->cctx), "No such file or directory");
    TS_ASSERT_CONTAINS(tlsock_errmsg(), missing);

    TS_ASSERT_RC(tlsock_ctx_set_keylog_file(p->sctx, wd.path), TLSOCK_ECONFIG);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(p->sctx), wd.path);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(p->sctx), "not a regular file");

    const char *fifo = TS_WORKDIR_PATH(&wd, "fifo");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    TS_ASSERT_RC(tlsock_ctx_set_keylog_file(p->cctx, fifo), TLSOCK_ECONFIG);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(p->cctx), "not a regular file");
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(p->cctx), fifo);

    TS_ASSERT_RC(tlsock_ctx_set_keylog(NULL, collect, &l), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_set_keylog_file(NULL, "x"), TLSOCK_EINVAL);
    ts_pair_release(p);
    assert_int_equal(ts_workdir_remove(&wd), 0);
}

#if TS_BOTH_IMPLS
/* The key log belongs to the context: a change of implementation after it keeps it. */
static void test_kept_by_set_impl(void **state)
{
    struct ts_pair *p = *state;
    struct lines client = {0};
    struct hellos h;

    make_contexts(p, "1.3");
    int impl = tlsock_ctx_impl(p->cctx);
    TS_ASSERT_RC(tlsock_ctx_set_keylog(p->cctx, collect, &client), 0);
    int other = impl == TLSOCK_IMPL_OPENSSL ? TLSOCK_IMPL_GNUTLS : TLSOCK_IMPL_OPENSSL;
    TS_ASSERT_RC(tlsock_ctx_set_impl(p->cctx, other), 0);
    TS_ASSERT_RC(tlsock_ctx_set_impl(p->cctx, impl), 0);
    handshake(p, &h);
    check_lines(&client, true, h.client_random);
    ts_pair_release(p);
}
#endif

/* ---- tlsock_random() ------------------------------------------------------------------------- */

/* tlsock_random() of the pair's client implementation. */
static void use_client_impl(void)
{
    int impl = ts_role_impl(TLSOCK_CLIENT);

    assert_true(impl >= 0);
    if (impl != TLSOCK_IMPL_DEFAULT) {
        TS_ASSERT_RC(tlsock_set_default_impl(impl), 0);
    }
}

static void test_random_arguments(void **state)
{
    unsigned char a[32] = {0};
    unsigned char b[32] = {0};
    unsigned char zero[32] = {0};
    enum { BIG = (4 << 20) + 3 };
    unsigned char *big = calloc(1, BIG);
    size_t counts[256] = {0};

    (void)state;
    use_client_impl();
    TS_ASSERT_RC(tlsock_random(NULL, 0), 0);
    TS_ASSERT_RC(tlsock_random(a, 0), 0);
    assert_memory_equal(a, zero, sizeof(a));
    TS_ASSERT_RC(tlsock_random(NULL, 1), TLSOCK_EINVAL);
    TS_ASSERT_CONTAINS(tlsock_errmsg(), "NULL");
    TS_ASSERT_RC(tlsock_random(a, sizeof(a)), 0);
    TS_ASSERT_RC(tlsock_random(b, sizeof(b)), 0);
    assert_memory_not_equal(a, zero, sizeof(a));
    assert_memory_not_equal(a, b, sizeof(a));

    /* A large draw fills every byte: each value about BIG / 256 times (within 10 %), the tail
     * written too. */
    assert_non_null(big);
    TS_ASSERT_RC(tlsock_random(big, BIG), 0);
    for (size_t i = 0; i < BIG; i++) {
        counts[big[i]]++;
    }
    for (size_t v = 0; v < 256; v++) {
        assert_in_range(counts[v], BIG / 256 * 9 / 10, BIG / 256 * 11 / 10);
    }
    assert_memory_not_equal(big + BIG - 3, zero, 3);
    free(big);
}

/* A child forked after the parent drew bytes draws different ones than the parent after it. */
static void test_random_fork(void **state)
{
    unsigned char before[32];
    unsigned char parent[32];
    unsigned char child[32];
    int fds[2];
    int status = 0;

    (void)state;
    use_client_impl();
    TS_ASSERT_RC(tlsock_random(before, sizeof(before)), 0);
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        unsigned char mine[32];
        int ok = tlsock_random(mine, sizeof(mine)) == 0 &&
                 write(fds[1], mine, sizeof(mine)) == (ssize_t)sizeof(mine);
        _exit(ok ? 0 : 1);
    }
    close(fds[1]);
    TS_ASSERT_RC(tlsock_random(parent, sizeof(parent)), 0);
    assert_int_equal(read(fds[0], child, sizeof(child)), (ssize_t)sizeof(child));
    close(fds[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_memory_not_equal(parent, child, sizeof(child));
    assert_memory_not_equal(before, child, sizeof(child));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_callback_tls13, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_callback_tls12, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_resumed_tls13, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_resumed_tls12, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_refused_tls13, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_file_tls13, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_file_tls12, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_none, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_file_size_limit, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_bad_files, ts_pair_setup, ts_pair_teardown),
#if TS_BOTH_IMPLS
        cmocka_unit_test_setup_teardown(test_kept_by_set_impl, ts_pair_setup, ts_pair_teardown),
#endif
        cmocka_unit_test(test_random_arguments),
        cmocka_unit_test(test_random_fork),
    };
    int rc;

    /* Before any handshake: GnuTLS reads the variable once, at its first secret. */
    if (ts_workdir_make(&env_dir, "keylog-env") != 0) {
        return 1;
    }
    ts_workdir_path(&env_dir, "sslkeylogfile.log", env_path, sizeof(env_path));
    setenv("SSLKEYLOGFILE", env_path, 1);
    rc = cmocka_run_group_tests_name("keylog", tests, ts_pki_setup, ts_pki_teardown);
    /* Whatever ran, the variable's file never appeared. */
    if (access(env_path, F_OK) == 0) {
        fprintf(stderr, "SSLKEYLOGFILE's file %s was written\n", env_path);
        unlink(env_path);
        rc = 1;
    }
    ts_workdir_remove(&env_dir);
    return rc;
}
