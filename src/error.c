/*
 * Error codes and messages: the public table, the per-thread last message, and tlsock__fail.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

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
    case TLSOCK_EHANDSHAKE_TIMEOUT:
        return true;
    default:
        return false;
    }
}

const char *tlsock_errmsg(void)
{
    return last_errmsg;
}

int tlsock__fail(struct tlsock__err *err, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(last_errmsg, sizeof(last_errmsg), fmt, ap);
    va_end(ap);
    if (err != NULL) {
        memcpy(err->msg, last_errmsg, sizeof(err->msg));
    }
    return code;
}

void tlsock__publish(const struct tlsock__err *err)
{
    memcpy(last_errmsg, err->msg, sizeof(last_errmsg));
}
