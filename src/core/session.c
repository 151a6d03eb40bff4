/*
 * Resumption (docs/sessions.md): the client's session cache and the export/import format, and
 * the server's TLS 1.2 session-ID cache given to the implementations. Both caches are
 * session_cache.c stores, one per context.
 *
 * A client entry is keyed by where the session may be offered: the port, host, SNI and name
 * verified, in the same bytes as the export header carries them (key_write()). Its value is the
 * context digest and protocol version the session was made with, then the implementation's own
 * serialized session: an entry whose digest is not the context's (an import from a context
 * configured otherwise) is dropped when it would be offered. An entry the implementation gave as
 * its own object only (impl.h, on_session) has no serialized session after the header.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "objects.h"
#include "session_cache.h"

enum {
    DIGEST_LEN = 32,
    /* Value: digest, version (2), native. Export: magic (4), format (1), impl (1), then that. */
    VALUE_HEAD = DIGEST_LEN + 2,
    EXPORT_HEAD = 4 + 1 + 1,
    FORMAT_VERSION = 1,
};
static const unsigned char MAGIC[4] = {'T', 'L', 'S', 'K'};

/* How long a client keeps a session it was given: RFC 8446 4.6.1 caps ticket lifetimes at 7 days.
 */
static const int64_t CLIENT_LIFETIME_NS = 7LL * 86400 * 1000000000;

static void put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static unsigned get16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/* ---------------------------------------------------------------------------------------------
 * Contexts
 * ------------------------------------------------------------------------------------------- */

int tlsock__sessions_init(struct tlsock_ctx *ctx)
{
    ctx->session_max = ctx->role == TLSOCK_CLIENT ? TLSOCK_SESSION_CACHE_CLIENT_DEFAULT
                                                  : TLSOCK_SESSION_CACHE_SERVER_DEFAULT;
    ctx->sessions = tlsock__scache_new(ctx->session_max);
    return ctx->sessions != NULL
               ? 0
               : tlsock__fail(NULL, TLSOCK_ENOMEM, "out of memory allocating a session cache");
}

void tlsock__sessions_free(struct tlsock_ctx *ctx)
{
    tlsock__scache_free(ctx->sessions);
    ctx->sessions = NULL;
}

int tlsock__sessions_resize(struct tlsock_ctx *ctx, size_t max_entries)
{
    struct tlsock__scache *cache = NULL;

    if (max_entries > 0) {
        cache = tlsock__scache_new(max_entries);
        if (cache == NULL) {
            return tlsock__fail(&ctx->err, TLSOCK_ENOMEM,
                                "out of memory allocating a session cache");
        }
    }
    tlsock__scache_free(ctx->sessions);
    ctx->sessions = cache;
    ctx->session_max = max_entries;
    return 0;
}

/* Appends @p len bytes to the digest input, after their length (no two inputs run together). */
static int digest_add(struct tlsock__buf *in, const void *data, size_t len)
{
    unsigned char n[8];

    for (int i = 0; i < 8; i++) {
        n[i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    }
    int rc = tlsock__buf_append(in, n, sizeof(n));
    return rc == 0 && len > 0 ? tlsock__buf_append(in, data, len) : rc;
}

static int digest_int(struct tlsock__buf *in, long v)
{
    char text[24];
    int n = snprintf(text, sizeof(text), "%ld", v);
    return digest_add(in, text, (size_t)n);
}

/* A trust anchor or CRL setting: what decides whom a verification accepts. */
static bool is_trust_setting(const struct tlsock__setting *s)
{
    return s->kind == TLSOCK__SET_CA_DIR || s->kind == TLSOCK__SET_CA_MEM ||
           s->kind == TLSOCK__SET_CA_SYSTEM || s->kind == TLSOCK__SET_CRL;
}

/* How @p ctx verifies its peer, but for its trust settings: mode, CA use, CRLs, depth, OCSP, pins.
 */
static int digest_verification(struct tlsock__buf *in, const struct tlsock_ctx *ctx)
{
    const struct tlsock__trust *t = &ctx->trust;
    int rc = digest_int(in, ctx->verify_mode);

    rc = rc != 0 ? rc : digest_int(in, ctx->ca_set);
    rc = rc != 0 ? rc : digest_int(in, t->crl_mode);
    rc = rc != 0 ? rc : digest_int(in, t->max_depth);
    rc = rc != 0 ? rc : digest_int(in, t->ocsp_mode);
    return rc != 0 ? rc : digest_add(in, t->pins, t->pin_count * sizeof(*t->pins));
}

/*
 * What a session's safety depends on, so that no context offers a session another one made:
 * the implementation, how the peer is verified (mode, trust anchors, CRLs, pins, depth, OCSP),
 * the protocol range and the client's certificate. Called once, by the freeze.
 */
int tlsock__sessions_freeze(struct tlsock_ctx *ctx, struct tlsock__err *err)
{
    struct tlsock__buf in = {0};
    int rc = digest_int(&in, ctx->impl->id);

    rc = rc != 0 ? rc : digest_verification(&in, ctx);
    for (const struct tlsock__setting *s = ctx->settings; s != NULL && rc == 0; s = s->next) {
        if (s->kind == TLSOCK__SET_CIPHERS || s->kind == TLSOCK__SET_ALPN) {
            continue;
        }
        rc = digest_int(&in, s->kind);
        rc = rc != 0 ? rc : digest_int(&in, s->min_version);
        rc = rc != 0 ? rc : digest_int(&in, s->max_version);
        rc = rc != 0 ? rc : digest_add(&in, s->text, s->text_len);
    }
    if (rc == 0) {
        rc = ctx->impl->sha256(in.data, in.len, ctx->session_digest);
    }
    tlsock__buf_free(&in);
    return rc == 0 ? 0 : tlsock__fail(err, rc, "out of memory making the session digest");
}

/*
 * How a server verifies client certificates, for its ticket keys (tlsock__tickets.binding): the
 * verification above and the trust settings; not its own certificates, protocols or ciphers,
 * which do not decide who the client is. A verify callback's own rules are not in it.
 * 0 or TLSOCK_ENOMEM.
 */
int tlsock__sessions_verify_digest(const struct tlsock_ctx *ctx, unsigned char out[32])
{
    struct tlsock__buf in = {0};
    int rc = digest_verification(&in, ctx);

    for (const struct tlsock__setting *s = ctx->settings; s != NULL && rc == 0; s = s->next) {
        if (is_trust_setting(s)) {
            rc = digest_int(&in, s->kind);
            rc = rc != 0 ? rc : digest_add(&in, s->text, s->text_len);
        }
    }
    if (rc == 0) {
        rc = ctx->impl->sha256(in.data, in.len, out);
    }
    tlsock__buf_free(&in);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Keys
 * ------------------------------------------------------------------------------------------- */

/* The key of a client connection: port, then host, SNI and name verified, each u16 length first. */
/* A client connection's sessions, under a key of @p port and the names; NULL: out of memory. */
static struct tlsock__conn_sessions *key_make(uint16_t port, const char *host, const char *sni,
                                              const char *verify)
{
    const char *parts[3] = {host, sni, verify};
    size_t n = 2;

    for (int i = 0; i < 3; i++) {
        n += 2 + strlen(parts[i]);
    }
    struct tlsock__conn_sessions *s = malloc(offsetof(struct tlsock__conn_sessions, key) + n);
    if (s == NULL) {
        return NULL;
    }
    s->last = NULL;
    s->last_len = 0;
    s->key_len = n;
    unsigned char *p = s->key;
    put16(p, port);
    p += 2;
    for (int i = 0; i < 3; i++) {
        size_t l = strlen(parts[i]);
        put16(p, (unsigned)l);
        memcpy(p + 2, parts[i], l);
        p += 2 + l;
    }
    return s;
}

/* The length of the key at the start of @p data (key_make()'s format), 0 if it is not one. */
static size_t key_span(const unsigned char *data, size_t len)
{
    size_t off = 2;

    for (int i = 0; i < 3; i++) {
        if (len < off + 2 || len - off - 2 < get16(data + off)) {
            return 0;
        }
        off += 2 + get16(data + off);
    }
    return off;
}

/* ---------------------------------------------------------------------------------------------
 * Client connections
 * ------------------------------------------------------------------------------------------- */

/*
 * The implementation's report of a new session: kept for export, and cached for the next one.
 * Without @p data (impl.h) the value is the header alone, and only @p native can be offered.
 */
static void on_session(struct tlsock_conn *conn, const unsigned char *data, size_t len, int version,
                       void *native)
{
    struct tlsock__conn_sessions *s = conn->sessions; /* set: the hooks come with it */
    unsigned char *value = malloc(VALUE_HEAD + len);

    if (value == NULL) {
        if (native != NULL) {
            conn->ctx->impl->session_free(native);
        }
        return; /* not resuming is never an error */
    }
    memcpy(value, conn->ctx->session_digest, DIGEST_LEN);
    put16(value + DIGEST_LEN, (unsigned)version);
    if (len > 0) {
        memcpy(value + VALUE_HEAD, data, len);
    }
    tlsock__free_secret(s->last, s->last_len);
    s->last = value;
    s->last_len = VALUE_HEAD + len;
    if (conn->ctx->sessions != NULL) {
        /*
         * The parsed session next to its bytes, so that offering it costs no decoding (which
         * for OpenSSL parses the server's certificate key again). Without memory the next
         * connection makes a full handshake.
         */
        tlsock__scache_put_native(conn->ctx->sessions, s->key, s->key_len, value, s->last_len,
                                  native, conn->ctx->impl->session_free,
                                  tlsock__now_ns() + CLIENT_LIFETIME_NS);
    } else if (native != NULL) {
        conn->ctx->impl->session_free(native);
    }
}

/*
 * Whether a cached session stays in the cache when offered: a TLS 1.2 (or older) session is resumed
 * as often as the server accepts it, by any number of connections at once, until it expires or is
 * replaced; a TLS 1.3 ticket is offered once (RFC 8446 appendix C.4), and the tickets the server
 * sends on that connection replace it.
 */
static bool reusable(const unsigned char *value, size_t len)
{
    return len >= VALUE_HEAD && get16(value + DIGEST_LEN) < 0x0304;
}

/* A client's hooks: with a cache key, or none (nothing to tell one server from another by). */
static const struct tlsock__session_hooks client_hooks = {.on_session = on_session};
static const struct tlsock__session_hooks no_hooks = {0};

int tlsock__sessions_conn_new(struct tlsock_conn *conn, uint16_t port, const char *host,
                              const char *sni, const char *verify, struct tlsock__session_io *io,
                              struct tlsock__session_offer *offer, unsigned char **held)
{
    struct tlsock_ctx *ctx = conn->ctx;

    *held = NULL;
    memset(offer, 0, sizeof(*offer));
    io->owner = conn;
    io->hooks = &no_hooks;
    if (ctx->role == TLSOCK_SERVER) {
        io->hooks = &ctx->session_hooks;
        return 0;
    }
    /* Without a name there is nothing to tell one server from another by: no cache. */
    if (ctx->sessions == NULL || (host[0] == '\0' && sni[0] == '\0' && verify[0] == '\0')) {
        return 0;
    }
    struct tlsock__conn_sessions *s = key_make(port, host, sni, verify);
    conn->sessions = s;
    if (s == NULL) {
        return tlsock__fail(NULL, TLSOCK_ENOMEM, "out of memory allocating a connection");
    }
    io->hooks = &client_hooks;
    unsigned char *value = NULL;
    size_t len = 0;
    void *native = NULL;
    const struct tlsock__scache_reuse reuse = {reusable, ctx->impl->session_dup};
    if (tlsock__scache_take(ctx->sessions, s->key, s->key_len, &reuse, &value, &len, &native)) {
        bool offerable = len > VALUE_HEAD || (len == VALUE_HEAD && native != NULL);
        if (offerable && memcmp(value, ctx->session_digest, DIGEST_LEN) == 0) {
            *held = value;
            offer->data = len > VALUE_HEAD ? value + VALUE_HEAD : NULL;
            offer->len = len - VALUE_HEAD;
            offer->native = native;
            native = NULL;
        } else {
            tlsock__free_secret(value, len);
        }
    }
    if (native != NULL) {
        ctx->impl->session_free(native);
    }
    return 0;
}

void tlsock__sessions_offer_free(struct tlsock_conn *conn, struct tlsock__session_offer *offer,
                                 unsigned char *held)
{
    if (offer->native != NULL) {
        conn->ctx->impl->session_free(offer->native);
        offer->native = NULL;
    }
    /* What tlsock__sessions_conn_new() took: the offered session after its header. */
    tlsock__free_secret(held, held != NULL ? VALUE_HEAD + offer->len : 0);
}

void tlsock__sessions_conn_failed(struct tlsock_conn *conn)
{
    /* RFC 5246 section 7.2.2: a session whose connection ended with a fatal alert (or was cut)
     * must not be resumed. What this connection put, or a connection to the same place, goes. */
    if (conn->ctx->role == TLSOCK_CLIENT && conn->ctx->sessions != NULL && conn->sessions != NULL) {
        tlsock__scache_remove(conn->ctx->sessions, conn->sessions->key, conn->sessions->key_len);
    }
}

void tlsock__sessions_conn_free(struct tlsock_conn *conn)
{
    if (conn->sessions != NULL) {
        tlsock__free_secret(conn->sessions->last, conn->sessions->last_len);
        free(conn->sessions);
        conn->sessions = NULL;
    }
}

int tlsock_conn_session_export(struct tlsock_conn *conn, unsigned char **out, size_t *len)
{
    int rc = tlsock__conn_begin(conn);

    if (rc != 0) {
        return rc;
    }
    const struct tlsock__conn_sessions *s = conn->sessions;
    if (out == NULL || len == NULL) {
        rc = tlsock__fail(&conn->err, TLSOCK_EINVAL, "session export: out and len are required");
    } else if (conn->ctx->role != TLSOCK_CLIENT) {
        rc = tlsock__fail(&conn->err, TLSOCK_EINVAL,
                          "session export: only client connections have sessions to export");
    } else if (s == NULL) {
        rc = tlsock__fail(&conn->err, TLSOCK_EINVAL,
                          "session export: the context's session cache is off, or the connection "
                          "has no host, SNI or name to verify to keep it under");
    } else if (s->last == NULL) {
        rc = tlsock__fail(&conn->err, TLSOCK_EINVAL,
                          "no resumable session yet: TLS 1.3 tickets arrive after the handshake, "
                          "export after the first read");
    }
    if (rc != 0) {
        tlsock__publish(&conn->err);
        return rc;
    }
    /* A session the implementation gave without its bytes (impl.h, on_session) is encoded now. */
    unsigned char *native = NULL;
    size_t native_len = 0;
    if (s->last_len == VALUE_HEAD && conn->ctx->impl->conn_session_bytes != NULL) {
        rc = conn->ctx->impl->conn_session_bytes(conn->tls, &native, &native_len);
    }
    size_t value_len = s->last_len + native_len;
    size_t n = EXPORT_HEAD + s->key_len + 4 + value_len;
    unsigned char *p = rc == 0 ? malloc(n) : NULL;
    if (p == NULL) {
        tlsock__free_secret(native, native_len);
        rc = tlsock__fail(&conn->err, TLSOCK_ENOMEM, "out of memory exporting a session");
        tlsock__publish(&conn->err);
        return rc;
    }
    /* magic, format, impl, key, then the value's length and the value (digest, version, native) */
    memcpy(p, MAGIC, 4);
    p[4] = FORMAT_VERSION;
    p[5] = (unsigned char)conn->ctx->impl->id;
    memcpy(p + EXPORT_HEAD, s->key, s->key_len);
    unsigned char *q = p + EXPORT_HEAD + s->key_len;
    put16(q, (unsigned)(value_len >> 16));
    put16(q + 2, (unsigned)(value_len & 0xffff));
    memcpy(q + 4, s->last, s->last_len);
    if (native_len > 0) {
        memcpy(q + 4 + s->last_len, native, native_len);
    }
    tlsock__free_secret(native, native_len);
    *out = p;
    *len = n;
    return 0;
}

/*
 * Fails an import with @p fmt's reason, on the thread and, before the context froze, on the
 * context too: afterwards imports may run on several threads at once, and the context's message
 * is not theirs to share.
 */
#define IMPORT_FAIL(ctx, code, ...)                                                                \
    tlsock__fail(atomic_load(&(ctx)->frozen) ? NULL : &(ctx)->err, (code), __VA_ARGS__)

int tlsock_ctx_session_import(struct tlsock_ctx *ctx, const void *data, size_t len)
{
    const unsigned char *p = data;
    int rc = 0;

    if (ctx == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "context is NULL");
    }
    if (!atomic_load(&ctx->frozen)) {
        tlsock__err_clear(&ctx->err);
    }
    size_t key_len =
        p != NULL && len > EXPORT_HEAD ? key_span(p + EXPORT_HEAD, len - EXPORT_HEAD) : 0;
    size_t at = EXPORT_HEAD + key_len;
    if (ctx->role != TLSOCK_CLIENT) {
        rc = IMPORT_FAIL(ctx, TLSOCK_EINVAL, "session import: only client contexts offer sessions");
    } else if (ctx->sessions == NULL) {
        rc = IMPORT_FAIL(ctx, TLSOCK_EINVAL, "session import: the context's session cache is off");
    } else if (p == NULL || len < EXPORT_HEAD || memcmp(p, MAGIC, 4) != 0) {
        rc = IMPORT_FAIL(ctx, TLSOCK_EINVAL, "session import: not a tlsock session (bad magic)");
    } else if (p[4] != FORMAT_VERSION) {
        rc = IMPORT_FAIL(ctx, TLSOCK_EINVAL, "session import: unknown format version %u", p[4]);
    } else if (p[5] != ctx->impl->id) {
        rc = IMPORT_FAIL(ctx, TLSOCK_EINVAL,
                         "session import: exported by another implementation (%u), this context "
                         "uses %s",
                         p[5], ctx->impl->name);
    } else if (key_len == 0 || len - at < 4 ||
               len - at - 4 != ((size_t)get16(p + at) << 16 | get16(p + at + 2)) ||
               len - at - 4 <= VALUE_HEAD) {
        rc = IMPORT_FAIL(ctx, TLSOCK_EINVAL, "session import: truncated or malformed session");
    }
    if (rc != 0) {
        return rc; /* IMPORT_FAIL set the thread's message (and the context's before the freeze) */
    }
    const unsigned char *value = p + at + 4;
    /* Another context's session is never offered (the freeze's digest; before it, at the offer). */
    if (atomic_load(&ctx->frozen) && memcmp(value, ctx->session_digest, DIGEST_LEN) != 0) {
        return 0;
    }
    rc = tlsock__scache_put(ctx->sessions, p + EXPORT_HEAD, key_len, value, len - at - 4,
                            tlsock__now_ns() + CLIENT_LIFETIME_NS);
    if (rc != 0) {
        IMPORT_FAIL(ctx, rc, "out of memory importing a session");
    }
    return rc;
}
