/*
 * HTTP mode: a minimal HTTP/1.x responder for testing clients such as curl and browsers.
 * Each request head (up to its blank line, RFC 9112 section 2.1) gets one small text/plain
 * response written with a single tlsock_uv_write(). HTTP/1.1 connections stay open for the next
 * request unless the client sends "Connection: close"; HTTP/1.0 ones end after one response.
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

/* Looks at the header lines between @p p and @p end for "Connection: close". */
static bool wants_close(const char *p, const char *end)
{
    bool close_asked = false;
    const char *eol = NULL;
    const char *colon = NULL;
    const char *value_end = NULL;

    while (p < end && !close_asked) {
        eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL) {
            eol = end;
        }
        colon = memchr(p, ':', (size_t)(eol - p));
        if (colon != NULL && colon - p == 10 && strncasecmp(p, "Connection", 10) == 0) {
            value_end = eol;
            if (value_end > colon + 1 && value_end[-1] == '\r') {
                value_end--;
            }
            close_asked = has_close_token(colon + 1, (size_t)(value_end - colon - 1));
        }
        p = eol + 1;
    }
    return close_asked;
}

/* Parses the request head in @p head (@p len bytes, ending with the blank line). */
static void parse_request(const char *head, size_t len, struct http_request *req)
{
    const char *end = head + len;
    const char *line_end = memchr(head, '\n', len);
    const char *sp1 = NULL;
    const char *sp2 = NULL;
    size_t method_len = 0;
    size_t version_len = 0;

    req->keep_alive = false;
    req->head_only = false;
    req->status = 400;
    if (line_end == NULL || line_end == head || line_end[-1] != '\r') {
        goto done;
    }
    sp1 = memchr(head, ' ', (size_t)(line_end - head));
    sp2 = sp1 == NULL ? NULL : memchr(sp1 + 1, ' ', (size_t)(line_end - sp1 - 1));
    if (sp1 == NULL || sp2 == NULL) {
        goto done;
    }
    method_len = (size_t)(sp1 - head);
    version_len = (size_t)(line_end - 1 - (sp2 + 1));
    if (version_len != 8 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0) {
        goto done;
    }
    req->keep_alive = sp2[8] == '1' && !wants_close(line_end + 1, end);
    if (method_len == 3 && strncmp(head, "GET", 3) == 0) {
        req->status = 200;
    } else if (method_len == 4 && strncmp(head, "HEAD", 4) == 0) {
        req->status = 200;
        req->head_only = true;
    } else {
        /* Other methods may carry a body this small server does not read: answer and close. */
        req->status = 405;
        req->keep_alive = false;
    }
done:
    return;
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

/* Finds the end of the request head ("\r\n\r\n") in @p buf; returns its length or 0. */
static size_t head_length(const char *buf, size_t used)
{
    size_t len = 0;
    size_t i = 0;

    for (i = 0; i + 4 <= used && len == 0; i++) {
        if (memcmp(buf + i, "\r\n\r\n", 4) == 0) {
            len = i + 4;
        }
    }
    return len;
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
