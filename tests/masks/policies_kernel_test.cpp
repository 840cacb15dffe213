// SPDX-License-Identifier: Apache-2.0
// Every static policy through the blocked kernel, against the dense oracle (FlashAttention rule), in
// float and double. Kept in one translation unit: the kernel and the reference are the expensive
// instantiations of the test build.
#include <gtest/gtest.h>

#include <random>

#include "masks/common.hpp"
#include "support/policy_checks.hpp"

namespace sa = sparse_attention;

namespace {

TEST(Strided, KernelMatchesReference) {
  for (sa::Index l : {3, 16, 64})
    for (bool causal : {true, false})
      sa::testing::expect_kernel_matches_reference([&](sa::Extent) { return sa::Strided(l, causal); }, "Strided",
                                                   {{97, 97}, {33, 130}, {1, 200}}, 2, 1, {{16, 16}, {64, 64}});
}

TEST(Fixed, KernelMatchesReference) {
  sa::testing::expect_kernel_matches_reference([](sa::Extent) { return sa::Fixed(16, 4); }, "Fixed",
                                               {{97, 97}, {40, 130}}, 2, 1, {{16, 16}, {64, 64}});
  sa::testing::expect_kernel_matches_reference([](sa::Extent) { return sa::Fixed::sparse_transformer(32, 4, 4, false); },
                                               "Fixed per head", {{150, 150}}, 4, 2, {{32, 32}, {64, 16}});
}

TEST(Longformer, KernelMatchesReference) {
  sa::testing::expect_kernel_matches_reference([](sa::Extent) { return sa::Longformer(9, {0, 1, 50, 96}); },
                                               "Longformer", {{97, 97}}, 4, 2, {{16, 16}, {64, 64}, {32, 8}});
  sa::testing::expect_kernel_matches_reference([](sa::Extent) { return sa::Longformer(20, {3, 140}, true); },
                                               "Longformer causal", {{150, 150}, {40, 150}}, 2, 1, {{64, 64}});
}

TEST(BigBird, KernelMatchesReference) {
  sa::testing::expect_kernel_matches_reference([](sa::Extent) { return sa::BigBird(16, 1, 2, 5); }, "BigBird",
                                               {{200, 200}, {195, 195}}, 4, 2, {{16, 16}, {32, 32}, {64, 16}});
  sa::testing::expect_kernel_matches_reference([](sa::Extent) { return sa::BigBird(8, 2, 3, 9, true); }, "BigBird causal",
                                               {{130, 130}, {30, 130}}, 2, 2, {{8, 8}, {64, 64}});
}

TEST(Combinators, KernelMatchesReference) {
  sa::testing::expect_kernel_matches_reference(
      [](sa::Extent) { return (sa::LocalWindow(5, 0) | sa::Strided(32)) & sa::Causal{}; }, "(Local|Strided)&Causal",
      {{130, 130}, {50, 130}}, 2, 1, {{16, 16}, {64, 64}});
}

TEST(Segments, KernelMatchesReference) {
  const auto make = [](sa::Extent x) {
    std::vector<sa::Index> ids(static_cast<std::size_t>(x.seq_k));
    for (sa::Index t = 0; t < x.seq_k; ++t) ids[static_cast<std::size_t>(t)] = (t * t) / 37;
    return sa::Segments(ids) & sa::Causal{};
  };
  sa::testing::expect_kernel_matches_reference(make, "Segments & Causal", {{120, 120}, {50, 120}}, 2, 1,
                                               {{16, 16}, {64, 64}});
}

TEST(BlockMask, KernelMatchesReference) {
  sa::testing::expect_kernel_matches_reference([](sa::Extent) { return sa::testing::phi3_layout(100, 8, 3, 4, 2); },
                                               "Phi-3 layout", {{100, 100}, {36, 100}}, 2, 1, {{8, 8}, {16, 16}, {64, 64}});
}

// Global rows through their own projections, as the models do: the helper's rows equal dense
// attention of Qg over (Kg, Vg); every other row keeps the Longformer result of (Q, K, V).
TEST(Longformer, GlobalProjectionsOverwriteGlobalRows) {
  const sa::Index b = 2, h = 2, n = 100, d = 16;
  const sa::Longformer lf(6, {0, 42, 99});
  std::mt19937 rng(3);
  std::normal_distribution<double> normal;
  auto random = [&](sa::Index size) {
    std::vector<double> v(static_cast<std::size_t>(size));
    for (double& e : v) e = normal(rng);
    return v;
  };
  const auto q = random(b * h * n * d), k = random(b * h * n * d), v = random(b * h * n * d);
  const auto qg = random(b * h * n * d), kg = random(b * h * n * d), vg = random(b * h * n * d);
  auto view = [&](const std::vector<double>& x) { return sa::bhsd<const double>(x.data(), b, h, n, d); };
  std::vector<double> out(static_cast<std::size_t>(b * h * n * d)), lse(static_cast<std::size_t>(b * h * n));
  sa::attention<double>(view(q), view(k), view(v), sa::bhsd(out.data(), b, h, n, d), lf);
  const std::vector<double> local = out;
  sa::longformer_global_attention<double>(view(qg), view(kg), view(vg), sa::bhsd(out.data(), b, h, n, d), lf,
                                          {.lse = sa::lse_bhs(lse.data(), b, h, n)});
  std::vector<long double> dense(out.size()), dense_lse(lse.size());
  sa::reference::dense_attention<long double>(view(qg), view(kg), view(vg), sa::bhsd(dense.data(), b, h, n, d), sa::Dense{},
                                              {.lse = sa::lse_bhs(dense_lse.data(), b, h, n)});
  for (sa::Index bh = 0; bh < b * h; ++bh)
    for (sa::Index i = 0; i < n; ++i) {
      const bool global = lf.is_global(i);
      for (sa::Index c = 0; c < d; ++c) {
        const auto at = static_cast<std::size_t>((bh * n + i) * d + c);
        if (global) {
          EXPECT_NEAR(static_cast<double>(dense[at]), out[at], 1e-12) << i;
        } else {
          EXPECT_EQ(local[at], out[at]) << i;
        }
      }
      if (global) {
        EXPECT_NEAR(static_cast<double>(dense_lse[static_cast<std::size_t>(bh * n + i)]),
                    lse[static_cast<std::size_t>(bh * n + i)], 1e-12);
      }
    }
}

}  // namespace
