/*
 * The core's objects: contexts and connections. Only the core's own files (src/core/) include
 * this header; drivers and everything else use the functions of core.h.
 */
#ifndef TLSOCK_CORE_OBJECTS_H
#define TLSOCK_CORE_OBJECTS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core.h"
#include "impl/keylog.h"

/* What a context setter applied to the native context (ctx.c), kept for a change of impl. */
enum tlsock__setting_kind {
    TLSOCK__SET_PROTOCOLS,
    TLSOCK__SET_CIPHERS,
    TLSOCK__SET_CA_DIR,
    TLSOCK__SET_CA_MEM,
    TLSOCK__SET_CA_SYSTEM,
    TLSOCK__SET_CERT,
    TLSOCK__SET_ALPN,
    TLSOCK__SET_CRL,
};

struct tlsock__setting {
    struct tlsock__setting *next;
    enum tlsock__setting_kind kind;
    int min_version; /* PROTOCOLS */
    int max_version;
    char *text; /* CIPHERS policy, CA_DIR path, CA_MEM PEM, CERT chain PEM, ALPN wire list,
                   CRL PEM or DER */
    size_t text_len;
    char *key; /* CERT: the key (PEM or DER, NULL for a PKCS#12 bundle), wiped when freed */
    size_t key_len;
    int cert_kind; /* CERT: enum tlsock__cert_kind; text holds the chain or the bundle */
    char *pass;    /* CERT: the passphrase the key needed (NULL if none), wiped when freed */
    bool cert_add; /* CERT: added after the others (tlsock_ctx_add_*), else replaced them */
};

struct tlsock_ctx {
    atomic_int refs;
    atomic_bool frozen;
    pthread_mutex_t freeze_lock; /* the first connections may race to freeze */
    int role;
    const struct tlsock__impl *impl;
    void *native;
    int verify_mode;
    bool ca_set;                    /* a CA was set explicitly: no default system store */
    bool has_cert;                  /* a certificate and key were set */
    tlsock_ctx_configure_fn on_ctx; /* configure callbacks, NULL if none */
    tlsock_conn_configure_fn on_conn;
    void *configure_user;
    char *pass;                   /* tlsock_ctx_set_key_passphrase(), wiped when freed */
    tlsock_passphrase_fn pass_cb; /* or tlsock_ctx_set_key_passphrase_cb(), NULL if none */
    void *pass_user;
    int handshake_timeout;          /* ms, 0 (TLSOCK_NO_TIMEOUT) for none */
    struct tlsock__trust trust;     /* CRL mode, pins, depth, verify callback, OCSP mode */
    struct tlsock__certsel certsel; /* the certificates' names and keys, default, SNI callback */
    unsigned char *ocsp_response;   /* servers: the DER OCSP response to staple, NULL if none */
    size_t ocsp_response_len;
    struct tlsock__tickets tickets;   /* servers: session tickets (tickets.c) */
    struct tlsock__setting *settings; /* every setter's effect, in order (replayed by set_impl) */
    struct tlsock__keylog keylog;     /* callback and file; the core's, not the native context's */
    struct tlsock__err err;
    /* Resumption (session.c): client sessions or a server's TLS 1.2 session IDs; NULL: off. */
    struct tlsock__scache *sessions;
    size_t session_max;
    unsigned char session_digest[32]; /* the configuration sessions belong to, set by the freeze */
    struct tlsock__session_hooks session_hooks; /* servers: set by the freeze */
    struct tlsock_session_store store; /* servers: tlsock_ctx_set_session_store(); get NULL: none */
};

/* A client connection's resumption state (session.c). */
/* A client connection's sessions, when they are cached (one allocation with the key). */
struct tlsock__conn_sessions {
    unsigned char *last; /* the latest session reported, as a cache value; NULL: none yet */
    size_t last_len;
    size_t key_len;
    unsigned char key[]; /* where its sessions are cached */
};

/*
 * A server connection's look-up in the context's session store (store.c). What a get needs is
 * allocated when one starts (struct tlsock__store_get): most connections never make one, and an
 * idle connection keeps none.
 */
struct tlsock__conn_store {
    struct tlsock__store_get *get;   /* from the get's start until the slot is used; else NULL */
    tlsock__lookup_notify_fn notify; /* the driver's, told when a get completes; NULL: none */
    void *notify_arg;
};

/* Where a connection's TLS session is. */
enum tlsock__state {
    TLSOCK__HANDSHAKING, /* handshake not finished yet */
    TLSOCK__OPEN,        /* handshake done, data may flow */
    TLSOCK__FAILED,      /* a fatal error happened; sticky says which */
};

struct tlsock_conn {
    struct tlsock_ctx *ctx;             /* referenced */
    void *tls;                          /* the implementation's session (ctx->impl's) */
    struct tlsock__transport transport; /* every byte of ciphertext moves through it */
    int fd;                             /* the socket, also while a loop drives it; else -1 */
    int addr_fd;              /* a loop's own socket, only asked for the peer's address; else -1 */
    bool owns_fd;             /* opened by tlsock: closed when the connection ends */
    bool sent_close;          /* our close_notify is out */
    bool peer_closed;         /* the peer's close_notify arrived */
    uint8_t state;            /* enum tlsock__state (a byte: memory per idle connection) */
    int sticky;               /* fatal error code once state is FAILED */
    int saved_flags;          /* the socket's fcntl flags when tlsock took it */
    int timeout_ms;           /* per read, write, close_notify; 0: none */
    int handshake_timeout_ms; /* 0: none */
    int store_phase;        /* the store gate's (store.c): before the ClientHello, waiting, done */
    int64_t deadline_ns;    /* absolute, INT64_MAX for none */
    int64_t op_deadline_ns; /* of the blocking operation in progress */
    size_t write_done;      /* a write interrupted by a WANT code: bytes done */
    struct tlsock__buf *stash;      /* application data that arrived while detaching; or NULL */
    struct tlsock__conn_info *info; /* made by the first tlsock_conn_info(), else NULL */
    struct tlsock__err err;
    struct tlsock__conn_sessions *sessions; /* clients whose sessions are cached, else NULL */
    struct tlsock__conn_store store;
};

/* What tlsock_conn_info() returns, and the storage behind its strings. */
struct tlsock__conn_info {
    struct tlsock__info_buf buf;
    struct tlsock_info pub;
    char peer_addr[64];
    char **pem; /* the peer's certificates in PEM, each made on first use; else NULL */
};

/* Frees @p info, its chain and its PEM texts; accepts NULL. */
void tlsock__conn_info_free(struct tlsock__conn_info *info);

/* ---- resumption (session.c) ----------------------------------------------------------------- */

/* The context's default session cache (tlsock_ctx_new); 0 or TLSOCK_ENOMEM (thread's message). */
int tlsock__sessions_init(struct tlsock_ctx *ctx) TLSOCK__MUST_CHECK;
void tlsock__sessions_free(struct tlsock_ctx *ctx);
/* A new cache of @p max_entries (0: none) for a context not frozen yet; 0 or TLSOCK_ENOMEM. */
int tlsock__sessions_resize(struct tlsock_ctx *ctx, size_t max_entries) TLSOCK__MUST_CHECK;
/* The digest of the configuration sessions belong to, once by the freeze; 0 or TLSOCK_ENOMEM. */
int tlsock__sessions_freeze(struct tlsock_ctx *ctx, struct tlsock__err *err) TLSOCK__MUST_CHECK;
/* The digest of how a server verifies client certificates (session.c); 0 or TLSOCK_ENOMEM. */
int tlsock__sessions_verify_digest(const struct tlsock_ctx *ctx,
                                   unsigned char out[32]) TLSOCK__MUST_CHECK;
/*
 * Fills @p io for a new connection: a server's session-ID cache, or a client's cache key (from
 * @p port, @p host, @p sni and @p verify, "" for none) and the session to offer, taken out of
 * the cache, in *@p held and @p offer (tlsock__sessions_offer_free() once conn_new has run).
 * 0 or TLSOCK_ENOMEM.
 */
int tlsock__sessions_conn_new(struct tlsock_conn *conn, uint16_t port, const char *host,
                              const char *sni, const char *verify, struct tlsock__session_io *io,
                              struct tlsock__session_offer *offer,
                              unsigned char **held) TLSOCK__MUST_CHECK;
/* After the implementation's conn_new: frees @p held and the native session in @p offer. */
void tlsock__sessions_offer_free(struct tlsock_conn *conn, struct tlsock__session_offer *offer,
                                 unsigned char *held);
/* A client connection failed (fatal alert, cut, transport error): its place's session goes. */
void tlsock__sessions_conn_failed(struct tlsock_conn *conn);
void tlsock__sessions_conn_free(struct tlsock_conn *conn);

/* ---- the server's session-ID cache: in-process or the application's store (store.c) ------- */
/*
 * At freeze: fills the context's session hooks (its cache or store) and gives the implementation
 * the context's remove (impl.h, ctx_set_session_remove).
 */
void tlsock__store_ctx_freeze(struct tlsock_ctx *ctx);
/*
 * Before a server's implementation sees the ClientHello: starts the store's get for a TLS 1.2
 * session ID (once), and while it has not answered returns TLSOCK_EWANT_READ; 0 to go on, or
 * the transport's WANT code or failure while the hello has not fully arrived.
 */
int tlsock__store_gate(struct tlsock_conn *conn);
/* Forgets a pending get (its done stays harmless) and the slot. */
void tlsock__store_conn_free(struct tlsock_conn *conn);

#endif /* TLSOCK_CORE_OBJECTS_H */
