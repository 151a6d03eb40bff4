/*
 * Sans-I/O memory mode, both ends in one process: the program itself carries the ciphertext
 * between a client and a server connection, as an event loop would carry it between sockets.
 * At the end both sides detach, and plaintext that followed the close_notify is handed back.
 *
 * Usage: memory_mode   (prints the conversation; exits 0 on success)
 */
#include <stdio.h>
#include <string.h>
#include <tlsock.h>

/* Moves whatever ciphertext @p from has produced into @p to. */
static int carry(struct tlsock_conn *from, struct tlsock_conn *to)
{
    char wire[16384];
    size_t n = 0;
    int rc = 0;

    while (rc == 0 && tlsock_conn_pending_output(from) > 0) {
        rc = tlsock_drain(from, wire, sizeof(wire), &n);
        if (rc == 0) {
            rc = tlsock_feed(to, wire, n);
        }
    }
    return rc;
}

/* Runs both handshakes, carrying bytes both ways, until both are done. */
static int handshake_both(struct tlsock_conn *client, struct tlsock_conn *server)
{
    int crc = TLSOCK_EWANT_READ;
    int src = TLSOCK_EWANT_READ;

    for (int round = 0; round < 10 && (crc != 0 || src != 0); round++) {
        crc = tlsock_handshake(client);
        if (carry(client, server) != 0) {
            return TLSOCK_ENOMEM;
        }
        src = tlsock_handshake(server);
        if (carry(server, client) != 0) {
            return TLSOCK_ENOMEM;
        }
        if ((crc != 0 && crc != TLSOCK_EWANT_READ) || (src != 0 && src != TLSOCK_EWANT_READ)) {
            return crc != 0 && crc != TLSOCK_EWANT_READ ? crc : src;
        }
    }
    return crc != 0 ? crc : src;
}

/* Sends @p text from @p from, carries it, and reads it on @p to. */
static int say(struct tlsock_conn *from, struct tlsock_conn *to, const char *who, const char *text)
{
    char got[256];
    size_t n = 0;
    int rc = tlsock_write(from, text, strlen(text));

    if (rc == 0) {
        rc = carry(from, to);
    }
    if (rc == 0) {
        rc = tlsock_read(to, got, sizeof(got), &n);
    }
    if (rc == 0) {
        printf("%s says over TLS: %.*s\n", who, (int)n, got);
    }
    return rc;
}

int main(void)
{
    struct tlsock_ctx *sctx = NULL;
    struct tlsock_ctx *cctx = NULL;
    struct tlsock_conn *client = NULL;
    struct tlsock_conn *server = NULL;
    struct tlsock_opts opts = TLSOCK_OPTS_INIT;
    char *ca = NULL;
    char *cert = NULL;
    char *key = NULL;
    char leftover[64];
    size_t left = 0;
    int fd = -1;
    int rc = tlsock_devcert_new("localhost", &ca, &cert, &key);

    if (rc == 0) {
        rc = tlsock_ctx_new(TLSOCK_SERVER, &sctx);
    }
    if (rc == 0) {
        rc = tlsock_ctx_set_cert_mem(sctx, cert, strlen(cert), key, strlen(key));
    }
    if (rc == 0) {
        rc = tlsock_ctx_new(TLSOCK_CLIENT, &cctx);
    }
    if (rc == 0) {
        rc = tlsock_ctx_set_ca_mem(cctx, ca, strlen(ca));
    }
    opts.servername = "localhost"; /* no host to connect to: name the server explicitly */
    if (rc == 0) {
        rc = tlsock_attach_mem(cctx, &opts, &client);
    }
    if (rc == 0) {
        rc = tlsock_attach_mem(sctx, NULL, &server);
    }
    if (rc == 0) {
        rc = handshake_both(client, server);
    }
    if (rc == 0) {
        rc = say(client, server, "client", "hello, server");
    }
    if (rc == 0) {
        rc = say(server, client, "server", "hello, client");
    }
    /* Back to plaintext: the client detaches first (it sends close_notify, then waits). */
    if (rc == 0) {
        rc = tlsock_detach(client, &fd, leftover, sizeof(leftover), &left);
        rc = rc == TLSOCK_EWANT_READ ? carry(client, server) : rc;
    }
    if (rc == 0) {
        rc = tlsock_detach(server, &fd, leftover, sizeof(leftover), &left);
        rc = rc == TLSOCK_EWANT_WRITE ? carry(server, client) : rc;
    }
    if (rc == 0) {
        /* The server's close_notify is carried; it was followed at once by plaintext. */
        rc = tlsock_detach(server, &fd, leftover, sizeof(leftover), &left);
        server = NULL;
    }
    if (rc == 0) {
        rc = tlsock_feed(client, "PLAIN AGAIN", 11);
    }
    if (rc == 0) {
        rc = tlsock_detach(client, &fd, leftover, sizeof(leftover), &left);
        client = NULL;
    }
    if (rc == 0) {
        printf("after detach, in plaintext: %.*s\n", (int)left, leftover);
    } else {
        fprintf(stderr, "memory_mode: %s: %s\n", tlsock_strerror(rc), tlsock_errmsg());
    }
    tlsock_close(client);
    tlsock_close(server);
    tlsock_ctx_free(cctx);
    tlsock_ctx_free(sctx);
    tlsock_free(ca);
    tlsock_free(cert);
    tlsock_free(key);
    return rc == 0 ? 0 : 1;
}
