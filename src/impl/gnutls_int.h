/*
 * Private definitions shared by the GnuTLS implementation's files: the context it builds in
 * gnutls_ctx.c and uses for sessions in gnutls.c.
 */
#ifndef TLSOCK_GNUTLS_INT_H
#define TLSOCK_GNUTLS_INT_H

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "impl.h"

/* A trust anchor source, kept so that a replaced credentials object can be given it again. */
struct gtls_trust {
    struct gtls_trust *next;
    int kind;   /* enum gtls_trust_kind */
    char *data; /* path, or PEM bytes */
    size_t len;
};

enum gtls_trust_kind {
    GTLS_TRUST_DIR,
    GTLS_TRUST_MEM,
    GTLS_TRUST_SYSTEM,
};

/*
 * A server's priorities with one group alone: used for a TLS 1.3 ClientHello that carries a key
 * share for that group, so that GnuTLS (which takes a group by preference and asks for its share
 * with a HelloRetryRequest) uses the share it has.
 */
struct gtls_share_prio {
    unsigned group; /* the named group's code point (IANA) */
    gnutls_priority_t prio;
};

enum { GTLS_MAX_SHARE_PRIOS = 16 };

struct gtls_ctx {
    gnutls_certificate_credentials_t cred;
    int role;
    int min_version; /* 0x0301 .. 0x0304 */
    int max_version;
    char *ciphers;          /* the policy name or raw string last set */
    gnutls_priority_t prio; /* built from ciphers and the protocol range by every setter */
    int prio_min;           /* the versions prio enables, 0 for none */
    int prio_max;
    struct gtls_share_prio share_prio[GTLS_MAX_SHARE_PRIOS]; /* servers only */
    unsigned share_prio_count;
    struct gtls_trust *trust; /* in the order added */
    bool has_cert;
    /*
     * The chains after the first (which is in cred), each in credentials of its own with the same
     * trust: a ClientHello chooses one (certsel.h) and the session takes its credentials, so that
     * GnuTLS never picks among pairs by its own rules. more[i] holds chain i + 1.
     */
    gnutls_certificate_credentials_t *more;
    size_t more_count;
    gnutls_x509_crl_t *crls; /* checked by gnutls.c itself, not given to the credentials */
    unsigned crl_count;
    gnutls_datum_t *alpn; /* the protocols, preference order; data point into alpn_wire */
    unsigned alpn_count;
    unsigned char *alpn_wire;
    const struct tlsock__tickets *tickets; /* servers: the core's, NULL when tickets are off */
};

/* A session's resumption state (gnutls_session.c); its address is the session's db pointer. */
struct gtls_sess {
    struct tlsock__session_io io;
};
/*
 * Whether a client received a NewSessionTicket not reported yet: a flag of its connection
 * (gnutls.c), with the connection's other bytes (memory per idle connection). NULL for a
 * session that is not ours.
 */
bool *tlsock__gtls_ticket_pending(gnutls_session_t session);

/* ---- resumption (gnutls_session.c) ---------------------------------------------------------- */

/*
 * Gives @p s the core's @p io (copied into @p gs, which must live as long as @p s): a server's
 * session-ID cache, or a client's ticket hook and the session to offer, @p offer (a server's
 * tickets are gnutls_tickets.c's).
 */
void tlsock__gtls_sessions_setup(gnutls_session_t s, struct gtls_sess *gs,
                                 const struct tlsock__session_io *io,
                                 const struct tlsock__session_offer *offer, int role);
/* After a handshake (@p handshake_done) or a read: a client reports a new session, if any. */
void tlsock__gtls_sessions_report(gnutls_session_t s, struct gtls_sess *gs, bool handshake_done);
int tlsock__gtls_sha256(const void *data, size_t len, unsigned char out[32]);

/* This side's certificate chain (leaf first) and key, read but not yet in credentials. */
struct gtls_cert {
    gnutls_x509_crt_t *chain; /* gnutls_malloc()ed */
    unsigned count;
    gnutls_x509_privkey_t key;
};

/*
 * Reads @p src's certificates and key (gnutls_keys.c), asking for the passphrase only when the
 * key or bundle is protected. 0, or a TLSOCK_E* code with @p out emptied.
 */
int tlsock__gtls_load_cert(const struct tlsock__cert_src *src, struct gtls_cert *out,
                           struct tlsock__err *err) TLSOCK__MUST_CHECK;
/* Frees what tlsock__gtls_load_cert() read; the object is then empty. */
void tlsock__gtls_cert_free(struct gtls_cert *cert);

/*
 * Builds ctx->prio from ctx->ciphers and the protocol range; on failure leaves the previous
 * priorities in place and returns TLSOCK_ECONFIG with the reason in @p err.
 */
int tlsock__gtls_build_priority(struct gtls_ctx *gc, const char *ciphers, int min_version,
                                int max_version, struct tlsock__err *err) TLSOCK__MUST_CHECK;

/* The priorities for a ClientHello with a key share for @p group; NULL if we have none. */
gnutls_priority_t tlsock__gtls_share_priority(const struct gtls_ctx *gc, unsigned group);

/* The credentials holding chain @p index (numbered as the core's certsel). */
gnutls_certificate_credentials_t tlsock__gtls_chain_cred(const struct gtls_ctx *gc, size_t index);

/* Context operations (gnutls_ctx.c). */
int tlsock__gtls_ctx_new(int role, void **out, struct tlsock__err *err);
void tlsock__gtls_ctx_free(void *nctx);
int tlsock__gtls_ctx_set_protocols(void *nctx, int min_version, int max_version,
                                   struct tlsock__err *err);
int tlsock__gtls_ctx_set_ciphers(void *nctx, const char *policy, struct tlsock__err *err);
int tlsock__gtls_ctx_add_ca_dir(void *nctx, const char *path, struct tlsock__err *err);
int tlsock__gtls_ctx_add_ca_mem(void *nctx, const char *pem, size_t len, struct tlsock__err *err);
int tlsock__gtls_ctx_add_ca_system(void *nctx, struct tlsock__err *err);
int tlsock__gtls_ctx_set_cert(void *nctx, const struct tlsock__cert_src *src,
                              struct tlsock__err *err);
int tlsock__gtls_ctx_add_crl(void *nctx, const void *data, size_t len, struct tlsock__err *err);
int tlsock__gtls_ctx_set_tickets(void *nctx, const struct tlsock__tickets *t,
                                 struct tlsock__err *err);
/* A server session's ticket lifetime (gnutls_tickets.c), before its handshake. */
int tlsock__gtls_tickets_start(gnutls_session_t session, const struct tlsock__tickets *t);
/*
 * From the ClientHello hook, once a session: tickets enabled under the key of the offered
 * ticket's period (@p ticket_name, NULL for none) if it is the current or the previous one, else
 * the current one's. A GnuTLS error code, or 0.
 */
int tlsock__gtls_tickets_hello(gnutls_session_t session, const struct tlsock__tickets *t,
                               const unsigned char *ticket_name);
int tlsock__gtls_ctx_set_alpn(void *nctx, const unsigned char *wire, size_t len,
                              struct tlsock__err *err);

/*
 * What the session's stapled OCSP response says about @p leaf, issued by @p issuer
 * (gnutls_ocsp.c): an enum tlsock__ocsp_finding (trust.h), or -1 without memory.
 */
int tlsock__gtls_ocsp_finding(gnutls_session_t session, gnutls_x509_crt_t leaf,
                              gnutls_x509_crt_t issuer);
/* 1 when @p leaf is must-staple (a TLS feature status_request, RFC 7633), 0 if not, -1 no memory.
 */
int tlsock__gtls_must_staple(gnutls_x509_crt_t leaf);
/*
 * The credentials' OCSP status request function (gnutls.c): the session's staple, which a
 * server sends to a client that asks for one, in TLS 1.2 and 1.3.
 */
int tlsock__gtls_staple(gnutls_session_t session, void *ptr, gnutls_datum_t *resp);

/* Development certificates (gnutls_certgen.c), as impl.h's cert_generate, cert_fingerprint
 * and key_encrypt. */
int tlsock__gtls_cert_generate(const struct tlsock__cert_spec *spec, struct tlsock__pem_pair *out,
                               struct tlsock__err *err) TLSOCK__MUST_CHECK;
int tlsock__gtls_cert_fingerprint(const char *pem, size_t len, char out[TLSOCK_FINGERPRINT_SIZE],
                                  struct tlsock__err *err) TLSOCK__MUST_CHECK;
int tlsock__gtls_key_encrypt(const char *key_pem, size_t len, const char *pass, char **out,
                             struct tlsock__err *err) TLSOCK__MUST_CHECK;

#endif /* TLSOCK_GNUTLS_INT_H */
