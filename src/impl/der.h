/*
 * A minimal reader of X.509 DER for what a handshake must know about the peer's leaf without
 * the cost of parsing it again (the implementation parsed it already but keeps it to itself),
 * and for the one private key form GnuTLS cannot read.
 */
#ifndef TLSOCK_IMPL_DER_H
#define TLSOCK_IMPL_DER_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Whether the DER certificate @p der (@p len bytes) carries a subjectAltName extension: 1 yes,
 * 0 no (its extensions, or their absence, were read to the end), -1 when it cannot tell (not the
 * shape of a certificate, a long tag): the caller then asks its implementation.
 */
int tlsock__der_has_san(const unsigned char *der, size_t len);

/*
 * Whether the DER private key @p der (@p len bytes), a PKCS#8 PrivateKeyInfo or a SEC1
 * ECPrivateKey (RFC 5915), is an EC key that leaves out its optional public key; if so,
 * *@p scalar (inside @p der) and *@p scalar_len are its private scalar.
 */
bool tlsock__der_ec_key_without_point(const unsigned char *der, size_t len,
                                      const unsigned char **scalar, size_t *scalar_len);

#endif /* TLSOCK_IMPL_DER_H */
