// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <set>

#include "masks/common.hpp"
#include "support/policy_checks.hpp"

namespace sa = sparse_attention;
using sa::testing::iota;
using sa::testing::join;
using sa::testing::keys_of;

namespace {

// 8 blocks of 2 positions (n = 16), one global block at each end, an explicit random table:
// query block 3 (positions 6, 7) reads the global blocks {0, 7}, its window {2, 3, 4} and random block 6.
TEST(BigBird, ExplicitTableFixture) {
  // Rows for the non-global blocks 1..6 (Hugging Face's rand_attn layout), one head.
  const sa::BigBird bb = sa::BigBird::from_table(2, 1, {{{4}, {5}, {6}, {0}, {1}, {3}}});
  const sa::Extent x{16, 16};
  EXPECT_EQ(join(join(iota(0, 1), iota(4, 9)), join(iota(12, 13), iota(14, 15))), keys_of(bb, x, 6));
  EXPECT_EQ(iota(0, 15), keys_of(bb, x, 1));   // global query block 0
  EXPECT_EQ(iota(0, 15), keys_of(bb, x, 14));  // global query block 7
  // Block 1 (positions 2, 3): globals {0, 7}, window {0, 1, 2}, random 4.
  EXPECT_EQ(join(join(iota(0, 5), iota(8, 9)), iota(14, 15)), keys_of(bb, x, 3));
  // Block 4 lists block 0, already global: a set, so nothing changes (no double count).
  EXPECT_EQ(join(iota(0, 1), join(iota(6, 11), iota(14, 15))), keys_of(bb, x, 8));
}

TEST(BigBird, TableWithEveryRowAndOneHeadPerQueryHead) {
  // [heads][nb][r] with rows for the global blocks too (ignored), 2 heads.
  const sa::BigBird bb = sa::BigBird::from_table(2, 1, {{{}, {4}, {5}, {0}, {6}, {1}, {3}, {}},
                                                        {{}, {5}, {6}, {6}, {1}, {2}, {2}, {}}});
  EXPECT_TRUE(bb.head_dependent());
  // Query block 1: globals {0, 7}, window {0, 1, 2}; random block 4 for head 0, 5 for head 1.
  EXPECT_EQ(join(join(iota(0, 5), iota(8, 9)), iota(14, 15)), keys_of(bb, {16, 16}, 2, 0));
  EXPECT_EQ(join(join(iota(0, 5), iota(10, 11)), iota(14, 15)), keys_of(bb, {16, 16}, 2, 1));
  // Query block 3: random block 0 (global already) for head 0, 6 for head 1.
  EXPECT_EQ(join(join(iota(0, 1), iota(4, 9)), iota(14, 15)), keys_of(bb, {16, 16}, 6, 0));
  EXPECT_EQ(join(join(iota(0, 1), iota(4, 9)), iota(12, 15)), keys_of(bb, {16, 16}, 6, 1));
}

TEST(BigBird, TailBlockIsShort) {
  // n = 15 with blocks of 2: 8 blocks, the last holds position 14 only and is global.
  const sa::BigBird bb = sa::BigBird::from_table(2, 1, {{{4}, {5}, {6}, {0}, {1}, {3}}});
  EXPECT_EQ(join(join(iota(0, 1), iota(4, 9)), iota(12, 14)), keys_of(bb, {15, 15}, 6));
  EXPECT_EQ(iota(0, 14), keys_of(bb, {15, 15}, 14));
}

TEST(BigBird, GeneratedRandomBlocks) {
  const sa::BigBird bb(4, 1, 3, /*seed=*/1234);
  const sa::Index nb = 20;
  std::set<std::vector<sa::Index>> distinct_heads;
  for (sa::Index h = 0; h < 4; ++h) {
    std::vector<sa::Index> all;
    for (sa::Index q = 1; q < nb - 1; ++q) {
      const std::vector<sa::Index> r = bb.random_row(h, q, nb);
      ASSERT_EQ(3u, r.size());
      for (std::size_t t = 0; t < r.size(); ++t) {
        EXPECT_TRUE(r[t] >= 1 && r[t] < nb - 1) << "global block drawn";
        EXPECT_TRUE(r[t] < q - 1 || r[t] > q + 1) << "window block drawn";
        if (t > 0) {
          EXPECT_LT(r[t - 1], r[t]) << "repeated or unsorted";
        }
      }
      EXPECT_EQ(r, bb.random_row(h, q, nb)) << "not a function of (seed, head, block)";
      all.insert(all.end(), r.begin(), r.end());
    }
    distinct_heads.insert(all);
  }
  EXPECT_EQ(4u, distinct_heads.size()) << "heads share their random blocks";
  EXPECT_NE(bb.random_row(0, 5, nb), sa::BigBird(4, 1, 3, 99).random_row(0, 5, nb));
  // Causal rows draw only before their window.
  const sa::BigBird causal(4, 1, 3, 7, true);
  for (sa::Index q = 1; q < nb - 1; ++q)
    for (sa::Index k : causal.random_row(0, q, nb)) EXPECT_LT(k, q - 1);
}

TEST(BigBird, ConsistentWithItsPredicate) {
  for (sa::Index block : {1, 3, 8})
    for (sa::Index g : {0, 1, 2})
      for (bool causal : {false, true})
        sa::testing::expect_policy_consistent(
            [&](sa::Extent x) {
              const sa::Index nb = sa::detail::ceil_div(x.seq_k, block);
              const sa::Index r = causal ? 2 : std::clamp<sa::Index>(nb - 2 * g - 3, 0, 2);
              return sa::BigBird(block, g, r, 42, causal);
            },
            "BigBird(" + std::to_string(block) + "," + std::to_string(g) + ")", sa::testing::small_extents(), 3);
}

TEST(BigBird, RejectsBadParameters) {
  EXPECT_THROW(sa::BigBird(0, 1, 1, 0), std::invalid_argument);
  EXPECT_THROW(sa::BigBird(4, -1, 1, 0), std::invalid_argument);
  EXPECT_THROW(sa::BigBird(4, 1, -1, 0), std::invalid_argument);
  // 10 blocks: a middle row has 10 - 2 - 3 = 5 candidates, so r = 6 cannot be drawn.
  EXPECT_NO_THROW(sa::BlockLayout::build(sa::BigBird(4, 1, 5, 0), {40, 40}, {4, 4}, 2));
  EXPECT_THROW(sa::BlockLayout::build(sa::BigBird(4, 1, 6, 0), {40, 40}, {4, 4}, 2), std::invalid_argument);
  // Tables: wrong head count, wrong row count, a block out of range.
  const auto table = [](std::vector<std::vector<std::vector<sa::Index>>> t) { return sa::BigBird::from_table(2, 1, std::move(t)); };
  EXPECT_THROW(sa::BlockLayout::build(table({{{4}, {5}, {0}, {6}, {1}, {3}}, {{4}, {5}, {0}, {6}, {1}, {3}}}), {16, 16}, {2, 2}, 3),
               std::invalid_argument);
  EXPECT_THROW(sa::BlockLayout::build(table({{{4}, {5}, {0}}}), {16, 16}, {2, 2}), std::invalid_argument);
  EXPECT_THROW(sa::BlockLayout::build(table({{{4}, {5}, {0}, {8}, {1}, {3}}}), {16, 16}, {2, 2}), std::invalid_argument);
  EXPECT_THROW(sa::BigBird::from_table(2, 1, {}), std::invalid_argument);
}

}  // namespace
