// SPDX-License-Identifier: Apache-2.0
// Dense, Causal and LocalWindow: hand-derived fixtures that pin the window conventions, and block
// classification / enumeration checked exhaustively against the element predicate.
#include <gtest/gtest.h>

#include <vector>

#include "sparse_attention/sparse_attention.hpp"

namespace sa = sparse_attention;

namespace {

// Keys a query row may attend to, from the element predicate.
template <class Policy>
std::vector<sa::Index> keys_of(const Policy& policy, sa::Extent x, sa::Index i) {
  std::vector<sa::Index> keys;
  for (sa::Index j = 0; j < x.seq_k; ++j)
    if (policy.allowed(x, i, j, 0)) keys.push_back(j);
  return keys;
}

std::vector<sa::Index> iota(sa::Index first, sa::Index last) {  // [first, last]
  std::vector<sa::Index> v;
  for (sa::Index j = first; j <= last; ++j) v.push_back(j);
  return v;
}

TEST(LocalWindow, FlashAttentionLeftThreeRightZeroIsFourKeysIncludingSelf) {
  const sa::LocalWindow w(3, 0);
  const sa::Extent x{20, 20};
  EXPECT_EQ(iota(7, 10), keys_of(w, x, 10));
  EXPECT_EQ(iota(0, 0), keys_of(w, x, 0));
  EXPECT_EQ(iota(0, 2), keys_of(w, x, 2));
}

TEST(LocalWindow, CausalWindowOfWHasExactlyWKeys) {
  // Mistral / Hugging Face: a sliding window of W is W keys ending at the query itself.
  for (sa::Index W : {1, 2, 5, 16}) {
    const sa::LocalWindow w = sa::LocalWindow::causal(W);
    EXPECT_EQ(W - 1, w.left());
    EXPECT_EQ(0, w.right());
    EXPECT_EQ(iota(30 - W + 1, 30), keys_of(w, {40, 40}, 30)) << W;
  }
}

TEST(LocalWindow, SymmetricIsTwoWPlusOneKeys) {
  EXPECT_EQ(iota(6, 14), keys_of(sa::LocalWindow::symmetric(4), {40, 40}, 10));
  EXPECT_EQ(iota(0, 39), keys_of(sa::LocalWindow::symmetric(-1), {40, 40}, 10));
}

TEST(LocalWindow, UnboundedSides) {
  EXPECT_EQ(iota(0, 12), keys_of(sa::LocalWindow(-1, 2), {20, 20}, 10));
  EXPECT_EQ(iota(8, 19), keys_of(sa::LocalWindow(2, -1), {20, 20}, 10));
  EXPECT_EQ(iota(0, 19), keys_of(sa::LocalWindow(-1, -1), {20, 20}, 10));
  // Windows wider than any sequence behave as unbounded.
  EXPECT_EQ(iota(0, 19), keys_of(sa::LocalWindow(sa::Index{1} << 62, sa::Index{1} << 62), {20, 20}, 10));
}

TEST(LocalWindow, BottomRightAlignmentWhenLengthsDiffer) {
  // FlashAttention's docstring: seq_q = 2, seq_k = 5, causal: row 0 sees keys 0..3, row 1 keys 0..4.
  const sa::Causal causal;
  EXPECT_EQ(iota(0, 3), keys_of(causal, {2, 5}, 0));
  EXPECT_EQ(iota(0, 4), keys_of(causal, {2, 5}, 1));
  // seq_q = 5, seq_k = 2: the first three rows see nothing.
  for (sa::Index i = 0; i < 3; ++i) EXPECT_TRUE(keys_of(causal, {5, 2}, i).empty()) << i;
  EXPECT_EQ(iota(0, 0), keys_of(causal, {5, 2}, 3));
  EXPECT_EQ(iota(0, 1), keys_of(causal, {5, 2}, 4));
  // A window over a KV cache: query 0 of a 3-query chunk after 10 cached keys sits at position 10.
  EXPECT_EQ(iota(8, 10), keys_of(sa::LocalWindow::causal(3), {3, 13}, 0));
}

TEST(LocalWindow, RejectsWindowsBelowMinusOne) {
  EXPECT_THROW(sa::LocalWindow(-2, 0), std::invalid_argument);
  EXPECT_THROW(sa::LocalWindow(0, -5), std::invalid_argument);
  EXPECT_THROW(sa::LocalWindow::causal(0), std::invalid_argument);
  EXPECT_THROW(sa::LocalWindow::symmetric(-2), std::invalid_argument);
  try {
    sa::LocalWindow(-2, 0);
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("left = -2"), std::string::npos) << e.what();
  }
}

// classify() must never call a tile with an allowed pair empty, nor a tile with a forbidden pair
// full; for bands it is exact. for_each_block must visit exactly the non-empty tiles, in order.
template <class Policy>
void expect_block_structure_matches_predicate(const Policy& policy, const char* name) {
  const sa::Index lengths[] = {0, 1, 3, 8, 13, 16, 31};
  const sa::BlockSize blocks[] = {{1, 1}, {4, 4}, {3, 5}, {8, 2}, {16, 16}, {64, 64}};
  for (sa::Index sq : lengths) {
    for (sa::Index sk : lengths) {
      for (const sa::BlockSize& b : blocks) {
        const sa::BlockGrid g({sq, sk}, b);
        for (sa::Index qb = 0; qb < g.q_blocks(); ++qb) {
          std::vector<std::pair<sa::Index, sa::BlockClass>> visited, expected;
          policy.for_each_block(g, qb, 0, [&](sa::Index kb, sa::BlockClass c) { visited.push_back({kb, c}); });
          for (sa::Index kb = 0; kb < g.kv_blocks(); ++kb) {
            const sa::BlockClass exact = sa::detail::classify_exactly(policy, g, qb, kb, 0);
            const sa::BlockClass claimed = policy.classify(g, qb, kb, 0);
            EXPECT_EQ(exact, claimed) << name << " Sq" << sq << " Sk" << sk << " block " << b.q << "x"
                                      << b.kv << " qb" << qb << " kb" << kb;
            if (exact != sa::BlockClass::kEmpty) expected.push_back({kb, claimed});
          }
          EXPECT_EQ(expected, visited) << name << " Sq" << sq << " Sk" << sk << " qb" << qb;
        }
      }
    }
  }
}

TEST(BlockStructure, MatchesPredicateExhaustively) {
  expect_block_structure_matches_predicate(sa::Dense{}, "Dense");
  expect_block_structure_matches_predicate(sa::Causal{}, "Causal");
  for (sa::Index left : {-1, 0, 1, 2, 5, 9, 40})
    for (sa::Index right : {-1, 0, 1, 3, 7, 40})
      expect_block_structure_matches_predicate(sa::LocalWindow(left, right), "LocalWindow");
}

// Band::count is a closed form (a difference of two ramp sums); every tile's count must equal the
// predicate's, for bands bounded and unbounded on either side, Sq < Sk, Sq > Sk and tail blocks.
TEST(BlockStructure, CountAllowedMatchesPredicate) {
  const auto brute_force = [](const auto& policy, const sa::BlockGrid& g, sa::Index qb, sa::Index kb) {
    sa::Index n = 0;
    for (sa::Index i = g.q_range(qb).begin; i < g.q_range(qb).end; ++i)
      for (sa::Index j = g.kv_range(kb).begin; j < g.kv_range(kb).end; ++j) n += policy.allowed(g.extent(), i, j, 0);
    return n;
  };
  for (sa::Extent x : {sa::Extent{37, 41}, sa::Extent{41, 37}, sa::Extent{1, 29}, sa::Extent{16, 16}})
    for (sa::BlockSize b : {sa::BlockSize{8, 6}, sa::BlockSize{1, 1}, sa::BlockSize{5, 16}}) {
      const sa::BlockGrid g(x, b);
      for (sa::Index qb = 0; qb < g.q_blocks(); ++qb)
        for (sa::Index kb = 0; kb < g.kv_blocks(); ++kb) {
          for (sa::Index left : {-1, 0, 1, 2, 5, 13, 40})
            for (sa::Index right : {-1, 0, 1, 3, 7, 40}) {
              const sa::LocalWindow w(left, right);
              ASSERT_EQ(brute_force(w, g, qb, kb), w.count_allowed(g, qb, kb, 0))
                  << "left " << left << " right " << right << " extent " << x.seq_q << "x" << x.seq_k << " tile " << qb << "," << kb;
            }
          ASSERT_EQ(brute_force(sa::Causal{}, g, qb, kb), sa::Causal{}.count_allowed(g, qb, kb, 0));
        }
    }
}

}  // namespace
