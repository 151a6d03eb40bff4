/* The examples keep working: run examples/echo_server and talk to it over loopback. */
#include "support.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef TLSOCK_ECHO_SERVER
#error "TLSOCK_ECHO_SERVER must name the echo_server example"
#endif

/* A running echo_server: its pid and the pipes of its stdout and stderr. */
struct child {
    pid_t pid;
    int out;
    int err;
};

static struct child echo = {.pid = -1, .out = -1, .err = -1};

static int child_stop(void **state)
{
    (void)state;
    if (echo.pid > 0) {
        int status;

        /* Our own child, by pid: it serves forever otherwise. */
        kill(echo.pid, SIGTERM);
        waitpid(echo.pid, &status, 0);
        echo.pid = -1;
    }
    if (echo.out >= 0) {
        close(echo.out);
        echo.out = -1;
    }
    if (echo.err >= 0) {
        close(echo.err);
        echo.err = -1;
    }
    return 0;
}

/* Appends what @p fd has to @p buf until @p until appears, EOF, or @p timeout_ms passes. */
static bool read_until(int fd, char *buf, size_t size, const char *until, int timeout_ms)
{
    size_t used = strlen(buf);
    int64_t deadline = tlsock_now_ms() + timeout_ms;

    for (int i = 0; i < 1000 && strstr(buf, until) == NULL && used + 1 < size; i++) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int64_t left = deadline - tlsock_now_ms();
        ssize_t n;

        if (left <= 0 || poll(&pfd, 1, (int)left) != 1) {
            break;
        }
        n = read(fd, buf + used, size - 1 - used);
        if (n <= 0) {
            break;
        }
        used += (size_t)n;
        buf[used] = '\0';
    }
    return strstr(buf, until) != NULL;
}

static void test_echo_server(void **state)
{
    int out[2] = {-1, -1};
    int err[2] = {-1, -1};
    static char ca[8192];
    char log[512] = "";
    const char *port_text;
    struct tlsock_ctx *ctx = NULL;
    struct tlsock_conn *conn = NULL;
    struct tlsock_opts opts = ts_opts();
    char reply[5] = {0};
    unsigned long port;
    int rc;

    (void)state;
    ca[0] = '\0';
    assert_int_equal(pipe(out), 0);
    assert_int_equal(pipe(err), 0);
    echo.pid = fork();
    assert_true(echo.pid >= 0);
    if (echo.pid == 0) {
        dup2(out[1], STDOUT_FILENO);
        dup2(err[1], STDERR_FILENO);
        execl(TLSOCK_ECHO_SERVER, "echo_server", "0", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    echo.out = out[0];
    echo.err = err[0];

    /* Without a certificate it prints the CA it made on stdout and its port on stderr. */
    assert_true(read_until(echo.err, log, sizeof(log), "\n", TS_IO_TIMEOUT_MS));
    port_text = strstr(log, "port ");
    assert_non_null(port_text);
    port = strtoul(port_text + 5, NULL, 10);
    assert_true(port > 0 && port < 65536);
    assert_true(
        read_until(echo.out, ca, sizeof(ca), "-----END CERTIFICATE-----", TS_IO_TIMEOUT_MS));

    rc = ts_client_ctx_new(ca, &ctx);
    if (rc == 0) {
        rc = tlsock_connect(ctx, "localhost", (uint16_t)port, &opts, &conn);
    }
    if (rc == 0) {
        rc = tlsock_write(conn, "hello", 5);
    }
    if (rc == 0) {
        rc = ts_read_full(conn, reply, sizeof(reply));
    }
    tlsock_close(conn);
    tlsock_ctx_free(ctx);
    TS_ASSERT_RC(rc, 0);
    assert_memory_equal(reply, "hello", 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_echo_server, child_stop),
    };

    return cmocka_run_group_tests_name("examples", tests, NULL, NULL);
}
