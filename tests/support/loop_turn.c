/* One turn of a libuv loop for a test's wait: see loop_turn.h. */
#include "loop_turn.h"

#include <poll.h>

void loop_turn(uv_loop_t *loop)
{
    struct pollfd backend = {.fd = uv_backend_fd(loop), .events = POLLIN};
    int timeout_ms = 0;

    /* The loop's clock is cached: a stale one would make the next timer look further away. */
    uv_update_time(loop);
    /* 0 when something is ready to run already (idle handles, pending or closing callbacks, a
     * stop request), -1 with no timer, else the time to the nearest timer. */
    timeout_ms = uv_backend_timeout(loop);
    if (timeout_ms != 0) {
        /* The backend (epoll) descriptor is readable while any watched event is pending. An
         * interrupted sleep only makes the turn come early. */
        (void)poll(&backend, 1, timeout_ms);
    }
    (void)uv_run(loop, UV_RUN_NOWAIT);
}
