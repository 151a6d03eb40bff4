/*
 * tlsock connect --sess-in, --sess-out and --reconnect (docs/sessions.md): a session kept in a
 * file between runs, and connections made again to show whether they resume. A session that
 * cannot be read or used is a warning, never a failure: the connection makes a full handshake.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "connect_session.h"

/* Sessions are small (a few KiB); a larger file is not one. */
enum { SESSION_FILE_MAX = 64 * 1024 };

void cli_session_load(struct tlsock_ctx *ctx, const char *path)
{
    static unsigned char buf[SESSION_FILE_MAX];
    FILE *f = fopen(path, "rb");

    if (f == NULL) {
        fprintf(stderr, "tlsock: warning: --sess-in %s: %s (full handshake)\n", path,
                strerror(errno));
        return;
    }
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    int err = tlsock_ctx_session_import(ctx, buf, n);
    if (err != 0) {
        fprintf(stderr, "tlsock: warning: --sess-in %s: %s (full handshake)\n", path,
                tlsock_ctx_errmsg(ctx));
    }
}

void cli_session_save(struct tlsock_conn *conn, const char *path)
{
    unsigned char *data = NULL;
    size_t len = 0;
    int err = tlsock_conn_session_export(conn, &data, &len);

    if (err != 0) {
        fprintf(stderr, "tlsock: warning: --sess-out %s: %s\n", path, tlsock_conn_errmsg(conn));
        return;
    }
    /*
     * The session's secrets: readable by the owner only. open() keeps the mode of a file that
     * exists (a session file of an older run, or one the user made), so it is set before the
     * secrets are written.
     */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0 && fchmod(fd, 0600) != 0) {
        fprintf(stderr, "tlsock: warning: --sess-out %s: cannot chmod 600: %s\n", path,
                strerror(errno));
        close(fd);
        tlsock_free(data);
        return;
    }
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    bool ok = f != NULL && fwrite(data, 1, len, f) == len;
    if (f != NULL) {
        ok = fclose(f) == 0 && ok;
    } else if (fd >= 0) {
        close(fd);
    }
    if (!ok) {
        fprintf(stderr, "tlsock: warning: --sess-out %s: cannot write: %s\n", path,
                strerror(errno));
    }
    tlsock_free(data);
}

void cli_session_report(struct tlsock_conn *conn, int number)
{
    const struct tlsock_info *info = NULL;

    if (tlsock_conn_info(conn, &info) == 0) {
        fprintf(stderr, "connection %d: resumed %s\n", number, info->resumed ? "yes" : "no");
    }
}

/* How long a reconnection waits for the server's TLS 1.3 tickets after its handshake. */
#define TICKET_WAIT_MS 300

int cli_session_reconnect(struct tlsock_ctx *ctx, const char *host, uint16_t port,
                          const struct tlsock_opts *opts, int number, const char *sess_out)
{
    struct tlsock_conn *conn = NULL;
    unsigned char byte;
    size_t n = 0;
    int err = tlsock_connect(ctx, host, port, opts, &conn);

    if (err != 0) {
        fprintf(stderr, "tlsock: connection %d failed: %s\n", number, tlsock_errmsg());
        return err;
    }
    cli_session_report(conn, number);
    /* TLS 1.3 tickets come after the handshake; a read lets them in (nothing else is awaited). */
    if (tlsock_conn_set_timeout(conn, TICKET_WAIT_MS) == 0) {
        (void)tlsock_read(conn, &byte, 1, &n);
    }
    if (sess_out != NULL) {
        cli_session_save(conn, sess_out);
    }
    tlsock_close(conn);
    return 0;
}
