/* Hadamard matrices by Sylvester's doubling and Paley's first construction,
 * combined by Kronecker products; Haar-random orthogonal matrices by LAPACK's
 * QR. See hadamard.h. */
#include "transform/hadamard.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/rng.h"

static bool is_prime(int q) {
    if (q < 2) return false;
    for (int d = 2; (long)d * d <= q; d++)
        if (q % d == 0) return false;
    return true;
}

/* m = 1, or m = q+1 with q prime and q ≡ 3 (mod 4): a Paley I order. */
static bool paley_order(int m) { return m == 1 || (m % 4 == 0 && is_prime(m - 1)); }

static bool power_of_two(int n) { return n > 0 && (n & (n - 1)) == 0; }

/* n = 2^k · m1 · m2, the Paley part m1·m2 as small as possible (then m1
 * smallest): the same factors for the same n, always. */
static bool factor(int n, int *m1, int *m2) {
    for (int prod = 1; prod <= n; prod++) {
        if (n % prod || !power_of_two(n / prod)) continue;
        for (int a = 1; (long)a * a <= prod; a++)
            if (prod % a == 0 && paley_order(a) && paley_order(prod / a)) {
                *m1 = a, *m2 = prod / a;
                return true;
            }
    }
    return false;
}

bool dq_hadamard_exists(int n) {
    int a, b;
    return n >= 1 && factor(n, &a, &b);
}

/* Paley I, order m = q+1 (q prime ≡ 3 mod 4): H = I + S with
 * S = [[0, 1ᵀ], [−1, J]] and J the Jacobsthal matrix J_ij = χ(j − i),
 * χ the Legendre symbol mod q. m = 1 gives [1]. */
static void paley(int m, signed char *H) {
    if (m == 1) {
        H[0] = 1;
        return;
    }
    int q = m - 1;
    signed char *chi = calloc((size_t)q, 1);
    for (int x = 1; x < q; x++) chi[(long)x * x % q] = 1;
    for (int a = 1; a < q; a++) chi[a] = chi[a] ? 1 : -1;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++) {
            int s;
            if (i == 0) s = j == 0 ? 0 : 1;
            else if (j == 0) s = -1;
            else s = chi[((j - i) % q + q) % q];
            H[(size_t)i * m + j] = (signed char)(s + (i == j));
        }
    free(chi);
}

/* C (na·nb square) = A ⊗ B. */
static void kron(const signed char *A, int na, const signed char *B, int nb, signed char *C) {
    int n = na * nb;
    for (int i1 = 0; i1 < na; i1++)
        for (int j1 = 0; j1 < na; j1++)
            for (int i2 = 0; i2 < nb; i2++)
                for (int j2 = 0; j2 < nb; j2++)
                    C[(size_t)(i1 * nb + i2) * n + j1 * nb + j2] = (signed char)(A[i1 * na + j1] * B[i2 * nb + j2]);
}

dq_status dq_hadamard(int n, float *H, dq_error *err) {
    int m1, m2;
    if (n < 1 || !factor(n, &m1, &m2))
        return dq_fail(err, DQ_ERR_ARG,
                       "no Hadamard matrix of order %d here: orders are 2^k times one or two factors q+1 with q "
                       "a prime = 3 mod 4 (12, 20, 24, 44, 72, ...); use the random rotation for this width", n);
    int p2 = n / (m1 * m2), m = m1 * m2;
    /* calloc: every entry is written below, but gcc -fsanitize cannot see it through kron() */
    signed char *A = calloc((size_t)m1 * m1, 1), *B = calloc((size_t)m2 * m2, 1), *P = calloc((size_t)m * m, 1);
    signed char *C = calloc((size_t)n * n, 1), *S = calloc((size_t)p2 * p2, 1);
    dq_status st = (A && B && P && C && S) ? DQ_OK : dq_fail(err, DQ_ERR_NOMEM, "out of memory for a %d x %d Hadamard "
                                                                                 "matrix", n, n);
    if (!st) {
        paley(m1, A);
        paley(m2, B);
        kron(A, m1, B, m2, P);
        for (int i = 0; i < p2; i++) /* Sylvester: H_ij = (−1)^popcount(i & j) */
            for (int j = 0; j < p2; j++) S[(size_t)i * p2 + j] = (signed char)(__builtin_parity((unsigned)(i & j)) ? -1 : 1);
        kron(S, p2, P, m, C);
        for (size_t i = 0; i < (size_t)n * n; i++) H[i] = C[i];
    }
    free(A), free(B), free(P), free(C), free(S);
    return st;
}

dq_status dq_random_hadamard(int n, uint64_t seed, float *Q, dq_error *err) {
    dq_status st = dq_hadamard(n, Q, err);
    if (st) return st;
    float scale = (float)(1.0 / sqrt((double)n));
    uint64_t s = seed;
    for (int i = 0; i < n; i++) {
        float sign = (dq_splitmix64(&s) >> 63) ? -scale : scale;
        for (int j = 0; j < n; j++) Q[(size_t)i * n + j] *= sign;
    }
    return DQ_OK;
}

dq_status dq_random_orthogonal(int n, uint64_t seed, float *Q, dq_error *err) {
    double *A = malloc((size_t)n * n * sizeof *A), *tau = malloc((size_t)n * sizeof *tau);
    signed char *sign = malloc((size_t)n);
    if (!A || !tau || !sign) {
        free(A), free(tau), free(sign);
        return dq_fail(err, DQ_ERR_NOMEM, "out of memory for a %d x %d random rotation", n, n);
    }
    uint64_t s = seed;
    for (size_t i = 0; i < (size_t)n * n; i++) A[i] = dq_rng_normal(&s);
    lapack_int info = LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, n, n, A, n, tau);
    for (int i = 0; !info && i < n; i++) sign[i] = A[(size_t)i * n + i] < 0 ? -1 : 1;
    if (!info) info = LAPACKE_dorgqr(LAPACK_ROW_MAJOR, n, n, n, A, n, tau);
    for (int i = 0; !info && i < n; i++) /* Q·diag(sign(R_jj)): the Haar measure */
        for (int j = 0; j < n; j++) Q[(size_t)i * n + j] = (float)(A[(size_t)i * n + j] * sign[j]);
    free(A), free(tau), free(sign);
    return info ? dq_fail(err, DQ_ERR_NUMERIC, "QR of a %d x %d random matrix failed (LAPACK info %d)", n, n, (int)info)
                : DQ_OK;
}

double dq_orthogonality_error(const float *Q, int n) {
    double *D = malloc((size_t)n * n * sizeof *D), *G = malloc((size_t)n * n * sizeof *G);
    double worst = INFINITY; /* no memory: report "not orthogonal" rather than pass */
    if (D && G) {
        for (size_t i = 0; i < (size_t)n * n; i++) D[i] = Q[i];
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, n, n, 1.0, D, n, 0.0, G, n); /* G = QᵀQ */
        worst = 0;
        for (int i = 0; i < n; i++)
            for (int j = i; j < n; j++) worst = fmax(worst, fabs(G[(size_t)i * n + j] - (i == j)));
    }
    free(D), free(G);
    return worst;
}

dq_status dq_hadamard_or_random(int n, uint64_t seed, float *Q, dq_error *err) {
    return dq_hadamard_exists(n) ? dq_random_hadamard(n, seed, Q, err) : dq_random_orthogonal(n, seed, Q, err);
}
