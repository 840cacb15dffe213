// SPDX-License-Identifier: Apache-2.0
// The lightning indexer's training signal, as DeepSeek trains it in its dense warm-up:
//
//   p_t      = main-attention probabilities of query t, per head (softmax of scale * q . k over keys
//              s <= p(t)), summed over heads and L1-normalised
//   L        = sum_t KL(p_t || softmax(I_t))             over the valid keys of each row
//   dL/dI    = softmax(I_t) - p_t                         on valid keys, 0 elsewhere
//
// then back through I[t, s] = sum_j w[t, j] ReLU(a), a = qI[t, j] . kI[s]:
//   dL/dw[t, j]  = sum_s dI[t, s] ReLU(a)
//   dL/dqI[t, j] = sum_s dI[t, s] w[t, j] [a > 0] kI[s]
//   dL/dkI[s]    = sum_t sum_j dI[t, s] w[t, j] [a > 0] qI[t, j]
//
// O(seq_q * seq_k) time and O(seq_k) memory per query row; the seq_q x seq_k matrices are never stored.
// Deterministic: gradient sums run in a fixed order whatever the thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "sparse_attention/core/error.hpp"
#include "sparse_attention/core/tensor_view.hpp"
#include "sparse_attention/core/types.hpp"
#include "sparse_attention/kernel/parallel.hpp"
#include "sparse_attention/kernel/problem.hpp"

namespace sparse_attention {

template <class T>
struct IndexerLoss {
  double loss = 0;            // sum over batch and query rows of KL(p_t || softmax(I_t))
  std::vector<T> grad_q;      // dL/dqI, contiguous [batch, H_I, seq_q, d_I]
  std::vector<T> grad_k;      // dL/dkI, contiguous [batch, seq_k, d_I]
  std::vector<T> grad_w;      // dL/dw,  contiguous [batch, H_I, seq_q]
};

struct IndexerLossOptions {
  std::optional<double> scale{};  // of the main attention; default 1 / sqrt(head_dim)
  int num_threads = 0;
};

// q [B, Hq, Sq, D], k [B, Hkv, Sk, D]: the main attention's queries and keys (targets, not
// differentiated). index_q [B, H_I, Sq, d_I], index_k [B, 1, Sk, d_I], weights [B, H_I, Sq]: the
// indexer's outputs, as for lightning_top_k. Causal with bottom-right alignment, like the indexer.
template <class T>
IndexerLoss<T> indexer_kl_loss(TensorView<const std::type_identity_t<T>> q, TensorView<const std::type_identity_t<T>> k,
                               TensorView<const std::type_identity_t<T>> index_q, TensorView<const std::type_identity_t<T>> index_k,
                               StridedView<const std::type_identity_t<T>, 3> weights, const IndexerLossOptions& options = {}) {
  constexpr std::string_view where = "indexer_kl_loss";
  for (const auto* view : {&q, &k, &index_q, &index_k}) detail::check_data(where, "input", *view);
  detail::check_data(where, "weights", weights);
  const Index batch = q.extent(0), heads = q.extent(1), seq_q = q.extent(2), dim = q.extent(3);
  const Index kv_heads = k.extent(1), seq_k = k.extent(2);
  const Index index_heads = index_q.extent(1), index_dim = index_q.extent(3);
  detail::require(heads >= 1 && kv_heads >= 1 && heads % kv_heads == 0, where, "q heads / k heads",
                  std::to_string(heads) + " / " + std::to_string(kv_heads), "a whole number (GQA)");
  if (k.extent(0) != batch || k.extent(3) != dim)
    detail::throw_invalid_argument(where, "k shape", detail::format_list(k.extents()), "[batch, kv_heads, seq_k, head_dim] matching q");
  const std::array<Index, 4> iq{batch, index_heads, seq_q, index_dim}, ik{batch, 1, seq_k, index_dim};
  if (index_q.extents() != iq)
    detail::throw_invalid_argument(where, "index_q shape", detail::format_list(index_q.extents()),
                                   detail::format_list(iq) + " = [batch, H_I, seq_q, d_I]");
  if (index_k.extents() != ik)
    detail::throw_invalid_argument(where, "index_k shape", detail::format_list(index_k.extents()),
                                   detail::format_list(ik) + " = [batch, 1, seq_k, d_I]");
  const std::array<Index, 3> ws{batch, index_heads, seq_q};
  if (weights.extents() != ws)
    detail::throw_invalid_argument(where, "weights shape", detail::format_list(weights.extents()),
                                   detail::format_list(ws) + " = [batch, H_I, seq_q]");
  const double scale = options.scale.value_or(1.0 / std::sqrt(static_cast<double>(dim)));
  detail::require(std::isfinite(scale), where, "scale", scale, "a finite number");
  detail::require(options.num_threads >= 0, where, "num_threads", options.num_threads, ">= 0");

  IndexerLoss<T> result;
  result.grad_q.assign(static_cast<std::size_t>(batch * index_heads * seq_q * index_dim), T(0));
  result.grad_k.assign(static_cast<std::size_t>(batch * seq_k * index_dim), T(0));
  result.grad_w.assign(static_cast<std::size_t>(batch * index_heads * seq_q), T(0));
  const Index offset = seq_k - seq_q, group = heads / kv_heads;

  // Rows are processed in fixed chunks; each chunk owns partial key gradients and loss, summed in chunk
  // order afterwards, so the bits never depend on the thread count.
  const Index chunk = std::max<Index>(16, detail::ceil_div(seq_q, 16));
  const Index chunks_per_batch = detail::ceil_div(seq_q, chunk), chunks = batch * chunks_per_batch;
  std::vector<double> partial_k(static_cast<std::size_t>(chunks * seq_k * index_dim), 0.0);
  std::vector<double> partial_loss(static_cast<std::size_t>(chunks), 0.0);
  const int threads = detail::thread_count(options.num_threads, chunks);
  const Index per_thread = 3 * seq_k + index_heads * seq_k + index_dim;
  std::vector<double> work(static_cast<std::size_t>(threads * per_thread));

  detail::parallel_for_dynamic(chunks, threads, [&](Index c, int thread) {
    const Index b = c / chunks_per_batch;
    double* target = &work[static_cast<std::size_t>(thread * per_thread)];                         // p_t
    double* logits = target + seq_k;                                                                 // I_t
    double* probs = logits + seq_k;                                                                  // one head
    double* act = probs + seq_k;                                                                     // a, per index head
    double* dq = act + index_heads * seq_k;                                                          // dL/dqI[t, j]
    double* dk = &partial_k[static_cast<std::size_t>(c * seq_k * index_dim)];
    for (Index t = (c % chunks_per_batch) * chunk; t < std::min(seq_q, (c % chunks_per_batch + 1) * chunk); ++t) {
      const Index valid = std::clamp<Index>(t + offset + 1, 0, seq_k);  // keys s <= p(t)
      if (valid == 0) continue;
      // Target: head-summed softmax of the main attention, L1-normalised.
      std::fill(target, target + valid, 0.0);
      for (Index h = 0; h < heads; ++h) {
        double m = -std::numeric_limits<double>::infinity();
        for (Index s = 0; s < valid; ++s) {
          double dot = 0;
          for (Index d = 0; d < dim; ++d) dot += static_cast<double>(q(b, h, t, d)) * static_cast<double>(k(b, h / group, s, d));
          probs[s] = scale * dot;
          m = std::max(m, probs[s]);
        }
        double sum = 0;
        for (Index s = 0; s < valid; ++s) sum += (probs[s] = std::exp(probs[s] - m));
        for (Index s = 0; s < valid; ++s) target[s] += probs[s] / sum;
      }
      double total = 0;
      for (Index s = 0; s < valid; ++s) total += target[s];
      for (Index s = 0; s < valid; ++s) target[s] /= total;
      // Index logits and their softmax.
      double m = -std::numeric_limits<double>::infinity();
      for (Index s = 0; s < valid; ++s) {
        double logit = 0;
        for (Index j = 0; j < index_heads; ++j) {
          double a = 0;
          for (Index d = 0; d < index_dim; ++d) a += static_cast<double>(index_q(b, j, t, d)) * static_cast<double>(index_k(b, 0, s, d));
          act[j * seq_k + s] = a;
          logit += static_cast<double>(weights(b, j, t)) * std::max(a, 0.0);
        }
        logits[s] = logit;
        m = std::max(m, logit);
      }
      double sum = 0;
      for (Index s = 0; s < valid; ++s) sum += std::exp(logits[s] - m);
      const double log_sum = m + std::log(sum);
      double kl = 0;
      for (Index s = 0; s < valid; ++s) {
        const double log_softmax = logits[s] - log_sum;
        if (target[s] > 0) kl += target[s] * (std::log(target[s]) - log_softmax);
        logits[s] = std::exp(log_softmax) - target[s];  // now dL/dI
      }
      partial_loss[static_cast<std::size_t>(c)] += kl;
      // Back through the weighted ReLU.
      for (Index j = 0; j < index_heads; ++j) {
        const double w = static_cast<double>(weights(b, j, t));
        double dw = 0;
        std::fill(dq, dq + index_dim, 0.0);
        for (Index s = 0; s < valid; ++s) {
          const double a = act[j * seq_k + s], g = logits[s];
          if (a <= 0) continue;
          dw += g * a;
          for (Index d = 0; d < index_dim; ++d) {
            dq[d] += g * w * static_cast<double>(index_k(b, 0, s, d));
            dk[s * index_dim + d] += g * w * static_cast<double>(index_q(b, j, t, d));
          }
        }
        T* out = &result.grad_q[static_cast<std::size_t>(((b * index_heads + j) * seq_q + t) * index_dim)];
        for (Index d = 0; d < index_dim; ++d) out[d] = static_cast<T>(dq[d]);
        result.grad_w[static_cast<std::size_t>((b * index_heads + j) * seq_q + t)] = static_cast<T>(dw);
      }
    }
  });

  std::vector<double> grad_k(result.grad_k.size(), 0.0);
  for (Index c = 0; c < chunks; ++c) {
    result.loss += partial_loss[static_cast<std::size_t>(c)];
    const Index b = c / chunks_per_batch;
    for (Index x = 0; x < seq_k * index_dim; ++x)
      grad_k[static_cast<std::size_t>(b * seq_k * index_dim + x)] += partial_k[static_cast<std::size_t>(c * seq_k * index_dim + x)];
  }
  for (std::size_t x = 0; x < grad_k.size(); ++x) result.grad_k[x] = static_cast<T>(grad_k[x]);
  return result;
}

}  // namespace sparse_attention
