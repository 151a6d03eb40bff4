/*
 * What the fuzz harnesses share: reading the input as a little program, the certificates made
 * once per process, contexts made once per configuration, and the end-of-input cleanup.
 *
 * Every harness uses only the public API (tlsock.h) on the memory transport: what it finds, a
 * user of tlsock_attach_mem() / tlsock_feed() / tlsock_drain() can hit. The TLS libraries are the
 * system's (not instrumented); libFuzzer's coverage feedback comes from tlsock's own code.
 */
#ifndef TLSOCK_FUZZ_H
#define TLSOCK_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tlsock.h>

/* libFuzzer's entry points (the standalone driver, standalone.c, calls them too). */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input, consumed from the front. Reading past the end yields zeros and empty slices. */
struct fz_in {
    const uint8_t *p;
    size_t n;
};

uint8_t fz_u8(struct fz_in *in);
/* Big-endian, as on the wire. */
uint16_t fz_u16(struct fz_in *in);
/* Up to @p want bytes from the front; *len receives how many (fewer at the end of the input). */
const uint8_t *fz_bytes(struct fz_in *in, size_t want, size_t *len);

/*
 * The certificates every harness uses, made once per process by fz_setup() with
 * tlsock_devcert_new(): a throw-away CA, and a certificate for "localhost" (serverAuth and
 * clientAuth) that it signs, valid from an hour ago for 30 days. Nothing is committed, so nothing
 * rots; every process has its own, so transcripts differ between runs anyway (TLS randoms and
 * ephemeral keys already make them differ).
 */
struct fz_pki {
    char *ca;
    char *cert;
    char *key;
};
extern struct fz_pki fz_pki;

#define FZ_HOST "localhost"

/* Makes fz_pki (aborts if that fails: every build can generate certificates). */
void fz_setup(void);

/* The implementation a selector bit asks for, or the other one when it is not compiled in. */
int fz_impl(unsigned bit);

/* How a harness's context is configured, from its configuration byte(s). */
struct fz_config {
    int role;
    int impl;              /* TLSOCK_IMPL_OPENSSL or TLSOCK_IMPL_GNUTLS */
    const char *protocols; /* tlsock_ctx_set_protocols() */
    const char *ciphers;   /* tlsock_ctx_set_ciphers() */
    int verify;            /* enum tlsock_verify */
    bool cert;             /* present fz_pki's certificate */
    bool trust;            /* trust fz_pki's CA */
    const char *alpn;      /* NULL: none */
};

/*
 * A context for @p cfg, made on first use and kept for later inputs (contexts are meant to be
 * shared; making one per input would mostly measure certificate loading). Aborts if the
 * configuration cannot be made: that is a harness bug.
 */
struct tlsock_ctx *fz_ctx(const struct fz_config *cfg);

/* Call at the start of each input: now and then drops the contexts fz_ctx() keeps (every
 * connection of the previous inputs is closed by then). */
void fz_input_begin(void);

/* Protocol ranges and cipher policies the configuration bits choose between. */
extern const char *const fz_protocols[4];
extern const char *const fz_ciphers[2];

/* Drains and discards everything @p conn has to send; returns the number of bytes. */
size_t fz_discard_output(struct tlsock_conn *conn);

/* Reports a broken invariant with the harness's own words and aborts (a finding, not noise). */
_Noreturn void fz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* TLSOCK_FUZZ_H */
