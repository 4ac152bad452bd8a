#define _POSIX_C_SOURCE 200809L
/* Task files → harness requests (see tasks.h). Templates, as lm-evaluation-
 * harness writes them, rebuilt from llm-foundry's pre-formatted queries:
 *   piqa, arc_*  "Question: Q\nAnswer:"      + " " + choice     (acc, acc_norm)
 *   boolq        "P\nQuestion: Q?\nAnswer:"  + " no" | " yes"   (acc)
 *   winogrande   sentence up to the blank with each option + " " + the rest (acc)
 *   hellaswag    preprocess("label: ctx")    + " " + preprocess(ending) (acc, acc_norm)
 *   lambada      text without its last word  + " " + last word  (acc, perplexity) */
#include "eval/tasks.h"

#include <bzlib.h>
#include <cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/error.h"
#include "util/files.h"
#include "util/lines.h"
#include "util/mapped_file.h"

#define MAX_TASK_FILE ((size_t)1 << 30)

static const struct {
    const char *name, *file;
    bool acc_norm;
} TASKS[DQ_TASK_COUNT] = {
    [DQ_TASK_PIQA] = {"piqa", "llm-foundry-icl/piqa.jsonl", true},
    [DQ_TASK_ARC_EASY] = {"arc_easy", "llm-foundry-icl/arc_easy.jsonl", true},
    [DQ_TASK_ARC_CHALLENGE] = {"arc_challenge", "llm-foundry-icl/arc_challenge.jsonl", true},
    [DQ_TASK_HELLASWAG] = {"hellaswag", "hellaswag/hellaswag_val_full.txt", true},
    [DQ_TASK_WINOGRANDE] = {"winogrande", "llm-foundry-icl/winogrande.jsonl", false},
    [DQ_TASK_BOOLQ] = {"boolq", "llm-foundry-icl/boolq.jsonl", false},
    [DQ_TASK_LAMBADA] = {"lambada", "llm-foundry-icl/lambada_openai.jsonl", false},
};

const char *dq_task_name(dq_task_id id) { return id < DQ_TASK_COUNT ? TASKS[id].name : "?"; }
bool dq_task_has_acc_norm(dq_task_id id) { return id < DQ_TASK_COUNT && TASKS[id].acc_norm; }

bool dq_task_lookup(const char *name, dq_task_id *out) {
    for (int i = 0; i < DQ_TASK_COUNT; i++)
        if (!strcmp(name, TASKS[i].name)) return *out = (dq_task_id)i, true;
    if (!strcmp(name, "lambada_openai")) return *out = DQ_TASK_LAMBADA, true;
    return false;
}

/* ---- strings ---------------------------------------------------------------- */

static char *concat(const char *a, const char *b, const char *c) {
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *s = malloc(la + lb + lc + 1);
    if (!s) return NULL;
    memcpy(s, a, la), memcpy(s + la, b, lb), memcpy(s + la + lb, c, lc + 1);
    return s;
}

static bool starts_with(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* Python's str.replace(from, to): left to right, non-overlapping. */
static char *replace_all(const char *s, const char *from, const char *to) {
    size_t lf = strlen(from), lt = strlen(to), n = 0;
    for (const char *p = strstr(s, from); p; p = strstr(p + lf, from)) n++;
    char *out = malloc(strlen(s) + n * (lt > lf ? lt - lf : 0) + 1), *o = out;
    if (!out) return NULL;
    const char *p = s;
    for (const char *hit; (hit = strstr(p, from)); p = hit + lf) {
        memcpy(o, p, (size_t)(hit - p)), o += hit - p;
        memcpy(o, to, lt), o += lt;
    }
    strcpy(o, p);
    return out;
}

char *dq_hellaswag_preprocess(const char *text) {
    const char *b = text, *e = text + strlen(text);
    while (b < e && is_space(*b)) b++;
    while (e > b && is_space(e[-1])) e--;
    char *stripped = strndup(b, (size_t)(e - b));
    char *titled = stripped ? replace_all(stripped, " [title]", ". ") : NULL;
    free(stripped);
    if (!titled) return NULL;
    char *o = titled; /* re.sub(r"\[.*?\]", "", s): each '[' to the next ']' */
    for (const char *p = titled; *p;) {
        const char *close = *p == '[' ? strchr(p, ']') : NULL;
        if (close) p = close + 1;
        else *o++ = *p++;
    }
    *o = 0;
    char *out = replace_all(titled, "  ", " ");
    free(titled);
    return out;
}

/* ---- items ------------------------------------------------------------------ */

void dq_task_item_free(dq_task_item *it) {
    for (int i = 0; i < it->n_choices; i++) free(it->choices[i].context), free(it->choices[i].continuation);
    free(it->choices);
    memset(it, 0, sizeof *it);
}

static dq_status item_alloc(dq_task_item *it, int n, dq_error *err) {
    memset(it, 0, sizeof *it);
    it->choices = calloc((size_t)n, sizeof *it->choices);
    if (!it->choices) return dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    it->n_choices = n;
    return DQ_OK;
}

/* Characters as Python's len(str) counts them: UTF-8 bytes other than
 * continuation bytes (10xxxxxx). */
size_t dq_utf8_chars(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* Choice i: context + " " + text; acc_norm counts the text's characters. */
static dq_status set_choice(dq_task_item *it, int i, const char *context, const char *text, dq_error *err) {
    dq_task_choice *c = &it->choices[i];
    c->context = strdup(context);
    c->continuation = concat(" ", text, "");
    c->norm_chars = dq_utf8_chars(text);
    if (!c->context || !c->continuation) return dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    return DQ_OK;
}

static const char *json_string(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A non-empty array of non-empty strings (at most 16), with a valid gold index. */
static dq_status string_array(const cJSON *o, const char *key, int *n, dq_error *err) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsArray(a)) return dq_fail(err, DQ_ERR_FORMAT, "field \"%s\" is missing or not a list", key);
    *n = cJSON_GetArraySize(a);
    if (*n < 1 || *n > 16)
        return dq_fail(err, DQ_ERR_FORMAT, "field \"%s\" has %d entries (1 to 16 expected)", key, *n);
    for (int i = 0; i < *n; i++) {
        const cJSON *s = cJSON_GetArrayItem(a, i);
        if (!cJSON_IsString(s)) return dq_fail(err, DQ_ERR_FORMAT, "%s[%d] is not a string", key, i);
        if (!s->valuestring[0]) return dq_fail(err, DQ_ERR_FORMAT, "%s[%d] is empty", key, i);
    }
    return DQ_OK;
}

static dq_status gold_index(const cJSON *o, int n, int *gold, dq_error *err) {
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(o, "gold");
    if (!cJSON_IsNumber(g)) return dq_fail(err, DQ_ERR_FORMAT, "field \"gold\" is missing or not a number");
    double v = g->valuedouble; /* compared as a double: casting a huge one to int is undefined */
    if (!(v >= 0 && v < n) || v != floor(v))
        return dq_fail(err, DQ_ERR_FORMAT, "gold %g is not a choice index (0..%d)", v, n - 1);
    *gold = (int)v;
    return DQ_OK;
}

/* The harness's "Question: ...\nAnswer:" from llm-foundry's "Question: ...[\n]"
 * (BoolQ: "Passage: P\nQuestion: Q?" loses its "Passage: " label). */
static char *harness_prompt(dq_task_id id, const char *query) {
    if (id == DQ_TASK_BOOLQ && starts_with(query, "Passage: ")) query += strlen("Passage: ");
    size_t n = strlen(query);
    return concat(query, n && query[n - 1] == '\n' ? "" : "\n", "Answer:");
}

static dq_status parse_choices_item(dq_task_id id, const cJSON *o, dq_task_item *it, dq_error *err) {
    const char *query = json_string(o, "query");
    if (!query) return dq_fail(err, DQ_ERR_FORMAT, "field \"query\" is missing or not a string");
    int n;
    dq_status st = string_array(o, "choices", &n, err);
    if (st) return st;
    if (id == DQ_TASK_BOOLQ) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "choices");
        if (n != 2 || strcmp(cJSON_GetArrayItem(a, 0)->valuestring, "no") ||
            strcmp(cJSON_GetArrayItem(a, 1)->valuestring, "yes"))
            return dq_fail(err, DQ_ERR_FORMAT, "BoolQ choices must be [\"no\", \"yes\"]");
    }
    int gold = 0;
    if ((st = gold_index(o, n, &gold, err))) return st;
    char *prompt = harness_prompt(id, query);
    if (!prompt) return dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    if (!(st = item_alloc(it, n, err))) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "choices");
        for (int i = 0; i < n && !st; i++) st = set_choice(it, i, prompt, cJSON_GetArrayItem(a, i)->valuestring, err);
        it->gold = gold;
    }
    free(prompt);
    return st;
}

/* Partial scoring: each option fills the blank in the context; the words
 * after the blank are scored. acc_norm (unused by the harness) would count
 * the option's characters. */
static dq_status parse_winogrande(const cJSON *o, dq_task_item *it, dq_error *err) {
    const char *rest = json_string(o, "continuation");
    if (!rest || !rest[0]) return dq_fail(err, DQ_ERR_FORMAT, "field \"continuation\" is missing or empty");
    int n, gold = 0;
    dq_status st = string_array(o, "context_options", &n, err);
    if (st || (st = gold_index(o, n, &gold, err)) || (st = item_alloc(it, n, err))) return st;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "context_options");
    for (int i = 0; i < n && !st; i++) {
        const char *option = cJSON_GetArrayItem(a, i)->valuestring;
        st = set_choice(it, i, option, rest, err);
        if (!st) it->choices[i].norm_chars = dq_utf8_chars(option);
    }
    it->gold = gold;
    return st;
}

static dq_status parse_lambada(const cJSON *o, dq_task_item *it, dq_error *err) {
    const char *context = json_string(o, "context"), *word = json_string(o, "continuation");
    if (!context) return dq_fail(err, DQ_ERR_FORMAT, "field \"context\" is missing or not a string");
    if (!word || !word[0]) return dq_fail(err, DQ_ERR_FORMAT, "field \"continuation\" is missing or empty");
    dq_status st = item_alloc(it, 1, err);
    return st ? st : set_choice(it, 0, context, word, err);
}

dq_status dq_task_parse_json(dq_task_id id, const char *line, size_t len, dq_task_item *out, dq_error *err) {
    memset(out, 0, sizeof *out);
    if (id >= DQ_TASK_COUNT || id == DQ_TASK_HELLASWAG)
        return dq_fail(err, DQ_ERR_ARG, "%s is not a JSON-lines task", dq_task_name(id));
    cJSON *o = cJSON_ParseWithLength(line, len);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return dq_fail(err, DQ_ERR_FORMAT, "not a JSON object");
    }
    dq_status st = id == DQ_TASK_WINOGRANDE ? parse_winogrande(o, out, err)
                   : id == DQ_TASK_LAMBADA  ? parse_lambada(o, out, err)
                                            : parse_choices_item(id, o, out, err);
    cJSON_Delete(o);
    if (st) dq_task_item_free(out);
    return st;
}

dq_status dq_task_parse_hellaswag(const char *const lines[6], dq_task_item *out, dq_error *err) {
    memset(out, 0, sizeof *out);
    char *end;
    long gold = strtol(lines[1], &end, 10);
    if (end == lines[1] || *end || gold < 0 || gold > 3)
        return dq_fail(err, DQ_ERR_FORMAT, "label \"%.20s\" is not 0..3", lines[1]);
    if (!strchr(lines[0], ':')) return dq_fail(err, DQ_ERR_FORMAT, "context line has no \"activity: \" label");
    char *ctx = dq_hellaswag_preprocess(lines[0]);
    dq_status st = ctx ? item_alloc(out, 4, err) : dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    for (int i = 0; i < 4 && !st; i++) {
        char *ending = dq_hellaswag_preprocess(lines[2 + i]);
        if (!ending) st = dq_fail(err, DQ_ERR_NOMEM, "out of memory");
        else if (!ending[0]) st = dq_fail(err, DQ_ERR_FORMAT, "ending %d is empty", i);
        else st = set_choice(out, i, ctx, ending, err);
        free(ending);
    }
    out->gold = (int)gold;
    free(ctx);
    if (st) dq_task_item_free(out);
    return st;
}

/* ---- files ------------------------------------------------------------------ */

static dq_status read_bz2(const char *path, char **data, size_t *size, dq_error *err) {
    char *packed;
    size_t plen;
    dq_status st = dq_read_file(path, MAX_TASK_FILE, &packed, &plen, err);
    if (st) return st;
    bz_stream z = {0};
    size_t cap = plen * 4 + 1024, len = 0;
    char *out = malloc(cap);
    int rc = out ? BZ2_bzDecompressInit(&z, 0, 0) : BZ_MEM_ERROR;
    z.next_in = packed, z.avail_in = (unsigned)(plen < 0xffffffffu ? plen : 0xffffffffu);
    while (rc == BZ_OK) {
        if (cap - len < 65536) {
            char *grown = cap < MAX_TASK_FILE ? realloc(out, cap * 2) : NULL;
            if (!grown) { rc = BZ_MEM_ERROR; break; }
            out = grown, cap *= 2;
        }
        z.next_out = out + len, z.avail_out = (unsigned)(cap - len - 1);
        rc = BZ2_bzDecompress(&z);
        len = cap - 1 - z.avail_out;
        if (rc == BZ_OK && z.avail_in == 0 && z.avail_out > 0) rc = BZ_UNEXPECTED_EOF;
    }
    BZ2_bzDecompressEnd(&z);
    free(packed);
    if (rc != BZ_STREAM_END) {
        free(out);
        return dq_fail(err, DQ_ERR_FORMAT, "%s: bzip2 data is %s", path,
                       rc == BZ_MEM_ERROR ? "too large" : "corrupt or truncated");
    }
    out[len] = 0;
    *data = out, *size = len;
    return DQ_OK;
}

/* The task file itself, or its .bz2 beside it. */
static dq_status read_task_file(const char *path, char **data, size_t *size, dq_error *err) {
    struct stat st; /* exists (of any kind: a FIFO is refused by the reader, not waited on) */
    if (stat(path, &st) == 0) return dq_read_file(path, MAX_TASK_FILE, data, size, err);
    char bz[PATH_MAX];
    dq_status s = dq_path_fmt(bz, sizeof bz, err, "%s.bz2", path);
    if (s) return s;
    if (stat(bz, &st) == 0) return read_bz2(bz, data, size, err);
    return dq_fail(err, DQ_ERR_IO,
                   "%s: cannot open the task file (nor %s.bz2); --data-dir names the folder holding llm-foundry-icl/ "
                   "and hellaswag/",
                   path, path);
}

static bool push_item(dq_task_set *s, size_t *cap, dq_task_item *it) {
    if (s->n_items == *cap) {
        size_t c = *cap ? *cap * 2 : 256;
        dq_task_item *grown = realloc(s->items, c * sizeof *grown);
        if (!grown) return false;
        s->items = grown, *cap = c;
    }
    s->items[s->n_items++] = *it;
    return true;
}

static dq_status load_lines(dq_task_set *s, char *text, size_t len, size_t limit, dq_error *err) {
    size_t cap = 0;
    char *cur = text, *end = text + len, *line;
    long lineno = 0;
    bool hs = s->id == DQ_TASK_HELLASWAG;
    while ((!limit || s->n_items < limit) && (line = dq_next_line(&cur, end))) {
        long first = ++lineno;
        dq_task_item it;
        dq_error e = {0};
        dq_status st;
        if (hs) {
            const char *six[6] = {line};
            int got = 1;
            while (got < 6 && (six[got] = dq_next_line(&cur, end))) got++, lineno++;
            st = got < 6 ? dq_fail(&e, DQ_ERR_FORMAT, "truncated item: %d of 6 lines", got)
                         : dq_task_parse_hellaswag(six, &it, &e);
        } else {
            if (!line[strspn(line, " \t")]) continue; /* blank line */
            st = dq_task_parse_json(s->id, line, strlen(line), &it, &e);
        }
        if (st == DQ_ERR_NOMEM) return dq_fail(err, st, "%s:%ld: %s", s->path, first, e.msg);
        if (st) {
            s->n_skipped++;
            dq_note_skip(&s->warnings, &s->n_warnings, DQ_TASK_MAX_WARNINGS, s->path, first, e.msg, "item");
            continue;
        }
        it.line = first;
        if (!push_item(s, &cap, &it)) {
            dq_task_item_free(&it);
            return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory after %zu items", s->path, s->n_items);
        }
    }
    return DQ_OK;
}

dq_status dq_task_load(dq_task_id id, const char *data_dir, size_t limit, dq_task_set *out, dq_error *err) {
    memset(out, 0, sizeof *out);
    if (id >= DQ_TASK_COUNT) return dq_fail(err, DQ_ERR_ARG, "unknown task id %d", (int)id);
    out->id = id;
    snprintf(out->path, sizeof out->path, "%s/%s", data_dir, TASKS[id].file);
    char *text;
    size_t len;
    dq_status st = read_task_file(out->path, &text, &len, err);
    if (st) return st;
    st = load_lines(out, text, len, limit, err);
    free(text);
    if (st) dq_task_set_free(out);
    return st;
}

void dq_task_set_free(dq_task_set *s) {
    for (size_t i = 0; i < s->n_items; i++) dq_task_item_free(&s->items[i]);
    for (size_t i = 0; i < s->n_warnings; i++) free(s->warnings[i]);
    free(s->items);
    free(s->warnings);
    memset(s, 0, sizeof *s);
}
