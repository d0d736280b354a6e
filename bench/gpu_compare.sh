#!/usr/bin/env bash
# strata vs llama.cpp on one GPU, same weights, same call (issues 11, 12, 14):
# the Qwen2.5-7B-shaped random bf16 model of tools/make_random_model.py,
# converted to GGUF (tools/quantize_convert.py) and quantized to Q4_K_M and Q8_0
# by llama.cpp's own llama-quantize, then, one benchmark at a time:
#   batch 1, each of BF16 Q4_K_M Q8_0:
#     strata bench -c (cuda:0, bf16) --prompt-tokens 512 --decode-tokens 128
#     llama-bench -fa 1 -p 512 -n 128
#   long context, BF16: strata bench --prompt-tokens 4096 (prefill 4k) and 8192
#     (decode after 8k tokens); llama-bench -p 4096 -n 0 and -p 0 -n 128 -d 8192
#   two logical stages of the one GPU (BF16, latency objective): decode vs one stage
#   the Maxwell path (emulate: tesla-m40) on BF16 and Q4_K_M: decode vs its copy roofline
#   serving, BF16: strata bench --concurrency 1,4,16,64 (one stage, and two
#     logical stages with the throughput objective), 128 prompt + 128 decode
#     tokens each, vs llama-batched-bench -npp 128 -ntg 128 -npl 1,4,16,64
# and a table of every figure with its ratio against the issues' targets
# (decode Q4_K_M >= 1.3x llama.cpp's tg128, Q8_0 >= 1.2x, BF16 >= 95% of the copy
# roofline; pp512 >= llama.cpp's; two stages >= 98% of one; Maxwell >= 80% of
# roofline; 16 sequences >= 8x one, >= 1.3x llama-batched-bench at 16 and 64; two
# stages' aggregate >= 90% of one stage's). Exit status (run, wait once finished,
# report): 1 when a target is missed or its figure is missing, 0 when all are met.
#
# Built for short device calls: `start` launches every step in the background
# (setsid; it outlives the call while the machine stays warm) and returns; `wait`
# follows it for up to N seconds and prints the table once it is done; a later
# call resumes with `wait`. Every step is skipped when its output exists, so
# `start` after an interruption redoes only what is missing. While the file
# $QC_DIR/hold exists the benchmarks wait (the builds, the model and the
# quantization go on): GPU tests can run beside the preparation without
# disturbing a timing.
#
#   source shared/device/setup.sh              # the strata build's dependencies
#   bench/gpu_compare.sh start                 # returns at once
#   bench/gpu_compare.sh wait 540              # in the same call or the next one
#   bench/gpu_compare.sh status | report | run   # progress | the table again | all steps in the foreground
#
# Steps, in parallel where they can be (about 15 minutes on an H100 with 16
# cores, most of it the builds and the model): llama.cpp
# (shared/baseline/build-llamacpp.sh, this GPU's arch) | the 7B model (15 GB on
# the GPU, then disk) -> bf16 GGUF -> Q4_K_M and Q8_0 (llama-quantize) -> strata
# (STRATA_GPU_BUILD, default build-gpu, as tests/gpu/run.sh configures it) ->
# the benchmarks. Disk: about 45 GB under QC_DIR and QC_BIG_DIR.
#
# Environment: QC_DIR (work, logs, GGUF files; default /tmp/strata-qc), QC_BIG_DIR
# (the HF model, shared with tests/gpu/e2e.sh: /tmp/strata-e2e/qwen2.5-7b-random),
# SHARED (the shared/ folder: default ./shared, else ../shared), LLAMA_BUILD
# (/tmp/lcb), OUT (results.json, table.txt and the logs are copied to
# $OUT/gpu_compare), PYTHON (python3 with torch: the device image's), QC_REPS
# (llama-bench -r and strata bench --repeat; default 3), QC_PARTS (which benchmarks:
# all, or a comma list of batch1 long stages maxwell serve; the report then
# counts the others as missing), QC_TYPES (batch1's weights; default BF16 Q4_K_M Q8_0).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1
qc=${QC_DIR:-/tmp/strata-qc}
big=${QC_BIG_DIR:-/tmp/strata-e2e/qwen2.5-7b-random}
build=${STRATA_GPU_BUILD:-$root/build-gpu}
lcb=${LLAMA_BUILD:-/tmp/lcb}
py=${PYTHON:-python3}
reps=${QC_REPS:-3}
parts=${QC_PARTS:-all}
types=${QC_TYPES:-BF16 Q4_K_M Q8_0}
shared=${SHARED:-}
[ -z "$shared" ] && for d in "$root/shared" "$root/../shared"; do [ -f "$d/baseline/build-llamacpp.sh" ] && shared=$d && break; done
src=/tmp/llama.cpp-src
mkdir -p "$qc/logs"
progress=$qc/progress.txt
export NCCL_NVLS_ENABLE=0

say() { echo "$(date -u +%H:%M:%S) $*" | tee -a "$progress"; }
step() {  # step NAME DONE_FILE cmd...: run unless DONE_FILE exists; log in logs/NAME.log
  local name=$1 done=$2; shift 2
  if [ -e "$done" ]; then say "skip  $name ($done exists)"; return 0; fi
  local t0; t0=$(date +%s)
  say "start $name"
  if "$@" > "$qc/logs/$name.log" 2>&1; then
    say "done  $name ($(( $(date +%s) - t0 )) s)"
    return 0
  fi
  say "FAIL  $name ($(( $(date +%s) - t0 )) s): $(grep -m1 -iE 'error|fail' "$qc/logs/$name.log" | cut -c1-160) (logs/$name.log)"
  return 1
}

arch() { nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.'; }

do_llama() {
  [ -n "$shared" ] || { echo "no shared/baseline/build-llamacpp.sh (set SHARED=)"; return 1; }
  if [ -f "$qc/llama.pid" ] && kill -0 "$(cat "$qc/llama.pid")" 2>/dev/null; then
    echo "waiting for the llama.cpp build started by 'build-llama' (pid $(cat "$qc/llama.pid"))"
    while kill -0 "$(cat "$qc/llama.pid")" 2>/dev/null; do sleep 5; done
  else
    bash "$shared/baseline/build-llamacpp.sh" "$lcb" "$(arch)"
  fi
  [ -x "$lcb/bin/llama-bench" ] && [ -x "$lcb/bin/llama-quantize" ]
}
extract_llama() {
  if [ ! -d "$src/gguf-py" ] && [ -n "$shared" ]; then
    mkdir -p "$src" && tar -xJf "$shared/baseline/llama.cpp-src.tar.xz" -C "$src" --strip-components=1
  fi
}
do_strata() {
  local gen=()
  command -v ninja > /dev/null && gen=(-G Ninja)
  if [ ! -f "$build/build.ninja" ] && [ ! -f "$build/Makefile" ]; then
    cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DSTRATA_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=native || return 1
  fi
  cmake --build "$build" --parallel "$(nproc)" --target strata gpu_gemm_peak && touch "$strata_marker"
}
strata_marker=$qc/.strata-built-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
do_model() { "$py" tools/make_random_model.py "$big" --shape qwen2.5-7b; }
do_convert() { PYTHONPATH="$src/gguf-py${PYTHONPATH:+:$PYTHONPATH}" "$py" tools/quantize_convert.py "$big" "$qc/qwen7b-BF16.gguf.tmp" && mv "$qc/qwen7b-BF16.gguf.tmp" "$qc/qwen7b-BF16.gguf"; }
do_quant() {  # do_quant TYPE
  "$lcb/bin/llama-quantize" "$qc/qwen7b-BF16.gguf" "$qc/qwen7b-$1.gguf.tmp" "$1" "$(nproc)" && mv "$qc/qwen7b-$1.gguf.tmp" "$qc/qwen7b-$1.gguf"
}
deploy() {  # deploy NAME GGUF_TYPE CONTEXT [extra yaml lines...]: writes $qc/deploy-NAME.yaml
  local name=$1 t=$2 ctx=$3; shift 3
  { echo "version: 1"; echo "model: {path: $qc/qwen7b-$t.gguf}"; echo "context: $ctx"; echo "prefill_chunk: 512"
    if [ $# -eq 0 ]; then echo "devices:"; echo "  - {device: cuda:0, precision: bf16}"; fi
    for l in "$@"; do echo "$l"; done; } > "$qc/deploy-$name.yaml"
}
two_stages=("devices:" "  - {device: cuda:0, name: a, precision: bf16}" "  - {device: cuda:0, name: b, precision: bf16}"
            "placement:" "  strategy: manual" "  manual:" "    - {device: a, layers: 0-13}" "    - {device: b, layers: 14-27}")
sbench() {  # sbench NAME DEPLOY strata-bench-args...: $qc/strata-NAME.json
  local name=$1 dep=$2; shift 2
  "$build/strata" bench -c "$qc/deploy-$dep.yaml" --json "$@" > "$qc/strata-$name.json.tmp" &&
    mv "$qc/strata-$name.json.tmp" "$qc/strata-$name.json"
}
lbench() {  # lbench NAME TYPE llama-bench-args...: $qc/llama-NAME.json
  local name=$1 t=$2; shift 2
  "$lcb/bin/llama-bench" -m "$qc/qwen7b-$t.gguf" -fa 1 -ngl 99 -o json "$@" > "$qc/llama-$name.json.tmp" &&
    mv "$qc/llama-$name.json.tmp" "$qc/llama-$name.json"
}
lbatched() {  # lbatched NAME TYPE: $qc/llama-NAME.jsonl
  "$lcb/bin/llama-batched-bench" -m "$qc/qwen7b-$2.gguf" -ngl 99 -fa on -c 16384 -b 2048 -ub 512 \
    -npp 128 -ntg 128 -npl 1,4,16,64 --output-format jsonl > "$qc/llama-$1.out" 2>&1 &&
    grep '^{' "$qc/llama-$1.out" > "$qc/llama-$1.jsonl"
}
gemm_peak() {  # gemm_peak M: $qc/gemm-M.json (cuBLAS bf16, the 7B's gate/up shape)
  "$build/bench/gpu_gemm_peak" "$1" 18944 3584 > "$qc/gemm-$1.json.tmp" && mv "$qc/gemm-$1.json.tmp" "$qc/gemm-$1.json"
}
want() { case ",$parts," in *",all,"*|*",$1,"*) return 0 ;; esac; return 1; }
run_benches() {
  step gemm-512 "$qc/gemm-512.json" gemm_peak 512
  want long && step gemm-4096 "$qc/gemm-4096.json" gemm_peak 4096
  want batch1 && for t in $types; do
    deploy "$t" "$t" 1024
    step "strata-$t" "$qc/strata-$t.json" sbench "$t" "$t" --prompt-tokens 512 --decode-tokens 128 --repeat "$reps"
    step "llama-$t" "$qc/llama-$t.json" lbench "$t" "$t" -p 512 -n 128 -r "$reps"
  done
  if want long; then
  deploy BF16-8k BF16 8448
  step strata-BF16-4k "$qc/strata-BF16-4k.json" sbench BF16-4k BF16-8k --prompt-tokens 4096 --decode-tokens 128 --repeat 2
  step strata-BF16-8k "$qc/strata-BF16-8k.json" sbench BF16-8k BF16-8k --prompt-tokens 8192 --decode-tokens 128 --repeat 2
  step llama-BF16-4k "$qc/llama-BF16-4k.json" lbench BF16-4k BF16 -p 4096 -n 0 -r 2
  step llama-BF16-8k "$qc/llama-BF16-8k.json" lbench BF16-8k BF16 -p 0 -n 128 -d 8192 -r 2
  fi
  if want stages; then
  deploy BF16-2stages BF16 1024 "${two_stages[@]}" "  objective: latency"
  step strata-BF16-2stages "$qc/strata-BF16-2stages.json" sbench BF16-2stages BF16-2stages --prompt-tokens 512 \
    --decode-tokens 128 --repeat "$reps"
  fi
  if want maxwell; then
  for t in BF16 Q4_K_M; do
    deploy "M40-$t" "$t" 1024 "devices:" "  - {device: cuda:0, emulate: tesla-m40}"
    step "strata-M40-$t" "$qc/strata-M40-$t.json" sbench "M40-$t" "M40-$t" --prompt-tokens 128 --decode-tokens 64 --repeat 2
  done
  fi
  want serve || return 0
  step strata-conc "$qc/strata-conc.json" sbench conc BF16 --concurrency 1,4,16,64 --prompt-tokens 128 --decode-tokens 128
  deploy BF16-2stages-tp BF16 1024 "${two_stages[@]}" "  objective: throughput"
  step strata-conc-2stages "$qc/strata-conc-2stages.json" sbench conc-2stages BF16-2stages-tp --concurrency 1,4,16,64 \
    --prompt-tokens 128 --decode-tokens 128
  step llama-batched "$qc/llama-batched.jsonl" lbatched batched BF16
}

report() {  # exit status 1 when a target is missed (gpu_compare_report.py)
  "$py" "$root/bench/gpu_compare_report.py" "$qc" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  local rc=$?
  if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT/gpu_compare"
    cp "$qc/results.json" "$qc/table.txt" "$progress" "$OUT/gpu_compare/" 2>/dev/null
    tar -C "$qc" -czf "$OUT/gpu_compare/logs.tgz" logs $(cd "$qc" && ls *.json *.jsonl *.yaml 2>/dev/null) 2>/dev/null
  fi
  return $rc
}

run_all() {
  : > "$progress"
  say "gpu_compare: $(nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader 2>/dev/null | head -1), $(nproc) cores, commit $(git rev-parse --short HEAD 2>/dev/null)"
  extract_llama
  step llama-build "$lcb/bin/llama-bench" do_llama & p_llama=$!
  step model "$big/config.json" do_model & p_model=$!
  wait $p_model || { say "stop: no model"; wait; return 1; }
  step convert "$qc/qwen7b-BF16.gguf" do_convert || { wait; return 1; }
  wait $p_llama || { say "stop: no llama.cpp"; wait; return 1; }
  if { want batch1 && [[ " $types " == *" Q4_K_M "* ]]; } || want maxwell; then
    step quant-Q4_K_M "$qc/qwen7b-Q4_K_M.gguf" do_quant Q4_K_M || return 1
  fi
  if want batch1 && [[ " $types " == *" Q8_0 "* ]]; then step quant-Q8_0 "$qc/qwen7b-Q8_0.gguf" do_quant Q8_0 || return 1; fi
  if [ -e "$qc/hold" ]; then say "hold: the benchmarks wait until $qc/hold is removed"; fi
  while [ -e "$qc/hold" ]; do sleep 2; done
  step strata-build "$strata_marker" do_strata || return 1
  sync   # the models and GGUF files written by this call are on disk: no writeback under the load figures
  run_benches
  report | tee -a "$progress"
  local rc=${PIPESTATUS[0]}
  say "finished"
  return "$rc"
}

case "${1:-}" in
  run) run_all ;;
  build-llama)
    # only the llama.cpp build, in the background (CPU only: it does not disturb GPU timings)
    [ -x "$lcb/bin/llama-bench" ] && { echo "llama.cpp already built in $lcb"; exit 0; }
    extract_llama
    setsid nohup bash "$shared/baseline/build-llamacpp.sh" "$lcb" "$(arch)" > "$qc/logs/llama-build.log" 2>&1 < /dev/null &
    echo $! > "$qc/llama.pid"
    echo "llama.cpp build started (pid $!): $qc/logs/llama-build.log"
    ;;
  start)
    if [ -f "$qc/pid" ] && kill -0 "$(cat "$qc/pid")" 2>/dev/null; then echo "already running (pid $(cat "$qc/pid"))"; exit 0; fi
    setsid nohup bash "$0" run > "$qc/run.log" 2>&1 < /dev/null &
    echo $! > "$qc/pid"
    echo "started (pid $!): progress in $progress"
    ;;
  wait)
    limit=${2:-560}
    t0=$(date +%s)
    while [ -f "$qc/pid" ] && kill -0 "$(cat "$qc/pid")" 2>/dev/null && [ $(( $(date +%s) - t0 )) -lt "$limit" ]; do sleep 5; done
    cat "$progress" 2>/dev/null
    if [ -f "$qc/pid" ] && kill -0 "$(cat "$qc/pid")" 2>/dev/null; then
      echo "still running after ${limit}s: call 'bench/gpu_compare.sh wait' again (the machine must stay warm)"
    else
      [ -f "$qc/table.txt" ] || exit 1
      report > /dev/null; rc=$?
      cat "$qc/table.txt"
      exit "$rc"
    fi
    ;;
  status) cat "$progress" 2>/dev/null || echo "not started" ;;
  report) report ;;
  *) sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
