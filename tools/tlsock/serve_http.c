/*
 * HTTP mode: a minimal HTTP/1.x responder for testing clients such as curl and browsers.
 * Each request head (up to its blank line, RFC 9112 section 2.1; lines end with CRLF or a bare
 * LF) gets one small text/plain response written with a single tlsock_uv_write(). HTTP/1.1
 * connections stay open for the next request unless the client sends "Connection: close";
 * HTTP/1.0 ones end after one response. A malformed head gets 400, one longer than
 * SERVE_HTTP_HEAD_MAX 431, and both close the connection: nothing is left waiting but a head
 * still incomplete, which the idle timeout bounds.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "serve.h"

#define HTTP_BODY "hello from tlsock\n"

struct http_request {
    bool keep_alive;
    bool head_only; /* HEAD: the same headers, no body */
    int status;     /* 200, or the error status to answer with */
};

/* True when the comma-separated header value @p value (of @p len bytes) has token "close". */
static bool has_close_token(const char *value, size_t len)
{
    bool found = false;
    size_t i = 0;
    size_t start = 0;
    size_t end = 0;

    while (i <= len && !found) {
        if (i == len || value[i] == ',') {
            end = i;
            while (start < end && (value[start] == ' ' || value[start] == '\t')) {
                start++;
            }
            while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t')) {
                end--;
            }
            found = end - start == 5 && strncasecmp(value + start, "close", 5) == 0;
            start = i + 1;
        }
        i++;
    }
    return found;
}

/* A token character (RFC 9110 section 5.6.2): methods and field names are made of these. */
static bool is_tchar(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* A control character other than HTAB: never valid in a request head (CR and LF end lines). */
static bool is_ctl(char c)
{
    return ((unsigned char)c < 0x20 && c != '\t') || c == 0x7f;
}

/* The length of the token at the start of the @p len bytes at @p p. */
static size_t token_length(const char *p, size_t len)
{
    size_t n = 0;

    while (n < len && is_tchar(p[n])) {
        n++;
    }
    return n;
}

/*
 * Takes the line at *@p pos (before @p end), without its line end, and moves *@p pos past it.
 * A line ends with CRLF or a bare LF (RFC 9112 section 2.2). Returns false when there is no
 * line end or the line holds a control character, a bare CR among them (section 2.2 allows
 * rejecting those).
 */
static bool next_line(const char **pos, const char *end, const char **line, size_t *len)
{
    const char *lf = memchr(*pos, '\n', (size_t)(end - *pos));
    bool ok = lf != NULL;

    if (ok) {
        *line = *pos;
        *len = (size_t)(lf - *pos);
        if (*len > 0 && lf[-1] == '\r') {
            (*len)--;
        }
        for (size_t i = 0; i < *len && ok; i++) {
            ok = !is_ctl((*line)[i]);
        }
        *pos = lf + 1;
    }
    return ok;
}

/* "METHOD SP TARGET SP HTTP/1.x" (RFC 9112 section 3) into @p req; false when it is not. */
static bool parse_request_line(const char *line, size_t len, struct http_request *req)
{
    const char *end = line + len;
    size_t method_len = token_length(line, len);
    const char *target = NULL;
    const char *version = NULL;
    bool ok = method_len > 0 && method_len < len && line[method_len] == ' ';

    if (ok) {
        target = line + method_len + 1;
        version = memchr(target, ' ', (size_t)(end - target));
        ok = version != NULL && version > target;
    }
    if (ok) {
        version++;
        ok = end - version == 8 && strncmp(version, "HTTP/1.", 7) == 0 && version[7] >= '0' &&
             version[7] <= '9';
    }
    if (!ok) {
        goto done;
    }
    req->keep_alive = version[7] != '0';
    if (method_len == 3 && strncmp(line, "GET", 3) == 0) {
        req->status = 200;
    } else if (method_len == 4 && strncmp(line, "HEAD", 4) == 0) {
        req->status = 200;
        req->head_only = true;
    } else {
        /* Other methods may carry a body this small server does not read: answer and close. */
        req->status = 405;
        req->keep_alive = false;
    }
done:
    return ok;
}

/*
 * "NAME: value" (RFC 9112 section 5); notes "Connection: close" in @p req. False for a line
 * without a colon, with space before it (section 5.1 says reject) or folded onto the previous
 * one (obs-fold, section 5.2 allows rejecting it).
 */
static bool parse_header(const char *line, size_t len, struct http_request *req)
{
    size_t name_len = token_length(line, len);
    bool ok = name_len > 0 && name_len < len && line[name_len] == ':';

    if (ok && name_len == 10 && strncasecmp(line, "Connection", 10) == 0 &&
        has_close_token(line + 11, len - 11)) {
        req->keep_alive = false;
    }
    return ok;
}

/*
 * Parses the request head in @p head (@p len bytes, ending with its empty line). Anything that
 * is not a request is 400 Bad Request, which closes the connection.
 */
static void parse_request(const char *head, size_t len, struct http_request *req)
{
    const char *pos = head;
    const char *end = head + len;
    const char *line = NULL;
    size_t line_len = 0;
    bool ok = next_line(&pos, end, &line, &line_len);

    *req = (struct http_request){.status = 400};
    if (ok && line_len == 0) {
        /* RFC 9112 section 2.2: one empty line before the request line is ignored. */
        ok = next_line(&pos, end, &line, &line_len);
    }
    ok = ok && parse_request_line(line, line_len, req);
    while (ok && pos < end) {
        ok = next_line(&pos, end, &line, &line_len);
        /* The empty line that ends the head is the last one. */
        ok = ok && (line_len == 0 || parse_header(line, line_len, req));
    }
    if (!ok) {
        *req = (struct http_request){.status = 400};
    }
}

static int respond(struct serve_conn *sc, const struct http_request *req)
{
    char response[512];
    const char *reason = "OK";
    const char *body = HTTP_BODY;
    int len = 0;

    if (req->status == 400) {
        reason = "Bad Request";
        body = "bad request\n";
    } else if (req->status == 405) {
        reason = "Method Not Allowed";
        body = "only GET and HEAD\n";
    } else if (req->status == 431) {
        reason = "Request Header Fields Too Large";
        body = "request head too large\n";
    }
    /* One write for head and body: one TLS record, and never a half response on failure. */
    len = snprintf(response, sizeof(response),
                   "HTTP/1.1 %d %s\r\n"
                   "Server: tlsock/" TLSOCK_VERSION_STRING "\r\n"
                   "Content-Type: text/plain\r\n"
                   "Content-Length: %zu\r\n"
                   "Connection: %s\r\n"
                   "\r\n"
                   "%s",
                   req->status, reason, strlen(body), req->keep_alive ? "keep-alive" : "close",
                   req->head_only ? "" : body);
    return serve_conn_send(sc, response, (size_t)len);
}

/*
 * Finds the end of the request head in @p buf: an empty line, after a CRLF or a bare LF
 * (RFC 9112 section 2.2). Returns the head's length, or 0 while it is incomplete.
 */
static size_t head_length(const char *buf, size_t used)
{
    size_t len = 0;
    size_t next = 0;

    for (size_t i = 0; i < used && len == 0; i++) {
        if (buf[i] != '\n') {
            continue;
        }
        next = i + 1;
        if (next < used && buf[next] == '\r') {
            next++;
        }
        if (next < used && buf[next] == '\n') {
            len = next + 1;
        }
    }
    return len;
}

/* True when the incomplete head in @p buf already holds a byte no request head may hold. */
static bool head_invalid(const char *buf, size_t used)
{
    bool bad = false;

    for (size_t i = 0; i < used && !bad; i++) {
        bad = is_ctl(buf[i]) && buf[i] != '\r' && buf[i] != '\n';
    }
    return bad;
}

/* Answers every complete request head in the buffer, in order (pipelining). */
static void answer_heads(struct serve_conn *sc)
{
    struct http_request req;
    size_t head_len = 0;
    int err = 0;

    while (!sc->closing) {
        head_len = head_length(sc->head, sc->used);
        if (head_len == 0 && sc->used == SERVE_HTTP_HEAD_MAX) {
            req = (struct http_request){.status = 431, .keep_alive = false};
            head_len = sc->used;
        } else if (head_len == 0 && head_invalid(sc->head, sc->used)) {
            /* Binary or garbled input: waiting for a line end would only hold the client. */
            req = (struct http_request){.status = 400, .keep_alive = false};
            head_len = sc->used;
        } else if (head_len == 0) {
            break;
        } else {
            parse_request(sc->head, head_len, &req);
        }
        err = respond(sc, &req);
        if (err != 0) {
            serve_conn_log_error(sc, "write", err);
            serve_conn_end(sc, err);
            break;
        }
        if (sc->owner->settings->verbose) {
            fprintf(stderr, "tlsock: %s: %d\n", sc->peer, req.status);
        }
        /* Keep what followed this head: the next pipelined request. */
        memmove(sc->head, sc->head + head_len, sc->used - head_len);
        sc->used -= head_len;
        if (!req.keep_alive) {
            /* The response goes out first, then close_notify. */
            serve_conn_end(sc, 0);
        }
    }
}

void serve_http_data(struct serve_conn *sc, const void *data, size_t len)
{
    const char *p = data;
    size_t n = 0;

    while (len > 0 && !sc->closing) {
        n = SERVE_HTTP_HEAD_MAX - sc->used;
        n = n < len ? n : len;
        memcpy(sc->head + sc->used, p, n);
        sc->used += n;
        p += n;
        len -= n;
        answer_heads(sc);
    }
}

void serve_http_event(struct serve_conn *sc, int code)
{
    /*
     * Between requests a client may simply go away, with close_notify or (many do) without, or
     * stay silent until the idle timeout: with no request half read nothing was lost, so none
     * of these is an error.
     */
    if (code == TLSOCK_ECLOSED ||
        (sc->used == 0 && (code == TLSOCK_ETRUNCATED || code == TLSOCK_ETIMEDOUT))) {
        serve_conn_end(sc, 0);
    } else {
        serve_conn_log_error(sc, "read", code);
        serve_conn_end(sc, code);
    }
}
