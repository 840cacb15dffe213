// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "masks/common.hpp"
#include "support/policy_checks.hpp"

namespace sa = sparse_attention;
using sa::testing::iota;
using sa::testing::join;
using sa::testing::keys_of;

namespace {

// Sparse Transformer, stride 4, causal, by hand: query 9 sees the last 4 positions {6, 7, 8, 9} and the
// positions 4 and 8 steps back {5, 1}.
TEST(Strided, CausalFixture) {
  const sa::Strided s(4);
  EXPECT_EQ((std::vector<sa::Index>{1, 5, 6, 7, 8, 9}), keys_of(s, {12, 12}, 9));
  EXPECT_EQ(iota(0, 3), keys_of(s, {12, 12}, 3));
  EXPECT_EQ((std::vector<sa::Index>{0, 4, 5, 6, 7, 8}), keys_of(s, {12, 12}, 8));
}

TEST(Strided, BidirectionalFixture) {
  // |5 - j| < 4 gives 2..8; |5 - j| a multiple of 4 adds 1 and 9.
  EXPECT_EQ(iota(1, 9), keys_of(sa::Strided(4, false), {12, 12}, 5));
  EXPECT_EQ(join(iota(0, 3), {4, 8}), keys_of(sa::Strided(4, false), {12, 12}, 0));
}

TEST(Strided, StrideOneIsDense) {
  EXPECT_EQ(iota(0, 9), keys_of(sa::Strided(1), {12, 12}, 9));
  EXPECT_EQ(iota(0, 11), keys_of(sa::Strided(1, false), {12, 12}, 3));
}

TEST(Strided, ConsistentWithItsPredicate) {
  for (sa::Index l : {1, 2, 3, 4, 7, 16, 40})
    for (bool causal : {true, false})
      sa::testing::expect_policy_consistent([&](sa::Extent) { return sa::Strided(l, causal); },
                                            "Strided(" + std::to_string(l) + ")", sa::testing::small_extents(), 1);
}

TEST(Strided, RejectsStrideBelowOne) {
  EXPECT_THROW(sa::Strided(0), std::invalid_argument);
  EXPECT_THROW(sa::Strided(-3, false), std::invalid_argument);
}

}  // namespace
