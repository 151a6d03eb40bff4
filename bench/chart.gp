# The bench chart (docs/bench.svg): for each case of a tlsock-bench data file (--data), a bar at
# the median of the per-round ratios tlsock / raw, a line from the lowest to the highest ratio,
# and the case's target as a red tick (none for the cases reported for information). Green: the
# target met; red: missed; grey: no target. Run through scripts/bench-chart:
#   gnuplot -e "data='docs/bench.tsv'; out='docs/bench.svg'" bench/chart.gp
# Columns of the data file: case unit raw tlsock ratio_min ratio_median ratio_max target met.
set datafile separator "\t"
set datafile missing "nan"
stats data using 6 nooutput
n = STATS_records
stats data using 5 nooutput
lo = STATS_min
stats data using 7 nooutput
hi = STATS_max
# The axis starts below the lowest ratio (at most at 0.8), so that differences of a few percent
# show; the bars start at the axis.
left = floor((lo < 0.8 ? lo : 0.8) * 10 - 1) / 10.0
left = left < 0 ? 0 : left
right = ceil((hi > 1.2 ? hi : 1.2) * 10 + 1) / 10.0

set terminal svg size 960, (110 + 24 * n) font "sans,12" background rgb "white"
set output out
set title "tlsock-bench: tlsock / raw per case (bar: median of the rounds; line: min to max; red tick: target)"
set xlabel "ratio tlsock / raw (higher is better; idle memory cases: lower is better)"
set xrange [left:right]
set yrange [n:-1]
set ytics nomirror scale 0
set xtics nomirror
set grid xtics lc rgb "#dddddd"
set border 3
set key off
set style fill solid 0.8 noborder
set arrow from 1, graph 0 to 1, graph 1 nohead dt 2 lc rgb "#555555" back

colour(met) = met == 1 ? 0x4caf50 : met == 0 ? 0xe57373 : 0x9e9e9e

plot data skip 1 using 6:0:(left):6:($0 - 0.35):($0 + 0.35):(colour(column(9))):ytic(1) \
         with boxxyerror lc rgb variable title "median", \
     data skip 1 using 6:0:5:7 with xerrorbars pt -1 lc rgb "#222222" title "min to max", \
     data skip 1 using (column(8) > 0 ? column(8) : NaN):($0 - 0.45):(0):(0.9) \
         with vectors nohead lw 3 lc rgb "#c62828" title "target"
