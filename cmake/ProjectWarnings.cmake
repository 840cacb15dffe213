# SPDX-License-Identifier: Apache-2.0
# Strict warnings for the project's own tests, examples and benchmarks; never imposed on users of
# the library target.
function(sparse_attention_strict target)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Werror)
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
      # GCC 12 warns that the _mm512_undefined_ps() operand inside its own AVX-512 intrinsics is
      # uninitialized when Eigen transposes packets (GCC bug 105593, fixed in GCC 13).
      target_compile_options(${target} PRIVATE -Wno-uninitialized -Wno-maybe-uninitialized)
    endif()
    if(SPARSE_ATTENTION_NATIVE)
      target_compile_options(${target} PRIVATE -march=native)
    endif()
  endif()
endfunction()
