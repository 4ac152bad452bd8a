/* dashq bench: prompt-processing and generation throughput, measured the way
 * llama-bench measures them (pp: one batch of P tokens from an empty cache;
 * tg: N single-token steps), so the two can be compared in one run. */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cli.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Tokens per second of one run; pp when n_prompt > 0, else tg of n_gen tokens. */
static double run_once(const dq_model *m, int threads, int n_prompt, int n_gen, dq_error *err) {
    int vocab = dq_model_config(m)->vocab_size, n_ctx = n_prompt + n_gen + 1;
    dq_session *s;
    if (dq_session_new(m, n_ctx, n_prompt > 0 ? n_prompt : 1, threads, &s, err)) return -1;
    int32_t *toks = malloc((size_t)n_ctx * sizeof *toks);
    for (int i = 0; i < n_ctx; i++) toks[i] = (int32_t)((i * 7919 + 1) % vocab);
    const float *logits;
    double t0 = now(), rate = -1;
    bool ok = true;
    if (n_prompt > 0) {
        ok = dq_forward(s, toks, n_prompt, 0, false, &logits, err) == DQ_OK;
        if (ok) rate = n_prompt / (now() - t0);
    } else {
        for (int i = 0; ok && i < n_gen; i++) ok = dq_forward(s, toks + i, 1, i, false, &logits, err) == DQ_OK;
        if (ok) rate = n_gen / (now() - t0);
    }
    free(toks);
    dq_session_free(s);
    return rate;
}

static int measure(const dq_model *m, const char *label, int threads, int p, int n, int reps, bool json) {
    dq_error err = {0};
    if (run_once(m, threads, p > 0 ? p : 0, p > 0 ? 0 : n, &err) < 0) return dq_cli_error(&err); /* warm-up */
    double sum = 0, sum2 = 0;
    for (int r = 0; r < reps; r++) {
        double v = run_once(m, threads, p > 0 ? p : 0, p > 0 ? 0 : n, &err);
        if (v < 0) return dq_cli_error(&err);
        sum += v, sum2 += v * v;
    }
    double mean = sum / reps, sd = reps > 1 ? sqrt(fmax(0, (sum2 - reps * mean * mean) / (reps - 1))) : 0;
    if (json)
        printf("{\"test\": \"%s%d\", \"threads\": %d, \"tokens_per_s\": %.3f, \"stddev\": %.3f}\n", label,
               p > 0 ? p : n, threads, mean, sd);
    else
        printf("%-8s %s%-6d threads %-3d %10.2f ± %.2f tokens/s\n", "dashq", label, p > 0 ? p : n, threads,
               mean, sd);
    return 0;
}

int dq_cmd_bench(int argc, char **argv) {
    static const struct option longs[] = {{"json", no_argument, 0, 'j'}, {0, 0, 0, 0}};
    long p = 512, n = 128, reps = 5, threads = 0;
    bool json = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "p:n:r:t:", longs, NULL)) != -1) {
        if (c == 'p' && !dq_cli_int("-p", optarg, 0, 1 << 16, &p)) return DQ_EXIT_ERROR;
        if (c == 'n' && !dq_cli_int("-n", optarg, 0, 1 << 16, &n)) return DQ_EXIT_ERROR;
        if (c == 'r' && !dq_cli_int("-r", optarg, 1, 1000, &reps)) return DQ_EXIT_ERROR;
        if (c == 't' && !dq_cli_int("-t", optarg, 1, 1024, &threads)) return DQ_EXIT_ERROR;
        if (c == 'j') json = true;
        if (c == '?') return DQ_EXIT_ERROR;
    }
    if (optind != argc - 1) {
        fprintf(stderr, "dashq: error: bench takes exactly one MODEL\n");
        return DQ_EXIT_ERROR;
    }
    dq_error err = {0};
    dq_model *m;
    if (dq_model_load(argv[optind], &m, &err)) return dq_cli_error(&err);
    int rc = 0;
    if (p > 0) rc = measure(m, "pp", (int)threads, (int)p, 0, (int)reps, json);
    if (!rc && n > 0) rc = measure(m, "tg", (int)threads, 0, (int)n, (int)reps, json);
    dq_model_free(m);
    return rc;
}
