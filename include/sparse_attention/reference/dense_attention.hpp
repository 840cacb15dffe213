// SPDX-License-Identifier: Apache-2.0
// The O(n^2) reference: materialises every head's seq_q x seq_k score matrix, masks it with the
// policy's element predicate, and takes an exact row softmax, all in the accumulation type Acc
// (double by default). It shares nothing with the blocked kernel but the policy's predicate, which
// makes it the test oracle; with Acc = float it is the naive implementation a user writes by hand,
// the baseline of the benchmarks.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <limits>

#include "sparse_attention/core/mask_policy.hpp"
#include "sparse_attention/core/tensor_view.hpp"
#include "sparse_attention/core/types.hpp"
#include "sparse_attention/kernel/problem.hpp"

namespace sparse_attention::reference {

// Same contract as sparse_attention::attention (shapes, GQA, scale, LSE, empty rows give O = 0 and
// LSE = -inf), computed densely. Uses O(seq_q * seq_k) memory per head.
template <class Acc = double, class TQ, class TK, class TV, class TO, class Policy>
void dense_attention(TensorView<TQ> q, TensorView<TK> k, TensorView<TV> v, TensorView<TO> out,
                     const Policy& policy, const AttentionOptions<TO>& options = {}) {
  detail::assert_mask_policy<Policy>();
  const detail::Problem p =
      detail::check_problem("reference::dense_attention", q, k, v, out, options.lse, options.scale);
  detail::check_policy(policy, p.extent(), p.q_heads);
  using Matrix = Eigen::Matrix<Acc, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  constexpr Acc kMinusInf = -std::numeric_limits<Acc>::infinity();
  const Extent x = p.extent();
  Matrix qm(p.seq_q, p.head_dim), km(p.seq_k, p.head_dim), vm(p.seq_k, p.value_dim);
  Matrix scores(p.seq_q, p.seq_k), o(p.seq_q, p.value_dim);

  for (Index b = 0; b < p.batch; ++b) {
    for (Index h = 0; h < p.q_heads; ++h) {
      const Index kv_h = h / p.group();
      qm = q.matrix(b, h).template cast<Acc>();
      km = k.matrix(b, kv_h).template cast<Acc>();
      vm = v.matrix(b, kv_h).template cast<Acc>();
      scores.noalias() = static_cast<Acc>(p.scale) * (qm * km.transpose());
      for (Index i = 0; i < p.seq_q; ++i) {
        Acc m = kMinusInf;
        for (Index j = 0; j < p.seq_k; ++j) {
          if (!policy.allowed(x, i, j, h)) scores(i, j) = kMinusInf;
          m = std::max(m, scores(i, j));
        }
        Acc l = 0;
        for (Index j = 0; j < p.seq_k; ++j) {
          const Acc e = scores(i, j) == kMinusInf ? Acc(0) : std::exp(scores(i, j) - m);
          scores(i, j) = e;
          l += e;
        }
        if (options.lse.data() != nullptr)
          options.lse(b, h, i) = static_cast<TO>(l > 0 ? m + std::log(l) : kMinusInf);
        if (l > 0) scores.row(i) /= l;
      }
      o.noalias() = scores * vm;
      for (Index i = 0; i < p.seq_q; ++i)
        for (Index c = 0; c < p.value_dim; ++c) out(b, h, i, c) = static_cast<TO>(o(i, c));
    }
  }
}

}  // namespace sparse_attention::reference
