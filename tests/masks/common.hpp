// SPDX-License-Identifier: Apache-2.0
// Helpers for the policy tests.
#pragma once

#include <cstdint>
#include <vector>

#include "sparse_attention/sparse_attention.hpp"

namespace sparse_attention::testing {

// Keys query row i of head h may attend to, from the element predicate.
template <class Policy>
std::vector<Index> keys_of(const Policy& policy, Extent x, Index i, Index h = 0) {
  std::vector<Index> keys;
  for (Index j = 0; j < x.seq_k; ++j)
    if (policy.allowed(x, i, j, h)) keys.push_back(j);
  return keys;
}

// [first, last]
inline std::vector<Index> iota(Index first, Index last) {
  std::vector<Index> v;
  for (Index j = first; j <= last; ++j) v.push_back(j);
  return v;
}

inline std::vector<Index> join(std::vector<Index> a, const std::vector<Index>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Square and rectangular extents the consistency checks sweep.
inline std::vector<Extent> small_extents() {
  return {{0, 0}, {1, 1}, {5, 5}, {13, 13}, {31, 31}, {64, 64}, {77, 77}, {20, 45}, {45, 20}, {1, 70}};
}

// Phi-3-small's block-sparse layout in ONNX Runtime: local blocks plus a vertical stride, causal inside
// blocks. Built here as a bitmap, as a user would from the model's config, and run unchanged.
inline BlockMask phi3_layout(Index n, Index block, Index local, Index vert_stride, Index heads) {
  const Index nb = detail::ceil_div(n, block);
  std::vector<std::uint8_t> bits(static_cast<std::size_t>(heads * nb * nb));
  for (Index h = 0; h < heads; ++h)
    for (Index r = 0; r < nb; ++r)
      for (Index c = 0; c <= r; ++c)
        bits[static_cast<std::size_t>((h * nb + r) * nb + c)] = (r - c < local || (c + h + 1) % vert_stride == 0) ? 1 : 0;
  return BlockMask::from_bitmap(bits, heads, nb, nb, {block, block}, /*causal=*/true);
}

}  // namespace sparse_attention::testing
