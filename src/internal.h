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

/* What a context setter applied to the native context (ctx.c), kept for a change of impl. */
enum tlsock__setting_kind {
    TLSOCK__SET_PROTOCOLS,
    TLSOCK__SET_CIPHERS,
    TLSOCK__SET_CA_FILE,
    TLSOCK__SET_CA_DIR,
    TLSOCK__SET_CA_MEM,
    TLSOCK__SET_CA_SYSTEM,
    TLSOCK__SET_CERT,
    TLSOCK__SET_ALPN,
};

struct tlsock__setting {
    struct tlsock__setting *next;
    enum tlsock__setting_kind kind;
    int min_version; /* PROTOCOLS */
    int max_version;
    char *text; /* CIPHERS policy, CA path or PEM, CERT chain PEM, ALPN wire list */
    size_t text_len;
    char *key; /* CERT: the key PEM, wiped when freed */
    size_t key_len;
};

struct tlsock_ctx {
    atomic_int refs;
    atomic_bool frozen;
    pthread_mutex_t freeze_lock; /* the first connections may race to freeze */
    int role;
    const struct tlsock__impl *impl;
    void *native;
    int verify_mode;
    bool ca_set;   /* a CA was set explicitly: no default system store */
    bool has_cert; /* a certificate and key were set */
    tlsock_ctx_configure_fn on_ctx; /* configure callbacks, NULL if none */
    tlsock_conn_configure_fn on_conn;
    void *configure_user;
    int handshake_timeout;            /* ms, 0 (TLSOCK_NO_TIMEOUT) for none */
    struct tlsock__setting *settings; /* every setter's effect, in order (replayed by set_impl) */
    struct tlsock__err err;
};

/* Freezes @p ctx (loading default trust anchors once) and returns 0 or an error in @p err. */
int tlsock__ctx_freeze(struct tlsock_ctx *ctx, struct tlsock__err *err) TLSOCK__MUST_CHECK;

/* A growable byte queue (buffer.c). */
struct tlsock__buf {
    unsigned char *data;
    size_t len; /* bytes stored */
    size_t off; /* bytes already taken from the front */
    size_t cap;
};
int tlsock__buf_append(struct tlsock__buf *b, const void *data, size_t len) TLSOCK__MUST_CHECK;
size_t tlsock__buf_take(struct tlsock__buf *b, void *out, size_t cap);
size_t tlsock__buf_pending(const struct tlsock__buf *b);
void tlsock__buf_free(struct tlsock__buf *b);
/* Makes @p b (its storage freed) read @p len bytes of the caller's, until tlsock__buf_own(). */
void tlsock__buf_borrow(struct tlsock__buf *b, const void *data, size_t len);
/* Copies what is left of borrowed bytes into owned storage (nothing: no storage); else no-op. */
int tlsock__buf_own(struct tlsock__buf *b) TLSOCK__MUST_CHECK;

/* How a connection's ciphertext moves. */
enum tlsock__transport {
    TLSOCK__TRANSPORT_FD,           /* the implementation's own socket I/O (fast path) */
    TLSOCK__TRANSPORT_FD_CALLBACKS, /* the socket, through the generic callback path */
    TLSOCK__TRANSPORT_USER,         /* the user's callbacks */
    TLSOCK__TRANSPORT_MEMORY,       /* sans-I/O: tlsock_feed / tlsock_drain */
};

enum tlsock__state {
    TLSOCK__HANDSHAKING, /* handshake not finished yet */
    TLSOCK__OPEN,        /* handshake done, data may flow */
    TLSOCK__FAILED,      /* a fatal error happened; conn->sticky says which */
};

struct tlsock_conn {
    struct tlsock_ctx *ctx; /* referenced */
    const struct tlsock__impl *impl;
    void *tls; /* the implementation's session */
    enum tlsock__transport transport;
    struct tlsock_io io; /* the callbacks the implementation uses, unless TRANSPORT_FD */
    int fd;              /* the socket, -1 for user and memory transports */
    bool owns_fd;        /* opened by tlsock: closed by tlsock_close */
    int saved_flags;     /* fcntl flags to restore on the socket */
    enum tlsock__state state;
    int sticky;       /* fatal error code once state is FAILED */
    bool sent_close;  /* our close_notify is out */
    bool peer_closed; /* the peer's close_notify arrived */
    int timeout_ms;   /* per operation; TLSOCK_NO_TIMEOUT for none */
    int handshake_timeout_ms;
    int64_t deadline_ns;            /* absolute, INT64_MAX for none */
    int64_t op_deadline_ns;         /* of the blocking operation in progress, INT64_MAX for none */
    size_t write_done;              /* progress of a tlsock_write interrupted by a WANT code */
    struct tlsock__buf mem_in;      /* memory mode: fed ciphertext */
    struct tlsock__buf mem_out;     /* memory mode: ciphertext to drain */
    bool mem_eof;                   /* memory mode: tlsock_feed_eof was called */
    int sys_errno;                  /* fd-callback transport: errno behind its TLSOCK_ESYS */
    struct tlsock__buf stash;       /* application data that arrived while detaching */
    struct tlsock__conn_info *info; /* made by the first tlsock_conn_info(), NULL until then */
    struct tlsock__err err;
};

/* What tlsock_conn_info() returns, and the storage behind its strings. */
struct tlsock__conn_info {
    struct tlsock__info_buf buf;
    struct tlsock_info pub;
};

/* What a new connection runs over. */
struct tlsock__conn_setup {
    enum tlsock__transport transport; /* FD may become FD_CALLBACKS through opts */
    int fd;                           /* FD: a connected socket; else -1 */
    bool owns_fd;                     /* close the socket in tlsock_close */
    const char *host;                 /* client: name connected to, for SNI and verification */
    const struct tlsock_io *io;       /* USER: the callbacks */
};

/* Creates a connection; on failure the caller still owns the socket. */
int tlsock__conn_new(struct tlsock_ctx *ctx, const struct tlsock__conn_setup *setup,
                     const struct tlsock_opts *opts, struct tlsock_conn **out) TLSOCK__MUST_CHECK;
/* Starts a public call: clears the message, or returns the sticky error of a dead connection. */
int tlsock__conn_begin(struct tlsock_conn *conn) TLSOCK__MUST_CHECK;
/* Records an operation's outcome (sticky errors) and returns it. */
int tlsock__conn_settle(struct tlsock_conn *conn, int rc, bool timeout_retryable);
/* Runs the handshake if it is not done yet. */
int tlsock__conn_handshake(struct tlsock_conn *conn) TLSOCK__MUST_CHECK;
/* Sends close_notify once, until @p deadline_ns. */
int tlsock__conn_send_close(struct tlsock_conn *conn, int64_t deadline_ns) TLSOCK__MUST_CHECK;
/* The deadline of the next blocking operation: its timeout or the absolute deadline. */
int64_t tlsock__conn_op_deadline(const struct tlsock_conn *conn);
/* Reads application data through the driver, bounded by the operation deadline. */
int tlsock__conn_read(struct tlsock_conn *conn, void *buf, size_t len, size_t *nread);
/*
 * Async hand-off (src/uv). to_memory: the connection's ciphertext now moves through the memory
 * transport (mem_in / mem_out), which an event loop feeds and drains; conn->fd stays recorded
 * but is no longer read or written by the core. to_socket: back to blocking use over @p fd;
 * ciphertext fed but not consumed yet is read before the socket, and mem_out must be empty.
 */
int tlsock__conn_to_memory(struct tlsock_conn *conn) TLSOCK__MUST_CHECK;
int tlsock__conn_to_socket(struct tlsock_conn *conn, int fd, bool owns_fd) TLSOCK__MUST_CHECK;
/* Frees the connection and everything it holds but the socket. */
void tlsock__conn_free(struct tlsock_conn *conn);
/* Tells the implementation the session is busy (@p hold) or idle: see impl.h hold_buffers. */
void tlsock__conn_hold_buffers(struct tlsock_conn *conn, bool hold);

/* Transports the core implements as callbacks; their user pointer is the connection. */
extern const struct tlsock_io tlsock__mem_io; /* transport_mem.c */
extern const struct tlsock_io tlsock__fd_io;  /* transport_fd.c */

/*
 * The blocking driver: calls @p step until it returns something other than a WANT code, waiting
 * on the connection's fd in between, until @p deadline_ns. On timeout returns @p timeout_code.
 * Connections without a socket get the WANT code back: their transport decides when to retry.
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
/*
 * One recv/send on a non-blocking socket: bytes moved, 0 at EOF (recv), TLSOCK_EWANT_READ /
 * TLSOCK_EWANT_WRITE when it would block, or TLSOCK_ESYS with *sys_errno set. Restarts on EINTR;
 * sends with MSG_NOSIGNAL.
 */
ssize_t tlsock__sock_recv(int fd, void *buf, size_t len, int *sys_errno);
ssize_t tlsock__sock_send(int fd, const void *buf, size_t len, int *sys_errno);
/* The same for several buffers in one sendmsg (a TLS flight of several records). */
struct iovec;
ssize_t tlsock__sock_sendmsg(int fd, const struct iovec *iov, int iovcnt, int *sys_errno);
/* Half-closes, drains unread input for a short bounded time, then closes @p fd. */
void tlsock__graceful_close(int fd);
/*
 * A listening socket (listener.c) on @p host (NULL: every address, dual stack when possible) and
 * @p port, non-blocking and close-on-exec; @p reuseport sets SO_REUSEPORT before bind. On failure
 * the thread's message says why.
 */
int tlsock__listen_socket(const char *host, uint16_t port, int backlog, bool reuseport,
                          int *fd_out) TLSOCK__MUST_CHECK;
/* The port a bound socket got (the kernel picks one for port 0); 0 if unknown. */
uint16_t tlsock__bound_port(int fd);
/* True when @p host is an IPv4 or IPv6 literal. */
bool tlsock__is_ip_literal(const char *host);

/* Generates a certificate with the default implementation (tests use it directly). */
int tlsock__cert_generate(const struct tlsock__cert_spec *spec, struct tlsock__pem_pair *out,
                          struct tlsock__err *err) TLSOCK__MUST_CHECK;
void tlsock__pem_pair_free(struct tlsock__pem_pair *pair);

#endif /* TLSOCK_INTERNAL_H */
