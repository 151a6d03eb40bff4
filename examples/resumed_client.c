/*
 * Keeps a TLS session in a file across runs: usage `resumed_client HOST PORT FILE [CA_FILE]`.
 * Offers the session saved in FILE (if any), fetches "/" over HTTPS, prints whether the handshake
 * resumed, then saves the connection's latest session in FILE for the next run. FILE holds the
 * session's secrets: it is created with mode 0600. Try it with `tlsock serve --http --ca-out
 * ca.pem` and CA_FILE ca.pem.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <tlsock.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct tlsock_ctx *ctx = NULL;
    struct tlsock_conn *conn = NULL;
    unsigned char saved[16384];
    unsigned char *session = NULL;
    char buf[4096];
    size_t n = 0;
    int rc;

    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s HOST PORT FILE [CA_FILE]\n", argv[0]);
        return 2;
    }
    rc = tlsock_ctx_new(TLSOCK_CLIENT, &ctx);
    if (rc == 0 && argc == 5) {
        rc = tlsock_ctx_set_ca_file(ctx, argv[4]);
    }
    /* A missing, foreign or stale session is never an error: the handshake is a full one. */
    FILE *in = rc == 0 ? fopen(argv[3], "rb") : NULL;
    if (in != NULL) {
        n = fread(saved, 1, sizeof(saved), in);
        fclose(in);
        if (tlsock_ctx_session_import(ctx, saved, n) != 0) {
            fprintf(stderr, "ignoring %s: %s\n", argv[3], tlsock_ctx_errmsg(ctx));
        }
    }
    if (rc == 0) {
        rc = tlsock_connect(ctx, argv[1], (uint16_t)atoi(argv[2]), NULL, &conn);
    }
    if (rc == 0) {
        fprintf(stderr, "resumed %s\n", tlsock_conn_resumed(conn) ? "yes" : "no");
    }
    if (rc == 0) {
        static const char get[] = "GET / HTTP/1.0\r\n\r\n";
        rc = tlsock_write(conn, get, sizeof(get) - 1);
    }
    /* The reply to stdout, up to the server's close_notify. */
    while (rc == 0) {
        rc = tlsock_read(conn, buf, sizeof(buf), &n);
        if (rc == 0) {
            fwrite(buf, 1, n, stdout);
        }
    }
    /* TLS 1.3 tickets come after the handshake: export once the reply was read. */
    if (rc == TLSOCK_ECLOSED && tlsock_conn_session_export(conn, &session, &n) == 0) {
        int fd = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || write(fd, session, n) != (ssize_t)n) {
            perror(argv[3]);
        }
        if (fd >= 0) {
            close(fd);
        }
        tlsock_free(session);
    }
    if (rc != TLSOCK_ECLOSED) {
        fprintf(stderr, "resumed_client: %s (%s)\n", tlsock_strerror(rc), tlsock_errmsg());
    }
    tlsock_close(conn);
    tlsock_ctx_free(ctx);
    return rc == TLSOCK_ECLOSED ? 0 : 1;
}
