/* The per-tensor type rules of llama.cpp's llama_tensor_get_type for a dense
 * Llama model (not Falcon, not 70B, no experts), as of the llama.cpp commit
 * in ../shared/specs/LLAMACPP.md. */
#include "quant/presets.h"

#include <stdlib.h>
#include <string.h>

#include "model/sites.h"
#include "util/error.h"

typedef enum { F_Q4_0 = 2, F_Q4_1 = 3, F_Q8_0 = 7, F_Q5_0 = 8, F_Q5_1 = 9, F_Q2_K = 10, F_Q3_K_S = 11,
               F_Q3_K_M = 12, F_Q3_K_L = 13, F_Q4_K_S = 14, F_Q4_K_M = 15, F_Q5_K_S = 16, F_Q5_K_M = 17,
               F_Q6_K = 18, F_IQ4_NL = 25 } ftype;

static const struct {
    const char *name;
    ftype ft;
    dq_ggml_type base;
} PRESETS[] = {
    {"Q4_0", F_Q4_0, DQ_GGML_Q4_0},       {"Q4_1", F_Q4_1, DQ_GGML_Q4_1},     {"Q5_0", F_Q5_0, DQ_GGML_Q5_0},
    {"Q5_1", F_Q5_1, DQ_GGML_Q5_1},       {"Q8_0", F_Q8_0, DQ_GGML_Q8_0},     {"Q2_K", F_Q2_K, DQ_GGML_Q2_K},
    {"Q3_K_S", F_Q3_K_S, DQ_GGML_Q3_K},   {"Q3_K_M", F_Q3_K_M, DQ_GGML_Q3_K}, {"Q3_K", F_Q3_K_M, DQ_GGML_Q3_K},
    {"Q3_K_L", F_Q3_K_L, DQ_GGML_Q3_K},   {"Q4_K_S", F_Q4_K_S, DQ_GGML_Q4_K}, {"Q4_K_M", F_Q4_K_M, DQ_GGML_Q4_K},
    {"Q4_K", F_Q4_K_M, DQ_GGML_Q4_K},     {"Q5_K_S", F_Q5_K_S, DQ_GGML_Q5_K}, {"Q5_K_M", F_Q5_K_M, DQ_GGML_Q5_K},
    {"Q5_K", F_Q5_K_M, DQ_GGML_Q5_K},     {"Q6_K", F_Q6_K, DQ_GGML_Q6_K},     {"IQ4_NL", F_IQ4_NL, DQ_GGML_IQ4_NL},
};

const char *dq_type_plan_names(void) {
    return "Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_0 Q4_1 Q4_K_S Q4_K_M Q5_0 Q5_1 Q5_K_S Q5_K_M Q6_K Q8_0 IQ4_NL";
}

static bool more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

/* llama.cpp's replacement when the row length is not a multiple of the block. */
static dq_ggml_type fit_width(dq_ggml_type t, int cols, int *n_fallback) {
    if (cols % dq_ggml_info(t)->block == 0) return t;
    ++*n_fallback;
    switch (t) {
    case DQ_GGML_Q2_K: case DQ_GGML_Q3_K: t = DQ_GGML_IQ4_NL; break;
    case DQ_GGML_Q4_K: t = DQ_GGML_Q5_0; break;
    case DQ_GGML_Q5_K: t = DQ_GGML_Q5_1; break;
    case DQ_GGML_Q6_K: t = DQ_GGML_Q8_0; break;
    default: break; /* llama.cpp refuses legacy types here; we keep such rows in F16 */
    }
    return cols % dq_ggml_info(t)->block == 0 ? t : DQ_GGML_F16;
}

static dq_ggml_type attn_v(ftype f, int i, int n, int gqa, dq_ggml_type t) {
    switch (f) {
    case F_Q2_K: return gqa >= 4 ? DQ_GGML_Q4_K : DQ_GGML_Q3_K;
    case F_Q3_K_M: return i < 2 ? DQ_GGML_Q5_K : DQ_GGML_Q4_K;
    case F_Q3_K_L: return DQ_GGML_Q5_K;
    case F_IQ4_NL: return gqa >= 4 ? DQ_GGML_Q5_K : t;
    case F_Q4_K_M: case F_Q5_K_M: return more_bits(i, n) ? DQ_GGML_Q6_K : t;
    case F_Q4_K_S: return i < 4 ? DQ_GGML_Q5_K : t;
    default: return t;
    }
}

static dq_ggml_type ffn_down(ftype f, int i, int n, bool calibrated, dq_ggml_type t) {
    switch (f) {
    case F_Q2_K: return DQ_GGML_Q3_K;
    case F_Q3_K_M: return i < n / 16 ? DQ_GGML_Q5_K : DQ_GGML_Q4_K;
    case F_Q3_K_L: return DQ_GGML_Q5_K;
    case F_Q4_K_M: case F_Q5_K_M: return more_bits(i, n) ? DQ_GGML_Q6_K : t;
    case F_IQ4_NL: return i < n / 8 && !calibrated ? DQ_GGML_Q5_K : t;
    case F_Q4_K_S: return i < n / 8 ? DQ_GGML_Q5_K : t;
    case F_Q4_0: return calibrated && i < n / 8 ? DQ_GGML_Q4_1 : t;
    case F_Q5_0: return calibrated && i < n / 8 ? DQ_GGML_Q5_1 : t;
    default: return t;
    }
}

static dq_ggml_type attn_output(ftype f, dq_ggml_type t) {
    return f == F_Q2_K ? DQ_GGML_Q3_K : f == F_Q3_K_M ? DQ_GGML_Q4_K : f == F_Q3_K_L ? DQ_GGML_Q5_K : t;
}

static dq_ggml_type linear_type(ftype f, dq_ggml_type base, int kind, int layer, int n_layers, int gqa,
                                bool calibrated) {
    switch (kind) {
    case DQ_LIN_V: return attn_v(f, layer, n_layers, gqa, base); /* one attn_v per layer: i_attention_wv = layer */
    case DQ_LIN_DOWN: return ffn_down(f, layer, n_layers, calibrated, base);
    case DQ_LIN_O: return attn_output(f, base);
    default: return base;
    }
}

dq_status dq_type_plan_make(const char *name, bool pure, bool calibrated, const dq_config *c, dq_type_plan *p,
                            dq_error *err) {
    memset(p, 0, sizeof *p);
    size_t i = 0, n = sizeof PRESETS / sizeof PRESETS[0];
    while (i < n && strcmp(PRESETS[i].name, name)) i++;
    if (i == n) return dq_fail(err, DQ_ERR_ARG, "unknown GGUF type '%s' (known: %s)", name, dq_type_plan_names());
    ftype f = PRESETS[i].ft;
    dq_ggml_type base = PRESETS[i].base;
    p->n_layers = c->n_layers;
    p->file_type = (uint32_t)f;
    if (!(p->linear = malloc((size_t)c->n_layers * DQ_LIN_PER_BLOCK * sizeof *p->linear)))
        return dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    int gqa = c->n_kv_heads > 0 ? c->n_heads / c->n_kv_heads : 1;
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < DQ_LIN_PER_BLOCK; k++) {
            int rows, cols;
            dq_site_shape(dq_site_of_linear(k), c, &rows, &cols);
            dq_ggml_type t = pure ? base : linear_type(f, base, k, l, c->n_layers, gqa, calibrated);
            p->linear[l * DQ_LIN_PER_BLOCK + k] = fit_width(t, cols, &p->n_fallback);
        }
    dq_ggml_type head = base;
    if (!pure) /* output.weight (or the tied embedding): Q6_K unless the base is Q8_0 or does not fit */
        head = c->dim % dq_ggml_info(base)->block ? DQ_GGML_Q8_0 : base == DQ_GGML_Q8_0 ? base : DQ_GGML_Q6_K;
    p->head = fit_width(head, c->dim, &p->n_fallback);
    p->embed = c->tied_embeddings ? p->head : fit_width(base, c->dim, &p->n_fallback);
    return DQ_OK;
}

void dq_type_plan_free(dq_type_plan *p) {
    free(p->linear);
    memset(p, 0, sizeof *p);
}
