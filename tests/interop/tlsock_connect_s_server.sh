#!/usr/bin/env bash
# (a) `tlsock connect` against `openssl s_server`, with a certificate from `tlsock cert`:
#     verified session, ALPN agreed, data both ways, clean close; TLS 1.2; client certificates.
# (d) negative: a wrong --servername, an untrusted CA and the system store all exit 3, with the
#     reason said once; a TLS 1.1-only server exits 6 with the flags that allow it; a silent
#     server exits 4 with --timeout; a closed port exits 5.
source "$(dirname "$0")/lib.sh"
need OPENSSL_BIN

make_certs "$WORK/certs" localhost,127.0.0.1
make_certs "$WORK/other" localhost,127.0.0.1

# -rev: s_server sends every line back reversed, so the answer proves a round trip.
start_s_server s_server -cert "$WORK/certs/cert.pem" -key "$WORK/certs/key.pem" -rev \
    -alpn demo/1
SERVER_PORT=$PORT
SERVER_PID=$BG_PID

# (a) the positive case.
printf 'hello interop\nsecond line\n' >"$WORK/input"
status=0
"$TIMEOUT_BIN" -k 5 30 "$TLSOCK_BIN" connect "localhost:$SERVER_PORT" --ca "$WORK/certs/ca.pem" \
    --alpn demo/1 --timeout 10000 <"$WORK/input" >"$WORK/connect.out" 2>"$WORK/connect.err" ||
    status=$?
[ "$status" = 0 ] || fail "tlsock connect exited $status"
grep -qx 'poretni olleh' "$WORK/connect.out" || fail "no reversed first line from s_server"
grep -qx 'enil dnoces' "$WORK/connect.out" || fail "no reversed second line from s_server"
grep -Eq '^  verify +ok$' "$WORK/connect.err" || fail "summary does not say verify ok"
grep -Eq '^  ALPN +demo/1$' "$WORK/connect.err" || fail "summary does not show ALPN demo/1"
grep -Eq '^  version +TLSv1\.[23]$' "$WORK/connect.err" || fail "summary has no version"
pass "tlsock connect <-> openssl s_server: verified, ALPN demo/1, data reversed and returned"

# The same over TLS 1.2 only, to an IP address with the name given separately.
status=0
"$TIMEOUT_BIN" -k 5 30 "$TLSOCK_BIN" connect "127.0.0.1:$SERVER_PORT" --servername localhost \
    --ca "$WORK/certs/ca.pem" --tls 1.2-1.2 --timeout 10000 <"$WORK/input" \
    >"$WORK/connect12.out" 2>"$WORK/connect12.err" || status=$?
[ "$status" = 0 ] || fail "tlsock connect --tls 1.2-1.2 exited $status"
grep -Eq '^  version +TLSv1\.2$' "$WORK/connect12.err" || fail "TLS 1.2 was not negotiated"
grep -qx 'poretni olleh' "$WORK/connect12.out" || fail "no data over TLS 1.2"
pass "tlsock connect --tls 1.2-1.2 --servername localhost to 127.0.0.1"

# (d) verification failures: exit status 3, with the reason on stderr.
expect_status 3 "wrong --servername is refused" \
    "$TLSOCK_BIN" connect "127.0.0.1:$SERVER_PORT" --ca "$WORK/certs/ca.pem" \
    --servername wrong.example --quiet --timeout 10000 </dev/null 2>"$WORK/wrongname.err"
grep -q 'certificate verification failed: hostname mismatch: expected wrong.example, the certificate names DNS:localhost' "$WORK/wrongname.err" ||
    fail "no verification message for the wrong name"
# The reason follows the error's name once, not "verification failed: certificate verify failed".
[ "$(grep -o -i 'verif' "$WORK/wrongname.err" | wc -l)" = 1 ] ||
    fail "the verification failure repeats itself: $(cat "$WORK/wrongname.err")"
expect_status 3 "a certificate from an untrusted CA is refused" \
    "$TLSOCK_BIN" connect "localhost:$SERVER_PORT" --ca "$WORK/other/ca.pem" --quiet \
    --timeout 10000 </dev/null 2>"$WORK/untrusted.err"
expect_status 3 "the system store does not trust a development CA" \
    "$TLSOCK_BIN" connect "localhost:$SERVER_PORT" --quiet --timeout 10000 </dev/null \
    2>"$WORK/system.err"
# s_server must still be there: the refused clients did not break it.
kill -0 "$SERVER_PID" 2>/dev/null || fail "s_server died"

# A server that only speaks TLS 1.1: refused by default, with the flags that would allow it,
# which then do, on every implementation.
start_s_server s_server_old -cert "$WORK/certs/cert.pem" -key "$WORK/certs/key.pem" -rev \
    -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0'
OLD_PORT=$PORT
for impl in openssl gnutls; do
    "$TLSOCK_BIN" version | grep -E "^ *$impl " | grep -vq 'not compiled in' || continue
    expect_status 6 "$impl: a TLS 1.1-only server is refused by default" \
        "$TLSOCK_BIN" connect "localhost:$OLD_PORT" --impl "$impl" --ca "$WORK/certs/ca.pem" \
        --quiet --timeout 10000 </dev/null 2>"$WORK/old_$impl.err"
    grep -q 'protocol_version (70); the server only speaks TLS 1.0/1.1: allow them with --tls 1.0 --ciphers legacy$' \
        "$WORK/old_$impl.err" || fail "$impl: no hint naming --tls and --ciphers legacy"
    status=0
    "$TIMEOUT_BIN" -k 5 30 "$TLSOCK_BIN" connect "localhost:$OLD_PORT" --impl "$impl" \
        --ca "$WORK/certs/ca.pem" --tls 1.0 --ciphers legacy --timeout 10000 <"$WORK/input" \
        >"$WORK/old_$impl.out" 2>"$WORK/old_$impl.err" || status=$?
    [ "$status" = 0 ] || fail "$impl: --tls 1.0 --ciphers legacy exited $status"
    grep -Eq '^  version +TLSv1\.1$' "$WORK/old_$impl.err" || fail "$impl: TLS 1.1 was not used"
    grep -qx 'poretni olleh' "$WORK/old_$impl.out" || fail "$impl: no data over TLS 1.1"
    pass "$impl: tlsock connect --tls 1.0 --ciphers legacy to a TLS 1.1-only s_server"
done

# Client certificates: an s_server that requires one signed by the "client" CA.
make_certs "$WORK/client" client.example
start_s_server s_server_mtls -cert "$WORK/certs/cert.pem" -key "$WORK/certs/key.pem" -rev \
    -Verify 1 -verify_return_error -CAfile "$WORK/client/ca.pem"
MTLS_PORT=$PORT
status=0
"$TIMEOUT_BIN" -k 5 30 "$TLSOCK_BIN" connect "localhost:$MTLS_PORT" --ca "$WORK/certs/ca.pem" \
    --cert "$WORK/client/cert.pem" --key "$WORK/client/key.pem" --quiet --timeout 10000 \
    <"$WORK/input" >"$WORK/mtls.out" 2>"$WORK/mtls.err" || status=$?
[ "$status" = 0 ] || fail "tlsock connect with a client certificate exited $status"
grep -qx 'poretni olleh' "$WORK/mtls.out" || fail "no data with a client certificate"
pass "tlsock connect --cert/--key to an s_server that requires a client certificate"
# Without a certificate the server refuses with an alert (TLS 1.3: after the handshake, so it
# surfaces on the first read): a TLS protocol error, exit 6.
expect_status 6 "no client certificate: the server's alert is a protocol error" \
    "$TLSOCK_BIN" connect "localhost:$MTLS_PORT" --ca "$WORK/certs/ca.pem" --quiet \
    --timeout 10000 <"$WORK/input" 2>"$WORK/nocert.err"
grep -q 'alert' "$WORK/nocert.err" || fail "no alert reported without a client certificate"

# Usage and configuration errors.
expect_status 1 "a HOST without a port is a usage error" "$TLSOCK_BIN" connect localhost \
    2>/dev/null
expect_status 2 "a missing CA file is a configuration error" \
    "$TLSOCK_BIN" connect "localhost:$SERVER_PORT" --ca "$WORK/nonexistent.pem" </dev/null \
    2>/dev/null

# A server that accepts TCP but never speaks TLS: the handshake timeout gives exit 4.
if command -v python3 >/dev/null 2>&1; then
    start_bg silent python3 -c '
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(4)
print("listening on 127.0.0.1:%d" % s.getsockname()[1], flush=True)
conns = []
while True:
    c, _ = s.accept()
    conns.append(c)
'
    line=$(wait_for "$WORK/silent.out" '^listening on ' 10)
    expect_status 4 "a silent server times out with --timeout" \
        "$TLSOCK_BIN" connect "127.0.0.1:${line##*:}" --insecure --quiet --timeout 500 \
        </dev/null 2>/dev/null
fi

# A port nobody listens on any more (s_server's, once stopped): a network error, exit 5.
kill -TERM "$SERVER_PID" 2>/dev/null || true
for _ in $(seq 1 50); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
done
expect_status 5 "a closed port is a network error" \
    "$TLSOCK_BIN" connect "127.0.0.1:$SERVER_PORT" --quiet --timeout 5000 </dev/null 2>/dev/null
