/*
 * Session tickets on an OpenSSL server (ticket_keys.h): OpenSSL's ticket format, with the keys
 * chosen by the shared key set through the ticket key callback.
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "openssl_util.h"

/* Where the 96-byte period key is cut (ticket_keys.h): the name, the AES key, the HMAC key. */
enum { NAME_AT = 0, NAME_LEN = 16, AES_AT = 32, HMAC_AT = 64, PART_LEN = 32 };

static bool hmac_sha256(const unsigned char *key, size_t key_len, const unsigned char *data,
                        size_t data_len, unsigned char out[32])
{
    unsigned len = 0;

    return HMAC(EVP_sha256(), key, (int)key_len, data, data_len, out, &len) != NULL && len == 32;
}

static int use_key(const unsigned char *k, unsigned char *iv, EVP_CIPHER_CTX *cctx,
                   EVP_MAC_CTX *hctx, int enc)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)(k + HMAC_AT), PART_LEN),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };

    if (EVP_MAC_CTX_set_params(hctx, params) != 1 ||
        EVP_CipherInit_ex(cctx, EVP_aes_256_cbc(), NULL, k + AES_AT, iv, enc) != 1) {
        return -1;
    }
    return 0;
}

/*
 * Encrypting: the current period's key. Decrypting: the ticket's key name against the current
 * and the previous period's; 0 for any other name: a full handshake. 2 asks OpenSSL to issue a
 * new ticket (under the current key): for a ticket made under the previous key, and on TLS 1.3
 * always, because there OpenSSL sends no ticket after a resumption the callback answered with 1,
 * and a client that uses each TLS 1.3 ticket once (RFC 8446 C.4; GnuTLS's) would have none left
 * for its next connection. TLS 1.2 clients keep their ticket when no new one comes (RFC 5077 3.3).
 */
static int ticket_key_cb(SSL *ssl, unsigned char key_name[16], unsigned char *iv,
                         EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    const struct tlsock__ossl_ctx_data *d = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    const struct tlsock__tickets *t = d->tickets;
    unsigned char k[TLSOCK__TICKET_KEY_SIZE];
    int64_t now = tlsock__ticket_period_now(t);
    int rc = 0;

    if (enc) {
        if (tlsock__ticket_key(t, now, hmac_sha256, k) &&
            RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) == 1 &&
            use_key(k, iv, cctx, hctx, 1) == 0) {
            memcpy(key_name, k + NAME_AT, NAME_LEN);
            rc = 1;
        } else {
            rc = -1;
        }
        goto wipe;
    }
    for (int64_t back = 0; back < 2; back++) {
        if (!tlsock__ticket_key(t, now - back, hmac_sha256, k)) {
            rc = -1;
            break;
        }
        if (CRYPTO_memcmp(key_name, k + NAME_AT, NAME_LEN) == 0) {
            bool renew = back > 0 || SSL_version(ssl) >= TLS1_3_VERSION;
            rc = use_key(k, iv, cctx, hctx, 0) == 0 ? (renew ? 2 : 1) : -1;
            break;
        }
    }
wipe:
    OPENSSL_cleanse(k, sizeof(k));
    return rc;
}

int tlsock__ossl_set_tickets(SSL_CTX *ctx, const struct tlsock__tickets *t, struct tlsock__err *err)
{
    /* RFC 8446 4.2.10: no max_early_data in our tickets, so no client sends early data. */
    if (SSL_CTX_set_max_early_data(ctx, 0) != 1) {
        return tlsock__ossl_fail(err, TLSOCK_ECONFIG, "cannot turn early data off");
    }
    /* The lifetime of sessions, tickets or not: the session-ID cache's entries have it too. */
    SSL_CTX_set_timeout(ctx, (long)t->lifetime);
    if (t->off) {
        /*
         * SSL_OP_NO_TICKET alone still sends TLS 1.3 tickets (stateful ones); no ticket at all
         * needs their number set to 0 too.
         */
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(ctx, 0);
        return 0;
    }
    SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
    if (SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_cb) != 1) {
        return tlsock__ossl_fail(err, TLSOCK_ECONFIG, "cannot set the ticket key callback");
    }
    return 0;
}
