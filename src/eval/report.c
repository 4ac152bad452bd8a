#define _POSIX_C_SOURCE 200809L
#include "eval/report.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/error.h"
#include "util/files.h"
#include "util/lines.h"
#include "util/mapped_file.h"

enum { C_MODEL, C_METHOD, C_BITS, C_GROUP, C_NSAMPLES, C_PPL, C_SEED, C_KLD, C_PPL_B, C_KLD_B, C_COUNT };
static const char *const COLUMNS[C_COUNT] = {"model", "method", "bits", "group", "nsamples", "ppl",
                                             "seed",  "kld",    "ppl_b", "kld_b"};
#define N_REQUIRED C_SEED

double dq_bits_per_weight(int bits, int group) { return bits + (group > 0 ? 32.0 / group : 0.0); }

/* ---- CSV ---------------------------------------------------------------------- */

/* Splits a CSV line in place at every comma (empty fields kept, no quoting:
 * the sweep writes none). */
static int split(char *line, char **fields, int max) {
    int n = 0;
    for (char *f = line; n < max;) {
        char *comma = strchr(f, ',');
        fields[n++] = f;
        if (!comma) break;
        *comma = 0, f = comma + 1;
    }
    return n;
}

static bool parse_int(const char *s, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) return false;
    *out = (int)v;
    return true;
}

static bool parse_num(const char *s, double *out) {
    char *end;
    *out = strtod(s, &end);
    return end != s && !*end;
}

static bool safe_name(const char *s, char *out, size_t cap) {
    size_t n = strlen(s);
    if (!n || n >= cap) return false;
    for (size_t i = 0; i < n; i++)
        if (!(s[i] == '_' || s[i] == '-' || s[i] == '.' || s[i] == '+' || (s[i] >= '0' && s[i] <= '9') ||
              (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')))
            return false;
    memcpy(out, s, n + 1);
    return true;
}

/* One data row; returns NULL or what is wrong with it. */
static const char *parse_row(char **f, int nf, const int *col, dq_result_row *r) {
    for (int c = 0; c < C_COUNT; c++)
        if (col[c] < 1000 && col[c] >= nf) return "too few fields";
    if (!safe_name(f[col[C_MODEL]], r->model, sizeof r->model)) return "bad model name (letters, digits, _-.+ only)";
    if (!safe_name(f[col[C_METHOD]], r->method, sizeof r->method))
        return "bad method name (letters, digits, _-.+ only)";
    if (!parse_int(f[col[C_BITS]], 1, 16, &r->bits)) return "bits is not an integer in 1..16";
    if (!parse_int(f[col[C_GROUP]], -1, 1 << 20, &r->group)) return "group is not an integer";
    if (!parse_int(f[col[C_NSAMPLES]], 0, 1 << 30, &r->nsamples)) return "nsamples is not a count";
    if (!parse_num(f[col[C_PPL]], &r->ppl) || !isfinite(r->ppl) || r->ppl <= 0) return "ppl is not a positive number";
    r->seed = 0;
    if (col[C_SEED] < 1000 && !parse_int(f[col[C_SEED]], 0, 0x7fffffff, &r->seed)) return "seed is not an integer";
    r->kld = NAN;
    if (col[C_KLD] < 1000 && (!parse_num(f[col[C_KLD]], &r->kld) || !(r->kld >= 0))) return "kld is not a number >= 0";
    /* the second held-out text: empty where the model has none */
    r->ppl_b = r->kld_b = NAN;
    if (col[C_PPL_B] < 1000 && f[col[C_PPL_B]][0] &&
        (!parse_num(f[col[C_PPL_B]], &r->ppl_b) || !isfinite(r->ppl_b) || r->ppl_b <= 0))
        return "ppl_b is not a positive number";
    if (col[C_KLD_B] < 1000 && f[col[C_KLD_B]][0] && (!parse_num(f[col[C_KLD_B]], &r->kld_b) || !(r->kld_b >= 0)))
        return "kld_b is not a number >= 0";
    return NULL;
}

static dq_status header(const char *path, char *line, int *col, dq_error *err) {
    char *f[64];
    int nf = split(line, f, 64);
    for (int c = 0; c < C_COUNT; c++) {
        col[c] = 1000; /* absent */
        for (int i = 0; i < nf; i++)
            if (!strcmp(f[i], COLUMNS[c])) col[c] = i;
        if (c < N_REQUIRED && col[c] == 1000)
            return dq_fail(err, DQ_ERR_FORMAT, "%s: no \"%s\" column in the header", path, COLUMNS[c]);
    }
    return DQ_OK;
}

static dq_status parse_lines(const char *path, char *text, size_t len, dq_results *out, dq_error *err) {
    int col[C_COUNT];
    long lineno = 0;
    size_t cap = 0;
    for (char *cur = text, *line; (line = dq_next_line(&cur, text + len));) {
        lineno++;
        if (!line[0] && lineno > 1) continue; /* blank line */
        if (lineno == 1) {
            dq_status st = header(path, line, col, err);
            if (st) return st;
            continue;
        }
        char *f[64];
        int nf = split(line, f, 64);
        dq_result_row r;
        const char *bad = parse_row(f, nf, col, &r);
        if (bad) {
            out->n_skipped++;
            dq_note_skip(&out->warnings, &out->n_warnings, DQ_REPORT_MAX_WARNINGS, path, lineno, bad, "row");
            continue;
        }
        if (out->n == cap) {
            dq_result_row *grown = realloc(out->rows, (cap = cap ? 2 * cap : 64) * sizeof *grown);
            if (!grown) return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", path);
            out->rows = grown;
        }
        out->rows[out->n++] = r;
    }
    return DQ_OK;
}

dq_status dq_results_load(const char *path, dq_results *out, dq_error *err) {
    memset(out, 0, sizeof *out);
    char *text;
    size_t len;
    dq_status st = dq_read_file(path, (size_t)1 << 30, &text, &len, err);
    if (st) return st;
    st = len ? parse_lines(path, text, len, out, err) : dq_fail(err, DQ_ERR_FORMAT, "%s: empty file", path);
    free(text);
    if (st) dq_results_free(out);
    return st;
}

/* Each task's headline metric in the average, as the model cards and the
 * SmolLM2 comparison in the README quote them (acc_norm where length
 * normalisation is the convention, acc elsewhere). */
static const struct {
    const char *task, *metric;
} ZS_METRIC[] = {{"piqa", "acc_norm"},  {"arc_easy", "acc"}, {"arc_challenge", "acc_norm"}, {"hellaswag", "acc_norm"},
                 {"winogrande", "acc"}, {"boolq", "acc"},    {"lambada", "acc"}};

static const char *zs_metric(const char *task) {
    for (size_t i = 0; i < sizeof ZS_METRIC / sizeof ZS_METRIC[0]; i++)
        if (!strcmp(task, ZS_METRIC[i].task)) return ZS_METRIC[i].metric;
    return NULL;
}

/* One JSON line into r->zs; returns NULL or what is wrong with it. */
static const char *zs_line(const char *line, dq_results *r) {
    cJSON *o = cJSON_Parse(line);
    const char *bad = NULL;
    const cJSON *cell = cJSON_GetObjectItemCaseSensitive(o, "cell"),
                *task = cJSON_GetObjectItemCaseSensitive(o, "task"), *n = cJSON_GetObjectItemCaseSensitive(o, "n");
    const char *metric = cJSON_IsString(task) ? zs_metric(task->valuestring) : NULL;
    const cJSON *v = metric ? cJSON_GetObjectItemCaseSensitive(o, metric) : NULL;
    if (!o) bad = "not a JSON object";
    else if (!cJSON_IsString(cell) || strlen(cell->valuestring) >= sizeof r->zs->cell) bad = "no cell tag";
    else if (!metric) bad = "unknown task";
    else if (!cJSON_IsNumber(n) || !(n->valuedouble >= 1 && n->valuedouble < 1e9)) bad = "n is not a count";
    else if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= 1)) bad = "metric is not in [0, 1]";
    if (bad) {
        cJSON_Delete(o);
        return bad;
    }
    size_t i = 0;
    while (i < r->n_zs && strcmp(r->zs[i].cell, cell->valuestring)) i++;
    if (i == r->n_zs) {
        dq_zeroshot_cell *grown = realloc(r->zs, (r->n_zs + 1) * sizeof *grown);
        if (!grown) {
            cJSON_Delete(o);
            return "out of memory";
        }
        r->zs = grown;
        r->zs[r->n_zs++] = (dq_zeroshot_cell){.n_items = INT32_MAX};
        snprintf(r->zs[i].cell, sizeof r->zs[i].cell, "%s", cell->valuestring);
    }
    r->zs[i].n_tasks++;
    r->zs[i].sum += v->valuedouble;
    if (n->valuedouble < r->zs[i].n_items) r->zs[i].n_items = (int)n->valuedouble;
    cJSON_Delete(o);
    return NULL;
}

dq_status dq_results_load_zeroshot(const char *path, dq_results *r, dq_error *err) {
    struct stat sb;
    if (stat(path, &sb) && errno == ENOENT) return DQ_OK; /* no zero-shot runs */
    char *text;
    size_t len;
    dq_status st = dq_read_file(path, (size_t)1 << 30, &text, &len, err);
    if (st) return st;
    long lineno = 0;
    for (char *cur = text, *line; (line = dq_next_line(&cur, text + len));) {
        lineno++;
        const char *bad = line[0] ? zs_line(line, r) : NULL;
        if (bad) {
            r->n_skipped++;
            dq_note_skip(&r->warnings, &r->n_warnings, DQ_REPORT_MAX_WARNINGS, path, lineno, bad, "line");
        }
    }
    free(text);
    return DQ_OK;
}

void dq_results_free(dq_results *r) {
    for (size_t i = 0; i < r->n_warnings; i++) free(r->warnings[i]);
    free(r->warnings);
    free(r->rows);
    free(r->zs);
    memset(r, 0, sizeof *r);
}

/* ---- cells: rows averaged over seeds ------------------------------------------- */

typedef struct {
    const char *model, *method;
    int bits, group, nsamples, n;
    double ppl, ppl_sd, kld, kld_sd;         /* kld NAN when absent */
    double ppl_b, ppl_b_sd, kld_b, kld_b_sd; /* the second text's; NAN when absent */
} cell;

static int row_cmp(const void *pa, const void *pb) {
    const dq_result_row *a = pa, *b = pb;
    int c = strcmp(a->model, b->model);
    if (!c) c = strcmp(a->method, b->method);
    if (!c) c = a->bits - b->bits;
    if (!c) c = b->group - a->group;
    if (!c) c = a->nsamples - b->nsamples;
    return c;
}

static void mean_sd(const double *v, int n, double *mean, double *sd) {
    double s = 0, s2 = 0;
    for (int i = 0; i < n; i++) s += v[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) s2 += (v[i] - *mean) * (v[i] - *mean);
    *sd = n > 1 ? sqrt(s2 / (n - 1)) : 0;
}

/* Mean and sd over the k rows of one metric (at byte offset off in a row);
 * NAN unless every row has it. */
static void metric_mean_sd(const dq_result_row *rows, int k, size_t off, double *v, double *mean, double *sd) {
    *mean = *sd = NAN;
    for (int t = 0; t < k; t++)
        if (isnan(v[t] = *(const double *)((const char *)&rows[t] + off))) return;
    mean_sd(v, k, mean, sd);
}

static size_t make_cells(dq_result_row *rows, size_t n, cell *cells) {
    qsort(rows, n, sizeof *rows, row_cmp);
    size_t nc = 0;
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && !row_cmp(&rows[i], &rows[j]); j++) {}
        int k = (int)(j - i);
        double *v = malloc((size_t)k * sizeof *v);
        if (!v) return 0;
        const dq_result_row *r = &rows[i];
        cell *c = &cells[nc++];
        *c = (cell){.model = r->model, .method = r->method, .bits = r->bits, .group = r->group,
                    .nsamples = r->nsamples, .n = k};
        metric_mean_sd(r, k, offsetof(dq_result_row, ppl), v, &c->ppl, &c->ppl_sd);
        metric_mean_sd(r, k, offsetof(dq_result_row, kld), v, &c->kld, &c->kld_sd);
        metric_mean_sd(r, k, offsetof(dq_result_row, ppl_b), v, &c->ppl_b, &c->ppl_b_sd);
        metric_mean_sd(r, k, offsetof(dq_result_row, kld_b), v, &c->kld_b, &c->kld_b_sd);
        free(v);
    }
    return nc;
}

/* ---- writing -------------------------------------------------------------------- */

typedef struct {
    const char *dir, *source; /* source: the CSV read, never overwritten */
    const dq_results *results;
    char **scripts;
    size_t n_scripts;
    dq_error *err;
} writer;

/* DIR/name as a temporary renamed into place by close_out (dq_out_file): a
 * killed report leaves complete files or none under their names. NULL on
 * failure, with w->err set. */
static dq_out_file *open_out(writer *w, const char *name) {
    char path[PATH_MAX];
    if (strchr(name, '/')) { /* names come from the CSV's model column */
        dq_fail(w->err, DQ_ERR_FORMAT, "%s: a model name makes the file name '%s', which is not a plain name",
                w->source, name);
        return NULL;
    }
    if (dq_path_fmt(path, sizeof path, w->err, "%s/%s", w->dir, name) ||
        dq_check_output(path, DQ_OUT_FILE, &w->source, 1, w->err))
        return NULL;
    dq_out_file *o = malloc(sizeof *o);
    if (!o) dq_fail(w->err, DQ_ERR_NOMEM, "%s: out of memory", path);
    else if (dq_out_open(o, path, w->err)) free(o), o = NULL;
    return o;
}

/* Completes (renames into place) and frees o. */
static dq_status close_out(writer *w, dq_out_file *o) {
    dq_status st = dq_out_commit(o, w->err);
    free(o);
    return st;
}

/* Removes o's temporary (the final name is untouched) and frees o. */
static void abort_out(dq_out_file *o) {
    dq_out_abort(o);
    free(o);
}

static bool same_model(const cell *a, const cell *b) { return !strcmp(a->model, b->model); }
static bool same_method(const cell *a, const cell *b) { return same_model(a, b) && !strcmp(a->method, b->method); }
static bool same_config(const cell *a, const cell *b) {
    return same_method(a, b) && a->bits == b->bits && a->group == b->group;
}

typedef struct {
    double x, y, sd;
} point;

static int point_cmp(const void *pa, const void *pb) {
    const point *a = pa, *b = pb;
    return (a->x > b->x) - (a->x < b->x);
}

/* Quality vs bits per weight: per method, each (bits, group) at its largest
 * calibration set. Writes NAME.dat and NAME.gp; false if nothing to plot. */
static dq_status plot_vs_bpw(writer *w, const cell *c, size_t nc, bool kld, const char *name, const char *title,
                             bool *any) {
    char file[600];
    snprintf(file, sizeof file, "%s.dat", name);
    dq_out_file *d = open_out(w, file);
    if (!d) return w->err ? w->err->code : DQ_ERR_IO;
    char plot[4096] = "";
    int blocks = 0;
    for (size_t i = 0; i < nc;) { /* c: one model's cells, sorted by method, bits, group, nsamples */
        point p[256];
        int np = 0;
        size_t j = i;
        for (; j < nc && same_method(&c[i], &c[j]); j++) {
            bool last = j + 1 == nc || !same_config(&c[j], &c[j + 1]);
            double y = kld ? c[j].kld : c[j].ppl, sd = kld ? c[j].kld_sd : c[j].ppl_sd;
            if (last && !isnan(y) && np < 256) p[np++] = (point){dq_bits_per_weight(c[j].bits, c[j].group), y, sd};
        }
        if (np) {
            qsort(p, (size_t)np, sizeof *p, point_cmp);
            fprintf(d->f, "%s# %s\n", blocks ? "\n\n" : "", c[i].method);
            for (int k = 0; k < np; k++) fprintf(d->f, "%.4f %.8g %.8g\n", p[k].x, p[k].y, p[k].sd);
            size_t used = strlen(plot);
            snprintf(plot + used, sizeof plot - used, "%s'%s' index %d with yerrorlines pt 7 ps 0.6 title '%s'",
                     blocks ? ", \\\n     " : "", file, blocks, c[i].method);
            blocks++;
        }
        i = j;
    }
    dq_status st = close_out(w, d);
    *any = blocks > 0;
    if (st || !blocks) return st;
    snprintf(file, sizeof file, "%s.gp", name);
    dq_out_file *g = open_out(w, file);
    if (!g) return w->err ? w->err->code : DQ_ERR_IO;
    fprintf(g->f,
            "set terminal svg size 720,480 dynamic noenhanced font 'sans,12'\n"
            "if (!exists('out')) out = '%s.svg'\n"
            "set output out\nset title '%s'\n"
            "set xlabel 'bits per weight'\nset ylabel '%s'\nset grid\nset key top right\n"
            "set offsets graph 0.03, graph 0.03\n%splot %s\n",
            name, title, kld ? "KL divergence to the full model" : "perplexity", kld ? "set logscale y\n" : "", plot);
    if ((st = close_out(w, g))) return st;
    w->scripts[w->n_scripts++] = strdup(file);
    return DQ_OK;
}

/* Quality vs calibration samples for one (bits, group): one line per method
 * with error bars over seeds; data-free methods (one sample count) drawn flat. */
static dq_status plot_vs_samples(writer *w, const cell *c, size_t nc, int bits, int group, bool kld, const char *name,
                                 bool *any) {
    int lo = 1 << 30, hi = 0, methods_with_sweep = 0;
    for (size_t i = 0; i < nc; i++)
        if (c[i].bits == bits && c[i].group == group && c[i].nsamples > 0)
            lo = c[i].nsamples < lo ? c[i].nsamples : lo, hi = c[i].nsamples > hi ? c[i].nsamples : hi;
    for (size_t i = 0; i + 1 < nc; i++)
        if (c[i].bits == bits && c[i].group == group && same_config(&c[i], &c[i + 1]) &&
            (i == 0 || !same_config(&c[i - 1], &c[i])))
            methods_with_sweep++;
    *any = false;
    if (!methods_with_sweep || lo >= hi) return DQ_OK;
    char file[600], plot[4096] = "";
    snprintf(file, sizeof file, "%s.dat", name);
    dq_out_file *d = open_out(w, file);
    if (!d) return w->err ? w->err->code : DQ_ERR_IO;
    int blocks = 0;
    for (size_t i = 0; i < nc;) {
        size_t j = i + 1;
        while (j < nc && same_config(&c[i], &c[j])) j++;
        if (c[i].bits == bits && c[i].group == group && !isnan(kld ? c[i].kld : c[i].ppl)) {
            fprintf(d->f, "%s# %s\n", blocks ? "\n\n" : "", c[i].method);
            for (size_t k = i; k < j; k++)
                fprintf(d->f, "%d %.8g %.8g\n", j - i == 1 ? lo : c[k].nsamples, kld ? c[k].kld : c[k].ppl,
                        kld ? c[k].kld_sd : c[k].ppl_sd);
            if (j - i == 1) fprintf(d->f, "%d %.8g 0\n", hi, kld ? c[i].kld : c[i].ppl); /* ignores the data */
            size_t used = strlen(plot);
            snprintf(plot + used, sizeof plot - used, "%s'%s' index %d with yerrorlines pt 7 ps 0.6 title '%s%s'",
                     blocks ? ", \\\n     " : "", file, blocks, c[i].method, j - i == 1 ? " (no calibration)" : "");
            blocks++;
        }
        i = j;
    }
    dq_status st = close_out(w, d);
    if (st) return st;
    snprintf(file, sizeof file, "%s.gp", name);
    dq_out_file *g = open_out(w, file);
    if (!g) return w->err ? w->err->code : DQ_ERR_IO;
    fprintf(
        g->f,
        "set terminal svg size 720,480 dynamic noenhanced font 'sans,12'\n"
        "if (!exists('out')) out = '%s.svg'\n"
        "set output out\n"
        "set title '%s: %d-bit, group %d: quality vs calibration samples (mean +/- sd over seeds)'\n"
        "set xlabel 'calibration samples'\nset ylabel '%s'\nset logscale x 2\nset grid\nset key top right\nplot %s\n",
        name, c[0].model, bits, group, kld ? "KL divergence to the full model" : "perplexity", plot);
    if ((st = close_out(w, g))) return st;
    w->scripts[w->n_scripts++] = strdup(file);
    *any = true;
    return DQ_OK;
}

/* " | mean[ ± sd]" with `digits` decimals, or " | –" when absent */
static void mean_cell(FILE *md, double mean, double sd, int n, int digits) {
    if (isnan(mean)) fprintf(md, " | –");
    else if (n > 1) fprintf(md, " | %.*f ± %.*f", digits, mean, digits, sd);
    else fprintf(md, " | %.*f", digits, mean);
}

/* The zero-shot results tagged `tag`, or NULL. */
static const dq_zeroshot_cell *zeroshot_of(const dq_results *r, const char *tag) {
    for (size_t i = 0; i < r->n_zs; i++)
        if (!strcmp(r->zs[i].cell, tag)) return &r->zs[i];
    return NULL;
}

static const dq_zeroshot_cell *cell_zeroshot(const dq_results *r, const cell *c) {
    char tag[160];
    snprintf(tag, sizeof tag, "%s,%s,%d,%d,%d", c->model, c->method, c->bits, c->group, c->nsamples);
    return zeroshot_of(r, tag);
}

static void table(FILE *md, const dq_results *r, const cell *c, size_t nc) {
    bool second = false, zs = false; /* the second held-out text's and zero-shot columns, where any row has them */
    for (size_t i = 0; i < nc; i++) second |= !isnan(c[i].ppl_b) || !isnan(c[i].kld_b), zs |= !!cell_zeroshot(r, &c[i]);
    fprintf(md, "| method | bits | group | bits/weight | calib samples | seeds | perplexity | KLD |%s%s\n"
                "|---|---:|---:|---:|---:|---:|---:|---:|%s%s\n",
            second ? " perplexity (2nd text) | KLD (2nd text) |" : "", zs ? " zero-shot avg (tasks × items) |" : "",
            second ? "---:|---:|" : "", zs ? "---:|" : "");
    for (size_t i = 0; i < nc; i++) {
        fprintf(md, "| %s | %d | %d | %.3f | %d | %d", c[i].method, c[i].bits, c[i].group,
                dq_bits_per_weight(c[i].bits, c[i].group), c[i].nsamples, c[i].n);
        mean_cell(md, c[i].ppl, c[i].ppl_sd, c[i].n, 4);
        mean_cell(md, c[i].kld, c[i].kld_sd, c[i].n, 6);
        if (second) {
            mean_cell(md, c[i].ppl_b, c[i].ppl_b_sd, c[i].n, 4);
            mean_cell(md, c[i].kld_b, c[i].kld_b_sd, c[i].n, 6);
        }
        const dq_zeroshot_cell *z = zs ? cell_zeroshot(r, &c[i]) : NULL;
        if (z) fprintf(md, " | %.3f (%d × %d)", z->sum / z->n_tasks, z->n_tasks, z->n_items);
        else if (zs) fprintf(md, " | –");
        fprintf(md, " |\n");
    }
}

static dq_status model_section(writer *w, FILE *md, const cell *c, size_t nc) {
    bool kld = true;
    for (size_t i = 0; i < nc; i++) kld &= !isnan(c[i].kld);
    fprintf(md, "\n## %s\n\nMean over seeds (± sample standard deviation where there are several).\n", c[0].model);
    char tag[160];
    snprintf(tag, sizeof tag, "%s,fp", c[0].model);
    const dq_zeroshot_cell *fp = zeroshot_of(w->results, tag);
    if (fp)
        fprintf(md, "Zero-shot average at full precision: %.3f over %d tasks (%d items each; PIQA, ARC-Challenge and "
                    "HellaSwag by acc_norm, the others by acc).\n", fp->sum / fp->n_tasks, fp->n_tasks, fp->n_items);
    fprintf(md, "\n");
    table(md, w->results, c, nc);
    char name[300], title[400];
    bool any;
    for (int k = kld ? 1 : 0; k >= 0; k--) {
        snprintf(name, sizeof name, "%s_%s_vs_bpw", c[0].model, k ? "kld" : "ppl");
        snprintf(title, sizeof title, "%s: %s vs bits per weight (largest calibration set)", c[0].model,
                 k ? "KLD" : "perplexity");
        dq_status st = plot_vs_bpw(w, c, nc, k, name, title, &any);
        if (st) return st;
        if (any) fprintf(md, "\n![%s](%s.svg)\n", title, name);
    }
    for (size_t i = 0; i < nc; i++) { /* each (bits, group) once */
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++) seen = c[j].bits == c[i].bits && c[j].group == c[i].group;
        if (seen) continue;
        snprintf(name, sizeof name, "%s_%s_vs_nsamples_b%dg%d", c[0].model, kld ? "kld" : "ppl", c[i].bits, c[i].group);
        dq_status st = plot_vs_samples(w, c, nc, c[i].bits, c[i].group, kld, name, &any);
        if (st) return st;
        if (any) fprintf(md, "\n![%d-bit group %d vs calibration samples](%s.svg)\n", c[i].bits, c[i].group, name);
    }
    return DQ_OK;
}

dq_status dq_report_write(const dq_results *r, const char *source, const char *dir, char ***scripts, dq_error *err) {
    *scripts = NULL;
    if (!r->n) return dq_fail(err, DQ_ERR_FORMAT, "%s: no usable rows", source);
    dq_result_row *rows = malloc(r->n * sizeof *rows);
    cell *cells = malloc(r->n * sizeof *cells);
    writer w = {dir, source, r, calloc(4 * r->n + 8, sizeof(char *)), 0, err};
    dq_status st = rows && cells && w.scripts ? DQ_OK : dq_fail(err, DQ_ERR_NOMEM, "report: out of memory");
    size_t nc = 0;
    if (!st) {
        memcpy(rows, r->rows, r->n * sizeof *rows);
        nc = make_cells(rows, r->n, cells);
        if (!nc) st = dq_fail(err, DQ_ERR_NOMEM, "report: out of memory");
    }
    dq_out_file *md = st ? NULL : open_out(&w, "report.md");
    if (!st && !md) st = err ? err->code : DQ_ERR_IO;
    if (!st) {
        fprintf(md->f, "# dashq quantization report\n\nSource: `%s` — %zu rows, %zu cells%s.\n"
                    "Bits per weight count an fp16 scale and zero per group.\n",
                source, r->n, nc, r->n_skipped ? " (malformed rows skipped, see the warnings)" : "");
        for (size_t i = 0, j; i < nc && !st; i = j) {
            for (j = i + 1; j < nc && same_model(&cells[i], &cells[j]); j++) {}
            st = model_section(&w, md->f, cells + i, j - i);
        }
        if (st) abort_out(md);
        else st = close_out(&w, md);
    }
    free(rows);
    free(cells);
    if (st) {
        for (size_t i = 0; w.scripts && i < w.n_scripts; i++) free(w.scripts[i]);
        free(w.scripts);
        return st;
    }
    *scripts = w.scripts;
    return DQ_OK;
}
