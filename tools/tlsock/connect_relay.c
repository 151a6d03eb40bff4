/*
 * Relaying between stdin/stdout and a TLS connection with poll().
 *
 * poll() on the socket cannot see plaintext that the TLS layer has already decrypted and
 * buffered, and the public API has no "pending" call. So whenever the socket polls readable we
 * read with a tiny timeout until TLSOCK_ETIMEDOUT, which the API defines as retryable ("nothing
 * more yet"): partial records stay buffered inside the connection for the next read.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "connect_relay.h"

#define RELAY_BUF_SIZE 16384
/* The wait for "more plaintext right now?"; 0 would mean no timeout at all. */
#define DRAIN_TIMEOUT_MS 1
/* Reads per drain before stdin gets a turn, so a chatty peer cannot starve the user. */
#define DRAIN_MAX_READS 64

enum drain_result {
    DRAIN_IDLE,   /* nothing more for now */
    DRAIN_MORE,   /* stopped early: more may be buffered, poll without waiting */
    DRAIN_CLOSED, /* the peer sent close_notify */
    DRAIN_FAILED, /* error, reported; *err says which */
};

static bool write_stdout(const char *buf, size_t len)
{
    bool ok = false;
    size_t off = 0;
    ssize_t n = 0;

    while (off < len) {
        n = write(STDOUT_FILENO, buf + off, len - off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            cli_errorf("cannot write to stdout: %s", n < 0 ? strerror(errno) : "short write");
            goto done;
        }
        off += (size_t)n;
    }
    ok = true;
done:
    return ok;
}

static enum drain_result drain_peer(struct tlsock_conn *conn, int *err)
{
    enum drain_result result = DRAIN_MORE;
    char buf[RELAY_BUF_SIZE];
    size_t nread = 0;
    int reads = 0;
    int rc = tlsock_set_timeout(conn, DRAIN_TIMEOUT_MS);

    if (rc != 0) {
        cli_error("cannot set the read timeout", rc, tlsock_conn_errmsg(conn));
        *err = rc;
        result = DRAIN_FAILED;
        goto done;
    }
    for (reads = 0; reads < DRAIN_MAX_READS; reads++) {
        rc = tlsock_read(conn, buf, sizeof(buf), &nread);
        if (rc == TLSOCK_ETIMEDOUT) {
            result = DRAIN_IDLE;
            goto done;
        }
        if (rc == TLSOCK_ECLOSED) {
            result = DRAIN_CLOSED;
            goto done;
        }
        if (rc != 0) {
            cli_error("read from the peer", rc, tlsock_conn_errmsg(conn));
            *err = rc;
            result = DRAIN_FAILED;
            goto done;
        }
        if (!write_stdout(buf, nread)) {
            *err = TLSOCK_ESYS;
            result = DRAIN_FAILED;
            goto done;
        }
    }
done:
    return result;
}

static int send_to_peer(struct tlsock_conn *conn, const char *buf, size_t len, int timeout_ms)
{
    int err = tlsock_set_timeout(conn, timeout_ms);

    if (err == 0) {
        err = tlsock_write(conn, buf, len);
    }
    if (err != 0) {
        cli_error("write to the peer", err, tlsock_conn_errmsg(conn));
    }
    return err;
}

/* After our close_notify: print what still comes until the peer's close_notify or the bound. */
static int await_close(struct tlsock_conn *conn, const struct cli_relay_params *params)
{
    char buf[RELAY_BUF_SIZE];
    size_t nread = 0;
    bool reading = true;
    int err = tlsock_set_timeout(conn, params->close_wait_ms);

    /* A deadline, not only a per-read timeout, so that a chatty peer cannot keep us forever. */
    if (err == 0) {
        err = tlsock_set_deadline(conn, tlsock_now_ms() + params->close_wait_ms);
    }
    while (err == 0 && reading) {
        err = tlsock_read(conn, buf, sizeof(buf), &nread);
        if (err == 0 && !write_stdout(buf, nread)) {
            err = TLSOCK_ESYS;
            reading = false;
        }
    }
    if (err == TLSOCK_ECLOSED) {
        err = 0;
    } else if (err == TLSOCK_ETIMEDOUT) {
        /* Everything was sent and our close_notify is out; the peer just did not answer it. */
        if (!params->quiet) {
            fprintf(stderr, "tlsock: no close_notify from the peer within %d ms; closing\n",
                    params->close_wait_ms);
        }
        err = 0;
    } else if (err != TLSOCK_ESYS) {
        cli_error("read from the peer", err, tlsock_conn_errmsg(conn));
    }
    return err;
}

static int end_of_stdin(struct tlsock_conn *conn, const struct cli_relay_params *params)
{
    int err = tlsock_set_timeout(conn, params->io_timeout_ms);

    if (err == 0) {
        err = tlsock_shutdown(conn);
    }
    if (err != 0) {
        cli_error("send close_notify", err, tlsock_conn_errmsg(conn));
        goto done;
    }
    err = await_close(conn, params);
done:
    return err;
}

int cli_relay(struct tlsock_conn *conn, const struct cli_relay_params *params)
{
    int err = 0;
    char buf[RELAY_BUF_SIZE];
    struct pollfd fds[2];
    bool running = true;
    bool maybe_pending = false;
    enum drain_result drained = DRAIN_IDLE;
    ssize_t n = 0;
    int ready = 0;

    while (running) {
        fds[0] = (struct pollfd){.fd = STDIN_FILENO, .events = POLLIN};
        fds[1] = (struct pollfd){.fd = tlsock_conn_fd(conn), .events = POLLIN};
        ready = poll(fds, 2, maybe_pending ? 0 : -1);
        if (ready < 0 && errno == EINTR) {
            continue;
        }
        if (ready < 0) {
            cli_errorf("poll: %s", strerror(errno));
            err = TLSOCK_ESYS;
            goto done;
        }
        if (maybe_pending || (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
            drained = drain_peer(conn, &err);
            maybe_pending = drained == DRAIN_MORE;
            if (drained == DRAIN_CLOSED || drained == DRAIN_FAILED) {
                /* After the peer's close_notify, tlsock_close() answers with ours. */
                running = false;
                continue;
            }
        }
        if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0) {
            continue;
        }
        n = read(STDIN_FILENO, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            cli_errorf("cannot read stdin: %s", strerror(errno));
            err = TLSOCK_ESYS;
            goto done;
        }
        if (n == 0) {
            err = end_of_stdin(conn, params);
            running = false;
            continue;
        }
        err = send_to_peer(conn, buf, (size_t)n, params->io_timeout_ms);
        if (err != 0) {
            running = false;
        }
    }
done:
    return err;
}
