// SPDX-License-Identifier: Apache-2.0
// The lightning indexer computed densely in double precision: the oracle of lightning_top_k.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "sparse_attention/core/tensor_view.hpp"
#include "sparse_attention/core/types.hpp"
#include "sparse_attention/dynamic/token_top_k.hpp"

namespace sparse_attention::reference {

// I[t, s] = sum_j w[t, j] ReLU(qI[t, j] . kI[s]) of batch element b, [seq_q, seq_k], -inf for keys after
// the query's position. Materialised: O(seq_q * seq_k) memory.
template <class T>
Eigen::MatrixXd lightning_scores(TensorView<T> index_q, TensorView<T> index_k, StridedView<T, 3> weights, Index b) {
  const Index heads = index_q.extent(1), seq_q = index_q.extent(2), dim = index_q.extent(3), seq_k = index_k.extent(2);
  Eigen::MatrixXd scores(seq_q, seq_k);
  for (Index t = 0; t < seq_q; ++t)
    for (Index s = 0; s < seq_k; ++s) {
      if (s > t + seq_k - seq_q) {
        scores(t, s) = -std::numeric_limits<double>::infinity();
        continue;
      }
      double score = 0;
      for (Index j = 0; j < heads; ++j) {
        double a = 0;
        for (Index d = 0; d < dim; ++d) a += static_cast<double>(index_q(b, j, t, d)) * static_cast<double>(index_k(b, 0, s, d));
        score += static_cast<double>(weights(b, j, t)) * std::max(a, 0.0);
      }
      scores(t, s) = score;
    }
  return scores;
}

// Per row, the k keys of largest score (ties to the smaller key), among the finite scores, ascending.
inline std::vector<std::int32_t> top_k_row(const Eigen::MatrixXd& scores, Index t, Index k) {
  std::vector<std::int32_t> keys;
  for (Index s = 0; s < scores.cols(); ++s)
    if (scores(t, s) > -std::numeric_limits<double>::infinity()) keys.push_back(static_cast<std::int32_t>(s));
  const auto better = [&](std::int32_t a, std::int32_t b) { return scores(t, a) > scores(t, b) || (scores(t, a) == scores(t, b) && a < b); };
  const auto keep = std::min<std::size_t>(static_cast<std::size_t>(k), keys.size());
  std::partial_sort(keys.begin(), keys.begin() + static_cast<std::ptrdiff_t>(keep), keys.end(), better);
  keys.resize(keep);
  std::sort(keys.begin(), keys.end());
  return keys;
}

}  // namespace sparse_attention::reference
