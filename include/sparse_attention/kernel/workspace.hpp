// SPDX-License-Identifier: Apache-2.0
// 64-byte aligned scratch memory, allocated once per call and thread, never inside the tile loop.
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>

#include "sparse_attention/core/types.hpp"

namespace sparse_attention::detail {

inline constexpr std::size_t kScratchAlignment = 64;

// A fixed-size array of trivially copyable T, aligned to 64 bytes (a cache line; a zmm register).
template <class T>
class AlignedBuffer {
  static_assert(std::is_trivially_copyable_v<T>, "AlignedBuffer holds plain numbers only");

 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(Index count) : size_(count) {
    if (count > 0) {
      const std::size_t bytes = round_up(static_cast<std::size_t>(count) * sizeof(T));
      data_.reset(static_cast<T*>(::operator new(bytes, std::align_val_t{kScratchAlignment})));
    }
  }
  T* data() const { return data_.get(); }
  Index size() const { return size_; }

  static constexpr std::size_t round_up(std::size_t bytes) {
    return (bytes + kScratchAlignment - 1) / kScratchAlignment * kScratchAlignment;
  }

 private:
  struct Free {
    void operator()(T* p) const { ::operator delete(p, std::align_val_t{kScratchAlignment}); }
  };
  std::unique_ptr<T, Free> data_;
  Index size_ = 0;
};

// Carves consecutive 64-byte aligned arrays out of one AlignedBuffer.
template <class T>
class ScratchCarver {
 public:
  // First pass: count; second pass: hand out pointers into `base`.
  explicit ScratchCarver(T* base = nullptr) : base_(base) {}
  T* take(Index count) {
    T* p = base_ ? base_ + used_ : nullptr;
    used_ += static_cast<Index>(AlignedBuffer<T>::round_up(static_cast<std::size_t>(count) * sizeof(T)) /
                                sizeof(T));
    return p;
  }
  Index used() const { return used_; }

 private:
  T* base_;
  Index used_ = 0;
};

}  // namespace sparse_attention::detail
