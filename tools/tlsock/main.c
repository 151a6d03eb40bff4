/*
 * tlsock: command-line front end of the tlsock library. Dispatches to one subcommand per file;
 * every subcommand has its own --help.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

struct subcommand {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static const struct subcommand subcommands[] = {
    {.name = "demo", .run = cli_cmd_demo, .summary = "run a verified and a rejected session"},
    {.name = "connect", .run = cli_cmd_connect, .summary = "connect to a TLS server (s_client)"},
#ifdef TLSOCK_CLI_WITH_UV
    {.name = "serve", .run = cli_cmd_serve, .summary = "run an echo or HTTP TLS server"},
    {.name = "tunnel", .run = cli_cmd_tunnel, .summary = "forward TCP, adding or removing TLS"},
#endif
    {.name = "cert", .run = cli_cmd_cert, .summary = "write a development CA, cert and key"},
    {.name = "version", .run = cli_cmd_version, .summary = "list TLS implementations"},
};

#define SUBCOMMAND_COUNT (sizeof(subcommands) / sizeof(subcommands[0]))

static void print_usage(FILE *out)
{
    size_t i = 0;

    fputs("Usage: tlsock COMMAND [OPTIONS]\n"
          "       tlsock COMMAND --help\n"
          "       tlsock --version\n\n"
          "TLS over TCP from the command line, built on the tlsock library.\n\n"
          "Commands:\n",
          out);
    for (i = 0; i < SUBCOMMAND_COUNT; i++) {
        fprintf(out, "  %-9s %s\n", subcommands[i].name, subcommands[i].summary);
    }
    fputs("\nExit status: 0 ok, 1 usage, 2 configuration, 3 verification failed, 4 timeout,\n"
          "5 network or system error, 6 TLS protocol error. See tlsock(1).\n",
          out);
}

int main(int argc, char **argv)
{
    int status = CLI_EXIT_USAGE;
    const struct subcommand *cmd = NULL;
    size_t i = 0;

    if (argc < 2) {
        print_usage(stderr);
        goto done;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        print_usage(stdout);
        status = CLI_EXIT_OK;
        goto done;
    }
    if (strcmp(argv[1], "--version") == 0) {
        status = cli_check_default_impl() == 0 ? CLI_EXIT_OK : CLI_EXIT_CONFIG;
        if (status == CLI_EXIT_OK) {
            printf("tlsock %s (%s)\n", TLSOCK_VERSION_STRING,
                   tlsock_impl_version(TLSOCK_IMPL_DEFAULT));
        } else {
            printf("tlsock %s\n", TLSOCK_VERSION_STRING);
        }
        goto done;
    }
    for (i = 0; i < SUBCOMMAND_COUNT; i++) {
        if (strcmp(argv[1], subcommands[i].name) == 0) {
            cmd = &subcommands[i];
        }
    }
    if (cmd == NULL) {
        status = cli_usage_error(NULL, "unknown command '%s'", argv[1]);
        goto done;
    }
    status = cmd->run(argc - 1, argv + 1);
done:
    return status;
}
