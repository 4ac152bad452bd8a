/* llama.cpp's quantization types by name ("Q4_K_M", "Q2_K", "Q4_0", ...):
 * which block type every tensor of a Llama model gets. Mirrors
 * llama_tensor_get_type (src/llama-quant.cpp) for dense Llama-family
 * models, including its fallbacks for rows whose length the type's block
 * does not divide, so our files have the same size as llama-quantize's. */
#ifndef DQ_PRESETS_H
#define DQ_PRESETS_H
#include "formats/ggml_types.h"
#include "model/model.h"

typedef struct {
    int n_layers;
    dq_ggml_type *linear;   /* (n_layers, DQ_LIN_PER_BLOCK); F16 = left in full precision */
    dq_ggml_type embed;     /* token_embd when untied */
    dq_ggml_type head;      /* output.weight, or the tied token_embd */
    uint32_t file_type;     /* llama_ftype, for general.file_type */
    int n_fallback;         /* tensors moved to another type because of their width */
} dq_type_plan;

/* The plan for preset `name` on a model of config c. pure: every tensor gets
 * the base type (llama-quantize --pure), fallbacks aside. calibrated: a
 * calibration statistic is used (llama.cpp's "has imatrix" rules). */
dq_status dq_type_plan_make(const char *name, bool pure, bool calibrated, const dq_config *c, dq_type_plan *p,
                            dq_error *err);
void dq_type_plan_free(dq_type_plan *p);
/* Names accepted by dq_type_plan_make, space-separated (for help text). */
const char *dq_type_plan_names(void);
#endif
