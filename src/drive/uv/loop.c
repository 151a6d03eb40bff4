/*
 * What the connections and servers of one loop share, so that a connection holds no handle of
 * its own but its socket:
 *   - one uv_timer_t armed for the nearest deadline of all the loop's connections, which sit in
 *     a binary min-heap on their due time (conn->due, conn->heap_idx);
 *   - one uv_idle_t that runs the pump of every kicked connection on the loop's next turn (work
 *     an API call may not do itself, since no callback may run inside it); an active idle handle
 *     keeps the loop from blocking in its poll while work is kicked, also work kicked by the
 *     kicked work itself (a prepare handle would let the poll block on it);
 *   - the read buffer, lent to libuv for one read at a time: TLS decrypts in place, and a
 *     connection keeps only the part of a record that has not fully arrived;
 *   - one uv_async_t (unreferenced: it never keeps the loop alive) and a locked queue of the
 *     session-store gets whose done came, from whatever thread: the loop kicks their
 *     connections, whose handshake then goes on (core/store.c).
 *
 * loop->data is the application's, so the state is found in a small registry keyed by the
 * uv_loop_t pointer. It is counted by its connections and servers; after the last one, its three
 * handles close and, from their close callbacks, the memory goes: a loop with nothing of tlsock
 * on it has no handle of tlsock's, and uv_loop_close() succeeds once the loop ran them.
 */
#include <pthread.h>
#include <stdlib.h>

#include "uv_int.h"

enum {
    READ_HEADROOM = 20 * 1024, /* in front of the read buffer: room for a partial record left by
                                  the last read (TLS 1.2 allows 16 KiB + 2 KiB + 5) */
    HEAP_MIN = 16,
};

/* A get's done that came for a connection of the loop; holds a reference on the look-up. */
struct tlsock__uv_answer {
    struct tlsock__uv_answer *next;
    struct tlsock__lookup *lookup;
    struct tlsock_uv_conn *conn; /* touched only while the look-up is not abandoned */
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tlsock__uv_loop *registry;

/* ---- the registry ---------------------------------------------------------------------------- */

static void timer_cb(uv_timer_t *timer);
static void idle_cb(uv_idle_t *idle);
static void async_cb(uv_async_t *async);
static struct tlsock__uv_answer *answers_take(struct tlsock__uv_loop *lp);
static void answers_drop(struct tlsock__uv_answer *a);

struct tlsock__uv_loop *tlsock__uv_loop_ref(uv_loop_t *loop, const struct tlsock__uv_hooks *hooks)
{
    struct tlsock__uv_loop *lp = NULL;

    pthread_mutex_lock(&registry_lock);
    for (lp = registry; lp != NULL && lp->loop != loop; lp = lp->next) {
    }
    if (lp == NULL) {
        lp = calloc(1, sizeof(*lp));
        /* The async handle can fail (its descriptor): then nothing was made. */
        if (lp != NULL && uv_async_init(loop, &lp->async, async_cb) != 0) {
            free(lp);
            lp = NULL;
        }
        if (lp != NULL) {
            lp->loop = loop;
            lp->hooks = hooks;
            lp->timer_due = UINT64_MAX;
            /* Neither can fail. */
            uv_timer_init(loop, &lp->timer);
            uv_idle_init(loop, &lp->idle);
            uv_unref((uv_handle_t *)&lp->async);
            pthread_mutex_init(&lp->answers_lock, NULL);
            lp->timer.data = lp;
            lp->idle.data = lp;
            lp->async.data = lp;
            lp->open_handles = 3;
            lp->next = registry;
            registry = lp;
        }
    }
    if (lp != NULL) {
        lp->users++;
    }
    pthread_mutex_unlock(&registry_lock);
    return lp;
}

static void spares_free(struct tlsock__uv_loop *lp)
{
    for (int k = 0; k < TLSOCK__UV_SPARE_KINDS; k++) {
        while (lp->spare[k] != NULL) {
            void *next = *(void **)lp->spare[k];
            free(lp->spare[k]);
            lp->spare[k] = next;
        }
        lp->nspare[k] = 0;
    }
}

static void handle_closed(uv_handle_t *handle)
{
    struct tlsock__uv_loop *lp = handle->data;

    if (--lp->open_handles == 0) {
        spares_free(lp);
        pthread_mutex_destroy(&lp->answers_lock);
        free(lp->heap);
        free(lp->rbuf);
        free(lp);
    }
}

void tlsock__uv_loop_unref(struct tlsock__uv_loop *lp)
{
    struct tlsock__uv_loop **pp = NULL;

    if (--lp->users > 0) {
        return;
    }
    /* Out of the registry now: a connection made on the loop from here on starts afresh. */
    pthread_mutex_lock(&registry_lock);
    for (pp = &registry; *pp != lp; pp = &(*pp)->next) {
    }
    *pp = lp->next;
    pthread_mutex_unlock(&registry_lock);
    /* Every connection is gone, so every look-up was abandoned: no done queues any more. */
    answers_drop(answers_take(lp));
    uv_close((uv_handle_t *)&lp->timer, handle_closed);
    uv_close((uv_handle_t *)&lp->idle, handle_closed);
    uv_close((uv_handle_t *)&lp->async, handle_closed);
}

/* ---- session-store answers, from any thread ---------------------------------------------------
 */

/*
 * The core's notify (core/core.h), in the thread of the store's done, under the look-up's lock,
 * and only while the connection has not abandoned the look-up: the connection, and so its loop
 * state, are alive (a connection abandons its look-up before it lets go of the loop). Without
 * memory for the answer the get's bound gives the handshake a full one.
 */
static bool store_answered(void *arg, struct tlsock__lookup *lookup)
{
    struct tlsock_uv_conn *c = arg;
    struct tlsock__uv_loop *lp = c->lp;
    struct tlsock__uv_answer *a = malloc(sizeof(*a));

    if (a == NULL) {
        /* Not queued: the core keeps the reference (unref here would take the look-up's lock,
         * which the core holds), and the bound gives the connection a full handshake. */
        return false;
    }
    a->lookup = lookup;
    a->conn = c;
    pthread_mutex_lock(&lp->answers_lock);
    a->next = lp->answers;
    lp->answers = a;
    pthread_mutex_unlock(&lp->answers_lock);
    uv_async_send(&lp->async);
    return true;
}

void tlsock__uv_watch_store(struct tlsock_uv_conn *c)
{
    tlsock__conn_set_store_notify(c->tls, store_answered, c);
}

static struct tlsock__uv_answer *answers_take(struct tlsock__uv_loop *lp)
{
    pthread_mutex_lock(&lp->answers_lock);
    struct tlsock__uv_answer *a = lp->answers;
    lp->answers = NULL;
    pthread_mutex_unlock(&lp->answers_lock);
    return a;
}

static void answers_drop(struct tlsock__uv_answer *a)
{
    while (a != NULL) {
        struct tlsock__uv_answer *next = a->next;
        tlsock__lookup_unref(a->lookup);
        free(a);
        a = next;
    }
}

/*
 * The loop's side: each answer's connection runs its pump from the kick list, unless it gave up
 * on the get (its bound passed) or ended, which abandoned the look-up on this thread. The
 * look-up's lock is taken only here, outside answers_lock (the notify holds them the other way).
 */
static void async_cb(uv_async_t *async)
{
    struct tlsock__uv_loop *lp = async->data;
    struct tlsock__uv_answer *a = answers_take(lp);

    for (struct tlsock__uv_answer *i = a; i != NULL; i = i->next) {
        if (!tlsock__lookup_abandoned(i->lookup) && !tlsock__uv_ended(i->conn)) {
            tlsock__uv_kick(i->conn);
        }
    }
    answers_drop(a);
}

/* ---- kicked connections: a FIFO through kick_prev/kick_next ---------------------------------- */

static void kick_unlink(struct tlsock__uv_loop *lp, struct tlsock_uv_conn *c)
{
    if (c->kick_prev != NULL) {
        c->kick_prev->kick_next = c->kick_next;
    } else {
        lp->kicked = c->kick_next;
    }
    if (c->kick_next != NULL) {
        c->kick_next->kick_prev = c->kick_prev;
    } else {
        lp->kick_tail = c->kick_prev;
    }
    c->kick_prev = NULL;
    c->kick_next = NULL;
    c->kicked = false;
    lp->nkicked--;
}

void tlsock__uv_kick(struct tlsock_uv_conn *c)
{
    struct tlsock__uv_loop *lp = c->lp;

    if (c->kicked) {
        return;
    }
    c->kicked = true;
    c->kick_next = NULL;
    c->kick_prev = lp->kick_tail;
    if (lp->kick_tail != NULL) {
        lp->kick_tail->kick_next = c;
    } else {
        lp->kicked = c;
    }
    lp->kick_tail = c;
    lp->nkicked++;
    if (!uv_is_active((uv_handle_t *)&lp->idle)) {
        uv_idle_start(&lp->idle, idle_cb);
    }
}

/*
 * Runs the connections kicked before this turn; those a run kicks (its own or others) wait for
 * the next turn, which comes without blocking since the idle handle stays active. A run may take
 * others off the list, never free them: memory goes only from close callbacks.
 */
static void idle_cb(uv_idle_t *idle)
{
    struct tlsock__uv_loop *lp = idle->data;
    size_t n = lp->nkicked;

    while (n-- > 0 && lp->kicked != NULL) {
        struct tlsock_uv_conn *c = lp->kicked;
        kick_unlink(lp, c);
        lp->hooks->run(c);
    }
    if (lp->kicked == NULL && lp->users > 0) {
        uv_idle_stop(idle);
    }
}

/* ---- the deadline heap ----------------------------------------------------------------------- */

static void heap_place(struct tlsock__uv_loop *lp, uint32_t i, struct tlsock_uv_conn *c)
{
    lp->heap[i] = c;
    c->heap_idx = i;
}

static void sift_up(struct tlsock__uv_loop *lp, uint32_t i)
{
    struct tlsock_uv_conn *c = lp->heap[i];

    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (lp->heap[parent]->due <= c->due) {
            break;
        }
        heap_place(lp, i, lp->heap[parent]);
        i = parent;
    }
    heap_place(lp, i, c);
}

static void sift_down(struct tlsock__uv_loop *lp, uint32_t i)
{
    struct tlsock_uv_conn *c = lp->heap[i];

    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= lp->heap_len) {
            break;
        }
        if (child + 1 < lp->heap_len && lp->heap[child + 1]->due < lp->heap[child]->due) {
            child++;
        }
        if (c->due <= lp->heap[child]->due) {
            break;
        }
        heap_place(lp, i, lp->heap[child]);
        i = child;
    }
    heap_place(lp, i, c);
}

static void heap_remove(struct tlsock__uv_loop *lp, struct tlsock_uv_conn *c)
{
    uint32_t i = c->heap_idx;
    struct tlsock_uv_conn *last = lp->heap[--lp->heap_len];

    c->heap_idx = UINT32_MAX;
    if (last != c) {
        heap_place(lp, i, last);
        sift_down(lp, i);
        sift_up(lp, last->heap_idx);
    }
    /* The heap gives memory back as the loop's connections go. */
    if (lp->heap_cap > HEAP_MIN && lp->heap_len < lp->heap_cap / 4) {
        struct tlsock_uv_conn **smaller = realloc(lp->heap, lp->heap_cap / 2 * sizeof(*smaller));
        if (smaller != NULL) {
            lp->heap = smaller;
            lp->heap_cap /= 2;
        }
    }
}

static bool heap_insert(struct tlsock__uv_loop *lp, struct tlsock_uv_conn *c)
{
    if (lp->heap_len == lp->heap_cap) {
        uint32_t cap = lp->heap_cap > 0 ? lp->heap_cap * 2 : HEAP_MIN;
        struct tlsock_uv_conn **grown = realloc(lp->heap, cap * sizeof(*grown));
        if (grown == NULL) {
            return false;
        }
        lp->heap = grown;
        lp->heap_cap = cap;
    }
    heap_place(lp, lp->heap_len++, c);
    sift_up(lp, c->heap_idx);
    return true;
}

/* The timer follows the heap's first deadline. */
static void rearm(struct tlsock__uv_loop *lp)
{
    uint64_t due = lp->heap_len > 0 ? lp->heap[0]->due : UINT64_MAX;
    uint64_t now = 0;

    if (due == lp->timer_due) {
        return;
    }
    lp->timer_due = due;
    if (due == UINT64_MAX) {
        uv_timer_stop(&lp->timer);
        return;
    }
    now = uv_now(lp->loop);
    uv_timer_start(&lp->timer, timer_cb, due > now ? due - now : 0, 0);
}

void tlsock__uv_heap_set(struct tlsock_uv_conn *c, uint64_t due)
{
    struct tlsock__uv_loop *lp = c->lp;

    if (due == UINT64_MAX) {
        if (c->heap_idx != UINT32_MAX) {
            heap_remove(lp, c);
        }
    } else if (c->heap_idx != UINT32_MAX) {
        c->due = due;
        sift_down(lp, c->heap_idx);
        sift_up(lp, c->heap_idx);
    } else {
        c->due = due;
        if (!heap_insert(lp, c)) {
            /* Without memory for the heap the deadline cannot be kept: the nearest other one,
             * or the next kick, tries again. */
            tlsock__uv_kick(c);
        }
    }
    rearm(lp);
}

/*
 * Every connection whose deadline came runs its expiry, which puts it back with its next
 * deadline (later than now) or none. Each connection runs at most once per firing.
 */
static void timer_cb(uv_timer_t *timer)
{
    struct tlsock__uv_loop *lp = timer->data;
    uint64_t now = uv_now(lp->loop);
    uint32_t budget = lp->heap_len;

    lp->timer_due = UINT64_MAX;
    while (budget-- > 0 && lp->heap_len > 0 && lp->heap[0]->due <= now) {
        struct tlsock_uv_conn *c = lp->heap[0];
        heap_remove(lp, c);
        lp->hooks->expire(c);
    }
    rearm(lp);
}

void tlsock__uv_loop_forget(struct tlsock_uv_conn *c)
{
    struct tlsock__uv_loop *lp = c->lp;

    if (c->kicked) {
        kick_unlink(lp, c);
    }
    if (c->heap_idx != UINT32_MAX) {
        heap_remove(lp, c);
        rearm(lp);
    }
}

/* ---- the read buffer ------------------------------------------------------------------------- */

void tlsock__uv_read_alloc(struct tlsock__uv_loop *lp, uv_buf_t *buf)
{
    char *p = NULL;

    if (lp->rbuf == NULL) {
        lp->rbuf = malloc(READ_HEADROOM + TLSOCK__UV_READ_SIZE);
    }
    if (lp->rbuf != NULL && !lp->rbuf_lent) {
        lp->rbuf_lent = true;
        *buf = uv_buf_init((char *)lp->rbuf + READ_HEADROOM, TLSOCK__UV_READ_SIZE);
        return;
    }
    /* Only a loop run from within a read callback gets here (or no memory for the buffer). */
    p = malloc(TLSOCK__UV_READ_SIZE);
    *buf = uv_buf_init(p, p != NULL ? TLSOCK__UV_READ_SIZE : 0);
}

bool tlsock__uv_read_is_loops(const struct tlsock__uv_loop *lp, const uv_buf_t *buf)
{
    return lp->rbuf != NULL && buf->base == (char *)lp->rbuf + READ_HEADROOM;
}

size_t tlsock__uv_read_headroom(void)
{
    return READ_HEADROOM;
}

void tlsock__uv_read_release(struct tlsock__uv_loop *lp, const uv_buf_t *buf)
{
    if (buf->base == NULL) {
        return;
    }
    if (tlsock__uv_read_is_loops(lp, buf)) {
        lp->rbuf_lent = false;
    } else {
        free(buf->base);
    }
}

/* ---- spares ---------------------------------------------------------------------------------- */

static const size_t spare_size[TLSOCK__UV_SPARE_KINDS] = {TLSOCK__UV_BLOCK, TLSOCK__UV_SMALL};
static const uint32_t spare_max[TLSOCK__UV_SPARE_KINDS] = {TLSOCK__UV_SPARE_BLOCKS,
                                                           TLSOCK__UV_SPARE_SMALL};

void *tlsock__uv_spare_get(struct tlsock__uv_loop *lp, enum tlsock__uv_spare_kind kind)
{
    void *p = lp->spare[kind];

    if (p != NULL) {
        lp->spare[kind] = *(void **)p;
        lp->nspare[kind]--;
        return p;
    }
    return malloc(spare_size[kind]);
}

void tlsock__uv_spare_put(struct tlsock__uv_loop *lp, enum tlsock__uv_spare_kind kind, void *p)
{
    if (p == NULL) {
        return;
    }
    if (lp->busy == 0 || lp->nspare[kind] >= spare_max[kind]) {
        free(p);
        return;
    }
    *(void **)p = lp->spare[kind];
    lp->spare[kind] = p;
    lp->nspare[kind]++;
}

void tlsock__uv_storage_put(struct tlsock__uv_loop *lp, void *data, size_t cap)
{
    if (cap == TLSOCK__UV_BLOCK) {
        tlsock__uv_spare_put(lp, TLSOCK__UV_SPARE_BLOCK, data);
    } else {
        free(data);
    }
}

void tlsock__uv_loop_busy(struct tlsock__uv_loop *lp, bool busy)
{
    if (busy) {
        lp->busy++;
    } else if (--lp->busy == 0) {
        spares_free(lp);
    }
}
