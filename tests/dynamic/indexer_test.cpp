// SPDX-License-Identifier: Apache-2.0
// The lightning indexer's top-k against the dense double-precision indexer, and TokenTopK lists.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "dynamic/dsa_common.hpp"

namespace sa = sparse_attention;
using sa::testing::IndexerInputs;

namespace {

template <class T>
void expect_equals_reference(const IndexerInputs<T>& in, sa::Index k) {
  const sa::TokenTopK sel = sa::lightning_top_k<T>(in.qv(), in.kv(), in.wv(), k);
  ASSERT_EQ(in.batch, sel.batch());
  for (sa::Index b = 0; b < in.batch; ++b) {
    const Eigen::MatrixXd scores = sa::reference::lightning_scores(in.qv(), in.kv(), in.wv(), b);
    for (sa::Index t = 0; t < in.seq_q; ++t) {
      const auto keys = sel.keys(b, 0, t);
      ASSERT_EQ(sa::reference::top_k_row(scores, t, k), std::vector<std::int32_t>(keys.begin(), keys.end()))
          << "b " << b << " t " << t << " k " << k << " Sq " << in.seq_q << " Sk " << in.seq_k;
    }
  }
}

// Integer inputs: float scores are exact, so the selection must equal the reference key for key,
// ties (frequent here) going to the smaller key.
TEST(LightningIndexer, EqualsDenseReferenceExactly) {
  for (sa::Index k : {1, 2, 7, 64, 100, 1000})
    for (auto [sq, sk] : {std::pair<sa::Index, sa::Index>{1, 1}, {5, 5}, {70, 70}, {130, 130}, {40, 130}, {130, 40}, {1, 300}})
      expect_equals_reference(IndexerInputs<float>(2, sq, sk, 3, 8, static_cast<std::uint64_t>(sq * 1000 + sk), true), k);
  expect_equals_reference(IndexerInputs<double>(1, 150, 150, 4, 16, 9, true), 33);
}

// Random inputs in double: exact equality too (the reference sums in the same order up to rounding of
// far smaller magnitude than the gaps between scores).
TEST(LightningIndexer, RandomInputsInDouble) {
  expect_equals_reference(IndexerInputs<double>(2, 200, 200, 4, 32, 11), 50);
  expect_equals_reference(IndexerInputs<double>(1, 64, 300, 2, 16, 12), 17);
}

// Long rows: the streaming buffer is cut many times (k much smaller than the row), on random scores
// in double and on integer scores full of ties across the cut.
TEST(LightningIndexer, LongRowsSurviveManyCuts) {
  expect_equals_reference(IndexerInputs<double>(1, 40, 5000, 2, 16, 21), 150);
  expect_equals_reference(IndexerInputs<float>(1, 24, 6000, 3, 8, 22, true), 700);
  expect_equals_reference(IndexerInputs<float>(1, 24, 6000, 3, 8, 23, true), 17);
}

// Random float inputs: where the float selection differs from the double reference, both keys must
// sit at the reference's threshold within float rounding.
TEST(LightningIndexer, RandomFloatInputsDifferOnlyAtNearTies) {
  const IndexerInputs<float> in(1, 300, 300, 4, 32, 13);
  const sa::Index k = 40;
  const sa::TokenTopK sel = sa::lightning_top_k<float>(in.qv(), in.kv(), in.wv(), k);
  const Eigen::MatrixXd scores = sa::reference::lightning_scores(in.qv(), in.kv(), in.wv(), 0);
  for (sa::Index t = 0; t < in.seq_q; ++t) {
    const auto got = sel.keys(0, 0, t);
    const std::vector<std::int32_t> expected = sa::reference::top_k_row(scores, t, k);
    ASSERT_EQ(expected.size(), got.size());
    double threshold = std::numeric_limits<double>::infinity();
    for (std::int32_t s : expected) threshold = std::min(threshold, scores(t, s));
    for (std::int32_t s : got)
      if (!std::binary_search(expected.begin(), expected.end(), s)) {
        EXPECT_NEAR(threshold, scores(t, s), 1e-4 * (1 + std::abs(threshold))) << "t " << t << " key " << s;
      }
  }
}

// Chunked prefill and decode select exactly what one-shot prefill selects for the same rows.
TEST(LightningIndexer, ChunkedPrefillAndDecodeEqualPrefill) {
  const IndexerInputs<float> full(2, 200, 200, 3, 16, 21);
  const sa::Index k = 30;
  const sa::TokenTopK whole = sa::lightning_top_k<float>(full.qv(), full.kv(), full.wv(), k);
  for (auto [first, n] : {std::pair<sa::Index, sa::Index>{150, 50}, {199, 1}, {37, 163}}) {
    const IndexerInputs<float> part = full.chunk(first, n);
    const sa::TokenTopK chunk = sa::lightning_top_k<float>(part.qv(), part.kv(), part.wv(), k);
    for (sa::Index b = 0; b < 2; ++b)
      for (sa::Index t = 0; t < n; ++t) {
        const auto a = chunk.keys(b, 0, t), c = whole.keys(b, 0, first + t);
        EXPECT_EQ(std::vector<std::int32_t>(c.begin(), c.end()), std::vector<std::int32_t>(a.begin(), a.end()))
            << "chunk at " << first << " row " << t;
      }
  }
}

TEST(LightningIndexer, FewerValidKeysThanKSelectsAllOfThem) {
  const IndexerInputs<float> in(1, 10, 10, 2, 4, 3);
  const sa::TokenTopK sel = sa::lightning_top_k<float>(in.qv(), in.kv(), in.wv(), 100);
  for (sa::Index t = 0; t < 10; ++t) {
    const auto keys = sel.keys(0, 0, t);
    ASSERT_EQ(static_cast<std::size_t>(t + 1), keys.size());
    for (sa::Index s = 0; s <= t; ++s) EXPECT_EQ(s, keys[static_cast<std::size_t>(s)]);
    for (sa::Index x = t + 1; x < 100; ++x) EXPECT_EQ(-1, sel.indices()[static_cast<std::size_t>(t * 100 + x)]);
  }
}

TEST(LightningIndexer, SameSelectionForEveryThreadCount) {
  const IndexerInputs<float> in(2, 300, 300, 4, 16, 5);
  const auto as_vector = [](std::span<const std::int32_t> s) { return std::vector<std::int32_t>(s.begin(), s.end()); };
  const auto one = sa::lightning_top_k<float>(in.qv(), in.kv(), in.wv(), 20, {.num_threads = 1});
  for (int threads : {2, 3})
    EXPECT_EQ(as_vector(one.indices()),
              as_vector(sa::lightning_top_k<float>(in.qv(), in.kv(), in.wv(), 20, {.num_threads = threads}).indices()));
}

// Selecting into an existing TokenTopK: the same lists as a fresh selection, in its memory when it is
// large enough and unshared; a copy that shares the memory keeps its lists; bad input leaves it as it was.
TEST(LightningIndexer, SelectIntoReusesMemoryAndSparesCopies) {
  const auto as_vector = [](std::span<const std::int32_t> s) { return std::vector<std::int32_t>(s.begin(), s.end()); };
  const IndexerInputs<float> big(2, 300, 300, 4, 16, 31), small(1, 120, 200, 3, 8, 32), other(2, 300, 300, 4, 16, 33);
  sa::TokenTopK sel = sa::lightning_top_k<float>(big.qv(), big.kv(), big.wv(), 40);
  const std::int32_t* memory = sel.indices().data();

  sa::lightning_top_k<float>(small.qv(), small.kv(), small.wv(), 25, sel, {.num_threads = 2});
  EXPECT_EQ(as_vector(sa::lightning_top_k<float>(small.qv(), small.kv(), small.wv(), 25).indices()), as_vector(sel.indices()));
  EXPECT_EQ(memory, sel.indices().data());  // 120 x 25 entries fit in 2 x 300 x 40
  EXPECT_EQ(120, sel.seq_q());
  EXPECT_EQ(25, sel.k());

  const sa::TokenTopK copy = sel;  // shares the lists
  const std::vector<std::int32_t> copy_lists = as_vector(copy.indices());
  sa::lightning_top_k<float>(other.qv(), other.kv(), other.wv(), 40, sel);
  EXPECT_EQ(as_vector(sa::lightning_top_k<float>(other.qv(), other.kv(), other.wv(), 40).indices()), as_vector(sel.indices()));
  EXPECT_EQ(copy_lists, as_vector(copy.indices()));
  EXPECT_NE(copy.indices().data(), sel.indices().data());
  EXPECT_EQ(copy.selected_pairs(), sa::TokenTopK::from_indices(copy_lists, 1, 1, 120, 25, 200).selected_pairs());

  const std::vector<std::int32_t> before = as_vector(sel.indices());
  EXPECT_THROW(sa::lightning_top_k<float>(other.qv(), other.kv(), other.wv(), 0, sel), std::invalid_argument);
  EXPECT_EQ(before, as_vector(sel.indices()));
  EXPECT_EQ(2, sel.batch());
}

// The exact selection behind every top-k (detail::select_best) on values at the edges of the float
// range -- infinities, the largest finite values, denormals, signed zeros (equal: the smaller key
// wins) -- where a radix bucket's edge can be a NaN bit pattern, against sorting by (score desc, key asc).
template <class T>
void expect_select_best_sorts(std::uint64_t seed) {
  constexpr T kInf = std::numeric_limits<T>::infinity(), kMax = std::numeric_limits<T>::max();
  constexpr T kTiny = std::numeric_limits<T>::denorm_min();
  const T pool[] = {-kInf, -kMax, -kMax / 2, T(-1), -kTiny, T(-0.0), T(0), kTiny, T(1), T(1.5), kMax / 2, kMax, kInf};
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 300; ++trial) {
    const auto n = static_cast<sa::Index>(1 + rng() % 200);
    const auto k = static_cast<sa::Index>(1 + rng() % static_cast<std::uint64_t>(n));
    std::vector<T> scores(static_cast<std::size_t>(n));
    std::vector<std::int32_t> keys(scores.size());
    for (sa::Index t = 0; t < n; ++t) {
      // Mostly the edge values, some spread ones, a few values a unit in the last place apart.
      const auto pick = rng() % 4;
      T x = pool[rng() % std::size(pool)];
      if (pick == 1) x = std::ldexp(T(1) + T(rng() % 1000) / 1000, static_cast<int>(rng() % 200) - 100) * (rng() % 2 ? 1 : -1);
      if (pick == 2 && std::isfinite(x)) x = std::nextafter(x, kInf);
      scores[static_cast<std::size_t>(t)] = x;
      keys[static_cast<std::size_t>(t)] = static_cast<std::int32_t>((t * 7919) % n);  // a permutation: n < 7919
    }
    std::vector<std::pair<T, std::int32_t>> expected;
    for (sa::Index t = 0; t < n; ++t) expected.emplace_back(scores[static_cast<std::size_t>(t)], keys[static_cast<std::size_t>(t)]);
    std::sort(expected.begin(), expected.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    std::vector<T> tmp_scores(scores.size());
    std::vector<std::int32_t> tmp_keys(scores.size());
    const T worst = sa::detail::select_best(scores.data(), keys.data(), n, k, tmp_scores.data(), tmp_keys.data());
    std::vector<std::int32_t> chosen(keys.begin(), keys.begin() + k), want;
    for (sa::Index t = 0; t < k; ++t) want.push_back(expected[static_cast<std::size_t>(t)].second);
    std::sort(chosen.begin(), chosen.end());
    std::sort(want.begin(), want.end());
    ASSERT_EQ(want, chosen) << "trial " << trial << " n " << n << " k " << k;
    EXPECT_EQ(expected[static_cast<std::size_t>(k - 1)].first, worst) << "trial " << trial;
  }
}

TEST(LightningIndexer, ExactSelectionAtTheEdgesOfTheRange) {
  expect_select_best_sorts<float>(41);
  expect_select_best_sorts<double>(42);
}

TEST(LightningIndexer, RejectsBadArguments) {
  const IndexerInputs<float> in(1, 8, 8, 2, 4, 1);
  EXPECT_THROW(sa::lightning_top_k<float>(in.qv(), in.kv(), in.wv(), 0), std::invalid_argument);
  // d_I of the keys differs from the queries'.
  EXPECT_THROW(sa::lightning_top_k<float>(in.qv(), sa::bhsd<const float>(in.k.data(), 1, 1, 4, 8), in.wv(), 2), std::invalid_argument);
  // Two index keys per token.
  EXPECT_THROW(sa::lightning_top_k<float>(in.qv(), sa::bhsd<const float>(in.k.data(), 1, 2, 4, 4), in.wv(), 2), std::invalid_argument);
  // Weights for 3 index heads, queries have 2.
  std::vector<float> w(8 * 3);
  EXPECT_THROW(sa::lightning_top_k<float>(in.qv(), in.kv(), sa::lse_bsh<const float>(w.data(), 1, 8, 3), 2), std::invalid_argument);
  try {
    sa::lightning_top_k<float>(in.qv(), in.kv(), in.wv(), -3);
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("k = -3"), std::string::npos) << e.what();
  }
}

TEST(TokenTopK, FromIndicesSortsAndDropsPadding) {
  const std::vector<std::int32_t> lists = {5, -1, 2, 0,   //
                                           -1, -1, -1, -1,  //
                                           3, 1, -1, 4};
  const sa::TokenTopK s = sa::TokenTopK::from_indices(lists, 1, 1, 3, 4, 6);
  EXPECT_EQ((std::vector<std::int32_t>{0, 2, 5}), std::vector<std::int32_t>(s.keys(0, 0, 0).begin(), s.keys(0, 0, 0).end()));
  EXPECT_TRUE(s.keys(0, 0, 1).empty());
  EXPECT_EQ((std::vector<std::int32_t>{1, 3, 4}), std::vector<std::int32_t>(s.keys(0, 0, 2).begin(), s.keys(0, 0, 2).end()));
  EXPECT_EQ(6, s.selected_pairs());
  EXPECT_EQ((std::vector<std::int32_t>{0, 2, 5, -1, -1, -1, -1, -1, 1, 3, 4, -1}),
            std::vector<std::int32_t>(s.indices().begin(), s.indices().end()));
}

TEST(TokenTopK, RejectsBadLists) {
  EXPECT_THROW(sa::TokenTopK::from_indices(std::vector<std::int32_t>{0, 1, 6}, 1, 1, 1, 3, 6), std::invalid_argument);   // range
  EXPECT_THROW(sa::TokenTopK::from_indices(std::vector<std::int32_t>{0, 1, -2}, 1, 1, 1, 3, 6), std::invalid_argument);  // range
  EXPECT_THROW(sa::TokenTopK::from_indices(std::vector<std::int32_t>{2, 1, 2}, 1, 1, 1, 3, 6), std::invalid_argument);   // repeat
  EXPECT_THROW(sa::TokenTopK::from_indices(std::vector<std::int32_t>{0, 1}, 1, 1, 1, 3, 6), std::invalid_argument);      // shape
  EXPECT_THROW(sa::TokenTopK::from_indices(std::vector<std::int32_t>{}, 1, 1, 1, 0, 6), std::invalid_argument);          // k
  EXPECT_THROW(sa::TokenTopK::from_indices(std::vector<std::int32_t>{}, 1, 0, 1, 1, 6), std::invalid_argument);          // groups
  try {
    sa::TokenTopK::from_indices(std::vector<std::int32_t>{0, 1, 2, 3, 9, 4}, 1, 1, 2, 3, 6);
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("indices[0, 0, 1, 1] = 9"), std::string::npos) << e.what();
  }
}

}  // namespace
