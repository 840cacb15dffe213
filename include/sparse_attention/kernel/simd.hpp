// SPDX-License-Identifier: Apache-2.0
// The few vector operations the tile engine needs, for AVX-512 and AVX2+FMA, float and double.
// SPARSE_ATTENTION_SIMD_WIDTH is the vector width in bytes of the instruction set the translation
// unit is compiled for (64, 32), or 0 when neither is available: the kernel then uses its portable
// Eigen engine.
#pragma once

#include <algorithm>
#include <cstdint>

#include "sparse_attention/config.hpp"
#include "sparse_attention/core/types.hpp"

#if !defined(SPARSE_ATTENTION_PORTABLE_KERNEL) && defined(__AVX512F__)
#define SPARSE_ATTENTION_SIMD_WIDTH 64
#elif !defined(SPARSE_ATTENTION_PORTABLE_KERNEL) && defined(__AVX2__) && defined(__FMA__)
#define SPARSE_ATTENTION_SIMD_WIDTH 32
#else
#define SPARSE_ATTENTION_SIMD_WIDTH 0
#endif

#if SPARSE_ATTENTION_SIMD_WIDTH > 0
#include <immintrin.h>

namespace sparse_attention::detail::simd {

// Minimax-quality polynomials for 2^f on [-1/2, 1/2] (Chebyshev fits; relative error 2.5e-9 for
// float at degree 6, 4.2e-18 for double at degree 11), highest degree first.
inline constexpr float kExp2Float[] = {1.5461444698569129e-4f, 1.3400428177615838e-3f, 9.6180566785246381e-3f,
                                       5.5503272266703021e-2f, 2.4022650922288758e-1f, 6.9314720670283260e-1f,
                                       1.0f};
inline constexpr double kExp2Double[] = {
    4.455817908336064493e-10, 7.074194297288521006e-9, 1.017805708773394110e-7, 1.321543253591237617e-6,
    1.525273384155677259e-5,  1.540353046372435420e-4, 1.333355814640647070e-3, 9.618129107587256668e-3,
    5.550410866482162704e-2,  2.402265069591015957e-1, 6.931471805599453093e-1, 9.999999999999999969e-1};

template <class T>
struct Vec;

#if SPARSE_ATTENTION_SIMD_WIDTH == 64

template <>
struct Vec<float> {
  static constexpr int kLanes = 16;
  __m512 v;
  static SPARSE_ATTENTION_ALWAYS_INLINE Vec load(const float* p) { return {_mm512_loadu_ps(p)}; }
  static SPARSE_ATTENTION_ALWAYS_INLINE Vec set1(float x) { return {_mm512_set1_ps(x)}; }
  static SPARSE_ATTENTION_ALWAYS_INLINE Vec zero() { return {_mm512_setzero_ps()}; }
  SPARSE_ATTENTION_ALWAYS_INLINE void store(float* p) const { _mm512_storeu_ps(p, v); }
};
template <>
struct Vec<double> {
  static constexpr int kLanes = 8;
  __m512d v;
  static SPARSE_ATTENTION_ALWAYS_INLINE Vec load(const double* p) { return {_mm512_loadu_pd(p)}; }
  static SPARSE_ATTENTION_ALWAYS_INLINE Vec set1(double x) { return {_mm512_set1_pd(x)}; }
  static SPARSE_ATTENTION_ALWAYS_INLINE Vec zero() { return {_mm512_setzero_pd()}; }
  SPARSE_ATTENTION_ALWAYS_INLINE void store(double* p) const { _mm512_storeu_pd(p, v); }
};

SPARSE_ATTENTION_ALWAYS_INLINE Vec<float> fma(Vec<float> a, Vec<float> b, Vec<float> c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
SPARSE_ATTENTION_ALWAYS_INLINE Vec<double> fma(Vec<double> a, Vec<double> b, Vec<double> c) { return {_mm512_fmadd_pd(a.v, b.v, c.v)}; }
SPARSE_ATTENTION_ALWAYS_INLINE Vec<float> operator+(Vec<float> a, Vec<float> b) { return {_mm512_add_ps(a.v, b.v)}; }
SPARSE_ATTENTION_ALWAYS_INLINE Vec<double> operator+(Vec<double> a, Vec<double> b) { return {_mm512_add_pd(a.v, b.v)}; }
SPARSE_ATTENTION_ALWAYS_INLINE Vec<float> operator-(Vec<float> a, Vec<float> b) { return {_mm512_sub_ps(a.v, b.v)}; }
SPARSE_ATTENTION_ALWAYS_INLINE Vec<double> operator-(Vec<double> a, Vec<double> b) { return {_mm512_sub_pd(a.v, b.v)}; }
SPARSE_ATTENTION_ALWAYS_INLINE Vec<float> operator*(Vec<float> a, Vec<float> b) { return {_mm512_mul_ps(a.v, b.v)}; }
SPARSE_ATTENTION_ALWAYS_INLINE Vec<double> operator*(Vec<double> a, Vec<double> b) { return {_mm512_mul_pd(a.v, b.v)}; }
// max(a, b) returns b when either is NaN (the x86 rule); callers put the running value in a.
SPARSE_ATTENTION_ALWAYS_INLINE Vec<float> max(Vec<float> a, Vec<float> b) { return {_mm512_max_ps(a.v, b.v)}; }
SPARSE_ATTENTION_ALWAYS_INLINE Vec<double> max(Vec<double> a, Vec<double> b) { return {_mm512_max_pd(a.v, b.v)}; }
// Lanes whose value is not zero (NaN counts as non-zero), and c + a * b on those lanes only, c
// elsewhere: a product with a zero probability then never turns c into NaN when a is NaN or Inf.
template <class T>
struct NonZero;
template <>
struct NonZero<float> { __mmask16 m; };
template <>
struct NonZero<double> { __mmask8 m; };
SPARSE_ATTENTION_ALWAYS_INLINE NonZero<float> nonzero(Vec<float> x) { return {_mm512_cmp_ps_mask(x.v, _mm512_setzero_ps(), _CMP_NEQ_UQ)}; }
SPARSE_ATTENTION_ALWAYS_INLINE NonZero<double> nonzero(Vec<double> x) { return {_mm512_cmp_pd_mask(x.v, _mm512_setzero_pd(), _CMP_NEQ_UQ)}; }
SPARSE_ATTENTION_ALWAYS_INLINE Vec<float> fma_where(NonZero<float> k, Vec<float> a, Vec<float> b, Vec<float> c) {
  return {_mm512_mask3_fmadd_ps(a.v, b.v, c.v, k.m)};
}
SPARSE_ATTENTION_ALWAYS_INLINE Vec<double> fma_where(NonZero<double> k, Vec<double> a, Vec<double> b, Vec<double> c) {
  return {_mm512_mask3_fmadd_pd(a.v, b.v, c.v, k.m)};
}
// Bit l set iff lane l of a is greater than lane l of b (false for NaN).
SPARSE_ATTENTION_ALWAYS_INLINE unsigned greater_bits(Vec<float> a, Vec<float> b) { return _mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ); }
SPARSE_ATTENTION_ALWAYS_INLINE unsigned greater_bits(Vec<double> a, Vec<double> b) { return _mm512_cmp_pd_mask(a.v, b.v, _CMP_GT_OQ); }
SPARSE_ATTENTION_ALWAYS_INLINE Vec<float> max0(Vec<float> x) { return {_mm512_max_ps(x.v, _mm512_setzero_ps())}; }
SPARSE_ATTENTION_ALWAYS_INLINE Vec<double> max0(Vec<double> x) { return {_mm512_max_pd(x.v, _mm512_setzero_pd())}; }
SPARSE_ATTENTION_ALWAYS_INLINE float reduce_add(Vec<float> x) { return _mm512_reduce_add_ps(x.v); }
SPARSE_ATTENTION_ALWAYS_INLINE double reduce_add(Vec<double> x) { return _mm512_reduce_add_pd(x.v); }
SPARSE_ATTENTION_ALWAYS_INLINE float reduce_max(Vec<float> x) { return _mm512_reduce_max_ps(x.v); }
SPARSE_ATTENTION_ALWAYS_INLINE double reduce_max(Vec<double> x) { return _mm512_reduce_max_pd(x.v); }
// Lane l of the result: lane l of b where bit l of `bits` is set, else lane l of a.
SPARSE_ATTENTION_ALWAYS_INLINE Vec<float> blend(unsigned bits, Vec<float> a, Vec<float> b) {
  return {_mm512_mask_blend_ps(static_cast<__mmask16>(bits), a.v, b.v)};
}
SPARSE_ATTENTION_ALWAYS_INLINE Vec<double> blend(unsigned bits, Vec<double> a, Vec<double> b) {
  return {_mm512_mask_blend_pd(static_cast<__mmask8>(bits), a.v, b.v)};
}

// Stores the lanes of x whose bit is set in `bits`, packed, at out; with keys first + lane at keys.
// Both need room for a whole vector (a register compress and a full store: the memory-destination
// compress is microcoded on AMD). Returns how many.
SPARSE_ATTENTION_ALWAYS_INLINE unsigned compress_store(Vec<float> x, unsigned bits, std::int32_t first, float* out,
                                                       std::int32_t* keys) {
  const __mmask16 m = static_cast<__mmask16>(bits);
  _mm512_storeu_ps(out, _mm512_maskz_compress_ps(m, x.v));
  _mm512_storeu_si512(keys, _mm512_maskz_compress_epi32(m, _mm512_add_epi32(_mm512_set1_epi32(first), _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))));
  return static_cast<unsigned>(__builtin_popcount(bits));
}
SPARSE_ATTENTION_ALWAYS_INLINE unsigned compress_store(Vec<double> x, unsigned bits, std::int32_t first, double* out,
                                                       std::int32_t* keys) {
  const __mmask8 m = static_cast<__mmask8>(bits);
  _mm512_storeu_pd(out, _mm512_maskz_compress_pd(m, x.v));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(keys),
                      _mm256_maskz_compress_epi32(m, _mm256_add_epi32(_mm256_set1_epi32(first), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))));
  return static_cast<unsigned>(__builtin_popcount(bits));
}
// Writes first + i for every set bit i of `bits`, ascending, at out, which needs room for the count
// plus 16 (whole-vector stores). Returns the count. Four compresses of 16 positions, no branch on the
// bits: a loop over the set bits mispredicts its exit once per word.
SPARSE_ATTENTION_ALWAYS_INLINE unsigned bit_positions(std::uint64_t bits, std::int32_t first, std::int32_t* out) {
  const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  unsigned n = 0;
  for (int quarter = 0; quarter < 4; ++quarter) {
    const auto m = static_cast<__mmask16>(bits >> (16 * quarter));
    const __m512i positions = _mm512_add_epi32(lanes, _mm512_set1_epi32(first + 16 * quarter));
    _mm512_storeu_si512(out + n, _mm512_maskz_compress_epi32(m, positions));
    n += static_cast<unsigned>(__builtin_popcount(m));
  }
  return n;
}
// Lanes where a >= b.
SPARSE_ATTENTION_ALWAYS_INLINE unsigned greater_equal_bits(Vec<float> a, Vec<float> b) {
  return _mm512_cmp_ps_mask(a.v, b.v, _CMP_GE_OQ);
}
SPARSE_ATTENTION_ALWAYS_INLINE unsigned greater_equal_bits(Vec<double> a, Vec<double> b) {
  return _mm512_cmp_pd_mask(a.v, b.v, _CMP_GE_OQ);
}

// Packs the lanes of x and of keys[0, lanes) whose bit is set to out and keys_out, which must have room
// for a whole vector (the lanes past the packed ones are overwritten). out may be the input's own memory
// at or before it. Returns how many.
SPARSE_ATTENTION_ALWAYS_INLINE unsigned compress_pairs(Vec<float> x, const std::int32_t* keys, unsigned bits, float* out,
                                                       std::int32_t* keys_out) {
  const __mmask16 m = static_cast<__mmask16>(bits);
  const __m512i k = _mm512_loadu_si512(keys);
  _mm512_storeu_ps(out, _mm512_maskz_compress_ps(m, x.v));
  _mm512_storeu_si512(keys_out, _mm512_maskz_compress_epi32(m, k));
  return static_cast<unsigned>(__builtin_popcount(bits));
}
SPARSE_ATTENTION_ALWAYS_INLINE unsigned compress_pairs(Vec<double> x, const std::int32_t* keys, unsigned bits, double* out,
                                                       std::int32_t* keys_out) {
  const __mmask8 m = static_cast<__mmask8>(bits);
  const __m256i k = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(keys));
  _mm512_storeu_pd(out, _mm512_maskz_compress_pd(m, x.v));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(keys_out), _mm256_maskz_compress_epi32(m, k));
  return static_cast<unsigned>(__builtin_popcount(bits));
}

// Sets column c of S^T (its ld lanes at st + c * ld, ld a multiple of the vector width) to -inf where
// bit c - c0 of row_bits[lane] is clear, for c in [c0, c_end), c_end - c0 <= 64: per column and vector,
// "bit clear" tests of the lanes' 64-bit words straight into a store mask, no load of the scores.
template <class T>
void forbid_clear_bits(T* st, Index ld, Index c0, Index c_end, const std::uint64_t* row_bits) {
  constexpr int W = Vec<T>::kLanes;
  for (Index r = 0; r < ld; r += W) {
    const __m512i lo = _mm512_loadu_si512(row_bits + r);
    [[maybe_unused]] const __m512i hi = W == 16 ? _mm512_loadu_si512(row_bits + r + 8) : lo;
    __m512i bit = _mm512_set1_epi64(1);
    for (Index c = c0; c < c_end; ++c, bit = _mm512_slli_epi64(bit, 1)) {
      if constexpr (W == 16) {
        const __mmask16 forbidden = _mm512_kunpackb(_mm512_testn_epi64_mask(hi, bit), _mm512_testn_epi64_mask(lo, bit));
        _mm512_mask_storeu_ps(st + c * ld + r, forbidden, _mm512_set1_ps(-__builtin_inff()));
      } else {
        _mm512_mask_storeu_pd(st + c * ld + r, _mm512_testn_epi64_mask(lo, bit), _mm512_set1_pd(-__builtin_inf()));
      }
    }
  }
}

// x where x > -inf, else 0.
SPARSE_ATTENTION_ALWAYS_INLINE Vec<float> zero_if_minus_inf(Vec<float> x) {
  return {_mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x.v, _mm512_set1_ps(-__builtin_inff()), _CMP_NEQ_UQ), x.v)};
}
SPARSE_ATTENTION_ALWAYS_INLINE Vec<double> zero_if_minus_inf(Vec<double> x) {
  return {_mm512_maskz_mov_pd(_mm512_cmp_pd_mask(x.v, _mm512_set1_pd(-__builtin_inf()), _CMP_NEQ_UQ), x.v)};
}

// 2^x. Results below the normal range are flushed to +0 (so -inf gives 0); NaN stays NaN.
// No lane ever computes a subnormal: the argument is clamped to the normal range and lanes below it
// are zeroed by a mask. A subnormal (or underflowing) result costs a microcode assist of ~100+ cycles
// on Intel cores unless FTZ is set, and every masked score (-inf) used to take one: strided attention
// ran 3.5x slower on a Sapphire Rapids class Xeon than with FTZ. The flushed values are below 2^-126 of
// the largest probability of their row (which is 1), far below float's rounding of the row's sum.
SPARSE_ATTENTION_ALWAYS_INLINE Vec<float> exp2(Vec<float> x) {
  const __m512 lowest = _mm512_set1_ps(-126.0f);
  const __m512 c = _mm512_max_ps(lowest, x.v);  // NaN in x passes through
  const __m512 n = _mm512_roundscale_ps(c, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(c, n);  // n >= -126, and f >= 0 where n = -126: 2^f * 2^n is normal
  __m512 p = _mm512_set1_ps(kExp2Float[0]);
  for (int i = 1; i < 7; ++i) p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2Float[i]));
  return {_mm512_maskz_scalef_ps(_mm512_cmp_ps_mask(x.v, lowest, _CMP_NLT_UQ), p, n)};
}
SPARSE_ATTENTION_ALWAYS_INLINE Vec<double> exp2(Vec<double> x) {
  const __m512d lowest = _mm512_set1_pd(-1022.0);
  const __m512d c = _mm512_max_pd(lowest, x.v);
  const __m512d n = _mm512_roundscale_pd(c, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512d f = _mm512_sub_pd(c, n);
  __m512d p = _mm512_set1_pd(kExp2Double[0]);
  for (int i = 1; i < 12; ++i) p = _mm512_fmadd_pd(p, f, _mm512_set1_pd(kExp2Double[i]));
  return {_mm512_maskz_scalef_pd(_mm512_cmp_pd_mask(x.v, lowest, _CMP_NLT_UQ), p, n)};
}

// Lane j of the result: the sum of the lanes of acc[j] (one dot product per lane, 16 of them).
// Pairs of vectors are folded within 128-bit lanes twice, then the 128-bit lanes across vectors.
SPARSE_ATTENTION_ALWAYS_INLINE Vec<float> sum_lanes(const Vec<float> (&acc)[16]) {
  __m512 quads[4];
  for (int g = 0; g < 4; ++g) {
    __m512 pairs[2];
    for (int h = 0; h < 2; ++h) {
      const __m512 x = acc[4 * g + 2 * h].v, y = acc[4 * g + 2 * h + 1].v;
      pairs[h] = _mm512_add_ps(_mm512_unpacklo_ps(x, y), _mm512_unpackhi_ps(x, y));
    }
    const __m512d a = _mm512_castps_pd(pairs[0]), b = _mm512_castps_pd(pairs[1]);
    // 128-bit lane l: the partial sums over lane l of acc[4g .. 4g + 3].
    quads[g] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
  }
  const __m512 halves01 = _mm512_add_ps(_mm512_shuffle_f32x4(quads[0], quads[1], 0x88), _mm512_shuffle_f32x4(quads[0], quads[1], 0xdd));
  const __m512 halves23 = _mm512_add_ps(_mm512_shuffle_f32x4(quads[2], quads[3], 0x88), _mm512_shuffle_f32x4(quads[2], quads[3], 0xdd));
  return {_mm512_add_ps(_mm512_shuffle_f32x4(halves01, halves23, 0x88), _mm512_shuffle_f32x4(halves01, halves23, 0xdd))};
}
SPARSE_ATTENTION_ALWAYS_INLINE Vec<double> sum_lanes(const Vec<double> (&acc)[8]) {
  alignas(64) double sums[8];
  for (int j = 0; j < 8; ++j) sums[j] = _mm512_reduce_add_pd(acc[j].v);
  return {_mm512_load_pd(sums)};
}

// Transposes the 16 x 16 block src[r * ld + c] (r, c < 16) into 16 vectors: out[c] holds column c.
SPARSE_ATTENTION_ALWAYS_INLINE void transpose16(const float* src, std::int64_t ld, __m512 (&out)[16]) {
  __m512 a[16], b[16];
  for (int r = 0; r < 16; ++r) a[r] = _mm512_loadu_ps(src + r * ld);
  // Interleave pairs of rows, then pairs of pairs, then 128-bit lanes twice: four butterfly stages.
  for (int r = 0; r < 16; r += 2) {
    b[r] = _mm512_unpacklo_ps(a[r], a[r + 1]);
    b[r + 1] = _mm512_unpackhi_ps(a[r], a[r + 1]);
  }
  for (int r = 0; r < 16; r += 4) {
    a[r] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(b[r]), _mm512_castps_pd(b[r + 2])));
    a[r + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(b[r]), _mm512_castps_pd(b[r + 2])));
    a[r + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(b[r + 1]), _mm512_castps_pd(b[r + 3])));
    a[r + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(b[r + 1]), _mm512_castps_pd(b[r + 3])));
  }
  for (int r = 0; r < 8; ++r) {
    const int i = (r / 4) * 8 + r % 4;
    b[i] = _mm512_shuffle_f32x4(a[i], a[i + 4], 0x88);
    b[i + 4] = _mm512_shuffle_f32x4(a[i], a[i + 4], 0xdd);
  }
  for (int r = 0; r < 8; ++r) {
    out[r] = _mm512_shuffle_f32x4(b[r], b[r + 8], 0x88);
    out[r + 8] = _mm512_shuffle_f32x4(b[r], b[r + 8], 0xdd);
  }
}

#else  // AVX2 + FMA

template <>
struct Vec<float> {
  static constexpr int kLanes = 8;
  __m256 v;
  static SPARSE_ATTENTION_ALWAYS_INLINE Vec load(const float* p) { return {_mm256_loadu_ps(p)}; }
  static SPARSE_ATTENTION_ALWAYS_INLINE Vec set1(float x) { return {_mm256_set1_ps(x)}; }
  static SPARSE_ATTENTION_ALWAYS_INLINE Vec zero() { return {_mm256_setzero_ps()}; }
  SPARSE_ATTENTION_ALWAYS_INLINE void store(float* p) const { _mm256_storeu_ps(p, v); }
};
template <>
struct Vec<double> {
  static constexpr int kLanes = 4;
  __m256d v;
  static SPARSE_ATTENTION_ALWAYS_INLINE Vec load(const double* p) { return {_mm256_loadu_pd(p)}; }
  static SPARSE_ATTENTION_ALWAYS_INLINE Vec set1(double x) { return {_mm256_set1_pd(x)}; }
  static SPARSE_ATTENTION_ALWAYS_INLINE Vec zero() { return {_mm256_setzero_pd()}; }
  SPARSE_ATTENTION_ALWAYS_INLINE void store(double* p) const { _mm256_storeu_pd(p, v); }
};

SPARSE_ATTENTION_ALWAYS_INLINE Vec<float> fma(Vec<float> a, Vec<float> b, Vec<float> c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
SPARSE_ATTENTION_ALWAYS_INLINE Vec<double> fma(Vec<double> a, Vec<double> b, Vec<double> c) { return {_mm256_fmadd_pd(a.v, b.v, c.v)}; }
SPARSE_ATTENTION_ALWAYS_INLINE Vec<float> operator+(Vec<float> a, Vec<float> b) { return {_mm256_add_ps(a.v, b.v)}; }
SPARSE_ATTENTION_ALWAYS_INLINE Vec<double> operator+(Vec<double> a, Vec<double> b) { return {_mm256_add_pd(a.v, b.v)}; }
SPARSE_ATTENTION_ALWAYS_INLINE Vec<float> operator-(Vec<float> a, Vec<float> b) { return {_mm256_sub_ps(a.v, b.v)}; }
SPARSE_ATTENTION_ALWAYS_INLINE Vec<double> operator-(Vec<double> a, Vec<double> b) { return {_mm256_sub_pd(a.v, b.v)}; }
SPARSE_ATTENTION_ALWAYS_INLINE Vec<float> operator*(Vec<float> a, Vec<float> b) { return {_mm256_mul_ps(a.v, b.v)}; }
SPARSE_ATTENTION_ALWAYS_INLINE Vec<double> operator*(Vec<double> a, Vec<double> b) { return {_mm256_mul_pd(a.v, b.v)}; }
SPARSE_ATTENTION_ALWAYS_INLINE Vec<float> max(Vec<float> a, Vec<float> b) { return {_mm256_max_ps(a.v, b.v)}; }
SPARSE_ATTENTION_ALWAYS_INLINE Vec<double> max(Vec<double> a, Vec<double> b) { return {_mm256_max_pd(a.v, b.v)}; }
template <class T>
struct NonZero;
template <>
struct NonZero<float> { __m256 m; };
template <>
struct NonZero<double> { __m256d m; };
SPARSE_ATTENTION_ALWAYS_INLINE NonZero<float> nonzero(Vec<float> x) { return {_mm256_cmp_ps(x.v, _mm256_setzero_ps(), _CMP_NEQ_UQ)}; }
SPARSE_ATTENTION_ALWAYS_INLINE NonZero<double> nonzero(Vec<double> x) { return {_mm256_cmp_pd(x.v, _mm256_setzero_pd(), _CMP_NEQ_UQ)}; }
SPARSE_ATTENTION_ALWAYS_INLINE Vec<float> fma_where(NonZero<float> k, Vec<float> a, Vec<float> b, Vec<float> c) {
  return {_mm256_blendv_ps(c.v, _mm256_fmadd_ps(a.v, b.v, c.v), k.m)};
}
SPARSE_ATTENTION_ALWAYS_INLINE Vec<double> fma_where(NonZero<double> k, Vec<double> a, Vec<double> b, Vec<double> c) {
  return {_mm256_blendv_pd(c.v, _mm256_fmadd_pd(a.v, b.v, c.v), k.m)};
}
SPARSE_ATTENTION_ALWAYS_INLINE unsigned greater_bits(Vec<float> a, Vec<float> b) {
  return static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ)));
}
SPARSE_ATTENTION_ALWAYS_INLINE unsigned greater_bits(Vec<double> a, Vec<double> b) {
  return static_cast<unsigned>(_mm256_movemask_pd(_mm256_cmp_pd(a.v, b.v, _CMP_GT_OQ)));
}
SPARSE_ATTENTION_ALWAYS_INLINE Vec<float> max0(Vec<float> x) { return {_mm256_max_ps(x.v, _mm256_setzero_ps())}; }
SPARSE_ATTENTION_ALWAYS_INLINE Vec<double> max0(Vec<double> x) { return {_mm256_max_pd(x.v, _mm256_setzero_pd())}; }
template <class T>
SPARSE_ATTENTION_ALWAYS_INLINE T reduce_add(Vec<T> x) {
  T lanes[Vec<T>::kLanes];
  x.store(lanes);
  T sum = 0;
  for (T e : lanes) sum += e;
  return sum;
}
template <class T>
SPARSE_ATTENTION_ALWAYS_INLINE T reduce_max(Vec<T> x) {
  T lanes[Vec<T>::kLanes];
  x.store(lanes);
  T m = lanes[0];
  for (T e : lanes) m = e > m ? e : m;
  return m;
}
template <class T>
SPARSE_ATTENTION_ALWAYS_INLINE Vec<T> blend(unsigned bits, Vec<T> a, Vec<T> b) {
  T la[Vec<T>::kLanes], lb[Vec<T>::kLanes];
  a.store(la);
  b.store(lb);
  for (int l = 0; l < Vec<T>::kLanes; ++l) la[l] = (bits >> l) & 1u ? lb[l] : la[l];
  return Vec<T>::load(la);
}

SPARSE_ATTENTION_ALWAYS_INLINE unsigned greater_equal_bits(Vec<float> a, Vec<float> b) {
  return static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(a.v, b.v, _CMP_GE_OQ)));
}
SPARSE_ATTENTION_ALWAYS_INLINE unsigned greater_equal_bits(Vec<double> a, Vec<double> b) {
  return static_cast<unsigned>(_mm256_movemask_pd(_mm256_cmp_pd(a.v, b.v, _CMP_GE_OQ)));
}

// Packs the lanes of x and keys[0, lanes) whose bit is set (lane by lane; see the AVX-512 version).
template <class T>
SPARSE_ATTENTION_ALWAYS_INLINE unsigned compress_pairs(Vec<T> x, const std::int32_t* keys, unsigned bits, T* out,
                                                       std::int32_t* keys_out) {
  T lanes[Vec<T>::kLanes];
  std::int32_t k[Vec<T>::kLanes];
  x.store(lanes);
  std::copy(keys, keys + Vec<T>::kLanes, k);
  unsigned n = 0;
  for (; bits != 0; bits &= bits - 1) {
    const int lane = __builtin_ctz(bits);
    out[n] = lanes[lane];
    keys_out[n++] = k[lane];
  }
  return n;
}

// Lane j of the result: the sum of the lanes of acc[j].
template <class T>
SPARSE_ATTENTION_ALWAYS_INLINE Vec<T> sum_lanes(const Vec<T> (&acc)[Vec<T>::kLanes]) {
  alignas(32) T sums[Vec<T>::kLanes];
  for (int j = 0; j < Vec<T>::kLanes; ++j) sums[j] = reduce_add(acc[j]);
  return Vec<T>::load(sums);
}

// Stores the lanes of x whose bit is set in `bits`, packed (AVX2 has no compress: lane by lane).
template <class T>
SPARSE_ATTENTION_ALWAYS_INLINE unsigned compress_store(Vec<T> x, unsigned bits, std::int32_t first, T* out,
                                                       std::int32_t* keys) {
  std::int32_t lane_keys[Vec<T>::kLanes];
  for (int lane = 0; lane < Vec<T>::kLanes; ++lane) lane_keys[lane] = first + lane;
  return compress_pairs(x, lane_keys, bits, out, keys);
}
// Scores S^T[c][r] (row stride ld) of columns c in [c0, c_end), at most 64, become -inf where bit
// c - c0 of row_bits[r] is clear, for lanes r < ld (a multiple of the vector width). AVX2 has no
// mask registers: each column's bit is shifted into the lanes' sign bits, which blendv reads; columns
// run from last to first so one shift by 1 moves to the next.
inline void forbid_clear_bits(float* st, Index ld, Index c0, Index c_end, const std::uint64_t* row_bits) {
  const __m256 minus_inf = _mm256_set1_ps(-__builtin_inff());
  for (Index r = 0; r < ld; r += 8) {
    alignas(32) std::uint32_t halves[2][8];  // bits of columns c0 + [0, 32) and c0 + [32, 64)
    for (int l = 0; l < 8; ++l) {
      halves[0][l] = static_cast<std::uint32_t>(row_bits[r + l]);
      halves[1][l] = static_cast<std::uint32_t>(row_bits[r + l] >> 32);
    }
    for (int h = 0; h < 2; ++h) {
      const Index first = c0 + 32 * h, last = std::min(c_end, first + 32) - 1;
      if (last < first) break;
      __m256i sign = _mm256_sll_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(halves[h])),
                                      _mm_cvtsi64_si128(31 - (last - first)));
      for (Index c = last; c >= first; --c, sign = _mm256_slli_epi32(sign, 1)) {
        float* p = st + c * ld + r;
        _mm256_storeu_ps(p, _mm256_blendv_ps(minus_inf, _mm256_loadu_ps(p), _mm256_castsi256_ps(sign)));
      }
    }
  }
}
inline void forbid_clear_bits(double* st, Index ld, Index c0, Index c_end, const std::uint64_t* row_bits) {
  const __m256d minus_inf = _mm256_set1_pd(-__builtin_inf());
  for (Index r = 0; r < ld; r += 4) {
    __m256i sign = _mm256_sll_epi64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row_bits + r)),
                                    _mm_cvtsi64_si128(63 - (c_end - 1 - c0)));
    for (Index c = c_end - 1; c >= c0; --c, sign = _mm256_slli_epi64(sign, 1)) {
      double* p = st + c * ld + r;
      _mm256_storeu_pd(p, _mm256_blendv_pd(minus_inf, _mm256_loadu_pd(p), _mm256_castsi256_pd(sign)));
    }
  }
}

SPARSE_ATTENTION_ALWAYS_INLINE Vec<float> zero_if_minus_inf(Vec<float> x) {
  return {_mm256_and_ps(_mm256_cmp_ps(x.v, _mm256_set1_ps(-__builtin_inff()), _CMP_NEQ_UQ), x.v)};
}
SPARSE_ATTENTION_ALWAYS_INLINE Vec<double> zero_if_minus_inf(Vec<double> x) {
  return {_mm256_and_pd(_mm256_cmp_pd(x.v, _mm256_set1_pd(-__builtin_inf()), _CMP_NEQ_UQ), x.v)};
}

// 2^x without scalef: 2^n is built in the exponent field, and results below the normal range are
// flushed to +0 (so -inf gives 0); NaN stays NaN. As for AVX-512, no lane computes a subnormal (the
// clamp keeps n >= -126 with f >= 0 there).
SPARSE_ATTENTION_ALWAYS_INLINE Vec<float> exp2(Vec<float> x) {
  const __m256 lowest = _mm256_set1_ps(-126.0f);
  const __m256 c = _mm256_max_ps(lowest, x.v);
  const __m256 n = _mm256_round_ps(c, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 f = _mm256_sub_ps(c, n);
  __m256 p = _mm256_set1_ps(kExp2Float[0]);
  for (int i = 1; i < 7; ++i) p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2Float[i]));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  const __m256 r = _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
  return {_mm256_and_ps(_mm256_cmp_ps(x.v, lowest, _CMP_NLT_UQ), r)};
}
SPARSE_ATTENTION_ALWAYS_INLINE Vec<double> exp2(Vec<double> x) {
  const __m256d lowest = _mm256_set1_pd(-1022.0);
  const __m256d c = _mm256_max_pd(lowest, x.v);
  const __m256d n = _mm256_round_pd(c, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256d f = _mm256_sub_pd(c, n);
  __m256d p = _mm256_set1_pd(kExp2Double[0]);
  for (int i = 1; i < 12; ++i) p = _mm256_fmadd_pd(p, f, _mm256_set1_pd(kExp2Double[i]));
  // n is integral in [-1022, ...]: its int64 bit pattern comes from the 2^52 + 2^51 shift trick.
  const __m256d shifted = _mm256_add_pd(n, _mm256_set1_pd(6755399441055744.0));
  const __m256i integer = _mm256_sub_epi64(_mm256_castpd_si256(shifted),
                                           _mm256_castpd_si256(_mm256_set1_pd(6755399441055744.0)));
  const __m256i bits = _mm256_slli_epi64(_mm256_add_epi64(integer, _mm256_set1_epi64x(1023)), 52);
  const __m256d r = _mm256_mul_pd(p, _mm256_castsi256_pd(bits));
  return {_mm256_and_pd(_mm256_cmp_pd(x.v, lowest, _CMP_NLT_UQ), r)};
}

#endif

}  // namespace sparse_attention::detail::simd

#endif  // SPARSE_ATTENTION_SIMD_WIDTH > 0
