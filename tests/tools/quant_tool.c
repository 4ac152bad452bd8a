/* Runs one quantizer on raw float32 files, for cross-checks against other
 * implementations (tests/tools/gptq_reference.py):
 *   quant_tool METHOD BITS GROUP ACT_ORDER FP16 W.f32 ROWS COLS STAT.f32 OUT
 * STAT is H (cols x cols) for gptq, diag(H) (cols) for dashq, unused for rtn.
 * Writes OUT.q (uint8 codes), OUT.scale and OUT.zero (float32) and prints the
 * solve time (all online cores) for bench/gptq_vs_reference.py. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "quant/quant.h"

static float *read_f32(const char *path, size_t n) {
    FILE *f = fopen(path, "rb");
    float *x = malloc(n * sizeof *x);
    if (!f || !x || fread(x, sizeof *x, n, f) != n) {
        fprintf(stderr, "cannot read %zu floats from %s\n", n, path);
        exit(2);
    }
    fclose(f);
    return x;
}

static void write_file(const char *prefix, const char *ext, const void *p, size_t bytes) {
    char path[1024];
    snprintf(path, sizeof path, "%s.%s", prefix, ext);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, bytes, f) != bytes) exit(2);
    fclose(f);
}

int main(int argc, char **argv) {
    if (argc != 11) {
        fprintf(stderr, "usage: quant_tool METHOD BITS GROUP ACT_ORDER FP16 W.f32 ROWS COLS STAT.f32 OUT\n");
        return 2;
    }
    dq_method m = !strcmp(argv[1], "gptq") ? DQ_METHOD_GPTQ : !strcmp(argv[1], "dashq") ? DQ_METHOD_DASHQ : DQ_METHOD_RTN;
    dq_quant_opts o = dq_quant_defaults(m, atoi(argv[2]), atoi(argv[3]));
    o.act_order = atoi(argv[4]) != 0;
    o.fp16_params = atoi(argv[5]) != 0;
    int rows = atoi(argv[7]), cols = atoi(argv[8]);
    float *W = read_f32(argv[6], (size_t)rows * cols);
    float *S = m == DQ_METHOD_RTN ? NULL : read_f32(argv[9], m == DQ_METHOD_GPTQ ? (size_t)cols * cols : (size_t)cols);
    dq_qtensor q;
    dq_error err = {0};
    int nt = (int)sysconf(_SC_NPROCESSORS_ONLN);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    dq_status st = m == DQ_METHOD_GPTQ ? dq_quantize_gptq(W, rows, cols, S, &o, nt, &q, &err)
                   : m == DQ_METHOD_DASHQ ? dq_quantize_dashq(W, rows, cols, S, &o, nt, &q, &err)
                                          : dq_quantize_rtn(W, rows, cols, &o, nt, &q, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (st) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    printf("seconds %.4f\n", (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    size_t ng = (size_t)rows * q.groups_per_row;
    write_file(argv[10], "q", q.q, (size_t)rows * cols);
    write_file(argv[10], "scale", q.scale, ng * sizeof(float));
    write_file(argv[10], "zero", q.zero, ng * sizeof(float));
    dq_qtensor_free(&q);
    free(W);
    free(S);
    return 0;
}
