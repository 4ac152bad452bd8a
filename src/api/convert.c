/* dq_convert, the public entry point of format conversion: a model we read,
 * with its tokenizer, as a GGUF file (F32/F16/BF16/Q8_0) or a Hugging Face
 * folder (F32/BF16), written atomically and never over an input, block by
 * block (a lazily loaded model is held one block at a time). */
#include <string.h>

#include "export/gguf_export.h"
#include "export/hf_export.h"
#include "formats/ggml_types.h"
#include "model/model.h"
#include "util/error.h"
#include "util/files.h"
#include "util/progress.h"

dq_status dq_convert_check(const char *format, const char *type, dq_error *err) {
    if (!format || (strcmp(format, "gguf") && strcmp(format, "hf")))
        return dq_fail(err, DQ_ERR_ARG, "the format is gguf or hf, not %s", format ? format : "(none)");
    if (!strcmp(format, "hf")) {
        if (!type || (strcmp(type, "F32") && strcmp(type, "BF16")))
            return dq_fail(err, DQ_ERR_ARG, "a Hugging Face folder takes type F32 or BF16");
        return DQ_OK;
    }
    int g = type ? dq_ggml_type_by_name(type) : -1;
    if (g != DQ_GGML_F32 && g != DQ_GGML_F16 && g != DQ_GGML_BF16 && g != DQ_GGML_Q8_0)
        return dq_fail(err, DQ_ERR_ARG, "a GGUF conversion takes type F32, F16, BF16 or Q8_0 (low-bit types: "
                                        "dashq quantize --format gguf)");
    return DQ_OK;
}

dq_convert_params dq_convert_default_params(void) { return (dq_convert_params){.format = "gguf", .type = "F32"}; }

/* The GGUF file laid out, then block by block from m. */
static dq_status convert_gguf(dq_model *m, const dq_tokenizer *t, const char *out, const dq_convert_params *p,
                              dq_error *err) {
    dq_gguf_export_opts o = {.type = (dq_ggml_type)dq_ggml_type_by_name(p->type)};
    dq_gguf_export *x = NULL;
    dq_status st = dq_gguf_export_begin(out, m, &m->cfg, t, &o, NULL, 0, &x, err);
    bool embed = false, head = false;
    if (!st && !(st = dq_model_block_hold(m, DQ_DEFER_EMBED, &embed, err))) st = dq_gguf_export_put_embedding(x, m, err);
    dq_model_block_let_go(m, DQ_DEFER_EMBED, embed); /* an untied embedding, then the head: never both */
    for (int l = 0; !st && l < m->cfg.n_layers; l++) {
        bool held;
        if (!(st = dq_model_block_hold(m, l, &held, err))) st = dq_gguf_export_put_block(x, m, l, err);
        dq_model_block_let_go(m, l, held);
        if (!st && !dq_progress_report(&p->progress, "convert", (size_t)l + 1, (size_t)m->cfg.n_layers, err))
            st = DQ_ERR_CANCELLED;
    }
    if (!st) st = dq_model_block_hold(m, DQ_DEFER_HEAD, &head, err);
    if (!st) st = dq_gguf_export_finish(x, m, err);
    else if (x) dq_gguf_export_abort(x);
    dq_model_block_let_go(m, DQ_DEFER_HEAD, head);
    return st;
}

dq_status dq_convert(dq_model *m, const dq_tokenizer *t, const char *out, const dq_convert_params *p, dq_error *err) {
    dq_status st = dq_convert_check(p->format, p->type, err);
    bool hf = !st && !strcmp(p->format, "hf");
    if (!st && !hf && !t) st = dq_fail(err, DQ_ERR_ARG, "%s: a GGUF file needs the model's tokenizer", out);
    const char *inputs[] = {m->path, t ? dq_tokenizer_path(t) : NULL};
    if (!st) st = dq_check_output(out, hf ? DQ_OUT_PACKED_DIR : DQ_OUT_GGUF, inputs, t ? 2 : 1, err);
    if (st) return st;
    if (hf) {
        dq_hf_export_opts o = {.type = !strcmp(p->type, "BF16") ? DQ_DTYPE_BF16 : DQ_DTYPE_F32,
                               .max_shard_bytes = p->max_shard_bytes,
                               .progress = p->progress};
        return dq_export_hf(out, m, t, &o, err);
    }
    return convert_gguf(m, t, out, p, err);
}
