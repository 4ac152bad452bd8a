/* dashq quantize: calibrate block by block, quantize every linear layer with
 * the chosen method, write a DASH-Q packed checkpoint or (--format gguf) a
 * GGUF file in llama.cpp's block types, through dq_quantize (dashq.h). Per-
 * layer relative output errors go to stdout; the progress bar and notes to
 * stderr. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct {
    dq_common_opts c;
    dq_quantize_params p;
    const char *out;
    char options[512]; /* the method's options, from its flags: "act_order,percdamp=0.05" */
    dq_cli_bar bar;    /* p.progress reports to it */
} quant_opts;

static int usage_error(const char *msg, const char *arg) {
    fprintf(stderr, "dashq: error: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
    return DQ_EXIT_ERROR;
}

/* A method flag (--act-order, --percdamp X) as the option the method's row
 * reads ("act_order", "percdamp=X"); the library checks name and value. */
static bool add_option(quant_opts *o, const char *name, const char *value) {
    size_t n = strlen(o->options);
    int w = snprintf(o->options + n, sizeof o->options - n, "%s%s%s%s", n ? "," : "", name, value ? "=" : "",
                     value ? value : "");
    if (w < 0 || n + (size_t)w + 1 >= sizeof o->options) {
        fprintf(stderr, "dashq: error: too many method options: --%s\n", name);
        return false;
    }
    for (char *c = o->options + n; *c && *c != '='; c++) *c = *c == '-' ? '_' : *c; /* the name, not its value */
    return true;
}

static int parse(int argc, char **argv, quant_opts *o) {
    enum { O_TOK = 256, O_METHOD, O_BITS, O_GROUP, O_CALIB, O_NS, O_SL, O_SEED, O_METHOD_FLAG, O_METHOD_VALUE, O_HEAD,
           O_QUIET, O_FORMAT, O_TYPE, O_PURE, O_ROTATE, O_SMOOTH, O_ALPHA, O_SPECTRUM, O_HBETA, O_HSTEPS, O_ABITS, O_AGROUP,
           O_MEMB, O_TMPDIR, O_HDTYPE, O_RESUME };
    static const struct option longs[] = {
        {"tokenizer", required_argument, 0, O_TOK}, {"method", required_argument, 0, O_METHOD},
        {"bits", required_argument, 0, O_BITS},     {"group", required_argument, 0, O_GROUP},
        {"calib", required_argument, 0, O_CALIB},   {"nsamples", required_argument, 0, O_NS},
        {"seqlen", required_argument, 0, O_SL},     {"seed", required_argument, 0, O_SEED},
        /* the methods' own options: checked against the method's row (quant/methods.c) */
        {"sym", no_argument, 0, O_METHOD_FLAG},     {"act-order", no_argument, 0, O_METHOD_FLAG},
        {"mse", no_argument, 0, O_METHOD_FLAG},     {"percdamp", required_argument, 0, O_METHOD_VALUE},
        {"iters", required_argument, 0, O_METHOD_VALUE}, {"reweight", required_argument, 0, O_METHOD_VALUE},
        {"reweight-param", required_argument, 0, O_METHOD_VALUE}, {"eps", required_argument, 0, O_METHOD_VALUE},
        {"starts", required_argument, 0, O_METHOD_VALUE}, {"curvature", required_argument, 0, O_METHOD_VALUE},
        {"refresh", required_argument, 0, O_METHOD_VALUE},
        {"quantize-head", no_argument, 0, O_HEAD},  {"quiet", no_argument, 0, O_QUIET},
        {"format", required_argument, 0, O_FORMAT}, {"type", required_argument, 0, O_TYPE},
        {"pure", no_argument, 0, O_PURE},
        {"rotate", required_argument, 0, O_ROTATE}, {"smooth", required_argument, 0, O_SMOOTH},
        {"smooth-alpha", required_argument, 0, O_ALPHA}, {"spectrum", no_argument, 0, O_SPECTRUM},
        {"hero-beta", required_argument, 0, O_HBETA}, {"hero-steps", required_argument, 0, O_HSTEPS},
        {"act-bits", required_argument, 0, O_ABITS}, {"act-group", required_argument, 0, O_AGROUP},
        {"mem-budget", required_argument, 0, O_MEMB}, {"tmp-dir", required_argument, 0, O_TMPDIR},
        {"hidden-dtype", required_argument, 0, O_HDTYPE}, {"resume", no_argument, 0, O_RESUME},
        {"threads", required_argument, 0, 't'},     {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->p = dq_quantize_default_params();
    long bits = 4, group = 128, v = 0, ns = o->p.nsamples, sl = 0, seed = 0;
    bool bits_given = false;
    double x = 0; /* a float flag's value */
    int c, idx = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:t:", longs, &idx)) != -1) {
        switch (c) {
        case O_TOK: o->c.tokenizer = optarg; break;
        case O_METHOD: o->p.method = optarg; break;
        case O_BITS: if (!dq_cli_int("--bits", optarg, 2, 8, &bits)) return DQ_EXIT_ERROR; bits_given = true; break;
        case O_GROUP: if (!dq_cli_int("--group", optarg, -1, 128, &group)) return DQ_EXIT_ERROR; break;
        case O_CALIB: o->p.calib = optarg; break;
        case O_NS: if (!dq_cli_int("--nsamples", optarg, 2, 1024, &ns)) return DQ_EXIT_ERROR; break;
        case O_SL: if (!dq_cli_int("--seqlen", optarg, 8, 1 << 16, &sl)) return DQ_EXIT_ERROR; break;
        case O_SEED: if (!dq_cli_int("--seed", optarg, 0, 0x7fffffffL, &seed)) return DQ_EXIT_ERROR; break;
        case O_METHOD_FLAG:
        case O_METHOD_VALUE:
            if (!add_option(o, longs[idx].name, c == O_METHOD_VALUE ? optarg : NULL)) return DQ_EXIT_ERROR;
            break;
        case O_HEAD: o->p.quantize_head = true; break;
        case O_QUIET: o->c.quiet = true; break;
        case O_FORMAT: o->p.format = optarg; break;
        case O_TYPE: o->p.gguf_type = optarg; break;
        case O_PURE: o->p.pure = true; break;
        case O_ROTATE: o->p.rotate = optarg; break;
        case O_SPECTRUM: o->p.spectrum = true; break;
        case O_ABITS: if (!dq_cli_int("--act-bits", optarg, 0, 8, &v)) return DQ_EXIT_ERROR; o->p.act_bits = (int)v; break;
        case O_AGROUP: if (!dq_cli_int("--act-group", optarg, 0, 4096, &v)) return DQ_EXIT_ERROR; o->p.act_group = (int)v; break;
        case O_HBETA:
            if (!dq_cli_float("--hero-beta", optarg, 0.0001, 100, &x)) return DQ_EXIT_ERROR;
            o->p.hero_beta = (float)x;
            break;
        case O_HSTEPS: if (!dq_cli_int("--hero-steps", optarg, 1, 10000, &v)) return DQ_EXIT_ERROR; o->p.hero_steps = (int)v; break;
        case O_SMOOTH: o->p.smooth = optarg; break;
        case O_ALPHA:
            if (!dq_cli_float("--smooth-alpha", optarg, 0.01, 1, &x)) return DQ_EXIT_ERROR;
            o->p.smooth_alpha = (float)x;
            break;
        case O_MEMB: if (!dq_cli_size("--mem-budget", optarg, &o->p.mem_budget)) return DQ_EXIT_ERROR; break;
        case O_TMPDIR: o->p.tmp_dir = optarg; break;
        case O_HDTYPE: o->p.hidden_dtype = optarg; break;
        case O_RESUME: o->p.resume = true; break;
        case 'o': o->out = optarg; break;
        case 't': if (!dq_cli_int("-t", optarg, 1, 1024, &v)) return DQ_EXIT_ERROR; o->c.threads = (int)v; break;
        default: return DQ_EXIT_ERROR;
        }
    }
    if (optind != argc - 1) return usage_error("quantize takes exactly one MODEL", NULL);
    if (!o->out) return usage_error("quantize needs -o OUT (a folder to write)", NULL);
    bool gguf = !strcmp(o->p.format, "gguf");
    if (strcmp(o->p.format, "gguf") && strcmp(o->p.format, "packed"))
        return usage_error("--format takes packed or gguf", o->p.format);
    if (gguf && !o->p.gguf_type)
        return usage_error("--format gguf needs --type (one of these)", dq_quantize_gguf_types());
    if (gguf && bits_given)
        return usage_error("--bits does not apply to --format gguf: the --type names the bits (e.g. Q3_K_M, Q4_K_M)",
                           NULL);
    if (!gguf && (o->p.gguf_type || o->p.pure)) return usage_error("--type and --pure go with --format gguf", NULL);
    o->c.model = argv[optind];
    o->p.bits = (int)bits;
    o->p.group = (int)group;
    o->p.nsamples = (int)ns;
    o->p.seqlen = (int)sl;
    o->p.seed = (uint64_t)seed;
    o->p.options = o->options;
    o->p.n_threads = o->c.threads;
    o->p.progress = dq_cli_progress(&o->bar, o->c.quiet);
    dq_error err = {0}; /* method, options, calibration: before minutes of loading */
    return dq_quantize_check(&o->p, &err) ? dq_cli_error(&err) : 0;
}

static void report(const quant_opts *o, const dq_quantize_report *r) {
    bool gguf = !strcmp(o->p.format, "gguf");
    if (o->p.spectrum) printf("%-44s %8s %12s %12s %12s %12s %s\n", "layer", "solve_s", "rel_error", "h_lmax", "h_lmax/mean",
                              "h_cond", gguf ? "type" : "");
    else printf("%-44s %8s %12s %s\n", "layer", "solve_s", "rel_error", gguf ? "type" : "");
    for (int i = 0; i < r->n_tensors; i++) {
        const dq_tensor_report *t = &r->tensors[i];
        char mark[48];
        if (t->quant_in_features > t->in_features)
            snprintf(mark, sizeof mark, " (padded %d->%d)", t->in_features, t->quant_in_features);
        else snprintf(mark, sizeof mark, "%s", t->type);
        if (o->p.spectrum && t->h_lmean > 0)
            printf("%-44s %8.4f %12.6f %12.4g %12.4g %12.4g %s\n", t->name, t->seconds, t->rel_err, t->h_lmax,
                   t->h_lmax / t->h_lmean, t->h_cond, mark);
        else if (t->rel_err >= 0) printf("%-44s %8.4f %12.6f %s\n", t->name, t->seconds, t->rel_err, mark);
        else printf("%-44s %8.4f %12s %s\n", t->name, t->seconds, "n/a", mark);
    }
    if (gguf)
        printf("method %s, GGUF %s%s: mean relative error %.6f over %d layers\n", o->p.method, o->p.gguf_type,
               o->p.pure ? " (pure)" : "", r->mean_rel_err, r->n_tensors);
    else
        printf("method %s, %d-bit, group %d: mean relative error %.6f over %d layers\n", o->p.method, o->p.bits,
               o->p.group, r->mean_rel_err, r->n_tensors);
    if ((o->p.rotate && strcmp(o->p.rotate, "none")) || (o->p.smooth && strcmp(o->p.smooth, "none")))
        printf("transform: rotate %s, smooth %s: %.2f s (rotations orthogonal to %.1e)\n",
               o->p.rotate ? o->p.rotate : "none", o->p.smooth ? o->p.smooth : "none", r->t_transform, r->orth_err);
    if (r->hero_rot_err_ratio > 0)
        printf("hero rotation: RTN error in the Hessian norm x%.3f of the starting rotation's\n", r->hero_rot_err_ratio);
    if (r->hero_r2_err_ratio > 0)
        printf("hero head rotations: o_proj's RTN error in its Hessian norm x%.3f of the starting rotation's\n",
               r->hero_r2_err_ratio);
    if (r->split_kept > 0)
        printf("split rotation: %d massive residual channels (%.1f %% of the readers' input energy) and %d more "
               "for a Hadamard order left unrotated\n",
               r->split_massive, 100 * r->split_energy, r->split_kept - r->split_massive);
    if (r->hero_rot_loss_before > 0)
        printf("%s rotation: %s of the RTN-quantized model on the calibration windows %.4f -> %.4f\n", o->p.rotate,
               strcmp(o->p.rotate, "hero-kl") ? "cross-entropy" : "KL divergence from full precision",
               r->hero_rot_loss_before, r->hero_rot_loss_after);
    if (r->hero_rho_before > 0)
        printf("hero: RTN error in the Hessian norm x%.3f of the identity's, lambda_max/mean of the inputs' Hessians "
               "%.2f -> %.2f (means over %d inputs)\n", r->hero_err_ratio, r->hero_rho_before, r->hero_rho_after,
               r->hero_inputs);
    if (r->t_gradients > 0)
        printf("gradient pass: %.2f s, mean calibration loss %.4f\n", r->t_gradients, r->grad_loss);
    if (r->hidden_spilled)
        printf("calibration hidden states: %.1f MB in a spill file (past --mem-budget)\n", (double)r->hidden_bytes / 1e6);
    printf("time: forward %.2f s, statistics %.2f s, solve %.2f s, total %.2f s\n", r->t_forward, r->t_stats,
           r->t_solve, r->t_total);
    printf("wrote %s (%.2f MiB)\n", o->out, (double)r->bytes_written / (1 << 20));
}

/* Under mpirun every rank runs this with the same arguments (dq_comm_init
 * joins them); rank 0 alone shows progress and the report. A rank that
 * cannot load its inputs ends the whole job (the others would wait). */
int dq_cmd_quantize(int argc, char **argv) {
    dq_error err = {0};
    dq_comm *comm = NULL;
    if (dq_comm_init(&argc, &argv, &comm, &err)) return dq_cli_error(&err);
    int rank = dq_comm_rank(comm), size = dq_comm_size(comm);
    quant_opts o;
    int rc = parse(argc, argv, &o);
    if (rc) {
        dq_comm_finalize(comm);
        return rc;
    }
    o.p.comm = comm;
    if (rank > 0) o.p.progress = (dq_progress){0};
    dq_model *m;
    dq_tokenizer *t;
    o.c.lazy = true; /* weights stay in the file until their block (issue #15) */
    if ((rc = dq_cli_load(&o.c, &m, &t))) {
        if (size > 1) fprintf(stderr, "dashq: rank %d of %d stops the job\n", rank, size), dq_comm_abort(comm, rc);
        dq_comm_finalize(comm);
        return rc;
    }
    dq_quantize_report r;
    dq_status st = dq_quantize(m, t, o.out, &o.p, &r, &err); /* every rank returns the same status */
    dq_cli_bar_end(&o.bar);
    if (st && rank == 0) rc = dq_cli_error(&err);
    else if (st) rc = DQ_EXIT_ERROR;
    else if (rank == 0) report(&o, &r);
    if (!st && rank == 0 && size > 1)
        printf("ranks: %d; rank 0 sent %.1f MB to the others (%.1f MB a block)\n", size,
               (double)dq_comm_bytes_sent(comm) / 1e6, (double)dq_comm_bytes_sent(comm) / 1e6 / dq_model_config(m)->n_layers);
    dq_quantize_report_free(&r);
    dq_tokenizer_free(t);
    dq_model_free(m);
    dq_comm_finalize(comm);
    return rc;
}
