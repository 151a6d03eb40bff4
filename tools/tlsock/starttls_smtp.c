/*
 * The SMTP STARTTLS preamble (RFC 3207 section 4) on the client side.
 *
 * Replies follow RFC 5321 section 4.2: "CODE-text" lines continue a reply, a "CODE text" (or
 * bare "CODE") line ends it, and every line of one reply carries the same code. The EHLO reply
 * lists one extension keyword per line after the first, which is where STARTTLS is offered.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "starttls.h"

/* RFC 5321 section 4.5.3.1.5 allows 512 octets per reply line; leave room for sloppy servers. */
#define SMTP_LINE_MAX 1024
/* A reply longer than this many lines is not an SMTP server talking. */
#define SMTP_MAX_LINES 256
/* What of a reply goes into an error message. */
#define SMTP_REPLY_TEXT 512
/* RFC 2606 reserves .invalid: the client has no name of its own to give. */
#define SMTP_EHLO     "EHLO tlsock.invalid\r\n"
#define SMTP_STARTTLS "STARTTLS\r\n"

struct smtp_reply {
    int code;
    bool starttls;              /* an EHLO reply line after the first says STARTTLS */
    char text[SMTP_REPLY_TEXT]; /* the reply's lines joined with " | ", for messages */
};

/* Appends @p line to the reply text, replacing control characters (it goes to a terminal). */
static void append_text(struct smtp_reply *reply, const char *line)
{
    size_t used = strlen(reply->text);
    size_t i = 0;

    if (used > 0 && used + 3 < sizeof(reply->text)) {
        memcpy(reply->text + used, " | ", 4);
        used += 3;
    }
    for (i = 0; line[i] != '\0' && used + 1 < sizeof(reply->text); i++) {
        reply->text[used++] = isprint((unsigned char)line[i]) ? line[i] : '?';
    }
    reply->text[used] = '\0';
}

/* The code of a reply line "DDD", "DDD text" or "DDD-text"; -1 when it is not one. */
static int line_code(const char *line)
{
    int code = -1;

    if (isdigit((unsigned char)line[0]) && isdigit((unsigned char)line[1]) &&
        isdigit((unsigned char)line[2]) && (line[3] == '\0' || line[3] == ' ' || line[3] == '-')) {
        code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    }
    return code;
}

/* True when the reply line's text (after "DDD-") is the keyword STARTTLS, maybe with params. */
static bool offers_starttls(const char *line)
{
    bool found = false;

    if (line[3] != '\0') {
        found = strcspn(line + 4, " ") == 8 && strncasecmp(line + 4, "STARTTLS", 8) == 0;
    }
    return found;
}

/* Reports a failure to read a reply during @p stage. */
static void report_read_error(const struct cli_line_reader *reader, const char *target,
                              const char *stage, int err)
{
    if (err == TLSOCK_ETRUNCATED) {
        cli_errorf("smtp STARTTLS with %s: the server closed the connection (%s)", target, stage);
    } else if (err == TLSOCK_ETIMEDOUT) {
        cli_errorf("smtp STARTTLS with %s: %s: no complete reply before the --timeout (%s)", target,
                   tlsock_strerror(err), stage);
    } else if (err == TLSOCK_EPROTO) {
        cli_errorf("smtp STARTTLS with %s: reply line longer than %d bytes (%s)", target,
                   SMTP_LINE_MAX - 1, stage);
    } else {
        cli_errorf("smtp STARTTLS with %s: %s: %s (%s)", target, tlsock_strerror(err),
                   strerror(reader->sys_errno), stage);
    }
}

/* Reads one (multi-line) reply; reports failures. */
static int read_reply(struct cli_line_reader *reader, const char *target, const char *stage,
                      struct smtp_reply *reply)
{
    char line[SMTP_LINE_MAX];
    int lines = 0;
    int code = 0;
    bool more = true;
    int err = 0;

    memset(reply, 0, sizeof(*reply));
    reply->code = -1;
    while (more) {
        err = cli_line_read(reader, line, sizeof(line));
        if (err != 0) {
            report_read_error(reader, target, stage, err);
            goto done;
        }
        append_text(reply, line);
        code = line_code(line);
        lines++;
        if (code < 0 || (lines > 1 && code != reply->code) || lines > SMTP_MAX_LINES) {
            cli_errorf("smtp STARTTLS with %s: not an SMTP reply (%s): %s", target, stage,
                       reply->text);
            err = TLSOCK_EPROTO;
            goto done;
        }
        if (lines > 1 && offers_starttls(line)) {
            reply->starttls = true;
        }
        reply->code = code;
        more = line[3] == '-';
    }
done:
    return err;
}

/* Reads a reply and checks its code; a different code is a protocol error with the reply. */
static int expect_reply(struct cli_line_reader *reader, const char *target, const char *stage,
                        int want, struct smtp_reply *reply)
{
    int err = read_reply(reader, target, stage, reply);

    if (err == 0 && reply->code != want) {
        cli_errorf("smtp STARTTLS with %s: %s: expected %d, the server said: %s", target, stage,
                   want, reply->text);
        err = TLSOCK_EPROTO;
    }
    return err;
}

int cli_starttls_smtp(struct cli_line_reader *reader, const char *target)
{
    struct smtp_reply reply;
    int err = expect_reply(reader, target, "greeting", 220, &reply);

    if (err != 0) {
        goto done;
    }
    err = cli_plain_send(reader->fd, SMTP_EHLO, strlen(SMTP_EHLO), reader->deadline_ms);
    if (err != 0) {
        goto done;
    }
    err = expect_reply(reader, target, "reply to EHLO", 250, &reply);
    if (err != 0) {
        goto done;
    }
    if (!reply.starttls) {
        cli_errorf("smtp STARTTLS with %s: the server does not offer STARTTLS; its EHLO reply: %s",
                   target, reply.text);
        err = TLSOCK_EPROTO;
        goto done;
    }
    err = cli_plain_send(reader->fd, SMTP_STARTTLS, strlen(SMTP_STARTTLS), reader->deadline_ms);
    if (err != 0) {
        goto done;
    }
    err = expect_reply(reader, target, "reply to STARTTLS", 220, &reply);
done:
    return err;
}
