/*
 * The certificate and key loaders, fed arbitrary bytes. The input buffer is exactly the length
 * passed (no NUL after it), so a loader that reads past its length is caught by AddressSanitizer.
 *
 * Input:
 *   byte 0: bit 0 the implementation (0 OpenSSL, 1 GnuTLS); bits 1-7 the loader, an index into
 *           loaders[] below (inputs naming a loader that does not exist are ignored, so adding
 *           one never changes what existing corpus files mean)
 *   bytes 1-2: big-endian length of the first blob; the rest of the input is the second blob.
 *
 * To fuzz a new loader, append a row to loaders[] and add seeds to fuzz/corpus/certs/ whose
 * byte 0 names it (fuzz_seeds writes the PEM ones; fuzz/tool_seeds.sh makes DER, encrypted keys,
 * PKCS#12 and CRLs with the openssl tool; see docs/FUZZING.md).
 */
#include "fuzz.h"

#include <stdbool.h>
#include <string.h>

/* Loads @p a (and @p b where the loader takes two blobs) into a fresh context of @p impl. */
typedef void (*loader_fn)(int impl, const char *a, size_t a_len, const char *b, size_t b_len);

static struct tlsock_ctx *new_ctx(int role, int impl)
{
    struct tlsock_ctx *ctx = NULL;
    int rc = tlsock_ctx_new(role, &ctx);

    if (rc == 0) {
        rc = tlsock_ctx_set_impl(ctx, impl);
    }
    if (rc != 0) {
        fz_fail("tlsock_ctx_new: %s (%s)", tlsock_err_name(rc), tlsock_errmsg());
    }
    return ctx;
}

/* A setter either succeeds or fails with a code and a message: never a code without one. */
static void check_result(struct tlsock_ctx *ctx, const char *what, int rc)
{
    if (rc > 0 || (rc != 0 && tlsock_ctx_errmsg(ctx)[0] == '\0')) {
        fz_fail("%s returned %d with the message \"%s\"", what, rc, tlsock_ctx_errmsg(ctx));
    }
}

/* The passphrase of the protected keys and bundles in the corpus (fuzz/tool_seeds.sh). */
#define FUZZ_PASSPHRASE "tlsock-fuzz"

/* An identity that loaded (@p rc 0) is used for a connection, which freezes the context with
 * it; then the context goes. */
static void use_identity(struct tlsock_ctx *ctx, const char *what, int rc)
{
    check_result(ctx, what, rc);
    if (rc == 0) {
        struct tlsock_conn *conn = NULL;
        rc = tlsock_attach_mem(ctx, NULL, &conn);
        if (rc != 0) {
            fz_fail("attach_mem after %s: %s (%s)", what, tlsock_err_name(rc), tlsock_errmsg());
        }
        tlsock_close(conn);
    }
    tlsock_ctx_free(ctx);
}

/* A server's chain (a) and key (b), PEM or DER, the key maybe encrypted (with
 * FUZZ_PASSPHRASE when @p with_pass). */
static void load_cert(int impl, const char *a, size_t a_len, const char *b, size_t b_len,
                      bool with_pass)
{
    struct tlsock_ctx *ctx = new_ctx(TLSOCK_SERVER, impl);

    if (with_pass) {
        check_result(ctx, "set_key_passphrase",
                     tlsock_ctx_set_key_passphrase(ctx, FUZZ_PASSPHRASE));
    }
    use_identity(ctx, "set_cert_mem", tlsock_ctx_set_cert_mem(ctx, a, a_len, b, b_len));
}

static void load_cert_mem(int impl, const char *a, size_t a_len, const char *b, size_t b_len)
{
    load_cert(impl, a, a_len, b, b_len, false);
}

static void load_cert_mem_pass(int impl, const char *a, size_t a_len, const char *b, size_t b_len)
{
    load_cert(impl, a, a_len, b, b_len, true);
}

/* A PKCS#12 bundle (a), with FUZZ_PASSPHRASE. */
static void load_pkcs12_mem(int impl, const char *a, size_t a_len, const char *b, size_t b_len)
{
    struct tlsock_ctx *ctx = new_ctx(TLSOCK_SERVER, impl);

    (void)b;
    (void)b_len;
    check_result(ctx, "set_key_passphrase", tlsock_ctx_set_key_passphrase(ctx, FUZZ_PASSPHRASE));
    use_identity(ctx, "set_pkcs12_mem", tlsock_ctx_set_pkcs12_mem(ctx, a, a_len));
}

/* CRLs (a), then more of them (b), PEM or DER, into a client context. */
static void load_crl_mem(int impl, const char *a, size_t a_len, const char *b, size_t b_len)
{
    struct tlsock_ctx *ctx = new_ctx(TLSOCK_CLIENT, impl);

    check_result(ctx, "add_crl_mem", tlsock_ctx_add_crl_mem(ctx, a, a_len));
    if (b_len > 0) {
        check_result(ctx, "add_crl_mem (second)", tlsock_ctx_add_crl_mem(ctx, b, b_len));
    }
    tlsock_ctx_free(ctx);
}

/* Trust anchors (a), then more of them (b) into the same context. */
static void load_ca_mem(int impl, const char *a, size_t a_len, const char *b, size_t b_len)
{
    struct tlsock_ctx *ctx = new_ctx(TLSOCK_CLIENT, impl);

    check_result(ctx, "set_ca_mem", tlsock_ctx_set_ca_mem(ctx, a, a_len));
    if (b_len > 0) {
        check_result(ctx, "set_ca_mem (second)", tlsock_ctx_set_ca_mem(ctx, b, b_len));
    }
    tlsock_ctx_free(ctx);
}

/* The fingerprint of the first certificate in (a); it reads PEM with the generator's library. */
static void load_fingerprint(int impl, const char *a, size_t a_len, const char *b, size_t b_len)
{
    char fp[TLSOCK_FINGERPRINT_SIZE];
    int rc = tlsock_cert_fingerprint(a, a_len, fp);

    (void)impl;
    (void)b;
    (void)b_len;
    if (rc == 0 && strlen(fp) != TLSOCK_FINGERPRINT_SIZE - 1) {
        fz_fail("fingerprint of %zu characters", strlen(fp));
    }
}

static const struct {
    const char *name;
    loader_fn load;
} loaders[] = {
    {"cert_mem", load_cert_mem},       {"ca_mem", load_ca_mem},
    {"fingerprint", load_fingerprint}, {"cert_mem_pass", load_cert_mem_pass},
    {"pkcs12_mem", load_pkcs12_mem},   {"crl_mem", load_crl_mem},
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_setup();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_in in = {.p = data, .n = size};
    uint8_t sel = fz_u8(&in);
    size_t which = sel >> 1;
    size_t a_len = 0;
    size_t b_len = 0;
    const uint8_t *a = fz_bytes(&in, fz_u16(&in), &a_len);
    const uint8_t *b = fz_bytes(&in, in.n, &b_len);

    if (which < sizeof(loaders) / sizeof(loaders[0])) {
        loaders[which].load(fz_impl(sel), (const char *)a, a_len, (const char *)b, b_len);
    }
    return 0;
}
