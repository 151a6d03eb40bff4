#!/usr/bin/env bash
# (c) curl against `tlsock serve --http`: verified with --cacert, 200 and the body; keep-alive
#     reuses one connection for two requests; HTTP/1.0 and HEAD work; ALPN http/1.1 is agreed
#     and a client offering only another protocol is refused.
# (d) negative: curl without --cacert refuses the server (exit 60, peer not trusted).
source "$(dirname "$0")/lib.sh"
need CURL_BIN

make_certs "$WORK/certs" localhost,127.0.0.1
start_tlsock_serve serve --http --cert "$WORK/certs/cert.pem" --key "$WORK/certs/key.pem" \
    --alpn http/1.1 --verbose
SERVE_PID=$BG_PID
URL="https://localhost:$PORT/"
# --resolve: "localhost" may mean ::1 first; the server listens on 127.0.0.1 only.
CURL=("$TIMEOUT_BIN" -k 5 30 "$CURL_BIN" --silent --show-error --max-time 20
    --resolve "localhost:$PORT:127.0.0.1")

code=$("${CURL[@]}" --cacert "$WORK/certs/ca.pem" -o "$WORK/body" -w '%{http_code}' "$URL")
[ "$code" = 200 ] || fail "status $code, expected 200"
[ "$(cat "$WORK/body")" = "hello from tlsock" ] || fail "unexpected body: $(cat "$WORK/body")"
pass "curl --cacert ca.pem $URL: 200, body 'hello from tlsock'"

# Two URLs in one curl run: the second must reuse the first connection (keep-alive).
"${CURL[@]}" --cacert "$WORK/certs/ca.pem" -w 'connects=%{num_connects}\n' -v \
    "${URL}a" "${URL}b" >"$WORK/keepalive.out" 2>"$WORK/keepalive.err"
[ "$(grep -c '^hello from tlsock$' "$WORK/keepalive.out")" = 2 ] || fail "keep-alive: not 2 bodies"
grep -q '^connects=1$' "$WORK/keepalive.out" || fail "keep-alive: first request did not connect"
grep -q '^connects=0$' "$WORK/keepalive.out" || fail "keep-alive: second request reconnected"
grep -qi 'ALPN.*accepted.*http/1.1\|ALPN, server accepted to use http/1.1' "$WORK/keepalive.err" ||
    fail "ALPN http/1.1 was not agreed"
pass "curl: two requests over one kept-alive connection, ALPN http/1.1"

# curl --http1.0 offers ALPN "http/1.0" only: the server, which accepts only http/1.1, must
# refuse the handshake (RFC 7301 no_application_protocol), and curl reports exit 35.
status=0
"${CURL[@]}" --http1.0 --cacert "$WORK/certs/ca.pem" -o /dev/null "$URL" 2>"$WORK/alpn.err" ||
    status=$?
[ "$status" = 35 ] || fail "ALPN mismatch: curl exited $status, expected 35"
grep -q 'no application protocol' "$WORK/alpn.err" || fail "ALPN mismatch: no alert reported"
pass "ALPN mismatch is refused with no_application_protocol (curl exit 35)"

# HTTP/1.0 without ALPN: one response, then the server closes with close_notify.
code=$("${CURL[@]}" --http1.0 --no-alpn --cacert "$WORK/certs/ca.pem" -o "$WORK/body10" \
    -w '%{http_code}' "$URL")
[ "$code" = 200 ] || fail "HTTP/1.0: status $code"
[ "$(cat "$WORK/body10")" = "hello from tlsock" ] || fail "HTTP/1.0: unexpected body"
pass "curl --http1.0 --no-alpn: 200 and the body"

# HEAD: the headers, Content-Length of the body, and no body.
"${CURL[@]}" --cacert "$WORK/certs/ca.pem" --head "$URL" >"$WORK/head.out"
grep -qi '^content-length: 18' "$WORK/head.out" || fail "HEAD: no Content-Length 18"
grep -qi '^content-type: text/plain' "$WORK/head.out" || fail "HEAD: no Content-Type"
pass "curl --head: headers without a body"

# (d) Without --cacert, curl uses the system store, which does not know the development CA.
status=0
"${CURL[@]}" -o /dev/null "$URL" 2>"$WORK/untrusted.err" || status=$?
[ "$status" = 60 ] || fail "curl without --cacert exited $status, expected 60"
pass "curl without --cacert refuses the server (exit 60)"

kill -0 "$SERVE_PID" 2>/dev/null || fail "tlsock serve died"
