// SPDX-License-Identifier: Apache-2.0
// Training a lightning indexer on DeepSeek's KL signal. A synthetic sequence hides six "needle" tokens
// (they carry a feature direction u); the main attention of every later query concentrates on them. The
// indexer -- qI = A_j x, kI = B x, w = C x from hidden states x -- starts random and selects needles no
// better than chance. Plain SGD on indexer_kl_loss (its gradients chained through A, B, C here) teaches
// it to put the needles in its top-k. Prints top-k recall of the needles before and after.
#include <sparse_attention/sparse_attention.hpp>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

namespace sa = sparse_attention;
using Matrix = Eigen::MatrixXd;

int main() {
  const sa::Index n = 256, m = 12, heads = 2, dim = 16;  // tokens, hidden size, main heads and head dim
  const sa::Index index_heads = 2, index_dim = 8, k = 8;  // the indexer, and its top-k
  const std::vector<sa::Index> needles = {9, 30, 51, 77, 101, 118};
  std::mt19937 rng(7);
  std::normal_distribution<double> normal;

  // Hidden states: noise, a constant bias channel (last), and u = e_0 on the needles.
  Matrix x(n, m);
  for (sa::Index t = 0; t < n; ++t)
    for (sa::Index c = 0; c < m; ++c) x(t, c) = c == m - 1 ? 1.0 : normal(rng);
  for (sa::Index s : needles) x(s, 0) += 4.0;

  // Main attention: every query looks for u, so its probabilities concentrate on the needles before it.
  std::vector<double> q(heads * n * dim), kk(heads * n * dim);
  for (sa::Index h = 0; h < heads; ++h)
    for (sa::Index t = 0; t < n; ++t)
      for (sa::Index c = 0; c < dim; ++c) {
        q[static_cast<std::size_t>((h * n + t) * dim + c)] = (c == h ? 3.0 : 0.0) + 0.1 * normal(rng);
        kk[static_cast<std::size_t>((h * n + t) * dim + c)] = (c == h ? 3.0 * x(t, 0) : 0.0) + 0.1 * normal(rng);
      }
  const auto q_view = sa::bhsd<const double>(q.data(), 1, heads, n, dim);
  const auto k_view = sa::bhsd<const double>(kk.data(), 1, heads, n, dim);

  // The indexer's parameters, small and random.
  std::vector<Matrix> a(index_heads, Matrix(index_dim, m)), c(index_heads, Matrix(1, m));
  Matrix b(index_dim, m);
  for (auto* p : {&b}) p->setRandom(), *p *= 0.1;
  for (sa::Index j = 0; j < index_heads; ++j) a[j].setRandom(), a[j] *= 0.1, c[j].setRandom(), c[j] *= 0.1;

  std::vector<double> qi(n * index_heads * index_dim), ki(n * index_dim), w(n * index_heads);
  auto forward = [&] {  // indexer outputs in the model's layouts: qI [n, H_I, d_I], kI [n, d_I], w [n, H_I]
    for (sa::Index t = 0; t < n; ++t) {
      const Eigen::VectorXd xt = x.row(t).transpose();
      for (sa::Index j = 0; j < index_heads; ++j) {
        Eigen::Map<Eigen::VectorXd>(&qi[static_cast<std::size_t>((t * index_heads + j) * index_dim)], index_dim) = a[j] * xt;
        w[static_cast<std::size_t>(t * index_heads + j)] = (c[j] * xt)(0);
      }
      Eigen::Map<Eigen::VectorXd>(&ki[static_cast<std::size_t>(t * index_dim)], index_dim) = b * xt;
    }
  };
  const auto qi_view = sa::bshd<const double>(qi.data(), 1, n, index_heads, index_dim);
  const auto ki_view = sa::bhsd<const double>(ki.data(), 1, 1, n, index_dim);
  const auto w_view = sa::lse_bsh<const double>(w.data(), 1, n, index_heads);

  // Recall: over queries after the last needle, the fraction of needles in their top-k.
  auto recall_now = [&] {
    const sa::TokenTopK sel = sa::lightning_top_k<double>(qi_view, ki_view, w_view, k);
    double found = 0, total = 0;
    for (sa::Index t = needles.back() + 1; t < n; ++t) {
      const auto keys = sel.keys(0, 0, t);
      for (sa::Index s : needles) found += std::binary_search(keys.begin(), keys.end(), static_cast<std::int32_t>(s));
      total += static_cast<double>(needles.size());
    }
    return found / total;
  };
  auto recall = [&] {
    forward();
    return recall_now();
  };

  const double before = recall();
  std::printf("top-%lld recall of the %zu needles before training: %.3f\n%6s %12s %8s\n", static_cast<long long>(k),
              needles.size(), before, "step", "KL loss", "recall");
  const double rate = 0.05 / static_cast<double>(n);  // the loss sums over the n rows
  for (int step = 0; step <= 300; ++step) {
    forward();
    const sa::IndexerLoss<double> g = sa::indexer_kl_loss<double>(q_view, k_view, qi_view, ki_view, w_view);
    if (step % 50 == 0) std::printf("%6d %12.3f %8.3f\n", step, g.loss, recall_now());
    // Chain rule through the linear maps: dA_j = sum_t dqI[t, j] x_t^T, dB = sum_s dkI[s] x_s^T, dC likewise.
    Matrix db = Matrix::Zero(index_dim, m);
    for (sa::Index j = 0; j < index_heads; ++j) {
      Matrix da = Matrix::Zero(index_dim, m), dc = Matrix::Zero(1, m);
      for (sa::Index t = 0; t < n; ++t) {
        da += Eigen::Map<const Eigen::VectorXd>(&g.grad_q[static_cast<std::size_t>((j * n + t) * index_dim)], index_dim) * x.row(t);
        dc += g.grad_w[static_cast<std::size_t>(j * n + t)] * x.row(t);
      }
      a[j] -= rate * da;
      c[j] -= rate * dc;
    }
    for (sa::Index s = 0; s < n; ++s) db += Eigen::Map<const Eigen::VectorXd>(&g.grad_k[static_cast<std::size_t>(s * index_dim)], index_dim) * x.row(s);
    b -= rate * db;
  }
  const double after = recall();
  std::printf("top-%lld recall of the %zu needles after training:  %.3f\n", static_cast<long long>(k), needles.size(), after);
  return after > 0.9 ? 0 : 1;
}
