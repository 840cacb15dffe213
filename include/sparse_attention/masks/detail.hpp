// SPDX-License-Identifier: Apache-2.0
// Pieces the policies share: exact classification from a count of allowed pairs, candidate key blocks
// emitted once each in increasing order, and counting keys with a periodic residue.
#pragma once

#include <algorithm>
#include <cstdint>

#include "sparse_attention/core/types.hpp"

namespace sparse_attention::detail {

// Exact class of tile (qb, kb) from the policy's count_allowed.
template <class P>
BlockClass classify_by_count(const P& policy, const BlockGrid& g, Index qb, Index kb, Index h) {
  const Index area = g.q_range(qb).size() * g.kv_range(kb).size();
  if (area == 0) return BlockClass::kEmpty;
  const Index n = policy.count_allowed(g, qb, kb, h);
  return n == 0 ? BlockClass::kEmpty : (n == area ? BlockClass::kFull : BlockClass::kPartial);
}

// Turns key ranges given in non-decreasing order of their ends into the key blocks they touch, each
// block emitted once, in increasing order. Keys are clamped to [0, seq_k).
class BlockEmitter {
 public:
  explicit BlockEmitter(const BlockGrid& g) : g_(g) {}

  // Keys [first, last] (inclusive).
  template <class Emit>
  void keys(Index first, Index last, Emit&& emit) {
    first = std::max<Index>(first, 0);
    last = std::min<Index>(last, g_.extent().seq_k - 1);
    if (first > last) return;
    for (Index kb = std::max(last_ + 1, g_.kv_block_of(first)), end = g_.kv_block_of(last); kb <= end; ++kb) {
      emit(kb);
      last_ = kb;
    }
  }

 private:
  const BlockGrid& g_;
  Index last_ = -1;
};

// Number of integers j in [a, b) (0 <= a) whose residue j mod period lies in [r0, r1]
// (0 <= r0 <= r1 < period).
constexpr Index count_residues(Index a, Index b, Index r0, Index r1, Index period) {
  if (b <= a) return 0;
  const auto below = [&](Index x) {  // count in [0, x)
    const Index full = x / period, rest = x % period;
    return full * (r1 - r0 + 1) + std::clamp<Index>(rest - r0, 0, r1 - r0 + 1);
  };
  return below(b) - below(a);
}

// Number of integers m in [lo, hi].
constexpr Index count_between(Index lo, Index hi) { return hi >= lo ? hi - lo + 1 : 0; }

// The sum over x in `xs` of #{j in keys : j < x}. Each x counts clamp(x - keys.begin, 0, keys.size())
// keys -- none, a ramp, then the whole range -- so the sum has a closed form. Every band count is a
// difference of two of these (Band::count).
constexpr Index keys_below_sum(Range xs, Range keys) {
  const Index ramp_begin = std::max(xs.begin, keys.begin), ramp_end = std::min(xs.end, keys.end);
  const Index all_begin = std::max(xs.begin, keys.end);
  Index n = 0;
  if (ramp_end > ramp_begin)  // x - keys.begin from ramp_begin to ramp_end - 1: an arithmetic series
    n += (ramp_end - ramp_begin) * (ramp_begin + ramp_end - 1 - 2 * keys.begin) / 2;
  if (xs.end > all_begin) n += (xs.end - all_begin) * keys.size();
  return n;
}

// Pairs (p, j) with p in `positions`, j in `keys` and j <= p (#{j < p + 1} per position).
constexpr Index causal_pairs(Range positions, Range keys) {
  return keys_below_sum({positions.begin + 1, positions.end + 1}, keys);
}

// The bit of key j among [j0, j0 + 64), or 0 when j is outside.
constexpr std::uint64_t key_bit(Index j, Index j0) {
  return (j >= j0 && j < j0 + 64) ? std::uint64_t{1} << (j - j0) : 0;
}

}  // namespace sparse_attention::detail
