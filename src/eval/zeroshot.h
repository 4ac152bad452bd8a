/* Zero-shot scoring the lm-evaluation-harness way: log-likelihood of each
 * continuation given its context (harness tokenization: whole = tok(ctx +
 * cont), cont tokens = whole[len(tok(ctx)):], left truncation to the model's
 * context), whether it is the greedy continuation, and per-task acc,
 * acc_norm (log-likelihood over the choice's characters), LAMBADA perplexity, all
 * with standard errors. The KV cache is reused across requests that share a
 * token prefix, so a question's context is computed once for all choices. */
#ifndef DQ_ZEROSHOT_H
#define DQ_ZEROSHOT_H
#include <stdio.h>

#include "eval/tasks.h"

typedef struct {
    dq_session *session;
    const dq_tokenizer *tok;
    int n_ctx, n_batch, n_vocab;
    int prefix;       /* BOS (or the harness's prefix token for an empty context); < 0: none */
    bool add_bos;     /* prefix every context with it */
    int32_t *cached;  /* tokens the KV cache holds at positions 0..n_cached */
    int n_cached;
    int32_t *buf;     /* scratch: the request's token sequence */
    size_t n_forwarded; /* tokens run through the model so far */
    FILE *items;      /* optional (NULL: off): one JSON line per item scored by dq_task_eval
                       * {"task", "line", "gold", "loglik": [...], "greedy": [...], "tokens": [...],
                       *  "pred", "pred_norm"} to compare with another evaluator item by item */
} dq_scorer;

typedef struct {
    double loglik;    /* sum of log p over the continuation's tokens */
    bool greedy;      /* every continuation token is the argmax */
    int n_tokens;
} dq_choice_score;

typedef struct {
    dq_task_id id;
    size_t n;                 /* items scored */
    size_t n_skipped;         /* items that could not be scored (see first_skip) */
    char first_skip[512];
    double acc, acc_err;
    bool has_acc_norm;
    double acc_norm, acc_norm_err;
    bool has_ppl;             /* LAMBADA: exp(−mean log-likelihood per item) */
    double ppl, ppl_err;
    double chance;            /* expected acc of a uniform guess */
    double majority;          /* acc of always answering the most frequent choice index (BoolQ: "yes") */
    size_t n_forwarded;       /* tokens the model ran for this task */
} dq_task_result;

/* add_bos: prefix contexts with the tokenizer's BOS (the model's training
 * convention; the harness's add_bos_token=True). n_threads <= 0: OMP_NUM_THREADS, else all cores. */
dq_status dq_scorer_init(dq_scorer *sc, const dq_model *m, const dq_tokenizer *t, bool add_bos, int n_threads,
                         dq_error *err);
void dq_scorer_free(dq_scorer *sc);

/* Token ids the harness scores: ctx (BOS first when add_bos) and cont. */
dq_status dq_scorer_encode(const dq_scorer *sc, const char *context, const char *continuation, int32_t **ctx,
                           size_t *n_ctx, int32_t **cont, size_t *n_cont, dq_error *err);
dq_status dq_score_request(dq_scorer *sc, const char *context, const char *continuation, dq_choice_score *out,
                           dq_error *err);
/* Every choice of an item; choices sharing one context run as one batch of
 * branches (dq_forward_branches) when they fit, else one by one. */
dq_status dq_score_choices(dq_scorer *sc, const dq_task_item *it, dq_choice_score *out, dq_error *err);

/* One multiple-choice item: argmax of log-likelihoods (acc) and of
 * log-likelihood per character of the choice (acc_norm, the harness's
 * len(choice); its per-byte variant is acc_bytes); first index wins ties. */
void dq_mc_predict(const dq_choice_score *s, const dq_task_item *it, int *pred, int *pred_norm);
/* Mean of 0/1 outcomes and the harness's standard error sqrt(p(1−p)/(n−1)). */
void dq_mean_stderr(size_t hits, size_t n, double *mean, double *err);

dq_status dq_task_eval(dq_scorer *sc, const dq_task_set *set, const dq_progress *progress, dq_task_result *r,
                       dq_error *err);
#endif
