/* dashq — post-training quantization of Llama-family language models.
 *
 * Public library interface. Every call that can fail returns a dq_status and,
 * when given a dq_error, fills it with a one-line message naming the file, the
 * tensor and what was wrong. There is no global mutable state: all state lives
 * in the objects below, so independent models may be used from separate threads. */
#ifndef DASHQ_H
#define DASHQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DQ_VERSION "0.1.0"

typedef enum {
    DQ_OK = 0,
    DQ_ERR_IO,          /* cannot open, read, map or write a file */
    DQ_ERR_FORMAT,      /* the file is malformed: bad magic, lying header, truncated */
    DQ_ERR_UNSUPPORTED, /* well-formed but not something we handle (dtype, model_type) */
    DQ_ERR_NOMEM,       /* allocation failed or a size would overflow */
    DQ_ERR_ARG,         /* a caller-supplied argument is invalid */
    DQ_ERR_NUMERIC,     /* NaN/Inf in weights or activations */
    DQ_ERR_CANCELLED,   /* the caller's progress callback asked to stop */
} dq_status;

typedef struct {
    dq_status code;
    char msg[768];
} dq_error;

const char *dq_status_name(dq_status s);

#if defined(__GNUC__)
#define DQ_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define DQ_PRINTF(a, b)
#endif
/* Sets err (if non-NULL) and returns code, so callers can `return dq_fail(...)`.
 * A message longer than err->msg keeps its head and its tail (which says what
 * went wrong) around " ... ". */
dq_status dq_fail(dq_error *err, dq_status code, const char *fmt, ...) DQ_PRINTF(3, 4);

/* A whole text file (the --ppl text, calibration, tokenize --file) of at most
 * max_size bytes, malloc'ed and NUL-terminated: no FIFO or device is opened
 * for a blocking read, and a NUL byte is refused with its offset. */
dq_status dq_read_text(const char *path, size_t max_size, char **data, size_t *size, dq_error *err);

/* SIGINT, SIGTERM and SIGHUP then remove the temporaries of interrupted
 * writes (every output is written to a temporary and renamed) before the
 * signal's default action. Call once, early, as the CLI does. */
void dq_tmp_install_handlers(void);

/* ---- model ------------------------------------------------------------ */

typedef enum {
    DQ_ROPE_INTERLEAVED = 0, /* pairs (2i, 2i+1): Meta / llama2.c / GGUF layout */
    DQ_ROPE_HALF = 1,        /* pairs (i, i+d/2): Hugging Face rotate_half layout */
} dq_rope_style;

typedef enum { DQ_ROPE_SCALING_NONE = 0, DQ_ROPE_SCALING_LINEAR, DQ_ROPE_SCALING_LLAMA3 } dq_rope_scaling;

typedef struct {
    int dim;        /* model width */
    int hidden_dim; /* FFN width */
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int head_dim;
    int vocab_size;
    int seq_len;    /* training context length */
    float norm_eps;
    float rope_theta;
    dq_rope_style rope_style;
    dq_rope_scaling rope_scaling;
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_orig_ctx;
    bool qkv_bias;        /* Qwen2 */
    bool tied_embeddings; /* output head shares the token embedding */
    int bos_id, eos_id;   /* -1 when unknown */
    char arch[32];        /* "llama", "mistral", "qwen2" */
    /* Simulated activation quantization (W4A8, issue #17): the input of
     * every linear, head included, rounded to act_bits-bit symmetric
     * integers per token (act_group 0) or per act_group values (32: the
     * blocks of llama.cpp's Q8_0, scale rounded to fp16 as there) before the
     * product. 0: full precision. A packed checkpoint records it. */
    int act_bits, act_group;
} dq_config;

typedef struct dq_model dq_model;

/* Loads a llama2.c checkpoint (.bin) or a Hugging Face folder (config.json +
 * safetensors); the format is detected from the contents. */
dq_status dq_model_load(const char *path, dq_model **out, dq_error *err);
/* For dq_quantize, dq_convert and dq_perplexity, when memory matters (issue
 * #15): each block's linear weights stay in the file, memory-mapped in their
 * stored dtype, until the job reaches the block, and are released once it is
 * done with it, so the job holds one block, not the model. After dq_quantize
 * the model is consumed: any later forward pass fails, naming the block, and
 * dq_perplexity or dq_convert refuse it (load it again).
 * Weights that are not finite are reported when their block is reached
 * rather than at load. */
dq_status dq_model_load_lazy(const char *path, dq_model **out, dq_error *err);
void dq_model_free(dq_model *m);
const dq_config *dq_model_config(const dq_model *m);
/* Total number of parameters (embedding counted once when tied). */
size_t dq_model_n_params(const dq_model *m);
/* Whether RoPE uses per-pair frequency divisors (GGUF rope_freqs.weight)
 * instead of the config's rope_scaling. */
bool dq_model_has_rope_freq_factors(const dq_model *m);
/* Whether the file, as loaded, stored block linears already quantized (a
 * GGUF Q4_1 file, a DASH-Q packed checkpoint; dq_quantize does not change
 * it, though it overwrites the weights): their type ("Q4_1", "INT3 g128",
 * "mixed") and in *n_linears how many; NULL (0) for full precision. Such a
 * model is its decoded weights to every method; quantizing it requantizes,
 * and a method whose groups align with the source's blocks can land back on
 * its grid (SmolLM2's Q4_1 at W4 g32: DASH-Q KLD 7e-6, RTN 0.30), which a
 * full-precision model would not allow. */
const char *dq_model_source_quant(const dq_model *m, int *n_linears);
/* Sets cfg.act_bits / act_group (bits 0: off; else 4..8; group 0: per
 * token, else 8..4096): evaluation as W·A(bits). */
dq_status dq_model_set_act_quant(dq_model *m, int bits, int group, dq_error *err);

/* ---- tokenizer -------------------------------------------------------- */

typedef struct dq_tokenizer dq_tokenizer;

/* path: a llama2.c tokenizer.bin, a tokenizer.json, a vocab.json (with
 * merges.txt beside it) or a folder holding one of those. */
dq_status dq_tokenizer_load(const char *path, dq_tokenizer **out, dq_error *err);
/* Finds the tokenizer that belongs to a model path (same folder). */
dq_status dq_tokenizer_for_model(const char *model_path, int vocab_size, dq_tokenizer **out,
                                 dq_error *err);
void dq_tokenizer_free(dq_tokenizer *t);
int dq_tokenizer_vocab_size(const dq_tokenizer *t);
/* The file the tokenizer was read from. */
const char *dq_tokenizer_path(const dq_tokenizer *t);
int dq_tokenizer_bos(const dq_tokenizer *t);
int dq_tokenizer_eos(const dq_tokenizer *t);
/* Whether the tokenizer's own convention prepends BOS (Llama yes, GPT-2/Qwen2 no). */
bool dq_tokenizer_adds_bos(const dq_tokenizer *t);

/* Encodes UTF-8 text. Special tokens written literally in the text (e.g.
 * "<|im_end|>") are recognised when parse_special is true. *ids is malloc'ed. */
dq_status dq_tokenize(const dq_tokenizer *t, const char *text, size_t len, bool add_bos,
                      bool parse_special, int32_t **ids, size_t *n_ids, dq_error *err);
/* Decodes ids to UTF-8 (byte-fallback pieces fused). Returns malloc'ed text. */
dq_status dq_detokenize(const dq_tokenizer *t, const int32_t *ids, size_t n, char **text,
                        size_t *len, dq_error *err);
/* Raw bytes of one piece as it prints after prev (llama2.c style: a leading
 * space is dropped after BOS). */
dq_status dq_token_piece(const dq_tokenizer *t, int32_t prev, int32_t id, char *buf,
                         size_t cap, size_t *len);

/* Id of the piece whose text is exactly s[0..len) (special tokens
 * included), -1 if there is none. */
int dq_tokenizer_find(const dq_tokenizer *t, const char *s, size_t len);

/* ---- chat templates --------------------------------------------------- */

typedef struct {
    const char *role; /* "system", "user", "assistant" */
    const char *content;
} dq_chat_msg;

/* The chat template that came with the tokenizer: GGUF tokenizer.chat_template,
 * or, beside a tokenizer.json / vocab.json, tokenizer_config.json's
 * chat_template (its "default" entry when it is a list) or chat_template.jinja.
 * NULL when there is none. Owned by the tokenizer. */
const char *dq_tokenizer_chat_template(const dq_tokenizer *t);
/* llama.cpp's name of the template family ("chatml", "llama3", "llama2-sys",
 * ...) recognised in a template's Jinja text by llm_chat_detect_template's
 * rules (a text that is a family name selects it); NULL if none matches.
 * Static string. */
const char *dq_chat_detect(const char *tmpl);
/* Renders messages as llama.cpp's llm_chat_apply_template does for the
 * family detected in tmpl, ending with the assistant's header when
 * add_assistant (families that have one). No BOS is written: it is the
 * tokenizer's to add. Special tokens appear as text; tokenize the result with
 * parse_special. origin names where tmpl came from, for errors:
 * DQ_ERR_UNSUPPORTED for no template, an unknown one or a family dashq does not
 * render. *out is malloc'ed; *family (may be NULL) receives the family name. */
dq_status dq_chat_format(const char *tmpl, const char *origin, const dq_chat_msg *msgs, size_t n, bool add_assistant,
                         char **out, const char **family, dq_error *err);
/* Text of the token that closes an assistant turn in a rendered family
 * ("<|im_end|>", "<|eot_id|>", "</s>"), NULL for an unknown family. */
const char *dq_chat_end_of_turn(const char *family);

/* ---- inference -------------------------------------------------------- */

typedef struct dq_session dq_session;

/* A session holds the KV cache for n_ctx positions and scratch for batches of
 * up to n_batch tokens. n_threads <= 0 means OpenMP's default (OMP_NUM_THREADS, else all cores). */
dq_status dq_session_new(const dq_model *m, int n_ctx, int n_batch, int n_threads,
                         dq_session **out, dq_error *err);
void dq_session_free(dq_session *s);

/* Runs tokens[0..n) at positions pos..pos+n (the cache must hold positions < pos).
 * If all_logits, returns n x vocab logits, else only the last row's. The
 * pointer is owned by the session and valid until the next call. The first
 * non-finite value in the residual stream (checked after every sub-layer) or
 * in the logits fails with DQ_ERR_NUMERIC naming the model, the tensor
 * ("blk.3.ffn_down") and the position: overflow is an error, never a "nan". */
dq_status dq_forward(dq_session *s, const int32_t *tokens, int n, int pos, bool all_logits,
                     const float **logits, dq_error *err);
/* Runs n_branches continuations of the cached prefix [0, pos) as one batch:
 * tokens holds them back to back (lens[b] tokens each); every branch starts
 * at position pos and attends to the prefix and its own tokens only (the
 * choices of a multiple-choice question). Returns every row's logits. The
 * branches fill cache slots pos.., so afterwards only [0, pos) is a prefix. */
dq_status dq_forward_branches(dq_session *s, const int32_t *tokens, const int *lens, int n_branches, int pos,
                              const float **logits, dq_error *err);

/* ---- progress --------------------------------------------------------- */

/* Long jobs (quantization, perplexity, zero-shot tasks) report progress to
 * the caller; the library itself never writes to a terminal. fn gets the
 * stage ("quantize", "perplexity", a task name), the units done and the
 * stage's total, after each unit; done == total closes the stage. Returning
 * false stops the job, which then fails with DQ_ERR_CANCELLED (llama.cpp's
 * llama_progress_callback works the same way). fn == NULL: no reports. */
typedef bool (*dq_progress_fn)(const char *stage, size_t done, size_t total, void *user);
/* A message worth showing the user while a job runs (overlapping windows, a
 * padded width, a context past the training length): one line, no newline;
 * warning: the result may not be what was meant, else informational. */
typedef void (*dq_note_fn)(bool warning, const char *msg, void *user);
typedef struct {
    dq_progress_fn fn;
    dq_note_fn note; /* NULL: notes are dropped */
    void *user;
} dq_progress;

/* ---- several processes (issue #15) --------------------------------------- */

/* The processes of one job started by Open MPI's mpirun: they split the
 * calibration windows and the solves of each block, and rank 0 writes; the
 * output is byte-identical to one process's. NULL is one process. */
typedef struct dq_comm dq_comm;
/* Whether this build has Open MPI. */
bool dq_comm_available(void);
/* Joins the job when mpirun (or another MPI launcher) started this process,
 * else *out = NULL (one process). Call once, first, with main's arguments;
 * a launch of several processes by a build without MPI is an error. */
dq_status dq_comm_init(int *argc, char ***argv, dq_comm **out, dq_error *err);
int dq_comm_rank(const dq_comm *c);
int dq_comm_size(const dq_comm *c);
/* Bytes this rank has sent to the others so far. */
uint64_t dq_comm_bytes_sent(const dq_comm *c);
/* Ends the whole job now (every rank), with this exit code: for a rank
 * that cannot go on while others wait. */
void dq_comm_abort(dq_comm *c, int code);
void dq_comm_finalize(dq_comm *c);

/* ---- quantization: the main job ---------------------------------------- */

/* What dq_quantize does. dq_quantize_default_params() gives DASH-Q, 4 bits,
 * groups of 128, 128 windows, a DASH-Q packed checkpoint. */
typedef struct {
    const char *method;    /* a row of the quantizer table: dq_quantize_methods() lists them */
    const char *options;   /* the method's own options, "name=value,flag,..." (e.g. "act_order,percdamp=0.05");
                              an option the method does not read is refused. NULL: the reference settings */
    int bits, group;       /* packed output: 2..8 bits; group 16..128 (a width it does not divide is padded
                              with zero columns), -1 for one group per row */
    const char *format;    /* "packed" (a DASH-Q checkpoint folder) or "gguf" (a file llama.cpp runs) */
    const char *gguf_type; /* with "gguf": Q4_K_M, Q3_K_S, ... (dq_quantize_gguf_types()); it sets bits and groups */
    bool pure;             /* with "gguf": that type for every tensor, as llama-quantize --pure */
    const char *calib;     /* calibration text: plain, or JSON lines with "text"; NULL only for a method
                              without statistics (rtn) */
    int nsamples, seqlen;  /* windows of seqlen tokens (0: the training context, at most 2048) */
    uint64_t seed;         /* where the windows start */
    bool quantize_head;    /* the output head too (GGUF output always quantizes it) */
    /* Function-preserving transforms folded into the weights before any
     * statistic (issue #17; dq_quantize_transforms() lists them): */
    const char *rotate;    /* "none" (or NULL), "hadamard" (QuaRot's random Hadamard R1 on the residual stream
                              and R2 per head), "random" (Haar-random R1, R2), "hero" (R1 learned from the
                              Hadamard one against the RTN error; needs calib), "hero-r2" (that R1, and each
                              block's R2 learned against o_proj's RTN error), "hero-loss" (R1 learned against
                              the RTN-quantized model's cross-entropy, hero_steps windows through the backward
                              pass; needs calib), "hero-kl" (the same against its KL divergence from the
                              full-precision model), "split" (R1 = the identity on the massive-activation
                              channels, >= 8x the mean input energy on calib, random Hadamard on the rest;
                              needs calib); unties a tied head */
    const char *smooth;    /* "none" (or NULL), "closed" (SmoothQuant's per-channel scales of the inputs of
                              q/k/v, gate/up and down, folded into the norms and up_proj) */
    float smooth_alpha;    /* the smoothing's α in max|X|^α / max|W|^(1-α); 0: 0.5 */
    float hero_beta;       /* smooth hero: weight of the spectral term λ_max/mean (0: 0.1) */
    int hero_steps;        /* smooth hero: Adam steps per input; rotate hero(-r2), hero-loss: Cayley steps (0: 40) */
    bool spectrum;         /* report each layer's curvature spectrum (dq_tensor_report.h_*) */
    int act_bits, act_group; /* activation quantization (dq_model_set_act_quant) during calibration, kept in the
                                model and recorded in a packed checkpoint; 0: full-precision activations */
    /* Memory (issue #15): the calibration hidden states between blocks are
     * the largest allocation once weights stream; past the budget they go to
     * a spill file (read and written a window at a time, removed at exit). */
    size_t mem_budget;     /* bytes the job may hold; 0: what the system has available now (MemAvailable) */
    const char *tmp_dir;   /* the spill file's folder; NULL: the output's folder */
    const char *hidden_dtype; /* "f32" (NULL) or "bf16": half the memory or disk, the stream rounded between blocks */
    /* Keep the run's state in OUT.resume/ (the partial output, the hidden
     * states on disk, the finished layers), updated atomically after each
     * block; when an interrupted run of the same model, calibration and
     * options left one there, continue from its last finished block (the
     * output is byte-identical to an uninterrupted run). Another run's state
     * is refused. Removed on success. */
    bool resume;
    int n_threads;         /* 0: every core; the output does not depend on it */
    const dq_comm *comm;   /* several processes (dq_comm_init): every rank calls dq_quantize with the same
                              parameters and files; rank 0 writes OUT. NULL: this process alone */
    dq_progress progress;  /* stage "quantize", one unit per block; "transform" per window of the smoothing's
                              statistics; and "note" messages worth showing */
} dq_quantize_params;

dq_quantize_params dq_quantize_default_params(void);
/* "rtn, gptq, dashq" and the GGUF types accepted, for help texts. */
const char *dq_quantize_methods(void);
/* "rotations: none, hadamard, random; smoothings: none, closed", for help texts. */
const char *dq_quantize_transforms(void);
const char *dq_quantize_gguf_types(void);
/* One line per method, "PREFIXgptq: --sym --mse --starts X --act-order --percdamp X\n",
 * its options spelled as the CLI's flags. */
void dq_quantize_method_help(char *buf, size_t cap, const char *prefix);

/* One quantized tensor, in model order. */
typedef struct {
    char name[96];         /* Hugging Face module name, e.g. model.layers.3.self_attn.q_proj */
    char type[16];         /* GGUF output: its llama.cpp type; else "" */
    double rel_err;        /* ‖(W−Ŵ)X‖/‖WX‖ over the calibration windows; -1 when not measured */
    double seconds;        /* solve time */
    int in_features, quant_in_features; /* differ when the group padded the width */
    /* with dq_quantize_params.spectrum and a method on the full H: the
     * curvature it was solved with, λ_max, tr/n, and the condition number
     * with 1 % damping; else 0 */
    double h_lmax, h_lmean, h_cond;
} dq_tensor_report;

typedef struct {
    dq_tensor_report *tensors;
    int n_tensors;
    int n_padded;          /* tensors whose width the group did not divide (padded) */
    int n_fallback;        /* GGUF: tensors in llama.cpp's fallback type (width not a multiple of the block) */
    int calib_windows, calib_len;
    size_t calib_text_tokens;
    bool calib_overlapping; /* the text was shorter than the windows: drawn with replacement */
    double t_forward, t_stats, t_solve, t_total; /* seconds */
    double t_gradients;    /* output-adaptive curvature (OAC): the forward+backward pass over the windows; else 0 */
    double grad_loss;      /* its mean cross-entropy on the windows */
    double t_transform;    /* rotate / smooth: folding and the smoothing's statistics; else 0 */
    double orth_err;       /* the rotations' max |QᵀQ - I| (checked ≤ 1e-4) */
    /* smooth hero, means over the inputs it scaled: RTN output error in the
     * Hessian norm learned/identity, λ_max/mean of the input Hessian before, after */
    double hero_err_ratio, hero_rho_before, hero_rho_after;
    int hero_inputs;
    double hero_rot_err_ratio; /* rotate hero: its objective (mean RTN error in the Hessian norm) learned / start */
    double hero_r2_err_ratio;  /* rotate hero-r2: o_proj's RTN error in its input Hessian norm, learned head
                                  rotations / start, mean over blocks */
    double hero_rot_loss_before, hero_rot_loss_after; /* rotate hero-loss / hero-kl: the RTN-quantized
                                                         model's mean cross-entropy / KL divergence on the
                                                         windows, start and kept */
    int split_massive;   /* rotate split: massive-activation residual channels (>= 8x the mean input energy) */
    int split_kept;      /* ... channels left unrotated: those and the padding that gives the rest a Hadamard order */
    double split_energy; /* ... the massive channels' share of the residual readers' input energy */
    double mean_rel_err;
    uint64_t hidden_bytes; /* the calibration hidden states' size */
    bool hidden_spilled;   /* they went to a spill file under tmp_dir (past mem_budget) */
    uint64_t bytes_written; /* GGUF: the file's size; packed: its folder's files (shards, JSON, tokenizer) */
    int n_requantized;      /* block linears the input stored quantized (dq_model_source_quant) ... */
    char source_quant[24];  /* ... and their type; "" for a full-precision input */
} dq_quantize_report;

/* Quantizes m (in place: its weights become what was written; a model from
 * dq_model_load_lazy is consumed instead, block by block) with the
 * calibration text and writes out, atomically: a packed checkpoint folder
 * (sharded like the input: one safetensors shard per input shard, with an index)
 * or a GGUF file. Refuses, before any work, an output that would replace an
 * input or an unrelated file. report (may be NULL) receives what was done;
 * free it with dq_quantize_report_free. */
/* The parameters alone, before a model is loaded: method, its options,
 * format and type, calibration. dq_quantize checks them again. */
dq_status dq_quantize_check(const dq_quantize_params *p, dq_error *err);
dq_status dq_quantize(dq_model *m, const dq_tokenizer *t, const char *out, const dq_quantize_params *p,
                      dq_quantize_report *report, dq_error *err);
void dq_quantize_report_free(dq_quantize_report *r);

/* ---- one matrix: the solvers alone ----------------------------------------- */

/* dq_solve quantizes one weight matrix the way dq_quantize quantizes each
 * linear layer, from a calibration statistic the caller brings (researchers
 * comparing solvers; the Python package's dashq.gptq / dashq.dashq /
 * dashq.rtn). Same table row, options, padding and codes as the pipeline. */
typedef struct {
    const char *method;  /* a row of the quantizer table (dq_quantize_methods()); oac is GPTQ's solve on the
                            output-adaptive Hessian, which the caller then brings */
    const char *options; /* as dq_quantize_params.options; NULL: the reference settings */
    int bits, group;     /* 2..8; 16..128 (a width it does not divide is padded with zero columns) or -1 */
    const char *type;    /* a llama.cpp block type (Q4_0, Q4_K, IQ4_NL, ...: one tensor's grid, not a file's
                            mix of types) instead of bits and group; NULL: plain groups */
    bool fp32_params;    /* scale and zero kept in fp32, as the GPTQ reference keeps them; default: rounded to
                            fp16 before coding, as packed checkpoints store them */
    int n_threads;       /* 0: every core; the result does not depend on it */
} dq_solve_params;

/* DASH-Q, 4 bits, groups of 128. */
dq_solve_params dq_solve_default_params(void);

/* What dq_solve will write for a rows x cols matrix. */
typedef struct {
    int rows, cols;
    int qcols;           /* codes per row: cols, plus the zero padding up to a multiple of the group */
    int group;           /* weights per (scale, zero): the group, the whole row, or the block type's sub-block */
    int groups_per_row;  /* qcols / group */
    int bits;            /* the type's nominal bits for a block type */
    size_t stat_floats;  /* the statistic the method reads: 0 (none), cols (diagonal), cols * cols (Hessian) */
    const char *stat;    /* "none", "diagonal" or "hessian" */
    size_t row_bytes;    /* with a type: one row as llama.cpp's blocks; else 0 */
} dq_solve_shape;

/* Checks p against a rows x cols matrix (method, options, bits, group, type)
 * and says what dq_solve will take and give. */
dq_status dq_solve_plan(const dq_solve_params *p, int rows, int cols, dq_solve_shape *shape, dq_error *err);

/* Quantizes W (rows x cols, row-major; read only) under stat, the mean over
 * calibration tokens of x xᵀ (cols x cols) or of x² (cols), as the plan's
 * stat says (NULL for none; a positive multiple, such as the reference's
 * 2/n Σ x xᵀ, gives the same codes up to rounding). Outputs are the
 * caller's, sized by dq_solve_plan; any may be NULL:
 *   codes  (rows x qcols) uint8: ŵ = scale · (q − zero) within each group
 *          (block types: each sub-block's effective step, see dq_solve_shape)
 *   scale, zero (rows x groups_per_row) float
 *   deq    (rows x cols) float: Ŵ as a runtime decodes it (padding dropped)
 *   blocks (rows x row_bytes): with a type, the rows as llama.cpp stores them.
 * Not finite weights or statistics, a negative curvature and a wrong stat
 * size are errors naming what was wrong; nothing is written then. */
dq_status dq_solve(const dq_solve_params *p, const float *W, int rows, int cols, const float *stat,
                   size_t stat_floats, uint8_t *codes, float *scale, float *zero, float *deq, void *blocks,
                   dq_error *err);

/* ---- evaluation: perplexity and KL divergence -------------------------- */

typedef struct {
    int ctx;                 /* window length in tokens (0: the training context, at most 2048) */
    bool llamacpp;           /* llama-perplexity's protocol: BOS at each window start, its second half scored */
    int max_windows;         /* the first N windows (<= 0: all) */
    const char *save_logits; /* write the model's distributions there (llama.cpp's --kl-divergence-base format) */
    const char *kld_base;    /* compare with distributions saved earlier; the tokens then come from that file */
    int n_threads;           /* 0: every core */
    dq_progress progress;    /* stage "perplexity": windows, or bytes of text while their count is unknown; then,
                                for a model run block by block, "perplexity by block": blocks and the head */
    size_t mem_budget;       /* a model from dq_model_load_lazy: loaded whole when its fp32 weights fit this (0:
                                MemAvailable), else run one block at a time, every window's hidden state kept
                                between blocks in RAM while it fits, else in a file under tmp_dir */
    const char *tmp_dir;     /* that file's folder; NULL: $TMPDIR, else /tmp */
} dq_perplexity_params;

typedef struct {
    double ppl, ppl_err;     /* perplexity and its standard error */
    double nll, nll_err;     /* mean negative log-likelihood (nats) */
    size_t n_scored;
    int n_windows, ctx;
    bool has_kld;
    double kld, kld_err;     /* mean KL(base || model) per token */
    double kld_p99, kld_max;
    double same_top, same_top_err; /* top-1 agreement with the base */
    double base_ppl;
    size_t text_read;        /* bytes of the text tokenized (less than all with max_windows) */
} dq_perplexity_result;

/* Perplexity of the text file (tokenized as it is read: memory follows the
 * window, not the file), or with kld_base the KL divergence to a saved base
 * and perplexity on its tokens (text then only names the run). save_logits is
 * written atomically and may not replace an input. A lazily loaded model
 * (dq_model_load_lazy) too large for mem_budget is held one block at a time
 * and left unloaded (the text's tokens are then all kept: 4 bytes each); the
 * results and save_logits bytes are those of the model loaded whole. */
dq_status dq_perplexity(dq_model *m, const dq_tokenizer *t, const char *text, const dq_perplexity_params *p,
                        dq_perplexity_result *r, dq_error *err);

/* ---- evaluation: zero-shot tasks, scored as lm-evaluation-harness does ----- */

typedef struct {
    const char *data_dir;   /* the task files (NULL: $DASHQ_DATA, else ../shared/data) */
    size_t limit;           /* the first N items of each task (0: all) */
    bool no_bos;            /* no BOS before contexts, even where the tokenizer adds one */
    const char *items_path; /* one JSON line per item (log-likelihoods, predictions), written atomically
                               when the runner is freed; NULL: none */
    const char *const *inputs; /* further files items_path may not replace (a text evaluated in the same run) */
    int n_inputs;           /* at most DQ_TASKS_MAX_INPUTS */
    int n_threads;          /* 0: every core */
    dq_progress progress;   /* stage: the task's name, one unit per item; warnings: malformed lines */
} dq_tasks_params;
#define DQ_TASKS_MAX_INPUTS 8

typedef struct {
    char task[32];
    size_t n;               /* items scored */
    size_t n_malformed;     /* lines of the file skipped (named through the note callback) */
    size_t n_unscored;      /* items that could not be scored; the first one says why */
    char first_unscored[512];
    double acc, acc_err;    /* accuracy and the harness's standard error */
    bool has_acc_norm;      /* acc_norm: per character of the choice */
    double acc_norm, acc_norm_err;
    bool has_ppl;           /* LAMBADA: exp(−mean log-likelihood per item) */
    double ppl, ppl_err;
    double chance, majority; /* a uniform guess; always the most frequent answer */
    size_t n_forwarded;     /* tokens run through the model */
    double seconds;
} dq_task_report;

typedef struct dq_task_runner dq_task_runner;
/* "piqa, arc_easy, ...": the tasks dq_task_run knows. */
const char *dq_task_names(void);
dq_status dq_task_runner_new(const dq_model *m, const dq_tokenizer *t, const dq_tasks_params *p, dq_task_runner **out,
                             dq_error *err);
/* One task by name; a failure (unknown name, unreadable or empty file, a
 * model error) leaves the runner usable for the next task. */
dq_status dq_task_run(dq_task_runner *r, const char *task, dq_task_report *report, dq_error *err);
/* Frees the runner; fails if the items file could not be written in full. */
dq_status dq_task_runner_free(dq_task_runner *r, dq_error *err);

/* ---- the sweep report --------------------------------------------------- */

typedef struct {
    size_t rows, skipped; /* results read; bad rows skipped (named through the note callback) */
} dq_report_summary;

/* RESULTS.csv from bench/quant_sweep.sh (and RESULTS_zeroshot.jsonl beside
 * it) as DIR/report.md with gnuplot scripts; with plots, each rendered to SVG
 * by gnuplot (it must be installed). DIR may exist; the CSV is never replaced. */
dq_status dq_report(const char *csv, const char *dir, bool plots, const dq_progress *progress, dq_report_summary *out,
                    dq_error *err);

/* ---- conversion ---------------------------------------------------------- */

/* m with t's tokenizer as format "gguf" (type F32, F16, BF16 or Q8_0: a file
 * llama.cpp runs; t required) or "hf" (type F32 or BF16: a Hugging Face
 * folder; t NULL writes no tokenizer files), written
 * atomically; an output that would replace an input is refused. The output
 * is laid out first and written block by block: a model from
 * dq_model_load_lazy is held one block at a time (memory: a block, and the
 * embedding and head in their turn), and blocks loaded before stay loaded.
 * dq_convert_check: format and type alone, before a model is loaded. */
typedef struct {
    const char *format;       /* "gguf" or "hf" */
    const char *type;         /* gguf: F32, F16, BF16 or Q8_0; hf: F32 or BF16 */
    uint64_t max_shard_bytes; /* hf: safetensors shards cut as transformers' save_pretrained cuts them (a new
                                 shard when the next tensor would pass this); 0: its default, 5 GB */
    dq_progress progress;     /* stage "convert", one unit per block */
} dq_convert_params;
dq_convert_params dq_convert_default_params(void); /* gguf, F32 (loads back to the same logits) */
dq_status dq_convert_check(const char *format, const char *type, dq_error *err);
dq_status dq_convert(dq_model *m, const dq_tokenizer *t, const char *out, const dq_convert_params *p, dq_error *err);

#ifdef __cplusplus
}
#endif
#endif
