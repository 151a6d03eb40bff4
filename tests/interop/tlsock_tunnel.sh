#!/usr/bin/env bash
# `tlsock tunnel`, both ways, against real peers over loopback:
# (a) TLS termination: curl --cacert https://... through the tunnel to python3's plaintext
#     http.server gets a small and a 3 MB file intact.
# (b) half-close: `tlsock connect` sends its input, then close_notify; the tunnel passes that on
#     as a FIN to a plaintext server that answers only after the end of its input; the answer
#     comes back, then the tunnel's close_notify (connect exits 0).
# (b1) the other way: a plaintext client's FIN through `tunnel --tls-connect` is a TLS
#     half-close towards the (b) tunnel, and the answer still comes back.
# (b2) backpressure both ways: a client that writes far more than the kernel can buffer before
#     it reads, through the tunnel to a plaintext echo server, gets all of it back intact.
# (c) TLS origination: curl http://... through `tunnel --tls-connect --ca` to `tlsock serve
#     --http` and to `openssl s_server -www`, verified.
# (d) negative: with --tls-connect, a target whose certificate the tunnel does not trust (system
#     store) or whose name is wrong fails each connection, logged with the reason, and the
#     tunnel goes on.
# (e) --idle-timeout resets a connection on which nothing moves (its streams have not ended:
#     the client exits 5, the plaintext server sees ECONNRESET); --threads 2 shares the port;
#     usage errors exit 1; SIGTERM exits 0.
source "$(dirname "$0")/lib.sh"
need PYTHON3_BIN CURL_BIN

PLAIN_SERVER="$(dirname "$0")/plain_server.py"
make_certs "$WORK/certs" localhost,127.0.0.1
CERT=(--cert "$WORK/certs/cert.pem" --key "$WORK/certs/key.pem")
CURL=("$TIMEOUT_BIN" -k 5 30 "$CURL_BIN" --silent --show-error --max-time 20)

# start_port NAME REGEX CMD...: starts CMD and sets PORT from the first number after REGEX in
# the first line of its output that matches.
start_port() {
    local name=$1
    local regex=$2
    shift 2
    local line
    start_bg "$name" "$@"
    line=$(wait_for "$WORK/$name.out" "${regex}[0-9]+" 10)
    PORT=$(sed -E "s/.*$regex([0-9]+).*/\\1/" <<<"$line")
}

# (a) TLS termination in front of python3 -m http.server.
mkdir -p "$WORK/www"
echo "hello through the tunnel" >"$WORK/www/hello.txt"
head -c 3000000 /dev/urandom >"$WORK/www/big.bin"
start_port http 'port ' "$PYTHON3_BIN" -u -m http.server 0 --bind 127.0.0.1 \
    --directory "$WORK/www"
HTTP_PORT=$PORT
start_tlsock term tunnel --accept 127.0.0.1:0 --connect "127.0.0.1:$HTTP_PORT" "${CERT[@]}" \
    --verbose
TERM_PID=$BG_PID
TERM_PORT=$PORT
HTTPS=("${CURL[@]}" --resolve "localhost:$TERM_PORT:127.0.0.1" --cacert "$WORK/certs/ca.pem")
body=$("${HTTPS[@]}" "https://localhost:$TERM_PORT/hello.txt") || fail "curl through the tunnel"
[ "$body" = "hello through the tunnel" ] || fail "unexpected body '$body'"
"${HTTPS[@]}" -o "$WORK/big.got" "https://localhost:$TERM_PORT/big.bin" ||
    fail "curl of the big file through the tunnel"
cmp -s "$WORK/www/big.bin" "$WORK/big.got" || fail "the big file changed on the way"
wait_for "$WORK/term.err" "connected to 127.0.0.1:$HTTP_PORT" 10 >/dev/null
wait_for "$WORK/term.err" 'closed \([0-9]+ bytes to' 10 >/dev/null
pass "curl --cacert https -> tunnel (TLS termination) -> python3 http.server: 2 files intact"

# (b) Half-close: the plaintext server answers only after the end of its input.
start_port halfclose 'listening on 127\.0\.0\.1:' "$PYTHON3_BIN" "$PLAIN_SERVER" halfclose
HALF_PORT=$PORT
start_tlsock half tunnel --accept 127.0.0.1:0 --connect "127.0.0.1:$HALF_PORT" "${CERT[@]}"
HALF_TUNNEL_PORT=$PORT
head -c 200000 /dev/urandom >"$WORK/half.in"
want="received 200000 bytes sha256 $(sha256sum "$WORK/half.in" | cut -d' ' -f1)"
status=0
"$TIMEOUT_BIN" -k 5 30 "$TLSOCK_BIN" connect "localhost:$HALF_TUNNEL_PORT" \
    --ca "$WORK/certs/ca.pem" --quiet --timeout 10000 <"$WORK/half.in" >"$WORK/half.out" \
    2>"$WORK/half.client.err" || status=$?
[ "$status" = 0 ] || fail "tlsock connect through the tunnel exited $status"
[ "$(cat "$WORK/half.out")" = "$want" ] || fail "half-close: got '$(cat "$WORK/half.out")'"
pass "close_notify -> FIN through the tunnel; the answer sent after it came back (exit 0)"

# (b1) The other way: a plaintext client's FIN becomes a TLS half-close (close_notify and a FIN)
# towards a TLS target, here the half-close tunnel above, and the target's answer still comes
# back through both tunnels.
start_tlsock halforig tunnel --accept 127.0.0.1:0 \
    --connect "localhost:$HALF_TUNNEL_PORT" --tls-connect --ca "$WORK/certs/ca.pem"
HALF_ORIG_PORT=$PORT
status=0
plain_exchange "$HALF_ORIG_PORT" "$WORK/half.in" halforig || status=$?
[ "$status" = 0 ] || fail "plaintext client through two tunnels exited $status"
[ "$(cat "$WORK/halforig.out")" = "$want" ] ||
    fail "plain -> TLS half-close: got '$(cat "$WORK/halforig.out")'"
pass "FIN -> TLS half-close (--tls-connect); the answer sent after it came back"

# (b2) Backpressure both ways: a client that writes far more than the kernel can buffer before it
# reads, through the tunnel to a plaintext echo server, gets all of it back intact, and the
# tunnel stopped taking its data meanwhile.
start_port echo 'listening on 127\.0\.0\.1:' "$PYTHON3_BIN" "$PLAIN_SERVER" echo
start_tlsock bulk tunnel --accept 127.0.0.1:0 --connect "127.0.0.1:$PORT" "${CERT[@]}"
status=0
"$TIMEOUT_BIN" -k 5 50 "$PYTHON3_BIN" "$(dirname "$0")/bulk_echo_client.py" "$PORT" \
    "$WORK/certs/ca.pem" 2 >"$WORK/bulk.out" 2>&1 || status=$?
[ "$status" = 0 ] || fail "bulk echo through the tunnel: $(cat "$WORK/bulk.out")"
pass "through the tunnel: $(cat "$WORK/bulk.out")"

# (c) TLS origination, verified, to `tlsock serve --http` (by name: localhost may be ::1 first,
# where nothing listens, then 127.0.0.1) and to openssl s_server -www (by address).
start_tlsock_serve https --http "${CERT[@]}"
HTTPS_PORT=$PORT
start_tlsock orig tunnel --accept 127.0.0.1:0 --connect "localhost:$HTTPS_PORT" --tls-connect \
    --ca "$WORK/certs/ca.pem" --verbose
ORIG_PORT=$PORT
body=$("${CURL[@]}" "http://127.0.0.1:$ORIG_PORT/") || fail "curl http through the tunnel"
[ "$body" = "hello from tlsock" ] || fail "unexpected body '$body'"
pass "curl http -> tunnel --tls-connect --ca -> tlsock serve --http: 200, verified"

if [ -n "${OPENSSL_BIN:-}" ] && [ -x "$OPENSSL_BIN" ]; then
    start_s_server s_server -www -cert "$WORK/certs/cert.pem" -key "$WORK/certs/key.pem"
    S_PORT=$PORT
    start_tlsock orig2 tunnel --accept 127.0.0.1:0 --connect "127.0.0.1:$S_PORT" --tls-connect \
        --ca "$WORK/certs/ca.pem"
    "${CURL[@]}" --http1.0 -o "$WORK/s_server.html" "http://127.0.0.1:$PORT/" ||
        fail "curl http through the tunnel to s_server"
    grep -q 's_server' "$WORK/s_server.html" || fail "no s_server page: $(head -c 300 "$WORK/s_server.html")"
    pass "curl http -> tunnel --tls-connect --ca -> openssl s_server -www: the status page"
fi

# (d) An untrusted target: the system store does not know the development CA. --verbose logs
# each refusal (without it, repeated ones of a kind are counted: tlsock_stats.sh errors).
start_tlsock untrusted tunnel --accept 127.0.0.1:0 --connect "127.0.0.1:$HTTPS_PORT" \
    --tls-connect --verbose
UNTRUSTED_PID=$BG_PID
UNTRUSTED_PORT=$PORT
for i in 1 2; do
    status=0
    "${CURL[@]}" -o /dev/null "http://127.0.0.1:$UNTRUSTED_PORT/" 2>/dev/null || status=$?
    [ "$status" != 0 ] || fail "curl got an answer through a tunnel to an untrusted server"
    for _ in $(seq 1 100); do
        [ "$(grep -c 'certificate verification failed' "$WORK/untrusted.err")" -ge "$i" ] && break
        sleep 0.05
    done
    [ "$(grep -c 'certificate verification failed' "$WORK/untrusted.err")" -ge "$i" ] ||
        fail "connection $i to the untrusted target was not logged"
done
grep -q "connect to 127.0.0.1:$HTTPS_PORT: certificate verification failed: .*issuer" \
    "$WORK/untrusted.err" || fail "no reason logged: $(cat "$WORK/untrusted.err")"
running "$UNTRUSTED_PID" || fail "the tunnel died"
pass "tunnel --tls-connect to an untrusted server: each connection refused and logged; tunnel runs"

start_tlsock wrongname tunnel --accept 127.0.0.1:0 --connect "127.0.0.1:$HTTPS_PORT" \
    --tls-connect --ca "$WORK/certs/ca.pem" --servername wrong.example
"${CURL[@]}" -o /dev/null "http://127.0.0.1:$PORT/" 2>/dev/null && fail "wrong name accepted"
wait_for "$WORK/wrongname.err" 'certificate verification failed: .*mismatch' 10 >/dev/null
pass "tunnel --tls-connect --servername wrong.example: refused (hostname mismatch), logged"

# (e) Idle timeout: a client and a server that both say nothing.
start_tlsock idle tunnel --accept 127.0.0.1:0 --connect "127.0.0.1:$HALF_PORT" "${CERT[@]}" \
    --idle-timeout 300 --verbose
mkfifo "$WORK/idle.in"
exec 6<>"$WORK/idle.in"
start=$(($(date +%s%N) / 1000000))
status=0
"$TIMEOUT_BIN" -k 5 30 "$TLSOCK_BIN" connect "localhost:$PORT" --ca "$WORK/certs/ca.pem" \
    --quiet <&6 >"$WORK/idle_client.out" 2>"$WORK/idle_client.err" || status=$?
elapsed=$(($(date +%s%N) / 1000000 - start))
exec 6>&-
# Neither stream had ended: the connection is reset, not closed as if it were complete, so the
# client exits 5 (no close_notify) and the plaintext server's read fails with ECONNRESET.
[ "$status" = 5 ] ||
    fail "the idle client exited $status, not 5 (reset): $(cat "$WORK/idle_client.err")"
if [ "$elapsed" -lt 250 ] || [ "$elapsed" -ge 5000 ]; then
    fail "idle connection ended after ${elapsed} ms"
fi
wait_for "$WORK/idle.err" 'nothing moved for 300 ms' 5 >/dev/null
wait_for "$WORK/idle.err" 'a stream is cut short: resetting both sides' 5 >/dev/null
wait_for "$WORK/halfclose.err" 'reset by peer' 5 >/dev/null
pass "--idle-timeout 300: the silent connection was reset on both sides after ${elapsed} ms"

# --threads 2: one TLS listener (loop 0's, which gives each client to the least loaded loop),
# and it still forwards.
start_tlsock threads tunnel --threads 2 --accept 127.0.0.1:0 --connect "127.0.0.1:$HTTP_PORT" \
    "${CERT[@]}"
listeners=$(listeners_on "$PORT")
[ "$listeners" = 1 ] || fail "tunnel --threads 2: $listeners listening sockets on $PORT"
for i in 1 2 3; do
    body=$("${CURL[@]}" --resolve "localhost:$PORT:127.0.0.1" --cacert "$WORK/certs/ca.pem" \
        "https://localhost:$PORT/hello.txt") || fail "curl $i through tunnel --threads 2"
    [ "$body" = "hello through the tunnel" ] || fail "tunnel --threads 2: body '$body'"
done
pass "tunnel --threads 2: one listener on port $PORT; 3 requests forwarded"

expect_status 1 "tunnel without --connect is a usage error" \
    "$TLSOCK_BIN" tunnel --accept 127.0.0.1:0 2>/dev/null
expect_status 1 "tunnel --ca without --tls-connect is a usage error" \
    "$TLSOCK_BIN" tunnel --accept 127.0.0.1:0 --connect 127.0.0.1:1 --ca /dev/null 2>/dev/null
# Plaintext clients (--tls-connect without --cert) have no TLS sessions to share: refused, not
# ignored.
expect_status 1 "tunnel --session-store with plaintext clients is a usage error" \
    "$TLSOCK_BIN" tunnel --accept 127.0.0.1:0 --connect 127.0.0.1:1 --tls-connect \
    --session-store redis://127.0.0.1:1 2>/dev/null

stop_bg "$TERM_PID" 15
[ "$STOPPED_STATUS" = 0 ] || fail "tunnel exited $STOPPED_STATUS after SIGTERM"
pass "SIGTERM: the tunnel exits 0 after ${STOPPED_MS} ms"
