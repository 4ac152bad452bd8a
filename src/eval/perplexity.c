#define _POSIX_C_SOURCE 200809L
#include "eval/perplexity.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

#include "calib/hidden_states.h"
#include "model/forward.h"
#include "model/model.h"
#include "tokenizer/stream.h"
#include "util/error.h"
#include "util/files.h"
#include "util/progress.h"
#include "util/threads.h"

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

/* Scores window w, whose ctx tokens are tok, from the model's logits on it. */
static dq_status score_logits(const dq_model *m, const logit_io *io, const int32_t *tok, int w, const float *logits,
                              bool llamacpp, const dq_ppl_opts *o, totals *t, uint16_t *recs, scored *sc,
                              dq_error *err) {
    int ctx = io->ctx, nv = m->cfg.vocab_size;
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
#pragma omp parallel for num_threads(dq_threads_or_default(o->n_threads)) schedule(static)
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

/* What scoring windows one after another needs: the session, scratch, sums.
 * A model that is not all in memory (a lazily loaded one, too large for the
 * budget: dq_perplexity decides) is run one block at a time: the windows are
 * collected, then scorer_flush takes every window's residual stream through
 * block 0, then block 1, ..., kept between blocks in a dq_hidden store (RAM
 * while it fits o->mem_budget, else a file in o->spill_dir), and scores each
 * window from the head in order: the same arithmetic as dq_forward, so the
 * same numbers and --save-logits bytes, bit for bit (test_lazy). */
typedef struct {
    dq_model *m;
    const logit_io *io;
    int bos;
    bool llamacpp;
    const dq_ppl_opts *o;
    dq_session *s;
    uint16_t *recs;  /* ctx records (saving or comparing) */
    scored *sc;      /* (ctx) */
    int32_t *win;    /* (ctx) the window as the model sees it */
    totals t;
    bool by_block;   /* the model is not all in memory: windows wait in held for scorer_flush */
    int32_t *held;   /* n_held windows of ctx tokens */
    int n_held, cap_held;
} scorer;

static dq_status scorer_open(scorer *c, dq_model *m, const logit_io *io, int bos, bool llamacpp,
                             const dq_ppl_opts *o, dq_error *err) {
    *c = (scorer){.m = m, .io = io, .bos = bos, .llamacpp = llamacpp, .o = o, .by_block = !dq_model_in_memory(m)};
    dq_status st = dq_session_new(m, io->ctx, io->ctx, o->n_threads, &c->s, err);
    if (st) return st;
    size_t rl = record_len(m->cfg.vocab_size), per = (size_t)io->ctx;
    c->recs = (io->save || io->base) ? malloc(rl * per * sizeof *c->recs) : NULL;
    c->sc = malloc(per * sizeof *c->sc);
    c->win = malloc(per * sizeof *c->win);
    if (io->base) c->t.klds = malloc((size_t)io->n_windows * per * sizeof *c->t.klds);
    if (!c->sc || !c->win || ((io->save || io->base) && !c->recs) || (io->base && !c->t.klds))
        return dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    return DQ_OK;
}

/* c->win = the ctx tokens of a window as the model sees them (BOS first in llama.cpp's protocol). */
static void window_input(scorer *c, const int32_t *tok) {
    memcpy(c->win, tok, (size_t)c->io->ctx * sizeof *c->win);
    if (c->llamacpp && c->bos >= 0) c->win[0] = c->bos;
}

static dq_status score(scorer *c, const int32_t *tok, int w, const float *logits, dq_error *err) {
    return score_logits(c->m, c->io, tok, w, logits, c->llamacpp, c->o, &c->t, c->recs, c->sc, err);
}

static dq_status hold_window(scorer *c, const int32_t *tok, dq_error *err) {
    size_t ctx = (size_t)c->io->ctx;
    if (c->n_held == c->cap_held) {
        int cap = c->cap_held ? 2 * c->cap_held : 16;
        int32_t *p = cap > c->cap_held ? realloc(c->held, (size_t)cap * ctx * sizeof *p) : NULL;
        if (!p) return dq_fail(err, DQ_ERR_NOMEM, "out of memory for %d windows' tokens", cap);
        c->held = p, c->cap_held = cap;
    }
    memcpy(c->held + (size_t)c->n_held++ * ctx, tok, ctx * sizeof *tok);
    return DQ_OK;
}

/* Scores window w (its ctx tokens tok) now, or holds it for scorer_flush. */
static dq_status scorer_window(scorer *c, const int32_t *tok, int w, dq_error *err) {
    if (c->by_block) return hold_window(c, tok, err);
    window_input(c, tok);
    const float *logits;
    dq_status st = dq_forward(c->s, c->win, c->io->ctx, 0, true, &logits, err);
    return st ? st : score(c, tok, w, logits, err);
}

/* One step of the block sweep: every held window through block l (l = n_layers: the head, each window
 * scored), the block held in memory meanwhile. */
static dq_status sweep_block(scorer *c, dq_hidden *X, float *x, int l, dq_error *err) {
    int L = c->m->cfg.n_layers, T = c->io->ctx;
    bool held;
    dq_status st = dq_model_block_hold(c->m, l < L ? l : DQ_DEFER_HEAD, &held, err);
    for (int w = 0; !st && w < c->n_held; w++) {
        st = dq_hidden_read(X, w, x, err);
        if (!st && l < L) st = dq_block_forward(c->s, l, x, T, NULL, err);
        if (!st && l < L) st = dq_hidden_write(X, w, x, err);
        if (!st && l == L) st = dq_head_forward(c->s, x, T, err);
        if (!st && l == L) st = score(c, c->held + (size_t)w * T, w, dq_session_logits(c->s), err);
    }
    dq_model_block_let_go(c->m, l < L ? l : DQ_DEFER_HEAD, held);
    return st;
}

/* The held windows, block by block (see scorer): progress "perplexity by block", one unit per block and the head. */
static dq_status scorer_flush(scorer *c, dq_error *err) {
    if (!c->by_block || !c->n_held) return DQ_OK;
    const dq_config *cfg = &c->m->cfg;
    int T = c->io->ctx, L = cfg->n_layers;
    size_t bytes = dq_hidden_bytes(c->n_held, T, cfg->dim, DQ_HIDDEN_F32);
    const char *dir = c->o->mem_budget && bytes > c->o->mem_budget ? c->o->spill_dir : NULL;
    dq_hidden X = {.fd = -1, .fds = {-1, -1}};
    float *x = malloc((size_t)T * cfg->dim * sizeof *x);
    dq_status st = x ? dq_hidden_open(&X, c->n_held, T, cfg->dim, DQ_HIDDEN_F32, dir, err)
                     : dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    for (int w = 0; !st && w < c->n_held; w++) {
        window_input(c, c->held + (size_t)w * T);
        st = dq_check_token_ids(cfg, c->win, (size_t)T, err);
        if (!st) st = dq_model_embed_rows(c->m, c->win, (size_t)T, x, err);
        if (!st) st = dq_hidden_write(&X, w, x, err);
    }
    for (int l = 0; !st && l <= L; l++) {
        st = sweep_block(c, &X, x, l, err);
        if (!st && !dq_progress_report(&c->o->progress, "perplexity by block", (size_t)l + 1, (size_t)L + 1, err))
            st = DQ_ERR_CANCELLED;
    }
    dq_hidden_close(&X);
    free(x);
    c->n_held = 0;
    return st;
}

static void scorer_close(scorer *c) {
    free(c->t.klds);
    free(c->recs);
    free(c->sc);
    free(c->win);
    free(c->held);
    dq_session_free(c->s);
}

static dq_status run_windows(dq_model *m, logit_io *io, int bos, bool llamacpp,
                             const dq_ppl_opts *o, dq_ppl_result *r, dq_error *err) {
    scorer c;
    dq_status st = scorer_open(&c, m, io, bos, llamacpp, o, err);
    for (int w = 0; !st && w < io->n_windows; w++) {
        st = scorer_window(&c, io->tokens + (size_t)w * io->ctx, w, err);
        if (!st && !c.by_block &&
            !dq_progress_report(&o->progress, "perplexity", (size_t)w + 1, (size_t)io->n_windows, err))
            st = DQ_ERR_CANCELLED;
    }
    if (!st) st = scorer_flush(&c, err);
    if (!st) summarize(&c.t, io->base != NULL, r);
    scorer_close(&c);
    return st;
}

dq_status dq_eval_perplexity(dq_model *m, const int32_t *tokens, size_t n_tokens, int bos,
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
            st = dq_fail(
                err, DQ_ERR_ARG,
                "%s%sthe text has %zu tokens; a context of %d needs at least %zu (a longer text, or a smaller --ctx)",
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

/* ---- perplexity of a text file, tokenized as it is read ---------------------------------- */

/* The whole text is checked before anything is scored, as when it was read
 * whole: no NUL byte, valid UTF-8 (the message dq_tokenize gives), not empty. */
static dq_status check_text(const char *path, size_t block, char *buf, dq_error *err) {
    FILE *f = dq_fopen_input(path, err);
    if (!f) return err ? err->code : DQ_ERR_IO;
    size_t at = 0, keep = 0, got;
    dq_status st = DQ_OK;
    while (!st && (got = fread(buf + keep, 1, block, f)) > 0) {
        const char *nul = memchr(buf + keep, 0, got);
        if (nul) st = dq_fail(err, DQ_ERR_FORMAT, "%s: NUL byte at offset %zu: not a text file", path,
                              at + keep + (size_t)(nul - (buf + keep)));
        size_t n = keep + got, i = 0;
        while (!st && i < n) { /* as check_utf8 in encode.c; a character cut by the block waits for the next */
            utf8proc_int32_t cp;
            utf8proc_ssize_t l = utf8proc_iterate((const utf8proc_uint8_t *)buf + i, (utf8proc_ssize_t)(n - i), &cp);
            if (l <= 0 && n - i < 4) break;
            if (l <= 0) st = dq_fail(err, DQ_ERR_FORMAT, "%s: text is not valid UTF-8 at byte %zu", path, at + i);
            i += l > 0 ? (size_t)l : 0;
        }
        keep = n - i;
        memmove(buf, buf + i, keep);
        at += i;
    }
    if (!st && ferror(f)) st = dq_fail(err, DQ_ERR_IO, "%s: read failed", path);
    if (!st && keep) st = dq_fail(err, DQ_ERR_FORMAT, "%s: text is not valid UTF-8 at byte %zu", path, at);
    if (!st && at == 0) st = dq_fail(err, DQ_ERR_FORMAT, "%s: the text file is empty", path);
    fclose(f);
    return st;
}

/* Tokens from the stream, scored a window at a time once the text is known to
 * be long enough; with --save-logits the windows' tokens go to the file
 * instead (its header lists them all before any record). */
typedef struct {
    scorer *c;
    const logit_io *io;
    size_t need, limit; /* tokens the text must have; tokens after which we stop */
    int max_windows;
    int32_t *pend;      /* tokens not yet in a window, from pend[first] */
    size_t first, n, cap;
    size_t total;       /* tokens seen */
    int windows;        /* windows scored (or saved) */
    size_t *fed;        /* text bytes fed so far, for the progress reports */
    const dq_progress *progress;
    size_t progress_total; /* max_windows, or the text's bytes */
    dq_status st;
    dq_error *err;
} text_run;

static void take_windows(text_run *r) {
    size_t ctx = (size_t)r->io->ctx;
    while (!r->st && r->n - r->first >= ctx && r->total >= r->need &&
           (r->max_windows <= 0 || r->windows < r->max_windows)) {
        const int32_t *tok = r->pend + r->first;
        if (r->io->save && fwrite(tok, sizeof *tok, ctx, r->io->save) != ctx)
            r->st = dq_fail(r->err, DQ_ERR_IO, "%s: write failed", r->c->o->save_logits);
        else if (!r->io->save)
            r->st = scorer_window(r->c, tok, r->windows, r->err);
        r->first += ctx;
        r->windows++;
        /* bytes fed can reach the total before the last window: the stage closes after the text ends */
        size_t done = r->max_windows > 0 ? (size_t)r->windows : *r->fed;
        if (r->max_windows <= 0 && done >= r->progress_total) done = r->progress_total - 1;
        if (!r->st && !dq_progress_report(r->progress, "perplexity", done, r->progress_total, r->err))
            r->st = DQ_ERR_CANCELLED;
    }
}

static bool take_ids(void *user, const int32_t *ids, size_t n) {
    text_run *r = user;
    if (r->first > 0) { /* keep only what is not in a window yet */
        memmove(r->pend, r->pend + r->first, (r->n - r->first) * sizeof *r->pend);
        r->n -= r->first;
        r->first = 0;
    }
    if (r->n + n > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->n + n) cap *= 2;
        int32_t *p = realloc(r->pend, cap * sizeof *p);
        if (!p) {
            r->st = dq_fail(r->err, DQ_ERR_NOMEM, "out of memory");
            return false;
        }
        r->pend = p;
        r->cap = cap;
    }
    memcpy(r->pend + r->n, ids, n * sizeof *ids);
    r->n += n;
    r->total += n;
    take_windows(r);
    return !r->st && r->total < r->limit;
}

/* Streams the text through the tokenizer into r. */
static dq_status stream_text(const char *path, const dq_tokenizer *tk, size_t block, char *buf, text_run *r,
                             dq_error *err) {
    FILE *f = dq_fopen_input(path, err);
    if (!f) return err ? err->code : DQ_ERR_IO;
    dq_tok_stream *ts;
    dq_status st = dq_tok_stream_new(tk, dq_tokenizer_adds_bos(tk), false, take_ids, r, &ts, err);
    size_t got;
    while (!st && !r->st && !dq_tok_stream_stopped(ts) && (got = fread(buf, 1, block, f)) > 0) {
        *r->fed += got;
        st = dq_tok_stream_feed(ts, buf, got, err);
    }
    if (!st && !r->st && ferror(f)) st = dq_fail(err, DQ_ERR_IO, "%s: read failed", path);
    if (!st && !r->st) st = dq_tok_stream_finish(ts, err);
    if (st && err) { /* the tokenizer's message, naming the file */
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        dq_fail(err, st, "%s: %s", path, msg);
    }
    dq_tok_stream_free(ts);
    fclose(f);
    return st ? st : r->st;
}

static dq_status write_save_header(logit_io *io, int32_t nch, const char *path, dq_error *err) {
    uint32_t ctx = (uint32_t)io->ctx;
    int32_t nv = io->n_vocab;
    if (fwrite("_logits_", 1, 8, io->save) != 8 || fwrite(&ctx, 4, 1, io->save) != 1 ||
        fwrite(&nv, 4, 1, io->save) != 1 || fwrite(&nch, 4, 1, io->save) != 1)
        return dq_fail(err, DQ_ERR_IO, "%s: write failed", path);
    return DQ_OK;
}

/* --save-logits: the header now that the window count is known, then the
 * windows read back from the file's token list and scored, their records
 * appended. */
static dq_status score_saved(scorer *c, logit_io *io, const char *path, const dq_progress *p, dq_error *err) {
    int32_t nch = io->n_windows;
    size_t ctx = (size_t)io->ctx;
    if (fflush(io->save) != 0 || fseek(io->save, 16, SEEK_SET) != 0 || fwrite(&nch, 4, 1, io->save) != 1 ||
        fflush(io->save) != 0 || fseek(io->save, 0, SEEK_END) != 0)
        return dq_fail(err, DQ_ERR_IO, "%s: write failed", path);
    FILE *in = fopen(io->save_file.tmp, "rb");
    if (!in || fseek(in, 20, SEEK_SET) != 0) {
        if (in) fclose(in);
        return dq_fail(err, DQ_ERR_IO, "%s: cannot read back the tokens written", path);
    }
    int32_t *tok = malloc(ctx * sizeof *tok);
    dq_status st = tok ? DQ_OK : dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    for (int w = 0; !st && w < nch; w++) {
        if (fread(tok, sizeof *tok, ctx, in) != ctx)
            st = dq_fail(err, DQ_ERR_IO, "%s: cannot read back the tokens written", path);
        if (!st) st = scorer_window(c, tok, w, err);
        if (!st && !c->by_block && !dq_progress_report(p, "perplexity", (size_t)w + 1, (size_t)nch, err))
            st = DQ_ERR_CANCELLED;
    }
    if (!st) st = scorer_flush(c, err);
    free(tok);
    fclose(in);
    return st;
}

dq_status dq_eval_perplexity_text(dq_model *m, const dq_tokenizer *tk, const char *path, const dq_ppl_opts *o,
                                  dq_ppl_result *r, dq_error *err) {
    memset(r, 0, sizeof *r);
    if (o->kld_base)
        return dq_fail(err, DQ_ERR_ARG, "%s: a KLD evaluation takes its tokens from the base file, not from a text",
                       o->kld_base);
    logit_io io = {.ctx = o->ctx, .n_vocab = m->cfg.vocab_size};
    bool llamacpp = o->llamacpp || o->save_logits;
    if (io.ctx < 2) return dq_fail(err, DQ_ERR_ARG, "context %d is too short", io.ctx);
    size_t block = o->text_block ? o->text_block : (size_t)1 << 16;
    char *buf = malloc(block + 4);
    if (!buf) return dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    dq_status st = check_text(path, block, buf, err);
    size_t need = (llamacpp ? 2 : 1) * (size_t)io.ctx, fed = 0;
    size_t limit = o->max_windows > 0 ? (size_t)o->max_windows * (size_t)io.ctx : SIZE_MAX;
    if (!st && o->save_logits) st = dq_out_open(&io.save_file, o->save_logits, err);
    if (!st && o->save_logits) io.save = io.save_file.f, st = write_save_header(&io, 0, o->save_logits, err);
    scorer c = {0};
    if (!st) st = scorer_open(&c, m, &io, dq_tokenizer_adds_bos(tk) ? dq_tokenizer_bos(tk) : -1, llamacpp, o, err);
    struct stat sb;
    size_t bytes = !st && stat(path, &sb) == 0 ? (size_t)sb.st_size : 1;
    dq_progress silent = {0}; /* --save-logits: windows are only written now, scored below */
    text_run run = {.c = &c, .io = &io, .need = need, .limit = limit > need ? limit : need,
                    .max_windows = o->max_windows, .fed = &fed, .progress = o->save_logits ? &silent : &o->progress,
                    .progress_total = o->max_windows > 0 ? (size_t)o->max_windows : bytes, .err = err};
    if (!st) st = stream_text(path, tk, block, buf, &run, err);
    if (!st && run.total < need)
        st = dq_fail(
            err, DQ_ERR_ARG,
            "%s: the text has %zu tokens; a context of %d needs at least %zu (a longer text, or a smaller --ctx)", path,
            run.total, io.ctx, need);
    bool closed = o->max_windows > 0 && run.windows == o->max_windows; /* its last window reported the total */
    if (!st && !closed &&
        !dq_progress_report(run.progress, "perplexity", run.progress_total, run.progress_total, err))
        st = DQ_ERR_CANCELLED;
    io.n_windows = run.windows;
    if (!st && io.save) st = score_saved(&c, &io, o->save_logits, &o->progress, err);
    else if (!st) st = scorer_flush(&c, err);
    if (!st) summarize(&c.t, false, r);
    r->n_windows = io.n_windows;
    r->ctx = io.ctx;
    r->text_read = fed;
    scorer_close(&c);
    if (io.save && st) dq_out_abort(&io.save_file);
    else if (io.save) st = dq_out_commit(&io.save_file, err);
    free(run.pend);
    free(buf);
    return st;
}
