// SPDX-License-Identifier: Apache-2.0
// Random indexer inputs for the DSA tests.
#pragma once

#include <random>
#include <vector>

#include "sparse_attention/sparse_attention.hpp"

namespace sparse_attention::testing {

// Indexer inputs: qI [B, Sq, H_I, d_I] (the model's layout), kI [B, Sk, d_I], w [B, Sq, H_I].
// integer: values in {-2, ..., 2}, so float scores are exact and ties are frequent.
template <class T>
struct IndexerInputs {
  Index batch, seq_q, seq_k, heads, dim;
  std::vector<T> q, k, w;

  IndexerInputs(Index b, Index sq, Index sk, Index h, Index d, std::uint64_t seed, bool integer = false)
      : batch(b), seq_q(sq), seq_k(sk), heads(h), dim(d) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal;
    std::uniform_int_distribution<int> small(-2, 2);
    auto fill = [&](std::vector<T>& x, Index n) {
      x.resize(static_cast<std::size_t>(n));
      for (T& e : x) e = integer ? static_cast<T>(small(rng)) : static_cast<T>(normal(rng));
    };
    fill(q, b * sq * h * d);
    fill(k, b * sk * d);
    fill(w, b * sq * h);
  }
  TensorView<const T> qv() const { return bshd<const T>(q.data(), batch, seq_q, heads, dim); }
  TensorView<const T> kv() const { return bhsd<const T>(k.data(), batch, 1, seq_k, dim); }
  StridedView<const T, 3> wv() const { return lse_bsh<const T>(w.data(), batch, seq_q, heads); }
  // Rows [first, first + n) of the queries: a chunk of a longer prefill (same keys).
  IndexerInputs chunk(Index first, Index n) const {
    IndexerInputs c = *this;
    c.seq_q = n;
    c.q.clear();
    c.w.clear();
    for (Index b = 0; b < batch; ++b) {
      const auto q0 = q.begin() + (b * seq_q + first) * heads * dim, w0 = w.begin() + (b * seq_q + first) * heads;
      c.q.insert(c.q.end(), q0, q0 + n * heads * dim);
      c.w.insert(c.w.end(), w0, w0 + n * heads);
    }
    return c;
  }
};

}  // namespace sparse_attention::testing
