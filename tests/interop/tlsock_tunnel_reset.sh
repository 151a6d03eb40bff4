#!/usr/bin/env bash
# `tlsock tunnel --impl IMPL` when one side of a connection resets or is cut short while the other
# side is blocked, for TLS termination (TLS client, plaintext target) and TLS origination
# (plaintext client, TLS target), with the default idle timeout (300 s). The peers are
# tunnel_reset_peer.py, which tells what each case does and prints what it saw.
# (a) A reset: client and target both write and never read, so that the tunnel has stopped
#     reading both sides and has data queued for each; then one of them resets. The other one's
#     connection must end far sooner than the idle timeout: it is reset at once, a plaintext side
#     with uv_tcp_close_reset(), a TLS side with tlsock_uv_abort() (no close_notify, no flush to
#     a peer that does not read); bounded here by 5 s either way.
# (b) A truncation (TLS without close_notify, after 200 KiB): a survivor that reads gets every
#     byte, then a FIN; one that never reads but writes is not blocked (the tunnel reads and
#     drops what it sends: more than 4 MiB) and is closed within the 5 s draining bound (10 s
#     here).
# Each reset and truncation is logged, and the tunnel goes on.
#     tlsock_tunnel_reset.sh openssl|gnutls
source "$(dirname "$0")/lib.sh"
need PYTHON3_BIN

IMPL=${1:-}
case "$IMPL" in
openssl | gnutls) ;;
*) fail "usage: tlsock_tunnel_reset.sh openssl|gnutls" ;;
esac
"$TLSOCK_BIN" version | grep -E "^ *$IMPL " | grep -vq 'not compiled in' ||
    fail "$IMPL is not compiled in"

PEER="$(dirname "$0")/tunnel_reset_peer.py"
make_certs "$WORK/certs" localhost,127.0.0.1
CERTS=("$WORK/certs/ca.pem" "$WORK/certs/cert.pem" "$WORK/certs/key.pem")
FAST_MS=5000      # a side reset at once, plaintext or TLS
DRAIN_MS=10000    # a survivor that does not read is drained, then closed after 5 s of silence

# wait_count FILE REGEX N SECONDS: waits until N lines of FILE match REGEX (grep -E); false if
# they do not within SECONDS.
wait_count() {
    local i
    for i in $(seq 1 $(($4 * 20))); do
        [ "$(grep -Ec -- "$2" "$1")" -ge "$3" ] && return 0
        sleep 0.05
    done
    return 1
}

# speaks SIDE: tls or plain, for the current mode.
speaks() {
    if [ "$1" = client ]; then echo "$CLIENT"; else echo "$TARGET"; fi
}

# check_case LINE: the assertions on one case.
check_case() {
    local line=$1
    local name survivor end ms bound
    name=$(field case "$line")
    survivor=$(field survivor "$line")
    end=$(field end "$line")
    ms=$(field ms "$line")
    case "$name" in
    reset-*)
        bound=$FAST_MS
        [ "$end" != none ] || fail "$MODE, $name: the $survivor's connection stayed open: $line"
        [ "$ms" -lt "$bound" ] || fail "$MODE, $name: the $survivor's connection ended only after $ms ms"
        pass "$MODE, ${name#reset-} resets: the $survivor's connection ended ($end) after $ms ms"
        ;;
    truncate-read)
        [ "$(field got "$line")" = 204800 ] || fail "$MODE, $name: not every byte came through: $line"
        [ "$end" = fin ] || fail "$MODE, $name: the stream did not end with a FIN: $line"
        pass "$MODE, truncated stream: the $survivor got all 204800 bytes, then a FIN"
        ;;
    truncate-stuck)
        [ "$end" != none ] || fail "$MODE, $name: the $survivor's connection stayed open: $line"
        [ "$ms" -lt "$DRAIN_MS" ] || fail "$MODE, $name: closed only after $ms ms"
        [ "$(field written "$line")" -gt $((4 << 20)) ] ||
            fail "$MODE, $name: the $survivor was blocked writing: $line"
        pass "$MODE, truncated stream, the $survivor not reading: closed ($end) after $ms ms;" \
            "it wrote $(field written "$line") bytes meanwhile"
        ;;
    *) fail "$MODE: unexpected line from the peers: $line" ;;
    esac
}

# run_mode MODE CLIENT TARGET CASES TUNNEL_ARGS...: one tunnel between the peers; CASES lines
# expected.
run_mode() {
    MODE=$1
    CLIENT=$2
    TARGET=$3
    local cases=$4
    shift 4
    local line target_port tunnel_pid n=0
    start_peers_coproc "$MODE" 80 "$PYTHON3_BIN" "$PEER" "$CLIENT" "$TARGET" "${CERTS[@]}"
    target_port=${PEERS_FIRST##*:}
    start_tlsock "tunnel_$MODE" tunnel --impl "$IMPL" --accept 127.0.0.1:0 \
        --connect "127.0.0.1:$target_port" --verbose "$@"
    tunnel_pid=$BG_PID
    echo "$PORT" >&"$TO_PEERS"
    local truncations=0
    while read -r -t 60 line <&"$FROM_PEERS"; do
        if [ "$line" = "sync truncated" ]; then
            # The peers go on once the tunnel has seen the end of the stream.
            truncations=$((truncations + 1))
            wait_count "$WORK/tunnel_$MODE.err" 'without close_notify \(truncated\)' \
                "$truncations" 10 || fail "$MODE: truncation $truncations was not logged"
            echo go >&"$TO_PEERS"
        else
            check_case "$line"
            n=$((n + 1))
        fi
    done
    end_peers "$MODE"
    [ "$n" = "$cases" ] || fail "$MODE: $n cases ran, not $cases"
    # Each side's reset is logged as a reset of that side, each truncation as one.
    grep -Eq ": client: system call failed: .*(reset|broken pipe)" "$WORK/tunnel_$MODE.err" ||
        fail "$MODE: the client's reset was not logged"
    grep -Eq ": 127\\.0\\.0\\.1:$target_port: system call failed: .*(reset|broken pipe)" \
        "$WORK/tunnel_$MODE.err" || fail "$MODE: the target's reset was not logged"
    [ "$(grep -c 'without close_notify (truncated)' "$WORK/tunnel_$MODE.err")" = 2 ] ||
        fail "$MODE: the truncations were not logged twice"
    # Every connection was closed and freed before the stop: one "closed" line each.
    wait_count "$WORK/tunnel_$MODE.err" ': closed \(' "$cases" 10 ||
        fail "$MODE: not every connection was closed"
    running "$tunnel_pid" || fail "$MODE: the tunnel died"
    stop_bg "$tunnel_pid" 10
    [ "$STOPPED_STATUS" = 0 ] || fail "$MODE: the tunnel exited $STOPPED_STATUS after SIGTERM"
}

run_mode termination tls plain 4 --cert "$WORK/certs/cert.pem" --key "$WORK/certs/key.pem"
run_mode origination plain tls 4 --tls-connect --ca "$WORK/certs/ca.pem"
