/*
 * TLS termination in front of a plaintext TCP sink, through three terminators in the same run:
 * `tlsock tunnel` (the CLI from this build), haproxy (`mode tcp`, `bind ... ssl crt`) and stunnel.
 * Each runs as a child process for the whole case with --threads N (tlsock), nbthread N
 * (haproxy); stunnel has no such setting (a thread per connection). haproxy and stunnel use
 * OpenSSL whatever the case; the -gnutls cases put only tlsock on GnuTLS.
 *
 * Clients are lean raw OpenSSL programs in this process (blocking sockets, TLS 1.3, no
 * certificate verification, which would cost the client more than the server, no session kept),
 * the same against every terminator:
 * - bulk: one client thread per terminator thread, each one connection writing 16 KiB records
 *   until the run's time is up; the rate is what the sink received in a window that starts once
 *   every client has sent data (steady state), so nothing buffered in the terminator counts.
 *   Then each client sends close_notify and waits for the terminator to close; the sink must
 *   have received every byte sent (a terminator that drops data fails the case).
 * - handshakes: 8 client threads per terminator thread, each connecting, completing a full
 *   handshake, sending close_notify and closing, again; the rate is the handshakes completed in
 *   the window.
 * No session tickets anywhere: tlsock --no-tickets; haproxy no-tls-tickets and stunnel
 * NO_TICKET, both with an OpenSSL configuration (OPENSSL_CONF) setting NumTickets = 0, without
 * which their TLS 1.3 servers still send two stateful tickets per handshake.
 *
 * The sink is one thread on epoll that accepts, reads into one buffer and counts. The
 * terminator's CPU time is its process CPU clock (clock_getcpuclockid: utime + stime of every
 * thread, as /proc/PID/stat has it, in nanoseconds) over the window.
 *
 * The framework has three sides per case: haproxy is the left column (the target, >= 1.1, is
 * judged on tlsock / haproxy), tlsock the right, stunnel the reference row (tlsock / stunnel,
 * same target, judged by the reader). A case whose programs are not all there is skipped.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "async.h"

/* docs/BENCHMARKS.md, issue 13: the tunnel ahead of both. */
#define TUNNEL_TARGET 1.10

#define START_TIMEOUT_MS 5000
#define STOP_TIMEOUT_MS  2000
/* After a run: the sink has everything and every connection to it is closed, within this. */
#define SETTLE_TIMEOUT_MS 10000

#define HS_CLIENTS_PER_THREAD 8
#define MAX_CLIENTS           (2 * HS_CLIENTS_PER_THREAD)
#define SINK_BUFFER           (256 * 1024)

enum { PROXY_HAPROXY, PROXY_TLSOCK, PROXY_STUNNEL, NPROXIES };

static const char *const proxy_names[NPROXIES] = {"haproxy", "tlsock tunnel", "stunnel"};

struct proxy {
    char path[512];
    struct bench_child child;
    uint16_t port;
};

struct sink {
    int listen_fd;
    int epoll_fd;
    uint16_t port;
    pthread_t thread;
    bool running;
    atomic_bool stop;
    atomic_uint_fast64_t bytes;
    atomic_int open; /* connections accepted and not closed */
};

struct tunnel_env {
    char dir[64];
    int threads;
    int impl;
    SSL_CTX *client;
    struct sink sink;
    struct proxy proxies[NPROXIES];
};

/* ---- Finding the programs ---- */

static bool find_tlsock(char *out, size_t len)
{
    const char *env = getenv("TLSOCK_BENCH_CLI");

    snprintf(out, len, "%s", env != NULL && env[0] != '\0' ? env : BENCH_TLSOCK_CLI);
    return access(out, X_OK) == 0;
}

static bool find_haproxy(char *out, size_t len)
{
    snprintf(out, len, "/usr/sbin/haproxy");
    return access(out, X_OK) == 0 || bench_find_program("haproxy", out, len);
}

static bool find_stunnel(char *out, size_t len)
{
    return bench_find_program("stunnel4", out, len) || bench_find_program("stunnel", out, len);
}

static bool (*const finders[NPROXIES])(char *, size_t) = {find_haproxy, find_tlsock, find_stunnel};

static const char *tunnel_missing(void)
{
    static const char *const why[NPROXIES] = {
        "haproxy not installed (no comparison)",
        "the tlsock CLI was not built (set TLSOCK_BENCH_CLI)",
        "stunnel not installed (no comparison)",
    };
    char path[512];

    for (int p = 0; p < NPROXIES; p++) {
        if (!finders[p](path, sizeof(path))) {
            return why[p];
        }
    }
    return NULL;
}

/* The first line of `CMD` that starts with @p prefix, into @p out (empty if none). */
static void first_line(const char *cmd, const char *prefix, char *out, size_t len)
{
    FILE *p = popen(cmd, "r");

    out[0] = '\0';
    while (p != NULL && fgets(out, (int)len, p) != NULL) {
        if (strncmp(out, prefix, strlen(prefix)) == 0) {
            out[strcspn(out, "\n")] = '\0';
            break;
        }
        out[0] = '\0';
    }
    if (p != NULL) {
        (void)pclose(p);
    }
}

/* Once for all the tunnel cases: the header's line. */
static const char *tunnel_version(void)
{
    static char version[256];
    static bool said;
    char path[512];
    char cmd[600];
    char haproxy[96] = "haproxy not installed";
    char stunnel[96] = "stunnel not installed";

    if (said) {
        return NULL;
    }
    said = true;
    if (find_haproxy(path, sizeof(path))) {
        snprintf(cmd, sizeof(cmd), "'%s' -v 2>&1", path);
        first_line(cmd, "HAProxy version", haproxy, sizeof(haproxy));
    }
    if (find_stunnel(path, sizeof(path))) {
        snprintf(cmd, sizeof(cmd), "'%s' -version 2>&1", path);
        first_line(cmd, "stunnel ", stunnel, sizeof(stunnel));
    }
    snprintf(version, sizeof(version), "%.90s; %.90s (tunnel cases)", haproxy, stunnel);
    return version;
}

/* ---- Files ---- */

static const char *const files[] = {"cert.pem",    "key.pem",     "both.pem",
                                    "openssl.cnf", "haproxy.cfg", "stunnel.conf",
                                    "haproxy.log", "tlsock.log",  "stunnel.log"};

static void print_log(const char *dir, const char *name)
{
    char path[128];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    bench_print_file(name, path);
}

static int write_configs(const struct tunnel_env *env, const struct bench_config *config)
{
    char text[2048];
    int rc = bench_write_file(env->dir, "cert.pem", config->cert_pem);

    if (rc == BENCH_OK) {
        rc = bench_write_file(env->dir, "key.pem", config->key_pem);
    }
    if (rc == BENCH_OK) {
        /* haproxy's crt: the chain and the key in one file. */
        size_t size = strlen(config->cert_pem) + strlen(config->key_pem) + 1;
        char *both = malloc(size);
        rc = both != NULL ? BENCH_OK : BENCH_ERROR;
        if (both != NULL) {
            snprintf(both, size, "%s%s", config->cert_pem, config->key_pem);
            rc = bench_write_file(env->dir, "both.pem", both);
            free(both);
        }
    }
    if (rc == BENCH_OK) {
        /* Read by haproxy's and stunnel's OpenSSL: no TLS 1.3 ticket, stateful or not. */
        rc = bench_write_file(env->dir, "openssl.cnf",
                              "openssl_conf = init\n[init]\nssl_conf = ssl\n[ssl]\n"
                              "system_default = defaults\n[defaults]\nNumTickets = 0\n");
    }
    snprintf(text, sizeof(text),
             "global\n"
             "  nbthread %d\n"
             "  maxconn 4000\n"
             "  tune.ssl.cachesize 0\n"
             "  ssl-default-bind-options ssl-min-ver TLSv1.3 no-tls-tickets\n"
             "defaults\n"
             "  mode tcp\n"
             "  timeout connect 10s\n"
             "  timeout client 30s\n"
             "  timeout server 30s\n"
             "frontend tls\n"
             "  bind 127.0.0.1:%u ssl crt %s/both.pem\n"
             "  default_backend sink\n"
             "backend sink\n"
             "  server s 127.0.0.1:%u\n",
             env->threads, env->proxies[PROXY_HAPROXY].port, env->dir, env->sink.port);
    if (rc == BENCH_OK) {
        rc = bench_write_file(env->dir, "haproxy.cfg", text);
    }
    if (rc == BENCH_OK) {
        rc = bench_write_stunnel_conf(env->dir, env->proxies[PROXY_STUNNEL].port, env->sink.port,
                                      "options = NO_TICKET\nsessionResume = no\n");
    }
    return rc;
}

/* ---- The plaintext sink ---- */

static void sink_accept(struct sink *s)
{
    int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

    while (fd >= 0) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};

        if (epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &ev) == 0) {
            atomic_fetch_add(&s->open, 1);
        } else {
            close(fd);
        }
        fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    }
}

static void sink_read(struct sink *s, int fd, unsigned char *buf)
{
    ssize_t n = recv(fd, buf, SINK_BUFFER, 0);
    uint64_t got = 0;

    while (n > 0) {
        got += (uint64_t)n;
        n = recv(fd, buf, SINK_BUFFER, 0);
    }
    atomic_fetch_add(&s->bytes, got);
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        close(fd); /* also leaves the epoll set */
        atomic_fetch_sub(&s->open, 1);
    }
}

static void *sink_thread(void *arg)
{
    struct sink *s = arg;
    unsigned char *buf = malloc(SINK_BUFFER);
    struct epoll_event evs[64];

    /* Bounded by the stop flag, looked at every BENCH_ACCEPT_POLL_MS at most. */
    while (buf != NULL && !atomic_load(&s->stop)) {
        int n = epoll_wait(s->epoll_fd, evs, 64, BENCH_ACCEPT_POLL_MS);

        for (int i = 0; i < n; i++) {
            if (evs[i].data.fd == s->listen_fd) {
                sink_accept(s);
            } else {
                sink_read(s, evs[i].data.fd, buf);
            }
        }
    }
    free(buf);
    return NULL;
}

static int sink_start(struct sink *s)
{
    struct epoll_event ev = {.events = EPOLLIN};

    atomic_init(&s->stop, false);
    atomic_init(&s->bytes, 0);
    atomic_init(&s->open, 0);
    s->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    s->listen_fd = bench_tcp_listen_fd("tunnel sink", true, &s->port);
    ev.data.fd = s->listen_fd;
    if (s->epoll_fd < 0 || s->listen_fd < 0 ||
        epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, s->listen_fd, &ev) != 0) {
        return BENCH_ERROR;
    }
    s->running = pthread_create(&s->thread, NULL, sink_thread, s) == 0;
    return s->running ? BENCH_OK : BENCH_ERROR;
}

/* Stops the thread; the connections it still has are left to the process's end. */
static void sink_stop(struct sink *s)
{
    if (s->running) {
        atomic_store(&s->stop, true);
        pthread_join(s->thread, NULL);
    }
    if (s->listen_fd >= 0) {
        close(s->listen_fd);
    }
    if (s->epoll_fd >= 0) {
        close(s->epoll_fd);
    }
}

/* ---- The terminators ---- */

/* A port nobody listens on right now. */
static int free_port(uint16_t *port)
{
    int fd = bench_tcp_listen_fd("tunnel", false, port);

    if (fd >= 0) {
        close(fd);
    }
    return fd >= 0 ? BENCH_OK : BENCH_ERROR;
}

static int start_proxy(struct tunnel_env *env, int p, const struct bench_config *config)
{
    static const char *const logs[NPROXIES] = {"haproxy.log", "tlsock.log", "stunnel.log"};
    struct proxy *px = &env->proxies[p];
    char a[160], b[160], c[160], d[160], e[16];
    char log[128];
    char *argv[24] = {NULL};
    int64_t deadline = bench_now_ns() + (int64_t)START_TIMEOUT_MS * 1000000;
    int rc;

    snprintf(log, sizeof(log), "%s/%s", env->dir, logs[p]);
    snprintf(a, sizeof(a), "OPENSSL_CONF=%s/openssl.cnf", env->dir);
    if (p == PROXY_HAPROXY) {
        snprintf(b, sizeof(b), "%s/haproxy.cfg", env->dir);
        char *args[] = {"/usr/bin/env", a, px->path, "-db", "-f", b, NULL};
        memcpy(argv, args, sizeof(args));
    } else if (p == PROXY_STUNNEL) {
        snprintf(b, sizeof(b), "%s/stunnel.conf", env->dir);
        char *args[] = {"/usr/bin/env", a, px->path, b, NULL};
        memcpy(argv, args, sizeof(args));
    } else {
        snprintf(a, sizeof(a), "127.0.0.1:%u", px->port);
        snprintf(b, sizeof(b), "127.0.0.1:%u", env->sink.port);
        snprintf(c, sizeof(c), "%s/cert.pem", env->dir);
        snprintf(d, sizeof(d), "%s/key.pem", env->dir);
        snprintf(e, sizeof(e), "%d", env->threads);
        char *args[] = {px->path,
                        "tunnel",
                        "--accept",
                        a,
                        "--connect",
                        b,
                        "--cert",
                        c,
                        "--key",
                        d,
                        "--tls",
                        "1.3",
                        "--no-tickets",
                        "--threads",
                        e,
                        "--impl",
                        config->impl == TLSOCK_IMPL_GNUTLS ? "gnutls" : "openssl",
                        NULL};
        memcpy(argv, args, sizeof(args));
    }
    rc = bench_child_spawn(&px->child, proxy_names[p], argv, log);
    while (rc == BENCH_OK && !bench_tcp_poke(px->port)) {
        int status = 0;

        if (waitpid(px->child.pid, &status, WNOHANG) == px->child.pid) {
            fprintf(stderr, "%s: exited at start (status %d)\n", proxy_names[p], status);
            px->child.pid = -1;
            rc = BENCH_ERROR;
        } else if (bench_now_ns() > deadline) {
            fprintf(stderr, "%s: not listening on port %u\n", proxy_names[p], px->port);
            rc = BENCH_ERROR;
        } else {
            usleep(10000);
        }
    }
    if (rc != BENCH_OK) {
        print_log(env->dir, logs[p]);
    }
    return rc;
}

static void tunnel_teardown(void *envp)
{
    struct tunnel_env *env = envp;

    if (env == NULL) {
        return;
    }
    for (int p = 0; p < NPROXIES; p++) {
        (void)bench_child_stop(&env->proxies[p].child, SIGTERM, STOP_TIMEOUT_MS);
    }
    sink_stop(&env->sink);
    SSL_CTX_free(env->client);
    for (size_t i = 0; env->dir[0] != '\0' && i < sizeof(files) / sizeof(files[0]); i++) {
        char path[128];

        snprintf(path, sizeof(path), "%s/%s", env->dir, files[i]);
        (void)unlink(path);
    }
    if (env->dir[0] != '\0') {
        (void)rmdir(env->dir);
    }
    free(env);
}

/* The clients' context: TLS 1.3, no verification, no session kept, the case's suite. */
static SSL_CTX *client_ctx(const struct bench_config *config)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (ctx != NULL &&
        (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
         (config->suite != NULL && SSL_CTX_set_ciphersuites(ctx, config->suite) != 1))) {
        SSL_CTX_free(ctx);
        ctx = NULL;
    }
    if (ctx == NULL) {
        bench_ssl_error("tunnel client context");
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    return ctx;
}

static int tunnel_setup(const struct bench_config *config, void **out, int threads)
{
    struct tunnel_env *env = calloc(1, sizeof(*env));
    int rc = BENCH_ERROR;

    if (env == NULL) {
        goto out;
    }
    env->threads = threads;
    env->impl = config->impl;
    env->sink.listen_fd = -1;
    env->sink.epoll_fd = -1;
    for (int p = 0; p < NPROXIES; p++) {
        env->proxies[p].child.pid = -1;
        env->proxies[p].child.to = -1;
        env->proxies[p].child.from = -1;
    }
    snprintf(env->dir, sizeof(env->dir), "/tmp/tlsock-bench-XXXXXX");
    if (mkdtemp(env->dir) == NULL) {
        fprintf(stderr, "tunnel: mkdtemp: %s\n", strerror(errno));
        env->dir[0] = '\0';
        goto out;
    }
    env->client = client_ctx(config);
    rc = env->client != NULL ? BENCH_OK : BENCH_ERROR;
    for (int p = 0; rc == BENCH_OK && p < NPROXIES; p++) {
        rc =
            finders[p](env->proxies[p].path, sizeof(env->proxies[p].path)) ? BENCH_OK : BENCH_ERROR;
        if (rc == BENCH_OK) {
            rc = free_port(&env->proxies[p].port);
        }
    }
    if (rc == BENCH_OK) {
        rc = sink_start(&env->sink);
    }
    if (rc == BENCH_OK) {
        rc = write_configs(env, config);
    }
    for (int p = 0; rc == BENCH_OK && p < NPROXIES; p++) {
        rc = start_proxy(env, p, config);
    }
    if (rc == BENCH_OK) {
        *out = env;
        env = NULL;
    }

out:
    tunnel_teardown(env);
    return rc;
}

static int tunnel_setup_1(const struct bench_config *config, void **out)
{
    return tunnel_setup(config, out, 1);
}

static int tunnel_setup_2(const struct bench_config *config, void **out)
{
    return tunnel_setup(config, out, 2);
}

/* ---- The clients ---- */

struct client {
    pthread_t thread;
    struct tunnel_env *env;
    uint16_t port;
    bool bulk;
    atomic_bool *stop;
    atomic_uint_fast64_t *handshakes; /* shared by the handshake clients */
    atomic_int *active;               /* bulk clients that have sent data */
    uint64_t sent;
    int64_t cpu_ns;
    int rc;
    char cipher[64];
};

/* A connection and a full handshake; the socket and session through @p fd and @p ssl. */
static int client_connect(struct client *c, int *fd, SSL **ssl)
{
    int rc = bench_tcp_connect("tunnel client", c->port, fd);

    *ssl = NULL;
    if (rc == BENCH_OK) {
        *ssl = SSL_new(c->env->client);
        rc = *ssl != NULL && SSL_set_fd(*ssl, *fd) == 1 &&
                     SSL_set_tlsext_host_name(*ssl, BENCH_SERVER_NAME) == 1 &&
                     SSL_connect(*ssl) == 1
                 ? BENCH_OK
                 : BENCH_ERROR;
        if (rc != BENCH_OK) {
            bench_ssl_error("tunnel client: handshake");
        } else if (c->cipher[0] == '\0') {
            snprintf(c->cipher, sizeof(c->cipher), "%s", SSL_get_cipher_name(*ssl));
        }
    }
    return rc;
}

static void *client_thread(void *arg)
{
    struct client *c = arg;
    const unsigned char *data = bench_payload();
    int64_t cpu0 = bench_thread_cpu_ns();
    bool first = true;
    int fd = -1;
    SSL *ssl = NULL;

    c->rc = BENCH_OK;
    while (c->rc == BENCH_OK && !atomic_load(c->stop)) {
        c->rc = client_connect(c, &fd, &ssl);
        while (c->bulk && c->rc == BENCH_OK && !atomic_load(c->stop)) {
            c->rc = SSL_write(ssl, data, BENCH_RECORD) == BENCH_RECORD ? BENCH_OK : BENCH_ERROR;
            c->sent += c->rc == BENCH_OK ? BENCH_RECORD : 0;
            if (first) {
                atomic_fetch_add(c->active, 1);
                first = false;
            }
        }
        if (c->rc == BENCH_OK) {
            atomic_fetch_add(c->handshakes, 1);
            (void)SSL_shutdown(ssl); /* close_notify */
        } else {
            bench_ssl_error("tunnel client");
        }
        SSL_free(ssl);
        if (c->bulk) {
            /* Every byte reaches the sink before the terminator answers our FIN with its own. */
            bench_tcp_close(fd);
        } else if (fd >= 0) {
            close(fd);
        }
        fd = -1;
    }
    c->cpu_ns = bench_thread_cpu_ns() - cpu0;
    return NULL;
}

/* Waits up to @p ms for @p done(@p env, @p arg); false if it never came. */
static bool wait_for(bool (*done)(const struct tunnel_env *, uint64_t),
                     const struct tunnel_env *env, uint64_t arg, int ms)
{
    int64_t deadline = bench_now_ns() + (int64_t)ms * 1000000;
    bool ok = done(env, arg);

    while (!ok && bench_now_ns() < deadline) {
        usleep(1000);
        ok = done(env, arg);
    }
    return ok;
}

static bool sink_has(const struct tunnel_env *env, uint64_t bytes)
{
    return atomic_load(&env->sink.bytes) >= bytes && atomic_load(&env->sink.open) == 0;
}

static int64_t proxy_cpu_ns(const struct proxy *px)
{
    clockid_t clock;

    return clock_getcpuclockid(px->child.pid, &clock) == 0 ? bench_clock_ns(clock) : 0;
}

/* The window's figure: bytes the sink received, or handshakes completed. */
static uint64_t progress_of(const struct tunnel_env *env, bool bulk, atomic_uint_fast64_t *hs)
{
    return bulk ? atomic_load(&env->sink.bytes) : atomic_load(hs);
}

static int run_proxy(const struct bench_run *run, int p, struct bench_sample *out)
{
    struct tunnel_env *env = run->extra;
    struct proxy *px = &env->proxies[p];
    bool bulk = run->limits.write_size > 0;
    int nclients = bulk ? env->threads : env->threads * HS_CLIENTS_PER_THREAD;
    struct client clients[MAX_CLIENTS];
    atomic_bool stop;
    atomic_uint_fast64_t handshakes;
    atomic_int active;
    int64_t deadline = bench_now_ns() + (int64_t)START_TIMEOUT_MS * 1000000;
    int64_t budget_ns = (int64_t)(run->limits.seconds * 1e9);
    uint64_t base = atomic_load(&env->sink.bytes);
    const unsigned char *payload = bench_payload(); /* made here, before the threads */
    uint64_t count0 = 0, count1 = 0, sent = 0;
    int64_t t0 = 0, t1 = 0, cpu0 = 0, cpu1 = 0, client_cpu = 0;
    int started = 0;
    int rc = BENCH_OK;

    (void)payload;
    atomic_init(&stop, false);
    atomic_init(&handshakes, 0);
    atomic_init(&active, 0);
    memset(clients, 0, sizeof(clients));
    for (int i = 0; i < nclients; i++) {
        clients[i] = (struct client){.env = env,
                                     .port = px->port,
                                     .bulk = bulk,
                                     .stop = &stop,
                                     .handshakes = &handshakes,
                                     .active = &active};
        if (pthread_create(&clients[i].thread, NULL, client_thread, &clients[i]) != 0) {
            rc = BENCH_ERROR;
            break;
        }
        started++;
    }
    /* The window opens once every bulk client sends (or a first handshake is done). */
    while (rc == BENCH_OK &&
           (bulk ? atomic_load(&active) < nclients : atomic_load(&handshakes) == 0)) {
        if (bench_now_ns() > deadline) {
            fprintf(stderr, "%s: clients not started in %d ms\n", proxy_names[p], START_TIMEOUT_MS);
            rc = BENCH_ERROR;
        }
        usleep(1000);
    }
    if (rc == BENCH_OK) {
        t0 = bench_now_ns();
        cpu0 = proxy_cpu_ns(px);
        count0 = progress_of(env, bulk, &handshakes);
        count1 = count0;
        while (bench_now_ns() - t0 < budget_ns && count1 - count0 < run->limits.max_count) {
            usleep(budget_ns > 20000000 ? 10000 : 1000);
            count1 = progress_of(env, bulk, &handshakes);
        }
        t1 = bench_now_ns();
        cpu1 = proxy_cpu_ns(px);
        count1 = progress_of(env, bulk, &handshakes);
    }
    atomic_store(&stop, true);
    for (int i = 0; i < started; i++) {
        pthread_join(clients[i].thread, NULL);
        sent += clients[i].sent;
        client_cpu += clients[i].cpu_ns;
        if (clients[i].rc != BENCH_OK) {
            rc = BENCH_ERROR;
        }
    }
    /* Everything sent has arrived, and the terminator closed every connection to the sink. */
    if (rc == BENCH_OK && !wait_for(sink_has, env, base + sent, SETTLE_TIMEOUT_MS)) {
        fprintf(stderr, "%s: the sink got %llu of %llu bytes, %d connections still open\n",
                proxy_names[p], (unsigned long long)(atomic_load(&env->sink.bytes) - base),
                (unsigned long long)sent, atomic_load(&env->sink.open));
        rc = BENCH_ERROR;
    }
    if (rc == BENCH_OK && count1 == count0) {
        fprintf(stderr, "%s: nothing moved in the window\n", proxy_names[p]);
        rc = BENCH_ERROR;
    }
    if (rc == BENCH_OK) {
        double units = bulk ? bench_mib(count1 - count0) : (double)(count1 - count0);

        out->count = count1 - count0;
        out->rate = units / ((double)(t1 - t0) / 1e9);
        out->server_cpu_us = bench_us_per(cpu1 - cpu0, units);
        /* The clients' CPU over their whole run, against what they did in it. */
        out->client_cpu_us =
            bench_us_per(client_cpu, bulk ? bench_mib(sent) : (double)atomic_load(&handshakes));
        snprintf(out->cipher, sizeof(out->cipher), "%s", clients[0].cipher);
        snprintf(out->impl, sizeof(out->impl), "%s",
                 p == PROXY_TLSOCK && env->impl == TLSOCK_IMPL_GNUTLS ? "gnutls" : "openssl");
    } else {
        print_log(env->dir, p == PROXY_HAPROXY  ? "haproxy.log"
                            : p == PROXY_TLSOCK ? "tlsock.log"
                                                : "stunnel.log");
    }
    return rc;
}

static int run_haproxy(const struct bench_run *run, struct bench_sample *out)
{
    return run_proxy(run, PROXY_HAPROXY, out);
}

static int run_tlsock(const struct bench_run *run, struct bench_sample *out)
{
    return run_proxy(run, PROXY_TLSOCK, out);
}

static int run_stunnel(const struct bench_run *run, struct bench_sample *out)
{
    return run_proxy(run, PROXY_STUNNEL, out);
}

static const struct bench_measure tunnel_bulk = {
    .unit = "MiB/s",
    .client_cpu = "  client CPU per MiB (all clients)",
    .server_cpu = "  terminator CPU per MiB",
};

static const struct bench_measure tunnel_handshakes = {
    .unit = "hs/s",
    .handshakes = true,
    .client_cpu = "  client CPU per hs (all clients)",
    .server_cpu = "  terminator CPU per hs",
};

#define TUNNEL_CASE                                                                                \
    .sides = {{"haproxy", BENCH_LAYER_RAW, run_haproxy},                                           \
              {"tlsock", BENCH_LAYER_TLSOCK, run_tlsock},                                          \
              {"stunnel", BENCH_LAYER_RAW, run_stunnel}},                                          \
    .left_name = "haproxy (OpenSSL); the reference row is stunnel (OpenSSL), target 1.10 too",     \
    .reference_label = "  vs stunnel", .missing = tunnel_missing, .version = tunnel_version,       \
    .teardown = tunnel_teardown, .no_tickets = true, .target = TUNNEL_TARGET,                      \
    .rounds = BENCH_ASYNC_ROUNDS
#define TUNNEL_BULK                                                                                \
    .measure = &tunnel_bulk, .suite = "TLS_AES_128_GCM_SHA256", .write_size = BENCH_RECORD,        \
    TUNNEL_CASE
#define TUNNEL_HS .measure = &tunnel_handshakes, TUNNEL_CASE

static const struct bench_case cases[] = {
    {.name = "tunnel-bulk",
     .summary = "TLS termination to a TCP sink, 16 KiB records from 1 raw OpenSSL client: tlsock "
                "tunnel --threads 1 against haproxy nbthread 1 and stunnel",
     .setup = tunnel_setup_1,
     TUNNEL_BULK},
    {.name = "tunnel-bulk-threads2",
     .summary = "the same with --threads 2, nbthread 2, and 2 clients",
     .setup = tunnel_setup_2,
     TUNNEL_BULK},
    {.name = "tunnel-handshake",
     .summary = "full TLS 1.3 handshakes through the terminators, no tickets, 8 client threads, "
                "--threads 1 and nbthread 1",
     .setup = tunnel_setup_1,
     TUNNEL_HS},
    {.name = "tunnel-handshake-threads2",
     .summary = "the same with --threads 2, nbthread 2, and 16 client threads",
     .setup = tunnel_setup_2,
     TUNNEL_HS},
    {.name = "tunnel-bulk-gnutls",
     .summary = "as tunnel-bulk, tlsock tunnel on GnuTLS (haproxy and stunnel on OpenSSL)",
     .setup = tunnel_setup_1,
     .impl = TLSOCK_IMPL_GNUTLS,
     TUNNEL_BULK},
    {.name = "tunnel-bulk-threads2-gnutls",
     .summary = "as tunnel-bulk-threads2, tlsock tunnel on GnuTLS",
     .setup = tunnel_setup_2,
     .impl = TLSOCK_IMPL_GNUTLS,
     TUNNEL_BULK},
    {.name = "tunnel-handshake-gnutls",
     .summary = "as tunnel-handshake, tlsock tunnel on GnuTLS",
     .setup = tunnel_setup_1,
     .impl = TLSOCK_IMPL_GNUTLS,
     TUNNEL_HS},
    {.name = "tunnel-handshake-threads2-gnutls",
     .summary = "as tunnel-handshake-threads2, tlsock tunnel on GnuTLS",
     .setup = tunnel_setup_2,
     .impl = TLSOCK_IMPL_GNUTLS,
     TUNNEL_HS},
};

const struct bench_cases bench_tunnel_cases = BENCH_CASES(cases);
