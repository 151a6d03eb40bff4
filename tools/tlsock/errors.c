/*
 * Exit statuses and error messages: the one place that decides how a tlsock error code is
 * reported to the shell, so every subcommand agrees with the man page.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cli_exit_code(int err)
{
    int status = CLI_EXIT_TLS;

    switch (err) {
    case TLSOCK_OK:
        status = CLI_EXIT_OK;
        break;
    case TLSOCK_EINVAL:
    case TLSOCK_ECONFIG:
    case TLSOCK_EX509_LOOKUP:
        status = CLI_EXIT_CONFIG;
        break;
    case TLSOCK_EVERIFY:
        status = CLI_EXIT_VERIFY;
        break;
    case TLSOCK_ETIMEDOUT:
    case TLSOCK_EHANDSHAKE_TIMEOUT:
        status = CLI_EXIT_TIMEOUT;
        break;
    case TLSOCK_ESYS:
    case TLSOCK_ERESOLVE:
    case TLSOCK_ETRUNCATED:
    case TLSOCK_ENOMEM:
    case TLSOCK_ECANCELED:
        status = CLI_EXIT_NETWORK;
        break;
    default:
        /* EPROTO, ECLOSED at the wrong time, and any code added to the table later. */
        status = CLI_EXIT_TLS;
        break;
    }
    return status;
}

int cli_setup_exit_code(int err)
{
    int status = CLI_EXIT_CONFIG;

    /* Only running out of memory is not the configuration's fault. */
    if (err == TLSOCK_ENOMEM) {
        status = cli_exit_code(err);
    }
    return status;
}

/*
 * Where the library's message tells a program which call would help, the user of this tool is
 * told the flags instead (connect and tunnel take both).
 */
static const struct {
    const char *api;
    const char *flags;
} api_hints[] = {
    {"tlsock_ctx_set_protocols and the legacy cipher policy", "--tls 1.0 --ciphers legacy"},
    {"tlsock_ctx_set_key_passphrase", "--key-pass-file or --key-pass-env"},
};

void cli_error(const char *what, int err, const char *detail)
{
    if (detail == NULL || detail[0] == '\0') {
        fprintf(stderr, "tlsock: %s: %s\n", what, tlsock_strerror(err));
        return;
    }
    for (size_t i = 0; i < sizeof(api_hints) / sizeof(api_hints[0]); i++) {
        const char *at = strstr(detail, api_hints[i].api);
        if (at != NULL) {
            fprintf(stderr, "tlsock: %s: %s: %.*s%s%s\n", what, tlsock_strerror(err),
                    (int)(at - detail), detail, api_hints[i].flags, at + strlen(api_hints[i].api));
            return;
        }
    }
    fprintf(stderr, "tlsock: %s: %s: %s\n", what, tlsock_strerror(err), detail);
}

void cli_errorf(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("tlsock: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("tlsock: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (cmd != NULL) {
        fprintf(stderr, "Try 'tlsock %s --help'.\n", cmd);
    } else {
        fputs("Try 'tlsock --help'.\n", stderr);
    }
    return CLI_EXIT_USAGE;
}
