/*
 * One server connection from handshake to the end of its protocol, with logging. Errors stay
 * with the connection: the server logs them and goes on.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "cli.h"
#include "serve.h"

/* The peer's address for log lines; tlsock gives us the fd, the kernel gives us the address. */
static void describe_peer(struct tlsock_conn *conn, char out[SERVE_PEER_SIZE])
{
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    char addr[INET6_ADDRSTRLEN] = "?";
    uint16_t port = 0;

    memset(&ss, 0, sizeof(ss));
    if (getpeername(tlsock_conn_fd(conn), (struct sockaddr *)&ss, &sslen) != 0) {
        snprintf(out, SERVE_PEER_SIZE, "unknown peer");
        goto done;
    }
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &sin->sin_addr, addr, sizeof(addr));
        port = ntohs(sin->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &sin6->sin6_addr, addr, sizeof(addr));
        port = ntohs(sin6->sin6_port);
    }
    cli_format_hostport(addr, port, out, SERVE_PEER_SIZE);
done:
    return;
}

static void log_session(struct tlsock_conn *conn, const char *peer)
{
    const struct tlsock_info *info = NULL;

    if (tlsock_conn_info(conn, &info) == 0) {
        fprintf(stderr, "tlsock: %s: %s %s alpn=%s sni=%s client=%s\n", peer, info->version,
                info->cipher, info->alpn[0] != '\0' ? info->alpn : "-",
                info->servername[0] != '\0' ? info->servername : "-",
                info->peer_subject[0] != '\0' ? info->peer_subject : "-");
    }
}

/* A failed handshake; a client that never finished in time is dropped and said so. */
static void log_handshake_error(struct tlsock_conn *conn, const char *peer, int err,
                                const struct serve_settings *settings)
{
    char what[SERVE_PEER_SIZE + 16];
    char detail[128];

    snprintf(what, sizeof(what), "%s: handshake", peer);
    if (err == TLSOCK_EHANDSHAKE_TIMEOUT) {
        snprintf(detail, sizeof(detail),
                 "not finished within %d ms (--handshake-timeout); client dropped",
                 settings->handshake_timeout_ms);
        cli_error(what, err, detail);
    } else {
        cli_error(what, err, tlsock_conn_errmsg(conn));
    }
}

int cli_serve_conn(struct tlsock_conn *conn, const struct serve_settings *settings)
{
    char peer[SERVE_PEER_SIZE];
    bool verbose = settings->verbose;
    int err = 0;

    describe_peer(conn, peer);
    if (verbose) {
        fprintf(stderr, "tlsock: %s: connected\n", peer);
    }
    err = tlsock_handshake(conn);
    if (err != 0) {
        log_handshake_error(conn, peer, err, settings);
        goto done;
    }
    if (verbose) {
        log_session(conn, peer);
    }
    if (settings->mode == SERVE_HTTP) {
        err = cli_serve_http(conn, peer, verbose);
    } else {
        err = cli_serve_echo(conn, peer);
    }
    if (verbose && err == 0) {
        fprintf(stderr, "tlsock: %s: closed\n", peer);
    }
done:
    return err;
}
