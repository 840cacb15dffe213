// SPDX-License-Identifier: Apache-2.0
// Longformer's global query rows as the Hugging Face and allenai models compute them: with their own
// projections (Qg, Kg, Vg), over every key, overwriting the rows that attention() wrote with the
// ordinary projections. Local rows keep the ordinary Q, K, V, including for their global keys.
#pragma once

#include <algorithm>
#include <string>
#include <type_traits>
#include <vector>

#include "sparse_attention/core/block_layout.hpp"
#include "sparse_attention/core/tensor_view.hpp"
#include "sparse_attention/kernel/blocked_attention.hpp"
#include "sparse_attention/masks/longformer.hpp"

namespace sparse_attention {
namespace detail {

// Gathered query rows at ascending absolute positions; causal: each sees keys j <= its position.
struct GlobalRows {
  const std::vector<Index>* positions;
  bool causal;

  Range key_range(const Extent& x, Index i, Index) const {
    return {0, causal ? std::min((*positions)[static_cast<std::size_t>(i)] + 1, x.seq_k) : x.seq_k};
  }
  bool allowed(const Extent& x, Index i, Index j, Index h) const {
    const Range keys = key_range(x, i, h);
    return j >= keys.begin && j < keys.end;
  }
  BlockClass classify(const BlockGrid& g, Index qb, Index kb, Index h) const {
    const Range rows = g.q_range(qb), cols = g.kv_range(kb);
    if (rows.empty() || cols.empty()) return BlockClass::kEmpty;
    const Index last = key_range(g.extent(), rows.end - 1, h).end, first = key_range(g.extent(), rows.begin, h).end;
    if (cols.begin >= last) return BlockClass::kEmpty;
    return cols.end <= first ? BlockClass::kFull : BlockClass::kPartial;
  }
  template <class Visitor>
  void for_each_block(const BlockGrid& g, Index qb, Index h, Visitor&& visit) const {
    for (Index kb = 0; kb < g.kv_blocks(); ++kb) {
      const BlockClass c = classify(g, qb, kb, h);
      if (c == BlockClass::kEmpty) return;  // later blocks lie further right
      visit(kb, c);
    }
  }
};

}  // namespace detail

// Overwrites the rows of `out` (and of options.lse) at the policy's global positions with attention
// of q_global over (k_global, v_global): all keys, or j <= p for the causal variant. Shapes as for
// attention(); q_global may be the full projection (only the global rows are read).
template <class T>
void longformer_global_attention(TensorView<const std::type_identity_t<T>> q_global,
                                 TensorView<const std::type_identity_t<T>> k_global,
                                 TensorView<const std::type_identity_t<T>> v_global, TensorView<T> out,
                                 const Longformer& policy, const AttentionOptions<T>& options = {}) {
  const detail::Problem p = detail::check_problem("longformer_global_attention", q_global, k_global, v_global, out,
                                                  options.lse, options.scale);
  policy.check(p.extent(), p.q_heads);
  // Global positions that are query rows of this call (position p sits at row p - (seq_k - seq_q)).
  std::vector<Index> positions;
  for (Index g : policy.globals()) {
    const Index row = g - p.extent().offset();
    if (row >= 0 && row < p.seq_q) positions.push_back(g);
  }
  const Index rows = static_cast<Index>(positions.size());
  if (rows == 0 || p.batch == 0) return;

  std::vector<T> q(static_cast<std::size_t>(p.batch * p.q_heads * rows * p.head_dim));
  std::vector<T> o(static_cast<std::size_t>(p.batch * p.q_heads * rows * p.value_dim));
  std::vector<T> lse(static_cast<std::size_t>(p.batch * p.q_heads * rows));
  const TensorView<T> qv = bhsd(q.data(), p.batch, p.q_heads, rows, p.head_dim);
  const TensorView<T> ov = bhsd(o.data(), p.batch, p.q_heads, rows, p.value_dim);
  for (Index b = 0; b < p.batch; ++b)
    for (Index h = 0; h < p.q_heads; ++h)
      for (Index r = 0; r < rows; ++r)
        for (Index c = 0; c < p.head_dim; ++c)
          qv(b, h, r, c) = q_global(b, h, positions[static_cast<std::size_t>(r)] - p.extent().offset(), c);

  const detail::GlobalRows gathered{&positions, policy.causal()};
  const BlockLayout layout = BlockLayout::build(gathered, {rows, p.seq_k}, {64, 64}, p.q_heads);
  AttentionOptions<T> inner{.scale = p.scale, .lse = lse_bhs(lse.data(), p.batch, p.q_heads, rows),
                            .num_threads = options.num_threads};
  attention<T>(qv, k_global, v_global, ov, gathered, layout, inner);

  for (Index b = 0; b < p.batch; ++b)
    for (Index h = 0; h < p.q_heads; ++h)
      for (Index r = 0; r < rows; ++r) {
        const Index row = positions[static_cast<std::size_t>(r)] - p.extent().offset();
        for (Index c = 0; c < p.value_dim; ++c) out(b, h, row, c) = ov(b, h, r, c);
        if (options.lse.data() != nullptr) options.lse(b, h, row) = lse[static_cast<std::size_t>((b * p.q_heads + h) * rows + r)];
      }
}

}  // namespace sparse_attention
