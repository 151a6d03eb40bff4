/*
 * `tlsock cert`: writes a throw-away CA, a server certificate it signs and the server's key to a
 * directory, so that other tools (openssl, curl, browsers) can be pointed at them.
 */
#include <getopt.h>
#include <string.h>

#include "cli.h"

static void print_help(void)
{
    fputs("Usage: tlsock cert --out DIR --host NAME[,NAME|IP...]\n\n"
          "Makes a development certificate authority and a server certificate it signs\n"
          "(ECDSA P-256, valid for 30 days) naming every NAME or IP address, and writes\n"
          "DIR/ca.pem, DIR/cert.pem and DIR/key.pem (mode 0600). DIR is created if missing.\n"
          "The CA's private key is discarded: nothing else can be signed with it.\n\n"
          "Options:\n"
          "  -o, --out DIR      directory to write to\n"
          "  -H, --host LIST    comma-separated DNS names and IP addresses\n"
          "  -h, --help         show this help\n",
          stdout);
}

static bool write_pem(const char *dir, const char *name, const char *content, unsigned mode)
{
    bool ok = false;
    char path[CLI_PATH_SIZE];
    int n = snprintf(path, sizeof(path), "%s/%s", dir, name);

    if (n < 0 || (size_t)n >= sizeof(path)) {
        cli_errorf("%s/%s: path too long", dir, name);
        goto done;
    }
    ok = cli_write_file(path, content, mode);
    if (ok) {
        printf("wrote %s\n", path);
    }
done:
    return ok;
}

static int write_certs(const char *dir, const char *hosts)
{
    int status = CLI_EXIT_OK;
    char *ca = NULL;
    char *cert = NULL;
    char *key = NULL;
    char fp[TLSOCK_FINGERPRINT_SIZE];
    int err = tlsock_devcert_new(hosts, &ca, &cert, &key);

    if (err != 0) {
        cli_error("cannot make certificates", err, tlsock_errmsg());
        status = cli_exit_code(err);
        goto done;
    }
    /* The key last, and alone in being private. */
    if (!cli_make_dirs(dir) || !write_pem(dir, "ca.pem", ca, 0644) ||
        !write_pem(dir, "cert.pem", cert, 0644) || !write_pem(dir, "key.pem", key, 0600)) {
        status = CLI_EXIT_NETWORK;
        goto free_pems;
    }
    printf("hosts %s\n", hosts);
    err = tlsock_cert_fingerprint(cert, strlen(cert), fp);
    if (err == 0) {
        printf("fingerprint SHA256 %s\n", fp);
    }
free_pems:
    tlsock_free(key);
    tlsock_free(cert);
    tlsock_free(ca);
done:
    return status;
}

int cli_cmd_cert(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"out", required_argument, NULL, 'o'},
        {"host", required_argument, NULL, 'H'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int status = CLI_EXIT_OK;
    const char *dir = NULL;
    const char *hosts = NULL;
    int opt = 0;
    bool parsing = true;

    while (parsing) {
        opt = getopt_long(argc, argv, ":o:H:h", longopts, NULL);
        switch (opt) {
        case -1:
            parsing = false;
            break;
        case 'o':
            dir = optarg;
            break;
        case 'H':
            hosts = optarg;
            break;
        case 'h':
            print_help();
            goto done;
        default:
            status = cli_bad_option("cert", opt, argv);
            goto done;
        }
    }
    if (optind < argc) {
        status = cli_usage_error("cert", "unexpected argument '%s'", argv[optind]);
        goto done;
    }
    if (dir == NULL || hosts == NULL) {
        status = cli_usage_error("cert", "--out and --host are required");
        goto done;
    }
    status = write_certs(dir, hosts);
done:
    return status;
}
