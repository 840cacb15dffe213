// SPDX-License-Identifier: Apache-2.0
// One batch element of a token selection (TokenTopK) as 64 x 64 tiles, so that the blocked kernel can
// run it: per (group, query block) the key blocks its rows select from, and per such tile each row's
// 64 selected keys as bits. A selection that fills the tiles it touches well (DSA's top-2048 at
// n = 8192 keeps 43% of their pairs) runs faster as tiles at the blocked kernel's rate than as
// gathered rows at L2 bandwidth (see selection_prefers_tiles in gather_attention.hpp).
//
// SelectionTiles is a MaskPolicy with O(1) key_mask (a table lookup) and a tile's words at once
// (tile_key_masks), where TokenTopKMask, which reads the lists themselves, binary-searches every row
// of every tile. Memory: 520 bytes per touched tile per group (64 words and a count), a
// [groups, q_blocks, kv_blocks] table of int32 tile indices, and while it is built 8 bytes per key
// per thread of scratch.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "sparse_attention/core/error.hpp"
#include "sparse_attention/core/mask_policy.hpp"
#include "sparse_attention/core/types.hpp"
#include "sparse_attention/dynamic/token_top_k.hpp"
#include "sparse_attention/kernel/parallel.hpp"
#include "sparse_attention/masks/detail.hpp"

namespace sparse_attention::detail {

class SelectionTiles {
 public:
  static constexpr Index kBlock = 64;  // the tiles' rows and keys: one 64-bit word per row

  // Selection `s`'s batch element b for q_heads query heads (head h reads list group h / (q_heads /
  // groups)). Built on up to num_threads threads; the result does not depend on their number.
  SelectionTiles(const TokenTopK& s, Index b, Index q_heads, int num_threads)
      : groups_(s.groups()), q_heads_(q_heads), seq_q_(s.seq_q()), seq_k_(s.seq_k()),
        q_blocks_(ceil_div(seq_q_, kBlock)), kv_blocks_(ceil_div(seq_k_, kBlock)) {
    require(q_heads >= 1 && q_heads % groups_ == 0, "SelectionTiles", "q_heads", q_heads,
            "a multiple of the selection's groups (" + std::to_string(groups_) + ")");
    const Index rows = groups_ * q_blocks_;
    table_.assign(static_cast<std::size_t>(rows * kv_blocks_), -1);
    rows_.resize(static_cast<std::size_t>(rows));
    // One pass over the lists per (group, query block) `r`: each query row's words go to a scratch
    // tile per key block ([kv_blocks, 64 rows], zero), its touched blocks marked in the table; then
    // the touched blocks are numbered in increasing order and their tiles moved to the row's storage
    // (and the scratch cleared behind them). The keys are sorted: a word is complete when the next
    // key lies in another block, so each word is stored once, never read back per key.
    const int threads = thread_count(num_threads, rows);
    std::vector<std::uint64_t> scratch(static_cast<std::size_t>(kv_blocks_ * kBlock * threads), 0);
    parallel_for_dynamic(rows, threads, [&](Index r, int thread) {
      std::int32_t* table = table_.data() + r * kv_blocks_;
      std::uint64_t* dense = scratch.data() + kv_blocks_ * kBlock * thread;
      const Index g = r / q_blocks_, qb = r % q_blocks_;
      for (Index row = 0; row < kBlock && qb * kBlock + row < seq_q_; ++row) {
        std::uint32_t block = 0;
        std::uint64_t word = 0;
        const auto flush = [&] {
          if (word == 0) return;
          dense[block * kBlock + row] = word;
          table[block] = 0;
        };
        for (const std::int32_t j : s.keys(b, g, qb * kBlock + row)) {
          const auto key = static_cast<std::uint32_t>(j);  // in [0, seq_k)
          if (key / kBlock != block) {
            flush();
            block = static_cast<std::uint32_t>(key / kBlock);
            word = 0;
          }
          word |= std::uint64_t{1} << (key % kBlock);
        }
        flush();
      }
      Tiles& tiles = rows_[static_cast<std::size_t>(r)];
      std::int32_t n = 0;
      for (Index kb = 0; kb < kv_blocks_; ++kb)
        if (table[kb] == 0) table[kb] = n++;
      tiles.bits.resize(static_cast<std::size_t>(n * kBlock));
      tiles.counts.resize(static_cast<std::size_t>(n));
      for (Index kb = 0; kb < kv_blocks_; ++kb) {
        if (table[kb] < 0) continue;
        std::uint64_t* from = dense + kb * kBlock;
        const auto t = static_cast<std::size_t>(table[kb]);
        Index count = 0;
        for (Index w = 0; w < kBlock; ++w) count += std::popcount(from[w]);
        tiles.counts[t] = count;
        std::copy(from, from + kBlock, tiles.bits.begin() + static_cast<std::ptrdiff_t>(t * kBlock));
        std::fill(from, from + kBlock, 0);
      }
    });
  }

  // MaskPolicy.
  bool head_dependent() const { return groups_ > 1; }
  void check(const Extent& x, Index num_heads) const {
    require(x.seq_q == seq_q_, "SelectionTiles", "seq_q", x.seq_q, "the selection's " + std::to_string(seq_q_));
    require(x.seq_k == seq_k_, "SelectionTiles", "seq_k", x.seq_k, "the selection's " + std::to_string(seq_k_));
    require(num_heads == q_heads_, "SelectionTiles", "heads", num_heads, "the q_heads it was built for (" + std::to_string(q_heads_) + ")");
  }
  bool allowed(const Extent& x, Index i, Index j, Index h) const {
    return (key_mask(x, i, h, j - j % kBlock) >> (j % kBlock)) & 1;
  }
  std::uint64_t key_mask(const Extent&, Index i, Index h, Index j0) const {
    const Index shift = j0 % kBlock;
    if (shift == 0) return word(i, h, j0 / kBlock);
    const Index kb = j0 / kBlock;
    return (word(i, h, kb) >> shift) | (kb + 1 < kv_blocks_ ? word(i, h, kb + 1) << (kBlock - shift) : 0);
  }
  Index count_allowed(const BlockGrid& g, Index qb, Index kb, Index h) const {
    if (g.block() == BlockSize{kBlock, kBlock}) {
      const Index r = group(h) * q_blocks_ + qb;
      const std::int32_t t = table_[static_cast<std::size_t>(r * kv_blocks_ + kb)];
      return t < 0 ? 0 : rows_[static_cast<std::size_t>(r)].counts[static_cast<std::size_t>(t)];
    }
    const Range rows = g.q_range(qb), cols = g.kv_range(kb);
    Index n = 0;
    for (Index i = rows.begin; i < rows.end; ++i)
      for (Index j0 = cols.begin; j0 < cols.end; j0 += kBlock)
        n += std::popcount(key_mask(Extent{seq_q_, seq_k_}, i, h, j0) & interval_bits({cols.begin, cols.end}, j0));
    return n;
  }
  // The words of the tile at query row0 and key col0 (see HasTileKeyMasks): row r's at [r]; null
  // unless both start a block of 64 and the tile is touched.
  const std::uint64_t* tile_key_masks(Index row0, Index col0, Index h) const {
    if (row0 % kBlock != 0 || col0 % kBlock != 0) return nullptr;
    const Index r = group(h) * q_blocks_ + row0 / kBlock;
    const std::int32_t t = table_[static_cast<std::size_t>(r * kv_blocks_ + col0 / kBlock)];
    return t < 0 ? nullptr : rows_[static_cast<std::size_t>(r)].bits.data() + t * kBlock;
  }
  BlockClass classify(const BlockGrid& g, Index qb, Index kb, Index h) const {
    return classify_by_count(*this, g, qb, kb, h);
  }
  // The touched tiles of a 64 x 64 grid's query block: a scan of its row of the table (kv_blocks
  // entries), not of the lists. Other grids fall back to every key block that might hold a key.
  template <class Visitor>
  void for_each_block(const BlockGrid& g, Index qb, Index h, Visitor&& visit) const {
    if (g.block() == BlockSize{kBlock, kBlock}) {
      const std::int32_t* table = table_.data() + (group(h) * q_blocks_ + qb) * kv_blocks_;
      for (Index kb = 0; kb < kv_blocks_; ++kb)
        if (table[kb] >= 0) {
          const BlockClass c = classify(g, qb, kb, h);
          if (c != BlockClass::kEmpty) visit(kb, c);
        }
      return;
    }
    for (Index kb = 0; kb < g.kv_blocks(); ++kb) {
      const BlockClass c = classify(g, qb, kb, h);
      if (c != BlockClass::kEmpty) visit(kb, c);
    }
  }

 private:
  Index group(Index h) const { return groups_ == 1 ? 0 : h / (q_heads_ / groups_); }
  std::uint64_t word(Index i, Index h, Index kb) const {
    const Index r = group(h) * q_blocks_ + i / kBlock;
    const std::int32_t t = table_[static_cast<std::size_t>(r * kv_blocks_ + kb)];
    return t < 0 ? 0 : rows_[static_cast<std::size_t>(r)].bits[static_cast<std::size_t>(t * kBlock + i % kBlock)];
  }

  // The touched tiles of one (group, query block), in increasing key block order.
  struct Tiles {
    std::vector<std::uint64_t> bits;  // [tiles, 64 rows]: bit t of a row's word is key kb * 64 + t
    std::vector<Index> counts;        // [tiles]: selected pairs
  };

  Index groups_, q_heads_, seq_q_, seq_k_, q_blocks_, kv_blocks_;
  std::vector<std::int32_t> table_;  // [groups, q_blocks, kv_blocks]: the tile's index in its Tiles, or -1
  std::vector<Tiles> rows_;          // [groups, q_blocks]
};

}  // namespace sparse_attention::detail
