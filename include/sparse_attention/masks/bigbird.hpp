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

// BigBird (Zaheer et al., 2020), ITC layout, defined on blocks of `block` positions (nb = ceil(seq_k /
// block) blocks; a shorter tail block when seq_k % block != 0):
//   - global blocks: the first g and the last g; a query in a global block attends to every key,
//     and every query attends to the keys of the global blocks;
//   - window: query block Q attends to key blocks Q - 1, Q, Q + 1;
//   - random: r further key blocks per (head, Q), outside window and globals.
// Sets, not multisets: a key counts once even if it is reached twice (Hugging Face's block-sparse code
// counts a random block that repeats a window or global block twice in the softmax; here it is not).
// Random blocks come from a counter-based generator keyed by (seed, head, Q): the same for every
// thread count and call order. Or they come from an explicit table R[head][Q] (from_table), e.g.
// exported from a trained Hugging Face model. Causal variant: additionally j <= p, random blocks drawn
// from before the window. Queries before position 0 (seq_q > seq_k) attend to nothing.
class BigBird {
 public:
  BigBird(Index block, Index global_blocks, Index random_blocks, std::uint64_t seed, bool causal = false)
      : b_(block), g_(global_blocks), r_(random_blocks), seed_(seed), causal_(causal) {
    detail::require(block >= 1, "BigBird", "block", block, ">= 1");
    detail::require(global_blocks >= 0, "BigBird", "global_blocks", global_blocks, ">= 0");
    detail::require(random_blocks >= 0, "BigBird", "random_blocks", random_blocks, ">= 0");
  }

  // Random blocks given per head and query block: table[h][Q] lists the key blocks of query block Q for
  // head h, for Q in [0, nb) (rows of global blocks are ignored) or for the nb - 2g non-global blocks
  // only (Hugging Face's rand_attn layout, [heads][nb - 2][r] for g = 1). One head is broadcast to all.
  static BigBird from_table(Index block, Index global_blocks, std::vector<std::vector<std::vector<Index>>> table,
                            bool causal = false) {
    BigBird bb(block, global_blocks, 0, 0, causal);
    detail::require(!table.empty(), "BigBird::from_table", "table heads", 0, ">= 1");
    for (auto& head : table)
      for (auto& row : head) {
        std::sort(row.begin(), row.end());
        row.erase(std::unique(row.begin(), row.end()), row.end());
      }
    bb.table_ = std::make_shared<const std::vector<std::vector<std::vector<Index>>>>(std::move(table));
    return bb;
  }

  Index block() const { return b_; }
  Index global_blocks() const { return g_; }
  Index random_blocks() const { return r_; }
  bool causal() const { return causal_; }
  bool head_dependent() const { return table_ ? table_->size() > 1 : r_ > 0; }

  void check(const Extent& x, Index num_heads) const {
    const Index nb = blocks(x);
    if (table_) {
      detail::require(table_->size() == 1 || static_cast<Index>(table_->size()) == num_heads, "BigBird",
                      "table heads", table_->size(), "1 or the number of heads (" + std::to_string(num_heads) + ")");
      const Index with_globals = nb, without = std::max<Index>(0, nb - 2 * g_);
      // Messages are built only on failure: these loops visit every row and listed block.
      for (std::size_t h = 0; h < table_->size(); ++h) {
        const auto& rows = (*table_)[h];
        const auto n = static_cast<Index>(rows.size());
        if (n != with_globals && n != without)
          detail::throw_invalid_argument("BigBird", "table rows of head " + std::to_string(h), n,
                                         std::to_string(with_globals) + " (every query block) or " +
                                             std::to_string(without) + " (the non-global ones) for seq_k " +
                                             std::to_string(x.seq_k));
        for (const auto& row : rows)
          for (Index kb : row)
            if (kb < 0 || kb >= nb)
              detail::throw_invalid_argument("BigBird", "table block", kb,
                                             "a key block in [0, " + std::to_string(nb) + ")");
      }
      return;
    }
    if (causal_ || r_ == 0) return;  // causal rows take what their prefix offers
    // The fewest candidates any non-global row has: all blocks but its window and the globals.
    for (Index q = g_; q < nb - g_; ++q) {
      const Index candidates = nb - static_cast<Index>(excluded(q, nb).size());
      if (r_ > candidates)
        detail::throw_invalid_argument("BigBird", "random_blocks", r_,
                                       "<= " + std::to_string(candidates) +
                                           ", the blocks outside window and globals of query block " +
                                           std::to_string(q) + " at seq_k " + std::to_string(x.seq_k));
    }
  }

  bool allowed(const Extent& x, Index i, Index j, Index h) const {
    const Index p = x.position(i);
    if (p < 0 || (causal_ && j > p)) return false;
    const Index nb = blocks(x), q = p / b_, k = j / b_;
    if (is_global(q, nb) || is_global(k, nb) || (k >= q - 1 && k <= q + 1)) return true;
    const std::vector<Index> random = random_row(h, q, nb);
    return std::binary_search(random.begin(), random.end(), k);
  }

  std::uint64_t key_mask(const Extent& x, Index i, Index h, Index j0) const {
    const Index p = x.position(i);
    if (p < 0) return 0;
    const Index end = causal_ ? p + 1 : x.seq_k, nb = blocks(x), q = p / b_;
    if (is_global(q, nb)) return interval_bits({0, end}, j0);
    std::uint64_t bits = 0;
    for_each_key_block(q, h, nb, [&](Index k) { bits |= interval_bits({k * b_, std::min((k + 1) * b_, end)}, j0); });
    return bits;
  }

  Index count_allowed(const BlockGrid& g, Index qb, Index kb, Index h) const {
    const Range pos = g.position_range(qb), keys = g.kv_range(kb);
    const Index nb = blocks(g.extent());
    Index n = 0;
    std::vector<Index> key_blocks;
    for (Index p0 = std::max<Index>(pos.begin, 0); p0 < pos.end;) {
      // Rows of one BigBird query block share their key blocks.
      const Index q = p0 / b_, p_end = std::min(pos.end, (q + 1) * b_);
      key_blocks.clear();
      if (!is_global(q, nb)) for_each_key_block(q, h, nb, [&](Index k) { key_blocks.push_back(k); });
      for (Index p = p0; p < p_end; ++p) {
        const Index end = causal_ ? std::min(keys.end, p + 1) : keys.end;
        if (end <= keys.begin) continue;
        if (is_global(q, nb)) {
          n += end - keys.begin;
          continue;
        }
        for (Index k : key_blocks) n += Range{std::max(keys.begin, k * b_), std::min(end, (k + 1) * b_)}.size();
      }
      p0 = p_end;
    }
    return n;
  }

  BlockClass classify(const BlockGrid& g, Index qb, Index kb, Index h) const {
    return detail::classify_by_count(*this, g, qb, kb, h);
  }

  template <class Visitor>
  void for_each_block(const BlockGrid& g, Index qb, Index h, Visitor&& visit) const {
    const Range pos = g.position_range(qb);
    const Index seq_k = g.extent().seq_k;
    if (pos.end <= 0 || seq_k == 0) return;
    const Index first_p = std::max<Index>(pos.begin, 0), last_key = causal_ ? std::min(pos.end - 1, seq_k - 1) : seq_k - 1;
    const Index nb = blocks(g.extent()), q_first = first_p / b_, q_last = (pos.end - 1) / b_;
    detail::BlockEmitter emit(g);
    const auto visit_block = [&](Index kb) { visit(kb, classify(g, qb, kb, h)); };
    bool global_row = false;
    std::vector<Index> key_blocks;
    for (Index q = q_first; q <= q_last; ++q) {
      if (is_global(q, nb)) {
        global_row = true;
        break;
      }
      for_each_key_block(q, h, nb, [&](Index k) { key_blocks.push_back(k); });
    }
    if (global_row) {
      emit.keys(0, last_key, visit_block);
      return;
    }
    std::sort(key_blocks.begin(), key_blocks.end());
    for (Index k : key_blocks)
      if (k * b_ <= last_key) emit.keys(k * b_, std::min((k + 1) * b_ - 1, last_key), visit_block);
  }

  // The random key blocks of (head h, query block q) for nb blocks, sorted; empty for global rows.
  std::vector<Index> random_row(Index h, Index q, Index nb) const {
    if (is_global(q, nb)) return {};
    if (table_) {
      const auto& rows = (*table_)[static_cast<std::size_t>(h) % table_->size()];
      const Index row = static_cast<Index>(rows.size()) == nb ? q : q - g_;
      return rows[static_cast<std::size_t>(row)];
    }
    const std::vector<Index> skip = excluded(q, nb);
    // Causal: candidates are the blocks before the window; otherwise every block.
    const Index span = causal_ ? std::max<Index>(0, q - 1) : nb;
    const Index skipped = static_cast<Index>(std::count_if(skip.begin(), skip.end(), [&](Index k) { return k < span; }));
    const Index m = span - skipped, r = std::min(r_, m);
    // Floyd's algorithm: r distinct values of [0, m) in O(r^2), then mapped past the skipped blocks.
    std::vector<Index> chosen;
    chosen.reserve(static_cast<std::size_t>(r));
    for (Index t = m - r, draw = 0; t < m; ++t, ++draw) {
      const Index v = uniform(h, q, draw, static_cast<std::uint64_t>(t) + 1);
      chosen.push_back(std::find(chosen.begin(), chosen.end(), v) == chosen.end() ? v : t);
    }
    for (Index& c : chosen)
      for (Index k : skip)
        if (k <= c) ++c;
    std::sort(chosen.begin(), chosen.end());
    return chosen;
  }

 private:
  Index blocks(const Extent& x) const { return detail::ceil_div(x.seq_k, b_); }
  bool is_global(Index block, Index nb) const { return block < g_ || block >= nb - g_; }

  // Window and global blocks of query block q, sorted, distinct, within [0, nb).
  std::vector<Index> excluded(Index q, Index nb) const {
    std::vector<Index> e;
    for (Index k = 0; k < std::min(g_, nb); ++k) e.push_back(k);
    for (Index k = q - 1; k <= q + 1; ++k)
      if (k >= g_ && k < nb - g_) e.push_back(k);
    for (Index k = std::max(nb - g_, g_); k < nb; ++k) e.push_back(k);
    std::sort(e.begin(), e.end());
    e.erase(std::unique(e.begin(), e.end()), e.end());
    return e;
  }

  // Key blocks of non-global query block q, in increasing order, each once.
  template <class F>
  void for_each_key_block(Index q, Index h, Index nb, F&& f) const {
    std::vector<Index> k = excluded(q, nb);
    for (Index r : random_row(h, q, nb)) k.push_back(r);
    std::sort(k.begin(), k.end());
    k.erase(std::unique(k.begin(), k.end()), k.end());
    for (Index kb : k) f(kb);
  }

  // A value in [0, bound) (bound < 2^32) determined by (seed, h, q, draw) alone: SplitMix64's
  // finaliser over the key, scaled by a multiply of its top 32 bits.
  Index uniform(Index h, Index q, Index draw, std::uint64_t bound) const {
    std::uint64_t z = seed_ ^ (static_cast<std::uint64_t>(h) * 0x9E3779B97F4A7C15ull) ^
                      (static_cast<std::uint64_t>(q) * 0xC2B2AE3D27D4EB4Full) ^
                      (static_cast<std::uint64_t>(draw) * 0x165667B19E3779F9ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return static_cast<Index>(((z >> 32) * bound) >> 32);
  }

  Index b_, g_, r_;
  std::uint64_t seed_;
  bool causal_;
  std::shared_ptr<const std::vector<std::vector<std::vector<Index>>>> table_;
};

}  // namespace sparse_attention
