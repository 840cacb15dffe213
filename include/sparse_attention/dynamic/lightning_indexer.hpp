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
#include <bit>
#include <cstdint>
#include <type_traits>
#include <limits>
#include <string>
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

// Moves the k best of (scores, keys)[0, n) -- larger score first, then smaller key -- to [0, k), in no
// particular order, and returns the k-th best score. A radix select over the scores' order bits, 11 bits
// a pass, from the highest bit where the candidates differ: each pass histograms the undecided candidates
// and settles all but one digit's worth; the scatters use conditional increments, so the cost does not
// depend on how the input is arranged (nth_element degrades on the half-sorted buffers a stream leaves).
// Candidates with equal scores at the boundary go by smaller key. bits/tmp_*: n elements of scratch.
template <class T>
T select_best(T* scores, std::int32_t* keys, Index n, Index k, OrderBits<T>* bits, OrderBits<T>* tmp_bits,
              T* tmp_scores, std::int32_t* tmp_keys) {
  using U = OrderBits<T>;
  constexpr int kDigit = 11, kWidth = 8 * sizeof(U);
  U differ = 0;
  for (Index t = 0; t < n; ++t) bits[t] = order_bits(scores[t]);
  for (Index t = 1; t < n; ++t) differ |= bits[t] ^ bits[0];
  Index chosen = 0, lo = 0, hi = n, need = k;
  int shift = differ == 0 ? -1 : std::max(0, kWidth - std::countl_zero(differ) - kDigit);
  for (; shift >= 0 && need > 0 && hi - lo > need; shift = shift == 0 ? -1 : std::max(0, shift - kDigit)) {
    Index count[1 << kDigit] = {};
    for (Index t = lo; t < hi; ++t) ++count[(bits[t] >> shift) & ((U{1} << kDigit) - 1)];
    Index above = 0;
    int v = (1 << kDigit) - 1;
    for (; v > 0 && above + count[v] < need; --v) above += count[v];
    Index keep = chosen, undecided = 0;
    for (Index t = lo; t < hi; ++t) {
      const auto digit = static_cast<int>((bits[t] >> shift) & ((U{1} << kDigit) - 1));
      const U b = bits[t];
      const T sc = scores[t];
      const std::int32_t key = keys[t];
      bits[keep] = b, scores[keep] = sc, keys[keep] = key;
      keep += digit > v ? 1 : 0;
      tmp_bits[undecided] = b, tmp_scores[undecided] = sc, tmp_keys[undecided] = key;
      undecided += digit == v ? 1 : 0;
    }
    std::copy(tmp_bits, tmp_bits + undecided, bits + keep);
    std::copy(tmp_scores, tmp_scores + undecided, scores + keep);
    std::copy(tmp_keys, tmp_keys + undecided, keys + keep);
    need -= above;
    chosen = lo = keep;
    hi = keep + undecided;
  }
  if (hi - lo > need) {
    // Every undecided candidate has the same score: the smaller keys win.
    std::vector<std::pair<std::int32_t, Index>> by_key;
    for (Index t = lo; t < hi; ++t) by_key.emplace_back(keys[t], t);
    std::nth_element(by_key.begin(), by_key.begin() + need, by_key.end());
    for (Index t = 0; t < need; ++t) tmp_keys[t] = by_key[static_cast<std::size_t>(t)].first;
    std::copy(tmp_keys, tmp_keys + need, keys + lo);
  }
  T worst = std::numeric_limits<T>::infinity();
  for (Index t = 0; t < k; ++t) worst = std::min(worst, scores[t]);
  return worst;
}

// The k best candidates of one query, offered in increasing key order: appended (scores and keys side by
// side) while they beat the threshold, a lower bound of the k-th best score so far. When 2k are held, the
// buffer shrinks without sorting: one histogram of 11 order bits (from the highest bit where the
// candidates differ) finds the bucket holding the k-th best, every candidate at or above that bucket
// stays, and the bucket's lower edge becomes the threshold. The exact k best are picked once, at the end.
// A newcomer must beat the threshold strictly: an equal score belongs to a larger key, which loses the
// tie to any kept candidate of that score.
template <class T>
class RowTopK {
 public:
  static constexpr Index kSlack = 16;  // appends come a vector at a time

  // Scratch the selections share (2k + kSlack elements each), one per thread.
  struct CutScratch {
    OrderBits<T>* bits;
    OrderBits<T>* tmp_bits;
    T* tmp_scores;
    std::int32_t* tmp_keys;
  };

  // scores, keys: 2k + kSlack each.
  RowTopK(T* scores, std::int32_t* keys, const CutScratch& cut, Index k) : scores_(scores), keys_(keys), cut_(cut), k_(k) {}

  T threshold() const { return threshold_; }
  T* score_end() { return scores_ + n_; }
  std::int32_t* key_end() { return keys_ + n_; }
  void appended(Index count) {
    n_ += count;
    if (n_ >= 2 * k_) shrink();
  }

  // The selected keys, ascending, into `out` (capacity k); returns how many. `marks` holds one bit per
  // key up to the largest selected one, all clear, and is left clear: sorting by marking is O(k + n/64).
  Index finish(std::int32_t* out, std::uint64_t* marks) {
    if (n_ > k_) {
      select_best(scores_, keys_, n_, k_, cut_.bits, cut_.tmp_bits, cut_.tmp_scores, cut_.tmp_keys);
      n_ = k_;
    }
    std::int32_t last = -1;
    for (Index t = 0; t < n_; ++t) {
      marks[keys_[t] / 64] |= std::uint64_t{1} << (keys_[t] % 64);
      last = std::max(last, keys_[t]);
    }
    Index count = 0;
    for (std::int32_t word = 0; word <= last / 64; ++word) {
      for (std::uint64_t bits = marks[word]; bits != 0; bits &= bits - 1) out[count++] = word * 64 + __builtin_ctzll(bits);
      marks[word] = 0;
    }
    return count;
  }

 private:
  void shrink() {
    using U = OrderBits<T>;
    constexpr int kDigit = 11, kWidth = 8 * sizeof(U);
    // The highest bit where the candidates differ is the highest where the largest and smallest do.
    T largest = scores_[0], smallest = scores_[0];
    Index t = 0;
#if SPARSE_ATTENTION_SIMD_WIDTH > 0
    using V = simd::Vec<T>;
    V up = V::set1(largest), down = V::set1(-smallest);
    for (; t + V::kLanes <= n_; t += V::kLanes) {
      const V x = V::load(scores_ + t);
      up = simd::max(up, x);
      down = simd::max(down, V::zero() - x);
    }
    largest = simd::reduce_max(up), smallest = -simd::reduce_max(down);
#endif
    for (; t < n_; ++t) largest = std::max(largest, scores_[t]), smallest = std::min(smallest, scores_[t]);
    const auto select_exactly = [&] {
      threshold_ = select_best(scores_, keys_, n_, k_, cut_.bits, cut_.tmp_bits, cut_.tmp_scores, cut_.tmp_keys);
      n_ = k_;
    };
    const U high_bits = order_bits(largest), differ = high_bits ^ order_bits(smallest);
    if (differ == 0) return select_exactly();  // all scores equal: only a selection by key can shrink
    const int shift = std::max(0, kWidth - std::countl_zero(differ) - kDigit);
    std::uint32_t count[1 << kDigit] = {};
    for (t = 0; t < n_; ++t) ++count[(order_bits(scores_[t]) >> shift) & ((U{1} << kDigit) - 1)];
    Index at_or_above = 0;
    int v = (1 << kDigit) - 1;
    for (; v > 0 && at_or_above + count[v] < k_; --v) at_or_above += count[v];
    if (at_or_above + count[v] >= n_ - kSlack) return select_exactly();  // one bucket holds nearly all
    // The lowest score in bucket v (the bits above the digit are shared by every candidate): the
    // candidates at or above it stay. Scores are never NaN here (offer's comparison drops them).
    const U high = shift + kDigit >= kWidth ? U{0} : high_bits & ~((U{1} << (shift + kDigit)) - 1);
    const T edge = from_order_bits<T>(high | (static_cast<U>(v) << shift));
    Index kept = 0;
    t = 0;
#if SPARSE_ATTENTION_SIMD_WIDTH > 0
    for (; t + V::kLanes <= n_; t += V::kLanes) {
      const V x = V::load(scores_ + t);
      kept += simd::compress_pairs(x, keys_ + t, simd::greater_equal_bits(x, V::set1(edge)), scores_ + kept, keys_ + kept);
    }
#endif
    for (; t < n_; ++t) {
      scores_[kept] = scores_[t];
      keys_[kept] = keys_[t];
      kept += scores_[t] >= edge ? 1 : 0;
    }
    n_ = kept;
    threshold_ = std::max(threshold_, edge);
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

  TokenTopK run(int num_threads) const {
    TokenTopK selection(batch_, 1, seq_q_, top_k_, seq_k_);
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
    const Index row_capacity = 2 * top_k_ + RowTopK<T>::kSlack;
    AlignedBuffer<T> scratch(per_thread * threads);
    std::vector<T> scores(static_cast<std::size_t>(kTileQ * row_capacity * threads));
    std::vector<std::int32_t> keys(static_cast<std::size_t>((kTileQ * row_capacity + top_k_) * threads));
    std::vector<OrderBits<T>> cut_bits(static_cast<std::size_t>(2 * row_capacity * threads));
    std::vector<T> cut_scores(static_cast<std::size_t>(row_capacity * threads));
    std::vector<std::int32_t> cut_keys(static_cast<std::size_t>(row_capacity * threads));
    const Index words = ceil_div(seq_k_, 64) + 1;
    std::vector<std::uint64_t> marks(static_cast<std::size_t>(words * threads), 0);
    // The last query tiles see the most keys: hand them out first.
    parallel_for_dynamic(items, threads, [&](Index n, int thread) {
      const Index item = items - 1 - n;
      const typename RowTopK<T>::CutScratch cut{cut_bits.data() + 2 * row_capacity * thread,
                                                cut_bits.data() + (2 * thread + 1) * row_capacity,
                                                cut_scores.data() + row_capacity * thread, cut_keys.data() + row_capacity * thread};
      Thread t{scratch.data() + per_thread * thread, scores.data() + kTileQ * row_capacity * thread,
               keys.data() + (kTileQ * row_capacity + top_k_) * thread, cut, marks.data() + words * thread};
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
    const Index row_capacity = 2 * top_k_ + RowTopK<T>::kSlack;
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
  constexpr std::string_view where = "lightning_top_k";
  detail::check_data(where, "index_q", index_q);
  detail::check_data(where, "index_k", index_k);
  detail::check_data(where, "weights", weights);
  const Index batch = index_q.extent(0), heads = index_q.extent(1), seq_q = index_q.extent(2), dim = index_q.extent(3);
  detail::require(k >= 1, where, "k", k, ">= 1");
  detail::require(heads >= 1, where, "H_I (index_q.extent(1))", heads, ">= 1");
  detail::require(dim >= 1, where, "d_I (index_q.extent(3))", dim, ">= 1");
  if (index_k.extent(0) != batch || index_k.extent(1) != 1 || index_k.extent(3) != dim)
    detail::throw_invalid_argument(where, "index_k shape", detail::format_list(index_k.extents()),
                                   "[batch " + std::to_string(batch) + ", 1, seq_k, d_I " + std::to_string(dim) +
                                       "] (one index key per token, as wide as index_q)");
  const std::array<Index, 3> w_shape{batch, heads, seq_q};
  if (weights.extents() != w_shape)
    detail::throw_invalid_argument(where, "weights shape", detail::format_list(weights.extents()),
                                   detail::format_list(w_shape) + " = [batch, H_I, seq_q]");
  TokenTopK::check_dims(where, batch, 1, seq_q, k, index_k.extent(2));
  detail::require(options.num_threads >= 0, where, "num_threads", options.num_threads, ">= 0");
  return detail::LightningIndexer<T>(index_q, index_k, weights, k).run(options.num_threads);
}

}  // namespace sparse_attention
