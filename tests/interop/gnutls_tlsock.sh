#!/usr/bin/env bash
# GnuTLS peers: gnutls-cli against `tlsock serve --echo` (verified, echo), and
# `tlsock connect` against gnutls-serv --echo. Skipped when gnutls-bin is not installed.
source "$(dirname "$0")/lib.sh"
need GNUTLS_CLI_BIN GNUTLS_SERV_BIN
command -v python3 >/dev/null 2>&1 || skip "python3 is needed to pick a port for gnutls-serv"

make_certs "$WORK/certs" localhost,127.0.0.1
start_tlsock_serve serve --echo --cert "$WORK/certs/cert.pem" --key "$WORK/certs/key.pem"

# gnutls-cli verifies against --x509cafile and the host name by default; its stdin comes from
# a FIFO so that it ends only after the echo has come back.
mkfifo "$WORK/gnutls_cli.in"
"$TIMEOUT_BIN" -k 5 30 "$GNUTLS_CLI_BIN" --x509cafile "$WORK/certs/ca.pem" -p "$PORT" localhost \
    <"$WORK/gnutls_cli.in" >"$WORK/gnutls_cli.out" 2>"$WORK/gnutls_cli.err" &
CLIENT_PID=$!
BG_PIDS+=("$CLIENT_PID")
exec 3>"$WORK/gnutls_cli.in"
token="gnutls-echo-$$-$RANDOM"
echo "$token" >&3
wait_for "$WORK/gnutls_cli.out" "$token" 10 >/dev/null
exec 3>&-
status=0
wait "$CLIENT_PID" || status=$?
[ "$status" = 0 ] || fail "gnutls-cli exited $status"
grep -q 'Status: The certificate is trusted' "$WORK/gnutls_cli.out" ||
    fail "gnutls-cli did not verify the server"
pass "gnutls-cli -> tlsock serve --echo: verified, echo"

# gnutls-serv needs a port chosen in advance: take one the kernel just handed out and retry if
# someone else grabs it meanwhile.
started=0
for attempt in 1 2 3 4 5; do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    start_bg "gnutls_serv$attempt" "$GNUTLS_SERV_BIN" --echo --x509certfile "$WORK/certs/cert.pem" \
        --x509keyfile "$WORK/certs/key.pem" -p "$port"
    for _ in $(seq 1 100); do
        if (exec 5<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            started=1
            break
        fi
        kill -0 "$BG_PID" 2>/dev/null || break
        sleep 0.05
    done
    [ "$started" = 1 ] && break
done
[ "$started" = 1 ] || fail "gnutls-serv did not start"

printf 'hello gnutls\n' >"$WORK/input"
status=0
"$TIMEOUT_BIN" -k 5 30 "$TLSOCK_BIN" connect "localhost:$port" --ca "$WORK/certs/ca.pem" \
    --timeout 10000 <"$WORK/input" >"$WORK/connect.out" 2>"$WORK/connect.err" || status=$?
[ "$status" = 0 ] || fail "tlsock connect to gnutls-serv exited $status"
grep -qx 'hello gnutls' "$WORK/connect.out" || fail "no echo from gnutls-serv"
grep -Eq '^  verify +ok$' "$WORK/connect.err" || fail "gnutls-serv not verified"
pass "tlsock connect -> gnutls-serv --echo: verified, echo"
