// SPDX-License-Identifier: Apache-2.0
// libFuzzer harness: the fuzz bytes decode into a problem (shape, GQA, Sq != Sk, layout, block size,
// one of every policy with its parameters, the inputs' seed and magnitude, threads) and the kernel
// must match the double oracle under the FlashAttention rule. Parameters a policy rejects must be
// rejected with std::invalid_argument; anything else (a crash, a sanitizer report, another
// exception, a wrong answer) aborts with the case that caused it.
//
//   cmake --preset fuzz && cmake --build --preset fuzz
//   build/fuzz/tests/fuzz/attention_fuzzer -max_len=256 corpus/ tests/fuzz/corpus
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <span>

#include "support/random_cases.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace sat = sparse_attention::testing;
  sat::ByteSource source{std::span<const std::uint8_t>(data, size)};
  try {
    const sat::CaseOutcome r = sat::run_random_case<float>(source, {.seq = 40, .dim = 16});
    if (!r.rejected && !r.failure.empty()) {
      std::fprintf(stderr, "mismatch: %s: %s\n", r.policy.c_str(), r.failure.c_str());
      std::abort();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "unexpected exception: %s\n", e.what());
    std::abort();
  }
  return 0;
}
