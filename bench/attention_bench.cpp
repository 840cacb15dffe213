// SPDX-License-Identifier: Apache-2.0
// Google Benchmark suite: every pattern through the blocked kernel, the naive materialised O(n^2)
// baseline, and three ceilings of this machine measured in the same run.
//
//   attention/<pattern>/n:<n>/d:<d>/omp:<threads>   8 heads, float, batch 1, 64 x 64 tiles
//   bshd/<pattern>/n:<n>/d:<d>/omp:<threads>        the same in the [B, S, H, D] layout of model code
//                                                   (causal and local at n = 8192): rows H * D apart
//   ceiling/fma/omp:<threads>                       a tight FMA loop: the machine's peak
//   ceiling/gemm/omp:<threads>                      Eigen float GEMM 1024^3
//   ceiling/l2/omp:<threads>                        reads of a 256 KB buffer per thread: L2 bandwidth (gbps)
//   scaling/<pattern>/d:64/omp:2                    time(131072) / time(16384) of local, longformer and
//                                                   bigbird from alternating calls (counter ratio)
//   dsa/<part>/n:<n>/hkv:<kv heads>/omp:<threads>   DeepSeek Sparse Attention at DeepSeek's shape:
//       16 query heads, d = 128, k = 2048, indexer H_I = 4 x d_I = 64. Parts: indexer (scores +
//       streaming top-k), indexer_k1 (the same with k = 1: the scores alone, nearly), attention (over a
//       prepared selection, the path kAuto picks; counter tiles = 1 for the tile path),
//       attention_gather and attention_tiles (each path forced), end_to_end (indexer + attention),
//       causal (the same shape through the blocked kernel, the O(n^2) baseline it replaces)
//
// Counters: gflops (4 * d * computed pairs * heads / time), density (allowed / n^2),
// computed_pairs and allowed_pairs (per head); dsa/attention* on the gather path also kv_gbps (GB of
// K and V rows read per second). Run with --benchmark_format=json; use --benchmark_filter to pick
// rows and --benchmark_repetitions for medians.
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "bench_patterns.hpp"
#include "sparse_attention/sparse_attention.hpp"

namespace sa = sparse_attention;

namespace {

constexpr sa::Index kHeads = 8;

struct Inputs {
  std::vector<float> q, k, v, o;
  explicit Inputs(sa::Index n, sa::Index d) {
    std::mt19937 rng(7);
    std::normal_distribution<float> normal;
    const auto size = static_cast<std::size_t>(kHeads * n * d);
    for (auto* x : {&q, &k, &v}) {
      x->resize(size);
      for (float& e : *x) e = normal(rng);
    }
    o.resize(size);
  }
};

// Times f() per iteration with a steady clock (OpenMP threads make per-thread CPU time meaningless)
// and returns the total wall time. One untimed call comes first: the first call after the inputs are
// written took 1.07-1.10x the time of the next ones (local and Longformer at n = 16384 and 131072,
// Zen 5), and a row whose call is longer than the minimum time (n = 131072) runs one iteration per
// repetition, so it timed only that call while short rows averaged it away (local's time(131072) /
// time(16384) read 9.1 in a run without the untimed call, 8.4 and 8.7 in two runs with it).
double timed_loop(benchmark::State& state, const std::function<void()>& f) {
  f();
  double total = 0;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    f();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    state.SetIterationTime(seconds);
    total += seconds;
  }
  return total;
}

void set_gflops(benchmark::State& state, double flops_per_iteration, double seconds) {
  state.counters["gflops"] = flops_per_iteration * static_cast<double>(state.iterations()) / seconds / 1e9;
}

void set_counters(benchmark::State& state, double flops_per_iteration, double seconds, double density,
                  double computed, double allowed) {
  set_gflops(state, flops_per_iteration, seconds);
  state.counters["density"] = density;
  state.counters["computed_pairs"] = computed;
  state.counters["allowed_pairs"] = allowed;
}

void register_pattern(const sa::bench::Pattern& pattern, sa::Index n, sa::Index d, int threads, bool bshd = false) {
  const std::string name = (bshd ? "bshd/" : "attention/") + pattern.name + "/n:" + std::to_string(n) + "/d:" +
                           std::to_string(d) + "/omp:" + std::to_string(threads);
  benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
    Inputs in(n, d);
    const auto view = [&](auto* data) { return bshd ? sa::bshd(data, 1, n, kHeads, d) : sa::bhsd(data, 1, kHeads, n, d); };
    const auto q = view(static_cast<const float*>(in.q.data()));
    const auto k = view(static_cast<const float*>(in.k.data()));
    const auto v = view(static_cast<const float*>(in.v.data()));
    const auto o = view(in.o.data());
    const sa::bench::Prepared run = pattern.prepare(n, kHeads);
    const double seconds = timed_loop(state, [&] { run.run(q, k, v, o, threads); });
    set_counters(state, 4.0 * static_cast<double>(d) * static_cast<double>(run.computed_pairs) * kHeads, seconds,
                 static_cast<double>(run.allowed_pairs) / (static_cast<double>(n) * static_cast<double>(n)),
                 static_cast<double>(run.computed_pairs), static_cast<double>(run.allowed_pairs));
  })->UseManualTime()->Unit(benchmark::kMillisecond);
}

// time(131072) / time(16384) of a linear pattern with both lengths under the same load: each
// iteration makes one call of the long length and kShortCalls of the short one, alternating, over
// inputs prepared once. Two rows of the suite run seconds apart, and the load of a shared machine
// moved local's ratio between 8.4 and 8.8 from run to run while alternating calls measured 8.0-8.3.
// Counters: ratio (the median over iterations of the long call's time over the short calls' mean)
// and pairs_ratio (computed pairs of the long length over the short one's: the ratio of linear cost).
void register_scaling(const sa::bench::Pattern& pattern, sa::Index d, int threads) {
  constexpr sa::Index kShort = 16384, kLong = 131072;
  constexpr int kShortCalls = 8;
  const std::string name = "scaling/" + pattern.name + "/d:" + std::to_string(d) + "/omp:" + std::to_string(threads);
  benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
    Inputs short_in(kShort, d), long_in(kLong, d);
    const sa::bench::Prepared short_run = pattern.prepare(kShort, kHeads), long_run = pattern.prepare(kLong, kHeads);
    const auto call = [&](Inputs& in, const sa::bench::Prepared& run, sa::Index n) {
      const auto view = [&](const float* data) { return sa::bhsd(data, 1, kHeads, n, d); };
      const auto start = std::chrono::steady_clock::now();
      run.run(view(in.q.data()), view(in.k.data()), view(in.v.data()), sa::bhsd(in.o.data(), 1, kHeads, n, d), threads);
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    call(short_in, short_run, kShort);  // untimed first calls (see timed_loop)
    call(long_in, long_run, kLong);
    std::vector<double> ratios;
    for (auto _ : state) {
      const double long_time = call(long_in, long_run, kLong);
      double short_time = 0;
      for (int c = 0; c < kShortCalls; ++c) short_time += call(short_in, short_run, kShort);
      state.SetIterationTime(long_time + short_time);
      ratios.push_back(long_time / (short_time / kShortCalls));
    }
    std::sort(ratios.begin(), ratios.end());
    state.counters["ratio"] = ratios[ratios.size() / 2];
    state.counters["pairs_ratio"] = static_cast<double>(long_run.computed_pairs) / static_cast<double>(short_run.computed_pairs);
  })->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(7);
}

void register_naive(sa::Index n, sa::Index d, int threads) {
  const std::string name = "attention/naive_dense/n:" + std::to_string(n) + "/d:" + std::to_string(d) +
                           "/omp:" + std::to_string(threads);
  benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& state) {
    Inputs in(n, d);
    sa::bench::NaiveAttention naive;
    naive.reserve(n);
    const double seconds = timed_loop(state, [&] {
      naive(in.q.data(), in.k.data(), in.v.data(), in.o.data(), kHeads, n, d, threads);
    });
    const double pairs = static_cast<double>(n) * static_cast<double>(n);
    set_counters(state, 4.0 * static_cast<double>(d) * pairs * kHeads, seconds, 1.0, pairs, pairs);
  })->UseManualTime()->Unit(benchmark::kMillisecond);
}

void register_ceilings(int threads) {
  const std::string t = "/omp:" + std::to_string(threads);
  benchmark::RegisterBenchmark(("ceiling/fma" + t).c_str(), [=](benchmark::State& state) {
    const double seconds = timed_loop(state, [&] { benchmark::DoNotOptimize(sa::bench::fma_loop(threads)); });
    set_gflops(state, sa::bench::kFmaLoopFlops * threads, seconds);
  })->UseManualTime()->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark(("ceiling/l2" + t).c_str(), [=](benchmark::State& state) {
    const double seconds = timed_loop(state, [&] { benchmark::DoNotOptimize(sa::bench::l2_read_loop(threads)); });
    state.counters["gbps"] = sa::bench::kL2LoopBytes * threads * static_cast<double>(state.iterations()) / seconds / 1e9;
  })->UseManualTime()->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark(("ceiling/gemm" + t).c_str(), [=](benchmark::State& state) {
    const Eigen::Index n = 1024;
    Eigen::MatrixXf a = Eigen::MatrixXf::Random(n, n), b = Eigen::MatrixXf::Random(n, n), c(n, n);
    Eigen::setNbThreads(threads);
    const double seconds = timed_loop(state, [&] { c.noalias() = a * b; benchmark::DoNotOptimize(c.data()); });
    set_gflops(state, 2.0 * static_cast<double>(n * n * n), seconds);
  })->UseManualTime()->Unit(benchmark::kMillisecond);
}

void register_dsa(sa::Index n, sa::Index kv_heads, int threads) {
  constexpr sa::Index heads = 16, d = 128, top_k = 2048;
  const std::string suffix = "/n:" + std::to_string(n) + "/hkv:" + std::to_string(kv_heads) + "/omp:" + std::to_string(threads);
  struct Data {
    std::vector<float> q, k, v, o;
    sa::bench::IndexerInputs index;
    sa::TokenTopK selection;
    Data(sa::Index n, sa::Index kv_heads) : index(n) {
      std::mt19937 rng(5);
      std::normal_distribution<float> normal;
      for (auto [x, size] : {std::pair{&q, n * heads * d}, std::pair{&k, n * kv_heads * d}, std::pair{&v, n * kv_heads * d}}) {
        x->resize(static_cast<std::size_t>(size));
        for (float& e : *x) e = normal(rng);
      }
      o.resize(q.size());
    }
  };
  for (const std::string part : {"indexer", "indexer_k1", "attention", "attention_gather", "attention_tiles", "end_to_end", "causal"}) {
    benchmark::RegisterBenchmark(("dsa/" + part + suffix).c_str(), [=](benchmark::State& state) {
      Data data(n, kv_heads);
      const auto q = sa::bshd<const float>(data.q.data(), 1, n, heads, d);
      const auto k = sa::bshd<const float>(data.k.data(), 1, n, kv_heads, d);
      const auto v = sa::bshd<const float>(data.v.data(), 1, n, kv_heads, d);
      const auto o = sa::bshd(data.o.data(), 1, n, heads, d);
      // One selection before timing: the timed ones select into its memory, as a layer loop would (the
      // first touch of 256 MB of new memory costs 0.02-0.4 s on a VM, more than the top-k itself).
      if (part != "causal") data.index.select(data.selection, n, part == "indexer_k1" ? 1 : top_k, threads);
      const sa::SelectionPath path = part == "attention_gather" ? sa::SelectionPath::kGather
                                     : part == "attention_tiles" ? sa::SelectionPath::kTiles
                                                                 : sa::SelectionPath::kAuto;
      const double seconds = timed_loop(state, [&] {
        if (part == "indexer" || part == "end_to_end") data.index.select(data.selection, n, top_k, threads);
        if (part == "indexer_k1") data.index.select(data.selection, n, 1, threads);
        if (part.starts_with("attention") || part == "end_to_end")
          sa::attention<float>(q, k, v, o, data.selection, {.num_threads = threads}, path);
        if (part == "causal") sa::attention<float>(q, k, v, o, sa::Causal{}, {.num_threads = threads});
      });
      const double causal_pairs = static_cast<double>(n) * static_cast<double>(n + 1) / 2;
      const double pairs = part == "causal" ? causal_pairs : static_cast<double>(data.selection.selected_pairs());
      if (part == "indexer" || part == "indexer_k1") {
        // The indexer's own work: 2 * H_I * d_I flops per causal (query, key) pair.
        set_gflops(state, 2.0 * sa::bench::IndexerInputs::kHeads * sa::bench::IndexerInputs::kDim * causal_pairs, seconds);
        return;
      }
      const bool tiles = part != "causal" && sa::bench::selection_takes_tiles(data.selection, heads, kv_heads, path);
      const double computed =
          part == "causal" ? pairs : static_cast<double>(sa::bench::selection_computed_pairs(data.selection, heads, kv_heads, path));
      set_counters(state, 4.0 * d * computed * heads, seconds, pairs / (static_cast<double>(n) * static_cast<double>(n)),
                   computed, pairs);
      if (part != "causal") state.counters["tiles"] = tiles ? 1 : 0;
      // The K and V rows the gather path reads, once per (pair, KV head): against ceiling/l2 for MHA.
      if (part.starts_with("attention") && !tiles)
        state.counters["kv_gbps"] = 2.0 * d * sizeof(float) * pairs * kv_heads * static_cast<double>(state.iterations()) / seconds / 1e9;
    })->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(part == "causal" || n > 16384 ? 1 : 3);
  }
}

}  // namespace

int main(int argc, char** argv) {
  for (int threads : {1, 2}) register_ceilings(threads);
  for (sa::Index kv_heads : {16, 1}) {
    register_dsa(8192, kv_heads, 2);
    register_dsa(32768, kv_heads, 2);
  }
  for (int threads : {1, 2}) {
    for (sa::Index d : {64, 128}) {
      for (sa::Index n = 1024; n <= 131072; n *= 2) {
        if (n <= 8192) register_naive(n, d, threads);
        for (const sa::bench::Pattern& p : sa::bench::patterns()) {
          if (n <= p.max_n) register_pattern(p, n, d, threads);
          if (n == 8192 && (p.name == "causal" || p.name == "local")) register_pattern(p, n, d, threads, /*bshd=*/true);
        }
      }
    }
  }
  for (const sa::bench::Pattern& p : sa::bench::patterns())
    if (p.name == "local" || p.name == "longformer" || p.name == "bigbird") register_scaling(p, 64, 2);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
