// SPDX-License-Identifier: Apache-2.0
// Non-owning strided views over the caller's Q, K, V, O and LSE buffers. The logical order is always
// [batch, heads, seq, dim] (LSE: [batch, heads, seq]); strides, in elements, say where each index
// lives in memory, so [B, H, S, D] and the [B, S, H, D] layout of most model code both work without
// copies. Eigen matrices convert both ways.
#pragma once

#include <Eigen/Core>
#include <array>
#include <cstddef>
#include <limits>
#include <sstream>
#include <string>
#include <type_traits>

#include "sparse_attention/core/error.hpp"
#include "sparse_attention/core/types.hpp"

namespace sparse_attention {

template <class T, std::size_t Rank>
class StridedView {
  static_assert(Rank >= 1, "sparse_attention: a StridedView needs at least one dimension");

 public:
  using element_type = T;
  using value_type = std::remove_cv_t<T>;
  using extents_type = std::array<Index, Rank>;
  static constexpr std::size_t kRank = Rank;

  // The empty view: rank-many zero extents and a null pointer (e.g. "no LSE output").
  constexpr StridedView() = default;

  // Extents must be >= 0 and strides >= 0 (a zero stride broadcasts, e.g. one K shared by every batch);
  // every element address must be representable.
  StridedView(T* data, const extents_type& extents, const extents_type& strides)
      : data_(data), extents_(extents), strides_(strides) {
    Index max_offset = 0;
    for (std::size_t d = 0; d < Rank; ++d) {
      if (extents[d] < 0) detail::throw_invalid_argument("StridedView", dim_name("extent", d), extents[d], ">= 0");
      if (strides[d] < 0) detail::throw_invalid_argument("StridedView", dim_name("stride", d), strides[d], ">= 0");
      if (extents[d] > 0) {
        Index term = 0;
        if (__builtin_mul_overflow(extents[d] - 1, strides[d], &term) ||
            __builtin_add_overflow(max_offset, term, &max_offset))
          detail::throw_invalid_argument("StridedView", dim_name("stride", d), strides[d],
                                         "strides whose largest element offset fits in 64 bits");
      }
    }
  }

  // A view of mutable data converts to a view of const data.
  template <class U>
    requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
  constexpr StridedView(const StridedView<U, Rank>& other)  // NOLINT(google-explicit-constructor)
      : data_(other.data()), extents_(other.extents()), strides_(other.strides()) {}

  constexpr T* data() const { return data_; }
  constexpr const extents_type& extents() const { return extents_; }
  constexpr const extents_type& strides() const { return strides_; }
  constexpr Index extent(std::size_t d) const { return extents_[d]; }
  constexpr Index stride(std::size_t d) const { return strides_[d]; }

  constexpr Index size() const {
    Index n = 1;
    for (Index e : extents_) n *= e;
    return n;
  }
  constexpr bool empty() const { return size() == 0; }

  // Element access (unchecked, like std::span).
  template <class... I>
    requires(sizeof...(I) == Rank)
  constexpr T& operator()(I... index) const {
    const std::array<Index, Rank> idx{static_cast<Index>(index)...};
    Index offset = 0;
    for (std::size_t d = 0; d < Rank; ++d) offset += idx[d] * strides_[d];
    return data_[offset];
  }

  // Rows [seq, dim] of one (batch, head) as an Eigen matrix over the same memory (rank 4 only).
  auto matrix(Index batch, Index head) const
    requires(Rank == 4)
  {
    using Matrix = Eigen::Matrix<value_type, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using MapType = std::conditional_t<std::is_const_v<T>, const Matrix, Matrix>;
    using Stride = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;
    // An empty view may hold a null pointer, which must not be offset.
    T* const base = data_ == nullptr ? nullptr : data_ + batch * strides_[0] + head * strides_[1];
    return Eigen::Map<MapType, Eigen::Unaligned, Stride>(base, extents_[2], extents_[3], Stride(strides_[2], strides_[3]));
  }

 private:
  static std::string dim_name(const char* what, std::size_t d) {
    std::ostringstream s;
    s << what << "[" << d << "]";
    return s.str();
  }

  T* data_ = nullptr;
  extents_type extents_{};
  extents_type strides_{};
};

// Q, K, V and O: logical [batch, heads, seq, dim].
template <class T>
using TensorView = StridedView<T, 4>;
// Log-sum-exp output: logical [batch, heads, seq].
template <class T>
using LseView = StridedView<T, 3>;

// A contiguous [batch, heads, seq, dim] buffer (PyTorch's SDPA / FlashAttention-style BHSD).
template <class T>
TensorView<T> bhsd(T* data, Index batch, Index heads, Index seq, Index dim) {
  return TensorView<T>(data, {batch, heads, seq, dim},
                       {heads * seq * dim, seq * dim, dim, Index{1}});
}

// A contiguous [batch, seq, heads, dim] buffer (the layout projections produce), viewed as
// [batch, heads, seq, dim] without a copy.
template <class T>
TensorView<T> bshd(T* data, Index batch, Index seq, Index heads, Index dim) {
  return TensorView<T>(data, {batch, heads, seq, dim},
                       {seq * heads * dim, dim, heads * dim, Index{1}});
}

// A contiguous [batch, heads, seq] log-sum-exp buffer.
template <class T>
LseView<T> lse_bhs(T* data, Index batch, Index heads, Index seq) {
  return LseView<T>(data, {batch, heads, seq}, {heads * seq, seq, Index{1}});
}

// A contiguous [batch, seq, heads] log-sum-exp buffer, viewed as [batch, heads, seq].
template <class T>
LseView<T> lse_bsh(T* data, Index batch, Index seq, Index heads) {
  return LseView<T>(data, {batch, heads, seq}, {seq * heads, Index{1}, heads});
}

// One head's [seq, dim] Eigen matrix (row- or column-major Matrix, Map or Ref) as a [1, 1, seq, dim]
// view over the same memory; a const matrix gives a view of const elements.
template <class EigenMatrix>
  requires requires(EigenMatrix& m) {
    m.data();
    m.rowStride();
    m.colStride();
  }
auto head_view(EigenMatrix& m) {
  using T = std::remove_pointer_t<decltype(m.data())>;
  const Index rows = m.rows(), cols = m.cols();
  return TensorView<T>(m.data(), {1, 1, rows, cols},
                       {rows * cols, rows * cols, Index{m.rowStride()}, Index{m.colStride()}});
}

}  // namespace sparse_attention
