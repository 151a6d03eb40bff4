/*
 * Ticket key distribution through Redis (include/tlsock/redis.h, docs/sessions.md): the key
 * file's text lives under TLSOCK_REDIS_TICKET_KEYS_KEY. The periods rotate by themselves (each
 * period's key is derived from the secret, docs/tickets.md); only the secret is ever written,
 * and only by the server holding the lease (SET NX PX), so two servers never race to make two.
 *
 * These calls wait for Redis, so they use their own blocking hiredis connection on the calling
 * thread, never the store's asynchronous one. One store makes one such call at a time (its
 * keys_lock): otherwise the watcher could write the text it read before a rotation over the file
 * the rotation just wrote, and the server would reload the retired secret.
 *
 * The key text is the secret of every ticket: each buffer that held it is wiped before it goes,
 * ours and the replies and read buffer hiredis hands over. hiredis's own copies of a command it
 * sends (the SET of the key text) are freed inside hiredis, which wipes nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "redis_int.h"

enum {
    KEY_TEXT_MAX = 4096, /* a key file is about 120 bytes */
    WAIT_STEP_MS = 20,   /* how often a server without the lease looks for the text */
    WATCH_MIN_MS = 1000, /* shortest default poll */
};

static atomic_uint tmp_counter;

/* How long one blocking call waits for Redis: a few of the store's timeouts, at least 1 s. */
static int sync_timeout_ms(struct tlsock_redis_store *s)
{
    int ms = atomic_load(&s->timeout_ms) * 5;

    return ms < 1000 ? 1000 : ms;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Frees @p c, wiping its read buffer first: the replies it parsed (the key text) stay in it. */
static void sync_free(redisContext *c)
{
    if (c != NULL && c->reader != NULL && c->reader->buf != NULL) {
        explicit_bzero(c->reader->buf, c->reader->len);
    }
    redisFree(c);
}

/* A command's reply; NULL (with the message set) when Redis did not answer or answered an error. */
static redisReply *command(struct tlsock_redis_store *s, redisContext *c, int argc,
                           const char **argv, const size_t *lens)
{
    redisReply *r = redisCommandArgv(c, argc, argv, lens);

    if (r == NULL) {
        redis__fail(TLSOCK_ETIMEDOUT, "Redis at %s: %s failed: %s", s->url, argv[0], c->errstr);
    } else if (r->type == REDIS_REPLY_ERROR) {
        redis__fail(TLSOCK_ETIMEDOUT, "Redis at %s: %s failed: %s", s->url, argv[0], r->str);
        freeReplyObject(r);
        r = NULL;
    }
    return r;
}

static REDIS__MUST_CHECK int sync_connect(struct tlsock_redis_store *s, redisContext **out)
{
    int ms = sync_timeout_ms(s);
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(s->host, s->port, tv);
    int err = 0;

    if (c == NULL || c->err != 0) {
        err = redis__fail(TLSOCK_ETIMEDOUT, "cannot reach Redis at %s: %s", s->url,
                          c != NULL ? c->errstr : "out of memory");
        goto fail;
    }
    if (redisSetTimeout(c, tv) != REDIS_OK) {
        err = redis__fail(TLSOCK_ESYS, "cannot set a timeout on the Redis connection");
        goto fail;
    }
    /* command() fails with Redis's reason (a wrong password, an ACL, a database it has not). */
    if (s->pass[0] != '\0') {
        const char *argv[3];
        size_t lens[3];
        int argc = redis__auth_argv(s, argv, lens);
        redisReply *r = command(s, c, argc, argv, lens);

        if (r == NULL) {
            err = TLSOCK_ETIMEDOUT;
            goto fail;
        }
        freeReplyObject(r);
    }
    if (s->db != 0) {
        char db[16];
        const char *argv[] = {"SELECT", db};
        size_t lens[2];
        redisReply *r;

        snprintf(db, sizeof(db), "%d", s->db);
        lens[0] = strlen(argv[0]);
        lens[1] = strlen(db);
        r = command(s, c, 2, argv, lens);
        if (r == NULL) {
            err = TLSOCK_ETIMEDOUT;
            goto fail;
        }
        freeReplyObject(r);
    }
    *out = c;
    return 0;

fail:
    sync_free(c);
    return err;
}

/* GET of the key text into @p text (NUL-terminated); @p found false when there is none. */
static REDIS__MUST_CHECK int get_text(struct tlsock_redis_store *s, redisContext *c,
                                      char text[KEY_TEXT_MAX], bool *found)
{
    const char *argv[] = {"GET", TLSOCK_REDIS_TICKET_KEYS_KEY};
    size_t lens[] = {3, strlen(argv[1])};
    redisReply *r = command(s, c, 2, argv, lens);
    int err = 0;

    if (r == NULL) {
        return TLSOCK_ETIMEDOUT;
    }
    *found = r->type == REDIS_REPLY_STRING;
    if (*found && (r->len >= KEY_TEXT_MAX || strncmp(r->str, "tlsock-ticket-keys ", 19) != 0)) {
        err = redis__fail(TLSOCK_ECONFIG, "Redis at %s: %s holds no ticket key file", s->url,
                          TLSOCK_REDIS_TICKET_KEYS_KEY);
    } else if (*found) {
        memcpy(text, r->str, r->len);
        text[r->len] = '\0';
    }
    if (*found) {
        explicit_bzero(r->str, r->len);
    }
    freeReplyObject(r);
    return err;
}

/* SET of the lease to this store's id, NX with its expiry; @p held: this store has it now. */
static REDIS__MUST_CHECK int take_lease(struct tlsock_redis_store *s, redisContext *c, bool *held)
{
    char ms[16];
    const char *argv[] = {"SET", TLSOCK_REDIS_TICKET_LEASE_KEY, s->lease_id, "NX", "PX", ms};
    size_t lens[6];
    redisReply *r;

    snprintf(ms, sizeof(ms), "%d", TLSOCK_REDIS_TICKET_LEASE_MS);
    for (size_t i = 0; i < 6; i++) {
        lens[i] = strlen(argv[i]);
    }
    r = command(s, c, 6, argv, lens);
    if (r == NULL) {
        return TLSOCK_ETIMEDOUT;
    }
    *held = r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    if (!*held) {
        /* Held already: by this store (a rotation within the lease) or by another. */
        const char *get[] = {"GET", TLSOCK_REDIS_TICKET_LEASE_KEY};
        size_t get_lens[] = {3, strlen(get[1])};

        r = command(s, c, 2, get, get_lens);
        if (r == NULL) {
            return TLSOCK_ETIMEDOUT;
        }
        *held = r->type == REDIS_REPLY_STRING && strcmp(r->str, s->lease_id) == 0;
        freeReplyObject(r);
    }
    return 0;
}

/* A temporary name next to @p path, unique in the process. */
static void tmp_name(const char *path, const char *what, char *out, size_t size)
{
    snprintf(out, size, "%s.%s-%ld-%u", path, what, (long)getpid(),
             atomic_fetch_add(&tmp_counter, 1));
}

static REDIS__MUST_CHECK int read_file(const char *path, char text[KEY_TEXT_MAX], size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0) {
        return TLSOCK_ESYS;
    }
    n = read(fd, text, KEY_TEXT_MAX - 1);
    close(fd);
    if (n < 0) {
        return TLSOCK_ESYS;
    }
    text[n] = '\0';
    *len = (size_t)n;
    return 0;
}

/* A fresh key file's text (a new secret) through tlsock_ticket_keys_write() and a temporary file.
 */
static REDIS__MUST_CHECK int new_text(const char *path, unsigned period_s, char text[KEY_TEXT_MAX])
{
    char tmp[4200];
    size_t len;
    int err;

    tmp_name(path, "new", tmp, sizeof(tmp));
    err = tlsock_ticket_keys_write(tmp, period_s);
    if (err != 0) {
        return redis__fail(err, "cannot make a ticket key file: %s", tlsock_errmsg());
    }
    err = read_file(tmp, text, &len);
    unlink(tmp);
    if (err != 0) {
        return redis__fail(TLSOCK_ECONFIG, "cannot read back the new key file %s", tmp);
    }
    return 0;
}

/* Writes @p text to @p path (0600, temporary file and rename) unless it holds it already. */
static REDIS__MUST_CHECK int write_if_changed(const char *path, const char *text, bool *changed)
{
    char old[KEY_TEXT_MAX];
    size_t old_len;
    size_t len = strlen(text);
    char tmp[4200];
    int fd;
    bool written;

    *changed = false;
    bool same =
        read_file(path, old, &old_len) == 0 && old_len == len && memcmp(old, text, len) == 0;
    explicit_bzero(old, sizeof(old));
    if (same) {
        return 0;
    }
    tmp_name(path, "tmp", tmp, sizeof(tmp));
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        return redis__fail(TLSOCK_ECONFIG, "cannot write the ticket key file %s: %s", path,
                           strerror(errno));
    }
    written = write(fd, text, len) == (ssize_t)len;
    written = close(fd) == 0 && written;
    if (!written || rename(tmp, path) != 0) {
        int e = errno;

        unlink(tmp);
        return redis__fail(TLSOCK_ECONFIG, "cannot write the ticket key file %s: %s", path,
                           strerror(e));
    }
    *changed = true;
    return 0;
}

/*
 * SETs the key text if this store still holds the lease, checked and written in one step on the
 * server (a script): a server that took the lease and then stalled past its expiry (paused,
 * swapping) must not overwrite the text of the one that took the lease after it. @p stored false:
 * the lease is another's now.
 */
static REDIS__MUST_CHECK int set_text(struct tlsock_redis_store *s, redisContext *c,
                                      const char *text, bool *stored)
{
    static const char script[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                                 "return redis.call('SET', KEYS[2], ARGV[2]) end return false";
    const char *argv[] = {
        "EVAL",      script, "2", TLSOCK_REDIS_TICKET_LEASE_KEY, TLSOCK_REDIS_TICKET_KEYS_KEY,
        s->lease_id, text};
    size_t lens[7];
    redisReply *r;

    for (size_t i = 0; i < 7; i++) {
        lens[i] = strlen(argv[i]);
    }
    r = command(s, c, 7, argv, lens);
    *stored = r != NULL && r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    return r != NULL ? 0 : TLSOCK_ETIMEDOUT;
}

/*
 * The text of the key file at @p path, with @p valid true, if a server would load it: the checks
 * are tlsock_ctx_set_ticket_keys_file()'s own (a regular file of mode 0600, the format), made on
 * a context of our own. Missing or not loadable: @p valid false. An error only when no context
 * can be made to check it.
 */
static REDIS__MUST_CHECK int local_text(const char *path, char text[KEY_TEXT_MAX], bool *valid)
{
    struct tlsock_ctx *ctx = NULL;
    size_t len = 0;
    int err = tlsock_ctx_new(TLSOCK_SERVER, &ctx);

    *valid = false;
    if (err != 0) {
        return redis__fail(err, "cannot check the ticket key file %s: %s", path, tlsock_errmsg());
    }
    /* A text that fills the buffer may have been cut short: not one to share. */
    *valid = tlsock_ctx_set_ticket_keys_file(ctx, path) == 0 && read_file(path, text, &len) == 0 &&
             len < KEY_TEXT_MAX - 1;
    tlsock_ctx_free(ctx);
    return 0;
}

/*
 * Under the lease, with no text in Redis: SETs the text of the key file at @p path if it is a
 * valid one, else of a fresh secret (@p made true). Redis loses the text when it restarts without
 * persistence, is flushed, evicts it or fails over to a replica without it, while every server
 * still uses the secret in its file: a new one would end every ticket issued so far, and tickets
 * from a server that has it would fail on the others until their next poll. Only a server with no
 * key file yet (the first start) makes one. @p stored false: the lease went to another server
 * meanwhile (set_text()), whose text is the one to take.
 */
static REDIS__MUST_CHECK int publish_text(struct tlsock_redis_store *s, redisContext *c,
                                          const char *path, unsigned period_s,
                                          char text[KEY_TEXT_MAX], bool *made, bool *stored)
{
    bool valid = false;
    int err = local_text(path, text, &valid);

    *stored = false;
    *made = err == 0 && !valid;
    if (*made) {
        err = new_text(path, period_s, text);
    }
    if (err == 0) {
        err = set_text(s, c, text, stored);
    }
    return err;
}

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int tlsock_redis_store_ticket_keys(struct tlsock_redis_store *store, const char *path,
                                   unsigned period_s, bool *changed, bool *created)
{
    char text[KEY_TEXT_MAX];
    redisContext *c = NULL;
    bool found = false;
    bool held = false;
    bool wrote = false;
    bool made = false;
    int64_t give_up;
    int err;

    if (created != NULL) {
        *created = false;
    }
    if (changed != NULL) {
        *changed = false;
    }
    if (store == NULL || path == NULL) {
        return redis__fail(TLSOCK_EINVAL, "NULL argument");
    }
    pthread_mutex_lock(&store->keys_lock);
    err = sync_connect(store, &c);
    if (err == 0) {
        err = get_text(store, c, text, &found);
    }
    if (err == 0 && !found) {
        err = take_lease(store, c, &held);
    }
    if (err == 0 && !found && held) {
        err = publish_text(store, c, path, period_s, text, &made, &found);
        if (found && created != NULL) {
            *created = made;
        }
    }
    /* Another server holds the lease: its text comes within the lease. */
    give_up = mono_ms() + sync_timeout_ms(store);
    while (err == 0 && !found && mono_ms() < give_up) {
        sleep_ms(WAIT_STEP_MS);
        err = get_text(store, c, text, &found);
    }
    if (err == 0 && !found) {
        err = redis__fail(TLSOCK_ETIMEDOUT,
                          "Redis at %s: another server holds the ticket key "
                          "lease but wrote no keys in time",
                          store->url);
    }
    if (err == 0) {
        err = write_if_changed(path, text, &wrote);
    }
    if (changed != NULL) {
        *changed = wrote;
    }
    explicit_bzero(text, sizeof(text));
    sync_free(c);
    pthread_mutex_unlock(&store->keys_lock);
    return err;
}

int tlsock_redis_store_rotate_ticket_keys(struct tlsock_redis_store *store, const char *path,
                                          unsigned period_s, bool *rotated)
{
    char text[KEY_TEXT_MAX];
    redisContext *c = NULL;
    bool held = false;
    bool wrote;
    int err;

    if (rotated != NULL) {
        *rotated = false;
    }
    if (store == NULL || path == NULL) {
        return redis__fail(TLSOCK_EINVAL, "NULL argument");
    }
    pthread_mutex_lock(&store->keys_lock);
    err = sync_connect(store, &c);
    if (err == 0) {
        err = take_lease(store, c, &held);
    }
    if (err == 0 && held) {
        bool stored = false;

        err = new_text(path, period_s, text);
        if (err == 0) {
            err = set_text(store, c, text, &stored);
        }
        /* Not stored: the lease went to another server meanwhile, which may rotate. */
        if (err == 0 && stored) {
            err = write_if_changed(path, text, &wrote);
            if (err == 0 && rotated != NULL) {
                *rotated = true;
            }
        }
    }
    explicit_bzero(text, sizeof(text));
    sync_free(c);
    pthread_mutex_unlock(&store->keys_lock);
    return err;
}

/* ---- the watcher --------------------------------------------------------------------------- */

/* The poll interval: the one asked for, else a quarter of the file's period. */
static unsigned watch_interval(struct tlsock_redis_store *s)
{
    char text[KEY_TEXT_MAX];
    size_t len;
    const char *p;
    unsigned period = 0;

    if (s->watch_interval_ms != 0) {
        return s->watch_interval_ms;
    }
    if (read_file(s->watch_path, text, &len) == 0) {
        p = strstr(text, "\nperiod ");
        if (p != NULL) {
            period = (unsigned)strtoul(p + 8, NULL, 10);
        }
        explicit_bzero(text, sizeof(text));
    }
    return period * 250 > WATCH_MIN_MS ? period * 250 : WATCH_MIN_MS;
}

static void *watch_thread(void *arg)
{
    struct tlsock_redis_store *s = arg;
    bool failing = false;

    pthread_mutex_lock(&s->lock);
    while (!s->watch_stop) {
        bool changed = false;
        int err;
        struct timespec until;
        unsigned ms;

        pthread_mutex_unlock(&s->lock);
        err = tlsock_redis_store_ticket_keys(s, s->watch_path, 0, &changed, NULL);
        if (err != 0 && !failing) {
            redis__log(s, "tlsock: ticket keys from Redis: %s (keeping %s, retrying)",
                       tlsock_redis_errmsg(), s->watch_path);
        } else if (err == 0 && failing) {
            redis__log(s, "tlsock: ticket keys from Redis %s are back", s->url);
        }
        failing = err != 0;
        if (changed && s->watch_fn != NULL) {
            s->watch_fn(s->watch_user, s->watch_path);
        }
        ms = watch_interval(s);
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += ms / 1000;
        until.tv_nsec += (long)(ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_mutex_lock(&s->lock);
        while (!s->watch_stop) {
            if (pthread_cond_timedwait(&s->watch_cond, &s->lock, &until) == ETIMEDOUT) {
                break;
            }
        }
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int tlsock_redis_store_watch_ticket_keys(struct tlsock_redis_store *store, const char *path,
                                         unsigned interval_ms, tlsock_redis_keys_fn fn, void *user)
{
    pthread_condattr_t attr;
    int err = 0;

    if (store == NULL || path == NULL || store->watching) {
        return redis__fail(TLSOCK_EINVAL, store != NULL && store->watching
                                              ? "a ticket key watcher runs already"
                                              : "NULL argument");
    }
    store->watch_path = strdup(path);
    if (store->watch_path == NULL) {
        return redis__fail(TLSOCK_ENOMEM, "out of memory");
    }
    store->watch_interval_ms = interval_ms;
    store->watch_fn = fn;
    store->watch_user = user;
    store->watch_stop = false;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&store->watch_cond, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&store->watcher, NULL, watch_thread, store) != 0) {
        err = redis__fail(TLSOCK_ESYS, "cannot start the ticket key watcher");
        pthread_cond_destroy(&store->watch_cond);
        free(store->watch_path);
        store->watch_path = NULL;
        return err;
    }
    store->watching = true;
    return 0;
}

void redis__watch_stop(struct tlsock_redis_store *s)
{
    if (!s->watching) {
        return;
    }
    pthread_mutex_lock(&s->lock);
    s->watch_stop = true;
    pthread_cond_signal(&s->watch_cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->watcher, NULL);
    pthread_cond_destroy(&s->watch_cond);
    free(s->watch_path);
    s->watch_path = NULL;
    s->watching = false;
}
