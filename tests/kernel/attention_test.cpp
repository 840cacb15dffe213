// SPDX-License-Identifier: Apache-2.0
// The blocked kernel against the dense oracle over the grid of policies, block sizes, lengths,
// Sq != Sk, GQA and memory layouts, in float and double.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>

#include "support/test_support.hpp"

namespace sa = sparse_attention;
using sa::testing::Problem;
using sa::testing::Shape;

namespace {

template <class F>
void for_each_core_policy(F&& f) {
  f(sa::Dense{}, "Dense");
  f(sa::Causal{}, "Causal");
  f(sa::LocalWindow(3, 0), "LocalWindow(3,0)");
  f(sa::LocalWindow(0, 0), "LocalWindow(0,0)");
  f(sa::LocalWindow(5, 7), "LocalWindow(5,7)");
  f(sa::LocalWindow(-1, 2), "LocalWindow(-1,2)");
  f(sa::LocalWindow(10, -1), "LocalWindow(10,-1)");
  f(sa::LocalWindow(0, 40), "LocalWindow(0,40)");
  f(sa::LocalWindow::causal(17), "causal(17)");
  f(sa::LocalWindow::symmetric(64), "symmetric(64)");
}

// {48, 33}: query blocks of 3 (float) or 6 (double) vectors, softmax chunks of 2 + 1 or 4 + 2.
const sa::BlockSize kBlocks[] = {{16, 16}, {64, 64}, {128, 128}, {32, 48}, {64, 16}, {1, 7}, {48, 33}};

// One problem shape and the tiles it runs with.
struct Case {
  Shape shape;
  sa::BlockSize block;
};

template <class T>
class AttentionTest : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(AttentionTest, Scalars);

// Every policy x every block size x every pair of lengths from {1, 2, 5, 63, 64, 65, 97}.
TYPED_TEST(AttentionTest, MatchesReferenceOverPoliciesBlocksAndLengths) {
  using T = TypeParam;
  const sa::Index lengths[] = {1, 2, 5, 63, 64, 65, 97};
  std::uint64_t seed = 1;
  for (sa::Index seq_q : lengths) {
    for (sa::Index seq_k : lengths) {
      Shape s;
      s.seq_q = seq_q;
      s.seq_k = seq_k;
      s.head_dim = 16;
      s.value_dim = 16;
      const Problem<T> p(s, seed++);
      for_each_core_policy([&](const auto& policy, const char* name) {
        for (const sa::BlockSize& block : kBlocks) {
          SCOPED_TRACE(name);
          EXPECT_TRUE(sa::testing::matches_reference(p, policy, block));
        }
      });
    }
  }
}

// Long rows, GQA / MQA, D != Dv, both memory layouts, several batches.
TYPED_TEST(AttentionTest, MatchesReferenceWithGqaLayoutsAndLongRows) {
  using T = TypeParam;
  const Case cases[] = {
      {{1, 2, 2, 1000, 1000, 64, 64, false}, {64, 64}},
      {{2, 4, 2, 97, 97, 40, 24, true}, {16, 32}},
      {{1, 8, 1, 65, 130, 32, 48, false}, {64, 64}},    // MQA, chunk after a cached prefix
      {{1, 6, 3, 130, 65, 8, 8, true}, {32, 16}},       // Sq > Sk: leading rows may be empty
      {{3, 2, 1, 5, 1000, 16, 72, false}, {64, 128}},   // a few queries over a long cache
      {{1, 2, 1, 1, 1000, 64, 64, true}, {64, 64}},     // decode: one query over a cache
      {{1, 2, 2, 1000, 1, 8, 8, false}, {128, 128}},    // one key
      // [B, S, H, D] rows a multiple of 4 KB apart: K and V tiles are copied before their steps
      {{1, 16, 8, 130, 200, 128, 128, true}, {64, 64}},
      {{1, 4, 4, 97, 97, 256, 64, true}, {32, 48}},    // K copied, V (256 elements apart) read in place
      {{1, 4, 4, 60, 97, 256, 64, true}, {64, 48}},    // one query block: K copied, V read in place
  };
  std::uint64_t seed = 100;
  for (const Case& c : cases) {
    const Problem<T> p(c.shape, seed++);
    for_each_core_policy([&](const auto& policy, const char* name) {
      SCOPED_TRACE(name);
      EXPECT_TRUE(sa::testing::matches_reference(p, policy, c.block));
    });
  }
}

// [B, S, H, D] rows that are not contiguous are copied contiguous and kept in a per-thread cache of
// slots, no more over all threads than there are tiles: with 4 threads and 2 KV heads of 16 tiles, 8
// slots per thread, so tiles evict each other (kb and kb + 8). Every thread count, the same bits.
TYPED_TEST(AttentionTest, MatchesReferenceWhenCopiedTilesEvictEachOther) {
  using T = TypeParam;
  const Problem<T> p(Shape{1, 4, 2, 1000, 1000, 32, 24, true}, 13);
  for_each_core_policy([&](const auto& policy, const char* name) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(sa::testing::matches_reference(p, policy, {64, 64}, 4));
    const auto one = sa::testing::run_kernel(p, policy, {64, 64}, 1);
    const auto four = sa::testing::run_kernel(p, policy, {64, 64}, 4);
    EXPECT_TRUE(sa::testing::same_bits(one.out, four.out));
  });
  // Tiles of 16 keys: 63 per head, but a window's rows span a few, so a thread keeps 16 slots (twice
  // the longest row, at least 16) and kb, kb + 16, kb + 32 share one even on a single thread.
  const Problem<T> narrow(Shape{1, 2, 2, 1000, 1000, 16, 16, true}, 14);
  for (const auto& window : {sa::LocalWindow(3, 0), sa::LocalWindow(40, 20), sa::LocalWindow::causal(100)})
    for (int threads : {1, 2}) EXPECT_TRUE(sa::testing::matches_reference(narrow, window, {16, 16}, threads));
}

// V tiles that serve many query blocks are copied transposed (BlockedAttention::transposes_v): value
// dims that are not a multiple of the 16 x 16 register transpose, tail key tiles, GQA, both memory
// layouts, masked and full tiles. Dense and causal rows take that path in every case here (checked,
// so a changed threshold cannot silently drop the coverage); the windows may or may not.
TYPED_TEST(AttentionTest, MatchesReferenceWithTransposedValueTiles) {
  using T = TypeParam;
  const Case cases[] = {
      {{1, 2, 2, 1100, 1100, 64, 64, false}, {32, 64}},  // 35 query blocks, 18 tiles (the last of 12 keys)
      {{1, 2, 1, 300, 301, 24, 20, true}, {16, 48}},     // Dv = 20: one 16 x 16 block and a tail of 4
      {{2, 4, 2, 200, 97, 16, 33, false}, {4, 32}},      // Dv = 33, Sq > Sk, GQA
      {{1, 2, 2, 250, 250, 32, 128, true}, {8, 64}},     // [B, S, H, D]: V rows 1 KB apart
  };
  std::uint64_t seed = 300;
  for (const Case& c : cases) {
    const Problem<T> p(c.shape, seed++);
    SCOPED_TRACE(c.shape.str());
    const sa::Index group = c.shape.q_heads / c.shape.kv_heads;
    const auto takes_columns = [&](const auto& policy) {
      using Policy = std::decay_t<decltype(policy)>;
      const auto layout = sa::BlockLayout::build(policy, {c.shape.seq_q, c.shape.seq_k}, c.block, c.shape.q_heads);
      return sa::detail::BlockedAttention<T, Policy>::transposes_v(layout, group);
    };
    EXPECT_EQ(takes_columns(sa::Dense{}), sa::detail::TileEngine<T>::kTakesValueColumns);
    EXPECT_EQ(takes_columns(sa::Causal{}), sa::detail::TileEngine<T>::kTakesValueColumns);
    for_each_core_policy([&](const auto& policy, const char* name) {
      SCOPED_TRACE(name);
      EXPECT_TRUE(sa::testing::matches_reference(p, policy, c.block));
    });
  }
}

// Scores of magnitude ~1e2 after scaling: the online softmax's rescaling is exercised on every tile.
TYPED_TEST(AttentionTest, MatchesReferenceWithLargeScores) {
  using T = TypeParam;
  Shape s{1, 2, 1, 200, 300, 32, 16, false};
  const Problem<T> p(s, 7, /*magnitude=*/6.0);
  for_each_core_policy([&](const auto& policy, const char* name) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(sa::testing::matches_reference(p, policy, {64, 64}));
  });
}

// The same bits for every thread count.
TYPED_TEST(AttentionTest, BitIdenticalAcrossThreadCounts) {
  using T = TypeParam;
  const Problem<T> p(Shape{2, 4, 2, 300, 300, 32, 32, true}, 11);
  for_each_core_policy([&](const auto& policy, const char* name) {
    SCOPED_TRACE(name);
    const auto one = sa::testing::run_kernel(p, policy, {64, 64}, 1);
    for (int threads : {2, 3, 4}) {
      const auto many = sa::testing::run_kernel(p, policy, {64, 64}, threads);
      EXPECT_TRUE(sa::testing::same_bits(one.out, many.out)) << threads;
      EXPECT_TRUE(sa::testing::same_bits(one.lse, many.lse)) << threads;
    }
    const auto again = sa::testing::run_kernel(p, policy, {64, 64}, 2);
    EXPECT_TRUE(sa::testing::same_bits(one.out, again.out));
  });
}

// Views with a head-dimension stride other than 1 (a column-major Eigen matrix) give the same
// result as the contiguous copy.
TEST(Attention, AcceptsNonUnitInnerStrides) {
  const sa::Index n = 70, d = 12;
  Eigen::MatrixXf q = Eigen::MatrixXf::Random(n, d), k = Eigen::MatrixXf::Random(n, d),
                  v = Eigen::MatrixXf::Random(n, d);  // column-major: stride along dim is n
  using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  RowMajor qr = q, kr = k, vr = v, out_row(n, d);
  Eigen::MatrixXf out_col(n, d);
  const sa::Causal policy;
  sa::attention<float>(sa::head_view(q), sa::head_view(k), sa::head_view(v), sa::head_view(out_col), policy);
  sa::attention<float>(sa::head_view(qr), sa::head_view(kr), sa::head_view(vr), sa::head_view(out_row), policy);
  EXPECT_EQ(0.0f, (out_col - out_row).cwiseAbs().maxCoeff());
}

constexpr int defined_simd_width() {
#if defined(__AVX512F__)
  return 64;
#else
  return 32;
#endif
}

// The portable build (SPARSE_ATTENTION_PORTABLE_KERNEL) really runs the Eigen engine; the others the
// vector width the compiler targets.
TEST(Attention, UsesTheExpectedTileEngine) {
#if defined(SPARSE_ATTENTION_PORTABLE_KERNEL)
  EXPECT_TRUE((std::is_same_v<sa::detail::TileEngine<float>, sa::detail::EigenEngine<float>>));
#elif defined(__AVX2__) && defined(__FMA__)
  EXPECT_TRUE((std::is_same_v<sa::detail::TileEngine<float>, sa::detail::SimdEngine<float>>));
  EXPECT_EQ(defined_simd_width(), SPARSE_ATTENTION_SIMD_WIDTH);
#endif
}

// A negative or zero scale is legal: scores are multiplied by it before the softmax.
TYPED_TEST(AttentionTest, NegativeAndZeroScales) {
  using T = TypeParam;
  const Problem<T> p(Shape{1, 2, 1, 70, 90, 16, 8, false}, 5);
  for (double scale : {-0.3, 0.0, 1e-3}) {
    std::vector<T> out(static_cast<std::size_t>(p.out_size())), lse(static_cast<std::size_t>(p.lse_size()));
    std::vector<sa::testing::OracleType<T>> ref(out.size()), ref_lse(lse.size());
    sa::attention<T>(p.qv(), p.kv(), p.vv(), p.out_view(out), sa::Causal{},
                     {.scale = scale, .lse = sa::lse_bhs(lse.data(), 1, 2, 70)});
    sa::reference::dense_attention<sa::testing::OracleType<T>>(
        p.qv(), p.kv(), p.vv(), p.out_view(ref), sa::Causal{},
        {.scale = scale, .lse = sa::lse_bhs(ref_lse.data(), 1, 2, 70)});
    EXPECT_LT(sa::testing::max_error(out, ref), 1e3 * std::numeric_limits<T>::epsilon()) << scale;
    EXPECT_LT(sa::testing::max_error(lse, ref_lse), 1e3 * std::numeric_limits<T>::epsilon()) << scale;
  }
}

// Many narrow key tiles per row: the online softmax's rescaling must not add a bias per tile. (A fused
// m_old * c - round(m_new * c) is the rounding error of m * c, not 0, when the maximum does not grow;
// over 1000 tiles it once grew the error to ~100x the naive one.)
TYPED_TEST(AttentionTest, NarrowKeyTilesAddNoErrorPerTile) {
  using T = TypeParam;
  const Problem<T> p(Shape{1, 2, 1, 40, 1000, 24, 16, false}, 21);
  for (sa::Index kv : {1, 3, 8})
    for (sa::Index q : {1, 64}) {
      EXPECT_TRUE(sa::testing::matches_reference(p, sa::Dense{}, {q, kv}));
      EXPECT_TRUE(sa::testing::matches_reference(p, sa::LocalWindow(300, 0), {q, kv}));
    }
}

// A NaN or Inf in one row of Q, K or V reaches only the outputs that depend on it: the query's own row
// (Q), the rows whose allowed keys include it (K, V). Every other output is bit-identical to the clean
// run, even where the poisoned key shares a computed tile with queries that do not attend to it, and in
// the other batch, whose V tiles at the same position are finite (a tile's finiteness is remembered
// per batch, KV head and key block).
TYPED_TEST(AttentionTest, NonFiniteInputsReachOnlyTheRowsThatUseThem) {
  using T = TypeParam;
  const Shape shape{2, 4, 2, 150, 150, 16, 16, false};
  const Problem<T> clean(shape, 31);
  // Batch 1, row 70 of K / V head 1 (query heads 2, 3), or of Q head 1.
  const sa::Index batch = 1, poisoned = 70, head = 1;
  auto check = [&](const auto& policy, const char* name, sa::BlockSize block = {32, 32}) {
    const auto reference = sa::testing::run_kernel(clean, policy, block);
    for (int tensor = 0; tensor < 3; ++tensor)
      for (T bad : {std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity()}) {
        Problem<T> p = clean;
        std::vector<T>& x = tensor == 0 ? p.q : tensor == 1 ? p.k : p.v;
        const sa::Index dim = tensor == 2 ? shape.value_dim : shape.head_dim;
        const sa::Index heads = tensor == 0 ? shape.q_heads : shape.kv_heads;
        const sa::Index len = tensor == 0 ? shape.seq_q : shape.seq_k;
        x[static_cast<std::size_t>(((batch * heads + head) * len + poisoned) * dim + 5)] = bad;
        const auto r = sa::testing::run_kernel(p, policy, block);
        for (sa::Index b = 0; b < shape.batch; ++b)
          for (sa::Index h = 0; h < shape.q_heads; ++h)
            for (sa::Index i = 0; i < shape.seq_q; ++i) {
              const bool uses =
                  b == batch && (tensor == 0 ? (h == head && i == poisoned)
                                             : (h / 2 == head && policy.allowed({shape.seq_q, shape.seq_k}, i, poisoned, h)));
              if (uses) continue;
              const auto row = static_cast<std::size_t>((b * shape.q_heads + h) * shape.seq_q + i);
              ASSERT_EQ(0, std::memcmp(&reference.out[row * 16], &r.out[row * 16], 16 * sizeof(T)))
                  << name << " tensor " << tensor << " value " << bad << " batch " << b << " head " << h << " row " << i;
              ASSERT_EQ(0, std::memcmp(&reference.lse[row], &r.lse[row], sizeof(T))) << name << " row " << i;
            }
      }
  };
  check(sa::LocalWindow(5, 0), "LocalWindow(5, 0)");
  check(sa::LocalWindow(20, 3), "LocalWindow(20, 3)");
  check(sa::Causal{}, "Causal");
  // Query blocks of 8: 11 per key tile on average, 22 with the two query heads of a KV head, so the
  // V tiles are copied transposed and the masked steps skip zero probabilities in that product too.
  const sa::Causal causal;
  const auto layout = sa::BlockLayout::build(causal, {shape.seq_q, shape.seq_k}, {8, 32}, shape.q_heads);
  EXPECT_EQ((sa::detail::BlockedAttention<T, sa::Causal>::transposes_v(layout, 2)),
            sa::detail::TileEngine<T>::kTakesValueColumns);
  check(causal, "Causal, blocks of 8 x 32", {8, 32});
}

// Rows with no allowed key output exactly 0 and LSE -inf, never NaN.
TEST(Attention, EmptyRowsAreZeroWithMinusInfinityLse) {
  // Causal with Sq > Sk: the first Sq - Sk rows see no key.
  const Problem<float> p(Shape{1, 1, 1, 10, 4, 8, 8, false}, 3);
  const auto r = sa::testing::run_kernel(p, sa::Causal{}, {4, 4});
  for (sa::Index i = 0; i < 10; ++i) {
    const bool empty = i < 6;
    EXPECT_EQ(empty, std::isinf(r.lse[static_cast<std::size_t>(i)])) << i;
    for (sa::Index c = 0; c < 8; ++c) {
      const float x = r.out[static_cast<std::size_t>(i * 8 + c)];
      EXPECT_FALSE(std::isnan(x));
      if (empty) {
        EXPECT_EQ(0.0f, x) << i;
      }
    }
  }
  // No key at all.
  const Problem<double> none(Shape{1, 2, 1, 5, 0, 4, 4, false}, 4);
  const auto z = sa::testing::run_kernel(none, sa::Dense{}, {64, 64});
  for (double x : z.out) EXPECT_EQ(0.0, x);
  for (double x : z.lse) EXPECT_EQ(-std::numeric_limits<double>::infinity(), x);
}

// LSE by hand: two keys with scores a and b give log(e^a + e^b).
TEST(Attention, LseIsNaturalLogSumExpOfScaledScores) {
  std::vector<double> q = {1.0, 2.0}, k = {0.5, 0.0, -1.0, 3.0}, v = {1.0, 0.0, 0.0, 1.0};
  std::vector<double> out(2), lse(1);
  const double scale = 0.7;
  sa::AttentionOptions<double> options{.scale = scale, .lse = sa::lse_bhs(lse.data(), 1, 1, 1)};
  sa::attention<double>(sa::bhsd<const double>(q.data(), 1, 1, 1, 2), sa::bhsd<const double>(k.data(), 1, 1, 2, 2),
                        sa::bhsd<const double>(v.data(), 1, 1, 2, 2), sa::bhsd(out.data(), 1, 1, 1, 2),
                        sa::Dense{}, options);
  const double a = scale * (1.0 * 0.5 + 2.0 * 0.0), b = scale * (1.0 * -1.0 + 2.0 * 3.0);
  EXPECT_NEAR(std::log(std::exp(a) + std::exp(b)), lse[0], 1e-14);
  EXPECT_NEAR(std::exp(a) / (std::exp(a) + std::exp(b)), out[0], 1e-14);
  EXPECT_NEAR(std::exp(b) / (std::exp(a) + std::exp(b)), out[1], 1e-14);
}

// One layout, shared by calls of different batch sizes and by calls from several threads.
TEST(Attention, LayoutIsReusableAcrossCalls) {
  const sa::LocalWindow policy = sa::LocalWindow::causal(33);
  const sa::BlockLayout layout = sa::BlockLayout::build(policy, {150, 150}, {32, 32});
  for (sa::Index batch : {1, 3}) {
    const Problem<float> p(Shape{batch, 2, 1, 150, 150, 16, 16, false}, static_cast<std::uint64_t>(batch));
    std::vector<float> a(static_cast<std::size_t>(p.out_size())), b(a.size());
    sa::attention<float>(p.qv(), p.kv(), p.vv(), p.out_view(a), policy, layout);
    sa::attention<float>(p.qv(), p.kv(), p.vv(), p.out_view(b), policy, sa::AttentionOptions<float>{}, {32, 32});
    EXPECT_EQ(a, b);
  }
}

}  // namespace
