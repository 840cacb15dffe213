// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <algorithm>
#include <cstdint>

#include "sparse_attention/core/error.hpp"
#include "sparse_attention/core/mask_policy.hpp"
#include "sparse_attention/core/types.hpp"
#include "sparse_attention/masks/detail.hpp"

namespace sparse_attention {

// Sparse Transformer strided attention (Child et al., 2019) with its local and strided heads merged:
// query p attends to keys j <= p with p - j < stride (the last `stride` positions, itself included)
// or p - j a multiple of stride. Bidirectional: |p - j| in both tests and no causal condition.
// Time O(n (stride + n / stride)), minimal at stride ~ sqrt(n).
class Strided {
 public:
  explicit Strided(Index stride, bool causal = true) : l_(stride), causal_(causal) {
    detail::require(stride >= 1, "Strided", "stride", stride, ">= 1");
  }

  Index stride() const { return l_; }
  bool causal() const { return causal_; }

  bool allowed(const Extent& x, Index i, Index j, Index) const {
    const Index d = x.position(i) - j;
    if (causal_ && d < 0) return false;
    const Index a = d < 0 ? -d : d;
    return a < l_ || a % l_ == 0;
  }

  std::uint64_t key_mask(const Extent& x, Index i, Index, Index j0) const {
    const Index p = x.position(i), d = p - j0;  // key j0 + t lies at distance d - t below p
    std::uint64_t bits = interval_bits({p - l_ + 1, causal_ ? p + 1 : p + l_}, j0);
    // Strided keys p - m * stride (m >= 1): offsets t = d - m * stride, from d mod stride up to d - stride.
    // One division per row: partial tiles mask every row of theirs.
    if (d >= l_)
      for (Index t = d % l_, last = std::min<Index>(63, d - l_); t <= last; t += l_) bits |= std::uint64_t{1} << t;
    if (!causal_) {
      // p + m * stride (m >= 1): offsets t = d + m * stride >= 0, from d + stride, or d mod stride when
      // that is negative.
      Index t = d + l_;
      if (t < 0) t = d % l_ == 0 ? 0 : d % l_ + l_;
      for (; t < 64; t += l_) bits |= std::uint64_t{1} << t;
    }
    return bits;
  }

  Index count_allowed(const BlockGrid& g, Index qb, Index kb, Index) const {
    const Range pos = g.position_range(qb), keys = g.kv_range(kb);
    Index n = 0;
    for (Index p = pos.begin; p < pos.end; ++p) {
      // The local run, then strided keys p - m * stride (m >= 1) below it and, bidirectional, above.
      const Index local_end = causal_ ? p + 1 : p + l_;
      n += Range{std::max(keys.begin, p - l_ + 1), std::min(keys.end, local_end)}.size();
      n += detail::count_between(std::max<Index>(1, detail::ceil_div_signed(p - keys.end + 1, l_)),
                                 detail::floor_div(p - keys.begin, l_));
      if (!causal_)
        n += detail::count_between(std::max<Index>(1, detail::ceil_div_signed(keys.begin - p, l_)),
                                   detail::floor_div(keys.end - 1 - p, l_));
    }
    return n;
  }

  BlockClass classify(const BlockGrid& g, Index qb, Index kb, Index h) const {
    return detail::classify_by_count(*this, g, qb, kb, h);
  }

  // Candidate blocks are the bands [p_first - m * stride, p_last - m * stride] the strided keys of the
  // block's queries fill, and the local band; every one holds an allowed pair.
  template <class Visitor>
  void for_each_block(const BlockGrid& g, Index qb, Index h, Visitor&& visit) const {
    const Range pos = g.position_range(qb);
    if (pos.empty() || g.extent().seq_k == 0) return;
    const Index p0 = pos.begin, p1 = pos.end - 1, seq_k = g.extent().seq_k;
    detail::BlockEmitter emit(g);
    const auto visit_block = [&](Index kb) { visit(kb, classify(g, qb, kb, h)); };
    if (p1 - p0 + 1 >= l_) {
      // The block holds every residue mod stride: every key (up to p_last when causal) is allowed.
      emit.keys(0, causal_ ? p1 : seq_k - 1, visit_block);
      return;
    }
    for (Index m = detail::floor_div(p1, l_); m >= 1; --m) emit.keys(p0 - m * l_, p1 - m * l_, visit_block);
    emit.keys(p0 - l_ + 1, causal_ ? p1 : p1 + l_ - 1, visit_block);
    if (!causal_)
      for (Index m = 1; p0 + m * l_ < seq_k; ++m) emit.keys(p0 + m * l_, p1 + m * l_, visit_block);
  }

 private:
  Index l_;
  bool causal_;
};

}  // namespace sparse_attention
