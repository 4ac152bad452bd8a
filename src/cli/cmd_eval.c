/* dashq eval: perplexity over a text file, optionally the KL divergence to a
 * base model's saved distributions. The last stdout line is "perplexity: X". */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "eval/perplexity.h"
#include "util/mapped_file.h"

typedef struct {
    dq_common_opts c;
    const char *ppl_file;
    dq_ppl_opts p;
} eval_opts;

static int parse(int argc, char **argv, eval_opts *o) {
    enum { O_TOK = 256, O_PPL, O_CTX, O_LLAMACPP, O_SAVE, O_KLD, O_CHUNKS, O_JSON, O_QUIET };
    static const struct option longs[] = {
        {"tokenizer", required_argument, 0, O_TOK}, {"ppl", required_argument, 0, O_PPL},
        {"ctx", required_argument, 0, O_CTX},       {"llamacpp-compatible", no_argument, 0, O_LLAMACPP},
        {"save-logits", required_argument, 0, O_SAVE}, {"kld", required_argument, 0, O_KLD},
        {"chunks", required_argument, 0, O_CHUNKS}, {"json", no_argument, 0, O_JSON},
        {"quiet", no_argument, 0, O_QUIET},         {"threads", required_argument, 0, 't'},
        {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    long v = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "t:c:f:", longs, NULL)) != -1) {
        switch (c) {
        case O_TOK: o->c.tokenizer = optarg; break;
        case 'f':
        case O_PPL: o->ppl_file = optarg; break;
        case 'c':
        case O_CTX: if (!dq_cli_int("--ctx", optarg, 2, 1 << 20, &v)) return DQ_EXIT_ERROR; o->p.ctx = (int)v; break;
        case O_LLAMACPP: o->p.llamacpp = true; break;
        case O_SAVE: o->p.save_logits = optarg; break;
        case O_KLD: o->p.kld_base = optarg; break;
        case O_CHUNKS: if (!dq_cli_int("--chunks", optarg, 1, 1 << 30, &v)) return DQ_EXIT_ERROR; o->p.max_windows = (int)v; break;
        case O_JSON: o->c.json = true; break;
        case O_QUIET: o->c.quiet = true; break;
        case 't': if (!dq_cli_int("-t", optarg, 1, 1024, &v)) return DQ_EXIT_ERROR; o->c.threads = (int)v; break;
        default: return DQ_EXIT_ERROR;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "dashq: error: eval takes exactly one MODEL\n");
        return DQ_EXIT_ERROR;
    }
    o->c.model = argv[optind];
    if (!o->ppl_file && !o->p.kld_base) {
        fprintf(stderr, "dashq: error: eval needs --ppl FILE (or --kld BASE)\n");
        return DQ_EXIT_ERROR;
    }
    if (o->p.save_logits && o->p.kld_base) {
        fprintf(stderr, "dashq: error: --save-logits and --kld are exclusive\n");
        return DQ_EXIT_ERROR;
    }
    o->p.n_threads = o->c.threads;
    o->p.quiet = o->c.quiet;
    return 0;
}

static int tokenize_file(const char *path, const dq_tokenizer *t, int32_t **ids, size_t *n) {
    dq_error err = {0};
    char *text;
    size_t len;
    if (dq_read_file(path, (size_t)1 << 32, &text, &len, &err)) return dq_cli_error(&err);
    if (len == 0) {
        free(text);
        fprintf(stderr, "dashq: error: %s: the text file is empty\n", path);
        return DQ_EXIT_ERROR;
    }
    dq_status st = dq_tokenize(t, text, len, dq_tokenizer_adds_bos(t), false, ids, n, &err);
    free(text);
    if (st) {
        fprintf(stderr, "dashq: error: %s: %s\n", path, err.msg);
        return DQ_EXIT_ERROR;
    }
    return 0;
}

static void report(const eval_opts *o, const dq_ppl_result *r) {
    const char *proto = o->p.llamacpp || o->p.kld_base || o->p.save_logits ? "llamacpp" : "gptq";
    if (o->c.json) {
        printf("{\"model\": \"%s\", \"protocol\": \"%s\", \"ctx\": %d, \"windows\": %d, \"scored\": %zu, "
               "\"nll\": %.6f, \"perplexity\": %.6f, \"perplexity_err\": %.6f",
               o->c.model, proto, r->ctx, r->n_windows, r->n_scored, r->nll, r->ppl, r->ppl_err);
        if (r->has_kld)
            printf(", \"kld\": %.8f, \"kld_err\": %.8f, \"kld_p99\": %.6f, \"kld_max\": %.6f, "
                   "\"same_top\": %.6f, \"same_top_err\": %.6f, \"base_perplexity\": %.6f",
                   r->kld, r->kld_err, r->kld_p99, r->kld_max, r->same_top, r->same_top_err, r->base_ppl);
        printf("}\n");
    }
    printf("protocol: %s, ctx %d, %d windows, %zu tokens scored\n", proto, r->ctx, r->n_windows, r->n_scored);
    if (r->has_kld) {
        printf("base perplexity: %.4f\n", r->base_ppl);
        printf("kld: %.6f +/- %.6f (p99 %.4f, max %.4f)\n", r->kld, r->kld_err, r->kld_p99, r->kld_max);
        printf("same top token: %.3f%% +/- %.3f%%\n", 100 * r->same_top, 100 * r->same_top_err);
    }
    printf("perplexity: %.4f +/- %.4f\n", r->ppl, r->ppl_err);
}

int dq_cmd_eval(int argc, char **argv) {
    eval_opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc;
    dq_model *m;
    dq_tokenizer *t;
    if ((rc = dq_cli_load(&o.c, &m, &t))) return rc;
    int32_t *ids = NULL;
    size_t n = 0;
    if (!o.p.kld_base) rc = tokenize_file(o.ppl_file, t, &ids, &n);
    if (!rc && o.p.ctx == 0) o.p.ctx = dq_model_config(m)->seq_len < 2048 ? dq_model_config(m)->seq_len : 2048;
    dq_ppl_result r;
    dq_error err = {0};
    if (!rc && dq_eval_perplexity(m, ids, n, dq_tokenizer_adds_bos(t) ? dq_tokenizer_bos(t) : -1, &o.p, &r, &err))
        rc = dq_cli_error(&err);
    if (!rc) report(&o, &r);
    free(ids);
    dq_tokenizer_free(t);
    dq_model_free(m);
    return rc;
}
