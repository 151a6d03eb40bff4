# Helpers shared by the interop scripts (sourced, not run).
#
# Every script gets the programs through the environment (set by CMakeLists.txt):
#   TLSOCK_BIN  the tlsock tool      OPENSSL_BIN, CURL_BIN, GNUTLS_CLI_BIN, GNUTLS_SERV_BIN,
#                                    PYTHON3_BIN
# Every process a script starts in the background goes through start_bg, is wrapped in
# `timeout` (so it dies even if this shell is killed outright) and is killed by the EXIT trap.
# Every wait is bounded. Exit status 77 means "skipped" (a peer program is missing).

set -euo pipefail

TIMEOUT_BIN=${TIMEOUT_BIN:-timeout}
# Background programs outlive no test: the CTest TIMEOUT is 60 s.
BG_LIMIT=90
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tlsock-interop.XXXXXX")
BG_PIDS=()

# Peers must not pick up trust settings from the caller's environment.
unset SSL_CERT_FILE SSL_CERT_DIR CURL_CA_BUNDLE

cleanup() {
    local rc=$?
    local pid
    # Cleanup runs to the end even if another signal comes.
    trap - EXIT
    trap "" INT TERM
    for pid in "${BG_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    # Give them a moment to stop cleanly, then insist.
    for _ in $(seq 1 50); do
        local alive=0
        for pid in "${BG_PIDS[@]}"; do
            if kill -0 "$pid" 2>/dev/null; then
                alive=1
            fi
        done
        if [ "$alive" = 0 ]; then
            break
        fi
        sleep 0.1
    done
    for pid in "${BG_PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
        echo "--- logs in $WORK ---" >&2
        for f in "$WORK"/*.out "$WORK"/*.err; do
            if [ -s "$f" ]; then
                echo "=== $f" >&2
                tail -n 40 "$f" >&2
            fi
        done
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

pass() {
    echo "ok: $*"
}

skip() {
    echo "SKIP: $*"
    exit 77
}

# need VAR...: skip unless each variable names an executable.
need() {
    local var
    for var in "$@"; do
        if [ -z "${!var:-}" ] || [ ! -x "${!var}" ]; then
            skip "$var is not available"
        fi
    done
}

# start_bg NAME CMD...: runs CMD in the background with stdout in $WORK/NAME.out and stderr in
# $WORK/NAME.err; sets BG_PID.
start_bg() {
    local name=$1
    shift
    "$TIMEOUT_BIN" -k 5 "$BG_LIMIT" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" </dev/null &
    BG_PID=$!
    BG_PIDS+=("$BG_PID")
}

# bg_child PID: the program that start_bg runs under the timeout(1) PID (empty once it ended).
bg_child() {
    awk '{print $1}' "/proc/$1/task/$1/children" 2>/dev/null || true
}

# hup PID: SIGHUP to the tlsock process under the timeout(1) that start_bg made (timeout would
# pass the first one on to its whole group and ignore the next).
hup() {
    local child
    child=$(bg_child "$1")
    [ -n "$child" ] || fail "no tlsock process under pid $1"
    kill -HUP "$child"
}

# wait_for FILE REGEX SECONDS: waits until a line of FILE matches REGEX (grep -E) and prints
# the first such line; fails after SECONDS.
wait_for() {
    local file=$1
    local regex=$2
    local limit=$3
    local tries=$((limit * 20))
    for _ in $(seq 1 "$tries"); do
        if [ -f "$file" ] && grep -Eq -- "$regex" "$file"; then
            grep -Em1 -- "$regex" "$file"
            return 0
        fi
        sleep 0.05
    done
    fail "no line matching '$regex' in $file after ${limit}s"
}

# start_tlsock NAME COMMAND ARGS...: starts `tlsock COMMAND ARGS` (serve, tunnel) and sets PORT
# from its first line, "listening on HOST:PORT".
start_tlsock() {
    local name=$1
    shift
    local line
    start_bg "$name" "$TLSOCK_BIN" "$@"
    line=$(wait_for "$WORK/$name.out" '^listening on ' 10)
    PORT=${line##*:}
    case "$PORT" in
    '' | *[!0-9]*) fail "bad listening line: $line" ;;
    esac
}

# start_tlsock_serve NAME ARGS...: starts `tlsock serve ARGS` and sets PORT from its first line.
start_tlsock_serve() {
    local name=$1
    shift
    start_tlsock "$name" serve "$@"
}

# listeners_on PORT: how many TCP sockets listen on PORT (IPv4 and IPv6), from /proc/net.
listeners_on() {
    local hex
    hex=$(printf '%04X' "$1")
    # Field 2 is the local ADDR:PORT in hex, field 4 the state (0A: LISTEN).
    cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
        awk -v port=":$hex" 'substr($2, length($2) - 4) == port && $4 == "0A"' | wc -l
}

# hold_s_client NAME ARGS...: starts `openssl s_client ARGS` with its stdin on a FIFO that stays
# open until release_s_clients (HELD_FD is the descriptor that feeds it, for more input). Its
# output is in $WORK/NAME.out.
HELD_PIDS=()
HELD_FDS=()
hold_s_client() {
    local name=$1
    shift
    mkfifo "$WORK/$name.in"
    "$TIMEOUT_BIN" -k 5 30 "$OPENSSL_BIN" s_client "$@" <"$WORK/$name.in" >"$WORK/$name.out" \
        2>"$WORK/$name.err" &
    HELD_PIDS+=("$!")
    BG_PIDS+=("$!")
    exec {HELD_FD}>"$WORK/$name.in"
    HELD_FDS+=("$HELD_FD")
}

# release_s_clients WHAT: ends the input of every client hold_s_client started; fails, naming
# WHAT, unless each one then exits 0.
release_s_clients() {
    local fd pid
    for fd in "${HELD_FDS[@]}"; do
        exec {fd}>&-
    done
    for pid in "${HELD_PIDS[@]}"; do
        wait "$pid" || fail "$1: a client held open failed"
    done
    HELD_PIDS=()
    HELD_FDS=()
}

# s_client_echo NAME ARGS...: runs `openssl s_client ARGS` with its stdin on a FIFO, sends a
# token, waits for the echo, then ends the input (s_client sends close_notify and leaves) and
# returns s_client's exit status. Its output is in $WORK/NAME.out, checked after it exits
# because s_client buffers its session summary.
s_client_echo() {
    local name=$1
    shift
    local token="echo-$name-$$-$RANDOM"
    local pid
    local status=0
    mkfifo "$WORK/$name.in"
    "$TIMEOUT_BIN" -k 5 30 "$OPENSSL_BIN" s_client "$@" <"$WORK/$name.in" >"$WORK/$name.out" \
        2>"$WORK/$name.err" &
    pid=$!
    BG_PIDS+=("$pid")
    exec 3>"$WORK/$name.in"
    echo "$token" >&3
    # Not anchored: the echo may land in the middle of s_client's own session printout.
    wait_for "$WORK/$name.out" "$token" 10 >/dev/null
    exec 3>&-
    wait "$pid" || status=$?
    return "$status"
}

# pki_client NAME PORT ARGS...: s_client_echo to 127.0.0.1:PORT, verified against the CA of
# make_certs "$WORK/pki"; fails the script if s_client fails.
pki_client() {
    local name=$1
    local port=$2
    shift 2
    s_client_echo "$name" -connect "127.0.0.1:$port" -CAfile "$WORK/pki/ca.pem" \
        -verify_return_error "$@" || fail "$name: s_client failed: $(cat "$WORK/$name.err")"
}

# s_client_session NAME: "New, TLSv1.3", "Reused, TLSv1.2"... of s_client's output NAME.
s_client_session() {
    sed -nE 's/^(New|Reused), (TLSv1\.[23]),.*/\1, \2/p' "$WORK/$1.out" | head -1
}

# gnutls_cli_echo NAME PORT CAFILE: gnutls-cli verifies localhost:PORT against CAFILE (chain and
# host name), sends a token and waits for its echo; returns gnutls-cli's exit status, with its
# output in $WORK/NAME.out.
gnutls_cli_echo() {
    local name=$1
    local port=$2
    local ca=$3
    local token="gnutls-echo-$name-$$-$RANDOM"
    local pid
    local status=0
    mkfifo "$WORK/$name.in"
    "$TIMEOUT_BIN" -k 5 30 "$GNUTLS_CLI_BIN" --x509cafile "$ca" -p "$port" localhost \
        <"$WORK/$name.in" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    pid=$!
    BG_PIDS+=("$pid")
    exec 3>"$WORK/$name.in"
    echo "$token" >&3
    wait_for "$WORK/$name.out" "$token" 10 >/dev/null
    exec 3>&-
    wait "$pid" || status=$?
    grep -q 'Status: The certificate is trusted' "$WORK/$name.out" ||
        fail "$name: gnutls-cli did not verify the server"
    return "$status"
}

# running PID: true while the process runs (kill -0 also succeeds on a zombie not yet waited for).
running() {
    local state
    state=$(sed -E 's/.*\) (.).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# stop_bg PID SECONDS: sends SIGTERM to the program a start_bg PID runs and waits for it to exit;
# sets STOPPED_STATUS (timeout(1) exits with the program's status) and STOPPED_MS. Fails after
# SECONDS. The signal goes to the program itself, not through timeout: timeout follows a signal
# it passes on with SIGCONT to the whole group, and a late SIGCONT cancels the stop with which
# LeakSanitizer suspends the exiting program to scan it, which then never ends (ASan builds).
stop_bg() {
    local pid=$1
    local limit=$2
    local start
    local child
    start=$(($(date +%s%N) / 1000000))
    child=$(bg_child "$pid")
    kill -TERM "${child:-$pid}" 2>/dev/null || true
    for _ in $(seq 1 $((limit * 20))); do
        running "$pid" || break
        sleep 0.05
    done
    running "$pid" && fail "process $pid still running ${limit}s after SIGTERM"
    STOPPED_STATUS=0
    wait "$pid" || STOPPED_STATUS=$?
    STOPPED_MS=$(($(date +%s%N) / 1000000 - start))
}

# start_s_server NAME ARGS...: starts `openssl s_server -accept 127.0.0.1:0 ARGS` and sets PORT
# from the "ACCEPT 127.0.0.1:PORT" line it prints (OpenSSL 3 reports the chosen port there).
start_s_server() {
    local name=$1
    shift
    local line
    start_bg "$name" "$OPENSSL_BIN" s_server -accept 127.0.0.1:0 "$@"
    line=$(wait_for "$WORK/$name.out" '^ACCEPT ' 10)
    PORT=${line##*:}
    case "$PORT" in
    '' | *[!0-9]*) fail "s_server did not report its port: $line" ;;
    esac
}

# expect_status WANT DESCRIPTION CMD...: runs CMD (bounded by timeout) and checks its status.
expect_status() {
    local want=$1
    local what=$2
    shift 2
    local got=0
    "$TIMEOUT_BIN" -k 5 30 "$@" || got=$?
    if [ "$got" != "$want" ]; then
        fail "$what: exit status $got, expected $want"
    fi
    pass "$what (exit $got)"
}

# make_certs DIR HOSTS: a CA, certificate and key from `tlsock cert`.
make_certs() {
    "$TIMEOUT_BIN" 30 "$TLSOCK_BIN" cert --out "$1" --host "$2" >"$WORK/cert.out" ||
        fail "tlsock cert failed"
    local f
    for f in ca.pem cert.pem key.pem; do
        [ -s "$1/$f" ] || fail "tlsock cert did not write $1/$f"
    done
}

# tlsock_impls: sets IMPLS to the implementations `tlsock version` lists as compiled in.
tlsock_impls() {
    IMPLS=$("$TIMEOUT_BIN" 10 "$TLSOCK_BIN" version | awk 'NR > 1 && !/not compiled in/ {print $1}')
    [ -n "$IMPLS" ] || fail "tlsock version lists no implementation"
}

# A PKI made with the openssl tool in the directory $PKI, which the script sets.
# ossl ARGS...: runs `openssl ARGS` (bounded), output to $WORK/openssl.out; fails on an error.
ossl() {
    "$TIMEOUT_BIN" 30 "$OPENSSL_BIN" "$@" >>"$WORK/openssl.out" 2>&1 || fail "openssl $1 failed"
}
# new_key NAME: an EC P-256 key in $PKI/NAME.key.
new_key() {
    ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$1.key"
}
# new_root CN: a self-signed CA, $PKI/root.pem and $PKI/root.key.
new_root() {
    new_key root
    ossl req -x509 -new -key "$PKI/root.key" -subj "/CN=$1" -days 30 \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        -out "$PKI/root.pem"
}
# issue NAME ISSUER EXTENSIONS: $PKI/NAME.pem for $PKI/NAME.key, signed by ISSUER.
issue() {
    printf '%b' "$3" >"$PKI/$1.ext"
    ossl req -new -key "$PKI/$1.key" -subj "/CN=$1" -out "$PKI/$1.csr"
    ossl x509 -req -in "$PKI/$1.csr" -CA "$PKI/$2.pem" -CAkey "$PKI/$2.key" -set_serial \
        "0x$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')" -days 30 -extfile "$PKI/$1.ext" \
        -out "$PKI/$1.pem"
}

# connect_run NAME WANT CONNECT-ARGS...: `tlsock connect` with stdin closed must exit WANT; its
# stderr is $WORK/NAME.err.
connect_run() {
    local name=$1
    local want=$2
    shift 2
    local got=0
    "$TIMEOUT_BIN" -k 5 30 "$TLSOCK_BIN" connect "$@" </dev/null >"$WORK/$name.out" \
        2>"$WORK/$name.err" || got=$?
    [ "$got" = "$want" ] || fail "$name: exit status $got, expected $want: $(cat "$WORK/$name.err")"
}
# plain_exchange PORT INFILE NAME: a plaintext TCP client of 127.0.0.1:PORT sends INFILE, shuts
# its sending side down and writes everything it gets back to $WORK/NAME.out (stderr to
# $WORK/NAME.err); returns its exit status.
plain_exchange() {
    "$TIMEOUT_BIN" -k 5 30 "$PYTHON3_BIN" -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
s.sendall(open(sys.argv[2], "rb").read())
s.shutdown(socket.SHUT_WR)
got = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    got += d
sys.stdout.buffer.write(got)
' "$1" "$2" >"$WORK/$3.out" 2>"$WORK/$3.err"
}

# start_peers_coproc WHAT SECONDS CMD...: runs CMD (a peer script that talks to this one through
# its standard input and output) as a coprocess for at most SECONDS, its stderr in
# $WORK/peers_WHAT.err; sets PEERS_BG (stopped by cleanup if still running), FROM_PEERS and TO_PEERS
# (descriptors of its output and input) and PEERS_FIRST, its first line, read within 10 s.
start_peers_coproc() {
    local what=$1 seconds=$2
    shift 2
    coproc PEERS { "$TIMEOUT_BIN" -k 5 "$seconds" "$@" 2>"$WORK/peers_$what.err"; }
    PEERS_BG=$PEERS_PID
    BG_PIDS+=("$PEERS_BG")
    # Copies: bash closes the coproc's own descriptors as soon as the coproc exits.
    exec {FROM_PEERS}<&"${PEERS[0]}" {TO_PEERS}>&"${PEERS[1]}"
    read -r -t 10 PEERS_FIRST <&"$FROM_PEERS" || fail "$what: the peers did not start"
}

# end_peers WHAT [CONTEXT]: closes the descriptors of start_peers_coproc, and fails unless the
# peer script exited 0 (the message has CONTEXT and its stderr).
end_peers() {
    local status=0
    exec {FROM_PEERS}<&- {TO_PEERS}>&-
    wait "$PEERS_BG" || status=$?
    [ "$status" = 0 ] ||
        fail "$1: the peers exited $status: ${2:-}$(cat "$WORK/peers_$1.err")"
}

# field NAME LINE: the value of NAME=... in LINE (a peer script's report).
field() {
    sed -nE "s/.*(^| )$1=([^ ]*).*/\\2/p" <<<"$2"
}

# has NAME TEXT: $WORK/NAME.err contains TEXT.
has() {
    grep -qF -- "$2" "$WORK/$1.err" || fail "$1: no '$2' in: $(cat "$WORK/$1.err")"
}

# The tool under test must exist: a missing binary is a failure, never a skip.
if [ -z "${TLSOCK_BIN:-}" ] || [ ! -x "$TLSOCK_BIN" ]; then
    fail "TLSOCK_BIN '${TLSOCK_BIN:-}' is not an executable (build the tlsock_cli target)"
fi
