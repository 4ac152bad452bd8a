/* dq_quantize, the public entry point of the main job: checks the output
 * before any work, draws the calibration windows, plans GGUF types, runs
 * the block-by-block pipeline (calib/pipeline.c) and writes the packed
 * checkpoint or GGUF file. Everything worth telling the user goes through
 * the caller's dq_progress; nothing is printed here. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/resume.h"
#include "calib/pipeline.h"
#include "dist/comm.h"
#include "export/gguf_export.h"
#include "formats/dashq_packed.h"
#include "formats/ggml_types.h"
#include "quant/methods.h"
#include "transform/transform.h"
#include "util/error.h"
#include "util/out_dir.h"
#include "util/files.h"
#include "util/mapped_file.h"
#include "util/progress.h"
#include "util/threads.h"

dq_quantize_params dq_quantize_default_params(void) {
    return (dq_quantize_params){.method = "dashq", .bits = 4, .group = 128, .format = "packed", .nsamples = 128};
}

const char *dq_quantize_methods(void) { return dq_method_names(); }
const char *dq_quantize_gguf_types(void) { return dq_type_plan_names(); }

static char transform_names[256];

static void build_transform_names(void) {
    snprintf(transform_names, sizeof transform_names, "rotations: %s; smoothings: %s", dq_rotation_names(),
             dq_smoothing_names());
}

const char *dq_quantize_transforms(void) { /* built once, whichever thread asks first */
    static once_flag once = ONCE_FLAG_INIT;
    call_once(&once, build_transform_names);
    return transform_names;
}

void dq_quantize_method_help(char *buf, size_t cap, const char *prefix) {
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < DQ_METHOD_COUNT && n < cap; i++) {
        n += (size_t)snprintf(buf + n, cap - n, "%s%s:", prefix, DQ_METHODS[i].name);
        for (const dq_method_option *const *op = DQ_METHODS[i].options; *op && n < cap; op++) {
            n += (size_t)snprintf(buf + n, cap - n, " --");
            for (const char *c = (*op)->name; *c && n + 1 < cap; c++) buf[n++] = *c == '_' ? '-' : *c, buf[n] = '\0';
            if ((*op)->type == DQ_OPT_ENUM)
                for (int v = 0; (*op)->values[v] && n < cap; v++)
                    n += (size_t)snprintf(buf + n, cap - n, "%s%s", v ? "|" : " ", (*op)->values[v]);
            else if ((*op)->type != DQ_OPT_FLAG && n < cap) n += (size_t)snprintf(buf + n, cap - n, " X");
        }
        if (n < cap) n += (size_t)snprintf(buf + n, cap - n, "\n");
    }
}

/* The validated job: the method's row and options, the output kind. */
typedef struct {
    const dq_method_info *mi;
    dq_pipeline_opts po;
    dq_transform_opts tr; /* the prepare hook's (po.prepare_user) */
    bool gguf;
    int seqlen;
    char spill_dir[PATH_MAX];
} job;

/* The rotation and smoothing by name; the pipeline runs them first. */
static dq_status check_transform(const dq_quantize_params *p, job *j, dq_error *err) {
    dq_transform_opts *t = &j->tr;
    t->rotate = dq_rotation_find(p->rotate ? p->rotate : "none");
    t->smooth = dq_smoothing_find(p->smooth ? p->smooth : "none");
    if (!t->rotate) return dq_fail(err, DQ_ERR_ARG, "unknown rotation %s (%s)", p->rotate, dq_rotation_names());
    if (!t->smooth) return dq_fail(err, DQ_ERR_ARG, "unknown smoothing %s (%s)", p->smooth, dq_smoothing_names());
    if (t->rotate->learn && !p->calib)
        return dq_fail(err, DQ_ERR_ARG, "rotation %s needs a calibration text (--calib FILE)", t->rotate->name);
    if (t->smooth->needs_calib && !p->calib)
        return dq_fail(err, DQ_ERR_ARG, "smoothing %s needs a calibration text (--calib FILE)", t->smooth->name);
    if ((p->act_bits && (p->act_bits < 4 || p->act_bits > 8)) || (p->act_group && (p->act_group < 8 || p->act_group > 4096)))
        return dq_fail(err, DQ_ERR_ARG, "activation bits %d / group %d: bits 4..8 (0: none), group 8..4096 (0: per token)",
                       p->act_bits, p->act_group);
    if (!(p->smooth_alpha >= 0 && p->smooth_alpha <= 1))
        return dq_fail(err, DQ_ERR_ARG, "smoothing alpha %g is outside [0, 1]", (double)p->smooth_alpha);
    t->alpha = p->smooth_alpha > 0 ? p->smooth_alpha : 0.5f;
    t->seed = p->seed;
    t->bits = j->po.q.bits;
    t->group = j->po.q.group;
    t->hero_beta = p->hero_beta > 0 ? p->hero_beta : 0.1f;
    t->hero_steps = p->hero_steps > 0 ? p->hero_steps : 40;
    t->hero_lr = 0.05f;
    t->hero_rot_lr = 0.2f;
    t->hero_rows = 128;
    t->n_threads = dq_threads_or_default(p->n_threads);
    t->progress = p->progress;
    if (dq_transform_active(t)) j->po.prepare = dq_transform_prepare, j->po.prepare_user = t;
    return DQ_OK;
}

/* The parameters alone (no model yet): method, options, format, data. */
static dq_status check_params(const dq_quantize_params *p, job *j, dq_error *err) {
    memset(j, 0, sizeof *j);
    if (!p->method || !(j->mi = dq_method_find(p->method)))
        return dq_fail(err, DQ_ERR_ARG, "unknown method %s (%s)", p->method ? p->method : "(none)", dq_method_names());
    const char *fmt = p->format ? p->format : "packed";
    if (strcmp(fmt, "packed") && strcmp(fmt, "gguf"))
        return dq_fail(err, DQ_ERR_ARG, "unknown output format %s (packed, gguf)", fmt);
    j->gguf = !strcmp(fmt, "gguf");
    if (j->gguf && !p->gguf_type)
        return dq_fail(err, DQ_ERR_ARG, "GGUF output needs a type (one of %s)", dq_type_plan_names());
    if (!j->gguf && (p->gguf_type || p->pure))
        return dq_fail(err, DQ_ERR_ARG, "a GGUF type and pure go with the GGUF format");
    if (!p->calib && j->mi->stat != DQ_STAT_NONE) /* its statistic comes from calibration text */
        return dq_fail(err, DQ_ERR_ARG, "method %s needs a calibration text (--calib FILE)", j->mi->name);
    if (p->calib && (p->nsamples < 1 || p->seqlen < 0))
        return dq_fail(err, DQ_ERR_ARG, "%d calibration windows of %d tokens", p->nsamples, p->seqlen);
    j->po.q = dq_quant_defaults(j->mi->method, p->bits, p->group);
    dq_status st = dq_method_set_options(j->mi, p->options, &j->po.q, err);
    if (!st && !j->gguf) st = dq_quant_check(&j->po.q, p->group > 0 ? p->group : 1, "quantize", err);
    j->po.n_threads = p->n_threads;
    j->po.quantize_head = p->quantize_head;
    j->po.progress = p->progress;
    j->po.spectrum = p->spectrum;
    j->po.comm = p->comm;
    if (!st && p->hidden_dtype && !dq_hidden_dtype_parse(p->hidden_dtype, &j->po.hidden_dtype))
        st = dq_fail(err, DQ_ERR_ARG, "unknown hidden-state dtype %s (f32, bf16)", p->hidden_dtype);
    return st ? st : check_transform(p, j, err);
}

dq_status dq_quantize_check(const dq_quantize_params *p, dq_error *err) {
    job j;
    return check_params(p, &j, err);
}

static dq_status make_job(const dq_model *m, const dq_quantize_params *p, job *j, dq_error *err) {
    dq_status st = check_params(p, j, err);
    j->seqlen = p->seqlen > 0 ? p->seqlen : dq_default_window(&m->cfg);
    return st;
}

static dq_status load_windows(const dq_model *m, const dq_tokenizer *t, const dq_quantize_params *p, const job *j,
                              dq_calib_set *cs, dq_error *err) {
    if (!p->calib) { /* RTN needs no data: a 2-token dummy window, errors reported as not measured */
        *cs = (dq_calib_set){.n = 1, .len = 2, .tokens = calloc(2, sizeof(int32_t))};
        return cs->tokens ? DQ_OK : dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    }
    if (j->seqlen > m->cfg.seq_len)
        dq_progress_note(&p->progress, true, "calibration windows of %d tokens are beyond %s's training context of %d "
                         "tokens: activations past it are extrapolated", j->seqlen, m->path, m->cfg.seq_len);
    dq_status st = dq_calib_load(p->calib, t, p->nsamples, j->seqlen, p->seed, cs, err);
    if (!st && cs->overlapping)
        dq_progress_note(&p->progress, true, "%s has %zu tokens, fewer than %d x %d: windows overlap (drawn with "
                         "replacement)", p->calib, cs->text_tokens, p->nsamples, j->seqlen);
    return st;
}

static dq_packed_info packed_info(const dq_model *m, const dq_tokenizer *t, const dq_quantize_params *p,
                                  const job *j, const dq_calib_set *cs) {
    static const char *const curvature[] = {NULL, "oac", "oac-token"}; /* dq_curvature order */
    return (dq_packed_info){.method = j->mi->name, .bits = j->po.q.bits, .group = j->po.q.group,
                            .nsamples = p->calib ? cs->n : 0, .seqlen = p->calib ? cs->len : 0, .seed = p->seed,
                            .calib_path = p->calib, .tokenizer_path = dq_tokenizer_path(t), .base_model = m->path,
                            .tokenizer = t, .curvature = curvature[j->po.q.curvature],
                            .rotate = j->tr.rotate && j->tr.rotate->make ? j->tr.rotate->name : NULL,
                            .smooth = j->tr.smooth && j->tr.smooth->run ? j->tr.smooth->name : NULL, .smooth_alpha = j->tr.alpha};
}

/* The options and the calibration's shape, hashed: what both fingerprints
 * below start from. */
static uint64_t options_hash(const dq_quantize_params *p, const job *j, const dq_calib_set *cs) {
    char text[2048];
    snprintf(text, sizeof text, "dashq %s|%s|%s|%d|%d|%s|%s|%d|%d|%d|%llu|%d|%s|%s|%.9g|%.9g|%d|%d|%d|%d|%s",
             DQ_VERSION, j->mi->name, p->options ? p->options : "", p->bits, p->group, p->format ? p->format : "packed",
             p->gguf_type ? p->gguf_type : "", p->pure, cs->n, cs->len, (unsigned long long)p->seed,
             p->quantize_head, p->rotate ? p->rotate : "none", p->smooth ? p->smooth : "none",
             (double)p->smooth_alpha, (double)p->hero_beta, p->hero_steps, p->act_bits, p->act_group, p->spectrum,
             dq_hidden_dtype_name(j->po.hidden_dtype));
    return dq_resume_hash(DQ_RESUME_HASH0, text, strlen(text));
}

/* Everything the output depends on: a resumed run must be the same run. */
static uint64_t fingerprint(const dq_model *m, const dq_tokenizer *t, const dq_quantize_params *p, const job *j,
                            const dq_calib_set *cs) {
    uint64_t h = options_hash(p, j, cs);
    int ranks = dq_comm_size(p->comm); /* each rank's hidden states hold its share of the windows */
    if (ranks > 1) h = dq_resume_hash(h, &ranks, sizeof ranks);
    h = dq_resume_hash_file(h, m->path);
    for (int i = 0; i < m->n_maps; i++) h = dq_resume_hash_file(h, m->maps[i].path);
    h = dq_resume_hash_file(h, dq_tokenizer_path(t));
    h = dq_resume_hash_file(h, p->calib);
    return dq_resume_hash(h, cs->tokens, (size_t)cs->n * cs->len * sizeof *cs->tokens);
}

/* What every rank of a distributed run must agree on: the options, the
 * calibration tokens and the model's files (path and size: copies on other
 * machines have other mtimes). */
static uint64_t rank_fingerprint(const dq_model *m, const dq_tokenizer *t, const dq_quantize_params *p, const job *j,
                                 const dq_calib_set *cs) {
    const char *tok = dq_tokenizer_path(t) ? dq_tokenizer_path(t) : "";
    uint64_t h = options_hash(p, j, cs);
    h = dq_resume_hash(h, m->path, strlen(m->path) + 1);
    h = dq_resume_hash(h, tok, strlen(tok) + 1);
    for (int i = 0; i < m->n_maps; i++) {
        struct stat sb;
        int64_t size = stat(m->maps[i].path, &sb) == 0 ? (int64_t)sb.st_size : -1;
        h = dq_resume_hash(h, m->maps[i].path, strlen(m->maps[i].path) + 1);
        h = dq_resume_hash(h, &size, sizeof size);
    }
    return dq_resume_hash(h, cs->tokens, (size_t)cs->n * cs->len * sizeof *cs->tokens);
}

/* A rank other than 0 writes nothing: the pipeline still drops each
 * block's codes and weights as they are done. */
static dq_status emit_nothing(void *user, const dq_model *m, const dq_qlayer *layers, int n, dq_error *err) {
    (void)user, (void)m, (void)layers, (void)n, (void)err;
    return DQ_OK;
}

/* --resume: the state folder, and where the pipeline starts. */
static dq_status open_resume(const char *out, const dq_model *m, const dq_tokenizer *t, const dq_quantize_params *p,
                             job *j, const dq_calib_set *cs, dq_resume *rs, dq_error *err) {
    if (j->po.q.refresh > 0 && j->po.q.curvature != DQ_CURVATURE_LAYER)
        return dq_fail(err, DQ_ERR_ARG, "--resume cannot continue a run whose gradients are refreshed as blocks are "
                       "quantized (refresh=%d): run it without --resume or without refresh", j->po.q.refresh);
    dq_status st = dq_resume_open(rs, out, j->gguf, fingerprint(m, t, p, j, cs), p->comm, err);
    if (st) return st;
    j->po.hidden_files = rs->hidden_files;
    j->po.hidden_cur = rs->hidden_cur;
    j->po.start_block = rs->blocks_done;
    j->po.done = rs->done;
    j->po.n_done = rs->n_done;
    if (rs->blocks_done)
        dq_progress_note(&p->progress, false, "resuming %s after block %d of %d (state in %s)", out, rs->blocks_done,
                         m->cfg.n_layers, rs->dir);
    return DQ_OK;
}

/* Where the calibration hidden states live: in RAM while they fit in what
 * the budget leaves after the pipeline's own peak (an estimate), else in a
 * spill file under tmp_dir (default: beside the output, which is on a disk
 * meant for model-sized files, where /tmp may be RAM). */
static void plan_memory(const char *out, const dq_model *m, const dq_config *c, const dq_quantize_params *p,
                        const dq_calib_set *cs, job *j, dq_quantize_report *rep) {
    size_t budget = p->mem_budget ? p->mem_budget : dq_mem_available();
    size_t working = dq_pipeline_working_bytes(c, &j->po);
    size_t bytes = dq_hidden_bytes(cs->n, cs->len, m->cfg.dim, j->po.hidden_dtype);
    if (p->tmp_dir) snprintf(j->spill_dir, sizeof j->spill_dir, "%s", p->tmp_dir);
    else dq_path_dir(j->spill_dir, sizeof j->spill_dir, out);
    j->po.spill_dir = j->spill_dir;
    j->po.hidden_budget = budget == 0 ? 0 : budget > working ? budget - working : 1;
    bool spill = j->po.hidden_budget && bytes > j->po.hidden_budget;
    if (rep) rep->hidden_bytes = bytes, rep->hidden_spilled = spill;
    if (spill)
        dq_progress_note(&p->progress, false, "the calibration hidden states (%.0f MB, %s) go to a spill file in %s: "
                         "the memory budget is %.0f MB and the rest of the job needs about %.0f MB",
                         (double)bytes / 1e6, dq_hidden_dtype_name(j->po.hidden_dtype), j->spill_dir,
                         (double)budget / 1e6, (double)working / 1e6);
}

/* The output, written as the blocks finish (so that a lazily loaded model
 * is held one block at a time): laid out before the first solve from the
 * layers the pipeline will produce (dq_quant_layout), fed by its emit. */
typedef struct {
    dq_packed_writer *packed;
    dq_gguf_export *gguf;
    dq_resume *resume; /* NULL: not a resumable run */
} output;

/* After each block of a resumable run: the writer's bytes on disk, then the
 * state that points past them. */
static dq_status save_point(void *user, int blocks_done, int hidden_cur, const dq_quant_result *r, dq_error *err) {
    output *o = user;
    dq_status st = o->gguf ? dq_gguf_export_sync(o->gguf, err) : dq_packed_sync(o->packed, err);
    return st ? st : dq_resume_save(o->resume, blocks_done, hidden_cur, r, err);
}

static dq_status emit_output(void *user, const dq_model *m, const dq_qlayer *layers, int n, dq_error *err) {
    output *o = user;
    return o->gguf ? dq_gguf_export_put(o->gguf, m, layers, n, err) : dq_packed_put(o->packed, m, layers, n, err);
}

/* c: the file's config (a rotation unties the head). */
static dq_status begin_output(const char *out, const dq_model *m, const dq_config *c, const dq_tokenizer *t, job *j,
                              output *o, dq_error *err) {
    dq_qlayer *layout = calloc((size_t)dq_quant_result_capacity(c), sizeof *layout);
    if (!layout) return dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    int n = dq_quant_layout(c, &j->po, layout);
    const dq_resume *rs = o->resume;
    const char *tmp = rs ? rs->partial : NULL;
    bool reopen = rs && rs->blocks_done > 0;
    dq_gguf_export_opts g = {.type = DQ_GGML_F16, .file_type = j->po.plan ? j->po.plan->file_type : 0,
                             .resume_tmp = tmp, .resume_reopen = reopen};
    dq_status st = j->gguf ? dq_gguf_export_begin(out, m, c, t, &g, layout, n, &o->gguf, err)
                           : dq_packed_begin_at(out, tmp, reopen, m, layout, n, &o->packed, err);
    free(layout);
    if (!st && reopen) /* what the interrupted run wrote is in the file */
        st = j->gguf ? dq_gguf_export_skip(o->gguf, m, rs->done, rs->n_done, err)
                     : dq_packed_skip(o->packed, rs->done, rs->n_done, err);
    if (!st) j->po.emit = emit_output, j->po.emit_user = o;
    if (!st && rs) j->po.checkpoint = save_point, j->po.checkpoint_user = o;
    return st;
}

/* Completes the output after a successful run (st == DQ_OK), else removes it. */
static dq_status end_output(output *o, dq_status st, const dq_model *m, const dq_packed_info *info,
                            const dq_quant_result *r, dq_error *err) {
    if (st) {
        dq_gguf_export_abort(o->gguf);
        dq_packed_abort(o->packed);
        return st;
    }
    return o->gguf ? dq_gguf_export_finish(o->gguf, m, err) : dq_packed_finish(o->packed, m, r, info, err);
}

/* Tensors whose width the group did not divide (padded). */
static int n_padded(const dq_quant_result *r) {
    int n = 0;
    for (int i = 0; i < r->n; i++) n += r->layers[i].pad > 0;
    return n;
}

static dq_status fill_report(const char *out, const job *j, const dq_quant_result *r, const dq_calib_set *cs,
                             bool calibrated, dq_quantize_report *rep, dq_error *err) {
    memset(rep, 0, sizeof *rep);
    if (r->n && !(rep->tensors = calloc((size_t)r->n, sizeof *rep->tensors)))
        return dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    double sum = 0;
    for (int i = 0; i < r->n; i++) {
        const dq_qlayer *l = &r->layers[i];
        dq_tensor_report *t = &rep->tensors[i];
        snprintf(t->name, sizeof t->name, "%s", l->name);
        const dq_ggml_type_info *ti = l->ggml_type >= 0 ? dq_ggml_info((uint32_t)l->ggml_type) : NULL;
        snprintf(t->type, sizeof t->type, "%s", ti ? ti->name : "");
        t->rel_err = calibrated && !dq_qlayer_is(l, DQ_SITE_TOKEN_EMBD) ? l->rel_err : -1;
        t->seconds = l->seconds;
        t->in_features = l->qt.rows ? l->qt.in_cols : 0;
        t->quant_in_features = l->qt.rows ? l->qt.cols : 0;
        t->h_lmax = l->spectrum.lmax;
        t->h_lmean = l->spectrum.lmean;
        t->h_cond = l->spectrum.cond;
        sum += l->rel_err;
    }
    rep->n_tensors = r->n;
    rep->n_padded = n_padded(r);
    rep->mean_rel_err = r->n ? sum / r->n : 0;
    rep->n_fallback = j->po.plan ? j->po.plan->n_fallback : 0;
    rep->calib_windows = calibrated ? cs->n : 0;
    rep->calib_len = calibrated ? cs->len : 0;
    rep->calib_text_tokens = cs->text_tokens;
    rep->calib_overlapping = cs->overlapping;
    rep->t_forward = r->t_forward;
    rep->t_stats = r->t_stats;
    rep->t_solve = r->t_solve;
    rep->t_total = r->t_total;
    rep->t_gradients = r->t_gradients;
    rep->grad_loss = r->grad_loss;
    rep->t_transform = j->tr.seconds;
    rep->orth_err = j->tr.orth_err;
    rep->hero_err_ratio = j->tr.hero.err_ratio;
    rep->hero_rho_before = j->tr.hero.rho_before;
    rep->hero_rho_after = j->tr.hero.rho_after;
    rep->hero_inputs = j->tr.hero.n;
    rep->hero_rot_err_ratio = j->tr.hero.rot_err_ratio;
    rep->hero_r2_err_ratio = j->tr.hero.r2_err_ratio;
    rep->hero_rot_loss_before = j->tr.hero.rot_loss_before;
    rep->hero_rot_loss_after = j->tr.hero.rot_loss_after;
    rep->split_massive = j->tr.hero.split_massive;
    rep->split_kept = j->tr.hero.split_kept;
    rep->split_energy = j->tr.hero.split_energy;
    struct stat sb;
    if (j->gguf && !stat(out, &sb)) rep->bytes_written = (uint64_t)sb.st_size;
    else if (!j->gguf) rep->bytes_written = dq_dir_bytes(out);
    return DQ_OK;
}

/* A source stored quantized (SmolLM2 comes as Q4_1) is a grid some methods
 * can land back on: W4 g32 DASH-Q reproduced SmolLM2's Q4_1 weights to KLD
 * 7e-6 where RTN gave 0.30 (bench/grid_confound.sh), which says nothing of
 * either method on a full-precision model. */
static void note_requantizing(const dq_model *m, const dq_quantize_params *p) {
    int n;
    const char *src = dq_model_source_quant(m, &n);
    if (src)
        dq_progress_note(&p->progress, true, "%s stores %d block linears already quantized (%s): they are "
                         "requantized from their decoded values, and a method whose groups align with the "
                         "source's blocks can land back on its grid; compare methods on full-precision weights",
                         m->path, n, src);
}

/* Numeric failures name a tensor; the message then says which model too. */
static dq_status in_model(const dq_model *m, dq_status st, dq_error *err) {
    if (st != DQ_ERR_NUMERIC || !err) return st;
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg, "%s", err->msg);
    return dq_fail(err, st, "%s: %s", m->path, msg);
}

dq_status dq_quantize(dq_model *m, const dq_tokenizer *t, const char *out, const dq_quantize_params *p,
                      dq_quantize_report *report, dq_error *err) {
    if (report) memset(report, 0, sizeof *report);
    job j;
    dq_status st = make_job(m, p, &j, err);
    const char *inputs[] = {m->path, dq_tokenizer_path(t), p->calib};
    /* before minutes of work: the output must not destroy an input or an unrelated file */
    bool root = dq_comm_root(p->comm); /* the rank that writes */
    if (!st && root) st = dq_check_output(out, j.gguf ? DQ_OUT_GGUF : DQ_OUT_PACKED_DIR, inputs, 3, err);
    if (!st && !j.gguf) st = dq_packed_check(m, err);
    dq_type_plan plan = {0};
    dq_config file_cfg = m->cfg; /* as the file will be: a rotation unties the head */
    if (!st && dq_transform_unties(&j.tr)) file_cfg.tied_embeddings = false;
    if (!st && j.gguf) {
        st = dq_type_plan_make(p->gguf_type, p->pure, j.mi->stat != DQ_STAT_NONE, &file_cfg, &plan, err);
        j.po.plan = &plan;
        if (!st && plan.n_fallback)
            dq_progress_note(&p->progress, false, "%d tensors use llama.cpp's fallback type: their width is not a "
                             "multiple of %s's block", plan.n_fallback, p->gguf_type);
    }
    if (!st && j.mi->stat == DQ_STAT_DIAG && j.tr.rotate->make)
        dq_progress_note(&p->progress, true, "a %s rotation before %s's diagonal curvature: on a model with massive "
                         "activations the rotation moves them into dense directions a diagonal cannot see "
                         "(SmolLM2-135M W3 g128: KLD 0.69 -> 3.8); GPTQ or OAC use the full curvature",
                         j.tr.rotate->name, j.mi->name);
    if (!st) note_requantizing(m, p);
    dq_calib_set cs = {0};
    if (!st && (p->act_bits || p->act_group)) st = dq_model_set_act_quant(m, p->act_bits, p->act_group, err);
    if (!st) st = load_windows(m, t, p, &j, &cs, err);
    st = dq_comm_agree(p->comm, st, err);
    if (!st) st = dq_comm_same(p->comm, rank_fingerprint(m, t, p, &j, &cs), "inputs or options (model files, "
                               "tokenizer, calibration tokens, quantize options)", err);
    dq_quant_result r = {0};
    output o = {0};
    bool begun = false;
    dq_quantize_report mem = {0};
    dq_resume rs = {0};
    if (!st) plan_memory(out, m, &file_cfg, p, &cs, &j, &mem);
    if (!st && p->resume) st = open_resume(out, m, t, p, &j, &cs, &rs, err);
    if (!st && p->resume) o.resume = root ? &rs : NULL; /* rank 0 keeps the state and the partial output */
    else if (!st && dq_resume_exists(out))
        dq_progress_note(&p->progress, true, "%s.resume holds an interrupted resumable run: add --resume to continue "
                         "it (this run starts over and leaves it)", out);
    if (!st && root) begun = !(st = begin_output(out, m, &file_cfg, t, &j, &o, err));
    if (!st && !root) j.po.emit = emit_nothing;
    st = dq_comm_agree(p->comm, st, err); /* from here every failure is every rank's */
    if (!st) st = in_model(m, dq_quantize_model(m, &cs, &j.po, &r, err), err);
    m->consumed = m->lazy; /* its blocks were released (or hold Ŵ): no later job may reload them from the file */
    int padded = st ? 0 : n_padded(&r);
    if (padded)
        dq_progress_note(
            &p->progress, false,
            "group %d does not divide the input width of %d tensors; their rows "
            "are padded with zero weights to a multiple of it (quant_in_features in dashq_config.json). "
            "The official Python loader's forward pass does not drop the padding: for it, pick a group "
            "that divides every width",
            j.po.q.group, padded);
    dq_packed_info info = packed_info(m, t, p, &j, &cs);
    if (!st && root) st = dq_model_block_load(m, DQ_DEFER_HEAD, err); /* a full-precision head the writer writes last */
    if (!st && root) st = dq_model_block_load(m, DQ_DEFER_EMBED, err); /* and the embedding */
    if (begun) st = end_output(&o, st, m, &info, &r, err);
    st = dq_comm_agree(p->comm, st, err); /* rank 0's file is published (or not) */
    if (!st && o.resume) dq_resume_remove(&rs); /* published: nothing to resume */
    else if (!st && p->resume) { /* another rank: its own hidden states, on its machine */
        unlink(rs.hidden[0]), unlink(rs.hidden[1]);
        rmdir(rs.dir);
    }
    else if (st && o.resume && rs.blocks_done)
        dq_progress_note(&p->progress, true, "the run stopped after block %d of %d; the same command continues it "
                         "from there (state in %s)", rs.blocks_done, m->cfg.n_layers, rs.dir);
    dq_resume_free(&rs);
    if (!st && report) st = fill_report(out, &j, &r, &cs, p->calib != NULL, report, err);
    if (!st && report) report->hidden_bytes = mem.hidden_bytes, report->hidden_spilled = mem.hidden_spilled;
    const char *src = !st && report ? dq_model_source_quant(m, &report->n_requantized) : NULL;
    if (src) snprintf(report->source_quant, sizeof report->source_quant, "%s", src);
    dq_quant_result_free(&r);
    dq_type_plan_free(&plan);
    dq_calib_free(&cs);
    return st;
}

void dq_quantize_report_free(dq_quantize_report *r) {
    if (!r) return;
    free(r->tensors);
    memset(r, 0, sizeof *r);
}
