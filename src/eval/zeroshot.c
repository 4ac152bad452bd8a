#include "eval/zeroshot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/fastmath.h"
#include "util/progress.h"

#define MAX_BATCH 512

dq_status dq_scorer_init(dq_scorer *sc, const dq_model *m, const dq_tokenizer *t, bool add_bos, int n_threads,
                         dq_error *err) {
    memset(sc, 0, sizeof *sc);
    const dq_config *c = dq_model_config(m);
    sc->tok = t;
    sc->n_ctx = c->seq_len;
    sc->n_batch = c->seq_len < MAX_BATCH ? c->seq_len : MAX_BATCH;
    sc->n_vocab = c->vocab_size;
    sc->add_bos = add_bos && dq_tokenizer_bos(t) >= 0;
    sc->prefix = dq_tokenizer_bos(t) >= 0 ? dq_tokenizer_bos(t) : dq_tokenizer_eos(t);
    sc->cached = malloc((size_t)sc->n_ctx * sizeof *sc->cached);
    sc->buf = malloc(((size_t)sc->n_ctx + 1) * sizeof *sc->buf);
    if (!sc->cached || !sc->buf) {
        dq_scorer_free(sc);
        return dq_fail(err, DQ_ERR_NOMEM, "scorer: out of memory");
    }
    dq_status st = dq_session_new(m, sc->n_ctx, sc->n_batch, n_threads, &sc->session, err);
    if (st) dq_scorer_free(sc);
    return st;
}

void dq_scorer_free(dq_scorer *sc) {
    if (sc->session) dq_session_free(sc->session);
    free(sc->cached);
    free(sc->buf);
    memset(sc, 0, sizeof *sc);
}

/* ---- tokenization: the harness's _encode_pair ----------------------------- */

dq_status dq_scorer_encode(const dq_scorer *sc, const char *context, const char *continuation, int32_t **ctx,
                           size_t *n_ctx, int32_t **cont, size_t *n_cont, dq_error *err) {
    *ctx = *cont = NULL;
    size_t lc = strlen(context), spaces = 0, lk = strlen(continuation);
    while (spaces < lc && strchr(" \t\n\r\v\f", context[lc - 1 - spaces])) spaces++;
    lc -= spaces; /* trailing whitespace of the context moves to the continuation */
    char *whole = malloc(lc + spaces + lk + 1);
    if (!whole) return dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    memcpy(whole, context, lc + spaces);
    memcpy(whole + lc + spaces, continuation, lk + 1);
    int32_t *w = NULL;
    size_t nw = 0, nc = 0;
    dq_status st = dq_tokenize(sc->tok, whole, lc + spaces + lk, false, false, &w, &nw, err);
    if (!st && lc) st = dq_tokenize(sc->tok, whole, lc, false, false, ctx, &nc, err);
    free(whole);
    if (st) {
        free(w);
        free(*ctx), *ctx = NULL;
        return st;
    }
    bool prefix = sc->add_bos || nc == 0; /* an empty context starts from the prefix token */
    if (prefix && sc->prefix < 0) {
        free(w), free(*ctx), *ctx = NULL;
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "empty context and the tokenizer has no BOS/EOS to start from");
    }
    size_t keep = nc < nw ? nc : nw;
    int32_t *c = malloc((nc + 1) * sizeof *c);
    if (!c) {
        free(w), free(*ctx), *ctx = NULL;
        return dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    }
    if (prefix) c[0] = sc->prefix;
    if (nc) memcpy(c + prefix, *ctx, nc * sizeof *c);
    free(*ctx);
    *ctx = c, *n_ctx = nc + prefix;
    memmove(w, w + keep, (nw - keep) * sizeof *w);
    *cont = w, *n_cont = nw - keep;
    return DQ_OK;
}

/* ---- scoring ---------------------------------------------------------------- */

/* Adds log p(target) of one logits row; returns whether target is the argmax
 * (the first maximum, as numpy.argmax). */
static bool score_row(const float *logits, int nv, int target, double *ll) {
    float mx = logits[0], sum = 0.0f;
    int imax = 0;
    for (int i = 1; i < nv; i++)
        if (logits[i] > mx) mx = logits[i], imax = i;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < nv; i++) sum += dq_expf(logits[i] - mx);
    *ll += (double)logits[target] - mx - log((double)sum);
    return imax == target;
}

/* Runs x[from, to) at positions from.. in batches; with scores, row i of the
 * logits scores target x[i + 1] (x is the whole sequence, targets included). */
static dq_status run(dq_scorer *sc, const int32_t *x, int from, int to, dq_choice_score *scores, dq_error *err) {
    for (int p = from; p < to; p += sc->n_batch) {
        int n = to - p < sc->n_batch ? to - p : sc->n_batch;
        const float *logits;
        dq_status st = dq_forward(sc->session, x + p, n, p, scores != NULL, &logits, err);
        if (st) return st;
        for (int i = 0; scores && i < n; i++)
            scores->greedy &= score_row(logits + (size_t)i * sc->n_vocab, sc->n_vocab, x[p + i + 1], &scores->loglik);
        memcpy(sc->cached + p, x + p, (size_t)n * sizeof *x);
        sc->n_cached = p + n;
        sc->n_forwarded += (size_t)n;
    }
    return DQ_OK;
}

/* Makes the cache hold x[0, upto), running only what it does not already hold. */
static dq_status fill_prefix(dq_scorer *sc, const int32_t *x, int upto, dq_error *err) {
    int same = 0;
    while (same < sc->n_cached && same < upto && sc->cached[same] == x[same]) same++;
    sc->n_cached = same;
    return same < upto ? run(sc, x, same, upto, NULL, err) : DQ_OK;
}

dq_status dq_score_request(dq_scorer *sc, const char *context, const char *continuation, dq_choice_score *out,
                           dq_error *err) {
    int32_t *ctx, *cont;
    size_t nc, nk;
    dq_status st = dq_scorer_encode(sc, context, continuation, &ctx, &nc, &cont, &nk, err);
    if (st) return st;
    if (nk == 0 || nk > (size_t)sc->n_ctx) {
        free(ctx), free(cont);
        return dq_fail(err, DQ_ERR_ARG, "the continuation is %zu tokens (1..%d fit the context)", nk, sc->n_ctx);
    }
    /* (ctx + cont)[-(n_ctx + 1):]: the harness truncates on the left */
    size_t total = nc + nk, drop = total > (size_t)sc->n_ctx + 1 ? total - (size_t)sc->n_ctx - 1 : 0;
    int len = (int)(total - drop);
    for (int i = 0; i < len; i++) {
        size_t k = (size_t)i + drop;
        sc->buf[i] = k < nc ? ctx[k] : cont[k - nc];
    }
    free(ctx), free(cont);
    int first = len - (int)nk - 1; /* the row that predicts the first continuation token */
    *out = (dq_choice_score){0, true, (int)nk};
    if ((st = fill_prefix(sc, sc->buf, first, err))) return st;
    return run(sc, sc->buf, first, len - 1, out, err);
}

/* All choices of an item in one batch of branches off their common token
 * prefix: choice i's sequence is S_i = ctx_i + cont_i; the cache holds
 * S[0, p) (p = the common prefix, at most every context but its last
 * token), branch i is S_i[p, len − 1), and its rows from len(ctx_i) − 1 − p
 * on predict the continuation. Multiple-choice contexts are shared whole;
 * WinoGrande's options share the sentence up to the blank. Returns
 * DQ_ERR_UNSUPPORTED (nothing scored) when the batch does not fit. */
static dq_status score_branches(dq_scorer *sc, const dq_task_item *it, dq_choice_score *out, dq_error *err) {
    int32_t *seq[16] = {0};
    size_t nc[16] = {0}, len[16] = {0};
    int n = it->n_choices, lens[16] = {0}, total = 0;
    dq_status st = DQ_OK;
    for (int i = 0; i < n && !st; i++) {
        int32_t *c, *k;
        size_t nk;
        if ((st = dq_scorer_encode(sc, it->choices[i].context, it->choices[i].continuation, &c, &nc[i], &k, &nk, err)))
            break;
        len[i] = nc[i] + nk;
        seq[i] = nk && len[i] <= (size_t)sc->n_ctx ? realloc(c, len[i] * sizeof *c) : NULL;
        if (seq[i]) memcpy(seq[i] + nc[i], k, nk * sizeof *k);
        else free(c), st = DQ_ERR_UNSUPPORTED; /* empty, or needs truncation: one by one */
        free(k);
    }
    size_t p = st ? 0 : nc[0] - 1;
    for (int i = 0; !st && i < n; i++) {
        if (nc[i] - 1 < p) p = nc[i] - 1;
        size_t same = 0;
        while (same < p && seq[i][same] == seq[0][same]) same++;
        p = same;
    }
    for (int i = 0; !st && i < n; i++) lens[i] = (int)(len[i] - 1 - p), total += lens[i];
    if (!st && (total > sc->n_batch || (int)p + total > sc->n_ctx)) st = DQ_ERR_UNSUPPORTED;
    if (!st) st = fill_prefix(sc, seq[0], (int)p, err);
    if (!st) {
        for (int i = 0, t = 0; i < n; t += lens[i++])
            memcpy(sc->buf + t, seq[i] + p, (size_t)lens[i] * sizeof *sc->buf);
        const float *logits;
        st = dq_forward_branches(sc->session, sc->buf, lens, n, (int)p, &logits, err);
        sc->n_cached = (int)p; /* the branches overwrote the slots after the prefix */
        sc->n_forwarded += (size_t)total;
        for (int i = 0, t = 0; !st && i < n; t += lens[i++]) {
            int first = (int)(nc[i] - 1 - p);
            out[i] = (dq_choice_score){0, true, lens[i] - first};
            for (int k = first; k < lens[i]; k++)
                out[i].greedy &=
                    score_row(logits + (size_t)(t + k) * sc->n_vocab, sc->n_vocab, seq[i][p + k + 1], &out[i].loglik);
        }
    }
    for (int i = 0; i < n; i++) free(seq[i]);
    return st;
}

dq_status dq_score_choices(dq_scorer *sc, const dq_task_item *it, dq_choice_score *out, dq_error *err) {
    if (it->n_choices < 1 || it->n_choices > 16) return dq_fail(err, DQ_ERR_ARG, "%d choices (1..16)", it->n_choices);
    dq_error e = {0};
    dq_status st = it->n_choices > 1 ? score_branches(sc, it, out, &e) : DQ_ERR_UNSUPPORTED;
    if (st != DQ_ERR_UNSUPPORTED) {
        if (st) *err = e;
        return st;
    }
    st = DQ_OK; /* one by one */
    for (int i = 0; i < it->n_choices && !st; i++)
        st = dq_score_request(sc, it->choices[i].context, it->choices[i].continuation, &out[i], err);
    return st;
}

/* ---- metrics ------------------------------------------------------------------ */

void dq_mc_predict(const dq_choice_score *s, const dq_task_item *it, int *pred, int *pred_norm) {
    *pred = *pred_norm = 0;
    for (int i = 1; i < it->n_choices; i++) {
        if (s[i].loglik > s[*pred].loglik) *pred = i;
        double a = s[i].loglik / (double)it->choices[i].norm_chars;
        double b = s[*pred_norm].loglik / (double)it->choices[*pred_norm].norm_chars;
        if (a > b) *pred_norm = i;
    }
}

void dq_mean_stderr(size_t hits, size_t n, double *mean, double *err) {
    *mean = n ? (double)hits / (double)n : 0;
    *err = n > 1 ? sqrt(*mean * (1 - *mean) / (double)(n - 1)) : 0;
}

typedef struct {
    size_t n, acc, acc_norm;
    double ll, ll2, chance; /* LAMBADA: sums of per-item log-likelihood; sum of 1/choices */
    size_t gold_at[16];     /* items whose right answer is choice i */
} tally;

/* One line of sc->items (%.17g: the log-likelihoods round-trip exactly). */
static void dump_item(FILE *f, dq_task_id id, const dq_task_item *it, const dq_choice_score *s, int pred,
                      int pred_norm) {
    fprintf(f, "{\"task\": \"%s\", \"line\": %ld, \"gold\": %d, \"loglik\": [", dq_task_name(id), it->line, it->gold);
    for (int i = 0; i < it->n_choices; i++) fprintf(f, "%s%.17g", i ? ", " : "", s[i].loglik);
    fprintf(f, "], \"greedy\": [");
    for (int i = 0; i < it->n_choices; i++) fprintf(f, "%s%s", i ? ", " : "", s[i].greedy ? "true" : "false");
    fprintf(f, "], \"tokens\": [");
    for (int i = 0; i < it->n_choices; i++) fprintf(f, "%s%d", i ? ", " : "", s[i].n_tokens);
    fprintf(f, "], \"pred\": %d, \"pred_norm\": %d}\n", pred, pred_norm);
}

static dq_status score_item(dq_scorer *sc, dq_task_id id, const dq_task_item *it, dq_choice_score *s, tally *t,
                            dq_error *err) {
    dq_status st = dq_score_choices(sc, it, s, err);
    if (st) return st;
    int pred = 0, pred_norm = 0;
    if (it->n_choices == 1) { /* LAMBADA: greedy match and likelihood of the last word */
        t->acc += s[0].greedy;
        t->ll += s[0].loglik, t->ll2 += s[0].loglik * s[0].loglik;
    } else {
        dq_mc_predict(s, it, &pred, &pred_norm);
        t->acc += pred == it->gold, t->acc_norm += pred_norm == it->gold;
        t->chance += 1.0 / it->n_choices;
        t->gold_at[it->gold]++;
    }
    if (sc->items) dump_item(sc->items, id, it, s, pred, pred_norm);
    t->n++;
    return DQ_OK;
}

static void summarize(const tally *t, dq_task_id id, dq_task_result *r) {
    r->n = t->n;
    dq_mean_stderr(t->acc, t->n, &r->acc, &r->acc_err);
    r->has_acc_norm = dq_task_has_acc_norm(id);
    if (r->has_acc_norm) dq_mean_stderr(t->acc_norm, t->n, &r->acc_norm, &r->acc_norm_err);
    r->chance = t->n ? t->chance / (double)t->n : 0;
    size_t most = 0;
    for (int i = 0; i < 16; i++) most = t->gold_at[i] > most ? t->gold_at[i] : most;
    r->majority = t->n ? (double)most / (double)t->n : 0;
    if (id == DQ_TASK_LAMBADA && t->n) { /* delta method: se(ppl) = ppl · se(mean ll) */
        double mean = t->ll / (double)t->n, var = t->n > 1 ? (t->ll2 - t->n * mean * mean) / (double)(t->n - 1) : 0;
        r->has_ppl = true;
        r->ppl = exp(-mean);
        r->ppl_err = r->ppl * sqrt(fmax(var, 0) / (double)t->n);
    }
}

dq_status dq_task_eval(dq_scorer *sc, const dq_task_set *set, const dq_progress *progress, dq_task_result *r,
                       dq_error *err) {
    memset(r, 0, sizeof *r);
    r->id = set->id;
    tally t = {0};
    dq_choice_score s[16];
    size_t forwarded0 = sc->n_forwarded;
    for (size_t i = 0; i < set->n_items; i++) {
        const dq_task_item *it = &set->items[i];
        dq_error e = {0};
        dq_status st = score_item(sc, set->id, it, s, &t, &e);
        if (st == DQ_ERR_ARG || st == DQ_ERR_UNSUPPORTED) { /* this item only: note it, go on */
            if (!r->n_skipped++)
                snprintf(r->first_skip, sizeof r->first_skip, "%.300s:%ld: %.180s", set->path, it->line, e.msg);
        } else if (st) {
            return dq_fail(err, st, "%s:%ld: %s", set->path, it->line, e.msg);
        }
        if (!dq_progress_report(progress, dq_task_name(set->id), i + 1, set->n_items, err)) return DQ_ERR_CANCELLED;
    }
    summarize(&t, set->id, r);
    r->n_forwarded = sc->n_forwarded - forwarded0;
    return DQ_OK;
}
