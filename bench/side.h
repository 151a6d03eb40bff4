/*
 * The layers' contexts, made by their setup (side_raw.c, side_raw_gnutls.c, side_tlsock.c), for
 * the sides that use a layer other than through struct bench_ops: the tlsock_uv sides of the
 * async cases and the idle case's raw servers, which make their sessions themselves.
 */
#ifndef TLSOCK_BENCH_SIDE_H
#define TLSOCK_BENCH_SIDE_H

#include <openssl/ssl.h>
#ifdef BENCH_HAVE_GNUTLS
#include <gnutls/gnutls.h>
#endif

#include "bench.h"

struct raw_env {
    SSL_CTX *server;
    SSL_CTX *client;
};

#ifdef BENCH_HAVE_GNUTLS
struct gtls_env {
    gnutls_certificate_credentials_t server_cred;
    gnutls_certificate_credentials_t client_cred;
    gnutls_priority_t prio;
};
#endif

struct tls_env {
    struct tlsock_ctx *server;
    struct tlsock_ctx *client;
    struct tlsock_opts accept_opts;
    struct tlsock_opts connect_opts;
};

#endif /* TLSOCK_BENCH_SIDE_H */
