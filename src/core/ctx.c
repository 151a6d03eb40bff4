/*
 * Contexts: configuration shared by many connections. Setters apply at once to the
 * implementation's native context, so problems are reported where they are made, and each one is
 * also kept as a setting, so that tlsock_ctx_set_impl() can rebuild the native context of another
 * implementation at any time before the context freezes, whatever the order of the calls.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "objects.h"

/*
 * Certificate and key files larger than this are surely not what the caller meant; CA files
 * may be whole system bundles.
 */
enum { PEM_FILE_MAX = 1 << 20, CA_FILE_MAX = 16 << 20 };

/* Starts a public setter: clears the message and refuses once the context is frozen. */
static int setter_begin(struct tlsock_ctx *ctx)
{
    if (ctx == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "context is NULL");
    }
    tlsock__err_clear(&ctx->err);
    if (atomic_load(&ctx->frozen)) {
        return tlsock__fail(&ctx->err, TLSOCK_EINVAL,
                            "context is frozen: it has made a connection and can no longer change");
    }
    return 0;
}

int tlsock__ctx_setter_begin(struct tlsock_ctx *ctx)
{
    return setter_begin(ctx);
}

/* Publishes an implementation's failure detail to the thread's last message. */
static int setter_end(struct tlsock_ctx *ctx, int rc)
{
    if (rc != 0) {
        tlsock__publish(&ctx->err);
    }
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Settings: what each setter applied to the native context, in order, for a replay.
 * ------------------------------------------------------------------------------------------- */

/* Settings whose last call wins; the CA ones add up. */
static bool replaces_earlier(enum tlsock__setting_kind kind)
{
    return kind == TLSOCK__SET_PROTOCOLS || kind == TLSOCK__SET_CIPHERS || kind == TLSOCK__SET_ALPN;
}

/* Whether @p set drops the earlier settings like @p cur when it is kept. */
static bool drops(const struct tlsock__setting *set, const struct tlsock__setting *cur)
{
    if (cur->kind != set->kind) {
        return false;
    }
    /* tlsock_ctx_set_cert_*() replace every certificate, tlsock_ctx_add_cert_*() add one. */
    return set->kind == TLSOCK__SET_CERT ? !set->cert_add : replaces_earlier(set->kind);
}

/* Forgets the certificates' facts (tlsock__certsel), keeping the array; the callback stays. */
static void certsel_forget(struct tlsock__certsel *sel)
{
    for (size_t i = 0; i < sel->count; i++) {
        free(sel->certs[i].names);
    }
    sel->count = 0;
    sel->default_index = 0;
}

/* Frees a NUL-terminated passphrase, wiping it first; accepts NULL. */
static void pass_free(char *pass)
{
    if (pass != NULL) {
        explicit_bzero(pass, strlen(pass));
        free(pass);
    }
}

static void setting_free(struct tlsock__setting *set)
{
    if (set == NULL) {
        return;
    }
    if (set->key != NULL) {
        /* Private key material should not linger in freed memory. */
        explicit_bzero(set->key, set->key_len);
        free(set->key);
    }
    if (set->cert_kind == TLSOCK__CERT_PKCS12 && set->text != NULL) {
        /* The bundle holds the key. */
        explicit_bzero(set->text, set->text_len);
    }
    pass_free(set->pass);
    free(set->text);
    free(set);
}

static void settings_free(struct tlsock_ctx *ctx)
{
    while (ctx->settings != NULL) {
        struct tlsock__setting *next = ctx->settings->next;
        setting_free(ctx->settings);
        ctx->settings = next;
    }
}

/* Copies @p len bytes (NUL-terminated) into *@p out; false without memory. */
static bool copy_bytes(const void *data, size_t len, char **out)
{
    char *copy = malloc(len + 1);

    if (copy == NULL) {
        return false;
    }
    memcpy(copy, data, len);
    copy[len] = '\0';
    *out = copy;
    return true;
}

/*
 * Loads the certificate and key of a CERT setting into @p native of @p impl. The passphrase
 * comes from @p pass when a setter loads them the first time, else (a replay) from the setting;
 * @p facts receives the certificate's names and key kind the first time (NULL for a replay).
 */
static int cert_apply(const struct tlsock__impl *impl, void *native,
                      const struct tlsock__setting *set, struct tlsock__pass *pass,
                      struct tlsock__cert_facts *facts, struct tlsock__err *err)
{
    struct tlsock__pass *replay = NULL;
    struct tlsock__cert_src src = {
        .kind = set->cert_kind,
        .add = set->cert_add,
        .facts = facts,
        .chain = set->text,
        .chain_len = set->text_len,
        .key = set->key,
        .key_len = set->key_len,
        .pass = pass,
    };
    int rc = 0;

    if (pass == NULL) {
        /* Not on the stack: it holds a passphrase buffer of TLSOCK_PASSPHRASE_MAX bytes. */
        replay = calloc(1, sizeof(*replay));
        if (replay == NULL) {
            return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory loading a key");
        }
        replay->given = set->pass;
        src.pass = replay;
    }
    rc = impl->ctx_set_cert(native, &src, err);
    if (replay != NULL) {
        explicit_bzero(replay, sizeof(*replay));
        free(replay);
    }
    return rc;
}

/* Applies one setting to @p native of @p impl. */
static int setting_apply(const struct tlsock__impl *impl, void *native,
                         const struct tlsock__setting *set, struct tlsock__err *err)
{
    switch (set->kind) {
    case TLSOCK__SET_PROTOCOLS:
        return impl->ctx_set_protocols(native, set->min_version, set->max_version, err);
    case TLSOCK__SET_CIPHERS:
        return impl->ctx_set_ciphers(native, set->text, err);
    case TLSOCK__SET_CA_DIR:
        return impl->ctx_add_ca_dir(native, set->text, err);
    case TLSOCK__SET_CA_MEM:
        return impl->ctx_add_ca_mem(native, set->text, set->text_len, err);
    case TLSOCK__SET_CA_SYSTEM:
        return impl->ctx_add_ca_system(native, err);
    case TLSOCK__SET_CERT:
        return cert_apply(impl, native, set, NULL, NULL, err);
    case TLSOCK__SET_ALPN:
        return impl->ctx_set_alpn(native, (const unsigned char *)set->text, set->text_len, err);
    case TLSOCK__SET_CRL:
        return impl->ctx_add_crl(native, set->text, set->text_len, err);
    }
    return tlsock__fail(err, TLSOCK_EINVAL, "unknown setting %d", (int)set->kind);
}

/* Keeps @p set, applied already, after the others; drops the earlier ones it replaces. */
static void setting_keep(struct tlsock_ctx *ctx, struct tlsock__setting *set)
{
    struct tlsock__setting **link = &ctx->settings;

    while (*link != NULL) {
        struct tlsock__setting *cur = *link;
        if (drops(set, cur)) {
            *link = cur->next;
            setting_free(cur);
        } else {
            link = &cur->next;
        }
    }
    *link = set;
}

/*
 * Applies @p set (owned by the caller until it succeeds) to the native context and keeps it;
 * a setting that replaces earlier ones drops them. On failure nothing is kept.
 */
static int setting_add(struct tlsock_ctx *ctx, struct tlsock__setting *set)
{
    int rc = setting_apply(ctx->impl, ctx->native, set, &ctx->err);

    if (rc != 0) {
        setting_free(set);
        return setter_end(ctx, rc);
    }
    setting_keep(ctx, set);
    return 0;
}

/* A new setting of @p kind carrying a copy of @p text (may be NULL); NULL without memory. */
static struct tlsock__setting *setting_new(enum tlsock__setting_kind kind, const void *text,
                                           size_t text_len)
{
    struct tlsock__setting *set = calloc(1, sizeof(*set));

    if (set == NULL) {
        return NULL;
    }
    set->kind = kind;
    set->text_len = text_len;
    if (text != NULL && !copy_bytes(text, text_len, &set->text)) {
        free(set);
        return NULL;
    }
    return set;
}

/* setting_new() and setting_add(), with ENOMEM reported on the context. */
static int add_text_setting(struct tlsock_ctx *ctx, enum tlsock__setting_kind kind,
                            const void *text, size_t text_len)
{
    struct tlsock__setting *set = setting_new(kind, text, text_len);

    if (set == NULL) {
        return setter_end(ctx, tlsock__fail(&ctx->err, TLSOCK_ENOMEM,
                                            "out of memory keeping a "
                                            "setting"));
    }
    return setting_add(ctx, set);
}

int tlsock_ctx_new(int role, struct tlsock_ctx **out)
{
    struct tlsock_ctx *ctx = NULL;
    int rc;

    if (out == NULL || (role != TLSOCK_CLIENT && role != TLSOCK_SERVER)) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "role must be TLSOCK_CLIENT or TLSOCK_SERVER");
    }
    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        return tlsock__fail(NULL, TLSOCK_ENOMEM, "out of memory allocating a context");
    }
    atomic_init(&ctx->refs, 1);
    atomic_init(&ctx->frozen, false);
    pthread_mutex_init(&ctx->freeze_lock, NULL);
    ctx->role = role;
    ctx->verify_mode = role == TLSOCK_CLIENT ? TLSOCK_VERIFY_REQUIRED : TLSOCK_VERIFY_NONE;
    ctx->handshake_timeout = TLSOCK_NO_TIMEOUT;
    ctx->trust.max_depth = -1;
    ctx->tickets.lifetime = TLSOCK__TICKET_LIFETIME_DEFAULT;
    tlsock__keylog_init(&ctx->keylog);
    rc = tlsock__default_impl(&ctx->impl);
    if (rc != 0) {
        goto fail;
    }
    rc = ctx->impl->ctx_new(role, &ctx->native, &ctx->err);
    if (rc != 0) {
        tlsock__publish(&ctx->err);
        goto fail;
    }
    rc = tlsock__sessions_init(ctx);
    if (rc != 0) {
        ctx->impl->ctx_free(ctx->native);
        goto fail;
    }
    *out = ctx;
    return 0;
fail:
    tlsock__err_free(&ctx->err);
    pthread_mutex_destroy(&ctx->freeze_lock);
    free(ctx);
    return rc;
}

int tlsock_ctx_set_impl(struct tlsock_ctx *ctx, int impl)
{
    const struct tlsock__impl *chosen = NULL;
    void *native = NULL;
    int rc = setter_begin(ctx);

    if (rc != 0) {
        return rc;
    }
    if (impl != TLSOCK_IMPL_DEFAULT && impl != TLSOCK_IMPL_OPENSSL && impl != TLSOCK_IMPL_GNUTLS) {
        return tlsock__fail(&ctx->err, TLSOCK_EINVAL, "unknown implementation %d", impl);
    }
    chosen = tlsock__impl_get(impl);
    if (chosen == NULL) {
        return tlsock__fail(&ctx->err, TLSOCK_ECONFIG, "%s was not compiled into this tlsock",
                            tlsock_impl_name(impl));
    }
    if (chosen == ctx->impl) {
        return 0;
    }
    rc = chosen->ctx_new(ctx->role, &native, &ctx->err);
    /* Every earlier setter again, in order, on the new implementation. */
    for (const struct tlsock__setting *set = ctx->settings; rc == 0 && set != NULL;
         set = set->next) {
        rc = setting_apply(chosen, native, set, &ctx->err);
    }
    if (rc != 0) {
        if (native != NULL) {
            chosen->ctx_free(native);
        }
        return setter_end(ctx, rc);
    }
    ctx->impl->ctx_free(ctx->native);
    ctx->impl = chosen;
    ctx->native = native;
    return 0;
}

int tlsock_ctx_impl(const struct tlsock_ctx *ctx)
{
    return ctx != NULL ? ctx->impl->id : TLSOCK_IMPL_DEFAULT;
}

void *tlsock_ctx_native(struct tlsock_ctx *ctx)
{
    return ctx != NULL ? ctx->impl->ctx_native(ctx->native) : NULL;
}

int tlsock_ctx_set_configure(struct tlsock_ctx *ctx, tlsock_ctx_configure_fn on_ctx,
                             tlsock_conn_configure_fn on_conn, void *user)
{
    int rc = setter_begin(ctx);

    if (rc != 0) {
        return rc;
    }
    ctx->on_ctx = on_ctx;
    ctx->on_conn = on_conn;
    ctx->configure_user = user;
    return 0;
}

struct tlsock_ctx *tlsock_ctx_ref(struct tlsock_ctx *ctx)
{
    if (ctx != NULL) {
        atomic_fetch_add(&ctx->refs, 1);
    }
    return ctx;
}

void tlsock_ctx_free(struct tlsock_ctx *ctx)
{
    if (ctx == NULL || atomic_fetch_sub(&ctx->refs, 1) != 1) {
        return;
    }
    ctx->impl->ctx_free(ctx->native);
    tlsock__sessions_free(ctx);
    settings_free(ctx);
    certsel_forget(&ctx->certsel);
    free(ctx->certsel.certs);
    free(ctx->trust.pins);
    free(ctx->ocsp_response);
    tlsock__ticket_cache_free(&ctx->tickets);
    explicit_bzero(&ctx->tickets, sizeof(ctx->tickets));
    pass_free(ctx->pass);
    if (ctx->keylog.fd >= 0) {
        close(ctx->keylog.fd);
    }
    tlsock__err_free(&ctx->err);
    pthread_mutex_destroy(&ctx->freeze_lock);
    free(ctx);
}

int tlsock__ctx_role(const struct tlsock_ctx *ctx)
{
    return ctx->role;
}

int tlsock__ctx_refs(const struct tlsock_ctx *ctx)
{
    return atomic_load(&ctx->refs);
}

const char *tlsock_ctx_errmsg(const struct tlsock_ctx *ctx)
{
    return ctx != NULL ? tlsock__err_msg(&ctx->err) : "context is NULL";
}

/* Parses "1.2", "tls1.2" or "TLSv1.2" into 0x0303 and friends; 0 if unknown. */
static int parse_version(const char *s, size_t len)
{
    static const struct {
        const char *name;
        int version;
    } versions[] = {{"1.0", 0x0301}, {"1.1", 0x0302}, {"1.2", 0x0303}, {"1.3", 0x0304}};

    if (len >= 4 && strncasecmp(s, "tlsv", 4) == 0) {
        s += 4;
        len -= 4;
    } else if (len >= 3 && strncasecmp(s, "tls", 3) == 0) {
        s += 3;
        len -= 3;
    }
    for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
        if (len == strlen(versions[i].name) && strncmp(s, versions[i].name, len) == 0) {
            return versions[i].version;
        }
    }
    return 0;
}

int tlsock_ctx_set_protocols(struct tlsock_ctx *ctx, const char *range)
{
    int rc = setter_begin(ctx);
    int min;
    int max = 0x0304;

    if (rc != 0) {
        return rc;
    }
    if (range == NULL) {
        return tlsock__fail(&ctx->err, TLSOCK_EINVAL, "protocol range is NULL");
    }
    const char *dash = strchr(range, '-');
    min = parse_version(range, dash != NULL ? (size_t)(dash - range) : strlen(range));
    if (dash != NULL) {
        max = parse_version(dash + 1, strlen(dash + 1));
    }
    if (min == 0 || max == 0) {
        return tlsock__fail(&ctx->err, TLSOCK_EINVAL,
                            "bad protocol range \"%s\": expected MIN or MIN-MAX of 1.0, 1.1, 1.2, "
                            "1.3",
                            range);
    }
    if (min > max) {
        return tlsock__fail(&ctx->err, TLSOCK_EINVAL,
                            "bad protocol range \"%s\": minimum above maximum", range);
    }
    struct tlsock__setting *set = setting_new(TLSOCK__SET_PROTOCOLS, NULL, 0);
    if (set == NULL) {
        return setter_end(ctx, tlsock__fail(&ctx->err, TLSOCK_ENOMEM, "out of memory"));
    }
    set->min_version = min;
    set->max_version = max;
    return setting_add(ctx, set);
}

int tlsock_ctx_set_ciphers(struct tlsock_ctx *ctx, const char *policy)
{
    int rc = setter_begin(ctx);

    if (rc != 0) {
        return rc;
    }
    if (policy == NULL || policy[0] == '\0') {
        return tlsock__fail(&ctx->err, TLSOCK_EINVAL, "cipher policy is empty");
    }
    return add_text_setting(ctx, TLSOCK__SET_CIPHERS, policy, strlen(policy));
}

/*
 * Puts a prefix (printf @p fmt: the files a setter read) before the message an implementation
 * left in @p err, which only knew PEM text; returns @p rc.
 */
static int fail_naming_files(struct tlsock__err *err, int rc, const char *fmt, ...)
    TLSOCK__PRINTF(3, 4);
static int fail_naming_files(struct tlsock__err *err, int rc, const char *fmt, ...)
{
    char files[TLSOCK__ERRMSG_SIZE];
    char detail[TLSOCK__ERRMSG_SIZE];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(files, sizeof(files), fmt, ap);
    va_end(ap);
    memcpy(detail, err->msg, sizeof(detail));
    return tlsock__fail(err, rc, "%s: %s", files, detail);
}

/* What a file that is not a regular one is, for messages. */
static const char *file_type(mode_t mode)
{
    if (S_ISDIR(mode)) {
        return "a directory";
    }
    if (S_ISFIFO(mode)) {
        return "a FIFO";
    }
    if (S_ISSOCK(mode)) {
        return "a socket";
    }
    if (S_ISCHR(mode) || S_ISBLK(mode)) {
        return "a device";
    }
    return "not a regular file";
}

/*
 * Reads the whole regular file @p path, a @p what ("certificate file"...), into a NUL-terminated
 * buffer the caller frees. It is opened without blocking and refused unless it is a regular
 * file: opening a FIFO would wait for a writer, and a device may never end. Not regular, empty
 * or over @p max bytes: TLSOCK_ECONFIG; cannot be opened or read: TLSOCK_ESYS. Messages name
 * the file.
 */
static int read_file(const char *what, const char *path, size_t max, char **data, size_t *len,
                     struct tlsock__err *err)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    struct stat st;
    char *buf = NULL;
    size_t size = 0;
    size_t n = 0;
    ssize_t got = 0;
    int rc = 0;

    if (fd < 0) {
        return tlsock__fail(err, TLSOCK_ESYS, "cannot open %s %s: %s", what, path, strerror(errno));
    }
    if (fstat(fd, &st) != 0) {
        rc = tlsock__fail(err, TLSOCK_ESYS, "cannot read %s %s: %s", what, path, strerror(errno));
        goto close_fd;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = tlsock__fail(err, TLSOCK_ECONFIG, "%s %s is %s, not a regular file", what, path,
                          file_type(st.st_mode));
        goto close_fd;
    }
    if ((unsigned long long)st.st_size > max) {
        rc = tlsock__fail(err, TLSOCK_ECONFIG, "%s %s is larger than %zu bytes", what, path, max);
        goto close_fd;
    }
    size = (size_t)st.st_size;
    buf = malloc(size + 1);
    if (buf == NULL) {
        rc = tlsock__fail(err, TLSOCK_ENOMEM, "out of memory reading %s %s", what, path);
        goto close_fd;
    }
    /* Bounded: every read makes progress or ends the loop; a file that grew is cut at size. */
    while (n < size) {
        got = read(fd, buf + n, size - n);
        if (got > 0) {
            n += (size_t)got;
        } else if (got == 0) {
            break;
        } else if (errno != EINTR) {
            rc = tlsock__fail(err, TLSOCK_ESYS, "cannot read %s %s: %s", what, path,
                              strerror(errno));
            goto free_buf;
        }
    }
    if (n == 0) {
        rc = tlsock__fail(err, TLSOCK_ECONFIG, "%s %s is empty", what, path);
        goto free_buf;
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    buf = NULL;
free_buf:
    if (buf != NULL) {
        /* It may be a private key. */
        explicit_bzero(buf, n);
        free(buf);
    }
close_fd:
    close(fd);
    return rc;
}

/*
 * Starts a setter that reads a file (@p what: "CA file", "OCSP response") of at most @p max bytes
 * whole into *@p data: a NULL path is TLSOCK_EINVAL; a file that cannot be loaded, for whatever
 * reason, is @p code (the header's promise), but for TLSOCK_ENOMEM.
 */
static int begin_file_setter(struct tlsock_ctx *ctx, const char *what, const char *path, size_t max,
                             int code, char **data, size_t *len)
{
    int rc = setter_begin(ctx);

    if (rc != 0) {
        return rc;
    }
    if (path == NULL) {
        return tlsock__fail(&ctx->err, TLSOCK_EINVAL, "%s path is NULL", what);
    }
    rc = read_file(what, path, max, data, len, &ctx->err);
    return rc == 0 || rc == TLSOCK_ENOMEM ? rc : code;
}

/* A CA or CRL file: TLSOCK_EX509_LOOKUP when it cannot be read. */
static int begin_trust_file(struct tlsock_ctx *ctx, const char *what, const char *path, char **data,
                            size_t *len)
{
    return begin_file_setter(ctx, what, path, CA_FILE_MAX, TLSOCK_EX509_LOOKUP, data, len);
}

int tlsock_ctx_set_ca_file(struct tlsock_ctx *ctx, const char *path)
{
    char *pem = NULL;
    size_t len = 0;
    int rc = begin_trust_file(ctx, "CA file", path, &pem, &len);

    if (rc != 0) {
        return rc;
    }
    /* Kept as the PEM read now: a replay (tlsock_ctx_set_impl) never opens the file again. */
    rc = add_text_setting(ctx, TLSOCK__SET_CA_MEM, pem, len);
    if (rc != 0) {
        rc = fail_naming_files(&ctx->err, rc, "cannot load CA certificates from %s", path);
    } else {
        ctx->ca_set = true;
    }
    free(pem);
    return rc;
}

int tlsock_ctx_set_ca_dir(struct tlsock_ctx *ctx, const char *path)
{
    int rc = setter_begin(ctx);

    if (rc != 0) {
        return rc;
    }
    if (path == NULL) {
        return tlsock__fail(&ctx->err, TLSOCK_EINVAL, "CA directory path is NULL");
    }
    /* Implementations look files up lazily: check now that the directory is there at all. */
    struct stat st;
    if (stat(path, &st) != 0) {
        rc = tlsock__fail(&ctx->err, TLSOCK_EX509_LOOKUP, "CA directory %s: %s", path,
                          strerror(errno));
        return rc;
    }
    if (!S_ISDIR(st.st_mode)) {
        return tlsock__fail(&ctx->err, TLSOCK_EX509_LOOKUP, "CA directory %s: not a directory",
                            path);
    }
    rc = add_text_setting(ctx, TLSOCK__SET_CA_DIR, path, strlen(path));
    if (rc == 0) {
        ctx->ca_set = true;
    }
    return rc;
}

int tlsock_ctx_set_ca_mem(struct tlsock_ctx *ctx, const char *pem, size_t len)
{
    int rc = setter_begin(ctx);

    if (rc != 0) {
        return rc;
    }
    if (pem == NULL || len == 0) {
        return tlsock__fail(&ctx->err, TLSOCK_EINVAL, "CA PEM is empty");
    }
    rc = add_text_setting(ctx, TLSOCK__SET_CA_MEM, pem, len);
    if (rc == 0) {
        ctx->ca_set = true;
    }
    return rc;
}

int tlsock_ctx_set_ca_system(struct tlsock_ctx *ctx)
{
    int rc = setter_begin(ctx);

    if (rc != 0) {
        return rc;
    }
    rc = add_text_setting(ctx, TLSOCK__SET_CA_SYSTEM, NULL, 0);
    if (rc == 0) {
        ctx->ca_set = true;
    }
    return rc;
}

/*
 * Loads a certificate and key, or a PKCS#12 bundle (@p kind), with the context's passphrase, and
 * keeps them as the CERT setting with the passphrase they needed. @p where names the source in
 * messages. The caller has begun the setter.
 */
static int cert_load(struct tlsock_ctx *ctx, int kind, bool add, const char *chain,
                     size_t chain_len, const char *key, size_t key_len, const char *where)
{
    struct tlsock__setting *set = setting_new(TLSOCK__SET_CERT, chain, chain_len);
    struct tlsock__pass *pass = calloc(1, sizeof(*pass));
    struct tlsock__cert_facts facts = {0};
    struct tlsock__certsel *sel = &ctx->certsel;
    /* Room for the new facts first: once the implementation holds the chain, nothing may fail. */
    struct tlsock__cert_facts *room = realloc(sel->certs, (sel->count + 1) * sizeof(*room));
    int rc = 0;

    if (room != NULL) {
        sel->certs = room;
    }
    if (set == NULL || pass == NULL || room == NULL ||
        (key != NULL && !copy_bytes(key, key_len, &set->key))) {
        rc = tlsock__fail(&ctx->err, TLSOCK_ENOMEM, "out of memory");
        goto out;
    }
    set->key_len = key_len;
    set->cert_kind = kind;
    set->cert_add = add;
    pass->given = ctx->pass;
    pass->cb = ctx->pass_cb;
    pass->user = ctx->pass_user;
    rc = cert_apply(ctx->impl, ctx->native, set, pass, &facts, &ctx->err);
    if (rc == 0 && pass->asked && !copy_bytes(pass->buf, pass->len, &set->pass)) {
        /* Without it tlsock_ctx_set_impl() could not load the key again. */
        rc = tlsock__fail(&ctx->err, TLSOCK_ENOMEM, "out of memory keeping the passphrase");
    }
    if (rc != 0) {
        goto out;
    }
    setting_keep(ctx, set);
    set = NULL;
    if (!add) {
        certsel_forget(sel);
    }
    sel->certs[sel->count++] = facts;
    facts.names = NULL;
    ctx->has_cert = true;
out:
    free(facts.names);
    setting_free(set);
    if (pass != NULL) {
        explicit_bzero(pass, sizeof(*pass));
        free(pass);
    }
    if (rc != 0) {
        rc = fail_naming_files(&ctx->err, rc, "%s", where);
    }
    return setter_end(ctx, rc);
}

static int cert_mem(struct tlsock_ctx *ctx, bool add, const char *chain_pem, size_t chain_len,
                    const char *key_pem, size_t key_len)
{
    int rc = setter_begin(ctx);

    if (rc != 0) {
        return rc;
    }
    if (chain_pem == NULL || chain_len == 0 || key_pem == NULL || key_len == 0) {
        return tlsock__fail(&ctx->err, TLSOCK_EINVAL, "certificate chain and key are required");
    }
    return cert_load(ctx, TLSOCK__CERT_PAIR, add, chain_pem, chain_len, key_pem, key_len,
                     "certificate and key in memory");
}

int tlsock_ctx_set_cert_mem(struct tlsock_ctx *ctx, const char *chain_pem, size_t chain_len,
                            const char *key_pem, size_t key_len)
{
    return cert_mem(ctx, false, chain_pem, chain_len, key_pem, key_len);
}

int tlsock_ctx_add_cert_mem(struct tlsock_ctx *ctx, const char *chain_pem, size_t chain_len,
                            const char *key_pem, size_t key_len)
{
    return cert_mem(ctx, true, chain_pem, chain_len, key_pem, key_len);
}

/* Frees what read_file() read, wiping it: it may hold a private key. Accepts NULL. */
static void file_free(char *data, size_t len)
{
    if (data != NULL) {
        explicit_bzero(data, len);
        free(data);
    }
}

static int cert_file(struct tlsock_ctx *ctx, bool add, const char *chain_path, const char *key_path)
{
    char where[TLSOCK__ERRMSG_SIZE];
    char *chain = NULL;
    char *key = NULL;
    size_t chain_len = 0;
    size_t key_len = 0;
    int rc = setter_begin(ctx);

    if (rc != 0) {
        return rc;
    }
    if (chain_path == NULL || key_path == NULL) {
        return tlsock__fail(&ctx->err, TLSOCK_EINVAL, "certificate and key paths are required");
    }
    rc = read_file("certificate file", chain_path, PEM_FILE_MAX, &chain, &chain_len, &ctx->err);
    if (rc != 0) {
        goto out;
    }
    rc = read_file("key file", key_path, PEM_FILE_MAX, &key, &key_len, &ctx->err);
    if (rc != 0) {
        goto out;
    }
    snprintf(where, sizeof(where), "certificate file %s, key file %s", chain_path, key_path);
    rc = cert_load(ctx, TLSOCK__CERT_PAIR, add, chain, chain_len, key, key_len, where);
out:
    file_free(chain, chain_len);
    file_free(key, key_len);
    return rc;
}

int tlsock_ctx_set_cert_file(struct tlsock_ctx *ctx, const char *chain_path, const char *key_path)
{
    return cert_file(ctx, false, chain_path, key_path);
}

int tlsock_ctx_add_cert_file(struct tlsock_ctx *ctx, const char *chain_path, const char *key_path)
{
    return cert_file(ctx, true, chain_path, key_path);
}

int tlsock_ctx_set_key_passphrase(struct tlsock_ctx *ctx, const char *pass)
{
    char *copy = NULL;
    int rc = setter_begin(ctx);

    if (rc != 0) {
        return rc;
    }
    if (pass != NULL && strlen(pass) > TLSOCK_PASSPHRASE_MAX) {
        return tlsock__fail(&ctx->err, TLSOCK_EINVAL, "passphrase is longer than %d bytes",
                            TLSOCK_PASSPHRASE_MAX);
    }
    if (pass != NULL && !copy_bytes(pass, strlen(pass), &copy)) {
        return tlsock__fail(&ctx->err, TLSOCK_ENOMEM, "out of memory copying the passphrase");
    }
    pass_free(ctx->pass);
    ctx->pass = copy;
    ctx->pass_cb = NULL;
    ctx->pass_user = NULL;
    return 0;
}

int tlsock_ctx_set_key_passphrase_cb(struct tlsock_ctx *ctx, tlsock_passphrase_fn cb, void *user)
{
    int rc = setter_begin(ctx);

    if (rc != 0) {
        return rc;
    }
    pass_free(ctx->pass);
    ctx->pass = NULL;
    ctx->pass_cb = cb;
    ctx->pass_user = cb != NULL ? user : NULL;
    return 0;
}

static int pkcs12_mem(struct tlsock_ctx *ctx, bool add, const void *data, size_t len)
{
    int rc = setter_begin(ctx);

    if (rc != 0) {
        return rc;
    }
    if (data == NULL || len == 0) {
        return tlsock__fail(&ctx->err, TLSOCK_EINVAL, "PKCS#12 bundle is empty");
    }
    return cert_load(ctx, TLSOCK__CERT_PKCS12, add, data, len, NULL, 0, "PKCS#12 bundle in memory");
}

static int pkcs12_file(struct tlsock_ctx *ctx, bool add, const char *path)
{
    char where[TLSOCK__ERRMSG_SIZE];
    char *data = NULL;
    size_t len = 0;
    int rc = setter_begin(ctx);

    if (rc != 0) {
        return rc;
    }
    if (path == NULL) {
        return tlsock__fail(&ctx->err, TLSOCK_EINVAL, "PKCS#12 file path is NULL");
    }
    rc = read_file("PKCS#12 file", path, PEM_FILE_MAX, &data, &len, &ctx->err);
    if (rc == 0) {
        snprintf(where, sizeof(where), "PKCS#12 file %s", path);
        rc = cert_load(ctx, TLSOCK__CERT_PKCS12, add, data, len, NULL, 0, where);
    }
    file_free(data, len);
    return rc;
}

int tlsock_ctx_set_pkcs12_mem(struct tlsock_ctx *ctx, const void *data, size_t len)
{
    return pkcs12_mem(ctx, false, data, len);
}

int tlsock_ctx_add_pkcs12_mem(struct tlsock_ctx *ctx, const void *data, size_t len)
{
    return pkcs12_mem(ctx, true, data, len);
}

int tlsock_ctx_set_pkcs12_file(struct tlsock_ctx *ctx, const char *path)
{
    return pkcs12_file(ctx, false, path);
}

int tlsock_ctx_add_pkcs12_file(struct tlsock_ctx *ctx, const char *path)
{
    return pkcs12_file(ctx, true, path);
}

size_t tlsock_ctx_cert_count(const struct tlsock_ctx *ctx)
{
    return ctx != NULL ? ctx->certsel.count : 0;
}

int tlsock_ctx_set_default_cert(struct tlsock_ctx *ctx, size_t index)
{
    int rc = setter_begin(ctx);

    if (rc != 0) {
        return rc;
    }
    if (index >= ctx->certsel.count) {
        return tlsock__fail(&ctx->err, TLSOCK_EINVAL,
                            "no certificate %zu: the context has %zu (numbered from 0)", index,
                            ctx->certsel.count);
    }
    ctx->certsel.default_index = index;
    return 0;
}

int tlsock_ctx_set_sni_callback(struct tlsock_ctx *ctx, tlsock_sni_fn fn, void *user)
{
    int rc = setter_begin(ctx);

    if (rc != 0) {
        return rc;
    }
    if (ctx->role != TLSOCK_SERVER) {
        return tlsock__fail(&ctx->err, TLSOCK_EINVAL, "an SNI callback is for server contexts");
    }
    ctx->certsel.callback = fn;
    ctx->certsel.callback_user = fn != NULL ? user : NULL;
    return 0;
}

int tlsock_ctx_set_verify(struct tlsock_ctx *ctx, int mode)
{
    int rc = setter_begin(ctx);

    if (rc != 0) {
        return rc;
    }
    if (mode != TLSOCK_VERIFY_REQUIRED && mode != TLSOCK_VERIFY_OPTIONAL &&
        mode != TLSOCK_VERIFY_NONE) {
        return tlsock__fail(&ctx->err, TLSOCK_EINVAL, "unknown verify mode %d", mode);
    }
    if (mode == TLSOCK_VERIFY_OPTIONAL && ctx->role == TLSOCK_CLIENT) {
        return tlsock__fail(&ctx->err, TLSOCK_EINVAL,
                            "TLSOCK_VERIFY_OPTIONAL is for servers; clients verify or do not");
    }
    ctx->verify_mode = mode;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Trust: CRLs, pins, depth, verify callback
 * ------------------------------------------------------------------------------------------- */

int tlsock_ctx_add_crl_mem(struct tlsock_ctx *ctx, const void *data, size_t len)
{
    int rc = setter_begin(ctx);

    if (rc != 0) {
        return rc;
    }
    if (data == NULL || len == 0) {
        return tlsock__fail(&ctx->err, TLSOCK_EINVAL, "CRL data is empty");
    }
    rc = add_text_setting(ctx, TLSOCK__SET_CRL, data, len);
    if (rc == 0 && ctx->trust.crl_mode == 0) {
        ctx->trust.crl_mode = TLSOCK_CRL_LEAF;
    }
    return rc;
}

int tlsock_ctx_add_crl_file(struct tlsock_ctx *ctx, const char *path)
{
    char *data = NULL;
    size_t len = 0;
    int rc = begin_trust_file(ctx, "CRL file", path, &data, &len);

    if (rc != 0) {
        return rc;
    }
    /* Kept as read now, like a CA file: a replay never opens the file again. */
    rc = tlsock_ctx_add_crl_mem(ctx, data, len);
    if (rc != 0) {
        rc = fail_naming_files(&ctx->err, rc, "cannot load CRLs from %s", path);
    }
    free(data);
    return rc;
}

int tlsock_ctx_set_crl_mode(struct tlsock_ctx *ctx, int mode)
{
    int rc = setter_begin(ctx);

    if (rc != 0) {
        return rc;
    }
    if (mode != TLSOCK_CRL_LEAF && mode != TLSOCK_CRL_CHAIN) {
        return tlsock__fail(&ctx->err, TLSOCK_EINVAL, "unknown CRL mode %d", mode);
    }
    ctx->trust.crl_mode = mode;
    return 0;
}

/* The value of one base64 character, -1 for anything else. */
static int base64_value(char ch)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *at = ch != '\0' ? strchr(alphabet, ch) : NULL;

    return at != NULL ? (int)(at - alphabet) : -1;
}

/* Decodes the 44 characters of base64 for 32 bytes (RFC 4648, one '=' of padding). */
static bool decode_base64_32(const char *text, unsigned char out[32])
{
    unsigned long acc = 0;
    int bits = 0;
    size_t n = 0;

    if (strlen(text) != 44 || text[43] != '=') {
        return false;
    }
    for (size_t i = 0; i < 43; i++) {
        int v = base64_value(text[i]);
        if (v < 0) {
            return false;
        }
        acc = (acc << 6) | (unsigned long)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    /* 43 characters carry 258 bits: 32 bytes and two bits that must be zero. */
    return n == 32 && (acc & ((1UL << bits) - 1)) == 0;
}

/* Decodes 64 hexadecimal digits, optionally with one colon between bytes ("AB:CD:..."). */
static bool decode_hex_32(const char *text, unsigned char out[32])
{
    static const char digits[] = "0123456789abcdef";
    size_t n = 0;

    for (const char *p = text; *p != '\0'; p++) {
        if (*p == ':' && n % 2 == 0 && n > 0 && p[-1] != ':' && p[1] != '\0') {
            continue;
        }
        const char *d = strchr(digits, tolower((unsigned char)*p));
        if (d == NULL || n >= 64) {
            return false;
        }
        int v = (int)(d - digits);
        out[n / 2] = (unsigned char)(n % 2 == 0 ? v << 4 : out[n / 2] | v);
        n++;
    }
    return n == 64;
}

int tlsock_ctx_add_pin(struct tlsock_ctx *ctx, const char *pin)
{
    unsigned char digest[32];
    int rc = setter_begin(ctx);

    if (rc != 0) {
        return rc;
    }
    bool ok = false;
    if (pin != NULL && (strncmp(pin, "sha256/", 7) == 0 || strncmp(pin, "sha256:", 7) == 0)) {
        ok = decode_base64_32(pin + 7, digest);
    } else if (pin != NULL) {
        ok = decode_hex_32(pin, digest);
    }
    if (!ok) {
        return tlsock__fail(&ctx->err, TLSOCK_EINVAL,
                            "bad pin \"%.100s\": expected sha256/BASE64 (44 characters) or 64 "
                            "hexadecimal digits",
                            pin != NULL ? pin : "(null)");
    }
    unsigned char(*pins)[32] = realloc(ctx->trust.pins, (ctx->trust.pin_count + 1) * sizeof(*pins));
    if (pins == NULL) {
        return setter_end(ctx,
                          tlsock__fail(&ctx->err, TLSOCK_ENOMEM, "out of memory adding a pin"));
    }
    memcpy(pins[ctx->trust.pin_count], digest, sizeof(digest));
    ctx->trust.pins = pins;
    ctx->trust.pin_count++;
    return 0;
}

int tlsock_ctx_set_verify_depth(struct tlsock_ctx *ctx, int max_intermediates)
{
    int rc = setter_begin(ctx);

    if (rc != 0) {
        return rc;
    }
    if (max_intermediates < -1) {
        return tlsock__fail(&ctx->err, TLSOCK_EINVAL,
                            "verify depth must be -1 (no limit) or at least 0");
    }
    ctx->trust.max_depth = max_intermediates;
    return 0;
}

int tlsock_ctx_set_verify_callback(struct tlsock_ctx *ctx, tlsock_verify_fn fn, void *user)
{
    int rc = setter_begin(ctx);

    if (rc != 0) {
        return rc;
    }
    ctx->trust.callback = fn;
    ctx->trust.callback_user = user;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * OCSP stapling
 * ------------------------------------------------------------------------------------------- */

int tlsock_ctx_set_ocsp_mode(struct tlsock_ctx *ctx, int mode)
{
    int rc = setter_begin(ctx);

    if (rc != 0) {
        return rc;
    }
    if (ctx->role != TLSOCK_CLIENT) {
        return tlsock__fail(&ctx->err, TLSOCK_EINVAL,
                            "the OCSP mode is for clients; servers staple a response set with "
                            "tlsock_ctx_set_ocsp_response_file");
    }
    if (mode != TLSOCK_OCSP_OFF && mode != TLSOCK_OCSP_REQUEST && mode != TLSOCK_OCSP_REQUIRE) {
        return tlsock__fail(&ctx->err, TLSOCK_EINVAL, "unknown OCSP mode %d", mode);
    }
    ctx->trust.ocsp_mode = mode;
    return 0;
}

/*
 * Whether @p der is one DER SEQUENCE of exactly @p len bytes whose first element is an
 * ENUMERATED (OCSPResponse's responseStatus, RFC 6960 section 4.2.1): enough to catch a PEM file
 * or another object given by mistake. What the response says is for clients to check.
 */
static bool looks_like_ocsp_response(const unsigned char *der, size_t len)
{
    if (len < 5 || der[0] != 0x30) {
        return false;
    }
    size_t header = 2;
    size_t body = der[1];
    if (der[1] & 0x80) {
        size_t n = der[1] & 0x7f;
        if (n == 0 || n > 3 || len < 2 + n) {
            return false;
        }
        body = 0;
        for (size_t i = 0; i < n; i++) {
            body = body << 8 | der[2 + i];
        }
        header = 2 + n;
    }
    return header + body == len && len > header && der[header] == 0x0a;
}

int tlsock_ctx_set_ocsp_response_mem(struct tlsock_ctx *ctx, const void *der, size_t len)
{
    unsigned char *copy = NULL;
    int rc = setter_begin(ctx);

    if (rc != 0) {
        return rc;
    }
    if (ctx->role != TLSOCK_SERVER) {
        return tlsock__fail(&ctx->err, TLSOCK_EINVAL,
                            "an OCSP response is stapled by servers; clients set an OCSP mode");
    }
    if (len > 0 && der == NULL) {
        return tlsock__fail(&ctx->err, TLSOCK_EINVAL, "OCSP response is NULL");
    }
    if (len > 0 && !looks_like_ocsp_response(der, len)) {
        return setter_end(ctx, tlsock__fail(&ctx->err, TLSOCK_ECONFIG,
                                            "not a DER OCSP response (%zu bytes)", len));
    }
    if (len > 0) {
        copy = malloc(len);
        if (copy == NULL) {
            return setter_end(ctx, tlsock__fail(&ctx->err, TLSOCK_ENOMEM,
                                                "out of memory keeping the OCSP response"));
        }
        memcpy(copy, der, len);
    }
    free(ctx->ocsp_response);
    ctx->ocsp_response = copy;
    ctx->ocsp_response_len = len;
    return 0;
}

int tlsock_ctx_set_ocsp_response_file(struct tlsock_ctx *ctx, const char *path)
{
    char *data = NULL;
    size_t len = 0;
    int rc =
        begin_file_setter(ctx, "OCSP response", path, PEM_FILE_MAX, TLSOCK_ECONFIG, &data, &len);

    if (rc == 0) {
        rc = tlsock_ctx_set_ocsp_response_mem(ctx, data, len);
        if (rc == TLSOCK_ECONFIG) {
            rc = fail_naming_files(&ctx->err, rc, "cannot load an OCSP response from %s", path);
        }
    }
    if (rc != 0) {
        tlsock__publish(&ctx->err);
    }
    free(data);
    return rc;
}

int tlsock_ctx_set_alpn(struct tlsock_ctx *ctx, const char *list)
{
    unsigned char wire[1024];
    size_t len = 0;
    int rc = setter_begin(ctx);

    if (rc != 0) {
        return rc;
    }
    /* RFC 7301 section 3.1: each name is 1..255 bytes, length-prefixed on the wire. */
    for (const char *p = list != NULL ? list : ""; *p != '\0';) {
        size_t n = strcspn(p, ",");
        if (n == 0 || n > 255) {
            return tlsock__fail(&ctx->err, TLSOCK_EINVAL,
                                "bad ALPN list \"%s\": names must be 1 to 255 bytes", list);
        }
        if (len + 1 + n > sizeof(wire)) {
            return tlsock__fail(&ctx->err, TLSOCK_EINVAL, "ALPN list is too long");
        }
        wire[len++] = (unsigned char)n;
        memcpy(wire + len, p, n);
        len += n;
        p += n;
        if (*p == ',') {
            p++;
        }
    }
    return add_text_setting(ctx, TLSOCK__SET_ALPN, wire, len);
}

int tlsock_ctx_set_handshake_timeout(struct tlsock_ctx *ctx, int timeout_ms)
{
    int rc = setter_begin(ctx);

    if (rc != 0) {
        return rc;
    }
    if (timeout_ms < 0) {
        return tlsock__fail(&ctx->err, TLSOCK_EINVAL, "timeout must be >= 0 (0: none)");
    }
    ctx->handshake_timeout = timeout_ms;
    return 0;
}

int tlsock_ctx_set_session_cache(struct tlsock_ctx *ctx, size_t max_entries)
{
    int rc = setter_begin(ctx);

    if (rc != 0) {
        return rc;
    }
    return setter_end(ctx, tlsock__sessions_resize(ctx, max_entries));
}

/* ---------------------------------------------------------------------------------------------
 * Key log: kept by the core, not the native context, so a change of implementation keeps it.
 * ------------------------------------------------------------------------------------------- */

int tlsock_ctx_set_keylog(struct tlsock_ctx *ctx, tlsock_keylog_fn fn, void *user)
{
    int rc = setter_begin(ctx);

    if (rc != 0) {
        return rc;
    }
    ctx->keylog.fn = fn;
    ctx->keylog.user = user;
    return 0;
}

int tlsock_ctx_set_keylog_file(struct tlsock_ctx *ctx, const char *path)
{
    int fd = -1;
    int rc = setter_begin(ctx);

    if (rc != 0) {
        return rc;
    }
    if (path != NULL) {
        rc = tlsock__keylog_open(path, &fd, &ctx->err);
        if (rc != 0) {
            return rc;
        }
    }
    if (ctx->keylog.fd >= 0) {
        close(ctx->keylog.fd);
    }
    ctx->keylog.fd = fd;
    return 0;
}

int tlsock__ctx_freeze(struct tlsock_ctx *ctx, struct tlsock__err *err)
{
    int rc = 0;

    if (atomic_load(&ctx->frozen)) {
        return 0;
    }
    if (ctx->role == TLSOCK_SERVER && !ctx->has_cert) {
        return tlsock__fail(err, TLSOCK_ECONFIG,
                            "server context has no certificate: call tlsock_ctx_set_cert_file or "
                            "tlsock_ctx_set_cert_mem");
    }
    const struct tlsock__trust *t = &ctx->trust;
    if (ctx->verify_mode == TLSOCK_VERIFY_NONE &&
        (t->crl_mode != 0 || t->pin_count > 0 || t->max_depth >= 0 || t->callback != NULL)) {
        /* Checks that would never run must not look like protection. */
        return tlsock__fail(err, TLSOCK_ECONFIG,
                            "CRLs, pins, a verify depth or a verify callback are set but the "
                            "context does not verify its peer: call tlsock_ctx_set_verify");
    }
    if (ctx->verify_mode == TLSOCK_VERIFY_NONE && t->ocsp_mode != TLSOCK_OCSP_OFF) {
        return tlsock__fail(err, TLSOCK_ECONFIG,
                            "an OCSP mode is set but the context does not verify its peer: call "
                            "tlsock_ctx_set_verify");
    }
    pthread_mutex_lock(&ctx->freeze_lock);
    if (!atomic_load(&ctx->frozen)) {
        /* Clients trust the system store unless told otherwise; servers trust nothing. */
        bool needs_store = ctx->role == TLSOCK_CLIENT && ctx->verify_mode != TLSOCK_VERIFY_NONE;
        if (!ctx->ca_set && needs_store) {
            rc = ctx->impl->ctx_add_ca_system(ctx->native, err);
        }
        if (rc == 0 && ctx->role == TLSOCK_SERVER) {
            tlsock__store_ctx_freeze(ctx);
            rc = tlsock__ctx_tickets_freeze(ctx, err);
        }
        if (rc == 0 && ctx->impl->ctx_set_keylog != NULL) {
            ctx->impl->ctx_set_keylog(ctx->native, tlsock__keylog_on(&ctx->keylog));
        }
        if (rc == 0 && ctx->on_ctx != NULL) {
            /* The user's callback sees the context exactly as tlsock configured it. */
            rc = ctx->on_ctx(ctx->impl->ctx_native(ctx->native), ctx->configure_user);
            if (rc != 0) {
                rc = tlsock__fail(err, rc < 0 ? rc : TLSOCK_ECONFIG,
                                  "the context configure callback failed (%d)", rc);
            }
        }
        if (rc == 0) {
            rc = tlsock__sessions_freeze(ctx, err);
        }
        if (rc == 0) {
            atomic_store(&ctx->frozen, true);
        }
    }
    pthread_mutex_unlock(&ctx->freeze_lock);
    return rc;
}
