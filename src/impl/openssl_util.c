/*
 * Small OpenSSL helpers shared by the OpenSSL implementation's files.
 */
#include <openssl/err.h>
#include <openssl/evp.h>

#include "text.h"
#include "openssl_util.h"

int tlsock__ossl_fail(struct tlsock__err *err, int code, const char *what)
{
    char reason[256] = "";
    unsigned long e = ERR_peek_last_error();

    if (e != 0) {
        ERR_error_string_n(e, reason, sizeof(reason));
    }
    ERR_clear_error();
    return tlsock__fail(err, code, "%s%s%s", what, reason[0] != '\0' ? ": " : "", reason);
}

int tlsock__ossl_no_passphrase(char *buf, int size, int rwflag, void *userdata)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)userdata;
    return -1;
}

int tlsock__ossl_fingerprint(X509 *cert, char out[TLSOCK_FINGERPRINT_SIZE])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;

    out[0] = '\0';
    /* X509_digest hashes the DER exactly as it was read, not a re-encoding. */
    if (X509_digest(cert, EVP_sha256(), md, &len) != 1 || len != 32) {
        return -1;
    }
    tlsock__text_fingerprint(md, out);
    return 0;
}
