/* libFuzzer target for Hugging Face model folders through dq_load_hf: the
 * input is up to four files separated by FZ_SEP (see fuzz_util.h), written
 * into a private folder as
 *   config.json, model.safetensors, dashq_config.json (which makes it a
 *   DASH-Q packed checkpoint: packed codes, scales, zeros, padding) and
 *   model.safetensors.index.json (shards; only model.safetensors exists).
 * A missing or empty section means a missing file. Any input must end in DQ_OK or a
 * clean error; ASan/UBSan catch the rest. */
#include "fuzz_util.h"

#include "model/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const names[] = {"config.json", "model.safetensors", "dashq_config.json",
                                        "model.safetensors.index.json"};
    const char *dir = fz_dir();
    fz_put_sections(dir, names, data, size, 4);
    dq_model *m = NULL;
    dq_error err = {0};
    dq_status st = dq_load_hf(dir, false, &m, &err);
    fz_say("hf", st, err.msg);
    if (st == DQ_OK) {
        if (dq_model_n_params(m) == 0) abort();
        dq_model_free(m);
    }
    return 0;
}
