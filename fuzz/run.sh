#!/bin/sh
# fuzz/run.sh BUILD SECONDS [HARNESS...]: runs each libFuzzer harness of BUILD (default: all of
# them) for SECONDS. Inputs that add coverage go to BUILD/fuzz-work/corpus/HARNESS; the committed
# seeds (fuzz/corpus/HARNESS) and fresh ones from fuzz_seeds (with key pairs, never committed)
# are read too. A crash, leak, sanitizer report or broken invariant stops with the reproducer's
# path (BUILD/fuzz-work/artifacts/) and the end of the log; exit status 1.
set -eu

if [ $# -lt 2 ]; then
    echo "usage: fuzz/run.sh BUILD SECONDS [HARNESS...]" >&2
    exit 2
fi
build=$1
seconds=$2
shift 2
harnesses=${*:-server client certs session}
src=$(cd "$(dirname "$0")" && pwd)
work=$build/fuzz-work

mkdir -p "$work/artifacts"
"$build/fuzz/fuzz_seeds" "$work/seeds" --keys >/dev/null
"$src/tool_seeds.sh" "$work/seeds"

# -fno-sanitize-recover makes UBSan fatal; ASan's leak check runs after each input that leaks.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

status=0
for h in $harnesses; do
    case $h in
    server | client) extra="-dict=$src/tls.dict -max_len=8192" ;;
    certs) extra="-dict=$src/pem.dict -max_len=8192" ;;
    *) extra="-max_len=4096" ;;
    esac
    mkdir -p "$work/corpus/$h"
    log=$work/$h.log
    start=$(date +%s)
    # shellcheck disable=SC2086 # $extra is a list of options
    if "$build/fuzz/fuzz_$h" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$work/artifacts/$h-" $extra \
        "$work/corpus/$h" "$src/corpus/$h" "$work/seeds/$h" >"$log" 2>&1; then
        cov=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | sed -E 's/.*(cov: [0-9]+ ft: [0-9]+ corp: [^ ]+).*/\1/')
        runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
        echo "fuzz_$h: ${runs:-?} inputs in $(($(date +%s) - start)) s, $cov"
    else
        status=1
        echo "fuzz_$h: FAILED after $(($(date +%s) - start)) s; log $log" >&2
        grep -E 'ERROR|invariant|SUMMARY|Test unit written' "$log" | head -n 20 >&2 || true
        tail -n 40 "$log" >&2
    fi
done
exit $status
