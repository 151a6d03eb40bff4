/*
 * The raw baseline in memory mode: both ends' SSL objects over OpenSSL memory BIOs, as a program
 * that moves ciphertext itself (an event loop, a tunnel) uses OpenSSL. Ciphertext moves with
 * BIO_read from the writer's output BIO into a buffer and BIO_write into the reader's input BIO:
 * the same two copies that tlsock_drain() and tlsock_feed() make on the tlsock side.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/err.h>

#include "side_raw.h"

/* Ciphertext moved per BIO_read/BIO_write, as on the tlsock side. */
#define MOVE_SIZE (64 * 1024)
/* Reads ask for one record's plaintext, as in the socket cases. */
#define READ_SIZE (16 * 1024)
/* A TLS 1.3 handshake takes a few flights; far more means the two ends are stuck. */
#define HANDSHAKE_MAX_STEPS 64

struct raw_end {
    SSL *ssl;
    BIO *in;  /* ciphertext for this end to read, owned by ssl */
    BIO *out; /* ciphertext this end wrote, owned by ssl */
};

struct raw_mem_pair {
    struct raw_end client;
    struct raw_end server;
    unsigned char move[MOVE_SIZE];
    unsigned char sink[READ_SIZE];
};

static int end_init(SSL_CTX *ctx, bool client, struct raw_end *end)
{
    int rc = BENCH_ERROR;

    end->ssl = SSL_new(ctx);
    end->in = BIO_new(BIO_s_mem());
    end->out = BIO_new(BIO_s_mem());
    if (end->ssl == NULL || end->in == NULL || end->out == NULL) {
        bench_ssl_error("memory-mode SSL and BIOs");
        BIO_free(end->in);
        BIO_free(end->out);
        end->in = NULL;
        end->out = NULL;
        goto out;
    }
    /* An empty input BIO means "no more yet" (WANT_READ), not the end of the stream. */
    BIO_set_mem_eof_return(end->in, -1);
    SSL_set_bio(end->ssl, end->in, end->out);
    if (client) {
        SSL_set_connect_state(end->ssl);
        /* The same SNI and host check as the socket baseline and tlsock's client. */
        if (SSL_set_tlsext_host_name(end->ssl, BENCH_SERVER_NAME) != 1 ||
            SSL_set1_host(end->ssl, BENCH_SERVER_NAME) != 1) {
            bench_ssl_error("server name");
            goto out;
        }
    } else {
        SSL_set_accept_state(end->ssl);
    }
    rc = BENCH_OK;

out:
    return rc;
}

/* Moves all of @p from's output to @p to's input; *moved says whether there was any. */
static int move(struct raw_mem_pair *pair, struct raw_end *from, struct raw_end *to, bool *moved)
{
    int rc = BENCH_OK;

    while (rc == BENCH_OK && BIO_ctrl_pending(from->out) > 0) {
        int n = BIO_read(from->out, pair->move, sizeof(pair->move));
        if (n <= 0 || BIO_write(to->in, pair->move, n) != n) {
            bench_ssl_error("moving ciphertext");
            rc = BENCH_ERROR;
        } else {
            *moved = true;
        }
    }
    return rc;
}

/* One handshake step of @p end: BENCH_OK when done, BENCH_AGAIN when it needs input. */
static int step(struct raw_end *end, const char *what)
{
    int n = SSL_do_handshake(end->ssl);
    int rc = BENCH_OK;

    if (n != 1) {
        rc = SSL_get_error(end->ssl, n) == SSL_ERROR_WANT_READ ? BENCH_AGAIN : BENCH_ERROR;
    }
    if (rc == BENCH_ERROR) {
        bench_ssl_error(what);
    }
    return rc;
}

static int handshake(struct raw_mem_pair *pair)
{
    int rc = BENCH_AGAIN;
    int steps = 0;
    int c = BENCH_AGAIN;
    int s = BENCH_AGAIN;
    bool moved = false;

    /* Until both ends are done and no flight (the server's session tickets, say) is in transit. */
    for (steps = 0; rc == BENCH_AGAIN && steps < HANDSHAKE_MAX_STEPS; steps++) {
        moved = false;
        c = step(&pair->client, "memory-mode client handshake");
        if (c != BENCH_ERROR) {
            c = move(pair, &pair->client, &pair->server, &moved) == BENCH_OK ? c : BENCH_ERROR;
        }
        s = c == BENCH_ERROR ? BENCH_ERROR : step(&pair->server, "memory-mode server handshake");
        if (s != BENCH_ERROR) {
            s = move(pair, &pair->server, &pair->client, &moved) == BENCH_OK ? s : BENCH_ERROR;
        }
        if (c == BENCH_ERROR || s == BENCH_ERROR) {
            rc = BENCH_ERROR;
        } else if (c == BENCH_OK && s == BENCH_OK && !moved) {
            rc = BENCH_OK;
        }
    }
    if (rc == BENCH_AGAIN) {
        fprintf(stderr, "raw: memory-mode handshake did not finish\n");
        rc = BENCH_ERROR;
    }
    return rc;
}

void bench_raw_mem_close(void *pairp)
{
    struct raw_mem_pair *pair = pairp;

    if (pair != NULL) {
        SSL_free(pair->client.ssl);
        SSL_free(pair->server.ssl);
        free(pair);
        ERR_clear_error();
    }
}

int bench_raw_mem_pair(void *envp, void **out)
{
    struct raw_env *env = envp;
    struct raw_mem_pair *pair = calloc(1, sizeof(*pair));
    int rc = BENCH_ERROR;

    if (pair == NULL) {
        fprintf(stderr, "raw: out of memory\n");
        goto out;
    }
    if (end_init(env->client, true, &pair->client) != BENCH_OK ||
        end_init(env->server, false, &pair->server) != BENCH_OK || handshake(pair) != BENCH_OK) {
        goto out;
    }
    *out = pair;
    pair = NULL;
    rc = BENCH_OK;

out:
    bench_raw_mem_close(pair);
    return rc;
}

int bench_raw_mem_transfer(void *pairp, const void *buf, size_t len, size_t *received)
{
    struct raw_mem_pair *pair = pairp;
    bool moved = false;
    bool reading = true;
    size_t got = 0;
    int rc = BENCH_OK;

    /* A memory BIO never refuses output: the write completes at once. */
    if (len > INT_MAX || SSL_write(pair->client.ssl, buf, (int)len) != (int)len) {
        bench_ssl_error("memory-mode SSL_write");
        rc = BENCH_ERROR;
        goto out;
    }
    rc = move(pair, &pair->client, &pair->server, &moved);
    while (rc == BENCH_OK && reading) {
        int n = SSL_read(pair->server.ssl, pair->sink, sizeof(pair->sink));
        if (n > 0) {
            got += (size_t)n;
        } else if (SSL_get_error(pair->server.ssl, n) == SSL_ERROR_WANT_READ) {
            reading = false;
        } else {
            bench_ssl_error("memory-mode SSL_read");
            rc = BENCH_ERROR;
        }
    }
    *received = got;

out:
    return rc;
}
