/*
 * `tlsock cert`: writes a throw-away CA, a server certificate it signs and the server's key to a
 * directory, so that other tools (openssl, curl, browsers) can be pointed at them; or, with
 * --ticket-keys, a new session ticket key file for serve and tunnel.
 */
#include <getopt.h>
#include <string.h>

#include "cli.h"

static void print_help(void)
{
    fputs("Usage: tlsock cert --out DIR --host NAME[,NAME|IP...] [--encrypt PASS-OPTION]\n"
          "       tlsock cert --ticket-keys FILE [--period SECONDS]\n\n"
          "Makes a development certificate authority and a server certificate it signs\n"
          "(ECDSA P-256, valid for 30 days) naming every NAME or IP address, and writes\n"
          "DIR/ca.pem, DIR/cert.pem and DIR/key.pem (mode 0600). DIR is created if missing.\n"
          "The CA's private key is discarded: nothing else can be signed with it.\n"
          "With --encrypt, DIR/key.pem is encrypted PKCS#8 (AES-256-CBC) under the passphrase\n"
          "of --key-pass-file or --key-pass-env, which serve and tunnel then take to load it.\n\n"
          "With --ticket-keys, writes a new session ticket key file instead (a random secret\n"
          "and a rotation period; mode 0600, replacing FILE in one rename) for serve and\n"
          "tunnel --ticket-keys: servers sharing it resume each other's sessions. Tickets\n"
          "issued under the old file stop resuming once the servers reload (SIGHUP).\n\n"
          "Options:\n"
          "  -o, --out DIR            directory to write to\n"
          "  -H, --host LIST          comma-separated DNS names and IP addresses\n"
          "      --encrypt            encrypt the key (needs a passphrase option)\n"
          "      --key-pass-file FILE the passphrase: FILE's first line\n"
          "      --key-pass-env VAR   the passphrase: the variable VAR\n"
          "      --ticket-keys FILE   write a session ticket key file\n"
          "      --period SECONDS     its key rotation period, 1 to 604800 (default 7200)\n"
          "  -h, --help               show this help\n",
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

/* --encrypt: replaces *@p key with its encrypted form under the passphrase of @p pass_opts. */
static int encrypt_key(const struct cli_ctx_options *pass_opts, char **key)
{
    char pass[CLI_PASS_SIZE];
    char *encrypted = NULL;
    int err = cli_read_passphrase(pass_opts, pass);

    if (err != 0) {
        goto wipe;
    }
    err = tlsock_key_encrypt(*key, strlen(*key), pass, &encrypted);
    if (err != 0) {
        cli_error("cannot encrypt the key", err, tlsock_errmsg());
        goto wipe;
    }
    explicit_bzero(*key, strlen(*key));
    tlsock_free(*key);
    *key = encrypted;
wipe:
    explicit_bzero(pass, sizeof(pass));
    return err;
}

static int write_certs(const char *dir, const char *hosts, const struct cli_ctx_options *pass_opts)
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
    if (pass_opts != NULL) {
        err = encrypt_key(pass_opts, &key);
        if (err != 0) {
            status = cli_setup_exit_code(err);
            goto free_pems;
        }
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
    if (key != NULL) {
        explicit_bzero(key, strlen(key));
    }
    tlsock_free(key);
    tlsock_free(cert);
    tlsock_free(ca);
done:
    return status;
}

/* --ticket-keys: a new key file at @p path rotating every @p period seconds (0: default). */
static int write_ticket_keys(const char *path, int period)
{
    int err = tlsock_ticket_keys_write(path, (unsigned)period);

    if (err != 0) {
        cli_error("cannot write the ticket key file", err, tlsock_errmsg());
        return err == TLSOCK_ECONFIG ? CLI_EXIT_NETWORK : cli_exit_code(err);
    }
    printf("wrote %s\n", path);
    return CLI_EXIT_OK;
}

enum {
    OPT_ENCRYPT = CLI_OPT_SHARED_END,
    OPT_TICKET_KEYS,
    OPT_PERIOD,
};

int cli_cmd_cert(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"out", required_argument, NULL, 'o'},
        {"host", required_argument, NULL, 'H'},
        {"encrypt", no_argument, NULL, OPT_ENCRYPT},
        {"key-pass-file", required_argument, NULL, CLI_OPT_KEY_PASS_FILE},
        {"key-pass-env", required_argument, NULL, CLI_OPT_KEY_PASS_ENV},
        {"ticket-keys", required_argument, NULL, OPT_TICKET_KEYS},
        {"period", required_argument, NULL, OPT_PERIOD},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int status = CLI_EXIT_OK;
    const char *dir = NULL;
    const char *hosts = NULL;
    struct cli_ctx_options pass_opts = {0};
    const char *ticket_keys = NULL;
    int period = 0;
    bool encrypt = false;
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
        case OPT_ENCRYPT:
            encrypt = true;
            break;
        case CLI_OPT_KEY_PASS_FILE:
            pass_opts.key_pass_file = optarg;
            break;
        case CLI_OPT_KEY_PASS_ENV:
            pass_opts.key_pass_env = optarg;
            break;
        case OPT_TICKET_KEYS:
            ticket_keys = optarg;
            break;
        case OPT_PERIOD:
            if (!cli_parse_int(optarg, 1, 7 * 86400, &period)) {
                status =
                    cli_usage_error("cert", "--period wants 1 to 604800 seconds, not '%s'", optarg);
                goto done;
            }
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
    if (ticket_keys != NULL) {
        status = dir != NULL || hosts != NULL || encrypt
                     ? cli_usage_error("cert", "--ticket-keys excludes --out, --host and --encrypt")
                     : write_ticket_keys(ticket_keys, period);
        goto done;
    }
    if (period != 0) {
        status = cli_usage_error("cert", "--period needs --ticket-keys");
        goto done;
    }
    if (dir == NULL || hosts == NULL) {
        status = cli_usage_error("cert", "--out and --host are required");
        goto done;
    }
    if (pass_opts.key_pass_file != NULL && pass_opts.key_pass_env != NULL) {
        status = cli_usage_error("cert", "--key-pass-file and --key-pass-env exclude each other");
        goto done;
    }
    if (encrypt != (pass_opts.key_pass_file != NULL || pass_opts.key_pass_env != NULL)) {
        status = cli_usage_error("cert", encrypt ? "--encrypt needs --key-pass-file or "
                                                   "--key-pass-env"
                                                 : "--key-pass-file and --key-pass-env need "
                                                   "--encrypt");
        goto done;
    }
    status = write_certs(dir, hosts, encrypt ? &pass_opts : NULL);
done:
    return status;
}
