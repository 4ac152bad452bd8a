/* dq_model_load: the input format is detected from the path's contents. */
#include <stdio.h>
#include <string.h>

#include "model/model.h"
#include "util/error.h"
#include "util/files.h"

static dq_status load(const char *path, bool lazy, dq_model **out, dq_error *err) {
    *out = NULL;
    if (dq_is_dir(path)) return dq_load_hf(path, lazy, out, err);
    FILE *f = dq_fopen_input(path, err); /* a FIFO or device is refused, never blocks */
    if (!f) return err ? err->code : DQ_ERR_IO;
    uint8_t head[9] = {0};
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    if (n >= 4 && !memcmp(head, "GGUF", 4)) return dq_load_gguf(path, lazy, out, err);
    if (n == 9 && head[8] == '{') { /* safetensors: u64 header length, then JSON */
        char dir[PATH_MAX];
        dq_path_dir(dir, sizeof dir, path);
        return dq_load_hf(dir, lazy, out, err);
    }
    return dq_load_llama2c(path, lazy, out, err);
}

dq_status dq_model_load(const char *path, dq_model **out, dq_error *err) { return load(path, false, out, err); }

/* A loader may learn only at the end that the head is the embedding (a
 * Hugging Face folder without lm_head.weight): the embedding it deferred is
 * then needed whole, as the head too. */
dq_status dq_model_load_lazy(const char *path, dq_model **out, dq_error *err) {
    dq_status st = load(path, true, out, err);
    dq_model *m = *out;
    if (st || !m->cfg.tied_embeddings || m->tok_embeddings) return st;
    if (!(st = dq_model_block_load(m, DQ_DEFER_EMBED, err))) m->output = m->tok_embeddings;
    else dq_model_free(m), *out = NULL;
    return st;
}
