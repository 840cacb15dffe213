// SPDX-License-Identifier: Apache-2.0
// The vocabulary shared by policies, layouts and kernels: indices, the query/key extent with its
// bottom-right alignment, block sizes, block classes and the block grid.
#pragma once

#include <algorithm>
#include <cstdint>
#include <ostream>

#include "sparse_attention/core/error.hpp"

namespace sparse_attention {

// Signed 64-bit everywhere: sequence positions, pair counts and offsets never overflow at long n.
using Index = std::int64_t;

// Largest sequence length and block size accepted (2^40 tokens); keeps all index arithmetic,
// including window bounds p - left and p + right, far from overflow.
inline constexpr Index kMaxSequenceLength = Index{1} << 40;

// Lengths of one attention problem. Query i sits at absolute position i + (seq_k - seq_q): queries are
// aligned to the bottom-right corner, as in FlashAttention and KV caches.
struct Extent {
  Index seq_q = 0;
  Index seq_k = 0;

  constexpr Index offset() const { return seq_k - seq_q; }
  constexpr Index position(Index i) const { return i + seq_k - seq_q; }
  friend constexpr bool operator==(const Extent&, const Extent&) = default;
};

// Tile shape: query rows and key columns per block.
struct BlockSize {
  Index q = 64;
  Index kv = 64;
  friend constexpr bool operator==(const BlockSize&, const BlockSize&) = default;
};

// What a policy knows about one (query block, key block) tile without looking at its elements.
enum class BlockClass : std::uint8_t {
  kEmpty = 0,    // no pair inside is allowed: the tile is never visited
  kPartial = 1,  // some pairs may be allowed: the element predicate runs on the tile
  kFull = 2,     // every pair inside is allowed: no masking code runs
};

inline std::ostream& operator<<(std::ostream& os, BlockClass c) {
  switch (c) {
    case BlockClass::kEmpty: return os << "empty";
    case BlockClass::kPartial: return os << "partial";
    case BlockClass::kFull: return os << "full";
  }
  return os << "BlockClass(" << static_cast<int>(c) << ")";
}

// Half-open index range [begin, end).
struct Range {
  Index begin = 0;
  Index end = 0;
  constexpr Index size() const { return end > begin ? end - begin : 0; }
  constexpr bool empty() const { return end <= begin; }
  friend constexpr bool operator==(const Range&, const Range&) = default;
};

namespace detail {
constexpr Index ceil_div(Index a, Index b) { return (a + b - 1) / b; }
// Floor and ceiling division that are correct for negative numerators (positions are negative when
// seq_q > seq_k); b > 0.
constexpr Index floor_div(Index a, Index b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
constexpr Index ceil_div_signed(Index a, Index b) { return -floor_div(-a, b); }
}  // namespace detail

// The tiling of an Extent by a BlockSize. Tail blocks (when a length is not a multiple of the block)
// are shorter; nothing ever sees a position beyond seq_q or seq_k.
class BlockGrid {
 public:
  constexpr BlockGrid() = default;
  BlockGrid(Extent extent, BlockSize block) : extent_(extent), block_(block) {
    detail::require(extent.seq_q >= 0 && extent.seq_q <= kMaxSequenceLength, "BlockGrid", "seq_q",
                    extent.seq_q, "0 <= seq_q <= 2^40");
    detail::require(extent.seq_k >= 0 && extent.seq_k <= kMaxSequenceLength, "BlockGrid", "seq_k",
                    extent.seq_k, "0 <= seq_k <= 2^40");
    detail::require(block.q >= 1 && block.q <= kMaxSequenceLength, "BlockGrid", "block.q", block.q,
                    "a block size >= 1");
    detail::require(block.kv >= 1 && block.kv <= kMaxSequenceLength, "BlockGrid", "block.kv",
                    block.kv, "a block size >= 1");
  }

  constexpr const Extent& extent() const { return extent_; }
  constexpr const BlockSize& block() const { return block_; }
  constexpr Index q_blocks() const { return detail::ceil_div(extent_.seq_q, block_.q); }
  constexpr Index kv_blocks() const { return detail::ceil_div(extent_.seq_k, block_.kv); }

  // Query rows of block qb.
  constexpr Range q_range(Index qb) const {
    return {qb * block_.q, std::min((qb + 1) * block_.q, extent_.seq_q)};
  }
  // Absolute positions of the queries of block qb (q_range shifted by seq_k - seq_q).
  constexpr Range position_range(Index qb) const {
    const Range r = q_range(qb);
    return {r.begin + extent_.offset(), r.end + extent_.offset()};
  }
  // Keys of block kb.
  constexpr Range kv_range(Index kb) const {
    return {kb * block_.kv, std::min((kb + 1) * block_.kv, extent_.seq_k)};
  }
  // The key block holding key j (0 <= j < seq_k).
  constexpr Index kv_block_of(Index j) const { return j / block_.kv; }

 private:
  Extent extent_{};
  BlockSize block_{};
};

}  // namespace sparse_attention
