// SPDX-License-Identifier: Apache-2.0
// What the comparison and the benchmark suite share: the patterns measured (one place to add one),
// the naive O(n^2) implementation a user writes by hand, and the FMA ceiling loop.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sparse_attention/sparse_attention.hpp"

namespace sparse_attention::bench {

// One pattern prepared for a length: its layout built, ready to run on [1, heads, n, d] views.
struct Prepared {
  std::function<void(TensorView<const float>, TensorView<const float>, TensorView<const float>,
                     TensorView<float>, int threads)>
      run;
  Index computed_pairs = 0;  // per head
  Index allowed_pairs = 0;   // per head
  double density = 0;
  double blocking_efficiency = 0;
};

struct Pattern {
  std::string name;
  Index max_n;  // largest n the suite measures it at (the quadratic ones stop earlier)
  std::function<Prepared(Index n, Index heads)> prepare;
};

template <class Policy>
Prepared prepare_static(Policy policy, Index n, Index heads) {
  auto layout = std::make_shared<const BlockLayout>(BlockLayout::build(policy, {n, n}, {64, 64}, heads));
  Prepared p;
  p.computed_pairs = layout->computed_pairs() / layout->layout_heads();
  p.allowed_pairs = layout->allowed_pairs() / layout->layout_heads();
  p.density = layout->density();
  p.blocking_efficiency = layout->blocking_efficiency();
  p.run = [policy, layout](auto q, auto k, auto v, auto o, int threads) {
    attention<float>(q, k, v, o, policy, *layout, {.num_threads = threads});
  };
  return p;
}

template <class Policy>
Pattern static_pattern(std::string name, Index max_n, Policy policy) {
  return {std::move(name), max_n, [policy](Index n, Index heads) { return prepare_static(policy, n, heads); }};
}

// The patterns of the suite, with the parameters the benchmarks are specified with.
inline std::vector<Pattern> patterns() {
  constexpr Index kQuadratic = 32768, kLinear = 131072;
  return {
      static_pattern("dense", kQuadratic, Dense{}),
      static_pattern("causal", kQuadratic, Causal{}),
      static_pattern("local", kLinear, LocalWindow::causal(512)),
  };
}

// Dense attention as one writes it by hand: per head, the n x n scores materialised with Eigen's GEMM,
// a row softmax, and a second GEMM; O(n^2) memory. The score buffer is kept across calls (generous to
// the baseline: a fresh n x n allocation per call costs page faults on top). Buffers are [heads, n, d]
// row-major.
class NaiveAttention {
 public:
  // Allocates and touches the score buffer for length n, so no timed call pays for it.
  void reserve(Index n) {
    scores_.resize(n, n);
    scores_.setZero();
  }

  void operator()(const float* q, const float* k, const float* v, float* o, Index heads, Index n, Index d,
                  int threads) {
    using Map = Eigen::Map<const Matrix>;
#if SPARSE_ATTENTION_HAS_OPENMP
    threads = threads > 0 ? threads : omp_get_max_threads();
#endif
    Eigen::setNbThreads(threads);  // Eigen's own GEMM threads: a hand-written version would use them
    scores_.resize(n, n);
    const float scale = 1.0f / std::sqrt(static_cast<float>(d));
    for (Index h = 0; h < heads; ++h) {
      const Map qh(q + h * n * d, n, d), kh(k + h * n * d, n, d), vh(v + h * n * d, n, d);
      scores_.noalias() = scale * (qh * kh.transpose());
#if SPARSE_ATTENTION_HAS_OPENMP
#pragma omp parallel for num_threads(threads)
#endif
      for (Index i = 0; i < n; ++i) {
        auto row = scores_.row(i).array();
        row = (row - row.maxCoeff()).exp();
        row /= row.sum();
      }
      Eigen::Map<Matrix>(o + h * n * d, n, d).noalias() = scores_ * vh;
    }
  }

 private:
  using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Matrix scores_;
};

// The machine's FMA peak: kAccumulators independent chains of vector FMAs on every thread.
inline constexpr int kFmaAccumulators = 16;
inline constexpr long kFmaIterations = 1L << 22;
#if SPARSE_ATTENTION_SIMD_WIDTH > 0
inline constexpr double kFmaLoopFlops =
    2.0 * kFmaAccumulators * kFmaIterations * detail::simd::Vec<float>::kLanes;  // per thread
inline float fma_loop(int threads) {
  using V = detail::simd::Vec<float>;
  float result = 0;
#if SPARSE_ATTENTION_HAS_OPENMP
#pragma omp parallel num_threads(threads) reduction(+ : result)
#endif
  {
    V acc[kFmaAccumulators];
    for (int i = 0; i < kFmaAccumulators; ++i) acc[i] = V::set1(static_cast<float>(i));
    const V a = V::set1(0.999999f), b = V::set1(1e-7f);
    for (long it = 0; it < kFmaIterations; ++it) {
#pragma GCC unroll 16
      for (int i = 0; i < kFmaAccumulators; ++i) acc[i] = detail::simd::fma(acc[i], a, b);
    }
    float lanes[V::kLanes];
    for (int i = 1; i < kFmaAccumulators; ++i) acc[0] = acc[0] + acc[i];
    acc[0].store(lanes);
    for (float x : lanes) result += x;
  }
  (void)threads;
  return result;
}
#else
inline constexpr double kFmaLoopFlops = 2.0 * kFmaAccumulators * kFmaIterations;
inline float fma_loop(int) {
  float acc[kFmaAccumulators] = {};
  for (long it = 0; it < kFmaIterations; ++it)
    for (float& a : acc) a = std::fma(a, 0.999999f, 1e-7f);
  float r = 0;
  for (float a : acc) r += a;
  return r;
}
#endif

}  // namespace sparse_attention::bench
