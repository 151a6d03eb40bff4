/*
 * The trust checks both implementations share; see trust.h.
 */
#include <string.h>

#include "text.h"
#include "trust.h"

bool tlsock__trust_needs_chain(const struct tlsock__trust *t)
{
    return t != NULL && (t->pin_count > 0 || t->max_depth >= 0 || t->callback != NULL);
}

/* Whether a certificate of the verified chain has a pinned key. */
static bool pinned(const struct tlsock__trust *t, const struct tlsock__trust_input *in)
{
    for (size_t i = 0; i < in->info.verified_chain_len; i++) {
        for (size_t j = 0; j < t->pin_count; j++) {
            if (memcmp(in->spki[i], t->pins[j], 32) == 0) {
                return true;
            }
        }
    }
    return false;
}

int tlsock__trust_check(const struct tlsock__trust *t, struct tlsock__trust_input *in, int rc,
                        struct tlsock__err *err)
{
    if (t == NULL) {
        return rc;
    }
    if (rc == 0 && t->pin_count > 0 && !pinned(t, in)) {
        rc = tlsock__text_fail_verify(err, "no pinned key matches the peer's chain",
                                      TLSOCK__VERIFY_CODE_NONE, 0, in->subject);
    }
    /* The chain runs leaf ... anchor: what lies between is the intermediates. */
    size_t len = in->info.verified_chain_len;
    size_t intermediates = len > 2 ? len - 2 : 0;
    if (rc == 0 && t->max_depth >= 0 && intermediates > (size_t)t->max_depth) {
        rc = tlsock__text_fail_chain_too_long(err, intermediates, t->max_depth, in->subject);
    }
    if (t->callback == NULL) {
        return rc;
    }
    char reason[TLSOCK_VERIFY_REASON_SIZE] = "";
    in->info.result = rc;
    in->info.message = rc == 0 ? "ok" : tlsock__err_msg(err);
    if (rc != 0) {
        in->info.verified_chain = NULL;
        in->info.verified_chain_len = 0;
    }
    int refused = t->callback(&in->info, t->callback_user, reason, sizeof(reason));
    if (rc == 0 && refused != 0) {
        reason[sizeof(reason) - 1] = '\0';
        rc = tlsock__text_fail_rejected(err, reason, in->subject);
    }
    return rc;
}

bool tlsock__ocsp_wanted(const struct tlsock__trust *t)
{
    return t != NULL && t->ocsp_mode != TLSOCK_OCSP_OFF;
}

int tlsock__ocsp_check(const struct tlsock__trust *t, int finding, bool must_staple,
                       const char *subject, struct tlsock__err *err)
{
    if (!tlsock__ocsp_wanted(t) || finding == TLSOCK__OCSP_GOOD) {
        return 0;
    }
    if (finding == TLSOCK__OCSP_NONE && t->ocsp_mode != TLSOCK_OCSP_REQUIRE && !must_staple) {
        /* RFC 6066: a server may ignore the request; only a must-staple leaf insists. */
        return 0;
    }
    return tlsock__text_fail_verify(err, tlsock__text_ocsp_reason(finding, must_staple),
                                    TLSOCK__VERIFY_CODE_NONE, 0, subject);
}
