/*
 * Error codes and messages: the public table, the per-thread last message, tlsock__fail and the
 * objects' messages, allocated by their first failure.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

/* Detail of the last failure in this thread, for calls that fail before an object exists. */
static _Thread_local char last_errmsg[TLSOCK__ERRMSG_SIZE];

const char *tlsock_strerror(int err)
{
    switch (err) {
    case TLSOCK_OK:
        return "success";
#define TLSOCK_XX_TEXT(name, value, text)                                                          \
    case TLSOCK_##name:                                                                            \
        return text;
        TLSOCK_ERRNO_MAP(TLSOCK_XX_TEXT)
#undef TLSOCK_XX_TEXT
    default:
        return "unknown error";
    }
}

const char *tlsock_err_name(int err)
{
    switch (err) {
    case TLSOCK_OK:
        return "OK";
#define TLSOCK_XX_NAME(name, value, text)                                                          \
    case TLSOCK_##name:                                                                            \
        return #name;
        TLSOCK_ERRNO_MAP(TLSOCK_XX_NAME)
#undef TLSOCK_XX_NAME
    default:
        return "UNKNOWN";
    }
}

bool tlsock_err_is_tls(int err)
{
    switch (err) {
    case TLSOCK_ECLOSED:
    case TLSOCK_ETRUNCATED:
    case TLSOCK_EPROTO:
    case TLSOCK_EVERIFY:
    case TLSOCK_ECONFIG:
    case TLSOCK_EX509_LOOKUP:
        return true;
    default:
        return false;
    }
}

const char *tlsock_errmsg(void)
{
    return last_errmsg;
}

/* Copies the thread's last message into @p err, allocating its storage the first time. */
static void keep_message(struct tlsock__err *err)
{
    if (err->msg == NULL) {
        err->msg = malloc(TLSOCK__ERRMSG_SIZE);
    }
    err->lost = err->msg == NULL;
    if (err->msg != NULL) {
        memcpy(err->msg, last_errmsg, TLSOCK__ERRMSG_SIZE);
    }
}

int tlsock__fail(struct tlsock__err *err, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(last_errmsg, sizeof(last_errmsg), fmt, ap);
    va_end(ap);
    if (err != NULL) {
        keep_message(err);
    }
    return code;
}

const char *tlsock__err_msg(const struct tlsock__err *err)
{
    if (err->lost) {
        return "out of memory recording an error";
    }
    return err->msg != NULL ? err->msg : "";
}

bool tlsock__err_set(const struct tlsock__err *err)
{
    return err->lost || (err->msg != NULL && err->msg[0] != '\0');
}

void tlsock__publish(const struct tlsock__err *err)
{
    snprintf(last_errmsg, sizeof(last_errmsg), "%s", tlsock__err_msg(err));
}

void tlsock__err_clear(struct tlsock__err *err)
{
    if (err->msg != NULL) {
        err->msg[0] = '\0';
    }
    err->lost = false;
}

void tlsock__err_free(struct tlsock__err *err)
{
    free(err->msg);
    err->msg = NULL;
    err->lost = false;
}

const char *tlsock__alert_name(int description)
{
    /* RFC 8446 section 6 and RFC 5246 section 7.2; some TLS 1.3 names are unknown to OpenSSL 3.0.
     */
    static const struct {
        int description;
        const char *name;
    } alerts[] = {
        {0, "close_notify"},
        {10, "unexpected_message"},
        {20, "bad_record_mac"},
        {22, "record_overflow"},
        {40, "handshake_failure"},
        {42, "bad_certificate"},
        {43, "unsupported_certificate"},
        {44, "certificate_revoked"},
        {45, "certificate_expired"},
        {46, "certificate_unknown"},
        {47, "illegal_parameter"},
        {48, "unknown_ca"},
        {49, "access_denied"},
        {50, "decode_error"},
        {51, "decrypt_error"},
        {70, "protocol_version"},
        {71, "insufficient_security"},
        {80, "internal_error"},
        {86, "inappropriate_fallback"},
        {90, "user_canceled"},
        {100, "no_renegotiation"},
        {109, "missing_extension"},
        {110, "unsupported_extension"},
        {112, "unrecognized_name"},
        {113, "bad_certificate_status_response"},
        {115, "unknown_psk_identity"},
        {116, "certificate_required"},
        {120, "no_application_protocol"},
    };

    for (size_t i = 0; i < sizeof(alerts) / sizeof(alerts[0]); i++) {
        if (alerts[i].description == description) {
            return alerts[i].name;
        }
    }
    return "unknown alert";
}
