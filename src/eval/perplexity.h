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
    dq_progress progress;    /* stage "perplexity": windows, or text bytes while streaming a text */
    const char *save_logits; /* write base log-probs here (implies llamacpp) */
    const char *kld_base;    /* compare with log-probs saved earlier (implies llamacpp) */
    const char *text_path;   /* the text the tokens came from, for messages (NULL: "the text") */
    size_t text_block;       /* dq_eval_perplexity_text: bytes read per step (0: 64 KiB; tests set it small) */
    size_t mem_budget;       /* a model run block by block: its windows' hidden states in RAM up to this (0: no limit) */
    const char *spill_dir;   /* ... else in a file here */
} dq_ppl_opts;

typedef dq_perplexity_result dq_ppl_result; /* dashq.h */

/* tokens: the whole text, tokenized with the tokenizer's BOS convention.
 * bos: the BOS id used at window starts in llamacpp mode (< 0: none). */
dq_status dq_eval_perplexity(dq_model *m, const int32_t *tokens, size_t n_tokens, int bos,
                             const dq_ppl_opts *o, dq_ppl_result *r, dq_error *err);
/* Perplexity of the text file at path, tokenized by t (its BOS convention;
 * BOS at window starts in llamacpp mode when t adds one) while it is read in
 * blocks of o->text_block bytes: windows are scored as soon as they are
 * complete (once the text is known to hold enough tokens for the first), and
 * with o->max_windows the reading stops once those windows are complete.
 * Memory follows the window and the block, not the file. The results, and a
 * --save-logits file, are byte for byte those of dq_eval_perplexity on
 * dq_tokenize's ids of the whole text. The whole text is first checked (NUL
 * bytes, UTF-8, empty) so that no work is done on a text that will be
 * refused; messages name path. o->kld_base must be NULL (a KLD evaluation
 * reads its tokens from the base file: dq_eval_perplexity). */
dq_status dq_eval_perplexity_text(dq_model *m, const dq_tokenizer *t, const char *path, const dq_ppl_opts *o,
                                  dq_ppl_result *r, dq_error *err);
#endif
