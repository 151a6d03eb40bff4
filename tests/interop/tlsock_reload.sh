#!/usr/bin/env bash
# SIGHUP reloads `tlsock serve` and `tlsock tunnel` (accepting side), with certificates made by
# the openssl tool: started with certificate A, the files replaced by B, SIGHUP: the log says
# what was reloaded and a new openssl s_client sees B, while a client connected before keeps
# working; then a broken key file and SIGHUP: the log says why, and new clients still get B.
# `serve --threads 2` gets the new certificate on both loops.
source "$(dirname "$0")/lib.sh"
need OPENSSL_BIN PYTHON3_BIN

for n in a b; do
    "$TIMEOUT_BIN" 30 "$OPENSSL_BIN" req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$WORK/$n.key" -out "$WORK/$n.pem" -subj "/CN=reload-$n" -days 2 \
        -addext subjectAltName=DNS:localhost,IP:127.0.0.1 >>"$WORK/openssl.out" 2>&1 ||
        fail "openssl req failed: $(cat "$WORK/openssl.out")"
done

# use NAME: the served files become certificate NAME (a or b).
use() {
    cp "$WORK/$1.pem" "$WORK/cert.pem"
    cp "$WORK/$1.key" "$WORK/key.pem"
}

# subject_seen NAME PORT: the CN a new s_client sees on PORT (verified against both certificates).
subject_seen() {
    cat "$WORK/a.pem" "$WORK/b.pem" >"$WORK/both.pem"
    "$TIMEOUT_BIN" -k 5 20 "$OPENSSL_BIN" s_client -connect "127.0.0.1:$2" -verify_return_error \
        -CAfile "$WORK/both.pem" </dev/null >"$WORK/$1.out" 2>"$WORK/$1.err" ||
        fail "$1: s_client failed: $(cat "$WORK/$1.err")"
    sed -nE 's/^subject=.*CN ?= ?(reload-[ab]).*/\1/p' "$WORK/$1.out" | head -1
}

# check_reloads NAME COMMAND ARGS...: the whole sequence against `tlsock COMMAND ARGS`.
check_reloads() {
    local name=$1
    shift
    local pid got
    use a
    start_tlsock "$name" "$@" --cert "$WORK/cert.pem" --key "$WORK/key.pem"
    pid=$BG_PID
    got=$(subject_seen "$name-first" "$PORT")
    [ "$got" = reload-a ] || fail "$name: first client saw '$got', expected reload-a"

    # A client connected before the reload keeps its session (and A).
    mkfifo "$WORK/$name-live.in"
    "$TIMEOUT_BIN" -k 5 30 "$OPENSSL_BIN" s_client -connect "127.0.0.1:$PORT" \
        <"$WORK/$name-live.in" >"$WORK/$name-live.out" 2>"$WORK/$name-live.err" &
    local live=$!
    BG_PIDS+=("$live")
    exec 3>"$WORK/$name-live.in"
    wait_for "$WORK/$name-live.out" '^subject=.*reload-a' 10 >/dev/null

    use b
    hup "$pid"
    wait_for "$WORK/$name.err" "SIGHUP: reloaded --cert $WORK/cert.pem --key $WORK/key.pem" 10 \
        >/dev/null
    # With --threads 2 each client goes to the loop with fewer connections (loop 0 on a tie).
    # Three clients held open after the reload, next to the one from before it, put at least one
    # new client on each loop wherever that one landed: all must see B.
    local h
    for h in 1 2 3; do
        hold_s_client "$name-held$h" -connect "127.0.0.1:$PORT"
        wait_for "$WORK/$name-held$h.out" '^subject=.*reload-' 10 >/dev/null
        grep -q '^subject=.*reload-b' "$WORK/$name-held$h.out" ||
            fail "$name: client $h held after SIGHUP did not see reload-b"
    done
    for i in 1 2 3 4 5 6; do
        got=$(subject_seen "$name-after-$i" "$PORT")
        [ "$got" = reload-b ] || fail "$name: after SIGHUP client $i saw '$got', expected reload-b"
    done
    release_s_clients "$name, after the reload"

    echo "still-here-$name" >&3
    wait_for "$WORK/$name-live.out" "still-here-$name" 10 >/dev/null
    exec 3>&-
    wait "$live" || fail "$name: the client connected before the reload failed"

    echo "not a key" >"$WORK/key.pem"
    hup "$pid"
    wait_for "$WORK/$name.err" 'SIGHUP: reload failed \(ECONFIG\); still serving the previous' 10 \
        >/dev/null
    grep -qF -- "key file $WORK/key.pem" "$WORK/$name.err" ||
        fail "$name: the log does not name the broken key: $(cat "$WORK/$name.err")"
    got=$(subject_seen "$name-broken" "$PORT")
    [ "$got" = reload-b ] || fail "$name: after a failed reload a new client saw '$got'"
    running "$pid" || fail "$name: the server stopped"
    [ "$(grep -c 'SIGHUP: reloaded' "$WORK/$name.err")" = 1 ] ||
        fail "$name: expected one successful reload: $(cat "$WORK/$name.err")"
    stop_bg "$pid" 10
    [ "$STOPPED_STATUS" = 0 ] || fail "$name: exit status $STOPPED_STATUS after SIGTERM"
}

check_reloads serve serve --echo
check_reloads serve-threads serve --echo --threads 2
# The tunnel's target: a plaintext echo server.
start_bg target "$PYTHON3_BIN" "$(dirname "$0")/plain_server.py" echo
line=$(wait_for "$WORK/target.out" '^listening on 127\.0\.0\.1:[0-9]+' 10)
check_reloads tunnel tunnel --accept 127.0.0.1:0 --connect "127.0.0.1:${line##*:}"
pass "SIGHUP reloads serve, serve --threads and tunnel; a broken key keeps the old certificate"

# The tunnel's target side: TLS to a server of certificate b, trusted through --ca FILE. FILE
# holds a first (the target is refused), then b: after SIGHUP the tunnel connects.
start_tlsock_serve reload-target --cert "$WORK/b.pem" --key "$WORK/b.key"
TARGET_PORT=$PORT
cp "$WORK/a.pem" "$WORK/target-ca.pem"
start_tlsock reload-tunnel-target tunnel --accept 127.0.0.1:0 --tls-connect \
    --connect "localhost:$TARGET_PORT" --ca "$WORK/target-ca.pem"
TUNNEL_PID=$BG_PID
TUNNEL_PORT=$PORT
# through_tunnel NAME: a line sent through the tunnel (plaintext in), echoed by the target.
printf 'ping\n' >"$WORK/ping.in"
through_tunnel() {
    plain_exchange "$TUNNEL_PORT" "$WORK/ping.in" "$1" || true
}
through_tunnel before-target-reload
grep -q ping "$WORK/before-target-reload.out" && fail "the tunnel reached a target its CA does not sign"
wait_for "$WORK/reload-tunnel-target.err" "unable to get local issuer certificate|self-signed" 10 >/dev/null
cp "$WORK/b.pem" "$WORK/target-ca.pem"
hup "$TUNNEL_PID"
wait_for "$WORK/reload-tunnel-target.err" "SIGHUP: reloaded the target's CAs and CRLs" 10 >/dev/null
through_tunnel after-target-reload
grep -q ping "$WORK/after-target-reload.out" ||
    fail "after SIGHUP the tunnel still refuses the target: $(tail -3 "$WORK/reload-tunnel-target.err")"
stop_bg "$TUNNEL_PID" 10
pass "SIGHUP reloads the tunnel's target CAs: a target refused before is reached after"

# Nothing to reload: a tunnel serving a throw-away certificate (no --cert) to a plaintext target
# says so, and does not claim a reload.
start_tlsock reload-nothing tunnel --accept 127.0.0.1:0 --connect "127.0.0.1:${line##*:}"
NOTHING_PID=$BG_PID
hup "$NOTHING_PID"
wait_for "$WORK/reload-nothing.err" "SIGHUP: nothing to reload" 10 >/dev/null
grep -q "SIGHUP: reloaded" "$WORK/reload-nothing.err" &&
    fail "a tunnel with nothing to reload said it reloaded: $(cat "$WORK/reload-nothing.err")"
stop_bg "$NOTHING_PID" 10
pass "SIGHUP on a tunnel with a throw-away certificate and a plaintext target: nothing to reload"
