/*
 * What a connection negotiated and who the peer is (struct tlsock_info), made on first use: a
 * connection nobody asks about does not carry it.
 */
#include <stdlib.h>

#include "objects.h"

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
        int rc = conn->impl->get_info(conn->tls, b, &conn->err);
        if (rc != 0) {
            /* Nothing incomplete is kept: the next call tries again. */
            free(info);
            return rc;
        }
        info->pub = (struct tlsock_info){
            .impl = conn->impl->name,
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
        };
        conn->info = info;
    }
    *out = &conn->info->pub;
    return 0;
}
