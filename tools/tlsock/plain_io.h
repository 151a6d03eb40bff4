/*
 * Plaintext socket I/O before TLS starts (STARTTLS): TCP connect, sends and a buffered line
 * reader, every wait bounded by one absolute deadline on tlsock_now_ms()'s clock (-1: none).
 */
#ifndef TLSOCK_CLI_PLAIN_IO_H
#define TLSOCK_CLI_PLAIN_IO_H

#include <stddef.h>
#include <stdint.h>

/* Room for the longest line the reader accepts plus what the peer may have sent after it. */
#define PLAIN_READER_SIZE 4096

/*
 * Resolves @p host and connects to @p port over TCP, trying each address in turn, until
 * @p deadline_ms. On success *fd is a non-blocking socket owned by the caller. Failures are
 * reported on stderr; returns 0, TLSOCK_ERESOLVE, TLSOCK_ESYS or TLSOCK_ETIMEDOUT.
 */
int cli_plain_connect(const char *host, uint16_t port, int64_t deadline_ms, int *fd);

/* Sends all of @p buf on non-blocking @p fd; 0, TLSOCK_ESYS or TLSOCK_ETIMEDOUT (reported). */
int cli_plain_send(int fd, const char *buf, size_t len, int64_t deadline_ms);

/*
 * Closes a socket the way tlsock closes its own: half-close, then a short bounded drain of what
 * the peer still sends, so that unread input does not turn the close into a reset that destroys
 * our last bytes (a close_notify) before the peer reads them.
 */
void cli_plain_close(int fd);

/* A line reader that may read ahead; what it read past the last line is handed on. */
struct cli_line_reader {
    int fd;
    int64_t deadline_ms;
    int sys_errno; /* errno of the last TLSOCK_ESYS */
    size_t start;  /* first unconsumed byte in buf */
    size_t end;    /* end of the bytes read */
    char buf[PLAIN_READER_SIZE];
};

/* Prepares @p reader for non-blocking @p fd; reads wait until @p deadline_ms at most. */
void cli_line_reader_init(struct cli_line_reader *reader, int fd, int64_t deadline_ms);

/*
 * Reads one line ending in LF into @p line as a NUL-terminated string without its CR LF.
 * @return 0; TLSOCK_ETIMEDOUT; TLSOCK_ETRUNCATED when the peer closed before a full line;
 *         TLSOCK_EPROTO when a line does not fit in @p cap; TLSOCK_ESYS (see sys_errno).
 *         Nothing is reported: the caller knows what the line was for.
 */
int cli_line_read(struct cli_line_reader *reader, char *line, size_t cap);

/* The bytes read past the last line returned, valid until the next read; sets *len. */
const char *cli_line_reader_leftover(const struct cli_line_reader *reader, size_t *len);

#endif /* TLSOCK_CLI_PLAIN_IO_H */
