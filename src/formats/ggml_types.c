/* ggml block codecs. Decoders mirror ggml's dequantize_row_* so that what we
 * evaluate is what llama.cpp computes from the same bytes. */
#include "formats/ggml_types.h"

#include <math.h>
#include <string.h>

#include "util/half.h"

static const dq_ggml_type_info INFO[] = {
    [DQ_GGML_F32] = {"F32", 1, 4},       [DQ_GGML_F16] = {"F16", 1, 2},
    [DQ_GGML_Q4_0] = {"Q4_0", 32, 18},   [DQ_GGML_Q4_1] = {"Q4_1", 32, 20},
    [DQ_GGML_Q5_0] = {"Q5_0", 32, 22},   [DQ_GGML_Q5_1] = {"Q5_1", 32, 24},
    [DQ_GGML_Q8_0] = {"Q8_0", 32, 34},   [DQ_GGML_Q2_K] = {"Q2_K", 256, 84},
    [DQ_GGML_Q3_K] = {"Q3_K", 256, 110}, [DQ_GGML_Q4_K] = {"Q4_K", 256, 144},
    [DQ_GGML_Q5_K] = {"Q5_K", 256, 176}, [DQ_GGML_Q6_K] = {"Q6_K", 256, 210},
    [DQ_GGML_IQ4_NL] = {"IQ4_NL", 32, 18}, [DQ_GGML_BF16] = {"BF16", 1, 2},
};

const int8_t dq_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

const dq_ggml_type_info *dq_ggml_info(uint32_t type) {
    if (type >= sizeof INFO / sizeof INFO[0] || !INFO[type].name) return NULL;
    return &INFO[type];
}

int dq_ggml_type_by_name(const char *name) {
    for (size_t t = 0; t < sizeof INFO / sizeof INFO[0]; t++)
        if (INFO[t].name && !strcmp(INFO[t].name, name)) return (int)t;
    return -1;
}

size_t dq_ggml_row_bytes(dq_ggml_type t, size_t n) {
    const dq_ggml_type_info *i = dq_ggml_info(t);
    return n / (size_t)i->block * (size_t)i->bytes;
}

static float h2f(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return dq_f16_to_f32(h);
}

static void put_f16(uint8_t *p, float x) {
    uint16_t h = dq_f32_to_f16(x);
    memcpy(p, &h, 2);
}

/* ---- legacy 32-element blocks ---------------------------------------------- */

static void decode_q4(const uint8_t *b, float *y, bool has_min) {
    float d = h2f(b), m = has_min ? h2f(b + 2) : 0;
    const uint8_t *qs = b + (has_min ? 4 : 2);
    for (int j = 0; j < 16; j++) {
        int lo = qs[j] & 0xF, hi = qs[j] >> 4;
        y[j] = has_min ? lo * d + m : (lo - 8) * d;
        y[j + 16] = has_min ? hi * d + m : (hi - 8) * d;
    }
}

static void decode_q5(const uint8_t *b, float *y, bool has_min) {
    float d = h2f(b), m = has_min ? h2f(b + 2) : 0;
    uint32_t qh;
    memcpy(&qh, b + (has_min ? 4 : 2), 4);
    const uint8_t *qs = b + (has_min ? 8 : 6);
    for (int j = 0; j < 16; j++) {
        int x0 = (qs[j] & 0xF) | (int)((qh >> j) << 4 & 0x10);
        int x1 = (qs[j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
        y[j] = has_min ? x0 * d + m : (x0 - 16) * d;
        y[j + 16] = has_min ? x1 * d + m : (x1 - 16) * d;
    }
}

static void decode_q8_0(const uint8_t *b, float *y) {
    float d = h2f(b);
    for (int j = 0; j < 32; j++) y[j] = (int8_t)b[2 + j] * d;
}

static void decode_iq4_nl(const uint8_t *b, float *y) {
    float d = h2f(b);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)dq_iq4nl_values[b[2 + j] & 0xF];
        y[j + 16] = d * (float)dq_iq4nl_values[b[2 + j] >> 4];
    }
}

/* ---- K-quants: 256-element super-blocks ---------------------------------- */

static void scale_min_k4(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63, *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static void decode_q2_k(const uint8_t *b, float *y) {
    const uint8_t *scales = b, *q = b + 16;
    float d = h2f(b + 80), dmin = h2f(b + 82);
    int is = 0;
    for (int n = 0; n < 256; n += 128, q += 32)
        for (int shift = 0; shift < 8; shift += 2)
            for (int half = 0; half < 2; half++) {
                int sc = scales[is++];
                float dl = d * (float)(sc & 0xF), ml = dmin * (float)(sc >> 4);
                for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[l + 16 * half] >> shift) & 3) - ml;
            }
}

static void q3_k_scales(const uint8_t *packed, int8_t out[16]) {
    for (int s = 0; s < 16; s++) {
        int lo = s < 8 ? packed[s] & 0xF : packed[s - 8] >> 4;
        int hi = (packed[8 + s % 4] >> (2 * (s / 4))) & 3;
        out[s] = (int8_t)((lo | hi << 4) - 32);
    }
}

static void decode_q3_k(const uint8_t *b, float *y) {
    const uint8_t *hm = b, *q = b + 32;
    int8_t scales[16];
    q3_k_scales(b + 96, scales);
    float d = h2f(b + 108);
    int is = 0;
    uint8_t m = 1;
    for (int n = 0; n < 256; n += 128, q += 32)
        for (int shift = 0; shift < 8; shift += 2, m <<= 1)
            for (int half = 0; half < 2; half++) {
                float dl = d * (float)scales[is++];
                for (int l = 16 * half; l < 16 * half + 16; l++)
                    *y++ = dl * (float)(((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
            }
}

static void decode_q45_k(const uint8_t *b, float *y, bool five) {
    float d = h2f(b), dmin = h2f(b + 2);
    const uint8_t *scales = b + 4, *qh = b + 16, *ql = b + (five ? 48 : 16);
    for (int j = 0, is = 0; j < 256; j += 64, is += 2, ql += 32) {
        int sc, m;
        scale_min_k4(is, scales, &sc, &m);
        float d1 = d * (float)sc, m1 = dmin * (float)m;
        scale_min_k4(is + 1, scales, &sc, &m);
        float d2 = d * (float)sc, m2 = dmin * (float)m;
        int u1 = 1 << (j / 32), u2 = 2 << (j / 32);
        for (int l = 0; l < 32; l++) *y++ = d1 * (float)((ql[l] & 0xF) + (five && (qh[l] & u1) ? 16 : 0)) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (float)((ql[l] >> 4) + (five && (qh[l] & u2) ? 16 : 0)) - m2;
    }
}

static void decode_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = h2f(b + 208);
    for (int n = 0; n < 256; n += 128, y += 128, ql += 64, qh += 32, sc += 8)
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 0xF) | ((qh[l] >> 0 & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 0xF) | ((qh[l] >> 2 & 3) << 4)) - 32;
            int q3 = ((ql[l] >> 4) | ((qh[l] >> 4 & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6 & 3) << 4)) - 32;
            y[l] = d * (float)sc[is] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
}

void dq_ggml_decode(dq_ggml_type t, const void *src, size_t n, float *dst) {
    const uint8_t *b = src;
    const dq_ggml_type_info *info = dq_ggml_info(t);
    size_t bs = (size_t)info->block, nb = n / bs;
    for (size_t i = 0; i < nb; i++, b += info->bytes, dst += bs) {
        switch (t) {
        case DQ_GGML_F32: memcpy(dst, b, 4); break;
        case DQ_GGML_F16: *dst = h2f(b); break;
        case DQ_GGML_BF16: {
            uint16_t h;
            memcpy(&h, b, 2);
            *dst = dq_bf16_to_f32(h);
            break;
        }
        case DQ_GGML_Q4_0: decode_q4(b, dst, false); break;
        case DQ_GGML_Q4_1: decode_q4(b, dst, true); break;
        case DQ_GGML_Q5_0: decode_q5(b, dst, false); break;
        case DQ_GGML_Q5_1: decode_q5(b, dst, true); break;
        case DQ_GGML_Q8_0: decode_q8_0(b, dst); break;
        case DQ_GGML_Q2_K: decode_q2_k(b, dst); break;
        case DQ_GGML_Q3_K: decode_q3_k(b, dst); break;
        case DQ_GGML_Q4_K: decode_q45_k(b, dst, false); break;
        case DQ_GGML_Q5_K: decode_q45_k(b, dst, true); break;
        case DQ_GGML_Q6_K: decode_q6_k(b, dst); break;
        case DQ_GGML_IQ4_NL: decode_iq4_nl(b, dst); break;
        }
    }
}

/* ---- encoders ----------------------------------------------------------- */

void dq_ggml_encode_legacy(dq_ggml_type t, const uint8_t *q, const float *d, const float *m, size_t n,
                           void *dst) {
    uint8_t *b = dst;
    for (size_t k = 0; k < n / 32; k++) {
        dq_ggml_block p = {.d = d[k], .dmin = m ? m[k] : 0};
        dq_ggml_encode(t, q + 32 * k, &p, 32, b + k * (size_t)dq_ggml_info(t)->bytes);
    }
}

void dq_ggml_quantize_q8_0(const float *x, size_t n, void *dst) {
    uint8_t *b = dst;
    for (size_t k = 0; k < n / 32; k++, x += 32, b += 34) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        put_f16(b, d);
        for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
    }
}

/* ---- general encoder: the inverse of each decoder above ------------------- */

static void put_nibbles(uint8_t *qs, const uint8_t *q) { /* element j low, j + 16 high */
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((q[j] & 0xF) | (q[j + 16] & 0xF) << 4);
}

/* Q2_K/Q3_K low two bits: element 128h + 32k + l at qs[32h + l], bits 2k. */
static void put_2bit(uint8_t *qs, const uint8_t *q) {
    memset(qs, 0, 64);
    for (int e = 0; e < 256; e++) qs[32 * (e / 128) + e % 32] |= (uint8_t)((q[e] & 3) << (2 * (e % 128 / 32)));
}

static void encode_q2_k(const uint8_t *q, const dq_ggml_block *p, uint8_t *b) {
    for (int s = 0; s < 16; s++) b[s] = (uint8_t)((p->sc[s] & 0xF) | (p->m[s] & 0xF) << 4);
    put_2bit(b + 16, q);
    put_f16(b + 80, p->d);
    put_f16(b + 82, p->dmin);
}

static void encode_q3_k(const uint8_t *q, const dq_ggml_block *p, uint8_t *b) {
    memset(b, 0, 32);
    for (int e = 0; e < 256; e++) b[e % 32] |= (uint8_t)((q[e] >> 2 & 1) << (e / 32));
    put_2bit(b + 32, q);
    uint8_t *sc = b + 96;
    memset(sc, 0, 12);
    for (int s = 0; s < 16; s++) {
        int c = p->sc[s] + 32;
        sc[s % 8] |= (uint8_t)((c & 0xF) << (s < 8 ? 0 : 4));
        sc[8 + s % 4] |= (uint8_t)((c >> 4 & 3) << (2 * (s / 4)));
    }
    put_f16(b + 108, p->d);
}

static void put_scale_min_k4(uint8_t *q, const dq_ggml_block *p) {
    for (int j = 0; j < 4; j++) {
        q[j] = (uint8_t)((p->sc[j] & 63) | (p->sc[j + 4] >> 4) << 6);
        q[j + 4] = (uint8_t)((p->m[j] & 63) | (p->m[j + 4] >> 4) << 6);
        q[j + 8] = (uint8_t)((p->sc[j + 4] & 0xF) | (p->m[j + 4] & 0xF) << 4);
    }
}

static void encode_q45_k(const uint8_t *q, const dq_ggml_block *p, uint8_t *b, bool five) {
    put_f16(b, p->d);
    put_f16(b + 2, p->dmin);
    put_scale_min_k4(b + 4, p);
    uint8_t *qh = b + 16, *ql = b + (five ? 48 : 16);
    if (five) memset(qh, 0, 32);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            int lo = q[64 * c + l], hi = q[64 * c + 32 + l];
            ql[32 * c + l] = (uint8_t)((lo & 0xF) | (hi & 0xF) << 4);
            if (five) qh[l] |= (uint8_t)((lo >> 4 & 1) << (2 * c) | (hi >> 4 & 1) << (2 * c + 1));
        }
}

static void encode_q6_k(const uint8_t *q, const dq_ggml_block *p, uint8_t *b) {
    uint8_t *ql = b, *qh = b + 128;
    memset(b, 0, 192);
    for (int e = 0; e < 256; e++) {
        int h = e / 128, k = e % 128 / 32, l = e % 32;
        ql[64 * h + l + (k & 1) * 32] |= (uint8_t)((q[e] & 0xF) << (k >= 2 ? 4 : 0));
        qh[32 * h + l] |= (uint8_t)((q[e] >> 4 & 3) << (2 * k));
    }
    for (int s = 0; s < 16; s++) b[192 + s] = (uint8_t)(int8_t)p->sc[s];
    put_f16(b + 208, p->d);
}

static void encode_legacy_block(dq_ggml_type t, const uint8_t *q, const dq_ggml_block *p, uint8_t *b) {
    bool has_min = t == DQ_GGML_Q4_1 || t == DQ_GGML_Q5_1;
    put_f16(b, p->d);
    if (has_min) put_f16(b + 2, p->dmin);
    uint8_t *o = b + (has_min ? 4 : 2);
    if (t == DQ_GGML_Q8_0) {
        for (int j = 0; j < 32; j++) o[j] = (uint8_t)(int8_t)(q[j] - 128);
        return;
    }
    if (t == DQ_GGML_Q5_0 || t == DQ_GGML_Q5_1) {
        uint32_t qh = 0;
        for (int j = 0; j < 32; j++) qh |= (uint32_t)(q[j] >> 4 & 1) << j;
        memcpy(o, &qh, 4);
        o += 4;
    }
    put_nibbles(o, q);
}

void dq_ggml_encode(dq_ggml_type t, const uint8_t *q, const dq_ggml_block *p, size_t n, void *dst) {
    const dq_ggml_type_info *info = dq_ggml_info(t);
    uint8_t *b = dst;
    for (size_t k = 0; k < n / (size_t)info->block; k++, q += info->block, b += info->bytes, p++) {
        switch (t) {
        case DQ_GGML_Q2_K: encode_q2_k(q, p, b); break;
        case DQ_GGML_Q3_K: encode_q3_k(q, p, b); break;
        case DQ_GGML_Q4_K: encode_q45_k(q, p, b, false); break;
        case DQ_GGML_Q5_K: encode_q45_k(q, p, b, true); break;
        case DQ_GGML_Q6_K: encode_q6_k(q, p, b); break;
        default: encode_legacy_block(t, q, p, b); /* Q4_0 .. Q8_0, IQ4_NL (Q4_0's nibble layout) */
        }
    }
}

void dq_ggml_block_params(dq_ggml_type t, const void *block, dq_ggml_block *p) {
    const uint8_t *b = block;
    memset(p, 0, sizeof *p);
    switch (t) {
    case DQ_GGML_Q2_K:
        for (int s = 0; s < 16; s++) p->sc[s] = b[s] & 0xF, p->m[s] = b[s] >> 4;
        p->d = h2f(b + 80), p->dmin = h2f(b + 82);
        break;
    case DQ_GGML_Q3_K: {
        int8_t sc[16];
        q3_k_scales(b + 96, sc);
        for (int s = 0; s < 16; s++) p->sc[s] = sc[s];
        p->d = h2f(b + 108);
        break;
    }
    case DQ_GGML_Q4_K: case DQ_GGML_Q5_K:
        p->d = h2f(b), p->dmin = h2f(b + 2);
        for (int j = 0; j < 8; j++) {
            int sc, m;
            scale_min_k4(j, b + 4, &sc, &m);
            p->sc[j] = (int16_t)sc, p->m[j] = (uint8_t)m;
        }
        break;
    case DQ_GGML_Q6_K:
        for (int s = 0; s < 16; s++) p->sc[s] = (int8_t)b[192 + s];
        p->d = h2f(b + 208);
        break;
    case DQ_GGML_Q4_1: case DQ_GGML_Q5_1: p->dmin = h2f(b + 2); /* fall through */
    default: p->d = h2f(b);
    }
}
