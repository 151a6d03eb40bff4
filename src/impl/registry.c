/*
 * Which TLS implementations were compiled in, and which one new contexts use.
 * The only file with #if TLSOCK_HAVE_*.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "impl.h"

static const struct tlsock__impl *const compiled_in[] = {
#if TLSOCK_HAVE_OPENSSL
    &tlsock__openssl_impl,
#endif
#if TLSOCK_HAVE_GNUTLS
    &tlsock__gnutls_impl,
#endif
    NULL,
};

/*
 * 0 until decided; then an enum tlsock_impl value, or still 0 when TLSOCK_IMPL names no
 * implementation compiled in (until tlsock_set_default_impl()).
 */
static atomic_int default_id;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;
/* That TLSOCK_IMPL value, for the message; written once under default_once. */
static char bad_env[64];

static const struct tlsock__impl *find(int id)
{
    for (size_t i = 0; compiled_in[i] != NULL; i++) {
        if (compiled_in[i]->id == id) {
            return compiled_in[i];
        }
    }
    return NULL;
}

/*
 * The environment's choice (TLSOCK_IMPL), else the first compiled in, OpenSSL first. A value
 * that names none of them leaves no default: falling back would hide a typo or a build without
 * the implementation asked for.
 */
static void choose_default(void)
{
    const char *env = getenv("TLSOCK_IMPL");
    int id = compiled_in[0] != NULL ? compiled_in[0]->id : 0;

    if (env != NULL && env[0] != '\0') {
        id = 0;
        for (size_t i = 0; compiled_in[i] != NULL; i++) {
            if (strcmp(env, compiled_in[i]->name) == 0) {
                id = compiled_in[i]->id;
            }
        }
        if (id == 0) {
            snprintf(bad_env, sizeof(bad_env), "%s", env);
        }
    }
    int expected = 0;
    atomic_compare_exchange_strong(&default_id, &expected, id);
}

int tlsock_default_impl(void)
{
    pthread_once(&default_once, choose_default);
    return atomic_load(&default_id);
}

const struct tlsock__impl *tlsock__impl_get(int impl)
{
    return find(impl == TLSOCK_IMPL_DEFAULT ? tlsock_default_impl() : impl);
}

int tlsock__default_impl(const struct tlsock__impl **out)
{
    char names[64] = "";
    size_t used = 0;

    *out = tlsock__impl_get(TLSOCK_IMPL_DEFAULT);
    if (*out != NULL) {
        return 0;
    }
    if (compiled_in[0] == NULL) {
        return tlsock__fail(NULL, TLSOCK_ECONFIG, "tlsock was built without a TLS implementation");
    }
    for (size_t i = 0; compiled_in[i] != NULL && used < sizeof(names); i++) {
        used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s", i > 0 ? " or " : "",
                                 compiled_in[i]->name);
    }
    return tlsock__fail(NULL, TLSOCK_ECONFIG,
                        "TLSOCK_IMPL=%s names no TLS implementation compiled into this tlsock: "
                        "set it to %s, or unset it",
                        bad_env, names);
}

int tlsock_set_default_impl(int impl)
{
    if (impl != TLSOCK_IMPL_OPENSSL && impl != TLSOCK_IMPL_GNUTLS) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "unknown implementation %d", impl);
    }
    if (find(impl) == NULL) {
        return tlsock__fail(NULL, TLSOCK_ECONFIG, "%s was not compiled into this tlsock",
                            tlsock_impl_name(impl));
    }
    pthread_once(&default_once, choose_default);
    atomic_store(&default_id, impl);
    return 0;
}

bool tlsock_impl_available(int impl)
{
    return tlsock__impl_get(impl) != NULL;
}

const char *tlsock_impl_name(int impl)
{
    switch (impl == TLSOCK_IMPL_DEFAULT ? tlsock_default_impl() : impl) {
    case TLSOCK_IMPL_OPENSSL:
        return "openssl";
    case TLSOCK_IMPL_GNUTLS:
        return "gnutls";
    default:
        return NULL;
    }
}

const char *tlsock_impl_version(int impl)
{
    const struct tlsock__impl *found = tlsock__impl_get(impl);

    return found != NULL ? found->version() : NULL;
}

unsigned tlsock_impl_caps(int impl)
{
    const struct tlsock__impl *found = tlsock__impl_get(impl);

    return found != NULL ? found->caps : 0;
}
