// SPDX-License-Identifier: Apache-2.0
// BigBird (Zaheer et al., 2020), ITC: global blocks at both ends, a 3-block window, and r random blocks
// per head and query block, drawn from (seed, head, block) so every run and thread count gets the same
// layout; or read from a table, e.g. one exported from a trained Hugging Face model.
#include <sparse_attention/sparse_attention.hpp>

#include <cstdio>
#include <random>
#include <vector>

namespace sa = sparse_attention;

int main() {
  const sa::Index n = 2048, heads = 2, dim = 64, block = 64;
  const sa::BigBird policy(block, /*global_blocks=*/1, /*random_blocks=*/3, /*seed=*/2024);
  const sa::BlockLayout layout = sa::BlockLayout::build(policy, {n, n}, {block, block}, heads);
  for (sa::Index h = 0; h < heads; ++h)
    std::printf("head %lld ('#' attended block):\n%s", static_cast<long long>(h), layout.to_string(h).c_str());
  std::printf("density %.4f, blocking efficiency %.3f (tiles = BigBird blocks: every tile full)\n", layout.density(),
              layout.blocking_efficiency());

  // The random blocks of head 0, query block 5, and the same layout rebuilt from an explicit table.
  const std::vector<sa::Index> r = policy.random_row(0, 5, n / block);
  std::printf("head 0, query block 5: random key blocks %lld %lld %lld\n", static_cast<long long>(r[0]),
              static_cast<long long>(r[1]), static_cast<long long>(r[2]));
  std::vector<std::vector<std::vector<sa::Index>>> table(static_cast<std::size_t>(heads));
  for (sa::Index h = 0; h < heads; ++h)
    for (sa::Index q = 0; q < n / block; ++q) table[static_cast<std::size_t>(h)].push_back(policy.random_row(h, q, n / block));
  const sa::BigBird from_table = sa::BigBird::from_table(block, 1, table);

  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  std::vector<float> q(heads * n * dim), k(q.size()), v(q.size()), a(q.size()), b(q.size());
  for (auto* x : {&q, &k, &v})
    for (float& e : *x) e = normal(rng);
  auto view = [&](auto& x) { return sa::bhsd(x.data(), 1, heads, n, dim); };
  sa::attention<float>(view(q), view(k), view(v), view(a), policy, layout);
  sa::attention<float>(view(q), view(k), view(v), view(b), from_table, {}, {block, block});
  std::vector<double> expected(q.size());
  sa::reference::dense_attention(view(q), view(k), view(v), view(expected), policy);
  double error = 0;
  for (std::size_t i = 0; i < a.size(); ++i) error = std::max(error, std::abs(a[i] - expected[i]));
  std::printf("max |error| against the double reference: %.2e; generated and table layouts %s\n", error,
              a == b ? "give identical outputs" : "DIFFER");
  return error < 1e-4 && a == b ? 0 : 1;
}
