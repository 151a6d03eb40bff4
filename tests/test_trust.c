/*
 * Trust checks added to verification (include/tlsock.h, "Trust"): CRLs from files and memory,
 * PEM and DER, for the leaf or the whole chain, on a client and on a server checking client
 * certificates; SPKI pins; the verify depth; the verify callback; no CN fallback for host names.
 * Over the in-memory pair (support/pair.h), across the implementation matrix.
 *
 * CRLs and pins are made with the openssl command-line tool from the certificates generated at
 * run time, in a temporary directory removed at the end (`openssl ca -revoke`, `-gencrl`).
 */
#include "pair.h"
#include "workdir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- certificates, CRLs and pins, made once -------------------------------------------------- */

static struct ts_workdir wd;

enum cert {
    CERT_SERVER,         /* ts_pki.server */
    CERT_CLIENT,         /* ts_pki.client */
    CERT_REVOKED_SERVER, /* listed in the root's CRL */
    CERT_REVOKED_CLIENT, /* listed in the root's CRL */
    CERT_INTER,          /* an intermediate CA under the root */
    CERT_INTER_LEAF,     /* a server certificate under CERT_INTER */
    CERT_RINTER,         /* an intermediate CA under the root, listed in the root's CRL */
    CERT_RINTER_LEAF,    /* a server certificate under CERT_RINTER */
    CERT_NO_SAN,         /* a server certificate with CN "localhost" and no subjectAltName */
    CERT_COUNT,
    /* Not a certificate of its own: ts_pki.server sent with ts_pki.other_ca after it. */
    CERT_SERVER_AND_OTHER_CA = CERT_COUNT,
};

static struct tlsock__pem_pair certs[CERT_COUNT];

/* Each CRL file as PEM and DER: <name>.pem and <name>.der in wd. */
enum crl {
    CRL_ROOT = 1 << 0,         /* by ts_pki.ca: the revoked server, client and intermediate */
    CRL_ROOT_EXPIRED = 1 << 1, /* by ts_pki.ca, nothing revoked, nextUpdate in 2020 */
    CRL_INTER = 1 << 2,        /* by CERT_INTER, nothing revoked */
    CRL_RINTER = 1 << 3,       /* by CERT_RINTER, nothing revoked */
    CRL_ROOT_FUTURE = 1 << 4,  /* by ts_pki.ca, nothing revoked, thisUpdate in 2099 */
    CRL_ROOT_BADSIG = 1 << 5,  /* CRL_ROOT with the last byte of its signature changed */
};
static const char *const crl_names[] = {"root",   "root-expired", "inter",
                                        "rinter", "root-future",  "root-badsig"};
enum { CRL_KINDS = 6 };

/* The validity a CRL of make_crl() gets. */
enum crl_time { CRL_NOW, CRL_EXPIRED, CRL_FUTURE };

/* The pins of a few keys, "sha256/BASE64", and one in hexadecimal. */
enum pin { PIN_SERVER, PIN_CA, PIN_OTHER_CA, PIN_CLIENT, PIN_COUNT };
static char pins[PIN_COUNT][64];
static char pin_ca_hex[96];

/* DER of certificates the callback is shown. */
static struct {
    unsigned char *der;
    size_t len;
} der_inter_leaf, der_ca, der_client;

/* Writes the NUL-terminated @p text as the file @p name of the work directory. */
static int write_text(const char *name, const char *text)
{
    return ts_workdir_write(&wd, name, text, strlen(text));
}

/*
 * A CRL by @p issuer listing @p revoked (NULL-terminated), as <name>.pem and <name>.der, valid
 * from now for a week, or (@p when) from 2020 to February 2020, or from 2099.
 */
/*
 * <to>.der and <to>.pem: CRL <from> with one bit of its signature flipped (the DER's last byte
 * is the signature's), so that it no longer verifies.
 */
static int copy_with_bad_signature(const char *from, const char *to)
{
    unsigned char *der = NULL;
    size_t len = 0;
    char name[64];
    int rc = 0;

    snprintf(name, sizeof(name), "%s.der", from);
    rc = ts_workdir_read(&wd, name, &der, &len);
    if (rc == 0 && len == 0) {
        rc = -1;
    }
    if (rc == 0) {
        der[len - 1] ^= 1;
        snprintf(name, sizeof(name), "%s.der", to);
        rc = ts_workdir_write(&wd, name, der, len);
    }
    free(der);
    if (rc == 0) {
        rc = ts_workdir_sh(&wd, "openssl crl -inform DER -in %s.der -out %s.pem", to, to);
    }
    return rc;
}

static int make_crl(const char *name, const struct tlsock__pem_pair *issuer,
                    const struct tlsock__pem_pair *const *revoked, enum crl_time when)
{
    static const char *const validity[] = {
        [CRL_NOW] = "",
        [CRL_EXPIRED] = "-crl_lastupdate 20200101000000Z -crl_nextupdate 20200201000000Z",
        [CRL_FUTURE] = "-crl_lastupdate 20990101000000Z -crl_nextupdate 20990201000000Z",
    };
    char file[128];
    int rc = 0;

    snprintf(file, sizeof(file), "%s-ca.pem", name);
    rc |= write_text(file, issuer->cert);
    snprintf(file, sizeof(file), "%s-ca.key", name);
    rc |= write_text(file, issuer->key);
    snprintf(file, sizeof(file), "%s.cnf", name);
    char cnf[256];
    snprintf(cnf, sizeof(cnf),
             "[ca]\ndefault_ca = d\n[d]\ndatabase = %s.index\ndefault_md = sha256\n"
             "default_crl_days = 7\n",
             name);
    rc |= write_text(file, cnf);
    snprintf(file, sizeof(file), "%s.index", name);
    rc |= write_text(file, "");
    for (int i = 0; rc == 0 && revoked[i] != NULL; i++) {
        snprintf(file, sizeof(file), "%s-revoked%d.pem", name, i);
        rc |= write_text(file, revoked[i]->cert);
        rc |= ts_workdir_sh(&wd,
                            "openssl ca -batch -config %s.cnf -keyfile %s-ca.key -cert %s-ca.pem "
                            "-revoke %s >/dev/null 2>&1",
                            name, name, name, file);
    }
    if (rc == 0) {
        rc = ts_workdir_sh(&wd,
                           "openssl ca -batch -config %s.cnf -keyfile %s-ca.key -cert %s-ca.pem "
                           "-gencrl %s -out %s.pem >/dev/null 2>&1 && "
                           "openssl crl -in %s.pem -outform DER -out %s.der",
                           name, name, name, validity[when], name, name, name);
    }
    return rc;
}

/* The SPKI pin of @p pem: "sha256/BASE64", or 64 hexadecimal digits when @p hex. */
static int make_pin(const char *pem, bool hex, char *out, size_t size)
{
    unsigned char *text = NULL;
    size_t len = 0;

    if (write_text("pin-cert.pem", pem) != 0 ||
        ts_workdir_sh(&wd,
                      "openssl x509 -in pin-cert.pem -pubkey -noout | openssl pkey -pubin "
                      "-outform der | openssl dgst -sha256 -binary | %s >pin.out",
                      hex ? "od -An -tx1 | tr -d ' \\n'" : "base64") != 0 ||
        ts_workdir_read(&wd, "pin.out", &text, &len) != 0) {
        return -1;
    }
    text[strcspn((char *)text, "\n")] = '\0';
    snprintf(out, size, "%s%s", hex ? "" : "sha256/", (char *)text);
    free(text);
    return strlen(out) == (hex ? 64 : 51) ? 0 : -1;
}

static int make_der(const char *pem, const char *name, unsigned char **der, size_t *len)
{
    char file[64];

    snprintf(file, sizeof(file), "%s.crt", name);
    if (write_text(file, pem) != 0 ||
        ts_workdir_sh(&wd, "openssl x509 -in %s.crt -outform DER -out %s.cder", name, name) != 0) {
        return -1;
    }
    snprintf(file, sizeof(file), "%s.cder", name);
    return ts_workdir_read(&wd, file, der, len);
}

static int make_all(void **state)
{
    const long day = 86400;
    int rc = ts_pki_setup(state);

    if (rc != 0) {
        return -1;
    }
    /* The openssl tool makes the CRLs: without it the test fails, it does not skip. */
    if (ts_require_tool("openssl") != 0 || ts_workdir_make(&wd, "trust") != 0) {
        return -1;
    }
    const struct tlsock__cert_spec ca_spec = {
        .common_name = "tlsock test intermediate",
        .is_ca = true,
        .not_before_s = -3600,
        .not_after_s = 30 * day,
        .issuer_cert_pem = ts_pki.ca.cert,
        .issuer_key_pem = ts_pki.ca.key,
    };
    struct tlsock__cert_spec rinter_spec = ca_spec;
    rinter_spec.common_name = "tlsock test revoked intermediate";
    const struct tlsock__cert_spec no_san_spec = {
        .common_name = "localhost",
        .not_before_s = -3600,
        .not_after_s = 30 * day,
        .eku = TLSOCK__EKU_SERVER,
        .issuer_cert_pem = ts_pki.ca.cert,
        .issuer_key_pem = ts_pki.ca.key,
    };
    certs[CERT_SERVER] = ts_pki.server;
    certs[CERT_CLIENT] = ts_pki.client;
    rc |= ts_leaf_make(&ts_pki.ca, "revoked-server", TS_SERVER_HOSTS, TLSOCK__EKU_SERVER,
                       &certs[CERT_REVOKED_SERVER]);
    rc |= ts_leaf_make(&ts_pki.ca, "revoked-client", NULL, TLSOCK__EKU_CLIENT,
                       &certs[CERT_REVOKED_CLIENT]);
    rc |= ts_cert_make(&ca_spec, &certs[CERT_INTER]);
    rc |= ts_cert_make(&rinter_spec, &certs[CERT_RINTER]);
    rc |= ts_cert_make(&no_san_spec, &certs[CERT_NO_SAN]);
    if (rc != 0) {
        return -1;
    }
    rc |= ts_leaf_make(&certs[CERT_INTER], "inter-leaf", TS_SERVER_HOSTS, TLSOCK__EKU_SERVER,
                       &certs[CERT_INTER_LEAF]);
    rc |= ts_leaf_make(&certs[CERT_RINTER], "rinter-leaf", TS_SERVER_HOSTS, TLSOCK__EKU_SERVER,
                       &certs[CERT_RINTER_LEAF]);

    const struct tlsock__pem_pair *root_revoked[] = {
        &certs[CERT_REVOKED_SERVER], &certs[CERT_REVOKED_CLIENT], &certs[CERT_RINTER], NULL};
    const struct tlsock__pem_pair *none[] = {NULL};
    rc |= make_crl("root", &ts_pki.ca, root_revoked, CRL_NOW);
    rc |= make_crl("root-expired", &ts_pki.ca, none, CRL_EXPIRED);
    rc |= make_crl("inter", &certs[CERT_INTER], none, CRL_NOW);
    rc |= make_crl("rinter", &certs[CERT_RINTER], none, CRL_NOW);
    rc |= make_crl("root-future", &ts_pki.ca, none, CRL_FUTURE);
    rc |= copy_with_bad_signature("root", "root-badsig");

    rc |= make_pin(ts_pki.server.cert, false, pins[PIN_SERVER], sizeof(pins[0]));
    rc |= make_pin(ts_pki.ca.cert, false, pins[PIN_CA], sizeof(pins[0]));
    rc |= make_pin(ts_pki.other_ca.cert, false, pins[PIN_OTHER_CA], sizeof(pins[0]));
    rc |= make_pin(ts_pki.client.cert, false, pins[PIN_CLIENT], sizeof(pins[0]));
    rc |= make_pin(ts_pki.ca.cert, true, pin_ca_hex, sizeof(pin_ca_hex));

    rc |= make_der(certs[CERT_INTER_LEAF].cert, "inter-leaf", &der_inter_leaf.der,
                   &der_inter_leaf.len);
    rc |= make_der(ts_pki.ca.cert, "ca", &der_ca.der, &der_ca.len);
    rc |= make_der(ts_pki.client.cert, "client", &der_client.der, &der_client.len);
    return rc == 0 ? 0 : -1;
}

static int free_all(void **state)
{
    for (int i = 0; i < CERT_COUNT; i++) {
        if (i != CERT_SERVER && i != CERT_CLIENT) {
            tlsock__pem_pair_free(&certs[i]);
        }
    }
    free(der_inter_leaf.der);
    free(der_ca.der);
    free(der_client.der);
    (void)ts_workdir_remove(&wd);
    return ts_pki_teardown(state);
}

/* ---- contexts -------------------------------------------------------------------------------- */

/* How the CRLs reach the context. */
enum crl_how {
    CRL_FILE_PEM,
    CRL_FILE_DER,
    CRL_MEM_PEM,
    CRL_MEM_DER,
};

static void add_crls(struct tlsock_ctx *ctx, unsigned crls, enum crl_how how)
{
    for (int i = 0; i < CRL_KINDS; i++) {
        char file[64];
        unsigned char *data = NULL;
        size_t len = 0;
        bool der = how == CRL_FILE_DER || how == CRL_MEM_DER;

        if (!(crls & (1u << i))) {
            continue;
        }
        snprintf(file, sizeof(file), "%s.%s", crl_names[i], der ? "der" : "pem");
        if (how == CRL_FILE_PEM || how == CRL_FILE_DER) {
            TS_ASSERT_RC_MSG(tlsock_ctx_add_crl_file(ctx, TS_WORKDIR_PATH(&wd, file)), 0,
                             tlsock_ctx_errmsg(ctx));
            continue;
        }
        assert_int_equal(ts_workdir_read(&wd, file, &data, &len), 0);
        int rc = tlsock_ctx_add_crl_mem(ctx, data, len);
        free(data);
        TS_ASSERT_RC_MSG(rc, 0, tlsock_ctx_errmsg(ctx));
    }
}

/* Sets @p cert (with its issuer after it when it is under an intermediate) on @p ctx. */
static void set_cert(struct tlsock_ctx *ctx, enum cert cert)
{
    const struct tlsock__pem_pair *leaf =
        cert == CERT_SERVER_AND_OTHER_CA ? &ts_pki.server : &certs[cert];
    const char *issuer = cert == CERT_INTER_LEAF            ? certs[CERT_INTER].cert
                         : cert == CERT_RINTER_LEAF         ? certs[CERT_RINTER].cert
                         : cert == CERT_SERVER_AND_OTHER_CA ? ts_pki.other_ca.cert
                                                            : "";
    size_t len = strlen(leaf->cert) + strlen(issuer) + 1;
    char *chain = malloc(len);

    assert_non_null(chain);
    snprintf(chain, len, "%s%s", leaf->cert, issuer);
    int rc = tlsock_ctx_set_cert_mem(ctx, chain, strlen(chain), leaf->key, strlen(leaf->key));
    free(chain);
    TS_ASSERT_RC_MSG(rc, 0, tlsock_ctx_errmsg(ctx));
}

/* The side that verifies, with the checks of a case; the other side presents @p cert. */
enum side {
    CLIENT_CHECKS, /* the client verifies the server's certificate */
    SERVER_CHECKS, /* the server requires and verifies a client certificate */
};

/* Makes both contexts; returns the verifying one, to which the case adds its checks. */
static struct tlsock_ctx *make_contexts(struct ts_pair *p, enum side side, enum cert cert)
{
    TS_ASSERT_RC(ts_ctx_new(TLSOCK_SERVER, &p->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &p->cctx), 0);
    if (side == CLIENT_CHECKS) {
        set_cert(p->sctx, cert);
        return p->cctx;
    }
    set_cert(p->sctx, CERT_SERVER);
    set_cert(p->cctx, cert);
    TS_ASSERT_RC(tlsock_ctx_set_ca_mem(p->sctx, ts_pki.ca.cert, strlen(ts_pki.ca.cert)), 0);
    TS_ASSERT_RC(tlsock_ctx_set_verify(p->sctx, TLSOCK_VERIFY_REQUIRED), 0);
    return p->sctx;
}

/* The verifying side's outcome; after a failure, the other side failed too (alert or not). */
static void check_outcome(const struct ts_pair *p, enum side side, int rc, const char *message,
                          const char *peer_alert)
{
    int own = side == CLIENT_CHECKS ? p->client_rc : p->server_rc;
    const char *own_msg = side == CLIENT_CHECKS ? p->client_msg : p->server_msg;
    const char *other_msg = side == CLIENT_CHECKS ? p->server_msg : p->client_msg;

    if (own != 0) {
        print_message("  %s: %s (%s)\n", side == CLIENT_CHECKS ? "client" : "server",
                      ts_rc_name(own), own_msg);
    }
    TS_ASSERT_RC_MSG(own, rc, own_msg);
    if (rc == 0) {
        TS_ASSERT_RC_MSG(p->client_rc, 0, p->client_msg);
        TS_ASSERT_RC_MSG(p->server_rc, 0, p->server_msg);
        return;
    }
    TS_ASSERT_CONTAINS(own_msg, message);
    if (side == CLIENT_CHECKS) {
        TS_ASSERT_FAILED(p->server_rc, p->server_msg);
        if (peer_alert != NULL) {
            TS_ASSERT_CONTAINS(other_msg, peer_alert);
        }
    }
}

/* ---- the table ------------------------------------------------------------------------------- */

struct trust_case {
    const char *what;
    enum side side;
    enum cert cert;    /* what the other side presents */
    unsigned crls;     /* enum crl bits */
    enum crl_how how;  /* how they are given */
    int crl_mode;      /* 0: not set */
    bool replay;       /* the CRLs go through tlsock_ctx_set_impl() to another implementation */
    const char *pin_a; /* pins, NULL for none */
    const char *pin_b;
    bool depth_set; /* tlsock_ctx_set_verify_depth(depth) */
    int depth;
    const char *verify_name; /* NULL: TS_PAIR_NAME */
    int rc;
    const char *message;
    const char *peer_alert; /* a client's refusal: the alert the server reports, NULL: any */
};

static const struct trust_case cases[] = {
    /* Revocation, the client checking the server. */
    {.what = "revoked server certificate, CRL file (PEM)",
     .cert = CERT_REVOKED_SERVER,
     .crls = CRL_ROOT,
     .rc = TLSOCK_EVERIFY,
     .message = "certificate revoked",
     .peer_alert = "certificate_revoked"},
    {.what = "good server certificate, the same CRL", .cert = CERT_SERVER, .crls = CRL_ROOT},
    {.what = "revoked server certificate, CRL file (DER)",
     .cert = CERT_REVOKED_SERVER,
     .crls = CRL_ROOT,
     .how = CRL_FILE_DER,
     .rc = TLSOCK_EVERIFY,
     .message = "certificate revoked"},
    {.what = "revoked server certificate, CRL in memory (PEM)",
     .cert = CERT_REVOKED_SERVER,
     .crls = CRL_ROOT,
     .how = CRL_MEM_PEM,
     .rc = TLSOCK_EVERIFY,
     .message = "certificate revoked"},
    {.what = "revoked server certificate, CRL in memory (DER)",
     .cert = CERT_REVOKED_SERVER,
     .crls = CRL_ROOT,
     .how = CRL_MEM_DER,
     .rc = TLSOCK_EVERIFY,
     .message = "certificate revoked"},
    {.what = "CRLs are kept through tlsock_ctx_set_impl",
     .cert = CERT_REVOKED_SERVER,
     .crls = CRL_ROOT,
     .replay = true,
     .rc = TLSOCK_EVERIFY,
     .message = "certificate revoked"},
    {.what = "leaf mode: no CRL from the leaf's issuer",
     .cert = CERT_INTER_LEAF,
     .crls = CRL_ROOT,
     .rc = TLSOCK_EVERIFY,
     .message = "unable to get certificate CRL"},
    {.what = "leaf mode: the leaf's issuer's CRL",
     .cert = CERT_INTER_LEAF,
     .crls = CRL_INTER,
     .crl_mode = TLSOCK_CRL_LEAF},
    {.what = "chain mode: every issuer's CRL",
     .cert = CERT_INTER_LEAF,
     .crls = CRL_ROOT | CRL_INTER,
     .crl_mode = TLSOCK_CRL_CHAIN},
    {.what = "chain mode: no CRL from the root",
     .cert = CERT_INTER_LEAF,
     .crls = CRL_INTER,
     .crl_mode = TLSOCK_CRL_CHAIN,
     .rc = TLSOCK_EVERIFY,
     .message = "unable to get certificate CRL"},
    {.what = "revoked intermediate, leaf mode: not checked",
     .cert = CERT_RINTER_LEAF,
     .crls = CRL_ROOT | CRL_RINTER},
    {.what = "revoked intermediate, chain mode",
     .cert = CERT_RINTER_LEAF,
     .crls = CRL_ROOT | CRL_RINTER,
     .crl_mode = TLSOCK_CRL_CHAIN,
     .rc = TLSOCK_EVERIFY,
     .message = "certificate revoked"},
    {.what = "expired CRL",
     .cert = CERT_SERVER,
     .crls = CRL_ROOT_EXPIRED,
     .rc = TLSOCK_EVERIFY,
     .message = "CRL has expired"},
    {.what = "CRL not yet valid",
     .cert = CERT_SERVER,
     .crls = CRL_ROOT_FUTURE,
     .rc = TLSOCK_EVERIFY,
     .message = "CRL is not yet valid"},
    {.what = "CRL whose signature does not verify",
     .cert = CERT_SERVER,
     .crls = CRL_ROOT_BADSIG,
     .rc = TLSOCK_EVERIFY,
     .message = "CRL signature failure"},
    {.what = "chain mode: the root's CRL signature does not verify",
     .cert = CERT_INTER_LEAF,
     .crls = CRL_ROOT_BADSIG | CRL_INTER,
     .crl_mode = TLSOCK_CRL_CHAIN,
     .rc = TLSOCK_EVERIFY,
     .message = "CRL signature failure"},
    {.what = "a CRL mode without any CRL",
     .cert = CERT_SERVER,
     .crl_mode = TLSOCK_CRL_LEAF,
     .rc = TLSOCK_EVERIFY,
     .message = "unable to get certificate CRL"},
    /* Revocation, the server checking client certificates. */
    {.what = "server: revoked client certificate",
     .side = SERVER_CHECKS,
     .cert = CERT_REVOKED_CLIENT,
     .crls = CRL_ROOT,
     .rc = TLSOCK_EVERIFY,
     .message = "certificate revoked"},
    {.what = "server: revoked client certificate, CRL in memory (DER)",
     .side = SERVER_CHECKS,
     .cert = CERT_REVOKED_CLIENT,
     .crls = CRL_ROOT,
     .how = CRL_MEM_DER,
     .rc = TLSOCK_EVERIFY,
     .message = "certificate revoked"},
    {.what = "server: good client certificate",
     .side = SERVER_CHECKS,
     .cert = CERT_CLIENT,
     .crls = CRL_ROOT},
    /* Pins. */
    {.what = "pin of the server's key", .cert = CERT_SERVER, .pin_a = pins[PIN_SERVER]},
    {.what = "pin of the CA's key, in hexadecimal", .cert = CERT_SERVER, .pin_a = pin_ca_hex},
    {.what = "pin of the CA's key, chain with an intermediate",
     .cert = CERT_INTER_LEAF,
     .pin_a = pins[PIN_CA]},
    {.what = "pin of another key",
     .cert = CERT_SERVER,
     .pin_a = pins[PIN_OTHER_CA],
     .rc = TLSOCK_EVERIFY,
     .message = "no pinned key",
     .peer_alert = "bad_certificate"},
    /* A certificate the peer sends proves nothing unless it is part of the verified chain. */
    {.what = "pin of a certificate sent but not in the verified chain",
     .cert = CERT_SERVER_AND_OTHER_CA,
     .pin_a = pins[PIN_OTHER_CA],
     .rc = TLSOCK_EVERIFY,
     .message = "no pinned key"},
    {.what = "one of two pins matches",
     .cert = CERT_SERVER,
     .pin_a = pins[PIN_OTHER_CA],
     .pin_b = pins[PIN_SERVER]},
    {.what = "server: pin of the client's key",
     .side = SERVER_CHECKS,
     .cert = CERT_CLIENT,
     .pin_a = pins[PIN_CLIENT]},
    {.what = "server: pin of another key",
     .side = SERVER_CHECKS,
     .cert = CERT_CLIENT,
     .pin_a = pins[PIN_SERVER],
     .rc = TLSOCK_EVERIFY,
     .message = "no pinned key"},
    /* The verify depth counts the intermediates. */
    {.what = "depth 0, one intermediate",
     .cert = CERT_INTER_LEAF,
     .depth_set = true,
     .depth = 0,
     .rc = TLSOCK_EVERIFY,
     .message = "certificate chain too long"},
    {.what = "depth 1, one intermediate", .cert = CERT_INTER_LEAF, .depth_set = true, .depth = 1},
    {.what = "depth 0, a leaf issued by the anchor",
     .cert = CERT_SERVER,
     .depth_set = true,
     .depth = 0},
    {.what = "server: depth 0, a client leaf issued by the anchor",
     .side = SERVER_CHECKS,
     .cert = CERT_CLIENT,
     .depth_set = true,
     .depth = 0},
    /* No subjectAltName: the CN is never a host name. */
    {.what = "no subjectAltName, the CN is the host name",
     .cert = CERT_NO_SAN,
     .rc = TLSOCK_EVERIFY,
     .message = "hostname mismatch: the certificate has no subjectAltName"},
    {.what = "no subjectAltName, an IP address",
     .cert = CERT_NO_SAN,
     .verify_name = "127.0.0.1",
     .rc = TLSOCK_EVERIFY,
     .message = "IP address mismatch: the certificate has no subjectAltName"},
};

/* The other implementation than the one the matrix gives @p role (itself with only one). */
static int other_impl(int role)
{
    int impl = ts_role_impl(role);

    if (impl == TLSOCK_IMPL_DEFAULT) {
        impl = tlsock_default_impl();
    }
    int other = impl == TLSOCK_IMPL_OPENSSL ? TLSOCK_IMPL_GNUTLS : TLSOCK_IMPL_OPENSSL;
    return tlsock_impl_available(other) ? other : impl;
}

static void test_table(void **state)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct trust_case *c = &cases[i];
        struct tlsock_opts copts = ts_opts();
        struct ts_pair *p;

        print_message("%s\n", c->what);
        ts_pair_renew(state, i);
        p = *state;
        struct tlsock_ctx *ctx = make_contexts(p, c->side, c->cert);
        int role = c->side == CLIENT_CHECKS ? TLSOCK_CLIENT : TLSOCK_SERVER;
        if (c->replay) {
            TS_ASSERT_RC(tlsock_ctx_set_impl(ctx, other_impl(role)), 0);
        }
        add_crls(ctx, c->crls, c->how);
        if (c->replay) {
            /* Back to the matrix's implementation: the CRLs are applied again. */
            TS_ASSERT_RC_MSG(tlsock_ctx_set_impl(ctx, ts_role_impl(role)), 0,
                             tlsock_ctx_errmsg(ctx));
        }
        if (c->crl_mode != 0) {
            TS_ASSERT_RC(tlsock_ctx_set_crl_mode(ctx, c->crl_mode), 0);
        }
        if (c->pin_a != NULL) {
            TS_ASSERT_RC_MSG(tlsock_ctx_add_pin(ctx, c->pin_a), 0, tlsock_ctx_errmsg(ctx));
        }
        if (c->pin_b != NULL) {
            TS_ASSERT_RC_MSG(tlsock_ctx_add_pin(ctx, c->pin_b), 0, tlsock_ctx_errmsg(ctx));
        }
        if (c->depth_set) {
            TS_ASSERT_RC(tlsock_ctx_set_verify_depth(ctx, c->depth), 0);
        }
        copts.verify_name = c->verify_name != NULL ? c->verify_name : TS_PAIR_NAME;
        TS_ASSERT_RC(ts_pair_attach(p, &copts, NULL), 0);
        (void)ts_pair_handshake(p);
        check_outcome(p, c->side, c->rc, c->message, c->peer_alert);
    }
}

/* ---- the verify callback --------------------------------------------------------------------- */

/* What the callback saw and what it answers. */
struct seen {
    int calls;
    const char *reject; /* NULL: accept; else the reason to reject with ("" for none) */
    struct tlsock_conn *conn;
    int role;
    int result;
    char message[TLSOCK__ERRMSG_SIZE];
    char verify_name[64];
    bool has_verify_name;
    size_t peer_len;
    size_t verified_len;
    bool leaf_is_expected; /* peer_chain[0] is the DER of `leaf` below */
    bool anchor_is_ca;     /* the verified chain ends with the CA's DER */
    bool leaf_names_cn;    /* the leaf's DER holds `cn` */
    const unsigned char *leaf;
    size_t leaf_len;
    const char *cn;
};

static bool same_der(const struct tlsock_cert_der *cert, const unsigned char *der, size_t len)
{
    return cert->len == len && memcmp(cert->der, der, len) == 0;
}

static int verify_cb(const struct tlsock_verify_info *info, void *user, char *reason,
                     size_t reason_size)
{
    struct seen *s = user;

    s->calls++;
    s->conn = info->conn;
    s->role = info->role;
    s->result = info->result;
    snprintf(s->message, sizeof(s->message), "%s", info->message);
    s->has_verify_name = info->verify_name != NULL;
    snprintf(s->verify_name, sizeof(s->verify_name), "%s",
             info->verify_name != NULL ? info->verify_name : "");
    s->peer_len = info->peer_chain_len;
    s->verified_len = info->verified_chain_len;
    if (info->peer_chain_len > 0) {
        const struct tlsock_cert_der *leaf = &info->peer_chain[0];
        s->leaf_is_expected = same_der(leaf, s->leaf, s->leaf_len);
        s->leaf_names_cn = memmem(leaf->der, leaf->len, s->cn, strlen(s->cn)) != NULL;
    }
    if (info->verified_chain_len > 0) {
        s->anchor_is_ca =
            same_der(&info->verified_chain[info->verified_chain_len - 1], der_ca.der, der_ca.len);
    }
    if (s->reject == NULL) {
        return 0;
    }
    snprintf(reason, reason_size, "%s", s->reject);
    return 1;
}

/*
 * A trust anchor need not be self-signed: a context that trusts an intermediate CA alone accepts
 * the chains under it, as a server's and as a client's, on every pair. OpenSSL's verification
 * went on to look for a root and refused ("unable to get issuer certificate"), GnuTLS's accepted.
 */
static void test_intermediate_as_anchor(void **state)
{
    struct ts_pair *p = *state;
    struct tlsock__pem_pair client = {0};
    const char *inter = certs[CERT_INTER].cert;

    /* The client trusts the intermediate only; the server sends the leaf and the intermediate. */
    TS_ASSERT_RC(ts_ctx_new(TLSOCK_SERVER, &p->sctx), 0);
    set_cert(p->sctx, CERT_INTER_LEAF);
    TS_ASSERT_RC(ts_client_ctx_new(inter, &p->cctx), 0);
    TS_ASSERT_RC(ts_pair_attach(p, NULL, NULL), 0);
    TS_ASSERT_RC_MSG(ts_pair_handshake(p), 0, p->client_msg);

    /* A server requiring client certificates under the intermediate, trusting it alone. */
    ts_pair_release(p);
    assert_int_equal(
        ts_leaf_make(&certs[CERT_INTER], "inter-client", NULL, TLSOCK__EKU_CLIENT, &client), 0);
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &p->sctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_ca_mem(p->sctx, inter, strlen(inter)), 0);
    TS_ASSERT_RC(tlsock_ctx_set_verify(p->sctx, TLSOCK_VERIFY_REQUIRED), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &p->cctx), 0);
    size_t len = strlen(client.cert) + strlen(inter) + 1;
    char *chain = malloc(len);
    assert_non_null(chain);
    snprintf(chain, len, "%s%s", client.cert, inter);
    int rc = tlsock_ctx_set_cert_mem(p->cctx, chain, strlen(chain), client.key, strlen(client.key));
    free(chain);
    free(client.cert);
    free(client.key);
    TS_ASSERT_RC_MSG(rc, 0, tlsock_ctx_errmsg(p->cctx));
    TS_ASSERT_RC(ts_pair_attach(p, NULL, NULL), 0);
    TS_ASSERT_RC_MSG(ts_pair_handshake(p), 0, p->server_msg);
}

/* The client verifies the chain leaf, intermediate, root (CERT_INTER_LEAF). */
static struct seen *client_callback(struct ts_pair *p, struct seen *seen, const char *verify_name)
{
    struct tlsock_opts copts = ts_opts();

    seen->leaf = der_inter_leaf.der;
    seen->leaf_len = der_inter_leaf.len;
    seen->cn = "inter-leaf";
    struct tlsock_ctx *ctx = make_contexts(p, CLIENT_CHECKS, CERT_INTER_LEAF);
    TS_ASSERT_RC(tlsock_ctx_set_verify_callback(ctx, verify_cb, seen), 0);
    copts.verify_name = verify_name;
    TS_ASSERT_RC(ts_pair_attach(p, &copts, NULL), 0);
    (void)ts_pair_handshake(p);
    return seen;
}

static void test_callback_accepts(void **state)
{
    struct ts_pair *p = *state;
    struct seen seen = {0};

    client_callback(p, &seen, TS_PAIR_NAME);
    check_outcome(p, CLIENT_CHECKS, 0, NULL, NULL);
    assert_int_equal(seen.calls, 1);
    assert_ptr_equal(seen.conn, p->client);
    assert_int_equal(seen.role, TLSOCK_CLIENT);
    assert_int_equal(seen.result, 0);
    assert_string_equal(seen.message, "ok");
    assert_true(seen.has_verify_name);
    assert_string_equal(seen.verify_name, TS_PAIR_NAME);
    /* Sent: the leaf and the intermediate; verified: those and the root. */
    assert_int_equal(seen.peer_len, 2);
    assert_int_equal(seen.verified_len, 3);
    assert_true(seen.leaf_is_expected);
    assert_true(seen.leaf_names_cn);
    assert_true(seen.anchor_is_ca);
}

static void test_callback_rejects(void **state)
{
    struct ts_pair *p = *state;
    struct seen seen = {.reject = "not on my list"};

    client_callback(p, &seen, TS_PAIR_NAME);
    check_outcome(p, CLIENT_CHECKS, TLSOCK_EVERIFY,
                  "rejected by the verify callback: not on my list", "bad_certificate");
    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.result, 0);
    /* The handshake's failure is sticky and still says why. */
    TS_ASSERT_RC(tlsock_handshake(p->client), TLSOCK_EVERIFY);
    TS_ASSERT_CONTAINS(tlsock_conn_errmsg(p->client), "not on my list");
}

static void test_callback_rejects_without_reason(void **state)
{
    struct ts_pair *p = *state;
    struct seen seen = {.reject = ""};

    client_callback(p, &seen, TS_PAIR_NAME);
    check_outcome(p, CLIENT_CHECKS, TLSOCK_EVERIFY,
                  "rejected by the verify callback: no reason given", NULL);
    assert_int_equal(seen.calls, 1);
}

/* A failed verification is shown to the callback, which cannot turn it into a success. */
static void test_callback_sees_failure(void **state)
{
    struct ts_pair *p = *state;
    struct seen seen = {0};

    client_callback(p, &seen, "www.example.com");
    check_outcome(p, CLIENT_CHECKS, TLSOCK_EVERIFY, "hostname mismatch", NULL);
    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.result, TLSOCK_EVERIFY);
    TS_ASSERT_CONTAINS(seen.message, "hostname mismatch");
    assert_string_equal(seen.message, p->client_msg);
    assert_int_equal(seen.peer_len, 2);
    assert_true(seen.leaf_is_expected);
    assert_int_equal(seen.verified_len, 0);
}

/* The callback comes after the pins and sees their verdict. */
static void test_callback_after_pins(void **state)
{
    struct ts_pair *p = *state;
    struct seen seen = {0};

    seen.leaf = der_inter_leaf.der;
    seen.leaf_len = der_inter_leaf.len;
    seen.cn = "inter-leaf";
    struct tlsock_ctx *ctx = make_contexts(p, CLIENT_CHECKS, CERT_INTER_LEAF);
    TS_ASSERT_RC(tlsock_ctx_add_pin(ctx, pins[PIN_OTHER_CA]), 0);
    TS_ASSERT_RC(tlsock_ctx_set_verify_callback(ctx, verify_cb, &seen), 0);
    TS_ASSERT_RC(ts_pair_attach(p, NULL, NULL), 0);
    (void)ts_pair_handshake(p);
    check_outcome(p, CLIENT_CHECKS, TLSOCK_EVERIFY, "no pinned key", NULL);
    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.result, TLSOCK_EVERIFY);
    TS_ASSERT_CONTAINS(seen.message, "no pinned key");
}

static void test_callback_on_server(void **state)
{
    struct ts_pair *p = *state;
    struct seen seen = {.reject = "client not allowed"};

    seen.leaf = der_client.der;
    seen.leaf_len = der_client.len;
    seen.cn = TS_CLIENT_CN;
    struct tlsock_ctx *ctx = make_contexts(p, SERVER_CHECKS, CERT_CLIENT);
    TS_ASSERT_RC(tlsock_ctx_set_verify_callback(ctx, verify_cb, &seen), 0);
    TS_ASSERT_RC(ts_pair_attach(p, NULL, NULL), 0);
    (void)ts_pair_handshake(p);
    check_outcome(p, SERVER_CHECKS, TLSOCK_EVERIFY,
                  "rejected by the verify callback: client not allowed", NULL);
    assert_int_equal(seen.calls, 1);
    assert_ptr_equal(seen.conn, p->server);
    assert_int_equal(seen.role, TLSOCK_SERVER);
    assert_false(seen.has_verify_name);
    /* The leaf; an OpenSSL client also sends the CA it built its chain with. */
    assert_true(seen.peer_len >= 1);
    assert_true(seen.leaf_is_expected);
    assert_true(seen.leaf_names_cn);
    assert_int_equal(seen.verified_len, 2);
    assert_true(seen.anchor_is_ca);
}

/* A server whose optional client certificate is absent has nothing to show the callback. */
static void test_callback_not_called_without_certificate(void **state)
{
    struct ts_pair *p = *state;
    struct seen seen = {.reject = "no"};

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &p->sctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_ca_mem(p->sctx, ts_pki.ca.cert, strlen(ts_pki.ca.cert)), 0);
    TS_ASSERT_RC(tlsock_ctx_set_verify(p->sctx, TLSOCK_VERIFY_OPTIONAL), 0);
    TS_ASSERT_RC(tlsock_ctx_set_verify_callback(p->sctx, verify_cb, &seen), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &p->cctx), 0);
    TS_ASSERT_RC(ts_pair_attach(p, NULL, NULL), 0);
    (void)ts_pair_handshake(p);
    check_outcome(p, SERVER_CHECKS, 0, NULL, NULL);
    assert_int_equal(seen.calls, 0);
}

/* ---- setters --------------------------------------------------------------------------------- */

/* Checks that would never run are refused when the context freezes. */
static void test_checks_need_verification(void **state)
{
    struct ts_pair *p = *state;
    struct tlsock_ctx *ctx = NULL;

    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &p->sctx), 0);
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &p->cctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_verify(p->cctx, TLSOCK_VERIFY_NONE), 0);
    TS_ASSERT_RC(tlsock_ctx_add_pin(p->cctx, pins[PIN_SERVER]), 0);
    TS_ASSERT_RC(ts_pair_attach(p, NULL, NULL), TLSOCK_ECONFIG);
    TS_ASSERT_CONTAINS(tlsock_errmsg(), "does not verify its peer");

    /* A server does not verify by default: a CRL alone is a mistake too. */
    TS_ASSERT_RC(ts_server_ctx_new(&ts_pki.server, &ctx), 0);
    TS_ASSERT_RC(tlsock_ctx_set_crl_mode(ctx, TLSOCK_CRL_LEAF), 0);
    struct tlsock_conn *conn = NULL;
    TS_ASSERT_RC(tlsock_attach_mem(ctx, NULL, &conn), TLSOCK_ECONFIG);
    assert_null(conn);
    tlsock_ctx_free(ctx);
}

static void test_setters(void **state)
{
    struct tlsock_ctx *ctx = NULL;
    char path[256];
    static const char *const bad_pins[] = {
        "",
        "sha256/",
        "sha256/AAAA",
        "md5/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
        /* 32 bytes and two bits that are not zero */
        "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV=",
        "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSu!U=",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
        "g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "e3::b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    };

    (void)state;
    TS_ASSERT_RC(ts_ctx_new(TLSOCK_CLIENT, &ctx), 0);
    for (size_t i = 0; i < sizeof(bad_pins) / sizeof(bad_pins[0]); i++) {
        TS_ASSERT_RC_MSG(tlsock_ctx_add_pin(ctx, bad_pins[i]), TLSOCK_EINVAL, bad_pins[i]);
        TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(ctx), "bad pin");
    }
    TS_ASSERT_RC(tlsock_ctx_add_pin(ctx, NULL), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_add_pin(ctx, "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="), 0);
    TS_ASSERT_RC(tlsock_ctx_add_pin(ctx, "sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="), 0);
    TS_ASSERT_RC(
        tlsock_ctx_add_pin(ctx, "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"),
        0);
    TS_ASSERT_RC(tlsock_ctx_add_pin(ctx, "e3:b0:c4:42:98:fc:1c:14:9a:fb:f4:c8:99:6f:b9:24:27:ae:"
                                         "41:e4:64:9b:93:4c:a4:95:99:1b:78:52:b8:55"),
                 0);
    TS_ASSERT_RC(tlsock_ctx_set_verify_depth(ctx, -2), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_set_verify_depth(ctx, -1), 0);
    TS_ASSERT_RC(tlsock_ctx_set_crl_mode(ctx, 0), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_set_crl_mode(ctx, 3), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_add_crl_mem(ctx, NULL, 0), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_add_crl_mem(ctx, "not a CRL", 9), TLSOCK_EX509_LOOKUP);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(ctx), "no CRL");
    /* A certificate is not a CRL. */
    TS_ASSERT_RC(tlsock_ctx_add_crl_mem(ctx, ts_pki.ca.cert, strlen(ts_pki.ca.cert)),
                 TLSOCK_EX509_LOOKUP);
    ts_workdir_path(&wd, "no-such.crl", path, sizeof(path));
    TS_ASSERT_RC(tlsock_ctx_add_crl_file(ctx, path), TLSOCK_EX509_LOOKUP);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(ctx), path);
    ts_workdir_path(&wd, "root-ca.pem", path, sizeof(path));
    TS_ASSERT_RC(tlsock_ctx_add_crl_file(ctx, path), TLSOCK_EX509_LOOKUP);
    TS_ASSERT_CONTAINS(tlsock_ctx_errmsg(ctx), path);
    ts_workdir_path(&wd, "root.pem", path, sizeof(path));
    TS_ASSERT_RC(tlsock_ctx_add_crl_file(ctx, path), 0);
    TS_ASSERT_RC(tlsock_ctx_set_verify_callback(ctx, verify_cb, NULL), 0);
    TS_ASSERT_RC(tlsock_ctx_set_verify_callback(ctx, NULL, NULL), 0);
    tlsock_ctx_free(ctx);

    /* Frozen: every trust setter refuses. */
    struct tlsock_conn *conn = NULL;
    struct tlsock_opts opts = ts_opts();
    opts.verify_name = TS_PAIR_NAME;
    TS_ASSERT_RC(ts_client_ctx_new(ts_pki.ca.cert, &ctx), 0);
    TS_ASSERT_RC(tlsock_attach_mem(ctx, &opts, &conn), 0);
    TS_ASSERT_RC(tlsock_ctx_add_pin(ctx, pins[PIN_SERVER]), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_add_crl_file(ctx, path), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_set_crl_mode(ctx, TLSOCK_CRL_CHAIN), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_set_verify_depth(ctx, 3), TLSOCK_EINVAL);
    TS_ASSERT_RC(tlsock_ctx_set_verify_callback(ctx, verify_cb, NULL), TLSOCK_EINVAL);
    tlsock_close(conn);
    tlsock_ctx_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_table, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_intermediate_as_anchor, ts_pair_setup,
                                        ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_callback_accepts, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_callback_rejects, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_callback_rejects_without_reason, ts_pair_setup,
                                        ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_callback_sees_failure, ts_pair_setup,
                                        ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_callback_after_pins, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_callback_on_server, ts_pair_setup, ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_callback_not_called_without_certificate, ts_pair_setup,
                                        ts_pair_teardown),
        cmocka_unit_test_setup_teardown(test_checks_need_verification, ts_pair_setup,
                                        ts_pair_teardown),
        cmocka_unit_test(test_setters),
    };

    return cmocka_run_group_tests_name("trust", tests, make_all, free_all);
}
