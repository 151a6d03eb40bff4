/*
 * Option parsing shared by the subcommands: HOST:PORT, integers, and the context settings that
 * several subcommands accept (--tls, --alpn, --cert/--key, --ca/--insecure, --client-ca, the
 * throw-away certificate of the servers).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "stats.h"
#if TLSOCK_CLI_WITH_REDIS
#include <tlsock/redis.h>
#endif

int cli_bad_option(const char *cmd, int opt, char **argv)
{
    /* getopt_long() has moved optind past the offending word. */
    const char *word = argv[optind - 1];
    int status = CLI_EXIT_USAGE;

    if (opt == ':') {
        status = cli_usage_error(cmd, "option '%s' needs an argument", word);
    } else if (optopt != 0) {
        status = cli_usage_error(cmd, "unknown option '-%c'", optopt);
    } else {
        status = cli_usage_error(cmd, "unknown option '%s'", word);
    }
    return status;
}

bool cli_parse_int(const char *arg, int min, int max, int *out)
{
    bool ok = false;
    char *end = NULL;
    long value = 0;

    if (arg == NULL || arg[0] == '\0') {
        goto done;
    }
    errno = 0;
    value = strtol(arg, &end, 10);
    if (errno != 0 || *end != '\0' || value < min || value > max) {
        goto done;
    }
    *out = (int)value;
    ok = true;
done:
    return ok;
}

bool cli_parse_hostport(const char *arg, bool allow_zero, char host[CLI_HOST_MAX], uint16_t *port)
{
    bool ok = false;
    const char *host_start = arg;
    const char *host_end = NULL;
    const char *port_str = NULL;
    size_t host_len = 0;
    int value = 0;

    if (arg[0] == '[') {
        /* RFC 3986 style "[v6]:port": the colons inside the brackets are the address's. */
        host_start = arg + 1;
        host_end = strchr(host_start, ']');
        if (host_end == NULL || host_end[1] != ':') {
            goto done;
        }
        port_str = host_end + 2;
    } else {
        host_end = strrchr(arg, ':');
        if (host_end == NULL) {
            goto done;
        }
        port_str = host_end + 1;
        /* An unbracketed IPv6 literal would make the port ambiguous. */
        if (memchr(arg, ':', (size_t)(host_end - arg)) != NULL) {
            goto done;
        }
    }
    host_len = (size_t)(host_end - host_start);
    if (host_len == 0 || host_len >= CLI_HOST_MAX) {
        goto done;
    }
    if (!cli_parse_int(port_str, allow_zero ? 0 : 1, 65535, &value)) {
        goto done;
    }
    memcpy(host, host_start, host_len);
    host[host_len] = '\0';
    *port = (uint16_t)value;
    ok = true;
done:
    return ok;
}

void cli_format_hostport(const char *host, uint16_t port, char *out, size_t outlen)
{
    if (strchr(host, ':') != NULL) {
        snprintf(out, outlen, "[%s]:%u", host, (unsigned)port);
    } else {
        snprintf(out, outlen, "%s:%u", host, (unsigned)port);
    }
}

/* The passphrase in the environment variable @p name; an unset or empty one is an error. */
static int read_pass_env(const char *name, char pass[CLI_PASS_SIZE])
{
    const char *value = getenv(name);
    int err = TLSOCK_ECONFIG;

    if (value == NULL) {
        cli_errorf("--key-pass-env %s: the environment variable is not set", name);
    } else if (value[0] == '\0') {
        cli_errorf("--key-pass-env %s: the environment variable is empty", name);
    } else if (strlen(value) > TLSOCK_PASSPHRASE_MAX) {
        cli_errorf("--key-pass-env %s: the passphrase is longer than %d bytes", name,
                   TLSOCK_PASSPHRASE_MAX);
    } else {
        snprintf(pass, CLI_PASS_SIZE, "%s", value);
        err = 0;
    }
    return err;
}

/* The passphrase on the first line of @p path (without its line end). */
static int read_pass_file(const char *path, char pass[CLI_PASS_SIZE])
{
    size_t len = 0;
    ssize_t got = 0;
    int err = TLSOCK_ECONFIG;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    struct stat st;

    if (fd < 0 || fstat(fd, &st) != 0) {
        cli_errorf("--key-pass-file %s: %s", path, strerror(errno));
        goto close_fd;
    }
    if (!S_ISREG(st.st_mode)) {
        cli_errorf("--key-pass-file %s: not a regular file", path);
        goto close_fd;
    }
    /* Bounded: each read adds bytes or ends the loop. */
    while (len < CLI_PASS_SIZE - 1 && memchr(pass, '\n', len) == NULL) {
        got = read(fd, pass + len, CLI_PASS_SIZE - 1 - len);
        if (got > 0) {
            len += (size_t)got;
        } else if (got == 0 || errno != EINTR) {
            break;
        }
    }
    if (got < 0) {
        cli_errorf("--key-pass-file %s: %s", path, strerror(errno));
        goto close_fd;
    }
    /* The first line, without its line end; the same rules as for --key-pass-env. */
    const char *nl = memchr(pass, '\n', len);
    size_t first = nl != NULL ? (size_t)(nl - pass) : len;
    if (first > 0 && pass[first - 1] == '\r') {
        first--;
    }
    pass[first] = '\0';
    if (first == 0) {
        cli_errorf("--key-pass-file %s: the first line is empty", path);
    } else if (memchr(pass, '\0', first) != NULL) {
        cli_errorf("--key-pass-file %s: the passphrase holds a NUL byte", path);
    } else if (first > TLSOCK_PASSPHRASE_MAX) {
        cli_errorf("--key-pass-file %s: the passphrase is longer than %d bytes", path,
                   TLSOCK_PASSPHRASE_MAX);
    } else {
        err = 0;
    }
close_fd:
    if (fd >= 0) {
        close(fd);
    }
    return err;
}

int cli_read_passphrase(const struct cli_ctx_options *opts, char pass[CLI_PASS_SIZE])
{
    int err = 0;

    pass[0] = '\0';
    if (opts->key_pass_file != NULL) {
        err = read_pass_file(opts->key_pass_file, pass);
    } else if (opts->key_pass_env != NULL) {
        err = read_pass_env(opts->key_pass_env, pass);
    }
    if (err != 0) {
        explicit_bzero(pass, CLI_PASS_SIZE);
    }
    return err;
}

/* --key-pass-file or --key-pass-env on @p ctx. Reports failures; the copy read is wiped. */
static int set_key_pass(struct tlsock_ctx *ctx, const struct cli_ctx_options *opts)
{
    char pass[CLI_PASS_SIZE];
    int err = cli_read_passphrase(opts, pass);

    if (err == 0) {
        err = tlsock_ctx_set_key_passphrase(ctx, pass);
        if (err != 0) {
            cli_error(opts->key_pass_file != NULL ? "--key-pass-file" : "--key-pass-env", err,
                      tlsock_ctx_errmsg(ctx));
        }
    }
    explicit_bzero(pass, sizeof(pass));
    return err;
}

int cli_ctx_configure(struct tlsock_ctx *ctx, const struct cli_ctx_options *opts)
{
    int err = 0;

    if (opts->tls != NULL) {
        err = tlsock_ctx_set_protocols(ctx, opts->tls);
        if (err != 0) {
            cli_error("--tls", err, tlsock_ctx_errmsg(ctx));
            goto done;
        }
    }
    if (opts->ciphers != NULL) {
        err = tlsock_ctx_set_ciphers(ctx, opts->ciphers);
        if (err != 0) {
            cli_error("--ciphers", err, tlsock_ctx_errmsg(ctx));
            goto done;
        }
    }
    if (opts->alpn != NULL) {
        err = tlsock_ctx_set_alpn(ctx, opts->alpn);
        if (err != 0) {
            cli_error("--alpn", err, tlsock_ctx_errmsg(ctx));
            goto done;
        }
    }
    if (opts->key_pass_file != NULL || opts->key_pass_env != NULL) {
        err = set_key_pass(ctx, opts);
        if (err != 0) {
            goto done;
        }
    }
    /* The first pair replaces, the others add: the server chooses among them by SNI. */
    for (size_t i = 0; i < opts->cert_count; i++) {
        const char *key = opts->keys[i] != NULL ? opts->keys[i] : opts->certs[i];
        err = i == 0 ? tlsock_ctx_set_cert_file(ctx, opts->certs[i], key)
                     : tlsock_ctx_add_cert_file(ctx, opts->certs[i], key);
        if (err != 0) {
            cli_error("--cert/--key", err, tlsock_ctx_errmsg(ctx));
            goto done;
        }
    }
done:
    return err;
}

int cli_use_impl(const char *cmd, const char *name)
{
    static const int impls[] = {TLSOCK_IMPL_OPENSSL, TLSOCK_IMPL_GNUTLS};
    int status = CLI_EXIT_USAGE;

    for (size_t i = 0; i < sizeof(impls) / sizeof(impls[0]); i++) {
        if (strcmp(name, tlsock_impl_name(impls[i])) == 0) {
            int err = tlsock_set_default_impl(impls[i]);
            if (err != 0) {
                cli_error("--impl", err, tlsock_errmsg());
            }
            return err == 0 ? CLI_EXIT_OK : cli_setup_exit_code(err);
        }
    }
    status = cli_usage_error(cmd, "--impl wants openssl or gnutls, not '%s'", name);
    return status;
}

int cli_check_default_impl(void)
{
    struct tlsock_ctx *ctx = NULL;
    int err = 0;

    if (tlsock_default_impl() == TLSOCK_IMPL_DEFAULT) {
        /* The library words why: the same message connect and serve would print. */
        err = tlsock_ctx_new(TLSOCK_CLIENT, &ctx);
        tlsock_ctx_free(ctx);
        err = err != 0 ? err : TLSOCK_ECONFIG;
        cli_error("no default TLS implementation", err, tlsock_errmsg());
    }
    return err;
}

int cli_set_trust(struct tlsock_ctx *ctx, const char *ca, bool insecure)
{
    int err = 0;
    struct stat st;

    if (insecure) {
        err = tlsock_ctx_set_verify(ctx, TLSOCK_VERIFY_NONE);
        if (err != 0) {
            cli_error("--insecure", err, tlsock_ctx_errmsg(ctx));
            goto done;
        }
    }
    if (ca == NULL) {
        goto done;
    }
    /* A hashed directory is looked up lazily; a file is read now. */
    if (stat(ca, &st) == 0 && S_ISDIR(st.st_mode)) {
        err = tlsock_ctx_set_ca_dir(ctx, ca);
    } else {
        err = tlsock_ctx_set_ca_file(ctx, ca);
    }
    if (err != 0) {
        cli_error("--ca", err, tlsock_ctx_errmsg(ctx));
    }
done:
    return err;
}

int cli_set_crls(struct tlsock_ctx *ctx, const struct cli_shared_options *opts)
{
    int err = 0;

    for (size_t i = 0; i < opts->crl_count && err == 0; i++) {
        err = tlsock_ctx_add_crl_file(ctx, opts->crls[i]);
        if (err != 0) {
            /* The library's message names the file. */
            cli_error("--crl", err, tlsock_ctx_errmsg(ctx));
        }
    }
    if (err == 0 && opts->crl_chain) {
        err = tlsock_ctx_set_crl_mode(ctx, TLSOCK_CRL_CHAIN);
        if (err != 0) {
            cli_error("--crl-chain", err, tlsock_ctx_errmsg(ctx));
        }
    }
    return err;
}

int cli_require_client_certs(struct tlsock_ctx *ctx, const char *ca_file)
{
    int err = tlsock_ctx_set_ca_file(ctx, ca_file);

    if (err == 0) {
        err = tlsock_ctx_set_verify(ctx, TLSOCK_VERIFY_REQUIRED);
    }
    if (err != 0) {
        cli_error("--client-ca", err, tlsock_ctx_errmsg(ctx));
    }
    return err;
}

/* The process's throw-away certificate, made once: every context of a reload presents it too. */
static struct {
    char *ca, *cert, *key;
    char fp[TLSOCK_FINGERPRINT_SIZE];
} devcert;

static int make_devcert(const char *ca_out)
{
    int err = tlsock_devcert_new(CLI_DEVCERT_HOSTS, &devcert.ca, &devcert.cert, &devcert.key);

    if (err != 0) {
        cli_error("cannot make a certificate", err, tlsock_errmsg());
        return err;
    }
    err = tlsock_cert_fingerprint(devcert.cert, strlen(devcert.cert), devcert.fp);
    if (err != 0) {
        cli_error("cannot fingerprint the certificate", err, tlsock_errmsg());
    } else if (ca_out != NULL && !cli_write_file(ca_out, devcert.ca, 0644)) {
        err = TLSOCK_ESYS;
    }
    if (err != 0) {
        tlsock_free(devcert.key);
        tlsock_free(devcert.cert);
        tlsock_free(devcert.ca);
        memset(&devcert, 0, sizeof(devcert));
    }
    return err;
}

int cli_use_devcert(struct tlsock_ctx *ctx, const char *ca_out, char fp[TLSOCK_FINGERPRINT_SIZE])
{
    int err = devcert.cert != NULL ? 0 : make_devcert(ca_out);

    if (err != 0) {
        return err;
    }
    err = tlsock_ctx_set_cert_mem(ctx, devcert.cert, strlen(devcert.cert), devcert.key,
                                  strlen(devcert.key));
    if (err != 0) {
        cli_error("cannot use the certificate", err, tlsock_ctx_errmsg(ctx));
        return err;
    }
    memcpy(fp, devcert.fp, sizeof(devcert.fp));
    return 0;
}

void cli_shared_options_init(struct cli_shared_options *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->handshake_timeout_ms = CLI_HANDSHAKE_TIMEOUT_MS;
    opts->threads = 1;
}

bool cli_shared_option(const char *cmd, struct cli_shared_options *opts, int opt, const char *arg,
                       int *status)
{
    bool mine = true;

    *status = -1;
    switch (opt) {
    case 't':
        opts->ctx.tls = arg;
        break;
    case 'P':
        opts->ctx.ciphers = arg;
        break;
    case 'a':
        opts->ctx.alpn = arg;
        break;
    case 'c':
        if (opts->ctx.cert_count == CLI_CERT_MAX) {
            *status = cli_usage_error(cmd, "at most %d --cert files", CLI_CERT_MAX);
        } else {
            opts->ctx.certs[opts->ctx.cert_count++] = arg;
        }
        break;
    case 'K':
        /* Pairs in order: each --key belongs to the --cert just before it. */
        if (opts->ctx.cert_count == 0) {
            *status = cli_usage_error(cmd, "--key needs --cert");
        } else if (opts->ctx.keys[opts->ctx.cert_count - 1] != NULL) {
            *status = cli_usage_error(cmd, "one --key per --cert, each after its --cert");
        } else {
            opts->ctx.keys[opts->ctx.cert_count - 1] = arg;
        }
        break;
    case CLI_OPT_KEY_PASS_FILE:
        opts->ctx.key_pass_file = arg;
        break;
    case CLI_OPT_KEY_PASS_ENV:
        opts->ctx.key_pass_env = arg;
        break;
    case CLI_OPT_CRL:
        if (opts->crl_count == CLI_CRL_MAX) {
            *status = cli_usage_error(cmd, "at most %d --crl files", CLI_CRL_MAX);
        } else {
            opts->crls[opts->crl_count++] = arg;
        }
        break;
    case CLI_OPT_CRL_CHAIN:
        opts->crl_chain = true;
        break;
    case 'C':
        opts->ca = arg;
        break;
    case 'k':
        opts->insecure = true;
        break;
    case 's':
        opts->servername = arg;
        break;
    case CLI_OPT_CA_OUT:
        opts->ca_out = arg;
        break;
    case CLI_OPT_CLIENT_CA:
        opts->client_ca = arg;
        break;
    case CLI_OPT_OCSP_RESPONSE:
        opts->ocsp_response = arg;
        break;
    case CLI_OPT_TICKET_KEYS:
        opts->ticket_keys = arg;
        break;
    case CLI_OPT_NO_TICKETS:
        opts->no_tickets = true;
        break;
    case CLI_OPT_SESSION_STORE:
        opts->session_store = arg;
        break;
    case CLI_OPT_HANDSHAKE_TIMEOUT:
        if (!cli_parse_int(arg, 1, CLI_MS_MAX, &opts->handshake_timeout_ms)) {
            *status = cli_usage_error(
                cmd, "--handshake-timeout wants milliseconds (1 or more), not '%s'", arg);
        }
        break;
    case CLI_OPT_THREADS:
        if (!cli_parse_int(arg, 1, CLI_THREADS_MAX, &opts->threads)) {
            *status = cli_usage_error(cmd, "--threads wants a number from 1 to %d, not '%s'",
                                      CLI_THREADS_MAX, arg);
        }
        break;
    case CLI_OPT_STATS:
        if (!cli_parse_int(arg, 1, CLI_STATS_MAX_S, &opts->stats_s)) {
            *status = cli_usage_error(cmd, "--stats wants seconds from 1 to %d, not '%s'",
                                      CLI_STATS_MAX_S, arg);
        }
        break;
    case CLI_OPT_IMPL:
        *status = cli_use_impl(cmd, arg);
        *status = *status == CLI_EXIT_OK ? -1 : *status;
        break;
    case 'v':
        opts->verbose = true;
        break;
    default:
        mine = false;
        break;
    }
    return mine;
}

int cli_parse_options(const struct cli_command *cmd, int argc, char **argv, void *args,
                      struct cli_shared_options *shared)
{
    int status = -1;
    int opt = 0;
    bool parsing = true;

    while (parsing && status < 0) {
        opt = getopt_long(argc, argv, cmd->optstring, cmd->longopts, NULL);
        if (opt == -1) {
            parsing = false;
        } else if (opt == 'h') {
            cmd->print_help();
            status = CLI_EXIT_OK;
        } else if (!cmd->own_option(args, opt, optarg, &status) &&
                   !cli_shared_option(cmd->name, shared, opt, optarg, &status)) {
            status = cli_bad_option(cmd->name, opt, argv);
        }
    }
    if (status < 0 && !cmd->operands && optind < argc) {
        status = cli_usage_error(cmd->name, "unexpected argument '%s'", argv[optind]);
    }
    return status;
}

int cli_check_cert_key(const char *cmd, struct cli_ctx_options *opts)
{
    int status = -1;

    if (opts->key_pass_file != NULL && opts->cert_count == 0) {
        status = cli_usage_error(cmd, "--key-pass-file needs --cert");
    } else if (opts->key_pass_env != NULL && opts->cert_count == 0) {
        status = cli_usage_error(cmd, "--key-pass-env needs --cert");
    } else if (opts->key_pass_file != NULL && opts->key_pass_env != NULL) {
        status = cli_usage_error(cmd, "--key-pass-file and --key-pass-env exclude each other");
    }
    for (size_t i = 0; i < opts->cert_count; i++) {
        if (opts->keys[i] == NULL) {
            opts->keys[i] = opts->certs[i];
        }
    }
    return status;
}

int cli_check_crl_options(const char *cmd, const struct cli_shared_options *opts, bool verifies,
                          const char *needs)
{
    int status = -1;

    if (opts->crl_chain && opts->crl_count == 0) {
        status = cli_usage_error(cmd, "--crl-chain needs --crl");
    } else if (opts->crl_count > 0 && !verifies) {
        status = cli_usage_error(cmd, "--crl needs %s", needs);
    }
    return status;
}

int cli_check_server_options(const char *cmd, struct cli_shared_options *opts)
{
    int status = cli_check_cert_key(cmd, &opts->ctx);

    if (status < 0 && opts->ca_out != NULL && opts->ctx.cert_count > 0) {
        status = cli_usage_error(cmd, "--ca-out only applies without --cert");
    }
    if (status < 0 && opts->ticket_keys != NULL && opts->no_tickets) {
        status = cli_usage_error(cmd, "--ticket-keys and --no-tickets exclude each other");
    }
    return status;
}

/* A server's session tickets: off (--no-tickets) or keys from --ticket-keys, read now. */
static int set_tickets(struct tlsock_ctx *ctx, const struct cli_shared_options *opts)
{
    int err = 0;

    if (opts->no_tickets) {
        err = tlsock_ctx_set_tickets(ctx, false);
    } else if (opts->ticket_keys != NULL) {
        err = tlsock_ctx_set_ticket_keys_file(ctx, opts->ticket_keys);
    }
    if (err != 0) {
        cli_error(opts->no_tickets ? "--no-tickets" : "--ticket-keys", err, tlsock_ctx_errmsg(ctx));
    }
    return err;
}

#if TLSOCK_CLI_WITH_REDIS
/* The ticket key file --session-store keeps from Redis: in a directory of its own, removed at
 * exit. Empty until made. */
static char shared_keys_dir[256];
static char shared_keys_path[300];

/*
 * Who is told when the watcher rewrote that file (cli_on_shared_keys_changed()), and whether it
 * changed since a context last read it. The watcher's thread and the serving loop 0 meet here.
 */
static pthread_mutex_t keys_lock = PTHREAD_MUTEX_INITIALIZER;
static void (*keys_changed_fn)(void *user);
static void *keys_changed_user;
static bool keys_unread;

static void remove_shared_keys(void)
{
    unlink(shared_keys_path);
    rmdir(shared_keys_dir);
}

/* The watcher's thread: the file holds a secret replaced in Redis. */
static void on_shared_keys_written(void *user, const char *path)
{
    (void)user;
    (void)path;
    pthread_mutex_lock(&keys_lock);
    keys_unread = true;
    if (keys_changed_fn != NULL) {
        keys_changed_fn(keys_changed_user);
    }
    pthread_mutex_unlock(&keys_lock);
}

void cli_on_shared_keys_changed(void (*fn)(void *user), void *user)
{
    pthread_mutex_lock(&keys_lock);
    keys_changed_fn = fn;
    keys_changed_user = user;
    /* A change between the context's read and now is not lost. */
    if (fn != NULL && keys_unread) {
        fn(user);
    }
    pthread_mutex_unlock(&keys_lock);
}

/*
 * --session-store without --ticket-keys or --no-tickets: the ticket secret of every server on
 * this Redis (tlsock_redis_store_ticket_keys(), made under the lease by the first one), written
 * to a file of this process and loaded, at start and at each reload (SIGHUP, or the watcher
 * seeing a new secret). Redis not answering is no failure: the file of the last time it did, if
 * any, or this process's own keys serve.
 */
static int share_ticket_keys(struct tlsock_ctx *ctx, struct tlsock_redis_store *store)
{
    const char *tmp = getenv("TMPDIR");
    int err;

    /*
     * Redis is asked from this thread only at start-up, before anything is served: then a
     * watcher thread keeps the file current and says when it changed (the serving loops then
     * reload), and a reload, on a serving loop, only reads the file, never waiting for Redis.
     */
    if (shared_keys_path[0] == '\0') {
        snprintf(shared_keys_dir, sizeof(shared_keys_dir), "%s/tlsock-keys-XXXXXX",
                 tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
        if (mkdtemp(shared_keys_dir) == NULL) {
            cli_errorf("--session-store: cannot make a directory for the ticket keys: %s",
                       strerror(errno));
            return TLSOCK_ESYS;
        }
        snprintf(shared_keys_path, sizeof(shared_keys_path), "%s/ticket-keys", shared_keys_dir);
        atexit(remove_shared_keys);
        err = tlsock_redis_store_ticket_keys(store, shared_keys_path, 0, NULL, NULL);
        if (err != 0) {
            cli_errorf("warning: --session-store: no shared ticket keys from Redis yet (%s); "
                       "this process's own keys serve until Redis has them",
                       tlsock_redis_errmsg());
        }
        if (tlsock_redis_store_watch_ticket_keys(store, shared_keys_path, 0, on_shared_keys_written,
                                                 NULL) != 0) {
            cli_errorf("warning: --session-store: the ticket keys are not watched (%s)",
                       tlsock_redis_errmsg());
        }
    }
    pthread_mutex_lock(&keys_lock);
    keys_unread = false;
    pthread_mutex_unlock(&keys_lock);
    if (access(shared_keys_path, R_OK) != 0) {
        return 0; /* none from Redis yet: the context's own keys */
    }
    err = tlsock_ctx_set_ticket_keys_file(ctx, shared_keys_path);
    if (err != 0) {
        cli_error("--session-store", err, tlsock_ctx_errmsg(ctx));
    }
    return err;
}
#else
void cli_on_shared_keys_changed(void (*fn)(void *user), void *user)
{
    (void)fn;
    (void)user;
}
#endif

/*
 * --session-store: the process's one Redis store (made at the first server context, kept until
 * exit, so that every context of a reload uses it), handed to the context; and, unless
 * --ticket-keys or --no-tickets says otherwise, the ticket secret shared through it.
 */
static int set_session_store(struct tlsock_ctx *ctx, const struct cli_shared_options *opts)
{
#if TLSOCK_CLI_WITH_REDIS
    static struct tlsock_redis_store *store;
    int err = 0;

    if (store == NULL) {
        err = tlsock_redis_store_new(opts->session_store, &store);
        if (err != 0) {
            cli_error("--session-store", err, tlsock_redis_errmsg());
            return err;
        }
    }
    err = tlsock_ctx_set_session_store(ctx, tlsock_redis_store_session_store(store));
    if (err != 0) {
        cli_error("--session-store", err, tlsock_ctx_errmsg(ctx));
    } else if (opts->ticket_keys == NULL && !opts->no_tickets) {
        err = share_ticket_keys(ctx, store);
    }
    return err;
#else
    (void)ctx;
    (void)opts;
    cli_error("--session-store", TLSOCK_ECONFIG,
              "this tlsock was built without Redis support (libtlsock_redis, needs hiredis)");
    return TLSOCK_ECONFIG;
#endif
}

/*
 * A context of @p role with @p ctx_opts applied, then a client's trust, or a server's client
 * certificates and throw-away certificate, from @p opts.
 */
static int ctx_new(int role, const struct cli_ctx_options *ctx_opts,
                   const struct cli_shared_options *opts, char *fp, struct tlsock_ctx **out)
{
    struct tlsock_ctx *ctx = NULL;
    bool server = role == TLSOCK_SERVER;
    int err = tlsock_ctx_new(role, &ctx);

    if (err != 0) {
        cli_error(server ? "cannot create a server context" : "cannot create a client context", err,
                  tlsock_errmsg());
        goto done;
    }
    err = cli_ctx_configure(ctx, ctx_opts);
    if (err == 0 && !server) {
        err = cli_set_trust(ctx, opts->ca, opts->insecure);
    }
    if (err == 0 && server && opts->client_ca != NULL) {
        err = cli_require_client_certs(ctx, opts->client_ca);
    }
    /* Only a side that verifies gets the CRLs (the library refuses them on one that does not). */
    if (err == 0 && (server ? opts->client_ca != NULL : !opts->insecure)) {
        err = cli_set_crls(ctx, opts);
    }
    if (err == 0 && server && opts->ocsp_response != NULL) {
        /* Read now; a reload makes a new context, which reads the file again. */
        err = tlsock_ctx_set_ocsp_response_file(ctx, opts->ocsp_response);
        if (err != 0) {
            cli_error("--ocsp-response", err, tlsock_ctx_errmsg(ctx));
        }
    }
    if (err == 0 && server) {
        err = set_tickets(ctx, opts);
    }
    if (err == 0 && server && opts->session_store != NULL) {
        err = set_session_store(ctx, opts);
    }
    if (err == 0 && server && ctx_opts->cert_count == 0) {
        err = cli_use_devcert(ctx, opts->ca_out, fp);
    }
    if (err == 0) {
        *out = ctx;
        ctx = NULL;
    }
    tlsock_ctx_free(ctx);
done:
    return err;
}

int cli_server_ctx_new(const struct cli_shared_options *opts, struct tlsock_ctx **out,
                       char fp[TLSOCK_FINGERPRINT_SIZE])
{
    return ctx_new(TLSOCK_SERVER, &opts->ctx, opts, fp, out);
}

int cli_client_ctx_new(const struct cli_ctx_options *ctx_opts,
                       const struct cli_shared_options *opts, struct tlsock_ctx **out)
{
    return ctx_new(TLSOCK_CLIENT, ctx_opts, opts, NULL, out);
}
