// SPDX-License-Identifier: Apache-2.0
// Attention over a token-level selection (TokenTopK, DSA): every query row attends to exactly the keys
// of its list, with the same online softmax as the blocked kernel. Two paths:
// - lanes (GQA/MQA groups that fill a vector): the Hq / Hkv query heads of a KV group share a token's
//   list, so they sit in the vector lanes of one tile engine and each gathered K/V row serves all of
//   them at once. Blocks of tokens walk their keys in chunks (a chunk's rows come from DRAM once per
//   block); rows are read in place through row-pointer tables, the next tile's rows prefetched.
// - rows (MHA, small groups): blocks of query tokens walk their keys in chunks; a chunk's selected K/V
//   rows are copied once into an L2-resident buffer and serve every row of the block (RowGather).
// No seq_q x seq_k structure is ever built.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <numbers>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "sparse_attention/core/tensor_view.hpp"
#include "sparse_attention/core/types.hpp"
#include "sparse_attention/dynamic/token_top_k.hpp"
#include "sparse_attention/kernel/blocked_attention.hpp"
#include "sparse_attention/kernel/parallel.hpp"
#include "sparse_attention/kernel/problem.hpp"
#include "sparse_attention/kernel/rows.hpp"
#include "sparse_attention/kernel/selection_tiles.hpp"
#include "sparse_attention/kernel/workspace.hpp"

namespace sparse_attention {
namespace detail {

// Tiles of a selection need no mask: every listed key is allowed.
struct NoMask {
  bool allowed(Index, Index) const { return true; }
  std::uint64_t bits(Index, Index) const { return ~std::uint64_t{0}; }
};

// Query rows of KV groups too small to fill the vector lanes (Hq == Hkv with a shared selection, small
// GQA groups), one row at a time: scores are dot products along the head dimension (a vector of
// keys at a time, summed across lanes together), the online softmax runs on up to 64 scores at a
// time, values accumulate by broadcast FMAs along the value dimension.
// A row's state (its scaled query, output accumulator, running maximum and sum) lives in the caller's
// memory, so a row can take its keys in several segments (GatheredAttention walks keys chunk by chunk).
// Rows are `dim` (`value_dim`) elements padded with zeros to a multiple of the vector lanes.
template <class T>
class RowGather {
 public:
  static constexpr Index kSegment = 64;
  struct State {
    T* q;  // the query row, sign applied (see SimdEngine): raw scores, |scale| in the exponent
    T* o;  // unnormalised output
    T m, l;
  };

  static Index scratch_size(Index padded_dim) { return 2 * kSegment + padded_dim; }

  // padded_dim, padded_value_dim: multiples of the vector lanes; the padding of every row is zero.
  RowGather(Index dim, Index value_dim, Index padded_dim, Index padded_value_dim, double scale, T* scratch)
      : dim_(dim), value_dim_(value_dim), padded_dim_(padded_dim), padded_value_dim_(padded_value_dim),
        s_(scratch), p_(scratch + kSegment), zero_row_(scratch + 2 * kSegment),
        sign_(scale < 0 ? T(-1) : (scale > 0 ? T(1) : T(0))),
        abs_scale_(scale == 0 ? T(1) : static_cast<T>(std::fabs(scale))),
        c_(static_cast<T>(static_cast<double>(abs_scale_) * std::numbers::log2e)) {
    std::fill(zero_row_, zero_row_ + padded_dim_, T(0));
  }

  void begin(State& st, const T* q, Index q_step) const {
    for (Index d = 0; d < dim_; ++d) st.q[d] = sign_ * q[d * q_step];
    std::fill(st.o, st.o + padded_value_dim_, T(0));
    st.m = -std::numeric_limits<T>::infinity();
    st.l = 0;
  }

  // Adds the keys k_rows[j], v_rows[j] (j < n <= kSegment) to the row.
  void update(State& st, Index n, const T* const* k_rows, const T* const* v_rows) {
    constexpr T kMinusInf = -std::numeric_limits<T>::infinity();
    T mx = st.m;
#if SPARSE_ATTENTION_SIMD_WIDTH > 0
    using V = simd::Vec<T>;
    constexpr int kLanes = V::kLanes;
    V vmax = V::set1(mx);
    for (Index j0 = 0; j0 < n; j0 += kLanes) {
      const int m = static_cast<int>(std::min<Index>(kLanes, n - j0));
      const T* rows[kLanes];
      for (int j = 0; j < kLanes; ++j) rows[j] = j < m ? k_rows[j0 + j] : zero_row_;
      V acc[kLanes];
      for (V& a : acc) a = V::zero();
      for (Index d = 0; d < padded_dim_; d += kLanes) {
        const V q = V::load(st.q + d);
        for (int j = 0; j < kLanes; ++j) acc[j] = simd::fma(q, V::load(rows[j] + d), acc[j]);
      }
      const unsigned missing = ((1u << kLanes) - 1) & ~((1u << m) - 1);
      const V scores = simd::blend(missing, simd::sum_lanes(acc), V::set1(kMinusInf));
      scores.store(s_ + j0);
      vmax = simd::max(vmax, scores);
    }
    mx = simd::reduce_max(vmax);
    const T ref = mx == kMinusInf ? T(0) : mx;  // see SimdEngine
    V vsum = V::zero();
    for (Index j0 = 0; j0 < n; j0 += kLanes) {
      const V p = simd::exp2((V::load(s_ + j0) - V::set1(ref)) * V::set1(c_));  // -inf (missing lanes): 0
      p.store(p_ + j0);
      vsum = vsum + p;
    }
    const T sum = simd::reduce_add(vsum);
#else
    for (Index j = 0; j < n; ++j) {
      T dot = 0;
      for (Index d = 0; d < padded_dim_; ++d) dot += st.q[d] * k_rows[j][d];
      s_[j] = dot;
      mx = std::max(mx, dot);
    }
    const T ref = mx == kMinusInf ? T(0) : mx;
    T sum = 0;
    for (Index j = 0; j < n; ++j) sum += (p_[j] = exp2_scalar((s_[j] - ref) * c_));
#endif
    const T alpha = exp2_scalar((st.m - ref) * c_);
    st.l = alpha * st.l + sum;
    scale_add(st.o, alpha, n, v_rows);
    st.m = mx;
  }

  void finish(const State& st, T* out, Index out_step, T* lse) const {
    const T inv = T(1) / st.l;
    for (Index d = 0; d < value_dim_; ++d) out[d * out_step] = st.l == T(0) ? T(0) : st.o[d] * inv;
    if (lse != nullptr) *lse = st.l == T(0) ? -std::numeric_limits<T>::infinity() : st.m * abs_scale_ + std::log(st.l);
  }

 private:
  static T exp2_scalar(T x) { return x == -std::numeric_limits<T>::infinity() ? T(0) : std::exp2(x); }

  // o = alpha * o + sum_j p[j] * rows[j]: up to 8 vectors of o in registers, keys innermost, so the
  // FMAs of one key are independent.
  void scale_add(T* o, T alpha, Index n, const T* const* rows) const {
    Index d = 0;
#if SPARSE_ATTENTION_SIMD_WIDTH > 0
    using V = simd::Vec<T>;
    constexpr Index kBlock = 8 * V::kLanes;
    for (; d + kBlock <= padded_value_dim_; d += kBlock) {
      V acc[8];
      for (int u = 0; u < 8; ++u) acc[u] = V::load(o + d + u * V::kLanes) * V::set1(alpha);
      for (Index j = 0; j < n; ++j) {
        const V pj = V::set1(p_[j]);
        for (int u = 0; u < 8; ++u) acc[u] = simd::fma(pj, V::load(rows[j] + d + u * V::kLanes), acc[u]);
      }
      for (int u = 0; u < 8; ++u) acc[u].store(o + d + u * V::kLanes);
    }
    for (; d < padded_value_dim_; d += V::kLanes) {
      V acc = V::load(o + d) * V::set1(alpha);
      for (Index j = 0; j < n; ++j) acc = simd::fma(V::set1(p_[j]), V::load(rows[j] + d), acc);
      acc.store(o + d);
    }
#else
    for (; d < padded_value_dim_; ++d) {
      T acc = alpha * o[d];
      for (Index j = 0; j < n; ++j) acc += p_[j] * rows[j][d];
      o[d] = acc;
    }
#endif
  }

  Index dim_, value_dim_, padded_dim_, padded_value_dim_;
  T *s_, *p_, *zero_row_;
  T sign_, abs_scale_, c_;
};

template <class T>
class GatheredAttention {
  using Engine = TileEngine<T>;
  static constexpr Index kTileKeys = 64;

 public:
  GatheredAttention(const Problem& p, const TokenTopK& selection, TensorView<const T> q, TensorView<const T> k,
                    TensorView<const T> v, TensorView<T> out, LseView<T> lse)
      : p_(p), s_(selection), q_(q), k_(k), v_(v), out_(out), lse_(lse),
        dims_{p.group(), kTileKeys, p.head_dim, p.value_dim}, pack_k_(k.stride(3) != 1), pack_v_(v.stride(3) != 1) {}

  void run(int num_threads) {
    // Groups filling a quarter of the lanes or less go row by row (see RowGather).
#if SPARSE_ATTENTION_SIMD_WIDTH > 0
    const bool rows = 4 * p_.group() <= simd::Vec<T>::kLanes;
#else
    const bool rows = p_.group() == 1;
#endif
    if (rows)
      run_rows(num_threads);
    else
      run_lanes(num_threads);
  }

 private:
  // Row by row, in blocks of query tokens that walk the keys in chunks of fixed positions.
  //
  // A row alone reads each of its k selected K/V rows once, from wherever they are: with one KV head
  // per query head nothing else shares them, and at DeepSeek's shape (k = 2048 of 32768 keys, 16
  // heads) that is ~1 TB of row reads from DRAM. A block of neighbouring tokens selects, between
  // them, most keys of its causal range. So a block walks its key range chunk by chunk: the rows of a
  // chunk that any row of the block selected are copied once into a contiguous buffer that stays in
  // L2 (in place, a head's rows sit a power-of-two stride apart, [B, S, H, D], and evict each other
  // from a few cache sets), and every row of the block takes its keys of that chunk from there. Each
  // K/V row is then read from memory once per block, not once per row that selected it.
  //
  // A row's keys are split where the chunks of fixed key positions split them, and within a chunk
  // into segments of RowGather::kSegment: its result depends on its list only, never on the block it
  // shares, so chunked prefill, decode and any thread count give the same bits.
  // When the block selects each key of its range four times or more on average (DeepSeek's shape: ~64),
  // the chunk's whole range is copied instead of first marking which keys are selected, and a row finds
  // the end of its keys in the chunk as it takes them. A row's list is read at a new place every chunk
  // (a cache miss per row and chunk, 14% of the time at n = 16384): the list of the row kListAhead rows
  // further on is prefetched.
  // The rows a chunk copies sit H * D elements apart in [B, S, H, D] (8 KB at 16 heads x d 128: a page
  // or more), where the hardware prefetcher does not follow: each is prefetched kCopyAhead rows before
  // its copy (at n = 32768 on a Zen 4 the copies fell from 12% to 7% of the samples; 2-6% faster).
  // Sizes: at 16 heads x d 128, 1 MB blocks (1024 tokens) were 3-7% faster than 512 KB at n = 16384
  // and 32768 (the chunk copies, read from DRAM, serve twice the tokens), 1-2% slower at n <= 8192;
  // 4 MB blocks were a third slower; 128 KB chunks no better than 256 KB.
  static constexpr std::size_t kChunkBytes = std::size_t{256} << 10;  // K and V rows of one chunk
  static constexpr std::size_t kBlockBytes = std::size_t{1} << 20;    // query and accumulator rows of one block
  static constexpr Index kListAhead = 8;                              // rows between a list's prefetch and use
  static constexpr Index kCopyAhead = 16;                             // rows between a K/V row's prefetch and copy

  struct RowScratch {
    T* gather = nullptr;
    T* chunk_k = nullptr;  // [chunk_keys][k_stride]: the chunk's selected K rows, at key - c0
    T* chunk_v = nullptr;
    std::vector<typename RowGather<T>::State> states;  // [token - i0][head in group]
    std::vector<std::size_t> cursors;                  // per token: its first key not yet taken
    std::vector<std::uint8_t> selected;                // [key - c0]: selected by some row of the block
    std::vector<const T*> k_rows, v_rows;              // one segment's rows
  };

  void run_rows(int num_threads) {
    const Index group = p_.group();
    const auto row_bytes = static_cast<Index>((p_.head_dim + p_.value_dim) * static_cast<Index>(sizeof(T)));
    chunk_keys_ = std::max<Index>(kTileKeys, static_cast<Index>(kChunkBytes) / std::max<Index>(row_bytes, 1) / kTileKeys * kTileKeys);
    block_tokens_ = std::clamp<Index>(static_cast<Index>(kBlockBytes) / std::max<Index>(row_bytes * group, 1), 1, p_.seq_q);
    // Few (batch, KV head) pairs: smaller blocks, at least four per thread (results do not depend on it).
    const Index pairs = p_.batch * p_.kv_heads, wanted = 4 * thread_count(num_threads, pairs * p_.seq_q);
    if (pairs < wanted) block_tokens_ = std::min(block_tokens_, ceil_div(p_.seq_q, ceil_div(wanted, pairs)));
    k_stride_ = round_up_vector(p_.head_dim), v_stride_ = round_up_vector(p_.value_dim);
    const Index blocks = ceil_div(p_.seq_q, block_tokens_);
    const Index items = p_.batch * p_.kv_heads * blocks;
    const int threads = thread_count(num_threads, items);
    const Index rows = block_tokens_ * group;
    const Index per_thread = RowGather<T>::scratch_size(k_stride_) + (rows + chunk_keys_) * (k_stride_ + v_stride_);
    AlignedBuffer<T> scratch(per_thread * threads);
    std::fill(scratch.data(), scratch.data() + per_thread * threads, T(0));  // the rows' padding
    std::vector<RowScratch> thread_scratch(static_cast<std::size_t>(threads));
    for (int t = 0; t < threads; ++t) {
      RowScratch& rs = thread_scratch[static_cast<std::size_t>(t)];
      T* base = scratch.data() + per_thread * t;
      rs.gather = base;
      base += RowGather<T>::scratch_size(k_stride_);
      rs.states.resize(static_cast<std::size_t>(rows));
      for (Index r = 0; r < rows; ++r) {
        rs.states[static_cast<std::size_t>(r)].q = base + r * k_stride_;
        rs.states[static_cast<std::size_t>(r)].o = base + rows * k_stride_ + r * v_stride_;
      }
      base += rows * (k_stride_ + v_stride_);
      rs.chunk_k = base;
      rs.chunk_v = base + chunk_keys_ * k_stride_;
      rs.cursors.resize(static_cast<std::size_t>(block_tokens_));
      rs.selected.resize(static_cast<std::size_t>(chunk_keys_));
      rs.k_rows.resize(kTileKeys);
      rs.v_rows.resize(kTileKeys);
    }
    // The KV heads of one block of tokens run one after the other: they walk the same lists (and Q, K
    // and V rows of neighbouring heads share pages). Later blocks see more keys: hand them out first.
    parallel_for_dynamic(items, threads, [&](Index n, int thread) {
      const Index item = items - 1 - n;
      const Index b = item / (p_.kv_heads * blocks), i0 = item / p_.kv_heads % blocks * block_tokens_, g = item % p_.kv_heads;
      run_row_block(b, g, i0, std::min(p_.seq_q, i0 + block_tokens_), thread_scratch[static_cast<std::size_t>(thread)]);
    });
  }

  static Index round_up_vector(Index n) {
    constexpr auto lanes = static_cast<Index>(kScratchAlignment / sizeof(T));
    return ceil_div(n, lanes) * lanes;
  }

  void run_row_block(Index b, Index g, Index i0, Index i1, RowScratch& rs) const {
    const Index group = p_.group(), h0 = g * group, list = s_.groups() == 1 ? 0 : g;
    const auto at = [](auto& vector, Index i) -> auto& { return vector[static_cast<std::size_t>(i)]; };
    RowGather<T> gather(p_.head_dim, p_.value_dim, k_stride_, v_stride_, p_.scale, rs.gather);
    Index first = std::numeric_limits<Index>::max(), last = -1;  // the block's key range
    Index pairs = 0;
    for (Index i = i0; i < i1; ++i) {
      const std::span<const std::int32_t> keys = s_.keys(b, list, i);
      if (!keys.empty()) first = std::min<Index>(first, keys.front()), last = std::max<Index>(last, keys.back());
      pairs += static_cast<Index>(keys.size());
      at(rs.cursors, i - i0) = 0;
      for (Index h = 0; h < group; ++h) gather.begin(at(rs.states, (i - i0) * group + h), &q_(b, h0 + h, i, 0), q_.stride(3));
    }
    // Rows the block selects four times on average or more: copy the chunk's whole key range rather than
    // mark which keys are selected (almost all are, and marking costs a pass over every list).
    const bool whole = last >= 0 && pairs >= 4 * (last - first + 1);
    for (Index c0 = last < 0 ? 0 : first / chunk_keys_ * chunk_keys_; c0 <= last; c0 += chunk_keys_) {
      // Which keys of the chunk the block selected (unless it copies the whole range), then those rows
      // into the chunk buffer.
      if (!whole) {
        std::fill(rs.selected.begin(), rs.selected.end(), 0);
        for (Index i = i0; i < i1; ++i) {
          const std::span<const std::int32_t> keys = s_.keys(b, list, i);
          for (std::size_t t = at(rs.cursors, i - i0); t < keys.size() && keys[t] < c0 + chunk_keys_; ++t)
            at(rs.selected, keys[t] - c0) = 1;
        }
      }
      const auto copied = [&](Index j) { return whole || at(rs.selected, j) != 0; };
      for (Index j = std::max<Index>(first - c0, 0), j1 = std::min(chunk_keys_, last + 1 - c0); j < j1; ++j) {
        if (const Index ahead = j + kCopyAhead; ahead < j1 && copied(ahead)) {
          if (!pack_k_) prefetch_row(&k_(b, g, c0 + ahead, 0), p_.head_dim);  // rows of unit stride only
          if (!pack_v_) prefetch_row(&v_(b, g, c0 + ahead, 0), p_.value_dim);
        }
        if (copied(j)) {
          copy_row(k_, b, g, c0 + j, p_.head_dim, rs.chunk_k + j * k_stride_);
          copy_row(v_, b, g, c0 + j, p_.value_dim, rs.chunk_v + j * v_stride_);
        }
      }
      for (Index i = i0; i < i1; ++i) {
        if (i + kListAhead < i1) __builtin_prefetch(s_.keys(b, list, i + kListAhead).data() + at(rs.cursors, i + kListAhead - i0), 0, 3);
        const std::span<const std::int32_t> keys = s_.keys(b, list, i);
        std::size_t end = at(rs.cursors, i - i0);  // the row's keys in this chunk: [cursor, end)
        while (end < keys.size() && keys[end] < c0 + chunk_keys_) ++end;
        for (std::size_t t = at(rs.cursors, i - i0); t < end; t += kTileKeys) {
          const Index n = std::min<Index>(kTileKeys, static_cast<Index>(end - t));
          for (Index c = 0; c < n; ++c) {
            const Index j = keys[t + static_cast<std::size_t>(c)] - c0;
            at(rs.k_rows, c) = rs.chunk_k + j * k_stride_;
            at(rs.v_rows, c) = rs.chunk_v + j * v_stride_;
          }
          for (Index h = 0; h < group; ++h) gather.update(at(rs.states, (i - i0) * group + h), n, rs.k_rows.data(), rs.v_rows.data());
        }
        at(rs.cursors, i - i0) = end;
      }
    }
    for (Index i = i0; i < i1; ++i)
      for (Index h = 0; h < group; ++h)
        gather.finish(at(rs.states, (i - i0) * group + h), &out_(b, h0 + h, i, 0), out_.stride(3),
                      lse_.data() != nullptr ? &lse_(b, h0 + h, i) : nullptr);
  }

  static void copy_row(const TensorView<const T>& t, Index b, Index g, Index key, Index dim, T* to) {
    const T* from = &t(b, g, key, 0);
    if (t.stride(3) == 1)
      std::copy(from, from + dim, to);
    else
      for (Index c = 0; c < dim; ++c) to[c] = from[c * t.stride(3)];
  }

  // Whole groups in the vector lanes: one tile engine per query token of a KV head, its Hq / Hkv query
  // heads in the lanes, so each gathered K/V row serves all of them at once.
  //
  // A token alone reads its k selected rows from wherever they are; at DeepSeek's shape (k = 2048 of
  // up to 32768 keys, one KV head) those reads come from DRAM and cost a third of the time. So, as the
  // rows path, a block of tokens walks its keys in chunks of fixed positions: every token of the block
  // takes its keys of one chunk before the block moves to the next, and the chunk's rows, read from
  // DRAM once, serve the block's other tokens from cache. The tokens' states (Q^T, O, m, l) stay in
  // their engines between chunks. Rows are read in place through row-pointer tables, up to 64 keys a
  // tile step, the next tile's rows prefetched while one is computed. A token's tiles split at chunk
  // boundaries and every 64 keys after: its result depends on its list only, never on its block.
  // At DeepSeek's shape (one KV head, d = 128): chunks of 512 keys, blocks of 100 tokens; 256 KB - 2 MB
  // chunks and 1.5 - 3 MB blocks are within 5% of each other, all ~25% faster than token by token.
  static constexpr std::size_t kLaneChunkBytes = std::size_t{512} << 10;  // K and V rows of one chunk
  static constexpr std::size_t kLaneBlockBytes = std::size_t{2} << 20;    // engine states of one block

  struct LaneScratch {
    std::vector<std::unique_ptr<Engine>> engines;  // [token - i0]
    std::vector<std::size_t> cursors;              // per token: its next key not yet taken
    T* pack = nullptr;                             // rows packed from non-unit strides, one tile
    const T** table = nullptr;                     // two tiles of K and V row pointers
  };

  void run_lanes(int num_threads) {
#if SPARSE_ATTENTION_SIMD_WIDTH > 0
    dims_.o_by_rows = p_.value_dim % simd::Vec<T>::kLanes == 0;  // V rows in whole vectors (else O^T)
    dims_.scores_by_quads = Engine::quads_apply(p_.head_dim, dims_.lanes());  // 4-wide broadcasts of K
#endif
    const Index engine_size = Engine::scratch_size(dims_);
    const auto row_bytes = static_cast<Index>((p_.head_dim + p_.value_dim) * static_cast<Index>(sizeof(T)));
    chunk_keys_ = std::max<Index>(kTileKeys, static_cast<Index>(kLaneChunkBytes) / std::max<Index>(row_bytes, 1) / kTileKeys * kTileKeys);
    block_tokens_ = std::clamp<Index>(static_cast<Index>(kLaneBlockBytes) / (engine_size * static_cast<Index>(sizeof(T))), 1, p_.seq_q);
    // Few (batch, KV head) pairs: smaller blocks, at least four per thread (results do not depend on it).
    const Index pairs = p_.batch * p_.kv_heads, wanted = 4 * thread_count(num_threads, pairs * p_.seq_q);
    if (pairs < wanted) block_tokens_ = std::min(block_tokens_, ceil_div(p_.seq_q, ceil_div(wanted, pairs)));
    const Index blocks = ceil_div(p_.seq_q, block_tokens_);
    const Index items = p_.batch * p_.kv_heads * blocks;
    const int threads = thread_count(num_threads, items);
    const Index pack_size = (pack_k_ ? kTileKeys * p_.head_dim : 0) + (pack_v_ ? kTileKeys * p_.value_dim : 0);
    const Index per_thread = engine_size * block_tokens_ + pack_size;
    AlignedBuffer<T> scratch(per_thread * threads);
    std::vector<const T*> tables(static_cast<std::size_t>(4 * kTileKeys * threads));
    std::vector<LaneScratch> thread_scratch(static_cast<std::size_t>(threads));
    for (int t = 0; t < threads; ++t) {
      LaneScratch& ls = thread_scratch[static_cast<std::size_t>(t)];
      T* base = scratch.data() + per_thread * t;
      for (Index i = 0; i < block_tokens_; ++i) ls.engines.push_back(std::make_unique<Engine>(dims_, base + i * engine_size));
      ls.cursors.resize(static_cast<std::size_t>(block_tokens_));
      ls.pack = base + engine_size * block_tokens_;
      ls.table = tables.data() + 4 * kTileKeys * t;
    }
    // Later blocks see more keys: hand them out first.
    parallel_for_dynamic(items, threads, [&](Index n, int thread) {
      const Index item = items - 1 - n;
      const Index b = item / (p_.kv_heads * blocks), g = item / blocks % p_.kv_heads, i0 = item % blocks * block_tokens_;
      run_lane_block(b, g, i0, std::min(p_.seq_q, i0 + block_tokens_), thread_scratch[static_cast<std::size_t>(thread)]);
    });
  }

  void run_lane_block(Index b, Index g, Index i0, Index i1, LaneScratch& ls) const {
    const Index h0 = g * p_.group(), list = s_.groups() == 1 ? 0 : g;
    const auto at = [](auto& vector, Index i) -> auto& { return vector[static_cast<std::size_t>(i)]; };
    Index first = std::numeric_limits<Index>::max(), last = -1;  // the block's key range
    for (Index i = i0; i < i1; ++i) {
      const std::span<const std::int32_t> keys = s_.keys(b, list, i);
      if (!keys.empty()) first = std::min<Index>(first, keys.front()), last = std::max<Index>(last, keys.back());
      at(ls.cursors, i - i0) = 0;
      at(ls.engines, i - i0)->begin(&q_(b, h0, i, 0), q_.stride(1), q_.stride(3), p_.group(), p_.scale);
    }
    const Index head_dim = p_.head_dim, value_dim = p_.value_dim;
    if (last < 0) return finish_lane_block(b, h0, i0, i1, ls);  // no keys (K and V may be empty)
    const T* const k_base = &k_(b, g, 0, 0);
    const T* const v_base = &v_(b, g, 0, 0);
    const Index k_step = k_.stride(2), v_step = v_.stride(2);
    // Rows of keys[t0, t0 + n) into a table: in place (prefetched: they are computed one tile later) or
    // packed from non-unit strides (then filled just before use).
    const bool ahead = !pack_k_ && !pack_v_;
    const auto fill = [&](const std::int32_t* keys, Index n, const T** k_rows, const T** v_rows) {
      if (ahead) {
        for (Index c = 0; c < n; ++c) {
          k_rows[c] = k_base + keys[c] * k_step;
          v_rows[c] = v_base + keys[c] * v_step;
          prefetch_row(k_rows[c], head_dim);
          prefetch_row(v_rows[c], value_dim);
        }
        return;
      }
      for (Index c = 0; c < n; ++c) {
        k_rows[c] = row(k_, b, g, keys[c], head_dim, pack_k_ ? ls.pack + c * head_dim : nullptr);
        v_rows[c] = row(v_, b, g, keys[c], value_dim, pack_v_ ? ls.pack + (pack_k_ ? kTileKeys * head_dim : 0) + c * value_dim : nullptr);
      }
    };
    struct Tile {
      Index i;        // token - i0; `count` when no tile is left
      std::size_t t;  // the tile's first key, a position in the token's list
      Index n;        // keys in the tile
    };
    const Index count = i1 - i0;
    for (Index c0 = first / chunk_keys_ * chunk_keys_; c0 <= last; c0 += chunk_keys_) {
      // The chunk's tiles in order, token by token, up to 64 keys each: the first tile from position t
      // of token i on, else of the tokens after it (from their cursors).
      const auto tile_from = [&](Index i, std::size_t t) -> Tile {
        for (; i < count; ++i) {
          const std::span<const std::int32_t> keys = s_.keys(b, list, i0 + i);
          Index n = 0;
          while (n < kTileKeys && t + static_cast<std::size_t>(n) < keys.size() &&
                 keys[t + static_cast<std::size_t>(n)] < c0 + chunk_keys_)
            ++n;
          if (n > 0) return {i, t, n};
          if (i + 1 < count) t = at(ls.cursors, i + 1);
        }
        return {count, 0, 0};
      };
      const auto keys_of = [&](const Tile& tile) { return s_.keys(b, list, i0 + tile.i).data() + tile.t; };
      Tile tile = tile_from(0, at(ls.cursors, 0));
      if (ahead && tile.n > 0) fill(keys_of(tile), tile.n, ls.table, ls.table + kTileKeys);
      for (int current = 0; tile.n > 0; current ^= 1) {
        const T** k_rows = ls.table + 2 * kTileKeys * current;
        const T** v_rows = k_rows + kTileKeys;
        const Tile next = tile_from(tile.i, tile.t + static_cast<std::size_t>(tile.n));  // maybe the next token's
        if (!ahead) {
          fill(keys_of(tile), tile.n, k_rows, v_rows);
        } else if (next.n > 0) {
          const T** next_rows = ls.table + 2 * kTileKeys * (current ^ 1);
          fill(keys_of(next), next.n, next_rows, next_rows + kTileKeys);
        }
        at(ls.engines, tile.i)->template step</*kMasked=*/false>(GatheredRows<T>{k_rows}, GatheredRows<T>{v_rows}, tile.n, NoMask{});
        at(ls.cursors, tile.i) = tile.t + static_cast<std::size_t>(tile.n);
        tile = next;
      }
    }
    finish_lane_block(b, h0, i0, i1, ls);
  }

  void finish_lane_block(Index b, Index h0, Index i0, Index i1, LaneScratch& ls) const {
    for (Index i = i0; i < i1; ++i) {
      T* lse = lse_.data() != nullptr ? &lse_(b, h0, i) : nullptr;
      ls.engines[static_cast<std::size_t>(i - i0)]->finish(&out_(b, h0, i, 0), out_.stride(1), out_.stride(3), lse, lse_.stride(1));
    }
  }

  // Row `key` of K or V for (b, g): in place when unit-stride along dim, else copied to `pack`.
  static const T* row(const TensorView<const T>& t, Index b, Index g, Index key, Index dim, T* pack) {
    if (pack == nullptr) return &t(b, g, key, 0);
    copy_row(t, b, g, key, dim, pack);
    return pack;
  }

  const Problem& p_;
  const TokenTopK& s_;
  TensorView<const T> q_, k_, v_;
  TensorView<T> out_;
  LseView<T> lse_;
  typename Engine::Dims dims_;
  bool pack_k_, pack_v_;
  Index chunk_keys_ = 0, block_tokens_ = 0, k_stride_ = 0, v_stride_ = 0;
};

// Batch element b of a [B, ...] view, as a batch of one.
template <class V>
V batch_element(const V& view, Index b) {
  auto extents = view.extents();
  extents[0] = 1;
  return V(view.data() == nullptr ? nullptr : view.data() + b * view.stride(0), extents, view.strides());
}

// Whether SelectionPath::kAuto runs a selection as tiles: when the fraction of the touched tiles' pairs
// it selects (the fill) times the gather's cost per pair (in pairs of a tile computed by the blocked
// kernel) reaches kMargin, 1 plus a share for the tiles' build (7 ms at n = 8192, k = 2048). The fill is
// estimated from up to kSampledBlocks query blocks spread evenly over the rows of tiles: O(sampled
// rows x k), not O(seq_q x k).
// The gather's cost per pair, measured on a Zen 5 (n = 8192, 2 threads, DSA's indexer selections of k = 512 to 2048,
// whose fills are 0.12 to 0.43): one KV head per query head (the row path) 3.7-5.0 (d = 64 to 128,
// 8 or 16 heads), 4 query heads per KV head 3.2 (row path), 16 per KV head (the lane path, which
// reads each gathered row once for all of them) 1.13. DSA's top-2048 at n = 8192 with 8 heads and
// 8 KV heads: 0.55x the time as tiles at d = 64, 0.63x at d = 128; at n = 32768 (fill 0.12) the
// gather is 2.2x faster, and at DeepSeek's shape (one KV head) it is 2x faster at n = 8192 as well.
template <class T>
bool selection_prefers_tiles(const Problem& p, const TokenTopK& s) {
  constexpr Index kSampledBlocks = 32;
  constexpr Index kBlock = SelectionTiles::kBlock;
#if SPARSE_ATTENTION_SIMD_WIDTH > 0
  const bool row_path = 4 * p.group() <= simd::Vec<T>::kLanes;
#else
  const bool row_path = p.group() == 1;
#endif
  constexpr double kRowPathCost = 3.5, kLanePathCost = 1.1, kMargin = 1.15;
  const double gather_cost = row_path ? kRowPathCost : kLanePathCost;
  const Index q_blocks = ceil_div(p.seq_q, kBlock), kv_blocks = ceil_div(p.seq_k, kBlock);
  const Index rows = p.batch * s.groups() * q_blocks;
  const Index samples = std::min(rows, kSampledBlocks);
  std::vector<Index> seen(static_cast<std::size_t>(kv_blocks), -1);
  double selected = 0, area = 0;
  for (Index n = 0; n < samples; ++n) {
    const Index r = (2 * n + 1) * rows / (2 * samples);  // the middle of the n-th of `samples` equal parts
    const Index qb = r % q_blocks, g = (r / q_blocks) % s.groups(), b = r / (q_blocks * s.groups());
    const Range queries{qb * kBlock, std::min(p.seq_q, (qb + 1) * kBlock)};
    Index tiles = 0;
    for (Index i = queries.begin; i < queries.end; ++i) {
      const std::span<const std::int32_t> keys = s.keys(b, g, i);  // sorted: a block's keys are adjacent
      selected += static_cast<double>(keys.size());
      Index block = -1;
      for (const std::int32_t j : keys) {
        if (j / kBlock == block) continue;
        block = j / kBlock;
        Index& mark = seen[static_cast<std::size_t>(block)];
        if (mark != r) {
          mark = r;
          ++tiles;
        }
      }
    }
    area += static_cast<double>(tiles * queries.size() * kBlock);
  }
  return area > 0 && selected / area * gather_cost >= kMargin;
}

}  // namespace detail

// How attention over a TokenTopK runs; both paths give the same result up to rounding.
enum class SelectionPath {
  kAuto,    // the faster of the two for this selection and shape (see detail::selection_prefers_tiles)
  kGather,  // each row's selected K/V rows gathered: time proportional to the selected pairs
  kTiles,   // the blocked kernel over the 64 x 64 tiles the selection touches, each row's keys as a bit
            // mask: time proportional to the touched tiles' pairs, at the blocked kernel's rate
};

// Attention of every query row over exactly the keys of its list in `selection` (lists shared by all
// heads, or one per KV head). Shapes as for the blocked kernel; the selection's batch, seq_q and seq_k
// must match and its groups be 1 or the number of KV heads. A row with an empty list outputs zeros
// and LSE -inf. Equals the blocked kernel under selection.mask(b, q_heads).
// `path`: gathered rows (work proportional to the selected pairs, bound by the cache bandwidth the
// gathered rows take) or the touched 64 x 64 tiles through the blocked kernel (work proportional to
// their pairs, at its FMA-bound rate; 512 bytes of masks per touched tile and KV group, built per
// call). kAuto takes tiles for selections that fill their tiles well (DSA's top-2048 at n = 8192:
// 43% of the touched tiles' pairs), the gather for sparse ones (n = 32768: 12%) and for query
// heads sharing a KV head, whose gathered rows serve the whole group. The two paths round
// differently, and the tile path's tiles start at the first query: where a chunk of queries must
// give one-shot prefill's rows bit for bit, pass kGather (kAuto may choose differently for each).
template <class T>
void attention(TensorView<const std::type_identity_t<T>> q, TensorView<const std::type_identity_t<T>> k,
               TensorView<const std::type_identity_t<T>> v, TensorView<T> out, const TokenTopK& selection,
               const AttentionOptions<T>& options = {}, SelectionPath path = SelectionPath::kAuto) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "sparse_attention::attention supports float and double");
  constexpr std::string_view where = "attention (token selection)";
  const detail::Problem p = detail::check_problem(where, q, k, v, out, options.lse, options.scale);
  detail::require(options.num_threads >= 0, where, "num_threads", options.num_threads, ">= 0");
  detail::require(selection.batch() == p.batch, where, "selection batch", selection.batch(),
                  "the batch of q (" + std::to_string(p.batch) + ")");
  detail::require(selection.seq_q() == p.seq_q, where, "selection seq_q", selection.seq_q(),
                  "seq_q of q (" + std::to_string(p.seq_q) + ")");
  detail::require(selection.seq_k() == p.seq_k, where, "selection seq_k", selection.seq_k(),
                  "seq_k of k (" + std::to_string(p.seq_k) + ")");
  detail::require(selection.groups() == 1 || selection.groups() == p.kv_heads, where, "selection groups",
                  selection.groups(), "1 (shared by every head) or the KV heads (" + std::to_string(p.kv_heads) + ")");
  detail::require(path == SelectionPath::kAuto || path == SelectionPath::kGather || path == SelectionPath::kTiles,
                  where, "path", static_cast<int>(path), "a SelectionPath (0 kAuto, 1 kGather, 2 kTiles)");
  if (p.batch == 0 || p.seq_q == 0) return;
  if (path == SelectionPath::kAuto)
    path = detail::selection_prefers_tiles<T>(p, selection) ? SelectionPath::kTiles : SelectionPath::kGather;
  if (path == SelectionPath::kGather) {
    detail::GatheredAttention<T>(p, selection, q, k, v, out, options.lse).run(options.num_threads);
    return;
  }
  detail::Problem one = p;
  one.batch = 1;
  constexpr Index kBlock = detail::SelectionTiles::kBlock;
  for (Index b = 0; b < p.batch; ++b) {
    const detail::SelectionTiles tiles(selection, b, p.q_heads, options.num_threads);
    const BlockLayout layout = BlockLayout::build(tiles, p.extent(), {kBlock, kBlock}, p.q_heads);
    detail::BlockedAttention<T, detail::SelectionTiles>(one, tiles, layout, detail::batch_element(q, b),
                                                        detail::batch_element(k, b), detail::batch_element(v, b),
                                                        detail::batch_element(out, b), detail::batch_element(options.lse, b))
        .run(options.num_threads);
  }
}

}  // namespace sparse_attention
