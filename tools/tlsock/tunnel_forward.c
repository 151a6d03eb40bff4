/*
 * Forwarding within a pair, the same routine for both directions: what is read from one side is
 * written to the other.
 *
 * - Backpressure: a side stops being read (INPUT_PAUSED) while the other side holds more than
 *   TUNNEL_QUEUE_HIGH bytes, and is read again once that is below TUNNEL_QUEUE_LOW, so that TCP
 *   slows its peer down instead of the tunnel buffering. What a side holds is counted in memory
 *   pinned, not in payload (side_held()): every write holds a whole chunk until it completes,
 *   and a peer that sends tiny pieces (1-byte records, small segments, one per loop turn) while
 *   the other side does not read would otherwise pin a 64 KiB chunk per byte counted, about
 *   16 GiB before the 256 KiB of payload. So each direction of a pair holds at most
 *   TUNNEL_QUEUE_HIGH / TUNNEL_CHUNK_SIZE + 1 chunks (320 KiB) waiting for its receiver, plus
 *   what one read event wrote and the kernel took (given back at the next loop turn), plus a
 *   TLS side's gathering chunk.
 * - Half-close: the clean end of one side's stream (TCP FIN, or TLS close_notify) is passed on
 *   as the end of the other side's output (shutdown(SHUT_WR) after the queued data, or
 *   tlsock_uv_shutdown(): close_notify and a FIN), and the other direction goes on until it
 *   ends too; tunnel_pair.c then closes the pair.
 * - Draining: once one side's stream is cut short (TLS without close_notify), the other side
 *   gets what is queued for it and then its end, and what it still sends is read and dropped:
 *   its peer is never left blocked writing to a tunnel that no longer reads.
 */
#include "stats.h"
#include "tunnel_pair.h"

static bool input_move_allowed(enum side_input from, enum side_input to)
{
    bool allowed = false;

    switch (to) {
    case INPUT_READING:
        allowed = from == INPUT_WAITING || from == INPUT_PAUSED;
        break;
    case INPUT_PAUSED:
        allowed = from == INPUT_READING;
        break;
    case INPUT_DROPPING:
        allowed = from != INPUT_DROPPING && from != INPUT_ENDED;
        break;
    case INPUT_ENDED:
        allowed = from != INPUT_ENDED;
        break;
    case INPUT_WAITING:
        break;
    }
    return allowed;
}

static bool input_is_read(enum side_input input)
{
    return input == INPUT_READING || input == INPUT_DROPPING;
}

/*
 * Moves @p side's input to @p to, and starts or stops reading the side to match. A move that
 * is not allowed from where the input is changes nothing (resuming a side that has ended since
 * it was paused, for example).
 */
static void set_input(struct tunnel_side *side, enum side_input to)
{
    bool was_read = input_is_read(side->input);

    if (input_move_allowed(side->input, to)) {
        side->input = to;
        if (input_is_read(to) != was_read) {
            tunnel_side_set_reading(side, input_is_read(to));
        }
    }
}

void tunnel_forward_start(struct tunnel_side *side)
{
    set_input(side, INPUT_READING);
}

/*
 * What @p to holds for backpressure: the bytes waiting for the kernel (the payload, and for a
 * TLS side its write records and ciphertext), but at least a whole chunk per write in flight,
 * the memory those writes really keep. Once nothing waits for the kernel (the receiver keeps
 * up) it is nothing: the chunks in flight are given back at the next loop turn, and a bulk
 * stream goes on without pausing; they count only once the receiver falls behind.
 */
static size_t side_held(const struct tunnel_side *to)
{
    size_t queued = tunnel_side_queue(to);
    size_t pinned = to->writing * TUNNEL_CHUNK_SIZE;

    if (queued == 0) {
        return 0;
    }
    return pinned > queued ? pinned : queued;
}

void tunnel_forward_data(struct tunnel_side *from, struct tunnel_chunk *chunk)
{
    struct tunnel_side *to = tunnel_other_side(from);
    size_t len = chunk->len;

    if (from->input == INPUT_DROPPING || from->closing || to->closing ||
        to->output != OUTPUT_OPEN) {
        /* Draining, or nowhere to go. */
        tunnel_chunk_put(from->pair->owner, chunk);
    } else {
        from->bytes += len;
        /* In: from the client to the target; out: back. */
        cli_stats_bytes(from == &from->pair->client, len);
        tunnel_pair_progress(from->pair);
        /* Back down in tunnel_forward_written(). A write that fails, now or later, or is
         * cancelled, closes the pair: nothing more is forwarded to @p to, and the count no
         * longer matters. */
        to->writing++;
        if (tunnel_side_write(to, chunk) != 0) {
            to->writing--;
        } else if (side_held(to) > TUNNEL_QUEUE_HIGH) {
            /* The receiver is slower than the sender: let TCP slow the sender down. */
            set_input(from, INPUT_PAUSED);
        }
    }
}

void tunnel_forward_written(struct tunnel_side *to)
{
    struct tunnel_side *from = tunnel_other_side(to);

    to->writing--; /* counted in tunnel_forward_data(), which made every write */
    tunnel_pair_progress(to->pair);
    if (from->input == INPUT_PAUSED && side_held(to) <= TUNNEL_QUEUE_LOW) {
        set_input(from, INPUT_READING);
    }
}

void tunnel_forward_ended(struct tunnel_side *side)
{
    set_input(side, INPUT_ENDED);
    if (side->pair->phase == PAIR_FORWARDING) {
        tunnel_side_end_output(tunnel_other_side(side));
    }
    tunnel_pair_check_done(side->pair);
}

void tunnel_forward_drain(struct tunnel_side *gone)
{
    struct tunnel_side *other = tunnel_other_side(gone);

    set_input(gone, INPUT_ENDED);
    set_input(other, INPUT_DROPPING);
    tunnel_side_end_output(other);
}
