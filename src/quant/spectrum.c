/* See spectrum.h. */
#include "quant/spectrum.h"

#include <lapacke.h>
#include <stdlib.h>

#include "util/error.h"

dq_status dq_spectrum_of(const float *H, int n, int ld, double damp, dq_spectrum *out, dq_error *err) {
    double *A = malloc((size_t)n * n * sizeof *A), *w = malloc((size_t)n * sizeof *w);
    if (!A || !w) {
        free(A), free(w);
        return dq_fail(err, DQ_ERR_NOMEM, "out of memory for a %d x %d eigenproblem", n, n);
    }
    double tr = 0;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) A[(size_t)i * n + j] = H[(size_t)i * ld + j];
        tr += H[(size_t)i * ld + i];
    }
    lapack_int info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'N', 'U', n, A, n, w); /* ascending */
    if (!info) {
        double d = damp * tr / n;
        out->lmax = w[n - 1];
        out->lmean = tr / n;
        out->cond = (w[n - 1] + d) / (w[0] > 0 ? w[0] + d : d);
    }
    free(A), free(w);
    return info ? dq_fail(err, DQ_ERR_NUMERIC, "eigenvalues of a %d x %d curvature failed (LAPACK info %d)", n, n,
                          (int)info)
                : DQ_OK;
}
