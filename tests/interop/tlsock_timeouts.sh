#!/usr/bin/env bash
# Timeouts of the tool, each checked against a bound on the wall clock:
# (b) `tlsock serve --handshake-timeout 300` drops a raw TCP client that never starts TLS (the
#     drop is logged with -v and the client sees the connection end), while a real client that
#     connects meanwhile is served.
# (c) `tlsock connect --timeout 500` to a server that completes the handshake and then sends
#     nothing exits 4, also after an echo; data that keeps coming resets the idle clock.
# (d) SIGTERM to `tlsock serve --threads 2` and to `tlsock tunnel`, each with
#     --handshake-timeout 60000 and silent clients in their handshake: each exits 0 within a
#     few seconds, not after the handshake timeout, and the silent clients see their connection
#     end.
source "$(dirname "$0")/lib.sh"

# now_ms: the wall clock in milliseconds.
now_ms() {
    echo $(($(date +%s%N) / 1000000))
}

# (b) The silent client holds its connection open on fd 5 and says nothing.
start_tlsock_serve serve --echo --ca-out "$WORK/ca.pem" --handshake-timeout 300 --verbose
SERVE_PID=$BG_PID
exec 5<>"/dev/tcp/127.0.0.1/$PORT"
silent_start=$(now_ms)
# A real client, served while the silent one waits for its timeout.
status=0
echo "still served" | "$TIMEOUT_BIN" -k 5 30 "$TLSOCK_BIN" connect "localhost:$PORT" \
    --ca "$WORK/ca.pem" --quiet --timeout 10000 >"$WORK/real.out" 2>"$WORK/real.err" ||
    status=$?
[ "$status" = 0 ] || fail "the real client exited $status"
grep -qx 'still served' "$WORK/real.out" || fail "the real client got no echo"
pass "a real client is served while a silent one is connected"
# The server ends the silent connection: reading it returns end-of-file, not the 10 s bound.
"$TIMEOUT_BIN" 10 cat <&5 >/dev/null || fail "the silent client's connection was not closed"
silent_ms=$(($(now_ms) - silent_start))
exec 5<&-
[ "$silent_ms" -lt 5000 ] || fail "the silent client was dropped only after ${silent_ms} ms"
wait_for "$WORK/serve.err" 'handshake: .*not finished within 300 ms.*dropped' 5 >/dev/null
kill -0 "$SERVE_PID" 2>/dev/null || fail "tlsock serve died"
pass "serve --handshake-timeout 300 dropped the silent client after ${silent_ms} ms (logged)"

# --handshake-timeout needs a positive number.
expect_status 1 "--handshake-timeout 0 is a usage error" \
    "$TLSOCK_BIN" serve --handshake-timeout 0 2>/dev/null

# (c) Standard input is a FIFO held open by this shell, so it never ends: only the idle
# timeout can end the client.
mkfifo "$WORK/stdin"
exec 6<>"$WORK/stdin"

# idle_client NAME: runs `tlsock connect --timeout 500` on the FIFO, expects exit 4 within a
# bound; output in $WORK/NAME.out and .err, the time taken in ELAPSED.
idle_client() {
    local start
    local status=0
    start=$(now_ms)
    "$TIMEOUT_BIN" -k 5 30 "$TLSOCK_BIN" connect "localhost:$PORT" --ca "$WORK/ca.pem" --quiet \
        --timeout 500 <&6 >"$WORK/$1.out" 2>"$WORK/$1.err" || status=$?
    ELAPSED=$(($(now_ms) - start))
    [ "$status" = 4 ] || fail "$1: exit status $status, expected 4"
    [ "$ELAPSED" -lt 5000 ] || fail "$1: gave up only after ${ELAPSED} ms"
    grep -q 'no data from the peer for 500 ms' "$WORK/$1.err" || fail "$1: no idle message"
}

idle_client idle
[ "$ELAPSED" -ge 450 ] || fail "gave up after ${ELAPSED} ms, before the timeout"
pass "connect --timeout 500 to a server that sends nothing: exit 4 after ${ELAPSED} ms"

# The same after some data: an echo arrives, then silence.
echo "one line" >&6
idle_client idle_after_echo
grep -qx 'one line' "$WORK/idle_after_echo.out" || fail "the echo before the silence was lost"
pass "connect --timeout 500: the echo, then exit 4 after ${ELAPSED} ms of silence"
exec 6>&-

# Data that keeps coming in shorter gaps than the timeout: no timeout although the whole
# session lasts longer than it, and a clean end at EOF.
status=0
start=$(now_ms)
{
    for i in 1 2 3 4; do
        echo "line $i"
        sleep 0.5
    done
} | "$TIMEOUT_BIN" -k 5 30 "$TLSOCK_BIN" connect "localhost:$PORT" --ca "$WORK/ca.pem" \
    --quiet --timeout 1500 >"$WORK/busy.out" 2>"$WORK/busy.err" || status=$?
elapsed=$(($(now_ms) - start))
[ "$status" = 0 ] || fail "a client with steady echoes exited $status"
[ "$(wc -l <"$WORK/busy.out")" = 4 ] || fail "not all four echoes arrived"
[ "$elapsed" -gt 1500 ] || fail "the session took only ${elapsed} ms, proving nothing"
pass "echoes every 500 ms kept a --timeout 1500 client alive for ${elapsed} ms; clean close"

# (d) silent_clients_stop NAME COUNT: opens COUNT silent connections to $PORT, lets the server
# accept them, stops the server started as $STOP_PID and checks how fast it went and that each
# silent client's connection ended.
silent_clients_stop() {
    local name=$1
    local count=$2
    local fds=()
    local fd
    for _ in $(seq 1 "$count"); do
        exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"
        fds+=("$fd")
    done
    sleep 0.5
    kill -0 "$STOP_PID" 2>/dev/null || fail "$name died"
    stop_bg "$STOP_PID" 10
    [ "$STOPPED_STATUS" = 0 ] || fail "$name exited $STOPPED_STATUS after SIGTERM"
    [ "$STOPPED_MS" -lt 3000 ] ||
        fail "$name took ${STOPPED_MS} ms to stop with silent clients in their handshake"
    for fd in "${fds[@]}"; do
        # Reset, or ended: cat returns at once; an open connection makes timeout(1) give 124.
        status=0
        "$TIMEOUT_BIN" 5 cat <&"$fd" >/dev/null 2>&1 || status=$?
        exec {fd}<&-
        [ "$status" != 124 ] || fail "$name: a silent client's connection stayed open"
    done
    pass "$name --handshake-timeout 60000: stopped ${STOPPED_MS} ms after SIGTERM" \
        "with $count silent clients in their handshake"
}

# With two loops the listening one hands every other client to the second (fewest connections).
start_tlsock_serve serve_stop --echo --threads 2 --handshake-timeout 60000
STOP_PID=$BG_PID
silent_clients_stop "serve --threads 2" 3

# The target is never reached: no client finishes its handshake.
start_tlsock tunnel_stop tunnel --accept 127.0.0.1:0 --connect 127.0.0.1:9 \
    --handshake-timeout 60000
STOP_PID=$BG_PID
silent_clients_stop tunnel 2
