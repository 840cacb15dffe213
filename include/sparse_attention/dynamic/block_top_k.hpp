// SPDX-License-Identifier: Apache-2.0
// BlockTopK: block-level routing in the manner of MoBA and NSA's selection branch. Per head and query
// block, the score of key block j is the mean-pooled queries of the block against the mean-pooled keys
// of key block j; the k best key blocks at or before the query block are kept (ties to the smaller
// block), the diagonal block always among them, with causality inside it. The selection is one
// BlockMask per batch element, which runs on the generic blocked kernel like any static pattern.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "sparse_attention/core/block_layout.hpp"
#include "sparse_attention/core/error.hpp"
#include "sparse_attention/core/tensor_view.hpp"
#include "sparse_attention/core/types.hpp"
#include "sparse_attention/kernel/blocked_attention.hpp"
#include "sparse_attention/kernel/problem.hpp"
#include "sparse_attention/masks/block_mask.hpp"

namespace sparse_attention {

class BlockTopK {
 public:
  // Positions [0, seq_k) are cut into blocks of `block` (tail block shorter); query block Q holds the
  // queries at positions [Q * block, (Q + 1) * block). q [B, Hq, Sq, D], k [B, Hkv, Sk, D]; head h scores
  // against KV head h / (Hq / Hkv). k = 1 keeps the diagonal block only; k >= Q + 1 gives block Q all of
  // its history (Causal).
  template <class T>
  static BlockTopK select(TensorView<const T> q, TensorView<const T> k, Index top_k, Index block) {
    constexpr std::string_view where = "BlockTopK::select";
    detail::check_data(where, "q", q);
    detail::check_data(where, "k", k);
    detail::require(top_k >= 1, where, "k", top_k, ">= 1 (the diagonal block is always one of them)");
    detail::require(block >= 1, where, "block", block, ">= 1");
    const Index batch = q.extent(0), heads = q.extent(1), seq_q = q.extent(2), dim = q.extent(3);
    const Index kv_heads = k.extent(1), seq_k = k.extent(2);
    detail::require(heads >= 1 && kv_heads >= 1 && heads % kv_heads == 0, where, "q heads / k heads",
                    std::to_string(heads) + " / " + std::to_string(kv_heads), "a whole number (GQA)");
    if (k.extent(0) != batch || k.extent(3) != dim)
      detail::throw_invalid_argument(where, "k shape", detail::format_list(k.extents()),
                                     "[batch " + std::to_string(batch) + ", kv_heads, seq_k, head_dim " + std::to_string(dim) + "]");
    detail::require(seq_q <= seq_k, where, "seq_q", seq_q, "<= seq_k (" + std::to_string(seq_k) + "): queries are the last positions");
    BlockTopK s;
    s.top_k_ = top_k;
    s.block_ = block;
    const Index nb = detail::ceil_div(seq_k, block), offset = seq_k - seq_q, group = heads / kv_heads;
    std::vector<double> key_means(static_cast<std::size_t>(kv_heads * nb * dim)), query_mean(static_cast<std::size_t>(dim));
    std::vector<std::pair<double, Index>> scored;
    for (Index b = 0; b < batch; ++b) {
      for (Index g = 0; g < kv_heads; ++g)
        for (Index kb = 0; kb < nb; ++kb) {
          double* mean = &key_means[static_cast<std::size_t>((g * nb + kb) * dim)];
          std::fill(mean, mean + dim, 0.0);
          const Index first = kb * block, last = std::min(seq_k, first + block);
          for (Index j = first; j < last; ++j)
            for (Index c = 0; c < dim; ++c) mean[c] += static_cast<double>(k(b, g, j, c));
          for (Index c = 0; c < dim; ++c) mean[c] /= static_cast<double>(last - first);
        }
      std::vector<Index> row_begin{0}, columns;
      for (Index h = 0; h < heads; ++h) {
        for (Index qb = 0; qb < nb; ++qb) {
          // Queries of this call in the block (positions before seq_k - seq_q are the cached prefix).
          const Index first = std::max(qb * block, offset), last = std::min(seq_k, (qb + 1) * block);
          if (first < last) {
            std::fill(query_mean.begin(), query_mean.end(), 0.0);
            for (Index p = first; p < last; ++p)
              for (Index c = 0; c < dim; ++c) query_mean[static_cast<std::size_t>(c)] += static_cast<double>(q(b, h, p - offset, c));
            scored.clear();
            for (Index kb = 0; kb < qb; ++kb) {
              const double* mean = &key_means[static_cast<std::size_t>(((h / group) * nb + kb) * dim)];
              double score = 0;
              for (Index c = 0; c < dim; ++c) score += query_mean[static_cast<std::size_t>(c)] * mean[c];
              scored.emplace_back(-score, kb);  // ascending: best score first, then the smaller block
            }
            const Index keep = std::min<Index>(top_k - 1, qb);
            std::partial_sort(scored.begin(), scored.begin() + keep, scored.end());
            const std::size_t begin = columns.size();
            for (Index t = 0; t < keep; ++t) columns.push_back(scored[static_cast<std::size_t>(t)].second);
            columns.push_back(qb);
            std::sort(columns.begin() + static_cast<std::ptrdiff_t>(begin), columns.end());
          }
          row_begin.push_back(static_cast<Index>(columns.size()));
        }
      }
      s.masks_.push_back(BlockMask::from_rows(std::move(row_begin), std::move(columns), heads, nb, nb, {block, block},
                                              /*causal=*/true));
    }
    return s;
  }

  Index batch() const { return static_cast<Index>(masks_.size()); }
  Index k() const { return top_k_; }
  Index block() const { return block_; }
  // Batch element b's selection: a per-head, causal BlockMask.
  const BlockMask& mask(Index b) const { return masks_[static_cast<std::size_t>(b)]; }

 private:
  Index top_k_ = 1, block_ = 1;
  std::vector<BlockMask> masks_;
};

// Attention under a BlockTopK selection: each batch element through the blocked kernel with its own
// mask, tiles = the selection's blocks.
template <class T>
void attention(TensorView<const std::type_identity_t<T>> q, TensorView<const std::type_identity_t<T>> k,
               TensorView<const std::type_identity_t<T>> v, TensorView<T> out, const BlockTopK& selection,
               const AttentionOptions<T>& options = {}) {
  const detail::Problem p = detail::check_problem("attention (block selection)", q, k, v, out, options.lse, options.scale);
  detail::require(selection.batch() == p.batch, "attention (block selection)", "selection batch", selection.batch(),
                  "the batch of q (" + std::to_string(p.batch) + ")");
  auto slice = [](auto view, Index b) {
    using V = decltype(view);
    auto extents = view.extents();
    extents[0] = 1;
    return V(view.data() + b * view.stride(0), extents, view.strides());
  };
  for (Index b = 0; b < p.batch; ++b) {
    const BlockMask& mask = selection.mask(b);
    const BlockLayout layout = BlockLayout::build(mask, p.extent(), mask.block(), p.q_heads);
    AttentionOptions<T> one = options;
    if (options.lse.data() != nullptr) one.lse = slice(options.lse, b);
    attention<T>(slice(q, b), slice(k, b), slice(v, b), slice(out, b), mask, layout, one);
  }
}

}  // namespace sparse_attention
