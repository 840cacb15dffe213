// SPDX-License-Identifier: Apache-2.0
// Memory for large arrays: 2 MiB aligned and, on Linux, advised for transparent huge pages
// (MADV_HUGEPAGE; the kernel's default "madvise" mode then backs them with 2 MiB pages), so that their
// first touch costs one page fault per 2 MiB instead of per 4 KiB. The library allocates its DSA
// selections so (256 MB at n = 32768, k = 2048: in 4 KiB pages, 65536 faults took a quarter of the
// indexer's time); callers may allocate their own tensors with it too.
#pragma once

#include <cstddef>
#include <limits>
#include <memory>
#include <new>
#include <type_traits>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "sparse_attention/core/types.hpp"

namespace sparse_attention {

// A standard allocator: std::vector<float, HugePageAllocator<float>> q(n * d). Allocations of 2 MiB
// or more are 2 MiB aligned and advised for huge pages; smaller ones are 64-byte aligned.
template <class T>
struct HugePageAllocator {
  using value_type = T;
  static constexpr std::size_t kHugePage = std::size_t{2} << 20;

  HugePageAllocator() = default;
  template <class U>
  HugePageAllocator(const HugePageAllocator<U>&) noexcept {}

  T* allocate(std::size_t n) {
    constexpr auto kMaxBytes = static_cast<std::size_t>(std::numeric_limits<std::ptrdiff_t>::max()) - kHugePage;
    if (n > kMaxBytes / sizeof(T)) throw std::bad_array_new_length();
    const std::size_t alignment = alignment_for(n * sizeof(T)), size = round_up(n * sizeof(T), alignment);
    void* p = ::operator new(size, std::align_val_t{alignment});
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (alignment == kHugePage) madvise(p, size, MADV_HUGEPAGE);  // advice: may be ignored
#endif
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t n) noexcept {
    ::operator delete(p, std::align_val_t{alignment_for(n * sizeof(T))});
  }

  template <class U>
  bool operator==(const HugePageAllocator<U>&) const noexcept {
    return true;
  }

 private:
  static constexpr std::size_t alignment_for(std::size_t bytes) { return bytes >= kHugePage ? kHugePage : 64; }
  static constexpr std::size_t round_up(std::size_t bytes, std::size_t alignment) {
    return bytes == 0 ? alignment : (bytes + alignment - 1) / alignment * alignment;
  }
};

namespace detail {

// An uninitialised shared array from HugePageAllocator (the selections of DSA: 256 MB at n = 32768,
// k = 2048, whose first touch in 4 KiB pages cost a quarter of the indexer's time).
template <class T>
std::shared_ptr<T[]> allocate_large(Index count) {
  static_assert(std::is_trivially_copyable_v<T>, "allocate_large holds plain numbers only");
  const auto n = static_cast<std::size_t>(count);
  return std::shared_ptr<T[]>(HugePageAllocator<T>().allocate(n), [n](T* p) { HugePageAllocator<T>().deallocate(p, n); });
}

}  // namespace detail
}  // namespace sparse_attention
