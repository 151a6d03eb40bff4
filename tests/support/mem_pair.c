/* Memory-mode pairs; see mem_pair.h. */
#include "mem_pair.h"

#include <string.h>

static bool is_want(int rc)
{
    return rc == TLSOCK_EWANT_READ || rc == TLSOCK_EWANT_WRITE;
}

/* At most @p room bytes, and at most the wire's chunk. */
static size_t piece(const struct ts_wire *w, size_t room)
{
    return w->chunk > 0 && w->chunk < room ? w->chunk : room;
}

int ts_wire_move(struct ts_wire *w, struct tlsock_conn *from, struct tlsock_conn *to)
{
    /* Each round drains or feeds at least one byte, or ends: the sum bounds it. */
    size_t rounds = 2 * (tlsock_conn_pending_output(from) + w->len) + 2;

    for (size_t i = 0; i < rounds; i++) {
        size_t n = 0;
        int rc = 0;

        if (w->len < sizeof(w->buf)) {
            rc = tlsock_drain(from, w->buf + w->len, piece(w, sizeof(w->buf) - w->len), &n);
            if (rc != 0) {
                return rc;
            }
            w->len += n;
        }
        if (w->len == 0) {
            return 0;
        }
        n = piece(w, w->len);
        rc = tlsock_feed(to, w->buf, n);
        if (rc != 0) {
            return rc;
        }
        memmove(w->buf, w->buf + n, w->len - n);
        w->len -= n;
    }
    return w->len == 0 && tlsock_conn_pending_output(from) == 0 ? 0 : TS_EMISMATCH;
}

void ts_mem_pair_init(struct ts_mem_pair *p, size_t chunk)
{
    memset(p, 0, sizeof(*p));
    p->c2s.chunk = chunk;
    p->s2c.chunk = chunk;
}

void ts_mem_pair_close(struct ts_mem_pair *p)
{
    bool direct = p->direct;

    tlsock_close(p->client);
    tlsock_close(p->server);
    ts_mem_pair_init(p, p->c2s.chunk);
    p->direct = direct;
}

/* One side's handshake step; a WANT is no failure. */
static int step(struct tlsock_conn *conn, bool *done)
{
    int rc = 0;

    if (!*done) {
        rc = tlsock_handshake(conn);
        *done = rc == 0;
    }
    return is_want(rc) ? 0 : rc;
}

int ts_mem_pair_handshake(struct ts_mem_pair *p, int rounds)
{
    int rc = 0;

    for (int i = 0; i < rounds && rc == 0 && !(p->client_done && p->server_done); i++) {
        rc = step(p->client, &p->client_done);
        if (rc == 0 && !p->direct) {
            rc = ts_wire_move(&p->c2s, p->client, p->server);
        }
        if (rc == 0) {
            rc = step(p->server, &p->server_done);
        }
        if (rc == 0 && !p->direct) {
            rc = ts_wire_move(&p->s2c, p->server, p->client);
        }
    }
    if (rc == 0 && !(p->client_done && p->server_done)) {
        rc = TLSOCK_EWANT_READ;
    }
    return rc;
}

int ts_mem_pair_transfer(struct ts_mem_pair *p, struct ts_transfer *t)
{
    struct tlsock_conn *from = t->from_client ? p->client : p->server;
    struct tlsock_conn *to = t->from_client ? p->server : p->client;
    struct ts_wire *w = t->from_client ? &p->c2s : &p->s2c;
    int rc = 0;

    t->written = t->written || t->len == 0;
    /* While data flows, every round or every few (callbacks that say "not now" a few times before
     * each move) writes, moves or reads at least one byte. */
    for (size_t round = 0; round < 16 * t->len + 64 && rc == 0 && t->got < t->len; round++) {
        int rrc = 0;

        if (!t->written) {
            rc = tlsock_write(from, t->data, t->len);
            t->written = rc == 0;
            rc = is_want(rc) ? 0 : rc;
        }
        if (rc == 0 && !p->direct) {
            rc = ts_wire_move(w, from, to);
        }
        for (size_t r = 0; r <= t->len && rc == 0 && rrc == 0 && t->got < t->len; r++) {
            size_t left = t->len - t->got;
            size_t cap = t->max_read > 0 && t->max_read < left ? t->max_read : left;
            size_t n = 0;

            rrc = tlsock_read(to, t->out + t->got, cap, &n);
            if (rrc == 0) {
                t->got += n;
            } else if (!is_want(rrc)) {
                rc = rrc;
            }
        }
    }
    if (rc == 0 && t->got != t->len) {
        rc = TLSOCK_EWANT_READ;
    }
    if (rc == 0 && memcmp(t->out, t->data, t->len) != 0) {
        rc = TS_EMISMATCH;
    }
    return rc;
}
