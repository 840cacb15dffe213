// SPDX-License-Identifier: Apache-2.0
// The main job: dense O(n^2) attention against each sparse pattern, all through the same blocked
// kernel, at growing n, plus the naive materialised implementation while it fits. Prints one table:
// time (median of repeated runs), speed-up over the blocked dense kernel at the same n, density
// (allowed pairs / n^2), blocking efficiency (allowed / computed pairs) and GFLOP/s on computed
// pairs (4 * d flops per pair and head).
//
//   sparse_attention_compare [--quick] [--min-n N] [--max-n N] [--heads H] [--dim D] [--threads T]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "bench_patterns.hpp"
#include "sparse_attention/sparse_attention.hpp"

namespace sa = sparse_attention;

namespace {

struct Settings {
  sa::Index max_n = 32768, min_n = 1024, heads = 8, dim = 64;
  sa::Index naive_max_n = 8192;  // the materialised baseline needs n^2 floats
  double budget_seconds = 1.5;   // per measurement: repeat runs while within this (at most 7)
  int threads = 0;
};

// Median wall time of repeated calls, in seconds: at least one run, more while within the budget.
double median_seconds(const std::function<void()>& f, double budget) {
  std::vector<double> times;
  const auto start = std::chrono::steady_clock::now();
  do {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  } while (times.size() < 7 &&
           std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() + times.back() < budget);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  for (int a = 1; a < argc; ++a) {
    const std::string arg = argv[a];
    auto next = [&]() -> sa::Index { return a + 1 < argc ? std::atoll(argv[++a]) : 0; };
    if (arg == "--quick") {
      s.max_n = 2048, s.min_n = 512, s.heads = 2, s.naive_max_n = 2048, s.budget_seconds = 0.05;
    } else if (arg == "--max-n") {
      s.max_n = next();
    } else if (arg == "--min-n") {
      s.min_n = next();
    } else if (arg == "--heads") {
      s.heads = next();
    } else if (arg == "--dim") {
      s.dim = next();
    } else if (arg == "--threads") {
      s.threads = static_cast<int>(next());
    } else {
      std::fprintf(stderr, "usage: %s [--quick] [--min-n N] [--max-n N] [--heads H] [--dim D] [--threads T]\n", argv[0]);
      return 2;
    }
  }
  if (s.min_n > s.max_n) s.min_n = s.max_n;

  std::printf("sparse_attention %d.%d.%d: dense O(n^2) attention against sparse patterns\n",
              SPARSE_ATTENTION_VERSION_MAJOR, SPARSE_ATTENTION_VERSION_MINOR, SPARSE_ATTENTION_VERSION_PATCH);
  std::printf("float, batch 1, %lld heads, head dim %lld, 64 x 64 tiles, threads: %s; time = median of runs;\n"
              "speed-up against the blocked dense kernel at the same n\n\n",
              static_cast<long long>(s.heads), static_cast<long long>(s.dim),
              s.threads > 0 ? std::to_string(s.threads).c_str() : "all");
  std::printf("%8s  %-13s %11s %9s %9s %10s %8s\n", "n", "pattern", "time [ms]", "speed-up", "density",
              "block eff.", "GFLOP/s");

  const std::vector<sa::bench::Pattern> patterns = sa::bench::patterns();
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  for (sa::Index n = s.min_n; n <= s.max_n; n *= 2) {
    const auto elements = static_cast<std::size_t>(s.heads * n * s.dim);
    std::vector<float> q(elements), k(elements), v(elements), o(elements);
    for (auto* x : {&q, &k, &v})
      for (float& e : *x) e = normal(rng);
    const auto in = [&](const std::vector<float>& x) { return sa::bhsd<const float>(x.data(), 1, s.heads, n, s.dim); };
    const auto out = sa::bhsd(o.data(), 1, s.heads, n, s.dim);

    double dense_seconds = 0;
    auto row = [&](const std::string& name, double seconds, double computed_pairs, double density, double efficiency) {
      const double gflops = 4.0 * static_cast<double>(s.dim * s.heads) * computed_pairs / seconds / 1e9;
      std::printf("%8lld  %-13s %11.2f %8.2fx %9.4f %10.3f %8.1f\n", static_cast<long long>(n), name.c_str(),
                  seconds * 1e3, dense_seconds / seconds, density, efficiency, gflops);
      std::fflush(stdout);
    };

    for (const sa::bench::Pattern& p : patterns) {
      if (n > p.max_n || p.name == "dsa") continue;  // DSA: its own table below, in MQA mode
      const sa::bench::Prepared run = p.prepare(n, s.heads);
      const double t = median_seconds([&] { run.run(in(q), in(k), in(v), out, s.threads); }, s.budget_seconds);
      if (p.name == "dense") {
        dense_seconds = t;
        if (n <= s.naive_max_n) {
          sa::bench::NaiveAttention naive_attention;
          naive_attention.reserve(n);
          const double naive = median_seconds(
              [&] { naive_attention(q.data(), k.data(), v.data(), o.data(), s.heads, n, s.dim, s.threads); },
              s.budget_seconds);
          row("naive_dense", naive, static_cast<double>(n) * static_cast<double>(n), 1.0, 1.0);
        }
      }
      row(p.name, t, static_cast<double>(run.computed_pairs), run.density, run.blocking_efficiency);
    }
    std::printf("\n");
  }
  std::printf("naive_dense: the n x n scores materialised in float (Eigen GEMM, row softmax, GEMM), as one\n"
              "writes it by hand; dense: the same O(n^2) work through the blocked kernel in O(n) memory;\n"
              "block_topk: the k = 32 best 64-key blocks per query block, routed on every call.\n\n");

  // DeepSeek Sparse Attention end to end, in MQA mode as DeepSeek runs it (every query head reads the
  // same gathered K/V rows), against causal attention of the same shape.
  const sa::Index mqa_heads = 2 * s.heads;
  std::printf("DSA end to end (lightning indexer 4 x 64, top-k = min(2048, n/4), gathered attention), %lld query\n"
              "heads over 1 KV head, head dim %lld, against causal attention of the same shape:\n\n"
              "%8s %6s %12s %13s %15s %10s %9s\n",
              static_cast<long long>(mqa_heads), static_cast<long long>(s.dim), "n", "k", "causal [ms]", "indexer [ms]",
              "attention [ms]", "speed-up", "density");
  for (sa::Index n = std::max<sa::Index>(s.min_n, 1024); n <= std::min<sa::Index>(s.max_n, 16384); n *= 2) {
    const sa::Index top_k = std::min<sa::Index>(2048, n / 4);
    std::vector<float> q(static_cast<std::size_t>(mqa_heads * n * s.dim)), k(static_cast<std::size_t>(n * s.dim)), v(k.size()),
        o(q.size());
    for (auto* x : {&q, &k, &v})
      for (float& e : *x) e = normal(rng);
    const auto qv = sa::bshd<const float>(q.data(), 1, n, mqa_heads, s.dim);
    const auto kv = sa::bshd<const float>(k.data(), 1, n, 1, s.dim), vv = sa::bshd<const float>(v.data(), 1, n, 1, s.dim);
    const auto ov = sa::bshd(o.data(), 1, n, mqa_heads, s.dim);
    const sa::bench::IndexerInputs indexer(n);
    sa::TokenTopK selection;
    const double causal = median_seconds([&] { sa::attention<float>(qv, kv, vv, ov, sa::Causal{}, {.num_threads = s.threads}); },
                                         s.budget_seconds);
    const double index = median_seconds([&] { indexer.select(selection, n, top_k, s.threads); }, s.budget_seconds);
    const double attend = median_seconds([&] { sa::attention<float>(qv, kv, vv, ov, selection, {.num_threads = s.threads}); },
                                         s.budget_seconds);
    std::printf("%8lld %6lld %12.1f %13.1f %15.1f %9.2fx %9.4f\n", static_cast<long long>(n),
                static_cast<long long>(top_k), causal * 1e3, index * 1e3,
                attend * 1e3, causal / (index + attend),
                static_cast<double>(selection.selected_pairs()) / (static_cast<double>(n) * static_cast<double>(n)));
    std::fflush(stdout);
  }
  return 0;
}
