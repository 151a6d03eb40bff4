#!/usr/bin/env bash
# (e) `tlsock demo` exits 0: the trusted session worked (and printed what it negotiated) and
#     the client trusting only the system store was refused with a verification error.
source "$(dirname "$0")/lib.sh"

status=0
"$TIMEOUT_BIN" -k 5 30 "$TLSOCK_BIN" demo >"$WORK/demo.out" 2>"$WORK/demo.err" || status=$?
[ "$status" = 0 ] || fail "tlsock demo exited $status"
grep -Eq '^ +ALPN +demo/1$' "$WORK/demo.out" || fail "no ALPN demo/1 in the session block"
grep -Eq '^ +verify +ok$' "$WORK/demo.out" || fail "the trusted session was not verified"
grep -Eq '^ +peer SANs +.*DNS:localhost' "$WORK/demo.out" || fail "no peer SANs shown"
grep -q 'refused, as it must be: certificate verification failed' "$WORK/demo.out" ||
    fail "the rejection is not printed"
grep -Eq '^ +reason: .+' "$WORK/demo.out" || fail "no verification reason printed"
grep -q '^demo passed' "$WORK/demo.out" || fail "no final verdict"
pass "tlsock demo: verified session and refused untrusted client"
