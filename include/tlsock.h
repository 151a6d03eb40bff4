/*
 * tlsock - TLS over TCP sockets, one small and safe API.
 *
 * This header is the whole core API: contexts, blocking connections, listeners, errors and
 * development certificates. The asynchronous driver lives in <tlsock/uv.h>.
 *
 * Conventions used by every function below:
 *   - Fallible functions return int: 0 on success or a negative TLSOCK_E* code. Byte counts and
 *     objects come back through out-parameters, which are written only on success.
 *   - Objects are opaque. `_new`/`_connect`/`_listen`/`_accept` return them through `**out`;
 *     `_free`/`_close` release them and accept NULL.
 *   - Setters copy their inputs: the caller may free or reuse a string or buffer as soon as the
 *     call returns.
 *   - Error detail (the TLS implementation's reason, the verify failure, errno) is on the object:
 *     tlsock_ctx_errmsg() and tlsock_conn_errmsg(). Callers never need errno.
 *   - Timeouts are in milliseconds; 0 (TLSOCK_NO_TIMEOUT) means no timeout, everywhere: in
 *     struct tlsock_opts, in every setter and in <tlsock/uv.h>. Negative timeouts are refused.
 *     To return at once with what is ready, set a deadline that has passed
 *     (tlsock_conn_set_deadline(conn, 0)).
 *   - No global initialisation call is needed, and SIGPIPE never kills the process: tlsock sends
 *     with MSG_NOSIGNAL.
 *
 * Thread safety: a context is safe to share between threads once it is frozen (it freezes when it
 * makes its first connection). One connection is used by one thread at a time. A child process
 * after fork() must not use a connection created by its parent.
 */
#ifndef TLSOCK_H
#define TLSOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "tlsock/version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(TLSOCK_BUILDING) && defined(__GNUC__)
#define TLSOCK_API __attribute__((visibility("default")))
#else
#define TLSOCK_API
#endif

/* ---------------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------------- */

/*
 * The one table of error codes: name, value, description. Append only; values never change.
 * It generates enum tlsock_error, tlsock_strerror() and tlsock_err_name().
 */
#define TLSOCK_ERRNO_MAP(XX)                                                                       \
    XX(EINVAL, -1, "invalid argument or call in the wrong state")                                  \
    XX(ENOMEM, -2, "out of memory")                                                                \
    XX(ESYS, -3, "system call failed")                                                             \
    XX(ERESOLVE, -4, "host name resolution failed")                                                \
    XX(ETIMEDOUT, -5, "operation timed out")                                                       \
    XX(EHANDSHAKE_TIMEOUT, -6, "TLS handshake timed out")                                          \
    XX(ECLOSED, -7, "peer closed the TLS session (close_notify)")                                  \
    XX(ETRUNCATED, -8, "connection ended without close_notify (truncated)")                        \
    XX(EPROTO, -9, "TLS protocol error or alert")                                                  \
    XX(EVERIFY, -10, "certificate verification failed")                                            \
    XX(ECONFIG, -11, "invalid TLS configuration")                                                  \
    XX(EX509_LOOKUP, -12, "certificate or trust store could not be loaded")                        \
    XX(EWANT_READ, -13, "operation needs more input (retry when readable)")                        \
    XX(EWANT_WRITE, -14, "operation needs to send output (retry when writable)")                   \
    XX(ECANCELED, -15, "operation canceled")

/** Error codes returned by every fallible tlsock function (always negative). */
enum tlsock_error {
    TLSOCK_OK = 0,
#define TLSOCK_XX_ENUM(name, value, text) TLSOCK_##name = (value),
    TLSOCK_ERRNO_MAP(TLSOCK_XX_ENUM)
#undef TLSOCK_XX_ENUM
};

/**
 * A static English description of an error code ("unknown error" for unknown codes).
 * The string is never freed and is safe to use from any thread.
 */
TLSOCK_API const char *tlsock_strerror(int err);

/** The code's name without the prefix, e.g. "EVERIFY"; "UNKNOWN" for unknown codes. */
TLSOCK_API const char *tlsock_err_name(int err);

/**
 * True when @p err comes from TLS itself (protocol, alert, verification, configuration,
 * close_notify or truncation), false for socket, system, resolution, timeout and argument errors.
 */
TLSOCK_API bool tlsock_err_is_tls(int err);

/**
 * Detail of the last error any tlsock function reported in the calling thread, "" if none yet.
 * Use it after functions that fail before an object exists to hold the detail (tlsock_connect(),
 * tlsock_accept(), tlsock_listen(), tlsock_ctx_new()). Thread-local; valid until the thread's
 * next failing tlsock call.
 */
TLSOCK_API const char *tlsock_errmsg(void);

/* ---------------------------------------------------------------------------------------------
 * TLS implementations
 * ------------------------------------------------------------------------------------------- */

/** The TLS implementations tlsock can use; each context uses one. */
enum tlsock_impl {
    TLSOCK_IMPL_DEFAULT = 0, /**< the process default (see tlsock_default_impl()) */
    TLSOCK_IMPL_OPENSSL = 1,
    TLSOCK_IMPL_GNUTLS = 2,
};

/** Capability bits of an implementation (tlsock_impl_caps()). */
enum tlsock_cap {
    TLSOCK_CAP_ALPN = 1 << 1,    /**< ALPN */
    TLSOCK_CAP_CERTGEN = 1 << 2, /**< tlsock_devcert_new() and tlsock_cert_fingerprint() */
};

/** True when @p impl was compiled in. */
TLSOCK_API bool tlsock_impl_available(int impl);

/** "openssl" or "gnutls"; NULL for an unknown value. TLSOCK_IMPL_DEFAULT names the default. */
TLSOCK_API const char *tlsock_impl_name(int impl);

/** The implementation's library and version, e.g. "OpenSSL 3.0.19 ..."; NULL if unavailable. */
TLSOCK_API const char *tlsock_impl_version(int impl);

/** The TLSOCK_CAP_* bits of @p impl; 0 if unavailable. */
TLSOCK_API unsigned tlsock_impl_caps(int impl);

/**
 * The implementation new contexts use: set by tlsock_set_default_impl(), else by the environment
 * variable TLSOCK_IMPL ("openssl" or "gnutls", read once; empty counts as unset), else OpenSSL
 * when compiled in. When TLSOCK_IMPL names no implementation compiled in (a typo, or one left
 * out of the build) there is no default: this returns TLSOCK_IMPL_DEFAULT (0) and
 * tlsock_ctx_new() fails with TLSOCK_ECONFIG, until tlsock_set_default_impl() chooses one.
 */
TLSOCK_API int tlsock_default_impl(void);

/**
 * Sets the process default for contexts created afterwards, also after a TLSOCK_IMPL that named
 * no implementation. Thread-safe.
 * @return 0, TLSOCK_EINVAL for an unknown value, TLSOCK_ECONFIG when it was not compiled in.
 */
TLSOCK_API int tlsock_set_default_impl(int impl);

/* ---------------------------------------------------------------------------------------------
 * Contexts
 * ------------------------------------------------------------------------------------------- */

/** The role of a context: every connection made from it plays this role. */
enum tlsock_role {
    TLSOCK_CLIENT = 1,
    TLSOCK_SERVER = 2,
};

/** How a context verifies its peer's certificate. */
enum tlsock_verify {
    /**
     * The peer must present a certificate chaining to the trust anchors. Clients also check that
     * it names the host they connect to. The default for clients.
     */
    TLSOCK_VERIFY_REQUIRED = 1,
    /** Servers only: ask for a client certificate and verify it if one is presented. */
    TLSOCK_VERIFY_OPTIONAL = 2,
    /**
     * No verification. The default for servers (no client certificate is requested). On a client
     * this is insecure: anyone on the path can impersonate the server. It must be asked for.
     */
    TLSOCK_VERIFY_NONE = 3,
};

/** Timeout value meaning "no timeout: wait forever" (the default everywhere). */
#define TLSOCK_NO_TIMEOUT 0

struct tlsock_ctx;

/**
 * Creates a context for @p role (TLSOCK_CLIENT or TLSOCK_SERVER) with secure defaults:
 * TLS 1.2 to 1.3, the "secure" cipher policy, security level 2, no compression, no peer-initiated
 * renegotiation, and for clients verification of chain and host name against the system trust
 * store (unless CAs are set explicitly).
 *
 * @param role  TLSOCK_CLIENT or TLSOCK_SERVER.
 * @param out   receives the context, with one reference owned by the caller.
 * @return 0, TLSOCK_EINVAL, TLSOCK_ENOMEM or TLSOCK_ECONFIG (implementation refused to start, or
 *         no default implementation: TLSOCK_IMPL names none compiled in; tlsock_errmsg() names
 *         the value and the implementations there are).
 */
TLSOCK_API int tlsock_ctx_new(int role, struct tlsock_ctx **out);

/**
 * Chooses the context's implementation, at any time before the context freezes: the settings
 * made so far are applied again, in order, to a new native context of @p impl (from the bytes
 * the setters read: files are not opened again; a protected key is decrypted with the
 * passphrase it was loaded with, without calling the passphrase callback again). Changes made
 * directly to the old native context (tlsock_ctx_native()) are not carried over.
 * @return 0; TLSOCK_EINVAL (unknown value, frozen context); TLSOCK_ECONFIG when @p impl was not
 *         compiled in, or refuses one of the settings (the message names it): the context then
 *         stays as it was.
 */
TLSOCK_API int tlsock_ctx_set_impl(struct tlsock_ctx *ctx, int impl);

/** The context's implementation (TLSOCK_IMPL_OPENSSL or TLSOCK_IMPL_GNUTLS). */
TLSOCK_API int tlsock_ctx_impl(const struct tlsock_ctx *ctx);

/**
 * The implementation's own context, for what tlsock does not wrap: an SSL_CTX * for OpenSSL, a
 * gnutls_certificate_credentials_t for GnuTLS. Valid while the context lives. Changing it after
 * the context froze is not thread-safe.
 */
TLSOCK_API void *tlsock_ctx_native(struct tlsock_ctx *ctx);

/** Called with the native context (see tlsock_ctx_native()); returns 0 or a TLSOCK_E* code. */
typedef int (*tlsock_ctx_configure_fn)(void *native_ctx, void *user);
/** Called with a new connection's native session (SSL * or gnutls_session_t) before its
 *  handshake; returns 0 or a TLSOCK_E* code, which fails the connection's creation. */
typedef int (*tlsock_conn_configure_fn)(void *native_session, void *user);

/**
 * Registers configure callbacks (either may be NULL), like LispWorks' ctx/ssl configure
 * callbacks: @p on_ctx runs once, when the context freezes, after tlsock applied its own
 * settings; @p on_conn runs for every connection before its handshake. @p user is passed to both
 * and must outlive the context.
 */
TLSOCK_API int tlsock_ctx_set_configure(struct tlsock_ctx *ctx, tlsock_ctx_configure_fn on_ctx,
                                        tlsock_conn_configure_fn on_conn, void *user);

/** Adds a reference to @p ctx and returns it. Thread-safe. */
TLSOCK_API struct tlsock_ctx *tlsock_ctx_ref(struct tlsock_ctx *ctx);

/**
 * Drops the caller's reference. The context is freed when the last reference goes; every
 * connection holds one, so a context outlives the caller's reference while connections use it.
 * Accepts NULL. Thread-safe.
 */
TLSOCK_API void tlsock_ctx_free(struct tlsock_ctx *ctx);

/**
 * Human-readable detail about the last failed call on @p ctx, "" when there is none. The pointer
 * stays valid until the context is freed; its contents change on the next call on @p ctx.
 * Not thread-safe while another thread calls setters (which only happens before freezing).
 */
TLSOCK_API const char *tlsock_ctx_errmsg(const struct tlsock_ctx *ctx);

/*
 * Setters. Each one applies immediately and reports problems at once (TLSOCK_ECONFIG with the
 * reason in tlsock_ctx_errmsg()). After the context has made its first connection it is frozen
 * and every setter returns TLSOCK_EINVAL.
 */

/**
 * Sets the protocol range from a string "MIN" or "MIN-MAX", each one of "1.0", "1.1", "1.2",
 * "1.3" (also spelled "tls1.2" or "TLSv1.2"). "1.2" alone means 1.2 and newer.
 * Default "1.2-1.3". Versions below 1.2 also need the "legacy" cipher policy to negotiate.
 */
TLSOCK_API int tlsock_ctx_set_protocols(struct tlsock_ctx *ctx, const char *range);

/**
 * Sets the cipher policy by name:
 *   - "secure" (default): TLS 1.3 suites and, for TLS 1.2, only ECDHE with AES-GCM or
 *     ChaCha20-Poly1305; security level 2.
 *   - "compat": adds TLS 1.2 AES-CBC and non-ECDHE AEAD suites; security level 2.
 *   - "legacy": anything the implementation still has at security level 0; needed for TLS 1.0/1.1.
 * Any other string is the implementation's own colon-separated cipher list: names starting with
 * "TLS_" select TLS 1.3 suites (e.g. "TLS_CHACHA20_POLY1305_SHA256"), the rest form the TLS 1.2
 * cipher string (for OpenSSL, e.g. "ECDHE+AESGCM"); a part left out keeps its current setting.
 * TLSOCK_ECONFIG is returned if a part selects nothing.
 */
TLSOCK_API int tlsock_ctx_set_ciphers(struct tlsock_ctx *ctx, const char *policy);

/**
 * Adds trust anchors (CA certificates) from a PEM file. The file is read during the call; it
 * must be a regular file of at most 16 MiB (a FIFO or a device is refused at once, without
 * waiting for it). Setting any CA replaces the default system store for this context; call
 * tlsock_ctx_set_ca_system() as well to keep both. Every certificate given is a trust anchor,
 * self-signed or not: an intermediate CA alone accepts the chains under it (on both
 * implementations; the same for every CA setter).
 * @return 0, or TLSOCK_EX509_LOOKUP when the file cannot be read, is not a regular file, is
 *         empty or holds no certificate (as do the other CA setters); the message names the file.
 */
TLSOCK_API int tlsock_ctx_set_ca_file(struct tlsock_ctx *ctx, const char *path);

/** Adds a hashed CA directory (as made by `openssl rehash`); files are looked up when needed. */
TLSOCK_API int tlsock_ctx_set_ca_dir(struct tlsock_ctx *ctx, const char *path);

/** Adds trust anchors from PEM text in memory (one or more certificates). */
TLSOCK_API int tlsock_ctx_set_ca_mem(struct tlsock_ctx *ctx, const char *pem, size_t len);

/** Adds the system trust store (the default for clients when no other CA is set). */
TLSOCK_API int tlsock_ctx_set_ca_system(struct tlsock_ctx *ctx);

/**
 * Sets this side's certificate chain (leaf first, then intermediates) and private key from
 * files, read during the call (both may be the same file). Each file is PEM or DER, detected
 * from its content: PEM when it holds a "-----BEGIN " line, DER otherwise (a DER certificate
 * file holds the leaf alone). The key may be unencrypted (PKCS#8, PKCS#1 or SEC1) or encrypted
 * (PKCS#8 "ENCRYPTED PRIVATE KEY" in PEM or DER, or a traditional PEM key with
 * "Proc-Type: 4,ENCRYPTED"): the passphrase then comes from tlsock_ctx_set_key_passphrase() or
 * tlsock_ctx_set_key_passphrase_cb(), never from a terminal.
 * @return 0; TLSOCK_ECONFIG when a file is not a regular file (a FIFO, a directory or a device:
 *         refused at once, without waiting for it), is empty or larger than 1 MiB, holds no
 *         certificate or key (truncated DER included), when the key is encrypted and no
 *         passphrase was set, the passphrase callback refused or the passphrase is wrong, when
 *         the key does not match the certificate, or when the key is weaker than the security
 *         level allows (RSA under 2048 bits with the default policies); TLSOCK_ESYS when a file
 *         cannot be opened or read. The message names both files ("certificate file A, key file
 *         B: ...").
 */
TLSOCK_API int tlsock_ctx_set_cert_file(struct tlsock_ctx *ctx, const char *chain_path,
                                        const char *key_path);

/**
 * Like tlsock_ctx_set_cert_file(), from PEM or DER in memory (each detected as there); the
 * messages say "certificate and key in memory".
 */
TLSOCK_API int tlsock_ctx_set_cert_mem(struct tlsock_ctx *ctx, const char *chain_pem,
                                       size_t chain_len, const char *key_pem, size_t key_len);

/*
 * Protected keys and PKCS#12 bundles. The passphrase is set before the certificate and key that
 * need it: tlsock_ctx_set_cert_file(), tlsock_ctx_set_cert_mem() and the PKCS#12 setters ask for
 * it during their call, and only when the key or bundle is protected. tlsock never prompts on a
 * terminal, whatever the implementation: without a passphrase an encrypted key is
 * TLSOCK_ECONFIG. The passphrase a key was loaded with is kept with it (wiped when the context is
 * freed or the key replaced), so that tlsock_ctx_set_impl() loads it again without asking.
 */

/** Longest passphrase, in bytes (without a NUL). */
#define TLSOCK_PASSPHRASE_MAX 1024

/**
 * Sets the passphrase of the keys and PKCS#12 bundles loaded after this call, replacing an
 * earlier passphrase or callback; NULL clears both. @p pass is a NUL-terminated string of at most
 * TLSOCK_PASSPHRASE_MAX bytes, copied: the caller may wipe it at once. The copy is wiped
 * (explicit_bzero()) when replaced, cleared or freed with the context.
 * @return 0; TLSOCK_EINVAL (frozen context, passphrase too long); TLSOCK_ENOMEM.
 */
TLSOCK_API int tlsock_ctx_set_key_passphrase(struct tlsock_ctx *ctx, const char *pass);

/**
 * Gives a key's passphrase when asked: writes at most @p size (TLSOCK_PASSPHRASE_MAX) bytes, with
 * no NUL among them, to @p buf, their count to @p *len, and returns 0; or returns any other value
 * to refuse, which fails the setter with TLSOCK_ECONFIG ("the passphrase callback refused (N)").
 * @p buf belongs to tlsock, which wipes it after use: the callback must not keep it.
 */
typedef int (*tlsock_passphrase_fn)(char *buf, size_t size, size_t *len, void *user);

/**
 * Sets a callback that gives the passphrase of the keys and PKCS#12 bundles loaded after this
 * call, replacing an earlier passphrase or callback; NULL clears both. The callback runs only
 * inside tlsock_ctx_set_cert_file(), tlsock_ctx_set_cert_mem(), tlsock_ctx_set_pkcs12_file() and
 * tlsock_ctx_set_pkcs12_mem(), on the thread that called them, at most once per call and only
 * for a protected key or bundle (never again for tlsock_ctx_set_impl()). @p user is passed to it
 * and must stay valid while those calls run.
 * @return 0, or TLSOCK_EINVAL for a frozen context.
 */
TLSOCK_API int tlsock_ctx_set_key_passphrase_cb(struct tlsock_ctx *ctx, tlsock_passphrase_fn cb,
                                                void *user);

/**
 * Sets this side's certificate chain and key from a PKCS#12 (.p12, .pfx) bundle in DER, read
 * during the call: the key, the certificate that matches it, and as the chain the bundle's
 * certificates that lead from it towards its root, in order, without a self-signed root (other
 * certificates in the bundle are not sent; the same on every implementation). Replaces an
 * earlier certificate and key, as tlsock_ctx_set_cert_file() does. A bundle is tried with the
 * empty passphrase first, then with the one set by tlsock_ctx_set_key_passphrase() or its
 * callback. Bundles made with modern algorithms (`openssl pkcs12 -export -keypbe AES-256-CBC
 * -certpbe AES-256-CBC`, OpenSSL 3's default) load on every implementation; RC2 and other legacy
 * ones may not. An encrypted bundle without a MAC (`-nomac`) is refused: nothing protects its
 * integrity.
 * @return 0; TLSOCK_ECONFIG when the file is not a regular file, is empty or larger than 1 MiB,
 *         is not a PKCS#12 bundle, when its passphrase is wrong or missing ("wrong passphrase"),
 *         when it is encrypted without a MAC ("has no MAC"), when it holds no key or no
 *         certificate for it, or when the key is too weak; TLSOCK_ESYS when the file cannot be
 *         opened or read. The message names the file.
 */
TLSOCK_API int tlsock_ctx_set_pkcs12_file(struct tlsock_ctx *ctx, const char *path);

/**
 * Like tlsock_ctx_set_pkcs12_file(), from a bundle of @p len bytes in memory (copied); the
 * messages say "PKCS#12 bundle in memory".
 */
TLSOCK_API int tlsock_ctx_set_pkcs12_mem(struct tlsock_ctx *ctx, const void *data, size_t len);

/* ---------------------------------------------------------------------------------------------
 * Several certificates: a server chooses its chain by the client's name and key support
 *
 * A server context holds any number of certificates (chain and key), numbered from 0 in the order
 * they were added. tlsock_ctx_set_cert_file() and the other set_ functions replace them all with
 * one (index 0); the add_ functions below append one more. For each client the server presents
 * exactly one of them, chosen the same way on every implementation:
 *   1. the SNI callback, if one is set, may choose (tlsock_ctx_set_sni_callback());
 *   2. else the certificates with a DNS subjectAltName equal to the client's SNI (ignoring case);
 *   3. else those with a wildcard name matching it: "*.example.com" matches "a.example.com" but
 *      neither "a.b.example.com" nor "example.com"; the wildcard must be the whole left-most label
 *      ("f*.example.com" matches nothing) with at least two labels after it ("*.com" matches
 *      nothing);
 *   4. else (no SNI, or a name no certificate has) the default certificate, the first added
 *      unless tlsock_ctx_set_default_cert() says otherwise, together with the certificates that
 *      have exactly the same DNS names as it.
 * Among the certificates of one step, the first (in index order; the default first in step 4) whose
 * key the client supports is presented: an ECDSA key needs an ECDSA signature scheme in the
 * client's signature_algorithms (in TLS 1.3 the one of its curve, such as ecdsa_secp256r1_sha256
 * for P-256; and, in TLS 1.2, an ECDHE-ECDSA cipher suite and its curve in the client's
 * supported_groups, RFC 8422 section 5.3), an RSA key an RSA scheme (RSA-PSS in TLS 1.3) and, in
 * TLS 1.2, an RSA suite, an Ed25519 key the ed25519 scheme (and, in TLS 1.2, an ECDHE-ECDSA
 * suite). So an ECDSA and an RSA chain for the same names serve every
 * client with the best one it takes. When it supports none of them, the first is presented and
 * the handshake fails as it would with that one alone; an ECDSA key whose curve a TLS 1.2 client
 * does not list is refused by tlsock itself on both implementations (TLSOCK_EPROTO,
 * handshake_failure).
 * Only DNS subjectAltNames take part: the subject's common name and IP addresses never do.
 * Everything here is kept by tlsock_ctx_set_impl() like the other settings.
 */

/**
 * Adds a certificate chain and key from files to a server context, after the ones it has,
 * instead of replacing them as tlsock_ctx_set_cert_file() does; same formats, passphrase and
 * checks. The new certificate's index is the number the context had before.
 * @return as tlsock_ctx_set_cert_file(); on failure the context keeps what it had.
 */
TLSOCK_API int tlsock_ctx_add_cert_file(struct tlsock_ctx *ctx, const char *chain_path,
                                        const char *key_path);

/** Like tlsock_ctx_add_cert_file(), from PEM or DER in memory (as tlsock_ctx_set_cert_mem()). */
TLSOCK_API int tlsock_ctx_add_cert_mem(struct tlsock_ctx *ctx, const char *chain_pem,
                                       size_t chain_len, const char *key_pem, size_t key_len);

/** Like tlsock_ctx_add_cert_file(), from a PKCS#12 bundle (as tlsock_ctx_set_pkcs12_file()). */
TLSOCK_API int tlsock_ctx_add_pkcs12_file(struct tlsock_ctx *ctx, const char *path);

/** Like tlsock_ctx_add_cert_file(), from a PKCS#12 bundle in memory (copied). */
TLSOCK_API int tlsock_ctx_add_pkcs12_mem(struct tlsock_ctx *ctx, const void *data, size_t len);

/** The number of certificates @p ctx holds (0 for NULL). Thread-safe once the context is frozen. */
TLSOCK_API size_t tlsock_ctx_cert_count(const struct tlsock_ctx *ctx);

/**
 * Makes certificate @p index the default: the one presented to clients that send no SNI or a name
 * no certificate has (step 4 above). Replacing the certificates (a set_ function) makes index 0
 * the default again.
 * @return 0; TLSOCK_EINVAL for a frozen context or an index the context does not have.
 */
TLSOCK_API int tlsock_ctx_set_default_cert(struct tlsock_ctx *ctx, size_t index);

/** An SNI callback's answer: let tlsock choose by name (steps 2 to 4 above). */
#define TLSOCK_SNI_AUTO (-1)
/** An SNI callback's answer: refuse the client with an unrecognized_name alert (RFC 6066). */
#define TLSOCK_SNI_REFUSE (-2)

/**
 * Chooses the certificate for a client: @p servername is the name it sent (NUL-terminated, as
 * sent; NULL when it sent none). Returns the index of one of the context's certificates, which is
 * presented as it is (no choice by key type), TLSOCK_SNI_AUTO, or TLSOCK_SNI_REFUSE: the handshake
 * then fails with an unrecognized_name alert, the server's with TLSOCK_EPROTO ("the SNI callback
 * refused the client's server name") and the client's with the alert's name in its message. Any
 * other value fails the handshake the same way with an internal_error alert. Runs on the thread
 * doing the server's handshake, once per ClientHello (twice after a HelloRetryRequest), possibly on
 * several threads at once; it must not call tlsock on the same connection.
 */
typedef int (*tlsock_sni_fn)(const char *servername, void *user);

/**
 * Sets (or with NULL clears) the SNI callback of a server context; @p user is passed to it and
 * must stay valid while the context makes connections.
 * @return 0; TLSOCK_EINVAL for a frozen context or a client context.
 */
TLSOCK_API int tlsock_ctx_set_sni_callback(struct tlsock_ctx *ctx, tlsock_sni_fn fn, void *user);

/**
 * Sets the verification mode (enum tlsock_verify). A verifying client needs a name to check:
 * tlsock_connect() takes it from the host; tlsock_attach_fd(), tlsock_attach_io() and
 * tlsock_attach_mem() return TLSOCK_EINVAL unless opts.servername or opts.verify_name is set.
 * A server requiring a client certificate fails the handshake with TLSOCK_EVERIFY when the client
 * sends none.
 */
TLSOCK_API int tlsock_ctx_set_verify(struct tlsock_ctx *ctx, int mode);

/* ---------------------------------------------------------------------------------------------
 * Trust: revocation lists, key pinning, chain depth and a verify callback
 *
 * These add checks to the verification of tlsock_ctx_set_verify(); they never loosen it. They
 * apply to a peer that is verified: a client with TLSOCK_VERIFY_REQUIRED, a server with
 * TLSOCK_VERIFY_REQUIRED or TLSOCK_VERIFY_OPTIONAL when the client sends a certificate. A context
 * that has any of them but does not verify (TLSOCK_VERIFY_NONE, the default for servers) refuses
 * to make connections: the first connection fails with TLSOCK_ECONFIG. They run in the
 * handshake, in this order: the implementation's own checks (chain, dates, purpose, host name,
 * revocation), then the pins, then the depth, then the callback; the first failure ends the
 * handshake with TLSOCK_EVERIFY and an alert to the peer, and tlsock_conn_errmsg() says why in
 * the same words on every implementation. Like the other setters they are refused once the
 * context is frozen, and tlsock_ctx_set_impl() keeps them.
 * ------------------------------------------------------------------------------------------- */

/** Which certificates of a verified chain the certificate revocation lists (CRLs) cover. */
enum tlsock_crl_mode {
    /** Only the peer's own certificate (the default once a CRL is added). */
    TLSOCK_CRL_LEAF = 1,
    /** Every certificate of the verified chain: the leaf, each intermediate CA and the trust
     *  anchor (which its own CRL covers). */
    TLSOCK_CRL_CHAIN = 2,
};

/**
 * Adds certificate revocation lists from a file: PEM (one or more "X509 CRL" blocks) or one DER
 * CRL. The file is read during the call (a regular file of at most 16 MiB, as for
 * tlsock_ctx_set_ca_file()). Adding a CRL turns revocation checking on (TLSOCK_CRL_LEAF unless
 * tlsock_ctx_set_crl_mode() chose otherwise). While it is on, each certificate checked must have
 * a CRL from its issuer that is current and signed by that issuer, and must not be listed in it:
 *   - a listed certificate: "certificate revoked";
 *   - no CRL from its issuer: "unable to get certificate CRL" (refused rather than let through:
 *     add an empty CRL for an issuer that revokes nothing);
 *   - a CRL past its nextUpdate: "CRL has expired"; before its thisUpdate: "CRL is not yet
 *     valid"; a bad signature: "CRL signature failure".
 * All are TLSOCK_EVERIFY. tlsock never fetches CRLs: to use newer ones, make a new context.
 * @return 0; TLSOCK_EINVAL (NULL path, frozen context); TLSOCK_EX509_LOOKUP when the file cannot
 *         be read or holds no CRL (the message names the file); TLSOCK_ENOMEM.
 */
TLSOCK_API int tlsock_ctx_add_crl_file(struct tlsock_ctx *ctx, const char *path);

/** Like tlsock_ctx_add_crl_file(), from @p len bytes of PEM or DER in memory (copied). */
TLSOCK_API int tlsock_ctx_add_crl_mem(struct tlsock_ctx *ctx, const void *data, size_t len);

/**
 * Chooses what the CRLs cover (enum tlsock_crl_mode) and turns revocation checking on, also
 * before any CRL is added (every certificate then fails with "unable to get certificate CRL"
 * until one is). Returns 0 or TLSOCK_EINVAL (unknown mode, frozen context).
 */
TLSOCK_API int tlsock_ctx_set_crl_mode(struct tlsock_ctx *ctx, int mode);

/**
 * Pins a public key: the SHA-256 digest of a DER SubjectPublicKeyInfo, written "sha256/BASE64"
 * (as in HPKP and curl's --pinnedpubkey), "sha256:BASE64", or 64 hexadecimal digits (colons
 * between bytes allowed). Get it from a certificate with
 *     openssl x509 -in cert.pem -pubkey -noout | openssl pkey -pubin -outform der |
 *     openssl dgst -sha256 -binary | base64
 * Call it again to add more pins (a backup key, a CA). Once a context has pins, the handshake
 * succeeds only when some certificate of the verified chain (leaf, intermediates or trust
 * anchor; never a certificate the peer sent that is not part of that chain) has a pinned key;
 * otherwise it fails with TLSOCK_EVERIFY "no pinned key matches the peer's chain". Pinning adds
 * to the chain verification, it does not replace it.
 * @return 0, TLSOCK_EINVAL (malformed pin, frozen context), TLSOCK_ENOMEM.
 */
TLSOCK_API int tlsock_ctx_add_pin(struct tlsock_ctx *ctx, const char *pin);

/**
 * Limits the number of intermediate CA certificates between the peer's certificate and the
 * trust anchor in the verified chain: 0 allows only a leaf issued by a trust anchor. A longer
 * chain fails with TLSOCK_EVERIFY "certificate chain too long". -1 (the default) sets no limit.
 * @return 0 or TLSOCK_EINVAL (below -1, frozen context).
 */
TLSOCK_API int tlsock_ctx_set_verify_depth(struct tlsock_ctx *ctx, int max_intermediates);

/** One certificate in DER. */
struct tlsock_cert_der {
    const unsigned char *der;
    size_t len;
};

/** What a verify callback is shown. Every pointer is valid during the callback only. */
struct tlsock_verify_info {
    struct tlsock_conn *conn; /**< the connection being verified: do not call tlsock on it */
    int role;                 /**< the verifying side: TLSOCK_CLIENT or TLSOCK_SERVER */
    int result;               /**< 0 when every check before the callback passed, else
                                   TLSOCK_EVERIFY */
    const char *message;      /**< "ok", or why it failed: what tlsock_conn_errmsg() will say */
    const char *verify_name;  /**< client: the name or address verified; NULL on a server */
    const struct tlsock_cert_der *peer_chain; /**< the certificates the peer sent, as sent
                                                   (leaf first) */
    size_t peer_chain_len;
    const struct tlsock_cert_der *verified_chain; /**< when result is 0: the verified chain,
                                                       leaf first, trust anchor last */
    size_t verified_chain_len;                    /**< 0 when result is not 0 */
};

/** Size of the buffer a verify callback may write its reason into (NUL included). */
#define TLSOCK_VERIFY_REASON_SIZE 160

/**
 * A verify callback: returns 0 to let the verdict stand, anything else to reject the peer. On a
 * rejection it may write why into @p reason (NUL-terminated, at most reason_size bytes; left
 * empty it reads "no reason given"), and the handshake fails with TLSOCK_EVERIFY and the message
 * "rejected by the verify callback: <reason>". It cannot accept what the checks before it
 * refused: when info->result is not 0 the handshake fails whatever it returns (it is still
 * called, to see the verdict and the chain). To accept certificates tlsock would refuse, verify
 * yourself with TLSOCK_VERIFY_NONE and tlsock_conn_native().
 */
typedef int (*tlsock_verify_fn)(const struct tlsock_verify_info *info, void *user, char *reason,
                                size_t reason_size);

/**
 * Sets a callback (NULL removes it) called once per handshake in which the peer presents a
 * certificate to verify, after every other check, with their verdict and the peer's chain. It
 * runs in the handshake, on the thread that runs it: the caller of tlsock_handshake(), read or
 * write for blocking and memory-mode connections, the loop's thread for <tlsock/uv.h>. It must
 * not block for long (it holds up the handshake) nor call tlsock functions on the connection.
 * @p user is passed to it and must outlive the context. Not called without verification
 * (TLSOCK_VERIFY_NONE), nor on a server whose optional client certificate is absent.
 * @return 0 or TLSOCK_EINVAL (frozen context).
 */
TLSOCK_API int tlsock_ctx_set_verify_callback(struct tlsock_ctx *ctx, tlsock_verify_fn fn,
                                              void *user);

/* ---------------------------------------------------------------------------------------------
 * OCSP stapling (RFC 6066 section 8, RFC 8446 section 4.4.2.1, RFC 6960, RFC 7633)
 *
 * A server staples a DER OCSP response it is given to its certificate, for clients that ask
 * (status_request): in the CertificateStatus message in TLS 1.2, in the leaf's Certificate entry
 * in TLS 1.3. A client asks for a staple, checks it, and may require one. tlsock never fetches
 * anything from the network: getting fresh responses from the CA's responder (for instance with
 * `openssl ocsp -issuer ... -cert ... -url ... -respout`) is the application's job. Refused once
 * the context is frozen, like the other setters, and kept by tlsock_ctx_set_impl().
 * ------------------------------------------------------------------------------------------- */

/** What a client does about OCSP staples (tlsock_ctx_set_ocsp_mode()). */
enum tlsock_ocsp_mode {
    /** Do not ask for a staple, ignore must-staple (the default). */
    TLSOCK_OCSP_OFF = 0,
    /** Ask for a staple; check it when the server sends one; a missing staple passes unless the
     *  certificate is must-staple. */
    TLSOCK_OCSP_REQUEST = 1,
    /** Ask for a staple and require a valid one. */
    TLSOCK_OCSP_REQUIRE = 2,
};

/**
 * Chooses whether a client asks for a stapled OCSP response and what it demands of it (enum
 * tlsock_ocsp_mode). With TLSOCK_OCSP_REQUEST or TLSOCK_OCSP_REQUIRE, a staple the server sends
 * is checked after the certificate chain and the checks of the trust block (the verify callback
 * included: in TLS 1.2 the staple arrives after the certificate); it must:
 *   - be a successful OCSP response that parses ("stapled OCSP response cannot be parsed",
 *     "stapled OCSP response is not successful");
 *   - hold a status for the server's certificate, identified by its issuer in the verified chain
 *     ("stapled OCSP response is for another certificate");
 *   - be signed by that issuer itself, or by a responder certificate it issued that has the
 *     OCSPSigning extended key usage, sent in the response and within its dates ("stapled OCSP
 *     response is not signed by the certificate's issuer or a responder it authorized");
 *   - be current, with five minutes of clock skew allowed: thisUpdate not in the future ("stapled
 *     OCSP response is not yet valid"), nextUpdate, when present, not in the past ("stapled OCSP
 *     response has expired");
 *   - say "good" ("certificate revoked (stapled OCSP response)", "stapled OCSP response says the
 *     certificate status is unknown").
 * No staple is a failure with TLSOCK_OCSP_REQUIRE ("no stapled OCSP response, and one is
 * required"), and in both modes when the leaf is must-staple (a TLS feature extension listing
 * status_request, RFC 7633: "no stapled OCSP response, and the certificate requires one"). Every
 * failure is TLSOCK_EVERIFY with the peer's subject, the same words on every implementation, and
 * a bad_certificate_status_response alert to the server. Only the leaf's status is checked.
 * The modes need a verifying client (TLSOCK_VERIFY_REQUIRED, the default): a client context with
 * TLSOCK_VERIFY_NONE and a mode other than TLSOCK_OCSP_OFF fails its first connection with
 * TLSOCK_ECONFIG.
 * @return 0; TLSOCK_EINVAL (unknown mode, a server context, frozen context).
 */
TLSOCK_API int tlsock_ctx_set_ocsp_mode(struct tlsock_ctx *ctx, int mode);

/**
 * Sets the OCSP response a server staples (DER, as `openssl ocsp -respout` writes it), read from
 * @p path during the call (a regular file of at most 1 MiB). It replaces the response set before;
 * call it again on a new context to pick up a renewed file (a reload). The server sends it to
 * every client that asks for a staple, in TLS 1.2 and TLS 1.3, and nothing to clients that do
 * not; it does not check the response against its certificate or its dates (clients do): keep it
 * fresh, since a client requiring a valid staple refuses an expired one. With several
 * certificates (tlsock_ctx_add_cert_file()) the response is the first certificate's: it is
 * stapled only when that one is presented.
 * @return 0; TLSOCK_EINVAL (NULL path, a client context, frozen context); TLSOCK_ECONFIG when the
 *         file cannot be read or is not a DER OCSP response (the message names the file);
 *         TLSOCK_ENOMEM.
 */
TLSOCK_API int tlsock_ctx_set_ocsp_response_file(struct tlsock_ctx *ctx, const char *path);

/**
 * Like tlsock_ctx_set_ocsp_response_file(), from @p len bytes of DER in memory (copied during the
 * call). @p len 0 removes the response: the server staples nothing.
 */
TLSOCK_API int tlsock_ctx_set_ocsp_response_mem(struct tlsock_ctx *ctx, const void *der,
                                                size_t len);

/**
 * Sets the ALPN protocols as a comma-separated list in preference order, e.g. "h2,http/1.1".
 * A client offers them; a server picks its most preferred one the client offers and, when the
 * client offers ALPN but none matches, refuses the handshake with a no_application_protocol alert.
 * NULL or "" clears the list.
 */
TLSOCK_API int tlsock_ctx_set_alpn(struct tlsock_ctx *ctx, const char *list);

/**
 * Sets the default handshake timeout for connections of this context, in milliseconds; 0
 * (TLSOCK_NO_TIMEOUT, the default) for none. A connection's options may override it. The
 * handshake is bounded by this timeout and the connection's deadline only: the per-operation
 * timeout (opts.timeout_ms) does not apply to it. Negative values are TLSOCK_EINVAL.
 */
TLSOCK_API int tlsock_ctx_set_handshake_timeout(struct tlsock_ctx *ctx, int timeout_ms);

/* ---------------------------------------------------------------------------------------------
 * Session tickets (servers; docs/tickets.md)
 *
 * A server context issues session tickets (RFC 5077 for TLS 1.2, RFC 8446 section 4.6.1 for
 * TLS 1.3) by default on both implementations, so returning clients resume without a full
 * handshake. Tickets are encrypted under keys derived from one secret: the key of the current
 * period encrypts, the previous period's is still accepted (a client resuming with it gets a
 * ticket under the current key where the implementation can re-issue; see the docs), older ones
 * are refused and the client gets a full handshake. Without a key file the secret is random, made
 * when the context freezes, and the period is the ticket lifetime. Early data (0-RTT) is never
 * accepted and tickets never allow it.
 *
 * These setters act on server contexts before they freeze (TLSOCK_EINVAL on a client context or
 * after the first connection); the context keeps its own copy of everything. Like every setter,
 * they are not for two threads at once on one context; the frozen context is shared freely.
 * ------------------------------------------------------------------------------------------- */

/**
 * Turns session tickets on (@p on true, the default) or off. Off: no NewSessionTicket is sent
 * on TLS 1.3 or 1.2, and a ticket a client offers is ignored (a full handshake).
 * Returns 0 or TLSOCK_EINVAL (NULL, client context, frozen).
 */
TLSOCK_API int tlsock_ctx_set_tickets(struct tlsock_ctx *ctx, bool on);

/**
 * Sets how long a ticket may be used, in seconds (1 to 604800, RFC 8446's 7 days; default 7200,
 * two hours). It is the ticket_lifetime (TLS 1.3) or ticket_lifetime_hint (TLS 1.2) sent to the
 * client, and the server refuses a ticket older than that. On TLS 1.3 a client may keep using the
 * lifetime of the ticket it was given; on TLS 1.2 it is a hint. When no key file sets the
 * rotation period, the period is this lifetime. A key file's period shorter than this lifetime
 * ends tickets sooner (after one to two periods, docs/tickets.md): keep the period at least the
 * lifetime. Returns 0 or TLSOCK_EINVAL (out of range, NULL, client context, frozen).
 */
TLSOCK_API int tlsock_ctx_set_ticket_lifetime(struct tlsock_ctx *ctx, unsigned seconds);

/**
 * Loads the ticket key secret and rotation period from the key file at @p path (the format is in
 * docs/tickets.md; tlsock_ticket_keys_write() or `tlsock cert --ticket-keys` makes one). Servers
 * loading the same file, in one process or several, with either implementation, use the same
 * keys at the same time, as long as they verify client certificates alike: a server that verifies
 * them mixes how (mode, CAs, CRLs, pins, depth, OCSP mode) into its keys, so that a resumed
 * session, which is not verified again, never skips a check. The file must be a regular file that
 * only its owner can read (mode 0600 or stricter). The file is read now; a later change needs a new
 * context (the CLI re-reads it on SIGHUP). Returns 0, TLSOCK_ECONFIG (missing, unreadable, readable
 * by others, malformed: the message names the file and the reason) or TLSOCK_EINVAL (NULL, client
 * context, frozen).
 */
TLSOCK_API int tlsock_ctx_set_ticket_keys_file(struct tlsock_ctx *ctx, const char *path);

/**
 * Writes a new ticket key file at @p path: a fresh random secret and a rotation period of
 * @p period_s seconds (1 to 604800; 0: 7200). The file is created with mode 0600 under a
 * temporary name and renamed over @p path, so servers reading it never see half a file. Writing a
 * new file replaces the secret: tickets issued under the old one stop resuming once servers
 * reload it. Thread-safe. Returns 0, TLSOCK_EINVAL (NULL path, period out of range) or
 * TLSOCK_ECONFIG (cannot write; the thread's message says why).
 */
TLSOCK_API int tlsock_ticket_keys_write(const char *path, unsigned period_s);

/* ---------------------------------------------------------------------------------------------
 * Key log (the NSS key log format that SSLKEYLOGFILE names, for Wireshark and friends)
 *
 * A key log holds the secrets of each session: with it, anyone holding a capture of the traffic
 * can decrypt it. Turn it on only to debug, and treat the file like a private key. One line per
 * secret, the same labels and the same lowercase hex on every implementation, client and server
 * contexts alike:
 *   TLS 1.2: `CLIENT_RANDOM <client random> <master secret>`
 *   TLS 1.3: `CLIENT_HANDSHAKE_TRAFFIC_SECRET`, `SERVER_HANDSHAKE_TRAFFIC_SECRET`,
 *            `CLIENT_TRAFFIC_SECRET_0`, `SERVER_TRAFFIC_SECRET_0`, `EXPORTER_SECRET`, each
 *            followed by the client random and the secret
 * (64 hex digits for the client random, twice the hash's length for the secret). The order of
 * the lines of one handshake may differ between implementations. A resumed handshake writes the
 * same lines (TLS 1.2: its CLIENT_RANDOM line, with the session's master secret). No other label
 * is written: not the TLS 1.3 early-data secrets, since tlsock never sends nor accepts early data.
 *
 * tlsock never honours the SSLKEYLOGFILE environment variable by itself, on any implementation:
 * an environment variable must not make a server leak its secrets without its code saying so
 * (GnuTLS would by itself; tlsock turns that off). An application that wants the variable passes
 * it on: `tlsock_ctx_set_keylog_file(ctx, getenv("SSLKEYLOGFILE"))` when it is set, or with the
 * CLI, `tlsock connect --keylog "$SSLKEYLOGFILE"`.
 *
 * Both setters are context configuration: refused once the context is frozen (TLSOCK_EINVAL),
 * kept by tlsock_ctx_set_impl(). Both may be set; each line then goes to the callback and to the
 * file.
 * ------------------------------------------------------------------------------------------- */

/**
 * A key log callback: @p line is one line of the key log, NUL-terminated, without a newline,
 * valid only during the call. It is called during the handshake, on the thread that runs it (the
 * caller of tlsock_handshake(), read or write, or the loop's thread for <tlsock/uv.h>): with a
 * context shared by several threads, on any of them, possibly at the same time. It must not
 * block for long, nor call tlsock functions on the connection.
 */
typedef void (*tlsock_keylog_fn)(const char *line, void *user);

/**
 * Sets a callback (NULL removes it) that receives every key log line of the context's
 * connections. @p user is passed to it and must outlive the context.
 * @return 0 or TLSOCK_EINVAL (NULL context, frozen context).
 */
TLSOCK_API int tlsock_ctx_set_keylog(struct tlsock_ctx *ctx, tlsock_keylog_fn fn, void *user);

/**
 * Appends the key log of the context's connections to the file @p path (NULL: stop), each line
 * ended by a newline. The file is opened during the call (created with mode 0600 if it does not
 * exist; an existing file keeps its mode) and stays open until the context is freed or another
 * call replaces it. It must be a regular file. Each line is written with one write(2) on a
 * descriptor opened with O_APPEND, so lines from several threads, contexts or processes sharing
 * the file never interleave. A line that cannot be written (disk full, or a file at the
 * process's RLIMIT_FSIZE: no SIGXFSZ is raised) is lost silently: the handshake goes on.
 * @return 0; TLSOCK_EINVAL (NULL context, frozen context); TLSOCK_ECONFIG when the file cannot be
 *         opened for appending or is not a regular file (the message names it and says why).
 */
TLSOCK_API int tlsock_ctx_set_keylog_file(struct tlsock_ctx *ctx, const char *path);

/* ---------------------------------------------------------------------------------------------
 * Random bytes
 * ------------------------------------------------------------------------------------------- */

/**
 * Fills @p buf with @p len cryptographically secure random bytes from the default
 * implementation's generator (OpenSSL's RAND_bytes(), GnuTLS's gnutls_rnd() at
 * GNUTLS_RND_RANDOM), for keys, tokens and nonces. Both reseed after fork(), so a child never
 * repeats its parent's bytes. Thread-safe. @p len 0 writes nothing (@p buf may then be NULL).
 * @return 0; TLSOCK_EINVAL (NULL @p buf with @p len > 0); TLSOCK_ECONFIG (no implementation
 *         compiled in or chosen); TLSOCK_ESYS when the generator fails (the thread's message,
 *         tlsock_errmsg(), says why: @p buf must then not be used).
 */
TLSOCK_API int tlsock_random(void *buf, size_t len);

/* ---------------------------------------------------------------------------------------------
 * Connections
 * ------------------------------------------------------------------------------------------- */

struct tlsock_conn;
struct tlsock_listener;

/**
 * Per-connection options. Initialise with TLSOCK_OPTS_INIT and set the fields you need; pass NULL
 * to any function for all defaults. The @c size field lets the structure grow without breaking
 * older callers. Strings are copied during the call.
 */
struct tlsock_opts {
    size_t size;              /**< sizeof(struct tlsock_opts); set by TLSOCK_OPTS_INIT. */
    const char *servername;   /**< Client: SNI to send. NULL: the host (unless it is an IP
                                   address); "": send none. */
    const char *verify_name;  /**< Client: name or IP the certificate must match.
                                   NULL: the servername, or the host. */
    int connect_timeout_ms;   /**< TCP connect (and accept wait). 0: none. */
    int handshake_timeout_ms; /**< The handshake. 0: the context's (none unless set). */
    int timeout_ms;           /**< Each later read, write and close_notify (not the
                                   handshake). 0: none. */
    const void *preread;      /**< tlsock_attach_fd(): bytes the application already read from
                                   the socket (e.g. a buffered reader ran ahead); TLS consumes
                                   them before reading the socket. Copied. */
    size_t preread_len;       /**< Length of @c preread. */
};

/** Default options: no servername or verify-name override, timeouts from the context or none. */
#define TLSOCK_OPTS_INIT                                                                           \
    {                                                                                              \
        .size = sizeof(struct tlsock_opts)                                                         \
    }

/**
 * Resolves @p host (name, IPv4 or IPv6 literal), connects over TCP trying each address in turn,
 * and performs the TLS handshake. For clients the host is also the SNI and the name to verify,
 * unless @p opts overrides them.
 *
 * @param ctx   a client context; it is frozen and referenced by the connection.
 * @param host  host name or address.
 * @param port  TCP port.
 * @param opts  options or NULL.
 * @param out   receives the connected, handshaken connection; free with tlsock_close().
 * @return 0; TLSOCK_ERESOLVE, TLSOCK_ESYS (connection refused, unreachable...), TLSOCK_ETIMEDOUT
 *         (connect), TLSOCK_EHANDSHAKE_TIMEOUT, TLSOCK_EVERIFY, TLSOCK_EPROTO, TLSOCK_ECONFIG,
 *         TLSOCK_ENOMEM (also when resolving ran out of memory), ...
 *         With TLS 1.3 the client finishes its handshake before the server has checked the
 *         client's certificate, so a server's refusal of it arrives with the first read
 *         (TLSOCK_EPROTO naming the alert), not here. On error nothing is returned; tlsock_errmsg()
 * tells why (the context may be shared between threads, so the detail is not stored on it).
 */
TLSOCK_API int tlsock_connect(struct tlsock_ctx *ctx, const char *host, uint16_t port,
                              const struct tlsock_opts *opts, struct tlsock_conn **out);

/**
 * Starts TLS on an already connected socket @p fd (for example after a plaintext STARTTLS
 * exchange). The handshake happens on the first tlsock_handshake(), read or write.
 * The caller keeps ownership of @p fd: tlsock_close() never closes it. The socket is switched to
 * non-blocking mode while tlsock uses it and restored by tlsock_close().
 */
TLSOCK_API int tlsock_attach_fd(struct tlsock_ctx *ctx, int fd, const struct tlsock_opts *opts,
                                struct tlsock_conn **out);

/*
 * Any transport. A callback moves bytes between TLS and whatever carries them: another TLS
 * connection, a pipe, a proxy tunnel, a test ring buffer.
 *
 * A read callback returns the number of bytes it stored (1..len), 0 at the end of the stream,
 * or a negative TLSOCK_E* code. A write callback returns the number of bytes it took (1..len) or
 * a negative TLSOCK_E* code. TLSOCK_EWANT_READ / TLSOCK_EWANT_WRITE mean "nothing now" (a
 * non-blocking transport): the tlsock call returns that code and must be repeated with the same
 * arguments later. TLSOCK_ETIMEDOUT reaches the caller as TLSOCK_ETIMEDOUT (as
 * TLSOCK_EHANDSHAKE_TIMEOUT during the handshake, which it ends) and, from a read of application
 * data, leaves the connection usable. A callback returning more than @c len, or a write callback
 * returning 0, breaks the contract: TLSOCK_EINVAL. Any other code reaches the caller exactly and is
 * fatal. Callbacks are called only from within tlsock calls on their connection, in that thread;
 * they must not call tlsock functions on the same connection. tlsock_conn_op_deadline_ms() tells a
 * blocking callback how long it may wait.
 */
typedef ssize_t (*tlsock_read_fn)(void *user, void *buf, size_t len);
typedef ssize_t (*tlsock_write_fn)(void *user, const void *buf, size_t len);

/** A user transport; copied by tlsock_attach_io(). */
struct tlsock_io {
    tlsock_read_fn read;
    tlsock_write_fn write;
    void *user; /**< passed to both callbacks; owned by the caller */
};

/**
 * Starts TLS over a user transport (see tlsock_read_fn). The handshake happens on the first
 * tlsock_handshake(), read or write. @p io is copied; @c io->user must stay valid until
 * tlsock_close(). Per-operation timeouts and deadlines cannot interrupt a blocking callback:
 * callbacks honour them by returning TLSOCK_ETIMEDOUT (see tlsock_conn_op_deadline_ms()).
 */
TLSOCK_API int tlsock_attach_io(struct tlsock_ctx *ctx, const struct tlsock_io *io,
                                const struct tlsock_opts *opts, struct tlsock_conn **out);

/**
 * Sans-I/O memory mode: the connection neither reads nor writes anything itself. Give it the
 * ciphertext that arrived with tlsock_feed() (and tlsock_feed_eof() at the end of the stream),
 * and send what tlsock_drain() returns. Handshake, read and shutdown return TLSOCK_EWANT_READ
 * when they need more input; writes never block (output is buffered until drained). After every
 * call, drain the output (tlsock_conn_pending_output() says how much there is).
 */
TLSOCK_API int tlsock_attach_mem(struct tlsock_ctx *ctx, const struct tlsock_opts *opts,
                                 struct tlsock_conn **out);

/** Memory mode: appends @p len bytes of received ciphertext (copied). */
TLSOCK_API int tlsock_feed(struct tlsock_conn *conn, const void *data, size_t len);

/** Memory mode: the stream of ciphertext has ended (no more tlsock_feed()). */
TLSOCK_API int tlsock_feed_eof(struct tlsock_conn *conn);

/**
 * Memory mode: moves up to @p cap bytes of ciphertext to send into @p buf.
 * @param n  receives the number of bytes moved (0 when there is nothing to send).
 */
TLSOCK_API int tlsock_drain(struct tlsock_conn *conn, void *buf, size_t cap, size_t *n);

/** Memory mode: bytes of ciphertext waiting for tlsock_drain(); 0 for other transports. */
TLSOCK_API size_t tlsock_conn_pending_output(const struct tlsock_conn *conn);

/**
 * The absolute deadline (tlsock_now_ms() clock) of the blocking operation in progress on
 * @p conn, -1 if it has none. For callbacks that wait: return TLSOCK_ETIMEDOUT once it passes.
 */
TLSOCK_API int64_t tlsock_conn_op_deadline_ms(const struct tlsock_conn *conn);

/**
 * Ends TLS but keeps the transport: sends close_notify if not sent yet, waits for the peer's
 * (within the connection's timeout and deadline), then frees the connection and hands back the
 * socket, which goes on in plaintext (STARTTLS in reverse; tlsock_attach_fd() may start TLS on
 * it again later).
 *
 * Nothing is lost: ciphertext bytes that TLS had received but not consumed (those that follow
 * the peer's close_notify, or unused preread bytes) are copied to @p buf; bytes still in the
 * socket stay there. If application data arrives before the peer's close_notify, detach stops
 * with TLSOCK_EINVAL and that data is returned by the next tlsock_read(): read until
 * TLSOCK_ECLOSED, then detach again.
 *
 * @param fd            receives the socket (-1 for callback and memory transports); the caller
 *                      owns it from now on, in its original blocking mode.
 * @param buf, cap      where to copy the leftover bytes.
 * @param leftover_len  receives their number. If @p cap is too small, TLSOCK_EINVAL is returned,
 *                      *leftover_len says how much room is needed, and the connection stays.
 * @return 0 when the connection is freed and the outputs are set; otherwise the connection is
 *         still there (call again after a WANT code, or tlsock_close()).
 */
TLSOCK_API int tlsock_detach(struct tlsock_conn *conn, int *fd, void *buf, size_t cap,
                             size_t *leftover_len);

/**
 * Opens a stdio stream over @p conn (fopencookie), so fprintf, fgets, fread and fflush work.
 * @p mode is as for fopen ("r", "w", "r+"...). On success the stream owns the connection:
 * fclose() sends close_notify and closes it; a read returns EOF at the peer's close_notify; an
 * error sets ferror() and tlsock_conn_errmsg() still says why until fclose().
 */
TLSOCK_API int tlsock_fopen(struct tlsock_conn *conn, const char *mode, FILE **out);

/**
 * Runs the handshake to completion, or returns at once if it is already done. Read and write do
 * it implicitly; call it to learn about verification failures before sending anything.
 * @return 0, TLSOCK_EVERIFY, TLSOCK_EPROTO, TLSOCK_EHANDSHAKE_TIMEOUT, TLSOCK_ETRUNCATED, ...
 */
TLSOCK_API int tlsock_handshake(struct tlsock_conn *conn);

/**
 * Reads up to @p len bytes of application data, waiting until at least one byte is available.
 * @p len must be at least 1 (TLSOCK_EINVAL otherwise).
 * @param nread  receives the number of bytes read (at least 1 on success).
 * @return 0; TLSOCK_ECLOSED when the peer sent close_notify (every later read returns it too;
 *         on GnuTLS also a TLS 1.3 user_canceled, which Java's TLS sends before close_notify:
 *         see docs/implementations.md); TLSOCK_ETRUNCATED when the connection ended without
 *         close_notify; TLSOCK_ETIMEDOUT
 *         (retryable: the connection stays usable); or another fatal error.
 */
TLSOCK_API int tlsock_read(struct tlsock_conn *conn, void *buf, size_t len, size_t *nread);

/**
 * Writes all @p len bytes or fails. A failure, including a timeout, is fatal: the connection may
 * have sent part of the data, so every later call returns the same error. Writing 0 bytes is a
 * successful no-op.
 */
TLSOCK_API int tlsock_write(struct tlsock_conn *conn, const void *buf, size_t len);

/**
 * Sends close_notify: this side will write no more. Reading may go on until the peer's
 * close_notify (TLSOCK_ECLOSED). Calling it again is a no-op.
 */
TLSOCK_API int tlsock_shutdown(struct tlsock_conn *conn);

/**
 * Closes the connection and frees it. If the session is still healthy, sends close_notify first
 * (bounded by the connection's timeout). If tlsock opened the socket it closes it gracefully:
 * half-close, then a short bounded drain of unread input, so that a pending alert or close_notify
 * reaches the peer instead of being destroyed by a TCP reset. A socket given to tlsock_attach_fd()
 * is left open. Accepts NULL.
 */
TLSOCK_API void tlsock_close(struct tlsock_conn *conn);

/**
 * Detail of the last error on @p conn, "" if none. Valid until the connection is closed; for a
 * sticky error it keeps saying why the connection died.
 */
TLSOCK_API const char *tlsock_conn_errmsg(const struct tlsock_conn *conn);

/**
 * Bytes of application data already decrypted and buffered, which the next tlsock_read()
 * returns without waiting. Polling the socket says nothing about them: check this first.
 */
TLSOCK_API size_t tlsock_conn_pending(const struct tlsock_conn *conn);

/** The implementation's session (SSL * or gnutls_session_t); valid until tlsock_close(). */
TLSOCK_API void *tlsock_conn_native(struct tlsock_conn *conn);

/** The connection's socket descriptor (owned by tlsock unless it was attached). */
TLSOCK_API int tlsock_conn_fd(const struct tlsock_conn *conn);

/**
 * Sets the timeout for each later blocking operation (read, write, close_notify), in
 * milliseconds; 0 (TLSOCK_NO_TIMEOUT) for none. Negative values are TLSOCK_EINVAL. The handshake
 * has its own timeout (opts.handshake_timeout_ms, tlsock_ctx_set_handshake_timeout()). To read
 * only what is ready now, set a deadline that has passed (tlsock_conn_set_deadline()).
 */
TLSOCK_API int tlsock_conn_set_timeout(struct tlsock_conn *conn, int timeout_ms);

/**
 * Sets an absolute deadline on tlsock_now_ms()'s monotonic clock, or -1 for none. Every blocking
 * operation stops waiting at the deadline or at its per-operation timeout, whichever comes
 * first, and fails with TLSOCK_ETIMEDOUT (TLSOCK_EHANDSHAKE_TIMEOUT in the handshake). Once the
 * deadline has passed no call waits at all: a read still returns data that is already there, and
 * TLSOCK_ETIMEDOUT (retryable) when there is none. A deadline of 0 is always in the past: it is
 * the way to poll ("what is ready now"), and -1 restores waiting.
 */
TLSOCK_API int tlsock_conn_set_deadline(struct tlsock_conn *conn, int64_t deadline_ms);

/** The monotonic clock used for deadlines, in milliseconds. */
TLSOCK_API int64_t tlsock_now_ms(void);

/** What a connection negotiated and who the peer is. Strings are never NULL ("" if unknown). */
struct tlsock_info {
    const char *impl;             /**< "openssl" or "gnutls" */
    const char *version;          /**< "TLSv1.3" */
    const char *cipher;           /**< IANA name, e.g. "TLS_AES_256_GCM_SHA384" or
                                       "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" */
    const char *alpn;             /**< agreed ALPN protocol, "" for none */
    const char *servername;       /**< SNI sent (client) or received (server) */
    const char *peer_subject;     /**< peer certificate subject, one line; "" without one */
    const char *peer_sans;        /**< subject alternative names, comma-separated */
    const char *peer_fingerprint; /**< SHA-256 of the peer certificate, AB:CD:... */
    int verify_result;            /**< 0 when the peer verified, else the implementation's code */
    const char *verify_message;   /**< "ok" or why verification failed or was skipped */
    bool resumed;                 /**< session resumed */
    /* Appended (issue 11): the same on every implementation. Without a peer certificate the
     * strings are "" and the numbers 0. On a server, the peer is the client: after mutual TLS
     * these fields are the client's identity, and peer_verified says it was verified. */
    const char *peer_issuer; /**< the leaf's issuer, RFC 4514 as peer_subject */
    const char *peer_serial; /**< the leaf's serial number in hexadecimal, upper case,
                                  without leading zero bytes, e.g. "4F1A09" */
    int64_t peer_not_before; /**< the leaf's validity, seconds since 1970-01-01 UTC */
    int64_t peer_not_after;
    const char *peer_spki_sha256; /**< SHA-256 of the leaf's DER SubjectPublicKeyInfo,
                                       AB:CD:...; tlsock_ctx_add_pin() takes it as it is */
    size_t peer_chain_len;        /**< certificates the peer sent, leaf first: see
                                       tlsock_conn_peer_cert_der() */
    bool peer_verified;           /**< the peer's certificate was verified and passed */
    const char *group;            /**< key exchange group, IANA name in lower case: "x25519",
                                       "secp256r1", "ffdhe2048"; "" when none (RSA key
                                       transport, a TLS 1.2 resumption) */
    const char *peer_sigalg;      /**< how the peer signed the handshake, RFC 8446 name:
                                       "ecdsa_secp256r1_sha256", "rsa_pss_rsae_sha256"; "" when
                                       it did not sign (no certificate, a resumption) */
    const char *peer_addr;        /**< the socket's peer, "192.0.2.1:443" or "[2001:db8::1]:443"
                                       (also for a tlsock_uv connection's session, from the
                                       loop's socket); "" for user callbacks and memory mode */
};

/**
 * Returns what the connection negotiated, running the handshake first if needed. The structure
 * and its strings belong to the connection and stay valid until tlsock_close().
 * @return 0; a handshake error; TLSOCK_ENOMEM when the description could not be made (nothing
 *         incomplete is returned, and a later call tries again).
 */
TLSOCK_API int tlsock_conn_info(struct tlsock_conn *conn, const struct tlsock_info **out);

/**
 * Whether the connection's session was resumed (tlsock_info.resumed) without describing the
 * rest: no allocation, no formatting, for a client that checks every connection. It never runs
 * the handshake: false before the handshake is done, after it failed, and for NULL.
 * Thread-safety: as the connection's other calls (one thread at a time).
 */
TLSOCK_API bool tlsock_conn_resumed(const struct tlsock_conn *conn);

/* ---------------------------------------------------------------------------------------------
 * Peer certificates and keying material
 *
 * Each function runs the handshake first if needed (as tlsock_conn_info() does) and fails with
 * its error. The pointers they return belong to the connection and stay valid until it is
 * closed (tlsock_close()); they never change meanwhile.
 * ------------------------------------------------------------------------------------------- */

/**
 * The @p index-th certificate the peer sent (0: its own, then its chain as sent), in DER.
 * tlsock_info.peer_chain_len says how many there are.
 * @return 0; TLSOCK_EINVAL when @p index is not below that count (none without a peer
 *         certificate) or an out-parameter is NULL; TLSOCK_ENOMEM; a handshake error.
 */
TLSOCK_API int tlsock_conn_peer_cert_der(struct tlsock_conn *conn, size_t index,
                                         const unsigned char **der, size_t *len);

/**
 * As tlsock_conn_peer_cert_der(), in PEM: "-----BEGIN CERTIFICATE-----", base64 in lines of 64
 * characters, "-----END CERTIFICATE-----" and a newline; NUL-terminated, @p len without the NUL.
 */
TLSOCK_API int tlsock_conn_peer_cert_pem(struct tlsock_conn *conn, size_t index, const char **pem,
                                         size_t *len);

/**
 * Exports @p len bytes of keying material (RFC 5705; RFC 8446 section 7.5 for TLS 1.3) into
 * @p out: both ends of a session get the same bytes for the same @p label and context, and
 * nobody else can compute them. @p label is a NUL-terminated string, not empty (RFC 5705
 * section 4: registered, or starting with "EXPERIMENTAL"). @p context NULL means no context;
 * with TLS 1.2, no context and an empty one (a pointer with @p context_len 0) give different
 * bytes; with TLS 1.3 they are the same. @p len is 1 to 16384.
 * @return 0; TLSOCK_EINVAL (NULL or empty label, bad length); TLSOCK_EPROTO when the
 *         implementation refuses; a handshake error.
 */
TLSOCK_API int tlsock_conn_export_keying_material(struct tlsock_conn *conn, const char *label,
                                                  const void *context, size_t context_len,
                                                  void *out, size_t len);

/** Length of the tls-exporter channel binding (RFC 9266). */
#define TLSOCK_CHANNEL_BINDING_SIZE 32

/**
 * The `tls-exporter` channel binding of RFC 9266: 32 bytes exported with the label
 * "EXPORTER-Channel-Binding" and an empty context, which an authentication protocol (SCRAM-PLUS,
 * for instance) binds to. It is only safe when the exporter is tied to this handshake: a TLS 1.3
 * session, or TLS 1.2 with the extended master secret (RFC 7627); otherwise an attacker in the
 * middle can make two sessions with the same value (the triple handshake attack), and this
 * refuses with TLSOCK_EINVAL ("channel binding needs TLS 1.3 or the extended master secret").
 * @return 0, TLSOCK_EINVAL, or as tlsock_conn_export_keying_material().
 */
TLSOCK_API int tlsock_conn_channel_binding(struct tlsock_conn *conn,
                                           unsigned char out[TLSOCK_CHANNEL_BINDING_SIZE]);

/* ---------------------------------------------------------------------------------------------
 * Listeners
 * ------------------------------------------------------------------------------------------- */

/**
 * Binds and listens on @p host ("127.0.0.1", "::1", "::" ...; NULL for every IPv4 and IPv6
 * address) and @p port (0 picks a free port; see tlsock_listener_port()).
 * @param ctx      a server context with a certificate; the listener holds a reference, and the
 *                 context is frozen here.
 * @param backlog  listen(2) backlog; 0 for a default.
 * @return 0; TLSOCK_ECONFIG (no certificate), TLSOCK_ERESOLVE, TLSOCK_ESYS (address in use...),
 *         TLSOCK_ENOMEM (also when resolving ran out of memory).
 */
TLSOCK_API int tlsock_listen(struct tlsock_ctx *ctx, const char *host, uint16_t port, int backlog,
                             struct tlsock_listener **out);

/** The port the listener is bound to. */
TLSOCK_API uint16_t tlsock_listener_port(const struct tlsock_listener *lis);

/** The listening socket. */
TLSOCK_API int tlsock_listener_fd(const struct tlsock_listener *lis);

/** Detail of the last error on @p lis, "" if none. */
TLSOCK_API const char *tlsock_listener_errmsg(const struct tlsock_listener *lis);

/**
 * Waits for a client (up to opts->connect_timeout_ms if set) and returns its connection. The
 * TLS handshake is not run here, so a slow or silent client never blocks the accepting thread:
 * it runs on the first tlsock_handshake(), read or write on the new connection, bounded by the
 * handshake timeout. Options apply to the new connection.
 * @return 0, TLSOCK_ETIMEDOUT, TLSOCK_ESYS (accept(2) failed, e.g. EMFILE when the process is out
 *         of descriptors: the client stays queued and a later call serves it), TLSOCK_ENOMEM. The
 *         listener stays usable after any of them.
 */
TLSOCK_API int tlsock_accept(struct tlsock_listener *lis, const struct tlsock_opts *opts,
                             struct tlsock_conn **out);

/** Closes the listening socket and frees the listener. Accepts NULL. */
TLSOCK_API void tlsock_listener_close(struct tlsock_listener *lis);

/* ---------------------------------------------------------------------------------------------
 * Reloading a listener's context
 * ------------------------------------------------------------------------------------------- */

/**
 * Swaps in a new server context, atomically: every tlsock_accept() that starts after it returns
 * makes its connection with @p ctx; connections made before keep the context they were made
 * with (each holds its own reference), so live sessions are not disturbed. The listener takes a
 * reference on @p ctx (the caller keeps its own) and drops its reference on the old context,
 * which is freed when its last connection is closed. This is how a server reloads its
 * certificates without a restart: build a new context from the files, then swap it in.
 *
 * @p ctx is checked and frozen first, as tlsock_listen() does; on an error the listener keeps
 * its context and nothing changes.
 * Thread safety: may be called from any thread, while other threads accept on @p lis (it must
 * not race with tlsock_listener_close()).
 * @return 0; TLSOCK_EINVAL (NULL argument, a client context); the freeze's error (ECONFIG: no
 *         certificate, a configure callback failed...). The thread's message says why.
 */
TLSOCK_API int tlsock_listener_set_ctx(struct tlsock_listener *lis, struct tlsock_ctx *ctx);

/* ---------------------------------------------------------------------------------------------
 * Development certificates and helpers
 * ------------------------------------------------------------------------------------------- */

/**
 * Makes a throw-away certificate authority and a server certificate it signs, for development
 * and tests (like mkcert, but the CA key is discarded). The server certificate has an ECDSA P-256
 * key, is valid from one hour ago for 30 days, and names every entry of @p hosts, a
 * comma-separated list of DNS names and IP addresses (e.g. "localhost,127.0.0.1,::1").
 *
 * @param ca_pem    receives the CA certificate (PEM, NUL-terminated); free with tlsock_free().
 * @param cert_pem  receives the server certificate chain (PEM).
 * @param key_pem   receives the server private key (PEM, unencrypted PKCS#8).
 */
TLSOCK_API int tlsock_devcert_new(const char *hosts, char **ca_pem, char **cert_pem,
                                  char **key_pem);

/** Length of the string written by tlsock_cert_fingerprint(), including the NUL. */
#define TLSOCK_FINGERPRINT_SIZE 96

/**
 * Writes the SHA-256 fingerprint of the first certificate in @p pem as "AB:CD:..." (95 characters
 * and a NUL) into @p out.
 */
TLSOCK_API int tlsock_cert_fingerprint(const char *pem, size_t len,
                                       char out[TLSOCK_FINGERPRINT_SIZE]);

/**
 * Encrypts a private key for storage: re-encodes the first unencrypted PEM private key in
 * @p key_pem (@p len bytes; PKCS#8 "PRIVATE KEY" as tlsock_devcert_new() writes it, or a
 * traditional "EC PRIVATE KEY"/"RSA PRIVATE KEY") as encrypted PKCS#8 PEM ("ENCRYPTED PRIVATE
 * KEY": PBES2, PBKDF2 with HMAC-SHA256, AES-256-CBC) under @p pass, which
 * tlsock_ctx_set_key_passphrase() then gives to load it, on every implementation. Made by the same
 * implementation as tlsock_devcert_new(); the output has the same format on each.
 * @param pass     NUL-terminated, 1 to TLSOCK_PASSPHRASE_MAX bytes.
 * @param out_pem  receives the encrypted key (NUL-terminated); free with tlsock_free().
 * @return 0; TLSOCK_EINVAL (NULL argument, empty or too long passphrase); TLSOCK_ECONFIG when
 *         @p key_pem holds no unencrypted PEM key (an encrypted one included) or no
 *         implementation compiled in can encrypt keys; TLSOCK_ENOMEM. Thread-safe; the thread's
 *         message (tlsock_errmsg()) says why.
 */
TLSOCK_API int tlsock_key_encrypt(const char *key_pem, size_t len, const char *pass,
                                  char **out_pem);

/* ---------------------------------------------------------------------------------------------
 * Sessions: resumption (docs/sessions.md)
 *
 * A client context keeps the sessions its connections get in a cache, on by default, and offers
 * one to the next connection to the same place: the same host and port given to tlsock_connect()
 * or tlsock_uv_connect() (none for the attach functions), the same SNI and the same name to
 * verify. A TLS 1.3 ticket is offered once: it leaves the cache when it is offered, and the
 * tickets the server sends on that connection put fresh ones in. A TLS 1.2 session stays until it
 * expires or is replaced. A session that the server refuses is never an error: the handshake is a
 * full one, and tlsock_info.resumed says which it was, on both ends.
 *
 * A server context keeps a TLS 1.2 session-ID cache (for clients that send no session tickets),
 * the same on every implementation: bounded, shared by its connections; an entry expires after
 * the server's session lifetime, the one its tickets have (tlsock_ctx_set_ticket_lifetime(), two
 * hours by default). Tickets themselves are set in "Session tickets".
 *
 * All of it is thread-safe: connections of one context on several threads share its caches.
 * ------------------------------------------------------------------------------------------- */

/** Entries of a client context's session cache unless tlsock_ctx_set_session_cache() says. */
#define TLSOCK_SESSION_CACHE_CLIENT_DEFAULT 256
/** Entries of a server context's TLS 1.2 session-ID cache unless set. */
#define TLSOCK_SESSION_CACHE_SERVER_DEFAULT 4096

/**
 * Sizes the context's session cache: a client's cache of sessions to resume, a server's TLS 1.2
 * session-ID cache. @p max_entries 0 turns it off (a client then offers no session, not even
 * imported ones; a server keeps no session IDs: a client that offers one gets a full handshake).
 * When full, the least recently used entry goes.
 * @return 0; TLSOCK_EINVAL (NULL, or the context is frozen). Not thread-safe: a setter.
 */
TLSOCK_API int tlsock_ctx_set_session_cache(struct tlsock_ctx *ctx, size_t max_entries);

/**
 * The connection's latest resumable session, as bytes an application may keep (in a file, across
 * runs) and give back to tlsock_ctx_session_import() of a context with the same configuration.
 *
 * When there is one: on a client, after a TLS 1.2 handshake; with TLS 1.3 only once a ticket
 * arrived, which the server sends after the handshake, so after the first tlsock_read() that
 * returned data (or after the server's first reply in any case). Each export gives the latest
 * ticket received.
 *
 * The bytes are a tlsock header (magic "TLSK", format version, implementation, host, port, SNI,
 * name verified, protocol version, a SHA-256 digest of the context's implementation, trust
 * anchors, verification settings, protocol range and certificate) followed by the
 * implementation's own serialized session. They hold the session's secrets: keep them as
 * carefully as a private key.
 * @param out  receives the bytes (malloc'd; free with tlsock_free()).
 * @param len  receives their length.
 * @return 0; TLSOCK_EINVAL (NULL argument, a server connection, the session cache of the context
 *         is off, or no resumable session yet: "no resumable session yet ..."); TLSOCK_ENOMEM.
 *         The connection's message says why; the connection is unaffected. Call from the thread
 *         that uses the connection.
 */
TLSOCK_API int tlsock_conn_session_export(struct tlsock_conn *conn, unsigned char **out,
                                          size_t *len);

/**
 * Puts a session exported by tlsock_conn_session_export() into the client context's cache, under
 * the host, port, SNI and name it was exported for, to be offered by the next connection to them.
 * May be called before or after the context froze, from any thread. A session exported by a
 * context of another configuration (the digest differs: other trust anchors, protocol range,
 * certificate, verification) is accepted but dropped: it is never offered, so the connection
 * makes a full handshake. The bytes are copied.
 * @return 0 (stored, or dropped as said); TLSOCK_EINVAL for bytes that are not an export (bad
 *         magic, unknown format version, truncated, trailing bytes), an export of another
 *         implementation, a server context or one whose session cache is off; TLSOCK_ENOMEM. The
 *         thread's message (tlsock_errmsg()) says why; before the context froze, its message
 *         (tlsock_ctx_errmsg()) too (after, imports on several threads do not share it).
 */
TLSOCK_API int tlsock_ctx_session_import(struct tlsock_ctx *ctx, const void *data, size_t len);

/* ---------------------------------------------------------------------------------------------
 * Session stores: a server's TLS 1.2 sessions kept outside the process (docs/sessions.md, "A
 * shared session store")
 *
 * By default a server context keeps its TLS 1.2 session-ID cache in the process. Several
 * processes or machines serving the same clients can share one store instead (Redis, memcached,
 * a database): tlsock_ctx_set_session_store() gives the context three functions, and then
 *   - a new TLS 1.2 session is put, under its key, until now + the server's session lifetime
 *     (tlsock_ctx_set_ticket_lifetime());
 *   - a ClientHello that will negotiate TLS 1.2 and offers a session ID without a ticket starts a
 *     get before the implementation sees the hello, and the handshake waits for its done; a
 *     TLS 1.3 hello, one that offers a ticket, or one without a session ID calls nothing;
 *   - a session the implementation drops is removed.
 * The wait is bounded: a get whose done has not come within TLSOCK_STORE_WAIT_MS, and within half
 * the handshake timeout when the connection has one (and before its deadline), counts as a miss
 * and the handshake goes on as a full one; the late done is then harmless. The blocking calls
 * (also tlsock_handshake() on a memory-mode connection) wait for it on a condition variable; a
 * tlsock_uv connection never blocks its loop: its handshake pauses, other work on the loop goes
 * on, and the done, from whatever thread, is carried back to the loop.
 *
 * Threads: get, put and remove are called on the thread that drives the connection: the caller of
 * the blocking calls, the loop's thread for tlsock_uv connections; so from several threads at once
 * when several threads drive connections of the context. done may be called from any thread,
 * once, before or after get returns. Keys (at most 160 bytes) and values are opaque bytes, only
 * valid during the call: "tlsock:sess:", the context's configuration digest and the session ID,
 * in hex, then the implementation's serialized session, which holds its secrets (keep the store
 * private).
 * ------------------------------------------------------------------------------------------- */

/** How long a handshake waits at most for a session store's get, in ms. */
#define TLSOCK_STORE_WAIT_MS 1000

/**
 * Completion of tlsock_session_store.get: @p value (@p len bytes) is the entry, or NULL with
 * @p len 0 when there is none, it expired, or the store failed (a failed lookup is a miss: the
 * handshake goes on as a full one). @p value is only valid during the call. Called exactly once
 * per get, from any thread, possibly before get returns.
 */
typedef void (*tlsock_store_done_fn)(void *arg, const void *value, size_t len);

/** A shared session store: what a server context keeps its TLS 1.2 sessions in. */
struct tlsock_session_store {
    /** Looks @p key up; calls @p done(@p arg, ...) exactly once (see tlsock_store_done_fn). */
    void (*get)(void *user, const void *key, size_t key_len, tlsock_store_done_fn done, void *arg);
    /** Stores a copy of @p value under @p key until @p expires_ms (Unix time in ms); best effort,
     *  no completion; must not block for long (queue it). */
    void (*put)(void *user, const void *key, size_t key_len, const void *value, size_t len,
                int64_t expires_ms);
    /** Forgets @p key (a session that ended with a fatal error; it may never have been put);
     *  best effort, no completion, from any thread; must not block for long. */
    void (*remove)(void *user, const void *key, size_t key_len);
    /** Passed to each of the above. */
    void *user;
};

/** Makes @p ctx (a server context, not frozen) keep its session-ID cache in @p store instead of
 *  the in-process cache; the struct is copied, @p store->user must outlive the context (and every
 *  connection made from it). NULL goes back to the in-process cache. */
TLSOCK_API int tlsock_ctx_set_session_store(struct tlsock_ctx *ctx,
                                            const struct tlsock_session_store *store);

/** Frees memory returned by tlsock (e.g. by tlsock_devcert_new()). Accepts NULL. */
TLSOCK_API void tlsock_free(void *ptr);

#ifdef __cplusplus
}
#endif

#endif /* TLSOCK_H */
