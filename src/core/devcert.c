/*
 * Development certificates: a throw-away CA and a server certificate it signs.
 */
#include <stdlib.h>
#include <string.h>

#include "core.h"

/* Generated certificates start an hour in the past so that small clock skews do not matter. */
enum { DEVCERT_BACKDATE_S = 3600, DEVCERT_CA_DAYS = 3650, DEVCERT_LEAF_DAYS = 30 };

/*
 * The generator: OpenSSL's when it is compiled in, else GnuTLS's, whatever the default
 * implementation. Both make the same certificates, which either implementation loads and
 * verifies; one fixed choice keeps a process's certificates from depending on TLSOCK_IMPL.
 */
static const struct tlsock__impl *certgen_impl(void)
{
    static const int ids[] = {TLSOCK_IMPL_OPENSSL, TLSOCK_IMPL_GNUTLS};

    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        const struct tlsock__impl *impl = tlsock__impl_get(ids[i]);
        if (impl != NULL && impl->cert_generate != NULL) {
            return impl;
        }
    }
    return NULL;
}

int tlsock__cert_generate(const struct tlsock__cert_spec *spec, struct tlsock__pem_pair *out,
                          struct tlsock__err *err)
{
    const struct tlsock__impl *impl = certgen_impl();

    if (impl == NULL || impl->cert_generate == NULL) {
        return tlsock__fail(err, TLSOCK_ECONFIG, "no TLS implementation can generate certificates");
    }
    return impl->cert_generate(spec, out, err);
}

void tlsock__pem_pair_free(struct tlsock__pem_pair *pair)
{
    free(pair->cert);
    free(pair->key);
    pair->cert = NULL;
    pair->key = NULL;
}

int tlsock_devcert_new(const char *hosts, char **ca_pem, char **cert_pem, char **key_pem)
{
    struct tlsock__pem_pair ca = {0};
    struct tlsock__pem_pair leaf = {0};
    int rc;

    if (hosts == NULL || hosts[0] == '\0' || ca_pem == NULL || cert_pem == NULL ||
        key_pem == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "devcert: hosts and all outputs are required");
    }
    const struct tlsock__cert_spec ca_spec = {
        .common_name = "tlsock development CA",
        .is_ca = true,
        .not_before_s = -DEVCERT_BACKDATE_S,
        .not_after_s = DEVCERT_CA_DAYS * 86400L,
    };
    rc = tlsock__cert_generate(&ca_spec, &ca, NULL);
    if (rc != 0) {
        goto out;
    }
    const struct tlsock__cert_spec leaf_spec = {
        .common_name = "tlsock development server",
        .hosts = hosts,
        .not_before_s = -DEVCERT_BACKDATE_S,
        .not_after_s = DEVCERT_LEAF_DAYS * 86400L,
        .eku = TLSOCK__EKU_SERVER | TLSOCK__EKU_CLIENT,
        .issuer_cert_pem = ca.cert,
        .issuer_key_pem = ca.key,
    };
    rc = tlsock__cert_generate(&leaf_spec, &leaf, NULL);
    if (rc != 0) {
        goto out;
    }
    *ca_pem = ca.cert;
    ca.cert = NULL;
    *cert_pem = leaf.cert;
    *key_pem = leaf.key;
    leaf.cert = NULL;
    leaf.key = NULL;
out:
    tlsock__pem_pair_free(&ca);
    tlsock__pem_pair_free(&leaf);
    return rc;
}

int tlsock_cert_fingerprint(const char *pem, size_t len, char out[TLSOCK_FINGERPRINT_SIZE])
{
    const struct tlsock__impl *impl = certgen_impl();

    if (pem == NULL || out == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL, "fingerprint: pem and out are required");
    }
    if (impl == NULL || impl->cert_fingerprint == NULL) {
        return tlsock__fail(NULL, TLSOCK_ECONFIG, "no TLS implementation can read certificates");
    }
    return impl->cert_fingerprint(pem, len, out, NULL);
}

int tlsock_key_encrypt(const char *key_pem, size_t len, const char *pass, char **out_pem)
{
    const struct tlsock__impl *impl = certgen_impl();

    if (key_pem == NULL || pass == NULL || out_pem == NULL) {
        return tlsock__fail(NULL, TLSOCK_EINVAL,
                            "key encryption: key, passphrase and out are "
                            "required");
    }
    if (pass[0] == '\0' || strlen(pass) > TLSOCK_PASSPHRASE_MAX) {
        return tlsock__fail(NULL, TLSOCK_EINVAL,
                            "key encryption: the passphrase must have 1 to %d bytes",
                            TLSOCK_PASSPHRASE_MAX);
    }
    if (impl == NULL || impl->key_encrypt == NULL) {
        return tlsock__fail(NULL, TLSOCK_ECONFIG, "no TLS implementation can encrypt keys");
    }
    return impl->key_encrypt(key_pem, len, pass, out_pem, NULL);
}

void tlsock_free(void *ptr)
{
    free(ptr);
}
