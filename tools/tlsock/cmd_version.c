/*
 * `tlsock version`: the tool's version and every TLS implementation with its library version,
 * capabilities and whether it is the default; a configuration error when there is no default.
 */
#include <string.h>

#include "cli.h"

static void print_caps(unsigned caps)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {
        {TLSOCK_CAP_ALPN, "alpn"},
        {TLSOCK_CAP_CERTGEN, "certgen"},
    };
    const char *sep = "";

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if ((caps & names[i].bit) != 0) {
            printf("%s%s", sep, names[i].name);
            sep = ",";
        }
    }
}

int cli_cmd_version(int argc, char **argv)
{
    static const int impls[] = {TLSOCK_IMPL_OPENSSL, TLSOCK_IMPL_GNUTLS};
    int status = CLI_EXIT_OK;

    if (argc > 1) {
        if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
            puts("Usage: tlsock version\n\n"
                 "Prints the tool's version, then one line per TLS implementation: its name,\n"
                 "its library version (or \"not compiled in\"), its capabilities, and which one\n"
                 "is the default (set with TLSOCK_IMPL=openssl|gnutls or --impl).");
        } else {
            status = cli_usage_error("version", "version takes no arguments");
        }
        goto done;
    }
    printf("tlsock %s\n", TLSOCK_VERSION_STRING);
    for (size_t i = 0; i < sizeof(impls) / sizeof(impls[0]); i++) {
        int impl = impls[i];
        printf("%-8s ", tlsock_impl_name(impl));
        if (!tlsock_impl_available(impl)) {
            printf("not compiled in\n");
            continue;
        }
        printf("%s; caps ", tlsock_impl_version(impl));
        print_caps(tlsock_impl_caps(impl));
        printf("%s\n", tlsock_default_impl() == impl ? " (default)" : "");
    }
    if (cli_check_default_impl() != 0) {
        status = CLI_EXIT_CONFIG;
    }
done:
    return status;
}
