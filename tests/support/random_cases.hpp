// SPDX-License-Identifier: Apache-2.0
// Random small problems over every policy, drawn from a source of integers: a seeded generator (the
// property sweep) or the fuzzer's bytes. One case = a shape (batch, GQA heads, Sq != Sk, D != Dv,
// either memory layout), a block size, a policy with random parameters, inputs of a random magnitude;
// run_random_case() checks the kernel against the double oracle and returns what went wrong.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "support/oracle.hpp"

namespace sparse_attention::testing {

// Integers from a seeded generator.
struct SeededSource {
  std::mt19937_64 rng;
  explicit SeededSource(std::uint64_t seed) : rng(seed) {}
  Index pick(Index lo, Index hi) { return std::uniform_int_distribution<Index>(lo, hi)(rng); }
};

// Integers from the fuzzer's bytes (two per draw); once they run out, every draw is its lower bound,
// so short inputs are small, valid problems.
struct ByteSource {
  std::span<const std::uint8_t> bytes;
  std::size_t at = 0;
  Index pick(Index lo, Index hi) {
    if (at + 2 > bytes.size()) return lo;
    const unsigned v = bytes[at] | (unsigned{bytes[at + 1]} << 8);
    at += 2;
    return lo + static_cast<Index>(v % static_cast<std::uint64_t>(hi - lo + 1));
  }
};

struct CaseOutcome {
  std::string policy;   // what was run, to reproduce it
  std::string failure;  // empty: the kernel matched the oracle
  bool rejected = false;  // the drawn parameters were invalid and the library said so
};

namespace random_cases_detail {

template <class Source>
std::vector<Index> sorted_subset(Source& s, Index n, Index max_count) {
  std::vector<Index> v;
  if (n <= 0) return v;
  const Index count = s.pick(0, std::min(max_count, n));
  for (Index t = 0; t < count; ++t) v.push_back(s.pick(0, n - 1));
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

template <class Source>
std::vector<Index> segment_ids(Source& s, Index n) {
  std::vector<Index> ids(static_cast<std::size_t>(n));
  Index id = s.pick(0, 3);
  const Index change = s.pick(2, 20);
  for (Index t = 0; t < n; ++t) {
    if (t > 0 && s.pick(1, change) == 1) id += s.pick(1, 2);  // non-decreasing, so each segment is contiguous
    ids[static_cast<std::size_t>(t)] = id;
  }
  return ids;
}

}  // namespace random_cases_detail

// Largest sizes drawn: the sweep's defaults; the fuzzer draws smaller problems, for more executions.
struct CaseLimits {
  Index seq = 150, dim = 40;
};

// Draws one case from s and checks it. Parameters are always drawn valid except where a policy can
// only judge them against the lengths (BigBird's random blocks): those come back `rejected`.
template <class T, class Source>
CaseOutcome run_random_case(Source& s, CaseLimits limits = {}) {
  namespace rc = random_cases_detail;
  Shape shape;
  shape.batch = s.pick(1, 2);
  shape.kv_heads = s.pick(1, 3);
  shape.q_heads = shape.kv_heads * s.pick(1, 3);
  shape.seq_k = s.pick(0, 9) == 0 ? s.pick(0, 3) : s.pick(1, limits.seq);
  shape.seq_q = s.pick(0, 2) == 0 ? shape.seq_k : s.pick(0, std::max<Index>(shape.seq_k, 1) + 20);
  shape.head_dim = s.pick(1, limits.dim);
  shape.value_dim = s.pick(0, 1) == 0 ? shape.head_dim : s.pick(1, limits.dim);
  shape.bshd = s.pick(0, 1) == 1;
  static constexpr Index kBlockChoices[] = {1, 3, 8, 16, 17, 32, 64, 128};
  const BlockSize block{kBlockChoices[s.pick(0, 7)], kBlockChoices[s.pick(0, 7)]};
  const double magnitude = s.pick(0, 7) == 0 ? 8.0 : 1.0;  // scores of several hundred now and then
  const int threads = static_cast<int>(s.pick(1, 3));
  const auto data_seed = static_cast<std::uint64_t>(s.pick(0, 1 << 20));
  const Problem<T> p(shape, data_seed, magnitude);
  const Index n = shape.seq_k;

  CaseOutcome r;
  auto check = [&](const auto& policy, std::string name) {
    r.policy = name + " block " + std::to_string(block.q) + "x" + std::to_string(block.kv) + " " + shape.str() + " threads " +
               std::to_string(threads) + " seed " + std::to_string(data_seed);
    r.failure = check_against_reference(p, policy, block, threads);
  };
  try {
    switch (s.pick(0, 13)) {
      case 0: check(Dense{}, "Dense"); break;
      case 1: check(Causal{}, "Causal"); break;
      case 2: {
        const Index left = s.pick(-1, 40), right = s.pick(-1, 40);
        check(LocalWindow(left, right), "LocalWindow(" + std::to_string(left) + ", " + std::to_string(right) + ")");
        break;
      }
      case 3: {
        const Index l = s.pick(1, 20);
        const bool causal = s.pick(0, 1) == 1;
        check(Strided(l, causal), "Strided(" + std::to_string(l) + ", " + std::to_string(causal) + ")");
        break;
      }
      case 4: {
        const Index w = s.pick(1, 20), c = s.pick(1, w);
        const bool causal = s.pick(0, 1) == 1;
        check(Fixed(w, c, causal), "Fixed(" + std::to_string(w) + ", " + std::to_string(c) + ", " + std::to_string(causal) + ")");
        break;
      }
      case 5: {
        const Index patterns = s.pick(1, 4), c = s.pick(1, 4), w = patterns * c + s.pick(0, 8);
        const bool causal = s.pick(0, 1) == 1;
        check(Fixed::sparse_transformer(w, c, patterns, causal),
              "Fixed::sparse_transformer(" + std::to_string(w) + ", " + std::to_string(c) + ", " + std::to_string(patterns) + ")");
        break;
      }
      case 6: {
        const Index w = s.pick(0, 20);
        const std::vector<Index> globals = rc::sorted_subset(s, n, 4);
        const bool causal = s.pick(0, 1) == 1;
        check(Longformer(w, globals, causal), "Longformer(" + std::to_string(w) + ", " + std::to_string(Index(globals.size())) +
                                                  " globals, " + std::to_string(causal) + ")");
        break;
      }
      case 7: {
        const Index b = s.pick(1, 16), g = s.pick(0, 2), rnd = s.pick(0, 3);
        const auto seed = static_cast<std::uint64_t>(s.pick(0, 1000));
        const bool causal = s.pick(0, 1) == 1;
        check(BigBird(b, g, rnd, seed, causal), "BigBird(" + std::to_string(b) + ", " + std::to_string(g) + ", " + std::to_string(rnd) +
                                                    ", " + std::to_string(seed) + ", " + std::to_string(causal) + ")");
        break;
      }
      case 8: {
        const Segments segments(rc::segment_ids(s, n));
        if (s.pick(0, 1) == 1)
          check(segments & Causal{}, "Segments & Causal");
        else
          check(segments, "Segments");
        break;
      }
      case 9: {
        const Index heads = s.pick(0, 1) == 1 ? shape.q_heads : 1;
        const BlockSize mb{s.pick(1, 16), s.pick(1, 16)};
        const Index qb = detail::ceil_div(n, mb.q), kb = detail::ceil_div(n, mb.kv);
        std::vector<std::uint8_t> bits(static_cast<std::size_t>(heads * qb * kb));
        const Index density = s.pick(1, 4);
        for (auto& bit : bits) bit = s.pick(1, density) == 1 ? 1 : 0;
        const bool causal = s.pick(0, 1) == 1;
        check(BlockMask::from_bitmap(bits, heads, qb, kb, mb, causal),
              "BlockMask(" + std::to_string(heads) + " heads, " + std::to_string(mb.q) + "x" + std::to_string(mb.kv) + ", causal " +
                  std::to_string(causal) + ")");
        break;
      }
      case 10: {
        const Index w = s.pick(0, 10), lw = s.pick(0, 30);
        check(LocalWindow(lw, 0) | Longformer(w, rc::sorted_subset(s, n, 3)), "LocalWindow | Longformer");
        break;
      }
      case 11: {
        const Index l = s.pick(1, 12), lw = s.pick(0, 12);
        check((LocalWindow(lw, lw) | Strided(l, false)) & Segments(rc::segment_ids(s, n)),
              "(LocalWindow | Strided) & Segments");
        break;
      }
      case 12: {  // token selections through the gather kernel, lists from the caller
        const Index groups = s.pick(0, 1) == 1 ? shape.kv_heads : 1, k = s.pick(1, std::max<Index>(n, 1) + 3);
        std::vector<std::int32_t> lists(static_cast<std::size_t>(shape.batch * groups * shape.seq_q * k), -1);
        std::vector<std::int32_t> keys(static_cast<std::size_t>(n));
        std::iota(keys.begin(), keys.end(), 0);
        for (Index row = 0; row < shape.batch * groups * shape.seq_q; ++row) {
          for (Index t = 0; t < std::min(k, n); ++t)  // a partial Fisher-Yates shuffle: distinct keys
            std::swap(keys[static_cast<std::size_t>(t)], keys[static_cast<std::size_t>(s.pick(t, n - 1))]);
          for (Index t = 0; t < std::min(k, n); ++t)
            if (s.pick(0, 5) != 0) lists[static_cast<std::size_t>(row * k + t)] = keys[static_cast<std::size_t>(t)];
        }
        const TokenTopK selection = TokenTopK::from_indices(lists, shape.batch, groups, shape.seq_q, k, n);
        r.policy = "TokenTopK(k " + std::to_string(k) + ", groups " + std::to_string(groups) + ") " + shape.str() + " seed " +
                   std::to_string(data_seed);
        r.failure = check_selection_against_reference(p, selection, [&](Index b) { return selection.mask(b, shape.q_heads); });
        break;
      }
      default: {  // block selections routed from the data
        if (shape.seq_q > shape.seq_k) {
          check(Causal{}, "Causal");
          break;
        }
        const Index k = s.pick(1, 6), b = s.pick(1, 40);
        const BlockTopK selection = BlockTopK::select(p.qv(), p.kv(), k, b);
        r.policy = "BlockTopK(k " + std::to_string(k) + ", block " + std::to_string(b) + ") " + shape.str() + " seed " +
                   std::to_string(data_seed);
        r.failure = check_selection_against_reference(p, selection, [&](Index bi) -> const BlockMask& { return selection.mask(bi); });
        break;
      }
    }
  } catch (const std::invalid_argument& e) {
    r.rejected = true;
    r.failure = e.what();
  }
  return r;
}

}  // namespace sparse_attention::testing
