// SPDX-License-Identifier: Apache-2.0
// The diagonal band j in [p - left, p + right] (both ends inclusive, -1 = unbounded) that Dense,
// Causal and LocalWindow are made of, with exact block classification, enumeration and counting.
#pragma once

#include <algorithm>

#include "sparse_attention/core/types.hpp"
#include "sparse_attention/masks/detail.hpp"

namespace sparse_attention::detail {

class Band {
 public:
  // left, right: -1 (unbounded) or >= 0; validated by the policies that own a Band.
  constexpr Band(Index left, Index right) : left_(clamp(left)), right_(clamp(right)) {}

  constexpr bool contains(Index p, Index j) const { return j >= p - left_ && j <= p + right_; }

  // Keys allowed for absolute position p, intersected with [0, seq_k) (empty: begin >= end).
  constexpr Range keys(Index p, Index seq_k) const {
    return {std::max<Index>(p - left_, 0), std::min<Index>(p + right_ + 1, seq_k)};
  }

  // Exact, because the union of the bands of consecutive positions is one interval.
  BlockClass classify(const BlockGrid& g, Index qb, Index kb) const {
    const Range p = g.position_range(qb), k = g.kv_range(kb);
    if (p.empty() || k.empty()) return BlockClass::kEmpty;
    const Index p_first = p.begin, p_last = p.end - 1, k_first = k.begin, k_last = k.end - 1;
    if (k_last < p_first - left_ || k_first > p_last + right_) return BlockClass::kEmpty;
    if (k_first >= p_last - left_ && k_last <= p_first + right_) return BlockClass::kFull;
    return BlockClass::kPartial;
  }

  template <class Visitor>
  void for_each_block(const BlockGrid& g, Index qb, Visitor&& visit) const {
    const Range p = g.position_range(qb);
    if (p.empty() || g.extent().seq_k == 0) return;
    const Index first_key = std::max<Index>(p.begin - left_, 0);
    const Index last_key = std::min<Index>(p.end - 1 + right_, g.extent().seq_k - 1);
    if (first_key > last_key) return;
    for (Index kb = g.kv_block_of(first_key), kb_last = g.kv_block_of(last_key); kb <= kb_last; ++kb)
      visit(kb, classify(g, qb, kb));
  }

  // Allowed pairs in a tile, in O(1): position p sees the keys of the tile below p + right + 1 less
  // those below p - left.
  Index count(const BlockGrid& g, Index qb, Index kb) const {
    const Range p = g.position_range(qb), k = g.kv_range(kb);
    return keys_below_sum({p.begin + right_ + 1, p.end + right_ + 1}, k) - keys_below_sum({p.begin - left_, p.end - left_}, k);
  }

 private:
  // An unbounded side becomes a bound wider than any extent, so the arithmetic above needs no
  // special cases and cannot overflow (positions and keys are within +-2^40).
  static constexpr Index kUnbounded = Index{1} << 42;
  static constexpr Index clamp(Index w) { return (w < 0 || w > kUnbounded) ? kUnbounded : w; }

  Index left_;
  Index right_;
};

}  // namespace sparse_attention::detail
