/* Unit tests: error codes, their names and descriptions, the TLS predicate, the thread's message.
 */
#include "support.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

/* The expectations come from the X-macro itself (stringised names and the table's texts), never
 * from the functions under test. */
struct error_case {
    const char *name;
    int value;
    const char *text;
};

static const struct error_case error_cases[] = {
#define XX(n, v, t) {.name = #n, .value = (v), .text = (t)},
    TLSOCK_ERRNO_MAP(XX)
#undef XX
};

#define N_ERRORS (sizeof(error_cases) / sizeof(error_cases[0]))

static void test_names_match_macro(void **state)
{
    (void)state;
    assert_true(N_ERRORS >= 15);
    for (size_t i = 0; i < N_ERRORS; i++) {
        assert_string_equal(tlsock_err_name(error_cases[i].value), error_cases[i].name);
    }
}

static void test_strerror_matches_table(void **state)
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
    /* The enum is generated from the same table. */
    assert_int_equal(TLSOCK_EINVAL, -1);
    assert_int_equal(TLSOCK_ECANCELED, -15);
    assert_int_equal(TLSOCK_OK, 0);
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
        cmocka_unit_test(test_names_match_macro),
        cmocka_unit_test(test_strerror_matches_table),
        cmocka_unit_test(test_values_negative_and_distinct),
        cmocka_unit_test(test_unknown_codes),
        cmocka_unit_test(test_err_is_tls),
        cmocka_unit_test(test_errmsg_is_per_thread),
    };

    return cmocka_run_group_tests_name("errors", tests, NULL, NULL);
}
