/*
 * One turn of a libuv loop for a test's wait, which checks its condition between turns.
 *
 * uv_run(UV_RUN_ONCE) does not fit such a wait: a turn runs the timers that are due first, then
 * sleeps in its poll until the next event or timer. When a due timer's callback is what meets
 * the condition (a read timeout reported, say), the turn still sleeps, until the wait's own guard
 * timer wakes it, and the wait fails although the condition held all along. loop_turn() sleeps
 * first, for as long as the loop has nothing to run, then runs what is ready without sleeping
 * again; so a wait sleeps only right after it found its condition false.
 */
#ifndef TLSOCK_TEST_LOOP_TURN_H
#define TLSOCK_TEST_LOOP_TURN_H

#include <uv.h>

/* Sleeps until @p loop has something to run (an event, a due timer, an active idle handle, a
 * pending callback, a closing handle), then runs it with UV_RUN_NOWAIT. Like UV_RUN_ONCE, it
 * sleeps forever on a loop with active handles but nothing to wake it: waits keep a guard timer. */
void loop_turn(uv_loop_t *loop);

#endif
