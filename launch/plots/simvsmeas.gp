# simvsmeas.gp -- measured against simulated step time per layout (clustered bars).
# Called by launch/scaling.sh:  gnuplot -e "out='X.png'; data='sim.dat'" simvsmeas.gp
# data: "layout measured_step_s sim_step_s" rows.
set terminal pngcairo size 900,500 noenhanced
set output out
set title "step time: measured vs simulated"
set ylabel "seconds per step"
set yrange [0:*]
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key top left
set grid y
plot data using 2:xtic(1) title "measured (median)", '' using 3 title "simulated (sim_step_s)"
