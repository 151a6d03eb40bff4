/*
 * Words and formats both TLS implementations produce; see text.h.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <sys/socket.h>

#include "text.h"
#include "trust.h"

void tlsock__text_fingerprint(const unsigned char md[32], char out[TLSOCK_FINGERPRINT_SIZE])
{
    static const char hex[] = "0123456789ABCDEF";

    /* Three characters a byte: two digits and a separator, the last one the terminating NUL. */
    for (size_t i = 0; i < 32; i++) {
        out[3 * i] = hex[md[i] >> 4];
        out[3 * i + 1] = hex[md[i] & 0x0f];
        out[3 * i + 2] = i + 1 < 32 ? ':' : '\0';
    }
}

void tlsock__san_text_init(struct tlsock__san_text *t, char *out, size_t size)
{
    t->out = out;
    t->size = size;
    t->used = 0;
    t->full = false;
    out[0] = '\0';
}

static void san_add(struct tlsock__san_text *t, const char *kind, const char *value, int len)
{
    if (t->full) {
        return;
    }
    int n = snprintf(t->out + t->used, t->size - t->used, "%s%s:%.*s", t->used > 0 ? "," : "", kind,
                     len, value);
    if (n < 0 || (size_t)n >= t->size - t->used) {
        t->out[t->used] = '\0';
        t->full = true;
        return;
    }
    t->used += (size_t)n;
}

void tlsock__san_text_dns(struct tlsock__san_text *t, const char *name, size_t len)
{
    san_add(t, "DNS", name, len > 255 ? 255 : (int)len);
}

void tlsock__san_text_ip(struct tlsock__san_text *t, const unsigned char *addr, size_t len)
{
    char text[INET6_ADDRSTRLEN] = "?";

    if (len == 4 || len == 16) {
        inet_ntop(len == 16 ? AF_INET6 : AF_INET, addr, text, sizeof(text));
    }
    san_add(t, "IP", text, (int)sizeof(text));
}

int tlsock__text_fail_verify(struct tlsock__err *err, const char *reason, int code_kind,
                             unsigned long code, const char *subject)
{
    char detail[64] = "";
    const char *peer = subject != NULL && subject[0] != '\0' ? "; peer " : "";

    if (code_kind == TLSOCK__VERIFY_CODE_OPENSSL) {
        snprintf(detail, sizeof(detail), " (OpenSSL code %lu)", code);
    } else if (code_kind == TLSOCK__VERIFY_CODE_GNUTLS) {
        snprintf(detail, sizeof(detail), " (GnuTLS status 0x%lx)", code);
    }
    return tlsock__fail(err, TLSOCK_EVERIFY, "%s%s%s%s", reason, detail, peer,
                        peer[0] != '\0' ? subject : "");
}

const char *tlsock__text_no_san_reason(bool ip)
{
    return ip ? "IP address mismatch: the certificate has no subjectAltName, and its CN is never "
                "used as an address"
              : "hostname mismatch: the certificate has no subjectAltName, and its CN is never "
                "used as a host name";
}

const char *tlsock__text_ocsp_reason(int finding, bool must_staple)
{
    switch (finding) {
    case TLSOCK__OCSP_NONE:
        return must_staple ? "no stapled OCSP response, and the certificate requires one"
                           : "no stapled OCSP response, and one is required";
    case TLSOCK__OCSP_MALFORMED:
        return "stapled OCSP response cannot be parsed";
    case TLSOCK__OCSP_NOT_SUCCESSFUL:
        return "stapled OCSP response is not successful";
    case TLSOCK__OCSP_OTHER_CERT:
        return "stapled OCSP response is for another certificate";
    case TLSOCK__OCSP_BAD_SIGNER:
        return "stapled OCSP response is not signed by the certificate's issuer or a responder it "
               "authorized";
    case TLSOCK__OCSP_NOT_YET_VALID:
        return "stapled OCSP response is not yet valid";
    case TLSOCK__OCSP_EXPIRED:
        return "stapled OCSP response has expired";
    case TLSOCK__OCSP_REVOKED:
        return "certificate revoked (stapled OCSP response)";
    case TLSOCK__OCSP_UNKNOWN:
        return "stapled OCSP response says the certificate status is unknown";
    default:
        return "stapled OCSP response refused";
    }
}

int tlsock__text_fail_chain_too_long(struct tlsock__err *err, size_t intermediates, int max,
                                     const char *subject)
{
    char reason[128];

    snprintf(reason, sizeof(reason),
             "certificate chain too long (%zu intermediate CAs, the verify depth allows %d)",
             intermediates, max);
    return tlsock__text_fail_verify(err, reason, TLSOCK__VERIFY_CODE_NONE, 0, subject);
}

int tlsock__text_fail_rejected(struct tlsock__err *err, const char *reason, const char *subject)
{
    char text[TLSOCK_VERIFY_REASON_SIZE + 64];

    snprintf(text, sizeof(text), "rejected by the verify callback: %s",
             reason[0] != '\0' ? reason : "no reason given");
    return tlsock__text_fail_verify(err, text, TLSOCK__VERIFY_CODE_NONE, 0, subject);
}

int tlsock__text_fail_no_client_cert(struct tlsock__err *err)
{
    return tlsock__fail(err, TLSOCK_EVERIFY, "the client sent no certificate");
}

void tlsock__text_verify_message(char *out, size_t size, int verify_mode, bool has_peer,
                                 const char *reason)
{
    if (verify_mode == TLSOCK_VERIFY_NONE) {
        snprintf(out, size, "not verified (disabled)");
    } else if (!has_peer) {
        snprintf(out, size, "no peer certificate");
    } else {
        snprintf(out, size, "%s", reason);
    }
}

int tlsock__text_fail_truncated(struct tlsock__err *err)
{
    /* tlsock_strerror(TLSOCK_ETRUNCATED) says "(truncated)": this says what happened. */
    return tlsock__fail(err, TLSOCK_ETRUNCATED,
                        "the peer closed the connection without close_notify, so the data may "
                        "be truncated");
}

int tlsock__text_fail_closed_in_handshake(struct tlsock__err *err)
{
    return tlsock__fail(err, TLSOCK_EPROTO, "peer sent close_notify during the handshake");
}

const char *tlsock__text_old_server_hint(int min_version, int max_version, bool refused)
{
    /*
     * A server that chose TLS 1.1 or older is old for sure. One that refused a client offering
     * both TLS 1.2 and 1.3 speaks neither: most likely it is older; a narrower offer may have
     * missed a newer server, so no hint then.
     */
    bool old = refused ? min_version == 0x0303 && max_version >= 0x0304 : min_version >= 0x0303;

    return old ? "; the server only speaks TLS 1.0/1.1: allow them with tlsock_ctx_set_protocols "
                 "and the legacy cipher policy"
               : "";
}

int tlsock__text_fail_alert(struct tlsock__err *err, int alert, const char *hint)
{
    return tlsock__fail(err, TLSOCK_EPROTO, "peer sent alert: %s (%d)%s", tlsock__alert_name(alert),
                        alert, hint != NULL ? hint : "");
}

int tlsock__text_fail_old_server(struct tlsock__err *err, int min_version, int max_version)
{
    return tlsock__fail(err, TLSOCK_EPROTO,
                        "the server chose an older protocol version than this client allows%s",
                        tlsock__text_old_server_hint(min_version, max_version, false));
}
