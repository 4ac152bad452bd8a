/* dashq quantize: calibrate block by block, quantize every linear layer with
 * the chosen method, write a DASH-Q packed checkpoint or (--format gguf) a
 * GGUF file in llama.cpp's block types. Per-layer relative output errors go
 * to stdout; the progress bar to stderr. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "calib/pipeline.h"
#include "cli/cli.h"
#include "export/gguf_export.h"
#include "formats/dashq_packed.h"
#include "quant/methods.h"
#include "util/files.h"

typedef struct {
    dq_common_opts c;
    dq_pipeline_opts p;
    const char *calib, *out;
    long nsamples, seqlen, seed;
    bool gguf, pure;
    const char *type; /* llama.cpp type name, with --format gguf */
    dq_cli_bar bar;   /* p.progress reports to it */
} quant_opts;

static bool parse_reweight(const char *s, dq_reweight *r) {
    if (!strcmp(s, "none")) *r = DQ_REWEIGHT_NONE;
    else if (!strcmp(s, "huber")) *r = DQ_REWEIGHT_HUBER;
    else if (!strcmp(s, "power")) *r = DQ_REWEIGHT_POWER;
    else return false;
    return true;
}

static int usage_error(const char *msg, const char *arg) {
    fprintf(stderr, "dashq: error: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
    return DQ_EXIT_ERROR;
}

/* The method's row in DQ_METHODS[], by name; the message lists the table. */
static bool parse_method(const char *s, dq_method *m) {
    const dq_method_info *mi = dq_method_find(s);
    if (!mi) {
        fprintf(stderr, "dashq: error: unknown method %s (%s)\n", s, dq_method_names());
        return false;
    }
    *m = mi->method;
    return true;
}

static int parse(int argc, char **argv, quant_opts *o) {
    enum { O_TOK = 256, O_METHOD, O_BITS, O_GROUP, O_CALIB, O_NS, O_SL, O_SEED, O_SYM, O_ACT, O_DAMP, O_MSE,
           O_ITERS, O_RW, O_RWP, O_EPS, O_STARTS, O_HEAD, O_QUIET, O_FORMAT, O_TYPE, O_PURE };
    static const struct option longs[] = {
        {"tokenizer", required_argument, 0, O_TOK}, {"method", required_argument, 0, O_METHOD},
        {"bits", required_argument, 0, O_BITS},     {"group", required_argument, 0, O_GROUP},
        {"calib", required_argument, 0, O_CALIB},   {"nsamples", required_argument, 0, O_NS},
        {"seqlen", required_argument, 0, O_SL},     {"seed", required_argument, 0, O_SEED},
        {"sym", no_argument, 0, O_SYM},             {"act-order", no_argument, 0, O_ACT},
        {"percdamp", required_argument, 0, O_DAMP}, {"mse", no_argument, 0, O_MSE},
        {"iters", required_argument, 0, O_ITERS},   {"reweight", required_argument, 0, O_RW},
        {"reweight-param", required_argument, 0, O_RWP}, {"eps", required_argument, 0, O_EPS},
        {"starts", required_argument, 0, O_STARTS},
        {"quantize-head", no_argument, 0, O_HEAD},  {"quiet", no_argument, 0, O_QUIET},
        {"format", required_argument, 0, O_FORMAT}, {"type", required_argument, 0, O_TYPE},
        {"pure", no_argument, 0, O_PURE},
        {"threads", required_argument, 0, 't'},     {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    dq_method method = DQ_METHOD_DASHQ;
    long bits = 4, group = 128, v = 0, iters = -1, starts = 0;
    double d = 0;
    dq_quant_opts tune = dq_quant_defaults(DQ_METHOD_DASHQ, 4, 128);
    bool sym = false, act = false, mse = false, bits_given = false;
    o->nsamples = 128;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:t:", longs, NULL)) != -1) {
        switch (c) {
        case O_TOK: o->c.tokenizer = optarg; break;
        case O_METHOD: if (!parse_method(optarg, &method)) return DQ_EXIT_ERROR; break;
        case O_BITS: if (!dq_cli_int("--bits", optarg, 2, 8, &bits)) return DQ_EXIT_ERROR; bits_given = true; break;
        case O_GROUP: if (!dq_cli_int("--group", optarg, -1, 128, &group)) return DQ_EXIT_ERROR; break;
        case O_CALIB: o->calib = optarg; break;
        case O_NS: if (!dq_cli_int("--nsamples", optarg, 2, 1024, &o->nsamples)) return DQ_EXIT_ERROR; break;
        case O_SL: if (!dq_cli_int("--seqlen", optarg, 8, 1 << 16, &o->seqlen)) return DQ_EXIT_ERROR; break;
        case O_SEED: if (!dq_cli_int("--seed", optarg, 0, 0x7fffffffL, &o->seed)) return DQ_EXIT_ERROR; break;
        case O_SYM: sym = true; break;
        case O_ACT: act = true; break;
        case O_MSE: mse = true; break;
        case O_DAMP: if (!dq_cli_float("--percdamp", optarg, 0, 10, &d)) return DQ_EXIT_ERROR; tune.percdamp = (float)d; break;
        case O_ITERS: if (!dq_cli_int("--iters", optarg, 0, 1000, &iters)) return DQ_EXIT_ERROR; break;
        case O_RW: if (!parse_reweight(optarg, &tune.reweight)) return usage_error("--reweight takes none, huber or power", optarg); break;
        case O_RWP: if (!dq_cli_float("--reweight-param", optarg, 0, 100, &d)) return DQ_EXIT_ERROR; tune.reweight_param = (float)d; break;
        case O_EPS: if (!dq_cli_float("--eps", optarg, 0, 1, &d)) return DQ_EXIT_ERROR; tune.eps = (float)d; break;
        case O_STARTS: if (!dq_cli_int("--starts", optarg, 1, 64, &starts)) return DQ_EXIT_ERROR; break;
        case O_HEAD: o->p.quantize_head = true; break;
        case O_QUIET: o->c.quiet = true; break;
        case O_FORMAT:
            if (strcmp(optarg, "gguf") && strcmp(optarg, "packed")) return usage_error("--format takes packed or gguf", optarg);
            o->gguf = !strcmp(optarg, "gguf");
            break;
        case O_TYPE: o->type = optarg; break;
        case O_PURE: o->pure = true; break;
        case 'o': o->out = optarg; break;
        case 't': if (!dq_cli_int("-t", optarg, 1, 1024, &v)) return DQ_EXIT_ERROR; o->c.threads = (int)v; break;
        default: return DQ_EXIT_ERROR;
        }
    }
    if (optind != argc - 1) return usage_error("quantize takes exactly one MODEL", NULL);
    if (!o->out) return usage_error("quantize needs -o OUT (a folder to write)", NULL);
    if (!o->calib && dq_method_of(method)->stat != DQ_STAT_NONE) /* its statistic comes from calibration text */
        return usage_error("--calib FILE is required for method", dq_method_name(method));
    if (o->gguf && !o->type) return usage_error("--format gguf needs --type (one of these)", dq_type_plan_names());
    if (o->gguf && bits_given)
        return usage_error("--bits does not apply to --format gguf: the --type names the bits (e.g. Q3_K_M, Q4_K_M)", NULL);
    if (!o->gguf && (o->type || o->pure)) return usage_error("--type and --pure go with --format gguf", NULL);
    o->c.model = argv[optind];
    dq_quant_opts q = dq_quant_defaults(method, (int)bits, (int)group);
    q.sym = sym, q.act_order = act, q.mse = mse;
    q.percdamp = tune.percdamp, q.reweight = tune.reweight, q.reweight_param = tune.reweight_param, q.eps = tune.eps;
    if (iters >= 0) q.max_iters = (int)iters;
    q.starts = (int)starts;
    o->p.q = q;
    o->p.n_threads = o->c.threads;
    o->p.progress = dq_cli_progress(&o->bar, o->c.quiet);
    return 0;
}

static const char *type_of(const dq_qlayer *l) {
    const dq_ggml_type_info *i = l->ggml_type >= 0 ? dq_ggml_info((uint32_t)l->ggml_type) : NULL;
    return i ? i->name : "";
}

static void report(const quant_opts *o, const dq_quant_result *r) {
    printf("%-44s %8s %12s %s\n", "layer", "solve_s", "rel_error", o->gguf ? "type" : "");
    double sum = 0;
    int padded = 0;
    for (int i = 0; i < r->n; i++) padded += r->layers[i].pad > 0;
    if (padded && !o->c.quiet)
        fprintf(stderr, "dashq: note: group %d does not divide the input width of %d layers; their rows are padded "
                        "with zero weights to a multiple of it (quant_in_features in dashq_config.json). The official "
                        "Python loader's forward pass does not drop the padding: for it, pick a group that divides "
                        "every width\n",
                o->p.q.group, padded);
    for (int i = 0; i < r->n; i++) {
        char padmark[48];
        snprintf(padmark, sizeof padmark, " (padded %d->%d)", r->layers[i].qt.in_cols, r->layers[i].qt.cols);
        const char *mark = r->layers[i].pad ? padmark : type_of(&r->layers[i]);
        if (o->calib && r->layers[i].kind != DQ_KIND_EMBED)
            printf("%-44s %8.4f %12.6f %s\n", r->layers[i].name, r->layers[i].seconds, r->layers[i].rel_err, mark);
        else printf("%-44s %8.4f %12s %s\n", r->layers[i].name, r->layers[i].seconds, "n/a", mark);
        sum += r->layers[i].rel_err;
    }
    if (o->gguf)
        printf("method %s, GGUF %s%s: mean relative error %.6f over %d layers\n", dq_method_name(o->p.q.method),
               o->type, o->pure ? " (pure)" : "", r->n ? sum / r->n : 0, r->n);
    else
        printf("method %s, %d-bit, group %d: mean relative error %.6f over %d layers\n", dq_method_name(o->p.q.method),
               o->p.q.bits, o->p.q.group, r->n ? sum / r->n : 0, r->n);
    printf("time: forward %.2f s, statistics %.2f s, solve %.2f s, total %.2f s\n", r->t_forward, r->t_stats,
           r->t_solve, r->t_total);
    struct stat sb;
    if (o->gguf && !stat(o->out, &sb)) printf("wrote %s (%.2f MiB)\n", o->out, (double)sb.st_size / (1 << 20));
    else printf("wrote %s\n", o->out);
}

static dq_status write_output(const quant_opts *o, dq_model *m, const dq_tokenizer *t, const dq_quant_result *r,
                              const dq_calib_set *cs, dq_error *err) {
    if (o->gguf) {
        dq_gguf_export_opts g = {.type = DQ_GGML_F16, .quant = r, .file_type = o->p.plan->file_type};
        return dq_export_gguf(o->out, m, t, &g, err);
    }
    dq_packed_info info = {.method = dq_method_name(o->p.q.method), .bits = o->p.q.bits, .group = o->p.q.group,
                           .nsamples = o->calib ? cs->n : 0, .seqlen = o->calib ? cs->len : 0,
                           .seed = (uint64_t)o->seed, .calib_path = o->calib, .tokenizer_path = dq_tokenizer_path(t),
                           .base_model = o->c.model, .tokenizer = t};
    return dq_write_packed(o->out, m, r, &info, err);
}

static int run(quant_opts *o, dq_model *m, dq_tokenizer *t) {
    dq_error err = {0};
    dq_calib_set cs = {0};
    int seqlen = o->seqlen ? (int)o->seqlen : (m->cfg.seq_len < 2048 ? m->cfg.seq_len : 2048);
    if (seqlen > m->cfg.seq_len)
        fprintf(stderr, "dashq: warning: --seqlen %d is beyond %s's training context of %d tokens: calibration "
                "activations past it are extrapolated\n", seqlen, o->c.model, m->cfg.seq_len);
    if (o->calib) {
        if (dq_calib_load(o->calib, t, (int)o->nsamples, seqlen, (uint64_t)o->seed, &cs, &err)) return dq_cli_error(&err);
        if (cs.overlapping)
            fprintf(stderr, "dashq: warning: %s has %zu tokens, fewer than %ld x %d: windows overlap (drawn with replacement)\n",
                    o->calib, cs.text_tokens, o->nsamples, seqlen);
    } else { /* RTN needs no data: a 2-token dummy window, errors reported as n/a */
        cs.n = 1, cs.len = 2;
        cs.tokens = calloc(2, sizeof *cs.tokens);
    }
    dq_quant_result r;
    dq_type_plan plan = {0};
    int rc = 0;
    if (o->gguf) {
        bool calibrated = dq_method_of(o->p.q.method)->stat != DQ_STAT_NONE;
        if (dq_type_plan_make(o->type, o->pure, calibrated, &m->cfg, &plan, &err))
            rc = dq_cli_error(&err);
        else if (plan.n_fallback && !o->c.quiet)
            fprintf(stderr, "dashq: note: %d tensors use llama.cpp's fallback type: their width is not a multiple of %s's block\n",
                    plan.n_fallback, o->type);
        o->p.plan = &plan;
    }
    memset(&r, 0, sizeof r);
    if (!rc && dq_quantize_model(m, &cs, &o->p, &r, &err)) { /* numeric failures name a tensor; say which model */
        dq_cli_bar_end(&o->bar);
        if (err.code == DQ_ERR_NUMERIC) fprintf(stderr, "dashq: error: %s: %s\n", o->c.model, err.msg), rc = DQ_EXIT_ERROR;
        else rc = dq_cli_error(&err);
    }
    if (!rc && write_output(o, m, t, &r, &cs, &err)) rc = dq_cli_error(&err);
    if (!rc) report(o, &r);
    dq_quant_result_free(&r); /* always valid after dq_quantize_model, also when writing failed */
    dq_type_plan_free(&plan);
    dq_calib_free(&cs);
    return rc;
}

int dq_cmd_quantize(int argc, char **argv) {
    quant_opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc;
    dq_model *m;
    dq_tokenizer *t;
    if ((rc = dq_cli_load(&o.c, &m, &t))) return rc;
    dq_error err = {0};
    /* before minutes of work: the output must not destroy an input or an unrelated file */
    const char *inputs[] = {o.c.model, m->path, dq_tokenizer_path(t), o.calib};
    if (dq_check_output(o.out, o.gguf ? DQ_OUT_GGUF : DQ_OUT_PACKED_DIR, inputs, 4, &err)) rc = dq_cli_error(&err);
    if (!rc && !o.gguf && dq_packed_check(m, &err)) rc = dq_cli_error(&err);
    if (!rc) rc = run(&o, m, t);
    dq_tokenizer_free(t);
    dq_model_free(m);
    return rc;
}
