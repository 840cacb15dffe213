// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "sparse_attention/core/types.hpp"

namespace sparse_attention {

// Every query attends to every key: the O(n^2) baseline, through the same blocked kernel.
struct Dense {
  constexpr bool allowed(const Extent&, Index, Index, Index) const { return true; }
  constexpr Range key_range(const Extent& x, Index, Index) const { return {0, x.seq_k}; }

  BlockClass classify(const BlockGrid& g, Index qb, Index kb, Index) const {
    return g.q_range(qb).empty() || g.kv_range(kb).empty() ? BlockClass::kEmpty : BlockClass::kFull;
  }

  template <class Visitor>
  void for_each_block(const BlockGrid& g, Index qb, Index, Visitor&& visit) const {
    if (g.q_range(qb).empty()) return;
    for (Index kb = 0; kb < g.kv_blocks(); ++kb) visit(kb, BlockClass::kFull);
  }
};

}  // namespace sparse_attention
