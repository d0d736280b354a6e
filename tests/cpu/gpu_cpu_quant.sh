#!/usr/bin/env bash
# Issue 18's GPU + CPU acceptance, for a machine with a GPU (the lead runs it;
# CPU-only CI cannot):
#   source shared/device/setup.sh
#   tests/cpu/gpu_cpu_quant.sh [BUILD_DIR=build-gpu] [OUT_DIR=${OUT:-/tmp}/gpu-cpu-quant]
#
# The deployment: tests/cpu/gpu-cpu-quant.yaml, kq-tiny-mixed.gguf (Qwen3
# layout, E=256, 2 layers) with layer 0 (F32 weights) on cuda:0 in bf16 and
# the quantized layer 1 (Q4_K, Q6_K: llama-quantize's Q4_K_M mix) plus the
# Q6_K lm_head on the CPU. Checks, each printed ok / FAIL:
#   1. the plan puts stage 0 on a cuda device and stage 1 on the cpu
#      (strata plan --format json);
#   2. its 16 greedy ids equal the CPU engine's on the same file
#      (strata generate -m FILE --cpu) and the float64 numpy reference's
#      (tests/fixtures/quant/reference.json; the prompt keeps a top-2 gap of
#      >= 0.075 along the greedy path, far above bf16 rounding);
#   3. strata bench -c shows the CPU stage's measured decode time next to the
#      planner's prediction (bench --json: stages[1].decode_ms and
#      plan_decode_ms, both > 0), printed as a table.
# With WIDE_GGUF=FILE (e.g. the Q4_K_M file bench/cpu_vs_llamacpp.sh makes,
# 24 layers) it also benches layers 0-11 on cuda:0 (bf16) and 12-23 plus the
# lm_head on the CPU and prints that table (a speed figure, no id check:
# random weights have near-ties).
# Builds BUILD_DIR like tests/gpu/run.sh when it has no strata. Exit 1 when a
# check fails.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
build=${1:-build-gpu}
out=${2:-${OUT:-/tmp}/gpu-cpu-quant}
py=${PYTHON:-python3}
mkdir -p "$out"
cfg=${GCQ_CONFIG:-tests/cpu/gpu-cpu-quant.yaml}
expect=${GCQ_EXPECT:-cuda cpu}   # a dry run where no GPU is: GCQ_CONFIG=tests/cpu/cpu-cpu-quant.yaml GCQ_EXPECT="cpu cpu"
model=tests/fixtures/quant/kq-tiny-mixed.gguf
n_fail=0
ok() { echo "ok    $*"; }
fail() { echo "FAIL  $*"; n_fail=$((n_fail + 1)); }

if [ ! -x "$build/strata" ]; then
  echo "== building $build"
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >"$out/cmake.log" 2>&1 &&
    cmake --build "$build" -j "$(nproc)" --target strata >>"$out/cmake.log" 2>&1 ||
    { echo "FAIL  build (see $out/cmake.log)"; exit 1; }
fi
b=$build/strata
"$b" --version | tee "$out/version.txt"
nvidia-smi -L 2>/dev/null | tee "$out/gpus.txt"

read -r prompt want < <("$py" -c '
import json, sys
e = json.load(open(sys.argv[1]))["kq-tiny-mixed.gguf"]
print(",".join(map(str, e["tokens"])), ",".join(map(str, e["greedy"])))' tests/fixtures/quant/reference.json)

# 1. the plan: GPU then CPU
if "$b" plan -c "$cfg" --format json >"$out/plan.json" 2>"$out/plan.err"; then
  kinds=$("$py" -c '
import json, sys
t = open(sys.argv[1]).read(); p = json.loads(t[t.index("{"):t.rindex("}") + 1])
print(" ".join(p["devices"][s["device"]]["select"].split(":")[0] for s in p["stages"]))' "$out/plan.json")
  [ "$kinds" = "$expect" ] && ok "plan: stages on [$kinds]" || fail "plan: stages on [$kinds], want [$expect]"
else
  fail "plan: exit $? ($(head -c 300 "$out/plan.err"))"
fi

# 2. greedy ids: GPU + CPU == CPU engine == numpy reference
"$b" generate -c "$cfg" --tokens "$prompt" -n 16 >"$out/gpu-cpu.out" 2>"$out/gpu-cpu.err" ||
  fail "generate GPU + CPU: exit $? ($(tail -c 300 "$out/gpu-cpu.err"))"
"$b" generate -m "$model" --cpu --tokens "$prompt" -n 16 >"$out/cpu.out" 2>"$out/cpu.err" ||
  fail "generate --cpu: exit $? ($(tail -c 300 "$out/cpu.err"))"
got=$(tail -n 1 "$out/gpu-cpu.out"); cpu=$(tail -n 1 "$out/cpu.out")
[ "$cpu" = "$want" ] && ok "CPU engine ids = numpy reference ($want)" || fail "CPU engine ids $cpu, reference $want"
[ "$got" = "$cpu" ] && ok "GPU + CPU ids = CPU engine ids" || fail "GPU + CPU ids $got, CPU engine $cpu"

# 3. bench: the CPU stage's time next to the planner's prediction
stage_table() {  # bench json, label
  "$py" - "$1" "$2" <<'EOF'
import json, sys
t = open(sys.argv[1]).read(); d = json.loads(t[t.index("{"):t.rindex("}") + 1])
print(f"{sys.argv[2]}: decode {d['decode_tok_s']:.1f} tok/s, prefill {d['prefill_tok_s']:.1f} tok/s")
print(f"  {'stage':5} {'device':10} {'layers':>7} {'prec':5} {'decode ms':>10} {'plan ms':>9} {'ratio':>6}")
bad = 0
for s in d["stages"]:
    r = s["decode_ms"] / s["plan_decode_ms"] if s["plan_decode_ms"] > 0 else float("nan")
    print(f"  {s['index']:<5} {s['device']:10} {s['layers'][0]:>3}-{s['layers'][1]:<3} {s['precision']:5} "
          f"{s['decode_ms']:10.3f} {s['plan_decode_ms']:9.3f} {r:6.2f}")
    bad += not (s["decode_ms"] > 0 and s["plan_decode_ms"] > 0)
sys.exit(1 if bad or len(d["stages"]) < 2 or not d.get("tokens_valid", False) else 0)
EOF
}
if "$b" bench -c "$cfg" --prompt-tokens 32 --decode-tokens 32 --repeat 3 --json >"$out/bench.json" 2>"$out/bench.err"; then
  stage_table "$out/bench.json" "kq-tiny-mixed, GPU bf16 + CPU Q4_K/Q6_K" | tee "$out/bench.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] && ok "bench: the CPU stage's decode time beside the plan's" ||
    fail "bench: a stage without measured or planned time, or invalid tokens ($out/bench.json)"
else
  fail "bench: exit $? ($(tail -c 300 "$out/bench.err"))"
fi

if [ -n "${WIDE_GGUF:-}" ]; then
  cat >"$out/wide.yaml" <<EOF
version: 1
model:
  path: $(cd "$(dirname "$WIDE_GGUF")" && pwd)/$(basename "$WIDE_GGUF")
devices:
  - device: cuda:0
    name: gpu
    precision: bf16
  - device: cpu
    name: host
placement:
  strategy: manual
  manual:
    - {device: gpu, layers: 0-11}
    - {device: host, layers: 12-23}
transport: host
context: 256
EOF
  if "$b" bench -c "$out/wide.yaml" --prompt-tokens 128 --decode-tokens 64 --repeat 3 --json >"$out/wide-bench.json" \
      2>"$out/wide-bench.err"; then
    stage_table "$out/wide-bench.json" "$(basename "$WIDE_GGUF"), layers 0-11 GPU bf16 + 12-23 CPU" |
      tee "$out/wide-bench.txt"
    [ "${PIPESTATUS[0]}" -eq 0 ] && ok "wide bench" || fail "wide bench: missing stage times ($out/wide-bench.json)"
  else
    fail "wide bench: exit $? ($(tail -c 300 "$out/wide-bench.err"))"
  fi
fi

echo "gpu_cpu_quant: $n_fail failed; logs in $out"
[ "$n_fail" -eq 0 ]
