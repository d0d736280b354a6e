#!/usr/bin/env bash
# Quick end-to-end smoke on a GPU machine: inventory, the peaked e2e models and
# the bundled model through strata's default deployment (the GPU when there is
# one) against the CPU engine.
#   tests/gpu/smoke.sh BUILD_DIR OUT_DIR
#
# Fails (exit 1) when any command exits non-zero, when a GPU run's stdout (the
# greedy ids; the bundled model's text at fp32) differs from the CPU's, when the
# bundled model's perplexity on the GPU (its own precision, bf16 on Ampere and
# newer) is more than 0.5% from the CPU's, or when a run that should use the
# GPU did not: the plan of its deployment (strata plan --format json) must put
# a stage on a cuda device, and the stage table generate -v prints must be that
# plan's. Only stdout is compared; stderr goes to OUT_DIR/*.err.
#
# SMOKE_QUICK=1: the F32 GGUF files only, the bundled model's HF directory only,
# perplexity over 2 windows (the ctest selftests).
# SMOKE_EXPECT=cpu runs the same comparisons where no GPU is, with the default
# deployment on the CPU (ctest does, to show that a planted greedy flip fails
# it); without it, a machine with no GPU fails with "no GPU ran". SMOKE_STRATA
# names the strata binary instead of BUILD_DIR/strata.
set -uo pipefail
b=${SMOKE_STRATA:-${1:-build-gpu}/strata}
out=${2:-/tmp/smoke}
expect=${SMOKE_EXPECT:-cuda}
py=${PYTHON:-python3}
mkdir -p "$out"
n_fail=0
n_ok=0
say_fail() { echo "FAIL  $*"; n_fail=$((n_fail + 1)); }
say_ok() { echo "ok    $*"; n_ok=$((n_ok + 1)); }
# run TAG cmd...: stdout to $out/TAG.out, stderr to $out/TAG.err; a non-zero exit is a failure
run() {
  local tag=$1; shift
  "$@" > "$out/$tag.out" 2> "$out/$tag.err"
  local rc=$?
  [ $rc -eq 0 ] || say_fail "$tag: exit $rc: $(head -c 300 "$out/$tag.err")"
  return $rc
}
# on_device TAG PLAN_ARGS...: the plan of that deployment puts a stage on a $expect device
on_device() {
  local tag=$1; shift
  run "$tag.plan" "$b" plan "$@" --format json || return 1
  local kinds
  kinds=$("$py" -c 'import json,sys; t=open(sys.argv[1]).read(); p=json.loads(t[t.index("{"):t.rindex("}")+1]); print(" ".join(sorted({p["devices"][s["device"]]["select"].split(":")[0] for s in p["stages"]})))' "$out/$tag.plan.out")
  if [[ " $kinds " != *" $expect "* ]]; then
    say_fail "$tag: no GPU ran: the deployment's stages are on [$kinds], not on a $expect device"
    return 1
  fi
}
# stages_match TAG: generate -v's stage table ($out/TAG.err) names the devices of the plan ($out/TAG.plan.out)
stages_match() {
  local tag=$1 got want
  got=$(grep -E '^[0-9]+ +[^ ]+ +[0-9]+-[0-9]+' "$out/$tag.err" | awk '{print $2, $3}' | paste -sd ';' -)
  want=$("$py" -c 'import json,sys; t=open(sys.argv[1]).read(); p=json.loads(t[t.index("{"):t.rindex("}")+1]); print(";".join(s["label"] + " " + str(s["layers"][0]) + "-" + str(s["layers"][1]) for s in p["stages"]))' "$out/$tag.plan.out")
  [ "$got" = "$want" ] || { say_fail "$tag: generate ran the stages [$got], its plan has [$want]"; return 1; }
}

run inventory "$b" inventory
run inventory-json "$b" inventory --json

m=tests/gpu/models
for name in qwen2-peaked qwen3-peaked llama-peaked tiny-4l; do
  prompt=$("$py" -c 'import json,sys; print(",".join(map(str, json.load(open(sys.argv[1]))["tokens"])))' "$m/$name/reference.json")
  for k in $([ "${SMOKE_QUICK:-0}" = 1 ] && echo f32 || echo hf f32 f16); do
    path=$m/$name/$name-$k.gguf
    [ $k = hf ] && path=$m/$name/hf
    tag=$name-$k
    run "$tag.cpu" "$b" generate -m "$path" --cpu --tokens "$prompt" -n 16 || continue
    on_device "$tag" -m "$path" || continue
    run "$tag" "$b" -v generate -m "$path" --tokens "$prompt" -n 16 || continue
    stages_match "$tag" || continue
    if cmp -s "$out/$tag.cpu.out" "$out/$tag.out"; then
      say_ok "$tag: $expect == cpu: $(cat "$out/$tag.out")"
    else
      say_fail "$tag: cpu [$(cat "$out/$tag.cpu.out")] $expect [$(cat "$out/$tag.out")]"
    fi
  done
done

# the bundled model: greedy text with the GPU forced to fp32 equals the CPU's; perplexity at
# the GPU's own precision within 0.5% of the CPU's
kjv_cfg=$out/kjv-fp32.yaml
printf 'version: 1\nmodel: {path: %s}\ndevices:\n  - {device: %s, precision: fp32}\n' \
  "$(cd models && pwd)/tiny-kjv" "$([ "$expect" = cpu ] && echo cpu || echo cuda:0)" > "$kjv_cfg"
windows=$([ "${SMOKE_QUICK:-0}" = 1 ] && echo 2 || echo 4)
for src in models/tiny-kjv $([ "${SMOKE_QUICK:-0}" = 1 ] || echo models/tiny-kjv.gguf); do
  tag=kjv-$(basename "$src" | tr . -)
  run "$tag.cpu" "$b" generate -m "$src" --cpu -p "In the beginning" --greedy -n 40 || continue
  if on_device "$tag" -c "$kjv_cfg" -m "$src" && run "$tag" "$b" -v generate -c "$kjv_cfg" -m "$src" -p "In the beginning" --greedy -n 40 &&
     stages_match "$tag"; then
    if cmp -s "$out/$tag.cpu.out" "$out/$tag.out"; then
      say_ok "$tag fp32 text: $expect == cpu"
    else
      say_fail "$tag fp32 text: cpu [$(cat "$out/$tag.cpu.out")] $expect [$(cat "$out/$tag.out")]"
    fi
  fi
  run "$tag.ppl.cpu" "$b" perplexity -m "$src" -f tests/fixtures/kjv/test.txt --max-windows "$windows" --cpu --json || continue
  on_device "$tag.ppl" -m "$src" || continue
  run "$tag.ppl" "$b" perplexity -m "$src" -f tests/fixtures/kjv/test.txt --max-windows "$windows" --json || continue
  verdict=$("$py" -c 'import json,sys; a=json.load(open(sys.argv[1]))["perplexity"]; b=json.load(open(sys.argv[2]))["perplexity"]; d=abs(b-a)/a; print(("ok" if d <= 0.005 else "bad"), f"cpu {a:.4f} device {b:.4f} ({d*100:.3f}%, limit 0.5%)")' "$out/$tag.ppl.cpu.out" "$out/$tag.ppl.out")
  if [ "${verdict%% *}" = ok ]; then say_ok "$tag perplexity: ${verdict#* }"; else say_fail "$tag perplexity: ${verdict#* }"; fi
done
echo "smoke ($expect): $([ $n_fail = 0 ] && echo 'all passed' || echo FAILED); outputs in $out"
echo "$n_ok passed, $n_fail failed"
[ $n_fail -eq 0 ]
