/*
 * GnuTLS contexts: credentials, trust anchors, the certificate, ALPN and the priority string
 * built from the cipher policy and the protocol range.
 *
 * GnuTLS has no separate TLS 1.3 suite list and no security level: both are expressed in one
 * priority string, rebuilt by every setter so that a bad combination fails at the setter, as
 * with OpenSSL, and connections only read the finished priority cache.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/abstract.h>
#include <gnutls/x509.h>

#include "certsel.h"
#include "gnutls_int.h"

/*
 * The cipher parts of the named policies, each followed by the protocol versions. "secure":
 * TLS 1.3 AEAD suites and TLS 1.2 ECDHE with AES-GCM or ChaCha20-Poly1305; %PROFILE_MEDIUM
 * refuses peer keys under 112 bits (RSA under 2048), like OpenSSL's security level 2.
 */
#define SECURE_BASE                                                                                \
    "NORMAL:-CIPHER-ALL:-MAC-ALL:-KX-ALL:+AES-256-GCM:+CHACHA20-POLY1305:+AES-128-GCM:+AEAD:"      \
    "+ECDHE-ECDSA:+ECDHE-RSA"

static const struct cipher_policy {
    const char *name;
    const char *priority;
    bool old_versions; /* TLS 1.0 and 1.1 may be enabled by the protocol range */
    int min_key_bits;  /* smallest RSA key accepted for our own certificate */
} cipher_policies[] = {
    {"secure", SECURE_BASE ":%PROFILE_MEDIUM", false, 2048},
    {"compat",
     "NORMAL:-CIPHER-ALL:-MAC-ALL:-KX-ALL:+AES-256-GCM:+CHACHA20-POLY1305:+AES-128-GCM:"
     "+AES-256-CBC:+AES-128-CBC:+AEAD:+SHA384:+SHA256:+SHA1:+ECDHE-ECDSA:+ECDHE-RSA:+DHE-RSA:+RSA:"
     "%PROFILE_MEDIUM",
     false, 2048},
    {"legacy",
     "NORMAL:+AES-256-CBC:+AES-128-CBC:+3DES-CBC:+SHA1:+SHA256:+SHA384:+RSA:+DHE-RSA:+SIGN-ALL:"
     "%PROFILE_VERY_WEAK",
     true, 0},
};

/* TLS 1.3 suite names (RFC 8446 appendix B.4) and the GnuTLS cipher behind each. */
static const struct {
    const char *suite;
    const char *cipher;
} tls13_suites[] = {
    {"TLS_AES_128_GCM_SHA256", "AES-128-GCM"},
    {"TLS_AES_256_GCM_SHA384", "AES-256-GCM"},
    {"TLS_CHACHA20_POLY1305_SHA256", "CHACHA20-POLY1305"},
    {"TLS_AES_128_CCM_SHA256", "AES-128-CCM"},
    {"TLS_AES_128_CCM_8_SHA256", "AES-128-CCM-8"},
};

/* OpenSSL's TLS 1.2 cipher names: key exchange prefix, then cipher and MAC. */
static const struct {
    const char *prefix;
    const char *kx;
} ossl_kx[] = {
    {"ECDHE-ECDSA-", "ECDHE-ECDSA"},
    {"ECDHE-RSA-", "ECDHE-RSA"},
    {"DHE-RSA-", "DHE-RSA"},
    {"", "RSA"},
};

static const struct {
    const char *name;
    const char *cipher;
    const char *mac;
} ossl_ciphers[] = {
    {"AES128-GCM-SHA256", "AES-128-GCM", "AEAD"},
    {"AES256-GCM-SHA384", "AES-256-GCM", "AEAD"},
    {"CHACHA20-POLY1305", "CHACHA20-POLY1305", "AEAD"},
    {"AES128-SHA256", "AES-128-CBC", "SHA256"},
    {"AES256-SHA384", "AES-256-CBC", "SHA384"},
    {"AES128-SHA", "AES-128-CBC", "SHA1"},
    {"AES256-SHA", "AES-256-CBC", "SHA1"},
};

/* Priority keywords that start a GnuTLS priority string (gnutls_priority_init(3)). */
static const char *const gnutls_keywords[] = {
    "NORMAL", "NONE", "SECURE", "PERFORMANCE", "PFS", "LEGACY", "SUITEB", "SYSTEM", "@",
};

/* Appends "%s" to @p dst, ':'-separated; false when it does not fit. */
static bool append(char *dst, size_t size, const char *item, size_t item_len)
{
    size_t used = strlen(dst);
    int n = snprintf(dst + used, size - used, "%s%.*s", used > 0 ? ":" : "", (int)item_len, item);

    return n >= 0 && (size_t)n < size - used;
}

/* Maps an OpenSSL TLS 1.2 cipher name to "+KX:+CIPHER:+MAC"; false if it is not one. */
static bool map_openssl_name(const char *name, size_t len, char *out, size_t size)
{
    for (size_t k = 0; k < sizeof(ossl_kx) / sizeof(ossl_kx[0]); k++) {
        size_t plen = strlen(ossl_kx[k].prefix);
        if (len < plen || strncmp(name, ossl_kx[k].prefix, plen) != 0) {
            continue;
        }
        for (size_t i = 0; i < sizeof(ossl_ciphers) / sizeof(ossl_ciphers[0]); i++) {
            if (len - plen == strlen(ossl_ciphers[i].name) &&
                strncmp(name + plen, ossl_ciphers[i].name, len - plen) == 0) {
                int n = snprintf(out, size, "+%s:+%s:+%s", ossl_kx[k].kx, ossl_ciphers[i].cipher,
                                 ossl_ciphers[i].mac);
                return n > 0 && (size_t)n < size;
            }
        }
    }
    return false;
}

static bool starts_with_keyword(const char *raw)
{
    for (size_t i = 0; i < sizeof(gnutls_keywords) / sizeof(gnutls_keywords[0]); i++) {
        if (strncmp(raw, gnutls_keywords[i], strlen(gnutls_keywords[i])) == 0) {
            return true;
        }
    }
    return false;
}

/*
 * Turns a raw cipher string into the cipher part of a priority string: a GnuTLS priority string
 * is used as it is; otherwise every name must be a TLS 1.3 suite name or an OpenSSL TLS 1.2
 * cipher name, so that the same configuration works with either implementation. GnuTLS cannot
 * restrict TLS 1.3 suites apart from TLS 1.2 ciphers: suite names restrict both.
 */
static int translate_raw(const char *raw, char *out, size_t size, struct tlsock__err *err)
{
    char items[1024] = "";
    const char *p = raw;
    int rc = 0;

    if (starts_with_keyword(raw)) {
        /* As OpenSSL keeps its security level under a raw cipher list, unless it names one. */
        const char *profile = strstr(raw, "%PROFILE_") != NULL ? "" : ":%PROFILE_MEDIUM";
        if ((size_t)snprintf(out, size, "%s%s", raw, profile) >= size) {
            rc = tlsock__fail(err, TLSOCK_ECONFIG, "cipher policy \"%.200s\" is too long", raw);
        }
        return rc;
    }
    while (*p != '\0' && rc == 0) {
        size_t n = strcspn(p, ":");
        char mapped[128] = "";
        if (n > 4 && strncmp(p, "TLS_", 4) == 0) {
            for (size_t i = 0; i < sizeof(tls13_suites) / sizeof(tls13_suites[0]); i++) {
                if (n == strlen(tls13_suites[i].suite) &&
                    strncmp(p, tls13_suites[i].suite, n) == 0) {
                    snprintf(mapped, sizeof(mapped), "+%s:+AEAD", tls13_suites[i].cipher);
                }
            }
        } else if (n > 0) {
            map_openssl_name(p, n, mapped, sizeof(mapped));
        }
        if (n > 0 && mapped[0] == '\0') {
            rc = tlsock__fail(err, TLSOCK_ECONFIG,
                              "gnutls: cipher policy \"%.200s\": \"%.*s\" is neither secure, "
                              "compat, legacy, a TLS 1.3 suite, an OpenSSL cipher name GnuTLS "
                              "knows, nor a GnuTLS priority string",
                              raw, (int)(n > 64 ? 64 : n), p);
        } else if (n > 0 && !append(items, sizeof(items), mapped, strlen(mapped))) {
            rc = tlsock__fail(err, TLSOCK_ECONFIG, "cipher policy \"%.200s\" is too long", raw);
        }
        p += n;
        if (*p == ':') {
            p++;
        }
    }
    if (rc == 0 && items[0] == '\0') {
        rc = tlsock__fail(err, TLSOCK_ECONFIG, "cipher policy \"%.200s\" names no cipher", raw);
    }
    if (rc == 0) {
        snprintf(out, size,
                 "NORMAL:-CIPHER-ALL:-MAC-ALL:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:%s:"
                 "%%PROFILE_MEDIUM",
                 items);
    }
    return rc;
}

/* Named groups GnuTLS offers and their code points (RFC 8446 section 4.2.7, RFC 7919). */
static const struct {
    unsigned code;
    const char *name; /* gnutls_group_get_name() */
} named_groups[] = {
    {23, "SECP256R1"},  {24, "SECP384R1"},  {25, "SECP521R1"},  {29, "X25519"},
    {30, "X448"},       {256, "FFDHE2048"}, {257, "FFDHE3072"}, {258, "FFDHE4096"},
    {259, "FFDHE6144"}, {260, "FFDHE8192"},
};

static unsigned group_code(const char *name)
{
    for (size_t i = 0; name != NULL && i < sizeof(named_groups) / sizeof(named_groups[0]); i++) {
        if (strcmp(name, named_groups[i].name) == 0) {
            return named_groups[i].code;
        }
    }
    return 0;
}

static void free_share_prios(struct gtls_share_prio *list, unsigned count)
{
    for (unsigned i = 0; i < count; i++) {
        gnutls_priority_deinit(list[i].prio);
    }
}

/*
 * For every group @p base enables, the same priorities with that group alone, into @p out.
 * GnuTLS picks the group by preference alone (and GnuTLS 3.7 prefers an elliptic curve to a
 * finite field group whatever their order) and asks for its share with a HelloRetryRequest;
 * gnutls.c hands a TLS 1.3 session the variant for the first share the client sent that we can
 * use, which is the group OpenSSL's server takes.
 */
static int build_share_prios(const char *prio, gnutls_priority_t base,
                             struct gtls_share_prio out[GTLS_MAX_SHARE_PRIOS], unsigned *count,
                             struct tlsock__err *err)
{
    const unsigned *groups = NULL;
    int n = gnutls_priority_group_list(base, &groups);

    *count = 0;
    for (int i = 0; i < n && *count < GTLS_MAX_SHARE_PRIOS; i++) {
        const char *name = gnutls_group_get_name((gnutls_group_t)groups[i]);
        unsigned code = group_code(name);
        char variant[2560];
        if (code == 0) {
            continue; /* a group without a code point here: the base priorities serve it */
        }
        int used = snprintf(variant, sizeof(variant), "%s:-GROUP-ALL:+GROUP-%s", prio, name);
        int ret = used > 0 && (size_t)used < sizeof(variant)
                      ? gnutls_priority_init(&out[*count].prio, variant, NULL)
                      : GNUTLS_E_SHORT_MEMORY_BUFFER;
        if (ret < 0) {
            free_share_prios(out, *count);
            *count = 0;
            return tlsock__fail(err, TLSOCK_ECONFIG,
                                "gnutls: cannot make the priorities for key share %s: %s", name,
                                gnutls_strerror(ret));
        }
        out[*count].group = code;
        (*count)++;
    }
    return 0;
}

gnutls_priority_t tlsock__gtls_share_priority(const struct gtls_ctx *gc, unsigned group)
{
    for (unsigned i = 0; i < gc->share_prio_count; i++) {
        if (gc->share_prio[i].group == group) {
            return gc->share_prio[i].prio;
        }
    }
    return NULL;
}

static const struct cipher_policy *find_policy(const char *name)
{
    for (size_t i = 0; i < sizeof(cipher_policies) / sizeof(cipher_policies[0]); i++) {
        if (strcmp(name, cipher_policies[i].name) == 0) {
            return &cipher_policies[i];
        }
    }
    return NULL;
}

int tlsock__gtls_build_priority(struct gtls_ctx *gc, const char *ciphers, int min_version,
                                int max_version, struct tlsock__err *err)
{
    static const char *const versions[] = {"VERS-TLS1.0", "VERS-TLS1.1", "VERS-TLS1.2",
                                           "VERS-TLS1.3"};
    const struct cipher_policy *policy = find_policy(ciphers);
    char prio[2048] = "";
    char vers[128] = "-VERS-ALL";
    const char *errpos = NULL;
    gnutls_priority_t cache = NULL;
    int lowest = 0;
    int highest = 0;
    int rc = 0;

    if (policy != NULL) {
        snprintf(prio, sizeof(prio), "%s", policy->priority);
    } else {
        rc = translate_raw(ciphers, prio, sizeof(prio), err);
        if (rc != 0) {
            return rc;
        }
    }
    /* Newest first: GnuTLS offers versions in the order given. */
    for (int v = max_version; v >= min_version; v--) {
        bool old = v < 0x0303;
        if (v < 0x0301 || v > 0x0304 || (old && policy != NULL && !policy->old_versions)) {
            continue;
        }
        size_t used = strlen(vers);
        snprintf(vers + used, sizeof(vers) - used, ":+%s", versions[v - 0x0301]);
        highest = highest == 0 ? v : highest;
        lowest = v;
    }
    if (highest == 0) {
        /*
         * A range the policy leaves empty (1.0-1.1 without "legacy") is accepted like OpenSSL
         * does and handshakes fail (gnutls.c); GnuTLS itself refuses priorities without versions.
         */
        snprintf(vers, sizeof(vers), "-VERS-ALL:+VERS-TLS1.2");
    }
    /*
     * RFC 5746: a client requires the server's renegotiation_info (in TLS 1.2 and below, as
     * OpenSSL's client does). A server's %SAFE_RENEGOTIATION would also refuse TLS 1.3 hellos
     * without the signal, which RFC 8446 does not ask for: servers keep GnuTLS's default and
     * refuse a TLS 1.2 client without the signal in gnutls.c's ClientHello hook, by the rule
     * the OpenSSL side shares (hello.h). No compression (GnuTLS has none in NORMAL).
     * Renegotiation itself is refused when GnuTLS reports it (see gnutls.c).
     */
    /*
     * Servers choose by their own order (%SERVER_PRECEDENCE), as OpenSSL's server does with
     * SSL_OP_CIPHER_SERVER_PREFERENCE; GnuTLS would follow the client's.
     */
    const char *role_part =
        gc->role == TLSOCK_CLIENT ? ":%SAFE_RENEGOTIATION" : ":%SERVER_PRECEDENCE";
    size_t used = strlen(prio);
    if ((size_t)snprintf(prio + used, sizeof(prio) - used, ":%s%s", vers, role_part) >=
        sizeof(prio) - used) {
        return tlsock__fail(err, TLSOCK_ECONFIG, "cipher policy \"%.200s\" is too long", ciphers);
    }
    int ret = gnutls_priority_init(&cache, prio, &errpos);
    if (ret < 0) {
        long at = errpos != NULL ? (long)(errpos - prio) : -1;
        return tlsock__fail(err, TLSOCK_ECONFIG,
                            "gnutls: cipher policy \"%.200s\" is not a valid GnuTLS priority "
                            "string: %s at position %ld (\"%.40s\")",
                            ciphers, gnutls_strerror(ret), at, errpos != NULL ? errpos : "");
    }
    struct gtls_share_prio shares[GTLS_MAX_SHARE_PRIOS];
    unsigned share_count = 0;
    if (gc->role == TLSOCK_SERVER) {
        rc = build_share_prios(prio, cache, shares, &share_count, err);
        if (rc != 0) {
            gnutls_priority_deinit(cache);
            return rc;
        }
    }
    if (gc->prio != NULL) {
        gnutls_priority_deinit(gc->prio);
    }
    free_share_prios(gc->share_prio, gc->share_prio_count);
    gc->prio = cache;
    gc->prio_min = lowest;
    gc->prio_max = highest;
    memcpy(gc->share_prio, shares, share_count * sizeof(shares[0]));
    gc->share_prio_count = share_count;
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Credentials and trust anchors
 * ------------------------------------------------------------------------------------------- */

static int apply_trust(gnutls_certificate_credentials_t cred, const struct gtls_trust *t,
                       struct tlsock__err *err)
{
    gnutls_datum_t mem = {.data = (unsigned char *)t->data, .size = (unsigned)t->len};
    int ret = 0;

    switch (t->kind) {
    case GTLS_TRUST_DIR:
        ret = gnutls_certificate_set_x509_trust_dir(cred, t->data, GNUTLS_X509_FMT_PEM);
        if (ret < 0) {
            return tlsock__fail(err, TLSOCK_EX509_LOOKUP, "cannot use CA directory %.200s: %s",
                                t->data, gnutls_strerror(ret));
        }
        break;
    case GTLS_TRUST_MEM:
        ret = gnutls_certificate_set_x509_trust_mem(cred, &mem, GNUTLS_X509_FMT_PEM);
        if (ret <= 0) {
            return tlsock__fail(err, TLSOCK_EX509_LOOKUP,
                                "CA PEM holds no readable certificate%s%s", ret < 0 ? ": " : "",
                                ret < 0 ? gnutls_strerror(ret) : "");
        }
        break;
    default:
        ret = gnutls_certificate_set_x509_system_trust(cred);
        if (ret < 0) {
            return tlsock__fail(err, TLSOCK_EX509_LOOKUP, "cannot load the system trust store: %s",
                                gnutls_strerror(ret));
        }
        break;
    }
    return 0;
}

static int new_cred(gnutls_certificate_credentials_t *out, struct tlsock__err *err)
{
    int ret = gnutls_certificate_allocate_credentials(out);

    if (ret < 0) {
        return tlsock__fail(err, TLSOCK_ENOMEM, "gnutls: cannot allocate credentials: %s",
                            gnutls_strerror(ret));
    }
    /*
     * Verification flags are left at GnuTLS's defaults (no MD5 or SHA-1 signatures, no X.509v1
     * intermediate CAs); the priority's %PROFILE_* sets the minimum key sizes.
     *
     * DHE suites need a group for clients that name none (RFC 7919 section 4): ffdhe2048, as
     * the OpenSSL side uses; a client listing RFC 7919 groups gets one of those (2048 bits and
     * up). Without it GnuTLS leaves DHE out (GNUTLS_E_NO_CIPHER_SUITES).
     */
    gnutls_certificate_set_ocsp_status_request_function(*out, tlsock__gtls_staple, NULL);
    ret = gnutls_certificate_set_known_dh_params(*out, GNUTLS_SEC_PARAM_MEDIUM);
    if (ret < 0) {
        gnutls_certificate_free_credentials(*out);
        *out = NULL;
        return tlsock__fail(err, TLSOCK_ECONFIG, "gnutls: cannot set the DHE group: %s",
                            gnutls_strerror(ret));
    }
    return 0;
}

/* Frees the credentials of the chains after the first. */
static void free_more(struct gtls_ctx *gc)
{
    for (size_t i = 0; i < gc->more_count; i++) {
        gnutls_certificate_free_credentials(gc->more[i]);
    }
    free(gc->more);
    gc->more = NULL;
    gc->more_count = 0;
}

gnutls_certificate_credentials_t tlsock__gtls_chain_cred(const struct gtls_ctx *gc, size_t index)
{
    return index == 0 || index > gc->more_count ? gc->cred : gc->more[index - 1];
}

void tlsock__gtls_ctx_free(void *nctx)
{
    struct gtls_ctx *gc = nctx;

    if (gc == NULL) {
        return;
    }
    if (gc->cred != NULL) {
        gnutls_certificate_free_credentials(gc->cred);
    }
    free_more(gc);
    if (gc->prio != NULL) {
        gnutls_priority_deinit(gc->prio);
    }
    free_share_prios(gc->share_prio, gc->share_prio_count);
    while (gc->trust != NULL) {
        struct gtls_trust *next = gc->trust->next;
        free(gc->trust->data);
        free(gc->trust);
        gc->trust = next;
    }
    for (unsigned i = 0; i < gc->crl_count; i++) {
        gnutls_x509_crl_deinit(gc->crls[i]);
    }
    free(gc->crls);
    free(gc->ciphers);
    free(gc->alpn);
    free(gc->alpn_wire);
    free(gc);
}

int tlsock__gtls_ctx_new(int role, void **out, struct tlsock__err *err)
{
    struct gtls_ctx *gc = calloc(1, sizeof(*gc));
    int rc = 0;

    if (gc == NULL) {
        return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory allocating a GnuTLS context");
    }
    gc->role = role;
    /* Every default is explicit, never GnuTLS's or the system's: TLS 1.2-1.3, "secure". */
    gc->min_version = 0x0303;
    gc->max_version = 0x0304;
    gc->ciphers = strdup("secure");
    if (gc->ciphers == NULL) {
        rc = tlsock__fail(err, TLSOCK_ENOMEM, "out of memory allocating a GnuTLS context");
        goto fail;
    }
    rc = new_cred(&gc->cred, err);
    if (rc != 0) {
        goto fail;
    }
    rc = tlsock__gtls_build_priority(gc, gc->ciphers, gc->min_version, gc->max_version, err);
    if (rc != 0) {
        goto fail;
    }
    *out = gc;
    return 0;
fail:
    tlsock__gtls_ctx_free(gc);
    return rc;
}

int tlsock__gtls_ctx_set_protocols(void *nctx, int min_version, int max_version,
                                   struct tlsock__err *err)
{
    struct gtls_ctx *gc = nctx;
    int rc = tlsock__gtls_build_priority(gc, gc->ciphers, min_version, max_version, err);

    if (rc == 0) {
        gc->min_version = min_version;
        gc->max_version = max_version;
    }
    return rc;
}

int tlsock__gtls_ctx_set_ciphers(void *nctx, const char *policy, struct tlsock__err *err)
{
    struct gtls_ctx *gc = nctx;
    char *copy = strdup(policy);
    int rc = 0;

    if (copy == NULL) {
        return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory copying the cipher policy");
    }
    rc = tlsock__gtls_build_priority(gc, copy, gc->min_version, gc->max_version, err);
    if (rc != 0) {
        free(copy);
        return rc;
    }
    free(gc->ciphers);
    gc->ciphers = copy;
    return 0;
}

/* Applies a trust source now and remembers it for a credentials object made later. */
static int add_trust(struct gtls_ctx *gc, int kind, const char *data, size_t len,
                     struct tlsock__err *err)
{
    struct gtls_trust *t = calloc(1, sizeof(*t));
    int rc = 0;

    if (t == NULL) {
        return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory recording a CA");
    }
    t->kind = kind;
    t->len = len;
    if (data != NULL) {
        /* NUL-terminated: paths are passed on as strings. */
        t->data = malloc(len + 1);
        if (t->data == NULL) {
            rc = tlsock__fail(err, TLSOCK_ENOMEM, "out of memory recording a CA");
            goto fail;
        }
        memcpy(t->data, data, len);
        t->data[len] = '\0';
    }
    rc = apply_trust(gc->cred, t, err);
    for (size_t i = 0; rc == 0 && i < gc->more_count; i++) {
        rc = apply_trust(gc->more[i], t, err);
    }
    if (rc != 0) {
        goto fail;
    }
    struct gtls_trust **tail = &gc->trust;
    while (*tail != NULL) {
        tail = &(*tail)->next;
    }
    *tail = t;
    return 0;
fail:
    free(t->data);
    free(t);
    return rc;
}

int tlsock__gtls_ctx_add_ca_dir(void *nctx, const char *path, struct tlsock__err *err)
{
    return add_trust(nctx, GTLS_TRUST_DIR, path, strlen(path), err);
}

int tlsock__gtls_ctx_add_ca_mem(void *nctx, const char *pem, size_t len, struct tlsock__err *err)
{
    return add_trust(nctx, GTLS_TRUST_MEM, pem, len, err);
}

int tlsock__gtls_ctx_add_ca_system(void *nctx, struct tlsock__err *err)
{
    return add_trust(nctx, GTLS_TRUST_SYSTEM, NULL, 0, err);
}

/* Refuses a weak key of our own at once, as OpenSSL's security level does ("ee key too small"). */
static int check_own_key(const struct gtls_ctx *gc, gnutls_x509_crt_t leaf, struct tlsock__err *err)
{
    const struct cipher_policy *policy = find_policy(gc->ciphers);
    int min_bits = policy != NULL ? policy->min_key_bits : 2048;
    unsigned bits = 0;
    int algo = gnutls_x509_crt_get_pk_algorithm(leaf, &bits);
    bool rsa_like = algo == GNUTLS_PK_RSA || algo == GNUTLS_PK_DSA || algo == GNUTLS_PK_RSA_PSS;

    if (rsa_like && (int)bits < min_bits) {
        return tlsock__fail(err, TLSOCK_ECONFIG,
                            "certificate refused: ee key too small (%u bits, the cipher policy "
                            "needs %d)",
                            bits, min_bits);
    }
    return 0;
}

/*
 * Refuses our own chain when a certificate in it (other than a self-signed one) is signed with
 * SHA-1 or MD5 and the cipher policy has a security level, as OpenSSL does ("ca md too weak");
 * peers at such a level would refuse it anyway.
 */
static int check_own_signatures(const struct gtls_ctx *gc, const struct gtls_cert *cert,
                                struct tlsock__err *err)
{
    const struct cipher_policy *policy = find_policy(gc->ciphers);

    if (policy != NULL && policy->min_key_bits == 0) {
        return 0; /* legacy: security level 0 */
    }
    for (unsigned i = 0; i < cert->count; i++) {
        int sign = gnutls_x509_crt_get_signature_algorithm(cert->chain[i]);
        gnutls_digest_algorithm_t hash = sign > 0 ? gnutls_sign_get_hash_algorithm(sign) : 0;
        bool self_signed = gnutls_x509_crt_check_issuer(cert->chain[i], cert->chain[i]) != 0;
        if (!self_signed && (hash == GNUTLS_DIG_SHA1 || hash == GNUTLS_DIG_MD5)) {
            return tlsock__fail(err, TLSOCK_ECONFIG,
                                "certificate refused: ca md too weak (certificate %u of the chain "
                                "is signed with %s; the cipher policy needs SHA-256 or better)",
                                i + 1, gnutls_digest_get_name(hash));
        }
    }
    return 0;
}

/* A key whose parameters do not verify (e.g. a public point that is not the private key's) is
 * refused when it is set, rather than by a handshake that cannot sign. */
static int check_key_valid(gnutls_x509_privkey_t key, struct tlsock__err *err)
{
    int ret = gnutls_x509_privkey_verify_params(key);

    if (ret < 0) {
        return tlsock__fail(err, ret == GNUTLS_E_MEMORY_ERROR ? TLSOCK_ENOMEM : TLSOCK_ECONFIG,
                            "the private key is not valid: %s", gnutls_strerror(ret));
    }
    return 0;
}

/*
 * Gives @p cert's chain and key to @p cred. gnutls_certificate_set_key() is used rather than
 * gnutls_certificate_set_x509_key(): when it refuses a pair (a key that does not match, a curve
 * it does not support) what was given stays the caller's to free, while the latter leaks the
 * copy of the key it made (GnuTLS 3.7; the fuzzer found it). On success the credentials own the
 * certificates and the key.
 */
static int give_pair(gnutls_certificate_credentials_t cred, const struct gtls_cert *cert,
                     struct tlsock__err *err)
{
    gnutls_pcert_st *pcerts = gnutls_calloc(cert->count, sizeof(*pcerts));
    gnutls_privkey_t key = NULL;
    unsigned made = 0;
    int ret = pcerts == NULL ? GNUTLS_E_MEMORY_ERROR : 0;

    while (ret >= 0 && made < cert->count) {
        ret = gnutls_pcert_import_x509(&pcerts[made], cert->chain[made], 0);
        made += ret >= 0;
    }
    if (ret >= 0) {
        ret = gnutls_privkey_init(&key);
    }
    if (ret >= 0) {
        ret = gnutls_privkey_import_x509(key, cert->key, GNUTLS_PRIVKEY_IMPORT_COPY);
    }
    if (ret >= 0) {
        /* Names NULL: GnuTLS takes them from the leaf, for its own SNI matching. */
        ret = gnutls_certificate_set_key(cred, NULL, 0, pcerts, (int)cert->count, key);
    }
    if (ret >= 0) {
        gnutls_free(pcerts); /* the array only: its contents belong to the credentials now */
        return 0;
    }
    for (unsigned i = 0; i < made; i++) {
        gnutls_pcert_deinit(&pcerts[i]);
    }
    gnutls_free(pcerts);
    if (key != NULL) {
        gnutls_privkey_deinit(key);
    }
    if (ret == GNUTLS_E_CERTIFICATE_KEY_MISMATCH) {
        return tlsock__fail(err, TLSOCK_ECONFIG, "%s", TLSOCK__MSG_KEY_MISMATCH);
    }
    return tlsock__fail(err, ret == GNUTLS_E_MEMORY_ERROR ? TLSOCK_ENOMEM : TLSOCK_ECONFIG,
                        "certificate and key refused: %s", gnutls_strerror(ret));
}

/* The leaf's key kind and DNS subjectAltNames, for choosing among a server's chains. */
static int get_facts(gnutls_x509_crt_t leaf, struct tlsock__cert_facts *facts,
                     struct tlsock__err *err)
{
    int algo = gnutls_x509_crt_get_pk_algorithm(leaf, NULL);
    char name[256];
    int rc = 0;

    facts->key_kind = algo == GNUTLS_PK_EC              ? TLSOCK__SIGN_EC
                      : algo == GNUTLS_PK_RSA           ? TLSOCK__SIGN_RSA
                      : algo == GNUTLS_PK_EDDSA_ED25519 ? TLSOCK__SIGN_ED25519
                                                        : TLSOCK__SIGN_OTHER;
    if (algo == GNUTLS_PK_EC) {
        gnutls_ecc_curve_t curve = GNUTLS_ECC_CURVE_INVALID;
        gnutls_datum_t x = {NULL, 0};
        gnutls_datum_t y = {NULL, 0};
        if (gnutls_x509_crt_get_pk_ecc_raw(leaf, &curve, &x, &y) == 0) {
            gnutls_free(x.data);
            gnutls_free(y.data);
        }
        facts->ec_group = curve == GNUTLS_ECC_CURVE_SECP256R1   ? TLSOCK__GROUP_SECP256R1
                          : curve == GNUTLS_ECC_CURVE_SECP384R1 ? TLSOCK__GROUP_SECP384R1
                          : curve == GNUTLS_ECC_CURVE_SECP521R1 ? TLSOCK__GROUP_SECP521R1
                                                                : 0;
    }
    for (unsigned seq = 0; rc == 0; seq++) {
        size_t size = sizeof(name);
        int ret = gnutls_x509_crt_get_subject_alt_name(leaf, seq, name, &size, NULL);
        if (ret == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) {
            break;
        }
        /* A DNS name longer than 255 bytes (RFC 1035 section 2.3.4) is no name a client sends. */
        if (ret == GNUTLS_SAN_DNSNAME) {
            rc = tlsock__cert_facts_add_name(facts, name, size, err);
        } else if (ret == GNUTLS_E_MEMORY_ERROR) {
            rc = tlsock__fail(err, TLSOCK_ENOMEM, "out of memory reading the certificate's names");
        }
    }
    return rc;
}

/* New credentials with the context's trust, for a certificate. */
static int cred_with_trust(const struct gtls_ctx *gc, gnutls_certificate_credentials_t *out,
                           struct tlsock__err *err)
{
    int rc = new_cred(out, err);

    for (const struct gtls_trust *t = gc->trust; t != NULL && rc == 0; t = t->next) {
        rc = apply_trust(*out, t, err);
    }
    if (rc != 0 && *out != NULL) {
        gnutls_certificate_free_credentials(*out);
        *out = NULL;
    }
    return rc;
}

int tlsock__gtls_ctx_set_cert(void *nctx, const struct tlsock__cert_src *src,
                              struct tlsock__err *err)
{
    struct gtls_ctx *gc = nctx;
    gnutls_certificate_credentials_t cred = NULL;
    struct gtls_cert cert;
    gnutls_certificate_credentials_t *room =
        realloc(gc->more, (gc->more_count + 1) * sizeof(*room));
    int rc = 0;

    if (room == NULL) {
        return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory adding a certificate");
    }
    gc->more = room;
    rc = tlsock__gtls_load_cert(src, &cert, err);
    if (rc != 0) {
        return rc;
    }
    rc = check_own_key(gc, cert.chain[0], err);
    if (rc == 0) {
        rc = check_own_signatures(gc, &cert, err);
    }
    if (rc == 0) {
        rc = check_key_valid(cert.key, err);
    }
    if (rc == 0 && src->facts != NULL) {
        rc = get_facts(cert.chain[0], src->facts, err);
    }
    if (rc != 0) {
        goto free_cert;
    }
    /*
     * GnuTLS keeps every key pair added to a credentials object and picks among them by rules of
     * its own; tlsock gives each chain credentials of its own with the same trust.
     */
    rc = cred_with_trust(gc, &cred, err);
    if (rc != 0) {
        goto free_cert;
    }
    rc = give_pair(cred, &cert, err);
    if (rc != 0) {
        goto free_cred;
    }
    if (src->add && gc->has_cert) {
        gc->more[gc->more_count++] = cred;
    } else {
        free_more(gc);
        gnutls_certificate_free_credentials(gc->cred);
        gc->cred = cred;
    }
    cred = NULL;
    gc->has_cert = true;
free_cred:
    if (cred != NULL) {
        gnutls_certificate_free_credentials(cred);
    }
free_cert:
    tlsock__gtls_cert_free(&cert);
    return rc;
}

/*
 * CRLs are kept here rather than given to the credentials: GnuTLS would check them for every
 * certificate it has one for and skip the others, while tlsock checks the leaf or the whole
 * chain as the context asks and refuses a certificate whose issuer has no CRL (gnutls.c).
 */
int tlsock__gtls_ctx_add_crl(void *nctx, const void *data, size_t len, struct tlsock__err *err)
{
    struct gtls_ctx *gc = nctx;
    gnutls_datum_t in = {.data = (unsigned char *)data, .size = (unsigned)len};
    gnutls_x509_crl_t *list = NULL;
    unsigned count = 0;
    int ret;

    if (tlsock__is_pem(data, len)) {
        ret = gnutls_x509_crl_list_import2(&list, &count, &in, GNUTLS_X509_FMT_PEM, 0);
    } else {
        list = gnutls_malloc(sizeof(*list));
        ret = list == NULL ? GNUTLS_E_MEMORY_ERROR : gnutls_x509_crl_init(&list[0]);
        if (ret >= 0) {
            ret = gnutls_x509_crl_import(list[0], &in, GNUTLS_X509_FMT_DER);
            if (ret < 0) {
                gnutls_x509_crl_deinit(list[0]);
            }
        }
        count = ret >= 0 ? 1 : 0;
    }
    if (ret < 0 || count == 0) {
        gnutls_free(list);
        return tlsock__fail(err, ret == GNUTLS_E_MEMORY_ERROR ? TLSOCK_ENOMEM : TLSOCK_EX509_LOOKUP,
                            "the data holds no CRL (PEM or DER)%s%s", ret < 0 ? ": " : "",
                            ret < 0 ? gnutls_strerror(ret) : "");
    }
    gnutls_x509_crl_t *all = realloc(gc->crls, (gc->crl_count + count) * sizeof(*all));
    if (all == NULL) {
        for (unsigned i = 0; i < count; i++) {
            gnutls_x509_crl_deinit(list[i]);
        }
        gnutls_free(list);
        return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory keeping CRLs");
    }
    memcpy(all + gc->crl_count, list, count * sizeof(*all));
    gc->crls = all;
    gc->crl_count += count;
    gnutls_free(list);
    return 0;
}

int tlsock__gtls_ctx_set_tickets(void *nctx, const struct tlsock__tickets *t,
                                 struct tlsock__err *err)
{
    struct gtls_ctx *gc = nctx;

    (void)err;
    /* GnuTLS servers send no tickets until a session enables them, and never take early data
     * unless a session is initialised with GNUTLS_ENABLE_EARLY_DATA, which tlsock never sets. */
    gc->tickets = t->off ? NULL : t;
    return 0;
}

int tlsock__gtls_ctx_set_alpn(void *nctx, const unsigned char *wire, size_t len,
                              struct tlsock__err *err)
{
    struct gtls_ctx *gc = nctx;
    unsigned char *copy = NULL;
    gnutls_datum_t *list = NULL;
    unsigned count = 0;

    if (len > 0) {
        copy = malloc(len);
        list = calloc(len, sizeof(*list)); /* at most one name per byte */
        if (copy == NULL || list == NULL) {
            free(copy);
            free(list);
            return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory copying ALPN");
        }
        memcpy(copy, wire, len);
        /* The core validated the wire format: length-prefixed, non-empty names. */
        for (size_t off = 0; off < len; off += 1 + (size_t)copy[off]) {
            list[count].data = copy + off + 1;
            list[count].size = copy[off];
            count++;
        }
    }
    free(gc->alpn);
    free(gc->alpn_wire);
    gc->alpn = list;
    gc->alpn_wire = copy;
    gc->alpn_count = count;
    return 0;
}
