// SPDX-License-Identifier: Apache-2.0
// TokenTopK: per query token, the keys it attends to (DeepSeek Sparse Attention's top-k selection).
// Lists are [batch, groups, seq_q, k] int32, each sorted ascending with -1 after its last key
// (FlashMLA's padding). groups = 1: one list per token, shared by every head (DSA); groups = the
// number of KV heads: one list per KV group. Produced by lightning_top_k() or built from the
// caller's own lists; attention(q, k, v, out, selection) runs it on gathered K/V rows.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "sparse_attention/core/error.hpp"
#include "sparse_attention/core/mask_policy.hpp"
#include "sparse_attention/core/memory.hpp"
#include "sparse_attention/core/types.hpp"
#include "sparse_attention/masks/detail.hpp"

namespace sparse_attention {

class TokenTopKMask;

class TokenTopK {
 public:
  TokenTopK() = default;

  // From the caller's lists, indices[((b * groups + g) * seq_q + i) * k + t]: any order, -1 anywhere
  // for "no key". Every other entry must be a key in [0, seq_k) and appear once in its list.
  // Causality is not imposed: a list may name any key (the indexer only ever selects j <= p).
  static TokenTopK from_indices(std::span<const std::int32_t> indices, Index batch, Index groups, Index seq_q,
                                Index k, Index seq_k) {
    check_dims("TokenTopK::from_indices", batch, groups, seq_q, k, seq_k);
    const Index rows = batch * groups * seq_q;
    detail::require(static_cast<Index>(indices.size()) == rows * k, "TokenTopK::from_indices", "indices size",
                    indices.size(), "batch * groups * seq_q * k = " + std::to_string(rows * k));
    TokenTopK s(batch, groups, seq_q, k, seq_k);
    std::vector<std::int32_t> row;
    for (Index r = 0; r < rows; ++r) {
      row.clear();
      for (Index t = 0; t < k; ++t) {
        const std::int32_t key = indices[static_cast<std::size_t>(r * k + t)];
        if (key == -1) continue;
        if (key < -1 || key >= seq_k)
          detail::throw_invalid_argument("TokenTopK::from_indices", "indices[" + position(r, t, groups, seq_q) + "]",
                                         key, "-1 (no key) or a key in [0, " + std::to_string(seq_k) + ")");
        row.push_back(key);
      }
      std::sort(row.begin(), row.end());
      const auto repeated = std::adjacent_find(row.begin(), row.end());
      if (repeated != row.end())
        detail::throw_invalid_argument("TokenTopK::from_indices", "indices[" + position(r, 0, groups, seq_q) + " ..]",
                                       *repeated, "keys listed at most once per list (this one repeats)");
      s.set_row(r, row);
    }
    return s;
  }

  Index batch() const { return batch_; }
  Index groups() const { return groups_; }
  Index seq_q() const { return seq_q_; }
  Index seq_k() const { return seq_k_; }
  Index k() const { return k_; }

  // The keys of row (b, g, i), sorted ascending.
  std::span<const std::int32_t> keys(Index b, Index g, Index i) const {
    const Index r = (b * groups_ + g) * seq_q_ + i;
    return {lists_.get() + r * k_, static_cast<std::size_t>((*counts_)[static_cast<std::size_t>(r)])};
  }
  // All lists, [batch, groups, seq_q, k], sorted ascending, -1 padded.
  std::span<const std::int32_t> indices() const {
    return {lists_.get(), static_cast<std::size_t>(batch_ * groups_ * seq_q_ * k_)};
  }
  // Selected (query, key) pairs over all lists.
  Index selected_pairs() const {
    Index n = 0;
    for (std::int32_t c : *counts_) n += c;
    return n;
  }

  // One batch element's selection as a MaskPolicy (for the dense reference, or the blocked kernel's
  // mask formulation): head h of q_heads reads list h / (q_heads / groups).
  TokenTopKMask mask(Index b, Index q_heads) const;

  // An unfilled selection of these sizes: every row must then be written once with set_row (the indexer
  // writes rows from several threads; the lists' memory is first touched there, not here).
  TokenTopK(Index batch, Index groups, Index seq_q, Index k, Index seq_k) : TokenTopK(TokenTopK(), batch, groups, seq_q, k, seq_k) {}
  // The same in the memory of `recycled`, when no other TokenTopK shares it (copies share their lists)
  // and it is large enough; else in new memory. A model's layer loop selects into one selection: at
  // n = 32768, k = 2048 the lists are 256 MB, and the first touch of new memory can cost more than the
  // top-k itself.
  TokenTopK(TokenTopK&& recycled, Index batch, Index groups, Index seq_q, Index k, Index seq_k)
      : batch_(batch), groups_(groups), seq_q_(seq_q), k_(k), seq_k_(seq_k) {
    const Index entries = batch * groups * seq_q * k, rows = batch * groups * seq_q;
    if (recycled.lists_.use_count() == 1 && recycled.capacity_ >= entries) {
      lists_ = std::move(recycled.lists_);
      capacity_ = recycled.capacity_;
    } else {
      lists_ = detail::allocate_large<std::int32_t>(entries);
      capacity_ = entries;
    }
    if (recycled.counts_.use_count() == 1) {
      counts_ = std::move(recycled.counts_);
      counts_->assign(static_cast<std::size_t>(rows), 0);
    } else {
      counts_ = std::make_shared<std::vector<std::int32_t>>(static_cast<std::size_t>(rows), 0);
    }
    recycled = TokenTopK();  // empty, not moved-from
  }
  // Row r (= (b * groups + g) * seq_q + i) holds `keys`, sorted ascending, at most k of them.
  void set_row(Index r, std::span<const std::int32_t> keys) {
    std::int32_t* row = lists_.get() + r * k_;
    std::copy(keys.begin(), keys.end(), row);
    std::fill(row + keys.size(), row + k_, -1);
    (*counts_)[static_cast<std::size_t>(r)] = static_cast<std::int32_t>(keys.size());
  }

  static void check_dims(std::string_view where, Index batch, Index groups, Index seq_q, Index k, Index seq_k) {
    detail::require(batch >= 0, where, "batch", batch, ">= 0");
    detail::require(groups >= 1, where, "groups", groups, ">= 1 (1: one list shared by every head)");
    detail::require(seq_q >= 0 && seq_q <= kMaxSequenceLength, where, "seq_q", seq_q, "0 <= seq_q <= 2^40");
    detail::require(seq_k >= 0 && seq_k < (Index{1} << 31), where, "seq_k", seq_k, "0 <= seq_k < 2^31 (int32 indices)");
    detail::require(k >= 1, where, "k", k, ">= 1");
  }

 private:
  static std::string position(Index r, Index t, Index groups, Index seq_q) {
    const Index i = r % seq_q, g = (r / seq_q) % groups, b = r / (seq_q * groups);
    return std::to_string(b) + ", " + std::to_string(g) + ", " + std::to_string(i) + ", " + std::to_string(t);
  }

  Index batch_ = 0, groups_ = 1, seq_q_ = 0, k_ = 1, seq_k_ = 0;
  Index capacity_ = 0;  // entries of lists_
  std::shared_ptr<std::int32_t[]> lists_ = std::shared_ptr<std::int32_t[]>(new std::int32_t[0]);
  std::shared_ptr<std::vector<std::int32_t>> counts_ = std::make_shared<std::vector<std::int32_t>>();
};

// One batch element of a TokenTopK as a MaskPolicy: allowed(i, j, h) iff j is in the list of query row
// i for head h's group.
class TokenTopKMask {
 public:
  TokenTopKMask(TokenTopK selection, Index b, Index q_heads) : s_(std::move(selection)), b_(b), q_heads_(q_heads) {
    detail::require(b >= 0 && b < s_.batch(), "TokenTopK::mask", "b", b, "a batch index in [0, batch)");
    detail::require(q_heads >= 1 && q_heads % s_.groups() == 0, "TokenTopK::mask", "q_heads", q_heads,
                    "a multiple of the selection's groups (" + std::to_string(s_.groups()) + ")");
  }

  bool head_dependent() const { return s_.groups() > 1; }
  void check(const Extent& x, Index num_heads) const {
    detail::require(x.seq_q == s_.seq_q(), "TokenTopK", "seq_q", x.seq_q, "the selection's " + std::to_string(s_.seq_q()));
    detail::require(x.seq_k == s_.seq_k(), "TokenTopK", "seq_k", x.seq_k, "the selection's " + std::to_string(s_.seq_k()));
    detail::require(num_heads == q_heads_ || (s_.groups() == 1), "TokenTopK", "heads", num_heads,
                    "the q_heads the mask was made for (" + std::to_string(q_heads_) + ")");
  }

  std::span<const std::int32_t> keys(Index i, Index h) const {
    return s_.keys(b_, s_.groups() == 1 ? 0 : h / (q_heads_ / s_.groups()), i);
  }
  bool allowed(const Extent&, Index i, Index j, Index h) const {
    const auto k = keys(i, h);
    return std::binary_search(k.begin(), k.end(), static_cast<std::int32_t>(j));
  }
  std::uint64_t key_mask(const Extent&, Index i, Index h, Index j0) const {
    const auto k = keys(i, h);
    std::uint64_t bits = 0;
    for (auto it = std::lower_bound(k.begin(), k.end(), static_cast<std::int32_t>(j0)); it != k.end() && *it < j0 + 64; ++it)
      bits |= std::uint64_t{1} << (*it - j0);
    return bits;
  }
  Index count_allowed(const BlockGrid& g, Index qb, Index kb, Index h) const {
    const Range rows = g.q_range(qb), cols = g.kv_range(kb);
    Index n = 0;
    for (Index i = rows.begin; i < rows.end; ++i) {
      const auto k = keys(i, h);
      n += std::lower_bound(k.begin(), k.end(), static_cast<std::int32_t>(cols.end)) -
           std::lower_bound(k.begin(), k.end(), static_cast<std::int32_t>(cols.begin));
    }
    return n;
  }
  BlockClass classify(const BlockGrid& g, Index qb, Index kb, Index h) const {
    return detail::classify_by_count(*this, g, qb, kb, h);
  }
  // The key blocks of every row's keys: O(rows x k) per query block.
  template <class Visitor>
  void for_each_block(const BlockGrid& g, Index qb, Index h, Visitor&& visit) const {
    std::vector<Index> blocks;
    for (Index i = g.q_range(qb).begin; i < g.q_range(qb).end; ++i)
      for (std::int32_t j : keys(i, h)) blocks.push_back(g.kv_block_of(j));
    std::sort(blocks.begin(), blocks.end());
    blocks.erase(std::unique(blocks.begin(), blocks.end()), blocks.end());
    for (Index kb : blocks) visit(kb, classify(g, qb, kb, h));
  }

 private:
  TokenTopK s_;
  Index b_, q_heads_;
};

inline TokenTopKMask TokenTopK::mask(Index b, Index q_heads) const { return TokenTopKMask(*this, b, q_heads); }

}  // namespace sparse_attention
