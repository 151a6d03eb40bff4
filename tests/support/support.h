/*
 * Helpers shared by the test executables: certificates made at run time, contexts, a loopback
 * server thread, data patterns and assertions that print error names.
 *
 * Nothing here calls cmocka assertions from a server thread: cmocka's failure path longjmps on
 * the test's own stack, so server threads only record results and the test thread asserts them
 * after joining.
 */
#ifndef TLSOCK_TEST_SUPPORT_H
#define TLSOCK_TEST_SUPPORT_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>

#include <cmocka.h>

#include "core/core.h"
#include "tlsock.h"

/* Every blocking operation in a test is bounded, so a library hang fails a test instead of
 * stalling the suite until the CTest timeout. Generous because the suite also runs under
 * valgrind. */
#define TS_IO_TIMEOUT_MS 10000

/* A server function result that is not a tlsock code: the data received was wrong. */
#define TS_EMISMATCH 1000
/* The server function never ran (accept failed or the test stopped the server first). */
#define TS_NOT_RUN 1001
/* A server function's own precondition failed (a raw system call, an allocation). */
#define TS_ESETUP 1002

/* The name of a tlsock return code for messages: "OK", "EVERIFY", or the test codes above. */
const char *ts_rc_name(int rc);

/* Fails the test unless @p actual == @p expected, naming both codes and the detail message. */
void ts_assert_rc_at(int actual, int expected, const char *expr, const char *detail,
                     const char *file, int line);
#define TS_ASSERT_RC(actual, expected)                                                             \
    ts_assert_rc_at((actual), (expected), #actual, tlsock_errmsg(), __FILE__, __LINE__)
#define TS_ASSERT_RC_MSG(actual, expected, detail)                                                 \
    ts_assert_rc_at((actual), (expected), #actual, (detail), __FILE__, __LINE__)

/* Fails the test unless @p haystack contains @p needle, ignoring case. */
void ts_assert_contains_at(const char *haystack, const char *needle, const char *file, int line);
#define TS_ASSERT_CONTAINS(haystack, needle)                                                       \
    ts_assert_contains_at((haystack), (needle), __FILE__, __LINE__)

/* ---- certificates ---------------------------------------------------------------------------- */

/*
 * The certificates most tests share, made once per executable by ts_pki_setup():
 *   ca        the CA clients and servers trust
 *   server    "localhost,127.0.0.1,::1", serverAuth, CN "tlsock-test-server", signed by ca
 *   client    clientAuth, CN "tlsock-test-client", signed by ca
 *   other_ca  a CA nobody trusts
 */
struct ts_pki {
    struct tlsock__pem_pair ca;
    struct tlsock__pem_pair server;
    struct tlsock__pem_pair client;
    struct tlsock__pem_pair other_ca;
};

#define TS_SERVER_CN    "tlsock-test-server"
#define TS_CLIENT_CN    "tlsock-test-client"
#define TS_SERVER_HOSTS "localhost,127.0.0.1,::1"

extern struct ts_pki ts_pki;

/*
 * cmocka group setup / teardown making and freeing ts_pki. Every build can make certificates
 * (each implementation has a generator; tlsock__cert_generate() uses OpenSSL's when both are
 * compiled in), so nothing is skipped for want of them.
 */
int ts_pki_setup(void **state);
int ts_pki_teardown(void **state);

/* Exit status of a whole executable that cannot run here (CTest's SKIP_RETURN_CODE): it is
 * listed as not run, never as passed. */
#define TS_SKIP_EXIT 77

/* Generates a certificate; prints the generator's reason on failure. Returns 0 or an error. */
int ts_cert_make(const struct tlsock__cert_spec *spec, struct tlsock__pem_pair *out);

/* A leaf certificate for @p hosts signed by @p issuer, valid from an hour ago for 30 days. */
int ts_leaf_make(const struct tlsock__pem_pair *issuer, const char *cn, const char *hosts, int eku,
                 struct tlsock__pem_pair *out);

/* ---- contexts and options -------------------------------------------------------------------- */

/*
 * The conformance matrix: CTest runs every `tls` executable once per (client, server)
 * implementation pair, naming them in TLSOCK_TEST_CLIENT_IMPL and TLSOCK_TEST_SERVER_IMPL
 * ("openssl" or "gnutls"; unset: the process default). Every TLS context a test makes comes from
 * ts_ctx_new(), so each one uses the implementation of its role.
 */

/* The enum tlsock_impl value the matrix asks for @p role (TLSOCK_IMPL_DEFAULT when unset), or
 * -1 when the variable names no implementation. */
int ts_role_impl(int role);

/* tlsock_ctx_new() followed by tlsock_ctx_set_impl() with the implementation of the role. */
int ts_ctx_new(int role, struct tlsock_ctx **out);

/* A server context presenting @p leaf (may be NULL for none). */
int ts_server_ctx_new(const struct tlsock__pem_pair *leaf, struct tlsock_ctx **out);

/* A client context trusting only @p ca_pem (may be NULL: system store). */
int ts_client_ctx_new(const char *ca_pem, struct tlsock_ctx **out);

/* Options with every timeout bounded by TS_IO_TIMEOUT_MS. */
struct tlsock_opts ts_opts(void);

/* ---- data ------------------------------------------------------------------------------------ */

/* Fills @p buf with a pattern that does not repeat every 256 bytes and depends on @p seed. */
void ts_fill(unsigned char *buf, size_t len, unsigned seed);

/* Whether @p len bytes at @p got are pattern @p seed (what ts_fill() writes). Allocates nothing. */
bool ts_same_pattern(const unsigned char *got, size_t len, unsigned seed);

/* Reads exactly @p len bytes (bounded in count and time). Returns 0 or the failing code. */
int ts_read_full(struct tlsock_conn *conn, void *buf, size_t len);

/*
 * A request/response exchange both halves know the size of:
 *   client: writes size bytes (seed 1), reads size bytes (seed 2), expects ECLOSED;
 *   server: reads size bytes (seed 1), writes size bytes (seed 2), shuts down, then reads and
 *           records the final code in final_rc (ECLOSED when the client closed cleanly).
 */
struct ts_exchange {
    size_t size;
    int final_rc;
};
int ts_serve_exchange(struct tlsock_conn *conn, void *arg);
/* The client half; returns 0 or the failing code, printing which step failed. */
int ts_client_exchange(struct tlsock_conn *conn, size_t size);

/* ---- raw sockets ----------------------------------------------------------------------------- */

/* A listening TCP socket on @p host port 0 (backlog 8); @p rcvbuf > 0 sets SO_RCVBUF first. */
int ts_raw_listen(const char *host, int rcvbuf, int *fd_out, uint16_t *port_out);

/* A blocking TCP connection to @p host:@p port; @p sndbuf > 0 sets SO_SNDBUF first. */
int ts_raw_connect(const char *host, uint16_t port, int sndbuf, int *fd_out);

/* accept() bounded by @p timeout_ms. Returns the fd, or -1. */
int ts_raw_accept(int lfd, int timeout_ms);

/* True when the kernel lets us bind ::1 (IPv6 loopback present). */
bool ts_ipv6_available(void);

/* ---- a gate one thread waits on and another opens -------------------------------------------- */

struct ts_gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
};

void ts_gate_init(struct ts_gate *gate);
void ts_gate_open(struct ts_gate *gate);
/* Waits until the gate opens or @p timeout_ms passes; true if it opened. */
bool ts_gate_wait(struct ts_gate *gate, int timeout_ms);
void ts_gate_destroy(struct ts_gate *gate);

/* ---- loopback server thread ------------------------------------------------------------------ */

/* Serves one accepted TLS connection; returns 0, a tlsock code or a TS_* code. The helper closes
 * @p conn afterwards. */
typedef int (*ts_serve_fn)(struct tlsock_conn *conn, void *arg);
/* Serves one accepted raw TCP socket; the helper closes @p fd afterwards. */
typedef int (*ts_serve_raw_fn)(int fd, void *arg);

struct ts_server {
    struct tlsock_listener *lis; /* TLS mode */
    int raw_fd;                  /* raw mode listener, -1 otherwise */
    char host[64];               /* address listened on, to wake the accept */
    uint16_t port;
    pthread_t thread;
    bool started;
    ts_serve_fn fn;
    ts_serve_raw_fn raw_fn;
    void *arg;
    struct tlsock_opts opts;
    atomic_bool accepted;
    atomic_bool stopping;
    int accept_rc; /* result of the accept */
    int result;    /* result of the server function, TS_NOT_RUN if it never ran */
    char errmsg[TLSOCK__ERRMSG_SIZE]; /* the connection's error message after a failure */
};

/*
 * Listens on @p host (NULL: 127.0.0.1; "*": every address, i.e. tlsock_listen(NULL)) port 0
 * with server context @p ctx and starts a thread
 * that accepts one connection (bounded by TS_IO_TIMEOUT_MS) and runs @p fn on it. @p opts may be
 * NULL for ts_opts().
 */
int ts_server_start(struct ts_server *srv, struct tlsock_ctx *ctx, const char *host,
                    const struct tlsock_opts *opts, ts_serve_fn fn, void *arg);

/* Like ts_server_start() on a raw listener; @p rcvbuf as for ts_raw_listen(). */
int ts_server_start_raw(struct ts_server *srv, const char *host, int rcvbuf, ts_serve_raw_fn fn,
                        void *arg);

/*
 * Stops the server: if no client connected yet, connects once to wake the accept; joins the
 * thread and closes the listener. Safe to call twice and on a server that never started.
 */
void ts_server_stop(struct ts_server *srv);

/* ---- per-test environment -------------------------------------------------------------------- */

/* What a TLS test owns, released by ts_env_teardown() even when an assertion failed. */
struct ts_env {
    struct ts_server srv;
    struct tlsock_ctx *sctx;
    struct tlsock_ctx *cctx;
    struct tlsock_conn *client;
    struct ts_gate gate;
};

int ts_env_setup(void **state);
/* For table-driven tests: before case @p index > 0, tears down and sets up a fresh environment
 * (the test's own teardown releases the last one, even after a failed assertion). */
void ts_env_renew(void **state, size_t index);
/* Opens the gate, closes the client, stops the server and frees the contexts. */
int ts_env_teardown(void **state);

/* ---- the heap -------------------------------------------------------------------------------- */

/*
 * Bytes of heap in use, as the allocator of this build counts them: ASan's, valgrind's (a quick
 * leak check counts every live block) or glibc's (mallinfo2: every arena, mmapped chunks too).
 * Whatever the build, tlsock's allocations and its implementations' show up here.
 */
size_t ts_heap_in_use(void);

#endif /* TLSOCK_TEST_SUPPORT_H */
