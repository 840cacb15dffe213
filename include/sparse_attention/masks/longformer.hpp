// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sparse_attention/core/error.hpp"
#include "sparse_attention/core/mask_policy.hpp"
#include "sparse_attention/core/types.hpp"
#include "sparse_attention/masks/detail.hpp"

namespace sparse_attention {

// Longformer (Beltagy et al., 2020): a sliding window plus global tokens. A global token's query
// attends to every key and every query attends to the global keys; any other query p attends to
// |p - j| <= window. Each key counts once (a global key inside the window is not doubled).
//
//   `window` is ONE-SIDED: 2 * window + 1 keys. allenai/longformer's attention_window is already
//   one-sided; Hugging Face's `attention_window` is the total, 2 * window: use from_hugging_face().
//
// Causal variant: additionally j <= p. Globals are positions in [0, seq_k), checked per call.
// In the models, global query rows use their own projections (Qg, Kg, Vg); see
// longformer_global_attention().
class Longformer {
 public:
  Longformer(Index window, std::vector<Index> globals, bool causal = false) : w_(window), causal_(causal) {
    detail::require(window >= 0, "Longformer", "window", window, ">= 0 (keys on each side)");
    std::sort(globals.begin(), globals.end());
    for (std::size_t k = 0; k < globals.size(); ++k) {
      detail::require(globals[k] >= 0, "Longformer", "globals", globals[k], "positions >= 0");
      detail::require(k == 0 || globals[k] != globals[k - 1], "Longformer", "globals", globals[k],
                      "distinct positions (this one appears twice)");
    }
    globals_ = std::make_shared<const std::vector<Index>>(std::move(globals));
  }

  // Hugging Face's LongformerConfig.attention_window is the whole window (even, > 0): window = it / 2.
  static Longformer from_hugging_face(Index attention_window, std::vector<Index> globals) {
    detail::require(attention_window > 0 && attention_window % 2 == 0, "Longformer::from_hugging_face",
                    "attention_window", attention_window, "an even number > 0 (Hugging Face's total window)");
    return Longformer(attention_window / 2, std::move(globals));
  }

  Index window() const { return w_; }
  bool causal() const { return causal_; }
  const std::vector<Index>& globals() const { return *globals_; }

  void check(const Extent& x, Index) const {
    if (!globals_->empty())
      detail::require(globals_->back() < x.seq_k, "Longformer", "globals", globals_->back(),
                      "positions < seq_k (" + std::to_string(x.seq_k) + ")");
  }

  bool is_global(Index position) const {
    return std::binary_search(globals_->begin(), globals_->end(), position);
  }

  bool allowed(const Extent& x, Index i, Index j, Index) const {
    const Index p = x.position(i);
    if (causal_ && j > p) return false;
    if (is_global(p)) return true;
    const Index d = p - j;
    return (d <= w_ && d >= -w_) || is_global(j);
  }

  std::uint64_t key_mask(const Extent& x, Index i, Index, Index j0) const {
    const Index p = x.position(i), end = causal_ ? p + 1 : x.seq_k;  // keys below `end`
    if (is_global(p)) return interval_bits({0, end}, j0);
    std::uint64_t bits = interval_bits({p - w_, std::min(p + w_ + 1, end)}, j0);
    for (auto g = std::lower_bound(globals_->begin(), globals_->end(), j0); g != globals_->end() && *g < j0 + 64 && *g < end; ++g)
      bits |= detail::key_bit(*g, j0);
    return bits;
  }

  Index count_allowed(const BlockGrid& g, Index qb, Index kb, Index) const {
    const Range pos = g.position_range(qb), keys = g.kv_range(kb);
    const auto first_global = std::lower_bound(globals_->begin(), globals_->end(), keys.begin);
    Index n = 0;
    for (Index p = pos.begin; p < pos.end; ++p) {
      const Index end = causal_ ? std::min(keys.end, p + 1) : keys.end;
      if (end <= keys.begin) continue;
      if (is_global(p)) {
        n += end - keys.begin;
        continue;
      }
      const Range local{std::max(keys.begin, p - w_), std::min(end, p + w_ + 1)};
      n += local.size();
      for (auto it = first_global; it != globals_->end() && *it < end; ++it)
        n += (*it < local.begin || *it >= local.end) ? 1 : 0;
    }
    return n;
  }

  BlockClass classify(const BlockGrid& g, Index qb, Index kb, Index h) const {
    return detail::classify_by_count(*this, g, qb, kb, h);
  }

  // A block holding a global query visits every key block; any other, its window band and the blocks
  // of the global keys.
  template <class Visitor>
  void for_each_block(const BlockGrid& g, Index qb, Index h, Visitor&& visit) const {
    const Range pos = g.position_range(qb);
    const Index seq_k = g.extent().seq_k;
    if (pos.empty() || seq_k == 0) return;
    const Index last_key = causal_ ? std::min(pos.end - 1, seq_k - 1) : seq_k - 1;
    if (last_key < 0) return;
    detail::BlockEmitter emit(g);
    const auto visit_block = [&](Index kb) { visit(kb, classify(g, qb, kb, h)); };
    const auto g_begin = std::lower_bound(globals_->begin(), globals_->end(), pos.begin);
    if (g_begin != globals_->end() && *g_begin < pos.end) {
      emit.keys(0, last_key, visit_block);
      return;
    }
    const Index band_first = pos.begin - w_, band_last = std::min(pos.end - 1 + w_, last_key);
    auto it = globals_->begin();
    for (; it != globals_->end() && *it < band_first; ++it) emit.keys(*it, *it, visit_block);
    emit.keys(band_first, band_last, visit_block);
    for (; it != globals_->end() && *it <= last_key; ++it) emit.keys(*it, *it, visit_block);
  }

 private:
  Index w_;
  bool causal_;
  std::shared_ptr<const std::vector<Index>> globals_;
};

}  // namespace sparse_attention
