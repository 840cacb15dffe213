// SPDX-License-Identifier: Apache-2.0
// BlockLayout: the plan a policy compiles to for one (extent, block size). For every query block,
// the sorted key blocks to visit, split into partial tiles (the element predicate runs) and full
// tiles (no masking code runs). Compressed rows: memory is O(non-empty blocks), and building calls
// the policy's enumeration once per row, never scanning the q_blocks x kv_blocks grid and never
// evaluating the predicate outside partial tiles. Immutable once built, so one layout can serve
// every batch, layer, call and thread.
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "sparse_attention/core/error.hpp"
#include "sparse_attention/core/mask_policy.hpp"
#include "sparse_attention/core/types.hpp"

namespace sparse_attention {

class BlockLayout {
 public:
  // The key blocks of one query block (of one layout head), each list in increasing order.
  struct Row {
    std::span<const std::int32_t> partial;
    std::span<const std::int32_t> full;
  };

  BlockLayout() = default;

  // Compiles `policy` for `extent` tiled by `block`. num_heads is the number of query heads the layout
  // will serve; a head-dependent policy gets one set of rows per head, any other policy one set that
  // is broadcast to every head.
  template <class Policy>
  static BlockLayout build(const Policy& policy, Extent extent, BlockSize block = {},
                           Index num_heads = 1) {
    detail::assert_mask_policy<Policy>();
    detail::require(num_heads >= 1, "BlockLayout::build", "num_heads", num_heads, ">= 1");
    BlockLayout layout;
    layout.grid_ = BlockGrid(extent, block);
    layout.num_heads_ = num_heads;
    detail::check_policy(policy, extent, num_heads);
    detail::require(layout.grid_.kv_blocks() <= std::numeric_limits<std::int32_t>::max(),
                    "BlockLayout::build", "block.kv", block.kv,
                    "a key block size giving at most 2^31 - 1 key blocks");
    layout.layout_heads_ = detail::head_dependent(policy) ? num_heads : 1;
    const Index q_blocks = layout.grid_.q_blocks();
    const Index rows = layout.layout_heads_ * q_blocks;
    layout.row_begin_.reserve(static_cast<std::size_t>(rows) + 1);
    layout.full_begin_.reserve(static_cast<std::size_t>(rows));

    std::vector<std::int32_t> full;  // full blocks of the current row, appended after its partial ones
    for (Index h = 0; h < layout.layout_heads_; ++h) {
      for (Index qb = 0; qb < q_blocks; ++qb) {
        full.clear();
        Index previous = -1;
        policy.for_each_block(layout.grid_, qb, h, [&](Index kb, BlockClass c) {
          layout.check_enumeration(kb, c, previous, qb, h);
          previous = kb;
          if (c == BlockClass::kFull) {
            full.push_back(static_cast<std::int32_t>(kb));
            layout.allowed_pairs_ += layout.tile_area(qb, kb);
          } else {
            layout.blocks_.push_back(static_cast<std::int32_t>(kb));
            layout.allowed_pairs_ += detail::count_allowed(policy, layout.grid_, qb, kb, h);
          }
          layout.computed_pairs_ += layout.tile_area(qb, kb);
        });
        layout.full_begin_.push_back(static_cast<Index>(layout.blocks_.size()));
        layout.blocks_.insert(layout.blocks_.end(), full.begin(), full.end());
        layout.row_begin_.push_back(static_cast<Index>(layout.blocks_.size()));
      }
    }
    return layout;
  }

  const BlockGrid& grid() const { return grid_; }
  const Extent& extent() const { return grid_.extent(); }
  const BlockSize& block() const { return grid_.block(); }
  Index q_blocks() const { return grid_.q_blocks(); }
  Index kv_blocks() const { return grid_.kv_blocks(); }
  // Number of query heads the layout was built for, and how many distinct sets of rows it holds
  // (1 when one set is broadcast to every head).
  Index num_heads() const { return num_heads_; }
  Index layout_heads() const { return layout_heads_; }
  bool per_head() const { return layout_heads_ > 1; }

  // Rows of query block qb for query head h (0 <= h < num_heads).
  Row row(Index h, Index qb) const {
    const std::size_t r = static_cast<std::size_t>(row_index(h, qb));
    const std::int32_t* base = blocks_.data();
    return {{base + row_begin_[r], base + full_begin_[r]}, {base + full_begin_[r], base + row_begin_[r + 1]}};
  }

  // Statistics over the layout heads (for a broadcast layout: one head).
  // Non-empty tiles.
  Index nnz_blocks() const { return static_cast<Index>(blocks_.size()); }
  // Pairs (query, key) the policy allows.
  Index allowed_pairs() const { return allowed_pairs_; }
  // Pairs the kernel computes: the area of every non-empty tile.
  Index computed_pairs() const { return computed_pairs_; }
  // allowed pairs / (seq_q * seq_k): the fraction of the dense score matrix that is attended.
  double density() const {
    const double total = static_cast<double>(layout_heads_) * static_cast<double>(extent().seq_q) *
                         static_cast<double>(extent().seq_k);
    return total > 0 ? static_cast<double>(allowed_pairs_) / total : 0.0;
  }
  // allowed pairs / computed pairs: how much of the computed work the policy keeps.
  double blocking_efficiency() const {
    return computed_pairs_ > 0
               ? static_cast<double>(allowed_pairs_) / static_cast<double>(computed_pairs_)
               : 1.0;
  }
  // Bytes the layout holds: O(query blocks + non-empty tiles), never O(q_blocks x kv_blocks).
  std::size_t memory_bytes() const {
    return sizeof(*this) + row_begin_.capacity() * sizeof(Index) + full_begin_.capacity() * sizeof(Index) +
           blocks_.capacity() * sizeof(std::int32_t);
  }
  // Computed pairs of one row: the cost of one kernel work item.
  Index row_pairs(Index h, Index qb) const {
    const Row r = row(h, qb);
    Index n = 0;
    for (std::int32_t kb : r.partial) n += tile_area(qb, kb);
    for (std::int32_t kb : r.full) n += tile_area(qb, kb);
    return n;
  }

  // The pattern of head h as a character grid, one character per block ('#' full, '+' partial,
  // '.' empty). Grids wider or taller than max_cells are shown downsampled: a character then stands
  // for a square group of blocks and reads '#' if all are full, '.' if all are empty, '+' otherwise.
  std::string to_string(Index h = 0, Index max_cells = 64) const {
    detail::require(h >= 0 && h < num_heads_, "BlockLayout::to_string", "h", h,
                    "a head index in [0, num_heads)");
    detail::require(max_cells >= 1, "BlockLayout::to_string", "max_cells", max_cells, ">= 1");
    const Index qn = q_blocks(), kn = kv_blocks();
    const Index group = std::max<Index>({1, detail::ceil_div(qn, max_cells), detail::ceil_div(kn, max_cells)});
    const Index rows = detail::ceil_div(qn, group), cols = detail::ceil_div(kn, group);
    std::string out;
    std::vector<Index> full(static_cast<std::size_t>(cols)), any(static_cast<std::size_t>(cols));
    for (Index gr = 0; gr < rows; ++gr) {
      std::fill(full.begin(), full.end(), 0);
      std::fill(any.begin(), any.end(), 0);
      const Index qb_end = std::min(qn, (gr + 1) * group);
      for (Index qb = gr * group; qb < qb_end; ++qb) {
        const Row r = row(h, qb);
        for (std::int32_t kb : r.partial) ++any[static_cast<std::size_t>(kb / group)];
        for (std::int32_t kb : r.full) {
          ++any[static_cast<std::size_t>(kb / group)];
          ++full[static_cast<std::size_t>(kb / group)];
        }
      }
      for (Index gc = 0; gc < cols; ++gc) {
        const Index cells = (qb_end - gr * group) * (std::min(kn, (gc + 1) * group) - gc * group);
        const Index f = full[static_cast<std::size_t>(gc)], a = any[static_cast<std::size_t>(gc)];
        out += f == cells ? '#' : (a == 0 ? '.' : '+');
      }
      out += '\n';
    }
    return out;
  }

 private:
  Index row_index(Index h, Index qb) const {
    return (layout_heads_ == 1 ? 0 : h) * q_blocks() + qb;
  }
  Index tile_area(Index qb, Index kb) const {
    return grid_.q_range(qb).size() * grid_.kv_range(kb).size();
  }
  // A policy's enumeration is code the library did not write: a violated contract is reported,
  // not silently turned into a wrong answer.
  void check_enumeration(Index kb, BlockClass c, Index previous, Index qb, Index h) const {
    if (kb < 0 || kb >= kv_blocks() || kb <= previous || c == BlockClass::kEmpty) {
      std::ostringstream m;
      m << "sparse_attention::BlockLayout::build: the policy's for_each_block visited key block "
        << kb << " (" << c << ") after " << previous << " for query block " << qb << ", head " << h
        << "; blocks must be non-empty, in [0, " << kv_blocks() << ") and strictly increasing";
      throw std::logic_error(m.str());
    }
  }

  BlockGrid grid_{};
  Index num_heads_ = 1;
  Index layout_heads_ = 1;
  std::vector<Index> row_begin_{0};   // [rows + 1] start of each row in blocks_
  std::vector<Index> full_begin_;     // [rows]     start of each row's full blocks
  std::vector<std::int32_t> blocks_;  // per row: partial blocks, then full blocks, each sorted
  Index allowed_pairs_ = 0;
  Index computed_pairs_ = 0;
};

}  // namespace sparse_attention
