/*
 * Connects to a server whose key is pinned and shows what the verify callback sees:
 * usage `pinned_client HOST PORT CA.pem PIN [PIN...]`, each PIN "sha256/BASE64" (see
 * docs/trust.md for the openssl command that computes one from a certificate). The chain must
 * verify against CA.pem and one of its certificates must carry a pinned key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <tlsock.h>

/* Logs every verdict; rejects nothing itself (the pins and the chain decide). */
static int show_chain(const struct tlsock_verify_info *info, void *user, char *reason,
                      size_t reason_size)
{
    (void)user;
    (void)reason;
    (void)reason_size;
    fprintf(stderr, "verify: %s; the peer sent %zu certificate(s), %zu verified up to the CA\n",
            info->message, info->peer_chain_len, info->verified_chain_len);
    for (size_t i = 0; i < info->verified_chain_len; i++) {
        fprintf(stderr, "  [%zu] %zu bytes of DER\n", i, info->verified_chain[i].len);
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct tlsock_ctx *ctx = NULL;
    struct tlsock_conn *conn = NULL;
    const struct tlsock_info *info = NULL;
    int rc;

    if (argc < 5) {
        fprintf(stderr, "usage: %s HOST PORT CA.pem PIN [PIN...]\n", argv[0]);
        return 2;
    }
    rc = tlsock_ctx_new(TLSOCK_CLIENT, &ctx);
    if (rc == 0) {
        rc = tlsock_ctx_set_ca_file(ctx, argv[3]);
    }
    /* Several pins: the current key and a backup, or a CA's key. */
    for (int i = 4; rc == 0 && i < argc; i++) {
        rc = tlsock_ctx_add_pin(ctx, argv[i]);
    }
    if (rc == 0) {
        rc = tlsock_ctx_set_verify_callback(ctx, show_chain, NULL);
    }
    if (rc != 0) {
        fprintf(stderr, "pinned_client: %s (%s)\n", tlsock_strerror(rc), tlsock_ctx_errmsg(ctx));
        tlsock_ctx_free(ctx);
        return 1;
    }
    /* The handshake runs the chain, name and pin checks, then the callback. */
    rc = tlsock_connect(ctx, argv[1], (uint16_t)atoi(argv[2]), NULL, &conn);
    if (rc == 0) {
        rc = tlsock_conn_info(conn, &info);
    }
    if (rc == 0) {
        printf("connected to %s, pinned key found; %s %s\n", info->peer_subject, info->version,
               info->cipher);
    } else {
        /* A pin mismatch reads "no pinned key matches the peer's chain; peer CN=...". */
        fprintf(stderr, "pinned_client: %s (%s)\n", tlsock_strerror(rc), tlsock_errmsg());
    }
    tlsock_close(conn);
    tlsock_ctx_free(ctx);
    return rc == 0 ? 0 : 1;
}
