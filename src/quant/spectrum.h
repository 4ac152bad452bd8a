/* The spectrum of the curvature a quantizer sees (issue #17: HeRo-Q aims at
 * the largest eigenvalues of the effective Hessian T⁻¹HT⁻ᵀ): λ_max, the mean
 * eigenvalue tr(H)/n and the condition number after GPTQ's own damping, so
 * that a transform's effect can be reported per layer. */
#ifndef DQ_SPECTRUM_H
#define DQ_SPECTRUM_H
#include "dashq.h"

typedef struct {
    double lmax;  /* largest eigenvalue */
    double lmean; /* tr(H)/n; lmax/lmean is scale-free (a plain rescale of the inputs cannot move it) */
    double cond;  /* (λ_max + δ)/(λ_min + δ), δ = damp·lmean: the conditioning of what GPTQ inverts */
} dq_spectrum;

/* H (n x n, leading dimension ld, symmetric; only its first n columns read),
 * eigenvalues by LAPACK's dsyevd in double. */
dq_status dq_spectrum_of(const float *H, int n, int ld, double damp, dq_spectrum *out, dq_error *err);
#endif
