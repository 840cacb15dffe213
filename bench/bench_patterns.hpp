// SPDX-License-Identifier: Apache-2.0
// What the comparison and the benchmark suite share: the patterns measured (one place to add one),
// the naive O(n^2) implementation a user writes by hand, and the FMA ceiling loop.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <functional>
#include <memory>
#include <random>
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

// DSA's lightning indexer inputs for one sequence (batch 1): H_I = 4 index heads of d_I = 64, as the
// suite specifies; random, so the selections overlap little between neighbouring queries.
struct IndexerInputs {
  static constexpr Index kHeads = 4, kDim = 64;
  std::vector<float> q, k, w;
  explicit IndexerInputs(Index n, unsigned seed = 11) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal;
    for (auto [x, size] : {std::pair{&q, n * kHeads * kDim}, std::pair{&k, n * kDim}, std::pair{&w, n * kHeads}}) {
      x->resize(static_cast<std::size_t>(size));
      for (float& e : *x) e = normal(rng);
    }
  }
  TokenTopK select(Index n, Index top_k, int threads) const {
    TokenTopK selection;
    select(selection, n, top_k, threads);
    return selection;
  }
  // Into `selection`'s memory when it is large enough, as a model's layer loop selects.
  void select(TokenTopK& selection, Index n, Index top_k, int threads) const {
    lightning_top_k<float>(bshd<const float>(q.data(), 1, n, kHeads, kDim), bhsd<const float>(k.data(), 1, 1, n, kDim),
                           lse_bsh<const float>(w.data(), 1, n, kHeads), top_k, selection, {.num_threads = threads});
  }
};

// Whether attention over `selection` (batch 1) runs as tiles on `path` (kAuto: the path it takes).
inline bool selection_takes_tiles(const TokenTopK& selection, Index q_heads, Index kv_heads, SelectionPath path) {
  return path == SelectionPath::kTiles ||
         (path == SelectionPath::kAuto &&
          detail::selection_prefers_tiles<float>({1, q_heads, kv_heads, selection.seq_q(), selection.seq_k(), 64, 64, 1.0}, selection));
}

// Pairs per head it computes: exactly the selected ones gathered, every pair of the touched tiles on
// the tile path.
inline Index selection_computed_pairs(const TokenTopK& selection, Index q_heads, Index kv_heads, SelectionPath path) {
  if (!selection_takes_tiles(selection, q_heads, kv_heads, path)) return selection.selected_pairs();
  const Index n_q = selection.seq_q(), n_k = selection.seq_k();
  const detail::SelectionTiles t(selection, 0, q_heads, 0);
  return BlockLayout::build(t, {n_q, n_k}, {64, 64}, q_heads).computed_pairs();
}

// DSA with k keys per query. end_to_end: each run also computes the selection (indexer + top-k), as a
// user pays it, into the memory of the previous run's selection (as a model's layer loop selects);
// otherwise the selection is prepared once, like a static pattern's layout.
inline Pattern dsa_pattern(std::string name, Index max_n, Index top_k, bool end_to_end) {
  return {std::move(name), max_n, [=](Index n, Index heads) {
            auto inputs = std::make_shared<const IndexerInputs>(n);
            auto selection = std::make_shared<const TokenTopK>(inputs->select(n, top_k, 0));
            auto reused = std::make_shared<TokenTopK>(end_to_end ? inputs->select(n, top_k, 0) : TokenTopK());
            Prepared p;
            p.allowed_pairs = selection->selected_pairs();
            p.density = static_cast<double>(p.allowed_pairs) / (static_cast<double>(n) * static_cast<double>(n));
            p.computed_pairs = selection_computed_pairs(*selection, heads, heads, SelectionPath::kAuto);
            p.blocking_efficiency = static_cast<double>(p.allowed_pairs) / static_cast<double>(p.computed_pairs);
            p.run = [=](auto q, auto k, auto v, auto o, int threads) {
              if (end_to_end) {
                inputs->select(*reused, n, top_k, threads);
                attention<float>(q, k, v, o, *reused, {.num_threads = threads});
              } else {
                attention<float>(q, k, v, o, *selection, {.num_threads = threads});
              }
            };
            return p;
          }};
}

// MoBA / NSA-style block routing: k blocks of 64 per query block, by mean-pooled scores.
inline Pattern block_top_k_pattern(Index max_n, Index top_k) {
  return {"block_topk", max_n, [=](Index n, Index heads) {
            Prepared p;
            p.run = [=](auto q, auto k, auto v, auto o, int threads) {
              // The selection depends on the data: routed on every call, as a model would.
              const BlockTopK selection = BlockTopK::select(q, k, top_k, 64, {.num_threads = threads});
              attention<float>(q, k, v, o, selection, {.num_threads = threads});
            };
            // Pairs of a causal selection of k blocks per 64-query block (the exact count depends on data
            // only through which blocks, not how many): each row holds min(k, blocks so far) tiles.
            const Index blocks = detail::ceil_div(n, 64);
            for (Index qb = 0; qb < blocks; ++qb) {
              const Index tiles = std::min(top_k, qb + 1);
              p.computed_pairs += tiles * 64 * 64;
              p.allowed_pairs += (tiles - 1) * 64 * 64 + 64 * 65 / 2;
            }
            p.density = static_cast<double>(p.allowed_pairs) / (static_cast<double>(n) * static_cast<double>(n));
            p.blocking_efficiency = static_cast<double>(p.allowed_pairs) / static_cast<double>(p.computed_pairs);
            (void)heads;
            return p;
          }};
}

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
      static_pattern("longformer", kLinear, Longformer(256, {0, 1})),
      static_pattern("bigbird", kLinear, BigBird(64, 1, 3, 2024)),
      static_pattern("strided", kQuadratic, Strided(128)),
      dsa_pattern("dsa", kQuadratic, 2048, /*end_to_end=*/false),
      block_top_k_pattern(kQuadratic, 32),
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

// The machine's FMA peak: kFmaAccumulators independent chains of vector FMAs on every thread, enough
// to cover the FMA latency on both pipes, few enough to stay in registers: with AVX2's 16 vector
// registers, 16 chains plus the two operands spill, and the loop measured half the peak (56 against
// 100 GFLOP/s per core on a Zen 3).
inline constexpr int kFmaAccumulators = SPARSE_ATTENTION_SIMD_WIDTH == 32 ? 12 : 16;
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

// The machine's L2 read bandwidth: every thread reads a private buffer of kL2Bytes, the size of the
// token-selection path's chunk of copied K and V rows, again and again, each vector the memory operand
// of an FMA (as that path's dot products and value sums take their rows). The row path for MHA (one KV
// head per query head) reads a K and a V row per (query, key, head), used once each, so this and not
// ceiling/fma is the figure its attention time answers to.
inline constexpr std::size_t kL2Bytes = std::size_t{256} << 10;
inline constexpr long kL2Passes = 1024;
inline constexpr double kL2LoopBytes = static_cast<double>(kL2Bytes) * kL2Passes;  // per thread
inline float l2_read_loop(int threads) {
  float result = 0;
#if SPARSE_ATTENTION_HAS_OPENMP
#pragma omp parallel num_threads(threads) reduction(+ : result)
#endif
  {
    constexpr std::size_t count = kL2Bytes / sizeof(float);
    detail::AlignedBuffer<float> buffer(static_cast<Index>(count));
    for (std::size_t i = 0; i < count; ++i) buffer.data()[i] = static_cast<float>(i % 7) * 1e-9f;
#if SPARSE_ATTENTION_SIMD_WIDTH > 0
    using V = detail::simd::Vec<float>;
    constexpr int kChains = 16;
    constexpr std::size_t step = kChains * V::kLanes;
    V acc[kChains];
    for (V& a : acc) a = V::zero();
    const V q = V::set1(1.0f);
    for (long pass = 0; pass < kL2Passes; ++pass)
      for (std::size_t i = 0; i < count; i += step) {
#pragma GCC unroll 16
        for (int c = 0; c < kChains; ++c) acc[c] = detail::simd::fma(q, V::load(buffer.data() + i + c * V::kLanes), acc[c]);
      }
    float lanes[V::kLanes];
    for (int c = 1; c < kChains; ++c) acc[0] = acc[0] + acc[c];
    acc[0].store(lanes);
    for (float x : lanes) result += x;
#else
    float acc[8] = {};
    for (long pass = 0; pass < kL2Passes; ++pass)
      for (std::size_t i = 0; i < count; i += 8)
        for (int c = 0; c < 8; ++c) acc[c] += buffer.data()[i + c];
    for (float a : acc) result += a;
#endif
  }
  (void)threads;
  return result;
}

}  // namespace sparse_attention::bench
