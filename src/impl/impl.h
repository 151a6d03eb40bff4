/*
 * The private vtable every TLS implementation fills in. Nothing above this line knows an
 * implementation's types: contexts and sessions are `void *` here.
 *
 * Rules for implementations:
 *   - Operations return 0, TLSOCK_EWANT_READ / TLSOCK_EWANT_WRITE (retry when the fd is
 *     readable / writable), or a negative TLSOCK_E* code with the reason written to @p err.
 *   - They never sleep, never poll, never touch a socket and never read a clock: bytes move
 *     through the core's transport (conn params), and the drivers do the waiting.
 *   - An operation the implementation cannot do is NULL and its capability bit is clear.
 */
#ifndef TLSOCK_IMPL_H
#define TLSOCK_IMPL_H

#include <stdbool.h>
#include <stddef.h>

#include "base/base.h"
#include "impl/ticket_keys.h"
#include "transport/transport.h"

/*
 * The checks a context adds to verification (include/tlsock.h, "Trust"), owned by the core's
 * context and read by its sessions, which it outlives. Read-only once the context is frozen.
 */
struct tlsock__trust {
    int crl_mode;              /* 0: no revocation check; TLSOCK_CRL_LEAF or TLSOCK_CRL_CHAIN */
    unsigned char (*pins)[32]; /* SHA-256 of pinned SubjectPublicKeyInfos */
    size_t pin_count;
    int max_depth; /* intermediates allowed in the verified chain; -1: no limit */
    tlsock_verify_fn callback;
    void *callback_user;
    int ocsp_mode; /* clients: enum tlsock_ocsp_mode (0, TLSOCK_OCSP_OFF: no staple asked for) */
};

/* A certificate's key, as far as choosing a chain for a client goes. */
enum tlsock__sign_kind {
    TLSOCK__SIGN_OTHER, /* e.g. Ed448: offered to every client */
    TLSOCK__SIGN_RSA,
    TLSOCK__SIGN_EC,
    TLSOCK__SIGN_ED25519,
};

/* The ECDSA curves the selection tells apart, as TLS named groups (RFC 8446 section 4.2.7). */
enum tlsock__ec_group {
    TLSOCK__GROUP_SECP256R1 = 23,
    TLSOCK__GROUP_SECP384R1 = 24,
    TLSOCK__GROUP_SECP521R1 = 25,
};

/* What the server-side selection knows of one certificate: its key and its DNS SANs. */
struct tlsock__cert_facts {
    int key_kind;      /* enum tlsock__sign_kind */
    unsigned ec_group; /* an ECDSA key's curve (enum tlsock__ec_group); 0: not ECDSA, or another
                          curve */
    char *names;       /* the leaf's DNS subjectAltNames, lowercase, each NUL-terminated, then an
                          empty one; malloc()ed; NULL: none */
    size_t names_len;  /* bytes before that empty one */
};

/*
 * A server context's certificates, in the order added (the implementation numbers its chains the
 * same way), the default and the application's SNI callback (include/tlsock.h, "Several
 * certificates"). Owned by the core's context; read-only once it is frozen, and it outlives its
 * sessions. certsel.c chooses among them.
 */
struct tlsock__certsel {
    struct tlsock__cert_facts *certs;
    size_t count;
    size_t default_index;
    tlsock_sni_fn callback;
    void *callback_user;
};

/*
 * Resumption (core/session.c, docs/sessions.md): the core's hooks, one set per context and the
 * same for all its connections (memory per idle connection: a session keeps a pointer to them,
 * never a copy). Read-only once the context is frozen; they outlive its sessions.
 */
struct tlsock__session_hooks {
    /*
     * Clients: called with each new resumable session, serialized the same way as an offer
     * (copied by the core): at the end of every TLS 1.2 handshake, full or resumed, and for every
     * TLS 1.3 NewSessionTicket. @p version: 0x0303, 0x0304. @p native: NULL, or the session as an
     * object of the implementation's own that no connection uses, whose reference the core takes
     * over (freed with session_free, or given back as offer_native). NULL: none wanted.
     * An implementation with conn_session_bytes may give only @p native (@p data NULL, @p len 0):
     * only an export needs the bytes, which the core then asks conn_session_bytes for, and
     * OpenSSL's encoding of a session costs a resumed client 1.5% of its instructions per ticket.
     */
    void (*on_session)(struct tlsock_conn *owner, const unsigned char *data, size_t len,
                       int version, void *native);
    /*
     * Servers: the context's TLS 1.2 session-ID cache (session ID -> serialized session), the
     * in-process one or the application's store (core/store.c); NULL server_get: off. Servers
     * never put TLS 1.3 sessions in it. server_get never waits: with a store it only reads what
     * the core looked up before the implementation saw the ClientHello.
     */
    void (*server_put)(struct tlsock_conn *owner, const unsigned char *id, size_t id_len,
                       const unsigned char *data, size_t len);
    bool (*server_get)(struct tlsock_conn *owner, const unsigned char *id, size_t id_len,
                       unsigned char **data, size_t *len); /* malloc'd copy in *data */
    void (*server_remove)(struct tlsock_conn *owner, const unsigned char *id, size_t id_len);
    int64_t server_lifetime_ns; /* how long a stored server session lasts */
};

/* What a session keeps of the core's resumption (copied into the implementation's session). */
struct tlsock__session_io {
    const struct tlsock__session_hooks *hooks; /* never NULL */
    struct tlsock_conn *owner;                 /* the first argument of every hook */
};

/* Clients: the session to offer, read only in conn_new. */
struct tlsock__session_offer {
    /* The native serialized session (i2d_SSL_SESSION, gnutls_session_get_data2), NULL for none
     * (or only @p native). One that does not load is ignored, never an error. */
    const unsigned char *data;
    size_t len;
    /*
     * The same session as the implementation's own object, made by this implementation
     * (on_session's @p native), to offer without decoding @p data again; NULL: decode @p data.
     * The core keeps its reference and frees it after conn_new (the session takes its own).
     */
    void *native;
};

/* Drops session @p id from the session-ID cache of the core's context @p owner. */
typedef void (*tlsock__session_remove_fn)(struct tlsock_ctx *owner, const unsigned char *id,
                                          size_t id_len);

struct tlsock__keylog;

/* What a new session needs to know; strings are only read during conn_new. */
struct tlsock__conn_params {
    int role; /* TLSOCK_CLIENT or TLSOCK_SERVER */
    /*
     * The connection's transport, owned by the core and valid until conn_free: the session reads
     * and writes every byte through it (tlsock__transport_read/write/writev), and maps a
     * transport failure with tlsock__transport_fail/retry_code.
     */
    struct tlsock__transport *transport;
    const char *servername;  /* client SNI, NULL for none */
    const char *verify_name; /* client: DNS name or IP literal to verify, NULL for none */
    int verify_mode;         /* enum tlsock_verify */
    /* The context's trust checks (trust.h runs the shared ones); valid until conn_free. */
    const struct tlsock__trust *trust;
    struct tlsock_conn *owner; /* the public connection, shown to the verify callback */
    /* Servers: the context's certificates, to choose from per ClientHello (certsel.h). */
    const struct tlsock__certsel *certsel;
    /*
     * Servers: a DER OCSP response to staple when the client asks for one (NULL, 0: none), owned
     * by the core's context and valid until conn_free. Never checked or fetched here.
     */
    const unsigned char *ocsp_response;
    size_t ocsp_response_len;
    struct tlsock__session_io session;  /* resumption */
    struct tlsock__session_offer offer; /* clients: the session to offer */
    /* The context's key log (keylog.h), valid until conn_free; NULL when it has none. */
    const struct tlsock__keylog *keylog;
};

/* Storage behind struct tlsock_info, filled by get_info; pointers set by the core. */
struct tlsock__info_buf {
    char version[32];
    char cipher[96];
    char alpn[256];
    char servername[256];
    char peer_subject[512];
    char peer_sans[1024];
    char peer_fingerprint[TLSOCK_FINGERPRINT_SIZE];
    char verify_message[160];
    int verify_result;
    bool resumed;
    char peer_issuer[512];
    char peer_serial[48]; /* tlsock__text_serial() */
    int64_t peer_not_before;
    int64_t peer_not_after;
    char peer_spki_sha256[TLSOCK_FINGERPRINT_SIZE];
    char group[32];       /* tlsock__text_group() */
    char peer_sigalg[48]; /* tlsock__text_sigalg() */
    /* The certificates the peer sent, leaf first: malloc'd, each DER malloc'd; the core frees. */
    struct tlsock_cert_der *peer_chain;
    size_t peer_chain_len;
};

/* Extended key usage bits for generated certificates. */
enum {
    TLSOCK__EKU_SERVER = 1 << 0,
    TLSOCK__EKU_CLIENT = 1 << 1,
    TLSOCK__EKU_OCSP = 1 << 2, /* OCSPSigning: a delegated OCSP responder */
};

/*
 * A certificate to generate (development CA, server and test certificates). Validity is given
 * as offsets in seconds from now, so tests can make expired or not-yet-valid certificates.
 */
struct tlsock__cert_spec {
    const char *common_name;     /* subject CN; NULL: "tlsock development" */
    const char *hosts;           /* comma-separated DNS names and IPs for subjectAltName, or NULL */
    const char *key_type;        /* "ec-p256" (default when NULL), "rsa-2048", "rsa-1024" */
    bool is_ca;                  /* basicConstraints CA:TRUE, keyCertSign */
    long not_before_s;           /* offset from now, e.g. -3600 */
    long not_after_s;            /* offset from now, e.g. 30 * 86400 */
    int eku;                     /* TLSOCK__EKU_* bits; 0: no extendedKeyUsage extension */
    bool must_staple;            /* TLS feature extension status_request (RFC 7633) */
    const char *issuer_cert_pem; /* NULL: self-signed */
    const char *issuer_key_pem;
    unsigned key_usage;        /* keyUsage bits (1 << TLSOCK__KU_* of certspec.h); 0: the default */
    bool sha1;                 /* signed with SHA-1 instead of SHA-256 (tests: a weak signature) */
    const char *permitted_dns; /* a CA's nameConstraints: the one DNS subtree it may issue for */
};

/* A generated certificate and key, NUL-terminated PEM, owned by the caller (free()). */
struct tlsock__pem_pair {
    char *cert;
    char *key;
};

/*
 * A private key's passphrase, as the core was given it: asked for only when a key or bundle turns
 * out to be protected, through tlsock__pass_get() (keys.c), which calls the application's
 * callback at most once and keeps what it gave in @c buf for the rest of the load.
 */
struct tlsock__pass {
    const char *given;       /* the passphrase string set, or NULL */
    tlsock_passphrase_fn cb; /* else the application's callback, or NULL */
    void *user;
    bool asked; /* tlsock__pass_get() ran */
    int rc;     /* its outcome: 0 (buf holds the passphrase) or TLSOCK_ECONFIG */
    int cb_rc;  /* what the callback returned */
    size_t len;
    char buf[TLSOCK_PASSPHRASE_MAX + 1]; /* NUL-terminated; wiped by the core after the load */
};

/*
 * The passphrase in *@p out (NUL-terminated), asked for the first time it is needed; 0, or
 * TLSOCK_ECONFIG with the reason in @p err (none set, the callback refused or gave a bad
 * length or a NUL). Later calls return the same outcome (writing the same message).
 */
int tlsock__pass_get(struct tlsock__pass *pass, const char **out, struct tlsock__err *err);

/*
 * The password of a PKCS#12 bundle, in *@p out: the first that @p opens says opens the bundle
 * (its MAC verifies with it, or for a bundle without a MAC its key reads with it), tried in
 * order: empty, absent (NULL), then the passphrase (asked for only then). A bundle without a MAC
 * (@p has_mac) that needs a password is refused: nothing protects its integrity, and OpenSSL 3.0
 * cannot read one. 0, or TLSOCK_ECONFIG with the reason in @p err.
 */
int tlsock__pkcs12_password(bool (*has_mac)(void *p12),
                            bool (*opens)(void *p12, const char *password), void *p12,
                            struct tlsock__pass *pass, const char **out, struct tlsock__err *err);

/* Messages every implementation uses, so the same failure reads the same on each. */
#define TLSOCK__MSG_WRONG_PASS     "wrong passphrase (the key cannot be decrypted)"
#define TLSOCK__MSG_WRONG_P12_PASS "wrong passphrase (the PKCS#12 bundle does not open with it)"
#define TLSOCK__MSG_P12_NO_MAC                                                                     \
    "the PKCS#12 bundle is encrypted but has no MAC (`openssl pkcs12 -nomac`): not supported, "    \
    "export it with a MAC"
#define TLSOCK__MSG_KEY_MISMATCH "private key does not match the certificate"

/* Whether @p data looks like PEM (a "-----BEGIN " line), else it is taken as DER. */
bool tlsock__is_pem(const char *data, size_t len);

/* What ctx_set_cert loads. */
enum tlsock__cert_kind {
    TLSOCK__CERT_PAIR,   /* chain and key, each PEM or DER */
    TLSOCK__CERT_PKCS12, /* a PKCS#12 bundle (DER) in chain; key unused */
};

struct tlsock__cert_src {
    int kind; /* enum tlsock__cert_kind */
    bool add; /* true: one more chain (the next index); false: replaces every earlier one */
    /* Filled in with what the selection needs (the caller frees names), or NULL (a replay). */
    struct tlsock__cert_facts *facts;
    const char *chain;
    size_t chain_len;
    const char *key;
    size_t key_len;
    struct tlsock__pass *pass; /* never NULL */
};

struct tlsock__impl {
    const char *name; /* "openssl" */
    int id;           /* enum tlsock_impl */
    unsigned caps;    /* TLSOCK_CAP_* */
    /*
     * The implementation hands a flight to the transport in several writes (GnuTLS pushes a TLS
     * 1.3 client's compatibility ChangeCipherSpec on its own): the core collects a client's
     * handshake step's records on a socket and sends them at once, when the implementation says
     * the flight is complete (tlsock__transport_end_flight) or the step ends. OpenSSL writes a
     * flight in one write.
     */
    bool flight_in_pieces;
    const char *(*version)(void);
    /* The native handles behind tlsock_ctx_native() and tlsock_conn_native(). */
    void *(*ctx_native)(void *nctx);
    void *(*conn_native)(void *tls);

    /* Contexts. ctx_new applies the secure defaults (protocols 1.2-1.3, "secure" ciphers). */
    int (*ctx_new)(int role, void **out, struct tlsock__err *err);
    void (*ctx_free)(void *nctx);
    int (*ctx_set_protocols)(void *nctx, int min_version, int max_version, struct tlsock__err *err);
    int (*ctx_set_ciphers)(void *nctx, const char *policy, struct tlsock__err *err);
    int (*ctx_add_ca_dir)(void *nctx, const char *path, struct tlsock__err *err);
    int (*ctx_add_ca_mem)(void *nctx, const char *pem, size_t len, struct tlsock__err *err);
    int (*ctx_add_ca_system)(void *nctx, struct tlsock__err *err);
    /*
     * Replaces this side's certificates and keys with @p src, or adds it after them (src->add);
     * the chains are numbered in that order from 0. Messages say what failed without naming where
     * the bytes came from (the core adds the file names); the same failure gives the same words on
     * every implementation (TLSOCK__MSG_*, tlsock__pass_get()).
     */
    int (*ctx_set_cert)(void *nctx, const struct tlsock__cert_src *src, struct tlsock__err *err);
    /* Adds CRLs: PEM (one or more) or one DER CRL; TLSOCK_EX509_LOOKUP when there is none. */
    int (*ctx_add_crl)(void *nctx, const void *data, size_t len, struct tlsock__err *err);
    /* Wire-format ALPN list (length-prefixed names); len 0 clears. */
    int (*ctx_set_alpn)(void *nctx, const unsigned char *wire, size_t len, struct tlsock__err *err);
    /*
     * Servers, once at freeze: session tickets as @p t says (off, or on with its lifetime and
     * keys, ticket_keys.h), and never early data. @p t is owned by the core's context and
     * outlives the native context.
     */
    int (*ctx_set_tickets)(void *nctx, const struct tlsock__tickets *t, struct tlsock__err *err);
    /*
     * Servers, once at freeze: how to drop a session from the context's session-ID cache when
     * the implementation drops one outside any connection (OpenSSL's remove
     * callback is given only its SSL_CTX): @p remove(@p owner, id, id_len), from any thread.
     * @p owner outlives the native context. NULL: the implementation removes through
     * the session hooks' server_remove only.
     */
    void (*ctx_set_session_remove)(void *nctx, tlsock__session_remove_fn remove,
                                   struct tlsock_ctx *owner);
    /*
     * Once at freeze, before the configure callback: whether the context keeps a key log. An
     * implementation that formats key log lines itself (OpenSSL) does that work only when
     * @p on; NULL: the implementation hands over its secrets per connection at no cost.
     */
    void (*ctx_set_keylog)(void *nctx, bool on);

    /* Sessions. */
    int (*conn_new)(void *nctx, const struct tlsock__conn_params *params, void **out,
                    struct tlsock__err *err);
    void (*conn_free)(void *tls);
    int (*handshake)(void *tls, struct tlsock__err *err);
    /* Reads at least one byte; TLSOCK_ECLOSED on close_notify, TLSOCK_ETRUNCATED on bare EOF. */
    int (*read)(void *tls, void *buf, size_t len, size_t *nread, struct tlsock__err *err);
    /* Writes some bytes (at least one on success). */
    int (*write)(void *tls, const void *buf, size_t len, size_t *nwritten, struct tlsock__err *err);
    /* Sends close_notify; WANT codes until it is flushed. */
    int (*shutdown)(void *tls, struct tlsock__err *err);
    /*
     * Describes the session; 0, or an error (TLSOCK_ENOMEM when a description could not be made
     * for want of memory): a field is never left out quietly.
     */
    int (*get_info)(void *tls, struct tlsock__info_buf *out, struct tlsock__err *err);
    /* After the handshake: the session was resumed. Cheap: no allocation, no formatting. */
    bool (*resumed)(void *tls);
    /*
     * A server in its handshake that has sent its Finished, waits for the client's, and sends
     * nothing of its own once it has read it: TLS 1.2 resumption, or TLS 1.3 without tickets
     * (a TLS 1.3 server's tickets follow the client's Finished). Cheap: reads state only.
     */
    bool (*server_silent_after_finished)(void *tls);
    /*
     * Keying material exporter (RFC 5705, RFC 8446 7.5) after the handshake: @p context NULL
     * for none. 0, or TLSOCK_EPROTO with the implementation's reason.
     */
    int (*export_keying_material)(void *tls, const char *label, size_t label_len,
                                  const void *context, size_t context_len, void *out, size_t len,
                                  struct tlsock__err *err);
    /* Whether the exporter is bound to this handshake: TLS 1.3, or TLS 1.2 with EMS (RFC 7627). */
    bool (*exporter_bound)(void *tls);
    /* Decrypted application data that a read returns without touching the transport. */
    size_t (*pending)(void *tls);
    /*
     * A hint from a driver: @p hold true while the session is busy (keep record buffers from one
     * record to the next), false once it is idle (give them back, now and whenever they empty):
     * the blocking driver around each call, the libuv driver around each pump. NULL: the
     * implementation keeps nothing worth giving back. Not a capability: nothing observable
     * depends on it but memory use and speed.
     */
    void (*hold_buffers)(void *tls, bool hold);

    /*
     * Frees a native session of on_session's (any thread, possibly under a session
     * cache's lock: it must not call back into the core). NULL: the implementation reports none.
     */
    void (*session_free)(void *native);

    /*
     * A copy of a native session of on_session's, for a cache entry that stays after its session
     * was offered (a TLS 1.2 session): the copy goes to the connection, which may change it. NULL
     * without memory (the connection then offers nothing). Same threads and lock as session_free;
     * NULL when session_free is.
     */
    void *(*session_dup)(void *native);

    /*
     * Clients: the connection's latest session reported to on_session without its bytes,
     * serialized as an offer's data: a malloc'd copy in *@p data (the caller wipes and frees it
     * with tlsock__free_secret). 0, or TLSOCK_ENOMEM. NULL: on_session always gives the bytes.
     */
    int (*conn_session_bytes)(void *tls, unsigned char **data, size_t *len);

    /* SHA-256 of @p len bytes (the session digest of core/session.c); 0 or TLSOCK_ENOMEM. */
    int (*sha256)(const void *data, size_t len, unsigned char out[32]);

    /* Development certificates (TLSOCK_CAP_CERTGEN); NULL when not supported. */
    int (*cert_generate)(const struct tlsock__cert_spec *spec, struct tlsock__pem_pair *out,
                         struct tlsock__err *err);
    int (*cert_fingerprint)(const char *pem, size_t len, char out[TLSOCK_FINGERPRINT_SIZE],
                            struct tlsock__err *err);
    /*
     * Re-encodes the first unencrypted PEM private key of @p key_pem (PKCS#8 or traditional) as
     * encrypted PKCS#8 PEM (PBES2, AES-256-CBC) under @p pass, malloc'd NUL-terminated in
     * @p *out; TLSOCK_ECONFIG when there is no such key. Same format on every implementation.
     */
    int (*key_encrypt)(const char *key_pem, size_t len, const char *pass, char **out,
                       struct tlsock__err *err);
    /*
     * Fills @p buf with @p len bytes of the implementation's cryptographically secure generator,
     * which reseeds after fork(); 0, or TLSOCK_ESYS with its reason.
     */
    int (*random)(void *buf, size_t len, struct tlsock__err *err);
};

/*
 * The implementation new contexts use, in @p out. Only impl.c knows which ones were compiled
 * in. Returns 0, or TLSOCK_ECONFIG with the thread's message saying why there is none (such as
 * TLSOCK_IMPL naming none compiled in).
 */
int tlsock__default_impl(const struct tlsock__impl **out);
/* The implementation for an enum tlsock_impl value (DEFAULT: the default); NULL if absent. */
const struct tlsock__impl *tlsock__impl_get(int impl);

#if TLSOCK_HAVE_GNUTLS
extern const struct tlsock__impl tlsock__gnutls_impl;
#endif

#if TLSOCK_HAVE_OPENSSL
extern const struct tlsock__impl tlsock__openssl_impl;
int tlsock__openssl_cert_generate(const struct tlsock__cert_spec *spec,
                                  struct tlsock__pem_pair *out, struct tlsock__err *err);
int tlsock__openssl_cert_fingerprint(const char *pem, size_t len, char out[TLSOCK_FINGERPRINT_SIZE],
                                     struct tlsock__err *err);
int tlsock__openssl_key_encrypt(const char *key_pem, size_t len, const char *pass, char **out,
                                struct tlsock__err *err);
#endif

#endif /* TLSOCK_IMPL_H */
