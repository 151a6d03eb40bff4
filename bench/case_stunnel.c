/*
 * The echo of async-echo-aes128gcm (case_echo.c) against three servers, always from the raw
 * OpenSSL blocking client: stunnel as the TLS terminator in front of a plaintext echo server (the
 * usual way to add TLS to a server that has none, and so the natural thing to compare a tlsock_uv
 * server with), a tlsock_uv server, and for reference the raw OpenSSL blocking server.
 *
 * stunnel (Debian package stunnel4) is optional: without it the case is skipped. It runs as a
 * child process for the whole case, with a configuration written to a private temporary
 * directory (certificate, key, stunnel.conf), and is stopped with SIGTERM and reaped at the end.
 * Its CPU time comes from its process CPU clock (clock_getcpuclockid), the plaintext echo
 * thread's from its thread CPU clock.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "async.h"

/* How long stunnel may take to listen, and to exit after SIGTERM. */
#define START_TIMEOUT_MS 5000
#define STOP_TIMEOUT_MS  2000

static const char *const program_names[] = {"stunnel4", "stunnel"};

struct stunnel_env {
    char dir[64];
    char path[512]; /* the stunnel program */
    struct bench_child child;
    uint16_t port; /* stunnel's TLS port */
    /* The plaintext echo server behind stunnel. */
    int echo_fd;
    uint16_t echo_port;
    pthread_t echo_thread;
    bool echo_running;
    atomic_bool stop;
};

static bool find_stunnel(char *out, size_t len)
{
    bool found = false;

    for (size_t i = 0; i < sizeof(program_names) / sizeof(program_names[0]) && !found; i++) {
        found = bench_find_program(program_names[i], out, len);
    }
    return found;
}

static const char *stunnel_missing(void)
{
    char path[512];

    return find_stunnel(path, sizeof(path)) ? NULL : "stunnel not installed";
}

static const char *stunnel_version(void)
{
    static char version[128];
    char path[512];
    char cmd[600];
    FILE *p = NULL;

    snprintf(version, sizeof(version), "stunnel not installed");
    if (!find_stunnel(path, sizeof(path))) {
        goto out;
    }
    /* "stunnel 5.68 on x86_64-pc-linux-gnu platform", among other lines on stderr. */
    snprintf(cmd, sizeof(cmd), "'%s' -version 2>&1", path);
    p = popen(cmd, "r");
    while (p != NULL && fgets(version, sizeof(version), p) != NULL) {
        if (strncmp(version, "stunnel ", 8) == 0) {
            version[strcspn(version, "\n")] = '\0';
            break;
        }
        snprintf(version, sizeof(version), "stunnel, version unknown");
    }
    if (p != NULL) {
        (void)pclose(p);
    }

out:
    return version;
}

static const char *const dir_files[] = {"cert.pem", "key.pem", "stunnel.conf", "stunnel.log"};

/* A port nobody listens on right now, for stunnel's accept line. */
static int free_port(uint16_t *port)
{
    int fd = bench_tcp_listen_fd("stunnel", false, port);

    if (fd >= 0) {
        close(fd);
    }
    return fd >= 0 ? BENCH_OK : BENCH_ERROR;
}

/* ---- The plaintext echo server, one connection at a time, in a thread ---- */

static void echo_plain(int fd)
{
    static unsigned char buf[64 * 1024];
    bool done = false;

    while (!done) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        ssize_t off = 0;

        done = n <= 0;
        while (!done && off < n) {
            ssize_t w = send(fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);

            done = w <= 0;
            off += w > 0 ? w : 0;
        }
    }
    close(fd);
}

static void *echo_thread(void *arg)
{
    struct stunnel_env *env = arg;

    /* Bounded by the stop flag, polled every BENCH_ACCEPT_POLL_MS. */
    while (!atomic_load(&env->stop)) {
        struct pollfd pfd = {.fd = env->echo_fd, .events = POLLIN};
        int fd = -1;

        if (poll(&pfd, 1, BENCH_ACCEPT_POLL_MS) > 0) {
            fd = accept4(env->echo_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        }
        if (fd >= 0) {
            /* Blocking, with the raw baselines' options (tcp.c): no Nagle, bounded waits. */
            (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
            bench_tcp_options(fd);
            echo_plain(fd);
        }
    }
    return NULL;
}

/* ---- stunnel itself ---- */

int bench_write_stunnel_conf(const char *dir, uint16_t accept_port, uint16_t connect_port,
                             const char *extra)
{
    char conf[2048];

    /* In the foreground so that the pid is stunnel's; TCP_NODELAY as tlsock and the baselines. */
    snprintf(conf, sizeof(conf),
             "foreground = yes\n"
             "pid =\n"
             "syslog = no\n"
             "debug = 4\n"
             "[tlsock-bench]\n"
             "accept = 127.0.0.1:%u\n"
             "connect = 127.0.0.1:%u\n"
             "cert = %s/cert.pem\n"
             "key = %s/key.pem\n"
             "sslVersionMin = TLSv1.3\n"
             "sslVersionMax = TLSv1.3\n"
             "%s"
             "socket = l:TCP_NODELAY=1\n"
             "socket = r:TCP_NODELAY=1\n",
             accept_port, connect_port, dir, dir, extra);
    return bench_write_file(dir, "stunnel.conf", conf);
}

static int write_config(struct stunnel_env *env, const struct bench_config *config)
{
    char suite[256] = "";
    int rc = bench_write_file(env->dir, "cert.pem", config->cert_pem);

    if (rc == BENCH_OK) {
        rc = bench_write_file(env->dir, "key.pem", config->key_pem);
    }
    /* TLS 1.3 only, with the case's suite. */
    if (config->suite != NULL) {
        snprintf(suite, sizeof(suite), "ciphersuites = %s\n", config->suite);
    }
    if (rc == BENCH_OK) {
        rc = bench_write_stunnel_conf(env->dir, env->port, env->echo_port, suite);
    }
    return rc;
}

static void print_log(const struct stunnel_env *env)
{
    char path[128];

    snprintf(path, sizeof(path), "%s/stunnel.log", env->dir);
    bench_print_file("stunnel", path);
}

static bool listening(void *arg)
{
    const struct stunnel_env *env = arg;

    return bench_tcp_poke(env->port);
}

/* Starts stunnel and waits for it to accept connections on its port; fails if it exits first. */
static int start_stunnel(struct stunnel_env *env)
{
    char conf[128];
    char log[128];
    char *argv[] = {env->path, conf, NULL};
    int rc;

    snprintf(conf, sizeof(conf), "%s/stunnel.conf", env->dir);
    snprintf(log, sizeof(log), "%s/stunnel.log", env->dir);
    rc = bench_child_spawn(&env->child, "stunnel", argv, log);
    if (rc == BENCH_OK) {
        rc = bench_child_wait(&env->child, listening, env, START_TIMEOUT_MS);
    }
    if (rc != BENCH_OK) {
        print_log(env);
    }
    return rc;
}

static void stunnel_teardown(void *envp)
{
    struct stunnel_env *env = envp;

    if (env == NULL) {
        return;
    }
    (void)bench_child_stop(&env->child, SIGTERM, STOP_TIMEOUT_MS);
    if (env->echo_running) {
        atomic_store(&env->stop, true);
        pthread_join(env->echo_thread, NULL);
    }
    if (env->echo_fd >= 0) {
        close(env->echo_fd);
    }
    if (env->dir[0] != '\0') {
        bench_remove_dir(env->dir, dir_files, sizeof(dir_files) / sizeof(dir_files[0]));
    }
    free(env);
}

/* The case's setup: stunnel and the plaintext echo server behind it, for the whole case. */
static int stunnel_setup(const struct bench_config *config, void **out)
{
    struct stunnel_env *env = calloc(1, sizeof(*env));
    int rc = BENCH_ERROR;

    if (env == NULL) {
        goto out;
    }
    env->child.pid = -1;
    env->child.to = -1;
    env->child.from = -1;
    atomic_init(&env->stop, false);
    env->echo_fd = bench_tcp_listen_fd("stunnel echo", false, &env->echo_port);
    if (!find_stunnel(env->path, sizeof(env->path)) || env->echo_fd < 0) {
        goto out;
    }
    snprintf(env->dir, sizeof(env->dir), "/tmp/tlsock-bench-XXXXXX");
    if (mkdtemp(env->dir) == NULL) {
        fprintf(stderr, "stunnel: mkdtemp: %s\n", strerror(errno));
        env->dir[0] = '\0';
        goto out;
    }
    rc = free_port(&env->port);
    if (rc == BENCH_OK) {
        rc = write_config(env, config);
    }
    /* Spawned before the echo thread exists: nothing but this thread runs during the spawn. */
    if (rc == BENCH_OK) {
        rc = start_stunnel(env);
    }
    if (rc == BENCH_OK) {
        env->echo_running = pthread_create(&env->echo_thread, NULL, echo_thread, env) == 0;
        rc = env->echo_running ? BENCH_OK : BENCH_ERROR;
    }
    if (rc == BENCH_OK) {
        *out = env;
        env = NULL;
    }

out:
    stunnel_teardown(env);
    return rc;
}

/* The raw blocking echo client against stunnel; its server CPU is stunnel's and the echo's. */
static int stunnel_echo(const struct bench_run *run, struct bench_sample *out)
{
    struct stunnel_env *env = run->extra;
    clockid_t proc_clock;
    clockid_t echo_clock;
    bool clocks = clock_getcpuclockid(env->child.pid, &proc_clock) == 0 &&
                  pthread_getcpuclockid(env->echo_thread, &echo_clock) == 0;
    int64_t cpu0 = clocks ? bench_clock_ns(proc_clock) + bench_clock_ns(echo_clock) : 0;
    int rc = bench_echo_client(run, env->port, out);

    if (rc == BENCH_OK && clocks) {
        /* The plaintext server and stunnel finish with the client's last byte echoed. */
        int64_t cpu = bench_clock_ns(proc_clock) + bench_clock_ns(echo_clock) - cpu0;

        out->server_cpu_us = bench_us_per(cpu, bench_mib(out->count));
    }
    if (rc != BENCH_OK) {
        print_log(env);
    }
    return rc;
}

static const struct bench_case cases[] = {
    {.name = "async-echo-stunnel",
     .summary = "the echo of async-echo-aes128gcm from a raw OpenSSL blocking client: a "
                "tlsock_uv server against stunnel (reference: raw blocking server)",
     .sides = {{"stunnel", BENCH_LAYER_RAW, stunnel_echo},
               {"tlsock", BENCH_LAYER_TLSOCK, bench_echo_uv_server},
               {"raw", BENCH_LAYER_RAW, bench_echo_blocking}},
     .left_name = "stunnel, TLS terminator in front of a plaintext echo server; every side has "
                  "the raw OpenSSL blocking client",
     .reference_label = "  vs raw blocking server",
     .missing = stunnel_missing,
     .version = stunnel_version,
     .setup = stunnel_setup,
     .teardown = stunnel_teardown,
     BENCH_ECHO_CASE},
};

const struct bench_cases bench_stunnel_cases = BENCH_CASES(cases);
