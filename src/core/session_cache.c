/*
 * The in-process session store (session_cache.h): a hash table of chained entries, all of them
 * also on one list in order of use, under one mutex. Values are copied in and out, so nothing an
 * entry holds is ever shared with a caller. An entry may also own one native object (a client's
 * parsed session), which only leaves it with the entry (tlsock__scache_take()) or is freed with it;
 * an entry that stays when taken gives a copy.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "session_cache.h"

struct entry {
    struct entry *chain;         /* the next entry of the same bucket */
    struct entry *newer, *older; /* the use order: head is the most recently used */
    int64_t expires_ns;
    size_t key_len, val_len;
    unsigned char *val; /* points into data, after the key */
    void *native;       /* owned: freed with native_free unless taken; NULL: none */
    void (*native_free)(void *native);
    unsigned char data[]; /* key, then value */
};

struct tlsock__scache {
    pthread_mutex_t lock;
    size_t max, count, nbuckets; /* nbuckets: a power of two >= max */
    struct entry **buckets;
    struct entry *head, *tail; /* most and least recently used */
};

/* FNV-1a: keys are session IDs and names, not chosen to collide by anyone who gains from it. */
static size_t bucket_of(const struct tlsock__scache *c, const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = 14695981039346656037ULL;

    for (size_t i = 0; i < len; i++) {
        h = (h ^ p[i]) * 1099511628211ULL;
    }
    return (size_t)(h & (c->nbuckets - 1));
}

struct tlsock__scache *tlsock__scache_new(size_t max)
{
    struct tlsock__scache *c = calloc(1, sizeof(*c));

    if (c == NULL || max == 0) {
        free(c);
        return NULL;
    }
    c->max = max;
    c->nbuckets = 16;
    while (c->nbuckets < max && c->nbuckets < ((size_t)1 << 20)) {
        c->nbuckets <<= 1;
    }
    c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
    if (c->buckets == NULL) {
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

static void entry_free(struct entry *e)
{
    if (e->native != NULL) {
        e->native_free(e->native);
    }
    /* The value is a serialized session: its master secret or resumption secret. */
    explicit_bzero(e->data, e->key_len + e->val_len);
    free(e);
}

void tlsock__scache_free(struct tlsock__scache *c)
{
    if (c == NULL) {
        return;
    }
    struct entry *e = c->head;
    while (e != NULL) {
        struct entry *next = e->older;
        entry_free(e);
        e = next;
    }
    free(c->buckets);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* The entry's slot in its bucket's chain (the pointer that points to it), or NULL. */
static struct entry **find(struct tlsock__scache *c, const void *key, size_t len)
{
    struct entry **slot = &c->buckets[bucket_of(c, key, len)];

    while (*slot != NULL) {
        if ((*slot)->key_len == len && memcmp((*slot)->data, key, len) == 0) {
            return slot;
        }
        slot = &(*slot)->chain;
    }
    return NULL;
}

static void unlink_use(struct tlsock__scache *c, struct entry *e)
{
    if (e->newer != NULL) {
        e->newer->older = e->older;
    } else {
        c->head = e->older;
    }
    if (e->older != NULL) {
        e->older->newer = e->newer;
    } else {
        c->tail = e->newer;
    }
    e->newer = e->older = NULL;
}

static void link_use(struct tlsock__scache *c, struct entry *e)
{
    e->newer = NULL;
    e->older = c->head;
    if (c->head != NULL) {
        c->head->newer = e;
    } else {
        c->tail = e;
    }
    c->head = e;
}

/* Removes the entry @p slot points to. */
static void drop(struct tlsock__scache *c, struct entry **slot)
{
    struct entry *e = *slot;

    *slot = e->chain;
    unlink_use(c, e);
    c->count--;
    entry_free(e);
}

static void drop_entry(struct tlsock__scache *c, struct entry *e)
{
    drop(c, find(c, e->data, e->key_len));
}

/* Makes room for one entry: the expired ones go first, else the least recently used. */
static void make_room(struct tlsock__scache *c, int64_t now)
{
    if (c->count < c->max) {
        return;
    }
    struct entry *e = c->tail;
    while (e != NULL) {
        struct entry *newer = e->newer;
        if (e->expires_ns <= now) {
            drop_entry(c, e);
        }
        e = newer;
    }
    if (c->count >= c->max) {
        drop_entry(c, c->tail);
    }
}

int tlsock__scache_put(struct tlsock__scache *c, const void *key, size_t key_len, const void *val,
                       size_t val_len, int64_t expires_ns)
{
    return tlsock__scache_put_native(c, key, key_len, val, val_len, NULL, NULL, expires_ns);
}

int tlsock__scache_put_native(struct tlsock__scache *c, const void *key, size_t key_len,
                              const void *val, size_t val_len, void *native,
                              void (*native_free)(void *native), int64_t expires_ns)
{
    struct entry *e = malloc(sizeof(*e) + key_len + val_len);

    pthread_mutex_lock(&c->lock);
    struct entry **old = find(c, key, key_len);
    if (old != NULL) {
        drop(c, old);
    }
    if (e == NULL) {
        pthread_mutex_unlock(&c->lock);
        if (native != NULL) {
            native_free(native);
        }
        return tlsock__fail(NULL, TLSOCK_ENOMEM, "out of memory storing a session");
    }
    e->native = native;
    e->native_free = native_free;
    make_room(c, tlsock__now_ns());
    memcpy(e->data, key, key_len);
    e->val = e->data + key_len;
    memcpy(e->val, val, val_len);
    e->key_len = key_len;
    e->val_len = val_len;
    e->expires_ns = expires_ns;
    size_t b = bucket_of(c, key, key_len);
    e->chain = c->buckets[b];
    c->buckets[b] = e;
    link_use(c, e);
    c->count++;
    pthread_mutex_unlock(&c->lock);
    return 0;
}

bool tlsock__scache_get(struct tlsock__scache *c, const void *key, size_t key_len, bool take,
                        unsigned char **val, size_t *val_len)
{
    bool found = false;

    pthread_mutex_lock(&c->lock);
    struct entry **slot = find(c, key, key_len);
    if (slot != NULL && (*slot)->expires_ns <= tlsock__now_ns()) {
        drop(c, slot);
        slot = NULL;
    }
    if (slot != NULL) {
        struct entry *e = *slot;
        *val = malloc(e->val_len > 0 ? e->val_len : 1);
        if (*val != NULL) {
            memcpy(*val, e->val, e->val_len);
            *val_len = e->val_len;
            found = true;
        }
        if (take) {
            drop(c, slot);
        } else {
            unlink_use(c, e);
            link_use(c, e);
        }
    }
    pthread_mutex_unlock(&c->lock);
    return found;
}

bool tlsock__scache_take(struct tlsock__scache *c, const void *key, size_t key_len,
                         const struct tlsock__scache_reuse *reuse, unsigned char **val,
                         size_t *val_len, void **native)
{
    bool found = false;
    bool stays = false;

    *native = NULL;
    pthread_mutex_lock(&c->lock);
    struct entry **slot = find(c, key, key_len);
    if (slot != NULL && (*slot)->expires_ns > tlsock__now_ns()) {
        struct entry *e = *slot;
        *val = malloc(e->val_len > 0 ? e->val_len : 1);
        if (*val != NULL) {
            memcpy(*val, e->val, e->val_len);
            *val_len = e->val_len;
            found = true;
            stays = reuse != NULL && reuse->reusable != NULL && reuse->reusable(e->val, e->val_len);
        }
        if (stays) {
            /* A copy: the object is never shared (a connection changes its session). */
            *native = e->native != NULL && reuse->native_dup != NULL ? reuse->native_dup(e->native)
                                                                     : NULL;
            unlink_use(c, e);
            link_use(c, e);
        } else if (found) {
            /* The entry's reference goes with the value. */
            *native = e->native;
            e->native = NULL;
        }
    }
    if (slot != NULL && !stays) {
        drop(c, slot); /* taken, expired, or no memory to take it with */
    }
    pthread_mutex_unlock(&c->lock);
    return found;
}

void tlsock__scache_remove(struct tlsock__scache *c, const void *key, size_t key_len)
{
    pthread_mutex_lock(&c->lock);
    struct entry **slot = find(c, key, key_len);
    if (slot != NULL) {
        drop(c, slot);
    }
    pthread_mutex_unlock(&c->lock);
}

size_t tlsock__scache_count(struct tlsock__scache *c)
{
    pthread_mutex_lock(&c->lock);
    size_t n = c->count;
    pthread_mutex_unlock(&c->lock);
    return n;
}
