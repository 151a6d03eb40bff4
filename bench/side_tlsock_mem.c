/*
 * The tlsock side in memory mode: both ends attached with tlsock_attach_mem(), ciphertext moved
 * with tlsock_drain() into a buffer and tlsock_feed() into the peer, through the public API only.
 */
#include <stdio.h>
#include <stdlib.h>

#include "side_tlsock.h"

/* Ciphertext moved per drain/feed, as on the raw side. */
#define MOVE_SIZE (64 * 1024)
/* Reads ask for one record's plaintext, as in the socket cases. */
#define READ_SIZE (16 * 1024)
/* A TLS 1.3 handshake takes a few flights; far more means the two ends are stuck. */
#define HANDSHAKE_MAX_STEPS 64

struct tls_mem_pair {
    struct tlsock_conn *client;
    struct tlsock_conn *server;
    unsigned char move[MOVE_SIZE];
    unsigned char sink[READ_SIZE];
};

static int report(int rc, const char *what, const struct tlsock_conn *conn)
{
    if (rc != 0) {
        fprintf(stderr, "tlsock: %s: %s: %s\n", what, tlsock_err_name(rc),
                conn != NULL ? tlsock_conn_errmsg(conn) : tlsock_errmsg());
    }
    return rc == 0 ? BENCH_OK : BENCH_ERROR;
}

/* Moves all of @p from's output into @p to; *moved says whether there was any. */
static int move(struct tls_mem_pair *pair, struct tlsock_conn *from, struct tlsock_conn *to,
                bool *moved)
{
    int rc = BENCH_OK;
    size_t n = 0;

    while (rc == BENCH_OK && tlsock_conn_pending_output(from) > 0) {
        rc = report(tlsock_drain(from, pair->move, sizeof(pair->move), &n), "drain", from);
        if (rc == BENCH_OK) {
            rc = report(tlsock_feed(to, pair->move, n), "feed", to);
            *moved = true;
        }
    }
    return rc;
}

/* One handshake step: BENCH_OK when done, BENCH_AGAIN when it needs input. */
static int step(struct tlsock_conn *conn, const char *what)
{
    int rc = tlsock_handshake(conn);

    if (rc == TLSOCK_EWANT_READ) {
        rc = BENCH_AGAIN;
    } else {
        rc = report(rc, what, conn);
    }
    return rc;
}

static int handshake(struct tls_mem_pair *pair)
{
    int rc = BENCH_AGAIN;
    int steps = 0;
    int c = BENCH_AGAIN;
    int s = BENCH_AGAIN;
    bool moved = false;

    /* Until both ends are done and no flight (the server's session tickets, say) is in transit. */
    for (steps = 0; rc == BENCH_AGAIN && steps < HANDSHAKE_MAX_STEPS; steps++) {
        moved = false;
        c = step(pair->client, "memory-mode client handshake");
        if (c != BENCH_ERROR) {
            c = move(pair, pair->client, pair->server, &moved) == BENCH_OK ? c : BENCH_ERROR;
        }
        s = c == BENCH_ERROR ? BENCH_ERROR : step(pair->server, "memory-mode server handshake");
        if (s != BENCH_ERROR) {
            s = move(pair, pair->server, pair->client, &moved) == BENCH_OK ? s : BENCH_ERROR;
        }
        if (c == BENCH_ERROR || s == BENCH_ERROR) {
            rc = BENCH_ERROR;
        } else if (c == BENCH_OK && s == BENCH_OK && !moved) {
            rc = BENCH_OK;
        }
    }
    if (rc == BENCH_AGAIN) {
        fprintf(stderr, "tlsock: memory-mode handshake did not finish\n");
        rc = BENCH_ERROR;
    }
    return rc;
}

void bench_tlsock_mem_close(void *pairp)
{
    struct tls_mem_pair *pair = pairp;

    if (pair != NULL) {
        tlsock_close(pair->client);
        tlsock_close(pair->server);
        free(pair);
    }
}

int bench_tlsock_mem_pair(void *envp, void **out)
{
    struct tls_env *env = envp;
    struct tls_mem_pair *pair = calloc(1, sizeof(*pair));
    int rc = BENCH_ERROR;

    if (pair == NULL) {
        fprintf(stderr, "tlsock: out of memory\n");
        goto out;
    }
    /* The client options carry the server name to send and verify, as for the socket cases. */
    if (report(tlsock_attach_mem(env->client, &env->connect_opts, &pair->client), "attach_mem",
               NULL) != BENCH_OK ||
        report(tlsock_attach_mem(env->server, &env->accept_opts, &pair->server), "attach_mem",
               NULL) != BENCH_OK ||
        handshake(pair) != BENCH_OK) {
        goto out;
    }
    *out = pair;
    pair = NULL;
    rc = BENCH_OK;

out:
    bench_tlsock_mem_close(pair);
    return rc;
}

int bench_tlsock_mem_transfer(void *pairp, const void *buf, size_t len, size_t *received)
{
    struct tls_mem_pair *pair = pairp;
    bool moved = false;
    size_t got = 0;
    size_t n = 0;
    int rc = report(tlsock_write(pair->client, buf, len), "memory-mode write", pair->client);

    if (rc == BENCH_OK) {
        rc = move(pair, pair->client, pair->server, &moved);
    }
    while (rc == BENCH_OK) {
        int err = tlsock_read(pair->server, pair->sink, sizeof(pair->sink), &n);
        if (err == TLSOCK_EWANT_READ) {
            break;
        }
        rc = report(err, "memory-mode read", pair->server);
        if (rc == BENCH_OK) {
            got += n;
        }
    }
    *received = got;
    return rc;
}
