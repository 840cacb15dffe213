// SPDX-License-Identifier: Apache-2.0
// How the engines find the rows of a K or V tile: at a fixed stride (a contiguous block of keys) or
// through a table of row pointers (keys gathered by a selection, read in place).
#pragma once

#include "sparse_attention/config.hpp"
#include "sparse_attention/core/types.hpp"

namespace sparse_attention::detail {

// A's rows at a fixed stride.
template <class T>
struct StridedRows {
  const T* base;
  Index stride;
  SPARSE_ATTENTION_ALWAYS_INLINE const T* row(Index i) const { return base + i * stride; }
  StridedRows from(Index i) const { return {base + i * stride, stride}; }
};

// A's rows anywhere, through a table of pointers (gathered keys).
template <class T>
struct GatheredRows {
  const T* const* rows;
  SPARSE_ATTENTION_ALWAYS_INLINE const T* row(Index i) const { return rows[i]; }
  GatheredRows from(Index i) const { return {rows + i}; }
};

}  // namespace sparse_attention::detail
