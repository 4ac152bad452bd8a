set terminal svg size 720,480 dynamic noenhanced font 'sans,12'
set output 'gut6l_kld_vs_nsamples_b3g64.svg'
set title 'gut6l: 3-bit, group 64: quality vs calibration samples (mean +/- sd over seeds)'
set xlabel 'calibration samples'
set ylabel 'KL divergence to the full model'
set logscale x 2
set grid
set key top right
plot 'gut6l_kld_vs_nsamples_b3g64.dat' index 0 with yerrorlines pt 7 ps 0.6 title 'dashq', \
     'gut6l_kld_vs_nsamples_b3g64.dat' index 1 with yerrorlines pt 7 ps 0.6 title 'gptq', \
     'gut6l_kld_vs_nsamples_b3g64.dat' index 2 with yerrorlines pt 7 ps 0.6 title 'rtn (no calibration)'
