// SPDX-License-Identifier: Apache-2.0
// The generic blocked sparse-attention kernel. One work item is one (batch, query head, query block);
// it makes one pass over its BlockLayout row: partial tiles first (the policy's element predicate
// masks them), then full tiles (no masking code at all), each through the same tile step:
//
//   S   = (scale * Q_t) * K_t^T          (rows x cols)        Eigen GEMM
//   S   = -inf where the policy forbids   (partial tiles only)
//   m,l = online softmax update           P = exp(S - m)
//   acc = alpha * acc + P * V_t           (rows x value_dim)   Eigen GEMM
//
// and finally O = acc / l, LSE = m + log(l). Memory is O(tile) per thread; time is O(computed pairs).
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "sparse_attention/core/block_layout.hpp"
#include "sparse_attention/core/mask_policy.hpp"
#include "sparse_attention/core/tensor_view.hpp"
#include "sparse_attention/core/types.hpp"
#include "sparse_attention/kernel/online_softmax.hpp"
#include "sparse_attention/kernel/parallel.hpp"
#include "sparse_attention/kernel/problem.hpp"
#include "sparse_attention/kernel/workspace.hpp"

namespace sparse_attention {
namespace detail {

template <class T, class Policy>
class BlockedAttention {
  using RowMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ColMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
  using ScratchRows = Eigen::Map<RowMajor, Eigen::Aligned64>;
  using Tile = Eigen::Map<ColMajor, Eigen::Aligned64>;
  // Rows of K or V with unit stride along the head dimension.
  using InputRows = Eigen::Map<const RowMajor, Eigen::Unaligned, Eigen::OuterStride<>>;

 public:
  BlockedAttention(const Problem& p, const Policy& policy, const BlockLayout& layout,
                   TensorView<const T> q, TensorView<const T> k, TensorView<const T> v,
                   TensorView<T> out, LseView<T> lse)
      : p_(p), policy_(policy), layout_(layout), q_(q), k_(k), v_(v), out_(out), lse_(lse),
        pack_k_(k.stride(3) != 1), pack_v_(v.stride(3) != 1) {}

  void run(int num_threads) {
    const Index items = p_.batch * p_.q_heads * layout_.q_blocks();
    const int threads = thread_count(num_threads, items);
    const Index per_thread = carve(nullptr).used;
    AlignedBuffer<T> scratch(per_thread * threads);
    parallel_for_dynamic(items, threads, [&](Index item, int thread) {
      run_item(item, carve(scratch.data() + per_thread * thread));
    });
  }

 private:
  struct Scratch {
    T* q;       // (block.q, head_dim)   row-major, pre-scaled
    T* scores;  // (block.q, block.kv)   column-major
    T* acc;     // (block.q, value_dim)  column-major
    T* k;       // (block.kv, head_dim)  packed K tile when K is not unit-stride along dim
    T* v;       // (block.kv, value_dim) packed V tile when V is not unit-stride along dim
    T* stats[6];  // (block.q) each: the online softmax state
    Index used;   // elements taken from the thread's scratch
  };

  // Lays the scratch of one thread out from `base`; with base = nullptr, only measures it.
  Scratch carve(T* base) const {
    const Index bq = layout_.block().q, bk = layout_.block().kv;
    ScratchCarver<T> c(base);
    Scratch s{};
    s.q = c.take(bq * p_.head_dim);
    s.scores = c.take(bq * bk);
    s.acc = c.take(bq * p_.value_dim);
    s.k = c.take(pack_k_ ? bk * p_.head_dim : 0);
    s.v = c.take(pack_v_ ? bk * p_.value_dim : 0);
    for (T*& stat : s.stats) stat = c.take(bq);
    s.used = c.used();
    return s;
  }

  void run_item(Index item, const Scratch& s) const {
    const Index q_blocks = layout_.q_blocks();
    const Index qb = item % q_blocks;
    const Index h = (item / q_blocks) % p_.q_heads;
    const Index b = item / (q_blocks * p_.q_heads);
    const Index kv_h = h / p_.group();
    const Range rows = layout_.grid().q_range(qb);
    const Index n_rows = rows.size();

    // Q tile, scaled once here rather than once per score.
    const T scale = static_cast<T>(p_.scale);
    for (Index r = 0; r < n_rows; ++r)
      for (Index c = 0; c < p_.head_dim; ++c)
        s.q[r * p_.head_dim + c] = scale * q_(b, h, rows.begin + r, c);
    const ScratchRows q_tile(s.q, n_rows, p_.head_dim);
    Tile acc(s.acc, n_rows, p_.value_dim);
    acc.setZero();
    OnlineSoftmax<T> softmax(n_rows, s.stats[0], s.stats[1], s.stats[2], s.stats[3], s.stats[4],
                             s.stats[5]);

    const BlockLayout::Row row = layout_.row(h, qb);
    for (std::int32_t kb : row.partial)
      tile_step</*kMasked=*/true>(b, h, kv_h, rows, kb, q_tile, acc, softmax, s);
    for (std::int32_t kb : row.full)
      tile_step</*kMasked=*/false>(b, h, kv_h, rows, kb, q_tile, acc, softmax, s);

    write_rows(b, h, rows, acc, softmax);
  }

  template <bool kMasked>
  void tile_step(Index b, Index h, Index kv_h, Range rows, Index kb, const ScratchRows& q_tile,
                 Tile& acc, OnlineSoftmax<T>& softmax, const Scratch& s) const {
    const Range cols = layout_.grid().kv_range(kb);
    const Index n_rows = rows.size(), n_cols = cols.size();
    const InputRows k_tile = input_rows(k_, b, kv_h, cols, p_.head_dim, s.k);    // (cols, head_dim)
    const InputRows v_tile = input_rows(v_, b, kv_h, cols, p_.value_dim, s.v);  // (cols, value_dim)

    Tile scores(s.scores, n_rows, n_cols);                                      // (rows, cols)
    scores.noalias() = q_tile * k_tile.transpose();
    if constexpr (kMasked) {
      const Extent x = p_.extent();
      constexpr T kMinusInf = -std::numeric_limits<T>::infinity();
      for (Index c = 0; c < n_cols; ++c) {
        T* column = s.scores + c * n_rows;
        for (Index r = 0; r < n_rows; ++r)
          if (!policy_.allowed(x, rows.begin + r, cols.begin + c, h)) column[r] = kMinusInf;
      }
    }
    softmax.template rescale<kMasked>(scores, acc);
    acc.noalias() += scores * v_tile;
  }

  // Rows [cols] of K or V for (b, kv_h) as an Eigen matrix; copied into `pack` only when the view is
  // not unit-stride along its last dimension.
  static InputRows input_rows(const TensorView<const T>& t, Index b, Index kv_h, Range cols,
                              Index dim, T* pack) {
    const T* base = t.data() + b * t.stride(0) + kv_h * t.stride(1) + cols.begin * t.stride(2);
    if (t.stride(3) == 1) return InputRows(base, cols.size(), dim, Eigen::OuterStride<>(t.stride(2)));
    for (Index r = 0; r < cols.size(); ++r)
      for (Index c = 0; c < dim; ++c) pack[r * dim + c] = base[r * t.stride(2) + c * t.stride(3)];
    return InputRows(pack, cols.size(), dim, Eigen::OuterStride<>(dim));
  }

  void write_rows(Index b, Index h, Range rows, const Tile& acc, const OnlineSoftmax<T>& softmax) const {
    for (Index r = 0; r < rows.size(); ++r) {
      const T l = softmax.sum(r);
      // A row with no allowed key has l = 0 and outputs zeros (and LSE -inf), never NaN.
      const T inv = l > T(0) ? T(1) / l : T(0);
      for (Index c = 0; c < p_.value_dim; ++c) out_(b, h, rows.begin + r, c) = acc(r, c) * inv;
      if (lse_.data() != nullptr) lse_(b, h, rows.begin + r) = softmax.log_sum_exp(r);
    }
  }

  const Problem& p_;
  const Policy& policy_;
  const BlockLayout& layout_;
  TensorView<const T> q_, k_, v_;
  TensorView<T> out_;
  LseView<T> lse_;
  bool pack_k_, pack_v_;
};

}  // namespace detail

// Sparse attention of q over (k, v) under `policy`, visiting only the tiles of `layout`, which must
// have been built from the same policy for these lengths (BlockLayout::build(policy, {seq_q, seq_k},
// block, q_heads)). Writes out [batch, q_heads, seq_q, value_dim] and, if given, options.lse.
// Shapes: q [B, Hq, Sq, D], k [B, Hkv, Sk, D], v [B, Hkv, Sk, Dv], Hq a multiple of Hkv.
// Throws std::invalid_argument on any inconsistent argument.
template <class T, class Policy>
void attention(TensorView<const std::type_identity_t<T>> q, TensorView<const std::type_identity_t<T>> k,
               TensorView<const std::type_identity_t<T>> v, TensorView<T> out, const Policy& policy,
               const BlockLayout& layout, const AttentionOptions<T>& options = {}) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "sparse_attention::attention supports float and double");
  detail::assert_mask_policy<Policy>();
  const detail::Problem p =
      detail::check_problem("attention", q, k, v, out, options.lse, options.scale);
  detail::require(options.num_threads >= 0, "attention", "num_threads", options.num_threads,
                  ">= 0 (0 = OpenMP's default)");
  detail::check_layout("attention", layout, p, detail::head_dependent(policy));
  if (p.batch == 0 || p.seq_q == 0) return;
  detail::BlockedAttention<T, Policy>(p, policy, layout, q, k, v, out, options.lse)
      .run(options.num_threads);
}

// As above, building the layout with `block` tiles for this call. To amortise the (cheap, O(nnz))
// build across calls, build the BlockLayout once and pass it.
template <class T, class Policy>
void attention(TensorView<const std::type_identity_t<T>> q, TensorView<const std::type_identity_t<T>> k,
               TensorView<const std::type_identity_t<T>> v, TensorView<T> out, const Policy& policy,
               const AttentionOptions<T>& options = {}, BlockSize block = {}) {
  detail::assert_mask_policy<Policy>();
  const detail::Problem p =
      detail::check_problem("attention", q, k, v, out, options.lse, options.scale);
  const BlockLayout layout = BlockLayout::build(policy, p.extent(), block, p.q_heads);
  attention<T>(q, k, v, out, policy, layout, options);
}

}  // namespace sparse_attention
