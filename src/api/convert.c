/* dq_convert, the public entry point of format conversion: a model we read,
 * with its tokenizer, as a GGUF file (F32/F16/BF16/Q8_0) or a Hugging Face
 * folder (F32/BF16), written atomically and never over an input. */
#include <string.h>

#include "export/gguf_export.h"
#include "export/hf_export.h"
#include "formats/ggml_types.h"
#include "model/model.h"
#include "util/error.h"
#include "util/files.h"

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

dq_status dq_convert(const dq_model *m, const dq_tokenizer *t, const char *out, const char *format, const char *type,
                     dq_error *err) {
    dq_status st = dq_convert_check(format, type, err);
    bool hf = !st && !strcmp(format, "hf");
    const char *inputs[] = {m->path, dq_tokenizer_path(t)};
    if (!st) st = dq_check_output(out, hf ? DQ_OUT_PACKED_DIR : DQ_OUT_GGUF, inputs, 2, err);
    for (int l = 0; !st && l < m->cfg.n_layers; l++) /* a model from dq_model_load_lazy is for dq_quantize */
        if (!dq_model_block_ready(m, l))
            st = dq_fail(err, DQ_ERR_ARG, "%s: block %d's weights are not loaded (a model opened for streaming "
                         "quantization); load it with dq_model_load to convert it", m->path, l);
    if (st) return st;
    if (hf) {
        dq_hf_export_opts o = {.type = !strcmp(type, "BF16") ? DQ_DTYPE_BF16 : DQ_DTYPE_F32};
        return dq_export_hf(out, m, t, &o, err);
    }
    dq_gguf_export_opts o = {.type = (dq_ggml_type)dq_ggml_type_by_name(type)};
    return dq_export_gguf(out, m, t, &o, err);
}
