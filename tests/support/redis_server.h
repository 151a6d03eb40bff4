/*
 * A real redis-server for the Redis store's tests (test_redis.c): started on a free loopback port
 * with no persistence, waited for until it answers PING, paused (SIGSTOP) to play a slow server,
 * killed and started again on the same port, and stopped at the end. redis-server is a
 * dependency scripts/bootstrap installs; a test executable without it exits 77 (skipped).
 *
 * Functions print what failed and return 0 or -1, so that group setups can use them.
 */
#ifndef TLSOCK_TEST_REDIS_SERVER_H
#define TLSOCK_TEST_REDIS_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct ts_redis {
    pid_t pid; /* 0: not running */
    uint16_t port;
    char url[64]; /* redis://127.0.0.1:PORT */
};

/* True if redis-server is on PATH. */
bool ts_redis_available(void);

/* Starts a server on a free loopback port (retrying on a port taken meanwhile). */
int ts_redis_start(struct ts_redis *r);

/*
 * Starts a server and makes it a replica of a primary that does not exist (a port nothing listens
 * on): it answers PING and GET but refuses every write (READONLY) until `REPLICAOF NO ONE`.
 */
int ts_redis_start_replica(struct ts_redis *r);

/* Starts the server again on its port, after ts_redis_kill(). */
int ts_redis_restart(struct ts_redis *r);

/* SIGKILL and wait: the server is gone at once, as in a crash. */
int ts_redis_kill(struct ts_redis *r);

/* SIGSTOP / SIGCONT: a server that accepts connections but never answers, then answers again. */
int ts_redis_pause(struct ts_redis *r);
int ts_redis_resume(struct ts_redis *r);

/* Stops the server (SIGTERM, then SIGKILL after 5 s) and waits for it. Nothing if not running. */
void ts_redis_stop(struct ts_redis *r);

/*
 * Runs one command (words separated by spaces, no quoting) on a fresh connection and writes its
 * reply as text into @p out: a string or status as is, an integer in decimal, nil as "(nil)",
 * an error as "ERR ...". Returns 0 or -1 (no connection, no reply within 2 s).
 */
int ts_redis_cmd(const struct ts_redis *r, const char *cmd, char *out, size_t cap);

/* What a store logged (tlsock_redis_store_set_log(store, ts_redis_on_log, &log)): outages and
 * their ends, writes refused and taken again, reads refused and answered again. Each line is
 * printed too. */
struct ts_redis_log {
    atomic_int warnings;      /* "unusable" lines */
    atomic_int backs;         /* "is back" lines */
    atomic_int refused;       /* "refuses writes" lines */
    atomic_int taken;         /* "takes writes again" lines */
    atomic_int reads_refused; /* "refuses reads" lines */
    atomic_int reads_back;    /* "answers reads again" lines */
};

void ts_redis_on_log(void *user, const char *msg);
/* Counts nothing logged yet (before a test that reuses @p log). */
void ts_redis_log_clear(struct ts_redis_log *log);

#endif
