/* dashq info: what a model file holds. */
#include <stdio.h>

#include "cli.h"

int dq_cmd_info(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "dashq: error: info takes exactly one MODEL\n");
        return DQ_EXIT_ERROR;
    }
    dq_error err = {0};
    dq_model *m;
    if (dq_model_load(argv[1], &m, &err)) return dq_cli_error(&err);
    const dq_config *c = dq_model_config(m);
    printf("arch: %s\nparams: %zu\ndim: %d\nhidden_dim: %d\nlayers: %d\nheads: %d\nkv_heads: %d\n"
           "head_dim: %d\nvocab: %d\nseq_len: %d\nnorm_eps: %g\nrope_theta: %g\nrope_style: %s\n"
           "tied_embeddings: %s\nqkv_bias: %s\n",
           c->arch, dq_model_n_params(m), c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
           c->head_dim, c->vocab_size, c->seq_len, (double)c->norm_eps, (double)c->rope_theta,
           c->rope_style == DQ_ROPE_HALF ? "half" : "interleaved", c->tied_embeddings ? "yes" : "no",
           c->qkv_bias ? "yes" : "no");
    if (dq_model_has_rope_freq_factors(m)) printf("rope_scaling: per-pair factors (GGUF rope_freqs.weight)\n");
    else if (c->rope_scaling == DQ_ROPE_SCALING_LINEAR)
        printf("rope_scaling: linear, factor %g\n", (double)c->rope_factor);
    else if (c->rope_scaling == DQ_ROPE_SCALING_LLAMA3)
        printf("rope_scaling: llama3, factor %g, low/high freq factors %g/%g, original context %d\n",
               (double)c->rope_factor, (double)c->rope_low_freq_factor, (double)c->rope_high_freq_factor,
               c->rope_orig_ctx);
    else printf("rope_scaling: none\n");
    int n_quant;
    const char *quant = dq_model_source_quant(m, &n_quant);
    if (quant) printf("stored_quantized: %d block linears (%s)\n", n_quant, quant);
    else printf("stored_quantized: none\n");
    dq_model_free(m);
    return 0;
}
