/*
 * Multi-core scaling of the serving commands (issue 13, point 4): `tlsock serve --threads 1`
 * against `--threads 2`, and the same for `tlsock tunnel` terminating TLS in front of a plain
 * sink. The servers are the CLI binary of this build, run as child processes for the whole case
 * (one per thread count and a second one-thread process for reference, each idle while the others
 * are measured), with the bench's certificate, TLS 1.3 only and no session tickets; every
 * connection is a full ECDSA handshake.
 *
 * The clients are CLIENT_THREADS threads of the bench process, each connecting, handshaking with
 * the case's raw baseline client and closing (close_notify, then the graceful close that waits
 * for the server's end), one connection after another, for the run's time. The figure is the
 * server process's CPU time per handshake, read from its process CPU clock
 * (clock_getcpuclockid: the utime + stime of all its threads, as /proc/PID/stat has them, in
 * nanoseconds rather than clock ticks) before and after the run: the clients' CPU is the bench's,
 * not the server's. On a machine whose few cores the clients share with the server, the rate
 * cannot double with a second server thread (the clients need CPU too), but a server whose threads
 * do not get in each other's way (locks, shared cache lines) spends the same CPU per handshake
 * with two threads as with one; that is what the target checks. The rate and its ratio are
 * reported for information; docs/BENCHMARKS.md says more.
 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "async.h"

/* CPU per handshake with two threads at most this much of one thread's ("flat"). */
#define THREADS_TARGET 1.05

/* Client threads: enough connections in flight to keep two server threads busy. */
#define CLIENT_THREADS 4

/* How long a server may take to say it listens, and to exit after SIGTERM. */
#define START_TIMEOUT_MS 5000
#define STOP_TIMEOUT_MS  5000

/* The tunnel's plain sink: connections it holds at once. */
#define SINK_MAX_CONNS 256

/*
 * The servers, all running for the whole case: --threads 1, --threads 2, and a second
 * --threads 1 process. The sides: 1 thread, 2 threads, and for reference 2 processes of 1 thread
 * each (servers 0 and 2, the clients spread over both): the same CPUs busy as with 2 threads,
 * nothing shared between the two servers. What 2 threads cost above that reference is what
 * the threads' sharing of one process costs (locks, shared cache lines); what the reference
 * costs above 1 thread is the machine's (CPUs shared with the clients, caches, scheduling).
 */
#define SERVERS 3
static const int server_threads[SERVERS] = {1, 2, 1};
static const char *const server_logs[SERVERS] = {"server-1.log", "server-2.log", "server-1b.log"};
static const char *const dir_files[] = {"cert.pem", "key.pem", "server-1.log", "server-2.log",
                                        "server-1b.log"};

struct side_servers {
    int n;
    int server[2];
};

static const char *const run_names[MAX_SIDES] = {"1 thread", "2 threads", "2 processes"};

static const struct side_servers side_servers[MAX_SIDES] = {
    {1, {0, 0}},
    {1, {1, 0}},
    {2, {0, 2}},
};

struct threads_env {
    bool tunnel;
    char dir[64]; /* cert.pem, key.pem and the servers' logs */
    struct bench_child child[SERVERS];
    uint16_t port[SERVERS];
    /* The tunnel's target: a plain server that reads each connection to its end and closes. */
    int sink_fd;
    uint16_t sink_port;
    pthread_t sink_thread;
    bool sink_running;
    atomic_bool stop;
};

/* What the client threads of one run share. */
struct clients {
    const struct bench_run *run;
    uint16_t port[2]; /* client thread i uses port[i % nports] */
    int nports;
    atomic_int next; /* the next client thread's index */
    int64_t deadline_ns;
    atomic_uint_fast64_t handshakes;
    atomic_bool failed;
    char cipher[64]; /* client thread 0's first connection's, written by that thread only */
    char impl[16];
};

static const char *cli_missing(void)
{
    return access(BENCH_TLSOCK_CLI, X_OK) == 0 ? NULL
                                               : "the tlsock CLI (" BENCH_TLSOCK_CLI ") not built";
}

/* ---- The tunnel's plain sink: one thread, every connection read to its end, then closed ---- */

static void sink_accept(struct pollfd *pfds, nfds_t *n)
{
    int fd = accept4(pfds[0].fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

    if (fd >= 0 && *n < SINK_MAX_CONNS) {
        pfds[*n] = (struct pollfd){.fd = fd, .events = POLLIN};
        (*n)++;
    } else if (fd >= 0) {
        close(fd);
    }
}

/* Reads what @p pfd's connection has; closes it at its end. Returns whether it is closed. */
static bool sink_read(struct pollfd *pfd)
{
    char buf[4096];
    ssize_t got = recv(pfd->fd, buf, sizeof(buf), 0);
    bool closed = got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR);

    if (closed) {
        close(pfd->fd);
    }
    return closed;
}

static void *sink_thread(void *arg)
{
    struct threads_env *env = arg;
    static struct pollfd pfds[SINK_MAX_CONNS];
    nfds_t n = 1;

    pfds[0] = (struct pollfd){.fd = env->sink_fd, .events = POLLIN};
    /* Bounded by the stop flag, seen within BENCH_ACCEPT_POLL_MS. */
    while (!atomic_load(&env->stop)) {
        if (poll(pfds, n, BENCH_ACCEPT_POLL_MS) <= 0) {
            continue;
        }
        for (nfds_t i = n - 1; i > 0; i--) {
            if (pfds[i].revents != 0 && sink_read(&pfds[i])) {
                pfds[i] = pfds[--n];
            }
        }
        if (pfds[0].revents != 0) {
            sink_accept(pfds, &n);
        }
    }
    for (nfds_t i = 1; i < n; i++) {
        close(pfds[i].fd);
    }
    return NULL;
}

/* ---- The servers ---- */

/* What waiting for a server to listen looks at. */
struct listening {
    const char *log;
    uint16_t *port;
};

/* "listening on 127.0.0.1:PORT" in the server's log: its first line once it listens. */
static bool read_port(void *arg)
{
    const struct listening *l = arg;
    char line[128] = "";
    unsigned value = 0;
    FILE *f = fopen(l->log, "r");
    bool found = f != NULL && fgets(line, sizeof(line), f) != NULL &&
                 sscanf(line, "listening on 127.0.0.1:%u", &value) == 1 && value > 0 &&
                 value <= UINT16_MAX;

    if (f != NULL) {
        fclose(f);
    }
    *l->port = (uint16_t)value;
    return found;
}

/* Starts server @p s and waits until it listens; fails if it exits first. */
static int start_server(struct threads_env *env, const struct bench_config *config, int s)
{
    char cert[128];
    char key[128];
    char log[128];
    char threads[16];
    char target[32];
    char *argv[24];
    int argc = 0;
    int rc;

    snprintf(cert, sizeof(cert), "%s/cert.pem", env->dir);
    snprintf(key, sizeof(key), "%s/key.pem", env->dir);
    snprintf(log, sizeof(log), "%s/%s", env->dir, server_logs[s]);
    snprintf(threads, sizeof(threads), "%d", server_threads[s]);
    snprintf(target, sizeof(target), "127.0.0.1:%u", env->sink_port);
    argv[argc++] = BENCH_TLSOCK_CLI;
    if (env->tunnel) {
        argv[argc++] = "tunnel";
        argv[argc++] = "--accept";
        argv[argc++] = "127.0.0.1:0";
        argv[argc++] = "--connect";
        argv[argc++] = target;
    } else {
        argv[argc++] = "serve";
        argv[argc++] = "--listen";
        argv[argc++] = "127.0.0.1:0";
    }
    argv[argc++] = "--cert";
    argv[argc++] = cert;
    argv[argc++] = "--key";
    argv[argc++] = key;
    argv[argc++] = "--tls";
    argv[argc++] = "1.3";
    argv[argc++] = "--no-tickets";
    argv[argc++] = "--impl";
    argv[argc++] = config->impl == TLSOCK_IMPL_GNUTLS ? "gnutls" : "openssl";
    argv[argc++] = "--threads";
    argv[argc++] = threads;
    argv[argc] = NULL;
    rc = bench_child_spawn(&env->child[s], env->tunnel ? "tunnel" : "serve", argv, log);
    if (rc == BENCH_OK) {
        struct listening l = {.log = log, .port = &env->port[s]};

        rc = bench_child_wait(&env->child[s], read_port, &l, START_TIMEOUT_MS);
    }
    if (rc != BENCH_OK) {
        bench_print_file("threads", log);
    }
    return rc;
}

static void threads_teardown(void *envp)
{
    struct threads_env *env = envp;

    if (env == NULL) {
        return;
    }
    for (int s = 0; s < SERVERS; s++) {
        (void)bench_child_stop(&env->child[s], SIGTERM, STOP_TIMEOUT_MS);
    }
    if (env->sink_running) {
        atomic_store(&env->stop, true);
        pthread_join(env->sink_thread, NULL);
    }
    if (env->sink_fd >= 0) {
        close(env->sink_fd);
    }
    if (env->dir[0] != '\0') {
        bench_remove_dir(env->dir, dir_files, sizeof(dir_files) / sizeof(dir_files[0]));
    }
    free(env);
}

/* The case's setup: the sink (tunnel), then the two servers, for the whole case. */
static int setup(const struct bench_config *config, bool tunnel, void **out)
{
    struct threads_env *env = calloc(1, sizeof(*env));
    int rc = BENCH_ERROR;

    if (env == NULL) {
        goto out;
    }
    env->tunnel = tunnel;
    env->sink_fd = -1;
    for (int s = 0; s < SERVERS; s++) {
        env->child[s].pid = -1;
        env->child[s].to = -1;
        env->child[s].from = -1;
    }
    atomic_init(&env->stop, false);
    snprintf(env->dir, sizeof(env->dir), "/tmp/tlsock-bench-XXXXXX");
    if (mkdtemp(env->dir) == NULL) {
        fprintf(stderr, "threads: mkdtemp: %s\n", strerror(errno));
        env->dir[0] = '\0';
        goto out;
    }
    rc = bench_write_file(env->dir, "cert.pem", config->cert_pem);
    if (rc == BENCH_OK) {
        rc = bench_write_file(env->dir, "key.pem", config->key_pem);
    }
    if (rc == BENCH_OK && tunnel) {
        env->sink_fd = bench_tcp_listen_fd("threads sink", true, &env->sink_port);
        rc = env->sink_fd >= 0 ? BENCH_OK : BENCH_ERROR;
    }
    /* Spawned before the sink thread exists: nothing but this thread runs during the spawns. */
    for (int s = 0; rc == BENCH_OK && s < SERVERS; s++) {
        rc = start_server(env, config, s);
    }
    if (rc == BENCH_OK && tunnel) {
        env->sink_running = pthread_create(&env->sink_thread, NULL, sink_thread, env) == 0;
        rc = env->sink_running ? BENCH_OK : BENCH_ERROR;
    }
    if (rc == BENCH_OK) {
        *out = env;
        env = NULL;
    }

out:
    threads_teardown(env);
    return rc;
}

static int serve_setup(const struct bench_config *config, void **out)
{
    return setup(config, false, out);
}

static int tunnel_setup(const struct bench_config *config, void **out)
{
    return setup(config, true, out);
}

/* ---- The clients ---- */

static void *client_thread(void *arg)
{
    struct clients *cl = arg;
    const struct bench_ops *ops = cl->run->raw_ops;
    int index = atomic_fetch_add(&cl->next, 1);
    uint16_t port = cl->port[index % cl->nports];
    bool first = true;

    while (!atomic_load(&cl->failed) && bench_now_ns() < cl->deadline_ns &&
           atomic_load(&cl->handshakes) < cl->run->limits.max_count) {
        void *conn = NULL;

        if (ops->connect(cl->run->raw_env, port, &conn) != BENCH_OK) {
            atomic_store(&cl->failed, true);
            break;
        }
        if (first && index == 0) {
            snprintf(cl->cipher, sizeof(cl->cipher), "%s", ops->cipher(conn));
            snprintf(cl->impl, sizeof(cl->impl), "%s", ops->impl(conn));
        }
        first = false;
        ops->close(conn);
        atomic_fetch_add(&cl->handshakes, 1);
    }
    return NULL;
}

/* Voluntary context switches of process @p pid so far: the times one of its threads slept. */
static uint64_t sleeps_of(pid_t pid)
{
    char path[64];
    char line[128];
    uint64_t total = 0;
    struct dirent *de;
    DIR *dir;

    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    dir = opendir(path);
    while (dir != NULL && (de = readdir(dir)) != NULL) {
        FILE *f;

        if (de->d_name[0] == '.') {
            continue;
        }
        snprintf(path, sizeof(path), "/proc/%d/task/%.16s/status", (int)pid, de->d_name);
        f = fopen(path, "r");
        while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
            unsigned long long v = 0;

            if (sscanf(line, "voluntary_ctxt_switches: %llu", &v) == 1) {
                total += v;
            }
        }
        if (f != NULL) {
            fclose(f);
        }
    }
    if (dir != NULL) {
        closedir(dir);
    }
    return total;
}

/* What side @p s's server processes have spent so far. */
struct servers_use {
    int64_t cpu_ns;
    uint64_t sleeps;
};

/* False if a CPU clock is missing (a server exited). */
static bool servers_use(const struct threads_env *env, int s, struct servers_use *use)
{
    const struct side_servers *ss = &side_servers[s];
    bool ok = true;

    memset(use, 0, sizeof(*use));
    for (int i = 0; i < ss->n && ok; i++) {
        pid_t pid = env->child[ss->server[i]].pid;
        clockid_t clock;

        ok = clock_getcpuclockid(pid, &clock) == 0;
        use->cpu_ns += ok ? bench_clock_ns(clock) : 0;
        use->sleeps += ok ? sleeps_of(pid) : 0;
    }
    return ok;
}

/*
 * One run against side @p s's servers: CLIENT_THREADS clients for the run's time. The rate is the
 * servers' CPU per handshake, full_rate the handshakes per second, client_cpu_us the bench
 * process's CPU (the clients') per handshake, server_syscalls the servers' sleeps per handshake.
 */
static int run_threads(const struct bench_run *run, int s, struct bench_sample *out)
{
    struct threads_env *env = run->extra;
    static struct clients cl;
    pthread_t threads[CLIENT_THREADS];
    int started = 0;
    int64_t start_ns;
    struct servers_use use0;
    struct servers_use use1;
    int64_t client0;
    int64_t elapsed;
    uint64_t n;
    int rc = BENCH_OK;

    memset(&cl, 0, sizeof(cl));
    cl.run = run;
    cl.nports = side_servers[s].n;
    for (int i = 0; i < cl.nports; i++) {
        cl.port[i] = env->port[side_servers[s].server[i]];
    }
    atomic_init(&cl.handshakes, 0);
    atomic_init(&cl.next, 0);
    atomic_init(&cl.failed, !servers_use(env, s, &use0));
    start_ns = bench_now_ns();
    cl.deadline_ns = start_ns + (int64_t)(run->limits.seconds * 1e9);
    client0 = bench_clock_ns(CLOCK_PROCESS_CPUTIME_ID);
    for (; !atomic_load(&cl.failed) && started < CLIENT_THREADS; started++) {
        if (pthread_create(&threads[started], NULL, client_thread, &cl) != 0) {
            atomic_store(&cl.failed, true);
            break;
        }
    }
    for (int i = 0; i < started; i++) {
        pthread_join(threads[i], NULL);
    }
    /* Every client waited for the server's end of its connection: the server is done with it. */
    elapsed = bench_now_ns() - start_ns;
    n = atomic_load(&cl.handshakes);
    if (!servers_use(env, s, &use1) || atomic_load(&cl.failed) || n == 0) {
        fprintf(stderr, "threads: %s, %s: %s\n", env->tunnel ? "tunnel" : "serve", run_names[s],
                n == 0 ? "no handshake completed" : "a client failed");
        rc = BENCH_ERROR;
    }
    out->rate = bench_us_per(use1.cpu_ns - use0.cpu_ns, (double)n);
    out->server_syscalls = n > 0 ? (double)(use1.sleeps - use0.sleeps) / (double)n : 0;
    out->client_cpu_us =
        bench_us_per(bench_clock_ns(CLOCK_PROCESS_CPUTIME_ID) - client0, (double)n);
    out->full_rate = elapsed > 0 ? (double)n * 1e9 / (double)elapsed : 0;
    out->count = n;
    snprintf(out->cipher, sizeof(out->cipher), "%s", cl.cipher);
    snprintf(out->impl, sizeof(out->impl), "%s", cl.impl);
    return rc;
}

static int run_one_thread(const struct bench_run *run, struct bench_sample *out)
{
    return run_threads(run, SIDE_RAW, out);
}

static int run_two_threads(const struct bench_run *run, struct bench_sample *out)
{
    return run_threads(run, SIDE_TLSOCK, out);
}

static int run_two_processes(const struct bench_run *run, struct bench_sample *out)
{
    return run_threads(run, SIDE_REFERENCE, out);
}

/* What the four cases share: the measure, the sides, the target, the server. */
#define THREADS_CASE                                                                               \
    .measure = &bench_threads, .no_tickets = true, .target = THREADS_TARGET,                       \
    .rounds = BENCH_ASYNC_ROUNDS, .missing = cli_missing, .teardown = threads_teardown,            \
    .reference_label = "  vs 2 processes of 1 thread",                                             \
    .sides = {{"1 thread", BENCH_LAYER_RAW, run_one_thread},                                       \
              {"2 threads", BENCH_LAYER_TLSOCK, run_two_threads},                                  \
              {"2 processes", BENCH_LAYER_RAW, run_two_processes}}

static const struct bench_case cases[] = {
    {.name = "serve-threads",
     .summary = "server CPU per full ECDSA handshake of `tlsock serve --threads 2` against "
                "--threads 1 (no tickets; clients: 4 raw OpenSSL threads of the bench)",
     .left_name =
         "`tlsock serve --threads 1` (in the 'vs 2 processes' row: two such processes), the "
         "tlsock column --threads 2 (all OpenSSL)",
     .setup = serve_setup,
     THREADS_CASE},
    {.name = "serve-threads-gnutls",
     .summary = "serve-threads with the server on GnuTLS (clients: raw GnuTLS)",
     .impl = TLSOCK_IMPL_GNUTLS,
     .left_name =
         "`tlsock serve --threads 1` (in the 'vs 2 processes' row: two such processes), the "
         "tlsock column --threads 2 (all GnuTLS)",
     .setup = serve_setup,
     THREADS_CASE},
    {.name = "tunnel-threads",
     .summary = "server CPU per full ECDSA handshake of `tlsock tunnel --threads 2` against "
                "--threads 1, terminating TLS in front of a plain sink",
     .left_name =
         "`tlsock tunnel --threads 1` (in the 'vs 2 processes' row: two such processes), the "
         "tlsock column --threads 2 (all OpenSSL)",
     .setup = tunnel_setup,
     THREADS_CASE},
    {.name = "tunnel-threads-gnutls",
     .summary = "tunnel-threads with the tunnel on GnuTLS (clients: raw GnuTLS)",
     .impl = TLSOCK_IMPL_GNUTLS,
     .left_name =
         "`tlsock tunnel --threads 1` (in the 'vs 2 processes' row: two such processes), the "
         "tlsock column --threads 2 (all GnuTLS)",
     .setup = tunnel_setup,
     THREADS_CASE},
};

const struct bench_cases bench_serve_threads_cases = BENCH_CASES(cases);
