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

// A pattern given block by block: query block r (positions [r * block.q, (r + 1) * block.q)) attends to
// the key blocks listed for it, per head (or one layout for every head). This is the form DeepSpeed's
// sparsity configs ([heads, blocks, blocks] layouts), ONNX Runtime's SparseAttention (Phi-3-small's
// block_row_indices / block_col_indices) and FlexAttention's BlockMask (kv_num_blocks / kv_indices)
// hand layouts around, so a layout from any of them runs unchanged. Optionally causal inside blocks
// (j <= p). The layout covers positions [0, seq_k): ceil(seq_k / block.q) rows, ceil(seq_k / block.kv)
// columns. Queries before position 0 (seq_q > seq_k) attend to nothing.
class BlockMask {
 public:
  // bits: [heads][q_blocks][kv_blocks] row-major, nonzero = attend.
  static BlockMask from_bitmap(const std::vector<std::uint8_t>& bits, Index heads, Index q_blocks, Index kv_blocks,
                               BlockSize block, bool causal = false) {
    check_dims(heads, q_blocks, kv_blocks, block);
    detail::require(static_cast<Index>(bits.size()) == heads * q_blocks * kv_blocks, "BlockMask::from_bitmap",
                    "bits size", bits.size(),
                    "heads * q_blocks * kv_blocks = " + std::to_string(heads * q_blocks * kv_blocks));
    std::vector<Index> row_begin{0}, columns;
    for (Index r = 0; r < heads * q_blocks; ++r) {
      for (Index c = 0; c < kv_blocks; ++c)
        if (bits[static_cast<std::size_t>(r * kv_blocks + c)] != 0) columns.push_back(c);
      row_begin.push_back(static_cast<Index>(columns.size()));
    }
    return BlockMask(std::move(row_begin), std::move(columns), heads, q_blocks, kv_blocks, block, causal);
  }

  // Compressed rows: row_begin has heads * q_blocks + 1 entries (row h * q_blocks + r of head h),
  // columns[row_begin[row] .. row_begin[row + 1]) the row's key blocks, strictly increasing.
  static BlockMask from_rows(std::vector<Index> row_begin, std::vector<Index> columns, Index heads, Index q_blocks,
                             Index kv_blocks, BlockSize block, bool causal = false) {
    check_dims(heads, q_blocks, kv_blocks, block);
    const Index rows = heads * q_blocks;
    detail::require(static_cast<Index>(row_begin.size()) == rows + 1, "BlockMask::from_rows", "row_begin size",
                    row_begin.size(), "heads * q_blocks + 1 = " + std::to_string(rows + 1));
    detail::require(row_begin.front() == 0, "BlockMask::from_rows", "row_begin[0]", row_begin.front(), "0");
    detail::require(row_begin.back() == static_cast<Index>(columns.size()), "BlockMask::from_rows",
                    "row_begin[last]", row_begin.back(), "columns.size() = " + std::to_string(columns.size()));
    // Messages are built only on failure: these loops run once per row and per listed block. Offsets
    // first: non-decreasing from 0 to columns.size(), so every row's range lies inside `columns`.
    for (Index r = 0; r < rows; ++r) {
      const Index a = row_begin[static_cast<std::size_t>(r)], b = row_begin[static_cast<std::size_t>(r) + 1];
      if (a > b)
        detail::throw_invalid_argument("BlockMask::from_rows", "row_begin[" + std::to_string(r + 1) + "]", b,
                                       ">= row_begin[" + std::to_string(r) + "] (" + std::to_string(a) + ")");
    }
    for (Index r = 0; r < rows; ++r) {
      const Index a = row_begin[static_cast<std::size_t>(r)], b = row_begin[static_cast<std::size_t>(r) + 1];
      for (Index t = a; t < b; ++t) {
        const Index c = columns[static_cast<std::size_t>(t)];
        if (c < 0 || c >= kv_blocks)
          detail::throw_invalid_argument("BlockMask::from_rows", "columns[" + std::to_string(t) + "]", c,
                                         "a key block in [0, " + std::to_string(kv_blocks) + ")");
        if (t > a && c <= columns[static_cast<std::size_t>(t) - 1])
          detail::throw_invalid_argument("BlockMask::from_rows", "columns[" + std::to_string(t) + "]", c,
                                         "strictly increasing within row " + std::to_string(r) + " (after " +
                                             std::to_string(columns[static_cast<std::size_t>(t) - 1]) + ")");
      }
    }
    return BlockMask(std::move(row_begin), std::move(columns), heads, q_blocks, kv_blocks, block, causal);
  }

  Index heads() const { return heads_; }
  Index q_blocks() const { return q_blocks_; }
  Index kv_blocks() const { return kv_blocks_; }
  const BlockSize& block() const { return block_; }
  bool causal() const { return causal_; }
  bool head_dependent() const { return heads_ > 1; }

  void check(const Extent& x, Index num_heads) const {
    detail::require(q_blocks_ == detail::ceil_div(x.seq_k, block_.q), "BlockMask", "q_blocks", q_blocks_,
                    "ceil(seq_k / block.q) = " + std::to_string(detail::ceil_div(x.seq_k, block_.q)) +
                        " for seq_k " + std::to_string(x.seq_k));
    detail::require(kv_blocks_ == detail::ceil_div(x.seq_k, block_.kv), "BlockMask", "kv_blocks", kv_blocks_,
                    "ceil(seq_k / block.kv) = " + std::to_string(detail::ceil_div(x.seq_k, block_.kv)) +
                        " for seq_k " + std::to_string(x.seq_k));
    detail::require(heads_ == 1 || heads_ == num_heads, "BlockMask", "heads", heads_,
                    "1 or the number of heads (" + std::to_string(num_heads) + ")");
  }

  bool allowed(const Extent& x, Index i, Index j, Index h) const {
    const Index p = x.position(i);
    if (p < 0 || (causal_ && j > p)) return false;
    const auto cols = row(h, p / block_.q);
    return std::binary_search(cols.first, cols.second, j / block_.kv);
  }

  std::uint64_t key_mask(const Extent& x, Index i, Index h, Index j0) const {
    const Index p = x.position(i);
    if (p < 0) return 0;
    const Index end = causal_ ? p + 1 : x.seq_k;
    const auto [first, last] = row(h, p / block_.q);
    std::uint64_t bits = 0;
    for (auto c = std::lower_bound(first, last, j0 / block_.kv); c != last && *c * block_.kv < j0 + 64; ++c)
      bits |= interval_bits({*c * block_.kv, std::min((*c + 1) * block_.kv, end)}, j0);
    return bits;
  }

  // Per layout row the tile's queries fall in (one when the grid's blocks are the layout's), each
  // listed block overlapping the tile's keys counts its overlap once per query, clipped at the query's
  // position when causal: O(rows x listed blocks), no per-query search.
  Index count_allowed(const BlockGrid& g, Index qb, Index kb, Index h) const {
    const Range pos = g.position_range(qb), keys = g.kv_range(kb);
    Index n = 0;
    for (Index p0 = std::max<Index>(pos.begin, 0), p1 = 0; p0 < pos.end; p0 = p1) {
      const Index r = p0 / block_.q;
      p1 = std::min(pos.end, (r + 1) * block_.q);
      const auto [first, last] = row(h, r);
      for (auto c = std::lower_bound(first, last, keys.begin / block_.kv); c != last && *c * block_.kv < keys.end; ++c) {
        const Range overlap{std::max(keys.begin, *c * block_.kv), std::min(keys.end, (*c + 1) * block_.kv)};
        n += causal_ ? detail::causal_pairs({p0, p1}, overlap) : (p1 - p0) * overlap.size();
      }
    }
    return n;
  }
  BlockClass classify(const BlockGrid& g, Index qb, Index kb, Index h) const {
    return detail::classify_by_count(*this, g, qb, kb, h);
  }

  // Union of the listed key blocks of every layout row the tile's queries fall in, mapped to tiles.
  template <class Visitor>
  void for_each_block(const BlockGrid& g, Index qb, Index h, Visitor&& visit) const {
    const Range pos = g.position_range(qb);
    if (pos.end <= 0 || g.extent().seq_k == 0) return;
    const Index last_key = causal_ ? std::min(pos.end - 1, g.extent().seq_k - 1) : g.extent().seq_k - 1;
    std::vector<Index> cols;
    for (Index r = std::max<Index>(pos.begin, 0) / block_.q; r <= (pos.end - 1) / block_.q; ++r) {
      const auto [first, last] = row(h, r);
      cols.insert(cols.end(), first, last);
    }
    std::sort(cols.begin(), cols.end());
    cols.erase(std::unique(cols.begin(), cols.end()), cols.end());
    detail::BlockEmitter emit(g);
    // A listed block may still be empty for this tile: listed by another of its layout rows, or cut
    // away by the causal condition.
    const auto visit_block = [&](Index kb) {
      const BlockClass c = classify(g, qb, kb, h);
      if (c != BlockClass::kEmpty) visit(kb, c);
    };
    for (Index c : cols) emit.keys(c * block_.kv, std::min((c + 1) * block_.kv - 1, last_key), visit_block);
  }

 private:
  BlockMask(std::vector<Index> row_begin, std::vector<Index> columns, Index heads, Index q_blocks, Index kv_blocks,
            BlockSize block, bool causal)
      : row_begin_(std::make_shared<const std::vector<Index>>(std::move(row_begin))),
        columns_(std::make_shared<const std::vector<Index>>(std::move(columns))),
        heads_(heads), q_blocks_(q_blocks), kv_blocks_(kv_blocks), block_(block), causal_(causal) {}

  static void check_dims(Index heads, Index q_blocks, Index kv_blocks, BlockSize block) {
    detail::require(heads >= 1, "BlockMask", "heads", heads, ">= 1");
    detail::require(q_blocks >= 0, "BlockMask", "q_blocks", q_blocks, ">= 0");
    detail::require(kv_blocks >= 0, "BlockMask", "kv_blocks", kv_blocks, ">= 0");
    detail::require(block.q >= 1, "BlockMask", "block.q", block.q, ">= 1");
    detail::require(block.kv >= 1, "BlockMask", "block.kv", block.kv, ">= 1");
  }

  std::pair<const Index*, const Index*> row(Index h, Index r) const {
    const auto index = static_cast<std::size_t>((heads_ == 1 ? 0 : h) * q_blocks_ + r);
    const Index* base = columns_->data();
    return {base + (*row_begin_)[index], base + (*row_begin_)[index + 1]};
  }

  std::shared_ptr<const std::vector<Index>> row_begin_, columns_;
  Index heads_, q_blocks_, kv_blocks_;
  BlockSize block_;
  bool causal_;
};

}  // namespace sparse_attention
