#!/usr/bin/env bash
# `tlsock serve --threads 2` on the libuv driver: two event loops sharing loop 0's listening
# socket, which gives each client to the loop with fewer connections (the library's test_uv_threads
# checks the choice). openssl s_client and gnutls-cli get their echo,
# verified, several times over; curl gets the HTTP page from `serve --http --threads 2`; a client
# that writes far more than the kernel can buffer before it reads gets all of it back intact and
# was slowed down meanwhile (backpressure); SIGTERM stops the server, with a client connected,
# with exit status 0.
source "$(dirname "$0")/lib.sh"
need OPENSSL_BIN

make_certs "$WORK/certs" localhost,127.0.0.1
CERT=(--cert "$WORK/certs/cert.pem" --key "$WORK/certs/key.pem")
VERIFY=(-CAfile "$WORK/certs/ca.pem" -verify_hostname localhost -verify_return_error)

start_tlsock_serve serve --threads 2 --echo "${CERT[@]}" --verbose
SERVE_PID=$BG_PID
listeners=$(listeners_on "$PORT")
[ "$listeners" = 1 ] || fail "expected 1 socket listening on port $PORT, found $listeners"
pass "serve --threads 2: one listening socket on port $PORT"

for i in 1 2 3 4; do
    status=0
    s_client_echo "s_client$i" -connect "127.0.0.1:$PORT" -servername localhost "${VERIFY[@]}" ||
        status=$?
    [ "$status" = 0 ] || fail "s_client $i exited $status"
    grep -Eq '^ *Verify return code: 0 \(ok\)' "$WORK/s_client$i.out" ||
        fail "s_client $i did not verify the server"
done
pass "openssl s_client -> serve --threads 2 --echo: 4 sessions verified and echoed"

if [ -n "${GNUTLS_CLI_BIN:-}" ] && [ -x "$GNUTLS_CLI_BIN" ]; then
    for i in 1 2; do
        status=0
        gnutls_cli_echo "gnutls_cli$i" "$PORT" "$WORK/certs/ca.pem" || status=$?
        [ "$status" = 0 ] || fail "gnutls-cli $i exited $status"
    done
    pass "gnutls-cli -> serve --threads 2 --echo: 2 sessions verified and echoed"
else
    echo "SKIP: gnutls-cli is not available"
fi

if [ -n "${PYTHON3_BIN:-}" ] && [ -x "$PYTHON3_BIN" ]; then
    status=0
    "$TIMEOUT_BIN" -k 5 50 "$PYTHON3_BIN" "$(dirname "$0")/bulk_echo_client.py" "$PORT" \
        "$WORK/certs/ca.pem" >"$WORK/bulk.out" 2>&1 || status=$?
    [ "$status" = 0 ] || fail "bulk echo: $(cat "$WORK/bulk.out")"
    pass "$(cat "$WORK/bulk.out")"
else
    echo "SKIP: python3 is not available for the backpressure check"
fi

# Every session above ended with the client's close_notify: nothing was logged as an error.
if grep -E 'tlsock: .*: (read|write|handshake): ' "$WORK/serve.err"; then
    fail "the server logged errors"
fi

# A client still connected when SIGTERM comes: after the grace period the server closes it
# (close_notify) and exits 0.
connected=$(grep -c ': connected$' "$WORK/serve.err" || true)
mkfifo "$WORK/idle.in"
"$TIMEOUT_BIN" -k 5 30 "$OPENSSL_BIN" s_client -connect "127.0.0.1:$PORT" "${VERIFY[@]}" \
    <"$WORK/idle.in" >"$WORK/idle.out" 2>&1 &
IDLE_PID=$!
BG_PIDS+=("$IDLE_PID")
exec 3>"$WORK/idle.in"
for _ in $(seq 1 200); do
    [ "$(grep -c ': connected$' "$WORK/serve.err")" -gt "$connected" ] && break
    sleep 0.05
done
[ "$(grep -c ': connected$' "$WORK/serve.err")" -gt "$connected" ] ||
    fail "the idle client did not connect"
stop_bg "$SERVE_PID" 15
[ "$STOPPED_STATUS" = 0 ] || fail "serve exited $STOPPED_STATUS after SIGTERM"
[ "$STOPPED_MS" -lt 10000 ] || fail "serve took ${STOPPED_MS} ms to stop"
exec 3>&-
pass "SIGTERM with a client connected: serve closed it and exited 0 after ${STOPPED_MS} ms"

# HTTP mode on two loops: curl, verified.
if [ -n "${CURL_BIN:-}" ] && [ -x "$CURL_BIN" ]; then
    start_tlsock_serve http --threads 2 --http "${CERT[@]}"
    for i in 1 2 3; do
        body=$("$TIMEOUT_BIN" -k 5 30 "$CURL_BIN" --silent --show-error --max-time 20 \
            --resolve "localhost:$PORT:127.0.0.1" --cacert "$WORK/certs/ca.pem" \
            "https://localhost:$PORT/$i") || fail "curl $i failed"
        [ "$body" = "hello from tlsock" ] || fail "curl $i: unexpected body '$body'"
    done
    pass "curl --cacert -> serve --threads 2 --http: 3 requests answered"
else
    echo "SKIP: curl is not available"
fi
