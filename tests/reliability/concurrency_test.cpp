// SPDX-License-Identifier: Apache-2.0
// Determinism and thread safety: the same bits for 1, 2, 3 and 4 threads and across repeated calls,
// for every kind of work the library schedules (per-head layouts, global rows, gathered selections,
// the indexer, its training signal); and several std::threads calling at once on one shared
// BlockLayout, policy and selection give what serial calls give. This executable also runs under
// ThreadSanitizer.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#include "dynamic/dsa_common.hpp"
#include "support/test_support.hpp"

namespace sa = sparse_attention;
using sa::testing::Problem;
using sa::testing::same_bits;
using sa::testing::Shape;

namespace {

// Output and LSE of one call with the given thread count, into fresh buffers.
using Run = std::function<std::pair<std::vector<float>, std::vector<float>>(int threads)>;

void expect_thread_count_invariant(const Run& run, const char* name) {
  const auto one = run(1);
  for (int threads : {2, 3, 4, 1, 2}) {  // and again: repeated calls
    const auto many = run(threads);
    EXPECT_TRUE(same_bits(one.first, many.first)) << name << ": output differs with " << threads << " threads";
    EXPECT_TRUE(same_bits(one.second, many.second)) << name << ": LSE differs with " << threads << " threads";
  }
}

template <class Policy>
Run blocked(const Problem<float>& p, Policy policy, sa::BlockSize block) {
  return [&p, policy, block](int threads) {
    const auto r = sa::testing::run_kernel(p, policy, block, threads);
    return std::make_pair(r.out, r.lse);
  };
}

TEST(Determinism, BlockedKernelAcrossThreadCounts) {
  const Problem<float> p(Shape{2, 4, 2, 300, 300, 32, 24, true}, 3);
  expect_thread_count_invariant(blocked(p, sa::Longformer(16, {0, 77, 299}), {64, 64}), "Longformer");
  expect_thread_count_invariant(blocked(p, sa::BigBird(32, 1, 3, 5), {32, 32}), "BigBird");
  expect_thread_count_invariant(blocked(p, sa::Fixed::sparse_transformer(40, 5, 4, true), {64, 64}), "Fixed");
  expect_thread_count_invariant(blocked(p, sa::Strided(17, false), {16, 64}), "Strided");
  expect_thread_count_invariant(blocked(p, sa::LocalWindow(50, 10) | sa::Longformer(0, {150}), {64, 64}), "Union");
}

TEST(Determinism, SelectionsAcrossThreadCounts) {
  // Token selections from the indexer: both the per-row path (2 heads per KV head) and the lanes
  // path (16 heads over one KV head).
  for (const Shape& shape : {Shape{2, 4, 2, 260, 260, 32, 32, false}, Shape{1, 16, 1, 260, 260, 32, 32, true}}) {
    const Problem<float> p(shape, 5);
    const sa::testing::IndexerInputs<float> index(shape.batch, shape.seq_q, shape.seq_k, 4, 16, 6);
    const sa::TokenTopK reference = sa::lightning_top_k<float>(index.qv(), index.kv(), index.wv(), 37, {.num_threads = 1});
    for (int threads : {2, 3, 4}) {
      const sa::TokenTopK again = sa::lightning_top_k<float>(index.qv(), index.kv(), index.wv(), 37, {.num_threads = threads});
      ASSERT_TRUE(std::equal(reference.indices().begin(), reference.indices().end(), again.indices().begin(),
                             again.indices().end()))
          << threads;
    }
    expect_thread_count_invariant(
        [&](int threads) {
          std::vector<float> out(static_cast<std::size_t>(p.out_size())), lse(static_cast<std::size_t>(p.lse_size()));
          sa::attention<float>(p.qv(), p.kv(), p.vv(), p.out_view(out), reference,
                               {.lse = sa::lse_bhs(lse.data(), shape.batch, shape.q_heads, shape.seq_q), .num_threads = threads});
          return std::make_pair(out, lse);
        },
        "TokenTopK");
  }
  const Problem<float> p(Shape{2, 4, 2, 300, 300, 32, 32, false}, 8);
  const sa::BlockTopK blocks = sa::BlockTopK::select(p.qv(), p.kv(), 3, 32);
  expect_thread_count_invariant(
      [&](int threads) {
        std::vector<float> out(static_cast<std::size_t>(p.out_size())), lse(static_cast<std::size_t>(p.lse_size()));
        sa::attention<float>(p.qv(), p.kv(), p.vv(), p.out_view(out), blocks,
                             {.lse = sa::lse_bhs(lse.data(), 2, 4, 300), .num_threads = threads});
        return std::make_pair(out, lse);
      },
      "BlockTopK");
}

TEST(Determinism, IndexerTrainingSignalAcrossThreadCounts) {
  const Problem<float> main(Shape{1, 4, 2, 90, 90, 16, 16, false}, 9);
  const sa::testing::IndexerInputs<float> index(1, 90, 90, 3, 8, 10);
  const auto one = sa::indexer_kl_loss<float>(main.qv(), main.kv(), index.qv(), index.kv(), index.wv(), {.num_threads = 1});
  for (int threads : {2, 3, 4}) {
    const auto many = sa::indexer_kl_loss<float>(main.qv(), main.kv(), index.qv(), index.kv(), index.wv(), {.num_threads = threads});
    EXPECT_EQ(one.loss, many.loss) << threads;
    EXPECT_TRUE(same_bits(one.grad_q, many.grad_q)) << threads;
    EXPECT_TRUE(same_bits(one.grad_k, many.grad_k)) << threads;
    EXPECT_TRUE(same_bits(one.grad_w, many.grad_w)) << threads;
  }
}

// Four std::threads at once, each calling the kernel several times on one shared layout, policy and
// selection, with its own inputs and outputs (and its own kernel threads): each result equals the
// serial call's, bit for bit.
TEST(ThreadSafety, ConcurrentCallsShareLayoutPolicyAndSelection) {
  const Shape shape{1, 8, 2, 257, 257, 32, 32, false};
  const sa::BigBird policy(32, 1, 2, 11);  // head-dependent: a per-head layout
  const sa::BlockLayout layout = sa::BlockLayout::build(policy, {shape.seq_q, shape.seq_k}, {32, 32}, shape.q_heads);
  const sa::testing::IndexerInputs<float> index(1, 257, 257, 4, 16, 12);
  const sa::TokenTopK selection = sa::lightning_top_k<float>(index.qv(), index.kv(), index.wv(), 40);
  constexpr int kCallers = 4, kCalls = 3;
  std::vector<Problem<float>> problems;
  for (int t = 0; t < kCallers; ++t) problems.emplace_back(shape, 100 + static_cast<std::uint64_t>(t));

  auto call = [&](int t, std::vector<float>& blocked_out, std::vector<float>& gathered_out) {
    const Problem<float>& p = problems[static_cast<std::size_t>(t)];
    blocked_out.assign(static_cast<std::size_t>(p.out_size()), 0.0f);
    gathered_out.assign(blocked_out.size(), 0.0f);
    sa::attention<float>(p.qv(), p.kv(), p.vv(), p.out_view(blocked_out), policy, layout, {.num_threads = 1 + t % 2});
    sa::attention<float>(p.qv(), p.kv(), p.vv(), p.out_view(gathered_out), selection, {.num_threads = 1 + t % 2});
  };
  std::vector<std::vector<float>> serial_blocked(kCallers), serial_gathered(kCallers);
  for (int t = 0; t < kCallers; ++t) call(t, serial_blocked[static_cast<std::size_t>(t)], serial_gathered[static_cast<std::size_t>(t)]);

  std::vector<std::vector<float>> blocked_out(kCallers), gathered_out(kCallers);
  std::vector<int> mismatches(kCallers, 0);
  std::vector<std::thread> callers;
  for (int t = 0; t < kCallers; ++t)
    callers.emplace_back([&, t] {
      const auto i = static_cast<std::size_t>(t);
      for (int c = 0; c < kCalls; ++c) {
        call(t, blocked_out[i], gathered_out[i]);
        if (!same_bits(blocked_out[i], serial_blocked[i]) || !same_bits(gathered_out[i], serial_gathered[i])) ++mismatches[i];
      }
    });
  for (std::thread& c : callers) c.join();
  for (int t = 0; t < kCallers; ++t) EXPECT_EQ(0, mismatches[static_cast<std::size_t>(t)]) << "caller " << t;
}

}  // namespace
