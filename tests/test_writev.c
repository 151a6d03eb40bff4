/*
 * Writes over the socket (the fd fast path): a GnuTLS handshake flight leaves in one sendmsg (its
 * vector push), and records arrive intact when the socket takes a few bytes per call or refuses a
 * call now and then.
 *
 * The executable is linked with -Wl,--wrap=send,--wrap=sendmsg (tests/CMakeLists.txt), so the
 * static library's calls to them land here first, where they are counted, shortened or refused.
 */
#include "support.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

/* What the wrappers do with every call, in every thread: take at most send_cap bytes (0: no
 * limit), refuse every refuse_every-th call with EAGAIN (0: never). */
static atomic_size_t send_cap;
static atomic_uint refuse_every;
static atomic_uint call_seq;

/* One thread's sends that took bytes: calls, buffers offered, calls offering several. */
struct send_count {
    size_t calls;
    size_t buffers;
    size_t multi;
    size_t bytes;
};

static _Thread_local struct send_count counts;

ssize_t __real_send(int fd, const void *buf, size_t len, int flags);
ssize_t __wrap_send(int fd, const void *buf, size_t len, int flags);
ssize_t __real_sendmsg(int fd, const struct msghdr *msg, int flags);
ssize_t __wrap_sendmsg(int fd, const struct msghdr *msg, int flags);

static bool refuse_now(void)
{
    unsigned every = atomic_load(&refuse_every);

    return every > 0 && (atomic_fetch_add(&call_seq, 1) + 1) % every == 0;
}

static void count(size_t buffers, ssize_t n)
{
    if (n > 0) {
        counts.calls++;
        counts.buffers += buffers;
        counts.multi += buffers > 1;
        counts.bytes += (size_t)n;
    }
}

/* The TLS records @p len bytes hold when they are whole records; 1 when they are not. */
static size_t records_in(const unsigned char *p, size_t len)
{
    size_t off = 0;
    size_t n = 0;

    while (off + 5 <= len) {
        off += 5 + ((size_t)p[off + 3] << 8 | p[off + 4]);
        n++;
    }
    return off == len && n > 0 ? n : 1;
}

ssize_t __wrap_send(int fd, const void *buf, size_t len, int flags)
{
    size_t cap = atomic_load(&send_cap);
    ssize_t n;

    if (refuse_now()) {
        errno = EAGAIN;
        return -1;
    }
    n = __real_send(fd, buf, cap > 0 && len > cap ? cap : len, flags);
    count(records_in(buf, len), n);
    return n;
}

ssize_t __wrap_sendmsg(int fd, const struct msghdr *msg, int flags)
{
    size_t cap = atomic_load(&send_cap);
    struct iovec iov[64];
    struct msghdr m = *msg;
    size_t left = cap;
    size_t k = 0;
    ssize_t n;

    if (refuse_now()) {
        errno = EAGAIN;
        return -1;
    }
    /* Shortened: the first cap bytes of the buffers, as a socket with little room takes them. */
    if (cap > 0 && msg->msg_iovlen <= sizeof(iov) / sizeof(iov[0])) {
        for (; k < msg->msg_iovlen && left > 0; k++) {
            iov[k] = msg->msg_iov[k];
            if (iov[k].iov_len > left) {
                iov[k].iov_len = left;
            }
            left -= iov[k].iov_len;
        }
        m.msg_iov = iov;
        m.msg_iovlen = k;
    }
    n = __real_sendmsg(fd, &m, flags);
    size_t records = 0;
    for (size_t i = 0; i < msg->msg_iovlen; i++) {
        records += records_in(msg->msg_iov[i].iov_base, msg->msg_iov[i].iov_len);
    }
    count(records, n);
    return n;
}

static void wrappers_reset(void)
{
    atomic_store(&send_cap, 0);
    atomic_store(&refuse_every, 0);
    atomic_store(&call_seq, 0);
}

static int writev_teardown(void **state)
{
    wrappers_reset();
    return ts_env_teardown(state);
}

/* The server's handshake sends, copied out of its thread, then the usual exchange. */
struct flight_server {
    struct send_count hs;
    int hs_rc;
    struct ts_exchange ex;
};

static int serve_counted(struct tlsock_conn *conn, void *arg)
{
    struct flight_server *fs = arg;

    counts = (struct send_count){0};
    fs->hs_rc = tlsock_handshake(conn);
    fs->hs = counts;
    return fs->hs_rc == 0 ? ts_serve_exchange(conn, &fs->ex) : fs->hs_rc;
}

struct writev_case {
    const char *what;
    const char *protocols; /* client range, NULL for the default */
    size_t cap;
    unsigned refuse_every;
    size_t size; /* exchanged both ways after the handshake */
};

static void run_writev_case(struct ts_env *env, const struct writev_case *c,
                            struct send_count *server_hs, struct send_count *client_hs)
{
    struct flight_server fs = {.ex = {.size = c->size}, .hs_rc = TS_NOT_RUN};
    struct tlsock_opts opts = ts_opts();

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    if (c->protocols != NULL) {
        TS_ASSERT_RC(tlsock_ctx_set_protocols(env->cctx, c->protocols), 0);
    }
    TS_ASSERT_RC(ts_server_start(&env->srv, env->sctx, NULL, NULL, serve_counted, &fs), 0);
    atomic_store(&send_cap, c->cap);
    atomic_store(&refuse_every, c->refuse_every);
    counts = (struct send_count){0};
    /* tlsock_connect runs the client's handshake. */
    TS_ASSERT_RC_MSG(tlsock_connect(env->cctx, "127.0.0.1", env->srv.port, &opts, &env->client), 0,
                     tlsock_errmsg());
    TS_ASSERT_RC_MSG(tlsock_handshake(env->client), 0, tlsock_conn_errmsg(env->client));
    *client_hs = counts;
    TS_ASSERT_RC_MSG(ts_client_exchange(env->client, c->size), 0, tlsock_conn_errmsg(env->client));
    tlsock_close(env->client);
    env->client = NULL;
    ts_server_stop(&env->srv);
    wrappers_reset();
    TS_ASSERT_RC_MSG(fs.hs_rc, 0, env->srv.errmsg);
    TS_ASSERT_RC_MSG(env->srv.result, 0, env->srv.errmsg);
    TS_ASSERT_RC_MSG(fs.ex.final_rc, TLSOCK_ECLOSED, env->srv.errmsg);
    *server_hs = fs.hs;
}

/*
 * A handshake flight leaves in one call of several records (a send of the records collected while
 * the handshake step ran, or a sendmsg of them), not one send per record, on both ends and both
 * implementations. Records are counted from the bytes of each call (`buffers`).
 */
static void test_flight_in_one_send(void **state)
{
    static const struct writev_case cases[] = {
        {.what = "TLS 1.3", .size = 1000},
        {.what = "TLS 1.2", .protocols = "1.2-1.2", .size = 1000},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct send_count server_hs;
        struct send_count client_hs;
        struct ts_env *env;

        ts_env_renew(state, i);
        env = *state;
        run_writev_case(env, &cases[i], &server_hs, &client_hs);
        print_message("%s: server handshake %zu sends of %zu records (%zu with several), %zu "
                      "bytes; client %zu sends of %zu records\n",
                      cases[i].what, server_hs.calls, server_hs.buffers, server_hs.multi,
                      server_hs.bytes, client_hs.calls, client_hs.buffers);
        assert_true(server_hs.calls > 0);
        assert_true(client_hs.calls > 0);
        assert_true(server_hs.multi > 0);
        assert_true(server_hs.calls < server_hs.buffers);
        /*
         * The client's second flight (TLS 1.2: key exchange, ChangeCipherSpec, Finished) in one
         * call. Not asserted for a TLS 1.3 GnuTLS client: it pushes its compatibility
         * ChangeCipherSpec on reading the ServerHello, and when the rest of the server's flight
         * comes in a later segment (under load) the step ends there and the record leaves alone.
         */
        if (cases[i].protocols != NULL || tlsock_ctx_impl(env->cctx) == TLSOCK_IMPL_OPENSSL) {
            assert_true(client_hs.multi > 0);
            assert_true(client_hs.calls < client_hs.buffers);
        }
    }
}

/*
 * A socket that takes a few bytes per call, or says "not now" to some calls although it has room:
 * a vector of records partly sent must go on from the right byte, and every record, handshake or
 * data, must arrive intact.
 */
static void test_short_and_refused_sends(void **state)
{
    static const struct writev_case cases[] = {
        {.what = "at most 7 bytes per send", .cap = 7, .size = 40000},
        {.what = "every third send refused", .refuse_every = 3, .size = 100000},
        {.what = "at most 100 bytes, every other send refused",
         .cap = 100,
         .refuse_every = 2,
         .size = 40000},
        {.what = "TLS 1.2, at most 7 bytes per send",
         .protocols = "1.2-1.2",
         .cap = 7,
         .size = 40000},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct send_count server_hs;
        struct send_count client_hs;

        print_message("%s\n", cases[i].what);
        ts_env_renew(state, i);
        run_writev_case(*state, &cases[i], &server_hs, &client_hs);
        if (cases[i].cap > 0) {
            /* The limit really applied to the handshake. */
            assert_true(server_hs.calls * cases[i].cap >= server_hs.bytes);
            assert_true(client_hs.calls * cases[i].cap >= client_hs.bytes);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_flight_in_one_send, ts_env_setup, writev_teardown),
        cmocka_unit_test_setup_teardown(test_short_and_refused_sends, ts_env_setup,
                                        writev_teardown),
    };

    return cmocka_run_group_tests_name("writev", tests, ts_pki_setup, ts_pki_teardown);
}
