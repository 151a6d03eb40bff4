#!/usr/bin/env bash
# How `tlsock tunnel` (TLS client, plaintext target) ends connections whose streams have not
# ended, when it is stopped or a connection is idle. The peers are tunnel_close_peer.py, which
# tells what each case does and how each end saw its connection end.
# (a) SIGTERM with three connections open: a download and an upload in progress, which the stop
#     cuts once its second of grace is over, and an exchange that completes within the grace.
#     Each cut stream is aborted, not closed as if it were complete: the TLS client sees a reset
#     (no close_notify) and the plaintext target ECONNRESET (no FIN). The completed exchange
#     ends cleanly: close_notify to the client, FIN to the target, the whole answer through.
# (b) --idle-timeout 1000 with a stalled direction: the client sends 240 KiB and close_notify,
#     the target reads nothing, so the tunnel has data queued for the target and its end (a
#     shutdown) behind it when the timeout fires. Both ends see a reset: the client no
#     close_notify, the target ECONNRESET instead of the data and a FIN, although libuv's
#     uv_tcp_close_reset() refuses a handle with a shutdown pending.
source "$(dirname "$0")/lib.sh"
need PYTHON3_BIN

PEER="$(dirname "$0")/tunnel_close_peer.py"
make_certs "$WORK/certs" localhost,127.0.0.1
CERT=(--cert "$WORK/certs/cert.pem" --key "$WORK/certs/key.pem")

# start_peers MODE: starts the peer script in MODE and a tunnel to its target (extra tunnel
# arguments in TUNNEL_ARGS); sets TUNNEL_PID and FROM_PEERS/TO_PEERS, the script's output and
# input.
start_peers() {
    local mode=$1
    start_peers_coproc "$mode" 60 "$PYTHON3_BIN" "$PEER" "$mode" "$WORK/certs/ca.pem"
    start_tlsock "tunnel_$mode" tunnel --accept 127.0.0.1:0 \
        --connect "127.0.0.1:${PEERS_FIRST##*:}" "${CERT[@]}" --verbose "${TUNNEL_ARGS[@]}"
    TUNNEL_PID=$BG_PID
    echo "$PORT" >&"$TO_PEERS"
}

# case_line NAME: the peers' line for case NAME (read from the lines collected in LINES).
case_line() {
    grep -E "^case=$1 " <<<"$LINES" || fail "no line for case $1 from the peers: $LINES"
}

# finish_peers MODE N: reads the N case lines into LINES and checks the script's status.
finish_peers() {
    local line
    LINES=""
    while read -r -t 40 line <&"$FROM_PEERS"; do
        LINES+="$line"$'\n'
    done
    end_peers "$1" "$LINES "
    [ "$(grep -c '^case=' <<<"$LINES")" = "$2" ] || fail "$1: not $2 cases: $LINES"
}

# both_reset WHAT LINE: both ends of the case in LINE saw a reset (WHAT names it on failure).
both_reset() {
    [ "$(field client "$2")" = reset ] || fail "$1: the TLS client did not see a reset: $2"
    [ "$(field target "$2")" = reset ] || fail "$1: the plaintext target did not see a reset: $2"
}

# (a) A stop.
TUNNEL_ARGS=()
start_peers stop
read -r -t 30 line <&"$FROM_PEERS" || fail "stop: the peers did not get going"
[ "$line" = "sync ready" ] || fail "stop: unexpected line from the peers: $line"
# SIGTERM to the tunnel (as stop_bg sends it), then at once "go": the complete target answers
# 0.2 s later, within the stop's second of grace. stop_bg's own SIGTERM then changes nothing.
child=$(bg_child "$TUNNEL_PID")
kill -TERM "${child:-$TUNNEL_PID}"
echo go >&"$TO_PEERS"
stop_bg "$TUNNEL_PID" 15
[ "$STOPPED_STATUS" = 0 ] || fail "the tunnel exited $STOPPED_STATUS after SIGTERM"
finish_peers stop 3
for name in download upload; do
    line=$(case_line "$name")
    both_reset "stop, $name cut short" "$line"
    [ "$(field got "$line")" -gt 0 ] || fail "stop, $name: nothing moved before the stop: $line"
    pass "SIGTERM, $name in progress: reset on both ends ($line)"
done
line=$(case_line complete)
[ "$(field client "$line")" = close_notify ] && [ "$(field target "$line")" = fin ] ||
    fail "stop, an exchange completed within the grace was not closed cleanly: $line"
[ "$(field got "$line")" = 24 ] || fail "stop, completed exchange: not the whole answer: $line"
pass "SIGTERM, an exchange completed within the grace: close_notify and FIN, all of it through"
grep -q 'a stream is cut short: resetting both sides' "$WORK/tunnel_stop.err" ||
    fail "stop: the aborts were not logged"

# (b) The idle timeout, a shutdown pending towards a target that does not read.
TUNNEL_ARGS=(--idle-timeout 1000)
start_peers stall
finish_peers stall 1
line=$(case_line stall)
both_reset "idle timeout, stalled target with a shutdown pending" "$line"
[ "$(field got "$line")" -lt 245760 ] || fail "idle timeout: every byte went through: $line"
pass "--idle-timeout, a stalled target with data and a shutdown queued: reset on both ends ($line)"
grep -q 'nothing moved for 1000 ms' "$WORK/tunnel_stall.err" ||
    fail "the idle timeout was not logged"
stop_bg "$TUNNEL_PID" 10
[ "$STOPPED_STATUS" = 0 ] || fail "the tunnel exited $STOPPED_STATUS after SIGTERM"
