// SPDX-License-Identifier: Apache-2.0
// The one place the library touches OpenMP: a dynamically scheduled loop over work items.
#pragma once

#include <algorithm>

#include "sparse_attention/config.hpp"
#include "sparse_attention/core/types.hpp"

namespace sparse_attention::detail {

// Threads a loop over `items` work items would use (1 without OpenMP).
inline int thread_count(int requested, Index items) {
#if SPARSE_ATTENTION_HAS_OPENMP
  const int wanted = requested > 0 ? requested : omp_get_max_threads();
  return static_cast<int>(std::clamp<Index>(items, 1, std::max(wanted, 1)));
#else
  (void)requested;
  (void)items;
  return 1;
#endif
}

// Runs body(item, thread) for item in [0, items) on `threads` threads (from thread_count), handing out
// items one at a time, in order, to whichever thread is free. Each item runs on exactly one thread,
// so the result never depends on the thread count as long as items are independent.
// body must not throw.
template <class Body>
void parallel_for_dynamic(Index items, int threads, Body&& body) {
#if SPARSE_ATTENTION_HAS_OPENMP
#pragma omp parallel num_threads(threads)
  {
    // Nested parallel regions (Eigen's GEMM inside a tile) would oversubscribe the cores and make
    // timings erratic; this limits only the regions started from this team's threads.
    omp_set_num_threads(1);
    const int thread = omp_get_thread_num();
#pragma omp for schedule(dynamic, 1)
    for (Index item = 0; item < items; ++item) body(item, thread);
  }
#else
  (void)threads;
  for (Index item = 0; item < items; ++item) body(item, 0);
#endif
}

}  // namespace sparse_attention::detail
