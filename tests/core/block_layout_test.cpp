// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <vector>

#include "sparse_attention/sparse_attention.hpp"

namespace sa = sparse_attention;

namespace {

// Forwards to an inner policy and counts how often each level is asked.
template <class Inner>
struct Counting {
  Inner inner;
  mutable sa::Index predicate_calls = 0, classify_calls = 0, visits = 0;
  bool allowed(const sa::Extent& x, sa::Index i, sa::Index j, sa::Index h) const {
    ++predicate_calls;
    return inner.allowed(x, i, j, h);
  }
  sa::BlockClass classify(const sa::BlockGrid& g, sa::Index qb, sa::Index kb, sa::Index h) const {
    ++classify_calls;
    return inner.classify(g, qb, kb, h);
  }
  template <class V>
  void for_each_block(const sa::BlockGrid& g, sa::Index qb, sa::Index h, V&& visit) const {
    inner.for_each_block(g, qb, h, [&](sa::Index kb, sa::BlockClass c) {
      ++visits;
      visit(kb, c);
    });
  }
};

// Head h allows key j iff j % heads == h: a pattern that differs between heads.
struct ModuloHeads {
  sa::Index heads;
  bool head_dependent() const { return true; }
  bool allowed(const sa::Extent&, sa::Index, sa::Index j, sa::Index h) const { return j % heads == h; }
  sa::BlockClass classify(const sa::BlockGrid& g, sa::Index qb, sa::Index kb, sa::Index h) const {
    return sa::detail::classify_exactly(*this, g, qb, kb, h);
  }
  template <class V>
  void for_each_block(const sa::BlockGrid& g, sa::Index qb, sa::Index h, V&& visit) const {
    sa::for_each_block_in_range(0, g.kv_blocks(), [&](sa::Index kb) { return classify(g, qb, kb, h); }, visit);
  }
};

template <class Policy>
void expect_statistics_match_brute_force(const Policy& policy, sa::Extent x, sa::BlockSize b, sa::Index heads) {
  const sa::BlockLayout layout = sa::BlockLayout::build(policy, x, b, heads);
  const sa::BlockGrid& g = layout.grid();
  sa::Index allowed = 0, computed = 0, nnz = 0;
  for (sa::Index h = 0; h < layout.layout_heads(); ++h) {
    for (sa::Index qb = 0; qb < g.q_blocks(); ++qb) {
      const sa::BlockLayout::Row row = layout.row(h, qb);
      std::vector<sa::Index> listed;
      for (auto kb : row.partial) listed.push_back(kb);
      for (auto kb : row.full) {
        listed.push_back(kb);
        EXPECT_EQ(sa::BlockClass::kFull, sa::detail::classify_exactly(policy, g, qb, kb, h));
      }
      for (sa::Index kb = 0; kb < g.kv_blocks(); ++kb) {
        const sa::Index n = sa::detail::count_allowed(policy, g, qb, kb, h);
        allowed += n;
        const bool in_row = std::find(listed.begin(), listed.end(), kb) != listed.end();
        if (n > 0) {
          EXPECT_TRUE(in_row) << "qb " << qb << " kb " << kb;
        }
        if (in_row) {
          computed += g.q_range(qb).size() * g.kv_range(kb).size();
          ++nnz;
        }
      }
    }
  }
  EXPECT_EQ(allowed, layout.allowed_pairs());
  EXPECT_EQ(computed, layout.computed_pairs());
  EXPECT_EQ(nnz, layout.nnz_blocks());
  const double total = static_cast<double>(layout.layout_heads() * x.seq_q * x.seq_k);
  EXPECT_DOUBLE_EQ(total > 0 ? static_cast<double>(allowed) / total : 0.0, layout.density());
}

TEST(BlockLayout, StatisticsMatchBruteForce) {
  expect_statistics_match_brute_force(sa::Dense{}, {37, 53}, {8, 16}, 1);
  expect_statistics_match_brute_force(sa::Causal{}, {64, 64}, {16, 16}, 1);
  expect_statistics_match_brute_force(sa::Causal{}, {70, 20}, {16, 8}, 1);
  expect_statistics_match_brute_force(sa::LocalWindow(9, 3), {100, 131}, {16, 32}, 2);
  expect_statistics_match_brute_force(ModuloHeads{3}, {20, 30}, {4, 4}, 3);
}

TEST(BlockLayout, CausalHasPartialDiagonalAndFullLowerTriangle) {
  const sa::BlockLayout layout = sa::BlockLayout::build(sa::Causal{}, {12, 12}, {4, 4});
  EXPECT_EQ("+..\n#+.\n##+\n", layout.to_string());
  EXPECT_EQ(6, layout.nnz_blocks());
  EXPECT_EQ(12 * 13 / 2, layout.allowed_pairs());
  EXPECT_EQ(6 * 16, layout.computed_pairs());
  const sa::BlockLayout::Row row = layout.row(0, 2);
  EXPECT_EQ((std::vector<std::int32_t>{2}), std::vector<std::int32_t>(row.partial.begin(), row.partial.end()));
  EXPECT_EQ((std::vector<std::int32_t>{0, 1}), std::vector<std::int32_t>(row.full.begin(), row.full.end()));
}

TEST(BlockLayout, AsciiGridIsDownsampledWhenLarge) {
  const sa::BlockLayout dense = sa::BlockLayout::build(sa::Dense{}, {200, 200}, {1, 1});
  const std::string grid = dense.to_string(0, 64);
  EXPECT_EQ(50u * 51u, grid.size());  // groups of 4 x 4 blocks: 50 rows of 50 characters
  EXPECT_EQ(std::string::npos, grid.find_first_not_of("#\n"));
  // A causal grid downsampled keeps '+' on the diagonal groups and '#' below.
  const std::string causal = sa::BlockLayout::build(sa::Causal{}, {256, 256}, {1, 1}).to_string(0, 4);
  EXPECT_EQ("+...\n#+..\n##+.\n###+\n", causal);
}

TEST(BlockLayout, TailBlocksNeverExceedTheExtent) {
  const sa::BlockLayout layout = sa::BlockLayout::build(sa::Dense{}, {65, 3}, {64, 64});
  EXPECT_EQ(2, layout.q_blocks());
  EXPECT_EQ(1, layout.kv_blocks());
  EXPECT_EQ(65 * 3, layout.computed_pairs());
  EXPECT_EQ(1.0, layout.blocking_efficiency());
}

TEST(BlockLayout, PerHeadLayoutsOnlyForHeadDependentPolicies) {
  const sa::BlockLayout shared = sa::BlockLayout::build(sa::Causal{}, {64, 64}, {16, 16}, 8);
  EXPECT_FALSE(shared.per_head());
  EXPECT_EQ(1, shared.layout_heads());
  const sa::BlockLayout per_head = sa::BlockLayout::build(ModuloHeads{4}, {16, 16}, {1, 4}, 4);
  EXPECT_TRUE(per_head.per_head());
  EXPECT_EQ(4, per_head.layout_heads());
  // Head h allows one key in four: each 1 x 4 tile is partial for every head.
  EXPECT_EQ(16 * 16, per_head.allowed_pairs());
  EXPECT_EQ(4 * 16 * 16, per_head.computed_pairs());
}

TEST(BlockLayout, EmptyExtents) {
  for (sa::Extent x : {sa::Extent{0, 0}, sa::Extent{0, 10}, sa::Extent{10, 0}}) {
    const sa::BlockLayout layout = sa::BlockLayout::build(sa::Dense{}, x);
    EXPECT_EQ(0, layout.nnz_blocks());
    EXPECT_EQ(0.0, layout.density());
  }
}

// Building never scans the block grid nor evaluates the predicate outside partial tiles.
TEST(BlockLayout, BuildIsProportionalToNonEmptyBlocks) {
  const sa::Index n = sa::Index{1} << 18;
  Counting<sa::LocalWindow> policy{sa::LocalWindow::causal(256)};
  const sa::BlockLayout layout = sa::BlockLayout::build(policy, {n, n}, {64, 64});
  const sa::Index rows = n / 64;
  EXPECT_EQ(layout.nnz_blocks(), policy.visits);
  EXPECT_LE(layout.nnz_blocks(), 6 * rows);              // a 256-key window touches <= 6 blocks per row
  EXPECT_LE(policy.classify_calls, 6 * rows);            // classification only of visited blocks
  // The wrapper has no count_allowed, so partial tiles are counted element by element: O(n * block).
  EXPECT_LE(policy.predicate_calls, 2 * rows * 64 * 64);
  EXPECT_EQ(n * 256 - 255 * 256 / 2, layout.allowed_pairs());
}

struct BrokenEnumeration {
  bool allowed(const sa::Extent&, sa::Index, sa::Index, sa::Index) const { return true; }
  sa::BlockClass classify(const sa::BlockGrid&, sa::Index, sa::Index, sa::Index) const { return sa::BlockClass::kFull; }
  template <class V>
  void for_each_block(const sa::BlockGrid&, sa::Index, sa::Index, V&& visit) const {
    visit(1, sa::BlockClass::kFull);
    visit(0, sa::BlockClass::kFull);  // out of order
  }
};

TEST(BlockLayout, RejectsAPolicyThatBreaksTheEnumerationContract) {
  EXPECT_THROW(sa::BlockLayout::build(BrokenEnumeration{}, {8, 8}, {4, 4}), std::logic_error);
}

TEST(BlockLayout, RejectsBadArguments) {
  EXPECT_THROW(sa::BlockLayout::build(sa::Dense{}, {8, 8}, {0, 4}), std::invalid_argument);
  EXPECT_THROW(sa::BlockLayout::build(sa::Dense{}, {8, 8}, {4, -1}), std::invalid_argument);
  EXPECT_THROW(sa::BlockLayout::build(sa::Dense{}, {-1, 8}), std::invalid_argument);
  EXPECT_THROW(sa::BlockLayout::build(sa::Dense{}, {8, -3}), std::invalid_argument);
  EXPECT_THROW(sa::BlockLayout::build(sa::Dense{}, {8, 8}, {4, 4}, 0), std::invalid_argument);
  const sa::BlockLayout layout = sa::BlockLayout::build(sa::Dense{}, {8, 8}, {4, 4}, 2);
  EXPECT_THROW((void)layout.to_string(2), std::invalid_argument);
  EXPECT_THROW((void)layout.to_string(0, 0), std::invalid_argument);
}

}  // namespace
