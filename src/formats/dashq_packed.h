/* The DASH-Q packed checkpoint (the format of the published DASH-Q models and
 * of their Python loader): a Hugging Face folder whose quantized linears NAME
 * are stored as
 *   NAME.W_q_packed  int32, codes packed LSB-first, 32/bits per word, over the
 *                    row-major [out, in] array (3 bits: 10 per word, 2 unused)
 *   NAME.scale       float16 [num_groups, 1]
 *   NAME.zero        float16 [num_groups, 1]   w = (q − zero) · scale
 * with groups = consecutive runs of group_size inputs of one row, and
 * dashq_config.json {"format": "dashq-packed-linear", "quantized_modules":
 * {NAME: {in_features, out_features, quant_in_features, nbits, group_size,
 * num_groups}}}. Other tensors keep the source dtype. A layer whose width
 * the group does not divide is padded: its rows are quant_in_features wide
 * (zero weights appended, coded with their group) and num_groups and the
 * packed codes count the padded [out, quant_in_features] array; readers keep
 * the first in_features columns. lm_head.weight is always written (a copy of
 * the embedding when tied), as the official loader needs it. A model read
 * from N safetensors shards is written as N shards with an index
 * (dashq_packed.c); the official loader reads either. */
#ifndef DQ_DASHQ_PACKED_H
#define DQ_DASHQ_PACKED_H
#include "calib/pipeline.h"
#include "model/model.h"

typedef struct {
    const char *method;
    int bits, group, nsamples, seqlen;
    uint64_t seed;
    const char *calib_path;
    const char *tokenizer_path; /* copied into the folder (with its companions) */
    const char *base_model;     /* dashq_config.json's base_model; NULL: the model's path */
    const dq_tokenizer *tokenizer; /* written as tokenizer.json when tokenizer_path is no file HF reads (GGUF) */
    const char *curvature; /* "oac", "oac-token"; NULL for the layer's own (not written) */
    const char *rotate, *smooth; /* transforms folded in before quantization; NULL: none (not written) */
    double smooth_alpha;
} dq_packed_info;

/* Writes the folder atomically: everything goes into OUT.tmp-PID, which then
 * replaces OUT (an existing OUT is only replaced if it is a dashq checkpoint). */
/* Whether a model's config can be written as a packed checkpoint's
 * config.json: per-pair RoPE divisors from a GGUF file (rope_freqs.weight)
 * have no Hugging Face form. */
dq_status dq_packed_check(const dq_model *m, dq_error *err);
dq_status dq_write_packed(const char *out_dir, const dq_model *m, const dq_quant_result *r,
                          const dq_packed_info *info, dq_error *err);

/* The same folder written as the pipeline goes (dq_pipeline_opts.emit):
 * begin lays out the safetensors file(s) from the model's config and the layers
 * to come (dq_quant_layout: dims, no codes) inside OUT.tmp-PID; put writes
 * the next layers in that order (with a block's first layer, the block's
 * norms and biases), checking each against its layout; finish writes the
 * embedding, final norm and full-precision head as they are then, the JSON
 * files and the tokenizer, and publishes OUT. Any failure: abort, which
 * removes the temporary folder (OUT is untouched). The bytes are those of
 * dq_write_packed. */
typedef struct dq_packed_writer dq_packed_writer;
dq_status dq_packed_begin(const char *out_dir, const dq_model *m, const dq_qlayer *layout, int n,
                          dq_packed_writer **w, dq_error *err);
dq_status dq_packed_put(dq_packed_writer *w, const dq_model *m, const dq_qlayer *layers, int n, dq_error *err);
/* A resumable run (util/resume.h): the temporary folder is tmp (created,
 * kept on abort); reopen: an interrupted run's, whose safetensors files
 * keep their bytes; skip then counts the layers it wrote (no codes needed),
 * sync puts what was written on disk. */
dq_status dq_packed_begin_at(const char *out_dir, const char *tmp, bool reopen, const dq_model *m,
                             const dq_qlayer *layout, int n, dq_packed_writer **w, dq_error *err);
dq_status dq_packed_skip(dq_packed_writer *w, const dq_qlayer *layers, int n, dq_error *err);
dq_status dq_packed_sync(dq_packed_writer *w, dq_error *err);
/* Frees w, published or not. */
dq_status dq_packed_finish(dq_packed_writer *w, const dq_model *m, const dq_quant_result *r,
                           const dq_packed_info *info, dq_error *err);
void dq_packed_abort(dq_packed_writer *w);

/* Number of int32 words holding n codes of `bits` bits. */
size_t dq_packed_words(size_t n, int bits);
void dq_pack_codes(const uint8_t *q, size_t n, int bits, int32_t *words);
void dq_unpack_codes(const int32_t *words, size_t n, int bits, uint8_t *q);
#endif
