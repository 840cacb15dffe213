#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian packages a task needs, if any are missing.
#   install-deps.sh build   compiler, CMake, Ninja, Eigen
#   install-deps.sh test    + GoogleTest, clang and its libFuzzer runtime
#   install-deps.sh bench   + Google Benchmark
set -euo pipefail
packages=(g++ cmake ninja-build libeigen3-dev)
case "${1:-build}" in
  build) ;;
  test) packages+=(libgtest-dev clang libclang-rt-14-dev) ;;
  bench) packages+=(libbenchmark-dev) ;;
  *) echo "usage: $0 [build|test|bench]" >&2; exit 2 ;;
esac

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "missing packages: ${missing[*]} (run as root or install them)" >&2; exit 1; }
  sudo=(sudo)
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
