/* libFuzzer target for KL-divergence base files (llama.cpp's
 * --kl-divergence-base format, as `dashq eval --save-logits` writes it):
 * magic, context, vocabulary, window count, the token list, then one
 * log-probability record per scored position. They are read by the real
 * dq_eval_perplexity against a tiny llama2.c model built at start-up
 * (dim 8, 1 layer, 16 tokens), so the whole reader runs for each input. A
 * result must be finite when the call succeeds.
 * With DQ_FUZZ_KLD_SEEDS=DIR set it writes a few base files of that model
 * (the committed seeds) into DIR and exits. */
#include "fuzz_util.h"

#include <math.h>

#include "eval/perplexity.h"
#include "model/model.h"

enum { DIM = 8, HIDDEN = 16, LAYERS = 1, HEADS = 2, VOCAB = 16, SEQ = 16 };

static dq_model *model;

/* The llama2.c file: header, then every tensor (freq_cis included), with
 * small deterministic weights and unit norms. */
static void write_model(int fd) {
    int32_t h[7] = {DIM, HIDDEN, LAYERS, HEADS, HEADS, VOCAB, SEQ};
    if (write(fd, h, sizeof h) != (ssize_t)sizeof h) abort();
    const size_t sizes[] = {VOCAB * DIM, DIM, DIM * DIM, DIM * DIM, DIM * DIM, DIM * DIM, DIM,
                            DIM * HIDDEN, HIDDEN * DIM, DIM * HIDDEN, DIM, SEQ * (DIM / HEADS)};
    const bool norm[] = {0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0};
    unsigned k = 0;
    for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++)
        for (size_t i = 0; i < sizes[t]; i++, k++) {
            float v = norm[t] ? 1.0f : 0.5f * sinf(0.7f * (float)k);
            if (write(fd, &v, 4) != 4) abort();
        }
}

static void write_seeds(const char *dir) {
    static const int ctx[] = {4, 8, 16};
    int32_t tokens[3 * SEQ];
    for (int i = 0; i < 3 * SEQ; i++) tokens[i] = (i * 7 + 3) % VOCAB;
    for (int k = 0; k < 3; k++) {
        char path[512];
        snprintf(path, sizeof path, "%s/seed-ctx%d", dir, ctx[k]);
        dq_ppl_opts o = {.ctx = ctx[k], .n_threads = 1, .save_logits = path};
        dq_ppl_result r;
        dq_error err = {0};
        if (dq_eval_perplexity(model, tokens, (size_t)2 * ctx[k] + 1, 1, &o, &r, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            abort();
        }
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    char path[64];
    int fd = memfd_create("model", 0);
    if (fd < 0) abort();
    write_model(fd);
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    dq_error err = {0};
    if (dq_load_llama2c(path, false, &model, &err)) {
        fprintf(stderr, "fuzz_kld: %s\n", err.msg);
        abort();
    }
    const char *seeds = getenv("DQ_FUZZ_KLD_SEEDS");
    if (seeds) {
        write_seeds(seeds);
        exit(0);
    }
    return 0; /* the model keeps fd mapped; it lives as long as the process */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    int fd = fz_memfd("kld", data, size, path);
    dq_ppl_opts o = {.ctx = 0, .n_threads = 1, .kld_base = path};
    dq_ppl_result r;
    dq_error err = {0};
    dq_status st = dq_eval_perplexity(model, NULL, 0, 1, &o, &r, &err);
    fz_say("kld", st, err.msg);
    if (st == DQ_OK &&
        !(isfinite(r.kld) && isfinite(r.ppl) && isfinite(r.base_ppl) && isfinite(r.kld_max))) {
        fprintf(stderr, "fuzz_kld: accepted %s but kld %g ppl %g base ppl %g\n", path, r.kld, r.ppl, r.base_ppl);
        abort();
    }
    close(fd);
    return 0;
}
