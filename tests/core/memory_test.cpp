// SPDX-License-Identifier: Apache-2.0
// HugePageAllocator: alignment by size, usable as a std::vector allocator, and the arrays the library
// allocates with it.
#include <gtest/gtest.h>

#include <cstdint>
#include <new>
#include <vector>

#include "sparse_attention/sparse_attention.hpp"

namespace sa = sparse_attention;

namespace {

std::uintptr_t address(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

TEST(HugePageAllocator, AlignsSmallArraysToCacheLinesAndLargeOnesToHugePages) {
  sa::HugePageAllocator<float> allocator;
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{1000}, (std::size_t{2} << 20) / sizeof(float) - 1}) {
    float* p = allocator.allocate(n);
    EXPECT_EQ(0u, address(p) % 64) << n;
    allocator.deallocate(p, n);
  }
  for (std::size_t n : {(std::size_t{2} << 20) / sizeof(float), (std::size_t{5} << 20) / sizeof(float) + 3}) {
    float* p = allocator.allocate(n);
    EXPECT_EQ(0u, address(p) % (std::size_t{2} << 20)) << n;
    p[0] = 1, p[n - 1] = 2;  // the whole array is usable
    allocator.deallocate(p, n);
  }
}

TEST(HugePageAllocator, RejectsSizesPastTheAddressSpace) {
  sa::HugePageAllocator<double> allocator;
  EXPECT_THROW((void)allocator.allocate(std::size_t{1} << 61), std::bad_array_new_length);
}

TEST(HugePageAllocator, BacksVectorsTheKernelReads) {
  const sa::Index n = 300, d = 16;
  std::vector<float, sa::HugePageAllocator<float>> q(static_cast<std::size_t>(n * d)), k(q.size()), v(q.size()), o(q.size());
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = k[i] = v[i] = static_cast<float>(i % 7) - 3;
  sa::attention<float>(sa::bhsd<const float>(q.data(), 1, 1, n, d), sa::bhsd<const float>(k.data(), 1, 1, n, d),
                       sa::bhsd<const float>(v.data(), 1, 1, n, d), sa::bhsd(o.data(), 1, 1, n, d), sa::Causal{});
  // Row 0 attends to key 0 only: its output is V's row 0.
  for (sa::Index c = 0; c < d; ++c) EXPECT_EQ(v[static_cast<std::size_t>(c)], o[static_cast<std::size_t>(c)]);
}

}  // namespace
