#!/usr/bin/env bash
# Installs strata's build and test dependencies on Debian/Ubuntu by package name.
# Idempotent: packages already present are skipped, so a second run costs a few
# dpkg queries. As a non-root user it prints the command to run instead.
#   tools/install-deps.sh          build + test dependencies
#   tools/install-deps.sh --build  build dependencies only
#   tools/install-deps.sh --fuzz   clang and libFuzzer (tools/fuzz.sh; CI)
set -euo pipefail

build_pkgs=(build-essential cmake ninja-build pkg-config git
            libhwloc-dev libyaml-dev libjansson-dev libpcre2-dev libutf8proc-dev libmicrohttpd-dev
            libopenmpi-dev openmpi-bin)
test_pkgs=(python3 python3-pip python3-venv librsvg2-bin
           libopenblas-dev)   # bench_cpu_matmul compares the CPU GEMM with it (benchmarks only)

pkgs=("${build_pkgs[@]}")
[ "${1:-}" = "--build" ] || pkgs+=("${test_pkgs[@]}")
if [ "${1:-}" = "--fuzz" ]; then
  pkgs=(clang)
  # libFuzzer's runtime has its own package on Debian 12 and Ubuntu 24.04 (older releases ship it with clang)
  if apt-cache show libclang-rt-dev >/dev/null 2>&1; then pkgs+=(libclang-rt-dev); fi
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "hint: run   sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
