/* Unit tests: error codes, their names and descriptions, the TLS predicate, the thread's message.
 */
#include "support.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

/*
 * The error table written out by hand, in order. The table is append-only and its values never
 * change (include/tlsock.h): this list is the guard, so nothing here is generated from
 * TLSOCK_ERRNO_MAP. A new code is appended to both.
 */
struct error_case {
    int code; /* the enum constant */
    int value;
    const char *name;
    const char *text;
};

static const struct error_case error_cases[] = {
    {TLSOCK_EINVAL, -1, "EINVAL", "invalid argument or call in the wrong state"},
    {TLSOCK_ENOMEM, -2, "ENOMEM", "out of memory"},
    {TLSOCK_ESYS, -3, "ESYS", "system call failed"},
    {TLSOCK_ERESOLVE, -4, "ERESOLVE", "host name resolution failed"},
    {TLSOCK_ETIMEDOUT, -5, "ETIMEDOUT", "operation timed out"},
    {TLSOCK_EHANDSHAKE_TIMEOUT, -6, "EHANDSHAKE_TIMEOUT", "TLS handshake timed out"},
    {TLSOCK_ECLOSED, -7, "ECLOSED", "peer closed the TLS session (close_notify)"},
    {TLSOCK_ETRUNCATED, -8, "ETRUNCATED", "connection ended without close_notify (truncated)"},
    {TLSOCK_EPROTO, -9, "EPROTO", "TLS protocol error or alert"},
    {TLSOCK_EVERIFY, -10, "EVERIFY", "certificate verification failed"},
    {TLSOCK_ECONFIG, -11, "ECONFIG", "invalid TLS configuration"},
    {TLSOCK_EX509_LOOKUP, -12, "EX509_LOOKUP", "certificate or trust store could not be loaded"},
    {TLSOCK_EWANT_READ, -13, "EWANT_READ", "operation needs more input (retry when readable)"},
    {TLSOCK_EWANT_WRITE, -14, "EWANT_WRITE",
     "operation needs to send output (retry when writable)"},
    {TLSOCK_ECANCELED, -15, "ECANCELED", "operation canceled"},
};

#define N_ERRORS (sizeof(error_cases) / sizeof(error_cases[0]))

/* The table as the macro has it, only to compare it with the list above. */
struct macro_entry {
    const char *name;
    int value;
    const char *text;
};

static const struct macro_entry macro_entries[] = {
#define XX(n, v, t) {.name = #n, .value = (v), .text = (t)},
    TLSOCK_ERRNO_MAP(XX)
#undef XX
};

#define N_MACRO (sizeof(macro_entries) / sizeof(macro_entries[0]))

/* Every code is in the list, in the same place: nothing was inserted, removed, renumbered or
 * reworded. */
static void test_table_is_append_only(void **state)
{
    (void)state;
    assert_int_equal(N_MACRO, N_ERRORS);
    for (size_t i = 0; i < N_ERRORS; i++) {
        assert_string_equal(macro_entries[i].name, error_cases[i].name);
        assert_int_equal(macro_entries[i].value, error_cases[i].value);
        assert_string_equal(macro_entries[i].text, error_cases[i].text);
        /* The enum is generated from the same table. */
        assert_int_equal(error_cases[i].code, error_cases[i].value);
    }
    assert_int_equal(TLSOCK_OK, 0);
}

static void test_names(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ERRORS; i++) {
        assert_string_equal(tlsock_err_name(error_cases[i].value), error_cases[i].name);
    }
    assert_string_equal(tlsock_err_name(TLSOCK_OK), "OK");
}

static void test_strerror(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ERRORS; i++) {
        assert_string_equal(tlsock_strerror(error_cases[i].value), error_cases[i].text);
    }
}

static void test_values_negative_and_distinct(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ERRORS; i++) {
        assert_true(error_cases[i].value < 0);
        for (size_t j = i + 1; j < N_ERRORS; j++) {
            assert_int_not_equal(error_cases[i].value, error_cases[j].value);
            assert_string_not_equal(error_cases[i].name, error_cases[j].name);
        }
    }
}

static void test_unknown_codes(void **state)
{
    static const int unknown[] = {1, 12345, -1000, INT_MIN, INT_MAX};

    (void)state;
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        assert_string_equal(tlsock_err_name(unknown[i]), "UNKNOWN");
        assert_string_equal(tlsock_strerror(unknown[i]), "unknown error");
        assert_false(tlsock_err_is_tls(unknown[i]));
    }
}

struct is_tls_case {
    int code;
    bool tls;
};

/* The header: TLS = protocol, alert, verification, configuration, close_notify, truncation;
 * not TLS = socket, system, resolution, timeout and argument errors. */
static const struct is_tls_case is_tls_cases[] = {
    {.code = TLSOCK_EINVAL, .tls = false},
    {.code = TLSOCK_ENOMEM, .tls = false},
    {.code = TLSOCK_ESYS, .tls = false},
    {.code = TLSOCK_ERESOLVE, .tls = false},
    {.code = TLSOCK_ETIMEDOUT, .tls = false},
    {.code = TLSOCK_EHANDSHAKE_TIMEOUT, .tls = false},
    {.code = TLSOCK_ECLOSED, .tls = true},
    {.code = TLSOCK_ETRUNCATED, .tls = true},
    {.code = TLSOCK_EPROTO, .tls = true},
    {.code = TLSOCK_EVERIFY, .tls = true},
    {.code = TLSOCK_ECONFIG, .tls = true},
    /* Loading certificates and trust stores is TLS configuration. */
    {.code = TLSOCK_EX509_LOOKUP, .tls = true},
    /* Retry signals are neither a TLS failure nor a socket failure. */
    {.code = TLSOCK_EWANT_READ, .tls = false},
    {.code = TLSOCK_EWANT_WRITE, .tls = false},
    {.code = TLSOCK_ECANCELED, .tls = false},
    {.code = TLSOCK_OK, .tls = false},
};

static void test_err_is_tls(void **state)
{
    (void)state;
    /* Every code of the table has an expectation here: a new code must be classified. */
    assert_int_equal(sizeof(is_tls_cases) / sizeof(is_tls_cases[0]), N_ERRORS + 1);
    for (size_t i = 0; i < sizeof(is_tls_cases) / sizeof(is_tls_cases[0]); i++) {
        if (tlsock_err_is_tls(is_tls_cases[i].code) != is_tls_cases[i].tls) {
            fail_msg("tlsock_err_is_tls(%s) should be %s", ts_rc_name(is_tls_cases[i].code),
                     is_tls_cases[i].tls ? "true" : "false");
        }
    }
}

static void *read_errmsg_thread(void *arg)
{
    char *out = arg;

    /* Copied here: the thread's message storage goes away when the thread ends. */
    snprintf(out, 64, "%s", tlsock_errmsg());
    return NULL;
}

static void test_errmsg_is_per_thread(void **state)
{
    struct tlsock_ctx *ctx = NULL;
    char other[64] = "not run";
    pthread_t thread;

    (void)state;
    /* A failing call records its detail for this thread only. */
    TS_ASSERT_RC(tlsock_ctx_new(42, &ctx), TLSOCK_EINVAL);
    assert_null(ctx);
    assert_true(strlen(tlsock_errmsg()) > 0);

    assert_int_equal(pthread_create(&thread, NULL, read_errmsg_thread, other), 0);
    assert_int_equal(pthread_join(thread, NULL), 0);
    assert_string_equal(other, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_is_append_only),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_values_negative_and_distinct),
        cmocka_unit_test(test_unknown_codes),
        cmocka_unit_test(test_err_is_tls),
        cmocka_unit_test(test_errmsg_is_per_thread),
    };

    return cmocka_run_group_tests_name("errors", tests, NULL, NULL);
}
