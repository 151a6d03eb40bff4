/*
 * Relaying between stdin/stdout and a TLS connection with poll().
 *
 * poll() on the socket cannot see plaintext that the TLS layer has already decrypted and
 * buffered, so the loop asks tlsock_conn_pending() before it waits, and reads with a deadline
 * that has passed (tlsock_conn_set_deadline(conn, 0): "what is ready, or TLSOCK_ETIMEDOUT at
 * once") whenever the socket polls readable. A partial record stays buffered in the connection for
 * the next read, and the socket polls readable again when the rest arrives.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "connect_relay.h"

#define RELAY_BUF_SIZE 16384
/* Reads per drain before stdin gets a turn, so a chatty peer cannot starve the user. */
#define DRAIN_MAX_READS 64

enum drain_result {
    DRAIN_IDLE,   /* read what was ready (maybe nothing); more may still be pending */
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

/* Copies the plaintext that is ready to stdout without waiting; *got_data tells if there was. */
static enum drain_result drain_peer(struct tlsock_conn *conn, bool *got_data, int *err)
{
    enum drain_result result = DRAIN_IDLE;
    char buf[RELAY_BUF_SIZE];
    size_t nread = 0;
    int reads = 0;
    int rc = tlsock_conn_set_deadline(conn, 0);

    if (rc != 0) {
        cli_error("cannot set the read deadline", rc, tlsock_conn_errmsg(conn));
        *err = rc;
        result = DRAIN_FAILED;
        goto done;
    }
    for (reads = 0; reads < DRAIN_MAX_READS; reads++) {
        rc = tlsock_read(conn, buf, sizeof(buf), &nread);
        if (rc == TLSOCK_ETIMEDOUT) {
            /* Retryable by contract: nothing (more) is ready now. */
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
        *got_data = true;
        if (!write_stdout(buf, nread)) {
            *err = TLSOCK_ESYS;
            result = DRAIN_FAILED;
            goto done;
        }
    }
done:
    /* Writes wait again; cannot fail for -1. */
    (void)tlsock_conn_set_deadline(conn, -1);
    return result;
}

static int send_to_peer(struct tlsock_conn *conn, const char *buf, size_t len, int timeout_ms)
{
    int err = tlsock_conn_set_timeout(conn, timeout_ms);

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
    int err = tlsock_conn_set_timeout(conn, params->close_wait_ms);

    /* A deadline, not only a per-read timeout, so that a chatty peer cannot keep us forever. */
    if (err == 0) {
        err = tlsock_conn_set_deadline(conn, tlsock_now_ms() + params->close_wait_ms);
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
    int err = tlsock_conn_set_timeout(conn, params->io_timeout_ms);

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

/* How long poll() may wait: not at all with plaintext pending, else until the idle deadline. */
static int poll_timeout(struct tlsock_conn *conn, int64_t idle_deadline_ms)
{
    int64_t left = 0;
    int wait_ms = -1;

    if (tlsock_conn_pending(conn) > 0) {
        wait_ms = 0;
    } else if (idle_deadline_ms >= 0) {
        left = idle_deadline_ms - tlsock_now_ms();
        wait_ms = left <= 0 ? 0 : (int)left;
    }
    return wait_ms;
}

/* Reads stdin once and sends what came, or ends our side at its end; clears *running when done. */
static int relay_stdin(struct tlsock_conn *conn, const struct cli_relay_params *params,
                       bool *running)
{
    char buf[RELAY_BUF_SIZE];
    ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
    int err = 0;

    if (n < 0 && errno == EINTR) {
        goto done;
    }
    if (n < 0) {
        cli_errorf("cannot read stdin: %s", strerror(errno));
        err = TLSOCK_ESYS;
        *running = false;
        goto done;
    }
    if (n == 0) {
        err = end_of_stdin(conn, params);
        *running = false;
        goto done;
    }
    err = send_to_peer(conn, buf, (size_t)n, params->io_timeout_ms);
    if (err != 0) {
        *running = false;
    }
done:
    return err;
}

int cli_relay(struct tlsock_conn *conn, const struct cli_relay_params *params)
{
    int err = 0;
    struct pollfd fds[2];
    bool running = true;
    bool got_data = false;
    bool peer_ready = false;
    enum drain_result drained = DRAIN_IDLE;
    int64_t idle_deadline = -1;
    int ready = 0;

    if (params->idle_timeout_ms > 0) {
        idle_deadline = tlsock_now_ms() + params->idle_timeout_ms;
    }
    while (running) {
        fds[0] = (struct pollfd){.fd = STDIN_FILENO, .events = POLLIN};
        fds[1] = (struct pollfd){.fd = tlsock_conn_fd(conn), .events = POLLIN};
        ready = poll(fds, 2, poll_timeout(conn, idle_deadline));
        if (ready < 0 && errno == EINTR) {
            continue;
        }
        if (ready < 0) {
            cli_errorf("poll: %s", strerror(errno));
            err = TLSOCK_ESYS;
            goto done;
        }
        peer_ready = (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0;
        if (peer_ready || tlsock_conn_pending(conn) > 0) {
            got_data = false;
            drained = drain_peer(conn, &got_data, &err);
            if (drained != DRAIN_IDLE) {
                /* After the peer's close_notify, tlsock_close() answers with ours. */
                goto done;
            }
            if (got_data && idle_deadline >= 0) {
                idle_deadline = tlsock_now_ms() + params->idle_timeout_ms;
            }
        }
        /* Checked after the drain: data that was already there never counts as idleness. */
        if (idle_deadline >= 0 && tlsock_now_ms() >= idle_deadline) {
            char detail[96];
            snprintf(detail, sizeof(detail), "no data from the peer for %d ms (--timeout)",
                     params->idle_timeout_ms);
            cli_error("read from the peer", TLSOCK_ETIMEDOUT, detail);
            err = TLSOCK_ETIMEDOUT;
            goto done;
        }
        if ((fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
            err = relay_stdin(conn, params, &running);
        }
    }
done:
    return err;
}
