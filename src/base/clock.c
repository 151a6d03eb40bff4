/*
 * Time inside the library: monotonic nanoseconds (CLOCK_MONOTONIC); the API speaks milliseconds.
 */
#include <time.h>

#include "base.h"

int64_t tlsock__now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t tlsock_now_ms(void)
{
    return tlsock__now_ns() / 1000000;
}

int64_t tlsock__deadline_after(int timeout_ms)
{
    if (timeout_ms <= 0) {
        return INT64_MAX;
    }
    return tlsock__now_ns() + (int64_t)timeout_ms * 1000000;
}
