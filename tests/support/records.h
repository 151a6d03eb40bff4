/*
 * A TLS record "wire" for conformance tests: it parses the ciphertext two peers exchange, keeps
 * the plaintext handshake messages it sees (to count ClientHellos or read a hello's extensions),
 * and can re-frame plaintext handshake records into fragments of a few bytes, which RFC 8446
 * section 5.1 and RFC 5246 section 6.2.1 allow and every peer must reassemble.
 *
 * It knows nothing of tlsock: tests move bytes through it between tlsock_drain() and
 * tlsock_feed(), or between two sockets (ts_proxy). The handshake messages are parsed with this
 * file's own code, never the library's, so that what a test expects is computed independently.
 */
#ifndef TLSOCK_TEST_RECORDS_H
#define TLSOCK_TEST_RECORDS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Record content types and handshake message types (RFC 8446 section 5.1 and 4). */
enum {
    TS_CT_CCS = 20,
    TS_CT_ALERT = 21,
    TS_CT_HANDSHAKE = 22,
    TS_CT_APPDATA = 23,
    TS_HS_CLIENT_HELLO = 1,
    TS_HS_SERVER_HELLO = 2,
    TS_HS_NEW_SESSION_TICKET = 4,
};

/* A growable byte buffer. */
struct ts_bytes {
    unsigned char *data;
    size_t len;
    size_t cap;
};

int ts_bytes_append(struct ts_bytes *b, const void *data, size_t len);
void ts_bytes_free(struct ts_bytes *b);

/* One plaintext handshake message seen on a flow: its type and where its body is in hs. */
struct ts_hs_msg {
    unsigned char type;
    size_t body_off;
    size_t body_len;
};

#define TS_FLOW_MAX_MSGS 32

/* One direction of the wire. */
struct ts_flow {
    size_t frag;              /* > 0: plaintext handshake records leave with this many bytes each */
    bool strip_renegotiation; /* ClientHellos lose their renegotiation signal on the way */
    bool swap_groups;         /* ClientHellos list their first two supported groups swapped */
    int stripped;             /* how many ClientHello records lost one */
    struct ts_bytes rec;      /* a record not complete yet */
    bool after_ccs;           /* TLS 1.2 and below: handshake records after a CCS are encrypted */
    struct ts_bytes hs;       /* the plaintext handshake stream, all records' payloads in order */
    size_t hs_parsed;         /* bytes of hs split into messages */
    struct ts_hs_msg msgs[TS_FLOW_MAX_MSGS];
    size_t nmsgs;
    unsigned records_in;     /* records received from the sender */
    unsigned records_out;    /* records passed on (more when re-framed) */
    unsigned hs_records_out; /* plaintext handshake records passed on */
    bool broken;             /* the stream did not parse as TLS records */
};

struct ts_wire {
    struct ts_flow c2s; /* client to server */
    struct ts_flow s2c;
    int version; /* the version the ServerHello chose (0x0303, 0x0304...), 0 before */
};

/* Starts a wire that re-frames plaintext handshake records into @p c2s_frag and @p s2c_frag
 * bytes each (0: leave them as they are). */
void ts_wire_init(struct ts_wire *w, size_t c2s_frag, size_t s2c_frag);
void ts_wire_free(struct ts_wire *w);

/*
 * Passes bytes the sender of @p flow wrote through the wire: complete records (re-framed when
 * the flow says so) are appended to @p out, a partial record waits for the rest. 0, or -1 when
 * the bytes are no TLS record stream (flow->broken) or memory ran out.
 */
int ts_wire_pass(struct ts_wire *w, struct ts_flow *flow, const void *in, size_t len,
                 struct ts_bytes *out);

/* How many plaintext handshake messages of @p type @p flow carried. */
size_t ts_flow_count(const struct ts_flow *flow, int type);

/* The body of the @p nth (from 0) handshake message of @p type, or NULL. */
const unsigned char *ts_flow_msg(const struct ts_flow *flow, int type, size_t nth, size_t *len);

/* What a ClientHello body says, parsed independently of the library. */
struct ts_hello {
    int legacy_version;
    bool scsv;               /* TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746 section 3.3) */
    bool renegotiation_info; /* the renegotiation_info extension (0xff01) */
    bool supported_versions; /* the extension is present */
    bool offers_tls13;
    unsigned suites[64]; /* cipher suites, in the client's order */
    size_t nsuites;
    unsigned groups[32]; /* supported_groups, in the client's order */
    size_t ngroups;
    unsigned shares[8]; /* key_share groups, in order */
    size_t nshares;
};

/* Parses a ClientHello body; 0, or -1 if it is malformed. */
int ts_hello_parse(const unsigned char *body, size_t len, struct ts_hello *out);

/*
 * Rewrites a ClientHello inside @p rec (one whole plaintext handshake record holding it) so that
 * it carries no renegotiation signal: the SCSV and the renegotiation_info extension become
 * GREASE values (RFC 8701), which peers ignore, so no length changes. 1 if something was
 * rewritten, 0 if there was nothing to rewrite, -1 if it is not a ClientHello record.
 */
int ts_hello_strip_renegotiation(unsigned char *rec, size_t len);

/*
 * Swaps the first two entries of the supported_groups extension of a ClientHello inside @p rec
 * (one whole plaintext handshake record holding it), so that the client seems to prefer the
 * group it sent no key share for. The transcripts then differ: the handshake fails after the
 * server's answer, which is what a test looks at. 1 if swapped, 0 if not, -1 if no ClientHello.
 */
int ts_hello_swap_groups(unsigned char *rec, size_t len);

/* How many of the ServerHellos on @p s2c are HelloRetryRequests (RFC 8446 section 4.1.3). */
size_t ts_flow_hello_retries(const struct ts_flow *s2c);

/* ---- a re-framing proxy between two sockets -------------------------------------------------- */

/*
 * A thread that accepts one connection on 127.0.0.1 and relays it to 127.0.0.1:@p target_port
 * through a ts_wire, so that two blocking tlsock peers talk through real loopback sockets with
 * their handshake records re-framed. Each direction's bytes leave in one send, so the receiver
 * finds many small records waiting at once. Bounded by TS_IO_TIMEOUT_MS.
 */
struct ts_proxy {
    int lfd;
    uint16_t port; /* where clients connect */
    uint16_t target_port;
    pthread_t thread;
    bool started;
    atomic_bool stop;
    struct ts_wire wire; /* read it only after ts_proxy_stop() */
    int result;          /* 0: both ends closed; TS_ESETUP or TS_EMISMATCH otherwise */
};

int ts_proxy_start(struct ts_proxy *p, uint16_t target_port, size_t c2s_frag, size_t s2c_frag);
/* Joins the thread (it ends when both peers closed, or at once when asked); safe to repeat. */
void ts_proxy_stop(struct ts_proxy *p);

#endif /* TLSOCK_TEST_RECORDS_H */
