#!/usr/bin/env bash
# Maxwell/Pascal compile check: builds every CUDA source of strata (kernels/cuda
# and devices/cuda) for sm_52 (Tesla M40) and sm_61 (Tesla P40) with CUDA 11.8,
# the last toolkit line that targets Maxwell (CUDA 13 dropped sm_5x/6x).
# Kernels on the Maxwell path must compile here; tensor-core/bf16 code must be
# guarded by __CUDA_ARCH__ >= 800. See tests/compat/README.md.
#
#   tests/compat/install-cuda118.sh     # once, as root (~2.5 min)
#   tests/compat/check-maxwell.sh [OUTDIR]
#
# Exit status: 0 when every file compiles for every architecture, 1 otherwise.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:-${OUT:-$root/build-compat}}
mkdir -p "$out"
# CUDA 13's tools must not shadow 11.8's (its ptxas cannot target sm_52):
# drop /usr/local/cuda*/bin and put Debian's toolkit first (some images also
# keep forwarding wrappers for CUDA 13 tools in /usr/local/bin).
PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -v '^/usr/local/cuda' | paste -sd: -)
PATH=/usr/lib/nvidia-cuda-toolkit/bin:/usr/bin:$PATH
export PATH
unset CUDA_HOME
NVCC=${NVCC:-/usr/bin/nvcc}
HOSTCXX=${HOSTCXX:-g++-11}
if ! command -v "$NVCC" >/dev/null || ! "$NVCC" --version | grep -q 'release 11\.8'; then
  echo "check-maxwell: CUDA 11.8 nvcc not found at $NVCC" >&2
  echo "hint: run tests/compat/install-cuda118.sh (Debian bookworm, non-free) or set NVCC=" >&2
  exit 1
fi
if ! command -v "$HOSTCXX" >/dev/null; then
  echo "check-maxwell: host compiler $HOSTCXX not found (CUDA 11.8 needs g++ <= 11)" >&2
  echo "hint: apt-get install g++-11" >&2
  exit 1
fi
"$NVCC" --version | tail -1
# Some images also link CUDA 13's headers into /usr/local/include, which g++
# searches before /usr/include: shadow every such name with Debian's 11.8 copy.
shadow="$out/cuda118-include"
rm -rf "$shadow" && mkdir -p "$shadow"
if [ -d /usr/local/include ]; then
  for h in /usr/local/include/*; do
    n=$(basename "$h")
    if [ -e "/usr/include/$n" ]; then ln -s "/usr/include/$n" "$shadow/$n"; fi
  done
fi
archs=(52 61)
fail=0
log="$out/maxwell-compile.log"
: > "$log"
summary="$out/maxwell-summary.txt"
: > "$summary"
cd "$root"
start=$(date +%s)
for f in kernels/cuda/*.cu devices/cuda/*.cu; do
  for a in "${archs[@]}"; do
    obj="$out/$(basename "$f" .cu).sm_$a.o"
    flog="$out/$(basename "$f" .cu).sm_$a.log"
    if "$NVCC" -ccbin "$HOSTCXX" -std=c++17 -O3 -I"$shadow" -I"$root" -DSTRATA_HAVE_CUDA=1 \
         -gencode "arch=compute_$a,code=sm_$a" -Xptxas -v -c "$f" -o "$obj" >"$flog" 2>&1; then
      cat "$flog" >> "$log"
      if grep -qi 'warning' "$flog"; then
        echo "FAIL sm_$a $f (compiler warnings)" | tee -a "$summary"
        fail=1
      elif cuobjdump -sass "$obj" 2>/dev/null | grep -Eq '\b[HBI]MMA'; then
        # no tensor-core instruction may reach a pre-Volta image
        echo "FAIL sm_$a $f (tensor-core instruction in the image)" | tee -a "$summary"
        fail=1
      else
        echo "ok   sm_$a $f" | tee -a "$summary"
      fi
    else
      cat "$flog" >> "$log"
      echo "FAIL sm_$a $f" | tee -a "$summary"
      fail=1
    fi
  done
done
echo "elapsed $(( $(date +%s) - start )) s" | tee -a "$summary"
if grep -q 'spill stores' "$log"; then
  grep -B2 'spill stores' "$log" | grep -E '[1-9][0-9]* bytes spill' | sort | uniq -c | head -20 >> "$summary" || true
fi
if [ $fail -ne 0 ]; then
  echo "check-maxwell: FAILED (details: $log)" >&2
  grep -E 'error|warning' "$log" | head -40 >&2
  exit 1
fi
echo "check-maxwell: all CUDA sources compile for sm_52 and sm_61 with CUDA 11.8"
