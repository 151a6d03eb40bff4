/*
 * Host names: telling an IP literal from a DNS name (SNI never carries an IP address, and an IP
 * literal is verified against the certificate's IP SANs).
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "base.h"

bool tlsock__is_ip_literal(const char *host)
{
    unsigned char addr[sizeof(struct in6_addr)];

    return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}
