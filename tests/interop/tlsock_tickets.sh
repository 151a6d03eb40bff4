#!/usr/bin/env bash
# Session tickets through `tlsock serve`, with openssl s_client as the client, on the
# implementation given as $1 (--impl openssl or gnutls):
#  - two serve processes sharing a --ticket-keys file: a session from one resumes on the other
#    (TLS 1.3), and not on a third server with keys of its own;
#  - SIGHUP reloads the key file: after a new file, the old session no longer resumes there; a
#    bad file (readable by others) keeps the keys serving;
#  - a server sharing the key file that requires client certificates: a ticket from one that asks
#    for none gives a full handshake there, and a client without a certificate is refused;
#  - 0-RTT: the tickets allow no early data, so s_client sends none ("Early data was not sent");
#    given a copy of the session that claims to allow it (session_early_data.py), s_client sends
#    early data under a ticket the server can decrypt: the session resumes, the early data is
#    rejected ("Early data was rejected") and never echoed, while data sent after the handshake
#    is; openssl s_server -early_data first shows that this client's early data, when accepted,
#    is reported as "Early data was accepted";
#  - --no-tickets: no ticket reaches the client (no session file), the shared ticket is ignored;
#    TLS 1.2 still resumes by session ID, on both implementations (the session-ID cache,
#    docs/sessions.md), which is not a ticket.
source "$(dirname "$0")/lib.sh"
need OPENSSL_BIN PYTHON3_BIN
impl=${1:?usage: tlsock_tickets.sh openssl|gnutls}

"$TLSOCK_BIN" cert --out "$WORK/pki" --host localhost,127.0.0.1 >"$WORK/cert.out" 2>&1 ||
    fail "tlsock cert failed: $(cat "$WORK/cert.out")"
"$TLSOCK_BIN" cert --ticket-keys "$WORK/keys" --period 3600 >"$WORK/keys.out" 2>&1 ||
    fail "tlsock cert --ticket-keys failed: $(cat "$WORK/keys.out")"
grep -qx "wrote $WORK/keys" "$WORK/keys.out" ||
    fail "cert --ticket-keys said: $(cat "$WORK/keys.out")"
[ "$(stat -c %a "$WORK/keys")" = 600 ] || fail "key file mode $(stat -c %a "$WORK/keys"), not 600"
printf 'EARLY-DATA-%s\n' "$$" >"$WORK/early.txt"
early_token=$(cat "$WORK/early.txt")

# serve NAME ARGS...: a serve process on $impl with the shared certificate; sets PORT, BG_PID.
serve() {
    local name=$1
    shift
    start_tlsock_serve "$name" --impl "$impl" --cert "$WORK/pki/cert.pem" \
        --key "$WORK/pki/key.pem" "$@"
}

# expect NAME LINE: s_client's output NAME has exactly the line LINE (a fixed string).
expect() {
    grep -qxF -- "$2" "$WORK/$1.out" ||
        fail "$1: no line '$2' in: $(grep -E '^(New|Reused|Early)' "$WORK/$1.out" | tr '\n' ' ')"
}

# ---- two processes sharing the key file -------------------------------------------------------
serve a --ticket-keys "$WORK/keys"
port_a=$PORT pid_a=$BG_PID
serve b --ticket-keys "$WORK/keys"
port_b=$PORT pid_b=$BG_PID
serve own
port_own=$PORT

pki_client first "$port_a" -tls1_3 -sess_out "$WORK/sess.pem"
[ "$(s_client_session first)" = "New, TLSv1.3" ] ||
    fail "first: $(s_client_session first), expected a full handshake"
[ -s "$WORK/sess.pem" ] || fail "first: server a sent no ticket"
pki_client across "$port_b" -tls1_3 -sess_in "$WORK/sess.pem"
[ "$(s_client_session across)" = "Reused, TLSv1.3" ] ||
    fail "across: a's session on b: $(s_client_session across), expected Reused, TLSv1.3"
pass "$impl: a session from one serve process resumes on another sharing --ticket-keys"
pki_client own-keys "$port_own" -tls1_3 -sess_in "$WORK/sess.pem"
[ "$(s_client_session own-keys)" = "New, TLSv1.3" ] ||
    fail "own-keys: a server without the key file resumed: $(s_client_session own-keys)"
pass "$impl: not on a server with keys of its own"

# ---- a server that requires client certificates, sharing the key file -------------------------
# A resumed session is not verified again: a ticket from a (no client certificates asked) must
# not let a client without a certificate into a server that requires one. It gets a full
# handshake, and is refused.
serve auth --ticket-keys "$WORK/keys" --client-ca "$WORK/pki/ca.pem"
port_auth=$PORT
pki_client first12 "$port_a" -tls1_2 -sess_out "$WORK/sess12.pem"
for v in 1_3 1_2; do
    in="$WORK/sess.pem"
    [ "$v" = 1_3 ] || in="$WORK/sess12.pem"
    sleep 1 | "$TIMEOUT_BIN" -k 5 20 "$OPENSSL_BIN" s_client -connect "127.0.0.1:$port_auth" \
        -CAfile "$WORK/pki/ca.pem" "-tls$v" -sess_in "$in" >"$WORK/auth-$v.out" 2>&1 || true
    ! grep -q '^Reused,' "$WORK/auth-$v.out" ||
        fail "auth-$v: a ticket from a server asking no certificate resumed on one requiring it"
    grep -qE 'alert (certificate required|handshake failure|decode error)' "$WORK/auth-$v.out" ||
        fail "auth-$v: the client without a certificate was not refused: $(cat "$WORK/auth-$v.out")"
done
pass "$impl: a ticket does not skip the client certificate of a server sharing the key file"

# ---- 0-RTT ------------------------------------------------------------------------------------
"$OPENSSL_BIN" sess_id -in "$WORK/sess.pem" -noout -text >"$WORK/sess.txt" 2>&1 ||
    fail "openssl sess_id: $(cat "$WORK/sess.txt")"
grep -qE '^ *Max Early Data: 0$' "$WORK/sess.txt" ||
    fail "the ticket allows early data: $(cat "$WORK/sess.txt")"
pki_client early-plain "$port_b" -tls1_3 -sess_in "$WORK/sess.pem" -early_data "$WORK/early.txt"
expect early-plain "Early data was not sent"
! grep -qF "$early_token" "$WORK/early-plain.out" || fail "early-plain: the early data was echoed"

# The control: a server that accepts early data, and the line s_client prints then.
# s_server ends a connection when its input ends: the input is a FIFO held open meanwhile.
mkfifo "$WORK/s_server.in"
"$TIMEOUT_BIN" -k 5 30 "$OPENSSL_BIN" s_server -accept 0 -naccept 2 -early_data \
    -cert "$WORK/pki/cert.pem" -key "$WORK/pki/key.pem" <"$WORK/s_server.in" \
    >"$WORK/s_server.out" 2>"$WORK/s_server.err" &
BG_PIDS+=("$!")
exec 4>"$WORK/s_server.in"
line=$(wait_for "$WORK/s_server.out" '^ACCEPT' 10)
s_port=$(sed -nE 's/^ACCEPT .*:([0-9]+)$/\1/p' <<<"$line")
[ -n "$s_port" ] || fail "no port in s_server's '$line'"
# s_server echoes nothing: s_client's input stays open a second, for the tickets to arrive.
sleep 1 | "$TIMEOUT_BIN" -k 5 20 "$OPENSSL_BIN" s_client -connect "127.0.0.1:$s_port" -tls1_3 \
    -sess_out "$WORK/ctl.pem" >"$WORK/ctl-first.out" 2>&1 || true
[ -s "$WORK/ctl.pem" ] || fail "control: s_server sent no ticket"
sleep 1 | "$TIMEOUT_BIN" -k 5 20 "$OPENSSL_BIN" s_client -connect "127.0.0.1:$s_port" -tls1_3 \
    -sess_in "$WORK/ctl.pem" -early_data "$WORK/early.txt" >"$WORK/ctl.out" 2>&1 || true
expect ctl "Early data was accepted"
wait_for "$WORK/s_server.out" "$early_token" 5 >/dev/null
exec 4>&-

"$PYTHON3_BIN" "$(dirname "$0")/session_early_data.py" "$WORK/sess.pem" "$WORK/sess-ed.pem" ||
    fail "session_early_data.py failed"
"$OPENSSL_BIN" sess_id -in "$WORK/sess-ed.pem" -noout -text >"$WORK/sess-ed.txt" 2>&1 ||
    fail "openssl sess_id: $(cat "$WORK/sess-ed.txt")"
grep -qE '^ *Max Early Data: 16384$' "$WORK/sess-ed.txt" || fail "the copy allows no early data"
pki_client early "$port_b" -tls1_3 -sess_in "$WORK/sess-ed.pem" -early_data "$WORK/early.txt"
[ "$(s_client_session early)" = "Reused, TLSv1.3" ] ||
    fail "early: $(s_client_session early), expected Reused, TLSv1.3"
expect early "Early data was rejected"
# s_client_echo's token came back after the handshake; the early data never did.
! grep -qF "$early_token" "$WORK/early.out" || fail "early: the server echoed the early data"
pass "$impl: early data under a valid ticket is rejected and never reaches the application"

# ---- SIGHUP reloads the key file --------------------------------------------------------------
chmod 644 "$WORK/keys"
hup "$pid_b"
wait_for "$WORK/b.err" "ticket key file $WORK/keys is readable by others" 10 >/dev/null
wait_for "$WORK/b.err" 'SIGHUP: reload failed' 10 >/dev/null
pki_client bad-file "$port_b" -tls1_3 -sess_in "$WORK/sess.pem"
[ "$(s_client_session bad-file)" = "Reused, TLSv1.3" ] ||
    fail "bad-file: after a bad key file b no longer resumes: $(s_client_session bad-file)"
pass "$impl: SIGHUP with a bad key file keeps the keys"

"$TLSOCK_BIN" cert --ticket-keys "$WORK/keys" >>"$WORK/keys.out" 2>&1 || fail "new key file"
hup "$pid_a"
wait_for "$WORK/a.err" "SIGHUP: reloaded --cert .* --ticket-keys $WORK/keys" 10 >/dev/null
pki_client new-file "$port_a" -tls1_3 -sess_in "$WORK/sess.pem" -sess_out "$WORK/sess2.pem"
[ "$(s_client_session new-file)" = "New, TLSv1.3" ] ||
    fail "new-file: a reloaded a new secret, yet the old session resumed:" \
        "$(s_client_session new-file)"
pki_client new-session "$port_a" -tls1_3 -sess_in "$WORK/sess2.pem"
[ "$(s_client_session new-session)" = "Reused, TLSv1.3" ] ||
    fail "new-session: under the new key file: $(s_client_session new-session)"
pass "$impl: SIGHUP reloads a new key file (old sessions give a full handshake)"

# ---- --no-tickets ------------------------------------------------------------------------------
serve off --no-tickets
port_off=$PORT
pki_client off-13 "$port_off" -tls1_3 -sess_out "$WORK/off.pem"
[ ! -s "$WORK/off.pem" ] || fail "off-13: --no-tickets sent a TLS 1.3 ticket"
pki_client off-offered "$port_off" -tls1_3 -sess_in "$WORK/sess2.pem"
[ "$(s_client_session off-offered)" = "New, TLSv1.3" ] ||
    fail "off-offered: $(s_client_session off-offered)"
pki_client off-12 "$port_off" -tls1_2 -sess_out "$WORK/off12.pem"
pki_client off-12-again "$port_off" -tls1_2 -sess_in "$WORK/off12.pem"
[ "$(s_client_session off-12-again)" = "Reused, TLSv1.2" ] ||
    fail "off-12-again: $(s_client_session off-12-again), expected Reused, TLSv1.2 (by session ID)"
pass "$impl: --no-tickets: no TLS 1.3 resumption; TLS 1.2 resumes by session ID"
