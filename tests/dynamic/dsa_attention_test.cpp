// SPDX-License-Identifier: Apache-2.0
// Attention over token selections (gather kernel) and block selections (BlockTopK), against the dense
// oracle under the selection's mask.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "dynamic/dsa_common.hpp"
#include "support/test_support.hpp"

namespace sa = sparse_attention;
using sa::testing::IndexerInputs;
using sa::testing::Problem;
using sa::testing::Shape;

namespace {

// The kernel's output for a selection (TokenTopK or BlockTopK) against the dense oracle under
// mask_of(b) per batch element, with the FlashAttention rule.
template <class T, class Selection, class MaskOf>
::testing::AssertionResult selection_matches_reference(const Problem<T>& p, const Selection& selection, MaskOf&& mask_of) {
  const std::string failure = sa::testing::check_selection_against_reference(p, selection, mask_of);
  if (failure.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << failure;
}

// Both paths of a token selection (gathered rows, and the blocked kernel over the touched tiles).
template <class T>
::testing::AssertionResult gather_matches_reference(const Problem<T>& p, const sa::TokenTopK& selection) {
  for (const sa::SelectionPath path : {sa::SelectionPath::kGather, sa::SelectionPath::kTiles}) {
    const std::string failure = sa::testing::check_selection_against_reference(
        p, selection, [&](sa::Index b) { return selection.mask(b, p.shape.q_heads); }, path);
    if (!failure.empty())
      return ::testing::AssertionFailure() << (path == sa::SelectionPath::kGather ? "gather: " : "tiles: ") << failure;
  }
  return ::testing::AssertionSuccess();
}

template <class T>
class GatherTest : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(GatherTest, Scalars);

TYPED_TEST(GatherTest, IndexerSelectionsMatchReference) {
  using T = TypeParam;
  struct Case {
    Shape shape;
    sa::Index k;
  };
  const Case cases[] = {
      {{1, 16, 1, 300, 300, 32, 32, false}, 40},   // MQA, one gathered tile serves 16 heads
      {{1, 24, 1, 90, 90, 20, 16, true}, 30},      // MQA, 24 heads: two vectors of lanes, one part filled
      {{2, 8, 2, 130, 130, 24, 16, true}, 64},     // GQA, D != Dv, BSHD
      {{1, 4, 4, 97, 97, 16, 16, false}, 1},       // one key per query
      {{1, 6, 3, 40, 200, 16, 8, true}, 70},       // a chunk after a cached prefix
      {{2, 2, 1, 1, 500, 64, 64, false}, 128},     // decode
  };
  std::uint64_t seed = 1;
  for (const Case& c : cases) {
    const Shape& s = c.shape;
    const IndexerInputs<T> in(s.batch, s.seq_q, s.seq_k, 2, 8, seed);
    const Problem<T> p(s, seed++);
    const sa::TokenTopK sel = sa::lightning_top_k<T>(in.qv(), in.kv(), in.wv(), c.k);
    EXPECT_TRUE(gather_matches_reference(p, sel)) << "k " << c.k;
  }
}

// Lists per KV group, in any order, with padding and empty rows (zeros, LSE -inf).
TYPED_TEST(GatherTest, CallerListsPerGroupWithEmptyRows) {
  using T = TypeParam;
  const Shape s{1, 4, 2, 20, 50, 16, 16, false};
  const Problem<T> p(s, 7);
  std::vector<std::int32_t> lists(2 * 20 * 5, -1);
  for (sa::Index g = 0; g < 2; ++g)
    for (sa::Index i = 0; i < 20; ++i)
      for (sa::Index t = 0; t < 5; ++t)
        if ((i + t + g) % 3 != 0 && i != 7) lists[static_cast<std::size_t>((g * 20 + i) * 5 + t)] = static_cast<std::int32_t>((i * 7 + t * 11 + g * 3) % 50);
  const sa::TokenTopK sel = sa::TokenTopK::from_indices(lists, 1, 2, 20, 5, 50);
  EXPECT_TRUE(gather_matches_reference(p, sel));
  for (const sa::SelectionPath path : {sa::SelectionPath::kGather, sa::SelectionPath::kTiles}) {
    std::vector<T> out(static_cast<std::size_t>(p.out_size()), T(7)), lse(static_cast<std::size_t>(p.lse_size()));
    sa::attention<T>(p.qv(), p.kv(), p.vv(), p.out_view(out), sel, {.lse = sa::lse_bhs(lse.data(), 1, 4, 20)}, path);
    for (sa::Index h = 0; h < 4; ++h) {
      EXPECT_EQ(-std::numeric_limits<T>::infinity(), lse[static_cast<std::size_t>(h * 20 + 7)]);
      for (sa::Index c = 0; c < 16; ++c) EXPECT_EQ(T(0), out[static_cast<std::size_t>((h * 20 + 7) * 16 + c)]);
    }
  }
}

// No keys at all (seq_k = 0, K and V empty, every list empty): zeros and LSE -inf, on the lane path
// (MQA) and the row path (MHA), without touching K or V.
TYPED_TEST(GatherTest, NoKeysGiveZeros) {
  using T = TypeParam;
  for (const Shape& s : {Shape{1, 16, 1, 3, 0, 16, 16, true}, Shape{1, 2, 2, 3, 0, 16, 16, true}}) {
    const Problem<T> p(s, 11);
    const sa::TokenTopK sel = sa::TokenTopK::from_indices(std::vector<std::int32_t>(3, -1), 1, 1, 3, 1, 0);
    for (const sa::SelectionPath path : {sa::SelectionPath::kAuto, sa::SelectionPath::kGather, sa::SelectionPath::kTiles}) {
      std::vector<T> out(static_cast<std::size_t>(p.out_size()), T(7)), lse(static_cast<std::size_t>(p.lse_size()), T(7));
      sa::attention<T>(p.qv(), p.kv(), p.vv(), p.out_view(out), sel, {.lse = sa::lse_bhs(lse.data(), 1, s.q_heads, 3)}, path);
      for (const T x : out) EXPECT_EQ(T(0), x) << s.str();
      for (const T x : lse) EXPECT_EQ(-std::numeric_limits<T>::infinity(), x) << s.str();
    }
  }
}

// The tile path over tiles of every kind: sequences that end inside a tile (seq_q, seq_k not multiples
// of 64, Sq != Sk), a query block with no key at all, tiles every row of which selects all 64 keys
// (full: no masking) next to partial ones, lists per KV group (a layout per query head) and batch
// elements with different selections.
TYPED_TEST(GatherTest, TilePathOverTailsEmptyBlocksAndFullTiles) {
  using T = TypeParam;
  const Shape s{2, 6, 3, 150, 221, 24, 16, false};
  const Problem<T> p(s, 41);
  const sa::Index k = 160;
  std::vector<std::int32_t> lists(static_cast<std::size_t>(2 * 3 * 150 * k), -1);
  std::mt19937 rng(42);
  for (sa::Index b = 0; b < 2; ++b)
    for (sa::Index g = 0; g < 3; ++g)
      for (sa::Index i = 0; i < 150; ++i) {
        if (i >= 64 && i < 128 && g == 1) continue;  // query block 1 of group 1: no keys
        std::vector<std::int32_t> keys;
        for (std::int32_t j = 0; j < 221; ++j) {
          const bool full_tile = j < 64 && (b + g) % 2 == 0;     // tile (qb, 0) full for some groups
          const bool tail = j >= 192 && (i + j + b) % 5 == 0;     // the 29-key tail block, partial
          if (full_tile || tail || (rng() % 7 == 0)) keys.push_back(j);
        }
        std::shuffle(keys.begin(), keys.end(), rng);
        keys.resize(std::min<std::size_t>(keys.size(), k));
        std::copy(keys.begin(), keys.end(), lists.begin() + ((b * 3 + g) * 150 + i) * k);
      }
  const sa::TokenTopK sel = sa::TokenTopK::from_indices(lists, 2, 3, 150, k, 221);
  EXPECT_TRUE(gather_matches_reference(p, sel));
  // Shared lists (one group) over the same problem: one layout for every head.
  const IndexerInputs<T> in(2, 150, 221, 2, 8, 43);
  EXPECT_TRUE(gather_matches_reference(p, sa::lightning_top_k<T>(in.qv(), in.kv(), in.wv(), 90)));
}

// Unselected keys in touched tiles never reach the output: NaN and infinite V rows and an infinite K
// row that no query selects leave the tile path's result what it is with finite ones (which the
// oracle checks; its dense product would itself turn 0 x NaN into NaN).
TEST(Gather, TilePathIgnoresNonFiniteUnselectedKeys) {
  const Shape s{1, 4, 4, 100, 100, 16, 16, false};
  const Problem<float> clean(s, 51);
  Problem<float> p = clean;
  std::vector<std::int32_t> lists;
  for (sa::Index i = 0; i < 100; ++i)
    for (std::int32_t j = 0; j < 100; ++j)
      if (j != 10 && j != 70 && j != 75 && j <= i) lists.push_back(j);
      else lists.push_back(-1);
  const sa::TokenTopK sel = sa::TokenTopK::from_indices(lists, 1, 1, 100, 100, 100);
  for (sa::Index h = 0; h < 4; ++h)
    for (sa::Index c = 0; c < 16; ++c) {
      p.v[static_cast<std::size_t>((h * 100 + 10) * 16 + c)] = std::numeric_limits<float>::quiet_NaN();
      p.v[static_cast<std::size_t>((h * 100 + 70) * 16 + c)] = std::numeric_limits<float>::infinity();
      p.k[static_cast<std::size_t>((h * 100 + 75) * 16 + c)] = -std::numeric_limits<float>::infinity();
    }
  std::vector<float> out(static_cast<std::size_t>(p.out_size())), expected(out.size());
  sa::attention<float>(p.qv(), p.kv(), p.vv(), p.out_view(out), sel, {}, sa::SelectionPath::kTiles);
  sa::attention<float>(clean.qv(), clean.kv(), clean.vv(), clean.out_view(expected), sel, {}, sa::SelectionPath::kTiles);
  for (const float x : out) ASSERT_TRUE(std::isfinite(x));
  EXPECT_LT(sa::testing::max_error(out, expected), 1e-6);
  EXPECT_TRUE(gather_matches_reference(clean, sel));
}

// kAuto: tiles for a selection that fills its tiles (every key up to the query: causal, 50-100% of the
// touched tiles' pairs), the gather for one that does not (4 keys per query of 2000), and the gather
// when 16 query heads share each KV head even for the causal selection.
TEST(Gather, AutoPathFollowsTheFill) {
  const auto causal_lists = [](sa::Index n) {
    std::vector<std::int32_t> lists;
    for (sa::Index i = 0; i < n; ++i)
      for (sa::Index j = 0; j < n; ++j) lists.push_back(j <= i ? static_cast<std::int32_t>(j) : -1);
    return sa::TokenTopK::from_indices(lists, 1, 1, n, n, n);
  };
  const sa::TokenTopK causal = causal_lists(300);
  std::vector<std::int32_t> few;
  for (sa::Index i = 0; i < 2000; ++i)
    for (sa::Index t = 0; t < 4; ++t) few.push_back(static_cast<std::int32_t>((i * 37 + t * 500) % 2000));
  const sa::TokenTopK sparse = sa::TokenTopK::from_indices(few, 1, 1, 2000, 4, 2000);
  const auto problem = [](sa::Index n, sa::Index q_heads, sa::Index kv_heads) {
    return sa::detail::Problem{1, q_heads, kv_heads, n, n, 64, 64, 0.125};
  };
  EXPECT_TRUE(sa::detail::selection_prefers_tiles<float>(problem(300, 8, 8), causal));
  EXPECT_TRUE(sa::detail::selection_prefers_tiles<double>(problem(300, 8, 8), causal));
  EXPECT_FALSE(sa::detail::selection_prefers_tiles<float>(problem(2000, 8, 8), sparse));
  EXPECT_FALSE(sa::detail::selection_prefers_tiles<float>(problem(300, 16, 1), causal));
}

// The result on `path` for an indexer's selection of k keys (batch 2, 200 tokens, BSHD) is the same
// bits from 1, 2 and 3 threads.
void expect_bit_identical_across_thread_counts(const Shape& s, sa::Index k, std::uint64_t seed, sa::SelectionPath path) {
  const Problem<float> p(s, seed);
  const IndexerInputs<float> in(2, 200, 200, 2, 8, seed + 1);
  const sa::TokenTopK sel = sa::lightning_top_k<float>(in.qv(), in.kv(), in.wv(), k);
  std::vector<float> one(static_cast<std::size_t>(p.out_size())), many(one.size());
  sa::attention<float>(p.qv(), p.kv(), p.vv(), p.out_view(one), sel, {.num_threads = 1}, path);
  for (int threads : {2, 3}) {
    sa::attention<float>(p.qv(), p.kv(), p.vv(), p.out_view(many), sel, {.num_threads = threads}, path);
    EXPECT_TRUE(sa::testing::same_bits(one, many)) << threads;
  }
}

// The tile path's result does not depend on the thread count either.
TEST(Gather, TilePathBitIdenticalAcrossThreadCounts) {
  expect_bit_identical_across_thread_counts(Shape{2, 8, 2, 200, 200, 32, 32, true}, 60, 61, sa::SelectionPath::kTiles);
}

// With k >= position + 1 every query selects all of its keys: the selection is Causal, and attention
// over it equals causal attention.
TEST(Gather, KAtLeastPositionPlusOneIsCausal) {
  const Shape s{1, 8, 2, 150, 150, 32, 32, false};
  const IndexerInputs<float> in(1, 150, 150, 2, 8, 3);
  const sa::TokenTopK sel = sa::lightning_top_k<float>(in.qv(), in.kv(), in.wv(), 150);
  for (sa::Index t = 0; t < 150; ++t) ASSERT_EQ(static_cast<std::size_t>(t + 1), sel.keys(0, 0, t).size());
  const Problem<float> p(s, 4);
  std::vector<float> a(static_cast<std::size_t>(p.out_size())), b(a.size());
  sa::attention<float>(p.qv(), p.kv(), p.vv(), p.out_view(a), sel);
  sa::attention<float>(p.qv(), p.kv(), p.vv(), p.out_view(b), sa::Causal{});
  EXPECT_LT(sa::testing::max_error(a, b), 2e-6);
  EXPECT_TRUE(gather_matches_reference(p, sel));
}

// A chunk of queries after a cached prefix, and one decoding query, give the rows of one-shot prefill
// bit for bit on the gather path (same keys, same tiles).
TEST(Gather, ChunkedPrefillAndDecodeEqualPrefillRows) {
  constexpr sa::SelectionPath kGather = sa::SelectionPath::kGather;
  const Shape full_shape{1, 4, 1, 120, 120, 16, 16, false};
  const Problem<float> full(full_shape, 9);
  const IndexerInputs<float> in(1, 120, 120, 2, 8, 10);
  const sa::TokenTopK sel = sa::lightning_top_k<float>(in.qv(), in.kv(), in.wv(), 24);
  std::vector<float> prefill(static_cast<std::size_t>(full.out_size()));
  sa::attention<float>(full.qv(), full.kv(), full.vv(), full.out_view(prefill), sel, {}, kGather);
  for (auto [first, n] : {std::pair<sa::Index, sa::Index>{100, 20}, {119, 1}}) {
    const IndexerInputs<float> part = in.chunk(first, n);
    const sa::TokenTopK chunk_sel = sa::lightning_top_k<float>(part.qv(), part.kv(), part.wv(), 24);
    const auto q = sa::TensorView<const float>(full.q.data() + first * 16, {1, 4, n, 16}, {4 * 120 * 16, 120 * 16, 16, 1});
    std::vector<float> out(static_cast<std::size_t>(4 * n * 16));
    sa::attention<float>(q, full.kv(), full.vv(), sa::bhsd(out.data(), 1, 4, n, 16), chunk_sel, {}, kGather);
    for (sa::Index h = 0; h < 4; ++h)
      for (sa::Index t = 0; t < n; ++t)
        EXPECT_EQ(0, std::memcmp(&out[static_cast<std::size_t>((h * n + t) * 16)],
                                 &prefill[static_cast<std::size_t>((h * 120 + first + t) * 16)], 16 * sizeof(float)))
            << "head " << h << " row " << first + t;
  }
}

TEST(Gather, BitIdenticalAcrossThreadCounts) {
  expect_bit_identical_across_thread_counts(Shape{2, 8, 1, 200, 200, 32, 32, true}, 30, 5, sa::SelectionPath::kAuto);
}

// Both gather paths walk the keys in chunks of fixed positions, a block of query tokens at a time. For a
// BSHD problem that crosses chunk and block boundaries: the oracle, then a row's result depends on its
// own list only -- the same bits from any thread count and from a chunk of queries starting at `first`,
// inside a block (bottom-right alignment: the last rows). The gather path pinned: the tile path's
// tiles start at a chunk's first query, so a chunk's rows there match one-shot prefill only to rounding.
template <class T>
void expect_chunk_walk_exact(const Shape& s, sa::Index k, sa::Index first, std::uint64_t seed) {
  SCOPED_TRACE(s.str());
  constexpr sa::SelectionPath kGather = sa::SelectionPath::kGather;
  const Problem<T> p(s, seed);
  const IndexerInputs<T> in(1, s.seq_q, s.seq_k, 2, 8, seed + 1);
  const sa::TokenTopK sel = sa::lightning_top_k<T>(in.qv(), in.kv(), in.wv(), k);
  EXPECT_TRUE(gather_matches_reference(p, sel));

  std::vector<T> full(static_cast<std::size_t>(p.out_size())), again(full.size());
  sa::attention<T>(p.qv(), p.kv(), p.vv(), p.out_view(full), sel, {.num_threads = 1}, kGather);
  for (int threads : {2, 3}) {
    sa::attention<T>(p.qv(), p.kv(), p.vv(), p.out_view(again), sel, {.num_threads = threads}, kGather);
    EXPECT_TRUE(sa::testing::same_bits(full, again)) << threads;
  }
  const sa::Index n = s.seq_q - first;
  const IndexerInputs<T> part = in.chunk(first, n);
  const sa::TokenTopK part_sel = sa::lightning_top_k<T>(part.qv(), part.kv(), part.wv(), k);
  const auto q = sa::bshd<const T>(p.q.data() + first * s.q_heads * s.head_dim, 1, n, s.q_heads, s.head_dim);
  std::vector<T> out(static_cast<std::size_t>(n * s.q_heads * s.value_dim));
  sa::attention<T>(q, p.kv(), p.vv(), sa::bshd(out.data(), 1, n, s.q_heads, s.value_dim), part_sel, {}, kGather);
  EXPECT_EQ(0, std::memcmp(out.data(), full.data() + first * s.q_heads * s.value_dim, out.size() * sizeof(T)));
}

// One KV head per query head goes row by row: chunks of 256 KB of K/V rows (at D = 128, Dv = 64: 320
// keys for float, 128 for double), blocks of at most 1 MB of query rows and at least four per thread
// when there are few heads (so the blocks also differ between thread counts). With k = 150 a block
// selects each key of its range many times over (the chunk's whole range is copied); with k = 3 about
// once (only the keys some row selected are).
TYPED_TEST(GatherTest, RowPathAcrossChunksAndBlocks) {
  expect_chunk_walk_exact<TypeParam>(Shape{1, 2, 2, 700, 700, 128, 64, true}, 150, 400, 21);
  expect_chunk_walk_exact<TypeParam>(Shape{1, 2, 2, 700, 700, 128, 64, true}, 3, 400, 22);
}

// A KV group filling the vector lanes (5 query heads on one KV head) goes token by token, one tile
// engine each: chunks of 512 KB of K/V rows (at D = Dv = 256: 256 keys for float, 128 for double),
// blocks of 2 MB of engine states (~56 tokens here); lists of 100 keys also split into tiles of 64.
TYPED_TEST(GatherTest, LanePathAcrossChunksAndBlocks) {
  expect_chunk_walk_exact<TypeParam>(Shape{1, 5, 1, 300, 300, 256, 256, true}, 100, 130, 23);
}

// K and V whose head dimension is not contiguous ([B, H, D, S] storage) are copied row by row: the
// same result as the contiguous layout, on the lane path (MQA) and on the row path (MHA).
TYPED_TEST(GatherTest, StridedHeadDimension) {
  using T = TypeParam;
  for (const Shape& s : {Shape{1, 16, 1, 90, 90, 32, 24, false}, Shape{1, 3, 3, 90, 90, 32, 24, false}}) {
    const Problem<T> p(s, 31);
    const IndexerInputs<T> in(1, 90, 90, 2, 8, 32);
    const sa::TokenTopK sel = sa::lightning_top_k<T>(in.qv(), in.kv(), in.wv(), 70);
    ASSERT_TRUE(gather_matches_reference(p, sel)) << s.str();
    // [B, H, D, S] copies of K and V, seen as [B, H, S, D] views with stride S along D.
    const auto transposed = [&](const std::vector<T>& x, sa::Index dim) {
      std::vector<T> t(x.size());
      for (sa::Index h = 0; h < s.kv_heads; ++h)
        for (sa::Index j = 0; j < 90; ++j)
          for (sa::Index c = 0; c < dim; ++c)
            t[static_cast<std::size_t>((h * dim + c) * 90 + j)] = x[static_cast<std::size_t>((h * 90 + j) * dim + c)];
      return t;
    };
    const std::vector<T> kt = transposed(p.k, 32), vt = transposed(p.v, 24);
    const sa::TensorView<const T> k(kt.data(), {1, s.kv_heads, 90, 32}, {s.kv_heads * 32 * 90, 32 * 90, 1, 90});
    const sa::TensorView<const T> v(vt.data(), {1, s.kv_heads, 90, 24}, {s.kv_heads * 24 * 90, 24 * 90, 1, 90});
    std::vector<T> contiguous(static_cast<std::size_t>(p.out_size())), strided(contiguous.size());
    sa::attention<T>(p.qv(), p.kv(), p.vv(), p.out_view(contiguous), sel);
    sa::attention<T>(p.qv(), k, v, p.out_view(strided), sel);
    EXPECT_TRUE(sa::testing::same_bits(contiguous, strided)) << s.str();
  }
}

TEST(Gather, RejectsMismatchedSelections) {
  const Problem<float> p(Shape{1, 4, 2, 10, 10, 8, 8, false}, 1);
  std::vector<float> out(static_cast<std::size_t>(p.out_size()));
  const std::vector<std::int32_t> one_row(10 * 2, 0);
  const auto attend = [&](const sa::TokenTopK& s) { sa::attention<float>(p.qv(), p.kv(), p.vv(), p.out_view(out), s); };
  EXPECT_THROW(attend(sa::TokenTopK::from_indices(one_row, 1, 1, 10, 2, 11)), std::invalid_argument);  // seq_k
  EXPECT_THROW(attend(sa::TokenTopK::from_indices(one_row, 2, 1, 5, 2, 10)), std::invalid_argument);   // batch
  EXPECT_THROW(attend(sa::TokenTopK::from_indices(std::vector<std::int32_t>(30, 0), 1, 3, 10, 1, 10)),
               std::invalid_argument);  // 3 groups for 2 KV heads
  EXPECT_NO_THROW(attend(sa::TokenTopK::from_indices(std::vector<std::int32_t>(20, 0), 1, 2, 10, 1, 10)));
}

// BlockTopK: block scores by mean-pooled queries and keys, the diagonal block always kept.
TEST(BlockTopK, SelectsTheBestCausalBlocks) {
  // Query blocks hold the queries of this call only: all of them, a chunk after 48 cached keys (block 1
  // partly, block 0 not at all), and one decode query.
  for (const sa::Index seq_q : {256, 208, 1}) {
    const Shape s{1, 2, 1, seq_q, 256, 16, 16, false};
    const Problem<double> p(s, 8);
    const sa::Index block = 32, k = 3, nb = 8, offset = 256 - seq_q;
    const sa::BlockTopK sel = sa::BlockTopK::select(p.qv(), p.kv(), k, block);
    const sa::BlockMask& mask = sel.mask(0);
    for (sa::Index h = 0; h < 2; ++h)
      for (sa::Index qb = offset / block; qb < nb; ++qb) {
        // Reference: scores of the blocks before qb, best k - 1 (ties to the smaller block), plus qb.
        const sa::Index first = std::max(qb * block, offset), last = (qb + 1) * block;
        std::vector<std::pair<double, sa::Index>> scored;
        for (sa::Index kb = 0; kb < qb; ++kb) {
          double score = 0;
          for (sa::Index c = 0; c < 16; ++c) {
            double qm = 0, km = 0;
            for (sa::Index t = first; t < last; ++t) qm += p.qv()(0, h, t - offset, c);
            for (sa::Index t = 0; t < block; ++t) km += p.kv()(0, 0, kb * block + t, c);
            score += qm * km / block;
          }
          scored.push_back({-score, kb});
        }
        std::sort(scored.begin(), scored.end());
        std::vector<sa::Index> expected{qb};
        for (std::size_t t = 0; t < std::min<std::size_t>(k - 1, scored.size()); ++t) expected.push_back(scored[t].second);
        std::sort(expected.begin(), expected.end());
        std::vector<sa::Index> got;
        for (sa::Index kb = 0; kb < nb; ++kb)
          if (mask.allowed({seq_q, 256}, last - 1 - offset, kb * block, h)) got.push_back(kb);
        EXPECT_EQ(expected, got) << "Sq " << seq_q << " head " << h << " query block " << qb;
      }
  }
}

TYPED_TEST(GatherTest, BlockTopKAttentionMatchesReference) {
  using T = TypeParam;
  // One-shot prefill, a chunk after a cached prefix, and decode (one query after 200 cached keys).
  for (const Shape& s : {Shape{2, 4, 2, 200, 200, 24, 16, false}, Shape{1, 4, 1, 70, 200, 16, 16, true},
                         Shape{2, 4, 2, 1, 200, 16, 16, false}}) {
    const Problem<T> p(s, 12);
    const sa::BlockTopK sel = sa::BlockTopK::select(p.qv(), p.kv(), 3, 32);
    EXPECT_TRUE(selection_matches_reference(p, sel, [&](sa::Index b) -> const sa::BlockMask& { return sel.mask(b); }));
  }
}

// Heads are routed in parallel: the selection must not depend on the thread count (GQA, a cached
// prefix, a tail block, more heads than threads).
TEST(BlockTopK, SelectionIndependentOfThreads) {
  const Problem<float> p(Shape{2, 6, 3, 150, 190, 16, 16, false}, 21);
  const sa::BlockTopK one = sa::BlockTopK::select(p.qv(), p.kv(), 4, 32, {.num_threads = 1});
  for (int threads : {2, 4}) {
    const sa::BlockTopK many = sa::BlockTopK::select(p.qv(), p.kv(), 4, 32, {.num_threads = threads});
    for (sa::Index b = 0; b < 2; ++b)
      for (sa::Index h = 0; h < 6; ++h)
        for (sa::Index i = 0; i < 150; ++i)
          for (sa::Index j0 = 0; j0 < 190; j0 += 64)
            ASSERT_EQ(one.mask(b).key_mask({150, 190}, i, h, j0), many.mask(b).key_mask({150, 190}, i, h, j0))
                << threads << " threads, batch " << b << " head " << h << " query " << i << " keys from " << j0;
  }
}

TEST(BlockTopK, KCoveringEveryBlockIsCausal) {
  const Problem<float> p(Shape{1, 2, 2, 100, 100, 8, 8, false}, 3);
  const sa::BlockTopK sel = sa::BlockTopK::select(p.qv(), p.kv(), 10, 16);
  for (sa::Index i = 0; i < 100; ++i)
    for (sa::Index j = 0; j < 100; ++j)
      for (sa::Index h = 0; h < 2; ++h) ASSERT_EQ(j <= i, sel.mask(0).allowed({100, 100}, i, j, h)) << i << " " << j;
  EXPECT_THROW(sa::BlockTopK::select(p.qv(), p.kv(), 0, 16), std::invalid_argument);
  EXPECT_THROW(sa::BlockTopK::select(p.qv(), p.kv(), 2, 0), std::invalid_argument);
}

}  // namespace
