// SPDX-License-Identifier: Apache-2.0
// The main job: dense O(n^2) attention against each sparse pattern, through the same blocked kernel,
// at growing n. Prints one table: time (median of repeated runs), speed-up over dense at the same n,
// density (allowed pairs / n^2), blocking efficiency (allowed / computed pairs) and GFLOP/s on
// computed pairs (4 * d flops per pair).
//
//   sparse_attention_compare [--quick] [--max-n N] [--heads H] [--dim D] [--threads T]
#include <sparse_attention/sparse_attention.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace sa = sparse_attention;

namespace {

struct Settings {
  sa::Index max_n = 32768, min_n = 1024, heads = 8, dim = 64;
  sa::Index naive_max_n = 8192;  // the materialised reference needs n^2 floats per head
  double budget_seconds = 1.5;   // per measurement: repeat runs until this is spent (at most 7)
  int threads = 0;
};

struct Pattern {
  std::string name;
  std::function<sa::BlockLayout(sa::Index n)> layout;
  std::function<void(const sa::BlockLayout&, sa::TensorView<const float>, sa::TensorView<const float>,
                     sa::TensorView<const float>, sa::TensorView<float>, int)>
      run;
};

template <class Policy>
Pattern pattern(std::string name, std::function<Policy(sa::Index)> make) {
  Pattern p;
  p.name = std::move(name);
  p.layout = [make](sa::Index n) { return sa::BlockLayout::build(make(n), {n, n}, {64, 64}); };
  p.run = [make](const sa::BlockLayout& layout, auto q, auto k, auto v, auto o, int threads) {
    sa::attention<float>(q, k, v, o, make(layout.extent().seq_q), layout, {.num_threads = threads});
  };
  return p;
}

// Median wall time of repeated calls, in seconds: at least one run, more while within the budget.
double median_seconds(const std::function<void()>& f, double budget) {
  std::vector<double> times;
  const auto start = std::chrono::steady_clock::now();
  do {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  } while (times.size() < 7 &&
           std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() +
                   times.back() < budget);
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
    } else if (arg == "--heads") {
      s.heads = next();
    } else if (arg == "--dim") {
      s.dim = next();
    } else if (arg == "--threads") {
      s.threads = static_cast<int>(next());
    } else {
      std::fprintf(stderr, "usage: %s [--quick] [--max-n N] [--heads H] [--dim D] [--threads T]\n", argv[0]);
      return 2;
    }
  }

  const std::vector<Pattern> patterns = {
      pattern<sa::Causal>("causal", [](sa::Index) { return sa::Causal{}; }),
      pattern<sa::LocalWindow>("local (causal, 512 keys)", [](sa::Index) { return sa::LocalWindow::causal(512); }),
      pattern<sa::LocalWindow>("local (symmetric, 256)", [](sa::Index) { return sa::LocalWindow::symmetric(256); }),
  };
  const Pattern dense = pattern<sa::Dense>("dense (blocked kernel)", [](sa::Index) { return sa::Dense{}; });

  std::printf("sparse_attention %d.%d.%d: dense O(n^2) against sparse patterns\n", SPARSE_ATTENTION_VERSION_MAJOR,
              SPARSE_ATTENTION_VERSION_MINOR, SPARSE_ATTENTION_VERSION_PATCH);
  std::printf("float, %lld heads, head dim %lld, batch 1, 64 x 64 blocks, threads %s; time = median of runs\n\n",
              static_cast<long long>(s.heads), static_cast<long long>(s.dim),
              s.threads > 0 ? std::to_string(s.threads).c_str() : "default");
  std::printf("%8s  %-26s %12s %10s %9s %11s %9s\n", "n", "pattern", "time [ms]", "speed-up", "density",
              "block eff.", "GFLOP/s");

  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  for (sa::Index n = s.min_n; n <= s.max_n; n *= 2) {
    const sa::Index elements = s.heads * n * s.dim;
    std::vector<float> q(static_cast<std::size_t>(elements)), k(q.size()), v(q.size()), o(q.size());
    for (auto* x : {&q, &k, &v})
      for (float& e : *x) e = normal(rng);
    const auto in = [&](std::vector<float>& x) { return sa::bhsd<const float>(x.data(), 1, s.heads, n, s.dim); };
    const auto out = sa::bhsd(o.data(), 1, s.heads, n, s.dim);

    auto row = [&](const std::string& name, double seconds, double dense_seconds, const sa::BlockLayout* layout) {
      const double computed = layout ? static_cast<double>(layout->computed_pairs())
                                     : static_cast<double>(n) * static_cast<double>(n);
      const double gflops = 4.0 * static_cast<double>(s.dim) * computed * static_cast<double>(s.heads) / seconds / 1e9;
      std::printf("%8lld  %-26s %12.2f %9.2fx %9.4f %11.3f %9.1f\n", static_cast<long long>(n), name.c_str(),
                  seconds * 1e3, dense_seconds / seconds, layout ? layout->density() : 1.0,
                  layout ? layout->blocking_efficiency() : 1.0, gflops);
      std::fflush(stdout);
    };

    const sa::BlockLayout dense_layout = dense.layout(n);
    const double dense_s = median_seconds(
        [&] { dense.run(dense_layout, in(q), in(k), in(v), out, s.threads); }, s.budget_seconds);
    if (n <= s.naive_max_n) {
      const double naive_s = median_seconds(
          [&] { sa::reference::dense_attention<float>(in(q), in(k), in(v), out, sa::Dense{}); }, s.budget_seconds);
      row("naive (materialised n^2)", naive_s, dense_s, nullptr);
    }
    row(dense.name, dense_s, dense_s, &dense_layout);
    for (const Pattern& p : patterns) {
      const sa::BlockLayout layout = p.layout(n);
      const double t = median_seconds([&] { p.run(layout, in(q), in(k), in(v), out, s.threads); }, s.budget_seconds);
      row(p.name, t, dense_s, &layout);
    }
    std::printf("\n");
  }
  return 0;
}
