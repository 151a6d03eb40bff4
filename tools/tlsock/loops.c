/*
 * One libuv loop per thread for the serving commands, and their common stop and reload. libuv
 * handles belong to their loop's thread, so the signal handler on loop 0 only wakes every loop
 * (uv_async_send() is the one thread-safe libuv call) and each loop stops itself; a reload swaps
 * each server's context from loop 0 (tlsock_uv_server_set_ctx() is thread-safe).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tlsock/uv.h>

#include "cli.h"
#include "loops.h"
#include "stats.h"

/* Closes a handle once; one that was never initialised (still zeroed) is skipped. */
static void close_handle(uv_handle_t *handle)
{
    if (handle->loop != NULL && !uv_is_closing(handle)) {
        uv_close(handle, NULL);
    }
}

/* Nothing is left to wait for: the loop ends when the command's last handle is closed. */
static void finish_stop(struct cli_loop *loop)
{
    uv_timer_stop(&loop->stop_timer);
    close_handle((uv_handle_t *)&loop->stop_timer);
}

static void on_close_wait_over(uv_timer_t *timer)
{
    struct cli_loop *loop = timer->data;

    cli_errorf("stopping with %zu connections still open", loop->open);
    loop->abandoned = true;
    uv_stop(&loop->uv);
}

/* Ends the stop now if no connection is open, else calls @p next after @p ms. */
static void finish_stop_or_wait(struct cli_loop *loop, uv_timer_cb next, uint64_t ms)
{
    if (loop->open == 0) {
        finish_stop(loop);
    } else {
        uv_timer_start(&loop->stop_timer, next, ms, 0);
    }
}

static void on_grace_over(uv_timer_t *timer)
{
    struct cli_loop *loop = timer->data;

    loop->closing_all = true;
    loop->ops->close_all(loop);
    finish_stop_or_wait(loop, on_close_wait_over, CLI_LOOP_CLOSE_WAIT_MS);
}

static void on_stop_async(uv_async_t *async)
{
    struct cli_loop *loop = async->data;

    close_handle((uv_handle_t *)async);
    if (loop->stopping) {
        goto done;
    }
    loop->stopping = true;
    loop->ops->stop_accepting(loop);
    finish_stop_or_wait(loop, on_grace_over, CLI_LOOP_GRACE_MS);
done:
    return;
}

static void unref_handle(uv_handle_t *handle)
{
    if (handle->loop != NULL) {
        uv_unref(handle);
    }
}

static void request_stop(struct cli_loops *loops)
{
    /*
     * The handlers stay, so that more signals (timeout(1) and shells send one to the process
     * and one to its group) change nothing, but no longer keep loop 0 running.
     */
    unref_handle((uv_handle_t *)&loops->sigint);
    unref_handle((uv_handle_t *)&loops->sigterm);
    unref_handle((uv_handle_t *)&loops->sighup);
    /* No more --stats lines: the summary follows the stop. */
    if (loops->stats_timer.loop != NULL) {
        uv_timer_stop(&loops->stats_timer);
    }
    if (!loops->stop_requested) {
        loops->stop_requested = true;
        for (int i = 0; i < loops->count; i++) {
            uv_async_send(&loops->loops[i].stop_async);
        }
    }
}

static void on_signal(uv_signal_t *handle, int signum)
{
    (void)signum;
    request_stop(handle->data);
}

/* The files a reload read, for its log line: "--cert F --key F [--cert F --key F]...
 * [--client-ca F] [--crl F]... [--ocsp-response F] [--ticket-keys F]". */
static void describe_reload(const struct cli_shared_options *opts, char *out, size_t size)
{
    size_t len = 0;

    out[0] = '\0';
    for (size_t i = 0; i < opts->ctx.cert_count && len < size; i++) {
        const char *key = opts->ctx.keys[i] != NULL ? opts->ctx.keys[i] : opts->ctx.certs[i];
        len += (size_t)snprintf(out + len, size - len, "%s--cert %s --key %s", i > 0 ? " " : "",
                                opts->ctx.certs[i], key);
    }
    if (opts->client_ca != NULL && len < size) {
        len += (size_t)snprintf(out + len, size - len, " --client-ca %s", opts->client_ca);
    }
    for (size_t i = 0; i < opts->crl_count && opts->client_ca != NULL && len < size; i++) {
        len += (size_t)snprintf(out + len, size - len, " --crl %s", opts->crls[i]);
    }
    if (opts->ocsp_response != NULL && len < size) {
        len += (size_t)snprintf(out + len, size - len, " --ocsp-response %s", opts->ocsp_response);
    }
    if (opts->ticket_keys != NULL && len < size) {
        len += (size_t)snprintf(out + len, size - len, " --ticket-keys %s", opts->ticket_keys);
    }
}

/*
 * SIGHUP (@p keys false), or a ticket secret replaced in Redis (@p keys true: the server context
 * only, and with a throw-away certificate too, which the new context keeps): a new server context
 * from the same options, the same way as at start, swapped into every loop's server. Built once
 * and shared: each server holds its own reference, and the old context goes when its last
 * connection does. A failure leaves every server as it was.
 */
static void reload(struct cli_loops *loops, bool keys)
{
    const struct cli_shared_options *opts = loops->reload;
    const struct cli_loop_ops *ops = loops->loops[0].ops;
    const char *why = keys ? "new ticket keys from Redis" : "SIGHUP";
    struct tlsock_ctx *ctx = NULL;
    struct tlsock_ctx *target = NULL;
    char fp[TLSOCK_FINGERPRINT_SIZE] = "";
    char loaded[1024] = "";
    bool server = opts != NULL && ops->tls_server != NULL && (keys || opts->ctx.cert_count > 0);
    bool with_target = !keys && ops->reload_target != NULL;
    int err = 0;

    if (!server && !with_target) {
        cli_errorf("%s: nothing to reload (%s)", why,
                   opts == NULL ? "clients speak plaintext"
                                : "no --cert, a throw-away certificate");
        return;
    }
    /* Everything is made first: a failure leaves every context as it was. cli_server_ctx_new()
     * and reload_target() report what failed, naming the option and the file. */
    if (server) {
        err = cli_server_ctx_new(opts, &ctx, fp);
    }
    if (err == 0 && with_target) {
        err = ops->reload_target(loops->settings, &target);
    }
    for (int i = 0; i < loops->count && err == 0 && server; i++) {
        struct tlsock_uv_server *s = ops->tls_server(&loops->loops[i]);
        /* Only the first can fail (it freezes the context); the others take it as it is. */
        err = s != NULL ? tlsock_uv_server_set_ctx(s, ctx) : 0;
        if (err != 0) {
            cli_error(why, err, tlsock_errmsg());
        }
    }
    if (err == 0 && target != NULL) {
        ops->swap_target(loops->settings, target);
    }
    if (err != 0) {
        cli_errorf("%s: reload failed (%s); still serving the previous configuration", why,
                   tlsock_err_name(err));
    } else if (keys) {
        cli_errorf("%s: reloaded; new connections use them", why);
    } else if (!server && target == NULL) {
        /* A tunnel with a throw-away certificate whose target speaks plaintext. */
        cli_errorf("%s: nothing to reload (no --cert, a throw-away certificate; the target "
                   "speaks plaintext)",
                   why);
    } else {
        if (server) {
            describe_reload(opts, loaded, sizeof(loaded));
        }
        cli_errorf("SIGHUP: reloaded %s%s%s", loaded, target != NULL && server ? " " : "",
                   target != NULL ? "the target's CAs and CRLs" : "");
    }
    tlsock_ctx_free(target);
    tlsock_ctx_free(ctx);
}

static void on_reload_signal(uv_signal_t *handle, int signum)
{
    struct cli_loops *loops = handle->data;

    (void)signum;
    /* Once stopping, the servers close on their own threads: leave them alone. */
    if (!loops->stop_requested) {
        reload(loops, false);
    }
}

static void on_keys_async(uv_async_t *async)
{
    struct cli_loops *loops = async->data;

    if (!loops->stop_requested) {
        reload(loops, true);
    }
}

/* From the ticket key watcher's thread (cli_on_shared_keys_changed()). */
static void wake_for_keys(void *user)
{
    struct cli_loops *loops = user;

    uv_async_send(&loops->keys_async);
}

/* --session-store: new ticket keys reload the server context on loop 0 (not kept running by it). */
static void watch_keys(struct cli_loops *loops)
{
    /* Does not fail on an initialised loop (libuv 1.x). */
    uv_async_init(&loops->loops[0].uv, &loops->keys_async, on_keys_async);
    loops->keys_async.data = loops;
    uv_unref((uv_handle_t *)&loops->keys_async);
    cli_on_shared_keys_changed(wake_for_keys, loops);
}

static int start_signals(struct cli_loops *loops)
{
    uv_loop_t *main_loop = &loops->loops[0].uv;
    int err = uv_signal_init(main_loop, &loops->sigint);

    if (err == 0) {
        loops->sigint.data = loops;
        err = uv_signal_init(main_loop, &loops->sigterm);
    }
    if (err == 0) {
        loops->sigterm.data = loops;
        err = uv_signal_start(&loops->sigint, on_signal, SIGINT);
    }
    if (err == 0) {
        err = uv_signal_start(&loops->sigterm, on_signal, SIGTERM);
    }
    if (err == 0) {
        err = uv_signal_init(main_loop, &loops->sighup);
    }
    if (err == 0) {
        loops->sighup.data = loops;
        err = uv_signal_start(&loops->sighup, on_reload_signal, SIGHUP);
    }
    return err;
}

int cli_loops_init(struct cli_loops *loops, int count, const struct cli_loop_ops *ops)
{
    int err = 0;
    int i = 0;

    memset(loops, 0, sizeof(*loops));
    loops->loops = calloc((size_t)count, sizeof(*loops->loops));
    if (loops->loops == NULL) {
        err = UV_ENOMEM;
        cli_errorf("cannot make %d event loops: %s", count, uv_strerror(err));
        goto done;
    }
    for (i = 0; i < count && err == 0; i++) {
        struct cli_loop *loop = &loops->loops[i];

        loop->ops = ops;
        err = uv_loop_init(&loop->uv);
        if (err != 0) {
            cli_errorf("cannot make an event loop: %s", uv_strerror(err));
            break;
        }
        loops->count = i + 1;
        /* Neither fails on an initialised loop (libuv 1.x). */
        uv_async_init(&loop->uv, &loop->stop_async, on_stop_async);
        loop->stop_async.data = loop;
        uv_timer_init(&loop->uv, &loop->stop_timer);
        loop->stop_timer.data = loop;
    }
    /* Before the "listening on" line: a script that sees it may send SIGHUP at once. */
    if (err == 0) {
        err = start_signals(loops);
        if (err != 0) {
            cli_errorf("cannot handle SIGINT, SIGTERM and SIGHUP: %s", uv_strerror(err));
        }
    }
done:
    return err;
}

static void *run_thread(void *arg)
{
    struct cli_loop *loop = arg;

    uv_run(&loop->uv, UV_RUN_DEFAULT);
    return NULL;
}

int cli_loops_run(struct cli_loops *loops)
{
    int err = 0;
    int rc = 0;

    for (int i = 1; i < loops->count && err == 0; i++) {
        rc = pthread_create(&loops->loops[i].thread, NULL, run_thread, &loops->loops[i]);
        if (rc != 0) {
            err = uv_translate_sys_error(rc);
            cli_errorf("cannot start thread %d: %s", i + 1, strerror(rc));
            /* The loops already running stop as after a signal, and are joined below. */
            request_stop(loops);
            break;
        }
        loops->loops[i].thread_started = true;
    }
    uv_run(&loops->loops[0].uv, UV_RUN_DEFAULT);
    for (int i = 1; i < loops->count; i++) {
        if (loops->loops[i].thread_started) {
            pthread_join(loops->loops[i].thread, NULL);
        }
    }
    return err;
}

void cli_print_listening(const char *host, uint16_t port, const char *fp, char *where)
{
    char text[CLI_HOST_MAX + 16];

    /* Scripts wait for these lines to learn the port: "listening on" first, out at once. */
    cli_format_hostport(host, port, text, sizeof(text));
    printf("listening on %s\n", text);
    if (fp[0] != '\0') {
        printf("fingerprint SHA256 %s\n", fp);
    }
    fflush(stdout);
    if (where != NULL) {
        memcpy(where, text, sizeof(text));
    }
}

static void on_stats_timer(uv_timer_t *timer)
{
    (void)timer;
    cli_stats_print("stats");
}

/* --stats SECONDS: a line every SECONDS on loop 0, which it does not keep running. */
static void start_stats(struct cli_loops *loops, int seconds)
{
    uint64_t ms = (uint64_t)seconds * 1000;

    /* Neither fails on an initialised loop (libuv 1.x). */
    uv_timer_init(&loops->loops[0].uv, &loops->stats_timer);
    uv_timer_start(&loops->stats_timer, on_stats_timer, ms, ms);
    uv_unref((uv_handle_t *)&loops->stats_timer);
}

int cli_loops_serve(const struct cli_loop_ops *ops, int count, const void *settings,
                    struct tlsock_ctx *ctx, const char *host, uint16_t port, const char *fp,
                    const struct cli_shared_options *shared)
{
    bool ran = false;

    struct cli_loops loops;
    char *users = calloc((size_t)count, ops->user_size);
    char where[CLI_HOST_MAX + 16];
    int err = TLSOCK_ENOMEM;

    if (users == NULL) {
        cli_error(ops->nomem_msg, err, NULL);
        goto done;
    }
    err = cli_loops_init(&loops, count, ops) == 0 ? 0 : TLSOCK_ESYS;
    /* A plaintext listener (ctx NULL) has no context to swap. */
    loops.reload =
        (ctx != NULL && ops->tls_server != NULL) || ops->reload_target != NULL ? shared : NULL;
    loops.settings = settings;
    if (err == 0 && loops.reload != NULL && ctx != NULL && shared->session_store != NULL &&
        shared->ticket_keys == NULL && !shared->no_tickets) {
        watch_keys(&loops);
    }
    for (int i = 0; i < loops.count; i++) {
        loops.loops[i].user = users + (size_t)i * ops->user_size;
    }
    cli_stats_start(shared->verbose);
    for (int i = 0; i < loops.count && err == 0; i++) {
        /* TLS clients go to the least loaded loop; SO_REUSEPORT would hash them to one. */
        struct tlsock_uv_server *share =
            i > 0 && ops->tls_server != NULL ? ops->tls_server(&loops.loops[0]) : NULL;
        err = ops->start_accepting(&loops.loops[i], settings, ctx, host, &port, share,
                                   count > 1 && share == NULL);
    }
    if (err == 0) {
        cli_print_listening(host, port, fp, where);
        if (ops->listening != NULL) {
            ops->listening(&loops.loops[0], where);
        }
        if (shared->stats_s > 0) {
            start_stats(&loops, shared->stats_s);
        }
        err = cli_loops_run(&loops) == 0 ? 0 : TLSOCK_ESYS;
        ran = true;
    } else {
        for (int i = 0; i < loops.count; i++) {
            ops->stop_accepting(&loops.loops[i]);
        }
    }
    cli_loops_free(&loops);
    free(users);
    if (ran) {
        cli_stats_print("summary");
    }
done:
    return err;
}

int cli_uv_serve(uv_loop_t *uv, struct tlsock_ctx *ctx, const char *host, uint16_t port,
                 struct tlsock_uv_server *share, const struct tlsock_uv_opts *opts,
                 struct tlsock_uv_server **out)
{
    return share != NULL ? tlsock_uv_serve_shared(uv, ctx, share, opts, out)
                         : tlsock_uv_serve(uv, ctx, host, port, 0, opts, out);
}

void cli_report_accept_error(int code, const char *message, int handshake_timeout_ms)
{
    char detail[128];

    if (code == TLSOCK_ECANCELED) {
        /* A stop reset it (tlsock_uv_server_abort()): the command's doing, not the client's. */
    } else if (!cli_stats_handshake_failed(code, message)) {
        /* Counted, and said in a later line. */
    } else if (code == TLSOCK_EHANDSHAKE_TIMEOUT) {
        snprintf(detail, sizeof(detail),
                 "not finished within %d ms (--handshake-timeout); client dropped",
                 handshake_timeout_ms);
        cli_error("handshake", code, detail);
    } else {
        cli_error("handshake", code, message);
    }
}

/*
 * Closing the handlers makes libuv restore the default action, which would let a late second
 * signal kill a process that is only leaving: the signals are ignored instead, without a gap.
 */
static void close_signals(struct cli_loops *loops)
{
    sigset_t stop_signals;
    sigset_t old_mask;
    struct sigaction ignore;

    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGHUP);
    memset(&ignore, 0, sizeof(ignore));
    ignore.sa_handler = SIG_IGN;
    pthread_sigmask(SIG_BLOCK, &stop_signals, &old_mask);
    close_handle((uv_handle_t *)&loops->sigint);
    close_handle((uv_handle_t *)&loops->sigterm);
    close_handle((uv_handle_t *)&loops->sighup);
    if (loops->stop_requested) {
        sigaction(SIGINT, &ignore, NULL);
        sigaction(SIGTERM, &ignore, NULL);
    }
    /* A reload that comes while the process leaves must not kill it (SIGHUP's default). */
    sigaction(SIGHUP, &ignore, NULL);
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
}

void cli_loops_free(struct cli_loops *loops)
{
    /* No more wake-ups from the watcher's thread once this returns. */
    if (loops->keys_async.loop != NULL) {
        cli_on_shared_keys_changed(NULL, NULL);
    }
    for (int i = 0; i < loops->count; i++) {
        struct cli_loop *loop = &loops->loops[i];

        if (loop->abandoned) {
            continue;
        }
        close_handle((uv_handle_t *)&loop->stop_async);
        close_handle((uv_handle_t *)&loop->stop_timer);
        if (i == 0) {
            close_handle((uv_handle_t *)&loops->stats_timer);
            close_handle((uv_handle_t *)&loops->keys_async);
            close_signals(loops);
        }
        /* Runs the close callbacks still due, the command's included. */
        uv_run(&loop->uv, UV_RUN_DEFAULT);
        uv_loop_close(&loop->uv);
    }
    free(loops->loops);
    memset(loops, 0, sizeof(*loops));
}

void cli_loop_conn_opened(struct cli_loop *loop)
{
    loop->open++;
    cli_stats_conn_opened();
}

void cli_loop_conn_closed(struct cli_loop *loop)
{
    loop->open--;
    cli_stats_conn_closed();
    if (loop->stopping && loop->open == 0) {
        finish_stop(loop);
    }
}

bool cli_loop_stopping(const struct cli_loop *loop)
{
    return loop->stopping;
}
