// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "sparse_attention/core/types.hpp"
#include "sparse_attention/masks/band.hpp"

namespace sparse_attention {

// Query at position p attends to keys j <= p: LocalWindow{-1, 0}, aligned bottom-right, so with
// seq_q > seq_k the first seq_q - seq_k rows have no key.
class Causal {
 public:
  bool allowed(const Extent& x, Index i, Index j, Index) const { return j <= x.position(i); }
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
  detail::Band band_{-1, 0};
};

}  // namespace sparse_attention
