#!/usr/bin/env bash
# Two `tlsock serve` processes sharing sessions through Redis (--session-store), on the
# implementation given as $1 (--impl openssl or gnutls), with openssl s_client as the client and a
# redis-server this script starts on a free loopback port (no persistence) and stops:
#  - TLS 1.2 by session ID (-no_ticket): a session from serve a resumes on serve b, both on the
#    same Redis; not on a serve process without --session-store;
#  - TLS 1.3 tickets: --session-store without --ticket-keys shares the ticket secret through
#    Redis (tlsock_redis_store_ticket_keys()), so a ticket from a resumes on b; not on a serve
#    process with keys of its own. The key file each process keeps is removed when it exits;
#  - a ticket secret replaced in Redis (the key text written there, as docs/sessions.md says) is
#    picked up by every --session-store process on its own, without SIGHUP: a ticket issued after
#    the change resumes on a server holding only the new key file and on the other process, and
#    a ticket from before the change no longer resumes;
#  - a Redis with requirepass and the narrowest ACL user docs/sessions.md gives: two serve
#    processes with the user's credentials in the URL share sessions and tickets; a wrong password
#    gives full handshakes and Redis's reason, never the password;
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

# ---- a secret replaced in Redis, picked up without SIGHUP ---------------------------------------
# redis_set KEY FILE: SET KEY to FILE's bytes on our redis-server.
redis_set() {
    "$TIMEOUT_BIN" 15 "$PYTHON3_BIN" - "$redis_port" "$1" "$2" <<'EOF'
import socket, sys
key = sys.argv[2].encode()
value = open(sys.argv[3], "rb").read()
cmd = b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(value), value)
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5) as s:
    s.sendall(cmd)
    reply = s.recv(64)
sys.exit(0 if reply.startswith(b"+OK") else 1)
EOF
}
# A period of 8 s: the processes poll Redis every quarter of it (2 s).
"$TLSOCK_BIN" cert --ticket-keys "$WORK/keys1" --period 8 >/dev/null
"$TLSOCK_BIN" cert --ticket-keys "$WORK/keys2" --period 8 >/dev/null
redis_set tlsock:ticket-keys "$WORK/keys1" || fail "cannot SET the first ticket keys in Redis"
serve c --session-store "$store"
port_c=$PORT
# d without --cert: a reload keeps its throw-away certificate, so the CA it wrote at start still
# verifies it after the keys changed.
mkdir -p "$WORK/tmp-d"
TMPDIR="$WORK/tmp-d" start_tlsock_serve d --impl "$impl" --ca-out "$WORK/d-ca.pem" \
    --session-store "$store"
port_d=$PORT
cp "$WORK/d-ca.pem" "$WORK/d-ca-start.pem"
# d_client NAME ARGS...: s_client to d, verified against the CA d wrote at start.
d_client() {
    local name=$1
    shift
    s_client_echo "$name" -connect "127.0.0.1:$port_d" -CAfile "$WORK/d-ca-start.pem" \
        -verify_return_error "$@" || fail "$name: s_client failed: $(cat "$WORK/$name.err")"
}
pki_client before13 "$port_c" -tls1_3 -sess_out "$WORK/before13.pem"
expect before13 "New, TLSv1.3"
redis_set tlsock:ticket-keys "$WORK/keys2" || fail "cannot SET the new ticket keys in Redis"
serve k2 --ticket-keys "$WORK/keys2"
port_k2=$PORT
# Until a fresh ticket of c resumes on a server of the new key file alone (bounded: c polls every
# 2 s, so 20 tries of about half a second each are plenty).
picked=false
for i in $(seq 1 20); do
    pki_client "after13-$i" "$port_c" -tls1_3 -sess_out "$WORK/after13.pem"
    pki_client "onk2-$i" "$port_k2" -tls1_3 -sess_in "$WORK/after13.pem"
    if [ "$(s_client_session "onk2-$i")" = "Reused, TLSv1.3" ]; then
        picked=true
        break
    fi
    sleep 0.3
done
$picked || fail "serve c never issued tickets under the secret replaced in Redis: $(cat "$WORK/c.err")"
wait_for "$WORK/c.err" "new ticket keys from Redis: reloaded" 5 >/dev/null
pass "$impl: serve picks up a ticket secret replaced in Redis by itself"
# d polls on its own schedule: its reload line within a few polls, then a new ticket of c resumes
# there (a fresh one: with 8 s periods, one from before the wait may be two periods old).
wait_for "$WORK/d.err" "new ticket keys from Redis: reloaded" 15 >/dev/null
pki_client for-d "$port_c" -tls1_3 -sess_out "$WORK/for-d.pem"
d_client across-new -tls1_3 -sess_in "$WORK/for-d.pem"
expect across-new "Reused, TLSv1.3"
d_client before-on-d -tls1_3 -sess_in "$WORK/before13.pem"
expect before-on-d "New, TLSv1.3"
if grep -q SIGHUP "$WORK/c.err" "$WORK/d.err"; then
    fail "a SIGHUP line: $(cat "$WORK/c.err" "$WORK/d.err")"
fi
pass "$impl: a ticket issued after the change resumes on the other process, one from before does not"

# ---- a Redis with a password and an ACL user -----------------------------------------------------
# redis_cmd WORD...: one command (no AUTH) on our redis-server; true if Redis answers +OK.
redis_cmd() {
    "$TIMEOUT_BIN" 15 "$PYTHON3_BIN" - "$redis_port" "$@" <<'EOF'
import socket, sys
words = [w.encode() for w in sys.argv[2:]]
cmd = b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5) as s:
    s.sendall(cmd)
    reply = s.recv(64)
sys.exit(0 if reply.startswith(b"+OK") else 1)
EOF
}
# The narrowest user docs/sessions.md gives, then requirepass: nothing gets in without them.
redis_cmd ACL SETUSER tlsock on '>t@ls pw' '~tlsock:*' -@all +ping +get +set +del +select +eval ||
    fail "cannot make the ACL user"
redis_cmd CONFIG SET requirepass 'default pw' || fail "cannot set requirepass"
authed="redis://tlsock:t%40ls%20pw@127.0.0.1:$redis_port/1"
serve ua --session-store "$authed"
port_ua=$PORT
serve ub --session-store "$authed"
port_ub=$PORT
pki_client auth12 "$port_ua" -tls1_2 -no_ticket -sess_out "$WORK/auth12.pem"
expect auth12 "New, TLSv1.2"
pki_client auth12b "$port_ub" -tls1_2 -no_ticket -sess_in "$WORK/auth12.pem"
expect auth12b "Reused, TLSv1.2"
pki_client auth13 "$port_ua" -tls1_3 -sess_out "$WORK/auth13.pem"
pki_client auth13b "$port_ub" -tls1_3 -sess_in "$WORK/auth13.pem"
expect auth13b "Reused, TLSv1.3"
if grep -i "redis\|warning" "$WORK/ua.err" "$WORK/ub.err"; then
    fail "serve with the ACL user's URL complained"
fi
pass "$impl: an ACL user's credentials in the URL (AUTH): sessions and tickets shared"
serve wrongpw --session-store "redis://tlsock:wrong-pw@127.0.0.1:$redis_port/1"
pki_client wrongpw12 "$PORT" -tls1_2 -no_ticket
expect wrongpw12 "New, TLSv1.2"
wait_for "$WORK/wrongpw.err" "WRONGPASS" 5 >/dev/null ||
    fail "serve wrongpw: no WRONGPASS line: $(cat "$WORK/wrongpw.err")"
if grep -q "wrong-pw" "$WORK/wrongpw.err"; then
    fail "serve showed the password: $(cat "$WORK/wrongpw.err")"
fi
pass "$impl: a wrong password: full handshakes, Redis's reason logged, the password never shown"

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
