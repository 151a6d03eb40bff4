/*
 * Definitions shared by the library's files: the opaque objects and the error helpers.
 */
#ifndef TLSOCK_INTERNAL_H
#define TLSOCK_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "impl.h"
#include "tlsock.h"

#define TLSOCK__MUST_CHECK        __attribute__((warn_unused_result))
#define TLSOCK__PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))

/* Error detail lives in a fixed buffer on each object so that reporting never allocates. */
#define TLSOCK__ERRMSG_SIZE 512
struct tlsock__err {
    char msg[TLSOCK__ERRMSG_SIZE];
};

/*
 * Records "fmt..." in @p err (when not NULL) and in the thread's last-error message, and returns
 * @p code, so that error paths read `return tlsock__fail(err, TLSOCK_ECONFIG, "...")`.
 */
int tlsock__fail(struct tlsock__err *err, int code, const char *fmt, ...) TLSOCK__PRINTF(3, 4);

/* Copies @p err to the thread's last-error message (after an implementation filled it). */
void tlsock__publish(const struct tlsock__err *err);

static inline void tlsock__err_clear(struct tlsock__err *err)
{
    err->msg[0] = '\0';
}

/* The RFC name of a TLS alert description ("unknown_ca"), "unknown alert" if unknown. */
const char *tlsock__alert_name(int description);

/* Monotonic nanoseconds. */
int64_t tlsock__now_ns(void);

/* Absolute deadline for a timeout in ms (<= 0 meaning none, per the API): INT64_MAX if none. */
int64_t tlsock__deadline_after(int timeout_ms);

struct tlsock_ctx {
    atomic_int refs;
    atomic_bool frozen;
    pthread_mutex_t freeze_lock; /* the first connections may race to freeze */
    int role;
    const struct tlsock__impl *impl;
    void *native;
    int verify_mode;
    bool ca_set;           /* a CA was set explicitly: no default system store */
    bool has_cert;         /* a certificate and key were set */
    int handshake_timeout; /* ms, TLSOCK_NO_TIMEOUT for none */
    struct tlsock__err err;
};

/* Freezes @p ctx (loading default trust anchors once) and returns 0 or an error in @p err. */
int tlsock__ctx_freeze(struct tlsock_ctx *ctx, struct tlsock__err *err) TLSOCK__MUST_CHECK;

enum tlsock__state {
    TLSOCK__HANDSHAKING, /* handshake not finished yet */
    TLSOCK__OPEN,        /* handshake done, data may flow */
    TLSOCK__FAILED,      /* a fatal error happened; conn->sticky says which */
};

struct tlsock_conn {
    struct tlsock_ctx *ctx; /* referenced */
    const struct tlsock__impl *impl;
    void *tls; /* the implementation's session */
    int fd;
    bool owns_fd;    /* opened by tlsock: closed by tlsock_close */
    int saved_flags; /* fcntl flags to restore on an attached fd */
    enum tlsock__state state;
    int sticky;       /* fatal error code once state is FAILED */
    bool sent_close;  /* our close_notify is out */
    bool peer_closed; /* the peer's close_notify arrived */
    int timeout_ms;   /* per operation; TLSOCK_NO_TIMEOUT for none */
    int handshake_timeout_ms;
    int64_t deadline_ns; /* absolute, INT64_MAX for none */
    char servername[256];
    char verify_name[256];
    bool info_valid;
    struct tlsock__info_buf info_buf;
    struct tlsock_info info;
    struct tlsock__err err;
};

/* Creates a connection over connected socket @p fd (taking it over if @p owns_fd). */
int tlsock__conn_new(struct tlsock_ctx *ctx, int fd, bool owns_fd, const char *host,
                     const struct tlsock_opts *opts, struct tlsock_conn **out) TLSOCK__MUST_CHECK;

/*
 * The blocking driver: calls @p step until it returns something other than a WANT code, waiting
 * on the connection's fd in between, until @p deadline_ns. On timeout returns @p timeout_code.
 */
typedef int (*tlsock__step_fn)(struct tlsock_conn *conn, void *arg);
int tlsock__drive(struct tlsock_conn *conn, tlsock__step_fn step, void *arg, int64_t deadline_ns,
                  int timeout_code) TLSOCK__MUST_CHECK;

/* Networking helpers (net.c). */
int tlsock__set_nonblocking(int fd, int *saved_flags, struct tlsock__err *err) TLSOCK__MUST_CHECK;
int tlsock__tcp_connect(const char *host, uint16_t port, int64_t deadline_ns, int *fd_out,
                        struct tlsock__err *err) TLSOCK__MUST_CHECK;
/* Waits for @p events on @p fd until @p deadline_ns: 0, TLSOCK_ETIMEDOUT or TLSOCK_ESYS. */
int tlsock__wait_fd(int fd, short events, int64_t deadline_ns, struct tlsock__err *err);
/* Half-closes, drains unread input for a short bounded time, then closes @p fd. */
void tlsock__graceful_close(int fd);
/* True when @p host is an IPv4 or IPv6 literal. */
bool tlsock__is_ip_literal(const char *host);

/* Generates a certificate with the default implementation (tests use it directly). */
int tlsock__cert_generate(const struct tlsock__cert_spec *spec, struct tlsock__pem_pair *out,
                          struct tlsock__err *err) TLSOCK__MUST_CHECK;
void tlsock__pem_pair_free(struct tlsock__pem_pair *pair);

#endif /* TLSOCK_INTERNAL_H */
