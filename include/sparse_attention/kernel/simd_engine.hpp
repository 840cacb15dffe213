// SPDX-License-Identifier: Apache-2.0
// The tile engine for CPUs with AVX-512 or AVX2: one query block's state and its tile step, with
// the queries of the block in vector lanes everywhere (but O, for gathered tiles: see Dims::o_by_rows).
//
//   Q^T  (head_dim x lanes)   packed once per work item (negated if the scale is negative; as
//                             quads instead for Dims::scores_by_quads)
//   S^T  (cols x lanes)       = K_t Q^T                      raw scores
//   P^T  (cols x lanes)       = 2^(c S^T - c m)              in place, one FMA per score with
//                                                            c = |scale| log2(e); -inf gives 0
//   O^T  (value_dim x lanes)  = alpha * O^T + V_t^T P^T      alpha rescale fused into the product
//
// lanes = block.q rounded up to the vector width; padded lanes hold zero queries, are never masked
// and never written out. Row statistics (m, l) are lane vectors, so the softmax needs no horizontal
// reduction.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <type_traits>

#include "sparse_attention/core/types.hpp"
#include "sparse_attention/kernel/micro_kernel.hpp"
#include "sparse_attention/kernel/simd.hpp"
#include "sparse_attention/kernel/workspace.hpp"

#if SPARSE_ATTENTION_SIMD_WIDTH > 0

namespace sparse_attention::detail {

template <class T>
class SimdEngine {
  using V = simd::Vec<T>;
  static constexpr int W = V::kLanes;
  // Lane vectors whose softmax statistics are kept in registers at once.
  static constexpr Index kSoftmaxChunk = SPARSE_ATTENTION_SIMD_WIDTH == 64 ? 8 : 2;

 public:
  struct Dims {
    Index block_q, block_kv, head_dim, value_dim;
    // O kept row by row (O[query][value], value_dim a multiple of the lanes) instead of as O^T, for
    // unmasked steps only (gathered tiles): each V row then feeds whole vectors (simd::RowProduct).
    bool o_by_rows = false;
    // Scores through 4-wide broadcasts of K against Q packed as quads (simd::quad_scores; float on
    // AVX-512, head_dim a multiple of 4), for blocks of one or two vectors of lanes (a token's heads).
    bool scores_by_quads = false;
    Index lanes() const { return (block_q + W - 1) / W * W; }
  };

  // Whether the engine takes a TilePrefetch (see set_prefetch).
  static constexpr bool kSpreadsPrefetch = true;
  // Lines `prefetch` holds are asked for a few at a time during the products of each step (the caller
  // asks for the rest after it); null: none.
  void set_prefetch(TilePrefetch<T>* prefetch) { prefetch_ = prefetch; }

  // Whether masked steps read the V tile to choose their value product (see step).
  static constexpr bool kChecksVTile = true;
  template <class VRows>
  static VTileValues check_v_tile(VRows v, Index cols, Index value_dim) {
    bool finite = false;
    if constexpr (is_value_columns<VRows>) {
      finite = simd::all_finite<T>(v.rows(), value_dim, cols);
    } else {
      finite = simd::all_finite<T>(v, cols, value_dim);
    }
    return finite ? VTileValues::kFinite : VTileValues::kNotFinite;
  }

  // Whether step takes V as ValueColumns (a transposed tile).
  static constexpr bool kTakesValueColumns = true;

  // Whether `scores_by_quads` can hold for a problem (T, head_dim, lanes).
  static constexpr bool quads_apply(Index head_dim, Index lanes) {
    return SPARSE_ATTENTION_SIMD_WIDTH == 64 && std::is_same_v<T, float> && head_dim % 4 == 0 && lanes <= 32;
  }

  // Scratch elements one engine needs.
  static Index scratch_size(const Dims& d) {
    ScratchCarver<T> c;
    carve(c, d);
    return c.used();
  }

  SimdEngine(const Dims& d, T* scratch) : dims_(d), ld_(d.lanes()) {
    ScratchCarver<T> c(scratch);
    const Buffers b = carve(c, d);
    qt_ = b.qt, st_ = b.st, ot_ = b.ot, m_ = b.m, l_ = b.l, alpha_ = b.alpha;
    row_bits_ = b.row_bits;
  }

  // Starts a query block of `rows` queries; query r's element c is q[r * row_stride + c * dim_stride].
  void begin(const T* q, Index row_stride, Index dim_stride, Index rows, double scale) {
    rows_ = rows;
    // Scores stay unscaled: the scale enters once per score inside the exponent's FMA, so the only
    // rounding it adds is that of a naive scale * (q . k). A negative scale negates Q, a zero scale
    // zeroes it (both exact), so the exponent's factor is always positive and -inf * factor = -inf.
    const T s = scale < 0 ? T(-1) : (scale > 0 ? T(1) : T(0));
    abs_scale_ = scale == 0 ? T(1) : static_cast<T>(std::fabs(scale));
    exp2_scale_ = static_cast<T>(static_cast<double>(abs_scale_) * std::numbers::log2e);
    std::fill(m_, m_ + ld_, -std::numeric_limits<T>::infinity());
    std::fill(l_, l_ + ld_, T(0));
    started_ = false;  // O^T is written, not accumulated, by the first step
    Index full_rows = 0, full_cols = 0;  // the part packed 16 x 16 in registers
#if SPARSE_ATTENTION_SIMD_WIDTH == 64
    if constexpr (std::is_same_v<T, float>) {
      if (quads()) return simd::pack_quad(q, row_stride, dim_stride, rows, s, ld_, dims_.head_dim, qt_);
      if (dim_stride == 1) {
        full_rows = rows / 16 * 16;
        full_cols = dims_.head_dim / 16 * 16;
        const __m512 sign16 = _mm512_set1_ps(s);
        __m512 t[16];
        for (Index r0 = 0; r0 < full_rows; r0 += 16)
          for (Index c0 = 0; c0 < full_cols; c0 += 16) {
            simd::transpose16(q + r0 * row_stride + c0, row_stride, t);
            for (int c = 0; c < 16; ++c) _mm512_storeu_ps(qt_ + (c0 + c) * ld_ + r0, _mm512_mul_ps(t[c], sign16));
          }
      }
    }
#endif
    for (Index c = 0; c < dims_.head_dim; ++c) {
      T* dst = qt_ + c * ld_;
      for (Index r = c < full_cols ? full_rows : 0; r < rows; ++r) dst[r] = s * q[r * row_stride + c * dim_stride];
      std::fill(dst + rows, dst + ld_, T(0));
    }
  }

  // One tile of `cols` keys. k: cols rows of head_dim, v: cols rows of value_dim, both unit-stride
  // within a row. kMasked: `mask` (see TileMask) removes the forbidden pairs of the tile; v_values:
  // whether the V tile is known to be finite (else a masked step checks it where that matters).
  template <bool kMasked, class Mask>
  void step(const T* k, Index k_row_stride, const T* v, Index v_row_stride, Index cols, const Mask& mask,
            VTileValues v_values = VTileValues::kUnknown) {
    step<kMasked>(StridedRows<T>{k, k_row_stride}, StridedRows<T>{v, v_row_stride}, cols, mask, v_values);
  }

  // The same with K and V rows found through accessors (strided, or a table of gathered rows), or V
  // as ValueColumns: the value product then has the score product's form, V^T's rows broadcast
  // along contiguous keys (see BlockedAttention::step).
  template <bool kMasked, class KRows, class VRows, class Mask>
  void step(KRows k, VRows v, Index cols, const Mask& mask, [[maybe_unused]] VTileValues v_values = VTileValues::kUnknown) {
    const Index vecs = ld_ / W;
    if (quads()) {
#if SPARSE_ATTENTION_SIMD_WIDTH == 64
      if constexpr (std::is_same_v<T, float>) simd::quad_scores(st_, ld_, cols, vecs, k, qt_, dims_.head_dim);
#endif
    } else {
      simd::BlockProduct<T, simd::AStride::kRows, false, KRows>::run(st_, ld_, cols, vecs, k, qt_, ld_, dims_.head_dim,
                                                                    nullptr, prefetch_);
    }
    if constexpr (kMasked) apply_mask(cols, mask);
    softmax(cols, vecs);
    if constexpr (!kMasked && !is_value_columns<VRows>) {  // O by rows serves unmasked (gathered) tiles
      if (dims_.o_by_rows) {
        const StridedRows<T> p{st_, ld_};
        if (started_)
          simd::RowProduct<T, true, StridedRows<T>, VRows>::run(ot_, dims_.value_dim, rows_, dims_.value_dim / W, p, v, cols, alpha_);
        else
          simd::RowProduct<T, false, StridedRows<T>, VRows>::run(ot_, dims_.value_dim, rows_, dims_.value_dim / W, p, v, cols, nullptr);
        started_ = true;
        return;
      }
    }
    // Partial tiles skip the masked (zero) probabilities: 0 * NaN or 0 * Inf in V would otherwise reach
    // queries that do not attend to that key. The skip is not free: AVX2 pays a blend per FMA (the
    // product doubles), AVX-512 a compare per vector of P and masked FMAs (+7% on a Zen 4). A V tile
    // of finite values (0 * v = 0: nothing to skip) therefore takes the plain product. The check reads
    // the whole V tile (1-4% of a step on a Zen 3), so BlockedAttention makes it once per tile and call
    // and passes the answer in v_values.
    if constexpr (kMasked && kChecksVTile) {
      if (v_values == VTileValues::kUnknown) v_values = check_v_tile(v, cols, dims_.value_dim);
      if (v_values == VTileValues::kFinite) return value_product<false>(v, cols, vecs);
    }
    value_product<kMasked>(v, cols, vecs);
  }

  // Writes O = O^T / l (row r, value c at out[r * row_stride + c * dim_stride]) and, if lse is not
  // null, the natural-log LSE of row r at lse[r * lse_stride]. Rows with no allowed key give zeros and
  // -inf; a NaN anywhere in a row's inputs gives NaN.
  void finish(T* out, Index row_stride, Index dim_stride, T* lse, Index lse_stride) const {
    if (dims_.o_by_rows) {
      for (Index r = 0; r < rows_; ++r) {
        const T l = l_[r];
        const T inv = T(1) / l;
        T* dst = out + r * row_stride;
        for (Index c = 0; c < dims_.value_dim; ++c) dst[c * dim_stride] = l == T(0) ? T(0) : ot_[r * dims_.value_dim + c] * inv;
        if (lse != nullptr)
          lse[r * lse_stride] = l == T(0) ? -std::numeric_limits<T>::infinity() : m_[r] * abs_scale_ + std::log(l);
      }
      return;
    }
    Index full_rows = 0, full_cols = 0;  // the part written 16 x 16 through registers
#if SPARSE_ATTENTION_SIMD_WIDTH == 64
    if constexpr (std::is_same_v<T, float>) {
      if (dim_stride == 1) {
        full_rows = rows_ / 16 * 16;
        full_cols = dims_.value_dim / 16 * 16;
        __m512 t[16];
        for (Index r0 = 0; r0 < full_rows; r0 += 16)
          for (Index c0 = 0; c0 < full_cols; c0 += 16) {
            simd::transpose16(ot_ + c0 * ld_ + r0, ld_, t);
            for (int r = 0; r < 16; ++r) {
              const T l = l_[r0 + r];
              const __m512 row = l == T(0) ? _mm512_setzero_ps() : _mm512_mul_ps(t[r], _mm512_set1_ps(T(1) / l));
              _mm512_storeu_ps(out + (r0 + r) * row_stride + c0, row);
            }
          }
      }
    }
#endif
    for (Index r = 0; r < rows_; ++r) {
      const T l = l_[r];
      const T inv = T(1) / l;
      T* dst = out + r * row_stride;
      // l == 0: no allowed key (O^T may not even have been written); the row is exactly 0.
      for (Index c = r < full_rows ? full_cols : 0; c < dims_.value_dim; ++c)
        dst[c * dim_stride] = l == T(0) ? T(0) : ot_[c * ld_ + r] * inv;
      if (lse != nullptr)
        lse[r * lse_stride] = l == T(0) ? -std::numeric_limits<T>::infinity() : m_[r] * abs_scale_ + std::log(l);
    }
  }

 private:
  // O^T (+)= V_t^T P^T; kSkipZero: lanes whose probability is 0 take no product (see step).
  template <bool kSkipZero, class VRows>
  void value_product(VRows v, Index cols, Index vecs) {
    if constexpr (is_value_columns<VRows>) {
      using Product = simd::BlockProduct<T, simd::AStride::kRows, true, StridedRows<T>, kSkipZero>;
      using First = simd::BlockProduct<T, simd::AStride::kRows, false, StridedRows<T>, kSkipZero>;
      if (started_) return Product::run(ot_, ld_, dims_.value_dim, vecs, v.rows(), st_, ld_, cols, alpha_, prefetch_);
      First::run(ot_, ld_, dims_.value_dim, vecs, v.rows(), st_, ld_, cols, nullptr, prefetch_);
    } else {
      using Product = simd::BlockProduct<T, simd::AStride::kSteps, true, VRows, kSkipZero>;
      using First = simd::BlockProduct<T, simd::AStride::kSteps, false, VRows, kSkipZero>;
      if (started_) return Product::run(ot_, ld_, dims_.value_dim, vecs, v, st_, ld_, cols, alpha_, prefetch_);
      First::run(ot_, ld_, dims_.value_dim, vecs, v, st_, ld_, cols, nullptr, prefetch_);
    }
    started_ = true;
  }

  struct Buffers {
    T *qt, *st, *ot, *m, *l, *alpha;
    std::uint64_t* row_bits;
  };
  static Buffers carve(ScratchCarver<T>& c, const Dims& d) {
    const Index ld = d.lanes();
    Buffers b;
    b.qt = c.take(d.head_dim * ld);   // (head_dim, lanes)
    b.st = c.take(d.block_kv * ld);   // (block_kv, lanes)
    b.ot = c.take(d.value_dim * ld);  // (value_dim, lanes)
    b.m = c.take(ld);                 // (lanes) running maximum of the raw scores
    b.l = c.take(ld);                 // (lanes) running sum of 2^(s - m)
    b.alpha = c.take(ld);             // (lanes) rescale of the last step
    // (lanes) each query's allowed keys among 64 of the tile, as bits
    b.row_bits = reinterpret_cast<std::uint64_t*>(c.take(ld * static_cast<Index>(sizeof(std::uint64_t) / sizeof(T) + 1)));
    return b;
  }

  // Sets the scores of forbidden pairs to -inf, 64 keys at a time: each query row's allowed keys come
  // as bits (from the policy's key_mask or key_range, else its predicate), which simd::forbid_clear_bits
  // turns into store masks (AVX-512) or blend masks (AVX2).
  // Padded lanes are never masked.
  template <class Mask>
  void apply_mask(Index cols, const Mask& mask) {
    for (Index c0 = 0; c0 < cols; c0 += 64) {
      for (Index r = 0; r < ld_; ++r) row_bits_[r] = r < rows_ ? mask.bits(r, c0) : ~std::uint64_t{0};
      const Index c_end = std::min(cols, c0 + 64);
      simd::forbid_clear_bits(st_, ld_, c0, c_end, row_bits_);
    }
  }

  // S^T -> P^T in place; updates m, l and alpha, kSoftmaxChunk lane vectors at a time and the rest in
  // halving chunks (a block of 64 queries: one chunk of 4 on AVX-512).
  void softmax(Index cols, Index vecs) {
    Index v0 = 0;
    for (; v0 + kSoftmaxChunk <= vecs; v0 += kSoftmaxChunk) softmax_chunk<kSoftmaxChunk>(cols, v0 * W);
    softmax_rest<kSoftmaxChunk / 2>(cols, v0, vecs);
  }
  template <Index N>
  void softmax_rest(Index cols, Index v0, Index vecs) {
    if constexpr (N >= 1) {
      if (vecs - v0 >= N) {
        softmax_chunk<N>(cols, v0 * W);
        v0 += N;
      }
      softmax_rest<N / 2>(cols, v0, vecs);
    }
  }

  template <Index N>
  void softmax_chunk(Index cols, Index lane0) {
    const V c = V::set1(exp2_scale_);
    V neg_ref[N], sum[N];
    // The maximum over columns in two interleaved chains per vector: one chain waits a max's latency
    // per column (4 cycles), which made this pass, not the FMAs, the cost of a chunk of one vector.
    V mx[N], mx_odd[N];
    for (Index u = 0; u < N; ++u) mx[u] = mx_odd[u] = V::load(m_ + lane0 + u * W);
    const Index even = cols / 2 * 2;
    for (Index col = 0; col < even; col += 2)
      for (Index u = 0; u < N; ++u) {
        mx[u] = simd::max(mx[u], V::load(st_ + col * ld_ + lane0 + u * W));
        mx_odd[u] = simd::max(mx_odd[u], V::load(st_ + (col + 1) * ld_ + lane0 + u * W));
      }
    if (even < cols)
      for (Index u = 0; u < N; ++u) mx[u] = simd::max(mx[u], V::load(st_ + even * ld_ + lane0 + u * W));
    for (Index u = 0; u < N; ++u) {
      mx[u] = simd::max(mx[u], mx_odd[u]);
      // A row with no allowed key so far has maximum -inf; 2^(s - m) would be 2^(-inf - -inf) = NaN,
      // so such a row takes 0 as its reference and every 2^(-inf - 0) is 0.
      neg_ref[u] = V::zero() - simd::zero_if_minus_inf(mx[u]) * c;
      sum[u] = V::zero();
    }
    for (Index col = 0; col < cols; ++col) {
      T* row = st_ + col * ld_ + lane0;
      for (Index u = 0; u < N; ++u) {
        const V p = simd::exp2(simd::fma(V::load(row + u * W), c, neg_ref[u]));
        p.store(row + u * W);
        sum[u] = sum[u] + p;
      }
    }
    for (Index u = 0; u < N; ++u) {
      // Moves the old state to the new maximum; where the old maximum was -inf, l and O are 0. Where
      // the maximum did not grow, alpha is exactly 1: the fused m_old * c - round(m_new * c) would be
      // the rounding error of m * c, not 0, and that bias would compound over every tile of the row.
      const V m_old = V::load(m_ + lane0 + u * W);
      const V alpha = simd::blend(simd::greater_bits(mx[u], m_old), V::set1(T(1)),
                                  simd::exp2(simd::fma(m_old, c, neg_ref[u])));
      alpha.store(alpha_ + lane0 + u * W);
      (alpha * V::load(l_ + lane0 + u * W) + sum[u]).store(l_ + lane0 + u * W);
      mx[u].store(m_ + lane0 + u * W);
    }
  }

  bool quads() const { return dims_.scores_by_quads && quads_apply(dims_.head_dim, ld_); }

  Dims dims_;
  Index ld_;
  Index rows_ = 0;
  T abs_scale_ = 0, exp2_scale_ = 0;  // |scale| and |scale| * log2(e)
  bool started_ = false;
  T *qt_ = nullptr, *st_ = nullptr, *ot_ = nullptr, *m_ = nullptr, *l_ = nullptr, *alpha_ = nullptr;
  std::uint64_t* row_bits_ = nullptr;
  TilePrefetch<T>* prefetch_ = nullptr;
};

}  // namespace sparse_attention::detail

#endif  // SPARSE_ATTENTION_SIMD_WIDTH > 0
