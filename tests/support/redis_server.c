#include "redis_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

enum {
    START_TRIES = 5,
    READY_WAIT_MS = 5000,
    STOP_WAIT_MS = 5000,
    STEP_MS = 20,
};

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

bool ts_redis_available(void)
{
    return system("command -v redis-server >/dev/null 2>&1") == 0;
}

/* A port the kernel had free a moment ago: bind 127.0.0.1:0, read it, close. */
static int free_port(uint16_t *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int rc = -1;

    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0) {
        *port = ntohs(sa.sin_port);
        rc = 0;
    }
    if (fd >= 0) {
        close(fd);
    }
    return rc;
}

static int ping(const struct ts_redis *r)
{
    char out[32];

    return ts_redis_cmd(r, "PING", out, sizeof(out)) == 0 && strcmp(out, "PONG") == 0 ? 0 : -1;
}

/* Runs redis-server on r->port and waits until it answers; -1 if it exited (port taken). */
static int spawn(struct ts_redis *r)
{
    char port[8];
    pid_t pid;

    snprintf(port, sizeof(port), "%u", r->port);
    snprintf(r->url, sizeof(r->url), "redis://127.0.0.1:%u", r->port);
    /* Else the child's freopen() writes out again what the test printed and did not flush. */
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        fprintf(stderr, "redis fixture: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        /* Its start-up banner and warnings would bury the test's output. */
        if (freopen("/dev/null", "w", stdout) == NULL) {
            _exit(126);
        }
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning", (char *)NULL);
        _exit(127);
    }
    r->pid = pid;
    for (int waited = 0; waited < READY_WAIT_MS; waited += STEP_MS) {
        int status;

        if (waitpid(pid, &status, WNOHANG) == pid) {
            r->pid = 0;
            return -1;
        }
        if (ping(r) == 0) {
            return 0;
        }
        sleep_ms(STEP_MS);
    }
    fprintf(stderr, "redis fixture: no PONG on port %u in %d ms\n", r->port, READY_WAIT_MS);
    ts_redis_stop(r);
    return -1;
}

int ts_redis_start(struct ts_redis *r)
{
    for (int i = 0; i < START_TRIES; i++) {
        if (free_port(&r->port) == 0 && spawn(r) == 0) {
            return 0;
        }
    }
    fprintf(stderr, "redis fixture: redis-server did not start\n");
    return -1;
}

int ts_redis_start_replica(struct ts_redis *r)
{
    uint16_t primary;
    char cmd[64];
    char out[64];

    if (ts_redis_start(r) != 0) {
        return -1;
    }
    /* A port free a moment ago (not the replica's, which it holds): the replica never syncs. */
    if (free_port(&primary) == 0) {
        snprintf(cmd, sizeof(cmd), "REPLICAOF 127.0.0.1 %u", primary);
        if (ts_redis_cmd(r, cmd, out, sizeof(out)) == 0 && strcmp(out, "OK") == 0) {
            return 0;
        }
    }
    fprintf(stderr, "redis fixture: cannot make the server on port %u a replica\n", r->port);
    ts_redis_stop(r);
    return -1;
}

int ts_redis_restart(struct ts_redis *r)
{
    for (int i = 0; i < START_TRIES; i++) {
        if (spawn(r) == 0) {
            return 0;
        }
        sleep_ms(100);
    }
    fprintf(stderr, "redis fixture: redis-server did not restart on port %u\n", r->port);
    return -1;
}

int ts_redis_kill(struct ts_redis *r)
{
    if (r->pid <= 0 || kill(r->pid, SIGKILL) != 0 || waitpid(r->pid, NULL, 0) != r->pid) {
        return -1;
    }
    r->pid = 0;
    return 0;
}

int ts_redis_pause(struct ts_redis *r)
{
    return r->pid > 0 && kill(r->pid, SIGSTOP) == 0 ? 0 : -1;
}

int ts_redis_resume(struct ts_redis *r)
{
    return r->pid > 0 && kill(r->pid, SIGCONT) == 0 ? 0 : -1;
}

void ts_redis_stop(struct ts_redis *r)
{
    if (r->pid <= 0) {
        return;
    }
    kill(r->pid, SIGCONT);
    kill(r->pid, SIGTERM);
    for (int waited = 0; waited < STOP_WAIT_MS; waited += STEP_MS) {
        if (waitpid(r->pid, NULL, WNOHANG) == r->pid) {
            r->pid = 0;
            return;
        }
        sleep_ms(STEP_MS);
    }
    kill(r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
    r->pid = 0;
}

int ts_redis_cmd(const struct ts_redis *r, const char *cmd, char *out, size_t cap)
{
    struct timeval tv = {.tv_sec = 2};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
    redisReply *reply = NULL;
    int rc = -1;

    char words[512];
    const char *argv[16];
    size_t lens[16];
    int argc = 0;
    char *save = NULL;

    snprintf(words, sizeof(words), "%s", cmd);
    for (char *w = strtok_r(words, " ", &save); w != NULL && argc < 16;
         w = strtok_r(NULL, " ", &save)) {
        argv[argc] = w;
        lens[argc++] = strlen(w);
    }
    if (c != NULL && c->err == 0 && redisSetTimeout(c, tv) == REDIS_OK) {
        reply = redisCommandArgv(c, argc, argv, lens);
    }
    if (reply != NULL) {
        rc = 0;
        switch (reply->type) {
        case REDIS_REPLY_STRING:
        case REDIS_REPLY_STATUS:
            snprintf(out, cap, "%.*s", (int)reply->len, reply->str);
            break;
        case REDIS_REPLY_ERROR:
            snprintf(out, cap, "ERR %s", reply->str);
            break;
        case REDIS_REPLY_INTEGER:
            snprintf(out, cap, "%lld", reply->integer);
            break;
        case REDIS_REPLY_NIL:
            snprintf(out, cap, "(nil)");
            break;
        default:
            snprintf(out, cap, "(reply type %d)", reply->type);
            break;
        }
        freeReplyObject(reply);
    }
    redisFree(c);
    return rc;
}

void ts_redis_on_log(void *user, const char *msg)
{
    struct ts_redis_log *l = user;

    printf("store log: %s\n", msg);
    if (strstr(msg, "unusable") != NULL) {
        atomic_fetch_add(&l->warnings, 1);
    }
    if (strstr(msg, "is back") != NULL) {
        atomic_fetch_add(&l->backs, 1);
    }
    if (strstr(msg, "refuses writes") != NULL) {
        atomic_fetch_add(&l->refused, 1);
    }
    if (strstr(msg, "takes writes again") != NULL) {
        atomic_fetch_add(&l->taken, 1);
    }
    if (strstr(msg, "refuses reads") != NULL) {
        atomic_fetch_add(&l->reads_refused, 1);
    }
    if (strstr(msg, "answers reads again") != NULL) {
        atomic_fetch_add(&l->reads_back, 1);
    }
}

void ts_redis_log_clear(struct ts_redis_log *log)
{
    atomic_store(&log->warnings, 0);
    atomic_store(&log->backs, 0);
    atomic_store(&log->refused, 0);
    atomic_store(&log->taken, 0);
    atomic_store(&log->reads_refused, 0);
    atomic_store(&log->reads_back, 0);
}
