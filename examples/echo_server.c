/*
 * A TLS echo server, one client at a time: usage `echo_server PORT [CHAIN.pem KEY.pem]`.
 * Without a certificate it makes a development one for localhost and prints the CA that signed
 * it on stdout, so that a client can trust it:
 *
 *     ./echo_server 8443 > ca.pem &
 *     tlsock connect --ca ca.pem localhost 8443
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tlsock.h>

/* Loads CHAIN and KEY, or makes a development certificate and prints its CA. */
static int load_identity(struct tlsock_ctx *ctx, int argc, char **argv)
{
    char *ca = NULL;
    char *cert = NULL;
    char *key = NULL;
    int rc;

    if (argc == 4) {
        rc = tlsock_ctx_set_cert_file(ctx, argv[2], argv[3]);
    } else {
        rc = tlsock_devcert_new("localhost,127.0.0.1,::1", &ca, &cert, &key);
        if (rc == 0) {
            rc = tlsock_ctx_set_cert_mem(ctx, cert, strlen(cert), key, strlen(key));
        }
        if (rc == 0) {
            fputs(ca, stdout);
            fflush(stdout);
        }
    }
    tlsock_free(ca);
    tlsock_free(cert);
    tlsock_free(key);
    return rc;
}

/* Echoes until the client closes; every error ends only this client's session. */
static void serve(struct tlsock_conn *conn)
{
    char buf[16384];
    size_t n = 0;
    int rc = tlsock_handshake(conn);

    while (rc == 0) {
        rc = tlsock_read(conn, buf, sizeof(buf), &n);
        if (rc == 0) {
            rc = tlsock_write(conn, buf, n);
        }
    }
    if (rc != TLSOCK_ECLOSED) {
        fprintf(stderr, "echo_server: client: %s (%s)\n", tlsock_strerror(rc),
                tlsock_conn_errmsg(conn));
    }
    tlsock_close(conn);
}

int main(int argc, char **argv)
{
    struct tlsock_ctx *ctx = NULL;
    struct tlsock_listener *lis = NULL;
    /* A silent or stalled client must not hold the (only) serving thread forever. */
    struct tlsock_opts opts = TLSOCK_OPTS_INIT;
    int rc;

    if (argc != 2 && argc != 4) {
        fprintf(stderr, "usage: %s PORT [CHAIN.pem KEY.pem]\n", argv[0]);
        return 2;
    }
    opts.handshake_timeout_ms = 10000;
    opts.timeout_ms = 60000;
    rc = tlsock_ctx_new(TLSOCK_SERVER, &ctx);
    if (rc == 0) {
        rc = load_identity(ctx, argc, argv);
    }
    if (rc == 0) {
        rc = tlsock_listen(ctx, NULL, (uint16_t)atoi(argv[1]), 0, &lis);
    }
    if (rc == 0) {
        fprintf(stderr, "echo_server: listening on port %u\n", tlsock_listener_port(lis));
    }
    while (rc == 0) {
        struct tlsock_conn *conn = NULL;

        rc = tlsock_accept(lis, &opts, &conn);
        if (rc == 0) {
            serve(conn);
        }
    }
    fprintf(stderr, "echo_server: %s (%s)\n", tlsock_strerror(rc),
            ctx != NULL ? tlsock_ctx_errmsg(ctx) : tlsock_errmsg());
    tlsock_listener_close(lis);
    tlsock_ctx_free(ctx);
    return 1;
}
