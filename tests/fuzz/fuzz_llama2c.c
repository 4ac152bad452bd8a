/* libFuzzer target for llama2.c checkpoints: the 7-int32 header (dims,
 * layers, heads, signed vocab size for a separate classifier, context),
 * its consistency with the file size, and the weights (NaN/Inf refused).
 * dq_model_load picks the format from the bytes as the CLI does, so inputs
 * that start like GGUF or safetensors reach those loaders too. */
#include "fuzz_util.h"

#include "model/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    int fd = fz_memfd("l2c", data, size, path);
    dq_model *m = NULL;
    dq_error err = {0};
    dq_status st = dq_load_llama2c(path, false, &m, &err);
    fz_say("llama2c", st, err.msg);
    if (st == DQ_OK) dq_model_free(m);
    m = NULL;
    if (dq_model_load(path, &m, &err) == DQ_OK) dq_model_free(m);
    close(fd);
    return 0;
}
