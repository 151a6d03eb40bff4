/*
 * The GnuTLS implementation of the vtable in impl.h: sessions, the transport and session
 * information. Contexts are in gnutls_ctx.c.
 *
 * Sessions always move bytes through push/pull functions of ours, never through GnuTLS's own
 * socket I/O: that sends with MSG_NOSIGNAL, restarts on EINTR and keeps the real errno or the
 * callback's own code, so errors are reported exactly as with OpenSSL. Nothing here waits: a
 * would-block is EAGAIN for GnuTLS and a WANT code for the caller.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "../xport.h"
#include "gnutls_int.h"

struct gtls_conn {
    gnutls_session_t session;
    int role;
    struct tlsock__xport x; /* the socket or callbacks pull/push move bytes with */
    bool blocked;           /* the transport said "not now" during the current call */
    bool offered_versions;  /* the ClientHello had supported_versions */
    bool version_match;     /* and one of them is enabled here */
    unsigned char tail[7];  /* the last bytes received: a whole record if it was an alert */
    size_t tail_len;
    int verify_mode;
    int min_version; /* the versions our priorities enable */
    int max_version;
    bool verifying;         /* the peer is verified during the handshake */
    bool verify_failed;     /* and verification failed: verify_status says why */
    unsigned verify_status; /* gnutls_certificate_status_t bits, 0 when verified */
    bool verify_ip;         /* verify_name is an IP literal: the peer must have it as IP SAN */
    unsigned char ip[16];   /* that address */
    size_t ip_len;          /* 4 or 16 */
    char verify_name[256];  /* client: DNS name to verify, "" for none */
    char servername[256];   /* client: SNI sent */
    gnutls_typed_vdata_st vdata[2];
    unsigned vdata_count;
};

/* ---------------------------------------------------------------------------------------------
 * The transport: the socket fd (fast path) or transport callbacks, with preread and coalescing
 * ------------------------------------------------------------------------------------------- */

/*
 * Tells GnuTLS how the transport went: bytes moved, 0 at end of stream, or -1 with the session's
 * errno. A retry is EAGAIN for GnuTLS (the session stays usable); the transport's own code is
 * kept in x so that the caller gets it, including its direction.
 */
static ssize_t gnutls_outcome(struct gtls_conn *c, ssize_t n)
{
    if (n >= 0) {
        return n;
    }
    if (n == TLSOCK__XPORT_RETRY) {
        c->blocked = true;
    }
    gnutls_transport_set_errno(c->session, n == TLSOCK__XPORT_RETRY ? EAGAIN : EIO);
    return -1;
}

/* Keeps the last bytes received, see plaintext_alert(). */
static void remember_tail(struct gtls_conn *c, const unsigned char *buf, size_t n)
{
    size_t cap = sizeof(c->tail);

    if (n >= cap) {
        memcpy(c->tail, buf + n - cap, cap);
        c->tail_len = cap;
        return;
    }
    size_t keep = c->tail_len + n > cap ? cap - n : c->tail_len;
    memmove(c->tail, c->tail + c->tail_len - keep, keep);
    memcpy(c->tail + keep, buf, n);
    c->tail_len = keep + n;
}

static ssize_t pull_func(gnutls_transport_ptr_t ptr, void *buf, size_t len)
{
    struct gtls_conn *c = ptr;
    ssize_t n = gnutls_outcome(c, tlsock__xport_read(&c->x, buf, len));

    if (n > 0) {
        remember_tail(c, buf, (size_t)n);
    }
    return n;
}

/*
 * A TLS 1.3 peer that gives up in the middle of the server's flight (OpenSSL's client failing
 * to verify the certificate) sends its fatal alert in plaintext, before it has handshake keys;
 * GnuTLS then reports a decryption failure. GnuTLS reads exactly one record at a time, so the
 * last seven bytes received are that whole alert record: returns its description, or -1.
 */
static int plaintext_alert(const struct gtls_conn *c)
{
    const unsigned char *t = c->tail;

    if (c->tail_len == sizeof(c->tail) && t[0] == 21 && t[1] == 3 && t[3] == 0 && t[4] == 2 &&
        t[5] == 2) {
        return t[6];
    }
    return -1;
}

/*
 * GnuTLS hands over everything it has queued (a whole handshake flight, ServerHello to Finished)
 * as one vector, so that the flight leaves in one sendmsg as with its own socket I/O; a plain
 * push function would be called once per record. A short count makes GnuTLS keep the rest and
 * return EAGAIN.
 */
static ssize_t vec_push_func(gnutls_transport_ptr_t ptr, const giovec_t *iov, int iovcnt)
{
    struct gtls_conn *c = ptr;
    ssize_t n;

    /* Only this call's "not now" counts below (a want is consumed when reported anyway). */
    c->x.want = 0;
    n = tlsock__xport_writev(&c->x, iov, iovcnt);
    if (n > 0 && c->x.want != 0) {
        /*
         * The transport took part, then said "not now": the EAGAIN GnuTLS returns for the rest
         * is a real would-block, to be reported with the transport's own WANT code rather than
         * the call repeated at once.
         */
        c->blocked = true;
    }
    return gnutls_outcome(c, n);
}

/* ---------------------------------------------------------------------------------------------
 * Error reporting
 * ------------------------------------------------------------------------------------------- */

/* Imports the peer's leaf (or the last certificate it sent); NULL if there is none. */
static gnutls_x509_crt_t import_peer(struct gtls_conn *c, bool last, unsigned *count)
{
    unsigned n = 0;
    const gnutls_datum_t *der = gnutls_certificate_get_peers(c->session, &n);
    gnutls_x509_crt_t crt = NULL;

    *count = n;
    if (der == NULL || n == 0 || gnutls_x509_crt_init(&crt) < 0) {
        return NULL;
    }
    if (gnutls_x509_crt_import(crt, &der[last ? n - 1 : 0], GNUTLS_X509_FMT_DER) < 0) {
        gnutls_x509_crt_deinit(crt);
        crt = NULL;
    }
    return crt;
}

/* OpenSSL's words for an untrusted chain: whether its top is self-signed, and where. */
static const char *issuer_reason(struct gtls_conn *c)
{
    unsigned n = 0;
    gnutls_x509_crt_t top = import_peer(c, true, &n);
    const char *reason = "unable to get local issuer certificate";

    if (top != NULL && gnutls_x509_crt_check_issuer(top, top) != 0) {
        reason =
            n == 1 ? "self-signed certificate" : "self-signed certificate in certificate chain";
    }
    if (top != NULL) {
        gnutls_x509_crt_deinit(top);
    }
    return reason;
}

/* A weak key (GnuTLS's profile) or a weak signature: OpenSSL tells them apart. */
static const char *weak_reason(struct gtls_conn *c)
{
    unsigned n = 0;
    unsigned bits = 0;
    gnutls_x509_crt_t leaf = import_peer(c, false, &n);
    const char *reason = "CA signature digest algorithm too weak";

    if (leaf != NULL) {
        int algo = gnutls_x509_crt_get_pk_algorithm(leaf, &bits);
        if ((algo == GNUTLS_PK_RSA || algo == GNUTLS_PK_RSA_PSS || algo == GNUTLS_PK_DSA) &&
            bits < 2048) {
            reason = "EE certificate key too weak";
        }
    }
    if (leaf != NULL) {
        gnutls_x509_crt_deinit(leaf);
    }
    return reason;
}

/*
 * The reason for a failed verification in OpenSSL's words (X509_verify_cert_error_string), so
 * that messages do not depend on the implementation, checked in the order OpenSSL's chain
 * verification finds them: issuer, purpose, key strength, name, then validity dates.
 */
static void verify_reason(struct gtls_conn *c, unsigned status, char *out, size_t size)
{
    gnutls_datum_t text = {NULL, 0};

    if (status == 0) {
        snprintf(out, size, "ok");
    } else if (status & GNUTLS_CERT_SIGNER_NOT_FOUND) {
        snprintf(out, size, "%s", issuer_reason(c));
    } else if (status & GNUTLS_CERT_SIGNER_NOT_CA) {
        snprintf(out, size, "invalid CA certificate");
    } else if (status & GNUTLS_CERT_PURPOSE_MISMATCH) {
        snprintf(out, size, "unsuitable certificate purpose");
    } else if (status & GNUTLS_CERT_INSECURE_ALGORITHM) {
        snprintf(out, size, "%s", weak_reason(c));
    } else if (status & GNUTLS_CERT_UNEXPECTED_OWNER) {
        snprintf(out, size, "%s", c->verify_ip ? "IP address mismatch" : "hostname mismatch");
    } else if (status & GNUTLS_CERT_REVOKED) {
        snprintf(out, size, "certificate revoked");
    } else if (status & GNUTLS_CERT_EXPIRED) {
        snprintf(out, size, "certificate has expired");
    } else if (status & GNUTLS_CERT_NOT_ACTIVATED) {
        snprintf(out, size, "certificate is not yet valid");
    } else if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0) >=
               0) {
        snprintf(out, size, "%s", (const char *)text.data);
        gnutls_free(text.data);
    } else {
        snprintf(out, size, "verification status 0x%x", status);
    }
}

/* The alert OpenSSL sends for the same verification failure. */
static gnutls_alert_description_t verify_alert(unsigned status)
{
    if (status & (GNUTLS_CERT_SIGNER_NOT_FOUND | GNUTLS_CERT_SIGNER_NOT_CA)) {
        return GNUTLS_A_UNKNOWN_CA;
    }
    if (status & (GNUTLS_CERT_EXPIRED | GNUTLS_CERT_NOT_ACTIVATED)) {
        return GNUTLS_A_CERTIFICATE_EXPIRED;
    }
    if (status & GNUTLS_CERT_PURPOSE_MISMATCH) {
        return GNUTLS_A_UNSUPPORTED_CERTIFICATE;
    }
    return GNUTLS_A_BAD_CERTIFICATE;
}

static void peer_subject(struct gtls_conn *c, char *out, size_t size)
{
    unsigned n = 0;
    gnutls_x509_crt_t crt = import_peer(c, false, &n);
    gnutls_datum_t dn = {NULL, 0};

    out[0] = '\0';
    /* RFC 4514 order, most specific first, as OpenSSL's XN_FLAG_RFC2253 prints it. */
    if (crt != NULL && gnutls_x509_crt_get_dn3(crt, &dn, 0) >= 0) {
        snprintf(out, size, "%s", (const char *)dn.data);
        gnutls_free(dn.data);
    }
    if (crt != NULL) {
        gnutls_x509_crt_deinit(crt);
    }
}

/* Explains a failed certificate verification: the reason, GnuTLS's status and the subject. */
static int fail_verify(struct gtls_conn *c, struct tlsock__err *err)
{
    unsigned status = c->verify_status;
    char reason[160];
    char subject[256];

    verify_reason(c, status, reason, sizeof(reason));
    peer_subject(c, subject, sizeof(subject));
    /* GnuTLS leaves the alert to us; OpenSSL's choice keeps the peer's view the same. */
    gnutls_alert_send(c->session, GNUTLS_AL_FATAL, verify_alert(status));
    return tlsock__fail(err, TLSOCK_EVERIFY, "certificate verify failed: %s (status 0x%x)%s%s",
                        reason, status, subject[0] != '\0' ? "; peer " : "", subject);
}

/*
 * Turns a GnuTLS failure into a tlsock code, in the order openssl.c uses: would-block, the
 * peer's close_notify, the transport's error, bare EOF (truncation), our verification, the
 * peer's alert, and finally GnuTLS's own reason.
 */
static int map_error(struct gtls_conn *c, int ret, struct tlsock__err *err)
{
    if (ret == GNUTLS_E_AGAIN || ret == GNUTLS_E_INTERRUPTED) {
        /* A transport timeout is a retry for GnuTLS but a timeout for the caller. */
        return tlsock__xport_retry_code(
            &c->x,
            gnutls_record_get_direction(c->session) == 1 ? TLSOCK_EWANT_WRITE : TLSOCK_EWANT_READ,
            err);
    }
    c->x.want = 0;
    if (c->x.err != 0) {
        return tlsock__xport_fail(&c->x, err);
    }
    if (c->verify_failed) {
        return fail_verify(c, err);
    }
    switch (ret) {
    case GNUTLS_E_NO_CERTIFICATE_FOUND:
    case GNUTLS_E_CERTIFICATE_REQUIRED:
        if (c->role == TLSOCK_SERVER) {
            /* A server requiring a client certificate got none: a verification failure. */
            gnutls_alert_send_appropriate(c->session, ret);
            return tlsock__fail(err, TLSOCK_EVERIFY,
                                "certificate verify failed: the client sent no certificate");
        }
        break;
    case GNUTLS_E_FATAL_ALERT_RECEIVED: {
        int alert = (int)gnutls_alert_get(c->session);
        return tlsock__fail(err, TLSOCK_EPROTO, "peer sent alert: %s (%d)",
                            tlsock__alert_name(alert), alert);
    }
    case GNUTLS_E_DECRYPTION_FAILED:
        if (plaintext_alert(c) >= 0) {
            int alert = plaintext_alert(c);
            return tlsock__fail(err, TLSOCK_EPROTO, "peer sent alert: %s (%d)",
                                tlsock__alert_name(alert), alert);
        }
        break;
    case GNUTLS_E_WARNING_ALERT_RECEIVED: {
        /* gtls_read reads on past warnings, up to a bound: a peer that only sends warnings is
         * refused as OpenSSL refuses it (too many warn alerts), never taken for close_notify. */
        int alert = (int)gnutls_alert_get(c->session);
        gnutls_alert_send(c->session, GNUTLS_AL_FATAL, GNUTLS_A_UNEXPECTED_MESSAGE);
        return tlsock__fail(err, TLSOCK_EPROTO, "peer sent too many warning alerts (last: %s (%d))",
                            tlsock__alert_name(alert), alert);
    }
    case GNUTLS_E_REHANDSHAKE:
        /* Only when a peer kept asking: gtls_read answers a request with no_renegotiation. */
        return tlsock__fail(err, TLSOCK_EPROTO, "peer asked for renegotiation, which is refused");
    default:
        break;
    }
    if (c->x.eof) {
        /* The stream ended without close_notify (GnuTLS: premature termination, short packet). */
        return tlsock__fail(err, TLSOCK_ETRUNCATED,
                            "connection closed by peer without close_notify (truncated)");
    }
    /* GnuTLS leaves telling the peer to the application: best effort, never waited for. */
    gnutls_alert_send_appropriate(c->session, ret);
    return tlsock__fail(err, TLSOCK_EPROTO, "TLS error: %s (%s)", gnutls_strerror(ret),
                        gnutls_strerror_name(ret));
}

/* ---------------------------------------------------------------------------------------------
 * Sessions
 * ------------------------------------------------------------------------------------------- */

static void gtls_conn_free(void *tls)
{
    struct gtls_conn *c = tls;

    if (c == NULL) {
        return;
    }
    if (c->session != NULL) {
        gnutls_deinit(c->session);
    }
    tlsock__xport_free(&c->x);
    free(c);
}

/* Notes whether a supported_versions extension (RFC 8446 4.2.1) names a version we enable. */
static int scan_extension(void *ctx, unsigned tls_id, const unsigned char *data, unsigned size)
{
    struct gtls_conn *c = ctx;

    if (tls_id != 43 || size < 1) {
        return 0;
    }
    c->offered_versions = true;
    for (unsigned i = 1; i + 1 < size && i + 1 <= data[0]; i += 2) {
        int v = data[i] << 8 | data[i + 1];
        if (v >= c->min_version && v <= c->max_version) {
            c->version_match = true;
        }
    }
    return 0;
}

/*
 * RFC 8446 4.2.1: a server that supports none of the versions in the client's supported_versions
 * aborts with protocol_version. GnuTLS would ignore the extension when it has TLS 1.3 disabled
 * and fail later for want of cipher suites (handshake_failure); OpenSSL answers protocol_version.
 */
static int client_hello_hook(gnutls_session_t session, unsigned htype, unsigned when,
                             unsigned incoming, const gnutls_datum_t *msg)
{
    struct gtls_conn *c = gnutls_session_get_ptr(session);

    (void)htype;
    (void)when;
    (void)incoming;
    c->offered_versions = false;
    c->version_match = false;
    if (gnutls_ext_raw_parse(c, scan_extension, msg, GNUTLS_EXT_RAW_FLAG_TLS_CLIENT_HELLO) < 0) {
        return 0; /* GnuTLS reports a malformed hello itself */
    }
    if (c->offered_versions && !c->version_match) {
        return GNUTLS_E_UNSUPPORTED_VERSION_PACKET;
    }
    return 0;
}

/*
 * Verifies the peer's certificate during the handshake. A session-level callback rather than
 * gnutls_session_set_verify_cert2, because an optional client certificate may be absent and the
 * status must be kept for the error message and the session information.
 */
static int verify_peer(gnutls_session_t session)
{
    struct gtls_conn *c = gnutls_session_get_ptr(session);
    unsigned npeers = 0;
    unsigned status = 0;

    if (gnutls_certificate_get_peers(session, &npeers) == NULL || npeers == 0) {
        /* Only servers get here without a certificate; GNUTLS_CERT_REQUIRE refuses it. */
        return 0;
    }
    if (gnutls_certificate_verify_peers(session, c->vdata, c->vdata_count, &status) < 0) {
        status |= GNUTLS_CERT_INVALID;
    }
    c->verify_status = status;
    c->verify_failed = status != 0;
    return c->verify_failed ? GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR : 0;
}

/*
 * Peer verification: clients check the chain, the name (IP literals as IP SANs) and serverAuth
 * when the certificate has an EKU; servers check clientAuth. GnuTLS does it in the handshake.
 */
static int setup_verification(struct gtls_conn *c, const struct tlsock__conn_params *p,
                              struct tlsock__err *err)
{
    gnutls_session_t s = c->session;

    if (p->role == TLSOCK_SERVER) {
        if (p->verify_mode == TLSOCK_VERIFY_NONE) {
            gnutls_certificate_server_set_request(s, GNUTLS_CERT_IGNORE);
            return 0;
        }
        gnutls_certificate_server_set_request(s, p->verify_mode == TLSOCK_VERIFY_REQUIRED
                                                     ? GNUTLS_CERT_REQUIRE
                                                     : GNUTLS_CERT_REQUEST);
        /* Like OpenSSL's server, send no CA list: clients offer their certificate whatever it is.
         */
        gnutls_certificate_send_x509_rdn_sequence(s, 1);
        c->vdata[0].type = GNUTLS_DT_KEY_PURPOSE_OID;
        c->vdata[0].data = (unsigned char *)GNUTLS_KP_TLS_WWW_CLIENT;
        c->vdata_count = 1;
        c->verifying = true;
        gnutls_session_set_verify_function(s, verify_peer);
        return 0;
    }
    if (p->servername != NULL) {
        int ret = gnutls_server_name_set(s, GNUTLS_NAME_DNS, p->servername, strlen(p->servername));
        if (ret < 0) {
            return tlsock__fail(err, TLSOCK_EINVAL, "bad server name for SNI: %s",
                                gnutls_strerror(ret));
        }
    }
    if (p->verify_mode != TLSOCK_VERIFY_REQUIRED) {
        return 0;
    }
    c->vdata[0].type = GNUTLS_DT_KEY_PURPOSE_OID;
    c->vdata[0].data = (unsigned char *)GNUTLS_KP_TLS_WWW_SERVER;
    c->vdata_count = 1;
    if (p->verify_name != NULL && tlsock__is_ip_literal(p->verify_name)) {
        /* An IP literal matches IP SANs only, never a DNS name or the CN. */
        c->verify_ip = true;
        c->ip_len = inet_pton(AF_INET, p->verify_name, c->ip) == 1 ? 4 : 16;
        if (c->ip_len == 16 && inet_pton(AF_INET6, p->verify_name, c->ip) != 1) {
            return tlsock__fail(err, TLSOCK_EINVAL, "bad name to verify");
        }
        c->vdata[1].type = GNUTLS_DT_IP_ADDRESS;
        c->vdata[1].data = c->ip;
        c->vdata[1].size = (unsigned)c->ip_len;
        c->vdata_count = 2;
    } else if (p->verify_name != NULL) {
        snprintf(c->verify_name, sizeof(c->verify_name), "%s", p->verify_name);
        c->vdata[1].type = GNUTLS_DT_DNS_HOSTNAME;
        c->vdata[1].data = (unsigned char *)c->verify_name;
        c->vdata_count = 2;
    }
    c->verifying = true;
    gnutls_session_set_verify_function(s, verify_peer);
    return 0;
}

static int gtls_conn_new(void *nctx, const struct tlsock__conn_params *p, void **out,
                         struct tlsock__err *err)
{
    struct gtls_ctx *gc = nctx;
    struct gtls_conn *c = calloc(1, sizeof(*c));
    int rc = 0;
    int ret;

    if (c == NULL) {
        return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory allocating a session");
    }
    c->role = p->role;
    c->verify_mode = p->verify_mode;
    c->min_version = gc->prio_min;
    c->max_version = gc->prio_max;
    if (p->servername != NULL) {
        snprintf(c->servername, sizeof(c->servername), "%s", p->servername);
    }
    rc = tlsock__xport_init(&c->x, p, err);
    if (rc != 0) {
        goto fail;
    }
    ret = gnutls_init(&c->session,
                      (p->role == TLSOCK_CLIENT ? GNUTLS_CLIENT : GNUTLS_SERVER) | GNUTLS_NONBLOCK);
    if (ret < 0) {
        rc = tlsock__fail(err, TLSOCK_ENOMEM, "cannot create a GnuTLS session: %s",
                          gnutls_strerror(ret));
        goto fail;
    }
    ret = gnutls_priority_set(c->session, gc->prio);
    if (ret >= 0) {
        ret = gnutls_credentials_set(c->session, GNUTLS_CRD_CERTIFICATE, gc->cred);
    }
    if (ret >= 0 && gc->alpn_count > 0) {
        /*
         * RFC 7301 section 3.2: the server picks its most preferred protocol the client offers;
         * no overlap is a fatal no_application_protocol (GnuTLS's "mandatory").
         */
        unsigned flags =
            p->role == TLSOCK_SERVER ? (GNUTLS_ALPN_SERVER_PRECEDENCE | GNUTLS_ALPN_MANDATORY) : 0;
        ret = gnutls_alpn_set_protocols(c->session, gc->alpn, gc->alpn_count, flags);
    }
    if (ret < 0) {
        rc = tlsock__fail(err, TLSOCK_ECONFIG, "cannot configure the GnuTLS session: %s",
                          gnutls_strerror(ret));
        goto fail;
    }
    /* The core's deadlines bound the handshake; GnuTLS must not read the clock for its own. */
    gnutls_handshake_set_timeout(c->session, 0);
    gnutls_transport_set_ptr(c->session, c);
    gnutls_session_set_ptr(c->session, c);
    gnutls_transport_set_vec_push_function(c->session, vec_push_func);
    gnutls_transport_set_pull_function(c->session, pull_func);
    if (p->role == TLSOCK_SERVER) {
        gnutls_handshake_set_hook_function(c->session, GNUTLS_HANDSHAKE_CLIENT_HELLO,
                                           GNUTLS_HOOK_PRE, client_hello_hook);
    }
    rc = setup_verification(c, p, err);
    if (rc != 0) {
        goto fail;
    }
    *out = c;
    return 0;
fail:
    gtls_conn_free(c);
    return rc;
}

/*
 * GnuTLS also answers EAGAIN after a record that carried no data for the caller (a TLS 1.3
 * NewSessionTicket or KeyUpdate), without reading on. Only the transport's own would-block is a
 * WANT code here, so such a call is repeated; the bound only guards against a GnuTLS surprise.
 */
enum { AGAIN_LIMIT = 64 };

static bool should_repeat(struct gtls_conn *c, long ret, int *tries)
{
    return ret == GNUTLS_E_AGAIN && !c->blocked && c->x.err == 0 && ++*tries < AGAIN_LIMIT;
}

static int gtls_handshake(void *tls, struct tlsock__err *err)
{
    struct gtls_conn *c = tls;
    int tries = 0;
    int ret;

    if (c->max_version == 0) {
        return tlsock__fail(err, TLSOCK_EPROTO,
                            "no protocol version available: TLS 1.0 and 1.1 need the legacy "
                            "cipher policy");
    }
    do {
        c->blocked = false;
        ret = gnutls_handshake(c->session);
    } while (should_repeat(c, ret, &tries));
    if (ret == GNUTLS_E_SESSION_EOF && c->x.err == 0 && !c->x.eof) {
        /* GnuTLS's word for a close_notify in the handshake; worded as openssl.c words it. */
        return tlsock__fail(err, TLSOCK_EPROTO, "peer sent close_notify during the handshake");
    }
    return ret == 0 ? 0 : map_error(c, ret, err);
}

static int gtls_read(void *tls, void *buf, size_t len, size_t *nread, struct tlsock__err *err)
{
    struct gtls_conn *c = tls;
    ssize_t ret;
    int rc = 0;
    int tries = 0;

    /* A warning alert (other than close_notify) carries no data either: read on. */
    for (;;) {
        c->blocked = false;
        ret = gnutls_record_recv(c->session, buf, len);
        if (ret == GNUTLS_E_REHANDSHAKE && tries + 1 < AGAIN_LIMIT) {
            /*
             * Renegotiation is refused as OpenSSL's SSL_OP_NO_RENEGOTIATION does it: a
             * no_renegotiation warning (RFC 5246 7.2.2), and the session goes on. Best effort:
             * a peer that insists fails its own handshake.
             */
            gnutls_alert_send(c->session, GNUTLS_AL_WARNING, GNUTLS_A_NO_RENEGOTIATION);
            tries++;
            continue;
        }
        bool warning = ret == GNUTLS_E_WARNING_ALERT_RECEIVED &&
                       gnutls_alert_get(c->session) != GNUTLS_A_CLOSE_NOTIFY;
        if (!should_repeat(c, ret, &tries) && !(warning && ++tries < AGAIN_LIMIT)) {
            break;
        }
    }
    /* A warning here is close_notify, or the last of too many other warnings in a row. */
    bool closed = ret == 0 || (ret == GNUTLS_E_WARNING_ALERT_RECEIVED &&
                               gnutls_alert_get(c->session) == GNUTLS_A_CLOSE_NOTIFY);
    if (ret > 0) {
        *nread = (size_t)ret;
    } else if (closed) {
        rc = tlsock__fail(err, TLSOCK_ECLOSED, "peer sent close_notify");
    } else {
        rc = map_error(c, (int)ret, err);
    }
    return rc;
}

static int gtls_write(void *tls, const void *buf, size_t len, size_t *nwritten,
                      struct tlsock__err *err)
{
    struct gtls_conn *c = tls;
    /*
     * After EAGAIN GnuTLS must be called again with the same data; the core repeats a write
     * with the same remaining buffer, so that holds. It sends at most one record per call.
     */
    ssize_t ret;
    int tries = 0;

    do {
        c->blocked = false;
        ret = gnutls_record_send(c->session, buf, len);
    } while (should_repeat(c, ret, &tries));
    if (ret > 0) {
        *nwritten = (size_t)ret;
        return 0;
    }
    return map_error(c, ret == 0 ? GNUTLS_E_INTERNAL_ERROR : (int)ret, err);
}

static int gtls_shutdown(void *tls, struct tlsock__err *err)
{
    struct gtls_conn *c = tls;
    int tries = 0;
    int ret;

    do {
        c->blocked = false;
        ret = gnutls_bye(c->session, GNUTLS_SHUT_WR);
    } while (should_repeat(c, ret, &tries));
    /* Our close_notify may sit among collected records: it is out only once they are. */
    return ret == 0 ? tlsock__xport_flush(&c->x, err) : map_error(c, ret, err);
}

static struct tlsock__xport *gtls_xport(void *tls)
{
    struct gtls_conn *c = tls;

    return &c->x;
}

/* ---------------------------------------------------------------------------------------------
 * Session information
 * ------------------------------------------------------------------------------------------- */

static void format_sans(gnutls_x509_crt_t crt, char *out, size_t size)
{
    size_t used = 0;

    out[0] = '\0';
    for (unsigned i = 0;; i++) {
        unsigned char name[256];
        size_t len = sizeof(name) - 1;
        char item[300] = "";
        int type = gnutls_x509_crt_get_subject_alt_name(crt, i, name, &len, NULL);
        if (type == GNUTLS_E_SHORT_MEMORY_BUFFER) {
            continue;
        }
        if (type < 0) {
            break;
        }
        if (type == GNUTLS_SAN_DNSNAME) {
            snprintf(item, sizeof(item), "DNS:%.*s", (int)len, (const char *)name);
        } else if (type == GNUTLS_SAN_IPADDRESS) {
            char addr[INET6_ADDRSTRLEN] = "?";
            inet_ntop(len == 16 ? AF_INET6 : AF_INET, name, addr, sizeof(addr));
            snprintf(item, sizeof(item), "IP:%s", addr);
        } else {
            continue;
        }
        int n = snprintf(out + used, size - used, "%s%s", used > 0 ? "," : "", item);
        if (n < 0 || (size_t)n >= size - used) {
            break;
        }
        used += (size_t)n;
    }
}

static void fingerprint(const gnutls_datum_t *der, char out[TLSOCK_FINGERPRINT_SIZE])
{
    static const char hex[] = "0123456789ABCDEF";
    unsigned char md[32];
    size_t len = sizeof(md);

    out[0] = '\0';
    if (gnutls_fingerprint(GNUTLS_DIG_SHA256, der, md, &len) < 0 ||
        len * 3 != TLSOCK_FINGERPRINT_SIZE) {
        return;
    }
    for (size_t i = 0; i < len; i++) {
        out[3 * i] = hex[md[i] >> 4];
        out[3 * i + 1] = hex[md[i] & 0x0f];
        /* Separators between bytes; the last slot holds the terminating NUL. */
        out[3 * i + 2] = i + 1 < len ? ':' : '\0';
    }
}

/* The IANA name of the negotiated suite ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"). */
static void cipher_name(gnutls_session_t s, char *out, size_t size)
{
    const char *name = gnutls_ciphersuite_get(s);

    snprintf(out, size, "%s", name != NULL ? name : "");
}

static const char *version_name(gnutls_protocol_t v)
{
    switch (v) {
    case GNUTLS_TLS1_0:
        return "TLSv1";
    case GNUTLS_TLS1_1:
        return "TLSv1.1";
    case GNUTLS_TLS1_2:
        return "TLSv1.2";
    case GNUTLS_TLS1_3:
        return "TLSv1.3";
    default:
        return "unknown";
    }
}

static void gtls_get_info(void *tls, struct tlsock__info_buf *out)
{
    struct gtls_conn *c = tls;
    gnutls_session_t s = c->session;
    gnutls_datum_t alpn = {NULL, 0};
    unsigned npeers = 0;
    const gnutls_datum_t *peers = gnutls_certificate_get_peers(s, &npeers);
    unsigned status = 0;

    memset(out, 0, sizeof(*out));
    snprintf(out->version, sizeof(out->version), "%s",
             version_name(gnutls_protocol_get_version(s)));
    cipher_name(s, out->cipher, sizeof(out->cipher));
    if (gnutls_alpn_get_selected_protocol(s, &alpn) == 0) {
        snprintf(out->alpn, sizeof(out->alpn), "%.*s", (int)alpn.size, (const char *)alpn.data);
    }
    if (c->role == TLSOCK_SERVER) {
        size_t len = sizeof(out->servername) - 1;
        unsigned type = 0;
        if (gnutls_server_name_get(s, out->servername, &len, &type, 0) < 0 ||
            type != GNUTLS_NAME_DNS) {
            out->servername[0] = '\0';
        }
    } else {
        snprintf(out->servername, sizeof(out->servername), "%s", c->servername);
    }
    if (peers != NULL && npeers > 0) {
        gnutls_x509_crt_t crt = NULL;
        peer_subject(c, out->peer_subject, sizeof(out->peer_subject));
        if (gnutls_x509_crt_init(&crt) >= 0) {
            if (gnutls_x509_crt_import(crt, &peers[0], GNUTLS_X509_FMT_DER) >= 0) {
                format_sans(crt, out->peer_sans, sizeof(out->peer_sans));
            }
            gnutls_x509_crt_deinit(crt);
        }
        fingerprint(&peers[0], out->peer_fingerprint);
        /*
         * As OpenSSL records a verification result even when it is not enforced, verify here
         * with the same names and purpose when the handshake did not.
         */
        if (c->verifying) {
            status = c->verify_status;
        } else if (gnutls_certificate_verify_peers(s, c->vdata, c->vdata_count, &status) < 0) {
            status = GNUTLS_CERT_INVALID;
        }
    }
    out->verify_result = (int)status;
    if (c->verify_mode == TLSOCK_VERIFY_NONE) {
        snprintf(out->verify_message, sizeof(out->verify_message), "not verified (disabled)");
    } else if (peers == NULL || npeers == 0) {
        snprintf(out->verify_message, sizeof(out->verify_message), "no peer certificate");
    } else {
        verify_reason(c, status, out->verify_message, sizeof(out->verify_message));
    }
    out->resumed = gnutls_session_is_resumed(s) != 0;
}

static size_t gtls_pending(void *tls)
{
    struct gtls_conn *c = tls;

    return gnutls_record_check_pending(c->session);
}

static void *gtls_ctx_native(void *nctx)
{
    return ((struct gtls_ctx *)nctx)->cred;
}

static void *gtls_conn_native(void *tls)
{
    return ((struct gtls_conn *)tls)->session;
}

static char version_text[64];
static pthread_once_t version_once = PTHREAD_ONCE_INIT;

static void gtls_version_init(void)
{
    snprintf(version_text, sizeof(version_text), "GnuTLS %s", gnutls_check_version(NULL));
}

static const char *gtls_version(void)
{
    pthread_once(&version_once, gtls_version_init);
    return version_text;
}

const struct tlsock__impl tlsock__gnutls_impl = {
    .name = "gnutls",
    .id = TLSOCK_IMPL_GNUTLS,
    .caps = TLSOCK_CAP_FD | TLSOCK_CAP_ALPN,
    .version = gtls_version,
    .ctx_native = gtls_ctx_native,
    .conn_native = gtls_conn_native,
    .ctx_new = tlsock__gtls_ctx_new,
    .ctx_free = tlsock__gtls_ctx_free,
    .ctx_set_protocols = tlsock__gtls_ctx_set_protocols,
    .ctx_set_ciphers = tlsock__gtls_ctx_set_ciphers,
    .ctx_add_ca_file = tlsock__gtls_ctx_add_ca_file,
    .ctx_add_ca_dir = tlsock__gtls_ctx_add_ca_dir,
    .ctx_add_ca_mem = tlsock__gtls_ctx_add_ca_mem,
    .ctx_add_ca_system = tlsock__gtls_ctx_add_ca_system,
    .ctx_set_cert = tlsock__gtls_ctx_set_cert,
    .ctx_set_alpn = tlsock__gtls_ctx_set_alpn,
    .conn_new = gtls_conn_new,
    .conn_free = gtls_conn_free,
    .handshake = gtls_handshake,
    .read = gtls_read,
    .write = gtls_write,
    .shutdown = gtls_shutdown,
    .xport = gtls_xport,
    .get_info = gtls_get_info,
    .pending = gtls_pending,
    .cert_generate = NULL,
    .cert_fingerprint = NULL,
};
