// SPDX-License-Identifier: Apache-2.0
// Numerical robustness at the extremes: scores of magnitude 1e4, a million-token sequence, pair
// counts past 2^31 and 2^40.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "support/test_support.hpp"

namespace sa = sparse_attention;
using sa::testing::Problem;
using sa::testing::Shape;

namespace {

template <class T>
class Robustness : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(Robustness, Scalars);

// Scores q . k of +-1e4, at least 100 apart: every other key weighs at most e^-100 = 4e-44 of the best
// allowed one. By hand: LSE = the best score and O = that key's V row, to the
// last bits (a few ulps, plus the e^-100 weights of the others).
TYPED_TEST(Robustness, HugeScoresGiveTheExactOneHotRows) {
  using T = TypeParam;
  const sa::Index n = 200, d = 4;
  std::vector<T> q(static_cast<std::size_t>(n * d), T(0)), k(q.size(), T(0)), v(q.size());
  std::vector<T> c(static_cast<std::size_t>(n));
  for (sa::Index i = 0; i < n; ++i) {
    q[static_cast<std::size_t>(i * d)] = i % 2 == 0 ? T(100) : T(-100);
    c[static_cast<std::size_t>(i)] = T(100 - (i * 37) % 201);  // distinct integers in [-100, 100]
    k[static_cast<std::size_t>(i * d)] = c[static_cast<std::size_t>(i)];
    for (sa::Index e = 0; e < d; ++e) v[static_cast<std::size_t>(i * d + e)] = T(i * d + e) / T(7);
  }
  auto view = [&](std::vector<T>& x) { return sa::bhsd<const T>(x.data(), 1, 1, n, d); };
  const auto check = [&](const auto& policy, const char* name) {
    std::vector<T> out(q.size()), lse(static_cast<std::size_t>(n));
    sa::attention<T>(view(q), view(k), view(v), sa::bhsd(out.data(), 1, 1, n, d), policy,
                     {.scale = 1.0, .lse = sa::lse_bhs(lse.data(), 1, 1, n)});
    for (sa::Index i = 0; i < n; ++i) {
      sa::Index best = -1;
      T best_score = 0;
      for (sa::Index j = 0; j < n; ++j) {
        const T s = q[static_cast<std::size_t>(i * d)] * c[static_cast<std::size_t>(j)];
        if (policy.allowed({n, n}, i, j, 0) && (best < 0 || s > best_score)) best = j, best_score = s;
      }
      ASSERT_NEAR(best_score, lse[static_cast<std::size_t>(i)], 2 * std::numeric_limits<T>::epsilon() * std::fabs(best_score))
          << name << " row " << i;
      for (sa::Index e = 0; e < d; ++e)
        ASSERT_NEAR(v[static_cast<std::size_t>(best * d + e)], out[static_cast<std::size_t>(i * d + e)],
                    4 * std::numeric_limits<T>::epsilon() * std::fabs(v[static_cast<std::size_t>(best * d + e)]) + 1e-38)
            << name << " row " << i;
    }
  };
  check(sa::Dense{}, "Dense");
  check(sa::Causal{}, "Causal");
  check(sa::LocalWindow(9, 2), "LocalWindow(9, 2)");
  check(sa::Longformer(3, {0, 150}), "Longformer");
}

// Random inputs with scaled scores in the thousands: finite, and within the error rule (whose floor
// grows with the score magnitude, as every float evaluation's error does).
TYPED_TEST(Robustness, LargeRandomScoresMatchReference) {
  using T = TypeParam;
  const Problem<T> p(Shape{1, 2, 1, 130, 130, 16, 16, false}, 5, /*magnitude=*/40.0);
  const auto run = [&](const auto& policy, const char* name) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(sa::testing::matches_reference(p, policy, {32, 32}));
    for (T x : sa::testing::run_kernel(p, policy, {64, 64}).out) ASSERT_TRUE(std::isfinite(x));
  };
  run(sa::Dense{}, "Dense");
  run(sa::LocalWindow(20, 0), "LocalWindow");
  run(sa::BigBird(16, 1, 2, 3), "BigBird");
}

// n = 2^20 tokens of causal local attention (64 keys): 64-bit indexing end to end. Sampled rows
// against a direct evaluation in long double.
TEST(Robustness, MillionTokenLocalAttention) {
  const sa::Index n = sa::Index{1} << 20, d = 8, window = 64;
  const Problem<float> p(Shape{1, 1, 1, n, n, d, d, false}, 9);
  std::vector<float> out(static_cast<std::size_t>(n * d)), lse(static_cast<std::size_t>(n));
  const sa::LocalWindow policy = sa::LocalWindow::causal(window);
  sa::attention<float>(p.qv(), p.kv(), p.vv(), sa::bhsd(out.data(), 1, 1, n, d), policy,
                       {.lse = sa::lse_bhs(lse.data(), 1, 1, n)});
  for (sa::Index i : {sa::Index{0}, sa::Index{1}, sa::Index{63}, sa::Index{64}, n / 2 + 17, n - 65, n - 1}) {
    std::vector<long double> s;
    long double m = -INFINITY;
    for (sa::Index j = std::max<sa::Index>(0, i - window + 1); j <= i; ++j) {
      long double dot = 0;
      for (sa::Index c = 0; c < d; ++c)
        dot += static_cast<long double>(p.q[static_cast<std::size_t>(i * d + c)]) * p.k[static_cast<std::size_t>(j * d + c)];
      s.push_back(dot / std::sqrt(static_cast<long double>(d)));
      m = std::max(m, s.back());
    }
    long double l = 0;
    std::vector<long double> o(static_cast<std::size_t>(d), 0);
    const sa::Index j0 = std::max<sa::Index>(0, i - window + 1);
    for (std::size_t t = 0; t < s.size(); ++t) {
      const long double w = std::exp(s[t] - m);
      l += w;
      for (sa::Index c = 0; c < d; ++c) o[static_cast<std::size_t>(c)] += w * p.v[static_cast<std::size_t>((j0 + static_cast<sa::Index>(t)) * d + c)];
    }
    EXPECT_NEAR(static_cast<double>(m + std::log(l)), lse[static_cast<std::size_t>(i)], 1e-5) << i;
    for (sa::Index c = 0; c < d; ++c)
      EXPECT_NEAR(static_cast<double>(o[static_cast<std::size_t>(c)] / l), out[static_cast<std::size_t>(i * d + c)], 1e-5) << i;
  }
}

// Pair counts beyond 32 bits are exact.
TEST(Robustness, PairCountsPast32BitsAreExact) {
  const sa::Index n = sa::Index{1} << 20;
  const sa::BlockLayout dense = sa::BlockLayout::build(sa::Dense{}, {n, n}, {4096, 4096});
  EXPECT_EQ(n * n, dense.allowed_pairs());  // 2^40
  EXPECT_EQ(n * n, dense.computed_pairs());
  const sa::BlockLayout causal = sa::BlockLayout::build(sa::Causal{}, {n, n}, {4096, 4096});
  EXPECT_EQ(n * (n + 1) / 2, causal.allowed_pairs());
  EXPECT_EQ((n / 4096) * (n / 4096 + 1) / 2 * 4096 * 4096, causal.computed_pairs());
  const sa::Index w = 4096;
  const sa::BlockLayout local = sa::BlockLayout::build(sa::LocalWindow::causal(w), {n, n});
  EXPECT_EQ(w * (w + 1) / 2 + (n - w) * w, local.allowed_pairs());  // 4.29e9
  EXPECT_GT(local.allowed_pairs(), sa::Index{1} << 31);
  // Per head: 8 heads of a head-dependent layout sum exactly too.
  const sa::BlockLayout bigbird = sa::BlockLayout::build(sa::BigBird(64, 1, 3, 7), {n, n}, {64, 64}, 8);
  EXPECT_EQ(bigbird.computed_pairs(), bigbird.nnz_blocks() * 64 * 64);
  EXPECT_GT(bigbird.computed_pairs(), sa::Index{1} << 31);
}

}  // namespace
