/*
 * fuzz_seeds DIR [--keys]: writes seed inputs for every harness into DIR/<harness>/.
 *
 *   server/   ClientHellos of both implementations (several configurations), recorded now
 *   client/   ServerHello flights answering them
 *   session/  programs for fuzz_session (see its header): whole sessions per implementation
 *             pair and version, key updates, renegotiation, alerts, detach, damaged records
 *   certs/    trust anchors, a certificate chain to fingerprint, broken PEM; with --keys also
 *             certificate and key pairs for tlsock_ctx_set_cert_mem()
 *
 * The committed corpus (fuzz/corpus/) was written by this program without --keys: it holds
 * certificates (public, and only bytes to the harnesses: nothing verifies them against a clock)
 * but no private key. `make fuzz` runs it with --keys into the build directory, so the key seeds
 * are fresh each time and never committed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"
#include "fuzz_session.h"

#define U16(v) (uint8_t)((v) >> 8), (uint8_t)(v)

static const char *out_dir;
static int written;

static void write_seed(const char *harness, const char *name, const void *a, size_t a_len,
                       const void *b, size_t b_len)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", out_dir, harness);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof(path), "%s/%s/%s", out_dir, harness, name);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(a, 1, a_len, f) != a_len ||
        (b_len > 0 && fwrite(b, 1, b_len, f) != b_len) || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
    written++;
}

static void die_rc(const char *what, int rc)
{
    if (rc != 0) {
        fprintf(stderr, "fuzz_seeds: %s: %s (%s)\n", what, tlsock_err_name(rc), tlsock_errmsg());
        exit(1);
    }
}

/* Moves everything @p from has to send into @p out (may be NULL to discard). */
static size_t take_output(struct tlsock_conn *from, uint8_t *out, size_t cap)
{
    size_t total = 0;
    size_t n = 0;

    while (tlsock_conn_pending_output(from) > 0 && total < cap) {
        die_rc("drain", tlsock_drain(from, out + total, cap - total, &n));
        total += n;
    }
    return total;
}

/* ---- first flights ----------------------------------------------------------------------------
 */

/* The configuration byte of fuzz_feed.c for @p impl, @p versions, ALPN. */
static uint8_t feed_cfg(int impl, unsigned versions, bool alpn)
{
    return (uint8_t)((impl == TLSOCK_IMPL_GNUTLS) | versions << 1 | (alpn ? 0x10 : 0));
}

static void flights(void)
{
    static const struct {
        const char *name;
        unsigned versions; /* fz_protocols index */
        bool alpn;
        const char *sni;
    } cases[] = {
        {"tls13", 0, false, FZ_HOST},     {"tls12", 2, false, FZ_HOST},
        {"tls13-alpn", 0, true, FZ_HOST}, {"tls12-no-sni", 2, false, ""},
        {"legacy", 3, false, FZ_HOST},
    };
    static const int impls[] = {TLSOCK_IMPL_OPENSSL, TLSOCK_IMPL_GNUTLS};
    static uint8_t hello[65536];
    static uint8_t answer[65536];

    for (size_t i = 0; i < sizeof(impls) / sizeof(impls[0]); i++) {
        if (!tlsock_impl_available(impls[i])) {
            continue;
        }
        for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
            struct fz_config cc = {
                .role = TLSOCK_CLIENT,
                .impl = impls[i],
                .protocols = fz_protocols[cases[k].versions],
                .ciphers = "secure",
                .verify = TLSOCK_VERIFY_REQUIRED,
                .trust = true,
                .alpn = cases[k].alpn ? "h2,http/1.1" : NULL,
            };
            struct fz_config sc = cc;
            struct tlsock_opts opts = TLSOCK_OPTS_INIT;
            struct tlsock_conn *client = NULL;
            struct tlsock_conn *server = NULL;
            uint8_t cfg = feed_cfg(impls[i], cases[k].versions, cases[k].alpn);
            char name[64];

            sc.role = TLSOCK_SERVER;
            sc.verify = TLSOCK_VERIFY_NONE;
            sc.cert = true;
            sc.trust = false;
            opts.servername = cases[k].sni;
            opts.verify_name = FZ_HOST;
            die_rc("client", tlsock_attach_mem(fz_ctx(&cc), &opts, &client));
            die_rc("server", tlsock_attach_mem(fz_ctx(&sc), NULL, &server));
            (void)tlsock_handshake(client);
            size_t hello_len = take_output(client, hello, sizeof(hello));
            die_rc("feed", tlsock_feed(server, hello, hello_len));
            (void)tlsock_handshake(server);
            size_t answer_len = take_output(server, answer, sizeof(answer));
            snprintf(name, sizeof(name), "%s-%s", tlsock_impl_name(impls[i]), cases[k].name);
            write_seed("server", name, &cfg, 1, hello, hello_len);
            write_seed("client", name, &cfg, 1, answer, answer_len);
            tlsock_close(client);
            tlsock_close(server);
        }
    }
}

/* ---- sessions ----------------------------------------------------------------------------------
 */

#define SEED(name, ...)                                                                            \
    do {                                                                                           \
        static const uint8_t bytes_[] = {__VA_ARGS__};                                             \
        write_seed("session", name, bytes_, sizeof(bytes_), NULL, 0);                              \
    } while (0)

static void sessions(void)
{
    static const char *const impl_names[2] = {"openssl", "gnutls"};
    static const unsigned versions[2] = {0, 2};
    static const char *const version_names[2] = {"tls13", "tls12"};

    /* A whole session for every pair and version: handshake, data both ways (one write of
     * more than a record), information, close_notify both ways. */
    for (unsigned c = 0; c < 2; c++) {
        for (unsigned s = 0; s < 2; s++) {
            for (unsigned v = 0; v < 2; v++) {
                char name[64];
                const uint8_t bytes[] = {
                    FZ_SESSION_CFG(c, s, versions[v], 0),
                    0,
                    FZ_OP(FZ_OP_HANDSHAKE, FZ_CLIENT),
                    FZ_OP(FZ_OP_WRITE, FZ_CLIENT),
                    U16(1000),
                    FZ_OP(FZ_OP_WRITE, FZ_SERVER),
                    U16(20000),
                    FZ_OP(FZ_OP_INFO, FZ_CLIENT),
                    FZ_OP(FZ_OP_INFO, FZ_SERVER),
                    FZ_OP(FZ_OP_SHUTDOWN, FZ_CLIENT),
                    FZ_OP(FZ_OP_WRITE, FZ_SERVER),
                    U16(10),
                    FZ_OP(FZ_OP_SHUTDOWN, FZ_SERVER),
                };
                snprintf(name, sizeof(name), "basic-%s-%s-%s", impl_names[c], impl_names[s],
                         version_names[v]);
                write_seed("session", name, bytes, sizeof(bytes), NULL, 0);
            }
        }
    }
    /* Client certificates, ALPN and the compat policy over TLS 1.2; names that do not match;
     * versions that do not meet. */
    SEED("client-auth", FZ_SESSION_CFG(0, 1, 0, 2), 0, FZ_OP(FZ_OP_HANDSHAKE, FZ_CLIENT),
         FZ_OP(FZ_OP_INFO, FZ_SERVER), FZ_OP(FZ_OP_WRITE, FZ_CLIENT), U16(5),
         FZ_OP(FZ_OP_WRITE, FZ_SERVER), U16(5));
    SEED("alpn-compat-tls12", (uint8_t)(FZ_SESSION_CFG(1, 0, 2, 0) | FZ_CFG_COMPAT | FZ_CFG_ALPN),
         0, FZ_OP(FZ_OP_HANDSHAKE, FZ_CLIENT), FZ_OP(FZ_OP_INFO, FZ_CLIENT),
         FZ_OP(FZ_OP_WRITE, FZ_CLIENT), U16(300));
    SEED("client-auth-missing", FZ_SESSION_CFG(1, 0, 0, 2), FZ_CFG2_NO_CLIENT_CERT,
         FZ_OP(FZ_OP_HANDSHAKE, FZ_CLIENT), FZ_OP(FZ_OP_WRITE, FZ_CLIENT), U16(5));
    SEED("client-auth-optional", FZ_SESSION_CFG(0, 1, 2, 2),
         FZ_CFG2_NO_CLIENT_CERT | FZ_CFG2_OPTIONAL, FZ_OP(FZ_OP_HANDSHAKE, FZ_CLIENT),
         FZ_OP(FZ_OP_INFO, FZ_SERVER), FZ_OP(FZ_OP_WRITE, FZ_CLIENT), U16(5));
    SEED("verify-ip", FZ_SESSION_CFG(1, 1, 0, 0), FZ_CFG2_VERIFY_IP | FZ_CFG2_NO_SNI,
         FZ_OP(FZ_OP_HANDSHAKE, FZ_CLIENT));
    SEED("legacy", FZ_SESSION_CFG(0, 1, 0, 1), FZ_CFG2_LEGACY, FZ_OP(FZ_OP_HANDSHAKE, FZ_CLIENT),
         FZ_OP(FZ_OP_INFO, FZ_CLIENT), FZ_OP(FZ_OP_WRITE, FZ_SERVER), U16(20));
    SEED("wrong-name", FZ_SESSION_CFG(0, 1, 0, 3), 0, FZ_OP(FZ_OP_HANDSHAKE, FZ_CLIENT),
         FZ_OP(FZ_OP_INFO, FZ_CLIENT));
    SEED("no-common-version", FZ_SESSION_CFG(1, 1, 3, 0), 0, FZ_OP(FZ_OP_HANDSHAKE, FZ_CLIENT));
    /* Key updates, asked for and not (TLS 1.3), each implementation updating. */
    SEED("key-update", FZ_SESSION_CFG(0, 1, 0, 0), 0, FZ_OP(FZ_OP_HANDSHAKE, FZ_CLIENT),
         FZ_OP(FZ_OP_WRITE, FZ_CLIENT), U16(10), FZ_OP_VARIANT(FZ_OP_KEY_UPDATE, FZ_CLIENT, 1),
         FZ_OP(FZ_OP_WRITE, FZ_CLIENT), U16(10), FZ_OP(FZ_OP_WRITE, FZ_SERVER), U16(10),
         FZ_OP(FZ_OP_KEY_UPDATE, FZ_SERVER), FZ_OP(FZ_OP_WRITE, FZ_SERVER), U16(10),
         FZ_OP(FZ_OP_SHUTDOWN, FZ_CLIENT), FZ_OP(FZ_OP_SHUTDOWN, FZ_SERVER));
    /* Renegotiation asked for by a server (HelloRequest) and by an OpenSSL client (TLS 1.2). */
    SEED("renegotiate-server", FZ_SESSION_CFG(0, 1, 2, 0), 0, FZ_OP(FZ_OP_HANDSHAKE, FZ_CLIENT),
         FZ_OP(FZ_OP_RENEGOTIATE, FZ_SERVER), FZ_OP(FZ_OP_WRITE, FZ_SERVER), U16(10),
         FZ_OP(FZ_OP_WRITE, FZ_CLIENT), U16(10));
    SEED("renegotiate-client", FZ_SESSION_CFG(0, 0, 2, 0), 0, FZ_OP(FZ_OP_HANDSHAKE, FZ_CLIENT),
         FZ_OP(FZ_OP_RENEGOTIATE, FZ_CLIENT), FZ_OP(FZ_OP_WRITE, FZ_CLIENT), U16(10),
         FZ_OP(FZ_OP_WRITE, FZ_SERVER), U16(10));
    /* Warning and fatal alerts from a GnuTLS client (level, description, count - 1). */
    SEED("alerts", FZ_SESSION_CFG(1, 0, 2, 0), 0, FZ_OP(FZ_OP_HANDSHAKE, FZ_CLIENT),
         FZ_OP(FZ_OP_ALERT, FZ_CLIENT), 1, 90, 2, FZ_OP(FZ_OP_WRITE, FZ_CLIENT), U16(10),
         FZ_OP(FZ_OP_ALERT, FZ_CLIENT), 2, 40, 0);
    /* Detach on both sides, with data before the client's close_notify. */
    SEED("detach", FZ_SESSION_CFG(0, 1, 0, 0), 0, FZ_OP(FZ_OP_HANDSHAKE, FZ_CLIENT),
         FZ_OP(FZ_OP_WRITE, FZ_SERVER), U16(7), FZ_OP(FZ_OP_DETACH, FZ_CLIENT),
         FZ_OP(FZ_OP_DETACH, FZ_SERVER), FZ_OP(FZ_OP_DETACH, FZ_CLIENT));
    /* Damage: a flipped bit in application data, a TLS 1.2 handshake record split in two (valid
     * TLS), a record inserted into the handshake, a truncated stream, data dropped. */
    SEED("flip-data", FZ_SESSION_CFG(1, 1, 0, 0), 0, FZ_OP(FZ_OP_HANDSHAKE, FZ_CLIENT),
         FZ_OP(FZ_OP_MUTATE, FZ_CLIENT), 0, 0, U16(20), 0x40, FZ_OP(FZ_OP_WRITE, FZ_CLIENT),
         U16(100));
    SEED("split-handshake-tls12", FZ_SESSION_CFG(0, 0, 2, 0), 0, FZ_OP(FZ_OP_MUTATE, FZ_SERVER), 0,
         3, U16(40), FZ_OP(FZ_OP_HANDSHAKE, FZ_CLIENT), FZ_OP(FZ_OP_WRITE, FZ_CLIENT), U16(10));
    SEED("insert-record", FZ_SESSION_CFG(0, 1, 0, 0), 0, FZ_OP(FZ_OP_MUTATE, FZ_CLIENT), 1, 4, 22,
         U16(0x0303), U16(4), 1, 0, 0, 0, FZ_OP(FZ_OP_HANDSHAKE, FZ_CLIENT));
    SEED("end-after-data", FZ_SESSION_CFG(1, 0, 0, 0), 0, FZ_OP(FZ_OP_HANDSHAKE, FZ_CLIENT),
         FZ_OP(FZ_OP_MUTATE, FZ_CLIENT), 0, 9, FZ_OP(FZ_OP_WRITE, FZ_CLIENT), U16(100),
         FZ_OP(FZ_OP_WRITE, FZ_CLIENT), U16(100));
    SEED("drop-data", FZ_SESSION_CFG(0, 1, 2, 0), 0, FZ_OP(FZ_OP_HANDSHAKE, FZ_CLIENT),
         FZ_OP(FZ_OP_MUTATE, FZ_SERVER), 0, 5, FZ_OP(FZ_OP_WRITE, FZ_SERVER), U16(100),
         FZ_OP(FZ_OP_WRITE, FZ_SERVER), U16(100));
    /* One byte at a time both ways, tiny reads, many small records. */
    SEED("chunks", FZ_SESSION_CFG(1, 0, 0, 0), 0, FZ_OP(FZ_OP_CHUNK, FZ_CLIENT), 1,
         FZ_OP(FZ_OP_CHUNK, FZ_SERVER), 1, FZ_OP(FZ_OP_READ_SIZE, FZ_SERVER), 1,
         FZ_OP(FZ_OP_HANDSHAKE, FZ_CLIENT), FZ_OP(FZ_OP_SMALL_WRITES, FZ_CLIENT), 20,
         FZ_OP(FZ_OP_WRITE, FZ_SERVER), U16(300), FZ_OP(FZ_OP_SHUTDOWN, FZ_SERVER));
}

/* ---- certificates ---------------------------------------------------------------------------- */

/* fuzz_certs input: selector, big-endian length of the first blob, both blobs. */
static void cert_seed(const char *name, unsigned loader, int impl, const char *a, const char *b)
{
    size_t a_len = strlen(a);
    size_t b_len = b != NULL ? strlen(b) : 0;
    uint8_t *buf = malloc(3 + a_len + b_len);

    if (buf == NULL) {
        exit(1);
    }
    buf[0] = (uint8_t)(loader << 1 | (impl == TLSOCK_IMPL_GNUTLS));
    buf[1] = (uint8_t)(a_len >> 8);
    buf[2] = (uint8_t)a_len;
    memcpy(buf + 3, a, a_len);
    if (b_len > 0) {
        memcpy(buf + 3 + a_len, b, b_len);
    }
    write_seed("certs", name, buf, 3 + a_len + b_len, NULL, 0);
    free(buf);
}

static void certs(bool keys)
{
    static const char broken[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    static const int impls[] = {TLSOCK_IMPL_OPENSSL, TLSOCK_IMPL_GNUTLS};
    size_t chain_len = strlen(fz_pki.cert) + strlen(fz_pki.ca) + 1;
    char *chain = malloc(chain_len);

    if (chain == NULL) {
        exit(1);
    }
    snprintf(chain, chain_len, "%s%s", fz_pki.cert, fz_pki.ca);
    for (size_t i = 0; i < 2; i++) {
        char name[64];
        const char *impl = tlsock_impl_name(impls[i]);
        snprintf(name, sizeof(name), "ca-%s", impl);
        cert_seed(name, 1, impls[i], fz_pki.ca, NULL);
        snprintf(name, sizeof(name), "ca-twice-%s", impl);
        cert_seed(name, 1, impls[i], fz_pki.ca, chain);
        snprintf(name, sizeof(name), "ca-broken-%s", impl);
        cert_seed(name, 1, impls[i], broken, NULL);
        if (keys) {
            snprintf(name, sizeof(name), "pair-%s", impl);
            cert_seed(name, 0, impls[i], fz_pki.cert, fz_pki.key);
            snprintf(name, sizeof(name), "pair-chain-%s", impl);
            cert_seed(name, 0, impls[i], chain, fz_pki.key);
        }
    }
    cert_seed("fingerprint-chain", 2, TLSOCK_IMPL_OPENSSL, chain, NULL);
    free(chain);
}

int main(int argc, char **argv)
{
    bool keys = argc == 3 && strcmp(argv[2], "--keys") == 0;

    if (argc < 2 || (argc == 3 && !keys) || argc > 3) {
        fprintf(stderr, "usage: fuzz_seeds DIR [--keys]\n");
        return 2;
    }
    out_dir = argv[1];
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
        perror(out_dir);
        return 1;
    }
    fz_setup();
    flights();
    sessions();
    certs(keys);
    printf("fuzz_seeds: %d seeds in %s%s\n", written, out_dir, keys ? " (with keys)" : "");
    return 0;
}
