/*
 * A TLS echo server whose private key is encrypted: usage
 *
 *     encrypted_key_server PORT CHAIN KEY PASSFILE      (PEM or DER, the key encrypted or not)
 *     encrypted_key_server PORT BUNDLE.p12 PASSFILE     (a PKCS#12 bundle)
 *
 * The passphrase is the first line of PASSFILE, read by a callback only if the key or bundle is
 * protected (so an unencrypted key never opens the file), and never asked for on the terminal.
 * It prints "listening on port N" on stdout, then echoes for one client and exits 0. PORT 0 picks
 * a free port. For instance, with a key encrypted by the openssl tool:
 *
 *     openssl pkcs8 -topk8 -v2 aes-256-cbc -in key.pem -out key.enc.pem   # asks for a passphrase
 *     ./encrypted_key_server 8443 cert.pem key.enc.pem pass.txt &
 *     tlsock connect --ca ca.pem localhost:8443
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tlsock.h>

/* Reads the first line of the file named by @p user into @p buf: a tlsock_passphrase_fn. */
static int read_passphrase(char *buf, size_t size, size_t *len, void *user)
{
    const char *path = user;
    char line[TLSOCK_PASSPHRASE_MAX + 2];
    FILE *f = fopen(path, "r");
    int rc = -1;

    if (f == NULL) {
        perror(path);
        return -1;
    }
    if (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        *len = strlen(line);
        if (*len <= size) {
            memcpy(buf, line, *len);
            rc = 0;
        }
    }
    /* Wipe our copy (volatile: the compiler may not skip it); tlsock wipes its own buffer. */
    for (volatile char *p = line; p < line + sizeof(line); p++) {
        *p = '\0';
    }
    fclose(f);
    return rc;
}

static bool is_pkcs12(const char *path)
{
    size_t n = strlen(path);

    return (n > 4 && strcmp(path + n - 4, ".p12") == 0) ||
           (n > 4 && strcmp(path + n - 4, ".pfx") == 0);
}

int main(int argc, char **argv)
{
    struct tlsock_ctx *ctx = NULL;
    struct tlsock_listener *lis = NULL;
    struct tlsock_conn *conn = NULL;
    struct tlsock_opts opts = TLSOCK_OPTS_INIT;
    bool bundle = argc == 4 && is_pkcs12(argv[2]);
    char buf[16384];
    size_t n = 0;
    int rc;

    if (argc != 5 && !bundle) {
        fprintf(stderr, "usage: %s PORT CHAIN KEY PASSFILE\n       %s PORT BUNDLE.p12 PASSFILE\n",
                argv[0], argv[0]);
        return 2;
    }
    opts.handshake_timeout_ms = 10000;
    opts.timeout_ms = 60000;
    rc = tlsock_ctx_new(TLSOCK_SERVER, &ctx);
    /* Set before the key: the setters that load it call the callback, on this thread. */
    if (rc == 0) {
        rc = tlsock_ctx_set_key_passphrase_cb(ctx, read_passphrase, argv[argc - 1]);
    }
    if (rc == 0) {
        rc = bundle ? tlsock_ctx_set_pkcs12_file(ctx, argv[2])
                    : tlsock_ctx_set_cert_file(ctx, argv[2], argv[3]);
    }
    if (rc != 0) {
        /* ECONFIG names the file: a wrong passphrase, a key that does not match... */
        fprintf(stderr, "encrypted_key_server: %s (%s)\n", tlsock_strerror(rc),
                ctx != NULL ? tlsock_ctx_errmsg(ctx) : tlsock_errmsg());
        tlsock_ctx_free(ctx);
        return 1;
    }
    rc = tlsock_listen(ctx, NULL, (uint16_t)atoi(argv[1]), 0, &lis);
    if (rc == 0) {
        printf("listening on port %u\n", tlsock_listener_port(lis));
        fflush(stdout);
        rc = tlsock_accept(lis, &opts, &conn);
    }
    if (rc == 0) {
        rc = tlsock_handshake(conn);
    }
    while (rc == 0) {
        rc = tlsock_read(conn, buf, sizeof(buf), &n);
        if (rc == 0) {
            rc = tlsock_write(conn, buf, n);
        }
    }
    if (rc != TLSOCK_ECLOSED) {
        fprintf(stderr, "encrypted_key_server: %s (%s)\n", tlsock_strerror(rc),
                conn != NULL  ? tlsock_conn_errmsg(conn)
                : lis != NULL ? tlsock_listener_errmsg(lis)
                              : tlsock_errmsg());
    }
    tlsock_close(conn);
    tlsock_listener_close(lis);
    tlsock_ctx_free(ctx);
    return rc == TLSOCK_ECLOSED ? 0 : 1;
}
