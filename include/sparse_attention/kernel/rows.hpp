// SPDX-License-Identifier: Apache-2.0
// How the engines find the rows of a K or V tile: at a fixed stride (a contiguous block of keys) or
// through a table of row pointers (keys gathered by a selection, read in place).
#pragma once

#include <cstdint>

#include "sparse_attention/config.hpp"
#include "sparse_attention/core/types.hpp"

namespace sparse_attention::detail {

// What a caller knows of a V tile's values. Masked steps of the SIMD engine take a cheaper product when
// every value is finite (SimdEngine::step); a caller that visits one V tile from many query blocks
// checks it once (Engine::check_v_tile) and passes the answer.
enum class VTileValues : std::uint8_t { kUnknown = 0, kFinite, kNotFinite };

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

// Asks for the cache lines of one row of `dim` elements ahead of its use (into L2: the tile being
// computed keeps L1). For tiles the hardware prefetcher cannot guess: gathered rows, a far tile.
template <class T>
SPARSE_ATTENTION_ALWAYS_INLINE void prefetch_row(const T* row, Index dim) {
  const char* bytes = reinterpret_cast<const char*>(row);
#if defined(__GNUC__)
  for (Index offset = 0; offset < dim * static_cast<Index>(sizeof(T)); offset += 64) __builtin_prefetch(bytes + offset, 0, 2);
#else
  (void)bytes, (void)dim;
#endif
}

}  // namespace sparse_attention::detail
