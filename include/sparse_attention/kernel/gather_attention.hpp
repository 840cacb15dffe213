// SPDX-License-Identifier: Apache-2.0
// Attention over a token-level selection (TokenTopK, DSA): every query row attends to exactly the keys
// of its list. One work item is one query token and one KV head: the Hq / Hkv query heads of the group
// share its list, so they sit in the vector lanes and each gathered K/V row serves all of them at once.
// The selected rows are read in place through row-pointer tables, 64 keys per tile step, with the same
// online softmax as the blocked kernel. No seq_q x seq_k structure is ever built.
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

// One query row over its gathered keys, for KV groups too small to fill the vector lanes (Hq == Hkv
// with a shared selection): scores are dot products along the head dimension, the online softmax
// runs on 64 scores at a time, values accumulate by broadcast FMAs along the value dimension.
template <class T>
class RowGather {
  static constexpr Index kChunk = 64;

 public:
  static Index scratch_size(Index dim, Index value_dim) { return dim + value_dim + 2 * kChunk + 64; }

  RowGather(Index dim, Index value_dim, T* scratch)
      : dim_(dim), value_dim_(value_dim), q_(scratch), o_(scratch + dim), s_(o_ + value_dim), p_(s_ + kChunk) {}

  // q[c * q_step]; K and V rows of the selected keys through row(key) accessors (unit stride).
  template <class KRow, class VRow>
  void run(const T* q, Index q_step, double scale, std::span<const std::int32_t> keys, KRow&& k_row, VRow&& v_row,
           T* out, Index out_step, T* lse) {
    // As in SimdEngine: raw scores, the scale in the exponent; negative scales negate q, zero zeroes it.
    const T sign = scale < 0 ? T(-1) : (scale > 0 ? T(1) : T(0));
    const T abs_scale = scale == 0 ? T(1) : static_cast<T>(std::fabs(scale));
    const T c = static_cast<T>(static_cast<double>(abs_scale) * std::numbers::log2e);
    for (Index d = 0; d < dim_; ++d) q_[d] = sign * q[d * q_step];
    std::fill(o_, o_ + value_dim_, T(0));
    T m = -std::numeric_limits<T>::infinity(), l = 0;
    for (std::size_t t0 = 0; t0 < keys.size(); t0 += kChunk) {
      const Index n = std::min<Index>(kChunk, static_cast<Index>(keys.size() - t0));
      T mx = m;
      for (Index j = 0; j < n; ++j) s_[j] = dot(q_, k_row(keys[t0 + static_cast<std::size_t>(j)]));
      for (Index j = 0; j < n; ++j) mx = std::max(mx, s_[j]);
      const T ref = mx == -std::numeric_limits<T>::infinity() ? T(0) : mx;  // see SimdEngine
      const T alpha = exp2_scalar((m - ref) * c);
      T sum = 0;
      for (Index j = 0; j < n; ++j) sum += (p_[j] = exp2_scalar((s_[j] - ref) * c));
      l = alpha * l + sum;
      scale_add(alpha, n, keys.subspan(t0), v_row);
      m = mx;
    }
    const T inv = T(1) / l;
    for (Index d = 0; d < value_dim_; ++d) out[d * out_step] = l == T(0) ? T(0) : o_[d] * inv;
    if (lse != nullptr) *lse = l == T(0) ? -std::numeric_limits<T>::infinity() : m * abs_scale + std::log(l);
  }

 private:
  static T exp2_scalar(T x) { return x == -std::numeric_limits<T>::infinity() ? T(0) : std::exp2(x); }

  T dot(const T* a, const T* b) const {
    Index d = 0;
    T sum = 0;
#if SPARSE_ATTENTION_SIMD_WIDTH > 0
    using V = simd::Vec<T>;
    V acc0 = V::zero(), acc1 = V::zero();
    for (; d + 2 * V::kLanes <= dim_; d += 2 * V::kLanes) {
      acc0 = simd::fma(V::load(a + d), V::load(b + d), acc0);
      acc1 = simd::fma(V::load(a + d + V::kLanes), V::load(b + d + V::kLanes), acc1);
    }
    for (; d + V::kLanes <= dim_; d += V::kLanes) acc0 = simd::fma(V::load(a + d), V::load(b + d), acc0);
    sum = simd::reduce_add(acc0 + acc1);
#endif
    for (; d < dim_; ++d) sum += a[d] * b[d];
    return sum;
  }

  // o = alpha * o + sum_j p[j] * V[key j]: up to 8 vectors of o in registers, keys innermost, so the
  // FMAs of one key are independent.
  template <class VRow>
  void scale_add(T alpha, Index n, std::span<const std::int32_t> keys, VRow& v_row) {
    const T* rows[kChunk];
    for (Index j = 0; j < n; ++j) rows[j] = v_row(keys[static_cast<std::size_t>(j)]);
    Index d = 0;
#if SPARSE_ATTENTION_SIMD_WIDTH > 0
    using V = simd::Vec<T>;
    constexpr Index kBlock = 8 * V::kLanes;
    for (; d + kBlock <= value_dim_; d += kBlock) {
      V acc[8];
      for (int u = 0; u < 8; ++u) acc[u] = V::load(o_ + d + u * V::kLanes) * V::set1(alpha);
      for (Index j = 0; j < n; ++j) {
        const V pj = V::set1(p_[j]);
        for (int u = 0; u < 8; ++u) acc[u] = simd::fma(pj, V::load(rows[j] + d + u * V::kLanes), acc[u]);
      }
      for (int u = 0; u < 8; ++u) acc[u].store(o_ + d + u * V::kLanes);
    }
    for (; d + V::kLanes <= value_dim_; d += V::kLanes) {
      V acc = V::load(o_ + d) * V::set1(alpha);
      for (Index j = 0; j < n; ++j) acc = simd::fma(V::set1(p_[j]), V::load(rows[j] + d), acc);
      acc.store(o_ + d);
    }
#endif
    for (; d < value_dim_; ++d) {
      T acc = alpha * o_[d];
      for (Index j = 0; j < n; ++j) acc += p_[j] * rows[j][d];
      o_[d] = acc;
    }
  }

  Index dim_, value_dim_;
  T *q_, *o_, *s_, *p_;
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
    rows_ = 4 * p_.group() <= simd::Vec<T>::kLanes;
#else
    rows_ = p_.group() == 1;
#endif
    // Item order: when a token's KV heads sit side by side in memory ([B, S, H, D]), the heads of a token
    // go one after the other, reading each selected key's rows as one block; when each head is contiguous
    // ([B, H, S, D]), one head's tokens go in a run, its rows staying in cache.
    token_major_ = k_.stride(1) < k_.stride(2);
    const Index items = p_.batch * p_.kv_heads * p_.seq_q;
    // Runs of consecutive items per thread: neighbouring tokens select mostly the same keys.
    const Index chunk = std::max<Index>(1, items / (32 * thread_count(num_threads, items)));
    const Index chunks = ceil_div(items, chunk);
    const int threads = thread_count(num_threads, chunks);
    const Index engine_size = rows_ ? RowGather<T>::scratch_size(p_.head_dim, p_.value_dim) : Engine::scratch_size(dims_);
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

 private:
  void run_item(Index item, T* engine_scratch, T* pack, const T** table) const {
    const Index b = item / (p_.seq_q * p_.kv_heads), rest = item % (p_.seq_q * p_.kv_heads);
    const Index i = token_major_ ? rest / p_.kv_heads : rest % p_.seq_q;
    const Index g = token_major_ ? rest % p_.kv_heads : rest / p_.seq_q;
    const Index h0 = g * p_.group();
    const std::span<const std::int32_t> keys = s_.keys(b, s_.groups() == 1 ? 0 : g, i);
    if (rows_) {
      RowGather<T> row_gather(p_.head_dim, p_.value_dim, engine_scratch);
      const auto k_row = [&](Index key) { return row(k_, b, g, key, p_.head_dim, pack_k_ ? pack : nullptr); };
      T* v_pack = pack_v_ ? pack + (pack_k_ ? kTileKeys * p_.head_dim : 0) : nullptr;
      const auto v_row = [&](Index key) { return row(v_, b, g, key, p_.value_dim, v_pack); };
      for (Index h = h0; h < h0 + p_.group(); ++h)
        row_gather.run(&q_(b, h, i, 0), q_.stride(3), p_.scale, keys, k_row, v_row, &out_(b, h, i, 0), out_.stride(3),
                       lse_.data() != nullptr ? &lse_(b, h, i) : nullptr);
      return;
    }

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
    const T* base = &t(b, g, key, 0);
    if (pack == nullptr) return base;
    for (Index c = 0; c < dim; ++c) pack[c] = base[c * t.stride(3)];
    return pack;
  }

  const Problem& p_;
  const TokenTopK& s_;
  TensorView<const T> q_, k_, v_;
  TensorView<T> out_;
  LseView<T> lse_;
  typename Engine::Dims dims_;
  bool pack_k_, pack_v_;
  bool rows_ = false, token_major_ = false;
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
