// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "masks/common.hpp"
#include "support/policy_checks.hpp"

namespace sa = sparse_attention;
using sa::testing::iota;
using sa::testing::join;
using sa::testing::keys_of;

namespace {

TEST(Combinators, UnionAndIntersectionOfPredicates) {
  const auto u = sa::LocalWindow(1, 1) | sa::Longformer(0, {10});
  EXPECT_EQ(join(iota(4, 6), {10}), keys_of(u, {20, 20}, 5));
  const auto i = sa::LocalWindow(3, 3) & sa::Causal{};
  EXPECT_EQ(iota(2, 5), keys_of(i, {20, 20}, 5));
  const auto nested = (sa::Strided(4) | sa::LocalWindow(0, 2)) & sa::LocalWindow(-1, 1);
  EXPECT_EQ(join({1}, iota(2, 6)), keys_of(nested, {20, 20}, 5));
}

TEST(Combinators, BlockClassesCombine) {
  const sa::BlockGrid g({64, 64}, {16, 16});
  const auto u = sa::Causal{} | sa::LocalWindow(0, 20);
  const auto i = sa::Causal{} & sa::LocalWindow(0, 20);
  // Tile (1, 0): full for Causal, empty for the window: full in the union, empty in the intersection.
  EXPECT_EQ(sa::BlockClass::kFull, u.classify(g, 1, 0, 0));
  EXPECT_EQ(sa::BlockClass::kEmpty, i.classify(g, 1, 0, 0));
  // Diagonal tile: partial for both.
  EXPECT_EQ(sa::BlockClass::kPartial, u.classify(g, 1, 1, 0));
  EXPECT_EQ(sa::BlockClass::kPartial, i.classify(g, 1, 1, 0));
}

TEST(Combinators, ConsistentWithTheirPredicates) {
  const auto extents = sa::testing::small_extents();
  sa::testing::expect_policy_consistent([](sa::Extent) { return sa::LocalWindow(2, 0) | sa::Strided(8); }, "Local|Strided",
                                        extents, 1, false);
  sa::testing::expect_policy_consistent(
      [](sa::Extent x) { return sa::LocalWindow::symmetric(3) | sa::Longformer(1, x.seq_k > 7 ? std::vector<sa::Index>{7} : std::vector<sa::Index>{}); },
      "Local|Longformer", extents, 1, false);
  sa::testing::expect_policy_consistent([](sa::Extent) { return sa::Fixed(8, 2, false) & sa::Causal{}; }, "Fixed&Causal",
                                        extents, 1, false);
  sa::testing::expect_policy_consistent(
      [](sa::Extent) { return sa::Fixed::sparse_transformer(8, 2, 2) | sa::LocalWindow(1, 1); }, "per-head union", extents, 2,
      false);
}

}  // namespace
