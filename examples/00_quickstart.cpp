// SPDX-License-Identifier: Apache-2.0
#include <sparse_attention/sparse_attention.hpp>

#include <cmath>
#include <iostream>
#include <vector>

namespace sa = sparse_attention;

int main() {
  const sa::Index batch = 1, seq = 4096, heads = 8, dim = 64;
  std::vector<float> q(batch * seq * heads * dim), k(q.size()), v(q.size()), out(q.size());
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = std::sin(0.1f * i), k[i] = std::cos(0.3f * i), v[i] = std::sin(0.7f * i);

  // The [batch, seq, heads, dim] buffers projections produce, viewed without copies.
  auto view = [&](std::vector<float>& x) { return sa::bshd(x.data(), batch, seq, heads, dim); };
  const auto policy = sa::LocalWindow::causal(512);  // each query sees itself and the 511 keys before it
  const auto layout = sa::BlockLayout::build(policy, {seq, seq});  // build once, reuse for every call
  sa::attention<float>(view(q), view(k), view(v), view(out), policy, layout);
  std::cout << "density " << layout.density() << ", out[0] = " << out[0] << "\n";
}
