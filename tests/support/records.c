/* The TLS record wire and the re-framing proxy; see records.h. */
#include "records.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "support.h"

enum {
    REC_HEADER = 5,
    REC_MAX = 16384 + 2048, /* the largest ciphertext record (RFC 5246 section 6.2.3) */
    EXT_SUPPORTED_GROUPS = 10,
    EXT_SUPPORTED_VERSIONS = 43,
    EXT_KEY_SHARE = 51,
    EXT_RENEGOTIATION_INFO = 0xff01,
    SCSV = 0x00ff,
    GREASE = 0x0a0a,
};

static unsigned get16(const unsigned char *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

static size_t get24(const unsigned char *p)
{
    return (size_t)p[0] << 16 | (size_t)p[1] << 8 | p[2];
}

int ts_bytes_append(struct ts_bytes *b, const void *data, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap > 0 ? b->cap : 4096;
        while (cap < b->len + len) {
            cap *= 2;
        }
        unsigned char *grown = realloc(b->data, cap);
        if (grown == NULL) {
            return -1;
        }
        b->data = grown;
        b->cap = cap;
    }
    if (len > 0) {
        memcpy(b->data + b->len, data, len);
    }
    b->len += len;
    return 0;
}

void ts_bytes_free(struct ts_bytes *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

void ts_wire_init(struct ts_wire *w, size_t c2s_frag, size_t s2c_frag)
{
    memset(w, 0, sizeof(*w));
    w->c2s.frag = c2s_frag;
    w->s2c.frag = s2c_frag;
}

static void flow_free(struct ts_flow *f)
{
    ts_bytes_free(&f->rec);
    ts_bytes_free(&f->hs);
}

void ts_wire_free(struct ts_wire *w)
{
    flow_free(&w->c2s);
    flow_free(&w->s2c);
}

/* RFC 8446 section 4.1.3: the version a ServerHello chose, supported_versions first. */
static int server_hello_version(const unsigned char *b, size_t len)
{
    int version = len >= 2 ? (int)get16(b) : 0;
    size_t off = 2 + 32;

    if (off >= len) {
        return version;
    }
    off += 1 + b[off]; /* legacy_session_id_echo */
    off += 2 + 1;      /* cipher_suite, legacy_compression_method */
    if (off + 2 > len) {
        return version;
    }
    size_t end = off + 2 + get16(b + off);
    for (off += 2; off + 4 <= end && end <= len; off += 4 + get16(b + off + 2)) {
        if (get16(b + off) == EXT_SUPPORTED_VERSIONS && get16(b + off + 2) == 2) {
            version = (int)get16(b + off + 4);
        }
    }
    return version;
}

/* Splits what arrived of the plaintext handshake stream into messages. */
static void parse_messages(struct ts_wire *w, struct ts_flow *f)
{
    while (f->hs.len - f->hs_parsed >= 4) {
        const unsigned char *m = f->hs.data + f->hs_parsed;
        size_t body = get24(m + 1);
        if (f->hs.len - f->hs_parsed - 4 < body) {
            break;
        }
        if (f->nmsgs < TS_FLOW_MAX_MSGS) {
            f->msgs[f->nmsgs].type = m[0];
            f->msgs[f->nmsgs].body_off = f->hs_parsed + 4;
            f->msgs[f->nmsgs].body_len = body;
            f->nmsgs++;
        }
        if (f == &w->s2c && m[0] == TS_HS_SERVER_HELLO) {
            w->version = server_hello_version(m + 4, body);
        }
        f->hs_parsed += 4 + body;
    }
}

/* Passes one whole record on, re-framed if it is a plaintext handshake record. */
static int pass_record(struct ts_wire *w, struct ts_flow *f, unsigned char *r, size_t len,
                       struct ts_bytes *out)
{
    size_t body = len - REC_HEADER;
    /* TLS 1.3 encrypts handshake messages as application_data records; TLS 1.2 after a CCS. */
    bool plaintext_hs = r[0] == TS_CT_HANDSHAKE && !(f->after_ccs && w->version < 0x0304);

    f->records_in++;
    if (r[0] == TS_CT_CCS) {
        f->after_ccs = true;
    }
    if (!plaintext_hs) {
        f->records_out++;
        return ts_bytes_append(out, r, len);
    }
    if (f->strip_renegotiation && ts_hello_strip_renegotiation(r, len) == 1) {
        f->stripped++;
    }
    if (f->swap_groups) {
        (void)ts_hello_swap_groups(r, len);
    }
    if (ts_bytes_append(&f->hs, r + REC_HEADER, body) != 0) {
        return -1;
    }
    parse_messages(w, f);
    size_t step = f->frag > 0 ? f->frag : body;
    for (size_t off = 0; off < body; off += step) {
        size_t n = body - off < step ? body - off : step;
        unsigned char hdr[REC_HEADER] = {r[0], r[1], r[2], (unsigned char)(n >> 8),
                                         (unsigned char)n};
        if (ts_bytes_append(out, hdr, sizeof(hdr)) != 0 ||
            ts_bytes_append(out, r + REC_HEADER + off, n) != 0) {
            return -1;
        }
        f->records_out++;
        f->hs_records_out++;
    }
    return 0;
}

int ts_wire_pass(struct ts_wire *w, struct ts_flow *f, const void *in, size_t len,
                 struct ts_bytes *out)
{
    if (f->broken || ts_bytes_append(&f->rec, in, len) != 0) {
        return -1;
    }
    size_t off = 0;
    while (f->rec.len - off >= REC_HEADER) {
        unsigned char *r = f->rec.data + off;
        size_t body = get16(r + 3);
        if (r[0] < TS_CT_CCS || r[0] > TS_CT_APPDATA || r[1] != 3 || body > REC_MAX) {
            f->broken = true;
            return -1;
        }
        if (f->rec.len - off - REC_HEADER < body) {
            break;
        }
        if (pass_record(w, f, r, REC_HEADER + body, out) != 0) {
            return -1;
        }
        off += REC_HEADER + body;
    }
    memmove(f->rec.data, f->rec.data + off, f->rec.len - off);
    f->rec.len -= off;
    return 0;
}

size_t ts_flow_count(const struct ts_flow *flow, int type)
{
    size_t n = 0;

    for (size_t i = 0; i < flow->nmsgs; i++) {
        n += flow->msgs[i].type == type;
    }
    return n;
}

const unsigned char *ts_flow_msg(const struct ts_flow *flow, int type, size_t nth, size_t *len)
{
    for (size_t i = 0; i < flow->nmsgs; i++) {
        if (flow->msgs[i].type == type && nth-- == 0) {
            *len = flow->msgs[i].body_len;
            return flow->hs.data + flow->msgs[i].body_off;
        }
    }
    return NULL;
}

/* Where a ClientHello's cipher suites and extensions are; -1 if it is malformed. */
static int hello_layout(const unsigned char *b, size_t len, size_t *suites, size_t *ext)
{
    size_t off = 2 + 32;

    if (off + 1 > len) {
        return -1;
    }
    off += 1 + b[off]; /* legacy_session_id */
    if (off + 2 > len) {
        return -1;
    }
    *suites = off;
    off += 2 + get16(b + off);
    if (off + 1 > len) {
        return -1;
    }
    off += 1 + b[off]; /* legacy_compression_methods */
    if (off + 2 > len || off + 2 + get16(b + off) != len) {
        return -1;
    }
    *ext = off;
    return 0;
}

static void hello_extension(struct ts_hello *h, unsigned type, const unsigned char *d, size_t n)
{
    if (type == EXT_RENEGOTIATION_INFO) {
        h->renegotiation_info = true;
    } else if (type == EXT_SUPPORTED_VERSIONS && n >= 1) {
        h->supported_versions = true;
        for (size_t i = 1; i + 1 < n && i + 1 <= d[0]; i += 2) {
            h->offers_tls13 |= get16(d + i) == 0x0304;
        }
    } else if (type == EXT_SUPPORTED_GROUPS && n >= 2) {
        for (size_t i = 2; i + 1 < n && h->ngroups < sizeof(h->groups) / sizeof(h->groups[0]);
             i += 2) {
            h->groups[h->ngroups++] = get16(d + i);
        }
    } else if (type == EXT_KEY_SHARE && n >= 2) {
        for (size_t i = 2; i + 4 <= n && h->nshares < sizeof(h->shares) / sizeof(h->shares[0]);
             i += 4 + get16(d + i + 2)) {
            h->shares[h->nshares++] = get16(d + i);
        }
    }
}

int ts_hello_parse(const unsigned char *b, size_t len, struct ts_hello *out)
{
    size_t suites = 0;
    size_t ext = 0;

    memset(out, 0, sizeof(*out));
    if (hello_layout(b, len, &suites, &ext) != 0) {
        return -1;
    }
    out->legacy_version = (int)get16(b);
    for (size_t i = suites + 2; i + 1 < suites + 2 + get16(b + suites); i += 2) {
        out->scsv |= get16(b + i) == SCSV;
        if (out->nsuites < sizeof(out->suites) / sizeof(out->suites[0])) {
            out->suites[out->nsuites++] = get16(b + i);
        }
    }
    for (size_t off = ext + 2; off + 4 <= len; off += 4 + get16(b + off + 2)) {
        size_t n = get16(b + off + 2);
        if (off + 4 + n > len) {
            return -1;
        }
        hello_extension(out, get16(b + off), b + off + 4, n);
    }
    return 0;
}

/* The body of the ClientHello filling the record @p rec, or NULL. */
static unsigned char *record_hello(unsigned char *rec, size_t len, size_t *blen, size_t *suites,
                                   size_t *ext)
{
    if (len < REC_HEADER + 4 || rec[0] != TS_CT_HANDSHAKE ||
        rec[REC_HEADER] != TS_HS_CLIENT_HELLO ||
        get24(rec + REC_HEADER + 1) != len - REC_HEADER - 4) {
        return NULL;
    }
    *blen = len - REC_HEADER - 4;
    return hello_layout(rec + REC_HEADER + 4, *blen, suites, ext) == 0 ? rec + REC_HEADER + 4
                                                                       : NULL;
}

int ts_hello_swap_groups(unsigned char *rec, size_t len)
{
    size_t blen = 0;
    size_t suites = 0;
    size_t ext = 0;
    unsigned char *b = record_hello(rec, len, &blen, &suites, &ext);

    if (b == NULL) {
        return -1;
    }
    for (size_t off = ext + 2; off + 4 <= blen; off += 4 + get16(b + off + 2)) {
        /* The list's length (2 bytes), then two bytes a group. */
        if (get16(b + off) == EXT_SUPPORTED_GROUPS && get16(b + off + 2) >= 6) {
            unsigned char *g = b + off + 4 + 2;
            unsigned char first[2] = {g[0], g[1]};
            g[0] = g[2];
            g[1] = g[3];
            g[2] = first[0];
            g[3] = first[1];
            return 1;
        }
    }
    return 0;
}

size_t ts_flow_hello_retries(const struct ts_flow *s2c)
{
    /* The HelloRetryRequest's random: SHA-256 of "HelloRetryRequest". */
    static const unsigned char hrr[32] = {
        0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c,
        0x02, 0x1e, 0x65, 0xb8, 0x91, 0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb,
        0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
    };
    size_t n = 0;
    size_t len = 0;
    const unsigned char *body = NULL;

    for (size_t i = 0; (body = ts_flow_msg(s2c, TS_HS_SERVER_HELLO, i, &len)) != NULL; i++) {
        n += len >= 2 + sizeof(hrr) && memcmp(body + 2, hrr, sizeof(hrr)) == 0;
    }
    return n;
}

int ts_hello_strip_renegotiation(unsigned char *rec, size_t len)
{
    size_t blen = 0;
    size_t suites = 0;
    size_t ext = 0;
    unsigned char *b = record_hello(rec, len, &blen, &suites, &ext);
    int changed = 0;

    if (b == NULL) {
        return -1;
    }
    for (size_t i = suites + 2; i + 1 < suites + 2 + get16(b + suites); i += 2) {
        if (get16(b + i) == SCSV) {
            b[i] = GREASE >> 8;
            b[i + 1] = GREASE & 0xff;
            changed = 1;
        }
    }
    for (size_t off = ext + 2; off + 4 <= blen; off += 4 + get16(b + off + 2)) {
        if (get16(b + off) == EXT_RENEGOTIATION_INFO) {
            b[off] = GREASE >> 8;
            b[off + 1] = GREASE & 0xff;
            changed = 1;
        }
    }
    return changed;
}

/* ---- the proxy ------------------------------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sends all of @p b on the blocking socket @p fd; 0 or -1. */
static int send_all(int fd, const struct ts_bytes *b)
{
    for (size_t off = 0; off < b->len;) {
        ssize_t n = send(fd, b->data + off, b->len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return -1;
        }
        off += (size_t)n;
    }
    return 0;
}

/* Relays one readable socket; 1 at its EOF, 0, or -1 on failure. */
static int relay(struct ts_proxy *p, struct ts_flow *flow, int from, int to)
{
    unsigned char buf[65536];
    struct ts_bytes out = {0};
    ssize_t n = recv(from, buf, sizeof(buf), 0);
    int rc = 0;

    if (n == 0) {
        shutdown(to, SHUT_WR);
        return 1;
    }
    if (n < 0) {
        return errno == EINTR ? 0 : -1;
    }
    rc = ts_wire_pass(&p->wire, flow, buf, (size_t)n, &out);
    if (rc == 0) {
        rc = send_all(to, &out);
    }
    ts_bytes_free(&out);
    return rc;
}

static void *proxy_main(void *arg)
{
    struct ts_proxy *p = arg;
    int64_t deadline = now_ms() + TS_IO_TIMEOUT_MS;
    int cfd = ts_raw_accept(p->lfd, TS_IO_TIMEOUT_MS);
    int sfd = -1;
    bool eof[2] = {false, false};

    if (cfd < 0 || atomic_load(&p->stop) ||
        ts_raw_connect("127.0.0.1", p->target_port, 0, &sfd) != 0) {
        p->result = TS_ESETUP;
        goto out;
    }
    p->result = 0;
    while (!(eof[0] && eof[1]) && !atomic_load(&p->stop) && p->result == 0) {
        struct pollfd fds[2] = {{.fd = eof[0] ? -1 : cfd, .events = POLLIN},
                                {.fd = eof[1] ? -1 : sfd, .events = POLLIN}};
        if (now_ms() > deadline) {
            p->result = TS_ESETUP;
            break;
        }
        if (poll(fds, 2, 50) < 0 && errno != EINTR) {
            p->result = TS_ESETUP;
            break;
        }
        for (int i = 0; i < 2 && p->result == 0; i++) {
            if (fds[i].revents == 0) {
                continue;
            }
            int rc = i == 0 ? relay(p, &p->wire.c2s, cfd, sfd) : relay(p, &p->wire.s2c, sfd, cfd);
            if (rc < 0) {
                /* A reset after an alert is a peer's business; broken records are ours. */
                p->result = p->wire.c2s.broken || p->wire.s2c.broken ? TS_EMISMATCH : 0;
                eof[0] = eof[1] = true;
            }
            eof[i] |= rc == 1;
        }
    }
out:
    if (cfd >= 0) {
        close(cfd);
    }
    if (sfd >= 0) {
        close(sfd);
    }
    return NULL;
}

int ts_proxy_start(struct ts_proxy *p, uint16_t target_port, size_t c2s_frag, size_t s2c_frag)
{
    memset(p, 0, sizeof(*p));
    p->target_port = target_port;
    p->result = TS_NOT_RUN;
    atomic_init(&p->stop, false);
    ts_wire_init(&p->wire, c2s_frag, s2c_frag);
    if (ts_raw_listen("127.0.0.1", 0, &p->lfd, &p->port) != 0) {
        p->lfd = -1;
        return TS_ESETUP;
    }
    if (pthread_create(&p->thread, NULL, proxy_main, p) != 0) {
        close(p->lfd);
        p->lfd = -1;
        return TS_ESETUP;
    }
    p->started = true;
    return 0;
}

void ts_proxy_stop(struct ts_proxy *p)
{
    if (p->started) {
        atomic_store(&p->stop, true);
        /* Wakes an accept that no client came to. */
        int fd = -1;
        if (ts_raw_connect("127.0.0.1", p->port, 0, &fd) == 0) {
            close(fd);
        }
        pthread_join(p->thread, NULL);
        p->started = false;
    }
    if (p->lfd >= 0) {
        close(p->lfd);
        p->lfd = -1;
    }
}
