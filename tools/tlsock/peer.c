/*
 * Peer addresses for the log lines of the serving commands: tlsock gives us the socket, the
 * kernel gives us the address.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

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

void cli_describe_peer(int fd, char out[CLI_PEER_SIZE])
{
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);

    memset(&ss, 0, sizeof(ss));
    if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &sslen) != 0) {
        snprintf(out, CLI_PEER_SIZE, "unknown peer");
    } else {
        cli_format_sockaddr((const struct sockaddr *)&ss, out);
    }
}
