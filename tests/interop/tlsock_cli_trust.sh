#!/usr/bin/env bash
# The CLI's trust and key options, with a PKI made by the openssl tool (root CA, an intermediate,
# leaves, CRLs from `openssl ca -revoke`/`-gencrl`), on every implementation compiled in:
# (a) connect --crl: a revoked server certificate fails with exit 3 "certificate revoked" (and
#     succeeds without --crl), a good one passes; --crl-chain refuses a chain whose intermediate
#     is revoked, which leaf mode lets through; serve --client-ca --crl refuses a revoked client
#     certificate; tunnel --tls-connect --crl refuses a revoked target; a missing CRL file is
#     exit 2 naming it.
# (b) connect --pin: the server's key passes, another key fails with exit 3 "no pinned key",
#     a malformed pin is exit 2.
# (c) connect --show-certs: the certificates the server sent, as PEM on stderr, byte for byte the
#     server's leaf and intermediate (openssl x509), also when verification fails.
# (d) cert --encrypt --key-pass-env: an AES-256 encrypted PKCS#8 key that openssl reads with the
#     passphrase only; serve and tunnel load it with --key-pass-env (right), and refuse it with a
#     wrong one, an unset variable (named) or none: exit 2; --key-pass-env with --key-pass-file
#     is exit 1.
source "$(dirname "$0")/lib.sh"
need OPENSSL_BIN

tlsock_impls
PKI=$WORK/pki
mkdir -p "$PKI"
# crl CA REVOKED...: $PKI/CA.crl, from CA, listing the REVOKED certificates.
crl() {
    local ca=$1
    shift
    : >"$PKI/$ca.index"
    printf '[ca]\ndefault_ca = d\n[d]\ndatabase = %s\ndefault_md = sha256\ndefault_crl_days = 7\n' \
        "$PKI/$ca.index" >"$PKI/$ca.cnf"
    local r
    for r in "$@"; do
        ossl ca -batch -config "$PKI/$ca.cnf" -keyfile "$PKI/$ca.key" -cert "$PKI/$ca.pem" \
            -revoke "$PKI/$r.pem"
    done
    ossl ca -batch -config "$PKI/$ca.cnf" -keyfile "$PKI/$ca.key" -cert "$PKI/$ca.pem" -gencrl \
        -out "$PKI/$ca.crl"
}

CA_EXT='basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n'
LEAF_EXT='subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n'
new_root "cli trust root"
for name in good revoked; do
    new_key "$name"
    issue "$name" root "$LEAF_EXT"
done
new_key inter
issue inter root "$CA_EXT"
new_key leaf2
issue leaf2 inter "$LEAF_EXT"
cat "$PKI/leaf2.pem" "$PKI/inter.pem" >"$PKI/leaf2-chain.pem"
crl root revoked inter
crl inter

start_tlsock_serve good --cert "$PKI/good.pem" --key "$PKI/good.key"
GOOD_PORT=$PORT
start_tlsock_serve revoked --cert "$PKI/revoked.pem" --key "$PKI/revoked.key"
REVOKED_PORT=$PORT
start_tlsock_serve chain --cert "$PKI/leaf2-chain.pem" --key "$PKI/leaf2.key"
CHAIN_PORT=$PORT
TRUST=(--ca "$PKI/root.pem")

for impl in $IMPLS; do
    C=(--impl "$impl" "${TRUST[@]}")
    # (a) revocation
    connect_run "revoked-nocrl-$impl" 0 "${C[@]}" "127.0.0.1:$REVOKED_PORT"
    connect_run "revoked-$impl" 3 "${C[@]}" --crl "$PKI/root.crl" "127.0.0.1:$REVOKED_PORT"
    has "revoked-$impl" "certificate revoked"
    connect_run "good-crl-$impl" 0 "${C[@]}" --crl "$PKI/root.crl" "127.0.0.1:$GOOD_PORT"
    pass "$impl: connect --crl refuses the revoked server (exit 3), accepts the good one"
    CRLS=(--crl "$PKI/root.crl" --crl "$PKI/inter.crl")
    connect_run "chain-leaf-$impl" 0 "${C[@]}" "${CRLS[@]}" "127.0.0.1:$CHAIN_PORT"
    connect_run "chain-all-$impl" 3 "${C[@]}" "${CRLS[@]}" --crl-chain "127.0.0.1:$CHAIN_PORT"
    has "chain-all-$impl" "certificate revoked"
    pass "$impl: --crl-chain refuses the revoked intermediate that leaf mode does not check"
    connect_run "crl-missing-$impl" 2 "${C[@]}" --crl "$WORK/nothing.crl" "127.0.0.1:$GOOD_PORT"
    has "crl-missing-$impl" "$WORK/nothing.crl"
    pass "$impl: a missing --crl file is exit 2, named"

    # (b) pins
    PIN=$("$OPENSSL_BIN" pkey -in "$PKI/good.key" -pubout -outform der |
        "$OPENSSL_BIN" dgst -sha256 -binary | base64)
    OTHER=$("$OPENSSL_BIN" pkey -in "$PKI/revoked.key" -pubout -outform der |
        "$OPENSSL_BIN" dgst -sha256 -binary | base64)
    connect_run "pin-right-$impl" 0 "${C[@]}" --pin "sha256:$OTHER" --pin "sha256:$PIN" \
        "127.0.0.1:$GOOD_PORT"
    connect_run "pin-wrong-$impl" 3 "${C[@]}" --pin "sha256:$OTHER" "127.0.0.1:$GOOD_PORT"
    has "pin-wrong-$impl" "no pinned key matches"
    connect_run "pin-bad-$impl" 2 "${C[@]}" --pin "sha256:nonsense" "127.0.0.1:$GOOD_PORT"
    has "pin-bad-$impl" "--pin"
    pass "$impl: connect --pin: the server's key passes, another fails (exit 3), junk is exit 2"

    # (c) --show-certs, verified and not
    for trusted in yes no; do
        name="show-$trusted-$impl"
        if [ "$trusted" = yes ]; then
            connect_run "$name" 0 --impl "$impl" "${TRUST[@]}" --show-certs "127.0.0.1:$CHAIN_PORT"
        else
            connect_run "$name" 3 --impl "$impl" --ca "$PKI/good.pem" --show-certs \
                "127.0.0.1:$CHAIN_PORT"
        fi
        has "$name" "certificates sent by the server (2, leaf first)"
        awk -v dir="$WORK" -v name="$name" '/-----BEGIN CERTIFICATE-----/ {n++; in_pem = 1}
            in_pem {print > (dir "/" name "." n ".pem")} /-----END CERTIFICATE-----/ {in_pem = 0}' \
            "$WORK/$name.err"
        i=1
        for want in leaf2 inter; do
            got=$("$OPENSSL_BIN" x509 -in "$WORK/$name.$i.pem" -outform der | od -An -tx1)
            exp=$("$OPENSSL_BIN" x509 -in "$PKI/$want.pem" -outform der | od -An -tx1)
            [ "$got" = "$exp" ] || fail "$name: certificate $i is not $want"
            # The PEM itself, line for line, is what openssl writes.
            diff <("$OPENSSL_BIN" x509 -in "$PKI/$want.pem") "$WORK/$name.$i.pem" >/dev/null ||
                fail "$name: certificate $i is not PEM as openssl writes it"
            i=$((i + 1))
        done
        [ ! -e "$WORK/$name.3.pem" ] || fail "$name: more than 2 certificates"
    done
    pass "$impl: connect --show-certs prints the leaf and intermediate (verified or not)"
done

# serve --client-ca --crl: a revoked client certificate is refused by the server.
start_tlsock_serve mtls --client-ca "$PKI/root.pem" --crl "$PKI/root.crl" --verbose
MTLS_PORT=$PORT
connect_run mtls-good 0 --insecure --cert "$PKI/good.pem" --key "$PKI/good.key" \
    "127.0.0.1:$MTLS_PORT"
status=0
"$TIMEOUT_BIN" -k 5 30 "$TLSOCK_BIN" connect --insecure --cert "$PKI/revoked.pem" \
    --key "$PKI/revoked.key" "127.0.0.1:$MTLS_PORT" </dev/null >"$WORK/mtls-revoked.out" \
    2>"$WORK/mtls-revoked.err" || status=$?
[ "$status" != 0 ] || fail "mtls-revoked: the revoked client certificate was accepted"
wait_for "$WORK/mtls.err" 'certificate revoked' 10 >/dev/null
pass "serve --client-ca --crl refuses a revoked client certificate (client exit $status)"

# tunnel --tls-connect --crl: the revoked target is refused, logged.
start_tlsock tunnel tunnel --accept 127.0.0.1:0 --connect "127.0.0.1:$REVOKED_PORT" \
    --tls-connect "${TRUST[@]}" --crl "$PKI/root.crl"
exec 5<>"/dev/tcp/127.0.0.1/$PORT"
echo hello >&5
wait_for "$WORK/tunnel.err" 'certificate revoked' 10 >/dev/null
exec 5>&-
pass "tunnel --tls-connect --crl refuses the revoked target"

# (d) cert --encrypt with --key-pass-env, then serve and tunnel with the passphrase.
ENC=$WORK/enc
export CLI_TRUST_PASS="right passphrase"
"$TIMEOUT_BIN" 30 "$TLSOCK_BIN" cert --out "$ENC" --host localhost,127.0.0.1 --encrypt \
    --key-pass-env CLI_TRUST_PASS >"$WORK/cert-encrypt.out" 2>&1 || fail "cert --encrypt failed"
head -n1 "$ENC/key.pem" | grep -qx -- '-----BEGIN ENCRYPTED PRIVATE KEY-----' ||
    fail "cert --encrypt: key.pem is not encrypted PKCS#8"
"$OPENSSL_BIN" asn1parse -in "$ENC/key.pem" | grep -q aes-256-cbc ||
    fail "cert --encrypt: key.pem is not AES-256-CBC"
"$OPENSSL_BIN" pkey -in "$ENC/key.pem" -passin env:CLI_TRUST_PASS -noout ||
    fail "openssl cannot read key.pem with the passphrase"
if "$OPENSSL_BIN" pkey -in "$ENC/key.pem" -passin pass:wrong -noout 2>/dev/null; then
    fail "openssl read key.pem with a wrong passphrase"
fi
pass "cert --encrypt writes an AES-256 PKCS#8 key only the passphrase opens"

# refused NAME STATUS TEXT CMD...: CMD exits STATUS at once with TEXT on stderr.
refused() {
    local name=$1
    local want=$2
    local text=$3
    shift 3
    local got=0
    CLI_TRUST_WRONG="wrong passphrase" "$TIMEOUT_BIN" -k 1 10 "$@" </dev/null \
        >"$WORK/$name.out" 2>"$WORK/$name.err" || got=$?
    [ "$got" = "$want" ] || fail "$name: exit $got, expected $want: $(cat "$WORK/$name.err")"
    has "$name" "$text"
}

unset CLI_TRUST_UNSET
for impl in $IMPLS; do
    S=(--impl "$impl" --cert "$ENC/cert.pem" --key "$ENC/key.pem")
    start_tlsock_serve "enc-$impl" "${S[@]}" --key-pass-env CLI_TRUST_PASS
    connect_run "enc-connect-$impl" 0 --ca "$ENC/ca.pem" "127.0.0.1:$PORT"
    refused "enc-wrong-$impl" 2 "wrong passphrase" "$TLSOCK_BIN" serve "${S[@]}" \
        --key-pass-env CLI_TRUST_WRONG
    refused "enc-unset-$impl" 2 "--key-pass-env CLI_TRUST_UNSET: the environment variable is not set" \
        "$TLSOCK_BIN" serve "${S[@]}" --key-pass-env CLI_TRUST_UNSET
    refused "enc-none-$impl" 2 "no passphrase was set" "$TLSOCK_BIN" serve "${S[@]}"
    start_tlsock "enc-tunnel-$impl" tunnel "${S[@]}" --accept 127.0.0.1:0 \
        --connect "127.0.0.1:$GOOD_PORT" --key-pass-env CLI_TRUST_PASS
    refused "enc-tunnel-wrong-$impl" 2 "wrong passphrase" "$TLSOCK_BIN" tunnel "${S[@]}" \
        --accept 127.0.0.1:0 --connect "127.0.0.1:$GOOD_PORT" --key-pass-env CLI_TRUST_WRONG
    pass "$impl: serve and tunnel load the encrypted key with --key-pass-env; wrong, unset, none: exit 2"
done
echo "right passphrase" >"$WORK/pass.txt"
refused both-pass 1 "exclude each other" "$TLSOCK_BIN" serve --cert "$ENC/cert.pem" \
    --key "$ENC/key.pem" --key-pass-env CLI_TRUST_PASS --key-pass-file "$WORK/pass.txt"
refused crl-chain-alone 1 "--crl-chain needs --crl" "$TLSOCK_BIN" connect --crl-chain \
    "127.0.0.1:$GOOD_PORT"
refused serve-crl-alone 1 "--crl needs --client-ca" "$TLSOCK_BIN" serve --crl "$PKI/root.crl"
pass "usage errors: --key-pass-env with --key-pass-file, --crl-chain alone, serve --crl alone"
