/*
 * Serialized sessions hold their secrets (a TLS 1.2 master secret, a TLS 1.3 resumption secret),
 * so the session store wipes them before it frees them. free() is wrapped at link time
 * (--wrap=free): while armed, every block freed is searched for a marker the test put in a
 * session value, and counted when it still holds it. The detector is checked on a block freed
 * without wiping; then the in-process store (src/core/session_cache.c) drops marked entries every
 * way it can (remove, replace, expiry, take, freeing the store), and a client context freed with
 * a session imported through the public API (tlsock_ctx_session_import()) must leave none.
 */
#include <malloc.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/session_cache.h"
#include "tlsock.h"

void __real_free(void *p);
void __wrap_free(void *p);

static const unsigned char MARKER[] = "tlsock-wipe-test-marker-7f3a9c1e";
enum { MARKER_LEN = sizeof(MARKER) - 1 };

static bool armed;
static int marked_frees; /* blocks freed while armed that still held the marker */

void __wrap_free(void *p)
{
    if (armed && p != NULL) {
        size_t size = malloc_usable_size(p);
        if (memmem(p, size, MARKER, MARKER_LEN) != NULL) {
            marked_frees++;
        }
    }
    __real_free(p);
}

static void arm(void)
{
    marked_frees = 0;
    armed = true;
}

static int disarm(void)
{
    armed = false;
    return marked_frees;
}

/* A session value: some bytes, the marker, some more. */
static void value_make(unsigned char *v, size_t len)
{
    memset(v, 0xa5, len);
    memcpy(v + 7, MARKER, MARKER_LEN);
}

/* The detector sees a marked block freed as it is (else the other cases would prove nothing). */
static void test_detector(void **state)
{
    /* free() through a volatile pointer: a compiler that sees a block freed may drop the writes
     * to it before (the very reason for explicit_bzero). */
    void (*volatile free_fn)(void *) = free;
    unsigned char *block = malloc(100);

    (void)state;
    assert_non_null(block);
    value_make(block, 100);
    arm();
    free_fn(block);
    assert_int_equal(disarm(), 1);
}

static void test_store_drops_wiped(void **state)
{
    struct tlsock__scache *c = tlsock__scache_new(4);
    unsigned char v[96];
    unsigned char *out = NULL;
    size_t out_len = 0;
    void *native = NULL;
    int64_t later = tlsock__now_ns() + (int64_t)3600 * 1000000000;

    (void)state;
    assert_non_null(c);
    value_make(v, sizeof(v));
    arm();
    /* remove */
    assert_int_equal(tlsock__scache_put(c, "a", 1, v, sizeof(v), later), 0);
    tlsock__scache_remove(c, "a", 1);
    /* replaced under the same key */
    assert_int_equal(tlsock__scache_put(c, "b", 1, v, sizeof(v), later), 0);
    assert_int_equal(tlsock__scache_put(c, "b", 1, "x", 1, later), 0);
    /* expired, seen by a get */
    assert_int_equal(tlsock__scache_put(c, "c", 1, v, sizeof(v), tlsock__now_ns() - 1), 0);
    assert_false(tlsock__scache_get(c, "c", 1, false, &out, &out_len));
    /* taken: the entry goes, the copy is the caller's, freed wiped */
    assert_int_equal(tlsock__scache_put(c, "d", 1, v, sizeof(v), later), 0);
    assert_true(tlsock__scache_take(c, "d", 1, NULL, &out, &out_len, &native));
    assert_int_equal(out_len, sizeof(v));
    tlsock__free_secret(out, out_len);
    /* left in the store when it is freed */
    assert_int_equal(tlsock__scache_put(c, "e", 1, v, sizeof(v), later), 0);
    tlsock__scache_free(c);
    assert_int_equal(disarm(), 0);
}

static void put16(unsigned char *p, size_t v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

/* A client's cache: an imported session (docs/sessions.md's format) freed with the context. */
static void test_client_cache_wiped(void **state)
{
    struct tlsock_ctx *ctx = NULL;
    unsigned char exp[256];
    size_t n = 0;
    size_t session_len = 80;

    (void)state;
    assert_int_equal(tlsock_ctx_new(TLSOCK_CLIENT, &ctx), 0);
    memcpy(exp, "TLSK", 4);
    exp[4] = 1;
    exp[5] = (unsigned char)tlsock_ctx_impl(ctx);
    n = 6;
    put16(exp + n, 443); /* port, then host, SNI and name verified */
    n += 2;
    put16(exp + n, 9);
    memcpy(exp + n + 2, "localhost", 9);
    n += 11;
    put16(exp + n, 0);
    n += 2;
    put16(exp + n, 0);
    n += 2;
    size_t rest = 32 + 2 + session_len; /* digest, protocol version, the session */
    put16(exp + n, rest >> 16);
    put16(exp + n + 2, rest & 0xffff);
    n += 4;
    memset(exp + n, 0, 32);
    put16(exp + n + 32, 0x0303);
    value_make(exp + n + 34, session_len);
    n += rest;
    assert_int_equal(tlsock_ctx_session_import(ctx, exp, n), 0);
    arm();
    tlsock_ctx_free(ctx);
    assert_int_equal(disarm(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detector),
        cmocka_unit_test(test_store_drops_wiped),
        cmocka_unit_test(test_client_cache_wiped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
