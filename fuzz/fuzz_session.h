/*
 * fuzz_session's input language, shared with fuzz_seeds (which writes seed programs in it).
 * The meaning of each operation and argument is in fuzz_session.c's header comment.
 */
#ifndef TLSOCK_FUZZ_SESSION_H
#define TLSOCK_FUZZ_SESSION_H

/* An operation byte: the operation in the low nibble, the side in bit 4, a variant in 5-7. */
enum fz_op {
    FZ_OP_HANDSHAKE = 0,
    FZ_OP_WRITE = 1, /* u16 length */
    FZ_OP_SHUTDOWN = 2,
    FZ_OP_KEY_UPDATE = 3,  /* variant bit 0: ask the peer to update too */
    FZ_OP_RENEGOTIATE = 4, /* TLS 1.2: HelloRequest (server) or a new ClientHello (OpenSSL) */
    FZ_OP_ALERT = 5,       /* u8 level, u8 description, u8 count - 1: GnuTLS senders only */
    FZ_OP_MUTATE = 6,      /* damage to records the side sends: u8 skip, u8 kind, arguments */
    FZ_OP_CHUNK = 7,       /* u8: deliver what the side sends in pieces of this size (0: whole) */
    FZ_OP_EOF = 8,         /* the side's input stream ends (tlsock_feed_eof) */
    FZ_OP_DETACH = 9,
    FZ_OP_INFO = 10,
    FZ_OP_SMALL_WRITES = 11, /* u8 count: writes of 1 to 16 bytes */
    FZ_OP_READ_SIZE = 12,    /* u8: the side reads with buffers of this size (0: 16384) */
    FZ_OP_PUMP = 13,         /* (and 14, 15) only carry and step */
};

#define FZ_CLIENT                  0
#define FZ_SERVER                  1
#define FZ_OP(op, side)            ((uint8_t)((op) | (side) << 4))
#define FZ_OP_VARIANT(op, side, v) ((uint8_t)((op) | (side) << 4 | (v) << 5))

/* The first configuration byte: implementations (0 OpenSSL, 1 GnuTLS), versions,
 * authentication; FZ_CFG_COMPAT and FZ_CFG_ALPN may be or-ed in. */
#define FZ_SESSION_CFG(client, server, versions, auth)                                             \
    ((uint8_t)((client) | (server) << 1 | (versions) << 2 | (auth) << 6))
#define FZ_CFG_COMPAT 0x10
#define FZ_CFG_ALPN   0x20
/* The second configuration byte. */
#define FZ_CFG2_NO_CLIENT_CERT 0x01
#define FZ_CFG2_OPTIONAL       0x02
#define FZ_CFG2_VERIFY_IP      0x04
#define FZ_CFG2_LEGACY         0x08
#define FZ_CFG2_NO_SNI         0x10

/* Damage to one record (FZ_OP_MUTATE's kind byte, modulo FZ_MUT_KINDS). */
enum fz_mutation_kind {
    FZ_MUT_FLIP = 0,       /* u16 offset, u8 mask */
    FZ_MUT_TRUNCATE = 1,   /* u16 bytes kept */
    FZ_MUT_SET_LENGTH = 2, /* u16 new length field */
    FZ_MUT_SPLIT = 3,      /* u16: the body cut into two records of the same type there */
    FZ_MUT_INSERT = 4,     /* u8 type, u16 version, u16 length, body: a record before this one */
    FZ_MUT_DROP = 5,
    FZ_MUT_REPLAY = 6,      /* the record twice */
    FZ_MUT_SET_TYPE = 7,    /* u8 */
    FZ_MUT_SET_VERSION = 8, /* u16 */
    FZ_MUT_END_AFTER = 9,   /* the stream ends after this record */
    FZ_MUT_REPLACE = 10,    /* u16 length, body: same type and version, new body */
    FZ_MUT_KINDS = 11,
};

#endif /* TLSOCK_FUZZ_SESSION_H */
