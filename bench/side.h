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
    SSL_SESSION *session; /* the client's latest, for the next connection (resume cases) */
    bool resume;          /* offer it */
};

#ifdef BENCH_HAVE_GNUTLS
struct gtls_env {
    gnutls_certificate_credentials_t server_cred;
    gnutls_certificate_credentials_t client_cred;
    gnutls_priority_t prio;
    gnutls_datum_t ticket_key; /* the server's session ticket key */
    gnutls_datum_t session;    /* the client's latest session data (resume cases) */
    bool resume;               /* offer it */
    /*
     * When set, called on each server session instead of enabling tickets: the TLS 1.2
     * session-ID cases (case_resume_redis.c) give the server a session cache there.
     */
    int (*server_session)(gnutls_session_t session, void *arg);
    void *server_session_arg;
};
#endif

struct tls_env {
    struct tlsock_ctx *server;
    struct tlsock_ctx *client;       /* session cache on, the default */
    struct tlsock_ctx *fresh_client; /* session cache off: full handshakes in the resume cases */
    struct tlsock_ctx *connect_ctx;  /* the one connections use: client unless set_resume(false) */
    struct tlsock_opts accept_opts;
    struct tlsock_opts connect_opts;
};

#endif /* TLSOCK_BENCH_SIDE_H */
