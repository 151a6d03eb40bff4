/*
 * Small OpenSSL helpers shared by the OpenSSL implementation's files.
 */
#ifndef TLSOCK_OPENSSL_UTIL_H
#define TLSOCK_OPENSSL_UTIL_H

#include <openssl/x509.h>

#include "impl.h"

/*
 * Fails with @p code and "what: OpenSSL's reason", then empties OpenSSL's error queue. When an
 * allocation failed on the way (any error in the queue says so), the code is TLSOCK_ENOMEM.
 */
int tlsock__ossl_fail(struct tlsock__err *err, int code, const char *what);

/*
 * A PEM password callback that refuses: without one OpenSSL would prompt on the terminal for an
 * encrypted key, blocking a library call on user input.
 */
int tlsock__ossl_no_passphrase(char *buf, int size, int rwflag, void *userdata);

/* Writes the SHA-256 fingerprint of @p cert as "AB:CD:..."; 0, or -1 if hashing failed. */
int tlsock__ossl_fingerprint(X509 *cert, char out[TLSOCK_FINGERPRINT_SIZE]);

#endif /* TLSOCK_OPENSSL_UTIL_H */
