/* ggml tensor types as GGUF stores them: block sizes, byte sizes, and the
 * block codecs (encode from integer codes + parameters, decode to fp32).
 * Layouts follow ggml-common.h; see ../shared/specs/LLAMACPP.md. */
#ifndef DQ_GGML_TYPES_H
#define DQ_GGML_TYPES_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    DQ_GGML_F32 = 0, DQ_GGML_F16 = 1, DQ_GGML_Q4_0 = 2, DQ_GGML_Q4_1 = 3, DQ_GGML_Q5_0 = 6,
    DQ_GGML_Q5_1 = 7, DQ_GGML_Q8_0 = 8, DQ_GGML_Q2_K = 10, DQ_GGML_Q3_K = 11, DQ_GGML_Q4_K = 12,
    DQ_GGML_Q5_K = 13, DQ_GGML_Q6_K = 14, DQ_GGML_IQ4_NL = 20, DQ_GGML_BF16 = 30,
} dq_ggml_type;

typedef struct {
    const char *name;
    int block;        /* elements per block */
    int bytes;        /* bytes per block */
} dq_ggml_type_info;

/* NULL for a type we cannot read or write. */
const dq_ggml_type_info *dq_ggml_info(uint32_t type);
/* By llama.cpp's name ("Q4_1", "F16", ...); -1 if unknown. */
int dq_ggml_type_by_name(const char *name);
/* Bytes of a row of n elements (n a multiple of the block size). */
size_t dq_ggml_row_bytes(dq_ggml_type t, size_t n);

/* Decodes n elements (a multiple of the block size) to fp32. */
void dq_ggml_decode(dq_ggml_type t, const void *src, size_t n, float *dst);

/* IQ4_NL's 16 non-uniform levels: x = d · kvalues[q]. */
extern const int8_t dq_iq4nl_values[16];

/* One block's parameters as the format stores them (fp16 values held as
 * the floats they decode to):
 *   Q4_0/Q5_0/Q8_0/IQ4_NL: d             Q4_1/Q5_1: d, dmin = m (x = d·q + m)
 *   Q2_K/Q4_K/Q5_K: x = d·sc[s]·q − dmin·m[s]   (sc, m ≥ 0: 4 bits Q2_K, 6 bits Q4/5_K)
 *   Q3_K: x = d·sc[s]·(q − 4), sc ∈ [−32, 31]    Q6_K: x = d·sc[s]·(q − 32), sc ∈ [−128, 127]
 * with s the 16- or 32-wide sub-block. */
typedef struct {
    float d, dmin;
    int16_t sc[16];
    uint8_t m[16];
} dq_ggml_block;

/* Encodes n elements (a multiple of the block size) from unsigned codes q
 * (Q3_K: q − 4 is the signed level, Q6_K: q − 32, Q8_0: q − 128) and one
 * dq_ggml_block per block, for every quantized type above. */
void dq_ggml_encode(dq_ggml_type t, const uint8_t *q, const dq_ggml_block *p, size_t n, void *dst);

/* The parameters stored in one encoded block of type t (codes aside). */
void dq_ggml_block_params(dq_ggml_type t, const void *block, dq_ggml_block *p);

/* Legacy 32-element blocks from unsigned codes q ∈ [0, 2^bits) chosen by a
 * quantizer:
 *   Q4_0/Q5_0/Q8_0: x = d·(q − zero), zero 8 / 16 / 128 (Q8_0 stores q − 128)
 *   Q4_1/Q5_1:      x = d·q + m
 * d[b], m[b] are the block parameters (already fp16-representable). */
void dq_ggml_encode_legacy(dq_ggml_type t, const uint8_t *q, const float *d, const float *m, size_t n,
                           void *dst);

/* llama.cpp's reference Q8_0 quantizer (d = amax/127, q = round(x/d)), for
 * full-precision tensors written as Q8_0. */
void dq_ggml_quantize_q8_0(const float *x, size_t n, void *dst);
#endif
