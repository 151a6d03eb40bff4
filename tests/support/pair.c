/* The in-memory pair; see pair.h. */
#include "pair.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_want(int rc)
{
    return rc == TLSOCK_EWANT_READ || rc == TLSOCK_EWANT_WRITE;
}

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

static bool failed(int rc)
{
    return rc != 0 && !is_want(rc);
}

static size_t chunk_of(const struct ts_path *path)
{
    return path->chunk > 0 && path->chunk < TS_PAIR_CHUNK ? path->chunk : TS_PAIR_CHUNK;
}

static int rounds_of(const struct ts_pair *p)
{
    return p->rounds_max > 0 ? p->rounds_max : TS_PAIR_ROUNDS;
}

/* What the pair has done so far: when a round leaves it unchanged, nothing more can happen. */
static size_t progress(const struct ts_pair *p)
{
    size_t sum = 0;

    for (int d = 0; d < 2; d++) {
        sum += p->path[d].sent + p->path[d].fed + p->path[d].eof;
    }
    return sum;
}

/* Whether a round that started at @p before did nothing: never known of a direct pair, whose
 * bytes the pair does not see. */
static bool idle_since(const struct ts_pair *p, size_t before)
{
    return !p->direct && progress(p) == before;
}

void ts_assert_failed_at(int rc, const char *expr, const char *detail, const char *file, int line)
{
    if (rc >= 0 || is_want(rc)) {
        print_error("%s: expected a failure, got %s (%d); detail: \"%s\"\n", expr, ts_rc_name(rc),
                    rc, detail != NULL ? detail : "(null)");
        _fail(file, line);
    }
}

/* ---- setup and teardown ---------------------------------------------------------------------- */

void ts_pair_init(struct ts_pair *p)
{
    memset(p, 0, sizeof(*p));
}

/* Back to no bytes counted, none held, no outcome; the faults stay. */
static void reset_counts(struct ts_pair *p)
{
    for (int d = 0; d < 2; d++) {
        struct ts_path *path = &p->path[d];

        path->sent = path->fed = path->feeds = path->read_wants = path->write_wants = 0;
        path->eof = false;
        path->held = 0;
    }
    p->client_rc = p->server_rc = 0;
    p->client_msg[0] = p->server_msg[0] = '\0';
    p->rounds = 0;
}

void ts_pair_close(struct ts_pair *p)
{
    tlsock_close(p->client);
    tlsock_close(p->server);
    p->client = p->server = NULL;
    reset_counts(p);
}

void ts_pair_release(struct ts_pair *p)
{
    if (p != NULL) {
        ts_pair_close(p);
        tlsock_ctx_free(p->cctx);
        tlsock_ctx_free(p->sctx);
        ts_pair_init(p);
    }
}

int ts_pair_setup(void **state)
{
    struct ts_pair *p = malloc(sizeof(*p));

    if (p != NULL) {
        ts_pair_init(p);
    }
    *state = p;
    return p != NULL ? 0 : -1;
}

int ts_pair_teardown(void **state)
{
    struct ts_pair *p = *state;

    ts_pair_release(p);
    free(p);
    *state = NULL;
    return 0;
}

int ts_pair_setup_connected(void **state)
{
    int rc = ts_pair_setup(state);

    if (rc == 0) {
        rc = ts_pair_connect(*state) == 0 ? 0 : -1;
    }
    return rc;
}

void ts_pair_renew(void **state, size_t index)
{
    if (index > 0) {
        assert_int_equal(ts_pair_teardown(state), 0);
        assert_int_equal(ts_pair_setup(state), 0);
    }
}

struct tlsock_conn *ts_pair_sender(const struct ts_pair *p, enum ts_dir dir)
{
    return dir == TS_C2S ? p->client : p->server;
}

struct tlsock_conn *ts_pair_receiver(const struct ts_pair *p, enum ts_dir dir)
{
    return dir == TS_C2S ? p->server : p->client;
}

/* One side: over @p io, or in memory mode when it is NULL. */
static int attach_side(struct tlsock_ctx *ctx, const struct tlsock_io *io,
                       const struct tlsock_opts *opts, const char *side, struct tlsock_conn **out)
{
    int rc = io != NULL ? tlsock_attach_io(ctx, io, opts, out) : tlsock_attach_mem(ctx, opts, out);

    if (rc != 0) {
        print_error("%s tlsock_attach_%s: %s (%s)\n", side, io != NULL ? "io" : "mem",
                    ts_rc_name(rc), tlsock_errmsg());
    }
    return rc;
}

int ts_pair_attach_io(struct ts_pair *p, const struct tlsock_io *cio, const struct tlsock_io *sio,
                      const struct tlsock_opts *copts, const struct tlsock_opts *sopts)
{
    struct tlsock_opts c = copts != NULL ? *copts : ts_opts();
    struct tlsock_opts s = sopts != NULL ? *sopts : ts_opts();
    int rc = p->client == NULL && p->server == NULL ? 0 : TS_ESETUP;

    if (copts == NULL) {
        c.verify_name = TS_PAIR_NAME;
    }
    reset_counts(p);
    p->direct = cio != NULL || sio != NULL;
    if (rc == 0) {
        rc = attach_side(p->cctx, cio, &c, "client", &p->client);
    }
    if (rc == 0) {
        rc = attach_side(p->sctx, sio, &s, "server", &p->server);
    }
    return rc;
}

int ts_pair_attach(struct ts_pair *p, const struct tlsock_opts *copts,
                   const struct tlsock_opts *sopts)
{
    return ts_pair_attach_io(p, NULL, NULL, copts, sopts);
}

int ts_pair_open(struct ts_pair *p)
{
    int rc = 0;

    if (p->sctx == NULL) {
        rc = ts_server_ctx_new(&ts_pki.server, &p->sctx);
    }
    if (rc == 0 && p->cctx == NULL) {
        rc = ts_client_ctx_new(ts_pki.ca.cert, &p->cctx);
    }
    if (rc == 0) {
        rc = ts_pair_attach(p, NULL, NULL);
    }
    return rc;
}

int ts_pair_connect(struct ts_pair *p)
{
    int rc = ts_pair_open(p);

    if (rc == 0) {
        rc = ts_pair_handshake(p);
        if (rc != 0) {
            print_error("memory handshake: client %s (%s), server %s (%s)\n",
                        ts_rc_name(p->client_rc), p->client_msg, ts_rc_name(p->server_rc),
                        p->server_msg);
        }
    }
    return rc;
}

/* ---- the paths ------------------------------------------------------------------------------- */

/* The receiver has had all of the stream it will get: the end of the stream, once. */
static int end_stream_if_due(struct ts_pair *p, enum ts_dir dir)
{
    struct ts_path *path = &p->path[dir];
    struct tlsock_conn *to = ts_pair_receiver(p, dir);
    int rc = 0;

    if (path->truncate && !path->eof && path->held == 0 && path->sent >= path->truncate_at) {
        path->eof = true;
        if (to != NULL) {
            rc = tlsock_feed_eof(to);
        }
    }
    return rc;
}

/* Feeds @p n bytes to the receiver; the bytes a failed feed refused are held for the next move
 * (the path's hold is empty when this is called, and n is at most a piece). */
static int feed(struct ts_pair *p, enum ts_dir dir, const unsigned char *buf, size_t n)
{
    struct ts_path *path = &p->path[dir];
    int rc = tlsock_feed(ts_pair_receiver(p, dir), buf, n);

    if (rc == 0) {
        path->fed += n;
        path->feeds++;
    } else {
        memcpy(path->hold + path->held, buf, n);
        path->held += n;
    }
    return rc;
}

/* Feeds what a failed feed left held, first; dropped when nobody is left to take it. */
static int feed_held(struct ts_pair *p, enum ts_dir dir)
{
    struct ts_path *path = &p->path[dir];
    struct tlsock_conn *to = ts_pair_receiver(p, dir);
    int rc = 0;

    if (path->held > 0 && to != NULL && !path->eof) {
        rc = tlsock_feed(to, path->hold, path->held);
        if (rc == 0) {
            path->fed += path->held;
            path->feeds++;
        }
    }
    if (rc == 0) {
        path->held = 0;
        rc = end_stream_if_due(p, dir);
    }
    return rc;
}

/* Gives the receiver what the path lets through of @p n stream bytes. */
static int deliver(struct ts_pair *p, enum ts_dir dir, const unsigned char *buf, size_t n)
{
    struct ts_path *path = &p->path[dir];
    struct tlsock_conn *to = ts_pair_receiver(p, dir);
    size_t start = path->sent;
    size_t end = start + n;
    size_t limit = path->truncate ? path->truncate_at : SIZE_MAX;
    /* Without a drop the whole piece is the first part; with one, the parts around it. */
    size_t drop_begin = path->drop_len > 0 ? path->drop_at : SIZE_MAX;
    size_t drop_end = path->drop_len > 0 ? path->drop_at + path->drop_len : SIZE_MAX;
    int rc = 0;

    path->sent = end;
    for (int part = 0; part < 2; part++) {
        size_t a = part == 0 ? start : (drop_end > start ? drop_end : start);
        size_t b = part == 0 ? min_size(end, drop_begin) : end;

        b = min_size(b, limit);
        if (a >= b || to == NULL || path->eof) {
            continue;
        }
        if (rc == 0) {
            rc = feed(p, dir, buf + (a - start), b - a);
        } else {
            /* After a failed feed the rest of the piece waits behind the held bytes. */
            memcpy(path->hold + path->held, buf + (a - start), b - a);
            path->held += b - a;
        }
    }
    if (rc == 0) {
        rc = end_stream_if_due(p, dir);
    }
    return rc;
}

/*
 * Takes one piece (at most the path's chunk) from the sender and then from @p tail once the
 * sender has nothing left, and delivers it; *moved says how much it took.
 */
static int move_piece(struct ts_pair *p, enum ts_dir dir, const unsigned char *tail,
                      size_t tail_len, size_t *tail_off, size_t *moved)
{
    unsigned char buf[TS_PAIR_CHUNK];
    struct tlsock_conn *from = ts_pair_sender(p, dir);
    size_t chunk = chunk_of(&p->path[dir]);
    size_t n = 0;
    int rc = feed_held(p, dir);

    *moved = 0;
    if (rc != 0 || p->direct) {
        return rc;
    }
    if (from != NULL && tlsock_conn_pending_output(from) > 0) {
        rc = tlsock_drain(from, buf, chunk, &n);
    }
    if (rc == 0 && n < chunk && *tail_off < tail_len &&
        (from == NULL || tlsock_conn_pending_output(from) == 0)) {
        size_t k = min_size(chunk - n, tail_len - *tail_off);

        memcpy(buf + n, tail + *tail_off, k);
        *tail_off += k;
        n += k;
    }
    if (rc == 0 && n > 0) {
        rc = deliver(p, dir, buf, n);
    }
    *moved = n;
    return rc;
}

int ts_pair_move_tail(struct ts_pair *p, enum ts_dir dir, const void *tail, size_t tail_len)
{
    struct tlsock_conn *from = ts_pair_sender(p, dir);
    size_t pending = from != NULL ? tlsock_conn_pending_output(from) : 0;
    size_t pieces = (pending + tail_len) / chunk_of(&p->path[dir]) + 1;
    size_t tail_off = 0;
    int rc = 0;

    if (p->direct) {
        return tail_len > 0 ? TS_ESETUP : 0;
    }

    /* Every piece but the last is a full chunk, so the count bounds the loop exactly. */
    for (size_t i = 0; i < pieces && rc == 0; i++) {
        size_t moved = 0;

        rc = move_piece(p, dir, tail, tail_len, &tail_off, &moved);
        if (moved == 0) {
            break;
        }
    }
    if (rc == 0) {
        rc = end_stream_if_due(p, dir);
    }
    if (rc == 0 &&
        ((from != NULL && tlsock_conn_pending_output(from) > 0) || tail_off < tail_len)) {
        rc = TS_EMISMATCH;
    }
    return rc;
}

int ts_pair_move(struct ts_pair *p, enum ts_dir dir)
{
    return ts_pair_move_tail(p, dir, NULL, 0);
}

int ts_pair_pump(struct ts_pair *p)
{
    int rc = ts_pair_move(p, TS_C2S);

    if (rc == 0) {
        rc = ts_pair_move(p, TS_S2C);
    }
    return rc;
}

/* ---- handshake and data ---------------------------------------------------------------------- */

int ts_pair_handshake(struct ts_pair *p)
{
    int crc = TLSOCK_EWANT_READ;
    int src = TLSOCK_EWANT_READ;
    int rounds = rounds_of(p);
    int rc = 0;
    int i;

    for (i = 0; i < rounds && rc == 0 && (is_want(crc) || is_want(src)); i++) {
        size_t before = progress(p);
        int crc_before = crc;
        int src_before = src;

        if (is_want(crc)) {
            crc = tlsock_handshake(p->client);
        }
        if (p->stop_at_failure && failed(crc)) {
            i++;
            break;
        }
        rc = ts_pair_move(p, TS_C2S);
        if (rc == 0 && is_want(src)) {
            src = tlsock_handshake(p->server);
        }
        if (rc == 0 && p->stop_at_failure && failed(src)) {
            i++;
            break;
        }
        if (rc == 0) {
            rc = ts_pair_move(p, TS_S2C);
        }
        /* Steps are deterministic: without new bytes or a new state, the next round is this one
         * again. */
        if (idle_since(p, before) && crc == crc_before && src == src_before) {
            i++;
            break;
        }
    }
    p->rounds = i;
    p->client_rc = crc;
    p->server_rc = src;
    snprintf(p->client_msg, sizeof(p->client_msg), "%s", tlsock_conn_errmsg(p->client));
    snprintf(p->server_msg, sizeof(p->server_msg), "%s", tlsock_conn_errmsg(p->server));
    if (rc == 0) {
        rc = p->stop_at_failure && failed(src) ? src : (crc != 0 ? crc : src);
    }
    return rc;
}

int ts_pair_write(struct ts_pair *p, enum ts_dir dir, const void *buf, size_t len)
{
    int rc = tlsock_write(ts_pair_sender(p, dir), buf, len);

    if (rc == 0) {
        rc = ts_pair_move(p, dir);
    }
    return rc;
}

int ts_pair_read(struct ts_pair *p, enum ts_dir dir, void *buf, size_t len)
{
    struct tlsock_conn *to = ts_pair_receiver(p, dir);
    unsigned char *dst = buf;
    size_t got = 0;
    int rc = 0;

    /* Each pass reads at least one byte, or moves bytes that were waiting (or stops). */
    for (size_t i = 0; i < len + (size_t)rounds_of(p) && rc == 0 && got < len; i++) {
        size_t n = 0;

        rc = tlsock_read(to, dst + got, len - got, &n);
        if (rc == 0 && (n == 0 || n > len - got)) {
            rc = TS_EMISMATCH;
        } else if (rc == 0) {
            got += n;
        } else if (rc == TLSOCK_EWANT_READ) {
            size_t before = progress(p);

            p->path[dir].read_wants++;
            rc = ts_pair_pump(p);
            if (rc == 0 && idle_since(p, before)) {
                rc = TLSOCK_EWANT_READ;
            }
        }
    }
    return rc == 0 && got < len ? TLSOCK_EWANT_READ : rc;
}

/* The receiver of @p t reads what it can: 0 when it wants more (or has all), else its code. */
static int read_available(struct ts_pair *p, struct ts_transfer *t)
{
    struct tlsock_conn *to = ts_pair_receiver(p, t->dir);
    int rc = 0;

    /* Each successful read returns at least one byte. */
    for (size_t r = 0; r <= t->len && rc == 0 && t->got < t->len; r++) {
        size_t left = t->len - t->got;
        size_t cap = t->max_read > 0 && t->max_read < left ? t->max_read : left;
        size_t n = 0;

        rc = tlsock_read(to, t->out + t->got, cap, &n);
        if (rc == 0 && (n == 0 || n > cap)) {
            rc = TS_EMISMATCH;
        } else if (rc == 0) {
            t->got += n;
        } else if (rc == TLSOCK_EWANT_READ) {
            p->path[t->dir].read_wants++;
        }
    }
    return is_want(rc) ? 0 : rc;
}

int ts_pair_run_transfer(struct ts_pair *p, struct ts_transfer *t)
{
    struct tlsock_conn *from = ts_pair_sender(p, t->dir);
    size_t rounds = 16 * t->len + (size_t)rounds_of(p);
    int rc = 0;

    t->written = t->written || t->len == 0;
    for (size_t i = 0; i < rounds && rc == 0 && t->got < t->len; i++) {
        size_t before = progress(p);
        size_t got = t->got;
        bool written = t->written;
        size_t tail_off = 0;
        size_t moved = 0;

        if (!t->written) {
            rc = tlsock_write(from, t->data, t->len);
            t->written = rc == 0;
            if (rc == TLSOCK_EWANT_WRITE) {
                p->path[t->dir].write_wants++;
            }
            rc = is_want(rc) ? 0 : rc;
        }
        if (rc == 0) {
            rc = move_piece(p, t->dir, NULL, 0, &tail_off, &moved);
        }
        if (rc == 0) {
            rc = read_available(p, t);
        }
        if (rc == 0 && idle_since(p, before) && t->got == got && t->written == written) {
            break;
        }
    }
    if (rc == 0 && t->got != t->len) {
        rc = t->written ? TLSOCK_EWANT_READ : TLSOCK_EWANT_WRITE;
    }
    if (rc == 0 && memcmp(t->out, t->data, t->len) != 0) {
        rc = TS_EMISMATCH;
    }
    return rc;
}

int ts_pair_transfer(struct ts_pair *p, enum ts_dir dir, size_t size, unsigned seed)
{
    struct tlsock_conn *from = ts_pair_sender(p, dir);
    unsigned char *data = malloc(size > 0 ? size : 1);
    unsigned char *out = malloc(size > 0 ? size : 1);
    struct ts_transfer t = {.dir = dir, .data = data, .len = size, .out = out};
    int rc = TS_ESETUP;

    if (data == NULL || out == NULL) {
        goto free_bufs;
    }
    ts_fill(data, size, seed);
    rc = 0;
    if (!p->direct) {
        rc = tlsock_write(from, data, size);
        if (rc == 0 && size > 0 && tlsock_conn_pending_output(from) <= size) {
            /* All of it is queued as ciphertext, with record overhead. */
            rc = TS_EMISMATCH;
        }
        t.written = rc == 0;
    }
    if (rc == 0) {
        rc = ts_pair_run_transfer(p, &t);
    }
free_bufs:
    free(data);
    free(out);
    return rc;
}
