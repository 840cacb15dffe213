// SPDX-License-Identifier: Apache-2.0
// Build configuration: compiler and OpenMP detection. Every macro carries the SPARSE_ATTENTION_ prefix.
#pragma once

#if !defined(__cplusplus) || __cplusplus < 202002L
#error "sparse_attention requires C++20 (concepts, std::span)."
#endif

// OpenMP is used when the translation unit is compiled with it, unless the user opts out with
// SPARSE_ATTENTION_DISABLE_OPENMP. Without it every kernel runs on the calling thread.
#if defined(_OPENMP) && !defined(SPARSE_ATTENTION_DISABLE_OPENMP)
#define SPARSE_ATTENTION_HAS_OPENMP 1
#include <omp.h>
#else
#define SPARSE_ATTENTION_HAS_OPENMP 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define SPARSE_ATTENTION_ALWAYS_INLINE inline __attribute__((always_inline))
#define SPARSE_ATTENTION_RESTRICT __restrict__
#else
#define SPARSE_ATTENTION_ALWAYS_INLINE inline
#define SPARSE_ATTENTION_RESTRICT
#endif
