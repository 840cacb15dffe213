// SPDX-License-Identifier: Apache-2.0
// Checks that hold any MaskPolicy to its own element predicate, exhaustively on small shapes:
// classification (conservative, exact where the policy promises it), enumeration (every non-empty
// block, in increasing order), key_mask / key_range, count_allowed, and the kernel against the dense
// oracle.
#pragma once

#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "support/test_support.hpp"

namespace sparse_attention::testing {

inline std::string where(const std::string& name, Extent x, BlockSize b, Index h) {
  std::ostringstream s;
  s << name << " Sq" << x.seq_q << " Sk" << x.seq_k << " block " << b.q << "x" << b.kv << " head " << h;
  return s.str();
}

// Block level: classify() is never wrong (empty only if no pair is allowed, full only if all are) and
// exact when `exact` is set; for_each_block() visits strictly increasing blocks, each non-empty with
// its classify() class, and misses no block holding an allowed pair.
template <class P>
void expect_blocks_match_predicate(const P& policy, const std::string& name, Extent x, BlockSize b, Index heads,
                                   bool exact = true) {
  const BlockGrid g(x, b);
  for (Index h = 0; h < heads; ++h) {
    for (Index qb = 0; qb < g.q_blocks(); ++qb) {
      std::vector<std::pair<Index, BlockClass>> visited;
      policy.for_each_block(g, qb, h, [&](Index kb, BlockClass c) { visited.emplace_back(kb, c); });
      std::size_t v = 0;
      for (Index kb = 0; kb < g.kv_blocks(); ++kb) {
        const BlockClass truth = detail::classify_exactly(policy, g, qb, kb, h);
        const BlockClass claimed = policy.classify(g, qb, kb, h);
        const std::string at = where(name, x, b, h) + " qb " + std::to_string(qb) + " kb " + std::to_string(kb);
        if (exact) {
          ASSERT_EQ(truth, claimed) << at;
        } else {
          ASSERT_TRUE(claimed == truth || claimed == BlockClass::kPartial) << at << ": " << claimed << " vs " << truth;
        }
        const bool listed = v < visited.size() && visited[v].first == kb;
        if (truth != BlockClass::kEmpty) {
          ASSERT_TRUE(listed) << at << ": not enumerated";
        }
        if (listed) {
          ASSERT_EQ(claimed, visited[v].second) << at;
          ASSERT_NE(BlockClass::kEmpty, visited[v].second) << at;
          ++v;
        }
      }
      ASSERT_EQ(v, visited.size()) << where(name, x, b, h) << " qb " << qb << ": out-of-order or out-of-range blocks";
    }
  }
}

// Row level: key_bits (the policy's key_mask / key_range) and count_allowed agree with allowed().
template <class P>
void expect_rows_match_predicate(const P& policy, const std::string& name, Extent x, Index heads) {
  for (Index h = 0; h < heads; ++h)
    for (Index i = 0; i < x.seq_q; ++i)
      for (Index j0 = 0; j0 < x.seq_k; j0 += (j0 % 3 == 0 ? 13 : 51)) {
        std::uint64_t expected = 0;
        for (Index t = 0; t < 64 && j0 + t < x.seq_k; ++t)
          if (policy.allowed(x, i, j0 + t, h)) expected |= std::uint64_t{1} << t;
        const std::uint64_t valid = x.seq_k - j0 >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << (x.seq_k - j0)) - 1;
        ASSERT_EQ(expected, key_bits(policy, x, i, h, j0) & valid)
            << name << " Sq" << x.seq_q << " Sk" << x.seq_k << " head " << h << " row " << i << " j0 " << j0;
      }
  if constexpr (requires(const BlockGrid& g) { policy.count_allowed(g, Index{0}, Index{0}, Index{0}); }) {
    for (BlockSize b : {BlockSize{1, 1}, BlockSize{5, 3}, BlockSize{16, 16}}) {
      const BlockGrid g(x, b);
      for (Index h = 0; h < heads; ++h)
        for (Index qb = 0; qb < g.q_blocks(); ++qb)
          for (Index kb = 0; kb < g.kv_blocks(); ++kb) {
            Index brute = 0;
            for (Index i = g.q_range(qb).begin; i < g.q_range(qb).end; ++i)
              for (Index j = g.kv_range(kb).begin; j < g.kv_range(kb).end; ++j) brute += policy.allowed(x, i, j, h) ? 1 : 0;
            ASSERT_EQ(brute, policy.count_allowed(g, qb, kb, h)) << where(name, x, b, h) << " qb " << qb << " kb " << kb;
          }
    }
  }
}

// Everything above over a set of extents and block sizes; `make(extent)` builds the policy for an
// extent (most ignore it; BigBird, Segments and BlockMask need it).
template <class Make>
void expect_policy_consistent(Make&& make, const std::string& name, const std::vector<Extent>& extents, Index heads,
                              bool exact = true) {
  const BlockSize blocks[] = {{1, 1}, {4, 4}, {3, 5}, {8, 2}, {16, 16}, {64, 64}, {7, 13}};
  for (const Extent& x : extents) {
    const auto policy = make(x);
    detail::check_policy(policy, x, heads);
    expect_rows_match_predicate(policy, name, x, heads);
    for (const BlockSize& b : blocks) expect_blocks_match_predicate(policy, name, x, b, heads, exact);
  }
}

// The kernel against the dense oracle (FlashAttention rule) for float and double, several shapes.
template <class Make>
void expect_kernel_matches_reference(Make&& make, const std::string& name, const std::vector<Extent>& extents,
                                     Index q_heads, Index kv_heads, const std::vector<BlockSize>& blocks) {
  std::uint64_t seed = 1;
  for (const Extent& x : extents) {
    const auto policy = make(x);
    Shape s;
    s.q_heads = q_heads;
    s.kv_heads = kv_heads;
    s.seq_q = x.seq_q;
    s.seq_k = x.seq_k;
    s.head_dim = 24;
    s.value_dim = 16;
    s.bshd = seed % 2 == 0;
    const Problem<float> pf(s, seed);
    const Problem<double> pd(s, seed++);
    for (const BlockSize& b : blocks) {
      SCOPED_TRACE(name);
      EXPECT_TRUE(matches_reference(pf, policy, b));
      EXPECT_TRUE(matches_reference(pd, policy, b));
    }
  }
}

}  // namespace sparse_attention::testing
