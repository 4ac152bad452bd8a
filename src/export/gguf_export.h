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
    /* A resumable run (util/resume.h): the temporary is resume_tmp, kept on
     * abort; resume_reopen: an interrupted run's, whose bytes stay (the
     * layers it wrote are then given to dq_gguf_export_skip). */
    const char *resume_tmp;
    bool resume_reopen;
} dq_gguf_export_opts;

dq_status dq_export_gguf(const char *path, const dq_model *m, const dq_tokenizer *t, const dq_gguf_export_opts *o,
                         dq_error *err);

/* The same file written as the pipeline goes (dq_pipeline_opts.emit):
 * begin lays it out for config c (the model's as it will be written: a
 * rotation unties the head) and the quantized layers to come (dq_quant_layout:
 * types and dims, no codes; o->quant is ignored) and writes its header to
 * PATH.tmp-PID; put takes finished layers (a block's seven write the block
 * from m, its norms and F16-kept layers included; the head, and with it a
 * tied embedding; an untied embedding); finish writes what remains from m
 * (blocks never put, embedding, final norm, head, RoPE divisors), renames
 * over PATH and frees x; abort removes the temporary. */
typedef struct dq_gguf_export dq_gguf_export;
dq_status dq_gguf_export_begin(const char *path, const dq_model *m, const dq_config *c, const dq_tokenizer *t,
                               const dq_gguf_export_opts *o, const dq_qlayer *layout, int n, dq_gguf_export **x,
                               dq_error *err);
dq_status dq_gguf_export_put(dq_gguf_export *x, const dq_model *m, const dq_qlayer *layers, int n, dq_error *err);
dq_status dq_gguf_export_finish(dq_gguf_export *x, const dq_model *m, dq_error *err);
/* Block l as m holds it now (a conversion going through a lazily loaded
 * model, dq_model_block_hold): for a block with no quantized layers to come. */
dq_status dq_gguf_export_put_block(dq_gguf_export *x, const dq_model *m, int l, dq_error *err);
/* The token embedding as m holds it now (before the blocks, so that a
 * conversion holds it alone): for an embedding with no quantized layer to come. */
dq_status dq_gguf_export_put_embedding(dq_gguf_export *x, const dq_model *m, dq_error *err);
/* As put, for layers a reopened file already holds: their tensors count as
 * written, nothing is read (their codes are gone). */
dq_status dq_gguf_export_skip(dq_gguf_export *x, const dq_model *m, const dq_qlayer *layers, int n, dq_error *err);
/* What was put so far, on disk: a resume point. */
dq_status dq_gguf_export_sync(dq_gguf_export *x, dq_error *err);
void dq_gguf_export_abort(dq_gguf_export *x);
#endif
