/*
 * Which TLS implementations were compiled in. The only file with #if TLSOCK_HAVE_*.
 */
#include "internal.h"

const struct tlsock__impl *tlsock__default_impl(void)
{
#if TLSOCK_HAVE_OPENSSL
    return &tlsock__openssl_impl;
#else
    return NULL;
#endif
}

const char *tlsock_impl_version(void)
{
    const struct tlsock__impl *impl = tlsock__default_impl();

    return impl != NULL ? impl->version() : "none";
}
