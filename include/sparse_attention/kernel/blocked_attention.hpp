// SPDX-License-Identifier: Apache-2.0
// The generic blocked sparse-attention kernel. One work item is one (batch, query head, query block);
// it makes one pass over its BlockLayout row: partial tiles first (the policy's element predicate
// masks them), then full tiles (no masking code at all), each through the same tile step of the
// engine:
//
//   S   = (scale * Q_t) K_t^T           scores of the tile
//   S   = -inf where the policy forbids  (partial tiles only)
//   m,l = online softmax update          P = exp(S - m)
//   acc = alpha * acc + P V_t
//
// and finally O = acc / l, LSE = m + log(l). Memory is O(tile) per thread, plus a cache of copied
// tiles (rows that are not contiguous; V transposed where many query blocks share each tile) of at
// most 32 MB per thread; time is O(computed pairs).
// The engine is SimdEngine (AVX-512 / AVX2 micro-kernels) where the compiler targets those, else
// EigenEngine.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdint>
#include <memory>
#include <numeric>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "sparse_attention/core/block_layout.hpp"
#include "sparse_attention/core/mask_policy.hpp"
#include "sparse_attention/core/memory.hpp"
#include "sparse_attention/core/tensor_view.hpp"
#include "sparse_attention/core/types.hpp"
#include "sparse_attention/kernel/eigen_engine.hpp"
#include "sparse_attention/kernel/parallel.hpp"
#include "sparse_attention/kernel/problem.hpp"
#include "sparse_attention/kernel/rows.hpp"
#include "sparse_attention/kernel/simd_engine.hpp"
#include "sparse_attention/kernel/workspace.hpp"

namespace sparse_attention {
namespace detail {

// A policy that stores each tile's rows as 64-bit words (SelectionTiles) hands out a tile's words at
// once: tile_key_masks(row0, col0, h) gives row r's allowed keys among [col0, col0 + 64) at [r], or
// null (then key_mask serves, row by row).
template <class P>
concept HasTileKeyMasks = requires(const P& p, Index i) {
  { p.tile_key_masks(i, i, i) } -> std::same_as<const std::uint64_t*>;
};

// The policy seen from one tile: rows and columns relative to the tile's first query and key.
template <class Policy>
struct TileMask {
  const Policy& policy;
  Extent extent;
  Index row0, col0, head;
  const std::uint64_t* words = nullptr;  // the tile's words, where the policy has them (HasTileKeyMasks)

  TileMask(const Policy& p, Extent x, Index r0, Index c0, Index h) : policy(p), extent(x), row0(r0), col0(c0), head(h) {
    if constexpr (HasTileKeyMasks<Policy>) words = p.tile_key_masks(r0, c0, h);
  }

  bool allowed(Index r, Index c) const { return policy.allowed(extent, row0 + r, col0 + c, head); }
  // Row r's allowed keys among tile columns [c0, c0 + 64), as bits.
  std::uint64_t bits(Index r, Index c0) const {
    if constexpr (HasTileKeyMasks<Policy>)
      if (words != nullptr && c0 == 0) return words[r];
    return key_bits(policy, extent, row0 + r, head, col0 + c0);
  }
};

#if SPARSE_ATTENTION_SIMD_WIDTH > 0
template <class T>
using TileEngine = SimdEngine<T>;
#else
template <class T>
using TileEngine = EigenEngine<T>;
#endif

template <class T, class Policy>
class BlockedAttention {
  using Engine = TileEngine<T>;
  struct TileCache {
    T* data;      // slots_ copied tiles, tile_elems_ apart: K rows, then V rows
    Index* tags;  // per slot: the tile it holds (tile_tag), or -1
  };
  // 32 MB: every tile of one head at n = 32768, d = 128 in float.
  static constexpr std::size_t kTileCacheBytes = std::size_t{32} << 20;

 public:
  BlockedAttention(const Problem& p, const Policy& policy, const BlockLayout& layout,
                   TensorView<const T> q, TensorView<const T> k, TensorView<const T> v,
                   TensorView<T> out, LseView<T> lse)
      : p_(p), policy_(policy), layout_(layout), q_(q), k_(k), v_(v), out_(out), lse_(lse),
        dims_{layout.block().q, layout.block().kv, p.head_dim, p.value_dim},
        v_columns_(transposes_v(layout, p.group())),
        pack_k_(needs_packing(k, p.head_dim, layout.q_blocks() > 1)),
        pack_v_(v_columns_ || needs_packing(v, p.value_dim, layout.q_blocks() > 1)),
        in_place_rows_(!pack_k_ && !pack_v_ && k.stride(2) == p.head_dim && v.stride(2) == p.value_dim) {}

  // Whether V tiles are copied transposed (ValueColumns) into the tile cache: when the engine takes
  // them and a tile serves at least kTransposeReuse query blocks on average (query heads sharing a KV
  // head count each). The value product then has the score product's form: a register block
  // broadcasts along 6 contiguous rows of V^T, where it read 6 values from each of the tile's 64 V
  // rows and every new 64-byte column of V began with 64 L1 misses (an eighth of the product's
  // samples sat on those loads, and it ran 1.13x as long as the score product). On a Sapphire Rapids
  // class Xeon, n = 8192, 2 threads, the same headers with and without: dense 0.96-0.98x the time at
  // d = 128 and 0.97-0.98x at d = 64, causal 0.94-0.98x and 0.99x, strided 0.95-0.96x at d = 128 and
  // 0.91x at n = 32768. The copy is what the threshold weighs: a sliding window, BigBird or Longformer
  // (9-11 query blocks per tile) took 1.04-1.05x the time transposed, dense at n = 1024 (16 per
  // tile) 0.98-1.02x, causal at n = 2048 (16.5) 0.98x.
  static constexpr Index kTransposeReuse = 16;
  static bool transposes_v(const BlockLayout& layout, Index group) {
    if (!Engine::kTakesValueColumns) return false;
    return layout.nnz_blocks() * group >= kTransposeReuse * layout.layout_heads() * layout.kv_blocks();
  }

  void run(int num_threads) {
    const std::vector<Index> items = work_order();
    const std::vector<Index> chunks = cut_into_chunks(items, num_threads);
    const int threads = thread_count(num_threads, static_cast<Index>(chunks.size()) - 1);
    const auto engine_size = static_cast<Index>(
        AlignedBuffer<T>::round_up(static_cast<std::size_t>(Engine::scratch_size(dims_)) * sizeof(T)) / sizeof(T));
    AlignedBuffer<T> scratch(engine_size * threads);
    // Copied tiles (see needs_packing) stay in a per-thread cache, tile kb in slot kb % slots_: the query
    // blocks of a head that run on one thread (work_order keeps them together) copy each tile once
    // instead of at every step. At most kTileCacheBytes per thread, no more slots over all threads
    // than there are tiles, and no more than the longest row needs (see row_slots).
    v_in_slot_ = pack_k_ ? dims_.block_kv * p_.head_dim : 0;
    tile_elems_ = v_in_slot_ + (pack_v_ ? dims_.block_kv * p_.value_dim : 0);
    if (tile_elems_ > 0) {
      const Index tiles = p_.batch * p_.kv_heads * layout_.kv_blocks();
      const auto budget = static_cast<Index>(kTileCacheBytes / (static_cast<std::size_t>(tile_elems_) * sizeof(T)));
      slots_ = std::max<Index>(1, std::min({layout_.kv_blocks(), budget, tiles / threads, row_slots()}));
    }
    const Index cache_size = slots_ * tile_elems_;
    const Index tags_size = ceil_div(slots_, 8) * 8;  // a thread's tags on cache lines of their own
    const std::shared_ptr<T[]> cache = cache_size > 0 ? allocate_large<T>(cache_size * threads) : nullptr;
    std::vector<Index> tags(static_cast<std::size_t>(tags_size * threads), -1);
    if constexpr (Engine::kChecksVTile)
      v_tiles_ = std::vector<std::atomic<std::uint8_t>>(static_cast<std::size_t>(p_.batch * p_.kv_heads * layout_.kv_blocks()));
    parallel_for_dynamic(static_cast<Index>(chunks.size()) - 1, threads, [&](Index chunk, int thread) {
      const TileCache tile_cache{cache_size > 0 ? cache.get() + cache_size * thread : nullptr, tags.data() + tags_size * thread};
      const Index end = chunks[static_cast<std::size_t>(chunk) + 1];
      for (Index n = chunks[static_cast<std::size_t>(chunk)]; n < end; ++n)
        run_item(items[static_cast<std::size_t>(n)], n + 1 < end ? items[static_cast<std::size_t>(n) + 1] : -1,
                 scratch.data() + engine_size * thread, tile_cache);
    });
  }

 private:
  // Slots enough for the longest row's tiles and as many again (a power of two, at least 16): a row
  // that spans few tiles (a sliding window's 9) then reuses a few hundred KB of slots that stay in L2,
  // where slots for every tile of the head (kv_blocks) made each copy write lines last touched
  // kv_blocks tiles ago, read back from L3 or DRAM first. [B, S, H, D], local window of 512, n = 8192,
  // Sapphire Rapids class Xeon: 0.87-0.88x the time at d = 128 with 16 or 32 slots, 0.86x at d = 64.
  // Fewer slots than a row's tiles would not do: BigBird's random tiles then evict one another
  // (1.02x with 16 slots); its global rows, n long, keep the count at kv_blocks.
  Index row_slots() const {
    std::size_t longest = 0;
    for (Index h = 0; h < layout_.layout_heads(); ++h)
      for (Index qb = 0; qb < layout_.q_blocks(); ++qb) {
        const BlockLayout::Row row = layout_.row(h, qb);
        longest = std::max(longest, row.partial.size() + row.full.size());
      }
    return std::max<Index>(16, static_cast<Index>(std::bit_ceil(2 * longest)));
  }

  Index item_cost(Index item) const {
    const Index q_blocks = layout_.q_blocks();
    return layout_.row_pairs((item / q_blocks) % p_.q_heads, item % q_blocks);
  }

  // Work items head by head (consecutive items share K and V in cache), and within a head most
  // expensive first, so long rows (a global token's row is n long) start early and short ones fill
  // the gaps at the end.
  std::vector<Index> work_order() const {
    const Index q_blocks = layout_.q_blocks();
    std::vector<Index> items(static_cast<std::size_t>(p_.batch * p_.q_heads * q_blocks));
    std::iota(items.begin(), items.end(), Index{0});
    std::vector<Index> cost(static_cast<std::size_t>(p_.q_heads * q_blocks));
    for (Index h = 0; h < p_.q_heads; ++h)
      for (Index qb = 0; qb < q_blocks; ++qb) cost[static_cast<std::size_t>(h * q_blocks + qb)] = layout_.row_pairs(h, qb);
    for (auto head = items.begin(); head != items.end(); head += q_blocks) {
      std::stable_sort(head, head + q_blocks, [&](Index a, Index b) {
        return cost[static_cast<std::size_t>(a % (p_.q_heads * q_blocks))] >
               cost[static_cast<std::size_t>(b % (p_.q_heads * q_blocks))];
      });
    }
    return items;
  }

  // Boundaries of consecutive runs of items of about equal cost, ~32 per thread: threads take whole
  // runs, so neighbouring query blocks (which share most of their K and V tiles) stay on one core,
  // while the dynamic schedule still balances rows of very different cost.
  std::vector<Index> cut_into_chunks(const std::vector<Index>& items, int num_threads) const {
    Index total = 0;
    for (Index item : items) total += item_cost(item) + 1;
    const Index target = std::max<Index>(1, total / (32 * thread_count(num_threads, static_cast<Index>(items.size()))));
    std::vector<Index> bounds{0};
    Index in_chunk = 0;
    for (std::size_t n = 0; n < items.size(); ++n) {
      in_chunk += item_cost(items[n]) + 1;
      if (in_chunk >= target) {
        bounds.push_back(static_cast<Index>(n) + 1);
        in_chunk = 0;
      }
    }
    if (bounds.back() != static_cast<Index>(items.size())) bounds.push_back(static_cast<Index>(items.size()));
    return bounds;
  }

  // The (batch, query head, query block) of a work item.
  struct Item {
    Index b, h, qb;
  };
  Item item_of(Index item) const {
    const Index q_blocks = layout_.q_blocks();
    return {item / (q_blocks * p_.q_heads), (item / q_blocks) % p_.q_heads, item % q_blocks};
  }

  // Runs work item `item`; `next` is the item this thread runs after it (-1: none known).
  void run_item(Index item, Index next, T* engine_scratch, const TileCache& cache) const {
    const Item at = item_of(item);
    const Index b = at.b, h = at.h, qb = at.qb;
    const Index kv_h = h / p_.group();
    const Range rows = layout_.grid().q_range(qb);

    Engine engine(dims_, engine_scratch);
    TilePrefetch<T> prefetch;
    if constexpr (Engine::kSpreadsPrefetch) engine.set_prefetch(&prefetch);
    engine.begin(&q_(b, h, rows.begin, 0), q_.stride(2), q_.stride(3), rows.size(), p_.scale);
    const BlockLayout::Row row = layout_.row(h, qb);
    const std::size_t partial = row.partial.size(), tiles = partial + row.full.size();
    const auto tile = [&](std::size_t n) { return n < partial ? row.partial[n] : row.full[n - partial]; };
    const std::size_t ahead_from = tiles > kAheadSteps ? tiles - kAheadSteps : 0;
    const BlockLayout::Row above = qb > 0 ? layout_.row(h, qb - 1) : BlockLayout::Row{};
    for (std::size_t n = 0; n < tiles; ++n) {
      if (n == ahead_from) queue_ahead(prefetch, b, h, row, rows, next);
      // The next tile is fetched while this one is computed, its lines asked for a few at a time
      // through the step (see TilePrefetch), when it is far (a random or global block, the jump from
      // the partial tiles to the full ones) or the query block above did not visit it: either way
      // likely in L3 or DRAM. Other tiles are left to the hardware prefetcher and L2: asking for a
      // near tile's 512 lines (d = 64) at once kept 11% of strided's samples waiting on them, and
      // strided at n = 8192 takes 0.94-0.97x the time without (1.02-1.04x with the requests spread).
      // The tiles the block above did not visit are BigBird's random blocks that lie near one
      // another and the window's new last block: BigBird at n = 8192 takes 0.93-0.97x the time
      // with them fetched (d = 64), 0.96-0.98x (d = 128), on a Zen 5; the other patterns are
      // unchanged.
      if (n + 1 < tiles) {
        const Index jump = tile(n + 1) > tile(n) ? tile(n + 1) - tile(n) : tile(n) - tile(n + 1);
        if (jump > kNearTiles || (in_place_rows_ && !visits(above, tile(n + 1)))) {
          queue_tile(prefetch, b, kv_h, tile(n + 1), cache);
          if (!Engine::kSpreadsPrefetch) prefetch.rest();
        }
      }
      if (n < partial) {
        step</*kMasked=*/true>(engine, b, h, kv_h, rows, tile(n), cache);
      } else {
        step</*kMasked=*/false>(engine, b, h, kv_h, rows, tile(n), cache);
      }
      prefetch.rest();  // what the step's products did not ask for
    }

    T* lse = lse_.data() != nullptr ? &lse_(b, h, rows.begin) : nullptr;
    engine.finish(&out_(b, h, rows.begin, 0), out_.stride(2), out_.stride(3), lse, lse_.stride(2));
  }

  template <bool kMasked>
  void step(Engine& engine, Index b, Index h, Index kv_h, Range rows, Index kb, const TileCache& cache) const {
    const Range cols = layout_.grid().kv_range(kb);
    Index k_stride = 0, v_stride = 0;
    T* slot = nullptr;  // the tile's slot in this thread's cache: copied into unless it holds the tile
    bool copy = false;
    if (slots_ > 0) {
      slot = cache_slot(cache, kb);
      const Index tag = tile_tag(b, kv_h, kb);
      copy = std::exchange(cache.tags[kb % slots_], tag) != tag;
    }
    const T* k = tile_rows(k_, pack_k_, copy, b, kv_h, cols, p_.head_dim, slot, k_stride);
    const TileMask<Policy> mask{policy_, p_.extent(), rows.begin, cols.begin, h};
    if constexpr (Engine::kTakesValueColumns) {
      if (v_columns_) {
        const T* vt = copy ? value_columns(b, kv_h, cols, slot + v_in_slot_) : slot + v_in_slot_;
        VTileValues v_values = VTileValues::kUnknown;
        const ValueColumns<T> v{vt, dims_.block_kv};
        if constexpr (kMasked && Engine::kChecksVTile) v_values = v_tile_values(b, kv_h, kb, v, cols.size());
        return engine.template step<kMasked>(StridedRows<T>{k, k_stride}, v, cols.size(), mask, v_values);
      }
    }
    const T* v = tile_rows(v_, pack_v_, copy, b, kv_h, cols, p_.value_dim, slot + v_in_slot_, v_stride);
    VTileValues v_values = VTileValues::kUnknown;
    if constexpr (kMasked && Engine::kChecksVTile) v_values = v_tile_values(b, kv_h, kb, StridedRows<T>{v, v_stride}, cols.size());
    engine.template step<kMasked>(k, k_stride, v, v_stride, cols.size(), mask, v_values);
  }

  // Whether V tile kb of (b, kv_h) is finite: checked by the first masked step that visits it in this
  // call, then known to every other query block (a global column's tile is visited by all of them).
  template <class VRows>
  VTileValues v_tile_values(Index b, Index kv_h, Index kb, VRows v, Index rows) const {
    std::atomic<std::uint8_t>& known = v_tiles_[static_cast<std::size_t>((b * p_.kv_heads + kv_h) * layout_.kv_blocks() + kb)];
    auto values = static_cast<VTileValues>(known.load(std::memory_order_relaxed));
    if (values == VTileValues::kUnknown) {
      values = Engine::check_v_tile(v, rows, p_.value_dim);
      known.store(static_cast<std::uint8_t>(values), std::memory_order_relaxed);
    }
    return values;
  }

  static constexpr Index kNearTiles = 8;  // tiles this close to the current one count as near (see run_item)
  static bool visits(const BlockLayout::Row& row, Index kb) {
    const auto tile = static_cast<std::int32_t>(kb);
    return std::binary_search(row.partial.begin(), row.partial.end(), tile) ||
           std::binary_search(row.full.begin(), row.full.end(), tile);
  }

  // The rows of tile kb that its step will read: a cached copy's, else the caller's (which a copy reads).
  void queue_tile(TilePrefetch<T>& prefetch, Index b, Index kv_h, Index kb, const TileCache& cache) const {
    const Range cols = layout_.grid().kv_range(kb);
    if (slots_ > 0 && cache.tags[kb % slots_] == tile_tag(b, kv_h, kb)) {
      const T* slot = cache_slot(cache, kb);
      const T* k = pack_k_ ? slot : &k_(b, kv_h, cols.begin, 0);
      const T* v = pack_v_ ? slot + v_in_slot_ : &v_(b, kv_h, cols.begin, 0);
      const Index k_step = pack_k_ ? p_.head_dim : k_.stride(2);
      if (v_columns_)
        return prefetch.set(k, k_step, p_.head_dim, cols.size(), v, dims_.block_kv, cols.size(), p_.value_dim);
      prefetch.set(k, k_step, p_.head_dim, v, pack_v_ ? p_.value_dim : v_.stride(2), p_.value_dim, cols.size());
      return;
    }
    if (k_.stride(3) != 1 || v_.stride(3) != 1) return;
    prefetch.set(&k_(b, kv_h, cols.begin, 0), k_.stride(2), p_.head_dim, &v_(b, kv_h, cols.begin, 0), v_.stride(2),
                 p_.value_dim, cols.size());
  }

  // Steps of an item through which the lines queue_ahead asks for trickle in: its last kAheadSteps
  // (a sliding window's 9 tiles: nearly all). Asked for from the first step of a long row, they
  // made causal at n = 8192 1.5% slower (O's lines, fetched long before finish, are likely evicted
  // again by the tiles streamed in between).
  static constexpr std::size_t kAheadSteps = 8;

  // Lines that would otherwise miss all at once, in begin and finish and the next item's steps, queued
  // behind the tiles' (see TilePrefetch): this block's O rows (written by finish; asked for write, so
  // finish does not wait for them to be read), the next item's Q rows (read by begin) and up to
  // kAheadTiles of its tiles that this item does not visit, in the order it visits them: the tiles it
  // shares with this one are in L2, the others likely in L3 or DRAM (for a sliding window the one tile
  // no earlier block read; for BigBird the next window block and the random ones). A short row does
  // little but begin and finish around its steps: local attention at n = 32768 spent 10% of its time
  // in finish and 5% in begin before, and takes 0.92-0.96x the time with them. The next item's cold
  // tiles rather than its partial ones (which missed BigBird's, all full): BigBird's window alone
  // (3 tiles a row, n = 8192) takes 0.91-0.97x the time, the suite's BigBird 0.97-1.00x, the other
  // patterns 0.99-1.01x.
  // Only rows that form one contiguous block: rows a page apart ([B, S, H, D]) cost a TLB miss each and
  // took 1.02-1.08x the time.
  static constexpr std::size_t kAheadTiles = (TilePrefetch<T>::kAheadParts - 2) / 2;  // after O and Q
  void queue_ahead(TilePrefetch<T>& prefetch, Index b, Index h, const BlockLayout::Row& here, Range rows,
                   Index next) const {
    if (!Engine::kSpreadsPrefetch) return;
    if (out_.stride(3) == 1 && out_.stride(2) == p_.value_dim)
      prefetch.add_ahead(&out_(b, h, rows.begin, 0), out_.stride(2), p_.value_dim, rows.size(), /*for_write=*/true);
    if (next < 0) return;
    const Item n = item_of(next);
    const Range next_rows = layout_.grid().q_range(n.qb);
    if (q_.stride(3) == 1 && q_.stride(2) == p_.head_dim)
      prefetch.add_ahead(&q_(n.b, n.h, next_rows.begin, 0), q_.stride(2), p_.head_dim, next_rows.size(), /*for_write=*/false);
    if (!in_place_rows_) return;
    const Index kv_h = n.h / p_.group();
    const bool same_tiles = n.b == b && kv_h == h / p_.group();  // this item's tiles are the next one's
    const BlockLayout::Row there = layout_.row(n.h, n.qb);
    std::size_t tiles = 0;
    for (const std::span<const std::int32_t> list : {there.partial, there.full})
      for (const std::int32_t kb : list) {
        if (tiles == kAheadTiles) return;
        if (same_tiles && visits(here, kb)) continue;
        const Range cols = layout_.grid().kv_range(kb);
        prefetch.add_ahead(&k_(n.b, kv_h, cols.begin, 0), k_.stride(2), p_.head_dim, cols.size(), false);
        prefetch.add_ahead(&v_(n.b, kv_h, cols.begin, 0), v_.stride(2), p_.value_dim, cols.size(), false);
        ++tiles;
      }
  }

  // Copies V rows `cols` of (b, kv_h) transposed to `vt` (row c: value c of every key, block_kv apart).
  const T* value_columns(Index b, Index kv_h, Range cols, T* vt) const {
    const T* base = &v_(b, kv_h, cols.begin, 0);
    const Index rs = v_.stride(2), cs = v_.stride(3), pitch = dims_.block_kv;
    Index full_rows = 0, full_cols = 0;  // the part moved 16 x 16 through registers
#if SPARSE_ATTENTION_SIMD_WIDTH == 64
    if constexpr (std::is_same_v<T, float>) {
      if (cs == 1) {
        full_rows = cols.size() / 16 * 16;
        full_cols = p_.value_dim / 16 * 16;
        __m512 t[16];
        for (Index r0 = 0; r0 < full_rows; r0 += 16)
          for (Index c0 = 0; c0 < full_cols; c0 += 16) {
            simd::transpose16(base + r0 * rs + c0, rs, t);
            for (int c = 0; c < 16; ++c) _mm512_storeu_ps(vt + (c0 + c) * pitch + r0, t[c]);
          }
      }
    }
#endif
    for (Index c = 0; c < p_.value_dim; ++c)
      for (Index r = c < full_cols ? full_rows : 0; r < cols.size(); ++r) vt[c * pitch + r] = base[r * rs + c * cs];
    return vt;
  }

  Index tile_tag(Index b, Index kv_h, Index kb) const { return (b * p_.kv_heads + kv_h) * layout_.kv_blocks() + kb; }
  T* cache_slot(const TileCache& cache, Index kb) const { return cache.data + kb % slots_ * tile_elems_; }

  // Whether K or V tiles are copied into contiguous scratch before their step (and kept, see run):
  // - when a row is not unit-stride along dim;
  // - when rows sit a multiple of 4 KB apart ([B, S, H, D] with H * D a multiple of 1024 floats, as in
  //   most models): they all map to the same few sets of L1, which then holds 12 (or 8) of a tile's 64
  //   rows, and every register block reloads them from L2;
  // - when rows are not contiguous and the tile serves several query blocks: rows a page or more apart
  //   each cost a TLB entry and stop the hardware prefetcher, which follows a contiguous copy.
  // Causal, n = 8192, d = 128 on a Sapphire Rapids class Xeon, [B, S, H, D]: 16 heads 199 GFLOP/s in
  // place, 227 copied at every step, 267 with the copies kept ([B, H, S, D]: 272); 15 heads 215 in
  // place and copied at every step, 261 kept. Prefetching the rows ahead of the copy, or the next tile
  // during a step, was slower.
  static bool needs_packing(const TensorView<const T>& t, Index dim, bool reused) {
    if (t.stride(3) != 1) return true;
    const auto row_bytes = static_cast<std::size_t>(t.stride(2)) * sizeof(T);
    return t.stride(2) > dim && (row_bytes % 4096 == 0 || reused);
  }

  // Rows `cols` of K or V for (b, kv_h), unit-stride within a row: the caller's memory, or (`packed`)
  // the copy at `pack`, rows `dim` apart, made now when `copy` (else made by an earlier step).
  static const T* tile_rows(const TensorView<const T>& t, bool packed, bool copy, Index b, Index kv_h, Range cols, Index dim,
                            T* pack, Index& row_stride) {
    const T* base = t.data() + b * t.stride(0) + kv_h * t.stride(1) + cols.begin * t.stride(2);
    if (!packed) {
      row_stride = t.stride(2);
      return base;
    }
    row_stride = dim;
    if (!copy) return pack;
    if (t.stride(3) == 1) {
      for (Index r = 0; r < cols.size(); ++r) std::copy(base + r * t.stride(2), base + r * t.stride(2) + dim, pack + r * dim);
    } else {
      for (Index r = 0; r < cols.size(); ++r)
        for (Index c = 0; c < dim; ++c) pack[r * dim + c] = base[r * t.stride(2) + c * t.stride(3)];
    }
    return pack;
  }

  const Problem& p_;
  const Policy& policy_;
  const BlockLayout& layout_;
  TensorView<const T> q_, k_, v_;
  TensorView<T> out_;
  LseView<T> lse_;
  typename Engine::Dims dims_;
  bool v_columns_, pack_k_, pack_v_;
  bool in_place_rows_;  // K and V tiles read in place, each one contiguous block
  Index v_in_slot_ = 0, tile_elems_ = 0, slots_ = 0;  // where V starts in a copied tile (after K), its size; slots per thread
  // Per (batch, KV head, key block): a VTileValues, filled as masked steps find out (engines that check).
  mutable std::vector<std::atomic<std::uint8_t>> v_tiles_;
};

}  // namespace detail

// Sparse attention of q over (k, v) under `policy`, visiting only the tiles of `layout`, which must
// have been built from the same policy for these lengths (BlockLayout::build(policy, {seq_q, seq_k},
// block, q_heads)). Writes out [batch, q_heads, seq_q, value_dim] and, if given, options.lse.
// Shapes: q [B, Hq, Sq, D], k [B, Hkv, Sk, D], v [B, Hkv, Sk, Dv], Hq a multiple of Hkv.
// Throws std::invalid_argument on any inconsistent argument, before writing anything.
template <class T, class Policy>
void attention(TensorView<const std::type_identity_t<T>> q, TensorView<const std::type_identity_t<T>> k,
               TensorView<const std::type_identity_t<T>> v, TensorView<T> out, const Policy& policy,
               const BlockLayout& layout, const AttentionOptions<T>& options = {}) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "sparse_attention::attention supports float and double");
  detail::assert_mask_policy<Policy>();
  const detail::Problem p =
      detail::check_problem("attention", q, k, v, out, options.lse, options.scale);
  detail::require(options.num_threads >= 0, "attention", "num_threads", options.num_threads,
                  ">= 0 (0 = OpenMP's default)");
  detail::check_layout("attention", layout, p, detail::head_dependent(policy));
  detail::check_policy(policy, p.extent(), p.q_heads);
  if (p.batch == 0 || p.seq_q == 0) return;
  detail::BlockedAttention<T, Policy>(p, policy, layout, q, k, v, out, options.lse)
      .run(options.num_threads);
}

// As above, building the layout with `block` tiles for this call. To amortise the (cheap, O(nnz))
// build across calls, build the BlockLayout once and pass it.
template <class T, class Policy>
void attention(TensorView<const std::type_identity_t<T>> q, TensorView<const std::type_identity_t<T>> k,
               TensorView<const std::type_identity_t<T>> v, TensorView<T> out, const Policy& policy,
               const AttentionOptions<T>& options = {}, BlockSize block = {}) {
  detail::assert_mask_policy<Policy>();
  const detail::Problem p =
      detail::check_problem("attention", q, k, v, out, options.lse, options.scale);
  const BlockLayout layout = BlockLayout::build(policy, p.extent(), block, p.q_heads);
  attention<T>(q, k, v, out, policy, layout, options);
}

}  // namespace sparse_attention
