/*
 * What a connection negotiated and who the peer is (struct tlsock_info), made on first use: a
 * connection nobody asks about does not carry it. Also the peer's certificates one by one (PEM
 * made on first use too) and the keying material exporter.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "objects.h"

/*
 * The peer of the connection's socket, or of the socket a loop moves its bytes over, as
 * "192.0.2.1:443" or "[2001:db8::1]:443"; "" without a socket (callbacks, memory mode).
 */
static void peer_addr(const struct tlsock_conn *conn, char *out, size_t size)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "";
    int fd = conn->transport.kind == TLSOCK__TRANSPORT_SOCKET ? conn->transport.fd
             : conn->fd >= 0                                  ? conn->fd
                                                              : conn->addr_fd;

    out[0] = '\0';
    if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &len) != 0) {
        return;
    }
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        snprintf(out, size, "%s:%u", host, (unsigned)ntohs(in->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        snprintf(out, size, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
    }
}

static void free_chain(struct tlsock__info_buf *b)
{
    for (size_t i = 0; b->peer_chain != NULL && i < b->peer_chain_len; i++) {
        free((void *)b->peer_chain[i].der);
    }
    free(b->peer_chain);
    b->peer_chain = NULL;
    b->peer_chain_len = 0;
}

void tlsock__conn_info_free(struct tlsock__conn_info *info)
{
    if (info == NULL) {
        return;
    }
    for (size_t i = 0; info->pem != NULL && i < info->buf.peer_chain_len; i++) {
        free(info->pem[i]);
    }
    free(info->pem);
    free_chain(&info->buf);
    free(info);
}

int tlsock__conn_info(struct tlsock_conn *conn, const struct tlsock_info **out)
{
    if (conn->state != TLSOCK__OPEN) {
        return tlsock__fail(&conn->err, TLSOCK_EINVAL, "info: the handshake is not done");
    }
    if (conn->info == NULL) {
        struct tlsock__conn_info *info = calloc(1, sizeof(*info));
        if (info == NULL) {
            return tlsock__fail(&conn->err, TLSOCK_ENOMEM, "out of memory for connection info");
        }
        struct tlsock__info_buf *b = &info->buf;
        int rc = conn->ctx->impl->get_info(conn->tls, b, &conn->err);
        if (rc != 0) {
            /* Nothing incomplete is kept: the next call tries again. */
            free_chain(b);
            free(info);
            return rc;
        }
        peer_addr(conn, info->peer_addr, sizeof(info->peer_addr));
        info->pub = (struct tlsock_info){
            .impl = conn->ctx->impl->name,
            .version = b->version,
            .cipher = b->cipher,
            .alpn = b->alpn,
            .servername = b->servername,
            .peer_subject = b->peer_subject,
            .peer_sans = b->peer_sans,
            .peer_fingerprint = b->peer_fingerprint,
            .verify_result = b->verify_result,
            .verify_message = b->verify_message,
            .resumed = b->resumed,
            .peer_issuer = b->peer_issuer,
            .peer_serial = b->peer_serial,
            .peer_not_before = b->peer_not_before,
            .peer_not_after = b->peer_not_after,
            .peer_spki_sha256 = b->peer_spki_sha256,
            .peer_chain_len = b->peer_chain_len,
            /* "ok" only when a certificate was verified (tlsock__text_verify_message()). */
            .peer_verified = b->peer_chain_len > 0 && strcmp(b->verify_message, "ok") == 0,
            .group = b->group,
            .peer_sigalg = b->peer_sigalg,
            .peer_addr = info->peer_addr,
        };
        conn->info = info;
    }
    *out = &conn->info->pub;
    return 0;
}

static int peer_cert(struct tlsock_conn *conn, size_t index, const struct tlsock_info **info)
{
    int rc = tlsock__conn_info(conn, info);

    if (rc == 0 && index >= conn->info->buf.peer_chain_len) {
        rc = tlsock__fail(&conn->err, TLSOCK_EINVAL,
                          "peer certificate %zu: the peer sent %zu certificate(s)", index,
                          conn->info->buf.peer_chain_len);
    }
    return rc;
}

int tlsock__conn_peer_cert_der(struct tlsock_conn *conn, size_t index, const unsigned char **der,
                               size_t *len)
{
    const struct tlsock_info *info = NULL;
    int rc = peer_cert(conn, index, &info);

    if (rc == 0) {
        *der = conn->info->buf.peer_chain[index].der;
        *len = conn->info->buf.peer_chain[index].len;
    }
    return rc;
}

/* RFC 7468: base64 (RFC 4648 section 4) of the DER in lines of 64 characters. */
static char *pem_encode(const unsigned char *der, size_t len, size_t *out_len)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static const char begin[] = "-----BEGIN CERTIFICATE-----\n";
    static const char end[] = "-----END CERTIFICATE-----\n";
    size_t chars = (len + 2) / 3 * 4;
    size_t size = sizeof(begin) - 1 + chars + (chars + 63) / 64 + sizeof(end);
    char *pem = malloc(size);
    size_t n = 0;

    if (pem == NULL) {
        return NULL;
    }
    memcpy(pem, begin, sizeof(begin) - 1);
    n = sizeof(begin) - 1;
    for (size_t i = 0, col = 0; i < len; i += 3) {
        unsigned v = (unsigned)der[i] << 16;
        v |= i + 1 < len ? (unsigned)der[i + 1] << 8 : 0;
        v |= i + 2 < len ? der[i + 2] : 0;
        pem[n++] = b64[v >> 18 & 63];
        pem[n++] = b64[v >> 12 & 63];
        pem[n++] = i + 1 < len ? b64[v >> 6 & 63] : '=';
        pem[n++] = i + 2 < len ? b64[v & 63] : '=';
        col += 4;
        if (col == 64 || i + 3 >= len) {
            pem[n++] = '\n';
            col = 0;
        }
    }
    memcpy(pem + n, end, sizeof(end));
    *out_len = n + sizeof(end) - 1;
    return pem;
}

int tlsock__conn_peer_cert_pem(struct tlsock_conn *conn, size_t index, const char **pem,
                               size_t *len)
{
    const struct tlsock_info *info = NULL;
    int rc = peer_cert(conn, index, &info);

    if (rc != 0) {
        return rc;
    }
    struct tlsock__conn_info *ci = conn->info;
    if (ci->pem == NULL) {
        ci->pem = calloc(ci->buf.peer_chain_len, sizeof(*ci->pem));
        if (ci->pem == NULL) {
            return tlsock__fail(&conn->err, TLSOCK_ENOMEM, "out of memory writing PEM");
        }
    }
    if (ci->pem[index] == NULL) {
        size_t n = 0;
        ci->pem[index] =
            pem_encode(ci->buf.peer_chain[index].der, ci->buf.peer_chain[index].len, &n);
        if (ci->pem[index] == NULL) {
            return tlsock__fail(&conn->err, TLSOCK_ENOMEM, "out of memory writing PEM");
        }
    }
    *pem = ci->pem[index];
    *len = strlen(ci->pem[index]);
    return 0;
}

/* RFC 8446 7.5 and RFC 5705 4: the largest output both implementations allow alike. */
enum { EXPORT_MAX = 16384 };

int tlsock__conn_export(struct tlsock_conn *conn, const char *label, const void *context,
                        size_t context_len, void *out, size_t len)
{
    if (conn->state != TLSOCK__OPEN) {
        return tlsock__fail(&conn->err, TLSOCK_EINVAL, "export: the handshake is not done");
    }
    if (label == NULL || label[0] == '\0' || out == NULL || len == 0 || len > EXPORT_MAX ||
        (context == NULL && context_len != 0)) {
        return tlsock__fail(&conn->err, TLSOCK_EINVAL,
                            "export: a label, an output of 1 to %d bytes and a context for a "
                            "context length are required",
                            EXPORT_MAX);
    }
    return conn->ctx->impl->export_keying_material(conn->tls, label, strlen(label), context,
                                                   context_len, out, len, &conn->err);
}

int tlsock__conn_channel_binding(struct tlsock_conn *conn,
                                 unsigned char out[TLSOCK_CHANNEL_BINDING_SIZE])
{
    if (conn->state != TLSOCK__OPEN) {
        return tlsock__fail(&conn->err, TLSOCK_EINVAL,
                            "channel binding: the handshake is not done");
    }
    /* RFC 9266 section 3: without TLS 1.3 or EMS the value may be shared with another session. */
    if (!conn->ctx->impl->exporter_bound(conn->tls)) {
        return tlsock__fail(&conn->err, TLSOCK_EINVAL,
                            "channel binding needs TLS 1.3 or the extended master secret (RFC "
                            "7627): this TLS 1.2 session has neither");
    }
    return tlsock__conn_export(conn, "EXPORTER-Channel-Binding", "", 0, out,
                               TLSOCK_CHANNEL_BINDING_SIZE);
}
