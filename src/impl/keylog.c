/*
 * The key log's lines (NSS key log format, as SSLKEYLOGFILE files hold them) and the file they
 * are appended to. Implementations only hand over a label, the client random and a secret.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "keylog.h"
#include "text.h"

/* The longest label (CLIENT_HANDSHAKE_TRAFFIC_SECRET has 31 characters) and secret we write. */
enum { LABEL_MAX = 48, RANDOM_LEN = 32, SECRET_MAX = 64 };

/* label, space, random, space, secret, newline, NUL */
#define LINE_SIZE (LABEL_MAX + 1 + 2 * RANDOM_LEN + 1 + 2 * SECRET_MAX + 2)

void tlsock__keylog_init(struct tlsock__keylog *kl)
{
    kl->fn = NULL;
    kl->user = NULL;
    kl->fd = -1;
}

bool tlsock__keylog_on(const struct tlsock__keylog *kl)
{
    return kl->fn != NULL || kl->fd >= 0;
}

int tlsock__keylog_open(const char *path, int *fd, struct tlsock__err *err)
{
    struct stat st;
    int f;

    /* Said before open() would fail on it with a less helpful reason (EISDIR, ENXIO). */
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        return tlsock__fail(err, TLSOCK_ECONFIG, "key log file %s is not a regular file", path);
    }
    /* O_NONBLOCK: opening a FIFO made since must not wait for a reader (refused below). */
    f = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0600);
    if (f < 0) {
        return tlsock__fail(err, TLSOCK_ECONFIG, "cannot open key log file %s: %s", path,
                            strerror(errno));
    }
    if (fstat(f, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(f);
        return tlsock__fail(err, TLSOCK_ECONFIG, "key log file %s is not a regular file", path);
    }
    *fd = f;
    return 0;
}

/*
 * The labels written (include/tlsock.h, "Key log"): the same set on both implementations, which
 * hand over more. GnuTLS derives the early secrets (CLIENT_EARLY_TRAFFIC_SECRET,
 * EARLY_EXPORTER_SECRET) whenever a TLS 1.3 client offers a ticket (accepted or not) and a server
 * accepts one, and hands them over; OpenSSL only when early data is attempted. tlsock never sends
 * nor accepts early data, so those secrets protect nothing on the wire: dropped, on both.
 */
static bool label_ok(const char *label, size_t len)
{
    static const char *const labels[] = {
        "CLIENT_RANDOM", /* TLS 1.2 and before: the master secret */
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_TRAFFIC_SECRET_0",
        "SERVER_TRAFFIC_SECRET_0",
        "EXPORTER_SECRET",
    };

    for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++) {
        if (strlen(labels[i]) == len && memcmp(labels[i], label, len) == 0) {
            return true;
        }
    }
    return false;
}

static char *put_hex(char *out, const unsigned char *data, size_t len)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < len; i++) {
        *out++ = digits[data[i] >> 4];
        *out++ = digits[data[i] & 15];
    }
    return out;
}

/*
 * One write(2) for the whole line: with O_APPEND, lines of concurrent writers never mix.
 *
 * A file that has reached the process's RLIMIT_FSIZE makes write(2) raise SIGXFSZ, whose default
 * action ends the process: a debugging aid must not kill a server. The signal is blocked in this
 * thread around the write, so that the write fails with EFBIG and the line is lost like any line
 * that cannot be written. The SIGXFSZ it raised is then taken back (it would be delivered when
 * the mask is restored); one that was already pending belongs to the application and is left.
 */
static void append_line(int fd, const char *line, size_t len)
{
    sigset_t xfsz;
    sigset_t old;
    sigset_t pending;
    bool was_pending = false;
    ssize_t n;

    sigemptyset(&xfsz);
    sigaddset(&xfsz, SIGXFSZ);
    pthread_sigmask(SIG_BLOCK, &xfsz, &old);
    if (sigpending(&pending) == 0) {
        was_pending = sigismember(&pending, SIGXFSZ) == 1;
    }
    do {
        n = write(fd, line, len);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EFBIG && !was_pending) {
        const struct timespec now = {0, 0};
        (void)sigtimedwait(&xfsz, NULL, &now);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void emit(const struct tlsock__keylog *kl, const char *label, size_t label_len,
                 const unsigned char *client_random, size_t random_len, const unsigned char *secret,
                 size_t secret_len)
{
    char line[LINE_SIZE];
    char *p = line;

    if (!label_ok(label, label_len) || random_len != RANDOM_LEN || secret_len == 0 ||
        secret_len > SECRET_MAX) {
        return;
    }
    memcpy(p, label, label_len);
    p += label_len;
    *p++ = ' ';
    p = put_hex(p, client_random, random_len);
    *p++ = ' ';
    p = put_hex(p, secret, secret_len);
    *p = '\0';
    if (kl->fn != NULL) {
        kl->fn(line, kl->user);
    }
    if (kl->fd >= 0) {
        *p++ = '\n';
        append_line(kl->fd, line, (size_t)(p - line));
    }
    explicit_bzero(line, sizeof(line));
}

void tlsock__keylog_secret(const struct tlsock__keylog *kl, const char *label,
                           const unsigned char *client_random, size_t random_len,
                           const unsigned char *secret, size_t secret_len)
{
    emit(kl, label, strlen(label), client_random, random_len, secret, secret_len);
}

/* Decodes the hex field at *@p text up to a space or the end, at most @p max bytes. */
static bool take_hex(const char **text, unsigned char *out, size_t max, size_t *len)
{
    const char *s = *text;
    size_t n = 0;

    while (*s != '\0' && *s != ' ') {
        int hi = tlsock__text_hex_value(s[0]);
        int lo = hi >= 0 ? tlsock__text_hex_value(s[1]) : -1;
        if (lo < 0 || n == max) {
            return false;
        }
        out[n++] = (unsigned char)(hi << 4 | lo);
        s += 2;
    }
    *text = s;
    *len = n;
    return n > 0;
}

void tlsock__keylog_line(const struct tlsock__keylog *kl, const char *line)
{
    const char *space = strchr(line, ' ');
    const char *s = space;
    unsigned char client_random[RANDOM_LEN];
    unsigned char secret[SECRET_MAX];
    size_t random_len = 0;
    size_t secret_len = 0;

    if (space == NULL) {
        return;
    }
    s++;
    if (take_hex(&s, client_random, sizeof(client_random), &random_len) && *s++ == ' ' &&
        take_hex(&s, secret, sizeof(secret), &secret_len) && *s == '\0') {
        emit(kl, line, (size_t)(space - line), client_random, random_len, secret, secret_len);
    }
    explicit_bzero(secret, sizeof(secret));
}
