set terminal svg size 720,480 dynamic noenhanced font 'sans,12'
set output 'stories260K_kld_vs_nsamples_b3g128.svg'
set title 'stories260K: 3-bit, group 128: quality vs calibration samples (mean +/- sd over seeds)'
set xlabel 'calibration samples'
set ylabel 'KL divergence to the full model'
set logscale x 2
set grid
set key top right
plot 'stories260K_kld_vs_nsamples_b3g128.dat' index 0 with yerrorlines pt 7 ps 0.6 title 'dashq', \
     'stories260K_kld_vs_nsamples_b3g128.dat' index 1 with yerrorlines pt 7 ps 0.6 title 'gptq', \
     'stories260K_kld_vs_nsamples_b3g128.dat' index 2 with yerrorlines pt 7 ps 0.6 title 'rtn (no calibration)'
