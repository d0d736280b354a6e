#!/usr/bin/env bash
# Builds strata and passes its tests: the README's test command, and what CI runs.
#   1. installs the Debian/Ubuntu packages (tools/install-deps.sh) and a Python
#      venv (.venv) with the peer-check packages (numpy, gguf, tokenizers, safetensors,
#      jinja2), rebuilt when one is missing;
#   2. builds and tests the default configuration (with the CUDA backend when nvcc
#      is found: compiled, not run, on machines without a GPU);
#   3. builds and tests again with -DSTRATA_CUDA=OFF (skipped when step 2 had no CUDA);
#   4. builds and tests the CPU code under AddressSanitizer + UndefinedBehaviorSanitizer;
#   5. in CI (CI=true) or with STRATA_FUZZ_CI=1: the whole project and the fuzz targets
#      built with clang, each target run for STRATA_FUZZ_SECONDS (default 15) on its corpus
#      (tools/fuzz.sh; installs clang);
#   6. in CI (CI=true) or with STRATA_COMPAT=1: the Maxwell/Pascal compile check —
#      every CUDA source built for sm_52 and sm_61 with CUDA 11.8 (tests/compat/,
#      installs Debian's nvidia-cuda-toolkit and g++-11 the first time, ~4 min).
# Exits non-zero on any failure; in CI also when a test that should run was
# skipped (only the GPU tests may skip, on a machine without a GPU).
# STRATA_TEST_QUICK=1 runs step 2 only.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=$(nproc 2>/dev/null || echo 2)

bash tools/install-deps.sh

# the peer-check packages (import name = package name); a venv missing any is rebuilt
py_pkgs="numpy gguf tokenizers safetensors jinja2 openai"
if [ ! -x .venv/bin/python3 ] || ! .venv/bin/python3 -c "import ${py_pkgs// /, }" 2>/dev/null; then
  echo "test: making .venv with $py_pkgs"
  python3 -m venv .venv
  .venv/bin/python3 -m pip install --quiet --disable-pip-version-check $py_pkgs
  .venv/bin/python3 -c "import ${py_pkgs// /, }"
fi
py="$root/.venv/bin/python3"

# A skipped test (exit 77: no GPU, or a Python package missing) is listed; in CI
# (CI=true) any skip but the GPU-labelled tests on a machine without a GPU fails.
check_skips() {  # build dir, ctest log
  local skipped allowed="" bad=""
  skipped=$(sed -n 's/^[[:space:]]*[0-9][0-9]* - \(.*\) (Skipped)[[:space:]]*$/\1/p' "$2")
  [ -z "$skipped" ] && return 0
  echo "test: skipped in $1: $(echo $skipped)"
  [ "${CI:-}" = true ] || return 0
  if ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    allowed=$(ctest --test-dir "$1" -N -L '^gpu$' | sed -n 's/^[[:space:]]*Test[[:space:]]*#[0-9]*: \(.*\)$/\1/p')
  fi
  for t in $skipped; do
    grep -qxF "$t" <<< "$allowed" || bad="$bad $t"
  done
  if [ -n "$bad" ]; then
    echo "test: CI expected these tests to run, but they were skipped:$bad (see their output above)"
    return 1
  fi
}

run_variant() {  # name, extra cmake args...
  local name=$1; shift
  local dir="build-test-$name"
  echo "==== test: $name ($*)"
  cmake -S . -B "$dir" -G Ninja -DSTRATA_PYTHON="$py" "$@"
  cmake --build "$dir" -j "$jobs"
  ctest --test-dir "$dir" --output-on-failure -j "$jobs" 2>&1 | tee "$dir/ctest.log"
  check_skips "$dir" "$dir/ctest.log"
}

run_variant default
if [ "${STRATA_TEST_QUICK:-0}" = 1 ]; then exit 0; fi
if build-test-default/strata --version | grep -q 'cuda=ON'; then
  run_variant cpu -DSTRATA_CUDA=OFF
fi
# Debian's hwloc PCI plugin (libhwloc-plugins; Open MPI's packages depend on it) leaks inside
# libpciaccess, which hwloc unloads before the leak check: LeakSanitizer can only report it as
# "unknown module" (or its tracer crashes). A CPU-only build has no PCI device to place, so the
# ASan run does not load that plugin at all (HWLOC_PLUGINS_BLACKLIST, hwloc >= 2.0).
HWLOC_PLUGINS_BLACKLIST=${HWLOC_PLUGINS_BLACKLIST:-hwloc_pci} \
  run_variant asan -DSTRATA_CUDA=OFF -DSTRATA_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=RelWithDebInfo
if [ "${CI:-}" = true ] || [ "${STRATA_FUZZ_CI:-0}" = 1 ]; then
  echo "==== test: fuzz targets (clang, libFuzzer + ASan/UBSan, ${STRATA_FUZZ_SECONDS:-15} s each)"
  if [ "$(id -u)" -eq 0 ]; then bash tools/install-deps.sh --fuzz; else sudo bash tools/install-deps.sh --fuzz; fi
  bash tools/fuzz.sh build   # every target, and the whole project with clang (any compiler)
  bash tools/fuzz.sh all "${STRATA_FUZZ_SECONDS:-15}"
fi
if [ "${CI:-}" = true ] || [ "${STRATA_COMPAT:-0}" = 1 ]; then
  echo "==== test: Maxwell/Pascal compile check (CUDA 11.8, sm_52 + sm_61)"
  if [ "$(id -u)" -eq 0 ]; then bash tests/compat/install-cuda118.sh; else sudo bash tests/compat/install-cuda118.sh; fi
  bash tests/compat/check-maxwell.sh build-test-compat
fi
echo "test: all variants passed"
