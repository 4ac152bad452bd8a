set terminal svg size 720,480 dynamic noenhanced font 'sans,12'
if (!exists('out')) out = 'smollm2-135m_kld_vs_nsamples_b2g32.svg'
set output out
set title 'smollm2-135m: 2-bit, group 32: quality vs calibration samples (mean +/- sd over seeds)'
set xlabel 'calibration samples'
set ylabel 'KL divergence to the full model'
set logscale x 2
set grid
set key top right
plot 'smollm2-135m_kld_vs_nsamples_b2g32.dat' index 0 with yerrorlines pt 7 ps 0.6 title 'dashq', \
     'smollm2-135m_kld_vs_nsamples_b2g32.dat' index 1 with yerrorlines pt 7 ps 0.6 title 'gptq', \
     'smollm2-135m_kld_vs_nsamples_b2g32.dat' index 2 with yerrorlines pt 7 ps 0.6 title 'rtn (no calibration)'
