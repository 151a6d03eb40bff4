/*
 * What both implementations share when they load keys: the passphrase, asked for once and only
 * when a key turns out to be protected, with the same words on each, and PEM told from DER.
 */
#include <string.h>

#include "impl.h"

int tlsock__pass_get(struct tlsock__pass *pass, const char **out, struct tlsock__err *err)
{
    size_t len = 0;
    int ret = 0;

    if (!pass->asked) {
        pass->asked = true;
        pass->rc = 0;
        if (pass->given != NULL) {
            /* The core checked the length when it was set. */
            len = strlen(pass->given);
            memcpy(pass->buf, pass->given, len);
        } else if (pass->cb != NULL) {
            ret = pass->cb(pass->buf, TLSOCK_PASSPHRASE_MAX, &len, pass->user);
            if (ret != 0 || len > TLSOCK_PASSPHRASE_MAX) {
                len = 0;
                pass->rc = TLSOCK_ECONFIG;
            }
        } else {
            pass->rc = TLSOCK_ECONFIG;
        }
        if (memchr(pass->buf, '\0', len) != NULL) {
            pass->rc = TLSOCK_ECONFIG;
        }
        pass->buf[len] = '\0';
        pass->len = len;
        pass->cb_rc = ret;
    }
    if (pass->rc == 0) {
        *out = pass->buf;
        return 0;
    }
    if (pass->given == NULL && pass->cb == NULL) {
        return tlsock__fail(err, TLSOCK_ECONFIG,
                            "the key is protected and no passphrase was set "
                            "(tlsock_ctx_set_key_passphrase)");
    }
    if (pass->cb_rc != 0) {
        return tlsock__fail(err, TLSOCK_ECONFIG, "the passphrase callback refused (%d)",
                            pass->cb_rc);
    }
    return tlsock__fail(err, TLSOCK_ECONFIG,
                        "the passphrase callback gave a passphrase with a NUL byte or over %d "
                        "bytes",
                        TLSOCK_PASSPHRASE_MAX);
}

int tlsock__pkcs12_password(bool (*has_mac)(void *p12),
                            bool (*opens)(void *p12, const char *password), void *p12,
                            struct tlsock__pass *pass, const char **out, struct tlsock__err *err)
{
    int rc = 0;

    /* Bundles without a password have an empty one, or none at all: only then ask. */
    if (opens(p12, "")) {
        *out = "";
    } else if (opens(p12, NULL)) {
        *out = NULL;
    } else if (!has_mac(p12)) {
        rc = tlsock__fail(err, TLSOCK_ECONFIG, "%s", TLSOCK__MSG_P12_NO_MAC);
    } else {
        rc = tlsock__pass_get(pass, out, err);
        if (rc == 0 && !opens(p12, *out)) {
            rc = tlsock__fail(err, TLSOCK_ECONFIG, "%s", TLSOCK__MSG_WRONG_P12_PASS);
        }
    }
    return rc;
}

bool tlsock__is_pem(const char *data, size_t len)
{
    static const char begin[] = "-----BEGIN ";

    return memmem(data, len, begin, sizeof(begin) - 1) != NULL;
}
