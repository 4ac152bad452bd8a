/* HeRo-Q's learned smoothing (issue #17): see hero.c for the objective and
 * how it is minimised. */
#ifndef DQ_HERO_H
#define DQ_HERO_H
#include "transform/transform.h"

/* Scales for every block's q/k/v, gate/up and down inputs, learned on the
 * windows of cs and folded in (transform/fold.h); o->hero receives the means
 * over those inputs; progress: stage "transform", one unit per block. */
dq_status dq_hero_smooth(dq_model *m, const dq_calib_set *cs, dq_transform_opts *o, dq_error *err);
#endif
