/*
 * Structure-aware fuzzing of whole sessions. Plain byte fuzzing stops at the first flight: the
 * fuzzer cannot answer a ServerHello it has never seen, let alone encrypt. Here a client and a
 * server, both tlsock memory-mode connections, run in one process, so every record either of
 * them produces is valid and the session goes as far as the input lets it: handshake,
 * application data, close_notify, key updates, renegotiation attempts (TLS 1.2), alerts, detach.
 * The input is a small program: what the two ends do, and which records on the wire between them
 * to damage and how (bit flips, truncation, length fields, splitting one record in two, inserted,
 * dropped and replayed records, content types, versions, end of stream after a record, chunked
 * delivery).
 *
 * Input (fuzz_session.h; the seeds in fuzz/corpus/session/ are written by fuzz_seeds.c):
 *   byte 0: configuration
 *     bit 0      client implementation (0 OpenSSL, 1 GnuTLS; the other when one is missing)
 *     bit 1      server implementation
 *     bits 2-3   versions: 0 both 1.2-1.3, 1 both 1.3, 2 both 1.2, 3 client 1.2 / server 1.3
 *     bit 4      "compat" cipher policy on both sides (TLS 1.2 CBC and non-ECDHE suites)
 *     bit 5      ALPN (client "h2,http/1.1", server "http/1.1")
 *     bits 6-7   authentication: 0 client verifies the server, 1 client verifies nothing,
 *                2 the server requires a client certificate, 3 the client expects another name
 *   byte 1: more configuration
 *     bit 0      with authentication 2: the client has no certificate to present
 *     bit 1      with authentication 2: the server only asks (VERIFY_OPTIONAL)
 *     bit 2      the client verifies the IP address 127.0.0.1 (the certificate names only
 *                localhost)
 *     bit 3      both sides TLS 1.0-1.1 with the legacy cipher policy (instead of bits 2-3)
 *     bit 4      the client sends no SNI
 *   then operations until the input ends (at most MAX_OPS): one byte, low nibble the operation,
 *   bit 4 the side it acts on (0 client, 1 server), bits 5-7 a variant; arguments follow.
 *
 * After every operation both connections are pumped: their output is carried to the other side
 * (through the damage planned for it) and each side runs its handshake or reads what arrived.
 *
 * Invariants checked (a broken one aborts: it is a finding, not noise):
 *   - bytes read are exactly the bytes the peer wrote, in order, never more than it wrote
 *     (whatever the damage: TLS records are authenticated);
 *   - TLSOCK_ECLOSED only comes after the handshake, when the peer sent close_notify, with
 *     every byte written before it delivered;
 *   - a fatal error is sticky: every later call on that connection returns the same code;
 *   - tlsock_conn_pending() > 0 means the next read returns data at once (unless the side itself
 *     started a renegotiation through its native handle);
 *   - tlsock_conn_info() strings are never NULL;
 *   - with nothing damaged or interfered with and a configuration that can agree, the handshake
 *     completes on both sides.
 */
#include "fuzz.h"
#include "fuzz_session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if FZ_HAVE_OPENSSL
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif
#if FZ_HAVE_GNUTLS
#include <gnutls/gnutls.h>
#endif

enum {
    MAX_OPS = 64,
    MAX_WRITE = 40000,      /* one WRITE operation */
    MAX_TOTAL = 256 * 1024, /* written per input, both sides */
    MAX_ROUNDS = 24,        /* pump rounds per operation */
    MAX_READS = 64,         /* reads per step */
    MAX_MUTATIONS = 16,     /* planned per direction */
    MAX_INSERT = 600,       /* bytes of an inserted or replacing record body */
    MAX_CLOSE_MARKS = 16,   /* moments a close_notify may have left */
    RECORD_HEADER = 5,
};

struct mutation {
    unsigned record; /* index on the wire, in its direction */
    enum fz_mutation_kind kind;
    unsigned a, b; /* the kind's arguments */
    uint8_t body[MAX_INSERT];
    size_t body_len;
};

/* A growable byte array. */
struct bytes {
    uint8_t *data;
    size_t len;
    size_t cap;
};

static void bytes_add(struct bytes *b, const void *data, size_t len)
{
    if (len == 0) {
        return; /* data may be NULL, and so may b->data */
    }
    if (b->len + len > b->cap) {
        size_t cap = b->cap > 0 ? b->cap : 4096;
        while (cap < b->len + len) {
            cap *= 2;
        }
        uint8_t *grown = realloc(b->data, cap);
        if (grown == NULL) {
            fz_fail("out of memory in the harness");
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

static void bytes_drop_front(struct bytes *b, size_t n)
{
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

/* One end of the session. */
struct side {
    struct tlsock_conn *conn; /* NULL once detached */
    const char *name;
    int impl; /* enum tlsock_impl */
    bool handshake_done;
    int sticky;   /* the first fatal code, 0 while none */
    bool eof_fed; /* tlsock_feed_eof was called: nothing more may be fed */
    /* This side started a renegotiation natively: its library may answer a read with the
     * handshake it is in, whatever it has buffered (tlsock itself never renegotiates). */
    bool renegotiating;
    size_t read_size;
    /* What this side wrote, as offsets in its stream; byte k of the stream is pattern(dir, k). */
    uint64_t written;   /* accepted by completed writes */
    uint64_t attempted; /* including a write in progress or failed */
    uint64_t received;  /* read from the peer's stream */
    /* A write that returned a WANT code and must be repeated with the same arguments. */
    size_t pending_len;
    uint64_t pending_base;
    /* Stream offsets at which this side's close_notify may have left. */
    uint64_t close_marks[MAX_CLOSE_MARKS];
    size_t n_close_marks;
    bool close_marks_overflow;
};

/* The records one side sends, on their way to the other. */
struct wire {
    struct bytes partial; /* drained but not yet a whole record */
    unsigned index;       /* records passed so far */
    struct mutation muts[MAX_MUTATIONS];
    size_t n_muts;
    size_t chunk; /* 0: deliver whole */
    bool ended;   /* FZ_MUT_END_AFTER: the receiver got end of stream */
};

struct session {
    struct side side[2]; /* 0 client, 1 server */
    struct wire wire[2]; /* wire[i]: records side i sends */
    bool damaged;        /* a mutation was applied */
    bool interfered;     /* something besides plain use happened (EOF, native calls, detach) */
    bool can_agree;      /* the configuration lets the handshake succeed */
    size_t total_written;
    uint8_t *scratch; /* MAX_WRITE + 16384 bytes */
};

/* Byte k of side @p dir's stream: does not repeat every 256 bytes, so a lost, repeated or
 * reordered record reads as different bytes. */
static uint8_t pattern(int dir, uint64_t k)
{
    return (uint8_t)(k * 131u + (k >> 8) * 7u + (k >> 16) * 13u + (unsigned)dir * 89u);
}

static bool is_fatal(int rc)
{
    return rc != 0 && rc != TLSOCK_EWANT_READ && rc != TLSOCK_EWANT_WRITE && rc != TLSOCK_ECLOSED &&
           rc != TLSOCK_EINVAL;
}

/* Records @p rc of a call on @p s and checks that fatal errors are sticky. */
static void settle(struct side *s, const char *call, int rc)
{
    if (s->sticky != 0 && rc != s->sticky) {
        fz_fail("%s: %s after the fatal %s returned %s (%s)", s->name, call,
                tlsock_err_name(s->sticky), tlsock_err_name(rc), tlsock_conn_errmsg(s->conn));
    }
    if (is_fatal(rc)) {
        s->sticky = rc;
    }
}

static void mark_close(struct side *s)
{
    if (s->n_close_marks < MAX_CLOSE_MARKS) {
        s->close_marks[s->n_close_marks++] = s->written;
    } else {
        s->close_marks_overflow = true;
    }
}

static int index_of(const struct session *ss, const struct side *s)
{
    return s == &ss->side[0] ? 0 : 1;
}

/* ---- reading and writing -------------------------------------------------------------------- */

static void check_received(struct session *ss, struct side *reader, const uint8_t *buf, size_t n)
{
    int from = 1 - index_of(ss, reader);
    const struct side *writer = &ss->side[from];

    if (reader->received + n > writer->attempted) {
        fz_fail("%s read %zu bytes at offset %llu, but %s only wrote %llu", reader->name, n,
                (unsigned long long)reader->received, writer->name,
                (unsigned long long)writer->attempted);
    }
    for (size_t i = 0; i < n; i++) {
        if (buf[i] != pattern(from, reader->received + i)) {
            fz_fail("%s read a wrong byte at offset %llu of %s's stream", reader->name,
                    (unsigned long long)(reader->received + i), writer->name);
        }
    }
    reader->received += n;
}

/* The peer's close_notify arrived: everything written before it must have been read. */
static void check_closed(struct session *ss, struct side *reader)
{
    const struct side *writer = &ss->side[1 - index_of(ss, reader)];

    if (!reader->handshake_done || writer->close_marks_overflow) {
        return;
    }
    for (size_t i = 0; i < writer->n_close_marks; i++) {
        if (writer->close_marks[i] == reader->received) {
            return;
        }
    }
    fz_fail("%s got TLSOCK_ECLOSED after %llu bytes, but %s sent no close_notify after %llu "
            "bytes (%zu possible moments)",
            reader->name, (unsigned long long)reader->received, writer->name,
            (unsigned long long)reader->received, writer->n_close_marks);
}

/* Repeats a write that returned a WANT code, with the same arguments. */
static void finish_write(struct session *ss, struct side *s)
{
    int dir = index_of(ss, s);

    if (s->pending_len == 0 || s->conn == NULL) {
        return;
    }
    for (size_t i = 0; i < s->pending_len; i++) {
        ss->scratch[i] = pattern(dir, s->pending_base + i);
    }
    int rc = tlsock_write(s->conn, ss->scratch, s->pending_len);
    settle(s, "write", rc);
    if (rc == TLSOCK_EWANT_READ || rc == TLSOCK_EWANT_WRITE) {
        return;
    }
    if (rc == 0) {
        s->written = s->pending_base + s->pending_len;
    }
    s->pending_len = 0;
}

static void do_write(struct session *ss, struct side *s, size_t len)
{
    if (s->conn == NULL || s->pending_len > 0 || len == 0 || ss->total_written + len > MAX_TOTAL) {
        return;
    }
    /* A failed write may have sent part of the data, so the peer may see up to all of it. */
    s->pending_base = s->attempted;
    s->pending_len = len;
    s->attempted += len;
    ss->total_written += len;
    finish_write(ss, s);
}

/* One step of @p s: its handshake, or reads of whatever arrived. */
static void step(struct session *ss, struct side *s)
{
    uint8_t *buf = ss->scratch;

    if (s->conn == NULL) {
        return;
    }
    finish_write(ss, s);
    if (!s->handshake_done) {
        int rc = tlsock_handshake(s->conn);
        settle(s, "handshake", rc);
        if (rc == TLSOCK_ECLOSED) {
            fz_fail("%s: the handshake returned TLSOCK_ECLOSED: a close_notify from an "
                    "unauthenticated peer taken for a clean close",
                    s->name);
        }
        if (rc != 0) {
            return;
        }
        s->handshake_done = true;
    }
    for (int i = 0; i < MAX_READS; i++) {
        size_t pending = tlsock_conn_pending(s->conn);
        size_t n = 0;
        int rc = tlsock_read(s->conn, buf, s->read_size, &n);
        settle(s, "read", rc);
        if (pending > 0 && rc != 0 && !s->renegotiating) {
            fz_fail("%s: tlsock_conn_pending() said %zu bytes, then read returned %s", s->name,
                    pending, tlsock_err_name(rc));
        }
        if (rc == TLSOCK_ECLOSED) {
            check_closed(ss, s);
        }
        if (rc != 0) {
            return;
        }
        if (n == 0 || n > s->read_size) {
            fz_fail("%s: read returned %zu bytes for a buffer of %zu", s->name, n, s->read_size);
        }
        check_received(ss, s, buf, n);
    }
}

/* ---- the wire ------------------------------------------------------------------------------- */

static void put_header(uint8_t *h, uint8_t type, unsigned version, size_t len)
{
    h[0] = type;
    h[1] = (uint8_t)(version >> 8);
    h[2] = (uint8_t)version;
    h[3] = (uint8_t)(len >> 8);
    h[4] = (uint8_t)len;
}

/* Hands @p len bytes to @p to, in the wire's chunks, stepping the receiver between chunks. */
static void deliver(struct session *ss, struct wire *w, struct side *to, const uint8_t *p,
                    size_t len)
{
    size_t chunk = w->chunk > 0 ? w->chunk : len;

    while (len > 0 && to->conn != NULL && !to->eof_fed) {
        size_t n = chunk < len ? chunk : len;
        int rc = tlsock_feed(to->conn, p, n);
        if (rc != 0) {
            fz_fail("%s: tlsock_feed returned %s (%s)", to->name, tlsock_err_name(rc),
                    tlsock_conn_errmsg(to->conn));
        }
        p += n;
        len -= n;
        if (len > 0) {
            step(ss, to);
        }
    }
}

/* Applies the mutations planned for this record, then delivers what results. */
static void pass_record(struct session *ss, struct wire *w, struct side *to, const uint8_t *rec,
                        size_t len)
{
    struct bytes out = {0};
    struct bytes cur = {0};
    bool end = false;
    uint8_t h[RECORD_HEADER];

    bytes_add(&cur, rec, len);
    for (size_t i = 0; i < w->n_muts; i++) {
        struct mutation *m = &w->muts[i];
        size_t body = cur.len >= RECORD_HEADER ? cur.len - RECORD_HEADER : 0;
        if (m->record != w->index) {
            continue;
        }
        ss->damaged = true;
        switch (m->kind) {
        case FZ_MUT_FLIP:
            if (cur.len > 0) {
                cur.data[m->a % cur.len] ^= (uint8_t)(m->b != 0 ? m->b : 1);
            }
            break;
        case FZ_MUT_TRUNCATE:
            if (cur.len > 0) {
                cur.len = m->a % cur.len;
            }
            break;
        case FZ_MUT_SET_LENGTH:
            if (cur.len >= RECORD_HEADER) {
                cur.data[3] = (uint8_t)(m->a >> 8);
                cur.data[4] = (uint8_t)m->a;
            }
            break;
        case FZ_MUT_SPLIT:
            if (body >= 2) {
                size_t at = 1 + m->a % (body - 1);
                struct bytes two = {0};
                put_header(h, cur.data[0], (unsigned)(cur.data[1] << 8 | cur.data[2]), at);
                bytes_add(&two, h, sizeof(h));
                bytes_add(&two, cur.data + RECORD_HEADER, at);
                put_header(h, cur.data[0], (unsigned)(cur.data[1] << 8 | cur.data[2]), body - at);
                bytes_add(&two, h, sizeof(h));
                bytes_add(&two, cur.data + RECORD_HEADER + at, body - at);
                free(cur.data);
                cur = two;
            }
            break;
        case FZ_MUT_INSERT:
            put_header(h, (uint8_t)m->a, m->b, m->body_len);
            bytes_add(&out, h, sizeof(h));
            bytes_add(&out, m->body, m->body_len);
            break;
        case FZ_MUT_DROP:
            cur.len = 0;
            break;
        case FZ_MUT_REPLAY:
            bytes_add(&out, cur.data, cur.len);
            break;
        case FZ_MUT_SET_TYPE:
            if (cur.len > 0) {
                cur.data[0] = (uint8_t)m->a;
            }
            break;
        case FZ_MUT_SET_VERSION:
            if (cur.len >= 3) {
                cur.data[1] = (uint8_t)(m->a >> 8);
                cur.data[2] = (uint8_t)m->a;
            }
            break;
        case FZ_MUT_END_AFTER:
            end = true;
            break;
        case FZ_MUT_REPLACE:
            if (cur.len >= RECORD_HEADER) {
                put_header(h, cur.data[0], (unsigned)(cur.data[1] << 8 | cur.data[2]), m->body_len);
                cur.len = 0;
                bytes_add(&cur, h, sizeof(h));
                bytes_add(&cur, m->body, m->body_len);
            }
            break;
        case FZ_MUT_KINDS:
            break;
        }
    }
    if (cur.len > 0) {
        bytes_add(&out, cur.data, cur.len);
    }
    if (out.len > 0) {
        deliver(ss, w, to, out.data, out.len);
    }
    if (end && to->conn != NULL && !to->eof_fed) {
        int rc = tlsock_feed_eof(to->conn);
        if (rc != 0) {
            fz_fail("%s: tlsock_feed_eof returned %s", to->name, tlsock_err_name(rc));
        }
        to->eof_fed = true;
        w->ended = true;
    }
    free(cur.data);
    free(out.data);
}

/* Moves what @p from has sent to @p to, record by record; returns the bytes drained. */
static size_t carry(struct session *ss, struct side *from, struct side *to)
{
    struct wire *w = &ss->wire[index_of(ss, from)];
    uint8_t buf[16384];
    size_t drained = 0;

    if (from->conn == NULL) {
        return 0;
    }
    while (tlsock_conn_pending_output(from->conn) > 0) {
        size_t n = 0;
        int rc = tlsock_drain(from->conn, buf, sizeof(buf), &n);
        if (rc != 0) {
            fz_fail("%s: tlsock_drain returned %s", from->name, tlsock_err_name(rc));
        }
        if (n == 0) {
            fz_fail("%s: tlsock_conn_pending_output() > 0 but drain moved nothing", from->name);
        }
        bytes_add(&w->partial, buf, n);
        drained += n;
    }
    /* Whole records only: the damage is planned per record. Peers only send whole records. */
    while (w->partial.len >= RECORD_HEADER) {
        size_t len = RECORD_HEADER + ((size_t)w->partial.data[3] << 8 | w->partial.data[4]);
        if (w->partial.len < len) {
            break;
        }
        if (!w->ended) {
            pass_record(ss, w, to, w->partial.data, len);
        }
        w->index++;
        bytes_drop_front(&w->partial, len);
    }
    return drained;
}

static void pump(struct session *ss)
{
    for (int round = 0; round < MAX_ROUNDS; round++) {
        size_t moved = carry(ss, &ss->side[0], &ss->side[1]);
        moved += carry(ss, &ss->side[1], &ss->side[0]);
        step(ss, &ss->side[0]);
        step(ss, &ss->side[1]);
        bool output =
            (ss->side[0].conn != NULL && tlsock_conn_pending_output(ss->side[0].conn) > 0) ||
            (ss->side[1].conn != NULL && tlsock_conn_pending_output(ss->side[1].conn) > 0);
        if (moved == 0 && !output) {
            break;
        }
    }
}

/* ---- what the native libraries can do that tlsock does not ----------------------------------- */

/*
 * Through tlsock_conn_native(), the side acts as a peer tlsock would never be: it updates its
 * keys (TLS 1.3), asks for renegotiation (TLS 1.2) or sends alerts. The receiving side is the
 * one under test; calls that do not apply (a key update in TLS 1.2) fail in the library and
 * change nothing. Only after the side's handshake: GnuTLS 3.7.9 dereferences NULL in
 * gnutls_rehandshake() (a key update under TLS 1.3) on a server that has not finished it.
 */
static void key_update(struct side *s, bool ask_peer)
{
    void *native = tlsock_conn_native(s->conn);

#if FZ_HAVE_OPENSSL
    if (s->impl == TLSOCK_IMPL_OPENSSL) {
        SSL *ssl = native;
        if (SSL_key_update(ssl, ask_peer ? SSL_KEY_UPDATE_REQUESTED
                                         : SSL_KEY_UPDATE_NOT_REQUESTED) == 1) {
            (void)SSL_do_handshake(ssl); /* sends it now */
        }
        ERR_clear_error();
    }
#endif
#if FZ_HAVE_GNUTLS
    if (s->impl == TLSOCK_IMPL_GNUTLS) {
        (void)gnutls_session_key_update(native, ask_peer ? GNUTLS_KU_PEER : 0);
    }
#endif
    (void)native;
    (void)ask_peer;
}

static void renegotiate(struct side *s, bool is_server)
{
    void *native = tlsock_conn_native(s->conn);

#if FZ_HAVE_OPENSSL
    if (s->impl == TLSOCK_IMPL_OPENSSL) {
        SSL *ssl = native;
        /* tlsock refuses renegotiation; this side is the peer that asks anyway. */
        SSL_clear_options(ssl, SSL_OP_NO_RENEGOTIATION);
        if (SSL_renegotiate(ssl) == 1) {
            (void)SSL_do_handshake(ssl); /* HelloRequest or ClientHello */
        }
        ERR_clear_error();
    }
#endif
#if FZ_HAVE_GNUTLS
    /* A GnuTLS client would have to be driven through gnutls_handshake() until the new
     * handshake ends, which tlsock's read does not do: only a GnuTLS server asks. */
    if (s->impl == TLSOCK_IMPL_GNUTLS && is_server) {
        (void)gnutls_rehandshake(native);
    }
#endif
    (void)native;
    (void)is_server;
}

/* Sends @p count alerts; returns true if one of them was a close_notify that left. */
static bool send_alerts(struct side *s, unsigned level, unsigned description, unsigned count)
{
    bool closed = false;

#if FZ_HAVE_GNUTLS
    if (s->impl == TLSOCK_IMPL_GNUTLS) {
        gnutls_session_t session = tlsock_conn_native(s->conn);
        for (unsigned i = 0; i < count; i++) {
            int ret = gnutls_alert_send(session, level == 2 ? GNUTLS_AL_FATAL : GNUTLS_AL_WARNING,
                                        (gnutls_alert_description_t)description);
            closed = closed || (ret == 0 && description == 0);
        }
    }
#endif
    (void)s;
    (void)level;
    (void)description;
    (void)count;
    return closed;
}

static void detach(struct side *s)
{
    uint8_t leftover[4096];
    size_t left = 0;
    int fd = 0;

    /* Detaching sends close_notify first, unless the handshake is not done yet. */
    mark_close(s);
    int rc = tlsock_detach(s->conn, &fd, leftover, sizeof(leftover), &left);
    if (rc == 0) {
        if (fd != -1) {
            fz_fail("%s: detach of a memory connection returned fd %d", s->name, fd);
        }
        if (left > sizeof(leftover)) {
            fz_fail("%s: detach returned %zu leftover bytes in %zu", s->name, left,
                    sizeof(leftover));
        }
        s->conn = NULL;
        return;
    }
    settle(s, "detach", rc);
}

static void info(struct side *s)
{
    const struct tlsock_info *i = NULL;
    int rc = tlsock_conn_info(s->conn, &i);

    settle(s, "conn_info", rc);
    if (rc != 0) {
        return;
    }
    const char *strings[] = {i->impl,      i->version,          i->cipher,
                             i->alpn,      i->servername,       i->peer_subject,
                             i->peer_sans, i->peer_fingerprint, i->verify_message};
    for (size_t k = 0; k < sizeof(strings) / sizeof(strings[0]); k++) {
        if (strings[k] == NULL) {
            fz_fail("%s: tlsock_conn_info() string %zu is NULL", s->name, k);
        }
    }
    if (strcmp(i->impl, tlsock_impl_name(s->impl)) != 0) {
        fz_fail("%s: tlsock_conn_info() says %s, the context uses %s", s->name, i->impl,
                tlsock_impl_name(s->impl));
    }
}

/* ---- operations ------------------------------------------------------------------------------ */

/* A record body from the input: u16 length, then that many bytes (fewer at the end). */
static void read_body(struct fz_in *in, struct mutation *m)
{
    size_t got = 0;
    const uint8_t *p = fz_bytes(in, fz_u16(in) % (MAX_INSERT + 1), &got);

    memcpy(m->body, p, got);
    m->body_len = got;
}

static void plan_mutation(struct session *ss, struct fz_in *in, int dir)
{
    struct wire *w = &ss->wire[dir];
    unsigned skip = fz_u8(in);
    struct mutation m = {.record = w->index + skip, .kind = fz_u8(in) % FZ_MUT_KINDS};

    switch (m.kind) {
    case FZ_MUT_FLIP:
        m.a = fz_u16(in);
        m.b = fz_u8(in);
        break;
    case FZ_MUT_TRUNCATE:
    case FZ_MUT_SET_LENGTH:
    case FZ_MUT_SPLIT:
    case FZ_MUT_SET_VERSION:
        m.a = fz_u16(in);
        break;
    case FZ_MUT_SET_TYPE:
        m.a = fz_u8(in);
        break;
    case FZ_MUT_INSERT:
        m.a = fz_u8(in);
        m.b = fz_u16(in);
        read_body(in, &m);
        break;
    case FZ_MUT_REPLACE:
        read_body(in, &m);
        break;
    case FZ_MUT_DROP:
    case FZ_MUT_REPLAY:
    case FZ_MUT_END_AFTER:
    case FZ_MUT_KINDS:
        break;
    }
    if (w->n_muts < MAX_MUTATIONS) {
        w->muts[w->n_muts++] = m;
    }
}

static void run_op(struct session *ss, struct fz_in *in)
{
    uint8_t b = fz_u8(in);
    unsigned variant = b >> 5;
    int who = (b >> 4) & 1;
    struct side *s = &ss->side[who];

    switch (b & 0x0f) {
    case FZ_OP_HANDSHAKE:
        pump(ss);
        if (ss->can_agree && !ss->damaged && !ss->interfered &&
            !(ss->side[0].handshake_done && ss->side[1].handshake_done)) {
            fz_fail("an undamaged handshake did not complete: client %s (%s), server %s (%s)",
                    tlsock_err_name(ss->side[0].sticky),
                    ss->side[0].conn ? tlsock_conn_errmsg(ss->side[0].conn) : "",
                    tlsock_err_name(ss->side[1].sticky),
                    ss->side[1].conn ? tlsock_conn_errmsg(ss->side[1].conn) : "");
        }
        return;
    case FZ_OP_WRITE:
        do_write(ss, s, fz_u16(in) % (MAX_WRITE + 1));
        break;
    case FZ_OP_SMALL_WRITES: {
        unsigned count = fz_u8(in) % 64;
        for (unsigned i = 0; i < count; i++) {
            do_write(ss, s, 1 + (i * 7 + variant) % 16);
        }
        break;
    }
    case FZ_OP_SHUTDOWN:
        if (s->conn != NULL) {
            int rc = tlsock_shutdown(s->conn);
            settle(s, "shutdown", rc);
            if (rc == 0) {
                mark_close(s);
            }
        }
        break;
    case FZ_OP_KEY_UPDATE:
        ss->interfered = true;
        if (s->conn != NULL && s->handshake_done) {
            key_update(s, variant & 1);
        }
        break;
    case FZ_OP_RENEGOTIATE:
        ss->interfered = true;
        if (s->conn != NULL && s->handshake_done) {
            renegotiate(s, who == 1);
            s->renegotiating = true;
        }
        break;
    case FZ_OP_ALERT: {
        unsigned level = fz_u8(in);
        unsigned description = fz_u8(in);
        unsigned count = 1 + fz_u8(in) % 80;
        ss->interfered = true;
        if (s->conn != NULL && s->handshake_done && send_alerts(s, level, description, count)) {
            mark_close(s);
        }
        break;
    }
    case FZ_OP_DETACH:
        ss->interfered = true;
        if (s->conn != NULL) {
            detach(s);
        }
        break;
    case FZ_OP_INFO:
        if (s->conn != NULL) {
            info(s);
        }
        break;
    case FZ_OP_MUTATE:
        plan_mutation(ss, in, who);
        return;
    case FZ_OP_CHUNK:
        ss->wire[who].chunk = fz_u8(in);
        return;
    case FZ_OP_EOF:
        ss->interfered = true;
        if (s->conn != NULL && !s->eof_fed) {
            int rc = tlsock_feed_eof(s->conn);
            if (rc != 0) {
                fz_fail("%s: tlsock_feed_eof returned %s", s->name, tlsock_err_name(rc));
            }
            s->eof_fed = true;
        }
        break;
    case FZ_OP_READ_SIZE: {
        unsigned size = fz_u8(in);
        s->read_size = size == 0 ? 16384 : size;
        return;
    }
    default:
        break;
    }
    pump(ss);
}

/* ---- the session ----------------------------------------------------------------------------- */

static const char *const session_protocols[4][2] = {
    {"1.2-1.3", "1.2-1.3"},
    {"1.3", "1.3"},
    {"1.2-1.2", "1.2-1.2"},
    {"1.2-1.2", "1.3"},
};

/* FZ_TRACE=1 in the environment: one line per side and input on stderr (for seeds and docs). */
static bool trace;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_setup();
    trace = getenv("FZ_TRACE") != NULL;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_in in = {.p = data, .n = size};
    struct session ss = {.can_agree = true};
    uint8_t cfg = fz_u8(&in);
    uint8_t more = fz_u8(&in);
    unsigned versions = (cfg >> 2) & 3;
    unsigned auth = cfg >> 6;
    bool legacy = more & 8;
    struct fz_config client = {
        .role = TLSOCK_CLIENT,
        .impl = fz_impl(cfg),
        .protocols = legacy ? "1.0-1.1" : session_protocols[versions][0],
        .ciphers = fz_ciphers[(cfg >> 4) & 1],
        .verify = auth == 1 ? TLSOCK_VERIFY_NONE : TLSOCK_VERIFY_REQUIRED,
        .cert = auth == 2 && !(more & 1),
        .trust = true,
        .alpn = cfg & FZ_CFG_ALPN ? "h2,http/1.1" : NULL,
    };
    struct fz_config server = {
        .role = TLSOCK_SERVER,
        .impl = fz_impl(cfg >> 1),
        .protocols = legacy ? "1.0-1.1" : session_protocols[versions][1],
        .ciphers = fz_ciphers[(cfg >> 4) & 1],
        .verify = auth != 2  ? TLSOCK_VERIFY_NONE
                  : more & 2 ? TLSOCK_VERIFY_OPTIONAL
                             : TLSOCK_VERIFY_REQUIRED,
        .cert = true,
        .trust = auth == 2,
        .alpn = cfg & FZ_CFG_ALPN ? "http/1.1" : NULL,
    };
    struct tlsock_opts copts = TLSOCK_OPTS_INIT;

    fz_input_begin();
    /* What may legitimately fail: versions that do not meet, a name or address the certificate
     * does not have, a required client certificate missing, TLS 1.0 where the system has it off. */
    ss.can_agree = versions != 3 && auth != 3 && !legacy && !(auth != 1 && (more & 4)) &&
                   !(server.verify == TLSOCK_VERIFY_REQUIRED && !client.cert);
    copts.servername = more & 0x10 ? "" : FZ_HOST;
    copts.verify_name = auth == 3 ? "other.example" : more & 4 ? "127.0.0.1" : FZ_HOST;
    ss.side[0] = (struct side){.name = "client", .impl = client.impl, .read_size = 16384};
    ss.side[1] = (struct side){.name = "server", .impl = server.impl, .read_size = 16384};
    ss.scratch = malloc(MAX_WRITE + 16384);
    if (ss.scratch == NULL) {
        fz_fail("out of memory in the harness");
    }
    int rc = tlsock_attach_mem(fz_ctx(&client), &copts, &ss.side[0].conn);
    if (rc == 0) {
        rc = tlsock_attach_mem(fz_ctx(&server), NULL, &ss.side[1].conn);
    }
    if (rc != 0) {
        fz_fail("attach_mem: %s (%s)", tlsock_err_name(rc), tlsock_errmsg());
    }
    for (int i = 0; i < MAX_OPS && in.n > 0; i++) {
        run_op(&ss, &in);
    }
    if (trace) {
        for (int i = 0; i < 2; i++) {
            const struct side *sd = &ss.side[i];
            fprintf(stderr, "%s %s: handshake %s, error %s (%s), wrote %llu, read %llu%s\n",
                    sd->name, tlsock_impl_name(sd->impl), sd->handshake_done ? "done" : "not done",
                    sd->sticky != 0 ? tlsock_err_name(sd->sticky) : "none",
                    sd->conn != NULL ? tlsock_conn_errmsg(sd->conn) : "detached",
                    (unsigned long long)sd->written, (unsigned long long)sd->received,
                    ss.damaged ? ", damaged" : "");
        }
    }
    for (int i = 0; i < 2; i++) {
        tlsock_close(ss.side[i].conn);
        free(ss.wire[i].partial.data);
    }
    free(ss.scratch);
    return 0;
}
