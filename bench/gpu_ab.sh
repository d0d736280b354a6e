#!/usr/bin/env bash
# A/B of the working tree against a git ref on one GPU, in one device call
# (about 6 minutes on an H100 with 16 cores): is a kernel change correct, and
# is it faster where it should be and no slower elsewhere?
#
#   source shared/device/setup.sh && bench/gpu_ab.sh BASE_REF [OUT_DIR]
#
# 1. Builds the working tree (STRATA_GPU_BUILD, default build-gpu: strata and
#    gpu_kernels) and BASE_REF in a worktree (/tmp/gpu-ab-base, strata only),
#    in parallel, while the Qwen2.5-7B-shaped random bf16 model of
#    tools/make_random_model.py is written (AB_MODEL, default
#    /tmp/strata-e2e/qwen2.5-7b-random, shared with tests/gpu/e2e.sh and
#    bench/gpu_compare.sh; kept when it exists).
# 2. Correctness of the working tree: tests/gpu_kernels --require-gpu and
#    tests/gpu/smoke.sh (SMOKE_QUICK=1).
# 3. strata bench, new and base interleaved, each case AB_REPS times (default
#    3, the median kept), one stage bf16 on cuda:0:
#      decode   512 prompt + 128 decode tokens, 1,024-token cache (as
#               bench/gpu_compare.sh measures against llama.cpp)
#      short    64 + 128 in a 4,096-token cache (a chat's first turns)
#      conc16   16 sequences of 128 + 64, 4,096-token cache (aggregate)
#      conc64   64 sequences of 128 + 64, 4,096-token cache (aggregate)
# 4. Prints one line per case: new, base, new / base, then the weight load
#    rate of each (GB/s, share of the pinned host-to-device rate); exits 1 when a
#    correctness step failed (a slower case is reported, not failed: the
#    numbers are the point).
# Logs and JSON go to OUT_DIR (default $OUT/gpu_ab, else /tmp/gpu_ab).
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: bench/gpu_ab.sh BASE_REF [OUT_DIR]" >&2; exit 2; }
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 2
ref=$1
out=${2:-${OUT:+$OUT/gpu_ab}}
out=${out:-/tmp/gpu_ab}
build=${STRATA_GPU_BUILD:-$root/build-gpu}
base=/tmp/gpu-ab-base
model=${AB_MODEL:-/tmp/strata-e2e/qwen2.5-7b-random}
reps=${AB_REPS:-3}
py=${PYTHON:-python3}
git rev-parse --verify -q "$ref^{commit}" > /dev/null || { echo "error: '$ref' is not a commit here; hint: fetch it or name a branch, tag or hash" >&2; exit 2; }
mkdir -p "$out"
t0=$(date +%s)
say() { echo "$(( $(date +%s) - t0 )) s: $*"; }
fail=0

gen=()   # configured as tests/gpu/run.sh and bench/gpu_compare.sh do, so build-gpu is shared with them
command -v ninja > /dev/null && gen=(-G Ninja)
cfg() { cmake -S "$1" -B "$2" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DSTRATA_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=native; }
if [ ! -f "$model/config.json" ]; then
  ( "$py" tools/make_random_model.py "$model" > "$out/model.log" 2>&1; echo "model rc $?" >> "$out/model.log" ) &
  mpid=$!
else
  mpid=
fi
( rm -rf "$base"; git worktree prune; git worktree add -f --detach "$base" "$ref" > "$out/base-build.log" 2>&1 &&
  cfg "$base" "$base/build-gpu" >> "$out/base-build.log" 2>&1 &&
  cmake --build "$base/build-gpu" --parallel 8 --target strata >> "$out/base-build.log" 2>&1
  echo "base build rc $?" >> "$out/base-build.log" ) &
bpid=$!
{ cfg "$root" "$build" && cmake --build "$build" --parallel "$(nproc)" --target strata gpu_kernels; } > "$out/build.log" 2>&1
rc=$?
say "build rc $rc (log: $out/build.log)"
[ $rc -eq 0 ] || { grep -m5 -E "error" "$out/build.log"; exit 1; }

timeout 300 "$build/tests/gpu_kernels" --require-gpu > "$out/gpu_kernels.log" 2>&1
rc=$?
say "gpu_kernels rc $rc: $(tail -1 "$out/gpu_kernels.log")"
[ $rc -eq 0 ] || { fail=1; grep -m20 -E "^FAIL" "$out/gpu_kernels.log"; }
SMOKE_QUICK=1 timeout 120 tests/gpu/smoke.sh "$build" "$out/smoke" > "$out/smoke.log" 2>&1
rc=$?
say "smoke rc $rc: $(tail -1 "$out/smoke.log")"
[ $rc -eq 0 ] || { fail=1; grep -m10 -E "^FAIL" "$out/smoke.log"; }

wait $bpid
grep -q "base build rc 0" "$out/base-build.log" || { say "base build failed (log: $out/base-build.log)"; exit 1; }
[ -n "$mpid" ] && wait "$mpid"
[ -f "$model/config.json" ] || { say "no model (log: $out/model.log)"; exit 1; }
sync   # a model written by this call is on disk: no writeback under the load figures
say "base built, model ready"

deploy() {  # deploy FILE CTX
  printf 'version: 1\nmodel: {path: %s}\ncontext: %s\nprefill_chunk: 512\ndevices:\n  - {device: cuda:0, precision: bf16}\n' \
    "$model" "$2" > "$1"
}
deploy "$out/ctx1k.yaml" 1024
deploy "$out/ctx4k.yaml" 4096
cases=("decode|$out/ctx1k.yaml|--prompt-tokens 512 --decode-tokens 128"
       "short|$out/ctx4k.yaml|--prompt-tokens 64 --decode-tokens 128"
       "conc16|$out/ctx4k.yaml|--concurrency 16 --prompt-tokens 128 --decode-tokens 64"
       "conc64|$out/ctx4k.yaml|--concurrency 64 --prompt-tokens 128 --decode-tokens 64")
for r in $(seq "$reps"); do
  for c in "${cases[@]}"; do
    IFS='|' read -r name yaml args <<< "$c"
    for v in new base; do
      bin=$build/strata; [ $v = base ] && bin=$base/build-gpu/strata
      # shellcheck disable=SC2086
      timeout 120 "$bin" bench -c "$yaml" $args --repeat 1 --json > "$out/$name-$v-$r.json" 2> "$out/$name-$v-$r.err" ||
        say "$name $v run $r failed: $(tail -1 "$out/$name-$v-$r.err")"
    done
  done
done
"$py" - "$out" "$reps" <<'PY'
import json, statistics, sys
out, reps = sys.argv[1], int(sys.argv[2])
def rate(path):
    try:
        d = json.load(open(path))
    except (OSError, ValueError):
        return None
    if "runs" in d:
        return d["runs"][0]["aggregate_decode_tok_s"]
    return d.get("decode_tok_s")
print(f"{'case':8} {'new tok/s':>10} {'base tok/s':>11} {'new/base':>9}")
for name in ("decode", "short", "conc16", "conc64"):
    med = {}
    for v in ("new", "base"):
        xs = [x for x in (rate(f"{out}/{name}-{v}-{r}.json") for r in range(1, reps + 1)) if x]
        med[v] = statistics.median(xs) if xs else None
    n, b = med["new"], med["base"]
    ratio = f"{n / b:9.3f}" if n and b else "        -"
    print(f"{name:8} {n or 0:10.1f} {b or 0:11.1f} {ratio}")
def load(path):   # weight load of the one stage: GB/s and its share of the pinned host-to-device rate
    try:
        s = json.load(open(path))["load"]["stages"][0]
    except (OSError, ValueError, KeyError, IndexError):
        return None
    return s["gbps"], s.get("h2d_fraction")
for v in ("new", "base"):
    xs = [x for x in (load(f"{out}/decode-{v}-{r}.json") for r in range(1, reps + 1)) if x]
    if xs:
        g = statistics.median(x[0] for x in xs)
        f = [x[1] for x in xs if x[1] is not None]
        share = f" ({100 * statistics.median(f):.0f} % of pinned H2D)" if f else ""
        print(f"load {v:4} {g:6.1f} GB/s{share}")
PY
say "done; logs in $out"
exit $fail
