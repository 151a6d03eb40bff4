/*
 * ts_need_certgen PROGRAM [ARG...]: runs PROGRAM (an example, an interop script) that makes its
 * certificates with tlsock_devcert_new() or `tlsock cert`; in a build that cannot generate
 * certificates it prints why and exits 77 instead, which CTest reports as skipped.
 */
#include <stdio.h>
#include <unistd.h>

#include "support.h"

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: ts_need_certgen PROGRAM [ARG...]\n");
        return 2;
    }
    const char *why = ts_certgen_missing();
    if (why != NULL) {
        ts_skip_executable(why);
    }
    execv(argv[1], argv + 1);
    perror(argv[1]);
    return 127;
}
