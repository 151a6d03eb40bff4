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

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <time.h>

#include "impl.h"
#include "keylog.h"
#include "text.h"
#include "der.h"
#include "trust.h"
#include "gnutls_int.h"
#include "certsel.h"
#include "hello.h"

/*
 * A session's handshake (gtls_handshake): GnuTLS's own, then on a TLS 1.3 server with tickets on
 * the tickets (send_tickets()), then done. RUNNING -> TICKETS -> DONE, or RUNNING -> DONE.
 */
enum gtls_stage {
    GTLS_RUNNING,
    GTLS_TICKETS,
    GTLS_DONE,
};

struct gtls_conn {
    /* Pointers and sizes first, then ints, then bytes: no padding between them (memory per
     * idle connection). */
    gnutls_session_t session;
    struct tlsock__transport *t; /* the core's: every byte pull/push move goes through it */
    unsigned long moved;         /* bytes pull and push moved so far: progress (should_repeat) */
    const char *refusal;         /* why our ClientHello hook refused the client (hello.h) */
    const struct tlsock__certsel *certsel; /* servers: the core's choice among the chains */
    size_t chain_index;                    /* servers: the chain chosen for this client */
    const struct gtls_ctx *gc;             /* the context (the core holds a reference for us) */
    char *verify_name;                     /* client: DNS name to verify, NULL for none */
    char *servername;                      /* client: SNI sent, NULL for none (and on servers) */
    const struct tlsock__trust *trust;     /* the context's trust checks (the core's) */
    struct tlsock_conn *owner;             /* shown to the verify callback */
    const unsigned char *ocsp_response;    /* server: the core's staple, NULL for none */
    size_t ocsp_response_len;
    const struct tlsock__keylog *keylog; /* the core's, NULL when the context keeps none */
    gnutls_typed_vdata_st vdata[2];
    struct tlsock__err verify_err; /* why a check of ours refused the peer, unset if not */
    struct gtls_sess sess;         /* resumption (gnutls_session.c) */
    enum gtls_stage stage;
    int role;
    int refusal_alert; /* the alert to send for refusal */
    int verify_mode;
    int min_version; /* the versions our priorities enable */
    int max_version;
    unsigned verify_status; /* gnutls_certificate_status_t bits, 0 when verified */
    int verify_rc;          /* verify_err's code: TLSOCK_EVERIFY, or TLSOCK_ENOMEM */
    int verify_alert;       /* the alert for verify_err's refusal */
    bool blocked;           /* the transport said "not now" during the current call */
    bool drop_hello;        /* a refused renegotiation's ClientHello is queued in GnuTLS */
    bool tickets_keyed;     /* servers: the ticket key is chosen (a retried hello keeps it) */
    bool verifying;         /* the peer is verified during the handshake */
    bool verify_failed;     /* and verification failed: verify_status says why */
    bool verify_ip;         /* verify_name is an IP literal: the peer must have it as IP SAN */
    bool no_san;            /* client: the peer's leaf has no subjectAltName */
    bool ticket_pending;    /* client: a NewSessionTicket not reported yet (gnutls_session.c) */
    bool master_logged;     /* GnuTLS handed over the CLIENT_RANDOM line (keylog_master()) */
    bool peer_canceled;     /* the peer ended a TLS 1.3 session with user_canceled (gtls_read) */
    unsigned char tail[7];  /* the last bytes received: a whole record if it was an alert */
    unsigned char tail_len;
    unsigned char ip[16]; /* verify_ip: that address */
    unsigned char ip_len; /* 4 or 16 */
    unsigned char vdata_count;
};
/* Memory per idle connection (docs/async.md, "Memory"): a 272-byte glibc chunk on x86-64. */
_Static_assert(sizeof(struct gtls_conn) <= 33 * sizeof(void *),
               "the session grew: memory per idle connection");

/* ---------------------------------------------------------------------------------------------
 * Pull and push: GnuTLS's reads and writes go to the core's transport
 * ------------------------------------------------------------------------------------------- */

/*
 * Tells GnuTLS how the transport went: bytes moved, 0 at end of stream, or -1 with the session's
 * errno. A retry is EAGAIN for GnuTLS (the session stays usable); the transport's own code is
 * kept in the transport so that the caller gets it, including its direction.
 */
static ssize_t gnutls_outcome(struct gtls_conn *c, ssize_t n)
{
    if (n >= 0) {
        c->moved += (unsigned long)n;
        return n;
    }
    if (n == TLSOCK__TRANSPORT_RETRY) {
        c->blocked = true;
    }
    gnutls_transport_set_errno(c->session, n == TLSOCK__TRANSPORT_RETRY ? EAGAIN : EIO);
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
    ssize_t n = gnutls_outcome(c, tlsock__transport_read(c->t, buf, len));

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
    c->t->want = 0;
    n = tlsock__transport_writev(c->t, iov, iovcnt);
    if (n > 0 && c->t->want != 0) {
        /*
         * The transport took part, then said "not now": the EAGAIN GnuTLS returns for the rest
         * is a real would-block, to be reported with the transport's own WANT code rather than
         * the call repeated at once.
         */
        c->blocked = true;
    } else if (n > 0 && gnutls_handshake_get_last_out(c->session) == GNUTLS_HANDSHAKE_FINISHED) {
        /*
         * A client's last flight (its ChangeCipherSpec, collected, and now its Finished) is
         * complete: it leaves at once, as GnuTLS's own socket I/O sends it, and not when the step
         * ends, after the key derivations GnuTLS makes next (15 to 20 us on the server's wait).
         * Only a client's handshake step is collected; for any other write this is a no-op.
         */
        tlsock__transport_end_flight(c->t);
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

static int format_sans(gnutls_x509_crt_t crt, char *out, size_t size);

/* A name mismatch: the name expected and the leaf's names (text.h). */
static void name_reason(struct gtls_conn *c, char *out, size_t size)
{
    char sans[TLSOCK__MISMATCH_SANS_SIZE] = "";
    char ip[INET6_ADDRSTRLEN] = "";
    unsigned n = 0;
    gnutls_x509_crt_t leaf = c->no_san ? NULL : import_peer(c, false, &n);

    if (leaf != NULL) {
        (void)format_sans(leaf, sans, sizeof(sans));
        gnutls_x509_crt_deinit(leaf);
    }
    if (c->verify_ip) {
        inet_ntop(c->ip_len == 16 ? AF_INET6 : AF_INET, c->ip, ip, sizeof(ip));
    }
    tlsock__text_name_mismatch(out, size, c->verify_ip, c->verify_ip ? ip : c->verify_name,
                               c->no_san ? "" : sans);
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
    } else if (status & GNUTLS_CERT_SIGNER_CONSTRAINTS_FAILURE) {
        /* Name constraints are the one signer constraint a chain of ours can break. */
        snprintf(out, size, "permitted subtree violation");
    } else if (status & GNUTLS_CERT_INSECURE_ALGORITHM) {
        snprintf(out, size, "%s", weak_reason(c));
    } else if (status & GNUTLS_CERT_SIGNATURE_FAILURE) {
        snprintf(out, size, "certificate signature failure");
    } else if (status & GNUTLS_CERT_UNEXPECTED_OWNER) {
        name_reason(c, out, size);
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
    if (status & GNUTLS_CERT_REVOKED) {
        return GNUTLS_A_CERTIFICATE_REVOKED;
    }
    return GNUTLS_A_BAD_CERTIFICATE;
}

/* The subject of @p crt, "" if it has none; returns GnuTLS's code. */
static int subject_text(gnutls_x509_crt_t crt, char *out, size_t size)
{
    gnutls_datum_t dn = {NULL, 0};
    /* RFC 4514 order, most specific first, as OpenSSL's XN_FLAG_RFC2253 prints it. */
    int ret = gnutls_x509_crt_get_dn3(crt, &dn, 0);

    out[0] = '\0';
    if (ret >= 0) {
        snprintf(out, size, "%s", (const char *)dn.data);
        gnutls_free(dn.data);
    }
    return ret;
}

static void peer_subject(struct gtls_conn *c, char *out, size_t size)
{
    unsigned n = 0;
    gnutls_x509_crt_t crt = import_peer(c, false, &n);

    out[0] = '\0';
    if (crt != NULL) {
        (void)subject_text(crt, out, size);
        gnutls_x509_crt_deinit(crt);
    }
}

/* Explains a failed certificate verification: the reason, GnuTLS's status and the subject. */
static int fail_verify(struct gtls_conn *c, struct tlsock__err *err)
{
    unsigned status = c->verify_status;
    char reason[TLSOCK__ERRMSG_SIZE];
    char subject[256];

    if (tlsock__err_set(&c->verify_err) && c->verify_rc != 0) {
        gnutls_alert_send(c->session, GNUTLS_AL_FATAL,
                          c->verify_alert != 0 ? (gnutls_alert_description_t)c->verify_alert
                                               : verify_alert(status));
        return tlsock__fail(err, c->verify_rc, "%s", tlsock__err_msg(&c->verify_err));
    }
    verify_reason(c, status, reason, sizeof(reason));
    peer_subject(c, subject, sizeof(subject));
    /* GnuTLS leaves the alert to us; OpenSSL's choice keeps the peer's view the same. */
    gnutls_alert_send(c->session, GNUTLS_AL_FATAL, verify_alert(status));
    return tlsock__text_fail_verify(err, reason, TLSOCK__VERIFY_CODE_GNUTLS, status, subject);
}

/* The peer's fatal alert; a client refused for its versions learns how to allow older ones. */
static int fail_alert(struct gtls_conn *c, int alert, struct tlsock__err *err)
{
    bool refused = c->role == TLSOCK_CLIENT && alert == GNUTLS_A_PROTOCOL_VERSION;

    return tlsock__text_fail_alert(
        err, alert,
        refused ? tlsock__text_old_server_hint(c->min_version, c->max_version, true) : NULL);
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
        return tlsock__transport_retry_code(
            c->t,
            gnutls_record_get_direction(c->session) == 1 ? TLSOCK_EWANT_WRITE : TLSOCK_EWANT_READ,
            err);
    }
    c->t->want = 0;
    if (c->t->err != 0) {
        return tlsock__transport_fail(c->t, err);
    }
    if (c->role == TLSOCK_SERVER) {
        /*
         * A session that fails is not resumed again: OpenSSL drops it from the cache whenever a
         * fatal alert is sent or received; GnuTLS leaves that to the application.
         */
        gnutls_db_remove_session(c->session);
    }
    if (c->verify_failed) {
        return fail_verify(c, err);
    }
    if (c->refusal != NULL) {
        gnutls_alert_send(c->session, GNUTLS_AL_FATAL,
                          (gnutls_alert_description_t)c->refusal_alert);
        return tlsock__fail(err, TLSOCK_EPROTO, "%s", c->refusal);
    }
    switch (ret) {
    case GNUTLS_E_NO_CERTIFICATE_FOUND:
    case GNUTLS_E_CERTIFICATE_REQUIRED:
        if (c->role == TLSOCK_SERVER) {
            /*
             * A server requiring a client certificate got none: a verification failure. TLS 1.3
             * has certificate_required for it (RFC 8446 section 4.4.2.4); TLS 1.2 answers an
             * empty Certificate with handshake_failure (RFC 5246 section 7.4.6), as OpenSSL
             * does. GnuTLS's own alert for GNUTLS_E_NO_CERTIFICATE_FOUND is decode_error, which
             * tells the client its well-formed message was malformed.
             */
            bool tls13 = gnutls_protocol_get_version(c->session) == GNUTLS_TLS1_3;
            gnutls_alert_send(c->session, GNUTLS_AL_FATAL,
                              tls13 ? GNUTLS_A_CERTIFICATE_REQUIRED : GNUTLS_A_HANDSHAKE_FAILURE);
            return tlsock__text_fail_no_client_cert(err);
        }
        break;
    case GNUTLS_E_KEY_USAGE_VIOLATION: {
        /*
         * The peer's key signed the handshake though its keyUsage forbids it: OpenSSL refuses
         * such a certificate in its verification, for its purpose, with unsupported_certificate.
         */
        char subject[256];
        peer_subject(c, subject, sizeof(subject));
        gnutls_alert_send(c->session, GNUTLS_AL_FATAL, GNUTLS_A_UNSUPPORTED_CERTIFICATE);
        return tlsock__text_fail_verify_at(err, "unsuitable certificate purpose", 0, subject);
    }
    case GNUTLS_E_FATAL_ALERT_RECEIVED:
        return fail_alert(c, (int)gnutls_alert_get(c->session), err);
    case GNUTLS_E_DECRYPTION_FAILED:
        if (plaintext_alert(c) >= 0) {
            return fail_alert(c, plaintext_alert(c), err);
        }
        break;
    case GNUTLS_E_UNSUPPORTED_VERSION_PACKET:
        if (c->role == TLSOCK_CLIENT) {
            /* The server chose a version we do not enable: tell it, as OpenSSL does. */
            gnutls_alert_send(c->session, GNUTLS_AL_FATAL, GNUTLS_A_PROTOCOL_VERSION);
            return tlsock__text_fail_old_server(err, c->min_version, c->max_version);
        }
        break;
    default:
        break;
    }
    if (c->t->eof) {
        /* The stream ended without close_notify (GnuTLS: premature termination, short packet). */
        return tlsock__text_fail_truncated(err);
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
    free(c->verify_name);
    free(c->servername);
    tlsock__err_free(&c->verify_err);
    free(c);
}

static bool has_share_priority(unsigned group, const void *arg)
{
    return tlsock__gtls_share_priority(arg, group) != NULL;
}

/*
 * The credentials of the chain the core's rules choose for this client (certsel.h), before
 * GnuTLS picks a certificate from the session's credentials.
 */
static int choose_chain(struct gtls_conn *c, const struct tlsock__hello *h)
{
    struct tlsock__certsel_choice choice;

    if (c->certsel == NULL || !c->gc->has_cert) {
        return 0;
    }
    tlsock__certsel_pick(c->certsel, h, tlsock__hello_version(h, c->min_version, c->max_version),
                         &choice);
    if (choice.refusal != NULL) {
        c->refusal = choice.refusal;
        c->refusal_alert = choice.alert;
        return GNUTLS_E_UNRECOGNIZED_NAME;
    }
    c->chain_index = choice.index;
    return gnutls_credentials_set(c->session, GNUTLS_CRD_CERTIFICATE,
                                  tlsock__gtls_chain_cred(c->gc, choice.index));
}

/*
 * The ClientHello, before GnuTLS reads it, against the rules both implementations share
 * (hello.h): a refusal is kept for map_error(), which sends its alert.
 *
 * RFC 8446 4.2.1: a server that supports none of the versions in the client's supported_versions
 * aborts with protocol_version. GnuTLS would ignore the extension when it has TLS 1.3 disabled
 * and fail later for want of cipher suites (handshake_failure); OpenSSL answers protocol_version.
 */
static int client_hello_hook(gnutls_session_t session, unsigned htype, unsigned when,
                             unsigned incoming, const gnutls_datum_t *msg)
{
    struct gtls_conn *c = gnutls_session_get_ptr(session);
    struct tlsock__hello h;

    (void)when;
    if (!incoming) {
        return 0; /* the hook sees every message, ours too: only the client's hello matters */
    }
    if (htype == GNUTLS_HANDSHAKE_CLIENT_HELLO_V2) {
        /* GnuTLS takes an SSLv2-format hello for TLS up to 1.2: the same rules apply to it,
         * and one it could parse but tlsock cannot is refused rather than let through. */
        if (!tlsock__hello_parse_v2(&h, msg->data, msg->size)) {
            return GNUTLS_E_UNEXPECTED_PACKET_LENGTH;
        }
    } else if (htype != GNUTLS_HANDSHAKE_CLIENT_HELLO) {
        return 0;
    } else if (!tlsock__hello_parse(&h, msg->data, msg->size)) {
        return 0; /* GnuTLS reports a malformed hello itself */
    }
    if (h.has_versions && tlsock__hello_version(&h, c->min_version, c->max_version) == 0) {
        return GNUTLS_E_UNSUPPORTED_VERSION_PACKET;
    }
    c->refusal = tlsock__hello_refusal(&h, c->min_version, c->max_version);
    c->refusal_alert = GNUTLS_A_HANDSHAKE_FAILURE;
    if (c->refusal != NULL) {
        return GNUTLS_E_SAFE_RENEGOTIATION_FAILED;
    }
    int ret = choose_chain(c, &h);
    if (ret < 0) {
        return ret;
    }
    if (c->gc->tickets != NULL && !c->tickets_keyed) {
        c->tickets_keyed = true;
        ret = tlsock__gtls_tickets_hello(session, c->gc->tickets,
                                         h.has_ticket ? h.ticket_name : NULL);
        if (ret < 0) {
            return ret;
        }
    }
    /* TLS 1.3: the priorities that make GnuTLS use the client's first usable key share. */
    unsigned group = tlsock__hello_version(&h, c->min_version, c->max_version) == 0x0304
                         ? tlsock__hello_share(&h, has_share_priority, c->gc)
                         : 0;
    return group != 0 ? gnutls_priority_set(session, tlsock__gtls_share_priority(c->gc, group)) : 0;
}

/* ---------------------------------------------------------------------------------------------
 * Checks GnuTLS does not make: no subjectAltName, revocation as tlsock defines it, trust.h
 * ------------------------------------------------------------------------------------------- */

/* Longest chain walked: GnuTLS refuses peers sending more than 16 certificates anyway. */
enum { CHAIN_MAX = 16 };

/*
 * The chain GnuTLS verified, rebuilt (it does not hand it out): the leaf, then each certificate
 * the peer sent that issued the one before (name and signature), until one whose issuer is a
 * trust anchor of the credentials, which ends the chain. The peer's certificates are imported
 * once; owned[] marks those that are not also in peer[].
 */
struct gtls_chain {
    gnutls_x509_crt_t peer[CHAIN_MAX];
    unsigned npeer;
    gnutls_x509_crt_t crt[CHAIN_MAX + 1];
    unsigned n;
    gnutls_x509_crt_t anchor; /* a copy from the trust list, NULL if none was appended */
};

static void chain_free(struct gtls_chain *ch)
{
    for (unsigned i = 0; i < ch->npeer; i++) {
        gnutls_x509_crt_deinit(ch->peer[i]);
    }
    if (ch->anchor != NULL) {
        gnutls_x509_crt_deinit(ch->anchor);
    }
}

/* Whether @p issuer signed @p cert (dates are GnuTLS's verification's business, done already). */
static bool signed_by(gnutls_x509_crt_t cert, gnutls_x509_crt_t issuer)
{
    unsigned status = 0;

    return gnutls_x509_crt_check_issuer(cert, issuer) != 0 &&
           gnutls_x509_crt_verify(cert, &issuer, 1,
                                  GNUTLS_VERIFY_DISABLE_TIME_CHECKS |
                                      GNUTLS_VERIFY_DISABLE_TRUSTED_TIME_CHECKS,
                                  &status) >= 0 &&
           status == 0;
}

/*
 * Builds @p ch for the session's peer, or unless @p walk only reads its leaf (ch->peer[0]);
 * GnuTLS's code (memory) or 0.
 */
static int chain_build(struct gtls_conn *c, struct gtls_chain *ch, bool walk)
{
    unsigned n = 0;
    const gnutls_datum_t *der = gnutls_certificate_get_peers(c->session, &n);
    gnutls_x509_trust_list_t tl = NULL;
    bool used[CHAIN_MAX] = {false};

    memset(ch, 0, sizeof(*ch));
    if (der == NULL || n == 0 || n > CHAIN_MAX) {
        return GNUTLS_E_CERTIFICATE_ERROR;
    }
    /* Without a walk only the leaf is looked at: the others are not read (a handshake's cost). */
    for (unsigned i = 0; i < (walk ? n : 1); i++) {
        int ret = gnutls_x509_crt_init(&ch->peer[i]);
        if (ret < 0) {
            return ret;
        }
        ch->npeer++;
        ret = gnutls_x509_crt_import(ch->peer[i], &der[i], GNUTLS_X509_FMT_DER);
        if (ret < 0) {
            return ret;
        }
    }
    ch->crt[ch->n++] = ch->peer[0];
    used[0] = true;
    if (!walk) {
        return 0;
    }
    gnutls_certificate_get_trust_list(c->gc->cred, &tl);
    while (ch->n <= CHAIN_MAX) {
        gnutls_x509_crt_t cur = ch->crt[ch->n - 1];
        gnutls_x509_crt_t issuer = NULL;
        int ret = gnutls_x509_trust_list_get_issuer(tl, cur, &issuer, GNUTLS_TL_GET_COPY);
        if (ret == GNUTLS_E_MEMORY_ERROR) {
            return ret;
        }
        if (ret >= 0) {
            /* A trust anchor itself (a self-signed root sent or trusted as is) ends the chain. */
            if (gnutls_x509_crt_equals(cur, issuer)) {
                gnutls_x509_crt_deinit(issuer);
            } else {
                ch->anchor = issuer;
                ch->crt[ch->n++] = issuer;
            }
            return 0;
        }
        unsigned next = 0;
        while (next < n && (used[next] || !signed_by(cur, ch->peer[next]))) {
            next++;
        }
        if (next == n) {
            return 0;
        }
        used[next] = true;
        ch->crt[ch->n++] = ch->peer[next];
    }
    return 0;
}

/* Whether a CRL and a certificate name the same issuer (DER compare, as GnuTLS itself does). */
static bool crl_issued_for(gnutls_x509_crl_t crl, gnutls_x509_crt_t cert)
{
    gnutls_datum_t a = {NULL, 0};
    gnutls_datum_t b = {NULL, 0};
    bool same = gnutls_x509_crl_get_raw_issuer_dn(crl, &a) >= 0 &&
                gnutls_x509_crt_get_raw_issuer_dn(cert, &b) >= 0 && a.size == b.size &&
                memcmp(a.data, b.data, a.size) == 0;

    gnutls_free(a.data);
    gnutls_free(b.data);
    return same;
}

/*
 * Checks @p cert against the context's CRLs from @p issuer (NULL: not known), in OpenSSL's
 * order and words: a current CRL from the issuer with a good signature must exist, and must not
 * list the certificate. Returns NULL when it passes, else the reason, with the alert OpenSSL
 * sends for it in *@p alert. Wall-clock time, as GnuTLS uses for certificate dates.
 */
static const char *crl_reason(const struct gtls_ctx *gc, gnutls_x509_crt_t cert,
                              gnutls_x509_crt_t issuer, int *alert)
{
    const char *reason = "unable to get certificate CRL";
    time_t now = time(NULL);

    *alert = GNUTLS_A_BAD_CERTIFICATE;
    for (unsigned i = 0; issuer != NULL && i < gc->crl_count; i++) {
        gnutls_x509_crl_t crl = gc->crls[i];
        unsigned status = 0;
        if (!crl_issued_for(crl, cert)) {
            continue;
        }
        time_t next = gnutls_x509_crl_get_next_update(crl);
        /* Dates first: GnuTLS's CRL verification flags an expired CRL as invalid too. */
        if (gnutls_x509_crl_get_this_update(crl) > now) {
            reason = "CRL is not yet valid";
            *alert = GNUTLS_A_BAD_CERTIFICATE;
        } else if (next != (time_t)-1 && next < now) {
            reason = "CRL has expired";
            *alert = GNUTLS_A_CERTIFICATE_EXPIRED;
        } else if (gnutls_x509_crl_verify(crl, &issuer, 1, 0, &status) < 0 || status != 0) {
            reason = "CRL signature failure";
            *alert = GNUTLS_A_BAD_CERTIFICATE;
        } else if (gnutls_x509_crt_check_revocation(cert, &crl, 1) == 1) {
            *alert = GNUTLS_A_CERTIFICATE_REVOKED;
            return "certificate revoked";
        } else {
            return NULL; /* a good CRL that does not list it; others from the issuer may be old */
        }
    }
    return reason;
}

/* Revocation of the leaf, or of every certificate of the chain (the anchor by its own CRL). */
static const char *revocation_reason(const struct gtls_conn *c, const struct gtls_chain *ch,
                                     int *alert, unsigned *depth)
{
    unsigned last = c->trust->crl_mode == TLSOCK_CRL_CHAIN ? ch->n - 1 : 0;

    for (unsigned i = 0; i <= last; i++) {
        gnutls_x509_crt_t cert = ch->crt[i];
        gnutls_x509_crt_t issuer = i + 1 < ch->n ? ch->crt[i + 1] : NULL;
        if (issuer == NULL && gnutls_x509_crt_check_issuer(cert, cert) != 0) {
            issuer = cert;
        }
        const char *reason = crl_reason(c->gc, cert, issuer, alert);
        if (reason != NULL) {
            *depth = i;
            return reason;
        }
    }
    return NULL;
}

/* 1 when @p crt has a subjectAltName extension, 0 when not, GNUTLS_E_MEMORY_ERROR. */
static int has_san(gnutls_x509_crt_t crt)
{
    unsigned char name[256];
    size_t len = sizeof(name);
    int ret = gnutls_x509_crt_get_subject_alt_name(crt, 0, name, &len, NULL);

    if (ret == GNUTLS_E_MEMORY_ERROR) {
        return ret;
    }
    return ret != GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE;
}

/* The first @p n certificates of @p ch in DER (kept in @p owned) and their SPKI digests. */
static int trust_input(const struct gtls_chain *ch, unsigned n, struct tlsock_cert_der *chain,
                       gnutls_datum_t *owned, unsigned char (*spki)[32])
{
    for (unsigned i = 0; i < n; i++) {
        gnutls_pubkey_t key = NULL;
        gnutls_datum_t der = {NULL, 0};
        int ret = gnutls_x509_crt_export2(ch->crt[i], GNUTLS_X509_FMT_DER, &owned[i]);
        if (ret >= 0) {
            chain[i].der = owned[i].data;
            chain[i].len = owned[i].size;
            ret = gnutls_pubkey_init(&key);
        }
        if (ret >= 0) {
            ret = gnutls_pubkey_import_x509(key, ch->crt[i], 0);
        }
        if (ret >= 0) {
            ret = gnutls_pubkey_export2(key, GNUTLS_X509_FMT_DER, &der);
        }
        if (ret >= 0) {
            ret = gnutls_hash_fast(GNUTLS_DIG_SHA256, der.data, der.size, spki[i]);
        }
        gnutls_free(der.data);
        if (key != NULL) {
            gnutls_pubkey_deinit(key);
        }
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* The shared checks of trust.h on the chain built; 0 or TLSOCK_EVERIFY in c->verify_err. */
static int trust_check(struct gtls_conn *c, const struct gtls_chain *ch, int rc,
                       const char *subject)
{
    unsigned npeer = 0;
    const gnutls_datum_t *peers = gnutls_certificate_get_peers(c->session, &npeer);
    struct tlsock_cert_der peer[CHAIN_MAX];
    struct tlsock_cert_der chain[CHAIN_MAX + 1];
    gnutls_datum_t owned[CHAIN_MAX + 1];
    unsigned char spki[CHAIN_MAX + 1][32];
    unsigned n = rc == 0 ? ch->n : 0;
    struct tlsock__trust_input in = {
        .info = {.conn = c->owner,
                 .role = c->role,
                 .verify_name = c->role == TLSOCK_CLIENT ? c->verify_name : NULL,
                 .peer_chain = peer,
                 .peer_chain_len = npeer < CHAIN_MAX ? npeer : CHAIN_MAX,
                 .verified_chain = chain,
                 .verified_chain_len = n},
        .spki = (const unsigned char(*)[32])spki,
        .subject = subject,
    };

    memset(owned, 0, sizeof(owned));
    for (unsigned i = 0; i < in.info.peer_chain_len; i++) {
        peer[i].der = peers[i].data;
        peer[i].len = peers[i].size;
    }
    if (trust_input(ch, n, chain, owned, spki) < 0) {
        /* Never let a peer through unchecked: without memory it is refused. */
        rc = tlsock__fail(&c->verify_err, TLSOCK_ENOMEM,
                          "out of memory checking the peer's certificate chain");
    } else {
        rc = tlsock__trust_check(c->trust, &in, rc, &c->verify_err);
    }
    for (unsigned i = 0; i < n; i++) {
        gnutls_free(owned[i].data);
    }
    return rc;
}

/* Whether @p crt is outside its validity dates now (GnuTLS's wall clock). */
static bool out_of_date(gnutls_x509_crt_t crt, unsigned status)
{
    time_t now = time(NULL);

    return ((status & GNUTLS_CERT_EXPIRED) && gnutls_x509_crt_get_expiration_time(crt) < now) ||
           ((status & GNUTLS_CERT_NOT_ACTIVATED) && gnutls_x509_crt_get_activation_time(crt) > now);
}

/*
 * The depth of the certificate GnuTLS's @p status is about (it says what failed, not where), in
 * the walked chain @p ch, as OpenSSL reports it: the first certificate out of its dates, the
 * first CA that is not one, the first link whose signature does not verify or whose issuer is
 * missing (the top of what could be built), the first weak signature; else the leaf.
 */
static unsigned failed_depth(const struct gtls_chain *ch, unsigned status, gnutls_x509_crt_t *bad)
{
    *bad = ch->crt[0];
    for (unsigned i = 0; i < ch->n; i++) {
        gnutls_x509_crt_t crt = ch->crt[i];
        *bad = crt;
        if ((status & (GNUTLS_CERT_EXPIRED | GNUTLS_CERT_NOT_ACTIVATED)) &&
            out_of_date(crt, status)) {
            return i;
        }
        if ((status & GNUTLS_CERT_SIGNER_NOT_CA) && i > 0 &&
            gnutls_x509_crt_get_ca_status(crt, NULL) <= 0) {
            return i;
        }
        /* The walk stops below an issuer that is not a CA (signed_by refuses it): it failed. */
        for (unsigned j = 0;
             (status & GNUTLS_CERT_SIGNER_NOT_CA) && i + 1 == ch->n && j < ch->npeer; j++) {
            if (ch->peer[j] != crt && gnutls_x509_crt_check_issuer(crt, ch->peer[j]) != 0 &&
                gnutls_x509_crt_get_ca_status(ch->peer[j], NULL) <= 0) {
                *bad = ch->peer[j];
                return i + 1;
            }
        }
        if ((status & (GNUTLS_CERT_SIGNER_NOT_FOUND | GNUTLS_CERT_SIGNATURE_FAILURE)) &&
            (i + 1 == ch->n || !signed_by(crt, ch->crt[i + 1]))) {
            /* A self-signed top verifies by itself but has no issuer to trust. */
            return i;
        }
        if ((status & GNUTLS_CERT_INSECURE_ALGORITHM) && i + 1 < ch->n &&
            !gnutls_sign_is_secure2(
                (gnutls_sign_algorithm_t)gnutls_x509_crt_get_signature_algorithm(crt), 0)) {
            return i;
        }
    }
    *bad = ch->crt[0];
    return 0;
}

/*
 * The stapled OCSP response of a client that asked for one, after every other check (as on
 * OpenSSL, where the staple of TLS 1.2 arrives after the certificate is verified).
 */
static int ocsp_check(struct gtls_conn *c, const struct gtls_chain *ch, const char *subject)
{
    /* A leaf trusted as its own anchor is its own issuer. */
    gnutls_x509_crt_t issuer = ch->n > 1 ? ch->crt[1] : ch->crt[0];
    int finding = tlsock__gtls_ocsp_finding(c->session, ch->crt[0], issuer);
    int must_staple = tlsock__gtls_must_staple(ch->crt[0]);

    if (finding < 0 || must_staple < 0) {
        return tlsock__fail(&c->verify_err, TLSOCK_ENOMEM,
                            "out of memory checking the stapled OCSP response");
    }
    return tlsock__ocsp_check(c->trust, finding, must_staple == 1, subject, &c->verify_err);
}

/*
 * GnuTLS's verification, then what it does not check: a name against a certificate without a
 * subjectAltName (GnuTLS would fall back to the CN), revocation, and trust.h's checks. Returns
 * 0 or TLSOCK_EVERIFY; the reason is in c->verify_err, naming the certificate that failed.
 */
static int verify_more(struct gtls_conn *c, unsigned *status)
{
    struct gtls_chain ch;
    int rc = 0;
    /*
     * Walking the chain costs a signature check a link: only for what needs the chain (CRLs,
     * pins, depth, the verify callback, a staple to check), and for a failure, to say which
     * certificate failed.
     */
    bool ocsp = c->role == TLSOCK_CLIENT && tlsock__ocsp_wanted(c->trust);
    bool walk =
        *status != 0 || c->trust->crl_mode != 0 || ocsp || tlsock__trust_needs_chain(c->trust);
    /* A client that checked a name must know whether GnuTLS could have matched the CN. */
    bool name_checked = c->role == TLSOCK_CLIENT && c->vdata_count > 1;

    if (!walk && !name_checked) {
        return 0; /* verified, and nothing of ours to check: no certificate is read again */
    }
    if (!walk) {
        /* Verified: only whether the leaf has a subjectAltName matters, read from its DER
         * without parsing it again (a handshake's cost) unless the DER reader cannot tell. */
        unsigned n = 0;
        const gnutls_datum_t *der = gnutls_certificate_get_peers(c->session, &n);
        int found = n > 0 ? tlsock__der_has_san(der[0].data, der[0].size) : -1;
        if (found == 1) {
            return 0;
        }
    }
    int ret = chain_build(c, &ch, walk);
    int san = ret >= 0 && name_checked ? has_san(ch.peer[0]) : 1;
    char subject[256] = "";
    unsigned depth = 0;

    if (ret == GNUTLS_E_MEMORY_ERROR || san == GNUTLS_E_MEMORY_ERROR) {
        chain_free(&ch);
        return tlsock__fail(&c->verify_err, TLSOCK_ENOMEM,
                            "out of memory checking the peer's certificate chain");
    }
    if (ret < 0) {
        /* GnuTLS read the chain (more than CHAIN_MAX certificates it refuses itself). */
        chain_free(&ch);
        return tlsock__text_fail_verify_at(&c->verify_err,
                                           "cannot read the peer's certificate chain", 0, "");
    }
    if (walk) {
        /* For the trust checks' messages; a failure names its own certificate. */
        (void)subject_text(ch.peer[0], subject, sizeof(subject));
    }
    c->no_san = san == 0;
    if (*status == 0 && c->no_san && c->vdata_count > 1) {
        *status = GNUTLS_CERT_INVALID | GNUTLS_CERT_UNEXPECTED_OWNER;
    }
    if (*status == 0 && c->trust->crl_mode != 0) {
        const char *reason = revocation_reason(c, &ch, &c->verify_alert, &depth);
        if (reason != NULL) {
            char bad[256];
            (void)subject_text(ch.crt[depth], bad, sizeof(bad));
            rc = tlsock__text_fail_verify_at(&c->verify_err, reason, (int)depth, bad);
            *status = GNUTLS_CERT_INVALID;
        }
    }
    if (*status != 0 && rc == 0) {
        char reason[TLSOCK__ERRMSG_SIZE];
        char bad[256];
        verify_reason(c, *status, reason, sizeof(reason));
        gnutls_x509_crt_t failed = NULL;
        depth = failed_depth(&ch, *status, &failed);
        (void)subject_text(failed, bad, sizeof(bad));
        rc = tlsock__text_fail_verify_at(&c->verify_err, reason, (int)depth, bad);
        c->verify_alert = (int)verify_alert(*status);
    }
    if (tlsock__trust_needs_chain(c->trust)) {
        int before = rc;
        rc = trust_check(c, &ch, rc, subject);
        if (rc != 0 && before == 0) {
            c->verify_alert = GNUTLS_A_BAD_CERTIFICATE;
            *status = GNUTLS_CERT_INVALID;
        }
    }
    if (rc == 0 && ocsp) {
        rc = ocsp_check(c, &ch, subject);
        if (rc != 0) {
            c->verify_alert = TLSOCK__ALERT_BAD_STATUS;
            *status = GNUTLS_CERT_INVALID;
        }
    }
    chain_free(&ch);
    return rc;
}

/*
 * GnuTLS clients (3.7) always ask for a staple, and gnutls_certificate_verify_peers() checks it,
 * and must-staple, by rules of its own: its findings are dropped, and ocsp_check() decides when
 * the context asks for OCSP, as OpenSSL's side does (tlsock gives GnuTLS no CRLs, so a revocation
 * can only be its OCSP check's).
 */
static unsigned without_ocsp(const struct gtls_conn *c, unsigned status)
{
    const unsigned ocsp_bits =
        GNUTLS_CERT_REVOKED | GNUTLS_CERT_MISSING_OCSP_STATUS | GNUTLS_CERT_INVALID_OCSP_STATUS |
        GNUTLS_CERT_REVOCATION_DATA_SUPERSEDED | GNUTLS_CERT_REVOCATION_DATA_ISSUED_IN_FUTURE;

    if (c->role != TLSOCK_CLIENT || (status & ocsp_bits) == 0) {
        return status;
    }
    status &= ~ocsp_bits;
    return status == GNUTLS_CERT_INVALID ? 0 : status;
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
    status = without_ocsp(c, status);
    tlsock__err_clear(&c->verify_err);
    c->verify_alert = 0;
    int rc = verify_more(c, &status);
    c->verify_rc = rc;
    c->verify_status = status;
    c->verify_failed = rc != 0 || status != 0;
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
        c->verify_name = strdup(p->verify_name);
        if (c->verify_name == NULL) {
            return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory keeping the name to verify");
        }
        c->vdata[1].type = GNUTLS_DT_DNS_HOSTNAME;
        c->vdata[1].data = (unsigned char *)c->verify_name;
        c->vdata_count = 2;
    }
    c->verifying = true;
    gnutls_session_set_verify_function(s, verify_peer);
    return 0;
}

static int keylog_func(gnutls_session_t session, const char *label, const gnutls_datum_t *secret)
{
    struct gtls_conn *c = gnutls_session_get_ptr(session);
    gnutls_datum_t client_random = {0};
    gnutls_datum_t server_random = {0};

    if (c != NULL && c->keylog != NULL) {
        gnutls_session_get_random(session, &client_random, &server_random);
        tlsock__keylog_secret(c->keylog, label, client_random.data, client_random.size,
                              secret->data, secret->size);
        if (strcmp(label, "CLIENT_RANDOM") == 0) {
            c->master_logged = true;
        }
    }
    return 0;
}

/*
 * A TLS 1.2 (or earlier) handshake that resumed a session takes its master secret from it: GnuTLS
 * derives nothing, so hands over no CLIENT_RANDOM line, where OpenSSL writes one on every
 * handshake. Without it a capture of the resumed connection cannot be decrypted: written here,
 * once the handshake is done, from the session's client random and master secret, unless GnuTLS
 * wrote it (a full handshake). The secret is GnuTLS's own (not ours to wipe); the line holding its
 * hex is wiped by the writer.
 */
static void keylog_master(struct gtls_conn *c)
{
    gnutls_datum_t client_random = {0};
    gnutls_datum_t server_random = {0};
    gnutls_datum_t master = {0};

    if (c->keylog == NULL || c->master_logged ||
        gnutls_protocol_get_version(c->session) == GNUTLS_TLS1_3) {
        return;
    }
    gnutls_session_get_random(c->session, &client_random, &server_random);
    gnutls_session_get_master_secret(c->session, &master);
    tlsock__keylog_secret(c->keylog, "CLIENT_RANDOM", client_random.data, client_random.size,
                          master.data, master.size);
    c->master_logged = true;
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
    c->gc = gc;
    c->verify_mode = p->verify_mode;
    c->trust = p->trust;
    c->certsel = p->role == TLSOCK_SERVER ? p->certsel : NULL;
    c->owner = p->owner;
    c->keylog = p->keylog;
    if (p->role == TLSOCK_SERVER) {
        c->ocsp_response = p->ocsp_response;
        c->ocsp_response_len = p->ocsp_response_len;
    }
    c->min_version = gc->prio_min;
    c->max_version = gc->prio_max;
    if (p->servername != NULL) {
        c->servername = strdup(p->servername);
        if (c->servername == NULL) {
            free(c);
            return tlsock__fail(err, TLSOCK_ENOMEM, "out of memory allocating a session");
        }
    }
    c->t = p->transport;
    /*
     * A server's TLS 1.3 tickets wait for the client's Finished (send_tickets()): GnuTLS would
     * send them with its own Finished, and then nothing follows the client's Finished, so a
     * client with Nagle on holds its first request back until the delayed ACK (about 40 ms).
     */
    ret = gnutls_init(
        &c->session,
        (p->role == TLSOCK_CLIENT ? GNUTLS_CLIENT : (GNUTLS_SERVER | GNUTLS_NO_AUTO_SEND_TICKET)) |
            GNUTLS_NONBLOCK);
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
    /*
     * On every session, key log or not: it replaces GnuTLS's default, which appends to the file
     * SSLKEYLOGFILE names by itself; tlsock honours no such variable (include/tlsock.h).
     */
    gnutls_session_set_keylog_function(c->session, keylog_func);
    if (p->role == TLSOCK_SERVER) {
        /* Any type: an SSLv2-format hello comes as GNUTLS_HANDSHAKE_CLIENT_HELLO_V2, which a
         * hook for GNUTLS_HANDSHAKE_CLIENT_HELLO never sees (its rules would be skipped). */
        gnutls_handshake_set_hook_function(c->session, GNUTLS_HANDSHAKE_ANY, GNUTLS_HOOK_PRE,
                                           client_hello_hook);
        if (gc->tickets != NULL) {
            tlsock__gtls_tickets_start(c->session, gc->tickets);
        }
    }
    rc = setup_verification(c, p, err);
    if (rc != 0) {
        goto fail;
    }
    tlsock__gtls_sessions_setup(c->session, &c->sess, &p->session, &p->offer, p->role);
    *out = c;
    return 0;
fail:
    gtls_conn_free(c);
    return rc;
}

bool *tlsock__gtls_ticket_pending(gnutls_session_t session)
{
    struct gtls_conn *c = gnutls_session_get_ptr(session);

    return c != NULL ? &c->ticket_pending : NULL;
}

int tlsock__gtls_staple(gnutls_session_t session, void *ptr, gnutls_datum_t *resp)
{
    const struct gtls_conn *c = gnutls_session_get_ptr(session);

    (void)ptr;
    /* The response is the first certificate's (tlsock.h): stapled only with that one. */
    if (c == NULL || c->ocsp_response == NULL || c->chain_index != 0) {
        return GNUTLS_E_NO_CERTIFICATE_STATUS;
    }
    /* GnuTLS frees it; without memory the server staples nothing, which a client may accept. */
    resp->data = gnutls_malloc(c->ocsp_response_len);
    if (resp->data == NULL) {
        return GNUTLS_E_NO_CERTIFICATE_STATUS;
    }
    memcpy(resp->data, c->ocsp_response, c->ocsp_response_len);
    resp->size = (unsigned)c->ocsp_response_len;
    return 0;
}

/*
 * GnuTLS answers EAGAIN without the transport having said "not now" whenever it wants another
 * call: after each record of a handshake message split over several records (it takes one record
 * per call), after a record that carried nothing for the caller (a TLS 1.3 NewSessionTicket or
 * KeyUpdate). Only the transport's own would-block may become a WANT code: the bytes behind any
 * other EAGAIN are already out of the socket or the memory transport, so a caller told to wait
 * for input would wait for what has already arrived (a fixed bound of 64 calls left a ClientHello
 * in 200 records unanswered). So a call is repeated as long as it moves bytes; a call that moves
 * none and is not blocked either is GnuTLS's surprise, reported with the direction it gives.
 */
static bool should_repeat(struct gtls_conn *c, long ret, unsigned long *moved_before)
{
    bool progress = c->moved != *moved_before;

    *moved_before = c->moved;
    return ret == GNUTLS_E_AGAIN && !c->blocked && c->t->err == 0 && progress;
}

/* The tickets GnuTLS sends by itself after a TLS 1.3 handshake (TLS13_TICKETS_TO_SEND). */
enum { TICKETS_PER_HANDSHAKE = 2 };

/*
 * A TLS 1.3 server's tickets, once the client's Finished is read: they follow it at once, so a
 * client with Nagle on is not left waiting for an ACK. The handshake is not over until they are
 * out: a transport that says "not now" makes it a WANT_WRITE, and the next step sends the rest
 * (GnuTLS resumes a ticket send it could not flush instead of making new tickets).
 */
static int send_tickets(struct gtls_conn *c, struct tlsock__err *err)
{
    unsigned long moved = c->moved;
    int ret;

    do {
        c->blocked = false;
        ret = gnutls_session_ticket_send(c->session, TICKETS_PER_HANDSHAKE, 0);
    } while (should_repeat(c, ret, &moved));
    if (ret == GNUTLS_E_AGAIN || ret == GNUTLS_E_INTERRUPTED) {
        /* Only writes happen here, whatever direction GnuTLS last recorded. */
        return tlsock__transport_retry_code(c->t, TLSOCK_EWANT_WRITE, err);
    }
    return ret == 0 ? 0 : map_error(c, ret, err);
}

static int gtls_handshake(void *tls, struct tlsock__err *err)
{
    struct gtls_conn *c = tls;
    unsigned long moved = c->moved;
    int ret;

    if (c->max_version == 0) {
        return tlsock__fail(err, TLSOCK_EPROTO,
                            "no protocol version available: TLS 1.0 and 1.1 need the legacy "
                            "cipher policy");
    }
    if (c->stage == GTLS_RUNNING) {
        do {
            c->blocked = false;
            ret = gnutls_handshake(c->session);
        } while (should_repeat(c, ret, &moved));
        if (ret == GNUTLS_E_SESSION_EOF && c->t->err == 0 && !c->t->eof) {
            /* GnuTLS's word for a close_notify in the handshake. */
            return tlsock__text_fail_closed_in_handshake(err);
        }
        if (ret != 0) {
            return map_error(c, ret, err);
        }
        keylog_master(c);
        tlsock__gtls_sessions_report(c->session, &c->sess, true);
        /* Tickets off: GnuTLS was given no ticket key, and nothing is sent. */
        bool tickets = c->role == TLSOCK_SERVER && c->tickets_keyed &&
                       gnutls_protocol_get_version(c->session) == GNUTLS_TLS1_3;
        c->stage = tickets ? GTLS_TICKETS : GTLS_DONE;
    }
    if (c->stage == GTLS_TICKETS) {
        int rc = send_tickets(c, err);
        if (rc != 0) {
            return rc;
        }
        c->stage = GTLS_DONE;
    }
    return 0;
}

/*
 * Renegotiation is refused as OpenSSL's SSL_OP_NO_RENEGOTIATION refuses it: a no_renegotiation
 * warning (RFC 5246 section 7.2.2), and the session goes on; a peer that insists fails its own
 * handshake. A server's GnuTLS keeps the client's new ClientHello queued for gnutls_handshake():
 * left there, it would fail the next read as an unexpected message, so the next read is the one
 * that drops it (gnutls_record_recv discards a queued record of another type with
 * GNUTLS_E_UNEXPECTED_PACKET).
 */
static void refuse_renegotiation(struct gtls_conn *c)
{
    gnutls_alert_send(c->session, GNUTLS_AL_WARNING, GNUTLS_A_NO_RENEGOTIATION);
    c->drop_hello = c->role == TLSOCK_SERVER && gnutls_record_check_pending(c->session) > 0;
}

/*
 * TLS 1.3 has two closure alerts (RFC 8446 section 6.1): close_notify, and user_canceled, which
 * "SHOULD be followed by a close_notify". Java's TLS sends both when a TLS 1.3 socket is closed
 * before the peer's close_notify came (its duplex close: it reads nothing more). OpenSSL reads
 * past user_canceled to the close_notify; GnuTLS takes every TLS 1.3 alert but close_notify as
 * fatal and invalidates the session, so the close_notify behind it can never be read. After the
 * handshake it is then the peer's end of stream, as on OpenSSL (TLSOCK_ECLOSED), not a protocol
 * error: data the peer sent before it was all read, and only the peer can send it (the alert is
 * encrypted). TLS 1.2's user_canceled is a warning, which gtls_read() reads past.
 */
static bool canceled_by_peer(struct gtls_conn *c)
{
    return gnutls_protocol_get_version(c->session) == GNUTLS_TLS1_3 &&
           gnutls_alert_get(c->session) == GNUTLS_A_USER_CANCELED;
}

/* Warning alerts in a row before the peer is given up on, as OpenSSL does (five). */
enum { WARNING_LIMIT = 5 };

static int gtls_read(void *tls, void *buf, size_t len, size_t *nread, struct tlsock__err *err)
{
    struct gtls_conn *c = tls;
    unsigned long moved = c->moved;
    ssize_t ret;
    int warnings = 0;
    int rc = 0;

    /* A warning alert (other than close_notify) carries no data either: read on. */
    for (;;) {
        bool dropping = c->drop_hello;
        c->blocked = false;
        c->drop_hello = false;
        ret = gnutls_record_recv(c->session, buf, len);
        if (ret == GNUTLS_E_REHANDSHAKE) {
            refuse_renegotiation(c);
            continue;
        }
        if (ret == GNUTLS_E_UNEXPECTED_PACKET && dropping) {
            continue; /* that was the refused ClientHello leaving */
        }
        bool warning = ret == GNUTLS_E_WARNING_ALERT_RECEIVED &&
                       gnutls_alert_get(c->session) != GNUTLS_A_CLOSE_NOTIFY;
        if (warning && ++warnings < WARNING_LIMIT) {
            continue;
        }
        if (!should_repeat(c, ret, &moved)) {
            break;
        }
    }
    tlsock__gtls_sessions_report(c->session, &c->sess, false);
    if (ret > 0) {
        *nread = (size_t)ret;
    } else if (ret == 0) {
        rc = tlsock__fail(err, TLSOCK_ECLOSED, "peer sent close_notify");
    } else if (ret == GNUTLS_E_FATAL_ALERT_RECEIVED && canceled_by_peer(c)) {
        c->peer_canceled = true;
        rc = tlsock__fail(err, TLSOCK_ECLOSED, "peer ended the session with user_canceled");
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
    unsigned long moved = c->moved;
    ssize_t ret;

    if (c->peer_canceled) {
        /* GnuTLS encrypts nothing more once the session is invalidated (canceled_by_peer()). */
        return tlsock__fail(err, TLSOCK_EPROTO,
                            "cannot write: the peer ended the session with user_canceled");
    }
    do {
        c->blocked = false;
        ret = gnutls_record_send(c->session, buf, len);
    } while (should_repeat(c, ret, &moved));
    if (ret > 0) {
        *nwritten = (size_t)ret;
        return 0;
    }
    return map_error(c, ret == 0 ? GNUTLS_E_INTERNAL_ERROR : (int)ret, err);
}

static int gtls_shutdown(void *tls, struct tlsock__err *err)
{
    struct gtls_conn *c = tls;
    unsigned long moved = c->moved;
    int ret;

    if (c->peer_canceled) {
        /*
         * Nothing can be sent after the peer's user_canceled (canceled_by_peer()). The peer
         * canceled the whole session and waits for no close_notify (Java's TLS has closed its
         * socket by then); the caller's FIN still ends the stream.
         */
        return 0;
    }
    do {
        c->blocked = false;
        ret = gnutls_bye(c->session, GNUTLS_SHUT_WR);
    } while (should_repeat(c, ret, &moved));
    /* Our close_notify may sit among collected records: it is out only once they are. */
    return ret == 0 ? tlsock__transport_flush(c->t, err) : map_error(c, ret, err);
}

/* ---------------------------------------------------------------------------------------------
 * Session information
 * ------------------------------------------------------------------------------------------- */

/* Lists the DNS and IP SANs of @p crt; returns GnuTLS's code for the end of the list. */
static int format_sans(gnutls_x509_crt_t crt, char *out, size_t size)
{
    struct tlsock__san_text text;

    tlsock__san_text_init(&text, out, size);
    for (unsigned i = 0;; i++) {
        unsigned char name[256];
        size_t len = sizeof(name);
        int type = gnutls_x509_crt_get_subject_alt_name(crt, i, name, &len, NULL);
        if (type == GNUTLS_E_SHORT_MEMORY_BUFFER) {
            continue; /* longer than a DNS name can be */
        }
        if (type < 0) {
            return type;
        }
        if (type == GNUTLS_SAN_DNSNAME) {
            tlsock__san_text_dns(&text, (const char *)name, len);
        } else if (type == GNUTLS_SAN_IPADDRESS) {
            tlsock__san_text_ip(&text, name, len);
        }
    }
}

static int fingerprint(const gnutls_datum_t *der, char out[TLSOCK_FINGERPRINT_SIZE])
{
    unsigned char md[32];
    size_t len = sizeof(md);
    int ret = gnutls_fingerprint(GNUTLS_DIG_SHA256, der, md, &len);

    out[0] = '\0';
    if (ret >= 0 && len == sizeof(md)) {
        tlsock__text_fingerprint(md, out);
    }
    return ret;
}

/* The leaf's issuer, serial, dates and key digest; GnuTLS's code. */
static int describe_leaf(gnutls_x509_crt_t crt, struct tlsock__info_buf *out)
{
    gnutls_datum_t dn = {NULL, 0};
    gnutls_datum_t spki = {NULL, 0};
    gnutls_pubkey_t key = NULL;
    unsigned char serial[64];
    size_t serial_len = sizeof(serial);
    unsigned char md[32];
    int ret = gnutls_x509_crt_get_issuer_dn3(crt, &dn, 0);

    if (ret >= 0) {
        snprintf(out->peer_issuer, sizeof(out->peer_issuer), "%s", (const char *)dn.data);
        ret = gnutls_x509_crt_get_serial(crt, serial, &serial_len);
    }
    if (ret >= 0) {
        tlsock__text_serial(serial, serial_len, out->peer_serial, sizeof(out->peer_serial));
        out->peer_not_before = (int64_t)gnutls_x509_crt_get_activation_time(crt);
        out->peer_not_after = (int64_t)gnutls_x509_crt_get_expiration_time(crt);
        ret = gnutls_pubkey_init(&key);
    }
    if (ret >= 0) {
        ret = gnutls_pubkey_import_x509(key, crt, 0);
    }
    if (ret >= 0) {
        ret = gnutls_pubkey_export2(key, GNUTLS_X509_FMT_DER, &spki);
    }
    if (ret >= 0) {
        ret = gnutls_hash_fast(GNUTLS_DIG_SHA256, spki.data, spki.size, md);
    }
    if (ret >= 0) {
        tlsock__text_fingerprint(md, out->peer_spki_sha256);
    }
    gnutls_free(dn.data);
    gnutls_free(spki.data);
    if (key != NULL) {
        gnutls_pubkey_deinit(key);
    }
    return ret;
}

/* Copies of the certificates the peer sent, leaf first; false without memory. */
static bool copy_peer_chain(const gnutls_datum_t *peers, unsigned n, struct tlsock__info_buf *out)
{
    out->peer_chain = calloc(n, sizeof(*out->peer_chain));
    if (out->peer_chain == NULL) {
        return false;
    }
    for (unsigned i = 0; i < n; i++) {
        unsigned char *der = malloc(peers[i].size);
        if (der == NULL) {
            return false;
        }
        memcpy(der, peers[i].data, peers[i].size);
        out->peer_chain[i].der = der;
        out->peer_chain[i].len = peers[i].size;
        out->peer_chain_len = i + 1;
    }
    return true;
}

/* The RFC 8446 name of GnuTLS's signature algorithm @p sign. */
static void sigalg_name(gnutls_sign_algorithm_t sign, char *out, size_t size)
{
    int kind = TLSOCK__SIG_NONE;

    switch (sign) {
    case GNUTLS_SIGN_RSA_SHA1:
    case GNUTLS_SIGN_RSA_SHA256:
    case GNUTLS_SIGN_RSA_SHA384:
    case GNUTLS_SIGN_RSA_SHA512:
        kind = TLSOCK__SIG_RSA_PKCS1;
        break;
    case GNUTLS_SIGN_RSA_PSS_RSAE_SHA256:
    case GNUTLS_SIGN_RSA_PSS_RSAE_SHA384:
    case GNUTLS_SIGN_RSA_PSS_RSAE_SHA512:
        kind = TLSOCK__SIG_RSA_PSS_RSAE;
        break;
    case GNUTLS_SIGN_RSA_PSS_SHA256:
    case GNUTLS_SIGN_RSA_PSS_SHA384:
    case GNUTLS_SIGN_RSA_PSS_SHA512:
        kind = TLSOCK__SIG_RSA_PSS_PSS;
        break;
    case GNUTLS_SIGN_ECDSA_SHA1:
    case GNUTLS_SIGN_ECDSA_SHA256:
    case GNUTLS_SIGN_ECDSA_SHA384:
    case GNUTLS_SIGN_ECDSA_SHA512:
    case GNUTLS_SIGN_ECDSA_SECP256R1_SHA256:
    case GNUTLS_SIGN_ECDSA_SECP384R1_SHA384:
    case GNUTLS_SIGN_ECDSA_SECP521R1_SHA512:
        kind = TLSOCK__SIG_ECDSA;
        break;
    case GNUTLS_SIGN_EDDSA_ED25519:
        kind = TLSOCK__SIG_ED25519;
        break;
    case GNUTLS_SIGN_EDDSA_ED448:
        kind = TLSOCK__SIG_ED448;
        break;
    default:
        break;
    }
    gnutls_digest_algorithm_t dig = gnutls_sign_get_hash_algorithm(sign);
    int bits = dig == GNUTLS_DIG_SHA1 ? 160 : (int)gnutls_hash_get_len(dig) * 8;
    tlsock__text_sigalg(kind, bits, out, size);
}

/*
 * Subject, SANs and fingerprint of the peer's certificate @p der. A certificate that does not
 * parse describes as far as it goes; GNUTLS_E_MEMORY_ERROR when memory was missing, else 0.
 */
static int describe_peer(const gnutls_datum_t *der, struct tlsock__info_buf *out)
{
    gnutls_x509_crt_t crt = NULL;
    int ret = gnutls_x509_crt_init(&crt);
    bool oom = ret == GNUTLS_E_MEMORY_ERROR;

    if (ret >= 0) {
        ret = gnutls_x509_crt_import(crt, der, GNUTLS_X509_FMT_DER);
        oom = ret == GNUTLS_E_MEMORY_ERROR;
        if (ret >= 0) {
            oom =
                subject_text(crt, out->peer_subject, sizeof(out->peer_subject)) ==
                    GNUTLS_E_MEMORY_ERROR ||
                format_sans(crt, out->peer_sans, sizeof(out->peer_sans)) == GNUTLS_E_MEMORY_ERROR ||
                describe_leaf(crt, out) == GNUTLS_E_MEMORY_ERROR;
        }
        gnutls_x509_crt_deinit(crt);
    }
    if (!oom) {
        oom = fingerprint(der, out->peer_fingerprint) == GNUTLS_E_MEMORY_ERROR;
    }
    return oom ? GNUTLS_E_MEMORY_ERROR : 0;
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

static bool gtls_resumed(void *tls)
{
    const struct gtls_conn *c = tls;

    return gnutls_session_is_resumed(c->session) != 0;
}

static bool gtls_server_silent_after_finished(void *tls)
{
    const struct gtls_conn *c = tls;

    if (c->role != TLSOCK_SERVER || c->stage != GTLS_RUNNING ||
        gnutls_handshake_get_last_out(c->session) != GNUTLS_HANDSHAKE_FINISHED) {
        return false;
    }
    /* TLS 1.3 with a ticket key: send_tickets() follows the client's Finished. */
    return gnutls_protocol_get_version(c->session) != GNUTLS_TLS1_3 || !c->tickets_keyed;
}

static int gtls_get_info(void *tls, struct tlsock__info_buf *out, struct tlsock__err *err)
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
        snprintf(out->servername, sizeof(out->servername), "%s",
                 c->servername != NULL ? c->servername : "");
    }
    if (peers != NULL && npeers > 0) {
        if (describe_peer(&peers[0], out) != 0 || !copy_peer_chain(peers, npeers, out)) {
            return tlsock__fail(err, TLSOCK_ENOMEM,
                                "out of memory describing the peer's certificate");
        }
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
    char reason[sizeof(out->verify_message)];
    verify_reason(c, status, reason, sizeof(reason));
    tlsock__text_verify_message(out->verify_message, sizeof(out->verify_message), c->verify_mode,
                                peers != NULL && npeers > 0, reason);
    out->resumed = gnutls_session_is_resumed(s) != 0;
    gnutls_group_t group = gnutls_group_get(s);
    const char *group_name = group != 0 ? gnutls_group_get_name(group) : NULL;
    tlsock__text_group(group_name != NULL ? group_name : "", out->group, sizeof(out->group));
    if (peers != NULL && npeers > 0) {
        /* The peer's signature: the server's for a client, the client's for a server. */
        int sign = c->role == TLSOCK_CLIENT ? gnutls_sign_algorithm_get(s)
                                            : gnutls_sign_algorithm_get_client(s);
        sigalg_name(sign > 0 ? (gnutls_sign_algorithm_t)sign : GNUTLS_SIGN_UNKNOWN,
                    out->peer_sigalg, sizeof(out->peer_sigalg));
    }
    return 0;
}

static int gtls_export(void *tls, const char *label, size_t label_len, const void *context,
                       size_t context_len, void *out, size_t len, struct tlsock__err *err)
{
    struct gtls_conn *c = tls;
    /* NULL is "no context" (TLS 1.2 tells it from an empty one); a pointer, even to 0 bytes,
     * is a context. */
    int ret = gnutls_prf_rfc5705(c->session, label_len, label, context_len, context, len, out);

    if (ret < 0) {
        return tlsock__fail(err, TLSOCK_EPROTO, "cannot export keying material: %s",
                            gnutls_strerror(ret));
    }
    return 0;
}

static bool gtls_exporter_bound(void *tls)
{
    struct gtls_conn *c = tls;

    return gnutls_protocol_get_version(c->session) == GNUTLS_TLS1_3 ||
           gnutls_session_ext_master_secret_status(c->session) != 0;
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

/* GnuTLS's generator notices a fork() and reseeds the child's state. */
static int gtls_random(void *buf, size_t len, struct tlsock__err *err)
{
    int ret = gnutls_rnd(GNUTLS_RND_RANDOM, buf, len);

    if (ret < 0) {
        return tlsock__fail(err, TLSOCK_ESYS, "gnutls_rnd failed: %s", gnutls_strerror(ret));
    }
    return 0;
}

const struct tlsock__impl tlsock__gnutls_impl = {
    .name = "gnutls",
    .flight_in_pieces = true,
    .id = TLSOCK_IMPL_GNUTLS,
    .caps = TLSOCK_CAP_ALPN | TLSOCK_CAP_CERTGEN,
    .version = gtls_version,
    .ctx_native = gtls_ctx_native,
    .conn_native = gtls_conn_native,
    .ctx_new = tlsock__gtls_ctx_new,
    .ctx_free = tlsock__gtls_ctx_free,
    .ctx_set_protocols = tlsock__gtls_ctx_set_protocols,
    .ctx_set_ciphers = tlsock__gtls_ctx_set_ciphers,
    .ctx_add_ca_dir = tlsock__gtls_ctx_add_ca_dir,
    .ctx_add_ca_mem = tlsock__gtls_ctx_add_ca_mem,
    .ctx_add_ca_system = tlsock__gtls_ctx_add_ca_system,
    .ctx_set_cert = tlsock__gtls_ctx_set_cert,
    .ctx_add_crl = tlsock__gtls_ctx_add_crl,
    .ctx_set_alpn = tlsock__gtls_ctx_set_alpn,
    .ctx_set_tickets = tlsock__gtls_ctx_set_tickets,
    .conn_new = gtls_conn_new,
    .conn_free = gtls_conn_free,
    .handshake = gtls_handshake,
    .read = gtls_read,
    .write = gtls_write,
    .shutdown = gtls_shutdown,
    .get_info = gtls_get_info,
    .resumed = gtls_resumed,
    .server_silent_after_finished = gtls_server_silent_after_finished,
    .export_keying_material = gtls_export,
    .exporter_bound = gtls_exporter_bound,
    .sha256 = tlsock__gtls_sha256,
    .pending = gtls_pending,
    .cert_generate = tlsock__gtls_cert_generate,
    .cert_fingerprint = tlsock__gtls_cert_fingerprint,
    .key_encrypt = tlsock__gtls_key_encrypt,
    .random = gtls_random,
};
