#!/usr/bin/env bash
# `tlsock connect --starttls smtp` against a small SMTP server written with Python's standard
# library (smtp_starttls_server.py: socket + ssl, certificate from `tlsock cert`): the plaintext
# preamble with multi-line replies sent in small pieces, then a verified TLS session that
# exchanges a line and closes cleanly. Negative: no STARTTLS in the EHLO reply and a refused
# STARTTLS exit 6 with the server's reply in the message; a wrong name exits 3; a server that
# never greets exits 4 within the --timeout; an unknown protocol is a usage error.
source "$(dirname "$0")/lib.sh"
need PYTHON3_BIN

SMTP_SERVER="$(dirname "$0")/smtp_starttls_server.py"
make_certs "$WORK/certs" localhost,127.0.0.1
make_certs "$WORK/other" localhost,127.0.0.1

# start_smtp NAME MODE: starts the server in MODE and sets PORT.
start_smtp() {
    local line
    start_bg "$1" "$PYTHON3_BIN" "$SMTP_SERVER" "$WORK/certs/cert.pem" "$WORK/certs/key.pem" "$2"
    line=$(wait_for "$WORK/$1.out" '^listening on ' 10)
    PORT=${line##*:}
}

# The positive case, by name and by address (the certificate names both).
start_smtp smtp_ok ok
for host in localhost 127.0.0.1; do
    status=0
    echo "hello over starttls" | "$TIMEOUT_BIN" -k 5 30 "$TLSOCK_BIN" connect "$host:$PORT" \
        --starttls smtp --ca "$WORK/certs/ca.pem" --timeout 10000 \
        >"$WORK/ok_$host.out" 2>"$WORK/ok_$host.err" || status=$?
    [ "$status" = 0 ] || fail "connect --starttls smtp to $host exited $status"
    grep -qx 'echo: hello over starttls' "$WORK/ok_$host.out" || fail "no echo over TLS ($host)"
    grep -Eq '^  verify +ok$' "$WORK/ok_$host.err" || fail "summary does not say verify ok ($host)"
    pass "tlsock connect --starttls smtp $host: preamble, verified TLS, data both ways"
done
wait_for "$WORK/smtp_ok.err" '^tls closed cleanly' 10 >/dev/null
pass "the SMTP server saw close_notify"

# Verification still applies after STARTTLS.
expect_status 3 "starttls: a wrong --servername is refused" \
    "$TLSOCK_BIN" connect "127.0.0.1:$PORT" --starttls smtp --ca "$WORK/certs/ca.pem" \
    --servername wrong.example --quiet --timeout 10000 </dev/null 2>"$WORK/wrongname.err"
expect_status 3 "starttls: a certificate from an untrusted CA is refused" \
    "$TLSOCK_BIN" connect "localhost:$PORT" --starttls smtp --ca "$WORK/other/ca.pem" \
    --quiet --timeout 10000 </dev/null 2>"$WORK/untrusted.err"

# Protocol errors in the preamble: exit 6, with what the server said.
start_smtp smtp_no_tls no-starttls
expect_status 6 "starttls: a server that does not offer STARTTLS" \
    "$TLSOCK_BIN" connect "localhost:$PORT" --starttls smtp --ca "$WORK/certs/ca.pem" \
    --quiet --timeout 10000 </dev/null 2>"$WORK/no_tls.err"
grep -q 'does not offer STARTTLS.*250 8BITMIME' "$WORK/no_tls.err" ||
    fail "the message does not show the EHLO reply"

start_smtp smtp_refuse refuse
expect_status 6 "starttls: STARTTLS answered with 454" \
    "$TLSOCK_BIN" connect "localhost:$PORT" --starttls smtp --ca "$WORK/certs/ca.pem" \
    --quiet --timeout 10000 </dev/null 2>"$WORK/refuse.err"
grep -q '454 4.7.0 TLS not available' "$WORK/refuse.err" ||
    fail "the message does not show the 454 reply"

# A server that never greets: the whole preamble is bounded by --timeout.
start_smtp smtp_silent silent
start_ns=$(date +%s%N)
expect_status 4 "starttls: a server that never greets times out" \
    "$TLSOCK_BIN" connect "localhost:$PORT" --starttls smtp --ca "$WORK/certs/ca.pem" \
    --quiet --timeout 500 </dev/null 2>"$WORK/silent.err"
elapsed_ms=$((($(date +%s%N) - start_ns) / 1000000))
[ "$elapsed_ms" -lt 5000 ] || fail "the preamble timeout took ${elapsed_ms} ms"
grep -q 'timed out' "$WORK/silent.err" || fail "no timeout message"
pass "the silent greeting ended after ${elapsed_ms} ms"

expect_status 1 "--starttls with an unknown protocol is a usage error" \
    "$TLSOCK_BIN" connect "localhost:$PORT" --starttls imap </dev/null 2>/dev/null
