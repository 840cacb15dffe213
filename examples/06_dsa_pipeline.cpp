// SPDX-License-Identifier: Apache-2.0
// DeepSeek Sparse Attention end to end: the lightning indexer scores every (query, earlier key) pair
// with a few small index heads, each query keeps its top-k keys, and attention runs over exactly those
// keys, gathered (here in MQA mode, as DeepSeek runs it: one K/V head, every query head reading the same
// gathered rows). Prints the selection's density and the time of each stage against dense causal
// attention, and checks the result against the blocked kernel run under the selection as a mask.
#include <sparse_attention/sparse_attention.hpp>

#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

namespace sa = sparse_attention;

int main() {
  const sa::Index n = 4096, heads = 16, kv_heads = 1, dim = 64, k = 512;
  const sa::Index index_heads = 4, index_dim = 32;  // small: the indexer must cost far less than attention
  std::mt19937 rng(6);
  std::normal_distribution<float> normal;
  auto random = [&](sa::Index count) {
    std::vector<float> x(static_cast<std::size_t>(count));
    for (float& e : x) e = normal(rng);
    return x;
  };
  // Model layouts: queries [1, n, heads, dim], keys and values [1, n, kv_heads, dim]; the indexer's
  // qI [1, n, H_I, d_I], kI [1, n, d_I] and weights [1, n, H_I].
  const auto q = random(n * heads * dim), kv = random(n * kv_heads * dim), v = random(n * kv_heads * dim);
  const auto qi = random(n * index_heads * index_dim), ki = random(n * index_dim), w = random(n * index_heads);
  std::vector<float> out(q.size()), check(q.size());
  const auto qv = sa::bshd<const float>(q.data(), 1, n, heads, dim);
  const auto kvv = sa::bshd<const float>(kv.data(), 1, n, kv_heads, dim);
  const auto vv = sa::bshd<const float>(v.data(), 1, n, kv_heads, dim);

  using Clock = std::chrono::steady_clock;
  const auto ms = [](Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); };
  auto t0 = Clock::now();
  const sa::TokenTopK selection = sa::lightning_top_k<float>(sa::bshd<const float>(qi.data(), 1, n, index_heads, index_dim),
                                                             sa::bhsd<const float>(ki.data(), 1, 1, n, index_dim),
                                                             sa::lse_bsh<const float>(w.data(), 1, n, index_heads), k);
  const double index_ms = ms(t0);
  t0 = Clock::now();
  sa::attention<float>(qv, kvv, vv, sa::bshd(out.data(), 1, n, heads, dim), selection);
  const double sparse_ms = ms(t0);
  t0 = Clock::now();
  sa::attention<float>(qv, kvv, vv, sa::bshd(check.data(), 1, n, heads, dim), sa::Causal{});
  const double dense_ms = ms(t0);

  const double causal_pairs = 0.5 * static_cast<double>(n) * static_cast<double>(n + 1);
  std::printf("n = %lld, %lld query heads over %lld KV head, head dim %lld, k = %lld; indexer %lld x %lld\n",
              static_cast<long long>(n), static_cast<long long>(heads), static_cast<long long>(kv_heads),
              static_cast<long long>(dim), static_cast<long long>(k), static_cast<long long>(index_heads),
              static_cast<long long>(index_dim));
  std::printf("selected pairs %lld: %.3f of the causal pairs, %.4f of n^2\n", static_cast<long long>(selection.selected_pairs()),
              static_cast<double>(selection.selected_pairs()) / causal_pairs,
              static_cast<double>(selection.selected_pairs()) / (static_cast<double>(n) * static_cast<double>(n)));
  std::printf("indexer + top-k %8.1f ms\nsparse attention %8.1f ms\nDSA total       %8.1f ms\ndense causal    %8.1f ms  (%.2fx the DSA time)\n",
              index_ms, sparse_ms, index_ms + sparse_ms, dense_ms, dense_ms / (index_ms + sparse_ms));

  // The same selection as a mask on the blocked kernel: an independent path to the same numbers.
  sa::attention<float>(qv, kvv, vv, sa::bshd(check.data(), 1, n, heads, dim), selection.mask(0, heads));
  double error = 0;
  for (std::size_t i = 0; i < out.size(); ++i) error = std::max(error, static_cast<double>(std::abs(out[i] - check[i])));
  std::printf("max |gathered - masked blocked kernel|: %.2e\n", error);
  return error < 1e-5 ? 0 : 1;
}
