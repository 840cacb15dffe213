// SPDX-License-Identifier: Apache-2.0
// The indexer's KL training signal: the loss against a direct computation, its gradients against
// central finite differences in double precision.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "dynamic/dsa_common.hpp"
#include "support/test_support.hpp"

namespace sa = sparse_attention;
using sa::testing::IndexerInputs;
using sa::testing::Problem;
using sa::testing::Shape;

namespace {

struct TrainingCase {
  Problem<double> main;
  IndexerInputs<double> index;
  TrainingCase(sa::Index batch, sa::Index sq, sa::Index sk, std::uint64_t seed)
      : main(Shape{batch, 4, 2, sq, sk, 8, 8, false}, seed), index(batch, sq, sk, 3, 5, seed + 1) {}
  sa::IndexerLoss<double> loss(int threads = 0) const {
    return sa::indexer_kl_loss<double>(main.qv(), main.kv(), index.qv(), index.kv(), index.wv(), {.num_threads = threads});
  }
};

// The loss written out directly: target from the reference attention's probabilities.
double direct_loss(const TrainingCase& s) {
  const auto& m = s.main.shape;
  const sa::Index offset = m.seq_k - m.seq_q;
  double total = 0;
  for (sa::Index b = 0; b < m.batch; ++b) {
    const Eigen::MatrixXd scores = sa::reference::lightning_scores(s.index.qv(), s.index.kv(), s.index.wv(), b);
    for (sa::Index t = 0; t < m.seq_q; ++t) {
      const sa::Index valid = t + offset + 1;
      std::vector<double> p(static_cast<std::size_t>(valid), 0.0);
      for (sa::Index h = 0; h < m.q_heads; ++h) {
        std::vector<double> e(static_cast<std::size_t>(valid));
        double mx = -1e300, sum = 0;
        for (sa::Index j = 0; j < valid; ++j) {
          double dot = 0;
          for (sa::Index c = 0; c < m.head_dim; ++c) dot += s.main.qv()(b, h, t, c) * s.main.kv()(b, h / 2, j, c);
          e[static_cast<std::size_t>(j)] = dot / std::sqrt(double(m.head_dim));
          mx = std::max(mx, e[static_cast<std::size_t>(j)]);
        }
        for (double& x : e) sum += (x = std::exp(x - mx));
        for (sa::Index j = 0; j < valid; ++j) p[static_cast<std::size_t>(j)] += e[static_cast<std::size_t>(j)] / sum / double(m.q_heads);
      }
      double mx = -1e300, sum = 0;
      for (sa::Index j = 0; j < valid; ++j) mx = std::max(mx, scores(t, j));
      for (sa::Index j = 0; j < valid; ++j) sum += std::exp(scores(t, j) - mx);
      for (sa::Index j = 0; j < valid; ++j) {
        const double log_q = scores(t, j) - mx - std::log(sum);
        total += p[static_cast<std::size_t>(j)] * (std::log(p[static_cast<std::size_t>(j)]) - log_q);
      }
    }
  }
  return total;
}

TEST(IndexerTraining, LossEqualsDirectComputation) {
  const TrainingCase s(2, 30, 40, 1);
  const auto r = s.loss();
  EXPECT_NEAR(direct_loss(s), r.loss, 1e-10 * (1 + r.loss));
  EXPECT_GT(r.loss, 0.0);
}

// Central differences on a sample of every input; ReLU kinks are avoided by the random inputs (no
// activation within 1e-4 of 0 is perturbed across it at this step).
TEST(IndexerTraining, GradientsMatchFiniteDifferences) {
  TrainingCase s(2, 20, 26, 3);
  const auto r = s.loss();
  const double h = 1e-6;
  std::mt19937 rng(4);
  auto check = [&](std::vector<double>& x, const std::vector<double>& grad, const char* name, std::size_t logical_of(std::size_t)) {
    for (int n = 0; n < 25; ++n) {
      const std::size_t at = std::uniform_int_distribution<std::size_t>(0, x.size() - 1)(rng);
      const double keep = x[at];
      x[at] = keep + h;
      const double up = s.loss().loss;
      x[at] = keep - h;
      const double down = s.loss().loss;
      x[at] = keep;
      const double numeric = (up - down) / (2 * h);
      EXPECT_NEAR(numeric, grad[logical_of(at)], 1e-6 * (1 + std::abs(numeric))) << name << " element " << at;
    }
  };
  // index q is stored [B, Sq, H_I, d_I]; the gradient is [B, H_I, Sq, d_I].
  const auto& in = s.index;
  check(s.index.q, r.grad_q, "dL/dqI", [](std::size_t at) {
    const std::size_t d = at % 5, j = at / 5 % 3, t = at / 15 % 20, b = at / (15 * 20);
    return ((b * 3 + j) * 20 + t) * 5 + d;
  });
  check(s.index.k, r.grad_k, "dL/dkI", [](std::size_t at) { return at; });
  // weights are stored [B, Sq, H_I]; the gradient is [B, H_I, Sq].
  check(s.index.w, r.grad_w, "dL/dw", [](std::size_t at) {
    const std::size_t j = at % 3, t = at / 3 % 20, b = at / 60;
    return (b * 3 + j) * 20 + t;
  });
  (void)in;
}

TEST(IndexerTraining, SameBitsForEveryThreadCount) {
  const TrainingCase s(1, 70, 90, 5);
  const auto one = s.loss(1);
  for (int threads : {2, 3}) {
    const auto many = s.loss(threads);
    EXPECT_EQ(one.loss, many.loss);
    EXPECT_EQ(one.grad_q, many.grad_q);
    EXPECT_EQ(one.grad_k, many.grad_k);
    EXPECT_EQ(one.grad_w, many.grad_w);
  }
}

TEST(IndexerTraining, RejectsMismatchedShapes) {
  const TrainingCase s(1, 8, 8, 6);
  EXPECT_THROW(sa::indexer_kl_loss<double>(s.main.qv(), s.main.kv(), s.index.qv(),
                                           sa::bhsd<const double>(s.index.k.data(), 1, 1, 7, 5), s.index.wv()),
               std::invalid_argument);
  EXPECT_THROW(sa::indexer_kl_loss<double>(s.main.qv(), s.main.kv(), s.index.qv(), s.index.kv(),
                                           sa::lse_bsh<const double>(s.index.w.data(), 1, 4, 3)),
               std::invalid_argument);
}

}  // namespace
