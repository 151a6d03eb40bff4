/*
 * The baselines of the async cases: the raw implementation (OpenSSL, or GnuTLS when the case's
 * implementation is GnuTLS) on blocking sockets, through the same struct bench_ops as the
 * blocking cases, running the echo (workload.c) and the parallel handshakes
 * (workload_parallel.c).
 */
#include <stdio.h>
#include <stdlib.h>

#include "async.h"

struct blocking_env {
    const struct bench_ops *ops;
    void *env;
};

static void blocking_teardown(void *envp)
{
    struct blocking_env *env = envp;

    if (env != NULL) {
        env->ops->teardown(env->env);
        free(env);
    }
}

static int blocking_setup(const struct bench_side_config *config, void **out)
{
    struct blocking_env *env = calloc(1, sizeof(*env));
    int rc = BENCH_ERROR;

    if (env == NULL) {
        fprintf(stderr, "raw: out of memory\n");
        goto out;
    }
    env->ops = &bench_raw_ops;
#ifdef BENCH_HAVE_GNUTLS
    if (config->impl == TLSOCK_IMPL_GNUTLS) {
        env->ops = &bench_raw_gnutls_ops;
    }
#endif
    rc = env->ops->setup(config, &env->env);
    if (rc == BENCH_OK) {
        *out = env;
    } else {
        free(env);
    }

out:
    return rc;
}

static int echo_run(void *envp, const struct bench_limits *limits, struct bench_sample *out)
{
    struct blocking_env *env = envp;

    return bench_run_echo(env->ops, env->env, limits, out);
}

static int handshakes_run(void *envp, const struct bench_limits *limits, struct bench_sample *out)
{
    struct blocking_env *env = envp;

    return bench_run_handshakes_parallel(env->ops, env->env, limits, out);
}

const struct bench_side bench_side_raw_echo = {
    .name = "raw",
    .setup = blocking_setup,
    .teardown = blocking_teardown,
    .run = echo_run,
};

const struct bench_side bench_side_raw_handshakes = {
    .name = "raw",
    .setup = blocking_setup,
    .teardown = blocking_teardown,
    .run = handshakes_run,
};
