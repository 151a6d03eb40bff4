/*
 * Allocation failure injection: the Nth allocation of an operation fails, for N = 1, 2, 3, ...
 * until the operation runs without reaching an injected failure.
 *
 * What can fail (only in the thread that armed the counter, and only while armed):
 *   - tlsock's own malloc, calloc, realloc, strdup and strndup, and the allocating libc calls it
 *     makes (getaddrinfo: EAI_MEMORY; fopencookie: NULL with ENOMEM). A test executable gets them
 *     by linking the `tlsock_test_alloc_fail` object library, whose link options wrap these
 *     symbols (-Wl,--wrap=...): the static library's calls land here first.
 *   - OpenSSL's allocations, routed here with CRYPTO_set_mem_functions() by ts_alloc_init();
 *   - libuv's, routed with uv_replace_allocator() (when the libuv driver is built); its reallocs
 *     are counted but never failed: libuv grows its array of watched descriptors with realloc
 *     and aborts the process when that fails, by design.
 * GnuTLS's own allocations cannot be failed: it no longer lets an application replace its
 * allocator (gnutls_global_set_mem_functions() has no effect since 3.3). With GnuTLS contexts,
 * tlsock's and the other libraries' allocations still fail around it.
 */
#ifndef TLSOCK_TEST_ALLOC_FAIL_H
#define TLSOCK_TEST_ALLOC_FAIL_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Routes OpenSSL's and libuv's allocators through the counter. Call it first in main(), before
 * anything allocates through them. Returns false (with a message) when it is too late.
 */
bool ts_alloc_init(void);

/* Who made the allocation that failed. */
enum ts_alloc_source {
    TS_ALLOC_NONE,    /* no failure was injected */
    TS_ALLOC_TLSOCK,  /* tlsock (or the test) through libc: tlsock must handle it */
    TS_ALLOC_OPENSSL, /* OpenSSL, inside a call tlsock made */
    TS_ALLOC_UV,      /* libuv, inside a call tlsock made */
};

/* "tlsock", "openssl"... */
const char *ts_alloc_source_name(enum ts_alloc_source source);

/* This thread starts counting its allocations and fails the @p fail_at-th one (0: none). */
void ts_alloc_arm(unsigned long fail_at);

/* This thread stops counting; returns where the failure was injected (TS_ALLOC_NONE: it was not)
 * and, in @p count (may be NULL), how many allocations it counted. */
enum ts_alloc_source ts_alloc_disarm(unsigned long *count);

/* Of the allocations the last armed period counted, how many @p source made (TS_ALLOC_TLSOCK:
 * tlsock's and the test's own, through libc). */
unsigned long ts_alloc_counted(enum ts_alloc_source source);

/*
 * One operation under allocation failure. The hooks run in the test thread and may use cmocka's
 * assertions; only run() is armed.
 */
struct ts_alloc_case {
    const char *name;
    /* Makes what the operation needs (contexts, peers, a connection...), never failed. */
    void (*setup)(void *arg);
    /* The operation; returns 0 or a tlsock code. */
    int (*run)(void *arg);
    /*
     * Checks the outcome: @p source says whose allocation of run() failed (TS_ALLOC_NONE: none
     * did, and run() must have succeeded). With one, run() returns a clean error code, or 0 when
     * the failure was absorbed, and check() proves the objects are intact: usable (the operation
     * done again, without failure, works) or at least closable.
     */
    void (*check)(void *arg, int rc, enum ts_alloc_source source);
    /* Releases what setup() and run() made. */
    void (*teardown)(void *arg);
};

/* What a loop saw, per source of the failed allocation. */
struct ts_alloc_stats {
    unsigned long allocations;  /* counted in the run that reached no injected failure */
    unsigned long runs;         /* with an injected failure */
    unsigned long absorbed[4];  /* of those, runs that still returned 0 */
    unsigned long codes[4][16]; /* and how often each code -1..-15 came back (index -rc) */
};

/*
 * Runs @p c with its 1st, 2nd, 3rd... allocation failed, until a run reaches no injected
 * failure; fails the test after @p max_runs. Prints what it saw (counts per code).
 */
void ts_alloc_loop(const struct ts_alloc_case *c, void *arg, unsigned long max_runs,
                   struct ts_alloc_stats *stats);

#endif /* TLSOCK_TEST_ALLOC_FAIL_H */
