# busbw.gp -- bus bandwidth against message size, one line per transport/algorithm.
# Called by launch/scaling.sh:  gnuplot -e "out='X.png'; files='a.dat b.dat'; titles='t1 t2'; ttl='...'" busbw.gp
# Each .dat file: "bytes busbw_gbs" rows (out-of-place placement).
set terminal pngcairo size 900,550 noenhanced
set output out
set title ttl
set logscale x 2
set format x "%.0b%B"
set xlabel "message size (bytes)"
set ylabel "bus bandwidth (GB/s)"
set grid
set key top left
plot for [i=1:words(files)] word(files, i) using 1:2 with linespoints pt 7 ps 0.6 title word(titles, i)
