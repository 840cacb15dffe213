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
#include "sparse_attention/kernel/parallel.hpp"
#include "sparse_attention/kernel/problem.hpp"
#include "sparse_attention/masks/block_mask.hpp"

namespace sparse_attention {

struct BlockTopKOptions {
  // Threads (over heads); 0 means OpenMP's default. The selection never depends on it.
  int num_threads = 0;
};

class BlockTopK {
 public:
  // Positions [0, seq_k) are cut into blocks of `block` (tail block shorter); query block Q holds the
  // queries at positions [Q * block, (Q + 1) * block). q [B, Hq, Sq, D], k [B, Hkv, Sk, D]; head h scores
  // against KV head h / (Hq / Hkv). k = 1 keeps the diagonal block only; k >= Q + 1 gives block Q all of
  // its history (Causal).
  template <class T>
  static BlockTopK select(TensorView<const T> q, TensorView<const T> k, Index top_k, Index block,
                          const BlockTopKOptions& options = {}) {
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
    detail::require(options.num_threads >= 0, where, "num_threads", options.num_threads, ">= 0 (0 = OpenMP's default)");
    BlockTopK s;
    s.top_k_ = top_k;
    s.block_ = block;
    const Index nb = detail::ceil_div(seq_k, block), offset = seq_k - seq_q, group = heads / kv_heads;
    const int threads = detail::thread_count(options.num_threads, heads);
    // A query block holding queries of this call (positions before seq_k - seq_q are the cached prefix)
    // keeps min(k, qb + 1) blocks: its row's place in the compressed rows is known before any score.
    std::vector<Index> row_size(static_cast<std::size_t>(nb));
    for (Index qb = 0; qb < nb; ++qb)
      row_size[static_cast<std::size_t>(qb)] =
          std::max(qb * block, offset) < std::min(seq_k, (qb + 1) * block) ? std::min(top_k, qb + 1) : 0;
    std::vector<Index> row_begin(static_cast<std::size_t>(heads * nb) + 1, 0);
    for (Index r = 0; r < heads * nb; ++r)
      row_begin[static_cast<std::size_t>(r) + 1] = row_begin[static_cast<std::size_t>(r)] + row_size[static_cast<std::size_t>(r % nb)];
    // Key means transposed, [kv_head][dim][key block], so that one query mean scores every earlier key
    // block at once (vectors over key blocks); each score still sums over the dimensions in order.
    std::vector<double> key_means(static_cast<std::size_t>(kv_heads * dim * nb));
    // Per thread: a mean (dim), the scores (nb) and the (score, block) pairs (nb), allocated here: the
    // parallel loops must not throw. (Pointers into them by data() + offset: any of them may be empty.)
    std::vector<double> means(static_cast<std::size_t>(threads * (dim + nb)));
    std::vector<std::pair<double, Index>> scored(static_cast<std::size_t>(threads * nb));
    for (Index b = 0; b < batch; ++b) {
      detail::parallel_for_dynamic(kv_heads, threads, [&](Index g, int thread) {
        double* mean = means.data() + thread * (dim + nb);
        for (Index kb = 0; kb < nb; ++kb) {
          const Index first = kb * block, last = std::min(seq_k, first + block);
          sum_rows(k.data() + b * k.stride(0) + g * k.stride(1), k.stride(2), k.stride(3), first, last, dim, mean);
          for (Index c = 0; c < dim; ++c)
            key_means[static_cast<std::size_t>((g * dim + c) * nb + kb)] = mean[c] / static_cast<double>(last - first);
        }
      });
      std::vector<Index> columns(static_cast<std::size_t>(row_begin.back()));
      detail::parallel_for_dynamic(heads, threads, [&](Index h, int thread) {
        double* mean = means.data() + thread * (dim + nb);
        double* scores = mean + dim;
        std::pair<double, Index>* pairs = scored.data() + thread * nb;
        const double* head_means = key_means.data() + (h / group) * dim * nb;
        for (Index qb = 0; qb < nb; ++qb) {
          if (row_size[static_cast<std::size_t>(qb)] == 0) continue;
          const Index first = std::max(qb * block, offset), last = std::min(seq_k, (qb + 1) * block);
          sum_rows(q.data() + b * q.stride(0) + h * q.stride(1), q.stride(2), q.stride(3), first - offset, last - offset, dim, mean);
          std::fill(scores, scores + qb, 0.0);
          for (Index c = 0; c < dim; ++c) {
            const double m = mean[c];
            const double* column = head_means + c * nb;
            for (Index kb = 0; kb < qb; ++kb) scores[kb] += m * column[kb];
          }
          for (Index kb = 0; kb < qb; ++kb) pairs[kb] = {-scores[kb], kb};  // ascending: best first, then the smaller block
          const Index keep = row_size[static_cast<std::size_t>(qb)] - 1;   // and the diagonal block
          std::partial_sort(pairs, pairs + keep, pairs + qb);
          Index* out = columns.data() + row_begin[static_cast<std::size_t>(h * nb + qb)];
          for (Index t = 0; t < keep; ++t) out[t] = pairs[t].second;
          out[keep] = qb;
          std::sort(out, out + keep + 1);
        }
      });
      s.masks_.push_back(BlockMask::from_rows(row_begin, std::move(columns), heads, nb, nb, {block, block}, /*causal=*/true));
    }
    return s;
  }

  Index batch() const { return static_cast<Index>(masks_.size()); }
  Index k() const { return top_k_; }
  Index block() const { return block_; }
  // Batch element b's selection: a per-head, causal BlockMask.
  const BlockMask& mask(Index b) const { return masks_[static_cast<std::size_t>(b)]; }

 private:
  // sum[c] = the sum over rows [first, last) of row[c] in double, row r's element c at
  // base[r * row_stride + c * dim_stride].
  template <class T>
  static void sum_rows(const T* base, Index row_stride, Index dim_stride, Index first, Index last, Index dim, double* sum) {
    std::fill(sum, sum + dim, 0.0);
    for (Index r = first; r < last; ++r) {
      const T* row = base + r * row_stride;
      if (dim_stride == 1) {
        for (Index c = 0; c < dim; ++c) sum[c] += static_cast<double>(row[c]);
      } else {
        for (Index c = 0; c < dim; ++c) sum[c] += static_cast<double>(row[c * dim_stride]);
      }
    }
  }

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
