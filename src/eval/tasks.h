/* Zero-shot tasks as lm-evaluation-harness poses them: every item becomes
 * (context, continuation) pairs, one per choice, with the harness's prompt
 * template, target delimiter " " and per-task preprocessing, rebuilt from the
 * llm-foundry JSONL files and llama.cpp's HellaSwag text file. */
#ifndef DQ_TASKS_H
#define DQ_TASKS_H
#include "dashq.h"

typedef enum {
    DQ_TASK_PIQA,
    DQ_TASK_ARC_EASY,
    DQ_TASK_ARC_CHALLENGE,
    DQ_TASK_HELLASWAG,
    DQ_TASK_WINOGRANDE,
    DQ_TASK_BOOLQ,
    DQ_TASK_LAMBADA,
    DQ_TASK_COUNT
} dq_task_id;

typedef struct {
    char *context;      /* the text scored against (owned) */
    char *continuation; /* the scored text, delimiter included (owned) */
    size_t norm_chars;  /* length of the choice as the harness's len(choice) counts it, in characters
                         * (Unicode code points, not UTF-8 bytes), for acc_norm */
} dq_task_choice;

typedef struct {
    dq_task_choice *choices;
    int n_choices;
    int gold;           /* index of the right choice (LAMBADA: 0, its only one) */
    long line;          /* 1-based line in the task file */
} dq_task_item;

typedef struct {
    dq_task_id id;
    char path[1024];
    dq_task_item *items;
    size_t n_items;
    size_t n_skipped;   /* malformed items, each named in warnings */
    char **warnings;    /* "FILE:LINE: what is wrong", the first DQ_TASK_MAX_WARNINGS */
    size_t n_warnings;
} dq_task_set;

#define DQ_TASK_MAX_WARNINGS 100

const char *dq_task_name(dq_task_id id);
/* Metrics the harness reports for the task: acc_norm only for some. */
bool dq_task_has_acc_norm(dq_task_id id);
/* Characters of a UTF-8 string as Python's len() counts them (code points). */
size_t dq_utf8_chars(const char *s);
/* Name → id ("arc_easy", "lambada" or "lambada_openai", ...); false if unknown. */
bool dq_task_lookup(const char *name, dq_task_id *out);

/* Reads the task's file under data_dir (its llm-foundry-icl/ or hellaswag/
 * folder). limit > 0 keeps the first limit items. Malformed items are
 * skipped and listed in out->warnings; only an unreadable file fails. */
dq_status dq_task_load(dq_task_id id, const char *data_dir, size_t limit, dq_task_set *out, dq_error *err);
void dq_task_set_free(dq_task_set *s);

/* One item from one JSON line (not HellaSwag); the error names what is wrong. */
dq_status dq_task_parse_json(dq_task_id id, const char *line, size_t len, dq_task_item *out, dq_error *err);
/* One HellaSwag item from its six lines: "label: context", gold, 4 endings. */
dq_status dq_task_parse_hellaswag(const char *const lines[6], dq_task_item *out, dq_error *err);
void dq_task_item_free(dq_task_item *it);

/* The harness's HellaSwag text cleanup: strip, " [title]" → ". ", drop
 * "[...]" spans, "  " → " ". Returns a malloc'ed string. */
char *dq_hellaswag_preprocess(const char *text);
#endif
