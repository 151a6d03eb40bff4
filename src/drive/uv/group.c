/*
 * Servers on several loops (one per thread) that share one listener: tlsock_uv_serve_shared().
 * The first server's loop accepts every client and hands it to the server with the fewest
 * connections, so that clients spread by load, where SO_REUSEPORT spreads them by a hash of
 * their addresses (two long transfers can then share one loop while another has nothing).
 *
 * This is the driver's only state shared across threads. The group's lock guards the list of
 * servers and every server's inbox; only the listening loop picks and gives, the others take
 * from their own inbox and leave. A server's load is its connections (cfg->live, an atomic the
 * server's own loop changes) plus the clients handed to it and not counted there yet.
 *
 * Every server is in a group, a lone one in a group of one, so that a group never has to be
 * made while the listening loop runs.
 */
#include <stdlib.h>

#include "uv_int.h"

struct tlsock__uv_group {
    pthread_mutex_t lock;
    size_t refs;                       /* servers that have not left, under lock */
    size_t count;                      /* servers in servers[], the listener's first */
    size_t capacity;                   /* of servers[] */
    struct tlsock_uv_server **servers; /* those that take clients */
};

int tlsock__uv_group_new(struct tlsock_uv_server *s)
{
    struct tlsock__uv_group *g = calloc(1, sizeof(*g));

    if (g == NULL) {
        return TLSOCK_ENOMEM;
    }
    g->servers = malloc(sizeof(*g->servers));
    if (g->servers == NULL || pthread_mutex_init(&g->lock, NULL) != 0) {
        free(g->servers);
        free(g);
        return TLSOCK_ENOMEM;
    }
    g->servers[0] = s;
    g->count = 1;
    g->capacity = 1;
    g->refs = 1;
    s->group = g;
    return 0;
}

int tlsock__uv_group_join(struct tlsock_uv_server *first, struct tlsock_uv_server *s)
{
    struct tlsock__uv_group *g = first->group;
    int rc = 0;

    /* first is open (the caller checked), so its group is and it leads it. */
    pthread_mutex_lock(&g->lock);
    if (g->count == g->capacity) {
        struct tlsock_uv_server **more = realloc(g->servers, 2 * g->capacity * sizeof(*more));
        if (more == NULL) {
            rc = TLSOCK_ENOMEM;
        } else {
            g->servers = more;
            g->capacity *= 2;
        }
    }
    if (rc == 0) {
        g->servers[g->count++] = s;
        g->refs++;
        s->group = g;
    }
    pthread_mutex_unlock(&g->lock);
    return rc;
}

/* Moves @p s's inbox to @p fds; returns how many. Under the group's lock. */
static size_t move_inbox(struct tlsock_uv_server *s, int *fds)
{
    size_t n = s->inbox.count;

    for (size_t i = 0; i < n; i++) {
        fds[i] = s->inbox.fds[i];
    }
    s->inbox.count = 0;
    return n;
}

size_t tlsock__uv_group_leave(struct tlsock_uv_server *s, int *fds)
{
    struct tlsock__uv_group *g = s->group;
    size_t n;
    bool last;

    pthread_mutex_lock(&g->lock);
    for (size_t i = 0; i < g->count; i++) {
        if (g->servers[i] == s) {
            /* In order: the listener stays first while it is there. */
            for (size_t j = i + 1; j < g->count; j++) {
                g->servers[j - 1] = g->servers[j];
            }
            g->count--;
            break;
        }
    }
    n = move_inbox(s, fds);
    s->inbox.pending = 0;
    last = --g->refs == 0;
    pthread_mutex_unlock(&g->lock);
    s->group = NULL;
    if (last) {
        pthread_mutex_destroy(&g->lock);
        free(g->servers);
        free(g);
    }
    return n;
}

static size_t load_of(const struct tlsock_uv_server *s)
{
    return atomic_load_explicit(&s->cfg->live, memory_order_relaxed) + s->inbox.pending;
}

struct tlsock_uv_server *tlsock__uv_group_pick(struct tlsock_uv_server *listener)
{
    struct tlsock__uv_group *g = listener->group;
    struct tlsock_uv_server *best = listener;

    pthread_mutex_lock(&g->lock);
    if (g->count > 1) {
        size_t best_load = load_of(listener);
        for (size_t i = 0; i < g->count; i++) {
            size_t load = load_of(g->servers[i]);
            if (load < best_load) {
                best = g->servers[i];
                best_load = load;
            }
        }
    }
    pthread_mutex_unlock(&g->lock);
    return best;
}

bool tlsock__uv_group_give(struct tlsock_uv_server *listener, struct tlsock_uv_server *to, int fd)
{
    struct tlsock__uv_group *g = listener->group;
    bool given = false;

    pthread_mutex_lock(&g->lock);
    /* Only a server still in the group may be touched: one that left may be freed already;
     * one that is in has its wake-up handle open (it leaves before closing it). */
    for (size_t i = 0; i < g->count && !given; i++) {
        given = g->servers[i] == to && to->inbox.count < TLSOCK__UV_INBOX_MAX;
    }
    if (given) {
        to->inbox.fds[to->inbox.count++] = fd;
        to->inbox.pending++;
        uv_async_send(&to->wake);
    }
    pthread_mutex_unlock(&g->lock);
    return given;
}

size_t tlsock__uv_group_take(struct tlsock_uv_server *s, int *fds)
{
    struct tlsock__uv_group *g = s->group;
    size_t n;

    pthread_mutex_lock(&g->lock);
    n = move_inbox(s, fds);
    pthread_mutex_unlock(&g->lock);
    return n;
}

void tlsock__uv_group_taken(struct tlsock_uv_server *s, size_t n)
{
    struct tlsock__uv_group *g = s->group;

    if (g == NULL) {
        return; /* it left meanwhile (closed from a callback), which emptied its inbox */
    }
    pthread_mutex_lock(&g->lock);
    s->inbox.pending -= n;
    pthread_mutex_unlock(&g->lock);
}
