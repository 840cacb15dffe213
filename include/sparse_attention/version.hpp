// SPDX-License-Identifier: Apache-2.0
// The one place the library's version is written; CMake parses these three lines.
#pragma once

#define SPARSE_ATTENTION_VERSION_MAJOR 0
#define SPARSE_ATTENTION_VERSION_MINOR 1
#define SPARSE_ATTENTION_VERSION_PATCH 0

#define SPARSE_ATTENTION_VERSION                                               \
  (SPARSE_ATTENTION_VERSION_MAJOR * 10000 + SPARSE_ATTENTION_VERSION_MINOR * 100 + \
   SPARSE_ATTENTION_VERSION_PATCH)
