# SPDX-License-Identifier: Apache-2.0
# Builds and runs the quickstart from a separate consumer project that gets the library by MODE:
# find_package (from a prefix this script installs), add_subdirectory, or fetch_content.
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

set(consumer_args -DMODE=${MODE} -DSPARSE_ATTENTION_SOURCE=${SOURCE_DIR} -DCMAKE_BUILD_TYPE=Release
                  -DCMAKE_CXX_COMPILER=${CXX_COMPILER})
if(MODE STREQUAL "find_package")
  run(${CMAKE_COMMAND} -S "${SOURCE_DIR}" -B "${WORK_DIR}/library" -G "${GENERATOR}"
      -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DSPARSE_ATTENTION_BUILD_TESTS=OFF
      -DSPARSE_ATTENTION_BUILD_EXAMPLES=OFF -DSPARSE_ATTENTION_BUILD_BENCHMARKS=OFF)
  run(${CMAKE_COMMAND} --install "${WORK_DIR}/library" --prefix "${WORK_DIR}/prefix")
  list(APPEND consumer_args -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
elseif(MODE STREQUAL "fetch_content")
  # FetchContent gets a source archive of the tree, as it would get a release tarball (copying the
  # tree itself would recurse into build directories inside it).
  set(entries)
  foreach(entry CMakeLists.txt CMakePresets.json LICENSE README.md cmake include examples bench tests)
    if(EXISTS "${SOURCE_DIR}/${entry}")
      list(APPEND entries ${entry})
    endif()
  endforeach()
  execute_process(COMMAND ${CMAKE_COMMAND} -E tar czf "${WORK_DIR}/sparse_attention.tar.gz" ${entries}
                  WORKING_DIRECTORY "${SOURCE_DIR}" RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "could not archive ${SOURCE_DIR}")
  endif()
  list(APPEND consumer_args -DSPARSE_ATTENTION_ARCHIVE=${WORK_DIR}/sparse_attention.tar.gz)
endif()
run(${CMAKE_COMMAND} -S "${CMAKE_CURRENT_LIST_DIR}/consumer" -B "${WORK_DIR}/consumer" -G "${GENERATOR}"
    ${consumer_args})
run(${CMAKE_COMMAND} --build "${WORK_DIR}/consumer")
run("${WORK_DIR}/consumer/quickstart")
message(STATUS "quickstart (${MODE}): ${last_output}")
if(NOT last_output MATCHES "density")
  message(FATAL_ERROR "unexpected quickstart output: ${last_output}")
endif()
