#!/usr/bin/env bash
# OCSP stapling through the CLI, with responses made by `openssl ocsp` (offline responder: an
# index file, -reqin/-respout), on every implementation compiled in:
# (a) `tlsock serve --ocsp-response` staples the file: `openssl s_client -status` shows "Cert
#     Status: good" in TLS 1.2 and 1.3, and `gnutls-cli --ocsp --save-ocsp` saves exactly the
#     file's bytes and trusts the server; a revoked staple makes gnutls-cli refuse the server.
# (b) `tlsock connect --ocsp require|request`: a good staple passes (from tlsock serve, from
#     `openssl s_server -status_file`), a server without
#     one fails `require` with exit 3 and passes `request`, a revoked staple is exit 3 "certificate
#     revoked (stapled OCSP response)", a must-staple certificate without a staple is exit 3 with
#     `request`.
# (c) A bad --ocsp-response file is exit 2 naming it; --ocsp with --insecure is exit 1.
# (d) SIGHUP makes serve read --ocsp-response again: a good staple replaced by a revoked one for
#     the same certificate is what clients get after the reload.
source "$(dirname "$0")/lib.sh"
need OPENSSL_BIN

tlsock_impls
PKI=$WORK/pki
mkdir -p "$PKI"
# respond NAME: $PKI/NAME.der, the root's answer about $PKI/NAME.pem from the index.
respond() {
    ossl ocsp -issuer "$PKI/root.pem" -cert "$PKI/$1.pem" -no_nonce -reqout "$PKI/$1.req"
    ossl ocsp -index "$PKI/index.txt" -CA "$PKI/root.pem" -rsigner "$PKI/root.pem" \
        -rkey "$PKI/root.key" -reqin "$PKI/$1.req" -respout "$PKI/$1.der" -ndays 1
}

new_root "cli ocsp root"
LEAF_EXT='subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n'
for name in good revoked must; do
    new_key "$name"
done
issue good root "$LEAF_EXT"
issue revoked root "$LEAF_EXT"
issue must root "${LEAF_EXT}tlsfeature=status_request\n"
: >"$PKI/index.txt"
printf '[ca]\ndefault_ca = d\n[d]\ndatabase = %s\ndefault_md = sha256\n' "$PKI/index.txt" \
    >"$PKI/ca.cnf"
CA=(-batch -config "$PKI/ca.cnf" -keyfile "$PKI/root.key" -cert "$PKI/root.pem")
ossl ca "${CA[@]}" -valid "$PKI/good.pem"
ossl ca "${CA[@]}" -valid "$PKI/must.pem"
ossl ca "${CA[@]}" -revoke "$PKI/revoked.pem"
respond good
respond revoked

TRUST=(--ca "$PKI/root.pem")

for serve_impl in $IMPLS; do
    # serve_port NAME CERT [STAPLE]: a server of CERT (stapling STAPLE); sets PORT.
    serve_port() {
        local staple=()
        [ -z "${3:-}" ] || staple=(--ocsp-response "$PKI/$3.der")
        start_tlsock_serve "$1-$serve_impl" --impl "$serve_impl" --cert "$PKI/$2.pem" \
            --key "$PKI/$2.key" "${staple[@]}"
    }
    serve_port good good good
    GOOD_PORT=$PORT
    serve_port bare good
    BARE_PORT=$PORT
    serve_port revoked revoked revoked
    REVOKED_PORT=$PORT
    serve_port must must
    MUST_PORT=$PORT

    # (a) other clients read the staple
    for v in 1_2 1_3; do
        name="s_client-$v-$serve_impl"
        s_client_echo "$name" -connect "127.0.0.1:$GOOD_PORT" -CAfile "$PKI/root.pem" -status \
            "-tls$v" || fail "$name: s_client failed"
        grep -q 'OCSP Response Status: successful' "$WORK/$name.out" ||
            fail "$name: no OCSP response: $(cat "$WORK/$name.out")"
        grep -q 'Cert Status: good' "$WORK/$name.out" || fail "$name: no good status"
    done
    pass "$serve_impl: serve --ocsp-response staples for s_client -status (TLS 1.2 and 1.3)"
    if [ -n "$GNUTLS_CLI_BIN" ]; then
        name="gnutls-cli-$serve_impl"
        echo | "$TIMEOUT_BIN" -k 5 30 "$GNUTLS_CLI_BIN" --ocsp --x509cafile "$PKI/root.pem" \
            --save-ocsp "$WORK/$name.der" -p "$GOOD_PORT" localhost >"$WORK/$name.out" 2>&1 ||
            fail "$name: gnutls-cli failed: $(cat "$WORK/$name.out")"
        grep -q 'Status: The certificate is trusted' "$WORK/$name.out" ||
            fail "$name: gnutls-cli did not trust the server"
        cmp -s "$WORK/$name.der" "$PKI/good.der" || fail "$name: the staple is not good.der"
        got=0
        echo | "$TIMEOUT_BIN" -k 5 30 "$GNUTLS_CLI_BIN" --ocsp --x509cafile "$PKI/root.pem" \
            -p "$REVOKED_PORT" localhost >"$WORK/$name-revoked.out" 2>&1 || got=$?
        [ "$got" != 0 ] || fail "$name: gnutls-cli accepted a revoked staple"
        grep -qi 'revoked' "$WORK/$name-revoked.out" ||
            fail "$name: no revocation in: $(cat "$WORK/$name-revoked.out")"
        pass "$serve_impl: gnutls-cli --ocsp gets the staple byte for byte, refuses a revoked one"
    fi

    # (b) tlsock connect against tlsock serve
    for impl in $IMPLS; do
        C=(--impl "$impl" "${TRUST[@]}")
        tag="$impl-$serve_impl"
        connect_run "req-good-$tag" 0 "${C[@]}" --ocsp require "localhost:$GOOD_PORT"
        connect_run "req-bare-$tag" 3 "${C[@]}" --ocsp require "localhost:$BARE_PORT"
        has "req-bare-$tag" "no stapled OCSP response, and one is required"
        connect_run "ask-bare-$tag" 0 "${C[@]}" --ocsp request "localhost:$BARE_PORT"
        connect_run "revoked-$tag" 3 "${C[@]}" --ocsp request "localhost:$REVOKED_PORT"
        has "revoked-$tag" "certificate revoked (stapled OCSP response)"
        connect_run "revoked-off-$tag" 0 "${C[@]}" "localhost:$REVOKED_PORT"
        connect_run "must-$tag" 3 "${C[@]}" --ocsp request "localhost:$MUST_PORT"
        has "must-$tag" "no stapled OCSP response, and the certificate requires one"
        pass "$tag: connect --ocsp: good passes, missing (require), revoked and must-staple fail"
    done
done

# (b) tlsock connect against the other servers' staples
# -rev: s_server keeps serving (it does not read its own stdin).
start_s_server s_server -cert "$PKI/good.pem" -key "$PKI/good.key" -rev \
    -status_file "$PKI/good.der"
S_PORT=$PORT
for impl in $IMPLS; do
    connect_run "s_server-$impl" 0 --impl "$impl" "${TRUST[@]}" --ocsp require "localhost:$S_PORT"
done
pass "connect --ocsp require accepts openssl s_server -status_file"

# (c) configuration mistakes
name=bad-file
got=0
"$TIMEOUT_BIN" -k 5 30 "$TLSOCK_BIN" serve --cert "$PKI/good.pem" --key "$PKI/good.key" \
    --ocsp-response "$PKI/good.pem" </dev/null >"$WORK/$name.out" 2>"$WORK/$name.err" || got=$?
[ "$got" = 2 ] || fail "$name: exit status $got, expected 2: $(cat "$WORK/$name.err")"
has "$name" "$PKI/good.pem"
has "$name" "not a DER OCSP response"
connect_run insecure 1 --insecure --ocsp require "localhost:$S_PORT"
has insecure "--ocsp needs verification"
pass "a PEM file as --ocsp-response is exit 2 naming it; --ocsp --insecure is exit 1"

# (d) a renewed response is picked up on SIGHUP
cp "$PKI/good.der" "$PKI/current.der"
start_tlsock_serve reload-ocsp --cert "$PKI/good.pem" --key "$PKI/good.key" \
    --ocsp-response "$PKI/current.der"
RELOAD_PID=$BG_PID
RELOAD_PORT=$PORT
connect_run reload-before 0 "${TRUST[@]}" --ocsp require "localhost:$RELOAD_PORT"
# The responder's view changes: good is revoked (in a copy of the index), and answers so.
cp "$PKI/index.txt" "$PKI/index2.txt"
sed "s|$PKI/index.txt|$PKI/index2.txt|" "$PKI/ca.cnf" >"$PKI/ca2.cnf"
ossl ca -batch -config "$PKI/ca2.cnf" -keyfile "$PKI/root.key" -cert "$PKI/root.pem" \
    -revoke "$PKI/good.pem"
ossl ocsp -index "$PKI/index2.txt" -CA "$PKI/root.pem" -rsigner "$PKI/root.pem" \
    -rkey "$PKI/root.key" -reqin "$PKI/good.req" -respout "$PKI/current.der" -ndays 1
hup "$RELOAD_PID"
wait_for "$WORK/reload-ocsp.err" "SIGHUP: reloaded .*--ocsp-response $PKI/current.der" 10 \
    >/dev/null
connect_run reload-after 3 "${TRUST[@]}" --ocsp request "localhost:$RELOAD_PORT"
has reload-after "certificate revoked (stapled OCSP response)"
stop_bg "$RELOAD_PID" 10
pass "SIGHUP: serve staples the renewed --ocsp-response (revoked now), and says it loaded it"
