#!/bin/sh
# Checks the shared library's exported symbols (house style rule 3):
#   - every exported function or object is named tlsock_* and none is tlsock__* (internal);
#   - every function the public headers declare with TLSOCK_API is exported.
# Usage: check_exports.sh LIBRARY [HEADER...]
set -eu

lib=$1
shift

if [ ! -r "$lib" ]; then
    echo "check_exports: cannot read $lib" >&2
    exit 1
fi

# "ADDRESS TYPE NAME"; absolute (A) symbols are the linker's (_edata, _end...), _init and _fini
# come from the C runtime, not from our sources.
exported=$(nm -D --defined-only "$lib" |
    awk 'NF >= 3 && $2 != "A" { sub(/@.*/, "", $3); print $3 }' |
    grep -v -x -e _init -e _fini || true)

if [ -z "$exported" ]; then
    echo "check_exports: no exported symbols found in $lib (nm failed?)" >&2
    exit 1
fi

status=0
for sym in $exported; do
    case $sym in
    tlsock__*)
        echo "internal symbol exported: $sym" >&2
        status=1
        ;;
    tlsock_*) ;;
    *)
        echo "exported symbol outside the tlsock_ namespace: $sym" >&2
        status=1
        ;;
    esac
done

for header in "$@"; do
    if [ ! -r "$header" ]; then
        echo "check_exports: cannot read $header" >&2
        exit 1
    fi
    # Declarations look like "TLSOCK_API <type> [*]tlsock_name(" possibly across lines; the
    # name is the first tlsock_ identifier followed by "(" after TLSOCK_API.
    declared=$(tr '\n' ' ' <"$header" | grep -o 'TLSOCK_API[^;(]*(' |
        grep -o 'tlsock_[a-z0-9_]*[[:space:]]*($' | tr -d ' (' | sort -u)
    if [ -z "$declared" ]; then
        echo "check_exports: no TLSOCK_API declarations found in $header" >&2
        exit 1
    fi
    for sym in $declared; do
        if ! printf '%s\n' "$exported" | grep -q -x "$sym"; then
            echo "declared in $header but not exported: $sym" >&2
            status=1
        fi
    done
done

if [ "$status" -eq 0 ]; then
    echo "check_exports: $(printf '%s\n' "$exported" | wc -l) symbols, all public"
fi
exit $status
