// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "masks/common.hpp"
#include "support/policy_checks.hpp"

namespace sa = sparse_attention;
using sa::testing::iota;
using sa::testing::keys_of;

namespace {

const std::vector<sa::Index> kIds = {7, 7, 7, 3, 3, 9, 9, 9, 9, 1};

TEST(Segments, QueriesSeeOnlyTheirDocument) {
  const sa::Segments s(kIds);
  EXPECT_EQ(4, s.segments());
  EXPECT_EQ(iota(0, 2), keys_of(s, {10, 10}, 1));
  EXPECT_EQ(iota(3, 4), keys_of(s, {10, 10}, 3));
  EXPECT_EQ(iota(5, 8), keys_of(s, {10, 10}, 8));
  EXPECT_EQ(iota(9, 9), keys_of(s, {10, 10}, 9));
}

TEST(Segments, PackedCausalLanguageModelling) {
  const auto s = sa::Segments(kIds) & sa::Causal{};
  EXPECT_EQ(iota(0, 1), keys_of(s, {10, 10}, 1));
  EXPECT_EQ(iota(5, 7), keys_of(s, {10, 10}, 7));
  // A chunk of the last 4 queries over all 10 keys: query 0 sits at position 6.
  EXPECT_EQ(iota(5, 6), keys_of(s, {4, 10}, 0));
}

TEST(Segments, ConsistentWithItsPredicate) {
  const auto make = [](sa::Extent x) {
    std::vector<sa::Index> ids(static_cast<std::size_t>(x.seq_k));
    for (sa::Index t = 0; t < x.seq_k; ++t) ids[static_cast<std::size_t>(t)] = (t * t) / 37;  // growing segments
    return sa::Segments(ids);
  };
  sa::testing::expect_policy_consistent(make, "Segments", sa::testing::small_extents(), 1);
  sa::testing::expect_policy_consistent([&](sa::Extent x) { return make(x) & sa::Causal{}; }, "Segments & Causal",
                                        sa::testing::small_extents(), 1, /*exact=*/false);
}

TEST(Segments, RejectsBadIds) {
  EXPECT_THROW(sa::Segments({1, 1, 2, 1}), std::invalid_argument);  // segment 1 resumes
  try {
    sa::Segments({1, 1, 2, 1});
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("ids[3] = 1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(sa::BlockLayout::build(sa::Segments(kIds), {11, 11}), std::invalid_argument);  // wrong length
}

}  // namespace
