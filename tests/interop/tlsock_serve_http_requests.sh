#!/usr/bin/env bash
# `tlsock serve --http` against raw requests from Python's ssl module (raw_http_client.py),
# each answered within a bound and never left waiting:
# (a) CRLF and bare-LF line ends (RFC 9112 section 2.2), also mixed, with headers, and two
#     pipelined keep-alive requests: 200, and the connection ends with close_notify when the
#     request says so (HTTP/1.0, Connection: close);
# (b) malformed requests (no version, bad version, double space, a header line without a colon
#     or with space before it, obs-fold, a bare CR, binary bytes without any line end): 400 and
#     close_notify at once;
# (c) an oversized head (CRLF or bare LF): 431 and close_notify;
# (d) an incomplete request is not answered early: the server waits for the rest.
# The server logs every status with --verbose and keeps serving throughout.
source "$(dirname "$0")/lib.sh"
need PYTHON3_BIN

CLIENT=$(dirname "$0")/raw_http_client.py
start_tlsock_serve serve --http --ca-out "$WORK/ca.pem" --verbose
SERVE_PID=$BG_PID

# http_case NAME STATUS ENDING RESPONSES REQUEST [WAIT]: sends REQUEST (raw_http_client.py's
# escapes) and checks the first status line, how the connection ended and the number of
# responses; an ended connection must end within 5 s.
http_case() {
    local name=$1
    local want_status=$2
    local want_ending=$3
    local want_count=$4
    local request=$5
    local wait=${6:-10}
    local status=0
    local lines
    "$TIMEOUT_BIN" -k 5 30 "$PYTHON3_BIN" "$CLIENT" "$PORT" "$WORK/ca.pem" "$request" "$wait" \
        >"$WORK/$name.out" 2>"$WORK/$name.err" || status=$?
    mapfile -t lines <"$WORK/$name.out"
    [ "${#lines[@]}" = 4 ] || fail "$name: client exited $status with: $(cat "$WORK/$name.out")"
    [ "${lines[0]}" = "$want_status" ] || fail "$name: status line '${lines[0]}', want '$want_status'"
    [ "${lines[1]}" = "$want_ending" ] || fail "$name: connection $want_ending expected, got ${lines[1]}"
    [ "${lines[3]}" = "$want_count" ] || fail "$name: ${lines[3]} responses, want $want_count"
    if [ "$want_ending" != open ] && [ "${lines[2]}" -ge 5000 ]; then
        fail "$name: the connection ended only after ${lines[2]} ms"
    fi
    pass "$name: '${lines[0]}', ${lines[1]} after ${lines[2]} ms"
}

OK='HTTP/1.1 200 OK'
BAD='HTTP/1.1 400 Bad Request'
BIG='HTTP/1.1 431 Request Header Fields Too Large'

# (a)
http_case crlf-1.0 "$OK" close_notify 1 'GET / HTTP/1.0\r\n\r\n'
http_case lf-1.0 "$OK" close_notify 1 'GET / HTTP/1.0\n\n'
http_case lf-headers "$OK" close_notify 1 'GET / HTTP/1.1\nHost: localhost\nConnection: close\n\n'
http_case mixed "$OK" close_notify 1 'GET / HTTP/1.1\r\nHost: localhost\nConnection: close\r\n\n'
http_case lf-head "$OK" close_notify 1 'HEAD / HTTP/1.0\nHost: localhost\n\n'
http_case lf-pipelined "$OK" close_notify 2 \
    'GET /a HTTP/1.1\nHost: localhost\n\nGET /b HTTP/1.1\nHost: localhost\nConnection: close\n\n'
# A keep-alive request is answered and the connection stays open for the next one.
http_case lf-keep-alive "$OK" open 1 'GET / HTTP/1.1\nHost: localhost\n\n' 2

# (b)
http_case no-version "$BAD" close_notify 1 'GET /\n\n'
http_case bad-version "$BAD" close_notify 1 'GET / HTTX/1.1\r\n\r\n'
http_case double-space "$BAD" close_notify 1 'GET  / HTTP/1.1\r\nHost: localhost\r\n\r\n'
http_case garbage "$BAD" close_notify 1 'garbage\r\n\r\n'
http_case no-colon "$BAD" close_notify 1 'GET / HTTP/1.0\nHost localhost\n\n'
http_case space-before-colon "$BAD" close_notify 1 'GET / HTTP/1.0\nHost : localhost\n\n'
http_case obs-fold "$BAD" close_notify 1 'GET / HTTP/1.0\nX-A: 1\n b\n\n'
http_case bare-cr "$BAD" close_notify 1 'GET / HTTP/1.0\rHost: localhost\n\n'
http_case binary "$BAD" close_notify 1 '\x16\x03\x01\x00\x05'

# (c)
http_case big-crlf "$BIG" close_notify 1 'GET / HTTP/1.1\r\nX-Fill: {9000*a}\r\n\r\n'
http_case big-lf "$BIG" close_notify 1 'GET / HTTP/1.1\nX-Fill: {9000*a}\n\n'

# (d)
http_case incomplete - open 0 'GET / HTTP/1.0\r\nHost: localhost\r\n' 2

kill -0 "$SERVE_PID" 2>/dev/null || fail "tlsock serve died"
wait_for "$WORK/serve.err" ': 400$' 5 >/dev/null
wait_for "$WORK/serve.err" ': 431$' 5 >/dev/null
pass "tlsock serve --http logged the statuses and kept serving"
