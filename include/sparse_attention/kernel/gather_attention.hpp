// SPDX-License-Identifier: Apache-2.0
// Attention over a token-level selection (TokenTopK, DSA): every query row attends to exactly the keys
// of its list, with the same online softmax as the blocked kernel. Two paths:
// - lanes (GQA/MQA groups that fill a vector): one work item is one query token and one KV head; the
//   Hq / Hkv query heads of the group share its list, so they sit in the vector lanes and each gathered
//   K/V row serves all of them at once. Rows are read in place through row-pointer tables, 64 keys per
//   tile step, the next tile's rows prefetched.
// - rows (MHA, small groups): blocks of query tokens walk their keys in chunks; a chunk's selected K/V
//   rows are copied once into an L2-resident buffer and serve every row of the block (RowGather).
// No seq_q x seq_k structure is ever built.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
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
  static constexpr std::size_t kChunkBytes = std::size_t{256} << 10;  // K and V rows of one chunk
  static constexpr std::size_t kBlockBytes = std::size_t{512} << 10;  // query and accumulator rows of one block

  struct RowScratch {
    T* gather = nullptr;
    T* chunk_k = nullptr;  // [chunk_keys][k_stride]: the chunk's selected K rows, at key - c0
    T* chunk_v = nullptr;
    std::vector<typename RowGather<T>::State> states;  // [token - i0][head in group]
    std::vector<std::size_t> cursors, ends;            // per token: its keys in the current chunk
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
      rs.ends.resize(static_cast<std::size_t>(block_tokens_));
      rs.selected.resize(static_cast<std::size_t>(chunk_keys_));
      rs.k_rows.resize(kTileKeys);
      rs.v_rows.resize(kTileKeys);
    }
    parallel_for_dynamic(items, threads, [&](Index item, int thread) {
      const Index b = item / (p_.kv_heads * blocks), g = item / blocks % p_.kv_heads, i0 = item % blocks * block_tokens_;
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
    for (Index i = i0; i < i1; ++i) {
      const std::span<const std::int32_t> keys = s_.keys(b, list, i);
      if (!keys.empty()) first = std::min<Index>(first, keys.front()), last = std::max<Index>(last, keys.back());
      at(rs.cursors, i - i0) = 0;
      for (Index h = 0; h < group; ++h) gather.begin(at(rs.states, (i - i0) * group + h), &q_(b, h0 + h, i, 0), q_.stride(3));
    }
    for (Index c0 = last < 0 ? 0 : first / chunk_keys_ * chunk_keys_; c0 <= last; c0 += chunk_keys_) {
      // Which keys of the chunk the block selected, then those rows into the chunk buffer.
      std::fill(rs.selected.begin(), rs.selected.end(), 0);
      for (Index i = i0; i < i1; ++i) {
        const std::span<const std::int32_t> keys = s_.keys(b, list, i);
        std::size_t end = at(rs.cursors, i - i0);
        for (; end < keys.size() && keys[end] < c0 + chunk_keys_; ++end) at(rs.selected, keys[end] - c0) = 1;
        at(rs.ends, i - i0) = end;
      }
      for (Index j = 0; j < chunk_keys_; ++j)
        if (at(rs.selected, j) != 0) {
          copy_row(k_, b, g, c0 + j, p_.head_dim, rs.chunk_k + j * k_stride_);
          copy_row(v_, b, g, c0 + j, p_.value_dim, rs.chunk_v + j * v_stride_);
        }
      for (Index i = i0; i < i1; ++i) {
        const std::span<const std::int32_t> keys = s_.keys(b, list, i);
        for (std::size_t t = at(rs.cursors, i - i0), end = at(rs.ends, i - i0); t < end; t += kTileKeys) {
          const Index n = std::min<Index>(kTileKeys, static_cast<Index>(end - t));
          for (Index c = 0; c < n; ++c) {
            const Index j = keys[t + static_cast<std::size_t>(c)] - c0;
            at(rs.k_rows, c) = rs.chunk_k + j * k_stride_;
            at(rs.v_rows, c) = rs.chunk_v + j * v_stride_;
          }
          for (Index h = 0; h < group; ++h) gather.update(at(rs.states, (i - i0) * group + h), n, rs.k_rows.data(), rs.v_rows.data());
        }
        at(rs.cursors, i - i0) = at(rs.ends, i - i0);
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

  // Whole groups in the vector lanes: one work item is one query token and one KV head.
  void run_lanes(int num_threads) {
    // Item order: when a token's KV heads sit side by side in memory ([B, S, H, D]), the heads of a token
    // go one after the other, reading each selected key's rows as one block; when each head is contiguous
    // ([B, H, S, D]), one head's tokens go in a run, its rows staying in cache.
    token_major_ = k_.stride(1) < k_.stride(2);
    const Index items = p_.batch * p_.kv_heads * p_.seq_q;
    // Runs of consecutive items per thread: neighbouring tokens select mostly the same keys.
    const Index chunk = std::max<Index>(1, items / (32 * thread_count(num_threads, items)));
    const Index chunks = ceil_div(items, chunk);
    const int threads = thread_count(num_threads, chunks);
    const Index engine_size = Engine::scratch_size(dims_);
    const Index pack_size = (pack_k_ ? kTileKeys * p_.head_dim : 0) + (pack_v_ ? kTileKeys * p_.value_dim : 0);
    const Index per_thread = engine_size + pack_size;
    AlignedBuffer<T> scratch(per_thread * threads);
    std::vector<const T*> tables(static_cast<std::size_t>(4 * kTileKeys * threads));
    parallel_for_dynamic(chunks, threads, [&](Index c, int thread) {
      T* base = scratch.data() + per_thread * thread;
      const T** table = tables.data() + 4 * kTileKeys * thread;
      for (Index item = c * chunk; item < std::min(items, (c + 1) * chunk); ++item)
        run_item(item, base, base + engine_size, table);
    });
  }

  void run_item(Index item, T* engine_scratch, T* pack, const T** table) const {
    const Index b = item / (p_.seq_q * p_.kv_heads), rest = item % (p_.seq_q * p_.kv_heads);
    const Index i = token_major_ ? rest / p_.kv_heads : rest % p_.seq_q;
    const Index g = token_major_ ? rest % p_.kv_heads : rest / p_.seq_q;
    const Index h0 = g * p_.group();
    const std::span<const std::int32_t> keys = s_.keys(b, s_.groups() == 1 ? 0 : g, i);
    Engine engine(dims_, engine_scratch);
    engine.begin(&q_(b, h0, i, 0), q_.stride(1), q_.stride(3), p_.group(), p_.scale);
    // Two tables of row pointers: while one tile is computed, the rows of the next are already being
    // fetched. The selected rows are scattered over memory; without the prefetch every first touch of a
    // row waits for it (40% slower at DeepSeek's shape). Rows that need packing (non-unit stride along
    // the head dimension) are built tile by tile instead.
    const bool ahead = !pack_k_ && !pack_v_;
    const auto tile_cols = [&](std::size_t t0) { return std::min<Index>(kTileKeys, static_cast<Index>(keys.size() - t0)); };
    const auto fill = [&](std::size_t t0, const T** k_rows, const T** v_rows) {
      for (Index c = 0; c < tile_cols(t0); ++c) {
        const Index key = keys[t0 + static_cast<std::size_t>(c)];
        k_rows[c] = row(k_, b, g, key, p_.head_dim, pack_k_ ? pack + c * p_.head_dim : nullptr);
        v_rows[c] = row(v_, b, g, key, p_.value_dim,
                        pack_v_ ? pack + (pack_k_ ? kTileKeys * p_.head_dim : 0) + c * p_.value_dim : nullptr);
        if (ahead) {
          prefetch_row(k_rows[c], p_.head_dim);
          prefetch_row(v_rows[c], p_.value_dim);
        }
      }
    };
    if (ahead && !keys.empty()) fill(0, table, table + kTileKeys);
    for (std::size_t t0 = 0, current = 0; t0 < keys.size(); t0 += kTileKeys, current ^= 1) {
      const T** k_rows = table + 2 * kTileKeys * current;
      const T** v_rows = k_rows + kTileKeys;
      if (!ahead) {
        fill(t0, k_rows, v_rows);
      } else if (t0 + kTileKeys < keys.size()) {
        const T** next = table + 2 * kTileKeys * (current ^ 1);
        fill(t0 + kTileKeys, next, next + kTileKeys);
      }
      engine.template step</*kMasked=*/false>(GatheredRows<T>{k_rows}, GatheredRows<T>{v_rows}, tile_cols(t0), NoMask{});
    }
    T* lse = lse_.data() != nullptr ? &lse_(b, h0, i) : nullptr;
    engine.finish(&out_(b, h0, i, 0), out_.stride(1), out_.stride(3), lse, lse_.stride(1));
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
  bool token_major_ = false;
  Index chunk_keys_ = 0, block_tokens_ = 0, k_stride_ = 0, v_stride_ = 0;
};

}  // namespace detail

// Attention of every query row over exactly the keys of its list in `selection` (lists shared by all
// heads, or one per KV head). Shapes as for the blocked kernel; the selection's batch, seq_q and seq_k
// must match and its groups be 1 or the number of KV heads. A row with an empty list outputs zeros
// and LSE -inf. Equals the blocked kernel under selection.mask(b, q_heads), without its O(n^2) scan.
template <class T>
void attention(TensorView<const std::type_identity_t<T>> q, TensorView<const std::type_identity_t<T>> k,
               TensorView<const std::type_identity_t<T>> v, TensorView<T> out, const TokenTopK& selection,
               const AttentionOptions<T>& options = {}) {
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
  if (p.batch == 0 || p.seq_q == 0) return;
  detail::GatheredAttention<T>(p, selection, q, k, v, out, options.lse).run(options.num_threads);
}

}  // namespace sparse_attention
