#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int dq_cli_error(const dq_error *err) {
    fprintf(stderr, "dashq: error: %s\n", err->msg);
    return DQ_EXIT_ERROR;
}

bool dq_cli_int(const char *flag, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        fprintf(stderr, "dashq: error: %s expects an integer in [%ld, %ld], got '%s'\n", flag, lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

bool dq_cli_float(const char *flag, const char *s, double lo, double hi, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (*end || end == s || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "dashq: error: %s expects a number in [%g, %g], got '%s'\n", flag, lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

bool dq_cli_size(const char *flag, const char *s, size_t *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end), unit = 1;
    if (end != s && *end && !end[1]) {
        const char *units = "KMGT", *u = strchr(units, *end);
        if (u) unit = pow(1024.0, (double)(u - units + 1)), end++;
    }
    if (errno || *end || end == s || !isfinite(v) || v < 1 || v * unit >= 18e18) {
        fprintf(stderr, "dashq: error: %s expects a size in bytes, optionally with K, M, G or T (1024s), got '%s'\n",
                flag, s);
        return false;
    }
    *out = (size_t)(v * unit);
    return true;
}

int dq_cli_load(const dq_common_opts *o, dq_model **m, dq_tokenizer **t) {
    dq_error err = {0};
    *m = NULL;
    *t = NULL;
    if (!o->model) {
        fprintf(stderr, "dashq: error: no MODEL given\n");
        return DQ_EXIT_ERROR;
    }
    if ((o->lazy ? dq_model_load_lazy : dq_model_load)(o->model, m, &err)) return dq_cli_error(&err);
    int vocab = dq_model_config(*m)->vocab_size;
    dq_status st = o->tokenizer ? dq_tokenizer_load(o->tokenizer, t, &err)
                                : dq_tokenizer_for_model(o->model, vocab, t, &err);
    if (!st && dq_tokenizer_vocab_size(*t) > vocab)
        st = dq_fail(&err, DQ_ERR_FORMAT, "%s: tokenizer has %d tokens, model %d", o->tokenizer,
                     dq_tokenizer_vocab_size(*t), vocab); /* dq_fail: a long path keeps the problem */
    if (st) {
        dq_model_free(*m);
        dq_tokenizer_free(*t);
        *m = NULL;
        *t = NULL;
        return dq_cli_error(&err);
    }
    return 0;
}

dq_status dq_cli_chat_text(const dq_tokenizer *t, const char *chat_template, const char *system, const char *user,
                           char **text, int32_t *eot, dq_error *err) {
    dq_chat_msg msgs[2];
    size_t k = 0;
    if (system) msgs[k++] = (dq_chat_msg){"system", system};
    msgs[k++] = (dq_chat_msg){"user", user};
    const char *tmpl = chat_template ? chat_template : dq_tokenizer_chat_template(t);
    const char *origin = chat_template ? "--chat-template" : dq_tokenizer_path(t), *family;
    dq_status st = dq_chat_format(tmpl, origin, msgs, k, true, text, &family, err);
    if (st) return st;
    const char *end = dq_chat_end_of_turn(family);
    *eot = dq_tokenizer_find(t, end, strlen(end));
    return DQ_OK;
}
