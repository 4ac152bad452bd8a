/* Quantizes a model through the public header alone: the shortest program
 * that does what `dashq quantize` does.
 *
 *   examples/quantize MODEL CALIB.txt OUT [METHOD [OPTIONS]]
 *   examples/quantize stories260K.bin tinystories.txt /tmp/q gptq act_order,percdamp=0.05
 *
 * Writes a DASH-Q packed checkpoint (3 bits, groups of 32) and prints one line
 * per block as the library reports progress. */
#include <stdio.h>

#include "dashq.h"

static bool on_progress(const char *stage, size_t done, size_t total, void *user) {
    (void)user;
    printf("%s %zu/%zu\n", stage, done, total);
    return true; /* false would stop the job (DQ_ERR_CANCELLED) */
}

static void on_note(bool warning, const char *msg, void *user) {
    (void)user;
    printf("%s: %s\n", warning ? "warning" : "note", msg);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL CALIB OUT [METHOD [OPTIONS]]   (methods: %s)\n", argv[0],
                dq_quantize_methods());
        return 2;
    }
    dq_error err = {0};
    dq_model *m = NULL;
    dq_tokenizer *t = NULL;
    dq_quantize_params p = dq_quantize_default_params();
    p.method = argc > 4 ? argv[4] : "dashq";
    p.options = argc > 5 ? argv[5] : NULL;
    p.bits = 3, p.group = 32;
    p.calib = argv[2];
    p.nsamples = 8, p.seqlen = 64;
    p.progress = (dq_progress){on_progress, on_note, NULL};
    dq_quantize_report r = {0};
    dq_status st = dq_quantize_check(&p, &err);
    if (!st) st = dq_model_load(argv[1], &m, &err);
    if (!st) st = dq_tokenizer_for_model(argv[1], dq_model_config(m)->vocab_size, &t, &err);
    if (!st) st = dq_quantize(m, t, argv[3], &p, &r, &err);
    if (!st)
        printf("%s: %d tensors, mean relative output error %.6f, %.2f s\n", argv[3], r.n_tensors, r.mean_rel_err,
               r.t_total);
    else fprintf(stderr, "error: %s\n", err.msg);
    dq_quantize_report_free(&r);
    dq_tokenizer_free(t);
    dq_model_free(m);
    return st ? 2 : 0;
}
