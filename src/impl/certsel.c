/*
 * A server's choice of certificate, shared by the implementations; see certsel.h.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "certsel.h"

bool tlsock__certsel_name_match(const char *pattern, const char *name)
{
    if (strchr(pattern, '*') == NULL) {
        return strcasecmp(pattern, name) == 0;
    }
    /*
     * RFC 6125 section 6.4.3, as browsers apply it: a wildcard is the whole left-most label and
     * stands for exactly one label; "*.com" (no dot after it) and partial labels ("f*.example.com")
     * match nothing.
     */
    const char *base = pattern + 2;
    const char *dot = strchr(name, '.');
    if (pattern[0] != '*' || pattern[1] != '.' || strchr(base, '*') != NULL ||
        strchr(base, '.') == NULL || dot == NULL || dot == name) {
        return false;
    }
    return strcasecmp(dot + 1, base) == 0;
}

int tlsock__cert_facts_add_name(struct tlsock__cert_facts *f, const char *name, size_t len,
                                struct tlsock__err *err)
{
    if (len == 0 || memchr(name, 0, len) != NULL) {
        return 0;
    }
    /* The name, its NUL and the empty name that ends the list. */
    char *names = realloc(f->names, f->names_len + len + 2);
    if (names == NULL) {
        return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory reading the certificate's names");
    }
    for (size_t i = 0; i < len; i++) {
        names[f->names_len + i] = (char)tolower((unsigned char)name[i]);
    }
    f->names = names;
    f->names_len += len + 1;
    names[f->names_len - 1] = '\0';
    names[f->names_len] = '\0';
    return 0;
}

/* Whether the client listed a signature scheme from @p schemes. */
static bool offers(const struct tlsock__hello *h, const unsigned *schemes, size_t n)
{
    for (size_t i = 0; i < h->nsigalgs; i++) {
        for (size_t j = 0; j < n; j++) {
            if (h->sigalgs[i] == schemes[j]) {
                return true;
            }
        }
    }
    return false;
}

/*
 * Whether a TLS 1.2 (or older) client takes an ECDSA key on the curve @p ec_group: RFC 8422
 * section 5.3 (and RFC 4492 before it) wants a curve the client lists in supported_groups, and
 * OpenSSL's server refuses any other. A client without the extension takes any; a list longer
 * than what the hello keeps, or a curve tlsock does not name, is given the benefit of the doubt.
 */
static bool curve_listed(const struct tlsock__hello *h, unsigned ec_group)
{
    if (ec_group == 0 || h->ngroups == 0 ||
        h->ngroups == sizeof(h->groups) / sizeof(h->groups[0])) {
        return true;
    }
    for (size_t i = 0; i < h->ngroups; i++) {
        if (h->groups[i] == ec_group) {
            return true;
        }
    }
    return false;
}

/* The TLS 1.3 signature scheme of an ECDSA key on @p ec_group (RFC 8446 section 4.2.3); 0 for a
 * curve tlsock does not name. */
static unsigned tls13_ecdsa_scheme(unsigned ec_group)
{
    switch (ec_group) {
    case TLSOCK__GROUP_SECP256R1:
        return 0x0403;
    case TLSOCK__GROUP_SECP384R1:
        return 0x0503;
    case TLSOCK__GROUP_SECP521R1:
        return 0x0603;
    default:
        return 0;
    }
}

/*
 * Whether the client can take a certificate with the key of @p f: RFC 8446 section 4.2.3
 * (TLS 1.3 signs with the schemes of signature_algorithms, ECDSA with the one of its curve, RSA
 * only with RSASSA-PSS), RFC 5246 section 7.4.1.4.1 (TLS 1.2 also needs a suite for the key, and
 * for ECDSA its curve; without the extension any scheme of the suite's kind will do).
 */
static bool supports(const struct tlsock__hello *h, int version, const struct tlsock__cert_facts *f)
{
    static const unsigned ecdsa[] = {0x0403, 0x0503, 0x0603, 0x0203};
    static const unsigned rsa[] = {0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0201};
    int kind = f->key_kind;

    if (kind == TLSOCK__SIGN_EC && version == 0x0304) {
        /* A TLS 1.3 ECDSA scheme names its curve: P-256 keys sign with 0x0403 alone, and so on. */
        unsigned scheme = tls13_ecdsa_scheme(f->ec_group);
        return scheme != 0 ? offers(h, &scheme, 1) : offers(h, ecdsa, 3);
    }
    if (kind == TLSOCK__SIGN_EC) {
        return h->suites_ecdsa && (!h->has_sigalgs || offers(h, ecdsa, 4)) &&
               curve_listed(h, f->ec_group);
    }
    if (kind == TLSOCK__SIGN_RSA) {
        return version == 0x0304 ? offers(h, rsa, 3)
                                 : h->suites_rsa && (!h->has_sigalgs || offers(h, rsa, 7));
    }
    if (kind == TLSOCK__SIGN_ED25519) {
        /* RFC 8446 section 4.2.3 and RFC 8422 section 5.1.3 (TLS 1.2: an ECDHE-ECDSA suite, and
         * the scheme, which a client without the extension does not take). */
        static const unsigned ed25519 = 0x0807;
        return offers(h, &ed25519, 1) && (version == 0x0304 || h->suites_ecdsa);
    }
    return true;
}

/* Whether two names lists (facts.names) hold the same names in the same order. */
static bool same_names(const char *a, const char *b)
{
    a = a != NULL ? a : "";
    b = b != NULL ? b : "";
    while (*a != '\0' && strcmp(a, b) == 0) {
        a += strlen(a) + 1;
        b += strlen(b) + 1;
    }
    return *a == '\0' && *b == '\0';
}

enum match_kind { MATCH_EXACT, MATCH_WILDCARD, MATCH_DEFAULT };

/* Whether certificate @p i is among the candidates of @p kind for the client's @p name. */
static bool is_candidate(const struct tlsock__certsel *sel, size_t i, enum match_kind kind,
                         const char *name)
{
    if (kind == MATCH_DEFAULT) {
        /* The default and the chains for the same names (its ECDSA or RSA twin). */
        return i == sel->default_index ||
               same_names(sel->certs[i].names, sel->certs[sel->default_index].names);
    }
    const char *names = sel->certs[i].names != NULL ? sel->certs[i].names : "";
    for (const char *n = names; *n != '\0'; n += strlen(n) + 1) {
        if ((strchr(n, '*') == NULL) == (kind == MATCH_EXACT) &&
            tlsock__certsel_name_match(n, name)) {
            return true;
        }
    }
    return false;
}

/* The candidate of @p kind the client supports best into @p out; false when there is none. */
static bool pick_among(const struct tlsock__certsel *sel, const struct tlsock__hello *h,
                       int version, enum match_kind kind, size_t *out)
{
    bool any = false;

    if (kind == MATCH_DEFAULT && supports(h, version, &sel->certs[sel->default_index])) {
        *out = sel->default_index;
        return true;
    }
    for (size_t i = 0; i < sel->count; i++) {
        if (!is_candidate(sel, i, kind, h->servername)) {
            continue;
        }
        if (supports(h, version, &sel->certs[i])) {
            *out = i;
            return true;
        }
        if (!any) {
            /* The first candidate, if the client supports none: the handshake says why. */
            *out = kind == MATCH_DEFAULT ? sel->default_index : i;
            any = true;
        }
    }
    return any;
}

void tlsock__certsel_pick(const struct tlsock__certsel *sel, const struct tlsock__hello *h,
                          int version, struct tlsock__certsel_choice *out)
{
    memset(out, 0, sizeof(*out));
    out->index = sel->default_index;
    if (sel->callback != NULL) {
        int chosen = sel->callback(h->has_servername ? h->servername : NULL, sel->callback_user);
        if (chosen >= 0 && (size_t)chosen < sel->count) {
            out->index = (size_t)chosen;
            return;
        }
        if (chosen == TLSOCK_SNI_REFUSE) {
            /* RFC 6066 section 3: a name the server does not recognize. */
            out->refusal = "the SNI callback refused the client's server name";
            out->alert = TLSOCK__ALERT_UNRECOGNIZED_NAME;
            return;
        }
        if (chosen != TLSOCK_SNI_AUTO) {
            out->refusal = "the SNI callback chose no certificate of the context";
            out->alert = TLSOCK__ALERT_INTERNAL_ERROR;
            return;
        }
    }
    if (sel->count == 0) {
        return;
    }
    if (!(h->has_servername && (pick_among(sel, h, version, MATCH_EXACT, &out->index) ||
                                pick_among(sel, h, version, MATCH_WILDCARD, &out->index)))) {
        (void)pick_among(sel, h, version, MATCH_DEFAULT, &out->index);
    }
    /*
     * An ECDSA key on a curve the TLS 1.2 client does not list is refused the same way on both
     * implementations: OpenSSL's server would fail for want of a cipher suite, GnuTLS's would
     * present the key anyway (RFC 8422 section 5.3 forbids it).
     */
    const struct tlsock__cert_facts *f = &sel->certs[out->index];
    if (version != 0 && version < 0x0304 && f->key_kind == TLSOCK__SIGN_EC &&
        !curve_listed(h, f->ec_group)) {
        out->refusal = "the client's supported_groups do not list the curve of the certificate's "
                       "ECDSA key, which TLS 1.2 requires (RFC 8422 section 5.3)";
        out->alert = TLSOCK__ALERT_HANDSHAKE_FAILURE;
    }
}
