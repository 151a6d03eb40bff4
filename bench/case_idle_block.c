/*
 * Memory per idle blocking connection: how much a server process grows for each TLS connection
 * it accepted and handshook on the blocking API and then holds open and idle.
 *
 * Measured as the async idle cases are (case_idle.c: a fresh server process per side, the same
 * tlsock_uv clients on OpenSSL, warm-up connections, RSS and heap growth per connection), only
 * the server differs: one thread that accepts each client and runs its handshake through a
 * blocking layer (struct bench_ops: tlsock_accept and tlsock_handshake, or the raw baseline on a
 * blocking socket), then keeps it and never touches it again, as a thread-per-connection server's
 * connections sit between requests. The raw OpenSSL server sets SSL_MODE_RELEASE_BUFFERS, as a
 * careful program holding many idle connections does; raw GnuTLS has no such switch. The target:
 * tlsock's RSS per connection at most the raw baseline's plus 1 KiB.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "async.h"

/* The server process's connections, held until its stdin closes. */
struct held {
    void **conns;
    size_t n;
    size_t cap;
    char cipher[64]; /* the first connection's */
    char impl[16];
};

static int hold(const struct bench_ops *ops, struct held *h, void *conn)
{
    if (h->n == h->cap) {
        size_t cap = h->cap > 0 ? 2 * h->cap : 1024;
        void **grown = realloc(h->conns, cap * sizeof(*grown));

        if (grown == NULL) {
            fprintf(stderr, "idle-block server: out of memory\n");
            return BENCH_ERROR;
        }
        h->conns = grown;
        h->cap = cap;
    }
    if (h->n == 0) {
        snprintf(h->cipher, sizeof(h->cipher), "%s", ops->cipher(conn));
        snprintf(h->impl, sizeof(h->impl), "%s", ops->impl(conn));
    }
    h->conns[h->n++] = conn;
    return BENCH_OK;
}

/* Answers what waits on stdin; false once it closed. */
static bool serve_stdin(const struct held *h)
{
    struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
    char cmd[64];

    while (poll(&pfd, 1, 0) == 1) {
        ssize_t len = read(STDIN_FILENO, cmd, sizeof(cmd));

        if (len <= 0) {
            return false;
        }
        for (ssize_t k = 0; k < len; k++) {
            bench_idle_answer(cmd[k], h->n, h->cipher[0] != '\0' ? h->cipher : "?",
                              h->impl[0] != '\0' ? h->impl : "?");
        }
    }
    return true;
}

int bench_idle_block_server(const struct bench_ops *ops, void *env)
{
    struct held h = {0};
    void *lis = NULL;
    uint16_t port = 0;
    int rc = ops->listen(env, &lis, &port);

    if (rc == BENCH_OK) {
        printf("port %u\n", port);
        fflush(stdout);
    }
    /*
     * Between accepts, the parent's commands: the accept waits only when the listener has a
     * client, so a command waits BENCH_ACCEPT_POLL_MS at most (the sides' accepts wait longer).
     */
    while (rc == BENCH_OK && serve_stdin(&h)) {
        void *conn = NULL;
        struct pollfd pfd = {.fd = ops->listen_fd(lis), .events = POLLIN};

        if (poll(&pfd, 1, BENCH_ACCEPT_POLL_MS) != 1) {
            continue;
        }
        rc = ops->accept(env, lis, &conn);
        if (rc == BENCH_OK) {
            rc = ops->handshake(conn);
            if (rc == BENCH_OK) {
                rc = hold(ops, &h, conn);
            }
            if (rc != BENCH_OK) {
                ops->close(conn);
            }
        } else if (rc == BENCH_AGAIN) {
            rc = BENCH_OK;
        }
    }
    for (size_t i = 0; i < h.n; i++) {
        ops->close(h.conns[i]);
    }
    free(h.conns);
    if (lis != NULL) {
        ops->listen_close(lis);
    }
    return rc == BENCH_OK ? 0 : 1;
}

/* The sides' server processes are the blocking kinds (bench_idle_raw, bench_idle_tlsock). */
static int block_setup(const struct bench_config *config, void **extra)
{
    (void)config;
    *extra = (void *)"-block";
    return BENCH_OK;
}

static void block_teardown(void *extra)
{
    (void)extra;
}

static const struct bench_case cases[] = {
    {.name = "idle-block",
     .summary =
         "server memory per idle TLS connection accepted on the blocking API (tlsock_accept, "
         "tlsock_handshake), against raw OpenSSL with SSL_MODE_RELEASE_BUFFERS on blocking "
         "sockets",
     .setup = block_setup,
     .teardown = block_teardown,
     BENCH_IDLE_CASE},
    {.name = "idle-block-gnutls",
     .summary = "as idle-block with tlsock on GnuTLS, against raw GnuTLS on blocking sockets",
     .impl = TLSOCK_IMPL_GNUTLS,
     .setup = block_setup,
     .teardown = block_teardown,
     BENCH_IDLE_CASE},
};

const struct bench_cases bench_idle_block_cases = BENCH_CASES(cases);
