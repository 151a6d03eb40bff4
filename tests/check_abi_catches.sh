#!/bin/sh
# The ABI check must catch what it is there for (docs/ABI.md). From a baseline made of the library
# as built, scripts/check-abi must pass; with a function the library lacks (a removal) it must fail
# and call the change incompatible; with a function the baseline lacks (an addition) it must fail
# and ask for the baseline to be updated. The committed baseline is compared by `make abi-check`.
# Usage: check_abi_catches.sh SOURCE_DIR BUILD_DIR
set -eu
src=$1
build=$2
work=$(mktemp -d /tmp/tlsock-abi-XXXXXX)
trap 'rm -rf "$work"' EXIT

fail() {
    echo "check_abi_catches: $*" >&2
    exit 1
}

abidw --headers-dir "$src/include" --drop-private-types --no-show-locs --no-corpus-path \
    --out-file "$work/same.abi" "$build/src/libtlsock.so"
grep -q "name='tlsock_free'" "$work/same.abi" || fail "tlsock_free is not in the library's ABI"

"$src/scripts/check-abi" "$build" "$work/same.abi" >"$work/same.out" 2>&1 ||
    fail "the library differs from its own ABI: $(cat "$work/same.out")"

# The baseline has tlsock_gone where the library has tlsock_free: a removed function.
sed "s/'tlsock_free'/'tlsock_gone'/g; s/tlsock_free@@/tlsock_gone@@/g" "$work/same.abi" \
    >"$work/removed.abi"
if "$src/scripts/check-abi" "$build" "$work/removed.abi" >"$work/removed.out" 2>&1; then
    fail "a removed function was not caught"
fi
grep -q "INCOMPATIBLE" "$work/removed.out" || fail "a removal not called incompatible"
grep -q "tlsock_gone" "$work/removed.out" || fail "the removed function not named"

# The baseline lacks tlsock_free: an added function.
sed "/<elf-symbol name='tlsock_free'/d; /<function-decl name='tlsock_free'/,/<\/function-decl>/d" \
    "$work/same.abi" >"$work/added.abi"
if "$src/scripts/check-abi" "$build" "$work/added.abi" >"$work/added.out" 2>&1; then
    fail "an added function was not reported"
fi
grep -q "added functions" "$work/added.out" || fail "an addition not reported as one"
if grep -q "INCOMPATIBLE" "$work/added.out"; then
    fail "an addition called incompatible"
fi
echo "check_abi_catches: ok"
