#!/usr/bin/env bash
# Two `tlsock serve` processes sharing sessions through Redis (--session-store), on the
# implementation given as $1 (--impl openssl or gnutls), with openssl s_client as the client and a
# redis-server this script starts on a free loopback port (no persistence) and stops:
#  - TLS 1.2 by session ID (-no_ticket): a session from serve a resumes on serve b, both on the
#    same Redis; not on a serve process without --session-store;
#  - TLS 1.3 tickets: --session-store without --ticket-keys shares the ticket secret through
#    Redis (tlsock_redis_store_ticket_keys()), so a ticket from a resumes on b; not on a serve
#    process with keys of its own. The key file each process keeps is removed when it exits;
#  - Redis not answering at start: serve starts anyway, says so once, and serves full handshakes.
# Exits 77 (skipped) only when redis-server (or openssl, python3) is not installed.
source "$(dirname "$0")/lib.sh"
need OPENSSL_BIN PYTHON3_BIN REDIS_SERVER_BIN
impl=${1:?usage: tlsock_redis_sessions.sh openssl|gnutls}

make_certs "$WORK/pki" localhost,127.0.0.1

# free_port: a loopback TCP port nobody listens on now.
free_port() {
    "$PYTHON3_BIN" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# redis_ping PORT: true once a redis-server on PORT answers PING with +PONG (within 10 s).
redis_ping() {
    "$TIMEOUT_BIN" 15 "$PYTHON3_BIN" - "$1" <<'EOF'
import socket, sys, time
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    try:
        with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1) as s:
            s.sendall(b"PING\r\n")
            if s.recv(64).startswith(b"+PONG"):
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.05)
sys.exit(1)
EOF
}

redis_port=$(free_port)
start_bg redis "$REDIS_SERVER_BIN" --port "$redis_port" --bind 127.0.0.1 --save '' \
    --appendonly no
redis_pid=$BG_PID
redis_ping "$redis_port" ||
    fail "redis-server on $redis_port does not answer: $(cat "$WORK/redis.out")"
store="redis://127.0.0.1:$redis_port"

# serve NAME ARGS...: a serve process on $impl with the shared certificate and its own TMPDIR
# ($WORK/tmp-NAME); sets PORT, BG_PID.
serve() {
    local name=$1
    shift
    mkdir -p "$WORK/tmp-$name"
    TMPDIR="$WORK/tmp-$name" start_tlsock_serve "$name" --impl "$impl" \
        --cert "$WORK/pki/cert.pem" --key "$WORK/pki/key.pem" "$@"
}

# expect NAME WANT: s_client's output NAME says WANT.
expect() {
    [ "$(s_client_session "$1")" = "$2" ] || fail "$1: $(s_client_session "$1"), expected $2"
}

serve a --session-store "$store"
port_a=$PORT pid_a=$BG_PID
serve b --session-store "$store"
port_b=$PORT pid_b=$BG_PID
serve own
port_own=$PORT

# ---- TLS 1.2 by session ID ---------------------------------------------------------------------
pki_client first12 "$port_a" -tls1_2 -no_ticket -sess_out "$WORK/sess12.pem"
expect first12 "New, TLSv1.2"
[ -s "$WORK/sess12.pem" ] || fail "first12: no session"
pki_client across12 "$port_b" -tls1_2 -no_ticket -sess_in "$WORK/sess12.pem"
expect across12 "Reused, TLSv1.2"
pass "$impl: a TLS 1.2 session (by ID) from one serve process resumes on another through Redis"
pki_client own12 "$port_own" -tls1_2 -no_ticket -sess_in "$WORK/sess12.pem"
expect own12 "New, TLSv1.2"
pass "$impl: not on a serve process without --session-store"

# ---- TLS 1.3 tickets, the secret shared through Redis -------------------------------------------
pki_client first13 "$port_a" -tls1_3 -sess_out "$WORK/sess13.pem"
expect first13 "New, TLSv1.3"
[ -s "$WORK/sess13.pem" ] || fail "first13: serve a sent no ticket"
pki_client across13 "$port_b" -tls1_3 -sess_in "$WORK/sess13.pem"
expect across13 "Reused, TLSv1.3"
pass "$impl: a TLS 1.3 ticket from one serve process resumes on another (ticket keys via Redis)"
pki_client own13 "$port_own" -tls1_3 -sess_in "$WORK/sess13.pem"
expect own13 "New, TLSv1.3"
pass "$impl: not on a serve process with keys of its own"

# Each --session-store process kept its copy of the key file in a directory of its own.
for name in a b; do
    n=$(find "$WORK/tmp-$name" -name ticket-keys | wc -l)
    [ "$n" = 1 ] || fail "serve $name keeps $n ticket key files under its TMPDIR"
done
cmp -s "$(find "$WORK/tmp-a" -name ticket-keys)" "$(find "$WORK/tmp-b" -name ticket-keys)" ||
    fail "serve a and b hold different ticket key files"
stop_bg "$pid_a" 10
stop_bg "$pid_b" 10
left=$(find "$WORK/tmp-a" "$WORK/tmp-b" -mindepth 1)
[ -z "$left" ] || fail "the ticket key files outlived serve: $left"
pass "$impl: the shared ticket key files are removed at exit"

# ---- Redis not answering at start ---------------------------------------------------------------
stop_bg "$redis_pid" 10
serve down --session-store "$store"
grep -q "warning: --session-store: no shared ticket keys from Redis" "$WORK/down.err" ||
    fail "serve down: no warning: $(cat "$WORK/down.err")"
pki_client down12 "$PORT" -tls1_2 -no_ticket -sess_in "$WORK/sess12.pem"
expect down12 "New, TLSv1.2"
pki_client down13 "$PORT" -tls1_3
expect down13 "New, TLSv1.3"
pass "$impl: with Redis down, serve starts, warns and serves full handshakes"
