# breakdown.gp -- stacked time breakdown (compute / communication / pipeline idle) per layout.
# Called by launch/scaling.sh:  gnuplot -e "out='X.png'; data='breakdown.dat'" breakdown.gp
# data: "layout compute comm idle" rows (shares of step time summed over ranks).
set terminal pngcairo size 900,500 noenhanced
set output out
set title "time breakdown per layout (share of rank-seconds)"
set ylabel "share"
set yrange [0:1.05]
set style data histograms
set style histogram rowstacked
set style fill solid 0.8 border -1
set boxwidth 0.6
set key outside right
set grid y
plot data using 2:xtic(1) title "compute", '' using 3 title "communication", '' using 4 title "pipeline idle"
