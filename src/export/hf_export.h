/* Writes any dq_model as a Hugging Face folder that transformers (and dashq)
 * load: config.json (llama, or qwen2 when q/k/v have biases),
 * model.safetensors under HF tensor names with q/k rows in HF's rotate-half
 * order, tokenizer.json + tokenizer_config.json + special_tokens_map.json. */
#ifndef DQ_HF_EXPORT_H
#define DQ_HF_EXPORT_H
#include <cjson/cJSON.h>

#include "model/model.h"
#include "tokenizer/tokenizer.h"

/* transformers' save_pretrained default shard size, "5GB" (decimal, as huggingface_hub counts). */
#define DQ_HF_SHARD_BYTES 5000000000ull

typedef struct {
    dq_dtype type;            /* every tensor: DQ_DTYPE_F32 (exact) or DQ_DTYPE_BF16 */
    uint64_t max_shard_bytes; /* safetensors shards as transformers cuts them; 0: DQ_HF_SHARD_BYTES */
    dq_progress progress;     /* stage "convert", one unit per block */
} dq_hf_export_opts;

/* Builds OUT.tmp-PID and renames it to OUT; an existing OUT is replaced only
 * if dashq wrote it. The model must have no GGUF per-pair RoPE factors. The
 * tensors are laid out first and written block by block: a lazily loaded
 * model (dq_model_load_lazy) is held one block at a time, and blocks it had
 * loaded before stay loaded. One model.safetensors, or shards
 * model-0000k-of-0000N.safetensors and model.safetensors.index.json. */
dq_status dq_export_hf(const char *out_dir, dq_model *m, const dq_tokenizer *t, const dq_hf_export_opts *o,
                       dq_error *err);

/* config.json for model_type `arch` ("llama", "mistral", "qwen2") with the
 * given torch_dtype; the caller owns the result. */
cJSON *dq_hf_config(const dq_model *m, const char *arch, const char *torch_dtype);

/* tokenizer.json for t (sentencepiece merges by score become ranked merges);
 * DQ_ERR_UNSUPPORTED for what tokenizer.json cannot say. */
dq_status dq_hf_tokenizer_json(const dq_tokenizer *t, cJSON **out, dq_error *err);
cJSON *dq_hf_tokenizer_config(const dq_tokenizer *t, int model_max_length);
/* Writes tokenizer.json, tokenizer_config.json and special_tokens_map.json into dir. */
dq_status dq_hf_write_tokenizer(const char *dir, const dq_tokenizer *t, int model_max_length, dq_error *err);
cJSON *dq_hf_special_tokens_map(const dq_tokenizer *t);
#endif
