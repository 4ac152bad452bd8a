/* The tensor-site table (model/sites.h): rows that agree with each other,
 * with the shapes the formats were written for, and with the forward pass's
 * taps (the table says which input each linear reads; block() emits them). */
#include <stdlib.h>
#include <string.h>

#include "model/forward.h"
#include "model/sites.h"
#include "testutil.h"

static void rows_are_consistent(void **state) {
    (void)state;
    int ranks[DQ_SITE_PER_BLOCK] = {0}, seen_lin[DQ_LIN_PER_BLOCK] = {0};
    for (int i = 0; i < DQ_SITE_COUNT; i++) {
        const dq_site *s = &DQ_SITES[i];
        assert_non_null(s->hf);
        assert_non_null(s->gguf);
        assert_int_equal(s->per_block, i < DQ_SITE_PER_BLOCK);
        assert_false(s->per_expert);
        assert_true(s->rows != DQ_DIM_NONE);
        assert_int_equal(s->tap == DQ_TAP_NONE, s->role != DQ_SITE_LINEAR);
        assert_int_equal(s->cols == DQ_DIM_NONE, s->role == DQ_SITE_NORM || s->role == DQ_SITE_BIAS);
        assert_int_equal(s->optional, s->role == DQ_SITE_BIAS);
        if (s->lin >= 0) {
            assert_ptr_equal(dq_site_of_linear(s->lin), s);
            seen_lin[s->lin]++;
        }
        if (s->llama2c_rank >= 0) ranks[s->llama2c_rank]++;
        for (int j = 0; j < i; j++) /* one pointer per row; names unique within a format */
            if (DQ_SITES[j].per_block == s->per_block) {
                assert_int_not_equal(DQ_SITES[j].offset, s->offset);
                char a[128], b[128];
                dq_site_gguf_name(s, 0, a, sizeof a), dq_site_gguf_name(&DQ_SITES[j], 0, b, sizeof b);
                assert_string_not_equal(a, b);
                dq_site_hf_name(s, 0, a, sizeof a), dq_site_hf_name(&DQ_SITES[j], 0, b, sizeof b);
                assert_string_not_equal(a, b);
            }
    }
    for (int k = 0; k < DQ_LIN_PER_BLOCK; k++) assert_int_equal(seen_lin[k], 1);
    for (int r = 0; r < 9; r++) assert_int_equal(ranks[r], 1); /* llama2.c's nine kinds per block */
    char n[128];
    dq_site_hf_module(&DQ_SITES[DQ_SITE_DOWN], 3, n, sizeof n);
    assert_string_equal(n, "model.layers.3.mlp.down_proj");
    dq_site_hf_name(&DQ_SITES[DQ_SITE_K_BIAS], 1, n, sizeof n);
    assert_string_equal(n, "model.layers.1.self_attn.k_proj.bias");
    dq_site_gguf_name(&DQ_SITES[DQ_SITE_O], 2, n, sizeof n);
    assert_string_equal(n, "blk.2.attn_output.weight");
    dq_site_gguf_name(&DQ_SITES[DQ_SITE_OUTPUT_NORM], 0, n, sizeof n);
    assert_string_equal(n, "output_norm.weight");
    dq_site_hf_name(&DQ_SITES[DQ_SITE_OUTPUT], 0, n, sizeof n);
    assert_string_equal(n, "lm_head.weight");
}

/* The shapes the seven linears had before the table (model.h's old list). */
static void linear_shapes(void **state) {
    (void)state;
    dq_config c = {.dim = 64, .hidden_dim = 172, .n_heads = 8, .n_kv_heads = 2, .head_dim = 16, .vocab_size = 99};
    int qd = 128, kvd = 32;
    int want_rows[DQ_LIN_PER_BLOCK] = {qd, kvd, kvd, 64, 172, 172, 64};
    int want_cols[DQ_LIN_PER_BLOCK] = {64, 64, 64, qd, 64, 64, 172};
    for (int k = 0; k < DQ_LIN_PER_BLOCK; k++) {
        int rows, cols;
        dq_linear_shape(&c, k, &rows, &cols);
        assert_int_equal(rows, want_rows[k]);
        assert_int_equal(cols, want_cols[k]);
    }
    assert_int_equal(dq_site_elems(&DQ_SITES[DQ_SITE_V_BIAS], &c), kvd);
    assert_int_equal(dq_site_elems(&DQ_SITES[DQ_SITE_OUTPUT], &c), 99 * 64);
}

typedef struct {
    int cols[DQ_TAP_COUNT], calls[DQ_TAP_COUNT], asked[DQ_TAP_COUNT];
    int layer, n_sites[DQ_TAP_COUNT];
    const dq_site *sites[DQ_TAP_COUNT][DQ_TAP_MAX_SITES];
    dq_tap declined;
} tap_log;

static bool ask_tap(void *ctx, int layer, dq_tap tap) {
    tap_log *l = ctx;
    l->asked[tap]++;
    l->layer = layer;
    return tap != l->declined;
}

static void log_tap(void *ctx, const dq_tap_data *d) {
    tap_log *l = ctx;
    l->cols[d->tap] = d->cols;
    l->calls[d->tap]++;
    l->n_sites[d->tap] = d->n_sites;
    for (int i = 0; i < d->n_sites; i++) l->sites[d->tap][i] = d->sites[i];
}

/* Every block linear's tap is shown by the forward pass, once, with the
 * linear's input width; every present site is loaded, every absent one NULL. */
static void check_model(const char *path) {
    dq_model *m = tu_model(path);
    const dq_config *c = dq_model_config(m);
    dq_session *s;
    dq_error err = {0};
    int T = 4;
    float *x = calloc((size_t)T * c->dim, sizeof *x);
    for (int i = 0; i < T * c->dim; i++) x[i] = (float)((i * 37) % 11 - 5) * 0.1f;
    tap_log log = {.declined = DQ_TAP_NONE};
    dq_taps taps = {ask_tap, log_tap, &log};
    int L = c->n_layers - 1; /* the last block: taps say which */
    if (dq_session_new(m, T, T, 1, &s, &err) || dq_block_forward(s, L, x, T, &taps, &err)) fail_msg("%s", err.msg);
    assert_int_equal(log.layer, L);
    for (int i = 0; i < DQ_SITE_PER_BLOCK; i++) {
        const dq_site *site = &DQ_SITES[i];
        assert_int_equal(dq_site_get(&m->layers[0], site) != NULL, dq_site_present(site, c));
        if (site->role != DQ_SITE_LINEAR) continue;
        assert_int_equal(log.calls[site->tap], 1);
        assert_int_equal(log.cols[site->tap], dq_dim_size(c, site->cols));
        bool named = false; /* the tap names every linear that reads it */
        for (int k = 0; k < log.n_sites[site->tap]; k++) named |= log.sites[site->tap][k] == site;
        assert_true(named);
    }
    assert_int_equal(log.n_sites[DQ_TAP_ATTN_IN], 3);
    assert_int_equal(log.n_sites[DQ_TAP_FFN_IN], 2);
    assert_int_equal(log.n_sites[DQ_TAP_ATTN_OUT], 1);
    assert_int_equal(log.n_sites[DQ_TAP_FFN_HIDDEN], 1);
    assert_int_equal(log.calls[DQ_TAP_HEAD_IN], 0);
    /* a declined tap is asked about and never delivered; the others still are */
    tap_log some = {.declined = DQ_TAP_FFN_IN};
    taps.ctx = &some;
    if (dq_block_forward(s, 0, x, T, &taps, &err)) fail_msg("%s", err.msg);
    assert_int_equal(some.asked[DQ_TAP_FFN_IN], 1);
    assert_int_equal(some.calls[DQ_TAP_FFN_IN], 0);
    assert_int_equal(some.calls[DQ_TAP_ATTN_IN], 1);
    assert_int_equal(some.calls[DQ_TAP_FFN_HIDDEN], 1);
    for (int i = DQ_SITE_PER_BLOCK; i < DQ_SITE_COUNT; i++) assert_non_null(*dq_site_model_tensor(m, &DQ_SITES[i]));
    free(x);
    dq_session_free(s);
    dq_model_free(m);
}

static void forward_taps_llama2c(void **state) {
    (void)state;
    check_model(tu_shared("models/stories260K/stories260K.bin"));
}

static void forward_taps_qwen2(void **state) {
    (void)state;
    check_model(tu_fixture("qwen2-tiny"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rows_are_consistent),
        cmocka_unit_test(linear_shapes),
        cmocka_unit_test(forward_taps_llama2c),
        cmocka_unit_test(forward_taps_qwen2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
