#!/bin/sh
# fuzz/coverage.sh COV_BUILD [WORK]: runs each harness of COV_BUILD (configured with
# TLSOCK_FUZZ_COVERAGE=ON: clang source-based coverage, standalone driver) over the committed
# corpus, fresh seeds from fuzz_seeds, and WORK/corpus/HARNESS when it exists (what `make fuzz`
# kept), then reports the coverage of the library's own files (src/) with llvm-cov: per harness in
# COV_BUILD/coverage/HARNESS.txt, all harnesses together in COV_BUILD/coverage/all.txt, and line
# by line in COV_BUILD/coverage/html/index.html.
set -eu

if [ $# -lt 1 ]; then
    echo "usage: fuzz/coverage.sh COV_BUILD [WORK]" >&2
    exit 2
fi
build=$1
work=${2:-}
src=$(cd "$(dirname "$0")/.." && pwd)
out=$build/coverage
profdata=${LLVM_PROFDATA:-llvm-profdata-14}
cov=${LLVM_COV:-llvm-cov-14}
# Only the library: not the harnesses, not the system's headers.
ignore='/fuzz/|^/usr/'

rm -rf "$out"
mkdir -p "$out"
# fuzz_seeds is instrumented too: its profile is kept apart from the harnesses'.
LLVM_PROFILE_FILE="$out/seeds.profraw" "$build/fuzz/fuzz_seeds" "$out/seeds" --keys >/dev/null
"$src/fuzz/tool_seeds.sh" "$out/seeds"
# llvm-cov takes the first program as an operand and the others as -object options.
objects=""
for h in server client certs session; do
    dirs="$src/fuzz/corpus/$h $out/seeds/$h"
    if [ -n "$work" ] && [ -d "$work/corpus/$h" ]; then
        dirs="$dirs $work/corpus/$h"
    fi
    # shellcheck disable=SC2086 # $dirs is a list of directories
    LLVM_PROFILE_FILE="$out/$h-%p.profraw" "$build/fuzz/fuzz_$h" $dirs >"$out/$h.log" 2>&1
    "$profdata" merge -sparse "$out"/"$h"-*.profraw -o "$out/$h.profdata"
    "$cov" report "$build/fuzz/fuzz_$h" -instr-profile="$out/$h.profdata" \
        -ignore-filename-regex="$ignore" >"$out/$h.txt"
    echo "fuzz_$h ($(tail -n 1 "$out/$h.log")): $(grep '^TOTAL' "$out/$h.txt")"
    objects="${objects:+$objects -object }$build/fuzz/fuzz_$h"
done
"$profdata" merge -sparse "$out"/*.profdata -o "$out/all.profdata"
# shellcheck disable=SC2086 # $objects is a list of options
"$cov" report $objects -instr-profile="$out/all.profdata" -ignore-filename-regex="$ignore" \
    >"$out/all.txt"
# shellcheck disable=SC2086
"$cov" show $objects -instr-profile="$out/all.profdata" -ignore-filename-regex="$ignore" \
    -format=html -output-dir="$out/html"
echo "all harnesses:"
cat "$out/all.txt"
echo "line by line: $out/html/index.html"
