/* dq_perplexity, the public entry point of perplexity and KL-divergence
 * evaluation: defaults the context, checks the logits output against the
 * inputs, and runs the streamed text path or the saved-base path
 * (eval/perplexity.c). Notes go through the caller's dq_progress. */
#include <stdlib.h>
#include <string.h>

#include "eval/perplexity.h"
#include "model/model.h"
#include "util/error.h"
#include "util/files.h"
#include "util/progress.h"

dq_status dq_perplexity(dq_model *m, const dq_tokenizer *t, const char *text, const dq_perplexity_params *p,
                        dq_perplexity_result *r, dq_error *err) {
    memset(r, 0, sizeof *r);
    if (!text && !p->kld_base) return dq_fail(err, DQ_ERR_ARG, "perplexity needs a text or a KLD base file");
    if (p->save_logits && p->kld_base) return dq_fail(err, DQ_ERR_ARG, "save_logits and kld_base are exclusive");
    int trained = m->cfg.seq_len;
    dq_ppl_opts o = {.ctx = p->ctx > 0 ? p->ctx : dq_default_window(&m->cfg), .llamacpp = p->llamacpp,
                     .max_windows = p->max_windows, .n_threads = p->n_threads, .progress = p->progress,
                     .save_logits = p->save_logits, .kld_base = p->kld_base, .text_path = text};
    if (p->ctx > trained)
        dq_progress_note(&p->progress, true, "a context of %d is beyond %s's training context of %d tokens: "
                         "positions past it are extrapolated", p->ctx, m->path, trained);
    const char *inputs[] = {m->path, dq_tokenizer_path(t), text, p->kld_base};
    dq_status st = p->save_logits ? dq_check_output(p->save_logits, DQ_OUT_LOGITS, inputs, 4, err) : DQ_OK;
    if (st) return st;
    /* a lazily loaded model: whole when its fp32 weights fit the budget (one forward per window, faster), else
       block by block (eval/perplexity.c) with the windows' hidden states in RAM up to the budget */
    size_t budget = p->mem_budget ? p->mem_budget : dq_mem_available();
    if (!dq_model_in_memory(m) && dq_model_fits(m, budget)) st = dq_model_load_all(m, err);
    if (st) return st;
    const char *tmp = p->tmp_dir ? p->tmp_dir : getenv("TMPDIR");
    /* by block, the windows' states share the budget with one block, the head and a window's logits (fp32) */
    const dq_config *c = &m->cfg;
    double head = (double)c->vocab_size * c->dim, ctx = o.ctx;
    double block = ((double)dq_model_n_params(m) - head * (c->tied_embeddings ? 1 : 2)) / c->n_layers;
    double working = (block + head + ctx * c->vocab_size) * sizeof(float);
    o.mem_budget = !budget ? 0 : (double)budget > working ? budget - (size_t)working : 1;
    o.spill_dir = tmp && *tmp ? tmp : "/tmp";
    if (p->kld_base) /* the tokens come from the base file */
        return dq_eval_perplexity(m, NULL, 0, dq_tokenizer_adds_bos(t) ? dq_tokenizer_bos(t) : -1, &o, r, err);
    return dq_eval_perplexity_text(m, t, text, &o, r, err);
}
