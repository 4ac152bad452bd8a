/* Transforms run before quantization (issue #17): a rotation of the
 * residual stream and of each head's values (R1, R2 of SpinQuant), and a
 * smoothing of the linears' inputs (SmoothQuant's Λ), each picked from a
 * table by name and folded into the weights (transform/fold.h) so the
 * full-precision model computes the same function while its weights, and the
 * Hessians the quantizer sees (T⁻¹ H T⁻ᵀ), change. The pipeline runs it as
 * its prepare hook; calibration, the written file and evaluation all see the
 * transformed model. */
#ifndef DQ_TRANSFORM_H
#define DQ_TRANSFORM_H
#include "calib/calib_data.h"
#include "model/model.h"

struct dq_transform_opts;
typedef struct {
    const char *name;
    const char *help;
    /* Q (n x n), orthogonal; NULL: no rotation */
    dq_status (*make)(int n, uint64_t seed, float *Q, dq_error *err);
    /* NULL, or: the residual rotation R (dim x dim, made by make) improved
     * in place on the calibration windows, the model's norms already folded */
    dq_status (*learn)(dq_model *m, const dq_calib_set *cs, struct dq_transform_opts *o, float *R, dq_error *err);
    /* NULL, or: every block's head rotation learned from P (head_dim², made
     * by make) after R1 is folded, and folded in block by block */
    dq_status (*learn_heads)(dq_model *m, const dq_calib_set *cs, struct dq_transform_opts *o, const float *P,
                             dq_error *err);
} dq_rotation_info;
typedef struct {
    const char *name;
    const char *help;
    bool needs_calib; /* reads activation statistics of the calibration windows */
    /* scales every block's q/k/v, gate/up and down inputs and folds them in; NULL: no smoothing */
    dq_status (*run)(dq_model *m, const dq_calib_set *cs, struct dq_transform_opts *o, dq_error *err);
} dq_smoothing_info;

/* What HeRo-Q's learning did, means over the inputs it scaled. */
typedef struct {
    int n;             /* inputs learned (3 per block) */
    double err_ratio;  /* RTN output error in the Hessian norm, learned / identity (≤ 1) */
    double rho_before, rho_after; /* λ_max / mean eigenvalue of the input Hessian, before and after */
    double rot_err_ratio; /* learned rotation: its objective (mean RTN error ratio) against the starting rotation's 1 */
    double r2_err_ratio;  /* learned head rotations: o_proj's RTN error ratio to the start, mean over blocks */
    double rot_loss_before, rot_loss_after; /* loss-learned rotation: the RTN-quantized model's cross-entropy on
                                               the calibration windows at the start and at the rotation kept */
    int split_massive;     /* split rotation: massive-activation channels (>= 8x the mean energy) */
    int split_kept;        /* ... residual channels left unrotated: those and the padding to a Hadamard order */
    double split_energy;   /* ... the massive channels' share of the residual readers' input energy */
} dq_hero_stats;

extern const dq_rotation_info DQ_ROTATIONS[];
extern const dq_smoothing_info DQ_SMOOTHINGS[];
extern const int DQ_N_ROTATIONS, DQ_N_SMOOTHINGS;

typedef struct dq_transform_opts {
    const dq_rotation_info *rotate;   /* NULL or a row with make == NULL: none */
    const dq_smoothing_info *smooth;  /* NULL or run == NULL: none */
    float alpha;                      /* closed smoothing's strength (SmoothQuant's α; 0.5 there) */
    /* HeRo-Q: the quantizer's grid its objective rounds to (bits; group, -1
     * per row), the weight β of the spectral term, Adam steps and rate */
    int bits, group;
    float hero_beta, hero_lr, hero_rot_lr;
    int hero_steps, hero_rows; /* rows of the stacked readers the objective measures (0: all) */
    uint64_t seed;                    /* of the random signs / matrices */
    int n_threads;
    dq_progress progress;             /* stage "transform": one unit per calibration window of the statistics */
    /* filled in by the transform, for reports */
    double seconds;
    double orth_err;                  /* max |QᵀQ − I| over the rotations used */
    dq_hero_stats hero;
} dq_transform_opts;

const dq_rotation_info *dq_rotation_find(const char *name);
const dq_smoothing_info *dq_smoothing_find(const char *name);
/* "none, hadamard, random" and "none, closed", for messages. */
const char *dq_rotation_names(void);
const char *dq_smoothing_names(void);
/* Whether o changes m at all / unties a tied head (a rotation folds the
 * final norm into it). */
bool dq_transform_active(const dq_transform_opts *o);
bool dq_transform_unties(const dq_transform_opts *o);

/* Rotations first (norms folded, then R1 on the stream, R2 in every block),
 * then smoothing from statistics of cs on the rotated model. A rotation that
 * comes out further than 1e-4 from orthogonal is refused (DQ_ERR_NUMERIC). */
dq_status dq_transform_model(dq_model *m, const dq_calib_set *cs, dq_transform_opts *o, dq_error *err);
/* The same with the pipeline's prepare-hook signature (user: dq_transform_opts). */
dq_status dq_transform_prepare(dq_model *m, const dq_calib_set *cs, void *user, dq_error *err);
#endif
