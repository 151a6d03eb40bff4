/* Session ticket keys shared by the implementations (ticket_keys.h, docs/tickets.md). */
#include "impl/ticket_keys.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "impl/text.h"
#include "tlsock.h"

#define KEY_LABEL  "tlsock ticket key"
#define FILE_MAGIC "tlsock-ticket-keys 1"

/* The largest key file read: the format needs under 128 bytes; comments may add some. */
enum { FILE_MAX = 4096 };

static _Atomic(int64_t (*)(void)) key_clock;

void tlsock__ticket_keys_set_clock(int64_t (*now)(void))
{
    atomic_store(&key_clock, now);
}

int64_t tlsock__ticket_clock_now(void)
{
    int64_t (*now)(void) = atomic_load(&key_clock);

    return now != NULL ? now() : (int64_t)time(NULL);
}

int64_t tlsock__ticket_period_now(const struct tlsock__tickets *t)
{
    int64_t s = tlsock__ticket_clock_now();

    return t->period > 0 && s > 0 ? s / (int64_t)t->period : 0;
}

bool tlsock__ticket_key_derive(const struct tlsock__tickets *t, int64_t n,
                               tlsock__hmac_sha256_fn hmac,
                               unsigned char out[TLSOCK__TICKET_KEY_SIZE])
{
    unsigned char msg[sizeof(KEY_LABEL) - 1 + 8 + 1 + sizeof(t->binding)];
    size_t label = sizeof(KEY_LABEL) - 1;
    /* Without a binding the message ends after the block number, as the format always had it. */
    size_t len = t->bound ? sizeof(msg) : sizeof(msg) - sizeof(t->binding);

    memcpy(msg, KEY_LABEL, label);
    for (int i = 0; i < 8; i++) {
        msg[label + (size_t)i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
    }
    memcpy(msg + label + 8 + 1, t->binding, sizeof(t->binding));
    for (unsigned char i = 0; i < TLSOCK__TICKET_KEY_SIZE / 32; i++) {
        msg[label + 8] = i;
        if (!hmac(t->secret, sizeof(t->secret), msg, len, out + 32 * i)) {
            return false;
        }
    }
    return true;
}

/* The two periods' keys a server uses at a time: the current and the previous one. */
struct tlsock__ticket_cache {
    pthread_mutex_t lock;
    bool valid[2];
    int64_t period[2];
    unsigned char key[2][TLSOCK__TICKET_KEY_SIZE];
    unsigned next; /* the slot the next new period replaces */
};

bool tlsock__ticket_cache_new(struct tlsock__tickets *t)
{
    struct tlsock__ticket_cache *c = calloc(1, sizeof(*c));

    if (c == NULL || pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        return false;
    }
    t->cache = c;
    return true;
}

void tlsock__ticket_cache_free(struct tlsock__tickets *t)
{
    struct tlsock__ticket_cache *c = t->cache;

    if (c != NULL) {
        pthread_mutex_destroy(&c->lock);
        explicit_bzero(c, sizeof(*c));
        free(c);
        t->cache = NULL;
    }
}

bool tlsock__ticket_key(const struct tlsock__tickets *t, int64_t n, tlsock__hmac_sha256_fn hmac,
                        unsigned char out[TLSOCK__TICKET_KEY_SIZE])
{
    struct tlsock__ticket_cache *c = t->cache;
    bool ok = true;

    if (c == NULL) {
        return tlsock__ticket_key_derive(t, n, hmac, out);
    }
    pthread_mutex_lock(&c->lock);
    unsigned i = 0;
    while (i < 2 && !(c->valid[i] && c->period[i] == n)) {
        i++;
    }
    if (i == 2) {
        /* Derived under the lock: the threads that ask for a new period wait for one HMAC run. */
        i = c->next;
        c->next = 1 - i;
        c->valid[i] = ok = tlsock__ticket_key_derive(t, n, hmac, c->key[i]);
        c->period[i] = n;
    }
    if (ok) {
        memcpy(out, c->key[i], TLSOCK__TICKET_KEY_SIZE);
    }
    pthread_mutex_unlock(&c->lock);
    return ok;
}

/* The value after "@p name " on a line of @p text, or NULL. */
static const char *field(const char *text, const char *name)
{
    size_t n = strlen(name);

    for (const char *line = text; line != NULL && *line != '\0';) {
        if (strncmp(line, name, n) == 0 && line[n] == ' ') {
            return line + n + 1;
        }
        line = strchr(line, '\n');
        line = line != NULL ? line + 1 : NULL;
    }
    return NULL;
}

int tlsock__ticket_keys_parse(struct tlsock__tickets *t, const char *data, size_t len,
                              struct tlsock__err *err)
{
    char text[FILE_MAX + 1];
    unsigned char secret[TLSOCK__TICKET_SECRET_SIZE];

    if (len > FILE_MAX || memchr(data, '\0', len) != NULL) {
        return tlsock__fail(err, TLSOCK_ECONFIG, "not a ticket key file (too long or binary)");
    }
    memcpy(text, data, len);
    text[len] = '\0';
    if (strncmp(text, FILE_MAGIC "\n", sizeof(FILE_MAGIC)) != 0) {
        explicit_bzero(text, sizeof(text));
        return tlsock__fail(err, TLSOCK_ECONFIG,
                            "not a ticket key file: the first line must be \"" FILE_MAGIC "\"");
    }
    const char *p = field(text, "period");
    char *end = NULL;
    unsigned long period = p != NULL ? strtoul(p, &end, 10) : 0;
    /* Like "secret", the line may end the file without its newline. */
    if (p == NULL || end == p || (*end != '\n' && *end != '\0') || period < 1 ||
        period > 7 * 86400UL) {
        explicit_bzero(text, sizeof(text));
        return tlsock__fail(
            err, TLSOCK_ECONFIG,
            "ticket key file: missing or bad \"period\" line (1 to 604800 seconds)");
    }
    const char *s = field(text, "secret");
    size_t i = 0;
    for (; s != NULL && i < 2 * sizeof(secret); i++) {
        if (tlsock__text_hex_value(s[i]) < 0) {
            break;
        }
    }
    if (s == NULL || i != 2 * sizeof(secret) || (s[i] != '\n' && s[i] != '\0')) {
        explicit_bzero(text, sizeof(text));
        return tlsock__fail(err, TLSOCK_ECONFIG,
                            "ticket key file: missing or bad \"secret\" line (64 hex digits)");
    }
    for (i = 0; i < sizeof(secret); i++) {
        secret[i] = (unsigned char)(tlsock__text_hex_value(s[2 * i]) << 4 |
                                    tlsock__text_hex_value(s[2 * i + 1]));
    }
    memcpy(t->secret, secret, sizeof(secret));
    t->period = (unsigned)period;
    t->have_secret = true;
    explicit_bzero(secret, sizeof(secret));
    explicit_bzero(text, sizeof(text));
    return 0;
}

int tlsock__ticket_keys_load(struct tlsock__tickets *t, const char *path, struct tlsock__err *err)
{
    char buf[FILE_MAX + 1];
    struct stat st;
    ssize_t n = 0;
    size_t len = 0;
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

    if (fd < 0) {
        return tlsock__fail(err, TLSOCK_ECONFIG, "cannot open ticket key file %s: %s", path,
                            strerror(errno));
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = tlsock__fail(err, TLSOCK_ECONFIG, "ticket key file %s is not a regular file", path);
        goto close_fd;
    }
    if ((st.st_mode & 077) != 0) {
        /* Whoever reads the secret can decrypt every ticket, and so every resumed session. */
        rc = tlsock__fail(err, TLSOCK_ECONFIG,
                          "ticket key file %s is readable by others (mode %03o): chmod 600 it",
                          path, (unsigned)(st.st_mode & 0777));
        goto close_fd;
    }
    while (len < sizeof(buf)) {
        n = read(fd, buf + len, sizeof(buf) - len);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
    }
    if (n < 0) {
        rc = tlsock__fail(err, TLSOCK_ECONFIG, "cannot read ticket key file %s: %s", path,
                          strerror(errno));
        explicit_bzero(buf, sizeof(buf)); /* what a partial read got */
        goto close_fd;
    }
    rc = tlsock__ticket_keys_parse(t, buf, len, err);
    if (rc != 0) {
        char why[TLSOCK__ERRMSG_SIZE];
        snprintf(why, sizeof(why), "%s", tlsock__err_msg(err));
        rc = tlsock__fail(err, rc, "%s: %s", path, why);
    }
    explicit_bzero(buf, sizeof(buf));
close_fd:
    close(fd);
    return rc;
}

void tlsock__ticket_keys_format(const unsigned char secret[TLSOCK__TICKET_SECRET_SIZE],
                                unsigned period, char out[128])
{
    static const char digits[] = "0123456789abcdef";
    char hex[2 * TLSOCK__TICKET_SECRET_SIZE + 1];

    for (size_t i = 0; i < TLSOCK__TICKET_SECRET_SIZE; i++) {
        hex[2 * i] = digits[secret[i] >> 4];
        hex[2 * i + 1] = digits[secret[i] & 15];
    }
    hex[sizeof(hex) - 1] = '\0';
    snprintf(out, 128, FILE_MAGIC "\nperiod %u\nsecret %s\n", period, hex);
    explicit_bzero(hex, sizeof(hex));
}
