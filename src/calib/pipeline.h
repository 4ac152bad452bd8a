/* The sequential, layer-wise quantization pipeline: for each transformer
 * block, (1) run the calibration windows through the full-precision block and
 * accumulate the statistic the method needs for every linear layer's input,
 * (2) quantize the block's seven linear layers, (3) rerun the windows through
 * the quantized block: its outputs feed the next block, and every layer's
 * relative output error ‖(W−Ŵ)X‖/‖WX‖ is measured on the way. Memory: one
 * block's statistics plus the calibration hidden states. */
#ifndef DQ_PIPELINE_H
#define DQ_PIPELINE_H
#include "calib/calib_data.h"
#include "model/model.h"
#include "quant/quant.h"

enum { DQ_LIN_Q, DQ_LIN_K, DQ_LIN_V, DQ_LIN_O, DQ_LIN_GATE, DQ_LIN_UP, DQ_LIN_DOWN, DQ_LIN_PER_BLOCK };

typedef struct {
    dq_quant_opts q;
    int n_threads;
    bool quiet;
    bool quantize_head; /* the output head too (untying it from the embedding) */
} dq_pipeline_opts;

typedef struct {
    char name[96];  /* Hugging Face module name, e.g. model.layers.3.self_attn.q_proj */
    int layer, kind; /* block index and DQ_LIN_*, or kind -1 for the head */
    dq_qtensor qt;
    double rel_err; /* ‖(W−Ŵ)X‖/‖WX‖ over the calibration inputs (quantized upstream) */
    double seconds; /* solve time */
    bool per_channel_fallback; /* the group did not divide the width: one group per row */
} dq_qlayer;

typedef struct {
    dq_qlayer *layers;
    int n;
    double t_forward, t_stats, t_solve, t_total;
} dq_quant_result;

/* Quantizes m in place: its linear weights become the dequantized Ŵ that the
 * returned codes describe, so the model evaluates exactly what is written. */
dq_status dq_quantize_model(dq_model *m, const dq_calib_set *cs, const dq_pipeline_opts *o, dq_quant_result *r,
                            dq_error *err);
void dq_quant_result_free(dq_quant_result *r);
#endif
