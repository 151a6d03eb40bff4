/* stdio streams over connections (tlsock_fopen): a line protocol with fprintf/fgets/fread/fwrite
 * on both ends, close_notify as a clean end of file, truncation and timeouts as stream errors,
 * and argument checks. */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SHORT_MS 200
#define LINES    5
#define BLOB     5000 /* server to client: binary, with NULs and newlines inside */
#define UPLOAD   3000 /* client to server */

struct stdio_server {
    struct tlsock_ctx *ctx;
    char step[64]; /* the command being served, to say where a failure happened */
    bool eof;      /* the server's last fgets saw the end of the stream */
    bool error;    /* ... or an error */
    char errmsg[TLSOCK__ERRMSG_SIZE];
};

/* Reads @p len bytes of pattern @p seed from @p f and checks them. */
static bool fread_pattern(FILE *f, size_t len, unsigned seed)
{
    unsigned char *got = malloc(len);
    bool ok = got != NULL && fread(got, 1, len, f) == len && ts_same_pattern(got, len, seed);

    free(got);
    return ok;
}

static bool fwrite_pattern(FILE *f, size_t len, unsigned seed)
{
    unsigned char *buf = malloc(len);
    bool ok = false;

    if (buf != NULL) {
        ts_fill(buf, len, seed);
        ok = fwrite(buf, 1, len, f) == len;
    }
    free(buf);
    return ok;
}

/*
 * One command per line, one reply per command; the stream is read to the end of each request
 * before the reply is written, so no input is buffered when the stream switches direction:
 *   ECHO <text>  -> <text>
 *   BLOB <n>     -> "DATA <n>" and n bytes of pattern 41
 *   PUT <n>      <- n bytes of pattern 42 -> "GOT <n>"
 *   QUIT         -> "BYE", then fclose (close_notify)
 */
static int serve_lines(FILE *f, struct stdio_server *s)
{
    char line[256];
    size_t n = 0;

    /* Bounded: a handful of commands, the last one QUIT. */
    for (int i = 0; i < 32; i++) {
        snprintf(s->step, sizeof(s->step), "reading command %d", i);
        if (fgets(line, sizeof(line), f) == NULL) {
            return TS_EMISMATCH;
        }
        snprintf(s->step, sizeof(s->step), "%.40s", line);
        if (strncmp(line, "ECHO ", 5) == 0) {
            fputs(line + 5, f);
        } else if (sscanf(line, "BLOB %zu", &n) == 1) {
            fprintf(f, "DATA %zu\n", n);
            if (!fwrite_pattern(f, n, 41)) {
                return TS_ESETUP;
            }
        } else if (sscanf(line, "PUT %zu", &n) == 1) {
            if (!fread_pattern(f, n, 42)) {
                return TS_EMISMATCH;
            }
            fprintf(f, "GOT %zu\n", n);
        } else if (strcmp(line, "QUIT\n") == 0) {
            fputs("BYE\n", f);
            return fflush(f) == 0 ? 0 : TS_ESETUP;
        } else {
            return TS_EMISMATCH;
        }
        if (fflush(f) != 0) {
            return TS_ESETUP;
        }
    }
    return TS_EMISMATCH;
}

static int serve_stdio(int fd, void *arg)
{
    struct stdio_server *s = arg;
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    FILE *f = NULL;
    int rc = tlsock_attach_fd(s->ctx, fd, &opts, &conn);

    if (rc == 0) {
        rc = tlsock_fopen(conn, "r+", &f);
    }
    if (rc != 0) {
        tlsock_close(conn);
        return rc;
    }
    rc = serve_lines(f, s);
    if (rc != 0) {
        snprintf(s->errmsg, sizeof(s->errmsg), "%s", tlsock_conn_errmsg(conn));
    }
    /* The stream owns the connection: fclose sends close_notify and frees it. The socket was
     * attached, so it stays open for the helper to close. */
    fclose(f);
    return rc;
}

static void expect_line(FILE *f, const char *want)
{
    char line[256];

    assert_non_null(fgets(line, sizeof(line), f));
    assert_string_equal(line, want);
}

static void test_line_protocol(void **state)
{
    struct ts_env *env = *state;
    struct stdio_server s = {.step = "before the first command"};
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    char line[256];
    char want[64];
    FILE *f = NULL;

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    s.ctx = env->sctx;
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    TS_ASSERT_RC(ts_server_start_raw(&env->srv, NULL, 0, serve_stdio, &s), 0);
    TS_ASSERT_RC(tlsock_connect(env->cctx, "127.0.0.1", env->srv.port, &opts, &conn), 0);
    TS_ASSERT_RC_MSG(tlsock_fopen(conn, "r+", &f), 0, tlsock_conn_errmsg(conn));

    for (int i = 0; i < LINES; i++) {
        assert_true(fprintf(f, "ECHO line %d of the request/response test\n", i) > 0);
        assert_int_equal(fflush(f), 0);
        snprintf(want, sizeof(want), "line %d of the request/response test\n", i);
        expect_line(f, want);
    }
    fprintf(f, "BLOB %d\n", BLOB);
    assert_int_equal(fflush(f), 0);
    snprintf(want, sizeof(want), "DATA %d\n", BLOB);
    expect_line(f, want);
    assert_true(fread_pattern(f, BLOB, 41));

    fprintf(f, "PUT %d\n", UPLOAD);
    assert_true(fwrite_pattern(f, UPLOAD, 42));
    assert_int_equal(fflush(f), 0);
    snprintf(want, sizeof(want), "GOT %d\n", UPLOAD);
    expect_line(f, want);

    fputs("QUIT\n", f);
    assert_int_equal(fflush(f), 0);
    expect_line(f, "BYE\n");
    /* The server's fclose sent close_notify: a clean end of file, not an error. */
    assert_null(fgets(line, sizeof(line), f));
    assert_true(feof(f));
    assert_false(ferror(f));
    assert_int_equal(fclose(f), 0);

    ts_server_stop(&env->srv);
    if (env->srv.result != 0) {
        print_error("server stopped at: %s\n", s.step);
    }
    TS_ASSERT_RC_MSG(env->srv.result, 0, s.errmsg);
}

/* Reads lines until the end of the stream, counting them, then records how it ended. */
static int serve_count_lines(int fd, void *arg)
{
    struct stdio_server *s = arg;
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    FILE *f = NULL;
    char line[256];
    char want[64];
    int rc = tlsock_attach_fd(s->ctx, fd, &opts, &conn);

    if (rc == 0) {
        rc = tlsock_fopen(conn, "r", &f);
    }
    if (rc != 0) {
        tlsock_close(conn);
        return rc;
    }
    for (int i = 0; i < LINES && rc == 0; i++) {
        snprintf(want, sizeof(want), "line %d\n", i);
        if (fgets(line, sizeof(line), f) == NULL || strcmp(line, want) != 0) {
            rc = TS_EMISMATCH;
        }
    }
    if (rc == 0) {
        s->eof = fgets(line, sizeof(line), f) == NULL && feof(f);
        s->error = ferror(f) != 0;
        snprintf(s->errmsg, sizeof(s->errmsg), "%s", tlsock_conn_errmsg(conn));
    }
    fclose(f);
    return rc;
}

/* The client's fclose flushes its buffered lines and ends the stream with close_notify. */
static void test_fclose_sends_close_notify(void **state)
{
    struct ts_env *env = *state;
    struct stdio_server s = {.step = "before the first command"};
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    FILE *f = NULL;

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    s.ctx = env->sctx;
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    TS_ASSERT_RC(ts_server_start_raw(&env->srv, NULL, 0, serve_count_lines, &s), 0);
    TS_ASSERT_RC(tlsock_connect(env->cctx, "127.0.0.1", env->srv.port, &opts, &conn), 0);
    TS_ASSERT_RC(tlsock_fopen(conn, "w", &f), 0);
    /* No fflush: fclose must write the buffered lines before close_notify. */
    for (int i = 0; i < LINES; i++) {
        assert_true(fprintf(f, "line %d\n", i) > 0);
    }
    assert_int_equal(fclose(f), 0);
    ts_server_stop(&env->srv);
    TS_ASSERT_RC_MSG(env->srv.result, 0, s.errmsg);
    assert_true(s.eof);
    assert_false(s.error);
}

/* ---- errors ---------------------------------------------------------------------------------- */

struct truncating_server {
    struct tlsock_ctx *ctx;
    int final_rc;
};

/* One line over TLS, then a TCP FIN without close_notify (what a truncation attack looks like). */
static int serve_line_then_fin(int fd, void *arg)
{
    struct truncating_server *s = arg;
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    unsigned char byte;
    size_t n = 0;
    int rc = tlsock_attach_fd(s->ctx, fd, &opts, &conn);

    if (rc == 0) {
        rc = tlsock_write(conn, "line one\n", 9);
    }
    if (rc == 0) {
        rc = shutdown(fd, SHUT_WR) == 0 ? 0 : TS_ESETUP;
    }
    if (rc == 0) {
        /* Wait for the client to go away before the helper closes the socket. */
        s->final_rc = tlsock_read(conn, &byte, 1, &n);
    }
    tlsock_close(conn);
    return rc;
}

static void test_truncation_is_a_stream_error(void **state)
{
    struct ts_env *env = *state;
    struct truncating_server s = {.final_rc = TS_NOT_RUN};
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    char line[64];
    FILE *f = NULL;

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    s.ctx = env->sctx;
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    TS_ASSERT_RC(ts_server_start_raw(&env->srv, NULL, 0, serve_line_then_fin, &s), 0);
    TS_ASSERT_RC(tlsock_connect(env->cctx, "127.0.0.1", env->srv.port, &opts, &conn), 0);
    TS_ASSERT_RC(tlsock_fopen(conn, "r", &f), 0);
    expect_line(f, "line one\n");
    /* A FIN without close_notify is no end of file: the data may have been cut. */
    assert_null(fgets(line, sizeof(line), f));
    assert_true(ferror(f));
    assert_false(feof(f));
    /* The detail stays on the connection until fclose. */
    TS_ASSERT_CONTAINS(tlsock_conn_errmsg(conn), "truncat");
    /* Sticky: reading again fails again. */
    clearerr(f);
    assert_null(fgets(line, sizeof(line), f));
    assert_true(ferror(f));
    fclose(f);
    ts_server_stop(&env->srv);
    TS_ASSERT_RC(env->srv.result, 0);
    assert_true(s.final_rc < 0);
}

/* Sends "late\n" once the gate opens, then waits for the client's close. */
static int serve_late_line(struct tlsock_conn *conn, void *arg)
{
    struct ts_gate *gate = arg;
    unsigned char byte;
    size_t n = 0;
    int rc = tlsock_handshake(conn);

    if (rc == 0) {
        rc = ts_gate_wait(gate, TS_IO_TIMEOUT_MS) ? 0 : TS_ESETUP;
    }
    if (rc == 0) {
        rc = tlsock_write(conn, "late\n", 5);
    }
    if (rc == 0) {
        (void)tlsock_read(conn, &byte, 1, &n);
    }
    return rc;
}

/* A read timeout is an error on the stream, but the connection survives it: after clearerr()
 * the same stream reads the data that comes later. */
static void test_read_timeout_through_stream(void **state)
{
    struct ts_env *env = *state;
    struct tlsock_opts opts = ts_opts();
    struct tlsock_conn *conn = NULL;
    char line[64];
    FILE *f = NULL;
    int64_t start;
    int64_t elapsed;

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &env->cctx), 0);
    TS_ASSERT_RC(ts_server_start(&env->srv, env->sctx, NULL, NULL, serve_late_line, &env->gate), 0);
    TS_ASSERT_RC(tlsock_connect(env->cctx, "127.0.0.1", env->srv.port, &opts, &conn), 0);
    TS_ASSERT_RC(tlsock_conn_set_timeout(conn, SHORT_MS), 0);
    TS_ASSERT_RC(tlsock_fopen(conn, "r", &f), 0);
    start = tlsock_now_ms();
    assert_null(fgets(line, sizeof(line), f));
    elapsed = tlsock_now_ms() - start;
    assert_true(ferror(f));
    assert_false(feof(f));
    TS_ASSERT_CONTAINS(tlsock_conn_errmsg(conn), "timed out");
    assert_true(elapsed >= SHORT_MS - 5);
    assert_true(elapsed < SHORT_MS + 3000);
    clearerr(f);
    ts_gate_open(&env->gate);
    TS_ASSERT_RC(tlsock_conn_set_timeout(conn, TS_IO_TIMEOUT_MS), 0);
    expect_line(f, "late\n");
    fclose(f);
    ts_server_stop(&env->srv);
    TS_ASSERT_RC_MSG(env->srv.result, 0, env->srv.errmsg);
}

static void test_fopen_arguments(void **state)
{
    struct ts_env *env = *state;
    struct tlsock_conn *conn = NULL;
    FILE *f = NULL;

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(tlsock_attach_mem(env->sctx, NULL, &conn), 0);
    TS_ASSERT_RC(tlsock_fopen(NULL, "r", &f), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_fopen(conn, NULL, &f), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_fopen(conn, "r", NULL), TLSOCK_EINVAL);
    assert_null(f);
    /* The refusals left the connection to the caller. */
    tlsock_close(conn);
}

/* A mode fopen() would refuse is an invalid argument, not a lack of memory. */
static void test_fopen_bad_mode(void **state)
{
    struct ts_env *env = *state;
    struct tlsock_conn *conn = NULL;
    FILE *f = NULL;
    int rc;

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &env->sctx), 0);
    TS_ASSERT_RC(tlsock_attach_mem(env->sctx, NULL, &conn), 0);
    rc = tlsock_fopen(conn, "z", &f);
    if (f != NULL) {
        fclose(f);
    } else {
        tlsock_close(conn);
    }
    TS_ASSERT_RC(rc, TLSOCK_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_line_protocol, ts_env_setup, ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_fclose_sends_close_notify, ts_env_setup,
                                        ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_truncation_is_a_stream_error, ts_env_setup,
                                        ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_read_timeout_through_stream, ts_env_setup,
                                        ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_fopen_arguments, ts_env_setup, ts_env_teardown),
        cmocka_unit_test_setup_teardown(test_fopen_bad_mode, ts_env_setup, ts_env_teardown),
    };

    return cmocka_run_group_tests_name("stdio", tests, ts_pki_setup, ts_pki_teardown);
}
