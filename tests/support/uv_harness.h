/*
 * The one fixture of the libuv driver's tests: one loop per test in the test thread, every
 * connection and server tracked (or, for tests that record in structures of their own, closed
 * through struct env_extra), bounded waits, and a teardown that closes everything and requires
 * the loop to close.
 *
 * Callbacks only record what happened (a cmocka failure would longjmp out of uv_run()) and flag
 * every breach of the header's rules they can see as an anomaly; the test asserts between runs of
 * the loop. Every wait runs the loop until a condition holds, bounded by a guard timer and an
 * iteration count. The teardown closes every connection and server, joins the threads, then
 * checks that the loop closes (uv_loop_close() fails while the library still has a handle on it).
 * Each test runs with SIGPIPE at its default action but blocked: one the library lets through
 * fails the test instead of killing the executable.
 *
 * Built into tlsock_test_support only with TLSOCK_WITH_UV.
 */
#ifndef TLSOCK_TEST_UV_HARNESS_H
#define TLSOCK_TEST_UV_HARNESS_H

#include "support.h"
#include "loop_turn.h"

#include <sys/types.h>

#include <tlsock/uv.h>

#define WAIT_MS         30000    /* the longest one wait may take (valgrind included) */
#define RUN_MAX_ITER    2000000L /* loop iterations per wait */
#define MAX_PEERS       96
#define MAX_SERVERS     3
#define MAX_THREADS     8
#define MAX_ACCEPT_ERRS 16
#define MAX_RAW         16
#define RX_MAX          (4u << 20)
#define WBUF_MAGIC      0x77627566u

struct env;
struct peer;
struct wbuf;

/* What a test adds to the bookkeeping callbacks; any may be NULL. */
struct hooks {
    void (*on_connect)(struct peer *p, int status);
    void (*on_read)(struct peer *p, const unsigned char *data, size_t len);
    void (*on_event)(struct peer *p, int code);
    void (*on_write)(struct peer *p, struct wbuf *w, int status);
    void (*on_close)(struct peer *p);
    bool discard_rx; /* count received bytes in rx_len, store none (long streams, heap tests) */
};

/* A tlsock_uv_server and what its callbacks saw. opts.user points here. */
struct srv {
    struct env *env;
    struct tlsock_uv_server *server; /* NULL once its close callback ran */
    uint16_t port;
    struct hooks hooks; /* given to each connection it hands over */
    bool close_called;
    int close_cbs;
    int connects;
    int accept_errors;
    int connects_at_close_cb;
    int accept_errors_at_close_cb;
    int64_t close_cb_ms;
    int open_peers_at_close_cb;
    void (*on_accept_error)(struct srv *s, int code);
    void (*on_server_close)(struct srv *s, struct tlsock_uv_server *server);
};

/* One struct tlsock_uv_conn and what its callbacks saw; its user pointer. */
struct peer {
    struct env *env;
    struct srv *srv;             /* server side: who handed it over; NULL for clients */
    struct tlsock_uv_conn *conn; /* NULL once on_close ran */
    struct hooks hooks;
    int id;
    int connects;
    int connect_rc;
    char connect_msg[TLSOCK__ERRMSG_SIZE];
    int events;
    int event_rc;
    char event_msg[TLSOCK__ERRMSG_SIZE];
    int closes;
    bool close_called;
    bool close_when_echoed;
    char peer_subject[256];
    unsigned char *tx;
    size_t tx_len;
    unsigned char *rx;
    size_t rx_len;
    size_t rx_cap;
    int writes;
    int writes_done;
    int write_errors;
    int64_t echoed_ms;
    int64_t connected_ms;
    int64_t event_ms;
};

/* A write's write_arg. Heap ones are freed when they complete. */
struct wbuf {
    uint32_t magic;
    struct peer *p;
    bool heap;
    int completions;
    int status;
    bool after_close; /* completed after tlsock_uv_close() was called */
    size_t len;
    unsigned char *data;
};

struct accept_error {
    struct srv *srv;
    int code;
    char msg[TLSOCK__ERRMSG_SIZE];
    int64_t at_ms;
};

struct thread_slot {
    struct env *env;
    pthread_t tid;
    bool started;
    void (*fn)(void *arg);
    void *arg;
};

/*
 * What a test keeps outside the harness's tracking (its own connections and servers, recorded
 * in its own structures): the teardown calls close(arg) and runs the loop until closed(arg)
 * holds, before it requires the loop to close.
 */
struct env_extra {
    void (*close)(void *arg);
    bool (*closed)(void *arg);
    void *arg;
};

struct env {
    uv_loop_t loop;
    uv_timer_t guard;
    uv_async_t wake; /* threads wake the loop when they finish a step */
    bool guard_fired;
    struct tlsock_ctx *sctx;
    struct tlsock_ctx *cctx;
    struct tlsock_ctx *cctx2;
    struct tlsock_ctx *thread_ctx[MAX_THREADS];
    struct srv srvs[MAX_SERVERS];
    struct peer peers[MAX_PEERS];
    int npeers;
    struct peer overflow;
    struct accept_error aerr[MAX_ACCEPT_ERRS];
    int naerr;
    int stray; /* callbacks that must never run */
    int anomalies;
    char anomaly[512];
    struct thread_slot threads[MAX_THREADS];
    int nthreads;
    atomic_int threads_running;
    int raw[MAX_RAW];
    struct ts_gate gate;
    const char *host; /* where servers listen and clients connect: 127.0.0.1 unless a test says */
    struct ts_server tsrv; /* a blocking TLS server thread, for async clients */
    struct env_extra extra;
};

/* The environment of the running test; callbacks check the pointers they get against it. */
/* The environment of the running test; callbacks check the pointers they get against it. */
extern struct env *cur_env;

/* Watches a raw socket from the loop until the server's side of it is gone. */
struct raw_watch {
    uv_poll_t poll;
    int fd;
    bool ended;
    bool closed;
    size_t bytes; /* what came before the end (an alert, say) */
};

/*
 * A second loop, run by a thread of its own: a peer that must go on while the test thread blocks,
 * or one loop per thread. @c setup runs in that thread before the loop does (0 or a code);
 * side_loop_stop() (any thread, also the loop's own) and the guard end the loop, calling
 * @c stop in the loop's thread so that the test's handles (servers, connections) close;
 * side_loop_join() then requires the loop to close, as env_teardown() does for the test's loop.
 */
struct side_loop {
    uv_loop_t loop;
    uv_async_t stop_req;
    uv_timer_t guard;
    pthread_t tid;
    bool started;
    bool stopping;
    bool guard_fired;
    int setup_rc;
    int close_rc; /* uv_loop_close() once the loop ran dry */
    struct ts_gate ready;
    int (*setup)(struct side_loop *sl);
    void (*stop)(struct side_loop *sl);
    void *arg;
};

/* Starts @p sl's thread and waits until @c setup ran; returns what it returned. */
int side_loop_start(struct side_loop *sl, int (*setup)(struct side_loop *sl),
                    void (*stop)(struct side_loop *sl), void *arg, int guard_ms);

/* Asks the loop to end, from another thread, once. */
void side_loop_stop(struct side_loop *sl);

/* Ends the loop from its own thread (a callback of it); a second call is a no-op. */
void side_loop_end(struct side_loop *sl);

/* Joins the thread: 0 if the loop ended without its guard and closed with nothing left on it. */
int side_loop_join(struct side_loop *sl);

/*
 * Runs the loop until @p cond holds; fails the test after @p ms. Reached only thanks to the
 * guard's own wake-up is a failure too: the loop slept through work it had (a lost wake-up).
 */
#define RUN_UNTIL(env, cond, ms)                                                                   \
    do {                                                                                           \
        guard_start((env), (ms));                                                                  \
        for (long ru_i_ = 0; ru_i_ < RUN_MAX_ITER && !(cond) && !(env)->guard_fired; ru_i_++) {    \
            loop_turn(&(env)->loop);                                                               \
        }                                                                                          \
        guard_stop(env);                                                                           \
        if (!(cond) || (env)->guard_fired) {                                                       \
            fail_msg("not reached within %d ms: %s (first anomaly: %s)", (int)(ms), #cond,         \
                     (env)->anomaly);                                                              \
        }                                                                                          \
    } while (0)

/* Records a contract violation seen by a callback (callbacks must not fail the test). */
__attribute__((format(printf, 2, 3))) void anomaly(struct env *env, const char *fmt, ...);

/* Fails the test on any anomaly, stray callback or pending SIGPIPE. */
void assert_no_anomaly(struct env *env);

/* The guard timer stops the loop after @p ms; guard_stop() disarms it. */
void guard_start(struct env *env, int ms);

void guard_stop(struct env *env);

/* Runs the loop for @p ms: only to show that something does NOT happen. */
void run_for(struct env *env, int ms);

/* Runs the loop until @p pred(@p arg) holds, bounded by @p ms and RUN_MAX_ITER iterations;
 * returns whether it holds before the guard fired (for tests whose conditions are functions
 * rather than expressions). */
bool env_run_until(struct env *env, bool (*pred)(void *arg), void *arg, int ms);

/* cmocka setup: a fresh loop, guard timer and wake handle; SIGPIPE watched; host 127.0.0.1. */
int env_setup(void **state);

/* Every connection closed and every thread finished (servers may still run). */
bool conns_closed(struct env *env);

/* ... and every server closed too. */
bool all_closed(struct env *env);

/*
 * Closes what the test left open (even after a failed assertion), waits for the close callbacks
 * and the threads, then requires the loop to close: a handle the library forgot fails the test.
 */
int env_teardown(void **state);

/* Runs @p fn(@p arg) in a thread; it wakes the loop when done and the teardown joins it. */
void thread_start(struct env *env, void (*fn)(void *arg), void *arg);

/*
 * Wakes the loop from another thread. A thread that changes what a RUN_UNTIL condition reads
 * calls it afterwards; otherwise the loop may sleep until its guard fires, which fails the wait.
 */
void env_wake(struct env *env);

/* The teardown closes @p fd unless the test closed it (raw_close). */
void raw_track(struct env *env, int fd);

/* The test closes @p fd itself from now on. */
void raw_untrack(struct env *env, int fd);

void raw_close(struct env *env, int fd);

/* tlsock_uv_close() once, if still open. */
void peer_close(struct peer *p);

/* Writes through @p w (the write_arg, owned by the caller); the call's result. */
int peer_write_buf(struct peer *p, struct wbuf *w, const void *data, size_t len);

/* Writes @p len bytes, copied when @p copy (else they must outlive the write). */
int peer_write(struct peer *p, const void *data, size_t len, bool copy);

/* The bookkeeping callbacks: they record, flag anomalies, then call the peer's hooks. */
void on_server_connect(struct tlsock_uv_conn *conn, int status);

void on_read(struct tlsock_uv_conn *conn, const void *data, size_t len);

void on_event(struct tlsock_uv_conn *conn, int code);

void on_write(struct tlsock_uv_conn *conn, void *write_arg, int status);

void on_close(struct tlsock_uv_conn *conn);

void on_accept_error(struct tlsock_uv_server *server, int code, const char *message);

/* Callbacks given to calls that must fail: none of them may ever run. */
void stray_server_close(struct tlsock_uv_server *server);

/* Options with ts_opts() and the bookkeeping callbacks; on_connect is the caller's. */
struct tlsock_uv_opts base_opts(void *user);

struct tlsock_uv_opts stray_opts(struct env *env);

/* Hooks: close on a failed connect, close on any event, echo what is read. */
void close_on_failure(struct peer *p, int status);

void close_on_event(struct peer *p, int code);

void echo_back(struct peer *p, const unsigned char *data, size_t len);

/* Clients: send tx once ready, close when it all came back (or on any failure). */
extern const struct hooks echo_client;

/* Server connections: echo everything, close at the end of the stream or on an error. */
extern const struct hooks echo_server;

/* What the last connection's ends reported in on_connect for resumption tests: 1 resumed, 0 not,
 * -1 not connected (the test resets them before each connection). */
extern int resume_client_seen;
extern int resume_server_seen;

/* echo_client and an echoing server that record tlsock_info.resumed in the above. */
extern const struct hooks resume_client;
extern const struct hooks resume_server;

/* The peer connected and got back exactly what it sent. */
bool echoed(const struct peer *p);

/* Serves @p ctx on env->host port @p port as env->srvs[@p index]; returns the call's result. */
int serve(struct env *env, int index, struct tlsock_ctx *ctx, uint16_t port,
          const struct hooks *hooks, const struct tlsock_uv_opts *extra);

/* serve() on port 0 that must succeed. */
struct srv *serve_ok(struct env *env, int index, struct tlsock_ctx *ctx, const struct hooks *hooks,
                     const struct tlsock_uv_opts *extra);

/* tlsock_uv_server_close() once, if still open. */
void server_close(struct srv *s);

/* tlsock_uv_server_abort() with the bookkeeping close callback, if not closed yet. */
void server_abort(struct srv *s);

/* An async client of env->host:@p port sending @p tx_len bytes of pattern @p seed. */
struct peer *client_start(struct env *env, struct tlsock_ctx *ctx, uint16_t port,
                          const struct hooks *hooks, size_t tx_len, unsigned seed);

/* client_start() sending @p servername and verifying @p verify_name (NULL: the host's). */
struct peer *client_start_named(struct env *env, struct tlsock_ctx *ctx, uint16_t port,
                                const char *servername, const char *verify_name,
                                const struct hooks *hooks, size_t tx_len, unsigned seed);

/* Every server-side connection closed. */
bool server_peers_closed(struct env *env);

/* The server still serves: a fresh client's data comes back and both ends close cleanly. */
void assert_serves_good_client(struct env *env, struct srv *s, struct tlsock_ctx *ctx);

/* struct raw_watch's poll and close callbacks. */
void raw_watch_cb(uv_poll_t *handle, int status, int events);

void raw_watch_closed(uv_handle_t *handle);

/*
 * After a failed client the server closed its side: reading the raw socket reaches the end
 * (whatever alert came first). The loop runs meanwhile, in case the library closes through it.
 */
void assert_raw_sees_end(struct env *env, int fd);

/* A blocking connect to 127.0.0.1:@p port; 0 or the errno. */
int raw_connect_errno(uint16_t port, int *fd_out);

/* Sends all of @p buf on a non-blocking socket; @p len, or TLSOCK_ETIMEDOUT or TLSOCK_ESYS. */
ssize_t send_all(int fd, const void *buf, size_t len);

/* env->sctx and env->cctx from ts_pki. */
void make_contexts(struct env *env);

#endif /* TLSOCK_TEST_UV_HARNESS_H */
