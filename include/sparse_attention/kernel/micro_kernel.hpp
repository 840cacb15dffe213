// SPDX-License-Identifier: Apache-2.0
// The register-blocked product both GEMMs of a tile step reduce to. Lanes of a vector always hold
// queries; the other operand is read one element at a time and broadcast:
//
//   C[r][lanes] (+)= sum_k A(r, k) * B[k][lanes]      r < R rows, NV vectors of lanes
//
//   scores:      S^T[j][i]  = sum_c K[j][c]   * Q^T[c][i]   A(r, k) = K[r][k]   (rows of A strided)
//   accumulate:  O^T[c][i] += sum_j V[j][c]   * P^T[j][i]   A(r, k) = V[k][r]   (steps of A strided)
//
// K and V are read straight from the caller's memory (no per-tile packing); R x NV accumulators stay
// in registers for the whole reduction.
#pragma once

#include <algorithm>
#include <array>
#include <utility>

#include "sparse_attention/core/types.hpp"
#include "sparse_attention/kernel/simd.hpp"

#if SPARSE_ATTENTION_SIMD_WIDTH > 0

namespace sparse_attention::detail::simd {

// Register blocking: R rows x NV vectors of accumulators (AVX-512: 6 x 4 = 24 of 32 registers;
// AVX2: 6 x 2 = 12 of 16).
inline constexpr int kBlockRows = 6;
inline constexpr int kBlockVecs = SPARSE_ATTENTION_SIMD_WIDTH == 64 ? 4 : 2;

enum class AStride {
  kRows,   // A(r, k) = a[r * a_stride + k]   (K rows: consecutive k contiguous)
  kSteps,  // A(r, k) = a[r + k * a_stride]   (V rows: consecutive r contiguous)
};

// kScaleC: C is loaded, multiplied lane-wise by `scale` (the online-softmax rescale) and accumulated
// into; otherwise C is overwritten.
template <class T, int R, int NV, AStride kStride, bool kScaleC>
void micro_kernel(T* SPARSE_ATTENTION_RESTRICT c, Index ldc, const T* SPARSE_ATTENTION_RESTRICT a,
                  Index a_stride, const T* SPARSE_ATTENTION_RESTRICT b, Index ldb, Index depth,
                  const T* SPARSE_ATTENTION_RESTRICT scale) {
  using V = Vec<T>;
  constexpr int W = V::kLanes;
  V acc[R][NV];
  if constexpr (kScaleC) {
    V s[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) s[v] = V::load(scale + v * W);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = V::load(c + r * ldc + v * W) * s[v];
  } else {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = V::zero();
  }

  if constexpr (kStride == AStride::kRows) {
    const T* rows[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) rows[r] = a + r * a_stride;
#pragma GCC unroll 2
    for (Index k = 0; k < depth; ++k) {
      V bk[NV];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) bk[v] = V::load(b + k * ldb + v * W);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const V ar = V::set1(rows[r][k]);
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[r][v] = fma(ar, bk[v], acc[r][v]);
      }
    }
  } else {
#pragma GCC unroll 2
    for (Index k = 0; k < depth; ++k) {
      const T* ak = a + k * a_stride;
      V bk[NV];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) bk[v] = V::load(b + k * ldb + v * W);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const V ar = V::set1(ak[r]);
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[r][v] = fma(ar, bk[v], acc[r][v]);
      }
    }
  }

#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[r][v].store(c + r * ldc + v * W);
}

// C (rows x vecs vectors) (+)= A (rows x depth) * B (depth x vecs vectors), tiled by the register block.
template <class T, AStride kStride, bool kScaleC>
class BlockProduct {
  using Kernel = void (*)(T*, Index, const T*, Index, const T*, Index, Index, const T*);

  template <int R, int NV>
  static constexpr Kernel kernel() {
    return &micro_kernel<T, R, NV, kStride, kScaleC>;
  }
  template <int R, int... NV>
  static constexpr auto row_table(std::integer_sequence<int, NV...>) {
    return std::array<Kernel, sizeof...(NV)>{kernel<R, NV + 1>()...};
  }
  template <int... R>
  static constexpr auto table(std::integer_sequence<int, R...>) {
    return std::array<std::array<Kernel, kBlockVecs>, sizeof...(R)>{
        row_table<R + 1>(std::make_integer_sequence<int, kBlockVecs>{})...};
  }
  static constexpr auto kTable = table(std::make_integer_sequence<int, kBlockRows>{});

 public:
  // rows: rows of C; vecs: vectors of lanes per row of C; a_stride as in AStride.
  static void run(T* c, Index ldc, Index rows, Index vecs, const T* a, Index a_stride, const T* b,
                  Index ldb, Index depth, const T* scale) {
    constexpr int W = Vec<T>::kLanes;
    for (Index v0 = 0; v0 < vecs; v0 += kBlockVecs) {
      const Index nv = std::min<Index>(kBlockVecs, vecs - v0);
      for (Index r0 = 0; r0 < rows; r0 += kBlockRows) {
        const Index nr = std::min<Index>(kBlockRows, rows - r0);
        const T* a0 = kStride == AStride::kRows ? a + r0 * a_stride : a + r0;
        kTable[static_cast<std::size_t>(nr - 1)][static_cast<std::size_t>(nv - 1)](
            c + r0 * ldc + v0 * W, ldc, a0, a_stride, b + v0 * W, ldb, depth,
            kScaleC ? scale + v0 * W : nullptr);
      }
    }
  }
};

}  // namespace sparse_attention::detail::simd

#endif  // SPARSE_ATTENTION_SIMD_WIDTH > 0
