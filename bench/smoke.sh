#!/bin/sh
# Smoke test of tlsock-bench (CTest label bench): every case runs once, briefly, the run succeeds,
# and stderr has exactly one progress line per case, in --list order, and nothing else. No figure
# is checked: timings in tests only make them flaky (docs/BENCHMARKS.md).
# Usage: smoke.sh TLSOCK-BENCH
set -eu

bench=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$bench" --list | awk '{ print $1 }' >"$tmp/cases"
if ! "$bench" --rounds 1 --seconds 0.05 --connections 100 >"$tmp/out" 2>"$tmp/err"; then
    echo "smoke: tlsock-bench failed" >&2
    cat "$tmp/err" >&2
    exit 1
fi
if ! awk '{ print $1 }' "$tmp/err" | diff "$tmp/cases" - >&2; then
    echo "smoke: stderr is not one progress line per case:" >&2
    cat "$tmp/err" >&2
    exit 1
fi
# The table has a row for every case: its figures, SKIPPED, or FAILED.
while read -r name; do
    if ! grep -q "^$name " "$tmp/out"; then
        echo "smoke: no row for $name in the table" >&2
        cat "$tmp/out" >&2
        exit 1
    fi
done <"$tmp/cases"
echo "smoke: $(wc -l <"$tmp/cases") cases ran, one progress line each"
