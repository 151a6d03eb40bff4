#!/bin/sh
# Smoke test of tlsock-bench (CTest label bench). No figure is checked: timings in tests only make
# them flaky (docs/BENCHMARKS.md).
#
# Usage: smoke.sh TLSOCK-BENCH DATA
#   every case runs once, briefly; the run succeeds; stderr has exactly one progress line per
#   case, in --list order, and nothing else; the table has a row per case; DATA (--data) has the
#   header and one well-formed line per case that was not skipped, in the same order.
# Usage: smoke.sh --chart DATA
#   scripts/bench-chart draws DATA; the SVG is well-formed XML with one bar per line of DATA and
#   each case's name. Exit status 77 (skipped) when gnuplot is not installed.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ "$1" = --chart ]; then
    data=$2
    if ! command -v gnuplot >/dev/null 2>&1; then
        echo "smoke: gnuplot is not installed (scripts/bootstrap bench); chart not checked" >&2
        exit 77
    fi
    "$root/scripts/bench-chart" "$data" "$tmp/chart.svg"
    python3 - "$data" "$tmp/chart.svg" <<'PY'
import sys
import xml.etree.ElementTree as ET

data, svg = sys.argv[1], sys.argv[2]
names = [line.split("\t")[0] for line in open(data).read().splitlines()[1:]]
ns = "{http://www.w3.org/2000/svg}"
root = ET.parse(svg).getroot()
# gnuplot puts each plot in <g id="gnuplot_plot_N">; the first is the bars, one polygon each.
bars = [g for g in root.iter(ns + "g") if g.get("id") == "gnuplot_plot_1"]
count = len(list(bars[0].iter(ns + "polygon"))) if bars else 0
texts = {"".join(t.itertext()).strip() for t in root.iter(ns + "text")}
missing = [n for n in names if n not in texts]
if count != len(names) or missing:
    sys.exit("smoke: chart has %d bars for %d cases; names missing: %s"
             % (count, len(names), " ".join(missing)))
print("smoke: chart has one bar and one label for each of the %d cases" % count)
PY
    exit 0
fi

bench=$1
data=$2
"$bench" --list | awk '{ print $1 }' >"$tmp/cases"
if ! "$bench" --rounds 1 --seconds 0.05 --connections 100 --data "$data" >"$tmp/out" \
    2>"$tmp/err"; then
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
: >"$tmp/expected"
while read -r name; do
    if ! grep -q "^$name " "$tmp/out"; then
        echo "smoke: no row for $name in the table" >&2
        cat "$tmp/out" >&2
        exit 1
    fi
    if ! grep -q "^$name  *SKIPPED" "$tmp/out"; then
        echo "$name" >>"$tmp/expected"
    fi
done <"$tmp/cases"
# The data file: the header, then one line per case that ran, nine fields, numbers where numbers
# belong, min <= median <= max, a positive median, met -1 (no target), 0 or 1.
if ! awk -F '\t' '
    NR == 1 { if ($0 != "case\tunit\traw\ttlsock\tratio_min\tratio_median\tratio_max\ttarget\tmet") exit 1; next }
    NF != 9 { exit 1 }
    { for (i = 3; i <= 8; i++) if ($i !~ /^-?[0-9.]+(e[-+]?[0-9]+)?$/) exit 1 }
    !($5 + 0 <= $6 + 0 && $6 + 0 <= $7 + 0 && $6 + 0 > 0) { exit 1 }
    $9 != "-1" && $9 != "0" && $9 != "1" { exit 1 }
    { print $1 }' "$data" >"$tmp/rows" ||
    ! diff "$tmp/expected" "$tmp/rows" >&2; then
    echo "smoke: $data is not one well-formed line per case that ran:" >&2
    cat "$data" >&2
    exit 1
fi
echo "smoke: $(wc -l <"$tmp/cases") cases ran, one progress line each; $(wc -l <"$tmp/rows") lines of data"
