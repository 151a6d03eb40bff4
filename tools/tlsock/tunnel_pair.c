/*
 * The life of a pair (see the diagram in tunnel_pair.h): its phases and its timer, and what
 * happens to both sides when one of them ends, is cut short, fails, or nothing moves.
 *
 * - A clean end (FIN, close_notify) is passed on by tunnel_forward.c; the pair closes once
 *   nothing more can go either way.
 * - A reset or another error on one side aborts the pair: both sides are closed at once, even
 *   if the other one is paused, or has writes pending to a peer that does not read. What was
 *   queued for a plaintext side is dropped and the side is reset, so that its peer sees the
 *   abort (as it would have seen the reset) instead of a clean end. A TLS side is closed by
 *   tlsock_uv_close(), which still sends what is queued, and close_notify, for up to 5 s.
 * - A TLS stream that ends without close_notify (truncated) is logged and passed on as an end:
 *   the other side gets what was queued for it, then its end (DRAINING); what it still sends is
 *   dropped, and it is closed once it ends too, or when nothing could be written to it for
 *   TUNNEL_DRAIN_MS.
 * - --idle-timeout, the draining bound and a stop end the pair from outside its streams
 *   (pair_cut()). A pair still open then nearly always has a stream that has not ended (else
 *   tunnel_pair_check_done() would have closed it), or data queued that will never be sent:
 *   closing it cleanly (close_notify, FIN) would tell the peers that the cut stream is complete,
 *   which close-delimited protocols would believe. So it is aborted, as on a reset; only a pair
 *   whose streams have all ended and been passed on is closed cleanly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"
#include "tunnel_pair.h"

#define TUNNEL_DRAIN_MS 5000 /* as tlsock_uv_close() bounds its flush */

struct tunnel_side *tunnel_other_side(struct tunnel_side *side)
{
    struct tunnel_pair *pair = side->pair;

    return side == &pair->client ? &pair->target : &pair->client;
}

static const char *side_name(struct tunnel_side *side)
{
    struct tunnel_pair *pair = side->pair;

    return side == &pair->client ? "client" : pair->owner->settings->target;
}

void tunnel_pair_log_error(struct tunnel_pair *pair, const char *what, int code, const char *detail)
{
    char where[CLI_PEER_SIZE + CLI_HOST_MAX + 64];

    if (!cli_stats_conn_error(code, detail)) {
        return; /* counted, and said in a later line */
    }
    snprintf(where, sizeof(where), "%s: %s", pair->peer, what);
    cli_error(where, code, detail);
}

struct tunnel_pair *tunnel_pair_new(struct tunnel_loop *tl)
{
    struct tunnel_pair *pair = calloc(1, sizeof(*pair));

    if (pair == NULL) {
        cli_error("refusing a client", TLSOCK_ENOMEM, NULL);
        goto done;
    }
    pair->owner = tl;
    pair->phase = PAIR_CONNECTING;
    pair->client.pair = pair;
    pair->target.pair = pair;
    uv_timer_init(&tl->loop->uv, &pair->timer);
    pair->timer.data = pair;
    pair->refs = 1; /* the timer */
    pair->next = tl->pairs;
    if (tl->pairs != NULL) {
        tl->pairs->prev = pair;
    }
    tl->pairs = pair;
    cli_loop_conn_opened(tl->loop);
done:
    return pair;
}

void tunnel_pair_release(struct tunnel_pair *pair)
{
    struct tunnel_loop *owner = pair->owner;

    pair->refs--;
    if (pair->refs > 0) {
        goto done;
    }
    if (owner->settings->verbose) {
        fprintf(stderr, "tlsock: %s: closed (%llu bytes to %s, %llu bytes back)\n", pair->peer,
                (unsigned long long)pair->client.bytes, owner->settings->target,
                (unsigned long long)pair->target.bytes);
    }
    if (pair->prev != NULL) {
        pair->prev->next = pair->next;
    } else {
        owner->pairs = pair->next;
    }
    if (pair->next != NULL) {
        pair->next->prev = pair->prev;
    }
    tunnel_side_forget(&pair->client);
    tunnel_side_forget(&pair->target);
    uv_freeaddrinfo(pair->addrs);
    cli_loop_conn_closed(owner->loop);
    free(pair);
    if (owner->pairs == NULL) {
        tunnel_chunk_drain(owner);
    }
done:
    return;
}

static void on_timer_closed(uv_handle_t *handle)
{
    tunnel_pair_release(handle->data);
}

/* The bound of the timer in the phase (the plaintext connect is tunnel_connect.c's); 0: none. */
static int phase_limit_ms(const struct tunnel_pair *pair)
{
    int limit = 0;

    if (pair->phase == PAIR_FORWARDING) {
        limit = pair->owner->settings->idle_timeout_ms;
    } else if (pair->phase == PAIR_DRAINING) {
        limit = TUNNEL_DRAIN_MS;
    }
    return limit;
}

static void on_timer(uv_timer_t *timer);
static void pair_cut(struct tunnel_pair *pair);

/* Arms the timer for the rest of the phase's bound, @p since ms of which have passed. */
static void arm_timer(struct tunnel_pair *pair, uint64_t since)
{
    int limit = phase_limit_ms(pair);

    uv_timer_stop(&pair->timer);
    if (limit > 0) {
        uv_timer_start(&pair->timer, on_timer, (uint64_t)limit - since, 0);
    }
}

static void on_timer(uv_timer_t *timer)
{
    struct tunnel_pair *pair = timer->data;
    int limit = phase_limit_ms(pair);
    uint64_t since = uv_now(timer->loop) - pair->last_active;

    if (since < (uint64_t)limit) {
        /* Data moved since the timer was set: wait for the rest of the time. */
        arm_timer(pair, since);
    } else {
        if (pair->owner->settings->verbose && pair->phase == PAIR_FORWARDING) {
            fprintf(stderr, "tlsock: %s: nothing moved for %d ms (--idle-timeout); closing\n",
                    pair->peer, limit);
        } else if (pair->owner->settings->verbose) {
            fprintf(stderr,
                    "tlsock: %s: nothing passed on for %d ms after the truncation; closing\n",
                    pair->peer, limit);
        }
        pair_cut(pair);
    }
}

void tunnel_pair_progress(struct tunnel_pair *pair)
{
    pair->last_active = uv_now(pair->timer.loop);
}

static bool phase_move_allowed(enum pair_phase from, enum pair_phase to)
{
    bool allowed = false;

    switch (to) {
    case PAIR_FORWARDING:
        allowed = from == PAIR_CONNECTING;
        break;
    case PAIR_DRAINING:
        allowed = from == PAIR_FORWARDING;
        break;
    case PAIR_CLOSED:
        allowed = from != PAIR_CLOSED;
        break;
    case PAIR_CONNECTING:
        break;
    }
    return allowed;
}

/*
 * Moves the pair to @p to and sets its timer for it; returns false, and changes nothing, if the
 * pair cannot go there from where it is (closing a pair that is closed already, for example).
 */
static bool pair_enter(struct tunnel_pair *pair, enum pair_phase to)
{
    bool allowed = phase_move_allowed(pair->phase, to);

    if (allowed) {
        pair->phase = to;
        if (to == PAIR_CLOSED) {
            if (pair->resolving) {
                uv_cancel((uv_req_t *)&pair->resolve_req);
            }
            uv_timer_stop(&pair->timer);
            uv_close((uv_handle_t *)&pair->timer, on_timer_closed);
        } else {
            tunnel_pair_progress(pair);
            arm_timer(pair, 0);
        }
    }
    return allowed;
}

/* Closes both sides; with @p reset, plaintext ones are reset (an abort). */
static void pair_close(struct tunnel_pair *pair, bool reset)
{
    if (pair_enter(pair, PAIR_CLOSED)) {
        tunnel_side_close(&pair->client, reset);
        tunnel_side_close(&pair->target, reset);
    }
}

void tunnel_pair_finish(struct tunnel_pair *pair)
{
    pair_close(pair, false);
}

void tunnel_pair_forward(struct tunnel_pair *pair)
{
    if (pair_enter(pair, PAIR_FORWARDING)) {
        if (pair->owner->settings->verbose) {
            fprintf(stderr, "tlsock: %s: connected to %s\n", pair->peer,
                    pair->owner->settings->target);
        }
        tunnel_forward_start(&pair->client);
        tunnel_forward_start(&pair->target);
    }
}

void tunnel_pair_failed(struct tunnel_side *side, int code, const char *detail)
{
    struct tunnel_pair *pair = side->pair;

    if (pair->phase != PAIR_CLOSED) {
        tunnel_pair_log_error(pair, side_name(side), code, detail);
        /* Not waiting for the other side to take its queue: its peer may never read it. */
        pair_close(pair, true);
    }
}

void tunnel_pair_truncated(struct tunnel_side *side, int code, const char *detail)
{
    struct tunnel_pair *pair = side->pair;

    if (pair_enter(pair, PAIR_DRAINING)) {
        tunnel_pair_log_error(pair, side_name(side), code, detail);
        tunnel_forward_drain(side);
        tunnel_side_close(side, false);
        tunnel_pair_check_done(pair);
    } else {
        /* Not forwarding (the other side is gone already): the end of the pair. */
        tunnel_pair_failed(side, code, detail);
    }
}

/*
 * Nothing more will go either way through @p side: it is closing, or its output has ended and
 * so has its input. A TLS side whose input is only being dropped counts as done: closing it
 * sends what is queued, and reads and drops what its peer still sends until that ends.
 */
static bool side_done(const struct tunnel_side *side)
{
    bool done = side->closing;

    if (!done && side->output == OUTPUT_ENDED) {
        done = side->input == INPUT_ENDED || (side->tls && side->input == INPUT_DROPPING);
    }
    return done;
}

/* Every stream through @p pair has ended and been passed on. */
static bool pair_ended(const struct tunnel_pair *pair)
{
    return pair->phase != PAIR_CONNECTING && side_done(&pair->client) && side_done(&pair->target);
}

void tunnel_pair_check_done(struct tunnel_pair *pair)
{
    if (pair_ended(pair)) {
        tunnel_pair_finish(pair);
    }
}

/*
 * Ends the pair from outside its streams (a timer, a stop): cleanly only if every stream has
 * ended and been passed on (pair_ended()); else a stream is cut, and both sides are aborted (TCP
 * RST, tlsock_uv_abort()), so that neither peer takes what it got for the whole stream.
 */
static void pair_cut(struct tunnel_pair *pair)
{
    bool ended = pair_ended(pair);

    if (!ended && pair->phase != PAIR_CLOSED && pair->owner->settings->verbose) {
        fprintf(stderr, "tlsock: %s: a stream is cut short: resetting both sides\n", pair->peer);
    }
    pair_close(pair, !ended);
}

void tunnel_close_all(struct cli_loop *loop)
{
    struct tunnel_loop *tl = loop->user;

    /* Close callbacks come later, from the loop: the list stays as it is here. */
    for (struct tunnel_pair *pair = tl->pairs; pair != NULL; pair = pair->next) {
        pair_cut(pair);
    }
}
