/* Detach: TLS ends, the socket goes on in plaintext, and no byte is lost or duplicated at any
 * boundary (plaintext -> TLS -> plaintext -> TLS -> plaintext), including bytes pipelined behind a
 * STARTTLS line or behind a close_notify; the edge cases of tlsock_detach() (data before
 * close_notify, a small leftover buffer, a peer slow to close, descriptor flags, memory mode). */
#include "support.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SHORT_MS 200

/* Polling a socket's queue with MSG_PEEK: 2000 steps of 5 ms bound the wait to 10 s. */
#define PEEK_STEPS   2000
#define PEEK_STEP_MS 5

#define LINE_CAP 8192

/* ---- plaintext side: a buffered line reader and raw helpers ---------------------------------- */

/*
 * A line reader like a real protocol implementation's: it reads whatever the socket holds, so it
 * may hold bytes past the line it returns. Those bytes belong to whatever comes next (TLS via
 * opts.preread, or the next line).
 */
struct line_reader {
    int fd;
    unsigned char buf[LINE_CAP];
    size_t len;
};

/* Starts reading @p fd with @p n bytes already received (a detach's leftover). */
static bool lr_init(struct line_reader *lr, int fd, const void *bytes, size_t n)
{
    lr->fd = fd;
    lr->len = 0;
    if (n > sizeof(lr->buf)) {
        return false;
    }
    if (n > 0) {
        memcpy(lr->buf, bytes, n);
    }
    lr->len = n;
    return true;
}

/* Receives once into the buffer, waiting up to TS_IO_TIMEOUT_MS; false at EOF, error or timeout.
 * The socket may be blocking or not, so wait with poll() and never block in recv(). */
static bool lr_fill(struct line_reader *lr)
{
    struct pollfd pfd = {.fd = lr->fd, .events = POLLIN};
    ssize_t n;

    if (lr->len == sizeof(lr->buf) || poll(&pfd, 1, TS_IO_TIMEOUT_MS) != 1) {
        return false;
    }
    n = recv(lr->fd, lr->buf + lr->len, sizeof(lr->buf) - lr->len, MSG_DONTWAIT);
    if (n <= 0) {
        return false;
    }
    lr->len += (size_t)n;
    return true;
}

/* True when the next line is exactly @p want (which ends in CRLF); the line is consumed. */
static bool lr_expect_line(struct line_reader *lr, const char *want)
{
    size_t want_len = strlen(want);
    unsigned char *end = NULL;
    int64_t deadline = tlsock_now_ms() + TS_IO_TIMEOUT_MS;

    /* Each fill adds at least one byte, so the buffer size bounds the count; the deadline
     * bounds the time even if the bytes trickle in one by one. */
    for (size_t i = 0; i <= sizeof(lr->buf); i++) {
        end = lr->len >= 2 ? memmem(lr->buf, lr->len, "\r\n", 2) : NULL;
        if (end != NULL || tlsock_now_ms() > deadline || !lr_fill(lr)) {
            break;
        }
    }
    if (end == NULL) {
        return false;
    }
    size_t line_len = (size_t)(end - lr->buf) + 2;
    bool ok = line_len == want_len && memcmp(lr->buf, want, want_len) == 0;
    memmove(lr->buf, lr->buf + line_len, lr->len - line_len);
    lr->len -= line_len;
    return ok;
}

/* True when the stream ends here: nothing buffered and the peer closed its side. */
static bool lr_expect_eof(struct line_reader *lr)
{
    struct pollfd pfd = {.fd = lr->fd, .events = POLLIN};
    unsigned char byte;

    return lr->len == 0 && poll(&pfd, 1, TS_IO_TIMEOUT_MS) == 1 &&
           recv(lr->fd, &byte, 1, MSG_DONTWAIT) == 0;
}

/* Sends all of @p data on a blocking or non-blocking socket, within TS_IO_TIMEOUT_MS. */
static bool send_all(int fd, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t done = 0;
    int64_t deadline = tlsock_now_ms() + TS_IO_TIMEOUT_MS;

    for (size_t i = 0; i <= len && done < len; i++) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        ssize_t n;

        if (tlsock_now_ms() > deadline || poll(&pfd, 1, TS_IO_TIMEOUT_MS) != 1) {
            break;
        }
        n = send(fd, p + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n <= 0) {
            break;
        }
        done += (size_t)n;
    }
    return done == len;
}

static bool send_str(int fd, const char *s)
{
    return send_all(fd, s, strlen(s));
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    (void)nanosleep(&ts, NULL);
}

/*
 * Waits until the socket's receive queue holds more than @p min_len bytes and, if @p needle is
 * not NULL, contains it. The test uses it to make a pipelining race deterministic: the reader
 * then certainly finds both halves of a burst in the socket when it reads.
 */
static bool wait_queued(int fd, size_t min_len, const char *needle)
{
    unsigned char peek[16384];
    bool found = false;

    for (int i = 0; i < PEEK_STEPS && !found; i++) {
        ssize_t n = recv(fd, peek, sizeof(peek), MSG_PEEK | MSG_DONTWAIT);

        found = n > 0 && (size_t)n > min_len &&
                (needle == NULL || memmem(peek, (size_t)n, needle, strlen(needle)) != NULL);
        if (!found) {
            sleep_ms(PEEK_STEP_MS);
        }
    }
    return found;
}

/* TCP_CORK holds small writes back until uncorked, so a close_notify and the plaintext after it
 * leave in one segment: the burst the reader must split correctly. */
static void set_cork(int fd, int on)
{
    (void)setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on));
}

/* ---- TLS side -------------------------------------------------------------------------------- */

static int write_pattern(struct tlsock_conn *conn, size_t len, unsigned seed)
{
    unsigned char *buf = malloc(len);
    int rc = TS_ESETUP;

    if (buf != NULL) {
        ts_fill(buf, len, seed);
        rc = tlsock_write(conn, buf, len);
    }
    free(buf);
    return rc;
}

/* Reads exactly @p len bytes and checks them against pattern @p seed. */
static int read_pattern(struct tlsock_conn *conn, size_t len, unsigned seed)
{
    unsigned char *got = malloc(len);
    unsigned char *want = malloc(len);
    int rc = TS_ESETUP;

    if (got != NULL && want != NULL) {
        ts_fill(want, len, seed);
        rc = ts_read_full(conn, got, len);
        if (rc == 0 && memcmp(got, want, len) != 0) {
            rc = TS_EMISMATCH;
        }
    }
    free(got);
    free(want);
    return rc;
}

/* ---- plaintext -> TLS -> plaintext -> TLS -> plaintext ----------------------------------------
 */

#define EHLO        "EHLO client\r\n"
#define EHLO_AGAIN  "EHLO again\r\n"
#define OK_250      "250 ok\r\n"
#define STARTTLS    "STARTTLS\r\n"
#define GO_AHEAD    "220 go ahead\r\n"
#define PLAIN_AGAIN "250 plaintext again\r\n"
#define QUIT        "QUIT\r\n"
#define BYE         "221 bye\r\n"

/* TLS payload sizes and patterns of the two TLS phases: several records, odd sizes. */
#define T1_UP   5000
#define T1_DOWN 7000
#define T2_UP   9000
#define T2_DOWN 3000

struct mail_server {
    struct tlsock_ctx *ctx;
    const char *step;    /* the last step begun, to say where a failure happened */
    size_t preread_2;    /* bytes read past "STARTTLS" and handed over as opts.preread */
    bool fd_returned;    /* both detaches returned the socket they were given */
    bool blocking_after; /* both detaches restored the socket's (blocking) flags */
    char errmsg[TLSOCK__ERRMSG_SIZE];
};

/* Checks what tlsock_detach() handed back and continues reading after its leftover bytes. */
static int server_detach(struct mail_server *s, struct tlsock_conn **conn, int fd,
                         struct line_reader *lr)
{
    unsigned char leftover[LINE_CAP];
    size_t leftover_len = 0;
    int dfd = -1;
    int rc = tlsock_detach(*conn, &dfd, leftover, sizeof(leftover), &leftover_len);

    if (rc == 0) {
        *conn = NULL;
        s->fd_returned = s->fd_returned && dfd == fd;
        s->blocking_after = s->blocking_after && (fcntl(fd, F_GETFL) & O_NONBLOCK) == 0;
        rc = lr_init(lr, fd, leftover, leftover_len) ? 0 : TS_EMISMATCH;
    }
    return rc;
}

/*
 * The server: a line protocol on a raw socket that upgrades twice.
 *   round 1: classic STARTTLS (the client waits for 220); the server ends TLS with close_notify
 *            immediately followed by a plaintext line in one burst;
 *   round 2: the client pipelines its ClientHello behind "STARTTLS", so the line reader reads
 *            past the line and the extra bytes become opts.preread; the client ends TLS with
 *            close_notify immediately followed by "QUIT".
 */
static int serve_mail(int fd, void *arg)
{
    struct mail_server *s = arg;
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    struct line_reader lr;
    unsigned char pre[LINE_CAP];
    unsigned char byte;
    size_t n = 0;
    int rc = TS_EMISMATCH;

    lr_init(&lr, fd, NULL, 0);
    s->step = "EHLO";
    if (!lr_expect_line(&lr, EHLO) || !send_str(fd, OK_250)) {
        goto out;
    }
    s->step = "STARTTLS (round 1)";
    if (!lr_expect_line(&lr, STARTTLS) || !send_str(fd, GO_AHEAD)) {
        goto out;
    }
    /* Whatever the reader holds beyond the line is TLS already (nothing here, normally). */
    opts.preread = lr.buf;
    opts.preread_len = lr.len;
    s->step = "attach (round 1)";
    rc = tlsock_attach_fd(s->ctx, fd, &opts, &conn);
    if (rc == 0) {
        s->step = "TLS data (round 1)";
        rc = read_pattern(conn, T1_UP, 11);
    }
    if (rc == 0) {
        rc = write_pattern(conn, T1_DOWN, 12);
    }
    if (rc == 0) {
        s->step = "close_notify + plaintext burst";
        set_cork(fd, 1);
        rc = tlsock_shutdown(conn);
        if (rc == 0 && !send_str(fd, PLAIN_AGAIN)) {
            rc = TS_ESETUP;
        }
        set_cork(fd, 0);
    }
    if (rc == 0) {
        s->step = "detach (round 1)";
        rc = server_detach(s, &conn, fd, &lr);
    }
    if (rc != 0) {
        goto out;
    }
    rc = TS_EMISMATCH;
    s->step = "EHLO again";
    if (!lr_expect_line(&lr, EHLO_AGAIN) || !send_str(fd, OK_250)) {
        goto out;
    }
    /* The client sends its ClientHello right behind the line: wait until both are queued so
     * that the reader surely reads past the line. */
    s->step = "pipelined STARTTLS (round 2)";
    if (lr.len != 0 || !wait_queued(fd, strlen(STARTTLS), NULL) || !lr_expect_line(&lr, STARTTLS)) {
        goto out;
    }
    s->preread_2 = lr.len;
    memcpy(pre, lr.buf, lr.len);
    opts.preread = pre;
    opts.preread_len = lr.len;
    s->step = "attach with preread (round 2)";
    rc = tlsock_attach_fd(s->ctx, fd, &opts, &conn);
    if (rc == 0) {
        /* The go-ahead travels over TLS: nothing plaintext may sit between the two hellos. */
        s->step = "TLS data (round 2)";
        rc = tlsock_write(conn, GO_AHEAD, strlen(GO_AHEAD));
    }
    if (rc == 0) {
        rc = read_pattern(conn, T2_UP, 21);
    }
    if (rc == 0) {
        rc = write_pattern(conn, T2_DOWN, 22);
    }
    if (rc == 0) {
        s->step = "read the client's close_notify + QUIT burst";
        rc = wait_queued(fd, 0, QUIT) ? tlsock_read(conn, &byte, 1, &n) : TS_ESETUP;
        rc = rc == TLSOCK_ECLOSED ? 0 : (rc == 0 ? TS_EMISMATCH : rc);
    }
    if (rc == 0) {
        s->step = "detach (round 2)";
        rc = server_detach(s, &conn, fd, &lr);
    }
    if (rc == 0) {
        s->step = "QUIT, then the end of the stream";
        rc =
            lr_expect_line(&lr, QUIT) && send_str(fd, BYE) && lr_expect_eof(&lr) ? 0 : TS_EMISMATCH;
    }
out:
    if (conn != NULL) {
        snprintf(s->errmsg, sizeof(s->errmsg), "%s", tlsock_conn_errmsg(conn));
    }
    tlsock_close(conn);
    return rc;
}

/* The client's detach: checks the socket and its flags, and continues after the leftover. */
static void client_detach(struct tlsock_conn **conn, int fd, struct line_reader *lr)
{
    unsigned char leftover[LINE_CAP];
    size_t leftover_len = 0;
    int dfd = -1;

    TS_ASSERT_RC_MSG(tlsock_detach(*conn, &dfd, leftover, sizeof(leftover), &leftover_len), 0,
                     tlsock_conn_errmsg(*conn));
    *conn = NULL;
    assert_int_equal(dfd, fd);
    assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
    assert_true(lr_init(lr, fd, leftover, leftover_len));
}

struct protocol_case {
    const char *what;
    const char *protocols;
};

static const struct protocol_case protocol_cases[] = {
    {.what = "TLS 1.3", .protocols = "1.3"},
    {.what = "TLS 1.2", .protocols = "1.2-1.2"},
};

static void test_starttls_there_and_back_twice(void **state)
{
    for (size_t i = 0; i < sizeof(protocol_cases) / sizeof(protocol_cases[0]); i++) {
        struct mail_server s = {.step = "not started", .fd_returned = true, .blocking_after = true};
        struct tlsock_opts opts = ts_opts();
        struct line_reader lr;
        struct ts_env *env;
        unsigned char byte;
        char go[sizeof(GO_AHEAD) - 1];
        size_t n = 0;
        int fd = -1;

        print_message("%s\n", protocol_cases[i].what);
        ts_env_renew(state, i);
        env = *state;
        TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
        s.ctx = env->sctx;
        TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
        TS_ASSERT_RC(tlsock_ctx_set_protocols(env->cctx, protocol_cases[i].protocols), 0);
        TS_ASSERT_RC(ts_server_start_raw(&env->srv, NULL, 0, serve_mail, &s), 0);
        assert_int_equal(ts_raw_connect("127.0.0.1", env->srv.port, 0, &fd), 0);
        assert_true(lr_init(&lr, fd, NULL, 0));
        opts.verify_name = "localhost";

        /* Plaintext, then the classic upgrade. */
        assert_true(send_str(fd, EHLO));
        assert_true(lr_expect_line(&lr, OK_250));
        assert_true(send_str(fd, STARTTLS));
        assert_true(lr_expect_line(&lr, GO_AHEAD));
        assert_int_equal(lr.len, 0);
        TS_ASSERT_RC(tlsock_attach_fd(env->cctx, fd, &opts, &env->client), 0);
        TS_ASSERT_RC_MSG(write_pattern(env->client, T1_UP, 11), 0, tlsock_conn_errmsg(env->client));
        TS_ASSERT_RC_MSG(read_pattern(env->client, T1_DOWN, 12), 0,
                         tlsock_conn_errmsg(env->client));
        /* The server's close_notify and its plaintext line are both queued when TLS reads. */
        assert_true(wait_queued(fd, 0, PLAIN_AGAIN));
        TS_ASSERT_RC(tlsock_read(env->client, &byte, 1, &n), TLSOCK_ECLOSED);
        client_detach(&env->client, fd, &lr);

        /* Plaintext again: the line that followed close_notify comes first, intact. */
        assert_true(lr_expect_line(&lr, PLAIN_AGAIN));
        assert_true(send_str(fd, EHLO_AGAIN));
        assert_true(lr_expect_line(&lr, OK_250));
        assert_int_equal(lr.len, 0);

        /* Second upgrade, pipelined: the ClientHello follows "STARTTLS" without waiting. */
        assert_true(send_str(fd, STARTTLS));
        TS_ASSERT_RC(tlsock_attach_fd(env->cctx, fd, &opts, &env->client), 0);
        TS_ASSERT_RC_MSG(ts_read_full(env->client, go, sizeof(go)), 0,
                         tlsock_conn_errmsg(env->client));
        assert_memory_equal(go, GO_AHEAD, sizeof(go));
        TS_ASSERT_RC_MSG(write_pattern(env->client, T2_UP, 21), 0, tlsock_conn_errmsg(env->client));
        TS_ASSERT_RC_MSG(read_pattern(env->client, T2_DOWN, 22), 0,
                         tlsock_conn_errmsg(env->client));
        /* This time the client ends TLS with close_notify and "QUIT" in one burst. */
        set_cork(fd, 1);
        TS_ASSERT_RC(tlsock_shutdown(env->client), 0);
        assert_true(send_str(fd, QUIT));
        set_cork(fd, 0);
        client_detach(&env->client, fd, &lr);
        assert_true(lr_expect_line(&lr, BYE));
        assert_int_equal(lr.len, 0);
        assert_int_equal(close(fd), 0);

        ts_server_stop(&env->srv);
        if (env->srv.result != 0) {
            print_error("server stopped at: %s\n", s.step);
        }
        TS_ASSERT_RC_MSG(env->srv.result, 0, s.errmsg);
        /* The pipelining really happened: the server read past the STARTTLS line. */
        assert_true(s.preread_2 > 0);
        assert_true(s.fd_returned);
        assert_true(s.blocking_after);
    }
}

/* ---- application data before close_notify ---------------------------------------------------- */

/* More than one record, so that part of it is still in TLS when detach stops. */
#define LATE_DATA 40000

struct late_data_server {
    int final_rc;
};

/* Sends data, then close_notify, then waits for the client's close_notify. */
static int serve_data_then_close(struct tlsock_conn *conn, void *arg)
{
    struct late_data_server *s = arg;
    unsigned char byte;
    size_t n = 0;
    int rc = write_pattern(conn, LATE_DATA, 31);

    if (rc == 0) {
        rc = tlsock_shutdown(conn);
    }
    if (rc == 0) {
        s->final_rc = tlsock_read(conn, &byte, 1, &n);
    }
    return rc;
}

static void test_data_before_close_notify(void **state)
{
    struct ts_env *env = *state;
    struct late_data_server s = {.final_rc = TS_NOT_RUN};
    struct tlsock_opts opts = ts_opts();
    unsigned char leftover[64];
    unsigned char byte;
    size_t leftover_len = 12345;
    size_t n = 0;
    int fd = -2;

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    TS_ASSERT_RC(ts_server_start(&env->srv, env->sctx, NULL, NULL, serve_data_then_close, &s), 0);
    TS_ASSERT_RC(tlsock_connect(env->cctx, "127.0.0.1", env->srv.port, &opts, &env->client), 0);
    /* The server's data comes before its close_notify: detach must not swallow it. */
    TS_ASSERT_RC(tlsock_detach(env->client, &fd, leftover, sizeof(leftover), &leftover_len),
                 TLSOCK_EINVAL);
    TS_ASSERT_CONTAINS(tlsock_conn_errmsg(env->client), "close_notify");
    assert_int_equal(fd, -2);
    assert_int_equal(leftover_len, 12345);
    assert_true(tlsock_conn_pending(env->client) > 0);
    /* Detaching again at once refuses again: the data is still unread. */
    TS_ASSERT_RC(tlsock_detach(env->client, &fd, leftover, sizeof(leftover), &leftover_len),
                 TLSOCK_EINVAL);
    /* Lossless: all of it, in order, then the close. */
    TS_ASSERT_RC_MSG(read_pattern(env->client, LATE_DATA, 31), 0, tlsock_conn_errmsg(env->client));
    TS_ASSERT_RC(tlsock_read(env->client, &byte, 1, &n), TLSOCK_ECLOSED);
    TS_ASSERT_RC_MSG(tlsock_detach(env->client, &fd, leftover, sizeof(leftover), &leftover_len), 0,
                     tlsock_conn_errmsg(env->client));
    env->client = NULL;
    assert_true(fd >= 0);
    assert_int_equal(leftover_len, 0);
    /* tlsock opened this socket, but after a detach it is the caller's to close. */
    assert_int_equal(close(fd), 0);
    ts_server_stop(&env->srv);
    TS_ASSERT_RC_MSG(env->srv.result, 0, env->srv.errmsg);
    /* The first detach attempt had already sent our close_notify. */
    TS_ASSERT_RC(s.final_rc, TLSOCK_ECLOSED);
}

/* ---- the descriptor handed back -------------------------------------------------------------- */

#define PING         "ping"
#define PONG         "pong"
#define PLAIN_CLIENT "plain from client\r\n"
#define PLAIN_SERVER "plain from server\r\n"

struct plain_server {
    struct tlsock_ctx *ctx;
    const char *step;
    char errmsg[TLSOCK__ERRMSG_SIZE];
};

/* TLS on the raw socket (ping/pong), the client detaches first, then plaintext both ways. */
static int serve_tls_then_plain(int fd, void *arg)
{
    struct plain_server *s = arg;
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    struct line_reader lr;
    unsigned char leftover[LINE_CAP];
    size_t leftover_len = 0;
    char buf[4];
    size_t n = 0;
    int dfd = -1;
    int rc = tlsock_attach_fd(s->ctx, fd, &opts, &conn);

    s->step = "ping";
    if (rc == 0) {
        rc = ts_read_full(conn, buf, sizeof(buf));
    }
    if (rc == 0) {
        rc = memcmp(buf, PING, 4) == 0 ? tlsock_write(conn, PONG, 4) : TS_EMISMATCH;
    }
    if (rc == 0) {
        s->step = "the client's close_notify";
        rc = tlsock_read(conn, buf, 1, &n);
        rc = rc == TLSOCK_ECLOSED ? 0 : (rc == 0 ? TS_EMISMATCH : rc);
    }
    if (rc == 0) {
        s->step = "detach";
        rc = tlsock_detach(conn, &dfd, leftover, sizeof(leftover), &leftover_len);
    }
    if (rc == 0) {
        conn = NULL;
        s->step = "plaintext";
        rc = dfd == fd && lr_init(&lr, fd, leftover, leftover_len) &&
                     lr_expect_line(&lr, PLAIN_CLIENT) && send_str(fd, PLAIN_SERVER) &&
                     lr_expect_eof(&lr)
                 ? 0
                 : TS_EMISMATCH;
    }
    if (conn != NULL) {
        snprintf(s->errmsg, sizeof(s->errmsg), "%s", tlsock_conn_errmsg(conn));
    }
    tlsock_close(conn);
    return rc;
}

struct handback_case {
    const char *what;
    bool connect;     /* tlsock_connect() opened the socket; else the caller's, attached */
    bool nonblocking; /* the caller's socket was non-blocking before the attach */
};

static const struct handback_case handback_cases[] = {
    {.what = "socket opened by tlsock_connect", .connect = true},
    {.what = "attached blocking socket"},
    {.what = "attached non-blocking socket", .nonblocking = true},
};

static void test_detach_hands_back_socket(void **state)
{
    for (size_t i = 0; i < sizeof(handback_cases) / sizeof(handback_cases[0]); i++) {
        const struct handback_case *c = &handback_cases[i];
        struct plain_server s = {.step = "not started"};
        struct tlsock_opts opts = ts_opts();
        struct line_reader lr;
        unsigned char leftover[LINE_CAP];
        size_t leftover_len = 0;
        char buf[4];
        struct ts_env *env;
        int fd = -1;
        int dfd = -1;
        int flags_before = -1;

        print_message("%s\n", c->what);
        ts_env_renew(state, i);
        env = *state;
        TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
        s.ctx = env->sctx;
        TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
        TS_ASSERT_RC(ts_server_start_raw(&env->srv, NULL, 0, serve_tls_then_plain, &s), 0);
        if (c->connect) {
            TS_ASSERT_RC(tlsock_connect(env->cctx, "127.0.0.1", env->srv.port, &opts, &env->client),
                         0);
        } else {
            assert_int_equal(ts_raw_connect("127.0.0.1", env->srv.port, 0, &fd), 0);
            if (c->nonblocking) {
                assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
            }
            flags_before = fcntl(fd, F_GETFL);
            opts.verify_name = "localhost";
            TS_ASSERT_RC(tlsock_attach_fd(env->cctx, fd, &opts, &env->client), 0);
        }
        TS_ASSERT_RC(tlsock_write(env->client, PING, 4), 0);
        TS_ASSERT_RC_MSG(ts_read_full(env->client, buf, 4), 0, tlsock_conn_errmsg(env->client));
        assert_memory_equal(buf, PONG, 4);
        TS_ASSERT_RC_MSG(
            tlsock_detach(env->client, &dfd, leftover, sizeof(leftover), &leftover_len), 0,
            tlsock_conn_errmsg(env->client));
        env->client = NULL;
        if (c->connect) {
            /* A socket tlsock opened comes back open and blocking; closing it is ours now. */
            assert_true(dfd >= 0);
            assert_int_not_equal(fcntl(dfd, F_GETFD), -1);
            assert_int_equal(fcntl(dfd, F_GETFL) & O_NONBLOCK, 0);
            fd = dfd;
        } else {
            /* The caller's socket comes back with the caller's flags. */
            assert_int_equal(dfd, fd);
            assert_int_equal(fcntl(fd, F_GETFL), flags_before);
        }
        assert_true(lr_init(&lr, fd, leftover, leftover_len));
        assert_true(send_str(fd, PLAIN_CLIENT));
        assert_true(lr_expect_line(&lr, PLAIN_SERVER));
        assert_int_equal(close(fd), 0);
        ts_server_stop(&env->srv);
        if (env->srv.result != 0) {
            print_error("server stopped at: %s\n", s.step);
        }
        TS_ASSERT_RC_MSG(env->srv.result, 0, s.errmsg);
    }
}

/* ---- a peer slow to send close_notify -------------------------------------------------------- */

struct slow_close_server {
    struct ts_gate *gate;
    int final_rc;
};

static int serve_close_when_released(struct tlsock_conn *conn, void *arg)
{
    struct slow_close_server *s = arg;
    unsigned char byte;
    size_t n = 0;
    int rc = tlsock_handshake(conn);

    if (rc == 0) {
        rc = ts_gate_wait(s->gate, TS_IO_TIMEOUT_MS) ? 0 : TS_ESETUP;
    }
    if (rc == 0) {
        rc = tlsock_shutdown(conn);
    }
    if (rc == 0) {
        s->final_rc = tlsock_read(conn, &byte, 1, &n);
    }
    return rc;
}

/* Waiting for the peer's close_notify is bounded by the timeout, and a timeout there is a read
 * timeout: the connection stays, and detaching again later succeeds. */
static void test_detach_timeout_is_retryable(void **state)
{
    struct ts_env *env = *state;
    struct slow_close_server s = {.gate = &env->gate, .final_rc = TS_NOT_RUN};
    struct tlsock_opts opts = ts_opts();
    unsigned char leftover[64];
    size_t leftover_len = 0;
    int fd = -1;
    int64_t start;
    int64_t elapsed;

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    TS_ASSERT_RC(ts_server_start(&env->srv, env->sctx, NULL, NULL, serve_close_when_released, &s),
                 0);
    TS_ASSERT_RC(tlsock_connect(env->cctx, "127.0.0.1", env->srv.port, &opts, &env->client), 0);
    TS_ASSERT_RC(tlsock_conn_set_timeout(env->client, SHORT_MS), 0);
    start = tlsock_now_ms();
    TS_ASSERT_RC(tlsock_detach(env->client, &fd, leftover, sizeof(leftover), &leftover_len),
                 TLSOCK_ETIMEDOUT);
    elapsed = tlsock_now_ms() - start;
    /* Not early, and well within scheduling noise (generous for valgrind). */
    assert_true(elapsed >= SHORT_MS - 5);
    assert_true(elapsed < SHORT_MS + 3000);
    assert_int_equal(fd, -1);
    ts_gate_open(&env->gate);
    TS_ASSERT_RC(tlsock_conn_set_timeout(env->client, TS_IO_TIMEOUT_MS), 0);
    TS_ASSERT_RC_MSG(tlsock_detach(env->client, &fd, leftover, sizeof(leftover), &leftover_len), 0,
                     tlsock_conn_errmsg(env->client));
    env->client = NULL;
    assert_true(fd >= 0);
    assert_int_equal(leftover_len, 0);
    assert_int_equal(close(fd), 0);
    ts_server_stop(&env->srv);
    TS_ASSERT_RC_MSG(env->srv.result, 0, env->srv.errmsg);
    TS_ASSERT_RC(s.final_rc, TLSOCK_ECLOSED);
}

/* ---- memory mode ----------------------------------------------------------------------------- */

/* Moves everything @p from has to send into @p to. */
static void pump(struct tlsock_conn *from, struct tlsock_conn *to)
{
    unsigned char buf[4096];

    /* Each round empties up to 4 KiB; 1000 rounds are far more than any flight here. */
    for (int i = 0; i < 1000 && tlsock_conn_pending_output(from) > 0; i++) {
        size_t n = 0;

        if (tlsock_drain(from, buf, sizeof(buf), &n) != 0 || tlsock_feed(to, buf, n) != 0) {
            break;
        }
    }
}

/* Two memory-mode connections talking to each other, and their contexts. */
struct mem_pair {
    struct tlsock_ctx *cctx;
    struct tlsock_ctx *sctx;
    struct tlsock_conn *client;
    struct tlsock_conn *server;
};

/* Handshakes the pair in setup, so that a failed assertion in a test still frees it all. */
static int mem_pair_setup(void **state)
{
    struct tlsock_opts opts = ts_opts();
    struct mem_pair *p = calloc(1, sizeof(*p));
    int crc = TLSOCK_EWANT_READ;
    int src = TLSOCK_EWANT_READ;

    *state = p;
    if (p == NULL || ts_server_ctx_new(&ts_pki.server, &p->sctx) != 0 ||
        ts_client_ctx_new(ts_pki.ca.cert, &p->cctx) != 0) {
        return -1;
    }
    opts.verify_name = "localhost";
    if (tlsock_attach_mem(p->cctx, &opts, &p->client) != 0 ||
        tlsock_attach_mem(p->sctx, &opts, &p->server) != 0) {
        return -1;
    }
    /* A TLS 1.3 handshake takes two round trips at most; 20 is plenty. */
    for (int i = 0; i < 20 && (crc == TLSOCK_EWANT_READ || src == TLSOCK_EWANT_READ); i++) {
        crc = tlsock_handshake(p->client);
        pump(p->client, p->server);
        src = tlsock_handshake(p->server);
        pump(p->server, p->client);
    }
    if (crc != 0 || src != 0) {
        print_error("memory handshake: client %s (%s), server %s (%s)\n", ts_rc_name(crc),
                    tlsock_conn_errmsg(p->client), ts_rc_name(src), tlsock_conn_errmsg(p->server));
        return -1;
    }
    return 0;
}

static int mem_pair_teardown(void **state)
{
    struct mem_pair *p = *state;

    if (p != NULL) {
        tlsock_close(p->client);
        tlsock_close(p->server);
        tlsock_ctx_free(p->cctx);
        tlsock_ctx_free(p->sctx);
        free(p);
        *state = NULL;
    }
    return 0;
}

#define TAIL "PLAIN tail\r\n"

/*
 * In memory mode detach hands back no socket (-1) and, as leftover, the fed bytes that followed
 * the peer's close_notify. A buffer too small for them is refused with the size needed, and the
 * connection stays usable until a large enough one comes.
 */
static void test_detach_memory_mode(void **state)
{
    struct mem_pair *p = *state;
    unsigned char burst[4096];
    unsigned char leftover[64];
    char buf[8];
    size_t burst_len = 0;
    size_t leftover_len = 0;
    size_t n = 0;
    int fd = -2;

    TS_ASSERT_RC(tlsock_write(p->client, "hello", 5), 0);
    pump(p->client, p->server);
    assert_int_equal(tlsock_conn_pending_output(p->client), 0);
    TS_ASSERT_RC(tlsock_read(p->server, buf, sizeof(buf), &n), 0);
    assert_int_equal(n, 5);
    assert_memory_equal(buf, "hello", 5);

    /* The server's close_notify and plaintext after it arrive in one piece. */
    TS_ASSERT_RC(tlsock_shutdown(p->server), 0);
    TS_ASSERT_RC(tlsock_drain(p->server, burst, sizeof(burst) - strlen(TAIL), &burst_len), 0);
    assert_int_equal(tlsock_conn_pending_output(p->server), 0);
    memcpy(burst + burst_len, TAIL, strlen(TAIL));
    TS_ASSERT_RC(tlsock_feed(p->client, burst, burst_len + strlen(TAIL)), 0);

    /* Our close_notify is queued but not drained yet: detach says so. */
    TS_ASSERT_RC(tlsock_detach(p->client, &fd, leftover, sizeof(leftover), &leftover_len),
                 TLSOCK_EWANT_WRITE);
    assert_int_equal(fd, -2);
    assert_true(tlsock_conn_pending_output(p->client) > 0);
    pump(p->client, p->server);
    assert_int_equal(tlsock_conn_pending_output(p->client), 0);

    /* Too small: refused, with the size needed, and nothing taken. */
    TS_ASSERT_RC(tlsock_detach(p->client, &fd, leftover, 3, &leftover_len), TLSOCK_EINVAL);
    assert_int_equal(leftover_len, strlen(TAIL));
    assert_int_equal(fd, -2);
    TS_ASSERT_RC(tlsock_detach(p->client, &fd, NULL, 0, &leftover_len), TLSOCK_EINVAL);
    assert_int_equal(leftover_len, strlen(TAIL));
    /* Still a connection: the peer's close is still reported as such. */
    TS_ASSERT_RC(tlsock_read(p->client, buf, sizeof(buf), &n), TLSOCK_ECLOSED);
    TS_ASSERT_RC_MSG(tlsock_detach(p->client, &fd, leftover, strlen(TAIL), &leftover_len), 0,
                     tlsock_conn_errmsg(p->client));
    p->client = NULL;
    assert_int_equal(fd, -1);
    assert_int_equal(leftover_len, strlen(TAIL));
    assert_memory_equal(leftover, TAIL, strlen(TAIL));

    /* The server got the client's close_notify and nothing after it. */
    fd = -2;
    TS_ASSERT_RC_MSG(tlsock_detach(p->server, &fd, leftover, sizeof(leftover), &leftover_len), 0,
                     tlsock_conn_errmsg(p->server));
    p->server = NULL;
    assert_int_equal(fd, -1);
    assert_int_equal(leftover_len, 0);
}

static void test_detach_arguments(void **state)
{
    struct mem_pair *p = *state;
    unsigned char leftover[16];
    size_t leftover_len = 7;
    int fd = -2;

    TS_ASSERT_RC(tlsock_detach(NULL, &fd, leftover, sizeof(leftover), &leftover_len),
                 TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_detach(p->client, NULL, leftover, sizeof(leftover), &leftover_len),
                 TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_detach(p->client, &fd, leftover, sizeof(leftover), NULL), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_detach(p->client, &fd, NULL, sizeof(leftover), &leftover_len),
                 TLSOCK_EINVAL);
    assert_int_equal(fd, -2);
    assert_int_equal(leftover_len, 7);
    /* The refusals left the connection as it was. */
    TS_ASSERT_RC(tlsock_write(p->client, "x", 1), 0);
    assert_true(tlsock_conn_pending_output(p->client) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_starttls_there_and_back_twice, ts_env_setup,
                                        ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_data_before_close_notify, ts_env_setup,
                                        ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_detach_hands_back_socket, ts_env_setup,
                                        ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_detach_timeout_is_retryable, ts_env_setup,
                                        ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_detach_memory_mode, mem_pair_setup, mem_pair_teardown),
        cmocka_unit_test_setup_teardown(test_detach_arguments, mem_pair_setup, mem_pair_teardown),
    };

    return cmocka_run_group_tests_name("detach", tests, ts_pki_setup, ts_pki_teardown);
}
