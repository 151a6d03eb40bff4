#!/usr/bin/env bash
# The libuv examples keep working: examples/async_echo_server with each TLS implementation
# (TLSOCK_IMPL), answered by examples/async_client with each implementation, by openssl s_client
# and by gnutls-cli, every client verifying the server against the CA the server printed; then
# SIGTERM ends the server with status 0. The same server with -t 2 (two loops sharing one
# listener) echoes to several clients held open at once, and stops on SIGTERM.
source "$(dirname "$0")/lib.sh"
if [ -z "${ASYNC_ECHO_SERVER_BIN:-}" ] || [ ! -x "$ASYNC_ECHO_SERVER_BIN" ] ||
    [ -z "${ASYNC_CLIENT_BIN:-}" ] || [ ! -x "$ASYNC_CLIENT_BIN" ]; then
    fail "the async examples are not built (ASYNC_ECHO_SERVER_BIN, ASYNC_CLIENT_BIN)"
fi

# Implementations compiled in, from `tlsock version` ("openssl 3.0..." or "... not compiled in").
IMPLS=()
for impl in openssl gnutls; do
    if "$TLSOCK_BIN" version | grep -E "^ *$impl " | grep -vq 'not compiled in'; then
        IMPLS+=("$impl")
    fi
done
[ "${#IMPLS[@]}" -gt 0 ] || fail "tlsock version lists no implementation"

for server_impl in "${IMPLS[@]}"; do
    name="server_$server_impl"
    TLSOCK_IMPL=$server_impl start_bg "$name" "$ASYNC_ECHO_SERVER_BIN" 0
    SERVER_PID=$BG_PID
    line=$(wait_for "$WORK/$name.err" 'listening on port [0-9]+' 10)
    port=$(sed -E 's/.*port ([0-9]+).*/\1/' <<<"$line")
    grep -q "($server_impl)" <<<"$line" || fail "server does not run on $server_impl: $line"
    wait_for "$WORK/$name.out" 'END CERTIFICATE' 10 >/dev/null
    cp "$WORK/$name.out" "$WORK/ca_$server_impl.pem"

    for client_impl in "${IMPLS[@]}"; do
        message="async $client_impl to $server_impl $$ $RANDOM"
        status=0
        TLSOCK_IMPL=$client_impl "$TIMEOUT_BIN" -k 5 30 "$ASYNC_CLIENT_BIN" localhost "$port" \
            "$message" "$WORK/ca_$server_impl.pem" >"$WORK/client.out" 2>"$WORK/client.err" ||
            status=$?
        [ "$status" = 0 ] || fail "async_client ($client_impl) exited $status: $(cat "$WORK/client.err")"
        [ "$(cat "$WORK/client.out")" = "$message" ] || fail "echo differs: $(cat "$WORK/client.out")"
        grep -q "connecting with $client_impl" "$WORK/client.err" ||
            fail "the client did not use $client_impl"
        pass "async_client ($client_impl) -> async_echo_server ($server_impl): verified, echoed"
    done

    # A client that trusts another CA is refused, and the server goes on.
    make_certs "$WORK/other" localhost
    status=0
    "$TIMEOUT_BIN" -k 5 30 "$ASYNC_CLIENT_BIN" localhost "$port" "x" "$WORK/other/ca.pem" \
        >/dev/null 2>"$WORK/refused.err" || status=$?
    [ "$status" = 1 ] || fail "async_client trusted a server signed by another CA (exit $status)"
    grep -q 'certificate verification failed' "$WORK/refused.err" ||
        fail "no verification failure reported: $(cat "$WORK/refused.err")"
    pass "async_client refuses a server signed by another CA"

    if [ -n "${OPENSSL_BIN:-}" ] && [ -x "$OPENSSL_BIN" ]; then
        status=0
        s_client_echo "s_client_$server_impl" -connect "127.0.0.1:$port" -servername localhost \
            -CAfile "$WORK/ca_$server_impl.pem" -verify_hostname localhost \
            -verify_return_error || status=$?
        [ "$status" = 0 ] || fail "s_client exited $status"
        pass "openssl s_client -> async_echo_server ($server_impl): verified, echoed"
    fi
    if [ -n "${GNUTLS_CLI_BIN:-}" ] && [ -x "$GNUTLS_CLI_BIN" ]; then
        status=0
        gnutls_cli_echo "gnutls_cli_$server_impl" "$port" "$WORK/ca_$server_impl.pem" || status=$?
        [ "$status" = 0 ] || fail "gnutls-cli exited $status"
        pass "gnutls-cli -> async_echo_server ($server_impl): verified, echoed"
    fi

    stop_bg "$SERVER_PID" 10
    [ "$STOPPED_STATUS" = 0 ] || fail "async_echo_server exited $STOPPED_STATUS after SIGTERM"
    pass "async_echo_server ($server_impl) stops on SIGTERM (exit 0)"
done

# -t 2: the second loop shares the first one's listener (tlsock_uv_serve_shared()). Clients held
# open at once spread over both loops (the library's test_uv_threads checks the choice); each
# one must get its echo.
start_bg threads "$ASYNC_ECHO_SERVER_BIN" -t 2 0
SERVER_PID=$BG_PID
line=$(wait_for "$WORK/threads.err" 'listening on port [0-9]+' 10)
port=$(sed -E 's/.*port ([0-9]+).*/\1/' <<<"$line")
grep -q ' on 2 threads$' <<<"$line" || fail "async_echo_server -t 2 does not run 2 threads: $line"
wait_for "$WORK/threads.out" 'END CERTIFICATE' 10 >/dev/null
[ "$(listeners_on "$port")" = 1 ] || fail "async_echo_server -t 2: expected one listening socket"
[ -n "${OPENSSL_BIN:-}" ] && [ -x "$OPENSSL_BIN" ] || fail "openssl is needed for the -t 2 check"
for i in 1 2 3 4; do
    hold_s_client "held$i" -connect "127.0.0.1:$port" -quiet -no_ign_eof \
        -CAfile "$WORK/threads.out" -verify_return_error
    echo "held $i $$" >&"$HELD_FD"
    wait_for "$WORK/held$i.out" "^held $i $$\$" 10 >/dev/null
done
release_s_clients "async_echo_server -t 2"
pass "async_echo_server -t 2: one listener, 4 clients held open at once all echoed"
stop_bg "$SERVER_PID" 10
[ "$STOPPED_STATUS" = 0 ] || fail "async_echo_server -t 2 exited $STOPPED_STATUS after SIGTERM"
pass "async_echo_server -t 2 stops on SIGTERM (exit 0)"
