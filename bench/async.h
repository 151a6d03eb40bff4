/*
 * tlsock-bench: what the async cases (libuv driver, built with BENCH_HAVE_UV) share: a tlsock_uv
 * server on a loop of its own (uv_server.c), the echo sides that the stunnel case reuses
 * (case_echo.c), child processes (proc.c) and the idle case's entry point in them.
 */
#ifndef TLSOCK_BENCH_ASYNC_H
#define TLSOCK_BENCH_ASYNC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include <uv.h>

#include "bench.h"
#include "tlsock/uv.h"

/* What a tlsock_uv server does with the connections it accepts. */
enum bench_uv_mode {
    BENCH_UV_ECHO,  /* writes back what it reads */
    BENCH_UV_CLOSE, /* closes each right after the handshake */
    BENCH_UV_HOLD,  /* keeps each, idle, until the server is closed */
};

struct srv_conn;
struct echo_buf;

/* A tlsock_uv server on a loop of its own. */
struct bench_uv_server {
    uv_loop_t loop;
    uv_async_t wake;       /* the stop request */
    uv_timer_t stop_guard; /* after the stop request: fails a close that never finishes */
    bool guarded;
    struct tlsock_uv_server *server;
    pthread_t thread;
    enum bench_uv_mode mode;
    uint16_t port;
    bool stopping;
    int rc;              /* first failure, BENCH_OK if none */
    uint64_t handshakes; /* clients handed to on_connect */
    uint64_t held;       /* connections handed to on_connect and not closed yet */
    uint64_t bytes;      /* echoed */
    int64_t echo_cpu0_ns;
    int64_t echo_cpu_ns;    /* from the echo connection's handshake to its close_notify */
    int64_t thread_cpu_ns;  /* the whole loop, once stopped */
    uint64_t syscalls;      /* the loop thread's system calls (bench_syscalls), once stopped */
    struct srv_conn *conns; /* the connections held */
    struct echo_buf *pool;  /* echo: free copy buffers */
    int pooled;
    char cipher[64]; /* the first connection's */
    char impl[16];
};

/* Sets the server up on its loop, listening on 127.0.0.1 (srv->port); nothing runs yet. */
int bench_uv_server_init(struct bench_uv_server *srv, struct tlsock_ctx *ctx,
                         enum bench_uv_mode mode);
/* Runs the loop until the server is closed: in a thread of its own (start), or here (run). */
int bench_uv_server_start(struct bench_uv_server *srv);
void bench_uv_server_run(struct bench_uv_server *srv);
/* From the loop's thread: closes the server and every connection; the loop then ends. */
void bench_uv_server_close(struct bench_uv_server *srv);
/* From another thread, after start: closes, joins, frees; returns the first failure. */
int bench_uv_server_stop(struct bench_uv_server *srv);
/* After run returned: frees and closes the loop; returns the first failure. */
int bench_uv_server_finish(struct bench_uv_server *srv);

/* The options every tlsock_uv connection of the bench has: timeouts, user pointer. */
void bench_uv_opts(struct tlsock_uv_opts *opts, void *user);
/* The suite and implementation a tlsock_uv connection negotiated, "?" if unknown. */
void bench_uv_name(struct tlsock_uv_conn *conn, char *cipher, size_t cipher_len, char *impl,
                   size_t impl_len);

/* What every echo case has: TLS 1.3 AES-128-GCM, 16 KiB writes, 64 KiB in flight. */
#define BENCH_ECHO_CASE                                                                            \
    .measure = &bench_echo, .suite = "TLS_AES_128_GCM_SHA256", .write_size = BENCH_RECORD,         \
    .window = 64 * 1024, .rounds = BENCH_ASYNC_ROUNDS

/* Echo (case_echo.c): the raw baseline on blocking sockets, client and server threads. */
int bench_echo_blocking(const struct bench_run *run, struct bench_sample *out);
/* The raw blocking echo client against a tlsock_uv echo server. */
int bench_echo_uv_server(const struct bench_run *run, struct bench_sample *out);
/*
 * The raw blocking echo client against any echo server on 127.0.0.1:@p port; fills the rate and
 * the client's CPU time, not the server's.
 */
int bench_echo_client(const struct bench_run *run, uint16_t port, struct bench_sample *out);

/* Finds program @p name in PATH (proc.c); @p out gets its full path. */
bool bench_find_program(const char *name, char *out, size_t len);

/* @p clock in nanoseconds (proc.c): a child's CPU clock (clock_getcpuclockid), a thread's. */
int64_t bench_clock_ns(clockid_t clock);

/* A child process (proc.c), spoken to through pipes or writing to a log file. */
struct bench_child {
    const char *name; /* in messages */
    pid_t pid;
    int to;   /* its stdin, -1 with a log file */
    int from; /* its stdout, -1 with a log file */
    char buf[512];
    size_t len;
};

/*
 * Starts @p argv[0] with @p argv; with @p log NULL, its stdin and stdout are pipes to us, else
 * its stdin is /dev/null and its stdout and stderr go to the file @p log.
 */
int bench_child_spawn(struct bench_child *c, const char *name, char *const argv[], const char *log);
/* One line from the child within @p timeout_ms, without its newline. */
int bench_child_line(struct bench_child *c, int timeout_ms, char *line, size_t cap);
int bench_child_send(struct bench_child *c, const char *text);
/*
 * Closes its stdin, sends @p sig (0: none), waits @p timeout_ms for it to exit, then kills it;
 * always reaps it. BENCH_OK when it exited with status 0 (or from @p sig).
 */
int bench_child_stop(struct bench_child *c, int sig, int timeout_ms);

/*
 * Waits up to @p timeout_ms, checking every 10 ms, for @p ready(@p arg) to say the child started
 * (listens, say). BENCH_ERROR, printed, when the child exits first (it is then reaped) or time
 * runs out.
 */
int bench_child_wait(struct bench_child *c, bool (*ready)(void *arg), void *arg, int timeout_ms);

/* Files of a child's private directory (proc.c): @p text into @p dir/@p name, mode 0600;
 * BENCH_ERROR, printed, on failure. */
int bench_write_file(const char *dir, const char *name, const char *text);
/* Removes the files @p names (@p n of them) from @p dir, then @p dir. */
void bench_remove_dir(const char *dir, const char *const *names, size_t n);
/* Copies the file @p path (a child's log) to stderr, each line after "@p prefix: ". */
void bench_print_file(const char *prefix, const char *path);
/*
 * stunnel.conf in @p dir (case_stunnel.c): TLS 1.3 termination on 127.0.0.1:@p accept_port to
 * 127.0.0.1:@p connect_port with dir/cert.pem and dir/key.pem, in the foreground, warnings only,
 * TCP_NODELAY both ways; @p extra: more lines of the service, each ending in a newline.
 */
int bench_write_stunnel_conf(const char *dir, uint16_t accept_port, uint16_t connect_port,
                             const char *extra);

/*
 * The idle case's child processes: tlsock-bench executes itself with BENCH_IDLE_CHILD_ARG as its
 * first argument (case_idle.c); returns the exit status.
 */
#define BENCH_IDLE_CHILD_ARG "--idle-child"
int bench_idle_child(int argc, char **argv);
/* The idle cases' connections by default, and their target: raw + BENCH_IDLE_BUDGET bytes per
 * connection (docs/DESIGN.md: raw with released buffers + 1 KiB). */
#define BENCH_IDLE_CONNECTIONS 10000
#define BENCH_IDLE_BUDGET      1024.0
/*
 * The two sides of an idle case (case_idle.c): each starts a server process of its kind ("raw",
 * "tlsock"; with the suffix the case's setup puts in run->extra, "-block" for
 * case_idle_block.c's), opens the warm-up connections and then run->limits.concurrency more from
 * tlsock_uv clients, and fills @p out with the server's growth per connection.
 */
int bench_idle_raw(const struct bench_run *run, struct bench_sample *out);
int bench_idle_tlsock(const struct bench_run *run, struct bench_sample *out);
/* What every idle case has: one run per side, the measure, the connections and the budget. */
#define BENCH_IDLE_CASE                                                                            \
    .measure = &bench_idle, .concurrency = BENCH_IDLE_CONNECTIONS, .one_round = true,              \
    .budget = BENCH_IDLE_BUDGET,                                                                   \
    .sides = {                                                                                     \
        {"raw", BENCH_LAYER_RAW, bench_idle_raw},                                                  \
        {"tlsock", BENCH_LAYER_TLSOCK, bench_idle_tlsock},                                         \
    }
/*
 * In a server process: answers the parent's command byte @p cmd ('c': "count N", 'm': "mark RSS
 * HEAP TLS N CIPHER IMPL") about the @p held connections.
 */
void bench_idle_answer(char cmd, uint64_t held, const char *cipher, const char *impl);
/*
 * The server process of the blocking idle cases (case_idle_block.c): accepts and handshakes
 * clients with @p ops (a blocking layer set up in @p env) one at a time, holds them idle, and
 * answers the commands on its stdin until it closes; returns the exit status.
 */
int bench_idle_block_server(const struct bench_ops *ops, void *env);

#endif /* TLSOCK_BENCH_ASYNC_H */
