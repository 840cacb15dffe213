// SPDX-License-Identifier: Apache-2.0
// The streaming softmax of one query block for the portable engine. Scores arrive a tile at a time;
// the state per query row is the running maximum m and the running sum l of exp(s - m), and the
// output accumulator is rescaled whenever m grows, so no row of scores is ever kept whole
// (FlashAttention's online softmax). Score tiles are column-major (rows x cols): a column holds one
// key's scores for every query row, so the row statistics are element-wise vector operations.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <limits>

#include "sparse_attention/core/types.hpp"

namespace sparse_attention::detail {

template <class T>
class OnlineSoftmax {
 public:
  using Column = Eigen::Array<T, Eigen::Dynamic, 1>;
  using ColumnMap = Eigen::Map<Column, Eigen::Aligned64>;
  using Tile = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>, Eigen::Aligned64>;

  // Six 64-byte aligned buffers of at least block_q elements each.
  explicit OnlineSoftmax(T* const (&buffers)[6]) : buffers_(buffers) {}

  void reset(Index rows) {
    rows_ = rows;
    m().setConstant(-std::numeric_limits<T>::infinity());
    l().setZero();
  }

  // Turns the scores tile (rows x cols) into probabilities relative to the new running maximum and
  // rescales the accumulator (rows x value_dim) to that maximum. The caller then adds scores * V.
  // kMasked: the tile may hold -inf (masked pairs), which must become exactly 0.
  template <bool kMasked>
  void rescale(Tile& scores, Tile& acc) {
    constexpr T kMinusInf = -std::numeric_limits<T>::infinity();
    ColumnMap m_old = m(), l_sum = l(), m_new = map(2), m_ref = map(3), alpha = map(4), tile_sum = map(5);
    m_new = m_old;
    for (Index j = 0; j < scores.cols(); ++j) m_new = m_new.max(scores.col(j).array());
    // A row whose keys are all masked so far has maximum -inf; exp(s - m) would be
    // exp(-inf - -inf) = NaN, so such a row takes 0 as its reference and every exp(-inf - 0) is 0.
    m_ref = (m_new == kMinusInf).select(T(0), m_new);
    // alpha moves the old state to the new maximum; where the old maximum was -inf, l and acc are
    // exactly 0 and any finite alpha leaves them 0.
    alpha = (m_old - m_ref).exp();
    tile_sum.setZero();
    for (Index j = 0; j < scores.cols(); ++j) {
      auto s = scores.col(j).array();
      if constexpr (kMasked) {
        // Eigen's vectorised exp clamps its argument near -88 and returns ~1e-38, not 0, for -inf.
        s = (s == kMinusInf).select(T(0), (s - m_ref).exp());
      } else {
        s = (s - m_ref).exp();
      }
      tile_sum += s;
    }
    l_sum = alpha * l_sum + tile_sum;
    acc.array().colwise() *= alpha;
    m_old = m_new;
  }

  T sum(Index r) const { return buffers_[1][r]; }
  // Natural-log log-sum-exp of the row's scores; -inf for a row with no allowed key.
  T log_sum_exp(Index r) const {
    const T l_r = buffers_[1][r];
    return l_r == T(0) ? -std::numeric_limits<T>::infinity() : buffers_[0][r] + std::log(l_r);
  }

 private:
  ColumnMap map(int i) const { return ColumnMap(buffers_[i], rows_); }
  ColumnMap m() const { return map(0); }
  ColumnMap l() const { return map(1); }

  T* const* buffers_;
  Index rows_ = 0;
};

}  // namespace sparse_attention::detail
