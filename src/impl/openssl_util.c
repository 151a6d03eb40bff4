/*
 * Small OpenSSL helpers shared by the OpenSSL implementation's files.
 */
#include <stdbool.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "text.h"
#include "openssl_util.h"

/*
 * Empties OpenSSL's error queue; returns the last error and sets *@p oom when any of them was an
 * allocation failure: one deep down often sits under a vaguer last error ("internal error",
 * "ASN1 lib").
 */
static unsigned long drain_errors(bool *oom)
{
    unsigned long last = 0;

    for (unsigned long e = ERR_get_error(); e != 0; e = ERR_get_error()) {
        last = e;
        *oom = *oom || ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE;
    }
    return last;
}

bool tlsock__ossl_out_of_memory(void)
{
    bool oom = false;

    (void)drain_errors(&oom);
    return oom;
}

int tlsock__ossl_fail(struct tlsock__err *err, int code, const char *what)
{
    char reason[256] = "";
    bool oom = false;
    unsigned long e = drain_errors(&oom);

    if (e != 0) {
        ERR_error_string_n(e, reason, sizeof(reason));
    }
    return tlsock__fail(err, oom ? TLSOCK_ENOMEM : code, "%s%s%s", what,
                        reason[0] != '\0' ? ": " : "", reason);
}

int tlsock__ossl_load_extensions(X509 *cert, struct tlsock__err *err)
{
    ERR_clear_error();
    /* Works them out and keeps the result in the certificate (the return value says nothing). */
    (void)X509_get_extension_flags(cert);
    if (tlsock__ossl_out_of_memory()) {
        return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory reading a certificate's extensions");
    }
    return 0;
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
