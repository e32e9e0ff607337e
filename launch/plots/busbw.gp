# busbw.gp -- bus bandwidth against message size, one line per transport/algorithm.
# Called by launch/scaling.sh:  gnuplot -e "out='X.png'; files='a.dat b.dat'; titles='t1 t2'; ttl='...'" busbw.gp
# Each .dat file: "bytes busbw_gbs" rows (out-of-place placement). Titles are "transport/algo":
# the colour says the algorithm (MPI's own collective in black), the dash pattern and point shape
# the transport, so no two lines look alike.
set terminal pngcairo size 900,550 noenhanced dashed
set output out
set title ttl
set logscale x 2
set format x "%.0b%B"
set xlabel "message size (bytes)"
set ylabel "bus bandwidth (GB/s)"
set grid
set key top left
algo(t) = t[strstrt(t, "/") + 1:]
tran(t) = t[1:strstrt(t, "/") - 1]
color(t) = algo(t) eq "ring" ? 0xd62728 : algo(t) eq "rd" ? 0x1f77b4 : algo(t) eq "rabenseifner" ? 0x9467bd : algo(t) eq "auto" ? 0x2ca02c : 0x000000
dash(t) = tran(t) eq "mpi" ? 1 : tran(t) eq "ofi:shm" ? 2 : 3
point(t) = tran(t) eq "mpi" ? 7 : tran(t) eq "ofi:shm" ? 5 : 9
plot for [i=1:words(files)] word(files, i) using 1:2 with linespoints \
     lc rgb color(word(titles, i)) dt dash(word(titles, i)) pt point(word(titles, i)) ps 0.7 lw 1.5 \
     title word(titles, i)
