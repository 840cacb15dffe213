// SPDX-License-Identifier: Apache-2.0
// 64-byte aligned scratch memory, allocated once per call and thread, never inside the tile loop.
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <type_traits>

#if defined(__linux__)
#include <sys/mman.h>
#endif

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

// A large array of trivially copyable T (uninitialised), shared. From 2 MiB up it is aligned to 2 MiB
// and, on Linux, advised for transparent huge pages: a DSA selection at n = 32768, k = 2048 is 256 MB,
// whose first touch in 4 KiB pages is 65536 page faults (a quarter of the indexer's time).
template <class T>
std::shared_ptr<T[]> allocate_large(Index count) {
  static_assert(std::is_trivially_copyable_v<T>, "allocate_large holds plain numbers only");
  constexpr std::size_t kHuge = std::size_t{2} << 20;
  const std::size_t bytes = static_cast<std::size_t>(count) * sizeof(T);
  const std::size_t alignment = bytes >= kHuge ? kHuge : kScratchAlignment;
  const std::size_t size = (bytes + alignment - 1) / alignment * alignment;
  void* p = ::operator new(size == 0 ? alignment : size, std::align_val_t{alignment});
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (bytes >= kHuge) madvise(p, size, MADV_HUGEPAGE);  // advice only: failure leaves 4 KiB pages
#endif
  return std::shared_ptr<T[]>(static_cast<T*>(p), [alignment](T* q) { ::operator delete(q, std::align_val_t{alignment}); });
}

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
