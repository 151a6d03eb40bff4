/* Detach: TLS ends, the socket goes on in plaintext, and no byte is lost or duplicated at any
 * boundary (plaintext -> TLS -> plaintext -> TLS -> plaintext), including bytes pipelined behind a
 * STARTTLS line or behind a close_notify; the edge cases of tlsock_detach() (data before
 * close_notify, a small leftover buffer, a peer slow to close, descriptor flags, memory mode);
 * and many random rounds of TLS on and off on one stream, over TCP and in memory. */
#include "pair.h"

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

/*
 * Sends all of @p len bytes at @p buf (@p out), or receives exactly that many into it, on a
 * blocking or non-blocking socket, within TS_IO_TIMEOUT_MS.
 */
static bool move_all(int fd, void *buf, size_t len, bool out)
{
    unsigned char *p = buf;
    size_t done = 0;
    int64_t deadline = tlsock_now_ms() + TS_IO_TIMEOUT_MS;

    /* Each pass moves at least one byte or stops. */
    for (size_t i = 0; i <= len && done < len; i++) {
        struct pollfd pfd = {.fd = fd, .events = out ? POLLOUT : POLLIN};
        ssize_t n;

        if (tlsock_now_ms() > deadline || poll(&pfd, 1, TS_IO_TIMEOUT_MS) != 1) {
            break;
        }
        n = out ? send(fd, p + done, len - done, MSG_NOSIGNAL | MSG_DONTWAIT)
                : recv(fd, p + done, len - done, MSG_DONTWAIT);
        if (n <= 0) {
            break;
        }
        done += (size_t)n;
    }
    return done == len;
}

static bool send_all(int fd, const void *data, size_t len)
{
    return move_all(fd, (void *)data, len, true);
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
    int rc = TS_ESETUP;

    if (got != NULL) {
        rc = ts_read_full(conn, got, len);
        if (rc == 0 && !ts_same_pattern(got, len, seed)) {
            rc = TS_EMISMATCH;
        }
    }
    free(got);
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

#define TAIL "PLAIN tail\r\n"

/*
 * In memory mode detach hands back no socket (-1) and, as leftover, the fed bytes that followed
 * the peer's close_notify. A buffer too small for them is refused with the size needed, and the
 * connection stays usable until a large enough one comes.
 */
static void test_detach_memory_mode(void **state)
{
    struct ts_pair *p = *state;
    unsigned char leftover[64];
    char buf[8];
    size_t feeds;
    size_t leftover_len = 0;
    size_t n = 0;
    int fd = -2;

    TS_ASSERT_RC(tlsock_write(p->client, "hello", 5), 0);
    TS_ASSERT_RC(ts_pair_move(p, TS_C2S), 0);
    assert_int_equal(tlsock_conn_pending_output(p->client), 0);
    TS_ASSERT_RC(tlsock_read(p->server, buf, sizeof(buf), &n), 0);
    assert_int_equal(n, 5);
    assert_memory_equal(buf, "hello", 5);

    /* The server's close_notify and plaintext after it arrive in one piece. */
    TS_ASSERT_RC(tlsock_shutdown(p->server), 0);
    feeds = p->path[TS_S2C].feeds;
    TS_ASSERT_RC(ts_pair_move_tail(p, TS_S2C, TAIL, strlen(TAIL)), 0);
    assert_int_equal(tlsock_conn_pending_output(p->server), 0);
    assert_int_equal(p->path[TS_S2C].feeds, feeds + 1);

    /* Our close_notify is queued but not drained yet: detach says so. */
    TS_ASSERT_RC(tlsock_detach(p->client, &fd, leftover, sizeof(leftover), &leftover_len),
                 TLSOCK_EWANT_WRITE);
    assert_int_equal(fd, -2);
    assert_true(tlsock_conn_pending_output(p->client) > 0);
    TS_ASSERT_RC(ts_pair_move(p, TS_C2S), 0);
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
    struct ts_pair *p = *state;
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

/* ---- random rounds: TLS on and off again and again --------------------------------------------
 *
 * Each round starts TLS on the same stream, sends random amounts of TLS data both ways, ends TLS
 * with one side's close_notify followed by plaintext in the same segment (TCP_CORK over TCP, the
 * same feed in memory mode), then the other side's close_notify, also followed by plaintext; both
 * detach, and each reads the other's plaintext: what detach handed back first, then the rest.
 * Every byte must arrive exactly once, in order. Sizes, who ends first, how the second side ends
 * and the TLS version are drawn from a seeded generator: the seed is printed, and
 * TLSOCK_TEST_SEED=<seed> replays the same rounds.
 */

#define RANDOM_MAX_ROUNDS 250
#define RANDOM_MIN_ROUNDS 6
/* Per transport: rounds go on until this much time has passed, at least RANDOM_MIN_ROUNDS. */
#define RANDOM_BUDGET_MS 500
#define RANDOM_TLS_MAX   40000
#define RANDOM_PLAIN_MAX 6000

struct round_plan {
    bool server_first;   /* the server ends TLS first (else the client) */
    bool second_reads;   /* the second side reads the first's close_notify before detaching */
    bool second_shuts;   /* the second side sends close_notify before detaching (else detach
                          * sends it) */
    bool tls12;          /* the client offers TLS 1.2 only */
    size_t tls_up;       /* TLS data, client to server */
    size_t tls_down;     /* TLS data, server to client */
    size_t plain_first;  /* plaintext after the first side's close_notify */
    size_t plain_second; /* plaintext after the second side's close_notify */
    size_t burst_first;  /* memory mode: how much of plain_first is in the close_notify's feed */
    size_t burst_second;
    size_t chunk; /* memory mode: bytes per feed */
};

/* xorshift64*: small, and the same sequence everywhere for a seed. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static size_t rng_below(uint64_t *s, size_t n)
{
    return n > 0 ? (size_t)(rng_next(s) % n) : 0;
}

/* A size up to @p max: often 0 or next to a record boundary (16384), otherwise anything. */
static size_t random_size(uint64_t *s, size_t max)
{
    size_t kind = rng_below(s, 8);

    if (kind == 0) {
        return 0;
    }
    if (kind == 1 && max > 16390) {
        return 16384 - 2 + rng_below(s, 5);
    }
    return 1 + rng_below(s, max);
}

static void plan_rounds(uint64_t seed, struct round_plan *plans, size_t count)
{
    static const size_t chunks[] = {TS_PAIR_CHUNK, 4096, 1000, 100, 7};
    uint64_t s = seed != 0 ? seed : 1;

    for (size_t i = 0; i < count; i++) {
        struct round_plan *r = &plans[i];

        r->server_first = rng_below(&s, 2) == 0;
        r->second_reads = rng_below(&s, 2) == 0;
        r->second_shuts = rng_below(&s, 2) == 0;
        r->tls12 = rng_below(&s, 4) == 0;
        r->tls_up = random_size(&s, RANDOM_TLS_MAX);
        r->tls_down = random_size(&s, RANDOM_TLS_MAX);
        r->plain_first = random_size(&s, RANDOM_PLAIN_MAX);
        r->plain_second = random_size(&s, RANDOM_PLAIN_MAX);
        r->burst_first = rng_below(&s, r->plain_first + 1);
        r->burst_second = rng_below(&s, r->plain_second + 1);
        r->chunk = chunks[rng_below(&s, sizeof(chunks) / sizeof(chunks[0]))];
    }
}

static void print_plan(size_t round, const struct round_plan *r)
{
    print_error("round %zu: %s ends first (the other %s, %s), TLS %s, %zu bytes up, %zu down, "
                "plaintext %zu (%zu in the close_notify's feed) then %zu (%zu), feeds of %zu\n",
                round, r->server_first ? "the server" : "the client",
                r->second_reads ? "reads its close_notify first" : "detaches at once",
                r->second_shuts ? "shuts down before detaching" : "detach sends close_notify",
                r->tls12 ? "1.2" : "1.3", r->tls_up, r->tls_down, r->plain_first, r->burst_first,
                r->plain_second, r->burst_second, r->chunk);
}

/* The seed: TLSOCK_TEST_SEED if set, else the clock's; printed so a failure can be replayed. */
static uint64_t random_seed(void)
{
    const char *env = getenv("TLSOCK_TEST_SEED");
    uint64_t seed;

    if (env != NULL && env[0] != '\0') {
        seed = strtoull(env, NULL, 0);
    } else {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid();
    }
    print_message("seed %llu (TLSOCK_TEST_SEED=%llu replays these rounds)\n",
                  (unsigned long long)seed, (unsigned long long)seed);
    return seed;
}

/* The four patterns of round @p round: TLS up, TLS down, the first's and the second's plaintext. */
enum { SEED_UP, SEED_DOWN, SEED_FIRST, SEED_SECOND };

static unsigned round_seed(size_t round, int which)
{
    return (unsigned)(round * 4 + (size_t)which + 1000);
}

/* ---- over TCP: one thread per side ---- */

/* One side of the TCP rounds; the server's half runs in the server thread. */
struct tcp_side {
    bool is_server;
    int fd;
    struct tlsock_ctx *ctx[2]; /* [tls12]; the server's two are the same */
    const struct round_plan *plans;
    size_t rounds;   /* rounds done */
    size_t leftover; /* bytes detach handed back, over all rounds */
    const char *step;
    char errmsg[TLSOCK__ERRMSG_SIZE];
};

/* TLS data of the round: the client sends first, then the server, so neither waits on the other
 * while both write. */
static int tcp_data(struct tcp_side *s, struct tlsock_conn *conn, size_t round,
                    const struct round_plan *r)
{
    int rc = 0;

    for (int turn = 0; turn < 2 && rc == 0; turn++) {
        bool up = turn == 0;
        size_t len = up ? r->tls_up : r->tls_down;
        unsigned seed = round_seed(round, up ? SEED_UP : SEED_DOWN);

        if (len == 0) {
            continue;
        }
        rc = up != s->is_server ? write_pattern(conn, len, seed) : read_pattern(conn, len, seed);
    }
    return rc;
}

static int tcp_round(struct tcp_side *s, size_t round)
{
    const struct round_plan *r = &s->plans[round];
    bool first = r->server_first == s->is_server;
    size_t mine = first ? r->plain_first : r->plain_second;
    size_t theirs = first ? r->plain_second : r->plain_first;
    unsigned char out[RANDOM_PLAIN_MAX];
    unsigned char in[RANDOM_PLAIN_MAX];
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    unsigned char byte;
    size_t leftover_len = 0;
    size_t n = 0;
    int dfd = -1;
    int rc;

    ts_fill(out, mine, round_seed(round, first ? SEED_FIRST : SEED_SECOND));
    opts.verify_name = s->is_server ? NULL : "localhost";
    s->step = "attach";
    rc = tlsock_attach_fd(s->ctx[r->tls12], s->fd, &opts, &conn);
    if (rc == 0) {
        /* Before any cork: a corked handshake flight would wait for the cork's 200 ms. */
        s->step = "handshake";
        rc = tlsock_handshake(conn);
    }
    if (rc == 0) {
        s->step = "TLS data";
        rc = tcp_data(s, conn, round, r);
    }
    if (rc == 0 && !first && r->second_reads) {
        s->step = "read the close_notify";
        rc = tlsock_read(conn, &byte, 1, &n);
        rc = rc == TLSOCK_ECLOSED ? 0 : (rc == 0 ? TS_EMISMATCH : rc);
    }
    /* close_notify and the plaintext after it leave in one segment. */
    set_cork(s->fd, 1);
    if (rc == 0 && (first || r->second_shuts)) {
        s->step = "close_notify, then plaintext";
        rc = tlsock_shutdown(conn);
        if (rc == 0 && !send_all(s->fd, out, mine)) {
            rc = TS_ESETUP;
        }
        set_cork(s->fd, 0);
    }
    if (rc == 0) {
        s->step = "detach";
        rc = tlsock_detach(conn, &dfd, in, sizeof(in), &leftover_len);
    }
    if (rc == 0) {
        conn = NULL;
        rc = dfd == s->fd && leftover_len <= theirs ? 0 : TS_EMISMATCH;
        s->leftover += leftover_len;
    }
    if (rc == 0 && !first && !r->second_shuts) {
        s->step = "plaintext after detach's close_notify";
        rc = send_all(s->fd, out, mine) ? 0 : TS_ESETUP;
    }
    set_cork(s->fd, 0);
    if (rc == 0) {
        s->step = "the peer's plaintext";
        rc =
            move_all(s->fd, in + leftover_len, theirs - leftover_len, false) &&
                    ts_same_pattern(in, theirs, round_seed(round, first ? SEED_SECOND : SEED_FIRST))
                ? 0
                : TS_EMISMATCH;
    }
    if (conn != NULL) {
        snprintf(s->errmsg, sizeof(s->errmsg), "%s", tlsock_conn_errmsg(conn));
    }
    tlsock_close(conn);
    return rc;
}

/* As tlsock_connect() and tlsock_accept() do: no Nagle delay between a round's small writes. */
static void set_nodelay(int fd)
{
    int one = 1;

    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* The server's rounds: until the client closes the stream at the start of one. */
static int serve_random_rounds(int fd, void *arg)
{
    struct tcp_side *s = arg;
    int rc = 0;

    s->fd = fd;
    set_nodelay(fd);
    for (size_t i = 0; i < RANDOM_MAX_ROUNDS && rc == 0; i++) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        unsigned char byte;

        s->step = "wait for the next round";
        if (poll(&pfd, 1, TS_IO_TIMEOUT_MS) != 1) {
            rc = TS_ESETUP;
        } else if (recv(fd, &byte, 1, MSG_PEEK) == 0) {
            break;
        } else {
            rc = tcp_round(s, i);
        }
        if (rc == 0) {
            s->rounds = i + 1;
        }
    }
    return rc;
}

/* What the random tests own beyond their fixture, released by their teardowns even after a
 * failed assertion: the client's socket and the client contexts ([1] offers TLS 1.2 only). */
static struct {
    int fd;
    struct tlsock_ctx *cctx[2];
} rnd = {.fd = -1};

static void random_release(void)
{
    if (rnd.fd >= 0) {
        close(rnd.fd);
        rnd.fd = -1;
    }
    for (int i = 0; i < 2; i++) {
        tlsock_ctx_free(rnd.cctx[i]);
        rnd.cctx[i] = NULL;
    }
}

static void random_contexts(void)
{
    for (int i = 0; i < 2; i++) {
        TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &rnd.cctx[i]), 0);
    }
    TS_ASSERT_RC(tlsock_ctx_set_protocols(rnd.cctx[1], "1.2-1.2"), 0);
}

static int random_tcp_teardown(void **state)
{
    /* The socket first: a server thread still in a round then sees the end at once. */
    random_release();
    return ts_env_teardown(state);
}

static int random_memory_teardown(void **state)
{
    random_release();
    return ts_pair_teardown(state);
}

/* Rounds go on while there is time, at least RANDOM_MIN_ROUNDS of them. */
static bool another_round(size_t done, int64_t start)
{
    return done < RANDOM_MAX_ROUNDS &&
           (done < RANDOM_MIN_ROUNDS || tlsock_now_ms() - start < RANDOM_BUDGET_MS);
}

static void test_random_rounds_tcp(void **state)
{
    struct ts_env *env = *state;
    struct round_plan plans[RANDOM_MAX_ROUNDS];
    struct tcp_side server = {.is_server = true, .plans = plans, .step = "not started"};
    struct tcp_side client = {.plans = plans, .step = "not started"};
    int64_t start = tlsock_now_ms();
    int rc = 0;

    plan_rounds(random_seed(), plans, RANDOM_MAX_ROUNDS);
    random_contexts();
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    server.ctx[0] = server.ctx[1] = env->sctx;
    client.ctx[0] = rnd.cctx[0];
    client.ctx[1] = rnd.cctx[1];
    TS_ASSERT_RC(ts_server_start_raw(&env->srv, NULL, 0, serve_random_rounds, &server), 0);
    assert_int_equal(ts_raw_connect("127.0.0.1", env->srv.port, 0, &rnd.fd), 0);
    client.fd = rnd.fd;
    set_nodelay(rnd.fd);
    for (size_t i = 0; rc == 0 && another_round(i, start); i++) {
        rc = tcp_round(&client, i);
        if (rc == 0) {
            client.rounds = i + 1;
        } else {
            print_plan(i, &plans[i]);
            print_error("client: %s at \"%s\" (%s)\n", ts_rc_name(rc), client.step, client.errmsg);
        }
    }
    /* The end of the stream tells the server there is no next round. */
    close(rnd.fd);
    rnd.fd = -1;
    ts_server_stop(&env->srv);
    print_message("%zu rounds over TCP in %lld ms; detach handed back %zu bytes (client) and %zu "
                  "(server)\n",
                  client.rounds, (long long)(tlsock_now_ms() - start), client.leftover,
                  server.leftover);
    TS_ASSERT_RC_MSG(rc, 0, client.errmsg);
    if (env->srv.result != 0) {
        print_plan(server.rounds, &plans[server.rounds]);
        print_error("server: stopped at \"%s\"\n", server.step);
    }
    TS_ASSERT_RC_MSG(env->srv.result, 0, server.errmsg);
    assert_int_equal(server.rounds, client.rounds);
}

/* ---- in memory: both sides in this thread, on the shared pair ---- */

/* The connection of one side; NULL once it detached. */
static struct tlsock_conn **side_conn(struct ts_pair *p, bool server)
{
    return server ? &p->server : &p->client;
}

/*
 * Detaches the side of @p conn (moving its close_notify, and @p tail after it, to the other side
 * when detach asks for that) and checks that the leftover is exactly @p want.
 */
static int memory_detach(struct ts_pair *p, struct tlsock_conn **conn, enum ts_dir out,
                         const unsigned char *tail, size_t tail_len, const unsigned char *want,
                         size_t want_len)
{
    unsigned char leftover[RANDOM_PLAIN_MAX];
    size_t leftover_len = 0;
    int fd = -2;
    int rc = tlsock_detach(*conn, &fd, leftover, sizeof(leftover), &leftover_len);

    if (rc == TLSOCK_EWANT_WRITE) {
        rc = ts_pair_move_tail(p, out, tail, tail_len);
        if (rc == 0) {
            rc = tlsock_detach(*conn, &fd, leftover, sizeof(leftover), &leftover_len);
        }
    }
    if (rc == 0) {
        *conn = NULL;
        rc = fd == -1 && leftover_len == want_len && memcmp(leftover, want, want_len) == 0
                 ? 0
                 : TS_EMISMATCH;
    }
    return rc;
}

static int memory_round(struct ts_pair *p, size_t round, const struct round_plan *r,
                        const char **step)
{
    enum ts_dir forth = r->server_first ? TS_S2C : TS_C2S; /* from the first side */
    enum ts_dir back = r->server_first ? TS_C2S : TS_S2C;
    struct tlsock_conn **first = side_conn(p, r->server_first);
    struct tlsock_conn **second = side_conn(p, !r->server_first);
    unsigned char plain1[RANDOM_PLAIN_MAX];
    unsigned char plain2[RANDOM_PLAIN_MAX];
    unsigned char byte;
    size_t n = 0;
    int rc;

    ts_fill(plain1, r->plain_first, round_seed(round, SEED_FIRST));
    ts_fill(plain2, r->plain_second, round_seed(round, SEED_SECOND));
    p->path[TS_C2S].chunk = p->path[TS_S2C].chunk = r->chunk;
    *step = "attach";
    rc = ts_pair_attach(p, NULL, NULL);
    if (rc == 0) {
        *step = "handshake";
        rc = ts_pair_handshake(p);
    }
    if (rc == 0) {
        *step = "TLS data";
        rc = ts_pair_transfer(p, TS_C2S, r->tls_up, round_seed(round, SEED_UP));
    }
    if (rc == 0) {
        rc = ts_pair_transfer(p, TS_S2C, r->tls_down, round_seed(round, SEED_DOWN));
    }
    if (rc == 0) {
        /* The rest of the plaintext would come later, outside TLS: not detach's business. */
        *step = "close_notify, then plaintext";
        rc = tlsock_shutdown(*first);
    }
    if (rc == 0) {
        rc = ts_pair_move_tail(p, forth, plain1, r->burst_first);
    }
    if (rc == 0 && r->second_reads) {
        *step = "read the close_notify";
        rc = tlsock_read(*second, &byte, 1, &n);
        rc = rc == TLSOCK_ECLOSED ? 0 : (rc == 0 ? TS_EMISMATCH : rc);
    }
    if (rc == 0 && r->second_shuts) {
        rc = tlsock_shutdown(*second);
        if (rc == 0) {
            rc = ts_pair_move_tail(p, back, plain2, r->burst_second);
        }
    }
    if (rc == 0) {
        *step = "detach (second)";
        rc = memory_detach(p, second, back, plain2, r->burst_second, plain1, r->burst_first);
    }
    if (rc == 0) {
        *step = "detach (first)";
        rc = memory_detach(p, first, forth, NULL, 0, plain2, r->burst_second);
    }
    return rc;
}

static void test_random_rounds_memory(void **state)
{
    struct ts_pair *p = *state;
    struct round_plan plans[RANDOM_MAX_ROUNDS];
    const char *step = "not started";
    int64_t start = tlsock_now_ms();
    size_t rounds = 0;
    int rc = 0;

    plan_rounds(random_seed(), plans, RANDOM_MAX_ROUNDS);
    random_contexts();
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &p->sctx), 0);
    for (size_t i = 0; rc == 0 && another_round(i, start); i++) {
        /* The pair holds a reference on the round's client context. */
        tlsock_ctx_free(p->cctx);
        p->cctx = tlsock_ctx_ref(rnd.cctx[plans[i].tls12]);
        rc = memory_round(p, i, &plans[i], &step);
        if (rc == 0) {
            rounds = i + 1;
        } else {
            print_plan(i, &plans[i]);
            print_error("%s at \"%s\": client \"%s\", server \"%s\"\n", ts_rc_name(rc), step,
                        tlsock_conn_errmsg(p->client), tlsock_conn_errmsg(p->server));
        }
    }
    print_message("%zu rounds in memory in %lld ms\n", rounds,
                  (long long)(tlsock_now_ms() - start));
    TS_ASSERT_RC_MSG(rc, 0, step);
    assert_true(rounds >= RANDOM_MIN_ROUNDS);
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
        cmocka_unit_test_setup_teardown(test_detach_memory_mode, ts_pair_setup_connected,
                                        ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_detach_arguments, ts_pair_setup_connected,
                                        ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_random_rounds_tcp, ts_env_setup, random_tcp_teardown),
        cmocka_unit_test_setup_teardown(test_random_rounds_memory, ts_pair_setup,
                                        random_memory_teardown),
    };

    return cmocka_run_group_tests_name("detach", tests, ts_pki_setup, ts_pki_teardown);
}
