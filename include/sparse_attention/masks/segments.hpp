// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "sparse_attention/core/error.hpp"
#include "sparse_attention/core/mask_policy.hpp"
#include "sparse_attention/core/types.hpp"
#include "sparse_attention/masks/detail.hpp"

namespace sparse_attention {

// Packed sequences: several documents laid end to end in one sequence, each token tagged with its
// document's id; a query attends only to keys of its own document. Combine with & (Segments & Causal
// for packed causal language modelling). ids has one entry per key position (seq_k) and equal ids must
// be contiguous. Queries before position 0 (seq_q > seq_k) attend to nothing.
class Segments {
 public:
  explicit Segments(const std::vector<Index>& ids) {
    auto starts = std::make_shared<std::vector<Index>>();
    std::unordered_set<Index> finished;
    for (std::size_t t = 0; t < ids.size(); ++t) {
      if (t > 0 && ids[t] == ids[t - 1]) continue;
      if (t > 0) finished.insert(ids[t - 1]);
      if (finished.count(ids[t]) != 0)
        detail::throw_invalid_argument("Segments", "ids[" + std::to_string(t) + "]", ids[t],
                                       "contiguous segments (this id already ended before position " +
                                           std::to_string(t) + ")");
      starts->push_back(static_cast<Index>(t));
    }
    length_ = static_cast<Index>(ids.size());
    starts->push_back(length_);
    starts_ = std::move(starts);
  }

  Index length() const { return length_; }
  Index segments() const { return static_cast<Index>(starts_->size()) - 1; }

  void check(const Extent& x, Index) const {
    detail::require(length_ == x.seq_k, "Segments", "ids length", length_,
                    "seq_k (" + std::to_string(x.seq_k) + "): one id per key position");
  }

  // The positions [begin, end) of the segment holding position p (0 <= p < length).
  Range segment_of(Index p) const {
    const auto it = std::upper_bound(starts_->begin(), starts_->end(), p);
    return {*(it - 1), *it};
  }

  Range key_range(const Extent& x, Index i, Index) const {
    const Index p = x.position(i);
    return p < 0 ? Range{} : segment_of(p);
  }
  bool allowed(const Extent& x, Index i, Index j, Index h) const {
    const Range keys = key_range(x, i, h);
    return j >= keys.begin && j < keys.end;
  }

  Index count_allowed(const BlockGrid& g, Index qb, Index kb, Index h) const {
    const Range rows = g.q_range(qb), keys = g.kv_range(kb);
    Index n = 0;
    for (Index i = rows.begin; i < rows.end; ++i) {
      const Range k = key_range(g.extent(), i, h);
      n += Range{std::max(k.begin, keys.begin), std::min(k.end, keys.end)}.size();
    }
    return n;
  }
  BlockClass classify(const BlockGrid& g, Index qb, Index kb, Index h) const {
    return detail::classify_by_count(*this, g, qb, kb, h);
  }
  // The block's queries span consecutive segments, whose keys form one run.
  template <class Visitor>
  void for_each_block(const BlockGrid& g, Index qb, Index h, Visitor&& visit) const {
    const Range pos = g.position_range(qb);
    if (pos.end <= 0 || length_ == 0) return;
    detail::BlockEmitter emit(g);
    emit.keys(segment_of(std::max<Index>(pos.begin, 0)).begin, segment_of(pos.end - 1).end - 1,
              [&](Index kb) { visit(kb, classify(g, qb, kb, h)); });
  }

 private:
  Index length_ = 0;
  std::shared_ptr<const std::vector<Index>> starts_;  // first position of each segment, then length
};

}  // namespace sparse_attention
