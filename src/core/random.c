/* tlsock_random(): the default implementation's generator, behind the public API. */
#include "core.h"

int tlsock_random(void *buf, size_t len)
{
    const struct tlsock__impl *impl = NULL;
    int rc;

    if (len == 0) {
        return 0;
    }
    if (buf == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "random: buf is NULL");
    }
    rc = tlsock__default_impl(&impl);
    if (rc != 0) {
        return rc;
    }
    return impl->random(buf, len, NULL);
}
