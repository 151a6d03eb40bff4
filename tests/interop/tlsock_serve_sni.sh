#!/usr/bin/env bash
# Several certificates on the serving commands: `tlsock serve` and `tlsock tunnel` with --cert and
# --key twice (a.example and b.example, each from its own CA), on every implementation:
# (a) openssl s_client -servername a.example / b.example verifies the chain and the name of the
#     matching certificate (the other one's CA and name would fail), and a client without SNI or
#     with an unknown name gets the first one, the default;
# (b) curl --resolve b.example:PORT through `tunnel` to python3's http.server, verified against
#     b.example's CA, and a.example's CA refuses it;
# (c) usage errors: --key before any --cert, two --key for one --cert, two --cert on connect;
# (d) examples/two_names_server on every implementation: a.example, b.example and no SNI as in
#     (a); its SNI callback refuses x.invalid, which s_client sees as an unrecognized_name alert.
source "$(dirname "$0")/lib.sh"
need OPENSSL_BIN CURL_BIN PYTHON3_BIN

make_certs "$WORK/a" a.example
make_certs "$WORK/b" b.example
TWO=(--cert "$WORK/a/cert.pem" --key "$WORK/a/key.pem" --cert "$WORK/b/cert.pem"
    --key "$WORK/b/key.pem")

# s_client_verifies NAME DIR HOST ARGS...: s_client verifies the server against DIR's CA and HOST.
s_client_verifies() {
    local name=$1
    local dir=$2
    local host=$3
    shift 3
    local status=0
    s_client_echo "$name" -connect "127.0.0.1:$PORT" -CAfile "$dir/ca.pem" -verify_hostname "$host" \
        -verify_return_error "$@" || status=$?
    [ "$status" = 0 ] || fail "$name: s_client exited $status"
    grep -Eq '^ *Verify return code: 0 \(ok\)' "$WORK/$name.out" || fail "$name: not verified"
}

# The implementations compiled in, from `tlsock version` (one line each after the first).
IMPLS=$("$TLSOCK_BIN" version | awk 'NR > 1 && !/not compiled in/ { print $1 }')
[ -n "$IMPLS" ] || fail "tlsock version lists no implementation"
for impl in $IMPLS; do
    start_tlsock_serve "serve-$impl" --impl "$impl" --echo "${TWO[@]}"
    s_client_verifies "a-$impl" "$WORK/a" a.example -servername a.example
    s_client_verifies "b-$impl" "$WORK/b" b.example -servername b.example
    s_client_verifies "none-$impl" "$WORK/a" a.example -noservername
    s_client_verifies "unknown-$impl" "$WORK/a" a.example -servername c.example
    # The other certificate is really not the one presented: b's CA refuses a.example's.
    status=0
    "$TIMEOUT_BIN" -k 5 30 "$OPENSSL_BIN" s_client -connect "127.0.0.1:$PORT" \
        -servername a.example -CAfile "$WORK/b/ca.pem" -verify_return_error \
        </dev/null >"$WORK/cross-$impl.out" 2>&1 || status=$?
    [ "$status" != 0 ] || fail "$impl: b.example's CA accepted the certificate sent for a.example"
    stop_bg "$BG_PID" 10
    pass "$impl: serve with two --cert/--key: SNI a.example and b.example each get their own" \
        "certificate; no SNI and an unknown name get the first"
done

# (b) tunnel: TLS termination with two names in front of python3 -m http.server.
mkdir -p "$WORK/www"
echo "hello b.example" >"$WORK/www/hello.txt"
start_bg http "$PYTHON3_BIN" -u -m http.server 0 --bind 127.0.0.1 --directory "$WORK/www"
line=$(wait_for "$WORK/http.out" 'port [0-9]+' 10)
HTTP_PORT=$(sed -E 's/.*port ([0-9]+).*/\1/' <<<"$line")
start_tlsock term tunnel --accept 127.0.0.1:0 --connect "127.0.0.1:$HTTP_PORT" "${TWO[@]}"
CURL=("$TIMEOUT_BIN" -k 5 30 "$CURL_BIN" --silent --show-error --max-time 20
    --resolve "b.example:$PORT:127.0.0.1" --resolve "a.example:$PORT:127.0.0.1")
body=$("${CURL[@]}" --cacert "$WORK/b/ca.pem" "https://b.example:$PORT/hello.txt") ||
    fail "curl https://b.example through the tunnel"
[ "$body" = "hello b.example" ] || fail "unexpected body '$body'"
status=0
"${CURL[@]}" --cacert "$WORK/a/ca.pem" "https://b.example:$PORT/hello.txt" \
    >"$WORK/curl-cross.out" 2>&1 || status=$?
[ "$status" != 0 ] || fail "a.example's CA accepted the certificate sent for b.example"
"${CURL[@]}" --cacert "$WORK/a/ca.pem" "https://a.example:$PORT/hello.txt" >/dev/null ||
    fail "curl https://a.example through the tunnel"
pass "curl --resolve -> tunnel with two --cert/--key: each name verified against its own CA"

# (c) usage errors exit 1 and say why.
expect_status 1 "--key before any --cert" "$TLSOCK_BIN" serve --key "$WORK/a/key.pem"
expect_status 1 "two --key for one --cert" "$TLSOCK_BIN" serve --cert "$WORK/a/cert.pem" \
    --key "$WORK/a/key.pem" --key "$WORK/b/key.pem"
expect_status 1 "two --cert on connect" "$TLSOCK_BIN" connect "${TWO[@]}" 127.0.0.1:1
"$TLSOCK_BIN" serve --cert "$WORK/a/cert.pem" --key "$WORK/a/key.pem" --key "$WORK/b/key.pem" \
    2>"$WORK/usage.err" || true
grep -q 'one --key per --cert' "$WORK/usage.err" || fail "no reason for two --key"

# (d) examples/two_names_server: four clients, then it exits 0.
if [ -n "${TWO_NAMES_SERVER_BIN:-}" ]; then
    for impl in $IMPLS; do
        start_bg "example-$impl" env TLSOCK_IMPL="$impl" "$TWO_NAMES_SERVER_BIN" 0 \
            "$WORK/a/cert.pem" "$WORK/a/key.pem" "$WORK/b/cert.pem" "$WORK/b/key.pem" 4
        EXAMPLE_PID=$BG_PID
        line=$(wait_for "$WORK/example-$impl.out" '^listening on port ' 10)
        PORT=${line##* }
        s_client_verifies "example-a-$impl" "$WORK/a" a.example -servername a.example
        s_client_verifies "example-b-$impl" "$WORK/b" b.example -servername b.example
        s_client_verifies "example-none-$impl" "$WORK/a" a.example -noservername
        status=0
        "$TIMEOUT_BIN" -k 5 30 "$OPENSSL_BIN" s_client -connect "127.0.0.1:$PORT" \
            -servername x.invalid </dev/null >"$WORK/example-refused-$impl.out" 2>&1 ||
            status=$?
        [ "$status" != 0 ] || fail "$impl: the example accepted x.invalid"
        grep -qi 'unrecognized name' "$WORK/example-refused-$impl.out" ||
            fail "$impl: s_client did not get unrecognized_name"
        status=0
        wait "$EXAMPLE_PID" || status=$?
        [ "$status" = 0 ] || fail "example, $impl: exited $status"
        grep -q 'client asks for b.example' "$WORK/example-$impl.err" ||
            fail "$impl: the SNI callback did not log b.example"
        grep -q 'client asks for (no name)' "$WORK/example-$impl.err" ||
            fail "$impl: the SNI callback did not log a client without a name"
        pass "examples/two_names_server ($impl): a.example, b.example, no SNI, x.invalid refused"
    done
fi
