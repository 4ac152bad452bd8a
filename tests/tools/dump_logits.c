/* Writes a model's logits (float32, tokens x vocab) for a whitespace-separated
 * token list: the dashq side of the cross-checks against other implementations. */
#include <stdio.h>
#include <stdlib.h>

#include "dashq.h"

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: dump_logits MODEL TOKENS.txt OUT.f32\n");
        return 2;
    }
    FILE *f = fopen(argv[2], "r");
    if (!f) return 2;
    int32_t toks[4096];
    int n = 0;
    while (n < 4096 && fscanf(f, "%d", &toks[n]) == 1) n++;
    fclose(f);
    dq_error err = {0};
    dq_model *m;
    dq_session *s;
    const float *logits;
    if (dq_model_load(argv[1], &m, &err) || dq_session_new(m, n, n, 0, &s, &err) ||
        dq_forward(s, toks, n, 0, true, &logits, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    FILE *o = fopen(argv[3], "wb");
    size_t count = (size_t)n * dq_model_config(m)->vocab_size;
    int rc = (o && fwrite(logits, sizeof(float), count, o) == count) ? 0 : 2;
    if (o) fclose(o);
    dq_session_free(s);
    dq_model_free(m);
    return rc;
}
