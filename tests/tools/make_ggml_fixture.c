/* Writes tests/fixtures/ggml/: 4 rows x 512 pseudo-random weights encoded by
 * ggml's own quantizers (ggml_quantize_chunk) into every block type dashq
 * reads, and ggml's dequantization of those bytes. test_gguf.c checks that our
 * decoders give the same floats and our Q8_0 encoder the same bytes.
 * Not built by this project: compile it against a llama.cpp checkout, e.g.
 *   cc -O2 tests/tools/make_ggml_fixture.c -I$LLAMA/ggml/include \
 *      -L$LLAMA/build/bin -lggml -lggml-base -lm -o /tmp/make_ggml_fixture
 *   LD_LIBRARY_PATH=$LLAMA/build/bin /tmp/make_ggml_fixture tests/fixtures/ggml */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "ggml.h"

#define ROWS 4
#define COLS 512

static void write_file(const char *dir, const char *name, const char *ext, const void *p, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.%s", dir, name, ext);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) exit(1);
    fclose(f);
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    /* ggml_init fills the fp16 conversion tables the CPU codecs use */
    struct ggml_context *ctx = ggml_init((struct ggml_init_params){16 * 1024, NULL, false});
    static float x[ROWS * COLS], y[ROWS * COLS];
    uint32_t s = 1234567u;
    for (int i = 0; i < ROWS * COLS; i++) { /* sum of uniforms ~ gaussian, a few outliers */
        float v = 0;
        for (int k = 0; k < 4; k++) s = s * 1664525u + 1013904223u, v += (float)(s >> 8) / 16777216.0f - 0.5f;
        x[i] = (i % 61 == 0 ? 6.0f : 1.0f) * 0.05f * v + (i / COLS) * 0.01f;
    }
    write_file(argv[1], "input", "f32", x, sizeof x);
    enum ggml_type types[] = {GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q8_0,
                              GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K,
                              GGML_TYPE_IQ4_NL, GGML_TYPE_F16, GGML_TYPE_BF16};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        size_t bytes = ggml_row_size(types[t], COLS) * ROWS;
        void *q = malloc(bytes);
        ggml_quantize_chunk(types[t], x, q, 0, ROWS, COLS, NULL);
        ggml_get_type_traits(types[t])->to_float(q, y, ROWS * COLS);
        write_file(argv[1], ggml_type_name(types[t]), "bin", q, bytes);
        write_file(argv[1], ggml_type_name(types[t]), "f32", y, sizeof y);
        free(q);
    }
    ggml_free(ctx);
    return 0;
}
