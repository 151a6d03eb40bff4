/*
 * A client's look at a stapled OCSP response with OpenSSL's OCSP functions, in the order and by
 * the rules of trust.h (enum tlsock__ocsp_finding); gnutls_ocsp.c does the same with GnuTLS's.
 * tlsock decides who may sign itself, rather than with OCSP_basic_verify()'s own checks (a chain
 * for the responder built from the trust store, OCSP_TRUSTOTHER...) that GnuTLS does not share.
 */
#include <time.h>

#include <openssl/ocsp.h>
#include <openssl/x509v3.h>

#include "openssl_util.h"
#include "trust.h"

/* The single response about @p leaf from @p issuer, whatever digest its CertID uses; or NULL. */
static OCSP_SINGLERESP *find_single(OCSP_BASICRESP *bs, X509 *leaf, X509 *issuer, bool *nomem)
{
    int count = OCSP_resp_count(bs);

    for (int i = 0; i < count; i++) {
        OCSP_SINGLERESP *single = OCSP_resp_get0(bs, i);
        const OCSP_CERTID *theirs = single != NULL ? OCSP_SINGLERESP_get0_id(single) : NULL;
        ASN1_OBJECT *md_oid = NULL;
        if (theirs == NULL ||
            OCSP_id_get0_info(NULL, &md_oid, NULL, NULL, (OCSP_CERTID *)theirs) != 1) {
            continue;
        }
        const EVP_MD *md = EVP_get_digestbyobj(md_oid);
        if (md == NULL) {
            continue;
        }
        OCSP_CERTID *mine = OCSP_cert_to_id(md, leaf, issuer);
        if (mine == NULL) {
            *nomem = true;
            return NULL;
        }
        bool same = OCSP_id_cmp(mine, theirs) == 0;
        OCSP_CERTID_free(mine);
        if (same) {
            return single;
        }
    }
    return NULL;
}

/* Whether @p cert is within its dates now. */
static bool current(X509 *cert)
{
    return X509_cmp_current_time(X509_get0_notBefore(cert)) < 0 &&
           X509_cmp_current_time(X509_get0_notAfter(cert)) > 0;
}

/*
 * RFC 6960 section 4.2.2.2: the response is signed by the issuer itself, or by a responder
 * certificate the issuer signed, with the OCSPSigning extended key usage. The signer is the one
 * the responderID names, among the response's certificates and the issuer.
 */
static bool authorized_signature(OCSP_BASICRESP *bs, X509 *issuer, bool *nomem)
{
    STACK_OF(X509) *extra = sk_X509_new_null();
    X509 *signer = NULL;
    bool ok = false;

    if (extra == NULL || sk_X509_push(extra, issuer) <= 0) {
        *nomem = true;
        goto out;
    }
    if (OCSP_resp_get0_signer(bs, &signer, extra) != 1 || signer == NULL) {
        goto out;
    }
    if (X509_cmp(signer, issuer) == 0) {
        ok = true;
    } else {
        ok = X509_check_issued(issuer, signer) == X509_V_OK &&
             X509_verify(signer, X509_get0_pubkey(issuer)) == 1 &&
             (X509_get_extension_flags(signer) & EXFLAG_XKUSAGE) != 0 &&
             (X509_get_extended_key_usage(signer) & XKU_OCSP_SIGN) != 0 && current(signer);
    }
    /* Only the signature now: the signer found above, which the responderID names, is given. */
    sk_X509_zero(extra);
    if (ok && sk_X509_push(extra, signer) <= 0) {
        *nomem = true;
        ok = false;
    }
    ok = ok && OCSP_basic_verify(bs, extra, NULL, OCSP_NOINTERN | OCSP_NOVERIFY) == 1;
out:
    sk_X509_free(extra);
    return ok;
}

/* The dates and the status of @p single. */
static int single_finding(OCSP_SINGLERESP *single)
{
    int reason = 0;
    ASN1_GENERALIZEDTIME *revoked_at = NULL;
    ASN1_GENERALIZEDTIME *this_update = NULL;
    ASN1_GENERALIZEDTIME *next_update = NULL;
    int status = OCSP_single_get0_status(single, &reason, &revoked_at, &this_update, &next_update);
    time_t later = time(NULL) + TLSOCK__OCSP_SKEW;
    time_t earlier = time(NULL) - TLSOCK__OCSP_SKEW;

    if (status < 0 || this_update == NULL) {
        return TLSOCK__OCSP_MALFORMED;
    }
    /* X509_cmp_time: -1 when the time is before (or at) the other, 1 after, 0 on error. */
    int cmp = X509_cmp_time(this_update, &later);
    if (cmp == 0) {
        return TLSOCK__OCSP_MALFORMED;
    }
    if (cmp > 0) {
        return TLSOCK__OCSP_NOT_YET_VALID;
    }
    if (next_update != NULL) {
        cmp = X509_cmp_time(next_update, &earlier);
        if (cmp == 0) {
            return TLSOCK__OCSP_MALFORMED;
        }
        if (cmp < 0) {
            return TLSOCK__OCSP_EXPIRED;
        }
    }
    if (status == V_OCSP_CERTSTATUS_REVOKED) {
        return TLSOCK__OCSP_REVOKED;
    }
    return status == V_OCSP_CERTSTATUS_GOOD ? TLSOCK__OCSP_GOOD : TLSOCK__OCSP_UNKNOWN;
}

int tlsock__ossl_ocsp_finding(const unsigned char *der, long len, X509 *leaf, X509 *issuer)
{
    OCSP_RESPONSE *resp = NULL;
    OCSP_BASICRESP *bs = NULL;
    bool nomem = false;
    int finding = TLSOCK__OCSP_MALFORMED;

    if (der == NULL || len <= 0) {
        return TLSOCK__OCSP_NONE;
    }
    resp = d2i_OCSP_RESPONSE(NULL, &der, len);
    if (resp == NULL) {
        goto out;
    }
    if (OCSP_response_status(resp) != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        finding = TLSOCK__OCSP_NOT_SUCCESSFUL;
        goto out;
    }
    bs = OCSP_response_get1_basic(resp);
    if (bs == NULL) {
        goto out;
    }
    OCSP_SINGLERESP *single = find_single(bs, leaf, issuer, &nomem);
    if (single == NULL) {
        finding = TLSOCK__OCSP_OTHER_CERT;
    } else if (!authorized_signature(bs, issuer, &nomem)) {
        finding = TLSOCK__OCSP_BAD_SIGNER;
    } else {
        finding = single_finding(single);
    }
out:
    OCSP_BASICRESP_free(bs);
    OCSP_RESPONSE_free(resp);
    nomem = tlsock__ossl_out_of_memory() || nomem;
    return nomem ? -1 : finding;
}

bool tlsock__ossl_must_staple(X509 *leaf)
{
    TLS_FEATURE *features = X509_get_ext_d2i(leaf, NID_tlsfeature, NULL, NULL);
    bool yes = false;

    for (int i = 0; features != NULL && i < sk_ASN1_INTEGER_num(features); i++) {
        /* RFC 7633 section 4.2.3: status_request is extension type 5. */
        yes = yes || ASN1_INTEGER_get(sk_ASN1_INTEGER_value(features, i)) == 5;
    }
    sk_ASN1_INTEGER_pop_free(features, ASN1_INTEGER_free);
    return yes;
}
