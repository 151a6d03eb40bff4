/*
 * Words and formats both TLS implementations produce; see text.h.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <strings.h>
#include <string.h>
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

/* Room kept at the end of a list for ",...", which says that entries were left out. */
#define SAN_MORE ",..."

static void san_add(struct tlsock__san_text *t, const char *kind, const char *value, int len)
{
    if (t->full) {
        return;
    }
    size_t room = t->size - t->used;
    int n = snprintf(t->out + t->used, room, "%s%s:%.*s", t->used > 0 ? "," : "", kind, len, value);
    if (n < 0 || (size_t)n + sizeof(SAN_MORE) > room) {
        /* The entry leaves no room for the mark: it is dropped and the mark says so. */
        t->out[t->used] = '\0';
        if (room >= sizeof(SAN_MORE)) {
            memcpy(t->out + t->used, SAN_MORE, sizeof(SAN_MORE));
        }
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

int tlsock__text_fail_verify_at(struct tlsock__err *err, const char *reason, int depth,
                                const char *subject)
{
    /* The certificate that failed: its place in the chain (0: the peer's own) and its name. */
    if (subject == NULL || subject[0] == '\0') {
        return tlsock__fail(err, TLSOCK_EVERIFY, "%s (depth %d)", reason, depth);
    }
    return tlsock__fail(err, TLSOCK_EVERIFY, "%s (depth %d: %s)", reason, depth, subject);
}

int tlsock__text_fail_verify(struct tlsock__err *err, const char *reason, int code_kind,
                             unsigned long code, const char *subject)
{
    /* The implementation's code is in tlsock_info.verify_result: the words are the same. */
    (void)code_kind;
    (void)code;
    return tlsock__text_fail_verify_at(err, reason, 0, subject);
}

const char *tlsock__text_no_san_reason(bool ip)
{
    return ip ? "IP address mismatch: the certificate has no subjectAltName, and its CN is never "
                "used as an address"
              : "hostname mismatch: the certificate has no subjectAltName, and its CN is never "
                "used as a host name";
}

void tlsock__text_name_mismatch(char *out, size_t size, bool ip, const char *expected,
                                const char *sans)
{
    if (sans == NULL || sans[0] == '\0') {
        snprintf(out, size, "%s", tlsock__text_no_san_reason(ip));
        return;
    }
    snprintf(out, size, "%s: expected %s, the certificate names %s",
             ip ? "IP address mismatch" : "hostname mismatch", expected, sans);
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

void tlsock__text_serial(const unsigned char *bytes, size_t len, char *out, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t used = 0;

    /* DER may carry a leading zero byte to keep the INTEGER positive: it is not a digit. */
    while (len > 1 && bytes[0] == 0) {
        bytes++;
        len--;
    }
    for (size_t i = 0; i < len && used + 3 <= size; i++) {
        out[used++] = hex[bytes[i] >> 4];
        out[used++] = hex[bytes[i] & 0x0f];
    }
    out[used < size ? used : size - 1] = '\0';
}

int tlsock__text_hex_value(char ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }
    if (ch >= 'A' && ch <= 'F') {
        return ch - 'A' + 10;
    }
    return -1;
}

void tlsock__text_group(const char *name, char *out, size_t size)
{
    /* OpenSSL's curve names for the IANA ones (RFC 8422 appendix A). */
    static const struct {
        const char *alias;
        const char *iana;
    } aliases[] = {{"prime256v1", "secp256r1"},
                   {"P-256", "secp256r1"},
                   {"P-384", "secp384r1"},
                   {"P-521", "secp521r1"}};
    size_t i = 0;

    for (size_t a = 0; a < sizeof(aliases) / sizeof(aliases[0]); a++) {
        if (strcasecmp(name, aliases[a].alias) == 0) {
            name = aliases[a].iana;
        }
    }
    for (; name[i] != '\0' && i + 1 < size; i++) {
        out[i] = (char)tolower((unsigned char)name[i]);
    }
    out[i] = '\0';
}

void tlsock__text_sigalg(int kind, int hash_bits, char *out, size_t size)
{
    static const char *const curves[] = {"secp256r1", "secp384r1", "secp521r1"};

    switch (kind) {
    case TLSOCK__SIG_RSA_PKCS1:
        snprintf(out, size, "rsa_pkcs1_sha%d", hash_bits == 160 ? 1 : hash_bits);
        break;
    case TLSOCK__SIG_RSA_PSS_RSAE:
        snprintf(out, size, "rsa_pss_rsae_sha%d", hash_bits);
        break;
    case TLSOCK__SIG_RSA_PSS_PSS:
        snprintf(out, size, "rsa_pss_pss_sha%d", hash_bits);
        break;
    case TLSOCK__SIG_ECDSA:
        /* RFC 8446 4.2.3 names the curve with the hash; TLS 1.2's code points are the same. */
        if (hash_bits == 160) {
            snprintf(out, size, "ecdsa_sha1");
        } else {
            int c = hash_bits == 256 ? 0 : hash_bits == 384 ? 1 : 2;
            snprintf(out, size, "ecdsa_%s_sha%d", curves[c], hash_bits);
        }
        break;
    case TLSOCK__SIG_ED25519:
        snprintf(out, size, "ed25519");
        break;
    case TLSOCK__SIG_ED448:
        snprintf(out, size, "ed448");
        break;
    default:
        snprintf(out, size, "%s", "");
        break;
    }
}
