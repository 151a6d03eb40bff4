/*
 * The DER reader behind the GnuTLS client's subjectAltName check (src/impl/der.c): certificates
 * made by the generator, taken as a peer sent them (tlsock_conn_peer_cert_der() after an
 * in-memory handshake), with and without a subjectAltName, with other extensions, with 1,500
 * names (long lengths); and what it must not claim to know: cut, damaged and foreign bytes.
 */
#include "pair.h"

#include "impl/der.h"

#include <stdlib.h>
#include <string.h>

/* The leaf @p leaf as the client received it, copied into @p der (malloc'd). */
static void leaf_der(void **state, size_t index, const struct tlsock__pem_pair *leaf,
                     unsigned char **der, size_t *len)
{
    const unsigned char *got = NULL;
    struct ts_pair *p;

    ts_pair_renew(state, index);
    p = *state;
    TS_ASSERT_RC(ts_server_ctx_new(leaf, &p->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &p->cctx), 0);
    /* No name check: a certificate without a subjectAltName is taken too. */
    TS_ASSERT_RC(tlsock_ctx_set_verify(p->cctx, TLSOCK_VERIFY_NONE), 0);
    TS_ASSERT_RC(ts_pair_attach(p, NULL, NULL), 0);
    TS_ASSERT_RC_MSG(ts_pair_handshake(p), 0, p->client_rc != 0 ? p->client_msg : p->server_msg);
    TS_ASSERT_RC(tlsock_conn_peer_cert_der(p->client, 0, &got, len), 0);
    *der = malloc(*len);
    assert_non_null(*der);
    memcpy(*der, got, *len);
}

static void test_certificates(void **state)
{
    char *many = malloc(1500 * 24 + 16);
    size_t n = 0;
    struct tlsock__pem_pair with_san = {0};
    struct tlsock__pem_pair cn_only = {0};
    struct tlsock__pem_pair many_sans = {0};
    unsigned char *der = NULL;
    size_t len = 0;

    assert_non_null(many);
    for (int i = 0; i < 1500; i++) {
        n += (size_t)snprintf(many + n, 1500 * 24 + 16 - n, "h%d.example.test,", i);
    }
    snprintf(many + n, 1500 * 24 + 16 - n, "localhost");
    TS_ASSERT_RC(
        ts_leaf_make(&ts_pki.ca, "with-san", "localhost,127.0.0.1", TLSOCK__EKU_SERVER, &with_san),
        0);
    /* Key usage, EKU and key identifiers, but no subjectAltName. */
    TS_ASSERT_RC(ts_leaf_make(&ts_pki.ca, "localhost", NULL, TLSOCK__EKU_SERVER, &cn_only), 0);
    TS_ASSERT_RC(ts_leaf_make(&ts_pki.ca, "many", many, TLSOCK__EKU_SERVER, &many_sans), 0);

    leaf_der(state, 0, &with_san, &der, &len);
    assert_int_equal(tlsock__der_has_san(der, len), 1);
    /* Cut anywhere, or damaged in its outer length: it cannot tell, never "no". */
    for (size_t cut = 0; cut < len; cut += 7) {
        assert_int_equal(tlsock__der_has_san(der, cut), -1);
    }
    der[1] = 0x80; /* indefinite length */
    assert_int_equal(tlsock__der_has_san(der, len), -1);
    free(der);

    leaf_der(state, 1, &cn_only, &der, &len);
    assert_int_equal(tlsock__der_has_san(der, len), 0);
    free(der);

    leaf_der(state, 2, &many_sans, &der, &len);
    print_message("1,500 names: %zu bytes\n", len);
    assert_true(len > 0xffff / 4); /* long-form lengths at every level up to the SAN */
    assert_int_equal(tlsock__der_has_san(der, len), 1);
    free(der);

    static const unsigned char foreign[] = {0x04, 0x03, 0x55, 0x1d, 0x11};
    assert_int_equal(tlsock__der_has_san(foreign, sizeof(foreign)), -1);
    assert_int_equal(tlsock__der_has_san(NULL, 0), -1);

    tlsock__pem_pair_free(&with_san);
    tlsock__pem_pair_free(&cn_only);
    tlsock__pem_pair_free(&many_sans);
    free(many);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_certificates, ts_pair_setup, ts_pair_teardown),
    };

    return cmocka_run_group_tests_name("der", tests, ts_pki_setup, ts_pki_teardown);
}
