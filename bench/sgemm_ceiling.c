/* The sgemm-bound ceiling of prompt processing: the time OpenBLAS needs for
 * just the matrix products of one P-token forward pass (every linear layer as
 * one full-size multithreaded sgemm, attention's QKᵀ and PV per head), with
 * nothing else. tokens/s above this would need a faster sgemm, not less
 * overhead. Usage: sgemm_ceiling MODEL [-p 512] [-t threads] [-r reps] */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dashq.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *rnd(size_t n) {
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    return x;
}

/* One pass: returns seconds; *flops gets the work done. */
static double pass(const dq_config *c, int P, double *flops) {
    int d = c->dim, f = c->hidden_dim, hd = c->head_dim, qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    int big = f > qd ? f : qd;
    big = big > d ? big : d;
    float *x = rnd((size_t)P * big), *y = rnd((size_t)P * big), *w = rnd((size_t)big * big);
    float *s = rnd((size_t)P * P);
    int shapes[][2] = {{qd, d}, {kvd, d}, {kvd, d}, {d, qd}, {f, d}, {f, d}, {d, f}};
    *flops = 0;
    double t0 = now();
    for (int l = 0; l < c->n_layers; l++) {
        for (int i = 0; i < 7; i++) {
            int out = shapes[i][0], in = shapes[i][1];
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, P, out, in, 1, x, in, w, in, 0, y, out);
            *flops += 2.0 * P * out * in;
        }
        for (int h = 0; h < c->n_heads; h++) { /* full PxP scores: causal halves are not skipped */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, P, P, hd, 1, x, qd, y, kvd, 0, s, P);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, P, hd, P, 1, s, P, y, kvd, 0, x, qd);
            *flops += 4.0 * P * P * hd;
        }
    }
    double t = now() - t0;
    free(x), free(y), free(w), free(s);
    return t;
}

int main(int argc, char **argv) {
    int P = 512, threads = 2, reps = 5;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-p")) P = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "-t")) threads = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "-r")) reps = atoi(argv[i + 1]);
    }
    dq_error err = {0};
    dq_model *m;
    if (argc < 2 || dq_model_load(argv[1], &m, &err)) {
        fprintf(stderr, "usage: sgemm_ceiling MODEL [-p P] [-t T] [-r R]  %s\n", err.msg);
        return 2;
    }
    openblas_set_num_threads(threads);
    double flops, best = 1e30;
    pass(dq_model_config(m), P, &flops); /* warm-up */
    for (int r = 0; r < reps; r++) {
        double t = pass(dq_model_config(m), P, &flops);
        best = t < best ? t : best;
    }
    printf("sgemm ceiling pp%d threads %d: %.2f tokens/s (%.1f GFLOP/s on %.2f GFLOP per pass)\n", P, threads,
           P / best, flops / best * 1e-9, flops * 1e-9);
    dq_model_free(m);
    return 0;
}
