#!/usr/bin/env bash
# What `tlsock serve` and `tlsock tunnel` report (docs/tlsock.1, STATISTICS):
# (a) MODE serve, serve-threads (--threads 2), tunnel: a known mix of clients, once per
#     implementation (--impl): 3 good ones (two open at once, each sending 1000 bytes), one that
#     refuses the server's certificate (s_client -verify_return_error with another CA: verify),
#     one that sends HTTP (protocol), one that says nothing (timeout), one that resets mid
#     handshake (reset); then SIGTERM: exit 0 and a summary whose every figure is what the
#     clients did. The tunnel's target sends every byte back twice, so in and out differ.
# (b) MODE periodic: --stats 1 prints the same figures while it runs; three failures of one kind
#     log one full line and "2 more protocol failures not logged" (or 1 and 1 around a stats line);
#     with --verbose, three lines.
# (c) MODE errors: three clients reset their connection after their handshake: one full line
#     and "tlsock: connection: 2 more reset failures not logged"; with --verbose, three lines.
source "$(dirname "$0")/lib.sh"
need PYTHON3_BIN OPENSSL_BIN

MODE=${1:-serve}
HERE=$(dirname "$0")
CLIENT=("$TIMEOUT_BIN" -k 5 30 "$PYTHON3_BIN" "$HERE/stats_client.py")
SIZE=1000

make_certs "$WORK/other" localhost

# handshake_lines NAME: how many handshake failures NAME's stderr logged in full.
handshake_lines() {
    grep -c '^tlsock: handshake: .*: ' "$WORK/$1.err" || true
}

# wait_handshake_lines NAME N: until N handshake failures are logged.
wait_handshake_lines() {
    for _ in $(seq 1 200); do
        [ "$(handshake_lines "$1")" -ge "$2" ] && return 0
        sleep 0.05
    done
    fail "$1: $(handshake_lines "$1") handshake failures logged, expected $2"
}

# mix NAME PORT CAFILE: the clients of (a) against the server NAME on PORT.
mix() {
    local name=$1
    local port=$2
    local ca=$3
    "${CLIENT[@]}" "$port" good 2 "$SIZE" "$FACTOR" "$ca" || fail "$name: two good clients"
    "${CLIENT[@]}" "$port" good 1 "$SIZE" "$FACTOR" "$ca" || fail "$name: a good client"
    "$TIMEOUT_BIN" -k 5 30 "$OPENSSL_BIN" s_client -connect "127.0.0.1:$port" \
        -servername localhost -verify_return_error -CAfile "$WORK/other/ca.pem" </dev/null \
        >"$WORK/$name-verify.out" 2>&1 && fail "$name: s_client accepted an untrusted server"
    wait_handshake_lines "$name" 1
    "${CLIENT[@]}" "$port" garbage || fail "$name: the garbage client"
    wait_handshake_lines "$name" 2
    "${CLIENT[@]}" "$port" silent || fail "$name: the silent client"
    wait_handshake_lines "$name" 3
    "${CLIENT[@]}" "$port" reset || fail "$name: the resetting client"
    wait_handshake_lines "$name" 4
}

# summary NAME PID: stops NAME and checks its summary line against the mix.
summary() {
    local name=$1
    local want="connections 7, peak 2, bytes in $((3 * SIZE)), bytes out $((3 * SIZE * FACTOR)),"
    want="$want handshakes ok 3, failed 4 \\(verify 1, timeout 1, protocol 1, reset 1, other 0\\)"
    stop_bg "$2" 15
    [ "$STOPPED_STATUS" = 0 ] || fail "$name: exit status $STOPPED_STATUS after SIGTERM"
    grep -Eq "^tlsock: summary: $want, uptime [0-9]+ s\$" "$WORK/$name.err" ||
        fail "$name: no summary '$want' in: $(grep summary "$WORK/$name.err")"
    [ "$(grep -c 'summary:' "$WORK/$name.err")" = 1 ] || fail "$name: not one summary"
    pass "$name: $(grep 'summary:' "$WORK/$name.err")"
}

tlsock_impls
case "$MODE" in
serve | serve-threads)
    FACTOR=1
    threads=1
    [ "$MODE" = serve-threads ] && threads=2
    for impl in $IMPLS; do
        start_tlsock_serve "$MODE-$impl" --impl "$impl" --ca-out "$WORK/$impl-ca.pem" \
            --handshake-timeout 500 --threads "$threads"
        pid=$BG_PID
        mix "$MODE-$impl" "$PORT" "$WORK/$impl-ca.pem"
        summary "$MODE-$impl" "$pid"
    done
    ;;
tunnel)
    FACTOR=2
    start_bg target "$PYTHON3_BIN" -u "$HERE/plain_server.py" double
    line=$(wait_for "$WORK/target.out" '^listening on ' 10)
    target=${line##*:}
    for impl in $IMPLS; do
        start_tlsock "tunnel-$impl" tunnel --impl "$impl" --accept 127.0.0.1:0 \
            --connect "127.0.0.1:$target" --ca-out "$WORK/$impl-ca.pem" --handshake-timeout 500 \
            --threads 2
        pid=$BG_PID
        mix "tunnel-$impl" "$PORT" "$WORK/$impl-ca.pem"
        summary "tunnel-$impl" "$pid"
    done
    ;;
periodic)
    start_tlsock_serve periodic --stats 1
    pid=$BG_PID
    for _ in 1 2 3; do
        "${CLIENT[@]}" "$PORT" garbage || fail "garbage client"
    done
    wait_for "$WORK/periodic.err" '^tlsock: stats: connections 3, peak 0, bytes in 0, bytes out 0, handshakes ok 0, failed 3 \(verify 0, timeout 0, protocol 3, reset 0, other 0\), uptime [0-9]+ s$' 5 >/dev/null
    stop_bg "$pid" 15
    [ "$(handshake_lines periodic)" = 1 ] ||
        fail "three protocol failures logged $(handshake_lines periodic) lines in full, not 1"
    # A stats line between two clients says the count so far: the counts add up.
    unlogged=$(awk '/^tlsock: handshake: [0-9]+ more protocol failures not logged \(--verbose logs each\)$/ {
        n += $3 } END { print n + 0 }' "$WORK/periodic.err")
    [ "$unlogged" = 2 ] || fail "$unlogged protocol failures said not logged, expected 2"
    pass "--stats 1 prints the figures; three protocol failures: one line and '2 more'"
    start_tlsock_serve verbose --verbose
    pid=$BG_PID
    for _ in 1 2 3; do
        "${CLIENT[@]}" "$PORT" garbage || fail "garbage client"
    done
    wait_handshake_lines verbose 3
    stop_bg "$pid" 15
    [ "$(handshake_lines verbose)" = 3 ] || fail "--verbose: not three lines"
    grep -q 'not logged' "$WORK/verbose.err" && fail "--verbose left failures unlogged"
    grep -q '^tlsock: stats:' "$WORK/verbose.err" && fail "a stats line without --stats"
    pass "--verbose logs each of three protocol failures"
    ;;
errors)
    for verbose in no yes; do
        name=errors-verbose-$verbose
        args=(--ca-out "$WORK/$name-ca.pem")
        [ "$verbose" = yes ] && args+=(--verbose)
        start_tlsock_serve "$name" "${args[@]}"
        pid=$BG_PID
        for _ in 1 2 3; do
            "${CLIENT[@]}" "$PORT" drop "$WORK/$name-ca.pem" || fail "$name: the dropping client"
        done
        # The server notices each reset when it reads next: the summary comes after all three.
        wait_for "$WORK/$name.err" '\(ECONNRESET\)' 10 >/dev/null
        sleep 0.5
        stop_bg "$pid" 15
        full=$(grep -c '^tlsock: .*: read: .*(ECONNRESET)' "$WORK/$name.err" || true)
        said=$(awk '/^tlsock: connection: [0-9]+ more reset failures not logged/ { n += $3 }
            END { print n + 0 }' "$WORK/$name.err")
        if [ "$verbose" = yes ]; then
            [ "$full" = 3 ] && [ "$said" = 0 ] || fail "$name: $full lines and $said more, not 3 and 0"
        else
            [ "$full" = 1 ] && [ "$said" = 2 ] || fail "$name: $full lines and $said more, not 1 and 2"
        fi
        pass "$name: three resets after the handshake: $full full lines, $said more said"
    done
    ;;
*)
    fail "unknown mode $MODE"
    ;;
esac
