#define _POSIX_C_SOURCE 200809L
#include "eval/perplexity.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/model.h"
#include "util/error.h"
#include "util/files.h"

/* One scored position: -log p(target) under the model, and against a base. */
typedef struct {
    double nll, base_nll, kld;
    bool same_top;
} scored;

/* llama.cpp's log-prob record: float scale, float min_log_prob, then uint16
 * codes; nv = 2*((n_vocab+1)/2) + 4 uint16 per position. */
static size_t record_len(int n_vocab) { return 2 * (((size_t)n_vocab + 1) / 2) + 4; }

static int nearest_int(float v) { return (int)lrintf(v); }

static void encode_record(const float *logits, int nv, uint16_t *rec) {
    float mx = logits[0], mn = logits[0];
    for (int i = 1; i < nv; i++) mx = fmaxf(mx, logits[i]), mn = fminf(mn, logits[i]);
    mn = fmaxf(mn, mx - 16);
    double sum = 0.0;
    for (int i = 0; i < nv; i++) sum += expf(logits[i] - mx);
    float lse = (float)log(sum), min_lp = mn - mx - lse, scale = (mx - mn) / 65535.f;
    memcpy(rec, &scale, 4);
    memcpy(rec + 2, &min_lp, 4);
    uint16_t *q = rec + 4;
    for (int i = 0; i < nv; i++)
        q[i] = scale && logits[i] > mn ? (uint16_t)nearest_int((logits[i] - mn) / scale) : 0;
}

static scored score_position(const float *logits, int nv, int target, const uint16_t *base) {
    scored s = {0};
    float mx = logits[0];
    int imax = 0;
    for (int i = 1; i < nv; i++)
        if (logits[i] > mx) mx = logits[i], imax = i;
    double sum = 0.0;
    for (int i = 0; i < nv; i++) sum += exp((double)logits[i] - mx);
    double lse = mx + log(sum);
    s.nll = lse - logits[target];
    if (!base) return s;
    float scale, min_lp;
    memcpy(&scale, base, 4);
    memcpy(&min_lp, base + 2, 4);
    const uint16_t *q = base + 4;
    double kld = 0.0;
    int ibase = 0;
    for (int i = 0; i < nv; i++) {
        double lpb = scale * q[i] + min_lp;
        if (q[i] > q[ibase]) ibase = i;
        if (lpb > -16.0) kld += exp(lpb) * (lpb - (logits[i] - lse));
    }
    s.kld = kld;
    s.base_nll = -(scale * q[target] + min_lp);
    s.same_top = imax == ibase;
    return s;
}

typedef struct {
    FILE *save, *base;     /* save: save_file.f, a temporary renamed into place at the end */
    dq_out_file save_file;
    int ctx, n_vocab, n_windows;
    const int32_t *tokens; /* n_windows * ctx tokens scored */
    int32_t *file_tokens;  /* owned when read from a base file */
} logit_io;

static dq_status open_base(const char *path, logit_io *io, const dq_config *c, dq_error *err) {
    io->base = dq_fopen_input(path, err);
    if (!io->base) return err ? err->code : DQ_ERR_IO;
    char magic[8];
    uint32_t ctx;
    int32_t nv, nch;
    if (fread(magic, 1, 8, io->base) != 8 || memcmp(magic, "_logits_", 8) || fread(&ctx, 4, 1, io->base) != 1 ||
        fread(&nv, 4, 1, io->base) != 1 || fread(&nch, 4, 1, io->base) != 1)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: not a saved log-probability file (magic _logits_)", path);
    if (nv != c->vocab_size)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: saved with a vocabulary of %d, model has %d", path, nv, c->vocab_size);
    if (ctx < 4 || ctx > (1u << 20) || nch <= 0 || (uint64_t)nch * ctx > (1ull << 31))
        return dq_fail(err, DQ_ERR_FORMAT, "%s: implausible header (ctx %u, %d windows)", path, ctx, nch);
    /* The header fixes the file's size: checking it first keeps a header that
     * lies about the window count from allocating gigabytes for tokens. */
    uint64_t per_window = 4ull * ctx + 2ull * record_len(nv) * (ctx - 1 - ctx / 2);
    uint64_t want = 20 + (uint64_t)nch * per_window;
    struct stat sb;
    if (fstat(fileno(io->base), &sb) != 0 || (uint64_t)sb.st_size != want)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: truncated or padded: its header (ctx %u, vocabulary %d, %d windows) "
                       "needs %llu bytes, the file has %lld", path, ctx, nv, nch, (unsigned long long)want,
                       (long long)sb.st_size);
    io->ctx = (int)ctx;
    io->n_windows = nch;
    io->file_tokens = malloc((size_t)nch * ctx * sizeof(int32_t));
    if (!io->file_tokens) return dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    if (fread(io->file_tokens, sizeof(int32_t), (size_t)nch * ctx, io->base) != (size_t)nch * ctx)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: truncated token list", path);
    for (size_t i = 0; i < (size_t)nch * ctx; i++)
        if (io->file_tokens[i] < 0 || io->file_tokens[i] >= nv)
            return dq_fail(err, DQ_ERR_FORMAT, "%s: token %zu out of range", path, i);
    io->tokens = io->file_tokens;
    return DQ_OK;
}

static dq_status open_save(const char *path, logit_io *io, dq_error *err) {
    dq_status st = dq_out_open(&io->save_file, path, err);
    if (st) return st;
    io->save = io->save_file.f;
    uint32_t ctx = (uint32_t)io->ctx;
    int32_t nv = io->n_vocab, nch = io->n_windows;
    if (fwrite("_logits_", 1, 8, io->save) != 8 || fwrite(&ctx, 4, 1, io->save) != 1 ||
        fwrite(&nv, 4, 1, io->save) != 1 || fwrite(&nch, 4, 1, io->save) != 1 ||
        fwrite(io->tokens, sizeof(int32_t), (size_t)nch * io->ctx, io->save) != (size_t)nch * io->ctx)
        return dq_fail(err, DQ_ERR_IO, "%s: write failed", path);
    return DQ_OK;
}

typedef struct {
    double nll, nll2, kld, kld2, same, base_nll;
    size_t n;
    double *klds; /* every position's KLD, for the percentile */
} totals;

static dq_status score_window(const dq_model *m, dq_session *s, const logit_io *io, int w, int bos,
                              bool llamacpp, const dq_ppl_opts *o, totals *t, uint16_t *recs,
                              scored *sc, dq_error *err) {
    int ctx = io->ctx, nv = m->cfg.vocab_size;
    int32_t *win = malloc((size_t)ctx * sizeof *win);
    if (!win) return dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    memcpy(win, io->tokens + (size_t)w * ctx, (size_t)ctx * sizeof *win);
    if (llamacpp && bos >= 0) win[0] = bos;
    const float *logits;
    dq_status st = dq_forward(s, win, ctx, 0, true, &logits, err);
    free(win);
    if (st) return st;
    int first = llamacpp ? ctx / 2 : 0, n = ctx - 1 - first;
    size_t rl = record_len(nv);
    if (io->base && fread(recs, sizeof *recs, rl * n, io->base) != rl * n)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: truncated at window %d", o->kld_base, w);
    const float lowest = -17.0f - logf((float)nv);
    for (int i = 0; io->base && i < n; i++) { /* each record: float scale, float min, then nv uint16 */
        float scale, min_lp;
        memcpy(&scale, recs + rl * i, 4);
        memcpy(&min_lp, recs + rl * i + 2, 4);
        /* llama.cpp and we write records spanning [min_lp, min_lp + 65535 scale] = [-16 - lse, -lse]
         * with 0 <= lse <= ln(vocabulary): never above 0 nor below -16 - ln(vocabulary) (give or
         * take rounding). Anything else is no distribution and makes the KLD or the base
         * perplexity huge or infinite. */
        if (!isfinite(scale) || !isfinite(min_lp) || scale < 0 || min_lp < lowest ||
            (double)min_lp + 65535.0 * scale > 1e-2)
            return dq_fail(err, DQ_ERR_FORMAT, "%s: window %d, position %d: log-probability scale %g / minimum %g is "
                           "not a finite distribution (log-probabilities must lie in [%.1f, 0])", o->kld_base, w,
                           first + i, scale, min_lp, lowest);
    }
    const int32_t *tok = io->tokens + (size_t)w * ctx;
#pragma omp parallel for num_threads(o->n_threads > 0 ? o->n_threads : 1) schedule(static)
    for (int i = 0; i < n; i++) {
        const float *lg = logits + (size_t)(first + i) * nv;
        if (io->save) encode_record(lg, nv, recs + rl * i);
        sc[i] = score_position(lg, nv, tok[first + i + 1], io->base ? recs + rl * i : NULL);
    }
    if (io->save && fwrite(recs, sizeof *recs, rl * n, io->save) != rl * n)
        return dq_fail(err, DQ_ERR_IO, "%s: write failed", o->save_logits);
    for (int i = 0; i < n; i++) { /* serial sum: the result does not depend on threads */
        t->nll += sc[i].nll, t->nll2 += sc[i].nll * sc[i].nll;
        t->kld += sc[i].kld, t->kld2 += sc[i].kld * sc[i].kld;
        t->same += sc[i].same_top, t->base_nll += sc[i].base_nll;
        if (t->klds) t->klds[t->n] = sc[i].kld;
        t->n++;
    }
    return DQ_OK;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void summarize(const totals *t, bool kld, dq_ppl_result *r) {
    double n = (double)t->n;
    r->n_scored = t->n;
    r->nll = t->nll / n;
    double var = t->nll2 / n - r->nll * r->nll;
    r->nll_err = var > 0 && n > 1 ? sqrt(var / (n - 1)) : 0;
    r->ppl = exp(r->nll);
    r->ppl_err = r->nll_err * r->ppl;
    if (!kld) return;
    r->has_kld = true;
    r->kld = t->kld / n;
    var = t->kld2 / n - r->kld * r->kld;
    r->kld_err = var > 0 && n > 1 ? sqrt(var / (n - 1)) : 0;
    r->same_top = t->same / n;
    r->same_top_err = n > 1 ? sqrt(r->same_top * (1 - r->same_top) / (n - 1)) : 0;
    r->base_ppl = exp(t->base_nll / n);
    qsort(t->klds, t->n, sizeof *t->klds, cmp_double);
    r->kld_p99 = t->klds[(size_t)(0.99 * (n - 1))];
    r->kld_max = t->klds[t->n - 1];
}

static dq_status run_windows(const dq_model *m, logit_io *io, int bos, bool llamacpp,
                             const dq_ppl_opts *o, dq_ppl_result *r, dq_error *err) {
    dq_session *s;
    dq_status st = dq_session_new(m, io->ctx, io->ctx, o->n_threads, &s, err);
    if (st) return st;
    size_t rl = record_len(m->cfg.vocab_size), per = (size_t)io->ctx;
    uint16_t *recs = (io->save || io->base) ? malloc(rl * per * sizeof *recs) : NULL;
    scored *sc = malloc(per * sizeof *sc);
    totals t = {0};
    if (io->base) t.klds = malloc((size_t)io->n_windows * per * sizeof *t.klds);
    if (!sc || ((io->save || io->base) && !recs) || (io->base && !t.klds))
        st = dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    dq_progress *p = dq_progress_start("perplexity", (size_t)io->n_windows, o->quiet);
    for (int w = 0; !st && w < io->n_windows; w++) {
        st = score_window(m, s, io, w, bos, llamacpp, o, &t, recs, sc, err);
        dq_progress_update(p, (size_t)w + 1);
    }
    dq_progress_finish(p);
    if (!st) summarize(&t, io->base != NULL, r);
    free(t.klds);
    free(recs);
    free(sc);
    dq_session_free(s);
    return st;
}

dq_status dq_eval_perplexity(const dq_model *m, const int32_t *tokens, size_t n_tokens, int bos,
                             const dq_ppl_opts *o, dq_ppl_result *r, dq_error *err) {
    memset(r, 0, sizeof *r);
    logit_io io = {.ctx = o->ctx, .n_vocab = m->cfg.vocab_size, .tokens = tokens};
    bool llamacpp = o->llamacpp || o->save_logits || o->kld_base;
    dq_status st = DQ_OK;
    if (o->kld_base) st = open_base(o->kld_base, &io, &m->cfg, err);
    if (!st && io.ctx < 2) st = dq_fail(err, DQ_ERR_ARG, "context %d is too short", io.ctx);
    if (!st && !o->kld_base) {
        size_t need = (llamacpp ? 2 : 1) * (size_t)io.ctx;
        if (n_tokens < need)
            st = dq_fail(err, DQ_ERR_ARG, "%s%sthe text has %zu tokens; a context of %d needs at least %zu (a longer text, or a smaller --ctx)",
                         o->text_path ? o->text_path : "", o->text_path ? ": " : "", n_tokens, io.ctx, need);
        io.n_windows = (int)(n_tokens / (size_t)io.ctx);
    }
    if (!st && o->max_windows > 0 && io.n_windows > o->max_windows) io.n_windows = o->max_windows;
    if (!st && o->save_logits) st = open_save(o->save_logits, &io, err);
    if (!st) st = run_windows(m, &io, bos, llamacpp, o, r, err);
    r->n_windows = io.n_windows;
    r->ctx = io.ctx;
    if (io.save && st) dq_out_abort(&io.save_file);
    else if (io.save) st = dq_out_commit(&io.save_file, err);
    if (io.base) fclose(io.base);
    free(io.file_tokens);
    return st;
}
