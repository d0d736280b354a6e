#!/usr/bin/env bash
# strata vs llama.cpp on the same quantized weights, one GPU (issue 11's
# benchmark): the Qwen2.5-7B-shaped random bf16 model of
# tools/make_random_model.py, converted to GGUF (tools/quantize_convert.py) and
# quantized to Q4_K_M and Q8_0 by llama.cpp's own llama-quantize, then
#   strata bench -c (cuda:0, bf16) --prompt-tokens 512 --decode-tokens 128
#   llama-bench -fa 1 -p 512 -n 128
# on each file, and a table of both tools' numbers and their ratios against
# the targets (decode: Q4_K_M >= 1.3x llama.cpp's tg128, Q8_0 >= 1.2x;
# prefill: pp512 >= llama.cpp's on both).
#
# Built for short device calls: `start` launches every step in the background
# (setsid; it outlives the call while the machine stays warm) and returns; `wait`
# follows it for up to N seconds and prints the table once it is done; a later
# call resumes with `wait`. Every step is skipped when its output exists, so
# `start` after an interruption redoes only what is missing.
#
#   source shared/device/setup.sh              # the strata build's dependencies
#   bench/quant_compare.sh start               # returns at once
#   bench/quant_compare.sh wait 540            # in the same call or the next one
#   bench/quant_compare.sh status | report | run   # progress | the table again | all steps in the foreground
#   bench/quant_compare.sh build-llama         # only the llama.cpp build, in the background (CPU only;
#                                              # start it while GPU tests run, 'start' waits for it)
#
# Steps, in parallel where they can be (about 10 minutes on an H100 with 16
# cores, most of it the two builds): llama.cpp (shared/baseline/build-llamacpp.sh,
# this GPU's arch) | strata (STRATA_GPU_BUILD, default build-gpu, as
# tests/gpu/run.sh configures it) | the 7B model (15 GB on the GPU, then disk)
# -> bf16 GGUF -> Q4_K_M and Q8_0 (llama-quantize) -> the four benchmarks, one
# at a time. Disk: about 45 GB under QC_DIR and QC_BIG_DIR.
#
# Environment: QC_DIR (work, logs, GGUF files; default /tmp/strata-qc), QC_BIG_DIR
# (the HF model, shared with tests/gpu/e2e.sh: /tmp/strata-e2e/qwen2.5-7b-random),
# SHARED (the shared/ folder: default ./shared, else ../shared), LLAMA_BUILD
# (/tmp/lcb), OUT (results.json, table.txt and the logs are copied there),
# PYTHON (python3 with torch: the device image's), QC_REPS (llama-bench -r and
# strata bench --repeat; default 3).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1
qc=${QC_DIR:-/tmp/strata-qc}
big=${QC_BIG_DIR:-/tmp/strata-e2e/qwen2.5-7b-random}
build=${STRATA_GPU_BUILD:-$root/build-gpu}
lcb=${LLAMA_BUILD:-/tmp/lcb}
py=${PYTHON:-python3}
reps=${QC_REPS:-3}
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
  cmake --build "$build" --parallel "$(nproc)" --target strata && touch "$strata_marker"
}
strata_marker=$qc/.strata-built-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
do_model() { "$py" tools/make_random_model.py "$big" --shape qwen2.5-7b; }
do_convert() { PYTHONPATH="$src/gguf-py${PYTHONPATH:+:$PYTHONPATH}" "$py" tools/quantize_convert.py "$big" "$qc/qwen7b-bf16.gguf.tmp" && mv "$qc/qwen7b-bf16.gguf.tmp" "$qc/qwen7b-bf16.gguf"; }
do_quant() {  # do_quant TYPE
  "$lcb/bin/llama-quantize" "$qc/qwen7b-bf16.gguf" "$qc/qwen7b-$1.gguf.tmp" "$1" "$(nproc)" && mv "$qc/qwen7b-$1.gguf.tmp" "$qc/qwen7b-$1.gguf"
}
do_strata_bench() {  # do_strata_bench TYPE
  cat > "$qc/deploy-$1.yaml" <<EOF
version: 1
model: {path: $qc/qwen7b-$1.gguf}
devices:
  - {device: cuda:0, precision: bf16}
context: 1024
prefill_chunk: 512
EOF
  "$build/strata" bench -c "$qc/deploy-$1.yaml" --prompt-tokens 512 --decode-tokens 128 --repeat "$reps" --json \
    > "$qc/strata-$1.json.tmp" && mv "$qc/strata-$1.json.tmp" "$qc/strata-$1.json"
}
do_llama_bench() {  # do_llama_bench TYPE
  "$lcb/bin/llama-bench" -m "$qc/qwen7b-$1.gguf" -fa 1 -p 512 -n 128 -r "$reps" -o json > "$qc/llama-$1.json.tmp" &&
    mv "$qc/llama-$1.json.tmp" "$qc/llama-$1.json"
}

report() {
  "$py" - "$qc" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" <<'EOF'
import json, os, re, sys
qc, commit = sys.argv[1], sys.argv[2]
gpu = os.popen("nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null").read().strip().splitlines()
res = {"gpu": gpu[0] if gpu else "?", "commit": commit, "types": {}}
targets = {"Q4_K_M": 1.3, "Q8_0": 1.2}
lines = [f"strata vs llama.cpp on {res['gpu']}, commit {commit} (tok/s; ratio = strata / llama.cpp)",
         f"{'weights':8s} {'strata pp512':>13s} {'llama pp512':>12s} {'ratio':>6s} {'strata tg128':>13s} {'llama tg128':>12s} "
         f"{'ratio':>6s}  verdict"]
ok = True
for t in ("Q4_K_M", "Q8_0"):
    try:
        s = json.load(open(f"{qc}/strata-{t}.json"))
        l = json.load(open(f"{qc}/llama-{t}.json"))
    except (OSError, ValueError) as e:
        lines.append(f"{t:8s} missing: {e}")
        ok = False
        continue
    sp, sd = float(s["prefill_tok_s"]), float(s["decode_tok_s"])
    lp = next(float(r["avg_ts"]) for r in l if r.get("n_prompt", 0) > 0 and r.get("n_gen", 0) == 0)
    ld = next(float(r["avg_ts"]) for r in l if r.get("n_gen", 0) > 0 and r.get("n_prompt", 0) == 0)
    rp, rd = sp / lp, sd / ld
    good = rd >= targets[t] and rp >= 1.0
    ok &= good
    verdict = ("PASS" if good else "MISS") + f" (decode >= {targets[t]}x, prefill >= 1x)"
    lines.append(f"{t:8s} {sp:13.1f} {lp:12.1f} {rp:6.2f} {sd:13.1f} {ld:12.1f} {rd:6.2f}  {verdict}")
    res["types"][t] = {"strata_pp512": sp, "llama_pp512": lp, "pp_ratio": rp, "strata_tg128": sd, "llama_tg128": ld,
                       "tg_ratio": rd, "target_tg_ratio": targets[t], "pass": good,
                       "strata_roofline_fraction": s.get("roofline", {}).get("fraction")}
res["all_targets_met"] = ok
json.dump(res, open(f"{qc}/results.json", "w"), indent=1)
open(f"{qc}/table.txt", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
  if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT/quant_compare"
    cp "$qc/results.json" "$qc/table.txt" "$progress" "$OUT/quant_compare/" 2>/dev/null
    tar -C "$qc" -czf "$OUT/quant_compare/logs.tgz" logs 2>/dev/null
  fi
}

run_all() {
  : > "$progress"
  say "quant_compare: $(nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader 2>/dev/null | head -1), $(nproc) cores, commit $(git rev-parse --short HEAD 2>/dev/null)"
  extract_llama
  step llama-build "$lcb/bin/llama-bench" do_llama & p_llama=$!
  step strata-build "$strata_marker" do_strata & p_strata=$!
  step model "$big/config.json" do_model & p_model=$!
  wait $p_model || { say "stop: no model"; wait; return 1; }
  step convert "$qc/qwen7b-bf16.gguf" do_convert || { wait; return 1; }
  wait $p_llama || { say "stop: no llama.cpp"; wait; return 1; }
  step quant-Q4_K_M "$qc/qwen7b-Q4_K_M.gguf" do_quant Q4_K_M || return 1
  step quant-Q8_0 "$qc/qwen7b-Q8_0.gguf" do_quant Q8_0 || return 1
  wait $p_strata || { say "stop: no strata build"; return 1; }
  for t in Q4_K_M Q8_0; do
    step "strata-bench-$t" "$qc/strata-$t.json" do_strata_bench $t
    step "llama-bench-$t" "$qc/llama-$t.json" do_llama_bench $t
  done
  report | tee -a "$progress"
  say "finished"
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
      echo "still running after ${limit}s: call 'bench/quant_compare.sh wait' again (the machine must stay warm)"
    else
      [ -f "$qc/table.txt" ] && { report > /dev/null; cat "$qc/table.txt"; }
    fi
    ;;
  status) cat "$progress" 2>/dev/null || echo "not started" ;;
  report) report ;;
  *) sed -n '2,40p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
