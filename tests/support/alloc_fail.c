/* Allocation failure injection; see alloc_fail.h. */
#include "alloc_fail.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "support.h"

#if TS_HAVE_OPENSSL
#include <openssl/crypto.h>
#endif
#if TS_HAVE_UV
#include <uv.h>
#endif

/* The counter is per thread: a peer thread (a test's server) never sees a failure. */
static _Thread_local struct {
    bool armed;
    enum ts_alloc_source injected; /* where the failure was injected, NONE until then */
    unsigned long seen;
    unsigned long fail_at;
    unsigned long by_source[4]; /* seen, per enum ts_alloc_source */
} counter;

/* Counts one allocation of an armed thread, made by @p source; true when it is to fail. */
static bool fail_from(enum ts_alloc_source source)
{
    if (!counter.armed) {
        return false;
    }
    counter.seen++;
    counter.by_source[source]++;
    if (counter.seen != counter.fail_at) {
        return false;
    }
    counter.injected = source;
    return true;
}

static bool fail_now(void)
{
    return fail_from(TS_ALLOC_TLSOCK);
}

void ts_alloc_arm(unsigned long fail_at)
{
    counter.armed = true;
    counter.injected = TS_ALLOC_NONE;
    counter.seen = 0;
    counter.fail_at = fail_at;
    memset(counter.by_source, 0, sizeof(counter.by_source));
}

unsigned long ts_alloc_counted(enum ts_alloc_source source)
{
    return counter.by_source[source];
}

enum ts_alloc_source ts_alloc_disarm(unsigned long *count)
{
    counter.armed = false;
    if (count != NULL) {
        *count = counter.seen;
    }
    return counter.injected;
}

/* ---- the wrapped symbols (-Wl,--wrap=NAME sends the linked objects' calls to __wrap_NAME) ---- */

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *ptr, size_t size);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
int __real_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res);
FILE *__real_fopencookie(void *cookie, const char *mode, cookie_io_functions_t functions);

void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *ptr, size_t size);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res);
FILE *__wrap_fopencookie(void *cookie, const char *mode, cookie_io_functions_t functions);

void *__wrap_malloc(size_t size)
{
    if (fail_now()) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
    if (fail_now()) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_calloc(n, size);
}

/* A failed realloc keeps the old block, as the real one does. */
void *__wrap_realloc(void *ptr, size_t size)
{
    if (size > 0 && fail_now()) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_realloc(ptr, size);
}

char *__wrap_strdup(const char *s)
{
    if (fail_now()) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
    if (fail_now()) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_strndup(s, n);
}

int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                       struct addrinfo **res)
{
    if (fail_now()) {
        return EAI_MEMORY;
    }
    return __real_getaddrinfo(node, service, hints, res);
}

FILE *__wrap_fopencookie(void *cookie, const char *mode, cookie_io_functions_t functions)
{
    if (fail_now()) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_fopencookie(cookie, mode, functions);
}

/* ---- the libraries' allocators --------------------------------------------------------------- */

#if TS_HAVE_OPENSSL
static void *ossl_malloc(size_t size, const char *file, int line)
{
    (void)file;
    (void)line;
    return fail_from(TS_ALLOC_OPENSSL) ? NULL : __real_malloc(size);
}

/* OpenSSL hands a custom realloc its arguments as they are: NULL is malloc, 0 is free. */
static void *ossl_realloc(void *ptr, size_t size, const char *file, int line)
{
    (void)file;
    (void)line;
    if (ptr != NULL && size == 0) {
        free(ptr);
        return NULL;
    }
    return fail_from(TS_ALLOC_OPENSSL) ? NULL : __real_realloc(ptr, size);
}

static void ossl_free(void *ptr, const char *file, int line)
{
    (void)file;
    (void)line;
    free(ptr);
}
#endif

#if TS_HAVE_UV
static void *uv_malloc(size_t size)
{
    return fail_from(TS_ALLOC_UV) ? NULL : __real_malloc(size);
}

/*
 * Counted, never failed: libuv grows its array of watched descriptors with realloc and aborts
 * the process when that fails (by design), whoever asked it to watch one more.
 */
static void *uv_realloc(void *ptr, size_t size)
{
    if (counter.armed) {
        counter.seen++;
        if (counter.seen == counter.fail_at) {
            counter.fail_at++; /* the next allocation fails instead */
        }
    }
    return __real_realloc(ptr, size);
}

static void *uv_calloc(size_t n, size_t size)
{
    return fail_from(TS_ALLOC_UV) ? NULL : __real_calloc(n, size);
}
#endif

bool ts_alloc_init(void)
{
#if TS_HAVE_OPENSSL
    if (CRYPTO_set_mem_functions(ossl_malloc, ossl_realloc, ossl_free) != 1) {
        print_error("CRYPTO_set_mem_functions: OpenSSL has allocated already\n");
        return false;
    }
#endif
#if TS_HAVE_UV
    if (uv_replace_allocator(uv_malloc, uv_realloc, uv_calloc, free) != 0) {
        print_error("uv_replace_allocator failed\n");
        return false;
    }
#endif
    return true;
}

/* ---- the loop -------------------------------------------------------------------------------- */

const char *ts_alloc_source_name(enum ts_alloc_source source)
{
    static const char *const names[] = {"none", "tlsock", "openssl", "libuv"};

    return (unsigned)source < sizeof(names) / sizeof(names[0]) ? names[source] : "?";
}

/* Adds one run's outcome to @p s. */
static void count_run(struct ts_alloc_stats *s, enum ts_alloc_source source, int rc)
{
    size_t codes = sizeof(s->codes[0]) / sizeof(s->codes[0][0]);

    s->runs++;
    if (rc == 0) {
        s->absorbed[source]++;
    } else if (rc < 0 && (size_t)-rc < codes) {
        s->codes[source][-rc]++;
    }
}

/* CPU time of the whole process (peer threads included), in ms. */
static long cpu_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void print_stats(const char *name, const struct ts_alloc_stats *s, long ms)
{
    size_t codes = sizeof(s->codes[0]) / sizeof(s->codes[0][0]);

    print_message("%s: %lu allocations, each failed in turn (%ld ms CPU)", name, s->allocations,
                  ms);
    for (int src = TS_ALLOC_TLSOCK; src <= TS_ALLOC_UV; src++) {
        unsigned long total = s->absorbed[src];
        for (size_t i = 1; i < codes; i++) {
            total += s->codes[src][i];
        }
        if (total == 0) {
            continue;
        }
        print_message("; %s's %lu: %lu absorbed", ts_alloc_source_name(src), total,
                      s->absorbed[src]);
        for (size_t i = 1; i < codes; i++) {
            if (s->codes[src][i] > 0) {
                print_message(", %lu %s", s->codes[src][i], tlsock_err_name(-(int)i));
            }
        }
    }
    print_message("\n");
}

void ts_alloc_loop(const struct ts_alloc_case *c, void *arg, unsigned long max_runs,
                   struct ts_alloc_stats *stats)
{
    struct ts_alloc_stats s = {0};
    long start = cpu_ms();
    bool done = false;
    /* TS_ALLOC_VERBOSE=1 prints every run, to find the one a failed check stopped at. */
    bool verbose = getenv("TS_ALLOC_VERBOSE") != NULL;

    for (unsigned long n = 1; n <= max_runs && !done; n++) {
        unsigned long count = 0;
        enum ts_alloc_source source;
        int rc;

        c->setup(arg);
        ts_alloc_arm(n);
        rc = c->run(arg);
        source = ts_alloc_disarm(&count);
        if (source != TS_ALLOC_NONE) {
            count_run(&s, source, rc);
        } else {
            s.allocations = count;
            done = true;
        }
        if (verbose) {
            print_message("%s: allocation %lu (%s) failed: %s, \"%s\"\n", c->name, n,
                          ts_alloc_source_name(source), ts_rc_name(rc), tlsock_errmsg());
        }
        c->check(arg, rc, source);
        c->teardown(arg);
    }
    print_stats(c->name, &s, cpu_ms() - start);
    if (!done) {
        fail_msg("%s: still failing after %lu runs", c->name, max_runs);
    }
    if (stats != NULL) {
        *stats = s;
    }
}
