#!/usr/bin/env bash
# (b) `openssl s_client` against `tlsock serve --echo`: the handshake is verified against the CA
#     from `tlsock cert` (chain and host name, failures fatal) and the echo comes back, over
#     TLS 1.3 and 1.2. Also: a silent TCP client and a plaintext client do not stop the server
#     from serving others; s_client refuses a wrong host name; `serve --client-ca` requires a
#     client certificate; `serve --once` exits with the outcome of its one connection; on every
#     implementation, an encrypted key with `--key-pass-file` (PKCS#8 PEM, and DER certificate
#     with encrypted DER key).
source "$(dirname "$0")/lib.sh"
need OPENSSL_BIN

make_certs "$WORK/certs" localhost,127.0.0.1
VERIFY=(-CAfile "$WORK/certs/ca.pem" -verify_hostname localhost -verify_return_error)

start_tlsock_serve serve --echo --cert "$WORK/certs/cert.pem" --key "$WORK/certs/key.pem" \
    --alpn echo/1 --verbose
SERVE_PID=$BG_PID

# A client that connects and never says anything holds one server thread until the handshake
# timeout; everything below must work meanwhile.
exec 4<>"/dev/tcp/127.0.0.1/$PORT"
# A client that speaks plaintext gets a handshake error, logged, and nothing else happens.
printf 'GET / HTTP/1.0\r\n\r\n' | "$TIMEOUT_BIN" 10 bash -c "cat >/dev/tcp/127.0.0.1/$PORT" ||
    true

status=0
s_client_echo s_client13 -connect "127.0.0.1:$PORT" -servername localhost "${VERIFY[@]}" \
    -alpn echo/1 || status=$?
[ "$status" = 0 ] || fail "s_client exited $status"
grep -q '^ALPN protocol: echo/1' "$WORK/s_client13.out" || fail "ALPN echo/1 not agreed"
grep -q 'TLSv1.3' "$WORK/s_client13.out" || fail "TLS 1.3 not negotiated"
grep -Eq '^ *Verify return code: 0 \(ok\)' "$WORK/s_client13.out" ||
    fail "s_client did not verify the server"
pass "openssl s_client -> tlsock serve --echo: TLS 1.3, verified (chain + host name), ALPN, echo"

status=0
s_client_echo s_client12 -connect "127.0.0.1:$PORT" -tls1_2 "${VERIFY[@]}" || status=$?
[ "$status" = 0 ] || fail "s_client -tls1_2 exited $status"
grep -q 'Protocol  *: TLSv1.2' "$WORK/s_client12.out" || fail "TLS 1.2 not negotiated"
grep -Eq '^ *Verify return code: 0 \(ok\)' "$WORK/s_client12.out" || fail "TLS 1.2: not verified"
pass "openssl s_client -tls1_2 -> tlsock serve --echo: verified, echo"

# The server logged the plaintext client's failure and the s_client sessions, and goes on.
wait_for "$WORK/serve.err" 'handshake: ' 10 >/dev/null
wait_for "$WORK/serve.err" 'TLSv1\.3 .* alpn=echo/1' 10 >/dev/null
kill -0 "$SERVE_PID" 2>/dev/null || fail "tlsock serve died"
pass "a silent and a plaintext client did not disturb the server"
exec 4>&-

# A name the certificate does not have: s_client must refuse (exit non-zero, verify error).
status=0
"$TIMEOUT_BIN" -k 5 30 "$OPENSSL_BIN" s_client -connect "127.0.0.1:$PORT" \
    -CAfile "$WORK/certs/ca.pem" -verify_hostname wrong.example -verify_return_error \
    </dev/null >"$WORK/s_client_wrong.out" 2>&1 || status=$?
[ "$status" != 0 ] || fail "s_client accepted a certificate for the wrong name"
grep -q 'hostname mismatch' "$WORK/s_client_wrong.out" || fail "no hostname mismatch reported"
pass "openssl s_client refuses the wrong host name (exit $status)"

# --client-ca: a client certificate from that CA is required and shown in the log.
make_certs "$WORK/client" client.example
start_tlsock_serve mtls --echo --cert "$WORK/certs/cert.pem" --key "$WORK/certs/key.pem" \
    --client-ca "$WORK/client/ca.pem" --verbose
status=0
s_client_echo s_client_mtls -connect "127.0.0.1:$PORT" "${VERIFY[@]}" \
    -cert "$WORK/client/cert.pem" -key "$WORK/client/key.pem" || status=$?
[ "$status" = 0 ] || fail "s_client with a client certificate exited $status"
wait_for "$WORK/mtls.err" 'client=.*CN=tlsock development server' 10 >/dev/null
"$TIMEOUT_BIN" -k 5 30 "$OPENSSL_BIN" s_client -connect "127.0.0.1:$PORT" "${VERIFY[@]}" \
    </dev/null >"$WORK/s_client_nocert.out" 2>&1 || true
wait_for "$WORK/mtls.err" 'handshake: ' 10 >/dev/null
pass "serve --client-ca: a client certificate is required and verified"

# serve --once: the exit status tells how the one connection went. A client that refuses the
# server's certificate sends an alert, which the server reports as a protocol error: exit 6.
make_certs "$WORK/other" localhost
start_tlsock_serve once --once --echo --cert "$WORK/certs/cert.pem" --key "$WORK/certs/key.pem"
ONCE_PID=$BG_PID
status=0
"$TIMEOUT_BIN" -k 5 30 "$OPENSSL_BIN" s_client -connect "127.0.0.1:$PORT" \
    -CAfile "$WORK/other/ca.pem" -verify_return_error </dev/null >"$WORK/s_client_once.out" 2>&1 ||
    status=$?
[ "$status" != 0 ] || fail "s_client trusted a server signed by another CA"
status=0
wait "$ONCE_PID" || status=$?
[ "$status" = 6 ] || fail "serve --once after a refused handshake exited $status, expected 6"
pass "serve --once exits 6 when the client refuses the handshake"

# --key-pass-file: encrypted keys made by the openssl tool, PEM and DER, served by each
# implementation and verified by s_client.
"$TIMEOUT_BIN" 30 "$OPENSSL_BIN" pkcs8 -topk8 -in "$WORK/certs/key.pem" -v2 aes-256-cbc \
    -passout file:/dev/stdin -out "$WORK/certs/key.enc.pem" <<<"a passphrase with spaces" ||
    fail "openssl pkcs8 failed"
"$TIMEOUT_BIN" 30 "$OPENSSL_BIN" pkcs8 -topk8 -in "$WORK/certs/key.pem" -v2 aes-256-cbc \
    -outform DER -passout file:/dev/stdin -out "$WORK/certs/key.enc.der" \
    <<<"a passphrase with spaces" || fail "openssl pkcs8 -outform DER failed"
"$TIMEOUT_BIN" 30 "$OPENSSL_BIN" x509 -in "$WORK/certs/cert.pem" -outform DER \
    -out "$WORK/certs/cert.der" || fail "openssl x509 -outform DER failed"
printf 'a passphrase with spaces\r\nsecond line ignored\n' >"$WORK/certs/key.pass"
IMPLS=$("$TIMEOUT_BIN" 10 "$TLSOCK_BIN" version | awk 'NR > 1 && !/not compiled in/ {print $1}')
for impl in $IMPLS; do
    for form in pem der; do
        cert=$WORK/certs/cert.pem
        [ "$form" = der ] && cert=$WORK/certs/cert.der
        start_tlsock_serve "enc-$impl-$form" --impl "$impl" --echo --cert "$cert" \
            --key "$WORK/certs/key.enc.$form" --key-pass-file "$WORK/certs/key.pass"
        status=0
        s_client_echo "s_client_enc_${impl}_${form}" -connect "127.0.0.1:$PORT" "${VERIFY[@]}" ||
            status=$?
        [ "$status" = 0 ] || fail "$impl, $form: s_client exited $status"
        grep -Eq '^ *Verify return code: 0 \(ok\)' "$WORK/s_client_enc_${impl}_${form}.out" ||
            fail "$impl, $form: s_client did not verify the server"
        stop_bg "$BG_PID" 10
        pass "serve --impl $impl, encrypted $form key with --key-pass-file: verified, echo"
    done
done

# examples/encrypted_key_server: the passphrase from a file through the callback, the encrypted
# key and a PKCS#12 bundle, with each implementation; it serves one client and exits 0.
"$TIMEOUT_BIN" 30 "$OPENSSL_BIN" pkcs12 -export -in "$WORK/certs/cert.pem" \
    -inkey "$WORK/certs/key.pem" -passout "pass:a passphrase with spaces" -keypbe AES-256-CBC \
    -certpbe AES-256-CBC -macalg sha256 -out "$WORK/certs/bundle.p12" ||
    fail "openssl pkcs12 -export failed"
if [ -n "${ENCRYPTED_KEY_SERVER_BIN:-}" ]; then
    for impl in $IMPLS; do
        for identity in key bundle; do
            files=("$WORK/certs/cert.pem" "$WORK/certs/key.enc.pem")
            [ "$identity" = bundle ] && files=("$WORK/certs/bundle.p12")
            start_bg "example-$impl-$identity" env TLSOCK_IMPL="$impl" \
                "$ENCRYPTED_KEY_SERVER_BIN" 0 "${files[@]}" "$WORK/certs/key.pass"
            EXAMPLE_PID=$BG_PID
            line=$(wait_for "$WORK/example-$impl-$identity.out" '^listening on port ' 10)
            PORT=${line##* }
            status=0
            s_client_echo "s_client_example_${impl}_$identity" -connect "127.0.0.1:$PORT" \
                "${VERIFY[@]}" || status=$?
            [ "$status" = 0 ] || fail "example, $impl, $identity: s_client exited $status"
            status=0
            wait "$EXAMPLE_PID" || status=$?
            [ "$status" = 0 ] || fail "example, $impl, $identity: exited $status"
            pass "examples/encrypted_key_server ($impl, $identity): verified, echo, exit 0"
        done
    done
fi
