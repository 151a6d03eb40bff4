/*
 * Loopback TLS: blocking calls interrupted by signals (EINTR) carry on instead of failing.
 *
 * The executable is linked with -Wl,--wrap=poll (tests/CMakeLists.txt): every poll() of the static
 * library, where all of its waits happen, lands in __wrap_poll first, which counts the waits a
 * signal interrupted and the waits that followed them. So each case proves that a wait inside the
 * operation really returned EINTR and was resumed, and then that the operation succeeded.
 */
#include "support.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DELAY_MS 300
#define BIG      (4u * 1024 * 1024)
/* Far less than BIG: a writer that fills it has to wait for the reader. */
#define SOCKET_BUFFER (64 * 1024)

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    (void)nanosleep(&ts, NULL);
}

/* The test thread's poll() calls: how many returned EINTR, and how many came right after one. */
struct poll_count {
    unsigned calls;
    unsigned eintr;
    unsigned resumed;
    bool last_eintr;
};

static _Thread_local struct poll_count polls;

int __real_poll(struct pollfd *fds, nfds_t nfds, int timeout);
int __wrap_poll(struct pollfd *fds, nfds_t nfds, int timeout);

int __wrap_poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
    int rc;

    polls.calls++;
    if (polls.last_eintr) {
        polls.resumed++;
    }
    rc = __real_poll(fds, nfds, timeout);
    polls.last_eintr = rc < 0 && errno == EINTR;
    if (polls.last_eintr) {
        polls.eintr++;
    }
    return rc;
}

/* Starts counting the calling thread's waits. */
static void polls_reset(void)
{
    memset(&polls, 0, sizeof(polls));
}

/* The waits of an operation that succeeded (@p seen, counted since polls_reset()): some were
 * interrupted, and every one was resumed. */
static void assert_interrupted_and_resumed(const char *what, struct poll_count seen)
{
    print_message("%s: %u waits, %u interrupted (EINTR), %u resumed\n", what, seen.calls,
                  seen.eintr, seen.resumed);
    assert_true(seen.eintr > 0);
    assert_int_equal(seen.resumed, seen.eintr);
}

/* Sets a socket's send or receive buffer to SOCKET_BUFFER bytes. */
static void set_buffer(int fd, int which)
{
    int size = SOCKET_BUFFER;

    (void)setsockopt(fd, SOL_SOCKET, which, &size, sizeof(size));
}

static void on_signal(int sig)
{
    (void)sig;
}

/* Sends SIGUSR1 to the test thread every few milliseconds until stopped (at most 1000 times). */
static struct {
    pthread_t target;
    pthread_t thread;
    bool running;
    atomic_bool stop;
    atomic_int sent;
    struct sigaction old;
} pester;

static void *pester_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000 && !atomic_load(&pester.stop); i++) {
        pthread_kill(pester.target, SIGUSR1);
        atomic_fetch_add(&pester.sent, 1);
        sleep_ms(5);
    }
    return NULL;
}

static void pester_start(void)
{
    struct sigaction sa;

    /* No SA_RESTART: every blocking system call of the test thread sees EINTR. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR1, &sa, &pester.old), 0);
    pester.target = pthread_self();
    atomic_store(&pester.stop, false);
    atomic_store(&pester.sent, 0);
    assert_int_equal(pthread_create(&pester.thread, NULL, pester_main, NULL), 0);
    pester.running = true;
}

/* Stops and joins the pester; returns how many signals it sent. */
static int pester_stop(void)
{
    if (pester.running) {
        atomic_store(&pester.stop, true);
        pthread_join(pester.thread, NULL);
        pester.running = false;
        sigaction(SIGUSR1, &pester.old, NULL);
    }
    return atomic_load(&pester.sent);
}

static int teardown(void **state)
{
    (void)pester_stop();
    return ts_env_teardown(state);
}

/* The server's half: optionally late to the handshake, late to answer, reading slowly. */
struct slow_server {
    int handshake_delay_ms;
    int reply_delay_ms;
    size_t expect; /* bytes to read before replying */
};

static int serve_slowly(struct tlsock_conn *conn, void *arg)
{
    struct slow_server *s = arg;
    unsigned char *buf = malloc(s->expect > 0 ? s->expect : 1);
    unsigned char byte;
    size_t n = 0;
    int rc = buf != NULL ? 0 : TS_ESETUP;

    sleep_ms(s->handshake_delay_ms);
    if (rc == 0) {
        rc = tlsock_handshake(conn);
    }
    if (rc == 0 && s->expect > 0) {
        set_buffer(tlsock_conn_fd(conn), SO_RCVBUF);
    }
    sleep_ms(s->reply_delay_ms);
    if (rc == 0) {
        rc = ts_read_full(conn, buf, s->expect);
    }
    if (rc == 0) {
        rc = tlsock_write(conn, "ok", 2);
    }
    if (rc == 0) {
        (void)tlsock_read(conn, &byte, 1, &n);
    }
    free(buf);
    return rc;
}

/* Which of the client's operations the server makes wait. */
enum waiting_op { WAIT_HANDSHAKE, WAIT_READ, WAIT_WRITE };

static void run_interrupted(void **state, struct slow_server *s, enum waiting_op op)
{
    struct ts_env *env = *state;
    struct tlsock_opts opts = ts_opts();
    unsigned char *big = NULL;
    char reply[2] = {0, 0};
    int rc;

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    TS_ASSERT_RC(ts_server_start(&env->srv, env->sctx, NULL, NULL, serve_slowly, s), 0);
    pester_start();
    polls_reset();
    rc = tlsock_connect(env->cctx, "127.0.0.1", env->srv.port, &opts, &env->client);
    TS_ASSERT_RC(rc, 0);
    if (op == WAIT_HANDSHAKE) {
        assert_interrupted_and_resumed("connect and handshake", polls);
    }
    if (s->expect > 0) {
        big = calloc(1, s->expect);
        assert_non_null(big);
        /* Small socket buffers (no autotuning) on both ends, so that the write surely waits. */
        set_buffer(tlsock_conn_fd(env->client), SO_SNDBUF);
        polls_reset();
        rc = tlsock_write(env->client, big, s->expect);
        free(big);
        TS_ASSERT_RC_MSG(rc, 0, tlsock_conn_errmsg(env->client));
        if (op == WAIT_WRITE) {
            assert_interrupted_and_resumed("write", polls);
        }
    }
    polls_reset();
    TS_ASSERT_RC_MSG(ts_read_full(env->client, reply, 2), 0, tlsock_conn_errmsg(env->client));
    assert_memory_equal(reply, "ok", 2);
    if (op == WAIT_READ) {
        assert_interrupted_and_resumed("read", polls);
    }
    assert_true(pester_stop() > 0);
    tlsock_close(env->client);
    env->client = NULL;
    ts_server_stop(&env->srv);
    TS_ASSERT_RC_MSG(env->srv.result, 0, env->srv.errmsg);
}

static void test_handshake_interrupted(void **state)
{
    struct slow_server s = {.handshake_delay_ms = DELAY_MS};

    run_interrupted(state, &s, WAIT_HANDSHAKE);
}

static void test_read_interrupted(void **state)
{
    struct slow_server s = {.reply_delay_ms = DELAY_MS};

    run_interrupted(state, &s, WAIT_READ);
}

static void test_write_interrupted(void **state)
{
    /* The server reads nothing for a while, so the big write blocks on a full socket. */
    struct slow_server s = {.reply_delay_ms = DELAY_MS, .expect = BIG};

    run_interrupted(state, &s, WAIT_WRITE);
}

/* A client that connects late, from another thread. */
static void *late_client(void *arg)
{
    uint16_t port = *(uint16_t *)arg;
    int fd = -1;

    sleep_ms(DELAY_MS);
    if (ts_raw_connect("127.0.0.1", port, 0, &fd) == 0) {
        close(fd);
    }
    return NULL;
}

static void test_accept_interrupted(void **state)
{
    struct ts_env *env = *state;
    struct tlsock_listener *lis = NULL;
    struct tlsock_conn *conn = NULL;
    struct tlsock_opts opts = ts_opts();
    struct poll_count seen;
    pthread_t client;
    uint16_t port;
    int rc;

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(tlsock_listen(env->sctx, "127.0.0.1", 0, 0, &lis), 0);
    port = tlsock_listener_port(lis);
    assert_int_equal(pthread_create(&client, NULL, late_client, &port), 0);
    pester_start();
    polls_reset();
    rc = tlsock_accept(lis, &opts, &conn);
    seen = polls;
    pthread_join(client, NULL);
    tlsock_close(conn);
    tlsock_listener_close(lis);
    TS_ASSERT_RC(rc, 0);
    assert_interrupted_and_resumed("accept", seen);
    assert_true(pester_stop() > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_handshake_interrupted, ts_env_setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_interrupted, ts_env_setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_interrupted, ts_env_setup, teardown),
        cmocka_unit_test_setup_teardown(test_accept_interrupted, ts_env_setup, teardown),
    };

    return cmocka_run_group_tests_name("signals", tests, ts_pki_setup, ts_pki_teardown);
}
