// SPDX-License-Identifier: Apache-2.0
// The register-blocked product both GEMMs of a tile step reduce to. Lanes of a vector always hold
// queries; the other operand is read one element at a time and broadcast:
//
//   C[r][lanes] (+)= sum_k A(r, k) * B[k][lanes]      r < R rows, NV vectors of lanes
//
//   scores:      S^T[j][i]  = sum_c K[j][c]   * Q^T[c][i]   A(r, k) = row(r)[k]          (AStride::kRows)
//   accumulate:  O^T[c][i] += sum_j V[j][c]   * P^T[j][i]   A(r, k) = row(k)[col0 + r]   (AStride::kSteps)
//                O^T[c][i] += sum_j V^T[c][j] * P^T[j][i]   A(r, k) = row(r)[k]          (AStride::kRows)
//
// K and V are read in place from the caller's memory (or from a contiguous copy), through strided
// rows or, for a gathered selection of keys, a table of row pointers; V tiles that many query
// blocks share come as a transposed copy (V^T, see BlockedAttention::transposes_v). R x NV
// accumulators stay in registers for the whole reduction.
//
// Two forms serve gathered tiles, whose queries are one token's heads (one or two vectors of lanes):
// row_kernel keeps O as rows (the value dimension in the lanes), and quad_kernel computes scores
// from 4-wide broadcasts of K against Q packed as head quads (float, AVX-512).
#pragma once

#include <algorithm>
#include <array>
#include <utility>

#include "sparse_attention/core/types.hpp"
#include "sparse_attention/kernel/rows.hpp"
#include "sparse_attention/kernel/simd.hpp"

#if SPARSE_ATTENTION_SIMD_WIDTH > 0

namespace sparse_attention::detail::simd {

// Register blocking: NV vectors of lanes by R rows, R as tall as registers allow (AVX-512 has 32
// vector registers: 12 x 1, 8 x 2, 6 x 3 and 6 x 4 accumulators; AVX2 has 16: 8 x 1 and 6 x 2).
inline constexpr int kBlockVecs = SPARSE_ATTENTION_SIMD_WIDTH == 64 ? 4 : 2;
constexpr int rows_for(int vecs) {
  if constexpr (SPARSE_ATTENTION_SIMD_WIDTH == 64) return vecs == 1 ? 12 : vecs == 2 ? 8 : 6;
  return vecs == 1 ? 8 : 6;
}
inline constexpr int kMaxBlockRows = rows_for(1);

enum class AStride {
  kRows,   // A(r, k) = row(r)[k]          (K rows: consecutive k contiguous)
  kSteps,  // A(r, k) = row(k)[col0 + r]   (V rows: consecutive r contiguous)
};

// kScaleC: C is loaded, multiplied lane-wise by `scale` (the online-softmax rescale) and accumulated
// into; otherwise C is overwritten. kSkipZeroB: lanes where B is exactly 0 (masked probabilities) take
// no product, so a NaN or Inf in A (a V row) reaches only the queries that attend to it.
template <class T, int R, int NV, AStride kStride, bool kScaleC, bool kSkipZeroB, class Rows>
void micro_kernel(T* SPARSE_ATTENTION_RESTRICT c, Index ldc, Rows a, Index col0, const T* SPARSE_ATTENTION_RESTRICT b,
                  Index ldb, Index depth, const T* SPARSE_ATTENTION_RESTRICT scale) {
  using V = Vec<T>;
  constexpr int W = V::kLanes;
  V acc[R][NV];
  if constexpr (kScaleC) {
    V s[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) s[v] = V::load(scale + v * W);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = V::load(c + r * ldc + v * W) * s[v];
  } else {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = V::zero();
  }

  if constexpr (kStride == AStride::kRows) {
    const T* rows[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) rows[r] = a.row(r);
#pragma GCC unroll 2
    for (Index k = 0; k < depth; ++k) {
      V bk[NV];
      [[maybe_unused]] NonZero<T> live[NV];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        bk[v] = V::load(b + k * ldb + v * W);
        if constexpr (kSkipZeroB) live[v] = nonzero(bk[v]);
      }
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const V ar = V::set1(rows[r][k]);
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) {
          if constexpr (kSkipZeroB) {
            acc[r][v] = fma_where(live[v], ar, bk[v], acc[r][v]);
          } else {
            acc[r][v] = fma(ar, bk[v], acc[r][v]);
          }
        }
      }
    }
  } else {
    // Four keys per iteration rather than two (AVX-512 Xeon, n = 8192, 2 threads): dense 0.95-0.98x
    // the time, strided 0.97x, causal 0.98-0.99x; sliding windows 1.01-1.03x at d = 128.
#pragma GCC unroll 4
    for (Index k = 0; k < depth; ++k) {
      // Opaque to the optimiser: otherwise it hoists the R offsets (col0 + r) into registers (spilling
      // them) instead of adding col0 once and addressing the R elements by displacement.
      const T* ak = a.row(k) + col0;
#if defined(__GNUC__)
      asm("" : "+r"(ak));
#endif
      V bk[NV];
      [[maybe_unused]] NonZero<T> live[NV];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        bk[v] = V::load(b + k * ldb + v * W);
        if constexpr (kSkipZeroB) live[v] = nonzero(bk[v]);
      }
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const V ar = V::set1(ak[r]);
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) {
          if constexpr (kSkipZeroB) {
            acc[r][v] = fma_where(live[v], ar, bk[v], acc[r][v]);
          } else {
            acc[r][v] = fma(ar, bk[v], acc[r][v]);
          }
        }
      }
    }
  }

#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v].store(c + r * ldc + v * W);
}

// C (rows x vecs vectors) (+)= A (rows x depth) * B (depth x vecs vectors), tiled by the register block.
template <class T, AStride kStride, bool kScaleC, class Rows = detail::StridedRows<T>, bool kSkipZeroB = false>
class BlockProduct {
  using Kernel = void (*)(T*, Index, Rows, Index, const T*, Index, Index, const T*);
  using Table = std::array<std::array<Kernel, kMaxBlockRows>, kBlockVecs>;

  template <int NV, int... R>
  static constexpr void fill_rows(Table& t, std::integer_sequence<int, R...>) {
    ((t[NV - 1][R] = &micro_kernel<T, R + 1, NV, kStride, kScaleC, kSkipZeroB, Rows>), ...);
  }
  template <int... NV>
  static constexpr Table make_table(std::integer_sequence<int, NV...>) {
    Table t{};
    (fill_rows<NV + 1>(t, std::make_integer_sequence<int, rows_for(NV + 1)>{}), ...);
    return t;
  }
  static constexpr Table kTable = make_table(std::make_integer_sequence<int, kBlockVecs>{});

 public:
  // rows: rows of C; vecs: vectors of lanes per row of C; a: A's rows (see AStride). prefetch, if not
  // null, asks for some of its lines after each register block.
  static void run(T* c, Index ldc, Index rows, Index vecs, Rows a, const T* b, Index ldb, Index depth,
                  const T* scale, detail::TilePrefetch<T>* prefetch = nullptr) {
    constexpr int W = Vec<T>::kLanes;
    for (Index v0 = 0; v0 < vecs; v0 += kBlockVecs) {
      const Index nv = std::min<Index>(kBlockVecs, vecs - v0);
      const Index block_rows = rows_for(static_cast<int>(nv));
      for (Index r0 = 0; r0 < rows; r0 += block_rows) {
        const Index nr = std::min(block_rows, rows - r0);
        const Kernel kernel = kTable[static_cast<std::size_t>(nv - 1)][static_cast<std::size_t>(nr - 1)];
        if constexpr (kStride == AStride::kRows) {
          kernel(c + r0 * ldc + v0 * W, ldc, a.from(r0), 0, b + v0 * W, ldb, depth, kScaleC ? scale + v0 * W : nullptr);
        } else {
          kernel(c + r0 * ldc + v0 * W, ldc, a, r0, b + v0 * W, ldb, depth, kScaleC ? scale + v0 * W : nullptr);
        }
        if (prefetch != nullptr) prefetch->some(detail::TilePrefetch<T>::kLinesPerBlock);
      }
    }
  }
};

// Whether the `count` rows of `dim` elements hold only finite values (x * 0 is 0 for finite x and NaN
// for an infinity or a NaN; the sums of those products are all 0 exactly when every x is finite).
template <class T, class Rows>
bool all_finite(Rows rows, Index count, Index dim) {
  using V = Vec<T>;
  constexpr int W = V::kLanes;
  constexpr int kChains = 4;  // independent sums, so the check runs at load speed, not FMA latency
  V acc[kChains];
  for (V& a : acc) a = V::zero();
  T tail = 0;
  for (Index j = 0; j < count; ++j) {
    const T* row = rows.row(j);
    Index c = 0;
    for (; c + kChains * W <= dim; c += kChains * W)
#pragma GCC unroll 4
      for (int u = 0; u < kChains; ++u) acc[u] = fma(V::load(row + c + u * W), V::zero(), acc[u]);
    for (; c + W <= dim; c += W) acc[0] = fma(V::load(row + c), V::zero(), acc[0]);
    for (; c < dim; ++c) tail += row[c] * T(0);
  }
  for (int u = 1; u < kChains; ++u) acc[0] = acc[0] + acc[u];
  return reduce_add(acc[0]) + tail == T(0);
}

// The value product with O kept row by row (queries in rows, the value dimension in vector lanes):
//
//   O[r][c] (+)= sum_j P^T[j][r] * V[j][c]     r < R rows, NV vectors of c
//
// For gathered tiles: each V row then feeds whole vectors (NV loads and R broadcasts per key for R x NV
// FMAs), where O^T needs one broadcast per FMA. kScaleC: O's row r is first multiplied by scale[r].
template <class T, int R, int NV, bool kScaleC, class PRows, class VRows>
void row_kernel(T* SPARSE_ATTENTION_RESTRICT o, Index ldo, PRows p, Index r0, VRows v, Index c0, Index depth,
                const T* SPARSE_ATTENTION_RESTRICT scale) {
  using V = Vec<T>;
  constexpr int W = V::kLanes;
  V acc[R][NV];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    const V s = kScaleC ? V::set1(scale[r0 + r]) : V::zero();
#pragma GCC unroll 8
    for (int u = 0; u < NV; ++u) acc[r][u] = kScaleC ? V::load(o + r * ldo + c0 + u * W) * s : V::zero();
  }
#pragma GCC unroll 2
  for (Index j = 0; j < depth; ++j) {
    const T* pj = p.row(j) + r0;
    const T* vj = v.row(j) + c0;
    V b[NV];
#pragma GCC unroll 8
    for (int u = 0; u < NV; ++u) b[u] = V::load(vj + u * W);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const V a = V::set1(pj[r]);
#pragma GCC unroll 8
      for (int u = 0; u < NV; ++u) acc[r][u] = fma(a, b[u], acc[r][u]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int u = 0; u < NV; ++u) acc[r][u].store(o + r * ldo + c0 + u * W);
}

// O (rows x vecs vectors, row stride ldo) (+)= P^T' V over `depth` keys, tiled by the register block.
template <class T, bool kScaleC, class PRows, class VRows>
struct RowProduct {
  static void run(T* o, Index ldo, Index rows, Index vecs, PRows p, VRows v, Index depth, const T* scale) {
    for (Index u0 = 0; u0 < vecs; u0 += kBlockVecs) with_vecs<kBlockVecs>(std::min<Index>(kBlockVecs, vecs - u0), o, ldo, rows, p, v, u0 * Vec<T>::kLanes, depth, scale);
  }

 private:
  template <int NV>
  static void with_vecs(Index nv, T* o, Index ldo, Index rows, PRows p, VRows v, Index c0, Index depth, const T* scale) {
    if constexpr (NV > 1) {
      if (nv < NV) return with_vecs<NV - 1>(nv, o, ldo, rows, p, v, c0, depth, scale);
    }
    constexpr Index kRows = rows_for(NV);
    for (Index r0 = 0; r0 < rows; r0 += kRows) with_rows<NV, rows_for(NV)>(std::min(kRows, rows - r0), o + r0 * ldo, ldo, p, r0, v, c0, depth, scale);
  }
  template <int NV, int R>
  static void with_rows(Index nr, T* o, Index ldo, PRows p, Index r0, VRows v, Index c0, Index depth, const T* scale) {
    if constexpr (R > 1) {
      if (nr < R) return with_rows<NV, R - 1>(nr, o, ldo, p, r0, v, c0, depth, scale);
    }
    row_kernel<T, R, NV, kScaleC>(o, ldo, p, r0, v, c0, depth, scale);
  }
};

#if SPARSE_ATTENTION_SIMD_WIDTH == 64
// Scores for a tile whose queries fill one or two vectors of lanes (the heads of one token), in float,
// with 4-wide broadcasts. Q is packed as "quads" (pack_quad, by SimdEngine::begin):
//
//   Q4[v][d4][q]  lanes 4L + e hold Q[16v + 4L + q][4 d4 + e]      v < vecs, d4 < head_dim / 4, q < 4
//   per key j:    acc[q] += broadcast(K[j][4 d4 .. 4 d4 + 3]) * Q4[v][d4][q]
//   S^T[j][16v + 4L + q] = sum over e of acc[q][4L + e]            (quad_sum: 9 shuffles and adds)
//
// Per step of 4 dimensions: 4 loads of Q and R broadcasts of K for 4R FMAs, where the 1-wide form
// (micro_kernel, one vector of lanes) needs one broadcast of K per FMA.
inline constexpr int kQuadRows = 6;  // 6 keys x 4 quads = 24 accumulators

SPARSE_ATTENTION_ALWAYS_INLINE __m512 quad_sum(const __m512 (&a)[4]) {
  // In each 128-bit lane L: t0 = [a0(0)+a0(2), a1(0)+a1(2), a0(1)+a0(3), a1(1)+a1(3)], t1 the same for
  // a2, a3; then [t0(0) + t0(2), t0(1) + t0(3), t1(0) + t1(2), t1(1) + t1(3)] = the four quads' sums.
  const __m512 t0 = _mm512_add_ps(_mm512_unpacklo_ps(a[0], a[1]), _mm512_unpackhi_ps(a[0], a[1]));
  const __m512 t1 = _mm512_add_ps(_mm512_unpacklo_ps(a[2], a[3]), _mm512_unpackhi_ps(a[2], a[3]));
  return _mm512_add_ps(_mm512_shuffle_ps(t0, t1, 0x44), _mm512_shuffle_ps(t0, t1, 0xEE));
}

// S^T rows [0, R) (row stride lds, vecs vectors each) = K rows [0, R) against Q4.
template <int R, class KRows>
void quad_kernel(float* SPARSE_ATTENTION_RESTRICT st, Index lds, KRows k, const float* SPARSE_ATTENTION_RESTRICT q4,
                 Index head_dim, Index vecs) {
  const Index steps = head_dim / 4;
  const float* rows[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) rows[r] = k.row(r);
  for (Index v = 0; v < vecs; ++v) {
    const float* qv = q4 + v * steps * 64;
    __m512 acc[R][4];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) acc[r][q] = _mm512_setzero_ps();
#pragma GCC unroll 2
    for (Index d4 = 0; d4 < steps; ++d4) {
      __m512 qq[4];
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) qq[q] = _mm512_loadu_ps(qv + d4 * 64 + q * 16);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m512 kb = _mm512_broadcast_f32x4(_mm_loadu_ps(rows[r] + 4 * d4));
#pragma GCC unroll 4
        for (int q = 0; q < 4; ++q) acc[r][q] = _mm512_fmadd_ps(kb, qq[q], acc[r][q]);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) _mm512_storeu_ps(st + r * lds + v * 16, quad_sum(acc[r]));
  }
}

// S^T (cols x vecs vectors, row stride lds) = K (cols rows, head_dim a multiple of 4) against Q4.
template <class KRows>
void quad_scores(float* st, Index lds, Index cols, Index vecs, KRows k, const float* q4, Index head_dim) {
  Index r0 = 0;
  for (; r0 + kQuadRows <= cols; r0 += kQuadRows) quad_kernel<kQuadRows>(st + r0 * lds, lds, k.from(r0), q4, head_dim, vecs);
  switch (cols - r0) {
    case 5: return quad_kernel<5>(st + r0 * lds, lds, k.from(r0), q4, head_dim, vecs);
    case 4: return quad_kernel<4>(st + r0 * lds, lds, k.from(r0), q4, head_dim, vecs);
    case 3: return quad_kernel<3>(st + r0 * lds, lds, k.from(r0), q4, head_dim, vecs);
    case 2: return quad_kernel<2>(st + r0 * lds, lds, k.from(r0), q4, head_dim, vecs);
    case 1: return quad_kernel<1>(st + r0 * lds, lds, k.from(r0), q4, head_dim, vecs);
    default: return;
  }
}

// Q4 (see quad_kernel, ld = 16 vecs lanes) from `rows` queries, query r's element c at
// q[r * row_stride + c * dim_stride], times `sign`; lanes of queries past `rows` hold zeros.
inline void pack_quad(const float* q, Index row_stride, Index dim_stride, Index rows, float sign, Index ld,
                      Index head_dim, float* q4) {
  const Index steps = head_dim / 4;
  for (Index v = 0; v < ld / 16; ++v)
    for (Index d4 = 0; d4 < steps; ++d4)
      for (Index qd = 0; qd < 4; ++qd)
        for (Index l = 0; l < 4; ++l) {
          const Index r = 16 * v + 4 * l + qd;
          float* dst = q4 + ((v * steps + d4) * 4 + qd) * 16 + 4 * l;
          for (Index e = 0; e < 4; ++e) dst[e] = r < rows ? sign * q[r * row_stride + (4 * d4 + e) * dim_stride] : 0.0f;
        }
}
#endif  // SPARSE_ATTENTION_SIMD_WIDTH == 64

}  // namespace sparse_attention::detail::simd

#endif  // SPARSE_ATTENTION_SIMD_WIDTH > 0
