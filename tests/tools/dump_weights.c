/* Writes the weights dashq evaluates for a model (every linear layer and the
 * head, float32, Hugging Face names and row order) as one safetensors file:
 * the dashq side of tests/tools/official_loader_check.py, which rebuilds the
 * same weights from a packed checkpoint with the official loader's code.
 *   dump_weights MODEL OUT.safetensors
 * MODEL must load with Hugging Face row order (a packed checkpoint does). */
#include <stdio.h>
#include <stdlib.h>

#include "formats/safetensors.h"
#include "model/sites.h"

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: dump_weights MODEL OUT.safetensors\n");
        return 2;
    }
    dq_error err = {0};
    dq_model *m;
    if (dq_model_load(argv[1], &m, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    const dq_config *c = &m->cfg;
    if (c->rope_style != DQ_ROPE_HALF) {
        fprintf(stderr, "%s: q/k rows are not in Hugging Face order\n", argv[1]);
        return 2;
    }
    size_t n = (size_t)c->n_layers * DQ_LIN_PER_BLOCK + 1;
    dq_st_out *t = calloc(n, sizeof *t);
    if (!t) return 2;
    for (int l = 0; l < c->n_layers; l++) {
        for (int k = 0; k < DQ_LIN_PER_BLOCK; k++) {
            const dq_site *site = dq_site_of_linear(k);
            dq_st_out *o = &t[l * DQ_LIN_PER_BLOCK + k];
            int rows, cols;
            dq_site_shape(site, c, &rows, &cols);
            *o = (dq_st_out){.dtype = "F32", .ndim = 2, .shape = {rows, cols}, .data = dq_site_get(&m->layers[l], site),
                             .nbytes = (size_t)rows * cols * 4};
            dq_site_hf_name(site, l, o->name, sizeof o->name);
        }
    }
    dq_st_out *h = &t[n - 1];
    *h = (dq_st_out){.dtype = "F32", .ndim = 2, .shape = {c->vocab_size, c->dim}, .data = m->output,
                     .nbytes = (size_t)c->vocab_size * c->dim * 4};
    dq_site_hf_name(&DQ_SITES[DQ_SITE_OUTPUT], 0, h->name, sizeof h->name);
    int rc = dq_st_write(argv[2], t, n, &err) ? 2 : 0;
    if (rc) fprintf(stderr, "%s\n", err.msg);
    free(t);
    dq_model_free(m);
    return rc;
}
