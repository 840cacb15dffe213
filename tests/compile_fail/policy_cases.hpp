// SPDX-License-Identifier: Apache-2.0
// Policies with one member removed at a time (controlled by the including file).
#pragma once
#include "sparse_attention/sparse_attention.hpp"

namespace sa = sparse_attention;

struct Policy {
#ifndef DROP_PREDICATE
  bool allowed(const sa::Extent&, sa::Index, sa::Index, sa::Index) const { return true; }
#endif
#ifndef DROP_CLASSIFY
  sa::BlockClass classify(const sa::BlockGrid&, sa::Index, sa::Index, sa::Index) const { return sa::BlockClass::kFull; }
#endif
#ifndef DROP_ENUMERATION
  template <class V>
  void for_each_block(const sa::BlockGrid& g, sa::Index, sa::Index, V&& visit) const {
    for (sa::Index kb = 0; kb < g.kv_blocks(); ++kb) visit(kb, sa::BlockClass::kFull);
  }
#endif
};

inline void use_policy() {
  float q[4] = {}, o[4] = {};
  sa::attention<float>(sa::bhsd<const float>(q, 1, 1, 1, 4), sa::bhsd<const float>(q, 1, 1, 1, 4),
                       sa::bhsd<const float>(q, 1, 1, 1, 4), sa::bhsd(o, 1, 1, 1, 4), Policy{});
}
