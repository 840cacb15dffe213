// SPDX-License-Identifier: Apache-2.0
// Sliding-window attention: draws the window's block pattern, then checks the blocked kernel against
// the O(n^2) reference and shows what the window saves.
#include <sparse_attention/sparse_attention.hpp>

#include <chrono>
#include <cmath>
#include <iostream>
#include <random>
#include <vector>

namespace sa = sparse_attention;

int main() {
  const sa::Index seq = 2048, heads = 4, dim = 64;
  const sa::BlockSize block{64, 64};

  // FlashAttention's window_size (left, right): keys p - left .. p + right, both inclusive.
  // A causal window of W keys (Mistral, Hugging Face) is LocalWindow::causal(W) = {W - 1, 0}.
  const sa::LocalWindow window = sa::LocalWindow::causal(256);
  const sa::BlockLayout layout = sa::BlockLayout::build(window, {seq, seq}, block);
  std::cout << "LocalWindow::causal(256), n = " << seq << ", 64 x 64 blocks ('#' full, '+' partial):\n"
            << layout.to_string(0, 32) << "density " << layout.density() << ", blocking efficiency "
            << layout.blocking_efficiency() << ", tiles " << layout.nnz_blocks() << " of "
            << layout.q_blocks() * layout.kv_blocks() << "\n";

  std::mt19937 rng(42);
  std::normal_distribution<float> normal;
  std::vector<float> q(heads * seq * dim), k(q.size()), v(q.size()), out(q.size());
  for (auto* x : {&q, &k, &v})
    for (float& e : *x) e = normal(rng);
  std::vector<double> expected(q.size());
  auto view = [&](auto& x) { return sa::bhsd(x.data(), 1, heads, seq, dim); };

  const auto start = std::chrono::steady_clock::now();
  sa::attention<float>(view(q), view(k), view(v), view(out), window, layout);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  sa::reference::dense_attention(view(q), view(k), view(v), view(expected), window);

  double max_error = 0;
  for (std::size_t i = 0; i < out.size(); ++i) max_error = std::max(max_error, std::abs(out[i] - expected[i]));
  std::cout << "blocked kernel: " << ms << " ms; max |error| against the double reference: " << max_error << "\n";
  return max_error < 1e-4 ? 0 : 1;
}
