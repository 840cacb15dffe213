// SPDX-License-Identifier: Apache-2.0
// Argument checking shared by every attention entry point: the shapes of Q, K, V, O and LSE, GQA
// head grouping, the scale, and the BlockLayout a call is given.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

#include "sparse_attention/core/block_layout.hpp"
#include "sparse_attention/core/error.hpp"
#include "sparse_attention/core/tensor_view.hpp"
#include "sparse_attention/core/types.hpp"

namespace sparse_attention {

// Optional settings of an attention call. T is the output element type.
template <class T>
struct AttentionOptions {
  // Multiplies q . k before the softmax; default 1 / sqrt(head_dim). Must be finite.
  std::optional<double> scale{};
  // If non-empty, receives [batch, q_heads, seq_q] natural-log log-sum-exp of the scaled scores of
  // each row (-inf for a row with no allowed key).
  LseView<T> lse{};
  // Threads for the work items; 0 means OpenMP's default. Results are bit-identical whatever the
  // count. Ignored when the library is used without OpenMP.
  int num_threads = 0;
};

namespace detail {

// The validated sizes of one call.
struct Problem {
  Index batch = 0, q_heads = 0, kv_heads = 0, seq_q = 0, seq_k = 0, head_dim = 0, value_dim = 0;
  double scale = 0;
  Index group() const { return q_heads / kv_heads; }  // query heads per KV head (GQA)
  Extent extent() const { return {seq_q, seq_k}; }
};

template <class A>
std::string format_list(const A& values) {
  std::ostringstream s;
  s << "[";
  for (std::size_t i = 0; i < values.size(); ++i) s << (i ? ", " : "") << values[i];
  s << "]";
  return s.str();
}

// True if no two elements of the view share an address: sorted by stride, each dimension must step
// past everything the smaller ones span. (Sufficient for every layout in use; an output with
// overlapping elements would be written by several work items at once.)
template <class T, std::size_t Rank>
bool elements_disjoint(const StridedView<T, Rank>& view) {
  if (view.empty()) return true;  // no elements, nothing to share
  std::array<std::size_t, Rank> order{};
  for (std::size_t d = 0; d < Rank; ++d) order[d] = d;
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return view.stride(a) < view.stride(b); });
  Index span = 1;  // elements covered by the dimensions seen so far
  for (std::size_t d : order) {
    if (view.extent(d) <= 1) continue;
    if (view.stride(d) < span) return false;
    span = view.stride(d) * view.extent(d);
  }
  return true;
}

template <class T, std::size_t Rank>
void check_data(std::string_view where, std::string_view name, const StridedView<T, Rank>& view) {
  if (!view.empty() && view.data() == nullptr) {
    throw_invalid_argument(where, std::string(name) + ".data", "null",
                           "a pointer to the caller's buffer (only an empty tensor may be null)");
  }
}

template <class TQ, class TK, class TV, class TO, class TL>
Problem check_problem(std::string_view where, const TensorView<TQ>& q, const TensorView<TK>& k,
                      const TensorView<TV>& v, const TensorView<TO>& out, const LseView<TL>& lse,
                      std::optional<double> scale) {
  check_data(where, "q", q);
  check_data(where, "k", k);
  check_data(where, "v", v);
  check_data(where, "out", out);
  Problem p;
  p.batch = q.extent(0);
  p.q_heads = q.extent(1);
  p.seq_q = q.extent(2);
  p.head_dim = q.extent(3);
  p.kv_heads = k.extent(1);
  p.seq_k = k.extent(2);
  p.value_dim = v.extent(3);

  require(p.q_heads >= 1, where, "q heads (q.extent(1))", p.q_heads, ">= 1");
  require(p.kv_heads >= 1, where, "k heads (k.extent(1))", p.kv_heads, ">= 1");
  require(p.head_dim >= 1, where, "head_dim (q.extent(3))", p.head_dim, ">= 1");
  require(p.value_dim >= 1, where, "value_dim (v.extent(3))", p.value_dim, ">= 1");
  require(p.seq_q <= kMaxSequenceLength, where, "seq_q (q.extent(2))", p.seq_q, "<= 2^40");
  require(p.seq_k <= kMaxSequenceLength, where, "seq_k (k.extent(2))", p.seq_k, "<= 2^40");
  if (p.q_heads % p.kv_heads != 0)
    throw_invalid_argument(where, "q heads / k heads", std::to_string(p.q_heads) + " / " + std::to_string(p.kv_heads),
                           "a whole number (q heads a multiple of KV heads: GQA / MQA)");

  const std::array<Index, 4> k_shape{p.batch, p.kv_heads, p.seq_k, p.head_dim};
  const std::array<Index, 4> v_shape{p.batch, p.kv_heads, p.seq_k, p.value_dim};
  const std::array<Index, 4> out_shape{p.batch, p.q_heads, p.seq_q, p.value_dim};
  // Messages are built only on failure: this runs on every call, decode steps included.
  if (k.extents() != k_shape)
    throw_invalid_argument(where, "k shape", format_list(k.extents()),
                           format_list(k_shape) + " = [batch, kv_heads, seq_k, head_dim] (from q " +
                               format_list(q.extents()) + ")");
  if (v.extents() != v_shape)
    throw_invalid_argument(where, "v shape", format_list(v.extents()),
                           format_list(v_shape) + " = [batch, kv_heads, seq_k, value_dim] (from q and k)");
  if (out.extents() != out_shape)
    throw_invalid_argument(where, "out shape", format_list(out.extents()),
                           format_list(out_shape) + " = [batch, q_heads, seq_q, value_dim] (from q and v)");
  if (!elements_disjoint(out))
    throw_invalid_argument(where, "out strides", format_list(out.strides()),
                           "strides under which no two output elements share memory");

  if (lse.data() != nullptr || !lse.empty()) {
    check_data(where, "lse", lse);
    const std::array<Index, 3> lse_shape{p.batch, p.q_heads, p.seq_q};
    if (lse.extents() != lse_shape)
      throw_invalid_argument(where, "lse shape", format_list(lse.extents()),
                             format_list(lse_shape) + " = [batch, q_heads, seq_q]");
    if (!elements_disjoint(lse))
      throw_invalid_argument(where, "lse strides", format_list(lse.strides()),
                             "strides under which no two LSE elements share memory");
  }

  p.scale = scale.value_or(1.0 / std::sqrt(static_cast<double>(p.head_dim)));
  require(std::isfinite(p.scale), where, "scale", p.scale, "a finite number");
  return p;
}

inline void check_layout(std::string_view where, const BlockLayout& layout, const Problem& p,
                         bool policy_head_dependent) {
  const Extent e = layout.extent();
  if (e != p.extent())
    throw_invalid_argument(where, "layout extent",
                           "{seq_q " + std::to_string(e.seq_q) + ", seq_k " + std::to_string(e.seq_k) + "}",
                           "the call's {seq_q " + std::to_string(p.seq_q) + ", seq_k " + std::to_string(p.seq_k) +
                               "}: build the layout for these lengths");
  if (layout.per_head() && layout.num_heads() != p.q_heads)
    throw_invalid_argument(where, "layout num_heads", layout.num_heads(),
                           "the call's q heads " + std::to_string(p.q_heads) + " (the layout is per head)");
  if (!layout.per_head() && policy_head_dependent && p.q_heads != 1)
    throw_invalid_argument(where, "layout", "broadcast (one set of rows for every head)",
                           "a per-head layout: the policy differs between heads; build it with num_heads = " +
                               std::to_string(p.q_heads));
}

}  // namespace detail
}  // namespace sparse_attention
