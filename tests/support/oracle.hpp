// SPDX-License-Identifier: Apache-2.0
// The test oracle, free of any test framework so the fuzzer shares it: random problems, the kernel
// and the reference run on them, and the FlashAttention error rule.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "sparse_attention/sparse_attention.hpp"

namespace sparse_attention::testing {

// The type the oracle accumulates in for kernel type T: double for float, long double for double.
template <class T>
using OracleType = std::conditional_t<std::is_same_v<T, float>, double, long double>;

struct Shape {
  Index batch = 1, q_heads = 1, kv_heads = 1, seq_q = 1, seq_k = 1, head_dim = 8, value_dim = 8;
  bool bshd = false;  // store Q, K, V, O as [B, S, H, D] instead of [B, H, S, D]
  std::string str() const {
    std::ostringstream s;
    s << "B" << batch << " Hq" << q_heads << " Hkv" << kv_heads << " Sq" << seq_q << " Sk" << seq_k
      << " D" << head_dim << " Dv" << value_dim << (bshd ? " bshd" : " bhsd");
    return s.str();
  }
};

// Owns the buffers of one problem and hands out views in the chosen memory layout.
template <class T>
struct Problem {
  Shape shape;
  std::vector<T> q, k, v;

  Problem(const Shape& s, std::uint64_t seed, double magnitude = 1.0) : shape(s) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal(0.0, magnitude);
    auto fill = [&](std::vector<T>& x, Index n) {
      x.resize(static_cast<std::size_t>(n));
      for (T& e : x) e = static_cast<T>(normal(rng));
    };
    fill(q, s.batch * s.q_heads * s.seq_q * s.head_dim);
    fill(k, s.batch * s.kv_heads * s.seq_k * s.head_dim);
    fill(v, s.batch * s.kv_heads * s.seq_k * s.value_dim);
  }

  template <class U>
  TensorView<U> view(U* data, Index heads, Index seq, Index dim) const {
    return shape.bshd ? bshd(data, shape.batch, seq, heads, dim)
                      : bhsd(data, shape.batch, heads, seq, dim);
  }
  TensorView<const T> qv() const { return view<const T>(q.data(), shape.q_heads, shape.seq_q, shape.head_dim); }
  TensorView<const T> kv() const { return view<const T>(k.data(), shape.kv_heads, shape.seq_k, shape.head_dim); }
  TensorView<const T> vv() const { return view<const T>(v.data(), shape.kv_heads, shape.seq_k, shape.value_dim); }
  Index out_size() const { return shape.batch * shape.q_heads * shape.seq_q * shape.value_dim; }
  Index lse_size() const { return shape.batch * shape.q_heads * shape.seq_q; }
  template <class U>
  TensorView<U> out_view(std::vector<U>& o) const {
    return view<U>(o.data(), shape.q_heads, shape.seq_q, shape.value_dim);
  }
};

// Output and LSE of one run, in the logical [B, H, S, D] / [B, H, S] order whatever the storage.
template <class U>
struct Result {
  std::vector<U> out, lse;
};

template <class U, class T>
Result<U> logical(const Problem<T>& p, const std::vector<U>& out, const std::vector<U>& lse) {
  const Shape& s = p.shape;
  Result<U> r;
  r.out.resize(out.size());
  r.lse = lse;
  const TensorView<const U> o = p.template view<const U>(out.data(), s.q_heads, s.seq_q, s.value_dim);
  std::size_t n = 0;
  for (Index b = 0; b < s.batch; ++b)
    for (Index h = 0; h < s.q_heads; ++h)
      for (Index i = 0; i < s.seq_q; ++i)
        for (Index c = 0; c < s.value_dim; ++c) r.out[n++] = o(b, h, i, c);
  return r;
}

template <class T, class Policy>
Result<T> run_kernel(const Problem<T>& p, const Policy& policy, BlockSize block, int threads = 0) {
  std::vector<T> out(static_cast<std::size_t>(p.out_size()), T(-12345)), lse(static_cast<std::size_t>(p.lse_size()));
  const BlockLayout layout = BlockLayout::build(policy, {p.shape.seq_q, p.shape.seq_k}, block, p.shape.q_heads);
  AttentionOptions<T> options;
  options.lse = lse_bhs(lse.data(), p.shape.batch, p.shape.q_heads, p.shape.seq_q);
  options.num_threads = threads;
  attention<T>(p.qv(), p.kv(), p.vv(), p.out_view(out), policy, layout, options);
  return logical(p, out, lse);
}

template <class Acc, class T, class Policy>
Result<Acc> run_reference(const Problem<T>& p, const Policy& policy) {
  std::vector<Acc> out(static_cast<std::size_t>(p.out_size())), lse(static_cast<std::size_t>(p.lse_size()));
  AttentionOptions<Acc> options;
  options.lse = lse_bhs(lse.data(), p.shape.batch, p.shape.q_heads, p.shape.seq_q);
  reference::dense_attention<Acc>(p.qv(), p.kv(), p.vv(), p.out_view(out), policy, options);
  return logical(p, out, lse);
}

// Largest |a - b| over finite pairs, infinity if one side is non-finite where the other is not,
// or if they are infinities of different sign.
template <class A, class B>
double max_error(const std::vector<A>& a, const std::vector<B>& b) {
  double e = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto x = static_cast<long double>(a[i]), y = static_cast<long double>(b[i]);
    if (std::isinf(x) || std::isinf(y)) {
      if (x != y) return std::numeric_limits<double>::infinity();
      continue;
    }
    if (std::isnan(x) || std::isnan(y)) return std::numeric_limits<double>::infinity();
    e = std::max(e, static_cast<double>(std::fabs(x - y)));
  }
  return e;
}

// The absolute floor of the error rule: four units in the last place of T at the scale of
// max(|reference|, 1). FlashAttention samples the rounding noise of every element instead; with a
// handful of values, as in one-row problems, the naive error is a single lucky sample that can be far
// below one ulp, and an LSE near 0 is still the sum of a maximum score and a logarithm of order 1,
// rounded at their scale. A wrong mask or a lost tile shows up as errors of 1e-3 and more.
template <class T, class A>
double representation_noise(const std::vector<A>& ref) {
  double largest = 1;
  for (const A& x : ref)
    if (std::isfinite(static_cast<double>(x))) largest = std::max(largest, std::fabs(static_cast<double>(x)));
  return 4 * static_cast<double>(std::numeric_limits<T>::epsilon()) * largest;
}

// Conditioning of the softmax: a score s is rounded at the scale of |s|, so both the kernel and the
// naive run carry errors of order eps * |s| in every exponent. For scores of order 1 this is the
// rounding noise above; for the large scores of the robustness cases (|s| in the hundreds and more),
// the floor grows with the largest |scaled score| the inputs can produce (Cauchy-Schwarz bound on
// q . k * scale), beyond 16. Below that, the rule stays as tight as it is for ordinary inputs.
template <class T>
double score_conditioning(const Problem<T>& p) {
  const Shape& s = p.shape;
  auto max_norm = [](const std::vector<T>& x, Index dim) {
    double best = 0;
    for (std::size_t r = 0; dim > 0 && r < x.size() / static_cast<std::size_t>(dim); ++r) {
      double n2 = 0;
      for (Index c = 0; c < dim; ++c) n2 += static_cast<double>(x[r * static_cast<std::size_t>(dim) + static_cast<std::size_t>(c)]) *
                                          static_cast<double>(x[r * static_cast<std::size_t>(dim) + static_cast<std::size_t>(c)]);
      best = std::max(best, std::sqrt(n2));
    }
    return best;
  };
  // Rows of D consecutive elements are rows of Q and K in both memory layouts.
  const double bound = max_norm(p.q, s.head_dim) * max_norm(p.k, s.head_dim) / std::sqrt(static_cast<double>(s.head_dim));
  return std::max(1.0, bound / 16);
}

// FlashAttention's rule: the kernel's error against the high-precision oracle must stay within twice
// the error of a naive implementation in the kernel's own precision, plus the rounding noise floor.
// Also checks that rows with no allowed key are exactly 0 with LSE -inf in the kernel's output.
// Returns an empty string when the kernel passes, otherwise what went wrong.
template <class T, class Policy>
std::string check_against_reference(const Problem<T>& p, const Policy& policy, BlockSize block, int threads = 0) {
  using Oracle = OracleType<T>;
  const Result<T> kernel = run_kernel(p, policy, block, threads);
  const Result<Oracle> oracle = run_reference<Oracle>(p, policy);
  const Result<T> naive = run_reference<T>(p, policy);

  const double err = max_error(kernel.out, oracle.out), naive_err = max_error(naive.out, oracle.out);
  const double conditioning = score_conditioning(p);
  const double floor = representation_noise<T>(oracle.out) * conditioning;
  const double lse_err = max_error(kernel.lse, oracle.lse), naive_lse_err = max_error(naive.lse, oracle.lse);
  const double lse_floor = representation_noise<T>(oracle.lse) * conditioning;
  std::ostringstream why;
  why << p.shape.str() << " block " << block.q << "x" << block.kv << ": ";
  if (!(err <= 2 * naive_err + floor)) {
    why << "output error " << err << " > 2 x naive error " << naive_err << " + " << floor;
    return why.str();
  }
  if (!(lse_err <= 2 * naive_lse_err + lse_floor)) {
    why << "LSE error " << lse_err << " > 2 x naive error " << naive_lse_err << " + " << lse_floor;
    return why.str();
  }
  // Rows with no allowed key: exactly zero output, LSE exactly -inf.
  const Shape& s = p.shape;
  for (std::size_t row = 0; row < oracle.lse.size(); ++row) {
    if (!std::isinf(static_cast<double>(oracle.lse[row]))) continue;
    if (kernel.lse[row] != -std::numeric_limits<T>::infinity()) {
      why << "empty row " << row << " has LSE " << kernel.lse[row];
      return why.str();
    }
    for (Index c = 0; c < s.value_dim; ++c) {
      const T x = kernel.out[row * static_cast<std::size_t>(s.value_dim) + static_cast<std::size_t>(c)];
      if (x != T(0)) {
        why << "empty row " << row << " has output " << x;
        return why.str();
      }
    }
  }
  return {};
}

// Batch element b of a [B, ...] view.
template <class V>
V batch_slice(V view, Index b) {
  return detail::batch_element(view, b);
}

// The kernel's output for a selection (TokenTopK or BlockTopK) against the dense oracle, batch element b
// under mask_of(b), with the FlashAttention rule against a naive same-precision run. Empty string: pass.
// `path`: a TokenTopK's path (see SelectionPath).
template <class T, class Selection, class MaskOf>
std::string check_selection_against_reference(const Problem<T>& p, const Selection& selection, MaskOf&& mask_of,
                                              SelectionPath path = SelectionPath::kAuto) {
  using Oracle = OracleType<T>;
  const Shape& s = p.shape;
  std::vector<T> out(static_cast<std::size_t>(p.out_size())), lse(static_cast<std::size_t>(p.lse_size())),
      naive(out.size()), naive_lse(lse.size());
  std::vector<Oracle> ref(out.size()), ref_lse(lse.size());
  const AttentionOptions<T> options{.lse = lse_bhs(lse.data(), s.batch, s.q_heads, s.seq_q)};
  if constexpr (std::is_same_v<Selection, TokenTopK>)
    attention<T>(p.qv(), p.kv(), p.vv(), p.out_view(out), selection, options, path);
  else
    attention<T>(p.qv(), p.kv(), p.vv(), p.out_view(out), selection, options);
  for (Index b = 0; b < s.batch; ++b) {
    const auto& mask = mask_of(b);
    reference::dense_attention<Oracle>(batch_slice(p.qv(), b), batch_slice(p.kv(), b), batch_slice(p.vv(), b),
                                           batch_slice(p.out_view(ref), b), mask,
                                           {.lse = batch_slice(lse_bhs(ref_lse.data(), s.batch, s.q_heads, s.seq_q), b)});
    reference::dense_attention<T>(batch_slice(p.qv(), b), batch_slice(p.kv(), b), batch_slice(p.vv(), b),
                                      batch_slice(p.out_view(naive), b), mask,
                                      {.lse = batch_slice(lse_bhs(naive_lse.data(), s.batch, s.q_heads, s.seq_q), b)});
  }
  const double err = max_error(out, ref), naive_err = max_error(naive, ref);
  const double lse_err = max_error(lse, ref_lse), naive_lse_err = max_error(naive_lse, ref_lse);
  const double conditioning = score_conditioning(p);
  const double floor = representation_noise<T>(ref) * conditioning, lse_floor = representation_noise<T>(ref_lse) * conditioning;
  std::ostringstream why;
  if (!(err <= 2 * naive_err + floor))
    why << s.str() << ": output error " << err << " > 2 x " << naive_err << " + " << floor;
  else if (!(lse_err <= 2 * naive_lse_err + lse_floor))
    why << s.str() << ": LSE error " << lse_err << " > 2 x " << naive_lse_err << " + " << lse_floor;
  return why.str();
}

// Bit-for-bit equality of two result buffers (NaN payloads and signed zeros included).
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

}  // namespace sparse_attention::testing
