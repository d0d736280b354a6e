#!/usr/bin/env bash
# End-to-end GPU acceptance for quantized GGUF weights (issue 11, items 2, 3
# and 5): the strata binary against the CPU engine on real devices. Run it from
# the repository root on the GPU machine, after (or instead of) tests/gpu/run.sh:
#
#   source shared/device/setup.sh
#   tests/gpu/e2e_quant.sh                 # E2E_QPARTS=fixtures,whatif,sanitizer by default
#
# Parts (E2E_QPARTS, comma separated):
#   fixtures   tests/fixtures/models/qwen2-quant: one 2-layer Qwen2 model (hidden
#              256, q/k/v biases, odd 97-token vocabulary) quantized to q8_0 q4_0
#              q4_1 q5_0 q5_1 iq4_nl q4_k q5_k q6_k and the q4_k_m mix. Per file:
#              the CPU engine twice (bit-identical), then
#                1gpu-bf16  one GPU, bf16 precision (the 12-token prompt is one
#                           prefill GEMM over bf16 tiles; decode GEMVs use dp4a)
#                1gpu-m40   one GPU as a Tesla M40 (emulate: tesla-m40: fp32
#                           GEMV/GEMM over dequantized weights, f32 KV cache)
#                gpu+cpu    layer 0 on the GPU (bf16, prefill chunks of 5: the
#                           prompt also goes through the GEMV), layer 1 on the CPU
#              each compared with the CPU run by tests/gpu/check_e2e.py compare:
#              the same 16 greedy ids, and logits within the type's tolerance
#              (bf16-class stages: tests/gpu/quant_tolerances.json, derived by
#              tests/gpu/quant_bound.py; fp32-class stages: 1e-4), each plus the
#              CPU reference's own error: its quantized matmuls round the
#              activations to 8 bits per block (docs/cpu-kernels.md), within
#              5e-2 of the exact product (TOL of tests/engine/quant_fixtures.py).
#   whatif     `strata plan -c configs/what-if-m40-3050ti-q4km.yaml` (both cards get
#              a stage), and the same deployment on this machine's GPU: two
#              logical stages of cuda:0, one `emulate: tesla-m40`, one bf16,
#              generating the CPU engine's greedy ids for the q4_k_m fixture (in
#              both orders).
#   sanitizer  compute-sanitizer memcheck on short generates of the q4_k_m, q8_0,
#              q6_k and q5_1 fixtures (1 GPU bf16 and the M40 path): every
#              quantized kernel's loads stay inside the weights.
#
# Environment: OUT (results in $OUT/e2e_quant: summary.txt, log.txt,
# results.jsonl), STRATA_GPU_BUILD (default build-gpu, shared with run.sh),
# E2E_STRATA (a strata binary; build nothing), E2E_FAKE_GPU=1 (no GPU: every
# cuda:N becomes the CPU, emulate/precision dropped, so the script and its
# checks run anywhere, all fp32), E2E_QTYPES (comma-separated subset of types).
# Exit status 1 when any correctness check failed. Takes ~2 minutes on an H100
# once strata is built (10 files x 3 deployments + 20 CPU runs, each < 2 s).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root" || exit 1
build=${STRATA_GPU_BUILD:-$root/build-gpu}
out=${OUT:-$build/out}/e2e_quant
work=$build/e2e_quant
parts=",${E2E_QPARTS:-fixtures,whatif,sanitizer},"
py=${PYTHON:-python3}
fake=${E2E_FAKE_GPU:-0}
fx=tests/fixtures/models/qwen2-quant
mkdir -p "$out" "$work/deploy" "$work/runs" || exit 1
log=$out/log.txt
results=$out/results.jsonl
summary=$out/summary.txt
: > "$log"
: > "$results"
. "$root/tests/gpu/e2e_lib.sh"   # chk, record, show_last, has_part, now, secs
run() {  # run TAG TIMEOUT STDOUT_FILE cmd...: stdout to the file, stderr to FILE.err, both into the log
  local tag=$1 t=$2 so=$3; shift 3
  local t0; t0=$(now)
  printf '\n=== [%s] %s $ %s\n' "$tag" "$(date -u +%H:%M:%S)" "$*" >> "$log"
  timeout --kill-after=10 "$t" "$@" > "$so" 2> "$so.err"
  local rc=$?
  cat "$so.err" "$so" >> "$log"
  printf '=== [%s] rc=%d, %ss%s\n' "$tag" "$rc" "$(secs "$t0")" "$([ $rc -eq 124 ] && echo " (timed out after ${t}s)")" >> "$log"
  return $rc
}
first_error() { grep -m1 -iE 'error|fail|abort' "$1" 2>/dev/null | cut -c1-200; }

echo "strata e2e_quant $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown) parts ${parts//,/ }" | tee -a "$log"
if [ "$fake" = 1 ]; then
  ngpu=1
  echo "E2E_FAKE_GPU=1: cuda:N runs on the CPU" | tee -a "$log"
elif command -v nvidia-smi > /dev/null; then
  ngpu=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | grep -c .)
  nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader 2>&1 | sed 's/^/gpu  /' | tee -a "$log"
else
  ngpu=0
fi

# ------------------------------------------------------------------ build
if [ -n "${E2E_STRATA:-}" ]; then
  strata=$(cd "$(dirname "$E2E_STRATA")" && pwd)/$(basename "$E2E_STRATA")
  [ -x "$strata" ] || { echo "E2E_STRATA=$E2E_STRATA is not an executable" >&2; exit 1; }
else
  strata=$build/strata
  t0=$(now)
  ok=1
  if [ ! -f "$build/build.ninja" ] && [ ! -f "$build/Makefile" ]; then
    gen=()
    command -v ninja > /dev/null && gen=(-G Ninja)
    run configure 600 "$work/configure.out" cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
      -DSTRATA_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=native || ok=0
  fi
  [ $ok = 1 ] && { run build 900 "$work/build.out" cmake --build "$build" --parallel "$(nproc)" --target strata || ok=0; }
  if [ $ok = 0 ]; then
    record build strata FAIL "configure/build failed ($(secs "$t0")s): see log.txt"
    "$py" "$root/tests/gpu/check_e2e.py" summary --results "$results" | tee "$summary"
    exit 1
  fi
  record build strata PASS "$build/strata ($(secs "$t0")s)"
fi

# ------------------------------------------------------------------ deployments
# deploy NAME: writes $work/deploy/NAME.yaml from the here-document on stdin
# (E2E_FAKE_GPU: cuda:N -> cpu, emulate/precision lines dropped)
deploy() {
  local e=()
  [ "$fake" = 1 ] && e+=(-e "s/cuda:[0-9][0-9]*/cpu/g" -e "/^    emulate: /d" -e "/^    precision: /d")
  if [ ${#e[@]} -gt 0 ]; then sed "${e[@]}" > "$work/deploy/$1.yaml"; else cat > "$work/deploy/$1.yaml"; fi
}
model_line="model: {path: $root/$fx/qwen2-quant-q4_k_m.gguf}"
deploy q-1gpu-bf16 <<EOF
# one GPU, bf16 precision: prefill GEMMs over bf16 tiles, dp4a decode GEMVs
version: 1
$model_line
devices:
  - device: cuda:0
    name: gpu0
    precision: bf16
context: 64
prefill_chunk: 512
generation: {temperature: 0, seed: 1}
EOF
deploy q-1gpu-m40 <<EOF
# one GPU on the Maxwell path: fp32 over the dequantized weights, f32 KV cache
version: 1
$model_line
devices:
  - device: cuda:0
    name: m40
    emulate: tesla-m40
context: 64
generation: {temperature: 0, seed: 1}
EOF
deploy q-gpu-cpu <<EOF
# layer 0 on the GPU (bf16), layer 1 on the CPU; prefill chunks of 5 (GEMV-sized)
version: 1
$model_line
devices:
  - device: cuda:0
    name: gpu
    precision: bf16
  - device: cpu
    name: host
placement:
  strategy: manual
  manual:
    - {device: gpu, layers: 0-0}
    - {device: host, layers: 1-1}
transport: host
context: 64
prefill_chunk: 5
generation: {temperature: 0, seed: 1}
EOF
# configs/what-if-m40-3050ti-q4km.yaml on one real GPU: two logical stages
for order in m40-first bf16-first; do
  if [ $order = m40-first ]; then a=m40; b=new; else a=new; b=m40; fi
  deploy q-m40-bf16-$order <<EOF
# what-if-m40-3050ti-q4km on this machine: cuda:0 listed twice, one stage on the
# Maxwell path (the M40), one bf16 stage (the 3050 Ti), a local link between them
version: 1
$model_line
devices:
  - device: cuda:0
    name: m40
    emulate: tesla-m40
  - device: cuda:0
    name: new
    precision: bf16
placement:
  strategy: manual
  manual:
    - {device: $a, layers: 0-0}
    - {device: $b, layers: 1-1}
context: 64
generation: {temperature: 0, seed: 1}
EOF
done

# ------------------------------------------------------------------ types and tolerances
prompt=$("$py" -c 'import json,sys; print(",".join(map(str, json.load(open(sys.argv[1]))["tokens"])))' "$fx/reference.json")
types=$("$py" -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["files"]))' "$fx/reference.json")
[ -n "${E2E_QTYPES:-}" ] && types=${E2E_QTYPES//,/ }
tol_of() { "$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["files"][sys.argv[2]]["tol"])' \
  tests/gpu/quant_tolerances.json "$1"; }
N=16
# the CPU reference's own error on quantized weights (8-bit activations), as tests/engine/quant_fixtures.py's TOL
cpu_q=$(sed -n 's/^TOL = \([0-9.e-]*\).*/\1/p' tests/engine/quant_fixtures.py)
[ -n "$cpu_q" ] || cpu_q=5e-2

cpu_ref() {  # cpu_ref TYPE: the CPU engine's ids and logits, twice (must be bit-identical)
  local t=$1 f=$fx/qwen2-quant-$1.gguf d=$work/runs/cpu-$1
  run "cpu $t" 120 "$d.out" "$strata" generate -m "$f" --cpu --tokens "$prompt" -n $N --logits "$d.npy"
  local rc=$?
  if [ $rc -ne 0 ] || [ ! -s "$d.npy" ]; then
    record fixtures "cpu $t" FAIL "CPU reference run failed (rc $rc): $(first_error "$d.out.err")"
    return 1
  fi
  run "cpu $t again" 120 "$d.2.out" "$strata" generate -m "$f" --cpu --tokens "$prompt" -n $N --logits "$d.2.npy"
  chk compare --part fixtures --case "cpu $t twice" --ref-npy "$d.npy" --ref-stdout "$d.out" --got-npy "$d.2.npy" \
    --got-stdout "$d.2.out" --prompt "$prompt" --tol-class fp32 --tol 0 --model "$t"
}

qcase() {  # qcase PART CASE DEPLOY TYPE: a run against the CPU reference
  local part=$1 case=$2 cfg=$3 t=$4
  local f=$fx/qwen2-quant-$t.gguf d=$work/runs/$cfg-$t ref=$work/runs/cpu-$t
  if [ ! -s "$ref.npy" ]; then record "$part" "$case" FAIL "no CPU reference for $t"; return; fi
  run "plan $cfg $t" 60 "$d.plan.json" "$strata" plan -c "$work/deploy/$cfg.yaml" -m "$f" --format json
  run "gen $cfg $t" 120 "$d.out" "$strata" generate -c "$work/deploy/$cfg.yaml" -m "$f" --tokens "$prompt" -n $N \
    --logits "$d.npy"
  local rc=$?
  if [ $rc -ne 0 ]; then
    record "$part" "$case" FAIL "strata generate rc $rc$([ $rc -eq 124 ] && echo ' (timeout)'): $(first_error "$d.out.err")"
    return
  fi
  chk compare --part "$part" --case "$case" --ref-npy "$ref.npy" --ref-stdout "$ref.out" --got-npy "$d.npy" \
    --got-stdout "$d.out" --prompt "$prompt" --plan "$d.plan.json" --model "$t" \
    --tol-fp32 "$(awk -v c="$cpu_q" 'BEGIN{print c + 1e-4}')" \
    --tol-bf16 "$(awk -v c="$cpu_q" -v g="$(tol_of "$t")" 'BEGIN{print c + g}')" \
    -- "$strata" generate -c "$work/deploy/$cfg.yaml" -m "$f"
  show_last
}

# ------------------------------------------------------------------ fixtures
if has_part fixtures; then
  echo "-- quantized fixtures vs the CPU engine" | tee -a "$log"
  for t in $types; do cpu_ref "$t"; done
  show_last --part fixtures
  if [ "$ngpu" -ge 1 ]; then
    for t in $types; do
      qcase fixtures "1gpu-bf16 $t" q-1gpu-bf16 "$t"
      qcase fixtures "1gpu-m40 $t" q-1gpu-m40 "$t"
      qcase fixtures "gpu+cpu $t" q-gpu-cpu "$t"
    done
  else
    record fixtures "GPU cases" SKIP "no GPU visible"
  fi
fi

# ------------------------------------------------------------------ what-if
if has_part whatif; then
  echo "-- configs/what-if-m40-3050ti-q4km.yaml" | tee -a "$log"
  w=$work/runs/whatif
  run "plan what-if" 60 "$w.txt" "$strata" plan -c configs/what-if-m40-3050ti-q4km.yaml --explain
  rc=$?
  run "plan what-if json" 60 "$w.json" "$strata" plan -c configs/what-if-m40-3050ti-q4km.yaml --format json
  ndev=$("$py" "$root/tests/gpu/check_e2e.py" plan-summary "$w.json" 2>> "$log")
  if [ $rc -ne 0 ] || [ -z "$ndev" ]; then
    record whatif "plan m40+3050ti q4_k_m" FAIL "strata plan rc $rc: $(first_error "$w.txt.err")"
  elif [ "${ndev%%$'\t'*}" != 2 ]; then
    record whatif "plan m40+3050ti q4_k_m" FAIL "expected a stage on each card: ${ndev#*$'\t'}"
  else
    record whatif "plan m40+3050ti q4_k_m" PASS "${ndev#*$'\t'}"
  fi
  [ -s "$work/runs/cpu-q4_k_m.npy" ] || cpu_ref q4_k_m
  if [ "$ngpu" -ge 1 ]; then
    qcase whatif "m40 stage + bf16 stage, one GPU (m40 first)" q-m40-bf16-m40-first q4_k_m
    qcase whatif "m40 stage + bf16 stage, one GPU (bf16 first)" q-m40-bf16-bf16-first q4_k_m
  else
    record whatif "one-GPU run" SKIP "no GPU visible"
  fi
fi

# ------------------------------------------------------------------ sanitizer
if has_part sanitizer; then
  echo "-- compute-sanitizer memcheck" | tee -a "$log"
  if [ "$fake" = 1 ] || [ "$ngpu" -lt 1 ]; then
    record sanitizer all SKIP "needs a GPU"
  elif ! command -v compute-sanitizer > /dev/null; then
    record sanitizer all SKIP "compute-sanitizer not found"
  else
    for c in "q-1gpu-bf16 q4_k_m" "q-1gpu-bf16 q8_0" "q-1gpu-bf16 q6_k" "q-1gpu-m40 q5_1" "q-1gpu-m40 q4_k_m"; do
      set -- $c
      d=$work/runs/sanitize-$1-$2
      run "sanitize $1 $2" 300 "$d.out" compute-sanitizer --tool memcheck --error-exitcode 3 "$strata" generate \
        -c "$work/deploy/$1.yaml" -m "$fx/qwen2-quant-$2.gguf" --tokens "$prompt" -n 4
      rc=$?
      if [ $rc -eq 0 ]; then
        record sanitizer "$1 $2" PASS "memcheck clean: $(grep -m1 'ERROR SUMMARY' "$d.out" "$d.out.err" | sed 's/.*ERROR/ERROR/')"
      else
        record sanitizer "$1 $2" FAIL "rc $rc: $(grep -m1 -E 'Invalid|ERROR SUMMARY' "$d.out" "$d.out.err" | cut -c1-200)"
      fi
    done
  fi
fi

"$py" "$root/tests/gpu/check_e2e.py" summary --results "$results" | tee "$summary"
