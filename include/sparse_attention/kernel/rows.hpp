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

// A V tile stored transposed: row c holds value c of every key of the tile, keys contiguous. The
// value product then reads V as the score product reads K (see SimdEngine::step).
template <class T>
struct ValueColumns {
  const T* base;
  Index stride;
  StridedRows<T> rows() const { return {base, stride}; }
};
template <class Rows>
inline constexpr bool is_value_columns = false;
template <class T>
inline constexpr bool is_value_columns<ValueColumns<T>> = true;

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
//
// Behind the tile come lines the next work item will want (add_ahead; see
// BlockedAttention::queue_ahead): asked for only once the tile's are, and only by some(), so they
// trickle in through the products instead of in one burst at the end of a step.
template <class T>
class TilePrefetch {
 public:
  static constexpr Index kLinesPerBlock = 16;
  static constexpr int kAheadParts = 8;

  // Rows [0, rows) of K (k + r * k_step, k_dim elements) and then of V; drops what is left of the
  // previous tile.
  void set(const T* k, Index k_step, Index k_dim, const T* v, Index v_step, Index v_dim, Index rows) {
    set(k, k_step, k_dim, rows, v, v_step, v_dim, rows);
  }
  // The same with as many V rows as v_rows (a transposed V tile: one row per value).
  void set(const T* k, Index k_step, Index k_dim, Index k_rows, const T* v, Index v_step, Index v_dim, Index v_rows) {
    tile_[0] = part(k, k_step, k_dim, k_rows, false);
    tile_[1] = part(v, v_step, v_dim, v_rows, false);
  }

  // Rows [0, rows) at first + r * step of dim elements, to be read, or written (for_write) without
  // being read; ignored once kAheadParts are queued.
  void add_ahead(const T* first, Index step, Index dim, Index rows, bool for_write) {
    if (ahead_parts_ < kAheadParts) ahead_[ahead_parts_++] = part(first, step, dim, rows, for_write);
  }

  // Asks for the lines of the next rows, at least `count` lines (all that are left when fewer).
  void some(Index count) {
    count = ask(tile_, 2, count);
    ask(ahead_, ahead_parts_, count);
  }
  // Asks for every line left of the tile (not the lines queued ahead).
  void rest() { ask(tile_, 2, std::numeric_limits<Index>::max()); }

 private:
  struct Part {
    const char* base = nullptr;
    Index step = 0, lines = 0;  // bytes between rows, cache lines per row
    Index rows = 0, row = 0;    // rows, and the next one to ask for
    bool write = false;
  };
  static Part part(const T* first, Index step, Index dim, Index rows, bool write) {
    return {reinterpret_cast<const char*>(first), step * static_cast<Index>(sizeof(T)),
            (dim * static_cast<Index>(sizeof(T)) + 63) / 64, rows, 0, write};
  }
  // Asks for whole rows of `parts` in order until `count` lines are asked for; returns what is left of count.
  static Index ask(Part* parts, int n, Index count) {
    for (int i = 0; i < n && count > 0; ++i) {
      Part& p = parts[i];
      for (; p.row < p.rows && count > 0; ++p.row) {
        const char* row = p.base + p.row * p.step;
#if defined(__GNUC__)
        for (Index line = 0; line < p.lines; ++line) {
          if (p.write) {
            __builtin_prefetch(row + line * 64, 1, 2);
          } else {
            __builtin_prefetch(row + line * 64, 0, 2);
          }
        }
#else
        (void)row;
#endif
        count -= p.lines;
      }
    }
    return count;
  }

  Part tile_[2];
  Part ahead_[kAheadParts];
  int ahead_parts_ = 0;
};

}  // namespace sparse_attention::detail
