/* libFuzzer target for the GGUF reader: header, metadata, tensor infos,
 * alignment, then the model loader (every tensor decoded) and the tokenizer
 * loader on the same bytes. Any input must end in DQ_OK or a clean error:
 * ASan/UBSan catch the rest.
 *   clang -fsanitize=fuzzer,address,undefined ... (see tests/fuzz/run.sh) */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dashq.h"
#include "formats/gguf.h"
#include "model/model.h"

static void walk(const dq_gguf *g) {
    volatile size_t sink = 0;
    for (size_t i = 0; i < g->n_kv; i++) {
        const dq_gguf_kv *kv = &g->kv[i];
        if (kv->type == DQ_GGUF_ARRAY && kv->arr_type == DQ_GGUF_STRING) {
            const uint8_t *it = kv->val;
            for (uint64_t k = 0; k < kv->arr_n; k++) {
                const char *s;
                size_t len;
                dq_gguf_next_str(&it, &s, &len);
                sink += len ? (unsigned char)s[len - 1] : 0;
            }
        }
    }
    for (size_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].nbytes) sink += g->tensors[i].data[g->tensors[i].nbytes - 1];
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd = memfd_create("gguf", 0);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size) abort();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    dq_error err = {0};
    dq_gguf g;
    if (dq_gguf_open(path, &g, &err) == DQ_OK) {
        walk(&g);
        dq_gguf_close(&g);
    }
    dq_model *m = NULL;
    if (dq_load_gguf(path, false, &m, &err) == DQ_OK) dq_model_free(m);
    dq_tokenizer *t = NULL;
    if (dq_tokenizer_load(path, &t, &err) == DQ_OK) dq_tokenizer_free(t);
    close(fd);
    return 0;
}
