// SPDX-License-Identifier: Apache-2.0
// A Longformer layer (Beltagy et al., 2020) as the models compute it: a one-sided window w, global tokens
// attending everywhere and attended by everyone, and the global rows recomputed with their own
// projections (Qg, Kg, Vg).
#include <sparse_attention/sparse_attention.hpp>

#include <cstdio>
#include <random>
#include <vector>

namespace sa = sparse_attention;

int main() {
  const sa::Index n = 4096, heads = 4, dim = 64;
  // Hugging Face's config.attention_window = 512 is the whole window: 256 keys on each side.
  const sa::Longformer policy = sa::Longformer::from_hugging_face(512, {0, 1, 2048});
  const sa::BlockLayout layout = sa::BlockLayout::build(policy, {n, n}, {64, 64});
  std::printf("Longformer, w = %lld each side, globals {0, 1, 2048}, n = %lld\n%s", static_cast<long long>(policy.window()),
              static_cast<long long>(n), layout.to_string(0, 32).c_str());
  std::printf("density %.4f, blocking efficiency %.3f\n", layout.density(), layout.blocking_efficiency());

  std::mt19937 rng(2);
  std::normal_distribution<float> normal;
  auto random = [&] {
    std::vector<float> x(heads * n * dim);
    for (float& e : x) e = normal(rng);
    return x;
  };
  const std::vector<float> q = random(), k = random(), v = random(), qg = random(), kg = random(), vg = random();
  std::vector<float> out(q.size());
  auto in = [&](const std::vector<float>& x) { return sa::bhsd<const float>(x.data(), 1, heads, n, dim); };
  const auto o = sa::bhsd(out.data(), 1, heads, n, dim);

  sa::attention<float>(in(q), in(k), in(v), o, policy, layout);           // every row, ordinary projections
  sa::longformer_global_attention<float>(in(qg), in(kg), in(vg), o, policy);  // global rows, their own

  // Check one global row and one local row against dense attention.
  std::vector<double> global_row(q.size()), local_row(q.size());
  sa::reference::dense_attention(in(qg), in(kg), in(vg), sa::bhsd(global_row.data(), 1, heads, n, dim), sa::Dense{});
  sa::reference::dense_attention(in(q), in(k), in(v), sa::bhsd(local_row.data(), 1, heads, n, dim), policy);
  double error = 0;
  for (sa::Index c = 0; c < dim; ++c) {
    error = std::max(error, std::abs(o(0, 2, 2048, c) - global_row[static_cast<std::size_t>((2 * n + 2048) * dim + c)]));
    error = std::max(error, std::abs(o(0, 2, 1000, c) - local_row[static_cast<std::size_t>((2 * n + 1000) * dim + c)]));
  }
  std::printf("max |error| of a global and a local row against the double reference: %.2e\n", error);
  return error < 1e-4 ? 0 : 1;
}
