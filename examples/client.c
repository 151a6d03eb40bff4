/* Fetches "/" over HTTPS and prints the response: usage `client HOST PORT`. */
#include <stdio.h>
#include <stdlib.h>
#include <tlsock.h>

int main(int argc, char **argv)
{
    struct tlsock_ctx *ctx = NULL;
    struct tlsock_conn *conn = NULL;
    char buf[4096];
    size_t n = 0;
    int rc;

    if (argc != 3) {
        fprintf(stderr, "usage: %s HOST PORT\n", argv[0]);
        return 2;
    }
    rc = tlsock_ctx_new(TLSOCK_CLIENT, &ctx);
    if (rc == 0) {
        /* Verifies the certificate chain against the system store and that it names HOST. */
        rc = tlsock_connect(ctx, argv[1], (uint16_t)atoi(argv[2]), NULL, &conn);
    }
    if (rc == 0) {
        int len = snprintf(buf, sizeof(buf), "GET / HTTP/1.0\r\nHost: %.255s\r\n\r\n", argv[1]);
        rc = tlsock_write(conn, buf, (size_t)len);
    }
    while (rc == 0) {
        rc = tlsock_read(conn, buf, sizeof(buf), &n);
        if (rc == 0) {
            fwrite(buf, 1, n, stdout);
        }
    }
    /* The server's close_notify is the only clean end: a bare EOF could be a truncation. */
    if (rc != TLSOCK_ECLOSED) {
        fprintf(stderr, "client: %s (%s)\n", tlsock_strerror(rc), tlsock_errmsg());
    }
    tlsock_close(conn);
    tlsock_ctx_free(ctx);
    return rc == TLSOCK_ECLOSED ? 0 : 1;
}
