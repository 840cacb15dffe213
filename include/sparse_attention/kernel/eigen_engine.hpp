// SPDX-License-Identifier: Apache-2.0
// The portable tile engine: Eigen's GEMM for the two products, Eigen's vectorised array functions for
// the online softmax. Used when the compiler targets neither AVX-512 nor AVX2 (or when
// SPARSE_ATTENTION_PORTABLE_KERNEL is defined); same interface and results as SimdEngine within
// rounding.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>

#include "sparse_attention/core/types.hpp"
#include "sparse_attention/kernel/online_softmax.hpp"
#include "sparse_attention/kernel/rows.hpp"
#include "sparse_attention/kernel/workspace.hpp"

namespace sparse_attention::detail {

template <class T>
class EigenEngine {
  using RowMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ColMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
  using ScratchRows = Eigen::Map<RowMajor, Eigen::Aligned64>;
  using Tile = Eigen::Map<ColMajor, Eigen::Aligned64>;
  using InputRows = Eigen::Map<const RowMajor, Eigen::Unaligned, Eigen::OuterStride<>>;

 public:
  struct Dims {
    Index block_q, block_kv, head_dim, value_dim;
  };

  static Index scratch_size(const Dims& d) {
    ScratchCarver<T> c;
    carve(c, d);
    return c.used();
  }

  EigenEngine(const Dims& d, T* scratch) : dims_(d) {
    ScratchCarver<T> c(scratch);
    b_ = carve(c, d);
  }
  EigenEngine(const EigenEngine&) = delete;  // softmax_ points into b_
  EigenEngine& operator=(const EigenEngine&) = delete;

  void begin(const T* q, Index row_stride, Index dim_stride, Index rows, double scale) {
    rows_ = rows;
    scale_ = static_cast<T>(scale);
    for (Index r = 0; r < rows; ++r)
      for (Index c = 0; c < dims_.head_dim; ++c) b_.q[r * dims_.head_dim + c] = q[r * row_stride + c * dim_stride];
    Tile(b_.acc, rows, dims_.value_dim).setZero();
    softmax_.reset(rows);
  }

  static constexpr bool kChecksVTile = false;  // see SimdEngine; masked pairs never enter the product here
  static constexpr bool kTakesValueColumns = false;  // see SimdEngine
  static constexpr bool kSpreadsPrefetch = false;  // see SimdEngine; BlockedAttention asks for a far tile's lines at once

  template <bool kMasked, class Mask>
  void step(const T* k, Index k_row_stride, const T* v, Index v_row_stride, Index cols, const Mask& mask,
            VTileValues = VTileValues::kUnknown) {
    const ScratchRows q_tile(b_.q, rows_, dims_.head_dim);                                     // (rows, head_dim)
    const InputRows k_tile(k, cols, dims_.head_dim, Eigen::OuterStride<>(k_row_stride));     // (cols, head_dim)
    const InputRows v_tile(v, cols, dims_.value_dim, Eigen::OuterStride<>(v_row_stride));    // (cols, value_dim)
    Tile scores(b_.scores, rows_, cols);                                                       // (rows, cols)
    Tile acc(b_.acc, rows_, dims_.value_dim);                                                  // (rows, value_dim)
    // Scaled after the product, as scale * (q . k): one rounding per score.
    scores.noalias() = scale_ * (q_tile * k_tile.transpose());
    if constexpr (kMasked) {
      constexpr T kMinusInf = -std::numeric_limits<T>::infinity();
      for (Index c = 0; c < cols; ++c) {
        T* column = b_.scores + c * rows_;
        for (Index r = 0; r < rows_; ++r) column[r] = mask.allowed(r, c) ? column[r] : kMinusInf;
      }
    }
    softmax_.template rescale<kMasked>(scores, acc);
    if (kMasked && !v_tile.allFinite()) {
      // A NaN or Inf in V must reach only the rows that attend to it, not rows where its
      // probability is the 0 of a masked pair (0 * NaN = NaN): the product runs on V with its
      // non-finite entries zeroed (the same GEMM, so every other row keeps its bits), then those
      // entries are added to the rows that give them weight. Off the hot path: only non-finite V.
      const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic> finite =
          v_tile.unaryExpr([](T x) { return std::isfinite(x) ? x : T(0); });
      acc.noalias() += scores * finite;
      for (Index c = 0; c < cols; ++c)
        for (Index e = 0; e < dims_.value_dim; ++e)
          if (!std::isfinite(v_tile(c, e)))
            for (Index r = 0; r < rows_; ++r)
              if (scores(r, c) != T(0)) acc(r, e) += scores(r, c) * v_tile(c, e);
      return;
    }
    acc.noalias() += scores * v_tile;
  }

  // The same with K and V rows found through accessors: the rows are copied into contiguous tiles.
  template <bool kMasked, class KRows, class VRows, class Mask>
  void step(KRows k, VRows v, Index cols, const Mask& mask) {
    for (Index r = 0; r < cols; ++r) {
      std::copy(k.row(r), k.row(r) + dims_.head_dim, b_.k + r * dims_.head_dim);
      std::copy(v.row(r), v.row(r) + dims_.value_dim, b_.v + r * dims_.value_dim);
    }
    step<kMasked>(b_.k, dims_.head_dim, b_.v, dims_.value_dim, cols, mask);
  }

  void finish(T* out, Index row_stride, Index dim_stride, T* lse, Index lse_stride) const {
    const Tile acc(b_.acc, rows_, dims_.value_dim);
    for (Index r = 0; r < rows_; ++r) {
      const T l = softmax_.sum(r);
      const T inv = T(1) / l;
      // l == 0: no allowed key; the row is exactly 0.
      for (Index c = 0; c < dims_.value_dim; ++c)
        out[r * row_stride + c * dim_stride] = l == T(0) ? T(0) : acc(r, c) * inv;
      if (lse != nullptr) lse[r * lse_stride] = softmax_.log_sum_exp(r);
    }
  }

 private:
  struct Buffers {
    T *q, *scores, *acc, *k, *v, *stats[6];
  };
  static Buffers carve(ScratchCarver<T>& c, const Dims& d) {
    Buffers b;
    b.q = c.take(d.block_q * d.head_dim);        // (block_q, head_dim)   row-major
    b.scores = c.take(d.block_q * d.block_kv);   // (block_q, block_kv)   column-major
    b.acc = c.take(d.block_q * d.value_dim);     // (block_q, value_dim)  column-major
    b.k = c.take(d.block_kv * d.head_dim);       // (block_kv, head_dim)  gathered K rows
    b.v = c.take(d.block_kv * d.value_dim);      // (block_kv, value_dim) gathered V rows
    for (T*& s : b.stats) s = c.take(d.block_q);  // (block_q) each: online softmax state
    return b;
  }

  Dims dims_;
  Buffers b_{};
  Index rows_ = 0;
  T scale_ = 0;
  OnlineSoftmax<T> softmax_{b_.stats};
};

}  // namespace sparse_attention::detail
