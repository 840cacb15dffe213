// SPDX-License-Identifier: Apache-2.0
// GoogleTest face of the oracle in oracle.hpp.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "support/oracle.hpp"

namespace sparse_attention::testing {

// FlashAttention's error rule against the double oracle, and exact zeros / -inf on empty rows.
template <class T, class Policy>
::testing::AssertionResult matches_reference(const Problem<T>& p, const Policy& policy, BlockSize block,
                                             int threads = 0) {
  const std::string failure = check_against_reference(p, policy, block, threads);
  if (failure.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << failure;
}

}  // namespace sparse_attention::testing
