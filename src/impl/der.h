/*
 * A minimal reader of X.509 DER for what a handshake must know about the peer's leaf without
 * the cost of parsing it again (the implementation parsed it already but keeps it to itself).
 */
#ifndef TLSOCK_IMPL_DER_H
#define TLSOCK_IMPL_DER_H

#include <stddef.h>

/*
 * Whether the DER certificate @p der (@p len bytes) carries a subjectAltName extension: 1 yes,
 * 0 no (its extensions, or their absence, were read to the end), -1 when it cannot tell (not the
 * shape of a certificate, a long tag): the caller then asks its implementation.
 */
int tlsock__der_has_san(const unsigned char *der, size_t len);

#endif /* TLSOCK_IMPL_DER_H */
