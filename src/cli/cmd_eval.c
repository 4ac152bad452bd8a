#define _POSIX_C_SOURCE 200809L
/* dashq eval: perplexity over a text file, optionally the KL divergence to a
 * base model's saved distributions (last stdout line "perplexity: X"), and/or
 * zero-shot tasks scored the lm-evaluation-harness way. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct {
    dq_common_opts c;
    const char *ppl_file;
    dq_perplexity_params p;
    const char *tasks, *data_dir, *items;
    long limit;
    bool no_bos;
    long act_bits, act_group; /* -1: as the model says */
    dq_cli_bar bar; /* o->p.progress reports to it */
} eval_opts;

static int parse(int argc, char **argv, eval_opts *o) {
    enum {
        O_TOK = 256,
        O_PPL,
        O_CTX,
        O_LLAMACPP,
        O_SAVE,
        O_KLD,
        O_CHUNKS,
        O_JSON,
        O_QUIET,
        O_TASKS,
        O_LIMIT,
        O_DATA,
        O_NOBOS,
        O_ITEMS,
        O_ABITS,
        O_AGROUP,
        O_MEMB,
        O_TMPDIR
    };
    static const struct option longs[] = {
        {"tokenizer", required_argument, 0, O_TOK}, {"ppl", required_argument, 0, O_PPL},
        {"ctx", required_argument, 0, O_CTX},       {"llamacpp-compatible", no_argument, 0, O_LLAMACPP},
        {"save-logits", required_argument, 0, O_SAVE}, {"kld", required_argument, 0, O_KLD},
        {"chunks", required_argument, 0, O_CHUNKS}, {"json", no_argument, 0, O_JSON},
        {"quiet", no_argument, 0, O_QUIET},         {"threads", required_argument, 0, 't'},
        {"tasks", required_argument, 0, O_TASKS},   {"limit", required_argument, 0, O_LIMIT},
        {"data-dir", required_argument, 0, O_DATA}, {"no-bos", no_argument, 0, O_NOBOS},
        {"items", required_argument, 0, O_ITEMS},   {"act-bits", required_argument, 0, O_ABITS},
        {"act-group", required_argument, 0, O_AGROUP}, {"mem-budget", required_argument, 0, O_MEMB},
        {"tmp-dir", required_argument, 0, O_TMPDIR},
        {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->act_bits = o->act_group = -1;
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
        case O_CHUNKS:
            if (!dq_cli_int("--chunks", optarg, 1, 1 << 30, &v)) return DQ_EXIT_ERROR;
            o->p.max_windows = (int)v;
            break;
        case O_JSON: o->c.json = true; break;
        case O_QUIET: o->c.quiet = true; break;
        case 't': if (!dq_cli_int("-t", optarg, 1, 1024, &v)) return DQ_EXIT_ERROR; o->c.threads = (int)v; break;
        case O_TASKS: o->tasks = optarg; break;
        case O_MEMB: if (!dq_cli_size("--mem-budget", optarg, &o->p.mem_budget)) return DQ_EXIT_ERROR; break;
        case O_TMPDIR: o->p.tmp_dir = optarg; break;
        case O_LIMIT: if (!dq_cli_int("--limit", optarg, 1, 1L << 40, &o->limit)) return DQ_EXIT_ERROR; break;
        case O_DATA: o->data_dir = optarg; break;
        case O_NOBOS: o->no_bos = true; break;
        case O_ITEMS: o->items = optarg; break;
        case O_ABITS: if (!dq_cli_int("--act-bits", optarg, 0, 8, &o->act_bits)) return DQ_EXIT_ERROR; break;
        case O_AGROUP: if (!dq_cli_int("--act-group", optarg, 0, 4096, &o->act_group)) return DQ_EXIT_ERROR; break;
        default: return DQ_EXIT_ERROR;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "dashq: error: eval takes exactly one MODEL\n");
        return DQ_EXIT_ERROR;
    }
    o->c.model = argv[optind];
    if (!o->ppl_file && !o->p.kld_base && !o->tasks) {
        fprintf(stderr, "dashq: error: eval needs --ppl FILE, --kld BASE or --tasks LIST\n");
        return DQ_EXIT_ERROR;
    }
    if (o->p.save_logits && o->p.kld_base) {
        fprintf(stderr, "dashq: error: --save-logits and --kld are exclusive\n");
        return DQ_EXIT_ERROR;
    }
    o->p.n_threads = o->c.threads;
    o->p.progress = dq_cli_progress(&o->bar, o->c.quiet);
    return 0;
}

static void report(const eval_opts *o, const dq_perplexity_result *r) {
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

/* ---- zero-shot tasks ---------------------------------------------------------- */

static void print_task(const eval_opts *o, const dq_task_report *r) {
    double baseline = r->chance > r->majority ? r->chance : r->majority; /* the better blind guess */
    bool above = r->acc - baseline > 2 * r->acc_err;
    size_t skipped = r->n_unscored + r->n_malformed;
    if (o->c.json) {
        printf("{\"task\": \"%s\", \"n\": %zu, \"skipped\": %zu, \"acc\": %.6f, \"acc_stderr\": %.6f", r->task, r->n,
               skipped, r->acc, r->acc_err);
        if (r->has_acc_norm) printf(", \"acc_norm\": %.6f, \"acc_norm_stderr\": %.6f", r->acc_norm, r->acc_norm_err);
        if (r->has_ppl) printf(", \"perplexity\": %.6f, \"perplexity_stderr\": %.6f", r->ppl, r->ppl_err);
        else printf(", \"chance\": %.6f, \"majority\": %.6f", r->chance, r->majority);
        printf(", \"tokens\": %zu, \"seconds\": %.3f}\n", r->n_forwarded, r->seconds);
        return;
    }
    printf("%-14s n %5zu  acc %.4f +/- %.4f", r->task, r->n, r->acc, r->acc_err);
    if (r->has_acc_norm) printf("  acc_norm %.4f +/- %.4f", r->acc_norm, r->acc_norm_err);
    if (r->has_ppl) printf("  perplexity %.2f +/- %.2f", r->ppl, r->ppl_err);
    else printf("  chance %.4f majority %.4f%s", r->chance, r->majority, above ? "" : "  (not above chance)");
    if (skipped) printf("  skipped %zu", skipped);
    printf("  [%zu tokens, %.1f s, %.0f tok/s]\n", r->n_forwarded, r->seconds,
           r->seconds > 0 ? (double)r->n_forwarded / r->seconds : 0);
}

/* Runs every task named in the comma-separated list; unknown names and
 * unreadable files are reported and skipped, the others still run. */
static int run_tasks(eval_opts *o, const dq_model *m, const dq_tokenizer *t) {
    const char *inputs[] = {o->c.model, o->ppl_file, o->p.kld_base};
    dq_tasks_params tp = {.data_dir = o->data_dir, .limit = (size_t)o->limit, .no_bos = o->no_bos,
                          .items_path = o->items, .inputs = inputs, .n_inputs = 3, .n_threads = o->c.threads,
                          .progress = o->p.progress};
    dq_task_runner *run;
    dq_error err = {0};
    if (dq_task_runner_new(m, t, &tp, &run, &err)) return dq_cli_error(&err);
    char list[1024], skipped[1024] = "";
    snprintf(list, sizeof list, "%s", o->tasks);
    int n_bad = 0;
    for (char *save, *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        dq_task_report r;
        err = (dq_error){0};
        dq_status st = dq_task_run(run, name, &r, &err);
        dq_cli_bar_end(&o->bar);
        if (st) {
            fprintf(stderr, "dashq: error: %s: %s (task skipped)\n", name, err.msg);
            n_bad++;
            size_t used = strlen(skipped);
            snprintf(skipped + used, sizeof skipped - used, "%s%s", used ? ", " : "", name);
            continue;
        }
        if (r.n_unscored)
            fprintf(stderr, "dashq: warning: %s: %zu items not scored, first: %s\n", name, r.n_unscored,
                    r.first_unscored);
        print_task(o, &r);
    }
    if (dq_task_runner_free(run, &err)) fprintf(stderr, "dashq: error: --items: %s\n", err.msg), n_bad++;
    if (n_bad) fprintf(stderr, "dashq: %d task(s) skipped: %s\n", n_bad, skipped);
    return n_bad ? DQ_EXIT_ERROR : 0;
}

/* A text is tokenized as it is read and scored a window at a time, so memory
 * follows the window, not the file; a KLD evaluation takes its tokens from
 * the base file. */
static int run_perplexity(eval_opts *o, dq_model *m, const dq_tokenizer *t) {
    dq_perplexity_result r;
    dq_error err = {0};
    dq_status st = dq_perplexity(m, t, o->ppl_file, &o->p, &r, &err);
    dq_cli_bar_end(&o->bar);
    if (st) return dq_cli_error(&err);
    report(o, &r);
    return 0;
}

int dq_cmd_eval(int argc, char **argv) {
    eval_opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc;
    dq_model *m;
    dq_tokenizer *t;
    o.c.lazy = !o.tasks; /* perplexity alone: a model larger than the budget runs block by block */
    if ((rc = dq_cli_load(&o.c, &m, &t))) return rc;
    if (o.act_bits >= 0 || o.act_group >= 0) { /* overrides what a packed checkpoint records */
        const dq_config *mc = dq_model_config(m);
        dq_error err = {0};
        if (dq_model_set_act_quant(m, o.act_bits >= 0 ? (int)o.act_bits : mc->act_bits,
                                   o.act_group >= 0 ? (int)o.act_group : mc->act_group, &err)) {
            dq_model_free(m);
            dq_tokenizer_free(t);
            return dq_cli_error(&err);
        }
    }
    if (o.ppl_file || o.p.kld_base) rc = run_perplexity(&o, m, t);
    if (!rc && o.tasks) rc = run_tasks(&o, m, t);
    dq_tokenizer_free(t);
    dq_model_free(m);
    return rc;
}
