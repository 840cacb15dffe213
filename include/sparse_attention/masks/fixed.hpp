// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "sparse_attention/core/error.hpp"
#include "sparse_attention/core/mask_policy.hpp"
#include "sparse_attention/core/types.hpp"
#include "sparse_attention/masks/detail.hpp"

namespace sparse_attention {

// Sparse Transformer "fixed" attention (Child et al., 2019): the sequence is cut into windows of
// `window` positions; query p attends to its own window and to the last `summary` positions of every
// window (the summary columns), keys j <= p only when causal:
//
//   (j <= p) and (floor(j / l) == floor(p / l)  or  j mod l in [l - c - o_h, l - 1 - o_h])
//
// o_h is head h's summary offset (0 by default): with offsets, different heads read different
// summary columns, as the paper's multi-head variant does; head h uses offsets[h % offsets.size()].
class Fixed {
 public:
  Fixed(Index window, Index summary, bool causal = true, std::vector<Index> offsets = {})
      : l_(window), c_(summary), causal_(causal) {
    detail::require(window >= 1, "Fixed", "window", window, ">= 1");
    detail::require(summary >= 1 && summary <= window, "Fixed", "summary", summary,
                    "1 <= summary <= window (" + std::to_string(window) + ")");
    for (std::size_t h = 0; h < offsets.size(); ++h)
      if (offsets[h] < 0 || offsets[h] > window - summary)
        detail::throw_invalid_argument("Fixed", "offsets[" + std::to_string(h) + "]", offsets[h],
                                       "0 <= offset <= window - summary (" + std::to_string(window - summary) + ")");
    if (!offsets.empty()) offsets_ = std::make_shared<const std::vector<Index>>(std::move(offsets));
  }

  // OpenAI's layout: `patterns` distinct summary blocks, head h reading the one at offset
  // (h mod patterns) * summary. Needs patterns * summary <= window.
  static Fixed sparse_transformer(Index window, Index summary, Index patterns, bool causal = true) {
    detail::require(patterns >= 1, "Fixed::sparse_transformer", "patterns", patterns, ">= 1");
    detail::require(window >= 1 && summary >= 1 && patterns * summary <= window, "Fixed::sparse_transformer",
                    "patterns * summary", patterns * summary, "<= window (" + std::to_string(window) + ")");
    std::vector<Index> offsets(static_cast<std::size_t>(patterns));
    for (Index k = 0; k < patterns; ++k) offsets[static_cast<std::size_t>(k)] = k * summary;
    return Fixed(window, summary, causal, std::move(offsets));
  }

  Index window() const { return l_; }
  Index summary() const { return c_; }
  bool causal() const { return causal_; }
  bool head_dependent() const { return offsets_ != nullptr && offsets_->size() > 1; }

  bool allowed(const Extent& x, Index i, Index j, Index h) const {
    const Index p = x.position(i);
    if (causal_ && j > p) return false;
    return detail::floor_div(j, l_) == detail::floor_div(p, l_) || is_summary(j, h);
  }

  std::uint64_t key_mask(const Extent& x, Index i, Index h, Index j0) const {
    const Index p = x.position(i), end = causal_ ? p + 1 : j0 + 64;  // keys below `end`
    const Index w = detail::floor_div(p, l_) * l_;
    std::uint64_t bits = interval_bits({w, std::min(w + l_, end)}, j0);
    const auto [r0, r1] = residues(h);
    for (Index base = j0 / l_ * l_; base < std::min(j0 + 64, end); base += l_)
      bits |= interval_bits({base + r0, std::min(base + r1 + 1, end)}, j0);
    return bits;
  }

  Index count_allowed(const BlockGrid& g, Index qb, Index kb, Index h) const {
    const Range pos = g.position_range(qb), keys = g.kv_range(kb);
    const auto [r0, r1] = residues(h);
    Index n = 0;
    for (Index p = pos.begin; p < pos.end; ++p) {
      const Index end = causal_ ? std::min(keys.end, p + 1) : keys.end;
      if (end <= keys.begin) continue;
      const Index w = detail::floor_div(p, l_) * l_;
      const Range own{std::max(keys.begin, w), std::min(end, w + l_)};
      // Summary keys in the range, less those inside the own window (already counted).
      n += own.size() + detail::count_residues(keys.begin, end, r0, r1, l_) -
           (own.empty() ? 0 : detail::count_residues(own.begin, own.end, r0, r1, l_));
    }
    return n;
  }

  BlockClass classify(const BlockGrid& g, Index qb, Index kb, Index h) const {
    return detail::classify_by_count(*this, g, qb, kb, h);
  }

  // Candidates: the summary columns of every window (up to the last query when causal), with the
  // whole window wherever it is one of the block's own windows. Each one holds an allowed pair.
  template <class Visitor>
  void for_each_block(const BlockGrid& g, Index qb, Index h, Visitor&& visit) const {
    const Range pos = g.position_range(qb);
    const Index seq_k = g.extent().seq_k;
    if (pos.empty() || seq_k == 0) return;
    const Index last_key = causal_ ? std::min(pos.end - 1, seq_k - 1) : seq_k - 1;
    if (last_key < 0) return;
    const Index own_first = detail::floor_div(pos.begin, l_), own_last = detail::floor_div(pos.end - 1, l_);
    const auto [r0, r1] = residues(h);
    detail::BlockEmitter emit(g);
    const auto visit_block = [&](Index kb) { visit(kb, classify(g, qb, kb, h)); };
    for (Index w = 0; w * l_ <= last_key; ++w) {
      if (w >= own_first && w <= own_last) {
        emit.keys(w * l_, std::min(w * l_ + l_ - 1, last_key), visit_block);
      } else {
        emit.keys(w * l_ + r0, std::min(w * l_ + r1, last_key), visit_block);
      }
    }
  }

 private:
  struct Residues {
    Index first, last;
  };
  Residues residues(Index h) const {
    const Index o = offsets_ ? (*offsets_)[static_cast<std::size_t>(h) % offsets_->size()] : 0;
    return {l_ - c_ - o, l_ - 1 - o};
  }
  bool is_summary(Index j, Index h) const {
    const auto [r0, r1] = residues(h);
    const Index r = j % l_;
    return r >= r0 && r <= r1;
  }

  Index l_, c_;
  bool causal_;
  std::shared_ptr<const std::vector<Index>> offsets_;
};

}  // namespace sparse_attention
