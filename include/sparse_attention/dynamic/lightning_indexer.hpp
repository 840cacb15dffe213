// SPDX-License-Identifier: Apache-2.0
// DeepSeek-V3.2's lightning indexer with its top-k selection (DSA):
//
//   I[t, s] = sum_j w[t, j] * ReLU(qI[t, j] . kI[s])      for keys s <= p(t) (bottom-right aligned)
//   S_t     = the k keys of largest I[t, s], ties to the smaller index; all valid keys if fewer
//
// Scores are computed in GEMM-shaped tiles (queries in vector lanes, one product per index head, then
// the ReLU-weighted sum), tiles above the diagonal are skipped, and each query streams its scores into
// its own top-k buffer: the seq_q x seq_k score matrix never exists. Index heads H_I and their width
// d_I are the caller's: a small model needs a small indexer, or the selection costs as much as the
// attention it saves.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <type_traits>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "sparse_attention/core/error.hpp"
#include "sparse_attention/core/tensor_view.hpp"
#include "sparse_attention/core/types.hpp"
#include "sparse_attention/dynamic/token_top_k.hpp"
#include "sparse_attention/kernel/micro_kernel.hpp"
#include "sparse_attention/kernel/parallel.hpp"
#include "sparse_attention/kernel/problem.hpp"
#include "sparse_attention/kernel/simd.hpp"
#include "sparse_attention/kernel/workspace.hpp"

namespace sparse_attention {

struct IndexerOptions {
  // Threads; 0 means OpenMP's default. The selection never depends on it.
  int num_threads = 0;
};

namespace detail {

// A score's bits, mapped so that unsigned order is numeric order (-0 folded into +0).
template <class T>
using OrderBits = std::conditional_t<std::is_same_v<T, float>, std::uint32_t, std::uint64_t>;

template <class T>
OrderBits<T> order_bits(T score) {
  using U = OrderBits<T>;
  constexpr U kSign = U{1} << (8 * sizeof(U) - 1);
  const U bits = std::bit_cast<U>(score + T(0));
  const U negative = U{0} - (bits >> (8 * sizeof(U) - 1));  // all ones for a negative score
  return bits ^ (negative | kSign);                         // branch-free: the loops over it vectorise
}
template <class T>
T from_order_bits(OrderBits<T> bits) {
  using U = OrderBits<T>;
  constexpr U kSign = U{1} << (8 * sizeof(U) - 1);
  return std::bit_cast<T>((bits & kSign) ? bits & ~kSign : ~bits);
}

// The 11-bit digits (order_bits(x) >> shift) & 2047 of n values, counted into count[2048]. Four
// interleaved sub-histograms: neighbouring candidates often share a digit (the top digit of similar
// scores is mostly their exponent), and increments of one counter would each wait for the last.
inline constexpr int kDigitBits = 11;
template <class Value>
void digit_histogram(Index n, Value&& order_bits_of, int shift, std::uint32_t* count) {
  constexpr int kBins = 1 << kDigitBits;
  constexpr Index kBlock = 256;
  alignas(64) std::uint32_t part[4][kBins] = {};
  alignas(64) std::uint16_t digits[kBlock];
  for (Index t0 = 0; t0 < n; t0 += kBlock) {
    const Index m = std::min(kBlock, n - t0);
    for (Index i = 0; i < m; ++i) digits[i] = static_cast<std::uint16_t>((order_bits_of(t0 + i) >> shift) & (kBins - 1));  // vectorised
    Index i = 0;
    for (; i + 4 <= m; i += 4) {
      ++part[0][digits[i]];
      ++part[1][digits[i + 1]];
      ++part[2][digits[i + 2]];
      ++part[3][digits[i + 3]];
    }
    for (; i < m; ++i) ++part[0][digits[i]];
  }
  for (int v = 0; v < kBins; ++v) count[v] = part[0][v] + part[1][v] + part[2][v] + part[3][v];
}

// The smallest and largest of n >= 1 scores.
template <class T>
std::pair<T, T> score_range(const T* scores, Index n) {
  T largest = scores[0], smallest = scores[0];
  Index t = 0;
#if SPARSE_ATTENTION_SIMD_WIDTH > 0
  using V = simd::Vec<T>;
  V up = V::set1(largest), down = V::set1(-smallest);
  for (; t + V::kLanes <= n; t += V::kLanes) {
    const V x = V::load(scores + t);
    up = simd::max(up, x);
    down = simd::max(down, V::zero() - x);
  }
  largest = simd::reduce_max(up), smallest = -simd::reduce_max(down);
#endif
  for (; t < n; ++t) largest = std::max(largest, scores[t]), smallest = std::min(smallest, scores[t]);
  return {smallest, largest};
}

// One radix step over n candidate scores (never NaN): the bucket of 11 order bits, from the highest bit
// where the candidates differ, that holds the need-th best. Candidates >= lower are in it or above it;
// those >= upper are above it, `above` of them; `in_bucket` are in it. The bits above the digit are
// shared by every candidate, so the bucket edges are plain score comparisons.
template <class T>
struct DigitCut {
  bool all_equal = false;  // no bit differs: only keys can tell the candidates apart
  T lower = 0, upper = 0;
  Index above = 0, in_bucket = 0;
};

template <class T>
DigitCut<T> digit_cut(const T* scores, Index n, Index need) {
  using U = OrderBits<T>;
  constexpr int kWidth = 8 * sizeof(U), kBins = 1 << kDigitBits;
  DigitCut<T> cut;
  const auto [smallest, largest] = score_range(scores, n);
  const U high_bits = order_bits(largest), differ = high_bits ^ order_bits(smallest);
  if (differ == 0) {
    cut.all_equal = true;
    return cut;
  }
  const int shift = std::max(0, kWidth - std::countl_zero(differ) - kDigitBits);
  std::uint32_t count[kBins];
  digit_histogram(n, [&](Index t) { return order_bits(scores[t]); }, shift, count);
  int v = kBins - 1;
  for (; v > 0 && cut.above + count[v] < need; --v) cut.above += count[v];
  cut.in_bucket = count[v];
  const U high = shift + kDigitBits >= kWidth ? U{0} : high_bits & ~((U{1} << (shift + kDigitBits)) - 1);
  // Bit patterns below -inf's and above +inf's are NaNs. A lower edge below -inf becomes -inf (every
  // score is at or above it); an upper edge above +inf, or past the last bucket, stays NaN, which no
  // score compares >= to: none is above the bucket.
  cut.lower = from_order_bits<T>(high | (static_cast<U>(v) << shift));
  if (cut.lower != cut.lower) cut.lower = -std::numeric_limits<T>::infinity();
  cut.upper = v + 1 < kBins ? from_order_bits<T>(high | (static_cast<U>(v + 1) << shift)) : std::numeric_limits<T>::quiet_NaN();
  return cut;
}

// Moves the k best of (scores, keys)[0, n) -- larger score first, then smaller key -- to [0, k), in no
// particular order, and returns the k-th best score. A radix select: each digit_cut settles the
// candidates above the bucket holding the k-th best (moved to the front), keeps the bucket's for the
// next, finer digit and drops the rest, a vector of comparisons and packs at a time (no pass depends
// on how the input is arranged, unlike nth_element on the half-sorted buffers a stream leaves).
// Candidates with equal scores at the boundary go by smaller key. tmp_*: n elements of scratch.
template <class T>
T select_best(T* scores, std::int32_t* keys, Index n, Index k, T* tmp_scores, std::int32_t* tmp_keys) {
  Index lo = 0, hi = n, need = k;  // [0, lo) settled, [lo, hi) undecided
  while (need > 0 && hi - lo > need) {
    const DigitCut<T> cut = digit_cut(scores + lo, hi - lo, need);
    if (cut.all_equal) {  // the smaller keys win
      std::nth_element(keys + lo, keys + lo + need, keys + hi);
      break;
    }
    Index keep = lo, undecided = 0, t = lo;
#if SPARSE_ATTENTION_SIMD_WIDTH > 0
    using V = simd::Vec<T>;
    for (; t + V::kLanes <= hi; t += V::kLanes) {
      const V x = V::load(scores + t);
      const unsigned up = simd::greater_equal_bits(x, V::set1(cut.upper));
      const unsigned in = simd::greater_equal_bits(x, V::set1(cut.lower)) & ~up;
      // The bucket's to scratch first: the in-place pack may overwrite this vector's keys.
      undecided += simd::compress_pairs(x, keys + t, in, tmp_scores + undecided, tmp_keys + undecided);
      keep += simd::compress_pairs(x, keys + t, up, scores + keep, keys + keep);
    }
#endif
    for (; t < hi; ++t) {
      const T x = scores[t];
      const std::int32_t key = keys[t];
      const bool up = x >= cut.upper;
      tmp_scores[undecided] = x, tmp_keys[undecided] = key;
      undecided += !up && x >= cut.lower ? 1 : 0;
      scores[keep] = x, keys[keep] = key;
      keep += up ? 1 : 0;
    }
    std::copy(tmp_scores, tmp_scores + undecided, scores + keep);
    std::copy(tmp_keys, tmp_keys + undecided, keys + keep);
    need -= keep - lo;
    lo = keep;
    hi = keep + undecided;
  }
  T worst = std::numeric_limits<T>::infinity();
  for (Index t = 0; t < k; ++t) worst = std::min(worst, scores[t]);
  return worst;
}

// The k best candidates of one query, offered in increasing key order: appended (scores and keys side by
// side) while they beat the threshold, a lower bound of the k-th best score so far. When 2k are held, the
// buffer shrinks without sorting: one digit_cut finds the bucket holding the k-th best, every candidate
// at or above that bucket stays, and the bucket's lower edge becomes the threshold. The exact k best
// are picked once, at the end.
// A newcomer must beat the threshold strictly: an equal score belongs to a larger key, which loses the
// tie to any kept candidate of that score.
template <class T>
class RowTopK {
 public:
  static constexpr Index kSlack = 16;    // appends come a vector at a time
  static constexpr Index kShrinkAt = 2;  // candidates held before a shrink, in multiples of k
  static Index capacity(Index k) { return kShrinkAt * k + kSlack; }

  // Scratch the selections share (capacity(k) elements each), one per thread.
  struct CutScratch {
    T* tmp_scores;
    std::int32_t* tmp_keys;
  };

  // scores, keys: capacity(k) each.
  RowTopK(T* scores, std::int32_t* keys, const CutScratch& cut, Index k) : scores_(scores), keys_(keys), cut_(cut), k_(k) {}

  T threshold() const { return threshold_; }
  T* score_end() { return scores_ + n_; }
  std::int32_t* key_end() { return keys_ + n_; }
  void appended(Index count) {
    n_ += count;
    if (n_ >= kShrinkAt * k_) shrink();
  }

  // The selected keys, ascending, into `out` (capacity k + kSlack); returns how many. `marks` holds one bit per
  // key up to the largest selected one, all clear, and is left clear: sorting by marking is O(k + n/64).
  Index finish(std::int32_t* out, std::uint64_t* marks) {
    if (n_ > k_) {
      select_best(scores_, keys_, n_, k_, cut_.tmp_scores, cut_.tmp_keys);
      n_ = k_;
    }
    // The kept keys are mostly ascending runs (appends come in key order, packs keep it, select_best
    // adds a run per pass): a word's bits gather in a register while consecutive keys stay in it.
    std::int32_t last = -1, run_word = -1;
    std::uint64_t run_bits = 0;
    for (Index t = 0; t < n_; ++t) {
      const std::int32_t key = keys_[t];
      if (key / 64 != run_word) {
        if (run_word >= 0) marks[run_word] |= run_bits;
        run_word = key / 64, run_bits = 0;
      }
      run_bits |= std::uint64_t{1} << (key % 64);
      last = std::max(last, key);
    }
    if (run_word >= 0) marks[run_word] |= run_bits;
    Index count = 0;
    for (std::int32_t word = 0; word <= last / 64; ++word) {
#if SPARSE_ATTENTION_SIMD_WIDTH == 64
      count += simd::bit_positions(marks[word], word * 64, out + count);
#else
      for (std::uint64_t bits = marks[word]; bits != 0; bits &= bits - 1) out[count++] = word * 64 + __builtin_ctzll(bits);
#endif
      marks[word] = 0;
    }
    return count;
  }

 private:
  void shrink() {
    const DigitCut<T> cut = digit_cut(scores_, n_, k_);
    if (cut.all_equal || cut.above + cut.in_bucket >= n_ - kSlack) {
      // All scores equal (only keys can shrink them) or one bucket holds nearly all: select exactly.
      threshold_ = select_best(scores_, keys_, n_, k_, cut_.tmp_scores, cut_.tmp_keys);
      n_ = k_;
      return;
    }
    // The candidates at or above the k-th best's bucket stay; its lower edge is the new threshold.
    Index kept = 0, t = 0;
#if SPARSE_ATTENTION_SIMD_WIDTH > 0
    using V = simd::Vec<T>;
    for (; t + V::kLanes <= n_; t += V::kLanes) {
      const V x = V::load(scores_ + t);
      kept += simd::compress_pairs(x, keys_ + t, simd::greater_equal_bits(x, V::set1(cut.lower)), scores_ + kept, keys_ + kept);
    }
#endif
    for (; t < n_; ++t) {
      scores_[kept] = scores_[t];
      keys_[kept] = keys_[t];
      kept += scores_[t] >= cut.lower ? 1 : 0;
    }
    n_ = kept;
    threshold_ = std::max(threshold_, cut.lower);
  }

  T* scores_;
  std::int32_t* keys_;
  CutScratch cut_;
  Index k_, n_ = 0;
  T threshold_ = -std::numeric_limits<T>::infinity();
};

template <class T>
class LightningIndexer {
 public:
  static constexpr Index kTileQ = 24, kTileK = 64;
#if SPARSE_ATTENTION_SIMD_WIDTH > 0
  static constexpr Index kLanes = simd::Vec<T>::kLanes;
#else
  static constexpr Index kLanes = 1;
#endif

  LightningIndexer(TensorView<const T> q, TensorView<const T> k, StridedView<const T, 3> w, Index top_k)
      : q_(q), k_(k), w_(w), top_k_(top_k), batch_(q.extent(0)), heads_(q.extent(1)), seq_q_(q.extent(2)),
        dim_(q.extent(3)), seq_k_(k.extent(2)), keys_padded_(ceil_div(seq_k_, kTileK) * kTileK) {}

  TokenTopK run(int num_threads, TokenTopK&& recycled = {}) const {
    TokenTopK selection(std::move(recycled), batch_, 1, seq_q_, top_k_, seq_k_);
    // Index keys transposed tile by tile, [batch][key tile][d_I][kTileK], zero past seq_k: keys in vector
    // lanes, so each query's scores come out contiguous and are filtered a vector at a time; each tile's
    // block is contiguous (a layout with whole rows of keys would put its rows 4 KiB multiples apart).
    std::vector<T> kt(static_cast<std::size_t>(batch_ * dim_ * keys_padded_), T(0));
    for (Index b = 0; b < batch_; ++b)
      for (Index s = 0; s < seq_k_; ++s)
        for (Index d = 0; d < dim_; ++d)
          kt[static_cast<std::size_t>(b * dim_ * keys_padded_ + (s / kTileK * dim_ + d) * kTileK + s % kTileK)] = k_(b, 0, s, d);

    const Index tiles = ceil_div(seq_q_, kTileQ), items = batch_ * tiles;
    const int threads = thread_count(num_threads, items);
    const Index per_thread = scratch_size();
    const Index row_capacity = RowTopK<T>::capacity(top_k_);
    AlignedBuffer<T> scratch(per_thread * threads);
    std::vector<T> scores(static_cast<std::size_t>(kTileQ * row_capacity * threads));
    const Index keys_size = kTileQ * row_capacity + top_k_ + RowTopK<T>::kSlack;  // candidates, then one output row
    std::vector<std::int32_t> keys(static_cast<std::size_t>(keys_size * threads));
    std::vector<T> cut_scores(static_cast<std::size_t>(row_capacity * threads));
    std::vector<std::int32_t> cut_keys(static_cast<std::size_t>(row_capacity * threads));
    const Index words = ceil_div(seq_k_, 64) + 1;
    std::vector<std::uint64_t> marks(static_cast<std::size_t>(words * threads), 0);
    // The last query tiles see the most keys: hand them out first.
    parallel_for_dynamic(items, threads, [&](Index n, int thread) {
      const Index item = items - 1 - n;
      const typename RowTopK<T>::CutScratch cut{cut_scores.data() + row_capacity * thread, cut_keys.data() + row_capacity * thread};
      Thread t{scratch.data() + per_thread * thread, scores.data() + kTileQ * row_capacity * thread,
               keys.data() + keys_size * thread, cut, marks.data() + words * thread};
      run_tile(item / tiles, item % tiles, kt.data() + item / tiles * dim_ * keys_padded_, t, selection);
    });
    return selection;
  }

 private:
  struct Thread {
    T* scratch;
    T* scores;                                   // kTileQ rows of candidate scores
    std::int32_t* keys;                          // kTileQ rows of candidate keys, then one output row
    typename RowTopK<T>::CutScratch cut;         // for cuts
    std::uint64_t* marks;                        // one bit per key, clear
  };

  Index scratch_size() const {
    ScratchCarver<T> c;
    c.take(heads_ * kTileQ * dim_);  // Q rows per index head
    c.take(kTileQ * kTileK);         // one head's products
    c.take(kTileQ * kTileK);         // the tile's scores
    return c.used();
  }

  void run_tile(Index b, Index tile, const T* kt, const Thread& t, TokenTopK& selection) const {
    const Index i0 = tile * kTileQ, rows = std::min(kTileQ, seq_q_ - i0);
    const Index p0 = i0 + seq_k_ - seq_q_;  // position of the tile's first query
    const Index row_capacity = RowTopK<T>::capacity(top_k_);
    std::int32_t* out = t.keys + kTileQ * row_capacity;
    const Index last_key = std::min(seq_k_ - 1, p0 + rows - 1);

    // Queries with at most k valid keys select all of them: no score is needed.
    if (last_key + 1 <= top_k_) {
      for (Index r = 0; r < rows; ++r) {
        const Index n = std::clamp<Index>(p0 + r + 1, 0, seq_k_);
        for (Index s = 0; s < n; ++s) out[s] = static_cast<std::int32_t>(s);
        selection.set_row(b * seq_q_ + i0 + r, {out, static_cast<std::size_t>(n)});
      }
      return;
    }

    ScratchCarver<T> c(t.scratch);
    T* qrows = c.take(heads_ * kTileQ * dim_);  // (heads, tile rows, dim)
    T* product = c.take(kTileQ * kTileK);       // (tile rows, tile keys)
    T* scores = c.take(kTileQ * kTileK);        // (tile rows, tile keys)
    for (Index j = 0; j < heads_; ++j)
      for (Index r = 0; r < rows; ++r)
        for (Index d = 0; d < dim_; ++d) qrows[(j * kTileQ + r) * dim_ + d] = q_(b, j, i0 + r, d);
    std::vector<RowTopK<T>> tops;
    tops.reserve(static_cast<std::size_t>(rows));
    for (Index r = 0; r < rows; ++r) tops.emplace_back(t.scores + r * row_capacity, t.keys + r * row_capacity, t.cut, top_k_);

    for (Index s0 = 0; s0 <= last_key; s0 += kTileK) {
      const Index cols = std::min(kTileK, last_key + 1 - s0);
      for (Index j = 0; j < heads_; ++j) {
        products(product, rows, qrows + j * kTileQ * dim_, kt + s0 * dim_);
        for (Index r = 0; r < rows; ++r) {
          const T w = w_(b, j, i0 + r);
          T* out_row = scores + r * kTileK;
          const T* in = product + r * kTileK;
          if (j == 0) {
            for (Index x = 0; x < kTileK; ++x) out_row[x] = w * std::max(in[x], T(0));
          } else {
            for (Index x = 0; x < kTileK; ++x) out_row[x] += w * std::max(in[x], T(0));
          }
        }
      }
      // Query r may take keys s <= p0 + r only (the diagonal tile; every key when seq_q > seq_k rows).
      for (Index r = 0; r < rows; ++r)
        offer(scores + r * kTileK, s0, std::min(cols, p0 + r - s0 + 1), tops[static_cast<std::size_t>(r)]);
    }
    for (Index r = 0; r < rows; ++r) {
      const Index n = tops[static_cast<std::size_t>(r)].finish(out, t.marks);
      selection.set_row(b * seq_q_ + i0 + r, {out, static_cast<std::size_t>(n)});
    }
  }

  // product (rows, tile keys) = Q rows (rows, dim) x one key tile of kt (dim, tile keys).
  void products(T* product, Index rows, const T* qrows, const T* kt) const {
#if SPARSE_ATTENTION_SIMD_WIDTH > 0
    simd::BlockProduct<T, simd::AStride::kRows, false>::run(product, kTileK, rows, kTileK / kLanes,
                                                            StridedRows<T>{qrows, dim_}, kt, kTileK, dim_, nullptr);
#else
    using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    Eigen::Map<Matrix>(product, rows, kTileK).noalias() =
        Eigen::Map<const Matrix>(qrows, rows, dim_) * Eigen::Map<const Matrix>(kt, dim_, kTileK);
#endif
  }

  // Offers keys s0 .. s0 + valid - 1 of one query (scores contiguous) to its top-k.
  static void offer(const T* scores, Index s0, Index valid, RowTopK<T>& top) {
    for (Index c0 = 0; c0 < valid; c0 += kLanes) {
#if SPARSE_ATTENTION_SIMD_WIDTH > 0
      const Index lanes = std::min(kLanes, valid - c0);
      const unsigned in_range = lanes >= 32 ? ~0u : (1u << lanes) - 1u;
      const auto x = simd::Vec<T>::load(scores + c0);
      const unsigned bits = simd::greater_bits(x, simd::Vec<T>::set1(top.threshold())) & in_range;
      if (bits != 0)
        top.appended(simd::compress_store(x, bits, static_cast<std::int32_t>(s0 + c0), top.score_end(), top.key_end()));
#else
      if (scores[c0] > top.threshold()) {
        *top.score_end() = scores[c0];
        *top.key_end() = static_cast<std::int32_t>(s0 + c0);
        top.appended(1);
      }
#endif
    }
  }

  TensorView<const T> q_, k_;
  StridedView<const T, 3> w_;
  Index top_k_, batch_, heads_, seq_q_, dim_, seq_k_, keys_padded_;
};

// Throws std::invalid_argument, naming the parameter, unless the indexer's inputs fit together.
template <class T>
void check_indexer(TensorView<const T> index_q, TensorView<const T> index_k, StridedView<const T, 3> weights, Index k,
                   const IndexerOptions& options) {
  constexpr std::string_view where = "lightning_top_k";
  check_data(where, "index_q", index_q);
  check_data(where, "index_k", index_k);
  check_data(where, "weights", weights);
  const Index batch = index_q.extent(0), heads = index_q.extent(1), seq_q = index_q.extent(2), dim = index_q.extent(3);
  require(k >= 1, where, "k", k, ">= 1");
  require(heads >= 1, where, "H_I (index_q.extent(1))", heads, ">= 1");
  require(dim >= 1, where, "d_I (index_q.extent(3))", dim, ">= 1");
  if (index_k.extent(0) != batch || index_k.extent(1) != 1 || index_k.extent(3) != dim)
    throw_invalid_argument(where, "index_k shape", format_list(index_k.extents()),
                           "[batch " + std::to_string(batch) + ", 1, seq_k, d_I " + std::to_string(dim) +
                               "] (one index key per token, as wide as index_q)");
  const std::array<Index, 3> w_shape{batch, heads, seq_q};
  if (weights.extents() != w_shape)
    throw_invalid_argument(where, "weights shape", format_list(weights.extents()), format_list(w_shape) + " = [batch, H_I, seq_q]");
  TokenTopK::check_dims(where, batch, 1, seq_q, k, index_k.extent(2));
  require(options.num_threads >= 0, where, "num_threads", options.num_threads, ">= 0");
}

}  // namespace detail

// The lightning indexer's top-k selection, one list per query token (groups = 1).
//   index_q [batch, H_I, seq_q, d_I]   (bshd() views the [batch, seq_q, H_I, d_I] layout)
//   index_k [batch, 1, seq_k, d_I]     one index key per token
//   weights [batch, H_I, seq_q]        signed head weights (any scaling folded in by the caller)
// Keys s <= p(t) only, p(t) = t + seq_k - seq_q; NaN scores are never selected.
template <class T>
TokenTopK lightning_top_k(TensorView<const std::type_identity_t<T>> index_q, TensorView<const std::type_identity_t<T>> index_k,
                          StridedView<const std::type_identity_t<T>, 3> weights, Index k,
                          const IndexerOptions& options = {}) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "lightning_top_k supports float and double");
  detail::check_indexer<T>(index_q, index_k, weights, k, options);
  return detail::LightningIndexer<T>(index_q, index_k, weights, k).run(options.num_threads);
}

// The same selection into `selection`, in its memory when no copy of it shares that memory and it is
// large enough (select layer after layer into one TokenTopK: at n = 32768, k = 2048 the lists are
// 256 MB). Bad input throws before `selection` is touched; if memory runs out it is left empty.
template <class T>
void lightning_top_k(TensorView<const std::type_identity_t<T>> index_q, TensorView<const std::type_identity_t<T>> index_k,
                     StridedView<const std::type_identity_t<T>, 3> weights, Index k, TokenTopK& selection,
                     const IndexerOptions& options = {}) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "lightning_top_k supports float and double");
  detail::check_indexer<T>(index_q, index_k, weights, k, options);
  selection = detail::LightningIndexer<T>(index_q, index_k, weights, k).run(options.num_threads, std::move(selection));
}

}  // namespace sparse_attention
