// SPDX-License-Identifier: Apache-2.0
// Layouts stay O(non-empty blocks) at a million tokens: no q_blocks x kv_blocks scan or storage, and no
// element predicate call while building.
#include <gtest/gtest.h>

#include "sparse_attention/sparse_attention.hpp"

namespace sa = sparse_attention;

namespace {

// Forwards every level to the inner policy and counts calls of the element predicate.
template <class Inner>
struct CountingPredicate {
  Inner inner;
  mutable sa::Index predicate_calls = 0;
  bool head_dependent() const { return sa::detail::head_dependent(inner); }
  void check(const sa::Extent& x, sa::Index heads) const { sa::detail::check_policy(inner, x, heads); }
  bool allowed(const sa::Extent& x, sa::Index i, sa::Index j, sa::Index h) const {
    ++predicate_calls;
    return inner.allowed(x, i, j, h);
  }
  sa::BlockClass classify(const sa::BlockGrid& g, sa::Index qb, sa::Index kb, sa::Index h) const {
    return inner.classify(g, qb, kb, h);
  }
  sa::Index count_allowed(const sa::BlockGrid& g, sa::Index qb, sa::Index kb, sa::Index h) const {
    return inner.count_allowed(g, qb, kb, h);
  }
  template <class V>
  void for_each_block(const sa::BlockGrid& g, sa::Index qb, sa::Index h, V&& visit) const {
    inner.for_each_block(g, qb, h, visit);
  }
};

constexpr sa::Index kMillion = sa::Index{1} << 20;
constexpr sa::Index kBlocks = kMillion / 64;                       // 16384 query and key blocks
constexpr std::size_t kGridBytes = std::size_t{kBlocks} * kBlocks;  // one byte per grid cell: 256 MiB

TEST(LayoutScale, LongformerAtAMillionTokens) {
  CountingPredicate<sa::Longformer> policy{sa::Longformer(256, {0, 1, 500000, kMillion - 1})};
  const sa::BlockLayout layout = sa::BlockLayout::build(policy, {kMillion, kMillion}, {64, 64});
  EXPECT_EQ(0, policy.predicate_calls);
  // Window rows touch <= 10 blocks (+ the global columns); the 4 rows holding global queries, all.
  EXPECT_LE(layout.nnz_blocks(), kBlocks * (10 + 3) + 4 * kBlocks);
  EXPECT_LT(layout.memory_bytes(), kGridBytes / 64);
  // Density by the formula: 4 global rows of n, each other row its clipped window plus the globals
  // outside it.
  EXPECT_GT(layout.density(), (4.0 * kMillion + (kMillion - 4.0) * (2 * 256 + 1)) / (double(kMillion) * kMillion) * 0.99);
}

TEST(LayoutScale, BigBirdAtAMillionTokens) {
  CountingPredicate<sa::BigBird> policy{sa::BigBird(64, 1, 3, 17)};
  const sa::BlockLayout layout = sa::BlockLayout::build(policy, {kMillion, kMillion}, {64, 64}, 2);
  EXPECT_EQ(0, policy.predicate_calls);
  EXPECT_TRUE(layout.per_head());
  // Per head: 2 global rows of every block; other rows 2 global + 3 window + 3 random blocks, less one
  // for rows 1 and nb - 2, whose window reaches a global block.
  EXPECT_EQ(2 * (2 * kBlocks + (kBlocks - 2) * 8 - 2), layout.nnz_blocks());
  EXPECT_LT(layout.memory_bytes(), kGridBytes / 64);
  EXPECT_EQ(1.0, layout.blocking_efficiency());  // tiles are BigBird blocks: no partial tile
}

}  // namespace
