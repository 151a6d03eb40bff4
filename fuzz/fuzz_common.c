/* What the harnesses share; see fuzz.h. */
#include "fuzz.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fz_pki fz_pki;

const char *const fz_protocols[4] = {"1.2-1.3", "1.3", "1.2-1.2", "1.0-1.3"};
const char *const fz_ciphers[2] = {"secure", "compat"};

uint8_t fz_u8(struct fz_in *in)
{
    if (in->n == 0) {
        return 0;
    }
    uint8_t v = in->p[0];
    in->p++;
    in->n--;
    return v;
}

uint16_t fz_u16(struct fz_in *in)
{
    uint16_t hi = fz_u8(in);

    return (uint16_t)(hi << 8 | fz_u8(in));
}

const uint8_t *fz_bytes(struct fz_in *in, size_t want, size_t *len)
{
    const uint8_t *p = in->p;

    *len = want < in->n ? want : in->n;
    in->p += *len;
    in->n -= *len;
    return p;
}

void fz_fail(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "fuzz invariant broken: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    abort();
}

void fz_setup(void)
{
    if (fz_pki.ca != NULL) {
        return;
    }
    int rc = tlsock_devcert_new(FZ_HOST, &fz_pki.ca, &fz_pki.cert, &fz_pki.key);
    if (rc != 0) {
        fprintf(stderr, "fuzz setup: tlsock_devcert_new: %s (%s)\n", tlsock_err_name(rc),
                tlsock_errmsg());
        abort();
    }
}

int fz_impl(unsigned bit)
{
    int want = bit & 1 ? TLSOCK_IMPL_GNUTLS : TLSOCK_IMPL_OPENSSL;

    if (tlsock_impl_available(want)) {
        return want;
    }
    return want == TLSOCK_IMPL_GNUTLS ? TLSOCK_IMPL_OPENSSL : TLSOCK_IMPL_GNUTLS;
}

/* Contexts made so far, by configuration. A few dozen configurations exist at most. Servers
 * cache sessions, so the contexts are made anew every CTX_RECYCLE inputs to bound memory. */
enum { CTX_CACHE = 256, CTX_RECYCLE = 4096 };
static struct {
    struct fz_config cfg;
    struct tlsock_ctx *ctx;
} cache[CTX_CACHE];
static size_t cached;

void fz_input_begin(void)
{
    static unsigned inputs;

    if (++inputs % CTX_RECYCLE != 0) {
        return;
    }
    for (size_t i = 0; i < cached; i++) {
        tlsock_ctx_free(cache[i].ctx);
    }
    cached = 0;
}

static bool same_str(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool same_config(const struct fz_config *a, const struct fz_config *b)
{
    return a->role == b->role && a->impl == b->impl && same_str(a->protocols, b->protocols) &&
           same_str(a->ciphers, b->ciphers) && a->verify == b->verify && a->cert == b->cert &&
           a->trust == b->trust && same_str(a->alpn, b->alpn);
}

/* Aborts naming the setter: a configuration the harness asks for must work. */
static void must(int rc, struct tlsock_ctx *ctx, const char *what)
{
    if (rc != 0) {
        fz_fail("context setup: %s: %s (%s)", what, tlsock_err_name(rc),
                ctx != NULL ? tlsock_ctx_errmsg(ctx) : tlsock_errmsg());
    }
}

struct tlsock_ctx *fz_ctx(const struct fz_config *cfg)
{
    struct tlsock_ctx *ctx = NULL;

    for (size_t i = 0; i < cached; i++) {
        if (same_config(&cache[i].cfg, cfg)) {
            return cache[i].ctx;
        }
    }
    if (cached == CTX_CACHE) {
        fz_fail("more than %d context configurations", CTX_CACHE);
    }
    must(tlsock_ctx_new(cfg->role, &ctx), NULL, "tlsock_ctx_new");
    must(tlsock_ctx_set_impl(ctx, cfg->impl), ctx, "set_impl");
    must(tlsock_ctx_set_protocols(ctx, cfg->protocols), ctx, "set_protocols");
    /* TLS 1.0 and 1.1 only negotiate with the legacy policy. */
    const char *ciphers = strncmp(cfg->protocols, "1.0", 3) == 0 ? "legacy" : cfg->ciphers;
    must(tlsock_ctx_set_ciphers(ctx, ciphers), ctx, "set_ciphers");
    if (cfg->cert) {
        must(tlsock_ctx_set_cert_mem(ctx, fz_pki.cert, strlen(fz_pki.cert), fz_pki.key,
                                     strlen(fz_pki.key)),
             ctx, "set_cert_mem");
    }
    if (cfg->trust) {
        must(tlsock_ctx_set_ca_mem(ctx, fz_pki.ca, strlen(fz_pki.ca)), ctx, "set_ca_mem");
    }
    must(tlsock_ctx_set_verify(ctx, cfg->verify), ctx, "set_verify");
    if (cfg->alpn != NULL) {
        must(tlsock_ctx_set_alpn(ctx, cfg->alpn), ctx, "set_alpn");
    }
    cache[cached].cfg = *cfg;
    cache[cached].ctx = ctx;
    cached++;
    return ctx;
}

size_t fz_discard_output(struct tlsock_conn *conn)
{
    unsigned char sink[16384];
    size_t total = 0;
    size_t n = 0;

    while (tlsock_conn_pending_output(conn) > 0 &&
           tlsock_drain(conn, sink, sizeof(sink), &n) == 0) {
        total += n;
    }
    return total;
}
