/*
 * Child processes of the async cases (the idle case's servers, stunnel, redis-server, the tlsock
 * CLI): started with posix_spawn, spoken to a line at a time with a bound on every wait, always
 * reaped, killed when they do not exit in time; and the files of their private directories.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "async.h"

extern char **environ;

bool bench_find_program(const char *name, char *out, size_t len)
{
    const char *path = getenv("PATH");
    bool found = false;

    while (path != NULL && *path != '\0' && !found) {
        const char *end = strchr(path, ':');
        size_t dirlen = end != NULL ? (size_t)(end - path) : strlen(path);

        if (dirlen > 0) {
            snprintf(out, len, "%.*s/%s", (int)dirlen, path, name);
            found = access(out, X_OK) == 0;
        }
        path = end != NULL ? end + 1 : NULL;
    }
    return found;
}

int64_t bench_clock_ns(clockid_t clock)
{
    struct timespec ts = {0, 0};

    (void)clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int bench_child_spawn(struct bench_child *c, const char *name, char *const argv[], const char *log)
{
    posix_spawn_file_actions_t actions;
    int in[2] = {-1, -1};
    int out[2] = {-1, -1};
    int rc = BENCH_ERROR;

    memset(c, 0, sizeof(*c));
    c->name = name;
    c->pid = -1;
    c->to = -1;
    c->from = -1;
    if (log == NULL && (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0)) {
        fprintf(stderr, "%s: pipe: %s\n", name, strerror(errno));
        goto close_pipes;
    }
    posix_spawn_file_actions_init(&actions);
    if (log == NULL) {
        posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
        posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    } else {
        posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log, O_WRONLY | O_CREAT | O_TRUNC,
                                         0600);
        posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    }
    rc = posix_spawn(&c->pid, argv[0], &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
        fprintf(stderr, "%s: cannot run %s: %s\n", name, argv[0], strerror(rc));
        c->pid = -1;
        rc = BENCH_ERROR;
        goto close_pipes;
    }
    c->to = in[1];
    c->from = out[0];
    in[1] = -1;
    out[0] = -1;
    rc = BENCH_OK;

close_pipes:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0) {
            close(in[i]);
        }
        if (out[i] >= 0) {
            close(out[i]);
        }
    }
    return rc;
}

int bench_child_line(struct bench_child *c, int timeout_ms, char *line, size_t cap)
{
    int64_t deadline = bench_now_ns() + (int64_t)timeout_ms * 1000000;
    char *nl = memchr(c->buf, '\n', c->len);
    int rc = BENCH_OK;

    while (rc == BENCH_OK && nl == NULL) {
        int64_t left = (deadline - bench_now_ns()) / 1000000;
        struct pollfd pfd = {.fd = c->from, .events = POLLIN};
        ssize_t n = 0;

        if (left <= 0 || c->len == sizeof(c->buf)) {
            fprintf(stderr, "%s: no answer in %d ms\n", c->name, timeout_ms);
            rc = BENCH_ERROR;
        } else if (poll(&pfd, 1, (int)left) > 0) {
            n = read(c->from, c->buf + c->len, sizeof(c->buf) - c->len);
            if (n <= 0) {
                fprintf(stderr, "%s: exited early\n", c->name);
                rc = BENCH_ERROR;
            }
        }
        if (n > 0) {
            c->len += (size_t)n;
            nl = memchr(c->buf, '\n', c->len);
        }
    }
    if (rc == BENCH_OK) {
        size_t len = (size_t)(nl - c->buf);

        snprintf(line, cap, "%.*s", (int)len, c->buf);
        memmove(c->buf, nl + 1, c->len - len - 1);
        c->len -= len + 1;
    }
    return rc;
}

int bench_child_send(struct bench_child *c, const char *text)
{
    size_t len = strlen(text);

    return write(c->to, text, len) == (ssize_t)len ? BENCH_OK : BENCH_ERROR;
}

int bench_child_stop(struct bench_child *c, int sig, int timeout_ms)
{
    int64_t deadline = bench_now_ns() + (int64_t)timeout_ms * 1000000;
    int status = 0;
    pid_t done = 0;
    int rc = BENCH_OK;

    if (c->to >= 0) {
        close(c->to);
    }
    if (c->pid > 0 && sig != 0) {
        (void)kill(c->pid, sig);
    }
    while (c->pid > 0 && done == 0 && bench_now_ns() < deadline) {
        done = waitpid(c->pid, &status, WNOHANG);
        if (done == 0) {
            usleep(2000);
        }
    }
    if (c->pid > 0 && done == 0) {
        fprintf(stderr, "%s: did not exit; killed\n", c->name);
        (void)kill(c->pid, SIGKILL);
        (void)waitpid(c->pid, &status, 0);
        rc = BENCH_ERROR;
    } else if (c->pid > 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0) &&
               !(sig != 0 && WIFSIGNALED(status) && WTERMSIG(status) == sig)) {
        rc = BENCH_ERROR;
    }
    if (c->from >= 0) {
        close(c->from);
    }
    c->to = -1;
    c->from = -1;
    c->pid = -1;
    return rc;
}

int bench_child_wait(struct bench_child *c, bool (*ready)(void *arg), void *arg, int timeout_ms)
{
    int64_t deadline = bench_now_ns() + (int64_t)timeout_ms * 1000000;
    int rc = BENCH_OK;

    while (rc == BENCH_OK && !ready(arg)) {
        int status = 0;

        if (waitpid(c->pid, &status, WNOHANG) == c->pid) {
            fprintf(stderr, "%s: exited at start (status %d)\n", c->name, status);
            c->pid = -1;
            rc = BENCH_ERROR;
        } else if (bench_now_ns() > deadline) {
            fprintf(stderr, "%s: not ready in %d ms\n", c->name, timeout_ms);
            rc = BENCH_ERROR;
        } else {
            usleep(10000);
        }
    }
    return rc;
}

int bench_write_file(const char *dir, const char *name, const char *text)
{
    char path[128];
    size_t len = strlen(text);
    int fd;
    int rc = BENCH_ERROR;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0 && write(fd, text, len) == (ssize_t)len) {
        rc = BENCH_OK;
    } else {
        fprintf(stderr, "tlsock-bench: cannot write %s: %s\n", path, strerror(errno));
    }
    if (fd >= 0) {
        close(fd);
    }
    return rc;
}

void bench_remove_dir(const char *dir, const char *const *names, size_t n)
{
    char path[128];

    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        (void)unlink(path);
    }
    (void)rmdir(dir);
}

void bench_print_file(const char *prefix, const char *path)
{
    char line[512];
    FILE *f = fopen(path, "r");

    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        fprintf(stderr, "%s: %s", prefix, line);
    }
    if (f != NULL) {
        fclose(f);
    }
}
