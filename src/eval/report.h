/* Sweep results → a report: the CSV written by bench/quant_sweep.sh (one row
 * per model × method × bits × group × calibration samples × seed) is averaged
 * over seeds and written as a markdown table plus gnuplot scripts and data
 * for two kinds of plot: quality vs bits per weight per method, and quality
 * vs number of calibration samples per method (DASH-Q's stability claim). */
#ifndef DQ_REPORT_H
#define DQ_REPORT_H
#include "dashq.h"

typedef struct {
    char model[64], method[32];
    int bits, group, nsamples, seed;
    double ppl, kld;     /* kld NAN when the file has none */
    double ppl_b, kld_b; /* on a second held-out text (bench/quant_sweep.sh's *_b columns); NAN when absent */
} dq_result_row;

/* One cell's zero-shot results (bench/quant_sweep.sh's RESULTS_zeroshot.jsonl). */
typedef struct {
    char cell[160]; /* the sweep's tag: "MODEL,fp" or "MODEL,METHOD,BITS,GROUP,NSAMPLES" */
    int n_tasks;    /* tasks averaged */
    int n_items;    /* the smallest item count among them */
    double sum;     /* of each task's headline metric (see ZS_METRIC in report.c) */
} dq_zeroshot_cell;

typedef struct {
    dq_result_row *rows;
    size_t n;
    dq_zeroshot_cell *zs; /* NULL until dq_results_load_zeroshot finds some */
    size_t n_zs;
    size_t n_skipped;
    char **warnings; /* "FILE:LINE: what is wrong", at most DQ_REPORT_MAX_WARNINGS */
    size_t n_warnings;
} dq_results;

#define DQ_REPORT_MAX_WARNINGS 50

/* Reads the CSV; columns are found by header name (model, method, bits,
 * group, nsamples, ppl required; seed, kld, ppl_b, kld_b optional; an
 * empty ppl_b/kld_b field is absent). Bad rows are skipped
 * and named in warnings; a missing column or an unreadable file fails. */
dq_status dq_results_load(const char *path, dq_results *out, dq_error *err);
void dq_results_free(dq_results *r);
/* Adds the zero-shot JSON lines at path ({"cell": ..., "task": ..., "n": ..., "acc": ...[, "acc_norm": ...]})
 * to r, one dq_zeroshot_cell per cell; a missing file adds nothing, bad lines are named in r's warnings. */
dq_status dq_results_load_zeroshot(const char *path, dq_results *r, dq_error *err);

/* Storage cost of a weight with fp16 scale and zero per group (group <= 0:
 * per channel, counted as free). */
double dq_bits_per_weight(int bits, int group);

/* Writes report.md and, per plot, NAME.dat and NAME.gp into DIR (NAME.gp renders NAME.svg,
 * run from DIR, or the file its variable out names: gnuplot -e "out='x.svg'" NAME.gp; the CLI renders
 * through a temporary that way). *scripts receives a malloc'ed, NULL-ended
 * list of the .gp file names. */
dq_status dq_report_write(const dq_results *r, const char *source, const char *dir, char ***scripts, dq_error *err);
#endif
