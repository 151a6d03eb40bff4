/*
 * A client's look at a stapled OCSP response with GnuTLS's OCSP functions, in the order and by
 * the rules of trust.h (enum tlsock__ocsp_finding), as openssl_ocsp.c does with OpenSSL's. GnuTLS's
 * own check of the staple inside gnutls_certificate_verify_peers() is set aside by gnutls.c: its
 * rules (a missing nextUpdate is old after some days, no skew) and its status bits differ.
 */
#include <time.h>

#include <gnutls/ocsp.h>

#include "gnutls_int.h"
#include "trust.h"

/* Whether the response has a status about @p leaf; -1 without memory. */
static int find_single(gnutls_ocsp_resp_t resp, gnutls_x509_crt_t leaf, unsigned *index)
{
    /* Bounded by the response: GnuTLS reports the index past the last one. */
    for (unsigned i = 0;; i++) {
        unsigned status = 0;
        /* Something must be read: with every output NULL, GnuTLS reports success for any index. */
        int ret = gnutls_ocsp_resp_get_single(resp, i, NULL, NULL, NULL, NULL, &status, NULL, NULL,
                                              NULL, NULL);
        if (ret == GNUTLS_E_MEMORY_ERROR) {
            return -1;
        }
        if (ret < 0) {
            return 0;
        }
        /* The serial number and the issuer's name hash, with the CertID's own digest. */
        ret = gnutls_ocsp_resp_check_crt(resp, i, leaf);
        if (ret == GNUTLS_E_MEMORY_ERROR) {
            return -1;
        }
        if (ret == 0) {
            *index = i;
            return 1;
        }
    }
}

/* The dates and the status of the single response @p index. */
static int single_finding(gnutls_ocsp_resp_t resp, unsigned index)
{
    unsigned status = 0;
    time_t this_update = 0;
    time_t next_update = 0;
    time_t now = time(NULL);
    int ret = gnutls_ocsp_resp_get_single(resp, index, NULL, NULL, NULL, NULL, &status,
                                          &this_update, &next_update, NULL, NULL);

    if (ret == GNUTLS_E_MEMORY_ERROR) {
        return -1;
    }
    if (ret < 0 || this_update == (time_t)-1) {
        return TLSOCK__OCSP_MALFORMED;
    }
    if (this_update > now + TLSOCK__OCSP_SKEW) {
        return TLSOCK__OCSP_NOT_YET_VALID;
    }
    if (next_update != (time_t)-1 && next_update < now - TLSOCK__OCSP_SKEW) {
        return TLSOCK__OCSP_EXPIRED;
    }
    if (status == GNUTLS_OCSP_CERT_REVOKED) {
        return TLSOCK__OCSP_REVOKED;
    }
    return status == GNUTLS_OCSP_CERT_GOOD ? TLSOCK__OCSP_GOOD : TLSOCK__OCSP_UNKNOWN;
}

int tlsock__gtls_ocsp_finding(gnutls_session_t session, gnutls_x509_crt_t leaf,
                              gnutls_x509_crt_t issuer)
{
    gnutls_datum_t der = {NULL, 0};
    gnutls_ocsp_resp_t resp = NULL;
    unsigned index = 0;
    unsigned verify = 0;
    int finding = TLSOCK__OCSP_MALFORMED;

    if (gnutls_ocsp_status_request_get2(session, 0, &der) < 0 || der.size == 0) {
        return TLSOCK__OCSP_NONE;
    }
    int ret = gnutls_ocsp_resp_init(&resp);
    if (ret >= 0) {
        ret = gnutls_ocsp_resp_import(resp, &der);
    }
    if (ret == GNUTLS_E_MEMORY_ERROR) {
        finding = -1;
        goto out;
    }
    if (ret < 0) {
        goto out;
    }
    if (gnutls_ocsp_resp_get_status(resp) != GNUTLS_OCSP_RESP_SUCCESSFUL) {
        finding = TLSOCK__OCSP_NOT_SUCCESSFUL;
        goto out;
    }
    int found = find_single(resp, leaf, &index);
    if (found <= 0) {
        finding = found < 0 ? -1 : TLSOCK__OCSP_OTHER_CERT;
        goto out;
    }
    /*
     * RFC 6960 section 4.2.2.2: signed by the issuer, or by a responder certificate in the
     * response that the issuer signed, within its dates, with OCSPSigning.
     */
    ret = gnutls_ocsp_resp_verify_direct(resp, issuer, &verify, 0);
    if (ret == GNUTLS_E_MEMORY_ERROR) {
        finding = -1;
    } else if (ret < 0 || verify != 0) {
        finding = TLSOCK__OCSP_BAD_SIGNER;
    } else {
        finding = single_finding(resp, index);
    }
out:
    if (resp != NULL) {
        gnutls_ocsp_resp_deinit(resp);
    }
    return finding;
}

int tlsock__gtls_must_staple(gnutls_x509_crt_t leaf)
{
    gnutls_x509_tlsfeatures_t features = NULL;
    unsigned feature = 0;
    int yes = 0;
    int ret = gnutls_x509_tlsfeatures_init(&features);

    if (ret < 0) {
        return -1;
    }
    ret = gnutls_x509_crt_get_tlsfeatures(leaf, features, 0, NULL);
    if (ret == GNUTLS_E_MEMORY_ERROR) {
        yes = -1;
    }
    for (unsigned i = 0; ret >= 0 && gnutls_x509_tlsfeatures_get(features, i, &feature) >= 0; i++) {
        /* RFC 7633 section 4.2.3: status_request is extension type 5. */
        yes = yes || feature == 5;
    }
    gnutls_x509_tlsfeatures_deinit(features);
    return yes;
}
