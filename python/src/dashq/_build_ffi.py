"""Emits the C source of dashq._dashq_cffi (cffi, API mode) for CMake to compile.

Why cffi in API mode rather than ctypes: the declarations below are compiled
against include/dashq.h, so a field or signature that drifts from the header
is a build error instead of silent memory corruption (ctypes would mirror the
structs by hand); structs end in `...;` and the compiler fills in their real
layout. Calls release the GIL; the two callbacks take it back.

    python _build_ffi.py OUT.c
"""
import sys

from cffi import FFI

CDEF = r"""
typedef enum { DQ_OK, DQ_ERR_IO, DQ_ERR_FORMAT, DQ_ERR_UNSUPPORTED, DQ_ERR_NOMEM, DQ_ERR_ARG,
               DQ_ERR_NUMERIC, DQ_ERR_CANCELLED, ... } dq_status;
typedef struct { dq_status code; char msg[768]; } dq_error;
const char *dq_status_name(dq_status s);
const char *dq_version(void);

typedef struct dq_model dq_model;
typedef struct dq_tokenizer dq_tokenizer;
typedef struct dq_comm dq_comm;
typedef struct {
    int dim; int hidden_dim; int n_layers; int n_heads; int n_kv_heads; int head_dim; int vocab_size;
    int seq_len; float norm_eps; float rope_theta; bool tied_embeddings; int bos_id; int eos_id;
    char arch[32]; int act_bits; int act_group; ...;
} dq_config;
dq_status dq_model_load(const char *path, dq_model **out, dq_error *err);
dq_status dq_model_load_lazy(const char *path, dq_model **out, dq_error *err);
void dq_model_free(dq_model *m);
const dq_config *dq_model_config(const dq_model *m);
size_t dq_model_n_params(const dq_model *m);
dq_status dq_model_set_act_quant(dq_model *m, int bits, int group, dq_error *err);
dq_status dq_tokenizer_load(const char *path, dq_tokenizer **out, dq_error *err);
dq_status dq_tokenizer_for_model(const char *model_path, int vocab_size, dq_tokenizer **out, dq_error *err);
void dq_tokenizer_free(dq_tokenizer *t);
int dq_tokenizer_vocab_size(const dq_tokenizer *t);

typedef bool (*dq_progress_fn)(const char *stage, size_t done, size_t total, void *user);
typedef void (*dq_note_fn)(bool warning, const char *msg, void *user);
typedef struct { dq_progress_fn fn; dq_note_fn note; void *user; } dq_progress;
extern "Python" bool _dq_progress_cb(const char *, size_t, size_t, void *);
extern "Python" void _dq_note_cb(bool, const char *, void *);

typedef struct {
    const char *method; const char *options; int bits; int group; const char *format; const char *gguf_type;
    bool pure; const char *calib; int nsamples; int seqlen; uint64_t seed; bool quantize_head;
    const char *rotate; const char *smooth; float smooth_alpha; float hero_beta; int hero_steps; bool spectrum;
    int act_bits; int act_group; size_t mem_budget; const char *tmp_dir; const char *hidden_dtype; bool resume;
    int n_threads; const dq_comm *comm; dq_progress progress; ...;
} dq_quantize_params;
dq_quantize_params dq_quantize_default_params(void);
const char *dq_quantize_methods(void);
const char *dq_quantize_gguf_types(void);
typedef struct {
    char name[96]; char type[16]; double rel_err; double seconds; int in_features; int quant_in_features;
    double h_lmax; double h_lmean; double h_cond; ...;
} dq_tensor_report;
typedef struct {
    dq_tensor_report *tensors; int n_tensors; int n_padded; int n_fallback; int calib_windows; int calib_len;
    size_t calib_text_tokens; bool calib_overlapping; double t_forward; double t_stats; double t_solve;
    double t_total; double t_gradients; double grad_loss; double t_transform; double orth_err;
    double mean_rel_err; uint64_t hidden_bytes; bool hidden_spilled; uint64_t bytes_written;
    int n_requantized; char source_quant[24]; ...;
} dq_quantize_report;
dq_status dq_quantize_check(const dq_quantize_params *p, dq_error *err);
dq_status dq_quantize(dq_model *m, const dq_tokenizer *t, const char *out, const dq_quantize_params *p,
                      dq_quantize_report *report, dq_error *err);
void dq_quantize_report_free(dq_quantize_report *r);

typedef struct {
    const char *method; const char *options; int bits; int group; const char *type; bool fp32_params;
    int n_threads; ...;
} dq_solve_params;
dq_solve_params dq_solve_default_params(void);
typedef struct {
    int rows; int cols; int qcols; int group; int groups_per_row; int bits; size_t stat_floats;
    const char *stat; size_t row_bytes; ...;
} dq_solve_shape;
dq_status dq_solve_plan(const dq_solve_params *p, int rows, int cols, dq_solve_shape *shape, dq_error *err);
dq_status dq_solve(const dq_solve_params *p, const float *W, int rows, int cols, const float *stat,
                   size_t stat_floats, uint8_t *codes, float *scale, float *zero, float *deq, void *blocks,
                   dq_error *err);

typedef struct {
    int ctx; bool llamacpp; int max_windows; const char *save_logits; const char *kld_base; int n_threads;
    dq_progress progress; ...;
} dq_perplexity_params;
typedef struct {
    double ppl; double ppl_err; double nll; double nll_err; size_t n_scored; int n_windows; int ctx;
    bool has_kld; double kld; double kld_err; double kld_p99; double kld_max; double same_top;
    double same_top_err; double base_ppl; size_t text_read; ...;
} dq_perplexity_result;
dq_status dq_perplexity(dq_model *m, const dq_tokenizer *t, const char *text, const dq_perplexity_params *p,
                        dq_perplexity_result *r, dq_error *err);

typedef struct {
    const char *data_dir; size_t limit; bool no_bos; const char *items_path; const char *const *inputs;
    int n_inputs; int n_threads; dq_progress progress; ...;
} dq_tasks_params;
typedef struct {
    char task[32]; size_t n; size_t n_malformed; size_t n_unscored; char first_unscored[512]; double acc;
    double acc_err; bool has_acc_norm; double acc_norm; double acc_norm_err; bool has_ppl; double ppl;
    double ppl_err; double chance; double majority; size_t n_forwarded; double seconds; ...;
} dq_task_report;
typedef struct dq_task_runner dq_task_runner;
const char *dq_task_names(void);
dq_status dq_task_runner_new(const dq_model *m, const dq_tokenizer *t, const dq_tasks_params *p,
                             dq_task_runner **out, dq_error *err);
dq_status dq_task_run(dq_task_runner *r, const char *task, dq_task_report *report, dq_error *err);
dq_status dq_task_runner_free(dq_task_runner *r, dq_error *err);
"""

SOURCE = r"""
#include "dashq.h"
static const char *dq_version(void) { return DQ_VERSION; }
"""

ffi = FFI()
ffi.cdef(CDEF)
ffi.set_source("dashq._dashq_cffi", SOURCE)

if __name__ == "__main__":
    ffi.emit_c_code(sys.argv[1])
