// SPDX-License-Identifier: Apache-2.0
// A pattern of your own in the same kernel: a causal dilated window, where query p attends to
// p, p - d, p - 2d, ..., p - (w - 1) d. Three members make it a MaskPolicy: the element predicate (the
// truth), a per-tile classification and an enumeration of the tiles worth visiting. The optional
// key_mask makes its partial tiles cheap to mask.
#include <sparse_attention/sparse_attention.hpp>

#include <cstdio>
#include <random>
#include <vector>

namespace sa = sparse_attention;

struct DilatedWindow {
  sa::Index width, dilation;

  bool allowed(const sa::Extent& x, sa::Index i, sa::Index j, sa::Index /*head*/) const {
    const sa::Index back = x.position(i) - j;
    return back >= 0 && back < width * dilation && back % dilation == 0;
  }
  // Tiles between the window's first and last key may hold allowed pairs: call them partial, or empty
  // when no key of the tile is in reach (conservative is correct; exact is faster).
  sa::BlockClass classify(const sa::BlockGrid& g, sa::Index qb, sa::Index kb, sa::Index /*head*/) const {
    const sa::Range p = g.position_range(qb), k = g.kv_range(kb);
    const bool reach = k.begin <= p.end - 1 && k.end - 1 >= p.begin - (width - 1) * dilation;
    return reach ? sa::BlockClass::kPartial : sa::BlockClass::kEmpty;
  }
  template <class Visit>
  void for_each_block(const sa::BlockGrid& g, sa::Index qb, sa::Index head, Visit&& visit) const {
    const sa::Range p = g.position_range(qb);
    const sa::Index first = std::max<sa::Index>(0, p.begin - (width - 1) * dilation), last = p.end - 1;
    if (last < 0 || g.extent().seq_k == 0) return;
    sa::for_each_block_in_range(g.kv_block_of(first), g.kv_block_of(std::min(last, g.extent().seq_k - 1)) + 1,
                                [&](sa::Index kb) { return classify(g, qb, kb, head); }, visit);
  }
  std::uint64_t key_mask(const sa::Extent& x, sa::Index i, sa::Index /*head*/, sa::Index j0) const {
    std::uint64_t bits = 0;
    for (sa::Index m = 0, p = x.position(i); m < width; ++m)
      if (p - m * dilation >= j0 && p - m * dilation < j0 + 64) bits |= std::uint64_t{1} << (p - m * dilation - j0);
    return bits;
  }
};
static_assert(sa::MaskPolicy<DilatedWindow>);

int main() {
  const sa::Index n = 1024, heads = 4, dim = 64;
  const DilatedWindow policy{/*width=*/32, /*dilation=*/4};
  const sa::BlockLayout layout = sa::BlockLayout::build(policy, {n, n}, {64, 64});
  std::printf("DilatedWindow{32, 4}: %lld tiles visited, density %.4f\n%s", static_cast<long long>(layout.nnz_blocks()),
              layout.density(), layout.to_string().c_str());

  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  std::vector<float> q(heads * n * dim), k(q.size()), v(q.size()), out(q.size());
  for (auto* x : {&q, &k, &v})
    for (float& e : *x) e = normal(rng);
  std::vector<double> expected(q.size());
  auto view = [&](auto& x) { return sa::bhsd(x.data(), 1, heads, n, dim); };
  sa::attention<float>(view(q), view(k), view(v), view(out), policy, layout);
  sa::reference::dense_attention(view(q), view(k), view(v), view(expected), policy);
  double error = 0;
  for (std::size_t i = 0; i < out.size(); ++i) error = std::max(error, std::abs(out[i] - expected[i]));
  std::printf("max |error| against the double reference: %.2e\n", error);
  return error < 1e-4 ? 0 : 1;
}
