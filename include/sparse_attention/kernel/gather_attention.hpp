// SPDX-License-Identifier: Apache-2.0
// Attention over a token-level selection (TokenTopK, DSA): every query row attends to exactly the keys
// of its list. One work item is one query token and one KV head: the Hq / Hkv query heads of the group
// share its list, so they sit in the vector lanes and each gathered K/V row serves all of them at once.
// The selected rows are read in place through row-pointer tables, 64 keys per tile step, with the same
// online softmax as the blocked kernel. No seq_q x seq_k structure is ever built.
#pragma once

#include <algorithm>
#include <cstdint>
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
    const Index items = p_.batch * p_.kv_heads * p_.seq_q;
    // Runs of consecutive tokens per thread: neighbouring tokens select mostly the same keys.
    const Index chunk = std::max<Index>(1, items / (32 * thread_count(num_threads, items)));
    const Index chunks = ceil_div(items, chunk);
    const int threads = thread_count(num_threads, chunks);
    const Index engine_size = Engine::scratch_size(dims_);
    const Index pack_size = (pack_k_ ? kTileKeys * p_.head_dim : 0) + (pack_v_ ? kTileKeys * p_.value_dim : 0);
    const Index per_thread = engine_size + pack_size;
    AlignedBuffer<T> scratch(per_thread * threads);
    std::vector<const T*> tables(static_cast<std::size_t>(2 * kTileKeys * threads));
    parallel_for_dynamic(chunks, threads, [&](Index c, int thread) {
      T* base = scratch.data() + per_thread * thread;
      const T** table = tables.data() + 2 * kTileKeys * thread;
      for (Index item = c * chunk; item < std::min(items, (c + 1) * chunk); ++item)
        run_item(item, base, base + engine_size, table);
    });
  }

 private:
  void run_item(Index item, T* engine_scratch, T* pack, const T** table) const {
    const Index i = item % p_.seq_q, g = (item / p_.seq_q) % p_.kv_heads, b = item / (p_.seq_q * p_.kv_heads);
    const Index h0 = g * p_.group();
    const std::span<const std::int32_t> keys = s_.keys(b, s_.groups() == 1 ? 0 : g, i);

    Engine engine(dims_, engine_scratch);
    engine.begin(&q_(b, h0, i, 0), q_.stride(1), q_.stride(3), p_.group(), p_.scale);
    const T** k_rows = table;
    const T** v_rows = table + kTileKeys;
    for (std::size_t t0 = 0; t0 < keys.size(); t0 += kTileKeys) {
      const Index cols = std::min<Index>(kTileKeys, static_cast<Index>(keys.size() - t0));
      for (Index c = 0; c < cols; ++c) {
        const Index key = keys[t0 + static_cast<std::size_t>(c)];
        k_rows[c] = row(k_, b, g, key, p_.head_dim, pack_k_ ? pack + c * p_.head_dim : nullptr);
        v_rows[c] = row(v_, b, g, key, p_.value_dim,
                        pack_v_ ? pack + (pack_k_ ? kTileKeys * p_.head_dim : 0) + c * p_.value_dim : nullptr);
      }
      engine.template step</*kMasked=*/false>(GatheredRows<T>{k_rows}, GatheredRows<T>{v_rows}, cols, NoMask{});
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
