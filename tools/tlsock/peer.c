/*
 * Names of clients in the log lines of the serving commands: their address (from the socket, or
 * tlsock_uv_conn_peername() for an async connection), else a number.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#ifdef TLSOCK_CLI_WITH_UV
#include <tlsock/uv.h>
#endif

#include "cli.h"

void cli_format_sockaddr(const struct sockaddr *sa, char out[CLI_PEER_SIZE])
{
    char addr[INET6_ADDRSTRLEN] = "?";
    uint16_t port = 0;

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &sin->sin_addr, addr, sizeof(addr));
        port = ntohs(sin->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &sin6->sin6_addr, addr, sizeof(addr));
        port = ntohs(sin6->sin6_port);
    }
    cli_format_hostport(addr, port, out, CLI_PEER_SIZE);
}

void cli_name_client(char out[CLI_PEER_SIZE])
{
    /* Shared by the loops' threads. */
    static atomic_ulong counter;
    unsigned long n = atomic_fetch_add(&counter, 1) + 1;

    snprintf(out, CLI_PEER_SIZE, "client %lu", n);
}

#ifdef TLSOCK_CLI_WITH_UV
void cli_peer_name(const struct tlsock_uv_conn *conn, char out[CLI_PEER_SIZE])
{
    struct sockaddr_storage ss;

    memset(&ss, 0, sizeof(ss));
    if (tlsock_uv_conn_peername(conn, &ss) == 0) {
        cli_format_sockaddr((const struct sockaddr *)&ss, out);
    } else {
        cli_name_client(out);
    }
}
#endif
