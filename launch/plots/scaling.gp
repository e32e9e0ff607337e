# scaling.gp -- training tokens/s and scaling efficiency against ranks, one line per layout family.
# Called by launch/scaling.sh:  gnuplot -e "out='X.png'; files='dp.dat pp.dat'; titles='dp pp'; ttl='...'" scaling.gp
# Each .dat file: "ranks tokens_per_s efficiency" rows.
set terminal pngcairo size 1100,480 noenhanced
set output out
set multiplot layout 1,2 title ttl
set grid
set xlabel "ranks"
set xtics 1
set xrange [0.5:4.5]
set key top left
set title "tokens/s"
set ylabel "tokens/s"
set yrange [0:*]
plot for [i=1:words(files)] word(files, i) using 1:2 with linespoints pt 7 title word(titles, i)
set title "efficiency vs 1 rank"
set ylabel "efficiency"
set yrange [0:1.2]
plot for [i=1:words(files)] word(files, i) using 1:3 with linespoints pt 7 title word(titles, i), 1 with lines dt 2 lc rgb "gray" notitle
unset multiplot
