/* The public zero-shot API: a runner holds the scorer (session, KV cache,
 * the optional per-item JSON lines file) and runs one task at a time, so a
 * caller can show each result as it comes (eval/tasks.c loads the files,
 * eval/zeroshot.c scores them the lm-evaluation-harness way). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>

#include "eval/tasks.h"
#include "eval/zeroshot.h"
#include "model/model.h"
#include "util/error.h"
#include "util/files.h"
#include "util/progress.h"

struct dq_task_runner {
    dq_scorer sc;
    dq_out_file items; /* written to a temporary, renamed into place by dq_task_runner_free */
    dq_tasks_params p;
    const char *data_dir;
};

static char task_names[256];

static void build_task_names(void) {
    for (int i = 0; i < DQ_TASK_COUNT; i++) {
        size_t n = strlen(task_names);
        snprintf(task_names + n, sizeof task_names - n, "%s%s", i ? ", " : "", dq_task_name((dq_task_id)i));
    }
}

const char *dq_task_names(void) { /* built once from the task table, whichever thread asks first */
    static once_flag once = ONCE_FLAG_INIT;
    call_once(&once, build_task_names);
    return task_names;
}

dq_status dq_task_runner_new(const dq_model *m, const dq_tokenizer *t, const dq_tasks_params *p, dq_task_runner **out,
                             dq_error *err) {
    *out = NULL;
    dq_task_runner *r = calloc(1, sizeof *r);
    if (!r) return dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    r->p = *p;
    r->data_dir = p->data_dir ? p->data_dir : getenv("DASHQ_DATA") ? getenv("DASHQ_DATA") : "../shared/data";
    dq_status st = dq_scorer_init(&r->sc, m, t, !p->no_bos && dq_tokenizer_adds_bos(t), p->n_threads, err);
    if (st) {
        free(r);
        return st;
    }
    if (p->items_path) { /* never over an input: the model, its tokenizer, the caller's others */
        const char *inputs[DQ_TASKS_MAX_INPUTS + 2] = {m->path, dq_tokenizer_path(t)};
        int n = 2;
        for (int i = 0; i < p->n_inputs && i < DQ_TASKS_MAX_INPUTS; i++) inputs[n++] = p->inputs[i];
        st = dq_check_output(p->items_path, DQ_OUT_FILE, inputs, (size_t)n, err);
        if (!st) st = dq_out_open(&r->items, p->items_path, err);
        if (st) {
            dq_scorer_free(&r->sc);
            free(r);
            return st;
        }
        r->sc.items = r->items.f;
    }
    *out = r;
    return DQ_OK;
}

static void fill(const dq_task_result *res, size_t load_skipped, double seconds, dq_task_report *rep) {
    rep->n = res->n;
    rep->n_unscored = res->n_skipped;
    rep->n_malformed = load_skipped;
    snprintf(rep->first_unscored, sizeof rep->first_unscored, "%s", res->first_skip);
    rep->acc = res->acc;
    rep->acc_err = res->acc_err;
    rep->has_acc_norm = res->has_acc_norm;
    rep->acc_norm = res->acc_norm;
    rep->acc_norm_err = res->acc_norm_err;
    rep->has_ppl = res->has_ppl;
    rep->ppl = res->ppl;
    rep->ppl_err = res->ppl_err;
    rep->chance = res->chance;
    rep->majority = res->majority;
    rep->n_forwarded = res->n_forwarded;
    rep->seconds = seconds;
}

dq_status dq_task_run(dq_task_runner *r, const char *task, dq_task_report *rep, dq_error *err) {
    memset(rep, 0, sizeof *rep);
    snprintf(rep->task, sizeof rep->task, "%s", task);
    dq_task_id id;
    if (!dq_task_lookup(task, &id))
        return dq_fail(err, DQ_ERR_ARG, "unknown task '%s' (known: %s)", task, dq_task_names());
    dq_task_set set;
    dq_status st = dq_task_load(id, r->data_dir, r->p.limit, &set, err);
    if (st) return st;
    for (size_t i = 0; i < set.n_warnings; i++) dq_progress_note(&r->p.progress, true, "%s", set.warnings[i]);
    if (set.n_skipped > set.n_warnings)
        dq_progress_note(&r->p.progress, true, "%s: %zu more malformed items skipped", set.path,
                         set.n_skipped - set.n_warnings);
    if (set.n_items == 0) /* an accuracy over nothing is not 0.0000 */
        st = dq_fail(err, DQ_ERR_FORMAT, "%s: no well-formed item (%zu malformed)", set.path, set.n_skipped);
    dq_task_result res;
    double t0 = dq_now();
    if (!st) st = dq_task_eval(&r->sc, &set, &r->p.progress, &res, err);
    if (!st && res.n == 0) /* every item failed to score */
        st = dq_fail(err, DQ_ERR_ARG, "%s: no item could be scored, first: %s", set.path, res.first_skip);
    if (!st) fill(&res, set.n_skipped, dq_now() - t0, rep);
    dq_task_set_free(&set);
    return st;
}

dq_status dq_task_runner_free(dq_task_runner *r, dq_error *err) {
    if (!r) return DQ_OK;
    dq_status st = r->sc.items ? dq_out_commit(&r->items, err) : DQ_OK;
    r->sc.items = NULL;
    dq_scorer_free(&r->sc);
    free(r);
    return st;
}
