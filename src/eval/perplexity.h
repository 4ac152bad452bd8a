/* Perplexity over non-overlapping windows and KL divergence to a base model's
 * saved next-token distributions (llama.cpp's --kl-divergence-base format). */
#ifndef DQ_PERPLEXITY_H
#define DQ_PERPLEXITY_H
#include "dashq.h"

typedef struct {
    int ctx;                 /* window length in tokens */
    bool llamacpp;           /* BOS at each window start, score its second half */
    int max_windows;         /* <= 0: all */
    int n_threads;
    bool quiet;
    const char *save_logits; /* write base log-probs here (implies llamacpp) */
    const char *kld_base;    /* compare with log-probs saved earlier (implies llamacpp) */
    const char *text_path;   /* the text the tokens came from, for messages (NULL: "the text") */
} dq_ppl_opts;

typedef struct {
    double ppl, ppl_err;     /* perplexity and its standard error */
    double nll, nll_err;     /* mean negative log-likelihood (nats) */
    size_t n_scored;
    int n_windows, ctx;
    bool has_kld;
    double kld, kld_err;     /* mean KL(base || model) per token */
    double kld_p99, kld_max;
    double same_top, same_top_err; /* top-1 agreement with the base */
    double base_ppl;
} dq_ppl_result;

/* tokens: the whole text, tokenized with the tokenizer's BOS convention.
 * bos: the BOS id used at window starts in llamacpp mode (< 0: none). */
dq_status dq_eval_perplexity(const dq_model *m, const int32_t *tokens, size_t n_tokens, int bos,
                             const dq_ppl_opts *o, dq_ppl_result *r, dq_error *err);
#endif
