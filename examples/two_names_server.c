/*
 * A TLS echo server with two certificates, one per host name, chosen by the client's SNI: usage
 *
 *     two_names_server PORT CHAIN_A KEY_A CHAIN_B KEY_B [CLIENTS]
 *
 * A client asking for one of the DNS names of certificate A gets A, one asking for B's gets B, and
 * a client that sends no name or another one gets A, the first added (the default). An SNI
 * callback prints each name asked for on stderr and refuses names under ".invalid" (RFC 2606)
 * with an unrecognized_name alert. It prints "listening on port N" on stdout, then serves CLIENTS
 * clients (default: forever) one after the other, echoing, and exits 0. PORT 0 picks a free port.
 * For instance:
 *
 *     tlsock cert --out a --host a.example && tlsock cert --out b --host b.example
 *     ./two_names_server 8443 a/cert.pem a/key.pem b/cert.pem b/key.pem &
 *     openssl s_client -connect 127.0.0.1:8443 -servername b.example -CAfile b/ca.pem
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tlsock.h>

/* A tlsock_sni_fn: logs the name and lets tlsock choose by the certificates' names. */
static int on_sni(const char *servername, void *user)
{
    static const char refused[] = ".invalid";
    size_t n = servername != NULL ? strlen(servername) : 0;

    (void)user;
    fprintf(stderr, "client asks for %s\n", servername != NULL ? servername : "(no name)");
    if (n >= sizeof(refused) - 1 && strcmp(servername + n - (sizeof(refused) - 1), refused) == 0) {
        return TLSOCK_SNI_REFUSE;
    }
    return TLSOCK_SNI_AUTO;
}

/* Echoes until the client closes; 0 when it closed cleanly. */
static int serve_one(struct tlsock_listener *lis, const struct tlsock_opts *opts)
{
    struct tlsock_conn *conn = NULL;
    char buf[16384];
    size_t n = 0;
    int rc = tlsock_accept(lis, opts, &conn);

    if (rc != 0) {
        fprintf(stderr, "two_names_server: accept: %s (%s)\n", tlsock_strerror(rc),
                tlsock_listener_errmsg(lis));
        return rc;
    }
    rc = tlsock_handshake(conn);
    while (rc == 0) {
        rc = tlsock_read(conn, buf, sizeof(buf), &n);
        if (rc == 0) {
            rc = tlsock_write(conn, buf, n);
        }
    }
    if (rc != TLSOCK_ECLOSED) {
        fprintf(stderr, "two_names_server: %s (%s)\n", tlsock_strerror(rc),
                tlsock_conn_errmsg(conn));
    }
    tlsock_close(conn);
    return rc == TLSOCK_ECLOSED ? 0 : rc;
}

int main(int argc, char **argv)
{
    struct tlsock_ctx *ctx = NULL;
    struct tlsock_listener *lis = NULL;
    struct tlsock_opts opts = TLSOCK_OPTS_INIT;
    long clients = argc == 7 ? atol(argv[6]) : -1;
    int rc;

    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: %s PORT CHAIN_A KEY_A CHAIN_B KEY_B [CLIENTS]\n", argv[0]);
        return 2;
    }
    opts.handshake_timeout_ms = 10000;
    opts.timeout_ms = 60000;
    rc = tlsock_ctx_new(TLSOCK_SERVER, &ctx);
    /* The first certificate is the default; the second is added next to it. */
    if (rc == 0) {
        rc = tlsock_ctx_set_cert_file(ctx, argv[2], argv[3]);
    }
    if (rc == 0) {
        rc = tlsock_ctx_add_cert_file(ctx, argv[4], argv[5]);
    }
    if (rc == 0) {
        rc = tlsock_ctx_set_sni_callback(ctx, on_sni, NULL);
    }
    if (rc != 0) {
        fprintf(stderr, "two_names_server: %s (%s)\n", tlsock_strerror(rc),
                ctx != NULL ? tlsock_ctx_errmsg(ctx) : tlsock_errmsg());
        tlsock_ctx_free(ctx);
        return 1;
    }
    rc = tlsock_listen(ctx, NULL, (uint16_t)atoi(argv[1]), 0, &lis);
    if (rc != 0) {
        fprintf(stderr, "two_names_server: listen: %s (%s)\n", tlsock_strerror(rc),
                tlsock_errmsg());
    } else {
        printf("listening on port %u\n", tlsock_listener_port(lis));
        fflush(stdout);
    }
    /* A client that fails (a refused name, say) does not stop the server. */
    for (long i = 0; rc == 0 && (clients < 0 || i < clients); i++) {
        (void)serve_one(lis, &opts);
    }
    tlsock_listener_close(lis);
    tlsock_ctx_free(ctx);
    return rc == 0 ? 0 : 1;
}
