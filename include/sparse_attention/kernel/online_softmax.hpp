// SPDX-License-Identifier: Apache-2.0
// The streaming softmax of one query block. Scores arrive a tile at a time; the state per query row
// is the running maximum m and the running sum l of exp(s - m), and the output accumulator is
// rescaled whenever m grows, so no row of scores is ever kept whole (FlashAttention's online
// softmax). Score tiles are column-major (rows x cols): a column holds one key's scores for every
// query row, so the row statistics are element-wise vector operations across a column.
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
  using Tile = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>,
                          Eigen::Aligned64>;

  // Buffers of at least `rows` elements each, 64-byte aligned.
  OnlineSoftmax(Index rows, T* max, T* sum, T* new_max, T* reference, T* alpha, T* tile_sum)
      : m_(max, rows), l_(sum, rows), m_new_(new_max, rows), m_ref_(reference, rows),
        alpha_(alpha, rows), tile_sum_(tile_sum, rows) {
    m_.setConstant(-std::numeric_limits<T>::infinity());
    l_.setZero();
  }

  // Turns the scores tile (rows x cols) into probabilities relative to the new running maximum and
  // rescales the accumulator (rows x value_dim) to that maximum. The caller then adds scores * V.
  // kMasked: the tile may hold -inf (masked pairs), which must become exactly 0.
  template <bool kMasked>
  void rescale(Tile& scores, Tile& acc) {
    constexpr T kMinusInf = -std::numeric_limits<T>::infinity();
    m_new_ = m_;
    for (Index j = 0; j < scores.cols(); ++j) m_new_ = m_new_.max(scores.col(j).array());
    // A row whose keys are all masked so far has maximum -inf; exp(s - m) would be
    // exp(-inf - -inf) = NaN, so such a row takes 0 as its reference and every exp(-inf - 0) is 0.
    m_ref_ = (m_new_ == kMinusInf).select(T(0), m_new_);
    // alpha is the factor that moves the old state to the new maximum; where the old maximum was
    // -inf, l and acc are exactly 0 and any finite alpha leaves them 0.
    alpha_ = (m_ - m_ref_).exp();
    tile_sum_.setZero();
    for (Index j = 0; j < scores.cols(); ++j) {
      auto s = scores.col(j).array();
      if constexpr (kMasked) {
        // Vectorised exp flushes its argument at about -88 rather than returning 0 for -inf.
        s = (s == kMinusInf).select(T(0), (s - m_ref_).exp());
      } else {
        s = (s - m_ref_).exp();
      }
      tile_sum_ += s;
    }
    l_ = alpha_ * l_ + tile_sum_;
    acc.array().colwise() *= alpha_;
    m_ = m_new_;
  }

  // Row r is done: its probabilities sum to l(r) (0 if no key was allowed) on top of maximum m(r).
  T max(Index r) const { return m_(r); }
  T sum(Index r) const { return l_(r); }
  // Natural-log log-sum-exp of the row's scores; -inf for a row with no allowed key.
  T log_sum_exp(Index r) const {
    return l_(r) > T(0) ? m_(r) + std::log(l_(r)) : -std::numeric_limits<T>::infinity();
  }

 private:
  ColumnMap m_, l_, m_new_, m_ref_, alpha_, tile_sum_;
};

}  // namespace sparse_attention::detail
