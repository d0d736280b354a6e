#!/usr/bin/env bash
# GPU test run: builds strata with CUDA for the GPUs present (native arch),
# runs every GPU test and benchmark, and writes a summary.
#
#   source shared/device/setup.sh     # on the lent GPU machines (deps for the build)
#   tests/gpu/run.sh                  # summary in $OUT (else build-gpu/out)
#
# Steps: build; ptxas register/spill report of the hot kernels; gpu_kernels
# (every op vs the CPU backend on three stage configurations); gpu_links (every
# link kind this machine has; peer/nccl need two GPUs, nccl an NCCL build, and
# the others are SKIP lines with the reason, never part of a PASS); gpu_probe (inventory --probe figures);
# gpu_gemv (decode GEMV vs copy roofline, 7B shapes; target >= 85% for the
# bf16 layer); then tests/gpu/e2e.sh (whole models across devices and links).
# A step that could not run here is a SKIP line saying why, never a PASS.
# Exit 1 if a correctness step fails (a missed bandwidth target is reported,
# exit code unchanged).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${STRATA_GPU_BUILD:-$root/build-gpu}
out=${OUT:-$build/out}
mkdir -p "$out"
summary="$out/summary.txt"
: > "$summary"
note() { echo "$*" | tee -a "$summary"; }
status=0
step() {  # step NAME LOGFILE cmd...
  local name=$1 log=$2; shift 2
  local t0=$(date +%s)
  "$@" > "$log" 2>&1
  local rc=$?
  local dt=$(( $(date +%s) - t0 ))
  if [ $rc -eq 0 ]; then note "PASS  $name (${dt}s)"; else note "FAIL  $name (rc $rc, ${dt}s) — see $(basename "$log")"; fi
  return $rc
}

note "strata GPU run $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
nvidia-smi --query-gpu=index,name,compute_cap,memory.total,driver_version --format=csv,noheader 2>&1 | sed 's/^/gpu   /' | tee -a "$summary"
nvcc --version | tail -1 | sed 's/^/nvcc  /' | tee -a "$summary"

gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
if ! step "configure (CUDA, native arch)" "$out/configure.log" \
     cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DSTRATA_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=native; then
  tail -20 "$out/configure.log"; exit 1
fi
if ! step "build" "$out/build.log" cmake --build "$build" --parallel "$(nproc)" --target gpu_kernels gpu_links gpu_probe gpu_gemv strata; then
  grep -E "error|FAILED" "$out/build.log" | head -30; exit 1
fi

# register / spill report for the kernels that matter (this GPU's arch), in parallel
for f in gemv attn_flash attn_eager gemm sample; do
  ( nvcc -std=c++17 -O3 -arch=native -I"$root" -DSTRATA_HAVE_CUDA=1 -Xptxas -v -c "$root/kernels/cuda/$f.cu" -o /dev/null 2>&1 |
      grep -E "Compiling entry|registers|spill" | sed -E 's/ptxas info *: //' > "$out/ptxas.$f.txt" ) &
done
wait
for f in gemv attn_flash attn_eager gemm sample; do echo "== kernels/cuda/$f.cu"; cat "$out/ptxas.$f.txt"; rm -f "$out/ptxas.$f.txt"; done > "$out/ptxas.txt"
note "ptxas: max registers $(grep -oE 'Used [0-9]+ registers' "$out/ptxas.txt" | awk '{print $2}' | sort -n | tail -1), \
kernels with spills: $(grep -E '[1-9][0-9]* bytes spill stores' "$out/ptxas.txt" | wc -l) (details ptxas.txt)"

step "gpu_kernels (ops vs CPU backend: bf16, f16, maxwell paths)" "$out/gpu_kernels.log" \
  "$build/tests/gpu_kernels" --require-gpu || status=1
grep -E "^(FAIL|summary)" "$out/gpu_kernels.log" | head -40 | sed 's/^/      /' | tee -a "$summary"
# gpu_links: PASS names the link kinds that ran; the ones that could not (peer/nccl on
# one GPU, nccl without NCCL) are a SKIP line with the reason, never part of a PASS
t0=$(date +%s)
"$build/tests/gpu_links" --require-gpu > "$out/gpu_links.log" 2>&1
rc=$?
links_ran=$(sed -n 's/^links ran: //p' "$out/gpu_links.log")
links_skipped=$(sed -n 's/^links skipped: //p' "$out/gpu_links.log")
if [ $rc -eq 0 ] && [ -n "$links_ran" ] && [ "$links_ran" != none ]; then
  note "PASS  gpu_links ($(( $(date +%s) - t0 ))s): ran $links_ran"
else
  note "FAIL  gpu_links (rc $rc) — see gpu_links.log"; status=1
fi
[ -n "$links_skipped" ] && [ "$links_skipped" != none ] && note "SKIP  gpu_links: $links_skipped"
grep -E "^(FAIL|SKIP)|passed" "$out/gpu_links.log" | sed 's/^/      /' | tee -a "$summary"
step "gpu_probe (inventory --probe, GPU part)" "$out/gpu_probe.log" "$build/tests/gpu_probe" || status=1
sed 's/^/      /' "$out/gpu_probe.log" | tee -a "$summary"
"$build/bench/gpu_gemv" --json "$out/gpu_gemv.json" --min-ratio 0.85 > "$out/gpu_gemv.log" 2>&1
rc=$?
case $rc in
  0) note "PASS  gpu_gemv (bf16 7B layer >= 85% of copy)";;
  3) note "PERF  gpu_gemv below the 85% target (correct output)";;
  *) note "FAIL  gpu_gemv (rc $rc: wrong output or error)"; status=1;;
esac
sed 's/^/      /' "$out/gpu_gemv.log" | tee -a "$summary"
# The end-to-end half (tests/gpu/e2e.sh): whole models on 1 GPU, 2 GPUs, GPU + CPU,
# every link kind, compute-sanitizer; E2E_PARTS=fixtures,sanitizer,big adds the 7B
# memory and roofline checks, E2E_PARTS=none skips it.
if [ "${E2E_PARTS:-fixtures,sanitizer}" != none ]; then
  if E2E_PARTS=${E2E_PARTS:-fixtures,sanitizer} STRATA_GPU_BUILD="$build" bash "$root/tests/gpu/e2e.sh" > "$out/e2e.log" 2>&1; then
    note "PASS  e2e ($(tail -n 1 "$out/e2e.log"))"
  else
    note "FAIL  e2e — see e2e.log"; grep -E "^FAIL" "$out/e2e.log" | head -20 | sed 's/^/      /' | tee -a "$summary"; status=1
  fi
fi
note "result: $([ $status -eq 0 ] && echo ALL CORRECTNESS CHECKS PASSED || echo FAILURES)"
exit $status
