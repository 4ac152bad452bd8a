#define _POSIX_C_SOURCE 200809L
#include "api/resume.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/ggml_types.h"
#include "quant/grid.h"
#include "util/error.h"
#include "util/mapped_file.h"
#include "util/out_dir.h"

#define STATE_VERSION 2 /* 2: a packed checkpoint's partial is sharded like its input (52ebb56) */

uint64_t dq_resume_hash(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

uint64_t dq_resume_hash_file(uint64_t h, const char *path) {
    struct stat sb;
    if (!path) return dq_resume_hash(h, "", 1);
    h = dq_resume_hash(h, path, strlen(path) + 1);
    if (stat(path, &sb) != 0) return h;
    int64_t v[3] = {(int64_t)sb.st_size, (int64_t)sb.st_mtim.tv_sec, (int64_t)sb.st_mtim.tv_nsec};
    return dq_resume_hash(h, v, sizeof v);
}

bool dq_resume_exists(const char *out) {
    char dir[PATH_MAX];
    struct stat sb;
    return dq_path_fmt(dir, sizeof dir, NULL, "%s.resume", out) == DQ_OK && stat(dir, &sb) == 0;
}

/* ---- state.json ------------------------------------------------------------- */

static cJSON *layer_json(const dq_qlayer *l) {
    cJSON *o = cJSON_CreateObject();
    const dq_qtensor *t = &l->qt;
    cJSON_AddStringToObject(o, "name", l->name);
    cJSON_AddNumberToObject(o, "site", (double)(l->site - DQ_SITES));
    cJSON_AddNumberToObject(o, "layer", l->layer);
    cJSON_AddNumberToObject(o, "ggml_type", l->ggml_type);
    cJSON_AddNumberToObject(o, "grid", t->grid ? (double)t->grid->type : -1);
    cJSON_AddNumberToObject(o, "rel_err", l->rel_err); /* cJSON prints doubles to round-trip */
    cJSON_AddNumberToObject(o, "seconds", l->seconds);
    cJSON_AddNumberToObject(o, "pad", l->pad);
    cJSON_AddNumberToObject(o, "lmax", l->spectrum.lmax);
    cJSON_AddNumberToObject(o, "lmean", l->spectrum.lmean);
    cJSON_AddNumberToObject(o, "cond", l->spectrum.cond);
    int dims[6] = {t->rows, t->cols, t->group, t->bits, t->in_cols, t->groups_per_row};
    cJSON_AddItemToObject(o, "dims", cJSON_CreateIntArray(dims, 6));
    return o;
}

static double num(const cJSON *o, const char *k, bool *ok) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v)) *ok = false;
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static bool layer_from_json(const cJSON *o, dq_qlayer *l) {
    bool ok = true;
    memset(l, 0, sizeof *l);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name"), *dims = cJSON_GetObjectItemCaseSensitive(o, "dims");
    int site = (int)num(o, "site", &ok), grid = (int)num(o, "grid", &ok);
    if (!cJSON_IsString(name) || !cJSON_IsArray(dims) || cJSON_GetArraySize(dims) != 6 || site < 0 ||
        site >= DQ_SITE_COUNT)
        return false;
    snprintf(l->name, sizeof l->name, "%s", name->valuestring);
    l->site = &DQ_SITES[site];
    l->layer = (int)num(o, "layer", &ok);
    l->expert = -1;
    l->ggml_type = (int)num(o, "ggml_type", &ok);
    l->rel_err = num(o, "rel_err", &ok);
    l->seconds = num(o, "seconds", &ok);
    l->pad = (int)num(o, "pad", &ok);
    l->spectrum = (dq_spectrum){num(o, "lmax", &ok), num(o, "lmean", &ok), num(o, "cond", &ok)};
    int d[6];
    for (int i = 0; i < 6; i++) {
        const cJSON *v = cJSON_GetArrayItem(dims, i);
        if (!cJSON_IsNumber(v)) return false;
        d[i] = v->valueint;
    }
    dq_qtensor *t = &l->qt;
    t->rows = d[0], t->cols = d[1], t->group = d[2], t->bits = d[3], t->in_cols = d[4], t->groups_per_row = d[5];
    if (grid >= 0 && !(t->grid = dq_grid_of((dq_ggml_type)grid))) return false;
    return ok;
}

/* hidden-0/1.bin for one process; hidden-rR-0/1.bin for rank R of several */
static void paths(dq_resume *r, const char *out, bool gguf, const dq_comm *comm, dq_error *err, dq_status *st) {
    if (!*st) *st = dq_path_fmt(r->dir, sizeof r->dir, err, "%s.resume", out);
    if (!*st) *st = dq_path_fmt(r->state, sizeof r->state, err, "%s/state.json", r->dir);
    if (!*st) *st = dq_path_fmt(r->partial, sizeof r->partial, err, "%s/%s", r->dir, gguf ? "partial.gguf" : "partial");
    for (int i = 0; i < 2 && !*st; i++) {
        *st = dq_comm_size(comm) > 1
                  ? dq_path_fmt(r->hidden[i], sizeof r->hidden[i], err, "%s/hidden-r%d-%d.bin", r->dir,
                                dq_comm_rank(comm), i)
                  : dq_path_fmt(r->hidden[i], sizeof r->hidden[i], err, "%s/hidden-%d.bin", r->dir, i);
        r->hidden_files[i] = r->hidden[i];
    }
}

/* state.json's text into r; DQ_ERR_FORMAT for one that does not parse. */
static dq_status parse_state(dq_resume *r, const char *text, size_t n, uint64_t *fingerprint, dq_error *err) {
    cJSON *o = cJSON_ParseWithLength(text, n);
    const cJSON *fp = cJSON_GetObjectItemCaseSensitive(o, "fingerprint"),
                *layers = cJSON_GetObjectItemCaseSensitive(o, "layers");
    bool ok = o && cJSON_IsString(fp) && cJSON_IsArray(layers);
    ok = ok && num(o, "version", &ok) == STATE_VERSION;
    if (ok) {
        *fingerprint = strtoull(fp->valuestring, NULL, 16);
        r->blocks_done = (int)num(o, "blocks_done", &ok);
        r->hidden_cur = (int)num(o, "hidden_cur", &ok) & 1;
        r->n_done = cJSON_GetArraySize(layers);
        r->done = calloc((size_t)(r->n_done ? r->n_done : 1), sizeof *r->done);
        ok = ok && r->done;
        for (int i = 0; ok && i < r->n_done; i++) ok = layer_from_json(cJSON_GetArrayItem(layers, i), &r->done[i]);
    }
    cJSON_Delete(o);
    return ok ? DQ_OK
              : dq_fail(err, DQ_ERR_FORMAT, "%s: not a state dashq %s wrote (another version's?): remove %s to start "
                        "over", r->state, DQ_VERSION, r->dir);
}

/* Rank 0's state.json (empty: none) to every rank: the other ranks' machines
 * may not share its disk. */
static dq_status read_state(const dq_resume *r, const dq_comm *comm, char **text, size_t *n, dq_error *err) {
    struct stat sb;
    uint64_t len = 0;
    dq_status st = DQ_OK;
    *text = NULL, *n = 0;
    if (dq_comm_root(comm) && stat(r->state, &sb) == 0) st = dq_read_file(r->state, 64u << 20, text, n, err);
    len = *n;
    st = dq_comm_agree(comm, st, err);
    if (!st) st = dq_comm_bcast(comm, &len, sizeof len, 0, err);
    if (!st && !dq_comm_root(comm) && len && !(*text = calloc(len + 1, 1))) st = DQ_ERR_NOMEM;
    st = dq_comm_agree(comm, st ? dq_fail(err, st, "out of memory") : st, err);
    if (!st) st = dq_comm_bcast(comm, *text, len, 0, err);
    *n = len;
    return st;
}

dq_status dq_resume_open(dq_resume *r, const char *out, bool gguf, uint64_t fingerprint, const dq_comm *comm,
                         dq_error *err) {
    memset(r, 0, sizeof *r);
    r->fingerprint = fingerprint;
    dq_status st = DQ_OK;
    paths(r, out, gguf, comm, err, &st);
    if ((st = dq_comm_agree(comm, st, err))) return st;
    char *text = NULL;
    size_t n = 0;
    if ((st = read_state(r, comm, &text, &n, err))) return st;
    if (n) {
        uint64_t fp = 0;
        st = parse_state(r, text, n, &fp, err);
        free(text);
        if (!st && dq_comm_root(comm) && fp != fingerprint) /* other machines' copies have other mtimes */
            st = dq_fail(err, DQ_ERR_ARG,
                         "%s holds an interrupted run of another model, calibration or options (it finished %d "
                         "blocks): run that command again to finish it, or remove the folder",
                         r->dir, r->blocks_done);
        if (!st && r->blocks_done > 0) { /* this rank's hidden states must be where it left them */
            struct stat sb;
            for (int i = 0; i < 2 && !st; i++)
                if (stat(r->hidden[i], &sb) != 0)
                    st = dq_fail(err, DQ_ERR_IO, "%s: the interrupted run's hidden states are missing (%s): remove "
                                 "%s to start over", r->hidden[i], strerror(errno), r->dir);
        }
        if ((st = dq_comm_agree(comm, st, err)) || r->blocks_done > 0) return st;
    }
    free(r->done); /* nothing worth keeping: start over in a clean folder */
    r->done = NULL;
    r->n_done = r->blocks_done = r->hidden_cur = 0;
    if (dq_comm_root(comm)) {
        dq_resume_remove(r);
        if (mkdir(r->dir, 0777) != 0)
            st = dq_fail(err, DQ_ERR_IO, "%s: cannot create the resume folder: %s", r->dir, strerror(errno));
    }
    if ((st = dq_comm_agree(comm, st, err))) return st;
    if (!dq_comm_root(comm) && mkdir(r->dir, 0777) != 0 && errno != EEXIST) /* another machine's disk */
        st = dq_fail(err, DQ_ERR_IO, "%s: cannot create the resume folder: %s", r->dir, strerror(errno));
    return dq_comm_agree(comm, st, err);
}

dq_status dq_resume_save(dq_resume *r, int blocks_done, int hidden_cur, const dq_quant_result *res, dq_error *err) {
    cJSON *o = cJSON_CreateObject(), *layers = cJSON_AddArrayToObject(o, "layers");
    char fp[32];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)r->fingerprint);
    cJSON_AddNumberToObject(o, "version", STATE_VERSION);
    cJSON_AddStringToObject(o, "producer", "dashq " DQ_VERSION);
    cJSON_AddStringToObject(o, "fingerprint", fp);
    cJSON_AddNumberToObject(o, "blocks_done", blocks_done);
    cJSON_AddNumberToObject(o, "hidden_cur", hidden_cur);
    for (int i = 0; i < res->n; i++) cJSON_AddItemToArray(layers, layer_json(&res->layers[i]));
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text) return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", r->state);
    dq_out_file f;
    dq_status st = dq_out_open(&f, r->state, err);
    if (!st && fputs(text, f.f) < 0) fclose(f.f), f.f = NULL; /* commit reports it */
    free(text);
    if (!st) st = dq_out_commit(&f, err); /* fsync, then rename over the last state */
    if (!st) r->blocks_done = blocks_done, r->hidden_cur = hidden_cur;
    return st;
}

void dq_resume_remove(dq_resume *r) {
    if (!r->dir[0]) return;
    struct stat sb;
    if (stat(r->partial, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        dq_dir_remove_flat(r->partial); /* a packed checkpoint's folder */
        rmdir(r->partial);
    }
    dq_dir_remove_flat(r->dir);
    rmdir(r->dir);
}

void dq_resume_free(dq_resume *r) {
    free(r->done);
    r->done = NULL;
}
