// SPDX-License-Identifier: Apache-2.0
// How the engines find the rows of a K or V tile: at a fixed stride (a contiguous block of keys) or
// through a table of row pointers (keys gathered by a selection, read in place).
#pragma once

#include <cstdint>
#include <limits>

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

// The cache lines of a tile's K and V rows, asked for a few rows at a time while another tile is
// computed (SimdEngine's products take whole rows of at least kLinesPerBlock lines after each register
// block): a far tile's 512 lines (d = 64) asked for at once outrun the misses a core can keep in
// flight and stall it much as its demand misses would. Bigbird on a Zen 4 took the same time with the
// burst as with no prefetch at all, and 0.96-0.97x with the requests spread (n = 16384 and 131072).
template <class T>
class TilePrefetch {
 public:
  static constexpr Index kLinesPerBlock = 16;

  // Rows [0, rows) of K (k + r * k_step, k_dim elements) and then of V; drops what is left of the
  // previous tile.
  void set(const T* k, Index k_step, Index k_dim, const T* v, Index v_step, Index v_dim, Index rows) {
    parts_[0] = {reinterpret_cast<const char*>(k), k_step * static_cast<Index>(sizeof(T)), lines(k_dim)};
    parts_[1] = {reinterpret_cast<const char*>(v), v_step * static_cast<Index>(sizeof(T)), lines(v_dim)};
    rows_ = rows, row_ = 0;
    part_ = rows > 0 ? next_part(0) : 2;
  }

  // Asks for the lines of the next rows, at least `count` lines (all that are left when fewer).
  void some(Index count) {
    while (count > 0 && part_ < 2) {
      const Part& p = parts_[part_];
      const char* row = p.base + row_ * p.step;
#if defined(__GNUC__)
      for (Index line = 0; line < p.lines; ++line) __builtin_prefetch(row + line * 64, 0, 2);
#endif
      count -= p.lines;
      if (++row_ < rows_) continue;
      row_ = 0;
      part_ = next_part(part_ + 1);
    }
  }
  void rest() { some(std::numeric_limits<Index>::max()); }

 private:
  struct Part {
    const char* base = nullptr;
    Index step = 0, lines = 0;  // bytes between rows, cache lines per row
  };
  static Index lines(Index dim) { return (dim * static_cast<Index>(sizeof(T)) + 63) / 64; }
  Index next_part(Index part) const {  // the first part from `part` on with lines to ask for
    while (part < 2 && parts_[part].lines == 0) ++part;
    return part;
  }

  Part parts_[2];
  Index rows_ = 0, part_ = 2, row_ = 0;  // part_ 2: nothing left
};

}  // namespace sparse_attention::detail
