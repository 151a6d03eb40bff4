/*
 * Lists the TLS implementations compiled into tlsock, then makes a client context on each and
 * shows the configure callbacks receiving the implementation's own handles.
 * Usage: implementations   (exits 0 when every available implementation worked)
 */
#include <stdio.h>
#include <tlsock.h>

static int on_ctx(void *native_ctx, void *user)
{
    /* An SSL_CTX * or a gnutls_certificate_credentials_t: adjust what tlsock does not wrap. */
    printf("  context configure callback: native context %p\n", native_ctx);
    ++*(int *)user;
    return 0;
}

static int on_conn(void *native_session, void *user)
{
    printf("  connection configure callback: native session %p\n", native_session);
    ++*(int *)user;
    return 0;
}

/* A client context on @p impl, frozen by a memory-mode connection (no network needed). */
static int try_impl(int impl)
{
    struct tlsock_ctx *ctx = NULL;
    struct tlsock_conn *conn = NULL;
    struct tlsock_opts opts = TLSOCK_OPTS_INIT;
    int calls = 0;
    int rc = tlsock_ctx_new(TLSOCK_CLIENT, &ctx);

    opts.servername = "example.com";
    if (rc == 0) {
        rc = tlsock_ctx_set_impl(ctx, impl); /* any time before the first connection */
    }
    if (rc == 0) {
        rc = tlsock_ctx_set_configure(ctx, on_ctx, on_conn, &calls);
    }
    if (rc == 0) {
        rc = tlsock_attach_mem(ctx, &opts, &conn);
    }
    if (rc == 0 && calls != 2) {
        rc = TLSOCK_EINVAL;
    }
    if (rc != 0) {
        fprintf(stderr, "  %s: %s\n", tlsock_strerror(rc), tlsock_errmsg());
    }
    tlsock_close(conn);
    tlsock_ctx_free(ctx);
    return rc;
}

int main(void)
{
    static const int impls[] = {TLSOCK_IMPL_OPENSSL, TLSOCK_IMPL_GNUTLS};
    int failures = 0;

    const char *default_name = tlsock_impl_name(tlsock_default_impl());

    /* NULL when TLSOCK_IMPL names no implementation compiled in: contexts cannot be made. */
    printf("default: %s\n", default_name != NULL ? default_name : "none (see TLSOCK_IMPL)");
    for (size_t i = 0; i < sizeof(impls) / sizeof(impls[0]); i++) {
        if (!tlsock_impl_available(impls[i])) {
            printf("%s: not compiled in\n", tlsock_impl_name(impls[i]));
            continue;
        }
        printf("%s: %s\n", tlsock_impl_name(impls[i]), tlsock_impl_version(impls[i]));
        failures += try_impl(impls[i]) != 0;
    }
    return failures == 0 ? 0 : 1;
}
