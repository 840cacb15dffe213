// SPDX-License-Identifier: Apache-2.0
// The MaskPolicy concept: what a sparsity pattern must tell the library, at two levels.
//
//   Element level (authoritative):
//     bool allowed(const Extent& x, Index i, Index j, Index h) const
//       may query row i (0 <= i < seq_q) of head h attend to key j (0 <= j < seq_k)?
//       The query's absolute position is x.position(i) = i + seq_k - seq_q (bottom-right alignment).
//
//   Block level (conservative, cheap):
//     BlockClass classify(const BlockGrid& g, Index qb, Index kb, Index h) const
//       kEmpty only if no pair of the tile is allowed, kFull only if every pair is.
//     void for_each_block(const BlockGrid& g, Index qb, Index h, Visitor&& visit) const
//       calls visit(kb, block_class) for every non-empty key block of query block qb, in increasing
//       kb, in time proportional to the number of such blocks (never by scanning every kb).
//
//   Optional members:
//     bool head_dependent() const     true if the pattern differs between heads (default: false)
//     Index count_allowed(g, qb, kb, h) const
//                                     exact allowed pairs in a partial tile, faster than the
//                                     element-by-element count the library falls back on
//     std::uint64_t key_mask(const Extent& x, Index i, Index h, Index j0) const
//                                     bit t set iff allowed(x, i, j0 + t, h), for t < 64 (bits for
//                                     keys >= seq_k are ignored). Partial tiles are then masked a
//                                     row of 64 keys at a time instead of one predicate call per
//                                     pair; Union and Intersection combine masks with OR and AND.
//     Range key_range(const Extent& x, Index i, Index h) const
//                                     the simpler form for policies whose every row is one interval
//                                     of keys: exactly the j in [begin, end) are allowed.
//     void check(const Extent& x, Index num_heads) const
//                                     throws std::invalid_argument if the policy cannot serve these
//                                     lengths or heads (a global token beyond seq_k, a table of
//                                     the wrong shape); every entry point calls it first.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <utility>

#include "sparse_attention/core/types.hpp"

namespace sparse_attention {

namespace detail {
// Stands in for the visitor type when checking the concept.
struct BlockVisitorArchetype {
  void operator()(Index, BlockClass) const {}
};
}  // namespace detail

template <class P>
concept HasElementPredicate = requires(const P& p, const Extent& x, Index i) {
  { p.allowed(x, i, i, i) } -> std::convertible_to<bool>;
};

template <class P>
concept HasBlockClassification = requires(const P& p, const BlockGrid& g, Index i) {
  { p.classify(g, i, i, i) } -> std::same_as<BlockClass>;
};

template <class P>
concept HasBlockEnumeration =
    requires(const P& p, const BlockGrid& g, Index i, detail::BlockVisitorArchetype visit) {
      p.for_each_block(g, i, i, visit);
    };

// A sparsity pattern the blocked kernel, BlockLayout and the dense reference can all use.
template <class P>
concept MaskPolicy = std::copy_constructible<P> && HasElementPredicate<P> &&
                     HasBlockClassification<P> && HasBlockEnumeration<P>;

// Optional faster masking forms (see the top of this file).
template <class P>
concept HasKeyRange = requires(const P& p, const Extent& x, Index i) {
  { p.key_range(x, i, i) } -> std::same_as<Range>;
};

template <class P>
concept HasKeyMask = requires(const P& p, const Extent& x, Index i) {
  { p.key_mask(x, i, i, i) } -> std::same_as<std::uint64_t>;
};

// Bits t of [j0, j0 + 64) that fall in `keys`: the building block of a policy's key_mask.
constexpr std::uint64_t interval_bits(Range keys, Index j0) {
  const Index begin = std::max(keys.begin, j0) - j0, end = std::min(keys.end, j0 + 64) - j0;
  if (end <= begin) return 0;
  const std::uint64_t upto_end = end >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << end) - 1;
  return upto_end & ~((std::uint64_t{1} << begin) - 1);
}

// Row i's allowed keys among [j0, j0 + 64) as bits, through the fastest form the policy offers.
template <class P>
std::uint64_t key_bits(const P& policy, const Extent& x, Index i, Index h, Index j0) {
  if constexpr (HasKeyMask<P>) {
    return policy.key_mask(x, i, h, j0);
  } else if constexpr (HasKeyRange<P>) {
    return interval_bits(policy.key_range(x, i, h), j0);
  } else {
    std::uint64_t bits = 0;
    const Index n = std::min<Index>(64, x.seq_k - j0);
    for (Index t = 0; t < n; ++t)
      if (policy.allowed(x, i, j0 + t, h)) bits |= std::uint64_t{1} << t;
    return bits;
  }
}

namespace detail {

// Names the missing piece when a type that is not a MaskPolicy reaches an entry point.
template <class P>
constexpr void assert_mask_policy() {
  static_assert(HasElementPredicate<P>,
                "sparse_attention: the policy has no element predicate: it must provide "
                "`bool allowed(const Extent& x, Index i, Index j, Index h) const`");
  static_assert(HasBlockClassification<P>,
                "sparse_attention: the policy has no block classification: it must provide "
                "`BlockClass classify(const BlockGrid& g, Index qb, Index kb, Index h) const`");
  static_assert(HasBlockEnumeration<P>,
                "sparse_attention: the policy has no block enumeration: it must provide "
                "`void for_each_block(const BlockGrid& g, Index qb, Index h, Visitor&& visit) const` "
                "calling visit(kb, BlockClass) for each non-empty key block in increasing order");
  static_assert(std::copy_constructible<P>, "sparse_attention: a policy must be copy-constructible");
}

// Calls the policy's own check of an extent, if it has one.
template <class P>
void check_policy(const P& policy, const Extent& x, Index num_heads) {
  if constexpr (requires { policy.check(x, num_heads); }) policy.check(x, num_heads);
}

template <class P>
bool head_dependent(const P& policy) {
  if constexpr (requires { { policy.head_dependent() } -> std::convertible_to<bool>; }) {
    return policy.head_dependent();
  } else {
    return false;
  }
}

// Exact number of allowed pairs in tile (qb, kb) of head h.
template <class P>
Index count_allowed(const P& policy, const BlockGrid& g, Index qb, Index kb, Index h) {
  if constexpr (requires { { policy.count_allowed(g, qb, kb, h) } -> std::convertible_to<Index>; }) {
    return policy.count_allowed(g, qb, kb, h);
  } else {
    const Range rows = g.q_range(qb), cols = g.kv_range(kb);
    Index n = 0;
    for (Index i = rows.begin; i < rows.end; ++i)
      for (Index j = cols.begin; j < cols.end; ++j) n += policy.allowed(g.extent(), i, j, h) ? 1 : 0;
    return n;
  }
}

// The exact class of a tile, found by evaluating every pair: the ground truth that a policy's
// conservative classify() is tested against. O(block area); never used on the hot path.
template <class P>
BlockClass classify_exactly(const P& policy, const BlockGrid& g, Index qb, Index kb, Index h) {
  const Index area = g.q_range(qb).size() * g.kv_range(kb).size();
  const Index n = count_allowed(policy, g, qb, kb, h);
  if (n == 0) return BlockClass::kEmpty;
  return n == area ? BlockClass::kFull : BlockClass::kPartial;
}

}  // namespace detail

// Calls visit(kb, classify(kb)) for each kb in [kb_begin, kb_end) whose class is not empty: the
// building block of enumeration for a policy that knows a range of candidate key blocks.
template <class Classify, class Visitor>
void for_each_block_in_range(Index kb_begin, Index kb_end, Classify&& classify, Visitor&& visit) {
  for (Index kb = kb_begin; kb < kb_end; ++kb) {
    const BlockClass c = classify(kb);
    if (c != BlockClass::kEmpty) visit(kb, c);
  }
}

}  // namespace sparse_attention
