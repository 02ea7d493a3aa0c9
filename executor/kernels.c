/* GGUF block kernels: matrix products and row lookups on Q4_0, Q4_1 and Q8_0 weights, held as
 * the file's blocks in groups of 8; and the small ops of a float32 or bf16 step, decode attention among them.
 *
 * A weight row is a run of blocks of 32 weights; each block is an f16 scale d (and for Q4_1 an
 * f16 offset m) followed by its values, as ggml lays them out:
 *     Q4_0  18 bytes  w[j] = d (lo_j - 8),  w[16 + j] = d (hi_j - 8)   lo/hi: byte j's nibbles
 *     Q4_1  20 bytes  w[j] = d lo_j + m,    w[16 + j] = d hi_j + m
 *     Q8_0  34 bytes  w[j] = d q_j, q_j a signed byte
 *
 * The kernels hold each row's blocks in groups of 8 (GROUP_BLOCKS), the same bytes reordered so that
 * one 16-bit multiply-add serves 8 blocks at once (group() converts, in place):
 *     8 scales d (f16), for Q4_1 8 offsets m (f16), then the values in chunks of 16 bytes: byte 2k + t
 *     of chunk c is block k's value byte 2c + t (Q4: the byte holding values 2c + t and 16 + 2c + t;
 *     Q8_0: value 2c + t). A row's last blocks % 8 blocks stay as the file has them.
 * Widened to 16 bits, a chunk's pair of values 2k, 2k + 1 belongs to block k, so a multiply-add
 * against x's matching pairs leaves block k's partial sum in 32-bit lane k: a group's 8 dot products
 * come out side by side, scaled by its 8 d at once, with no sum across lanes and no f16 conversion
 * per block. Against the file's order: about half the instructions a block, and 1.5x the speed of
 * a row's product here where the row is all groups (1.1 - 1.3x on SmolLM2's 576-wide rows, 2 of
 * whose 18 blocks are left over).
 *
 * A product first quantizes each row of x to 16 bits per block of 32 (scale e = max |x| / 32767,
 * q = x / e rounded to nearest, and the block's sum of q), so that a block's dot product is
 * integer: d e sum(w_q x_q) (+ m e sum(x_q) for Q4_1, - 8 d e sum(x_q) for Q4_0). llama.cpp
 * does the same with 8 bits; 16 cost about as few instructions (one 16-bit multiply-add per
 * pair of weights, no float per weight) and move x by at most 2^-16 of its block's largest value
 * (blocks under about 1e-34: block_scale), not 2^-8: products within about 1e-5 of the dequantized weights', where 8 bits moved a small
 * model's logits by 5%.
 *
 * group(kind, w, rows, blocks, to_groups)
 *     w's rows from the file's order to groups (to_groups true) or back, in place.
 * matmul(kind, w, rows, blocks, x, n, x_stride, y, y_stride, accumulate)
 *     y[i, r] (+)= sum_k x[i, k] w[r, k] for i < n, r < rows: x (n, 32 * blocks) and y (n, rows)
 *     float32 rows. x's quantized rows, n * blocks * XBLOCK_BYTES, are held for the call.
 * lookup(kind, w, blocks, ids, n, rows, y, y_stride)
 *     y[i] = row ids[i] of w, float32, exact (d q is exact in float32); ids int64, checked.
 * use_avx2(flag) chooses the products' and lookups' AVX2 code or their plain C; matvec, rms_norm,
 * rope, swiglu and attend_one are the small ops (below, and their docstrings in `methods`).
 * Addresses are integers (torch's data_ptr()). Rows are split among OpenMP threads, one run of
 * rows each; with torch imported first, its libgomp is the one loaded, so torch.set_num_threads()
 * sets both. AVX2 code is chosen at run time where the CPU has it; elsewhere plain C does the same
 * integer arithmetic. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

enum { Q4_0 = 2, Q4_1 = 3, Q8_0 = 8 };   /* ggml's type numbers */
enum { GROUP = 32, TILE = 4 };            /* weights per block; rows of x that share a block's unpacking */
enum { GROUP_BLOCKS = 8 };                /* blocks per group: one 32-bit lane each in a 256-bit register */
#define QMAX 32767.0f                     /* x's largest value in a block, as a 16-bit integer */
enum { AHEAD = 1024 };   /* bytes of weights prefetched ahead of a product: without it float rows streamed at 70 - 80% of a sum's rate */

typedef struct {   /* 32 values of a row of x, quantized */
    float e;       /* scale: x ~ e q */
    float s;       /* e * sum of q */
    int16_t q[GROUP];
} XBlock;

/* x's quantized row holds its groups in the weights' order, each exactly 8 XBlocks long, so the
 * row stays an array of XBlocks and its last blocks % 8 are XBlocks as before */
typedef struct {
    float e[GROUP_BLOCKS], s[GROUP_BLOCKS];
    int16_t q[GROUP_BLOCKS * GROUP];   /* q[16c + 2k + t] = block k's value 2c + t */
} XGroup;
_Static_assert(sizeof(XGroup) == GROUP_BLOCKS * sizeof(XBlock), "a group of x takes 8 blocks' bytes");

static int block_bytes(int kind) {
    return kind == Q4_0 ? 18 : kind == Q4_1 ? 20 : kind == Q8_0 ? 34 : 0;
}

static int scale_bytes(int kind) { return kind == Q4_1 ? 4 : 2; }   /* d, and Q4_1's m */

/* where block k's value byte j lies in its group */
static int group_offset(int kind, int k, int j) {
    return GROUP_BLOCKS * scale_bytes(kind) + 16 * (j / 2) + 2 * k + j % 2;
}

/* Block k of a group in the file's layout, into blk */
static void block_from_group(int kind, const uint8_t *group, int k, uint8_t *blk) {
    int sb = scale_bytes(kind);
    memcpy(blk, group + 2 * k, 2);
    if (sb == 4) memcpy(blk + 2, group + 2 * GROUP_BLOCKS + 2 * k, 2);
    for (int j = 0; j < block_bytes(kind) - sb; j++) blk[sb + j] = group[group_offset(kind, k, j)];
}

/* Block b of a row of `blocks` blocks in the file's layout: in place after the groups, else
 * gathered into tmp */
static const uint8_t *block_at(int kind, const uint8_t *row, long blocks, long b, uint8_t *tmp) {
    int size = block_bytes(kind);
    if (b >= blocks / GROUP_BLOCKS * GROUP_BLOCKS) return row + b * size;
    block_from_group(kind, row + b / GROUP_BLOCKS * GROUP_BLOCKS * size, (int)(b % GROUP_BLOCKS), tmp);
    return tmp;
}

/* The same for a quantized row of x */
static const XBlock *xblock_at(const XBlock *x, long blocks, long b, XBlock *tmp) {
    if (b >= blocks / GROUP_BLOCKS * GROUP_BLOCKS) return x + b;
    const XGroup *g = (const XGroup *)(x + b / GROUP_BLOCKS * GROUP_BLOCKS);
    int k = (int)(b % GROUP_BLOCKS);
    tmp->e = g->e[k];
    tmp->s = g->s[k];
    for (int j = 0; j < GROUP; j++) tmp->q[j] = g->q[16 * (j / 2) + 2 * k + j % 2];
    return tmp;
}

/* 8 quantized blocks of x into a group */
static void xgroup_from_blocks(const XBlock *blocks, XGroup *g) {
    for (int k = 0; k < GROUP_BLOCKS; k++) {
        g->e[k] = blocks[k].e;
        g->s[k] = blocks[k].s;
        for (int j = 0; j < GROUP; j++) g->q[16 * (j / 2) + 2 * k + j % 2] = blocks[k].q[j];
    }
}

static float half_to_float(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, mant = h & 1023, bits;
    if (exp == 31) {
        bits = sign | 0x7f800000u | mant << 13;                  /* inf, nan */
    } else if (exp) {
        bits = sign | (exp + 112) << 23 | mant << 13;            /* normal: rebias 15 -> 127 */
    } else if (mant) {                                           /* subnormal: normalize */
        int shift = 0;
        while (!(mant & 1024)) { mant <<= 1; shift++; }
        bits = sign | (uint32_t)(113 - shift) << 23 | (mant & 1023) << 13;
    } else {
        bits = sign;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* ---- plain C ---- */

/* A block's scale e = amax / 32767 and its inverse, by which x is multiplied. Where 32767 / amax
 * overflows (amax under about 1e-34), the block goes in steps of 1 / FLT_MAX instead, its values
 * all within 32767: an infinite inverse made every q garbage (an infinity is no integer). */
static inline void block_scale(float amax, float *e, float *inv) {
    *e = amax / QMAX;
    *inv = amax ? QMAX / amax : 0;
    if (isinf(*inv)) {
        *inv = FLT_MAX;
        *e = 1 / FLT_MAX;
    }
}

static void quantize_block(const float *x, XBlock *out) {
    float amax = 0, e, inv;
    for (int j = 0; j < GROUP; j++) amax = fmaxf(amax, fabsf(x[j]));
    block_scale(amax, &e, &inv);
    int32_t sum = 0;
    for (int j = 0; j < GROUP; j++) {
        out->q[j] = (int16_t)nearbyintf(x[j] * inv);   /* the default rounding: to nearest, ties to even */
        sum += out->q[j];
    }
    out->e = e;
    out->s = e * (float)sum;
}

static void block_values(int kind, const uint8_t *b, float *w) {
    float d = half_to_float(b);
    if (kind == Q8_0) {
        for (int j = 0; j < GROUP; j++) w[j] = d * (float)(int8_t)b[2 + j];
        return;
    }
    /* Q4_0's d (q - 8), as gguf and llama.cpp compute it: d q - 8 d is the same number (both
     * products exact), except that an infinite d made every value NaN rather than infinite */
    float m = kind == Q4_1 ? half_to_float(b + 2) : 0;
    int zero = kind == Q4_1 ? 0 : 8;
    const uint8_t *q = b + (kind == Q4_1 ? 4 : 2);
    for (int j = 0; j < 16; j++) {
        w[j] = d * (float)((q[j] & 15) - zero) + m;
        w[16 + j] = d * (float)((q[j] >> 4) - zero) + m;
    }
}

/* d e sum(w_q x_q) + (Q4_1: m e sum(x_q); Q4_0: -8 d e sum(x_q)), w_q the stored values */
static void dot_tile_c(int kind, const uint8_t *row, long blocks, const XBlock *x, long xs, int n, float *out) {
    float acc[TILE] = {0};
    uint8_t tmp[34];
    XBlock xtmp;
    for (long b = 0; b < blocks; b++) {
        const uint8_t *blk = block_at(kind, row, blocks, b, tmp);
        float d = half_to_float(blk), m = kind == Q4_1 ? half_to_float(blk + 2) : -8 * d;
        int8_t w[GROUP];
        if (kind == Q8_0) {
            memcpy(w, blk + 2, GROUP);
        } else {
            const uint8_t *q = blk + (kind == Q4_1 ? 4 : 2);
            for (int j = 0; j < 16; j++) { w[j] = q[j] & 15; w[16 + j] = q[j] >> 4; }
        }
        for (int i = 0; i < n; i++) {
            const XBlock *xb = xblock_at(x + i * xs, blocks, b, &xtmp);
            int32_t s = 0;
            for (int j = 0; j < GROUP; j++) s += w[j] * xb->q[j];
            acc[i] += d * xb->e * (float)s + (kind == Q8_0 ? 0 : m * xb->s);
        }
    }
    memcpy(out, acc, sizeof acc);
}

/* ---- AVX2: the same integer dots, 16 pairs to an instruction ---- */

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline float f16(const uint8_t *p) { return _cvtsh_ss(*(const uint16_t *)p); }

AVX2 static void quantize_block_avx2(const float *x, XBlock *out) {
    __m256 v[4], amax = _mm256_setzero_ps(), sign = _mm256_set1_ps(-0.0f);
    for (int j = 0; j < 4; j++) {
        v[j] = _mm256_loadu_ps(x + 8 * j);
        amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[j]));
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    float e, inv_scalar;
    block_scale(_mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4))), &e, &inv_scalar);
    __m256 inv = _mm256_set1_ps(inv_scalar);
    __m256i q[4];
    for (int j = 0; j < 4; j++)
        q[j] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[j], inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    /* packs interleave 128-bit lanes; the permute puts the 16 values of each back in order */
    _mm256_storeu_si256((__m256i *)out->q, _mm256_permute4x64_epi64(_mm256_packs_epi32(q[0], q[1]), 0xd8));
    _mm256_storeu_si256((__m256i *)(out->q + 16), _mm256_permute4x64_epi64(_mm256_packs_epi32(q[2], q[3]), 0xd8));
    __m256i s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
    out->e = e;
    out->s = e * (float)_mm_cvtsi128_si32(_mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1)));
}

AVX2 static inline float sum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

/* The 32 stored values of a block as 16-bit integers: values 0..15 in lo, 16..31 in hi. */
AVX2 static inline void block_ints(int kind, const uint8_t *blk, __m256i *lo, __m256i *hi) {
    if (kind == Q8_0) {
        *lo = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(blk + 2)));
        *hi = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(blk + 18)));
    } else {
        /* a byte widened to 16 bits holds both nibbles: the low one is v & 15, the high one v >> 4 */
        __m256i v = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(blk + (kind == Q4_1 ? 4 : 2))));
        *lo = _mm256_and_si256(v, _mm256_set1_epi16(15));
        *hi = _mm256_srli_epi16(v, 4);
    }
}

/* sum(w_q x_q) over a block, as 8 float partial sums: |sums| < 4 * 128 * 32767 < 2^24, so exact
 * in int32 and in float32 */
AVX2 static inline __m256 block_dot(__m256i lo, __m256i hi, const XBlock *xb) {
    __m256i sums = _mm256_add_epi32(_mm256_madd_epi16(lo, _mm256_loadu_si256((const __m256i *)xb->q)),
                                    _mm256_madd_epi16(hi, _mm256_loadu_si256((const __m256i *)(xb->q + 16))));
    return _mm256_cvtepi32_ps(sums);
}

/* The groups of a row against n rows of x, added to acc[i]: each group's 8 integer dots side by
 * side (lane k block k's), then scaled by its 8 d e at once. Q4's byte chunk c holds values 2c + t
 * in its low nibbles and 16 + 2c + t in its high ones, x's pairs c and 8 + c. A lane sums 32
 * products: exact in float32 for Q4 (< 32 * 15 * 32767 < 2^24); Q8_0's reach 2^27 and round by at
 * most 2^-24 of themselves. */
AVX2 static inline void dot_groups(int kind, const uint8_t *row, long groups, const XBlock *x, long xs, int n, __m256 *acc) {
    int size = block_bytes(kind) * GROUP_BLOCKS;
    const __m256i low = _mm256_set1_epi16(15);
    for (long g = 0; g < groups; g++) {
        const uint8_t *grp = row + g * size, *v = grp + GROUP_BLOCKS * scale_bytes(kind);
        for (int c = 0; c < size; c += 64) _mm_prefetch((const char *)grp + AHEAD + c, _MM_HINT_T0);
        const XGroup *xg[TILE];
        __m256i sums[TILE];
        for (int i = 0; i < n; i++) {
            xg[i] = (const XGroup *)(x + i * xs + g * GROUP_BLOCKS);
            sums[i] = _mm256_setzero_si256();
        }
        if (kind == Q8_0) {
            for (int c = 0; c < 16; c++) {
                __m256i w = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(v + 16 * c)));
                for (int i = 0; i < n; i++)
                    sums[i] = _mm256_add_epi32(sums[i], _mm256_madd_epi16(w, _mm256_loadu_si256((const __m256i *)xg[i]->q + c)));
            }
        } else {
            for (int c = 0; c < 8; c++) {
                __m256i w = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(v + 16 * c)));
                __m256i lo = _mm256_and_si256(w, low), hi = _mm256_srli_epi16(w, 4);
                for (int i = 0; i < n; i++) {
                    const __m256i *xq = (const __m256i *)xg[i]->q;
                    sums[i] = _mm256_add_epi32(sums[i], _mm256_add_epi32(_mm256_madd_epi16(lo, _mm256_loadu_si256(xq + c)),
                                                                         _mm256_madd_epi16(hi, _mm256_loadu_si256(xq + 8 + c))));
                }
            }
        }
        __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)grp));
        __m256 m = kind == Q4_1 ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(grp + 2 * GROUP_BLOCKS)))
                                : _mm256_mul_ps(d, _mm256_set1_ps(-8));
        for (int i = 0; i < n; i++) {
            acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums[i]), _mm256_mul_ps(d, _mm256_loadu_ps(xg[i]->e)), acc[i]);
            if (kind != Q8_0) acc[i] = _mm256_fmadd_ps(m, _mm256_loadu_ps(xg[i]->s), acc[i]);
        }
    }
}

/* A row's groups, then its last blocks % 8 one block at a time (the file's layout) */
AVX2 static inline void dot_tile(int kind, const uint8_t *row, long blocks, const XBlock *x, long xs, int n, float *out) {
    long done = blocks / GROUP_BLOCKS * GROUP_BLOCKS;
    int size = block_bytes(kind);
    __m256 acc[TILE];
    float extra[TILE] = {0};
    for (int i = 0; i < TILE; i++) acc[i] = _mm256_setzero_ps();
    if (n == 1)
        dot_groups(kind, row, done / GROUP_BLOCKS, x, xs, 1, acc);   /* decode: one row, its loops unrolled */
    else
        dot_groups(kind, row, done / GROUP_BLOCKS, x, xs, n, acc);
    for (long b = done; b < blocks; b++) {
        const uint8_t *blk = row + b * size;
        float d = f16(blk), m = kind == Q4_1 ? f16(blk + 2) : -8 * d;
        __m256i lo, hi;
        block_ints(kind, blk, &lo, &hi);
        for (int i = 0; i < n; i++) {
            const XBlock *xb = x + i * xs + b;
            acc[i] = _mm256_fmadd_ps(block_dot(lo, hi, xb), _mm256_set1_ps(d * xb->e), acc[i]);
            if (kind != Q8_0) extra[i] += m * xb->s;
        }
    }
    for (int i = 0; i < n; i++) out[i] = sum8(acc[i]) + extra[i];
}

#endif

/* y (+)= a product's row tile: out[j] belongs to row i + j of x */
static inline void store(float *y, long ys, long i, int t, const float *out, int accumulate) {
    for (int j = 0; j < t; j++) y[(i + j) * ys] = accumulate ? y[(i + j) * ys] + out[j] : out[j];
}

/* A run of weight rows against every row of x, TILE rows of x at a time, with DOT (dot_tile or
 * dot_tile_c), in a function that has w, rows, blocks, xq, n, y, ys and accumulate */
#define ROW_TILES(DOT)                                                                              \
    for (long r = 0; r < rows; r++)                                                                 \
        for (long i = 0; i < n; i += TILE) {                                                        \
            float out[TILE];                                                                        \
            int t = n - i < TILE ? (int)(n - i) : TILE;                                             \
            DOT(kind, w + r * blocks * block_bytes(kind), blocks, xq + i * blocks, blocks, t, out); \
            store(y + r, ys, i, t, out, accumulate);                                                \
        }

#if defined(__x86_64__) || defined(__i386__)
AVX2 static inline void rows_avx2(int kind, const uint8_t *w, long rows, long blocks, const XBlock *xq, long n,
                                  float *y, long ys, int accumulate) {
    ROW_TILES(dot_tile)
}

/* The kind is a constant in each of these, so the compiler drops the other kinds' code. */
AVX2 static void rows_q4_0(const uint8_t *w, long r, long b, const XBlock *x, long n, float *y, long ys, int a) { rows_avx2(Q4_0, w, r, b, x, n, y, ys, a); }
AVX2 static void rows_q4_1(const uint8_t *w, long r, long b, const XBlock *x, long n, float *y, long ys, int a) { rows_avx2(Q4_1, w, r, b, x, n, y, ys, a); }
AVX2 static void rows_q8_0(const uint8_t *w, long r, long b, const XBlock *x, long n, float *y, long ys, int a) { rows_avx2(Q8_0, w, r, b, x, n, y, ys, a); }

static int has_avx2(void) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}
#else
static int has_avx2(void) { return 0; }
#endif

typedef void (*rows_fn)(const uint8_t *, long, long, const XBlock *, long, float *, long, int);
static int avx2;

/* y[:, :rows] (+)= x @ w[:rows].T for a run of rows of w, one thread's share */
static void product_rows(int kind, const uint8_t *w, long rows, long blocks, const XBlock *xq, long n,
                         float *y, long ys, int accumulate) {
#if defined(__x86_64__) || defined(__i386__)
    if (avx2) {
        rows_fn f = kind == Q4_0 ? rows_q4_0 : kind == Q4_1 ? rows_q4_1 : rows_q8_0;
        f(w, rows, blocks, xq, n, y, ys, accumulate);
        return;
    }
#endif
    ROW_TILES(dot_tile_c)
}

/* ---- the Python functions ---- */

static void quantize_one(const float *x, XBlock *out) {
#if defined(__x86_64__) || defined(__i386__)
    if (avx2) { quantize_block_avx2(x, out); return; }
#endif
    quantize_block(x, out);
}

/* A row of x as XBlocks, its groups as the weights' (XGroup) */
static void quantize_row(const float *x, long blocks, XBlock *out) {
    long done = blocks / GROUP_BLOCKS * GROUP_BLOCKS;
    XBlock tmp[GROUP_BLOCKS];
    for (long b = 0; b < done; b += GROUP_BLOCKS) {
        for (int k = 0; k < GROUP_BLOCKS; k++) quantize_one(x + (b + k) * GROUP, tmp + k);
        xgroup_from_blocks(tmp, (XGroup *)(out + b));
    }
    for (long b = done; b < blocks; b++) quantize_one(x + b * GROUP, out + b);
}

static PyObject *matmul(PyObject *self, PyObject *args) {
    int kind, accumulate;
    unsigned long long w_addr, x_addr, y_addr;
    long rows, blocks, n, xs, ys;
    if (!PyArg_ParseTuple(args, "iKllKllKlp", &kind, &w_addr, &rows, &blocks, &x_addr, &n, &xs, &y_addr, &ys, &accumulate))
        return NULL;
    if (!block_bytes(kind)) return PyErr_Format(PyExc_ValueError, "no kernel for GGUF type %d", kind);
    XBlock *xq = PyMem_RawMalloc(n * blocks * sizeof(XBlock));   /* x's rows quantized: 2.25 bytes a value */
    if (!xq) return PyErr_NoMemory();
    const uint8_t *w = (const uint8_t *)(uintptr_t)w_addr;
    const float *x = (const float *)(uintptr_t)x_addr;
    float *y = (float *)(uintptr_t)y_addr;
    long size = blocks * block_bytes(kind);
    Py_BEGIN_ALLOW_THREADS
    for (long i = 0; i < n; i++) quantize_row(x + i * xs, blocks, xq + i * blocks);
    #pragma omp parallel
    {   /* one call per thread: a function call per row cost about a tenth of a decode product */
        long t = omp_get_thread_num(), threads = omp_get_num_threads();
        long r0 = rows * t / threads, r1 = rows * (t + 1) / threads;
        product_rows(kind, w + r0 * size, r1 - r0, blocks, xq, n, y + r0, ys, accumulate);
    }
    Py_END_ALLOW_THREADS
    PyMem_RawFree(xq);
    Py_RETURN_NONE;
}

static PyObject *lookup(PyObject *self, PyObject *args) {
    int kind;
    unsigned long long w_addr, ids_addr, y_addr;
    long blocks, n, rows, ys;
    if (!PyArg_ParseTuple(args, "iKlKllKl", &kind, &w_addr, &blocks, &ids_addr, &n, &rows, &y_addr, &ys))
        return NULL;
    if (!block_bytes(kind)) return PyErr_Format(PyExc_ValueError, "no kernel for GGUF type %d", kind);
    const int64_t *ids = (const int64_t *)(uintptr_t)ids_addr;
    for (long i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= rows)
            return PyErr_Format(PyExc_IndexError, "token id %lld is outside the %ld rows", (long long)ids[i], rows);
    long size = blocks * block_bytes(kind);
    uint8_t tmp[34];
    for (long i = 0; i < n; i++) {
        const uint8_t *row = (const uint8_t *)(uintptr_t)w_addr + ids[i] * size;
        for (long b = 0; b < blocks; b++)
            block_values(kind, block_at(kind, row, blocks, b, tmp), (float *)(uintptr_t)y_addr + i * ys + b * GROUP);
    }
    Py_RETURN_NONE;
}

static PyObject *group(PyObject *self, PyObject *args) {
    int kind, to_groups;
    unsigned long long w_addr;
    long rows, blocks;
    if (!PyArg_ParseTuple(args, "iKllp", &kind, &w_addr, &rows, &blocks, &to_groups)) return NULL;
    if (!block_bytes(kind)) return PyErr_Format(PyExc_ValueError, "no kernel for GGUF type %d", kind);
    int size = block_bytes(kind), sb = scale_bytes(kind);
    uint8_t tmp[GROUP_BLOCKS * 34];
    for (long r = 0; r < rows; r++) {
        uint8_t *row = (uint8_t *)(uintptr_t)w_addr + r * blocks * size;
        for (long b = 0; b + GROUP_BLOCKS <= blocks; b += GROUP_BLOCKS) {
            uint8_t *grp = row + b * size;
            memcpy(tmp, grp, GROUP_BLOCKS * size);
            for (int k = 0; k < GROUP_BLOCKS; k++) {
                if (!to_groups) { block_from_group(kind, tmp, k, grp + k * size); continue; }
                const uint8_t *blk = tmp + k * size;
                memcpy(grp + 2 * k, blk, 2);
                if (sb == 4) memcpy(grp + 2 * GROUP_BLOCKS + 2 * k, blk + 2, 2);
                for (int j = 0; j < size - sb; j++) grp[group_offset(kind, k, j)] = blk[sb + j];
            }
        }
    }
    Py_RETURN_NONE;
}

/* ---- the small ops of a float32 or bf16 step on the CPU (executor/model.py): one call each, where
 * torch takes two to five ops (microseconds each at a few hundred values). Plain loops; on x86
 * the compiler also makes an AVX2 copy of each, chosen when the library loads. ---- */

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
/* x86-64-v3 (AVX2, FMA) is chosen by the CPU's features; "arch=haswell" was chosen by the CPU's
 * model, so AMD CPUs and later Intel ones ran the plain copy */
#define VECTOR __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define VECTOR
#endif

/* e^x to within 2 ulp for |x| < 88 (Cephes' expf: 2^k e^r, r = x - k ln 2 in two parts, e^r a
 * polynomial), written so that a loop of it vectorizes, where libm's expf would not */
static inline __attribute__((always_inline)) float exp_approx(float x) {
    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;   /* comparisons, not fminf: they vectorize */
    float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;   /* rounded to nearest: 1.5 * 2^23 */
    float r = x - k * 0.693359375f + k * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)k + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return p * scale;
}

static inline float bf16_float(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t float_bf16(float f) {   /* rounded to nearest, ties to even, as torch does */
    uint32_t bits;
    memcpy(&bits, &f, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)(bits >> 16 | 64);   /* NaN stays NaN */
    return (uint16_t)((bits + 0x7fffu + (bits >> 16 & 1)) >> 16);
}

/* The small ops take float32 rows, or bf16 rows whose values are widened to float32 and whose
 * results are rounded once (torch rounds after each of its ops): each is written once for either,
 * with `bf16` a constant where it is inlined, and compiled twice. */
static inline __attribute__((always_inline)) float get(const void *p, long i, int bf16) {
    return bf16 ? bf16_float(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

static inline __attribute__((always_inline)) void put(void *p, long i, float f, int bf16) {
    if (bf16) ((uint16_t *)p)[i] = float_bf16(f);
    else ((float *)p)[i] = f;
}

#define BOTH(name, params, ...) \
    VECTOR static void name##_f32 params { name(__VA_ARGS__, 0); } \
    VECTOR static void name##_bf16 params { name(__VA_ARGS__, 1); }

/* y = x / sqrt(mean(x^2) + eps) * w, row by row, as transformers' LlamaRMSNorm in float32 */
static inline __attribute__((always_inline)) void rms_norm_rows(const void *x, long n, long xs, const void *w, void *y,
                                                                 long ys, long d, float eps, int bf16) {
    for (long i = 0; i < n; i++) {
        float squares = 0;
        #pragma omp simd reduction(+:squares)
        for (long j = 0; j < d; j++) squares += get(x, i * xs + j, bf16) * get(x, i * xs + j, bf16);
        float r = 1.0f / sqrtf(squares / (float)d + eps);
        for (long j = 0; j < d; j++) put(y, i * ys + j, get(w, j, bf16) * (get(x, i * xs + j, bf16) * r), bf16);
    }
}
BOTH(rms_norm_rows, (const void *x, long n, long xs, const void *w, void *y, long ys, long d, float eps),
     x, n, xs, w, y, ys, d, eps)

/* Each head's halves (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin), in place: rows of `heads`
 * heads of dh values, cos and sin (n, dh) with sin's first half negated (model.rope_tables) */
static inline __attribute__((always_inline)) void rope_rows(void *x, long n, long xs, long heads, long dh,
                                                             const void *cos, const void *sin, int bf16) {
    long half = dh / 2;
    for (long i = 0; i < n; i++)
        for (long h = 0; h < heads; h++) {
            long x1 = i * xs + h * dh, x2 = x1 + half, c = i * dh;
            for (long j = 0; j < half; j++) {
                float a = get(x, x1 + j, bf16), b = get(x, x2 + j, bf16);
                put(x, x1 + j, a * get(cos, c + j, bf16) + b * get(sin, c + j, bf16), bf16);
                put(x, x2 + j, b * get(cos, c + half + j, bf16) + a * get(sin, c + half + j, bf16), bf16);
            }
        }
}
BOTH(rope_rows, (void *x, long n, long xs, long heads, long dh, const void *cos, const void *sin),
     x, n, xs, heads, dh, cos, sin)

/* SwiGLU: gate = silu(gate) * up, rows of gate (di) then up (di) */
static inline __attribute__((always_inline)) void swiglu_rows(void *ffn, long n, long stride, long di, int bf16) {
    for (long i = 0; i < n; i++) {
        #pragma omp simd
        for (long j = 0; j < di; j++) {
            float g = get(ffn, i * stride + j, bf16);
            put(ffn, i * stride + j, g / (1.0f + exp_approx(-g)) * get(ffn, i * stride + di + j, bf16), bf16);
        }
    }
}
BOTH(swiglu_rows, (void *ffn, long n, long stride, long di), ffn, n, stride, di)

/* e^(s - max) in place over a row of scores; returns their sum */
VECTOR static float softmax_numerators(float *s, long end) {
    float top = s[0], total = 0;
    #pragma omp simd reduction(max:top)
    for (long p = 0; p < end; p++) top = s[p] > top ? s[p] : top;
    #pragma omp simd
    for (long p = 0; p < end; p++) s[p] = exp_approx(s[p] - top);
    #pragma omp simd reduction(+:total)
    for (long p = 0; p < end; p++) total += s[p];
    return total;
}

/* Decode attention: one query per head over positions 0 .. end of a layer's cache. q (nkvh * group,
 * dh) float32, heads grouped by K/V head; values (nkvh, dh, nctx), positions last; keys laid out
 * the same in float32, and position by position (nkvh, nctx, dh) in bf16 (model.CacheViews); the
 * scores (heads, end) float32. The queries come scaled. Each head's output overwrites its query,
 * which its scores no longer need. The plain loops, one head at a time; attend_heads below does the same with AVX2. */
static inline __attribute__((always_inline)) void attend_head(float *q, const void *k, const void *v, long nctx,
                                                               long end, long dh, float *s, int bf16) {
    for (long p = 0; p < end; p++) s[p] = 0;
    if (bf16)
        for (long p = 0; p < end; p++) {
            float dot = 0;
            for (long j = 0; j < dh; j++) dot += q[j] * get(k, p * dh + j, 1);
            s[p] = dot;
        }
    else
        for (long j = 0; j < dh; j++) {
            float qj = q[j];
            const float *kj = (const float *)k + j * nctx;
            for (long p = 0; p < end; p++) s[p] += qj * kj[p];
        }
    float total = softmax_numerators(s, end);
    for (long j = 0; j < dh; j++) {
        float out = 0;
        #pragma omp simd reduction(+:out)
        for (long p = 0; p < end; p++) out += s[p] * get(v, j * nctx + p, bf16);
        q[j] = out / total;
    }
}
BOTH(attend_head, (float *q, const void *k, const void *v, long nctx, long end, long dh, float *s),
     q, k, v, nctx, end, dh, s)

#if defined(__x86_64__) || defined(__i386__)
/* Decode attention with AVX2, for any length: each K/V head's keys and values are read once for
 * all the query heads that share them, up to 3 heads x 4 vectors of 8 = 12 accumulators in
 * registers, so the multiply-adds do not wait on each other (one accumulator per head chained
 * them, and left this slower than torch's batched products past a few hundred positions). */
enum { SPAN = 32, QHEADS = 3, PREFETCH = 4 * SPAN };   /* positions per scores task; query heads per pass over a K/V head */

/* 8 values of a float32 or bf16 row from i, as float32 */
AVX2 static inline __attribute__((always_inline)) __m256 load8(const void *p, long i, int bf16) {
    if (!bf16) return _mm256_loadu_ps((const float *)p + i);
    __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + i)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
}

/* Scores of nq query heads (rows dh apart, already scaled) at positions p .. p + width (at most
 * SPAN) of one K/V head's float32 keys (dh rows of nctx positions), into their score rows (end
 * apart). A span under SPAN (the last) masks its loads and stores. */
AVX2 static inline __attribute__((always_inline)) void scores_span(const float *q, int nq, const float *k, long nctx,
                                                                    long p, long width, long dh, float *s, long end) {
    __m256 acc[QHEADS][4];
    __m256i mask[4];
    for (int i = 0; i < 4; i++) {
        mask[i] = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(width - 8 * i)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        for (int h = 0; h < nq; h++) acc[h][i] = _mm256_setzero_ps();
    }
    for (long j = 0; j < dh; j++) {
        const float *kj = k + j * nctx + p;
        /* rows nctx apart, two cache lines each: too many streams for the prefetcher to follow */
        _mm_prefetch((const char *)(kj + PREFETCH), _MM_HINT_T0);
        _mm_prefetch((const char *)(kj + PREFETCH + 16), _MM_HINT_T0);
        __m256 kv[4];
        for (int i = 0; i < 4; i++) kv[i] = width == SPAN ? _mm256_loadu_ps(kj + 8 * i) : _mm256_maskload_ps(kj + 8 * i, mask[i]);
        for (int h = 0; h < nq; h++) {
            __m256 qj = _mm256_broadcast_ss(q + h * dh + j);
            for (int i = 0; i < 4; i++) acc[h][i] = _mm256_fmadd_ps(qj, kv[i], acc[h][i]);
        }
    }
    for (int h = 0; h < nq; h++)
        for (int i = 0; i < 4; i++) {
            if (width == SPAN) _mm256_storeu_ps(s + h * end + p + 8 * i, acc[h][i]);
            else _mm256_maskstore_ps(s + h * end + p + 8 * i, mask[i], acc[h][i]);
        }
}

/* The same for bf16 keys stored by position (rows of dh), 4 positions at a time: a 32-bit lane of
 * 16 loaded values holds values 2l and 2l + 1, made float32 by a shift and a mask, against the
 * queries with each 16 values stored evens first (widen_rows); dh % 16 == 0. Each head's 4 sums of
 * 8 lanes then fold into 4 scores with three horizontal adds. */
AVX2 static inline __attribute__((always_inline)) void scores_by_position(const float *q, int nq, const uint16_t *k,
                                                                           long p, long width, long dh, float *s, long end) {
    const __m256i high = _mm256_set1_epi32((int)0xffff0000u);
    for (long p0 = p; p0 < p + width; p0 += 4) {
        __m256 acc[QHEADS][4];
        const uint16_t *kp[4];
        for (int i = 0; i < 4; i++) {   /* past the end, position end - 1 again, not stored */
            kp[i] = k + (p0 + i < end ? p0 + i : end - 1) * dh;
            for (int h = 0; h < nq; h++) acc[h][i] = _mm256_setzero_ps();
        }
        for (long c = 0; c < 4 * dh * 2; c += 64) _mm_prefetch((const char *)kp[0] + 2 * AHEAD + c, _MM_HINT_T0);
        for (long j = 0; j < dh; j += 16)
            for (int i = 0; i < 4; i++) {   /* one key at a time, the queries from L1: 12 accumulators, 3 registers more */
                __m256i v = _mm256_loadu_si256((const __m256i *)(kp[i] + j));
                __m256 even = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)), odd = _mm256_castsi256_ps(_mm256_and_si256(v, high));
                for (int h = 0; h < nq; h++)
                    acc[h][i] = _mm256_fmadd_ps(_mm256_loadu_ps(q + h * dh + j + 8), odd,
                                                _mm256_fmadd_ps(_mm256_loadu_ps(q + h * dh + j), even, acc[h][i]));
            }
        for (int h = 0; h < nq; h++) {
            __m256 folded = _mm256_hadd_ps(_mm256_hadd_ps(acc[h][0], acc[h][1]), _mm256_hadd_ps(acc[h][2], acc[h][3]));
            __m128 four = _mm_add_ps(_mm256_castps256_ps128(folded), _mm256_extractf128_ps(folded, 1));
            float out[4];
            _mm_storeu_ps(out, four);
            for (int i = 0; i < 4 && p0 + i < end; i++) s[h * end + p0 + i] = out[i];
        }
    }
}

/* Rows j .. j + 4 of nq heads' outputs: sum over positions of their softmax numerators (rows
 * end apart) times the values (rows nctx apart, float32 or bf16), over total */
AVX2 static inline __attribute__((always_inline)) void values_rows(const float *s, int nq, const void *v, long nctx,
                                                                    long end, const float *total, float *out, long dh,
                                                                    int bf16) {
    __m256 acc[QHEADS][4];
    for (int h = 0; h < nq; h++)
        for (int i = 0; i < 4; i++) acc[h][i] = _mm256_setzero_ps();
    long p = 0;
    for (; p + 8 <= end; p += 8) {
        __m256 vv[4] = {load8(v, p, bf16), load8(v, nctx + p, bf16), load8(v, 2 * nctx + p, bf16),
                        load8(v, 3 * nctx + p, bf16)};
        for (int h = 0; h < nq; h++) {
            __m256 sh = _mm256_loadu_ps(s + h * end + p);
            for (int i = 0; i < 4; i++) acc[h][i] = _mm256_fmadd_ps(sh, vv[i], acc[h][i]);
        }
    }
    for (int h = 0; h < nq; h++)
        for (int i = 0; i < 4; i++) {
            float sum = sum8(acc[h][i]);
            for (long r = p; r < end; r++) sum += s[h * end + r] * get(v, i * nctx + r, bf16);
            out[h * dh + i] = sum / total[h];
        }
}

/* nq a constant in each call, so the accumulators stay in registers */
#define BY_HEADS(nq, call) do { if ((nq) >= 3) { enum { NQ = 3 }; call; } else if ((nq) == 2) { enum { NQ = 2 }; call; } \
                                else { enum { NQ = 1 }; call; } } while (0)

/* K/V heads g0 .. g1 (their queries already scaled, and in bf16 paired by widen_rows), inside a
 * parallel region whose threads share out each loop: the scores span by span, with each head's
 * largest (top); the softmax numerators span by span, with their sums (total); then the outputs
 * over the queries, 4 value rows a task. */
AVX2 static inline __attribute__((always_inline)) void attend_heads(float *q, const void *k, const void *v, long g0,
                                                                     long g1, long group, long dh, long nctx, long end,
                                                                     float *s, float *top, float *total, int bf16) {
    long nh = (g1 - g0) * group, spans = (end + SPAN - 1) / SPAN;
    #pragma omp single
    for (long h = 0; h < nh; h++) {
        top[h] = -INFINITY;
        total[h] = 0;
    }
    #pragma omp for schedule(static) reduction(max: top[:nh])
    for (long t = 0; t < spans; t++) {
        long p = t * SPAN, width = end - p < SPAN ? end - p : SPAN;
        for (long g = g0; g < g1; g++)
            for (long h = 0; h < group; h += QHEADS) {
                const float *qh = q + (g * group + h) * dh;
                float *sh = s + ((g - g0) * group + h) * end;
                if (bf16)
                    BY_HEADS(group - h, scores_by_position(qh, NQ, (const uint16_t *)k + g * nctx * dh, p, width, dh, sh,
                                                           end));
                else
                    BY_HEADS(group - h, scores_span(qh, NQ, (const float *)k + g * dh * nctx, nctx, p, width, dh, sh,
                                                    end));
            }
        for (long h = 0; h < nh; h++)
            for (long i = p; i < p + width; i++) top[h] = s[h * end + i] > top[h] ? s[h * end + i] : top[h];
    }
    #pragma omp for schedule(static) reduction(+: total[:nh])
    for (long t = 0; t < spans; t++) {
        long p = t * SPAN, width = end - p < SPAN ? end - p : SPAN;
        for (long h = 0; h < nh; h++) {
            float *sh = s + h * end, sum = 0;
            #pragma omp simd reduction(+:sum)
            for (long i = p; i < p + width; i++) sum += sh[i] = exp_approx(sh[i] - top[h]);
            total[h] += sum;
        }
    }
    #pragma omp for schedule(static)
    for (long t = 0; t < (g1 - g0) * (dh / 4); t++) {
        long g = g0 + t / (dh / 4), j = t % (dh / 4) * 4;
        const void *vj = bf16 ? (const void *)((const uint16_t *)v + (g * dh + j) * nctx)
                              : (const void *)((const float *)v + (g * dh + j) * nctx);
        for (long h = 0; h < group; h += QHEADS)
            BY_HEADS(group - h, values_rows(s + ((g - g0) * group + h) * end, NQ, vj, nctx, end,
                                            total + (g - g0) * group + h, q + (g * group + h) * dh + j, dh, bf16));
    }
}

/* Every K/V head, at_once of them at a time (as many as their scores fit), in one parallel region */
AVX2 static inline __attribute__((always_inline)) void attend_avx2(float *q, const void *k, const void *v, long nkvh,
                                                                    long group, long dh, long nctx, long end, float *s,
                                                                    long at_once, int bf16) {
    float top[at_once * group], total[at_once * group];
    #pragma omp parallel if (end * nkvh * group > 4096)
    for (long g = 0; g < nkvh; g += at_once)
        attend_heads(q, k, v, g, g + at_once < nkvh ? g + at_once : nkvh, group, dh, nctx, end, s, top, total, bf16);
}
AVX2 static void attend_avx2_f32(float *q, const void *k, const void *v, long nkvh, long group, long dh, long nctx,
                                 long end, float *s, long at_once) {
    attend_avx2(q, k, v, nkvh, group, dh, nctx, end, s, at_once, 0);
}
AVX2 static void attend_avx2_bf16(float *q, const void *k, const void *v, long nkvh, long group, long dh, long nctx,
                                  long end, float *s, long at_once) {
    attend_avx2(q, k, v, nkvh, group, dh, nctx, end, s, at_once, 1);
}
#endif

/* Decode's products on float weights (f32, or bf16 widened): y[i, r] (+)= x[i] . w[r], w's rows
 * (out, in) in memory. One row of w streams from memory once and meets every row of x from the
 * cache; four chains of sums, so the multiply-adds do not wait on each other. torch's f32
 * vector-matrix product read about two thirds of what a sum over memory reads here, its bf16
 * one under half. */
/* Rows of w against n float32 rows of x. T, w's and y's type, is float or uint16_t (bf16);
 * WIDEN(v) is its value as a float, STORE(f) a float as a T. */
#define FLOAT_ROWS(name, T, WIDEN, STORE)                                                            \
VECTOR static void name(const T *w, long rows, long cols, const float *x, long n, long xs, T *y, long ys, \
                        int accumulate) {                                                             \
    for (long r = 0; r < rows; r++)                                                                   \
        for (long i = 0; i < n; i++) {                                                                \
            const T *a = w + r * cols;                                                                \
            const float *b = x + i * xs;                                                              \
            float s[32] = {0}, sum;   /* 32 partial sums: four vectors of 8 with AVX2 */              \
            long j = 0;                                                                               \
            for (; j + 32 <= cols; j += 32) {                                                         \
                for (int c = 0; c < 32 * (int)sizeof(T); c += 64)                                     \
                    __builtin_prefetch((const char *)(a + j) + AHEAD + c);                            \
                for (int k = 0; k < 32; k++) s[k] += WIDEN(a[j + k]) * b[j + k];                      \
            }                                                                                         \
            for (int h = 16; h; h /= 2)   /* a tree: 32 adds in a row took longer than the row */    \
                for (int k = 0; k < h; k++) s[k] += s[k + h];                                         \
            sum = s[0];                                                                               \
            for (; j < cols; j++) sum += WIDEN(a[j]) * b[j];                                          \
            if (accumulate) sum += WIDEN(y[i * ys + r]);                                              \
            y[i * ys + r] = STORE(sum);                                                               \
        }                                                                                             \
}
#define SAME(v) (v)
FLOAT_ROWS(rows_f32, float, SAME, SAME)
FLOAT_ROWS(rows_bf16, uint16_t, bf16_float, float_bf16)

#if defined(__x86_64__) || defined(__i386__)
/* bf16 rows with AVX2. A 32-bit lane of 16 loaded values holds value 2l in its low half and 2l + 1
 * in its high half, so a shift and a mask make float32 of both, with no widening loads (2 - 3
 * times the instructions a byte of float32, which left the plain loop at the CPU's limit, not
 * memory's); x comes with each 16 values of its first cols / 32 * 32 stored evens first (widen_rows). */
AVX2 static void rows_bf16_avx2(const uint16_t *w, long rows, long cols, const float *x, long n, long xs, uint16_t *y,
                                long ys, int accumulate) {
    const __m256i high = _mm256_set1_epi32((int)0xffff0000u);
    long full = cols / 32 * 32;
    for (long r = 0; r < rows; r++)
        for (long i = 0; i < n; i++) {
            const uint16_t *a = w + r * cols;
            const float *b = x + i * xs;
            __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
            long j = 0;
            for (; j < full; j += 32) {
                _mm_prefetch((const char *)(a + j) + AHEAD, _MM_HINT_T0);
                for (int k = 0; k < 2; k++) {
                    __m256i v = _mm256_loadu_si256((const __m256i *)(a + j + 16 * k));
                    acc[2 * k] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(v, 16)),
                                                 _mm256_loadu_ps(b + j + 16 * k), acc[2 * k]);
                    acc[2 * k + 1] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(v, high)),
                                                     _mm256_loadu_ps(b + j + 16 * k + 8), acc[2 * k + 1]);
                }
            }
            float sum = sum8(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
            for (; j < cols; j++) sum += bf16_float(a[j]) * b[j];
            if (accumulate) sum += bf16_float(y[i * ys + r]);
            y[i * ys + r] = float_bf16(sum);
        }
}
#endif

/* n rows of bf16 x as float32 rows of cols, in xf; the first `paired` values of each row (a
 * multiple of 16) with each 16 stored evens first, then odds (see rows_bf16_avx2) */
static void widen_rows(const uint16_t *x, long n, long xs, long cols, long paired, float *xf) {
    for (long i = 0; i < n; i++) {
        const uint16_t *xi = x + i * xs;
        float *out = xf + i * cols;
        for (long j = 0; j < paired; j += 16)
            for (int k = 0; k < 8; k++) {
                out[j + k] = bf16_float(xi[j + 2 * k]);
                out[j + 8 + k] = bf16_float(xi[j + 2 * k + 1]);
            }
        for (long j = paired; j < cols; j++) out[j] = bf16_float(xi[j]);
    }
}

#define F(addr) ((float *)(uintptr_t)(addr))

#define P(addr) ((void *)(uintptr_t)(addr))

static PyObject *rms_norm(PyObject *self, PyObject *args) {
    int bf16;
    unsigned long long x, w, y;
    long n, xs, ys, d;
    float eps;
    if (!PyArg_ParseTuple(args, "pKllKKllf", &bf16, &x, &n, &xs, &w, &y, &ys, &d, &eps)) return NULL;
    (bf16 ? rms_norm_rows_bf16 : rms_norm_rows_f32)(P(x), n, xs, P(w), P(y), ys, d, eps);
    Py_RETURN_NONE;
}

static PyObject *rope(PyObject *self, PyObject *args) {
    int bf16;
    unsigned long long x, cos, sin;
    long n, xs, heads, dh, start;
    if (!PyArg_ParseTuple(args, "pKllllKKl", &bf16, &x, &n, &xs, &heads, &dh, &cos, &sin, &start)) return NULL;
    long row = start * dh * (bf16 ? 2 : 4);   /* bytes to the tables' row of position start */
    (bf16 ? rope_rows_bf16 : rope_rows_f32)(P(x), n, xs, heads, dh, (char *)P(cos) + row, (char *)P(sin) + row);
    Py_RETURN_NONE;
}

static PyObject *swiglu(PyObject *self, PyObject *args) {
    int bf16;
    unsigned long long ffn;
    long n, stride, di;
    if (!PyArg_ParseTuple(args, "pKlll", &bf16, &ffn, &n, &stride, &di)) return NULL;
#if defined(__x86_64__)
    /* Subnormal results as zero (FTZ; inputs stay as they are) for the loop: for lanes whose
     * input the exponential clamps, GCC also computes gate / (1 + e^88), then discards it, and
     * that is subnormal for every gate under 1 in size, which the CPU takes its slow path for:
     * the loop ran 7-12 times slower (docs/executor.md, Speed). */
    unsigned int csr = _mm_getcsr();
    _mm_setcsr(csr | 0x8000);
    (bf16 ? swiglu_rows_bf16 : swiglu_rows_f32)(P(ffn), n, stride, di);
    _mm_setcsr(csr);
#else
    (bf16 ? swiglu_rows_bf16 : swiglu_rows_f32)(P(ffn), n, stride, di);
#endif
    Py_RETURN_NONE;
}

/* The token's keys and values, which follow the queries in q's row, go to position end - 1 */
static void append(int bf16, void *q, void *k, void *v, long nh, long nkvh, long dh, long nctx, long end) {
    for (long j = 0; j < nkvh * dh; j++) {
        long key = bf16 ? (j / dh * nctx + end - 1) * dh + j % dh : j * nctx + end - 1;   /* by position in bf16 */
        put(k, key, get(q, nh * dh + j, bf16), bf16);   /* a bf16 value comes back the same from float32 */
        put(v, j * nctx + end - 1, get(q, (nh + nkvh) * dh + j, bf16), bf16);
    }
}

static PyObject *attend_one(PyObject *self, PyObject *args) {
    int bf16;
    unsigned long long q, k, v, scores;
    long nkvh, group, dh, nctx, end, room;
    float scale;
    if (!PyArg_ParseTuple(args, "pKKKllllfKll", &bf16, &q, &k, &v, &nkvh, &group, &dh, &nctx, &scale, &scores, &room,
                          &end)) return NULL;
    long nh = nkvh * group, at_once = room / (group * end), size = bf16 ? 2 : 4;
    if (at_once < 1) {
        PyErr_Format(PyExc_ValueError, "attend_one: %ld floats of scores, under one K/V head's %ld", room, group * end);
        return NULL;
    }
    if (at_once > nkvh) at_once = nkvh;   /* attend_avx2 keeps at_once heads' maxima and sums on the stack: decode's
                                           * scores have room for every head over the whole context, far more early on */
    append(bf16, P(q), P(k), P(v), nh, nkvh, dh, nctx, end);
    int fast = avx2 && dh % (bf16 ? 16 : 4) == 0;
    float *qf = F(q);   /* the queries as float32, scaled; in bf16 a copy, paired for the AVX2 scores */
    if (bf16) {
        if (!(qf = PyMem_RawMalloc(nh * dh * sizeof(float)))) return PyErr_NoMemory();
        widen_rows(P(q), nh, dh, dh, fast ? dh : 0, qf);
    }
    for (long i = 0; i < nh * dh; i++) qf[i] *= scale;
    Py_BEGIN_ALLOW_THREADS
#if defined(__x86_64__) || defined(__i386__)
    if (fast) {
        (bf16 ? attend_avx2_bf16 : attend_avx2_f32)(qf, P(k), P(v), nkvh, group, dh, nctx, end, F(scores), at_once);
        goto done;
    }
#endif
    for (long g0 = 0; g0 < nkvh; g0 += at_once) {   /* as many K/V heads at a time as their scores fit */
        long g1 = g0 + at_once < nkvh ? g0 + at_once : nkvh;
        #pragma omp parallel for schedule(static) if (end * (g1 - g0) * group > 4096)
        for (long h = g0 * group; h < g1 * group; h++) {
            long head = h / group * dh * nctx * size;   /* bytes to the K/V head's keys and values */
            (bf16 ? attend_head_bf16 : attend_head_f32)(qf + h * dh, (char *)P(k) + head, (char *)P(v) + head, nctx,
                                                        end, dh, F(scores) + (h - g0 * group) * end);
        }
    }
done:
    Py_END_ALLOW_THREADS
    if (bf16) {
        for (long i = 0; i < nh * dh; i++) ((uint16_t *)P(q))[i] = float_bf16(qf[i]);
        PyMem_RawFree(qf);
    }
    Py_RETURN_NONE;
}

static PyObject *matvec(PyObject *self, PyObject *args) {
    int bf16, accumulate;
    unsigned long long w, x, y;
    long rows, cols, n, xs, ys;
    if (!PyArg_ParseTuple(args, "pKllKllKlp", &bf16, &w, &rows, &cols, &x, &n, &xs, &y, &ys, &accumulate)) return NULL;
    float *xf = F(x);
    if (bf16) {   /* x widened once, not once per row of w: n * cols floats held for the call */
        if (!(xf = PyMem_RawMalloc(n * cols * sizeof(float)))) return PyErr_NoMemory();
        widen_rows((const uint16_t *)(uintptr_t)x, n, xs, cols, avx2 ? cols / 32 * 32 : 0, xf);
        xs = cols;
    }
    Py_BEGIN_ALLOW_THREADS
    #pragma omp parallel
    {
        long t = omp_get_thread_num(), threads = omp_get_num_threads();
        long r0 = rows * t / threads, r1 = rows * (t + 1) / threads;
        const uint16_t *w16 = (const uint16_t *)(uintptr_t)w + r0 * cols;
        uint16_t *y16 = (uint16_t *)(uintptr_t)y + r0;
#if defined(__x86_64__) || defined(__i386__)
        if (bf16 && avx2)
            rows_bf16_avx2(w16, r1 - r0, cols, xf, n, xs, y16, ys, accumulate);
        else
#endif
        if (bf16)
            rows_bf16(w16, r1 - r0, cols, xf, n, xs, y16, ys, accumulate);
        else
            rows_f32(F(w) + r0 * cols, r1 - r0, cols, xf, n, xs, F(y) + r0, ys, accumulate);
    }
    Py_END_ALLOW_THREADS
    if (bf16) PyMem_RawFree(xf);
    Py_RETURN_NONE;
}

static PyObject *use_avx2(PyObject *self, PyObject *arg) {
    int flag = PyObject_IsTrue(arg), previous = avx2;
    if (flag < 0) return NULL;
    avx2 = flag && has_avx2();
    return PyBool_FromLong(previous);
}

static PyMethodDef methods[] = {
    {"use_avx2", use_avx2, METH_O, "use_avx2(flag) -> the previous setting: the products' and lookups' AVX2 code "
     "where the CPU has it (the default), else their plain C (which tests compare)"},
    {"group", group, METH_VARARGS, "group(kind, w, rows, blocks, to_groups): GGUF rows to the kernels' groups of 8 "
     "blocks, or back, in place (see kernels.c)"},
    {"matmul", matmul, METH_VARARGS, "y (+)= x @ w.T for w in the kernels' groups (see kernels.c)"},
    {"lookup", lookup, METH_VARARGS, "rows of w in the kernels' groups as float32 (see kernels.c)"},
    {"matvec", matvec, METH_VARARGS, "matvec(bf16, w, rows, cols, x, n, x_stride, y, y_stride, accumulate): y (+)= x @ w.T "
     "for float32 (or bf16) rows of w, contiguous (rows, cols); a few rows of x"},
    {"rms_norm", rms_norm, METH_VARARGS, "rms_norm(bf16, x, n, x_stride, w, y, y_stride, d, eps): float32 (or bf16) rows"},
    {"rope", rope, METH_VARARGS, "rope(bf16, x, n, x_stride, heads, dh, cos, sin, start): rotate heads in place at "
     "positions start .. start + n of the cos and sin tables"},
    {"swiglu", swiglu, METH_VARARGS, "swiglu(bf16, ffn, n, stride, di): gate = silu(gate) * up in place"},
    {"attend_one", attend_one, METH_VARARGS,
     "attend_one(bf16, q, keys, values, nkvh, group, dh, nctx, scale, scores, room, end): decode attention over "
     "positions 0 .. end of a layer's cache, the token's K and V (after q in its row) appended at end - 1 first; the "
     "output over q; scores has room for `room` float32"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) {
    avx2 = has_avx2();
    PyObject *m = PyModule_Create(&module);
    if (m) {
        PyModule_AddIntConstant(m, "avx2", avx2);
        PyModule_AddIntConstant(m, "XBLOCK_BYTES", sizeof(XBlock));   /* what matmul holds per 32 values of x */
        PyModule_AddStringConstant(m, "SOURCE_SHA256", SOURCE_SHA256);   /* setup.py's; planner/compiled.py checks it */
    }
    return m;
}
