#!/usr/bin/env bash
# Client resumption from the command line (docs/sessions.md), `tlsock connect` against
# `tlsock serve`, for every pair of client and server implementations:
# (a) --reconnect 2: "connection 1: resumed no", then "resumed yes" twice (the context's cache);
# (b) --sess-out (over a file of mode 0644, left mode 0600), then a new process with --sess-in:
#     "resumed yes";
# (c) that file offered to another server (its own key and certificate, the same port, name and
#     trust): "resumed no", exit 0, no error;
# (d) a file that is not a session: a warning naming it, a full handshake, exit 0;
# (e) examples/resumed_client against `serve --http`: its second run resumes from its file.
source "$(dirname "$0")/lib.sh"

make_certs "$WORK/a" localhost
make_certs "$WORK/b" localhost
# One trust file for every run: the client's configuration (hence its sessions' digest) is the
# same whichever server it meets.
cat "$WORK/a/ca.pem" "$WORK/b/ca.pem" >"$WORK/cas.pem"

# resumed NAME: what $WORK/NAME.err says of each connection, space-separated: its
# "connection I: resumed yes|no" lines (--reconnect), else the info block's "resumed" line.
resumed() {
    if grep -Eq '^connection [0-9]+: resumed ' "$WORK/$1.err"; then
        grep -E '^connection [0-9]+: resumed (yes|no)$' "$WORK/$1.err" | awk '{print $4}' | xargs
    else
        grep -E '^  resumed +(yes|no)$' "$WORK/$1.err" | awk '{print $2}' | xargs
    fi
}

# expect_resumed NAME WANT: resumed NAME must print WANT.
expect_resumed() {
    local got
    got=$(resumed "$1")
    [ "$got" = "$2" ] || fail "$1: resumed '$got', expected '$2': $(cat "$WORK/$1.err")"
}

tlsock_impls
for server in $IMPLS; do
    for client in $IMPLS; do
        pair="$client-$server"
        C=(--impl "$client" --ca "$WORK/cas.pem")
        start_tlsock_serve "a-$pair" --impl "$server" --cert "$WORK/a/cert.pem" \
            --key "$WORK/a/key.pem"
        A_PID=$BG_PID
        connect_run "reconnect-$pair" 0 "${C[@]}" --reconnect 2 "localhost:$PORT"
        expect_resumed "reconnect-$pair" "no yes yes"
        pass "$pair: --reconnect 2 resumes the second and third connections"

        # A file that is already there, readable by others (an older run's, or made by hand):
        # --sess-out must still leave the secrets readable by the owner only.
        install -m 644 /dev/null "$WORK/sess-$pair"
        connect_run "out-$pair" 0 "${C[@]}" --sess-out "$WORK/sess-$pair" "localhost:$PORT"
        expect_resumed "out-$pair" "no"
        [ -s "$WORK/sess-$pair" ] || fail "$pair: --sess-out wrote nothing"
        [ "$(stat -c %a "$WORK/sess-$pair")" = 600 ] || fail "$pair: session file not mode 0600"
        connect_run "in-$pair" 0 "${C[@]}" --sess-in "$WORK/sess-$pair" "localhost:$PORT"
        expect_resumed "in-$pair" "yes"
        pass "$pair: --sess-out, then --sess-in in a new process, resumes"

        # Another server on the same port: the session is offered, refused, and never an error.
        stop_bg "$A_PID" 10
        start_tlsock_serve "b-$pair" --impl "$server" --listen "127.0.0.1:$PORT" \
            --cert "$WORK/b/cert.pem" --key "$WORK/b/key.pem"
        connect_run "other-$pair" 0 "${C[@]}" --sess-in "$WORK/sess-$pair" "localhost:$PORT"
        expect_resumed "other-$pair" "no"
        grep -qi 'error' "$WORK/other-$pair.err" && fail "other-$pair: $(cat "$WORK/other-$pair.err")"
        pass "$pair: another server's session file: a full handshake, no error"

        echo "not a session" >"$WORK/junk"
        connect_run "junk-$pair" 0 "${C[@]}" --sess-in "$WORK/junk" "localhost:$PORT"
        expect_resumed "junk-$pair" "no"
        has "junk-$pair" "$WORK/junk"
        stop_bg "$BG_PID" 10
        pass "$pair: a file that is not a session: a warning naming it, a full handshake"
    done
done

# (e) The export/import example, one process per run, on every server implementation.
[ -n "${RESUMED_CLIENT_BIN:-}" ] || fail "RESUMED_CLIENT_BIN is not set (examples not built?)"
for server in $IMPLS; do
    start_tlsock_serve "http-$server" --impl "$server" --http --cert "$WORK/a/cert.pem" \
        --key "$WORK/a/key.pem"
    for run in 1 2; do
        "$TIMEOUT_BIN" -k 5 30 "$RESUMED_CLIENT_BIN" localhost "$PORT" "$WORK/example-$server" \
            "$WORK/a/ca.pem" >"$WORK/example-$server-$run.out" 2>"$WORK/example-$server-$run.err" ||
            fail "resumed_client run $run exited $?: $(cat "$WORK/example-$server-$run.err")"
        grep -q '^HTTP/1' "$WORK/example-$server-$run.out" || fail "resumed_client: no HTTP reply"
    done
    has "example-$server-1" "resumed no"
    has "example-$server-2" "resumed yes"
    stop_bg "$BG_PID" 10
    pass "$server: examples/resumed_client resumes across runs through its file"
done
