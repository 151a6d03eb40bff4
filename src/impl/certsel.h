/*
 * How a server chooses the certificate it presents, the same way whatever its implementation
 * (include/tlsock.h, "Several certificates"): each implementation parses the ClientHello into a
 * struct tlsock__hello (hello.h), asks here, and installs the chain of the index it gets.
 */
#ifndef TLSOCK_IMPL_CERTSEL_H
#define TLSOCK_IMPL_CERTSEL_H

#include "hello.h"
#include "impl.h"

/* The outcome of tlsock__certsel_pick(). */
struct tlsock__certsel_choice {
    size_t index;        /* the certificate to present, when refusal is NULL */
    const char *refusal; /* why the client is refused (static text), or NULL */
    int alert;           /* the alert a refusal sends */
};

/*
 * Chooses for the client of @p h, which negotiates @p version (0x0303 or 0x0304; 0 when unknown):
 * the application's callback first, if any; else the certificates whose DNS names match the
 * client's SNI exactly, else those a wildcard matches, else the default; among them the first
 * whose key the client supports (signature algorithms, and TLS 1.2 cipher suites and ECDSA
 * curves), else the first of them. A TLS 1.2 client refused for the curve of the chosen ECDSA key
 * gets a refusal, so that both implementations refuse it alike.
 */
void tlsock__certsel_pick(const struct tlsock__certsel *sel, const struct tlsock__hello *h,
                          int version, struct tlsock__certsel_choice *out);

/* Whether the DNS name @p pattern (from a certificate) matches the host @p name (certsel.c). */
bool tlsock__certsel_name_match(const char *pattern, const char *name);

/*
 * Appends the DNS name of @p len bytes at @p name to @p f->names, lowercase; a name that is empty
 * or holds a NUL is left out. 0, or TLSOCK_ENOMEM.
 */
int tlsock__cert_facts_add_name(struct tlsock__cert_facts *f, const char *name, size_t len,
                                struct tlsock__err *err) TLSOCK__MUST_CHECK;

#endif /* TLSOCK_IMPL_CERTSEL_H */
