#!/usr/bin/env bash
# Bad configuration input to the tool: each is refused at once with exit status 2 and a message
# naming the culprit, never waited for.
# (a) A FIFO as --cert, --key, --client-ca (serve) or --ca (connect): "is a FIFO, not a regular
#     file", naming the FIFO, within 5 s (opening a FIFO used to block until a writer came).
# (b) An empty certificate, key or CA file: "is empty", naming the file.
# (c) TLSOCK_IMPL naming no implementation: serve, connect and version fail with the value and
#     the implementations compiled in; --impl still chooses one, and then serve and connect work.
# (d) An encrypted --key with a wrong --key-pass-file, without one, or with one that cannot be
#     read: exit 2 at once, naming the key file or the passphrase file.
source "$(dirname "$0")/lib.sh"

make_certs "$WORK/certs" localhost,127.0.0.1
CERT=$WORK/certs/cert.pem
KEY=$WORK/certs/key.pem
mkfifo "$WORK/fifo.pem"
: >"$WORK/empty.pem"

# refused NAME MESSAGE... -- CMD...: CMD must exit 2 within 5 s with every MESSAGE on stderr.
refused() {
    local name=$1
    shift
    local messages=()
    while [ "$1" != -- ]; do
        messages+=("$1")
        shift
    done
    shift
    local status=0
    local start
    local ms
    start=$(($(date +%s%N) / 1000000))
    "$TIMEOUT_BIN" -k 1 10 "$@" </dev/null >"$WORK/$name.out" 2>"$WORK/$name.err" || status=$?
    ms=$(($(date +%s%N) / 1000000 - start))
    [ "$status" = 2 ] || fail "$name: exit status $status, expected 2: $(cat "$WORK/$name.err")"
    [ "$ms" -lt 5000 ] || fail "$name: refused only after $ms ms"
    local m
    for m in "${messages[@]}"; do
        grep -qF -- "$m" "$WORK/$name.err" ||
            fail "$name: no '$m' in the message: $(cat "$WORK/$name.err")"
    done
    pass "$name: exit 2 after $ms ms: $(head -n1 "$WORK/$name.err")"
}

FIFO_MSG="$WORK/fifo.pem is a FIFO, not a regular file"
EMPTY_MSG="$WORK/empty.pem is empty"

# (a)
refused serve-cert-fifo "$FIFO_MSG" "certificate file" -- \
    "$TLSOCK_BIN" serve --cert "$WORK/fifo.pem" --key "$KEY"
refused serve-key-fifo "$FIFO_MSG" "key file" -- \
    "$TLSOCK_BIN" serve --cert "$CERT" --key "$WORK/fifo.pem"
refused serve-client-ca-fifo "$FIFO_MSG" "CA file" -- \
    "$TLSOCK_BIN" serve --client-ca "$WORK/fifo.pem"
refused connect-ca-fifo "$FIFO_MSG" "CA file" -- \
    "$TLSOCK_BIN" connect localhost:1 --ca "$WORK/fifo.pem"

# (b)
refused serve-cert-empty "$EMPTY_MSG" "certificate file" -- \
    "$TLSOCK_BIN" serve --cert "$WORK/empty.pem" --key "$KEY"
refused serve-key-empty "$EMPTY_MSG" "key file" -- \
    "$TLSOCK_BIN" serve --cert "$CERT" --key "$WORK/empty.pem"
refused connect-ca-empty "$EMPTY_MSG" "CA file" -- \
    "$TLSOCK_BIN" connect localhost:1 --ca "$WORK/empty.pem"

IMPLS=$("$TIMEOUT_BIN" 10 "$TLSOCK_BIN" version | awk 'NR > 1 && !/not compiled in/ {print $1}')
[ -n "$IMPLS" ] || fail "tlsock version lists no implementation"

# (d) An encrypted key (made by the openssl tool) with a wrong passphrase file, without one, with
#     one that cannot be read: refused at once on every implementation, stdin closed (nothing
#     may prompt), the key file named.
if [ -n "${OPENSSL_BIN:-}" ]; then
    ENC=$WORK/key.enc.pem
    "$TIMEOUT_BIN" 30 "$OPENSSL_BIN" pkcs8 -topk8 -in "$KEY" -v2 aes-256-cbc \
        -passout pass:right-pass -out "$ENC" || fail "openssl pkcs8 failed"
    echo wrong-pass >"$WORK/wrong.pass"
    for impl in $IMPLS; do
        refused "key-pass-wrong-$impl" "key file $ENC" "wrong passphrase" -- \
            "$TLSOCK_BIN" serve --impl "$impl" --cert "$CERT" --key "$ENC" \
            --key-pass-file "$WORK/wrong.pass"
        refused "key-pass-none-$impl" "key file $ENC" "no passphrase was set (--key-pass-file or --key-pass-env)" -- \
            "$TLSOCK_BIN" serve --impl "$impl" --cert "$CERT" --key "$ENC"
    done
    refused key-pass-missing "--key-pass-file $WORK/nosuch.pass: No such file" -- \
        "$TLSOCK_BIN" serve --cert "$CERT" --key "$ENC" --key-pass-file "$WORK/nosuch.pass"
    status=0
    "$TIMEOUT_BIN" 10 "$TLSOCK_BIN" serve --key-pass-file "$WORK/wrong.pass" </dev/null \
        >/dev/null 2>"$WORK/key-pass-usage.err" || status=$?
    [ "$status" = 1 ] || fail "--key-pass-file without --cert: exit $status, expected 1"
    grep -qF -- "--key-pass-file needs --cert" "$WORK/key-pass-usage.err" ||
        fail "--key-pass-file without --cert: $(cat "$WORK/key-pass-usage.err")"
    pass "--key-pass-file without --cert is a usage error"
    refused key-pass-fifo "--key-pass-file $WORK/fifo.pem: not a regular file" -- \
        "$TLSOCK_BIN" serve --cert "$CERT" --key "$ENC" --key-pass-file "$WORK/fifo.pem"
    # The first line is the passphrase: an empty one, or one with a NUL byte, is refused as
    # --key-pass-env refuses them (never a silently shorter passphrase).
    printf '\nright-pass\n' >"$WORK/empty-line.pass"
    refused key-pass-empty-line "--key-pass-file $WORK/empty-line.pass: the first line is empty" -- \
        "$TLSOCK_BIN" serve --cert "$CERT" --key "$ENC" --key-pass-file "$WORK/empty-line.pass"
    printf 'right\000-pass\n' >"$WORK/nul.pass"
    refused key-pass-nul "--key-pass-file $WORK/nul.pass: the passphrase holds a NUL byte" -- \
        "$TLSOCK_BIN" serve --cert "$CERT" --key "$ENC" --key-pass-file "$WORK/nul.pass"
fi

# (c) The message names the value and what is compiled in (`tlsock version` lists it).
WANT="set it to $(echo "$IMPLS" | paste -sd' ' | sed 's/ / or /g'), or unset it"
refused impl-serve "TLSOCK_IMPL=nosuch names no TLS implementation" "$WANT" -- \
    env TLSOCK_IMPL=nosuch "$TLSOCK_BIN" serve
refused impl-connect "TLSOCK_IMPL=nosuch names no TLS implementation" "$WANT" -- \
    env TLSOCK_IMPL=nosuch "$TLSOCK_BIN" connect localhost:1
refused impl-version "TLSOCK_IMPL=nosuch names no TLS implementation" -- \
    env TLSOCK_IMPL=nosuch "$TLSOCK_BIN" version
refused impl-case "TLSOCK_IMPL=OpenSSL names no TLS implementation" -- \
    env TLSOCK_IMPL=OpenSSL "$TLSOCK_BIN" serve

# --impl overrides the bad environment: a session from one to the other.
FIRST=$(echo "$IMPLS" | head -n1)
LAST=$(echo "$IMPLS" | tail -n1)
start_bg serve env TLSOCK_IMPL=nosuch "$TLSOCK_BIN" serve --impl "$FIRST" --ca-out "$WORK/ca.pem"
line=$(wait_for "$WORK/serve.out" '^listening on ' 10)
PORT=${line##*:}
status=0
echo "impl chosen" | env TLSOCK_IMPL=nosuch "$TIMEOUT_BIN" -k 5 30 "$TLSOCK_BIN" connect \
    --impl "$LAST" --ca "$WORK/ca.pem" --quiet --timeout 10000 "localhost:$PORT" \
    >"$WORK/impl.out" 2>"$WORK/impl.err" || status=$?
[ "$status" = 0 ] || fail "--impl with TLSOCK_IMPL=nosuch: connect exited $status"
grep -qx 'impl chosen' "$WORK/impl.out" || fail "--impl with TLSOCK_IMPL=nosuch: no echo"
pass "--impl $FIRST (serve) and --impl $LAST (connect) work whatever TLSOCK_IMPL says"
