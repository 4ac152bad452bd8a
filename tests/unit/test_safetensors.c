/* The safetensors reader on real and hand-built files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "testutil.h"

static void test_real_file(void **st) {
    (void)st;
    dq_st_file f;
    dq_error err = {0};
    assert_int_equal(dq_st_open(tu_shared("models/gut6l-hf/model.safetensors"), &f, &err), DQ_OK);
    const dq_st_tensor *t = dq_st_find(&f, "model.layers.5.mlp.down_proj.weight");
    assert_non_null(t);
    assert_string_equal(t->dtype, "BF16");
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], 256);
    assert_int_equal(t->shape[1], 768);
    assert_int_equal(t->nbytes, 256 * 768 * 2);
    assert_null(dq_st_find(&f, "lm_head.weight")); /* tied */
    assert_int_equal(f.n_tensors, 1 + 1 + 6 * 9);
    dq_st_close(&f);
}

static void test_hand_built(void **st) {
    (void)st;
    const char *hdr = "{\"__metadata__\": {\"format\": \"pt\"}, "
                      "\"s\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [0, 4]}, "
                      "\"h\": {\"dtype\": \"F16\", \"shape\": [2, 1], \"data_offsets\": [4, 8]}, "
                      "\"e\": {\"dtype\": \"BF16\", \"shape\": [0, 7], \"data_offsets\": [8, 8]}}";
    size_t hl = strlen(hdr);
    unsigned char buf[512];
    uint64_t h = hl;
    memcpy(buf, &h, 8);
    memcpy(buf + 8, hdr, hl);
    float one = 1.0f;
    uint16_t halves[2] = {0x3c00, 0xc000};
    memcpy(buf + 8 + hl, &one, 4);
    memcpy(buf + 12 + hl, halves, 4);
    const char *p = tu_tmp("hand.safetensors");
    tu_write(p, buf, 16 + hl);
    dq_st_file f;
    dq_error err = {0};
    assert_int_equal(dq_st_open(p, &f, &err), DQ_OK);
    assert_int_equal(f.n_tensors, 3);
    const dq_st_tensor *s = dq_st_find(&f, "s"), *t = dq_st_find(&f, "h"), *e = dq_st_find(&f, "e");
    assert_int_equal(s->n_elems, 1);
    assert_int_equal(s->ndim, 0);
    assert_memory_equal(s->data, &one, 4);
    assert_int_equal(t->type, DQ_DTYPE_F16);
    assert_memory_equal(t->data, halves, 4);
    assert_int_equal(e->n_elems, 0);
    dq_st_close(&f);
}

/* A name given twice: refused, naming it (cJSON would keep both, we took the first). */
static void test_duplicate_name(void **st) {
    (void)st;
    const char *hdr = "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, "
                      "\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}";
    size_t hl = strlen(hdr);
    unsigned char buf[256] = {0};
    uint64_t h = hl;
    memcpy(buf, &h, 8);
    memcpy(buf + 8, hdr, hl);
    const char *p = tu_tmp("dup.safetensors");
    tu_write(p, buf, 16 + hl);
    dq_st_file f;
    dq_error err = {0};
    assert_int_not_equal(dq_st_open(p, &f, &err), DQ_OK);
    assert_non_null(strstr(err.msg, "dup.safetensors: tensor a appears twice"));
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_real_file), cmocka_unit_test(test_hand_built),
                                       cmocka_unit_test(test_duplicate_name)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
