// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "masks/common.hpp"
#include "support/policy_checks.hpp"

namespace sa = sparse_attention;
using sa::testing::iota;
using sa::testing::keys_of;

namespace {

// Windows of 4: [0, 3], [4, 7], [8, 11]; one summary position per window, its last: {3, 7, 11}.
// Query 9 (causal) sees its window so far {8, 9} and the summaries before it {3, 7}.
TEST(Fixed, CausalFixture) {
  const sa::Fixed f(4, 1);
  EXPECT_EQ((std::vector<sa::Index>{3, 7, 8, 9}), keys_of(f, {12, 12}, 9));
  EXPECT_EQ(iota(0, 2), keys_of(f, {12, 12}, 2));
  EXPECT_EQ((std::vector<sa::Index>{3, 4, 5}), keys_of(f, {12, 12}, 5));
  // Two summary positions per window: {2, 3, 6, 7, 10, 11}.
  EXPECT_EQ((std::vector<sa::Index>{2, 3, 6, 7, 8, 9, 10}), keys_of(sa::Fixed(4, 2), {12, 12}, 10));
}

TEST(Fixed, BidirectionalFixture) {
  EXPECT_EQ((std::vector<sa::Index>{0, 1, 2, 3, 7, 11}), keys_of(sa::Fixed(4, 1, false), {12, 12}, 1));
}

// OpenAI's multi-head "fixed": head h reads the summary block at offset (h mod patterns) * summary.
// With window 4, summary 1 and 2 patterns, head 0 reads residue 3 and head 1 residue 2.
TEST(Fixed, PerHeadSummaryOffsets) {
  const sa::Fixed f = sa::Fixed::sparse_transformer(4, 1, 2);
  EXPECT_TRUE(f.head_dependent());
  EXPECT_EQ((std::vector<sa::Index>{3, 7, 8, 9}), keys_of(f, {12, 12}, 9, 0));
  EXPECT_EQ((std::vector<sa::Index>{2, 6, 8, 9}), keys_of(f, {12, 12}, 9, 1));
  EXPECT_EQ((std::vector<sa::Index>{3, 7, 8, 9}), keys_of(f, {12, 12}, 9, 2));  // cycles
  const sa::Fixed explicit_offsets(8, 2, true, {0, 2, 4, 6});
  EXPECT_EQ((std::vector<sa::Index>{2, 3, 8}), keys_of(explicit_offsets, {16, 16}, 8, 2));
}

TEST(Fixed, ConsistentWithItsPredicate) {
  for (sa::Index l : {1, 3, 4, 8, 20})
    for (sa::Index c : {sa::Index{1}, l / 2 + 1, l})
      for (bool causal : {true, false})
        sa::testing::expect_policy_consistent([&](sa::Extent) { return sa::Fixed(l, std::min(c, l), causal); },
                                              "Fixed(" + std::to_string(l) + "," + std::to_string(c) + ")",
                                              sa::testing::small_extents(), 1);
  sa::testing::expect_policy_consistent([](sa::Extent) { return sa::Fixed::sparse_transformer(8, 2, 3); },
                                        "Fixed per head", sa::testing::small_extents(), 4);
}

TEST(Fixed, RejectsBadParameters) {
  EXPECT_THROW(sa::Fixed(0, 1), std::invalid_argument);
  EXPECT_THROW(sa::Fixed(4, 0), std::invalid_argument);
  EXPECT_THROW(sa::Fixed(4, 5), std::invalid_argument);
  EXPECT_THROW(sa::Fixed(4, 2, true, {0, 3}), std::invalid_argument);
  EXPECT_THROW(sa::Fixed(4, 2, true, {-1}), std::invalid_argument);
  EXPECT_THROW(sa::Fixed::sparse_transformer(4, 2, 3), std::invalid_argument);
  EXPECT_THROW(sa::Fixed::sparse_transformer(4, 1, 0), std::invalid_argument);
}

}  // namespace
