// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "masks/common.hpp"
#include "support/policy_checks.hpp"

namespace sa = sparse_attention;
using sa::testing::iota;
using sa::testing::join;
using sa::testing::keys_of;

namespace {

// The fixture of the Hugging Face comparison: n = 64, one-sided window 4 (attention_window 8),
// global tokens {0, 37}.
TEST(Longformer, HandFixtureN64Window4Globals0And37) {
  const sa::Longformer lf(4, {37, 0});
  const sa::Extent x{64, 64};
  EXPECT_EQ(iota(0, 63), keys_of(lf, x, 0));                     // a global query sees every key
  EXPECT_EQ(iota(0, 63), keys_of(lf, x, 37));
  EXPECT_EQ(join(join({0}, iota(6, 14)), {37}), keys_of(lf, x, 10));  // window 6..14 plus both globals
  EXPECT_EQ(join({0}, iota(31, 39)), keys_of(lf, x, 35));        // 37 is in the window: counted once
  EXPECT_EQ(join({0, 37}, iota(59, 63)), keys_of(lf, x, 63));    // window clipped at the end
  EXPECT_EQ(join(iota(0, 5), {37}), keys_of(lf, x, 1));          // clipped at the start, 0 inside it
  // Allowed pairs: 2 global rows of 64; 62 others with their clipped window plus the globals outside it.
  const sa::BlockLayout layout = sa::BlockLayout::build(lf, x, {8, 8});
  sa::Index expected = 2 * 64;
  for (sa::Index p = 0; p < 64; ++p) {
    if (p == 0 || p == 37) continue;
    const sa::Index lo = std::max<sa::Index>(0, p - 4), hi = std::min<sa::Index>(63, p + 4);
    expected += hi - lo + 1 + (lo > 0 ? 1 : 0) + (37 < lo || 37 > hi ? 1 : 0);
  }
  EXPECT_EQ(expected, layout.allowed_pairs());
}

TEST(Longformer, HuggingFaceAttentionWindowIsTwiceTheOneSidedWindow) {
  const sa::Longformer hf = sa::Longformer::from_hugging_face(8, {0, 37});
  EXPECT_EQ(4, hf.window());
  for (sa::Index i = 0; i < 64; ++i) EXPECT_EQ(keys_of(sa::Longformer(4, {0, 37}), {64, 64}, i), keys_of(hf, {64, 64}, i));
  EXPECT_THROW(sa::Longformer::from_hugging_face(7, {}), std::invalid_argument);
  EXPECT_THROW(sa::Longformer::from_hugging_face(0, {}), std::invalid_argument);
}

TEST(Longformer, CausalVariant) {
  const sa::Longformer lf(2, {0, 5}, /*causal=*/true);
  EXPECT_EQ(iota(0, 5), keys_of(lf, {12, 12}, 5));                   // a global query: every key so far
  EXPECT_EQ(join({0, 5}, iota(7, 9)), keys_of(lf, {12, 12}, 9));     // keys 7..9 and the globals before it
  EXPECT_EQ(iota(0, 2), keys_of(lf, {12, 12}, 2));
}

TEST(Longformer, ConsistentWithItsPredicate) {
  const std::vector<std::vector<sa::Index>> global_sets = {{}, {0}, {0, 37}, {3, 4, 5}, {12}, {30, 76}};
  for (sa::Index w : {0, 1, 4, 9})
    for (const auto& globals : global_sets)
      for (bool causal : {false, true})
        sa::testing::expect_policy_consistent(
            [&](sa::Extent x) {
              std::vector<sa::Index> g;
              for (sa::Index p : globals)
                if (p < x.seq_k) g.push_back(p);
              return sa::Longformer(w, g, causal);
            },
            "Longformer(" + std::to_string(w) + ")", sa::testing::small_extents(), 1);
}

TEST(Longformer, RejectsBadParameters) {
  EXPECT_THROW(sa::Longformer(-1, {}), std::invalid_argument);
  EXPECT_THROW(sa::Longformer(4, {3, -2}), std::invalid_argument);
  EXPECT_THROW(sa::Longformer(4, {3, 7, 3}), std::invalid_argument);
  // A global beyond the keys is caught when the lengths are known.
  EXPECT_THROW(sa::BlockLayout::build(sa::Longformer(4, {0, 64}), {64, 64}), std::invalid_argument);
  std::vector<float> x(64 * 8);
  EXPECT_THROW(sa::attention<float>(sa::bhsd<const float>(x.data(), 1, 1, 64, 8), sa::bhsd<const float>(x.data(), 1, 1, 64, 8),
                                    sa::bhsd<const float>(x.data(), 1, 1, 64, 8), sa::bhsd(x.data(), 1, 1, 64, 8),
                                    sa::Longformer(4, {70})),
               std::invalid_argument);
  try {
    sa::Longformer(4, {3, 7, 3});
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("globals = 3"), std::string::npos) << e.what();
  }
}

}  // namespace
