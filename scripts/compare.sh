#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The main job: builds the library's comparison in Release and runs it. It prints, for n = 1024 to
# 32768, the time of dense O(n^2) attention and of each sparse pattern, the speed-up and the density.
# Extra arguments go to the program (e.g. --max-n 8192, --threads 1).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh build
cmake --preset bench >/dev/null
cmake --build --preset bench --target sparse_attention_compare
exec build/bench/bench/sparse_attention_compare "$@"
