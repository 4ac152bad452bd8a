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
#include "calib/hidden_states.h"
#include "model/model.h"
#include "model/sites.h"
#include "quant/presets.h"
#include "quant/spectrum.h"
#include "quant/quant.h"

struct dq_qlayer;
struct dq_quant_result;

typedef struct {
    dq_quant_opts q;
    int n_threads;
    dq_progress progress; /* one unit per block (and the head) */
    bool quantize_head; /* the output head too (untying it from the embedding) */
    /* GGUF target: every tensor's llama.cpp type (the head and embedding
     * included; a tied embedding is the head). NULL: q's plain groups. */
    const dq_type_plan *plan;
    /* Runs first, before any statistic or solve, with write access to every
     * tensor through dq_site_writable: a transform that must keep the model's
     * function (rotations, scalings folded into norms, embedding and head).
     * Calibration and the written file see its result. NULL: none. */
    dq_status (*prepare)(dq_model *m, const dq_calib_set *cs, void *user, dq_error *err);
    void *prepare_user;
    /* Output-adaptive curvature (q.curvature oac / oac-token): output
     * gradients already gathered on these windows (borrowed; a sweep reuses
     * one pass). NULL: the pipeline runs the gradient pass itself. */
    struct dq_grad_store *grads;
    /* Each full-H layer's curvature spectrum (quant/spectrum.h) into its
     * dq_qlayer: one symmetric eigenproblem per layer. */
    bool spectrum;
    /* Streaming output: called with each block's finished layers (codes,
     * rel_err) once the block is done, then with the head; the model's
     * tensors of that block are final by then (norms and biases too). After
     * it returns, the layers keep their dims but not their codes
     * (dq_qtensor_drop_data), and a lazily loaded block is unloaded
     * (dq_model_block_unload): memory is one block, not the model. NULL:
     * the result keeps every layer's codes. */
    dq_status (*emit)(void *user, const dq_model *m, const struct dq_qlayer *layers, int n, dq_error *err);
    void *emit_user;
    /* The calibration hidden states (calib/hidden_states.h): stored as
     * hidden_dtype, and in a spill file under spill_dir when they would take
     * more than hidden_budget bytes (0: no limit, always in RAM). */
    dq_hidden_dtype hidden_dtype;
    size_t hidden_budget;
    const char *spill_dir;
    /* A resumable run (api/resume.h): the hidden states in these two files
     * (dq_hidden_open_files; hidden_cur the one read first); start_block
     * blocks already done by an interrupted run, whose layers (reports and
     * dims, no codes) are done[0..n_done) and whose output hidden states are
     * in hidden_files[hidden_cur]; checkpoint runs after each block, once it
     * is emitted and its output hidden states are on disk. */
    const char *const *hidden_files;
    int hidden_cur, start_block;
    const struct dq_qlayer *done;
    int n_done;
    dq_status (*checkpoint)(void *user, int blocks_done, int hidden_cur, const struct dq_quant_result *r,
                            dq_error *err);
    void *checkpoint_user;
    /* Several processes (dist/comm.h): this rank runs its share of the
     * windows and the solves; every rank ends with the same model and
     * result. NULL: one process. */
    const dq_comm *comm;
} dq_pipeline_opts;

/* One quantized tensor, keyed by its row in the site table. */
typedef struct dq_qlayer {
    char name[96];  /* Hugging Face module name, e.g. model.layers.3.self_attn.q_proj */
    const dq_site *site; /* a block linear, the output head or the token embedding */
    int layer;      /* block index; -1 for a model-level site (head, embedding) */
    int expert;     /* expert index of a per_expert site; -1 otherwise (every site today) */
    dq_qtensor qt;   /* empty when the plan keeps the layer in F16 */
    int ggml_type;   /* with a plan: the layer's type; else -1 */
    double rel_err; /* ‖(W−Ŵ)X‖/‖WX‖ over the calibration inputs (quantized upstream) */
    double seconds; /* solve time */
    dq_spectrum spectrum; /* of the curvature it was solved with; zeros unless dq_pipeline_opts.spectrum */
    int pad; /* zero columns appended because the group did not divide the width (qt.cols = width + pad) */
} dq_qlayer;

/* At most dq_quant_result_capacity(cfg) tensors, in the order quantized. */
typedef struct dq_quant_result {
    dq_qlayer *layers;
    int n;
    double t_forward, t_stats, t_solve, t_total;
    double t_gradients; /* output-adaptive curvature: the gradient pass (calib/gradients.h) */
    double grad_loss;   /* its mean cross-entropy over the windows (the first pass's) */
    int grad_passes;    /* gradient passes run: one, or one more per refresh */
} dq_quant_result;

/* Quantizes m in place: its linear weights become the dequantized Ŵ that the
 * returned codes describe, so the model evaluates exactly what is written. */
dq_status dq_quantize_model(dq_model *m, const dq_calib_set *cs, const dq_pipeline_opts *o, dq_quant_result *r,
                            dq_error *err);
void dq_quant_result_free(dq_quant_result *r);
/* Whether ql is the tensor of site `id` (in whichever block). */
static inline bool dq_qlayer_is(const dq_qlayer *ql, dq_site_id id) { return ql->site == &DQ_SITES[id]; }
/* Tensors a model of config c can have quantized: every linear site per
 * block (and expert), plus the model-level head and embedding. */
int dq_quant_result_capacity(const dq_config *c);
/* The layers dq_quantize_model will produce for config c (the model's as
 * it will be written: a rotation unties the head) under o, in order, with
 * their GGUF types, dims (qt without arrays: dq_qtensor_shape; a grid's
 * type) and padding: a streaming writer's layout, known before any solve.
 * out holds dq_quant_result_capacity(c) entries; returns how many were
 * filled. */
/* What the pipeline holds at its peak besides the calibration hidden
 * states, for config c under o: an estimate (the largest block's weights
 * with its statistics (exact double-double sums) and the solver's copies,
 * or twice over — Ŵ and W kept for the error pass — whichever is more;
 * the embedding and head), to size
 * hidden_budget from a memory budget. */
size_t dq_pipeline_working_bytes(const dq_config *c, const dq_pipeline_opts *o);
int dq_quant_layout(const dq_config *c, const dq_pipeline_opts *o, dq_qlayer *out);
#endif
