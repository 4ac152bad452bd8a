/* Writes a dq_model as a GGUF file llama.cpp loads on its own: llama
 * architecture metadata, the tokenizer (tokenizer.ggml.*), tensors under
 * llama.cpp's names with its Q/K row order. */
#ifndef DQ_GGUF_EXPORT_H
#define DQ_GGUF_EXPORT_H
#include "calib/pipeline.h"
#include "formats/ggml_types.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    dq_ggml_type type; /* 2-D weights: F32, F16, BF16 or Q8_0 (rows not divisible by 32 fall back to F16) */
    const char *name;  /* general.name */
    /* Quantized layers (dq_quantize_model with a plan): written as their
     * blocks, bit for bit; every other 2-D weight gets `type`. */
    const dq_quant_result *quant;
    uint32_t file_type; /* llama_ftype for general.file_type; 0: from type */
} dq_gguf_export_opts;

dq_status dq_export_gguf(const char *path, const dq_model *m, const dq_tokenizer *t, const dq_gguf_export_opts *o,
                         dq_error *err);
#endif
