set terminal svg size 720,480 dynamic noenhanced font 'sans,12'
if (!exists('out')) out = 'smollm2-135m_ppl_vs_bpw.svg'
set output out
set title 'smollm2-135m: perplexity vs bits per weight (largest calibration set)'
set xlabel 'bits per weight'
set ylabel 'perplexity'
set grid
set key top right
set offsets graph 0.03, graph 0.03
plot 'smollm2-135m_ppl_vs_bpw.dat' index 0 with yerrorlines pt 7 ps 0.6 title 'dashq', \
     'smollm2-135m_ppl_vs_bpw.dat' index 1 with yerrorlines pt 7 ps 0.6 title 'gptq', \
     'smollm2-135m_ppl_vs_bpw.dat' index 2 with yerrorlines pt 7 ps 0.6 title 'rtn'
