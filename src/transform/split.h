/* The split rotation (split.c): a residual rotation R1 that is the identity
 * on the massive-activation channels and a random Hadamard rotation on the
 * rest; a dq_rotation_info.learn row. o->hero receives split_massive,
 * split_kept and split_energy. */
#ifndef DQ_SPLIT_H
#define DQ_SPLIT_H
#include "transform/transform.h"

dq_status dq_split_rotation(dq_model *m, const dq_calib_set *cs, dq_transform_opts *o, float *R, dq_error *err);
#endif
