// SPDX-License-Identifier: Apache-2.0
// Peak memory of one attention call against the bytes of Q, K, V and O: run it under
// `/usr/bin/time -v` and compare "Maximum resident set size" with the figure printed here.
//
//   sparse_attention_memory [pattern] [n] [heads] [d]     pattern: local (default), dense, longformer
//
// The kernel's own memory is the layout (O(nnz blocks)) and one workspace per thread (a few tiles):
// O(n), never the n x n scores.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "sparse_attention/sparse_attention.hpp"

namespace sa = sparse_attention;

int main(int argc, char** argv) {
  const std::string pattern = argc > 1 ? argv[1] : "local";
  const sa::Index n = argc > 2 ? std::atoll(argv[2]) : 131072, heads = argc > 3 ? std::atoll(argv[3]) : 8,
                  d = argc > 4 ? std::atoll(argv[4]) : 64;
  const auto size = static_cast<std::size_t>(heads * n * d);
  // Filled (so every page is resident) with a cheap deterministic pattern.
  std::vector<float> q(size), k(size), v(size), o(size);
  for (std::size_t i = 0; i < size; ++i) {
    q[i] = static_cast<float>((i * 7919) % 1000) * 1e-3f - 0.5f;
    k[i] = static_cast<float>((i * 104729) % 1000) * 1e-3f - 0.5f;
    v[i] = static_cast<float>((i * 1299709) % 1000) * 1e-3f - 0.5f;
  }
  const auto qv = sa::bhsd<const float>(q.data(), 1, heads, n, d), kv = sa::bhsd<const float>(k.data(), 1, heads, n, d),
             vv = sa::bhsd<const float>(v.data(), 1, heads, n, d);
  const auto ov = sa::bhsd(o.data(), 1, heads, n, d);
  if (pattern == "dense") {
    sa::attention<float>(qv, kv, vv, ov, sa::Dense{});
  } else if (pattern == "longformer") {
    sa::attention<float>(qv, kv, vv, ov, sa::Longformer(256, {0, 1}));
  } else {
    sa::attention<float>(qv, kv, vv, ov, sa::LocalWindow::causal(512));
  }
  double checksum = 0;
  for (std::size_t i = 0; i < size; i += 4099) checksum += o[i];
  const double qkvo = 4.0 * static_cast<double>(size) * sizeof(float);
  std::printf("%s attention, n %lld, %lld heads, d %lld: Q+K+V+O = %.1f MiB (%.0f kB); checksum %.6f\n", pattern.c_str(),
              static_cast<long long>(n), static_cast<long long>(heads), static_cast<long long>(d), qkvo / (1 << 20),
              qkvo / 1024, checksum);
  return 0;
}
