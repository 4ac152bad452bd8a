/* libFuzzer target for the safetensors reader (dq_st_open): the u64 header
 * length, the JSON header (dtype, shape, data_offsets of every tensor,
 * duplicates, overlaps) and the data bounds. Every tensor it accepts is read
 * at its first and last byte, and looked up by name. */
#include "fuzz_util.h"

#include "formats/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    int fd = fz_memfd("st", data, size, path);
    dq_st_file f;
    dq_error err = {0};
    dq_status st = dq_st_open(path, &f, &err);
    fz_say("safetensors", st, err.msg);
    if (st == DQ_OK) {
        volatile unsigned sink = 0;
        for (size_t i = 0; i < f.n_tensors; i++) {
            const dq_st_tensor *t = &f.tensors[i];
            if (t->nbytes) sink += t->data[0] + t->data[t->nbytes - 1];
            if (dq_st_find(&f, t->name) == NULL) abort(); /* every name must be found */
        }
        (void)sink;
        dq_st_close(&f);
    }
    close(fd);
    return 0;
}
