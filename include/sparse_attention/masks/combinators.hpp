// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "sparse_attention/core/mask_policy.hpp"
#include "sparse_attention/core/types.hpp"

namespace sparse_attention {

// Pairs allowed by A or by B (a | b), e.g. LocalWindow | Longformer.
template <class A, class B>
class Union {
 public:
  Union(A a, B b) : a_(std::move(a)), b_(std::move(b)) {}

  const A& first() const { return a_; }
  const B& second() const { return b_; }
  bool head_dependent() const { return detail::head_dependent(a_) || detail::head_dependent(b_); }
  void check(const Extent& x, Index heads) const {
    detail::check_policy(a_, x, heads);
    detail::check_policy(b_, x, heads);
  }

  bool allowed(const Extent& x, Index i, Index j, Index h) const {
    return a_.allowed(x, i, j, h) || b_.allowed(x, i, j, h);
  }
  std::uint64_t key_mask(const Extent& x, Index i, Index h, Index j0) const {
    return key_bits(a_, x, i, h, j0) | key_bits(b_, x, i, h, j0);
  }
  // Full if either is (every pair is allowed by it); empty if both are; else partial.
  BlockClass classify(const BlockGrid& g, Index qb, Index kb, Index h) const {
    return combine(a_.classify(g, qb, kb, h), b_.classify(g, qb, kb, h));
  }
  // Merges the two enumerations: O(blocks of A + blocks of B).
  template <class Visitor>
  void for_each_block(const BlockGrid& g, Index qb, Index h, Visitor&& visit) const {
    std::vector<std::pair<Index, BlockClass>> first, second;
    a_.for_each_block(g, qb, h, [&](Index kb, BlockClass c) { first.emplace_back(kb, c); });
    b_.for_each_block(g, qb, h, [&](Index kb, BlockClass c) { second.emplace_back(kb, c); });
    std::size_t x = 0, y = 0;
    while (x < first.size() || y < second.size()) {
      if (y == second.size() || (x < first.size() && first[x].first < second[y].first)) {
        visit(first[x].first, first[x].second);
        ++x;
      } else if (x == first.size() || second[y].first < first[x].first) {
        visit(second[y].first, second[y].second);
        ++y;
      } else {
        visit(first[x].first, combine(first[x].second, second[y].second));
        ++x, ++y;
      }
    }
  }

 private:
  static BlockClass combine(BlockClass a, BlockClass b) {
    if (a == BlockClass::kFull || b == BlockClass::kFull) return BlockClass::kFull;
    if (a == BlockClass::kEmpty && b == BlockClass::kEmpty) return BlockClass::kEmpty;
    return BlockClass::kPartial;
  }
  A a_;
  B b_;
};

// Pairs allowed by both A and B (a & b), e.g. Segments & Causal. Enumerate the sparser one first.
template <class A, class B>
class Intersection {
 public:
  Intersection(A a, B b) : a_(std::move(a)), b_(std::move(b)) {}

  const A& first() const { return a_; }
  const B& second() const { return b_; }
  bool head_dependent() const { return detail::head_dependent(a_) || detail::head_dependent(b_); }
  void check(const Extent& x, Index heads) const {
    detail::check_policy(a_, x, heads);
    detail::check_policy(b_, x, heads);
  }

  bool allowed(const Extent& x, Index i, Index j, Index h) const {
    return a_.allowed(x, i, j, h) && b_.allowed(x, i, j, h);
  }
  std::uint64_t key_mask(const Extent& x, Index i, Index h, Index j0) const {
    return key_bits(a_, x, i, h, j0) & key_bits(b_, x, i, h, j0);
  }
  // Empty if either is; full if both are; else partial (conservative: two partial tiles may not
  // overlap at all).
  BlockClass classify(const BlockGrid& g, Index qb, Index kb, Index h) const {
    return combine(a_.classify(g, qb, kb, h), b_.classify(g, qb, kb, h));
  }
  // A's blocks, each classified by B too: O(blocks of A).
  template <class Visitor>
  void for_each_block(const BlockGrid& g, Index qb, Index h, Visitor&& visit) const {
    a_.for_each_block(g, qb, h, [&](Index kb, BlockClass c) {
      const BlockClass both = combine(c, b_.classify(g, qb, kb, h));
      if (both != BlockClass::kEmpty) visit(kb, both);
    });
  }

 private:
  static BlockClass combine(BlockClass a, BlockClass b) {
    if (a == BlockClass::kEmpty || b == BlockClass::kEmpty) return BlockClass::kEmpty;
    if (a == BlockClass::kFull && b == BlockClass::kFull) return BlockClass::kFull;
    return BlockClass::kPartial;
  }
  A a_;
  B b_;
};

// a | b and a & b for any two policies; found by argument-dependent lookup when either operand is a
// policy of this library (otherwise call Union{a, b} / Intersection{a, b}).
template <class A, class B>
  requires MaskPolicy<A> && MaskPolicy<B>
Union<A, B> operator|(const A& a, const B& b) {
  return Union<A, B>(a, b);
}
template <class A, class B>
  requires MaskPolicy<A> && MaskPolicy<B>
Intersection<A, B> operator&(const A& a, const B& b) {
  return Intersection<A, B>(a, b);
}

}  // namespace sparse_attention
