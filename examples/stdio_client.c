/*
 * A TLS connection as a stdio stream: fprintf the request, fgets the response line by line.
 * Usage: stdio_client HOST PORT [CA_FILE]   (CA_FILE: trust it instead of the system store)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tlsock.h>

int main(int argc, char **argv)
{
    struct tlsock_ctx *ctx = NULL;
    struct tlsock_conn *conn = NULL;
    FILE *stream = NULL;
    char line[1024];
    int rc;

    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s HOST PORT [CA_FILE]\n", argv[0]);
        return 2;
    }
    rc = tlsock_ctx_new(TLSOCK_CLIENT, &ctx);
    if (rc == 0 && argc == 4) {
        rc = tlsock_ctx_set_ca_file(ctx, argv[3]);
    }
    if (rc == 0) {
        rc = tlsock_connect(ctx, argv[1], (uint16_t)atoi(argv[2]), NULL, &conn);
    }
    if (rc == 0) {
        rc = tlsock_fopen(conn, "r+", &stream); /* the stream now owns the connection */
    }
    if (rc != 0) {
        fprintf(stderr, "stdio_client: %s (%s)\n", tlsock_strerror(rc), tlsock_errmsg());
        tlsock_close(conn);
        tlsock_ctx_free(ctx);
        return 1;
    }
    fprintf(stream, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", argv[1]);
    fflush(stream);
    while (fgets(line, sizeof(line), stream) != NULL) {
        fputs(line, stdout);
    }
    /* EOF is the server's close_notify; an error (e.g. truncation) sets ferror. */
    rc = ferror(stream) ? 1 : 0;
    if (rc != 0) {
        fprintf(stderr, "stdio_client: %s\n", tlsock_conn_errmsg(conn));
    }
    fclose(stream); /* sends close_notify and closes the connection */
    tlsock_ctx_free(ctx);
    return rc;
}
