// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "sparse_attention/core/error.hpp"
#include "sparse_attention/core/types.hpp"
#include "sparse_attention/masks/band.hpp"

namespace sparse_attention {

// Sliding window with FlashAttention's window_size semantics: query at position p attends to keys
// p - left <= j <= p + right, both ends inclusive, -1 meaning unbounded on that side. (left, 0) gives
// left + 1 keys including the query itself.
class LocalWindow {
 public:
  LocalWindow(Index left, Index right) : left_(left), right_(right), band_(left, right) {
    detail::require(left >= -1, "LocalWindow", "left", left, "-1 (unbounded) or >= 0");
    detail::require(right >= -1, "LocalWindow", "right", right, "-1 (unbounded) or >= 0");
  }

  // W keys ending at the query itself, as Mistral and Hugging Face define a sliding window of W:
  // {W - 1, 0}.
  static LocalWindow causal(Index window) {
    detail::require(window >= 1, "LocalWindow::causal", "window", window,
                    ">= 1 (the number of keys, including the query itself)");
    return LocalWindow(window - 1, 0);
  }

  // w keys on each side of the query: {w, w}, 2w + 1 keys in all.
  static LocalWindow symmetric(Index w) {
    detail::require(w >= -1, "LocalWindow::symmetric", "w", w, "-1 (unbounded) or >= 0");
    return LocalWindow(w, w);
  }

  Index left() const { return left_; }
  Index right() const { return right_; }

  bool allowed(const Extent& x, Index i, Index j, Index) const {
    return band_.contains(x.position(i), j);
  }
  BlockClass classify(const BlockGrid& g, Index qb, Index kb, Index) const {
    return band_.classify(g, qb, kb);
  }
  template <class Visitor>
  void for_each_block(const BlockGrid& g, Index qb, Index, Visitor&& visit) const {
    band_.for_each_block(g, qb, visit);
  }
  Index count_allowed(const BlockGrid& g, Index qb, Index kb, Index) const {
    return band_.count(g, qb, kb);
  }
  Range key_range(const Extent& x, Index i, Index) const { return band_.keys(x.position(i), x.seq_k); }

 private:
  Index left_;
  Index right_;
  detail::Band band_;
};

}  // namespace sparse_attention
